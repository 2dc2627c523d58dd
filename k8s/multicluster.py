"""Many clusters through MultiKueue: one plan over every worker cluster, and dispatch to the cluster it chose.

A *fleet config* is a site config (`edgeplace.k8s.mapping.ClusterConfig`:
sites, grid regions, tenants, ...) plus a ``clusters`` section naming the
worker clusters::

    clusters:
    - {name: worker-de, context: de, site: metro-ffm}    # name = its MultiKueueCluster
    - {name: worker-se, context: se, site: cloud-sto}     # context: in the kubeconfig (default: name)
    sites:
    - {id: metro-ffm, tier: metro, region: DE}
    - {id: cloud-sto, tier: cloud, region: SE}

`read_fleet` reads the manager cluster (where Kueue's MultiKueue admission
check runs: Jobs, Workloads, ClusterQueues) and every worker, and merges
them into one cluster view: each worker's Nodes, renamed
``<cluster>/<node>`` and labelled ``edgeplace.io/cluster`` (and
``edgeplace.io/site`` from the config where the node has none); its pods,
as load on those nodes; and the manager's MultiKueue Jobs. A Job already
running in a worker (its Workload's ``status.clusterName``) is pinned there;
one still waiting is planned over every worker's nodes. A worker that cannot
be read is left out of that round (with a warning), so the plan does not
choose it.

Steering dispatch. Kueue v0.13+ lets an external controller pick the worker
clusters: with the manager's Kueue configured with ``multiKueue.dispatcherName``
set to anything but its two built-in dispatchers, the MultiKueue admission
check copies a Workload only to the clusters in its
``status.nominatedClusterNames``, and a controller sets that field (KEP-693,
"MultiKueue Dispatcher API"; pkg/controller/admissionchecks/multikueue/
workload.go, ``nominateAndSynchronizeWorkers``). `MultiKueueDispatcher` is that
controller. It nominates, for a Workload whose quota is reserved and whose
edgeplace check (if its ClusterQueue has one) is Ready:

=================  ==============================================================
reason             nominated clusters
=================  ==============================================================
``plan``           the cluster of the node the plan chose, if MultiKueue has it Active
``unreachable``    the chosen cluster is not Active: every Active cluster of the
                   Workload's MultiKueueConfig, as Kueue's default (AllAtOnce) would
``no_plan``        no plan included the job within ``plan_wait_s``: every Active cluster
``not_placed``     the plan does not place the job: every Active cluster
``not_reserved``   the chosen cluster has not reserved it within ``dispatch_timeout_s``
                   of its quota reservation (its queue is full, or it stopped
                   answering without MultiKueue noticing): every Active cluster
``deadline``       its latest start has come and no cluster has reserved it: every
                   Active cluster
=================  ==============================================================

Nothing is nominated before the edgeplace check is Ready: MultiKueue does
not wait for the other admission checks, so a copy in a worker would start
at once and the time shift would be lost. The per-cluster decision of an
admission check is not used: with Kueue's default dispatcher every worker
gets a copy, and the first to reserve quota wins (a check in the workers
could only hold copies, keeping quota reserved in every cluster but one).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeplace.k8s.kueue import (ANN_LATEST_START, MULTIKUEUE_CONTROLLER, MULTIKUEUE_MANAGED_BY, Action,
                                 KueueClusterObjects, KueueOptions, PlanView, ScaledClock, _custom, _time, checks_of,
                                 is_true, job_workload_id, ours_ready, read_kueue, reserved_at, workloads_by_job)
from edgeplace.k8s.mapping import (LABEL_SITE, ClusterConfig, ClusterObjects, _meta, _name, _namespace,
                                   parse_site_config, read_cluster)
from edgeplace.topology.errors import InputError, Problem, pydantic_problems
from edgeplace.topology.load import read_document

log = logging.getLogger("edgeplace.k8s.multicluster")

#: Node label the fleet view puts on every worker node: the MultiKueueCluster it belongs to.
LABEL_CLUSTER = "edgeplace.io/cluster"


# ---------------------------------------------------------------------------
# The fleet config


class FleetCluster(BaseModel):
    """One worker cluster: `name` is its MultiKueueCluster's name on the manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    context: str | None = Field(None, description="kubeconfig context (default: the name)")
    kubeconfig: str | None = Field(None, description="kubeconfig file (default: the one edgeplace was given)")
    site: str | None = Field(None, description="site of its nodes that have no edgeplace.io/site label")


@dataclass(frozen=True)
class FleetConfig:
    site_config: ClusterConfig
    clusters: tuple[FleetCluster, ...]


