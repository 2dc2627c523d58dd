"""edgeplace.k8s.identity: a pod's workload from its annotation or its owner references."""

from __future__ import annotations

import pytest

from edgeplace.k8s.identity import WorkloadKey, controller_ref, owner_workload, pod_workload_id


def pod(owner_kind=None, owner_name=None, ns="shop", labels=None, annotations=None, controller=True, extra_refs=()):
    refs = list(extra_refs)
    if owner_kind:
        refs.append({"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_name, "uid": "u1", "controller": controller})
    meta = {"name": "p-1", "namespace": ns, "labels": labels or {}, "annotations": annotations or {}}
    if refs:
        meta["ownerReferences"] = refs
    return {"metadata": meta, "spec": {}}


@pytest.mark.parametrize("p, key", [
    # Deployment controller: ReplicaSet <deployment>-<pod-template-hash>, pods labelled with the hash.
    (pod("ReplicaSet", "web-5d8f7b9c4", labels={"pod-template-hash": "5d8f7b9c4"}), WorkloadKey("Deployment", "shop", "web")),
    (pod("ReplicaSet", "my-app-v2-7c9d", labels={"pod-template-hash": "7c9d"}), WorkloadKey("Deployment", "shop", "my-app-v2")),
    # A ReplicaSet whose name does not end in the pod's hash is a workload of its own.
    (pod("ReplicaSet", "web-rs", labels={"pod-template-hash": "5d8f7b9c4"}), WorkloadKey("ReplicaSet", "shop", "web-rs")),
    (pod("ReplicaSet", "web-rs"), WorkloadKey("ReplicaSet", "shop", "web-rs")),
    (pod("StatefulSet", "db"), WorkloadKey("StatefulSet", "shop", "db")),
    (pod("DaemonSet", "node-exporter", ns="monitoring"), WorkloadKey("DaemonSet", "monitoring", "node-exporter")),
    # A CronJob's Job: the Job is the workload (each run is placed on its own).
    (pod("Job", "report-29170560"), WorkloadKey("Job", "shop", "report-29170560")),
    (pod(), None),  # a bare pod
    (pod("Node", "edge-1"), None),  # static (mirror) pods are owned by their Node
    (pod("ReplicationController", "old"), None),
])
def test_owner_workload_from_the_pod_alone(p, key):
    assert owner_workload(p) == key


def test_replicasets_known_to_the_caller_win_over_the_name_rule():
    p = pod("ReplicaSet", "web-rs")
    assert owner_workload(p, {("shop", "web-rs"): ("Deployment", "web")}) == WorkloadKey("Deployment", "shop", "web")
    assert owner_workload(p, {("shop", "web-rs"): None}) == WorkloadKey("ReplicaSet", "shop", "web-rs")
    # A ReplicaSet controlled by something other than a Deployment (an Argo Rollout) is no workload we know.
    assert owner_workload(p, {("shop", "web-rs"): ("Rollout", "web")}) is None
    # Unknown to the caller: the name rule still applies.
    hashed = pod("ReplicaSet", "api-6f4b", labels={"pod-template-hash": "6f4b"})
    assert owner_workload(hashed, {}) == WorkloadKey("Deployment", "shop", "api")


def test_the_annotation_overrides_the_owner():
    p = pod("ReplicaSet", "web-5d8f", labels={"pod-template-hash": "5d8f"}, annotations={"edgeplace.io/workload": "shop/frontend"})
    assert pod_workload_id(p) == "shop/frontend"
    assert pod_workload_id(pod(annotations={"edgeplace.io/workload": "batch/nightly"})) == "batch/nightly"
    assert pod_workload_id(pod("ReplicaSet", "web-5d8f", labels={"pod-template-hash": "5d8f"})) == "shop/web"
    assert pod_workload_id(pod()) is None
    assert pod_workload_id(pod(annotations={"edgeplace.io/workload": ""})) is None  # empty is no override


def test_controller_ref_prefers_the_controller_and_tolerates_junk():
    refs = [{"kind": "ConfigMap", "name": "c"}, {"kind": "Job", "name": "j", "controller": True}]
    assert controller_ref({"metadata": {"ownerReferences": refs}})["name"] == "j"
    assert controller_ref({"metadata": {"ownerReferences": [{"kind": "Job", "name": "j"}]}})["name"] == "j"
    assert controller_ref({"metadata": {"ownerReferences": [{"kind": "A"}, {"kind": "B"}]}}) is None
    assert controller_ref({"metadata": {"ownerReferences": "nope"}}) is None
    assert controller_ref({}) is None
    assert owner_workload({"metadata": {"ownerReferences": [{"kind": "Job", "controller": True}]}}) is None  # no name
