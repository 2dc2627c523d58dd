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

Operational carbon on both GHG Protocol Scope 2 bases (edgeplace.policies.power.market_based_split):

    op_g[i,t]        = grid[i,t] x intensity[region(s), t]                    location-based [gCO2e]
    matched[s,t]     = min(grid[s,t], contracted[s,t] x h)    hourly matched contracted supply (PPA)
    uncovered[s,t]   = (grid[s,t] - matched[s,t]) x (1 - renewable_share[s])  after certificates
    market_g[i,t]    = grid[i,t] / grid[s,t] x uncovered[s,t] x residual[region(s)]   market-based
                       (residual = the region's residual mix; without one, the location intensity)
    cfe[i,t]         = energy[i,t] x (renewable[s,t] + matched[s,t]) / energy[s,t]    carbon-free energy

Embodied carbon on the fleet basis (the hardware's manufacture, amortised per
GSF SCI over its lifetime EL):

    emb_g[i,t]   = embodied_kg x 1000 / EL[h] x h     for an owned node, on or off
                 = powered[i,t] x the same            for a node rented by the hour (`owned: false`)

Sleeping an owned node changes its operational emissions only: its embodied
carbon was emitted when it was built. Adding or removing nodes changes it.

Attribution (SCI, for per-tenant and per-workload figures): a node-slot's
energy and operational emissions go to the replicas on it in proportion to
their CPU requests; its embodied carbon by SCI's M = TE x TiR/EL x RR/ToR,
i.e. each replica's requested share of the node's CPU capacity (RR/ToR) for
the slot (TiR). What no replica reserved goes to `(unallocated)`: idle
capacity of powered nodes, and the whole share of sleeping owned nodes
(reserved by no one, still owned). So the rows add up to the fleet total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from edgeplace.policies.power import energy_kwh, market_based_split, node_power_w, onsite_supply_split
from edgeplace.topology.constraints import ConstraintState
from edgeplace.topology.placement import Placement
from edgeplace.topology.scheduling_spec import PODS_RESOURCE
from edgeplace.topology.scenario import CPU, Scenario

if TYPE_CHECKING:  # pandas only for the tables: planning never imports it (about 65 MiB resident)
    import pandas as pd

UNALLOCATED = "(unallocated)"
#: Scope 2 bases: the Evaluation array of each, and how a table names it.
CARBON_BASES = ("location", "market")


class ViolationKind(str, Enum):
    capacity = "capacity"
    sla = "sla"
    isolation = "isolation"
    selector = "selector"
    spread = "spread"
    schedule = "schedule"
    quota = "quota"
    power = "power"
    # Kubernetes scheduling constraints (edgeplace.topology.constraints), as kube-scheduler filters.
    node_affinity = "node_affinity"
    taint = "taint"
    pod_affinity = "pod_affinity"
    pod_anti_affinity = "pod_anti_affinity"
    topology_spread = "topology_spread"
    max_pods = "max_pods"


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
    the last being `(unallocated)`), workload (W+1, the same) and slot (T)."""

    scenario: Scenario
    powered: np.ndarray  # N x T bool
    utilisation: np.ndarray  # N x T, CPU [0..]
    it_power_w: np.ndarray  # N x T
    energy_kwh: np.ndarray  # N x T, facility (with PUE)
    renewable_kwh: np.ndarray  # N x T, on-site renewable energy used (direct and through the battery)
    from_battery_kwh: np.ndarray  # N x T, of renewable_kwh: the part the battery delivered
    grid_kwh: np.ndarray  # N x T
    matched_kwh: np.ndarray  # N x T, of grid_kwh: matched hour by hour by contracted supply
    operational_g: np.ndarray  # N x T, location-based
    operational_market_g: np.ndarray  # N x T, market-based
    embodied_g: np.ndarray  # N x T, fleet basis
    #: What the SCI attribution is made of, per placed replica-slot (see `Attribution`).
    attribution: "Attribution"
    violations: list[Violation] = field(default_factory=list)
    placement: Placement | None = None  # the placement evaluated

    # -- attribution (SCI), computed when read: (W+1) x T arrays are large over a year of jobs --
    @cached_property
    def _per_tenant(self) -> dict[str, np.ndarray]:
        return self.attribution.split(self, self.scenario.workload_tenant, len(self.scenario.tenant_ids))

    @cached_property
    def _per_workload(self) -> dict[str, np.ndarray]:
        return self.attribution.split(self, None, self.scenario.n_workloads)

    @property
    def tenant_energy_kwh(self) -> np.ndarray:
        """(M+1) x T; the last row the unattributed rest (so columns add up)."""
        return self._per_tenant["energy_kwh"]

    @property
    def tenant_operational_g(self) -> np.ndarray:
        """(M+1) x T, location-based."""
        return self._per_tenant["operational_g"]

    @property
    def tenant_operational_market_g(self) -> np.ndarray:
        """(M+1) x T, market-based."""
        return self._per_tenant["operational_market_g"]

    @property
    def tenant_embodied_g(self) -> np.ndarray:
        """(M+1) x T, SCI attribution by share of CPU capacity."""
        return self._per_tenant["embodied_g"]

    @property
    def workload_energy_kwh(self) -> np.ndarray:
        """(W+1) x T; the last row the unattributed rest."""
        return self._per_workload["energy_kwh"]

    @property
    def workload_operational_g(self) -> np.ndarray:
        return self._per_workload["operational_g"]

    @property
    def workload_operational_market_g(self) -> np.ndarray:
        return self._per_workload["operational_market_g"]

    @property
    def workload_embodied_g(self) -> np.ndarray:
        return self._per_workload["embodied_g"]

    # -- totals ------------------------------------------------------------
    @cached_property
    def totals(self) -> dict[str, float]:
        """Headline figures. `operational_emissions_g` is location-based,
        `embodied_emissions_g` the fleet basis; `emissions_g` their sum."""
        op, emb = float(self.operational_g.sum()), float(self.embodied_g.sum())
        energy = float(self.energy_kwh.sum())
        cfe = float(self.cfe_kwh.sum())
        active = self.powered.sum(axis=0)
        hours = self.scenario.n_slots * self.scenario.slot_hours
        return {
            "energy_kwh": energy,
            # Facility power (PUE applied) averaged over the horizon: the kWh as a steady draw.
            "mean_power_w": energy * 1000.0 / hours if hours > 0 else 0.0,
            "renewable_kwh": float(self.renewable_kwh.sum()),
            "grid_kwh": float(self.grid_kwh.sum()),
            "contracted_matched_kwh": float(self.matched_kwh.sum()),
            "cfe_kwh": cfe,
            "cfe_score_pct": cfe / energy * 100 if energy > 0 else float("nan"),
            "operational_emissions_g": op,
            "operational_market_emissions_g": float(self.operational_market_g.sum()),
            "embodied_emissions_g": emb,
            "embodied_owned_g": float(self.embodied_g[self.scenario.node_owned].sum()),
            "embodied_attributed_g": float(self.tenant_embodied_g[:-1].sum()),
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
        """Location-based operational plus fleet embodied emissions [gCO2e]."""
        return self.totals["emissions_g"]

    @property
    def cfe_kwh(self) -> np.ndarray:
        """N x T carbon-free energy: on-site renewables plus hourly matched contracted supply [kWh]."""
        return self.renewable_kwh + self.matched_kwh

    def operational(self, basis: str) -> np.ndarray:
        """N x T operational emissions on a Scope 2 basis (location or market) [gCO2e]."""
        if basis not in CARBON_BASES:
            raise ValueError(f"carbon basis must be one of {', '.join(CARBON_BASES)} (got {basis!r})")
        return self.operational_g if basis == "location" else self.operational_market_g

    def emissions_on(self, basis: str) -> float:
        """Operational emissions on `basis` plus fleet embodied emissions [gCO2e]."""
        return float(self.operational(basis).sum()) + self.totals["embodied_emissions_g"]

    def decision_g(self, basis: str) -> float:
        """The emissions a placement can change [gCO2e]: operational on `basis`
        plus the embodied carbon of rented nodes (owned nodes' embodied carbon is
        the same whatever the plan). What solvers minimise and gaps refer to."""
        return self.emissions_on(basis) - self.totals["embodied_owned_g"]

    # -- tables ------------------------------------------------------------
    def per_node(self) -> pd.DataFrame:
        sc = self.scenario
        import pandas as pd

        return pd.DataFrame({
            "node": sc.node_ids,
            "site": [sc.site_ids[s] for s in sc.node_site],
            "powered_slots": self.powered.sum(axis=1),
            "mean_utilisation": self.utilisation.mean(axis=1),
            "energy_kwh": self.energy_kwh.sum(axis=1),
            "renewable_kwh": self.renewable_kwh.sum(axis=1),
            "grid_kwh": self.grid_kwh.sum(axis=1),
            "cfe_kwh": self.cfe_kwh.sum(axis=1),
            "operational_emissions_g": self.operational_g.sum(axis=1),
            "operational_market_emissions_g": self.operational_market_g.sum(axis=1),
            "embodied_emissions_g": self.embodied_g.sum(axis=1),
        })

    def per_site(self) -> pd.DataFrame:
        """Per site; `cfe_score_pct` is the hourly matched carbon-free share of the site's
        energy (sum over slots of carbon-free energy / sum of energy)."""
        sc = self.scenario
        df = self.per_node().drop(columns=["node"]).groupby("site", sort=False).agg(
            nodes=("powered_slots", "size"), powered_node_slots=("powered_slots", "sum"),
            energy_kwh=("energy_kwh", "sum"), renewable_kwh=("renewable_kwh", "sum"),
            grid_kwh=("grid_kwh", "sum"), cfe_kwh=("cfe_kwh", "sum"),
            operational_emissions_g=("operational_emissions_g", "sum"),
            operational_market_emissions_g=("operational_market_emissions_g", "sum"),
            embodied_emissions_g=("embodied_emissions_g", "sum"))
        df.insert(0, "tier", [sc.spec.sites[sc.index_of("site", s)].tier.value for s in df.index])
        with np.errstate(invalid="ignore", divide="ignore"):
            df["cfe_score_pct"] = np.where(df["energy_kwh"] > 0, df["cfe_kwh"] / df["energy_kwh"] * 100, np.nan)
        return df.reset_index()

    def site_cfe_pct(self) -> np.ndarray:
        """S x T hourly carbon-free energy score per site [%] (NaN where the site draws nothing)."""
        sc = self.scenario
        energy, cfe = np.zeros((sc.n_sites, sc.n_slots)), np.zeros((sc.n_sites, sc.n_slots))
        np.add.at(energy, sc.node_site, self.energy_kwh)
        np.add.at(cfe, sc.node_site, self.cfe_kwh)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(energy > 0, cfe / energy * 100, np.nan)

    def per_tenant(self) -> pd.DataFrame:
        """Per tenant (SCI attribution), the last row `(unallocated)`; rows add up to the totals."""
        return self._attributed("tenant", [*self.scenario.tenant_ids, UNALLOCATED], "tenant")

    def per_workload(self) -> pd.DataFrame:
        """Per workload (SCI attribution), the last row `(unallocated)`; rows add up to the totals."""
        sc = self.scenario
        frame = self._attributed("workload", [*sc.workload_ids, UNALLOCATED], "workload")
        frame.insert(1, "tenant", [sc.tenant_ids[m] for m in sc.workload_tenant] + [""])
        return frame

    def _attributed(self, prefix: str, names: list[str], label: str) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({
            label: names,
            "energy_kwh": getattr(self, f"{prefix}_energy_kwh").sum(axis=1),
            "operational_emissions_g": getattr(self, f"{prefix}_operational_g").sum(axis=1),
            "operational_market_emissions_g": getattr(self, f"{prefix}_operational_market_g").sum(axis=1),
            "embodied_sci_emissions_g": getattr(self, f"{prefix}_embodied_g").sum(axis=1),
        })

    def per_slot(self) -> pd.DataFrame:
        sc = self.scenario
        import pandas as pd

        return pd.DataFrame({
            "slot": np.arange(sc.n_slots),
            "start": [sc.slot_time(t).isoformat() for t in range(sc.n_slots)],
            "active_nodes": self.powered.sum(axis=0),
            "energy_kwh": self.energy_kwh.sum(axis=0),
            "renewable_kwh": self.renewable_kwh.sum(axis=0),
            "grid_kwh": self.grid_kwh.sum(axis=0),
            "cfe_kwh": self.cfe_kwh.sum(axis=0),
            "operational_emissions_g": self.operational_g.sum(axis=0),
            "operational_market_emissions_g": self.operational_market_g.sum(axis=0),
            "embodied_emissions_g": self.embodied_g.sum(axis=0),
        })


def evaluate(scenario: Scenario, placement: Placement) -> Evaluation:
    """Energy, emissions and every rule check of `placement` on `scenario`."""
    sc = scenario
    N, T = sc.n_nodes, sc.n_slots
    if placement.shape != (sc.n_replicas, T):
        raise ValueError(f"placement has shape {placement.shape}, scenario needs {(sc.n_replicas, T)} (replicas x slots)")
    r_idx, t_idx, node = placement.cells()
    if len(node) and node.max() >= N:
        # A node index past the end would fall off the per-node sums silently.
        raise ValueError(f"placement names node indices up to {int(node.max())}; valid are -1..{N - 1}")
    if placement.powered is not None and np.shape(placement.powered) != (N, T):
        # A (1, T) array would broadcast silently over every node.
        raise ValueError(f"powered has shape {np.shape(placement.powered)}, scenario needs {(N, T)} (nodes x slots)")
    rep_w = sc.replica_workload
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

    # Energy: IT power -> facility energy -> renewables/battery/grid.
    it_w = np.where(powered, node_power_w(sc.node_power_curve_w, utilisation), 0.0)
    node_kwh = energy_kwh(it_w * sc.node_pue[:, None], sc.slot_hours)
    site_kwh = _per_site(sc, node_kwh)
    supply_kwh = energy_kwh(sc.site_renewable_kw * 1000.0, sc.slot_hours)
    site_ren, site_grid = onsite_supply_split(site_kwh, supply_kwh, sc.site_battery_kwh)
    site_direct = np.minimum(site_kwh, supply_kwh)  # the rest of site_ren came through the battery

    # Scope 2: location-based, and market-based after contractual instruments.
    market_intensity = np.where(np.isnan(sc.region_residual_g_per_kwh)[:, None], sc.region_intensity_g_per_kwh,
                                np.nan_to_num(sc.region_residual_g_per_kwh)[:, None])[sc.site_region]
    site_matched, site_market_g = market_based_split(
        site_grid, energy_kwh(sc.site_contracted_kw * 1000.0, sc.slot_hours), sc.site_renewable_share, market_intensity)

    # Back to nodes, pro rata within the site.
    def share_of(site_part: np.ndarray, site_whole: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(site_whole > 0, site_part / site_whole, 0.0)[sc.node_site]

    node_grid = node_kwh * share_of(site_grid, site_kwh)
    node_ren = node_kwh - node_grid
    node_battery = node_kwh * share_of(site_ren - site_direct, site_kwh)
    node_matched = node_grid * share_of(site_matched, site_grid)
    op_g = node_grid * sc.region_intensity_g_per_kwh[sc.node_region]
    market_g = node_grid * share_of(site_market_g, site_grid)
    emb_g = np.where(sc.node_owned[:, None], True, powered) * (sc.node_embodied_g_per_h * sc.slot_hours)[:, None]

    # Attribution to replicas (SCI): energy and operational carbon by share of the
    # node-slot's CPU requests; embodied by share of the node's CPU capacity.
    req_total = per_cell(cpu_req)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_of_use = np.where(req_total[cell] > 0, cpu_req / req_total[cell], 0.0)
    capacity = sc.node_capacity[node, CPU].astype(float)
    share_of_capacity = cpu_req / capacity * np.minimum(1.0, capacity / np.maximum(req_total[cell], 1e-12))

    result = Evaluation(
        scenario=sc, powered=powered, utilisation=utilisation, it_power_w=it_w, energy_kwh=node_kwh,
        renewable_kwh=node_ren, from_battery_kwh=node_battery, grid_kwh=node_grid, matched_kwh=node_matched,
        operational_g=op_g, operational_market_g=market_g, embodied_g=emb_g,
        attribution=Attribution(cell, w_of, share_of_use, share_of_capacity), placement=placement,
    )
    result.violations = _violations(sc, placement, powered, r_idx, t_idx, node, w_of, cell)
    return result


def runs_long_enough(slots: np.ndarray, min_run: int, done: int = 0) -> bool:
    """Every maximal run of consecutive `slots` (sorted) lasts at least `min_run` slots. A job
    whose run was in progress at the horizon start with `done` slots behind it continues that
    run in slot 0: the run then needs only min_run - done more, and must be there at all when
    done < min_run."""
    if not len(slots):
        return done == 0 or done >= min_run
    breaks = np.flatnonzero(np.diff(slots) > 1)
    firsts = np.r_[slots[0], slots[breaks + 1]]
    lasts = np.r_[slots[breaks], slots[-1]]
    lengths = lasts - firsts + 1
    need = np.full(len(lengths), min_run)
    if done:
        if firsts[0] == 0:
            need[0] = max(min_run - done, 1)
        elif done < min_run:
            return False  # the run in progress stopped before it was long enough
    return bool((lengths >= need).all())


def _per_site(sc: Scenario, node_values: np.ndarray) -> np.ndarray:
    """S x T sums of an N x T array over each site's nodes."""
    out = np.zeros((sc.n_sites, node_values.shape[1]))
    np.add.at(out, sc.node_site, node_values)
    return out


