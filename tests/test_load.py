"""edgeplace.topology.load: reading files, every input problem with its path, units, and the compiled arrays."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder, place, tiny
from edgeplace.topology import InputError, Problem, load_scenario, scenario_from_dict
from edgeplace.topology.load import SIGNAL_UNITS, read_document


def base() -> ScenarioBuilder:
    """A small scenario that uses every feature; the comments give list positions used in paths."""
    return (ScenarioBuilder("base").slots(2)
            .region("DE", [400, 200])                        # regions[0], signals[0]
            .region("FR", [50, 60])                          # regions[1], signals[1]
            .site("a", region="DE", pue=1.5, renewable=[0, 0.1])  # sites[0], signals[2]
            .site("c", tier="cloud", region="FR", pue=1.1)   # sites[1]
            .node("n1", site="a")                            # nodes[0]
            .node("n2", site="c", can_power_down=False)      # nodes[1]
            .node("n3", site="c", dedicated_to="t2")         # nodes[2]
            .link("a", "c", 10)                              # links[0]
            .user("u", site="a", access_ms=1)                # users[0]
            .tenant("t1", quota={"cpu_millicores": 8000}, never_with=["t2"])  # tenants[0]
            .tenant("t2", dedicated=True)                    # tenants[1]
            .workload("web", tenant="t1", cpu=2000, replicas=2, sla_ms=15, users=["u"],
                      min_sites=2, current=["n1", "n2"])     # workloads[0]
            .workload("job", tenant="t2", window=(0, 2), duration_minutes=60)  # workloads[1]
            .background("n1", [0.1, 0.2]))                   # signals[3]


# -- document surgery by path ("nodes[0].capacity.cpu_millicores") -------------

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(doc: Any, path: str) -> tuple[Any, Any]:
    keys = [int(i) if i else k for k, i in _TOKEN.findall(path)]
    for key in keys[:-1]:
        doc = doc[key]
    return doc, keys[-1]


def setp(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, key = _walk(doc, path)
        parent[key] = value
    return mutate


def delp(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, key = _walk(doc, path)
        del parent[key]
    return mutate


def appendp(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, key = _walk(doc, path)
        parent[key].append(value)
    return mutate


def problems_of(doc: Any) -> list[Problem]:
    with pytest.raises(InputError, match=r"<scenario>: \d+ problem\(s\)") as info:
        scenario_from_dict(doc)
    assert info.value.problems, "an InputError must carry at least one problem"
    return info.value.problems


def assert_problem(problems: list[Problem], path: str, match: str) -> Problem:
    for p in problems:
        if p.path == path and re.search(match, p.message):
            return p
    raise AssertionError(f"no problem at {path!r} matching {match!r} in:\n" + "\n".join(map(str, problems)))


def test_base_scenario_is_valid():
    sc = base().build()
    assert sc.node_ids == ["n1", "n2", "n3"] and sc.source == "<builder>"


# -- field-level problems (pydantic) ----------------------------------------------

FIELD_CASES = [
    ("missing-capacity", delp("nodes[0].capacity"), "nodes[0].capacity", "is required but missing"),
    ("missing-name", delp("name"), "name", "is required but missing"),
    ("missing-start", delp("horizon.start"), "horizon.start", "is required but missing"),
    ("missing-sla-latency", delp("workloads[0].sla.latency_ms"), "workloads[0].sla.latency_ms", "is required"),
    ("typo", setp("nodes[0].can_powr_down", False), "nodes[0].can_powr_down", r"not a known field \(check the spelling"),
    ("typo-top-level", setp("node", []), "node", "not a known field"),
    ("zero-cpu", setp("nodes[0].capacity.cpu_millicores", 0), "nodes[0].capacity.cpu_millicores", r"must be > 0 \(got 0\)"),
    ("negative-memory", setp("nodes[1].capacity.memory_mib", -1), "nodes[1].capacity.memory_mib", r"must be > 0 \(got -1\)"),
    ("negative-request", setp("workloads[0].requests.cpu_millicores", -5), "workloads[0].requests.cpu_millicores", r"must be >= 0"),
    ("zero-replicas", setp("workloads[0].replicas", 0), "workloads[0].replicas", r"must be >= 1 \(got 0\)"),
    ("negative-latency", setp("links[0].latency_ms", -1), "links[0].latency_ms", r"must be >= 0"),
    ("pue-below-1", setp("sites[0].pue", 0.9), "sites[0].pue", r"must be >= 1\.0 \(got 0\.9\)"),
    ("zero-slots", setp("horizon.slots", 0), "horizon.slots", r"must be > 0"),
    ("negative-idle", setp("nodes[0].power.idle_w", -1), "nodes[0].power.idle_w", r"must be >= 0"),
    ("bad-tier", setp("sites[0].tier", "edge"), "sites[0].tier", r"must be one of 'device', .*'cloud' \(got 'edge'\)"),
    ("bad-signal-kind", setp("signals[0].signal", "solar"), "signals[0].signal", r"must be one of 'grid_intensity'"),
    ("bad-workload-kind", setp("workloads[0].kind", "cron"), "workloads[0].kind", r"must be one of 'service' or 'batch'"),
    ("bad-intensity-kind", setp("signals[0].intensity_kind", "hourly"), "signals[0].intensity_kind",
     r"must be 'average' or 'marginal' \(got 'hourly'\)"),
    ("naive-start", setp("horizon.start", "2026-06-21T00:00:00"), "horizon.start", r"needs a UTC offset, e\.g\. 2026-06-21T00:00:00Z"),
    ("naive-deadline", setp("workloads[1].deferral.deadline", "2026-06-21T02:00:00"), "workloads[1].deferral.deadline",
     "needs a UTC offset"),
    ("not-a-date", setp("horizon.start", "tomorrow"), "horizon.start", "datetime"),
    ("not-a-number", setp("nodes[0].power.idle_w", "lots"), "nodes[0].power.idle_w", r"valid number.*got 'lots'"),
    ("nan-signal", setp("signals[0].values", [float("nan"), 1.0]), "signals[0].values[0]", "finite number"),
    ("inf-battery", setp("sites[0].battery_kwh", math.inf), "sites[0].battery_kwh", "finite number"),
    ("points-length", setp("nodes[0].power", {"points_w": [1, 2, 3]}), "nodes[0].power", r"needs 11 values .* got 3"),
    ("both-power-forms", setp("nodes[0].power.points_w", [1] * 11), "nodes[0].power", "not both"),
    ("extra-resource-fraction", setp("nodes[0].capacity.gpu", 1.5), "nodes[0].capacity", r"resource 'gpu' must be a whole number"),
    ("empty-nodes", setp("nodes", []), "nodes", r"needs at least 1 item"),
    ("empty-sla-users", setp("workloads[0].sla.users", []), "workloads[0].sla.users", r"needs at least 1 item"),
    ("empty-id", setp("tenants[0].id", ""), "tenants[0].id", "at least 1 character"),
    ("list-for-mapping", setp("horizon", [1, 2]), "horizon", "valid dictionary"),
    ("background-over-1", setp("nodes[0].background_utilisation", 1.5), "nodes[0].background_utilisation", r"must be <= 1"),
    ("latitude", setp("sites[0].location", {"lat": 91, "lon": 0}), "sites[0].location.lat", r"must be <= 90"),
    # Bounds that keep the arrays and sums finite (int64 overflow, inf energy).
    ("huge-capacity", setp("nodes[0].capacity.cpu_millicores", 10**30), "nodes[0].capacity.cpu_millicores",
     r"must be <= 9007199254740992"),
    ("huge-extra-capacity", setp("nodes[0].capacity.gpu", 10**30), "nodes[0].capacity", "resource 'gpu' must be a whole number"),
    ("huge-request", setp("workloads[0].requests.memory_mib", 10**30), "workloads[0].requests.memory_mib", r"must be <="),
    ("huge-quota", setp("tenants[0].quota.cpu_millicores", 10**400), "tenants[0].quota.cpu_millicores", r"must be <="),
    ("huge-min-sites", setp("workloads[0].spread.min_sites", 10**30), "workloads[0].spread.min_sites", r"must be <= 10000"),
    ("huge-duration", setp("workloads[1].deferral.duration_minutes", 10**400), "workloads[1].deferral.duration_minutes",
     r"must be <= 144000000"),
    ("huge-power", setp("nodes[0].power.max_w", 1e308), "nodes[0].power.max_w", r"must be <= 1000000000"),
    ("huge-points", setp("nodes[0].power", {"points_w": [0] * 10 + [1e300]}), "nodes[0].power.points_w[10]", r"must be <="),
    ("tiny-lifetime", setp("sites[0].embodied", {"lifetime_years": 1e-300}), "sites[0].embodied.lifetime_years",
     r"must be >= 0\.01"),
    ("horizon-past-9999", setp("horizon", {"start": "9999-12-31T12:00:00Z", "slots": 24}), "horizon",
     "ends after the year 9999"),
]


@pytest.mark.parametrize(("mutate", "path", "match"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_field_problem(mutate, path, match):
    doc = base().build_dict()
    mutate(doc)
    assert_problem(problems_of(doc), path, match)


# -- whole-file problems --------------------------------------------------------------

FILE_CASES = [
    # duplicates
    ("dup-node", setp("nodes[1].id", "n1"), "nodes[1].id", r"duplicate id 'n1'; ids must be unique within nodes"),
    ("dup-site", setp("sites[1].id", "a"), "sites[1].id", "duplicate id 'a'"),
    ("dup-region", setp("regions[1].id", "DE"), "regions[1].id", "duplicate id 'DE'"),
    ("dup-tenant", setp("tenants[1].id", "t1"), "tenants[1].id", "duplicate id 't1'"),
    ("dup-workload", setp("workloads[1].id", "web"), "workloads[1].id", "duplicate id 'web'"),
    ("dup-user", appendp("users", {"id": "u", "site": "c"}), "users[1].id", "duplicate id 'u'"),
    # unknown references
    ("site.region", setp("sites[0].region", "XX"), "sites[0].region", r"unknown region 'XX' \(known: DE, FR\)"),
    ("node.site", setp("nodes[0].site", "zz"), "nodes[0].site", r"unknown site 'zz' \(known: a, c\)"),
    ("link.a", setp("links[0].a", "zz"), "links[0].a", "unknown site 'zz'"),
    ("link.b", setp("links[0].b", "zz"), "links[0].b", "unknown site 'zz'"),
    ("user.site", setp("users[0].site", "zz"), "users[0].site", "unknown site 'zz'"),
    ("workload.tenant", setp("workloads[0].tenant", "t9"), "workloads[0].tenant", r"unknown tenant 't9' \(known: t1, t2\)"),
    ("sla.users", setp("workloads[0].sla.users", ["u", "w9"]), "workloads[0].sla.users[1]", "unknown user location 'w9'"),
    ("current", setp("workloads[0].current", ["n1", "n9"]), "workloads[0].current[1]", "unknown node 'n9'"),
    ("dedicated_to", setp("nodes[2].dedicated_to", "t9"), "nodes[2].dedicated_to", "unknown tenant 't9'"),
    ("never_with", setp("tenants[0].isolation.never_with", ["t9"]), "tenants[0].isolation.never_with[0]", "unknown tenant 't9'"),
    ("never_with-self", setp("tenants[0].isolation.never_with", ["t1"]), "tenants[0].isolation.never_with[0]",
     "cannot exclude itself"),
    ("signal-region", setp("signals[0].region", "XX"), "signals[0].region", "unknown region 'XX'"),
    ("signal-site", setp("signals[2].site", "zz"), "signals[2].site", "unknown site 'zz'"),
    ("signal-node", setp("signals[3].node", "n9"), "signals[3].node", "unknown node 'n9'"),
    ("signal-two-targets", setp("signals[0].site", "a"), "signals[0]",
     r"a grid_intensity signal names exactly one region \(got region, site\)"),
    ("signal-wrong-target", delp("signals[3].node"), "signals[3]",
     r"background_utilisation signal names exactly one node \(got none\)"),
    # links
    ("self-link", setp("links[0].b", "a"), "links[0]", r"links a site to itself \('a'\); remove it"),
    # signals
    ("signal-length", setp("signals[0].values", [1, 2, 3]), "signals[0].values",
     "has 3 values but the horizon has 2 slots; give one value per slot"),
    ("unknown-unit", setp("signals[0].unit", "gCO2/mile"), "signals[0].unit",
     r"unit 'gCO2/mile' is not accepted for grid_intensity; use one of gCO2/kWh, "),
    ("unit-mixup-kg", setp("signals[0].unit", "kg/kWh"), "signals[0].values[0]",
     r"400(\.0)? kg/kWh is outside the plausible range 0\.\.2000 gCO2/kWh; check the unit \(2 value\(s\) out of range\)"),
    ("unit-mixup-fraction", setp("signals[3].values", [10, 20]), "signals[3].values[0]",
     r"outside the plausible range 0\.\.1 fraction"),
    ("negative-supply", setp("signals[2].values", [0, -1]), "signals[2].values[1]", "outside the plausible range"),
    ("huge-supply", setp("signals[2].values", [0, 1e300]), "signals[2].values[1]", r"outside the plausible range 0\.\.1e\+09 kW"),
    ("dup-signal", appendp("signals", {"signal": "grid_intensity", "region": "DE", "unit": "g/kWh", "values": [1, 2]}),
     "signals[4]", r"a second actual grid_intensity signal for region 'DE'; keep one"),
    ("mixed-kinds", setp("signals[1].intensity_kind", "marginal"), "signals",
     "mix average and marginal factors; use one kind"),
    ("region-without-intensity", delp("signals[1]"), "signals",
     r"region 'FR' has sites but no grid_intensity signal; add one with 2 values in gCO2/kWh"),
    # reachability and feasibility
    ("sla-unmeetable", setp("workloads[0].sla.latency_ms", 0.5), "workloads[0].sla.latency_ms",
     r"no node can meet 0\.5 ms for all users of 'web': the nearest site is 'a' at 1\.0 ms; loosen the SLA"),
    ("too-big", setp("workloads[0].requests.cpu_millicores", 5000), "workloads[0].requests",
     "no node is large enough for one replica of 'web'"),
    ("selector", setp("workloads[0].node_selector", {"class": "gpu"}), "workloads[0]",
     r"no node within the SLA that fits one replica of 'web' passes every placement rule \(node_selector "
     r"\{'class': 'gpu'\} excludes 3 of 3"),
    ("spread", setp("workloads[0].spread.min_sites", 3), "workloads[0].spread.min_sites",
     r"3 sites need at least as many replicas \(has 2\)"),
    # deferral: 60-minute slots; 00:30..01:30 holds no whole slot for a 30-minute job
    ("window-too-short", setp("workloads[1].deferral", {"earliest_start": "2026-06-21T00:30:00Z",
                                                        "deadline": "2026-06-21T01:30:00Z", "duration_minutes": 30}),
     "workloads[1].deferral", r"the window holds 0 whole slot\(s\) inside the horizon but the job needs 1"),
    ("window-after-horizon", setp("workloads[1].deferral", {"earliest_start": "2026-06-22T00:00:00Z",
                                                            "deadline": "2026-06-22T05:00:00Z", "duration_minutes": 60}),
     "workloads[1].deferral", r"holds 0 whole slot\(s\)"),
    ("job-longer-than-window", setp("workloads[1].deferral.duration_minutes", 121), "workloads[1].deferral",
     r"holds 2 whole slot\(s\) inside the horizon but the job needs 3"),
    ("deadline-before-start", setp("workloads[1].deferral.deadline", "2026-06-20T00:00:00Z"),
     "workloads[1].deferral.deadline", "must be after earliest_start"),
    # tenants
    ("quota-unknown-resource", setp("tenants[0].quota", {"gpu": 1}), "tenants[0].quota.gpu",
     r"unknown resource 'gpu' \(nodes offer: cpu_millicores, memory_mib\)"),
    ("quota-negative", setp("tenants[0].quota", {"cpu_millicores": -1}), "tenants[0].quota.cpu_millicores", r"must be >= 0"),
    ("dedicated-without-nodes", delp("nodes[2].dedicated_to"), "tenants[1].isolation.dedicated_nodes",
     "tenant 't2' must run on dedicated nodes but no node has dedicated_to: t2"),
    ("request-unknown-resource", setp("workloads[0].requests.gpu", 1), "workloads[0].requests.gpu",
     "no node offers resource 'gpu'"),
    ("current-length", setp("workloads[0].current", ["n1"]), "workloads[0].current",
     r"lists 1 node\(s\) for 2 replica\(s\); give one node per replica"),
]


@pytest.mark.parametrize(("mutate", "path", "match"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_whole_file_problem(mutate, path, match):
    doc = base().build_dict()
    mutate(doc)
    assert_problem(problems_of(doc), path, match)


def test_user_that_cannot_reach_any_site_with_nodes():
    # Site b has no nodes and no links: user v there reaches nothing that can host.
    doc = base().site("b", region="DE").user("v", site="b").build_dict()
    assert_problem(problems_of(doc), "users[1].site",
                   r"user location 'v' at site 'b' cannot reach any site with nodes; add a link")


def test_sla_met_only_by_nodes_too_small():
    # Within 5 ms of u is site a only (n1, 4000 millicores); n2 at c would be big enough.
    doc = base().build_dict()
    doc["nodes"][1]["capacity"]["cpu_millicores"] = 16000
    doc["workloads"][0].update(replicas=1, current=None, spread=None, sla={"latency_ms": 5, "users": ["u"]})
    doc["workloads"][0]["requests"]["cpu_millicores"] = 6000
    assert_problem(problems_of(doc), "workloads[0]", r"the nodes within 5 ms of the users of 'web' are too small")


@pytest.mark.parametrize(("version", "shown"), [(2, "2"), (None, "None"), ("1", "'1'"), (True, "True"), (1.0, "1.0")])
def test_version_must_be_1(version, shown):
    doc = base().build_dict()
    if version is None:
        del doc["version"]
    else:
        doc["version"] = version
    (p,) = problems_of(doc)
    assert p.path == "version"
    assert p.message == f"must be 1 (got {shown}); this release reads version 1 files"


@pytest.mark.parametrize(("doc", "kind"), [([1, 2], "list"), ("text", "str"), (None, "NoneType"), (3, "int")])
def test_top_level_must_be_a_mapping(doc, kind):
    (p,) = problems_of(doc)
    assert p.path == "" and p.message == f"a scenario is a mapping of fields, got {kind}"
    assert str(p) == p.message


def test_field_problems_are_reported_all_at_once():
    doc = base().build_dict()
    doc["nodes"][0]["cpus"] = 4
    doc["nodes"][1]["capacity"]["cpu_millicores"] = 0
    doc["sites"][1]["tier"] = "edge"
    doc["horizon"]["start"] = "2026-06-21T00:00:00"
    del doc["workloads"][0]["requests"]
    probs = problems_of(doc)
    assert {p.path for p in probs} == {"nodes[0].cpus", "nodes[1].capacity.cpu_millicores", "sites[1].tier",
                                       "horizon.start", "workloads[0].requests"}


def test_whole_file_problems_are_reported_all_at_once():
    doc = base().site("b", region="DE").user("v", site="b").build_dict()
    doc["nodes"][1]["id"] = "n1"                       # duplicate
    doc["sites"][0]["region"] = "XX"                   # unknown reference
    doc["signals"][0]["values"] = [1, 2, 3]            # wrong length
    doc["signals"][1]["unit"] = "furlongs"             # unknown unit
    doc["tenants"][0]["quota"] = {"gpu": 1}            # unknown resource
    doc["workloads"][0]["spread"]["min_sites"] = 3     # more sites than replicas
    probs = problems_of(doc)
    paths = {p.path for p in probs}
    assert {"nodes[1].id", "sites[0].region", "signals[0].values", "signals[1].unit", "tenants[0].quota.gpu",
            "workloads[0].spread.min_sites", "users[1].site"} <= paths
    err = InputError("f.yaml", probs)
    assert str(err).startswith(f"f.yaml: {len(probs)} problem(s)\n  nodes[1].id: duplicate id")


def test_render_limits_long_problem_lists():
    err = InputError("x", [Problem(f"p{i}", "bad") for i in range(60)])
    text = err.render(limit=50)
    assert text.splitlines()[0] == "x: 60 problem(s)"
    assert text.splitlines()[-1] == "  ... and 10 more"
    assert len(text.splitlines()) == 52


# -- units -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "given", "canonical"),
    [
        ("gCO2/kWh", 400, 400.0),
        ("gCO2e/kWh", 400, 400.0),
        ("g/kWh", 400, 400.0),
        ("kgCO2/kWh", 0.4, 400.0),
        ("kgCO2e/kWh", 0.4, 400.0),
        ("kg/kWh", 0.4, 400.0),
        ("t/MWh", 0.4, 400.0),  # 1 t/MWh = 1e6 g / 1e3 kWh = 1000 g/kWh
        ("lb/MWh", 1000, 453.592),  # 1000 lb x 453.592 g / 1000 kWh
    ],
)
def test_grid_intensity_units(unit, given, canonical):
    sc = (ScenarioBuilder().slots(2).region("DE", given, unit=unit).site("a").node("n1").tenant("t").build())
    assert sc.region_intensity_g_per_kwh[0] == pytest.approx([canonical, canonical], rel=1e-12)


@pytest.mark.parametrize(("unit", "given"), [("kW", 1.5), ("W", 1500), ("MW", 0.0015)])
def test_renewable_supply_units_to_kw(unit, given):
    sc = (ScenarioBuilder().slots(2).region("DE", 100).site("a", renewable=given, renewable_unit=unit)
          .node("n1").tenant("t").build())
    assert sc.site_renewable_kw[0] == pytest.approx([1.5, 1.5], rel=1e-12)


@pytest.mark.parametrize(("unit", "given"), [("fraction", 0.3), ("%", 30), ("percent", 30)])
def test_background_units_to_fraction(unit, given):
    sc = (ScenarioBuilder().slots(2).region("DE", 100).site("a").node("n1").tenant("t")
          .background("n1", given, unit=unit).build())
    assert sc.node_background_util[0] == pytest.approx([0.3, 0.3], rel=1e-12)


def test_every_accepted_unit_is_tested():
    tested = {"gCO2/kWh", "gCO2e/kWh", "g/kWh", "kgCO2/kWh", "kgCO2e/kWh", "kg/kWh", "t/MWh", "lb/MWh",
              "kW", "W", "MW", "fraction", "%", "percent"}
    assert {u for units in SIGNAL_UNITS.values() for u in units} == tested


def test_marginal_intensity_is_recorded():
    sc = ScenarioBuilder().slots(1).region("DE", 500, kind="marginal").site("a").node("n1").tenant("t").build()
    assert sc.intensity_kind == "marginal"
    assert base().build().intensity_kind == "average"


# -- the compiled arrays --------------------------------------------------------------


def test_compiled_arrays_of_the_base_scenario():
    sc = base().build()
    assert sc.resources == ["cpu_millicores", "memory_mib"]
    assert sc.site_ids == ["a", "c"] and sc.region_ids == ["DE", "FR"] and sc.tenant_ids == ["t1", "t2"]
    assert sc.n_slots == 2 and sc.slot_hours == 1.0 and sc.n_replicas == 3
    assert sc.node_site.tolist() == [0, 1, 1]
    assert sc.site_region.tolist() == [0, 1]
    assert sc.node_pue.tolist() == [1.5, 1.1, 1.1]
    assert sc.node_capacity.tolist() == [[4000, 8192]] * 3
    assert sc.node_power_curve_w[0].tolist() == pytest.approx([100 + 10 * i for i in range(11)])
    assert sc.node_can_power_down.tolist() == [True, False, True]
    assert sc.node_dedicated_tenant.tolist() == [-1, -1, 1]
    assert sc.node_embodied_g_per_h == pytest.approx([3_700_000 / 35_040] * 3)
    assert sc.node_background_util.tolist() == [[0.1, 0.2], [0.0, 0.0], [0.0, 0.0]]
    assert sc.region_intensity_g_per_kwh.tolist() == [[400, 200], [50, 60]]
    assert sc.site_renewable_kw.tolist() == [[0, 0.1], [0, 0]]
    # user u: access 1 ms; site a 1 ms, site c 1 + 10 = 11 ms
    assert sc.user_site_latency_ms.tolist() == [[1.0, 11.0]]
    assert sc.workload_site_latency_ms.tolist() == [[1.0, 11.0], [0.0, 0.0]]
    assert sc.workload_sla_ms.tolist() == [15.0, math.inf]
    assert sc.workload_requests.tolist() == [[2000, 512], [1000, 512]]
    assert sc.workload_min_sites.tolist() == [2, 1]
    assert sc.workload_current == [[0, 1], None]
    assert sc.workload_deferrable.tolist() == [False, True]
    assert (sc.workload_earliest_slot.tolist(), sc.workload_latest_start_slot.tolist(),
            sc.workload_duration_slots.tolist()) == ([0, 0], [0, 1], [2, 1])
    assert sc.workload_active.tolist() == [[True, True], [False, False]]
    assert sc.replica_workload.tolist() == [0, 0, 1] and sc.workload_first_replica.tolist() == [0, 2]
    assert sc.tenant_conflicts.tolist() == [[False, True], [True, False]]
    assert sc.tenant_dedicated.tolist() == [False, True]
    assert sc.tenant_quota.tolist() == [[8000, math.inf], [math.inf, math.inf]]
    # web: not on n3 (dedicated to t2); job (t2, dedicated): only on n3
    assert sc.workload_node_eligible.tolist() == [[True, True, False], [False, False, True]]
    assert sc.index_of("node", "n3") == 2 and sc.index_of("tenant", "t2") == 1
    assert sc.slot_time(1).isoformat() == "2026-06-21T01:00:00+00:00"


def test_deferral_window_aligned_to_whole_slots():
    # 30-minute slots from 00:00; window 00:10..02:50 -> whole slots from 00:30 (slot 1) to 02:30 (end of slot 4):
    # first = ceil(10/30) = 1, end = floor(170/30) = 5; a 45-minute job needs ceil(45/30) = 2 slots:
    # latest start = 5 - 2 = 3.
    doc = (ScenarioBuilder().slots(8, minutes=30).region("DE", 100).site("a").node("n1").tenant("t")
           .workload("j", window=(10 / 30, 170 / 30), duration_minutes=45).build_dict())
    sc = scenario_from_dict(doc)
    assert (sc.workload_earliest_slot[0], sc.workload_latest_start_slot[0], sc.workload_duration_slots[0]) == (1, 3, 2)


def test_deferral_window_clipped_to_the_horizon():
    # Window from before the horizon to after it: slots 0..4 of 4.
    sc = (ScenarioBuilder().slots(4).region("DE", 100).site("a").node("n1").tenant("t")
          .workload("j", window=(-3, 10), duration_minutes=60).build())
    assert (sc.workload_earliest_slot[0], sc.workload_latest_start_slot[0]) == (0, 3)


def test_extra_resources_become_columns():
    sc = (ScenarioBuilder().slots(1).region("DE", 100).site("a").node("n1", resources={"gpu": 2})
          .node("n2").tenant("t").workload("w", resources={"gpu": 1}).build())
    assert sc.resources == ["cpu_millicores", "memory_mib", "gpu"]
    assert sc.node_capacity[:, 2].tolist() == [2, 0]
    assert sc.workload_node_eligible.tolist() == [[True, False]]


def test_scenario_without_workloads_or_users():
    sc = ScenarioBuilder().slots(3).region("DE", 100).site("a").node("n1").tenant("t").build()
    assert sc.n_workloads == 0 and sc.n_replicas == 0 and sc.user_site_latency_ms.shape == (0, 1)


def test_region_without_sites_needs_no_signal():
    sc = ScenarioBuilder().slots(1).region("DE", 100).region("FR").site("a", region="DE").node("n1").tenant("t").build()
    assert sc.region_intensity_g_per_kwh.tolist() == [[100.0], [0.0]]


# -- files ---------------------------------------------------------------------------

TINY_YAML = """\
version: 1
name: tiny
horizon: {start: 2026-06-21T00:00:00Z, slots: 2, slot_minutes: 60}
regions: [{id: DE}]
sites:
  - {id: a, tier: access, region: DE, pue: 1.5, pv_kwp: 1}
  - {id: c, tier: cloud, region: DE, pue: 1.0}
