"""Whether a pod may be evicted, and evicting it: one filter, one evictor (the descheduler's split).

`EvictionFilter.why_not(pod)` is the one place that says a pod is never
moved by edgeplace, whoever asks (the rebalancer or a node drain):

=====================  ========================================================
protection             the pod
=====================  ========================================================
``terminating``        is being deleted already
``not_running``        is not Running (pending pods have nowhere to move from)
``mirror``             is a static pod's mirror (the kubelet owns it)
``daemonset``          belongs to a DaemonSet (it runs on every node by design)
``bare``               has no controller: an eviction would delete it for good
``opted_out``          carries ``edgeplace.io/no-rebalance: "true"`` or the
                       descheduler's ``prevent-eviction: "true"``
``excluded_namespace`` lives in a namespace the planner does not manage
``job``                belongs to a Job (its work so far would be lost; a
                       drain waits for it to finish) unless jobs are evictable
``system_critical``    has a system-critical priority class
``local_storage``      has an emptyDir or hostPath volume (its data is lost)
=====================  ========================================================

The last two yield to the descheduler's opt-in annotation
``descheduler.alpha.kubernetes.io/evict`` (as in the descheduler); the
others do not: a bare pod or a mirror pod cannot be recreated by anyone.

`PodEvictor.evict` asks the Eviction API (policy/v1), with the pod's uid as
a precondition, so the API server checks every PodDisruptionBudget: its 429
answer is "not now" (counted, retried a later cycle), never a reason to
delete the pod directly. Budgets bound how many evictions one cycle makes in
all, per node and per tenant; the caller bounds them per workload
(`workload_allowance`). A dry run decides the same and evicts nothing.
Every eviction and every refusal is a log line, an Event on the pod and a
metric sample.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable

from edgeplace.k8s.actuation.events import EventRecorder, Regarding
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.actuation.objects import (ANN_DESCHEDULER_EVICT, ANN_DESCHEDULER_PREVENT, ANN_NO_REBALANCE,
                                             SYSTEM_CRITICAL, PodFacts, PodKind, is_true)
from edgeplace.k8s.mapping import DEFAULT_EXCLUDED_NAMESPACES
from edgeplace.k8s.scheduling import label_selector_matches

log = logging.getLogger("edgeplace.k8s.actuation")


class Protection(str, Enum):
    TERMINATING = "terminating"
    NOT_RUNNING = "not_running"
    MIRROR = "mirror"
    DAEMONSET = "daemonset"
    BARE = "bare"
    OPTED_OUT = "opted_out"
    EXCLUDED_NAMESPACE = "excluded_namespace"
    JOB = "job"
    SYSTEM_CRITICAL = "system_critical"
    LOCAL_STORAGE = "local_storage"


@dataclass(frozen=True)
class EvictionOptions:
    """Which pods may be evicted at all (see the module docstring).

    excluded_namespaces : namespaces whose pods are never evicted
    evict_job_pods : Job pods may be evicted (their progress is lost)
    evict_local_storage_pods : pods with emptyDir/hostPath volumes may be evicted
    evict_system_critical_pods : pods with a system-critical priority class may be evicted
    """

    excluded_namespaces: tuple[str, ...] = DEFAULT_EXCLUDED_NAMESPACES
    evict_job_pods: bool = False
    evict_local_storage_pods: bool = False
    evict_system_critical_pods: bool = False


class EvictionFilter:
    """Decides whether a pod may be evicted at all; `why_not` returns None when it may."""

    def __init__(self, options: EvictionOptions | None = None):
        self.options = options or EvictionOptions()

    def why_not(self, pod: PodFacts) -> Protection | None:
        o = self.options
        if pod.terminating:
            return Protection.TERMINATING
        if pod.kind is PodKind.MIRROR:
            return Protection.MIRROR
        if pod.kind is PodKind.DAEMONSET:
            return Protection.DAEMONSET
        if pod.kind is PodKind.BARE:
            return Protection.BARE
        if is_true(pod.annotations.get(ANN_NO_REBALANCE)) or is_true(pod.annotations.get(ANN_DESCHEDULER_PREVENT)):
            return Protection.OPTED_OUT
        if pod.phase != "Running":
            return Protection.NOT_RUNNING
        if pod.namespace in o.excluded_namespaces:
            return Protection.EXCLUDED_NAMESPACE
        if pod.kind is PodKind.JOB and not o.evict_job_pods:
            return Protection.JOB
        forced = ANN_DESCHEDULER_EVICT in pod.annotations
        if pod.priority_class in SYSTEM_CRITICAL and not (o.evict_system_critical_pods or forced):
            return Protection.SYSTEM_CRITICAL
        if pod.local_storage and not (o.evict_local_storage_pods or forced):
            return Protection.LOCAL_STORAGE
        return None

    @staticmethod
    def blocks_power_off(pod: PodFacts) -> bool:
        """A pod that must be gone before its node may power off: anything but DaemonSet pods
        and pods that finished (a static pod's mirror blocks: its node would take it down)."""
        if pod.kind is PodKind.DAEMONSET or pod.phase in ("Succeeded", "Failed"):
            return False
        return True


@dataclass(frozen=True)
class EvictionBudget:
    """At most this many evictions per cycle: in all, per node, per tenant."""

    per_cycle: int = 10
    per_node: int = 2
    per_tenant: int = 3

    def __post_init__(self) -> None:
        for name in ("per_cycle", "per_node", "per_tenant"):
            if getattr(self, name) < 0:
                raise ValueError(f"eviction budget {name} must be >= 0 (got {getattr(self, name)})")


class EvictionResult(str, Enum):
    EVICTED = "evicted"
    DRY_RUN = "dry_run"  # would have been evicted
    PDB_BLOCKED = "pdb_blocked"  # HTTP 429: a PodDisruptionBudget allows no disruption now
    NOT_FOUND = "not_found"  # gone, or replaced by another pod of that name
    BUDGET = "budget"  # this cycle's budget is spent (no API call made)
    ERROR = "error"


@dataclass
class PodEvictor:
    """Evicts through the Eviction API within an `EvictionBudget`; see the module docstring.

    `core` is a `kubernetes.client.CoreV1Api` (None only with dry_run).
    Call `start_cycle()` before each cycle's evictions.
    """

    core: object | None
    budget: EvictionBudget = field(default_factory=EvictionBudget)
    dry_run: bool = False
    recorder: EventRecorder | None = None
    metrics: PlannerMetrics | None = None
    _total: int = 0
    _per_node: Counter = field(default_factory=Counter)
    _per_tenant: Counter = field(default_factory=Counter)

    def start_cycle(self) -> None:
        self._total = 0
        self._per_node.clear()
        self._per_tenant.clear()

    def has_budget(self, node: str | None, tenant: str) -> bool:
        b = self.budget
        return self._total < b.per_cycle and self._per_node[node] < b.per_node and self._per_tenant[tenant] < b.per_tenant

    def evict(self, pod: PodFacts, tenant: str, why: str, reason: str = "EdgeplaceRebalance") -> EvictionResult:
        """Evict `pod` (or, in a dry run, count it as evicted); `why` goes into the Event and the log."""
        if not self.has_budget(pod.node, tenant):
            return self._done(pod, EvictionResult.BUDGET, why, reason)
        if self.dry_run:
            result = EvictionResult.DRY_RUN
        else:
            result = self._call(pod)
        if result in (EvictionResult.EVICTED, EvictionResult.DRY_RUN):
            self._total += 1
            self._per_node[pod.node] += 1
            self._per_tenant[tenant] += 1
        return self._done(pod, result, why, reason)

    def _call(self, pod: PodFacts) -> EvictionResult:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid) if pod.uid else None))
        try:
            self.core.create_namespaced_pod_eviction(pod.name, pod.namespace, body, _preload_content=False)
            return EvictionResult.EVICTED
        except ApiException as exc:
            if exc.status == 429:
                return EvictionResult.PDB_BLOCKED
            if exc.status in (404, 409):  # gone, or the uid precondition failed: another pod of that name
                return EvictionResult.NOT_FOUND
            log.warning("actuation: eviction of %s: HTTP %s %s", pod.key, exc.status, (exc.body or exc.reason or "")[:300])
            return EvictionResult.ERROR
        except Exception as exc:  # noqa: BLE001 - the API server unreachable: try again next cycle
            log.warning("actuation: eviction of %s: %s: %s", pod.key, type(exc).__name__, exc)
            return EvictionResult.ERROR

    def _done(self, pod: PodFacts, result: EvictionResult, why: str, reason: str) -> EvictionResult:
        if self.metrics is not None and result is not EvictionResult.BUDGET:
            self.metrics.eviction(result.value)
        regarding = Regarding("Pod", pod.name, pod.namespace, pod.uid)
        if result is EvictionResult.EVICTED:
            log.info("actuation: evicted %s from %s: %s", pod.key, pod.node, why)
            if self.recorder is not None:
                self.recorder.record(regarding, reason, f"Evicted by edgeplace: {why}", action="Evict")
        elif result is EvictionResult.DRY_RUN:
            log.info("actuation: dry run: would evict %s from %s: %s", pod.key, pod.node, why)
        elif result is EvictionResult.PDB_BLOCKED:
            log.info("actuation: eviction of %s refused by its PodDisruptionBudget (429); retrying later", pod.key)
            if self.recorder is not None:
                self.recorder.record(regarding, "EdgeplaceEvictionBlocked",
                                     f"A PodDisruptionBudget allows no disruption now; edgeplace retries later ({why})",
                                     action="Evict", warning=True)
        return result


