"""The Lagrangian bound: the placement model split into one knapsack per node.

Most rows of the placement MILP (`edgeplace.optimizer.formulation`) belong to
one node: its capacity of every resource in every slot, its power lines, the
links that keep it on while something runs on it, never_with on it. The rest
couple nodes: every replica placed (demand), a job's one start, a site's
energy balance with its on-site supply and battery, spread, quotas. Pricing
the coupling rows with multipliers y (Lagrangian relaxation) leaves

    L(y) = sum_i y_i b_i  +  sum_n min { (c - A_C' y) x_n : node n's rows }
           +  sum over the columns of no node of min over their bounds,

where b_i is the bound of coupling row i the multiplier presses on (its
lower bound where y_i > 0, its upper where y_i < 0): one small problem per
node, a knapsack of replicas and job starts with the node's capacity in
every slot (`node capacity priced per slot` by the multipliers of the rows
it shares). L(y) is a lower bound on the model's optimum for *any* y (weak
duality); with the optimal duals of the LP relaxation it equals the LP, and
solving each node's problem as a MILP (its integrality: whole replicas, the
node on or off) can only raise it: the bound is then at least as tight as
the LP (`edgeplace.optimizer.stages.bound` uses it so).

Where the LP of the whole model is too large to solve, no multipliers worth
having were found within a bound's budget (measured, docs/OPTIMIZER.md):
the duals of a restricted model's LP make the node problems take every
workload on every node (at 1,000 x 100 x 1, L = -231 to 2,050 g against a
flow bound of 6,438 g over six rounds of column generation), and
subgradient steps from the flow relaxation's marginal prices stay just
below the flow bound (6,435 g after 25 steps).

Every node problem is solved by HiGHS; a node MILP stopped at its time limit
contributes its proven dual bound, never its incumbent, so the bound stays
valid however short the budget.
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from edgeplace.optimizer.formulation import Formulation, build
from edgeplace.optimizer.highs_backend import quiet
from edgeplace.optimizer.result import SolveStatus
from edgeplace.policies.costs import CostModel

_INF = highspy.kHighsInf
#: Model statuses after which a node problem's (dual) bound is proven: solved, or stopped by a limit.
_RAN = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit,
        highspy.HighsModelStatus.kIterationLimit, highspy.HighsModelStatus.kSolutionLimit,
        highspy.HighsModelStatus.kInterrupt)
#: Row families whose rows exist, one for one, in a restricted model (`build(costs, columns=...)`)
#: and the full one: their multipliers carry over from the restricted LP.
SHARED_FAMILIES = ("service_demand", "job_start", "job_demand", "ijob_demand", "ijob_slots", "site_grid", "battery")


class NodeSplit:
    """The full model and its split into node blocks and coupling rows (module docstring)."""

    def __init__(self, costs: CostModel):
        self.form: Formulation = build(costs)
        m = self.form.model
        cost, lower, upper, integer, a, row_lower, row_upper = m.arrays()
        self.cost, self.lower, self.upper, self.integer = cost, lower, upper, integer
        self.row_lower, self.row_upper = row_lower, row_upper
        self.a = a.tocsr()
        node = self.form.column_node
        # A row is local to node n when every column it touches belongs to n.
        rows = np.repeat(np.arange(m.n_rows), np.diff(self.a.indptr))
        col_node = node[self.a.indices]
        lo = np.full(m.n_rows, np.iinfo(np.int64).max)
        hi = np.full(m.n_rows, -1)
        np.minimum.at(lo, rows, col_node)
        np.maximum.at(hi, rows, col_node)
        empty = np.diff(self.a.indptr) == 0
        self.row_node = np.where((lo == hi) & (lo >= 0) & ~empty, lo, -1)
        self.coupling = np.flatnonzero(self.row_node < 0)
        self.node_columns = [np.flatnonzero(node == n) for n in range(costs.scenario.n_nodes)]
        self.node_rows = [np.flatnonzero(self.row_node == n) for n in range(costs.scenario.n_nodes)]
        self.free_columns = np.flatnonzero(node < 0)
        self.families = m.row_family
        self.offset = m.objective_offset

    def multipliers(self, duals_by_family: dict[str, np.ndarray]) -> np.ndarray:
        """Row multipliers of the full model from per-family duals (0 for families not given)."""
        y = np.zeros(len(self.row_node))
        for family, start, size in self.families:
            d = duals_by_family.get(family)
            if d is not None and len(d) == size:
                y[start:start + size] = d
        y[self.row_node >= 0] = 0.0  # node rows stay as constraints
        return _feasible_signs(y, self.row_lower, self.row_upper)

    def bound(self, y: np.ndarray, *, integer: bool, deadline: float) -> tuple[float, int, np.ndarray]:
        """L(y) (module docstring), the node problems solved with integrality, and the columns'
        values in the minimiser."""
        reduced = self.cost - self.a.T @ y
        rhs = np.where(y > 0, self.row_lower, self.row_upper)
        total = float(y[y != 0] @ rhs[y != 0]) + self.offset
        free = self.free_columns
        total += float(np.minimum(reduced[free] * self.lower[free], reduced[free] * self.upper[free]).sum())
        x = np.where(reduced > 0, self.lower, self.upper)  # the box minimisers, replaced for node columns below
        # The node problems run single-threaded; HiGHS refuses a run ("Not Set") whose thread
        # count differs from its global scheduler's, which an earlier solve may have started.
        highspy.Highs.resetGlobalScheduler(True)
        integer_nodes = 0
        nodes = len(self.node_columns)
        for n in range(nodes):
            left = deadline - time.perf_counter()
            as_mip = integer and left > 0.5
            value, values = self._node(n, reduced, as_mip, max(left / max(nodes - n, 1), 0.05))
            integer_nodes += as_mip
            total += value
            if values is not None:
                x[self.node_columns[n]] = values
        return total, integer_nodes, x

    def _node(self, n: int, reduced: np.ndarray, integer: bool, time_limit_s: float) -> tuple[float, np.ndarray | None]:
        cols, rows = self.node_columns[n], self.node_rows[n]
        sub = self.a[rows][:, cols].tocsc()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(cols), len(rows)
        lp.col_cost_ = reduced[cols]
        lp.col_lower_ = self.lower[cols]
        lp.col_upper_ = np.where(np.isinf(self.upper[cols]), _INF, self.upper[cols])
        lp.row_lower_ = np.where(np.isinf(self.row_lower[rows]), -_INF, self.row_lower[rows])
        lp.row_upper_ = np.where(np.isinf(self.row_upper[rows]), _INF, self.row_upper[rows])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = sub.indptr
        lp.a_matrix_.index_ = sub.indices
        lp.a_matrix_.value_ = sub.data
        if integer:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in self.integer[cols]]
        with quiet():
            h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.passModel(lp)
        h.run()
        info = h.getInfo()
        status = h.getModelStatus()
        if status not in _RAN:  # not run at all (its dual bound would read 0): the box is what is proven
            value = float(np.minimum(reduced[cols] * self.lower[cols], reduced[cols] * self.upper[cols]).sum())
        elif integer:
            value = float(info.mip_dual_bound)
        elif status == highspy.HighsModelStatus.kOptimal:
            value = float(info.objective_function_value)
        else:  # an LP cut short proves nothing about this node: its weakest valid value is the box
            value = float(np.minimum(reduced[cols] * self.lower[cols], reduced[cols] * self.upper[cols]).sum())
        if not np.isfinite(value):
            value = float(np.minimum(reduced[cols] * self.lower[cols], reduced[cols] * self.upper[cols]).sum())
        values = np.asarray(h.getSolution().col_value) if info.primal_solution_status == 2 else None
        return value, values


def _feasible_signs(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A multiplier may press on a bound a row has: y > 0 needs a finite lower bound, y < 0 a
    finite upper one; others are set to 0 (still a valid, weaker, bound)."""
    y = y.copy()
    y[(y > 0) & ~np.isfinite(lower)] = 0.0
    y[(y < 0) & ~np.isfinite(upper)] = 0.0
    return y


def lp_duals(model, result_duals: np.ndarray) -> dict[str, np.ndarray]:
    """Per-family row duals of a model (HiGHS's row_dual: > 0 where a lower bound binds)."""
    return {family: result_duals[start:start + size] for family, start, size in model.row_family}


def solve_lp(model, time_limit_s: float, threads: int
             ) -> tuple[SolveStatus, float | None, np.ndarray | None, np.ndarray | None]:
    """The LP relaxation of `model` by HiGHS: (status, objective, row duals, column values)."""
    from edgeplace.optimizer.highs_backend import highs_from_model

    h = highs_from_model(model, relax=True)
    h.setOptionValue("time_limit", float(max(time_limit_s, 0.01)))
    h.setOptionValue("threads", int(max(threads, 1)))
    highspy.Highs.resetGlobalScheduler(True)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return SolveStatus.unknown, None, None, None
    solution = h.getSolution()
    return (SolveStatus.optimal, float(h.getInfo().objective_function_value),
            np.asarray(solution.row_dual), np.asarray(solution.col_value))


__all__ = ["NodeSplit", "lp_duals", "solve_lp"]
