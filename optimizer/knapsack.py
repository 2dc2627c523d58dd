"""The Lagrangian bound at scale: one fractional knapsack per node, in closed form.

`edgeplace.optimizer.lagrangian` splits the whole MILP into node problems and
solves each by HiGHS at the LP's duals, so it ends where the LP does (about
150,000 variables; at 1,000 x 100 x 24 the LP takes 818 s). This bound
relaxes the coupling rows (every replica placed, spread) with multipliers
but solves a simpler node problem exactly and vectorised over all nodes (one
evaluation of L takes 15-20 ms at 1,000 x 100 x 24), starts from the duals of a
small LP of the services alone, and improves them by subgradient steps.

The relaxation chain (each step can only lower the optimum, so
L(lambda) <= the model's optimum for every lambda with spread prices >= 0):

1. Dropped: quotas, pod (anti-)affinity, migration, the secondary
   objective terms (the bound prices `Planning.carbon_costs`). never_with is
   kept inside each node: a node hosts the tenants of one maximal set
   without a conflicting pair (`tenant_modes`; dropped above
   MAX_CONFLICTED_TENANTS conflicted tenants).
2. A job's one start and its replicas starting together are dropped: only
   "all R replicas placed" stays, and a replica on a node is split into one
   piece per slot of its window, each counting 1 / d of a replica (d its
   duration; an interruptible job's run slots alike). A plan's replica runs
   in d of those slots, so it maps onto d pieces at its own cost.
3. Power: of the hull lines the model has for a node only the one active at
   its (relaxed) background load is kept: exact there, below the hull
   elsewhere. A powered node-slot costs `CostModel.open_g` at that load, a
   replica `slope x its utilisation` of energy. Where a site has on-site
   supply in the slot (in every slot where it has a battery and any supply)
   energy is free: only embodied carbon is charged.
4. Capacity: CPU only; memory and GPU survive in each pair's most replicas
   on one node (`formulation.most_on_node`, the model's big-M of y <= M h).
5. Each node's problem is the smaller of two cases:
   (a) it hosts a service: on in every slot, its open carbon paid in every
       slot; the larger of two relaxations of its CPU rows: all slots' rows
       summed into one (a service takes T x its request, a job piece its
       request), or services and each slot's job pieces each given the
       whole capacity (the rows they share split in two);
   (b) it hosts no service: each slot on its own, on or off (a binary: the
       open carbon paid in full or not at all) with the job pieces of the
       slot; always-on nodes are on.
6. Integrality of the replica counts dropped: each knapsack is solved as an
   LP (by reduced cost per millicore, the last item taken fractionally).

With lambda_w per replica of workload w and pi_ws >= 0 on the model's spread
rows z[w,s] <= replicas of w at site s (z's own part, sum_s z >= min_sites,
solved exactly: the min_sites smallest pi), a piece's reduced cost is its
energy minus (lambda_w + pi_ws) / d, and

    L = sum_w lambda_w R_w + sum_w (its min_sites smallest pi_ws) + sum_n min(case a, case b).

The binary on/off is what the flow bound (`edgeplace.optimizer.bound`) and
the LP lack: a node eligible for a few tight-SLA services is charged its
whole open carbon, not per millicore (flow) or per replica / M (LP).

Multipliers: the better of the flow relaxation's marginal prices and the
duals of `ServiceLP` (the services' part of the relaxation as an LP, 1-3 s
at 1,000 x 100 x 24), then Polyak steps toward a target (the best
plan's objective): lambda += theta (target - L) / |g|^2 g, g the
subgradient (replicas short of R, z minus replicas at the site), spread
prices kept >= 0, theta halved after PATIENCE_STEPS steps without a better
L, stopping when L has stalled. Any multipliers give a valid bound; the best
L seen is reported, lowered by a relative 1e-9 against rounding in float
sums.
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
PATIENCE_STEPS = 20
#: Stop when theta falls below this: steps too short to move L.
MIN_THETA = 1e-4


@dataclass
class KnapsackBound:
    """The best L(lambda) found [g], after how many evaluations and seconds, its multipliers."""

    value_g: float
    iterations: int
    seconds: float
    prices: np.ndarray  # W, per replica [g]
    #: N: the services' LP's open share h of each node (`ServiceLP`; 1 for always-on nodes),
    #: None when it did not solve.
    lp_open_share: np.ndarray | None = None


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

        # Pieces: one per eligible service pair (a replica all horizon); per eligible job pair, one
        # per slot of its window (each 1 / d of a replica, step 2). `cell`: the piece's node-slot
        # (a service's: its node's slot 0).
        w, n = np.nonzero(costs.eligible)
        service = ~sc.workload_deferrable
        first = np.where(service, 0, sc.workload_earliest_slot)[w]
        span = np.where(service, 1, sc.workload_window_end - sc.workload_earliest_slot)[w]
        pair = np.repeat(np.arange(len(w), dtype=np.int64), span)
        slot = (np.arange(len(pair)) - np.repeat(np.cumsum(span) - span, span) + first[pair])
        self.w = w[pair].astype(np.int32)
        self.cell = (n[pair] * T + slot).astype(np.int32)
        self.service = service[self.w]
        self.per_replica = 1.0 / np.where(service, 1, sc.workload_duration_slots).astype(float)  # W
        # A piece's energy: a service's over the horizon, a job piece's in its slot.
        energy = np.where(service[w], energy_per_util.sum(axis=1)[n], 0.0)[pair]
        energy[~self.service] = energy_per_util.ravel()[self.cell[~self.service]]
        self.cost = costs.workload_node_util[w, n][pair] * energy
        self.weight = sc.workload_requests[:, CPU].astype(float)  # W, per unit of a piece
        self.most = most_on_node(sc, w, n)[pair].astype(np.float32)  # whole numbers, exact
        self.feasible = bool(costs.eligible.any(axis=1).all())
        self.modes = [allowed[sc.workload_tenant[self.w]] for allowed in tenant_modes(sc.tenant_conflicts)]
        # Spread: a multiplier pi >= 0 per (spread workload, eligible site) on the model's
        # rows z[w,s] <= replicas of w at site s; z's own problem (sum_s z >= min_sites) is solved
        # exactly: the min_sites smallest pi of the workload.
        site_of_pair = sc.node_site[n]
        spread_pair = sc.workload_min_sites[w] > 1
        keys = np.unique(np.c_[w[spread_pair], site_of_pair[spread_pair]], axis=0).reshape(-1, 2)
        self.spread_w, self.spread_site = keys[:, 0], keys[:, 1]
        index = np.full(len(w), -1, dtype=np.int64)
        key_of_pair = w[spread_pair].astype(np.int64) * sc.n_sites + site_of_pair[spread_pair]
        index[spread_pair] = np.searchsorted(keys[:, 0].astype(np.int64) * sc.n_sites + keys[:, 1], key_of_pair)
        self.spread_of_piece = index[pair]
        self.min_sites = sc.workload_min_sites
        self.n_workloads = sc.n_workloads
        self.service_workload = ~sc.workload_deferrable

    @property
    def n_multipliers(self) -> int:
        """W replica prices, then one spread price per (spread workload, eligible site)."""
        return self.n_workloads + len(self.spread_w)

    def project(self, multipliers: np.ndarray) -> np.ndarray:
        """The nearest valid multipliers: spread prices are >= 0 (their rows are inequalities)."""
        out = multipliers.copy()
        out[self.n_workloads:] = np.maximum(out[self.n_workloads:], 0.0)
        return out

    def evaluate(self, multipliers: np.ndarray) -> tuple[float, np.ndarray]:
        """L(multipliers) [g] (replica prices, then spread prices: `n_multipliers`) and its
        subgradient: replicas short of R, and z minus the replicas at the site, in the minimisers."""
        W = self.n_workloads
        prices, spread = multipliers[:W], multipliers[W:]
        reward = prices[self.w] + np.where(self.spread_of_piece >= 0, np.r_[spread, 0.0][self.spread_of_piece], 0.0)
        rc = self.cost - reward * self.per_replica[self.w]
        negative = rc < 0
        best = np.full(self.n_nodes, np.inf)
        units = np.zeros(0)
        chosen = np.zeros(0, dtype=np.int64)
        for allowed in self.modes:
            idx = np.flatnonzero(negative & allowed)
            value, take = self._node_problems(rc, idx)
            better = value < best
            best = np.where(better, value, best)
            if len(self.modes) == 1:
                units, chosen = take, idx
                continue
            node_of = self.cell[idx] // self.n_slots
            keep_old = ~better[self.cell[chosen] // self.n_slots]
            units = np.r_[units[keep_old], take[better[node_of]]]
            chosen = np.r_[chosen[keep_old], idx[better[node_of]]]
        replicas = units * self.per_replica[self.w[chosen]]
        placed = np.bincount(self.w[chosen], weights=replicas, minlength=W)
        z_value, z = self._spread_sites(spread)
        at_site = np.zeros(len(spread))
        sp = self.spread_of_piece[chosen]
        np.add.at(at_site, sp[sp >= 0], replicas[sp >= 0])
        value = float(prices @ self.replicas) + z_value + float(best.sum())
        return value, np.r_[self.replicas - placed, z - at_site]

    def _spread_sites(self, spread: np.ndarray) -> tuple[float, np.ndarray]:
        """min sum pi z over z in {0,1} with sum_s z[w,s] >= min_sites[w]: each spread workload's
        min_sites cheapest sites (value, z)."""
        z = np.zeros(len(spread))
        if not len(spread):
            return 0.0, z
        order = np.lexsort((spread, self.spread_w))
        ws = self.spread_w[order]
        z[order[_rank_in_groups(ws) < self.min_sites[ws]]] = 1.0
        return float(spread @ z), z

    def _node_problems(self, rc: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every node's value with the pieces `idx` on offer (the smaller of cases (a) and (b),
        module docstring) and the units of each of those pieces taken in it."""
        N, T = self.n_nodes, self.n_slots
        cell, cost, weight, most = self.cell[idx], rc[idx], self.weight[self.w[idx]], self.most[idx]
        open_g = self.open_g.ravel()
        # (a) hosting a service: on in every slot, each slot a knapsack of every piece.
        node = cell // T
        job = ~self.service[idx]
        a_units, a_value = _fractional_knapsack(node, cost, np.where(job, weight, T * weight), most,
                                                T * self.capacity, N)
        case_a = self.open_g.sum(axis=1) + a_value
        if T == 1:  # (b) is (a) without services: never below it, and off is 0
            value = np.where(self.always_on, case_a, np.minimum(case_a, 0.0))
            return value, np.where((case_a <= value)[node], a_units, 0.0)
        # (b) no service: each slot a knapsack of job pieces, the node on only if that pays.
        b_units, b_value = _fractional_knapsack(cell[job], cost[job], weight[job], most[job],
                                                np.repeat(self.capacity, T), N * T)
        slot = (open_g + b_value).reshape(N, T)
        on = (slot < 0) | self.always_on[:, None]
        case_b = np.where(on, slot, 0.0).sum(axis=1)
        # (a) again with services and job pieces each given the node's whole capacity (every slot's
        # row kept for the pieces, the rows shared by both dropped): another lower bound on it.
        svc = ~job
        s_units, s_value = _fractional_knapsack(node[svc], cost[svc], weight[svc], most[svc], self.capacity, N)
        case_a2 = self.open_g.sum(axis=1) + s_value + b_value.reshape(N, T).sum(axis=1)
        split = case_a2 > case_a
        case_a = np.maximum(case_a, case_a2)
        use_a = case_a <= case_b
        a_take = np.where(split[node], 0.0, a_units)
        a_take[svc] += np.where(split[node[svc]], s_units, 0.0)
        a_take[job] += np.where(split[node[job]], b_units, 0.0)
        take = np.where(use_a[node], a_take, 0.0)
        take[job] += np.where(use_a[node[job]], 0.0, b_units * on.ravel()[cell[job]])
        return np.minimum(case_a, case_b), take


