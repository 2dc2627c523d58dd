"""Column generation: pricing agrees with HiGHS, the bound is valid, the LP is reached."""

import numpy as np
import pytest

from optimizer.colgen import (column_generation, initial_columns, lagrangian_bound, placement_pairs,
                              price_columns)
from optimizer.formulation import build
from optimizer.greedy import greedy_place
from optimizer.highs_backend import highs_from_model, solve_highs
from optimizer.result import SolveStatus
from optimizer.solve import SolveOptions, solve
from policies.costs import Objective, price
from policies.evaluate import evaluate
from topology.generate import generate_scenario

#: Rows a column brings with it: their duals belong to the master's columns only.
PAIR_ROWS = ("host_link", "job_on", "tenant_present", "kept_le_y")


def _master(costs, seed=0):
    columns = initial_columns(costs, greedy_place(costs, time_limit_s=0.1, seed=seed))
    form = build(costs, columns=columns, master=True)
    h = highs_from_model(form.model, relax=True)
    h.run()
    solution = h.getSolution()
    return columns, form, np.asarray(solution.row_dual), np.asarray(solution.col_dual)


@pytest.mark.parametrize("slots", [1, 4])
@pytest.mark.parametrize("objective", [Objective(), Objective(latency_weight_g_per_ms=0.5)])
def test_priced_reduced_costs_are_highs_column_duals(slots, objective):
    # Spread, never_with, a dedicated pool and jobs are all in the generated instance.
    costs = price(generate_scenario(n_workloads=120, n_nodes=25, n_slots=slots, seed=3), objective)
    _columns, form, row_duals, col_duals = _master(costs)
    pricing = price_columns(costs, form, row_duals)
    # HiGHS's column dual also holds the duals of the master's own pair rows; pricing leaves
    # them out (a new column's pair rows start at dual 0), so add them back to compare.
    _, _, _, _, a, _, _ = form.model.arrays()
    pair_duals = np.zeros_like(row_duals)
    for family, start, size in form.model.row_family:
        if family in PAIR_ROWS:
            pair_duals[start:start + size] = row_duals[start:start + size]
    expected = col_duals + a.T @ pair_duals
    np.testing.assert_allclose(pricing.least[form.service_w, form.service_n], expected[form.y], atol=1e-7)
    for i, (j, n, s) in enumerate(zip(form.job_j, form.job_n, form.job_s)):
        got = pricing.job[int(j)][n, s - pricing.job_starts[int(j)][0]]
        assert got == pytest.approx(expected[form.x[i]], abs=1e-7)


def test_column_generation_reaches_the_full_lp_and_every_bound_stays_below_it():
    costs = price(generate_scenario(n_workloads=150, n_nodes=25, n_slots=2, seed=5))
    full = solve_highs(build(costs).model, time_limit_s=60, relax=True)
    assert full.status is SolveStatus.optimal
    columns, form, _, _ = _master(costs)
    first = solve_highs(form.model, time_limit_s=60, relax=True)
    pricing = price_columns(costs, form, first.row_duals)
    early = lagrangian_bound(costs, form, first.values, first.col_duals, first.objective, pricing)
    assert early <= full.objective + 1e-6 * abs(full.objective)
    assert first.objective >= full.objective - 1e-6 * abs(full.objective)  # a restriction never beats the LP
    result = column_generation(costs, columns, time_limit_s=120)
    assert result.converged
    assert result.bound_g == pytest.approx(full.objective, rel=1e-4)
    assert result.bound_g <= full.objective * (1 + 1e-6)
    assert result.columns.sum() < costs.eligible.sum()  # it did not need every pair


def test_out_of_time_column_generation_still_returns_a_valid_bound():
    costs = price(generate_scenario(n_workloads=150, n_nodes=25, n_slots=1, seed=8))
    full = solve_highs(build(costs).model, time_limit_s=60, relax=True)
    result = column_generation(costs, initial_columns(costs), time_limit_s=0.3)
    if result.bound_g is not None:
        assert result.bound_g <= full.objective * (1 + 1e-6)


def test_price_and_branch_plan_is_feasible_keeps_the_greedy_pairs_and_bounds_the_plan():
    sc = generate_scenario(n_workloads=300, n_nodes=40, n_slots=1, seed=11)
    plan = solve(sc, SolveOptions(time_limit_s=8, restrict_above_variables=1_000, bound_time_limit_s=0))
    assert plan.model_stats["full_model_variables"] > 1_000
    assert plan.evaluation.feasible and not plan.evaluation.violations
    assert plan.lower_bound_g is not None and plan.lower_bound_g <= plan.objective_g
    assert plan.status in ("feasible", "fallback")  # never "optimal": the restricted model proves nothing


def test_price_and_branch_is_never_worse_than_the_greedy_plan():
    sc = generate_scenario(n_workloads=300, n_nodes=40, n_slots=1, seed=4)
    greedy = evaluate(sc, greedy_place(price(sc), time_limit_s=1.0))
    assert greedy.feasible
    plan = solve(sc, SolveOptions(time_limit_s=8, restrict_above_variables=1_000, bound_time_limit_s=0))
    assert plan.evaluation.feasible
    assert plan.objective_g <= greedy.emissions_g * (1 + 1e-9)


def test_placement_pairs_are_the_pairs_a_placement_uses():
    sc = generate_scenario(n_workloads=40, n_nodes=10, n_slots=3, seed=2)
    costs = price(sc)
    placement = greedy_place(costs, time_limit_s=0.1)
    pairs = placement_pairs(costs, placement)
    for r in range(sc.n_replicas):
        for n in placement.assign[r][placement.assign[r] >= 0]:
            assert pairs[sc.replica_workload[r], n]
    assert pairs.sum() <= sc.n_replicas
