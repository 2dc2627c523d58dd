"""The `--vary` keys of `edgeplace whatif`: each one a transform of a scenario spec.

A key is written `NAME` or `NAME[TARGET]` with comma-separated values,
`--vary 'pv_kwp[agg-mainz]=0,25,50'`. `parse_vary` checks the name, the
target and every value against the scenario up front, so a sweep never
starts with a typo in it; `grid` makes every combination of the axes; and
`apply_case` turns one combination into a varied spec (plus solver options),
applied in the order the keys were given. Specs are frozen pydantic models:
every transform returns a new one (`model_copy(update=...)`), and the result
is validated again as a whole (`ScenarioSpec.model_validate`) because
`model_copy` does not validate.

The keys (also printed by `variation_help()` and in docs/WHATIF.md):

====================================  ==============================================================
key                                   meaning
====================================  ==============================================================
sla.scale[=SEL]=F,...                 multiply the latency SLA of the selected workloads by F
sla.latency_ms[SEL]=MS,...            set the latency SLA of the selected workloads to MS
pv_kwp[SITE]=KWP,...                  on-site PV peak power; the supply profile scales with it
battery_kwh[SITE|*]=KWH,...           on-site battery capacity
pue[SITE|*]=PUE,...                   site PUE
intensity.scale[REGION]=F,...         multiply grid intensity (actual and forecast) of a region (all without a target)
region[SITE]=REGION,...               move a site to another grid region
site[SITE]=on,off                     off: the site's nodes are removed (the network point, its links and users stay)
nodes[SITE]=N,...                     number of nodes at a site (copies of its last node, or the last ones removed)
add=FILE|none,...                     merge a YAML/JSON fragment (sites, nodes, links, users, regions, tenants, workloads, signals)
isolation[TENANT]=on,off              off: no dedicated pool, no never_with (every tenant without a target)
demand.scale[SEL]=F,...               replicas x F, rounded half up, at least 1
solver=greedy,cpsat,milp              the solver
solver.time_limit_s=S,...             the solver's time limit [s]
solver.seed=N,...                     the solvers' random seed
solver.threads=N,...                  solver threads
====================================  ==============================================================

Workload selectors (SEL): an SLA class, a tenant id, a workload id or an
SLA value, optionally with an explicit prefix (`class:`, `tenant:`,
`workload:`); bare names are tried in that order. The SLA classes follow the
bands of the bundled example (examples/metro-de.yaml, from its sources):
`tight` <= 5 ms (user-plane functions, the IMT-2020 URLLC/eMBB range),
`interactive` 5-20 ms (AR, caching, video), `relaxed` > 20 ms (back office).
`5ms` selects the workloads whose SLA is 5 ms now. Workloads without an SLA
are never selected by SLA keys.

PV (`pv_kwp`). A site that already has PV (pv_kwp > 0) and a
renewable_supply signal keeps its profile, scaled by new / old kWp: the file's
profile may be measured or modelled with the site's own tilt, and scaling
keeps it. A site gaining PV gets a clear-sky profile from its coordinates
(`edgeplace.topology.signals.pv.clear_sky_kw`: pvlib, Ineichen-Perez clear sky, 30 deg
south, 14 % system loss) when it has a `location` and pvlib is installed;
otherwise the per-kWp profile of the nearest PV site (great-circle distance
between `location`s; without coordinates the first PV site in the same grid
region, then the first in the file) times its new kWp. Either is added to
any renewable supply the site already had (then taken to be non-PV, e.g.
wind), in each series (actual, forecast) the site or the donor has.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from edgeplace.topology.errors import InputError, Problem, pydantic_problems
from edgeplace.topology.load import SIGNAL_UNITS, read_document
from edgeplace.topology.spec import Isolation, Node, ScenarioSpec, Signal, SignalKind, Sla, Workload

#: SLA classes [ms]: upper bounds (inclusive), in the bands of the bundled
#: example (examples/metro-de.yaml: 5 ms user-plane functions, 8-20 ms AR /
#: caching / video, 50-100 ms back office).
SLA_CLASSES: dict[str, tuple[float, float]] = {
    "tight": (0.0, 5.0),
    "interactive": (5.0, 20.0),
    "relaxed": (20.0, math.inf),
}
#: Value written in a grid for "leave unchanged" (add=none).
NONE = "none"
#: Largest replica count a workload may have (edgeplace.topology.spec.Workload.replicas).
_MAX_REPLICAS = 10_000


# ---------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Variation:
    """One `--vary` key.

    `target` says what goes in brackets: "none" (no brackets), "optional",
    "required". `resolve_target(spec, text)` checks it (raising ValueError
    with the fix); `parse_value(spec, text)` turns one value into a plain
    JSON-able value (raising ValueError); `apply(spec, target, value)`
    returns the varied spec. Solver keys set `solver_field` instead of
    `apply`: the value goes into `SolveOptions`.
    """

    name: str
    target: str
    target_help: str
    values_help: str
    help: str
    parse_value: Callable[[ScenarioSpec, str], Any]
    resolve_target: Callable[[ScenarioSpec, str | None], str | None]
    apply: Callable[[ScenarioSpec, Any, Any], ScenarioSpec] | None = None
    solver_field: str | None = None
    #: Workload keys: "sla" (workloads with an SLA) or "any"; `apply` then
    #: gets the frozenset of selected workload ids instead of the selector.
    selects: str | None = None

    def usage(self) -> str:
        key = self.name if self.target == "none" else f"{self.name}[{self.target_help}]"
        return f"{key}={self.values_help}"


def variation_registry() -> dict[str, Variation]:
    """Every `--vary` key by name (see the module docstring)."""
    sel = "SEL"
    items = [
        Variation("sla.scale", "optional", sel, "F,...", "multiply latency SLAs by F (no target: every SLA)",
                  _positive_float, _workload_selector, _apply_sla_scale, selects="sla"),
        Variation("sla.latency_ms", "required", sel, "MS,...", "set the latency SLA of the selected workloads [ms]",
                  _positive_float, _workload_selector, _apply_sla_ms, selects="sla"),
        Variation("pv_kwp", "required", "SITE", "KWP,...", "on-site PV peak power [kWp]; the supply profile scales with it",
                  _nonneg_float, _site_target, _apply_pv),
        Variation("battery_kwh", "required", "SITE|*", "KWH,...", "on-site battery capacity [kWh]",
                  _nonneg_float, _site_or_all, _apply_site_field("battery_kwh")),
        Variation("pue", "required", "SITE|*", "PUE,...", "site power usage effectiveness (1-5)",
                  _pue_value, _site_or_all, _apply_site_field("pue")),
        Variation("intensity.scale", "optional", "REGION", "F,...", "multiply grid intensity (no target: every region)",
                  _nonneg_float, _region_target, _apply_intensity_scale),
        Variation("region", "required", "SITE", "REGION,...", "move a site to another grid region",
                  _region_value, _site_target, _apply_region),
        Variation("site", "required", "SITE", "on|off,...", "off removes the site's nodes (its links and users stay)",
                  _on_off, _site_target, _apply_site_on_off),
        Variation("nodes", "required", "SITE", "N,...", "number of nodes at a site (copies of its last node, or fewer)",
                  _count, _site_target, _apply_node_count),
        Variation("add", "none", "", "FILE|none,...", "merge a scenario fragment (YAML/JSON with sites, nodes, links, ...)",
                  _fragment, _no_target, _apply_fragment),
        Variation("isolation", "optional", "TENANT", "on|off,...",
                  "off: no dedicated pool, no never_with (no target: every tenant)",
                  _on_off, _tenant_target, _apply_isolation),
        Variation("demand.scale", "optional", sel, "F,...", "replicas x F, rounded half up, >= 1 (no target: every workload)",
                  _positive_float, _workload_selector, _apply_demand, selects="any"),
        Variation("solver", "none", "", "greedy|cpsat|milp,...", "the solver", _solver_name, _no_target,
                  solver_field="solver"),
        Variation("solver.time_limit_s", "none", "", "S,...", "the solver's time limit [s]", _positive_float, _no_target,
                  solver_field="time_limit_s"),
        Variation("solver.seed", "none", "", "N,...", "the solvers' random seed", _int_value, _no_target,
                  solver_field="seed"),
        Variation("solver.threads", "none", "", "N,...", "solver threads", _count_positive, _no_target,
                  solver_field="workers"),
    ]
    return {v.name: v for v in items}


def variation_help(registry: dict[str, Variation] | None = None) -> str:
    """One line per key, for `--help` and error messages."""
    registry = registry or variation_registry()
    return "\n".join(f"  {v.usage():32s} {v.help}" for v in registry.values())


# ---------------------------------------------------------------------------
# Parsing the command line


@dataclass(frozen=True)
class Axis:
    """One `--vary` argument, checked: `key` as written (`pv_kwp[agg-mainz]`),
    the variation's `name`, the resolved `target`, and the values with the
    labels they were written as."""

    key: str
    name: str
    target: str | None
    labels: tuple[str, ...]
    values: tuple[Any, ...]


def parse_vary(text: str, spec: ScenarioSpec, registry: dict[str, Variation] | None = None) -> Axis:
    """Parse and check `NAME[TARGET]=V1,V2,...` against `spec`; raise InputError with the fix."""
    registry = registry or variation_registry()

    def bad(message: str) -> InputError:
        return InputError("--vary", [Problem(text, message)])

    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not rest.strip():
        raise bad("write KEY=V1,V2,... (e.g. sla.scale=0.5,1,2); valid keys:\n" + variation_help(registry))
    name, target = key, None
    if key.endswith("]") and "[" in key:
        name, _, target = key[:-1].partition("[")
        target = target.strip()
        if not target:
            raise bad(f"empty target in {key!r}; write {name}[ID]")
    variation = registry.get(name)
    if variation is None:
        raise bad(f"unknown key {name!r}; valid keys:\n" + variation_help(registry))
    if target is None and variation.target == "required":
        raise bad(f"{name} needs a target: {variation.usage()}")
    if target is not None and variation.target == "none":
        raise bad(f"{name} takes no target: {variation.usage()}")
    try:
        resolved = variation.resolve_target(spec, target)
    except ValueError as exc:
        raise bad(str(exc)) from None
    labels = tuple(v.strip() for v in rest.split(","))
    if any(not v for v in labels):
        raise bad("empty value in the list; write V1,V2,... without blanks")
    if len(set(labels)) != len(labels):
        raise bad("a value is listed twice")
    values = []
    for label in labels:
        try:
            values.append(variation.parse_value(spec, label))
        except ValueError as exc:
            raise bad(f"value {label!r}: {exc}") from None
    return Axis(key=key, name=name, target=resolved, labels=labels, values=tuple(values))


def parse_axes(texts: list[str], spec: ScenarioSpec, registry: dict[str, Variation] | None = None) -> list[Axis]:
    """Every `--vary` argument; one key may appear once."""
    registry = registry or variation_registry()
    axes = [parse_vary(t, spec, registry) for t in texts]
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise InputError("--vary", [Problem(axis.key, "is given twice; list all its values in one --vary")])
        seen.add(axis.key)
    return axes


#: A case: one value per axis, as (axis key, label, value).
Case = tuple[tuple[str, str, Any], ...]


def grid(axes: list[Axis]) -> list[Case]:
    """Every combination of the axes' values (the first axis varies slowest)."""
    per_axis = [[(a.key, label, value) for label, value in zip(a.labels, a.values)] for a in axes]
    return [tuple(combo) for combo in itertools.product(*per_axis)]


