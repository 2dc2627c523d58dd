"""The baseline policies users would otherwise run, to compare plans against.

Each baseline places replicas one by one, like pods leaving a scheduler
queue: for each replica it filters the nodes, scores every feasible node at
once (numpy over nodes), binds the replica to the best one and updates the
free capacity. A replica that fits nowhere stays unplaced (-1) and the queue
moves on; `edgeplace.policies.evaluate` then reports a schedule violation.

=================  ===========  ============================  ==============  ===============
name               SLA filter   score (best wins)             deferrable job  power
=================  ===========  ============================  ==============  ===============
spread             no           LeastAllocated + Balanced     earliest slot   all nodes on
binpack            no           MostAllocated + Balanced      earliest slot   empty nodes off
nearest            no           lowest latency, then          earliest slot   all nodes on
                                LeastAllocated
greedy-carbon      yes          least marginal gCO2e          greenest start  empty nodes off
=================  ===========  ============================  ==============  ===============

Filters shared by every baseline (what a Kubernetes cluster enforces or what
its users would configure):

- capacity of every resource in every slot: the requests of the replicas
  running in a slot never exceed the node's capacity (NodeResourcesFit, made
  time-aware: a deferrable job only occupies its run slots);
- node selector (nodeSelector) and dedicated pools (taints and tolerations,
  plus a nodeSelector on the dedicated tenant);
- tenant `never_with` pairs, per slot: users would express them as required
  pod anti-affinity, so every baseline respects them;
- tenant quotas, per slot (a ResourceQuota rejects the pod at admission);
- spread (`min_sites`): until a workload's replicas cover `min_sites`
  distinct sites, a replica goes to a new site when any feasible node there
  exists (like a topology spread constraint on the site label);
- only `greedy-carbon` filters by the latency SLA (`workload_node_eligible`);
  the Kubernetes-like baselines do not know SLAs and may break them.

Queue order: `spread`, `binpack` and `nearest` take workloads in file order
(the default queue sorts by priority, then arrival time); `greedy-carbon`
takes larger replicas first (first-fit-decreasing by the dominant share of the
mean node capacity, ties in file order). All replicas of a deferrable job
start in the same slot. A node that no baseline powers keeps its derived
power state, so always-on nodes (`can_power_down: false`) stay on.

Kubernetes scores follow `pkg/scheduler/framework/plugins/noderesources`
(`least_allocated.go`, `most_allocated.go`, `balanced_allocation.go`,
`resource_allocation.go`) with default weights (cpu and memory, weight 1
each; both plugins weight 1); ties go to the lowest node index where
kube-scheduler picks one of the tied nodes at random. Capacity is what a
replica requests; background utilisation only matters to power. The
scenario's `current` placement is ignored: baselines place from scratch.

Speed: the filter, fit and keys of a workload are computed once over all
nodes; after each bind only the nodes it touched are recomputed (the bound
node, or for `greedy-carbon` at a site with on-site supply, the site's
nodes). 30,000 replicas on 1,000 nodes x 24 slots (`edgeplace.topology.generate`,
16,000 workloads, a quarter deferrable) take about 1.5-2 s of CPU for the
Kubernetes-like baselines and 2.5-3.5 s for greedy-carbon (shared 2-core VM).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgeplace.policies.base import PlacementPolicy, PolicyFactory
from edgeplace.policies.costs import embodied_g_per_powered_h
from edgeplace.policies.power import node_power_w
from edgeplace.topology.constraints import ConstraintState
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU, MEMORY, Scenario

#: kube-scheduler's framework.MaxNodeScore: plugin scores run 0..100.
MAX_NODE_SCORE = 100
#: Requests counted for a pod that requests no CPU, in scoring only
#: (k8s `pkg/scheduler/util` DefaultMilliCPURequest) [millicores].
DEFAULT_MILLI_CPU_REQUEST = 100
#: Same for memory (DefaultMemoryRequest = 200 * 1024 * 1024 bytes) [MiB].
DEFAULT_MEMORY_REQUEST_MIB = 200

# Latencies within this of each other count as equal [ms].
_LATENCY_TIE_MS = 1e-9
# Marginal prices are compared rounded to this many decimals of a gram (1 ug).
_COST_DECIMALS = 6


# ---------------------------------------------------------------------------
# Kubernetes node-resource scores, vectorised over nodes


def least_allocated_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """NodeResourcesFit's LeastAllocated score per node, 0..100 (higher = emptier node).

    Parameters
    ----------
    requested : (R, N) requests on each node including the incoming pod, one
        row per resource, in the non-zero form (a pod without a cpu / memory
        request counts DEFAULT_MILLI_CPU_REQUEST / DEFAULT_MEMORY_REQUEST_MIB)
    capacity : (R, N) allocatable

    Notes
    -----
    Per resource floor((capacity - requested) x 100 / capacity), 0 when over
    capacity or capacity is 0; the node score is the floor of the weighted
    mean (all weights 1). Integer arithmetic as in `least_allocated.go`.
    """
    cap = np.asarray(capacity, dtype=float)
    per = np.divide((cap - requested) * MAX_NODE_SCORE, cap, out=np.zeros(cap.shape), where=cap > 0)
    # Over capacity: floor(negative) clipped to 0, as the Go code returns 0 there.
    np.maximum(np.floor(per, out=per), 0.0, out=per)
    return np.floor(per.sum(axis=0) / per.shape[0])


def most_allocated_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """NodeResourcesFit's MostAllocated score per node, 0..100 (higher = fuller node).

    Per resource floor(min(requested, capacity) x 100 / capacity), 0 when
    capacity is 0; floor of the mean (`most_allocated.go`). Inputs (R, N) as
    in `least_allocated_score`.
    """
    cap = np.asarray(capacity, dtype=float)
    per = np.divide(np.minimum(requested, cap) * MAX_NODE_SCORE, cap, out=np.zeros(cap.shape), where=cap > 0)
    return np.floor(np.floor(per, out=per).sum(axis=0) / per.shape[0])


def balanced_allocation_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """NodeResourcesBalancedAllocation per node, 0..100 (higher = more even use of resources).

    Parameters
    ----------
    requested : (R, N) actual requests on each node including the incoming pod
        (this plugin does not substitute non-zero defaults)
    capacity : (R, N) allocatable, all > 0

    Notes
    -----
    fraction_r = min(requested_r / capacity_r, 1); score =
    trunc((1 - std(fractions)) x 100) with the population standard deviation,
    which for cpu and memory is |f_cpu - f_mem| / 2 (`balanced_allocation.go`).
    """
    fraction = np.minimum(np.asarray(requested, dtype=float) / np.asarray(capacity, dtype=float), 1.0)
    if fraction.shape[0] == 2:  # the common case, without np.std's overhead
        std = np.abs(fraction[0] - fraction[1]) * 0.5
    else:
        std = fraction.std(axis=0)
    return np.trunc((1.0 - std) * MAX_NODE_SCORE)


# ---------------------------------------------------------------------------
# Cluster state while the queue drains
#
# Arrays keep nodes on the last axis (resource x node, slot x node), so every
# per-node operation runs over contiguous memory and reductions over resources
# or slots are element-wise across rows.

#: Node columns to work on: every node (a view, no copy) or an index array.
Rows = slice | np.ndarray
ALL_NODES = slice(None)


def _static_filter(sc: Scenario, sla_aware: bool) -> np.ndarray:
    """W x N: nodes a replica may use before anything is placed (with or without the SLA)."""
    return sc.workload_node_eligible if sla_aware else sc.workload_node_allowed


def _window_max(x: np.ndarray, duration: int, n_starts: int) -> np.ndarray:
    """Max of x[..., s:s + duration, :] over the slot axis (-2), for s = 0 .. n_starts - 1."""
    out = x[..., :n_starts, :].copy()
    for j in range(1, duration):  # runs are a few slots: a few element-wise maxima
        np.maximum(out, x[..., j:j + n_starts, :], out=out)
    return out


class _Cluster:
    """Requests placed so far, per node and slot, plus tenant presence and quota use.

    Resource channels are the scenario's K resources followed by two scoring
    channels, the non-zero cpu and memory requests Kubernetes scores with.
    Full-horizon replicas (services) add to the time-invariant `used` (C x N);
    deferrable jobs add to `used_slot` (C x T x N) only in their run slots.
    `load_full` = used + max over slots of used_slot is what a service sees,
    kept up to date per bound node, so services never touch the slot axis.
    """

    def __init__(self, sc: Scenario):
        N, T, K = sc.n_nodes, sc.n_slots, len(sc.resources)
        self.sc, self.K, self.T = sc, K, T
        self.capacity = sc.node_capacity.T.astype(float)  # K x N
        req = sc.workload_requests.astype(float)
        nonzero = np.column_stack([
            np.where(req[:, CPU] > 0, req[:, CPU], DEFAULT_MILLI_CPU_REQUEST),
            np.where(req[:, MEMORY] > 0, req[:, MEMORY], DEFAULT_MEMORY_REQUEST_MIB),
        ])
        self.requests = np.hstack([req, nonzero])  # W x C
        self.used = np.zeros((K + 2, N))
        self.load_full = np.zeros((K + 2, N))
        self.used_slot = np.zeros((K + 2, T, N)) if sc.workload_deferrable.any() else None
        conflicts = sc.tenant_conflicts | sc.tenant_conflicts.T
        self.conflicts_of = [np.flatnonzero(row) for row in conflicts]
        # blocked[m, t, n]: node n hosts, in slot t, a tenant that tenant m must never meet.
        self.blocked = np.zeros((len(sc.tenant_ids), T, N), dtype=bool) if conflicts.any() else None
        self.quota = sc.tenant_quota.astype(float)
        self.has_quota = np.isfinite(self.quota).any(axis=1)
        self.tenant_used = np.zeros((len(sc.tenant_ids), K, T)) if self.has_quota.any() else None

    def load(self, rows: Rows, start: int, duration: int) -> np.ndarray:
        """(C, rows): requests on `rows` in the worst slot of [start, start + duration)."""
        if duration == self.T or self.used_slot is None:
            return self.load_full[:, rows]
        return self.used[:, rows] + self.used_slot[:, start:start + duration, rows].max(axis=1)

    def resource_load_by_start(self, first: int, n_starts: int, duration: int) -> np.ndarray:
        """(K, n_starts, N): worst-slot requests of a run of `duration` from each start first, first + 1, ..."""
        used = self.used[:self.K, None, :]
        if self.used_slot is None:
            return np.repeat(used, n_starts, axis=1)
        window = self.used_slot[:self.K, first:first + n_starts - 1 + duration]
        return used + _window_max(window, duration, n_starts)

    def after(self, w: int, rows: Rows, start: int, duration: int) -> np.ndarray:
        """(C, rows): requests on `rows` in the worst run slot with one more replica of w."""
        return self.load(rows, start, duration) + self.requests[w, :, None]

    def fits(self, after: np.ndarray, rows: Rows) -> np.ndarray:
        """Bool per node of `rows`: `after` (from `after()`) stays within every capacity."""
        return np.logical_and.reduce(after[:self.K] <= self.capacity[:, rows], axis=0)

    def allowed(self, w: int, start: int, duration: int) -> np.ndarray | None:
        """N bool: no tenant that w's tenant must avoid is on the node during the run (None = all nodes)."""
        if self.blocked is None:
            return None
        return ~np.logical_or.reduce(self.blocked[self.sc.workload_tenant[w], start:start + duration], axis=0)

    def within_quota(self, w: int, start: int, duration: int) -> bool:
        m = self.sc.workload_tenant[w]
        if self.tenant_used is None or not self.has_quota[m]:
            return True
        after = self.tenant_used[m, :, start:start + duration] + self.requests[w, :self.K, None]
        return bool((after <= self.quota[m, :, None]).all())

    def commit(self, w: int, node: int, start: int, duration: int) -> None:
        """Bind one replica of w to `node` for [start, start + duration)."""
        run = slice(start, start + duration)
        req = self.requests[w]
        if duration == self.T or self.used_slot is None:
            self.used[:, node] += req
            self.load_full[:, node] += req
        else:
            self.used_slot[:, run, node] += req[:, None]
            self.load_full[:, node] = self.used[:, node] + self.used_slot[:, :, node].max(axis=1)
        m = self.sc.workload_tenant[w]
        if self.blocked is not None and self.conflicts_of[m].size:
            self.blocked[self.conflicts_of[m], run, node] = True
        if self.tenant_used is not None:
            self.tenant_used[m, :, run] += req[:self.K, None]


