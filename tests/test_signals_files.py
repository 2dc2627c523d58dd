"""edgeplace.topology.signals.files: CSV and Parquet signal files, row-level problems, units, DST, the bundled example.

The property tests at the end feed malformed files to the loader: it may
refuse them (InputError), never crash.
"""

from __future__ import annotations

import copy
import glob
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeplace.topology import InputError, load_scenario, scenario_from_dict
from edgeplace.topology.load import read_document
from edgeplace.topology.signals.files import load_signal_files, read_signal_file, rows_to_series, write_signal_csv
from edgeplace.topology.signals.series import SlotGrid, apply_signals

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "metro-de.yaml"
EXAMPLE_SIGNALS = sorted(glob.glob(str(ROOT / "examples" / "signals" / "*.csv")))
START = datetime(2026, 6, 21, tzinfo=timezone.utc)
DAY = SlotGrid(START, 24, 60)


def csv_file(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def hourly(target: str, ident: str, values, unit: str, start: datetime = START, extra: str = "") -> str:
    header = f"timestamp,{target},value,unit{',' + extra.split('=')[0] if extra else ''}\n"
    tail = f",{extra.split('=')[1]}" if extra else ""
    return header + "".join(f"{(start + timedelta(hours=i)).isoformat()},{ident},{v},{unit}{tail}\n"
                            for i, v in enumerate(values))


def aligned(path: Path, grid: SlotGrid = DAY, **kw):
    return rows_to_series(read_signal_file(path), grid, **kw)


# ---------------------------------------------------------------------------
# The bundled example: rebuilt from examples/signals/*.csv


def test_example_rebuilt_from_its_csv_files_equals_the_inline_signals():
    original = load_scenario(EXAMPLE)
    doc = read_document(EXAMPLE)
    stripped = copy.deepcopy(doc)
    stripped["signals"] = []
    series = load_signal_files(EXAMPLE_SIGNALS, SlotGrid.from_horizon(original.spec.horizon))
    rebuilt = scenario_from_dict(apply_signals(stripped, series), source="rebuilt")
    assert len(series) == len(doc["signals"]) == 10
    for name in ("region_intensity_g_per_kwh", "site_renewable_kw", "node_background_util",
                 "region_intensity_forecast_g_per_kwh", "site_renewable_forecast_kw"):
        np.testing.assert_allclose(getattr(rebuilt, name), getattr(original, name), rtol=0, atol=1e-9, err_msg=name)
    assert rebuilt.intensity_kind == original.intensity_kind == "average"


def test_example_intensity_file_uses_local_offsets():
    # The file is written in CEST (+02:00): the first row is 02:00+02:00 = 00:00Z, the horizon start.
    first = next(line for line in Path(EXAMPLE_SIGNALS[1]).read_text().splitlines()
                 if line and not line.startswith(("#", "timestamp")))
    assert first.startswith("2026-06-21T02:00:00+02:00,DE,378")


# ---------------------------------------------------------------------------
# Reading and units


@pytest.mark.parametrize("unit, raw, expected", [
    ("gCO2/kWh", 400, 400.0),
    ("kgCO2/kWh", 0.4, 400.0),           # x 1000
    ("t/MWh", 0.4, 400.0),                # x 1000
    ("lb/MWh", 1000, 453.592),            # 453.592 g / 1000 kWh per lb/MWh
])
def test_intensity_units(tmp_path, unit, raw, expected):
    [s] = aligned(csv_file(tmp_path, hourly("region", "DE", [raw] * 24, unit)))
    np.testing.assert_allclose(s.values, expected)


@pytest.mark.parametrize("unit, raw, expected", [("kW", 2.5, 2.5), ("W", 2500, 2.5), ("MW", 0.0025, 2.5)])
def test_power_units(tmp_path, unit, raw, expected):
    [s] = aligned(csv_file(tmp_path, hourly("site", "a", [raw] * 24, unit)))
    np.testing.assert_allclose(s.values, expected)


def test_energy_per_quarter_hour_is_summed_into_slots(tmp_path):
    # 0.5 kWh in each quarter-hour: 2 kWh per hour = a mean of 2 kW.
    rows = "".join(f"{(START + timedelta(minutes=15 * k)).isoformat()},a,0.5,kWh\n" for k in range(96))
    [s] = aligned(csv_file(tmp_path, "timestamp,site,value,unit\n" + rows))
    np.testing.assert_allclose(s.values, 2.0)
    # The same in Wh.
    rows = "".join(f"{(START + timedelta(minutes=15 * k)).isoformat()},a,500,Wh\n" for k in range(96))
    [s] = aligned(csv_file(tmp_path, "timestamp,site,value,unit\n" + rows))
    np.testing.assert_allclose(s.values, 2.0)


def test_quarter_hours_average_into_hours_and_percent(tmp_path):
    # 4 quarter-hours of 10, 20, 30, 40 % -> 25 % = 0.25.
    rows = "".join(f"{(START + timedelta(minutes=15 * k)).isoformat()},n1,{10 * (k % 4 + 1)},%\n" for k in range(96))
    [s] = aligned(csv_file(tmp_path, "timestamp,node,value,unit\n" + rows))
    np.testing.assert_allclose(s.values, 0.25)


def test_optional_columns_kind_and_series(tmp_path):
    text = hourly("region", "DE", [300] * 24, "gCO2/kWh", extra="intensity_kind=marginal")
    text += "".join(f"{(START + timedelta(hours=i)).isoformat()},DE,{280},gCO2/kWh,marginal\n" for i in range(24))
    text = text.replace("intensity_kind\n", "intensity_kind\n", 1)
    path = csv_file(tmp_path, "timestamp,region,value,unit,intensity_kind,series\n" + "".join(
        f"{(START + timedelta(hours=i)).isoformat()},DE,300,gCO2/kWh,marginal,actual\n"
        f"{(START + timedelta(hours=i)).isoformat()},DE,280,gCO2/kWh,marginal,forecast\n" for i in range(24)))
    actual, forecast = aligned(path)
    assert (actual.series, forecast.series) == ("actual", "forecast")
    assert actual.intensity_kind == forecast.intensity_kind == "marginal"
    np.testing.assert_allclose(forecast.values, 280)


def test_comments_blank_lines_bom_and_case(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeff# exported 2026-06-22\n\nTimestamp,Region,Value,Unit\n".encode()
                     + hourly("region", "DE", [300] * 24, "gCO2/kWh").split("\n", 1)[1].encode())
    [s] = aligned(path)
    np.testing.assert_allclose(s.values, 300)


# ---------------------------------------------------------------------------
# Daylight saving: offsets are handled, naive local times refused


def test_spring_forward_with_offsets_has_no_gap(tmp_path):
    # Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST. Local hours 00, 01, 03, 04 are
    # four consecutive UTC hours 23:00Z .. 02:00Z.
    stamps = ["2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
              "2026-03-29T04:00:00+02:00"]
    path = csv_file(tmp_path, "timestamp,region,value,unit\n" + "".join(f"{t},DE,{100 + i},g/kWh\n"
                                                                       for i, t in enumerate(stamps)))
    [s] = aligned(path, SlotGrid(datetime(2026, 3, 28, 23, tzinfo=timezone.utc), 4, 60))
    assert s.values.tolist() == [100, 101, 102, 103] and not s.notes


def test_fall_back_repeated_local_hour_is_two_hours_with_offsets(tmp_path):
    # 25 October 2026: 02:00-03:00 local happens twice, +02:00 then +01:00.
    stamps = ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
              "2026-10-25T03:00:00+01:00"]
    path = csv_file(tmp_path, "timestamp,region,value,unit\n" + "".join(f"{t},DE,{200 + i},g/kWh\n"
                                                                       for i, t in enumerate(stamps)))
    [s] = aligned(path, SlotGrid(datetime(2026, 10, 24, 23, tzinfo=timezone.utc), 4, 60))
    assert s.values.tolist() == [200, 201, 202, 203]


