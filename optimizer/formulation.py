"""The placement MILP, built in one function from a `CostModel`.

Modelled space (the same for every exact solver and the lower bound):
services keep their nodes for the whole horizon (a rolling-horizon re-plan
moves them when that pays for the migration penalty); a deferrable job's
replicas start together in one slot of its window and keep their nodes; an
interruptible job's replicas run together in `duration` slots of its window,
in runs of at least `min_run` slots, on the same nodes throughout; a node is
on in a slot when anything runs on it or it may not power down.
Identical replicas of a workload are aggregated: the decision is how many
replicas of workload w run on node n (an integer), not which replica.

Variables
    y[w,n]     int   replicas of service w on node n (eligible pairs only)
    x[j,n,s]   int   replicas of deferrable job j on node n, starting in slot s
    b[j,s]     bin   job j starts in slot s
    a[i,n]     int   replicas of interruptible job i on node n (they keep their node)
    r[i,t]     bin   interruptible job i runs in slot t (of its window)
    q[i,n,t]   int   replicas of interruptible job i running on node n in slot t (>= a - M (1 - r))
    h[n]       bin   node n hosts a service (so it is on in every slot)
    o[n,t]     bin   node n is on in slot t
    p[n,t]     cont  IT power of node n in slot t [W]
    grid[s,t]  cont  grid energy of a site with on-site supply [kWh]
    chg/dis/soc      battery charge, discharge [kWh] and state of charge [kWh]
    z[w,s]     bin   spread: workload w has a replica at site s
    g[n,m]     bin   tenant m is on node n (only tenants with never_with rules)
    q[w,k,d]   bin   workload w has a replica in domain d of topology key k (pod affinity,
                     anti-affinity and topology spread rules, `edgeplace.topology.constraints`)
    low[r]     int   the emptiest eligible domain's count of spread rule r
    kept[w,n]  cont  replicas of w that stay on their current node n
    load[n,k], util[n]  cont  service requests and utilisation on a node (aggregates)

Every continuous block has a finite upper bound from the data and a
`resolution` (the integer step CP-SAT uses for it, `LinearModel.VarBlock`).
The bounds never cut off an optimum: each is what the variable needs at most
at its cheapest feasible value (see the comments where they are set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeplace.optimizer.linear import LinearModel
from edgeplace.policies.costs import CostModel
from edgeplace.policies.power import BATTERY_ROUND_TRIP_EFFICIENCY
from edgeplace.topology.scenario import Scenario

#: CP-SAT steps of the continuous blocks (`VarBlock.resolution`). 0.01 W of IT
#: power, 0.01 Wh (1e-5 kWh) of energy (the same step for a one-hour slot) and
#: 1e-6 of utilisation (<= 0.003 W on a 3 kW slope) are far below what a
#: placement changes (a node draws tens to hundreds of W) and keep integer
#: domains below ~1e9 values; coarser steps (0.1 W, 1e-4) let CP-SAT's optimum
#: drift ~1e-4 below the MILP's (measured on generated instances), these ~1e-5,
#: at no measurable cost in solve time. Requests are integer counts
#: (millicores, MiB), so `load` is exact with step 1; `kept` is a replica count.
POWER_RESOLUTION_W = 0.01
ENERGY_RESOLUTION_KWH = 1e-5
UTIL_RESOLUTION = 1e-6
COUNT_RESOLUTION = 1.0


@dataclass
class Formulation:
    """The model plus the index maps needed to read a solution back."""

    model: LinearModel
    service_w: np.ndarray  # pair -> workload, for y
    service_n: np.ndarray  # pair -> node
    job_j: np.ndarray  # triple -> workload, for x
    job_n: np.ndarray
    job_s: np.ndarray
    start_j: np.ndarray  # b index -> workload
    start_s: np.ndarray  # b index -> start slot
    y: np.ndarray
    x: np.ndarray
    b: np.ndarray
    o: np.ndarray  # N*T, row-major (n, t)
    p: np.ndarray  # N*T
    ijob_w: np.ndarray  # pair -> workload, for a (interruptible jobs)
    ijob_n: np.ndarray
    a: np.ndarray
    run_w: np.ndarray  # r index -> workload
    run_t: np.ndarray  # r index -> slot
    r: np.ndarray
    #: The node each column belongs to (-1: none, e.g. a job's start, a site's grid energy):
    #: what splits the model into one block per node (`edgeplace.optimizer.lagrangian`).
    column_node: np.ndarray | None = None


def _run_mask(d: int, starts: np.ndarray, T: int) -> np.ndarray:
    """len(starts) x T: slot t is covered by a run of length d starting at s."""
    t = np.arange(T)
    return (t[None, :] >= starts[:, None]) & (t[None, :] < starts[:, None] + d)


def _hull_lines(costs: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """(intercept_w, slope_w), each L x N: line l of node n in the power rows.

    Each node's distinct convex-hull lines; a node with fewer than L repeats its
    last one (a duplicate row, harmless)."""
    lines = [np.unique(np.c_[costs.power_intercept_w[i], costs.power_slope_w[i]], axis=0)
             for i in range(costs.scenario.n_nodes)]
    L = max((len(ls) for ls in lines), default=1)
    table = np.array([[ls[min(l_idx, len(ls) - 1)] for ls in lines] for l_idx in range(L)])  # L x N x 2
    return table[:, :, 0], table[:, :, 1]


def most_on_node(sc: Scenario, w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The most replicas of workload w[i] node n[i] can hold (float): the big-M of the links
    y <= M h and x <= M o. Its fit in every resource, and with spread over m sites at most
    R - m + 1 (a smaller big-M is a tighter LP relaxation: a spread pair of 2 forces h >= y,
    not h >= y/2)."""
    req = sc.workload_requests[w].astype(float)
    fit = np.floor(np.min(np.where(req > 0, sc.node_capacity[n] / np.maximum(req, 1e-9), np.inf), axis=1))
    R = sc.workload_replicas[w]
    return np.minimum(R - sc.workload_min_sites[w] + 1, np.where(np.isfinite(fit), fit, R)).astype(float)


