"""Real-cluster benchmark: does kube-scheduler, with the extender, bind pods where the plan put them?

    python -m bench.bench_agreement [--solver cpsat] [--time-limit 10] [--rounds 1]

A control plane with kube-controller-manager and kwok (`k8s/e2e/cluster.py`):
eleven kwok nodes over three zones with different grids, one of them a GPU
node tainted ``nvidia.com/gpu=present:NoSchedule`` with two
``nvidia.com/gpu``, and Deployments with the constraints kube-scheduler
enforces: zone topology spread (DoNotSchedule), hostname anti-affinity on
itself, zone affinity to another workload, node affinity (In, NotIn, Gt),
a GPU request with its toleration, a node selector, a ScheduleAnyway
spread. The ReplicaSet controller creates the pods for a scheduler profile
that is not running yet, so they wait while the planner maps the cluster
(`edgeplace.k8s.mapping.map_cluster`) and plans it (`edgeplace.optimizer.solve`);
then kube-scheduler starts with the extender serving that plan, and every pod
binds.

Agreement per workload and node class (nodes of one site alike in capacity,
labels other than the hostname, and taints: interchangeable for the plan):
sum over classes of min(planned, bound) replicas, as a share of the replicas.
"hard" are the workloads with a required Kubernetes rule (node affinity or
selector, a toleration-gated taint, pod (anti-)affinity, DoNotSchedule
spread, an extended resource); target 100 % there (a pod the plan puts where
kube-scheduler cannot bind is a bug) and >= 95 % overall. Also reported: pods
left pending, and the rule violations `edgeplace.policies.evaluate` finds in the
real bindings.

The figures go to docs/BENCHMARKS.md (section ``k8s_agreement``);
tests/e2e/test_agreement_e2e.py runs the same with a short solve and checks
the targets.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from bench.bench_k8s_e2e import load_cluster_module, scheduler_config

WAIT_S = 120.0
PROFILE = "edgeplace-agreement"
ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"
REGIONS = {"PL": 700.0, "DE": 380.0, "SE": 40.0}  # gCO2/kWh (REFERENCE.md orders of size)
ZONES = {"zone-waw": ("PL", "access"), "zone-ffm": ("DE", "metro"), "zone-sto": ("SE", "cloud")}
#: name -> zone, cpu, memory, labels, taints, extended resources, power [W idle, max]
NODES: dict[str, dict[str, Any]] = {
    **{f"waw-{i}": {"zone": "zone-waw", "cpu": "4", "memory": "8Gi", "labels": {"cores": "4"}, "power": (60, 150)}
       for i in (1, 2, 3)},
    **{f"ffm-{i}": {"zone": "zone-ffm", "cpu": "8", "memory": "16Gi", "labels": {"cores": "8"}, "power": (80, 220)}
       for i in (1, 2, 3)},
    "ffm-gpu": {"zone": "zone-ffm", "cpu": "16", "memory": "64Gi", "labels": {"cores": "16", "gpu": "a100"},
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                "extra": {"nvidia.com/gpu": "2"}, "power": (150, 600)},
    **{f"sto-{i}": {"zone": "zone-sto", "cpu": "16", "memory": "64Gi", "labels": {"cores": "16"}, "power": (115, 490)}
       for i in (1, 2, 3, 4)},
}
SPREAD_ZONE = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}
#: namespace/name -> replicas, cpu, spec fields of the pod template (besides containers), hard rule?
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "shop/web": {"replicas": 6, "cpu": "500m", "hard": True, "spec": {
        "topologySpreadConstraints": [{**SPREAD_ZONE, "labelSelector": {"matchLabels": {"app": "web"}}}]}},
    "shop/api": {"replicas": 4, "cpu": "1", "hard": True, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "api"}}, "topologyKey": HOST}]}}}},
    "shop/cache": {"replicas": 2, "cpu": "500m", "hard": True, "spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "api"}}, "topologyKey": ZONE}]}}}},
    "ml/train": {"replicas": 2, "cpu": "4", "gpu": 1, "hard": True, "spec": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]}]}]}}}}},
    "ml/etl": {"replicas": 3, "cpu": "2", "hard": True, "spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE, "operator": "NotIn", "values": ["zone-sto"]},
                                  {"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}},
    "edge/ingest": {"replicas": 3, "cpu": "500m", "hard": True, "spec": {"nodeSelector": {ZONE: "zone-waw"}}},
    "shop/worker": {"replicas": 6, "cpu": "1", "hard": False, "spec": {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": HOST, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "worker"}}}]}},
    # No edgeplace annotation at all: found by its owner references (edgeplace.k8s.identity).
    "shop/report": {"replicas": 2, "cpu": "1", "hard": False, "spec": {}, "annotate": False},
}
SITE_CONFIG: dict[str, Any] = {
    "name": "agreement", "horizon": {"slots": 2, "slot_minutes": 60},
    "regions": [{"id": r, "intensity_g_per_kwh": g} for r, g in REGIONS.items()],
    "sites": [{"id": z, "tier": tier, "region": region, "pue": 1.3} for z, (region, tier) in ZONES.items()],
}


def setup(api_client) -> None:
    """Nodes (kwok), namespaces and Deployments whose pods wait for the PROFILE scheduler.

    Pod templates carry `edgeplace.io/workload` unless their entry says `annotate: False`; the
    mapping finds every workload by its owner references either way."""
    from kubernetes import client

    e2e = load_cluster_module()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    for name, n in NODES.items():
        region = ZONES[n["zone"]][0]
        labels = {ZONE: n["zone"], "topology.kubernetes.io/region": region, "edgeplace.io/tier": ZONES[n["zone"]][1],
                  **n["labels"]}
        annotations = {"edgeplace.io/idle-w": str(n["power"][0]), "edgeplace.io/max-w": str(n["power"][1])}
        e2e.create_kwok_node(core, name, labels=labels, annotations=annotations, cpu=n["cpu"], memory=n["memory"],
                             extra_allocatable=n.get("extra"))
        if n.get("taints"):
            core.patch_node(name, {"spec": {"taints": n["taints"]}})
    for ns in sorted({k.split("/")[0] for k in DEPLOYMENTS}):
        core.create_namespace({"metadata": {"name": ns}})
    for key, d in DEPLOYMENTS.items():
        ns, name = key.split("/")
        requests = {"cpu": d["cpu"], "memory": "256Mi"}
        if d.get("gpu"):
            requests["nvidia.com/gpu"] = str(d["gpu"])
        annotations = {"edgeplace.io/workload": key} if d.get("annotate", True) else {}
        template = {"metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {"schedulerName": PROFILE, **d["spec"],
                             "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                             "resources": {"requests": requests, "limits": {k: v for k, v in requests.items()
                                                                                            if k == "nvidia.com/gpu"}}}]}}
        apps.create_namespaced_deployment(ns, {"metadata": {"name": name},
                                               "spec": {"replicas": d["replicas"], "selector": {"matchLabels": {"app": name}},
                                                        "template": template}})


def pods_of(api_client) -> list:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    return [p for ns in sorted({k.split("/")[0] for k in DEPLOYMENTS}) for p in core.list_namespaced_pod(ns).items
            if p.metadata.deletion_timestamp is None]


def wait_pods(api_client, done) -> list:
    """Wait until `done(pods)` holds for every Deployment pod; return the pods."""
    e2e = load_cluster_module()
    total = sum(d["replicas"] for d in DEPLOYMENTS.values())

    def check():
        pods = pods_of(api_client)
        return pods if len(pods) == total and all(done(p) for p in pods) else None

    return e2e.wait_for(check, WAIT_S, f"{total} pods", interval=0.5)


def node_class(node: dict) -> tuple:
    """What makes nodes interchangeable for the plan: site, capacity, labels (not the hostname), taints."""
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in (HOST, "kwok.x-k8s.io/node")}
    taints = tuple(sorted((t.get("key"), t.get("value"), t.get("effect")) for t in spec.get("taints") or []
                          if t.get("key", "").startswith(("nvidia.com", "edgeplace.io/dedicated"))))
    return (tuple(sorted(labels.items())), tuple(sorted((status.get("allocatable") or {}).items())), taints)


def agreement(scenario, plan_doc: dict, objects) -> dict[str, Any]:
    """Per workload: replicas, planned and bound classes; the agreement shares (module docstring)."""
    from edgeplace.k8s.mapping import placement_from_cluster

    cls = {n["metadata"]["name"]: node_class(n) for n in objects.nodes}
    placement = placement_from_cluster(scenario, objects)
    rows = []
    for w, wid in enumerate(scenario.workload_ids):
        planned: Counter = Counter()
        for node, k in plan_doc["workloads"][wid]["planned_nodes"].items():
            planned[cls[node]] += k
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        bound = Counter(cls[scenario.node_ids[int(i)]] for i in placement.column(0)[r0:r0 + n] if i >= 0)
        agree = sum((planned & bound).values())
        rows.append({"workload": wid, "hard": DEPLOYMENTS[wid]["hard"], "replicas": n, "bound": sum(bound.values()),
                     "on_planned_class": agree, "agreement": agree / n})
    return {"rows": rows, "placement": placement}


def run(cluster, api_client, solver: str = "cpsat", time_limit_s: float = 10.0) -> dict[str, Any]:
    """Set up, plan, bind and measure once (on a fresh LocalCluster with controller manager and kwok)."""
    from edgeplace.k8s.extender.metrics import REASONS
    from edgeplace.k8s.extender.server import ExtenderServer
    from edgeplace.k8s.extender.table import DecisionTable, build_plan_document
    from edgeplace.k8s.mapping import MappingOptions, map_cluster, parse_site_config, read_cluster
    from edgeplace.optimizer.solve import SolveOptions, solve
    from edgeplace.policies.evaluate import evaluate

    setup(api_client)
    wait_pods(api_client, lambda p: not p.spec.node_name)  # every replica created, none bound
    now = datetime.now(timezone.utc)
    mapped = map_cluster(read_cluster(api_client), parse_site_config(SITE_CONFIG), MappingOptions(now=now))
    started = time.perf_counter()
    plan = solve(mapped.scenario, SolveOptions(solver=solver, time_limit_s=time_limit_s, bound_time_limit_s=0.0))
    plan_s = time.perf_counter() - started
    doc = build_plan_document(mapped.scenario, plan.placement, now=now, evaluation=plan.evaluation)
    with ExtenderServer(DecisionTable.from_document(doc)) as server:
        cluster.restart_scheduler(scheduler_config(server.url, [PROFILE], high_qps=True))
        wait_pods(api_client, lambda p: p.spec.node_name or any(
            c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or []))
        decisions = {reason: server.metrics.registry.get_sample_value(
            "edgeplace_extender_decisions_total", {"verb": "filter", "reason": reason}) or 0.0
            for reason in REASONS}
    objects = read_cluster(api_client)
    result = agreement(mapped.scenario, doc, objects)
    bindings = evaluate(mapped.scenario, result["placement"])
    rows = result["rows"]
    hard = [r for r in rows if r["hard"]]
    pending = sum(1 for p in pods_of(api_client) if not p.spec.node_name)
    return {"rows": rows, "plan_status": plan.status, "plan_s": plan_s, "plan_violations": len(plan.evaluation.violations),
            "binding_violations": [v.message for v in bindings.violations], "pending": pending,
            "hard_agreement": sum(r["on_planned_class"] for r in hard) / sum(r["replicas"] for r in hard),
            "overall_agreement": sum(r["on_planned_class"] for r in rows) / sum(r["replicas"] for r in rows),
            "filter_calls": decisions, "scenario": mapped.scenario}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--solver", choices=("cpsat", "milp", "greedy"), default="cpsat")
    parser.add_argument("--time-limit", type=float, default=10.0, help="solver time limit [s] (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh clusters to measure (default 1)")
    args = parser.parse_args(argv)

    import os

    import pandas as pd

    from bench.common import write_section

    e2e = load_cluster_module()
    per_round, runs = [], []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        with e2e.LocalCluster(controller_manager=True, kwok=True) as cluster:
            out = run(cluster, cluster.api_client(), args.solver, args.time_limit)
        runs.append(out)
        for row in out["rows"]:
            per_round.append({"round": r + 1, **row})
        print(f"round {r + 1}: hard {out['hard_agreement']:.1%}, overall {out['overall_agreement']:.1%}, "
              f"pending {out['pending']}, binding violations {len(out['binding_violations'])}, "
              f"plan {out['plan_status']} in {out['plan_s']:.1f} s (load average {load:.1f})")
    table = pd.DataFrame(per_round)
    summary = defaultdict(list)
    for out in runs:
        summary["hard"].append(out["hard_agreement"])
        summary["overall"].append(out["overall_agreement"])
    notes = (f"kube-scheduler v{e2e.k8s_version().lstrip('v')} with the extender (filter + prioritize, nodeCacheCapable), "
             f"kube-controller-manager and kwok on loopback, {len(NODES)} nodes in 3 zones (one GPU node, tainted), "
             f"{len(DEPLOYMENTS)} Deployments, {sum(d['replicas'] for d in DEPLOYMENTS.values())} pods; plan by "
             f"{args.solver} ({args.time_limit:g} s) from the mapped cluster. Agreement = share of replicas bound on a node "
             f"of the class the plan chose (module docstring of bench/bench_agreement.py). "
             f"Hard-constraint workloads: {', '.join(f'{x:.1%}' for x in summary['hard'])}; overall: "
             f"{', '.join(f'{x:.1%}' for x in summary['overall'])} (targets 100 % and 95 %); pods pending: "
             f"{', '.join(str(o['pending']) for o in runs)}; rule violations in the real bindings: "
             f"{', '.join(str(len(o['binding_violations'])) for o in runs)}. Off the planned class: "
             + ("; ".join(sorted({f"{r['workload']} {r['replicas'] - r['on_planned_class']} of {r['replicas']}"
                                  for o in runs for r in o['rows'] if r['on_planned_class'] < r['replicas']})) or "none")
             + f". The extender's filter calls by reason (last round, reasons seen): "
             f"{ {k: v for k, v in runs[-1]['filter_calls'].items() if v} }; every reason but \"plan\" is a neutral "
             "answer, after which kube-scheduler's own scores pick among the allowed nodes.")
    write_section("k8s_agreement", "Real cluster: plan-vs-bind agreement with scheduling constraints", table, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
