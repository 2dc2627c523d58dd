"""`edgeplace import --edgesimpy`, `plan`, `evaluate --policy current` and `export --edgesimpy` end to end
on the EdgeSimPy fixture (tests/data/edgesimpy), through `edgeplace.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeplace.cli import main
from tests.test_importers_edgesimpy import DATASET, edgesimpy_loader_problems


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    d = tmp_path_factory.mktemp("edgesimpy")
    assert main(["import", "--edgesimpy", str(DATASET), "-o", str(d / "scenario.yaml")]) == 0
    assert main(["plan", str(d / "scenario.yaml"), "--solver", "cpsat", "--quiet", "-o", str(d / "plan.json")]) == 0
    return d


def test_plan_and_evaluate_state_pue_power_and_the_sleeping_nodes(imported, capsys):
    code, out, _ = run(capsys, "plan", str(imported / "scenario.yaml"), "--solver", "greedy", "--quiet")
    assert code == 0
    assert "mean_power_w" in out and "energy_kwh" in out
    assert "PUE 1.6 at every site" in out
    assert "nodes asleep for the whole horizon (3 of 5): es-2, es-3, es-5" in out
    code, out, _ = run(capsys, "evaluate", str(imported / "scenario.yaml"), "--policy", "current", "--format", "json")
    totals = json.loads(out)
    assert code == 0 and totals["sla_violations"] == 0
    # Mean facility power is the energy spread over the 24 h horizon.
    assert totals["mean_power_w"] == pytest.approx(totals["energy_kwh"] * 1000 / 24)
    code, out, _ = run(capsys, "evaluate", str(imported / "scenario.yaml"), "--policy", "current")
    assert "nodes asleep for the whole horizon (0 of 5): none" in out  # today's cluster: every server on


def test_current_needs_a_recorded_placement(capsys):
    code, _, err = run(capsys, "evaluate", "examples/metro-de.yaml", "--policy", "current")
    assert code == 3 and "have no `current` placement" in err


def test_export_writes_ids_and_a_dataset_edgesimpy_accepts(imported, tmp_path, capsys):
    code, out, err = run(capsys, "export", str(imported / "scenario.yaml"), "--plan", str(imported / "plan.json"),
                         "--edgesimpy", str(DATASET), "-o", str(tmp_path / "placed.json"))
    assert code == 0, err
    assert json.loads(out) == {"1": 1, "2": 1, "3": 4, "4": 4}
    placed = json.loads((tmp_path / "placed.json").read_text())
    assert edgesimpy_loader_problems(placed) == []
    code, _, _ = run(capsys, "export", str(imported / "scenario.yaml"), "--plan", str(imported / "plan.json"),
                     "--edgesimpy", str(DATASET), "-o", str(tmp_path / "placed2.json"), "--ids", str(tmp_path / "ids.json"))
    assert code == 0 and json.loads((tmp_path / "ids.json").read_text())["3"] == 4


def test_export_refuses_a_scenario_from_elsewhere(imported, tmp_path, capsys):
    code, _, err = run(capsys, "export", "examples/metro-de.yaml", "--plan", str(imported / "plan.json"),
                       "--edgesimpy", str(DATASET), "-o", str(tmp_path / "x.json"))
    assert code == 3 and "are not from" in err
    assert not (tmp_path / "x.json").exists()
