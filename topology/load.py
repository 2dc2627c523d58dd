"""Loading a scenario: read, check everything, build the arrays.

`load_scenario(path)` is the one way in. It reads YAML or JSON, checks each
field (pydantic, `edgeplace.topology.spec`) and then the file as a whole (references,
duplicates, units, reachability, SLAs no node can meet), and raises one
`InputError` listing every problem with its path. Only a clean file becomes a
`Scenario`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from edgeplace.topology.errors import InputError, Problem, pydantic_problems
from edgeplace.topology.latency import user_site_latency_ms
from edgeplace.topology.constraints import compile_constraints, effective_node_labels
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.scheduling_spec import PODS_RESOURCE
from edgeplace.topology.spec import SCENARIO_VERSION, ScenarioSpec, SignalKind

#: Accepted units per signal and the factor to the canonical unit.
#: lb/MWh: 453.592 g / 1000 kWh.
SIGNAL_UNITS: dict[SignalKind, dict[str, float]] = {
    SignalKind.grid_intensity: {
        "gCO2/kWh": 1.0, "gCO2e/kWh": 1.0, "g/kWh": 1.0,
        "kgCO2/kWh": 1000.0, "kgCO2e/kWh": 1000.0, "kg/kWh": 1000.0,
        "t/MWh": 1000.0, "lb/MWh": 0.453592,
    },
    SignalKind.renewable_supply: {"kW": 1.0, "W": 0.001, "MW": 1000.0},
    SignalKind.background_utilisation: {"fraction": 1.0, "%": 0.01, "percent": 0.01},
    SignalKind.contracted_supply: {"kW": 1.0, "W": 0.001, "MW": 1000.0},
}
#: Plausible ranges after conversion: a value outside is almost always a unit
#: mix-up. The dirtiest lifecycle factor (coal) is about 1000 gCO2e/kWh
#: (IPCC AR5, shared/REFERENCE.md), so 2000 leaves room for marginal factors.
SIGNAL_RANGES = {
    SignalKind.grid_intensity: (0.0, 2000.0),
    SignalKind.renewable_supply: (0.0, 1e9),  # 1 TW: beyond any site; keeps energy sums finite
    SignalKind.background_utilisation: (0.0, 1.0),
    SignalKind.contracted_supply: (0.0, 1e9),
}
SIGNAL_TARGET = {
    SignalKind.grid_intensity: "region",
    SignalKind.renewable_supply: "site",
    SignalKind.background_utilisation: "node",
    SignalKind.contracted_supply: "site",
}


def read_document(path: str | Path, *, json_only: bool = False) -> Any:
    """Parse a YAML or JSON file (by its suffix, or JSON whatever the suffix with
    `json_only`); raise InputError naming the file on failure."""
    from edgeplace.topology.io import read_input_text

    path = Path(path)
    text = read_input_text(path)
    try:
        if json_only or path.suffix.lower() == ".json":
            return json.loads(text)  # also reads the `Infinity` some tools write
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except json.JSONDecodeError as exc:
        raise InputError(str(path), [Problem(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}")]) from None
    except RecursionError:
        raise InputError(str(path), [Problem("", "not valid JSON: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise InputError(str(path), [Problem(where, f"not valid YAML: {reason}")]) from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's scalar constructors leak plain exceptions for malformed typed
        # values (`2026-13-45`, `!!int abc`, `!!bool maybe`, `!!timestamp x`).
        raise InputError(str(path), [Problem("", f"not valid YAML: a value cannot be read ({type(exc).__name__}: {exc})")]) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and compile a scenario file (YAML or JSON)."""
    return scenario_from_dict(read_document(path), source=str(path))


def scenario_from_dict(doc: Any, source: str = "<scenario>") -> Scenario:
    """Validate and compile a scenario given as parsed YAML/JSON."""
    if not isinstance(doc, dict):
        raise InputError(source, [Problem("", f"a scenario is a mapping of fields, got {type(doc).__name__}")])
    version = doc.get("version")
    # `True == 1` and `1.0 == 1` in Python: insist on the integer itself.
    if not isinstance(version, int) or isinstance(version, bool) or version != SCENARIO_VERSION:
        raise InputError(source, [Problem("version", f"must be {SCENARIO_VERSION} (got {version!r}); this release reads version {SCENARIO_VERSION} files")])
    try:
        spec = ScenarioSpec.model_validate(doc)
    except ValidationError as exc:
        raise InputError(source, pydantic_problems(exc.errors())) from None
    return compile_spec(spec, source)


