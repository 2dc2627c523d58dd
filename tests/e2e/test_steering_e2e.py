"""Steering at admission against a real kube-apiserver and kube-scheduler, with no extender at all.

The chart's steering MutatingAdmissionPolicy (from the committed
deploy/manifests/edgeplace.yaml) reads the parameters `edgeplace.k8s.steering`
writes from a plan document; then Deployments' pods (through a real
ReplicaSet owner reference and pod-template-hash, no edgeplace annotation),
a StatefulSet's, an annotated pod and pods with node affinity of their own
are created and scheduled by kube-scheduler with the shipped scheduler
configuration minus its extender. Each pod must carry the terms the plan
asks for (and keep its own), bind on a planned node while one has room, and
never leave the nodes its SLA allows even when the planned ones are full.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo
from edgeplace.k8s import steering

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
SYSTEM_NS = "edgeplace-system"
NODES = [f"node-{i}" for i in range(8)]
#: A plan document, as the planner publishes it (only the fields steering reads).
PLAN = {
    "nodes": {n: {"powered": True} for n in NODES},
    "node_sets": {"set-0": NODES, "set-1": NODES[:4]},
    "workloads": {
        "shop/web": {"allowed_nodes": "set-0", "planned_nodes": {"node-5": 2, "node-6": 1}},
        "shop/db": {"allowed_nodes": "set-1", "planned_nodes": {"node-2": 2}},  # SLA: node-0..3 only
        "video": {"allowed_nodes": "set-0", "planned_nodes": {"node-7": 1}},  # by annotation
        "shop/idle": {"allowed_nodes": "set-0", "planned_nodes": {}},  # planned nowhere: untouched
    },
}


def steering_objects() -> list[dict]:
    return topo.chart_objects("edgeplace-steering", ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"))


def scheduler_config_without_extender() -> dict:
    config = yaml.safe_load((ROOT / "deploy/kube-scheduler-config.yaml").read_text())
    config.pop("clientConnection", None)
    config.pop("extenders", None)
    return config


@pytest.fixture(scope="module")
def world(e2e_binaries):
    from kubernetes import utils

    with e2e_cluster.LocalCluster() as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        for ns in (SYSTEM_NS, "shop"):
            core.create_namespace({"metadata": {"name": ns}})
        for name in NODES:
            e2e_cluster.create_node(core, name, cpu="1", memory="4Gi")
        for obj in steering_objects():
            utils.create_from_dict(api, obj)
        nodes = [api.sanitize_for_serialization(n) for n in core.list_node().items]
        params, warnings = steering.data(PLAN, steering.node_hostnames(nodes), steering.UNSTEERED)
        assert warnings == []
        # As the chart creates it: labelled, kept on uninstall; the planner replaces only its data.
        core.create_namespaced_config_map(SYSTEM_NS, {"metadata": {
            "name": steering.PARAMS_NAME, "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"helm.sh/resource-policy": "keep"}}})
        assert steering.publish(api, params, SYSTEM_NS) == "updated"
        assert steering.publish(api, params, SYSTEM_NS) == "unchanged"
        cm = core.read_namespaced_config_map(steering.PARAMS_NAME, SYSTEM_NS)
        assert cm.data == params and cm.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
        assert cm.metadata.annotations["helm.sh/resource-policy"] == "keep"
        cluster.restart_scheduler(scheduler_config_without_extender())
        # The policy acts once the API server's informers have it and its parameters: wait on a probe.
        e2e_cluster.wait_for(lambda: _affinity(_create(core, "probe", owner=("ReplicaSet", "web-5d8f9"),
                                                       hash_="5d8f9", gone=True)) is not None,
                             WAIT, "the steering policy to take effect")
        yield cluster, api, core


def _create(core, name: str, owner: tuple[str, str] | None = None, hash_: str | None = None,
            annotations: dict | None = None, affinity: dict | None = None, cpu: str = "300m", gone: bool = False,
            scheduler: str | None = None):
    meta: dict = {"name": name, "labels": {"app": name}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True,
                                    "uid": "00000000-0000-0000-0000-000000000001"}]
    if hash_:
        meta["labels"]["pod-template-hash"] = hash_
    if annotations:
        meta["annotations"] = annotations
    spec: dict = {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                  "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    if affinity:
        spec["affinity"] = affinity
    if scheduler:
        spec["schedulerName"] = scheduler
    pod = core.create_namespaced_pod("shop", {"metadata": meta, "spec": spec})
    if gone:
        core.delete_namespaced_pod(name, "shop", grace_period_seconds=0)
    return pod


def _affinity(pod) -> dict | None:
    aff = pod.spec.affinity
    return client.ApiClient().sanitize_for_serialization(aff.node_affinity) if aff and aff.node_affinity else None


def _bound(core, names: list[str]) -> dict[str, str | None] | None:
    out = {}
    for name in names:
        pod = core.read_namespaced_pod(name, "shop")
        unschedulable = any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in pod.status.conditions or [])
        if not pod.spec.node_name and not unschedulable:
            return None
        out[name] = pod.spec.node_name
    return out


def _marked(pod) -> bool:
    """Whether the policy marked the pod for the extender (and kept the container's own requests)."""
    res = pod.spec.containers[0].resources
    marked = (res.limits or {}).get(steering.UNSTEERED_RESOURCE) == "1" == (res.requests or {}).get(
        steering.UNSTEERED_RESOURCE)
    assert (res.requests or {}).get("cpu") and (res.requests or {}).get("memory") == "64Mi", res
    return marked


def _prefer(pod) -> list[str]:
    terms = (_affinity(pod) or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return [v for t in terms for e in t["preference"].get("matchExpressions") or [] for v in e["values"]]


def test_deployment_pods_get_the_plan_and_bind_on_it(world):
    cluster, api, core = world
    pods = [_create(core, f"web-{i}", owner=("ReplicaSet", "web-7c6d9f"), hash_="7c6d9f") for i in range(3)]
    for pod in pods:
        assert _prefer(pod) == ["node-5", "node-6"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in _affinity(pod)  # every node allowed
        assert not _marked(pod)  # steered: kube-scheduler need not call the extender
    bound = e2e_cluster.wait_for(lambda: _bound(core, [p.metadata.name for p in pods]), WAIT, "web pods to bind")
    assert set(bound.values()) <= {"node-5", "node-6"}, bound


def test_annotation_names_the_workload_and_unplanned_pods_get_only_the_mark(world):
    cluster, api, core = world
    video = _create(core, "video-0", owner=("ReplicaSet", "video-abc12"), hash_="abc12",
                    annotations={"edgeplace.io/workload": "video"})
    assert _prefer(video) == ["node-7"] and not _marked(video)
    # Small, so that wherever kube-scheduler puts them they leave the planned nodes' room as it is.
    for pod in (_create(core, "idle-0", owner=("ReplicaSet", "idle-99f"), hash_="99f", cpu="10m"),
                _create(core, "bare-0", cpu="10m"),
                _create(core, "other-0", owner=("ReplicaSet", "other-1a2b"), hash_="1a2b", cpu="10m")):
        assert _affinity(pod) is None, pod.metadata.name
        assert _marked(pod), pod.metadata.name  # the plan does not cover it: the extender's
    daemon = _create(core, "agent-x1", owner=("DaemonSet", "agent"), cpu="10m", gone=True)
    assert _affinity(daemon) is None and not _marked(daemon)  # placed by its controller
    # Another scheduler's pod: the chart wires only the default scheduler with managedResources, and
    # any other would count the mark as a resource no node has.
    elsewhere = _create(core, "custom-0", cpu="10m", gone=True, scheduler="custom-scheduler")
    assert not _marked(elsewhere)
    marked = ["idle-0", "bare-0", "other-0"]
    bound = e2e_cluster.wait_for(lambda: _bound(core, ["video-0", *marked]), WAIT, "the pods to settle")
    assert bound["video-0"] == "node-7"
    # This kube-scheduler has no extender stanza, so nothing tells its fit check to ignore the mark:
    # the marked pods find no node, and the planner's check sees it in their condition.
    assert [bound[name] for name in marked] == [None] * 3
    pods = [api.sanitize_for_serialization(p) for p in core.list_namespaced_pod("shop").items]
    assert steering.stuck_pods(pods) == sorted(f"shop/{name}" for name in marked)
    for name in marked:
        core.delete_namespaced_pod(name, "shop", grace_period_seconds=0)


def test_sla_nodes_are_required_and_hold_when_the_planned_node_is_full(world):
    """shop/db may run on node-0..3 only; node-2 (planned) fits three 300m pods of its 1 CPU: the other
    pods go elsewhere but never outside node-0..3."""
    cluster, api, core = world
    own = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-1", "node-9"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]}}
    pods = [_create(core, f"db-{i}", owner=("StatefulSet", "db")) for i in range(5)]
    pods.append(_create(core, "db-own", owner=("StatefulSet", "db"), affinity={"nodeAffinity": own}))
    for pod in pods:
        assert _prefer(pod) == ["node-2"]
        terms = _affinity(pod)["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        for term in terms:  # in every term (ORed), next to the pod's own requirements
            assert {"key": "kubernetes.io/hostname", "operator": "In", "values": NODES[:4]} in term["matchExpressions"]
    assert len(_affinity(pods[-1])["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]) == 2
    own_terms = _affinity(pods[-1])["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert own_terms[0]["matchExpressions"][0]["values"] == ["node-1", "node-9"]  # the pod's own rules kept
    assert own_terms[1]["matchFields"] == [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]
    bound = e2e_cluster.wait_for(lambda: _bound(core, [p.metadata.name for p in pods]), WAIT, "db pods to bind")
    assert all(node in NODES[:4] for node in bound.values()), bound
    assert bound["db-own"] != "node-1"  # its own terms (both exclude node-1) still hold
    on_planned = sum(node == "node-2" for node in bound.values())
    assert on_planned == 3, bound  # node-2 holds three 300m pods; the plan's node first


def test_without_parameters_pods_are_created_as_written(world):
    cluster, api, core = world
    core.delete_namespaced_config_map(steering.PARAMS_NAME, SYSTEM_NS)
    try:
        pod = e2e_cluster.wait_for(lambda: (lambda p: p if _affinity(p) is None else None)(
            _create(core, f"late-{abs(hash(str(e2e_cluster.free_port()))) % 10**6}", owner=("ReplicaSet", "web-7c6d9f"),
                    hash_="7c6d9f", gone=True)), WAIT, "pods to be created unsteered once the parameters are gone")
        assert pod is not None
    finally:
        params, _ = steering.data(PLAN, {n: n for n in NODES}, steering.UNSTEERED)
        try:
            steering.publish(api, params, SYSTEM_NS)  # created again for the tests after this one
        except ApiException:
            pass


def test_kube_scheduler_calls_the_extender_only_for_marked_pods(world):
    """The shipped scheduler configuration (managedResources) against a loopback extender: a steered
    pod binds without a call, a marked one through one (its node does not have the resource: the
    fit check ignores it); with `extender-every-pod` the steered pod is marked too."""
    from edgeplace.k8s.extender.server import ExtenderServer

    cluster, api, core = world

    def filter_calls(server) -> float:
        return sum(s.value for m in server.metrics.registry.collect() for s in m.samples
                   if s.name == "edgeplace_extender_decisions_total" and s.labels.get("verb") == "filter")

    with ExtenderServer(None) as server:  # no plan: neutral, but every call counted
        config = yaml.safe_load((ROOT / "deploy/kube-scheduler-config.yaml").read_text())
        config.pop("clientConnection", None)
        [ext] = config["extenders"]
        assert ext["managedResources"] == [{"name": steering.UNSTEERED_RESOURCE, "ignoredByScheduler": True}]
        ext.update(urlPrefix=server.url, enableHTTPS=False)
        ext.pop("tlsConfig")
        cluster.restart_scheduler(config)
        try:
            steered = _create(core, "web-via", owner=("ReplicaSet", "web-7c6d9f"), hash_="7c6d9f", cpu="10m")
            assert not _marked(steered)
            e2e_cluster.wait_for(lambda: _bound(core, ["web-via"]), WAIT, "the steered pod to bind")
            assert filter_calls(server) == 0
            bare = _create(core, "bare-via", cpu="10m")
            assert _marked(bare)
            e2e_cluster.wait_for(lambda: _bound(core, ["bare-via"]), WAIT, "the marked pod to bind")
            assert filter_calls(server) == 1
            params, _ = steering.data(PLAN, {n: n for n in NODES}, steering.EVERY_POD)
            steering.publish(api, params, SYSTEM_NS)
            every = e2e_cluster.wait_for(
                lambda: (lambda p: p if _marked(p) else None)(_create(
                    core, f"web-every-{abs(hash(str(e2e_cluster.free_port()))) % 10**6}",
                    owner=("ReplicaSet", "web-7c6d9f"), hash_="7c6d9f", cpu="10m", gone=True)),
                WAIT, "every pod to be marked")
            assert _prefer(every) == ["node-5", "node-6"]  # steered and marked
        finally:
            params, _ = steering.data(PLAN, {n: n for n in NODES}, steering.UNSTEERED)
            steering.publish(api, params, SYSTEM_NS)
            cluster.restart_scheduler(scheduler_config_without_extender())
