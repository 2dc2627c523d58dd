"""A fast lower bound for instances too large for the LP relaxation.

The placement model's LP relaxation is the tightest bound edgeplace has, but
at 1,000 workloads x 100 nodes x 24 slots it no longer solves in a minute.
This bound relaxes further, to a min-cost flow per slot that OR-Tools solves
in milliseconds, and stays valid (never above the model's optimum):

- Two relaxations, the larger wins: each slot bounded on its own (services
  may change node between slots) and the bounds summed; or one flow over the
  horizon in which services keep their node and every job is charged its
  cheapest node and start without using capacity.
- Only CPU couples workloads: a node's fixed cost per slot (idle power at its
  background load, lowered where background plus requests could pass 1 as in
  the model, and its embodied carbon, `CostModel.open_g`) is charged per
  millicore requested, fixed / capacity, as if nodes were filled perfectly;
  memory, spread, never_with and integrality are dropped.
- Dynamic power is charged at the node's smallest power-line slope (the
  convex hull's first segment), the cheapest it can be.
- At a site with on-site supply in a slot, energy is taken as free (only
  embodied carbon is charged there), however small the supply.
- Always-on nodes pay their fixed cost whatever happens: it is a constant and
  their arcs carry only dynamic cost.
- A deferrable job with one possible start takes capacity in its run's slots
  like a service; one with a choice of start is charged its cheapest eligible
  node and start slot without using capacity (an interruptible one its
  cheapest slots of the window, whatever its minimum run).

Workloads with the same eligible nodes and CPU usage fraction share one
source node of the flow, so the network has groups x nodes arcs, not
workloads x nodes. Costs are floored to whole micrograms so rounding keeps
the bound valid.
"""

from __future__ import annotations

import numpy as np
from ortools.graph.python import min_cost_flow

from edgeplace.policies.costs import CostModel
from edgeplace.topology.scenario import CPU

_MICROGRAMS_PER_G = 1_000_000


def flow_bound_g(costs: CostModel, support: np.ndarray | None = None, prices: np.ndarray | None = None) -> float | None:
    """A lower bound [gCO2e] on the placement model's optimum, or None when the
    CPU demand of some slot exceeds what its eligible nodes can hold (no bound).

    `support` (W x N bool), when given, is set where a workload's group sends
    flow to a node in some slot: the pairs the relaxation would use, a cheap
    guess of the LP's (`edgeplace.optimizer.solve` restricts the MILP to them).
    `prices` (W), when given, is set to what one more replica of each workload
    costs in the relaxation that gives the bound [g]: per millicore, the
    cheapest arc of its group to a node with room left (the marginal node of
    the flow), summed over the slots; a job at its cheapest run. They are
    multipliers of the demand rows for `edgeplace.optimizer.lagrangian`."""
    sc = costs.scenario
    cap = sc.node_capacity[:, CPU].astype(float)
    has_supply = costs.site_supply_kwh[sc.node_site] > 0  # N x T
    always_on = ~sc.node_can_power_down
    fixed = costs.open_g(costs.relaxed_background_util())  # N x T
    fixed = np.where(has_supply, costs.embodied_g_per_slot[:, None], fixed)
    min_slope = costs.power_slope_w.min(axis=1)  # W per unit utilisation
    dyn_per_util = np.where(has_supply, 0.0, min_slope[:, None] * costs.kwh_per_w_slot[:, None] * costs.node_intensity_g_per_kwh)
    # Cost of one requested millicore with CPU usage fraction u in slot t on node n:
    #   fixed[n,t] / cap[n] (0 for always-on nodes) + u x dyn_per_util[n,t] / cap[n]
    fixed_per_mc = np.where(always_on[:, None], 0.0, fixed / cap[:, None])
    dyn_per_mc = dyn_per_util / cap[:, None]
    always_on_g = float(fixed[always_on].sum())
    slot_prices, horizon_prices = np.zeros(costs.scenario.n_workloads), np.zeros(costs.scenario.n_workloads)
    per_slot = _per_slot_bound_g(costs, fixed_per_mc, dyn_per_mc, support, slot_prices)
    horizon = _horizon_bound_g(costs, fixed_per_mc, dyn_per_mc, horizon_prices)
    bounds = [b for b in (per_slot, horizon) if b is not None]
    if not bounds:
        return None
    if prices is not None:
        prices[:] = horizon_prices if horizon is not None and (per_slot is None or horizon > per_slot) else slot_prices
    return always_on_g + max(bounds)


