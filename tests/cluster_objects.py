"""Builders of Kubernetes API objects as plain JSON dicts, for the actuation tests.

In the manner of kube-scheduler's `pkg/scheduler/testing/wrappers.go`: a pod or
node starts from a default and each call changes one thing, so a test reads as
what differs. `example_world()` is the bundled example cluster
(examples/cluster/cluster.yaml) with its pods placed where a test says.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from edgeplace.k8s.mapping import ClusterObjects, MappedCluster, load_site_config, map_cluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cluster"


class PodBuilder:
    """A running, ready pod of a ReplicaSet; methods change one thing each and return self."""

    def __init__(self, name: str, namespace: str = "default", node: str | None = "n1"):
        self.obj: dict[str, Any] = {
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "labels": {},
                         "annotations": {}, "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": True}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}

    def owner(self, kind: str | None, name: str = "owner") -> "PodBuilder":
        self.obj["metadata"]["ownerReferences"] = [] if kind is None else [{"kind": kind, "name": name, "controller": True}]
        return self

    def annotation(self, key: str, value: str) -> "PodBuilder":
        self.obj["metadata"]["annotations"][key] = value
        return self

    def labels(self, **labels: str) -> "PodBuilder":
        self.obj["metadata"]["labels"].update(labels)
        return self

    def phase(self, phase: str, ready: bool | None = None) -> "PodBuilder":
        self.obj["status"]["phase"] = phase
        if ready is not None:
            self.obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        return self

    def terminating(self) -> "PodBuilder":
        self.obj["metadata"]["deletionTimestamp"] = "2026-06-21T10:00:00Z"
        return self

    def priority_class(self, name: str) -> "PodBuilder":
        self.obj["spec"]["priorityClassName"] = name
        return self

    def volume(self, **volume: Any) -> "PodBuilder":
        self.obj["spec"].setdefault("volumes", []).append({"name": "v", **volume})
        return self

    def cpu(self, quantity: str) -> "PodBuilder":
        self.obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] = quantity
        return self

    def pending_unschedulable(self, since: str) -> "PodBuilder":
        self.obj["spec"]["nodeName"] = None
        self.obj["status"] = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": since}]}
        return self

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self.obj)


def pdb(namespace: str, app: str, allowed: int, **spec: Any) -> dict[str, Any]:
    """A PodDisruptionBudget over pods labelled app=<app>, with status.disruptionsAllowed = allowed."""
    return {"metadata": {"name": app, "namespace": namespace},
            "spec": {**spec, "selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed}}


def example_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / "cluster.yaml").read_text()) if d]


def example_world(placement: dict[str, list[str]], default_node: str = "metro-1",
                  ready_nodes: bool = True) -> tuple[ClusterObjects, MappedCluster]:
    """The example cluster's objects with each Deployment's pods bound as `placement` says
    (workload id -> node of each replica; others all on `default_node`), and its mapping."""
    docs = example_documents()
    nodes = []
    for d in docs:
        if d["kind"] == "Node":
            node = copy.deepcopy(d)
            node["metadata"]["resourceVersion"] = "1"
            node["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready_nodes else "False"}]
            nodes.append(node)
    deployments, replicasets, pods = [], [], []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        deployments.append(copy.deepcopy(d))
        replicasets.append({"metadata": {"name": f"{name}-rs", "namespace": ns, "labels": {"app": name},
                                         "ownerReferences": [{"kind": "Deployment", "name": name, "controller": True}]}})
        where = placement.get(f"{ns}/{name}", [default_node] * d["spec"]["replicas"])
        for i in range(d["spec"]["replicas"]):
            pod = PodBuilder(f"{name}-{i}", ns, where[i]).owner("ReplicaSet", f"{name}-rs").labels(app=name).build()
            pod["spec"] = {**copy.deepcopy(d["spec"]["template"]["spec"]), "nodeName": where[i]}
            pods.append(pod)
    objects = ClusterObjects(nodes=nodes, namespaces=[d for d in docs if d["kind"] == "Namespace"],
                             deployments=deployments, replicasets=replicasets, pods=pods,
                             poddisruptionbudgets=[])
    return objects, map_cluster(objects, load_site_config(str(EXAMPLE / "site-config.yaml")))
