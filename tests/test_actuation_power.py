"""edgeplace.k8s.actuation.power: the lifecycle's decisions and safety rules, in dry runs.

A dry run decides exactly as a real one and writes nothing, so every rule is
checked here without a cluster; the writes themselves (cordon, taints, the
state annotations, the driver calls exactly once, a restart mid-drain) run
against the real kube-apiserver, controllers and kwok nodes in
tests/e2e/test_actuation_e2e.py.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from edgeplace.k8s.actuation.drivers import Drivers, PowerReading
from edgeplace.k8s.actuation.evictor import EvictionBudget, PodEvictor
from edgeplace.k8s.actuation.objects import PowerState
from edgeplace.k8s.actuation.power import PowerLifecycle, PowerOptions
from edgeplace.k8s.mapping import ClusterObjects
from tests.cluster_objects import PodBuilder, example_world

NOW = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
EDGE = ["edge-ffm-1", "edge-ffm-2", "edge-ffm-3", "edge-of-1", "edge-of-2"]


class Machines:
    """The power driver of the test: every node's machine reads `reading`, calls are recorded."""

    name = "kwok"

    def __init__(self, reading: PowerReading = PowerReading.ON):
        self.reading, self.calls = reading, []

    def power_on(self, target):
        self.calls.append(("on", target.node))

    def power_off(self, target):
        self.calls.append(("off", target.node))

    def power_state(self, target):
        return self.reading


def lifecycle(**options) -> tuple[PowerLifecycle, Machines]:
    machines = Machines()
    evictor = PodEvictor(None, EvictionBudget(per_cycle=100, per_node=100, per_tenant=100), dry_run=True)
    return PowerLifecycle(None, Drivers({"kwok": machines}, lambda name: None), evictor,
                          PowerOptions(dry_run=True, **{"min_on_s": 0, "min_off_s": 0, **options})), machines


def doc(asleep: list[str], nodes: list[str] | None = None) -> dict:
    """A plan document that powers `asleep` down (only the fields the lifecycle reads)."""
    names = nodes or ["cloud-fr-1", "cloud-fr-2", *EDGE, "factory-1", "factory-2", "metro-1", "metro-2", "metro-3"]
    return {"nodes": {n: {"powered": n not in asleep, "open_g_per_h": 10.0 + i} for i, n in enumerate(names)},
            "workloads": {}}


def world(**placement) -> ClusterObjects:
    objects, _ = example_world({k.replace("__", "/").replace("_", "-"): v for k, v in placement.items()})
    return objects


