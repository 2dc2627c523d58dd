"""Electricity Maps API v3: carbon intensity of electricity consumed in a zone.

Requests (header `auth-token: $ELECTRICITYMAPS_API_TOKEN`; every request also
sends `disableCallerLookup=true`, so a missing or unknown zone is an error
rather than the zone of the caller's IP address):

    GET /v3/carbon-intensity/latest?zone=DE
    GET /v3/carbon-intensity/history?zone=DE                      (last 24 h, hourly)
    GET /v3/carbon-intensity/past-range?zone=DE&start=..&end=..   (any past period, <= 10 days a request)
    GET /v3/carbon-intensity/forecast?zone=DE&horizonHours=24     (6, 24, 48 or 72 h ahead)
    optional: emissionFactorType=lifecycle|direct

Responses (documented shapes; fields not listed are read but not used):

    latest:      {"zone": "DE", "carbonIntensity": 302, "datetime": "2019-05-21T00:00:00.000Z",
                  "updatedAt": "...", "createdAt": "...", "emissionFactorType": "lifecycle",
                  "isEstimated": false, "estimationMethod": null}
    history:     {"zone": "DE", "history": [<latest-shaped entries>]}
    past-range:  {"zone": "DE", "data": [<latest-shaped entries>]}
    forecast:    {"zone": "DE", "forecast": [{"carbonIntensity": 326, "datetime": "..."}], "updatedAt": "..."}
    errors:      401 {"message": ...} (token), 403 {"message": ...} (zone or endpoint not in the plan)

Values are gCO2eq/kWh, consumption-based *average* intensity (lifecycle
factors by default); `datetime` starts the hour a value covers. A null
carbonIntensity is a missing value. The answer's `zone` must be the zone
asked for. Entries with `isEstimated: true` are the service's estimates
(`estimationMethod`, e.g. TIME_SLICER_AVERAGE), not measurements: the
series says how many, and by which methods.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.series import Points, iso
from edgeplace.topology.signals.services import Body, ServiceConfig, concat, require, series_points, windows

TOKEN_ENV = "ELECTRICITYMAPS_API_TOKEN"
URL_ENV = "ELECTRICITYMAPS_API_URL"
DEFAULT_URL = "https://api.electricitymap.org"
#: Longest period of one past-range request [days] (hourly granularity).
MAX_RANGE_DAYS = 10
#: The forecast horizons the API offers [h] (`horizonHours`).
FORECAST_HORIZONS_H = (6, 24, 48, 72)


class ElectricityMaps:
    name = "electricitymaps"
    label = "Electricity Maps"
    intensity_kind = "average"

    def __init__(self, config: ServiceConfig):
        self.base = (config.base_url or config.env.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.env = config.env
        self.now = config.now
        self.factor_type = config.emission_factor_type or "lifecycle"
        self.http = config.client(self.label, auth_hint=f"check {TOKEN_ENV} (a token from the Electricity Maps API portal)",
                                  plan_hint="the token's plan lists the zones and endpoints it covers (forecasts and "
                                            "past-range need a plan that includes them)")

    def _get(self, path: str, **params: str):
        token = require(self.env, TOKEN_ENV, self.label, "API token")
        url = f"{self.base}/v3/carbon-intensity/{path}"
        query = {**params, "emissionFactorType": self.factor_type, "disableCallerLookup": "true"}
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

    def forecast(self, zone: str, horizon_hours: int = 24) -> Points:
        """The current forecast, `horizon_hours` ahead (sent as the smallest offered horizon that covers it)."""
        fits = [h for h in FORECAST_HORIZONS_H if h >= horizon_hours]
        if not fits:
            raise InputError(self.label, [Problem("horizonHours", f"Electricity Maps forecasts at most "
                                                                  f"{FORECAST_HORIZONS_H[-1]} h ahead; the horizon ends "
                                                                  f"{horizon_hours} h from now: plan a shorter horizon")])
        url, doc = self._get("forecast", zone=zone, horizonHours=str(fits[0]))
        return self._entries(url, doc, "forecast", zone)

    def _entries(self, url: str, doc, key: str | None, zone: str) -> Points:
        """The entries under `key` (None: `doc` is one entry) as Points [gCO2/kWh]; the zone checked,
        estimated values counted."""
        body = Body(f"{self.label} response from {url}")
        answered = body.field(doc, "zone", "", str, optional=key == "forecast")
        if answered is not None and answered != zone:
            body.bad("zone", f"the service answered for zone {answered!r}, not {zone!r}; check the zone key "
                             f"(GET /v3/zones lists them)")
        items = [doc] if key is None else body.field(doc, key, "", list)
        points = series_points(body, items or [], key or "body", "datetime", "carbonIntensity",
                               source=f"{self.label} zone {zone}")
        body.check()
        estimated = [item for item in items or [] if isinstance(item, dict) and item.get("isEstimated") is True]
        if estimated:
            methods = sorted({str(item.get("estimationMethod")) for item in estimated if item.get("estimationMethod")})
            how = f" ({', '.join(methods)})" if methods else ""
            points = Points(points.times_s, points.values, points.step_s, points.source,
                            (f"{self.label} zone {zone}: {len(estimated)} of {len(items)} value(s) are the service's "
                             f"estimates{how}, not measurements",))
        return points

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points:
        if series == "forecast":
            hours = int(-(-(end - self.now()).total_seconds() // 3600))  # ceil: through the horizon's end
            return self.forecast(zone, max(1, hours))
        # The history endpoint covers the last 24 hours; older periods need past-range.
        if start >= self.now() - timedelta(hours=24):
            return self.history(zone)
        return self.past_range(zone, start, end)


__all__ = ["DEFAULT_URL", "FORECAST_HORIZONS_H", "TOKEN_ENV", "URL_ENV", "ElectricityMaps"]
