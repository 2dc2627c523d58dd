"""Large models: the MILP restricted to the pairs a relaxation and the greedy plan use."""

import numpy as np

from edgeplace.optimizer.bound import flow_bound_g
from edgeplace.optimizer.pairs import EXTRA_PAIRS_PER_WORKLOAD, placement_pairs, restricted_pairs, smallest_per_row
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology.generate import generate_scenario


def test_flow_support_gives_every_workload_with_cpu_an_eligible_pair():
    sc = generate_scenario(n_workloads=200, n_nodes=30, n_slots=1, seed=6)
    costs = price(sc)
    support = np.zeros(costs.eligible.shape, dtype=bool)
    assert flow_bound_g(costs, support) == flow_bound_g(costs)  # asking for the support changes nothing
    assert not (support & ~costs.eligible).any()
    with_cpu = (sc.workload_requests[:, 0] > 0) & ~sc.workload_deferrable
    assert support[with_cpu].any(axis=1).all()


def test_restricted_pairs_hold_the_guides_and_a_few_more_on_their_nodes():
    sc = generate_scenario(n_workloads=200, n_nodes=30, n_slots=1, seed=6)
    costs = price(sc)
    greedy = placement_pairs(costs, greedy_place(costs, time_limit_s=0.0))
    support = np.zeros(costs.eligible.shape, dtype=bool)
    flow_bound_g(costs, support)
    pool = restricted_pairs(costs, [support, greedy])
    assert (pool >= support).all() and (pool >= greedy).all()
    assert not (pool & ~costs.eligible).any()
    guide_nodes = (support | greedy).any(axis=0)
    assert not pool[:, ~guide_nodes].any()  # extra pairs only on the nodes the guides use
    extra = pool & ~(support | greedy)
    assert extra.sum(axis=1).max() <= EXTRA_PAIRS_PER_WORKLOAD


def test_restricted_solve_plan_is_feasible_and_bounded():
    sc = generate_scenario(n_workloads=300, n_nodes=40, n_slots=1, seed=11)
    plan = solve(sc, SolveOptions(time_limit_s=8, restrict_above_variables=1_000, bound_time_limit_s=0))
    assert plan.model_stats["full_model_variables"] > 1_000
    assert plan.evaluation.feasible and not plan.evaluation.violations
    assert plan.lower_bound_g is not None and plan.lower_bound_g <= plan.objective_g
    assert plan.status in ("feasible", "fallback")  # never "optimal": the restricted model proves nothing


def test_restricted_solve_is_never_worse_than_the_greedy_plan():
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


def test_smallest_per_row_skips_infinite_entries():
    values = np.array([[3.0, 1.0, np.inf, 2.0], [np.inf, np.inf, 5.0, np.inf]])
    mask = smallest_per_row(values, 2)
    assert mask.tolist() == [[False, True, False, True], [False, False, True, False]]
    assert not smallest_per_row(values, 0).any()
