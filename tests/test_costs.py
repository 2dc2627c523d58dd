"""edgeplace.policies.costs: the objective's Scope 2 basis and the fleet embodied basis, priced.

`market_site()`: one slot of 1 h, DE at 400 gCO2/kWh with a residual mix of
500 g/kWh; site a (PUE 1) with 50 % certificates and 0.1 kW contracted
supply; site b (PUE 1) with neither. Nodes 4000 millicores, 100 / 200 W.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.policies.costs import Objective, price
from tests.builders import ScenarioBuilder


def market_site() -> ScenarioBuilder:
    mix = {"g_per_kwh": 500, "factor_type": "lifecycle", "source": "test figure"}
    return (ScenarioBuilder().slots(1).region("DE", 400, factor_type="lifecycle", residual_mix=mix)
            .site("a", pue=1.0, contracts={"renewable_share": 0.5}).node("na")
            .site("b", pue=1.0).node("nb").link("a", "b", 1)
            .signal("contracted_supply", 0.1, unit="kW", site="a").tenant("t1").workload("w", cpu=2000))


def test_location_basis_prices_grid_intensity_and_on_site_supply_only():
    costs = price(market_site().build())
    assert costs.site_intensity_g_per_kwh[:, 0].tolist() == [400.0, 400.0]
    assert costs.site_supply_kwh[:, 0].tolist() == [0.0, 0.0]


def test_market_basis_prices_contracts_and_the_residual_mix():
    # a: supply 0.1 kWh contracted, the rest at 500 x (1 - 0.5) = 250 g/kWh; b: 500 g/kWh.
    costs = price(market_site().build(), Objective(carbon_basis="market"))
    assert costs.site_intensity_g_per_kwh[:, 0].tolist() == pytest.approx([250.0, 500.0])
    assert costs.site_supply_kwh[:, 0].tolist() == pytest.approx([0.1, 0.0])


def test_owned_nodes_embodied_carbon_is_not_priced_rented_nodes_is():
    b = market_site()
    b._doc["sites"][1]["owned"] = False
    costs = price(b.build())
    assert costs.embodied_g_per_slot.tolist() == pytest.approx([0.0, 3_700_000 / 35_040])


def test_the_plan_minimises_the_chosen_basis_and_says_which():
    # w: 150 W for 1 h = 0.15 kWh wherever it runs (each node sleeps when empty).
    # Location: both sites 400 g/kWh, a tie: 60 g either way.
    # Market: on a, 0.1 kWh matched, 0.05 x 250 = 12.5 g; on b 0.15 x 500 = 75 g -> a.
    sc = market_site().build()
    plan = solve(sc, SolveOptions(solver="milp", time_limit_s=5, objective=Objective(carbon_basis="market")))
    assert plan.carbon_basis == "market"
    assert plan.evaluation.powered[:, 0].tolist() == [True, False]
    assert plan.objective_g == pytest.approx(12.5)
    assert plan.evaluation.totals["operational_emissions_g"] == pytest.approx(60.0)
    doc = plan.to_dict(sc)
    assert doc["plan"]["accounting"]["objective_carbon_basis"] == "market"
    assert "residual mix for DE" in doc["plan"]["accounting"]["market_based"]


@pytest.mark.parametrize("solver", ["greedy", "cpsat", "milp"])
def test_the_bound_and_gap_are_on_the_chosen_basis(solver):
    # The market optimum is 12.5 g, the location one 60 g: a bound priced on the location basis
    # would lie above the market plan's objective.
    plan = solve(market_site().build(), SolveOptions(solver=solver, time_limit_s=5, bound_time_limit_s=2,
                                                     objective=Objective(carbon_basis="market")))
    assert plan.planned_objective_g == pytest.approx(12.5)
    assert plan.bound_name in ("lp", "lagrangian", "cpsat", "highs")
    assert plan.lower_bound_g == pytest.approx(12.5, rel=1e-6)
    assert plan.gap_basis == "planned emissions a plan can change (market-based)"


def test_an_unknown_basis_is_refused():
    with pytest.raises(ValueError, match="carbon_basis must be one of location, market"):
        Objective(carbon_basis="scope3")
