"""The chart's param anchors keep the isolation and steering parameters live across a reinstall.

kube-apiserver (v1.37.2 here) stops its ConfigMap parameter informer for good once no bound
policy with `paramKind: ConfigMap` is left (kubernetes/kubernetes#130887): after `helm uninstall`
and `helm install` the isolation and steering policies would read the old install's parameters.
The chart's `edgeplace-param-anchor` policies (kept on uninstall) hold that informer open.

On a real API server, with the committed manifests: install the anchors and the isolation and
steering policies, "uninstall" (delete the policies and bindings, as helm does; the anchors and
the parameter ConfigMaps stay, as their keep annotation says), install again and write new
parameters: the policies must act on the new ones. Then the same without the anchors: the old
parameters must stay (the upstream bug; when this part fails, kube-apiserver is fixed and the
anchors are no longer needed).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo
from edgeplace.k8s import isolation, steering

pytestmark = pytest.mark.e2e

WAIT = 60.0
SYSTEM_NS = "edgeplace-system"
#: kube-apiserver refreshes its policy state within a second of a change (policy_source.go).
SETTLE_S = 5.0
#: How long the old parameters must stay without the anchors to count as stuck.
STUCK_S = 10.0


def _objects(*names: str) -> list[dict]:
    """The named policies and their bindings in the committed manifests, policies first (a binding
    names its policy)."""
    objs = [d for name in names for d in topo.chart_objects(name, topo.ADMISSION_POLICY_KINDS)]
    return sorted(objs, key=lambda d: d["kind"].endswith("Binding"))


def _policies() -> list[dict]:
    """The isolation and steering policies and bindings."""
    return _objects("edgeplace-isolation", "edgeplace-isolation-binding", "edgeplace-steering")


def _install(api, objs: list[dict]) -> None:
    for obj in objs:
        utils.create_from_dict(api, obj)


def _uninstall(api, objs: list[dict]) -> None:
    """Delete the objects, bindings first (helm deletes in reverse install order)."""
    registration = client.AdmissionregistrationV1Api(api)  # the chart renders v1 for Kubernetes 1.37
    for obj in reversed(objs):
        assert obj["apiVersion"] == "admissionregistration.k8s.io/v1", obj["apiVersion"]
        delete = re.sub(r"(?<!^)(?=[A-Z])", "_", obj["kind"]).lower()  # MutatingAdmissionPolicy: mutating_admission_policy
        getattr(registration, f"delete_{delete}")(obj["metadata"]["name"])


def _write_params(core, isolation_data: dict[str, str], steering_data: dict[str, str]) -> None:
    """What the planner writes after an install (the ConfigMaps themselves are kept across it)."""
    for name, data in ((isolation.PARAMS_NAME, isolation_data), (steering.PARAMS_NAME, steering_data)):
        cm = core.read_namespaced_config_map(name, SYSTEM_NS)
        cm.data = data
        core.replace_namespaced_config_map(name, SYSTEM_NS, cm)


def _admitted(core, ns: str, workload: str | None = "video", **spec):
    """The pod (of `workload`, by annotation) as admission leaves it (a dry-run create), or the API
    server's refusal message."""
    annotations = {"edgeplace.io/workload": workload} if workload else {}
    body = {"metadata": {"generateName": "probe-", "annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}], **spec}}
    try:
        return core.create_namespaced_pod(ns, body, dry_run="All")
    except ApiException as exc:
        if exc.status in (400, 403, 422):
            return json.loads(exc.body).get("message", "")
        raise


def _seen(core, isolated_node: str, steered_node: str) -> bool:
    """Whether both policies act on the parameters that dedicate `isolated_node` to another tenant
    and plan workload video on `steered_node`."""
    refused = _admitted(core, "acme", nodeName=isolated_node)
    if not (isinstance(refused, str) and f"node {isolated_node} is dedicated to another tenant" in refused):
        return False
    pod = _admitted(core, "shop")
    terms = pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution \
        if pod.spec.affinity and pod.spec.affinity.node_affinity else None
    return [v for t in terms or [] for e in t.preference.match_expressions or [] for v in e.values] == [steered_node]


def _reinstall(api, core, node: str) -> None:
    """helm uninstall, helm install, and the planner's first round: node dedicated, video planned there."""
    _uninstall(api, _policies())
    time.sleep(SETTLE_S)
    _install(api, _policies())
    _write_params(core, {f"node.{node}": "globex", "tenant.globex.dedicated": "true"},
                  {steering.PREFER + steering.params_key("video"): node})


def test_policies_read_new_parameters_after_a_reinstall_only_with_the_anchors(e2e_binaries):
    with e2e_cluster.LocalCluster() as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": SYSTEM_NS}})
        core.create_namespace({"metadata": {"name": "acme", "labels": {"edgeplace.io/tenant": "acme"}}})
        core.create_namespace({"metadata": {"name": "shop"}})
        for name in (isolation.PARAMS_NAME, steering.PARAMS_NAME):  # as the chart creates them: kept
            core.create_namespaced_config_map(SYSTEM_NS, {"metadata": {
                "name": name, "annotations": {"helm.sh/resource-policy": "keep"}}})
        anchors = _objects("edgeplace-param-anchor")
        assert len(anchors) == 4, "the committed manifests carry both anchors and their bindings"
        _install(api, anchors)
        _install(api, _policies())
        _write_params(core, {"node.n-1": "globex", "tenant.globex.dedicated": "true"},
                      {steering.PREFER + steering.params_key("video"): "n-1"})
        e2e_cluster.wait_for(lambda: _seen(core, "n-1", "n-1"), WAIT, "the first install's parameters to act")
        # An anchor changes nothing: a pod of no workload and no tenant is admitted as written.
        plain = _admitted(core, "default", workload=None)
        assert not isinstance(plain, str) and plain.spec.affinity is None

        _reinstall(api, core, "n-2")
        e2e_cluster.wait_for(lambda: _seen(core, "n-2", "n-2"), WAIT,
                             "the reinstalled policies to read the new parameters (anchors in place)")

        _uninstall(api, anchors)
        _reinstall(api, core, "n-3")
        deadline = time.monotonic() + STUCK_S
        while time.monotonic() < deadline:
            assert not _seen(core, "n-3", "n-3"), (
                "without the anchors kube-apiserver read the new parameters after a reinstall: "
                "kubernetes/kubernetes#130887 is fixed in this version, and the chart's param anchors "
                "(docs/KUBERNETES.md \"Policy parameters across reinstalls\") are no longer needed")
            time.sleep(1.0)
        assert _seen(core, "n-2", "n-2"), "without the anchors the policies should still act on the old parameters"