def set_state(objects: ClusterObjects, node: str, state: PowerState, since: datetime = NOW - timedelta(hours=1),
              ready: bool = True, **annotations: str) -> None:
    n = next(x for x in objects.nodes if x["metadata"]["name"] == node)
    n["metadata"]["annotations"].update({"edgeplace.io/power-state": state.value,
                                         "edgeplace.io/power-state-since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                         **annotations})
    n["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]


def moves(report) -> dict[str, tuple[str, str]]:
    return {t.node: (t.source.value, t.target.value) for t in report.transitions}


def test_the_plan_powers_empty_nodes_down_first_by_draining_them():
    life, _ = lifecycle(max_concurrent_drains=10)
    report = life.reconcile(world(), doc(["cloud-fr-1", "cloud-fr-2"]), [], NOW)
    assert moves(report) == {"cloud-fr-1": ("on", "draining"), "cloud-fr-2": ("on", "draining")}
    assert not any(t.applied for t in report.transitions)  # a dry run writes nothing


def test_nodes_that_cannot_power_down_or_have_no_driver_are_never_touched():
    objects = world()
    bare = next(n for n in objects.nodes if n["metadata"]["name"] == "cloud-fr-1")
    del bare["metadata"]["annotations"]["edgeplace.io/power-driver"]
    life, _ = lifecycle(max_concurrent_drains=10)
    report = life.reconcile(objects, doc(["cloud-fr-1", "factory-2", "cloud-fr-2"]), [], NOW, never_down={"cloud-fr-2"})
    # factory-2 carries can-power-down: false; cloud-fr-1 has no driver; cloud-fr-2 the scenario forbids.
    assert moves(report) == {}
    assert "factory-2" not in report.states and "cloud-fr-1" not in report.states
    assert "can never power down" in report.held["cloud-fr-2"]


@pytest.mark.parametrize("options, asleep, held", [
    ({"min_on_s": 7200}, ["cloud-fr-1"], "min_on 7200 s"),                       # on for 1 h only
    ({"max_nodes_off": 1, "max_concurrent_drains": 5}, ["cloud-fr-1", "cloud-fr-2"], "the limit is 1"),
    ({"max_off_fraction": 0.1}, ["cloud-fr-1"], "the limit is 1"),           # 10 managed nodes: 1 may go, after that
    ({"max_concurrent_drains": 1}, ["cloud-fr-1", "cloud-fr-2"], "at most 1 at once"),
])
def test_safety_rules_hold_a_node_on(options, asleep, held):
    objects = world()
    for n in ("edge-of-2",):  # one node already off counts against the limits
        set_state(objects, n, PowerState.OFF, ready=False)
    life, _ = lifecycle(**options)
    since = NOW - timedelta(hours=1)
    for n in objects.nodes:
        n["metadata"]["annotations"].setdefault("edgeplace.io/power-state-since", since.strftime("%Y-%m-%dT%H:%M:%SZ"))
    report = life.reconcile(objects, doc(asleep + ["edge-of-2"]), [], NOW)
    assert any(held in why for why in report.held.values()), report.held


def test_the_spare_capacity_floor_keeps_a_node_on():
    # Everything on metro-1 (16 cores) and metro-2: with 90 % of the staying CPU to be kept free,
    # metro-2's pods have nowhere to go.
    objects = world(shop__web=["metro-2"] * 6, shop__api=["metro-2"] * 4)
    life, _ = lifecycle(min_spare_cpu_fraction=0.9, max_concurrent_drains=10)
    report = life.reconcile(objects, doc(["metro-2"]), [], NOW)
    assert "metro-2" not in moves(report)
    assert "below the floor" in report.held["metro-2"]


def test_a_drain_evicts_what_it_may_and_waits_for_the_rest():
    objects = world()
    set_state(objects, "metro-1", PowerState.DRAINING, since=NOW - timedelta(minutes=5))
    objects.pods.append(PodBuilder("bare", "shop", "metro-1").owner(None).build())
    objects.pods.append(PodBuilder("agent", "kube-system", "metro-1").owner("DaemonSet").build())
    life, _ = lifecycle()
    report = life.reconcile(objects, doc(["metro-1"]), [], NOW)
    evicted = {pod for pod, node, result in report.evictions if result == "dry_run"}
    # Every Deployment's first pod on metro-1 (one replica of a workload at a time), not the bare one.
    assert "shop/bare" not in evicted and "kube-system/agent" not in evicted
    assert {"shop/web-0", "shop/api-0", "hospital/records-0", "cdn/cache-ffm-0"} <= evicted
    assert "shop/web-1" not in evicted
    assert "shop/bare (bare)" in report.held["metro-1"]
    assert "metro-1" not in moves(report)  # still draining


def test_a_drained_node_with_only_daemonset_pods_is_switched_off():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.DRAINING, since=NOW - timedelta(minutes=5))
    objects.pods.append(PodBuilder("agent", "kube-system", "cloud-fr-1").owner("DaemonSet").build())
    life, _ = lifecycle()
    report = life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW)
    assert moves(report)["cloud-fr-1"] == ("draining", "powering-off")


def test_a_drain_is_cancelled_when_the_plan_needs_the_node_again_or_it_times_out():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.DRAINING, since=NOW - timedelta(minutes=5))
    life, _ = lifecycle()
    report = life.reconcile(objects, doc([]), [], NOW)
    assert [(t.target.value, t.why) for t in report.transitions] == [("on", "the plan needs it again: drain cancelled")]
    set_state(objects, "cloud-fr-1", PowerState.DRAINING, since=NOW - timedelta(hours=1))
    objects.pods.append(PodBuilder("bare", "shop", "cloud-fr-1").owner(None).build())
    report = life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW)  # drain_timeout_s 1800 by default
    assert [(t.target.value, t.why) for t in report.transitions] == [("on", "drain timed out")]


def test_powering_off_ends_when_the_node_is_not_ready():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.POWERING_OFF, ready=False, **{
        "edgeplace.io/power-operation": "power-off sent 2026-06-21T09:59:00Z"})
    life, _ = lifecycle()
    assert moves(life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW))["cloud-fr-1"] == ("powering-off", "off")


def test_the_plan_wakes_a_node_only_after_its_minimum_off_time():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.OFF, since=NOW - timedelta(minutes=10), ready=False)
    life, _ = lifecycle(min_off_s=1800)
    report = life.reconcile(objects, doc([]), [], NOW)
    assert "cloud-fr-1" not in moves(report) and "min_off 1800 s" in report.held["cloud-fr-1"]
    life, _ = lifecycle(min_off_s=300)
    assert moves(life.reconcile(objects, doc([]), [], NOW))["cloud-fr-1"] == ("off", "waking")


def test_pending_pods_wake_the_cheapest_node_they_fit_on_after_the_grace_time():
    objects = world()
    for n in ("cloud-fr-1", "cloud-fr-2", "metro-3"):
        set_state(objects, n, PowerState.OFF, ready=False)
    big = PodBuilder("batch", "shop").cpu("20").pending_unschedulable("2026-06-21T09:58:00Z").build()
    objects.pods.append(big)
    life, _ = lifecycle(min_off_s=1e9, pending_grace_s=60)
    # 20 cores fit only the 32-core cloud nodes; cloud-fr-1 has the lower open cost in the plan.
    assert moves(life.reconcile(objects, doc(["cloud-fr-1", "cloud-fr-2", "metro-3"]), [], NOW)) == {
        "cloud-fr-1": ("off", "waking")}
    big["status"]["conditions"][0]["lastTransitionTime"] = "2026-06-21T09:59:30Z"  # pending for 30 s only
    assert moves(life.reconcile(objects, doc(["cloud-fr-1", "cloud-fr-2", "metro-3"]), [], NOW)) == {}


