"""edgeplace.policies.evaluate: energy and carbon to the watt and the gram, and every rule check.

Each figure is worked out by hand in the comments. Shared constants:
- default node: 4000 millicores, linear 100 W idle / 200 W max;
- embodied (SCI M, shared/REFERENCE.md): 3700 kgCO2e over 4 years
  = 3,700,000 g / (4 x 8760 h) = 105.593607... g per node-hour; on the fleet
  basis an owned node pays it every slot, on or off; a rented one
  (`owned: false`) only while powered.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.policies.evaluate import UNALLOCATED, ViolationKind, evaluate
from tests.builders import ScenarioBuilder, place, tiny
from edgeplace.topology import Placement

EMBODIED_G_PER_H = 3_700_000 / (4 * 8760)  # 105.5936073... g/h
approx = lambda x: pytest.approx(x, rel=1e-9, abs=1e-9)  # noqa: E731


def one_node(slots: int = 1, intensity=400, pue: float = 1.0) -> ScenarioBuilder:
    """One region, one site (PUE `pue`), node n1 and tenant t1."""
    return (ScenarioBuilder().slots(slots).region("DE", intensity)
            .site("a", pue=pue).node("n1").tenant("t1"))


# ---------------------------------------------------------------------------
# Power, energy, carbon


def test_linear_power_at_half_load():
    # u = 2000 / 4000 = 0.5; P = 100 + (200 - 100) x 0.5 = 150 W
    # E = 150 W x PUE 1.0 x 1 h = 0.15 kWh; CO2 = 0.15 x 400 = 60 g
    sc = one_node().workload("w", cpu=2000).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.utilisation[0, 0] == approx(0.5)
    assert ev.it_power_w[0, 0] == approx(150.0)
    assert ev.energy_kwh[0, 0] == approx(0.15)
    assert ev.grid_kwh[0, 0] == approx(0.15)
    assert ev.renewable_kwh[0, 0] == approx(0.0)
    assert ev.operational_g[0, 0] == approx(60.0)
    assert ev.embodied_g[0, 0] == approx(EMBODIED_G_PER_H)
    assert ev.totals["emissions_g"] == approx(60.0 + EMBODIED_G_PER_H)
    assert ev.emissions_g == ev.totals["emissions_g"]
    assert ev.feasible


def test_cpu_usage_fraction_scales_dynamic_power():
    # u = 2000 x 0.5 / 4000 = 0.25; P = 100 + 100 x 0.25 = 125 W -> 0.125 kWh -> 50 g
    sc = one_node().workload("w", cpu=2000, usage=0.5).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.it_power_w[0, 0] == approx(125.0)
    assert ev.operational_g[0, 0] == approx(50.0)


def test_specpower_curve_interpolated_at_35_percent():
    # u = 1400 / 4000 = 0.35, between the 30 % (120 W) and 40 % (140 W) points:
    # P = 120 + (140 - 120) x 0.5 = 130 W -> 0.13 kWh x 100 g/kWh = 13 g
    curve = [50, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260]
    sc = (ScenarioBuilder().slots(1).region("DE", 100).site("a", pue=1.0)
          .node("n1", points_w=curve).tenant("t1").workload("w", cpu=1400).build())
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.it_power_w[0, 0] == approx(130.0)
    assert ev.energy_kwh[0, 0] == approx(0.13)
    assert ev.operational_g[0, 0] == approx(13.0)


def test_pue_scales_facility_energy():
    # 150 W IT x PUE 1.5 = 225 W facility -> 0.225 kWh x 200 g/kWh = 45 g
    sc = one_node(intensity=200, pue=1.5).workload("w", cpu=2000).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.it_power_w[0, 0] == approx(150.0)
    assert ev.energy_kwh[0, 0] == approx(0.225)
    assert ev.operational_g[0, 0] == approx(45.0)


def test_pv_covers_part_of_a_site_renewables_first_grid_pro_rata():
    # Site a, PUE 1.0, PV 0.1 kW for 1 h = 0.1 kWh.
    # n1: 2000/4000 -> 150 W -> 0.15 kWh.  n2 (50 W idle, 450 W max): 2000/4000 -> 250 W -> 0.25 kWh.
    # Site demand 0.4 kWh; renewable 0.1; grid 0.3 -> grid share 0.75.
    # n1 grid 0.15 x 0.75 = 0.1125 kWh (x 400 = 45 g); renewable 0.0375
    # n2 grid 0.25 x 0.75 = 0.1875 kWh (x 400 = 75 g); renewable 0.0625
    sc = (ScenarioBuilder().slots(1).region("DE", 400).site("a", pue=1.0, renewable=0.1)
          .node("n1").node("n2", idle_w=50, max_w=450).tenant("t1")
          .workload("w1", cpu=2000).workload("w2", cpu=2000).build())
    ev = evaluate(sc, place(sc, {"w1": ["n1"], "w2": ["n2"]}))
    assert ev.energy_kwh[:, 0] == approx([0.15, 0.25])
    assert ev.renewable_kwh[:, 0] == approx([0.0375, 0.0625])
    assert ev.grid_kwh[:, 0] == approx([0.1125, 0.1875])
    assert ev.operational_g[:, 0] == approx([45.0, 75.0])
    assert ev.totals["renewable_kwh"] == approx(0.1)
    assert ev.totals["grid_kwh"] == approx(0.3)
    assert ev.totals["operational_emissions_g"] == approx(120.0)


def test_pv_surplus_is_curtailed_without_battery():
    # PV 1 kW against 0.15 kWh demand: all renewable, no grid, surplus lost (no export credit).
    sc = (ScenarioBuilder().slots(1).region("DE", 400).site("a", pue=1.0, renewable=1.0)
          .node("n1").tenant("t1").workload("w", cpu=2000).build())
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.renewable_kwh[0, 0] == approx(0.15)
    assert ev.grid_kwh[0, 0] == approx(0.0)
    assert ev.totals["operational_emissions_g"] == approx(0.0)


@pytest.mark.parametrize(
    ("battery_kwh", "grid", "op_g"),
    [
        # Always-on node, idle 100 W, PUE 1 -> 0.1 kWh per 1-h slot. PV [0, 0.2, 0, 0] kW.
        # slot 0: battery empty at start -> grid 0.1 (x 100 = 10 g)
        # slot 1: PV 0.2 covers 0.1; surplus 0.1 x 0.9 = 0.09 kWh stored
        # slot 2: battery gives 0.09, grid 0.01 (x 300 = 3 g)
        # slot 3: battery empty -> grid 0.1 (x 400 = 40 g)            total 53 g
        (1.0, [0.1, 0.0, 0.01, 0.1], 53.0),
        # A 0.05 kWh battery holds only 0.05 of the 0.09: slot 2 grid 0.05 (x 300 = 15 g) -> 65 g
        (0.05, [0.1, 0.0, 0.05, 0.1], 65.0),
        # No battery: slots 0, 2, 3 from the grid: 10 + 30 + 40 = 80 g
        (0.0, [0.1, 0.0, 0.1, 0.1], 80.0),
    ],
)
def test_battery_charges_at_noon_and_discharges_later(battery_kwh, grid, op_g):
    sc = (ScenarioBuilder().slots(4).region("DE", [100, 200, 300, 400])
          .site("a", pue=1.0, renewable=[0, 0.2, 0, 0], battery_kwh=battery_kwh)
          .node("n1", can_power_down=False).tenant("t1").build())
    ev = evaluate(sc, place(sc, {}))
    assert ev.energy_kwh[0] == approx([0.1] * 4)
    assert ev.grid_kwh[0] == approx(grid)
    assert ev.renewable_kwh[0] == approx(0.1 - np.array(grid))
    assert ev.totals["operational_emissions_g"] == approx(op_g)


def test_embodied_share_per_sci():
    # n1 powered 2 slots: embodied 2 x 105.5936 = 211.187 g.
    # t1 requests 2000 of 4000 millicores -> half: 105.5936 g; the rest to (unallocated).
    # n2 (always on, no replicas) -> all 211.187 g to (unallocated).
    sc = tiny().build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.embodied_g == approx(np.full((2, 2), EMBODIED_G_PER_H))
    df = ev.per_tenant().set_index("tenant")
    assert df.loc["t1", "embodied_sci_emissions_g"] == approx(EMBODIED_G_PER_H)
    assert df.loc[UNALLOCATED, "embodied_sci_emissions_g"] == approx(3 * EMBODIED_G_PER_H)


def test_embodied_override_per_site_and_node():
    # 876 kg over 1 year = 876,000 g / 8760 h = 100 g/h; node override 438 kg / 1 y = 50 g/h.
    emb = {"per_node_kg": 876, "lifetime_years": 1}
    sc = (ScenarioBuilder().slots(1).region("DE", 0).site("a", embodied=emb)
          .node("n1", can_power_down=False)
          .node("n2", can_power_down=False, embodied={"per_node_kg": 438, "lifetime_years": 1})
          .tenant("t1").build())
    assert sc.node_embodied_g_per_h == approx([100.0, 50.0])
    ev = evaluate(sc, place(sc, {}))
    assert ev.embodied_g[:, 0] == approx([100.0, 50.0])


def test_tiny_scenario_totals():
    # n1 at site a (PUE 1.5): 150 W x 1.5 = 225 W -> 0.225 kWh per slot.
    #   slot 0: grid 0.225 x 400 = 90 g; slot 1: PV 0.1 kWh, grid 0.125 x 200 = 25 g.
    # n2 at c (PUE 1.0), always on, idle 100 W -> 0.1 kWh: 40 g + 20 g.
    # Operational 175 g; embodied 4 node-slots x 105.5936 = 422.374 g.
    sc = tiny().build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.totals["energy_kwh"] == approx(0.65)
    assert ev.totals["renewable_kwh"] == approx(0.1)
    assert ev.totals["grid_kwh"] == approx(0.55)
    assert ev.operational_g == approx(np.array([[90.0, 25.0], [40.0, 20.0]]))
    assert ev.totals["operational_emissions_g"] == approx(175.0)
    assert ev.totals["embodied_emissions_g"] == approx(4 * EMBODIED_G_PER_H)
    assert ev.totals["mean_active_nodes"] == approx(2.0)
    assert ev.totals["peak_active_nodes"] == 2
    # Mean utilisation over powered node-slots: (0.5 + 0.5 + 0 + 0) / 4
    assert ev.totals["mean_utilisation_active"] == approx(0.25)
    # Tenant t1 owns all of n1's energy (0.45 kWh, 115 g); n2's goes to (unallocated).
    df = ev.per_tenant().set_index("tenant")
    assert df.loc["t1", "energy_kwh"] == approx(0.45)
    assert df.loc["t1", "operational_emissions_g"] == approx(115.0)
    assert df.loc[UNALLOCATED, "energy_kwh"] == approx(0.2)
    assert df.loc[UNALLOCATED, "operational_emissions_g"] == approx(60.0)


def test_two_tenants_on_one_node_share_by_cpu_requests_and_add_up():
    # t1 requests 1000, t2 1000 on a 4000-millicore node: u = 0.5 -> 150 W -> 0.15 kWh -> 60 g.
    # Energy and operational: half each (share of CPU requested on the node).
    # Embodied: by share of capacity: 1000/4000 each = 26.398 g; the other half (52.797 g) unallocated.
    sc = (one_node().tenant("t2").workload("a", tenant="t1").workload("b", tenant="t2").build())
    ev = evaluate(sc, place(sc, {"a": ["n1"], "b": ["n1"]}))
    df = ev.per_tenant().set_index("tenant")
    assert df["energy_kwh"].tolist() == approx([0.075, 0.075, 0.0])
    assert df["operational_emissions_g"].tolist() == approx([30.0, 30.0, 0.0])
    q = EMBODIED_G_PER_H / 4
    assert df["embodied_sci_emissions_g"].tolist() == approx([q, q, 2 * q])
    for col in ("energy_kwh", "operational_emissions_g"):
        assert df[col].sum() == approx(ev.per_node()[col].sum())
    assert df["embodied_sci_emissions_g"].sum() == approx(ev.per_node()["embodied_emissions_g"].sum())


def test_per_tenant_figures_add_up_to_totals_per_slot():
    sc = tiny().tenant("t2").workload("x", tenant="t2", cpu=1500, replicas=2, sla_ms=20, users=["u"]).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"], "x": [["n1", "n2"], "n2"]}))
    assert ev.tenant_energy_kwh.sum(axis=0) == approx(ev.energy_kwh.sum(axis=0))
    assert ev.tenant_operational_g.sum(axis=0) == approx(ev.operational_g.sum(axis=0))
    assert ev.tenant_embodied_g.sum(axis=0) == approx(ev.embodied_g.sum(axis=0))
    assert (ev.tenant_energy_kwh >= 0).all() and (ev.tenant_embodied_g >= -1e-12).all()


def test_tables_per_node_site_and_slot_agree_with_totals():
    sc = tiny().build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    node, site, slot = ev.per_node(), ev.per_site(), ev.per_slot()
    assert node["node"].tolist() == ["n1", "n2"]
    assert site["site"].tolist() == ["a", "c"] and site["tier"].tolist() == ["access", "cloud"]
    assert slot["start"].tolist() == ["2026-06-21T00:00:00+00:00", "2026-06-21T01:00:00+00:00"]
    for col in ("energy_kwh", "renewable_kwh", "grid_kwh", "operational_emissions_g", "embodied_emissions_g"):
        assert node[col].sum() == approx(site[col].sum())
        assert node[col].sum() == approx(slot[col].sum())
    assert slot["operational_emissions_g"].tolist() == approx([130.0, 45.0])
    assert slot["active_nodes"].tolist() == [2, 2]


def test_powered_down_nodes_draw_nothing_but_keep_their_embodied_carbon():
    # n1 hosts nothing and may power down: no energy; owned, so its embodied
    # carbon (fleet basis) stays: 105.59 g per slot, all of it (unallocated).
    sc = tiny().build()
    ev = evaluate(sc, place(sc, {"w": ["n2"]}))
    assert not ev.powered[0].any()
    assert ev.energy_kwh[0] == approx([0.0, 0.0])
    assert ev.embodied_g[0] == approx([EMBODIED_G_PER_H] * 2)
    # n2 at c: 2000/4000 -> 150 W -> 0.15 kWh x [400, 200] = 60 + 30 g
    assert ev.operational_g[1] == approx([60.0, 30.0])


def test_explicit_power_down_of_an_idle_node():
    sc = one_node(slots=2).node("n2").workload("w", cpu=2000).build()
    powered = np.array([[True, True], [True, False]])
    ev = evaluate(sc, Placement.from_replica_nodes(sc, np.array([0]), powered=powered))
    # n2 on in slot 0 with nothing: idle 100 W -> 0.1 kWh; off in slot 1 -> no energy,
    # the same embodied carbon (owned).
    assert ev.energy_kwh[1] == approx([0.1, 0.0])
    assert ev.embodied_g[1] == approx([EMBODIED_G_PER_H, EMBODIED_G_PER_H])
    assert ev.feasible


def test_always_on_node_draws_idle_without_replicas():
    # can_power_down false, nothing placed: 100 W idle -> 0.1 kWh x 400 = 40 g per slot.
    sc = one_node(slots=2).node("n2", can_power_down=False).workload("w").build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.powered[1].all()
    assert ev.it_power_w[1] == approx([100.0, 100.0])
    assert ev.operational_g[1] == approx([40.0, 40.0])


def test_background_utilisation_adds_load():
    # Background 0.25 + 1000/4000 = 0.5 -> 150 W.
    sc = (ScenarioBuilder().slots(1).region("DE", 400).site("a", pue=1.0)
          .node("n1", background_utilisation=0.25).tenant("t1").workload("w").build())
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.utilisation[0, 0] == approx(0.5)
    assert ev.it_power_w[0, 0] == approx(150.0)


def test_background_signal_varies_per_slot_in_percent():
    # Always-on node with background [0, 50, 100] % -> 100, 150, 200 W.
    sc = (ScenarioBuilder().slots(3).region("DE", 400).site("a", pue=1.0)
          .node("n1", can_power_down=False).tenant("t1").background("n1", [0, 50, 100], unit="%").build())
    ev = evaluate(sc, place(sc, {}))
    assert ev.it_power_w[0] == approx([100.0, 150.0, 200.0])


def test_overload_power_is_clipped_at_max():
    # 3 x 2000 = 6000 / 4000 = 1.5 -> power clipped to 200 W (the overload is a capacity violation).
    sc = one_node().workload("w", cpu=2000, replicas=3).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", "n1", "n1"]}))
    assert ev.utilisation[0, 0] == approx(1.5)
    assert ev.it_power_w[0, 0] == approx(200.0)
    assert [v.kind for v in ev.violations] == [ViolationKind.capacity]


def test_deferrable_job_counted_only_in_its_run_slots():
    # 4 slots, window slots 0..4, 1 h job started in slot 2 -> node on only in slot 2.
    # 2000/4000 -> 150 W -> 0.15 kWh x intensity[2] = 300 g/kWh -> 45 g.
    sc = (ScenarioBuilder().slots(4).region("DE", [100, 200, 300, 400]).site("a", pue=1.0).node("n1")
          .tenant("t1").workload("job", cpu=2000, window=(0, 4), duration_minutes=60).build())
    ev = evaluate(sc, place(sc, {"job": {"start_slot": 2, "replicas": ["n1"]}}))
    assert ev.powered[0].tolist() == [False, False, True, False]
    assert ev.energy_kwh[0] == approx([0.0, 0.0, 0.15, 0.0])
    assert ev.totals["operational_emissions_g"] == approx(45.0)
    # Owned: 4 slots of embodied carbon whatever runs (fleet basis).
    assert ev.totals["embodied_emissions_g"] == approx(4 * EMBODIED_G_PER_H)
    assert ev.feasible


def test_grid_intensity_per_region_and_slot():
    # Two always-on idle nodes (100 W -> 0.1 kWh per slot), one per region.
    # DE: 0.1 x 400 + 0.1 x 200 = 60 g;  FR: 0.1 x 50 + 0.1 x 60 = 11 g.
    sc = (ScenarioBuilder().slots(2).region("DE", [400, 200]).region("FR", [50, 60])
          .site("de", region="DE", pue=1.0).site("fr", region="FR", pue=1.0)
          .node("n1", site="de", can_power_down=False).node("n2", site="fr", can_power_down=False)
          .tenant("t1").build())
    ev = evaluate(sc, place(sc, {}))
    assert ev.operational_g == approx(np.array([[40.0, 20.0], [5.0, 6.0]]))
    assert ev.operational_g.sum(axis=1) == approx([60.0, 11.0])


def test_half_hour_slots_halve_energy_and_embodied():
    # 150 W for 0.5 h = 0.075 kWh x 400 = 30 g; embodied 105.59 / 2 per slot.
    sc = one_node().slots(1, minutes=30).workload("w", cpu=2000).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.energy_kwh[0, 0] == approx(0.075)
    assert ev.operational_g[0, 0] == approx(30.0)
    assert ev.embodied_g[0, 0] == approx(EMBODIED_G_PER_H / 2)


def test_wrong_placement_shape_is_a_value_error():
    sc = tiny().build()
    with pytest.raises(ValueError, match=r"replicas x slots"):
        evaluate(sc, Placement.from_assign(np.zeros((2, 2), dtype=np.int64)))


def test_wrong_powered_shape_is_a_value_error():
    sc = tiny().build()
    p = place(sc, {"w": ["n1"]})
    p = p.with_powered(np.ones((1, 2), dtype=bool))  # would broadcast over both nodes
    with pytest.raises(ValueError, match=r"powered has shape \(1, 2\), scenario needs \(2, 2\)"):
        evaluate(sc, p)


def test_node_index_out_of_range_is_a_value_error():
    sc = tiny().build()
    with pytest.raises(ValueError, match=r"valid are -1\.\.1"):
        evaluate(sc, Placement.from_assign(np.array([[0, 2]])))
    with pytest.raises(ValueError, match=r"down to -2; -1 is 'not running'"):
        Placement.from_assign(np.array([[0, -2]]))


def test_evaluate_does_not_mutate_the_placement():
    sc = tiny().build()
    p = place(sc, {"w": ["n1"]})
    before = p.assign.copy()
    evaluate(sc, p)
    assert np.array_equal(p.assign, before) and p.powered is None


# ---------------------------------------------------------------------------
# Violations: each kind detected on a broken placement and absent on a clean one.


def rules() -> ScenarioBuilder:
    """Three sites: a (users u 1 ms, v via b), b (3 ms from a), c (10 ms from a).

    Latency to the users (u at a + 1 ms access, v at b + 2 ms access):
      site a: u 1, v 3 + 2 = 5      site b: u 3 + 1 = 4, v 2
      site c: u 10 + 1 = 11, v 10 + 3 + 2 = 15
    """
    return (ScenarioBuilder().slots(2).region("DE", 300)
            .site("a").site("b").site("c", tier="cloud")
            .link("a", "b", 3).link("a", "c", 10)
            .user("u", site="a", access_ms=1).user("v", site="b", access_ms=2)
            .node("n1", site="a", resources={"gpu": 1}, labels={"class": "gpu"})
            .node("n2", site="b")
            .node("n3", site="c", dedicated_to="t2")
            .node("n4", site="c", can_power_down=False)
            .tenant("t1", quota={"cpu_millicores": 3000}, never_with=["t3"])
            .tenant("t2", dedicated=True)
            .tenant("t3"))


def kinds(ev) -> list[ViolationKind]:
    return sorted({v.kind for v in ev.violations}, key=lambda k: k.value)


def only(ev, kind: ViolationKind):
    found = [v for v in ev.violations if v.kind is kind]
    assert found, f"no {kind.value} violation in {ev.violations}"
    assert kinds(ev) == [kind], ev.violations
    return found


def test_clean_placement_has_no_violation_of_any_kind():
    sc = (rules()
          .workload("web", tenant="t1", cpu=1000, replicas=2, sla_ms=6, users=["u", "v"], min_sites=2)
          .workload("ml", tenant="t1", cpu=1000, selector={"class": "gpu"}, resources={"gpu": 1})
          .workload("ded", tenant="t2", cpu=1000)
          .workload("other", tenant="t3", cpu=1000)
          .workload("job", tenant="t3", cpu=1000, replicas=2, window=(0, 2), duration_minutes=60)
          .build())
    ev = evaluate(sc, place(sc, {"web": ["n1", "n2"], "ml": ["n1"], "ded": ["n3"], "other": ["n4"],
                                 "job": {"start_slot": 1, "replicas": ["n4", "n4"]}}))
    assert ev.violations == []
    assert ev.feasible
    assert all(ev.totals[f"{k.value}_violations"] == 0 for k in ViolationKind)


@pytest.mark.parametrize(
    ("requests", "resource", "excess"),
    [
        ({"cpu": 3000}, "cpu_millicores", 2000.0),  # 2 x 3000 - 4000
        ({"memory": 5000}, "memory_mib", 1808.0),  # 2 x 5000 - 8192
        ({"resources": {"gpu": 1}}, "gpu", 1.0),  # 2 x 1 - 1
    ],
)
def test_capacity_per_resource(requests, resource, excess):
    sc = rules().workload("w", tenant="t3", replicas=2, **requests).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", "n1"]}))
    (v,) = only(ev, ViolationKind.capacity)
    assert (v.subject, v.unit, v.amount, v.slots) == ("n1", resource, excess, (0, 1))
    assert f"over its {resource}" in v.message


def test_capacity_only_in_the_slot_it_is_exceeded():
    # The second replica joins n2 in slot 1 only: 2 x 3000 > 4000 there.
    sc = rules().workload("w", tenant="t3", cpu=3000, replicas=2).build()
    ev = evaluate(sc, place(sc, {"w": ["n2", [None, "n2"]]}))
    cap = [v for v in ev.violations if v.kind is ViolationKind.capacity]
    assert [(v.subject, v.slots, v.amount) for v in cap] == [("n2", (1,), 2000.0)]


def test_sla_names_users_and_excess_ms():
    # SLA 12 ms for users u, v. Site c: u 11 ms (ok), v 15 ms -> 3 ms over, only v named.
    sc = rules().workload("w", tenant="t3", sla_ms=12, users=["u", "v"]).build()
    ev = evaluate(sc, place(sc, {"w": ["n4"]}))
    (v,) = only(ev, ViolationKind.sla)
    assert v.subject == "w" and v.unit == "ms" and v.slots == (0, 1)
    assert v.amount == pytest.approx(3.0)
    assert v.message.endswith("for users v")
    # SLA 6 ms: at c both users miss it; the worst excess is 15 - 6 = 9 ms.
    sc = rules().workload("w", tenant="t3", sla_ms=6, users=["u", "v"]).build()
    (v,) = only(evaluate(sc, place(sc, {"w": ["n4"]})), ViolationKind.sla)
    assert v.amount == pytest.approx(9.0)
    assert "by up to 9.0 ms for users u, v" in v.message


def test_sla_met_at_the_edge():
    # Site b: u 4 ms, v 2 ms -> within 5 ms.
    sc = rules().workload("w", tenant="t3", sla_ms=5, users=["u", "v"]).build()
    assert evaluate(sc, place(sc, {"w": ["n2"]})).violations == []


def test_isolation_foreign_workload_on_a_dedicated_node():
    sc = rules().workload("w", tenant="t1").build()
    ev = evaluate(sc, place(sc, {"w": ["n3"]}))
    (v,) = only(ev, ViolationKind.isolation)
    assert v.subject == "w" and v.slots == (0, 1) and v.amount == 2.0
    assert "tenant t1" in v.message and "n3" in v.message


def test_isolation_dedicated_tenant_on_a_shared_node():
    sc = rules().workload("d", tenant="t2").build()
    (v,) = only(evaluate(sc, place(sc, {"d": ["n2"]})), ViolationKind.isolation)
    assert v.subject == "d" and "n2" in v.message


def test_isolation_never_with():
    # t1 never_with t3 (declared on t1; applies both ways). They share n2 in slot 1 only.
    sc = rules().workload("a", tenant="t1").workload("b", tenant="t3").build()
    ev = evaluate(sc, place(sc, {"a": ["n2"], "b": [["n1", "n2"]]}))
    (v,) = only(ev, ViolationKind.isolation)
    assert (v.subject, v.slots, v.amount) == ("n2", (1,), 1.0)
    assert "tenants t1 and t3 share node n2" in v.message
    # t1 with t2 is allowed (no conflict): different tenant on the same shared node is fine.
    sc = rules().workload("a", tenant="t1").workload("b", tenant="t1").build()
    assert evaluate(sc, place(sc, {"a": ["n2"], "b": ["n2"]})).violations == []


def test_isolation_never_with_counts_replicas_that_request_no_cpu():
    # A replica requesting 0 millicores is still on the node: co-location must be caught.
    sc = rules().workload("a", tenant="t1", cpu=0).workload("b", tenant="t3").build()
    ev = evaluate(sc, place(sc, {"a": ["n2"], "b": ["n2"]}))
    (v,) = only(ev, ViolationKind.isolation)
    assert v.subject == "n2" and v.slots == (0, 1)


def test_selector():
    sc = rules().workload("w", tenant="t3", selector={"class": "gpu"}).build()
    ev = evaluate(sc, place(sc, {"w": [["n1", "n2"]]}))
    (v,) = only(ev, ViolationKind.selector)
    assert (v.subject, v.slots, v.amount) == ("w", (1,), 1.0)
    assert "class" in v.message


def test_spread():
    # min_sites 2 with both replicas on site a -> one site short.
    sc = rules().workload("w", tenant="t3", replicas=2, min_sites=2).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", "n1"]}))
    (v,) = only(ev, ViolationKind.spread)
    assert (v.subject, v.slots, v.amount, v.unit) == ("w", (0, 1), 1.0, "sites")
    assert evaluate(sc, place(sc, {"w": ["n1", "n2"]})).violations == []


def test_schedule_service_with_an_unplaced_replica():
    sc = rules().workload("w", tenant="t3", replicas=2).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", [None, None]]}))
    (v,) = only(ev, ViolationKind.schedule)
    assert (v.subject, v.slots) == ("w", (0, 1))
    assert "not running in every slot" in v.message
    # A workload missing from the placement is unplaced in every slot, too.
    (v,) = only(evaluate(sc, place(sc, {})), ViolationKind.schedule)
    assert v.subject == "w"


def test_schedule_service_stopped_in_one_slot():
    sc = rules().workload("w", tenant="t3").build()
    (v,) = only(evaluate(sc, place(sc, {"w": [["n1", None]]})), ViolationKind.schedule)
    assert (v.slots, v.amount) == ((1,), 1.0)


def jobs(slots: int = 6) -> ScenarioBuilder:
    # Window slots 1..5 (deadline at the start of slot 5), 2-slot run: start 1..3.
    return (ScenarioBuilder().slots(slots).region("DE", 300).site("a").node("n1").node("n2").tenant("t1")
            .workload("job", replicas=2, window=(1, 5), duration_minutes=120))


@pytest.mark.parametrize("start", [1, 2, 3])
def test_schedule_deferrable_inside_its_window_is_clean(start):
    sc = jobs().build()
    assert (sc.workload_earliest_slot[0], sc.workload_latest_start_slot[0], sc.workload_duration_slots[0]) == (1, 3, 2)
    assert evaluate(sc, place(sc, {"job": {"start_slot": start, "replicas": ["n1", "n2"]}})).violations == []


@pytest.mark.parametrize(
    ("replicas", "slots"),
    [
        # Starts at 4, past the latest start 3.
        ([[None, None, None, None, "n1", "n1"], [None, None, None, None, "n2", "n2"]], (4, 5)),
        # Starts at 0, before the window.
        ([["n1", "n1", None, None, None, None], ["n2", "n2", None, None, None, None]], (0, 1)),
        # Split run: slots 1 and 3.
        ([[None, "n1", None, "n1", None, None], [None, "n2", None, "n2", None, None]], (1, 3)),
        # One replica missing.
        ([[None, "n1", "n1", None, None, None], [None] * 6], (1, 2)),
        # Replicas out of step.
        ([[None, "n1", "n1", None, None, None], [None, None, "n2", "n2", None, None]], (1, 2, 3)),
        # Not run at all.
        ([[None] * 6, [None] * 6], ()),
    ],
    ids=["after-window", "before-window", "split", "missing-replica", "out-of-step", "never"],
)
def test_schedule_deferrable_violations(replicas, slots):
    sc = jobs().build()
    (v,) = only(evaluate(sc, place(sc, {"job": replicas})), ViolationKind.schedule)
    assert v.subject == "job" and v.slots == slots
    assert "must run 2 consecutive slot(s) with all replicas, starting in slots 1..3" in v.message


def test_schedule_deferrable_start_slot_past_latest_start():
    sc = jobs().build()
    (v,) = only(evaluate(sc, place(sc, {"job": {"start_slot": 4, "replicas": ["n1", "n2"]}})), ViolationKind.schedule)
    assert v.slots == (4, 5)


def test_quota():
    # t1 quota 3000 millicores; 2 x 2000 = 4000 -> 1000 over in both slots.
    sc = rules().workload("w", tenant="t1", cpu=2000, replicas=2).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", "n2"]}))
    (v,) = only(ev, ViolationKind.quota)
    assert (v.subject, v.unit, v.amount, v.slots) == ("t1", "cpu_millicores", 1000.0, (0, 1))


def test_power_replica_on_a_powered_down_node():
    sc = rules().workload("w", tenant="t3").build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}, powered_down={"n1": [1]}))
    (v,) = only(ev, ViolationKind.power)
    assert (v.subject, v.slots, v.amount) == ("n1", (1,), 1.0)
    assert "powered down but hosts replicas" in v.message
    assert ev.it_power_w[0, 1] == 0.0  # a sleeping node draws nothing, even when wrongly used


def test_power_always_on_node_switched_off():
    sc = rules().workload("w", tenant="t3").build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}, powered_down={"n4": [0, 1]}))
    (v,) = only(ev, ViolationKind.power)
    assert (v.subject, v.slots, v.unit) == ("n4", (0, 1), "slots")
    assert "can_power_down: false" in v.message


def test_violation_as_dict_and_counts():
    sc = rules().workload("w", tenant="t3", cpu=3000, replicas=2).build()
    ev = evaluate(sc, place(sc, {"w": ["n1", "n1"]}))
    (v,) = ev.violations
    assert v.as_dict() == {"kind": "capacity", "subject": "n1", "slots": [0, 1], "amount": 2000.0,
                           "unit": "cpu_millicores", "message": v.message}
    assert ev.violation_counts[ViolationKind.capacity] == 1
    assert ev.totals["capacity_violations"] == 1
    assert not ev.feasible


# ---------------------------------------------------------------------------
# Embodied bases: fleet (owned on or off, rented while powered) and SCI attribution


def test_fleet_basis_owned_node_pays_embodied_asleep_rented_node_only_while_powered():
    # 2 slots. Owned n1 (site a) sleeps in slot 1; rented n2 (site r, owned: false) sleeps in slot 1.
    # Fleet embodied: n1 2 x 105.5936 = 211.187 g; n2 1 x 105.5936 g. Total 316.781 g.
    sc = (ScenarioBuilder().slots(2).region("DE", 400).site("a", pue=1.0).node("n1")
          .site("r", tier="cloud", pue=1.0, owned=False).node("n2").tenant("t1").build())
    powered = np.array([[True, False], [True, False]])
    ev = evaluate(sc, Placement.from_replica_nodes(sc, np.zeros(0, dtype=int), powered=powered))
    assert ev.embodied_g == approx(np.array([[EMBODIED_G_PER_H] * 2, [EMBODIED_G_PER_H, 0.0]]))
    assert ev.totals["embodied_emissions_g"] == approx(3 * EMBODIED_G_PER_H)
    assert ev.totals["embodied_owned_g"] == approx(2 * EMBODIED_G_PER_H)
    # decision_g: operational (2 nodes x 0.1 kWh x 400 = 80 g in slot 0) + rented embodied 105.5936 g.
    assert ev.totals["operational_emissions_g"] == approx(80.0)
    assert ev.decision_g("location") == approx(80.0 + EMBODIED_G_PER_H)


def test_sleeping_changes_only_operational_on_the_fleet_basis():
    # Two owned nodes, one replica. Both on: 150 W + 100 W = 0.25 kWh x 400 = 100 g; one asleep: 60 g.
    # Embodied: 2 nodes x 105.5936 g either way.
    sc = one_node().node("n2").workload("w", cpu=2000).build()
    both = evaluate(sc, Placement.from_replica_nodes(sc, np.array([0]), powered=np.ones((2, 1), bool)))
    one = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert both.totals["operational_emissions_g"] == approx(100.0)
    assert one.totals["operational_emissions_g"] == approx(60.0)
    assert both.totals["embodied_emissions_g"] == one.totals["embodied_emissions_g"] == approx(2 * EMBODIED_G_PER_H)


def test_sci_attribution_of_a_sleeping_node_goes_to_unallocated():
    # n1 hosts w (1000 of 4000 m): SCI RR/ToR = 1/4 -> 26.398 g to t1, 79.195 g unallocated.
    # n2 asleep (owned): nobody reserves it -> its 105.5936 g unallocated.
    sc = one_node().node("n2").workload("w", cpu=1000).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    df = ev.per_tenant().set_index("tenant")
    assert df.loc["t1", "embodied_sci_emissions_g"] == approx(EMBODIED_G_PER_H / 4)
    assert df.loc[UNALLOCATED, "embodied_sci_emissions_g"] == approx(EMBODIED_G_PER_H * 7 / 4)
    assert ev.totals["embodied_attributed_g"] == approx(EMBODIED_G_PER_H / 4)
    per_w = ev.per_workload().set_index("workload")
    assert per_w.loc["w", "embodied_sci_emissions_g"] == approx(EMBODIED_G_PER_H / 4)
    assert per_w.loc["w", "tenant"] == "t1"
    assert per_w["embodied_sci_emissions_g"].sum() == approx(ev.totals["embodied_emissions_g"])


def test_per_workload_splits_a_tenant_by_cpu_requests():
    # a (1000 m) and b (3000 m) of t1 on n1: u = 1 -> 200 W -> 0.2 kWh x 400 = 80 g: 20 g and 60 g.
    sc = one_node().workload("a", cpu=1000).workload("b", cpu=3000).build()
    ev = evaluate(sc, place(sc, {"a": ["n1"], "b": ["n1"]}))
    per_w = ev.per_workload().set_index("workload")
    assert per_w.loc["a", "operational_emissions_g"] == approx(20.0)
    assert per_w.loc["b", "operational_emissions_g"] == approx(60.0)
    assert per_w.loc[UNALLOCATED, "operational_emissions_g"] == approx(0.0)
    assert ev.per_tenant().set_index("tenant").loc["t1", "operational_emissions_g"] == approx(80.0)


# ---------------------------------------------------------------------------
# Scope 2: location- and market-based, hourly carbon-free energy


def market_site(share: float = 0.0, contracted=None, residual: float | None = None) -> ScenarioBuilder:
    """n1 at site a (PUE 1), 2 slots at 400 and 200 g/kWh; w at 2000 m -> 150 W -> 0.15 kWh a slot."""
    mix = None if residual is None else {"g_per_kwh": residual, "factor_type": "direct", "source": "test figure"}
    b = ScenarioBuilder().slots(2).region("DE", [400, 200], factor_type="direct", residual_mix=mix)
    b.site("a", pue=1.0, contracts={"renewable_share": share} if share else None)
    if contracted is not None:
        b.signal("contracted_supply", contracted, unit="kW", site="a")
    return b.node("n1").tenant("t1").workload("w", cpu=2000)


def test_market_based_equals_location_based_without_instruments():
    sc = market_site().build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    # 0.15 x 400 + 0.15 x 200 = 90 g both ways.
    assert ev.totals["operational_emissions_g"] == approx(90.0)
    assert ev.totals["operational_market_emissions_g"] == approx(90.0)


def test_certificates_cover_a_share_at_the_residual_mix():
    # 50 % certificates, residual 500 g/kWh: 0.15 x 0.5 x 500 = 37.5 g per slot -> 75 g;
    # location-based stays 90 g.
    sc = market_site(share=0.5, residual=500).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.operational_market_g[0] == approx([37.5, 37.5])
    assert ev.totals["operational_emissions_g"] == approx(90.0)
    # Certificates are not hourly matched: no carbon-free energy.
    assert ev.totals["cfe_kwh"] == approx(0.0)


def test_hourly_matched_supply_then_certificates():
    # Contracted 0.1 kW in slot 0 (0.1 kWh), 0.3 kW in slot 1 (surplus 0.15 kWh, not carried).
    # slot 0: matched 0.1, uncovered 0.05 x (1 - 0.2) x 400 (no residual: location intensity) = 16 g;
    # slot 1: matched 0.15, nothing left: 0 g.
    # CFE: (0.1 + 0.15) / 0.3 kWh = 83.33 %.
    sc = market_site(share=0.2, contracted=[0.1, 0.3]).build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.matched_kwh[0] == approx([0.1, 0.15])
    assert ev.operational_market_g[0] == approx([16.0, 0.0])
    assert ev.totals["cfe_score_pct"] == approx(0.25 / 0.3 * 100)
    assert ev.site_cfe_pct()[0] == approx([0.1 / 0.15 * 100, 100.0])
    assert ev.per_site()["cfe_score_pct"].tolist() == approx([0.25 / 0.3 * 100])


def test_cfe_counts_on_site_renewables():
    # 0.05 kW of PV in slot 0 (0.05 kWh of 0.15): CFE 1/3 in slot 0, 0 in slot 1.
    sc = market_site().signal("renewable_supply", [0.05, 0.0], unit="kW", site="a").build()
    ev = evaluate(sc, place(sc, {"w": ["n1"]}))
    assert ev.site_cfe_pct()[0] == approx([100 / 3, 0.0])
    assert ev.operational_market_g[0] == approx([0.1 * 400, 0.15 * 200])
