"""Large-neighbourhood search keeps plans feasible and never makes them worse."""

import time

import numpy as np

from optimizer import lns
from optimizer.cpsat_backend import solve_cpsat
from optimizer.greedy import greedy_place
from policies.costs import price
from policies.evaluate import evaluate
from topology.generate import generate_scenario


def _better(a, b):
    return (len(a[1].violations), a[1].emissions_g) <= (len(b[1].violations), b[1].emissions_g + 1e-9)


def _cpsat(model, hint, limit_s):
    return solve_cpsat(model, time_limit_s=limit_s, workers=1, hint=hint)


def test_steps_never_worsen_a_feasible_plan_and_keep_it_feasible():
    sc = generate_scenario(n_workloads=200, n_nodes=30, n_slots=1, seed=4)
    costs = price(sc)
    start = greedy_place(costs, time_limit_s=0.0)  # construction only: room to improve
    start_eval = evaluate(sc, start)
    assert start_eval.feasible
    (placement, evaluation), tried, kept = lns.improve(costs, (start, start_eval), deadline=time.perf_counter() + 6,
                                                       better=_better, solve_step=_cpsat, seed=1)
    assert tried >= 2
    assert evaluation.feasible and not evaluation.violations
    assert evaluation.emissions_g <= start_eval.emissions_g + 1e-9
    assert evaluate(sc, placement).emissions_g == evaluation.emissions_g  # the pair returned belongs together
    if kept:
        assert evaluation.emissions_g < start_eval.emissions_g


def test_neighbourhoods_hold_an_open_node_and_only_real_nodes():
    sc = generate_scenario(n_workloads=100, n_nodes=25, n_slots=1, seed=2)
    costs = price(sc)
    placement = greedy_place(costs, time_limit_s=0.0)
    used = np.unique(placement.assign[placement.assign >= 0])
    per_mc = np.ones(sc.n_nodes)
    rng = np.random.default_rng(0)
    for _ in range(20):
        nodes = lns._neighbourhood(costs, placement, per_mc, rng)
        assert len(nodes) and np.isin(nodes, used).any()
        assert nodes.min() >= 0 and nodes.max() < sc.n_nodes and len(np.unique(nodes)) == len(nodes)
