"""The LP relaxation by column generation: the full model's bound without its columns.

At 1,000 workloads x 100 nodes x 24 slots the placement model has 250,000
columns and its LP relaxation does not solve in a minute; at 10,000 x 1,000
it has 7.4 million and is not built at all. Yet an optimal LP solution uses a
few columns per workload. So the LP is solved over a restricted set of
workload-node pairs (the restricted master, `build(costs, columns=mask)`),
its row duals price every pair left out, the pairs that would lower the
objective join, and the master is solved again:

    reduced cost of y[w,n] = cost - (demand dual of w + sum_k request_k x load dual of n,k
                                     + utilisation of w on n x util dual of n - spread dual of w at n's site)
    reduced cost of x[j,n,s] = cost - (demand dual of (j,s)
                                       + sum over the run's slots t of (capacity and quota duals x requests
                                         - power-line duals x slope x utilisation) - spread dual)

(the rows a new pair brings with it, such as its host link, start with dual
0). When no pair has a negative reduced cost the master's optimum is the full
LP's. Before that, the Lagrangian (Farley) bound

    master optimum + sum over pairs left out of min(0, reduced cost) x replicas

is a valid lower bound at every iteration, so a time limit still leaves a
proven bound. The pairs ever generated are also a good pool for the integer
solvers: `optimizer.solve` solves the MILP restricted to them when the full
model is large (price-and-branch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optimizer.formulation import Formulation, build, hull_lines
from optimizer.highs_backend import solve_highs
from optimizer.result import SolveStatus
from policies.costs import CostModel
from topology.placement import Placement
from topology.scenario import CPU

#: Pairs each workload starts with (its cheapest by a static estimate) and at most gains per round.
INITIAL_PER_WORKLOAD = 4
ADDED_PER_WORKLOAD = 4
#: The first master offers every workload the cheapest nodes holding this many times the CPU demand.
CHEAP_NODE_COVER = 1.5
MAX_CHEAP_NODE_PAIRS = 50_000
#: Stop when the Lagrangian bound is within this share of the master's optimum.
RELATIVE_TOLERANCE = 1e-5


@dataclass
class ColumnGenerationResult:
    bound_g: float | None  # a proven lower bound of the full model (None: no master solved)
    lp_g: float | None  # the last restricted master's optimum
    columns: np.ndarray  # W x N bool: every pair generated
    support: np.ndarray  # W x N bool: the pairs the last master's optimum uses (the pool for a restricted MILP)
    iterations: int
    converged: bool  # no pair left with a negative reduced cost: bound_g is the full LP's optimum
    seconds: float


def placement_pairs(costs: CostModel, placement: Placement) -> np.ndarray:
    """W x N bool: the workload-node pairs a placement uses (any slot)."""
    sc = costs.scenario
    pairs = np.zeros((sc.n_workloads, sc.n_nodes), dtype=bool)
    running = placement.assign >= 0
    rows, _slots = np.nonzero(running)
    pairs[sc.replica_workload[rows], placement.assign[running]] = True
    return pairs & costs.eligible


def static_pair_cost_g(costs: CostModel) -> np.ndarray:
    """W x N: a placement-independent estimate of what one replica costs on a node
    over the horizon (its dynamic power at the node's first hull slope plus its
    CPU share of the node's fixed cost); inf where not eligible. Only ranks pairs."""
    sc = costs.scenario
    fixed_per_mc = costs.open_g().sum(axis=1) / sc.node_capacity[:, CPU]
    dyn_per_util = costs.power_slope_w.min(axis=1) * costs.kwh_per_w_slot * costs.node_intensity_g_per_kwh.sum(axis=1)
    cost = costs.workload_node_util * dyn_per_util[None, :] + sc.workload_requests[:, CPU:CPU + 1] * fixed_per_mc[None, :]
    return np.where(costs.eligible, cost, np.inf)


def cheapest_pairs(costs: CostModel, per_workload: int = INITIAL_PER_WORKLOAD) -> np.ndarray:
    """W x N bool: each workload's `per_workload` cheapest pairs by `static_pair_cost_g`."""
    return _smallest(static_pair_cost_g(costs), per_workload)


def initial_columns(costs: CostModel, placement: Placement | None = None) -> np.ndarray:
    """The first master's pairs: each workload's cheapest few by `static_pair_cost_g`,
    its current nodes (so the migration terms exist) and the pairs of `placement`."""
    sc = costs.scenario
    mask = cheapest_pairs(costs)
    # The LP fills the nodes cheapest per millicore first: offer every workload all of
    # them, up to CHEAP_NODE_COVER x the CPU demand (fewer rounds to find them by pricing).
    per_mc = (costs.open_g().sum(axis=1) + costs.power_slope_w.min(axis=1) * costs.kwh_per_w_slot
              * costs.node_intensity_g_per_kwh.sum(axis=1) * sc.workload_cpu_usage.mean()) / sc.node_capacity[:, CPU]
    order = np.argsort(per_mc)
    demand = float((sc.workload_requests[:, CPU] * sc.workload_replicas).sum())
    covered = int(np.searchsorted(np.cumsum(sc.node_capacity[order, CPU]), CHEAP_NODE_COVER * demand)) + 1
    # ... as long as the master stays small (at 10,000 workloads, a few nodes only).
    affordable = int(np.searchsorted(np.cumsum(costs.eligible[:, order].sum(axis=0)), MAX_CHEAP_NODE_PAIRS))
    cheap = order[:min(covered, affordable)]
    mask[:, cheap] |= costs.eligible[:, cheap]
    for w, counts in costs.current_count.items():
        mask[w] |= (counts > 0) & costs.eligible[w]
    if placement is not None:
        mask |= placement_pairs(costs, placement)
    # A spread workload needs columns on at least min_sites sites for the master to be
    # feasible: its cheapest node at each of its min_sites + 1 cheapest sites.
    static = static_pair_cost_g(costs)
    for w in np.flatnonzero(sc.workload_min_sites > 1):
        nodes = np.flatnonzero(np.isfinite(static[w]))
        nodes = nodes[np.argsort(static[w, nodes], kind="stable")]
        _, first = np.unique(sc.node_site[nodes], return_index=True)  # cheapest node per site
        best = nodes[np.sort(first)][:int(sc.workload_min_sites[w]) + 1]  # ... of the cheapest sites
        mask[w, best] = True
    return mask


def column_generation(costs: CostModel, columns: np.ndarray, *, time_limit_s: float, threads: int = 1,
                      say=lambda _msg: None) -> ColumnGenerationResult:
    """Solve the LP relaxation of the placement model starting from `columns` (W x N bool)."""
    started = time.perf_counter()
    deadline = started + time_limit_s
    columns = columns & costs.eligible
    best_bound: float | None = None
    lp_g: float | None = None
    support = np.zeros_like(columns)
    iterations = 0
    while True:
        iterations += 1
        form = build(costs, columns=columns, master=True)
        result = solve_highs(form.model, time_limit_s=max(deadline - time.perf_counter(), 0.01), threads=threads,
                             relax=True)
        if result.status is not SolveStatus.optimal or result.row_duals is None:
            break  # out of time (or an infeasible master: too few columns for a spread or capacity)
        lp_g = float(result.objective)
        support = _support(costs, form, result.values)
        pricing = price_columns(costs, form, result.row_duals)
        bound = lagrangian_bound(costs, form, result.values, result.col_duals, lp_g, pricing)
        best_bound = bound if best_bound is None else max(best_bound, bound)
        say(f"column generation round {iterations}: LP {lp_g / 1000:.4f} kg over {int(columns.sum()):,} pairs, "
            f"bound {best_bound / 1000:.4f} kg ({time.perf_counter() - started:.1f} s)")
        least = np.where(columns, np.inf, pricing.least)
        new = _smallest(np.where(least < -1e-9 * max(1.0, abs(lp_g)), least, np.inf), ADDED_PER_WORKLOAD)
        if not new.any() or lp_g - best_bound <= RELATIVE_TOLERANCE * abs(lp_g):
            bound = lp_g if not new.any() else best_bound  # no improving pair: the master's optimum is the LP's
            return ColumnGenerationResult(bound, lp_g, columns, support, iterations, True,
                                          time.perf_counter() - started)
        columns = columns | new
        if time.perf_counter() >= deadline:
            break
    return ColumnGenerationResult(best_bound, lp_g, columns, support, iterations, False,
                                  time.perf_counter() - started)


def _support(costs: CostModel, form: Formulation, values: np.ndarray) -> np.ndarray:
    """W x N bool: pairs with a positive y or x in a master's solution."""
    support = np.zeros(costs.eligible.shape, dtype=bool)
    used = values[form.y] > 1e-9
    support[form.service_w[used], form.service_n[used]] = True
    used = values[form.x] > 1e-9
    support[form.job_j[used], form.job_n[used]] = True
    return support


@dataclass
class Pricing:
    """Reduced costs of every column under one master's row duals, counting the rows a
    new column brings (host_link, job_on, tenant_present, kept_le_y) with dual 0."""

    least: np.ndarray  # W x N: the least over a pair's columns (a job's start slots); +inf where not eligible
    job_starts: dict[int, np.ndarray]  # job -> start slots of its window
    job: dict[int, np.ndarray]  # job -> N x starts; +inf where not eligible


def price_columns(costs: CostModel, form: Formulation, duals: np.ndarray) -> Pricing:
    """Reduced costs (HiGHS's sign: cost - A^T duals) of every y and x column of the full model."""
    sc, model = costs.scenario, form.model
    N, T, K = sc.n_nodes, sc.n_slots, len(sc.resources)
    req = sc.workload_requests.astype(float)
    util = costs.workload_node_util
    latency_cost = costs.objective.latency_weight_g_per_ms * sc.workload_site_latency_ms[:, sc.node_site]  # W x N

    def family(name: str, shape) -> np.ndarray:
        rows = model.family_slice(name)
        return np.zeros(shape) if rows is None else duals[rows].reshape(shape)

    least = np.full((sc.n_workloads, N), np.inf)
    # Spread: the dual of "z[s] <= replicas at site s" enters every column at s with -1.
    spread = np.zeros((sc.n_workloads, N))
    for w in np.flatnonzero(sc.workload_min_sites > 1):
        sites = np.unique(sc.node_site[np.flatnonzero(costs.eligible[w])])
        at = np.minimum(np.searchsorted(sites, sc.node_site), len(sites) - 1)
        ok = sites[at] == sc.node_site
        spread[w, ok] = family(f"spread_site_{w}", len(sites))[at[ok]]

    services = np.flatnonzero(~sc.workload_deferrable)
    if len(services):
        demand = family("service_demand", len(services))
        load = family("load_def", (N, K))
        util_dual = family("util_def", N)
        priced = demand[:, None] + req[services] @ load.T + util[services] * util_dual[None, :] - spread[services]
        # never_with: a conflicted tenant's services enter its load rows per node and resource.
        conflicted = np.flatnonzero(sc.tenant_conflicts.any(axis=1))
        if len(conflicted):
            tenant_load = np.stack([family(f"tenant_load_{r}", (N, len(conflicted))) for r in sc.resources])  # K x N x Mc
            gpos = np.full(len(sc.tenant_ids), -1)
            gpos[conflicted] = np.arange(len(conflicted))
            pos = gpos[sc.workload_tenant[services]]
            for i in np.flatnonzero(pos >= 0):
                priced[i] += req[services[i]] @ tenant_load[:, :, pos[i]]
        least[services] = latency_cost[services] - priced

    job_starts, job_rc = {}, {}
    jobs = np.flatnonzero(sc.workload_deferrable)
    if len(jobs):
        job_demand = family("job_demand", len(form.start_j))
        capacity = np.stack([family(f"capacity_{r}", (N, T)) for r in sc.resources])  # K x N x T
        _, slopes = hull_lines(costs)  # L x N
        power = sum(slopes[i][:, None] * family(f"power_line_{i}", (N, T)) for i in range(len(slopes)))  # N x T
        quota = np.zeros((len(sc.tenant_ids), K, T))
        for mt, k in zip(*np.nonzero(np.isfinite(sc.tenant_quota))):
            quota[mt, k] = family(f"quota_{sc.tenant_ids[mt]}_{sc.resources[k]}", T)
        cum = lambda a: np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)  # noqa: E731
        cap_cum, power_cum, quota_cum = cum(capacity), cum(power), cum(quota)
        b_of = {(int(j), int(s)): i for i, (j, s) in enumerate(zip(form.start_j, form.start_s))}
        for j in jobs:
            d = int(sc.workload_duration_slots[j])
            starts = np.arange(sc.workload_earliest_slot[j], sc.workload_latest_start_slot[j] + 1)
            run = lambda c: c[..., starts + d] - c[..., starts]  # noqa: E731  sums over each start's run
            per_request = run(cap_cum) + run(quota_cum[sc.workload_tenant[j]])[:, None, :]  # K x N x starts
            priced = (np.einsum("k,kns->ns", req[j], per_request) - util[j][:, None] * run(power_cum)
                      + job_demand[[b_of[(int(j), int(s))] for s in starts]][None, :] - spread[j][:, None])
            rc = np.where(costs.eligible[j][:, None], latency_cost[j][:, None] - priced, np.inf)
            job_starts[int(j)], job_rc[int(j)] = starts, rc
            least[j] = rc.min(axis=1)
    return Pricing(np.where(costs.eligible, least, np.inf), job_starts, job_rc)


