"""HiGHS (highspy) on a `LinearModel`: the MILP, or its LP relaxation as a lower bound."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import highspy
import numpy as np

from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.result import SolveResult, SolveStatus

_INF = highspy.kHighsInf


@contextmanager
def quiet() -> Iterator[None]:
    """Send the process's C-level stdout and stderr (fds 1 and 2) to /dev/null.

    HiGHS prints a "Running HiGHS ..." banner straight to fd 1 when the first
    `Highs` object of a process is created, before `output_flag` can be set;
    the CLI prints its JSON to stdout, so that banner would corrupt it. Python's
    and C's buffers are flushed on the way in and out so nothing written
    before or inside the block lands on the wrong side. The redirection is
    process-wide: keep the block short (object construction, not a long solve,
    unless the solver itself may print). Falls back to doing nothing where the
    fds cannot be duplicated.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _flush_c_stdio() -> None:
    """fflush(NULL): push out C stdio buffers (HiGHS writes through them)."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no libc symbol table (e.g. some Windows builds)
        pass


def highs_from_model(model: LinearModel, *, relax: bool = False) -> highspy.Highs:
    """A Highs instance holding `model` (integrality dropped when `relax`)."""
    cost, lower, upper, integer, a, row_lower, row_upper = model.arrays()
    a = a.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = model.n_vars, model.n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = np.where(np.isinf(upper), _INF, upper)
    lp.row_lower_ = np.where(np.isinf(row_lower), -_INF, row_lower)
    lp.row_upper_ = np.where(np.isinf(row_upper), _INF, row_upper)
    lp.offset_ = model.objective_offset
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    if not relax and integer.any():
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in integer]
    with quiet():
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
    h.passModel(lp)
    return h


def solve_highs(model: LinearModel, *, time_limit_s: float = 30.0, threads: int = 1,
                relax: bool = False, mip_rel_gap: float = 1e-4, hint: dict[int, float] | None = None) -> SolveResult:
    """Solve with HiGHS. `relax=True` drops integrality: its optimum is a lower bound.

    `hint`: column -> value, a (partial) start for the MIP (HiGHS completes the rest)."""
    try:
        return _solve(model, time_limit_s, threads, relax, mip_rel_gap, hint)
    finally:  # the Highs object is gone now
        release_freed_memory()


def release_freed_memory() -> None:
    """Hand the heap memory freed so far back to the system (glibc `malloc_trim`; elsewhere a
    no-op). A HiGHS MIP of a few thousand columns peaks at tens of MiB, freed when the solve ends;
    glibc keeps those pages resident, and a long horizon's many window solves (each on a new
    HiGHS thread, so another malloc arena) would pile them up: measured 125 -> 218 MiB over 40
    windows of one year of jobs, 132 MiB with this after each solve. Changes no result."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _solve(model: LinearModel, time_limit_s: float, threads: int, relax: bool, mip_rel_gap: float,
           hint: dict[int, float] | None) -> SolveResult:
    integer_model = not relax and bool(model.stats()["integer_variables"])
    started = time.perf_counter()
    h = highs_from_model(model, relax=relax)
    h.setOptionValue("time_limit", float(max(time_limit_s, 0.01)))
    h.setOptionValue("threads", int(max(threads, 1)))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    # HiGHS sizes one thread pool per process at its first run; a later run asking
    # for another thread count would fail with "Not Set" unless the pool is reset.
    highspy.Highs.resetGlobalScheduler(True)
    if hint and integer_model:
        cols = np.fromiter(hint.keys(), dtype=np.int32, count=len(hint))
        h.setSolution(len(cols), cols, np.fromiter(hint.values(), dtype=float, count=len(hint)))
    h.run()
    seconds = time.perf_counter() - started
    status = h.getModelStatus()
    info = h.getInfo()
    detail = h.modelStatusToString(status)
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = np.asarray(h.getSolution().col_value) if has_solution else None
    objective = float(info.objective_function_value) if has_solution else None
    is_mip = integer_model
    if status == highspy.HighsModelStatus.kOptimal:
        bound = float(info.mip_dual_bound) if is_mip else objective
        return SolveResult(SolveStatus.optimal, values, objective, bound, seconds, detail)
    if status in (highspy.HighsModelStatus.kInfeasible,):
        return SolveResult(SolveStatus.infeasible, None, None, None, seconds, detail)
    bound = float(info.mip_dual_bound) if is_mip and np.isfinite(info.mip_dual_bound) else None
    if values is not None:
        return SolveResult(SolveStatus.feasible, values, objective, bound, seconds, detail)
    return SolveResult(SolveStatus.unknown, None, None, bound, seconds, detail)
