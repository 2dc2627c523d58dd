"""Carbon-intensity services: one adapter per service, one small interface.

An adapter turns a zone and a period into `Points` of grid intensity
[gCO2/kWh] and says which kind they are:

===================  ==============================  ==========  ===================================
name                 service                         kind        credentials (environment)
===================  ==============================  ==========  ===================================
electricitymaps      Electricity Maps API v3         average     ELECTRICITYMAPS_API_TOKEN
watttime             WattTime API v3                 marginal    WATTTIME_USERNAME, WATTTIME_PASSWORD
                     (co2_moer; co2_aoer: average)
ukgrid               GB carbon intensity API         average     none
                     (National Grid ESO)
carbonaware          GSF Carbon Aware SDK Web API    as told     CARBON_AWARE_API_TOKEN (optional)
                                                     (depends on
                                                     its source)
===================  ==============================  ==========  ===================================

Base URLs can be changed with ELECTRICITYMAPS_API_URL, WATTTIME_API_URL,
CARBONINTENSITY_API_URL and CARBON_AWARE_API_URL (required: the SDK is
self-hosted), or `ServiceConfig.base_url`. Credentials are read once, when
an adapter is made, from `ServiceConfig.env` (default: the process
environment), and never written anywhere.

Average and marginal intensity measure different things (what a kWh emits
on average, versus what one more kWh emits); a series keeps its kind, and
the scenario loader refuses a scenario that mixes them.

Failures follow `edgeplace.topology.signals.http`: auth and request errors and
malformed bodies are `InputError`s, outages are `ServiceUnavailable`, which
`edgeplace.topology.signals.fetch` answers with cached or file values.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping, Protocol

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.http import HttpClient, RetryPolicy
from edgeplace.topology.signals.series import Points


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ServiceConfig:
    """How to reach a service; everything an adapter reads from outside comes from here."""

    base_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: WattTime: co2_moer (marginal, default) or co2_aoer (average, history only).
    signal_type: str = "co2_moer"
    #: Carbon Aware SDK: the kind its data source provides (WattTime: marginal; Electricity Maps: average).
    intensity_kind: Literal["average", "marginal"] | None = None
    #: Electricity Maps: lifecycle (default, matches the AR5 factors) or direct emission factors;
    #: Carbon Aware SDK: what its data source gives (None: not stated).
    emission_factor_type: Literal["direct", "lifecycle"] | None = None
    now: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def client(self, service: str, auth_hint: str = "", plan_hint: str = "") -> HttpClient:
        return HttpClient(service, self.policy, sleep=self.sleep, rng=self.rng, auth_hint=auth_hint,
                          plan_hint=plan_hint)


class IntensityService(Protocol):
    """A source of grid carbon intensity.

    `points(zone, start, end, series)` returns what the service has for the
    zone around [start, end) (the caller aligns and checks coverage):
    series "actual" from its history, "forecast" from its forecast. Raises
    `ServiceUnavailable` when the service is down, `InputError` for wrong
    credentials, a rejected request or a malformed body.
    """

    name: str
    label: str
    intensity_kind: str
    #: direct (combustion) or lifecycle emission factors; None when the service does not say.
    factor_type: str | None

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points: ...


# ---------------------------------------------------------------------------
# Reading response bodies


class Body:
    """Walks a JSON body, collecting every deviation from the documented shape."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[Problem] = []

    def bad(self, path: str, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(Problem(path, message))

    def field(self, doc: Any, key: str, path: str, kind: type | tuple[type, ...] = object, *, optional: bool = False) -> Any:
        where = f"{path}.{key}" if path else key
        if not isinstance(doc, dict):
            self.bad(path or "body", f"should be an object, got {type(doc).__name__}")
            return None
        if key not in doc:
            if not optional:
                self.bad(where, "is missing")
            return None
        value = doc[key]
        if value is not None and not isinstance(value, kind):
            self.bad(where, f"should be {_kind_name(kind)}, got {type(value).__name__}")
            return None
        return value

    def check(self) -> None:
        if self.problems:
            self.problems.append(Problem("", "the service's answer does not have the documented shape; "
                                             "check the base URL, or the service changed its API"))
            raise InputError(self.source, self.problems)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def parse_timestamp(body: Body, text: Any, path: str) -> float | None:
    """ISO 8601 with an offset -> epoch seconds; naive times count as UTC only if the service documents so (never here)."""
    if not isinstance(text, str):
        body.bad(path, f"should be an ISO 8601 time, got {type(text).__name__}")
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        # .NET writes 7 fractional digits ("20:45:11.5092741+00:00"); Python takes 6.
        moment = _trim_fraction(text.strip())
        if moment is None:
            body.bad(path, f"{text!r} is not an ISO 8601 time")
            return None
    if moment.tzinfo is None:
        body.bad(path, f"{text!r} has no UTC offset")
        return None
    return moment.timestamp()


def _trim_fraction(text: str) -> datetime | None:
    import re

    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)\.(\d+)(Z|[+-]\d\d:?\d\d)?", text)
    if not match:
        return None
    try:
        return datetime.fromisoformat(f"{match[1]}.{match[2][:6]}{match[3] or ''}")
    except ValueError:
        return None


