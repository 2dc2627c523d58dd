"""Memory of long horizons (issue 15): a year of thousands of jobs on one node.

A dense placement is replicas x slots (R x T, one byte per cell: 84 MiB for
5,000 jobs over 17,568 slots). Planning such a scenario fits its memory
target only if nothing is jobs x horizon: a placement stores each replica's
span (`Placement`), the cost model's job arrays scale with jobs x nodes, the
evaluation sums over running replica-slots, and `edgeplace plan` grows with
the jobs, not with jobs x slots. These tests fail if one of them goes back
to a dense jobs x horizon array.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np

from bench.common import run_measured
from bench.longhorizon import batch_year
from edgeplace.optimizer.candidates import Candidate, Found
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.windows import merge_into, slot_window
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import Placement, scenario_from_dict

YEAR_SLOTS = 17_568


def _year(n_jobs: int, slots: int):
    return scenario_from_dict(batch_year(n_jobs, slots, seed=3), source="<batch_year>")


def _array_bytes(obj) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def test_the_cost_models_job_arrays_scale_with_jobs_and_nodes_not_the_horizon():
    short, long = price(_year(400, 480)), price(_year(400, 4_800))
    jobs_x_slots = 400 * 4_800
    for name, value in vars(long).items():
        if isinstance(value, np.ndarray):
            assert value.size < jobs_x_slots / 10, f"CostModel.{name} has {value.size:,} cells (jobs x slots?)"
    # Ten times the slots: only the per-site series (S x T) grow, by the slots added.
    grown = _array_bytes(long) - _array_bytes(short)
    assert grown <= 2 * 8 * (4_800 - 480) * long.scenario.n_sites + 1024


def _peak_bytes(make):
    """(what `make()` returns, the peak of the memory Python allocated while making it [B])."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = make()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_a_placement_stores_the_slots_its_replicas_run_not_the_horizon():
    sc = _year(1_000, YEAR_SLOTS)
    nodes = np.zeros(sc.n_replicas, dtype=np.int64)
    placement, peak = _peak_bytes(lambda: Placement.from_replica_nodes(sc, nodes))
    runs = int((sc.workload_duration_slots * sc.workload_replicas).sum())  # each job's block, one node
    assert placement.span_node.nbytes == runs  # one byte per running replica-slot, none per idle slot
    stored = sum(a.nbytes for a in (placement.span_first_slot, placement.span_offset, placement.span_node))
    assert stored <= 17 * sc.n_replicas + runs + 8
    # Making it: under 1 kB a job (the dense table is 17,568 B a job).
    assert peak < 1_000 * sc.n_replicas, f"{peak / sc.n_replicas:.0f} B a job"


def test_the_evaluation_grows_with_the_jobs_not_jobs_times_slots():
    peaks = {}
    for jobs in (500, 2_000):
        sc = _year(jobs, YEAR_SLOTS)
        placement = Placement.from_replica_nodes(sc, np.zeros(sc.n_replicas, dtype=np.int64))
        evaluate(sc, placement)  # derived tables of the scenario are cached on first use: not counted below
        result, peaks[jobs] = _peak_bytes(lambda: evaluate(sc, placement))
        assert result.feasible
    # 1,500 jobs more: under 1 kB each (an R x T bool mask would add 17,568 B each).
    per_job = (peaks[2_000] - peaks[500]) / 1_500
    assert per_job < 1_000, f"evaluate's peak grows by {per_job:.0f} B a job"


def test_the_evaluation_takes_no_replica_by_slot_temporary():
    sc = _year(1_000, 8_784)
    placement = Placement.from_replica_nodes(sc, np.zeros(sc.n_replicas, dtype=np.int64))
    evaluate(sc, placement)  # derived tables of the scenario are cached on first use: not counted below
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = evaluate(sc, placement)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    cells = sc.n_replicas * sc.n_slots  # one R x T bool mask is this many bytes
    assert result.feasible
    assert peak < cells / 2, f"evaluate took {peak / 2**20:.1f} MiB at its peak, an R x T mask is {cells / 2**20:.1f} MiB"


def test_a_window_is_merged_into_a_copy_and_the_plan_it_came_from_stays():
    sc = _year(300, 1_000)
    placement = greedy_place(price(sc), time_limit_s=0.1)
    original = placement.assign.copy()
    window = slot_window(sc, placement, 96, 288)
    assert window is not None and window.free
    moved = window.start.assign.copy()
    i, w = next(iter(window.free.items()))
    r = int(window.scenario.workload_first_replica[i])
    ran = np.flatnonzero(moved[r] >= 0)
    moved[r] = -1
    moved[r, ran - ran[0]] = 0  # the job's run moved to the window's first slots
    merged = merge_into(sc, placement, window, Placement.from_assign(moved))
    row = int(sc.workload_first_replica[w])
    assert np.array_equal(merged.assign[row, 96:288], moved[r])
    assert np.array_equal(np.delete(merged.assign, row, axis=0), np.delete(original, row, axis=0))
    assert np.array_equal(placement.assign, original)  # the incumbent as it was


def test_a_year_plan_round_trips_through_its_file_form():
    sc = _year(400, YEAR_SLOTS)
    placement = greedy_place(price(sc), time_limit_s=0.1)
    assert sc.workload_interruptible.any()
    back = Placement.from_dict(sc, json.loads(json.dumps(placement.to_dict(sc))))
    for got, want in zip(back.cells(), placement.cells()):
        assert np.array_equal(got, want)
    assert evaluate(sc, back).decision_g("location") == evaluate(sc, placement).decision_g("location")


def _plan_peak_mib(tmp_path: Path, jobs: int) -> float:
    """Peak RSS [MiB] of `edgeplace plan --solver greedy` on a year of `jobs` jobs, as a user runs it."""
    path = tmp_path / f"year-{jobs}.json"
    path.write_text(json.dumps(batch_year(jobs, YEAR_SLOTS, seed=3)))
    done = run_measured([str(Path(sys.executable).parent / "edgeplace"), "plan", str(path), "--solver", "greedy",
                         "--quiet"], timeout_s=120)
    assert done.returncode == 0, done.stderr
    return done.peak_rss_mib


def test_the_plan_command_grows_with_the_jobs_not_jobs_times_slots(tmp_path):
    small, large = _plan_peak_mib(tmp_path, 200), _plan_peak_mib(tmp_path, 2_000)
    # One dense table of the 1,800 jobs more is 30 MiB; planning used to hold several at once.
    dense_mib = 1_800 * YEAR_SLOTS / 2**20
    assert large - small < dense_mib / 2, f"{small:.0f} -> {large:.0f} MiB for 1,800 jobs more"


def test_found_keeps_only_the_plans_that_can_be_chosen():
    sc = _year(20, 96)
    placement = Placement.from_replica_nodes(sc, np.zeros(sc.n_replicas, dtype=np.int64))
    planned = evaluate(sc, placement)
    worse, best, proven = (Candidate(placement, planned, g, name, optimal=name == "proven")
                           for g, name in ((3.0, "worse"), (1.0, "best"), (2.0, "proven")))
    found = Found([worse]) + Found([best, proven])
    assert [c.producer for c in found.candidates] == ["best", "proven"]
    assert found.best is best
