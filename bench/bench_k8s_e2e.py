"""Real-cluster benchmark: kube-scheduler's pods/s with and without the edgeplace extender.

    python -m bench.bench_k8s_e2e [--pods 1000] [--rounds 3]

Starts the e2e control plane (`k8s/e2e/cluster.py`; binaries from
`k8s/e2e/build.sh`), creates the small cloud-edge topology of
`tests/e2e/test_extender_e2e.py` (`setup_topology`), plans it, serves the
plan from an in-process extender on 127.0.0.1, and measures scheduling
throughput side by side: for each round, `pods` pending pods are scheduled
once by a profile without the extender and once by a profile with it.

How it measures (`measure_throughput`): the pods are created for a
scheduler profile that is not running yet, so they all wait; then
kube-scheduler is restarted with that profile and the rate is taken from the
``Scheduled`` events' microsecond ``eventTime``: (N - 1) / (last - first).
Pod creation and scheduler start-up are outside the measured interval. The
scheduler's client rate limit (50 QPS by default) would cap both runs alike,
so both configurations raise it (``clientConnection.qps/burst``).

The figures go to docs/BENCHMARKS.md (section ``k8s_e2e``) through
`bench.common.write_section`; the e2e test prints them without writing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_CONFIG = ROOT / "deploy" / "kube-scheduler-config.yaml"
WAIT_S = 60.0

# ---------------------------------------------------------------------------
# The topology: edge nodes in a coal-heavy grid, green cloud nodes, a dedicated factory pool

REGIONS = {"PL": 700.0, "DE": 380.0, "SE": 40.0}  # gCO2/kWh, constant over the horizon (REFERENCE.md orders of size)
NODES: dict[str, dict[str, Any]] = {
    # Access edge in Warsaw (coal-heavy PL grid): small boxes idling at 40 % of max.
    "edge-waw-1": {"site": "access-waw", "region": "PL", "tier": "access", "cpu": "4", "memory": "8Gi",
                   "annotations": {"edgeplace.io/idle-w": "60", "edgeplace.io/max-w": "150", "edgeplace.io/pue": "1.8"}},
    "edge-waw-2": {"site": "access-waw", "region": "PL", "tier": "access", "cpu": "4", "memory": "8Gi",
                   "annotations": {"edgeplace.io/idle-w": "60", "edgeplace.io/max-w": "150", "edgeplace.io/pue": "1.8"}},
    # Access edge in Frankfurt (DE grid).
    "edge-ffm-1": {"site": "access-ffm", "region": "DE", "tier": "access", "cpu": "4", "memory": "8Gi",
                   "annotations": {"edgeplace.io/idle-w": "60", "edgeplace.io/max-w": "150", "edgeplace.io/pue": "1.8"}},
    "edge-ffm-2": {"site": "access-ffm", "region": "DE", "tier": "access", "cpu": "4", "memory": "8Gi",
                   "annotations": {"edgeplace.io/idle-w": "60", "edgeplace.io/max-w": "150", "edgeplace.io/pue": "1.8"}},
    # The factory's dedicated on-prem pool (always on).
    "factory-1": {"site": "factory", "region": "DE", "tier": "on-prem", "cpu": "4", "memory": "8Gi",
                  "labels": {"edgeplace.io/dedicated-to": "factory"},
                  "annotations": {"edgeplace.io/idle-w": "45", "edgeplace.io/max-w": "95",
                                  "edgeplace.io/can-power-down": "false"}},
    "factory-2": {"site": "factory", "region": "DE", "tier": "on-prem", "cpu": "4", "memory": "8Gi",
                  "labels": {"edgeplace.io/dedicated-to": "factory"},
                  "annotations": {"edgeplace.io/idle-w": "45", "edgeplace.io/max-w": "95",
                                  "edgeplace.io/can-power-down": "false"}},
    # Hyperscale cloud in Stockholm (hydro/nuclear SE grid): 115 W / 490 W servers, PUE 1.1.
    "cloud-se-1": {"site": "cloud-sto", "region": "SE", "tier": "cloud", "cpu": "16", "memory": "64Gi",
                   "annotations": {"edgeplace.io/idle-w": "115", "edgeplace.io/max-w": "490", "edgeplace.io/pue": "1.1"}},
    "cloud-se-2": {"site": "cloud-sto", "region": "SE", "tier": "cloud", "cpu": "16", "memory": "64Gi",
                   "annotations": {"edgeplace.io/idle-w": "115", "edgeplace.io/max-w": "490", "edgeplace.io/pue": "1.1"}},
    "cloud-se-3": {"site": "cloud-sto", "region": "SE", "tier": "cloud", "cpu": "16", "memory": "64Gi",
                   "annotations": {"edgeplace.io/idle-w": "115", "edgeplace.io/max-w": "490", "edgeplace.io/pue": "1.1"}},
}
SITE_CONFIG: dict[str, Any] = {
    "name": "e2e-cloud-edge",
    "horizon": {"slots": 4, "slot_minutes": 60},
    "regions": [{"id": r, "intensity_g_per_kwh": g} for r, g in REGIONS.items()],
    "users": [{"id": "u-waw", "site": "access-waw"}, {"id": "u-ffm", "site": "access-ffm"}],
    "links": [{"a": "access-waw", "b": "cloud-sto", "latency_ms": 25},
              {"a": "access-ffm", "b": "cloud-sto", "latency_ms": 20},
              {"a": "access-ffm", "b": "factory", "latency_ms": 2},
              {"a": "access-waw", "b": "access-ffm", "latency_ms": 15}],
}
NAMESPACES: dict[str, dict[str, Any]] = {
    "hospital": {"annotations": {"edgeplace.io/never-with": "cdn"}},
    "cdn": {},
    "factory": {"annotations": {"edgeplace.io/dedicated-nodes": "true"}},
    "shop": {},
}
#: namespace/name -> replicas, cpu request, SLA [ms] and users (None: no SLA).
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "hospital/records": {"replicas": 3, "cpu": "500m", "sla_ms": 30, "users": "u-ffm"},
    "hospital/triage": {"replicas": 2, "cpu": "1", "sla_ms": 5, "users": "u-ffm"},
    "cdn/cache-ffm": {"replicas": 2, "cpu": "1", "sla_ms": 5, "users": "u-ffm"},
    "cdn/cache-waw": {"replicas": 2, "cpu": "1", "sla_ms": 5, "users": "u-waw"},
    "factory/line-control": {"replicas": 2, "cpu": "500m", "sla_ms": 5, "users": "u-ffm"},
    "shop/web": {"replicas": 6, "cpu": "500m", "sla_ms": None, "users": None},
    "shop/api": {"replicas": 4, "cpu": "1", "sla_ms": None, "users": None},
}


def load_cluster_module():
    """k8s/e2e/cluster.py (not a package), loaded as tests/e2e/conftest.py does."""
    from bench.common import load_e2e_module

    return load_e2e_module("edgeplace_e2e_cluster", "cluster.py")


def setup_topology(api_client) -> None:
    """Create the Nodes, Namespaces and Deployments (with their ReplicaSets; no pods yet)."""
    from kubernetes import client

    e2e = load_cluster_module()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    for name, spec in NODES.items():
        labels = {"edgeplace.io/site": spec["site"], "topology.kubernetes.io/region": spec["region"],
                  "edgeplace.io/tier": spec["tier"], **spec.get("labels", {})}
        e2e.create_node(core, name, labels=labels, cpu=spec["cpu"], memory=spec["memory"], pods="250")
        core.patch_node(name, {"metadata": {"annotations": spec["annotations"]}})
    for ns, spec in NAMESPACES.items():
        core.create_namespace({"metadata": {"name": ns, "annotations": spec.get("annotations", {})}})
    for key, spec in DEPLOYMENTS.items():
        ns, name = key.split("/")
        annotations = {}
        if spec["sla_ms"] is not None:
            annotations = {"edgeplace.io/sla-ms": str(spec["sla_ms"]), "edgeplace.io/users": spec["users"]}
        template = pod_template(key, spec["cpu"])
        dep = apps.create_namespaced_deployment(ns, {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": spec["replicas"], "selector": {"matchLabels": {"app": name}}, "template": template}})
        # No controller-manager here: make the ReplicaSet the Deployment controller would, by hand.
        apps.create_namespaced_replica_set(ns, {
            "metadata": {"name": f"{name}-rs", "labels": {"app": name},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                              "uid": dep.metadata.uid, "controller": True}]},
            "spec": {"replicas": spec["replicas"], "selector": {"matchLabels": {"app": name}}, "template": template}})


def pod_template(workload: str, cpu: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": workload.split("/")[1]}, "annotations": {"edgeplace.io/workload": workload}},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}}


def make_pod(api_client, workload: str, index: int, scheduler_name: str | None = None,
             name: str | None = None, labels: dict[str, str] | None = None, cpu: str | None = None,
             memory: str | None = None) -> dict[str, Any]:
    """A pod of a Deployment's ReplicaSet, as the ReplicaSet controller would create it."""
    from kubernetes import client

    ns, dname = workload.split("/")
    rs = client.AppsV1Api(api_client).read_namespaced_replica_set(f"{dname}-rs", ns)
    spec = DEPLOYMENTS[workload]
    body = copy.deepcopy(pod_template(workload, spec["cpu"]))
    body["metadata"].update(name=name or f"{dname}-{index}", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name, "uid": rs.metadata.uid,
         "controller": True}])
    body["metadata"]["labels"].update(labels or {})
    requests = body["spec"]["containers"][0]["resources"]["requests"]
    requests.update({k: v for k, v in (("cpu", cpu), ("memory", memory)) if v})
    if scheduler_name:
        body["spec"]["schedulerName"] = scheduler_name
    return body