nodes:
  - {id: n1, site: a, capacity: {cpu_millicores: 4000, memory_mib: 8192}, power: {idle_w: 100, max_w: 200}}
  - {id: n2, site: c, capacity: {cpu_millicores: 4000, memory_mib: 8192}, power: {idle_w: 100, max_w: 200}, can_power_down: false}
links: [{a: a, b: c, latency_ms: 10}]
users: [{id: u, site: a, access_latency_ms: 1}]
tenants: [{id: t1}]
workloads:
  - {id: w, tenant: t1, replicas: 1, requests: {cpu_millicores: 2000, memory_mib: 1024}, sla: {latency_ms: 5, users: [u]}}
signals:
  - {signal: grid_intensity, region: DE, unit: gCO2/kWh, values: [400, 200]}
  - {signal: renewable_supply, site: a, unit: kW, values: [0, 0.1]}
"""


def test_load_yaml_file_with_unquoted_timestamp(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    sc = load_scenario(path)
    assert sc.source == str(path) and sc.spec.name == "tiny"
    assert sc.slot_start.isoformat() == "2026-06-21T00:00:00+00:00"


def test_load_json_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(base().build_dict()))
    assert load_scenario(path).node_ids == ["n1", "n2", "n3"]


def test_yaml_naive_timestamp_is_a_problem(tmp_path):
    path = tmp_path / "naive.yaml"
    path.write_text(TINY_YAML.replace("2026-06-21T00:00:00Z", "2026-06-21 00:00:00"))
    with pytest.raises(InputError, match="horizon.start: needs a UTC offset") as info:
        load_scenario(path)
    assert info.value.source == str(path)


def test_invalid_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\nhorizon: {start: [\n")
    with pytest.raises(InputError, match=r"bad\.yaml: 1 problem") as info:
        load_scenario(path)
    (p,) = info.value.problems
    assert re.fullmatch(r"line \d+ column \d+", p.path) and p.message.startswith("not valid YAML: ")
    assert p.path.startswith("line 4")


def test_yaml_tab_indentation_error(tmp_path):
    path = tmp_path / "tab.yaml"
    path.write_text("version: 1\nname:\n\t- x\n")
    with pytest.raises(InputError, match=r"line 3 column 1: not valid YAML"):
        load_scenario(path)


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1,\n "name": }')
    with pytest.raises(InputError, match=r"line 2 column 10: not valid JSON: Expecting value"):
        load_scenario(path)


def test_deeply_nested_json_is_an_input_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        load_scenario(path)


def test_yaml_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("version: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_scenario(path)


def test_file_not_found(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(InputError, match=r"missing\.yaml: 1 problem\(s\)\n  file not found") as info:
        load_scenario(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_unreadable_file(tmp_path, kind):
    path = tmp_path / "x.yaml"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    else:
        path.mkdir()
    with pytest.raises(InputError, match="cannot read the file"):
        read_document(path)


def test_empty_file_is_not_a_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(InputError, match="a scenario is a mapping of fields, got NoneType"):
        load_scenario(path)


def test_problem_paths_survive_yaml_with_non_string_keys(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(TINY_YAML + "7: seven\n")
    with pytest.raises(InputError, match=r"\n  \[7\]: Keys should be strings \(got 7\)"):
        load_scenario(path)


def test_inline_tiny_yaml_matches_the_builder():
    # TINY_YAML is a copy of the project's first scenario; builders.tiny() rebuilds it fluently.
    a, b = scenario_from_dict(yaml.safe_load(TINY_YAML)), tiny().build()
    assert a.node_ids == b.node_ids and np.array_equal(a.node_can_power_down, [True, False])
    assert a.site_renewable_kw.tolist() == b.site_renewable_kw.tolist() == [[0, 0.1], [0, 0]]
    assert evaluate(a, place(a, {"w": ["n1"]})).totals == evaluate(b, place(b, {"w": ["n1"]})).totals


# -- the test builder itself (tests/builders.py) ------------------------------------


def test_builder_gives_fresh_documents_and_expands_scalar_signals_late():
    b = ScenarioBuilder().region("DE", 300).site("a").node("n1").tenant("t").slots(3)
    doc = b.build_dict()
    assert doc["signals"] == [{"signal": "grid_intensity", "region": "DE", "unit": "gCO2/kWh", "values": [300] * 3}]
    doc["nodes"].clear()
    assert len(b.build_dict()["nodes"]) == 1
    assert b.build().region_intensity_g_per_kwh.tolist() == [[300.0] * 3]


def test_builder_needs_a_site_before_a_node():
    with pytest.raises(ValueError, match="add a site first"):
        ScenarioBuilder().region("DE").node("n1")


def test_builder_build_raises_input_error_like_a_file():
    with pytest.raises(InputError, match=r"<builder>: 1 problem\(s\)\n  signals: region 'DE' has sites"):
        ScenarioBuilder().slots(1).region("DE").site("a").node("n1").tenant("t").build()


def test_forecast_series_are_kept_apart_from_actual():
    # A forecast for DE in slot 0 differs from the actual; slot-wise the cost model
    # sees the forecast, the evaluation the actual. Without a forecast both are equal.
    doc = tiny().build_dict()
    actual = scenario_from_dict(tiny().build_dict())
    assert np.array_equal(actual.region_intensity_forecast_g_per_kwh, actual.region_intensity_g_per_kwh)
    doc["signals"].append({"signal": "grid_intensity", "region": "DE", "unit": "gCO2/kWh",
                           "values": [100, 50], "series": "forecast"})
    sc = scenario_from_dict(doc)
    g = sc.index_of("region", "DE")
    assert sc.region_intensity_forecast_g_per_kwh[g].tolist() == [100.0, 50.0]
    assert sc.region_intensity_g_per_kwh[g].tolist() == actual.region_intensity_g_per_kwh[g].tolist()
    assert np.array_equal(sc.site_renewable_forecast_kw, sc.site_renewable_kw)


# ---------------------------------------------------------------------------
# Emission-factor types, contracts and residual mixes


def two_regions(de: str | None, fr: str | None) -> ScenarioBuilder:
    """Regions DE and FR, one site and node each, intensity signals with the given factor types."""
    return (ScenarioBuilder().slots(2).region("DE", [400, 200], factor_type=de).region("FR", 50, factor_type=fr)
            .site("a", region="DE").node("n1").site("b", region="FR").node("n2").tenant("t1"))


def test_one_factor_type_for_the_whole_scenario_is_recorded():
    sc = two_regions("lifecycle", "lifecycle").build()
    assert sc.factor_type == "lifecycle"
    assert two_regions(None, None).build().factor_type is None


@pytest.mark.parametrize("de, fr, listing", [
    ("direct", "lifecycle", "DE: direct; FR: lifecycle"),
    ("direct", None, "DE: direct; FR: not stated"),
])
def test_mixed_factor_types_are_refused_naming_the_regions_and_the_fix(de, fr, listing):
    with pytest.raises(InputError) as exc:
        two_regions(de, fr).build()
    problem = assert_problem(exc.value.problems, "signals", "factor types differ between regions")
    assert listing in problem.message
    assert "Electricity Maps with emissionFactorType" in problem.message and "conversion:" in problem.message


def test_a_stated_sourced_conversion_makes_the_types_agree():
    # GB's direct series x 1.2 (a stated ratio) becomes lifecycle: 200 -> 240, 100 -> 120 g/kWh.
    b = two_regions("lifecycle", "direct")
    fr = b._doc["signals"][1]
    fr.update(values=[200, 100], conversion={"to": "lifecycle", "multiplier": 1.2, "source": "test ratio, 2026"})
    sc = b.build()
    assert sc.factor_type == "lifecycle"
    assert sc.region_intensity_g_per_kwh[1].tolist() == pytest.approx([240.0, 120.0])


@pytest.mark.parametrize("mutate, path, match", [
    (lambda s: s.pop("factor_type"), "signals[1].conversion", "set factor_type .direct or lifecycle. to the type of the values"),
    (lambda s: s["conversion"].update(to="direct"), "signals[1].conversion.to", "already direct; remove the conversion"),
])
def test_conversion_problems(mutate, path, match):
    b = two_regions("lifecycle", "direct")
    fr = b._doc["signals"][1]
    fr["conversion"] = {"to": "lifecycle", "multiplier": 1.2, "source": "test ratio"}
    mutate(fr)
    with pytest.raises(InputError) as exc:
        b.build()
    assert_problem(exc.value.problems, path, match)


def test_conversion_needs_a_source():
    b = two_regions("lifecycle", "direct")
    b._doc["signals"][1]["conversion"] = {"to": "lifecycle", "multiplier": 1.2, "source": ""}
    with pytest.raises(InputError) as exc:
        b.build()
    assert_problem(exc.value.problems, "signals[1].conversion.source", "at least 3 characters")


def test_factor_type_on_a_supply_signal_is_refused():
    b = two_regions("lifecycle", "lifecycle").signal("renewable_supply", 0.1, unit="kW", site="a", factor_type="direct")
    with pytest.raises(InputError) as exc:
        b.build()
    assert_problem(exc.value.problems, "signals[2]", "apply to grid_intensity signals only")


def test_a_residual_mix_of_another_factor_type_is_refused():
    mix = {"g_per_kwh": 700, "factor_type": "direct", "source": "test"}
    b = two_regions("lifecycle", "lifecycle")
    b._doc["regions"][0]["residual_mix"] = mix
    with pytest.raises(InputError) as exc:
        b.build()
    assert "DE: direct, lifecycle" in assert_problem(exc.value.problems, "signals", "factor types differ").message


def test_contracts_and_contracted_supply_compile():
    b = two_regions("lifecycle", "lifecycle")
    b._doc["regions"][0]["residual_mix"] = {"g_per_kwh": 700, "factor_type": "lifecycle", "source": "test"}
    b._doc["sites"][0]["contracts"] = {"renewable_share": 0.4, "description": "GoOs"}
    b._doc["sites"][1]["owned"] = False
    sc = b.signal("contracted_supply", [500, 0], unit="W", site="a").build()
    assert sc.site_renewable_share.tolist() == [0.4, 0.0]
    assert sc.site_contracted_kw[0].tolist() == pytest.approx([0.5, 0.0])
    assert sc.site_contracted_forecast_kw[0].tolist() == pytest.approx([0.5, 0.0])
    assert np.isnan(sc.region_residual_g_per_kwh[1]) and sc.region_residual_g_per_kwh[0] == 700
    assert sc.node_owned.tolist() == [True, False]


@pytest.mark.parametrize("mutate, path, match", [
    (setp("sites[0].contracts", {"renewable_share": 1.5}), "sites[0].contracts.renewable_share", "must be <= 1.0"),
    (setp("regions[0].residual_mix", {"g_per_kwh": 700, "factor_type": "direct"}), "regions[0].residual_mix.source",
     "is required but missing"),
    (setp("regions[0].residual_mix", {"g_per_kwh": 700, "factor_type": "average", "source": "x"}),
     "regions[0].residual_mix.factor_type", "'direct' or 'lifecycle'"),
])
def test_contract_and_residual_mix_field_problems(mutate, path, match):
    doc = two_regions("lifecycle", "lifecycle").build_dict()
    mutate(doc)
    assert_problem(problems_of(doc), path, match)


def test_the_schema_documents_the_accounting_fields():
    from edgeplace.topology import schema_dict

    defs = schema_dict()["$defs"]
    assert {"renewable_share", "description"} <= set(defs["Contracts"]["properties"])
    assert {"g_per_kwh", "factor_type", "source"} <= set(defs["ResidualMix"]["properties"])
    assert "owned" in defs["Site"]["properties"] and "contracts" in defs["Site"]["properties"]
    assert "factor_type" in defs["Signal"]["properties"] and "conversion" in defs["Signal"]["properties"]
    assert "contracted_supply" in defs["SignalKind"]["enum"]
