"""The planner loop: read the cluster, plan, publish, release gates; again on change.

One round (`Planner.plan_once`):

1. list Nodes, Pods, Namespaces and workloads (`edgeplace.k8s.mapping.read_cluster`)
   and map them to a scenario whose horizon starts at the current slot and
   whose ``current`` placement is where the pods run now
   (`edgeplace.k8s.mapping.map_cluster`);
2. solve it (`edgeplace.optimizer.solve.solve`) with the migration penalty
   (`Objective.migration_g_per_replica`) charged for moving a running
   replica off its node. This is the rolling-horizon re-plan of
   `edgeplace.optimizer.rolling.replan`, with the cluster rather than the previous
   plan as the source of "where things run now";
3. turn slot 0 of the plan into the extender's plan document
   (`edgeplace.k8s.extender.table.build_plan_document`) and publish it
   (`edgeplace.k8s.publish`: resourceVersion-checked, validated first);
4. release the scheduling gates of deferrable Jobs whose planned start has
   come (`edgeplace.k8s.gates`); with `PlannerOptions.isolation_namespace`,
   first keep tenant isolation in the cluster's own taints, namespace labels
   and admission parameters (`edgeplace.k8s.isolation.reconcile`, from the
   round's listing), so it holds with the extender down;
5. carry the plan out (`edgeplace.k8s.actuation`): drain and power off the
   nodes it lets sleep and wake the ones it needs, and move running pods
   where the move pays (after every round, and every
   `ActuationOptions.period_s` between rounds).

A failed mapping or solve publishes nothing, so the last good plan stays in
place (and the extender fails open once its ``valid_until`` passes).

When rounds happen: every `PlannerOptions.period_s`, and after a change of
Nodes or Pods, debounced (`Debouncer`): a round starts once no change came
for `debounce_s`, or `max_delay_s` after the first change of a burst, so a
rollout of 100 pods costs one re-plan, not 100.

Change detection uses ``watch`` on Nodes and Pods (kubernetes
``watch.Watch``), not a periodic list: a watch delivers a change within
milliseconds at the cost of one open connection per kind, where a list every
few seconds would move every object of the cluster each time. The watch
only *triggers*; each round lists afresh, so a round always plans from a
consistent snapshot and the planner keeps no informer cache to get wrong.
Events are filtered to what matters to a plan (a pod bound, gated, started
or gone; a node's labels, annotations, allocatable, taints or schedulability
changed), so status heartbeats do not cause re-plans. Each watch starts
from a list's resourceVersion; a broken watch (410 Gone, an error) is
re-listed, and the re-list triggers a round only if some signature changed.

Only the leader (`edgeplace.k8s.leader.LeaderElector`) plans; other replicas wait.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from edgeplace.k8s import gates, isolation, steering, suspend
from edgeplace.k8s.actuation.actuator import Actuator
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.extender.table import DEFAULT_VALID_FOR_S, PlanError, build_plan_document
from edgeplace.k8s.leader import LeaderElector
from edgeplace.k8s.mapping import (GATE_DEFERRED, ClusterConfig, ClusterObjects, MappedCluster, MappingOptions,
                                   map_cluster, read_cluster)
from edgeplace.k8s.publish import PublishError
from edgeplace.optimizer.solve import Plan, SolveOptions, solve
from edgeplace.topology.errors import InputError
from edgeplace.topology.scenario import Scenario

log = logging.getLogger("edgeplace.k8s.planner")


# ---------------------------------------------------------------------------
# When to plan


class Debouncer:
    """Turns bursts of changes into one trigger.

    `mark(now)` records a change; `due(now)` is True once `quiet_s` passed
    since the last change, or `max_delay_s` since the first change of the
    burst (so a steady trickle of changes cannot postpone a round forever);
    `reset()` after the round. Times are monotonic seconds. Thread-safe.
    """

    def __init__(self, quiet_s: float, max_delay_s: float):
        if not 0 <= quiet_s <= max_delay_s:
            raise ValueError(f"need 0 <= quiet_s <= max_delay_s (got {quiet_s}, {max_delay_s})")
        self.quiet_s, self.max_delay_s = quiet_s, max_delay_s
        self._first: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def mark(self, now: float) -> None:
        with self._lock:
            if self._first is None:
                self._first = now
            self._last = now

    @property
    def pending(self) -> bool:
        return self._first is not None

    def due(self, now: float) -> bool:
        with self._lock:
            if self._first is None:
                return False
            return now - self._last >= self.quiet_s or now - self._first >= self.max_delay_s

    def reset(self) -> None:
        with self._lock:
            self._first = self._last = None


def pod_signature(pod: dict) -> tuple:
    """What of a pod matters to a plan: its node, phase, gates, requests owner and whether it is going."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    gates_ = tuple(g.get("name") for g in spec.get("schedulingGates") or [] if isinstance(g, dict))
    return (spec.get("nodeName"), status.get("phase"), gates_, bool(meta.get("deletionTimestamp")))


