"""Tests of edgeplace.report.data: every table against hand arithmetic and against evaluate()."""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.report.data import (
    SECTIONS, TOTAL, build_report, consolidation_table, current_placement, headroom_table, make_report,
    renewables_table,
)
from edgeplace.policies.baselines import SpreadPolicy
from edgeplace.policies.evaluate import UNALLOCATED, evaluate
from tests.builders import ScenarioBuilder, place
from edgeplace.topology import InputError, load_scenario

NO_EMBODIED = {"per_node_kg": 0.0}


def two_sites() -> ScenarioBuilder:
    """Site a (n1, n2) and cloud c (n3) 10 ms away; user u at a (1 ms); 2 hourly slots at 400 / 200 g/kWh.

    Nodes: 4000 millicores, 8192 MiB, 100 W idle / 200 W max, PUE 1, no embodied carbon.
    w1 (t1): 1000 millicores, 512 MiB, 5 ms SLA for u; w2 (t2): 2000 millicores, 512 MiB, no SLA.
    """
    return (ScenarioBuilder("two-sites").slots(2)
            .region("DE", [400, 200])
            .site("a", tier="access", pue=1.0, embodied=NO_EMBODIED)
            .site("c", tier="cloud", pue=1.0, embodied=NO_EMBODIED)
            .node("n1", site="a").node("n2", site="a").node("n3", site="c")
            .link("a", "c", 10)
            .user("u", site="a", access_ms=1)
            .tenant("t1").tenant("t2")
            .workload("w1", tenant="t1", cpu=1000, memory=512, sla_ms=5, users=["u"])
            .workload("w2", tenant="t2", cpu=2000, memory=512))


@pytest.fixture()
def small():
    sc = two_sites().build()
    # before: spread out, every node on (n3 idle); after: both on n1, n2 and n3 asleep (derived).
    before = place(sc, {"w1": ["n1"], "w2": ["n2"]}, powered_down={})
    after = place(sc, {"w1": ["n1"], "w2": ["n1"]})
    return sc, before, after


@pytest.fixture(scope="module")
def metro():
    from edgeplace.optimizer.solve import SolveOptions, solve

    sc = load_scenario("examples/metro-de.yaml")
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=0))
    before = SpreadPolicy().place(sc)
    report = build_report(sc, plan.placement, before, after_label="plan", before_label="spread")
    return sc, before, plan.placement, report


def row(frame, column, value):
    hit = frame[frame[column] == value]
    assert len(hit) == 1, f"no single row {column}={value!r} in\n{frame}"
    return hit.iloc[0]


# -- consolidation -----------------------------------------------------------------


def test_consolidation_matches_hand_arithmetic(small):
    sc, before, after = small
    table = consolidation_table(sc, evaluate(sc, before), evaluate(sc, after))
    # before per slot: n1 125 W (u = 0.25), n2 150 W (u = 0.5), n3 100 W idle; after: n1 175 W (u = 0.75).
    # Energy over 2 h [kWh]: n2 0.3 -> 0, n3 0.2 -> 0, n1 0.25 -> 0.35.
    assert list(table["node"]) == ["n2", "n3", "(other nodes)", TOTAL]
    assert row(table, "node", "n2")["energy_saved_kwh"] == pytest.approx(0.3)
    assert row(table, "node", "n3")["energy_saved_kwh"] == pytest.approx(0.2)
    assert row(table, "node", "(other nodes)")["energy_saved_kwh"] == pytest.approx(-0.1)
    assert row(table, "node", TOTAL)["energy_saved_kwh"] == pytest.approx(0.4)
    # Emissions [g]: n2 0.15 x (400 + 200) = 90, n3 0.1 x 600 = 60, n1 75 -> 105 (-30); total 120 g.
    assert row(table, "node", "n2")["emissions_saved_kg"] == pytest.approx(0.090)
    assert row(table, "node", "n3")["emissions_saved_kg"] == pytest.approx(0.060)
    assert row(table, "node", TOTAL)["emissions_saved_kg"] == pytest.approx(0.120)
    assert row(table, "node", TOTAL)["sleep_h"] == pytest.approx(4.0)