def scheduler_config(extender_url: str | None, profiles: list[str] | None = None,
                     high_qps: bool = False) -> dict[str, Any]:
    """deploy/kube-scheduler-config.yaml with the extender at `extender_url` (None: no extender),
    the given profiles, and the kubeconfig left to LocalCluster."""
    config = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    config.pop("clientConnection", None)
    if high_qps:
        config["clientConnection"] = {"qps": 5000, "burst": 5000}
    if profiles:
        config["profiles"] = [{"schedulerName": p} for p in profiles]
    if extender_url is None:
        config.pop("extenders", None)
    else:
        for ext in config["extenders"]:
            ext["urlPrefix"] = extender_url
    return config


# ---------------------------------------------------------------------------
# Measuring


def measure_throughput(cluster, api_client, namespace: str, workload: str, n_pods: int, profile: str,
                       extender_url: str | None) -> dict[str, float]:
    """Schedule `n_pods` pending pods with a fresh scheduler profile; pods/s from the Scheduled events."""
    from kubernetes import client

    e2e = load_cluster_module()
    core, events = client.CoreV1Api(api_client), client.EventsV1Api(api_client)
    # Small requests, so that capacity never limits the run: it measures the scheduling path.
    bodies = [make_pod(api_client, workload, i, scheduler_name=profile, name=f"{profile}-{i}",
                       labels={"edgeplace-bench": profile}, cpu="10m", memory="16Mi") for i in range(n_pods)]
    for body in bodies:
        core.create_namespaced_pod(namespace, body)
    names = {b["metadata"]["name"] for b in bodies}
    started = time.perf_counter()
    cluster.restart_scheduler(scheduler_config(extender_url, ["default-scheduler", profile], high_qps=True))

    def all_bound():
        pods = core.list_namespaced_pod(namespace, label_selector=f"edgeplace-bench={profile}").items
        return sum(1 for p in pods if p.spec.node_name) == n_pods

    # A slow poll: this process also serves the extender, and listing 200 pods costs CPU it needs.
    e2e.wait_for(all_bound, WAIT_S, f"{n_pods} pods of profile {profile} to be bound", interval=0.5)
    wall = time.perf_counter() - started

    def scheduled_events():
        items = events.list_namespaced_event(namespace, field_selector="reason=Scheduled").items
        times = [e.event_time for e in items if e.regarding and e.regarding.name in names and e.event_time]
        return times if len(times) == n_pods else None

    times = sorted(e2e.wait_for(scheduled_events, WAIT_S, f"Scheduled events of profile {profile}"))
    span = (times[-1] - times[0]).total_seconds()
    return {"pods": n_pods, "pods_per_s": (n_pods - 1) / span if span > 0 else float("inf"),
            "span_s": span, "wall_s": wall}


