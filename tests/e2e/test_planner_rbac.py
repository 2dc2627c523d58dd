"""The planner's least privilege, against a real kube-apiserver (RBAC and ValidatingAdmissionPolicy).

The ServiceAccounts, roles, bindings and the ValidatingAdmissionPolicy of
the chart, rendered as deploy/manifests/edgeplace.yaml is but with actuation
in apply mode (the most the planner may ever do; the dry-run default's
smaller rules are checked in test_manifests.py), are applied for real; requests are then made
as the planner's ServiceAccount (impersonated by the test's admin, so the
API server authorises and admits them exactly as it would the planner's
token): it can release the ``edgeplace.io/deferred`` gate of a pod
(`edgeplace.k8s.gates.remove_gate`, what the planner does) and nothing else
of a pod; the extender's ServiceAccount can only read the plan.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from edgeplace.k8s import gates
from edgeplace.k8s.mapping import GATE_DEFERRED
from tests.e2e.test_manifests import helm, render  # noqa: F401 - helm is a fixture

pytestmark = pytest.mark.e2e

WAIT = 60.0
NS = "edgeplace-system"
PLANNER = f"system:serviceaccount:{NS}:edgeplace-planner"
EXTENDER = f"system:serviceaccount:{NS}:edgeplace-extender"
OTHER_GATE = "example.com/quota"
APPLIED_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                 "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def as_user(cluster, username: str) -> client.ApiClient:
    """An API client that impersonates `username`; for a ServiceAccount's name the API server
    adds its groups itself (system:serviceaccounts, system:serviceaccounts:<namespace>)."""
    api = cluster.api_client()
    api.set_default_header("Impersonate-User", username)
    return api


@pytest.fixture(scope="module")
def cluster(e2e_binaries, helm):
    import yaml

    manifest = render(helm, "--set", "createNamespace=true", "--set", "actuation.rebalance=apply",
                      "--set", "actuation.power=apply")
    with e2e_cluster.LocalCluster() as running:
        admin = running.api_client()
        dyn = dynamic.DynamicClient(admin)
        for obj in yaml.safe_load_all(manifest):
            if obj and obj["kind"] in APPLIED_KINDS:
                resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                dyn.server_side_apply(resource, body=obj, namespace=obj["metadata"].get("namespace"),
                                      field_manager="edgeplace-e2e")
        core = client.CoreV1Api(admin)
        e2e_cluster.create_node(core, "node-1", cpu="4", memory="8Gi")
        core.create_namespace({"metadata": {"name": "work"}})
        yield running


def gated_pod(core: client.CoreV1Api, name: str, gate_names=(GATE_DEFERRED, OTHER_GATE)) -> None:
    core.create_namespaced_pod("work", {
        "metadata": {"name": name, "labels": {"app": "batch"}, "annotations": {"note": "x"}},
        "spec": {"schedulingGates": [{"name": g} for g in gate_names],
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})


@pytest.fixture(scope="module")
def planner(cluster):
    """The planner's view, once the ValidatingAdmissionPolicy is enforced (it takes effect
    asynchronously after it is created: wait on a canary pod)."""
    core = client.CoreV1Api(as_user(cluster, PLANNER))
    admin = client.CoreV1Api(cluster.api_client())
    gated_pod(admin, "canary")

    def enforced() -> bool:
        try:
            core.patch_namespaced_pod("canary", "work", {"metadata": {"labels": {"probe": "1"}}})
        except ApiException as exc:
            return exc.status == 403 and "edgeplace planner may not" in exc.body
        admin.patch_namespaced_pod("canary", "work", {"metadata": {"labels": {"probe": None}}})
        return False

    e2e_cluster.wait_for(enforced, WAIT, "the ValidatingAdmissionPolicy to be enforced", interval=0.5)
    return core


def denied(call, *args, **kwargs) -> str:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status == 403, info.value.body
    return json.loads(info.value.body)["message"]


def test_the_planner_releases_the_deferred_gate(cluster, planner):
    admin = client.CoreV1Api(cluster.api_client())
    gated_pod(admin, "release-me")
    assert gates.remove_gate(planner, "work", "release-me") is True  # the planner's own code path
    assert [g.name for g in admin.read_namespaced_pod("release-me", "work").spec.scheduling_gates] == [OTHER_GATE]


# A dict is a strategic merge patch, a list a JSON patch. The pod's gates: [deferred, other].
@pytest.mark.parametrize("change, why", [
    ({"metadata": {"labels": {"app": "other"}}}, "labels, annotations"),
    ({"metadata": {"annotations": {"note": "y"}}}, "labels, annotations"),
    ([{"op": "remove", "path": "/spec/schedulingGates/1"}], "only remove the edgeplace.io/deferred"),  # the other
    ([{"op": "replace", "path": "/spec/schedulingGates", "value": []}], "only remove the edgeplace.io/deferred"),
    ([{"op": "remove", "path": "/spec/schedulingGates/0"}, {"op": "add", "path": "/spec/activeDeadlineSeconds",
                                                           "value": 5}], "spec other than"),
    ([{"op": "remove", "path": "/spec/schedulingGates/0"},
      {"op": "add", "path": "/spec/nodeSelector", "value": {"kubernetes.io/hostname": "node-1"}}], "spec other than"),
    ({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}, "spec other than"),
    ({"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}, "spec other than"),
    ([{"op": "remove", "path": "/spec/schedulingGates/0"}, {"op": "add", "path": "/metadata/labels/x", "value": "1"}],
     "labels, annotations"),  # the gate removal does not carry another change through
], ids=["label", "annotation", "other-gate", "both-gates", "gate-and-deadline", "gate-and-node-selector", "toleration",
        "image", "gate-and-label"])
def test_the_planner_changes_nothing_else_of_a_pod(cluster, planner, change, why, request):
    admin = client.CoreV1Api(cluster.api_client())
    name = f"guarded-{request.node.callspec.id}"
    gated_pod(admin, name)
    message = denied(planner.patch_namespaced_pod, name, "work", change)
    assert why in message, message
    pod = admin.read_namespaced_pod(name, "work")
    assert [g.name for g in pod.spec.scheduling_gates] == [GATE_DEFERRED, OTHER_GATE]
    assert pod.metadata.labels == {"app": "batch"} and pod.metadata.annotations == {"note": "x"}
    admin.patch_namespaced_pod(name, "work", {"metadata": {"labels": {"app": "other"}}})  # others are not limited


def test_the_planner_may_not_create_delete_or_bind_pods(cluster, planner):
    admin = client.CoreV1Api(cluster.api_client())
    gated_pod(admin, "keep-me", gate_names=())
    denied(planner.delete_namespaced_pod, "keep-me", "work")
    denied(planner.create_namespaced_pod, "work", {"metadata": {"name": "mine"},
                                                   "spec": {"containers": [{"name": "c", "image": "x"}]}})
    denied(planner.create_namespaced_pod_binding, "keep-me", "work",
           {"metadata": {"name": "keep-me"}, "target": {"kind": "Node", "name": "node-1"}})
    denied(planner.patch_namespaced_pod_status, "keep-me", "work", {"status": {"phase": "Failed"}})
    assert "keep-me" in {p.metadata.name for p in planner.list_namespaced_pod("work").items}


def can(cluster, username: str, verb: str, resource: str, namespace: str = "", group: str = "",
        subresource: str = "", name: str = "") -> bool:
    review = client.AuthorizationV1Api(as_user(cluster, username)).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace, "group": group,
                                         "subresource": subresource, "name": name}}})
    return review.status.allowed


@pytest.mark.parametrize("verb, resource, group, subresource, namespace, name, allowed", [
    ("create", "pods", "", "eviction", "work", "", True),
    ("patch", "nodes", "", "", "", "", True),
    ("create", "events", "events.k8s.io", "", "work", "", True),
    ("list", "poddisruptionbudgets", "policy", "", "work", "", True),
    ("update", "nodes", "", "", "", "", True),
    ("watch", "replicasets", "apps", "", "work", "", True),
    ("list", "jobs", "batch", "", "work", "", True),
    ("get", "secrets", "", "", NS, "", True),
    ("update", "configmaps", "", "", NS, "edgeplace-plan", True),
    ("update", "configmaps", "", "", NS, "edgeplace-rebalance-history", True),
    ("create", "configmaps", "", "", NS, "", True),  # the history, on the first move
    ("create", "events", "", "", "work", "", False),  # events.k8s.io only, what the code writes
    ("patch", "jobs", "batch", "", "work", "", True),  # spec.suspend only: the Job policy
    ("delete", "jobs", "batch", "", "work", "", False),
    ("create", "jobs", "batch", "", "work", "", False),
    ("create", "configmaps", "", "", "work", "", False),
    ("get", "secrets", "", "", "work", "", False),  # only its own namespace's
    ("update", "configmaps", "", "", NS, "another", False),
    ("delete", "nodes", "", "", "", "", False),
    ("update", "deployments", "apps", "", "work", "", False),
    ("create", "pods", "", "binding", "work", "", False),
    ("update", "pods", "", "status", "work", "", False),
])
def test_the_planners_rbac(cluster, verb, resource, group, subresource, namespace, name, allowed):
    assert can(cluster, PLANNER, verb, resource, namespace, group, subresource, name) is allowed


def interruptible_job(batch: client.BatchV1Api, name: str, opted_in: bool = True) -> None:
    annotations = {"edgeplace.io/deadline": "2099-01-01T00:00:00Z", "edgeplace.io/duration-minutes": "60",
                   "note": "x"}
    if opted_in:
        annotations["edgeplace.io/interruptible"] = "true"
    batch.create_namespaced_job("work", {
        "metadata": {"name": name, "labels": {"app": "train"}, "annotations": annotations},
        "spec": {"suspend": True, "parallelism": 1, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}})


@pytest.fixture(scope="module")
def planner_jobs(cluster, planner):
    """The planner's Job client, once the Job policy is enforced too (a canary Job)."""
    batch = client.BatchV1Api(as_user(cluster, PLANNER))
    admin = client.BatchV1Api(cluster.api_client())
    interruptible_job(admin, "canary-job")

    def enforced() -> bool:
        try:
            batch.patch_namespaced_job("canary-job", "work", {"metadata": {"labels": {"probe": "1"}}})
        except ApiException as exc:
            return exc.status == 403 and "edgeplace planner may not" in exc.body
        admin.patch_namespaced_job("canary-job", "work", {"metadata": {"labels": {"probe": None}}})
        return False

    e2e_cluster.wait_for(enforced, WAIT, "the Job ValidatingAdmissionPolicy to be enforced", interval=0.5)
    return batch


