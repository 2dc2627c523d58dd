"""Carbon-aware admission through Kueue: an AdmissionCheck controller, and quotas from ClusterQueues.

Kueue admits a Workload (the queued form of a batch Job) in two phases: it
first *reserves quota* in the Workload's ClusterQueue, then waits until every
AdmissionCheck that ClusterQueue lists is ``Ready`` (KEP-993). edgeplace is
the controller of one such check (``spec.controllerName:
edgeplace.io/carbon-aware`` by default): it holds a Workload until the slot
the plan chose for its Job, then lets it go.

Decisions (`decide`), for a Workload whose edgeplace check is ``Pending``
and whose quota is reserved (one fixed set of reasons):

=====================  ========  ==================================================
reason                 state     when
=====================  ========  ==================================================
``planned_start``      Ready     the plan's start slot of the job has begun
``deadline``           Ready     its latest start (deadline - duration) has come
``not_deferred``       Ready     the job has no deadline, its window is too short,
                                 or the plan does not place it: not ours to hold
``not_a_job``          Ready     the Workload's owner is not a batch/v1 Job
``no_plan``            Ready     no plan included it within ``plan_wait_s``
``deferred``           Retry     the planned start is at least ``min_defer_s`` away:
                                 give the quota back, Kueue requeues it then
``starting``           Pending   the planned start is less than ``min_defer_s`` away
``waiting_for_plan``   Pending   created after the last plan; a round is triggered
=====================  ========  ==================================================

Why ``Retry`` and not a long ``Pending``: a Pending check keeps the quota
reserved (and under MultiKueue the copy in a worker cluster would already
run, since MultiKueue does not wait for other checks). ``Retry`` with
``requeueAfterSeconds`` makes Kueue evict the Workload (the Job never
started, so nothing stops), give its quota back and requeue it at the
planned start (``status.requeueState.requeueAt``, Kueue's own state): the
wait is kept by Kueue, so it survives edgeplace being down. When the
Workload comes back it reserves quota again, the check is ``Pending`` again,
and (the slot having begun) edgeplace sets it ``Ready``. The plan therefore
never has to count quota for jobs that wait, which is what the scenario's
tenant quotas (per slot) assume.

State lives in the cluster: the check's state and message, and annotations
on the Workload (``edgeplace.io/planned-start``, ``edgeplace.io/latest-start``,
``edgeplace.io/admission-decision``); a restarted controller, another replica
or the fail-open watchdog (`edgeplace.k8s.kueue_failopen`) read them.

Quotas (`tenant_quotas`): each tenant's nominal quota is the sum over the
ClusterQueues its namespaces' LocalQueues point to, summed over flavors;
borrowing from a cohort is not counted (Kueue may not grant it), and a
ClusterQueue shared by several tenants is split evenly between them, so a
plan never assumes capacity Kueue will not grant.

Times: Kueue's timestamps are wall-clock; plans are on the controller's
`ScaledClock`, which is the wall clock unless a demo, test or benchmark runs
it faster (time-compressed runs: one hour of plan in a few seconds).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Literal, Mapping

from edgeplace.k8s.mapping import (ANN_DEADLINE, ANN_DURATION_MIN, ANN_EARLIEST_START, ANN_WORKLOAD, ClusterConfig,
                                   ClusterObjects, MappedCluster, MappingOptions, QuantityError, TenantConfig,
                                   _annotations, _controller, _labels, _meta, _name, _namespace, _parse_time,
                                   count_quantity, cpu_millicores, is_extended_resource, map_cluster, memory_mib,
                                   namespace_tenants)

log = logging.getLogger("edgeplace.k8s.kueue")

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
#: Kueue's label naming a Job's LocalQueue: the Job is Kueue's to admit (and to suspend).
LABEL_QUEUE_NAME = "kueue.x-k8s.io/queue-name"
#: spec.managedBy of a Job that MultiKueue runs in a worker cluster.
MULTIKUEUE_MANAGED_BY = "kueue.x-k8s.io/multikueue"
MULTIKUEUE_CONTROLLER = "kueue.x-k8s.io/multikueue"
#: edgeplace's AdmissionCheck controller name (and MultiKueue dispatcher name).
DEFAULT_CONTROLLER_NAME = "edgeplace.io/carbon-aware"
ANN_PLANNED_START = "edgeplace.io/planned-start"
ANN_LATEST_START = "edgeplace.io/latest-start"
ANN_DECISION = "edgeplace.io/admission-decision"

CheckState = Literal["Pending", "Ready", "Retry", "Rejected"]


# ---------------------------------------------------------------------------
# Time


@dataclass(frozen=True)
class ScaledClock:
    """The plan's clock: the wall clock, or (for demos, tests and benchmarks) one running `speed` times faster.

    ``now() = origin + (wall_now - origin_wall) * speed``. With the defaults it
    is the wall clock. Kueue's timestamps and delays are wall-clock:
    `from_wall` and `wall_seconds` convert.
    """

    speed: float = 1.0
    origin: datetime | None = None  # model time at origin_wall (default: origin_wall)
    origin_wall: datetime | None = None  # default: the epoch (then origin is ignored)

    def __post_init__(self) -> None:
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError(f"speed must be a finite number > 0 (got {self.speed})")

    @staticmethod
    def wall() -> datetime:
        return datetime.now(timezone.utc)

    def from_wall(self, t: datetime) -> datetime:
        if self.origin_wall is None:
            return t
        return (self.origin or self.origin_wall) + (t - self.origin_wall) * self.speed

    def to_wall(self, t: datetime) -> datetime:
        if self.origin_wall is None:
            return t
        return self.origin_wall + (t - (self.origin or self.origin_wall)) / self.speed

    def now(self) -> datetime:
        return self.from_wall(self.wall())

    def wall_seconds(self, model_seconds: float) -> float:
        """A model duration in wall-clock seconds."""
        return model_seconds / self.speed


def _time(text: Any) -> datetime | None:
    try:
        return _parse_time(str(text)) if text else None
    except ValueError:
        return None


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Reading Kueue's objects


class KueueMissing(RuntimeError):
    """The API server does not serve Kueue's API (its CRDs are not installed)."""