def test_naive_local_times_are_refused_with_the_fix(tmp_path):
    path = csv_file(tmp_path, "timestamp,region,value,unit\n2026-10-25T02:00:00,DE,300,g/kWh\n")
    with pytest.raises(InputError, match=r"line 2, column timestamp: '2026-10-25T02:00:00' has no UTC offset.*"
                                         r"daylight-saving.*2026-10-25T02:00:00\+02:00"):
        read_signal_file(path)


# ---------------------------------------------------------------------------
# Problems: one message per problem, naming line, column and fix


@pytest.mark.parametrize("text, message", [
    ("", "is empty; the first line is the header"),
    ("timestamp,region,value\n", "column 'unit': is required but missing"),
    ("timestamp,region,value,unit,vaule\n", "column 'vaule': is not a known column"),
    ("timestamp,region,value,unit,region\n", "repeats column"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,300\n", "line 2: has 3 field.*the header has 4"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,3 00,g/kWh\n", "line 2, column value: '3 00' is not a number"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,\"3,5\",g/kWh\n", "use a dot as the decimal separator"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,inf,g/kWh\n", "not a finite number"),
    ("timestamp,region,value,unit\n21.06.2026 00:00,DE,300,g/kWh\n", "is not an ISO 8601 timestamp"),
    ("timestamp,region,site,value,unit\n2026-06-21T00:00Z,DE,a,300,g/kWh\n", "names region and site; fill exactly one"),
    ("timestamp,value,unit\n2026-06-21T00:00Z,300,g/kWh\n", "line 2: names none of region, site or node"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,300,\n", "column unit: is empty"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,300,gco2/kwh\n", "did you mean 'gCO2/kWh'"),
    ("timestamp,site,value,unit\n2026-06-21T00:00Z,a,3,gCO2/kWh\n", "is a grid_intensity unit, but a site row holds renewable_supply"),
    ("timestamp,region,value,unit,signal\n2026-06-21T00:00Z,DE,3,kW,renewable_supply\n",
     "a region row holds grid_intensity, not renewable_supply"),
    ("timestamp,site,value,unit,intensity_kind\n2026-06-21T00:00Z,a,3,kW,marginal\n", "region \\(grid intensity\\) rows only"),
    ("timestamp,region,value,unit,series\n2026-06-21T00:00Z,DE,3,g/kWh,predicted\n", "must be actual or forecast"),
    ("timestamp,region,value,unit\n2026-06-21T00:00Z,DE,-5,g/kWh\n", "outside the plausible range 0..2000"),
    ("timestamp,site,value,unit\n2026-06-21T00:00Z,a,-1,kWh\n", "energy -1 kWh is negative"),
])
def test_row_problems(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_signal_file(csv_file(tmp_path, text))


@pytest.mark.parametrize("unit, raw, hint", [
    ("kgCO2/kWh", 380, "as gCO2/kWh every value would fit"),     # g written as kg
    ("fraction", 45, "as % every value would fit"),              # percent written as a fraction
    ("gCO2/kWh", 3000, "as lb/MWh every value would fit"),       # 3000 lb/MWh = 1361 g/kWh
])
def test_unit_mixups_name_the_unit_that_fits(tmp_path, unit, raw, hint):
    target = "node" if unit == "fraction" else "region"
    with pytest.raises(InputError, match=f"outside the plausible range.*{hint}.*24 value"):
        read_signal_file(csv_file(tmp_path, hourly(target, "x", [raw] * 24, unit)))


def test_watts_written_as_kilowatts_are_caught_against_the_sites_pv(tmp_path):
    from edgeplace.topology.signals.series import check_against_scenario

    spec = load_scenario(EXAMPLE).spec
    [s] = aligned(csv_file(tmp_path, hourly("site", "metro-ffm-gallus", [32000] * 24, "kW")))
    with pytest.raises(InputError, match="peaks at 32000 kW.*40 kWp.*look like W"):
        check_against_scenario([s], spec, "s.csv")


def test_duplicates_name_both_rows(tmp_path):
    text = hourly("region", "DE", [300] * 24, "g/kWh") + f"{START.isoformat()},DE,301,g/kWh\n"
    with pytest.raises(InputError, match=r"line 26: repeats line 2: grid_intensity for DE \(actual\) at 2026-06-21T00:00:00Z"):
        read_signal_file(csv_file(tmp_path, text))


def test_duplicate_after_offset_conversion(tmp_path):
    text = "timestamp,region,value,unit\n2026-06-21T02:00:00+02:00,DE,300,g/kWh\n2026-06-21T00:00:00Z,DE,300,g/kWh\n"
    with pytest.raises(InputError, match="line 3: repeats line 2"):
        read_signal_file(csv_file(tmp_path, text))


def test_short_gap_filled_long_gap_refused(tmp_path):
    values = [300.0] * 24
    values[5:7] = ["", ""]              # 2 h missing: filled
    values[0] = 100.0
    values[4], values[7] = 200.0, 500.0
    [s] = aligned(csv_file(tmp_path, hourly("region", "DE", values, "g/kWh")))
    assert s.values[5:7].tolist() == [300.0, 400.0]  # 200 -> 500 over 3 h: 300, 400
    assert any("filled 2 h between line 6 and line 9" in n for n in s.notes)
    values[7] = ""                                   # 05:00-08:00 missing, 3 h: refused
    with pytest.raises(InputError, match=r"no values for 3 h between line 6 .* and line 10 .*--max-gap-minutes"):
        aligned(csv_file(tmp_path, hourly("region", "DE", values, "g/kWh")))
    [s] = aligned(csv_file(tmp_path, hourly("region", "DE", values, "g/kWh")), max_gap_minutes=180)
    assert np.isfinite(s.values).all()


def test_horizon_not_covered(tmp_path):
    with pytest.raises(InputError, match=r"ends at 2026-06-21T12:00:00Z.*add rows up to 2026-06-22T00:00:00Z"):
        aligned(csv_file(tmp_path, hourly("region", "DE", [300] * 12, "g/kWh")))


def test_mixed_energy_and_power_units_in_one_series(tmp_path):
    text = hourly("site", "a", [1] * 24, "kW").replace("kW\n", "kWh\n", 3)
    with pytest.raises(InputError, match="mixes energy units"):
        aligned(csv_file(tmp_path, text))


def test_a_series_in_two_files(tmp_path):
    a = csv_file(tmp_path, hourly("region", "DE", [300] * 24, "g/kWh"), "a.csv")
    b = csv_file(tmp_path, hourly("region", "DE", [300] * 24, "g/kWh"), "b.csv")
    with pytest.raises(InputError, match="also in .*a.csv"):
        load_signal_files([a, b], DAY)


@pytest.mark.parametrize("name, message", [("s.xlsx", "unknown file type '.xlsx'"), ("missing.csv", "file not found")])
def test_file_level_problems(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith("xlsx"):
        path.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=message):
        read_signal_file(path)


def test_not_utf8_and_nul_bytes(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"timestamp,region,value,unit\n2026-06-21T00:00Z,D\xe9,1,g/kWh\n")
    with pytest.raises(InputError, match="line 2: is not UTF-8 text"):
        read_signal_file(path)
    path.write_bytes(b"timestamp,region,value,unit\n\x00\n")
    with pytest.raises(InputError, match="line 2: holds a NUL byte"):
        read_signal_file(path)


def test_write_signal_csv_round_trips(tmp_path):
    [s] = aligned(csv_file(tmp_path, hourly("region", "DE", [300.5 + i for i in range(24)], "g/kWh")))
    path = csv_file(tmp_path, write_signal_csv([s], DAY, header="made by a test"), "out.csv")
    [back] = aligned(path)
    np.testing.assert_array_equal(back.values, s.values)


# ---------------------------------------------------------------------------
# Parquet


def test_parquet_with_time_zone_aware_timestamps(tmp_path):
    local = pd.date_range("2026-06-21 02:00", periods=24, freq="h", tz="Europe/Berlin")
    frame = pd.DataFrame({"timestamp": local, "region": "DE", "value": np.arange(24, dtype=float) + 300,
                          "unit": "gCO2/kWh"})
    frame.to_parquet(tmp_path / "s.parquet")
    [s] = aligned(tmp_path / "s.parquet")
    np.testing.assert_array_equal(s.values, np.arange(24) + 300)


def test_parquet_naive_timestamps_are_refused(tmp_path):
    frame = pd.DataFrame({"timestamp": pd.date_range("2026-06-21", periods=24, freq="h"), "node": "n1",
                          "value": 0.1, "unit": "fraction"})
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputError, match="column timestamp: is a timestamp type without a time zone"):
        read_signal_file(tmp_path / "s.parquet")


def test_parquet_text_timestamps_and_row_numbers(tmp_path):
    frame = pd.DataFrame({"timestamp": ["2026-06-21T00:00:00Z", "2026-06-21T01:00:00"], "node": ["n1", "n1"],
                          "value": [0.1, 0.2], "unit": ["fraction", "fraction"]})
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputError, match="row 2, column timestamp: .* has no UTC offset"):
        read_signal_file(tmp_path / "s.parquet")


