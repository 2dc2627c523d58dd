"""edgeplace.topology.generate: seeded synthetic scenarios that always load and can be placed."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import Placement, Scenario, scenario_from_dict
from edgeplace.topology.generate import generate, generate_scenario
from edgeplace.topology.scenario import CPU


def first_fit(sc: Scenario) -> Placement:
    """Tightest workloads first, each replica on the lowest-index node with room in
    every run slot, no never_with tenant and spread kept; batch at the earliest slot."""
    N, T = sc.n_nodes, sc.n_slots
    load = np.zeros((N, T, len(sc.resources)), dtype=np.int64)
    tenants = np.zeros((N, T, len(sc.tenant_ids)), dtype=bool)
    assign = np.full((sc.n_replicas, T), -1)
    for w in np.lexsort((-sc.workload_requests[:, CPU], sc.workload_node_eligible.sum(axis=1))):
        run = np.zeros(T, dtype=bool)
        first = int(sc.workload_earliest_slot[w])
        run[first:first + int(sc.workload_duration_slots[w])] = True
        req, tenant = sc.workload_requests[w], sc.workload_tenant[w]
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        sites: list[int] = []
        for k in range(n):
            ok = sc.workload_node_eligible[w] & (load[:, run] + req <= sc.node_capacity[:, None, :]).all(axis=(1, 2))
            ok &= ~tenants[:, run][:, :, sc.tenant_conflicts[tenant]].any(axis=(1, 2))
            if sc.workload_min_sites[w] - len(set(sites)) >= n - k:
                ok &= ~np.isin(sc.node_site, sites)
            candidates = np.flatnonzero(ok)
            assert candidates.size, f"first fit finds no node for replica {k} of {sc.workload_ids[w]}"
            i = candidates[0]
            load[i, run] += req
            tenants[i, run, tenant] = True
            assign[r0 + k, run] = i
            sites.append(int(sc.node_site[i]))
    return Placement.from_assign(assign)


# ---------------------------------------------------------------------------
# Determinism and sizes


@pytest.mark.parametrize("n_workloads, n_nodes, n_slots", [(0, 6, 24), (40, 12, 24), (300, 60, 48)])
def test_same_seed_gives_the_same_document(n_workloads, n_nodes, n_slots):
    assert generate(n_workloads, n_nodes, n_slots, seed=7) == generate(n_workloads, n_nodes, n_slots, seed=7)


def test_different_seeds_give_different_documents():
    a, b = generate(100, 30, seed=1), generate(100, 30, seed=2)
    assert a["workloads"] != b["workloads"]
    assert a["nodes"] != b["nodes"]
    assert a["signals"] != b["signals"]


@pytest.mark.parametrize("n_workloads, n_nodes, n_slots, n_sites, n_tenants", [
    (10, 6, 1, None, 1),      # the smallest tree (6 sites): on-prem, access, metro, regional, 2 clouds
    (50, 20, 24, 8, 2),
    (120, 40, 96, 12, 3),
    (500, 150, 24, None, 5),  # default sites: about one per 6 nodes -> 25
])
def test_sizes_match_the_arguments(n_workloads, n_nodes, n_slots, n_sites, n_tenants):
    doc = generate(n_workloads, n_nodes, n_slots, n_sites=n_sites, n_tenants=n_tenants, seed=3)
    sc = scenario_from_dict(doc)
    assert sc.n_workloads == n_workloads
    assert sc.n_nodes == n_nodes
    assert sc.n_slots == n_slots
    assert sc.n_sites == (n_sites if n_sites is not None else max(6, round(n_nodes / 6)))
    assert len(sc.tenant_ids) == n_tenants
    assert all(len(sig["values"]) == n_slots for sig in doc["signals"])
    assert np.bincount(sc.node_site, minlength=sc.n_sites).min() >= 1  # every site has a node


# ---------------------------------------------------------------------------
# Always valid, always placeable


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_workloads=st.integers(0, 120), n_nodes=st.integers(6, 60), n_slots=st.integers(1, 48),
       n_tenants=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       deferrable_share=st.floats(0, 0.6), tight_sla_share=st.floats(0, 0.4), load_factor=st.floats(0.1, 0.6),
       slot_minutes=st.sampled_from([15, 30, 60]))
def test_every_generated_scenario_loads_and_every_workload_has_an_eligible_node(
        n_workloads, n_nodes, n_slots, n_tenants, seed, deferrable_share, tight_sla_share, load_factor, slot_minutes):
    sc = generate_scenario(n_workloads, n_nodes, n_slots, n_tenants=n_tenants, seed=seed,
                           deferrable_share=deferrable_share, tight_sla_share=tight_sla_share,
                           load_factor=load_factor, slot_minutes=slot_minutes)
    assert sc.workload_node_eligible.any(axis=1).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_workloads, n_nodes, options", [
    (60, 20, {}),
    (300, 60, {"load_factor": 0.6}),
    (300, 60, {"deferrable_share": 0.5, "tight_sla_share": 0.5}),
    (800, 150, {"n_tenants": 5}),
])
def test_first_fit_places_every_replica_without_violations(seed, n_workloads, n_nodes, options):
    # Whole-instance feasibility is not proven by construction; a plain first
    # fit finding a violation-free placement shows these sizes are feasible.
    sc = generate_scenario(n_workloads, n_nodes, seed=seed, **options)
    ev = evaluate(sc, first_fit(sc))
    assert ev.violations == []


# ---------------------------------------------------------------------------
# Shape of the continuum


@pytest.fixture(scope="module")
def medium() -> Scenario:
    return generate_scenario(2000, 200, seed=11)


def test_tiers_form_the_continuum(medium):
    tiers = Counter(s.tier.value for s in medium.spec.sites)
    assert set(tiers) == {"on-prem", "access", "metro", "aggregation", "regional", "cloud"}
    assert tiers["access"] > tiers["metro"] + tiers["aggregation"] > 0
    assert tiers["cloud"] == 3
    # Edge sites are nearest their users, clouds farthest.
    tier_of_site = np.array([s.tier.value for s in medium.spec.sites])
    lat = medium.user_site_latency_ms
    assert lat[:, tier_of_site == "cloud"].min() > lat[:, tier_of_site == "regional"].max() - 10
    assert np.median(lat[:, tier_of_site == "cloud"]) > np.median(lat[:, tier_of_site == "metro"])


def test_cloud_regions_differ_in_intensity(medium):
    mean = dict(zip(medium.region_ids, medium.region_intensity_g_per_kwh.mean(axis=1)))
    assert mean["grid-coal"] > mean["grid-mixed"] > 3 * mean["grid-low"]
    mixed = medium.region_intensity_g_per_kwh[medium.index_of("region", "grid-mixed")]
    assert mixed[10:14].mean() < mixed[0:4].mean()  # midday solar dip (UTC)


def test_workload_mix_follows_the_shares(medium):
    sla = medium.workload_sla_ms
    W = medium.n_workloads
    # defaults: 25 % deferrable, 30 % tight (5-20 ms), the rest 50-100 ms
    assert medium.workload_deferrable.sum() / W == pytest.approx(0.25, abs=0.04)
    assert ((sla >= 5) & (sla <= 20)).sum() / W == pytest.approx(0.30, abs=0.04)
    assert ((sla >= 50) & (sla <= 100)).sum() / W == pytest.approx(0.45, abs=0.04)
    assert np.isinf(sla[medium.workload_deferrable]).all()
    assert set(medium.workload_replicas.tolist()) <= {1, 2, 3, 4}
    assert (medium.workload_min_sites == 2).any()


@pytest.mark.parametrize("load_factor", [0.3, 0.45, 0.6])
def test_requested_cpu_is_about_the_load_factor(load_factor):
    sc = generate_scenario(2000, 200, seed=5, load_factor=load_factor)
    requested = (sc.workload_requests[:, CPU] * sc.workload_replicas).sum()
    assert requested / sc.node_capacity[:, CPU].sum() == pytest.approx(load_factor, abs=0.05)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_deferrable_share_extremes(share):
    sc = generate_scenario(200, 40, seed=2, deferrable_share=share, tight_sla_share=0.0)
    assert sc.workload_deferrable.all() if share else not sc.workload_deferrable.any()


def test_isolation_rules(medium):
    owner = medium.index_of("tenant", "tenant-0")
    assert medium.tenant_dedicated[owner] and medium.tenant_dedicated.sum() == 1
    pool = medium.node_dedicated_tenant == owner
    assert pool.any() and np.unique(medium.node_site[pool]).size == 1
    # The dedicated tenant's workloads can only land in its pool.
    mine = medium.workload_tenant == owner
    assert mine.any() and not medium.workload_node_eligible[mine][:, ~pool].any()
    t1, t2 = medium.index_of("tenant", "tenant-1"), medium.index_of("tenant", "tenant-2")
    assert medium.tenant_conflicts[t1, t2] and medium.tenant_conflicts.sum() == 2


def test_isolation_rules_can_be_switched_off():
    sc = generate_scenario(100, 30, seed=1, dedicated_tenant=False, never_with=False)
    assert not sc.tenant_dedicated.any()
    assert (sc.node_dedicated_tenant < 0).all()
    assert not sc.tenant_conflicts.any()


def test_hardware_and_signals(medium):
    curve = medium.node_power_curve_w
    assert (curve[:, 0] <= curve[:, -1]).all()
    assert any(n.power.points_w is not None for n in medium.spec.nodes)
    assert (~medium.node_can_power_down).any()
    gpu = medium.resources.index("gpu")
    assert (medium.node_capacity[:, gpu] > 0).any()
    with_pv = np.array([s.pv_kwp for s in medium.spec.sites]) > 0
    assert with_pv.any()
    # 1 h slots: daily yield = 7.4 kWh/kWp x cloudiness 0.6-1.0 (slot-midpoint sampling, +/- 2 %).
    kwp = np.array([s.pv_kwp for s in medium.spec.sites])[with_pv]
    per_kwp = medium.site_renewable_kw[with_pv].sum(axis=1) / kwp
    assert ((per_kwp > 0.98 * 0.6 * 7.4) & (per_kwp < 1.02 * 7.4)).all()
    assert (medium.node_background_util <= 0.15).all()


# ---------------------------------------------------------------------------
# Speed and arguments


def test_large_instances_build_quickly():
    started = time.perf_counter()
    doc = generate(10_000, 1_000, 24, seed=0)
    generated_s = time.perf_counter() - started
    assert len(doc["workloads"]) == 10_000 and len(doc["nodes"]) == 1_000
    assert generated_s < 3.0  # measured well under 0.5 s
    started = time.perf_counter()
    sc = generate_scenario(2000, 200, seed=0)
    assert time.perf_counter() - started < 5.0
    assert sc.workload_node_eligible.any(axis=1).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"n_workloads": -1}, "n_workloads must be >= 0"),
    ({"n_nodes": 5}, "n_nodes must be >= n_sites"),
    ({"n_nodes": 10, "n_sites": 12}, "n_nodes must be >= n_sites"),
    ({"n_sites": 5}, "n_sites must be >= 6"),
    ({"n_slots": 0}, "n_slots >= 1"),
    ({"n_tenants": 0}, "n_tenants must be >= 1"),
    ({"deferrable_share": 0.7, "tight_sla_share": 0.5}, "sum to at most 1"),
    ({"load_factor": 0.0}, "load_factor must be in"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    args = {"n_workloads": 10, "n_nodes": 20, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(**args)