#: Up to this many service pairs the services' LP is solved whole (1,000 x 100: 56,000 pairs,
#: under 2 s); above, by column generation from the LP_START_PAIRS cheapest nodes per service.
LP_WHOLE_MAX_PAIRS = 200_000
LP_START_PAIRS = 8
#: ... and adds at most this many priced-out pairs per service and round.
LP_ADD_PAIRS = 4


class ServiceLP:
    """The LP of the services' part of the relaxation: where the multipliers start.

    Services placed (one row per service, its dual the replica price), each node's CPU
    (aggregated over slots as in case (a)) and open carbon as a fraction h, the links
    y <= M h (y <= M g with g the node's share for a tenant in never_with rules, g_a + g_b <= h
    for each conflicting pair), spread as in the model (z <= replicas at the site, sum z >=
    min_sites). Jobs are left out (their prices stay the flow's). Any multipliers give a valid
    bound; these are the LP's optimal duals, the prices at which the fractional node problems
    balance, and the node problems' binary on/off then lift L above the LP. Above a few pairs
    per service it is solved by column generation: the cheapest pairs first, then the pairs the
    duals price below zero, until none is or the time is up (the duals of a restricted LP are
    still multipliers, only weaker)."""

    def __init__(self, nodes: "NodeKnapsacks", sc):
        self.nodes, self.sc = nodes, sc
        self.pieces = np.flatnonzero(nodes.service)  # the service pairs (aggregated: one piece each)
        self.node = nodes.cell[self.pieces] // nodes.n_slots
        self.services = np.flatnonzero(~sc.workload_deferrable)
        conflicted = np.flatnonzero(sc.tenant_conflicts.any(axis=1))
        self.gpos = np.full(len(sc.tenant_ids), -1)
        self.gpos[conflicted] = np.arange(len(conflicted))
        self.conflict_pairs = list(zip(*np.nonzero(np.triu(sc.tenant_conflicts))))
        self.open_share: np.ndarray | None = None  # N: the last solved LP's h (`solve`)

    def solve(self, columns: np.ndarray, penalty_g: float, time_limit_s: float, threads: int):
        """The LP on the service pairs `columns` (indices into `pieces`): (replica prices W,
        spread prices, CPU duals N), or None when it did not solve; its nodes' h in `open_share`."""
        from edgeplace.optimizer.lagrangian import solve_lp
        from edgeplace.optimizer.linear import LinearModel
        from edgeplace.optimizer.result import SolveStatus

        nodes, sc = self.nodes, self.sc
        N, P = nodes.n_nodes, len(nodes.spread_w)
        pieces = self.pieces[columns]
        w, n = nodes.w[pieces], self.node[columns]
        most = nodes.most[pieces].astype(float)
        m = LinearModel()
        y = m.add_vars("y", len(pieces), upper=most, cost=nodes.cost[pieces])
        h = m.add_vars("h", N, upper=1.0, cost=np.where(nodes.always_on, 0.0, nodes.open_g.sum(axis=1)))
        z = m.add_vars("z", P, upper=1.0)
        Mc = int((self.gpos >= 0).sum())
        g = m.add_vars("g", N * Mc, upper=1.0)
        row_of = np.full(sc.n_workloads, -1)
        row_of[self.services] = np.arange(len(self.services))
        R = nodes.replicas[self.services]
        # Elastic rows: a restricted LP may not cover a service or a spread; the shortfall is priced
        # at `penalty_g` per replica (or site), so the LP always solves and no price exceeds it.
        short = m.add_vars("short", len(self.services), cost=penalty_g)
        m.add_rows("demand", len(self.services), np.r_[row_of[w], np.arange(len(self.services))], np.r_[y, short],
                   np.ones(len(y) + len(short)), lower=R, upper=R)
        m.add_rows("cpu", N, np.r_[n, np.arange(N)], np.r_[y, h], np.r_[nodes.weight[w], -nodes.capacity], upper=0.0)
        tenant = self.gpos[sc.workload_tenant[w]]
        link = np.where(tenant >= 0, g[n * max(Mc, 1) + np.maximum(tenant, 0)] if Mc else h[n], h[n])
        r = np.arange(len(y))
        m.add_rows("link", len(y), np.r_[r, r], np.r_[y, link], np.r_[np.ones(len(y)), -most], upper=0.0)
        for a, b in self.conflict_pairs:
            k = np.arange(N)
            m.add_rows("never_with", N, np.r_[k, k, k], np.r_[g[k * Mc + self.gpos[a]], g[k * Mc + self.gpos[b]], h],
                       np.r_[np.ones(N), np.ones(N), -np.ones(N)], upper=0.0)
        site = nodes.spread_of_piece[pieces]
        has = site >= 0
        m.add_rows("spread_site", P, np.r_[np.arange(P), site[has]], np.r_[z, y[has]],
                   np.r_[np.ones(P), -np.ones(int(has.sum()))], upper=0.0)
        spread_w = np.unique(nodes.spread_w)
        missing = m.add_vars("missing_site", len(spread_w), cost=penalty_g)
        m.add_rows("spread", len(spread_w), np.r_[np.searchsorted(spread_w, nodes.spread_w), np.arange(len(spread_w))],
                   np.r_[z, missing], np.ones(P + len(spread_w)), lower=nodes.min_sites[spread_w].astype(float))
        status, _value, duals, values = solve_lp(m, time_limit_s, threads)
        if status is not SolveStatus.optimal:
            return None
        self.open_share = np.where(nodes.always_on, 1.0, np.clip(values[h], 0.0, 1.0))
        start = {family: begin for family, begin, _size in m.row_family}
        prices = np.zeros(sc.n_workloads)
        prices[self.services] = duals[start["demand"]:start["demand"] + len(self.services)]
        spread = np.maximum(-duals[start["spread_site"]:start["spread_site"] + P], 0.0)
        cpu = np.maximum(-duals[start["cpu"]:start["cpu"] + N], 0.0)
        return prices, spread, cpu

    def multipliers(self, prices: np.ndarray, deadline: float, threads: int) -> np.ndarray | None:
        """Replica prices (services from the LP, jobs from `prices`) and spread prices, by column
        generation until no pair prices below zero or `deadline`; None if the first LP fails."""
        nodes = self.nodes
        pieces = self.pieces
        w = nodes.w[pieces]
        # The cheapest pairs first: energy plus the node's open carbon per millicore it holds.
        open_share = np.where(nodes.always_on, 0.0, nodes.open_g.sum(axis=1)) / np.maximum(nodes.capacity, 1.0)
        guess = nodes.cost[pieces] + nodes.n_slots * nodes.weight[w] * open_share[self.node]
        columns = (np.arange(len(pieces)) if len(pieces) <= LP_WHOLE_MAX_PAIRS
                   else np.sort(_cheapest_per_group(np.arange(len(pieces)), guess, w, LP_START_PAIRS)))
        # A replica short costs more than opening its dearest node for it alone, on top of its energy.
        penalty_g = 2.0 * (float(nodes.open_g.sum(axis=1).max(initial=0.0)) + float(nodes.cost.max(initial=0.0)) + 1.0)
        best = None
        while True:
            solved = self.solve(columns, penalty_g, max(deadline - time.perf_counter(), 0.05), threads)
            if solved is None:
                break
            lp_prices, spread, cpu = solved
            best = np.r_[np.where(nodes.service_workload, lp_prices, prices), spread]
            if len(columns) == len(pieces) or time.perf_counter() >= deadline:
                break
            reward = lp_prices[w] + np.where(nodes.spread_of_piece[pieces] >= 0,
                                             np.r_[spread, 0.0][nodes.spread_of_piece[pieces]], 0.0)
            reduced = nodes.cost[pieces] - reward + nodes.weight[w] * cpu[self.node]
            reduced[columns] = np.inf
            new = np.flatnonzero(reduced < -1e-9)
            if not len(new):
                break
            columns = np.union1d(columns, _cheapest_per_group(new, reduced, w, LP_ADD_PAIRS))
        return best


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