def _per_slot_bound_g(costs: CostModel, fixed_per_mc: np.ndarray, dyn_per_mc: np.ndarray,
                      support: np.ndarray | None, prices: np.ndarray) -> float | None:
    """One flow per slot: services (free to change node between slots) and jobs with one
    possible start, which take capacity in their run's slots; other jobs at their cheapest."""
    sc = costs.scenario
    fixed_start = sc.workload_deferrable & (sc.workload_earliest_slot == sc.workload_latest_start_slot)
    total = _jobs_at_cheapest_g(costs, np.flatnonzero(sc.workload_deferrable & ~fixed_start), fixed_per_mc, dyn_per_mc,
                                prices)
    if total is None:
        return None
    run_start = sc.workload_earliest_slot
    run_end = run_start + sc.workload_duration_slots
    capacity = sc.node_capacity[:, CPU].astype(np.int64)
    for t in range(sc.n_slots):
        present = ((~sc.workload_deferrable | (fixed_start & (run_start <= t) & (t < run_end)))
                   & (sc.workload_requests[:, CPU] > 0))
        slot = _slot_flow_g(costs, np.flatnonzero(present), capacity, fixed_per_mc[:, t], dyn_per_mc[:, t], support,
                            prices)
        if slot is None:
            return None
        total += slot
    return total


def _horizon_bound_g(costs: CostModel, fixed_per_mc: np.ndarray, dyn_per_mc: np.ndarray,
                     prices: np.ndarray) -> float | None:
    """One flow for the whole horizon: services keep their node (a millicore pays its node's
    rates summed over the slots), every job at its cheapest without capacity. Valid because a
    node hosting services is on in every slot and their load never exceeds its capacity, so
    services and jobs together are never charged more than its fixed cost. Tighter than the
    per-slot bound when intensity changes over the day; the same for services at one slot."""
    sc = costs.scenario
    if sc.n_slots == 1:
        return None  # no different from the per-slot bound, which also counts fixed-start jobs' capacity
    total = _jobs_at_cheapest_g(costs, np.flatnonzero(sc.workload_deferrable), fixed_per_mc, dyn_per_mc, prices)
    if total is None:
        return None
    services = np.flatnonzero(~sc.workload_deferrable & (sc.workload_requests[:, CPU] > 0))
    flow = _slot_flow_g(costs, services, sc.node_capacity[:, CPU].astype(np.int64), fixed_per_mc.sum(axis=1),
                        dyn_per_mc.sum(axis=1), prices=prices)
    return None if flow is None else total + flow


def _jobs_at_cheapest_g(costs: CostModel, jobs: np.ndarray, fixed_per_mc: np.ndarray,
                        dyn_per_mc: np.ndarray, prices: np.ndarray | None = None) -> float | None:
    """Each job's requests at its cheapest eligible node and start, using no capacity
    (`prices[w]`: that cost per replica)."""
    sc = costs.scenario
    total = 0.0
    for w in jobs:
        nodes = np.flatnonzero(costs.eligible[w])
        if not len(nodes):
            return None
        per_mc = fixed_per_mc[nodes] + sc.workload_cpu_usage[w] * dyn_per_mc[nodes]  # n x T
        d = int(sc.workload_duration_slots[w])
        e = int(sc.workload_earliest_slot[w])
        if sc.workload_interruptible[w]:  # its d cheapest slots of the window, runs of any length
            window = per_mc[:, e:int(sc.workload_window_end[w])]
            run = np.partition(window, d - 1, axis=1)[:, :d].sum(axis=1) if d < window.shape[1] else window.sum(axis=1)
        else:
            csum = np.concatenate([np.zeros((len(nodes), 1)), np.cumsum(per_mc, axis=1)], axis=1)
            starts = np.arange(e, int(sc.workload_latest_start_slot[w]) + 1)
            run = csum[:, starts + d] - csum[:, starts]
        total += float(run.min()) * float(sc.workload_requests[w, CPU] * sc.workload_replicas[w])
        if prices is not None:
            prices[w] = float(run.min()) * float(sc.workload_requests[w, CPU])
    return total