@dataclass(frozen=True)
class Attribution:
    """Per placed replica-slot: its node-slot (`cell`, node x T + slot), its workload, and its
    shares of the node-slot's energy and operational carbon (`share_of_use`, by CPU request)
    and of the node's embodied carbon (`share_of_capacity`, by CPU capacity)."""

    cell: np.ndarray
    workload: np.ndarray
    share_of_use: np.ndarray
    share_of_capacity: np.ndarray

    def split(self, ev: "Evaluation", group_of_workload: np.ndarray | None, size: int) -> dict[str, np.ndarray]:
        """(size+1) x T per figure, by group (`group_of_workload[w]`, or the workload itself)."""
        group = self.workload if group_of_workload is None else group_of_workload[self.workload]
        return {name: _attribute(values, self.cell, group, size, share)
                for name, values, share in (("energy_kwh", ev.energy_kwh, self.share_of_use),
                                            ("operational_g", ev.operational_g, self.share_of_use),
                                            ("operational_market_g", ev.operational_market_g, self.share_of_use),
                                            ("embodied_g", ev.embodied_g, self.share_of_capacity))}


def _attribute(values: np.ndarray, cell: np.ndarray, group: np.ndarray, size: int, share: np.ndarray) -> np.ndarray:
    """(size+1) x T: `values` (N x T) split over the replica-slots in `cell` by `share`,
    summed per `group`; the last row is what no replica took (so columns add up)."""
    T = values.shape[1]
    t = cell % T
    per_group = np.bincount(group * T + t, weights=values.reshape(-1)[cell] * share,
                            minlength=size * T)[: size * T].reshape(size, T)
    rest = values.sum(axis=0) - per_group.sum(axis=0)
    return np.vstack([per_group, rest[None, :]])


