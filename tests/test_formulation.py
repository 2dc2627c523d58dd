"""edgeplace.optimizer.formulation: the MILP prices what `evaluate` measures, has the variables the
eligible pairs need, and only the constraint families the scenario asks for.

On linear power curves without batteries the model is exact: the objective of
an optimal solution equals the evaluated emissions of the placement read back
from it. (With SPECpower curves the model's convex hull may lie below the
curve, with batteries its dispatch may beat the evaluation's greedy one; both
only make the model a relaxation.)
"""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.readback import placement_from_values
from edgeplace.optimizer.result import SolveStatus
from edgeplace.policies.costs import Objective, price
from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder, linear_without_batteries, tiny
from edgeplace.topology import scenario_from_dict
from edgeplace.topology.generate import generate


@pytest.fixture(autouse=True, scope="module")
def fresh_highs_thread_pool():
    yield
    highspy.Highs.resetGlobalScheduler(True)




def families(model) -> set[str]:
    return {name for name, _, n in model.row_family if n}


def family_prefixes(model) -> set[str]:
    """Row families without the per-workload suffix (spread_3 -> spread)."""
    return {name.rstrip("0123456789").rstrip("_") for name in families(model)}


# ---------------------------------------------------------------------------
# The objective is the evaluated emissions


def objective_and_evaluation(sc):
    costs = price(sc)
    form = build(costs)
    result = solve_highs(form.model, time_limit_s=10, mip_rel_gap=1e-9)
    assert result.status is SolveStatus.optimal
    placement = placement_from_values(form, costs, result.values)
    return result.objective, evaluate(sc, placement)


def test_objective_of_tiny_is_its_hand_figure():
    # tests/test_solve.py: 90 + 25 + 40 + 20 g operational; the owned nodes' embodied carbon
    # (422.3744 g, fleet basis) is the same for every plan and not priced.
    objective, ev = objective_and_evaluation(tiny().build())
    assert ev.violations == []
    assert objective == pytest.approx(175.0, rel=1e-9)
    assert objective == pytest.approx(ev.decision_g("location"), rel=1e-6)
    assert ev.emissions_g == pytest.approx(175.0 + 422.3744292237443, rel=1e-9)


def test_objective_of_rented_tiny_prices_embodied_per_powered_slot():
    # Rented by the hour: 175 g operational + 4 powered node-slots x 105.5936 g = 597.3744 g.
    objective, ev = objective_and_evaluation(tiny(owned=False).build())
    assert objective == pytest.approx(597.3744292237443, rel=1e-9)
    assert objective == pytest.approx(ev.decision_g("location"), rel=1e-6) == ev.emissions_g


@pytest.mark.parametrize("seed", range(5))
def test_objective_equals_evaluated_emissions_on_linear_battery_less_instances(seed):
    doc = linear_without_batteries(generate(12, 8, n_slots=3, seed=seed))
    sc = scenario_from_dict(doc)
    objective, ev = objective_and_evaluation(sc)
    assert ev.violations == []
    assert objective == pytest.approx(ev.decision_g("location"), rel=1e-6)


def test_objective_equals_evaluated_emissions_with_pv_and_deferrable_jobs():
    # PV at `a` covers part of slot 1; the job may run in slot 0, 1 or 2; n2 is always on.
    sc = (ScenarioBuilder().slots(3).region("DE", [400, 150, 300])
          .site("a", pue=1.5, renewable=[0, 0.2, 0.05]).node("n1").node("n2", can_power_down=False)
          .site("c", tier="cloud", pue=1.1).node("n3").link("a", "c", 10)
          .user("u", site="a", access_ms=1).tenant("t1")
          .workload("web", cpu=1500, replicas=2, sla_ms=5, users=["u"], usage=0.6)
          .workload("job", cpu=3000, replicas=2, window=(0, 3), duration_minutes=60, usage=0.9).build())
    objective, ev = objective_and_evaluation(sc)
    assert ev.violations == []
    assert objective == pytest.approx(ev.decision_g("location"), rel=1e-6)


