"""edgeplace.k8s.extender.table: the plan document, its validation and the decisions it precomputes.

The scenario `ext()` (one slot, grid 400 gCO2/kWh; every node 4000
millicores, linear 100 W idle / 200 W max, so 100 W per unit utilisation and
25 W of IT power per busy core):

    site a (PUE 1.5)               n1         user u at a
    site b (PUE 1.0, PV 1 kW)      n2         1 ms from a
    site c (PUE 1.0)               n3 (always on), n4 (dedicated to t0)   10 ms from a
    tenants: t1 never_with t2; t0 dedicated
    workloads: web (t1, 1000 mc, 5 ms SLA for u: n1, n2), api (t2, 1000 mc: n1, n2, n3),
               db (t0, 1000 mc: n4 only)
    placement: web -> n1, api -> n3, db -> n4; n2 sleeps

Marginal emissions per busy core-hour (score_g):
    n1: 25 W x 1.5 = 37.5 W -> 0.0375 kWh x 400 = 15 g
    n2: 25 W facility, 1 kW of unused PV covers it -> 0 g
    n3, n4: 25 W -> 0.025 kWh x 400 = 10 g
Opening cost per hour (open_g_per_h) = idle power at grid intensity (the nodes
are owned: their embodied carbon is spent whether they are on or off, fleet
basis, so opening one adds none):
    n1: 100 W x 1.5 = 0.15 kWh x 400 = 60 g/h
    n2, n3, n4: 0.1 kWh x 400 = 40 g/h
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from edgeplace.k8s.extender.table import (DEFAULT_VALID_FOR_S, DecisionTable, Outcome, PlanError, PlanFile, PlanMissing,
                                          _scale_0_9, build_plan_document, write_plan_document)
from edgeplace.optimizer.solve import SolveOptions, solve
from tests.builders import ScenarioBuilder, place

NOW = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
P, A, NA, NW = Outcome.PASS, Outcome.ASLEEP, Outcome.NOT_ALLOWED, Outcome.NEVER_WITH


def ext(current_web: list[str] | None = None) -> ScenarioBuilder:
    web_extra = {"current": current_web} if current_web else {}
    return (ScenarioBuilder("ext").slots(1).region("DE", 400)
            .site("a", pue=1.5).site("b", pue=1.0, renewable=1.0).site("c", tier="cloud", pue=1.0)
            .node("n1", site="a").node("n2", site="b")
            .node("n3", site="c", can_power_down=False).node("n4", site="c", dedicated_to="t0")
            .link("a", "b", 1).link("a", "c", 10).user("u", site="a")
            .tenant("t0", dedicated=True).tenant("t1", never_with=["t2"]).tenant("t2")
            .workload("web", tenant="t1", sla_ms=5, users=["u"], **web_extra)
            .workload("api", tenant="t2")
            .workload("db", tenant="t0"))


def ext_doc(current_web: list[str] | None = None) -> dict:
    sc = ext(current_web).build()
    placement = place(sc, {"web": ["n1"], "api": ["n3"], "db": ["n4"]})
    return build_plan_document(sc, placement, slot=0, valid_for_s=600, now=NOW)


@pytest.fixture(scope="module")
def doc() -> dict:
    return ext_doc()


@pytest.fixture(scope="module")
def table(doc) -> DecisionTable:
    return DecisionTable.from_document(doc)


def names(table: DecisionTable) -> list[str]:
    return list(table.node_ids)


# ---------------------------------------------------------------------------
# The document


def test_document_header(doc):
    assert doc["version"] == 1
    assert doc["scenario"] == "ext"
    assert doc["cluster"] == "ext"  # the scenario's name (the site config's) unless one is given
    assert doc["generated_at"] == "2026-06-21T10:00:00Z"
    assert doc["valid_until"] == "2026-06-21T10:10:00Z"  # now + 600 s
    assert doc["slot"] == {"index": 0, "start": "2026-06-21T00:00:00Z", "end": "2026-06-21T01:00:00Z"}
    assert doc["accounting"]["basis"] == "location-based"
    json.dumps(doc, allow_nan=False)  # plain JSON, no NaN or numpy types


@pytest.mark.parametrize("node, powered, score_g, open_g", [
    ("n1", True, 15.0, 60.0),   # 37.5 W facility per core x 400 g/kWh
    ("n2", False, 0.0, 40.0),   # PV surplus covers the marginal core
    ("n3", True, 10.0, 40.0),   # 25 W per core x 400 g/kWh
    ("n4", True, 10.0, 40.0),
])
def test_node_entries(doc, node, powered, score_g, open_g):
    entry = doc["nodes"][node]
    assert entry["powered"] is powered
    assert entry["score_g"] == pytest.approx(score_g, abs=1e-6)
    assert entry["open_g_per_h"] == pytest.approx(open_g, abs=1e-5)


def test_node_sites_tenants_and_pools(doc):
    nodes = doc["nodes"]
    assert [nodes[n]["site"] for n in ("n1", "n2", "n3", "n4")] == ["a", "b", "c", "c"]
    assert [nodes[n]["tenants"] for n in ("n1", "n2", "n3", "n4")] == [["t1"], [], ["t2"], ["t0"]]
    assert nodes["n4"]["dedicated_to"] == "t0" and nodes["n1"]["dedicated_to"] is None


def test_workload_entries(doc):
    web, api, db = (doc["workloads"][w] for w in ("web", "api", "db"))
    sets = doc["node_sets"]
    assert sets[web["allowed_nodes"]] == ["n1", "n2"]          # SLA 5 ms: a and b only
    assert sets[api["allowed_nodes"]] == ["n1", "n2", "n3"]    # n4 is t0's pool
    assert sets[db["allowed_nodes"]] == ["n4"]                 # t0 runs only on its own nodes
    assert web == {"tenant": "t1", "cpu_millicores": 1000.0, "cpu_usage_fraction": 1.0,
                   "allowed_nodes": web["allowed_nodes"], "planned_nodes": {"n1": 1}}
    assert api["planned_nodes"] == {"n3": 1}


def test_tenants_never_with_is_listed_both_ways(doc):
    assert doc["tenants"] == {"t0": {"never_with": [], "dedicated": True},
                              "t1": {"never_with": ["t2"], "dedicated": False},
                              "t2": {"never_with": ["t1"], "dedicated": False}}


def test_running_replicas_come_from_current_and_count_as_present():
    doc = ext_doc(current_web=["n2"])
    assert doc["workloads"]["web"]["running_nodes"] == {"n2": 1}
    assert doc["nodes"]["n2"]["tenants"] == ["t1"]  # running now, so present for never_with


def test_shared_eligibility_rows_share_one_node_set():
    sc = (ext().workload("web2", tenant="t1", sla_ms=5, users=["u"]).build())
    placement = place(sc, {"web": ["n1"], "web2": ["n1"], "api": ["n3"], "db": ["n4"]})
    doc = build_plan_document(sc, placement, now=NOW)
    assert doc["workloads"]["web"]["allowed_nodes"] == doc["workloads"]["web2"]["allowed_nodes"]
    assert len(doc["node_sets"]) == 3


def test_default_validity_and_argument_checks():
    sc = ext().build()
    placement = place(sc, {"web": ["n1"], "api": ["n3"], "db": ["n4"]})
    doc = build_plan_document(sc, placement, now=NOW)
    assert (datetime.fromisoformat(doc["valid_until"]) - NOW).total_seconds() == DEFAULT_VALID_FOR_S
    with pytest.raises(ValueError, match="slot must be 0..0"):
        build_plan_document(sc, placement, slot=1)
    with pytest.raises(ValueError, match="valid_for_s must be a finite number > 0"):
        build_plan_document(sc, placement, valid_for_s=0)
    with pytest.raises(ValueError, match="time-zone aware"):
        build_plan_document(sc, placement, now=datetime(2026, 6, 21))


def test_document_of_a_solved_plan_matches_the_scenario():
    """A greedy plan on a generated instance: allowed rows are the scenario's eligibility."""
    from edgeplace.topology.generate import generate_scenario

    sc = generate_scenario(40, 20, n_slots=4, seed=3)
    plan = solve(sc, SolveOptions(solver="greedy", time_limit_s=1, bound_time_limit_s=0))
    doc = build_plan_document(sc, plan.placement, slot=2, now=NOW, evaluation=plan.evaluation)
    table = DecisionTable.from_document(doc)
    assert table.node_ids == sc.node_ids and table.workload_ids == sc.workload_ids
    allowed = table.workload_codes != Outcome.NOT_ALLOWED
    # never_with may add NEVER_WITH on allowed nodes, never on disallowed ones.
    assert np.array_equal(allowed, sc.workload_node_eligible)
    assert np.array_equal(table.node_powered, plan.evaluation.powered[:, 2])
    assert (table.workload_scores >= 0).all() and (table.workload_scores <= 10).all()


