"""No hindsight: every choice inside planning is made on the forecast.

A scenario with forecast series is planned twice with the same forecast and
two very different actual series. Whatever the actual series hold, the plan
(placement, solver, status, planned figures) must be the same: the greedy
or exact choice, the neighbourhood search's acceptance and the repair all
price candidates on the forecast. Only the reported evaluation (on the
actual series) differs. The control shows the test can fail: planning on
the actual series (no forecast) gives another placement.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.topology import scenario_from_dict
from edgeplace.topology.generate import generate


def _doc() -> dict:
    return generate(n_workloads=24, n_nodes=8, n_slots=4, seed=3)


def _with_series(doc: dict, forecast_scale: dict[str, list[float]], actual_scale: dict[str, list[float]]) -> dict:
    """The document with grid intensity per region: forecast = values x forecast_scale, actual = values x
    actual_scale (per slot factors)."""
    doc = copy.deepcopy(doc)
    signals = []
    for s in doc["signals"]:
        if s["signal"] != "grid_intensity":
            signals.append(s)
            continue
        base = np.asarray(s["values"], dtype=float)
        actual = dict(s, values=np.round(base * np.asarray(actual_scale[s["region"]]), 1).tolist())
        forecast = dict(s, series="forecast", values=np.round(base * np.asarray(forecast_scale[s["region"]]), 1).tolist())
        signals += [actual, forecast]
    doc["signals"] = signals
    return doc


def _scales(doc: dict, pattern: str) -> dict[str, list[float]]:
    """Per-region slot factors: 'flat' (1.0), or 'flip' (the cleanest region becomes the dirtiest and
    the day runs backwards), so a planner that peeked at it would place and time things differently."""
    T = doc["horizon"]["slots"]
    regions = [r["id"] for r in doc["regions"]]
    if pattern == "flat":
        return {r: [1.0] * T for r in regions}
    return {r: list(np.linspace(3.0, 0.2, T) if i % 2 else np.linspace(0.2, 3.0, T)) for i, r in enumerate(regions)}


CASES = [
    ("greedy", SolveOptions(solver="greedy")),
    ("milp", SolveOptions(solver="milp", time_limit_s=20, workers=1)),
    # a model too large to build whole: restricted solve, then a fixed number of search steps
    ("restricted+search", SolveOptions(solver="milp", time_limit_s=30, workers=1, restrict_above_variables=50,
                                       search_steps=4)),
]


@pytest.mark.parametrize("name,options", CASES, ids=[c[0] for c in CASES])
def test_the_plan_is_the_same_whatever_the_actual_series_hold(name, options):
    base = _doc()
    forecast = _scales(base, "flat")
    a = scenario_from_dict(_with_series(base, forecast, _scales(base, "flat")))
    b = scenario_from_dict(_with_series(base, forecast, _scales(base, "flip")))
    assert not np.allclose(a.region_intensity_g_per_kwh, b.region_intensity_g_per_kwh)  # the worlds differ
    assert np.array_equal(a.region_intensity_forecast_g_per_kwh, b.region_intensity_forecast_g_per_kwh)
    plan_a, plan_b = solve(a, options), solve(b, options)
    assert np.array_equal(plan_a.placement.assign, plan_b.placement.assign)
    assert (plan_a.solver, plan_a.status) == (plan_b.solver, plan_b.status)
    assert plan_a.planned_g == pytest.approx(plan_b.planned_g, rel=1e-12)
    assert plan_a.lower_bound_g == plan_b.lower_bound_g
    # What differs is only the evaluation on the actual series.
    assert plan_a.objective_g != pytest.approx(plan_b.objective_g, rel=1e-3)


def test_control_planning_on_the_flipped_series_gives_another_plan():
    # The same flipped series as forecast (a planner that knows them) changes the placement,
    # so the test above would fail if planning looked at the actual series.
    base = _doc()
    flipped = _scales(base, "flip")
    knows = scenario_from_dict(_with_series(base, flipped, flipped))
    blind = scenario_from_dict(_with_series(base, _scales(base, "flat"), flipped))
    options = SolveOptions(solver="greedy")
    assert not np.array_equal(solve(knows, options).placement.assign, solve(blind, options).placement.assign)
