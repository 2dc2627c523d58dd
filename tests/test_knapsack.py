"""edgeplace.optimizer.knapsack: the Lagrangian bound of per-node knapsacks.

Its value must never exceed the model's optimum, whatever the multipliers:
checked against HiGHS's proven MILP optimum on many small generated
instances (services, jobs, interruptible jobs, spread, never_with, on-site
supply and batteries), and its pieces against an LP solver.
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import pytest
from scipy.optimize import linprog

from edgeplace.optimizer import knapsack, stages
from edgeplace.optimizer.bound import flow_bound_g
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.lagrangian import solve_lp
from edgeplace.optimizer.knapsack import NodeKnapsacks, knapsack_bound_g, tenant_modes
from edgeplace.optimizer.result import SolveStatus
from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.policies.costs import price
from edgeplace.topology import scenario_from_dict
from edgeplace.topology.generate import generate, generate_scenario


@pytest.fixture(autouse=True, scope="module")
def fresh_highs_thread_pool():
    yield
    highspy.Highs.resetGlobalScheduler(True)


def test_the_fractional_knapsacks_are_the_lps_optimum():
    rng = np.random.default_rng(3)
    for _ in range(20):
        groups = int(rng.integers(1, 4))
        items = int(rng.integers(1, 12))
        group = rng.integers(0, groups, items)
        cost = -rng.uniform(0.1, 5.0, items)
        weight = np.where(rng.random(items) < 0.1, 0.0, rng.uniform(0.5, 3.0, items))
        most = rng.integers(1, 4, items).astype(float)
        capacity = rng.uniform(0.0, 8.0, groups)
        units, value = knapsack._fractional_knapsack(group, cost, weight, most, capacity, groups)
        for g in range(groups):
            mine = group == g
            if not mine.any():
                assert value[g] == 0.0
                continue
            lp = linprog(cost[mine], A_ub=weight[mine][None, :], b_ub=[capacity[g]],
                         bounds=list(zip(np.zeros(mine.sum()), most[mine])), method="highs")
            assert value[g] == pytest.approx(lp.fun, rel=1e-9, abs=1e-9)
        assert (units >= 0).all() and (units <= most + 1e-12).all()
        assert (np.bincount(group, weights=units * weight, minlength=groups) <= capacity + 1e-9).all()


def test_tenant_modes_are_the_maximal_conflict_free_sets():
    conflicts = np.zeros((3, 3), dtype=bool)
    assert [m.tolist() for m in tenant_modes(conflicts)] == [[True, True, True]]
    conflicts[1, 2] = conflicts[2, 1] = True
    assert sorted(m.tolist() for m in tenant_modes(conflicts)) == [[True, False, True], [True, True, False]]
    # a triangle: each tenant alone, and every unconflicted tenant always
    tri = np.zeros((4, 4), dtype=bool)
    for a, b in ((0, 1), (1, 2), (0, 2)):
        tri[a, b] = tri[b, a] = True
    assert sorted(m.tolist() for m in tenant_modes(tri)) == [[False, False, True, True], [False, True, False, True],
                                                              [True, False, False, True]]


def _with_interruptible(doc: dict, every: int) -> dict:
    """Every `every`-th deferrable job of a generated document made interruptible."""
    jobs = [w for w in doc["workloads"] if "deferral" in w]
    for w in jobs[::every]:
        w["deferral"]["interruptible"] = True
    return doc


def _instances(n: int):
    rng = np.random.default_rng(11)
    for seed in range(n):
        w, nodes, slots = int(rng.integers(6, 22)), int(rng.integers(6, 9)), int(rng.integers(1, 5))
        options = {"deferrable_share": float(rng.choice([0.0, 0.25, 0.6])),
                   "tight_sla_share": float(rng.choice([0.0, 0.3])), "never_with": bool(rng.random() < 0.7)}
        doc = generate(w, nodes, slots, None, 3, seed, **options)
        if seed % 3 == 0:
            doc = _with_interruptible(doc, 2)
        yield seed, scenario_from_dict(doc, source=f"<generated {seed}>")


def test_the_bound_never_exceeds_the_optimum():
    """Seeded random instances: L at its best multipliers <= HiGHS's proven optimum. The
    Polyak target is twice the optimum so that the steps overshoot: any multipliers must give
    a valid bound, not only good ones."""
    checked = 0
    for seed, sc in _instances(24):
        costs = price(sc)
        opt = solve_highs(build(costs).model, time_limit_s=20, threads=1)
        if opt.status is not SolveStatus.optimal:
            continue
        prices = np.zeros(sc.n_workloads)
        if flow_bound_g(costs, prices=prices) is None:
            continue
        for target in (opt.objective, 2 * opt.objective):
            found = knapsack_bound_g(costs, prices, target, time.perf_counter() + 10, max_steps=200)
            assert found is not None
            assert found.value_g <= opt.bound + 1e-6 * max(abs(opt.bound), 1.0), (seed, found.value_g, opt.bound)
        checked += 1
    assert checked >= 16


@pytest.mark.parametrize("size", [(20, 8, 3, 0), (24, 8, 4, 2), (40, 12, 6, 3)], ids=["20x8x3", "24x8x4", "40x12x6"])
def test_with_enough_steps_it_passes_the_lp_and_the_flow_bound(size):
    """On these generated instances (never_with between two tenants, spread, tight SLAs) the
    binary on/off of the node problems lifts the bound above the LP relaxation (measured: 1,257
    against 1,189 g; 1,390 / 1,350; 1,828 / 1,644), and it stays below the optimum."""
    w, n, t, seed = size
    costs = price(generate_scenario(w, n, n_slots=t, seed=seed))
    form = build(costs)
    _status, lp, _duals, _values = solve_lp(form.model, 60, 1)
    opt = solve_highs(form.model, time_limit_s=60, threads=1)
    prices = np.zeros(w)
    flow = flow_bound_g(costs, prices=prices)
    found = knapsack_bound_g(costs, prices, opt.objective, time.perf_counter() + 30, max_steps=3000)
    assert flow < lp < found.value_g <= opt.bound * (1 + 1e-9)


def test_spread_prices_stay_non_negative_and_count_in_l():
    costs = price(generate_scenario(40, 12, n_slots=6, seed=3))
    nodes = NodeKnapsacks(costs)
    assert len(nodes.spread_w) > 0
    y = nodes.project(np.r_[np.zeros(40), -np.ones(len(nodes.spread_w))])
    assert (y[40:] == 0).all()
    # a spread price raises L by the min_sites cheapest prices and lowers the reduced costs at its site
    base, _ = nodes.evaluate(np.r_[np.zeros(40), np.zeros(len(nodes.spread_w))])
    pi = np.zeros(len(nodes.spread_w))
    w = nodes.spread_w[0]
    pi[nodes.spread_w == w] = 1.0
    raised, g = nodes.evaluate(np.r_[np.zeros(40), pi])
    assert raised <= base + nodes.min_sites[w] * 1.0 + 1e-9
    assert g.shape == (nodes.n_multipliers,)


def test_too_many_pieces_gives_no_bound(monkeypatch):
    costs = price(generate_scenario(20, 8, n_slots=3, seed=0))
    monkeypatch.setattr(knapsack, "MAX_PIECES", 10)
    assert knapsack_bound_g(costs, np.zeros(20), 1e6, time.perf_counter() + 5) is None


def test_a_plan_reports_the_knapsack_bound_where_the_lp_is_not_tried(monkeypatch):
    """Where the full model is too large for the LP (here: the limit lowered to 0), the bound
    stage reports the knapsack bound when it beats the flow bound: its name and value."""
    sc = generate_scenario(24, 8, n_slots=4, seed=2)
    monkeypatch.setattr(stages, "FULL_LP_MAX_VARIABLES", 0)
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=2))
    costs = price(sc.as_forecast())
    flow = flow_bound_g(costs)
    optimum = solve_highs(build(costs).model, time_limit_s=60, threads=1).bound
    assert plan.bound_name == "knapsack"
    assert flow < plan.lower_bound_g <= optimum * (1 + 1e-9)
    assert "knapsack bound" in plan.solver_detail


def test_the_services_lp_solution_is_handed_on_as_a_guide():
    """The bound stage solves the services' LP once and hands on which nodes it opens
    (`Found.guide`): each node's share in [0, 1], 1 for always-on nodes, and a node no service
    may use is left off (jobs are not in that LP)."""
    sc = generate_scenario(40, 12, n_slots=6, seed=3)
    costs = price(sc)
    prices = np.zeros(sc.n_workloads)
    flow_bound_g(costs, prices=prices)
    share = knapsack_bound_g(costs, prices, 1e9, time.perf_counter() + 10, max_steps=5).lp_open_share
    assert ((share >= 0) & (share <= 1)).all() and (share[~sc.node_can_power_down] == 1).all()
    no_service = ~costs.eligible[~sc.workload_deferrable].any(axis=0) & sc.node_can_power_down
    assert (share[no_service] == 0).all() and share.sum() > 0
    run = stages.Planning.start(sc, SolveOptions(solver="cpsat"), None)
    guide = stages.bound(run, stages.greedy(run)).guide
    assert guide is not None and guide.open_share.shape == (sc.n_nodes,)