def test_not_a_parquet_file(tmp_path):
    (tmp_path / "s.parquet").write_text("timestamp,region\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_signal_file(tmp_path / "s.parquet")


# ---------------------------------------------------------------------------
# Property tests: malformed files never crash the loader

TOKENS = st.sampled_from([
    "", " ", "2026-06-21T00:00:00Z", "2026-06-21T01:00:00+02:00", "2026-06-21T00:00:00", "2026-13-45T99:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2026-06-21", "nan", "NaN", "inf", "-inf", "1e309",
    "-0", "0", "1", "0.5", "45", "-3", "1e-320", "DE", "a", "n1", "x", "gCO2/kWh", "kgCO2/kWh", "lb/MWh", "kW", "W",
    "kWh", "MWh", "%", "fraction", "furlong", "average", "marginal", "actual", "forecast", "grid_intensity",
    "renewable_supply", "background_utilisation", '"', '""', "a,b", "\t", "#", "é", "\u2028",
])
COLUMNS = st.sampled_from(["timestamp", "region", "site", "node", "value", "unit", "signal", "intensity_kind",
                           "series", "Value", "", "extra"])


def run_loader(path: Path) -> None:
    try:
        rows_to_series(read_signal_file(path), SlotGrid(START, 3, 60), max_gap_minutes=60)
    except InputError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        assert exc.render()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash(tmp_path, data):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    run_loader(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(COLUMNS, min_size=0, max_size=7),
       rows=st.lists(st.lists(TOKENS, min_size=0, max_size=8), max_size=12),
       quote=st.booleans())
def test_csv_like_files_never_crash(tmp_path, header, rows, quote):
    def line(cells):
        return ",".join(f'"{c}"' if quote else c for c in cells)
    path = tmp_path / "fuzz.csv"
    path.write_text("\n".join([line(header), *map(line, rows)]) + "\n", encoding="utf-8")
    run_loader(path)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stamps=st.lists(st.sampled_from(["2026-06-21T00:00:00Z", "2026-06-21T01:00:00+01:00", "2026-06-21T00:30:00Z",
                                        "2026-06-21T02:00:00Z", "2026-06-20T20:00:00Z", "2026-06-21T03:00:00Z"]),
                       min_size=1, max_size=10),
       values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just("")), min_size=10, max_size=10),
       target=st.sampled_from(["region", "site", "node"]),
       unit=st.sampled_from(["gCO2/kWh", "lb/MWh", "kW", "W", "kWh", "Wh", "fraction", "%"]))