# ---------------------------------------------------------------------------
# Decisions


def test_filter_outcomes_of_a_planned_workload(table):
    t = table.target("web", None)
    # n1 allowed and on; n2 allowed but asleep; n3 outside the 5 ms SLA; n4 t0's pool.
    assert table.filter(t, names(table)).codes.tolist() == [P, A, NA, NA]
    t = table.target("api", None)
    # api (t2): n1 hosts t1 (never_with), n2 asleep, n3 planned; n4 dedicated to t0.
    assert table.filter(t, names(table)).codes.tolist() == [NW, A, P, NA]


def test_filter_keeps_request_order_duplicates_and_unknown_nodes(table):
    t = table.target("web", None)
    decision = table.filter(t, ["n3", "new-node", "n1", "n1"])
    assert decision.codes.tolist() == [NA, P, P, P]  # a node the plan does not know passes
    assert decision.reason == "plan"


def test_asleep_nodes_pass_when_nothing_else_would(table):
    t = table.target("web", None)
    decision = table.filter(t, ["n2", "n3"])  # only asleep n2 is allowed
    assert decision.codes.tolist() == [P, NA] and decision.reason == "wake"
    decision = table.filter(t, ["n3", "n4"])  # nothing usable, nothing to wake
    assert decision.codes.tolist() == [NA, NA] and decision.reason == "plan"


