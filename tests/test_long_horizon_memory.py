"""Memory of long horizons (issue 15): a year of thousands of jobs on one node.

A placement is replicas x slots (R x T, one byte per cell: 84 MiB for 5,000
jobs over 17,568 slots). Planning such a scenario fits its memory target
only if nothing else is jobs x horizon: the cost model's job arrays scale
with jobs x nodes, the evaluation looks at a few rows at a time, and the
window decomposition changes the plan in place instead of copying it.
These tests fail if one of them goes back to a dense jobs x horizon array.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from bench.longhorizon import batch_year
from edgeplace.optimizer.candidates import Candidate, Found
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.windows import merge_into, restore, slot_window
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import Placement, scenario_from_dict


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


def test_a_window_is_merged_in_place_and_restored_from_its_undo_log():
    sc = _year(300, 1_000)
    placement = greedy_place(price(sc), time_limit_s=0.1)
    original = placement.assign.copy()
    window = slot_window(sc, placement, 96, 288)
    assert window is not None and window.free
    sub = Placement(window.start.assign.copy())
    i, w = next(iter(window.free.items()))
    r = int(window.scenario.workload_first_replica[i])
    ran = np.flatnonzero(sub.assign[r] >= 0)
    sub.assign[r] = -1
    sub.assign[r, ran - ran[0]] = 0  # the job's run moved to the window's first slots
    undo: list = []
    merge_into(sc, placement, window, sub, undo)
    row = int(sc.workload_first_replica[w])
    assert np.array_equal(placement.assign[row, 96:288], sub.assign[r])
    assert not np.array_equal(placement.assign, original)
    restore(placement, undo)
    assert np.array_equal(placement.assign, original)


def test_found_keeps_only_the_plans_that_can_be_chosen():
    sc = _year(20, 96)
    placement = Placement.from_replica_nodes(sc, np.zeros(sc.n_replicas, dtype=np.int64))
    planned = evaluate(sc, placement)
    worse, best, proven = (Candidate(placement, planned, g, name, optimal=name == "proven")
                           for g, name in ((3.0, "worse"), (1.0, "best"), (2.0, "proven")))
    found = Found([worse]) + Found([best, proven])
    assert [c.producer for c in found.candidates] == ["best", "proven"]
    assert found.best is best