def lagrangian_bound(costs: CostModel, form: Formulation, values: np.ndarray, col_duals: np.ndarray,
                     master_g: float, pricing: Pricing) -> float:
    """A lower bound on the full LP from one master (Lubbecke & Desrosiers' bound with
    convexity rows): each workload's columns form a block whose replicas sum to R (a
    job's also pick one start), so

        LP >= master + sum_w (least cost of the block under the reduced costs
                              - what the master's solution pays in it)

    Least cost of a service block: R x its least reduced cost over all its pairs
    (the master's columns at their true reduced cost, HiGHS's column duals; the
    others as priced). Of a job block: min over starts of (reduced cost of b[j,s] +
    R x least reduced cost of an x at that start). Every other column keeps what it
    has in the master (complementary slackness)."""
    sc = costs.scenario
    R = sc.workload_replicas.astype(float)
    total = master_g
    services = np.flatnonzero(~sc.workload_deferrable)
    if len(services):
        rc = pricing.least.copy()
        rc[form.service_w, form.service_n] = col_duals[form.y]
        paid = np.bincount(form.service_w, weights=col_duals[form.y] * values[form.y], minlength=sc.n_workloads)
        total += float((R[services] * rc[services].min(axis=1) - paid[services]).sum())
    if pricing.job:
        x_rc = {j: rc.copy() for j, rc in pricing.job.items()}
        for i, (j, n, s) in enumerate(zip(form.job_j, form.job_n, form.job_s)):
            x_rc[int(j)][n, s - pricing.job_starts[int(j)][0]] = col_duals[form.x[i]]
        paid = np.bincount(form.job_j, weights=col_duals[form.x] * values[form.x], minlength=sc.n_workloads)
        paid += np.bincount(form.start_j, weights=col_duals[form.b] * values[form.b], minlength=sc.n_workloads)
        b_rc = {}
        for i, (j, s) in enumerate(zip(form.start_j, form.start_s)):
            b_rc.setdefault(int(j), np.zeros(len(pricing.job_starts[int(j)])))[s - pricing.job_starts[int(j)][0]] = \
                col_duals[form.b[i]]
        for j, rc in x_rc.items():
            total += float((b_rc[j] + R[j] * rc.min(axis=0)).min() - paid[j])
    return total


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """W x N bool: the (up to) k smallest finite entries of each row."""
    mask = np.zeros(values.shape, dtype=bool)
    if values.shape[1] == 0:
        return mask
    k = min(k, values.shape[1])
    idx = np.argpartition(values, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(values.shape[0]), k)
    cols = idx.ravel()
    keep = np.isfinite(values[rows, cols])
    mask[rows[keep], cols[keep]] = True
    return mask