def test_consolidation_total_is_the_difference_of_two_evaluations(metro):
    sc, before, after, report = metro
    eb, ea = evaluate(sc, before).totals, evaluate(sc, after).totals
    table = next(t.frame for t in report.tables() if t.key == "consolidation")
    total = row(table, "node", TOTAL)
    assert total["energy_saved_kwh"] == pytest.approx(eb["energy_kwh"] - ea["energy_kwh"], rel=1e-9)
    assert total["emissions_saved_kg"] * 1000 == pytest.approx(eb["emissions_g"] - ea["emissions_g"], rel=1e-9)
    # The candidates are exactly the nodes powered for fewer slots after than before.
    pb, pa = evaluate(sc, before).powered.sum(axis=1), evaluate(sc, after).powered.sum(axis=1)
    expected = {sc.node_ids[i] for i in np.flatnonzero(pb > pa)}
    assert set(table["node"]) - {"(other nodes)", TOTAL} == expected
    assert expected, "the greedy plan should put some nodes of metro-de to sleep"


def test_idle_nodes_savings_are_evaluated_with_and_without_them(small):
    sc, before, after = small
    report = build_report(sc, after, before, after_label="after", before_label="before")
    table = next(t.frame for t in report.tables() if t.key == "idle_nodes")
    idle_before = table[table["placement"] == "before"]
    # n3 is on but hosts nothing in both slots: sleeping it saves 2 x 0.1 kWh at 400 and 200 g/kWh.
    n3 = row(idle_before, "node", "n3")
    assert n3["idle_h"] == 2
    assert n3["energy_saved_kwh"] == pytest.approx(0.2)
    assert n3["emissions_saved_kg"] == pytest.approx(0.060)
    # Independently: the placement with n3 powered down, evaluated.
    powered = np.ones((3, 2), dtype=bool)
    powered[2] = False
    slept = evaluate(sc, before.with_powered(powered))
    saved = evaluate(sc, before).totals["emissions_g"] - slept.totals["emissions_g"]
    assert row(idle_before, "node", TOTAL)["emissions_saved_kg"] * 1000 == pytest.approx(saved)
    # The plan powers idle nodes down already: nothing left to save.
    assert list(table[table["placement"] == "after"]["node"]) == [TOTAL]
    assert row(table[table["placement"] == "after"], "node", TOTAL)["energy_saved_kwh"] == pytest.approx(0.0)


# -- tenants -------------------------------------------------------------------------


def test_tenant_attribution_adds_up_to_the_totals(metro):
    sc, before, after, report = metro
    table = next(t.frame for t in report.tables() if t.key == "tenants")
    body, total = table[table["tenant"] != TOTAL], row(table, "tenant", TOTAL)
    assert list(body["tenant"]) == [*sc.tenant_ids, UNALLOCATED]
    for when, ev in (("before", report.before), ("after", report.after)):
        t = ev.totals
        assert body[f"emissions_kg_{when}"].sum() * 1000 == pytest.approx(t["emissions_g"], rel=1e-9)
        assert total[f"emissions_kg_{when}"] * 1000 == pytest.approx(t["emissions_g"], rel=1e-9)
        assert body[f"energy_kwh_{when}"].sum() == pytest.approx(t["energy_kwh"], rel=1e-9)
        assert body[f"operational_location_kg_{when}"].sum() * 1000 == pytest.approx(t["operational_emissions_g"], rel=1e-9)
    summary = next(t.frame for t in report.tables() if t.key == "summary_tenants")
    assert row(summary, "tenant", TOTAL)["emissions_kg"] * 1000 == pytest.approx(report.after.totals["emissions_g"])
    assert row(summary, "tenant", TOTAL)["share_of_emissions_pct"] == pytest.approx(100.0)


