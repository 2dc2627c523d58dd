"""Electricity Maps API v3: carbon intensity of electricity consumed in a zone.

Requests (header `auth-token: $ELECTRICITYMAPS_API_TOKEN`):

    GET /v3/carbon-intensity/latest?zone=DE
    GET /v3/carbon-intensity/history?zone=DE                      (last 24 h, hourly)
    GET /v3/carbon-intensity/past-range?zone=DE&start=..&end=..   (any past period, <= 10 days a request)
    GET /v3/carbon-intensity/forecast?zone=DE
    optional: emissionFactorType=lifecycle|direct

Responses (documented shapes; fields not listed are ignored):

    latest:      {"zone": "DE", "carbonIntensity": 302, "datetime": "2026-06-21T12:00:00.000Z",
                  "updatedAt": "...", "emissionFactorType": "lifecycle", "isEstimated": false, ...}
    history:     {"zone": "DE", "history": [<latest-shaped entries>]}
    past-range:  {"zone": "DE", "data": [<latest-shaped entries>]}
    forecast:    {"zone": "DE", "forecast": [{"carbonIntensity": 326, "datetime": "..."}], "updatedAt": "..."}

Values are gCO2eq/kWh, consumption-based *average* intensity (lifecycle
factors by default); `datetime` starts the hour a value covers. A null
carbonIntensity is a missing value.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from edgeplace.topology.signals.series import Points, iso
from edgeplace.topology.signals.services import Body, ServiceConfig, concat, require, series_points, windows

TOKEN_ENV = "ELECTRICITYMAPS_API_TOKEN"
URL_ENV = "ELECTRICITYMAPS_API_URL"
DEFAULT_URL = "https://api.electricitymap.org"
#: Longest period of one past-range request [days] (hourly granularity).
MAX_RANGE_DAYS = 10


class ElectricityMaps:
    name = "electricitymaps"
    label = "Electricity Maps"
    intensity_kind = "average"

    def __init__(self, config: ServiceConfig):
        self.base = (config.base_url or config.env.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.env = config.env
        self.now = config.now
        self.factor_type = config.emission_factor_type or "lifecycle"
        self.http = config.client(self.label, auth_hint=f"check {TOKEN_ENV} (a token from the Electricity Maps API portal)")

    def _get(self, path: str, **params: str):
        token = require(self.env, TOKEN_ENV, self.label, "API token")
        url = f"{self.base}/v3/carbon-intensity/{path}"
        query = {**params, "emissionFactorType": self.factor_type}
        return url, self.http.get_json(url, query, headers={"auth-token": token})

    def latest(self, zone: str) -> Points:
        url, doc = self._get("latest", zone=zone)
        return self._entries(url, doc, None, zone)

    def history(self, zone: str) -> Points:
        url, doc = self._get("history", zone=zone)
        return self._entries(url, doc, "history", zone)

    def past_range(self, zone: str, start: datetime, end: datetime) -> Points:
        parts = []
        for a, b in windows(start, end, MAX_RANGE_DAYS):
            url, doc = self._get("past-range", zone=zone, start=iso(a), end=iso(b))
            parts.append(self._entries(url, doc, "data", zone))
        return concat(parts, f"{self.label} zone {zone}")

    def forecast(self, zone: str) -> Points:
        url, doc = self._get("forecast", zone=zone)
        return self._entries(url, doc, "forecast", zone)

    def _entries(self, url: str, doc, key: str | None, zone: str) -> Points:
        """The entries under `key` (None: `doc` is one entry) as Points [gCO2/kWh]."""
        body = Body(f"{self.label} response from {url}")
        items = [doc] if key is None else body.field(doc, key, "", list)
        if items is not None:
            points = series_points(body, items, key or "body", "datetime", "carbonIntensity",
                                   source=f"{self.label} zone {zone}")
        body.check()
        return points

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points:
        if series == "forecast":
            return self.forecast(zone)
        # The history endpoint covers the last 24 hours; older periods need past-range.
        if start >= self.now() - timedelta(hours=24):
            return self.history(zone)
        return self.past_range(zone, start, end)


__all__ = ["DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "ElectricityMaps"]
