"""Simulation: the repeated world, forecasts, rolling re-plans stitched and
evaluated on the actual signals, the oracle, time-shifting, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeplace.planning_cli import add_commands
from edgeplace.simulate import SimulationOptions, build_world, forecast_values, migrations, parse_duration_slots, simulate
from edgeplace.sweep import InProcessEngine, LocalProcessEngine
from edgeplace.policies.evaluate import ViolationKind
from tests.builders import ScenarioBuilder, run_cli
from edgeplace.topology import InputError, load_scenario
from edgeplace.topology.load import compile_spec

METRO_DE = Path(__file__).resolve().parents[1] / "examples" / "metro-de.yaml"
#: gCO2/kWh per hour: night 400, morning 300, solar noon 150, evening 450.
DE = [400] * 6 + [300] * 6 + [150] * 6 + [450] * 6
PV = [0] * 7 + [1, 2, 3, 3, 2, 1] + [0] * 11  # kW


def day() -> ScenarioBuilder:
    """One German day: an edge site with PV, a cloud site in the same grid;
    two services and two deferrable jobs (3 h anywhere in the day; 2 h in 04-16 UTC)."""
    return (ScenarioBuilder("day").slots(24)
            .region("DE", DE)
            .site("e", region="DE", pue=1.5, pv_kwp=4, renewable=PV)
            .site("c", tier="cloud", region="DE", pue=1.1)
            .node("e1", site="e", cpu=8000).node("e2", site="e", cpu=8000)
            .node("c1", site="c", cpu=16000, idle_w=60, max_w=240)
            .link("e", "c", 8).user("u", site="e", access_ms=1)
            .tenant("t")
            .workload("svc", cpu=2000, sla_ms=3, users=["u"], usage=0.5)
            .workload("api", cpu=2000, sla_ms=20, users=["u"], usage=0.3)
            .workload("train", cpu=6000, usage=0.9, window=(0, 24), duration_minutes=180)
            .workload("report", cpu=4000, usage=0.8, window=(4, 16), duration_minutes=120))


def options(**kw) -> SimulationOptions:
    base: dict = {"solver": "greedy", "step_time_limit_s": 1.0, "lookahead_slots": 12, "migration_g_per_replica": 20.0}
    base.update(kw)
    return SimulationOptions(**base)


# ---------------------------------------------------------------------------
# Forecasts and the world


def test_forecasters_on_a_known_series():
    period = 4
    ext = np.array([10, 11, 12, 13, 20, 21, 22, 23, 30, 31], dtype=float)  # history 10..13, then actuals 20..
    # at t = 2 the last known value is ext[4 + 1] = 21
    assert forecast_values("persistence", ext, period, 2, 3).tolist() == [21, 21, 21]
    # seasonal naive: slot t+k from one period back while that is known, else two periods back
    # t=2: k=0 -> x[2-4] = ext[2] = 12; k=1 -> ext[3] = 13; k=2 -> x[0] = 20; k=3 -> x[1] = 21; k=4 -> x[2] = 12 (m=2)
    assert forecast_values("seasonal", ext, period, 2, 5).tolist() == [12, 13, 20, 21, 12]
    assert forecast_values("perfect", ext, period, 2, 3).tolist() == [22, 23, 30]
    # ewma at t = 4: whole days [10..13] (weight 1/2) and [20..23] (weight 1), normalised by 1.5
    assert forecast_values("ewma", ext, period, 4, 2) == pytest.approx([(5 + 20) / 1.5, (5.5 + 21) / 1.5])


def test_world_repeats_days_with_seeded_noise_and_recurring_jobs():
    spec = day().build().spec
    world = build_world(spec, 72, noise=1.0, seed=5)
    sc = compile_spec(world.spec)
    assert sc.n_slots == 72
    de = sc.region_intensity_g_per_kwh[0]
    assert de[:24].tolist() == DE  # day 1 is the scenario itself
    assert not np.allclose(de[24:48], DE) and not np.allclose(de[24:48], de[48:])
    assert (sc.site_renewable_kw[0, 24:48] <= np.asarray(PV) + 1e-9).all()  # never above the clear day
    ids = [w for w, d in zip(sc.workload_ids, sc.workload_deferrable) if d]
    assert ids == ["train", "report", "train#2", "report#2", "train#3", "report#3"]
    r2 = sc.index_of("workload", "report#2")
    assert (sc.workload_earliest_slot[r2], sc.workload_latest_start_slot[r2]) == (28, 38)  # 4 + 24 .. 16 + 24 - 2
    assert world.history[("grid_intensity", "DE")].shape == (24,)
    again = compile_spec(build_world(spec, 72, noise=1.0, seed=5).spec)
    assert np.array_equal(again.region_intensity_g_per_kwh, sc.region_intensity_g_per_kwh)
    other = compile_spec(build_world(spec, 72, noise=1.0, seed=6).spec)
    assert not np.array_equal(other.region_intensity_g_per_kwh, sc.region_intensity_g_per_kwh)
    flat = compile_spec(build_world(spec, 72, noise=0.0).spec)
    assert flat.region_intensity_g_per_kwh[0].tolist() == DE * 3


def test_a_world_shorter_than_the_scenario_is_cut_and_drops_jobs_that_no_longer_fit():
    sc = compile_spec(build_world(day().build().spec, 5).spec)
    assert sc.n_slots == 5
    assert "report" not in sc.workload_ids  # 2 h from 04 UTC: 1 slot of it is left
    assert "train" in sc.workload_ids  # 3 h anywhere: fits 5 slots


def test_a_scenario_of_part_of_a_day_cannot_be_repeated():
    spec = ScenarioBuilder("part").slots(6).region("DE", 300).site("s").node("n").tenant("t").workload("w").build().spec
    with pytest.raises(InputError, match=r"not whole days, so it cannot be repeated"):
        build_world(spec, 12)


@pytest.mark.parametrize("text, slots", [("7d", 168), ("36h", 36), ("120m", 2), ("10", 10)])
def test_durations(text, slots):
    assert parse_duration_slots(text, 60) == slots


@pytest.mark.parametrize("text, message", [("90m", "whole number of 60-minute slots"), ("7 days", "write a duration"),
                                           ("0", "write a duration")])
def test_bad_durations(text, message):
    with pytest.raises(InputError, match=message):
        parse_duration_slots(text, 60)


def test_migrations_count_moves_not_relabelled_replicas():
    sc = ScenarioBuilder().slots(4).region("DE", 300).site("s").node("a").node("b").node("c").tenant("t") \
        .workload("w", replicas=2).build()
    assign = np.array([[0, 1, 1, 2],
                       [1, 0, 0, 0]])
    # slot 1: {a, b} -> {b, a}: no move; slot 3: {b, a} -> {c, a}: one move
    assert migrations(sc, assign) == 1


# ---------------------------------------------------------------------------
# Runs


def test_with_a_perfect_seasonal_forecast_the_optimizer_is_the_oracle():
    # Identical days (noise 0): the seasonal-naive forecast is exactly right, so the
    # forecast-driven optimizer sees what the oracle sees and plans the same.
    result = simulate(day().build(), ["optimizer", "oracle"], options(horizon_slots=48, noise=0.0))
    em = dict(zip(result.table["policy"], result.table["emissions_kg"]))
    assert em["optimizer"] == pytest.approx(em["oracle"], rel=1e-12)
    assert result.summary["intensity_forecast_mape_pct"] == 0.0
    assert result.summary["cost_of_forecast_error_kg"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("forecast", ["persistence", "seasonal"])
def test_the_oracle_is_never_worse_than_the_forecast_driven_optimizer(forecast):
    result = simulate(day().build(), ["optimizer", "oracle"], options(horizon_slots=72, forecast=forecast, seed=3))
    em = dict(zip(result.table["policy"], result.table["operational_kg"]))
    # Same world, solver, steps and budget; only the information differs. Heuristic
    # steps may differ a little either way: 1 % tolerance.
    assert em["oracle"] <= em["optimizer"] * 1.01
    assert result.summary["intensity_forecast_mape_pct"] > 5  # the forecasts really are wrong
    assert result.summary["cost_of_forecast_error_kg"] == pytest.approx(em["optimizer"] - em["oracle"])
    for name in ("optimizer", "oracle"):
        assert result.evaluations[name].violations == [], name


def test_time_shifting_saves_and_every_job_runs_once_in_its_window():
    result = simulate(day().build(), ["optimizer", "noshift"], options(horizon_slots=48, noise=0.0, replan_every=2))
    em = dict(zip(result.table["policy"], result.table["operational_kg"]))
    # noshift runs "train" (6000 mc, 90 %) at 00-03 UTC at 400 g/kWh; shifted it runs
    # in the 150 g/kWh afternoon next to the PV: at least its dynamic energy
    # 0.9 x 6000/8000 x 100 W x 1.5 x 3 h = 0.30 kWh x 250 g/kWh = 76 g per day.
    assert em["noshift"] - em["optimizer"] > 2 * 0.076
    assert result.summary["time_shifting_saves_kg"] == pytest.approx(em["noshift"] - em["optimizer"])
    for name, ev in result.evaluations.items():
        assert ev.violation_counts[ViolationKind.schedule] == 0, (name, [v.message for v in ev.violations])


def test_noshift_runs_a_job_at_its_nominal_start_and_the_optimizer_may_pause_it():
    # "train" nominally starts at 18:00 (450 g/kWh), inside its 00-24 window: noshift runs it
    # 18-21 UTC; "report" has no nominal start and runs from its earliest slot (04:00).
    sc = (day().workload("batch", cpu=6000, usage=0.9, window=(0, 24), duration_minutes=180, interruptible=True,
                         nominal_slot=18).build())
    result = simulate(sc, ["optimizer", "noshift"], options(noise=0.0, lookahead_slots=24))
    assign = result.runs["noshift"].assign
    world = result.world

    def slots(policy, wid):
        w = world.index_of("workload", wid)
        r0 = int(world.workload_first_replica[w])
        return np.flatnonzero((result.runs[policy].assign[r0] >= 0)).tolist()

    assert assign.dtype.itemsize <= 8
    assert slots("noshift", "batch") == [18, 19, 20]
    assert slots("noshift", "report") == [4, 5]
    shifted = slots("optimizer", "batch")
    assert len(shifted) == 3 and np.mean([DE[t] for t in shifted]) < 450  # moved to cleaner slots
    for name, ev in result.evaluations.items():
        assert ev.violation_counts[ViolationKind.schedule] == 0, (name, [v.message for v in ev.violations])


def test_baselines_are_placed_once_and_compared_on_the_same_world():
    result = simulate(day().build(), ["default", "binpack", "nearest", "greedy", "optimizer", "oracle"],
                      options(horizon_slots=48), engine=LocalProcessEngine(2))
    t = result.table.set_index("policy")
    assert (t.loc[["default", "binpack", "nearest"], "migrations"] == 0).all()
    assert t.loc["optimizer", "emissions_kg"] < t.loc["default", "emissions_kg"]
    assert t.loc["oracle", "operational_vs_oracle_pct"] == 0
    assert t.loc["default", "operational_vs_default_pct"] == 0
    # Operational carbon and energy come first; embodied on the fleet basis after them.
    assert list(result.table.columns[:6]) == ["policy", "operational_kg", "operational_vs_default_pct",
                                              "operational_vs_oracle_pct", "energy_kwh", "embodied_fleet_kg"]
    # the same world for all: services run every slot, so the same replica-slots are placed
    counts = {p: int((r.assign >= 0).sum()) for p, r in result.runs.items()}
    assert len(set(counts.values())) == 1, counts


def test_the_bundled_example_for_a_few_hours():
    result = simulate(load_scenario(METRO_DE), ["default", "optimizer", "oracle"],
                      options(horizon_slots=6, lookahead_slots=6), engine=InProcessEngine())
    t = result.table.set_index("policy")
    assert t.loc["optimizer", "violations"] == 0
    assert t.loc["optimizer", "emissions_kg"] < 0.8 * t.loc["default", "emissions_kg"]


# ---------------------------------------------------------------------------
# The command


def _run(argv):
    return run_cli(add_commands, argv)


@pytest.fixture
def scenario_file(tmp_path) -> str:
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(day().build_dict()))
    return str(path)


def test_simulate_command_json(scenario_file, capsys):
    assert _run(["simulate", scenario_file, "--policies", "default,optimizer,oracle", "--horizon", "2d",
                 "--lookahead", "12h", "--workers", "1", "--quiet", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in doc["policies"]] == ["default", "optimizer", "oracle"]
    s = doc["summary"]
    assert (s["horizon_slots"], s["lookahead_slots"], s["forecast"]) == (48, 12, "seasonal")
    assert "cost_of_forecast_error_kg" in s and "time_shifting_saves_kg" not in s


@pytest.mark.parametrize("engine", [InProcessEngine(), LocalProcessEngine(2)], ids=["in-process", "processes"])
def test_progress_hears_the_slots_of_every_policy(engine):
    heard: list[tuple[int, int, str]] = []
    simulate(day().build(), ["default", "optimizer"], options(horizon_slots=48), engine,
             progress=lambda done, total, what: heard.append((done, total, what)))
    assert heard and all(total == 2 * 48 for _, total, _ in heard)
    done = [d for d, _, _ in heard]
    assert done == sorted(done) and done[-1] == 96  # monotone, up to every slot of both policies
    assert any(what.startswith("optimizer ") for _, _, what in heard)


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_goes_to_a_terminal_only_and_never_into_json(scenario_file, capsys, monkeypatch, terminal):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    assert _run(["simulate", scenario_file, "--policies", "default,optimizer", "--horizon", "2d", "--lookahead",
                 "12h", "--workers", "1", "--quiet", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout is the JSON document and nothing else
    assert ("ETA" in err and "96/96" in err) is terminal
    assert err == "" or terminal


def test_incremental_replans_only_when_something_changed():
    # Identical days (no noise): the seasonal forecast of a slot does not move once it is in
    # view, so a plan changes only when a job enters the 12-slot lookahead, while a job that has
    # not started could still wait for the slot coming into view (train's window is the whole
    # day, report's 04-16), or when the plan in force runs out.
    sc = day().build()
    every = simulate(sc, ["optimizer"], options(horizon_slots=48, noise=0.0, incremental=False))
    changed = simulate(sc, ["optimizer"], options(horizon_slots=48, noise=0.0))
    assert every.runs["optimizer"].replans == 48
    assert changed.runs["optimizer"].replans < 40
    e = dict(zip(every.table["policy"], every.table["emissions_kg"]))["optimizer"]
    c = dict(zip(changed.table["policy"], changed.table["emissions_kg"]))["optimizer"]
    assert c == pytest.approx(e, rel=0.01)  # the same decisions, up to the heuristic's path
    assert changed.evaluations["optimizer"].violations == []


def test_simulate_command_table(scenario_file, capsys):
    assert _run(["simulate", scenario_file, "--policies", "optimizer,noshift", "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("day: 24 slots (1 d), seasonal forecast")
    assert "time_shifting_saves_kg" in out


@pytest.mark.parametrize("extra, message", [
    (["--policies", "default,psychic"], r"psychic: unknown policy; choose from default, binpack"),
    (["--lookahead", "2h"], r"shorter than the longest deferrable job \(3 slots\)"),
    (["--forecast", "given"], r"the scenario has no forecast series"),
    (["--horizon", "3d", "--forecast", "given"], r"forecast series cover 24 slots, the horizon 72"),
])
def test_simulate_bad_input(scenario_file, extra, message):
    with pytest.raises(InputError, match=message):
        _run(["simulate", scenario_file, "--quiet", "--workers", "1", *extra])
