"""Carbon-aware admission through Kueue: an AdmissionCheck controller, and quotas from ClusterQueues.

Kueue admits a Workload (the queued form of a batch Job) in two phases: it
first *reserves quota* in the Workload's ClusterQueue, then waits until every
AdmissionCheck that ClusterQueue lists is ``Ready`` (KEP-993). edgeplace is
the controller of one such check (``spec.controllerName:
edgeplace.io/carbon-aware`` by default): it holds a Workload until the slot
the plan chose for its Job, then lets it go.

Decisions (`decide`, `decide_held`; one fixed set of reasons), for a
Workload whose edgeplace check is ``Pending`` and whose quota is reserved:

=====================  ========  ==================================================
reason                 action    when
=====================  ========  ==================================================
``planned_start``      ready     the plan's start slot of the job has begun
``deadline``           ready     its latest start (deadline - duration) has come
``not_deferred``       ready     the job has no deadline, its window is too short,
                                 or the plan does not place it: not ours to hold
``not_a_job``          ready     the Workload's owner is not a batch/v1 Job
``no_plan``            ready     no plan included it within ``plan_wait_s``
``deferred``           hold      the planned start is at least ``min_defer_s`` away
``starting``           wait      the planned start is less than ``min_defer_s`` away
``waiting_for_plan``   wait      created after the last plan; a round is triggered
=====================  ========  ==================================================

*ready* sets the check ``Ready`` (Kueue admits the Workload once its other
checks are Ready too); *wait* leaves it ``Pending`` with a message; *hold*
deactivates the Workload (``spec.active: false``, Kueue's own way to hold
one: it evicts it at once, so its quota goes back to the ClusterQueue) and
records the planned start in ``edgeplace.io/held-until``. A held Workload is
*released* (``spec.active: true``) when its planned start or latest start
comes, or when a newer plan runs it now; a newer plan that moves its start
updates ``held-until`` (reason ``replanned``). Released, Kueue requeues it,
reserves its quota again, and the check (still ``Pending``) goes ``Ready``.

Why not a long ``Pending`` or ``Retry``: a Pending check keeps the quota
reserved, so jobs waiting for a green slot would block the tenant's other
jobs (and under MultiKueue a copy in a worker would start at once, since
MultiKueue does not wait for other checks). ``Retry`` with
``requeueAfterSeconds`` (KEP-3258) is meant to give the quota back until the
requeue, but Kueue v0.17.0 evicts the Workload only once the delay is over
(pkg/controller/core/workload_controller.go returns early while
``requeueState.requeueAt`` is in the future), so the quota stays reserved
for the whole wait. Deactivating gives it back now, which is what the
scenario's per-slot tenant quotas assume.

State lives in the cluster, in wall-clock time: the check's state and
message, and annotations on the Workload (``edgeplace.io/held-until``,
``planned-start``, ``latest-start``, ``admission-decision``). A restarted
controller, another replica, or the fail-open watchdog
(`edgeplace.k8s.kueue_failopen`, which also releases held Workloads at their
``held-until``) carry on from them.

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

from edgeplace.k8s.identity import controller_ref
from edgeplace.k8s.mapping import (ANN_DEADLINE, ANN_DURATION_MIN, ANN_WORKLOAD, ClusterConfig,
                                   ClusterObjects, MappedCluster, MappingOptions, QuantityError, TenantConfig,
                                   _annotations, _labels, _meta, _name, _namespace, _parse_time,
                                   count_quantity, cpu_millicores, is_extended_resource, map_cluster, memory_mib,
                                   namespace_tenant)

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
#: Wall-clock time until which edgeplace holds a Workload inactive (``spec.active: false``).
ANN_HELD_UNTIL = "edgeplace.io/held-until"

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
    """RFC 3339 in UTC; milliseconds only when the time has a fraction (time-compressed runs)."""
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond // 1000:03d}Z" if t.microsecond else "Z")


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
    ref = controller_ref(wl)
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


def checks_of(admission_checks: Iterable[dict], controller_name: str) -> set[str]:
    """Names of the AdmissionChecks whose controller is `controller_name`."""
    return {_name(ac) for ac in admission_checks if (ac.get("spec") or {}).get("controllerName") == controller_name}


def edgeplace_check(wl: dict, ours: set[str]) -> str | None:
    """The name of the Workload's check among `ours` (its ClusterQueue lists at most one in practice)."""
    return next((c for c in sorted(ours) if check_state(wl, c) is not None), None)


