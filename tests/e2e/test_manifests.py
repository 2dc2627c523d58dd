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

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo

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


def rules_of(role: dict) -> dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]]:
    return {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}


def named(items: list[dict], kind: str, name: str) -> dict:
    [obj] = [d for d in by_kind(items, kind) if d["metadata"]["name"] == name]
    return obj


def test_rbac_is_least_privilege():
    """The planner gets what docs/KUBERNETES.md lists (the actuation's needs), the extender one get."""
    items = rendered()
    for role in by_kind(items, "ClusterRole") + by_kind(items, "Role"):
        for (groups, resources), verbs in rules_of(role).items():
            assert "*" not in groups and "*" not in resources and "*" not in verbs, (groups, resources, verbs)
            assert "delete" not in verbs and "deletecollection" not in verbs, (resources, verbs)
    read = {"get", "list", "watch"}
    # The planner's own, and (isolation.enabled, on) what keeping the isolation state needs.
    assert sorted(r["metadata"]["name"] for r in by_kind(items, "ClusterRole")) == ["edgeplace-isolation", "edgeplace-planner"]
    planner = rules_of(named(items, "ClusterRole", "edgeplace-planner"))
    # The defaults: actuation in dry-run, so no node writes, no evictions, no Events, no Secrets.
    assert planner == {
        (("",), ("pods",)): read | {"patch"},  # only gate removal: the ValidatingAdmissionPolicy
        (("",), ("nodes",)): read,
        (("",), ("namespaces",)): read,
        (("policy",), ("poddisruptionbudgets",)): read,
        (("apps",), ("deployments", "statefulsets", "replicasets")): read,
        (("batch",), ("jobs",)): read | {"patch"},  # spec.suspend of interruptible Jobs (releaseGates)
    }
    ns_rules = [(r["resources"], r.get("resourceNames"), set(r["verbs"]))
                for r in named(items, "Role", "edgeplace-planner")["rules"]]
    assert sorted(ns_rules, key=str) == sorted([
        (["configmaps"], ["edgeplace-plan", "edgeplace-rebalance-history"], {"get", "update"}),
        (["leases"], None, {"create"}), (["leases"], ["edgeplace-planner"], {"get", "update"})], key=str)
    extender = named(items, "Role", "edgeplace-extender")["rules"]
    assert extender == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["edgeplace-plan"],
                         "verbs": ["get"]}]
    bindings = {b["metadata"]["name"]: (b["roleRef"]["name"], [s["name"] for s in b["subjects"]])
                for b in by_kind(items, "ClusterRoleBinding") + by_kind(items, "RoleBinding")}
    assert bindings == {"edgeplace-planner": ("edgeplace-planner", ["edgeplace-planner"]),
                        "edgeplace-extender": ("edgeplace-extender", ["edgeplace-extender"]),
                        "edgeplace-isolation": ("edgeplace-isolation", ["edgeplace-planner"]),
                        "edgeplace-steering": ("edgeplace-steering", ["edgeplace-planner"])}
    assert rules_of(named(items, "ClusterRole", "edgeplace-isolation")) == {
        (("",), ("nodes",)): {"get", "update"}, (("",), ("namespaces",)): {"get", "patch"}}
    assert named(items, "Role", "edgeplace-isolation")["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["edgeplace-isolation"], "verbs": ["get", "update"]}]
    # steering.enabled (on): the steering policy's parameters only.
    assert named(items, "Role", "edgeplace-steering")["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["edgeplace-steering"], "verbs": ["get", "update"]}]


@pytest.mark.parametrize("name, resources", [("edgeplace-planner-pod-updates", ["pods"]),
                                             ("edgeplace-planner-job-updates", ["jobs"])])
def test_the_planners_pod_and_job_updates_are_bound_to_a_validating_admission_policy(name, resources):
    items = rendered()
    policy = named(items, "ValidatingAdmissionPolicy", name)
    binding = named(items, "ValidatingAdmissionPolicyBinding", name)
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    [condition] = policy["spec"]["matchConditions"]
    assert "system:serviceaccount:edgeplace-system:edgeplace-planner" in condition["expression"]
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (resources, ["UPDATE"])


@pytest.mark.e2e
def test_actuation_in_apply_mode_adds_only_what_it_needs(helm):
    items = [d for d in yaml.safe_load_all(render(helm, "--set", "actuation.rebalance=apply",
                                                  "--set", "actuation.power=apply")) if d]
    rules = rules_of(named(items, "ClusterRole", "edgeplace-planner"))
    assert rules[(("",), ("pods/eviction",))] == {"create"}  # the Eviction API only: PDBs are checked
    assert rules[(("",), ("nodes",))] == {"get", "list", "watch", "update", "patch"}
    assert rules[(("events.k8s.io",), ("events",))] == {"create", "patch"}
    assert "delete" not in set().union(*rules.values())  # never a forced delete
    ns_rules = [(r["resources"], r.get("resourceNames"), set(r["verbs"]))
                for r in named(items, "Role", "edgeplace-planner")["rules"]]
    assert (["secrets"], None, {"get"}) in ns_rules and (["configmaps"], None, {"create"}) in ns_rules
    # The extender gains nothing.
    assert len(named(items, "Role", "edgeplace-extender")["rules"]) == 1
    args = named(items, "Deployment", "edgeplace-planner")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--rebalance=apply" in args and "--power=apply" in args
    assert not {"--rebalance=apply", "--power=apply"} & set(
        named(items, "Deployment", "edgeplace-extender")["spec"]["template"]["spec"]["containers"][0]["args"])
    # Only rebalancing: evictions and Events, but no node writes and no Secrets.
    items = [d for d in yaml.safe_load_all(render(helm, "--set", "actuation.rebalance=apply")) if d]
    rules = rules_of(named(items, "ClusterRole", "edgeplace-planner"))
    assert rules[(("",), ("pods/eviction",))] == {"create"} and rules[(("",), ("nodes",))] == {"get", "list", "watch"}
    ns_rules = [(r["resources"], r.get("resourceNames"), set(r["verbs"]))
                for r in named(items, "Role", "edgeplace-planner")["rules"]]
    assert (["configmaps"], None, {"create"}) in ns_rules and not [r for r in ns_rules if r[0] == ["secrets"]]


@pytest.mark.e2e
def test_extender_calls_all_sends_every_pod_unmarked_and_a_wrong_value_names_the_choices(helm):
    def wiring(*extra: str) -> tuple[list[dict], list[str], str]:
        """The extender stanzas, the planner's arguments and the steering policy's `wired` expression."""
        items = [d for d in yaml.safe_load_all(render(helm, *extra)) if d]
        data = scheduler_configmap(items)["data"]
        stanzas = [e for key in ("default-scheduler.yaml", "second-scheduler.yaml")
                   for e in yaml.safe_load(data[key])["extenders"]]
        args = named(items, "Deployment", "edgeplace-planner")["spec"]["template"]["spec"]["containers"][0]["args"]
        policy = named(items, "MutatingAdmissionPolicy", "edgeplace-steering")
        [wired] = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "wired"]
        return stanzas, args, wired.rstrip()

    stanzas, args, wired = wiring()  # the default, "marked": only the pods the steering policy marks
    assert all(e["managedResources"] == [{"name": "edgeplace.io/unsteered", "ignoredByScheduler": True}] for e in stanzas)
    assert "--extender-every-pod-from=500" in args and "--no-extender-marks" not in args
    assert wired.endswith('in ["default-scheduler"]'), wired
    stanzas, args, wired = wiring("--set", "steering.extenderCalls=all")
    assert stanzas and not any("managedResources" in e for e in stanzas)
    assert "--no-extender-marks" in args and not [a for a in args if a.startswith("--extender-every-pod-from")]
    # ... and the steering policy marks no pod whatever its parameters say (a stale `extender` entry
    # from before the switch would leave marked pods Pending under a stanza without the entry).
    assert wired.endswith("in []"), wired
    result = subprocess.run([helm, "template", "edgeplace", str(CHART), "--kube-version", "1.37.2",
                             "--set", "steering.extenderCalls=every"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'steering.extenderCalls: "every" is not one of marked, all' in result.stderr


def test_scheduler_config_file_is_the_charts_default_scheduler_config():
    cm = scheduler_configmap(rendered())
    assert yaml.safe_load(cm["data"]["default-scheduler.yaml"]) == yaml.safe_load(SCHEDULER_CONFIG.read_text())


@pytest.mark.parametrize("key, cert_dir", [("default-scheduler.yaml", "/etc/kubernetes/edgeplace"),
                                           ("second-scheduler.yaml", "/etc/kubernetes/edgeplace-client")])
def test_extender_stanza_fails_open_serves_mutual_tls_and_has_no_bind(key, cert_dir):
    config = yaml.safe_load(scheduler_configmap(rendered())["data"][key])
    assert config["percentageOfNodesToScore"] == 100  # the extender sees every feasible node
    [ext] = config["extenders"]
    assert ext["ignorable"] is True and ext["nodeCacheCapable"] is True
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["preemptVerb"]) == ("filter", "prioritize", "preempt")
    assert "bindVerb" not in ext  # docs/EXTENDER.md: a bind verb adds nothing and sits on every binding
    assert ext["weight"] > 0 and re.fullmatch(r"\d+(ms|s)", ext["httpTimeout"])
    assert ext["urlPrefix"] == "https://edgeplace.edgeplace-system.svc:8888" and ext["enableHTTPS"] is True
    assert ext["tlsConfig"] == {"serverName": "edgeplace.edgeplace-system.svc", "caFile": f"{cert_dir}/ca.crt",
                                "certFile": f"{cert_dir}/tls.crt", "keyFile": f"{cert_dir}/tls.key"}


def test_deployments_run_non_root_read_only_with_their_own_service_accounts():
    items = rendered()
    deployments = {d["metadata"]["name"]: d for d in by_kind(items, "Deployment")}
    assert sorted(deployments) == ["edgeplace-extender", "edgeplace-planner"]
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        [c] = pod["containers"]
        assert pod["serviceAccountName"] == name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        assert "--configmap=edgeplace-system/edgeplace-plan" in c["args"]
    ext = deployments["edgeplace-extender"]["spec"]["template"]["spec"]
    [c] = ext["containers"]
    assert c["args"][:2] == ["serve", "--extender"] and "--planner" not in c["args"]
    assert {"--tls-cert=/etc/edgeplace/tls/tls.crt", "--tls-key=/etc/edgeplace/tls/tls.key",
            "--client-ca=/etc/edgeplace/tls/ca.crt", "--cluster=cluster", "--compact-replies", "--filter-keeps=best"} <= set(c["args"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "tls", "secret": {"secretName": "edgeplace-extender-tls"}} in ext["volumes"]
    [c] = deployments["edgeplace-planner"]["spec"]["template"]["spec"]["containers"]
    assert c["args"][:2] == ["serve", "--planner"] and "--extender" not in c["args"]
    assert {"--rebalance=dry-run", "--power=dry-run", "--host=0.0.0.0", "--metrics-port=9102"} <= set(c["args"])
    services = {d["metadata"]["name"]: d["spec"] for d in by_kind(items, "Service")}
    assert services["edgeplace"]["selector"]["app.kubernetes.io/component"] == "extender"
    assert services["edgeplace-planner-metrics"]["selector"]["app.kubernetes.io/component"] == "planner"
    assert services["edgeplace-planner-metrics"]["clusterIP"] == "None"  # every replica is a target


def test_the_dashboard_configmap_carries_the_dashboard_file():
    [cm] = [d for d in by_kind(rendered(), "ConfigMap") if d["metadata"]["name"] == "edgeplace-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["edgeplace.json"]) == json.loads((CHART / "dashboards" / "edgeplace.json").read_text())


def test_param_anchors_are_kept_on_uninstall_and_can_neither_refuse_nor_change_anything():
    """docs/KUBERNETES.md "Policy parameters across reinstalls"; behaviour in test_param_anchor_e2e.py."""
    items = rendered()
    anchors = [d for d in items if d["metadata"]["name"] == "edgeplace-param-anchor"]
    assert sorted(d["kind"] for d in anchors) == sorted([
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"])
    assert all(d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for d in anchors)
    for kind in ("MutatingAdmissionPolicy", "ValidatingAdmissionPolicy"):
        spec = named(items, kind, "edgeplace-param-anchor")["spec"]
        assert spec["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"} and spec["failurePolicy"] == "Ignore"
        assert spec["matchConstraints"]["resourceRules"] == [{"apiGroups": ["edgeplace.io"], "apiVersions": ["v1"],
                                                              "operations": ["CREATE"], "resources": ["param-anchors"]}]
        binding = named(items, kind + "Binding", "edgeplace-param-anchor")["spec"]
        assert binding["paramRef"]["parameterNotFoundAction"] == "Allow"
    assert named(items, "ValidatingAdmissionPolicyBinding", "edgeplace-param-anchor")["spec"]["validationActions"] == ["Audit"]
    assert named(items, "ValidatingAdmissionPolicy", "edgeplace-param-anchor")["spec"]["validations"] == [
        {"expression": "true"}]


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


#: CustomResourceDefinitions of the optional objects of the chart, from their projects' Go
#: modules (the Go module proxy, as k8s/e2e/build.sh fetches Kubernetes): the ServiceMonitor
#: (prometheus-operator) and cert-manager's Certificate and Issuer.
CRD_FILES = {
    "github.com/prometheus-operator/prometheus-operator@v0.85.0":
        ["example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"],
    "github.com/cert-manager/cert-manager@v1.21.2":
        ["deploy/crds/cert-manager.io_certificates.yaml", "deploy/crds/cert-manager.io_issuers.yaml"],
}


@pytest.fixture(scope="module")
def crds(cluster, tmp_path_factory):
    """Install the CRDs of CRD_FILES into the test cluster (skip without Go, fail under CI=true)."""
    from kubernetes import client

    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no Go toolchain to fetch the CRDs", pytrace=False)
        pytest.skip("no Go toolchain to fetch the CRDs")
    ext = client.ApiextensionsV1Api(cluster.api_client())
    names = []
    for module, files in CRD_FILES.items():
        done = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True, timeout=900,
                              cwd=tmp_path_factory.mktemp("gomod"), env={**os.environ, "GOFLAGS": "-mod=mod"})
        assert done.returncode == 0, done.stderr
        folder = Path(json.loads(done.stdout)["Dir"])
        for name in files:
            for crd in docs(folder / name):
                ext.create_custom_resource_definition(crd)
                names.append(crd["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    e2e_cluster.wait_for(established, WAIT, "the CRDs to be established")
    return names


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
def test_chart_variants_pass_server_side_dry_run(cluster, helm, crds):
    text = render(helm, "--set", "actuation.power=apply", "--set", "extender.tokenSecret=edgeplace-token",
                  "--set", "secondScheduler.enabled=true", "--set", "planner.releaseGates=false",
                  "--set", "service.clusterIP=10.96.0.77", "--set", "certManager.enabled=true",
                  "--set", "metrics.serviceMonitor.enabled=true")
    items = [d for d in yaml.safe_load_all(text) if d]
    # Power in apply mode alone: node writes and evictions (drains); no gate patches without releaseGates.
    verbs = {r["resources"][0]: set(r["verbs"]) for r in named(items, "ClusterRole", "edgeplace-planner")["rules"]}
    assert {"update", "patch"} <= verbs["nodes"] and "patch" not in verbs["pods"] and "patch" not in verbs["jobs"]
    assert verbs["pods/eviction"] == {"create"}
    kinds = {d["kind"] for d in items}
    assert {"Certificate", "Issuer", "ServiceMonitor", "ValidatingAdmissionPolicy"} <= kinds
    secrets = {d["spec"]["secretName"] for d in by_kind(items, "Certificate")}
    assert {"edgeplace-extender-tls", "edgeplace-scheduler-client-tls"} <= secrets
    [monitor] = by_kind(items, "ServiceMonitor")
    extender_ep, planner_ep = monitor["spec"]["endpoints"]
    assert extender_ep["tlsConfig"]["keySecret"]["name"] == "edgeplace-scheduler-client-tls"
    # Each endpoint's port is on one Service only: the extender's, and the planner's headless one.
    ports = {d["metadata"]["name"]: {p["name"] for p in d["spec"]["ports"]} for d in by_kind(items, "Service")}
    assert ports["edgeplace"] == {extender_ep["port"]} and ports["edgeplace-planner-metrics"] == {planner_ep["port"]}
    assert planner_ep["scheme"] == "http" and planner_ep["path"] == "/metrics"
    planner = named(items, "Deployment", "edgeplace-planner")["spec"]["template"]["spec"]["containers"][0]
    assert {"--host=0.0.0.0", "--metrics-port=9102"} <= set(planner["args"])
    assert planner["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    selector = monitor["spec"]["selector"]

    def selects(labels: dict) -> bool:
        return selector["matchLabels"].items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"])  # operator In
    assert {e["operator"] for e in selector["matchExpressions"]} == {"In"}
    assert {d["metadata"]["name"] for d in by_kind(items, "Service") if selects(d["metadata"]["labels"])} == {
        "edgeplace", "edgeplace-planner-metrics"}
    assert dry_run_apply(cluster.api_client(), items) == []
    plain = [d for d in yaml.safe_load_all(render(helm, "--set", "extender.tls.enabled=false",
                                                  "--set", "planner.enabled=false")) if d]
    [ext] = yaml.safe_load(scheduler_configmap(plain)["data"]["default-scheduler.yaml"])["extenders"]
    assert ext["urlPrefix"].startswith("http://") and "tlsConfig" not in ext
    # Without a planner: no planner policy and no ClusterRole; the isolation admission (apply-isolation by hand)
    # and its parameter anchor stay.
    assert {d["metadata"]["name"] for d in by_kind(plain, "ValidatingAdmissionPolicy")} == {
        "edgeplace-isolation", "edgeplace-isolation-binding", "edgeplace-param-anchor"} and not by_kind(plain, "ClusterRole")
    assert dry_run_apply(cluster.api_client(), plain) == []
    # Neither isolation nor steering: no policy with ConfigMap parameters, so no anchor either.
    bare = [d for d in yaml.safe_load_all(render(helm, "--set", "isolation.enabled=false",
                                                 "--set", "steering.enabled=false")) if d]
    assert not [d for d in bare if d["metadata"]["name"] == "edgeplace-param-anchor"]
    assert not [d for d in bare if d["kind"].endswith("AdmissionPolicy") and "paramKind" in d["spec"]]


def _schedules_through_extender(cluster, config: dict, scheduler_name: str, certs) -> None:
    """Run the real kube-scheduler with `config` (the extender's URL and the client certificate
    paths pointed at a loopback extender serving mutual TLS); a pod must bind through it."""
    from kubernetes import client

    from edgeplace.k8s.extender.server import ExtenderServer

    with ExtenderServer(None, ssl_context=certs.server_context()) as server:  # no plan: neutral, but counted
        for ext in config["extenders"]:
            ext["urlPrefix"] = server.url
            client_dir = certs.root / "client"
            ext["tlsConfig"].update(caFile=str(client_dir / "ca.crt"), certFile=str(client_dir / "tls.crt"),
                                    keyFile=str(client_dir / "tls.key"))
        config.pop("clientConnection", None)  # LocalCluster's admin kubeconfig
        cluster.restart_scheduler(config)
        core = client.CoreV1Api(cluster.api_client())
        name = f"via-{scheduler_name}"
        # Marked for the extender, as the steering policy marks a pod the plan does not cover (the
        # configurations' managedResources; tests/e2e/test_steering_e2e.py has the policy do it).
        mark = {"edgeplace.io/unsteered": "1"}
        core.create_namespaced_pod("default", {
            "metadata": {"name": name, "annotations": {"edgeplace.io/workload": "default/x"}},
            "spec": {"schedulerName": scheduler_name,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": mark, "limits": mark}}]}})
        e2e_cluster.wait_for(lambda: core.read_namespaced_pod(name, "default").spec.node_name, WAIT,
                             f"{name} to be bound")
        calls = server.metrics.registry.get_sample_value(
            "edgeplace_extender_decisions_total", {"verb": "filter", "reason": "no_plan"})
        assert calls >= 1, "kube-scheduler did not call the extender"
        refused = server.metrics.registry.get_sample_value(
            "edgeplace_extender_requests_total", {"verb": "filter", "code": "401"})
        assert not refused, "kube-scheduler did not present its client certificate"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """deploy/make-certs.sh, as docs/KUBERNETES.md tells an operator to run it."""
    return topo.Certs.make(tmp_path_factory.mktemp("make-certs") / "tls")


@pytest.mark.e2e
def test_kube_scheduler_runs_with_the_shipped_config(cluster, certs):
    _schedules_through_extender(cluster, yaml.safe_load(SCHEDULER_CONFIG.read_text()), "default-scheduler", certs)


@pytest.mark.e2e
def test_kube_scheduler_runs_with_the_second_scheduler_config(cluster, certs):
    config = yaml.safe_load(scheduler_configmap(rendered())["data"]["second-scheduler.yaml"])
    _schedules_through_extender(cluster, config, "edgeplace-scheduler", certs)


@pytest.mark.e2e
def test_dry_run_catches_schema_errors(cluster):
    """The check above can fail: an unknown field and a wrong type are both refused."""
    dep = named(rendered(), "Deployment", "edgeplace-extender")
    typo = yaml.safe_load(yaml.safe_dump(dep))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    wrong_type = yaml.safe_load(yaml.safe_dump(dep))
    wrong_type["spec"]["replicas"] = "two"
    errors = dry_run_apply(cluster.api_client(), [typo, wrong_type])
    assert len(errors) == 2
    assert "imagePullPolicyy" in errors[0]
