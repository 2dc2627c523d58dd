"""The real-cluster tier with pods that run: kube-controller-manager and kwok.

kwok plays the kubelet of nodes labelled ``kwok.x-k8s.io/node: fake``: Ready
conditions, renewed Leases, pods that go Running. kube-controller-manager's
controllers recreate evicted pods and mark a node NotReady once kwok stops
renewing its Lease (a node that lost power). Everything edgeplace's actuation
relies on is checked here against the real components.
"""

from __future__ import annotations

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
import pytest
from kubernetes import client

pytestmark = pytest.mark.e2e

WAIT = 60.0  # seconds for any single condition


@pytest.fixture(scope="module")
def cluster(e2e_binaries):
    with e2e_cluster.LocalCluster(controller_manager=True, kwok=True) as running:
        core = client.CoreV1Api(running.api_client())
        for name in ("kw-1", "kw-2"):
            e2e_cluster.create_kwok_node(core, name, cpu="4", memory="8Gi", pods="20")
        for name in ("kw-1", "kw-2"):
            e2e_cluster.wait_for(lambda n=name: e2e_cluster.node_ready(core.read_node(n)), WAIT, f"{name} Ready")
        yield running


@pytest.fixture
def api(cluster):
    api_client = cluster.api_client()
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


def _deployment(name: str, replicas: int, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "app", "image": "registry.invalid/app",
                                  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def _running(core, namespace: str, app: str) -> list:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def test_kwok_nodes_are_ready_with_a_lease(api):
    core, _ = api
    for name in ("kw-1", "kw-2"):
        assert e2e_cluster.node_ready(core.read_node(name))
        lease = client.CoordinationV1Api(core.api_client).read_namespaced_lease(name, "kube-node-lease")
        assert lease.spec.renew_time is not None


def test_deployment_pods_run_and_an_evicted_pod_is_recreated(api):
    core, apps = api
    apps.create_namespaced_deployment("default", _deployment("web", 3))
    pods = e2e_cluster.wait_for(lambda: (lambda r: r if len(r) == 3 else None)(_running(core, "default", "web")),
                                WAIT, "3 running web pods")
    assert all(p.status.pod_ip for p in pods)
    victim = pods[0]
    core.create_namespaced_pod_eviction(victim.metadata.name, "default", client.V1Eviction(
        metadata=client.V1ObjectMeta(name=victim.metadata.name, namespace="default")))

    def replaced():
        running = _running(core, "default", "web")
        names = {p.metadata.name for p in running}
        return len(running) == 3 and victim.metadata.name not in names

    e2e_cluster.wait_for(replaced, WAIT, "the evicted pod replaced by its ReplicaSet")


def test_a_pdb_refuses_an_eviction_with_429(api):
    core, apps = api
    apps.create_namespaced_deployment("default", _deployment("guarded", 1))
    client.PolicyV1Api(core.api_client).create_namespaced_pod_disruption_budget("default", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    pod = e2e_cluster.wait_for(lambda: (_running(core, "default", "guarded") or [None])[0], WAIT, "guarded running")
    policy = client.PolicyV1Api(core.api_client)
    e2e_cluster.wait_for(lambda: policy.read_namespaced_pod_disruption_budget("guarded", "default").status.observed_generation,
                         WAIT, "the disruption controller to observe the PDB")
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod_eviction(pod.metadata.name, "default", client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace="default")))
    assert refused.value.status == 429
    assert not core.read_namespaced_pod(pod.metadata.name, "default").metadata.deletion_timestamp


def test_a_node_without_power_goes_not_ready_and_comes_back(api):
    core, _ = api
    e2e_cluster.set_kwok_power(core, "kw-2", on=False)
    # The node-lifecycle controller sets the condition first and taints the node on its next pass:
    # wait for both (on a loaded machine the taint can trail the condition).
    def unreachable(n):
        return (not e2e_cluster.node_ready(n)
                and any(t.key == "node.kubernetes.io/unreachable" for t in n.spec.taints or []))

    e2e_cluster.wait_for(lambda: unreachable(core.read_node("kw-2")), WAIT,
                         "kw-2 NotReady and tainted unreachable once kwok stops renewing its lease")
    e2e_cluster.set_kwok_power(core, "kw-2", on=True)
    e2e_cluster.wait_for(lambda: e2e_cluster.node_ready(core.read_node("kw-2")), WAIT, "kw-2 Ready again")
    e2e_cluster.wait_for(lambda: not [t for t in core.read_node("kw-2").spec.taints or []
                                      if t.key.startswith("node.kubernetes.io/")], WAIT, "kw-2's unreachable taints lifted")
