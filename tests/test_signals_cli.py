"""edgeplace.signals_cli: the `signals` handlers, through a parser built with `add_commands`.

Exit codes: 0 ok, 2 usage (returned), 3 invalid input (an InputError raised
for edgeplace.cli to map). Services are loopback servers.
"""

from __future__ import annotations

import argparse
import glob
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from edgeplace.signals_cli import add_commands, sparkline
from tests.builders import run_cli
from tests.test_signals_electricitymaps import entries
from tests.test_signals_http import LoopbackServer, Reply
from edgeplace.topology import InputError, load_scenario
from edgeplace.topology.load import read_document
from edgeplace.topology.signals.series import render_document

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "metro-de.yaml"
EXAMPLE_SIGNALS = sorted(glob.glob(str(ROOT / "examples" / "signals" / "*.csv")))
START = datetime(2026, 6, 21, tzinfo=timezone.utc)
DE = [378, 368, 362, 360, 356, 338, 306, 268, 232, 204, 184, 172, 170, 178, 202, 242, 292, 348, 404, 442, 454, 438, 416, 394]


def run(*argv: str) -> int:
    return run_cli(add_commands, ["signals", *argv])


@pytest.fixture(scope="module")
def original():
    return load_scenario(EXAMPLE)


@pytest.fixture
def bare(tmp_path) -> Path:
    """The example without any signals (not a valid scenario by itself: regions need intensity)."""
    doc = read_document(EXAMPLE)
    doc["signals"] = []
    path = tmp_path / "bare.yaml"
    path.write_text(render_document(doc, path))
    return path


# -- import ----------------------------------------------------------------------


def test_import_rebuilds_the_example_from_its_csv_files(bare, tmp_path, original, capsys):
    out = tmp_path / "rebuilt.yaml"
    assert run("import", str(bare), *EXAMPLE_SIGNALS, "-o", str(out)) == 0
    rebuilt = load_scenario(out)
    for name in ("region_intensity_g_per_kwh", "site_renewable_kw", "node_background_util"):
        np.testing.assert_allclose(getattr(rebuilt, name), getattr(original, name), rtol=0, atol=1e-9)
    err = capsys.readouterr().err
    assert f"wrote {out}: 10 signal(s)" in err and "grid_intensity average actual for region DE" in err


def test_import_pv_then_back_in_place(tmp_path, original, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(EXAMPLE.read_text())
    assert run("import", str(path), "--pv", "--loss", "0", "--site", "agg-mainz") == 0
    sc = load_scenario(path)
    mainz = sc.index_of("site", "agg-mainz")
    from edgeplace.topology.signals.pv import PVOptions, pv_signals
    from edgeplace.topology.signals.series import SlotGrid

    [expected] = pv_signals(original.spec, SlotGrid(START, 24, 60), PVOptions(system_loss=0.0), sites=["agg-mainz"])
    np.testing.assert_allclose(sc.site_renewable_kw[mainz], expected.values, rtol=1e-9)  # the library's chain
    metro = sc.index_of("site", "metro-ffm-gallus")
    np.testing.assert_array_equal(sc.site_renewable_kw[metro], original.site_renewable_kw[metro])  # untouched
    assert "pvlib clear sky" in capsys.readouterr().err


def test_write_back_keeps_comments_key_order_and_untouched_signals(tmp_path):
    """`signals import/fetch` rewrite the scenario through a round-trip YAML writer: the user's comments
    (whole-line and trailing), key order and quoting survive; only the series written change."""
    path = tmp_path / "m.yaml"
    original_text = EXAMPLE.read_text()
    path.write_text(original_text)
    assert run("import", str(path), "--pv", "--loss", "0", "--site", "agg-mainz", "--quiet") == 0
    text = path.read_text()
    comments = [line.strip() for line in original_text.splitlines() if line.strip().startswith("#")]
    assert len(comments) > 10 and all(c in text for c in comments)
    trailing = [line.split("#", 1)[1] for line in original_text.splitlines()
                if "#" in line and not line.strip().startswith("#") and '"' not in line.split("#", 1)[0]]
    assert trailing and all(t in text for t in trailing)
    top_keys = lambda t: [l.split(":")[0] for l in t.splitlines() if l and l[0].isalpha()]  # noqa: E731
    assert top_keys(text) == top_keys(original_text)
    # Everything before the signals is byte-for-byte the user's text.
    head = original_text.index("\nsignals:")
    assert text[:head] == original_text[:head]
    before, after = read_document(EXAMPLE), read_document(path)
    changed = [i for i, (a, b) in enumerate(zip(before["signals"], after["signals"])) if a != b]
    assert len(after["signals"]) == len(before["signals"])
    assert [after["signals"][i].get("site") for i in changed] == ["agg-mainz"]


def test_write_back_to_json_and_from_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(read_document(EXAMPLE), default=str))
    assert run("import", str(path), "--pv", "--site", "agg-mainz", "--quiet", "-o", str(tmp_path / "o.yaml")) == 0
    assert load_scenario(tmp_path / "o.yaml").n_nodes == load_scenario(path).n_nodes


