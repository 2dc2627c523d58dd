"""The chart's Kueue part (kueue.enabled): least-privilege RBAC, the rendered manifests, a server-side dry run.

The helpers (helm, rendering, dry-run apply) are tests/e2e/test_manifests.py's.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from tests.e2e.test_manifests import DEPLOY, MANIFESTS, by_kind, docs, dry_run_apply, helm, render  # noqa: F401 (helm: fixture)


def test_kueue_rbac_is_least_privilege():
    items = docs(MANIFESTS / "kueue.yaml")
    [role] = [r for r in by_kind(items, "ClusterRole") if r["metadata"]["name"] == "edgeplace-kueue"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    read = {"get", "list", "watch"}
    assert rules == {
        (("kueue.x-k8s.io",), ("workloads",)): read | {"patch"},  # spec.active and annotations of held Workloads
        (("kueue.x-k8s.io",), ("workloads/status",)): {"get", "update", "patch"},  # check states, nominations
        (("kueue.x-k8s.io",), ("admissionchecks",)): read,
        (("kueue.x-k8s.io",), ("admissionchecks/status",)): {"update"},  # Active
        (("kueue.x-k8s.io",), ("clusterqueues", "localqueues")): read,  # quotas
    }
    [ns_role] = by_kind(items, "Role")
    assert [(r["resources"], r.get("resourceNames"), set(r["verbs"])) for r in ns_role["rules"]] == [
        (["leases"], ["edgeplace-kueue"], {"get", "update"})]
    deployments = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["args"]
                   for d in by_kind(items, "Deployment")}
    assert deployments["edgeplace-kueue"][:2] == ["serve", "--kueue"] and "--no-release-gates" in deployments["edgeplace-kueue"]
    assert deployments["edgeplace-kueue-watchdog"][:2] == ["serve", "--kueue-watchdog"]
    assert "--lease=edgeplace-system/edgeplace-kueue" in deployments["edgeplace-kueue-watchdog"]


@pytest.mark.e2e
def test_committed_kueue_manifests_match_a_fresh_render(helm, tmp_path):  # noqa: F811
    fresh = subprocess.run(["bash", str(DEPLOY / "render.sh"), helm], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "EDGEPLACE_RENDER_OUT": str(tmp_path)})
    assert fresh.returncode == 0, fresh.stderr
    assert (tmp_path / "kueue.yaml").read_text() == (MANIFESTS / "kueue.yaml").read_text(), (
        "deploy/manifests/kueue.yaml is out of date with the chart: run deploy/render.sh")


@pytest.mark.e2e
def test_kueue_chart_variants_pass_server_side_dry_run(e2e_binaries, helm, tmp_path):  # noqa: F811
    from kubernetes import client

    fleet = {"clusters": [{"name": "worker-de", "kubeconfig": "/etc/edgeplace/fleet/kubeconfig"}],
             "sites": [{"id": "metro-de", "tier": "metro", "region": "DE"}]}
    values = {"kueue": {"enabled": True, "fleet": {"enabled": True, "config": fleet, "kubeconfigSecret": "workers"}}}
    values_file = tmp_path / "kueue-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    text = render(helm, "--values", str(values_file))
    items = [d for d in yaml.safe_load_all(text) if d]
    [role] = [r for r in by_kind(items, "ClusterRole") if r["metadata"]["name"] == "edgeplace-kueue"]
    assert any(r["resources"] == ["multikueueclusters", "multikueueconfigs"] for r in role["rules"])
    [dep] = [d for d in by_kind(items, "Deployment") if d["metadata"]["name"] == "edgeplace-kueue"]
    assert "--fleet-config=/etc/edgeplace/fleet/fleet-config.yaml" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    with e2e_cluster.LocalCluster() as cluster:
        client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": "edgeplace-system"}})
        assert dry_run_apply(cluster.api_client(), items + docs(MANIFESTS / "kueue.yaml")) == []
