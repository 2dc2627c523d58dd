"""edgeplace.optimizer.bound: the flow bound is valid (<= LP relaxation <= MILP optimum) and None when CPU runs out.

Hand cases use one slot of 1 h, PUE 1.0, 400 gCO2/kWh and nodes of the
builder's default (4000 millicores, 100 W idle / 200 W max), rented by the
hour (`owned: false`, so the objective charges embodied carbon per powered
slot) with embodied carbon 876 kg over 1 year = 876,000 g / 8760 h = 100 g
per node-hour.
A node on for the slot with nothing on it: 0.1 kWh x 400 = 40 g + 100 g = 140 g
("fixed"), 140 / 4000 = 0.035 g per requested millicore. Dynamic power at the
slope 100 W per unit utilisation: 0.1 kWh x 400 = 40 g per unit, 0.01 g per
millicore at usage 1.
"""

from __future__ import annotations

import highspy
import pytest

from edgeplace.optimizer.bound import flow_bound_g
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.result import SolveStatus
from edgeplace.policies.costs import price
from tests.builders import ScenarioBuilder
from edgeplace.topology.generate import generate_scenario

EMBODIED_100 = {"per_node_kg": 876, "lifetime_years": 1}
#: Costs are floored to whole micrograms per millicore on each arc: at most
#: 1e-6 g x millicores below the exact figure.
FLOOR_G = 1e-6 * 8000


@pytest.fixture(autouse=True, scope="module")
def fresh_highs_thread_pool():
    yield
    highspy.Highs.resetGlobalScheduler(True)


def one_site(slots: int = 1, intensity=400, **site) -> ScenarioBuilder:
    return (ScenarioBuilder().slots(slots).region("DE", intensity)
            .site("a", pue=1.0, embodied=EMBODIED_100, owned=False, **site).user("u", site="a").tenant("t1"))


def three_bounds(sc) -> tuple[float | None, float, float]:
    """(flow bound, LP relaxation optimum, MILP optimum) of the same model."""
    costs = price(sc)
    model = build(costs).model
    lp = solve_highs(model, relax=True, time_limit_s=10)
    mip = solve_highs(model, time_limit_s=10, mip_rel_gap=1e-9)
    assert lp.status is SolveStatus.optimal and mip.status is SolveStatus.optimal
    return flow_bound_g(costs), lp.objective, mip.objective


@pytest.mark.parametrize("cpu,flow,milp", [
    # Half a node: flow 2000 x (0.035 + 0.01) = 90 g; MILP 140 g fixed + 20 g dynamic = 160 g.
    (2000, 90.0, 160.0),
    # A full node: the perfect fill the flow bound assumes is real, 4000 x 0.045 = 180 g = 140 + 40.
    (4000, 180.0, 180.0),
])
def test_hand_cases_on_one_node(cpu, flow, milp):
    sc = one_site().node("n1").workload("w", cpu=cpu, sla_ms=5, users=["u"]).build()
    fb, lp, opt = three_bounds(sc)
    assert fb == pytest.approx(flow, abs=FLOOR_G)
    assert fb <= flow + 1e-9  # floored, never rounded up
    # The LP relaxation is tight here: with one replica the host link is y <= 1 x h.
    assert lp == pytest.approx(milp, rel=1e-9)
    assert opt == pytest.approx(milp, rel=1e-9)


def test_always_on_node_pays_its_fixed_cost_whatever_happens():
    # n1 may not power down: 140 g however empty; w (1000 millicores) adds 1000 x 0.01 = 10 g of dynamic.
    sc = one_site().node("n1", can_power_down=False).node("n2").workload("w", sla_ms=5, users=["u"]).build()
    fb, lp, opt = three_bounds(sc)
    assert fb == pytest.approx(150.0, abs=FLOOR_G)
    assert lp == pytest.approx(150.0, rel=1e-9) and opt == pytest.approx(150.0, rel=1e-9)


