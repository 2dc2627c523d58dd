"""On-site PV output per slot, computed offline with pvlib.

Clear sky by default: the Ineichen-Perez model with pvlib's bundled Linke
turbidity climatology (or the simplified Solis model), from a site's
coordinates; no data download. With a measured-irradiance file, the same
chain runs on the measurements instead.

The chain is pvlib's PVWatts chain, as `ModelChain.with_pvwatts` runs it
(tests/test_signals_pv.py checks the daily yield against that ModelChain
within 1 %), one plain function per step (pvlib names in brackets):

1. sun position at each sample [`solarposition.get_solarposition`];
2. irradiance on the horizontal: clear sky [`Location.get_clearsky`], or
   measured GHI (DNI and DHI split off with Erbs when not measured
   [`irradiance.erbs`]);
3. irradiance in the module plane, Perez transposition
   [`irradiance.get_total_irradiance`], ground albedo 0.25; angle of
   incidence [`irradiance.aoi`];
4. effective irradiance: the beam part times an incidence-angle modifier
   (reflection off the module glass at oblique sun), physical (Fresnel and
   Beer's law, pvlib's ModelChain default) or ASHRAE [`iam.physical`,
   `iam.ashrae`], plus the diffuse part;
5. cell temperature, SAPM open-rack glass/polymer [`temperature.sapm_cell`]
   from the plane-of-array irradiance at an assumed ambient temperature and
   wind speed (a clear-sky day has no weather);
6. DC power, PVWatts [`pvsystem.pvwatts_dc`]:
   P_dc = P_kWp x E_eff / 1000 W/m2 x (1 + gamma x (T_cell - 25 C));
7. DC losses x (1 - loss): PVWatts' system losses [`pvsystem.pvwatts_losses`]
   (soiling 2 %, shading 3 %, mismatch 2 %, wiring 2 %, connections 0.5 %,
   light-induced degradation 1.5 %, nameplate 1 %, availability 3 %,
   compounding to 14.08 %, the "14 %" of the PVWatts manual). They do not
   include the inverter, which PVWatts models on its own:
8. AC power, PVWatts inverter [`inverter.pvwatts`]: nominal efficiency 96 %
   (part-load curve of the PVWatts manual), sized by the DC/AC ratio 1.2
   (PVWatts' default: inverter AC rating = kWp / 1.2), clipping above it.
   `PVOptions(inverter=False)` stops at DC (a DC-coupled site).

Slot values are means over `sample_minutes` samples taken at the middle of
equal sub-intervals of each slot [kW].

Calibration (tests/test_signals_pv.py): Berlin (52.52 N, 13.405 E) on
21 June 2026, 30 deg tilt facing south, gives 7.46 kWh per kWp of module
DC output without incidence-angle, system or inverter losses
(shared/REFERENCE.md: "about 7.4"; the test allows +/- 3 %) and
6.02 kWh per kWp delivered (AC) with the defaults.

References: Holmgren, Hansen, Mikofski, "pvlib python", JOSS 3(29), 2018;
Ineichen & Perez, Solar Energy 73(3), 2002; Dobos, "PVWatts Version 5
Manual", NREL/TP-6A20-62641, 2014 (loss 14 %, temperature coefficient
-0.47 %/K for standard modules); King et al., "Photovoltaic Array
Performance Model", SAND2004-3535 (SAPM cell temperature).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES, align
from edgeplace.topology.signals.files import Problems, TooManyProblems, parse_number, parse_time, read_table
from edgeplace.topology.signals.series import SignalSeries, SlotGrid
from edgeplace.topology.spec import ScenarioSpec, SignalKind

#: PVWatts' default DC system losses compounded (pvlib `pvwatts_losses()`: 14.08 %;
#: Dobos 2014, NREL/TP-6A20-62641). The inverter is not among them.
DEFAULT_SYSTEM_LOSS = 0.1408
#: PVWatts inverter: nominal efficiency and the DC/AC sizing ratio (PVWatts defaults).
DEFAULT_INVERTER_EFFICIENCY = 0.96
DEFAULT_DC_AC_RATIO = 1.2
#: Power temperature coefficient of standard crystalline modules [1/K] (PVWatts v5).
DEFAULT_GAMMA_PER_K = -0.0047
#: Tilt [deg] and azimuth [deg from north, 180 = south] when a site gives none:
#: a typical pitched-roof mount in central Europe.
DEFAULT_TILT_DEG = 30.0
DEFAULT_AZIMUTH_DEG = 180.0
#: Assumed ambient temperature [C] and wind speed [m/s] for clear-sky days
#: (a mild summer day; measured files may give their own).
DEFAULT_TEMP_AIR_C = 20.0
DEFAULT_WIND_M_PER_S = 1.0
#: Irradiance columns above this [W/m2] are not irradiance (the solar
#: constant is 1361 W/m2): usually a unit mix-up.
MAX_IRRADIANCE_W_PER_M2 = 1500.0
IRRADIANCE_COLUMNS = ("timestamp", "site", "ghi", "dni", "dhi", "poa_global", "temp_air", "wind_speed")


@dataclass(frozen=True)
class PVOptions:
    """How a PV system is modelled; the defaults are documented in the module docstring."""

    tilt_deg: float = DEFAULT_TILT_DEG
    azimuth_deg: float = DEFAULT_AZIMUTH_DEG
    system_loss: float = DEFAULT_SYSTEM_LOSS
    gamma_per_k: float = DEFAULT_GAMMA_PER_K
    temp_air_c: float = DEFAULT_TEMP_AIR_C
    wind_m_per_s: float = DEFAULT_WIND_M_PER_S
    albedo: float = 0.25
    model: Literal["ineichen", "simplified_solis"] = "ineichen"
    sample_minutes: float = 5.0
    #: Incidence-angle modifier of the beam irradiance: physical (pvlib's PVWatts default), ashrae, or none.
    iam_model: Literal["physical", "ashrae", "none"] = "physical"
    #: AC output through the PVWatts inverter; False: DC after the system losses.
    inverter: bool = True
    inverter_efficiency: float = DEFAULT_INVERTER_EFFICIENCY
    dc_ac_ratio: float = DEFAULT_DC_AC_RATIO

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.tilt_deg <= 90, f"tilt must be 0..90 deg (got {self.tilt_deg})"),
            (0 <= self.azimuth_deg <= 360, f"azimuth must be 0..360 deg from north (got {self.azimuth_deg})"),
            (0 <= self.system_loss < 1, f"system loss is a fraction 0..1, e.g. 0.14 (got {self.system_loss})"),
            (-0.02 <= self.gamma_per_k <= 0, f"the temperature coefficient is a small negative number per K, "
                                             f"e.g. -0.0047 (got {self.gamma_per_k})"),
            (-60 <= self.temp_air_c <= 60, f"ambient temperature must be -60..60 C (got {self.temp_air_c})"),
            (0 <= self.wind_m_per_s <= 60, f"wind speed must be 0..60 m/s (got {self.wind_m_per_s})"),
            (0 <= self.albedo <= 1, f"albedo must be 0..1 (got {self.albedo})"),
            (self.model in ("ineichen", "simplified_solis"), f"model must be ineichen or simplified_solis (got {self.model!r})"),
            (0 < self.sample_minutes <= 60, f"sample_minutes must be in (0, 60] (got {self.sample_minutes})"),
            (self.iam_model in ("physical", "ashrae", "none"), f"iam_model must be physical, ashrae or none "
                                                              f"(got {self.iam_model!r})"),
            (0.5 <= self.inverter_efficiency <= 1, f"inverter efficiency is a fraction 0.5..1, e.g. 0.96 "
                                                   f"(got {self.inverter_efficiency})"),
            (0.5 <= self.dc_ac_ratio <= 3, f"the DC/AC ratio is 0.5..3, e.g. 1.2 (got {self.dc_ac_ratio})"),
        ]
        bad = [why for ok, why in checks if not ok]
        if bad:
            raise ValueError("; ".join(bad))


@contextlib.contextmanager
def _quiet_pandas_deprecations() -> Iterator[None]:
    """pvlib 0.16 calls pandas APIs that pandas 3 deprecates (DatetimeIndex.dayofyear);
    the results are right, the warnings are pvlib's to fix. Only that category is hidden."""
    category = getattr(pd.errors, "Pandas4Warning", None)
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        yield