def node_requests(sc: Scenario, cell: np.ndarray, w_of: np.ndarray, k: int) -> np.ndarray:
    """N x T: the requests of resource `k` placed on each node in each slot, from the running
    replica-slots' flat node-slot index `cell` (node x T + slot) and workload `w_of`."""
    N, T = sc.n_nodes, sc.n_slots
    return np.bincount(cell, weights=sc.workload_requests[w_of, k].astype(float), minlength=N * T)[: N * T].reshape(N, T)


def placed_requests(sc: Scenario, placement: Placement) -> np.ndarray:
    """N x T x K: the requests placed on each node in each slot, per resource (`node_requests`
    for every resource: the capacity check's own sum)."""
    replica, slot, node = placement.cells()
    cell = node * sc.n_slots + slot
    w_of = sc.replica_workload[replica]
    return np.stack([node_requests(sc, cell, w_of, k) for k in range(len(sc.resources))], axis=2)


def _slots(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(t) for t in np.flatnonzero(mask))


def _violations(sc: Scenario, placement: Placement, powered, r_idx, t_idx, node, w_of, cell) -> list[Violation]:
    N, T, M = sc.n_nodes, sc.n_slots, len(sc.tenant_ids)
    out: list[Violation] = []

    # Capacity: summed requests per node, slot and resource.
    for k, res in enumerate(sc.resources):
        over = node_requests(sc, cell, w_of, k) - sc.node_capacity[:, k, None]
        for i in np.flatnonzero((over > 0).any(axis=1)):
            worst = float(over[i].max())
            if res == PODS_RESOURCE:
                out.append(Violation(ViolationKind.max_pods, sc.node_ids[i], _slots(over[i] > 0), worst, "pods",
                                     f"node {sc.node_ids[i]} holds up to {worst:g} pod(s) more than its limit of "
                                     f"{int(sc.node_capacity[i, k])}"))
                continue
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

    out += _scheduling_violations(sc, t_idx, node, w_of)

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
        rows = placement.rows(r0, r0 + n)
        site_rows = np.where(rows >= 0, sc.node_site[np.maximum(rows, 0)], -1)
        distinct = np.array([len(set(site_rows[:, t][site_rows[:, t] >= 0])) for t in range(T)])
        short = (distinct < sc.workload_min_sites[w]) & (rows >= 0).any(axis=0)
        if short.any():
            out.append(Violation(ViolationKind.spread, sc.workload_ids[w], _slots(short), float(sc.workload_min_sites[w] - distinct[short].min()),
                                 "sites", f"{sc.workload_ids[w]} runs on fewer than {sc.workload_min_sites[w]} sites"))

    # Schedule: services run in every slot; deferrable jobs in one block inside their window.
    # A service runs in every slot (`Scenario`): counted from the running cells, as an R x T mask
    # of a year of thousands of jobs would be 84 MiB.
    rep_w = sc.replica_workload
    wrong_fixed = ~sc.workload_deferrable[rep_w] & (np.bincount(r_idx, minlength=len(rep_w)) < T)
    for w in np.unique(rep_w[wrong_fixed]):
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        slots = (placement.rows(r0, r0 + n)[wrong_fixed[r0:r0 + n]] < 0).any(axis=0)
        out.append(Violation(ViolationKind.schedule, sc.workload_ids[w], _slots(slots), float(slots.sum()), "slots",
                             f"{sc.workload_ids[w]} is not running in every slot it must (unplaced or stopped)"))
    for w in np.flatnonzero(sc.workload_deferrable):
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        runs = placement.rows(r0, r0 + n) >= 0
        any_run = runs.any(axis=0)
        slots = np.flatnonzero(any_run)
        d = int(sc.workload_duration_slots[w])
        together = slots.size == d and (runs == any_run[None, :]).all()
        if sc.workload_interruptible[w]:
            m, end = int(sc.workload_min_run_slots[w]), int(sc.workload_window_end[w])
            ok = (together and slots[0] >= sc.workload_earliest_slot[w] and slots[-1] < end
                  and runs_long_enough(slots, m, int(sc.workload_run_done_slots[w])))
            rule = (f"must run {d} slot(s) with all replicas, in runs of at least {m} slot(s), "
                    f"within slots {sc.workload_earliest_slot[w]}..{end - 1}")
        else:
            ok = (together and slots[0] >= sc.workload_earliest_slot[w] and slots[0] <= sc.workload_latest_start_slot[w]
                  and slots[-1] - slots[0] == d - 1)
            rule = (f"must run {d} consecutive slot(s) with all replicas, starting in slots "
                    f"{sc.workload_earliest_slot[w]}..{sc.workload_latest_start_slot[w]}")
        if not ok:
            out.append(Violation(ViolationKind.schedule, sc.workload_ids[w], tuple(slots.tolist()), float(abs(slots.size - d)), "slots",
                                 f"{sc.workload_ids[w]} {rule}"))

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