def test_the_model_is_a_relaxation_where_a_curve_is_concave():
    # A concave 11-point curve: 100 W idle, 180 W at 10 %, then +2.5 W per 10 % up to 200 W.
    # One replica at 50 % load: the curve says 190 W, the hull (chord 100 -> 200) 150 W.
    points = [100, 180, 182.5, 185, 187.5, 190, 192.5, 195, 197.5, 200, 200]
    sc = (ScenarioBuilder().slots(1).region("DE", 400).site("a", pue=1.0).node("n1", points_w=points)
          .user("u", site="a").tenant("t1").workload("w", cpu=2000, sla_ms=5, users=["u"]).build())
    objective, ev = objective_and_evaluation(sc)
    assert ev.decision_g("location") == pytest.approx(0.190 * 400, rel=1e-9)
    assert objective == pytest.approx(0.150 * 400, rel=1e-6)


# ---------------------------------------------------------------------------
# Variables


@pytest.mark.parametrize("seed", [0, 3])
def test_variable_counts_match_the_eligible_pairs(seed):
    sc = scenario_from_dict(generate(20, 10, n_slots=4, seed=seed, deferrable_share=0.4))
    costs = price(sc)
    form = build(costs)
    blocks = form.model.blocks
    N, T = sc.n_nodes, sc.n_slots
    services = ~sc.workload_deferrable
    assert blocks["y"].size == int(costs.eligible[services].sum())
    jobs = np.flatnonzero(sc.workload_deferrable)
    assert len(jobs) > 0
    starts = sc.workload_latest_start_slot[jobs] - sc.workload_earliest_slot[jobs] + 1
    assert blocks["b"].size == int(starts.sum())
    assert blocks["x"].size == int((starts * costs.eligible[jobs].sum(axis=1)).sum())
    assert (blocks["h"].size, blocks["o"].size, blocks["p"].size) == (N, N * T, N * T)
    # Every y pair is eligible, and y is at most the workload's replicas.
    assert costs.eligible[form.service_w, form.service_n].all()
    _, _, upper, integer, *_ = form.model.arrays()
    assert np.array_equal(upper[form.y], sc.workload_replicas[form.service_w])
    assert integer[form.y].all() and integer[form.x].all() and integer[form.o].all()
    assert not integer[form.p].any()


def test_always_on_nodes_have_o_fixed_to_one():
    sc = tiny().build()  # n2 may not power down
    form = build(price(sc))
    _, lower, upper, *_ = form.model.arrays()
    o = form.o.reshape(sc.n_nodes, sc.n_slots)
    assert lower[o[1]].tolist() == [1.0, 1.0] and lower[o[0]].tolist() == [0.0, 0.0]
    assert upper[o].min() == 1.0


def test_embodied_cost_sits_on_o_and_energy_cost_on_p():
    # tiny, rented: n1 at `a` (PV, so p is priced through grid, not directly), n2 at `c` (PUE 1.0,
    # 400 then 200 g/kWh: 1 W for 1 h = 0.001 kWh -> 0.4 g then 0.2 g).
    sc = tiny(owned=False).build()
    form = build(price(sc))
    cost, *_ = form.model.arrays()
    embodied = 3_700_000 / (4 * 8760)
    assert cost[form.o] == pytest.approx([embodied] * 4)
    # Owned (the default), embodied carbon is the same for every plan: o costs nothing.
    owned_cost, *_ = build(price(tiny().build())).model.arrays()
    assert owned_cost[form.o] == pytest.approx([0.0] * 4)
    p = form.p.reshape(sc.n_nodes, sc.n_slots)
    assert cost[p[0]].tolist() == [0.0, 0.0]
    assert cost[p[1]] == pytest.approx([0.4, 0.2])
    assert "site_grid" in families(form.model)


# ---------------------------------------------------------------------------
# Constraint families: only where the scenario needs them


def base(**workload) -> ScenarioBuilder:
    return (ScenarioBuilder().slots(2).region("DE", 400).site("a", pue=1.0).node("n1").node("n2")
            .site("b", pue=1.0).node("n3").link("a", "b", 1).user("u", site="a")
            .tenant("t1").tenant("t2")
            .workload("w", tenant="t1", replicas=2, sla_ms=5, users=["u"], **workload))


