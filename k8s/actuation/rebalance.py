"""Rebalancing: move running pods where the plan wants them, when the move pays.

kube-scheduler places a pod once. When the plan changes (the grid got
cleaner elsewhere, load fell and a node could sleep), the pods already
running stay where they are unless someone moves them. The rebalancer
compares where each workload's pods run with the published plan's
``planned_nodes`` and evicts the surplus pods of a workload from the nodes
where the plan wants fewer of them; their controllers recreate them and the
extender steers the new pods to the nodes where the plan wants more
(`edgeplace.k8s.extender.table`: 10 on such a node).

Whether a move pays (`MoveEvaluator`), all figures from the one evaluation
(`edgeplace.policies.evaluate`):

    saving_g(group) = D(now) - D(now with the group's moves applied)

where D is `Evaluation.decision_g`: the emissions a placement can change,
operational on the objective's Scope 2 basis plus rented nodes' embodied
carbon (an owned node's embodied carbon is the same asleep or awake), with
both placements held over the plan's horizon and a node powered exactly
when it hosts a replica, or when edgeplace cannot power it down
(`sleepable` is False: no power lifecycle, no driver, ``can_power_down:
false``), so a node that empties saves its idle power (and a rented node
its embodied share) only where it really will sleep. Moves are grouped by the node they leave,
because emptying a node pays only when its last pod leaves; groups are
priced one after another, each on top of the groups accepted before it.
A group is made when

    saving_g > (1 + margin) x sum over its moves of (restart_g + threshold_g)

where ``restart_g`` is the pod's CPU request kept busy for
``MigrationCost.restart_s`` on its new node at that node's marginal grams
per core-hour (`edgeplace.k8s.extender.table.marginal_g_per_core_h`) and
``threshold_g`` the least saving worth a disruption. Each move of an
accepted group is credited an equal share of the group's saving.

Hysteresis, so that plans flipping between two nodes do not cause churn:
a workload moved within ``cooldown_s`` is not moved again, a workload is
not moved back onto a node it left within ``flip_window_s`` (both from the
`history` kept in the cluster), and the margin above.

Then the budgets (`edgeplace.k8s.actuation.evictor`): per cycle, per node,
per tenant, and per workload one replica at a time unless its
PodDisruptionBudget allows more. Pods on nodes that are being drained
belong to the power lifecycle (`edgeplace.k8s.actuation.power`), which
evicts them itself; pods are only moved onto nodes that are on and Ready.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Iterable

import numpy as np

from edgeplace.k8s.actuation.evictor import (EvictionBudget, EvictionFilter, EvictionOptions, EvictionResult,
                                             PodEvictor, pdbs_of, workload_allowance)
from edgeplace.k8s.actuation.history import HistoryStore, MoveHistory, now_record
from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.actuation.objects import PodFacts, pod_facts
from edgeplace.k8s.extender.table import marginal_g_per_core_h
from edgeplace.k8s.mapping import ClusterObjects, MappedCluster, running_replicas
from edgeplace.policies.costs import Objective, price
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

log = logging.getLogger("edgeplace.k8s.actuation")


@dataclass(frozen=True)
class MigrationCost:
    """What one move costs (see the module docstring).

    restart_s : seconds a recreated pod keeps its whole CPU request busy while it
        starts (image pull, JIT, cache warm-up) [s]
    threshold_g : the least saving worth disrupting a pod for, per move [gCO2e]
    """

    restart_s: float = 60.0
    threshold_g: float = 2.0

    def __post_init__(self) -> None:
        if not (self.restart_s >= 0 and self.threshold_g >= 0):
            raise ValueError("restart_s and threshold_g must be >= 0")


@dataclass(frozen=True)
class RebalanceOptions:
    """How the rebalancer decides (see the module docstring).

    cost : `MigrationCost` of one move
    margin : a group's saving must exceed its cost by this share (hysteresis) [-]
    cooldown_s : a workload moved is not moved again for this long [s]
    flip_window_s : a workload does not move back onto a node it left within this [s]
    budget : `EvictionBudget` per cycle
    eviction : `EvictionOptions`: which pods may be evicted at all
    objective : the planner's objective weights (for pricing restarts)
    """

    cost: MigrationCost = field(default_factory=MigrationCost)
    margin: float = 0.2
    cooldown_s: float = 1800.0
    flip_window_s: float = 7200.0
    budget: EvictionBudget = field(default_factory=EvictionBudget)
    eviction: EvictionOptions = field(default_factory=EvictionOptions)
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        if not (self.margin >= 0 and self.cooldown_s >= 0 and self.flip_window_s >= 0):
            raise ValueError("margin, cooldown_s and flip_window_s must be >= 0")


class Decision(str, Enum):
    EVICT = "evict"
    SKIP_SAVING = "skip_saving"  # the move does not pay its cost (with the margin)
    SKIP_BUDGET = "skip_budget"  # a cycle, node or tenant budget is spent, or a replica of the workload is down
    SKIP_PDB = "skip_pdb"  # its PodDisruptionBudget allows no disruption now (or the API answered 429)
    SKIP_PROTECTED = "skip_protected"  # the eviction filter protects the pod
    SKIP_HYSTERESIS = "skip_hysteresis"  # moved too recently, or would move back where it came from
    SKIP_TARGET = "skip_target"  # its node is not on and Ready yet, or still full (other moves go first)


@dataclass
class Move:
    """One pod the plan wants elsewhere, and what the rebalancer decided."""

    pod: PodFacts
    workload: str
    tenant: str
    source: str
    target: str
    replica: int
    saving_g: float = 0.0  # its share of its group's saving over the horizon [gCO2e]
    cost_g: float = 0.0  # restart + threshold [gCO2e]
    decision: Decision = Decision.SKIP_SAVING
    detail: str = ""
    result: str = ""  # the eviction's result (evicted, dry_run, pdb_blocked, ...) for decision evict

    def row(self) -> dict[str, Any]:
        return {"pod": self.pod.key, "workload": self.workload, "tenant": self.tenant, "from": self.source,
                "to": self.target, "saving_g": round(self.saving_g, 3), "cost_g": round(self.cost_g, 3),
                "decision": self.decision.value, "result": self.result, "detail": self.detail}


# ---------------------------------------------------------------------------
# Pricing moves with the one evaluation


class MoveEvaluator:
    """Prices groups of moves of running replicas (see the module docstring).

    scenario : the mapped cluster's scenario
    replica_node : (R,) node index each replica runs on now, -1 where it does not run
    sleepable : (N,) bool, nodes that really power down when empty
    """

    def __init__(self, scenario: Scenario, replica_node: np.ndarray, sleepable: np.ndarray,
                 cost: MigrationCost, objective: Objective | None = None):
        self.scenario = scenario
        self.sleepable = np.asarray(sleepable, dtype=bool)
        self.cost = cost
        self.basis = (objective or Objective()).carbon_basis
        self.state = np.asarray(replica_node, dtype=np.int64).copy()
        self.evaluation = self.evaluate(self.state)
        self.marginal_g_per_core_h = marginal_g_per_core_h(price(scenario, objective or Objective()), self.evaluation, 0)

    def evaluate(self, replica_node: np.ndarray) -> Evaluation:
        """The placement `replica_node` held over the horizon, nodes powered as in the module docstring."""
        sc = self.scenario
        placement = Placement.from_replica_nodes(sc, replica_node)
        powered = placement.hosting(sc.n_nodes) | ~self.sleepable[:, None] | ~sc.node_can_power_down[:, None]
        return evaluate(sc, placement.with_powered(powered))

    def restart_g(self, target: int, cpu_millicores: int) -> float:
        """Operational grams of a restart on node `target` (marginal price of the CPU request for restart_s)."""
        return float(self.marginal_g_per_core_h[target]) * cpu_millicores / 1000.0 * self.cost.restart_s / 3600.0

    def move_cost_g(self, target: int, cpu_millicores: int) -> float:
        return self.restart_g(target, cpu_millicores) + self.cost.threshold_g

    def try_moves(self, moves: Iterable[tuple[int, int]]) -> "Priced":
        """Price moving replicas (replica, target node) on top of the current state."""
        after = self.state.copy()
        for r, target in moves:
            after[r] = target
        evaluation = self.evaluate(after)
        before = {(v.kind, v.subject): v for v in self.evaluation.violations}
        new = [v for v in evaluation.violations if _worse(v, before.get((v.kind, v.subject)))]
        return Priced(self.evaluation.decision_g(self.basis) - evaluation.decision_g(self.basis), after, evaluation, new)

    def commit(self, priced: "Priced") -> None:
        self.state, self.evaluation = priced.state, priced.evaluation


def _worse(v, was) -> bool:
    """The rule `v` is broken where it was not (`was` None), in more slots, or by more (a pod onto a
    node whose taint its workload already breaks elsewhere is one more pod kube-scheduler refuses)."""
    return was is None or not set(v.slots) <= set(was.slots) or v.amount > was.amount * (1 + 1e-9) + 1e-9


@dataclass
class Priced:
    """A group of moves priced: its saving over the horizon [gCO2e], the state after it, and the
    rules that state breaks worse than the current one (a target still full, a tenant still there)."""

    saving_g: float
    state: np.ndarray
    evaluation: Evaluation
    new_violations: list


# ---------------------------------------------------------------------------
# What the plan wants moved


def planned_counts(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    """workload id -> {node: replicas the plan puts there in its slot}, from a plan document."""
    out = {}
    for wid, row in (doc.get("workloads") or {}).items():
        planned = row.get("planned_nodes") if isinstance(row, dict) else None
        if isinstance(planned, dict):
            out[wid] = {str(n): int(c) for n, c in planned.items() if isinstance(c, int) and c > 0}
    return out


def _candidates(scenario: Scenario, objects: ClusterObjects, doc: dict[str, Any]) -> tuple[list[Move], np.ndarray,
                                                                                         dict[str, list[PodFacts]]]:
    """Every pod the plan wants elsewhere (a Move each, undecided), the replicas' nodes now, and the
    live pods of each workload."""
    replicas = running_replicas(scenario, objects)
    raw = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in objects.pods
           if isinstance(p.get("metadata"), dict)}
    node_index = {n: i for i, n in enumerate(scenario.node_ids)}
    replica_node = np.full(scenario.n_replicas, -1, dtype=np.int64)
    by_workload: dict[int, list[tuple[PodFacts, int]]] = defaultdict(list)
    for key, r in replicas.items():
        facts = pod_facts(raw[key])
        replica_node[r] = node_index[facts.node]
        by_workload[int(scenario.replica_workload[r])].append((facts, r))
    pods_of: dict[str, list[PodFacts]] = {scenario.workload_ids[w]: [f for f, _ in items]
                                          for w, items in by_workload.items()}
    planned = planned_counts(doc)
    moves: list[Move] = []
    for w, items in sorted(by_workload.items()):
        wid = scenario.workload_ids[w]
        if wid not in planned:
            continue
        want = planned[wid]
        have: dict[str, list[tuple[PodFacts, int]]] = defaultdict(list)
        for facts, r in items:
            have[facts.node].append((facts, r))
        # Surplus pods leave: ready ones last, so a broken replica is the first to go.
        surplus = [pair for node in sorted(have) for pair in
                   sorted(have[node], key=lambda fr: (fr[0].ready, fr[0].name))[:max(0, len(have[node]) - want.get(node, 0))]]
        deficit = [node for node in sorted(want) if node in node_index for _ in range(want[node] - len(have.get(node, [])))]
        tenant = scenario.tenant_ids[int(scenario.workload_tenant[w])]
        for (facts, r), target in zip(surplus, deficit):
            moves.append(Move(facts, wid, tenant, facts.node, target, r))
    return moves, replica_node, pods_of


def _hysteresis(move: Move, history: MoveHistory, options: RebalanceOptions, now: datetime) -> str:
    last = history.last_move(move.workload)
    if last is not None and now - last.time < timedelta(seconds=options.cooldown_s):
        return f"moved {int((now - last.time).total_seconds() // 60)} min ago ({last.source} -> {last.target})"
    back = history.left(move.workload, move.target, now - timedelta(seconds=options.flip_window_s))
    if back is not None:
        return f"left {move.target} at {back.at}; not moving back within {options.flip_window_s / 3600:g} h"
    return ""


@dataclass
class RebalanceReport:
    """One cycle: every candidate move and its decision, and the horizon the grams cover."""

    moves: list[Move]
    horizon_h: float
    emissions_now_g: float

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for m in self.moves:
            out[m.decision.value] += 1
        return dict(out)

    @property
    def evictions(self) -> list[Move]:
        return [m for m in self.moves if m.decision is Decision.EVICT]


def plan_moves(mapped: MappedCluster, objects: ClusterObjects, doc: dict[str, Any], options: RebalanceOptions,
               history: MoveHistory, now: datetime, *, sleepable: Iterable[str] = (),
               draining: Iterable[str] = (), ready_nodes: Iterable[str] | None = None) -> RebalanceReport:
    """Decide every candidate move (no API call): see the module docstring.

    sleepable : nodes that power down when empty (the power lifecycle runs and can switch them)
    draining : nodes the power lifecycle is draining (their pods are its business)
    ready_nodes : nodes on and Ready (targets); None = every node
    """
    sc = mapped.scenario
    moves, replica_node, _ = _candidates(sc, objects, doc)
    sleep = np.isin(np.array(sc.node_ids, dtype=object), list(set(sleepable)))
    draining, ready = set(draining), None if ready_nodes is None else set(ready_nodes)
    node_index = {n: i for i, n in enumerate(sc.node_ids)}
    evaluator = MoveEvaluator(sc, replica_node, sleep, options.cost, options.objective)
    report = RebalanceReport(moves, float(sc.n_slots * sc.slot_hours), evaluator.evaluation.decision_g(evaluator.basis))
    guard = EvictionFilter(options.eviction)
    open_moves = []
    for m in moves:
        m.cost_g = evaluator.move_cost_g(node_index[m.target], int(m.pod.requests.get("cpu_millicores", 0)))
        if m.source in draining:
            m.decision, m.detail = Decision.SKIP_PROTECTED, f"its node {m.source} is being drained"
        elif (why := guard.why_not(m.pod)) is not None:
            m.decision, m.detail = Decision.SKIP_PROTECTED, why.value
        elif (why := _hysteresis(m, history, options, now)):
            m.decision, m.detail = Decision.SKIP_HYSTERESIS, why
        elif ready is not None and m.target not in ready:
            m.decision, m.detail = Decision.SKIP_TARGET, f"{m.target} is not on and Ready yet"
        else:
            open_moves.append(m)
    planned_off = {n for n, e in (doc.get("nodes") or {}).items() if isinstance(e, dict) and e.get("powered") is False}
    accepted = _price(open_moves, evaluator, planned_off, options, report.horizon_h, node_index)
    _feasible_now(accepted, MoveEvaluator(sc, replica_node, sleep, options.cost, options.objective), node_index,
                  limit=3 * max(options.budget.per_cycle, 1))
    return report


def _price(moves: list[Move], evaluator: MoveEvaluator, planned_off: set[str], options: RebalanceOptions,
           horizon_h: float, node_index: dict[str, int]) -> list[Move]:
    """Decide which moves pay; they get EVICT (for now), the others SKIP_SAVING (see the module docstring).

    The plan's moves are priced first all together: moves often pay only
    jointly (one tenant leaves a node so that another may come). If the whole
    transition pays and breaks no rule, every move is accepted with an equal
    share of its saving. Otherwise each node's group is priced on top of the
    groups accepted before it, nodes the plan lets sleep first.
    """
    if not moves:
        return []
    whole = evaluator.try_moves((m.replica, node_index[m.target]) for m in moves)
    cost = sum(m.cost_g for m in moves)
    if not whole.new_violations and whole.saving_g > (1.0 + options.margin) * cost:
        for m in moves:
            m.saving_g, m.decision = whole.saving_g / len(moves), Decision.EVICT
            m.detail = (f"the plan's {len(moves)} move(s) together save {whole.saving_g:.1f} g over {horizon_h:g} h, "
                        f"cost {cost:.1f} g")
        return list(moves)
    groups: dict[str, list[Move]] = defaultdict(list)
    for m in moves:
        groups[m.source].append(m)
    accepted: list[Move] = []
    for source in sorted(groups, key=lambda n: (n not in planned_off, -len(groups[n]), n)):
        group = groups[source]
        priced = evaluator.try_moves((m.replica, node_index[m.target]) for m in group)
        saving, cost = priced.saving_g, sum(m.cost_g for m in group)
        pays = not priced.new_violations and saving > (1.0 + options.margin) * cost
        for m in group:
            m.saving_g = saving / len(group)
            m.decision = Decision.EVICT if pays else Decision.SKIP_SAVING
            m.detail = (f"{len(group)} move(s) off {source} save {saving:.1f} g over {horizon_h:g} h, "
                        + (f"cost {cost:.1f} g" if pays else
                           f"breaking a rule until other moves go ({priced.new_violations[0].message})"
                           if priced.new_violations else f"less than (1 + {options.margin:g}) x cost {cost:.1f} g"))
        if pays:
            evaluator.commit(priced)
            accepted.extend(group)
    return accepted


def _feasible_now(accepted: list[Move], base: MoveEvaluator, node_index: dict[str, int], limit: int) -> None:
    """Keep only the accepted moves the cluster can take now; the others wait (SKIP_TARGET).

    A move is made now only if, from where pods run now, it breaks no rule
    on its own (its node has room and no tenant it may not share a node with)
    and together with the moves made before it in this cycle (they do not
    overfill a node between them). A move that needs another pod to leave
    first waits for a later cycle: the evicted pod's replacement is placed
    by kube-scheduler and the extender on the cluster as it is, and the
    plan they steer by is refreshed only after the pods moved. At most
    `limit` moves are checked a cycle (the budget evicts fewer anyway).
    """
    made: list[tuple[int, int]] = []
    for m in accepted:
        if len(made) >= limit:
            # Enough for this cycle's budget (checking costs two evaluations a move): the rest next cycle.
            m.decision, m.detail = Decision.SKIP_BUDGET, "the cycle's eviction budget is spent"
            continue
        step = (m.replica, node_index[m.target])
        alone = base.try_moves([step])
        together = base.try_moves(made + [step]) if made else alone
        blocked = alone.new_violations or together.new_violations
        if blocked:
            m.decision, m.detail = Decision.SKIP_TARGET, f"waits for other moves: {blocked[0].message}"
        else:
            made.append(step)


# ---------------------------------------------------------------------------
# Carrying moves out


class Rebalancer:
    """One rebalancing cycle: decide (`plan_moves`), then evict within the budgets; see the module docstring.

    evictor : the `PodEvictor` (its dry_run decides whether anything is evicted)
    store : where the move history lives (`edgeplace.k8s.actuation.history`)
    """

    def __init__(self, options: RebalanceOptions, evictor: PodEvictor, store: HistoryStore,
                 metrics: PlannerMetrics | None = None):
        self.options, self.evictor, self.store, self.metrics = options, evictor, store, metrics

    def cycle(self, mapped: MappedCluster, objects: ClusterObjects, doc: dict[str, Any], now: datetime,
              pdbs: list[dict], **context) -> RebalanceReport:
        try:
            history = self.store.load()
        except Exception as exc:  # noqa: BLE001 - without its history, hysteresis cannot hold: skip the cycle
            log.warning("rebalance: cannot read the move history (%s: %s); no moves this cycle", type(exc).__name__, exc)
            return RebalanceReport([], 0.0, 0.0)
        report = plan_moves(mapped, objects, doc, self.options, history, now, **context)
        _, _, pods_of = _candidates(mapped.scenario, objects, doc)
        allowance = {wid: workload_allowance(pods, pdbs) for wid, pods in pods_of.items()}
        self.evictor.start_cycle()
        moved, moving = False, set()
        for m in report.moves:
            if m.decision is not Decision.EVICT:
                continue
            if allowance.get(m.workload, 0) <= 0:
                covered = any(pdbs_of(p, pdbs) for p in pods_of.get(m.workload, []))
                m.decision = Decision.SKIP_PDB if covered else Decision.SKIP_BUDGET
                m.detail = ("its PodDisruptionBudget allows no more disruption now" if covered
                            else "one replica at a time: another replica of it moves in this cycle"
                            if m.workload in moving else "another replica of it is not Ready yet (one at a time)")
                continue
            why = (f"moving {m.workload} from {m.source} to {m.target} saves {m.saving_g:.1f} gCO2e over "
                   f"{report.horizon_h:g} h (migration cost {m.cost_g:.1f} g)")
            result = self.evictor.evict(m.pod, m.tenant, why)
            m.result = result.value
            if result is EvictionResult.BUDGET:
                m.decision, m.detail = Decision.SKIP_BUDGET, "the cycle's eviction budget is spent"
            elif result is EvictionResult.PDB_BLOCKED:
                m.decision, m.detail = Decision.SKIP_PDB, "the API refused it (429): PodDisruptionBudget"
            elif result in (EvictionResult.EVICTED, EvictionResult.DRY_RUN):
                allowance[m.workload] -= 1
                moving.add(m.workload)
                if result is EvictionResult.EVICTED:
                    history.add(now_record(m.workload, m.source, m.target, m.pod.key, now))
                    moved = True
        for m in report.moves:
            log.info("rebalance: %s %s (%s) %s -> %s: %s%s", m.decision.value, m.pod.key, m.workload, m.source, m.target,
                     m.detail, f" [{m.result}]" if m.result else "")
            if self.metrics is not None:
                self.metrics.decision(m.decision.value)
        if moved:
            history.prune(now, timedelta(seconds=max(self.options.cooldown_s, self.options.flip_window_s)))
            self.store.save(history)
        return report
