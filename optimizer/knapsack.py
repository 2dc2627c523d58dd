"""The Lagrangian bound at scale: one fractional knapsack per node, priced by subgradient steps.

`edgeplace.optimizer.lagrangian` splits the whole MILP into node problems and
solves each by HiGHS; it needs the LP's duals, so it ends where the LP does
(about 150,000 variables). This bound relaxes the same coupling rows (every
replica placed) but solves a simpler node problem in closed form, vectorised
over all nodes, so one evaluation of L(lambda) takes milliseconds to a
second even at 10,000 workloads x 1,000 nodes, and its multipliers are
improved by subgradient steps instead of read off the LP.

The relaxation chain (each step keeps the optimum from rising, so
L(lambda) <= the model's optimum for every lambda):

1. Coupling rows dropped: spread, quotas, pod (anti-)affinity, never_with,
   migration; the secondary objective terms are absent (`Planning.carbon_costs`).
2. A job's one start and its replicas starting together are dropped: its
   replicas may take any start, on any node; only "all R replicas placed"
   stays. Each replica on a node counts `1 / d` in every slot of its window
   it could run in (d its duration slots; an interruptible job's run slots
   likewise): a placed replica runs in d of those slots, so every plan
   maps onto this relaxation at its own cost (it is split per slot below).
3. Power: of the convex hull's lines the model has for a node, only the one
   active at its (relaxed) background load is kept; it is exact at the
   background load and below the hull elsewhere. A powered node-slot costs
   `CostModel.open_g` at that load, and a replica `slope x its utilisation`
   of energy on top. At a site with on-site supply in the slot (in every
   slot where the site has a battery and any supply) energy is free: only
   embodied carbon is charged.
4. Capacity: only CPU; memory and GPU survive only in each pair's most
   replicas on one node (`formulation.most_on_node`, the model's big-M).
5. Each node problem split in two cases, the node's value the smaller:
   (a) it hosts a service: on in every slot, its open carbon paid in every
       slot, and the CPU rows of all slots summed into one (a service takes
       T x its request, a job replica's slot its request) -- a surrogate of
       the rows, so a relaxation;
   (b) it hosts no service: each slot on its own, on or off (a binary, the
       open carbon paid in full or not at all), with the job replicas'
       per-slot pieces; always-on nodes are on.
6. Integrality of the replica counts dropped: each case is a fractional
   knapsack (items by reduced cost per millicore), solved exactly by
   sorting.

Relaxing "every replica placed" with a price lambda_w per replica gives

    L(lambda) = sum_w lambda_w R_w + sum_n min(case a, case b)

with reduced costs `energy - lambda` per replica (per slot piece: energy
in the slot - lambda / d). Binary on/off in the node problems makes a
node's open carbon a fixed charge: a node eligible for a few tight-SLA
services is paid in full, not per millicore as the flow bound
(`edgeplace.optimizer.bound`) charges it; the links y <= M h cap what a
node can take of a workload, as in the LP.

Multipliers: warm-started at the flow relaxation's marginal prices
(`flow_bound_g(..., prices=...)`), then subgradient steps of Polyak's size
toward a target (the best plan's objective): lambda += theta (target - L) /
|g|^2 g with g_w = R_w - replicas placed in the node minimisers, theta
halved when L has not improved for a few steps. Any lambda gives a valid
bound; the best L seen is reported, lowered by a relative 1e-9 against
floating-point rounding in the sums.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgeplace.optimizer.formulation import most_on_node
from edgeplace.policies.costs import CostModel
from edgeplace.topology.scenario import CPU

#: The reported bound is the best L lowered by this share, against rounding in float sums.
ROUNDING_REL = 1e-9
#: theta is halved after this many steps without a better L.
PATIENCE_STEPS = 3
#: Stop when theta falls below this: steps too short to move L.
MIN_THETA = 1e-4


@dataclass
class KnapsackBound:
    """The best L(lambda) found [g], after how many evaluations and seconds, its multipliers."""

    value_g: float
    iterations: int
    seconds: float
    prices: np.ndarray  # W, per replica [g]


class NodeKnapsacks:
    """The node problems of the relaxation (module docstring), their data built once."""

    def __init__(self, costs: CostModel):
        sc = costs.scenario
        N, T = sc.n_nodes, sc.n_slots
        self.n_nodes, self.n_slots = N, T
        self.replicas = sc.workload_replicas.astype(float)
        supply = costs.site_supply_kwh > 0  # S x T
        battery = (sc.site_battery_kwh > 0) & supply.any(axis=1)
        free = (supply | battery[:, None])[sc.node_site]  # N x T: energy free (step 3)
        background = costs.relaxed_background_util()
        # The hull line active at the background load (the larger slope on a tie).
        at_bg = costs.power_intercept_w[:, None, :] + costs.power_slope_w[:, None, :] * background[:, :, None]
        top = at_bg >= at_bg.max(axis=2, keepdims=True) - 1e-9
        slope = np.where(top, costs.power_slope_w[:, None, :], -np.inf).max(axis=2)  # N x T
        g_per_w = costs.kwh_per_w_slot[:, None] * costs.node_intensity_g_per_kwh
        self.open_g = np.where(free, costs.embodied_g_per_slot[:, None], costs.open_g(background))
        energy_per_util = np.where(free, 0.0, slope * g_per_w)  # N x T, g per unit utilisation
        self.always_on = ~sc.node_can_power_down
        self.capacity = sc.node_capacity[:, CPU].astype(float)
        cpu = sc.workload_requests[:, CPU].astype(float)

        # Services: one item per eligible pair, weight T x request in case (a).
        services = np.flatnonzero(~sc.workload_deferrable)
        sw, sn = np.nonzero(costs.eligible[services])
        self.sw, self.sn = services[sw], sn
        self.s_cost = costs.workload_node_util[self.sw, sn] * energy_per_util[sn].sum(axis=1)
        self.s_weight = T * cpu[self.sw]
        self.s_most = most_on_node(sc, self.sw, sn)

        # Job pieces: (job, node, slot) for every slot of the job's window (step 2).
        jobs = np.flatnonzero(sc.workload_deferrable)
        jw, jn = np.nonzero(costs.eligible[jobs])
        jw = jobs[jw]
        first, end = sc.workload_earliest_slot[jw], sc.workload_window_end[jw]
        span = (end - first).astype(np.int64)
        pair = np.repeat(np.arange(len(jw)), span)
        offset = np.arange(len(pair)) - np.repeat(np.cumsum(span) - span, span)
        self.pw, self.pn = jw[pair], jn[pair]
        self.pt = (first[pair] + offset).astype(np.int64)
        self.p_per_replica = 1.0 / sc.workload_duration_slots[self.pw].astype(float)
        self.p_cost = costs.workload_node_util[self.pw, self.pn] * energy_per_util[self.pn, self.pt]
        self.p_weight = cpu[self.pw]
        self.p_most = most_on_node(sc, jw, jn)[pair]
        self.feasible = bool(costs.eligible.any(axis=1).all())
        self.modes = [(allowed[sc.workload_tenant[self.sw]], allowed[sc.workload_tenant[self.pw]])
                      for allowed in tenant_modes(sc.tenant_conflicts)]

    def evaluate(self, prices: np.ndarray) -> tuple[float, np.ndarray]:
        """L(prices) [g] and its subgradient (W: replicas short of R in the node minimisers)."""
        s_rc = self.s_cost - prices[self.sw]
        p_rc = self.p_cost - prices[self.pw] * self.p_per_replica
        best = np.full(self.n_nodes, np.inf)
        s_units, p_units = np.zeros(len(s_rc)), np.zeros(len(p_rc))
        for s_ok, p_ok in self.modes:
            value, s_take, p_take = self._node_problems(s_rc, p_rc, s_ok, p_ok)
            better = value < best
            best = np.where(better, value, best)
            s_units = np.where(better[self.sn], s_take, s_units)
            p_units = np.where(better[self.pn], p_take, p_units)
        placed = (np.bincount(self.sw, weights=s_units, minlength=len(prices))
                  + np.bincount(self.pw, weights=p_units * self.p_per_replica, minlength=len(prices)))
        return float(prices @ self.replicas) + float(best.sum()), self.replicas - placed

    def _node_problems(self, s_rc: np.ndarray, p_rc: np.ndarray, s_ok: np.ndarray,
                       p_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every node's value with the items `s_ok`, `p_ok` allowed (the smaller of cases (a) and
        (b), module docstring) and the units of each service pair and job piece taken in it."""
        N, T = self.n_nodes, self.n_slots
        s_idx, p_idx = np.flatnonzero(s_ok & (s_rc < 0)), np.flatnonzero(p_ok & (p_rc < 0))
        # (a) hosting a service: one knapsack of services and pieces, T x capacity.
        a_units, a_value = _fractional_knapsack(
            np.r_[self.sn[s_idx], self.pn[p_idx]], np.r_[s_rc[s_idx], p_rc[p_idx]],
            np.r_[self.s_weight[s_idx], self.p_weight[p_idx]], np.r_[self.s_most[s_idx], self.p_most[p_idx]],
            T * self.capacity, N)
        case_a = self.open_g.sum(axis=1) + a_value
        # (b) no service: each slot a knapsack of pieces, the node on only if that pays.
        cell = self.pn[p_idx] * T + self.pt[p_idx]
        b_units, b_value = _fractional_knapsack(cell, p_rc[p_idx], self.p_weight[p_idx], self.p_most[p_idx],
                                                np.repeat(self.capacity, T), N * T)
        slot = (self.open_g.ravel() + b_value).reshape(N, T)
        on = (slot < 0) | self.always_on[:, None]
        case_b = np.where(on, slot, 0.0).sum(axis=1)
        use_a = case_a <= case_b
        s_take, p_take = np.zeros(len(s_rc)), np.zeros(len(p_rc))
        s_take[s_idx] = a_units[:len(s_idx)] * use_a[self.sn[s_idx]]
        p_take[p_idx] = np.where(use_a[self.pn[p_idx]], a_units[len(s_idx):], b_units * on.ravel()[cell])
        return np.minimum(case_a, case_b), s_take, p_take