# ---------------------------------------------------------------------------
# The chain, step by step


def sample_times(grid: SlotGrid, sample_minutes: float) -> pd.DatetimeIndex:
    """Middles of equal sub-intervals of every slot (n = ceil(slot / sample) per slot)."""
    n = max(1, math.ceil(grid.slot_minutes / sample_minutes))
    offsets = (np.arange(grid.slots)[:, None] + (np.arange(n)[None, :] + 0.5) / n) * grid.slot_seconds
    return pd.DatetimeIndex(pd.to_datetime(grid.start_s + offsets.ravel(), unit="s", utc=True))


def clear_sky(lat: float, lon: float, times: pd.DatetimeIndex, model: str = "ineichen") -> pd.DataFrame:
    """Sun position and clear-sky GHI, DNI, DHI [W/m2] at `times` (UTC).

    Notes: Ineichen-Perez with the bundled monthly Linke turbidity
    climatology (Remund et al. 2003), interpolated to the day; altitude from
    pvlib's bundled map. Nothing is downloaded.
    """
    from pvlib.location import Location

    with _quiet_pandas_deprecations():
        loc = Location(lat, lon, tz="UTC")
        position = loc.get_solarposition(times)
        sky = loc.get_clearsky(times, model=model, solar_position=position)
    return pd.concat([position[["apparent_zenith", "zenith", "azimuth"]], sky[["ghi", "dni", "dhi"]]], axis=1)