def compile_spec(spec: ScenarioSpec, source: str = "<scenario>") -> Scenario:
    """Check a field-valid spec as a whole and build its arrays."""
    problems: list[Problem] = []
    # Duplicate ids do not stop the checks below (ids resolve to the last
    # duplicate), so the user sees every problem at once.
    _check_ids(spec, problems)
    builder = _Builder(spec, source, problems)
    scenario = builder.build()
    if problems:
        raise InputError(source, problems)
    return scenario


def _check_ids(spec: ScenarioSpec, problems: list[Problem]) -> None:
    for name in ("regions", "sites", "nodes", "users", "tenants", "workloads"):
        items = getattr(spec, name)
        seen: set[str] = set()
        for i, item in enumerate(items):
            # Report the second and later occurrences: the first one is the original.
            if item.id in seen:
                problems.append(Problem(f"{name}[{i}].id", f"duplicate id {item.id!r}; ids must be unique within {name}"))
            seen.add(item.id)


@dataclass(frozen=True)
class _Signals:
    """The signal arrays of a scenario (actual and, where planning sees them, forecast)."""

    intensity: np.ndarray
    renewable: np.ndarray
    background: np.ndarray
    contracted: np.ndarray
    intensity_forecast: np.ndarray
    renewable_forecast: np.ndarray
    contracted_forecast: np.ndarray
    intensity_kind: str
    factor_type: str | None