#: With more tenants in never_with rules than this, the rules are dropped (2^this subsets tried).
MAX_CONFLICTED_TENANTS = 10


def tenant_modes(conflicts: np.ndarray) -> list[np.ndarray]:
    """The tenant sets a node may host under never_with (M x M conflicts): every maximal set of
    conflicted tenants without a conflicting pair, plus all unconflicted tenants (M bool each).
    A node hosts a subset of one of them. More than MAX_CONFLICTED_TENANTS conflicted tenants:
    one set of all (the rules dropped, a relaxation)."""
    M = len(conflicts)
    conflicted = np.flatnonzero(conflicts.any(axis=1))
    if not len(conflicted) or len(conflicted) > MAX_CONFLICTED_TENANTS:
        return [np.ones(M, dtype=bool)]
    sets = []
    for bits in range(1 << len(conflicted)):
        chosen = conflicted[[(bits >> i) & 1 == 1 for i in range(len(conflicted))]]
        if not conflicts[np.ix_(chosen, chosen)].any():
            sets.append(set(chosen.tolist()))
    maximal = [c for c in sets if not any(c < other for other in sets)]
    modes = []
    for chosen in maximal:
        allowed = np.ones(M, dtype=bool)
        allowed[conflicted] = False
        allowed[list(chosen)] = True
        modes.append(allowed)
    return modes


