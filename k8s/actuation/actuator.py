"""One actuation cycle: the power lifecycle, then the rebalancer, on a fresh read of the cluster.

The planner calls `Actuator.act` after each plan round and every
`ActuationOptions.period_s` between rounds (drains progress, woken nodes
come back, pending pods wake nodes within seconds, not at the next plan).
Each cycle:

1. lists Nodes, Pods, the workloads and PodDisruptionBudgets;
2. reconciles the node power lifecycle (`edgeplace.k8s.actuation.power`)
   with the published plan document; a drain starts only where emptying the
   node pays its migration cost (`rebalance.MoveEvaluator`) and its pods can
   go where the plan puts them now (those nodes on and Ready, with room and
   no tenant they may not share a node with), as Karpenter checks that pods
   fit elsewhere before it disrupts a node;
3. every `rebalance_period_s`, runs a rebalancing cycle
   (`edgeplace.k8s.actuation.rebalance`) for the pods not on draining nodes,
   counting as sleepable only the nodes the power lifecycle really switches.

Both share one `PodEvictor`, so the budgets bound the cycle as a whole.
``off`` / ``dry-run`` / ``apply`` per part: a dry run decides and logs the
same, changes nothing, and writes no Events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from edgeplace.k8s.actuation.drivers import Drivers, default_drivers
from edgeplace.k8s.actuation.events import EventRecorder
from edgeplace.k8s.actuation.evictor import EvictionBudget, PodEvictor
from edgeplace.k8s.actuation.history import ConfigMapHistoryStore, HistoryStore
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.actuation.objects import PowerState, node_facts
from edgeplace.k8s.actuation.power import PowerLifecycle, PowerOptions, PowerReport
from edgeplace.k8s.actuation.rebalance import (MoveEvaluator, RebalanceOptions, RebalanceReport, Rebalancer,
                                               _candidates)
from edgeplace.k8s.mapping import ClusterObjects, MappedCluster

log = logging.getLogger("edgeplace.k8s.actuation")

Mode = Literal["off", "dry-run", "apply"]
MODES = ("off", "dry-run", "apply")


@dataclass(frozen=True)
class ActuationOptions:
    """What actuation does and how often (see the module docstring).

    rebalance, power : "off", "dry-run" or "apply" for the rebalancer and the power lifecycle
    period_s : seconds between cycles between plan rounds
    rebalance_period_s : seconds between rebalancing cycles (its budgets are per cycle)
    namespace : the planner's namespace: power-driver Secrets and the move history ConfigMap
    price_sleep : price moves as if the power lifecycle switches emptied managed nodes off
        (None: only when power is "apply"; `edgeplace rebalance` sets it to show what
        the planner with ``--power apply`` would do)
    """

    rebalance: Mode = "dry-run"
    power: Mode = "dry-run"
    period_s: float = 10.0
    rebalance_period_s: float = 60.0
    namespace: str = "edgeplace-system"
    budget: EvictionBudget = field(default_factory=EvictionBudget)
    rebalancing: RebalanceOptions = field(default_factory=RebalanceOptions)
    powering: PowerOptions = field(default_factory=PowerOptions)
    power_off_command: str | None = None
    price_sleep: bool | None = None

    def __post_init__(self) -> None:
        for name in ("rebalance", "power"):
            if getattr(self, name) not in MODES:
                raise ValueError(f"{name} must be one of {', '.join(MODES)} (got {getattr(self, name)!r})")
        if not (self.period_s > 0 and self.rebalance_period_s >= 0):
            raise ValueError("period_s must be > 0 and rebalance_period_s >= 0")

    @property
    def enabled(self) -> bool:
        return self.rebalance != "off" or self.power != "off"


@dataclass
class ActuationReport:
    power: PowerReport | None = None
    rebalance: RebalanceReport | None = None


class Actuator:
    """Carries published plans out; see the module docstring.

    api_client : a `kubernetes.client.ApiClient`
    drivers, store, reader : injectable for tests (default: every driver, the
        history ConfigMap, `edgeplace.k8s.mapping.read_cluster`)
    """

    def __init__(self, api_client, options: ActuationOptions | None = None, metrics: PlannerMetrics | None = None,
                 drivers: Drivers | None = None, store: HistoryStore | None = None, reader=None,
                 identity: str = "edgeplace-planner"):
        from kubernetes import client

        from edgeplace.k8s.mapping import read_cluster

        self.options = o = options or ActuationOptions()
        self.metrics = metrics = metrics or PlannerMetrics()
        self.core = client.CoreV1Api(api_client)
        self.reader = reader or read_cluster
        self.api_client = api_client
        recorder = EventRecorder(api_client, identity)
        self.power_evictor = PodEvictor(self.core, o.budget, dry_run=o.power != "apply",
                                        recorder=recorder if o.power == "apply" else None, metrics=metrics)
        self.rebalance_evictor = PodEvictor(self.core, o.budget, dry_run=o.rebalance != "apply",
                                            recorder=recorder if o.rebalance == "apply" else None, metrics=metrics)
        powering = replace(o.powering, dry_run=o.power != "apply")
        self.drivers = drivers or default_drivers(api_client, o.namespace, o.power_off_command)
        self.power = PowerLifecycle(self.core, self.drivers, self.power_evictor, powering, recorder, metrics)
        self.rebalancer = Rebalancer(o.rebalancing, self.rebalance_evictor,
                                     store or ConfigMapHistoryStore(api_client, o.namespace), metrics)
        self._last_rebalance: float | None = None
        self.last_report: ActuationReport | None = None  # the last cycle's (for the CLI, tests, a debug endpoint)

    def act(self, mapped: MappedCluster | None, doc: dict[str, Any] | None, now: datetime, monotonic: float,
            force_rebalance: bool = False) -> ActuationReport:
        """One cycle (see the module docstring); never raises for cluster trouble."""
        report = ActuationReport()
        try:
            objects = self.reader(self.api_client)
        except Exception as exc:  # noqa: BLE001 - the API server away: next cycle
            log.warning("actuation: cannot read the cluster: %s: %s", type(exc).__name__, exc)
            return report
        self.power_evictor.start_cycle()
        self.rebalance_evictor.start_cycle()
        pdbs = objects.poddisruptionbudgets
        if self.options.power != "off":
            never = set()
            if mapped is not None:
                sc = mapped.scenario
                never = {n for n, can in zip(sc.node_ids, sc.node_can_power_down) if not can}
            ready = self._drain_ready(mapped, objects, doc) if mapped is not None and doc is not None else None
            report.power = self.power.reconcile(objects, doc, pdbs, now, drain_ready=ready, never_down=never)
        due = force_rebalance or self._last_rebalance is None or \
            monotonic - self._last_rebalance >= self.options.rebalance_period_s
        if self.options.rebalance != "off" and mapped is not None and doc is not None and due:
            self._last_rebalance = monotonic
            context = self.context(objects, report.power)
            report.rebalance = self.rebalancer.cycle(mapped, objects, doc, now, pdbs, **context)
        self.last_report = report
        return report

    def context(self, objects: ClusterObjects, power: PowerReport | None) -> dict[str, Any]:
        """What the rebalancer needs to know of the power lifecycle: which nodes sleep when empty,
        which are being drained, which are on and Ready to receive pods."""
        sleepable, draining, ready = set(), set(), set()
        for node in objects.nodes:
            f = node_facts(node)
            state = (power.states.get(f.name) if power is not None else None) or f.state
            sleeps = self.options.power == "apply" if self.options.price_sleep is None else self.options.price_sleep
            if sleeps and self.power.managed(node):
                sleepable.add(f.name)
            if state in (PowerState.DRAINING, PowerState.POWERING_OFF):
                draining.add(f.name)
            if f.ready and state is PowerState.ON and not f.unschedulable:
                ready.add(f.name)
        return {"sleepable": sleepable, "draining": draining, "ready_nodes": ready}

    def _drain_ready(self, mapped: MappedCluster, objects: ClusterObjects, doc: dict[str, Any]):
        """node -> (ready, why): emptying the node (its pods to the plan's nodes, the node asleep)
        saves more than its moves' migration cost (the rebalancer's rule for a group), and every
        move can be made now: its target on and Ready, with room, and no tenant it may not share
        a node with (`rebalance.feasible_now`)."""
        sc = mapped.scenario
        moves, replica_node, _ = _candidates(sc, objects, doc)
        context = self.context(objects, None)
        sleep = np.isin(np.array(sc.node_ids, dtype=object), list(context["sleepable"]))
        options = self.options.rebalancing
        evaluator = MoveEvaluator(sc, replica_node, sleep, options.cost, options.objective) if sc.n_replicas else None
        index = {n: i for i, n in enumerate(sc.node_ids)}

        def ready(node: str) -> tuple[bool, str]:
            group = [m for m in moves if m.source == node]
            if not group or evaluator is None:
                return True, "nothing of the plan's runs on it"
            absent = sorted({m.target for m in group if m.target not in context["ready_nodes"]})
            if absent:
                return False, f"its pods go to {', '.join(absent)}, not on and Ready yet"
            priced = evaluator.try_moves((m.replica, index[m.target]) for m in group)
            cost = sum(evaluator.move_cost_g(index[m.target], int(m.pod.requests.get("cpu_millicores", 0)))
                       for m in group)
            if priced.new_violations:
                return False, f"its pods cannot all go where the plan puts them yet: {priced.new_violations[0].message}"
            if not priced.saving_g > (1.0 + options.margin) * cost:
                return False, f"emptying it saves {priced.saving_g:.1f} g, less than (1 + {options.margin:g}) x cost {cost:.1f} g"
            return True, f"{len(group)} move(s) save {priced.saving_g:.1f} g, cost {cost:.1f} g"

        return ready
