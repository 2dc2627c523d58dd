"""The Green Software Foundation's Carbon Aware SDK Web API (self-hosted).

    GET /emissions/bylocation?location=westeurope&time=<start>&toTime=<end>
        -> [{"location": "westeurope", "time": "2026-06-21T00:00:00+00:00", "rating": 310.5,
             "duration": "00:05:00"}, ...]                      (rating in gCO2/kWh)
    GET /emissions/forecasts/current?location=westeurope
        -> [{"location": "westeurope", "generatedAt": "...", "requestedAt": "...",
             "dataStartAt": "...", "dataEndAt": "...", "windowSize": 5,
             "optimalDataPoints": [...],
             "forecastData": [{"location": "...", "timestamp": "...", "duration": 5, "value": 380.5}, ...]}]

    POST /emissions/forecasts/batch   [{"requestedAt": "...", "location": "westeurope"}, ...]
        -> one EmissionsForecast (the shape above) per request: the forecast that was current at
           `requestedAt` (historical forecasts, for back-testing)

`duration` is a .NET TimeSpan ("00:05:00", "1.00:00:00") in emissions data
and minutes in forecast data. Errors come as ValidationProblemDetails
({"type", "title", "status", "detail", "traceId", "errors"}); the emissions
endpoints answer 204 No Content when the data source has nothing for the
location and period, the forecast endpoints 501 when it cannot forecast.

The SDK passes on what its configured data source provides: WattTime data is
*marginal*, Electricity Maps data *average*. The API does not say which, so
the adapter has to be told (`ServiceConfig.intensity_kind`, CLI
`--intensity-kind`); it refuses to guess. `CARBON_AWARE_API_URL` (or a base
URL) is required; `CARBON_AWARE_API_TOKEN`, when set, is sent as a bearer
token for deployments behind an authenticating gateway.
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.series import Points, iso
from edgeplace.topology.signals.services import Body, ServiceConfig, parse_number, parse_timestamp

URL_ENV = "CARBON_AWARE_API_URL"
TOKEN_ENV = "CARBON_AWARE_API_TOKEN"


def parse_timespan(text: str) -> float | None:
    """A .NET TimeSpan "[d.]hh:mm:ss[.fffffff]" in seconds; None when unreadable."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class CarbonAwareSdk:
    name = "carbonaware"
    label = "Carbon Aware SDK"

    def __init__(self, config: ServiceConfig):
        base = config.base_url or config.env.get(URL_ENV)
        problems = []
        if not base:
            problems.append(Problem(URL_ENV, "is not set; the Carbon Aware SDK Web API is self-hosted: export "
                                             f"{URL_ENV}=http://host:port or pass --base-url"))
        if config.intensity_kind not in ("average", "marginal"):
            problems.append(Problem("intensity_kind", "say which kind the SDK's data source gives (--intensity-kind "
                                                      "marginal for WattTime, average for Electricity Maps)"))
        if problems:
            raise InputError(self.label, problems)
        self.base = str(base).rstrip("/")
        self.intensity_kind = config.intensity_kind
        self.factor_type = config.emission_factor_type  # as told (--factor-type); None: not stated
        token = (config.env.get(TOKEN_ENV) or "").strip()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = config.client(self.label, auth_hint=f"check {TOKEN_ENV} (the gateway in front of the SDK refused it)",
                                  plan_hint="the SDK passes on its data source's refusal: that account's plan does not "
                                            "cover this location")

    def emissions(self, location: str, start: datetime, end: datetime) -> Points:
        url = f"{self.base}/emissions/bylocation"
        doc = self.http.get_json(url, {"location": location, "time": iso(start), "toTime": iso(end)}, self.headers)
        body = Body(f"{self.label} response from {url}")
        if not isinstance(doc, list):
            body.bad("body", f"should be a list of emissions data, got {type(doc).__name__}")
            doc = []
        times, values, steps = [], [], []
        for i, item in enumerate(doc):
            where = f"[{i}]"
            t = parse_timestamp(body, body.field(item, "time", where), f"{where}.time")
            v = parse_number(body, body.field(item, "rating", where), f"{where}.rating", nullable=False)
            duration = body.field(item, "duration", where, str, optional=True)
            if duration is not None:
                seconds = parse_timespan(duration)
                if seconds is None:
                    body.bad(f"{where}.duration", f"{duration!r} is not a TimeSpan like 00:05:00")
                elif seconds > 0:
                    steps.append(seconds)
            if t is not None:
                times.append(t)
                values.append(v)
        body.check()
        return Points(np.asarray(times, dtype=float), np.asarray(values, dtype=float),
                      float(np.median(steps)) if steps else None, f"{self.label} location {location}")

    def forecast(self, location: str) -> Points:
        url = f"{self.base}/emissions/forecasts/current"
        doc = self.http.get_json(url, {"location": location}, self.headers)
        body = Body(f"{self.label} response from {url}")
        if not isinstance(doc, list) or not doc:
            body.bad("body", "should be a list with one forecast per location")
            body.check()
        points = self._forecast_data(body, doc[0], "[0]", f"{self.label} location {location} (forecast)")
        body.check()
        return points

    def historical_forecasts(self, location: str, requested_at: list[datetime]) -> list[tuple[float, Points]]:
        """The forecast that was current at each of `requested_at`: (its generatedAt epoch s, its points),
        oldest first; one POST for the whole batch."""
        url = f"{self.base}/emissions/forecasts/batch"
        doc = self.http.post_json(url, [{"requestedAt": iso(t), "location": location} for t in requested_at],
                                  self.headers)
        body = Body(f"{self.label} response from {url}")
        if not isinstance(doc, list):
            body.bad("body", f"should be a list with one forecast per request, got {type(doc).__name__}")
            body.check()
        out: dict[float, Points] = {}
        for i, item in enumerate(doc):
            at = parse_timestamp(body, body.field(item, "generatedAt", f"[{i}]"), f"[{i}].generatedAt")
            points = self._forecast_data(body, item, f"[{i}]", f"{self.label} location {location} (forecast)")
            if at is not None:
                out[at] = points
        body.check()
        return sorted(out.items())

    def _forecast_data(self, body: Body, forecast, where0: str, source: str) -> Points:
        """The `forecastData` of one EmissionsForecast as Points (duration in minutes)."""
        data = body.field(forecast, "forecastData", where0, list)
        times, values, steps = [], [], []
        for i, item in enumerate(data or []):
            where = f"{where0}.forecastData[{i}]"
            t = parse_timestamp(body, body.field(item, "timestamp", where), f"{where}.timestamp")
            v = parse_number(body, body.field(item, "value", where), f"{where}.value", nullable=False)
            minutes = body.field(item, "duration", where, (int, float), optional=True)
            if minutes:
                steps.append(float(minutes) * 60)
            if t is not None:
                times.append(t)
                values.append(v)
        return Points(np.asarray(times, dtype=float), np.asarray(values, dtype=float),
                      float(np.median(steps)) if steps else None, source)

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points:
        return self.forecast(zone) if series == "forecast" else self.emissions(zone, start, end)


__all__ = ["TOKEN_ENV", "URL_ENV", "CarbonAwareSdk", "parse_timespan"]
