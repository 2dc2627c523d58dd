"""Slots, aligned signal series, and writing them into a scenario document.

`SlotGrid` is a scenario's horizon as half-open UTC intervals. `SignalSeries`
is one signal resampled onto such a grid, in the canonical unit of its kind
(gCO2/kWh, kW, fraction: the first unit of `edgeplace.topology.load.SIGNAL_UNITS`),
tagged with what it is for: `series` actual (evaluation) or forecast
(planning), and for grid intensity `intensity_kind` average or marginal and
`factor_type` direct or lifecycle.
Every source in this package (files, pvlib, services, Prometheus,
forecasters) produces `SignalSeries`; `apply_signals` puts them into a
scenario document and `write_scenario` checks the result as a whole before
writing it atomically.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import yaml

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.io import atomic_write_text
from edgeplace.topology.load import SIGNAL_TARGET, SIGNAL_UNITS, scenario_from_dict
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.spec import FactorType, Horizon, ScenarioSpec, SignalKind

Series = Literal["actual", "forecast"]
IntensityKind = Literal["average", "marginal"]


def canonical_unit(kind: SignalKind) -> str:
    """The unit aligned values are in: gCO2/kWh, kW or fraction."""
    return next(iter(SIGNAL_UNITS[kind]))


@dataclass(frozen=True)
class SlotGrid:
    """`slots` half-open intervals of `slot_minutes` from `start` (UTC, aware)."""

    start: datetime
    slots: int
    slot_minutes: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("SlotGrid.start must be time-zone aware")
        if self.slots < 1 or self.slot_minutes < 1:
            raise ValueError("a SlotGrid needs at least one slot of at least one minute")
        object.__setattr__(self, "start", self.start.astimezone(timezone.utc))

    @classmethod
    def from_horizon(cls, horizon: Horizon) -> "SlotGrid":
        return cls(horizon.start, horizon.slots, horizon.slot_minutes)

    @property
    def slot_seconds(self) -> float:
        return self.slot_minutes * 60.0

    @property
    def slot_hours(self) -> float:
        return self.slot_minutes / 60.0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.slots * self.slot_minutes)

    @property
    def start_s(self) -> float:
        """Start as seconds since the Unix epoch."""
        return self.start.timestamp()

    def edges_s(self) -> np.ndarray:
        """The T+1 slot edges as seconds since the Unix epoch."""
        return self.start_s + np.arange(self.slots + 1, dtype=float) * self.slot_seconds

    def slots_per_day(self) -> int | None:
        """Slots in 24 h, or None when a slot does not divide a day."""
        return 1440 // self.slot_minutes if 1440 % self.slot_minutes == 0 else None

    def before(self, slots: int) -> "SlotGrid":
        """The `slots` slots that end where this grid starts (history for a forecast)."""
        return SlotGrid(self.start - timedelta(minutes=slots * self.slot_minutes), slots, self.slot_minutes)

    def describe(self) -> str:
        return f"{iso(self.start)}..{iso(self.end)} ({self.slots} x {self.slot_minutes} min)"


@dataclass(frozen=True)
class Points:
    """Time-stamped values before alignment: epoch seconds [UTC], canonical unit.

    A value covers the interval from its timestamp to the next one
    (`edgeplace.topology.signals.align`); `step_s` is the source's native resolution
    when it says (None: inferred from the spacing).
    """

    times_s: np.ndarray
    values: np.ndarray
    step_s: float | None = None
    source: str = ""
    #: What the source flagged about these values (e.g. how many are estimates), said with the series.
    notes: tuple[str, ...] = ()


def iso(t: datetime | float) -> str:
    """UTC ISO 8601 with a Z, to the second: 2026-06-21T00:00:00Z."""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), tz=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SignalSeries:
    """One signal on a `SlotGrid`: `values[t]` [canonical unit] for slot t.

    `target` is "region", "site" or "node" (fixed by the kind, see
    `edgeplace.topology.load.SIGNAL_TARGET`), `target_id` the id in the scenario.
    `source` says where the numbers came from (a file, pvlib, a service and
    zone); `notes` list what was done to them (gaps filled, cache used).
    """

    signal: SignalKind
    target_id: str
    values: np.ndarray
    series: Series = "actual"
    intensity_kind: IntensityKind = "average"
    source: str = ""
    notes: tuple[str, ...] = field(default=())
    #: Grid intensity only: "direct" or "lifecycle" emission factors, None when the source does not say.
    factor_type: FactorType | None = None

    @property
    def target(self) -> str:
        return SIGNAL_TARGET[self.signal]

    @property
    def unit(self) -> str:
        return canonical_unit(self.signal)

    def key(self) -> tuple[str, str, str]:
        """What a scenario holds at most one of: (signal, target id, series)."""
        return (self.signal.value, self.target_id, self.series)

    def label(self) -> str:
        kind = f" {self.intensity_kind}" if self.signal is SignalKind.grid_intensity else ""
        return f"{self.signal.value}{kind} {self.series} for {self.target} {self.target_id}"

    def to_document(self, digits: int = 10) -> dict[str, Any]:
        """The scenario-file form (`edgeplace.topology.spec.Signal`), values rounded to `digits` significant digits."""
        doc: dict[str, Any] = {"signal": self.signal.value, self.target: self.target_id, "unit": self.unit}
        if self.signal is SignalKind.grid_intensity:
            doc["intensity_kind"] = self.intensity_kind
            if self.factor_type is not None:
                doc["factor_type"] = self.factor_type
        doc["series"] = self.series
        doc["values"] = [_round_sig(float(v), digits) for v in self.values]
        return doc


def _round_sig(value: float, digits: int) -> float:
    """Round to `digits` significant digits: 0.09000000000000001 -> 0.09 (the file stays readable)."""
    return float(f"{value:.{digits}g}") if value else 0.0


def signal_key(doc: dict[str, Any]) -> tuple[str, str, str] | None:
    """The (signal, target id, series) of a signal entry in a document; None when it is malformed."""
    if not isinstance(doc, dict):
        return None
    target = next((doc.get(f) for f in ("region", "site", "node") if doc.get(f) is not None), None)
    return (str(doc.get("signal")), str(target), str(doc.get("series", "actual")))


def apply_signals(document: dict[str, Any], series: Iterable[SignalSeries]) -> dict[str, Any]:
    """A copy of `document` with each series put in: it replaces the entry with
    the same (signal, target, series) where there is one, else it is appended.
    Other signals stay as they are, in their order."""
    doc = copy.deepcopy(document)
    signals = doc.get("signals")
    doc["signals"] = list(signals) if isinstance(signals, list) else []
    _put_signals(doc["signals"], [s.to_document() for s in series])
    return doc


def _put_signals(signals: list, entries: list[dict[str, Any]], replace=None) -> None:
    """Replace the entry of the same (signal, target, series) in `signals`, else append (in place).
    `replace(old, new)` may carry something of the old entry over (its comments)."""
    position = {signal_key(s): i for i, s in enumerate(signals)}
    for entry in entries:
        key = signal_key(entry)
        if key in position:
            if replace is not None:
                replace(signals[position[key]], entry)
            signals[position[key]] = entry
        else:
            position[key] = len(signals)
            signals.append(entry)


def _keep_anchors(node: Any) -> None:
    """Write every anchor the user named, also those no alias uses (the writer drops those by default)."""
    anchor = getattr(node, "anchor", None)
    if anchor is not None and getattr(anchor, "value", None):
        anchor.always_dump = True
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _keep_anchors(child)


def _sequence_offset(text: str) -> int:
    """How far the file indents a block sequence's dash under its key ("key:\n  - a" is 2, "key:\n- a" 0):
    the round-trip writer cannot tell by itself and would re-indent every list."""
    import re

    match = re.search(r"^( *)[^\s#-][^:\n]*:[ \t]*(?:#.*)?\n(?:[ \t]*(?:#.*)?\n)*( *)- ", text, re.M)
    return max(0, len(match[2]) - len(match[1])) if match else 2


def render_roundtrip_yaml(original_text: str, series: Iterable[SignalSeries]) -> str:
    """The original YAML text with the series put in (`apply_signals`), written by a round-trip
    YAML library (ruamel.yaml): comments, key order, quoting and flow styles of everything
    else stay as the user wrote them. New value lists are written in flow style."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # one line per value list, as the plain writer does
    offset = _sequence_offset(original_text)
    rt.indent(mapping=2, sequence=offset + 2, offset=offset)
    data = rt.load(original_text)
    if not isinstance(data, CommentedMap):
        raise ValueError("a scenario file is a mapping")
    _keep_anchors(data)
    if not isinstance(data.get("signals"), CommentedSeq):
        data["signals"] = CommentedSeq()
    entries = []
    for s in series:
        entry = CommentedMap(s.to_document())
        values = CommentedSeq(entry["values"])
        values.fa.set_flow_style()
        entry["values"] = values
        entries.append(entry)
    def keep_comments(old, new):  # comments on the keys both entries have stay with them
        if isinstance(old, CommentedMap):
            new.ca.items.update({k: v for k, v in old.ca.items.items() if k in new})

    _put_signals(data["signals"], entries, keep_comments)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