def compare(cluster, api_client, namespace: str, workload: str, extender_url: str, n_pods: int = 200,
            rounds: int = 1) -> list[dict[str, Any]]:
    """Alternate without / with the extender `rounds` times; one row per run."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    rows = []
    for r in range(rounds):
        for label, url in (("without extender", None), ("with extender", extender_url)):
            profile = f"bench-{r}-{'ext' if url else 'plain'}"
            figures = measure_throughput(cluster, api_client, namespace, workload, n_pods, profile, url)
            rows.append({"run": r + 1, "scheduler": label, **figures})
            core.delete_collection_namespaced_pod(namespace, label_selector=f"edgeplace-bench={profile}",
                                                  grace_period_seconds=0)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    by = {label: [r["pods_per_s"] for r in rows if r["scheduler"] == label]
          for label in ("without extender", "with extender")}
    return {label: statistics.median(v) for label, v in by.items()}


# ---------------------------------------------------------------------------
# Standalone run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_k8s_e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000, help="pending pods per run (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="without/with pairs (default 3)")
    args = parser.parse_args(argv)

    import pandas as pd

    from bench.common import write_section
    from edgeplace.k8s.extender.server import ExtenderServer
    from edgeplace.k8s.extender.table import DecisionTable, build_plan_document
    from edgeplace.k8s.mapping import MappingOptions, map_cluster, parse_site_config, read_cluster
    from edgeplace.optimizer.solve import SolveOptions, solve

    e2e = load_cluster_module()
    with e2e.LocalCluster() as cluster:
        api = cluster.api_client()
        setup_topology(api)
        now = datetime.now(timezone.utc)
        mapped = map_cluster(read_cluster(api), parse_site_config(SITE_CONFIG), MappingOptions(now=now))
        plan = solve(mapped.scenario, SolveOptions(solver="greedy", bound_time_limit_s=0.0))
        doc = build_plan_document(mapped.scenario, plan.placement, now=now, evaluation=plan.evaluation)
        with ExtenderServer(DecisionTable.from_document(doc)) as server:
            rows = compare(cluster, api, "shop", "shop/web", server.url, args.pods, args.rounds)
    table = pd.DataFrame(rows)
    med = summarise(rows)
    notes = (f"kube-scheduler v{e2e.k8s_version().lstrip('v')} on loopback (etcd, kube-apiserver, kube-scheduler "
             f"and the extender share the 2 cores), {len(NODES)} nodes, {args.pods} pending pods of one annotated "
             f"workload per run, profiles alternated; rate = (N - 1) / (last - first Scheduled event time). "
             f"Median pods/s: {med['without extender']:.0f} without, {med['with extender']:.0f} with the extender "
             f"(filter + prioritize over HTTP, nodeCacheCapable). Client QPS raised to 5000 for both.")
    write_section("k8s_e2e", "Real cluster: kube-scheduler pods/s with and without the extender", table, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
