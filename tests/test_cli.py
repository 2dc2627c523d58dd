"""edgeplace.cli: every command in-process through `main([...])`, plus one run of the
installed `edgeplace` script.

Exit codes (module docstring of edgeplace.cli): 0 ok, 1 rule violations,
2 usage error, 3 invalid input, 70 internal error. argparse ends `--help`
and its own usage errors with SystemExit(0) and SystemExit(2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import jsonschema
import pytest

from edgeplace import cli
from edgeplace.cli import build_parser, main
from tests.builders import ScenarioBuilder
from edgeplace.topology.load import read_document

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = str(REPO / "examples" / "metro-de.yaml")
SCRIPT = Path(sys.executable).parent / "edgeplace"


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv: str) -> str:
    """Run a command argparse refuses: SystemExit(2); returns stderr."""
    with pytest.raises(SystemExit, match=r"^2$"):
        main(list(argv))
    return capsys.readouterr().err


def small_scenario(tmp_path: Path, **workload) -> Path:
    """Access site `a` (n1, n2; DE 400 g/kWh) 2 ms from cloud `c` (n3; FR 50 g/kWh);
    `web` (2 x 1000 millicores, 10 ms SLA for u at `a`) and a 1 h job."""
    doc = (ScenarioBuilder("small").slots(3)
           .region("DE", [400, 300, 350]).region("FR", 50)
           .site("a", region="DE", pue=1.2).node("n1").node("n2")
           .site("c", tier="cloud", region="FR", pue=1.1).node("n3")
           .link("a", "c", 2).user("u", site="a", access_ms=1).tenant("t1")
           .workload("web", replicas=2, sla_ms=10, users=["u"], **workload)
           .workload("job", cpu=2000, window=(0, 3), duration_minutes=60)
           .build_dict())
    path = tmp_path / "small.json"
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------------------
# Help and usage errors


def test_every_command_is_listed():
    assert {"validate", "evaluate", "compare", "plan", "demo", "schema"} <= set(commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_help_exits_0(command, capsys):
    with pytest.raises(SystemExit, match=r"^0$"):
        main([command, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: edgeplace {command}")


def test_top_level_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit, match=r"^0$"):
        main(["--help"])
    assert "Exit codes: 0 ok, 1 rule violations, 2 usage error, 3 invalid input, 70 internal error." in \
        " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv,message", [
    (["plan", EXAMPLE, "--time-limit", "-1"], "argument --time-limit: must be a finite number > 0, got -1"),
    (["plan", EXAMPLE, "--time-limit", "soon"], "argument --time-limit: expected a number, got 'soon'"),
    (["plan", EXAMPLE, "--workers", "0"], "argument --workers: must be >= 1, got 0"),
    (["plan", EXAMPLE, "--migration-g-per-replica", "inf"], "must be a finite number >= 0, got inf"),
    (["plan", EXAMPLE, "--solver", "gurobi"], "argument --solver: invalid choice: 'gurobi'"),
    (["evaluate", EXAMPLE], "one of the arguments --placement --policy is required"),
    (["evaluate", EXAMPLE, "--policy", "spread", "--placement", "p.json"], "not allowed with argument"),
    (["validate", EXAMPLE, "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_flags_are_usage_errors(argv, message, capsys):
    assert message in usage_error(capsys, *argv)


def test_milp_backend_without_the_milp_solver_is_a_usage_error(capsys):
    code, out, err = run(capsys, "plan", EXAMPLE, "--milp-backend", "pulp-cbc")
    assert code == cli.EXIT_USAGE == 2
    assert "edgeplace: error: --milp-backend goes with --solver milp" in err
    assert out == ""


# ---------------------------------------------------------------------------
# validate


def test_validate_the_example(capsys):
    code, out, err = run(capsys, "validate", EXAMPLE)
    assert code == 0 and err == ""
    assert out.startswith(f"{EXAMPLE}: valid\n")
    code, out, _ = run(capsys, "validate", EXAMPLE, "--format", "json")
    summary = json.loads(out)
    assert (summary["name"], summary["slots"], summary["workloads"]) == ("metro-de", 24, 46)


BROKEN = """version: 1
name: broken
horizon: {start: 2026-06-21T00:00:00Z, slots: 2, slot_minutes: 60}
regions: [{id: DE}]
sites: [{id: a, tier: access, region: DE}]
nodes: [{id: n1, site: a, capacity: {cpu_millicores: -5, memory_mib: 10}, power: {idle_w: 1, max_w: 2}}]
tenants: [{id: t}]
"""


@pytest.mark.parametrize("text,problem", [
    (BROKEN, "nodes[0].capacity.cpu_millicores: must be > 0 (got -5)"),
    ("version: 1\nname: [unclosed\n", "not valid YAML"),
    (BROKEN.replace("version: 1", "version: 7"), "version: must be 1 (got 7)"),
])
def test_validate_a_broken_file_exits_3_with_its_problems(tmp_path, capsys, text, problem):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "validate", str(path))
    assert code == cli.EXIT_INPUT == 3
    assert err.startswith(f"{path}: 1 problem(s)\n")
    assert problem in err
    assert "Traceback" not in err and out == ""


def test_validate_a_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 3 and f"{tmp_path / 'nope.yaml'}: 1 problem(s)" in err and "file not found" in err


# ---------------------------------------------------------------------------
# evaluate and compare


def test_evaluate_spread_breaks_slas_on_the_example(capsys):
    code, out, _ = run(capsys, "evaluate", EXAMPLE, "--policy", "spread", "--format", "json")
    assert code == cli.EXIT_VIOLATIONS == 1
    totals = json.loads(out)
    assert totals["sla_violations"] > 0


def test_evaluate_greedy_meets_every_rule_on_the_example(capsys):
    code, out, _ = run(capsys, "evaluate", EXAMPLE, "--policy", "greedy", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "figure,value"
    rows = dict(line.split(",", 1) for line in lines[1:])
    assert float(rows["emissions_g"]) > 0
    assert all(float(rows[k]) == 0 for k in rows if k.endswith("_violations"))


def test_evaluate_table_lists_the_violations(capsys):
    code, out, _ = run(capsys, "evaluate", EXAMPLE, "--policy", "spread")
    assert code == 1
    assert out.startswith("metro-de: spread\n")
    assert "  sla: " in out and "misses its" in out


def test_evaluate_breakdown_by_site_as_json(capsys):
    code, out, _ = run(capsys, "evaluate", EXAMPLE, "--policy", "greedy", "--by", "site", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 13 and {"site", "tier", "energy_kwh"} <= set(rows[0])


def test_unknown_policy_is_invalid_input_with_the_list(capsys):
    code, out, err = run(capsys, "evaluate", EXAMPLE, "--policy", "nope")
    assert code == 3 and out == ""
    assert "nope: unknown policy; choose one of spread, binpack, nearest, greedy-carbon, greedy, cpsat, milp, current" in err
    code, _, err = run(capsys, "compare", EXAMPLE, "--policies", "spread,nope")
    assert code == 3 and "nope: unknown policy; choose from spread" in err


def test_compare_as_csv_has_a_header(capsys):
    code, out, _ = run(capsys, "compare", EXAMPLE, "--policies", "spread,binpack", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    # Operational carbon (named by its basis) and energy first, each with its difference to the
    # reference baseline; embodied on the fleet basis after them.
    assert lines[0].startswith("policy,operational_location_kg,d_operational_pct,energy_kwh,d_energy_kwh,"
                               "mean_power_w,renewable_kwh,embodied_fleet_kg,d_embodied_kg,emissions_kg,")
    assert [line.split(",")[0] for line in lines[1:]] == ["spread", "binpack"]


# ---------------------------------------------------------------------------
# plan


def test_plan_writes_json_atomically_and_evaluate_reads_it_back(tmp_path, capsys):
    scenario = small_scenario(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    plan_file = out_dir / "plan.json"
    code, out, err = run(capsys, "plan", str(scenario), "--solver", "milp", "--time-limit", "5", "--quiet",
                         "-o", str(plan_file), "--format", "json")
    assert code == 0 and err == ""
    assert [p.name for p in out_dir.iterdir()] == ["plan.json"]  # no temporary file left behind
    doc = json.loads(plan_file.read_text())
    assert doc["plan"]["solver"] == "milp" and doc["plan"]["status"] == "optimal"
    assert doc["plan"]["violations"] == 0
    table = json.loads(out)
    assert table[0]["policy"] == "plan (milp)" and table[1]["policy"] in ("spread", "binpack", "nearest", "greedy-carbon")
    assert table[0]["emissions_kg"] == pytest.approx(doc["plan"]["emissions_kg"], rel=1e-12)
    assert 0 <= table[0]["gap_pct"] <= 0.01 + 1e-9  # HiGHS proves optimality within 1e-4

    code, out, _ = run(capsys, "evaluate", str(scenario), "--placement", str(plan_file), "--format", "json")
    assert code == 0
    assert json.loads(out)["emissions_g"] == pytest.approx(doc["plan"]["emissions_kg"] * 1000, rel=1e-12)


@pytest.mark.parametrize("solver", ["cpsat", "greedy"])
def test_plan_table_reports_gap_and_sla_check(tmp_path, capsys, solver):
    scenario = small_scenario(tmp_path)
    code, out, err = run(capsys, "plan", str(scenario), "--solver", solver, "--time-limit", "3")
    assert code == 0
    assert "gap to lower bound: " in out and "SLA check: all met" in out
    assert "edgeplace: greedy warm start" in err  # progress on stderr unless --quiet


def test_plan_without_bound_says_so(tmp_path, capsys):
    code, out, _ = run(capsys, "plan", str(small_scenario(tmp_path)), "--solver", "greedy", "--no-bound", "--quiet")
    assert code == 0 and "gap to lower bound: n/a (no bound)" in out


def test_plan_of_an_infeasible_scenario_exits_1_with_the_explanation(tmp_path, capsys):
    # web: 4 replicas of 3000 millicores; n1, n2 (1 ms) and n3 (3 ms) meet the 10 ms SLA
    # and hold one each (2 x 3000 > 4000): the fourth is left out.
    scenario = small_scenario(tmp_path, cpu=3000)
    doc = json.loads(scenario.read_text())
    doc["workloads"][0]["replicas"] = 4
    doc["workloads"][1]["requests"]["cpu_millicores"] = 1000  # the job fits beside a web replica
    scenario.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "plan", str(scenario), "--solver", "milp", "--time-limit", "3", "--quiet")
    assert code == 1
    assert "plan by greedy (infeasible)" in out
    assert "SLA check: all met" in out  # what is placed meets its SLA; the rest is unplaced
    assert "  web: 1 of 4 replica(s) unplaced; the 3 node(s) within 10 ms of users u have at most" in out
    assert "each replica needs 3000" in out


def test_plan_dumps_the_model(tmp_path, capsys):
    mps = tmp_path / "model.mps"
    code, _, _ = run(capsys, "plan", str(small_scenario(tmp_path)), "--solver", "greedy", "--no-bound", "--quiet",
                     "--dump-model", str(mps))
    assert code == 0
    text = mps.read_text()
    assert text.startswith("NAME") and "COLUMNS" in text and "ENDATA" in text


def test_plan_of_a_broken_file_is_invalid_input(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    code, _, err = run(capsys, "plan", str(path), "--quiet")
    assert code == 3 and "nodes[0].capacity.cpu_millicores" in err


# ---------------------------------------------------------------------------
# schema and demo


def json_ready(doc):
    """YAML timestamps are datetimes; JSON (and the schema) has strings."""
    return json.loads(json.dumps(doc, default=lambda v: v.isoformat() if isinstance(v, (date, datetime)) else v))


def test_schema_is_a_draft_2020_12_schema_the_example_meets(capsys, tmp_path):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(json_ready(read_document(EXAMPLE)))
    # And it can fail: a node without capacity.
    bad = json_ready(read_document(EXAMPLE))
    del bad["nodes"][0]["capacity"]
    with pytest.raises(jsonschema.ValidationError, match="'capacity' is a required property"):
        validator.validate(bad)
    target = tmp_path / "schema.json"
    assert run(capsys, "schema", "-o", str(target))[:2] == (0, "")
    assert json.loads(target.read_text()) == schema


def test_demo_runs_end_to_end_as_json(capsys):
    code, out, _ = run(capsys, "demo", "--time-limit", "1", "--format", "json")
    assert code == 0
    rows = {row["policy"]: row for row in json.loads(out)}
    assert {"spread", "binpack", "nearest", "greedy-carbon", "greedy"} <= set(rows)
    plans = [name for name in rows if name.startswith("plan (")]
    assert len(plans) == 1  # plan (cpsat), or plan (greedy) when 1 s is not enough for CP-SAT
    plan = rows[plans[0]]
    assert plan["sla_viol"] == plan["capacity_viol"] == plan["isolation_viol"] == plan["other_viol"] == 0
    assert plan["emissions_kg"] < rows["spread"]["emissions_kg"]


def test_demo_prints_the_operational_saving_and_kwh_first_against_a_named_baseline(capsys):
    # The headline against the reference (the best baseline that meets every rule) and
    # against spread, redone here from the evaluations of the two baselines and the
    # plan's row: operational change in % and kg, energy in kWh, embodied (fleet).
    from edgeplace.app import example_path
    from edgeplace.policies.baselines import baseline_registry
    from edgeplace.policies.evaluate import evaluate
    from edgeplace.topology import load_scenario

    code, out, _ = run(capsys, "demo", "--time-limit", "2")
    assert code == 0
    assert "operational: location-based, average, lifecycle factors; embodied: fleet (owned nodes on or off)" in out
    assert "d_* = row minus greedy-carbon (meets every rule)" in out
    sc = load_scenario(example_path("metro-de.yaml"))
    evals = {name: evaluate(sc, baseline_registry()[name]().place(sc)) for name in ("greedy-carbon", "spread")}
    lines = out.splitlines()
    header = lines.index(next(x for x in lines if x.lstrip().startswith("policy ")))
    plan_row = next(x for x in lines[header:] if x.lstrip().startswith("plan ("))
    plan_op_kg, _d, plan_kwh = (float(v) for v in plan_row.split(")")[1].split()[:3])
    for name, label in (("greedy-carbon", "the best baseline that meets every rule"),
                        ("spread", "Kubernetes-default spreading, breaks 9 SLA rule(s)")):
        t = evals[name].totals
        op_kg = t["operational_emissions_g"] / 1000
        line = next(x for x in lines if x.startswith(f"  vs {name} ("))
        assert f"({label}): operational " in line
        pct = float(line.split("operational ")[1].split(" %")[0])
        # The line rounds to 0.1 %, the table prints kg to 2 decimals (+/- 0.005 kg).
        assert pct == pytest.approx((plan_op_kg / op_kg - 1) * 100, abs=0.05 + 0.005 / op_kg * 100)
        kwh = float(line.split("energy ")[1].split(" kWh")[0])
        assert kwh == pytest.approx(plan_kwh - t["energy_kwh"], abs=0.06)
        assert "embodied (fleet)" in line
        assert line.index("operational") < line.index("energy") < line.index("embodied")


# ---------------------------------------------------------------------------
# Internal errors and the installed script


def test_an_internal_error_is_one_line_and_exit_70(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something broke")

    monkeypatch.setitem(cli.COMMANDS, "validate", boom)
    monkeypatch.delenv("EDGEPLACE_DEBUG", raising=False)
    code, _, err = run(capsys, "validate", EXAMPLE)
    assert code == cli.EXIT_INTERNAL == 70
    assert err.startswith("edgeplace: internal error: RuntimeError: something broke\n")
    assert "EDGEPLACE_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("EDGEPLACE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        main(["validate", EXAMPLE])


def test_the_installed_script_reports_input_problems_without_a_traceback(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = subprocess.run([str(SCRIPT), "validate", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 3
    assert f"{path}: 1 problem(s)" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_evaluate_explain_prints_one_node_slot_and_refuses_a_bad_one(capsys):
    code, out, _ = run(capsys, "evaluate", EXAMPLE, "--policy", "greedy-carbon", "--explain", "metro-2,12")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("node metro-2 at site metro-ffm-gallus (region DE), slot 12 (2026-06-21 12:00 UTC")
    steps = [line.split(":")[0].strip() for line in lines[1:]]
    assert steps[:5] == ["load", "power from the curve" if "asleep" not in lines[0] else "power", "facility energy",
                         "site metro-ffm-gallus", "grid energy"]
    assert any(line.strip().startswith("embodied (fleet)") for line in lines)
    code, out, err = run(capsys, "evaluate", EXAMPLE, "--policy", "greedy-carbon", "--explain", "metro-2,99")
    assert code == 3 and out == "" and "slot 99 is outside the horizon (0..23)" in err