def _rank_in_groups(groups: np.ndarray) -> np.ndarray:
    """Each element's position within its run of equal values of sorted `groups` (0, 1, ... per run)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def _cheapest_per_group(items: np.ndarray, key: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """Of `items`, the `k` with the smallest `key` in each `group` (ordered by group, then key)."""
    order = items[np.lexsort((key[items], group[items]))]
    return order[_rank_in_groups(group[order]) < k]


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


#: Subgradient steps: theta of Polyak's step, halved after PATIENCE_STEPS steps without a better L.
START_THETA = 0.1
#: Stop when the best L rose by at most STALL_REL (relative) over the last STALL_STEPS steps:
#: the rest of the time goes to the plan.
STALL_STEPS = 100
STALL_REL = 1e-4
#: The services' LP may take this share of the bound's time (the steps the rest).
LP_SHARE = 0.6


#: Above this many pieces the bound is not tried. At 10,000 x 1,000 x 1 (7.4 million) building
#: them takes 4 s and one evaluation of L 2 s; L from the flow prices is 32.8 kg against the
#: flow bound's 34.65, and the services' LP needed more than 115 s of column generation
#: (measured): within a 15 s budget it cannot pass the flow bound, and the time is the plan's.
MAX_PIECES = 3_000_000


def piece_count(costs: CostModel) -> int:
    """The pieces `NodeKnapsacks` would build: a service's eligible pairs, a job's eligible pairs
    times its window's slots."""
    sc = costs.scenario
    span = np.where(sc.workload_deferrable, sc.workload_window_end - sc.workload_earliest_slot, 1)
    return int((costs.eligible.sum(axis=1) * span).sum())


