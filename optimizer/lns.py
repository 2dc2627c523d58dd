"""Large-neighbourhood search: re-solve a few nodes' worth of the plan exactly.

On a large model the exact solver works on a restricted set of pairs and
stops at its time limit with a plan it could not improve further. What
remains is mostly which nodes to keep open. Each LNS step frees the workloads
on a few nodes, keeps every other workload on its nodes, and solves that
restricted MILP (`build(costs, columns=...)`) with the step solver it is
given, the incumbent as the hint; the jobs it does not free keep their start
slot too (`kept_job_starts`). `improve` takes its steps in turn from four
neighbourhoods: "swap" frees an open node, the other nodes of its site, a few
random open nodes and some of the closed nodes cheapest per millicore, and
offers the freed workloads those nodes; "close" frees two of the least loaded
open nodes and offers their workloads every open node (so a step can switch
a node off); "closing" and "exchange" (`_Targeted`, also the steps of
`consolidate`) free a node drawn by the carbon it wastes (open carbon for
little load, or dynamic carbon on a dirty grid) with a few open nodes that can
take its workloads. A step is kept when the
plan, priced on the series the plan is made on (`Candidate`), is strictly
better (fewer violations, then lower emissions plus the objective's
secondary terms). Each step's model has
the free workloads' pairs on the neighbourhood plus one column set per fixed
workload, so it solves in about a second where the whole model would not.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from edgeplace.optimizer.candidates import Candidate, Guide, Pricer
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.pairs import dynamic_g_per_util, placement_pairs
from edgeplace.optimizer.readback import hint_from_placement, placement_from_values
from edgeplace.optimizer.result import SolveResult
from edgeplace.policies.costs import CostModel
from edgeplace.policies.evaluate import placed_requests
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU, Scenario

#: Nodes freed per step besides the chosen node's site: random open ones and cheap closed ones.
RANDOM_OPEN_NODES = 3
CHEAP_CLOSED_NODES = 3
#: At most this many nodes of the chosen node's site join a neighbourhood.
SITE_NODES = 6
#: Open nodes a "close" step frees (its workloads may go to any open node).
CLOSE_NODES = 2
#: A "closing" step (`consolidate`) offers the freed node's workloads this many open nodes with the
#: most room for them, and this many closed nodes that are cheapest to keep on per millicore.
CLOSING_RECEIVERS = 2
CLOSING_CLOSED = 1
#: An "exchange" step offers a node on a dirty grid's workloads this many of the cleanest open nodes.
EXCHANGE_RECEIVERS = 2
#: Time limit of one step's exact solve [s].
STEP_TIME_LIMIT_S = 2.0
#: `repair`: at most this many nodes around the violations, and its time limit [s].
REPAIR_MAX_NODES = 30
REPAIR_TIME_LIMIT_S = 2.0

#: Solves one step: (model, hint column -> value, time limit [s]) -> result.
SolveStep = Callable[[LinearModel, dict[int, float], float], SolveResult]


def improve(costs: CostModel, incumbent: Candidate, *, deadline: float, price: Pricer, solve_step: SolveStep,
            seed: int = 0, max_steps: int | None = None,
            guide: Guide | None = None) -> tuple[Candidate, int, int]:
    """LNS steps until `deadline` (perf_counter seconds) or `max_steps` steps, in turn from the
    "swap", "closing", "close" and "exchange" neighbourhoods (`guide`: see `_Targeted`).

    Returns (the best candidate, steps tried, steps kept)."""
    per_mc = costs.open_g().sum(axis=1) / costs.scenario.node_capacity[:, CPU]
    rng = np.random.default_rng(seed)
    targeted = _Targeted(costs, rng, guide)

    def neighbourhood(placement: Placement, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step % 2:
            return targeted.closing(placement) if step % 4 == 1 else targeted.exchange(placement)
        targeted.centre = None
        choose = _close_neighbourhood if step % 4 == 2 else _swap_neighbourhood
        return choose(costs, placement, per_mc, rng)

    return _steps(costs, incumbent, neighbourhood, deadline=deadline, price=price, solve_step=solve_step,
                  max_steps=max_steps, after=targeted.after)


def consolidate(costs: CostModel, incumbent: Candidate, *, deadline: float, price: Pricer, solve_step: SolveStep,
                seed: int = 0, max_steps: int | None = None,
                guide: Guide | None = None) -> tuple[Candidate, int, int]:
    """Steps aimed at where the plan wastes carbon, until `deadline` or `max_steps` steps,
    "closing" and "exchange" in turn (`_Targeted`): a node that is on for little load, or a
    node on a dirty grid carrying load a cleaner one could take, re-packed exactly with a few
    open nodes that can take its workloads, so that the step can empty the node (switch it
    off) or trade load between them.

    Returns (the best candidate, steps tried, steps kept)."""
    targeted = _Targeted(costs, np.random.default_rng(seed), guide)

    def neighbourhood(placement: Placement, step: int) -> tuple[np.ndarray, np.ndarray]:
        return targeted.exchange(placement) if step % 2 else targeted.closing(placement)

    return _steps(costs, incumbent, neighbourhood, deadline=deadline, price=price, solve_step=solve_step,
                  max_steps=max_steps, after=targeted.after)


class _Targeted:
    """The "closing" and "exchange" neighbourhoods (freed nodes = offered nodes). Each draws a
    centre node in proportion to what it wastes, times a draw weight that is halved each time
    a step around the node is not kept (so the search moves on from nodes it cannot improve).
    Given a relaxation's solution (`Guide`), a closing step also counts as wasted the open
    carbon the plan pays on a node beyond the relaxation's share of it: a full node the
    relaxation leaves off wastes nothing by its fill, but its workloads may fit on nodes
    cheaper per millicore.

    closing: a node hosting something, by `wasted_open_g` (never an always-on node: its open
        carbon is spent whatever the plan), with CLOSING_RECEIVERS open nodes eligible for
        its workloads drawn from the 3 x CLOSING_RECEIVERS with the most CPU room in the
        slots it hosts something, and the CLOSING_CLOSED closed nodes eligible for most of
        them that are cheapest to keep on per millicore;
    exchange: a node hosting something, by the dynamic carbon of its CPU requests there
        (`dynamic_g_per_util` x CPU fill, over the slots), with EXCHANGE_RECEIVERS open
        nodes eligible for its workloads drawn from the 3 x EXCHANGE_RECEIVERS cleanest.
    """

    def __init__(self, costs: CostModel, rng, guide: Guide | None = None):
        self.costs, self.rng, self.guide = costs, rng, guide
        n = costs.scenario.n_nodes
        self.draws = {"closing": np.ones(n), "exchange": np.ones(n)}
        self.centre: tuple[str, int] | None = None  # (neighbourhood, node) of the step under way
        self.dynamic_g_per_util = dynamic_g_per_util(costs)
        self.per_mc = costs.open_g().sum(axis=1) / np.maximum(costs.scenario.node_capacity[:, CPU], 1)

    def after(self, improved: bool) -> None:
        if self.centre is not None and not improved:
            self.draws[self.centre[0]][self.centre[1]] *= 0.5

    def closing(self, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
        sc = self.costs.scenario
        fill = resource_fill(sc, placement)
        weight = wasted_open_g(self.costs, placement, fill)
        if self.guide is not None:
            paid_g = (self.costs.open_g() * placement.hosting(sc.n_nodes)).sum(axis=1)
            weight = np.maximum(weight, (1.0 - self.guide.open_share) * paid_g)
        weight = weight * sc.node_can_power_down
        centre, workloads, hosting = self._centre("closing", placement, weight)
        if centre < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        eligible_for = self._eligible_for(workloads, centre)
        used = hosting.any(axis=1)
        room_mc = sc.node_capacity[:, CPU, None] * (1.0 - fill[:, :, CPU])
        room_mc = np.where(hosting[centre][None, :], room_mc, np.inf).min(axis=1)
        receivers = self._draw(np.flatnonzero(used & (eligible_for > 0)), -room_mc, CLOSING_RECEIVERS)
        closed = np.flatnonzero(~used & (eligible_for > 0))
        closed = closed[np.lexsort((self.per_mc[closed], -eligible_for[closed]))][:CLOSING_CLOSED]
        nodes = np.unique(np.r_[centre, receivers, closed]).astype(np.int64)
        return nodes, nodes

    def exchange(self, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
        sc = self.costs.scenario
        fill = resource_fill(sc, placement)[:, :, CPU]
        weight = (self.dynamic_g_per_util * fill).sum(axis=1)
        centre, workloads, hosting = self._centre("exchange", placement, weight)
        if centre < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        eligible_for = self._eligible_for(workloads, centre)
        receivers = self._draw(np.flatnonzero(hosting.any(axis=1) & (eligible_for > 0)),
                               self.dynamic_g_per_util.sum(axis=1), EXCHANGE_RECEIVERS)
        nodes = np.unique(np.r_[centre, receivers]).astype(np.int64)
        return nodes, nodes

    def _centre(self, kind: str, placement: Placement, weight: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """(centre node or -1, its workloads, N x T hosting)."""
        sc = self.costs.scenario
        hosting = placement.hosting(sc.n_nodes)
        used = hosting.any(axis=1)
        self.centre = None
        if not used.any():
            return -1, np.zeros(0, dtype=np.int64), hosting
        weight = np.maximum(weight, 0.0) * self.draws[kind] * used
        p = weight / weight.sum() if weight.sum() > 0 else used / used.sum()
        centre = int(self.rng.choice(sc.n_nodes, p=p))
        self.centre = (kind, centre)
        return centre, _workloads_on(sc, placement, [centre]), hosting

    def _eligible_for(self, workloads: np.ndarray, centre: int) -> np.ndarray:
        """N: how many of the centre's workloads may go to each other node."""
        out = self.costs.eligible[workloads].sum(axis=0)
        out[centre] = 0
        return out

    def _draw(self, nodes: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
        """k of the 3k `nodes` smallest by `key`, at random."""
        best = nodes[np.argsort(key[nodes], kind="stable")][:3 * k]
        return self.rng.choice(best, size=min(k, len(best)), replace=False) if len(best) else best


def _steps(costs: CostModel, incumbent: Candidate, neighbourhood, *, deadline: float, price: Pricer,
           solve_step: SolveStep, max_steps: int | None,
           after: Callable[[bool], None] = lambda _improved: None) -> tuple[Candidate, int, int]:
    """The LNS loop: `neighbourhood(placement, step)` -> (nodes freed, nodes offered), the
    freed workloads re-solved on the offered nodes, a strictly better plan kept; `after(kept)`
    is told how each step went."""
    sc = costs.scenario
    tried = kept = 0
    while time.perf_counter() + 0.5 < deadline and (max_steps is None or tried < max_steps):
        placement = incumbent.placement
        if not len(placement.cells().node):
            break
        freed, targets = neighbourhood(placement, tried)
        tried += 1
        free = _workloads_on(sc, placement, freed)
        if not len(free):
            after(False)
            continue
        limit = min(STEP_TIME_LIMIT_S, deadline - time.perf_counter())
        if limit <= 0.2:
            break
        plan = _resolve(costs, placement, free, targets, solve_step, limit, price)
        improved = plan is not None and plan.beats(incumbent)
        if improved:
            incumbent = plan
            kept += 1
        after(improved)
    return incumbent, tried, kept


def repair(costs: CostModel, incumbent: Candidate, *, price: Pricer, solve_step: SolveStep,
           time_limit_s: float = REPAIR_TIME_LIMIT_S) -> Candidate:
    """One exact step around a plan's violations (the greedy plan's, when its
    construction and repair could not place everything): free the workloads
    named in violations and everything on their eligible nodes (at most
    REPAIR_MAX_NODES, the least loaded), offer the freed workloads those nodes
    and every node already on, and solve that restricted MILP. Two-resource
    packing on a small dedicated pool is where the greedy order gets stuck and
    a MILP is not; returns the better of the two plans."""
    placement, evaluation = incumbent.placement, incumbent.planned
    sc = costs.scenario
    workload_of = {wid: i for i, wid in enumerate(sc.workload_ids)}
    node_of = {nid: i for i, nid in enumerate(sc.node_ids)}
    on_node = placement.cells().node
    named = {workload_of[v.subject] for v in evaluation.violations if v.subject in workload_of}
    for v in evaluation.violations:  # a node over capacity: its workloads
        if v.subject in node_of:
            named |= set(_workloads_on(sc, placement, [node_of[v.subject]]).tolist())
    if not named:
        return incumbent
    named_ws = np.fromiter(named, dtype=np.int64)
    nodes = np.flatnonzero(costs.eligible[named_ws].any(axis=0))
    if len(nodes) > REPAIR_MAX_NODES:
        hosted = np.bincount(on_node, minlength=sc.n_nodes)
        nodes = nodes[np.argsort(hosted[nodes], kind="stable")][:REPAIR_MAX_NODES]
    free = np.union1d(named_ws, _workloads_on(sc, placement, nodes))
    targets = np.union1d(nodes, np.unique(on_node))
    plan = _resolve(costs, placement, free, targets, solve_step, time_limit_s, price, producer="greedy+repair")
    return plan if plan is not None and plan.beats(incumbent) else incumbent


def _workloads_on(sc: Scenario, placement: Placement, nodes) -> np.ndarray:
    """The workloads (sorted) with a replica on one of `nodes` in some slot."""
    c = placement.cells()
    return np.unique(sc.replica_workload[c.replica[np.isin(c.node, nodes)]])


def _resolve(costs: CostModel, placement: Placement, free: np.ndarray, targets: np.ndarray, solve_step: SolveStep,
             time_limit_s: float, price: Pricer, producer: str = "search") -> Candidate | None:
    """Solve the MILP in which the `free` workloads may use any eligible node among
    `targets` and every other workload keeps its nodes; the plan as a candidate,
    or None when the step solver found none."""
    columns = placement_pairs(costs, placement)
    columns[np.ix_(free, targets)] |= costs.eligible[np.ix_(free, targets)]
    form = build(costs, columns=columns, job_starts=kept_job_starts(costs.scenario, placement, free))
    result = solve_step(form.model, hint_from_placement(form, costs, placement), time_limit_s)
    if result.values is None:
        return None
    return price(placement_from_values(form, costs, result.values), producer)


def kept_job_starts(sc: Scenario, placement: Placement, free: np.ndarray) -> dict[int, int]:
    """The start slot of each deferrable (not interruptible) job outside `free` that the plan runs
    from a slot of its window: a step keeps them there, as it keeps their nodes. Without this
    every step re-times all jobs (at 1,000 x 100 x 24: 235 jobs), and HiGHS stops each step at
    its time limit with the incumbent."""
    jobs = np.flatnonzero(sc.workload_deferrable & ~sc.workload_interruptible)
    jobs = jobs[~np.isin(jobs, free)]
    first = placement.first_nodes()[0][sc.workload_first_replica[jobs]]  # the job's first replica's
    placed = first >= 0
    in_window = placed & (first >= sc.workload_earliest_slot[jobs]) & (first <= sc.workload_latest_start_slot[jobs])
    return {int(j): int(s) for j, s in zip(jobs[in_window], first[in_window])}


def _close_neighbourhood(costs: CostModel, placement: Placement, _per_mc, rng) -> tuple[np.ndarray, np.ndarray]:
    """(freed, targets): two of the least loaded open nodes; their workloads may go to any open node."""
    sc = costs.scenario
    c = placement.cells()
    open_nodes = np.unique(c.node)
    replica_cpu = sc.workload_requests[sc.replica_workload[c.replica], CPU]
    load = np.bincount(c.node, weights=replica_cpu, minlength=sc.n_nodes)
    light = open_nodes[np.argsort(load[open_nodes] / sc.node_capacity[open_nodes, CPU], kind="stable")]
    light = light[:max(CLOSE_NODES, len(light) // 3)]
    return rng.choice(light, size=min(CLOSE_NODES, len(light)), replace=False), open_nodes


def _swap_neighbourhood(costs: CostModel, placement: Placement, per_mc: np.ndarray,
                        rng) -> tuple[np.ndarray, np.ndarray]:
    """(freed, targets), the same nodes: a random open node, its site's nodes, random open
    and cheap closed nodes."""
    sc = costs.scenario
    used = np.zeros(sc.n_nodes, dtype=bool)
    used[placement.cells().node] = True
    open_nodes = np.flatnonzero(used)
    if not len(open_nodes):
        return open_nodes, open_nodes
    centre = int(rng.choice(open_nodes))
    site = np.flatnonzero(sc.node_site == sc.node_site[centre])
    site = site[rng.permutation(len(site))][:SITE_NODES]
    others = rng.choice(open_nodes, size=min(RANDOM_OPEN_NODES, len(open_nodes)), replace=False)
    closed = np.flatnonzero(~used)
    cheap = closed[np.argsort(per_mc[closed], kind="stable")][:CHEAP_CLOSED_NODES * 3]
    cheap = rng.choice(cheap, size=min(CHEAP_CLOSED_NODES, len(cheap)), replace=False) if len(cheap) else cheap
    nodes = np.unique(np.r_[centre, site, others, cheap]).astype(np.int64)
    return nodes, nodes


def wasted_open_g(costs: CostModel, placement: Placement, fill: np.ndarray | None = None) -> np.ndarray:
    """N: the open carbon a node pays for capacity nothing uses [gCO2e]: over the slots it hosts
    something, its cost of being on (`CostModel.open_g`: idle and background power, rented
    nodes' embodied share) times the share of it left empty (1 - the fill of its fullest
    resource). A node powered all day for a little load wastes most of it."""
    sc = costs.scenario
    fill = resource_fill(sc, placement) if fill is None else fill  # N x T x K
    has_capacity = sc.node_capacity > 0  # N x K
    dominant = np.where(has_capacity[:, None, :], fill, 0.0).max(axis=2)
    hosting = placement.hosting(sc.n_nodes)
    return (costs.open_g() * (1.0 - np.clip(dominant, 0.0, 1.0)) * hosting).sum(axis=1)


def resource_fill(sc: Scenario, placement: Placement) -> np.ndarray:
    """N x T x K: the requests placed on each node in each slot over its capacity (0 where it has none)."""
    load = placed_requests(sc, placement)
    capacity = sc.node_capacity[:, None, :].astype(float)
    return np.divide(load, capacity, out=np.zeros_like(load), where=capacity > 0)
