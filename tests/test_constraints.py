"""edgeplace.topology.constraints: kube-scheduler's rules on single objects, compiled rules,
the per-pod filter of `ConstraintState`, and the evaluation's violation kinds."""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.policies.evaluate import ViolationKind, evaluate
from edgeplace.topology.constraints import (ConstraintState, node_affinity_matches, selector_matches, tolerated_seconds,
                                            tolerates)
from edgeplace.topology.errors import InputError
from edgeplace.topology.scheduling_spec import LabelSelector, NodeAffinity, Taint, Toleration
from tests.builders import ScenarioBuilder, place

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


# ---------------------------------------------------------------------------
# One object at a time


@pytest.mark.parametrize("expr, labels, match", [
    ({"key": "size", "operator": "In", "values": ["m", "l"]}, {"size": "m"}, True),
    ({"key": "size", "operator": "In", "values": ["m", "l"]}, {}, False),
    ({"key": "size", "operator": "NotIn", "values": ["m"]}, {}, True),  # absent passes NotIn
    ({"key": "size", "operator": "NotIn", "values": ["m"]}, {"size": "m"}, False),
    ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": ""}, False),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "8"}, False),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "many"}, False),  # not an integer
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, {}, False),  # absent fails Gt and Lt
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "-1"}, True),
])
def test_node_affinity_operators(expr, labels, match):
    affinity = NodeAffinity.model_validate({"required": [{"match_expressions": [expr]}]})
    assert node_affinity_matches(affinity, labels, "n1") is match


