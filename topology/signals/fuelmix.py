"""Grid intensity from a generation mix, with lifecycle emission factors.

    I(t) = sum_f g_f(t) x e_f / sum_f g_f(t)      [gCO2e/kWh]

where g_f is what fuel f generates in the interval (power, energy or share:
only the proportions matter) and e_f its lifecycle emission factor. The
result is a location-based *average* intensity of generation (imports,
storage and the marginal plant are not modelled), so series made here are
tagged `intensity_kind: average`.

Default factors: IPCC AR5 WGIII Annex III (Schloemer et al. 2014), Table
A.III.2, lifecycle medians. They lie inside the ranges of shared/REFERENCE.md
("Carbon intensity": coal 820-1001, gas 469-490, solar PV 41-48, wind 11-12,
nuclear 12-16, hydro 4-24). Fuels without an AR5 median (oil, imports,
storage discharge, "other", "unknown") need a factor from the user.

Mix files are long-form CSV or Parquet: timestamp (with offset), region,
fuel, value, unit (MW, GW, kW; MWh, GWh, kWh; %, fraction). All rows of one
region and timestamp use one kind of unit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES, align
from edgeplace.topology.signals.files import Problems, TooManyProblems, cell_text, parse_number, parse_time, read_table
from edgeplace.topology.signals.series import SignalSeries, SlotGrid
from edgeplace.topology.spec import SignalKind

#: IPCC AR5 WGIII Annex III, Table A.III.2: lifecycle emissions, median [gCO2e/kWh].
IPCC_AR5_MEDIAN_G_PER_KWH: dict[str, float] = {
    "coal": 820.0,           # pulverised coal
    "gas": 490.0,            # combined cycle
    "biomass": 230.0,        # dedicated biomass
    "solar": 48.0,           # utility-scale PV
    "solar_rooftop": 41.0,   # rooftop PV
    "csp": 27.0,             # concentrated solar power
    "geothermal": 38.0,
    "hydro": 24.0,
    "ocean": 17.0,
    "nuclear": 12.0,
    "wind": 11.0,            # onshore
    "wind_offshore": 12.0,
}
#: Other spellings of the same fuels (Electricity Maps, the UK API, ENTSO-E style names).
ALIASES = {
    "natural_gas": "gas", "ccgt": "gas", "wind_onshore": "wind", "onshore_wind": "wind",
    "offshore_wind": "wind_offshore", "solar_pv": "solar", "pv": "solar", "hydropower": "hydro",
}
#: Units of generation, by kind; within a kind, factors to one base.
MIX_UNITS: dict[str, dict[str, float]] = {
    "power": {"MW": 1.0, "GW": 1000.0, "kW": 0.001},
    "energy": {"MWh": 1.0, "GWh": 1000.0, "kWh": 0.001},
    "share": {"%": 0.01, "fraction": 1.0},
}
MIX_COLUMNS = ("timestamp", "region", "fuel", "value", "unit")


def normalise_fuel(name: str) -> str:
    """'Wind Onshore' -> 'wind'; names are compared lower-case with _ for spaces."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return ALIASES.get(key, key)


def factor_table(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The AR5 medians with the user's factors [gCO2e/kWh] on top (new fuels allowed)."""
    table = dict(IPCC_AR5_MEDIAN_G_PER_KWH)
    for fuel, value in (overrides or {}).items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 2000):
            raise InputError("emission factors", [Problem(fuel, f"{value!r} must be a number of gCO2e/kWh in 0..2000")])
        table[normalise_fuel(fuel)] = float(value)
    return table


def intensity_from_mix(mix: Mapping[str, np.ndarray | list[float] | float],
                       factors: Mapping[str, float] | None = None) -> np.ndarray:
    """Generation-weighted lifecycle intensity [gCO2e/kWh] of `mix` (fuel -> generation, any one unit).

    Raises `InputError` for a fuel without a factor, negative generation, or
    an interval with no generation at all.
    """
    table = factor_table(factors)
    problems = []
    fuels = {normalise_fuel(f): np.atleast_1d(np.asarray(v, dtype=float)) for f, v in mix.items()}
    for fuel, gen in fuels.items():
        if fuel not in table:
            problems.append(Problem(fuel, f"has no emission factor; give one (--factor {fuel}=G, gCO2e/kWh) "
                                          f"or leave it out (known: {', '.join(sorted(table))})"))
        elif (gen < 0).any() or not np.isfinite(gen).all():
            problems.append(Problem(fuel, "generation must be finite and >= 0 (storage charging and exports are not "
                                          "generation; leave them out)"))
    if not fuels:
        problems.append(Problem("", "the mix is empty"))
    if problems:
        raise InputError("fuel mix", problems)
    gen = np.vstack(np.broadcast_arrays(*fuels.values()))
    e = np.array([table[f] for f in fuels])
    total = gen.sum(axis=0)
    if (total <= 0).any():
        raise InputError("fuel mix", [Problem(f"interval {int(np.flatnonzero(total <= 0)[0])}",
                                              "has no generation; an intensity needs some")])
    return (e @ gen) / total


