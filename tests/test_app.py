"""edgeplace.app: comparison tables and headlines that name their bases and a fair baseline.

The hand scenario `near_far()` (1 slot of 1 h, DE 400 gCO2/kWh, PUE 1.0, nodes
of 4000 millicores at 100 W idle / 200 W max, owned: 105.5936 g embodied each):

    site a: n1, user u 1 ms away        site b: n2, 20 ms from a
    workload w: 2 replicas x 1000 millicores, SLA 5 ms for u (only n1 meets it)

- spread (least allocated, all on) puts one replica on each node: each 125 W
  -> 0.125 kWh x 400 = 50 g; 100 g, 0.25 kWh, and the replica on n2 breaks the SLA;
- binpack (most allocated, idle nodes sleep): both on n1, 150 W -> 0.15 kWh ->
  60 g, n2 asleep; meets every rule;
- nearest (all nodes on): both on n1 (60 g) plus n2 idle (0.1 kWh, 40 g): 100 g,
  0.25 kWh; meets every rule;
- greedy-carbon: both on n1, n2 asleep: 60 g.
Embodied (fleet): 2 x 105.5936 = 211.1872 g for every placement.
The reference is the least-emissions baseline that meets every rule: binpack
(60 g; greedy-carbon ties and comes later). The plan (60 g) against it:
+0.0 %, +0.0 kWh; against spread (breaks 1 SLA rule): -40.0 % (-0.04 kg), -0.1 kWh.
"""

from __future__ import annotations

import pytest

from edgeplace.app import compare_policies, headline, reference_baseline, saving_line
from tests.builders import ScenarioBuilder

EMBODIED_KG = 2 * 3_700_000 / (4 * 8760) / 1000


def near_far() -> ScenarioBuilder:
    return (ScenarioBuilder().slots(1).region("DE", 400, factor_type="lifecycle")
            .site("a", pue=1.0).node("n1").site("b", pue=1.0).node("n2").link("a", "b", 20)
            .user("u", site="a", access_ms=1).tenant("t1")
            .workload("w", cpu=1000, replicas=2, sla_ms=5, users=["u"]))


@pytest.fixture(scope="module")
def table():
    return compare_policies(near_far().build(), ["spread", "binpack", "nearest", "greedy-carbon", "greedy"])


def by(table, policy):
    return table.loc[table["policy"] == policy].iloc[0]


def test_rows_show_operational_and_energy_first_and_embodied_on_the_fleet_basis(table):
    assert list(table.columns[:9]) == ["policy", "operational_location_kg", "d_operational_pct", "energy_kwh",
                                       "d_energy_kwh", "mean_power_w", "renewable_kwh", "embodied_fleet_kg",
                                       "d_embodied_kg"]
    assert by(table, "spread")["operational_location_kg"] == pytest.approx(0.100)
    assert by(table, "spread")["energy_kwh"] == pytest.approx(0.25)
    assert by(table, "binpack")["operational_location_kg"] == pytest.approx(0.060)
    assert by(table, "nearest")["operational_location_kg"] == pytest.approx(0.100)
    assert table["embodied_fleet_kg"].tolist() == pytest.approx([EMBODIED_KG] * len(table))
    assert by(table, "spread")["sla_viol"] == 1 and not by(table, "spread")["meets_rules"]


def test_the_reference_is_the_best_baseline_that_meets_every_rule(table):
    ref, meets = reference_baseline(table)
    assert (ref["policy"], meets) == ("binpack", True)
    assert table.attrs == {"reference": "binpack", "reference_meets_rules": True, "carbon_basis": "location"}
    # d_* against binpack: spread +66.7 % operational (100 / 60 g), +0.1 kWh.
    assert by(table, "spread")["d_operational_pct"] == pytest.approx((0.100 / 0.060 - 1) * 100)
    assert by(table, "spread")["d_energy_kwh"] == pytest.approx(0.1)


def test_without_a_rule_meeting_baseline_the_fewest_violations_is_the_reference():
    table = compare_policies(near_far().build(), ["spread"])
    ref, meets = reference_baseline(table)
    assert (ref["policy"], meets) == ("spread", False)


def test_headline_says_operational_first_names_the_baseline_and_whether_it_meets_the_rules(table):
    lines = headline(table, "greedy", "location")
    assert lines[0] == "greedy (meets every rule):"
    assert lines[1] == ("  vs binpack (the best baseline that meets every rule): operational +0.0 % (+0.00 kg, "
                        "location-based), energy +0.0 kWh; embodied (fleet) unchanged")
    assert lines[2] == ("  vs spread (Kubernetes-default spreading, breaks 1 SLA rule(s)): operational -40.0 % "
                        "(-0.04 kg, location-based), energy -0.1 kWh; embodied (fleet) unchanged")


def test_saving_line_reports_a_change_of_rented_embodied_carbon():
    row = {"operational_location_kg": 1.0, "energy_kwh": 2.0, "embodied_fleet_kg": 3.0}
    ref = {"operational_location_kg": 2.0, "energy_kwh": 5.0, "embodied_fleet_kg": 3.5}
    assert saving_line(row, ref, "location") == ("operational -50.0 % (-1.00 kg, location-based), energy -3.0 kWh; "
                                                 "embodied (fleet) -0.50 kg (rented capacity powered for less)")


def test_market_basis_tables_name_it():
    table = compare_policies(near_far().build(), ["spread", "binpack"], carbon_basis="market")
    assert "operational_market_kg" in table.columns and "operational_location_kg" not in table.columns
    assert table.attrs["carbon_basis"] == "market"