def test_node_affinity_terms_or_and_fields():
    affinity = NodeAffinity.model_validate({"required": [
        {"match_expressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]},  # AND
        {"match_fields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]})  # OR
    assert node_affinity_matches(affinity, {"a": "1", "b": "1"}, "n1")
    assert not node_affinity_matches(affinity, {"a": "1"}, "n1")
    assert node_affinity_matches(affinity, {}, "n9")
    # An empty term matches no node (nodeaffinity.go skips it); no terms at all: no constraint.
    assert not node_affinity_matches(NodeAffinity.model_validate({"required": [{}]}), {"a": "1"}, "n1")
    assert node_affinity_matches(NodeAffinity(), {}, "n1")


@pytest.mark.parametrize("tol, taint, ok", [
    ({"key": "k", "value": "v", "effect": "NoSchedule"}, ("k", "v", "NoSchedule"), True),
    ({"key": "k", "value": "w"}, ("k", "v", "NoSchedule"), False),  # Equal needs the value
    ({"key": "k", "operator": "Exists"}, ("k", "v", "NoExecute"), True),  # no effect: every effect
    ({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, ("k", "v", "NoExecute"), False),
    ({"operator": "Exists"}, ("anything", "", "NoSchedule"), True),  # empty key + Exists: every taint
    ({"key": "j", "operator": "Exists"}, ("k", "", "NoSchedule"), False),
])
def test_tolerations(tol, taint, ok):
    assert tolerates(Toleration.model_validate(tol), Taint(key=taint[0], value=taint[1], effect=taint[2])) is ok


def test_toleration_seconds_bound_the_stay_under_no_execute_only():
    taint = Taint(key="k", effect="NoExecute")
    assert tolerated_seconds([Toleration(key="k", operator="Exists", effect="NoExecute", toleration_seconds=300)], taint) == 300
    both = [Toleration(key="k", operator="Exists", effect="NoExecute", toleration_seconds=300), Toleration(operator="Exists")]
    assert tolerated_seconds(both, taint) == float("inf")
    assert tolerated_seconds([], taint) == 0


@pytest.mark.parametrize("selector, labels, match", [
    (None, {"app": "web"}, False),  # null matches nothing
    ({}, {"app": "web"}, True),  # empty matches everything
    ({"match_labels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
    ({"match_expressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, {}, True),
    ({"match_expressions": [{"key": "app", "operator": "In", "values": ["db"]}]}, {"app": "web"}, False),
])
def test_label_selectors(selector, labels, match):
    assert selector_matches(None if selector is None else LabelSelector.model_validate(selector), labels) is match


# ---------------------------------------------------------------------------
# Scenario files


def base() -> ScenarioBuilder:
    return (ScenarioBuilder().slots(1).region("R", 300).site("z1").site("z2")
            .node("a", site="z1").node("b", site="z1").node("c", site="z2").node("d", site="z2")
            .tenant("t"))


def web(**scheduling) -> dict:
    return {"labels": {"app": "web"}, **scheduling}


SELF = {"label_selector": {"match_labels": {"app": "web"}}}


@pytest.mark.parametrize("field, value, message", [
    ("node_affinity", {"required": [{"match_expressions": [{"key": "k", "operator": "In"}]}]}, "needs at least one value"),
    ("node_affinity", {"required": [{"match_expressions": [{"key": "k", "operator": "Gt", "values": ["x"]}]}]},
     "exactly one integer value"),
    ("node_affinity", {"required": []}, "at least one node selector term"),
    ("tolerations", [{"key": "k", "operator": "Exists", "value": "v"}], "takes no `value`"),
    ("tolerations", [{"value": "v"}], "must use operator Exists"),
    ("tolerations", [{"key": "k", "toleration_seconds": 5}], "needs effect NoExecute"),
    ("topology_spread", [{"max_skew": 0, "topology_key": ZONE, "when_unsatisfiable": "DoNotSchedule"}], "must be >= 1"),
    ("topology_spread", [{"max_skew": 1, "topology_key": ZONE, "when_unsatisfiable": "ScheduleAnyway", "min_domains": 2}],
     "min_domains needs when_unsatisfiable: DoNotSchedule"),
    ("pod_affinity", {"required": [{"topology_key": ZONE, "match_label_keys": ["a"], "mismatch_label_keys": ["a"]}]},
     "in both match_label_keys and mismatch_label_keys"),
])
def test_bad_scheduling_blocks_name_the_field_and_the_fix(field, value, message):
    doc = base().workload("w", scheduling={field: value}).build_dict()
    with pytest.raises(InputError, match=message) as err:
        from edgeplace.topology import scenario_from_dict
        scenario_from_dict(doc)
    assert all(p.path.startswith(f"workloads[0].scheduling.{field}") for p in err.value.problems), err.value.problems


def test_requests_may_not_name_pods():
    with pytest.raises(InputError, match="every replica takes one pod"):
        base().workload("w", resources={"pods": 1}).build()


def test_no_node_passes_names_the_rule_that_excludes_them():
    b = base().workload("w", scheduling={"node_affinity": {"required": [{"match_expressions": [
        {"key": "gpu", "operator": "Exists"}]}]}})
    with pytest.raises(InputError, match=r"workloads\[0\]: .*required node affinity excludes 4 of 4"):
        b.build()


def test_affinity_without_any_matching_pod_is_reported():
    b = base().workload("w", scheduling=web(pod_affinity={"required": [
        {"label_selector": {"match_labels": {"app": "db"}}, "topology_key": ZONE}]}))
    with pytest.raises(InputError, match=r"scheduling.pod_affinity.required: no pod of the scenario matches"):
        b.build()


def test_affinity_cycles_are_reported():
    term = lambda app: {"required": [{"label_selector": {"match_labels": {"app": app}}, "topology_key": ZONE}]}  # noqa: E731
    b = (base().workload("x", scheduling={"labels": {"app": "x"}, "pod_affinity": term("y")})
         .workload("y", scheduling={"labels": {"app": "y"}, "pod_affinity": term("x")}))
    with pytest.raises(InputError, match="pod affinity cycle x -> y -> x"):
        b.build()


def test_nodes_get_hostname_zone_and_region_labels_unless_they_carry_them():
    sc = base().node("e", site="z2", labels={ZONE: "rack-7"}).build()
    labels = [dict(s) for s in sc.node_label_sets]
    assert labels[0][HOST] == "a" and labels[0][ZONE] == "z1" and labels[0]["topology.kubernetes.io/region"] == "R"
    assert labels[4][ZONE] == "rack-7"


def test_pod_limits_are_a_capacity_every_replica_takes_one_of():
    sc = base().node("small", site="z1", resources={"pods": 2}).workload("w", replicas=3, cpu=10).build()
    k = sc.resources.index("pods")
    assert sc.node_capacity[:, k].tolist() == [3, 3, 3, 3, 2]  # unlimited = every replica there is
    assert sc.workload_requests[0, k] == 1
    ev = evaluate(sc, place(sc, {"w": ["small", "small", "small"]}))
    assert [(v.kind, v.subject) for v in ev.violations] == [(ViolationKind.max_pods, "small")]


def test_taints_keep_pods_off_unless_tolerated_long_enough():
    b = (base().node("tainted", site="z1", taints=[{"key": "maint", "effect": "NoExecute"}, {"key": "soft", "effect": "PreferNoSchedule"}])
         .workload("plain")
         .workload("brief", scheduling={"tolerations": [{"key": "maint", "operator": "Exists", "effect": "NoExecute",
                                                          "toleration_seconds": 3600}]})
         .workload("job", window=(0, 1), duration_minutes=60,
                   scheduling={"tolerations": [{"key": "maint", "operator": "Exists", "effect": "NoExecute",
                                                "toleration_seconds": 3600}]})
         .workload("any", scheduling={"tolerations": [{"operator": "Exists"}]}))
    sc = b.build()
    tainted = sc.index_of("node", "tainted")
    # A service tolerating the taint for an hour is evicted after an hour; the one-hour job finishes first.
    assert sc.workload_node_allowed[:, tainted].tolist() == [False, False, True, True]
    ev = evaluate(sc, place(sc, {"plain": ["tainted"], "brief": ["a"], "job": {"start_slot": 0, "replicas": ["a"]},
                                 "any": ["b"]}))
    assert [(v.kind, v.subject) for v in ev.violations] == [(ViolationKind.taint, "plain")]


def test_anti_affinity_is_symmetric_and_nodes_without_the_label_are_exempt():
    b = (ScenarioBuilder().slots(1).region("R", 300).site("z1").site("z2")
         .node("a", site="z1", labels={"rack": "r1"}).node("b", site="z1", labels={"rack": "r1"})
         .node("c", site="z2", labels={"rack": "r2"}).node("bare", site="z2").tenant("t")
         .workload("web", replicas=2, scheduling=web(pod_anti_affinity={"required": [{**SELF, "topology_key": "rack"}]}))
         .workload("other", scheduling={"labels": {"app": "other"},
                                        "pod_anti_affinity": {"required": [{**SELF, "topology_key": HOST}]}}))
    sc = b.build()
    c = sc.constraints
    assert c.keys == ["rack", HOST]
    assert c.anti.tolist() == [[0, 0, 0], [1, 0, 1]]  # (key, a, b): web-web by rack, web-other by hostname
    assert evaluate(sc, place(sc, {"web": ["a", "c"], "other": ["b"]})).violations == []
    assert evaluate(sc, place(sc, {"web": ["bare", "bare"], "other": ["a"]})).violations == []
    bad = evaluate(sc, place(sc, {"web": ["a", "b"], "other": ["a"]}))
    assert [(v.kind.value, v.subject) for v in bad.violations] == [("pod_anti_affinity", "web")]
    # One pod at a time: the incoming pod's own terms and the existing pods' terms both apply;
    # a node without the rack label is in no rack domain.
    state = ConstraintState(c, sc.n_workloads, np.ones(sc.n_workloads, dtype=bool))
    state.add(sc.index_of("workload", "web"), sc.index_of("node", "a"))
    assert state.allowed(sc.index_of("workload", "other")).tolist() == [False, True, True, True]
    assert state.allowed(sc.index_of("workload", "web")).tolist() == [False, False, True, True]
    state.add(sc.index_of("workload", "web"), sc.index_of("node", "bare"))
    assert state.allowed(sc.index_of("workload", "web")).tolist() == [False, False, True, True]


def test_affinity_targets_and_the_first_pod_of_a_self_affine_group():
    b = (base()
         .workload("db", scheduling={"labels": {"app": "db"}})
         .workload("api", replicas=2, scheduling={"labels": {"app": "api"}, "pod_affinity": {"required": [
             {"label_selector": {"match_labels": {"app": "db"}}, "topology_key": ZONE}]}})
         .workload("group", replicas=2, scheduling={"labels": {"app": "group"}, "pod_affinity": {"required": [
             {"label_selector": {"match_labels": {"app": "group"}}, "topology_key": ZONE}]}}))
    sc = b.build()
    assert evaluate(sc, place(sc, {"db": ["c"], "api": ["c", "d"], "group": ["a", "b"]})).violations == []
    bad = evaluate(sc, place(sc, {"db": ["c"], "api": ["a", "d"], "group": ["a", "c"]}))
    assert sorted((v.kind.value, v.subject) for v in bad.violations) == [("pod_affinity", "api"), ("pod_affinity", "group")]
    state = ConstraintState(sc.constraints, sc.n_workloads, np.ones(sc.n_workloads, dtype=bool))
    g = sc.index_of("workload", "group")
    assert state.allowed(g).all()  # the first of the group goes anywhere
    state.add(g, sc.index_of("node", "c"))
    assert state.allowed(g).tolist() == [False, False, True, True]
    assert not state.allowed(sc.index_of("workload", "api")).any()  # db is not bound yet


def test_spread_counts_every_eligible_domain_and_min_domains():
    spread = {"max_skew": 1, "topology_key": ZONE, "when_unsatisfiable": "DoNotSchedule", **SELF}
    b = base().workload("web", replicas=3, scheduling=web(topology_spread=[spread]))
    sc = b.build()
    assert evaluate(sc, place(sc, {"web": ["a", "c", "b"]})).violations == []
    assert [v.kind for v in evaluate(sc, place(sc, {"web": ["a", "b", "c"]})).violations] == []
    assert [v.kind for v in evaluate(sc, place(sc, {"web": ["a", "b", "a"]})).violations] == [ViolationKind.topology_spread]
    # A zone the pods may not use (node affinity, Honor) is not eligible; with Ignore it is, and empty.
    pinned = {"node_affinity": {"required": [{"match_expressions": [{"key": ZONE, "operator": "In", "values": ["z1"]}]}]}}
    honor = base().workload("web", replicas=2, scheduling=web(topology_spread=[spread], **pinned)).build()
    assert evaluate(honor, place(honor, {"web": ["a", "b"]})).violations == []
    ignore = base().workload("web", replicas=2, scheduling=web(
        topology_spread=[{**spread, "node_affinity_policy": "Ignore"}], **pinned)).build()
    assert [v.kind for v in evaluate(ignore, place(ignore, {"web": ["a", "b"]})).violations] == [ViolationKind.topology_spread]
    # min_domains 3 with two zones: the minimum counts as 0, so at most max_skew per zone.
    few = base().workload("web", replicas=4, scheduling=web(topology_spread=[{**spread, "min_domains": 3}])).build()
    assert [v.kind for v in evaluate(few, place(few, {"web": ["a", "b", "c", "d"]})).violations] == [ViolationKind.topology_spread]


def test_spread_of_others_counts_a_workload_without_rules_of_its_own():
    spread = {"max_skew": 1, "topology_key": HOST, "when_unsatisfiable": "DoNotSchedule",
              "label_selector": {"match_labels": {"tier": "front"}}}
    b = (base().workload("web", scheduling={"labels": {"app": "web", "tier": "front"}, "topology_spread": [spread]})
         .workload("cache", scheduling={"labels": {"app": "cache", "tier": "front"}}))
    sc = b.build()
    # web's node then holds 2 front pods against 0 on the empty nodes: the final state breaks web's rule.
    assert [v.kind for v in evaluate(sc, place(sc, {"web": ["a"], "cache": ["a"]})).violations] == [ViolationKind.topology_spread]
    state = ConstraintState(sc.constraints, sc.n_workloads, np.ones(sc.n_workloads, dtype=bool))
    state.add(0, 0)
    assert state.allowed(1).tolist() == [False, True, True, True]


def test_match_label_keys_and_namespaces():
    term = {"label_selector": {}, "match_label_keys": ["release"], "topology_key": HOST}
    b = (base()
         .workload("a1", tenant="t", scheduling={"labels": {"release": "1"}, "pod_anti_affinity": {"required": [term]}})
         .workload("a2", tenant="t", scheduling={"labels": {"release": "2"}})
         .workload("a3", tenant="t", scheduling={"namespace": "other", "labels": {"release": "1"}}))
    sc = b.build()
    # {} plus release In [1], in the pod's own namespace only: a1 with itself, not a2 (other release) nor a3.
    assert sc.constraints.anti.tolist() == [[0, 0, 0]]
    across = {**term, "namespace_selector": {}}
    b2 = (base().workload("a1", scheduling={"labels": {"release": "1"}, "pod_anti_affinity": {"required": [across]}})
          .workload("a3", scheduling={"namespace": "other", "labels": {"release": "1"}}))
    assert b2.build().constraints.anti.tolist() == [[0, 0, 0], [0, 0, 1]]
