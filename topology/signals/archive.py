"""Forecasts as they were issued: what a planner could have known at each moment.

A service's *historical forecasts* (WattTime `GET /v3/forecast/historical`,
the Carbon Aware SDK's `POST /emissions/forecasts/batch`) are the forecasts
it published in the past, each with the time it was generated. Replaying
them (`edgeplace simulate --forecast-source FILE`) prices every re-plan on
the forecast that existed then, instead of one made up afterwards from the
actual series.

On disk an archive is a CSV file, one row per forecast value:

    # edgeplace forecast archive: WattTime co2_moer, region CA = CAISO_NORTH
    issued_at,timestamp,region,value,unit,intensity_kind
    2026-06-20T23:55:00+00:00,2026-06-21T00:00:00+00:00,CA,362.9,gCO2/kWh,marginal

`issued_at` is when the service generated the forecast; `timestamp` starts the
interval the value covers (as in signal files), `region` is the scenario's.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_UNITS
from edgeplace.topology.signals.align import align
from edgeplace.topology.signals.series import Points, SlotGrid, iso
from edgeplace.topology.spec import SignalKind

COLUMNS = ("issued_at", "timestamp", "region", "value", "unit", "intensity_kind")


@dataclass(frozen=True)
class IssuedForecast:
    """One forecast of one region as the service published it at `issued_s` (epoch seconds)."""

    region: str
    issued_s: float
    points: Points
    intensity_kind: str


@dataclass(frozen=True)
class ForecastArchive:
    """Issued forecasts by region, oldest first."""

    forecasts: tuple[IssuedForecast, ...]
    source: str = ""
    _by_region: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_region: dict[str, list[IssuedForecast]] = {}
        for f in sorted(self.forecasts, key=lambda f: f.issued_s):
            by_region.setdefault(f.region, []).append(f)
        object.__setattr__(self, "_by_region", by_region)

    @property
    def regions(self) -> list[str]:
        return sorted(self._by_region)

    def kinds(self) -> set[str]:
        return {f.intensity_kind for f in self.forecasts}

    def latest(self, region: str, at_s: float) -> IssuedForecast | None:
        """The newest forecast of `region` issued at or before `at_s`."""
        found = None
        for f in self._by_region.get(region, ()):
            if f.issued_s > at_s:
                break
            found = f
        return found

    def values(self, region: str, grid: SlotGrid) -> np.ndarray:
        """The forecast a planner had at the start of `grid`, on its slots [gCO2/kWh]; NaN where
        that forecast does not reach (or no forecast had been issued yet)."""
        out = np.full(grid.slots, np.nan)
        issued = self.latest(region, grid.start.timestamp())
        if issued is None or not len(issued.points.times_s):
            return out
        p = issued.points
        step = p.step_s or (float(np.median(np.diff(p.times_s))) if len(p.times_s) > 1 else grid.slot_seconds)
        starts = grid.start.timestamp() + np.arange(grid.slots) * grid.slot_seconds
        # Slot by slot: a slot is covered when the forecast spans all of it.
        last_end = float(p.times_s[-1]) + step
        for k, t0 in enumerate(starts):
            if t0 >= p.times_s[0] and t0 + grid.slot_seconds <= last_end:
                sub = SlotGrid(datetime.fromtimestamp(t0, grid.start.tzinfo), 1, grid.slot_minutes)
                aligned = align(p.times_s, p.values, sub, step_s=step, max_gap_s=2 * step, what="forecast")
                if aligned.values is not None:
                    out[k] = aligned.values[0]
        return out


def fetch_archive(service, zones: dict[str, str], instants: list[datetime]) -> list[IssuedForecast]:
    """The forecast each scenario region's zone had at each of `instants` (its newest issued by then), from a
    service with historical forecasts: WattTime (`/v3/forecast/historical`) or the Carbon Aware SDK
    (`/emissions/forecasts/batch`). One entry per distinct forecast."""
    from datetime import timedelta

    if service.name not in ("watttime", "carbonaware"):
        raise InputError(service.label, [Problem("--service", "historical forecasts come from watttime or carbonaware")])
    out: list[IssuedForecast] = []
    for region, zone in zones.items():
        if service.name == "watttime":  # every forecast generated in the period, then the newest at each instant
            issued = service.historical_forecasts(zone, instants[0] - timedelta(hours=1), instants[-1] + timedelta(seconds=1))
        else:
            issued = service.historical_forecasts(zone, instants)
        kept: dict[float, Points] = {}
        for at in instants:
            before = [(s, p) for s, p in issued if s <= at.timestamp()]
            if not before:
                raise InputError(service.label, [Problem(f"zone {zone}", f"no forecast was issued by {iso(at)}; "
                                                                         f"start the archive later")])
            kept.setdefault(before[-1][0], before[-1][1])
        out += [IssuedForecast(region, s, p, service.intensity_kind) for s, p in sorted(kept.items())]
    return out


def write_archive_csv(forecasts: Iterable[IssuedForecast], header: str = "") -> str:
    """The archive file text (module docstring)."""
    out = io.StringIO()
    for line in header.splitlines():
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in sorted(forecasts, key=lambda f: (f.region, f.issued_s)):
        issued = iso(f.issued_s)
        for t, v in zip(f.points.times_s, f.points.values):
            writer.writerow([issued, iso(float(t)), f.region, "" if math.isnan(v) else f"{v:.10g}", "gCO2/kWh",
                             f.intensity_kind])
    return out.getvalue()


def read_archive(path: str | Path) -> ForecastArchive:
    """An archive file; every bad row is reported (file, line, column and the fix)."""
    from edgeplace.topology.io import read_input_text

    path = Path(path)
    text = read_input_text(path, encoding="utf-8-sig")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError(str(path), [Problem("", f"no rows; an archive has the columns {', '.join(COLUMNS)}")])
    header = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
    if sorted(header) != sorted(COLUMNS):
        raise InputError(str(path), [Problem(f"line {lines[0][0]}", f"columns must be {', '.join(COLUMNS)} "
                                                                    f"(got {', '.join(header)})")])
    units = SIGNAL_UNITS[SignalKind.grid_intensity]
    problems: list[Problem] = []
    rows: dict[tuple[str, float, str], list[tuple[float, float]]] = {}
    for n, line in lines[1:]:
        cells = dict(zip(header, next(csv.reader([line]))))
        where = f"line {n}"
        try:
            issued = _time(cells.get("issued_at", ""))
            t = _time(cells.get("timestamp", ""))
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        unit = cells.get("unit", "").strip()
        kind = cells.get("intensity_kind", "").strip() or "average"
        region = cells.get("region", "").strip()
        if unit not in units:
            problems.append(Problem(f"{where}, column unit", f"{unit!r} is not a grid intensity unit ({', '.join(units)})"))
            continue
        if kind not in ("average", "marginal") or not region:
            problems.append(Problem(where, "needs a region and intensity_kind average or marginal"))
            continue
        value = cells.get("value", "").strip()
        try:
            number = float(value) * units[unit] if value else math.nan
        except ValueError:
            problems.append(Problem(f"{where}, column value", f"{value!r} is not a number"))
            continue
        rows.setdefault((region, issued, kind), []).append((t, number))
        if len(problems) > 50:
            break
    if problems:
        raise InputError(str(path), problems)
    forecasts = []
    for (region, issued, kind), pairs in rows.items():
        pairs.sort()
        times = np.array([p[0] for p in pairs])
        step = float(np.median(np.diff(times))) if len(times) > 1 else None
        forecasts.append(IssuedForecast(region, issued, Points(times, np.array([p[1] for p in pairs]), step,
                                                               f"{path.name} issued {iso(issued)}"), kind))
    return ForecastArchive(tuple(forecasts), str(path))


def _time(text: str) -> float:
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write it as 2026-06-21T00:00:00Z")
    return moment.timestamp()


__all__ = ["COLUMNS", "ForecastArchive", "IssuedForecast", "fetch_archive", "read_archive", "write_archive_csv"]
