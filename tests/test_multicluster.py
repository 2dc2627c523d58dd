"""edgeplace.k8s.multicluster without clusters: the fleet config, the merged view, dispatch decisions.

Dispatch through a real MultiKueue (a manager and two workers) is in
tests/e2e/test_multikueue_e2e.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgeplace.k8s.kueue import ANN_LATEST_START, KueueObjects, KueueOptions, PlanView, ScaledClock
from edgeplace.k8s.mapping import ClusterObjects
from edgeplace.k8s.multicluster import (LABEL_CLUSTER, Fleet, cluster_of, decide_dispatch, eligible_clusters,
                                        merge_fleet, parse_fleet_config, worker_view)
from edgeplace.topology.errors import InputError

NOW = datetime(2026, 6, 21, 10, 17, tzinfo=timezone.utc)
FLEET = {"sites": [{"id": "metro-de", "tier": "metro", "region": "DE"}, {"id": "cloud-se", "tier": "cloud", "region": "SE"}],
         "clusters": [{"name": "worker-de", "site": "metro-de"}, {"name": "worker-se", "context": "se", "site": "cloud-se"}]}


def test_a_fleet_config_is_a_site_config_with_clusters():
    fleet = parse_fleet_config(FLEET)
    assert [c.name for c in fleet.clusters] == ["worker-de", "worker-se"]
    assert fleet.clusters[1].context == "se" and {s.id for s in fleet.site_config.sites} == {"metro-de", "cloud-se"}


@pytest.mark.parametrize("change, path, message", [
    ({"clusters": []}, "clusters", "must list the worker clusters"),
    ({"clusters": [{"name": "a"}, {"name": "a"}]}, "clusters[1].name", "listed twice"),
    ({"clusters": [{"name": "a", "site": "moon"}]}, "clusters[0].site", "'moon' is not in sites"),
    ({"clusters": [{"name": "Worker_A"}]}, "clusters[0].name", "pattern"),
    ({"clusters": [{"name": "a", "zone": "x"}]}, "clusters[0].zone", "is not a known field"),
    ({"horizon": {"slots": 0}}, "horizon.slots", "must be > 0"),
])
def test_fleet_config_problems_name_the_field(change, path, message):
    with pytest.raises(InputError) as err:
        parse_fleet_config({**FLEET, **change}, source="fleet.yaml")
    rendered = err.value.render()
    assert "fleet.yaml" in rendered and path in rendered and message in rendered, rendered


def _node(name, labels=None):
    return {"metadata": {"name": name, "labels": dict(labels or {})}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}


def test_a_worker_view_renames_its_nodes_and_keeps_its_pods_on_them():
    fleet = parse_fleet_config(FLEET)
    objects = ClusterObjects(nodes=[_node("n1"), _node("n2", {"edgeplace.io/site": "rack-7"})],
                             pods=[{"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}}, {"metadata": {"name": "q"}, "spec": {}}],
                             deployments=[{"metadata": {"name": "web"}}])
    view = worker_view(objects, fleet.clusters[0])
    assert [n["metadata"]["name"] for n in view.nodes] == ["worker-de/n1", "worker-de/n2"]
    assert view.nodes[0]["metadata"]["labels"] == {LABEL_CLUSTER: "worker-de", "edgeplace.io/site": "metro-de"}
    assert view.nodes[1]["metadata"]["labels"]["edgeplace.io/site"] == "rack-7"  # the node's own label wins
    assert [p["spec"].get("nodeName") for p in view.pods] == ["worker-de/n1", None]
    assert view.deployments == [] and objects.nodes[0]["metadata"]["name"] == "n1"
    assert cluster_of("worker-de/n1") == "worker-de" and cluster_of("n1") is None


def _mk_job(name, managed=True):
    return {"metadata": {"name": name, "namespace": "batch"},
            "spec": {"managedBy": "kueue.x-k8s.io/multikueue" if managed else None, "template": {"spec": {}}}}


def _wl(job, cluster=None, **status):
    return {"metadata": {"name": f"job-{job}", "namespace": "batch", "annotations": {},
                         "ownerReferences": [{"kind": "Job", "apiVersion": "batch/v1", "name": job, "controller": True}]},
            "status": {**({"clusterName": cluster} if cluster else {}), **status}}


def test_the_merged_fleet_plans_waiting_jobs_everywhere_and_keeps_running_ones_in_their_cluster():
    manager = ClusterObjects(jobs=[_mk_job("waiting"), _mk_job("in-se"), _mk_job("in-gone"), _mk_job("local", managed=False)],
                             namespaces=[{"metadata": {"name": "batch"}}], nodes=[_node("manager-node")])
    kueue = KueueObjects(workloads=[_wl("in-se", "worker-se"), _wl("in-gone", "worker-gone")])
    worker = ClusterObjects(nodes=[_node("worker-se/n1")], namespaces=[{"metadata": {"name": "batch"}},
                                                                       {"metadata": {"name": "kube-system"}}])
    merged = merge_fleet(manager, kueue, {"worker-se": worker}, ["note"])
    jobs = {j["metadata"]["name"]: j for j in merged.jobs}
    assert set(jobs) == {"waiting", "in-se"}  # local jobs run in the manager; in-gone's worker was not read
    assert jobs["in-se"]["spec"]["template"]["spec"]["nodeSelector"] == {LABEL_CLUSTER: "worker-se"}
    assert "nodeSelector" not in jobs["waiting"]["spec"]["template"]["spec"]
    assert [n["metadata"]["name"] for n in merged.nodes] == ["worker-se/n1"]  # no manager nodes
    assert sorted(ns["metadata"]["name"] for ns in merged.namespaces) == ["batch", "kube-system"]
    assert merged.notes == ["note"] and merged.kueue is kueue


def test_a_fleet_leaves_out_a_worker_it_cannot_read(monkeypatch):
    fleet = parse_fleet_config(FLEET)
    seen = []

    def connect(kubeconfig, context):
        seen.append((kubeconfig, context))
        return context

    def reader(api):
        if api == "se":
            raise ConnectionRefusedError("connection refused")
        return ClusterObjects(nodes=[_node("n1")])

    monkeypatch.setattr("edgeplace.k8s.multicluster.read_kueue", lambda api, multikueue=False: KueueObjects())
    merged = Fleet("manager", fleet, connect, reader=reader, kubeconfig="k.yaml").read()
    assert seen == [("k.yaml", "worker-de"), ("k.yaml", "se")]
    assert [n["metadata"]["name"] for n in merged.nodes] == ["worker-de/n1"]
    assert merged.notes and "worker cluster worker-se: cannot be read (ConnectionRefusedError" in merged.notes[0]


# ---------------------------------------------------------------------------
# Dispatch


def _mk_objects(active=("worker-de", "worker-se")):
    cluster = lambda name: {"metadata": {"name": name}, "status": {"conditions": [  # noqa: E731
        {"type": "Active", "status": "True" if name in active else "False"}]}}
    return KueueObjects(
        admission_checks=[{"metadata": {"name": "mk"}, "spec": {"controllerName": "kueue.x-k8s.io/multikueue",
                                                                "parameters": {"name": "fleet"}}}],
        multikueue_configs=[{"metadata": {"name": "fleet"}, "spec": {"clusters": ["worker-se", "worker-de", "worker-x"]}}],
        multikueue_clusters=[cluster("worker-de"), cluster("worker-se")])


def test_eligible_clusters_are_the_active_ones_of_the_checks_config():
    assert eligible_clusters("mk", _mk_objects()) == ["worker-de", "worker-se"]  # worker-x has no MultiKueueCluster
    assert eligible_clusters("mk", _mk_objects(active=("worker-de",))) == ["worker-de"]
    assert eligible_clusters("other", _mk_objects()) == []


def _pending(reserved_s_ago=10.0, nominated=None, latest=None, cluster=None):
    conds = [{"type": "QuotaReserved", "status": "True",
              "lastTransitionTime": (NOW - timedelta(seconds=reserved_s_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")}]
    wl = _wl("train", cluster, conditions=conds, **({"nominatedClusterNames": nominated} if nominated else {}))
    if latest:
        wl["metadata"]["annotations"][ANN_LATEST_START] = latest
    return wl


def _view(nodes, ids=("batch/train",)):
    return PlanView(NOW, frozenset(ids), {}, {"batch/train": tuple(nodes)} if nodes is not None else {})


ELIGIBLE = ["worker-de", "worker-se"]


@pytest.mark.parametrize("wl, plan, eligible, ours_ready, clusters, reason", [
    (_pending(), _view(["worker-se/n1"]), ELIGIBLE, False, None, "not_due"),       # edgeplace's check not Ready yet
    (_pending(cluster="worker-se"), _view(["worker-se/n1"]), ELIGIBLE, True, None, "not_due"),  # already placed
    (_pending(), _view(["worker-se/n1"]), [], True, None, "not_due"),              # nowhere to go
    (_pending(), _view(["worker-se/n1"]), ELIGIBLE, True, ("worker-se",), "plan"),
    # replicas split over clusters (MultiKueue cannot split): the cluster with most of them
    (_pending(), _view(["worker-de/n1", "worker-se/n1", "worker-se/n2"]), ELIGIBLE, True, ("worker-se",), "plan"),
    (_pending(), _view(["worker-se/n1"]), ["worker-de"], True, ("worker-de",), "unreachable"),
    (_pending(), _view([]), ELIGIBLE, True, tuple(ELIGIBLE), "not_placed"),
    (_pending(), None, ELIGIBLE, True, None, "waiting_for_plan"),
    (_pending(reserved_s_ago=200), None, ELIGIBLE, True, tuple(ELIGIBLE), "no_plan"),
    (_pending(nominated=["worker-se"]), None, ELIGIBLE, True, ("worker-se",), "kept"),
    # chosen worker has not reserved it in dispatch_timeout_s (300 s): offered to all
    (_pending(reserved_s_ago=400, nominated=["worker-se"]), _view(["worker-se/n1"]), ELIGIBLE, True,
     tuple(ELIGIBLE), "not_reserved"),
    (_pending(latest="2026-06-21T10:00:00Z"), _view(["worker-se/n1"]), ELIGIBLE, True, tuple(ELIGIBLE), "deadline"),
])
def test_decide_dispatch(wl, plan, eligible, ours_ready, clusters, reason, monkeypatch):
    monkeypatch.setattr(ScaledClock, "wall", staticmethod(lambda: NOW))
    decision = decide_dispatch(wl, "batch/train", plan, eligible, ours_ready, NOW, ScaledClock(),
                               KueueOptions(plan_wait_s=120.0, dispatch_timeout_s=300.0))
    assert (decision.clusters, decision.reason) == (clusters, reason)