def build(costs: CostModel, columns: np.ndarray | None = None, job_starts: dict[int, int] | None = None) -> Formulation:
    """Build the MILP of `costs.scenario` (see the module docstring for the variables).

    `columns` (W x N bool) keeps only those eligible workload-node pairs as y
    and x columns: a restricted model (`edgeplace.optimizer.pairs`), whose optimum is an
    upper bound of the full model's (its plans are plans of the full model).
    `job_starts` (deferrable job -> slot) fixes those jobs' start slot, which must lie in
    their window (a neighbourhood step keeps the jobs it does not free where they run).
    """
    sc, cm, obj = costs.scenario, costs, costs.objective
    cols_allowed = cm.eligible if columns is None else (columns & cm.eligible)
    N, T, K, S = sc.n_nodes, sc.n_slots, len(sc.resources), sc.n_sites
    m = LinearModel()
    node_int = cm.node_intensity_g_per_kwh  # N x T
    site_has_supply = (cm.site_supply_kwh > 0).any(axis=1) | (sc.site_battery_kwh > 0)
    node_on_supply_site = site_has_supply[sc.node_site]
    req = sc.workload_requests.astype(float)
    R = sc.workload_replicas
    latency = sc.workload_site_latency_ms  # W x S

    # -- decision variables ------------------------------------------------------
    services = np.flatnonzero(~sc.workload_deferrable)
    sw, sn = np.nonzero(cols_allowed[services])
    sw = services[sw]
    y = m.add_vars("y", len(sw), upper=R[sw], integer=True,
                   cost=obj.latency_weight_g_per_ms * latency[sw, sc.node_site[sn]])

    jobs = np.flatnonzero(sc.workload_deferrable & ~sc.workload_interruptible)
    start_j, start_s, jj, jn, js = [], [], [], [], []
    for j in jobs:
        starts = np.arange(sc.workload_earliest_slot[j], sc.workload_latest_start_slot[j] + 1)
        if job_starts is not None and j in job_starts:
            starts = starts[starts == job_starts[j]]
        nodes = np.flatnonzero(cols_allowed[j])
        start_j.append(np.full(len(starts), j)); start_s.append(starts)
        jj.append(np.full(len(starts) * len(nodes), j))
        jn.append(np.tile(nodes, len(starts))); js.append(np.repeat(starts, len(nodes)))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
    start_j, start_s, jj, jn, js = map(cat, (start_j, start_s, jj, jn, js))
    x = m.add_vars("x", len(jj), upper=R[jj], integer=True,
                   cost=obj.latency_weight_g_per_ms * latency[jj, sc.node_site[jn]])
    b = m.add_vars("b", len(start_j), upper=1.0, integer=True)

    ijobs = np.flatnonzero(sc.workload_interruptible)
    iw, in_ = np.nonzero(cols_allowed[ijobs])
    iw = ijobs[iw]
    a_var = m.add_vars("a", len(iw), upper=R[iw], integer=True,
                       cost=obj.latency_weight_g_per_ms * latency[iw, sc.node_site[in_]])
    rw = np.concatenate([np.full(int(sc.workload_window_end[i] - sc.workload_earliest_slot[i]), i) for i in ijobs]) \
        if len(ijobs) else np.zeros(0, dtype=np.int64)
    rt = np.concatenate([np.arange(sc.workload_earliest_slot[i], sc.workload_window_end[i]) for i in ijobs]) \
        if len(ijobs) else np.zeros(0, dtype=np.int64)
    # A run in progress shorter than min_run goes on in slots 0..min_run - done - 1.
    due = np.maximum(sc.workload_min_run_slots[rw] - sc.workload_run_done_slots[rw], 0) * (sc.workload_run_done_slots[rw] > 0)
    r_var = m.add_vars("r", len(rw), lower=(rt < due).astype(float), upper=1.0, integer=True)

    h = m.add_vars("h", N, upper=1.0, integer=True)
    # Embodied carbon is paid per powered node-slot; always-on nodes are fixed on.
    o = m.add_vars("o", N * T, lower=np.repeat(~sc.node_can_power_down, T).astype(float), upper=1.0,
                   integer=True, cost=np.repeat(cm.embodied_g_per_slot, T))
    # Power on a site without on-site supply is priced directly at grid intensity.
    kwh = np.repeat(cm.kwh_per_w_slot, T)
    p_cost = kwh * (obj.energy_weight_g_per_kwh + np.where(np.repeat(node_on_supply_site, T), 0.0, node_int.ravel()))
    # p never needs more than its highest power line at the most utilisation a
    # node can see: its workloads' CPU use (<= the largest usage fraction among
    # eligible workloads, since capacity caps the requests) plus background.
    usage_max = cm.node_usage_max()  # N
    background = cm.relaxed_background_util()  # N x T, see CostModel: keeps the model a relaxation
    u_max = usage_max[:, None] + background  # N x T
    line_a, line_s = cm.power_intercept_w[:, None, :], cm.power_slope_w[:, None, :]
    p_max_w = np.maximum(np.maximum(line_a, line_a + line_s * u_max[:, :, None]).max(axis=2), 0.0)  # N x T
    p = m.add_vars("p", N * T, upper=p_max_w.ravel(), cost=p_cost, resolution=POWER_RESOLUTION_W)

    # -- services: every replica placed; a hosting node is on all horizon -------------
    n_sw = len(sw)
    if len(services):
        row_of = np.full(sc.n_workloads, -1); row_of[services] = np.arange(len(services))
        m.add_rows("service_demand", len(services), row_of[sw], y, np.ones(n_sw), lower=R[services], upper=R[services])
        big_m = most_on_node(sc, sw, sn)  # y <= M h
        rows = np.arange(n_sw)
        m.add_rows("host_link", n_sw, np.r_[rows, rows], np.r_[y, h[sn]], np.r_[np.ones(n_sw), -big_m], upper=0.0)
    # h[n] <= o[n,t]
    on_rows = np.arange(N * T)
    m.add_rows("host_on", N * T, np.r_[on_rows, on_rows], np.r_[np.repeat(h, T), o], np.r_[np.ones(N * T), -np.ones(N * T)], upper=0.0)

    # -- deferrable jobs: one start, all replicas placed at that start ----------------
    if len(jobs):
        jrow = np.full(sc.n_workloads, -1); jrow[jobs] = np.arange(len(jobs))
        m.add_rows("job_start", len(jobs), jrow[start_j], b, np.ones(len(b)), lower=1.0, upper=1.0)
        key = {(int(j), int(s)): i for i, (j, s) in enumerate(zip(start_j, start_s))}
        brow = np.array([key[(int(j), int(s))] for j, s in zip(jj, js)], dtype=np.int64)
        m.add_rows("job_demand", len(b), np.r_[brow, np.arange(len(b))], np.r_[x, b],
                   np.r_[np.ones(len(x)), -R[start_j].astype(float)], lower=0.0, upper=0.0)

    # -- interruptible jobs: all replicas placed, `duration` run slots, runs of >= min_run ------
    zi = np.zeros(0, dtype=np.int64)
    if len(ijobs):
        irow = np.full(sc.n_workloads, -1); irow[ijobs] = np.arange(len(ijobs))
        m.add_rows("ijob_demand", len(ijobs), irow[iw], a_var, np.ones(len(iw)), lower=R[ijobs], upper=R[ijobs])
        m.add_rows("ijob_slots", len(ijobs), irow[rw], r_var, np.ones(len(rw)),
                   lower=sc.workload_duration_slots[ijobs], upper=sc.workload_duration_slots[ijobs])
        _min_run_rows(m, sc, ijobs, rw, rt, r_var)
        # q[i,n,t] >= a[i,n] - M (1 - r[i,t]) over the window: the replicas present when it runs.
        i_m = most_on_node(sc, iw, in_)
        first_r = {int(i): k for k, i in zip(np.r_[0, np.cumsum(sc.workload_window_end[ijobs] - sc.workload_earliest_slot[ijobs])[:-1]], ijobs)}
        span = (sc.workload_window_end[iw] - sc.workload_earliest_slot[iw]).astype(np.int64)
        zi = np.repeat(np.arange(len(iw)), span)  # pair of each q column
        zr = np.concatenate([first_r[int(i)] + np.arange(n_) for i, n_ in zip(iw, span)]) if len(iw) else zi
        q = m.add_vars("q", len(zi), upper=i_m[zi], integer=True)  # = a r, whole replicas (exact rows in CP-SAT)
        rows = np.arange(len(zi))
        m.add_rows("ijob_present", len(zi), np.r_[rows, rows, rows], np.r_[q, a_var[zi], r_var[zr]],
                   np.r_[np.ones(len(zi)), -np.ones(len(zi)), -i_m[zi]], lower=-i_m[zi])
    else:
        q, zr = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    # -- aggregates: service requests and utilisation per node ---------------------------
    # load <= capacity and util <= usage_max (<= 1) follow from the capacity rows.
    load = m.add_vars("load", N * K, upper=sc.node_capacity.astype(float).ravel(),  # (n, k)
                      resolution=COUNT_RESOLUTION)
    util = m.add_vars("util", N, upper=usage_max, resolution=UTIL_RESOLUTION)
    rows_k = np.concatenate([sn * K + k for k in range(K)])
    cols_k = np.tile(y, K)
    vals_k = np.concatenate([req[sw, k] for k in range(K)])
    m.add_rows("load_def", N * K, np.r_[rows_k, np.arange(N * K)], np.r_[cols_k, load],
               np.r_[vals_k, -np.ones(N * K)], lower=0.0, upper=0.0)
    m.add_rows("util_def", N, np.r_[sn, np.arange(N)], np.r_[y, util],
               np.r_[cm.workload_node_util[sw, sn], -np.ones(N)], lower=0.0, upper=0.0)

    # Job presence per node-slot: triple (j, n, s) covers slots s..s+d-1.
    cover_t = [np.arange(s, s + sc.workload_duration_slots[j]) for j, s in zip(jj, js)]
    cover_len = np.array([len(c) for c in cover_t], dtype=np.int64)
    cov_trip = np.repeat(np.arange(len(jj)), cover_len)
    cov_t = cat(cover_t)
    cov_cell = jn[cov_trip] * T + cov_t  # node-slot of each covered (triple, slot)
    # Every job replica present in a node-slot: x of the start it covers, q of an interruptible one.
    pres_col = np.r_[x[cov_trip], q].astype(np.int64)
    pres_cell = np.r_[cov_cell, in_[zi] * T + rt[zr]].astype(np.int64)
    pres_w = np.r_[jj[cov_trip], iw[zi]].astype(np.int64)
    pres_t = pres_cell % T if T else pres_cell

    # A job's replicas on a node need the node on in every slot of their run:
    # x[j,n,s] <= M o[n,t] with M the most replicas one node can hold (tighter than capacity alone).
    if len(jj):
        job_m = most_on_node(sc, jj, jn)
        r = np.arange(len(cov_trip))
        m.add_rows("job_on", len(cov_trip), np.r_[r, r], np.r_[x[cov_trip], o[cov_cell]],
                   np.r_[np.ones(len(cov_trip)), -job_m[cov_trip].astype(float)], upper=0.0)
    if len(zi):  # q[i,n,t] <= M o[n,t]
        r = np.arange(len(zi))
        m.add_rows("ijob_on", len(zi), np.r_[r, r], np.r_[q, o[in_[zi] * T + rt[zr]]],
                   np.r_[np.ones(len(zi)), -i_m[zi]], upper=0.0)

    # -- capacity of every resource in every slot, only on a powered node ------------------
    for k in range(K):
        cells = np.arange(N * T)
        rows = np.r_[cells, cells, pres_cell]
        cols = np.r_[np.repeat(load[np.arange(N) * K + k], T), o, pres_col]
        vals = np.r_[np.ones(N * T), -np.repeat(sc.node_capacity[:, k].astype(float), T), req[pres_w, k]]
        m.add_rows(f"capacity_{sc.resources[k]}", N * T, rows, cols, vals, upper=0.0)

    # -- power: p >= line_l(o, utilisation) for each distinct line of the convex hull -------
    bg = background.ravel()
    for l_idx, (a, s) in enumerate(zip(*_hull_lines(cm))):
        cells = np.arange(N * T)
        a_t, s_t = np.repeat(a, T), np.repeat(s, T)
        job_util = cm.workload_node_util[pres_w, pres_cell // T if T else pres_cell]
        # p - (a + s bg) o - s util - s sum(job util x) >= 0
        rows = np.r_[cells, cells, cells, pres_cell]
        cols = np.r_[p, o, np.repeat(util, T), pres_col]
        vals = np.r_[np.ones(N * T), -(a_t + s_t * bg), -s_t, -s_t[pres_cell] * job_util]
        m.add_rows(f"power_line_{l_idx}", N * T, rows, cols, vals, lower=0.0)

    # -- sites with on-site supply: grid >= energy - supply (+ battery) ------------------------
    sup_sites = np.flatnonzero(site_has_supply)
    if len(sup_sites):
        G = len(sup_sites)
        # grid never needs more than the site's facility energy at every node's p_max
        # (charging draws at most the on-site supply, which the row already subtracts).
        site_max_kwh = np.zeros((S, T))
        np.add.at(site_max_kwh, sc.node_site, cm.kwh_per_w_slot[:, None] * p_max_w)
        grid = m.add_vars("grid", G * T, upper=site_max_kwh[sup_sites].ravel(),
                          cost=cm.site_intensity_g_per_kwh[sup_sites].ravel(), resolution=ENERGY_RESOLUTION_KWH)
        bat = sup_sites[sc.site_battery_kwh[sup_sites] > 0]
        chg = dis = None
        if len(bat):
            B = len(bat)
            chg = m.add_vars("charge", B * T, upper=cm.site_supply_kwh[bat].ravel(), resolution=ENERGY_RESOLUTION_KWH)
            # discharge <= capacity: charging and discharging in one slot only loses
            # (1 - efficiency), so some optimum has one of them 0, and then dis <= soc[t-1].
            dis = m.add_vars("discharge", B * T, upper=np.repeat(sc.site_battery_kwh[bat], T),
                             resolution=ENERGY_RESOLUTION_KWH)
            soc = m.add_vars("soc", B * T, upper=np.repeat(sc.site_battery_kwh[bat], T),
                             resolution=ENERGY_RESOLUTION_KWH)
            # soc[t] - soc[t-1] - eff chg[t] + dis[t] = 0, starting empty.
            cells = np.arange(B * T)
            prev = cells[(cells % T) > 0]
            m.add_rows("battery", B * T, np.r_[cells, prev, cells, cells], np.r_[soc, soc[prev - 1], chg, dis],
                       np.r_[np.ones(B * T), -np.ones(len(prev)), -BATTERY_ROUND_TRIP_EFFICIENCY * np.ones(B * T), np.ones(B * T)],
                       lower=0.0, upper=0.0)
        pos = np.full(S, -1); pos[sup_sites] = np.arange(G)
        nodes = np.flatnonzero(node_on_supply_site)
        node_cells = (nodes[:, None] * T + np.arange(T)[None, :]).ravel()
        grid_cells = (pos[sc.node_site[nodes]][:, None] * T + np.arange(T)[None, :]).ravel()
        rows = [np.arange(G * T), grid_cells]
        cols = [grid, p[node_cells]]
        vals = [np.ones(G * T), -np.repeat(cm.kwh_per_w_slot[nodes], T)]
        if len(bat):
            bpos = (pos[bat][:, None] * T + np.arange(T)[None, :]).ravel()
            rows += [bpos, bpos]; cols += [chg, dis]; vals += [-np.ones(len(bpos)), np.ones(len(bpos))]
        m.add_rows("site_grid", G * T, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                   lower=-cm.site_supply_kwh[sup_sites].ravel())

    # -- spread: replicas on at least min_sites distinct sites -----------------------------------
    spread = np.flatnonzero(sc.workload_min_sites > 1)
    for w in spread:
        if sc.workload_interruptible[w]:
            sel = np.flatnonzero(iw == w); cols_w, nodes_w = a_var[sel], in_[sel]
        elif sc.workload_deferrable[w]:
            sel = np.flatnonzero(jj == w); cols_w, nodes_w = x[sel], jn[sel]
        else:
            sel = np.flatnonzero(sw == w); cols_w, nodes_w = y[sel], sn[sel]
        sites = np.unique(sc.node_site[nodes_w])
        z = m.add_vars(f"z_{w}", len(sites), upper=1.0, integer=True)
        site_row = np.searchsorted(sites, sc.node_site[nodes_w])
        # z[s] <= sum of replicas at site s;  sum z >= min_sites
        m.add_rows(f"spread_site_{w}", len(sites), np.r_[np.arange(len(sites)), site_row], np.r_[z, cols_w],
                   np.r_[np.ones(len(sites)), -np.ones(len(cols_w))], upper=0.0)
        m.add_rows(f"spread_{w}", 1, np.zeros(len(z)), z, np.ones(len(z)), lower=float(sc.workload_min_sites[w]))

    # -- tenant quotas: summed requests per slot (services are a constant, jobs depend on their start) --
    for mt, k in zip(*np.nonzero(np.isfinite(sc.tenant_quota))):
        fixed = float((req[services, k] * R[services] * (sc.workload_tenant[services] == mt)).sum())
        sel = np.flatnonzero(sc.workload_tenant[pres_w] == mt)
        m.add_rows(f"quota_{sc.tenant_ids[mt]}_{sc.resources[k]}", T, pres_t[sel], pres_col[sel],
                   req[pres_w[sel], k], upper=float(sc.tenant_quota[mt, k]) - fixed)

    # -- never_with: conflicting tenants never share a node within the horizon --------------------
    conflicted = np.flatnonzero(sc.tenant_conflicts.any(axis=1))
    if len(conflicted):
        Mc = len(conflicted)
        g = m.add_vars("g", N * Mc, upper=1.0, integer=True)
        gpos = np.full(len(sc.tenant_ids), -1); gpos[conflicted] = np.arange(Mc)
        # One row per pair, x <= R g: CP-SAT propagates these well. One row per (node, tenant,
        # resource) on the tenant's load instead halves the LP time at 1,000 x 100 but cost
        # CP-SAT 8 % at 100 x 20 x 24 (27.96 against 25.88 kg in 30 s).
        for cols, ws, ns in ((y, sw, sn), (x, jj, jn), (a_var, iw, in_)):
            sel = np.flatnonzero(gpos[sc.workload_tenant[ws]] >= 0)
            if len(sel):
                gcol = g[ns[sel] * Mc + gpos[sc.workload_tenant[ws[sel]]]]
                r = np.arange(len(sel))
                m.add_rows("tenant_present", len(sel), np.r_[r, r], np.r_[cols[sel], gcol],
                           np.r_[np.ones(len(sel)), -R[ws[sel]].astype(float)], upper=0.0)
        a_t, b_t = np.nonzero(np.triu(sc.tenant_conflicts))
        for ta, tb in zip(a_t, b_t):
            r = np.arange(N)
            m.add_rows("never_with", N, np.r_[r, r], np.r_[g[r * Mc + gpos[ta]], g[r * Mc + gpos[tb]]],
                       np.ones(2 * N), upper=1.0)

    # -- Kubernetes pod affinity, anti-affinity and topology spread (over the horizon) -------------
    if sc.constraints.dynamic:
        _scheduling_rows(m, sc, sw, sn, y, jj, jn, x, iw, in_, a_var)

    # -- migration: replicas kept on their current node are not charged the penalty ---------------
    if obj.migration_g_per_replica > 0 and cm.current_count:
        pairs = [(i, int(cm.current_count[w][n])) for i, (w, n) in enumerate(zip(sw, sn))
                 if w in cm.current_count and cm.current_count[w][n] > 0]
        if pairs:
            idx = np.array([i for i, _ in pairs]); cur = np.array([c for _, c in pairs], dtype=float)
            kept = m.add_vars("kept", len(idx), upper=cur, cost=-obj.migration_g_per_replica,
                              resolution=COUNT_RESOLUTION)
            r = np.arange(len(idx))
            m.add_rows("kept_le_y", len(idx), np.r_[r, r], np.r_[kept, y[idx]], np.r_[np.ones(len(idx)), -np.ones(len(idx))], upper=0.0)
        m.objective_offset += obj.migration_g_per_replica * sum(int(R[w]) for w in cm.current_count if not sc.workload_deferrable[w])

    node_of = [(y, sn), (x, jn), (a_var, in_), (h, np.arange(N)), (o, np.arange(N * T) // max(T, 1)),
               (p, np.arange(N * T) // max(T, 1)), (q, in_[zi]), (load, np.arange(N * K) // max(K, 1)), (util, np.arange(N))]
    if len(conflicted):
        node_of.append((g, np.arange(N * Mc) // Mc))
    if obj.migration_g_per_replica > 0 and cm.current_count and pairs:
        node_of.append((kept, sn[idx]))
    column_node = np.full(m.n_vars, -1, dtype=np.int64)
    for cols, nodes in node_of:
        column_node[np.asarray(cols, dtype=np.int64)] = nodes
    return Formulation(m, sw, sn, jj, jn, js, start_j, start_s, y, x, b, o, p, iw, in_, a_var, rw, rt, r_var,
                       column_node)


def _min_run_rows(m: LinearModel, sc, ijobs: np.ndarray, rw: np.ndarray, rt: np.ndarray, r_var: np.ndarray) -> None:
    """Runs of at least min_run slots: a run starting in slot t (r[t] = 1, r[t-1] = 0) goes on in
    t+1 .. t+min_run-1, r[t] - r[t-1] - r[t+k] <= 0 for k < min_run. Before the window r is 0,
    except for a job whose run is in progress at slot 0 (it continues, no start there); past
    the window r is 0, so a run that could not fit may not start."""
    pos = {(int(i), int(t)): c for i, t, c in zip(rw, rt, r_var)}
    rows, cols, vals, n = [], [], [], 0
    for i in ijobs:
        mr = int(sc.workload_min_run_slots[i])
        if mr <= 1:
            continue
        e, end = int(sc.workload_earliest_slot[i]), int(sc.workload_window_end[i])
        running = sc.workload_run_done_slots[i] > 0
        for t in range(e, end):
            prev = pos.get((int(i), t - 1))
            if t == 0 and running:
                continue  # slot 0 continues the run in progress (its remainder is fixed by r's bounds)
            for k in range(1, mr):
                nxt = pos.get((int(i), t + k))
                rows += [n] * (1 + (prev is not None) + (nxt is not None))
                cols += [pos[(int(i), t)]] + ([prev] if prev is not None else []) + ([nxt] if nxt is not None else [])
                vals += [1.0] + ([-1.0] if prev is not None else []) + ([-1.0] if nxt is not None else [])
                n += 1
    if n:
        m.add_rows("ijob_min_run", n, np.asarray(rows), np.asarray(cols), np.asarray(vals), upper=0.0)


def _scheduling_rows(m: LinearModel, sc, sw, sn, y, jj, jn, x, iw, in_, a_var) -> None:
    """Rows of the placement-dependent Kubernetes rules (`edgeplace.topology.constraints`), read over
    the horizon as that module says: a job counts as present all horizon where presence hurts
    (anti-affinity, the crowded side of spread) and only services count where it helps (affinity
    targets, the emptiest domain of spread, besides the rule's own workload).

    Y[w, n] below is y[w,n] for a service, sum_s x[w,n,s] for a job (one start is chosen) and
    a[w,n] for an interruptible job (its replicas keep their node over its runs).
    """
    c = sc.constraints
    R = sc.workload_replicas.astype(float)
    service = ~sc.workload_deferrable
    # Columns of each workload: (node, column) of its y or x variables.
    cols_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for ws, ns, cols in ((sw, sn, y), (jj, jn, x), (iw, in_, a_var)):
        order = np.argsort(ws, kind="stable")
        bounds = np.searchsorted(ws[order], np.arange(sc.n_workloads + 1))
        for w in np.flatnonzero(np.diff(bounds)):
            sel = order[bounds[w]:bounds[w + 1]]
            cols_of[int(w)] = (ns[sel], cols[sel])

    def per_domain(ws, domain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(domain, column) of every column of the workloads `ws` on a node with a domain >= 0."""
        doms, cols = [], []
        for w in np.atleast_1d(ws).tolist():
            nodes, columns = cols_of.get(w, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            d = domain[nodes]
            doms.append(d[d >= 0]); cols.append(columns[d >= 0])
        return (np.concatenate(doms), np.concatenate(cols)) if doms else (np.zeros(0, np.int64),) * 2

    presence: dict[tuple[int, int], dict[int, int]] = {}

    def present(w: int, k: int) -> dict[int, int]:
        """domain -> column of q[w,k,d] (domains where w has columns); R_w q >= replicas there."""
        if (w, k) not in presence:
            d, cols = per_domain(w, c.node_domain[k])
            domains = np.unique(d)
            q = m.add_vars(f"q_{w}_{k}", len(domains), upper=1.0, integer=True)
            row = np.searchsorted(domains, d)
            # sum_{n in d} Y[w,n] - R_w q[w,k,d] <= 0
            m.add_rows(f"presence_{w}_{k}", len(domains), np.r_[row, np.arange(len(domains))], np.r_[cols, q],
                       np.r_[np.ones(len(cols)), -np.full(len(domains), R[w])], upper=0.0)
            presence[(w, k)] = dict(zip(domains.tolist(), q.tolist()))
        return presence[(w, k)]

    # Anti-affinity: a pair never shares a domain; a workload with itself has one replica per domain.
    for k, a, b in c.anti.tolist():
        if a == b:
            d, cols = per_domain(a, c.node_domain[k])
            domains, row = np.unique(d, return_inverse=True)
            m.add_rows(f"anti_self_{a}_{k}", len(domains), row, cols, np.ones(len(cols)), upper=1.0)
            continue
        qa, qb = present(a, k), present(b, k)
        both = sorted(set(qa) & set(qb))
        if both:
            r = np.arange(len(both))
            m.add_rows(f"anti_{a}_{b}_{k}", len(both), np.r_[r, r], np.r_[[qa[d] for d in both], [qb[d] for d in both]],
                       np.ones(2 * len(both)), upper=1.0)

    # Affinity: every domain hosting w hosts a (service) target; without targets, one domain per key.
    for rule in c.affinity:
        w = rule.workload
        targets = rule.targets[service[rule.targets]]
        for k in rule.keys.tolist():
            qw = present(w, k)
            if not qw:
                continue
            domains = np.array(sorted(qw))
            if not len(rule.targets):
                m.add_rows(f"affinity_one_{w}_{k}", 1, np.zeros(len(domains)), [qw[d] for d in domains], np.ones(len(domains)),
                           upper=1.0)
                continue
            # q[w,k,d] - sum_{v in targets, n in d} y[v,n] <= 0
            d, cols = per_domain(targets, c.node_domain[k])
            keep = np.isin(d, domains)
            row = np.searchsorted(domains, d[keep])
            r = np.arange(len(domains))
            m.add_rows(f"affinity_{w}_{k}", len(domains), np.r_[r, row], np.r_[[qw[x] for x in domains], cols[keep]],
                       np.r_[np.ones(len(domains)), -np.ones(int(keep.sum()))], upper=0.0)

    # Topology spread: a domain hosting w holds at most max_skew counted pods above the emptiest eligible one.
    for i, rule in enumerate(c.spread):
        w, k = rule.workload, rule.key
        domain = np.where(rule.counting_nodes, c.node_domain[k], -1)
        eligible = np.flatnonzero(rule.eligible_domains(c.node_domain[k], int(c.n_domains[k])))
        total = float(R[rule.counted].sum())
        d_all, cols_all = per_domain(rule.counted, domain)  # the crowded side: every counted replica
        helpers = rule.counted[service[rule.counted] | (rule.counted == w)]
        d_help, cols_help = per_domain(helpers, domain)
        few = len(eligible) < rule.min_domains
        low = m.add_vars(f"low_{i}", 1, upper=0.0 if few else total, integer=True)
        if not few:
            # low - sum_{v in helpers, n in e} Y[v,n] <= 0 for every eligible domain e
            keep = np.isin(d_help, eligible)
            row = np.searchsorted(eligible, d_help[keep])
            r = np.arange(len(eligible))
            m.add_rows(f"spread_low_{i}", len(eligible), np.r_[r, row], np.r_[np.full(len(eligible), low[0]), cols_help[keep]],
                       np.r_[np.ones(len(eligible)), -np.ones(int(keep.sum()))], upper=0.0)
        only_itself = len(rule.counted) == 1 and rule.counted[0] == w and service[w]
        hosting = np.unique(per_domain(w, domain)[0])
        if not len(hosting):
            continue
        keep = np.isin(d_all, hosting)
        row = np.searchsorted(hosting, d_all[keep])
        r = np.arange(len(hosting))
        if only_itself:
            # sum_{n in d} y[w,n] - low <= max_skew (nothing to check where w is absent)
            m.add_rows(f"spread_{i}", len(hosting), np.r_[row, r], np.r_[cols_all[keep], np.full(len(hosting), low[0])],
                       np.r_[np.ones(int(keep.sum())), -np.ones(len(hosting))], upper=float(rule.max_skew))
            continue
        # sum_{counted, n in d} Y - low + M q[w,k,d] <= max_skew + M, with M all counted replicas
        qw = present(w, k)  # w's columns are on counting nodes (eligible nodes pass its affinity and taints)
        qcols = [qw[d] for d in hosting.tolist()]
        m.add_rows(f"spread_{i}", len(hosting), np.r_[row, r, r], np.r_[cols_all[keep], np.full(len(hosting), low[0]), qcols],
                   np.r_[np.ones(int(keep.sum())), -np.ones(len(hosting)), np.full(len(hosting), total)],
                   upper=float(rule.max_skew) + total)
