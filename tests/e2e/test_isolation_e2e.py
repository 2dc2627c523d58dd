"""Tenant isolation that holds with the extender down, against a real kube-apiserver and kube-scheduler.

One cluster for the module: four shared nodes and a dedicated pool of two;
tenants hospital and cdn that must never share a node, a dedicated tenant
factory, and shop. The chart's admission policies (from the committed
deploy/manifests/edgeplace.yaml) are installed and `edgeplace apply-isolation`
writes the taints, tenant labels and policy parameters. Then pods of every
tenant are scheduled twice, by kube-scheduler with the extender stopped (its
URL answers nothing: kube-scheduler fails open) and with it running, and
every binding is checked; pods that try to escape are rejected with a
message naming the rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo
from edgeplace.k8s.isolation import PARAMS_NAME
from tests.builders import run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
SYSTEM_NS = "edgeplace-system"
POLICY_KINDS = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding")
NODES = {"shared-1": "site-a", "shared-2": "site-a", "shared-3": "site-b", "shared-4": "site-b",
         "factory-1": "plant", "factory-2": "plant"}
NAMESPACES = {"hospital": {"edgeplace.io/never-with": "cdn"}, "cdn": {}, "factory": {"edgeplace.io/dedicated-nodes": "true"},
              "shop": {}}
PODS = {"hospital": 2, "cdn": 3, "factory": 3, "shop": 4}
SITE_CONFIG = {"name": "isolation", "horizon": {"slots": 2, "slot_minutes": 60},
               "regions": [{"id": "DE", "intensity_g_per_kwh": 380}],
               "sites": [{"id": s, "tier": "access", "region": "DE"} for s in ("site-a", "site-b", "plant")]}


def isolation_policies() -> list[dict]:
    """The admission policies of the committed manifests (the chart rendered for Kubernetes 1.37)."""
    items = [d for d in yaml.safe_load_all((ROOT / "deploy/manifests/edgeplace.yaml").read_text()) if d]
    return [d for d in items if d["kind"] in POLICY_KINDS and d["metadata"]["name"].startswith("edgeplace-isolation")]


def chart_params() -> dict:
    """The chart's empty parameter ConfigMap (committed manifests), with Helm's ownership labels."""
    [params] = topo.chart_objects(PARAMS_NAME, ("ConfigMap",))
    return params


@pytest.fixture(scope="module")
def world(e2e_binaries, tmp_path_factory):
    from kubernetes import utils

    with e2e_cluster.LocalCluster() as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        # v1.37 serves both policy kinds at admissionregistration.k8s.io/v1 with no feature gate.
        served = {r.name for r in client.AdmissionregistrationV1Api(api).get_api_resources().resources}
        assert {"mutatingadmissionpolicies", "validatingadmissionpolicies"} <= served
        core.create_namespace({"metadata": {"name": SYSTEM_NS}})
        for name, site in NODES.items():
            labels = {"edgeplace.io/site": site, "topology.kubernetes.io/region": "DE", "edgeplace.io/tier": "access"}
            if name.startswith("factory"):
                labels["edgeplace.io/dedicated-to"] = "factory"
            e2e_cluster.create_node(core, name, labels=labels, cpu="4", memory="8Gi")
        for ns, annotations in NAMESPACES.items():
            core.create_namespace({"metadata": {"name": ns, "annotations": annotations}})
        for obj in isolation_policies():
            utils.create_from_dict(api, obj)
        core.create_namespaced_config_map(SYSTEM_NS, chart_params())  # as the chart installs it: empty
        config = tmp_path_factory.mktemp("isolation") / "site.yaml"
        config.write_text(yaml.safe_dump(SITE_CONFIG))
        from edgeplace.cluster_cli import add_commands

        assert run_cli(add_commands, ["apply-isolation", "--kubeconfig", str(cluster.kubeconfig),
                                      "--site-config", str(config)]) == 0
        # Policies take effect once the API server's informers see them and their parameters: wait on a
        # pod that must be refused.
        e2e_cluster.wait_for(lambda: _refused(core, "shop", {"nodeName": "factory-1"}), WAIT,
                             "the admission policies to take effect")
        yield cluster, api, core, config


def _pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "labels": {"app": name.rsplit("-", 1)[0]}},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}], **spec}}


def _refused(core, ns: str, spec: dict) -> str | None:
    """The API server's message when it refuses the pod, else None (and the pod is deleted again)."""
    name = f"probe-{abs(hash(json.dumps(spec, sort_keys=True))) % 10**8}"
    try:
        core.create_namespaced_pod(ns, _pod(name, **spec))
    except ApiException as exc:
        if exc.status in (400, 403, 422):
            return json.loads(exc.body).get("message", "")
        raise
    core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    return None


