"""What-if sweeps: the comparison table, what isolation costs, invalid cases,
resuming after a killed run, and the command's handlers."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeplace.planning_cli import add_commands
from edgeplace.sweep import InProcessEngine, ResultsFile
from edgeplace.whatif import BASE, run_whatif
from edgeplace.optimizer.solve import SolveOptions
from tests.builders import ScenarioBuilder
from edgeplace.topology import InputError

ROOT = Path(__file__).resolve().parents[1]
METRO_DE = ROOT / "examples" / "metro-de.yaml"
CPSAT = SolveOptions(solver="cpsat", time_limit_s=10.0, workers=1, bound_time_limit_s=0.0)
GREEDY = SolveOptions(solver="greedy", time_limit_s=1.0, workers=1, bound_time_limit_s=0.0)
DE = [400] * 6 + [300] * 6 + [150] * 6 + [450] * 6  # gCO2/kWh: night, morning, solar noon, evening


def shared_edge() -> ScenarioBuilder:
    """Tenants a and b each run a 2 ms service that only edge site `e` can serve.
    Each of e's two nodes fits both; `a` never shares a node with `b`, so
    isolation keeps both nodes on; without it one node carries both."""
    return (ScenarioBuilder("shared-edge").slots(24)
            .region("DE", DE).region("FR", 50)
            .site("e", region="DE", pue=1.5).site("c", tier="cloud", region="FR", pue=1.1)
            .node("e1", site="e", cpu=8000).node("e2", site="e", cpu=8000).node("c1", site="c", cpu=16000)
            .link("e", "c", 10).user("u", site="e", access_ms=1)
            .tenant("a", never_with=["b"]).tenant("b")
            .workload("wa", tenant="a", cpu=2000, sla_ms=2, users=["u"])
            .workload("wb", tenant="b", cpu=2000, sla_ms=2, users=["u"])
            .workload("job", tenant="a", cpu=4000, window=(0, 24), duration_minutes=180))


def row(table, **where):
    sel = table
    for key, value in where.items():
        sel = sel[sel[key] == value]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_table_has_the_base_and_every_case_with_differences_to_the_base():
    result = run_whatif(shared_edge().build(), ["isolation=on,off", "sla.scale=1,10"], GREEDY, InProcessEngine())
    t = result.table
    assert result.cases == 4 and result.computed == 5 and result.reused == 0
    assert list(t["isolation"]) == [BASE, "on", "on", "off", "off"]
    base = t.iloc[0]
    assert base["d_emissions_kg"] == 0 and base["d_emissions_pct"] == 0
    for _, r in t.iloc[1:].iterrows():
        assert r["d_emissions_kg"] == pytest.approx(r["emissions_kg"] - base["emissions_kg"])
        assert r["d_energy_kwh"] == pytest.approx(r["energy_kwh"] - base["energy_kwh"])
        assert r["d_emissions_pct"] == pytest.approx((r["emissions_kg"] / base["emissions_kg"] - 1) * 100)
    # "on, 1" is the base scenario: the same figures
    same = row(t, isolation="on", **{"sla.scale": "1"})
    assert same["emissions_kg"] == pytest.approx(base["emissions_kg"])
    for col in ("emissions_kg", "energy_kwh", "active_nodes", "sla_viol", "utilisation_pct"):
        assert col in t.columns


def test_isolation_off_never_increases_optimal_emissions_and_here_saves_a_node():
    result = run_whatif(shared_edge().build(), ["isolation=on,off"], CPSAT, InProcessEngine())
    t = result.table
    on, off = row(t, isolation="on"), row(t, isolation="off")
    assert on["status"] == off["status"] == "optimal"
    assert off["emissions_kg"] <= on["emissions_kg"] + 1e-9
    # One edge node instead of two for 24 h: at least its idle power x PUE x
    # the cheapest grid hour, 100 W x 1.5 x 24 h x 150 g/kWh = 540 g.
    assert on["emissions_kg"] - off["emissions_kg"] > 0.54
    assert off["active_nodes"] < on["active_nodes"]


def test_more_pv_never_increases_optimal_emissions():
    b = shared_edge()
    b._doc["sites"][0].update(pv_kwp=1, location={"lat": 50.0, "lon": 8.0})
    b.signal("renewable_supply", [0] * 7 + [0.3, 0.6, 0.8, 0.8, 0.6, 0.3] + [0] * 11, unit="kW", site="e")
    result = run_whatif(b.build(), ["pv_kwp[e]=0,1,4"], CPSAT, InProcessEngine())
    em = [row(result.table, **{"pv_kwp[e]": v})["emissions_kg"] for v in ("0", "1", "4")]
    assert em[0] >= em[1] >= em[2] - 1e-9 and em[0] > em[2]


def test_an_invalid_case_is_a_row_with_the_reason_and_the_rest_still_run():
    # 2 ms x 0.4 = 0.8 ms, below the users' own 1 ms access latency: no node can meet it.
    result = run_whatif(shared_edge().build(), ["sla.scale=0.4,1"], GREEDY, InProcessEngine())
    bad = row(result.table, **{"sla.scale": "0.4"})
    assert bad["status"] == "invalid"
    assert "no node can meet 0.8 ms for all users of 'wa'" in bad["message"]
    assert bad["emissions_kg"] != bad["emissions_kg"]  # NaN: no figures for an invalid case
    ok = row(result.table, **{"sla.scale": "1"})
    assert ok["violations"] == 0 and ok["emissions_kg"] > 0


def test_a_case_that_leaves_work_undone_gets_no_difference_to_the_base():
    # 5 x 2000 mc of tenant a may not share with b: e's two 8000 mc nodes cannot hold both
    result = run_whatif(shared_edge().build(), ["demand.scale=1,5"], GREEDY, InProcessEngine())
    grown = row(result.table, **{"demand.scale": "5"})
    assert grown["violations"] > 0 and grown["status"] == "infeasible" and grown["message"]
    assert np.isnan(grown["d_emissions_kg"]) and np.isnan(grown["d_emissions_pct"])
    assert row(result.table, **{"demand.scale": "1"})["d_emissions_kg"] == pytest.approx(0.0)


def test_resume_reuses_finished_cases_and_computes_only_new_ones(tmp_path):
    path = tmp_path / "r.jsonl"
    sc = shared_edge().build()
    first = run_whatif(sc, ["isolation=on,off"], GREEDY, InProcessEngine(), results=ResultsFile.open(path, False))
    assert (first.computed, first.reused) == (3, 0)
    more = run_whatif(sc, ["isolation=on,off", "sla.scale=1,10"], GREEDY, InProcessEngine(),
                      results=ResultsFile.open(path, True))
    assert (more.computed, more.reused) == (4, 1)  # the base is reused; the grid's cases differ from the first run's
    again = run_whatif(sc, ["isolation=on,off", "sla.scale=1,10"], GREEDY, InProcessEngine(),
                       results=ResultsFile.open(path, True))
    assert (again.computed, again.reused) == (0, 5)
    assert again.table["emissions_kg"].tolist() == more.table["emissions_kg"].tolist()
    # A changed solver setting is a different computation: nothing is reused but the key says why.
    other = run_whatif(sc, ["isolation=on,off"], SolveOptions(solver="greedy", time_limit_s=1.0, workers=1,
                                                             bound_time_limit_s=0.0, seed=3),
                       InProcessEngine(), results=ResultsFile.open(path, True))
    assert other.reused == 0


# ---------------------------------------------------------------------------
# A real kill: SIGKILL a running `edgeplace whatif`, then resume.

_RUNNER = """
import argparse, sys
from edgeplace.planning_cli import add_commands
parser = argparse.ArgumentParser(prog="edgeplace")
handlers = add_commands(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(handlers[args.command](args))
"""


def _parser():
    parser = argparse.ArgumentParser(prog="edgeplace")
    handlers = add_commands(parser.add_subparsers(dest="command", required=True))
    return parser, handlers


def _run(argv: list[str]) -> int:
    parser, handlers = _parser()
    args = parser.parse_args(argv)
    return handlers[args.command](args)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_killed_run_resumes_with_only_the_rest(tmp_path, capsys):
    results = tmp_path / "sweep.jsonl"
    # metro-de with CP-SAT for 1 s per case: each case takes over a second (CP-SAT
    # does not prove optimality there), so the run is killed part-way.
    argv = ["whatif", str(METRO_DE), "--vary", "sla.scale=1,1.5,2,3,4", "--solver", "cpsat", "--time-limit", "1",
            "--no-bound", "--workers", "1", "--quiet", "--results", str(results)]
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while _lines(results) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    done = _lines(results)
    assert 2 <= done < 6
    records = [json.loads(line) for line in results.read_text().splitlines()]  # every line whole
    assert all("emissions_kg" in r["result"] for r in records)
    assert _run([*argv, "--resume", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 6 and _lines(results) == 6
    # The title (table format) reports the split; in JSON, count from the file instead.
    assert _run([*argv, "--resume"]) == 0
    title = capsys.readouterr().out.splitlines()[0]
    assert "0 computed, 6 reused" in title


# ---------------------------------------------------------------------------
# Handlers


def _scenario_file(tmp_path) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(shared_edge().build_dict()))
    return str(path)


def test_unknown_vary_key_is_invalid_input_listing_the_keys(tmp_path):
    with pytest.raises(InputError, match=r"(?s)unknown key 'pv'.*pv_kwp\[SITE\]=KWP.*isolation\[TENANT\]"):
        _run(["whatif", _scenario_file(tmp_path), "--vary", "pv=1,2", "--quiet"])


@pytest.mark.parametrize("extra, message", [
    (["--resume"], "--resume needs --results"),
    (["--workers", "2", "--scheduler-address", "tcp://127.0.0.1:8786"], "--workers and --scheduler-address conflict"),
])
def test_conflicting_flags_are_usage_errors(tmp_path, capsys, extra, message):
    assert _run(["whatif", _scenario_file(tmp_path), "--vary", "isolation=on,off", "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err


def test_whatif_json_and_csv(tmp_path, capsys):
    scenario = _scenario_file(tmp_path)
    assert _run(["whatif", scenario, "--vary", "isolation=on,off", "--solver", "greedy", "--workers", "1",
                 "--quiet", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["isolation"] for r in rows] == [BASE, "on", "off"]
    assert rows[2]["d_operational_kg"] < 0 and rows[2]["d_emissions_kg"] < 0
    assert _run(["whatif", scenario, "--vary", "isolation=on,off", "--solver", "greedy", "--workers", "1",
                 "--quiet", "--format", "csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("isolation,status,operational_kg,d_operational_kg,d_operational_pct,energy_kwh,"
                             "d_energy_kwh,embodied_fleet_kg,d_embodied_fleet_kg,emissions_kg") and len(csv) == 4


def test_help_lists_the_keys(capsys):
    parser, _ = _parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["whatif", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for key in ("sla.scale[SEL]", "pv_kwp[SITE]", "battery_kwh", "intensity.scale", "site[SITE]", "nodes[SITE]",
                "isolation[TENANT]", "demand.scale", "solver.time_limit_s", "add=FILE"):
        assert key in text


def test_progress_goes_to_stderr_and_the_table_to_stdout(tmp_path, capsys):
    assert _run(["whatif", _scenario_file(tmp_path), "--vary", "isolation=on,off", "--solver", "greedy",
                 "--workers", "1", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "whatif cases" in captured.err and "3/3" in captured.err
    assert captured.out.startswith("isolation,status") and "whatif cases" not in captured.out


def test_removing_nodes_changes_embodied_carbon_sleeping_them_does_not():
    # shared_edge: 3 owned nodes of 3,700 kg over 4 years = 105.5936 g/h, 24 h each:
    # 3 x 2534.2466 g = 7.6027 kg embodied (fleet), whatever the plan sleeps.
    # isolation=off lets one edge node sleep: operational drops, embodied stays.
    # nodes[e]=1 removes e2 from the fleet: embodied drops by 2534.2466 g = 2.5342 kg.
    per_node_kg = 3_700_000 / (4 * 8760) * 24 / 1000
    result = run_whatif(shared_edge().build(), ["isolation=on,off", "nodes[e]=2,1"], GREEDY, InProcessEngine())
    t = result.table
    base = t.iloc[0]
    assert base["embodied_fleet_kg"] == pytest.approx(3 * per_node_kg, rel=1e-9)
    sleeps = row(t, isolation="off", **{"nodes[e]": "2"})
    assert sleeps["active_nodes"] < base["active_nodes"]
    assert sleeps["d_operational_kg"] < 0
    assert sleeps["d_embodied_fleet_kg"] == pytest.approx(0.0, abs=1e-9)
    removed = row(t, isolation="off", **{"nodes[e]": "1"})
    assert removed["nodes"] == 2
    assert removed["d_embodied_fleet_kg"] == pytest.approx(-per_node_kg, rel=1e-9)
