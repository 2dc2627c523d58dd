"""edgeplace.k8s.actuation.evictor: which pods may be evicted, PDB allowances, budgets, dry runs.

The Eviction API itself (a 429 from a PDB, the uid precondition, recreated
pods) is tested against the real kube-apiserver and controllers in
tests/e2e/test_actuation_e2e.py.
"""

from __future__ import annotations

import pytest

from tests.cluster_objects import PodBuilder, pdb
from edgeplace.k8s.actuation.evictor import (EvictionBudget, EvictionFilter, EvictionOptions, EvictionResult, PodEvictor,
                                             Protection, workload_allowance)
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.actuation.objects import PodKind, pod_facts
from edgeplace.k8s.scheduling import label_selector_matches


def facts(builder: PodBuilder):
    return pod_facts(builder.build())


@pytest.mark.parametrize("pod, protection", [
    (PodBuilder("web"), None),                                                   # a ReplicaSet's pod may move
    (PodBuilder("web").owner("StatefulSet"), None),
    (PodBuilder("web").terminating(), Protection.TERMINATING),
    (PodBuilder("web").owner(None), Protection.BARE),                            # nobody would recreate it
    (PodBuilder("agent").owner("DaemonSet"), Protection.DAEMONSET),
    (PodBuilder("etcd").owner("Node").annotation("kubernetes.io/config.mirror", "x"), Protection.MIRROR),
    (PodBuilder("web").annotation("edgeplace.io/no-rebalance", "true"), Protection.OPTED_OUT),
    (PodBuilder("web").annotation("descheduler.alpha.kubernetes.io/prevent-eviction", "true"), Protection.OPTED_OUT),
    (PodBuilder("web").phase("Pending", ready=False), Protection.NOT_RUNNING),
    (PodBuilder("web", namespace="kube-system"), Protection.EXCLUDED_NAMESPACE),
    (PodBuilder("train").owner("Job"), Protection.JOB),                          # its progress would be lost
    (PodBuilder("dns").priority_class("system-cluster-critical"), Protection.SYSTEM_CRITICAL),
    (PodBuilder("cache").volume(emptyDir={}), Protection.LOCAL_STORAGE),
    (PodBuilder("cache").volume(hostPath={"path": "/data"}), Protection.LOCAL_STORAGE),
    # The descheduler's opt-in lifts the soft protections, not the hard ones.
    (PodBuilder("cache").volume(emptyDir={}).annotation("descheduler.alpha.kubernetes.io/evict", ""), None),
    (PodBuilder("dns").priority_class("system-node-critical").annotation("descheduler.alpha.kubernetes.io/evict", ""), None),
    (PodBuilder("web").owner(None).annotation("descheduler.alpha.kubernetes.io/evict", ""), Protection.BARE),
])
def test_eviction_filter(pod, protection):
    assert EvictionFilter().why_not(facts(pod)) is protection


def test_eviction_options_lift_the_protections_they_name():
    guard = EvictionFilter(EvictionOptions(evict_job_pods=True, evict_local_storage_pods=True, excluded_namespaces=()))
    assert guard.why_not(facts(PodBuilder("train").owner("Job"))) is None
    assert guard.why_not(facts(PodBuilder("cache").volume(emptyDir={}))) is None
    assert guard.why_not(facts(PodBuilder("x", namespace="kube-system"))) is None


@pytest.mark.parametrize("pod, blocks", [
    (PodBuilder("web"), True),
    (PodBuilder("agent").owner("DaemonSet"), False),       # DaemonSet pods never keep a node on
    (PodBuilder("etcd").owner("Node").annotation("kubernetes.io/config.mirror", "x"), True),  # a static pod would go down
    (PodBuilder("train").owner("Job").phase("Succeeded"), False),
    (PodBuilder("web").owner(None), True),
])
def test_which_pods_keep_a_node_from_powering_off(pod, blocks):
    assert EvictionFilter.blocks_power_off(facts(pod)) is blocks


def test_pod_kinds():
    assert pod_facts(PodBuilder("a").owner("ReplicationController").build()).kind is PodKind.REPLICATED
    assert pod_facts(PodBuilder("a").owner("ArgoRollout").build()).kind is PodKind.OTHER


@pytest.mark.parametrize("selector, labels, matches", [
    ({}, {"app": "x"}, True),                                                    # empty: everything
    (None, {"app": "x"}, False),                                                 # null: nothing
    ({"matchLabels": {"app": "x"}}, {"app": "x", "tier": "db"}, True),
    ({"matchLabels": {"app": "x"}}, {"app": "y"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}, {"app": "y"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, {"app": "2"}, False),  # not for pods
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}, {"app": "x"}, False),  # refused by the API
])
def test_label_selectors_as_pdbs_use_them(selector, labels, matches):
    assert label_selector_matches(selector, labels) is matches


def test_one_replica_at_a_time_unless_a_pdb_allows_more():
    ready = [facts(PodBuilder(f"web-{i}").labels(app="web")) for i in range(3)]
    assert workload_allowance(ready, []) == 1
    one_down = ready[:2] + [facts(PodBuilder("web-2").labels(app="web").phase("Running", ready=False))]
    assert workload_allowance(one_down, []) == 0
    # A PDB speaks for the workload: its disruptionsAllowed, already net of unhealthy pods.
    assert workload_allowance(ready, [pdb("default", "web", allowed=2, maxUnavailable=2)]) == 2
    assert workload_allowance(ready, [pdb("default", "web", allowed=0, minAvailable=3)]) == 0
    # The smallest of several PDBs wins; a PDB of another namespace or app does not count.
    assert workload_allowance(ready, [pdb("default", "web", allowed=2), pdb("default", "web", allowed=1) | {
        "metadata": {"name": "second", "namespace": "default"}}]) == 1
    assert workload_allowance(ready, [pdb("other", "web", allowed=0), pdb("default", "db", allowed=0)]) == 1


def test_budgets_per_cycle_node_and_tenant_in_a_dry_run():
    metrics = PlannerMetrics()
    evictor = PodEvictor(None, EvictionBudget(per_cycle=3, per_node=2, per_tenant=2), dry_run=True, metrics=metrics)
    evictor.start_cycle()
    pods = [facts(PodBuilder(f"p{i}", node=node)) for i, node in enumerate(["n1", "n1", "n1", "n2", "n3"])]
    results = [evictor.evict(p, tenant, "test") for p, tenant in zip(pods, ["a", "b", "c", "a", "a"])]
    # p2: n1 has had 2; p3, p4: p0 and p3 spend tenant a's 2, and p4 the cycle's 3 would be next anyway.
    assert results == [EvictionResult.DRY_RUN, EvictionResult.DRY_RUN, EvictionResult.BUDGET, EvictionResult.DRY_RUN,
                       EvictionResult.BUDGET]
    assert metrics.value("edgeplace_evictions_total", {"result": "dry_run"}) == 3
    evictor.start_cycle()
    assert evictor.evict(pods[2], "c", "next cycle") is EvictionResult.DRY_RUN


def test_budgets_are_checked():
    with pytest.raises(ValueError, match="per_node must be >= 0"):
        EvictionBudget(per_node=-1)