def test_import_with_a_forecaster_writes_a_forecast_series(tmp_path):
    # Two days of DE: the day before the horizon (history, 20 g higher) and the horizon day itself.
    rows = [f"{(START + timedelta(hours=h - 24)).isoformat()},DE,{v + 20},gCO2/kWh,lifecycle" for h, v in enumerate(DE)]
    rows += [f"{(START + timedelta(hours=h)).isoformat()},DE,{v},gCO2/kWh,lifecycle" for h, v in enumerate(DE)]
    de = tmp_path / "de.csv"
    de.write_text("timestamp,region,value,unit,factor_type\n" + "\n".join(rows) + "\n")
    path = example_copy(tmp_path)
    assert run("import", str(path), str(de), "--forecaster", "seasonal", "--quiet") == 0
    sc = load_scenario(path)
    g = sc.index_of("region", "DE")
    np.testing.assert_allclose(sc.region_intensity_g_per_kwh[g], DE)                        # actual: the day itself
    np.testing.assert_allclose(sc.region_intensity_forecast_g_per_kwh[g], np.array(DE) + 20)  # yesterday's profile
    fr = sc.index_of("region", "FR")
    np.testing.assert_array_equal(sc.region_intensity_forecast_g_per_kwh[fr], sc.region_intensity_g_per_kwh[fr])


@pytest.mark.parametrize("sample,expected", [
    # quarter-hours: the hour's value, then +10, +20, +30 within the hour
    ("mean", np.array(DE) + 15.0),  # the mean of v, v+10, v+20, v+30
    ("point", np.array(DE, dtype=float)),  # the value at the top of the hour
])
def test_import_of_a_finer_series_takes_the_mean_or_a_point_sample(tmp_path, sample, expected):
    rows = [f"{(START + timedelta(minutes=15 * q)).isoformat()},DE,{DE[q // 4] + 10 * (q % 4)},gCO2/kWh,lifecycle"
            for q in range(4 * 24)]
    de = tmp_path / "de.csv"
    de.write_text("timestamp,region,value,unit,factor_type\n" + "\n".join(rows) + "\n")
    path = example_copy(tmp_path)
    assert run("import", str(path), str(de), "--sample", sample, "--quiet") == 0
    sc = load_scenario(path)
    np.testing.assert_allclose(sc.region_intensity_g_per_kwh[sc.index_of("region", "DE")], expected)


def test_forecaster_without_history_says_what_it_needs(tmp_path):
    path = example_copy(tmp_path)
    with pytest.raises(InputError, match=r"(?s)--forecaster: ewma reads the 7 day\(s\) before the horizon.*"
                                         r"region DE .*starts at 2026-06-21T00:00:00Z"):
        run("import", str(path), EXAMPLE_SIGNALS[1], "--forecaster", "ewma")


@pytest.mark.parametrize("argv, message", [
    (["import", "X"], "nothing to import"),
    (["import", "X", "--pv", "--factor", "oil=650"], "--factor goes with --fuel-mix"),
    (["import", "X", "a.csv", "--site", "s1"], "--site and --irradiance go with --pv"),
    (["import", "X", "--pv", "--forecaster", "ewma"], "--forecaster needs history"),
])
def test_import_usage_errors(argv, message, capsys):
    assert run(*argv) == 2
    assert message in capsys.readouterr().err