def _settled(core, names: list[tuple[str, str]]) -> dict[str, str | None] | None:
    """{ns/pod: node, or None when kube-scheduler found no node}, once every pod is one or the other."""
    out: dict[str, str | None] = {}
    for ns, name in names:
        pod = core.read_namespaced_pod(name, ns)
        unschedulable = any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in pod.status.conditions or [])
        if not pod.spec.node_name and not unschedulable:
            return None
        out[f"{ns}/{name}"] = pod.spec.node_name
    return out


def _schedule_and_check(core, prefix: str) -> dict[str, str]:
    """Create PODS pods per tenant, one tenant after the other, wait until kube-scheduler bound each or
    found no node for it, and check isolation; returns {ns/pod: node} of the bound ones."""
    settled: dict[str, str | None] = {}
    names = []
    for ns, n in PODS.items():
        batch = [(ns, f"{prefix}-{ns}-{i}") for i in range(n)]
        for _, name in batch:
            core.create_namespaced_pod(ns, _pod(name))
        settled.update(e2e_cluster.wait_for(lambda: _settled(core, batch), WAIT, f"the {ns} pods to be scheduled",
                                            interval=0.25))
        names += batch
    bindings = {k: v for k, v in settled.items() if v}
    # Isolation fails closed: a pod that has no node left stays pending, it is not put next to its
    # never_with partner; the tenants placed first are all bound.
    assert all(settled[f"{ns}/{prefix}-{ns}-{i}"] for ns in ("hospital", "factory") for i in range(PODS[ns])), settled
    tenants_on: dict[str, set[str]] = {}
    for key, node in bindings.items():
        tenants_on.setdefault(node, set()).add(key.split("/")[0])
    for node, tenants in tenants_on.items():
        assert not {"hospital", "cdn"} <= tenants, f"{node} hosts hospital and cdn: {bindings}"
        if node.startswith("factory"):
            assert tenants == {"factory"}, f"dedicated node {node} hosts {tenants}"
    assert {n for k, n in bindings.items() if k.startswith("factory/")} <= {"factory-1", "factory-2"}
    # The mutating policy gave the pods their rules.
    factory = core.read_namespaced_pod(f"{prefix}-factory-0", "factory").spec
    assert factory.node_selector == {"edgeplace.io/dedicated-to": "factory"}
    assert any(t.key == "edgeplace.io/dedicated-to" and t.value == "factory" for t in factory.tolerations)
    [term] = core.read_namespaced_pod(f"{prefix}-cdn-0", "cdn").spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    assert term.topology_key == "kubernetes.io/hostname" and term.namespace_selector.match_expressions[0].values == ["hospital"]
    for ns, name in names:
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    e2e_cluster.wait_for(lambda: not any(p.metadata.name.startswith(prefix) for ns in PODS
                                         for p in core.list_namespaced_pod(ns).items), WAIT, "the pods to go")
    return bindings


def test_apply_isolation_wrote_taints_labels_and_parameters(world):
    _, _, core, _ = world
    for name in NODES:
        taints = {(t.key, t.value, t.effect) for t in core.read_node(name).spec.taints or []}
        dedicated = ("edgeplace.io/dedicated-to", "factory", "NoSchedule") in taints
        assert dedicated == name.startswith("factory"), (name, taints)
    assert {ns: core.read_namespace(ns).metadata.labels.get("edgeplace.io/tenant") for ns in NAMESPACES} == \
        {ns: ns for ns in NAMESPACES}
    stored = core.read_namespaced_config_map(PARAMS_NAME, SYSTEM_NS)
    chart = chart_params()["metadata"]
    # The chart's labels and keep annotation survive the write (Helm still owns the object).
    assert chart["labels"].items() <= (stored.metadata.labels or {}).items()
    assert chart["annotations"].items() <= (stored.metadata.annotations or {}).items()
    params = stored.data
    assert params == {"node.factory-1": "factory", "node.factory-2": "factory", "tenant.factory.dedicated": "true",
                      "tenant.hospital.never-with": "cdn", "tenant.cdn.never-with": "hospital"}


def test_isolation_holds_with_the_extender_stopped(world):
    cluster, _, core, _ = world
    down = f"http://127.0.0.1:{e2e_cluster.free_port()}"  # nothing listens: every call fails, kube-scheduler goes on
    cluster.restart_scheduler(topo.scheduler_config(down))
    bindings = _schedule_and_check(core, "down")
    assert {k.split("/")[0] for k in bindings} == set(PODS)  # every tenant has pods running


def test_isolation_holds_with_the_extender_running(world):
    from edgeplace.k8s.extender.server import ExtenderServer
    from edgeplace.k8s.extender.table import DecisionTable, build_plan_document
    from edgeplace.k8s.mapping import map_cluster, parse_site_config, read_cluster
    from edgeplace.optimizer.solve import SolveOptions, solve

    cluster, api, core, _ = world
    mapped = map_cluster(read_cluster(api), parse_site_config(SITE_CONFIG))
    plan = solve(mapped.scenario, SolveOptions(solver="greedy", bound_time_limit_s=0.0))
    doc = build_plan_document(mapped.scenario, plan.placement, evaluation=plan.evaluation)
    with ExtenderServer(DecisionTable.from_document(doc)) as server:
        cluster.restart_scheduler(topo.scheduler_config(server.url))
        _schedule_and_check(core, "up")
        assert server.metrics.registry.get_sample_value("edgeplace_extender_requests_total",
                                                        {"verb": "filter", "code": "200"}) > 0


