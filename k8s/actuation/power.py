"""The node power lifecycle: nodes the plan lets sleep are drained and switched off, and woken again.

Each managed node (one with an ``edgeplace.io/power-driver`` annotation,
not ``edgeplace.io/can-power-down: "false"``) is a small state machine whose
state lives on the Node (``edgeplace.io/power-state`` and
``edgeplace.io/power-state-since``), so any planner replica, after a
restart or a leader change, carries on from the step the last one made:

::

    on ──(plan: asleep; safe)──> draining ──(only DaemonSet pods left)──> powering-off
     ^        │ (plan: needed again, or                                       │ (driver: off;
     │        │  the drain times out)                                         │  node NotReady)
     │        v                                                               v
     └──────── on <──(node Ready)── waking <──(plan: needed; or pods pending)── off

==================  ============================================================
state               what it means, and what a reconcile does in it
==================  ============================================================
``on``              normal. If the plan powers the node down in the current
                    slot and every safety rule allows it: cordon, taint
                    ``edgeplace.io/powered-down:NoSchedule``, -> draining.
``draining``        evict the pods (the eviction filter and PDBs as for the
                    rebalancer, one replica of a workload at a time); when no
                    pod but DaemonSet pods is left: -> powering-off. If the
                    plan wants the node again, or the drain times out:
                    uncordon, -> on.
``powering-off``    the state is written first, then the driver's power_off is
                    called, once (``edgeplace.io/power-operation`` records the
                    call); when the node goes NotReady or the driver reports
                    off: -> off.
``off``             asleep. If the plan wants it on (and it has been off for
                    the minimum time), or pods are Pending as unschedulable and
                    fit on it (at once): power_on, -> waking.
``waking``          when the node is Ready: uncordon, untaint, -> on. If it is
                    not Ready within the wake timeout: reported (Event,
                    metric, log), -> off, and another node is woken instead.
==================  ============================================================

Safety rules, each checked before a node leaves ``on``: the node runs
nothing but DaemonSet pods when it is switched off (never earlier: the drain
waits); it has been on for `PowerOptions.min_on_s` (and off for
`min_off_s` before the plan may wake it; pending pods wake it at once); at
most `max_nodes_off` nodes (and `max_off_fraction` of the managed ones) are
off or on their way at once; the nodes that stay on keep
`min_spare_cpu_fraction` of their allocatable CPU free after the node's pods
moved onto them; ``can-power-down: false`` nodes are never touched.

Every node is annotated ``cluster-autoscaler.kubernetes.io/scale-down-disabled``
and ``karpenter.sh/do-not-disrupt`` when edgeplace first manages it, so the
autoscaler does not delete a node that edgeplace put to sleep.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from edgeplace.k8s.actuation.drivers import Drivers, PowerError, PowerReading
from edgeplace.k8s.actuation.events import EventRecorder, Regarding
from edgeplace.k8s.actuation.evictor import (EvictionFilter, EvictionOptions, EvictionResult, PodEvictor,
                                             workload_allowance)
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.actuation.objects import (ANN_POWER_OPERATION, ANN_POWER_SINCE, ANN_POWER_STATE,
                                             MANAGED_NODE_ANNOTATIONS, NodeFacts, PodFacts, PowerState,
                                             node_facts, parse_rfc3339, pod_facts, rfc3339, unschedulable_since)
from edgeplace.k8s.mapping import (ANN_CAN_POWER_DOWN, ANN_CORDONED_BY, ANN_WAKE_FAILED, LABEL_IGNORE,
                                   LIFECYCLE_TAINTS, TAINT_POWERED_DOWN, ClusterObjects, pod_workload_ids)
from edgeplace.k8s.scheduling import TAINT_UNSCHEDULABLE, pod_node_rules

log = logging.getLogger("edgeplace.k8s.actuation")

#: ``edgeplace.io/power-operation`` values: "<action> <status> <RFC 3339 time>".
OP_POWER_OFF, OP_POWER_ON = "power-off", "power-on"
OP_REQUESTED, OP_SENT, OP_FAILED = "requested", "sent", "failed"
#: How many power-off calls the current powering-off state has made.
ANN_POWER_OFF_ATTEMPTS = "edgeplace.io/power-off-attempts"


@dataclass(frozen=True)
class PowerOptions:
    """The lifecycle's safety rules and timings (see the module docstring). Times in seconds.

    min_on_s, min_off_s : least time on before powering down / off before the plan may wake it
    max_nodes_off : most nodes off or on their way at once (None: no count limit)
    max_off_fraction : most share of the managed nodes off or on their way at once
    min_spare_cpu_fraction : share of the staying nodes' allocatable CPU that must stay free
    drain_timeout_s : a drain that has not finished by then is abandoned (node back on)
    power_off_timeout_s : a node not off this long after the driver call gets the call once more,
        then it is reported and put back on
    wake_timeout_s : a waking node not Ready by then is reported and another one woken
    wake_retry_s : a node that failed to wake is not chosen again for this long
    wake_on_pending : wake nodes for pods Pending as unschedulable
    pending_grace_s : ... once they have been so for this long (a pod evicted by a drain is
        briefly unschedulable while its planned node wakes)
    max_concurrent_drains : most nodes draining at once (pods need somewhere to go)
    dry_run : decide and log, change nothing
    """

    min_on_s: float = 1800.0
    min_off_s: float = 1800.0
    max_nodes_off: int | None = None
    max_off_fraction: float = 0.8
    min_spare_cpu_fraction: float = 0.1
    drain_timeout_s: float = 1800.0
    power_off_timeout_s: float = 600.0
    wake_timeout_s: float = 600.0
    wake_retry_s: float = 3600.0
    wake_on_pending: bool = True
    pending_grace_s: float = 30.0
    max_concurrent_drains: int = 2
    dry_run: bool = False
    eviction: EvictionOptions = field(default_factory=EvictionOptions)

    def __post_init__(self) -> None:
        for name in ("min_on_s", "min_off_s", "drain_timeout_s", "power_off_timeout_s", "wake_timeout_s", "wake_retry_s",
                     "pending_grace_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 0.0 <= self.max_off_fraction <= 1.0 or not 0.0 <= self.min_spare_cpu_fraction < 1.0:
            raise ValueError("max_off_fraction must be in 0..1 and min_spare_cpu_fraction in 0..1 (exclusive)")
        if self.max_nodes_off is not None and self.max_nodes_off < 0:
            raise ValueError("max_nodes_off must be >= 0")
        if self.max_concurrent_drains < 1:
            raise ValueError("max_concurrent_drains must be >= 1")


@dataclass
class Transition:
    node: str
    source: PowerState
    target: PowerState
    why: str
    applied: bool = True  # False in a dry run, or when the API refused the write


@dataclass
class PowerReport:
    transitions: list[Transition] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # node -> why the plan's wish waits (safety, blocked drain)
    evictions: list[tuple[str, str, str]] = field(default_factory=list)  # (pod, node, result)
    states: dict[str, PowerState] = field(default_factory=dict)  # every managed node's state after the reconcile


def _op(action: str, status: str, t: datetime) -> str:
    return f"{action} {status} {rfc3339(t)}"


def _parse_op(text: str) -> tuple[str, str, datetime | None]:
    parts = text.split()
    if len(parts) != 3:
        return "", "", None
    return parts[0], parts[1], parse_rfc3339(parts[2])


class PowerLifecycle:
    """Reconciles every managed node's power state with the plan; see the module docstring.

    core : a `kubernetes.client.CoreV1Api`
    drivers : the `Drivers` registry (how to switch each node)
    evictor : the `PodEvictor` drains evict through (shares the cycle's budgets)
    drain_ready : optional `node -> (bool, why)` (per reconcile): whether emptying the
        node pays its migration cost and its pods can go where the plan puts them now
        (`edgeplace.k8s.actuation.actuator`); None = trust the plan
    """

    def __init__(self, core, drivers: Drivers, evictor: PodEvictor, options: PowerOptions | None = None,
                 recorder: EventRecorder | None = None, metrics: PlannerMetrics | None = None):
        self.core, self.drivers, self.evictor = core, drivers, evictor
        self.options = options or PowerOptions()
        self.recorder, self.metrics = recorder, metrics
        self.filter = EvictionFilter(self.options.eviction)
        self._reported: dict[str, str] = {}  # node -> the last "held" reason logged
        self._doc_nodes: dict[str, Any] = {}  # the plan document's nodes of the current reconcile
        self._allowance: dict[str, int] = {}  # workload -> replicas that may still be disrupted this round

    # -- which nodes --------------------------------------------------------------------
    def managed(self, node: dict) -> bool:
        facts = node_facts(node)
        return (self.drivers.driver_of(facts.annotations) is not None
                and facts.annotations.get(ANN_CAN_POWER_DOWN, "").strip().lower() != "false"
                and facts.labels.get(LABEL_IGNORE, "").lower() != "true")

    # -- one reconcile ------------------------------------------------------------------
    def reconcile(self, objects: ClusterObjects, doc: dict[str, Any] | None, pdbs: list[dict], now: datetime,
                  drain_ready: Callable[[str], tuple[bool, str]] | None = None,
                  never_down: set[str] | None = None) -> PowerReport:
        """One step for every managed node (at most one state change each); never raises for API trouble.

        doc : the published plan document (None: no plan-driven changes, in-flight steps and
            wake on pending only)
        never_down : nodes the scenario says can never power down (belt and braces)
        """
        report = PowerReport()
        self._doc_nodes = (doc or {}).get("nodes") or {}
        nodes = {n["metadata"]["name"]: n for n in objects.nodes if self.managed(n)}
        facts = {name: node_facts(n) for name, n in nodes.items()}
        live = [p for p in (pod_facts(raw) for raw in objects.pods) if p.phase not in ("Succeeded", "Failed")]
        pods_on: dict[str, list[PodFacts]] = defaultdict(list)
        for p in live:
            if p.node:
                pods_on[p.node].append(p)
        wanted = {n: bool(e.get("powered", True)) for n, e in ((doc or {}).get("nodes") or {}).items() if isinstance(e, dict)}
        never_down = set(never_down or ())
        capacity = self._on_capacity(objects, facts)
        off_count = sum(1 for f in facts.values() if f.state.asleep_or_going)
        limit = self._off_limit(len(facts))
        draining = sum(1 for f in facts.values() if f.state is PowerState.DRAINING)
        # How many more replicas of each workload may be disrupted this round (drains share it).
        workloads = pod_workload_ids(objects)
        by_workload: dict[str, list[PodFacts]] = defaultdict(list)
        for p in live:
            by_workload[workloads.get((p.namespace, p.name), p.key)].append(p)
        self._allowance = {wid: workload_allowance(group, pdbs) for wid, group in by_workload.items()}

        for name in sorted(facts):
            f = facts[name]
            self._mark_managed(f)
            state = f.state
            if state is PowerState.ON:
                started = self._from_on(f, pods_on[name], wanted, never_down, off_count, limit, draining,
                                        capacity, drain_ready, now, report)
                off_count, draining = off_count + started, draining + started
            elif state is PowerState.DRAINING:
                self._from_draining(f, pods_on[name], wanted, workloads, pdbs, now, report)
            elif state is PowerState.POWERING_OFF:
                self._from_powering_off(f, now, report)
            elif state is PowerState.WAKING:
                self._from_waking(f, now, report)
            elif state is PowerState.OFF:
                self._from_off(f, wanted, now, report)
        self._wake_for_pending(objects, nodes, facts, report, now)
        for name, f in facts.items():
            report.states[name] = next((t.target for t in reversed(report.transitions) if t.node == name and t.applied),
                                       f.state)
            if self.metrics is not None:
                self.metrics.node_state(name, report.states[name])
        return report

    # -- the states ---------------------------------------------------------------------
    def _from_on(self, f: NodeFacts, pods: list[PodFacts], wanted: dict[str, bool], never_down: set[str],
                 off_count: int, limit: int, draining: int, capacity: _Capacity,
                 drain_ready, now: datetime, report: PowerReport) -> int:
        o = self.options
        if f.has_powered_down_taint or f.cordoned_by_us:
            # A crash between waking's last steps: finish them (untaint, uncordon).
            self._write(f, PowerState.ON, now, report, "left over from a wake: untaint and uncordon", cordon=False)
            return 0
        if wanted.get(f.name, True) or not f.ready:
            return 0
        why = None
        if f.name in never_down:
            why = "the scenario says it can never power down"
        elif f.unschedulable:
            why = "cordoned by someone else"
        elif f.since is not None and now - f.since < timedelta(seconds=o.min_on_s):
            why = f"on for {int((now - f.since).total_seconds())} s < min_on {o.min_on_s:g} s"
        elif off_count + 1 > limit:
            why = f"{off_count} node(s) are off or on their way; the limit is {limit}"
        elif draining >= o.max_concurrent_drains:
            why = f"{draining} node(s) are draining; at most {o.max_concurrent_drains} at once"
        elif drain_ready is not None and not (ready := drain_ready(f.name))[0]:
            why = f"not yet: {ready[1]}"
        elif (spare := self._spare_after(f.name, pods, capacity)) is not None:
            why = spare
        if why is not None:
            self._hold(f.name, why, report)
            return 0
        self._write(f, PowerState.DRAINING, now, report, "the plan powers it down in this slot", cordon=True)
        return 1

    def _from_draining(self, f: NodeFacts, pods: list[PodFacts], wanted: dict[str, bool],
                       workloads: dict[tuple[str, str], str], pdbs: list[dict], now: datetime,
                       report: PowerReport) -> None:
        o = self.options
        if wanted.get(f.name, False):
            self._write(f, PowerState.ON, now, report, "the plan needs it again: drain cancelled", cordon=False)
            return
        if not f.ready and self._reading(f) is PowerReading.OFF:
            self._write(f, PowerState.OFF, now, report, "it lost power during the drain (the driver reports off)")
            return
        if f.since is not None and now - f.since > timedelta(seconds=o.drain_timeout_s):
            self._event(f.name, "EdgeplaceDrainTimeout", f"the drain did not finish in {o.drain_timeout_s:g} s; "
                        "node put back on", warning=True)
            self._write(f, PowerState.ON, now, report, "drain timed out", cordon=False)
            return
        blocking = [p for p in pods if self.filter.blocks_power_off(p)]
        if not blocking:
            self._power_off(f, now, report)
            return
        stuck, waiting = [], []
        allowance = self._allowance
        for p in sorted(blocking, key=lambda x: x.key):
            if p.terminating:
                continue  # on its way out: wait
            protection = self.filter.why_not(p)
            if protection is not None:
                stuck.append(f"{p.key} ({protection.value})")
                continue
            wid = workloads.get((p.namespace, p.name), p.key)
            if allowance.get(wid, 1) <= 0:
                waiting.append(p.key)  # a PDB allows nothing now, or another replica is down: one at a time
                continue
            result = self.evictor.evict(p, p.namespace, f"draining {f.name}: the plan powers it down",
                                        reason="EdgeplaceDrain")
            report.evictions.append((p.key, f.name, result.value))
            if result in (EvictionResult.EVICTED, EvictionResult.DRY_RUN):
                allowance[wid] = allowance.get(wid, 1) - 1
        if stuck:
            self._hold(f.name, "drain waits for pods edgeplace may not evict: " + ", ".join(stuck[:5]), report)
        elif waiting:
            self._hold(f.name, "drain waits for a PodDisruptionBudget or a replica to come back before evicting "
                       + ", ".join(waiting[:5]), report)

    def _power_off(self, f: NodeFacts, now: datetime, report: PowerReport) -> None:
        """draining -> powering-off: write the state and the operation first, then call the driver once."""
        if not self._write(f, PowerState.POWERING_OFF, now, report, "only DaemonSet pods left",
                           operation=_op(OP_POWER_OFF, OP_REQUESTED, now)):
            return
        self._call(f.name, "power_off", now, report)

    def _from_powering_off(self, f: NodeFacts, now: datetime, report: PowerReport) -> None:
        o = self.options
        action, status, at = _parse_op(f.operation)
        reading = self._reading(f)
        if not f.ready or reading is PowerReading.OFF:
            self._write(f, PowerState.OFF, now, report, "the node is NotReady" if not f.ready else "the driver reports off")
            return
        if status == OP_REQUESTED and at is not None and now - at < timedelta(seconds=o.power_off_timeout_s):
            return  # a call may be in flight (a restart right after the request): wait for it
        if status == OP_SENT and at is not None and now - at < timedelta(seconds=o.power_off_timeout_s):
            return  # sent: wait for the node to go
        try:
            attempts = int(f.annotations.get(ANN_POWER_OFF_ATTEMPTS, "1"))
        except ValueError:
            attempts = 1
        if attempts >= 2:
            self._event(f.name, "EdgeplacePowerOffFailed", f"the node is still on {o.power_off_timeout_s:g} s after "
                        f"{attempts} power-off calls; put back on", warning=True)
            if self.metrics is not None:
                self.metrics.transition(self._driver_name(f), "power_off", "timeout")
            self._write(f, PowerState.ON, now, report, "power-off failed", cordon=False)
            return
        if self._write(f, PowerState.POWERING_OFF, f.since or now, report, "power-off once more",
                       operation=_op(OP_POWER_OFF, OP_REQUESTED, now),
                       extra={ANN_POWER_OFF_ATTEMPTS: str(attempts + 1)}):
            self._call(f.name, "power_off", now, report)

    def _from_off(self, f: NodeFacts, wanted: dict[str, bool], now: datetime, report: PowerReport) -> None:
        if f.ready and self._reading(f) is PowerReading.ON:
            # Someone switched it on by hand (its BMC says on, and it is Ready): take it back into service.
            self._write(f, PowerState.ON, now, report, "it came back on by itself", cordon=False)
            return
        if wanted.get(f.name, False):
            if f.since is not None and now - f.since < timedelta(seconds=self.options.min_off_s):
                self._hold(f.name, f"off for {int((now - f.since).total_seconds())} s < min_off "
                           f"{self.options.min_off_s:g} s", report)
                return
            if not self._may_retry_wake(f, now):
                # A plan made before the failure may still want it; the next one plans around it.
                self._hold(f.name, f"did not wake at {f.annotations[ANN_WAKE_FAILED]}; not retried for "
                           f"{self.options.wake_retry_s:g} s", report)
                return
            self._wake(f, now, report, "the plan needs it in this slot")

    def _may_retry_wake(self, f: NodeFacts, now: datetime) -> bool:
        failed = parse_rfc3339(f.annotations.get(ANN_WAKE_FAILED))
        return failed is None or now - failed > timedelta(seconds=self.options.wake_retry_s)

    def _wake(self, f: NodeFacts, now: datetime, report: PowerReport, why: str) -> bool:
        if not self._write(f, PowerState.WAKING, now, report, why, operation=_op(OP_POWER_ON, OP_REQUESTED, now)):
            return False
        self._call(f.name, "power_on", now, report)
        return True

    def _from_waking(self, f: NodeFacts, now: datetime, report: PowerReport) -> None:
        if f.ready:
            if self._write(f, PowerState.ON, now, report, "the node is Ready", cordon=False) and f.since is not None:
                if self.metrics is not None:
                    self.metrics.woke((now - f.since).total_seconds())
            return
        if f.since is not None and now - f.since > timedelta(seconds=self.options.wake_timeout_s):
            self._event(f.name, "EdgeplaceWakeTimeout", f"not Ready {self.options.wake_timeout_s:g} s after power-on; "
                        "another node is woken instead", warning=True)
            if self.metrics is not None:
                self.metrics.transition(self._driver_name(f), "power_on", "timeout")
            self._write(f, PowerState.OFF, now, report, "did not wake in time",
                        extra={ANN_WAKE_FAILED: rfc3339(now)})
            report.held[f.name] = "did not wake in time"

    # -- waking for pending pods and for failed wakes -------------------------------------
    def _wake_for_pending(self, objects: ClusterObjects, nodes: dict[str, dict], facts: dict[str, NodeFacts],
                          report: PowerReport, now: datetime) -> None:
        """Wake off nodes for pods Pending as unschedulable, and in place of nodes that did not wake.

        Pending pods are packed first into nodes already waking, then into off
        nodes, cheapest to keep on first (the plan's ``open_g_per_h``, else
        the lowest allocatable CPU): a node is woken only for pods that fit
        nowhere that is coming.
        """
        changed = {t.node for t in report.transitions}
        failed_now = [n for n, why in report.held.items() if why == "did not wake in time"]
        pending = []
        if self.options.wake_on_pending:
            for raw in objects.pods:
                pod = pod_facts(raw)
                since = unschedulable_since(pod, raw)
                if since is not None and now - since >= timedelta(seconds=self.options.pending_grace_s):
                    pending.append((pod, raw))
        if not pending and not failed_now:
            return

        def room(n: str) -> list[int]:
            return [facts[n].allocatable_cpu_millicores, facts[n].allocatable_memory_mib]

        cost = {n: float((self._doc_nodes.get(n) or {}).get("open_g_per_h") or 0.0) for n in facts}
        # Only nodes that were off before this round and stayed so (one that just got there may
        # still look Ready, its power-off in flight).
        candidates = sorted((n for n, f in facts.items() if f.state is PowerState.OFF and n not in changed
                             and self._may_retry_wake(f, now)),
                            key=lambda n: (cost.get(n, 0.0), facts[n].allocatable_cpu_millicores, n))
        for lost in failed_now:  # a node that did not wake is replaced by another
            if candidates:
                self._wake(facts[candidates.pop(0)], now, report, f"in place of {lost}, which did not wake")
        # Capacity that is coming or has just come: nodes waking, and nodes Ready since this round or
        # for less than the grace time (kube-scheduler has not retried the pending pods on them yet).
        # Without them, every pod still Pending a moment after its node came up would wake one more.
        just_on = {t.node for t in report.transitions if t.target is PowerState.ON}
        fresh = {n for n, f in facts.items() if f.state is PowerState.ON and f.ready and f.since is not None
                 and now - f.since < timedelta(seconds=self.options.pending_grace_s)}
        used: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for p in objects.pods:
            pf = pod_facts(p)
            if pf.node and pf.phase not in ("Succeeded", "Failed"):
                used[pf.node][0] += pf.requests.get("cpu_millicores", 0)
                used[pf.node][1] += pf.requests.get("memory_mib", 0)
        coming = {n: room(n) for n, f in facts.items() if f.state is PowerState.WAKING and n not in changed}
        coming.update({n: [a - u for a, u in zip(room(n), used[n])] for n in just_on | fresh})
        ignore = (TAINT_POWERED_DOWN, *LIFECYCLE_TAINTS, TAINT_UNSCHEDULABLE)
        for pod, raw in sorted(pending, key=lambda pr: (-pr[0].requests.get("cpu_millicores", 0), pr[0].key)):
            need = [pod.requests.get("cpu_millicores", 0), pod.requests.get("memory_mib", 0)]
            # kube-scheduler's node filters as the scenario reads them (one matcher for both).
            rules = pod_node_rules(raw.get("spec") or {})
            if rules is None:
                continue

            def fits(n: str, free: list[int]) -> bool:
                return (free[0] >= need[0] and free[1] >= need[1]
                        and rules.fits(n, facts[n].labels, facts[n].taints, ignore))

            home = next((n for n, free in coming.items() if fits(n, free)), None)
            if home is None:
                home = next((n for n in candidates if fits(n, room(n))), None)
                if home is None:
                    continue
                candidates.remove(home)
                if not self._wake(facts[home], now, report, f"pod {pod.key} is Pending as unschedulable"):
                    continue
                coming[home] = room(home)
            coming[home][0] -= need[0]
            coming[home][1] -= need[1]

    # -- safety arithmetic ----------------------------------------------------------------
    def _off_limit(self, managed: int) -> int:
        limit = int(self.options.max_off_fraction * managed + 1e-9)
        if self.options.max_nodes_off is not None:
            limit = min(limit, self.options.max_nodes_off)
        return limit

    @staticmethod
    def _on_capacity(objects: ClusterObjects, facts: dict[str, NodeFacts]) -> "_Capacity":
        """Allocatable and requested CPU [millicores] of every Ready, schedulable node that is on."""
        requested: dict[str, int] = defaultdict(int)
        for p in objects.pods:
            f = pod_facts(p)
            if f.node and f.phase not in ("Succeeded", "Failed") and not f.terminating:
                requested[f.node] += f.requests.get("cpu_millicores", 0)
        capacity = _Capacity()
        for node in objects.nodes:
            nf = facts.get(node["metadata"]["name"]) or node_facts(node)
            if nf.ready and not nf.unschedulable and nf.state is PowerState.ON:
                capacity.allocatable[nf.name] = nf.allocatable_cpu_millicores
                capacity.requested[nf.name] = requested[nf.name]
        return capacity

    def _spare_after(self, name: str, pods: list[PodFacts], capacity: "_Capacity") -> str | None:
        """None when the nodes staying on keep the spare-CPU floor after `name`'s pods moved onto
        them (and `capacity` then counts `name` as gone); else why not."""
        moving = sum(p.requests.get("cpu_millicores", 0) for p in pods
                     if self.filter.blocks_power_off(p) and not p.terminating)
        alloc = sum(a for n, a in capacity.allocatable.items() if n != name)
        requested = sum(r for n, r in capacity.requested.items() if n != name) + capacity.moved + moving
        floor = self.options.min_spare_cpu_fraction * alloc
        if alloc - requested < floor:
            return (f"the nodes staying on would keep {max(alloc - requested, 0)} m CPU free, below the floor of "
                    f"{floor:.0f} m ({self.options.min_spare_cpu_fraction:.0%} of {alloc} m)")
        capacity.allocatable.pop(name, None)
        capacity.requested.pop(name, None)
        capacity.moved += moving
        return None

    # -- writing the state ----------------------------------------------------------------
    def _write(self, f: NodeFacts, state: PowerState, now: datetime, report: PowerReport, why: str,
               cordon: bool | None = None, operation: str | None = None, extra: dict[str, str] | None = None) -> bool:
        """Move node `f` to `state` in one resourceVersion-checked update; True when it was written."""
        transition = Transition(f.name, f.state, state, why, applied=False)
        report.transitions.append(transition)
        verb = "would move" if self.options.dry_run else "moves"
        log.info("power: node %s %s %s -> %s: %s", f.name, verb, f.state.value, state.value, why)
        if self.options.dry_run:
            return False

        def mutate(node: dict) -> None:
            meta, spec = node.setdefault("metadata", {}), node.setdefault("spec", {})
            ann = meta.setdefault("annotations", {}) or {}
            meta["annotations"] = ann
            ann[ANN_POWER_STATE] = state.value
            ann[ANN_POWER_SINCE] = rfc3339(now)
            ann.update(MANAGED_NODE_ANNOTATIONS)
            if operation is not None:
                ann[ANN_POWER_OPERATION] = operation
            elif state is PowerState.ON:
                ann.pop(ANN_POWER_OPERATION, None)
                ann.pop(ANN_POWER_OFF_ATTEMPTS, None)
            if state is PowerState.ON:
                ann.pop(ANN_WAKE_FAILED, None)
            ann.update(extra or {})
            taints = [t for t in spec.get("taints") or [] if t.get("key") != TAINT_POWERED_DOWN]
            if state.asleep_or_going:
                taints.append({"key": TAINT_POWERED_DOWN, "value": "true", "effect": "NoSchedule"})
            spec["taints"] = taints
            if cordon is True and not spec.get("unschedulable"):
                spec["unschedulable"] = True
                ann[ANN_CORDONED_BY] = "edgeplace-planner"
            elif cordon is False and ANN_CORDONED_BY in ann:
                spec["unschedulable"] = False
                ann.pop(ANN_CORDONED_BY, None)

        if self._update(f.name, f.state, mutate):
            transition.applied = True
            self._event(f.name, f"EdgeplacePower{state.value.title().replace('-', '')}",
                        f"power state {f.state.value} -> {state.value}: {why}")
            return True
        return False

    def _update(self, name: str, expect: PowerState | None, mutate: Callable[[dict], None]) -> bool:
        """Read the Node, check its power state is still `expect` (None: any; another replica may
        have moved it since the listing this decision came from), mutate it and write it back with
        the resourceVersion just read: a concurrent write makes it a 409, and the next round decides
        again. True when written."""
        import json

        from kubernetes.client.exceptions import ApiException

        try:
            node = json.loads(self.core.read_node(name, _preload_content=False).data)
            if expect is not None and node_facts(node).state is not expect:
                log.info("power: node %s changed state meanwhile; deciding again next round", name)
                return False
            mutate(node)
            self.core.replace_node(name, node, _preload_content=False)
            return True
        except ApiException as exc:
            log.warning("power: cannot update node %s: HTTP %s %s", name, exc.status, exc.reason)
            return False

    def _mark_managed(self, f: NodeFacts) -> None:
        """The autoscaler annotations on every managed node (once)."""
        if self.options.dry_run or all(f.annotations.get(k) == v for k, v in MANAGED_NODE_ANNOTATIONS.items()):
            return
        try:
            self.core.patch_node(f.name, {"metadata": {"annotations": dict(MANAGED_NODE_ANNOTATIONS)}})
        except Exception as exc:  # noqa: BLE001 - retried next round
            log.warning("power: cannot annotate node %s: %s", f.name, exc)

    # -- drivers ----------------------------------------------------------------------------
    def _driver_name(self, f: NodeFacts) -> str:
        driver = self.drivers.driver_of(f.annotations)
        return driver.name if driver is not None else "none"

    def _reading(self, f: NodeFacts) -> PowerReading:
        driver = self.drivers.driver_of(f.annotations)
        if driver is None:
            return PowerReading.UNKNOWN
        try:
            return driver.power_state(self.drivers.target(f.name, f.annotations))
        except Exception as exc:  # noqa: BLE001 - a BMC that does not answer: the Node's Ready condition decides
            log.info("power: node %s: cannot read its power state: %s", f.name, exc)
            return PowerReading.UNKNOWN

    def _call(self, name: str, action: str, now: datetime, report: PowerReport) -> None:
        """Call the driver for `action` (power_on / power_off) and record the outcome on the node."""
        import json

        node = json.loads(self.core.read_node(name, _preload_content=False).data)
        f = node_facts(node)
        driver = self.drivers.driver_of(f.annotations)
        op = OP_POWER_OFF if action == "power_off" else OP_POWER_ON
        try:
            target = self.drivers.target(name, f.annotations, _internal_ip(node))
            getattr(driver, action)(target)
            status, result = OP_SENT, "ok"
            log.info("power: node %s: %s sent through %s", name, action, driver.name)
        except PowerError as exc:
            status, result = OP_FAILED, "error"
            log.warning("power: node %s: %s failed: %s", name, action, exc)
            self._event(name, "EdgeplacePowerError", str(exc), warning=True)
            report.held[name] = str(exc)
        if self.metrics is not None:
            self.metrics.transition(driver.name, action, result)

        def record(n: dict) -> None:
            n["metadata"].setdefault("annotations", {})[ANN_POWER_OPERATION] = _op(op, status, now)

        self._update(name, None, record)

    # -- reporting -------------------------------------------------------------------------
    def _hold(self, node: str, why: str, report: PowerReport) -> None:
        report.held[node] = why
        if self._reported.get(node) != why:
            self._reported[node] = why
            log.info("power: node %s stays as it is: %s", node, why)

    def _event(self, node: str, reason: str, note: str, warning: bool = False) -> None:
        if self.recorder is not None and not self.options.dry_run:
            self.recorder.record(Regarding("Node", node), reason, note, action="Power", warning=warning)



@dataclass
class _Capacity:
    """CPU of the nodes that are on [millicores], and what drains this round move onto them."""

    allocatable: dict[str, int] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    moved: int = 0


def _internal_ip(node: dict) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if isinstance(a, dict) and a.get("type") == "InternalIP":
            return str(a.get("address") or "")
    return ""