@dataclass
class KueueObjects:
    """Kueue's objects as the API server's JSON (cluster-scoped ones have no namespace)."""

    workloads: list[dict] = field(default_factory=list)
    cluster_queues: list[dict] = field(default_factory=list)
    local_queues: list[dict] = field(default_factory=list)
    admission_checks: list[dict] = field(default_factory=list)
    multikueue_clusters: list[dict] = field(default_factory=list)
    multikueue_configs: list[dict] = field(default_factory=list)


_PLURALS = {"workloads": "workloads", "cluster_queues": "clusterqueues", "local_queues": "localqueues",
            "admission_checks": "admissionchecks", "multikueue_clusters": "multikueueclusters",
            "multikueue_configs": "multikueueconfigs"}


def list_kueue(api_client, kind: str) -> list[dict]:
    """Every object of one Kueue kind (a `KueueObjects` field name), all namespaces.

    Raises `KueueMissing` when the API server does not serve it (HTTP 404).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    plural = _PLURALS[kind]
    custom = client.CustomObjectsApi(api_client)
    try:
        resp = custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            raise KueueMissing(f"the API server does not serve {plural}.{GROUP}/{VERSION}: install Kueue v0.15 or "
                               f"later (its CRDs), or run without --kueue") from None
        raise
    return json.loads(resp.data).get("items") or []


def read_kueue(api_client, multikueue: bool = False) -> KueueObjects:
    """Workloads, ClusterQueues, LocalQueues and AdmissionChecks (and MultiKueue's objects if asked)."""
    kinds = ["workloads", "cluster_queues", "local_queues", "admission_checks"]
    if multikueue:
        kinds += ["multikueue_clusters", "multikueue_configs"]
    return KueueObjects(**{kind: list_kueue(api_client, kind) for kind in kinds})


def check_kueue_installed(api_client) -> None:
    """Raise `KueueMissing` (with what to do) unless Kueue's Workload API is served."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        resources = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    except ApiException as exc:
        if exc.status == 404:
            raise KueueMissing(f"the API server does not serve {GROUP}/{VERSION}: Kueue (v0.15 or later) is not "
                               f"installed in this cluster; install it or run without --kueue") from None
        raise
    names = {r.name for r in resources.resources or []}
    missing = sorted({"workloads", "clusterqueues", "admissionchecks", "localqueues"} - names)
    if missing:
        raise KueueMissing(f"{GROUP}/{VERSION} lacks {', '.join(missing)}: install Kueue's CRDs (v0.15 or later)")


# ---------------------------------------------------------------------------
# Small readers over Workload JSON


def condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def is_true(obj: dict, kind: str) -> bool:
    cond = condition(obj, kind)
    return cond is not None and cond.get("status") == "True"


def check_state(wl: dict, check: str) -> dict | None:
    """The Workload's ``status.admissionChecks`` entry named `check`."""
    for entry in (wl.get("status") or {}).get("admissionChecks") or []:
        if isinstance(entry, dict) and entry.get("name") == check:
            return entry
    return None


def owner_job(wl: dict) -> tuple[str, str] | None:
    """(namespace, name) of the batch/v1 Job that owns the Workload, if any."""
    ref = _controller(wl)
    if ref is None or ref.get("kind") != "Job" or not str(ref.get("apiVersion", "batch/v1")).startswith("batch/"):
        return None
    return _namespace(wl), str(ref.get("name"))


def job_workload_id(job: dict) -> str:
    """The scenario workload id of a Job, as `edgeplace.k8s.mapping.map_cluster` names it."""
    tmpl = (job.get("spec") or {}).get("template") or {}
    return _annotations(tmpl).get(ANN_WORKLOAD) or f"{_namespace(job)}/{_name(job)}"


def latest_start(job: dict) -> datetime | None:
    """deadline - duration from the Job's annotations; None when they are absent or do not parse."""
    ann = _annotations(job)
    try:
        return _parse_time(ann[ANN_DEADLINE]) - timedelta(minutes=float(ann[ANN_DURATION_MIN]))
    except (KeyError, ValueError, OverflowError):
        return None


def our_checks(objects: KueueObjects, controller_name: str) -> set[str]:
    """Names of the AdmissionChecks whose controller is `controller_name`."""
    return {_name(ac) for ac in objects.admission_checks
            if (ac.get("spec") or {}).get("controllerName") == controller_name}


# ---------------------------------------------------------------------------
# Quotas: ClusterQueue nominal quotas per tenant


def _quota_amount(resource: str, quantity: Any) -> tuple[str, int] | None:
    """A Kueue resource quota in scenario units (rounded down); None for resources the scenario does not model."""
    if resource == "cpu":
        return "cpu_millicores", cpu_millicores(quantity, round_up=False)
    if resource == "memory":
        return "memory_mib", memory_mib(quantity, round_up=False)
    if is_extended_resource(resource):
        return resource, count_quantity(quantity)
    return None


def cluster_queue_quota(cq: dict) -> tuple[dict[str, int], list[str]]:
    """Nominal quota of a ClusterQueue per scenario resource, summed over its flavors (borrowing not counted)."""
    total: dict[str, int] = {}
    problems = []
    for group in (cq.get("spec") or {}).get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for res in flavor.get("resources") or []:
                try:
                    amount = _quota_amount(str(res.get("name")), res.get("nominalQuota", 0))
                except QuantityError as exc:
                    problems.append(f"ClusterQueue {_name(cq)} flavor {flavor.get('name')} {res.get('name')}: {exc}")
                    continue
                if amount is not None:
                    total[amount[0]] = total.get(amount[0], 0) + amount[1]
    return total, problems


def tenant_quotas(kueue: KueueObjects, objects: ClusterObjects,
                  config: ClusterConfig) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Each tenant's quota per resource from the ClusterQueues its LocalQueues point to, and warnings.

    Only resources some node offers are kept (the scenario rejects others).
    A ClusterQueue used by several tenants is split evenly between them
    (rounded down): the scenario has per-tenant quotas only, and an even split
    never promises more than Kueue grants.
    """
    tenant_of = namespace_tenants(objects, config)
    offered = {"cpu_millicores", "memory_mib"} | {
        str(k) for n in objects.nodes for k in ((n.get("status") or {}).get("allocatable") or {}) if is_extended_resource(str(k))}
    cq_tenants: dict[str, set[str]] = {}
    for lq in kueue.local_queues:
        cq = (lq.get("spec") or {}).get("clusterQueue")
        if cq:
            cq_tenants.setdefault(str(cq), set()).add(tenant_of(_namespace(lq)))
    quotas: dict[str, dict[str, int]] = {}
    warnings: list[str] = []
    for cq in kueue.cluster_queues:
        tenants = sorted(cq_tenants.get(_name(cq), ()))
        if not tenants:
            continue
        quota, problems = cluster_queue_quota(cq)
        warnings += problems
        if len(tenants) > 1:
            warnings.append(f"ClusterQueue {_name(cq)} serves tenants {', '.join(tenants)}: its nominal quota is split "
                            f"evenly between them (the scenario has per-tenant quotas only)")
        for tenant in tenants:
            entry = quotas.setdefault(tenant, {})
            for res, amount in quota.items():
                if res in offered:
                    entry[res] = entry.get(res, 0) + amount // len(tenants)
    return quotas, warnings


def config_with_quotas(config: ClusterConfig, quotas: Mapping[str, Mapping[str, int]]) -> ClusterConfig:
    """The site config with Kueue's quotas added to its tenants (the smaller one wins where both say)."""
    tenants = {t.id: t for t in config.tenants}
    for tenant, quota in quotas.items():
        t = tenants.get(tenant) or TenantConfig(id=tenant)
        merged = dict(t.quota)
        for res, amount in quota.items():
            merged[res] = min(merged[res], amount) if res in merged else amount
        tenants[tenant] = t.model_copy(update={"quota": merged})
    return config.model_copy(update={"tenants": list(tenants.values())})


# ---------------------------------------------------------------------------
# What the planner sees: Jobs Kueue holds are jobs not started yet


def admitted(wl: dict | None) -> bool:
    return wl is not None and is_true(wl, "Admitted")


def workloads_by_job(workloads: Iterable[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for wl in workloads:
        owner = owner_job(wl)
        if owner is not None:
            out[owner] = wl
    return out


def planning_view(objects: ClusterObjects, workloads: Iterable[dict]) -> ClusterObjects:
    """The cluster as the planner should see it, with Kueue holding some Jobs.

    Kueue keeps the Jobs it manages suspended (``spec.suspend``) until it
    admits their Workload; the mapping skips suspended Jobs, so a Job Kueue
    holds is shown unsuspended: to the plan it is a job not started yet. A
    Job waiting in Kueue's requeue until the start edgeplace chose cannot
    start earlier: its earliest start is that planned start. A Job MultiKueue
    runs in a worker cluster (``status.clusterName`` set) is left out here:
    the worker's copy stands for it.
    """
    by_job = workloads_by_job(workloads)
    jobs = []
    for job in objects.jobs:
        if LABEL_QUEUE_NAME not in _labels(job):
            jobs.append(job)
            continue
        wl = by_job.get((_namespace(job), _name(job)))
        spec = job.get("spec") or {}
        if wl is not None and (wl.get("status") or {}).get("clusterName") and spec.get("managedBy") == MULTIKUEUE_MANAGED_BY:
            continue
        if not spec.get("suspend") or admitted(wl):
            jobs.append(job)
            continue
        held = copy.deepcopy(job)
        held["spec"]["suspend"] = False
        planned = _time(_annotations(wl or {}).get(ANN_PLANNED_START))
        if planned is not None:
            ann = held["metadata"].setdefault("annotations", {})
            own = _time(ann.get(ANN_EARLIEST_START))
            ann[ANN_EARLIEST_START] = _rfc3339(max(planned, own) if own else planned)
        jobs.append(held)
    view = copy.copy(objects)
    view.jobs = jobs
    return view


@dataclass
class KueueClusterObjects(ClusterObjects):
    """A cluster's objects plus Kueue's (what `read_with_kueue` returns and `map_with_kueue` maps)."""

    kueue: KueueObjects = field(default_factory=KueueObjects)


def read_with_kueue(api_client) -> KueueClusterObjects:
    """`edgeplace.k8s.mapping.read_cluster` plus Kueue's objects (a reader for `Planner`)."""
    from edgeplace.k8s.mapping import read_cluster

    objects = read_cluster(api_client)
    return KueueClusterObjects(**vars(objects), kueue=read_kueue(api_client))


def map_with_kueue(objects: ClusterObjects, config: ClusterConfig, options: MappingOptions,
                   source: str = "cluster") -> MappedCluster:
    """`map_cluster` over `planning_view`, with the tenants' ClusterQueue quotas (a mapper for `Planner`)."""
    kueue = getattr(objects, "kueue", None) or KueueObjects()
    quotas, warnings = tenant_quotas(kueue, objects, config)
    mapped = map_cluster(planning_view(objects, kueue.workloads), config_with_quotas(config, quotas), options,
                         source=source)
    mapped.warnings[:0] = warnings
    return mapped


# ---------------------------------------------------------------------------
# The plan, as the controller needs it


@dataclass(frozen=True)
class PlanView:
    """What a plan says about jobs: made at `made_at` (plan clock) over the scenario's `workloads`.

    starts : deferrable workload id -> planned start (only those the plan runs)
    nodes : workload id -> the nodes of its replicas in its first run slot
    """

    made_at: datetime
    workloads: frozenset[str]
    starts: Mapping[str, datetime]
    nodes: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, scenario, placement, now: datetime) -> "PlanView":
        import numpy as np

        from edgeplace.k8s.gates import planned_starts

        starts = planned_starts(scenario, placement)
        assign = np.asarray(placement.assign)
        nodes = {}
        for w, wid in enumerate(scenario.workload_ids):
            r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
            running = np.flatnonzero((assign[r0:r0 + n] >= 0).any(axis=0))
            if running.size:
                cells = assign[r0:r0 + n, int(running[0])]
                nodes[wid] = tuple(scenario.node_ids[i] for i in cells if i >= 0)
        return cls(now, frozenset(scenario.workload_ids), starts, nodes)


# ---------------------------------------------------------------------------
# Decisions


Reason = Literal["planned_start", "deadline", "not_deferred", "not_a_job", "no_plan", "deferred", "starting",
                 "waiting_for_plan", "fail_open"]


@dataclass(frozen=True)
class Decision:
    """What to do with one Workload's edgeplace check (see the module docstring's table)."""

    state: CheckState
    reason: Reason
    message: str
    requeue_after_s: int | None = None  # wall-clock seconds, with state Retry
    planned_start: datetime | None = None  # plan clock
    latest_start: datetime | None = None  # plan clock


@dataclass(frozen=True)
class KueueOptions:
    """How the AdmissionCheck controller behaves.

    controller_name : the AdmissionChecks it serves (``spec.controllerName``)
    min_defer_s : waits at least this long [wall-clock s] give the quota back (Retry);
        shorter ones keep the check Pending until the slot begins
    plan_wait_s : a Workload no plan has included yet is admitted after this long [wall-clock s]
        from its quota reservation (fail open: a planner that cannot plan holds nothing for long)
    resync_s : full re-read of Workloads at least this often [wall-clock s] (a watch triggers sooner)
    tick_s : how often the loop looks at triggers and timers [wall-clock s]
    """

    controller_name: str = DEFAULT_CONTROLLER_NAME
    min_defer_s: float = 30.0
    plan_wait_s: float = 120.0
    resync_s: float = 10.0
    tick_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.controller_name or "/" not in self.controller_name:
            raise ValueError(f"controller_name must be a domain-prefixed name such as {DEFAULT_CONTROLLER_NAME} "
                             f"(got {self.controller_name!r})")
        if not (self.min_defer_s >= 0 and self.plan_wait_s >= 0 and self.resync_s > 0 and self.tick_s > 0):
            raise ValueError("min_defer_s and plan_wait_s must be >= 0, resync_s and tick_s > 0")


def reserved_at(wl: dict) -> datetime | None:
    """When the Workload's quota was reserved (wall clock), if it is."""
    cond = condition(wl, "QuotaReserved")
    if cond is None or cond.get("status") != "True":
        return None
    return _time(cond.get("lastTransitionTime"))


def decide(wl: dict, job: dict | None, plan: PlanView | None, now: datetime, clock: ScaledClock,
           options: KueueOptions) -> Decision:
    """The edgeplace check's state for a Workload whose check is Pending and whose quota is reserved.

    `now` is on the plan clock (`clock`); `job` is the Workload's owner Job
    (None if it has none or it is gone).
    """
    if job is None:
        return Decision("Ready", "not_a_job", "edgeplace: the workload is not a batch Job; not held")
    latest = latest_start(job)
    if ANN_DEADLINE not in _annotations(job):
        return Decision("Ready", "not_deferred", f"edgeplace: no {ANN_DEADLINE} annotation; admitted now")
    if latest is not None and now >= latest:
        return Decision("Ready", "deadline", f"edgeplace: latest start {_rfc3339(latest)} (deadline - duration) "
                        f"reached; admitted", latest_start=latest)
    wid = job_workload_id(job)
    created = _time(_meta(job).get("creationTimestamp"))
    created = clock.from_wall(created) if created else None
    if plan is None or (wid not in plan.workloads and (created is None or created > plan.made_at)):
        since = reserved_at(wl)
        waited = (ScaledClock.wall() - since).total_seconds() if since else 0.0
        if waited >= options.plan_wait_s:
            return Decision("Ready", "no_plan", f"edgeplace: no plan included the job within {options.plan_wait_s:g} s "
                            f"of its quota reservation; admitted without a carbon-aware decision", latest_start=latest)
        return Decision("Pending", "waiting_for_plan", "edgeplace: waiting for a plan that includes this job",
                        latest_start=latest)
    start = plan.starts.get(wid)
    if start is None:
        return Decision("Ready", "not_deferred", "edgeplace: the plan runs this job now (not deferrable in its "
                        "window, or not placed); admitted", latest_start=latest)
    if now >= start:
        return Decision("Ready", "planned_start", f"edgeplace: planned start {_rfc3339(start)} reached; admitted",
                        planned_start=start, latest_start=latest)
    wait_s = clock.wall_seconds((start - now).total_seconds())
    when = (f"planned start {_rfc3339(start)} (plan of {_rfc3339(plan.made_at)})"
            + (f", latest start {_rfc3339(latest)}" if latest else ""))
    if wait_s >= options.min_defer_s:
        return Decision("Retry", "deferred", f"edgeplace: deferred to its greenest slot: {when}; Kueue requeues it then",
                        requeue_after_s=math.ceil(wait_s), planned_start=start, latest_start=latest)
    return Decision("Pending", "starting", f"edgeplace: held until its {when}", planned_start=start,
                    latest_start=latest)


# ---------------------------------------------------------------------------
# Writing decisions into the cluster


def _custom(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def annotate_workload(api_client, wl: dict, values: Mapping[str, str | None]) -> dict:
    """Merge `values` into the Workload's annotations (None removes a key); the Workload as it is now."""
    current = _annotations(wl)
    patch = {k: v for k, v in values.items() if current.get(k) != v and not (v is None and k not in current)}
    if not patch:
        return wl
    resp = _custom(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, _namespace(wl), "workloads", _name(wl), {"metadata": {"annotations": patch}},
        _preload_content=False)
    return json.loads(resp.data)


def write_check(api_client, wl: dict, check: str, state: CheckState, message: str,
                requeue_after_s: int | None = None) -> bool:
    """Set the Workload's `check` entry (state, message; lastTransitionTime when the state changes).

    A replace of the status carrying the read's resourceVersion: a Workload
    that changed in between (409) is left alone and False returned; the next
    reconcile decides again from a fresh read. A Retry is only written to a
    Workload whose quota is still reserved (Kueue evicts only those).
    """
    from kubernetes.client.exceptions import ApiException

    body = copy.deepcopy(wl)
    entries = (body.setdefault("status", {})).get("admissionChecks") or []
    entry = next((e for e in entries if isinstance(e, dict) and e.get("name") == check), None)
    if entry is None:
        return False
    if entry.get("state") == state and entry.get("message") == message:
        return True
    if entry.get("state") != state:
        entry["lastTransitionTime"] = _rfc3339(ScaledClock.wall())
    entry["state"], entry["message"] = state, message[:32768]
    if requeue_after_s is not None:
        entry["requeueAfterSeconds"] = int(requeue_after_s)
    else:
        entry.pop("requeueAfterSeconds", None)
    try:
        _custom(api_client).replace_namespaced_custom_object_status(
            GROUP, VERSION, _namespace(wl), "workloads", _name(wl), body, _preload_content=False)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def apply_decision(api_client, wl: dict, check: str, decision: Decision) -> bool:
    """Record `decision` on the Workload: annotations first, then the check's state."""
    wl = annotate_workload(api_client, wl, {
        ANN_PLANNED_START: _rfc3339(decision.planned_start) if decision.planned_start else None,
        ANN_LATEST_START: _rfc3339(decision.latest_start) if decision.latest_start else None,
        ANN_DECISION: decision.reason})
    if decision.state == "Retry" and reserved_at(wl) is None:
        return False  # its reservation went meanwhile; a Retry now would strand it
    return write_check(api_client, wl, check, decision.state, decision.message, decision.requeue_after_s)


def get_workload(api_client, namespace: str, name: str) -> dict | None:
    from kubernetes.client.exceptions import ApiException

    try:
        resp = _custom(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, "workloads", name,
                                                                _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(resp.data)


def mark_checks_active(api_client, checks: Iterable[dict], controller_name: str) -> list[str]:
    """Set ``Active=True`` on the AdmissionChecks of `controller_name` that lack it; their names.

    Kueue treats a ClusterQueue whose checks are not Active as inactive (it
    admits nothing), so the controller says it is there.
    """
    from kubernetes.client.exceptions import ApiException

    done = []
    for ac in checks:
        if (ac.get("spec") or {}).get("controllerName") != controller_name or is_true(ac, "Active"):
            continue
        body = copy.deepcopy(ac)
        conds = [c for c in (body.setdefault("status", {}).get("conditions") or []) if c.get("type") != "Active"]
        conds.append({"type": "Active", "status": "True", "reason": "Active", "lastTransitionTime": _rfc3339(ScaledClock.wall()),
                      "message": f"{controller_name} is running", "observedGeneration": _meta(ac).get("generation", 0)})
        body["status"]["conditions"] = conds
        try:
            _custom(api_client).replace_cluster_custom_object_status(GROUP, VERSION, "admissionchecks", _name(ac), body,
                                                                     _preload_content=False)
            done.append(_name(ac))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
    return done


# ---------------------------------------------------------------------------
# The controller


@dataclass(frozen=True)
class Action:
    """One decision the controller wrote: workload "namespace/name", the check state and why."""

    workload: str
    state: str
    reason: str
    detail: str = ""


class KueueController:
    """The AdmissionCheck controller (see the module docstring).

    Parameters
    ----------
    api_client : a `kubernetes.client.ApiClient` of the cluster Kueue runs in (the manager with MultiKueue)
    options : `KueueOptions`
    elector : the planner's `LeaderElector` (None = always act); the controller acts only while it leads
    clock : the plan clock (`ScaledClock`)
    dispatcher : with MultiKueue, the `edgeplace.k8s.multicluster.MultiKueueDispatcher`
    trigger : called when a Workload waits for a plan (the planner's debouncer)

    `on_plan(mapped, plan, now)` is the planner's plan listener; `reconcile()`
    is one pass; `run(stop)` loops.
    """

    def __init__(self, api_client, options: KueueOptions | None = None, elector=None, clock: ScaledClock | None = None,
                 dispatcher=None, trigger: Callable[[], None] | None = None):
        self.api_client = api_client
        self.options = options or KueueOptions()
        self.elector = elector
        self.clock = clock or ScaledClock()
        self.dispatcher = dispatcher
        self.trigger = trigger
        self.plan: PlanView | None = None
        self.actions: list[Action] = []  # every decision written so far (bounded), newest last
        self._dirty = threading.Event()
        self._due: float | None = None  # monotonic time of the next planned start held Pending

    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def on_plan(self, mapped, plan, now: datetime) -> None:
        self.plan = PlanView.of(mapped.scenario, plan.placement, now)
        self._dirty.set()

    def reconcile(self) -> list[Action]:
        """One pass over the Workloads; the decisions written."""
        if not self.leading():
            return []
        name = self.options.controller_name
        checks_json = list_kueue(self.api_client, "admission_checks")
        mark_checks_active(self.api_client, checks_json, name)
        ours = {_name(ac) for ac in checks_json if (ac.get("spec") or {}).get("controllerName") == name}
        workloads = list_kueue(self.api_client, "workloads")
        now = self.clock.now()
        actions: list[Action] = []
        jobs: dict[tuple[str, str], dict | None] = {}
        self._due = None
        waiting = False
        for wl in workloads:
            for check in ours:
                entry = check_state(wl, check)
                if entry is None or entry.get("state") != "Pending" or reserved_at(wl) is None:
                    continue
                if is_true(wl, "Finished") or (wl.get("spec") or {}).get("active") is False:
                    continue
                job = self._job(owner_job(wl), jobs)
                decision = decide(wl, job, self.plan, now, self.clock, self.options)
                waiting |= decision.reason == "waiting_for_plan"
                if decision.reason == "starting" and decision.planned_start is not None:
                    due = time.monotonic() + self.clock.wall_seconds((decision.planned_start - now).total_seconds())
                    self._due = due if self._due is None else min(self._due, due)
                if decision.state == "Pending" and entry.get("message") == decision.message:
                    continue
                if self.leading() and apply_decision(self.api_client, wl, check, decision):
                    actions.append(Action(f"{_namespace(wl)}/{_name(wl)}", decision.state, decision.reason,
                                          decision.message))
                    log.info("kueue: %s/%s check %s -> %s (%s)", _namespace(wl), _name(wl), check, decision.state,
                             decision.reason)
        if waiting and self.trigger is not None:
            self.trigger()
        if self.dispatcher is not None and self.leading():
            actions += self.dispatcher.reconcile(workloads, self.plan, now, ours)
        self.actions = (self.actions + actions)[-1000:]
        return actions

    def _job(self, ref: tuple[str, str] | None, cache: dict) -> dict | None:
        if ref is None:
            return None
        if ref not in cache:
            from kubernetes import client
            from kubernetes.client.exceptions import ApiException

            try:
                cache[ref] = json.loads(client.BatchV1Api(self.api_client).read_namespaced_job(
                    ref[1], ref[0], _preload_content=False).data)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                cache[ref] = None
        return cache[ref]

    def _watch(self, stop: threading.Event) -> None:
        """Mark the controller dirty on every Workload event (the watch only triggers; reconcile lists)."""
        from kubernetes import watch

        while not stop.is_set():
            try:
                w = watch.Watch()
                for _event in w.stream(_custom(self.api_client).list_cluster_custom_object, GROUP, VERSION, "workloads",
                                       timeout_seconds=60, _request_timeout=90):
                    self._dirty.set()
                    if stop.is_set():
                        break
                w.stop()
            except Exception as exc:  # noqa: BLE001 - connection reset, 410 Gone: watch again
                if not stop.is_set():
                    log.warning("kueue: watch workloads: %s: %s; watching again", type(exc).__name__, exc)
                    stop.wait(2.0)

    def run(self, stop: threading.Event, watch_changes: bool = True) -> None:
        """Reconcile on Workload changes, new plans, planned starts and every `resync_s`, until `stop`."""
        if watch_changes:
            threading.Thread(target=self._watch, args=(stop,), name="edgeplace-kueue-watch", daemon=True).start()
        next_resync = 0.0
        while not stop.is_set():
            now = time.monotonic()
            due = self._dirty.is_set() or now >= next_resync or (self._due is not None and now >= self._due)
            if due and self.leading():
                self._dirty.clear()
                try:
                    self.reconcile()
                except Exception as exc:  # noqa: BLE001 - the API down, a bad object: try again next pass
                    log.warning("kueue: reconcile failed: %s: %s", type(exc).__name__, exc)
                next_resync = time.monotonic() + self.options.resync_s
            stop.wait(self.options.tick_s)