_STATIC_RULE = {"node_affinity": "does not match its required node affinity",
                "taint": "has a NoSchedule or NoExecute taint it does not tolerate (long enough)",
                "pod_affinity": "lacks a topology label its pod affinity names",
                "topology_spread": "lacks a topology label its topology spread constraint names"}


def _scheduling_violations(sc: Scenario, t_idx, node, w_of) -> list[Violation]:
    """Kubernetes scheduling constraints: static node rules per replica, and the placement-dependent
    rules (pod affinity, anti-affinity, topology spread) as a state every slot must be in."""
    c = sc.constraints
    out: list[Violation] = []
    for rule in c.masks:
        row_of = np.full(sc.n_workloads, -1)
        row_of[rule.rows] = np.arange(len(rule.rows))
        r = row_of[w_of]
        bad = r >= 0
        bad[bad] = ~rule.mask[r[bad], node[bad]]
        for w in np.unique(w_of[bad]):
            sel = bad & (w_of == w)
            nodes = sorted({sc.node_ids[i] for i in node[sel]})
            out.append(Violation(ViolationKind(rule.kind), sc.workload_ids[w], tuple(sorted(set(t_idx[sel].tolist()))),
                                 float(sel.sum()), "replica-slots",
                                 f"{sc.workload_ids[w]} runs on {', '.join(nodes[:5])}, which {_STATIC_RULE[rule.kind]}"))
    if not c.dynamic:
        return out
    state = ConstraintState(c, sc.n_workloads, np.ones(sc.n_workloads, dtype=bool))
    found: dict[tuple[str, int], tuple[list[int], str]] = {}
    for t in range(sc.n_slots):
        now = t_idx == t
        state.load(w_of[now], node[now])
        for b in state.broken():
            slots, _ = found.setdefault((b.kind, b.workload), ([], b.message))
            slots.append(t)
    for (kind, w), (slots, message) in found.items():
        out.append(Violation(ViolationKind(kind), sc.workload_ids[w], tuple(slots), float(len(slots)), "slots",
                             f"{sc.workload_ids[w]} breaks its {kind.replace('_', ' ')}: {message}"))
    return out