class _FlowListDumper(yaml.SafeDumper):
    """Lists of scalars in flow style ([1.0, 2.0]) so 24 values stay on one line;
    no anchors: shared objects (YAML aliases in the source) are written out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(x, (int, float, str, bool)) or x is None for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def render_document(document: dict[str, Any], path: str | Path) -> str:
    """The document as YAML, or JSON when `path` ends in .json."""
    if Path(path).suffix.lower() == ".json":
        return json.dumps(document, indent=1, default=_json_default) + "\n"
    return yaml.dump(document, Dumper=_FlowListDumper, sort_keys=False, allow_unicode=True, width=120)


def write_scenario(document: dict[str, Any], path: str | Path) -> Scenario:
    """Check `document` as a whole (`edgeplace.topology.load`), then write it atomically.

    Nothing is written when the scenario has a problem: the `InputError`
    lists them all. Writes the document afresh (no comments); see
    `write_signals_back` to keep a YAML file's comments.
    """
    scenario = scenario_from_dict(document, source=str(path))
    atomic_write_text(path, render_document(document, path))
    return scenario


def write_signals_back(source: str | Path, document: dict[str, Any], series: list[SignalSeries],
                       path: str | Path) -> Scenario:
    """Write `document` with `series` put in to `path`, keeping the comments and key order of the
    YAML file `source` it was read from (JSON, either way, is written afresh).

    What is checked is what is written: the round-trip text is parsed back with the loader
    every command uses and validated as a whole before the atomic write; nothing is written
    when it has a problem.
    """
    if Path(source).suffix.lower() == ".json" or Path(path).suffix.lower() == ".json":
        return write_scenario(apply_signals(document, series), path)
    text = render_roundtrip_yaml(Path(source).read_text(encoding="utf-8"), series)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    scenario = scenario_from_dict(yaml.load(text, Loader=loader), source=str(path))  # noqa: S506 - a safe loader
    atomic_write_text(path, text)
    return scenario


#: A site's renewable supply above this many times its PV peak is almost
#: always W written as kW (a factor 1000); a site with wind as well as PV
#: stays far below it.
MAX_SUPPLY_PER_KWP = 10.0


def check_against_scenario(series: Iterable[SignalSeries], spec: ScenarioSpec, source: str) -> None:
    """Raise one `InputError` when series name ids the scenario lacks, or
    renewable supply dwarfs a site's PV peak (a unit mix-up)."""
    ids = {"region": {r.id for r in spec.regions}, "site": {s.id for s in spec.sites}, "node": {n.id for n in spec.nodes}}
    kwp = {s.id: s.pv_kwp for s in spec.sites}
    problems = []
    for s in series:
        known = ids[s.target]
        if s.target_id not in known:
            listed = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
            problems.append(Problem(f"{s.target} {s.target_id!r}",
                                    f"is not in the scenario (its {s.target}s: {listed or 'none'}); "
                                    f"fix the id in the data or add the {s.target} to the scenario"))
            continue
        peak = float(np.max(s.values)) if len(s.values) else 0.0
        if s.signal is SignalKind.renewable_supply and kwp[s.target_id] > 0 and peak > MAX_SUPPLY_PER_KWP * kwp[s.target_id]:
            problems.append(Problem(f"site {s.target_id!r}",
                                    f"supply peaks at {peak:g} kW, more than {MAX_SUPPLY_PER_KWP:g} x its "
                                    f"{kwp[s.target_id]:g} kWp of PV: the values look like W written as kW "
                                    f"(set unit: W), or pv_kwp is too small"))
    if problems:
        raise InputError(source, problems)


__all__ = [
    "IntensityKind",
    "Points",
    "Series",
    "SignalSeries",
    "SlotGrid",
    "apply_signals",
    "canonical_unit",
    "check_against_scenario",
    "iso",
    "render_document",
    "signal_key",
    "write_scenario",
]
