"""What every importer shares: options, the result type, and documented defaults.

Foreign formats describe topology and compute, rarely carbon, time or
tenants. The defaults below fill those gaps; every importer says which ones
it used in `ImportResult.notes`, and docs/IMPORTERS.md lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.spec import SCENARIO_VERSION

#: Default horizon: one day of hourly slots from this instant (UTC), the same
#: sunny Sunday as the bundled example (examples/metro-de.yaml).
DEFAULT_START = datetime(2026, 6, 21, tzinfo=timezone.utc)
DEFAULT_SLOTS = 24
DEFAULT_SLOT_MINUTES = 60
#: Default grid region id and its hourly average intensity [gCO2e/kWh], by UTC
#: hour 0..23: the DE profile of examples/metro-de.yaml, a sunny summer day
#: (night ~360, solar dip to 170 at 12 UTC, evening peak 454 at 20 UTC) with the
#: German 2020 mean of about 313 g/kWh, inside the hourly range of roughly
#: 100-590 (shared/REFERENCE.md "Carbon intensity").
DEFAULT_REGION = "DE"
DE_HOURLY_G_PER_KWH: tuple[float, ...] = (
    378, 368, 362, 360, 356, 338, 306, 268, 232, 204, 184, 172,
    170, 178, 202, 242, 292, 348, 404, 442, 454, 438, 416, 394,
)
#: The one tenant of a source without tenants.
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class ImportOptions:
    """What the source does not say, set by the user (each has a documented default).

    `intensity_g_per_kwh`: 24 hourly values [gCO2e/kWh] by UTC hour, applied to
    every slot by the hour its start falls in; None = the DE profile above.
    `pue`: facility / IT power of every imported site; None = the scenario
    format's default (`edgeplace.topology.spec.DEFAULT_PUE`, 1.6).
    """

    start: datetime = DEFAULT_START
    slots: int = DEFAULT_SLOTS
    slot_minutes: int = DEFAULT_SLOT_MINUTES
    region: str = DEFAULT_REGION
    intensity_g_per_kwh: tuple[float, ...] | None = None
    pue: float | None = None
    tenant: str = DEFAULT_TENANT
    name: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.start.tzinfo is None:
            problems.append(Problem("start", "needs a UTC offset, e.g. 2026-06-21T00:00:00Z"))
        if not 0 < self.slots <= 100_000:
            problems.append(Problem("slots", f"must be 1..100000 (got {self.slots})"))
        if not 0 < self.slot_minutes <= 1440:
            problems.append(Problem("slot_minutes", f"must be 1..1440 (got {self.slot_minutes})"))
        if self.intensity_g_per_kwh is not None and len(self.intensity_g_per_kwh) != 24:
            problems.append(Problem("intensity_g_per_kwh", f"needs 24 hourly values (got {len(self.intensity_g_per_kwh)})"))
        if self.pue is not None and not 1.0 <= self.pue <= 5.0:
            problems.append(Problem("pue", f"must be between 1 and 5 (got {self.pue})"))
        if problems:
            raise InputError("import options", problems)


@dataclass
class ImportResult:
    """A scenario document and the notes on how it was made (defaults used, data dropped)."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: The source's own identity of each imported entity, by edgeplace id:
    #: {"workloads": {"svc-3-web": ["Service", 3]}, "nodes": {"es-2": ["EdgeServer", 2]}}
    #: (filled by importers whose sources have ids; used to write results back).
    source_ids: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)


def slug(text: str, fallback: str) -> str:
    """An id-friendly form of a name: 'New York' -> 'new-york'; empty -> `fallback`."""
    out = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return out or fallback


def unique_ids(names: list[str]) -> list[str]:
    """Make ids unique by suffixing repeats: ['a', 'a', 'b'] -> ['a', 'a-2', 'b']."""
    seen: dict[str, int] = {}
    used = set(names)
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        candidate = name if n == 1 else f"{name}-{n}"
        while n > 1 and candidate in used:
            n += 1
            candidate = f"{name}-{n}"
        seen[name] = n
        used.add(candidate)
        out.append(candidate)
    return out


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def hourly_series(options: ImportOptions) -> list[float]:
    """One intensity value per slot: the hourly profile at each slot's start hour (UTC)."""
    profile = options.intensity_g_per_kwh or DE_HOURLY_G_PER_KWH
    out = []
    for t in range(options.slots):
        start = options.start + timedelta(minutes=t * options.slot_minutes)
        out.append(float(profile[start.astimezone(timezone.utc).hour]))
    return out


def skeleton(name: str, description: str, options: ImportOptions, notes: list[str]) -> dict[str, Any]:
    """The parts of a scenario every importer fills the same way: horizon, one
    grid region with its intensity signal, one tenant. Appends the notes saying so."""
    doc: dict[str, Any] = {
        "version": SCENARIO_VERSION,
        "name": options.name or name,
        "description": description,
        "horizon": {"start": iso(options.start), "slots": options.slots, "slot_minutes": options.slot_minutes},
        "regions": [{"id": options.region, "description": "one grid region for every imported site (importer default)"}],
        "sites": [], "nodes": [], "links": [], "users": [],
        "tenants": [{"id": options.tenant}],
        "workloads": [],
        "signals": [{"signal": "grid_intensity", "region": options.region, "unit": "gCO2/kWh",
                     "intensity_kind": "average", "values": hourly_series(options)}],
    }
    profile = "the given hourly profile" if options.intensity_g_per_kwh else \
        "the default German summer-day profile (mean 313 gCO2e/kWh, examples/metro-de.yaml)"
    notes.append(f"no carbon data in the source: every site is in grid region {options.region!r} with "
                 f"{profile}, location-based average intensity")
    notes.append(f"no tenants in the source: every workload belongs to tenant {options.tenant!r}")
    notes.append(f"no wall-clock time in the source: horizon of {options.slots} slot(s) of "
                 f"{options.slot_minutes} min from {iso(options.start)}; every service runs in every slot")
    return doc


def site_fields(options: ImportOptions) -> dict[str, Any]:
    """Fields every imported site gets from the options: region and PUE, written out even when it is
    the format's default so that the file states the PUE its figures use."""
    return {"region": options.region, "pue": applied_pue(options)}


def applied_pue(options: ImportOptions) -> float:
    from edgeplace.topology.spec import DEFAULT_PUE

    return DEFAULT_PUE if options.pue is None else options.pue


def pue_note(options: ImportOptions) -> str:
    if options.pue is None:
        return (f"no PUE in the source: every site is written with PUE {applied_pue(options)}, the format's "
                f"default (typical enterprise / colocation); pass --pue 1.0 to count IT energy only")
    return f"no PUE in the source: every site gets PUE {options.pue} (from --pue)"
