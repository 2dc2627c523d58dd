"""Real-cluster benchmark: kube-scheduler's pods/s with and without the edgeplace extender.

    python -m bench.bench_k8s_e2e [--nodes 9,1000] [--pods 1000] [--rounds 3]

Starts the e2e control plane (`k8s/e2e/cluster.py`; binaries from
`k8s/e2e/build.sh`) once per cluster size: the small cloud-edge topology of
`tests/e2e/test_extender_e2e.py` (`setup_topology`, 9 nodes) or `n`
generated nodes (`setup_large_topology`). It plans the cluster (greedy),
serves the plan from the extender in its own process with mutual TLS
(`ExtenderProcess`, certificates from deploy/make-certs.sh; one per set of
extender options the variants use), and measures scheduling throughput side by side: a
warm-up run, then per round one run without the extender and one per way of
wiring it (`Variant`: filter + prioritize, prioritize only, compact replies,
a filter that keeps only the best nodes, managedResources,
percentageOfNodesToScore 100, and the chart's steering policy with its marks
for the extender: only the pods it does not steer, or every pod, the two
modes of the chart's default by cluster size; or with no marks and every pod
sent, as `steering.extenderCalls: all` wires it), in an order rotated by one
each round. The pods belong to a Deployment's ReplicaSet and carry no
edgeplace annotation.

How it measures (`measure_throughput`): the pods are created for a
scheduler profile that is not running yet, so they all wait; then
kube-scheduler is restarted with that profile and the rate is taken from the
``Scheduled`` events' microsecond ``eventTime``: (N - 1) / (last - first).
Pod creation and scheduler start-up are outside the measured interval; while
kube-scheduler works the driver only asks whether a pod is still unbound
(one item per poll). The scheduler's client rate limit (50 QPS by default)
would cap both runs alike, so both configurations raise it
(``clientConnection.qps/burst``). etcd, kube-apiserver, kube-scheduler and the
extender share the 2 cores as kubelet would share them among their pods
(`CpuShares`: CPU weights from their requests; ``--cpu-weights equal`` gives
every process the kernel's default weight instead). Each run
also records the share of pods bound on the plan's nodes, the CPU time per
pod of kube-scheduler (since its start) and of the extender process, and the
extender's calls per pod and mean time per call. On the 9-node topology
`agreement` then schedules every replica of the 7 Deployments once per
variant, and once more under pressure (only the dedicated pool free).

The figures go to docs/BENCHMARKS.md (section ``k8s_e2e``) through
`bench.common.write_section`; the e2e test prints them without writing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import hashlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from edgeplace.k8s.steering import EVERY_POD, UNSTEERED, UNSTEERED_RESOURCE  # constants only: kubernetes is imported where used

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


def template_hash(workload: str) -> str:
    """The pod-template-hash of a Deployment's ReplicaSet (deterministic here; the Deployment
    controller hashes the template)."""
    return hashlib.sha256(workload.encode()).hexdigest()[:10]


def replicaset_name(workload: str) -> str:
    return f"{workload.split('/')[1]}-{template_hash(workload)}"


def setup_topology(api_client) -> None:
    """Create the Nodes, Namespaces and Deployments (with their ReplicaSets; no pods yet)."""
    from kubernetes import client

    e2e = load_cluster_module()
    core = client.CoreV1Api(api_client)
    for name, spec in NODES.items():
        labels = {"edgeplace.io/site": spec["site"], "topology.kubernetes.io/region": spec["region"],
                  "edgeplace.io/tier": spec["tier"], **spec.get("labels", {})}
        e2e.create_node(core, name, labels=labels, cpu=spec["cpu"], memory=spec["memory"], pods=MAX_PODS)
        core.patch_node(name, {"metadata": {"annotations": spec["annotations"]}})
    for ns, spec in NAMESPACES.items():
        core.create_namespace({"metadata": {"name": ns, "annotations": spec.get("annotations", {})}})
    for key, spec in DEPLOYMENTS.items():
        annotations = {}
        if spec["sla_ms"] is not None:
            annotations = {"edgeplace.io/sla-ms": str(spec["sla_ms"]), "edgeplace.io/users": spec["users"]}
        create_deployment(api_client, key, spec["replicas"], spec["cpu"], annotations)


def create_deployment(api_client, workload: str, replicas: int, cpu: str, annotations: dict[str, str]) -> None:
    """A Deployment and the ReplicaSet its controller would make (no controller-manager here)."""
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    ns, name = workload.split("/")
    template = pod_template(workload, cpu)
    dep = apps.create_namespaced_deployment(ns, {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}})
    rs_template = copy.deepcopy(template)
    rs_template["metadata"]["labels"]["pod-template-hash"] = template_hash(workload)
    apps.create_namespaced_replica_set(ns, {
        "metadata": {"name": replicaset_name(workload), "labels": rs_template["metadata"]["labels"],
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                          "uid": dep.metadata.uid, "controller": True}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": rs_template["metadata"]["labels"]},
                 "template": rs_template}})


def pod_template(workload: str, cpu: str) -> dict[str, Any]:
    """A pod template without edgeplace annotations: the extender finds the workload from the owner."""
    return {"metadata": {"labels": {"app": workload.split("/")[1]}},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}}


_RS_UID: dict[tuple[int, str], str] = {}


def make_pod(api_client, workload: str, index: int, scheduler_name: str | None = None,
             name: str | None = None, labels: dict[str, str] | None = None, cpu: str | None = None,
             memory: str | None = None, requests: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod of a Deployment's ReplicaSet, as the ReplicaSet controller would create it
    (owner reference, pod-template-hash label, the template's annotations: none)."""
    from kubernetes import client

    ns, dname = workload.split("/")
    key = (id(api_client), workload)
    if key not in _RS_UID:
        _RS_UID[key] = client.AppsV1Api(api_client).read_namespaced_replica_set(replicaset_name(workload), ns).metadata.uid
    spec = DEPLOYMENTS.get(workload, {"cpu": "500m"})
    body = copy.deepcopy(pod_template(workload, spec["cpu"]))
    body["metadata"].update(name=name or f"{dname}-{index}", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset_name(workload), "uid": _RS_UID[key],
         "controller": True}])
    body["metadata"]["labels"].update({"pod-template-hash": template_hash(workload), **(labels or {})})
    container = body["spec"]["containers"][0]["resources"]
    container["requests"].update({k: v for k, v in (("cpu", cpu), ("memory", memory)) if v})
    if requests:  # extended resources: requests and limits must be equal
        container["requests"].update(requests)
        container["limits"] = dict(requests)
    if scheduler_name:
        body["spec"]["schedulerName"] = scheduler_name
    return body


# ---------------------------------------------------------------------------
# 1,000 nodes

