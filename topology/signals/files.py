"""Signal files: long-form CSV and Parquet time series, checked row by row.

One row is one value of one series:

==============  ========  ===================================================
column          required  meaning
==============  ========  ===================================================
timestamp       yes       start of the interval the value covers, ISO 8601
                          *with* a UTC offset (2026-06-21T02:00:00+02:00,
                          2026-06-21T00:00:00Z); in Parquet also a timestamp
                          type with a time zone. Local times without an
                          offset are refused: around a daylight-saving change
                          they are ambiguous (02:30 twice) or do not exist.
region | site   one of    the series' target: a region row is grid_intensity,
| node                    a site row renewable_supply (or contracted_supply
                          with the signal column), a node row
                          background_utilisation (`edgeplace.topology.load.SIGNAL_TARGET`)
value           yes       a number; empty, NaN or NA means missing (a gap)
unit            yes       per row; the units of `edgeplace.topology.load.SIGNAL_UNITS`
                          (gCO2/kWh, g/kWh, kgCO2/kWh, t/MWh, lb/MWh; kW, W,
                          MW; fraction, %), and for sites also energy per
                          interval: kWh, Wh, MWh
signal          no        grid_intensity | renewable_supply |
                          contracted_supply | background_utilisation; must
                          match the target
intensity_kind  no        average (default) | marginal; region rows only
factor_type     no        direct | lifecycle; region rows only (empty: not stated)
series          no        actual (default) | forecast
==============  ========  ===================================================

Column names are case-insensitive; unknown columns are refused (a typo in an
optional column must not pass silently). In CSV files, lines starting with
`#` are comments. Values are converted to the canonical unit and checked
against `edgeplace.topology.load.SIGNAL_RANGES`; a value out of range names the units
under which it would be plausible (a kW column that holds W, g/kWh written
as kg/kWh). Resampling onto slots follows `edgeplace.topology.signals.align`.

Every problem names the file, the line (CSV) or row (Parquet), the column
and the fix, and all of them are raised together as one `InputError`;
nothing else escapes the readers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_RANGES, SIGNAL_TARGET, SIGNAL_UNITS
from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES, align
from edgeplace.topology.signals.series import SignalSeries, SlotGrid, canonical_unit, iso
from edgeplace.topology.spec import SignalKind

if TYPE_CHECKING:  # imported where a file is read: every `edgeplace` command imports this module (65 MiB)
    import pandas as pd

TARGETS = ("region", "site", "node")
#: The kind a row of each target holds when the `signal` column is empty (the first listed for it).
KIND_OF_TARGET = {target: kind for kind, target in reversed(list(SIGNAL_TARGET.items()))}
SIGNAL_COLUMNS = ("timestamp", *TARGETS, "value", "unit", "signal", "intensity_kind", "factor_type", "series")
FACTOR_TYPES = ("direct", "lifecycle")
SIGNAL_REQUIRED = ("timestamp", "value", "unit")
#: Energy per interval accepted for renewable supply, factor to kWh; summed into slots.
ENERGY_UNITS: dict[SignalKind, dict[str, float]] = {
    SignalKind.renewable_supply: {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0},
}
#: Cell texts read as "missing value" (a gap), compared in lower case.
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
#: Stop collecting after this many problems: the first ones say what is wrong.
MAX_PROBLEMS = 200
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".txt")


class TooManyProblems(Exception):
    pass


class Problems:
    """Problems of one file, capped at MAX_PROBLEMS."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        if len(self.items) >= MAX_PROBLEMS:
            self.items.append(Problem("", f"stopped after {MAX_PROBLEMS} problems; fix these first"))
            raise TooManyProblems
        self.items.append(Problem(path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise InputError(self.source, self.items)


# ---------------------------------------------------------------------------
# Reading a table (CSV or Parquet) as cells


@dataclass(frozen=True)
class Table:
    """Cells of a CSV or Parquet file: `columns[name][i]` belongs to `rows[i]`
    (a CSV line number, or a 1-based Parquet row); `where(i, col)` names a cell."""

    source: str
    columns: dict[str, list[Any]]
    rows: list[int]
    row_word: str  # "line" (CSV) or "row" (Parquet)
    naive_time_type: bool = False  # a Parquet timestamp column without a time zone

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int, column: str) -> str:
        return f"{self.row_word} {self.rows[i]}, column {column}"

    def cells(self, column: str) -> list[Any]:
        return self.columns.get(column) or [None] * len(self.rows)


def read_table(path: str | Path, known: Sequence[str], required: Sequence[str]) -> Table:
    """Read a CSV or Parquet file as cells; refuse unknown, missing or repeated columns."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        table = _read_parquet(path)
    elif suffix in CSV_SUFFIXES:
        table = _read_csv(path)
    else:
        raise InputError(str(path), [Problem("", f"unknown file type {suffix or '(none)'!r}; signal files are "
                                             f"CSV (.csv) or Parquet (.parquet)")])
    problems = []
    for name in table.columns:
        if name not in known:
            problems.append(Problem(f"column {name!r}", f"is not a known column (known: {', '.join(known)}); "
                                                        f"rename or remove it"))
    for name in required:
        if name not in table.columns:
            problems.append(Problem(f"column {name!r}", f"is required but missing; the columns are {', '.join(known)} "
                                                        f"(required: {', '.join(required)})"))
    if problems:
        raise InputError(str(path), problems)
    return table


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), [Problem("", "file not found")]) from None
    except OSError as exc:
        raise InputError(str(path), [Problem("", f"cannot read the file: {exc.strerror or exc}")]) from None


def _read_csv(path: Path) -> Table:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(str(path), [Problem(f"line {line}", "is not UTF-8 text; save the file as UTF-8 CSV")]) from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise InputError(str(path), [Problem(f"line {line}", "holds a NUL byte: this is not a text CSV file")])
    header: list[str] | None = None
    columns: dict[str, list[Any]] = {}
    rows: list[int] = []
    problems = Problems(str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.add(f"line {reader.line_num}", f"cannot be read as CSV ({exc}); check the quoting")
                break
            if not record or all(not c.strip() for c in record) or record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in record]
                repeated = sorted({c for c in header if header.count(c) > 1})
                if repeated:
                    problems.add(f"line {reader.line_num}", f"repeats column(s) {', '.join(map(repr, repeated))}; name each once")
                    break
                if "" in header:
                    problems.add(f"line {reader.line_num}", "has an empty column name; the first line is the header, "
                                                            "e.g. timestamp,region,value,unit")
                    break
                columns = {name: [] for name in header}
                continue
            if len(record) != len(header):
                problems.add(f"line {reader.line_num}", f"has {len(record)} field(s) but the header has {len(header)}; "
                                                        f"give one value per column (empty for none)")
                continue
            rows.append(reader.line_num)
            for name, cell in zip(header, record):
                columns[name].append(cell)
    except TooManyProblems:
        pass
    problems.raise_if_any()
    if header is None:
        raise InputError(str(path), [Problem("", "is empty; the first line is the header, e.g. timestamp,region,value,unit")])
    return Table(str(path), columns, rows, "line")


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _read_bytes(path)  # file-not-found and permission messages like the CSV reader
    try:
        table = pq.read_table(path)
        names = [n.strip().lower() for n in table.column_names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(str(path), [Problem("", f"repeats column(s) {', '.join(map(repr, repeated))}; name each once")])
        columns: dict[str, list[Any]] = {}
        naive = False
        for name, column in zip(names, table.columns):
            if name == "timestamp" and pa.types.is_timestamp(column.type) and column.type.tz is None:
                naive = True
            if name == "timestamp" and pa.types.is_timestamp(column.type) and column.type.tz is not None:
                # Seconds since the epoch, exact for any unit (s, ms, us, ns).
                unit = column.type.unit
                per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
                ints = column.cast(pa.int64()).to_pylist()
                columns[name] = [None if x is None else _Epoch(x / per_second) for x in ints]
            else:
                columns[name] = column.to_pylist()
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise InputError(str(path), [Problem("", f"not a readable Parquet file: {type(exc).__name__}: {exc}")]) from None
    return Table(str(path), columns, list(range(1, table.num_rows + 1)), "row", naive)


class _Epoch(float):
    """Seconds since the epoch from a time-zone-aware Parquet timestamp."""


# ---------------------------------------------------------------------------
# Cells


def cell_text(cell: Any) -> str | None:
    """A cell as stripped text; None when it is not text-like (a list, bytes, ...)."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, bool):
        return None
    if isinstance(cell, (int, float)):
        return "" if isinstance(cell, float) and math.isnan(cell) else str(cell)
    return None


def parse_time(cell: Any) -> tuple[float | None, str | None]:
    """(seconds since the epoch, None) or (None, why not, as a fix)."""
    if isinstance(cell, _Epoch):
        return float(cell), None
    if isinstance(cell, datetime):
        if cell.tzinfo is None or cell.utcoffset() is None:
            return None, "has no time zone; store the timestamps with a time zone (e.g. UTC)"
        return cell.timestamp(), None
    if not isinstance(cell, str):
        return None, f"{_short(cell)} is not a timestamp; write ISO 8601 with an offset, e.g. 2026-06-21T00:00:00Z"
    text = cell.strip()
    if not text:
        return None, "is empty; every row needs a timestamp with an offset, e.g. 2026-06-21T00:00:00Z"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, f"{_short(text)} is not an ISO 8601 timestamp; write e.g. 2026-06-21T02:00:00+02:00"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None, (f"{_short(text)} has no UTC offset: local clock times are ambiguous at daylight-saving "
                      f"changes (02:30 happens twice in October, not at all in March); add the offset, "
                      f"e.g. {text}+02:00, or write UTC with a Z")
    try:
        return moment.timestamp(), None
    except (OverflowError, ValueError, OSError):
        return None, f"{_short(text)} is out of range; use a year between 1970 and 9999"


def parse_number(cell: Any) -> tuple[float | None, str | None]:
    """(value, None); (nan, None) when missing; (None, why) when not a number."""
    if isinstance(cell, bool):
        return None, f"{cell!r} is not a number"
    if cell is None:
        return math.nan, None
    if isinstance(cell, (int, float)):
        try:
            value = float(cell)
        except OverflowError:
            return None, f"{_short(cell)} is too large"
        if math.isnan(value):
            return math.nan, None
        return (value, None) if math.isfinite(value) else (None, f"{cell!r} is not a finite number")
    text = cell_text(cell)
    if text is None:
        return None, f"{_short(cell)} is not a number"
    if text.lower() in MISSING:
        return math.nan, None
    try:
        value = float(text)
    except ValueError:
        hint = "; use a dot as the decimal separator" if "," in text else ""
        return None, f"{_short(text)} is not a number{hint}"
    if math.isnan(value):
        return math.nan, None
    if not math.isfinite(value):
        return None, f"{_short(text)} is not a finite number"
    return value, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------
# Signal rows


@dataclass(frozen=True)
class SignalRows:
    """The valid rows of a signal file, in canonical units and UTC.

    `frame` columns: signal (SignalKind value), target_id, series,
    intensity_kind, factor_type ("" = not stated), time_s (epoch seconds), value (canonical unit; kWh for
    energy rows), energy (bool), row (line or row number). Rows with a
    missing value are not in it: they are gaps.
    """

    source: str
    frame: pd.DataFrame
    row_word: str

    def label(self, row: int) -> str:
        return f"{self.row_word} {row}"


def _unit_help(kind: SignalKind, unit: str, target: str) -> str:
    accepted = list(SIGNAL_UNITS[kind]) + list(ENERGY_UNITS.get(kind, {}))
    for other in SignalKind:
        if other is not kind and unit in SIGNAL_UNITS[other]:
            return (f"{unit!r} is a {other.value} unit, but a {target} row holds {kind.value} "
                    f"(units: {', '.join(accepted)}); check the unit or the target column")
    close = [u for u in accepted if u.lower() == unit.lower()
             or u.lower().replace("co2e", "").replace("co2", "") == unit.lower().replace("co2e", "").replace("co2", "")]
    hint = f"; did you mean {close[0]!r}? (units are case-sensitive)" if close else ""
    return f"{unit!r} is not a unit of {kind.value}; use one of {', '.join(accepted)}{hint}"


def read_signal_file(path: str | Path) -> SignalRows:
    """Read and check a signal file; `InputError` lists every problem found."""
    table = read_table(path, SIGNAL_COLUMNS, SIGNAL_REQUIRED)
    problems = Problems(table.source)
    out: dict[str, list[Any]] = {k: [] for k in ("signal", "target_id", "series", "intensity_kind", "factor_type",
                                                  "time_s", "value", "energy", "row", "raw", "unit")}
    try:
        if table.naive_time_type:
            problems.add("column timestamp", "is a timestamp type without a time zone; store it with one "
                                             "(pandas: .dt.tz_localize('Europe/Berlin') or 'UTC') so daylight-saving "
                                             "changes stay unambiguous")
            problems.raise_if_any()
        cols = {name: table.cells(name) for name in SIGNAL_COLUMNS}
        for i in range(len(table)):
            _check_row(table, cols, i, problems, out)
    except TooManyProblems:
        pass
    if not len(table) and not problems.items:
        problems.add("", "has a header but no rows; add one row per value")
    import pandas as pd

    frame = pd.DataFrame(out).astype({"time_s": float, "value": float, "energy": bool, "row": int, "raw": float})
    if not problems.items:
        _check_duplicates(table, frame, problems)
    if not problems.items:
        _check_ranges(table, frame, problems)
    problems.raise_if_any()
    return SignalRows(table.source, frame.drop(columns=["raw", "unit"]), table.row_word)


def _check_row(table: Table, cols: dict[str, list[Any]], i: int, problems: Problems, out: dict[str, list[Any]]) -> None:
    where = table.where
    targets = {}
    for target in TARGETS:
        text = cell_text(cols[target][i])
        if text is None:
            problems.add(where(i, target), f"{_short(cols[target][i])} is not an id; write the {target} id as text")
            return
        if text:
            targets[target] = text
    if len(targets) != 1:
        what = " and ".join(targets) if targets else "none of region, site or node"
        problems.add(f"{table.row_word} {table.rows[i]}", f"names {what}; fill exactly one of region, site, node "
                                                          f"(one row is one value of one series)")
        return
    (target, target_id), = targets.items()
    kind = KIND_OF_TARGET[target]
    signal_text = cell_text(cols["signal"][i])
    if signal_text:
        if signal_text not in SignalKind.__members__:
            problems.add(where(i, "signal"), f"{_short(signal_text)} is not a signal; use one of "
                                             f"{', '.join(k.value for k in SignalKind)}")
            return
        if SIGNAL_TARGET[SignalKind(signal_text)] != target:
            problems.add(where(i, "signal"), f"a {target} row holds {kind.value}, not {signal_text}; "
                                             f"use the {SIGNAL_TARGET[SignalKind(signal_text)]} column for {signal_text}")
            return
        kind = SignalKind(signal_text)
    series = cell_text(cols["series"][i]) or "actual"
    if series not in ("actual", "forecast"):
        problems.add(where(i, "series"), f"{_short(series)} must be actual or forecast")
        return
    intensity_kind = cell_text(cols["intensity_kind"][i]) or "average"
    if intensity_kind not in ("average", "marginal"):
        problems.add(where(i, "intensity_kind"), f"{_short(intensity_kind)} must be average or marginal")
        return
    if intensity_kind == "marginal" and kind is not SignalKind.grid_intensity:
        problems.add(where(i, "intensity_kind"), "applies to region (grid intensity) rows only; leave it empty")
        return
    factor_type = cell_text(cols["factor_type"][i]) or None
    if factor_type is not None and factor_type not in FACTOR_TYPES:
        problems.add(where(i, "factor_type"), f"{_short(factor_type)} must be direct or lifecycle (or empty: not stated)")
        return
    if factor_type is not None and kind is not SignalKind.grid_intensity:
        problems.add(where(i, "factor_type"), "applies to region (grid intensity) rows only; leave it empty")
        return
    unit = cell_text(cols["unit"][i])
    if not unit:
        problems.add(where(i, "unit"), f"is empty; give the unit of the value, e.g. {canonical_unit(kind)}")
        return
    factor = SIGNAL_UNITS[kind].get(unit)
    energy_factor = ENERGY_UNITS.get(kind, {}).get(unit)
    if factor is None and energy_factor is None:
        problems.add(where(i, "unit"), _unit_help(kind, unit, target))
        return
    time_s, why = parse_time(cols["timestamp"][i])
    if why:
        problems.add(where(i, "timestamp"), why)
        return
    value, why = parse_number(cols["value"][i])
    if why:
        problems.add(where(i, "value"), why)
        return
    # A missing value (NaN) stays in as a gap: filled or refused when aligned.
    energy = energy_factor is not None
    out["signal"].append(kind.value)
    out["target_id"].append(target_id)
    out["series"].append(series)
    out["intensity_kind"].append(intensity_kind)
    out["factor_type"].append(factor_type or "")
    out["time_s"].append(time_s)
    out["value"].append(value * (energy_factor if energy else factor))
    out["energy"].append(energy)
    out["row"].append(table.rows[i])
    out["raw"].append(value)
    out["unit"].append(unit)


def _check_duplicates(table: Table, frame: pd.DataFrame, problems: Problems) -> None:
    keys = ["signal", "target_id", "series", "time_s"]
    dup = frame[frame.duplicated(keys, keep=False)]
    try:
        for _, group in dup.groupby(keys, sort=False):
            rows = group["row"].tolist()
            first = rows[0]
            for row in rows[1:]:
                problems.add(f"{table.row_word} {row}",
                             f"repeats {table.row_word} {first}: {group['signal'].iat[0]} for {group['target_id'].iat[0]} "
                             f"({group['series'].iat[0]}) at {iso(group['time_s'].iat[0])}; keep one of them")
    except TooManyProblems:
        pass


def _check_ranges(table: Table, frame: pd.DataFrame, problems: Problems) -> None:
    """Values out of the plausible range, one problem per series and unit, with the units that would fit."""
    rates = frame.loc[~frame["energy"]]
    negative_energy = frame.loc[frame["energy"] & (frame["value"] < 0)]
    try:
        for _, row in negative_energy.head(5).iterrows():
            problems.add(f"{table.row_word} {row['row']}, column value", f"energy {row['raw']:g} {row['unit']} is negative; "
                                                                        f"supply cannot be below 0")
        for (signal, target_id, unit), group in rates.groupby(["signal", "target_id", "unit"], sort=False):
            kind = SignalKind(signal)
            lo, hi = SIGNAL_RANGES[kind]
            bad = group[(group["value"] < lo) | (group["value"] > hi)]
            if bad.empty:
                continue
            canon = canonical_unit(kind)
            first = bad.iloc[0]
            raw = group["raw"].to_numpy(dtype=float)
            raw = raw[np.isfinite(raw)]
            with np.errstate(over="ignore", invalid="ignore"):  # huge values simply do not fit
                fits = [u for u, f in SIGNAL_UNITS[kind].items()
                        if f != SIGNAL_UNITS[kind][unit] and ((raw * f >= lo) & (raw * f <= hi)).all()]
            hint = (f"; as {fits[0]} every value would fit (set unit: {fits[0]})" if fits
                    else "; check the unit and the sign")
            more = f" ({len(bad)} value(s) of {SIGNAL_TARGET[kind]} {target_id} in {unit} are out of range)" if len(bad) > 1 else ""
            problems.add(f"{table.row_word} {first['row']}, column value",
                         f"{first['raw']:g} {unit} = {first['value']:g} {canon} is outside the plausible range "
                         f"{lo:g}..{hi:g} {canon} for {kind.value}{hint}{more}")
    except TooManyProblems:
        pass


# ---------------------------------------------------------------------------
# Rows -> series on slots


def rows_to_series(rows: SignalRows, grid: SlotGrid, *, max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES,
                   series: Iterable[str] = ("actual", "forecast"), sample: str = "mean") -> list[SignalSeries]:
    """Align every series of `rows` onto `grid` (rules: `edgeplace.topology.signals.align`;
    `sample`: the mean or the value at the start of each slot).

    One `SignalSeries` per (signal, target, series) in the file, in order of
    first appearance. Raises one `InputError` with every alignment problem.
    """
    wanted = set(series)
    problems: list[Problem] = []
    out: list[SignalSeries] = []
    frame = rows.frame[rows.frame["series"].isin(wanted)]
    for (signal, target_id, which), group in frame.groupby(["signal", "target_id", "series"], sort=False):
        kind = SignalKind(signal)
        what = f"{SIGNAL_TARGET[kind]} {target_id} ({signal}, {which})"
        kinds = sorted(set(group["intensity_kind"]))
        if len(kinds) > 1:
            problems.append(Problem(what, "mixes average and marginal intensities; keep one kind per series "
                                          "(they measure different things)"))
            continue
        factor_types = sorted(set(group["factor_type"]))
        if len(factor_types) > 1:
            problems.append(Problem(what, f"mixes factor types ({', '.join(t or 'empty' for t in factor_types)}); "
                                          "keep one per series (direct and lifecycle factors do not compare)"))
            continue
        if group["energy"].nunique() > 1:
            problems.append(Problem(what, "mixes energy units (kWh) and power units (kW); use one kind of unit per series"))
            continue
        energy = bool(group["energy"].iat[0])
        result = align(group["time_s"].to_numpy(), group["value"].to_numpy(), grid, energy=energy,
                       max_gap_s=max_gap_minutes * 60.0, what=what,
                       labels=[rows.label(r) for r in group["row"]], fix="add rows", sample=sample)
        problems.extend(result.problems)
        if result.values is None:
            continue
        values = result.values
        lo, hi = SIGNAL_RANGES[kind]
        if energy and ((values < lo) | (values > hi)).any():
            problems.append(Problem(what, f"the energy per slot gives a mean power outside {lo:g}..{hi:g} kW; check the unit"))
            continue
        out.append(SignalSeries(kind, target_id, values, which, kinds[0], source=rows.source, notes=tuple(result.notes),
                                factor_type=factor_types[0] or None))
    if problems:
        raise InputError(rows.source, problems)
    return out


def load_signal_files(paths: Iterable[str | Path], grid: SlotGrid, *,
                      max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES, sample: str = "mean") -> list[SignalSeries]:
    """Read and align several files; a series given by two files is a problem."""
    out: list[SignalSeries] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in paths:
        for s in rows_to_series(read_signal_file(path), grid, max_gap_minutes=max_gap_minutes, sample=sample):
            if s.key() in seen:
                raise InputError(str(path), [Problem(s.label(), f"is also in {seen[s.key()]}; keep it in one file")])
            seen[s.key()] = str(path)
            out.append(s)
    return out


def write_signal_csv(series: Iterable[SignalSeries], grid: SlotGrid, header: str = "") -> str:
    """Series as a long-form CSV (one row per slot) that `read_signal_file` reads back."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append("timestamp,region,site,node,value,unit,signal,intensity_kind,factor_type,series")
    edges = grid.edges_s()
    for s in series:
        cells = {"region": "", "site": "", "node": ""}
        cells[s.target] = s.target_id
        intensity = s.signal is SignalKind.grid_intensity
        kind = s.intensity_kind if intensity else ""
        factor = (s.factor_type or "") if intensity else ""
        for t, v in zip(edges[:-1], np.asarray(s.values, dtype=float)):
            lines.append(f"{iso(t)},{cells['region']},{cells['site']},{cells['node']},{float(v)!r},{s.unit},"
                         f"{s.signal.value},{kind},{factor},{s.series}")
    return "\n".join(lines) + "\n"


__all__ = [
    "ENERGY_UNITS",
    "SIGNAL_COLUMNS",
    "SignalRows",
    "Table",
    "load_signal_files",
    "parse_number",
    "parse_time",
    "read_signal_file",
    "read_table",
    "rows_to_series",
    "write_signal_csv",
]