def parse_number(body: Body, value: Any, path: str, *, nullable: bool = True) -> float:
    """A finite number, or NaN for null (a missing value); anything else is a problem (NaN returned)."""
    if value is None and nullable:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        body.bad(path, f"should be a number, got {value!r}"[:120])
        return math.nan
    return float(value)


def series_points(body: Body, items: Any, path: str, time_key: str, value_key: str, *,
                  factor: float = 1.0, source: str = "", step_s: float | None = None) -> Points:
    """A list of {time_key: ISO time, value_key: number|null} -> Points (values x `factor`)."""
    if not isinstance(items, list):
        body.bad(path, f"should be a list, got {type(items).__name__}")
        return Points(np.array([]), np.array([]), step_s, source)
    times, values = [], []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        t = parse_timestamp(body, body.field(item, time_key, where), f"{where}.{time_key}")
        v = parse_number(body, body.field(item, value_key, where, optional=True) if isinstance(item, dict) else None,
                         f"{where}.{value_key}")
        if t is not None:
            times.append(t)
            values.append(v * factor)
    return Points(np.asarray(times, dtype=float), np.asarray(values, dtype=float), step_s, source)


def concat(parts: list[Points], source: str) -> Points:
    """Points of several requests (time windows) as one; later parts win at equal timestamps."""
    if not parts:
        return Points(np.array([]), np.array([]), None, source)
    merged: dict[float, float] = {}
    for p in parts:
        merged.update(zip(p.times_s.tolist(), p.values.tolist()))
    times = np.array(sorted(merged), dtype=float)
    notes = tuple(dict.fromkeys(n for p in parts for n in p.notes))
    return Points(times, np.array([merged[t] for t in times], dtype=float), parts[0].step_s, source, notes)


def windows(start: datetime, end: datetime, max_days: float) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into pieces of at most `max_days` (service request limits)."""
    from datetime import timedelta

    out, t = [], start
    step = timedelta(days=max_days)
    while t < end:
        out.append((t, min(t + step, end)))
        t += step
    return out


def require(env: Mapping[str, str], name: str, service: str, what: str) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise InputError(service, [Problem(name, f"is not set; export {name}=<{what}> (or use --offline with cached values)")])
    return value


def service_registry() -> dict[str, Callable[[ServiceConfig], IntensityService]]:
    """Adapters by name, built here and passed down (no registration on import)."""
    from edgeplace.topology.signals.services.carbonaware import CarbonAwareSdk
    from edgeplace.topology.signals.services.electricitymaps import ElectricityMaps
    from edgeplace.topology.signals.services.ukgrid import UkCarbonIntensity
    from edgeplace.topology.signals.services.watttime import WattTime

    return {"electricitymaps": ElectricityMaps, "watttime": WattTime, "ukgrid": UkCarbonIntensity,
            "carbonaware": CarbonAwareSdk}


__all__ = [
    "Body",
    "IntensityService",
    "ServiceConfig",
    "concat",
    "parse_number",
    "parse_timestamp",
    "require",
    "series_points",
    "service_registry",
    "utc_now",
    "windows",
]
