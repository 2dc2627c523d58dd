"""Smoke test of the real-cluster e2e tier: a real kube-scheduler binds pods.

Starts etcd + kube-apiserver + kube-scheduler on loopback (k8s/e2e/cluster.py),
creates kubelet-less nodes through the API and checks that kube-scheduler
sets spec.nodeName on pods, honours node selectors and resource fit, and keeps
scheduling after being restarted with another configuration.
"""

from __future__ import annotations

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
import pytest
from kubernetes import client

pytestmark = pytest.mark.e2e

WAIT = 30.0  # seconds for any single condition
NODES = {
    "edge-a": {"labels": {"topology.kubernetes.io/zone": "zone-a"}, "cpu": "2"},
    "edge-b": {"labels": {"topology.kubernetes.io/zone": "zone-b"}, "cpu": "4"},
    "edge-c": {"labels": {"topology.kubernetes.io/zone": "zone-c", "edgeplace.dev/tier": "core"},
               "cpu": "8"},
}
ALT_SCHEDULER = "edgeplace-alt"
ALT_CONFIG = f"""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: {ALT_SCHEDULER}
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
"""


@pytest.fixture(scope="module")
def cluster(e2e_binaries):
    with e2e_cluster.LocalCluster() as running:
        core = client.CoreV1Api(running.api_client())
        for name, spec in NODES.items():
            e2e_cluster.create_node(core, name, labels=spec["labels"], cpu=spec["cpu"],
                                    memory="8Gi", pods="20")
        yield running


@pytest.fixture
def core(cluster):
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def namespace(core, request):
    name = request.node.name.replace("_", "-").lower()[:50]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def make_pod(name, cpu="100m", node_selector=None, scheduler_name=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "e2e-smoke"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(
                name="main",
                image="registry.k8s.io/pause:3.10",  # never pulled: there is no kubelet
                resources=client.V1ResourceRequirements(requests={"cpu": cpu, "memory": "64Mi"}),
            )],
            node_selector=node_selector,
            scheduler_name=scheduler_name,
        ),
    )


def pod_condition(pod, kind):
    for cond in pod.status.conditions or []:
        if cond.type == kind:
            return cond
    return None


def wait_scheduled(core, namespace, names):
    """Wait until every named pod has spec.nodeName; return {pod: node}."""
    def bound():
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        if all(pods.get(n) and pods[n].spec.node_name for n in names):
            return {n: pods[n].spec.node_name for n in names}
        return None

    return e2e_cluster.wait_for(bound, WAIT, f"pods {sorted(names)} in {namespace} to be bound")


def test_nodes_are_ready_and_untainted(cluster, core):
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == set(NODES)
    for name, node in nodes.items():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert [c.status for c in ready] == ["True"], name
        assert node.status.allocatable["cpu"] == NODES[name]["cpu"]
        assert not [t for t in node.spec.taints or [] if t.effect in ("NoSchedule", "NoExecute")], \
            f"{name} has taints {node.spec.taints}"


def test_scheduler_binds_pods(cluster, core, namespace):
    names = [f"pod-{i}" for i in range(4)]
    for name in names:
        core.create_namespaced_pod(namespace, make_pod(name))
    core.create_namespaced_pod(
        namespace, make_pod("pinned", node_selector={"edgeplace.dev/tier": "core"}))

    placement = wait_scheduled(core, namespace, names + ["pinned"])

    assert set(placement.values()) <= set(NODES)
    assert placement["pinned"] == "edge-c"
    for name in placement:
        pod = core.read_namespaced_pod(name, namespace)
        cond = pod_condition(pod, "PodScheduled")
        assert cond is not None and cond.status == "True", (name, pod.status.conditions)


def test_pod_that_fits_nowhere_stays_pending(cluster, core, namespace):
    core.create_namespaced_pod(namespace, make_pod("too-big", cpu="64"))

    def unschedulable():
        pod = core.read_namespaced_pod("too-big", namespace)
        cond = pod_condition(pod, "PodScheduled")
        return pod if cond is not None and cond.reason == "Unschedulable" else None

    pod = e2e_cluster.wait_for(unschedulable, WAIT, "too-big to be marked Unschedulable")
    assert pod.spec.node_name is None
    assert pod_condition(pod, "PodScheduled").status == "False"
    assert "Insufficient cpu" in pod_condition(pod, "PodScheduled").message


def test_restart_scheduler_with_other_config(cluster, core, namespace):
    # No profile serves ALT_SCHEDULER yet: its pod must wait while a
    # default-scheduler pod created after it is bound.
    core.create_namespaced_pod(namespace, make_pod("alt", scheduler_name=ALT_SCHEDULER))
    core.create_namespaced_pod(namespace, make_pod("before"))
    wait_scheduled(core, namespace, ["before"])
    assert core.read_namespaced_pod("alt", namespace).spec.node_name is None

    try:
        cluster.restart_scheduler(ALT_CONFIG)
        core.create_namespaced_pod(namespace, make_pod("after"))
        placement = wait_scheduled(core, namespace, ["alt", "after"])
        assert set(placement.values()) <= set(NODES)

        # The binding was made by the new profile: its "Scheduled" event names it.
        def scheduled_by():
            events = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=alt,reason=Scheduled").items
            return {e.reporting_component for e in events} or None

        assert e2e_cluster.wait_for(scheduled_by, WAIT, "Scheduled event of alt") == {ALT_SCHEDULER}
    finally:
        cluster.restart_scheduler(None)
