"""edgeplace.optimizer.lagrangian: the node split of the model and the bound L(y).

L(y) bounds the model's optimum from below for any multipliers (weak duality);
at the LP's optimal duals with each node's problem as an LP it equals the LP;
with each node's problem as a MILP it is at least the LP and still at most the
optimum (solved here by HiGHS on small generated instances).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.lagrangian import NodeSplit, lp_duals, solve_lp
from edgeplace.optimizer.result import SolveStatus
from edgeplace.policies.costs import price
from edgeplace.topology.generate import generate_scenario


@pytest.fixture(scope="module", params=[(20, 8, 3, 0), (24, 8, 4, 2)], ids=["20x8x3", "24x8x4"])
def case(request):
    w, n, t, seed = request.param
    costs = price(generate_scenario(w, n, n_slots=t, seed=seed))
    split = NodeSplit(costs)
    status, lp, duals, _values = solve_lp(split.form.model, 60, 1)
    assert status is SolveStatus.optimal
    opt = solve_highs(split.form.model, time_limit_s=60, threads=1)
    assert opt.status is SolveStatus.optimal
    return split, lp, duals, opt.bound


def test_every_row_is_a_nodes_or_couples_nodes(case):
    split, *_ = case
    assert len(split.coupling) + sum(len(r) for r in split.node_rows) == len(split.row_node)
    # a service's demand row couples the nodes it may use (one node: the row is that node's);
    # capacity rows belong to one node
    families = {f: (s, z) for f, s, z in split.form.model.row_family}
    start, size = families["service_demand"]
    form = split.form
    services = np.unique(form.service_w)
    spread = np.array([len(np.unique(form.service_n[form.service_w == w])) for w in services])
    assert ((split.row_node[start:start + size] == -1) == (spread > 1)).all()
    start, size = families["capacity_cpu_millicores"]
    assert (split.row_node[start:start + size] >= 0).all()


def test_at_the_lp_duals_the_node_lps_give_the_lp(case):
    split, lp, duals, _ = case
    y = split.multipliers(lp_duals(split.form.model, duals))
    value, integer_nodes, _ = split.bound(y, integer=False, deadline=float("inf"))
    assert integer_nodes == 0
    assert value == pytest.approx(lp, rel=1e-6)


def test_integer_node_problems_lie_between_the_lp_and_the_optimum(case):
    split, lp, duals, optimum_bound = case
    y = split.multipliers(lp_duals(split.form.model, duals))
    value, integer_nodes, _ = split.bound(y, integer=True, deadline=float("inf"))
    assert integer_nodes == len(split.node_columns)
    assert lp * (1 - 1e-6) <= value <= optimum_bound * (1 + 1e-4) + 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_any_multipliers_give_a_valid_bound(case, seed):
    split, lp, duals, optimum_bound = case
    rng = np.random.default_rng(seed)
    y = split.multipliers(lp_duals(split.form.model, duals * rng.uniform(0, 2, len(duals))))
    assert (y[split.row_node >= 0] == 0).all()  # only coupling rows have multipliers
    value, _, _ = split.bound(y, integer=False, deadline=float("inf"))
    assert value <= lp * (1 + 1e-6)  # never above the LP, the best L over all y


def test_the_bound_holds_after_a_solve_with_another_thread_count(case):
    # HiGHS refuses to run ("Not Set", a dual bound of 0) a model whose thread count differs from
    # its global scheduler's: an earlier 2-thread solve must not turn the node problems into zeros.
    split, lp, duals, optimum_bound = case
    y = split.multipliers(lp_duals(split.form.model, duals))
    alone, _, _ = split.bound(y, integer=True, deadline=float("inf"))
    assert solve_highs(split.form.model, time_limit_s=60, threads=2).status is SolveStatus.optimal
    after, _, _ = split.bound(y, integer=True, deadline=float("inf"))
    assert after == pytest.approx(alone, rel=1e-9)
    assert after <= optimum_bound * (1 + 1e-6)