def test_tenant_rules_for_pods_without_a_known_workload(table):
    # t1: n3 hosts t2 (never_with), n4 is t0's pool.
    assert table.filter(table.target(None, "t1"), names(table)).codes.tolist() == [P, A, NW, NA]
    # tenant from the namespace when not annotated
    assert table.filter(table.target(None, None, namespace="t1"), names(table)).codes.tolist() == [P, A, NW, NA]
    # an unknown tenant may not use a dedicated node and has no never_with partners
    t = table.target(None, "zz")
    assert table.filter(t, names(table)).codes.tolist() == [P, A, P, NA] and t.reason == "tenant"
    # the dedicated tenant only its own nodes
    assert table.filter(table.target(None, "t0"), names(table)).codes.tolist() == [NA, NA, NA, P]


def test_a_workload_the_plan_does_not_know_gets_no_rows(table):
    # A typo, or a workload newer than the plan: neutral (None), not its tenant's rules.
    assert table.target("nope", "t1", namespace="t1") is None
    assert table.target("nope", None) is None


def test_a_tenant_annotation_that_differs_from_the_plan_adds_its_rules(table):
    t = table.target("web", "t2")  # web belongs to t1 in the plan; the pod claims t2
    assert table.filter(t, ["n1", "n3", "n4"]).codes.tolist() == [NW, NA, NA]  # n1 hosts t1
    decision = table.filter(t, names(table))
    assert decision.codes.tolist() == [NW, P, NA, NA] and decision.reason == "wake"  # asleep n2 is all that is left
    assert table.prioritize(t, ["n1"], None).scores == [0]