def read_mix_file(path: str | Path, factors: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Intensity per (region, timestamp) of a mix file: columns region, time_s, value, rows."""
    table = read_table(path, MIX_COLUMNS, MIX_COLUMNS)
    known = factor_table(factors)
    problems = Problems(table.source)
    rows: list[tuple[str, float, str, float, str, int]] = []
    unit_kind = {u: kind for kind, units in MIX_UNITS.items() for u in units}
    try:
        if table.naive_time_type:
            problems.add("column timestamp", "is a timestamp type without a time zone; store it with one")
        if not len(table):
            problems.add("", "has a header but no rows; add one row per region, time and fuel")
        for i in range(len(table)):
            t, why = parse_time(table.columns["timestamp"][i])
            if why:
                problems.add(table.where(i, "timestamp"), why)
                continue
            region = cell_text(table.columns["region"][i])
            if not region:
                problems.add(table.where(i, "region"), "is empty; name the grid region")
                continue
            fuel_text = cell_text(table.columns["fuel"][i])
            if not fuel_text:
                problems.add(table.where(i, "fuel"), "is empty; name the fuel, e.g. gas")
                continue
            fuel = normalise_fuel(fuel_text)
            if fuel not in known:
                problems.add(table.where(i, "fuel"), f"{fuel_text!r} has no emission factor; give one "
                                                     f"(--factor {fuel}=G, gCO2e/kWh) (known: {', '.join(sorted(known))})")
                continue
            unit = cell_text(table.columns["unit"][i]) or ""
            if unit not in unit_kind:
                problems.add(table.where(i, "unit"), f"{unit!r} is not a generation unit; use one of "
                                                     f"{', '.join(u for units in MIX_UNITS.values() for u in units)}")
                continue
            value, why = parse_number(table.columns["value"][i])
            if why:
                problems.add(table.where(i, "value"), why)
                continue
            if math.isnan(value):
                continue
            if value < 0:
                problems.add(table.where(i, "value"), f"{value:g} {unit} is negative; storage charging and exports "
                                                      f"are not generation, leave them out")
                continue
            rows.append((region, t, fuel, value * MIX_UNITS[unit_kind[unit]][unit], unit_kind[unit], table.rows[i]))
    except TooManyProblems:
        pass
    problems.raise_if_any()
    frame = pd.DataFrame(rows, columns=["region", "time_s", "fuel", "amount", "kind", "row"])
    out = []
    try:
        for (region, t), group in frame.groupby(["region", "time_s"], sort=True):
            first = int(group["row"].iat[0])
            if group["kind"].nunique() > 1:
                problems.add(f"{table.row_word} {first}", f"region {region}: one timestamp mixes "
                                                          f"{' and '.join(sorted(set(group['kind'])))} units; use one")
                continue
            if group["fuel"].duplicated().any():
                dup = group[group["fuel"].duplicated()]
                problems.add(f"{table.row_word} {int(dup['row'].iat[0])}",
                             f"repeats fuel {dup['fuel'].iat[0]!r} for region {region} at the same time; keep one")
                continue
            total = group["amount"].sum()
            if total <= 0:
                problems.add(f"{table.row_word} {first}", f"region {region} has no generation at this time")
                continue
            e = group["fuel"].map(known).to_numpy()
            out.append((region, t, float(e @ group["amount"].to_numpy() / total), first))
    except TooManyProblems:
        pass
    problems.raise_if_any()
    return pd.DataFrame(out, columns=["region", "time_s", "value", "row"])


def mix_signals(path: str | Path, grid: SlotGrid, factors: Mapping[str, float] | None = None, *,
                regions: Mapping[str, str] | None = None,
                max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES, sample: str = "mean") -> list[SignalSeries]:
    """Average grid_intensity signals from a mix file; `regions` renames file regions to scenario ids."""
    frame = read_mix_file(path, factors)
    if frame.empty:
        raise InputError(str(path), [Problem("", "has no generation values (all empty); fill the value column")])
    problems, out = [], []
    for region, group in frame.groupby("region", sort=False):
        result = align(group["time_s"].to_numpy(), group["value"].to_numpy(), grid, max_gap_s=max_gap_minutes * 60,
                       labels=[f"row {r}" if str(path).lower().endswith((".parquet", ".pq")) else f"line {r}"
                               for r in group["row"]],
                       what=f"region {region} (fuel mix)", fix="add rows", sample=sample)
        problems.extend(result.problems)
        if result.values is not None:
            target = (regions or {}).get(region, region)
            out.append(SignalSeries(SignalKind.grid_intensity, target, result.values, "actual", "average", factor_type="lifecycle",
                                    source=f"fuel mix {path} x IPCC AR5 lifecycle factors", notes=tuple(result.notes)))
    if problems:
        raise InputError(str(path), problems)
    return out


__all__ = [
    "ALIASES",
    "IPCC_AR5_MEDIAN_G_PER_KWH",
    "MIX_UNITS",
    "factor_table",
    "intensity_from_mix",
    "mix_signals",
    "normalise_fuel",
    "read_mix_file",
]