def plane_of_array(sky: pd.DataFrame, tilt_deg: float, azimuth_deg: float, albedo: float) -> pd.DataFrame:
    """Irradiance in the module plane [W/m2], Perez transposition: poa_global, poa_direct,
    poa_diffuse, and the angle of incidence aoi [deg]."""
    import pvlib

    with _quiet_pandas_deprecations():
        dni_extra = pvlib.irradiance.get_extra_radiation(sky.index)
        airmass = pvlib.atmosphere.get_relative_airmass(sky["apparent_zenith"])
        poa = pvlib.irradiance.get_total_irradiance(
            tilt_deg, azimuth_deg, sky["apparent_zenith"], sky["azimuth"], sky["dni"], sky["ghi"], sky["dhi"],
            dni_extra=dni_extra, airmass=airmass, albedo=albedo, model="perez")
        aoi = pvlib.irradiance.aoi(tilt_deg, azimuth_deg, sky["apparent_zenith"], sky["azimuth"])
    out = poa[["poa_global", "poa_direct", "poa_diffuse"]].fillna(0.0).clip(lower=0.0)
    out["aoi"] = aoi
    return out


def effective_irradiance(poa: pd.DataFrame, iam_model: str) -> np.ndarray:
    """Beam x incidence-angle modifier + diffuse [W/m2] (pvlib ModelChain's effective irradiance)."""
    import pvlib

    aoi = poa["aoi"].to_numpy()
    if iam_model == "physical":
        iam = pvlib.iam.physical(aoi)
    elif iam_model == "ashrae":
        iam = pvlib.iam.ashrae(aoi)
    else:
        iam = np.ones_like(aoi)
    return poa["poa_direct"].to_numpy() * np.nan_to_num(np.asarray(iam, dtype=float)) + poa["poa_diffuse"].to_numpy()


