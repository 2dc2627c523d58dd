"""The GB carbon intensity API (National Grid ESO, api.carbonintensity.org.uk).

No credentials. Half-hourly periods; times as 2026-06-21T12:00Z.

    GET /intensity/{from}/{to}
        -> {"data": [{"from": "2026-06-21T12:00Z", "to": "2026-06-21T12:30Z",
                      "intensity": {"forecast": 266, "actual": 263, "index": "moderate"}}, ...]}
    GET /regional/intensity/{from}/{to}/regionid/{regionid}           (regionid 1..17)
        -> {"data": {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
                     "data": [{"from": "...", "to": "...", "intensity": {"forecast": 152, "index": "moderate"},
                               "generationmix": [{"fuel": "gas", "perc": 43.6}, ...]}]}}
        (a one-element list in place of the object is read too)

Both ask for at most 14 days; longer periods are split. Values are gCO2/kWh,
*average* intensity of GB generation. National data has `actual` (null
until measured) and `forecast`; regional data is forecast only, so series
"actual" for a region is refused rather than passing a forecast off as
actual.

Zones: "national" (or "GB"), or a region id 1..17 (also "regionid:13").
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.series import Points
from edgeplace.topology.signals.services import Body, ServiceConfig, concat, parse_number, parse_timestamp, windows

URL_ENV = "CARBONINTENSITY_API_URL"
DEFAULT_URL = "https://api.carbonintensity.org.uk"
MAX_DAYS = 13
HALF_HOUR_S = 1800.0


def _time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def parse_zone(zone: str) -> int | None:
    """None for national; the region id for a regional zone; InputError otherwise."""
    text = zone.strip().lower()
    if text in ("national", "gb", ""):
        return None
    text = text.removeprefix("regionid:")
    if text.isdigit() and 1 <= int(text) <= 17:
        return int(text)
    raise InputError("GB carbon intensity", [Problem(f"zone {zone!r}", "use national, or a region id 1..17 "
                                                                      "(e.g. 13 for London)")])


class UkCarbonIntensity:
    name = "ukgrid"
    label = "GB carbon intensity"
    intensity_kind = "average"
    #: The API's factors count combustion at the power station only (its methodology
    #: paper; no upstream or lifecycle emissions).
    factor_type = "direct"

    def __init__(self, config: ServiceConfig):
        self.base = (config.base_url or config.env.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.http = config.client(self.label)

    def national(self, start: datetime, end: datetime, series: str) -> Points:
        """`series` actual or forecast of GB as a whole."""
        parts = []
        for a, b in windows(start, end, MAX_DAYS):
            url = f"{self.base}/intensity/{_time(a)}/{_time(b)}"
            doc = self.http.get_json(url)
            body = Body(f"{self.label} response from {url}")
            parts.append(self._periods(body, body.field(doc, "data", "", list), "data", series, "GB national"))
            body.check()
        return concat(parts, f"{self.label} national ({series})")

    def regional(self, region_id: int, start: datetime, end: datetime) -> Points:
        """The forecast of one DNO region (the API publishes no regional actuals)."""
        parts = []
        for a, b in windows(start, end, MAX_DAYS):
            url = f"{self.base}/regional/intensity/{_time(a)}/{_time(b)}/regionid/{region_id}"
            doc = self.http.get_json(url)
            body = Body(f"{self.label} response from {url}")
            region = body.field(doc, "data", "", (dict, list))
            path = "data"
            if isinstance(region, list):
                region = region[0] if region else None
                path = "data[0]"
                if region is None:
                    body.bad("data", "is an empty list")
            periods = body.field(region, "data", path, list) if region is not None else None
            parts.append(self._periods(body, periods, f"{path}.data", "forecast", f"region {region_id}"))
            body.check()
        return concat(parts, f"{self.label} region {region_id} (forecast)")

    def _periods(self, body: Body, periods, path: str, series: str, what: str) -> Points:
        times, values = [], []
        for i, period in enumerate(periods or []):
            where = f"{path}[{i}]"
            t = parse_timestamp(body, body.field(period, "from", where), f"{where}.from")
            intensity = body.field(period, "intensity", where, dict)
            value = body.field(intensity, series, f"{where}.intensity", optional=True) if intensity is not None else None
            v = parse_number(body, value, f"{where}.intensity.{series}")
            if t is not None:
                times.append(t)
                values.append(v)
        return Points(np.asarray(times, dtype=float), np.asarray(values, dtype=float), HALF_HOUR_S,
                      f"{self.label} {what}")

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points:
        region = parse_zone(zone)
        if region is None:
            return self.national(start, end, series)
        if series != "forecast":
            raise InputError(self.label, [Problem(f"zone {zone!r}", "regional intensity is published as a forecast only; "
                                                                   "use --series forecast, or the national zone for actuals")])
        return self.regional(region, start, end)


__all__ = ["DEFAULT_URL", "URL_ENV", "UkCarbonIntensity", "parse_zone"]
