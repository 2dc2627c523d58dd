"""The one evaluation function: a placement against a scenario, in numbers.

Every energy, carbon, latency and violation figure edgeplace shows comes from
`evaluate(scenario, placement)`: reports, benchmarks, tests, the CLI and the
extender's metrics. Solvers never report their own objective as a result.

The arithmetic, per node i and slot t (h = slot length in hours):

    u[i,t]       = background[i,t] + sum(cpu request x cpu_usage_fraction) / cpu capacity
    it_w[i,t]    = powered[i,t] x P_i(u[i,t])                  (edgeplace.policies.power.node_power_w)
    energy[i,t]  = it_w x PUE(site) x h / 1000                  [kWh, facility]
per site s: renewables first, then battery, then grid (edgeplace.policies.power.onsite_supply_split);
    grid[i,t]    = energy[i,t] x grid[s,t] / energy[s,t]        (pro rata within the site)
    op_g[i,t]    = grid[i,t] x intensity[region(s), t]          [gCO2e]
    emb_g[i,t]   = powered[i,t] x embodied_kg x 1000 / (lifetime_h) x h   (SCI M per node-hour)

Attribution to tenants: a node-slot's energy, emissions and embodied carbon
go to the tenants on it in proportion to their CPU requests (SCI's
resources-reserved share); what no tenant reserved (idle nodes, unrequested
capacity of embodied carbon) goes to `(unallocated)`, so per-tenant figures
add up to the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import numpy as np
import pandas as pd

from edgeplace.policies.power import energy_kwh, node_power_w, onsite_supply_split
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU, Scenario

UNALLOCATED = "(unallocated)"


class ViolationKind(str, Enum):
    capacity = "capacity"
    sla = "sla"
    isolation = "isolation"
    selector = "selector"
    spread = "spread"
    schedule = "schedule"
    quota = "quota"
    power = "power"


@dataclass(frozen=True)
class Violation:
    """A broken rule: `subject` (workload, node or tenant id) in `slots`, worst excess `amount` [`unit`]."""

    kind: ViolationKind
    subject: str
    slots: tuple[int, ...]
    amount: float
    unit: str
    message: str

    def as_dict(self) -> dict:
        return {"kind": self.kind.value, "subject": self.subject, "slots": list(self.slots),
                "amount": self.amount, "unit": self.unit, "message": self.message}


@dataclass(eq=False)
class Evaluation:
    """Figures of one placement. Arrays are per node (N), site (S), tenant (M+1,
    the last being `(unallocated)`) and slot (T)."""

    scenario: Scenario
    powered: np.ndarray  # N x T bool
    utilisation: np.ndarray  # N x T, CPU [0..]
    it_power_w: np.ndarray  # N x T
    energy_kwh: np.ndarray  # N x T, facility (with PUE)
    renewable_kwh: np.ndarray  # N x T, on-site renewable energy used
    grid_kwh: np.ndarray  # N x T
    operational_g: np.ndarray  # N x T
    embodied_g: np.ndarray  # N x T
    tenant_energy_kwh: np.ndarray  # (M+1) x T
    tenant_operational_g: np.ndarray  # (M+1) x T
    tenant_embodied_g: np.ndarray  # (M+1) x T
    violations: list[Violation] = field(default_factory=list)

    # -- totals ------------------------------------------------------------
    @cached_property
    def totals(self) -> dict[str, float]:
        op, emb = float(self.operational_g.sum()), float(self.embodied_g.sum())
        active = self.powered.sum(axis=0)
        hours = self.scenario.n_slots * self.scenario.slot_hours
        return {
            "energy_kwh": float(self.energy_kwh.sum()),
            # Facility power (PUE applied) averaged over the horizon: the kWh as a steady draw.
            "mean_power_w": float(self.energy_kwh.sum()) * 1000.0 / hours if hours > 0 else 0.0,
            "renewable_kwh": float(self.renewable_kwh.sum()),
            "grid_kwh": float(self.grid_kwh.sum()),
            "operational_emissions_g": op,
            "embodied_emissions_g": emb,
            "emissions_g": op + emb,
            "mean_active_nodes": float(active.mean()) if active.size else 0.0,
            "peak_active_nodes": int(active.max()) if active.size else 0,
            "mean_utilisation_active": float(self.utilisation[self.powered].mean()) if self.powered.any() else 0.0,
            **{f"{k.value}_violations": n for k, n in self.violation_counts.items()},
        }

    def asleep_nodes(self) -> tuple[list[str], list[str]]:
        """Node ids powered down in every slot, and those powered down in some slots only."""
        ids = self.scenario.node_ids
        on_slots = self.powered.sum(axis=1)
        return ([ids[i] for i in np.flatnonzero(on_slots == 0)],
                [ids[i] for i in np.flatnonzero((on_slots > 0) & (on_slots < self.powered.shape[1]))])

    @cached_property
    def violation_counts(self) -> dict[ViolationKind, int]:
        counts = {k: 0 for k in ViolationKind}
        for v in self.violations:
            counts[v.kind] += 1
        return counts

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def emissions_g(self) -> float:
        return self.totals["emissions_g"]

    # -- tables ------------------------------------------------------------
    def per_node(self) -> pd.DataFrame:
        sc = self.scenario
        return pd.DataFrame({
            "node": sc.node_ids,
            "site": [sc.site_ids[s] for s in sc.node_site],
            "powered_slots": self.powered.sum(axis=1),
            "mean_utilisation": self.utilisation.mean(axis=1),
            "energy_kwh": self.energy_kwh.sum(axis=1),
            "renewable_kwh": self.renewable_kwh.sum(axis=1),
            "grid_kwh": self.grid_kwh.sum(axis=1),
            "operational_emissions_g": self.operational_g.sum(axis=1),
            "embodied_emissions_g": self.embodied_g.sum(axis=1),
        })

    def per_site(self) -> pd.DataFrame:
        sc = self.scenario
        df = self.per_node().drop(columns=["node"]).groupby("site", sort=False).agg(
            nodes=("powered_slots", "size"), powered_node_slots=("powered_slots", "sum"),
            energy_kwh=("energy_kwh", "sum"), renewable_kwh=("renewable_kwh", "sum"),
            grid_kwh=("grid_kwh", "sum"), operational_emissions_g=("operational_emissions_g", "sum"),
            embodied_emissions_g=("embodied_emissions_g", "sum"))
        df.insert(0, "tier", [sc.spec.sites[sc.index_of("site", s)].tier.value for s in df.index])
        return df.reset_index()

    def per_tenant(self) -> pd.DataFrame:
        names = [*self.scenario.tenant_ids, UNALLOCATED]
        return pd.DataFrame({
            "tenant": names,
            "energy_kwh": self.tenant_energy_kwh.sum(axis=1),
            "operational_emissions_g": self.tenant_operational_g.sum(axis=1),
            "embodied_emissions_g": self.tenant_embodied_g.sum(axis=1),
        })

    def per_slot(self) -> pd.DataFrame:
        sc = self.scenario
        return pd.DataFrame({
            "slot": np.arange(sc.n_slots),
            "start": [sc.slot_time(t).isoformat() for t in range(sc.n_slots)],
            "active_nodes": self.powered.sum(axis=0),
            "energy_kwh": self.energy_kwh.sum(axis=0),
            "renewable_kwh": self.renewable_kwh.sum(axis=0),
            "grid_kwh": self.grid_kwh.sum(axis=0),
            "operational_emissions_g": self.operational_g.sum(axis=0),
            "embodied_emissions_g": self.embodied_g.sum(axis=0),
        })


def evaluate(scenario: Scenario, placement: Placement) -> Evaluation:
    """Energy, emissions and every rule check of `placement` on `scenario`."""
    sc = scenario
    N, T, M = sc.n_nodes, sc.n_slots, len(sc.tenant_ids)
    assign = np.asarray(placement.assign)
    if assign.shape != (sc.n_replicas, T):
        raise ValueError(f"placement has shape {assign.shape}, scenario needs {(sc.n_replicas, T)} (replicas x slots)")
    if assign.size and (assign.min() < -1 or assign.max() >= N):
        # A node index past the end would fall off the per-node sums silently.
        raise ValueError(f"placement names node indices {int(assign.min())}..{int(assign.max())}; valid are -1..{N - 1}")
    if placement.powered is not None and np.shape(placement.powered) != (N, T):
        # A (1, T) array would broadcast silently over every node.
        raise ValueError(f"powered has shape {np.shape(placement.powered)}, scenario needs {(N, T)} (nodes x slots)")
    rep_w = sc.replica_workload
    running = assign >= 0
    r_idx, t_idx = np.nonzero(running)
    node = assign[r_idx, t_idx]
    w_of = rep_w[r_idx]
    cell = node * T + t_idx  # flat node-slot index

    def per_cell(weights: np.ndarray | None = None, size: int = N * T) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=size)[:size]

    # Load and power state.
    cpu_req = sc.workload_requests[w_of, CPU].astype(float)
    cpu_used = per_cell(cpu_req * sc.workload_cpu_usage[w_of]).reshape(N, T)
    utilisation = sc.node_background_util + cpu_used / sc.node_capacity[:, CPU, None]
    hosting = per_cell().reshape(N, T) > 0
    derived = hosting | ~sc.node_can_power_down[:, None]
    powered = derived if placement.powered is None else np.asarray(placement.powered, dtype=bool)

    # Energy: IT power -> facility energy -> renewables/battery/grid -> emissions.
    it_w = np.where(powered, node_power_w(sc.node_power_curve_w, utilisation), 0.0)
    node_kwh = energy_kwh(it_w * sc.node_pue[:, None], sc.slot_hours)
    site_kwh = np.zeros((sc.n_sites, T))
    np.add.at(site_kwh, sc.node_site, node_kwh)
    supply_kwh = energy_kwh(sc.site_renewable_kw * 1000.0, sc.slot_hours)
    site_ren, site_grid = onsite_supply_split(site_kwh, supply_kwh, sc.site_battery_kwh)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid_share = np.where(site_kwh > 0, site_grid / site_kwh, 0.0)
    node_grid = node_kwh * grid_share[sc.node_site]
    node_ren = node_kwh - node_grid
    op_g = node_grid * sc.region_intensity_g_per_kwh[sc.node_region]
    emb_g = powered * (sc.node_embodied_g_per_h * sc.slot_hours)[:, None]

    # Attribution to tenants by share of CPU requested on the node-slot.
    tenant_cpu = np.bincount(cell * M + sc.workload_tenant[w_of], weights=cpu_req,
                             minlength=N * T * M)[: N * T * M].reshape(N, T, M)
    req_total = tenant_cpu.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_of_use = np.where(req_total[..., None] > 0, tenant_cpu / req_total[..., None], 0.0)
    share_of_capacity = np.minimum(tenant_cpu / sc.node_capacity[:, CPU, None, None], 1.0)
    share_of_capacity *= np.minimum(1.0, 1.0 / np.maximum(share_of_capacity.sum(axis=2, keepdims=True), 1e-12))

    def attribute(values: np.ndarray, share: np.ndarray) -> np.ndarray:
        per_tenant = np.einsum("nt,ntm->mt", values, share)
        rest = values.sum(axis=0) - per_tenant.sum(axis=0)
        return np.vstack([per_tenant, rest[None, :]])

    result = Evaluation(
        scenario=sc, powered=powered, utilisation=utilisation, it_power_w=it_w, energy_kwh=node_kwh,
        renewable_kwh=node_ren, grid_kwh=node_grid, operational_g=op_g, embodied_g=emb_g,
        tenant_energy_kwh=attribute(node_kwh, share_of_use),
        tenant_operational_g=attribute(op_g, share_of_use),
        tenant_embodied_g=attribute(emb_g, share_of_capacity),
    )
    result.violations = _violations(sc, assign, powered, r_idx, t_idx, node, w_of, cell)
    return result


def _slots(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(t) for t in np.flatnonzero(mask))


def _violations(sc: Scenario, assign, powered, r_idx, t_idx, node, w_of, cell) -> list[Violation]:
    N, T, M = sc.n_nodes, sc.n_slots, len(sc.tenant_ids)
    out: list[Violation] = []

    # Capacity: summed requests per node, slot and resource.
    for k, res in enumerate(sc.resources):
        load = np.bincount(cell, weights=sc.workload_requests[w_of, k].astype(float), minlength=N * T)[: N * T].reshape(N, T)
        over = load - sc.node_capacity[:, k, None]
        for i in np.flatnonzero((over > 0).any(axis=1)):
            worst = float(over[i].max())
            out.append(Violation(ViolationKind.capacity, sc.node_ids[i], _slots(over[i] > 0), worst, res,
                                 f"node {sc.node_ids[i]} is over its {res} by up to {worst:g}"))

    # Latency SLA: worst latency from the node's site to the users served.
    lat = sc.workload_site_latency_ms[w_of, sc.node_site[node]]
    bad = lat > sc.workload_sla_ms[w_of] + 1e-9
    for w in np.unique(w_of[bad]):
        sel = bad & (w_of == w)
        spec = sc.spec.workloads[w]
        worst = float((lat[sel] - sc.workload_sla_ms[w]).max())
        sites = np.unique(sc.node_site[node[sel]])
        users = [u for u in spec.sla.users
                 if (sc.user_site_latency_ms[sc.index_of("user", u), sites] > spec.sla.latency_ms + 1e-9).any()]
        out.append(Violation(ViolationKind.sla, spec.id, tuple(sorted(set(t_idx[sel].tolist()))), worst, "ms",
                             f"{spec.id} misses its {spec.sla.latency_ms:g} ms SLA by up to {worst:.1f} ms for users {', '.join(users)}"))

    # Node selector and dedicated pools.
    owner = sc.node_dedicated_tenant[node]
    tenant = sc.workload_tenant[w_of]
    foreign = ((owner >= 0) & (owner != tenant)) | (sc.tenant_dedicated[tenant] & (owner != tenant))
    for w in np.unique(w_of[foreign]):
        sel = foreign & (w_of == w)
        nodes = sorted({sc.node_ids[i] for i in node[sel]})
        out.append(Violation(ViolationKind.isolation, sc.workload_ids[w], tuple(sorted(set(t_idx[sel].tolist()))), float(sel.sum()),
                             "replica-slots", f"{sc.workload_ids[w]} (tenant {sc.tenant_ids[sc.workload_tenant[w]]}) breaks a dedicated pool on {', '.join(nodes[:5])}"))
    has_selector = np.fromiter((bool(s) for s in sc.workload_selector), bool, sc.n_workloads)
    for w in np.unique(w_of[has_selector[w_of]]):
        sel = w_of == w
        wrong = ~np.fromiter((sc.workload_selector[w] <= sc.node_label_sets[i] for i in node[sel]), bool, int(sel.sum()))
        if wrong.any():
            out.append(Violation(ViolationKind.selector, sc.workload_ids[w], tuple(sorted(set(t_idx[sel][wrong].tolist()))),
                                 float(wrong.sum()), "replica-slots",
                                 f"{sc.workload_ids[w]} runs on nodes without labels {dict(sc.workload_selector[w])}"))

    # Tenants that must never share a node.
    if sc.tenant_conflicts.any():
        # Presence counts replicas, not CPU: a replica requesting 0 millicores is still there.
        present = np.bincount(cell * M + sc.workload_tenant[w_of], minlength=N * T * M)[: N * T * M].reshape(N, T, M) > 0
        a, b = np.nonzero(np.triu(sc.tenant_conflicts))
        for ta, tb in zip(a, b):
            both = present[:, :, ta] & present[:, :, tb]
            for i in np.flatnonzero(both.any(axis=1)):
                out.append(Violation(ViolationKind.isolation, sc.node_ids[i], _slots(both[i]), float(both[i].sum()), "slots",
                                     f"tenants {sc.tenant_ids[ta]} and {sc.tenant_ids[tb]} share node {sc.node_ids[i]}"))

    # Spread: distinct sites per slot.
    for w in np.flatnonzero(sc.workload_min_sites > 1):
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        rows = assign[r0:r0 + n]
        site_rows = np.where(rows >= 0, sc.node_site[np.maximum(rows, 0)], -1)
        distinct = np.array([len(set(site_rows[:, t][site_rows[:, t] >= 0])) for t in range(T)])
        short = (distinct < sc.workload_min_sites[w]) & (rows >= 0).any(axis=0)
        if short.any():
            out.append(Violation(ViolationKind.spread, sc.workload_ids[w], _slots(short), float(sc.workload_min_sites[w] - distinct[short].min()),
                                 "sites", f"{sc.workload_ids[w]} runs on fewer than {sc.workload_min_sites[w]} sites"))

    # Schedule: services run in every slot; deferrable jobs in one block inside their window.
    running = assign >= 0
    rep_w = sc.replica_workload
    must = sc.workload_active[rep_w]
    fixed = ~sc.workload_deferrable[rep_w]
    wrong_fixed = fixed & (running != must).any(axis=1)
    for w in np.unique(rep_w[wrong_fixed]):
        rows = wrong_fixed & (rep_w == w)
        slots = (running[rows] != must[rows]).any(axis=0)
        out.append(Violation(ViolationKind.schedule, sc.workload_ids[w], _slots(slots), float(slots.sum()), "slots",
                             f"{sc.workload_ids[w]} is not running in every slot it must (unplaced or stopped)"))
    for w in np.flatnonzero(sc.workload_deferrable):
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        runs = running[r0:r0 + n]
        any_run = runs.any(axis=0)
        slots = np.flatnonzero(any_run)
        d = int(sc.workload_duration_slots[w])
        ok = (slots.size == d and (runs == any_run[None, :]).all()
              and slots[0] >= sc.workload_earliest_slot[w] and slots[0] <= sc.workload_latest_start_slot[w]
              and slots[-1] - slots[0] == d - 1)
        if not ok:
            out.append(Violation(ViolationKind.schedule, sc.workload_ids[w], tuple(slots.tolist()), float(abs(slots.size - d)), "slots",
                                 f"{sc.workload_ids[w]} must run {d} consecutive slot(s) with all replicas, starting in slots "
                                 f"{sc.workload_earliest_slot[w]}..{sc.workload_latest_start_slot[w]}"))

    # Tenant quotas.
    if np.isfinite(sc.tenant_quota).any():
        for k, res in enumerate(sc.resources):
            use = np.bincount(sc.workload_tenant[w_of] * T + t_idx, weights=sc.workload_requests[w_of, k].astype(float),
                              minlength=M * T)[: M * T].reshape(M, T)
            over = use - sc.tenant_quota[:, k, None]
            for m in np.flatnonzero((over > 0).any(axis=1)):
                out.append(Violation(ViolationKind.quota, sc.tenant_ids[m], _slots(over[m] > 0), float(over[m].max()), res,
                                     f"tenant {sc.tenant_ids[m]} exceeds its {res} quota by up to {float(over[m].max()):g}"))

    # Power states: no replica on a sleeping node; always-on nodes stay on.
    asleep = ~powered[node, t_idx]
    for i in np.unique(node[asleep]):
        out.append(Violation(ViolationKind.power, sc.node_ids[i], tuple(sorted(set(t_idx[asleep & (node == i)].tolist()))),
                             float((asleep & (node == i)).sum()), "replica-slots", f"node {sc.node_ids[i]} is powered down but hosts replicas"))
    forced_off = ~sc.node_can_power_down[:, None] & ~powered
    for i in np.flatnonzero(forced_off.any(axis=1)):
        out.append(Violation(ViolationKind.power, sc.node_ids[i], _slots(forced_off[i]), float(forced_off[i].sum()), "slots",
                             f"node {sc.node_ids[i]} may not power down (can_power_down: false)"))
    return out