def delivered_kw(poa_w_per_m2: np.ndarray, effective_w_per_m2: np.ndarray, temp_air_c: np.ndarray | float,
                 wind_m_per_s: np.ndarray | float, kwp: float, options: "PVOptions") -> np.ndarray:
    """Delivered PV power [kW]: steps 5-8 of the module docstring.

    P_dc = kWp x E_eff / 1000 x (1 + gamma x (T_cell - 25)) x (1 - loss), T_cell from the
    SAPM open-rack glass/polymer model at the plane-of-array irradiance; then the PVWatts
    inverter (unless `options.inverter` is False).
    """
    import pvlib

    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    poa = np.asarray(poa_w_per_m2, dtype=float)
    cell = pvlib.temperature.sapm_cell(poa, temp_air_c, wind_m_per_s, **params)
    dc = np.asarray(pvlib.pvsystem.pvwatts_dc(np.asarray(effective_w_per_m2, dtype=float), cell, kwp,
                                              options.gamma_per_k), dtype=float) * (1.0 - options.system_loss)
    dc = np.clip(dc, 0.0, None)
    if not options.inverter or kwp <= 0:
        return dc
    pdc0 = kwp / options.dc_ac_ratio / options.inverter_efficiency  # DC input at the AC rating kWp / ratio
    ac = pvlib.inverter.pvwatts(dc, pdc0, eta_inv_nom=options.inverter_efficiency)
    return np.clip(np.nan_to_num(np.asarray(ac, dtype=float)), 0.0, None)


def _slot_means(samples: np.ndarray, grid: SlotGrid) -> np.ndarray:
    return np.asarray(samples, dtype=float).reshape(grid.slots, -1).mean(axis=1)


# ---------------------------------------------------------------------------
# Entry points


def clear_sky_kw(lat: float, lon: float, kwp: float, grid: SlotGrid, options: PVOptions = PVOptions()) -> np.ndarray:
    """Mean clear-sky PV output per slot [kW] of `kwp` peak at (`lat`, `lon`)."""
    times = sample_times(grid, options.sample_minutes)
    sky = clear_sky(lat, lon, times, options.model)
    poa = plane_of_array(sky, options.tilt_deg, options.azimuth_deg, options.albedo)
    power = delivered_kw(poa["poa_global"].to_numpy(), effective_irradiance(poa, options.iam_model),
                         options.temp_air_c, options.wind_m_per_s, kwp, options)
    return _slot_means(power, grid)


def daily_yield_kwh_per_kwp(lat: float, lon: float, day: date, options: PVOptions = PVOptions()) -> float:
    """Clear-sky energy of 1 kWp over one UTC day [kWh/kWp]."""
    grid = SlotGrid(datetime.combine(day, time(0), tzinfo=timezone.utc), 24 * 12, 5)
    return float(clear_sky_kw(lat, lon, 1.0, grid, options).sum() * grid.slot_hours)


@dataclass(frozen=True)
class Irradiance:
    """Measured irradiance rows for one site (or all sites): W/m2, C, m/s; NaN = not given."""

    source: str
    time_s: np.ndarray
    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    poa: np.ndarray
    temp_air: np.ndarray
    wind: np.ndarray
    rows: list[int]
    row_word: str


