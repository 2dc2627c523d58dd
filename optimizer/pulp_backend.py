"""PuLP (CBC or HiGHS) on a `LinearModel`: the cross-check back-end.

The same arrays as every back-end, rebuilt as a PuLP problem: one PuLP
variable per column (integer or continuous, with its bounds) and one PuLP
constraint per side of each row (an equality when lo == hi; a range row
lo < hi with both sides finite becomes two constraints). Every variable is
put in the objective, with coefficient 0 where it has no cost, so PuLP knows
all of them even if a column appears in no row.

Solvers: "cbc" runs the CBC binary through `pulp.COIN_CMD` (a `cbc` on the
PATH if there is one, else the binary bundled with PuLP; `PULP_CBC_CMD`, the
class for the bundled binary, is deprecated in PuLP 3.3 and warns); "highs"
runs highspy in-process through `pulp.HiGHS`, inside `quiet()` because
HiGHS prints a banner to stdout when the first `Highs` of a process is made.
CBC writes its MPS and solution files to the temp directory (PuLP's tmpDir),
never the working directory, and its log goes to /dev/null.

Status: PuLP's `sol_status` decides: LpSolutionOptimal -> optimal (proven
within `mip_rel_gap`), LpSolutionIntegerFeasible (a time-limit stop with a
solution) -> feasible, LpSolutionInfeasible -> infeasible, anything else
(no solution found, or "unbounded", which a model with bounded columns
cannot be) -> unknown. Bound: PuLP exposes no dual bound, so it is None
unless optimal, and then objective - mip_rel_gap x |objective| - 1e-6
(the stopping rule of both solvers: relative gap to the incumbent, plus
their absolute gap tolerance).

Intended for small and medium models, the cross-check of CP-SAT and HiGHS.
Building is pure Python, one PuLP term per nonzero: measured 0.13 s for
110,000 nonzeros (200 workloads x 20 nodes x 24 slots), 6.5 s for 3.3 million
(1,000 x 100 x 24), 91 s for 28 million (3,000 x 300 x 24); CBC then writes
an MPS file, 0.16 s, 8.7 s and 166 s for the same models. Beyond a few
million nonzeros use `solve_highs`, which passes the arrays directly.
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import pulp

from edgeplace.optimizer.highs_backend import quiet
from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.result import SolveResult, SolveStatus

SOLVERS = ("cbc", "highs")


def solve_pulp(model: LinearModel, *, solver: str = "cbc", time_limit_s: float = 30.0, threads: int = 1,
               mip_rel_gap: float = 1e-4) -> SolveResult:
    """Solve `model` with CBC or HiGHS through PuLP (see the module docstring)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {solver!r})")
    started = time.perf_counter()
    prob, columns, infeasible = to_pulp(model)
    if infeasible:
        return SolveResult(SolveStatus.infeasible, None, None, None, time.perf_counter() - started, infeasible)
    limit, n_threads = float(max(time_limit_s, 0.01)), int(max(threads, 1))
    if solver == "cbc":
        backend = pulp.COIN_CMD(path=_cbc_path(), msg=False, timeLimit=limit, threads=n_threads, gapRel=mip_rel_gap)
        prob.solve(backend)
    else:
        backend = pulp.HiGHS(msg=False, timeLimit=limit, threads=n_threads, gapRel=mip_rel_gap)
        # HiGHS keeps one process-wide thread pool sized by the first run; a run
        # asking another `threads` fails (model status "Not Set") unless it is reset.
        highspy.Highs.resetGlobalScheduler(True)
        with quiet():
            prob.solve(backend)
    seconds = time.perf_counter() - started
    detail = f"{pulp.LpStatus.get(prob.status, prob.status)} / {pulp.LpSolution.get(prob.sol_status, prob.sol_status)}"

    if prob.sol_status == pulp.LpSolutionInfeasible:
        return SolveResult(SolveStatus.infeasible, None, None, None, seconds, detail)
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return SolveResult(SolveStatus.unknown, None, None, None, seconds, detail)
    values = np.array([np.nan if v.varValue is None else v.varValue for v in columns], dtype=float)
    if np.isnan(values).any():  # the solver said "solution" but left columns without a value
        return SolveResult(SolveStatus.unknown, None, None, None, seconds, detail + "; incomplete solution")
    cost = np.concatenate(model.cost) if model.cost else np.zeros(0)
    objective = float(cost @ values + model.objective_offset)
    if prob.sol_status == pulp.LpSolutionOptimal:
        bound = objective - mip_rel_gap * abs(objective) - 1e-6
        return SolveResult(SolveStatus.optimal, values, objective, bound, seconds, detail)
    return SolveResult(SolveStatus.feasible, values, objective, None, seconds, detail)


def to_pulp(model: LinearModel) -> tuple[pulp.LpProblem, list[pulp.LpVariable], str]:
    """The PuLP problem of `model`, its variables in column order, and why it is
    infeasible when an empty row already shows it (else "")."""
    cost, lower, upper, integer, a, row_lower, row_upper = model.arrays()
    prob = pulp.LpProblem("edgeplace", pulp.LpMinimize)
    lo = [None if not np.isfinite(v) else float(v) for v in lower]
    hi = [None if not np.isfinite(v) else float(v) for v in upper]
    cats = [pulp.LpInteger if i else pulp.LpContinuous for i in integer]
    columns = [prob.add_variable(f"c{j}", lo[j], hi[j], cat=cats[j]) for j in range(model.n_vars)]
    prob.setObjective(pulp.LpAffineExpression(list(zip(columns, cost.tolist()))))

    a = a.tocsr()
    indptr, indices, data = a.indptr.tolist(), a.indices.tolist(), a.data.tolist()
    r_lo, r_hi = row_lower.tolist(), row_upper.tolist()
    inf = float("inf")
    for i in range(model.n_rows):
        s, e = indptr[i], indptr[i + 1]
        lo_i, hi_i = r_lo[i], r_hi[i]
        if s == e:  # no variables: 0 must lie within the bounds
            if lo_i > 1e-9 or hi_i < -1e-9:
                return prob, columns, f"row {i} has no variables but bounds [{lo_i}, {hi_i}]"
            continue
        terms = [(columns[j], v) for j, v in zip(indices[s:e], data[s:e])]
        if lo_i == hi_i:
            prob.addConstraint(pulp.LpConstraint(terms, pulp.LpConstraintEQ, f"r{i}", lo_i))
            continue
        if lo_i > -inf:
            prob.addConstraint(pulp.LpConstraint(terms, pulp.LpConstraintGE, f"r{i}_lo", lo_i))
        if hi_i < inf:
            prob.addConstraint(pulp.LpConstraint(terms, pulp.LpConstraintLE, f"r{i}_hi", hi_i))
    return prob, columns, ""


def _cbc_path() -> str:
    """A `cbc` on the PATH if there is one, else the binary bundled with PuLP."""
    installed = pulp.COIN_CMD(msg=False)
    if installed.available():
        return installed.path
    return pulp.PULP_CBC_CMD.pulp_cbc_path