def test_tenant_split_by_requested_cpu(small):
    sc, before, after = small
    report = build_report(sc, after, before)
    table = next(t.frame for t in report.tables() if t.key == "tenants")
    # after: n1 hosts w1 (1000) and w2 (2000): 105 g operational split 1/3 : 2/3.
    assert row(table, "tenant", "t1")["operational_location_kg_after"] == pytest.approx(0.035)
    assert row(table, "tenant", "t2")["operational_location_kg_after"] == pytest.approx(0.070)
    assert row(table, "tenant", UNALLOCATED)["operational_location_kg_after"] == pytest.approx(0.0)
    # before: n1 is t1's (75 g), n2 t2's (90 g), idle n3 unallocated (60 g).
    assert row(table, "tenant", "t1")["operational_location_kg_before"] == pytest.approx(0.075)
    assert row(table, "tenant", UNALLOCATED)["operational_location_kg_before"] == pytest.approx(0.060)
    summary = next(t.frame for t in report.tables() if t.key == "summary_tenants")
    # Requested core-hours: t1 1 core x 2 h, t2 2 cores x 2 h; 35 g / 2 core-h = 17.5 g per core-hour.
    assert row(summary, "tenant", "t1")["requested_core_h"] == pytest.approx(2.0)
    assert row(summary, "tenant", "t2")["requested_core_h"] == pytest.approx(4.0)
    assert row(summary, "tenant", "t1")["g_per_requested_core_h"] == pytest.approx(17.5)


# -- headroom, idle capacity, renewables -------------------------------------------


def test_headroom_per_sla_class_and_site(small):
    sc, _, after = small
    ev = evaluate(sc, after)
    from edgeplace.policies.evaluate import placed_requests

    table = headroom_table(sc, ev, placed_requests(sc, after))
    five, none = row(table, "sla_ms", "5"), row(table, "sla_ms", "none")
    # 5 ms class (w1: 1000 mc, 512 MiB): only site a's n1, n2 are within 5 ms of u (1 ms access).
    # Spare: n1 4000 - 3000 = 1000 mc -> 1 replica; n2 4000 mc -> 4; awake: n2 sleeps -> 1.
    assert five["eligible_nodes"] == 2
    assert five["spare_cores"] == pytest.approx(5.0)
    assert five["extra_replicas"] == 5
    assert five["extra_replicas_awake"] == 1
    # No SLA (w2: 2000 mc): every node; n1 fits 0, n2 2, n3 2; none of n2, n3 is awake.
    assert none["eligible_nodes"] == 3
    assert none["extra_replicas"] == 4
    assert none["extra_replicas_awake"] == 0


def test_idle_capacity_per_site(small):
    sc, before, after = small
    report = build_report(sc, after, before)
    table = next(t.frame for t in report.tables() if t.key == "idle_capacity")
    a = row(table, "site", "a")
    # after, site a: 8 cores, 4 powered (n1), 3 requested, 3 x 1.0 used; idle 1 core of 4 = 25 %.
    assert (a["capacity_cores"], a["powered_cores"], a["requested_cores"]) == pytest.approx((8, 4, 3))
    assert a["idle_powered_cores"] == pytest.approx(1.0)
    assert a["idle_share_of_powered_pct"] == pytest.approx(25.0)
    assert a["never_requested_cores"] == pytest.approx(5.0)
    assert row(table, "site", TOTAL)["capacity_cores"] == pytest.approx(12.0)


def test_renewable_self_consumption():
    sc = (ScenarioBuilder("pv").slots(1)
          .region("DE", [300])
          .site("a", pue=1.0, pv_kwp=1, renewable=[0.2], embodied=NO_EMBODIED)
          .node("n1").tenant("t").workload("w", cpu=1000).build())
    p = place(sc, {"w": ["n1"]})
    ev = evaluate(sc, p)
    table = renewables_table(sc, ev, ev)
    a = row(table, "site", "a")
    # Demand 125 W x 1 h = 0.125 kWh against 0.2 kWh generated: 62.5 % self-consumption, 100 % coverage.
    assert a["generation_kwh"] == pytest.approx(0.2)
    assert a["used_kwh_after"] == pytest.approx(0.125)
    assert a["self_consumption_pct_after"] == pytest.approx(62.5)
    assert a["coverage_pct_after"] == pytest.approx(100.0)
    assert a["curtailed_kwh_after"] == pytest.approx(0.075)


# -- the whole report ----------------------------------------------------------------


def test_report_has_every_section_in_order(metro):
    _, _, _, report = metro
    assert [s.key for s in report.sections] == list(SECTIONS)
    assert "location-based" in report.meta["carbon accounting"]
    assert "average" in report.meta["carbon accounting"]
    # The spread baseline breaks SLAs on metro-de; the report says so.
    assert any("spread" in w and "sla" in w for w in report.warnings)