def test_filter_messages_name_the_reason(table):
    msgs = table.filter(table.target("web", None), ["n1"]).messages
    assert msgs[A] == "edgeplace: the plan powers this node down in slot 0 (plan valid until 2026-06-21T10:10:00Z)"
    assert "latency SLA, node selector or dedicated pool" in msgs[NA]
    assert "must never share a node" in msgs[NW]


def test_prioritize_planned_node_scores_10(table):
    t = table.target("api", None)
    # n3 is planned for api with no replica running there yet: 10. Others are not usable: 0.
    assert table.prioritize(t, names(table), None).scores == [0, 0, 10, 0]


def test_prioritize_without_spare_planned_count_falls_back_to_emissions():
    table = DecisionTable.from_document(ext_doc(current_web=["n1"]))  # web already runs on n1
    t = table.target("web", None)
    # n1 is the only usable node: the top of the 0..9 emissions scale.
    assert table.prioritize(t, ["n1", "n2"], None).scores == [9, 0]


def test_prioritize_by_emissions_lower_is_higher(table):
    t = table.target(None, "zz")
    # usable: n1 (15 g) and n3 (10 g): n3 = 9 x (15-10)/(15-10) = 9, n1 = 0.
    decision = table.prioritize(t, names(table), pod_cores=2.0)
    assert decision.scores == [0, 0, 9, 0]
    assert decision.reason == "tenant"
    # avoided: (mean(15, 10) - 10) x 2 cores x usage 1.0 = 5 gCO2e/h
    assert decision.avoided_g_per_h == pytest.approx(5.0)


def test_prioritize_ranks_asleep_nodes_by_wake_cost_when_nothing_is_on(table):
    t = table.target("web", None)
    decision = table.prioritize(t, ["n2", "n3"], None)
    assert decision.scores == [9, 0] and decision.reason == "wake"
    assert decision.avoided_g_per_h == 0.0


def test_filter_that_keeps_the_best_passes_exactly_the_top_scored_of_the_allowed(table):
    """With best=True the filter passes the nodes the plain filter passes that prioritize
    scores highest among them (so a prioritize call would change nothing), for every kind
    of pod and every set of candidates, a node the plan does not know included."""
    from itertools import combinations

    pool = [*names(table), "new-node"]
    targets = [table.target("web", None), table.target("api", None), table.target("db", None),
               table.target(None, "t1"), table.target(None, "zz"), table.target("web", "t2")]
    seen_outranked = seen_wake = 0
    for t in targets:
        for k in range(1, len(pool) + 1):
            for cands in map(list, combinations(pool, k)):
                plain, best = table.filter(t, cands), table.filter(t, cands, best=True)
                scores = table.prioritize(t, cands, None).scores
                passing = [i for i, c in enumerate(plain.codes) if c == P]
                top = max((scores[i] for i in passing), default=None)
                want = [P if i in passing and scores[i] == top else (Outcome.OUTRANKED if i in passing else c)
                        for i, c in enumerate(plain.codes)]
                assert best.codes.tolist() == want, (t.workload, t.tenant, cands)
                assert best.reason == plain.reason
                seen_outranked += Outcome.OUTRANKED in best.codes
                seen_wake += plain.reason == "wake"
    assert seen_outranked and seen_wake  # both cases were reached


def test_filter_that_keeps_the_best_sends_a_planned_pod_to_its_planned_node(table):
    t = table.target("api", None)
    assert table.filter(t, ["n1", "n2", "n3", "new-node"], best=True).codes.tolist() == [NW, A, P, Outcome.OUTRANKED]
    t = table.target(None, "zz")  # usable n1 (15 g) and n3 (10 g): the cleaner one
    assert table.filter(t, names(table), best=True).codes.tolist() == [Outcome.OUTRANKED, A, P, NA]


