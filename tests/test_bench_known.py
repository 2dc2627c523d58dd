"""bench/known.py: the best-known plans file (its validation, the stored plan evaluated again) and the
`gap_known_pct` column of bench_optimizer's scale rows (no long run needed)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from bench import bench_optimizer
from bench import known as ref
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology.errors import InputError
from edgeplace.topology.generate import generate_scenario
from edgeplace.topology.placement import Placement

SPEC = (20, 6, 3)


@pytest.fixture(scope="module")
def scenario():
    return generate_scenario(*SPEC, seed=ref.GENERATOR_SEED)


@pytest.fixture(scope="module")
def greedy(scenario):
    placement = greedy_place(price(scenario), time_limit_s=0.2, seed=0)
    evaluation = evaluate(scenario, placement)
    assert not evaluation.violations
    return placement, evaluation.decision_g("location")


def _known(objective_g: float, spec=SPEC) -> ref.Known:
    return ref.Known(*spec, objective_g=objective_g, solver="cpsat", seed=1, time_limit_s=600.0, seconds=600.4,
                     produced_by="greedy + closing + search", command="python -m bench.bench_reference --plans",
                     date="2026-12-07 16:00 UTC", commit="abc1234", plan=ref.plan_name(spec))


def _stored(tmp_path, scenario, placement, objective_g: float) -> tuple[ref.Known, dict]:
    known = _known(objective_g)
    ref.write_plan(known.plan_path(tmp_path), placement.to_dict(scenario))
    entries = {known.spec: known}
    ref.save_reference(entries, tmp_path / "reference.json")
    return known, entries


def test_no_reference_file_means_no_entries(tmp_path):
    assert ref.load_reference(tmp_path / "reference.json") == {}


def test_the_reference_file_round_trips(tmp_path):
    entries = {SPEC: _known(1234.5), (1_000, 100, 24): _known(30_000.0, (1_000, 100, 24))}
    ref.save_reference(entries, tmp_path / "reference.json")
    assert ref.load_reference(tmp_path / "reference.json") == entries


def _problems(tmp_path, doc) -> str:
    path = tmp_path / "reference.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(InputError) as err:
        ref.load_reference(path)
    assert err.value.source == str(path)
    return str(err.value)


def test_a_malformed_reference_file_names_the_file_field_and_fix(tmp_path):
    assert "is not JSON" in _problems(tmp_path, "{not json")
    assert "an 'instances' list" in _problems(tmp_path, {"version": 1})
    good = asdict(_known(1234.5))
    said = _problems(tmp_path, {"version": 1, "instances": [
        {**good, "objective_g": -3}, {k: v for k, v in good.items() if k != "command"},
        {**good, "seed": "one", "colour": "red"}, "text", {**good, "plan": "elsewhere.json.gz"},
        {**good, "generator_seed": 8}]})
    assert "instances[0].objective_g: must be a number > 0 (got -3)" in said
    assert "instances[1].command: must be a non-empty string (got None)" in said
    assert "instances[2].seed: must be a whole number >= 0 (got 'one')" in said
    assert "instances[2]: unknown field(s) colour" in said
    assert "instances[3]: must be a mapping" in said
    assert "instances[4].plan: must be 'known/20x6x3.json.gz'" in said
    assert "instances[5].generator_seed" in said
    assert "run `python -m bench.bench_reference --plans` again" in said
    said = _problems(tmp_path, {"version": 2, "instances": [good, good]})
    assert "version: must be 1 (got 2)" in said and "instances[1]: a second entry for 20 x 6 x 3" in said


def test_the_stored_plan_is_evaluated_again(tmp_path, scenario, greedy):
    placement, objective_g = greedy
    known, _ = _stored(tmp_path, scenario, placement, objective_g)
    assert ref.known_objective_g(known, scenario, tmp_path) == ref.Evaluated(pytest.approx(objective_g))
    # the figure stored differs from what the plan evaluates to today: today's figure, and a note
    changed = ref.known_objective_g(replace(known, objective_g=objective_g * 0.9), scenario, tmp_path)
    assert changed.objective_g == pytest.approx(objective_g) and "evaluates to" in changed.note


def test_a_stored_plan_that_breaks_rules_or_is_missing_is_no_reference(tmp_path, scenario, greedy):
    nothing = np.zeros(0, dtype=np.int64)
    unplaced = Placement.from_cells(scenario.n_replicas, scenario.n_slots, nothing, nothing, nothing)
    known, entries = _stored(tmp_path, scenario, unplaced, greedy[1])
    broken = ref.known_objective_g(known, scenario, tmp_path)
    assert broken.objective_g is None and "breaks" in broken.note
    assert bench_optimizer.known_objectives([SPEC], entries, tmp_path) == ({}, [broken.note])
    known.plan_path(tmp_path).unlink()
    missing = ref.known_objective_g(known, scenario, tmp_path)
    assert missing.objective_g is None and "unreadable" in missing.note


def test_gap_known_pct_is_relative_to_the_plan():
    assert ref.gap_known_pct(110.0, 99.0) == pytest.approx(10.0)
    assert ref.gap_known_pct(90.0, 99.0) == pytest.approx(-10.0)  # the plan beats the reference
    assert ref.gap_known_pct(110.0, None) is None


class _Queue:
    def put(self, item):
        self.item = item


def _inline(target, *args, timeout_s):
    queue = _Queue()
    target(*args, queue)
    return queue.item


def test_scale_rows_print_the_gap_to_the_best_known_plan(tmp_path, monkeypatch, scenario, greedy):
    placement, objective_g = greedy
    _known_entry, entries = _stored(tmp_path, scenario, placement, objective_g)
    known_g, notes = bench_optimizer.known_objectives([SPEC, (30, 6, 2)], entries, tmp_path)
    assert known_g == {SPEC: pytest.approx(objective_g)} and notes == []
    monkeypatch.setattr(bench_optimizer, "in_child", _inline)  # the real solve, in this process
    table, _loads = bench_optimizer.run([SPEC], ("greedy",), 1.0, known_g)
    row = table.iloc[0]
    assert row["known_kg"] == pytest.approx(objective_g / 1000)
    assert row["gap_known_pct"] == pytest.approx((row["objective_kg"] - row["known_kg"]) / row["objective_kg"] * 100)
    table, _loads = bench_optimizer.run([SPEC], ("greedy",), 1.0, {})
    assert table.iloc[0]["gap_known_pct"] is None and table.iloc[0]["known_kg"] is None


def test_long_runs_keep_the_best_plan_and_only_replace_it_with_a_better_one(tmp_path, monkeypatch, scenario, greedy):
    from bench import bench_reference

    sections = []
    monkeypatch.setattr(bench_reference, "in_child", _inline)  # the real planner, in this process
    monkeypatch.setattr(bench_reference, "write_section", lambda name, title, table, notes: sections.append(
        (name, table, notes)))
    path = tmp_path / "reference.json"
    bench_reference.run_plans([SPEC], [0, 1], "cpsat", 2.0, path)
    stored = ref.load_reference(path)[SPEC]
    name, table, notes = sections[-1]
    assert name == "optimizer-known-20x6x3" and list(table["seed"]) == [0, 1] and "New best-known plan" in notes
    assert stored.objective_g == pytest.approx(table["objective_kg"].min() * 1000)
    assert stored.seed == int(table.loc[table["best_of_runs"] == True, "seed"].iloc[0])  # noqa: E712
    assert ref.known_objective_g(stored, scenario, tmp_path).objective_g == pytest.approx(stored.objective_g)
    # a run no better than the stored plan (the instance is small enough to be solved to optimality: the same
    # plan) leaves it as it was; a stored figure above what its plan evaluates to is corrected by a better run
    bench_reference.run_plans([SPEC], [0], "cpsat", 2.0, path)
    assert ref.load_reference(path)[SPEC] == stored and "plan stays" in sections[-1][2]
    ref.save_reference({SPEC: replace(stored, objective_g=stored.objective_g * 2, seed=7)}, path)
    ref.write_plan(stored.plan_path(tmp_path), greedy[0].to_dict(scenario))
    bench_reference.run_plans([SPEC], [0], "cpsat", 2.0, path)
    kept = ref.load_reference(path)[SPEC]
    assert greedy[1] > stored.objective_g * (1 + 1e-9)  # greedy is not optimal here: the run's plan replaces it
    assert kept.seed == 0 and kept.objective_g == pytest.approx(stored.objective_g)
    assert "evaluates to" in sections[-1][2] and "New best-known plan" in sections[-1][2]