def ours_ready(wl: dict, ours: set[str]) -> bool:
    """Every one of `ours` the Workload has is Ready (True when its ClusterQueue lists none)."""
    return all((check_state(wl, c) or {}).get("state", "Ready") == "Ready" for c in ours)


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
    namespaces = {_name(ns): ns for ns in objects.namespaces}

    def tenant_of(ns: str) -> str:
        return namespace_tenant(ns, namespaces, config)
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
    holds is shown unsuspended: to the plan it is a job not started yet (one
    edgeplace holds may still be moved to an earlier or later slot).
    """
    by_job = workloads_by_job(workloads)
    jobs = []
    for job in objects.jobs:
        if LABEL_QUEUE_NAME not in _labels(job):
            jobs.append(job)
            continue
        wl = by_job.get((_namespace(job), _name(job)))
        spec = job.get("spec") or {}
        if wl is not None and is_true(wl, "Finished"):
            continue  # done (under MultiKueue the manager's copy of the Job may never say so itself)
        if not spec.get("suspend") or admitted(wl):
            jobs.append(job)
            continue
        held = copy.deepcopy(job)
        held["spec"]["suspend"] = False
        jobs.append(held)
    view = copy.copy(objects)
    view.jobs = jobs
    return view


@dataclass
class KueueClusterObjects(ClusterObjects):
    """A cluster's objects plus Kueue's (what `read_with_kueue` returns and `map_with_kueue` maps)."""

    kueue: KueueObjects = field(default_factory=KueueObjects)
    notes: list[str] = field(default_factory=list)  # what the reader could not read, for the round's warnings


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
    mapped.warnings[:0] = list(getattr(objects, "notes", [])) + warnings
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
        nodes = {}
        for w, wid in enumerate(scenario.workload_ids):
            r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
            rows = placement.rows(r0, r0 + n)
            running = np.flatnonzero((rows >= 0).any(axis=0))
            if running.size:
                cells = rows[:, int(running[0])]
                nodes[wid] = tuple(scenario.node_ids[i] for i in cells if i >= 0)
        return cls(now, frozenset(scenario.workload_ids), starts, nodes)


# ---------------------------------------------------------------------------
# Decisions


Reason = Literal["planned_start", "deadline", "not_deferred", "not_a_job", "no_plan", "deferred", "starting",
                 "waiting_for_plan", "replanned", "fail_open"]


@dataclass(frozen=True)
class Decision:
    """What to do with one Workload (see the module docstring's table).

    action : ``ready`` (check Ready), ``hold`` (deactivate until `planned_start`),
        ``wait`` (check stays Pending) or ``release`` (reactivate a held Workload)
    """

    action: Literal["ready", "hold", "wait", "release"]
    reason: Reason
    message: str
    planned_start: datetime | None = None  # plan clock
    latest_start: datetime | None = None  # plan clock


@dataclass(frozen=True)
class KueueOptions:
    """How the AdmissionCheck controller behaves.

    controller_name : the AdmissionChecks it serves (``spec.controllerName``)
    min_defer_s : waits at least this long [wall-clock s] hold the Workload inactive (its quota given
        back); shorter ones keep the check Pending until the slot begins
    plan_wait_s : a Workload no plan has included yet is admitted after this long [wall-clock s]
        from its quota reservation (fail open: a planner that cannot plan holds nothing for long)
    dispatch_timeout_s : with MultiKueue, a Workload the chosen worker has not reserved this long after
        its quota reservation [wall-clock s] is offered to every Active worker
    resync_s : full re-read of Workloads at least this often [wall-clock s] (a watch triggers sooner)
    tick_s : how often the loop looks at triggers and timers [wall-clock s]
    """

    controller_name: str = DEFAULT_CONTROLLER_NAME
    min_defer_s: float = 30.0
    plan_wait_s: float = 120.0
    dispatch_timeout_s: float = 300.0
    resync_s: float = 10.0
    tick_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.controller_name or "/" not in self.controller_name:
            raise ValueError(f"controller_name must be a domain-prefixed name such as {DEFAULT_CONTROLLER_NAME} "
                             f"(got {self.controller_name!r})")
        if not (self.min_defer_s >= 0 and self.plan_wait_s >= 0 and self.dispatch_timeout_s >= 0
                and self.resync_s > 0 and self.tick_s > 0):
            raise ValueError("min_defer_s, plan_wait_s and dispatch_timeout_s must be >= 0, resync_s and tick_s > 0")


def reserved_at(wl: dict) -> datetime | None:
    """When the Workload's quota was reserved (wall clock), if it is."""
    cond = condition(wl, "QuotaReserved")
    if cond is None or cond.get("status") != "True":
        return None
    return _time(cond.get("lastTransitionTime"))


def held_until(wl: dict) -> datetime | None:
    """Wall-clock time until which edgeplace holds the (inactive) Workload; None if it holds none."""
    if (wl.get("spec") or {}).get("active", True) is not False:
        return None
    return _time(_annotations(wl).get(ANN_HELD_UNTIL))


def _plan_start(job: dict, plan: PlanView | None) -> tuple[bool, datetime | None]:
    """(the plan includes the job, its planned start if the plan defers it)."""
    wid = job_workload_id(job)
    if plan is None or wid not in plan.workloads:
        return False, None
    return True, plan.starts.get(wid)


def decide(wl: dict, job: dict | None, plan: PlanView | None, now: datetime, clock: ScaledClock,
           options: KueueOptions) -> Decision:
    """What to do with a Workload whose edgeplace check is Pending and whose quota is reserved.

    `now` is on the plan clock (`clock`); `job` is the Workload's owner Job
    (None if it has none or it is gone).
    """
    if job is None:
        return Decision("ready", "not_a_job", "edgeplace: the workload is not a batch Job; not held")
    latest = latest_start(job)
    if ANN_DEADLINE not in _annotations(job):
        return Decision("ready", "not_deferred", f"edgeplace: no {ANN_DEADLINE} annotation; admitted now")
    if latest is not None and now >= latest:
        return Decision("ready", "deadline", f"edgeplace: latest start {_rfc3339(latest)} (deadline - duration) "
                        f"reached; admitted", latest_start=latest)
    known, start = _plan_start(job, plan)
    created = _time(_meta(job).get("creationTimestamp"))
    # creationTimestamp is whole seconds: a Job stamped up to a second before the round began may have been
    # created after the round read the cluster; only one stamped earlier was certainly seen (and left out).
    created = clock.from_wall(created + timedelta(seconds=1)) if created else None
    if not known and (plan is None or created is None or created > plan.made_at):
        since = reserved_at(wl)
        waited = (ScaledClock.wall() - since).total_seconds() if since else 0.0
        if waited >= options.plan_wait_s:
            return Decision("ready", "no_plan", f"edgeplace: no plan included the job within {options.plan_wait_s:g} s "
                            f"of its quota reservation; admitted without a carbon-aware decision", latest_start=latest)
        return Decision("wait", "waiting_for_plan", "edgeplace: waiting for a plan that includes this job",
                        latest_start=latest)
    if start is None:
        return Decision("ready", "not_deferred", "edgeplace: the plan runs this job now (not deferrable in its "
                        "window, or not placed); admitted", latest_start=latest)
    if now >= start:
        return Decision("ready", "planned_start", f"edgeplace: planned start {_rfc3339(start)} reached; admitted",
                        planned_start=start, latest_start=latest)
    when = (f"planned start {_rfc3339(start)} (plan of {_rfc3339(plan.made_at)})"
            + (f", latest start {_rfc3339(latest)}" if latest else ""))
    if clock.wall_seconds((start - now).total_seconds()) >= options.min_defer_s:
        return Decision("hold", "deferred", f"edgeplace: deferred to its greenest slot: {when}; the workload is "
                        f"inactive (its quota given back) until then", planned_start=start, latest_start=latest)
    return Decision("wait", "starting", f"edgeplace: held until its {when}", planned_start=start, latest_start=latest)


def decide_held(wl: dict, job: dict | None, plan: PlanView | None, now: datetime, clock: ScaledClock) -> Decision:
    """What to do with a Workload edgeplace holds inactive: release it when its start has come, or move its start."""
    until = clock.from_wall(held_until(wl) or ScaledClock.wall())
    if job is None:
        return Decision("release", "not_a_job", "edgeplace: the workload's Job is gone; released")
    latest = latest_start(job)
    if latest is not None and now >= latest:
        return Decision("release", "deadline", "edgeplace: latest start reached; released", latest_start=latest)
    known, start = _plan_start(job, plan)
    if known and start is None:
        return Decision("release", "not_deferred", "edgeplace: the plan runs this job now; released",
                        latest_start=latest)
    start = start if known else until
    if now >= start:
        return Decision("release", "planned_start", f"edgeplace: planned start {_rfc3339(start)} reached; released",
                        planned_start=start, latest_start=latest)
    return Decision("hold", "replanned" if abs((start - until).total_seconds()) >= 1 else "deferred",
                    f"edgeplace: deferred to its greenest slot: planned start {_rfc3339(start)}; the workload is "
                    f"inactive (its quota given back) until then", planned_start=start, latest_start=latest)


# ---------------------------------------------------------------------------
# Writing decisions into the cluster


def _custom(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def patch_workload(api_client, wl: dict, annotations: Mapping[str, str | None], active: bool | None = None) -> dict:
    """Merge `annotations` (None removes a key) and ``spec.active`` into the Workload; the Workload as it is now.

    Nothing is written when nothing changes.
    """
    current = _annotations(wl)
    changed = {k: v for k, v in annotations.items() if current.get(k) != v and not (v is None and k not in current)}
    patch: dict[str, Any] = {"metadata": {"annotations": changed}} if changed else {}
    if active is not None and (wl.get("spec") or {}).get("active", True) is not active:
        patch["spec"] = {"active": active}
    if not patch:
        return wl
    resp = _custom(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, _namespace(wl), "workloads", _name(wl), patch, _preload_content=False)
    return json.loads(resp.data)


def write_check(api_client, wl: dict, check: str, state: CheckState, message: str) -> bool:
    """Set the Workload's `check` entry (state, message; lastTransitionTime when the state changes).

    A replace of the status carrying the read's resourceVersion: a Workload
    that changed in between (409) is left alone and False returned; the next
    pass decides again from a fresh read.
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
        entry["lastTransitionTime"] = _rfc3339(ScaledClock.wall().replace(microsecond=0))
    entry["state"], entry["message"] = state, message[:32768]
    try:
        _custom(api_client).replace_namespaced_custom_object_status(
            GROUP, VERSION, _namespace(wl), "workloads", _name(wl), body, _preload_content=False)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def _decision_annotations(decision: Decision, clock: ScaledClock) -> dict[str, str | None]:
    """The decision as the Workload's annotations, in wall-clock time (what Kueue and the watchdog live by)."""
    def wall(t: datetime | None) -> str | None:
        return _rfc3339(clock.to_wall(t)) if t is not None else None

    return {ANN_PLANNED_START: wall(decision.planned_start), ANN_LATEST_START: wall(decision.latest_start),
            ANN_DECISION: decision.reason,
            ANN_HELD_UNTIL: wall(decision.planned_start) if decision.action == "hold" else None}


def apply_decision(api_client, wl: dict, check: str, decision: Decision, clock: ScaledClock) -> bool:
    """Record `decision` on the Workload: annotations (and ``spec.active``), then the check's state."""
    active = {"hold": False, "release": True}.get(decision.action)
    if decision.action == "hold" and held_until(wl) is None and reserved_at(wl) is None:
        return False  # not ours to hold any more (its reservation went meanwhile): decide again next pass
    wl = patch_workload(api_client, wl, _decision_annotations(decision, clock), active)
    if decision.action == "release":
        return True  # Kueue requeues it; the check is decided again once its quota is reserved
    if decision.action == "hold":
        # Kueue evicts the Workload right after it is deactivated: say why in the check, on a fresh read.
        for _ in range(3):
            if write_check(api_client, wl, check, "Pending", decision.message):
                break
            wl = get_workload(api_client, _namespace(wl), _name(wl)) or wl
        return True
    state: CheckState = "Ready" if decision.action == "ready" else "Pending"
    return write_check(api_client, wl, check, state, decision.message)


def read_job(api_client, ref: tuple[str, str] | None, cache: dict) -> dict | None:
    """The Job (namespace, name) as JSON, None if there is none; each read once per `cache` (one pass)."""
    if ref is None:
        return None
    if ref not in cache:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            cache[ref] = json.loads(client.BatchV1Api(api_client).read_namespaced_job(
                ref[1], ref[0], _preload_content=False).data)
        except ApiException as exc:
            if exc.status != 404:
                raise
            cache[ref] = None
    return cache[ref]


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
        conds.append({"type": "Active", "status": "True", "reason": "Active",
                      "lastTransitionTime": _rfc3339(ScaledClock.wall().replace(microsecond=0)),
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
    """One decision written: workload "namespace/name", what was done (ready, hold, wait, release,
    nominated) and why."""

    workload: str
    action: str
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
        self.actions: list[Action] = []  # the decisions written so far (the last 1000), newest last
        self._dirty = threading.Event()
        self._due: float | None = None  # monotonic time of the next start a held or waiting Workload has

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
        ours = checks_of(checks_json, name)
        workloads = list_kueue(self.api_client, "workloads")
        now = self.clock.now()
        actions: list[Action] = []
        jobs: dict[tuple[str, str], dict | None] = {}
        self._due = None
        waiting = False
        for wl in workloads:
            decision, check = self._decide(wl, ours, jobs, now)
            if decision is None:
                continue
            waiting |= decision.reason == "waiting_for_plan"
            if decision.action in ("hold", "wait") and decision.planned_start is not None:
                due = time.monotonic() + self.clock.wall_seconds((decision.planned_start - now).total_seconds())
                self._due = due if self._due is None else min(self._due, due)
            if self._unchanged(wl, check, decision):
                continue
            if self.leading() and apply_decision(self.api_client, wl, check, decision, self.clock):
                actions.append(Action(f"{_namespace(wl)}/{_name(wl)}", decision.action, decision.reason,
                                      decision.message))
                log.info("kueue: %s/%s %s (%s)", _namespace(wl), _name(wl), decision.action, decision.reason)
        if waiting and self.trigger is not None:
            self.trigger()
        if self.dispatcher is not None and self.leading():
            actions += self.dispatcher.reconcile(workloads, self.plan, now, ours)
        self.actions = (self.actions + actions)[-1000:]
        return actions

    def _decide(self, wl: dict, ours: set[str], jobs: dict, now: datetime) -> tuple[Decision | None, str]:
        """The decision for one Workload and the name of its edgeplace check (None: nothing to decide)."""
        check = edgeplace_check(wl, ours)
        if check is None or is_true(wl, "Finished"):
            return None, ""
        if held_until(wl) is not None:
            return decide_held(wl, self._job(owner_job(wl), jobs), self.plan, now, self.clock), check
        if (check_state(wl, check) or {}).get("state") != "Pending" or reserved_at(wl) is None:
            return None, check
        if (wl.get("spec") or {}).get("active") is False:
            return None, check  # deactivated by someone else: not ours to decide
        return decide(wl, self._job(owner_job(wl), jobs), self.plan, now, self.clock, self.options), check

    def _unchanged(self, wl: dict, check: str, decision: Decision) -> bool:
        """The Workload already says what `decision` would write."""
        ann = _annotations(wl)
        wanted = _decision_annotations(decision, self.clock)
        if any(ann.get(k) != v for k, v in wanted.items()):
            return False
        return decision.action in ("hold", "wait") and (check_state(wl, check) or {}).get("message") == decision.message

    def _job(self, ref: tuple[str, str] | None, cache: dict) -> dict | None:
        return read_job(self.api_client, ref, cache)

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