def test_well_formed_rows_with_any_numbers_never_crash(tmp_path, stamps, values, target, unit):
    path = tmp_path / "fuzz.csv"
    body = "".join(f"{t},x,{v},{unit}\n" for t, v in zip(stamps, values))
    path.write_text(f"timestamp,{target},value,unit\n{body}", encoding="utf-8")
    run_loader(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.dictionaries(
    st.sampled_from(["timestamp", "region", "site", "node", "value", "unit", "series", "other"]),
    st.sampled_from(["text", "float", "int", "aware", "naive", "null", "bool"]), max_size=6),
    n=st.integers(min_value=0, max_value=5))
def test_parquet_files_of_any_column_types_never_crash(tmp_path, columns, n):
    makers = {
        "text": lambda: ["2026-06-21T00:00:00Z", "DE", "kW", "1", "x"][:n] + ["y"] * max(0, n - 5),
        "float": lambda: [float(i) / 3 for i in range(n)],
        "int": lambda: list(range(n)),
        "aware": lambda: list(pd.date_range("2026-06-21", periods=n, freq="h", tz="UTC")),
        "naive": lambda: list(pd.date_range("2026-06-21", periods=n, freq="h")),
        "null": lambda: [None] * n,
        "bool": lambda: [i % 2 == 0 for i in range(n)],
    }
    frame = pd.DataFrame({name: makers[kind]() for name, kind in columns.items()}, index=range(n))
    path = tmp_path / "fuzz.parquet"
    frame.to_parquet(path)
    run_loader(path)


def test_messages_name_file_and_line(tmp_path):
    path = csv_file(tmp_path, "timestamp,region,value,unit\n2026-06-21T00:00Z,DE,x,g/kWh\n")
    with pytest.raises(InputError) as info:
        read_signal_file(path)
    text = info.value.render()
    assert text.startswith(str(path)) and re.search(r"line 2, column value: 'x' is not a number", text)