def test_import_invalid_file_raises_and_writes_nothing(bare, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,region,value,unit\n2026-06-21T00:00:00,DE,300,gCO2/kWh\n")
    out = tmp_path / "out.yaml"
    with pytest.raises(InputError, match="has no UTC offset"):
        run("import", str(bare), str(bad), "-o", str(out))
    assert not out.exists()


def test_import_unknown_ids_are_named(bare, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("timestamp,region,value,unit\n" + "".join(
        f"{(START + timedelta(hours=h)).isoformat()},XX,300,gCO2/kWh\n" for h in range(24)))
    with pytest.raises(InputError, match=r"region 'XX': is not in the scenario \(its regions: DE, FR, PL, SE\)"):
        run("import", str(bare), str(f), "-o", str(tmp_path / "o.yaml"))


def test_bad_flag_values_are_usage_errors():
    with pytest.raises(SystemExit) as exit_info:
        run("import", "X", "--pv", "--tilt", "120")
    assert exit_info.value.code == 2


# -- show ----------------------------------------------------------------------------


def test_show_sparklines(capsys):
    assert run("show", str(EXAMPLE)) == 0
    out = capsys.readouterr().out
    assert "metro-de: 2026-06-21T00:00:00Z..2026-06-22T00:00:00Z (24 x 60 min)" in out
    line = next(text for text in out.splitlines() if "region DE" in text)
    assert "170..454" in line and line.endswith("▆▆▆▆▆▅▄▃▂▁▁▁▁▁▁▃▄▆▇███▇▇")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_show_tables(fmt, capsys):
    assert run("show", str(EXAMPLE), "--format", fmt, "--signal", "grid_intensity", "--id", "FR") == 0
    out = capsys.readouterr().out
    if fmt == "json":
        rows = json.loads(out)
        assert len(rows) == 24 and rows[0] == {"slot_start": "2026-06-21T00:00:00Z",
                                               "grid_intensity average actual region FR [gCO2/kWh]": 53.0}
    else:
        assert "2026-06-21T23:00:00Z" in out and "region FR" in out and "region DE" not in out


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5]) == "▁▁" and sparkline([]) == ""
    assert len(sparkline(range(1000), width=50)) == 50


# -- fetch ---------------------------------------------------------------------------


@pytest.fixture
def em(monkeypatch, tmp_path):
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "cli-token")
    monkeypatch.setenv("EDGEPLACE_SIGNALS_CACHE", str(tmp_path / "default-cache"))
    with LoopbackServer() as srv:
        yield srv