def _fractional_knapsack(group: np.ndarray, cost: np.ndarray, weight: np.ndarray, most: np.ndarray,
                         capacity: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Knapsacks of items with negative `cost` per unit, `weight` per unit, at most `most` units,
    one per group of capacity `capacity[group]`, solved as LPs (by cost per weight, the last item
    taken fractionally): (units taken per item, the least cost per group)."""
    if not len(group):
        return np.zeros(0), np.zeros(n_groups)
    ratio = np.where(weight > 0, cost / np.maximum(weight, 1e-300), -np.inf)
    order = np.lexsort((ratio, group))
    g, w, m = group[order], weight[order], most[order]
    full = w * m
    before = np.cumsum(full) - full  # weight of the items ahead, over all groups
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, len(g)])
    before -= np.repeat(before[starts], counts)
    room = capacity[g] - before
    units = np.where(w > 0, np.clip(room / np.maximum(w, 1e-300), 0.0, m), m)
    taken = np.empty_like(units)
    taken[order] = units
    return taken, np.bincount(group, weights=cost * taken, minlength=n_groups)


def knapsack_bound_g(costs: CostModel, prices: np.ndarray, target_g: float, deadline: float,
                     max_steps: int | None = None) -> KnapsackBound | None:
    """The best L found from `prices` (W, per replica) by Polyak steps toward `target_g` (an
    upper bound on the optimum, e.g. the best plan's objective) until `deadline`
    (time.perf_counter) or `max_steps` evaluations; None when some workload has no eligible
    node (the relaxation has no bound to give)."""
    started = time.perf_counter()
    nodes = NodeKnapsacks(costs)
    if not nodes.feasible:
        return None
    lam = np.asarray(prices, dtype=float).copy()
    best_g, best_lam = -np.inf, lam.copy()
    theta, stale, steps = 1.0, 0, 0
    while True:
        value, g = nodes.evaluate(lam)
        steps += 1
        if value > best_g + 1e-9 * abs(value):
            best_g, best_lam, stale = value, lam.copy(), 0
        else:
            stale += 1
            if stale >= PATIENCE_STEPS:
                theta, stale = theta / 2, 0
        norm = float(g @ g)
        if (norm <= 1e-12 or theta < MIN_THETA or time.perf_counter() >= deadline
                or (max_steps is not None and steps >= max_steps)):
            break
        lam = lam + theta * max(target_g - value, 0.0) / norm * g
    bound = best_g - ROUNDING_REL * abs(best_g)
    return KnapsackBound(bound, steps, time.perf_counter() - started, best_lam)


__all__ = ["KnapsackBound", "NodeKnapsacks", "knapsack_bound_g"]
