"""The arithmetic behind one node-slot, line by line, so anyone can check a figure.

`node_slot_arithmetic(evaluation, node, slot)` reads one node-slot out of an
`edgeplace.policies.evaluate.Evaluation` together with the scenario inputs
that made it (load, power curve, PUE, the site's supply and battery, the
region's intensity, contracts, embodied carbon) and `lines()` prints each
step as "inputs = result". Every result is the evaluation's own figure, never
recomputed here: a line shows how the evaluation got it, and summing the
`operational_g` and `embodied_g` of every node-slot gives the evaluation's
totals (tests/test_arithmetic.py does that for the bundled example).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edgeplace.policies.evaluate import Evaluation
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.scenario import CPU


@dataclass(frozen=True)
class Replica:
    workload: str
    tenant: str
    cpu_request_millicores: float
    cpu_usage_fraction: float
    embodied_sci_g: float  # its SCI share of the node-slot's embodied carbon


@dataclass(frozen=True)
class NodeSlotArithmetic:
    """One node-slot's figures, from the evaluation, with the inputs behind them."""

    node: str
    site: str
    region: str
    slot: int
    start: datetime
    slot_hours: float
    powered: bool
    owned: bool
    replicas: tuple[Replica, ...]
    background_util: float
    cpu_capacity_millicores: float
    utilisation: float  # before clipping at 1
    curve_lo_w: float  # power at the decile below the utilisation
    curve_hi_w: float  # and above it
    decile: int
    it_power_w: float
    pue: float
    energy_kwh: float
    site_energy_kwh: float
    site_supply_kwh: float
    site_direct_kwh: float
    site_battery_kwh: float
    site_grid_kwh: float
    grid_kwh: float
    intensity_g_per_kwh: float
    intensity_kind: str
    factor_type: str | None
    operational_g: float
    site_contracted_kwh: float
    matched_kwh: float
    renewable_share: float
    market_factor_g_per_kwh: float
    market_factor_source: str
    operational_market_g: float
    cfe_kwh: float
    embodied_kg: float
    lifetime_years: float
    embodied_g: float

    def lines(self) -> list[str]:
        """The arithmetic as text, one step a line (grams to 4 decimals: the lines add up)."""
        h = self.slot_hours
        out = [f"node {self.node} at site {self.site} (region {self.region}), slot {self.slot} "
               f"({self.start:%Y-%m-%d %H:%M} UTC, {h:g} h), {'powered' if self.powered else 'asleep'}"]
        used = sum(r.cpu_request_millicores * r.cpu_usage_fraction for r in self.replicas)
        terms = " + ".join(f"{r.workload} {r.cpu_request_millicores:g} m x {r.cpu_usage_fraction:g}"
                           for r in self.replicas) or "no replicas"
        out.append(f"  load: background {self.background_util:.4f} + ({terms} = {used:g} m) / "
                   f"{self.cpu_capacity_millicores:g} m = u {self.utilisation:.4f}")
        if self.powered:
            frac = min(max(self.utilisation, 0.0), 1.0) * 10 - self.decile
            out.append(f"  power from the curve: P({self.decile * 10} %) {self.curve_lo_w:.2f} W + {frac:.4f} x "
                       f"(P({self.decile * 10 + 10} %) {self.curve_hi_w:.2f} W - {self.curve_lo_w:.2f} W) = "
                       f"{self.it_power_w:.4f} W")
        else:
            out.append("  power: asleep, 0 W")
        out.append(f"  facility energy: {self.it_power_w:.4f} W x PUE {self.pue:g} x {h:g} h / 1000 = "
                   f"{self.energy_kwh:.6f} kWh")
        out.append(f"  site {self.site}: demand {self.site_energy_kwh:.6f} kWh; on-site renewables "
                   f"{self.site_supply_kwh:.6f} kWh -> {self.site_direct_kwh:.6f} kWh used directly, battery "
                   f"{self.site_battery_kwh:.6f} kWh, grid {self.site_grid_kwh:.6f} kWh")
        share = self.site_grid_kwh / self.site_energy_kwh if self.site_energy_kwh > 0 else 0.0
        out.append(f"  grid energy: {self.energy_kwh:.6f} kWh x {self.site_grid_kwh:.6f} / {self.site_energy_kwh:.6f} "
                   f"(the site's grid share {share:.4f}) = {self.grid_kwh:.6f} kWh")
        factor = self.factor_type or "factor type not stated"
        out.append(f"  operational (location-based): {self.grid_kwh:.6f} kWh x {self.intensity_g_per_kwh:g} g/kWh "
                   f"({self.region}, {self.intensity_kind}, {factor}) = {self.operational_g:.4f} g")
        uncovered = self.grid_kwh - self.matched_kwh
        out.append(f"  operational (market-based): ({self.grid_kwh:.6f} - {self.matched_kwh:.6f} kWh matched by "
                   f"contracted supply) x (1 - certificates {self.renewable_share:g}) x "
                   f"{self.market_factor_g_per_kwh:g} g/kWh ({self.market_factor_source}) = "
                   f"{uncovered * (1 - self.renewable_share) * self.market_factor_g_per_kwh:.4f} g "
                   f"(evaluated {self.operational_market_g:.4f} g)")
        out.append(f"  carbon-free energy: {self.energy_kwh - self.grid_kwh:.6f} kWh on-site + {self.matched_kwh:.6f} "
                   f"kWh matched = {self.cfe_kwh:.6f} kWh")
        on = "owned: on or off" if self.owned else ("rented: powered" if self.powered else "rented: asleep, nothing")
        hours = h if (self.owned or self.powered) else 0.0
        out.append(f"  embodied (fleet): {self.embodied_kg:g} kg x 1000 / ({self.lifetime_years:g} y x 8760 h) x "
                   f"{hours:g} h ({on}) = {self.embodied_g:.4f} g")
        if self.replicas:
            shares = ", ".join(f"{r.workload} ({r.tenant}) {r.embodied_sci_g:.4f} g" for r in self.replicas)
            rest = self.embodied_g - sum(r.embodied_sci_g for r in self.replicas)
            out.append(f"  embodied (SCI share, RR/ToR = request / {self.cpu_capacity_millicores:g} m): {shares}; "
                       f"(unallocated) {rest:.4f} g")
        else:
            out.append(f"  embodied (SCI share): no replica reserves the node; (unallocated) {self.embodied_g:.4f} g")
        out.append(f"  total: {self.operational_g:.4f} g operational (location-based) + {self.embodied_g:.4f} g "
                   f"embodied (fleet) = {self.operational_g + self.embodied_g:.4f} g")
        return out