class _Builder:
    """Builds the arrays of a Scenario, appending problems as it finds them."""

    def __init__(self, spec: ScenarioSpec, source: str, problems: list[Problem]):
        self.spec = spec
        self.source = source
        self.problems = problems
        self.T = spec.horizon.slots
        self.slot_hours = spec.horizon.slot_minutes / 60.0
        self.region = {r.id: i for i, r in enumerate(spec.regions)}
        self.site = {s.id: i for i, s in enumerate(spec.sites)}
        self.node = {n.id: i for i, n in enumerate(spec.nodes)}
        self.user = {u.id: i for i, u in enumerate(spec.users)}
        self.tenant = {t.id: i for i, t in enumerate(spec.tenants)}

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def ref(self, table: dict[str, int], value: str | None, path: str, what: str) -> int:
        if value is None:
            return -1
        idx = table.get(value)
        if idx is None:
            known = ", ".join(sorted(table)[:8]) + (", ..." if len(table) > 8 else "")
            self.bad(path, f"unknown {what} {value!r} (known: {known or 'none'})")
            return -1
        return idx

    # ------------------------------------------------------------------
    def build(self) -> Scenario:
        spec = self.spec
        resources = self._resources()
        K = len(resources)
        N, S, G, M, W, T = (len(spec.nodes), len(spec.sites), len(spec.regions),
                            len(spec.tenants), len(spec.workloads), self.T)

        site_region = np.array([self.ref(self.region, s.region, f"sites[{i}].region", "region")
                                for i, s in enumerate(spec.sites)], dtype=np.int64)
        site_pue = np.array([s.pue for s in spec.sites], dtype=float)
        site_battery = np.array([s.battery_kwh for s in spec.sites], dtype=float)
        site_share = np.array([s.contracts.renewable_share if s.contracts else 0.0 for s in spec.sites], dtype=float)
        residual = np.array([r.residual_mix.g_per_kwh if r.residual_mix else np.nan for r in spec.regions], dtype=float)

        node_site = np.array([self.ref(self.site, n.site, f"nodes[{i}].site", "site")
                              for i, n in enumerate(spec.nodes)], dtype=np.int64)
        node_capacity = np.zeros((N, K), dtype=np.int64)
        rindex = {r: k for k, r in enumerate(resources)}
        if PODS_RESOURCE in rindex:  # a node that states no pod limit holds every replica there is
            node_capacity[:, rindex[PODS_RESOURCE]] = max(sum(wl.replicas for wl in spec.workloads), 1)
        for i, n in enumerate(spec.nodes):
            for name, value in n.capacity.as_dict().items():
                node_capacity[i, rindex[name]] = value
        node_curve = np.array([n.power.curve_w() for n in spec.nodes], dtype=float)
        node_can_down = np.array([n.can_power_down for n in spec.nodes], dtype=bool)
        node_dedicated = np.array([self.ref(self.tenant, n.dedicated_to, f"nodes[{i}].dedicated_to", "tenant")
                                   for i, n in enumerate(spec.nodes)], dtype=np.int64)
        embodied = [n.embodied or (spec.sites[node_site[i]].embodied if node_site[i] >= 0 else None)
                    for i, n in enumerate(spec.nodes)]
        # SCI: M = TE x (TiR / EL); per powered hour: TE / EL[h].
        node_embodied = np.array([e.per_node_kg * 1000.0 / (e.lifetime_years * 8760.0) if e else 0.0
                                  for e in embodied], dtype=float)
        region_of_site = [spec.sites[i].region if i >= 0 else "" for i in node_site]
        effective_labels = [effective_node_labels(n.labels, n.id, n.site, region_of_site[i]) for i, n in enumerate(spec.nodes)]
        node_labels = [frozenset(labels.items()) for labels in effective_labels]
        node_owned = np.array([spec.sites[node_site[i]].owned if node_site[i] >= 0 else True
                               for i in range(N)], dtype=bool)

        graph_ok = True  # every link end and user site is known: latencies can be computed
        for i, link in enumerate(spec.links):
            graph_ok &= self.ref(self.site, link.a, f"links[{i}].a", "site") >= 0
            graph_ok &= self.ref(self.site, link.b, f"links[{i}].b", "site") >= 0
            if link.a == link.b:
                self.bad(f"links[{i}]", f"links a site to itself ({link.a!r}); remove it")
        for i, u in enumerate(spec.users):
            graph_ok &= self.ref(self.site, u.site, f"users[{i}].site", "site") >= 0

        tenant_dedicated = np.array([t.isolation.dedicated_nodes for t in spec.tenants], dtype=bool)
        conflicts = np.zeros((M, M), dtype=bool)
        quota = np.full((M, K), np.inf)
        for j, t in enumerate(spec.tenants):
            for k, other in enumerate(t.isolation.never_with):
                o = self.ref(self.tenant, other, f"tenants[{j}].isolation.never_with[{k}]", "tenant")
                if o == j:
                    self.bad(f"tenants[{j}].isolation.never_with[{k}]", "a tenant cannot exclude itself")
                elif o >= 0:
                    conflicts[j, o] = conflicts[o, j] = True
            for name, value in t.quota.items():
                if name not in rindex:
                    self.bad(f"tenants[{j}].quota.{name}", f"unknown resource {name!r} (nodes offer: {', '.join(resources)})")
                elif value < 0:
                    self.bad(f"tenants[{j}].quota.{name}", f"must be >= 0 (got {value})")
                else:
                    quota[j, rindex[name]] = value
            if t.isolation.dedicated_nodes and not any(n.dedicated_to == t.id for n in spec.nodes):
                self.bad(f"tenants[{j}].isolation.dedicated_nodes",
                         f"tenant {t.id!r} must run on dedicated nodes but no node has dedicated_to: {t.id}")

        sig = self._signals(site_region, node_site)
        user_lat = (user_site_latency_ms(spec) if graph_ok
                    else np.zeros((len(spec.users), S)))
        sites_with_nodes = np.zeros(S, dtype=bool)
        sites_with_nodes[node_site[node_site >= 0]] = True
        for i, u in enumerate(spec.users):
            if graph_ok and not np.isfinite(user_lat[i, sites_with_nodes]).any():
                self.bad(f"users[{i}].site", f"user location {u.id!r} at site {u.site!r} cannot reach any site with nodes; add a link")

        w = self._workloads(resources, rindex, user_lat, node_capacity)
        constraints = compile_constraints(spec, effective_labels, node_dedicated, w["workload_tenant"], tenant_dedicated,
                                          self.problems)
        scenario = Scenario(
            spec=spec, source=self.source, resources=resources,
            node_ids=[n.id for n in spec.nodes], site_ids=[s.id for s in spec.sites],
            region_ids=[r.id for r in spec.regions], user_ids=[u.id for u in spec.users],
            tenant_ids=[t.id for t in spec.tenants], workload_ids=[x.id for x in spec.workloads],
            intensity_kind=sig.intensity_kind, factor_type=sig.factor_type,
            slot_start=spec.horizon.start, slot_hours=self.slot_hours,
            node_site=node_site, node_capacity=node_capacity, node_power_curve_w=node_curve,
            node_can_power_down=node_can_down, node_dedicated_tenant=node_dedicated,
            node_embodied_g_per_h=node_embodied, node_owned=node_owned, node_background_util=sig.background,
            node_label_sets=node_labels, site_region=site_region, site_pue=site_pue,
            site_renewable_kw=sig.renewable, site_battery_kwh=site_battery,
            site_renewable_share=site_share, site_contracted_kw=sig.contracted,
            site_contracted_forecast_kw=sig.contracted_forecast,
            region_intensity_g_per_kwh=sig.intensity, region_residual_g_per_kwh=residual,
            user_site_latency_ms=user_lat,
            region_intensity_forecast_g_per_kwh=sig.intensity_forecast, site_renewable_forecast_kw=sig.renewable_forecast,
            tenant_dedicated=tenant_dedicated, tenant_conflicts=conflicts, tenant_quota=quota,
            constraints=constraints, **w,
        )
        if not self.problems:
            self._check_feasible(scenario)
        return scenario

    def _resources(self) -> list[str]:
        extras = sorted({name for n in self.spec.nodes for name in (n.capacity.model_extra or {})})
        return ["cpu_millicores", "memory_mib", *extras]

    def _signals(self, site_region: np.ndarray, node_site: np.ndarray) -> "_Signals":
        spec, T = self.spec, self.T
        intensity = np.full((len(spec.regions), T), np.nan)
        renewable = np.zeros((len(spec.sites), T))
        contracted = np.zeros((len(spec.sites), T))
        background = np.tile(np.array([n.background_utilisation for n in spec.nodes], dtype=float)[:, None], (1, T))
        tables = {"region": self.region, "site": self.site, "node": self.node}
        arrays = {SignalKind.grid_intensity: intensity, SignalKind.renewable_supply: renewable,
                  SignalKind.background_utilisation: background, SignalKind.contracted_supply: contracted}
        # Forecasts: NaN = "no forecast given", filled from the actual series below.
        forecasts = {kind: np.full_like(array, np.nan) for kind, array in arrays.items()}
        seen: set[tuple[str, str, str]] = set()
        kinds: set[str] = set()
        factor_types: dict[str, set[str | None]] = {}  # region id -> factor types of its intensity series
        for i, sig in enumerate(spec.signals):
            path = f"signals[{i}]"
            target_field = SIGNAL_TARGET[sig.signal]
            given = {f: getattr(sig, f) for f in ("region", "site", "node") if getattr(sig, f) is not None}
            if set(given) != {target_field}:
                self.bad(path, f"a {sig.signal.value} signal names exactly one {target_field} (got {', '.join(given) or 'none'})")
                continue
            idx = self.ref(tables[target_field], given[target_field], f"{path}.{target_field}", target_field)
            units = SIGNAL_UNITS[sig.signal]
            factor = units.get(sig.unit)
            if factor is None:
                self.bad(f"{path}.unit", f"unit {sig.unit!r} is not accepted for {sig.signal.value}; use one of {', '.join(units)}")
            if len(sig.values) != T:
                self.bad(f"{path}.values", f"has {len(sig.values)} values but the horizon has {T} slots; give one value per slot")
            key = (sig.signal.value, given[target_field], sig.series)
            if key in seen:
                self.bad(path, f"a second {sig.series} {sig.signal.value} signal for {target_field} {given[target_field]!r}; keep one")
            seen.add(key)
            if sig.signal is not SignalKind.grid_intensity and (sig.factor_type is not None or sig.conversion is not None):
                self.bad(path, f"factor_type and conversion apply to grid_intensity signals only; remove them from this "
                               f"{sig.signal.value} signal")
                continue
            if sig.signal is SignalKind.grid_intensity:
                factor_type = self._factor_type(sig, path)
                factor_types.setdefault(given[target_field], set()).add(factor_type)
                if factor is not None and sig.conversion is not None:
                    factor *= sig.conversion.multiplier
            if idx < 0 or factor is None or len(sig.values) != T:
                continue
            values = np.asarray(sig.values, dtype=float) * factor
            lo, hi = SIGNAL_RANGES[sig.signal]
            bad = np.flatnonzero(~np.isfinite(values) | (values < lo) | (values > hi))
            if bad.size:
                t = int(bad[0])
                self.bad(f"{path}.values[{t}]", f"{sig.values[t]!r} {sig.unit} is outside the plausible range "
                         f"{lo:g}..{hi:g} {next(iter(units))}; check the unit ({bad.size} value(s) out of range)")
                continue
            if sig.signal is SignalKind.grid_intensity:
                kinds.add(sig.intensity_kind)
            (forecasts if sig.series == "forecast" else arrays)[sig.signal][idx] = values
        if len(kinds) > 1:
            self.bad("signals", "grid_intensity signals mix average and marginal factors; use one kind for the whole scenario")
        for g, region in enumerate(spec.regions):
            used = bool((site_region == g).any())
            if used and np.isnan(intensity[g]).any() and (SignalKind.grid_intensity.value, region.id, "actual") not in seen:
                self.bad("signals", f"region {region.id!r} has sites but no grid_intensity signal; add one with {T} values in gCO2/kWh")
        factor_type = self._one_factor_type(factor_types)
        intensity = np.nan_to_num(intensity, nan=0.0)
        actual = {**arrays, SignalKind.grid_intensity: intensity}
        forecast = {kind: np.where(np.isnan(forecasts[kind]), actual[kind], forecasts[kind]) for kind in arrays}
        return _Signals(intensity=intensity, renewable=renewable, background=background, contracted=contracted,
                        intensity_forecast=forecast[SignalKind.grid_intensity],
                        renewable_forecast=forecast[SignalKind.renewable_supply],
                        contracted_forecast=forecast[SignalKind.contracted_supply],
                        intensity_kind=kinds.pop() if len(kinds) == 1 else "average", factor_type=factor_type)

    def _factor_type(self, sig, path: str) -> str | None:
        """The factor type a grid-intensity series has after its conversion, if any."""
        if sig.conversion is None:
            return sig.factor_type
        if sig.factor_type is None:
            self.bad(f"{path}.conversion", "says what the values become but not what they are; set factor_type "
                                           "(direct or lifecycle) to the type of the values as written")
        elif sig.factor_type == sig.conversion.to:
            self.bad(f"{path}.conversion.to", f"the values are already {sig.factor_type}; remove the conversion")
        return sig.conversion.to

    def _one_factor_type(self, by_region: dict[str, set[str | None]]) -> str | None:
        """The scenario's emission-factor type: one for every region, or a problem naming the regions."""
        for region in self.spec.regions:
            if region.residual_mix is not None and region.id in by_region:
                by_region[region.id] = by_region[region.id] | {region.residual_mix.factor_type}
        types = {t for ts in by_region.values() for t in ts}
        if len(types) <= 1:
            return next(iter(types), None)
        listing = "; ".join(f"{r}: {', '.join(sorted(t or 'not stated' for t in ts))}"
                            for r, ts in sorted(by_region.items()))
        self.bad("signals", f"grid_intensity factor types differ between regions ({listing}); direct factors "
                            f"(combustion only) and lifecycle factors (with upstream and construction) do not compare. "
                            f"Fetch every region with the same type (e.g. Electricity Maps with emissionFactorType=direct "
                            f"or lifecycle), or add `conversion: {{to: ..., multiplier: ..., source: ...}}` with a "
                            f"published ratio to the series of the other type, and state factor_type on every series")
        return None

    def _workloads(self, resources, rindex, user_lat, node_capacity) -> dict[str, Any]:
        spec, T = self.spec, self.T
        W, K = len(spec.workloads), len(resources)
        tenant = np.zeros(W, dtype=np.int64)
        replicas = np.zeros(W, dtype=np.int64)
        requests = np.zeros((W, K), dtype=np.int64)
        usage = np.zeros(W)
        sla = np.full(W, np.inf)
        site_lat = np.zeros((W, len(spec.sites)))
        min_sites = np.ones(W, dtype=np.int64)
        earliest = np.zeros(W, dtype=np.int64)
        latest = np.zeros(W, dtype=np.int64)
        duration = np.full(W, T, dtype=np.int64)
        deferrable = np.zeros(W, dtype=bool)
        interruptible = np.zeros(W, dtype=bool)
        min_run = np.ones(W, dtype=np.int64)
        nominal = np.zeros(W, dtype=np.int64)
        run_done = np.zeros(W, dtype=np.int64)
        selectors: list[frozenset] = []
        current: list[list[int] | None] = []
        slot_minutes = spec.horizon.slot_minutes
        start = spec.horizon.start
        for w, wl in enumerate(spec.workloads):
            path = f"workloads[{w}]"
            tenant[w] = self.ref(self.tenant, wl.tenant, f"{path}.tenant", "tenant")
            replicas[w] = wl.replicas
            usage[w] = wl.cpu_usage_fraction
            for name, value in wl.requests.as_dict().items():
                if name not in rindex:
                    self.bad(f"{path}.requests.{name}", f"no node offers resource {name!r} (nodes offer: {', '.join(resources)})")
                else:
                    requests[w, rindex[name]] = value
            if PODS_RESOURCE in rindex:
                requests[w, rindex[PODS_RESOURCE]] = 1  # every replica is one pod
            if wl.sla is not None:
                sla[w] = wl.sla.latency_ms
                users = [self.ref(self.user, u, f"{path}.sla.users[{k}]", "user location") for k, u in enumerate(wl.sla.users)]
                if all(u >= 0 for u in users) and user_lat.shape[0]:
                    site_lat[w] = user_lat[users].max(axis=0)
            if wl.spread is not None:
                min_sites[w] = wl.spread.min_sites
                if wl.spread.min_sites > wl.replicas:
                    self.bad(f"{path}.spread.min_sites", f"{wl.spread.min_sites} sites need at least as many replicas (has {wl.replicas})")
            if wl.deferral is not None:
                d = wl.deferral
                # Slots the job may occupy: those wholly inside [earliest_start, deadline).
                first = math.ceil((d.earliest_start - start).total_seconds() / 60 / slot_minutes)
                end = math.floor((d.deadline - start).total_seconds() / 60 / slot_minutes)
                first, end = max(first, 0), min(end, T)
                length = math.ceil(d.duration_minutes / slot_minutes)
                if d.deadline <= d.earliest_start:
                    self.bad(f"{path}.deferral.deadline", "must be after earliest_start")
                elif end - first < length:
                    self.bad(f"{path}.deferral", f"the window holds {max(end - first, 0)} whole slot(s) inside the horizon "
                             f"but the job needs {length}; widen the window or shorten duration_minutes")
                else:
                    earliest[w], latest[w], duration[w], deferrable[w] = first, end - length, length, True
                    nominal[w] = first
                    self._deferral_options(d, path, first, end - length, length, start, slot_minutes, w,
                                           interruptible, min_run, nominal, run_done)
            selectors.append(frozenset(wl.node_selector.items()))
            if wl.current is not None:
                if len(wl.current) != wl.replicas:
                    self.bad(f"{path}.current", f"lists {len(wl.current)} node(s) for {wl.replicas} replica(s); give one node per replica")
                current.append([self.ref(self.node, n, f"{path}.current[{k}]", "node") for k, n in enumerate(wl.current)])
            else:
                current.append(None)
        return dict(
            workload_tenant=tenant, workload_replicas=replicas, workload_requests=requests,
            workload_cpu_usage=usage, workload_sla_ms=sla, workload_site_latency_ms=site_lat,
            workload_min_sites=min_sites, workload_earliest_slot=earliest,
            workload_latest_start_slot=latest, workload_duration_slots=duration,
            workload_deferrable=deferrable, workload_selector=selectors, workload_current=current,
            workload_interruptible=interruptible, workload_min_run_slots=min_run, workload_nominal_slot=nominal,
            workload_run_done_slots=run_done,
        )

    def _deferral_options(self, d, path: str, first: int, latest: int, length: int, start, slot_minutes: int, w: int,
                          interruptible, min_run, nominal, run_done) -> None:
        """Interruption, minimum run, nominal start and a run in progress of one deferrable job."""
        if d.interruptible:
            interruptible[w] = True
            m = math.ceil((d.min_run_minutes or slot_minutes) / slot_minutes)
            if m > length:
                self.bad(f"{path}.deferral.min_run_minutes", f"{d.min_run_minutes} min is longer than the job's run "
                         f"({length} slot(s) of {slot_minutes} min); lower it or lengthen duration_minutes")
            min_run[w] = min(m, length)
            if d.current_run_minutes:
                if d.earliest_start > start:
                    self.bad(f"{path}.deferral.current_run_minutes", "a run in progress needs earliest_start at or "
                             "before the horizon start (the job runs now)")
                run_done[w] = math.ceil(d.current_run_minutes / slot_minutes)
        else:
            for name in ("min_run_minutes", "current_run_minutes"):
                if getattr(d, name):
                    self.bad(f"{path}.deferral.{name}", "applies to interruptible jobs only; set interruptible: true "
                             "or remove it")
        if d.nominal_start is not None:
            slot = math.ceil((d.nominal_start - start).total_seconds() / 60 / slot_minutes)
            if d.nominal_start < d.earliest_start or d.nominal_start + timedelta(minutes=d.duration_minutes) > d.deadline:
                self.bad(f"{path}.deferral.nominal_start", "must lie in the window: at or after earliest_start, and "
                         "early enough that the run ends by the deadline")
            nominal[w] = min(max(slot, first), latest)

    def _check_feasible(self, sc: Scenario) -> None:
        """Report workloads that no node could ever host, with the tightest reason."""
        eligible = sc.workload_node_eligible
        for w in np.flatnonzero(~eligible.any(axis=1)):
            wl = self.spec.workloads[w]
            path = f"workloads[{w}]"
            fits = (sc.workload_requests[w][None, :] <= sc.node_capacity).all(axis=1)
            sla_ok = sc.workload_node_sla_ok[w]
            if not fits.any():
                self.bad(f"{path}.requests", f"no node is large enough for one replica of {wl.id!r}; lower the requests or add a node")
            elif not sla_ok.any():
                best = float(sc.workload_site_latency_ms[w][sc.node_site].min())
                where = sc.site_ids[int(sc.node_site[np.argmin(sc.workload_site_latency_ms[w][sc.node_site])])]
                self.bad(f"{path}.sla.latency_ms", f"no node can meet {wl.sla.latency_ms:g} ms for all users of {wl.id!r}: "
                         f"the nearest site is {where!r} at {best:.1f} ms; loosen the SLA or add a node nearer the users")
            elif not (fits & sla_ok).any():
                self.bad(f"{path}", f"the nodes within {wl.sla.latency_ms:g} ms of the users of {wl.id!r} are too small for one replica")
            else:
                self.bad(f"{path}", f"no node within the SLA that fits one replica of {wl.id!r} passes every "
                         f"placement rule ({self._excluded_by(sc, w, fits & sla_ok)}); relax one of them")

    def _excluded_by(self, sc: Scenario, w: int, candidates: np.ndarray) -> str:
        """Which rules keep workload w off the `candidates` (N bool), and off how many of them."""
        rules: list[tuple[str, np.ndarray]] = []
        wl = self.spec.workloads[w]
        if wl.node_selector:
            selector = frozenset(wl.node_selector.items())
            rules.append((f"node_selector {dict(wl.node_selector)}",
                          np.fromiter((selector <= labels for labels in sc.node_label_sets), bool, sc.n_nodes)))
        owner, tenant = sc.node_dedicated_tenant, sc.workload_tenant[w]
        pool = (owner < 0) | (owner == tenant)
        if sc.tenant_dedicated[tenant]:
            pool &= owner == tenant
        rules.append((f"tenant {wl.tenant!r}'s dedicated pools", pool))
        names = {"node_affinity": "required node affinity", "taint": "taints it does not tolerate",
                 "pod_affinity": "topology labels its pod affinity needs",
                 "topology_spread": "topology labels its topology spread needs"}
        for rule in sc.constraints.masks:
            i = np.searchsorted(rule.rows, w)
            if i < len(rule.rows) and rule.rows[i] == w:
                rules.append((names[rule.kind], rule.mask[i]))
        n = int(candidates.sum())
        parts = [f"{name} excludes {int((candidates & ~ok).sum())} of {n}" for name, ok in rules if (candidates & ~ok).any()]
        return "; ".join(parts)