# ---------------------------------------------------------------------------
# PodDisruptionBudgets and workload allowances


def pdbs_of(pod: PodFacts, pdbs: Iterable[dict]) -> list[dict]:
    """The PodDisruptionBudgets (JSON) whose selector matches the pod, in its namespace."""
    return [p for p in pdbs if (p.get("metadata") or {}).get("namespace") == pod.namespace
            and label_selector_matches((p.get("spec") or {}).get("selector"), pod.labels)]


def workload_allowance(pods: list[PodFacts], pdbs: Iterable[dict]) -> int:
    """How many replicas of one workload may be disrupted now.

    Without a PodDisruptionBudget: one at a time, i.e. 1 while every pod of
    the workload is Ready and none is terminating, else 0. With one (or
    more) covering the workload: the smallest status.disruptionsAllowed,
    which the disruption controller already counts net of unhealthy pods
    (0: none). The API server enforces the PDB again on every eviction; this
    keeps edgeplace from asking for evictions it knows will be refused, and
    from taking two replicas of an unprotected workload down at once.
    """
    covering = {((b.get("metadata") or {}).get("namespace"), (b.get("metadata") or {}).get("name")): b
                for p in pods for b in pdbs_of(p, pdbs)}
    if covering:
        return max(0, min(int((b.get("status") or {}).get("disruptionsAllowed") or 0) for b in covering.values()))
    return 0 if any(p.terminating or not p.ready for p in pods) else 1