def case_label(case: Case) -> str:
    return " ".join(f"{key}={label}" for key, label, _ in case) or "base"


def apply_case(spec: ScenarioSpec, case: Case, options: Any,
               registry: dict[str, Variation] | None = None) -> tuple[ScenarioSpec, Any]:
    """The varied spec and solver options of one case (keys applied in order).

    `options` is a frozen dataclass (`edgeplace.optimizer.solve.SolveOptions`); solver
    keys replace its fields. Raises InputError when the varied spec is not a
    valid scenario (the message names the case).
    """
    registry = registry or variation_registry()
    solver_updates: dict[str, Any] = {}
    base = spec  # targets and selectors refer to the scenario as written, not as varied so far
    for key, _label, value in case:
        name, target = _split_key(key)
        variation = registry[name]
        if variation.solver_field is not None:
            solver_updates[variation.solver_field] = value
            continue
        resolved = variation.resolve_target(base, target)
        if variation.selects is not None:
            resolved = frozenset(selected_workloads(base, resolved, need_sla=variation.selects == "sla"))
        assert variation.apply is not None  # every non-solver key has a transform (registry invariant)
        spec = variation.apply(spec, resolved, value)
    try:
        spec = ScenarioSpec.model_validate(spec.model_dump())
    except ValidationError as exc:
        raise InputError(f"whatif case {case_label(case)}", pydantic_problems(exc.errors())) from None
    return spec, (replace(options, **solver_updates) if solver_updates else options)


