"""Fetching signals from services onto a scenario's slots, with the cache as a safety net.

For each series the order is:

1. unless offline, ask the service; a good answer is stored in the cache
   and aligned (`edgeplace.topology.signals.align`). If the service answered but
   does not cover the horizon, that is an `InputError` (asking again will
   not help; a different period or zone will);
2. if the service is down (`ServiceUnavailable`: outage, overload,
   timeouts, rate limit beyond the retry budget) or `offline` is set, the
   cached values are aligned instead: with a `SignalWarning` after an
   outage, a note when offline;
3. if the cache cannot cover the horizon either, a fallback series given by
   the caller (from a signal file) is used, with a `SignalWarning`;
4. else one `InputError` says what failed and how to get going again.

Auth failures, rejected requests and malformed bodies are never papered
over with old values: they need a fix, not a fallback.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_RANGES
from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES, Aligned, align
from edgeplace.topology.signals.cache import SignalCache, SignalWarning
from edgeplace.topology.signals.http import ServiceUnavailable
from edgeplace.topology.signals.prometheus import Prometheus
from edgeplace.topology.signals.series import Points, SignalSeries, SlotGrid, canonical_unit
from edgeplace.topology.signals.services import IntensityService
from edgeplace.topology.spec import SignalKind


def _resolve(service: str, keys: Sequence[str], fetch: Callable[[], dict[str, Points]] | None,
             cache: SignalCache | None, unit: str, step_s: float | None = None) -> tuple[dict[str, Points], str | None]:
    """Fresh points (cached for later), or cached ones when `fetch` is None (offline) or the service is down.

    Returns the points by key and the reason they are not fresh (None when fresh).
    """
    if fetch is not None:
        try:
            fresh = fetch()
        except ServiceUnavailable as exc:
            reason = exc.reason
        else:
            if cache is not None:
                for key, p in fresh.items():
                    cache.store(service, key, p.times_s, p.values, unit=unit, step_s=p.step_s or step_s)
            return fresh, None
    else:
        reason = "offline"
    found: dict[str, Points] = {}
    for key in keys:
        cached = cache.load(service, key) if cache is not None else None
        if cached is not None and cached.unit == unit:
            found[key] = Points(cached.times_s, cached.values, cached.step_s, f"cache of {cached.fetched_at}")
    return found, reason


def _align(points: Points, grid: SlotGrid, what: str, max_gap_minutes: float, fix: str, sample: str = "mean") -> Aligned:
    return align(points.times_s, points.values, grid, step_s=points.step_s, max_gap_s=max_gap_minutes * 60.0,
                 what=what, fix=fix, sample=sample)


def _range_problems(kind: SignalKind, values: np.ndarray, what: str) -> list[Problem]:
    lo, hi = SIGNAL_RANGES[kind]
    bad = np.flatnonzero((values < lo) | (values > hi))
    if not bad.size:
        return []
    unit = canonical_unit(kind)
    return [Problem(what, f"slot {int(bad[0])} is {values[bad[0]]:g} {unit}, outside the plausible range "
                          f"{lo:g}..{hi:g} {unit} ({bad.size} slot(s)); check the source's unit")]


def fetch_intensity(service: IntensityService, zones: Mapping[str, str], grid: SlotGrid, *, series: str = "actual",
                    cache: SignalCache | None = None, offline: bool = False,
                    fallback: Sequence[SignalSeries] = (),
                    max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES, sample: str = "mean") -> list[SignalSeries]:
    """grid_intensity series for each scenario region in `zones` (region id -> the service's zone);
    `sample`: mean or point value per slot (`edgeplace.topology.signals.align`)."""
    out = []
    unit = canonical_unit(SignalKind.grid_intensity)
    for region, zone in zones.items():
        factor = service.factor_type or "unstated"
        # Direct and lifecycle answers of one zone are different series: the factor type is in the key.
        key = f"{zone}|{service.intensity_kind}|{series}" + ("" if service.factor_type is None else f"|{factor}")
        what = f"{service.label} zone {zone} ({service.intensity_kind}, {factor} factors, {series})"
        fetch = None if offline else (lambda z=zone, k=key: {k: service.points(z, grid.start, grid.end, series)})
        found, reason = _resolve(service.name, [key], fetch, cache, unit)
        backup = [s for s in fallback if s.signal is SignalKind.grid_intensity and s.target_id == region
                  and s.series == series]
        values, notes, source = _settle(found.get(key), reason, grid, what, max_gap_minutes, backup,
                                        service.intensity_kind, f"region {region}", sample, service.factor_type)
        if reason is None:
            notes = [*found[key].notes, *notes]  # what the service flagged (estimated values, ...)
        problems = _range_problems(SignalKind.grid_intensity, values, what)
        if problems:
            raise InputError(service.label, problems)
        out.append(SignalSeries(SignalKind.grid_intensity, region, values, series,
                                service.intensity_kind, source=source or f"{service.label} zone {zone}",
                                notes=tuple(notes), factor_type=service.factor_type))
    return out


def _settle(points: Points | None, reason: str | None, grid: SlotGrid, what: str, max_gap_minutes: float,
            backup: Sequence[SignalSeries], intensity_kind: str | None, target: str,
            sample: str = "mean", factor_type: str | None = None) -> tuple[np.ndarray, list[str], str]:
    """Aligned values, notes and a source line from fresh points, the cache or a fallback series (module docstring)."""
    if reason is None:
        assert points is not None  # fresh answers always carry points
        result = _align(points, grid, what, max_gap_minutes, "fetch a period the service covers", sample)
        if result.values is None:
            raise InputError(what, result.problems)
        return result.values, result.notes, points.source
    cached_problems: list[Problem] = []
    if points is not None:
        result = _align(points, grid, f"{what} from the cache", max_gap_minutes,
                        "fetch again when the service is back", sample)
        if result.values is not None:
            message = f"{what}: using cached values ({points.source})"
            if reason != "offline":
                warnings.warn(SignalWarning(f"{what}: the service is unreachable ({reason}); using cached values "
                                            f"({points.source})"), stacklevel=3)
            return result.values, [*result.notes, message], points.source
        cached_problems = result.problems
    for s in backup:
        if intensity_kind is not None and s.intensity_kind != intensity_kind:
            raise InputError(what, [Problem(target, f"the fallback file gives {s.intensity_kind} intensity but the "
                                                    f"service gives {intensity_kind}; they are not interchangeable")])
        if factor_type is not None and s.factor_type != factor_type:
            raise InputError(what, [Problem(target, f"the fallback file gives {s.factor_type or 'unstated'} factors but "
                                                    f"the service gives {factor_type}; set factor_type in the file to "
                                                    f"what it holds, or fetch the other type")])
        why = "offline" if reason == "offline" else f"the service is unreachable ({reason})"
        warnings.warn(SignalWarning(f"{what}: {why} and the cache does not cover the horizon; using {s.source}"),
                      stacklevel=3)
        return np.asarray(s.values, dtype=float), [*s.notes, f"{what}: fallback {s.source}"], s.source
    head = ("offline, and" if reason == "offline" else f"the service is unreachable ({reason}) and")
    tail = ("nothing is cached for it" if points is None else "the cached values do not cover the horizon")
    raise InputError(what, [Problem(target, f"{head} {tail}; try again online, or give values with --fallback-file"),
                            *cached_problems])


def fetch_utilisation(prometheus: Prometheus, node_ids: Sequence[str], grid: SlotGrid, *,
                      label: str = "instance", query: str | None = None, cache: SignalCache | None = None,
                      offline: bool = False, fallback: Sequence[SignalSeries] = (), required: Sequence[str] = (),
                      max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES,
                      sample: str = "mean") -> tuple[list[SignalSeries], list[str]]:
    """background_utilisation series for the nodes Prometheus knows; returns them and the nodes it had nothing for.

    `required` nodes without values are a problem; other missing nodes keep
    their scenario values (listed in the second return value).
    """
    tag = hashlib.sha256(f"{label}|{query or ''}".encode()).hexdigest()[:8]
    keys = {node: f"{node}|utilisation|{tag}" for node in node_ids}
    unit = canonical_unit(SignalKind.background_utilisation)

    def fetch() -> dict[str, Points]:
        found = prometheus.node_utilisation(grid, node_ids, label=label, query=query)
        return {keys[node]: p for node, p in found.items()}

    found, reason = _resolve(prometheus.name, list(keys.values()), None if offline else fetch, cache, unit,
                             step_s=grid.slot_seconds)
    out, missing, problems = [], [], []
    for node in node_ids:
        points = found.get(keys[node])
        backup = [s for s in fallback if s.signal is SignalKind.background_utilisation and s.target_id == node]
        if points is None and not backup and (reason is None or node not in required):
            missing.append(node)
            continue
        what = f"{prometheus.label} node {node}"
        try:
            values, notes, source = _settle(points, reason, grid, what, max_gap_minutes, backup, None, f"node {node}",
                                            sample)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        bad = _range_problems(SignalKind.background_utilisation, values, what)
        if bad:
            problems.extend(Problem(p.path, p.message + " (a query in percent needs / 100)") for p in bad)
            continue
        out.append(SignalSeries(SignalKind.background_utilisation, node, values, "actual", source=source,
                                notes=tuple(notes)))
    for node in required:
        if node in missing:
            problems.append(Problem(f"node {node}", f"{prometheus.label} returned no series for it; check the "
                                                    f"label ({label}) or the query"))
    if problems:
        raise InputError(prometheus.label, problems)
    return out, missing


__all__ = ["fetch_intensity", "fetch_utilisation"]
