"""A fast carbon-aware constructive heuristic with a local search.

`greedy_place(costs)` turns a `CostModel` into a `Placement` in well under a
second on thousands of workloads. It is a policy in its own right, the warm
start (hint) of the exact solvers and their fallback when they run out of
time, so it must always return a plan, and a feasible one whenever it finds
one. Replicas it cannot place stay -1 and the evaluation reports them.

Modelled space (the same as `edgeplace.optimizer.formulation`): a service keeps the same
nodes in every slot of the horizon; the replicas of a deferrable job all
start in one slot of [earliest_slot, latest_start_slot] and keep their nodes
for `duration_slots`; a node is on in a slot iff something runs on it or it
may not power down. Rules kept: capacity of every resource in every slot,
`eligible` (SLA, selector, dedicated pools), `never_with` (two conflicting
tenants never share a node at any time of the horizon, the conservative
reading), spread (`workload_min_sites` distinct sites) and tenant quotas.

Algorithm
---------
1. **Order.** Services first (they pin nodes on for the whole horizon; jobs
   then fill the gaps and chase green slots), and with them jobs whose window
   allows one start only (they have no slot to choose). Within each group,
   hardest first: fewest eligible nodes, then the largest normalised request
   x replicas (first-fit-decreasing: big items placed late fragment
   capacity), ties broken by a seeded random key. With a migration penalty,
   services that have a current placement go before everything else: their
   current nodes are a packing known to fit, which newcomers must not take.

2. **Construct.** For one workload at a time, vectorised over nodes (and,
   for a job, over every start slot of its window: a nodes x starts matrix),
   the marginal gCO2e of one replica is

       dynamic  = slope of the node's power line at its current utilisation
                  x utilisation one replica adds x kwh_per_w_slot
                  x effective intensity, summed over the run slots
       opening  = for slots where the node sleeps: idle + background energy
                  x effective intensity + embodied per slot (`open_g`)

   The effective intensity at a site with on-site supply is zero for the part
   of the added energy that the site's still unused renewable supply covers
   (supply minus the modelled demand so far, tracked per site and slot as
   replicas are placed) and the grid intensity for the rest; elsewhere it is
   the grid intensity.

   *Opening amortisation.* Charging the whole opening cost to the first
   replica makes the heuristic open the node with the smallest absolute
   idle power (a small box), then the next small box, ... which is worse per
   unit of capacity than one big efficient node. So a replica pays the share
   of the opening cost of the node capacity it takes, `open x share`
   (share = dominant request / capacity), as long as the not yet placed
   demand eligible for that node (F, in node fractions, tracked) could fill
   it; when it could not, the cost is spread over the expected fill instead,
   `open x share / max(F, k x share)` with k the replicas of this workload
   placed there. A workload that is the last demand for a node thus pays
   open / k, the classic amortisation over the replicas that fit. This is
   the facility-location view: pay for a node in proportion to what it
   will carry.

   Replicas go to the cheapest node first, as many as fit there (capacity of
   every resource in every run slot, quota), then the next cheapest, and so
   on. Until the workload covers `min_sites` sites only nodes at new sites are
   candidates, and enough replicas are held back for the sites still needed.
   Nodes hosting a tenant in `never_with` are masked. A job's start slot is
   the one whose estimated fill (its R cheapest replica slots) costs least;
   if the fill there falls short the next start is tried. A service with a
   current placement and `migration_g_per_replica > 0` gets the penalty
   subtracted per replica that stays on a current node (at most its current
   count there per step, so the saving is not diluted over extra replicas):
   it stays unless moving saves more than the penalty. (Jobs carry no
   penalty, as in `edgeplace.optimizer.formulation`.)

   *Repair.* A workload left short gets up to `_REPAIR_NODES` tries: empty
   one of its eligible nodes, place it, put the evicted replicas back
   anywhere they fit; the first try that places everything is kept.

3. **Improve** (local search, until nothing improves or `time_limit_s`):
   - *close a node*: take open nodes in order of opening cost per unit of
     hosted work, most wasteful first; move all their replicas to nodes that
     are already on in those slots;
   - *re-time a job*: take a deferrable job out and insert it again with
     everything else in place (now with full knowledge of the load and the
     renewable surplus), which moves it to greener slots or nodes;
   - *move / swap*: move a replica group to the open node where its
     dynamic energy is cleanest, first moving lower-usage replicas off that
     node if room is short (they may take its old place). Capacity is
     requested, power follows usage: this puts busy replicas on clean grids;
   - *rebuild* (when the moves above are stuck): take everything off two or
     three open nodes, the most wasteful among them, and place it again with
     the construction, opening amortised over the demand taken off, so it
     may open a better node; stop after `_REBUILD_TRIES` failures in a row.
   A move is kept only if the modelled objective (below) drops. Each is
   applied to the state and undone if it does not pay, so the feasibility
   checks are the construction's own.

The modelled objective is that of `edgeplace.policies.costs` (grid energy x intensity
after on-site supply, embodied per powered node-slot, the optional energy,
latency and migration terms) with node power on the convex hull of its curve;
batteries are left out, which only overestimates emissions. Construction
always runs to completion (it is what guarantees a plan): `time_limit_s`
bounds the local search, which stops earlier at a local optimum. The plan is
a function of the seed alone when the local search stops before its deadline
(the construction always does); a binding deadline cuts it wherever it is.

Notes
-----
The slope approximation under-counts dynamic power where a replica crosses a
breakpoint of a convex curve (linear curves are exact); the local search
compares exact hull power. Jobs are moved within their start window only as
a whole; services never change nodes over time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeplace.policies.costs import CostModel, Objective, price
from edgeplace.policies.evaluate import runs_long_enough
from edgeplace.topology.constraints import ConstraintState
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

#: Tolerance on capacities (requests are whole numbers; this only guards float sums).
_EPS = 1e-9
_NO_LIMIT = np.array([np.inf])
#: Nodes the repair of one unplaced workload tries to clear (bounds its time).
_REPAIR_NODES = 16
#: Failed rebuilds in a row after which the local search stops (a local optimum).
_REBUILD_TRIES = 30
#: The same from a start placement: the plan in force was searched when it was made, so few
#: random rebuilds are left to pay (a week of 30-minute re-plans: 5 tries give the plan 30 do,
#: in a fifth of the time).
_WARM_REBUILD_TRIES = 5
#: Smallest improvement the local search accepts (guards float noise).
_MIN_GAIN_G = 1e-6
#: Distinct slot choices (each node's cheapest) an interruptible job tries before it settles.
_RUN_CHOICES = 8


def greedy_place(costs: CostModel, *, time_limit_s: float = 1.0, seed: int = 0,
                 start: Placement | None = None) -> Placement:
    """Construct a placement and improve it by local search (see the module docstring).

    Parameters
    ----------
    costs : the priced scenario (`edgeplace.policies.costs.price`)
    time_limit_s : wall-clock budget of the local search [s]; construction
        always completes. 0 skips the local search.
    seed : breaks ties in the workload order; the same seed gives the same plan.
    start : a placement to start from (a rolling re-plan: the plan in force,
        shifted to this horizon). Each workload whose replicas it places by the
        rules (eligible nodes, its schedule, room on the node) keeps them; the
        construction places the rest, then the local search runs from there.

    Returns
    -------
    Placement with `powered=None` (derived: on iff hosting or always-on);
    replicas that could not be placed are -1.
    """
    t0 = time.perf_counter()
    g = _Greedy(costs, seed)
    if start is not None:
        g.adopt(start)
    g.construct()
    if time_limit_s > 0:
        g.improve(t0 + time_limit_s, _REBUILD_TRIES if start is None else _WARM_REBUILD_TRIES)
    return g.placement()


@dataclass
class GreedyPolicy:
    """The greedy heuristic as a `PlacementPolicy` (priced with the default objective)."""

    time_limit_s: float = 1.0
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    name: str = "greedy"
    description: str = "carbon-aware greedy construction with node opening, plus local search"

    def place(self, scenario: Scenario) -> Placement:
        return greedy_place(price(scenario, self.objective), time_limit_s=self.time_limit_s, seed=self.seed)


class _Greedy:
    """Mutable search state over plain arrays; one instance per call.

    All per-workload arithmetic is vectorised over nodes (a service's over
    every node, with `eligible` as a mask; a job's over its eligible nodes and
    start slots). Per-node sums over the whole horizon (`dyn_rate`,
    `open_full`, `free_minT`) are kept up to date by `_apply`, so pricing a
    service costs O(N) however long the horizon; nodes at sites with on-site
    supply are priced slot by slot because their surplus is shared.
    """

    def __init__(self, costs: CostModel, seed: int):
        sc = costs.scenario
        self.sc = sc
        self.rng = np.random.default_rng(seed)
        N, T, K, S, W = sc.n_nodes, sc.n_slots, len(sc.resources), sc.n_sites, sc.n_workloads
        self.N, self.T, self.K, self.S, self.W = N, T, K, S, W
        obj = costs.objective
        self.energy_w = float(obj.energy_weight_g_per_kwh)
        self.latency_w = float(obj.latency_weight_g_per_ms)
        self.migration_g = float(obj.migration_g_per_replica)

        # -- static tables --------------------------------------------------------------
        self.E = costs.eligible  # W x N
        self.cap = sc.node_capacity.astype(float)  # N x K
        # 1 / capacity, 0 where a node has none of a resource (nothing requesting it is eligible there).
        self.inv_capT = np.divide(1.0, self.cap, out=np.zeros_like(self.cap), where=self.cap > 0).T.copy()  # K x N
        self.req = sc.workload_requests.astype(float)  # W x K
        # 1 / request, inf where nothing is requested (that resource never limits).
        self.inv_req = np.divide(1.0, self.req, out=np.full_like(self.req, np.inf), where=self.req > 0)
        self.requested = [tuple(k for k, r in enumerate(row) if r > 0) for row in self.req.tolist()]  # per w
        self.R = sc.workload_replicas.astype(np.int64)
        self.site = sc.node_site
        self.always_on = ~sc.node_can_power_down
        self.kwh = costs.kwh_per_w_slot  # N [kWh per W and slot]
        self.node_int = costs.node_intensity_g_per_kwh  # N x T
        self.site_int = costs.site_intensity_g_per_kwh  # S x T
        self.supply = costs.site_supply_kwh  # S x T
        self.emb = costs.embodied_g_per_slot  # N
        self.a, self.s = costs.power_intercept_w, costs.power_slope_w  # N x L
        # Nodes whose hull is one line (the linear model): power and slope need no search over lines.
        self.linear = (np.ptp(self.a, axis=1) == 0) & (np.ptp(self.s, axis=1) == 0)
        self.util = costs.workload_node_util  # W x N
        self.bg = sc.node_background_util  # N x T
        # Opening energy: idle + background power of a node that is on with nothing of ours on it.
        self.open_kwh = self._hull_w(np.arange(N), self.bg) * self.kwh[:, None]  # N x T
        # Price of 1 kWh at a node without on-site supply, and of keeping it open for a slot.
        self.int_ew = self.node_int + self.energy_w  # N x T
        self.open_row = self.open_kwh * self.int_ew + self.emb[:, None]  # N x T
        site_supplied = (self.supply > 0).any(axis=1)
        self.pv_nodes = np.flatnonzero(site_supplied[self.site])  # priced slot by slot
        self.deferrable = sc.workload_deferrable
        self.earliest = sc.workload_earliest_slot
        self.latest = np.where(self.deferrable, sc.workload_latest_start_slot, sc.workload_earliest_slot)
        self.duration = sc.workload_duration_slots
        # Runs in every slot (services; jobs whose run is the whole horizon): priced like a service.
        self.whole_horizon = (self.earliest == 0) & (self.duration == T)
        self.min_sites = sc.workload_min_sites
        self.tenant = sc.workload_tenant
        M = len(sc.tenant_ids)
        self.conflicts_of = [np.flatnonzero(sc.tenant_conflicts[m]) for m in range(M)]
        self.quota = sc.tenant_quota.astype(float)  # M x K
        self.has_quota = bool(np.isfinite(self.quota).any())
        self.lat_site = sc.workload_site_latency_ms  # W x S
        self.current = costs.current_count if self.migration_g > 0 else {}

        # -- mutable state ---------------------------------------------------------------
        self.load = np.zeros((N, T, K))  # summed requests
        self.count = np.zeros((N, T), dtype=np.int64)  # replicas hosted
        self.cpu_util = np.array(self.bg, dtype=float)  # utilisation incl. background
        self.on = np.repeat(self.always_on[:, None], T, axis=1)
        self.slope = self._slope_w(np.arange(N), self.cpu_util)  # N x T [W per unit utilisation]
        self.node_kwh = np.where(self.on, self.open_kwh, 0.0)
        self.site_kwh = np.zeros((S, T))
        np.add.at(self.site_kwh, self.site, self.node_kwh)
        # Horizon-wide per-node caches (see the class docstring).
        self._free_minT = self.cap.T + _EPS  # K x N, least free capacity over the horizon (+ tolerance)
        self._free_stale = np.zeros(N, dtype=bool)  # nodes whose _free_minT needs recomputing
        self.dyn_rate = (self.slope * self.int_ew).sum(axis=1) * self.kwh  # N, gCO2e per unit utilisation
        self.open_full = (self.open_row * ~self.on).sum(axis=1)  # N, gCO2e to keep the node on all horizon
        self.off_slots = (~self.on).sum(axis=1)  # N
        # blocked[m, n] > 0: node n hosts a tenant that m must never share a node with.
        self.blocked = np.zeros((M, N), dtype=np.int64) if sc.tenant_conflicts.any() else None
        # Kubernetes pod (anti-)affinity and topology spread: replicas per topology domain, read over
        # the horizon (services are present all of it); `ruled[w]`: w has such a rule of its own.
        self.rules = ConstraintState(sc.constraints, W, self.whole_horizon) if sc.constraints.dynamic else None
        self.ruled = np.zeros(W, dtype=bool)
        if self.rules is not None:
            self.ruled[:] = [self.rules.ruled(w) for w in range(W)]
        self.tenant_use = np.zeros((M, T, K)) if self.has_quota else None
        self.placed: list[dict[int, int]] = [{} for _ in range(W)]  # w -> {node: replicas}
        self.start = self.earliest.copy()
        # Interruptible jobs with a choice of slots: where they run is a slot array, not a start.
        self.interruptible = sc.workload_interruptible & (sc.workload_window_end - self.earliest > self.duration)
        self.window_end = sc.workload_window_end
        self.min_run = sc.workload_min_run_slots
        self.run_done = sc.workload_run_done_slots
        self.run_of: dict[int, np.ndarray] = {}
        self.node_groups: list[dict[int, int]] = [{} for _ in range(N)]  # node -> {w: replicas}
        self.log: list[tuple[int, int, int, int | np.ndarray]] | None = None  # undo log of (w, node, k, where)

        # Not yet placed demand eligible for each node, per resource, in node fractions (F, amortisation).
        demand = self.R[:, None] * self.req  # W x K
        fill = np.zeros((N, K))
        for lo in range(0, W, 4096):  # chunks keep the float copy of `eligible` small
            block = self.E[lo:lo + 4096]
            fill += block.T.astype(np.float32) @ demand[lo:lo + 4096].astype(np.float32)
        self.F = fill.T * self.inv_capT  # K x N

    # -- the power model -----------------------------------------------------------------
    def _hull_w(self, nodes: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Convex-hull IT power [W] of `nodes` at utilisation u (len(nodes) x slots), clipped to 1."""
        u = np.minimum(u, 1.0)
        return (self.a[nodes, None, :] + self.s[nodes, None, :] * u[:, :, None]).max(axis=2)

    def _slope_w(self, nodes: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Right derivative of hull power at u [W per unit utilisation]; 0 at full load (power is clipped)."""
        a, s = self.a[nodes, None, :], self.s[nodes, None, :]
        line = np.argmax(a + s * (np.minimum(u, 1.0)[:, :, None] + 1e-9), axis=2)
        active = np.take_along_axis(self.s[nodes], line.reshape(len(nodes), -1), axis=1).reshape(u.shape)
        return np.where(u < 1.0, active, 0.0)

    # -- state updates -------------------------------------------------------------------
    def _where(self, w: int) -> int | np.ndarray:
        """Where w runs, as `_apply` takes it: its start slot, or an interruptible job's slots."""
        return self.run_of[w] if w in self.run_of else int(self.start[w])

    def _run_index(self, w: int) -> slice | np.ndarray:
        """Index of w's run slots: a slice from its start, or an interruptible job's slot array."""
        return self.run_of[w] if w in self.run_of else slice(int(self.start[w]), int(self.start[w]) + int(self.duration[w]))

    def _apply(self, w: int, n: int, k: int, start: int | np.ndarray) -> None:
        """Add k (or remove -k) replicas of workload w on node n, running from `start` (or in the
        slots of an array, for an interruptible job)."""
        d = int(self.duration[w])
        if d == 1 and not isinstance(start, np.ndarray):
            self._apply_slot(w, n, k, start)
        else:
            run = start if isinstance(start, np.ndarray) else slice(start, start + d)
            load, count, u = self.load[n, run], self.count[n, run], self.cpu_util[n, run]  # copies for an array
            load += k * self.req[w]
            count += k
            u += k * self.util[w, n]
            if k < 0:  # drop float residue where the node empties
                empty = count == 0
                if empty.any():
                    load[empty] = 0.0
                    u[empty] = self.bg[n, run][empty]
            if isinstance(run, np.ndarray):  # fancy indexing copied: write back
                self.load[n, run], self.count[n, run], self.cpu_util[n, run] = load, count, u
            on = (count > 0) | self.always_on[n]
            was_on = self.on[n, run].copy()
            self.on[n, run] = on
            uc = np.minimum(u, 1.0)
            if self.linear[n]:
                power = self.a[n, 0] + self.s[n, 0] * uc
                slope = np.where(u < 1.0, self.s[n, 0], 0.0)
            else:
                lines = self.a[n] + self.s[n] * uc[:, None]  # d x L
                power = lines.max(axis=1)
                slope = np.where(u < 1.0, self.s[n, np.argmax(lines + self.s[n] * 1e-9, axis=1)], 0.0)
            new_kwh = np.where(on, power * self.kwh[n], 0.0)
            self.site_kwh[self.site[n], run] += new_kwh - self.node_kwh[n, run]
            self.node_kwh[n, run] = new_kwh
            # Horizon caches, updated by the change in the run's slots only (a year is 17,568 slots).
            self.dyn_rate[n] += float((slope - self.slope[n, run]) @ self.int_ew[n, run]) * self.kwh[n]
            self.slope[n, run] = slope
            flipped = on != was_on
            if flipped.any():
                self.open_full[n] -= float(self.open_row[n, run][flipped] @ np.where(on[flipped], 1.0, -1.0))
                self.off_slots[n] -= int(on[flipped].sum()) - int((~on[flipped]).sum())
        self._free_stale[n] = True
        self._book(w, n, k, start)

    @property
    def free_minT(self) -> np.ndarray:
        """K x N: each node's least free capacity over the horizon (+ tolerance), recomputed for the
        nodes changed since it was last read (services read it; jobs look at their own slots)."""
        stale = np.flatnonzero(self._free_stale)
        if len(stale):
            self._free_minT[:, stale] = (self.cap[stale, None, :] + _EPS - self.load[stale]).min(axis=1).T
            self._free_stale[stale] = False
        return self._free_minT

    def _apply_slot(self, w: int, n: int, k: int, t: int) -> None:
        """`_apply` for a run of one slot, in scalars (the common case of a one-slot horizon)."""
        self.load[n, t] += k * self.req[w]
        c = int(self.count[n, t]) + k
        self.count[n, t] = c
        u = float(self.cpu_util[n, t]) + k * float(self.util[w, n])
        if c == 0:  # drop float residue when the node empties
            self.load[n, t] = 0.0
            u = float(self.bg[n, t])
        self.cpu_util[n, t] = u
        on = c > 0 or bool(self.always_on[n])
        was_on = bool(self.on[n, t])
        self.on[n, t] = on
        uc = min(u, 1.0)
        if self.linear[n]:
            s = float(self.s[n, 0])
            power = float(self.a[n, 0]) + s * uc
        else:
            lines = self.a[n] + self.s[n] * uc
            power = float(lines.max())
            s = float(self.s[n, int(np.argmax(lines + self.s[n] * 1e-9))])
        slope = s if u < 1.0 else 0.0
        kwh = float(self.kwh[n])
        new_kwh = power * kwh if on else 0.0
        self.site_kwh[self.site[n], t] += new_kwh - float(self.node_kwh[n, t])
        self.node_kwh[n, t] = new_kwh
        # Horizon caches, updated by the change in this one slot.
        self.dyn_rate[n] += (slope - float(self.slope[n, t])) * float(self.int_ew[n, t]) * kwh
        self.slope[n, t] = slope
        if on != was_on:
            sign = -1 if on else 1
            self.open_full[n] += sign * float(self.open_row[n, t])
            self.off_slots[n] += sign

    def _book(self, w: int, n: int, k: int, start: int) -> None:
        """Bookkeeping of a move: tenants, quota, who is where, the undo log."""
        m = int(self.tenant[w])
        if self.blocked is not None and len(self.conflicts_of[m]):
            self.blocked[self.conflicts_of[m], n] += k
        if self.rules is not None:
            self.rules.add(w, n, k)
        if self.tenant_use is not None:
            run = start if isinstance(start, np.ndarray) else slice(start, start + int(self.duration[w]))
            self.tenant_use[m, run] += k * self.req[w]
        placed = self.placed[w]
        placed[n] = placed.get(n, 0) + k
        if placed[n] == 0:
            del placed[n]
        groups = self.node_groups[n]
        groups[w] = groups.get(w, 0) + k
        if groups[w] == 0:
            del groups[w]
        if self.log is not None:
            self.log.append((w, n, k, start))

    def _undo(self, mark: int) -> None:
        """Reverse the logged moves after position `mark`."""
        log = self.log
        self.log = None
        while len(log) > mark:
            w, n, k, start = log.pop()
            self._apply(w, n, -k, start)
        self.log = log

    # -- candidate costs -----------------------------------------------------------------
    def _mask(self, w: int, allow_open: bool, exclude: int) -> np.ndarray:
        """N: nodes w may use now (eligible, no conflicting tenant, on all horizon unless allow_open)."""
        ok = self.E[w]
        if self.blocked is not None:
            ok = ok & (self.blocked[self.tenant[w]] == 0)
        if self.ruled[w]:
            ok = ok & self.rules.allowed(w)
        if not allow_open and self.whole_horizon[w]:
            ok = ok & (self.off_slots == 0)
        if exclude >= 0:
            ok = ok.copy()
            ok[exclude] = False
        return ok

    def _quota_fit(self, w: int, win: slice) -> np.ndarray:
        """Replicas the tenant's quota still admits per slot of `win` (inf without quota)."""
        if self.tenant_use is None:
            return np.full(win.stop - win.start, np.inf)
        m = int(self.tenant[w])
        left = self.quota[m] - self.tenant_use[m, win]  # Wn x K
        return np.floor((left + _EPS) * self.inv_req[w]).min(axis=1)

    def _slot_costs(self, w: int, idx: np.ndarray, win: slice, on: np.ndarray):
        """Per node of idx and slot of win: gCO2e of one replica's dynamic energy and of opening.

        The site's unused on-site supply (supply - modelled demand) covers
        opening energy first, then dynamic energy; the rest is priced at grid
        intensity (+ the energy weight on all facility energy).
        """
        dyn_kwh = self.slope[idx, win] * (self.util[w, idx] * self.kwh[idx])[:, None]
        open_kwh = np.where(on, 0.0, self.open_kwh[idx, win])
        surplus = np.maximum(self.supply[:, win] - self.site_kwh[:, win], 0.0)[self.site[idx]]
        open_grid = np.maximum(open_kwh - surplus, 0.0)
        dyn_grid = np.maximum(dyn_kwh - np.maximum(surplus - open_kwh, 0.0), 0.0)
        inten = self.node_int[idx, win]
        open_slot = open_grid * inten + np.where(on, 0.0, self.emb[idx, None]) + self.energy_w * open_kwh
        dyn_slot = dyn_grid * inten + self.energy_w * dyn_kwh
        return dyn_slot, open_slot

    def _service(self, w: int, allow_open: bool = True, exclude: int = -1) -> _Candidates:
        """Candidates of a service (runs all horizon), vectorised over every node."""
        ok = self._mask(w, allow_open, exclude)
        fit = np.floor(_rows_min(self.free_minT, self.inv_req[w], self.requested[w]))
        fit = np.where(ok, np.minimum(fit, float(self.R[w])), 0.0)
        dyn = self.util[w] * self.dyn_rate
        opn = self.open_full
        if len(self.pv_nodes):
            pv = self.pv_nodes
            d_slot, o_slot = self._slot_costs(w, pv, slice(0, self.T), self.on[pv])
            opn = opn.copy()
            dyn[pv], opn[pv] = d_slot.sum(axis=1), o_slot.sum(axis=1)
        if self.latency_w:
            dyn = dyn + self.latency_w * self.lat_site[w, self.site]
        limit = _NO_LIMIT if self.tenant_use is None else np.array([self._quota_fit(w, slice(0, self.T)).min()])
        return self._amortised(w, None, fit, dyn, opn, limit)

    def _slotted(self, w: int, starts: np.ndarray, allow_open: bool = True, exclude: int = -1) -> _Candidates:
        """Candidates of a workload over its eligible nodes x start slots."""
        idx = np.flatnonzero(self._mask(w, True, exclude))
        d = int(self.duration[w])
        win = slice(int(starts[0]), int(starts[-1]) + d)
        on = self.on[idx, win]
        fit_slot = np.full(on.shape, np.inf)  # n x Wn
        for k in self.requested[w]:
            free = self.cap[idx, k][:, None] + _EPS - self.load[idx, win, k]
            np.minimum(fit_slot, free * self.inv_req[w, k], out=fit_slot)
        fit_slot = np.floor(fit_slot)
        if not allow_open:
            fit_slot = np.where(on, fit_slot, 0.0)
        dyn_slot, open_slot = self._slot_costs(w, idx, win, on)
        q = self._quota_fit(w, win)
        if len(starts) == 1:
            fit = fit_slot.min(axis=1, keepdims=True)
            dyn, opn = dyn_slot.sum(axis=1, keepdims=True), open_slot.sum(axis=1, keepdims=True)
            limit = q.min(keepdims=True)
        else:
            fit = sliding_window_view(fit_slot, d, axis=1).min(axis=2)
            dyn, opn = _window_sums(dyn_slot, d), _window_sums(open_slot, d)
            limit = sliding_window_view(q, d).min(axis=1)
        fit = np.minimum(fit, float(self.R[w]))
        if self.latency_w:
            dyn = dyn + self.latency_w * self.lat_site[w, self.site[idx]][:, None]
        return self._amortised(w, idx, fit, dyn, opn, limit)

    def _amortised(self, w, idx, fit, dyn, opn, limit) -> _Candidates:
        """Attach what the opening amortisation and the migration discount need (module docstring)."""
        inv_cap = self.inv_capT if idx is None else self.inv_capT[:, idx]
        F = self.F if idx is None else self.F[:, idx]
        share = np.maximum(_rows_max(inv_cap, self.req[w], self.requested[w]), 1e-9)
        floor = np.clip(_rows_max(F), 1e-12, 1.0)  # expected fill, at most one node, never 0
        cur = self.current.get(w) if not self.deferrable[w] else None
        if cur is not None:  # replicas that may still stay: current minus those already placed there
            cur = cur.astype(float)
            for n, k in self.placed[w].items():
                cur[n] = max(cur[n] - k, 0.0)
            if idx is not None:
                cur = cur[idx]
        return _Candidates(idx, fit, dyn, opn, share, floor, cur, limit)

    def _per_replica(self, c: _Candidates, k: np.ndarray, dyn: np.ndarray, opn: np.ndarray,
                     cur: np.ndarray | None = None) -> np.ndarray:
        """gCO2e per replica when k replicas go to each node: dynamic + amortised opening
        (open x share / max(expected fill, k x share)) - the migration penalty saved on
        the `cur` replicas that stay."""
        share, floor = c.share, c.floor
        if k.ndim == 2:
            share, floor = share[:, None], floor[:, None]
        per = dyn + opn * share / np.maximum(floor, k * share)
        if cur is not None:
            per = per - self.migration_g * np.minimum(cur, k) / np.maximum(k, 1.0)
        return per

    # -- placing one workload ------------------------------------------------------------
    def _fill(self, w: int, c: _Candidates, col: int, start: int, count: int, sites: set[int]) -> int:
        """Place up to `count` replicas of w at `start` (column `col` of c), cheapest node first.

        Each step puts as many replicas on the cheapest node as fit there (on a current
        node, no more than stay there, so the penalty is not diluted). Until the workload
        covers min_sites sites only nodes at new sites qualify, and replicas are held back
        for the sites still needed. Returns the number placed.
        """
        if not len(c.fit):
            return 0
        if c.fit.ndim == 1:
            fit, dyn, opn = c.fit.copy(), c.dyn, c.opn
        else:
            fit, dyn, opn = c.fit[:, col].copy(), c.dyn[:, col], c.opn[:, col]
        cur = None if c.cur is None else c.cur.copy()
        if c.limit is not _NO_LIMIT:
            count = int(min(count, c.limit[col]))
        remaining = count
        need = int(self.min_sites[w]) - len(sites)
        if need > 0:
            node_site = self.site if c.idx is None else self.site[c.idx]
            site_used = np.zeros(self.S, dtype=bool)
            site_used[list(sites)] = True
        opn_share = opn * c.share
        ruled = self.ruled[w]
        while remaining > 0:
            ok = fit > 0
            if need > 0:
                ok &= ~site_used[node_site]
            if ruled:  # one replica at a time, each where kube-scheduler's rules let it go now
                allowed = self.rules.allowed(w)
                ok &= allowed if c.idx is None else allowed[c.idx]
            hold = max(need - 1, 0)  # replicas kept back for the sites still needed
            # k: replicas that would go to each node (fit is at most R, so the first step of a
            # plain fill needs no clipping); k = 0 where nothing fits, masked below.
            k = fit if remaining - hold >= self.R[w] else np.minimum(fit, remaining - hold)
            if ruled:
                k = np.minimum(k, 1.0)
            if cur is None:
                per = dyn + opn_share / np.maximum(c.floor, k * c.share)
            else:
                k = np.where(cur > 0, np.minimum(k, cur), k)
                per = self._per_replica(c, k, dyn, opn, cur)
            per = np.where(ok, per, np.inf)
            j = int(np.argmin(per))
            if not ok[j]:
                break
            n = j if c.idx is None else int(c.idx[j])
            kk = int(k[j])
            self._apply(w, n, kk, start)
            remaining -= kk
            fit[j] -= kk
            if opn[j] > 0:  # the node is on now (for this run); prices are otherwise kept
                opn, opn_share = opn.copy(), opn_share.copy()
                opn[j] = opn_share[j] = 0.0
            if cur is not None:
                cur[j] = max(cur[j] - kk, 0.0)
            if need > 0:
                site_used[node_site[j]] = True
                need -= 1
        return count - remaining

    def _insert(self, w: int) -> int:
        """Place every replica of an unplaced workload; returns the number placed."""
        R = int(self.R[w])
        if self.whole_horizon[w]:
            return self._fill(w, self._service(w), 0, int(self.earliest[w]), R, set())
        if self.interruptible[w]:
            return self._insert_interruptible(w)
        starts = np.arange(int(self.earliest[w]), int(self.latest[w]) + 1)
        c = self._slotted(w, starts)
        if len(starts) == 1:
            self.start[w] = starts[0]
            return self._fill(w, c, 0, int(starts[0]), R, set())
        # A job: rank starts by the cost of their R cheapest replica slots, then fill the best that works.
        fit = c.fit
        per = np.where(fit > 0, self._per_replica(c, np.maximum(fit, 1.0), c.dyn, c.opn), np.inf)
        if len(per) > R:  # R nodes hold R replicas: only the R cheapest per start matter
            top = np.argpartition(per, R - 1, axis=0)[:R]
            fit = np.take_along_axis(fit, top, axis=0)
            per = np.take_along_axis(per, top, axis=0)
        order = np.argsort(per, axis=0, kind="stable")
        f_sorted = np.take_along_axis(fit, order, axis=0)
        p_sorted = np.take_along_axis(per, order, axis=0)
        take = np.clip(R - (np.cumsum(f_sorted, axis=0) - f_sorted), 0.0, f_sorted)
        estimate = (take * np.where(take > 0, p_sorted, 0.0)).sum(axis=0)
        room = np.minimum(c.fit.sum(axis=0), c.limit)
        estimate = np.where(room >= R, estimate, np.inf)
        ranked = np.lexsort((-room, estimate))
        outer = self.log
        self.log = [] if outer is None else outer
        best, best_got = int(ranked[0]), -1
        for i in ranked[: max(1, int(np.isfinite(estimate).sum()))]:
            mark = len(self.log)
            got = self._fill(w, c, int(i), int(starts[i]), R, set())
            if got == R:
                self.log = outer
                self.start[w] = starts[i]
                return R
            if got > best_got:
                best, best_got = int(i), got
            self._undo(mark)
        self.log = outer
        self.start[w] = starts[best]
        return self._fill(w, c, best, int(starts[best]), R, set())

    def _insert_interruptible(self, w: int) -> int:
        """An interruptible job: each eligible node's cheapest `duration` slots of the window in
        runs of at least min_run (`cheapest_runs`, one replica's price per slot with the
        opening amortised as in `_per_replica`); then, cheapest node first, the replicas are
        filled into the slots one node chose (all replicas run in the same slots); the first
        choice that places all of them is kept, else the one that places most."""
        R, d = int(self.R[w]), int(self.duration[w])
        window = np.arange(int(self.earliest[w]), int(self.window_end[w]))
        c = self._in_slots(w, window, allow_open=True, per_slot=True)
        if not len(c.fit):
            return 0
        per = c.dyn + c.opn * (c.share / np.maximum(c.floor, c.share))[:, None]
        per = np.where(c.fit >= 1, per, np.inf)
        cost, chosen = cheapest_runs(per, d, int(self.min_run[w]), int(self.run_done[w]) if window[0] == 0 else 0)
        outer = self.log
        self.log = [] if outer is None else outer
        best, best_got = None, -1
        tried: set[bytes] = set()
        for i in np.argsort(cost, kind="stable")[:_RUN_CHOICES]:
            if not np.isfinite(cost[i]) or chosen[i].tobytes() in tried:
                continue
            tried.add(chosen[i].tobytes())
            slots = window[chosen[i]]
            mark = len(self.log)
            self.run_of[w] = slots
            got = self._fill(w, self._in_slots(w, slots), 0, slots, R, set())
            if got == R:
                self.log = outer
                return R
            if got > best_got:
                best, best_got = slots, got
            self._undo(mark)
        self.log = outer
        slots = window[:d] if best is None else best
        self.run_of[w] = slots
        return self._fill(w, self._in_slots(w, slots), 0, slots, R, set())

    def _in_slots(self, w: int, slots: np.ndarray, allow_open: bool = True, exclude: int = -1,
                  per_slot: bool = False) -> _Candidates:
        """Candidates of an interruptible job running in `slots` (sorted): over its eligible
        nodes, summed over the slots (per slot with `per_slot`, for choosing them)."""
        idx = np.flatnonzero(self._mask(w, True, exclude))
        on = self.on[idx][:, slots]
        fit = np.full(on.shape, np.inf)
        for k in self.requested[w]:
            free = self.cap[idx, k][:, None] + _EPS - self.load[idx][:, slots, k]
            np.minimum(fit, free * self.inv_req[w, k], out=fit)
        fit = np.floor(fit)
        if not allow_open:
            fit = np.where(on, fit, 0.0)
        win = slice(int(slots[0]), int(slots[-1]) + 1)
        dyn_slot, open_slot = self._slot_costs(w, idx, win, self.on[idx, win])
        pick = slots - int(slots[0])
        dyn_slot, open_slot = dyn_slot[:, pick], open_slot[:, pick]
        q = self._quota_fit(w, win)[pick]
        if self.latency_w:
            dyn_slot = dyn_slot + self.latency_w / len(slots) * self.lat_site[w, self.site[idx]][:, None]
        if per_slot:
            return self._amortised(w, idx, np.minimum(fit, float(self.R[w])), dyn_slot, open_slot, q)
        return self._amortised(w, idx, np.minimum(fit.min(axis=1, keepdims=True), float(self.R[w])),
                               dyn_slot.sum(axis=1, keepdims=True), open_slot.sum(axis=1, keepdims=True),
                               q.min(keepdims=True))

    def _order(self) -> np.ndarray:
        """The construction order of all workloads (see `_order_of`)."""
        return self._order_of(np.arange(self.W))

    def _order_of(self, ws: np.ndarray) -> np.ndarray:
        """Positions into `ws`: with a migration penalty, services that have a current
        placement first (their current nodes are a packing known to fit); then services
        (and jobs with one possible start); then fewest eligible nodes; then largest
        normalised request x replicas; seeded ties; and a workload with required pod
        affinity moved to just after its targets (so it finds room in their domains)."""
        flexible = self.latest[ws] > self.earliest[ws]
        newcomer = np.array([not (w in self.current and self.whole_horizon[w]) for w in ws.tolist()], dtype=bool)
        scarcity = self.E[ws].sum(axis=1)
        typical = np.median(self.cap, axis=0) if self.N else np.ones(self.K)
        size = (self.req[ws] / np.maximum(typical, 1e-12)).max(axis=1) * self.R[ws]
        jitter = self.rng.random(len(ws))
        order = np.lexsort((jitter, -size, scarcity, flexible, newcomer))
        return order[self.sc.constraints.targets_first(ws[order], eager=True)]  # pod affinity: right after its targets

    def adopt(self, start: Placement) -> None:
        """Apply the workloads `start` places by the rules (see `greedy_place`); the others stay
        for the construction."""
        sc = self.sc
        if start.shape != (sc.n_replicas, self.T):
            raise ValueError(f"start placement has shape {start.shape}, the scenario needs {(sc.n_replicas, self.T)}")
        first = sc.workload_first_replica
        for w in range(self.W):
            rows = start.rows(int(first[w]), int(first[w] + self.R[w]))
            where = self._schedule_of(w, rows)
            if where is None:
                continue
            nodes = rows[:, int(where[0]) if isinstance(where, np.ndarray) else where]
            counts = np.bincount(nodes, minlength=self.N)
            used = np.flatnonzero(counts)
            if not self.E[w, used].all() or (self.blocked is not None and self.blocked[self.tenant[w], used].any()):
                continue
            if self.ruled[w] and not self.rules.allowed(w)[used].all():
                continue  # the pod (anti-)affinity or spread rules keep w off one of its nodes now
            run = where if isinstance(where, np.ndarray) else slice(where, where + int(self.duration[w]))
            need = counts[used, None, None] * self.req[w][None, None, :]
            if ((self.load[used][:, run] + need) > self.cap[used][:, None, :] + _EPS).any():
                continue
            self._set_where(w, where)
            for n in used:
                self._apply(w, int(n), int(counts[n]), where)

    def _schedule_of(self, w: int, rows: np.ndarray) -> int | np.ndarray | None:
        """Where `rows` (w's replicas x slots) run w, if that is w's schedule with every replica on
        one node throughout: its start slot, an interruptible job's slots, or None."""
        running = rows >= 0
        slots = np.flatnonzero(running.any(axis=0))
        d = int(self.duration[w])
        if len(slots) != d or not (running[:, slots]).all() or (rows[:, slots] != rows[:, slots[:1]]).any():
            return None
        if self.interruptible[w]:
            ok = (slots[0] >= self.earliest[w] and slots[-1] < self.window_end[w]
                  and runs_long_enough(slots, int(self.min_run[w]), int(self.run_done[w])))
            return slots if ok else None
        s = int(slots[0])
        if slots[-1] - s != d - 1 or not self.earliest[w] <= s <= self.latest[w]:
            return None
        return s

    def construct(self) -> None:
        short = []
        for w in self._order():
            w = int(w)
            if self.placed[w]:  # adopted from a start placement
                np.subtract(self.F, (self.R[w] * self.req[w])[:, None] * self.inv_capT, out=self.F, where=self.E[w])
                continue
            if self._insert(w) < self.R[w]:
                short.append(w)
            # This demand is no longer to come.
            np.subtract(self.F, (self.R[w] * self.req[w])[:, None] * self.inv_capT, out=self.F, where=self.E[w])
        for w in short:
            self._repair(w)

    # -- the modelled objective ----------------------------------------------------------
    def _objective(self, ws) -> float:
        """Modelled gCO2e of the whole state (edgeplace.policies.costs), with the latency and
        migration terms of the workloads ws (the only ones a move changes)."""
        grid = np.maximum(self.site_kwh - self.supply, 0.0)
        total = float((grid * self.site_int).sum()) + float(self.emb @ self.on.sum(axis=1))
        total += self.energy_w * float(self.site_kwh.sum())
        for w in ws:
            placed = self.placed[w]
            if self.latency_w:
                total += self.latency_w * sum(k * self.lat_site[w, self.site[n]] for n, k in placed.items())
            cur = self.current.get(w)
            if cur is not None and not self.deferrable[w]:
                total -= self.migration_g * sum(min(k, int(cur[n])) for n, k in placed.items())
        return total

    # -- local search --------------------------------------------------------------------
    def _place_group(self, w: int, k: int, *, allow_open: bool, exclude: int = -1) -> bool:
        """Place k more replicas of w at its start (an interruptible job: in its slots), next to its
        other replicas (spread counts them)."""
        start = self._where(w)
        sites = {int(self.site[m]) for m in self.placed[w]}
        if self.whole_horizon[w]:
            c = self._service(w, allow_open=allow_open, exclude=exclude)
        elif isinstance(start, np.ndarray):
            c = self._in_slots(w, start, allow_open=allow_open, exclude=exclude)
        else:
            c = self._slotted(w, np.array([start]), allow_open=allow_open, exclude=exclude)
        return self._fill(w, c, 0, start, k, sites) == k

    def _rules_hold(self, ws) -> bool:
        """The pod (anti-)affinity and spread rules that name any of `ws` hold (a move that takes a
        replica away can break a rule of a workload it did not move)."""
        return self.rules is None or not self.rules.broken(ws)

    def _settle(self, ok: bool, ws, before: float) -> bool:
        """End a tentative move (recorded in `self.log`): keep it when it placed everything
        (`ok`) and the modelled objective of `ws` dropped below `before`, else undo it."""
        keep = ok and self._rules_hold(ws) and self._objective(ws) < before - _MIN_GAIN_G
        if not keep:
            self._undo(0)
        self.log = None
        return keep

    def _try_close(self, n: int) -> bool:
        """Move every replica off node n onto nodes already on; keep it if the objective drops."""
        groups = list(self.node_groups[n].items())
        ws = [w for w, _ in groups]
        before = self._objective(ws)
        self.log = []
        for w, k in groups:
            self._apply(w, n, -k, self._where(w))
        ok = all(self._place_group(w, k, allow_open=False, exclude=n) for w, k in groups)
        return self._settle(ok, ws, before)

    def _repair(self, w: int) -> bool:
        """Make room for a workload the construction could not place in full.

        For one eligible node at a time (fewest hosted replicas first, at most
        `_REPAIR_NODES`): move everything off it, place w anew, then put the
        moved replicas back wherever they fit (spread and never_with as
        always). Kept at the first node where everything ends up placed;
        feasibility comes before carbon here.
        """
        R = int(self.R[w])
        old = self._where(w)
        # Clearing a node the pod (anti-)affinity or spread rules keep w off would not help.
        nodes = np.flatnonzero(self.E[w] & self.rules.allowed(w) if self.ruled[w] else self.E[w])
        hosted = self.count[nodes].sum(axis=1)
        for n in nodes[np.argsort(hosted, kind="stable")][:_REPAIR_NODES]:
            n = int(n)
            self.log = []
            for v, k in list(self.placed[w].items()):
                self._apply(w, v, -k, old)
            evicted = list(self.node_groups[n].items())
            for v, k in evicted:
                self._apply(v, n, -k, self._where(v))
            if (self._insert(w) == R and all(self._place_group(v, k, allow_open=True) for v, k in evicted)
                    and self._rules_hold([w] + [v for v, _ in evicted])):
                self.log = None
                return True
            self._undo(0)
            self._set_where(w, old)
            self.log = None
        return False

    def _set_where(self, w: int, where: int | np.ndarray) -> None:
        if isinstance(where, np.ndarray):
            self.run_of[w] = where
        else:
            self.start[w] = where

    def _try_retime(self, w: int) -> bool:
        """Take job w out and insert it again with everything else in place; keep it if the objective drops."""
        R = int(self.R[w])
        if sum(self.placed[w].values()) != R:
            return False
        before = self._objective([w])
        old = self._where(w)
        self.log = []
        for n, k in list(self.placed[w].items()):
            self._apply(w, n, -k, old)
        if self._settle(self._insert(w) == R, [w], before):
            return True
        self._set_where(w, old)
        return False

    def _closing_candidates(self) -> np.ndarray:
        """Open nodes that may sleep, most opening cost per unit of hosted work first."""
        nodes = np.flatnonzero((self.count > 0).any(axis=1) & ~self.always_on)
        if not len(nodes):
            return nodes
        on = self.on[nodes]
        open_g = (self.open_row[nodes] * on).sum(axis=1)
        work = ((self.load[nodes] * self.inv_capT.T[nodes, None, :]).max(axis=2) * on).sum(axis=1)
        score = open_g / np.maximum(work, 1e-9)
        return nodes[np.lexsort((self.rng.random(len(nodes)), -score))]

    def _run_rate(self, w: int) -> np.ndarray:
        """N: gCO2e per unit of added utilisation over w's run, at today's slopes (grid prices;
        on-site surplus ignored: this only ranks moves, the objective judges them)."""
        if self.whole_horizon[w]:
            return self.dyn_rate
        run = self._run_index(w)
        return (self.slope[:, run] * self.int_ew[:, run]).sum(axis=1) * self.kwh

    def _move_candidates(self) -> list[tuple[float, int, int, int]]:
        """(estimated gain, w, from, to): each hosted group and the open node where its dynamic
        energy is cheapest, largest estimated gain first."""
        out = []
        for w in range(self.W):
            placed = self.placed[w]
            if not placed:
                continue
            run = self._run_index(w)
            open_ok = self.E[w] & self.on[:, run].all(axis=1)
            if self.blocked is not None:
                open_ok &= self.blocked[self.tenant[w]] == 0
            price = self.util[w] * self._run_rate(w)
            dst = int(np.argmin(np.where(open_ok, price, np.inf)))
            if not open_ok[dst]:
                continue
            for src, k in placed.items():
                gain = k * (price[src] - price[dst])
                if src != dst and gain > _MIN_GAIN_G:
                    out.append((float(gain), w, src, dst))
        out.sort(key=lambda x: -x[0])
        return out

    def _try_move(self, w: int, src: int, dst: int) -> bool:
        """Move w's replicas from src to the open node dst, first moving lower-usage
        replicas off dst if room is short (a swap when they go to src); keep it if the
        objective drops."""
        k = self.node_groups[src].get(w, 0)
        start = self._where(w)
        run = self._run_index(w)
        if not k or not self.E[w, dst] or not self.on[dst, run].all():
            return False
        if self.blocked is not None and self.blocked[self.tenant[w], dst] > 0:
            return False
        if self.min_sites[w] > 1:
            sites = {int(self.site[m]) for m, c in self.placed[w].items() if m != src or c > k}
            if len(sites | {int(self.site[dst])}) < self.min_sites[w]:
                return False
        # Groups on dst, least dynamic energy per unit of capacity first: they lose least by moving.
        groups = sorted(((v, kv) for v, kv in self.node_groups[dst].items() if v != w),
                        key=lambda g: self.util[g[0], dst] / max(float((self.req[g[0]] * self.inv_capT[:, dst]).max()), 1e-12))
        ws = [w] + [v for v, _ in groups]
        before = self._objective(ws)
        self.log = []
        self._apply(w, src, -k, start)
        evicted = []
        need = k * self.req[w]
        for v, kv in groups:
            if ((self.cap[dst] + _EPS - self.load[dst, run]) >= need).all():
                break
            self._apply(v, dst, -kv, self._where(v))
            evicted.append((v, kv))
        ok = ((self.cap[dst] + _EPS - self.load[dst, run]) >= need).all()
        if ok:
            self._apply(w, dst, k, start)
            ok = all(self._place_group(v, kv, allow_open=True, exclude=dst) for v, kv in evicted)
        return self._settle(ok, ws, before)

    def _try_rebuild(self, nodes: np.ndarray) -> bool:
        """Large-neighbourhood move: take every replica off `nodes` and place them again with
        the construction (opening amortised over the demand taken off, so it may open a
        better node); keep it if the objective drops."""
        groups = [(w, k) for n in nodes for w, k in self.node_groups[int(n)].items()]
        if not groups:
            return False
        ws = sorted({w for w, _ in groups})
        before = self._objective(ws)
        saved_F = self.F
        self.F = np.zeros_like(saved_F)
        for w, k in groups:
            np.add(self.F, (k * self.req[w])[:, None] * self.inv_capT, out=self.F, where=self.E[w])
        self.log = []
        for n in nodes:
            for w, k in list(self.node_groups[int(n)].items()):
                self._apply(w, int(n), -k, self._where(w))
        order = self._order_of(np.array([w for w, _ in groups]))
        ok = True
        for i in order:
            w, k = groups[i]
            ok = self._place_group(w, k, allow_open=True)
            np.subtract(self.F, (k * self.req[w])[:, None] * self.inv_capT, out=self.F, where=self.E[w])
            if not ok:
                break
        self.F = saved_F
        return self._settle(ok, ws, before)

    def improve(self, deadline: float, rebuild_tries: int = _REBUILD_TRIES) -> None:
        """Local search: close wasteful nodes, re-time jobs, move replicas to where their
        dynamic energy is cleaner; stop at a local optimum or the deadline."""
        jobs = [int(w) for w in np.flatnonzero(~self.whole_horizon) if self.E[w].any()]
        improved = True
        while improved and time.perf_counter() < deadline:
            improved = False
            for n in self._closing_candidates():
                if time.perf_counter() >= deadline:
                    return
                if self.node_groups[int(n)] and self._try_close(int(n)):
                    improved = True
            for w in jobs:
                if time.perf_counter() >= deadline:
                    return
                if self._try_retime(w):
                    improved = True
            for _, w, src, dst in self._move_candidates():
                if time.perf_counter() >= deadline:
                    return
                if self._try_move(w, src, dst):
                    improved = True
            if improved:
                continue
            # Stuck: rebuild random pairs and triples of open nodes, the most wasteful one
            # always among them, until one pays or a bounded number failed.
            fails = 0
            while fails < rebuild_tries and time.perf_counter() < deadline:
                open_nodes = self._closing_candidates()
                if len(open_nodes) < 2:
                    break
                size = min(len(open_nodes), int(self.rng.integers(2, 4)))
                pick = self.rng.choice(len(open_nodes), size=size, replace=False)
                pick[0] = min(fails, len(open_nodes) - 1)  # walk down the wasteful end
                if self._try_rebuild(open_nodes[np.unique(pick)]):
                    improved = True
                    break
                fails += 1

    # -- output --------------------------------------------------------------------------
    def placement(self) -> Placement:
        sc = self.sc
        replica_node = np.full(sc.n_replicas, -1, dtype=np.int64)
        first = sc.workload_first_replica
        for w in range(self.W):
            placed = dict(self.placed[w])
            nodes: list[int | None] = [None] * int(self.R[w])
            for r, n in enumerate(sc.workload_current[w] or []):  # replicas that stay keep their index
                if placed.get(n, 0) > 0:
                    nodes[r] = n
                    placed[n] -= 1
            rest = iter([n for n, k in sorted(placed.items()) for _ in range(k)])
            nodes = [next(rest, None) if n is None else n for n in nodes]
            r0 = int(first[w])
            replica_node[r0:r0 + len(nodes)] = [-1 if n is None else n for n in nodes]
        return Placement.from_replica_nodes(sc, replica_node, start_slot=self.start.copy(),
                                            run_slots=dict(self.run_of))


@dataclass
class _Candidates:
    """Where one workload may go and at what price, per node (all nodes if idx is None) x start column."""

    idx: np.ndarray | None  # node of each row, None = row n is node n
    fit: np.ndarray  # n x S (n for a service), replicas that fit (0 = not allowed)
    dyn: np.ndarray  # like fit: gCO2e of one replica's dynamic energy over its run (+ latency term)
    opn: np.ndarray  # like fit: gCO2e of opening the node for the run (0 if already on)
    share: np.ndarray  # n, dominant request of one replica / capacity
    floor: np.ndarray  # n, expected fill: not yet placed demand eligible there, clipped to [1e-12, 1] [node fractions]
    cur: np.ndarray | None  # n, current replicas there not yet placed back (migration), None = no penalty
    limit: np.ndarray  # S, replicas the tenant quota admits


def _rows_min(x: np.ndarray, scale: np.ndarray, rows) -> np.ndarray:
    """min over `rows` k of x[k] x scale[k] (faster than a reduction along axis 0 for the
    few rows of a resource table); inf without rows."""
    out = None
    for k in rows:
        row = x[k] * scale[k]
        out = row if out is None else np.minimum(out, row, out=out)
    return np.full(x.shape[1], np.inf) if out is None else out


def _rows_max(x: np.ndarray, scale: np.ndarray | None = None, rows=None) -> np.ndarray:
    """max over `rows` (default all) k of x[k] (x scale[k]); zeros without rows."""
    out = None
    for k in range(x.shape[0]) if rows is None else rows:
        row = x[k] if scale is None else x[k] * scale[k]
        out = row.copy() if out is None else np.maximum(out, row, out=out)
    return np.zeros(x.shape[1]) if out is None else out


def _window_sums(x: np.ndarray, d: int) -> np.ndarray:
    """n x (Wn - d + 1): sums of x over every window of d consecutive columns."""
    c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    return c[:, d:] - c[:, :-d]


def cheapest_runs(cost: np.ndarray, d: int, min_run: int, done: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `cost` (n x L, inf = not allowed): the cheapest choice of exactly `d` of the L
    slots whose runs of consecutive slots each last at least `min_run`; (total cost (n,),
    chosen (n x L bool)). A run in progress with `done` slots behind it continues in slot 0
    (it needs min_run - done more there, and must not stop earlier). Dynamic programming
    over the slots, vectorised over rows: state (slots chosen, length of the current run,
    capped at min_run); inf where no choice exists.
    """
    n, L = cost.shape
    m = max(int(min_run), 1)
    f = np.full((n, d + 1, m + 1), np.inf)
    f[:, 0, min(done, m)] = 0.0
    took = np.zeros((L, n, d + 1, m + 1), dtype=np.int8)  # 1: slot t chosen on the way to this state
    from_k = np.zeros((L, n, d + 1, m + 1), dtype=np.int16)
    for t in range(L):
        new = np.full_like(f, np.inf)
        # not chosen: the current run must be long enough (k == 0: no run, k == m: long enough)
        stop = np.minimum(f[:, :, 0], f[:, :, m])
        new[:, :, 0] = stop
        from_k[t, :, :, 0] = np.where(f[:, :, m] < f[:, :, 0], m, 0)
        # chosen: one more slot, the run one longer
        c = cost[:, t][:, None]
        for k in range(m + 1):
            target = min(k + 1, m)
            val = f[:, :-1, k] + c
            better = val < new[:, 1:, target]
            new[:, 1:, target] = np.where(better, val, new[:, 1:, target])
            took[t, :, 1:, target] = np.where(better, 1, took[t, :, 1:, target])
            from_k[t, :, 1:, target] = np.where(better, k, from_k[t, :, 1:, target])
        f = new
    end = np.minimum(f[:, d, 0], f[:, d, m])
    k = np.where(f[:, d, m] < f[:, d, 0], m, 0)
    chosen = np.zeros((n, L), dtype=bool)
    c = np.full(n, d)
    rows = np.arange(n)
    for t in range(L - 1, -1, -1):
        step = took[t, rows, c, k].astype(bool)
        chosen[:, t] = step
        prev_k = from_k[t, rows, c, k].astype(np.int64)
        c = c - step
        k = prev_k
    chosen[~np.isfinite(end)] = False
    return end, chosen
