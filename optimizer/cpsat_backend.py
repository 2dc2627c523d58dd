"""CP-SAT (OR-Tools) on a `LinearModel`: the main exact back-end.

CP-SAT has only integer variables and integer coefficients, so the model is
translated (`to_cpsat`) and the answer translated back (`solve_cpsat`):

Variables
    An integer column keeps its values; its bounds are rounded inwards. A
    continuous column j becomes an integer X_j in units of its block's
    `resolution` r_j (`VarBlock.resolution`; value = r_j X_j), with bounds
    rounded inwards onto that grid. Any value of the original lies within
    d_j of a grid value inside the bounds: d_j = r_j / 2 when both bounds are
    on the grid, else r_j (integers: d_j = 0).

Rows  lo <= sum_j a_ij x_j <= hi
    In grid units the coefficients are c_ij = a_ij r_j. Each row is scaled by
    f_i = 10^k: the smallest k >= 0 that makes every f_i c_ij an integer (to
    1e-9 relative) with max |f_i c_ij| <= COEF_CAP; otherwise the smallest k
    whose worst rounding error (sum_j max|X_j| / 2f_i) is at most ROW_REL_TOL
    of the row's largest term (max_j |c_ij| max|X_j|), again within COEF_CAP.
    With C_ij = round(f_i c_ij), the coefficient error E_i = sum_j |f_i c_ij -
    C_ij| max|X_j| and the grid allowance D_i = f_i sum_j |a_ij| d_j, the
    integer row is

        ceil(f_i lo - D_i - E_i - eps) <= sum_j C_ij X_j <= floor(f_i hi + D_i + E_i + eps)

    (eps = 1e-9 relative, against floating-point noise in f_i lo; an infinite
    side becomes the row's activity bound, and rows the bounds make redundant
    are left out). So every point of the original, its continuous values
    moved to the nearest grid value, satisfies the integer row: nothing
    feasible is cut off. A row of integer columns with integral scaled
    coefficients and bounds (capacity, demand, start, host links, ...) has
    D_i = E_i = 0 and is exact; so is a row whose only continuous column has
    step 1 and coefficient +-1 (`load`, `kept`), since floor(integer + 1/2) is
    that integer. Other rows hold for the returned values within
    `CpsatModel.row_tolerance` [row units], at most (D_i + 2 E_i + eps) / f_i:
    about the resolutions times the coefficients (<= 0.011 W on the power
    rows of the generated instances, 0 on the integral families).

Objective
    One integer cost scale u per gCO2e: micrograms (u = OBJECTIVE_UNITS_PER_G
    = 10^6) where the objective fits CP-SAT's integer range, C_j = round(u
    cost_j r_j). Milligrams would be too coarse for small models: one 0.01 W
    step of a node in a low-carbon region costs well under 1 mg a slot. A
    large model (thousands of jobs over a year of slots) can exceed the range
    at 1 ug; the scale is then lowered by powers of ten, at most to
    MIN_OBJECTIVE_UNITS_PER_G (1 g), and the coarser rounding enters the
    bound's allowance below. Where even that does not fit, or a row or column
    does not, `to_cpsat` raises `CpsatRangeError` and the caller solves the
    model with HiGHS instead.

What comes back
    `values` in the original units (r_j X_j), `objective` = cost . values +
    offset recomputed in float, and `bound` = CP-SAT's best bound of the
    integer model in gCO2e minus an allowance. Why that is a valid lower bound
    of the original model: its optimum x*, moved onto the grid, is feasible
    for the integer model (see Rows) and costs there at most cost . x* +
    sum_j |cost_j| d_j + max over the box of sum_j (C_j - 10^6 cost_j r_j)
    X_j / 10^6 (the allowance); CP-SAT's bound is at most that cost. This
    holds for OPTIMAL too (then the bound is the integer model's optimum). The
    same argument makes INFEASIBLE of the integer model a proof for the
    original, and so is a row no integer point can meet, or an integer column
    whose bounds hold no integer (both found while translating; CP-SAT is then
    not called). OPTIMAL means optimal on the grid: within the allowance of
    the original optimum (the returned objective may even lie slightly below
    it, since rows hold only within `row_tolerance`).

Speed: the translation is vectorised except one Python call per row and
column to fill the proto; 0.1 s for 110,000 nonzeros (200 workloads x 20
nodes x 24 slots), 3 s for 3.3 million (1,000 x 100 x 24).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.result import SolveResult, SolveStatus

#: The objective's integer scale: CP-SAT minimises micrograms of CO2e.
OBJECTIVE_UNITS_PER_G = 1_000_000
#: The coarsest objective scale tried when micrograms overflow: whole grams.
MIN_OBJECTIVE_UNITS_PER_G = 1.0
#: Rows that cannot be made exactly integral are scaled until their worst
#: coefficient rounding error is at most this share of their largest term ...
ROW_REL_TOL = 1e-6
#: ... or their largest coefficient reaches this (CP-SAT's LP and propagation
#: work in int64 / double; larger coefficients buy nothing).
COEF_CAP = 1e9
#: Continuous blocks without a resolution get max(|bound|) / this, rounded down
#: to a power of ten (a million steps over the range).
DEFAULT_STEPS = 1e6
#: Integer magnitudes above this (domains, row bounds, activities) are refused:
#: they would not be exact in float64 and near CP-SAT's int64 overflow checks.
_MAX_INT = 2.0 ** 52
#: A partial hint (the greedy plan gives only the placement columns) is first
#: completed by a solve with the hinted columns fixed, given at most this share
#: of the time limit: CP-SAT barely uses a partial hint (on a generated
#: 200x20x24 instance, 30 s with the greedy plan as a partial hint ended at
#: 41.1 kg, with it completed (0.05 s) at 22.7 kg, below the greedy 23.1 kg).
HINT_COMPLETION_SHARE = 0.25
#: Full-problem workers, LP-heaviest first. The model is MILP-shaped (big-M
#: links, chains of grid-stepped energy), and CP-SAT's default for fewer than 8
#: workers leaves out `max_lp` (linearization level 2), the one worker that
#: closes its gap: on eight generated 20x6x4 and 30x8x4 instances, 2 workers
#: with this list proved every optimum in 0.1-2.6 s; the default set left a
#: 2.5 % gap after 20 s on one (a PV site with a battery) with 2 workers, and
#: gaps of 2.5 % and 24 % on two with 4 workers.
FULL_SUBSOLVERS = ("max_lp", "default_lp", "core", "no_lp", "quick_restart", "reduced_costs")
_REL_EPS = 1e-9


class CpsatRangeError(ValueError):
    """The model's magnitudes do not fit CP-SAT's integer range (a column's domain,
    a row's activity, or the objective at the coarsest scale)."""


@dataclass
class CpsatModel:
    """The CP-SAT model of a `LinearModel` and what is needed to map back.

    resolution[j], domain_lo[j], domain_hi[j]: value of column j = resolution x
    an integer in [domain_lo, domain_hi]. row_scale[i] = f_i; row_tolerance[i]:
    how far [row units] the mapped-back values may lie outside row i's bounds
    (0 for exact rows). bound_allowance_g: subtracted from CP-SAT's bound.
    objective_units_per_g: the objective's integer scale (module docstring).
    infeasible: why the model is infeasible when the translation already
    shows it (then `model` is incomplete and not solved), else "".
    """

    model: cp_model.CpModel
    resolution: np.ndarray
    domain_lo: np.ndarray
    domain_hi: np.ndarray
    row_scale: np.ndarray
    row_tolerance: np.ndarray
    bound_allowance_g: float
    objective_units_per_g: float = OBJECTIVE_UNITS_PER_G
    infeasible: str = ""


def to_cpsat(model: LinearModel) -> CpsatModel:
    """Translate `model` (see the module docstring); vectorised over the CSR rows.

    Raises ValueError when a column has an infinite bound, `CpsatRangeError`
    when the integer magnitudes would not fit.
    """
    cost, lower, upper, integer, a, row_lower, row_upper = model.arrays()
    r, d, x_lo, x_hi = _columns(model, lower, upper, integer)
    no_integer = np.flatnonzero(x_lo > x_hi)  # only integer columns can be empty
    x_hi = np.maximum(x_hi, x_lo)  # keep the arithmetic below finite; reported at the end
    max_x = np.maximum(np.abs(x_lo), np.abs(x_hi))

    # -- rows: scale, round, relax by the grid and rounding allowances ----------------
    a = a.tocsr()
    a.sort_indices()
    m = a.shape[0]
    counts = np.diff(a.indptr)
    row_of = np.repeat(np.arange(m), counts)
    cols = a.indices
    c = a.data * r[cols]
    f = _row_scales(c, cols, row_of, counts, max_x, m)
    fc = c * f[row_of]
    big_c = np.rint(fc)
    coef_err = np.bincount(row_of, np.abs(fc - big_c) * max_x[cols], minlength=m)  # E_i
    grid_allow = f * np.bincount(row_of, np.abs(a.data) * d[cols], minlength=m)  # D_i
    slack = grid_allow + coef_err
    act_lo = np.bincount(row_of, np.minimum(big_c * x_lo[cols], big_c * x_hi[cols]), minlength=m)
    act_hi = np.bincount(row_of, np.maximum(big_c * x_lo[cols], big_c * x_hi[cols]), minlength=m)
    with np.errstate(invalid="ignore"):  # inf bounds stay inf
        f_lo, f_hi = f * row_lower, f * row_upper
        lo_int = np.ceil(f_lo - slack - _REL_EPS * np.maximum(1.0, np.abs(f_lo)))
        hi_int = np.floor(f_hi + slack + _REL_EPS * np.maximum(1.0, np.abs(f_hi)))
    lo_int = np.where(np.isfinite(row_lower), np.maximum(lo_int, act_lo), act_lo)
    hi_int = np.where(np.isfinite(row_upper), np.minimum(hi_int, act_hi), act_hi)
    too_big = max(np.abs(act_lo).max(initial=0), np.abs(act_hi).max(initial=0))
    if too_big > _MAX_INT:
        i = int(np.argmax(np.maximum(np.abs(act_lo), np.abs(act_hi))))
        raise CpsatRangeError(f"row {i} ({_family(model, i)}) reaches {too_big:.3g} in CP-SAT integer units, "
                              f"above {_MAX_INT:.3g}")
    with np.errstate(invalid="ignore"):
        tol_hi = np.where(np.isfinite(row_upper), (hi_int + coef_err) / f - row_upper, 0.0)
        tol_lo = np.where(np.isfinite(row_lower), row_lower - (lo_int - coef_err) / f, 0.0)
    row_tolerance = np.maximum(0.0, np.maximum(tol_hi, tol_lo))

    # -- objective: one integer scale, micrograms unless that overflows ---------------
    units = _objective_units(cost * r, max_x)
    obj_exact = cost * r * units
    obj_c = np.rint(obj_exact)
    # sum_j (C_j - exact_j) X_j over the box: how far the integer objective can exceed the exact one.
    obj_err = np.maximum((obj_c - obj_exact) * x_lo, (obj_c - obj_exact) * x_hi).sum()
    allowance = float(np.abs(cost) @ d + max(obj_err, 0.0) / units)

    out = CpsatModel(cp_model.CpModel(), r, x_lo, x_hi, f, row_tolerance, allowance, units)
    bad = np.flatnonzero(lo_int > hi_int)
    if len(no_integer):
        j = int(no_integer[0])
        out.infeasible = (f"column {j} (block {_block_of(model, j)}) is integer but its bounds "
                          f"[{lower[j]}, {upper[j]}] hold no integer")
        return out
    if len(bad):
        i = int(bad[0])
        out.infeasible = f"row {i} ({_family(model, i)}) cannot hold for any values within the bounds"
        return out

    # -- the proto, built directly (a Python loop per row, no expression objects) ------
    proto = out.model.proto
    for lo_j, hi_j in zip(x_lo.astype(np.int64).tolist(), x_hi.astype(np.int64).tolist()):
        proto.variables.add().domain.extend((lo_j, hi_j))
    keep_nz = big_c != 0
    redundant = (lo_int <= act_lo) & (hi_int >= act_hi)
    ptr = np.r_[0, np.cumsum(np.bincount(row_of[keep_nz], minlength=m))].tolist()
    nz_cols = cols[keep_nz].tolist()
    nz_coef = big_c[keep_nz].astype(np.int64).tolist()
    lo_list, hi_list = lo_int.astype(np.int64).tolist(), hi_int.astype(np.int64).tolist()
    for i in np.flatnonzero(~redundant).tolist():
        lin = proto.constraints.add().linear
        s, e = ptr[i], ptr[i + 1]
        lin.vars.extend(nz_cols[s:e])
        lin.coeffs.extend(nz_coef[s:e])
        lin.domain.extend((lo_list[i], hi_list[i]))
    obj_cols = np.flatnonzero(obj_c != 0)
    proto.objective.vars.extend(obj_cols.tolist())
    proto.objective.coeffs.extend(obj_c[obj_cols].astype(np.int64).tolist())
    return out


def solve_cpsat(model: LinearModel, *, time_limit_s: float = 30.0, workers: int = 2,
                hint: dict[int, float] | None = None, seed: int = 0) -> SolveResult:
    """Solve `model` with CP-SAT (see the module docstring for the translation).

    `hint`: column -> value in the model's units (a partial assignment, e.g.
    the greedy plan); values are moved onto the column's grid and domain, and
    a partial hint is completed first (see HINT_COMPLETION_SHARE; `detail`
    says whether that worked). The time limit covers completion and search.
    Status: OPTIMAL -> optimal, FEASIBLE (e.g. stopped by the time limit) ->
    feasible, INFEASIBLE -> infeasible, UNKNOWN -> unknown; MODEL_INVALID is
    a bug in the translation and raises ValueError with CP-SAT's message.
    `bound` is a valid lower bound of the original model (allowance
    subtracted), None when CP-SAT has none.
    """
    started = time.perf_counter()
    cp = to_cpsat(model)
    if cp.infeasible:
        return SolveResult(SolveStatus.infeasible, None, None, None, time.perf_counter() - started, cp.infeasible)
    solve_started = time.perf_counter()
    hint_note = ""
    if hint:
        cols = np.fromiter(hint.keys(), dtype=np.int64, count=len(hint))
        vals = np.fromiter(hint.values(), dtype=float, count=len(hint))
        if cols.min() < 0 or cols.max() >= model.n_vars:
            raise ValueError(f"hint columns must lie in 0..{model.n_vars - 1} (got {cols.min()}..{cols.max()})")
        grid = np.clip(np.rint(vals / cp.resolution[cols]), cp.domain_lo[cols], cp.domain_hi[cols]).astype(np.int64)
        if len(np.unique(cols)) < model.n_vars:
            full = _complete_hint(cp, cols, grid, HINT_COMPLETION_SHARE * time_limit_s, workers, seed)
            hint_note = "; partial hint, not completed" if full is None else "; hint completed"
            if full is not None:
                cols, grid = np.arange(model.n_vars), full
        cp.model.proto.solution_hint.vars.extend(cols.tolist())
        cp.model.proto.solution_hint.values.extend(grid.tolist())

    solver = _solver(time_limit_s - (time.perf_counter() - solve_started), workers, seed)
    status = solver.solve(cp.model)
    seconds = time.perf_counter() - started
    detail = solver.status_name(status) + hint_note
    if status == cp_model.MODEL_INVALID:
        raise ValueError(f"CP-SAT rejected the translated model (a bug in edgeplace.optimizer.cpsat_backend): "
                         f"{cp.model.validate()}")
    if status == cp_model.INFEASIBLE:
        return SolveResult(SolveStatus.infeasible, None, None, None, seconds, detail)

    bound = None
    raw_bound = solver.best_objective_bound
    if math.isfinite(raw_bound):
        bound = raw_bound / cp.objective_units_per_g + model.objective_offset - cp.bound_allowance_g
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(SolveStatus.unknown, None, None, bound, seconds, detail)
    values = np.asarray(solver.response_proto.solution, dtype=float) * cp.resolution
    cost, lower, upper = (np.concatenate(v) if v else np.zeros(0) for v in (model.cost, model.lower, model.upper))
    values = np.clip(values, lower, upper)  # step x integer may pass a bound by float rounding (1e-16)
    objective = float(cost @ values + model.objective_offset)
    kind = SolveStatus.optimal if status == cp_model.OPTIMAL else SolveStatus.feasible
    return SolveResult(kind, values, objective, bound, seconds, detail)


def _solver(time_limit_s: float, workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(max(time_limit_s, 0.01))
    solver.parameters.num_workers = int(max(workers, 1))
    solver.parameters.random_seed = int(seed)
    solver.parameters.log_search_progress = False
    if workers <= 1:  # one sequential search: give it max_lp's linearization
        solver.parameters.linearization_level = 2
    elif workers < 8:  # from 8 workers, CP-SAT's default set includes max_lp
        solver.parameters.subsolvers.extend(FULL_SUBSOLVERS)
    return solver


def _complete_hint(cp: CpsatModel, cols: np.ndarray, grid: np.ndarray, time_limit_s: float, workers: int,
                   seed: int) -> np.ndarray | None:
    """A complete assignment extending a partial hint: the model with the hinted
    columns fixed, solved for the rest (mostly continuous, so presolve and the
    LP settle it fast). None when that finds nothing in `time_limit_s` (the
    partial hint is then passed as it is)."""
    sub = cp_model.CpModel()
    sub.proto.copy_from(cp.model.proto)
    for j, v in zip(cols.tolist(), grid.tolist()):
        domain = sub.proto.variables[j].domain
        domain.clear()
        domain.extend((v, v))
    solver = _solver(time_limit_s, workers, seed)
    if solver.solve(sub) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return np.asarray(solver.response_proto.solution, dtype=np.int64)


def _columns(model: LinearModel, lower: np.ndarray, upper: np.ndarray, integer: np.ndarray):
    """Per column: resolution r, grid allowance d, integer domain [x_lo, x_hi]
    (empty, x_lo > x_hi, only for an integer column whose bounds hold no integer)."""
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        j = int(np.flatnonzero(~(np.isfinite(lower) & np.isfinite(upper)))[0])
        raise ValueError(f"CP-SAT needs finite bounds on every variable; column {j} (block "
                         f"{_block_of(model, j)}) has [{lower[j]}, {upper[j]}]: bound it from the data")
    r = model.resolutions()
    r[integer] = 1.0
    missing = np.isnan(r)
    if missing.any():  # a continuous block without a resolution: a million steps over its range
        span = np.maximum(np.maximum(np.abs(lower), np.abs(upper)), 1e-12)
        for block in model.blocks.values():
            sl = slice(block.start, block.start + block.size)
            if missing[sl].any():
                r[sl] = 10.0 ** np.floor(np.log10(span[sl].max() / DEFAULT_STEPS))
    lo_s, hi_s = lower / r, upper / r
    x_lo = np.ceil(lo_s - _REL_EPS * np.maximum(1.0, np.abs(lo_s)))
    x_hi = np.floor(hi_s + _REL_EPS * np.maximum(1.0, np.abs(hi_s)))
    on_grid = (np.abs(lo_s - np.rint(lo_s)) <= _REL_EPS * np.maximum(1.0, np.abs(lo_s))) & \
              (np.abs(hi_s - np.rint(hi_s)) <= _REL_EPS * np.maximum(1.0, np.abs(hi_s)))
    d = np.where(integer, 0.0, np.where(on_grid, r / 2, r))
    empty = (x_lo > x_hi) & ~integer  # a range narrower than one step: round outwards
    x_lo = np.where(empty, np.floor(lo_s), x_lo)
    x_hi = np.where(empty, np.ceil(hi_s), x_hi)
    if max(np.abs(x_lo).max(initial=0), np.abs(x_hi).max(initial=0)) > _MAX_INT:
        j = int(np.argmax(np.maximum(np.abs(x_lo), np.abs(x_hi))))
        raise CpsatRangeError(f"column {j} (block {_block_of(model, j)}) spans {max(abs(x_lo[j]), abs(x_hi[j])):.3g} "
                         f"steps of {r[j]:g}: coarsen the block's resolution")
    return r, d, x_lo, x_hi


def _objective_units(cost_per_step: np.ndarray, max_x: np.ndarray) -> float:
    """The finest objective scale (integer units per gCO2e, a power of ten from
    OBJECTIVE_UNITS_PER_G down to MIN_OBJECTIVE_UNITS_PER_G) at which the largest
    objective value over the box, sum_j |round(u c_j)| max|X_j|, fits _MAX_INT."""
    units = float(OBJECTIVE_UNITS_PER_G)
    while True:
        if float(np.abs(np.rint(cost_per_step * units)) @ max_x) <= _MAX_INT:
            return units
        if units <= MIN_OBJECTIVE_UNITS_PER_G:
            raise CpsatRangeError(f"the objective exceeds CP-SAT's integer range even in whole grams "
                                  f"(up to {float(np.abs(cost_per_step) @ max_x):.3g} g)")
        units /= 10.0


def _row_scales(c: np.ndarray, cols: np.ndarray, row_of: np.ndarray, counts: np.ndarray, max_x: np.ndarray,
                m: int) -> np.ndarray:
    """f_i = 10^k per row (see the module docstring): the smallest k >= 0 that
    makes every coefficient integral, if the coefficients stay <= COEF_CAP;
    else the smallest k whose worst rounding error sum_j 0.5 max|X_j| / f_i is
    at most ROW_REL_TOL of the row's largest term max_j |c_ij| max|X_j|,
    capped so the largest coefficient stays <= COEF_CAP."""
    abs_c = np.abs(c)
    max_c = np.zeros(m)
    np.maximum.at(max_c, row_of, abs_c)
    max_term = np.zeros(m)
    np.maximum.at(max_term, row_of, abs_c * max_x[cols])
    sum_x = np.bincount(row_of, max_x[cols], minlength=m)
    safe_c = np.where(max_c > 0, max_c, 1.0)
    k_cap = np.floor(np.log10(COEF_CAP / safe_c))
    with np.errstate(divide="ignore"):
        k_need = np.ceil(np.log10(np.maximum(0.5 * sum_x, 1e-300) / np.maximum(ROW_REL_TOL * max_term, 1e-300)))
    k = np.minimum(k_need, k_cap)
    # Exactness, k = 0, 1, ...: only the entries of rows still undecided are looked at.
    pending = np.ones(m, dtype=bool)
    entries = np.arange(len(c))
    for kk in range(0, int(np.clip(k_cap.max(initial=0), 0, 15)) + 1):
        sc = c[entries] * 10.0 ** kk
        bad = np.abs(sc - np.rint(sc)) > _REL_EPS * np.maximum(1.0, np.abs(sc))
        exact = pending & (kk <= k_cap) & (np.bincount(row_of[entries], bad, minlength=m) == 0)
        k[exact] = kk
        pending &= ~exact
        entries = entries[pending[row_of[entries]]]
        if not len(entries):
            break
    k[(counts == 0) | (max_c == 0)] = 0
    return 10.0 ** k


def _block_of(model: LinearModel, col: int) -> str:
    for block in model.blocks.values():
        if block.start <= col < block.start + block.size:
            return repr(block.name)
    return "?"


def _family(model: LinearModel, row: int) -> str:
    for family, start, size in model.row_family:
        if start <= row < start + size:
            return family
    return "?"