def test_preempt_keeps_only_nodes_where_eviction_can_help(table):
    t = table.target("web", None)
    assert table.preempt_keep(t, ["n1", "n2", "n3", "n4", "unknown"]) == [True, True, False, False, True]


@pytest.mark.parametrize("cost, mask, expected", [
    # hi 20, lo 10: round(9 x (20 - c) / 10) -> 9, 4.5 -> 5, 0, 6.75 -> 7
    ([10, 15, 20, 12.5], [1, 1, 1, 1], [9, 5, 0, 7]),
    ([10, 15, 20, 12.5], [0, 1, 1, 0], [0, 9, 0, 0]),  # range over the mask only: 15 -> 9, 20 -> 0
    ([3, 3, 3, 3], [1, 1, 0, 1], [9, 9, 0, 9]),          # equal costs: all top
    ([3, 3, 3, 3], [0, 0, 0, 0], [0, 0, 0, 0]),
])
def test_scale_0_9(cost, mask, expected):
    out = _scale_0_9(np.array([cost], dtype=float), np.array([mask], dtype=bool))
    assert out[0].tolist() == expected


def test_staleness_and_age(table):
    now = NOW.timestamp()
    assert not table.stale(now + 599)
    assert table.stale(now + 600)  # valid_until is exclusive
    assert table.age_s(now + 30) == 30


# ---------------------------------------------------------------------------
# Validation: a bad document names every problem


def broken(**changes) -> dict:
    doc = json.loads(json.dumps(ext_doc()))
    for path, value in changes.items():
        keys = path.split("__")
        target = doc
        for k in keys[:-1]:
            target = target[k]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize("changes, where, what", [
    ({"version": 2}, "version", "must be 1"),
    ({"cluster": 3}, "cluster", "must be the cluster's name"),
    ({"generated_at": "yesterday"}, "generated_at", "not an ISO 8601 time"),
    ({"valid_until": "2026-06-21T10:10:00"}, "valid_until", "needs a UTC offset"),
    ({"valid_until": "2026-06-21T09:00:00Z"}, "valid_until", "must be after generated_at"),
    ({"generated_at": _DELETE}, "generated_at", "must be a UTC time"),
    ({"slot": {"index": -1}}, "slot.index", "must be a slot number"),
    ({"nodes__n1__powered": "yes"}, "nodes.n1.powered", "must be true or false"),
    ({"nodes__n1__score_g": -1}, "nodes.n1.score_g", "finite number >= 0"),
    ({"nodes__n1__score_g": float("nan")}, "nodes.n1.score_g", "finite number >= 0"),
    ({"nodes__n2__tenants": "t1"}, "nodes.n2.tenants", "list of tenant names"),
    ({"nodes__n2__dedicated_to": 3}, "nodes.n2.dedicated_to", "tenant name or null"),
    ({"workloads__web__tenant": None}, "workloads.web.tenant", "must be a tenant name"),
    ({"workloads__web__allowed_nodes": "set-99"}, "workloads.web.allowed_nodes", "not in `node_sets`"),
    ({"workloads__web__allowed_nodes": ["n1", "zz"]}, "workloads.web.allowed_nodes[1]", "unknown node 'zz'"),
    ({"workloads__web__planned_nodes": {"n1": -1}}, "workloads.web.planned_nodes.n1", "whole number >= 0"),
    ({"workloads__web__planned_nodes": {"zz": 1}}, "workloads.web.planned_nodes.zz", "unknown node"),
    ({"workloads__web__cpu_usage_fraction": 2}, "workloads.web.cpu_usage_fraction", "in 0..1"),
    ({"tenants__t1__never_with": "t2"}, "tenants.t1.never_with", "list of tenant names"),
    ({"node_sets": []}, "node_sets", "mapping of set name"),
])
def test_validation_names_the_field(changes, where, what):
    with pytest.raises(PlanError, match="problem") as info:
        DecisionTable.from_document(broken(**changes), source="plan.json")
    problems = {p.path: p.message for p in info.value.problems}
    assert where in problems, problems
    assert what in problems[where]
    assert str(info.value).startswith("plan.json: ")


