"""edgeplace.optimizer.explain: one line per unplaced workload naming its tightest constraint,
then the other violations as "kind: message".

Placements are written by hand (tests.builders.place); nodes are the
builder's default 4000 millicores and 8192 MiB.
"""

from __future__ import annotations

from edgeplace.optimizer.explain import explain_unplaced
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder, place


def explain(sc, placement) -> list[str]:
    return explain_unplaced(price(sc), placement, evaluate(sc, placement))


def edge_and_cloud() -> ScenarioBuilder:
    """Edge site `a` (n1, n2) 1 ms from user u; cloud `c` (n3) 20 ms further."""
    return (ScenarioBuilder().slots(2).region("DE", 400).site("a", pue=1.0).node("n1").node("n2")
            .site("c", tier="cloud", pue=1.0).node("n3").link("a", "c", 20)
            .user("u", site="a", access_ms=1))


def test_a_feasible_placement_needs_no_explanation():
    sc = edge_and_cloud().tenant("t1").workload("w", sla_ms=5, users=["u"]).build()
    assert explain(sc, place(sc, {"w": ["n1"]})) == []


def test_cpu_shortfall_near_the_users():
    # n1 holds big (3000) and w[0] (2500 would not fit beside it): w has 2 replicas of 2500;
    # w[0] on n2 leaves 4000 - 2500 = 1500 there, n1 has 4000 - 3000 = 1000: best free 1500 < 2500.
    sc = (edge_and_cloud().tenant("t1")
          .workload("big", cpu=3000, sla_ms=5, users=["u"])
          .workload("w", cpu=2500, replicas=2, sla_ms=5, users=["u"]).build())
    lines = explain(sc, place(sc, {"big": ["n1"], "w": ["n2", [None, None]]}))
    assert lines == [("w: 1 of 2 replica(s) unplaced; the 2 node(s) within 5 ms of users u have at most "
                     "1500 cpu_millicores free in every slot, each replica needs 2500")]


def test_the_tightest_resource_wins():
    # w needs 1000 millicores (3000 free: ratio 3) and 6000 MiB (8192 - 4096 = 4096 free: ratio 0.68).
    sc = (edge_and_cloud().tenant("t1")
          .workload("hog", memory=4096, replicas=2, sla_ms=5, users=["u"])
          .workload("w", memory=6000, sla_ms=5, users=["u"]).build())
    lines = explain(sc, place(sc, {"hog": ["n1", "n2"]}))
    assert lines == [("w: 1 of 1 replica(s) unplaced; the 2 node(s) within 5 ms of users u have at most "
                     "4096 memory_mib free in every slot, each replica needs 6000")]


def test_a_workload_without_an_sla_counts_its_eligible_nodes():
    sc = (edge_and_cloud().tenant("t1")
          .workload("fill", cpu=4000, replicas=3)
          .workload("w", cpu=500).build())
    lines = explain(sc, place(sc, {"fill": ["n1", "n2", "n3"]}))
    assert lines == [("w: 1 of 1 replica(s) unplaced; the 3 eligible node(s) have at most "
                     "0 cpu_millicores free in every slot, each replica needs 500")]


def test_the_worst_slot_counts():
    # A job on n1 in slot 1 only still leaves n1 with 1000 free "in every slot".
    sc = (ScenarioBuilder().slots(2).region("DE", 400).site("a", pue=1.0).node("n1")
          .user("u", site="a").tenant("t1")
          .workload("job", cpu=3000, window=(0, 2), duration_minutes=60)
          .workload("w", cpu=2000, sla_ms=5, users=["u"]).build())
    lines = explain(sc, place(sc, {"job": {"start_slot": 1, "replicas": ["n1"]}}))
    assert lines == [("w: 1 of 1 replica(s) unplaced; the 1 node(s) within 5 ms of users u have at most "
                     "1000 cpu_millicores free in every slot, each replica needs 2000")]


def test_never_with_is_named_when_capacity_is_not_the_reason():
    sc = (edge_and_cloud().tenant("t1", never_with=["t2"]).tenant("t2")
          .workload("a1", tenant="t1", replicas=2, sla_ms=5, users=["u"])
          .workload("b1", tenant="t2", sla_ms=5, users=["u"]).build())
    lines = explain(sc, place(sc, {"a1": ["n1", "n2"]}))
    assert lines == [("b1: 1 of 1 replica(s) unplaced; the 2 node(s) within 5 ms of users u have room for a "
                     "replica, but tenant t2 never shares a node with t1, which runs there")]


def test_spread_is_named_when_capacity_is_not_the_reason():
    # Spread over 2 sites with a 30 ms SLA: n1 and n2 at `a`, n3 at `c` (21 ms) all qualify.
    # The other replica's site is taken; n3 has room, yet it was left out.
    sc = (edge_and_cloud().tenant("t1")
          .workload("w", replicas=2, min_sites=2, sla_ms=30, users=["u"]).build())
    lines = explain(sc, place(sc, {"w": ["n1", [None, None]]}))
    assert lines[0] == ("w: 1 of 2 replica(s) unplaced; the 3 node(s) within 30 ms of users u have room for a "
                        "replica, but its replicas must spread over 2 sites")


def test_a_used_up_quota_is_named_when_capacity_is_not_the_reason():
    # t1 may request 2500 millicores at once; web takes 2 x 1000, so the 1000-millicore job
    # (window slots 0-1) finds 500 left in either slot although every node has room.
    sc = (edge_and_cloud().tenant("t1", quota={"cpu_millicores": 2500})
          .workload("web", replicas=2, sla_ms=5, users=["u"])
          .workload("job", window=(0, 2), duration_minutes=60).build())
    lines = explain(sc, place(sc, {"web": ["n1", "n2"]}))
    assert lines == [("job: 1 of 1 replica(s) unplaced; the 3 eligible node(s) have room for a replica, but tenant "
                      "t1's cpu_millicores quota of 2500 leaves less than 1000 in every slot it could run in")]


def test_other_violations_follow_as_kind_and_message():
    # w2 on the cloud node breaks its 5 ms SLA by 21 - 5 = 16 ms; w is unplaced (schedule,
    # already explained above, so not repeated).
    sc = (edge_and_cloud().tenant("t1")
          .workload("fill", cpu=4000, replicas=2, sla_ms=5, users=["u"])
          .workload("w", sla_ms=5, users=["u"])
          .workload("w2", sla_ms=5, users=["u"]).build())
    lines = explain(sc, place(sc, {"fill": ["n1", "n2"], "w2": ["n3"]}))
    assert lines[0].startswith("w: 1 of 1 replica(s) unplaced; the 2 node(s) within 5 ms")
    assert lines[1:] == ["sla: w2 misses its 5 ms SLA by up to 16.0 ms for users u"]