def _split_key(key: str) -> tuple[str, str | None]:
    if key.endswith("]") and "[" in key:
        name, _, target = key[:-1].partition("[")
        return name, target
    return key, None


# ---------------------------------------------------------------------------
# Values


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _positive_float(_spec: ScenarioSpec, text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _nonneg_float(_spec: ScenarioSpec, text: str) -> float:
    value = _number(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _pue_value(_spec: ScenarioSpec, text: str) -> float:
    value = _number(text)
    if not 1.0 <= value <= 5.0:
        raise ValueError("a PUE is between 1 and 5")
    return value


def _int_value(_spec: ScenarioSpec, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _count(spec: ScenarioSpec, text: str) -> int:
    value = _int_value(spec, text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _count_positive(spec: ScenarioSpec, text: str) -> int:
    value = _int_value(spec, text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _on_off(_spec: ScenarioSpec, text: str) -> bool:
    low = text.lower()
    if low in ("on", "true", "yes", "1"):
        return True
    if low in ("off", "false", "no", "0"):
        return False
    raise ValueError("expected on or off")


def _solver_name(_spec: ScenarioSpec, text: str) -> str:
    from edgeplace.optimizer.solve import SOLVERS

    if text not in SOLVERS:
        raise ValueError(f"choose one of {', '.join(SOLVERS)}")
    return text


def _region_value(spec: ScenarioSpec, text: str) -> str:
    ids = [r.id for r in spec.regions]
    if text not in ids:
        raise ValueError(f"unknown region (known: {', '.join(ids)})")
    return text


def _fragment(_spec: ScenarioSpec, text: str) -> dict | None:
    """`none`, or a fragment file read now (so remote workers need no file access)."""
    if text.lower() == NONE:
        return None
    path = Path(text)
    try:
        doc = read_document(path)
    except InputError as exc:
        raise ValueError(f"cannot read the fragment: {'; '.join(str(p) for p in exc.problems)}") from None
    allowed = {"regions", "sites", "nodes", "links", "users", "tenants", "workloads", "signals"}
    if not isinstance(doc, dict) or not doc or set(doc) - allowed:
        extra = sorted(set(doc) - allowed) if isinstance(doc, dict) else []
        raise ValueError(f"a fragment is a mapping of lists: {', '.join(sorted(allowed))}"
                         + (f" (unknown: {', '.join(extra)})" if extra else ""))
    if not all(isinstance(v, list) for v in doc.values()):
        raise ValueError("every entry of a fragment is a list (like the same entry in a scenario)")
    return {"file": str(path), "doc": doc}


# ---------------------------------------------------------------------------
# Targets


def _known(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")


def _no_target(_spec: ScenarioSpec, _target: str | None) -> None:
    return None


def _site_target(spec: ScenarioSpec, target: str | None) -> str:
    ids = [s.id for s in spec.sites]
    if target not in ids:
        raise ValueError(f"unknown site {target!r} (known: {_known(ids)})")
    return target


def _site_or_all(spec: ScenarioSpec, target: str | None) -> str:
    return "*" if target == "*" else _site_target(spec, target)


def _region_target(spec: ScenarioSpec, target: str | None) -> str | None:
    ids = [r.id for r in spec.regions]
    if target is not None and target not in ids:
        raise ValueError(f"unknown region {target!r} (known: {_known(ids)})")
    return target


def _tenant_target(spec: ScenarioSpec, target: str | None) -> str | None:
    ids = [t.id for t in spec.tenants]
    if target is not None and target not in ids:
        raise ValueError(f"unknown tenant {target!r} (known: {_known(ids)})")
    return target


def _workload_selector(spec: ScenarioSpec, target: str | None) -> str | None:
    """Check a selector selects something; return it in explicit form (`kind:value`)."""
    if target is None:
        return None
    kind, _, value = target.partition(":") if ":" in target else ("", "", target)
    tenants = {t.id for t in spec.tenants}
    workloads = {w.id for w in spec.workloads}
    if not kind:
        if value in SLA_CLASSES:
            kind = "class"
        elif value in tenants:
            kind = "tenant"
        elif value in workloads:
            kind = "workload"
        elif value.endswith("ms"):
            kind = "ms"
            value = value[:-2]
    explicit = f"{kind}:{value}"
    if kind == "ms":
        try:
            float(value)
        except ValueError:
            kind = ""
    if kind not in ("class", "tenant", "workload", "ms") or (
            (kind == "class" and value not in SLA_CLASSES) or (kind == "tenant" and value not in tenants)
            or (kind == "workload" and value not in workloads)):
        raise ValueError(f"selector {target!r} matches nothing; use an SLA class ({', '.join(SLA_CLASSES)}), "
                         f"a tenant ({_known(sorted(tenants))}), a workload id, or an SLA value like 5ms")
    if not any(_selected(w, explicit) for w in spec.workloads):
        raise ValueError(f"selector {target!r} selects no workload")
    return explicit


def _selected(wl: Workload, selector: str | None, need_sla: bool = False) -> bool:
    if need_sla and wl.sla is None:
        return False
    if selector is None:
        return True
    kind, _, value = selector.partition(":")
    if kind == "tenant":
        return wl.tenant == value
    if kind == "workload":
        return wl.id == value
    if wl.sla is None:
        return False
    if kind == "class":
        lo, hi = SLA_CLASSES[value]
        return lo < wl.sla.latency_ms <= hi
    return abs(wl.sla.latency_ms - float(value)) < 1e-9  # kind == "ms"


def selected_workloads(spec: ScenarioSpec, selector: str | None, need_sla: bool = True) -> list[str]:
    """Ids of the workloads a (resolved) selector picks."""
    return [w.id for w in spec.workloads if _selected(w, selector, need_sla)]


# ---------------------------------------------------------------------------
# Transforms


def _map_workloads(spec: ScenarioSpec, ids: frozenset[str], fn: Callable[[Workload], Workload]) -> ScenarioSpec:
    return spec.model_copy(update={"workloads": [fn(w) if w.id in ids else w for w in spec.workloads]})


def _with_sla(wl: Workload, latency_ms: float) -> Workload:
    assert wl.sla is not None  # SLA keys select only workloads with an SLA (selects="sla")
    return wl.model_copy(update={"sla": Sla(latency_ms=latency_ms, users=list(wl.sla.users))})


def _apply_sla_scale(spec: ScenarioSpec, ids: frozenset[str], factor: float) -> ScenarioSpec:
    return _map_workloads(spec, ids, lambda w: _with_sla(w, w.sla.latency_ms * factor))


def _apply_sla_ms(spec: ScenarioSpec, ids: frozenset[str], ms: float) -> ScenarioSpec:
    return _map_workloads(spec, ids, lambda w: _with_sla(w, ms))


def _apply_demand(spec: ScenarioSpec, ids: frozenset[str], factor: float) -> ScenarioSpec:
    def grow(wl: Workload) -> Workload:
        replicas = min(_MAX_REPLICAS, max(1, math.floor(wl.replicas * factor + 0.5)))
        if replicas == wl.replicas:
            return wl
        update: dict[str, Any] = {"replicas": replicas, "current": None}
        if wl.spread is not None and wl.spread.min_sites > replicas:
            update["spread"] = wl.spread.model_copy(update={"min_sites": replicas})
        return wl.model_copy(update=update)

    return _map_workloads(spec, ids, grow)


def _apply_site_field(field_name: str) -> Callable[[ScenarioSpec, str | None, Any], ScenarioSpec]:
    def apply(spec: ScenarioSpec, target: str | None, value: float) -> ScenarioSpec:
        return spec.model_copy(update={"sites": [s.model_copy(update={field_name: value}) if target in ("*", s.id) else s
                                                 for s in spec.sites]})
    return apply


def _apply_intensity_scale(spec: ScenarioSpec, target: str | None, factor: float) -> ScenarioSpec:
    signals = [s.model_copy(update={"values": [v * factor for v in s.values]})
               if s.signal is SignalKind.grid_intensity and target in (None, s.region) else s
               for s in spec.signals]
    return spec.model_copy(update={"signals": signals})


def _apply_region(spec: ScenarioSpec, site: str | None, region: str) -> ScenarioSpec:
    return spec.model_copy(update={"sites": [s.model_copy(update={"region": region}) if s.id == site else s
                                             for s in spec.sites]})


def _without_nodes(spec: ScenarioSpec, gone: set[str]) -> ScenarioSpec:
    """Drop nodes, their signals, and `current` placements that name them."""
    if not gone:
        return spec
    nodes = [n for n in spec.nodes if n.id not in gone]
    signals = [s for s in spec.signals if s.node not in gone]
    workloads = [w.model_copy(update={"current": None}) if w.current and set(w.current) & gone else w
                 for w in spec.workloads]
    return spec.model_copy(update={"nodes": nodes, "signals": signals, "workloads": workloads})


def _apply_site_on_off(spec: ScenarioSpec, site: str | None, on: bool) -> ScenarioSpec:
    if on:
        return spec
    return _without_nodes(spec, {n.id for n in spec.nodes if n.site == site})


def _apply_node_count(spec: ScenarioSpec, site: str | None, count: int) -> ScenarioSpec:
    here = [n for n in spec.nodes if n.site == site]
    if count <= len(here):
        return _without_nodes(spec, {n.id for n in here[count:]})
    if not here:
        raise InputError(f"nodes[{site}]", [Problem("", f"site {site!r} has no node to copy; add nodes with add=FILE")])
    taken = {n.id for n in spec.nodes}
    template = here[-1]
    added: list[Node] = []
    k = 1
    while len(here) + len(added) < count:
        ident = f"{site}-added-{k}"
        k += 1
        if ident not in taken:
            added.append(template.model_copy(update={"id": ident}))
    return spec.model_copy(update={"nodes": [*spec.nodes, *added]})


def _apply_isolation(spec: ScenarioSpec, tenant: str | None, on: bool) -> ScenarioSpec:
    if on:
        return spec
    freed = {t.id for t in spec.tenants if tenant in (None, t.id)}
    tenants = []
    for t in spec.tenants:
        if t.id in freed:
            tenants.append(t.model_copy(update={"isolation": Isolation()}))
        else:
            keep = [o for o in t.isolation.never_with if o not in freed]
            tenants.append(t.model_copy(update={"isolation": t.isolation.model_copy(update={"never_with": keep})}))
    nodes = [n.model_copy(update={"dedicated_to": None}) if n.dedicated_to in freed else n for n in spec.nodes]
    return spec.model_copy(update={"tenants": tenants, "nodes": nodes})


def _apply_fragment(spec: ScenarioSpec, _target: str | None, fragment: dict | None) -> ScenarioSpec:
    if fragment is None:
        return spec
    doc = spec.model_dump()
    for name, items in fragment["doc"].items():
        doc[name] = [*doc[name], *items]
    try:
        merged = ScenarioSpec.model_validate(doc)
    except ValidationError as exc:
        raise InputError(fragment["file"], pydantic_problems(exc.errors())) from None
    # New PV sites without a supply signal get one (the rule of pv_kwp).
    old = {s.id for s in spec.sites}
    for site in merged.sites:
        if site.id not in old and site.pv_kwp > 0 and not _supply_signals(merged, site.id):
            merged = _set_pv(merged.model_copy(update={"sites": [s.model_copy(update={"pv_kwp": 0.0}) if s.id == site.id else s
                                                                  for s in merged.sites]}), site.id, site.pv_kwp)
    return merged


# ---------------------------------------------------------------------------
# PV


def _supply_signals(spec: ScenarioSpec, site: str) -> list[Signal]:
    return [s for s in spec.signals if s.signal is SignalKind.renewable_supply and s.site == site]


def _kw(signal: Signal) -> list[float]:
    factor = SIGNAL_UNITS[SignalKind.renewable_supply].get(signal.unit)
    if factor is None:
        raise InputError(f"renewable_supply signal of site {signal.site!r}",
                         [Problem("unit", f"unit {signal.unit!r} is not accepted; use one of "
                                          f"{', '.join(SIGNAL_UNITS[SignalKind.renewable_supply])}")])
    return [v * factor for v in signal.values]


def _distance_km(a, b) -> float:
    """Great-circle distance between two `Location`s [km] (haversine, mean Earth radius 6371 km)."""
    la1, lo1, la2, lo2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def _clear_sky_kw(spec: ScenarioSpec, site_id: str, kwp: float) -> list[float] | None:
    """Clear-sky PV per slot [kW] from the site's coordinates (`edgeplace.topology.signals.pv`),
    or None when the site has no `location` or pvlib is not installed."""
    site = next(s for s in spec.sites if s.id == site_id)
    if site.location is None:
        return None
    try:
        from edgeplace.topology.signals.pv import clear_sky_kw
        from edgeplace.topology.signals.series import SlotGrid

        values = clear_sky_kw(site.location.lat, site.location.lon, kwp, SlotGrid.from_horizon(spec.horizon))
    except ImportError:  # pvlib is an optional dependency: fall back to a donor's profile
        return None
    return [float(v) for v in values]


def _pv_per_kwp(spec: ScenarioSpec, site_id: str) -> dict[str, list[float]]:
    """Supply per kWp [kW/kWp] by series ("actual", maybe "forecast") for a site gaining PV:
    the profile of the nearest PV site (see the module docstring)."""
    site = next(s for s in spec.sites if s.id == site_id)
    donors = [s for s in spec.sites if s.id != site_id and s.pv_kwp > 0
              and any(sig.series == "actual" for sig in _supply_signals(spec, s.id))]
    if not donors:
        raise InputError(f"pv_kwp[{site_id}]", [Problem("", "no site in the scenario has PV with a renewable_supply "
                                                            "signal to scale from; add a supply signal for the site")])
    if site.location is not None and any(d.location is not None for d in donors):
        donor = min((d for d in donors if d.location is not None), key=lambda d: _distance_km(site.location, d.location))
    else:
        donor = next((d for d in donors if d.region == site.region), donors[0])
    return {sig.series: [v / donor.pv_kwp for v in _kw(sig)] for sig in _supply_signals(spec, donor.id)}


def _set_pv(spec: ScenarioSpec, site_id: str, kwp: float) -> ScenarioSpec:
    site = next(s for s in spec.sites if s.id == site_id)
    own = _supply_signals(spec, site_id)
    signals = list(spec.signals)
    if site.pv_kwp > 0 and any(s.series == "actual" for s in own):
        factor = kwp / site.pv_kwp
        signals = [s.model_copy(update={"values": [v * factor for v in s.values]}) if s in own else s for s in signals]
    elif kwp > 0:
        clear = _clear_sky_kw(spec, site_id, kwp)
        per_kwp = {"actual": [v / kwp for v in clear]} if clear is not None else _pv_per_kwp(spec, site_id)
        own_by_series = {s.series: s for s in own}
        # Each series the site or the donor has gets the PV added: a site
        # without a forecast series would otherwise plan on its actual one.
        for series in sorted(set(per_kwp) | set(own_by_series)):
            profile = per_kwp.get(series, per_kwp["actual"])
            existing = own_by_series.get(series)
            if existing is not None:
                signals[signals.index(existing)] = existing.model_copy(update={
                    "unit": "kW", "values": [b + p * kwp for b, p in zip(_kw(existing), profile)]})
                continue
            actual = own_by_series.get("actual")
            base = _kw(actual) if actual is not None else [0.0] * len(profile)
            signals.append(Signal(signal=SignalKind.renewable_supply, site=site_id, unit="kW", series=series,
                                  values=[b + p * kwp for b, p in zip(base, profile)]))
    sites = [s.model_copy(update={"pv_kwp": kwp}) if s.id == site_id else s for s in spec.sites]
    return spec.model_copy(update={"sites": sites, "signals": signals})


def _apply_pv(spec: ScenarioSpec, site: str | None, kwp: float) -> ScenarioSpec:
    assert site is not None  # pv_kwp requires a target (registry)
    return _set_pv(spec, site, kwp)


__all__ = [
    "SLA_CLASSES",
    "Axis",
    "Case",
    "Variation",
    "apply_case",
    "case_label",
    "grid",
    "parse_axes",
    "parse_vary",
    "selected_workloads",
    "variation_help",
    "variation_registry",
]