def parse_fleet_config(doc: Any, source: str = "<fleet config>") -> FleetConfig:
    """A site config with a ``clusters`` section; `InputError` lists every problem with its path."""
    if not isinstance(doc, dict):
        raise InputError(source, [Problem("", f"a fleet config is a mapping of sections, got {type(doc).__name__}")])
    rest = dict(doc)
    raw = rest.pop("clusters", None)
    problems: list[Problem] = []
    if not isinstance(raw, list) or not raw:
        problems.append(Problem("clusters", "must list the worker clusters, e.g. `clusters: [{name: worker-de, "
                                            "context: de, site: metro-ffm}]`"))
        raw = []
    clusters = []
    for k, item in enumerate(raw):
        try:
            clusters.append(FleetCluster.model_validate(item))
        except ValidationError as exc:
            problems += [Problem(f"clusters[{k}].{p.path}".rstrip("."), p.message) for p in pydantic_problems(exc.errors())]
    try:
        config = parse_site_config(rest, source)
    except InputError as exc:
        problems += exc.problems
        config = None
    seen: set[str] = set()
    for k, c in enumerate(clusters):
        if c.name in seen:
            problems.append(Problem(f"clusters[{k}].name", f"{c.name!r} is listed twice"))
        seen.add(c.name)
        if config is not None and c.site and c.site not in {s.id for s in config.sites}:
            problems.append(Problem(f"clusters[{k}].site", f"{c.site!r} is not in sites: add `sites: [{{id: {c.site}, "
                                                           f"tier: ..., region: ...}}]`"))
    if problems:
        raise InputError(source, problems)
    return FleetConfig(config, tuple(clusters))


def load_fleet_config(path: str) -> FleetConfig:
    return parse_fleet_config(read_document(path), source=str(path))


# ---------------------------------------------------------------------------
# Reading the fleet


def cluster_of(node_id: str) -> str | None:
    """The worker cluster of a fleet node id ``<cluster>/<node>``."""
    return node_id.split("/", 1)[0] if "/" in node_id else None


def worker_view(objects: ClusterObjects, cluster: FleetCluster) -> ClusterObjects:
    """A worker's Nodes (renamed ``<cluster>/<node>``, labelled) and its pods on them; nothing else.

    Its pods are matched to the manager's Jobs by their owner (MultiKueue's
    copy of a Job has the manager Job's namespace and name); other pods are
    load the scenario does not plan (DaemonSets, the worker's own workloads).
    """
    out = ClusterObjects()
    for node in objects.nodes:
        n = copy.deepcopy(node)
        meta = n.setdefault("metadata", {})
        labels = meta.setdefault("labels", {}) or {}
        labels[LABEL_CLUSTER] = cluster.name
        if cluster.site and LABEL_SITE not in labels:
            labels[LABEL_SITE] = cluster.site
        meta["labels"] = labels
        meta["name"] = f"{cluster.name}/{_name(node)}"
        out.nodes.append(n)
    for pod in objects.pods:
        p = copy.deepcopy(pod)
        spec = p.setdefault("spec", {})
        if spec.get("nodeName"):
            spec["nodeName"] = f"{cluster.name}/{spec['nodeName']}"
        out.pods.append(p)
    return out


def merge_fleet(manager: ClusterObjects, kueue, workers: dict[str, ClusterObjects], notes: list[str]) -> KueueClusterObjects:
    """The fleet as one cluster view (see the module docstring)."""
    by_job = workloads_by_job(kueue.workloads)
    jobs = []
    for job in manager.jobs:
        if (job.get("spec") or {}).get("managedBy") != MULTIKUEUE_MANAGED_BY:
            continue  # runs in the manager, if anywhere: not on the workers' nodes
        wl = by_job.get((_namespace(job), _name(job)))
        where = ((wl or {}).get("status") or {}).get("clusterName")
        if where and where not in workers:
            continue  # runs in a worker this round could not read: neither it nor its nodes are in the plan
        if where:  # dispatched: it stays in its cluster
            job = copy.deepcopy(job)
            tmpl = job["spec"].setdefault("template", {}).setdefault("spec", {})
            tmpl["nodeSelector"] = {**(tmpl.get("nodeSelector") or {}), LABEL_CLUSTER: where}
        jobs.append(job)
    out = KueueClusterObjects(namespaces=list(manager.namespaces), jobs=jobs, kueue=kueue, notes=list(notes))
    names = {_name(ns) for ns in manager.namespaces}
    for view in workers.values():
        out.nodes += view.nodes
        out.pods += view.pods
    for objects in workers.values():
        out.namespaces += [ns for ns in objects.namespaces if _name(ns) not in names]
        names |= {_name(ns) for ns in objects.namespaces}
    return out


