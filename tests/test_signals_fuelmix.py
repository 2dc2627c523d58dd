"""edgeplace.topology.signals.fuelmix: intensity from a generation mix with IPCC AR5 lifecycle medians."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeplace.topology import InputError
from edgeplace.topology.signals.fuelmix import IPCC_AR5_MEDIAN_G_PER_KWH, factor_table, intensity_from_mix, mix_signals, normalise_fuel, read_mix_file
from edgeplace.topology.signals.series import SlotGrid

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
DAY = SlotGrid(START, 24, 60)

# shared/REFERENCE.md "Carbon intensity": lifecycle ranges [gCO2e/kWh].
REFERENCE_RANGES = {"coal": (820, 1001), "gas": (469, 490), "solar": (41, 48), "solar_rooftop": (41, 48),
                    "wind": (11, 12), "wind_offshore": (11, 12), "nuclear": (12, 16), "hydro": (4, 24)}


@pytest.mark.parametrize("fuel", sorted(REFERENCE_RANGES))
def test_factors_lie_in_the_reference_ranges(fuel):
    lo, hi = REFERENCE_RANGES[fuel]
    assert lo <= IPCC_AR5_MEDIAN_G_PER_KWH[fuel] <= hi


@pytest.mark.parametrize("mix, expected", [
    ({"coal": 1.0}, 820.0),
    ({"gas": 50, "wind": 50}, (490 + 11) / 2),                       # 250.5
    ({"coal": 30, "gas": 20, "nuclear": 50}, 0.3 * 820 + 0.2 * 490 + 0.5 * 12),   # 350
    ({"Wind Onshore": 2, "solar_pv": 2}, (11 + 48) / 2),            # aliases
])
def test_weighted_mean(mix, expected):
    assert intensity_from_mix(mix)[0] == pytest.approx(expected)


def test_vectorised_over_intervals_and_user_factors():
    mix = {"gas": [100, 0], "wind": [0, 100], "oil": [0, 100]}
    # Oil has no AR5 median: the user gives one. Second interval: (11 + 650) / 2.
    np.testing.assert_allclose(intensity_from_mix(mix, {"oil": 650}), [490, 330.5])


@pytest.mark.parametrize("mix, factors, message", [
    ({"oil": 10}, None, "oil: has no emission factor; give one"),
    ({"gas": -5}, None, "must be finite and >= 0"),
    ({"gas": 0, "wind": 0}, None, "has no generation"),
    ({}, None, "the mix is empty"),
    ({"gas": 1}, {"gas": 5000}, "must be a number of gCO2e/kWh in 0..2000"),
])
def test_mix_problems(mix, factors, message):
    with pytest.raises(InputError, match=message):
        intensity_from_mix(mix, factors)


def test_normalise():
    assert normalise_fuel(" Natural-Gas ") == "gas"
    assert factor_table({"Imports": 300})["imports"] == 300


def mix_csv(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "mix.csv"
    path.write_text("timestamp,region,fuel,value,unit\n" + rows)
    return path


def test_mix_file_to_signals(tmp_path):
    rows = ""
    for h in range(24):
        t = (START + timedelta(hours=h)).isoformat()
        # Shares in %: gas 40, wind 60 at night; gas 20, solar 50, wind 30 from 08 to 16 UTC.
        parts = {"gas": 20, "solar": 50, "wind": 30} if 8 <= h < 16 else {"gas": 40, "wind": 60}
        rows += "".join(f"{t},DE,{fuel},{share},%\n" for fuel, share in parts.items())
    [series] = mix_signals(mix_csv(tmp_path, rows), DAY, regions={"DE": "de-grid"})
    night = 0.4 * 490 + 0.6 * 11         # 202.6
    day = 0.2 * 490 + 0.5 * 48 + 0.3 * 11  # 125.3
    np.testing.assert_allclose(series.values[:8], night)
    np.testing.assert_allclose(series.values[8:16], day)
    assert (series.target_id, series.intensity_kind) == ("de-grid", "average")


def test_mix_file_power_units_convert(tmp_path):
    t = START.isoformat()
    rows = f"{t},DE,gas,1,GW\n{t},DE,wind,1000,MW\n"
    frame = read_mix_file(mix_csv(tmp_path, rows))
    assert frame["value"].iat[0] == pytest.approx((490 + 11) / 2)


@pytest.mark.parametrize("rows, message", [
    ("2026-06-21T00:00Z,DE,gas,50,%\n2026-06-21T00:00Z,DE,wind,50,MW\n", "mixes power and share units"),
    ("2026-06-21T00:00Z,DE,gas,50,%\n2026-06-21T00:00Z,DE,gas,50,%\n", "repeats fuel 'gas'"),
    ("2026-06-21T00:00Z,DE,unobtainium,50,%\n", "'unobtainium' has no emission factor"),
    ("2026-06-21T00:00Z,DE,gas,-5,MW\n", "negative; storage charging"),
    ("2026-06-21T00:00Z,DE,gas,5,furlongs\n", "not a generation unit"),
    ("2026-06-21T00:00,DE,gas,5,MW\n", "has no UTC offset"),
])
def test_mix_file_problems(tmp_path, rows, message):
    with pytest.raises(InputError, match=message):
        read_mix_file(mix_csv(tmp_path, rows))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.sampled_from(["2026-06-21T00:00Z", "2026-06-21T00:00", "DE", "", "gas", "oil", "wind",
                                               "50", "-1", "nan", "1e309", "%", "MW", "GWh", "x"]),
                              min_size=0, max_size=6), max_size=8))
def test_malformed_mix_files_never_crash(tmp_path, rows):
    path = mix_csv(tmp_path, "".join(",".join(r) + "\n" for r in rows))
    try:
        mix_signals(path, SlotGrid(START, 2, 60))
    except InputError as exc:
        assert exc.problems


def test_header_only_mix_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="has a header but no rows"):
        read_mix_file(mix_csv(tmp_path, ""))
