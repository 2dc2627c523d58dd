"""Large-neighbourhood search: re-solve a few nodes' worth of the plan exactly.

On a large model the exact solver works on a restricted set of pairs and
stops at its time limit with a plan it could not improve further. What
remains is mostly which nodes to keep open. Each LNS step frees the workloads
on a few nodes, keeps every other workload on its nodes, and solves that
restricted MILP (`build(costs, columns=...)`) with the step solver it is
given, the incumbent as the hint. Steps alternate two neighbourhoods: "swap"
frees an open node, the other nodes of its site, a few random open nodes and
some of the closed nodes cheapest per millicore, and offers the freed
workloads those nodes; "close" frees two of the least loaded open nodes and
offers their workloads every open node (so a step can switch a node off). A step is kept when the
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

from edgeplace.optimizer.candidates import Candidate, Pricer
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.pairs import placement_pairs
from edgeplace.optimizer.readback import hint_from_placement, placement_from_values
from edgeplace.optimizer.result import SolveResult
from edgeplace.policies.costs import CostModel
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU

#: Nodes freed per step besides the chosen node's site: random open ones and cheap closed ones.
RANDOM_OPEN_NODES = 3
CHEAP_CLOSED_NODES = 3
#: At most this many nodes of the chosen node's site join a neighbourhood.
SITE_NODES = 6
#: Open nodes a "close" step frees (its workloads may go to any open node).
CLOSE_NODES = 2
#: Time limit of one step's exact solve [s].
STEP_TIME_LIMIT_S = 2.0
#: `repair`: at most this many nodes around the violations, and its time limit [s].
REPAIR_MAX_NODES = 30
REPAIR_TIME_LIMIT_S = 2.0

#: Solves one step: (model, hint column -> value, time limit [s]) -> result.
SolveStep = Callable[[LinearModel, dict[int, float], float], SolveResult]


def improve(costs: CostModel, incumbent: Candidate, *, deadline: float, price: Pricer, solve_step: SolveStep,
            seed: int = 0, max_steps: int | None = None) -> tuple[Candidate, int, int]:
    """LNS steps until `deadline` (perf_counter seconds) or `max_steps` steps.

    Returns (the best candidate, steps tried, steps kept)."""
    sc = costs.scenario
    rng = np.random.default_rng(seed)
    per_mc = costs.open_g().sum(axis=1) / sc.node_capacity[:, CPU]
    tried = kept = 0
    while time.perf_counter() + 0.5 < deadline and (max_steps is None or tried < max_steps):
        placement = incumbent.placement
        running = placement.assign >= 0
        if not running.any():
            break
        choose = _close_neighbourhood if tried % 2 else _swap_neighbourhood
        freed, targets = choose(costs, placement, per_mc, rng)
        tried += 1
        free = np.unique(sc.replica_workload[(np.isin(placement.assign, freed) & running).any(axis=1)])
        if not len(free):
            continue
        limit = min(STEP_TIME_LIMIT_S, deadline - time.perf_counter())
        if limit <= 0.2:
            break
        plan = _resolve(costs, placement, free, targets, solve_step, limit, price)
        if plan is not None and plan.beats(incumbent):
            incumbent = plan
            kept += 1
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
    running = placement.assign >= 0
    named = {workload_of[v.subject] for v in evaluation.violations if v.subject in workload_of}
    for v in evaluation.violations:  # a node over capacity: its workloads
        if v.subject in node_of:
            named |= set(sc.replica_workload[(placement.assign == node_of[v.subject]).any(axis=1)].tolist())
    if not named:
        return incumbent
    named_ws = np.fromiter(named, dtype=np.int64)
    nodes = np.flatnonzero(costs.eligible[named_ws].any(axis=0))
    if len(nodes) > REPAIR_MAX_NODES:
        hosted = np.bincount(placement.assign[running], minlength=sc.n_nodes)
        nodes = nodes[np.argsort(hosted[nodes], kind="stable")][:REPAIR_MAX_NODES]
    free = np.union1d(named_ws, sc.replica_workload[(np.isin(placement.assign, nodes) & running).any(axis=1)])
    targets = np.union1d(nodes, np.unique(placement.assign[running]))
    plan = _resolve(costs, placement, free, targets, solve_step, time_limit_s, price, producer="greedy+repair")
    return plan if plan is not None and plan.beats(incumbent) else incumbent


def _resolve(costs: CostModel, placement: Placement, free: np.ndarray, targets: np.ndarray, solve_step: SolveStep,
             time_limit_s: float, price: Pricer, producer: str = "search") -> Candidate | None:
    """Solve the MILP in which the `free` workloads may use any eligible node among
    `targets` and every other workload keeps its nodes; the plan as a candidate,
    or None when the step solver found none."""
    columns = placement_pairs(costs, placement)
    columns[np.ix_(free, targets)] |= costs.eligible[np.ix_(free, targets)]
    form = build(costs, columns=columns)
    result = solve_step(form.model, hint_from_placement(form, costs, placement), time_limit_s)
    if result.values is None:
        return None
    return price(placement_from_values(form, costs, result.values), producer)


def _close_neighbourhood(costs: CostModel, placement: Placement, _per_mc, rng) -> tuple[np.ndarray, np.ndarray]:
    """(freed, targets): two of the least loaded open nodes; their workloads may go to any open node."""
    sc = costs.scenario
    running = placement.assign >= 0
    open_nodes = np.unique(placement.assign[running])
    replica_cpu = sc.workload_requests[sc.replica_workload[np.nonzero(running)[0]], CPU]
    load = np.bincount(placement.assign[running], weights=replica_cpu, minlength=sc.n_nodes)
    light = open_nodes[np.argsort(load[open_nodes] / sc.node_capacity[open_nodes, CPU], kind="stable")]
    light = light[:max(CLOSE_NODES, len(light) // 3)]
    return rng.choice(light, size=min(CLOSE_NODES, len(light)), replace=False), open_nodes


def _swap_neighbourhood(costs: CostModel, placement: Placement, per_mc: np.ndarray,
                        rng) -> tuple[np.ndarray, np.ndarray]:
    """(freed, targets), the same nodes: a random open node, its site's nodes, random open
    and cheap closed nodes."""
    sc = costs.scenario
    used = np.zeros(sc.n_nodes, dtype=bool)
    used[placement.assign[placement.assign >= 0]] = True
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
