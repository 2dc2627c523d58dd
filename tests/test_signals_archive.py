"""Issued forecasts: the archive file, `edgeplace signals archive` against WattTime and the Carbon Aware SDK
on loopback, and `edgeplace simulate --forecast-source` replaying them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeplace.simulate import SimulationOptions, simulate
from edgeplace.topology import InputError
from edgeplace.topology.signals.archive import ForecastArchive, IssuedForecast, read_archive, write_archive_csv
from edgeplace.topology.signals.series import Points, SlotGrid
from tests.builders import ScenarioBuilder, run_cli
from tests.test_signals_http import LoopbackServer, Reply

DE = [400] * 6 + [300] * 6 + [150] * 6 + [450] * 6


def day() -> ScenarioBuilder:
    """A day without renewables: grid intensity is the only forecast a planner needs."""
    return (ScenarioBuilder("day").slots(24).region("DE", DE)
            .site("e", region="DE", pue=1.5).site("c", tier="cloud", region="DE", pue=1.1)
            .node("e1", site="e", cpu=8000).node("c1", site="c", cpu=16000, idle_w=60, max_w=240)
            .link("e", "c", 8).user("u", site="e", access_ms=1).tenant("t")
            .workload("svc", cpu=2000, sla_ms=20, users=["u"], usage=0.5)
            .workload("train", cpu=6000, usage=0.9, window=(0, 24), duration_minutes=180))


def archive_of(sc, values_at, kind="average") -> ForecastArchive:
    """One forecast issued at each slot start, for the rest of the day: values_at(t) -> array."""
    start = sc.spec.horizon.start.timestamp()
    forecasts = []
    for t in range(sc.n_slots):
        times = start + 3600.0 * np.arange(t, sc.n_slots)
        forecasts.append(IssuedForecast("DE", start + 3600.0 * t, Points(times, values_at(t), 3600.0), kind))
    return ForecastArchive(tuple(forecasts), "test archive")


def run(sc, archive, forecast="seasonal"):
    options = SimulationOptions(solver="greedy", step_time_limit_s=1.0, lookahead_slots=12, noise=0.0,
                                forecast=forecast, forecast_source=archive)
    return simulate(sc, ["optimizer", "oracle"], options)


def test_replaying_a_perfect_issued_forecast_plans_like_the_oracle():
    sc = day().build()
    actual = np.asarray(DE, dtype=float)
    result = run(sc, archive_of(sc, lambda t: actual[t:]), forecast="persistence")
    em = dict(zip(result.table["policy"], result.table["emissions_kg"]))
    assert result.summary["intensity_forecast_mape_pct"] == pytest.approx(0.0, abs=1e-12)
    assert em["optimizer"] == pytest.approx(em["oracle"], rel=1e-12)
    assert result.summary["forecast_source"] == "test archive"
    # Without the archive, persistence is wrong at every change of level.
    plain = simulate(sc, ["optimizer"], SimulationOptions(solver="greedy", lookahead_slots=12, noise=0.0,
                                                         forecast="persistence"))
    assert plain.summary["intensity_forecast_mape_pct"] > 10


def test_a_biased_issued_forecast_is_what_the_planner_sees():
    sc = day().build()
    actual = np.asarray(DE, dtype=float)
    result = run(sc, archive_of(sc, lambda t: actual[t:] * 1.2))
    assert result.summary["intensity_forecast_mape_pct"] == pytest.approx(20.0, rel=1e-9)


def test_slots_beyond_the_issued_forecast_come_from_the_forecaster():
    sc = day().build()
    actual = np.asarray(DE, dtype=float)
    short = archive_of(sc, lambda t: actual[t:t + 2] if t < 22 else actual[t:])  # 2 h reach
    short = ForecastArchive(tuple(IssuedForecast(f.region, f.issued_s, Points(f.points.times_s[:2], f.points.values[:2],
                                                                              3600.0), f.intensity_kind)
                                  for f in short.forecasts), "short")
    grid = SlotGrid(sc.spec.horizon.start, 5, 60)
    values = short.values("DE", grid)
    assert values[:2].tolist() == [400.0, 400.0] and np.isnan(values[2:]).all()


def test_archive_file_round_trip_and_refusals(tmp_path):
    sc = day().build()
    archive = archive_of(sc, lambda t: np.asarray(DE[t:], dtype=float))
    path = tmp_path / "a.csv"
    path.write_text(write_archive_csv(archive.forecasts, "test"))
    again = read_archive(path)
    assert len(again.forecasts) == 24 and again.regions == ["DE"]
    grid = SlotGrid(sc.spec.horizon.start + timedelta(hours=5), 3, 60)
    assert again.values("DE", grid).tolist() == [400.0, 300.0, 300.0]
    path.write_text("issued_at,timestamp,region,value,unit,intensity_kind\n"
                    "2026-06-21T00:00:00,2026-06-21T00:00:00Z,DE,1,gCO2/kWh,average\n"
                    "2026-06-21T00:00:00Z,2026-06-21T01:00:00Z,DE,1,kgCO2,average\n")
    with pytest.raises(InputError, match=r"(?s)line 2: .*has no UTC offset.*line 3, column unit"):
        read_archive(path)
    with pytest.raises(InputError, match="marginal intensity; the scenario's is average"):
        run(sc, archive_of(sc, lambda t: np.asarray(DE[t:], dtype=float), kind="marginal"))
    with pytest.raises(InputError, match="perfect leaves nothing to replay"):
        run(sc, archive, forecast="perfect")


@pytest.fixture
def scenario_file(tmp_path) -> Path:
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(day().build_dict()))
    return path


def _signals(argv):
    from edgeplace.signals_cli import add_commands

    return run_cli(add_commands, ["signals", *argv])


def test_archive_command_from_watttime_then_simulate(scenario_file, tmp_path, monkeypatch, capsys):
    start = datetime(2026, 6, 21, tzinfo=timezone.utc)
    # Two forecasts issued before and during the day (hourly points, as data_point_period_seconds says).
    issued = [{"generated_at": (start - timedelta(minutes=5)).isoformat(),
               "forecast": [{"point_time": (start + timedelta(hours=h)).isoformat(), "value": 800.0} for h in range(24)]},
              {"generated_at": (start + timedelta(hours=12)).isoformat(),
               "forecast": [{"point_time": (start + timedelta(hours=h)).isoformat(), "value": 700.0} for h in range(12, 24)]}]
    body = {"data": issued, "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
                                     "data_point_period_seconds": 3600, "generated_at_period_seconds": 300,
                                     "model": {"date": "2023-03-01"}, "warnings": []}}
    with LoopbackServer() as srv:
        srv.script("/login", Reply(200, {"token": "jwt"}))
        srv.script("/v3/forecast/historical", Reply(200, body))
        monkeypatch.setenv("WATTTIME_USERNAME", "u")
        monkeypatch.setenv("WATTTIME_PASSWORD", "p")
        out = tmp_path / "wt.csv"
        assert _signals(["archive", str(scenario_file), "--service", "watttime", "--zone", "DE=CAISO_NORTH",
                         "--base-url", srv.url, "-o", str(out), "--every-minutes", "360"]) == 0
    archive = read_archive(out)
    assert [round(f.points.values[0], 3) for f in archive.forecasts] == [362.874, 317.514]  # lbs/MWh -> g/kWh
    assert archive.kinds() == {"marginal"}
    assert "wrote" in capsys.readouterr().err
    # The day's grid intensity is average: a marginal archive is refused, with the reason.
    from edgeplace.planning_cli import add_commands

    with pytest.raises(InputError, match="holds marginal intensity"):
        run_cli(add_commands, ["simulate", str(scenario_file), "--forecast-source", str(out), "--quiet",
                               "--workers", "1", "--policies", "optimizer"])


def test_archive_command_from_the_carbon_aware_sdk_then_simulate(scenario_file, tmp_path, capsys):
    start = datetime(2026, 6, 21, tzinfo=timezone.utc)
    answers = [{"generatedAt": (start + timedelta(hours=6 * k)).isoformat(), "requestedAt": "x", "location": "de",
                "dataStartAt": "x", "dataEndAt": "x", "windowSize": 60, "optimalDataPoints": [],
                "forecastData": [{"location": "DE", "timestamp": (start + timedelta(hours=h)).isoformat(),
                                  "duration": 60, "value": float(DE[h])} for h in range(6 * k, 24)]}
               for k in range(4)]
    with LoopbackServer() as srv:
        srv.script("/emissions/forecasts/batch", Reply(200, answers))
        out = tmp_path / "cas.csv"
        assert _signals(["archive", str(scenario_file), "--service", "carbonaware", "--intensity-kind", "average",
                         "--zone", "DE=germanywestcentral", "--base-url", srv.url, "-o", str(out),
                         "--every-minutes", "360", "--quiet"]) == 0
        asked = srv.seen[0].json()
    assert [a["requestedAt"] for a in asked] == ["2026-06-21T00:00:00Z", "2026-06-21T06:00:00Z",
                                                 "2026-06-21T12:00:00Z", "2026-06-21T18:00:00Z"]
    from edgeplace.planning_cli import add_commands

    assert run_cli(add_commands, ["simulate", str(scenario_file), "--forecast-source", str(out), "--quiet",
                                  "--workers", "1", "--policies", "optimizer,oracle", "--lookahead", "6h",
                                  "--forecast", "persistence", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # Every window lies inside the forecast issued at its 6-hour mark, which is the actual series.
    assert doc["summary"]["forecast_source"] == str(out)
    assert doc["summary"]["intensity_forecast_mape_pct"] == pytest.approx(0.0, abs=1e-9)