def test_energy_is_free_where_the_site_has_supply():
    # 10 kW of PV covers the node: only embodied is charged, 100 g / 4000 x 2000 = 50 g.
    # The MILP pays the whole node's embodied carbon: 100 g.
    sc = one_site(renewable=10).node("n1").workload("w", cpu=2000, sla_ms=5, users=["u"]).build()
    fb, lp, opt = three_bounds(sc)
    assert fb == pytest.approx(50.0, abs=FLOOR_G)
    assert opt == pytest.approx(100.0, rel=1e-9)
    assert fb <= lp + 1e-6 <= opt + 2e-6


def test_deferrable_job_takes_its_cheapest_start():
    # Intensity 400 then 100 g/kWh; the job (2000 millicores, 1 h) may start in slot 0 or 1.
    # Slot 1: fixed 0.1 kWh x 100 = 10 g + 100 g = 110 g -> 2000 x 110 / 4000 = 55 g, dynamic 0.05 kWh x 100 = 5 g.
    sc = one_site(slots=2, intensity=[400, 100]).node("n1").workload("job", cpu=2000, window=(0, 2)).build()
    fb, lp, opt = three_bounds(sc)
    assert fb == pytest.approx(60.0, abs=FLOOR_G)
    # The MILP starts it in slot 1 and powers n1 for that slot only: 10 + 100 + 5 = 115 g.
    assert opt == pytest.approx(115.0, rel=1e-9)
    assert fb <= lp + 1e-6 <= opt + 2e-6


def test_services_keep_their_node_over_the_horizon():
    # Two grids with opposite days: slot 0 is cheap at b, slot 1 at a. Per slot, the 2000-millicore
    # service could follow the cheap grid: 2 x 2000 x (0.1 kWh x 100 + 100 g + 10 g dynamic) / 4000
    # = 120 g. It keeps one node: 2000 x (250 g fixed + 50 g dynamic) / 4000 = 150 g, the bound.
    # The MILP pays the whole node: 250 g + 0.05 kWh x (400 + 100) = 275 g.
    sc = (ScenarioBuilder().slots(2).region("R1", [400, 100]).region("R2", [100, 400])
          .site("a", region="R1", pue=1.0, embodied=EMBODIED_100, owned=False)
          .site("b", region="R2", pue=1.0, embodied=EMBODIED_100, owned=False)
          .node("n1", site="a").node("n2", site="b").user("u", site="a").tenant("t1")
          .workload("w", cpu=2000).build())
    fb, lp, opt = three_bounds(sc)
    assert fb == pytest.approx(150.0, abs=FLOOR_G)
    assert fb <= lp + 1e-6 and opt == pytest.approx(275.0, rel=1e-9)


def test_none_when_the_cpu_demand_exceeds_the_eligible_capacity():
    # 3 x 2000 = 6000 millicores on the one node of 4000 within the SLA.
    sc = one_site().node("n1").workload("w", cpu=2000, replicas=3, sla_ms=5, users=["u"]).build()
    assert flow_bound_g(price(sc)) is None
    # One replica fewer fits (4000 of 4000): a bound again, 4000 x 0.045 = 180 g.
    ok = one_site().node("n1").workload("w", cpu=2000, replicas=2, sla_ms=5, users=["u"]).build()
    assert flow_bound_g(price(ok)) == pytest.approx(180.0, abs=FLOOR_G)


def test_no_services_no_jobs_leaves_the_always_on_nodes():
    sc = one_site().node("n1", can_power_down=False).node("n2").build()
    assert flow_bound_g(price(sc)) == pytest.approx(140.0, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_flow_le_lp_le_milp_on_generated_instances(seed):
    sc = generate_scenario(10, 8, n_slots=2, seed=seed)
    fb, lp, opt = three_bounds(sc)
    assert fb is not None and fb > 0
    tol = 1e-6 * opt
    assert fb <= lp + tol
    assert lp <= opt + tol


@pytest.mark.parametrize("seed", [0, 1])
def test_flow_le_lp_with_deferrable_jobs_and_more_slots(seed):
    sc = generate_scenario(30, 12, n_slots=6, seed=seed, deferrable_share=0.5)
    costs = price(sc)
    fb = flow_bound_g(costs)
    lp = solve_highs(build(costs).model, relax=True, time_limit_s=10)
    assert lp.status is SolveStatus.optimal
    assert fb is not None and 0 < fb <= lp.objective * (1 + 1e-6)