class Fleet:
    """The manager and its worker clusters, with a reader for `edgeplace.k8s.planner.Planner`.

    connect : (kubeconfig, context) -> ApiClient, for the workers
    reader : reads one cluster (default `edgeplace.k8s.mapping.read_cluster`)
    """

    def __init__(self, manager_api, config: FleetConfig, connect: Callable[[str | None, str | None], Any],
                 reader: Callable[[Any], ClusterObjects] = read_cluster, kubeconfig: str | None = None):
        self.manager_api = manager_api
        self.config = config
        self.connect = connect
        self.reader = reader
        self.kubeconfig = kubeconfig
        self._clients: dict[str, Any] = {}

    def client(self, cluster: FleetCluster):
        if cluster.name not in self._clients:
            self._clients[cluster.name] = self.connect(cluster.kubeconfig or self.kubeconfig, cluster.context or cluster.name)
        return self._clients[cluster.name]

    def read(self, _manager_api=None) -> KueueClusterObjects:
        """The merged view of the fleet (the `reader` the planner calls)."""
        manager = self.reader(self.manager_api)
        kueue = read_kueue(self.manager_api, multikueue=True)
        workers: dict[str, ClusterObjects] = {}
        notes = []
        for cluster in self.config.clusters:
            try:
                workers[cluster.name] = worker_view(self.reader(self.client(cluster)), cluster)
            except Exception as exc:  # noqa: BLE001 - an unreachable worker is left out of this round
                notes.append(f"worker cluster {cluster.name}: cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
                             "left out of this plan")
                self._clients.pop(cluster.name, None)
        return merge_fleet(manager, kueue, workers, notes)


# ---------------------------------------------------------------------------
# Dispatch


def multikueue_check(workload: dict, kueue) -> tuple[str, dict] | None:
    """(name, status entry) of the Workload's MultiKueue admission check, if its ClusterQueue has one."""
    names = checks_of(kueue.admission_checks, MULTIKUEUE_CONTROLLER)
    for entry in (workload.get("status") or {}).get("admissionChecks") or []:
        if entry.get("name") in names:
            return entry["name"], entry
    return None


def eligible_clusters(check_name: str, kueue) -> list[str]:
    """The Active MultiKueueClusters of the MultiKueueConfig behind admission check `check_name`, sorted."""
    ac = next((a for a in kueue.admission_checks if _name(a) == check_name), None)
    params = ((ac or {}).get("spec") or {}).get("parameters") or {}
    config = next((c for c in kueue.multikueue_configs if _name(c) == params.get("name")), None)
    listed = list(((config or {}).get("spec") or {}).get("clusters") or [])
    active = {_name(c) for c in kueue.multikueue_clusters if is_true(c, "Active")}
    return sorted(c for c in listed if c in active)


@dataclass(frozen=True)
class Dispatch:
    """Clusters to nominate (None: leave the Workload as it is) and why."""

    clusters: tuple[str, ...] | None
    reason: str


def decide_dispatch(wl: dict, job_id: str | None, plan: PlanView | None, eligible: list[str], ours_ready: bool,
                    now: datetime, clock: ScaledClock, options: KueueOptions) -> Dispatch:
    """Which worker clusters MultiKueue may copy a Workload to (see the module docstring's table).

    `ours_ready`: the Workload's edgeplace check is Ready (or its ClusterQueue has none).
    """
    status = wl.get("status") or {}
    if status.get("clusterName") or reserved_at(wl) is None or not ours_ready or not eligible:
        return Dispatch(None, "not_due")
    current = tuple(status.get("nominatedClusterNames") or ())
    latest = _time((_meta(wl).get("annotations") or {}).get(ANN_LATEST_START))  # wall clock
    if latest is not None and now >= clock.from_wall(latest):
        return Dispatch(tuple(eligible), "deadline")
    planned = None
    if plan is not None and job_id in plan.workloads:
        nodes = plan.nodes.get(job_id, ())
        clusters = [cluster_of(n) for n in nodes if cluster_of(n)]
        if not clusters:
            return Dispatch(tuple(eligible), "not_placed")
        planned = max(sorted(set(clusters)), key=clusters.count)  # replicas split over clusters: the one with most
    elif current and all(c in eligible for c in current):
        return Dispatch(current, "kept")  # nominated earlier (e.g. before a restart); no newer plan says otherwise
    else:
        waited = (ScaledClock.wall() - reserved_at(wl)).total_seconds()
        if waited < options.plan_wait_s:
            return Dispatch(None, "waiting_for_plan")
        return Dispatch(tuple(eligible), "no_plan")
    if planned not in eligible:
        return Dispatch(tuple(eligible), "unreachable")
    waited = (ScaledClock.wall() - reserved_at(wl)).total_seconds()
    if current == (planned,) and waited >= options.dispatch_timeout_s and len(eligible) > 1:
        return Dispatch(tuple(eligible), "not_reserved")
    return Dispatch((planned,), "plan")


#: The field manager of Kueue's own admission status writes (sigs.k8s.io/kueue pkg/constants, ``AdmissionName``).
KUEUE_ADMISSION_MANAGER = "kueue-admission"