@pytest.mark.parametrize("ns, spec, rule", [
    ("shop", {"nodeName": "factory-1"}, "edgeplace isolation (dedicated_nodes): node factory-1 is dedicated to another tenant"),
    ("shop", {"tolerations": [{"key": "edgeplace.io/dedicated-to", "operator": "Equal", "value": "factory",
                               "effect": "NoSchedule"}]}, "may tolerate only its own pool's taint"),
    ("hospital", {"tolerations": [{"operator": "Exists"}]}, "not another tenant's pool or every taint"),
    ("shop", {"nodeSelector": {"edgeplace.io/dedicated-to": "factory"}}, "names another tenant's pool"),
    ("cdn", {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["factory-2"]}]}]}}}},
     "names another tenant's dedicated node or pool"),
    # A factory pod asking for another pool keeps its own nodeSelector key, so the mutation adds nothing.
    ("factory", {"nodeSelector": {"edgeplace.io/dedicated-to": "shop"}}, "run only on its dedicated nodes"),
    ("hospital", {"nodeName": "shared-1", "tolerations": [{"key": "edgeplace.io/dedicated-to", "operator": "Exists"}]},
     "edgeplace isolation (dedicated_nodes)"),
])
def test_escaping_pods_are_rejected_with_the_rule(world, ns, spec, rule):
    _, _, core, _ = world
    message = _refused(core, ns, spec)
    assert message is not None and rule in message, message


def test_a_pod_claiming_another_tenant_is_rejected(world):
    _, _, core, _ = world
    body = _pod("claim")
    body["metadata"]["annotations"] = {"edgeplace.io/tenant": "cdn"}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("hospital", body)
    assert "edgeplace isolation (tenant): the pod claims tenant cdn but namespace hospital belongs to tenant hospital" \
        in json.loads(err.value.body)["message"]


@pytest.mark.parametrize("how", ["pods/binding", "bindings"])
def test_a_binding_to_another_tenants_node_is_rejected(world, how):
    _, _, core, _ = world
    core.create_namespaced_pod("shop", _pod("unbound", schedulerName="nobody"))
    body = {"metadata": {"name": "unbound"}, "target": {"kind": "Node", "name": "factory-2"}}
    try:
        with pytest.raises(ApiException) as err:
            if how == "pods/binding":
                core.create_namespaced_pod_binding("unbound", "shop", body, _preload_content=False)
            else:
                core.create_namespaced_binding("shop", body, _preload_content=False)
        assert "node factory-2 is dedicated to tenant factory" in json.loads(err.value.body)["message"]
        assert not core.read_namespaced_pod("unbound", "shop").spec.node_name
    finally:
        core.delete_namespaced_pod("unbound", "shop", grace_period_seconds=0)


def test_the_planner_keeps_isolation_each_round(world, tmp_path):
    """Someone removes the pool's taint and a tenant label: the planner's next round (the chart runs
    it with --keep-isolation) writes them back, from its own listing, and still publishes its plan."""
    from edgeplace.k8s.mapping import load_site_config
    from edgeplace.k8s.planner import Planner, PlannerOptions
    from edgeplace.k8s.publish import FilePlanPublisher
    from edgeplace.optimizer.solve import SolveOptions

    _, api, core, config = world
    node = core.read_node("factory-2")
    node.spec.taints = [t for t in node.spec.taints or [] if t.key != "edgeplace.io/dedicated-to"]
    core.replace_node("factory-2", node)
    core.patch_namespace("shop", {"metadata": {"labels": {"edgeplace.io/tenant": None}}})
    planner = Planner(api, FilePlanPublisher(str(tmp_path / "plan.json")), load_site_config(str(config)),
                      PlannerOptions(solve=SolveOptions(solver="greedy", bound_time_limit_s=0.0),
                                     isolation_namespace=SYSTEM_NS))
    result = planner.plan_once()
    assert result.outcome == "published", result.detail
    assert sorted(c.split(":")[0] for c in result.isolation) == ["namespace-label shop", "node-taint factory-2"], result.isolation
    assert ("edgeplace.io/dedicated-to", "factory", "NoSchedule") in {
        (t.key, t.value, t.effect) for t in core.read_node("factory-2").spec.taints or []}
    assert core.read_namespace("shop").metadata.labels.get("edgeplace.io/tenant") == "shop"
    assert planner.plan_once().isolation == []  # in the desired state: nothing more to write