LARGE_REGIONS = {"PL": 700.0, "DE": 380.0, "SE": 40.0}
LARGE_WORKLOAD = "shop/web"


def setup_large_topology(api_client, n_nodes: int) -> dict[str, Any]:
    """`n_nodes` nodes over 20 sites in three grids (a quarter of them 16-core cloud servers in
    SE, the rest 4-core edge boxes, every other one of which cannot power down), the
    namespaces, and the Deployment shop/web (6 replicas). Returns the site config.

    The nodes are plain API objects (`create_node`), as for the 9-node topology: kwok would
    need kube-controller-manager to lift the not-ready taints, and its ReplicaSet controller
    would delete the benchmark's pods (owned by a ReplicaSet of 6 replicas)."""
    from kubernetes import client

    e2e = load_cluster_module()
    core = client.CoreV1Api(api_client)
    regions = list(LARGE_REGIONS)

    def node(i: int) -> None:
        cloud = i % 4 == 0
        site = f"site-{i % 20:02d}"
        region = "SE" if cloud else regions[i % 2]
        labels = {"edgeplace.io/site": site if not cloud else f"cloud-{i % 5}", "topology.kubernetes.io/region": region,
                  "edgeplace.io/tier": "cloud" if cloud else "access"}
        annotations = ({"edgeplace.io/idle-w": "115", "edgeplace.io/max-w": "490", "edgeplace.io/pue": "1.1"} if cloud
                       else {"edgeplace.io/idle-w": "60", "edgeplace.io/max-w": "150", "edgeplace.io/pue": "1.8"})
        if i % 2:  # half the edge boxes cannot be powered remotely: they stay on, and schedulable
            annotations["edgeplace.io/can-power-down"] = "false"
        name, cpu, memory = f"n-{i:04d}", "16" if cloud else "4", "64Gi" if cloud else "8Gi"
        e2e.create_node(core, name, labels=labels, cpu=cpu, memory=memory, pods=MAX_PODS)
        core.patch_node(name, {"metadata": {"annotations": annotations}})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(node, range(n_nodes)))
    for ns in NAMESPACES:
        core.create_namespace({"metadata": {"name": ns}})
    create_deployment(api_client, LARGE_WORKLOAD, 6, "500m", {})
    return {"name": "bench-large", "horizon": {"slots": 4, "slot_minutes": 60},
            "regions": [{"id": r, "intensity_g_per_kwh": g} for r, g in LARGE_REGIONS.items()]}


# ---------------------------------------------------------------------------
# CPU shares as kubelet gives them

#: CPU requests [millicores] of the control plane's pods: kubeadm's static pods (its manifests
#: request these for kube-apiserver, kube-controller-manager, kube-scheduler and etcd). The
#: extender's comes from the chart (`extender.resources.requests.cpu`, `chart_cpu_request`).
KUBEADM_REQUESTS_MILLICORES = {"etcd": 100, "kube-apiserver": 250, "kube-controller-manager": 200, "kube-scheduler": 100}
CPU_WEIGHTS = ("requests", "equal")
_CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


def chart_cpu_request(component: str = "extender") -> int:
    """`<component>.resources.requests.cpu` of the chart's values.yaml [millicores]."""
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "edgeplace" / "values.yaml").read_text())
    cpu = str(values[component]["resources"]["requests"]["cpu"])
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