def test_validation_collects_every_problem():
    with pytest.raises(PlanError, match="3 problem") as info:
        DecisionTable.from_document(broken(version=0, nodes__n1__powered=1, workloads__db__tenant=7))
    assert {p.path for p in info.value.problems} == {"version", "nodes.n1.powered", "workloads.db.tenant"}


@pytest.mark.parametrize("doc, what", [
    ([], "a plan document is a JSON object"),
    ({"version": 1}, "nodes: must be a non-empty mapping"),
])
def test_validation_of_the_shape(doc, what):
    with pytest.raises(PlanError, match=what):
        DecisionTable.from_document(doc)


def test_from_json_reads_gzip_and_rejects_garbage(doc):
    data = json.dumps(doc).encode()
    assert DecisionTable.from_json(gzip.compress(data)).node_ids == ["n1", "n2", "n3", "n4"]
    with pytest.raises(PlanError, match="not valid JSON"):
        DecisionTable.from_json(b"{nope")
    with pytest.raises(PlanError, match="not valid gzip"):
        DecisionTable.from_json(b"\x1f\x8b garbage")


# ---------------------------------------------------------------------------
# Files


def test_write_plan_document_is_atomic_and_gz_by_suffix(tmp_path, doc):
    write_plan_document(doc, tmp_path / "plan.json")
    write_plan_document(doc, tmp_path / "plan.json.gz")
    assert json.loads((tmp_path / "plan.json").read_text()) == doc
    assert json.loads(gzip.decompress((tmp_path / "plan.json.gz").read_bytes())) == doc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "plan.json.gz"]  # no temp files left


def test_plan_file_loads_on_change_only(tmp_path, doc):
    path = tmp_path / "plan.json"
    source = PlanFile(path, poll_interval_s=0.1)
    with pytest.raises(PlanMissing, match="plan.json does not exist"):
        source.fetch_if_changed()  # no file yet
    write_plan_document(doc, path)
    first = source.fetch_if_changed()
    assert first is not None and first.source == str(path)
    assert DecisionTable.from_json(first.data).valid_until == datetime(2026, 6, 21, 10, 10, tzinfo=timezone.utc)
    assert source.fetch_if_changed() is None  # unchanged
    path.write_text("{broken")
    assert source.fetch_if_changed().data == b"{broken"  # changed: the server builds it (and reports the error)
    assert source.fetch_if_changed() is None  # once per change
    write_plan_document(broken(valid_until="2026-06-21T11:00:00Z"), path)
    assert DecisionTable.from_json(source.fetch_if_changed().data).valid_until.hour == 11


def test_plan_file_follows_a_configmap_style_symlink_swap(tmp_path, doc):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    write_plan_document(doc, tmp_path / "v1" / "plan.json")
    write_plan_document(broken(valid_until="2026-06-21T11:00:00Z"), tmp_path / "v2" / "plan.json")
    os.symlink("v1", tmp_path / "..data")
    os.symlink("..data/plan.json", tmp_path / "plan.json")
    source = PlanFile(tmp_path / "plan.json")
    assert DecisionTable.from_json(source.fetch_if_changed().data).valid_until.hour == 10
    os.symlink("v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # what the kubelet does
    assert DecisionTable.from_json(source.fetch_if_changed().data).valid_until.hour == 11


def test_plan_file_rejects_a_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
        PlanFile(tmp_path / "p.json", poll_interval_s=0)
