"""edgeplace.topology.signals.pv: clear-sky PV against the documented figures, the example's sites, measured irradiance.

Figures (computed with pvlib 0.16, Ineichen + bundled Linke turbidity, Perez
transposition, 30 deg tilt facing south, SAPM cell temperature at 20 C and
1 m/s, gamma -0.47 %/K):

- Berlin (52.52 N, 13.405 E), 21 June 2026: 7.46 kWh/kWp before system
  losses; shared/REFERENCE.md says "about 7.4": allowed +/- 3 %.
  With the default 14 % loss: 7.46 x 0.86 = 6.42 kWh/kWp.
- The example's PV sites, before losses: metro-ffm-gallus (40 kWp) 285.8 kWh,
  agg-mainz (25 kWp) 179.5 kWh, i.e. 7.15 and 7.18 kWh/kWp; the inline
  signals of examples/metro-de.yaml scale the Berlin reference figure to
  7.4 kWh/kWp (296 and 185 kWh): pvlib is 3.4 % and 3.0 % lower, because
  Frankfurt's summer sun is slightly lower-yielding at this tilt and the
  inline shape is a sin^1.5 approximation.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeplace.topology import InputError, load_scenario, scenario_from_dict
from edgeplace.topology.load import read_document
from edgeplace.topology.signals.pv import PVOptions, clear_sky, clear_sky_kw, daily_yield_kwh_per_kwp, pv_signals, read_irradiance
from edgeplace.topology.signals.series import SlotGrid, apply_signals

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "metro-de.yaml"
MIDSUMMER = date(2026, 6, 21)
START = datetime(2026, 6, 21, tzinfo=timezone.utc)
DAY = SlotGrid(START, 24, 60)
NO_LOSS = PVOptions(system_loss=0.0)


@pytest.fixture(scope="module")
def example():
    return load_scenario(EXAMPLE)


def test_berlin_midsummer_matches_the_reference_figure():
    measured = daily_yield_kwh_per_kwp(52.52, 13.405, MIDSUMMER, NO_LOSS)
    assert measured == pytest.approx(7.46, abs=0.01)          # what this model gives
    assert measured == pytest.approx(7.4, rel=0.03)           # shared/REFERENCE.md, +/- 3 %
    default = daily_yield_kwh_per_kwp(52.52, 13.405, MIDSUMMER)
    assert default == pytest.approx(measured * 0.86, rel=1e-9)  # loss is one factor: 7.46 x (1 - 0.14)
    assert default == pytest.approx(6.42, abs=0.01)


def test_example_sites_clear_sky_yields(example):
    series = {s.target_id: s for s in pv_signals(example.spec, DAY, NO_LOSS)}
    assert sorted(series) == ["agg-mainz", "metro-ffm-gallus"]
    documented = {"metro-ffm-gallus": 285.8, "agg-mainz": 179.5}   # kWh/day, module docstring
    for site, kwh in documented.items():
        pvlib_kwh = series[site].values.sum() * DAY.slot_hours
        assert pvlib_kwh == pytest.approx(kwh, abs=0.2), site
        inline = example.site_renewable_kw[example.index_of("site", site)]
        # Within 5 % of the inline day total, and the same shape: peak at 11 UTC, night at zero.
        assert pvlib_kwh == pytest.approx(inline.sum(), rel=0.05), site
        assert int(np.argmax(series[site].values)) == int(np.argmax(inline)) == 11
        assert series[site].values[[0, 1, 2, 21, 22, 23]].max() == 0.0
        assert np.corrcoef(series[site].values, inline)[0, 1] > 0.99


def test_example_rebuilt_with_pvlib_is_a_valid_scenario(example):
    doc = read_document(EXAMPLE)
    pv = pv_signals(example.spec, DAY, NO_LOSS)
    rebuilt = scenario_from_dict(apply_signals(copy.deepcopy(doc), pv), source="pvlib")
    metro = rebuilt.index_of("site", "metro-ffm-gallus")
    assert rebuilt.site_renewable_kw[metro].sum() == pytest.approx(285.8, abs=0.2)
    np.testing.assert_array_equal(rebuilt.region_intensity_g_per_kwh, example.region_intensity_g_per_kwh)


def test_tilt_azimuth_and_model_change_the_yield():
    south = daily_yield_kwh_per_kwp(50.1, 8.6, MIDSUMMER, NO_LOSS)
    north = daily_yield_kwh_per_kwp(50.1, 8.6, MIDSUMMER, PVOptions(system_loss=0, azimuth_deg=0))
    flat = daily_yield_kwh_per_kwp(50.1, 8.6, MIDSUMMER, PVOptions(system_loss=0, tilt_deg=0))
    solis = daily_yield_kwh_per_kwp(50.1, 8.6, MIDSUMMER, PVOptions(system_loss=0, model="simplified_solis"))
    assert north < flat < south * 1.05 and north < south
    assert solis > south  # simplified Solis assumes a clearer atmosphere than the Linke climatology


def test_half_hour_slots_average_to_the_hourly_value():
    hourly = clear_sky_kw(50.1, 8.6, 10.0, DAY)
    half = clear_sky_kw(50.1, 8.6, 10.0, SlotGrid(START, 48, 30))
    np.testing.assert_allclose(half.reshape(24, 2).mean(axis=1), hourly, rtol=1e-9, atol=1e-9)


def irradiance_csv(path: Path, lat: float, lon: float, columns=("ghi", "dni", "dhi"), scale=1.0) -> Path:
    """Clear-sky irradiance written as a 'measured' file: 5-minute interval means (timestamps at interval starts)."""
    starts = pd.date_range(START, periods=288, freq="5min")
    sky = clear_sky(lat, lon, starts + pd.Timedelta(minutes=2.5))
    frame = pd.DataFrame({"timestamp": [t.isoformat() for t in starts]})
    for c in columns:
        frame[c] = sky[c].to_numpy() * scale
    frame.to_csv(path, index=False)
    return path


def test_measured_irradiance_reproduces_clear_sky(example, tmp_path):
    site = next(s for s in example.spec.sites if s.id == "agg-mainz")
    path = irradiance_csv(tmp_path / "irr.csv", site.location.lat, site.location.lon)
    [measured] = pv_signals(example.spec, DAY, NO_LOSS, sites=["agg-mainz"], irradiance=path)
    [modelled] = pv_signals(example.spec, DAY, NO_LOSS, sites=["agg-mainz"])
    # Same irradiance, same chain: equal to the sampling (both at 5-minute midpoints).
    np.testing.assert_allclose(measured.values, modelled.values, rtol=1e-6, atol=1e-6)


def test_ghi_only_is_split_with_erbs(example, tmp_path):
    site = next(s for s in example.spec.sites if s.id == "agg-mainz")
    path = irradiance_csv(tmp_path / "irr.csv", site.location.lat, site.location.lon, columns=("ghi",))
    [measured] = pv_signals(example.spec, DAY, NO_LOSS, sites=["agg-mainz"], irradiance=path)
    [modelled] = pv_signals(example.spec, DAY, NO_LOSS, sites=["agg-mainz"])
    # Erbs's split differs from the clear-sky model's; the day total stays within 10 %.
    assert measured.values.sum() == pytest.approx(modelled.values.sum(), rel=0.10)


def test_irradiance_in_kw_per_m2_is_caught(example, tmp_path):
    path = irradiance_csv(tmp_path / "irr.csv", 50.0, 8.3, scale=0.001)
    with pytest.raises(InputError, match="looks like kW/m2"):
        read_irradiance(path)


def test_irradiance_problems(tmp_path):
    path = tmp_path / "irr.csv"
    path.write_text("timestamp,dni\n2026-06-21T00:00Z,0\n")
    with pytest.raises(InputError, match="need poa_global .* or ghi"):
        read_irradiance(path)
    path.write_text("timestamp,ghi\n2026-06-21T00:00Z,5000\n2026-06-21T00:05,0\n")
    with pytest.raises(InputError, match=r"(?s)line 2, column ghi: 5000 W/m2 is outside 0..1500.*line 3, column timestamp"):
        read_irradiance(path)


def test_sites_without_location_or_panels_are_reported(example):
    with pytest.raises(InputError, match=r"(?s)site 'regional-hanau'.*has pv_kwp 0.*site 'nowhere'.*is not in the scenario"):
        pv_signals(example.spec, DAY, sites=["regional-hanau", "nowhere"])
    spec = example.spec.model_copy(update={"sites": [s.model_copy(update={"location": None}) if s.pv_kwp else s
                                                     for s in example.spec.sites]})
    with pytest.raises(InputError, match="has no location"):
        pv_signals(spec, DAY)


@pytest.mark.parametrize("kwargs, message", [
    ({"tilt_deg": 95}, "tilt must be 0..90"),
    ({"system_loss": 14}, "system loss is a fraction"),
    ({"gamma_per_k": 0.5}, "temperature coefficient"),
    ({"model": "haurwitz"}, "ineichen or simplified_solis"),
])
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PVOptions(**kwargs)


def test_night_is_zero_and_never_negative():
    values = clear_sky_kw(-33.9, 18.4, 5.0, SlotGrid(START - timedelta(days=1), 48, 60))  # Cape Town, winter
    assert values.min() >= 0.0 and values.max() > 0