def test_the_planner_suspends_and_resumes_an_interruptible_job(cluster, planner_jobs):
    from datetime import datetime, timezone

    from edgeplace.k8s import suspend
    from edgeplace.k8s.mapping import read_cluster

    admin = client.BatchV1Api(cluster.api_client())
    interruptible_job(admin, "train")
    now = datetime.now(timezone.utc)
    [job] = [j for j in suspend.interruptible_jobs(read_cluster(cluster.api_client()).jobs, {}, now) if j.name == "train"]
    assert suspend.set_suspended(planner_jobs, job, False, now) is True  # the planner's own code path
    got = admin.read_namespaced_job("train", "work")
    assert got.spec.suspend is False and "edgeplace.io/running-since" in got.metadata.annotations
    assert got.metadata.annotations["note"] == "x" and got.metadata.labels == {"app": "train"}


@pytest.mark.parametrize("change, why", [
    ({"spec": {"parallelism": 3}}, "spec other than spec.suspend"),
    ({"metadata": {"labels": {"app": "other"}}}, "labels, owner references"),
    ({"metadata": {"annotations": {"note": "y"}}}, "annotations other than"),
    ({"metadata": {"annotations": {"edgeplace.io/interruptible": None}}, "spec": {"suspend": False}},
     "annotations other than"),
    ({"spec": {"suspend": False, "activeDeadlineSeconds": 5}}, "spec other than spec.suspend"),
], ids=["parallelism", "label", "annotation", "drop-opt-in", "suspend-and-deadline"])
def test_the_planner_changes_nothing_else_of_a_job(cluster, planner_jobs, change, why, request):
    admin = client.BatchV1Api(cluster.api_client())
    name = f"guarded-{request.node.callspec.id}"
    interruptible_job(admin, name)
    message = denied(planner_jobs.patch_namespaced_job, name, "work", change)
    assert why in message, message
    job = admin.read_namespaced_job(name, "work")
    assert job.spec.suspend is True and job.spec.parallelism == 1 and job.metadata.labels == {"app": "train"}


def test_the_planner_may_not_resume_a_job_that_did_not_opt_in(cluster, planner_jobs):
    admin = client.BatchV1Api(cluster.api_client())
    interruptible_job(admin, "not-mine", opted_in=False)
    message = denied(planner_jobs.patch_namespaced_job, "not-mine", "work", {"spec": {"suspend": False}})
    assert "annotated edgeplace.io/interruptible" in message, message
    assert admin.read_namespaced_job("not-mine", "work").spec.suspend is True


@pytest.mark.parametrize("verb, resource, namespace, name, allowed", [
    ("get", "configmaps", NS, "edgeplace-plan", True),
    ("update", "configmaps", NS, "edgeplace-plan", False),
    ("get", "configmaps", NS, "another", False),
    ("list", "pods", "work", "", False),
    ("get", "secrets", NS, "", False),
])
def test_the_extender_only_reads_the_plan(cluster, verb, resource, namespace, name, allowed):
    assert can(cluster, EXTENDER, verb, resource, namespace, name=name) is allowed
