"""A small fluent builder of scenarios for tests.

In the spirit of Kubernetes' `pkg/scheduler/testing/wrappers.go`: a test says
only what matters to it and the builder fills in the rest with plain,
documented defaults. Every method returns the builder, so a scenario reads as
one expression:

    sc = (ScenarioBuilder().slots(2)
          .region("DE", [400, 200])                  # + a grid_intensity signal [gCO2/kWh]
          .site("a", tier="access", pue=1.5)         # region: the last region added
          .node("n1", site="a", cpu=4000, idle_w=100, max_w=200)
          .tenant("t1")
          .user("u", site="a")
          .workload("w", tenant="t1", cpu=2000, sla_ms=5, users=["u"])
          .build())                                  # -> topology.Scenario

`build_dict()` gives the scenario document (a fresh deep copy each call) for
tests of loading and validation: edit it, then pass it to
`topology.scenario_from_dict`.

Defaults, chosen so hand arithmetic stays easy:
- horizon: 2026-06-21T00:00:00Z, 24 slots of 60 min (`slots()` changes it);
- node: 4000 millicores, 8192 MiB, linear power 100 W idle / 200 W max;
- workload: 1 replica requesting 1000 millicores and 512 MiB;
- `site`, `node` and `workload` without `region` / `site` / `tenant` use the
  last region, site or tenant added.

Signal values may be a list (one per slot) or one number repeated over every
slot; repetition happens in `build_dict()`, so `slots()` may come last.
Anything the keyword arguments do not cover goes through `**fields`, merged
verbatim into the item (`can_power_down=False`, `labels={...}`, ...).

`place()` turns ids into a `Placement` through the placement document format.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, Iterable

from edgeplace.topology import Placement, Scenario, scenario_from_dict

#: Start of the default horizon (UTC).
DEFAULT_START = "2026-06-21T00:00:00Z"

Values = float | Iterable[float]


class ScenarioBuilder:
    """Builds a scenario document step by step; see the module docstring."""

    def __init__(self, name: str = "test", start: str = DEFAULT_START):
        self._doc: dict[str, Any] = {
            "version": 1,
            "name": name,
            "horizon": {"start": start, "slots": 24, "slot_minutes": 60},
            "regions": [], "sites": [], "nodes": [], "links": [], "users": [],
            "tenants": [], "workloads": [], "signals": [],
        }
        # (workload index, earliest slot, deadline slot, duration [min]) resolved in build_dict.
        self._windows: list[tuple[int, float, float, int]] = []
        # workload index -> (interruptible, min_run_minutes, nominal slot)
        self._deferral_options: dict[int, tuple[bool, int | None, float | None]] = {}

    # -- horizon -----------------------------------------------------------
    def slots(self, n: int, minutes: int = 60, start: str | None = None) -> "ScenarioBuilder":
        """Horizon of `n` slots of `minutes` each (from `start`, if given)."""
        self._doc["horizon"].update(slots=n, slot_minutes=minutes)
        if start is not None:
            self._doc["horizon"]["start"] = start
        return self

    # -- infrastructure ----------------------------------------------------
    def region(self, id: str, intensity: Values | None = None, unit: str = "gCO2/kWh",
               kind: str | None = None, factor_type: str | None = None,
               residual_mix: dict[str, Any] | None = None) -> "ScenarioBuilder":
        """A grid region; with `intensity`, also its grid_intensity signal (`kind`: average/marginal,
        `factor_type`: direct/lifecycle); `residual_mix` {g_per_kwh, factor_type, source}."""
        self._doc["regions"].append({"id": id, **({"residual_mix": residual_mix} if residual_mix else {})})
        if intensity is not None:
            extra = {"intensity_kind": kind} if kind else {}
            if factor_type:
                extra["factor_type"] = factor_type
            self.signal("grid_intensity", intensity, unit=unit, region=id, **extra)
        return self

    def site(self, id: str, tier: str = "access", region: str | None = None, pue: float | None = None,
             renewable: Values | None = None, renewable_unit: str = "kW", battery_kwh: float | None = None,
             **fields: Any) -> "ScenarioBuilder":
        """A site; `renewable` adds its renewable_supply signal [`renewable_unit`, default kW]."""
        item: dict[str, Any] = {"id": id, "tier": tier, "region": region or self._last("regions")}
        if pue is not None:
            item["pue"] = pue
        if battery_kwh is not None:
            item["battery_kwh"] = battery_kwh
        item.update(fields)
        self._doc["sites"].append(item)
        if renewable is not None:
            self.signal("renewable_supply", renewable, unit=renewable_unit, site=id)
        return self

    def node(self, id: str, site: str | None = None, cpu: int = 4000, memory: int = 8192,
             idle_w: float = 100.0, max_w: float = 200.0, points_w: list[float] | None = None,
             resources: dict[str, int] | None = None, **fields: Any) -> "ScenarioBuilder":
        """A node; `points_w` (11 values) replaces the linear idle/max model; `resources` adds
        named counts (gpu, ...) to the capacity."""
        power = {"points_w": list(points_w)} if points_w is not None else {"idle_w": idle_w, "max_w": max_w}
        item: dict[str, Any] = {"id": id, "site": site or self._last("sites"),
                                "capacity": {"cpu_millicores": cpu, "memory_mib": memory, **(resources or {})},
                                "power": power}
        item.update(fields)
        self._doc["nodes"].append(item)
        return self

    def link(self, a: str, b: str, ms: float, **fields: Any) -> "ScenarioBuilder":
        """An undirected link between sites `a` and `b` with one-way latency `ms`."""
        self._doc["links"].append({"a": a, "b": b, "latency_ms": ms, **fields})
        return self

    def user(self, id: str, site: str | None = None, access_ms: float = 0.0) -> "ScenarioBuilder":
        """A user location at `site` (default: the last site) with access latency `access_ms`."""
        self._doc["users"].append({"id": id, "site": site or self._last("sites"), "access_latency_ms": access_ms})
        return self

    # -- tenants and workloads ------------------------------------------
    def tenant(self, id: str, quota: dict[str, int] | None = None, dedicated: bool = False,
               never_with: list[str] | None = None) -> "ScenarioBuilder":
        item: dict[str, Any] = {"id": id}
        if quota:
            item["quota"] = dict(quota)
        if dedicated or never_with:
            item["isolation"] = {"dedicated_nodes": dedicated, "never_with": list(never_with or [])}
        self._doc["tenants"].append(item)
        return self

    def workload(self, id: str, tenant: str | None = None, cpu: int = 1000, memory: int = 512,
                 replicas: int = 1, sla_ms: float | None = None, users: list[str] | None = None,
                 usage: float | None = None, selector: dict[str, str] | None = None,
                 min_sites: int | None = None, window: tuple[float, float] | None = None,
                 duration_minutes: int | None = None, resources: dict[str, int] | None = None,
                 interruptible: bool = False, min_run_minutes: int | None = None, nominal_slot: float | None = None,
                 **fields: Any) -> "ScenarioBuilder":
        """A workload. `sla_ms` with `users` adds an SLA; `usage` is cpu_usage_fraction;
        `min_sites` a spread rule; `window=(earliest_slot, deadline_slot)` with
        `duration_minutes` makes it a deferrable batch job (slot numbers become
        times from the horizon start in `build_dict()`; fractions are allowed),
        `interruptible` (with `min_run_minutes`) one that may pause, `nominal_slot`
        when it would run without time-shifting."""
        item: dict[str, Any] = {"id": id, "tenant": tenant or self._last("tenants"), "replicas": replicas,
                                "requests": {"cpu_millicores": cpu, "memory_mib": memory, **(resources or {})}}
        if sla_ms is not None:
            item["sla"] = {"latency_ms": sla_ms, "users": list(users or [])}
        if usage is not None:
            item["cpu_usage_fraction"] = usage
        if selector:
            item["node_selector"] = dict(selector)
        if min_sites is not None:
            item["spread"] = {"min_sites": min_sites}
        if window is not None:
            item["kind"] = "batch"
            self._windows.append((len(self._doc["workloads"]), window[0], window[1],
                                  duration_minutes if duration_minutes is not None else 60))
            self._deferral_options[len(self._doc["workloads"])] = (interruptible, min_run_minutes, nominal_slot)
        item.update(fields)
        self._doc["workloads"].append(item)
        return self

    # -- signals -------------------------------------------------------------
    def signal(self, kind: str, values: Values, unit: str, **target: Any) -> "ScenarioBuilder":
        """Any signal: `kind` grid_intensity / renewable_supply / background_utilisation,
        `target` one of region= / site= / node= (plus e.g. intensity_kind=)."""
        self._doc["signals"].append({"signal": kind, **target, "unit": unit,
                                     "values": values if isinstance(values, (int, float)) else list(values)})
        return self

    def background(self, node: str, values: Values, unit: str = "fraction") -> "ScenarioBuilder":
        """Per-slot background CPU utilisation of `node`."""
        return self.signal("background_utilisation", values, unit=unit, node=node)

    # -- output ----------------------------------------------------------------
    def build_dict(self) -> dict[str, Any]:
        """The scenario document (a fresh deep copy; safe to mutate)."""
        doc = copy.deepcopy(self._doc)
        slots = doc["horizon"]["slots"]
        for sig in doc["signals"]:
            if isinstance(sig["values"], (int, float)):
                sig["values"] = [sig["values"]] * slots
        start = datetime.fromisoformat(doc["horizon"]["start"].replace("Z", "+00:00"))
        minutes = doc["horizon"]["slot_minutes"]
        for w, first, deadline, duration in self._windows:
            deferral = doc["workloads"][w].setdefault("deferral", {
                "earliest_start": _iso(start + timedelta(minutes=first * minutes)),
                "deadline": _iso(start + timedelta(minutes=deadline * minutes)),
                "duration_minutes": duration,
            })
            interruptible, min_run, nominal = self._deferral_options.get(w, (False, None, None))
            if interruptible:
                deferral["interruptible"] = True
            if min_run is not None:
                deferral["min_run_minutes"] = min_run
            if nominal is not None:
                deferral["nominal_start"] = _iso(start + timedelta(minutes=nominal * minutes))
        return doc

    def build(self) -> Scenario:
        """Validate and compile: the `topology.Scenario` (raises `InputError` like a file would)."""
        return scenario_from_dict(self.build_dict(), source="<builder>")

    def _last(self, table: str) -> str:
        items = self._doc[table]
        if not items:
            raise ValueError(f"add a {table[:-1]} first (or name one explicitly)")
        return items[-1]["id"]


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def place(scenario: Scenario, workloads: dict[str, Any], powered_down: dict[str, list[int]] | None = None) -> Placement:
    """A `Placement` from ids, in the placement document format (see `edgeplace.topology.placement`).

    `workloads` maps a workload id to a list of replicas (node id per replica,
    or a per-slot list of node ids / None) or to a full entry such as
    `{"start_slot": 3, "replicas": ["n1"]}`. Workloads left out are unplaced.
    """
    entries = {w: (v if isinstance(v, dict) else {"replicas": list(v)}) for w, v in workloads.items()}
    doc: dict[str, Any] = {"version": 1, "workloads": entries}
    if powered_down is not None:
        doc["powered_down"] = powered_down
    return Placement.from_dict(scenario, doc)


def tiny(owned: bool = True) -> ScenarioBuilder:
    """The 'tiny' scenario (2 slots; access site `a` with PV, cloud site `c` 10 ms away;
    n2 always on; one workload `w` of 2000 millicores with a 5 ms SLA for user `u`).
    `owned=False` rents both sites' nodes by the hour: their embodied carbon is then
    charged per powered slot and priced in the objective."""
    return (ScenarioBuilder("tiny").slots(2)
            .region("DE", [400, 200])
            .site("a", tier="access", pue=1.5, pv_kwp=1, renewable=[0, 0.1], owned=owned)
            .site("c", tier="cloud", pue=1.0, owned=owned)
            .node("n1", site="a")
            .node("n2", site="c", can_power_down=False)
            .link("a", "c", 10)
            .user("u", site="a", access_ms=1)
            .tenant("t1")
            .workload("w", tenant="t1", cpu=2000, memory=1024, sla_ms=5, users=["u"]))


__all__ = ["DEFAULT_START", "ScenarioBuilder", "place", "tiny"]


def nodes_of(scenario: Scenario, placement: Placement, workload: str) -> list[str | None]:
    """Node id of each replica of `workload` in the first slot it runs (None = unplaced)."""
    w = scenario.index_of("workload", workload)
    r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
    out = []
    for row in placement.assign[r0:r0 + n]:
        run = row[row >= 0]
        out.append(scenario.node_ids[int(run[0])] if run.size else None)
    return out


def linear_without_batteries(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with every SPECpower curve replaced by its end points (idle = 0 %,
    max = 100 %) and every battery removed: the cases where the optimizer's
    model objective equals the evaluated emissions exactly."""
    for node in doc["nodes"]:
        pts = node["power"].get("points_w")
        if pts is not None:
            node["power"] = {"idle_w": pts[0], "max_w": pts[-1]}
    for site in doc["sites"]:
        site.pop("battery_kwh", None)
    return doc


def run_cli(add_commands, argv: list[str]):
    """Parse `argv` and call its handler, with a parser holding only the commands of
    one CLI extension module (its `add_commands`), as `edgeplace.cli.main` would."""
    import argparse

    parser = argparse.ArgumentParser(prog="edgeplace")
    handlers = add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return handlers[args.command](args)