def read_irradiance(path: str | Path, site: str | None = None) -> Irradiance:
    """Read a measured-irradiance file (CSV or Parquet).

    Columns: timestamp (with offset, start of the interval the means cover),
    optional site (rows of other sites are skipped), and poa_global, or ghi
    with optional dni and dhi [W/m2] (Erbs splits GHI when they are
    missing); optional temp_air [C] and wind_speed [m/s].
    """
    table = read_table(path, IRRADIANCE_COLUMNS, ("timestamp",))
    problems = Problems(table.source)
    if "poa_global" not in table.columns and "ghi" not in table.columns:
        raise InputError(table.source, [Problem("columns", "need poa_global (in the module plane) or ghi "
                                                           "(horizontal, W/m2); neither is there")])
    if table.naive_time_type:
        raise InputError(table.source, [Problem("column timestamp", "is a timestamp type without a time zone; store it with one")])
    out: dict[str, list[float]] = {k: [] for k in ("time_s", "ghi", "dni", "dhi", "poa", "temp_air", "wind")}
    rows: list[int] = []
    limits = {"ghi": (0, MAX_IRRADIANCE_W_PER_M2), "dni": (0, MAX_IRRADIANCE_W_PER_M2), "dhi": (0, MAX_IRRADIANCE_W_PER_M2),
              "poa_global": (0, MAX_IRRADIANCE_W_PER_M2), "temp_air": (-60, 70), "wind_speed": (0, 75)}
    names = {"ghi": "ghi", "dni": "dni", "dhi": "dhi", "poa_global": "poa", "temp_air": "temp_air", "wind_speed": "wind"}
    try:
        for i in range(len(table)):
            if "site" in table.columns and site is not None:
                cell = table.columns["site"][i]
                if not isinstance(cell, str) or cell.strip() != site:
                    continue
            t, why = parse_time(table.columns["timestamp"][i])
            if why:
                problems.add(table.where(i, "timestamp"), why)
                continue
            values = {}
            for column, (lo, hi) in limits.items():
                if column not in table.columns:
                    values[column] = math.nan
                    continue
                v, why = parse_number(table.columns[column][i])
                if why:
                    problems.add(table.where(i, column), why)
                    break
                if not math.isnan(v) and not lo <= v <= hi:
                    unit = {"temp_air": "C", "wind_speed": "m/s"}.get(column, "W/m2")
                    problems.add(table.where(i, column), f"{v:g} {unit} is outside {lo:g}..{hi:g} {unit}; check the unit")
                    break
                values[column] = v
            else:
                out["time_s"].append(t)
                for column, key in names.items():
                    out[key].append(values[column])
                rows.append(table.rows[i])
    except TooManyProblems:
        pass
    problems.raise_if_any()
    arrays = {k: np.asarray(v, dtype=float) for k, v in out.items()}
    for column in ("ghi", "poa"):
        col = arrays[column]
        seen = col[np.isfinite(col)]
        if seen.size and 0 < seen.max() <= 1.5:
            raise InputError(table.source, [Problem(f"column {'poa_global' if column == 'poa' else column}",
                                                    f"peaks at {seen.max():g}: that looks like kW/m2; the file takes W/m2 "
                                                    f"(multiply by 1000)")])
    if not rows:
        where = f" for site {site!r}" if site else ""
        raise InputError(table.source, [Problem("", f"has no rows{where}")])
    return Irradiance(table.source, arrays["time_s"], arrays["ghi"], arrays["dni"], arrays["dhi"], arrays["poa"],
                      arrays["temp_air"], arrays["wind"], rows, table.row_word)


def measured_kw(lat: float, lon: float, kwp: float, data: Irradiance, grid: SlotGrid,
                options: PVOptions = PVOptions(), *, max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES,
                what: str = "PV") -> np.ndarray:
    """Mean PV output per slot [kW] from measured irradiance; rows are aligned like any signal."""
    import pvlib

    order = np.argsort(data.time_s, kind="stable")
    t = data.time_s[order]
    diffs = np.diff(t)
    step = float(np.median(diffs[diffs > 0])) if (diffs > 0).any() else grid.slot_seconds
    # Interval means: the sun is taken at the middle of each row's interval.
    mid = pd.DatetimeIndex(pd.to_datetime(t + step / 2, unit="s", utc=True))
    from pvlib.location import Location

    with _quiet_pandas_deprecations():
        position = Location(lat, lon, tz="UTC").get_solarposition(mid)
    ghi, dni, dhi, poa = data.ghi[order], data.dni[order], data.dhi[order], data.poa[order]
    if np.isnan(poa).all():
        missing = np.isnan(dni) | np.isnan(dhi)
        if missing.any():
            with _quiet_pandas_deprecations():
                split = pvlib.irradiance.erbs(ghi, position["zenith"].to_numpy(), mid)
            dni = np.where(missing, np.asarray(split["dni"], dtype=float), dni)
            dhi = np.where(missing, np.asarray(split["dhi"], dtype=float), dhi)
        sky = pd.DataFrame({"apparent_zenith": position["apparent_zenith"].to_numpy(),
                            "azimuth": position["azimuth"].to_numpy(), "ghi": ghi, "dni": dni, "dhi": dhi}, index=mid)
        components = plane_of_array(sky, options.tilt_deg, options.azimuth_deg, options.albedo)
        poa = np.where(np.isnan(ghi), np.nan, components["poa_global"].to_numpy())
        effective = effective_irradiance(components, options.iam_model)
    else:
        # Measured in the plane: no beam/diffuse split, so no incidence-angle modifier (a module-plane
        # pyranometer or reference cell already sees what arrives there).
        effective = np.nan_to_num(poa, nan=0.0)
    temp = np.where(np.isnan(data.temp_air[order]), options.temp_air_c, data.temp_air[order])
    wind = np.where(np.isnan(data.wind[order]), options.wind_m_per_s, data.wind[order])
    power = delivered_kw(np.nan_to_num(poa, nan=0.0), effective, temp, wind, kwp, options)
    power = np.where(np.isnan(poa), np.nan, power)  # a missing measurement is a gap
    labels = [f"{data.row_word} {data.rows[i]}" for i in order]
    result = align(t, power, grid, step_s=step, max_gap_s=max_gap_minutes * 60.0, labels=labels, what=what, fix="add rows")
    if result.values is None:
        raise InputError(data.source, result.problems)
    return result.values


