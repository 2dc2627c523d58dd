"""Every plan binds under kube-scheduler's own rules (issue 14, "Done when").

Hypothesis generates small clusters with the constraints kube-scheduler
enforces: node selectors and required node affinity (In, NotIn, Exists,
DoesNotExist, Gt, Lt, match_fields), NoSchedule / NoExecute / PreferNoSchedule
taints and tolerations (Exists, empty key, toleration_seconds), required pod
affinity and anti-affinity by hostname, zone and region (to itself and to
other workloads, across namespaces by namespace selector), DoNotSchedule and
ScheduleAnyway topology spread (max_skew, min_domains, label selectors on
itself or a shared label, both node inclusion policies), extended resources
(nvidia.com/gpu), pod limits per node, dedicated pools and never_with tenants,
deferrable jobs. For each, the optimizer plans (greedy, HiGHS, CP-SAT) and the
plan's bindings are checked twice, independently:

- `edgeplace.policies.evaluate` reports no violation of a rule kube-scheduler
  enforces (unplaced replicas may remain where the cluster cannot hold them:
  kube-scheduler would leave those pods pending too);
- `tests.kube_filters.replay` binds the planned pods one by one through a
  plain port of kube-scheduler's filter plugins (and edgeplace's isolation
  admission), slot by slot: every pod must bind where the plan put it.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings

from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.policies.baselines import baseline_registry
from edgeplace.policies.evaluate import ViolationKind
from edgeplace.topology import scenario_from_dict
from edgeplace.topology.errors import InputError
from tests.kube_filters import replay

#: Violation kinds of rules the cluster enforces (a plan must never break these).
ENFORCED = {ViolationKind.capacity, ViolationKind.selector, ViolationKind.isolation, ViolationKind.node_affinity,
            ViolationKind.taint, ViolationKind.pod_affinity, ViolationKind.pod_anti_affinity,
            ViolationKind.topology_spread, ViolationKind.max_pods, ViolationKind.power}
ZONE, HOST, REGION = "topology.kubernetes.io/zone", "kubernetes.io/hostname", "topology.kubernetes.io/region"
TAINTS = [{"key": "gpu-only", "value": "", "effect": "NoSchedule"},
          {"key": "maintenance", "value": "soon", "effect": "NoExecute"},
          {"key": "spot", "value": "", "effect": "PreferNoSchedule"}]
TOLERATIONS = [{"key": "gpu-only", "operator": "Exists", "effect": "NoSchedule"},
               {"key": "maintenance", "operator": "Equal", "value": "soon", "effect": "NoExecute"},
               {"key": "maintenance", "operator": "Exists", "effect": "NoExecute", "toleration_seconds": 1800},
               {"key": "gpu-only", "operator": "Equal", "value": "wrong"},
               {"operator": "Exists"}]


def _expression(draw, zones: list[str], nodes: list[str]) -> dict:
    kind = draw(st.sampled_from(["gpu", "nogpu", "gt", "lt", "zone-in", "zone-notin", "region"]))
    return {"gpu": {"key": "gpu", "operator": "Exists"},
            "nogpu": {"key": "gpu", "operator": "DoesNotExist"},
            "gt": {"key": "size", "operator": "Gt", "values": [str(draw(st.integers(0, 6)))]},
            "lt": {"key": "size", "operator": "Lt", "values": [str(draw(st.integers(2, 9)))]},
            "zone-in": {"key": ZONE, "operator": "In", "values": draw(st.lists(st.sampled_from(zones), min_size=1, max_size=2, unique=True))},
            "zone-notin": {"key": ZONE, "operator": "NotIn", "values": [draw(st.sampled_from(zones))]},
            "region": {"key": REGION, "operator": "In", "values": ["R0"]}}[kind]


def _term(draw, zones, nodes) -> dict:
    """A node selector term: mostly one or two expressions, sometimes a field (or nothing: matches no node)."""
    term: dict = {"match_expressions": [_expression(draw, zones, nodes) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2])))]}
    if draw(st.integers(0, 3)) == 0:
        term["match_fields"] = [{"key": "metadata.name", "operator": draw(st.sampled_from(["In", "NotIn"])),
                                 "values": [draw(st.sampled_from(nodes))]}]
    return term


@st.composite
def clusters(draw) -> dict:
    """A small scenario document with Kubernetes scheduling constraints."""
    n_zones = draw(st.integers(1, 3))
    zones = [f"z{i}" for i in range(n_zones)]
    n_nodes = draw(st.integers(2, 6))
    slots = draw(st.integers(1, 2))
    node_ids = [f"n{i}" for i in range(n_nodes)]
    nodes = []
    gpu_nodes = []
    for i, nid in enumerate(node_ids):
        labels = {"size": str(draw(st.integers(1, 8)))}
        capacity = {"cpu_millicores": draw(st.sampled_from([2000, 4000, 8000])), "memory_mib": 8192}
        if draw(st.integers(0, 3)) == 0:
            labels["gpu"] = "true"
            capacity["nvidia.com/gpu"] = draw(st.integers(1, 2))
            gpu_nodes.append(nid)
        if draw(st.integers(0, 2)) == 0:
            capacity["pods"] = draw(st.integers(1, 4))
        taints = draw(st.lists(st.sampled_from(TAINTS), max_size=2, unique_by=lambda t: t["key"])) if draw(st.integers(0, 2)) == 0 else []
        nodes.append({"id": nid, "site": zones[i % n_zones] if draw(st.booleans()) else draw(st.sampled_from(zones)),
                      "capacity": capacity, "power": {"idle_w": draw(st.sampled_from([40, 100, 150])), "max_w": 300},
                      "labels": labels, "taints": taints})
    n_tenants = draw(st.integers(1, 3))
    tenants = [{"id": f"t{i}"} for i in range(n_tenants)]
    if n_tenants >= 2 and draw(st.booleans()):
        tenants[0]["isolation"] = {"never_with": ["t1"]}
    if n_tenants == 3 and draw(st.integers(0, 2)) == 0:
        tenants[2]["isolation"] = {"dedicated_nodes": True}
        for n in draw(st.lists(st.sampled_from(range(n_nodes)), min_size=1, max_size=2, unique=True)):
            nodes[n]["dedicated_to"] = "t2"
    n_workloads = draw(st.integers(1, 6))
    workloads = []
    for i in range(n_workloads):
        wid = f"w{i}"
        labels = {"app": wid, "tier": draw(st.sampled_from(["front", "back"]))}
        sch: dict = {"labels": labels}
        if draw(st.integers(0, 3)) == 0:
            sch["node_affinity"] = {"required": [_term(draw, zones, node_ids) for _ in range(draw(st.integers(1, 2)))]}
        if draw(st.integers(0, 2)) == 0:
            sch["tolerations"] = draw(st.lists(st.sampled_from(TOLERATIONS), min_size=1, max_size=2))
        if draw(st.integers(0, 2)) == 0:
            target = draw(st.sampled_from(["self", "tier", "other", "tenant"]))
            key = draw(st.sampled_from([HOST, HOST, ZONE, REGION]))
            sel = ({"match_labels": {"app": wid}} if target == "self" else
                   {"match_labels": {"tier": labels["tier"]}} if target == "tier" else
                   {"match_labels": {"app": f"w{draw(st.integers(0, n_workloads - 1))}"}} if target == "other" else {})
            term = {"label_selector": sel, "topology_key": key}
            if target == "tenant":
                term["namespace_selector"] = {"match_expressions": [{"key": "edgeplace.io/tenant", "operator": "In",
                                                                     "values": [draw(st.sampled_from([t["id"] for t in tenants]))]}]}
            sch["pod_anti_affinity"] = {"required": [term]}
        services = [j for j in range(i) if "deferral" not in workloads[j]]
        if services and draw(st.integers(0, 3)) == 0:
            j = draw(st.sampled_from(services))  # targets come earlier (no cycle) and run all the time
            sch["pod_affinity"] = {"required": [{"label_selector": {"match_labels": {"app": f"w{j}"}},
                                                 "topology_key": draw(st.sampled_from([ZONE, HOST, REGION])),
                                                 "namespaces": [], "namespace_selector": {}}]}
        elif draw(st.integers(0, 5)) == 0:
            sch["pod_affinity"] = {"required": [{"label_selector": {"match_labels": {"app": wid}}, "topology_key": ZONE}]}
        if draw(st.integers(0, 2)) == 0:
            spread = []
            for key in draw(st.lists(st.sampled_from([HOST, ZONE]), min_size=1, max_size=2, unique=True)):
                hard = draw(st.integers(0, 3)) > 0
                c = {"max_skew": draw(st.integers(1, 2)), "topology_key": key,
                     "when_unsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
                     "label_selector": {"match_labels": {"app": wid}} if draw(st.booleans()) else {"match_labels": {"tier": labels["tier"]}},
                     "node_affinity_policy": draw(st.sampled_from(["Honor", "Ignore"])),
                     "node_taints_policy": draw(st.sampled_from(["Honor", "Ignore"]))}
                if hard and draw(st.integers(0, 3)) == 0:
                    c["min_domains"] = draw(st.integers(1, 4))
                spread.append(c)
            sch["topology_spread"] = spread
        requests = {"cpu_millicores": draw(st.sampled_from([250, 500, 1000, 2000])), "memory_mib": 256}
        if gpu_nodes and draw(st.integers(0, 5)) == 0:
            requests["nvidia.com/gpu"] = 1
        w = {"id": wid, "tenant": draw(st.sampled_from([t["id"] for t in tenants])), "replicas": draw(st.integers(1, 3)),
             "requests": requests, "scheduling": sch}
        if draw(st.integers(0, 6)) == 0:
            w["node_selector"] = {"gpu": "true"} if gpu_nodes and draw(st.booleans()) else {ZONE: draw(st.sampled_from(zones))}
        if slots == 2 and draw(st.integers(0, 3)) == 0:
            w["kind"] = "batch"
            w["deferral"] = {"earliest_start": "2026-06-21T00:00:00Z", "deadline": "2026-06-21T02:00:00Z", "duration_minutes": 60}
        workloads.append(w)
    return {"version": 1, "name": "k8s", "horizon": {"start": "2026-06-21T00:00:00Z", "slots": slots, "slot_minutes": 60},
            "regions": [{"id": "R0"}], "sites": [{"id": z, "tier": "access", "region": "R0"} for z in zones],
            "nodes": nodes, "tenants": tenants,
            "namespaces": [{"id": t["id"], "labels": {"edgeplace.io/tenant": t["id"]}} for t in tenants],
            "workloads": workloads,
            "signals": [{"signal": "grid_intensity", "region": "R0", "unit": "gCO2/kWh", "values": [300.0] * slots}]}


def check_binds(doc: dict, placement, scenario) -> None:
    """Both checks of the module docstring on one plan."""
    ev_kinds = {v.kind for v in placement[1].violations}
    assert not ev_kinds & ENFORCED, [v.message for v in placement[1].violations if v.kind in ENFORCED]
    assign = placement[0].assign
    unplaced = int((assign < 0).all(axis=1).sum())
    event("every replica placed" if not unplaced else "some replicas pending")
    for t in range(scenario.n_slots):
        running = [(int(scenario.replica_workload[r]), scenario.node_ids[int(assign[r, t])])
                   for r in range(scenario.n_replicas) if assign[r, t] >= 0]
        problems = replay(doc, running)
        assert not problems, f"slot {t}: kube-scheduler cannot bind {problems}"


def _scenario(doc):
    try:
        return scenario_from_dict(doc)
    except InputError as exc:  # a workload no node can ever hold: reported at load, nothing to plan
        assert all("workloads[" in p.path for p in exc.problems), exc
        event("rejected at load (no node could ever hold a workload)")
        return None


def profile(examples: int) -> settings:
    """Seeded (the same clusters every run), no time limit per example."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@profile(300)
