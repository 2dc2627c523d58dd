"""The bundled example scenarios: every file loads, and metro-de is what
examples/README.md says it is, with room for a carbon-aware optimizer.

Two reference placements are built here with plain greedy loops (no solver):
- spreading, like kube-scheduler's default: each replica, in file order, on
  the eligible node with the lowest share of CPU already requested; every
  node powered all day; batch jobs at their earliest slot;
- consolidation: tightest workloads first, each replica on an already powered
  node if one fits, else on the node with the lowest idle-plus-embodied cost
  per core; idle nodes powered down.
Both respect capacity per slot, never_with and spread, so both must evaluate
with zero violations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import Placement, Scenario, load_scenario
from edgeplace.topology.scenario import CPU

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))
METRO_DE = EXAMPLES_DIR / "metro-de.yaml"


@pytest.fixture(scope="module")
def metro_de() -> Scenario:
    return load_scenario(METRO_DE)


def test_there_are_examples():
    assert METRO_DE in EXAMPLE_FILES


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_loads_without_problems(path):
    sc = load_scenario(path)  # raises InputError listing every problem
    assert sc.n_workloads > 0 and sc.n_nodes > 0
    assert sc.workload_node_eligible.any(axis=1).all()


# ---------------------------------------------------------------------------
# metro-de: the shape promised in examples/README.md


def test_metro_de_sizes(metro_de):
    assert metro_de.n_slots == 24
    assert metro_de.slot_hours == 1.0
    assert metro_de.slot_start.isoformat() == "2026-06-21T00:00:00+00:00"
    assert 25 <= metro_de.n_nodes <= 40
    assert 30 <= metro_de.n_workloads <= 60
    assert set(metro_de.workload_replicas.tolist()) <= {1, 2, 3, 4}


def test_metro_de_tiers_cover_the_continuum(metro_de):
    tiers = {s.tier.value for s in metro_de.spec.sites}
    assert {"on-prem", "access", "regional", "cloud"} <= tiers
    assert tiers & {"metro", "aggregation"}


def test_metro_de_has_grid_regions_of_different_character(metro_de):
    mean = dict(zip(metro_de.region_ids, metro_de.region_intensity_g_per_kwh.mean(axis=1)))
    cloud_regions = {metro_de.region_ids[metro_de.site_region[s]]
                     for s, site in enumerate(metro_de.spec.sites) if site.tier.value == "cloud"}
    assert len(cloud_regions) >= 2
    assert max(mean[r] for r in cloud_regions) > 3 * min(mean[r] for r in cloud_regions)
    # DE is the 2020 average (313 g/kWh, shared/REFERENCE.md) with a midday solar dip.
    de = metro_de.region_intensity_g_per_kwh[metro_de.index_of("region", "DE")]
    assert de.mean() == pytest.approx(313, abs=1)
    assert 100 <= de.min() and de.max() <= 590
    assert de[10:15].mean() < de[0:4].mean() and de[10:15].mean() < de[18:22].mean()


def test_metro_de_tenants_and_isolation(metro_de):
    assert len(metro_de.tenant_ids) >= 3
    dedicated = np.flatnonzero(metro_de.tenant_dedicated)
    assert dedicated.size == 1
    assert (metro_de.node_dedicated_tenant == dedicated[0]).sum() >= 2
    assert metro_de.tenant_conflicts.any()


def test_metro_de_sla_classes_and_deferrable_jobs(metro_de):
    sla = metro_de.workload_sla_ms
    assert ((sla >= 5) & (sla <= 20)).sum() >= 5
    assert ((sla >= 50) & (sla <= 100)).sum() >= 5
    deferrable = metro_de.workload_deferrable
    assert deferrable.sum() >= 5
    window = metro_de.workload_latest_start_slot - metro_de.workload_earliest_slot
    assert (window[deferrable] >= 6).all()  # several hours of freedom each
    assert set(metro_de.workload_duration_slots[deferrable].tolist()) <= {1, 2, 3, 4}
    assert (metro_de.workload_min_sites[~deferrable] >= 2).sum() >= 5


def test_metro_de_hardware_mix(metro_de):
    curve = metro_de.node_power_curve_w
    idle_ratio = curve[:, 0] / curve[:, -1]
    edge = np.isin(metro_de.node_site, [i for i, s in enumerate(metro_de.spec.sites) if s.tier.value in ("on-prem", "access")])
    assert ((idle_ratio >= 0.4) & (idle_ratio <= 0.6))[edge].mean() > 0.5
    gpu = metro_de.resources.index("gpu")
    assert (metro_de.node_capacity[:, gpu] > 0).sum() >= 3
    assert (~metro_de.node_can_power_down).sum() >= 2
    assert any(n.power.points_w is not None for n in metro_de.spec.nodes)
    background = metro_de.node_background_util[edge]
    assert (background >= 0.03).all() and (background <= 0.10).all()


def test_metro_de_pv_yields_74_kwh_per_kwp(metro_de):
    # shared/REFERENCE.md "Renewable supply": 7.4 kWh per kWp on 21 June; 1 h slots -> kW = kWh.
    kwp = np.array([s.pv_kwp for s in metro_de.spec.sites])
    with_pv = kwp > 0
    assert with_pv.sum() >= 2 and (metro_de.site_battery_kwh[with_pv] > 0).any()
    assert metro_de.site_renewable_kw[with_pv].sum(axis=1) == pytest.approx(7.4 * kwp[with_pv], rel=0.01)
    assert (metro_de.site_renewable_kw[~with_pv] == 0).all()
    assert metro_de.site_renewable_kw[with_pv][:, [0, 1, 2, 21, 22, 23]].sum() == 0  # night


def test_readme_site_table_matches_the_file(metro_de):
    rows = re.findall(r"^\| ([a-z0-9-]+) \| ([a-z-]+) \| ([A-Z]{2}) \| ([0-9.]+) \|", (EXAMPLES_DIR / "README.md").read_text(),
                      flags=re.MULTILINE)
    table = {site: (tier, region, float(pue)) for site, tier, region, pue in rows}
    in_file = {s.id: (s.tier.value, s.region, s.pue) for s in metro_de.spec.sites}
    assert table == in_file


# ---------------------------------------------------------------------------
# Reference placements


def greedy_placement(sc: Scenario, order: np.ndarray, pick: Callable[[np.ndarray, np.ndarray, np.ndarray], int]) -> np.ndarray:
    """R x T assignment: replicas of each workload in `order`, batch jobs at their earliest slot.

    `pick(candidates, cpu_share, powered)` chooses a node among the candidates
    (eligible, with room in every run slot, no never_with tenant, spread kept);
    `cpu_share` is each node's highest requested CPU share over the run slots,
    `powered` whether it hosts anything yet or is always on.
    """
    N, T = sc.n_nodes, sc.n_slots
    load = np.zeros((N, T, len(sc.resources)), dtype=np.int64)
    tenants = np.zeros((N, T, len(sc.tenant_ids)), dtype=bool)
    assign = np.full((sc.n_replicas, T), -1)
    powered = ~sc.node_can_power_down
    for w in order:
        run = np.zeros(T, dtype=bool)
        first = int(sc.workload_earliest_slot[w])
        run[first:first + int(sc.workload_duration_slots[w])] = True
        req, tenant = sc.workload_requests[w], sc.workload_tenant[w]
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        sites: list[int] = []
        for k in range(n):
            ok = sc.workload_node_eligible[w] & (load[:, run] + req <= sc.node_capacity[:, None, :]).all(axis=(1, 2))
            ok &= ~tenants[:, run][:, :, sc.tenant_conflicts[tenant]].any(axis=(1, 2))
            if sc.workload_min_sites[w] - len(set(sites)) >= n - k:  # the rest must open new sites
                ok &= ~np.isin(sc.node_site, sites)
            candidates = np.flatnonzero(ok)
            assert candidates.size, f"no node left for replica {k} of {sc.workload_ids[w]}"
            share = load[candidates][:, run, CPU].max(axis=1) / sc.node_capacity[candidates, CPU]
            i = candidates[pick(candidates, share, powered[candidates])]
            load[i, run] += req
            tenants[i, run, tenant] = True
            assign[r0 + k, run] = i
            powered[i] = True
            sites.append(int(sc.node_site[i]))
    return assign


def spread_placement(sc: Scenario) -> Placement:
    """kube-scheduler-like spreading: file order, least requested CPU share, all nodes on."""
    assign = greedy_placement(sc, np.arange(sc.n_workloads), lambda cand, share, on: int(np.argmin(share)))
    return Placement.from_assign(assign, np.ones((sc.n_nodes, sc.n_slots), dtype=bool))


def consolidated_placement(sc: Scenario) -> Placement:
    """Tightest first; a powered node if one fits, else the cheapest node to keep on per core."""
    # Keeping a node on for an hour [g]: idle power x PUE x mean intensity (PV sites
    # discounted) + embodied; per core, so big efficient nodes come first.
    intensity = sc.region_intensity_g_per_kwh.mean(axis=1)[sc.node_region]
    has_pv = sc.site_renewable_kw.sum(axis=1)[sc.node_site] > 0
    idle_g_per_h = sc.node_power_curve_w[:, 0] * sc.node_pue * intensity * np.where(has_pv, 0.3, 1.0) / 1000
    cost = (idle_g_per_h + sc.node_embodied_g_per_h) / sc.node_capacity[:, CPU]
    order = np.lexsort((-sc.workload_requests[:, CPU], sc.workload_node_eligible.sum(axis=1)))
    assign = greedy_placement(sc, order, lambda cand, share, on: int(np.lexsort((cost[cand], ~on))[0]))
    return Placement.from_assign(assign)


def test_first_fit_placements_evaluate_sanely(metro_de):
    spread = evaluate(metro_de, spread_placement(metro_de))
    packed = evaluate(metro_de, consolidated_placement(metro_de))
    for ev in (spread, packed):
        assert ev.violations == []
        totals = ev.totals
        assert totals["energy_kwh"] == pytest.approx(totals["renewable_kwh"] + totals["grid_kwh"])
        assert totals["emissions_g"] > 0
        assert ev.per_site()["operational_emissions_g"].sum() == pytest.approx(totals["operational_emissions_g"])
        assert ev.per_tenant()["energy_kwh"].sum() == pytest.approx(totals["energy_kwh"])
    assert spread.totals["mean_active_nodes"] == metro_de.n_nodes
    assert packed.totals["mean_active_nodes"] < metro_de.n_nodes / 2
    # 38 nodes at ~150 W facility power on average over a day is ~100-200 kWh.
    assert 50 < spread.totals["energy_kwh"] < 300


def test_metro_de_leaves_room_for_carbon_aware_placement(metro_de):
    # The point of the example: consolidation onto green regions and PV beats
    # spreading by well over 30 % of operational carbon with no SLA broken.
    spread = evaluate(metro_de, spread_placement(metro_de))
    packed = evaluate(metro_de, consolidated_placement(metro_de))
    assert packed.violations == [] and spread.violations == []
    assert packed.totals["operational_emissions_g"] < 0.7 * spread.totals["operational_emissions_g"]
    # Embodied carbon (fleet basis) differs only by the rented cloud VMs' powered hours:
    # the owned nodes' share is spent whether they sleep or not.
    rented = ~metro_de.node_owned
    hours = (spread.powered[rented].sum(axis=1) - packed.powered[rented].sum(axis=1)) * metro_de.slot_hours
    d_embodied = spread.totals["embodied_emissions_g"] - packed.totals["embodied_emissions_g"]
    assert d_embodied == pytest.approx(float((hours * metro_de.node_embodied_g_per_h[rented]).sum()), rel=1e-9)
    assert spread.totals["embodied_owned_g"] == pytest.approx(packed.totals["embodied_owned_g"], rel=1e-12)
