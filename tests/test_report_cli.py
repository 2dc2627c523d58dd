"""Tests of `edgeplace report` through its own argparse parser (edgeplace.report_cli)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeplace.report_cli import add_commands
from tests.builders import run_cli
from edgeplace.topology import InputError

EXAMPLE = "examples/metro-de.yaml"
SAMPLE = Path(__file__).resolve().parent / "data" / "edgesimpy" / "rhine-line.json"


def run(argv: list[str]) -> int:
    """Parse and dispatch like `edgeplace.cli.main`: InputError -> 3."""
    try:
        return run_cli(add_commands, argv)
    except InputError as exc:
        print(exc.render())
        return 3


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    from edgeplace.optimizer.solve import SolveOptions, solve
    from edgeplace.topology import load_scenario

    sc = load_scenario(EXAMPLE)
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=0))
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(json.dumps(plan.to_dict(sc)))
    return path


def test_report_from_a_plan_file(plan_file, tmp_path, capsys):
    assert run(["report", EXAMPLE, "--plan", str(plan_file), "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert f"wrote {tmp_path / 'r'}/report.html" in err
    assert "operational" in err and "kWh" in err and "embodied (fleet)" in err
    page = (tmp_path / "r" / "report.html").read_text()
    assert "plan (plan.json)" in page and "spread baseline" in page
    # The solver facts recorded in the plan file are shown, marked as re-evaluated.
    assert "solver greedy" in page


def test_report_solves_when_no_plan_is_given(tmp_path, capsys):
    assert run(["report", EXAMPLE, "--solver", "greedy", "--baseline", "binpack", "-o", str(tmp_path / "r"),
                "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    page = (tmp_path / "r" / "report.html").read_text()
    assert "plan (greedy, feasible)" in page and "binpack baseline" in page


def test_plan_and_solver_together_are_a_usage_error(plan_file, tmp_path, capsys):
    assert run(["report", EXAMPLE, "--plan", str(plan_file), "--solver", "greedy", "-o", str(tmp_path / "r")]) == 2
    assert "do not go with --plan" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_output_is_required():
    with pytest.raises(SystemExit, match="2"):
        run(["report", EXAMPLE])


def test_bad_input_exits_3_and_writes_nothing(tmp_path, capsys):
    assert run(["report", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "r")]) == 3
    assert "missing.yaml: 1 problem(s)" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()


def test_plan_for_another_scenario_is_an_input_error(tmp_path, capsys):
    other = tmp_path / "plan.json"
    other.write_text(json.dumps({"version": 1, "workloads": {"nope": {"replicas": ["n1"]}}}))
    assert run(["report", EXAMPLE, "--plan", str(other), "-o", str(tmp_path / "r")]) == 3
    assert "unknown workload 'nope'" in capsys.readouterr().out


def test_unknown_baseline(plan_file, tmp_path, capsys):
    assert run(["report", EXAMPLE, "--plan", str(plan_file), "--baseline", "magic", "-o", str(tmp_path / "r")]) == 3
    assert "unknown baseline" in capsys.readouterr().out


def test_imported_edgesimpy_scenario_against_its_current_placement(tmp_path):
    """End to end: import the EdgeSimPy fixture, then report a plan against the dataset's own placement."""
    from edgeplace.import_sources import write_scenario
    from edgeplace.topology.importers.edgesimpy import import_edgesimpy

    result = import_edgesimpy(SAMPLE)
    write_scenario(result.document, result.notes, tmp_path / "edge.yaml", str(SAMPLE))
    assert run(["report", str(tmp_path / "edge.yaml"), "--solver", "greedy", "--baseline", "current",
                "-o", str(tmp_path / "r"), "--quiet"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "current placement (all nodes on)" in md