def _slot_flow_g(costs: CostModel, workloads: np.ndarray, capacity: np.ndarray, fixed_per_mc: np.ndarray,
                 dyn_per_mc: np.ndarray, support: np.ndarray | None = None,
                 prices: np.ndarray | None = None) -> float | None:
    """Min-cost flow of one slot: the CPU demand of `workloads` onto node capacity,
    each millicore at fixed_per_mc + usage x dyn_per_mc of its node [g]; None if it does not fit.
    Marks the (workload, node) pairs of arcs with flow in `support`; adds to `prices` each
    workload's marginal price per replica (`flow_bound_g`)."""
    sc = costs.scenario
    N = sc.n_nodes
    if not len(workloads):
        return 0.0
    demand = (sc.workload_requests[workloads, CPU] * sc.workload_replicas[workloads]).astype(np.int64)
    # Group workloads by (eligible nodes, usage fraction).
    keys = np.packbits(costs.eligible[workloads], axis=1)
    usage = sc.workload_cpu_usage[workloads]
    _, group = np.unique(np.c_[keys, np.round(usage * 1e6).astype(np.int64)[:, None]], axis=0, return_inverse=True)
    group = group.ravel()
    G = int(group.max()) + 1
    group_demand = np.bincount(group, weights=demand, minlength=G).astype(np.int64)
    group_usage = np.zeros(G)
    group_usage[group] = usage
    group_eligible = np.zeros((G, N), dtype=bool)
    group_eligible[group] = costs.eligible[workloads]
    g_idx, n_idx = np.nonzero(group_eligible)
    # Nodes of the flow: 0 = source, 1..G groups, G+1..G+N nodes, G+N+1 sink.
    source, sink = 0, G + N + 1
    unit = fixed_per_mc[n_idx] + group_usage[g_idx] * dyn_per_mc[n_idx]
    flow = min_cost_flow.SimpleMinCostFlow()
    tails = np.r_[np.zeros(G, dtype=np.int64), 1 + g_idx, G + 1 + np.arange(N)]
    heads = np.r_[1 + np.arange(G), G + 1 + n_idx, np.full(N, sink)]
    caps = np.r_[group_demand, group_demand[g_idx], capacity]
    unit_cost = np.r_[np.zeros(G, dtype=np.int64), np.floor(unit * _MICROGRAMS_PER_G).astype(np.int64),
                      np.zeros(N, dtype=np.int64)]
    flow.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, unit_cost)
    supplies = np.zeros(G + N + 2, dtype=np.int64)
    supplies[source], supplies[sink] = int(group_demand.sum()), -int(group_demand.sum())
    flow.set_nodes_supplies(np.arange(G + N + 2), supplies)
    if flow.solve() != flow.OPTIMAL:
        return None
    if prices is not None:
        # The marginal millicore of a group goes to its cheapest node with room left.
        inflow = np.asarray(flow.flows(G + len(g_idx) + np.arange(N)))
        room = inflow < capacity
        marginal = np.full(G, np.inf)
        ok = room[n_idx]
        np.minimum.at(marginal, g_idx[ok], unit[ok])
        marginal = np.where(np.isfinite(marginal), marginal, 0.0)
        prices[workloads] += marginal[group] * sc.workload_requests[workloads, CPU]
    if support is not None:
        arcs = G + np.arange(len(g_idx))  # the group -> node arcs, in the order added
        used = np.asarray(flow.flows(arcs)) > 0
        members = np.zeros((G, N), dtype=bool)
        members[g_idx[used], n_idx[used]] = True
        support[workloads] |= members[group]
    return flow.optimal_cost() / _MICROGRAMS_PER_G
