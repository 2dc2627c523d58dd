"""edgeplace.k8s.identity: the mapping and the extender name a pod's workload alike (tests/test_identity.py: the rule itself).

The cluster objects are the JSON the API server sends (builders of
tests/test_mapping.py). The pods are as the controllers make them: a
Deployment's pods carry the ReplicaSet's ``pod-template-hash`` label and the
template's annotations; the extender sees only the pod.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgeplace.k8s.extender.wire import parse_pod
from edgeplace.k8s.identity import WorkloadKey, owner_workload, pod_workload_id, workload_id
from edgeplace.k8s.mapping import placement_from_cluster
from tests.test_mapping import deployment, job, mapped, pod, replicaset, template, world


def statefulset(ns, name, replicas=1):
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}"},
            "spec": {"replicas": replicas, "template": template()}}


def controlled_pod(ns, name, kind, owner, node, labels=None, annotations=None):
    p = pod(ns, name, owner_kind=kind, owner=owner, node_name=node, annotations=annotations)
    p["metadata"]["labels"] = dict(labels or {})
    return p


def cluster():
    """web (Deployment, ReplicaSet web-5c8f9), front (Deployment named by its template annotation),
    db (StatefulSet), nightly-2901 (a CronJob's Job); plus a DaemonSet's pod and a bare pod."""
    hashed = {"pod-template-hash": "5c8f9"}
    renamed = {"edgeplace.io/workload": "shop/storefront"}
    pods = [controlled_pod("shop", "web-5c8f9-a", "ReplicaSet", "web-5c8f9", "e1", hashed),
            controlled_pod("shop", "web-5c8f9-b", "ReplicaSet", "web-5c8f9", "c1", hashed),
            controlled_pod("shop", "front-77b4d-a", "ReplicaSet", "front-77b4d", "c1",
                           {"pod-template-hash": "77b4d"}, renamed),
            controlled_pod("shop", "db-0", "StatefulSet", "db", "c1"),
            controlled_pod("shop", "nightly-2901-x", "Job", "nightly-2901", "c1"),
            controlled_pod("shop", "agent-q7", "DaemonSet", "agent", "e1"),
            controlled_pod("shop", "debug", None, None, "e1")]
    objs = world(deployments=[deployment("shop", "web", replicas=2), deployment("shop", "front", replicas=1,
                                                                                  pod_annotations=renamed)],
                 replicasets=[replicaset("shop", "web-5c8f9", "web"), replicaset("shop", "front-77b4d", "front")],
                 statefulsets=[statefulset("shop", "db")],
                 jobs=[job("shop", "nightly-2901")],
                 pods=pods)
    return objs, {p["metadata"]["name"]: p for p in pods}


EXPECTED = {"web-5c8f9-a": "shop/web", "web-5c8f9-b": "shop/web", "front-77b4d-a": "shop/storefront",
            "db-0": "shop/db", "nightly-2901-x": "shop/nightly-2901"}


def test_the_extender_finds_the_workload_the_mapping_planned():
    objs, pods = cluster()
    m = mapped(objs)
    assert sorted(m.scenario.workload_ids) == sorted(set(EXPECTED.values()))
    # The mapping attaches the same pods to the same ids (through the ReplicaSet objects)...
    placement = placement_from_cluster(m.scenario, objs)
    replica_node = np.asarray(placement.assign)[:, 0]
    for w, wid in enumerate(m.scenario.workload_ids):
        first, n = int(m.scenario.workload_first_replica[w]), int(m.scenario.workload_replicas[w])
        assert (replica_node[first:first + n] >= 0).all(), wid
    # ... and the extender names each pod's workload from the pod alone, without annotations.
    for name, pod_json in pods.items():
        ref = parse_pod(copy.deepcopy(pod_json))
        assert ref.workload == EXPECTED.get(name), name
        assert pod_workload_id(pod_json, None) == (EXPECTED.get(name) if name != "agent-q7" else "shop/agent")
    assert parse_pod(pods["web-5c8f9-a"]).workload_source == "owner"
    assert parse_pod(pods["front-77b4d-a"]).workload_source == "annotation"
    assert parse_pod(pods["agent-q7"]).workload_source == "daemonset"
    assert parse_pod(pods["debug"]).workload_source == "none"


@pytest.mark.parametrize("kind, owner, labels, expected", [
    ("ReplicaSet", "web-5c8f9", {"pod-template-hash": "5c8f9"}, WorkloadKey("Deployment", "shop", "web")),
    ("ReplicaSet", "web-5c8f9", {}, WorkloadKey("ReplicaSet", "shop", "web-5c8f9")),  # no hash: not a Deployment's
    ("ReplicaSet", "web-5c8f9", {"pod-template-hash": "zzz"}, WorkloadKey("ReplicaSet", "shop", "web-5c8f9")),
    ("ReplicaSet", "-5c8f9", {"pod-template-hash": "5c8f9"}, WorkloadKey("ReplicaSet", "shop", "-5c8f9")),
    ("StatefulSet", "db", {}, WorkloadKey("StatefulSet", "shop", "db")),
    ("Job", "nightly-2901", {}, WorkloadKey("Job", "shop", "nightly-2901")),
    ("DaemonSet", "agent", {}, WorkloadKey("DaemonSet", "shop", "agent")),
    ("Node", "e1", {}, None),  # a static pod's mirror
    (None, None, {}, None),
])
def test_owner_workload_from_the_pod_alone(kind, owner, labels, expected):
    assert owner_workload(controlled_pod("shop", "p", kind, owner, None, labels)) == expected


def test_replicasets_at_hand_decide_over_the_name_rule():
    p = controlled_pod("shop", "p", "ReplicaSet", "web-5c8f9", None, {"pod-template-hash": "5c8f9"})
    assert owner_workload(p, {("shop", "web-5c8f9"): ("Deployment", "web-v2")}) == WorkloadKey("Deployment", "shop", "web-v2")
    assert owner_workload(p, {("shop", "web-5c8f9"): None}) == WorkloadKey("ReplicaSet", "shop", "web-5c8f9")
    assert owner_workload(p, {}) == WorkloadKey("Deployment", "shop", "web")  # not at hand: the name rule


def test_the_annotation_overrides_the_owner():
    assert workload_id({"edgeplace.io/workload": "shop/x"}, WorkloadKey("Deployment", "shop", "web")) == "shop/x"
    assert workload_id({"edgeplace.io/workload": ""}, WorkloadKey("Deployment", "shop", "web")) == "shop/web"
    assert workload_id({}, None) is None
