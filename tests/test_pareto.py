"""The latency-emissions frontier: monotone optimal emissions, marginal
arithmetic, the automatic range, the plot, and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from edgeplace.pareto import ParetoOptions, auto_scales, pareto, plot
from edgeplace.planning_cli import add_commands
from edgeplace.optimizer.solve import SolveOptions
from tests.builders import ScenarioBuilder, run_cli

CPSAT = SolveOptions(solver="cpsat", time_limit_s=10.0, workers=1, bound_time_limit_s=0.0)


def ladder() -> ScenarioBuilder:
    """Users reach edge site `e` in 1 ms; metro `m` is 3 ms further, cloud `c`
    (clean FR grid) 10 ms. A 2 ms SLA pins both services to `e`; at x2 (4 ms)
    `m` qualifies, at x6 (12 ms) `c`. Each step away from the edge is cheaper."""
    return (ScenarioBuilder("ladder").slots(24)
            .region("DE", 400).region("FR", 50)
            .site("e", region="DE", pue=1.8).site("m", tier="metro", region="DE", pue=1.2)
            .site("c", tier="cloud", region="FR", pue=1.1)
            .node("e1", site="e", cpu=8000, idle_w=100, max_w=200)
            .node("m1", site="m", cpu=8000, idle_w=60, max_w=160)
            .node("c1", site="c", cpu=8000, idle_w=30, max_w=120)
            .link("e", "m", 3).link("m", "c", 7).user("u", site="e", access_ms=1)
            .tenant("t")
            .workload("s1", cpu=2000, sla_ms=2, users=["u"])
            .workload("s2", cpu=2000, sla_ms=4, users=["u"]))


def test_auto_scales_run_from_the_tightest_feasible_to_the_loosest_that_binds():
    scales = auto_scales(ladder().build(), None, points=6)
    # s1: nearest 1 ms / 2 ms = 0.5, farthest 11 / 2 = 5.5;  s2: 1 / 4 = 0.25, 11 / 4 = 2.75
    assert scales[0] == 0.5 and scales[-1] == 5.5
    assert 1.0 in scales and scales == sorted(scales) and len(scales) == 7


def test_looser_slas_never_increase_optimal_emissions_and_the_marginals_add_up():
    result = pareto(ladder().build(), ParetoOptions(solve=CPSAT, scales=(0.5, 1, 2, 3, 6)))
    t = result.table
    assert (t["status"] == "optimal").all()
    em = t["emissions_kg"].to_numpy()
    assert (np.diff(em) <= 1e-9).all(), em
    assert em[-1] < em[0]  # the clean cloud is worth it once allowed
    assert np.allclose(t["frontier_kg"], em)  # optimal plans: the frontier is the points themselves
    # mean SLA (replica-weighted): (2s + 4s) / 2 = 3s ms
    assert np.allclose(t["mean_sla_ms"], 3 * t["sla_scale"])
    # marginal = frontier g saved / ms of mean SLA loosened, between neighbours
    for i in range(1, len(t)):
        expect = (t["frontier_kg"][i - 1] - t["frontier_kg"][i]) * 1000 / (t["mean_sla_ms"][i] - t["mean_sla_ms"][i - 1])
        assert t["marginal_g_per_ms"][i] == pytest.approx(expect)
    assert result.summary["tightest_feasible"] == 0.5
    assert result.summary["saturates_at"] == 6
    # delivered latency grows as the plan moves away from the edge
    assert t["mean_latency_ms"].iloc[-1] > t["mean_latency_ms"].iloc[0]


def test_frontier_keeps_the_best_tighter_plan_and_flags_rule_breakers():
    import pandas as pd

    from edgeplace.pareto import _frontier

    table = pd.DataFrame({
        "sla_scale": [1, 2, 3, 4],
        "status": ["infeasible", "feasible", "feasible", "feasible"],
        "violations": [2, 0, 0, 0],
        "emissions_kg": [5.0, 10.0, 12.0, 9.0],  # 12 at x3 is a worse heuristic plan, not the world
        "energy_kwh": [1.0, 2.0, 3.0, 1.5],
        "mean_sla_ms": [1.0, 2.0, 3.0, 4.0],
    })
    out = _frontier(table, ParetoOptions(tolerance_pct=0.0))
    t = out.table
    assert np.isnan(t["frontier_kg"][0])  # a plan that breaks a rule is no point of the frontier
    assert t["frontier_kg"].tolist()[1:] == [10.0, 10.0, 9.0]
    assert t["frontier_from"].tolist()[1:] == [2, 2, 4]
    assert t["marginal_g_per_ms"][3] == pytest.approx(1000.0)  # 1 kg over 1 ms
    assert out.summary["saturates_at"] == 4 and out.summary["tightest_feasible"] == 2


def test_plot_writes_a_png_atomically(tmp_path):
    result = pareto(ladder().build(), ParetoOptions(solve=CPSAT, scales=(0.5, 2, 6)))
    path = tmp_path / "out" / "frontier.png"
    plot(result, path, "ladder")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["frontier.png"]


# ---------------------------------------------------------------------------
# The command


def _run(argv):
    return run_cli(add_commands, argv)


@pytest.fixture
def scenario_file(tmp_path) -> str:
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(ladder().build_dict()))
    return str(path)


def test_pareto_command_json_and_plot(scenario_file, tmp_path, capsys):
    png = tmp_path / "p.png"
    assert _run(["pareto", scenario_file, "--select", "s1", "--sla-ms", "2,4,12", "--solver", "cpsat",
                 "--no-bound", "--workers", "1", "--quiet", "--format", "json", "-o", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["sla_ms"] for p in doc["points"]] == [2, 4, 12]
    assert [p["mean_sla_ms"] for p in doc["points"]] == [2, 4, 12]  # only s1 is selected
    assert doc["summary"]["plot"] == str(png) and png.exists()
    assert doc["points"][2]["frontier_kg"] < doc["points"][0]["frontier_kg"]


@pytest.mark.parametrize("extra, message", [
    (["--sla-ms", "2,4"], "--sla-ms needs --select"),
    (["--sla-ms", "2,4", "--select", "s1", "--sla-scales", "1,2"], "--sla-ms and --sla-scales conflict"),
])
def test_pareto_usage_errors(scenario_file, capsys, extra, message):
    assert _run(["pareto", scenario_file, "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err


def test_pareto_bad_scales_are_invalid_input(scenario_file):
    from edgeplace.topology import InputError

    with pytest.raises(InputError, match=r"tight: write auto or comma-separated numbers > 0"):
        _run(["pareto", scenario_file, "--quiet", "--sla-scales", "tight"])