class CpuShares:
    """Each measured process in a CPU cgroup weighted as kubelet weighs its pod.

    On a control-plane node kubelet puts every pod in a cgroup whose CPU weight
    follows its requests (cpu.shares = millicores x 1024 / 1000, cgroup v1), under
    the node's pods cgroup (shares of the allocatable CPU). A cluster component
    waiting for a core is served by those weights; the bench's processes would
    otherwise all weigh the same (the kernel's autogroup gives every session one
    share). With ``mode="requests"`` (the default) etcd, kube-apiserver,
    kube-scheduler and the extender get their pods' weights: kubeadm's requests
    and the chart's. The driver (this process: it creates the pods and polls for
    them) stays outside, as it would run off the control plane. ``"equal"`` leaves
    every process as the kernel puts it. Needs a writable cgroup v1 ``cpu``
    hierarchy (root); without one, `available` is False and nothing moves."""

    problem = ""

    def __init__(self, mode: str = "requests", root: Path = _CGROUP_CPU):
        if mode not in CPU_WEIGHTS:
            raise ValueError(f"cpu weights: {mode!r}; choose one of {', '.join(CPU_WEIGHTS)}")
        self.mode, self.root = mode, root
        self.requests = {**KUBEADM_REQUESTS_MILLICORES, "extender": chart_cpu_request()}
        self.parent = root / f"edgeplace-bench-{os.getpid()}"
        self.placed: set[str] = set()
        self.available = False
        if mode == "requests":
            try:
                self.parent.mkdir(exist_ok=True)
                (self.parent / "cpu.shares").write_text(str(os.cpu_count() * 1024))  # the allocatable CPU
                self.available = True
            except OSError as exc:  # not root, no cgroup v1 cpu hierarchy, read-only
                self.problem = f"{root} not writable ({exc.strerror})"

    def place(self, component: str, pid: int) -> None:
        """Move process `pid` and its children into `component`'s cgroup."""
        if not self.available:
            return
        group = self.parent / component
        if not group.exists():
            group.mkdir()
            (group / "cpu.shares").write_text(str(max(2, self.requests[component] * 1024 // 1000)))
        for p in (pid, *_children(pid)):
            try:
                (group / "cgroup.procs").write_text(str(p))
            except ProcessLookupError:  # exited meanwhile
                pass
        self.placed.add(component)

    def describe(self) -> str:
        """What the weights were, for the bench's notes."""
        if not self.available:
            why = f" ({self.problem})" if self.problem else ""
            return f"every process at the kernel's default weight, one autogroup per session{why}"
        return ("each component in a CPU cgroup weighted as kubelet weighs its pod, cpu.shares from its requests ("
                + ", ".join(f"{name} {self.requests[name]}m" for name in sorted(self.placed))
                + f": kubeadm's static pods, the chart's extender) under one cgroup of the {os.cpu_count()} cores' "
                  "shares, the driver outside")

    def close(self) -> None:
        """Move what is left back to the root cgroup and remove the cgroups."""
        if not self.available or not self.parent.exists():
            return
        groups = [*(g for g in self.parent.iterdir() if g.is_dir()), self.parent]  # children first
        for group in groups:
            for p in (group / "cgroup.procs").read_text().split():
                try:
                    (self.root / "cgroup.procs").write_text(p)
                except ProcessLookupError:
                    pass
        for group in groups:
            group.rmdir()


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (/proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


# ---------------------------------------------------------------------------
# TLS and the extender process

#: Pods per node (kubelet's default is 110): room for every pod of a run on one node, so that
#: the share on the plan's nodes measures the extender's steering, not the nodes' pod limit.
MAX_PODS = "1100"
#: The extended resource of the `managedResources` variants (ignoredByScheduler: the scheduler
#: does not count it; pods that request it are the ones the extender is asked about): the one the
#: chart's steering policy marks pods with.
MANAGED_RESOURCE = UNSTEERED_RESOURCE


@dataclass(frozen=True)
class Certs:
    """The files of deploy/make-certs.sh: the extender's (server/) and kube-scheduler's (client/)."""

    root: Path

    @classmethod
    def make(cls, folder: Path) -> "Certs":
        subprocess.run(["bash", str(ROOT / "deploy" / "make-certs.sh"), str(folder)], check=True, capture_output=True,
                       timeout=120)
        return cls(folder)

    def server_context(self):
        from edgeplace.k8s.extender.server import make_ssl_context

        server = self.root / "server"
        return make_ssl_context(server / "tls.crt", server / "tls.key", client_ca_file=server / "ca.crt")

    def server_args(self) -> list[str]:
        server = self.root / "server"
        return ["--tls-cert", str(server / "tls.crt"), "--tls-key", str(server / "tls.key"),
                "--client-ca", str(server / "ca.crt")]


@dataclass(frozen=True)
class Variant:
    """One way to wire the extender into kube-scheduler (module docstring)."""

    name: str
    filter: bool = True
    compact: bool = False  # the extender's --compact-replies
    best: bool = False  # the extender's --filter-keeps best
    managed: bool = False  # managedResources: only pods requesting MANAGED_RESOURCE are sent
    score_all: bool = False  # percentageOfNodesToScore: 100 (the extender sees every feasible node)
    #: Steering at admission (edgeplace.k8s.steering): the chart's steering policy bound during the
    #: run and the shipped profile's plugin weights. `mark` says which pods the policy marks for
    #: the extender (with MANAGED_RESOURCE): UNSTEERED (none of the bench's planned pods),
    #: EVERY_POD (as the planner asks from `steering.DEFAULT_EVERY_POD_FROM` nodes on), or None
    #: (no pod: with `managed` off kube-scheduler sends every pod, as the chart's
    #: `steering.extenderCalls: all` wires it).
    steer: bool = False
    mark: str | None = UNSTEERED

    @property
    def pod_requests(self) -> dict[str, str] | None:
        """Extra requests of the variant's pods: the managed resource when managedResources should
        send them to the extender (a steering variant's pods get it from the policy, or not)."""
        return {MANAGED_RESOURCE: "1"} if self.managed and not self.steer else None

    @property
    def server(self) -> tuple[bool, bool]:
        """The options of the extender process serving this variant: (compact, best)."""
        return self.compact, self.best


FULL = Variant("filter + prioritize")
VARIANTS = (
    FULL,
    Variant("prioritize only", filter=False),
    Variant("compact replies", compact=True),
    Variant("prioritize only, compact", filter=False, compact=True),
    Variant("filter keeps the best, compact", compact=True, best=True),
    Variant("managedResources", managed=True),
)
#: Last: its agreement run leaves the cluster's isolation native (`native_isolation`). The ways
#: the chart runs: by default (`steering.extenderCalls: marked`) the extender is called only for
#: the pods steering does not cover (STEER), and from `steering.DEFAULT_EVERY_POD_FROM` nodes on the
#: planner marks every pod (STEER_BEST); with `extenderCalls: all` kube-scheduler sends every pod,
#: unmarked (STEER_ALL): a marked pod costs kube-scheduler's NodeResourcesFit a resource-name
#: validation (a regular expression) per node (docs/EXTENDER.md "Throughput").
STEER = Variant("steering at admission, extender for unplanned pods", managed=True, compact=True, best=True,
                score_all=True, steer=True)
STEER_BEST = Variant("steering at admission + filter keeps the best, compact", managed=True, compact=True, best=True,
                     score_all=True, steer=True, mark=EVERY_POD)
STEER_ALL = Variant("steering at admission, every pod to the extender unmarked", compact=True, best=True,
                    score_all=True, steer=True, mark=None)
VARIANTS += (STEER, STEER_BEST, STEER_ALL)
#: At 1,000 nodes kube-scheduler hands the extender a 42 % sample of the feasible nodes
#: (numFeasibleNodesToFind) unless percentageOfNodesToScore is 100. managedResources changes
#: nothing when every pod is the plan's (measured at 9 nodes).
LARGE_VARIANTS = VARIANTS[:4] + (
    Variant("filter + prioritize, all nodes", score_all=True),
    Variant("compact replies, all nodes", compact=True, score_all=True),
    Variant("prioritize only, compact, all nodes", filter=False, compact=True, score_all=True),
    Variant("filter keeps the best, compact, all nodes", compact=True, best=True, score_all=True),
    STEER,
    Variant("steering at admission, default sampling", managed=True, steer=True),
    STEER_BEST,
    STEER_ALL,
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far [s] (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The CPU time of some processes, sampled every SAMPLE_S on a thread from creation to `stop`,
    so that what each spent between two moments (the first and the last Scheduled event) can be
    read afterwards: `between` interpolates between the samples (CPU time has 10 ms ticks)."""

    SAMPLE_S = 0.05

    def __init__(self, pids: dict[str, int]):
        import threading

        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.samples.append((time.time(), {name: cpu_seconds(pid) for name, pid in self.pids.items()}))

    def _run(self) -> None:
        while not self._stop.wait(self.SAMPLE_S):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds of each process from `start` to `end` (Unix times within the samples)."""
        import numpy as np

        times = np.array([t for t, _ in self.samples])
        return {name: float(np.diff(np.interp([start, end], times, [cpu[name] for _, cpu in self.samples]))[0])
                for name in self.pids}


#: The control plane has settled when etcd and kube-apiserver together use less than this share
#: of one core over SETTLE_WINDOW_S (their idle level here: 2-5 %).
SETTLE_CORES = 0.15
SETTLE_WINDOW_S = 0.5
SETTLE_MAX_S = 20.0


def settle(pids) -> float:
    """Wait until the processes `pids` are near idle (SETTLE_CORES over SETTLE_WINDOW_S) or
    SETTLE_MAX_S has passed; the seconds waited. Pod creation and the previous run's deletions
    leave work behind (the policy's admission of the last requests, watch fan-out, etcd's
    writes): measured, it would be charged to whichever configuration runs next."""
    pids = list(pids)
    start = time.perf_counter()
    while time.perf_counter() - start < SETTLE_MAX_S:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(SETTLE_WINDOW_S)
        if sum(cpu_seconds(pid) for pid in pids) - before < SETTLE_CORES * SETTLE_WINDOW_S:
            break
    return time.perf_counter() - start


def scheduler_config(extender_url: str | None, profiles: list[str] | None = None, high_qps: bool = False,
                     certs: Certs | None = None, variant: Variant = FULL) -> dict[str, Any]:
    """deploy/kube-scheduler-config.yaml with the extender at `extender_url` (None: no extender),
    the given profiles, the kubeconfig left to LocalCluster, and the client certificate of
    `certs` (an http:// URL drops TLS)."""
    config = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    config.pop("clientConnection", None)
    config.pop("percentageOfNodesToScore", None)  # the variant says (stock kube-scheduler without it)
    if high_qps:
        config["clientConnection"] = {"qps": 5000, "burst": 5000}
    shipped_plugins = config["profiles"][0].get("plugins")
    if profiles:
        config["profiles"] = [{"schedulerName": p} for p in profiles]
        if variant.steer and extender_url is not None:
            for profile in config["profiles"]:
                profile["plugins"] = copy.deepcopy(shipped_plugins)
    if extender_url is None:
        config.pop("extenders", None)
        return config
    if variant.score_all:
        config["percentageOfNodesToScore"] = 100
    for ext in config["extenders"]:
        ext["urlPrefix"] = extender_url
        if not variant.filter:
            ext.pop("filterVerb")
        # The shipped file calls the extender for marked pods only (its managedResources).
        ext.pop("managedResources", None)
        if variant.managed:
            ext["managedResources"] = [{"name": MANAGED_RESOURCE, "ignoredByScheduler": True}]
        if extender_url.startswith("https://"):
            if certs is None:
                raise ValueError("an https:// extender needs the client certificate (certs)")
            client_dir = certs.root / "client"
            ext["tlsConfig"].update(caFile=str(client_dir / "ca.crt"), certFile=str(client_dir / "tls.crt"),
                                    keyFile=str(client_dir / "tls.key"))
        else:
            ext["enableHTTPS"] = False
            ext.pop("tlsConfig", None)
    return config


class ExtenderProcess:
    """`python -m edgeplace.k8s.extender.server` serving a plan file with mutual TLS, in its own
    process as in a cluster (the driver's API calls do not share its interpreter)."""

    def __init__(self, plan: Path, certs: Certs, compact: bool, log: Path, best: bool = False):
        e2e = load_cluster_module()
        self.port = e2e.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._log = open(log, "ab")
        argv = [sys.executable, "-m", "edgeplace.k8s.extender.server", "--plan", str(plan), "--port", str(self.port),
                *certs.server_args(), *(["--compact-replies"] if compact else []),
                *(["--filter-keeps", "best"] if best else [])]
        # Its own session, as every cluster process of the harness (k8s/e2e/cluster.py): with the
        # kernel's autogroup scheduling a session shares one CPU weight, and the driver's API calls
        # must not take the extender's share (in a cluster it runs in its own pod).
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._client = ssl.create_default_context(cafile=str(certs.root / "ca.crt"))
        self._client.check_hostname = False  # the certificate names the Service, not 127.0.0.1
        self._client.load_cert_chain(str(certs.root / "client" / "tls.crt"), str(certs.root / "client" / "tls.key"))

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=self._client) as resp:
                return resp.status == 200

        e2e.wait_for(healthy, WAIT_S, f"the extender on {self.url} to load its plan")

    def server_seconds(self) -> tuple[float, float]:
        """(sum [s], count) of the extender's request histogram over the verbs, from its /metrics."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10, context=self._client) as resp:
            text = resp.read().decode()
        total = count = 0.0
        for line in text.splitlines():
            for verb in ("filter", "prioritize", "preempt"):
                if line.startswith(f'edgeplace_extender_request_duration_seconds_sum{{verb="{verb}"}}'):
                    total += float(line.rsplit(" ", 1)[1])
                elif line.startswith(f'edgeplace_extender_request_duration_seconds_count{{verb="{verb}"}}'):
                    count += float(line.rsplit(" ", 1)[1])
        return total, count

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log.close()


#: The admission policy kinds of the chart.
ADMISSION_POLICY_KINDS = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy",
                          "ValidatingAdmissionPolicyBinding")


def chart_objects(name: str, kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The objects named `name` (of `kinds`, default any) in the committed deploy/manifests/edgeplace.yaml
    (the chart rendered for Kubernetes 1.37), in their order there."""
    return [d for d in yaml.safe_load_all((ROOT / "deploy/manifests/edgeplace.yaml").read_text())
            if d and d["metadata"]["name"] == name and (kinds is None or d["kind"] in kinds)]


class Steering:
    """The chart's steering admission policy (from the committed deploy/manifests/edgeplace.yaml)
    with the parameters of a plan while a `steer` variant runs; empty parameters (the policy
    changes no pod) for the other runs.

    The binding stays: with no bound ConfigMap-parameter policy left, kube-apiserver v1.37.2 stops
    its parameter informer for good (kubernetes/kubernetes#130887; the chart's param anchors,
    docs/KUBERNETES.md "Policy parameters across reinstalls"), and a binding created again reads the
    old parameters (measured: the old ``extender`` value stayed for 60 s)."""

    NAMESPACE = "edgeplace-system"

    def __init__(self, api_client, doc: dict[str, Any], workload: str):
        from kubernetes import client, utils

        from edgeplace.k8s import steering

        self.api, self.workload, self.doc = api_client, workload, doc
        core = client.CoreV1Api(api_client)
        core.create_namespace({"metadata": {"name": self.NAMESPACE}})
        [policy] = chart_objects("edgeplace-steering", ("MutatingAdmissionPolicy",))
        # Every run's scheduler profile (bench-N) carries the managedResources stanza of the
        # default scheduler's configuration: the policy may mark their pods too.
        [wired] = [v for v in policy["spec"]["variables"] if v["name"] == "wired"]
        wired["expression"] = "true"
        [binding] = chart_objects("edgeplace-steering", ("MutatingAdmissionPolicyBinding",))
        utils.create_from_dict(api_client, policy)
        steering.publish(api_client, {}, self.NAMESPACE)
        utils.create_from_dict(api_client, binding)
        nodes = [api_client.sanitize_for_serialization(n) for n in core.list_node().items]
        self.hostnames = steering.node_hostnames(nodes)
        self._probes = 0

    def _probe(self) -> tuple[bool, bool]:
        """(steered, marked): whether a new pod of the workload gets the plan's preferred term, and
        the mark for the extender (the pod is deleted again)."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        self._probes += 1
        body = make_pod(self.api, self.workload, 0, scheduler_name="nobody", name=f"steer-probe-{self._probes}")
        pod = core.create_namespaced_pod(self.workload.split("/")[0], body)
        core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        aff = pod.spec.affinity
        steered = bool(aff and aff.node_affinity and aff.node_affinity.preferred_during_scheduling_ignored_during_execution)
        return steered, MANAGED_RESOURCE in (pod.spec.containers[0].resources.limits or {})

    def on(self, mark: str | None) -> None:
        """The plan's parameters with `mark` (`steering.data`: which pods are marked for the
        extender); returns once a probe pod is steered and marked as asked."""
        from edgeplace.k8s import steering

        params, warnings = steering.data(self.doc, self.hostnames, mark)
        if warnings:
            raise RuntimeError("steering parameters: " + "; ".join(warnings))
        steering.publish(self.api, params, self.NAMESPACE)
        load_cluster_module().wait_for(lambda: self._probe() == (True, mark == EVERY_POD), WAIT_S,
                                       "the steering policy to take effect")

    def off(self) -> None:
        from edgeplace.k8s import steering

        steering.publish(self.api, {}, self.NAMESPACE)
        load_cluster_module().wait_for(lambda: self._probe() == (False, False), WAIT_S, "the steering policy to stop")


# ---------------------------------------------------------------------------
# Measuring


def create_pods(api_client, namespace: str, bodies: list[dict[str, Any]]) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: core.create_namespaced_pod(namespace, b), bodies))


def measure_throughput(cluster, api_client, namespace: str, workload: str, n_pods: int, profile: str,
                       extender_url: str | None, certs: Certs | None = None, variant: Variant = FULL,
                       planned: set[str] | None = None, extender_pid: int | None = None,
                       shares: CpuShares | None = None) -> dict[str, Any]:
    """Schedule `n_pods` pending pods with a fresh scheduler profile; pods/s from the Scheduled
    events, the share bound on a node in `planned` (the plan's nodes of the workload), and the
    CPU time kube-scheduler (since its start) and the extender process (`extender_pid`, during
    the run) spent per pod."""
    from kubernetes import client

    e2e = load_cluster_module()
    core, events = client.CoreV1Api(api_client), client.EventsV1Api(api_client)
    # Small requests, so that capacity never limits the run: it measures the scheduling path.
    bodies = [make_pod(api_client, workload, i, scheduler_name=profile, name=f"{profile}-{i}",
                       labels={"edgeplace-bench": profile}, cpu="10m", memory="16Mi", requests=variant.pod_requests)
              for i in range(n_pods)]
    created = time.perf_counter()
    create_pods(api_client, namespace, bodies)
    create_s = time.perf_counter() - created
    names = {b["metadata"]["name"] for b in bodies}
    control_plane = {name: cluster._procs[name].popen.pid for name in ("kube-apiserver", "etcd")}
    settle_s = settle(control_plane.values())
    started = time.perf_counter()
    extender_cpu = cpu_seconds(extender_pid) if extender_pid else 0.0
    cluster.restart_scheduler(scheduler_config(extender_url, ["default-scheduler", profile], high_qps=True,
                                               certs=certs, variant=variant))
    if shares is not None:
        shares.place("kube-scheduler", cluster._procs["kube-scheduler"].popen.pid)
    sampler = CpuSampler({**control_plane, "kube-scheduler": cluster._procs["kube-scheduler"].popen.pid})

    def all_bound() -> bool:
        # While kube-scheduler works, ask only whether one pod is still unbound (limit 1): listing
        # and decoding all the pods every poll cost the driver ~0.5 s of CPU on the 2 cores the
        # measured components share.
        unbound = core.list_namespaced_pod(namespace, label_selector=f"edgeplace-bench={profile}",
                                           field_selector="spec.nodeName=", limit=1)
        return not unbound.items

    e2e.wait_for(all_bound, WAIT_S * max(1, n_pods // 500), f"{n_pods} pods of profile {profile} to be bound",
                 interval=0.5)
    wall = time.perf_counter() - started
    sampler.stop()
    scheduler_cpu = cpu_seconds(cluster._procs["kube-scheduler"].popen.pid)
    extender_cpu = cpu_seconds(extender_pid) - extender_cpu if extender_pid else 0.0
    pods = core.list_namespaced_pod(namespace, label_selector=f"edgeplace-bench={profile}").items
    bound = {p.metadata.name: p.spec.node_name for p in pods if p.spec.node_name}
    # What one of the run's pods weighs as JSON (steering's terms make it larger).
    pod_bytes = len(json.dumps(api_client.sanitize_for_serialization(pods[0]))) if pods else 0

    def scheduled_events():
        items = events.list_namespaced_event(namespace, field_selector="reason=Scheduled").items
        times = [e.event_time for e in items if e.regarding and e.regarding.name in names and e.event_time]
        return times if len(times) == n_pods else None

    times = sorted(e2e.wait_for(scheduled_events, WAIT_S, f"Scheduled events of profile {profile}"))
    span = (times[-1] - times[0]).total_seconds()
    in_span = sampler.between(times[0].timestamp(), times[-1].timestamp())
    on_plan = sum(node in planned for node in bound.values()) / n_pods if planned is not None else float("nan")
    return {"pods": n_pods, "pods_per_s": (n_pods - 1) / span if span > 0 else float("inf"),
            "created_per_s": n_pods / create_s, "settle_s": settle_s, "pod_bytes": pod_bytes,
            "span_s": span, "wall_s": wall, "on_planned_nodes": on_plan, "load_1min": os.getloadavg()[0],
            "scheduler_cpu_ms_per_pod": scheduler_cpu / n_pods * 1000, "extender_cpu_ms_per_pod": extender_cpu / n_pods * 1000,
            **{f"{short}_span_cpu_ms_per_pod": in_span[name] / (n_pods - 1) * 1000
               for short, name in (("scheduler", "kube-scheduler"), ("apiserver", "kube-apiserver"), ("etcd", "etcd"))}}


def compare(cluster, api_client, namespace: str, workload: str, extender_url: str, n_pods: int = 200,
            rounds: int = 1, certs: Certs | None = None, variants: tuple[Variant, ...] = (FULL,),
            urls: dict[tuple[bool, bool], str] | None = None, planned: set[str] | None = None,
            servers: dict[tuple[bool, bool], "ExtenderProcess"] | None = None,
            steering: Steering | None = None, shares: CpuShares | None = None) -> list[dict[str, Any]]:
    """A warm-up run (not counted), then per round one run without the extender and one per
    variant, the order rotated by one each round (no configuration always runs first); one
    row per run. `urls` maps a variant's `server` options to the extender serving them
    (default: `extender_url`), `servers` to the process serving it (then each row has the
    extender's own mean time per call, `server_ms`). `steering` is switched on for the runs of
    a `steer` variant."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    rows = []
    order: list[Variant | None] = [None, *variants]
    runs = [(0, None)] + [(r + 1, v) for r in range(rounds) for v in order[r % len(order):] + order[:r % len(order)]]
    for i, (run, variant) in enumerate(runs):
        profile = f"bench-{i}"
        url = None if variant is None else (urls or {}).get(variant.server, extender_url)
        server = None if variant is None or servers is None else servers[variant.server]
        before = server.server_seconds() if server else (0.0, 0.0)
        steer = variant is not None and variant.steer
        if steer:
            steering.on(variant.mark)
        try:
            figures = measure_throughput(cluster, api_client, namespace, workload, n_pods, profile, url, certs,
                                         variant or FULL, planned, server.proc.pid if server else None, shares)
        finally:
            if steer:
                steering.off()
        if server:
            after = server.server_seconds()
            figures["server_ms"] = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
            figures["calls_per_pod"] = (after[1] - before[1]) / n_pods
        if run:
            rows.append({"run": run, "scheduler": "without extender" if variant is None else variant.name, **figures})
            print(f"  round {run}: {rows[-1]['scheduler']}: {figures['pods_per_s']:.0f} pods/s", flush=True)
        core.delete_collection_namespaced_pod(namespace, label_selector=f"edgeplace-bench={profile}",
                                              grace_period_seconds=0)
    return rows


def paired_shares(table, summary) -> list[float]:
    """Per row of `summary` (nodes, scheduler): the median over the rounds of the configuration's
    rate over the same round's rate without the extender. The runs of one round are minutes
    apart, the rounds up to half an hour: the pairs cancel what drifts between rounds (etcd's
    size, the load of the machine)."""
    without = table[table["scheduler"] == "without extender"].set_index(["nodes", "run"])["pods_per_s"]
    shares = []
    for nodes, scheduler in zip(summary["nodes"], summary["scheduler"]):
        runs = table[(table["nodes"] == nodes) & (table["scheduler"] == scheduler)]
        shares.append(statistics.median(r / without[nodes, run] for run, r in zip(runs["run"], runs["pods_per_s"])))
    return shares


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median pods/s per scheduler configuration."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["scheduler"], []).append(r["pods_per_s"])
    return {label: statistics.median(v) for label, v in by.items()}


def agreement(cluster, api_client, doc: dict[str, Any], extender_url: str | None, certs: Certs | None,
              variant: Variant, profile: str, steering: Steering | None = None) -> dict[str, Any]:
    """Every replica of the 9-node topology's Deployments scheduled with `variant`: the share of
    pods bound on a node the plan planned for their workload, and the isolation rules broken.
    Then under pressure: every node but the factory's dedicated pool is tainted NoSchedule
    (full, as far as kube-scheduler's own filters go) and two shop pods arrive; they must stay
    Pending (the pool is the factory's), and `pressure_broken` counts those bound in the pool.
    A `steer` variant runs with `steering` on (and the isolation made native before)."""
    from kubernetes import client

    e2e = load_cluster_module()
    core = client.CoreV1Api(api_client)
    if variant.steer:
        steering.on(variant.mark)
    pods = {}
    for workload, spec in DEPLOYMENTS.items():
        ns = workload.split("/")[0]
        for i in range(spec["replicas"]):
            body = make_pod(api_client, workload, i, scheduler_name=profile,
                            name=f"{profile}-{workload.split('/')[1]}-{i}", labels={"edgeplace-bench": profile},
                            requests=variant.pod_requests)
            core.create_namespaced_pod(ns, body)
            pods[(ns, body["metadata"]["name"])] = workload
    cluster.restart_scheduler(scheduler_config(extender_url, ["default-scheduler", profile], certs=certs,
                                               variant=variant))

    def bound():
        nodes = {key: core.read_namespaced_pod(key[1], key[0]).spec.node_name for key in pods}
        return nodes if all(nodes.values()) else None

    nodes = e2e.wait_for(bound, WAIT_S, f"the {len(pods)} pods of profile {profile} to be bound", interval=0.25)
    on_plan = sum(nodes[key] in doc["workloads"][w]["planned_nodes"] for key, w in pods.items())
    tenants: dict[str, set[str]] = {}
    for (ns, _), node in nodes.items():
        tenants.setdefault(node, set()).add(ns)
    broken = sum({"hospital", "cdn"} <= t for t in tenants.values())
    for node, spec in NODES.items():
        owner = spec.get("labels", {}).get("edgeplace.io/dedicated-to")
        broken += bool(owner and tenants.get(node, set()) - {owner})
    pool = {n for n, spec in NODES.items() if spec.get("labels", {}).get("edgeplace.io/dedicated-to")}
    for node in set(NODES) - pool:
        core.patch_node(node, [{"op": "add", "path": "/spec/taints",
                                "value": [{"key": "edgeplace-bench/full", "effect": "NoSchedule"}]}])
    extra = [make_pod(api_client, "shop/web", i, scheduler_name=profile, name=f"{profile}-pressure-{i}",
                      labels={"edgeplace-bench": profile}, requests=variant.pod_requests) for i in range(2)]
    for body in extra:
        core.create_namespaced_pod("shop", body)

    def settled():
        out = []
        for body in extra:
            pod = core.read_namespaced_pod(body["metadata"]["name"], "shop")
            unschedulable = any(c.type == "PodScheduled" and c.reason == "Unschedulable"
                                for c in pod.status.conditions or [])
            if not (pod.spec.node_name or unschedulable):
                return None
            out.append(pod.spec.node_name)
        return out

    placed = e2e.wait_for(settled, WAIT_S, "the pressure pods to be bound or unschedulable", interval=0.25)
    if variant.steer:
        steering.off()
    for node in set(NODES) - pool:
        core.patch_node(node, [{"op": "remove", "path": "/spec/taints"}])
    for ns in {ns for ns, _ in pods} | {"shop"}:
        core.delete_collection_namespaced_pod(ns, label_selector=f"edgeplace-bench={profile}", grace_period_seconds=0)
    return {"scheduler": variant.name if extender_url else "without extender", "pods": len(pods),
            "on_planned_nodes": on_plan / len(pods), "isolation_broken": broken,
            "pressure_broken": sum(node in pool for node in placed)}


# ---------------------------------------------------------------------------
# Standalone run


def native_isolation(api_client, site_config: dict[str, Any]) -> None:
    """Tenant isolation in the cluster's own mechanisms, as the chart and the planner keep it: the
    isolation admission policies (from the committed manifests) and `edgeplace.k8s.isolation.reconcile`
    (dedicated-pool taints, tenant labels, the policies' parameters); waits until they act."""
    from kubernetes import client, utils

    from edgeplace.k8s import isolation
    from edgeplace.k8s.mapping import parse_site_config

    for obj in chart_objects("edgeplace-isolation", ADMISSION_POLICY_KINDS):
        utils.create_from_dict(api_client, obj)
    isolation.reconcile(api_client, parse_site_config(site_config), namespace=Steering.NAMESPACE)
    core = client.CoreV1Api(api_client)

    def refused() -> bool:
        from kubernetes.client.exceptions import ApiException

        body = make_pod(api_client, "shop/web", 0, scheduler_name="nobody", name="isolation-probe")
        body["spec"]["nodeName"] = "factory-1"
        try:
            core.create_namespaced_pod("shop", body)
        except ApiException as exc:
            return exc.status in (400, 403, 422)
        core.delete_namespaced_pod("isolation-probe", "shop", grace_period_seconds=0)
        return False

    def mutated() -> bool:
        # The validating policy may act before the mutating one (each policy kind has its own
        # informer): a never_with tenant's pod must be admitted, with its anti-affinity added.
        from kubernetes.client.exceptions import ApiException

        body = make_pod(api_client, "hospital/records", 0, scheduler_name="nobody", name="isolation-probe")
        try:
            pod = core.create_namespaced_pod("hospital", body)
        except ApiException as exc:
            if exc.status in (400, 403, 422):
                return False
            raise
        core.delete_namespaced_pod("isolation-probe", "hospital", grace_period_seconds=0)
        aff = pod.spec.affinity
        return bool(aff and aff.pod_anti_affinity
                    and aff.pod_anti_affinity.required_during_scheduling_ignored_during_execution)

    load_cluster_module().wait_for(lambda: refused() and mutated(), WAIT_S, "the isolation policies to take effect")


def apply_power_state(api_client, doc: dict[str, Any]) -> int:
    """Taint the nodes the plan powers down with edgeplace.io/powered-down:NoSchedule, as the power
    lifecycle does once it drains them (`edgeplace.k8s.actuation.power`): the cluster as edgeplace
    leaves it, for every variant alike. Returns how many."""
    from kubernetes import client

    from edgeplace.k8s.scheduling import TAINT_POWERED_DOWN

    core = client.CoreV1Api(api_client)
    asleep = [n for n, entry in doc["nodes"].items() if not entry["powered"]]
    taint = [{"key": TAINT_POWERED_DOWN, "value": "true", "effect": "NoSchedule"}]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: core.patch_node(n, {"spec": {"taints": taint}}), asleep))
    return len(asleep)


def plan_of(api_client, site_config: dict[str, Any]) -> dict[str, Any]:
    """Map the cluster, plan it (greedy) and build the plan document."""
    from edgeplace.k8s.extender.table import build_plan_document
    from edgeplace.k8s.mapping import MappingOptions, map_cluster, parse_site_config, read_cluster
    from edgeplace.optimizer.solve import SolveOptions, solve

    now = datetime.now(timezone.utc)
    mapped = map_cluster(read_cluster(api_client), parse_site_config(site_config), MappingOptions(now=now))
    plan = solve(mapped.scenario, SolveOptions(solver="greedy", bound_time_limit_s=0.0))
    return build_plan_document(mapped.scenario, plan.placement, now=now, valid_for_s=6 * 3600,
                               evaluation=plan.evaluation)


def run_size(n_nodes: int, n_pods: int, rounds: int, folder: Path, only: set[str] | None = None,
             plan_only: bool = False, shares: CpuShares | None = None) -> tuple[list[dict], list[dict]]:
    """Throughput (and, for the 9-node topology, agreement) rows for one cluster size; `only`: the
    names of the variants to run (default all). Generated clusters get the plan's power state as
    taints (`apply_power_state`) unless `plan_only`."""
    from edgeplace.k8s.extender.table import write_plan_document

    e2e = load_cluster_module()
    certs = Certs.make(folder / f"certs-{n_nodes}")
    with e2e.LocalCluster() as cluster:
        if shares is not None:
            for name in ("etcd", "kube-apiserver"):
                shares.place(name, cluster._procs[name].popen.pid)
        api = cluster.api_client()
        if n_nodes == len(NODES):
            setup_topology(api)
            site_config, variants, workload = SITE_CONFIG, VARIANTS, "shop/web"
        else:
            site_config = setup_large_topology(api, n_nodes)
            variants, workload = LARGE_VARIANTS, LARGE_WORKLOAD
        if only is not None:
            variants = tuple(v for v in variants if v.name in only)
        doc = plan_of(api, site_config)
        if n_nodes != len(NODES) and not plan_only:
            apply_power_state(api, doc)
        plan_path = folder / f"plan-{n_nodes}.json"
        write_plan_document(doc, plan_path)
        planned = set(doc["workloads"][workload]["planned_nodes"])
        servers = {}
        try:
            for compact, best in sorted({v.server for v in (*variants, *VARIANTS)}):
                servers[compact, best] = ExtenderProcess(plan_path, certs, compact,
                                                         folder / f"extender-{n_nodes}-{compact}-{best}.log", best)
                if shares is not None:
                    shares.place("extender", servers[compact, best].proc.pid)
            urls = {options: server.url for options, server in servers.items()}
            steering = (Steering(api, doc, workload) if n_nodes == len(NODES) or any(v.steer for v in variants)
                        else None)
            rows = compare(cluster, api, "shop", workload, urls[FULL.server], n_pods, rounds, certs, variants, urls,
                           planned, servers, steering, shares)
            for row in rows:
                row["nodes"] = n_nodes
            agree = []
            if n_nodes == len(NODES):
                agree.append(agreement(cluster, api, doc, None, None, FULL, "agree-plain"))
                native = False
                for i, variant in enumerate(VARIANTS):
                    if variant.steer and not native:
                        native_isolation(api, site_config)
                        native = True
                    agree.append(agreement(cluster, api, doc, urls[variant.server], certs, variant, f"agree-{i}",
                                           steering))
        finally:
            for server in servers.values():
                server.stop()
    return rows, agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_k8s_e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="9,1000", help="cluster sizes, comma-separated (9 is the cloud-edge "
                                                            "topology; others are generated; default 9,1000)")
    parser.add_argument("--pods", type=int, default=1000, help="pending pods per run (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (without, each variant) (default 3)")
    parser.add_argument("--plan-only", action="store_true",
                        help="leave the nodes the plan powers down untainted (power lifecycle in dry-run); default: "
                             "tainted edgeplace.io/powered-down as the lifecycle leaves them")
    parser.add_argument("--variants", metavar="NAME[;NAME...]",
                        help="run only these variants (their names as in the table, ';'-separated; default all)")
    parser.add_argument("--cpu-weights", choices=CPU_WEIGHTS, default="requests",
                        help="requests (default): etcd, kube-apiserver, kube-scheduler and the extender in CPU cgroups "
                             "weighted by their pods' CPU requests, as kubelet runs them (needs root; `CpuShares`); "
                             "equal: every process at the kernel's default weight")
    args = parser.parse_args(argv)
    only = {v.strip() for v in args.variants.split(";")} if args.variants else None
    known = {v.name for v in (*VARIANTS, *LARGE_VARIANTS)}
    if only and only - known:
        parser.error(f"--variants: unknown {sorted(only - known)}; the variants are {sorted(known)}")

    import tempfile

    import pandas as pd

    from bench.common import write_section

    load_before = os.getloadavg()[0]
    rows, agree = [], []
    shares = CpuShares(args.cpu_weights)
    try:
        with tempfile.TemporaryDirectory(prefix="edgeplace-bench-") as tmp:
            for n in (int(x) for x in args.nodes.split(",")):
                r, a = run_size(n, args.pods, args.rounds, Path(tmp), only, args.plan_only, shares)
                rows += r
                agree += a
    finally:
        shares.close()
    table = pd.DataFrame(rows)
    print("Runs, in the order they ran:")
    print(table[["nodes", "run", "scheduler", "pods_per_s", "server_ms", "scheduler_cpu_ms_per_pod",
                 "extender_cpu_ms_per_pod", "scheduler_span_cpu_ms_per_pod", "apiserver_span_cpu_ms_per_pod",
                 "etcd_span_cpu_ms_per_pod", "pod_bytes", "load_1min"]].to_string(index=False), flush=True)
    summary = (table.groupby(["nodes", "scheduler"], sort=False)
               .agg(pods_per_s=("pods_per_s", "median"), runs_min=("pods_per_s", "min"),
                    runs_max=("pods_per_s", "max"), on_planned_nodes=("on_planned_nodes", "median"),
                    calls_per_pod=("calls_per_pod", "median"), server_ms=("server_ms", "median"),
                    scheduler_cpu_ms=("scheduler_cpu_ms_per_pod", "median"),
                    extender_cpu_ms=("extender_cpu_ms_per_pod", "median"),
                    span_cpu_ms=("scheduler_span_cpu_ms_per_pod", "median"),
                    apiserver_span_cpu_ms=("apiserver_span_cpu_ms_per_pod", "median"),
                    etcd_span_cpu_ms=("etcd_span_cpu_ms_per_pod", "median"),
                    created_per_s=("created_per_s", "median"),
                    load_1min=("load_1min", "mean"))
               .reset_index())
    base = summary[summary["scheduler"] == "without extender"].set_index("nodes")["pods_per_s"]
    summary["share_of_without"] = [p / base[n] for n, p in zip(summary["nodes"], summary["pods_per_s"])]
    summary["paired_share"] = paired_shares(table, summary)
    notes = (f"kube-scheduler v{load_cluster_module().k8s_version().lstrip('v')} on loopback (etcd, kube-apiserver, "
             f"kube-scheduler and the extender in its own process share the 2 cores; CPU weights: {shares.describe()}), {args.pods} pending pods of one "
             f"workload per run (found by the extender from their owner, no annotations), {args.rounds} rounds of "
             f"(without, each variant); rate = (N - 1) / (last - first Scheduled event time), median of the rounds; "
             f"on_planned_nodes = share of the pods bound on a node the plan puts the workload on; calls_per_pod and "
             f"server_ms: the extender's calls per pod and its own mean time per call (its histogram, wall time: it includes "
             f"waiting for a core); scheduler_cpu_ms and extender_cpu_ms: CPU time per pod of kube-scheduler "
             f"(since its start, so with its start-up and informer sync) and of the extender process; span_cpu_ms, "
             f"apiserver_span_cpu_ms and etcd_span_cpu_ms: the CPU time of kube-scheduler, kube-apiserver and etcd "
             f"between the first and the last Scheduled event, per pod (sampled every {CpuSampler.SAMPLE_S} s). Before kube-scheduler starts, "
             f"the driver waits for etcd and kube-apiserver to settle (under {SETTLE_CORES:.2f} of a core over "
             f"{SETTLE_WINDOW_S} s, at most {SETTLE_MAX_S:.0f} s), so that no run pays for the work its pods' creation "
             f"or the previous run's deletions left. share_of_without: the median rate over the median rate without "
             f"the extender; paired_share: the median over the rounds of the rate over the same round's rate without "
             f"(the rounds' drift cancels). The extender serves "
             f"mutual TLS (the chart's default). Nodes are plain API objects "
             f"(no kubelets: a pod is scheduled once bound). created_per_s: the rate at which the run's pods were "
             f"created beforehand (8 client threads; outside the measured interval), which is where steering at "
             f"admission costs: its policy runs in kube-apiserver on every pod created. Steering variants: the chart's "
             f"steering policy bound for the run, the shipped profile (NodeAffinity weight 10). Generated clusters: "
             f"every other edge box cannot power down; "
             + ("the nodes the plan powers down are left untainted (power lifecycle in dry-run). " if args.plan_only else
                "the nodes the plan powers down are tainted edgeplace.io/powered-down:NoSchedule for every run, as "
                "the power lifecycle leaves them. ")
             + f"1-minute load average before the run: {load_before:.2f}.")
    # A run of some variants only gets a section of its own: the full table stays beside it.
    section = ("k8s_e2e_plan_only" if args.plan_only else "k8s_e2e") + ("_subset" if only else "")
    write_section(section, "Real cluster: kube-scheduler pods/s with and without the extender"
                  + (" (plan only: sleeping nodes untainted)" if args.plan_only else "")
                  + (" (some variants)" if only else ""), summary, notes)
    if agree and not args.plan_only:
        write_section("k8s_e2e_agreement", "Real cluster: plan agreement of each extender variant (9 nodes)",
                      pd.DataFrame(agree),
                      "Every replica of the 7 Deployments (21 pods) scheduled once per variant in the same run: the "
                      "share bound on a node the plan planned for the pod's workload, and the isolation rules broken "
                      "(a node with both hospital and cdn, or a dedicated node hosting another tenant). "
                      "pressure_broken: then every node but the factory's dedicated pool is tainted NoSchedule and "
                      "two shop pods arrive; with the filter they stay Pending, without it they bind in the pool "
                      "(the pool is expressed only by its edgeplace.io/dedicated-to label here, not natively). "
                      "The steering variants run last, with isolation made native first as the chart keeps it "
                      "(its admission policies and `edgeplace.k8s.isolation.reconcile`: the pool tainted, the "
                      "tenants labelled) and the steering policy bound: the plan's nodes as preferred node "
                      "affinity, the SLA's as required.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
