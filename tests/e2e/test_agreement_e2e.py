"""Kubernetes scheduling constraints on a real cluster: plan-vs-bind agreement, and the import round trip.

One cluster for the module with kube-controller-manager and kwok, the
workloads of `bench.bench_agreement` (zone spread, hostname anti-affinity,
zone affinity, node affinity In/NotIn/Gt, a tainted GPU node, a node
selector; one Deployment without any edgeplace annotation). The planner maps
and plans it, kube-scheduler binds with the extender serving the plan.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_agreement as agree
from tests.builders import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def measured(e2e_binaries):
    with e2e_cluster.LocalCluster(controller_manager=True, kwok=True) as cluster:
        out = agree.run(cluster, cluster.api_client(), solver="cpsat", time_limit_s=5.0)
        yield cluster, out


def test_pods_bind_on_the_node_class_the_plan_chose(measured):
    _, out = measured
    print("\nplan-vs-bind agreement:")
    for row in out["rows"]:
        print(f"  {row['workload']:<12} hard={row['hard']!s:<5} {row['on_planned_class']}/{row['replicas']}")
    print(f"  hard {out['hard_agreement']:.1%}, overall {out['overall_agreement']:.1%}, plan {out['plan_status']}")
    assert out["pending"] == 0 and out["binding_violations"] == [], out["binding_violations"]
    assert out["plan_violations"] == 0
    assert out["hard_agreement"] == 1.0, out["rows"]
    assert out["overall_agreement"] >= 0.95, out["rows"]


def test_import_from_cluster_keeps_every_constraint(measured, tmp_path):
    from edgeplace.cluster_cli import add_commands
    from edgeplace.topology import load_scenario

    cluster, _ = measured
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(agree.SITE_CONFIG))
    out = tmp_path / "scenario.yaml"
    assert run_cli(add_commands, ["import", "--from-cluster", "--kubeconfig", str(cluster.kubeconfig),
                                  "--site-config", str(site), "-o", str(out), "--quiet"]) == 0
    sc = load_scenario(out)
    c = sc.constraints
    w = {wid: sc.index_of("workload", wid) for wid in agree.DEPLOYMENTS}
    nodes = np.array(sc.node_ids)
    allowed = lambda wid: sorted(nodes[sc.workload_node_allowed[w[wid]]])  # noqa: E731
    # Node affinity (In on gpu, NotIn zone + Gt cores), the GPU taint and toleration, the node selector.
    assert allowed("ml/train") == ["ffm-gpu"]
    assert allowed("ml/etl") == ["ffm-1", "ffm-2", "ffm-3"]
    assert allowed("edge/ingest") == ["waw-1", "waw-2", "waw-3"]
    assert "ffm-gpu" not in allowed("shop/web")
    # Extended resources and pod limits from status.allocatable.
    gpu = sc.resources.index("nvidia.com/gpu")
    assert sc.node_capacity[sc.index_of("node", "ffm-gpu"), gpu] == 2 and sc.workload_requests[w["ml/train"], gpu] == 1
    assert "pods" in sc.resources
    # Pod anti-affinity (api with itself by hostname), affinity (cache next to api by zone), zone spread of web.
    host, zone = c.keys.index(agree.HOST), c.keys.index(agree.ZONE)
    assert [host, w["shop/api"], w["shop/api"]] in c.anti.tolist()
    [aff] = [a for a in c.affinity if a.workload == w["shop/cache"]]
    assert aff.targets.tolist() == [w["shop/api"]] and aff.keys.tolist() == [zone]
    [spread] = c.spread
    assert (spread.workload, spread.key, spread.max_skew, spread.counted.tolist()) == (w["shop/web"], zone, 1, [w["shop/web"]])
    # ScheduleAnyway is a preference: kept in the file, no constraint.
    worker = next(x for x in sc.spec.workloads if x.id == "shop/worker")
    assert worker.scheduling.topology_spread[0].when_unsatisfiable == "ScheduleAnyway"


def test_a_template_without_annotations_is_found_and_placed(measured):
    from edgeplace.k8s.mapping import map_cluster, parse_site_config, read_cluster

    cluster, out = measured
    api = cluster.api_client()
    objects = read_cluster(api)
    report = [d for d in objects.deployments if d["metadata"]["name"] == "report"]
    assert report and not (report[0]["spec"]["template"]["metadata"].get("annotations") or {})
    mapped = map_cluster(objects, parse_site_config(agree.SITE_CONFIG))
    entry = next(x for x in mapped.document["workloads"] if x["id"] == "shop/report")
    # Its pods (made by the ReplicaSet controller, named <rs>-<hash>) are found through their owners.
    bound = sorted(p.spec.node_name for p in agree.pods_of(api) if p.metadata.labels.get("app") == "report")
    assert sorted(entry["current"]) == bound and len(bound) == 2
    row = next(r for r in out["rows"] if r["workload"] == "shop/report")
    assert row["bound"] == 2