def parse_node_slot(evaluation: Evaluation, text: str) -> tuple[int, int]:
    """`NODE,SLOT` (slot: an index or the ISO 8601 start of a slot) -> (node index, slot index)."""
    sc = evaluation.scenario
    node_id, sep, slot_text = text.rpartition(",")
    if not sep or not node_id:
        raise InputError("--explain", [Problem(text, "write NODE,SLOT, e.g. metro-1,12 or metro-1,2026-06-21T12:00Z")])
    if node_id not in sc.node_ids:
        known = ", ".join(sc.node_ids[:8]) + (", ..." if sc.n_nodes > 8 else "")
        raise InputError("--explain", [Problem(text, f"unknown node {node_id!r} (known: {known})")])
    slot_text = slot_text.strip()
    if slot_text.isdigit():
        slot = int(slot_text)
    else:
        try:
            when = datetime.fromisoformat(slot_text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError("--explain", [Problem(text, "SLOT is a slot index or an ISO 8601 time with a UTC "
                                                         "offset")]) from None
        if when.tzinfo is None:
            raise InputError("--explain", [Problem(text, "give the time with a UTC offset, e.g. 2026-06-21T12:00Z")])
        slot = int(np.floor((when - sc.slot_start).total_seconds() / 3600 / sc.slot_hours))
    if not 0 <= slot < sc.n_slots:
        raise InputError("--explain", [Problem(text, f"slot {slot_text} is outside the horizon (0..{sc.n_slots - 1})")])
    return sc.index_of("node", node_id), slot


def node_slot_arithmetic(evaluation: Evaluation, node: int, slot: int) -> NodeSlotArithmetic:
    """The figures of node-slot (`node`, `slot`) and the inputs behind them (see the module docstring)."""
    ev, sc = evaluation, evaluation.scenario
    i, t = node, slot
    s, g = int(sc.node_site[i]), int(sc.node_region[i])
    at_site = sc.node_site == s
    site_energy = float(ev.energy_kwh[at_site, t].sum())
    site_grid = float(ev.grid_kwh[at_site, t].sum())
    site_ren = site_energy - site_grid
    site_battery = float(ev.from_battery_kwh[at_site, t].sum())
    supply_kwh = float(sc.site_renewable_kw[s, t]) * sc.slot_hours
    u = float(ev.utilisation[i, t])
    decile = min(int(np.clip(u, 0.0, 1.0) * 10), 9)
    mix = sc.spec.regions[g].residual_mix
    embodied = sc.spec.nodes[i].embodied or sc.spec.sites[s].embodied
    return NodeSlotArithmetic(
        node=sc.node_ids[i], site=sc.site_ids[s], region=sc.region_ids[g], slot=t, start=sc.slot_time(t),
        slot_hours=sc.slot_hours, powered=bool(ev.powered[i, t]), owned=bool(sc.node_owned[i]),
        replicas=_replicas(ev, i, t), background_util=float(sc.node_background_util[i, t]),
        cpu_capacity_millicores=float(sc.node_capacity[i, CPU]), utilisation=u,
        curve_lo_w=float(sc.node_power_curve_w[i, decile]), curve_hi_w=float(sc.node_power_curve_w[i, decile + 1]),
        decile=decile, it_power_w=float(ev.it_power_w[i, t]), pue=float(sc.node_pue[i]),
        energy_kwh=float(ev.energy_kwh[i, t]), site_energy_kwh=site_energy, site_supply_kwh=supply_kwh,
        site_direct_kwh=site_ren - site_battery, site_battery_kwh=site_battery, site_grid_kwh=site_grid,
        grid_kwh=float(ev.grid_kwh[i, t]), intensity_g_per_kwh=float(sc.region_intensity_g_per_kwh[g, t]),
        intensity_kind=sc.intensity_kind, factor_type=sc.factor_type, operational_g=float(ev.operational_g[i, t]),
        site_contracted_kwh=float(sc.site_contracted_kw[s, t]) * sc.slot_hours,
        matched_kwh=float(ev.matched_kwh[i, t]), renewable_share=float(sc.site_renewable_share[s]),
        market_factor_g_per_kwh=float(mix.g_per_kwh if mix else sc.region_intensity_g_per_kwh[g, t]),
        market_factor_source=f"residual mix, {mix.source}" if mix else "no residual mix: the location-based intensity",
        operational_market_g=float(ev.operational_market_g[i, t]), cfe_kwh=float(ev.cfe_kwh[i, t]),
        embodied_kg=float(embodied.per_node_kg), lifetime_years=float(embodied.lifetime_years),
        embodied_g=float(ev.embodied_g[i, t]),
    )


def _replicas(ev: Evaluation, node: int, slot: int) -> tuple[Replica, ...]:
    """The replicas on the node-slot with their SCI share of its embodied carbon
    (request / capacity, scaled down if the requests exceed the capacity)."""
    sc = ev.scenario
    rows = np.flatnonzero(ev.placement.column(slot) == node)
    cap = float(sc.node_capacity[node, CPU])
    req = sc.workload_requests[sc.replica_workload[rows], CPU].astype(float)
    scale = min(1.0, cap / req.sum()) if req.sum() > 0 else 1.0
    out = []
    for r, q in zip(rows, req):
        w = int(sc.replica_workload[r])
        out.append(Replica(sc.workload_ids[w], sc.tenant_ids[sc.workload_tenant[w]], q,
                           float(sc.workload_cpu_usage[w]), float(ev.embodied_g[node, slot]) * q / cap * scale))
    return tuple(out)


__all__ = ["NodeSlotArithmetic", "Replica", "node_slot_arithmetic", "parse_node_slot"]