@given(doc=clusters())
def test_greedy_plans_bind_under_kube_scheduler(doc):
    sc = _scenario(doc)
    if sc is None:
        return
    plan = solve(sc, SolveOptions(solver="greedy", time_limit_s=0.05, bound_time_limit_s=0.0))
    check_binds(doc, (plan.placement, plan.evaluation), sc)


@profile(200)
@given(doc=clusters())
def test_milp_plans_bind_under_kube_scheduler(doc):
    sc = _scenario(doc)
    if sc is None:
        return
    plan = solve(sc, SolveOptions(solver="milp", time_limit_s=2.0, bound_time_limit_s=0.0))
    check_binds(doc, (plan.placement, plan.evaluation), sc)


@profile(150)
@given(doc=clusters())
def test_cpsat_plans_bind_under_kube_scheduler(doc):
    sc = _scenario(doc)
    if sc is None:
        return
    plan = solve(sc, SolveOptions(solver="cpsat", time_limit_s=2.0, workers=1, bound_time_limit_s=0.0))
    check_binds(doc, (plan.placement, plan.evaluation), sc)


@profile(60)
@given(doc=clusters())
@pytest.mark.parametrize("policy", sorted(baseline_registry()))
def test_baselines_bind_under_kube_scheduler(doc, policy):
    from edgeplace.policies.evaluate import evaluate

    sc = _scenario(doc)
    if sc is None:
        return
    placement = baseline_registry()[policy]().place(sc)
    evaluation = evaluate(sc, placement)
    # Baselines ignore SLAs and power decisions matter only for the carbon figure: the rest must hold.
    check_binds(doc, (placement, evaluation), sc)