def test_plain_scenario_has_no_spread_never_with_migration_or_supply_rows():
    model = build(price(base().build())).model
    assert family_prefixes(model) == {"service_demand", "host_link", "host_on", "load_def", "util_def",
                                      "capacity_cpu_millicores", "capacity_memory_mib", "power_line"}
    assert not {"g", "kept", "grid"} & set(model.blocks)


def test_spread_rows_only_for_workloads_that_spread():
    b = base(min_sites=2).workload("other", tenant="t2", sla_ms=5, users=["u"])
    sc = b.build()
    model = build(price(sc)).model
    w = sc.index_of("workload", "w")
    assert {f"spread_{w}", f"spread_site_{w}"} <= families(model)
    other = sc.index_of("workload", "other")
    assert not any(f.startswith("spread") and f.endswith(f"_{other}") for f in families(model))
    # One z per site w may use (a and b), and the row sum z >= 2.
    assert model.blocks[f"z_{w}"].size == 2
    *_, row_lower, _ = model.arrays()
    start = next(s for name, s, _ in model.row_family if name == f"spread_{w}")
    assert row_lower[start] == 2.0


def test_spread_tightens_the_host_link_big_m():
    # Two replicas over two sites: at most 2 - 2 + 1 = 1 on any node, so y <= 1 x h (not 2 x h).
    for min_sites, big_m in ((None, 2.0), (2, 1.0)):
        sc = base(min_sites=min_sites).build()
        form = build(price(sc))
        _, _, _, _, a, _, _ = form.model.arrays()
        start, n = next((s, n) for name, s, n in form.model.row_family if name == "host_link")
        h = form.model.blocks["h"]
        coeffs = a[start:start + n][:, h.start:h.start + h.size].toarray()
        assert sorted(set(-coeffs[coeffs != 0])) == [big_m]


def test_never_with_rows_only_with_a_conflict():
    plain = build(price(base().workload("v", tenant="t2").build())).model
    assert "never_with" not in families(plain) and "g" not in plain.blocks
    b = (ScenarioBuilder().slots(2).region("DE", 400).site("a", pue=1.0).node("n1").node("n2")
         .user("u", site="a").tenant("t1", never_with=["t2"]).tenant("t2").tenant("t3")
         .workload("w", tenant="t1").workload("v", tenant="t2").workload("x", tenant="t3"))
    sc = b.build()
    model = build(price(sc)).model
    assert {"never_with", "tenant_present"} <= families(model)
    # g: one per node and conflicted tenant (t1, t2), not t3: 2 nodes x 2 = 4.
    assert model.blocks["g"].size == 4
    rows = next(n for name, _, n in model.row_family if name == "never_with")
    assert rows == sc.n_nodes  # one row per node for the one pair


def test_migration_rows_only_with_a_penalty_and_a_current_placement():
    sc = base(current=["n1", "n3"]).build()
    assert "kept" not in build(price(sc)).model.blocks
    assert "kept" not in build(price(base().build(), Objective(migration_g_per_replica=5.0))).model.blocks
    model = build(price(sc, Objective(migration_g_per_replica=5.0))).model
    assert "kept_le_y" in families(model)
    assert model.blocks["kept"].size == 2  # (w, n1) and (w, n3)
    # The penalty for both replicas is an offset, each kept replica earns it back: 2 x 5 = 10 g.
    assert model.objective_offset == 10.0
    cost, *_ = model.arrays()
    kept = model.blocks["kept"].index
    assert cost[kept].tolist() == [-5.0, -5.0]


def test_battery_rows_only_at_sites_with_a_battery():
    sc = tiny().build()
    assert "battery" not in families(build(price(sc)).model)
    doc = tiny().build_dict()
    doc["sites"][0]["battery_kwh"] = 2.0
    model = build(price(scenario_from_dict(doc))).model
    assert "battery" in families(model)
    assert model.blocks["soc"].size == 2  # one battery site x 2 slots


def test_deferrable_job_rows():
    sc = base().workload("job", tenant="t1", window=(0, 2), duration_minutes=60).build()
    model = build(price(sc)).model
    assert {"job_start", "job_demand", "job_on"} <= families(model)
    no_jobs = build(price(base().build())).model
    assert not {"job_start", "job_demand", "job_on"} & families(no_jobs)
