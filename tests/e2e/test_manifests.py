"""The deployment files: Helm chart, rendered manifests, scheduler configuration, Dockerfile.

Static checks (no cluster): least-privilege RBAC, the extender stanza, the
scheduler config file agreeing with the chart, the Dockerfile's pinning.
Real-cluster checks (marker e2e): the committed manifests equal a fresh
`helm template` (helm from k8s/e2e/build.sh), every manifest passes a
server-side dry-run apply with strict field validation against the real
kube-apiserver (its built-in schemas), and the real kube-scheduler starts
with deploy/kube-scheduler-config.yaml and the chart's second-scheduler
configuration and schedules a pod through a loopback extender.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "edgeplace"
MANIFESTS = DEPLOY / "manifests"
SCHEDULER_CONFIG = DEPLOY / "kube-scheduler-config.yaml"
WAIT = 60.0


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(items: list[dict], kind: str) -> list[dict]:
    return [d for d in items if d["kind"] == kind]


def rendered() -> list[dict]:
    return docs(MANIFESTS / "edgeplace.yaml")


def scheduler_configmap(items: list[dict]) -> dict:
    [cm] = [d for d in by_kind(items, "ConfigMap") if d["metadata"]["name"].endswith("-scheduler-config")]
    return cm


# ---------------------------------------------------------------------------
# static checks


def test_rbac_is_least_privilege():
    items = rendered()
    [role] = by_kind(items, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    for (groups, resources), verbs in rules.items():
        assert "*" not in groups and "*" not in resources and "*" not in verbs, (groups, resources, verbs)
    read = {"get", "list", "watch"}
    # The defaults: actuation in dry-run, so no node writes, no evictions, no Events, no Secrets.
    assert rules[(("",), ("nodes",))] == read
    assert rules[(("",), ("pods",))] == read | {"patch"}  # removing scheduling gates only
    assert rules[(("",), ("namespaces",))] == read
    assert rules[(("apps",), ("deployments", "statefulsets", "replicasets"))] == read
    assert rules[(("batch",), ("jobs",))] == read
    assert rules[(("policy",), ("poddisruptionbudgets",))] == read
    assert (("",), ("pods/eviction",)) not in rules and (("events.k8s.io",), ("events",)) not in rules
    [ns_role] = by_kind(items, "Role")
    ns_rules = [(r["resources"], r.get("resourceNames"), set(r["verbs"])) for r in ns_role["rules"]]
    assert (["configmaps"], ["edgeplace-plan", "edgeplace-rebalance-history"], {"get", "update"}) in ns_rules
    assert (["leases"], None, {"create"}) in ns_rules
    assert (["leases"], ["edgeplace-planner"], {"get", "update"}) in ns_rules
    assert len(ns_rules) == 3


@pytest.mark.e2e
def test_actuation_in_apply_mode_adds_only_what_it_needs(helm):
    items = [d for d in yaml.safe_load_all(render(helm, "--set", "actuation.rebalance=apply",
                                                  "--set", "actuation.power=apply")) if d]
    [role] = by_kind(items, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("",), ("pods/eviction",))] == {"create"}  # the Eviction API only: PDBs are checked
    assert rules[(("",), ("nodes",))] == {"get", "list", "watch", "update", "patch"}
    assert rules[(("events.k8s.io",), ("events",))] == {"create", "patch"}
    assert "delete" not in set().union(*rules.values())  # never a forced delete
    [ns_role] = by_kind(items, "Role")
    ns_rules = [(r["resources"], r.get("resourceNames"), set(r["verbs"])) for r in ns_role["rules"]]
    assert (["secrets"], None, {"get"}) in ns_rules and (["configmaps"], None, {"create"}) in ns_rules
    [dep] = by_kind(items, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--rebalance=apply" in args and "--power=apply" in args


def test_scheduler_config_file_is_the_charts_default_scheduler_config():
    cm = scheduler_configmap(rendered())
    assert yaml.safe_load(cm["data"]["default-scheduler.yaml"]) == yaml.safe_load(SCHEDULER_CONFIG.read_text())


@pytest.mark.parametrize("key", ["default-scheduler.yaml", "second-scheduler.yaml"])
def test_extender_stanza_fails_open_and_has_no_bind(key):
    config = yaml.safe_load(scheduler_configmap(rendered())["data"][key])
    [ext] = config["extenders"]
    assert ext["ignorable"] is True and ext["nodeCacheCapable"] is True
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["preemptVerb"]) == ("filter", "prioritize", "preempt")
    assert "bindVerb" not in ext  # docs/EXTENDER.md: a bind verb adds nothing and sits on every binding
    assert ext["weight"] > 0 and re.fullmatch(r"\d+(ms|s)", ext["httpTimeout"])
    assert ext["urlPrefix"] == "http://edgeplace.edgeplace-system.svc:8888"


def test_deployment_runs_non_root_read_only_with_probes():
    [dep] = by_kind(rendered(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["args"][:3] == ["serve", "--extender", "--planner"]
    assert "--configmap=edgeplace-system/edgeplace-plan" in c["args"]


def test_dockerfile_is_multi_stage_non_root_and_pinned():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")


# ---------------------------------------------------------------------------
# helm


def helm_binary() -> str | None:
    """$EDGEPLACE_HELM, else the helm that k8s/e2e/build.sh builds, else helm on PATH."""
    if os.environ.get("EDGEPLACE_HELM"):
        return os.environ["EDGEPLACE_HELM"]
    version = re.search(r"^HELM_VERSION=(\S+)", (ROOT / "k8s/e2e/build.sh").read_text(), re.M).group(1)
    cache = Path(os.environ.get("EDGEPLACE_E2E_CACHE") or Path.home() / ".cache/edgeplace/e2e")
    cached = cache / f"helm-{version}" / "helm"
    if cached.is_file():
        return str(cached)
    return shutil.which("helm")


@pytest.fixture(scope="module")
def helm() -> str:
    path = helm_binary()
    if path is None:
        message = "helm not built: run k8s/e2e/build.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return path


def render(helm: str, *extra: str) -> str:
    result = subprocess.run([helm, "template", "edgeplace", str(CHART), "--namespace", "edgeplace-system",
                             "--kube-version", "1.37.2", *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.e2e
def test_committed_manifests_match_a_fresh_render(helm, tmp_path):
    lint = subprocess.run([helm, "lint", str(CHART), "--kube-version", "1.37.2"], capture_output=True, text=True,
                          timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fresh = subprocess.run(["bash", str(DEPLOY / "render.sh"), helm], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "EDGEPLACE_RENDER_OUT": str(tmp_path)})
    assert fresh.returncode == 0, fresh.stderr
    for name in ("edgeplace.yaml", "second-scheduler.yaml"):
        assert (tmp_path / name).read_text() == (MANIFESTS / name).read_text(), (
            f"deploy/manifests/{name} is out of date with the chart: run deploy/render.sh")


# ---------------------------------------------------------------------------
# against the real API server and kube-scheduler


@pytest.fixture(scope="module")
def cluster(e2e_binaries):
    from kubernetes import client

    with e2e_cluster.LocalCluster() as running:
        core = client.CoreV1Api(running.api_client())
        core.create_namespace({"metadata": {"name": "edgeplace-system"}})
        e2e_cluster.create_node(core, "node-1", labels={"edgeplace.io/site": "s"}, cpu="4", memory="8Gi")
        yield running


def dry_run_apply(api_client, items: list[dict]) -> list[str]:
    """Server-side apply every object with dryRun=All and strict field validation; return the errors."""
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    dyn = dynamic.DynamicClient(api_client)
    errors = []
    for obj in items:
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            dyn.server_side_apply(resource, body=obj, namespace=obj["metadata"].get("namespace"),
                                  field_manager="edgeplace-e2e", dry_run="All",
                                  query_params=[("fieldValidation", "Strict")])
        except ApiException as exc:
            errors.append(f"{obj['kind']} {obj['metadata']['name']}: HTTP {exc.status}: {exc.body}")
    return errors


@pytest.mark.e2e
def test_committed_manifests_pass_server_side_dry_run(cluster):
    items = rendered() + docs(MANIFESTS / "second-scheduler.yaml")
    kinds = {d["kind"] for d in items}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "ConfigMap", "Service", "Deployment"} <= kinds
    assert dry_run_apply(cluster.api_client(), items) == []


@pytest.mark.e2e
def test_chart_variants_pass_server_side_dry_run(cluster, helm):
    text = render(helm, "--set", "planner.powerDownAction=taint", "--set", "extender.tokenSecret=edgeplace-token",
                  "--set", "extender.tlsSecret=edgeplace-tls", "--set", "secondScheduler.enabled=true",
                  "--set", "planner.releaseGates=false", "--set", "service.clusterIP=10.96.0.77")
    items = [d for d in yaml.safe_load_all(text) if d]
    [role] = by_kind(items, "ClusterRole")
    verbs = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert "update" in verbs["nodes"] and "patch" not in verbs["pods"]
    assert dry_run_apply(cluster.api_client(), items) == []


def _schedules_through_extender(cluster, config: dict, scheduler_name: str) -> None:
    from kubernetes import client

    from edgeplace.k8s.extender.server import ExtenderServer

    with ExtenderServer(None) as server:  # no plan: neutral answers, but every call counted
        for ext in config["extenders"]:
            ext["urlPrefix"] = server.url
        config.pop("clientConnection", None)  # LocalCluster's admin kubeconfig
        cluster.restart_scheduler(config)
        core = client.CoreV1Api(cluster.api_client())
        name = f"via-{scheduler_name}"
        core.create_namespaced_pod("default", {
            "metadata": {"name": name, "annotations": {"edgeplace.io/workload": "default/x"}},
            "spec": {"schedulerName": scheduler_name,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
        e2e_cluster.wait_for(lambda: core.read_namespaced_pod(name, "default").spec.node_name, WAIT,
                             f"{name} to be bound")
        calls = server.metrics.registry.get_sample_value(
            "edgeplace_extender_decisions_total", {"verb": "filter", "reason": "no_plan"})
        assert calls >= 1, "kube-scheduler did not call the extender"


@pytest.mark.e2e
def test_kube_scheduler_runs_with_the_shipped_config(cluster):
    _schedules_through_extender(cluster, yaml.safe_load(SCHEDULER_CONFIG.read_text()), "default-scheduler")


@pytest.mark.e2e
def test_kube_scheduler_runs_with_the_second_scheduler_config(cluster):
    config = yaml.safe_load(scheduler_configmap(rendered())["data"]["second-scheduler.yaml"])
    _schedules_through_extender(cluster, config, "edgeplace-scheduler")


@pytest.mark.e2e
def test_dry_run_catches_schema_errors(cluster):
    """The check above can fail: an unknown field and a wrong type are both refused."""
    [dep] = by_kind(rendered(), "Deployment")
    typo = yaml.safe_load(yaml.safe_dump(dep))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    wrong_type = yaml.safe_load(yaml.safe_dump(dep))
    wrong_type["spec"]["replicas"] = "two"
    errors = dry_run_apply(cluster.api_client(), [typo, wrong_type])
    assert len(errors) == 2
    assert "imagePullPolicyy" in errors[0]