def test_marginal_intensity_is_named():
    sc = two_sites().build_dict()
    sc["signals"][0]["intensity_kind"] = "marginal"
    from edgeplace.topology import scenario_from_dict

    scenario = scenario_from_dict(sc)
    p = place(scenario, {"w1": ["n1"], "w2": ["n1"]})
    report = build_report(scenario, p, p)
    assert "marginal" in report.meta["carbon accounting"]


def test_current_baseline_uses_the_scenarios_placement():
    sc = two_sites().workload("w3", tenant="t1", current=["n3"]).build_dict()
    sc["workloads"][0]["current"] = ["n1"]
    sc["workloads"][1]["current"] = ["n2"]
    from edgeplace.topology import scenario_from_dict

    scenario = scenario_from_dict(sc)
    placement = current_placement(scenario)
    assert placement.assign[:, 0].tolist() == [0, 1, 2]
    assert placement.powered.all()


def test_current_baseline_needs_current_for_every_workload(small):
    sc, _, _ = small
    with pytest.raises(InputError, match="2 workload\\(s\\) have no `current` placement"):
        current_placement(sc)


def test_unknown_baseline_is_an_input_error(small, tmp_path):
    sc, _, after = small
    after.save(sc, tmp_path / "plan.json")
    with pytest.raises(InputError, match="unknown baseline; choose one of spread, binpack"):
        make_report(sc, plan_file=str(tmp_path / "plan.json"), baseline="fastest")


def test_make_report_reads_a_plan_file(small, tmp_path):
    sc, _, after = small
    after.save(sc, tmp_path / "plan.json")
    report = make_report(sc, plan_file=str(tmp_path / "plan.json"), baseline="spread")
    assert report.after_label == "plan (plan.json)"
    assert report.after.totals["energy_kwh"] == pytest.approx(evaluate(sc, after).totals["energy_kwh"])


def test_accounting_section_shows_both_scope2_bases_and_the_hourly_cfe_score():
    # 2 slots at 400 g/kWh, residual mix 500 g/kWh. Site a: 50 % certificates and 0.1 kW
    # contracted in slot 0; n1 runs w (150 W -> 0.15 kWh a slot, PUE 1).
    #   location: 2 x 0.15 x 400 = 120 g; market: slot 0 (0.15 - 0.1) x 0.5 x 500 = 12.5 g,
    #   slot 1 0.15 x 0.5 x 500 = 37.5 g -> 50 g. CFE: 0.1 of 0.3 kWh = 33.3 % (slot 0: 66.7 %, slot 1: 0).
    mix = {"g_per_kwh": 500, "factor_type": "lifecycle", "source": "test figure"}
    sc = (ScenarioBuilder().slots(2).region("DE", 400, factor_type="lifecycle", residual_mix=mix)
          .site("a", pue=1.0, contracts={"renewable_share": 0.5}).node("n1")
          .signal("contracted_supply", [0.1, 0.0], unit="kW", site="a").tenant("t1").workload("w", cpu=2000).build())
    placement = place(sc, {"w": ["n1"]})
    report = build_report(sc, placement, placement)
    section = report.section("accounting")
    table = next(t.frame for t in section.tables if t.key == "accounting_sites")
    a = row(table, "site", "a")
    assert a["certificate_share_pct"] == pytest.approx(50.0) and a["contracted_kwh"] == pytest.approx(0.1)
    assert a["operational_location_kg_after"] == pytest.approx(0.120)
    assert a["operational_market_kg_after"] == pytest.approx(0.050)
    assert a["cfe_score_pct_after"] == pytest.approx(100 / 3)
    assert row(table, "site", TOTAL)["cfe_score_pct_after"] == pytest.approx(100 / 3)
    hourly = next(t.frame for t in section.tables if t.key == "cfe_hourly")
    assert hourly["a"].tolist() == pytest.approx([200 / 3, 0.0])
    assert "residual mix for DE" in " ".join(section.text)
    summary = " ".join(report.section("summary").text)
    assert "market-based" in summary and "hourly carbon-free score 33.3 %" in summary
    explain = report.section("explain").text
    assert explain[1].startswith("node n1 at site a") and any("operational (market-based)" in x for x in explain)