@pytest.mark.parametrize("came_up", ["in this round", "a second ago"])
def test_a_node_that_has_just_come_up_takes_the_pending_pods_before_another_is_woken(came_up):
    objects = world()
    for n in ("cloud-fr-2", "metro-3"):
        set_state(objects, n, PowerState.OFF, ready=False)
    if came_up == "in this round":
        set_state(objects, "cloud-fr-1", PowerState.WAKING, since=NOW - timedelta(seconds=20), ready=True)
    else:
        set_state(objects, "cloud-fr-1", PowerState.ON, since=NOW - timedelta(seconds=1), ready=True)
    objects.pods.append(PodBuilder("web-a", "shop").cpu("8").pending_unschedulable("2026-06-21T09:58:00Z").build())
    life, machines = lifecycle(min_off_s=1e9, pending_grace_s=30)
    report = life.reconcile(objects, doc(["cloud-fr-2", "metro-3"]), [], NOW)
    assert not [t for t in report.transitions if t.target is PowerState.WAKING] and not machines.calls
    # More than it has room for: the rest wakes a node.
    objects.pods.append(PodBuilder("web-b", "shop").cpu("30").pending_unschedulable("2026-06-21T09:58:00Z").build())
    report = life.reconcile(objects, doc(["cloud-fr-2", "metro-3"]), [], NOW)
    assert [t.node for t in report.transitions if t.target is PowerState.WAKING] == ["cloud-fr-2"]


def test_a_pending_pod_wakes_no_node_it_could_not_run_on():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.OFF, ready=False)
    pod = PodBuilder("edge-only", "shop").pending_unschedulable("2026-06-21T09:00:00Z").build()
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["access-ffm"]}]}]}}}
    objects.pods.append(pod)
    life, _ = lifecycle(pending_grace_s=0)
    assert moves(life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW)) == {}


def test_a_node_that_does_not_wake_in_time_is_reported_and_another_woken():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.WAKING, since=NOW - timedelta(minutes=20), ready=False)
    set_state(objects, "cloud-fr-2", PowerState.OFF, ready=False)
    life, _ = lifecycle(wake_timeout_s=600)
    report = life.reconcile(objects, doc(["cloud-fr-2"]), [], NOW)
    assert moves(report) == {"cloud-fr-1": ("waking", "off"), "cloud-fr-2": ("off", "waking")}
    assert report.held["cloud-fr-1"] == "did not wake in time"


def test_a_node_that_did_not_wake_is_not_woken_again_by_the_plan_until_the_retry_time():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.OFF, ready=False,
              **{"edgeplace.io/wake-failed-at": "2026-06-21T09:50:00Z"})
    life, machines = lifecycle(wake_retry_s=3600)
    report = life.reconcile(objects, doc([]), [], NOW)  # a plan made before the failure wants it on
    assert "cloud-fr-1" not in moves(report) and not machines.calls
    assert "did not wake at 2026-06-21T09:50:00Z" in report.held["cloud-fr-1"]
    life, _ = lifecycle(wake_retry_s=300)
    assert moves(life.reconcile(objects, doc([]), [], NOW))["cloud-fr-1"] == ("off", "waking")


def test_a_woken_node_that_is_ready_goes_back_into_service():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.WAKING, since=NOW - timedelta(minutes=2), ready=True)
    life, _ = lifecycle()
    assert moves(life.reconcile(objects, doc([]), [], NOW))["cloud-fr-1"] == ("waking", "on")


def test_a_node_switched_on_by_hand_is_taken_back_into_service():
    objects = world()
    set_state(objects, "cloud-fr-1", PowerState.OFF, ready=True)
    life, machines = lifecycle()
    machines.reading = PowerReading.OFF  # the BMC still says off: a node that only looks Ready stays off
    assert "cloud-fr-1" not in moves(life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW))
    machines.reading = PowerReading.ON
    assert moves(life.reconcile(objects, doc(["cloud-fr-1"]), [], NOW))["cloud-fr-1"] == ("off", "on")


def test_power_options_are_checked():
    with pytest.raises(ValueError, match="max_off_fraction must be in 0..1"):
        PowerOptions(max_off_fraction=1.5)
    with pytest.raises(ValueError, match="max_concurrent_drains must be >= 1"):
        PowerOptions(max_concurrent_drains=0)
    with pytest.raises(ValueError, match="wake_timeout_s must be >= 0"):
        PowerOptions(wake_timeout_s=-1)