def node_signature(node: dict) -> tuple:
    """What of a node matters to a plan (not its heartbeats or conditions)."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return (json.dumps(meta.get("labels") or {}, sort_keys=True),
            json.dumps({k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("edgeplace.io/")},
                       sort_keys=True),
            json.dumps(status.get("allocatable") or {}, sort_keys=True),
            json.dumps(spec.get("taints") or [], sort_keys=True), bool(spec.get("unschedulable")))


# ---------------------------------------------------------------------------
# Options and results


@dataclass(frozen=True)
class PlannerOptions:
    """How the planner behaves; see the module docstring.

    period_s : plan at least this often [s]
    debounce_s, max_delay_s : see `Debouncer` [s]
    solve : solver options (objective with the migration penalty [gCO2e per moved replica])
    valid_for_s : how long a published plan stays valid without a newer one [s]
    release_gates : remove edgeplace.io/deferred gates at planned starts
    tick_s : how often the loop checks triggers and gate releases [s]
    isolation_namespace : keep tenant isolation each round (`edgeplace.k8s.isolation.reconcile`),
        its parameter ConfigMap in this namespace; None = do not (`edgeplace apply-isolation` by hand)
    steering_namespace : write the admission steering parameters of each published plan
        (`edgeplace.k8s.steering`) to a ConfigMap in this namespace; None = do not
    extender_marks : with steering, have the policy mark pods for the extender (its
        managedResources; `edgeplace.k8s.steering`); False = mark none
    extender_every_pod_from : mark every pod once the cluster has at least this many nodes
        (below it, only the pods steering does not cover); 0 = always
    """

    period_s: float = 300.0
    debounce_s: float = 5.0
    max_delay_s: float = 30.0
    solve: SolveOptions = field(default_factory=lambda: SolveOptions(solver="cpsat", time_limit_s=20.0,
                                                                     bound_time_limit_s=0.0))
    valid_for_s: float = DEFAULT_VALID_FOR_S
    release_gates: bool = True
    tick_s: float = 1.0
    isolation_namespace: str | None = None
    steering_namespace: str | None = None
    extender_marks: bool = True
    extender_every_pod_from: int = steering.DEFAULT_EVERY_POD_FROM

    def __post_init__(self) -> None:
        if not (self.period_s > 0 and self.tick_s > 0 and self.valid_for_s > 0):
            raise ValueError("period_s, tick_s and valid_for_s must be > 0")
        if self.extender_every_pod_from < 0:
            raise ValueError("extender_every_pod_from must be >= 0 (0: every pod goes to the extender)")
        if self.valid_for_s <= self.period_s:
            log.warning("planner: valid_for_s (%g s) <= period_s (%g s): plans go stale between rounds",
                        self.valid_for_s, self.period_s)


@dataclass
class PlanRound:
    """What one round did. outcome: published | unchanged | superseded | mapping_failed |
    solve_failed | publish_failed | not_leader."""

    outcome: str
    detail: str = ""
    started_at: datetime | None = None
    seconds: float = 0.0
    plan_summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    powered_down: list[str] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)  # (namespace/pod, reason)
    isolation: list[str] = field(default_factory=list)  # what keeping isolation changed, one line each
    steering: str = ""  # the steering parameters: created | updated | unchanged ("" when not kept)


class Publisher:
    """What the planner publishes through (`edgeplace.k8s.publish.ConfigMapPlanPublisher`, `FilePlanPublisher`)."""

    where: str

    def publish(self, doc: dict[str, Any]): ...


# ---------------------------------------------------------------------------
# The planner


class Planner:
    """Reads the cluster, plans and publishes; see the module docstring.

    Parameters
    ----------
    api_client : a `kubernetes.client.ApiClient`
    publisher : where plans go (`Publisher`)
    config : the site config (`edgeplace.k8s.mapping.ClusterConfig`)
    options : `PlannerOptions`
    elector : a `LeaderElector`; None = always act (a single replica)
    actuator : an `edgeplace.k8s.actuation.actuator.Actuator` that carries plans
        out; None = publish only
    metrics : the `PlannerMetrics` to record into (default: a new registry)
    reader, solver, clock : injectable for tests (default: `read_cluster`,
        `edgeplace.optimizer.solve.solve`, the UTC wall clock)
    mapper : objects -> scenario (default `map_cluster`; Kueue's `edgeplace.k8s.kueue.map_with_kueue`)

    `plan_listeners` are called with (mapped cluster, plan, now) after each
    successful solve, before publishing (Kueue's admission controller is one).
    """

    def __init__(self, api_client, publisher: Publisher, config: ClusterConfig | None = None,
                 options: PlannerOptions | None = None, elector: LeaderElector | None = None,
                 reader: Callable[[Any], ClusterObjects] = read_cluster,
                 solver: Callable[[Scenario, SolveOptions], Plan] = solve,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 actuator: Actuator | None = None, metrics: PlannerMetrics | None = None,
                 mapper: Callable[[ClusterObjects, ClusterConfig, MappingOptions], MappedCluster] = map_cluster):
        self.api_client = api_client
        self.publisher = publisher
        self.config = config or ClusterConfig()
        self.options = options or PlannerOptions()
        self.elector = elector
        self.reader, self.solver, self.clock, self.mapper = reader, solver, clock, mapper
        self.plan_listeners: list[Callable[[MappedCluster, Plan, datetime], None]] = []
        self.actuator = actuator
        self.metrics = metrics or (actuator.metrics if actuator is not None else PlannerMetrics())
        self.last_mapped: MappedCluster | None = None  # the scenario of the last published plan
        self.core = client.CoreV1Api(api_client) if api_client is not None else None
        self.debouncer = Debouncer(self.options.debounce_s, self.options.max_delay_s)
        self.last_round: PlanRound | None = None
        self.last_published: dict[str, Any] | None = None  # the last plan document this planner published
        self.starts: dict[str, datetime] | None = None  # planned starts of deferrable jobs (None: no plan yet)
        self.running_now: set[str] = set()  # interruptible jobs the plan runs in slot 0 (edgeplace.k8s.suspend)
        self._signatures: dict[str, dict[str, tuple]] = {"pods": {}, "nodes": {}}
        self.listed: set[str] = set()  # kinds whose watch has its initial listing ("nodes", "pods")
        self._watches: list[watch.Watch] = []
        self._release_at: list[datetime] = []  # times at which gates may have to be released
        self._lock = threading.Lock()  # one round at a time
        self._marks_refused: list[str] = []  # marked pods kube-scheduler found no node for: marks stop

    # -- one round -------------------------------------------------------------------
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def plan_once(self, now: datetime | None = None) -> PlanRound:
        """Read, map, solve, publish, apply power-down, release gates; never raises for
        cluster or input trouble (the outcome says what happened)."""
        with self._lock:
            round_ = self._plan_once(now or self.clock())
        self.last_round = round_
        self.metrics.round(round_.outcome)
        level = logging.INFO if round_.outcome in ("published", "unchanged", "superseded", "not_leader") else logging.WARNING
        log.log(level, "planner: round %s in %.2f s%s", round_.outcome, round_.seconds,
                f": {round_.detail}" if round_.detail else "")
        return round_

    def _plan_once(self, now: datetime) -> PlanRound:
        started = time.perf_counter()
        result = PlanRound("not_leader", started_at=now)
        if not self.leading():
            return result
        try:
            objects = self.reader(self.api_client)
        except Exception as exc:  # noqa: BLE001 - API down: keep the old plan
            return self._done(result, "mapping_failed", f"cannot read the cluster: {type(exc).__name__}: {exc}", started)
        if self.options.isolation_namespace is not None:
            self._keep_isolation(objects, result)
        try:
            mapped = self.mapper(objects, self.config, MappingOptions(now=now))
        except InputError as exc:
            # Deadlines still hold: release what must start now even without a plan.
            result.released = self._release(objects, None, now)
            return self._done(result, "mapping_failed", exc.render(limit=20), started)
        result.warnings += mapped.warnings
        try:
            plan = self.solver(mapped.scenario, self.options.solve)
        except Exception as exc:  # noqa: BLE001 - a solver bug must not take the old plan down
            log.exception("planner: solve failed; keeping the previous plan")
            result.released = self._release(objects, None, now)
            return self._done(result, "solve_failed", f"{type(exc).__name__}: {exc}", started)
        result.plan_summary = plan.summary()
        doc = build_plan_document(mapped.scenario, plan.placement, slot=0, valid_for_s=self.options.valid_for_s,
                                  now=now, evaluation=plan.evaluation)
        if not self.leading():  # lost the lease while solving: publish nothing
            return self._done(result, "not_leader", "lost leadership while solving", started)
        for listener in self.plan_listeners:
            listener(mapped, plan, now)
        try:
            published = self.publisher.publish(doc)
        except (PublishError, PlanError, ApiException, OSError) as exc:
            result.released = self._release(objects, None, now)
            return self._done(result, "publish_failed", str(exc), started)
        self.last_published, self.last_mapped = doc, mapped
        if self.options.steering_namespace is not None:
            self._keep_steering(doc, objects, result)
        self.starts = gates.planned_starts(mapped.scenario, plan.placement)
        self.running_now = suspend.running_in_slot(mapped.scenario, plan.placement)
        down = sorted(n for n, entry in doc["nodes"].items() if not entry["powered"])
        result.powered_down = down
        self.metrics.plan(plan, len(down))
        result.released = self._release(objects, self.starts, now)
        return self._done(result, "published" if published.outcome in ("created", "updated") else published.outcome,
                          f"{published.outcome} {self.publisher.where} ({plan.solver}, {plan.status}, "
                          f"{plan.evaluation.totals['operational_emissions_g'] / 1000:.3f} kgCO2e operational "
                          f"(location-based) over the horizon)", started)

    def _keep_isolation(self, objects: ClusterObjects, result: PlanRound) -> None:
        """Isolation state written from this round's listing; trouble is a warning, not a failed round
        (the admission policies keep refusing escapes with the parameters they have)."""
        try:
            changes = isolation.reconcile(self.api_client, self.config, objects, namespace=self.options.isolation_namespace)
        except InputError as exc:
            result.warnings.append(f"isolation not kept: {exc.render(limit=5)}")
            return
        except ApiException as exc:  # 409: a node changed under us, the next round retries; 403: RBAC
            result.warnings.append(f"isolation not kept this round: {exc.status} {exc.reason}")
            return
        result.isolation = [str(c) for c in changes]
        for line in result.isolation:
            log.info("planner: isolation: %s", line)

    def _keep_steering(self, doc: dict[str, Any], objects: ClusterObjects, result: PlanRound) -> None:
        """The admission steering parameters of the plan just published; trouble is a warning (pods are
        then steered by the previous parameters, or created as written)."""
        params, warnings = steering.data(doc, steering.node_hostnames(objects.nodes), self._extender_mark(objects))
        result.warnings += warnings + self._mark_warnings()
        try:
            result.steering = steering.publish(self.api_client, params, self.options.steering_namespace)
        except ApiException as exc:
            result.warnings.append(f"steering parameters not written this round: {exc.status} {exc.reason}")

    def _extender_mark(self, objects: ClusterObjects) -> str | None:
        """Which pods the steering policy marks for the extender this round (`steering.data`'s
        `mark`). Marks stop for good once a marked pod is found unschedulable for the mark: that
        kube-scheduler counts the resource, so every marked pod would stay Pending."""
        if not self.options.extender_marks:
            return None
        self._marks_refused = self._marks_refused or steering.stuck_pods(objects.pods)
        if self._marks_refused:
            return None
        return (steering.EVERY_POD if len(objects.nodes) >= self.options.extender_every_pod_from
                else steering.UNSTEERED)

    def _mark_warnings(self) -> list[str]:
        if not self._marks_refused:
            return []
        pods = ", ".join(self._marks_refused[:3]) + (" ..." if len(self._marks_refused) > 3 else "")
        return [f"steering: no pods are marked for the extender any more: kube-scheduler found no node for "
                f"{len(self._marks_refused)} marked pod(s) ({pods}), so its extender stanza lacks "
                f"managedResources [{{name: {steering.UNSTEERED_RESOURCE}, ignoredByScheduler: true}}] "
                "(deploy/kube-scheduler-config.yaml). Add it and restart the planner; delete those pods to have "
                "their controllers recreate them unmarked"]

    @staticmethod
    def _done(result: PlanRound, outcome: str, detail: str, started: float) -> PlanRound:
        result.outcome, result.detail, result.seconds = outcome, detail, time.perf_counter() - started
        return result

    # -- gates ------------------------------------------------------------------------
    def _release(self, objects: ClusterObjects, starts: dict[str, datetime] | None,
                 now: datetime) -> list[tuple[str, str]]:
        self._release_at = self.release_times(objects)
        if not self.options.release_gates or self.core is None or not self.leading():
            return []
        released = []
        for pod, reason in gates.due_releases(gates.gated_pods(objects), starts, now):
            try:
                if gates.remove_gate(self.core, pod.namespace, pod.name, GATE_DEFERRED, uid=pod.uid):
                    released.append((f"{pod.namespace}/{pod.name}", reason))
                    log.info("planner: released %s/%s (%s)", pod.namespace, pod.name, reason)
            except ApiException as exc:
                log.warning("planner: cannot release %s/%s: HTTP %s %s", pod.namespace, pod.name, exc.status, exc.reason)
        # Interruptible Jobs: suspended and resumed as the plan's slot 0 (or their deadline) says.
        return released + suspend.apply(self.core.api_client, objects.jobs, None if starts is None else self.running_now, now)

    def release_due(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """Between rounds: release gated pods whose planned start (or latest start) has come."""
        now = now or self.clock()
        if not self.options.release_gates or self.core is None or not self.leading():
            return []
        objects = ClusterObjects(pods=_list_json(self.core.list_pod_for_all_namespaces),
                                 jobs=_list_json(client.BatchV1Api(self.api_client).list_job_for_all_namespaces))
        return self._release(objects, self.starts, now)

    def release_times(self, objects: ClusterObjects) -> list[datetime]:
        """When gates may next have to be released: planned starts, and latest starts of gated pods."""
        times = set((self.starts or {}).values())
        times |= {g.latest_start for g in gates.gated_pods(objects) if g.latest_start is not None}
        return sorted(times)

    # -- actuation ----------------------------------------------------------------------
    def actuate(self, now: datetime | None = None, force_rebalance: bool = False):
        """One actuation cycle on the last published plan (`Actuator.act`); None without an actuator,
        when not leading, or before the first plan (the power lifecycle still finishes steps it began)."""
        if self.actuator is None or not self.leading():
            return None
        return self.actuator.act(self.last_mapped, self.last_published, now or self.clock(), time.monotonic(),
                                 force_rebalance=force_rebalance)

    # -- watching ---------------------------------------------------------------------
    def observe(self, kind: str, event_type: str, obj: dict, now: float | None = None) -> bool:
        """Feed one watch event; True (and the debouncer marked) when it matters to a plan."""
        meta = obj.get("metadata") or {}
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        table = self._signatures[kind]
        if event_type == "DELETED":
            changed = table.pop(uid, None) is not None
        elif event_type in ("ADDED", "MODIFIED"):
            sig = pod_signature(obj) if kind == "pods" else node_signature(obj)
            changed = table.get(uid) != sig
            table[uid] = sig
        else:  # BOOKMARK, ERROR
            changed = False
        if changed:
            self.debouncer.mark(time.monotonic() if now is None else now)
        return changed

    def _relist(self, kind: str, list_fn, first: bool) -> str:
        """List `kind`, replace its signatures, and return the list's resourceVersion to watch from.

        The first listing only seeds the signatures (the loop plans at start
        anyway); a re-list after a broken watch triggers a round if anything
        changed meanwhile, deletions included.
        """
        doc = json.loads(list_fn(_preload_content=False, _request_timeout=60).data)
        table = {}
        for obj in doc.get("items") or []:
            meta = obj.get("metadata") or {}
            uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
            table[uid] = pod_signature(obj) if kind == "pods" else node_signature(obj)
        if not first and table != self._signatures[kind]:
            self.debouncer.mark(time.monotonic())
        self._signatures[kind] = table
        self.listed.add(kind)
        return (doc.get("metadata") or {}).get("resourceVersion", "")

    def _watch_loop(self, kind: str, stop: threading.Event) -> None:
        """List, then watch from the list's resourceVersion (with bookmarks); re-list when the
        watch breaks (410 Gone or an error). Watching without a resourceVersion is avoided: with
        bookmarks it needs etcd's progress notifications, which older etcd lacks."""
        list_fn = self.core.list_node if kind == "nodes" else self.core.list_pod_for_all_namespaces
        resource_version: str | None = None
        first = True
        while not stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist(kind, list_fn, first)
                    first = False
                w = watch.Watch()
                self._watches.append(w)
                try:
                    for event in w.stream(list_fn, resource_version=resource_version, timeout_seconds=60,
                                          allow_watch_bookmarks=True, _request_timeout=90):
                        if stop.is_set():
                            break
                        raw = event.get("raw_object") or {}
                        version = (raw.get("metadata") or {}).get("resourceVersion")
                        if version:
                            resource_version = version
                        self.observe(kind, event.get("type", ""), raw)
                finally:
                    w.stop()
                    self._watches.remove(w)
            except ApiException as exc:
                resource_version = None  # 410 Gone or another error: re-list
                if exc.status != 410:
                    log.warning("planner: watch %s: HTTP %s %s; re-listing", kind, exc.status, exc.reason)
                    stop.wait(2.0)
            except Exception as exc:  # noqa: BLE001 - connection reset and the like
                resource_version = None
                if not stop.is_set():
                    log.warning("planner: watch %s: %s: %s; re-listing", kind, type(exc).__name__, exc)
                    stop.wait(2.0)

    # -- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event, watch_changes: bool = True) -> None:
        """Plan periodically and on change until `stop` is set (see the module docstring)."""
        threads = []
        if watch_changes:
            for kind in ("nodes", "pods"):
                t = threading.Thread(target=self._watch_loop, args=(kind, stop), name=f"edgeplace-watch-{kind}",
                                     daemon=True)
                t.start()
                threads.append(t)
        next_round = time.monotonic()
        next_actuation = next_round
        was_leading = False
        while not stop.is_set():
            now = time.monotonic()
            leading = self.leading()
            if leading and not was_leading:
                next_round = now  # a new leader plans at once
            was_leading = leading
            if leading and (now >= next_round or self.debouncer.due(now)):
                self.debouncer.reset()
                published = self.plan_once().outcome == "published"
                next_round = time.monotonic() + self.options.period_s
                if self.actuator is not None:
                    self.actuate(force_rebalance=published)
                    next_actuation = time.monotonic() + self.actuator.options.period_s
            elif leading and self.actuator is not None and now >= next_actuation:
                self.actuate()
                next_actuation = time.monotonic() + self.actuator.options.period_s
            elif leading and self._release_at and self._release_at[0] <= self.clock():
                self.release_due()  # recomputes _release_at from what is still gated
                wall = self.clock()
                self._release_at = [t for t in self._release_at if t > wall]
            stop.wait(self.options.tick_s)
        for w in list(self._watches):
            w.stop()


def _list_json(call) -> list[dict]:
    return json.loads(call(_preload_content=False).data).get("items") or []