def nominate(api_client, wl: dict, clusters: tuple[str, ...]) -> bool:
    """Set ``status.nominatedClusterNames`` (resourceVersion-checked; False on a conflict or a gone Workload).

    Written the way Kueue's own dispatchers write it: a server-side apply of
    the Workload's status as ``kueue-admission``, Kueue's admission field
    manager. When a worker reserves the Workload, MultiKueue applies
    ``clusterName`` *without* the nominations, as that manager; server-side
    apply then drops them only if they are that manager's. Written by any
    other manager they would stay, and the API server would refuse
    ``clusterName`` next to them ("mutually exclusive"): the job would run
    in the worker while the manager never learnt where. The apply carries the
    whole status as read (so no field Kueue owns is dropped) and the read's
    resourceVersion.
    """
    from kubernetes.client.exceptions import ApiException

    from edgeplace.k8s.kueue import GROUP, VERSION

    meta = wl.get("metadata") or {}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workload",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "resourceVersion": meta.get("resourceVersion")},
            "status": {**copy.deepcopy(wl.get("status") or {}), "nominatedClusterNames": list(clusters)}}
    try:
        _custom(api_client).patch_namespaced_custom_object_status(
            GROUP, VERSION, _namespace(wl), "workloads", _name(wl), body, field_manager=KUEUE_ADMISSION_MANAGER,
            force=True, _content_type="application/apply-patch+yaml", _preload_content=False)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


class MultiKueueDispatcher:
    """Nominates worker clusters for MultiKueue Workloads on the manager (see the module docstring)."""

    def __init__(self, api_client, options: KueueOptions | None = None, clock: ScaledClock | None = None):
        self.api_client = api_client
        self.options = options or KueueOptions()
        self.clock = clock or ScaledClock()
        self.last: dict[str, Dispatch] = {}  # namespace/name -> the last decision (for logs and tests)

    def reconcile(self, workloads: list[dict], plan: PlanView | None, now: datetime, ours: set[str]) -> list[Action]:
        from edgeplace.k8s.kueue import KueueObjects, list_kueue

        kueue = KueueObjects(admission_checks=list_kueue(self.api_client, "admission_checks"),
                             multikueue_clusters=list_kueue(self.api_client, "multikueue_clusters"),
                             multikueue_configs=list_kueue(self.api_client, "multikueue_configs"))
        actions = []
        jobs: dict[tuple[str, str], dict | None] = {}
        for wl in workloads:
            mk = multikueue_check(wl, kueue)
            if mk is None or mk[1].get("state") != "Pending" or is_true(wl, "Finished"):
                continue
            decision = decide_dispatch(wl, self._job_id(wl, jobs), plan, eligible_clusters(mk[0], kueue),
                                       ours_ready(wl, ours), now, self.clock, self.options)
            key = f"{_namespace(wl)}/{_name(wl)}"
            self.last[key] = decision
            current = tuple((wl.get("status") or {}).get("nominatedClusterNames") or ())
            if decision.clusters is None or decision.clusters == current:
                continue
            if nominate(self.api_client, wl, decision.clusters):
                actions.append(Action(key, "nominated", decision.reason, ",".join(decision.clusters)))
                log.info("multikueue: %s nominated to %s (%s)", key, ", ".join(decision.clusters), decision.reason)
        return actions

    def _job_id(self, wl: dict, cache: dict) -> str | None:
        from edgeplace.k8s.kueue import owner_job, read_job

        job = read_job(self.api_client, owner_job(wl), cache)
        return job_workload_id(job) if job is not None else None


def fallback_nominations(api_client, workloads: list[dict], kueue, ours: set[str]) -> list[Action]:
    """Fail open (edgeplace down): nominate every Active cluster for Workloads MultiKueue waits on."""
    actions = []
    for wl in workloads:
        mk = multikueue_check(wl, kueue)
        status = wl.get("status") or {}
        if mk is None or mk[1].get("state") != "Pending" or status.get("clusterName") or reserved_at(wl) is None:
            continue
        if not ours_ready(wl, ours):
            continue
        eligible = tuple(eligible_clusters(mk[0], kueue))
        current = tuple(status.get("nominatedClusterNames") or ())
        if not eligible or (current and set(current) <= set(eligible) and len(current) == len(eligible)):
            continue
        if nominate(api_client, wl, eligible):
            actions.append(Action(f"{_namespace(wl)}/{_name(wl)}", "nominated", "fail_open", ",".join(eligible)))
    return actions



class NoPublisher:
    """Fleet mode publishes no extender plan (its nodes span clusters): the plan steers Kueue only."""

    where = "nothing (fleet mode: the plan steers Kueue's admission and dispatch)"

    def publish(self, doc):
        from edgeplace.k8s.publish import PublishResult

        return PublishResult("unchanged", "", 0, 0, False)