def example_copy(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def test_fetch_from_electricity_maps_then_offline_then_down(em, tmp_path, capsys):
    path = example_copy(tmp_path)
    shifted = [v - 100 for v in DE]
    em.script("/v3/carbon-intensity/past-range", Reply(200, {"zone": "DE", "data": entries(shifted)}))
    em.script("/v3/carbon-intensity/history", Reply(200, {"zone": "DE", "history": entries(shifted)}))
    cache = tmp_path / "cache"
    common = ["--service", "electricitymaps", "--zone", "DE=DE", "--base-url", em.url, "--cache-dir", str(cache)]
    assert run("fetch", str(path), *common) == 0
    sc = load_scenario(path)
    np.testing.assert_allclose(sc.region_intensity_g_per_kwh[sc.index_of("region", "DE")], shifted)
    assert em.seen[0].headers["auth-token"] == "cli-token"
    assert not (tmp_path / "default-cache").exists(), "--cache-dir is honoured"

    out = tmp_path / "offline.yaml"
    seen = len(em.seen)
    assert run("fetch", str(path), *common, "--offline", "-o", str(out)) == 0
    assert len(em.seen) == seen and out.exists()

    em.script("/v3/carbon-intensity/past-range", Reply(503, {"message": "down"}))
    em.script("/v3/carbon-intensity/history", Reply(503, {"message": "down"}))
    capsys.readouterr()
    assert run("fetch", str(path), *common, "--attempts", "1") == 0
    assert "edgeplace: warning: Electricity Maps zone DE (average, lifecycle factors, actual): the service is unreachable" in \
        capsys.readouterr().err


def test_fetch_with_forecaster_writes_forecast_from_history(em, tmp_path):
    path = example_copy(tmp_path)
    week = [v for _ in range(7) for v in DE]
    body = entries(week, start=START - timedelta(days=7))
    # Which endpoint depends on the clock (history: the last 24 h); both answer alike.
    em.script("/v3/carbon-intensity/past-range", Reply(200, {"zone": "DE", "data": body}))
    em.script("/v3/carbon-intensity/history", Reply(200, {"zone": "DE", "history": body}))
    assert run("fetch", str(path), "--service", "electricitymaps", "--zone", "DE=DE", "--base-url", em.url,
               "--cache-dir", str(tmp_path / "c"), "--forecaster", "ewma", "--quiet") == 0
    sc = load_scenario(path)
    g = sc.index_of("region", "DE")
    np.testing.assert_allclose(sc.region_intensity_forecast_g_per_kwh[g], DE)  # every past day alike
    assert em.seen[0].query.get("start", ["2026-06-14T00:00:00Z"]) == ["2026-06-14T00:00:00Z"]


def test_fetch_service_down_with_nothing_cached_is_invalid_input(em, tmp_path):
    path = example_copy(tmp_path)
    em.script("/v3/carbon-intensity/past-range", Reply(503, "down"))
    em.script("/v3/carbon-intensity/history", Reply(503, "down"))
    before = path.read_text()
    with pytest.raises(InputError, match="nothing is cached for it; try again online, or give values with --fallback-file"):
        run("fetch", str(path), "--service", "electricitymaps", "--zone", "DE=DE", "--base-url", em.url,
            "--cache-dir", str(tmp_path / "c"), "--attempts", "1")
    assert path.read_text() == before


def test_fetch_prometheus(tmp_path, monkeypatch):
    from tests.test_signals_prometheus import matrix

    monkeypatch.delenv("PROMETHEUS_TOKEN", raising=False)
    path = example_copy(tmp_path)
    util = [0.2] * 24
    with LoopbackServer() as srv:
        srv.script("/api/v1/query_range", Reply(200, matrix({"metro-1:9100": util}, start=START.timestamp() + 3600)))
        assert run("fetch", str(path), "--service", "prometheus", "--base-url", srv.url,
                   "--cache-dir", str(tmp_path / "c"), "--quiet") == 0
    sc = load_scenario(path)
    np.testing.assert_allclose(sc.node_background_util[sc.index_of("node", "metro-1")], util)


@pytest.mark.parametrize("argv, message", [
    (["--service", "electricitymaps", "--series", "forecast", "--forecaster", "ewma"], "pick one"),
    (["--service", "prometheus", "--zone", "DE=x"], "prometheus gives node utilisation"),
    (["--service", "ukgrid", "--node", "n1"], "--node and --query are prometheus options"),
    (["--service", "watttime", "--intensity-kind", "average"], "--intensity-kind is for carbonaware"),
    (["--service", "electricitymaps", "--signal-type", "co2_aoer"], "--signal-type is for watttime"),
    (["--service", "ukgrid", "--zone", "GB=national"], "--zone names region(s) GB not in the scenario"),
])
def test_fetch_usage_errors(argv, message, capsys):
    assert run("fetch", str(EXAMPLE), *argv, "--offline") == 2
    assert message in capsys.readouterr().err


def test_every_command_in_the_user_guide_parses():
    parser = argparse.ArgumentParser(prog="edgeplace")
    add_commands(parser.add_subparsers(dest="command", required=True))
    lines = [line.split()[1:] for line in (ROOT / "docs" / "SIGNALS.md").read_text().splitlines()
             if line.startswith("edgeplace signals ")]
    assert len(lines) >= 10
    for argv in lines:
        args = parser.parse_args(argv)
        assert args.command == "signals" and args.signals_action in ("fetch", "import", "show", "archive")


def test_import_of_a_series_without_its_factor_type_into_a_lifecycle_scenario_is_refused(tmp_path):
    # The example states lifecycle factors for every region; a DE file that states none would mix them.
    rows = [f"{(START + timedelta(hours=h)).isoformat()},DE,{v},gCO2/kWh" for h, v in enumerate(DE)]
    de = tmp_path / "de.csv"
    de.write_text("timestamp,region,value,unit\n" + "\n".join(rows) + "\n")
    path = example_copy(tmp_path)
    before = path.read_text()
    with pytest.raises(InputError, match=r"factor types differ between regions \(DE: not stated; FR: lifecycle") as exc:
        run("import", str(path), str(de), "--quiet")
    assert "conversion" in str(exc.value) and "state factor_type on every series" in str(exc.value)
    assert path.read_text() == before  # nothing written