def site_options(site, options: PVOptions) -> PVOptions:
    """`options` with the site's own mount: its `pv_tilt_deg` / `pv_azimuth_deg` where it sets them."""
    from dataclasses import replace

    return replace(options,
                   tilt_deg=options.tilt_deg if site.pv_tilt_deg is None else site.pv_tilt_deg,
                   azimuth_deg=options.azimuth_deg if site.pv_azimuth_deg is None else site.pv_azimuth_deg)


def pv_signals(spec: ScenarioSpec, grid: SlotGrid, options: PVOptions = PVOptions(), *,
               sites: Sequence[str] | None = None, irradiance: str | Path | None = None,
               max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES) -> list[SignalSeries]:
    """renewable_supply signals for PV sites: `sites`, or every site with pv_kwp > 0.

    Clear sky unless `irradiance` names a measured-irradiance file. Each site
    needs `location` and `pv_kwp`; missing ones are reported together.
    """
    by_id = {s.id: s for s in spec.sites}
    chosen = list(sites) if sites else [s.id for s in spec.sites if s.pv_kwp > 0]
    problems = []
    for site_id in chosen:
        site = by_id.get(site_id)
        if site is None:
            problems.append(Problem(f"site {site_id!r}", f"is not in the scenario (sites: {', '.join(sorted(by_id)[:8])})"))
        elif site.pv_kwp <= 0:
            problems.append(Problem(f"site {site_id!r}", "has pv_kwp 0; set pv_kwp (peak power [kWp]) in the scenario"))
        elif site.location is None:
            problems.append(Problem(f"site {site_id!r}", "has no location; add location: {lat: ..., lon: ...} to compute PV"))
    if not chosen:
        problems.append(Problem("sites", "no site has pv_kwp > 0; set pv_kwp on the sites with panels"))
    if problems:
        raise InputError(spec.name, problems)
    out = []
    for site_id in chosen:
        site = by_id[site_id]
        assert site.location is not None  # checked above
        mount = site_options(site, options)
        chain = (f"tilt {mount.tilt_deg:g}, azimuth {mount.azimuth_deg:g}, iam {mount.iam_model}, "
                 f"DC loss {mount.system_loss:g}, {'PVWatts inverter' if mount.inverter else 'DC'}")
        if irradiance is None:
            values = clear_sky_kw(site.location.lat, site.location.lon, site.pv_kwp, grid, mount)
            source = f"pvlib clear sky ({mount.model}), {chain}"
        else:
            data = read_irradiance(irradiance, site=site_id)
            values = measured_kw(site.location.lat, site.location.lon, site.pv_kwp, data, grid, mount,
                                 max_gap_minutes=max_gap_minutes, what=f"site {site_id} (PV)")
            source = f"pvlib from measured irradiance {irradiance}, {chain}"
        out.append(SignalSeries(SignalKind.renewable_supply, site_id, values, "actual", source=source))
    return out


__all__ = [
    "DEFAULT_SYSTEM_LOSS",
    "Irradiance",
    "PVOptions",
    "clear_sky",
    "clear_sky_kw",
    "daily_yield_kwh_per_kwp",
    "delivered_kw",
    "effective_irradiance",
    "measured_kw",
    "plane_of_array",
    "pv_signals",
    "read_irradiance",
    "site_options",
]