def knapsack_bound_g(costs: CostModel, prices: np.ndarray, target_g: float, deadline: float, threads: int = 1,
                     max_steps: int | None = None) -> KnapsackBound | None:
    """The best L found (module docstring): from the services' LP duals (`ServiceLP`, within
    LP_SHARE of the time) or `prices` (W, per replica: the flow relaxation's), whichever gives
    more, then Polyak steps toward `target_g` (an upper bound on the optimum, e.g. the best
    plan's objective) until `deadline` (time.perf_counter), `max_steps` evaluations or a stall.
    None when the instance has more than MAX_PIECES pieces, some workload has no eligible node,
    or the time ran out before the first L."""
    started = time.perf_counter()
    if piece_count(costs) > MAX_PIECES:
        return None
    nodes = NodeKnapsacks(costs)
    if not nodes.feasible or time.perf_counter() >= deadline:
        return None
    lam = np.r_[np.asarray(prices, dtype=float), np.zeros(nodes.n_multipliers - len(prices))]
    value, g = nodes.evaluate(lam)
    lp_deadline = time.perf_counter() + LP_SHARE * (deadline - time.perf_counter())
    service_lp = ServiceLP(nodes, costs.scenario)
    from_lp = service_lp.multipliers(prices, lp_deadline, threads)
    if from_lp is not None:
        lp_value, lp_g = nodes.evaluate(from_lp)
        if lp_value > value:
            lam, value, g = from_lp, lp_value, lp_g
    best_g, best_lam = value, lam.copy()
    theta, stale, steps, history = START_THETA, 0, 1, [best_g]
    while True:
        norm = float(g @ g)
        stalled = len(history) > STALL_STEPS and best_g - history[-STALL_STEPS - 1] <= STALL_REL * abs(best_g)
        if (norm <= 1e-12 or theta < MIN_THETA or stalled or time.perf_counter() >= deadline
                or (max_steps is not None and steps >= max_steps)):
            break
        lam = nodes.project(lam + theta * max(target_g - value, 0.0) / norm * g)
        value, g = nodes.evaluate(lam)
        steps += 1
        if value > best_g + 1e-9 * abs(value):
            best_g, best_lam, stale = value, lam.copy(), 0
        else:
            stale += 1
            if stale >= PATIENCE_STEPS:
                theta, stale = theta / 2, 0
        history.append(best_g)
    bound = best_g - ROUNDING_REL * abs(best_g)
    return KnapsackBound(bound, steps, time.perf_counter() - started, best_lam[:len(prices)],
                         service_lp.open_share)


__all__ = ["KnapsackBound", "NodeKnapsacks", "ServiceLP", "knapsack_bound_g"]
