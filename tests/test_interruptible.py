"""Interruptible jobs: pause and resume at slot boundaries, runs of at least a minimum length.

The hand-checked case, `alternating()`: one rented node (4000 millicores, 100 W
idle, 200 W max, PUE 1.0, embodied 105.5936 g per hour on, fleet basis), six 1-hour slots at
400, 100, 400, 100, 400, 100 gCO2/kWh, and job j (2000 millicores, usage 1.0:
u = 0.5 -> 150 W -> 0.15 kWh per slot) needing 3 slots in the whole window.
    interruptible, any run length: slots 1, 3, 5: 3 x (0.15 x 100 + 105.5936) = 361.78 g
    one block (or runs of >= 2 slots): e.g. 1, 2, 3: 0.15 x 600 + 3 x 105.5936 = 406.78 g
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeplace.optimizer.greedy import cheapest_runs
from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.policies.evaluate import ViolationKind, evaluate, runs_long_enough
from edgeplace.topology import Placement, scenario_from_dict
from edgeplace.topology.errors import InputError
from edgeplace.topology.transform import remaining
from tests.builders import ScenarioBuilder

EMBODIED_G_PER_H = 3_700_000 / (4 * 8760)
INTERRUPTED_G = 3 * (0.15 * 100 + EMBODIED_G_PER_H)
BLOCK_G = 0.15 * 600 + 3 * EMBODIED_G_PER_H


def alternating_doc(**deferral) -> dict:
    doc = (ScenarioBuilder().slots(6).region("DE", [400, 100, 400, 100, 400, 100]).site("a", pue=1.0, owned=False)
           .node("n1").user("u", site="a").tenant("t1").build_dict())
    d = {"earliest_start": "2026-06-21T00:00:00Z", "deadline": "2026-06-21T06:00:00Z", "duration_minutes": 180,
         "interruptible": True, **deferral}
    doc["workloads"].append({"id": "j", "tenant": "t1", "kind": "batch",
                             "requests": {"cpu_millicores": 2000, "memory_mib": 512}, "deferral": d})
    return doc


def alternating(**deferral):
    return scenario_from_dict(alternating_doc(**deferral))


def runs(plan) -> list[int]:
    return np.flatnonzero((plan.placement.assign >= 0).any(axis=0)).tolist()


# ---------------------------------------------------------------------------
# Loading


def test_an_interruptible_job_compiles_to_its_window_and_minimum_run():
    sc = alternating(min_run_minutes=90, nominal_start="2026-06-21T02:00:00Z")
    j = sc.index_of("workload", "j")
    assert sc.workload_interruptible[j] and sc.workload_deferrable[j]
    assert sc.workload_min_run_slots[j] == 2  # 90 min in 60-min slots: 2 slots
    assert (sc.workload_earliest_slot[j], sc.workload_window_end[j], sc.workload_duration_slots[j]) == (0, 6, 3)
    assert sc.workload_nominal_slot[j] == 2
    plain = alternating(interruptible=False)
    assert not plain.workload_interruptible[j] and plain.workload_nominal_slot[j] == 0


@pytest.mark.parametrize("deferral,path,message", [
    ({"min_run_minutes": 240}, "deferral.min_run_minutes", "is longer than the job's run"),
    ({"interruptible": False, "min_run_minutes": 60}, "deferral.min_run_minutes", "applies to interruptible jobs only"),
    ({"nominal_start": "2026-06-21T04:00:00Z"}, "deferral.nominal_start", "must lie in the window"),
    ({"nominal_start": "2026-06-20T23:00:00Z"}, "deferral.nominal_start", "must lie in the window"),
    ({"earliest_start": "2026-06-21T01:00:00Z", "current_run_minutes": 60}, "deferral.current_run_minutes",
     "a run in progress needs earliest_start at or before the horizon start"),
])
def test_bad_deferral_options_are_reported_with_their_path(deferral, path, message):
    with pytest.raises(InputError) as err:
        scenario_from_dict(alternating_doc(**deferral))
    text = err.value.render()
    assert f"workloads[0].{path}" in text and message in text


# ---------------------------------------------------------------------------
# Evaluation


@pytest.mark.parametrize("slots,min_run,done,ok", [
    ([1, 3, 5], 1, 0, True),
    ([1, 3, 5], 2, 0, False),        # runs of one slot
    ([1, 2, 4, 5], 2, 0, True),
    ([0, 1, 2], 2, 1, True),         # continues the run in progress: 1 done + 3 >= 2
    ([0, 3, 4], 3, 2, False),        # the continuation in slot 0 is 1 slot: 2 + 1 = 3 ok, but 3-4 is only 2
    ([0, 3, 4, 5], 3, 2, True),
    ([2, 3, 4], 3, 1, False),        # the run in progress (1 of 3 slots) stopped at the horizon start
    ([2, 3, 4], 3, 3, True),         # ... which it may once it is long enough
    ([], 2, 0, True),
])
def test_runs_long_enough(slots, min_run, done, ok):
    assert runs_long_enough(np.asarray(slots, dtype=np.int64), min_run, done) is ok


def _placed(sc, slots: list[int]) -> Placement:
    assign = np.full((sc.n_replicas, sc.n_slots), -1)
    assign[0, slots] = 0
    return Placement.from_assign(assign)


def test_evaluation_accepts_runs_in_the_clean_slots_and_prices_them():
    sc = alternating()
    ev = evaluate(sc, _placed(sc, [1, 3, 5]))
    assert ev.violations == []
    assert ev.emissions_g == pytest.approx(INTERRUPTED_G, rel=1e-12)


@pytest.mark.parametrize("slots,min_run", [([1, 3], None), ([1, 3, 5], 120), ([0, 1, 2, 3], None)])
def test_evaluation_flags_a_wrong_schedule(slots, min_run):
    sc = alternating(**({"min_run_minutes": min_run} if min_run else {}))
    kinds = [v.kind for v in evaluate(sc, _placed(sc, slots)).violations]
    assert kinds == [ViolationKind.schedule]


# ---------------------------------------------------------------------------
# Solvers


@pytest.mark.parametrize("solver", ["cpsat", "milp", "greedy"])
def test_every_solver_runs_it_in_the_clean_slots(solver):
    plan = solve(alternating(), SolveOptions(solver=solver, time_limit_s=10))
    assert plan.evaluation.violations == []
    assert runs(plan) == [1, 3, 5]
    assert plan.objective_g == pytest.approx(INTERRUPTED_G, rel=1e-9)
    if solver != "greedy":
        assert plan.status == "optimal" and plan.gap == 0.0


@pytest.mark.parametrize("solver", ["cpsat", "milp", "greedy"])
@pytest.mark.parametrize("deferral", [{"min_run_minutes": 120}, {"interruptible": False}], ids=["min-run-2h", "block"])
def test_a_minimum_run_or_no_interruption_costs_the_block(solver, deferral):
    plan = solve(alternating(**deferral), SolveOptions(solver=solver, time_limit_s=10))
    assert plan.evaluation.violations == []
    assert plan.objective_g == pytest.approx(BLOCK_G, rel=1e-9)
    got = runs(plan)
    assert len(got) == 3 and got[-1] - got[0] == 2  # one run of three slots


def test_the_bound_stays_below_the_interrupted_optimum():
    plan = solve(alternating(), SolveOptions(solver="greedy", bound_time_limit_s=5))
    assert plan.bound_name in ("lp", "flow") and plan.lower_bound_g <= INTERRUPTED_G * (1 + 1e-9)


def _brute_force(cost: np.ndarray, d: int, m: int, done: int) -> float:
    best = np.inf
    for pick in itertools.combinations(range(cost.shape[0]), d):
        slots = np.asarray(pick)
        if runs_long_enough(slots, m, done) and (done == 0 or done >= m or (slots[:m - done] == np.arange(m - done)).all()):
            best = min(best, float(cost[slots].sum()))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_cheapest_runs_is_the_cheapest_choice(seed):
    rng = np.random.default_rng(seed)
    L, d, m = 8, int(rng.integers(1, 5)), int(rng.integers(1, 4))
    done = int(rng.integers(0, 3)) if seed % 2 else 0
    cost = rng.uniform(1, 10, (3, L))
    cost[0, rng.integers(0, L)] = np.inf  # a slot that does not fit
    total, chosen = cheapest_runs(cost, d, m, done)
    for row in range(3):
        expected = _brute_force(cost[row], d, m, done)
        assert total[row] == pytest.approx(expected)
        if np.isfinite(expected):
            slots = np.flatnonzero(chosen[row])
            assert len(slots) == d and cost[row, slots].sum() == pytest.approx(expected)


# ---------------------------------------------------------------------------
# Placement files


def test_a_placement_names_the_run_slots_and_reads_back():
    sc = alternating()
    placement = _placed(sc, [1, 3, 5])
    doc = placement.to_dict(sc)
    assert doc["workloads"]["j"] == {"run_slots": [1, 3, 5], "replicas": ["n1"]}
    back = Placement.from_dict(sc, doc)
    assert np.array_equal(back.assign, placement.assign)


def test_run_slots_on_a_job_that_cannot_pause_is_an_input_error():
    sc = alternating(interruptible=False)
    doc = {"version": 1, "workloads": {"j": {"run_slots": [1, 3, 5], "replicas": ["n1"]}}}
    with pytest.raises(InputError, match=r"run_slots"):
        Placement.from_dict(sc, doc)


def test_placements_use_a_small_integer_type():
    sc = alternating()
    assert _placed(sc, [1]).span_node.dtype == np.int8  # a hand-made int64 table is stored small too
    assert Placement.from_replica_nodes(sc, np.array([0])).assign.dtype == np.int8


# ---------------------------------------------------------------------------
# The rest of a horizon


def test_the_rest_of_an_interrupted_job_keeps_its_window_and_run_in_progress():
    spec = alternating(min_run_minutes=120).spec
    rest = remaining(spec, 2, current={"j": ["n1"]}, progress={"j": (1, 1)})  # ran slot 1, runs now
    d = rest.workloads[0].deferral
    assert (d.duration_minutes, d.current_run_minutes, d.min_run_minutes) == (120, 60, 120)
    sc = scenario_from_dict(rest.model_dump(mode="json"))
    assert sc.workload_run_done_slots[0] == 1
    plan = solve(sc, SolveOptions(solver="milp", time_limit_s=10))
    assert plan.evaluation.violations == []
    assert runs(plan)[0] == 0  # the run in progress goes on until it is two slots long
    assert "j" not in {w.id for w in remaining(spec, 4, progress={"j": (3, 0)}).workloads}  # done


@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_the_exact_model_keeps_interruptible_jobs_apart_under_pod_anti_affinity(solver):
    # Two interruptible jobs that may not share a node (required anti-affinity by hostname, over
    # the horizon): sharing one node would save an idle node, so a model without their a[i,n]
    # columns in the anti-affinity rows would put them together.
    anti = {"labels": {"app": "ckpt"}, "pod_anti_affinity": {"required": [
        {"label_selector": {"match_labels": {"app": "ckpt"}}, "topology_key": "kubernetes.io/hostname"}]}}
    b = ScenarioBuilder().slots(3).region("DE", [400, 100, 400]).site("a", pue=1.0).node("n1").node("n2").tenant("t1")
    for j in ("j1", "j2"):
        b.workload(j, cpu=1000, window=(0, 3), duration_minutes=60, interruptible=True, scheduling=anti)
    sc = b.build()
    plan = solve(sc, SolveOptions(solver=solver, time_limit_s=10))
    assert plan.evaluation.violations == []
    nodes = {j: set(plan.placement.assign[sc.workload_first_replica[sc.index_of("workload", j)]].tolist()) - {-1}
             for j in ("j1", "j2")}
    assert len(nodes["j1"]) == len(nodes["j2"]) == 1 and nodes["j1"] != nodes["j2"]
    assert plan.solver == solver