# ---------------------------------------------------------------------------
# The queue


class _Scorer:
    """How one baseline orders, times and scores; `_drain` does the rest.

    `keys(w, start, rows, after)` returns, for nodes `rows` (with `after`, the
    requests there once the replica is added), a primary key (or None) and a
    secondary key; the best node has the highest primary key (within
    1e-9) and among those the highest secondary key, ties to the lowest index.
    Keys may depend on the cluster state; after a replica is bound to a node,
    `committed(...)` names the nodes whose keys must be recomputed.
    """

    sla_aware = False

    def __init__(self, sc: Scenario, cluster: _Cluster):
        self.sc, self.cluster = sc, cluster

    def order(self) -> np.ndarray:
        return np.arange(self.sc.n_workloads)

    def start_slot(self, w: int, static: np.ndarray) -> int:
        return int(self.sc.workload_earliest_slot[w])

    def keys(self, w: int, start: int, rows: Rows, after: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        raise NotImplementedError

    def committed(self, w: int, node: int, start: int) -> np.ndarray:
        return np.array([node])


def _drain(sc: Scenario, make_scorer: Callable[[Scenario, _Cluster], _Scorer]) -> tuple[np.ndarray, np.ndarray]:
    """Place every replica in the scorer's queue order: (replica node R, start slot W)."""
    N, T = sc.n_nodes, sc.n_slots
    cluster = _Cluster(sc)
    scorer = make_scorer(sc, cluster)
    static = _static_filter(sc, scorer.sla_aware)
    replica_node = np.full(sc.n_replicas, -1, dtype=np.int64)
    start_slot = sc.workload_earliest_slot.copy()
    self_conflict = np.diag(sc.tenant_conflicts)
    deferrable = sc.workload_deferrable.tolist()
    durations = np.where(sc.workload_deferrable, sc.workload_duration_slots, T).tolist()
    first_replica, replicas = sc.workload_first_replica.tolist(), sc.workload_replicas.tolist()
    min_sites, tenant = sc.workload_min_sites.tolist(), sc.workload_tenant.tolist()
    # Pod (anti-)affinity and topology spread, per pod as kube-scheduler filters; a job counts for the
    # whole horizon (the conservative reading of edgeplace.topology.constraints).
    rules = ConstraintState(sc.constraints, sc.n_workloads, ~sc.workload_deferrable) if sc.constraints.dynamic else None
    # A pod whose affinity targets are not bound waits in kube-scheduler's unschedulable queue and is
    # retried once they are: right after its targets.
    queue = scorer.order()
    for w in queue[sc.constraints.targets_first(queue)].tolist():
        d, start = durations[w], 0
        if deferrable[w]:
            start = start_slot[w] = scorer.start_slot(w, static[w])
        free_of_conflicts = cluster.allowed(w, start, d)
        allowed = static[w] & free_of_conflicts if free_of_conflicts is not None else static[w].copy()
        candidates = np.flatnonzero(allowed)
        if not candidates.size:
            continue
        # Fit and keys of the candidates once per workload (of every node when
        # candidates are many: contiguous arithmetic beats gathering them); after
        # each bind only the nodes the bind touched are recomputed.
        rows: Rows = ALL_NODES if candidates.size > N // 8 else candidates
        after = cluster.after(w, rows, start, d)
        fit = np.zeros(N, dtype=bool)
        fit[rows] = cluster.fits(after, rows)
        p, s = scorer.keys(w, start, rows, after)
        secondary = np.full(N, -np.inf)
        secondary[rows] = s
        primary = None
        if p is not None:
            primary = np.full(N, -np.inf)
            primary[rows] = p
        sites_used = np.zeros(sc.n_sites, dtype=bool) if min_sites[w] > 1 else None
        last = replicas[w] - 1
        for k in range(replicas[w]):
            if not cluster.within_quota(w, start, d):
                break  # the tenant's quota is spent for these slots; the next replica is no smaller
            mask = allowed & fit
            ruled = rules.allowed(w) if rules is not None else None
            if ruled is not None:
                mask &= ruled
            if sites_used is not None and sites_used.sum() < min_sites[w]:
                new_site = mask & ~sites_used[sc.node_site]
                if new_site.any():
                    mask = new_site
            node = _best(mask, primary, secondary)
            if node < 0:
                break  # identical replicas: if this one fits nowhere, neither will the next
            replica_node[first_replica[w] + k] = node
            cluster.commit(w, node, start, d)
            if rules is not None:
                rules.add(w, node)
            touched = scorer.committed(w, node, start)
            if k == last:
                break
            if sites_used is not None:
                sites_used[sc.node_site[node]] = True
            if self_conflict[tenant[w]]:
                allowed[node] = False
            touched = touched[allowed[touched]]
            after = cluster.after(w, touched, start, d)
            fit[touched] = cluster.fits(after, touched)
            p, s = scorer.keys(w, start, touched, after)
            secondary[touched] = s
            if primary is not None:
                primary[touched] = p
    return replica_node, start_slot


def _best(mask: np.ndarray, primary: np.ndarray | None, secondary: np.ndarray) -> int:
    """Index of the best node under `mask` (see `_Scorer`), or -1 when none."""
    if primary is not None:
        p = np.where(mask, primary, -np.inf)
        best = p.max()
        if best == -np.inf:
            return -1
        mask = p >= best - _LATENCY_TIE_MS
    node = int(np.argmax(np.where(mask, secondary, -np.inf)))
    return node if mask[node] else -1


# ---------------------------------------------------------------------------
# Kubernetes-like baselines


class _ResourceScorer(_Scorer):
    """Kubernetes default scoring: a NodeResourcesFit strategy plus BalancedAllocation."""

    def __init__(self, sc: Scenario, cluster: _Cluster, fit_strategy: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        super().__init__(sc, cluster)
        self.fit_strategy = fit_strategy
        # edgeplace.topology.scenario puts cpu and memory first (CPU = 0, MEMORY = 1); the two
        # scoring channels after the K resources hold their non-zero forms.
        self.cap2 = cluster.capacity[[CPU, MEMORY]]
        self.nonzero = slice(cluster.K, cluster.K + 2)

    def resource_scores(self, rows: Rows, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fit strategy score, balanced score) of rows with requests `after`."""
        cap = self.cap2[:, rows]
        return self.fit_strategy(after[self.nonzero], cap), balanced_allocation_score(after[[CPU, MEMORY]], cap)

    def keys(self, w, start, rows, after):
        fit_score, balanced = self.resource_scores(rows, after)
        return None, fit_score + balanced


class _NearestScorer(_ResourceScorer):
    """Lowest worst-case latency to the workload's users, ties by LeastAllocated."""

    def __init__(self, sc: Scenario, cluster: _Cluster):
        super().__init__(sc, cluster, least_allocated_score)

    def keys(self, w, start, rows, after):
        least, _ = self.resource_scores(rows, after)
        if not np.isfinite(self.sc.workload_sla_ms[w]):
            return None, least  # no users to be near: least allocated
        return -self.sc.workload_site_latency_ms[w, self.sc.node_site[rows]], least


def _duration(sc: Scenario, w: int) -> int:
    return int(sc.workload_duration_slots[w]) if sc.workload_deferrable[w] else sc.n_slots


# ---------------------------------------------------------------------------
# Greedy carbon scorer


class _CarbonScorer(_Scorer):
    """Marginal gCO2e of one more replica on each node over its run slots.

    Per node n and slot t (h = slot hours, PUE of the node's site, I = grid
    intensity of its region, u0 = background utilisation):

        open_kwh[t,n] = P_n(u0[n,t]) x PUE x h / 1000      when the node is off (idle + background power)
        dyn_kwh[n]    = slope_n x du x PUE x h / 1000      du = cpu request x cpu_usage_fraction / cpu capacity
        cost[n]       = sum_t I[t,n] x (open_kwh x off[t,n] + dyn_kwh)  +  embodied_g_per_h x h x off[t,n]

    slope_n is the chord of the power curve, (P(100 %) - P(0 %)) per unit
    utilisation: exact for the linear model, an average for SPECpower curves.
    On-site renewables: at a site whose modelled supply exceeds its modelled
    demand in a slot, only the energy above that surplus is priced at grid
    intensity (I x max(0, kWh - surplus)); the demand counts the idle power of
    nodes on and the dynamic power of replicas placed so far. Batteries are
    ignored (they only lower the true grid draw, so the price is an upper
    bound), and so is the clipping of utilisation at 100 % (requests fit the
    capacity, so only background load can push a node past it). For linear
    power curves without batteries the price equals the change in
    `edgeplace.policies.evaluate`'s total emissions. Prices are compared rounded to
    1 ug so equal ones tie, whatever order the float sums took.

    A deferrable job starts in the slot of its window where its first
    replica's least marginal cost is lowest, among the starts where the free
    capacity holds all its replicas (ties to the earliest start).
    """

    sla_aware = True

    def __init__(self, sc: Scenario, cluster: _Cluster):
        super().__init__(sc, cluster)
        T = sc.n_slots
        curve = sc.node_power_curve_w
        kwh_per_w = sc.node_pue * sc.slot_hours / 1000.0  # facility kWh per W of IT power for one slot
        self.intensity = sc.region_intensity_forecast_g_per_kwh[sc.node_region].T  # T x N [g/kWh], as forecast
        self.open_kwh = (node_power_w(curve, sc.node_background_util) * kwh_per_w[:, None]).T  # T x N
        self.embodied_g = embodied_g_per_powered_h(sc) * sc.slot_hours  # N, per powered slot (fleet basis: 0 if owned)
        self.dyn_kwh_per_util = (curve[:, 10] - curve[:, 0]) * kwh_per_w  # N
        self.cpu_capacity = sc.node_capacity[:, CPU].astype(float)
        self.cpu_used = sc.workload_requests[:, CPU] * sc.workload_cpu_usage  # W, millicores busy per replica
        self.on = np.repeat(~sc.node_can_power_down[None, :], T, axis=0)  # T x N
        self.open_g = self.open_kwh * self.intensity + self.embodied_g[None, :]
        # Cumulative sums over slots (leading 0) turn any run's cost into two lookups.
        self.cum_open_g = _cumsum0(self.open_g * ~self.on)  # (T + 1) x N
        self.cum_dyn_g_per_util = _cumsum0(self.dyn_kwh_per_util[None, :] * self.intensity)
        self.supply_kwh = (sc.site_renewable_forecast_kw * sc.slot_hours).T  # T x S, as forecast
        self.demand_kwh = np.zeros((T, sc.n_sites))
        np.add.at(self.demand_kwh.T, sc.node_site, (self.open_kwh * self.on).T)
        self.site_has_supply = (self.supply_kwh > 0).any(axis=0)
        self.renewables = bool(self.site_has_supply.any())
        self.site_nodes = [np.flatnonzero(sc.node_site == s) for s in range(sc.n_sites)]
        # Nodes at sites with on-site supply, in compact contiguous copies (slot x supply node):
        # their price is nonlinear in the site's surplus and is recomputed slot by slot.
        self.supply_nodes = np.flatnonzero(self.site_has_supply[sc.node_site])
        self.supply_pos = np.full(sc.n_nodes, -1)
        self.supply_pos[self.supply_nodes] = np.arange(self.supply_nodes.size)
        sn = self.supply_nodes
        self.s_site, self.s_open_kwh, self.s_intensity = sc.node_site[sn], self.open_kwh[:, sn], self.intensity[:, sn]
        self.s_dyn_kwh_per_util, self.s_embodied_g = self.dyn_kwh_per_util[sn], self.embodied_g[sn]
        self.s_cpu_capacity, self.s_off = self.cpu_capacity[sn], ~self.on[:, sn]

    def order(self) -> np.ndarray:
        # Dominant share of the mean node capacity, largest first; stable = file order on ties.
        mean_cap = self.sc.node_capacity.mean(axis=0)
        share = self.sc.workload_requests / np.where(mean_cap > 0, mean_cap, 1.0)
        return np.argsort(-share.max(axis=1), kind="stable")

    def cost_g(self, w: int, rows: Rows, first: int, n_starts: int, duration: int) -> np.ndarray:
        """(n_starts, rows) marginal gCO2e of one replica of w on each row, starting at first, first + 1, ..."""
        du = self.cpu_used[w] / self.cpu_capacity[rows]
        lo, hi = slice(first, first + n_starts), slice(first + duration, first + duration + n_starts)
        cost = ((self.cum_open_g[hi] - self.cum_open_g[lo])[:, rows]
                + du * (self.cum_dyn_g_per_util[hi] - self.cum_dyn_g_per_util[lo])[:, rows])
        if not self.renewables:
            return cost
        window = slice(first, first + n_starts - 1 + duration)
        surplus = np.maximum(self.supply_kwh[window] - self.demand_kwh[window], 0.0)  # window x S
        sunny = np.flatnonzero(surplus.any(axis=1))  # slots of the window where some site has surplus
        if not sunny.size:
            return cost
        if isinstance(rows, slice):
            pos, targets = ALL_NODES, self.supply_nodes
        else:
            pos = self.supply_pos[rows]
            targets = np.flatnonzero(pos >= 0)  # positions in `rows`
            if not targets.size:
                return cost
            pos = pos[targets]
        # Only the energy above the site's surplus comes from the grid:
        # I x max(0, kWh - surplus) = I x kWh - I x min(kWh, surplus), so subtract the
        # second term (zero outside sunny slots) from the grid price computed above.
        slots = first + sunny
        off = self.s_off[slots][:, pos]
        kwh = self.s_open_kwh[slots][:, pos] * off + self.s_dyn_kwh_per_util[pos] * (self.cpu_used[w] / self.s_cpu_capacity[pos])
        saved_g = self.s_intensity[slots][:, pos] * np.minimum(kwh, surplus[sunny][:, self.s_site[pos]])
        if n_starts == 1:
            cost[0, targets] -= saved_g.sum(axis=0)
        else:
            by_slot = np.zeros((window.stop - window.start, saved_g.shape[1]))
            by_slot[sunny] = saved_g
            g = _cumsum0(by_slot)
            cost[:, targets] -= g[duration:duration + n_starts] - g[:n_starts]
        return cost

    def start_slot(self, w: int, static: np.ndarray) -> int:
        sc, c = self.sc, self.cluster
        first, last = int(sc.workload_earliest_slot[w]), int(sc.workload_latest_start_slot[w])
        d, n_starts = int(sc.workload_duration_slots[w]), last - first + 1
        if n_starts == 1 or not static.any():
            return first
        # Over all nodes (S starts x N), masked by `static` at the end.
        free = c.capacity[:, None, :] - c.resource_load_by_start(first, n_starts, d)  # K x S x N
        req = c.requests[w, :c.K, None, None]
        ok = np.logical_and.reduce(free >= req, axis=0) & static  # S x N
        if c.blocked is not None:
            ok &= ~_window_max(c.blocked[sc.workload_tenant[w], first:last + d], d, n_starts)
        fits_somewhere = ok.any(axis=1)
        if not fits_somewhere.any():
            return first
        candidates = fits_somewhere
        replicas = int(sc.workload_replicas[w])
        if replicas > 1:
            # How many replicas each node could still take at each start, to keep the whole job together.
            positive = c.requests[w, :c.K] > 0
            room = (np.floor(free[positive] / req[positive]).min(axis=0) if positive.any()
                    else np.full(ok.shape, float(replicas)))
            whole = np.where(ok, room, 0.0).sum(axis=1) >= replicas
            if whole.any():
                candidates = whole
        best = np.where(ok, np.round(self.cost_g(w, ALL_NODES, first, n_starts, d), _COST_DECIMALS), np.inf).min(axis=1)
        return first + int(np.argmin(np.where(candidates, best, np.inf)))

    def keys(self, w, start, rows, after):
        # Rounded to _COST_DECIMALS so equal prices tie (to the lowest index) whatever
        # order the floating-point sums took.
        return None, -np.round(self.cost_g(w, rows, start, 1, _duration(self.sc, w))[0], _COST_DECIMALS)

    def committed(self, w: int, node: int, start: int) -> np.ndarray:
        sc = self.sc
        run = slice(start, start + _duration(sc, w))
        off = ~self.on[run, node]
        site = sc.node_site[node]
        du = self.cpu_used[w] / self.cpu_capacity[node]
        self.demand_kwh[run, site] += self.open_kwh[run, node] * off + self.dyn_kwh_per_util[node] * du
        if off.any():
            self.on[run, node] = True
            self.cum_open_g[1:, node] = np.cumsum(self.open_g[:, node] * ~self.on[:, node])
            if self.supply_pos[node] >= 0:
                self.s_off[run, self.supply_pos[node]] = False
        if self.renewables and self.site_has_supply[site]:
            return self.site_nodes[site]  # the site's surplus changed for all its nodes
        return np.array([node])


def _cumsum0(x: np.ndarray) -> np.ndarray:
    """Cumulative sum along the first axis with a leading 0: sum of x[a:b] = c[b] - c[a]."""
    out = np.zeros((x.shape[0] + 1,) + x.shape[1:])
    np.cumsum(x, axis=0, out=out[1:])
    return out


# ---------------------------------------------------------------------------
# The policies


class SpreadPolicy:
    """Kubernetes default-like: LeastAllocated + BalancedAllocation, no SLA filter, every node on."""

    name = "spread"
    description = "Kubernetes default-like spreading (LeastAllocated + BalancedAllocation), all nodes on"

    def place(self, scenario: Scenario) -> Placement:
        nodes, starts = _drain(scenario, lambda sc, c: _ResourceScorer(sc, c, least_allocated_score))
        return Placement.from_replica_nodes(scenario, nodes, starts, _all_on(scenario))


class BinpackPolicy:
    """MostAllocated + BalancedAllocation, no SLA filter; empty nodes power down (autoscaler-like)."""

    name = "binpack"
    description = "bin-packing (MostAllocated + BalancedAllocation), empty nodes powered down"

    def place(self, scenario: Scenario) -> Placement:
        nodes, starts = _drain(scenario, lambda sc, c: _ResourceScorer(sc, c, most_allocated_score))
        return Placement.from_replica_nodes(scenario, nodes, starts)


class NearestPolicy:
    """Latency-nearest feasible node (ties: least allocated), every node on."""

    name = "nearest"
    description = "latency-nearest feasible node, ties by least allocated, all nodes on"

    def place(self, scenario: Scenario) -> Placement:
        nodes, starts = _drain(scenario, _NearestScorer)
        return Placement.from_replica_nodes(scenario, nodes, starts, _all_on(scenario))


class GreedyCarbonPolicy:
    """Per-replica greedy on marginal gCO2e within the SLA; deferrable jobs at their greenest start."""

    name = "greedy-carbon"
    description = "per-pod greedy carbon scoring within the SLA, greenest start for deferrable jobs, empty nodes off"

    def place(self, scenario: Scenario) -> Placement:
        nodes, starts = _drain(scenario, _CarbonScorer)
        return Placement.from_replica_nodes(scenario, nodes, starts)


class CurrentPolicy:
    """The scenario's own `current` placement, every node on (the cluster as it runs today).

    Not a baseline of `compare` (most scenarios have no `current`); `evaluate --policy
    current` and `report --baseline current` use it."""

    name = "current"
    description = "the placement the scenario records as current (workloads' `current`), every node on"

    def place(self, scenario: Scenario) -> Placement:
        missing = [w for w, cur in zip(scenario.workload_ids, scenario.workload_current) if cur is None]
        if missing:
            raise InputError("current", [Problem("workloads", f"{len(missing)} workload(s) have no `current` placement "
                                                              f"(e.g. {', '.join(missing[:3])}); give every workload "
                                                              f"`current`, or choose a baseline policy")])
        replica_node = np.concatenate([np.asarray(c, dtype=np.int64) for c in scenario.workload_current]) \
            if scenario.n_workloads else np.zeros(0, dtype=np.int64)
        return Placement.from_replica_nodes(scenario, replica_node, powered=_all_on(scenario))


def _all_on(sc: Scenario) -> np.ndarray:
    return np.ones((sc.n_nodes, sc.n_slots), dtype=bool)


def baseline_registry() -> dict[str, PolicyFactory]:
    """The baseline policies by name, in the order reports list them."""
    policies: list[type[PlacementPolicy]] = [SpreadPolicy, BinpackPolicy, NearestPolicy, GreedyCarbonPolicy]
    return {p.name: p for p in policies}


__all__ = [
    "BinpackPolicy",
    "CurrentPolicy",
    "GreedyCarbonPolicy",
    "NearestPolicy",
    "SpreadPolicy",
    "balanced_allocation_score",
    "baseline_registry",
    "least_allocated_score",
    "most_allocated_score",
]
