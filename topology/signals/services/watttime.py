"""WattTime API v3: marginal operating emissions rate (MOER) of a grid region.

Requests:

    GET /login                      HTTP basic auth ($WATTTIME_USERNAME, $WATTTIME_PASSWORD)
                                    -> {"token": "..."} (valid 30 minutes)
    GET /v3/signal-index?region=CAISO_NORTH&signal_type=co2_moer
    GET /v3/forecast?region=..&signal_type=co2_moer&horizon_hours=24      (0..72)
    GET /v3/historical?region=..&signal_type=co2_moer&start=..&end=..     (<= 32 days a request)
    GET /v3/forecast/historical?region=..&signal_type=co2_moer&start=..&end=..
                                    the forecasts generated in [start, end] (one day a request)
        -> {"data": [{"generated_at": "...", "forecast": [{"point_time": "...", "value": 870.2}, ...]}, ...],
            "meta": {..., "generated_at_period_seconds": 300}}
    header on /v3: Authorization: Bearer <token>

Responses: {"data": [{"point_time": "2026-06-21T00:00:00+00:00", "value": 870.2}, ...],
            "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
                     "data_point_period_seconds": 300, "generated_at": "...", "model": {...},
                     "warnings": [...]}}
signal-index has the same shape with units "percentile" (0 = cleanest of
the recent past, 100 = dirtiest): a rank, not an intensity, so it is not a
grid_intensity series.

co2_moer is *marginal* (what one more MWh emits); co2_aoer is the *average*
(historical only). Values in lbs/MWh are converted with the factor of
`edgeplace.topology.load.SIGNAL_UNITS` (453.592 g / 1000 kWh). A 401 with a cached
token logs in once more (tokens expire after 30 minutes).
"""

from __future__ import annotations

import base64
from datetime import datetime

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_UNITS
from edgeplace.topology.signals.http import ServiceAuthError
from edgeplace.topology.signals.series import Points, iso
from edgeplace.topology.signals.services import (Body, ServiceConfig, concat, parse_timestamp, require, series_points,
                                                 windows)
from edgeplace.topology.spec import SignalKind

USER_ENV = "WATTTIME_USERNAME"
PASSWORD_ENV = "WATTTIME_PASSWORD"
URL_ENV = "WATTTIME_API_URL"
DEFAULT_URL = "https://api.watttime.org"
MAX_HISTORY_DAYS = 31
MAX_HORIZON_HOURS = 72
#: meta.units -> factor to gCO2/kWh
UNITS = {
    "lbs_co2_per_mwh": SIGNAL_UNITS[SignalKind.grid_intensity]["lb/MWh"],
    "kg_co2_per_mwh": 1.0,
    "g_co2_per_kwh": 1.0,
}
SIGNAL_TYPES = {"co2_moer": "marginal", "co2_aoer": "average"}


class WattTime:
    name = "watttime"
    label = "WattTime"

    def __init__(self, config: ServiceConfig):
        if config.signal_type not in SIGNAL_TYPES:
            raise InputError(self.label, [Problem("signal_type", f"{config.signal_type!r} is not a grid intensity signal; "
                                                                 f"use co2_moer (marginal) or co2_aoer (average)")])
        self.signal_type = config.signal_type
        self.intensity_kind = SIGNAL_TYPES[config.signal_type]
        #: WattTime's rates are power-plant stack emissions (direct), not lifecycle.
        self.factor_type = "direct"
        self.base = (config.base_url or config.env.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.env = config.env
        self.now = config.now
        self.http = config.client(self.label, auth_hint=f"check {USER_ENV} and {PASSWORD_ENV}",
                                  plan_hint="WattTime's /v3 data outside CAISO_NORTH needs a subscription that covers "
                                            "the region (GET /v3/my-access lists yours)")
        self._token: str | None = None

    def login(self) -> str:
        user = require(self.env, USER_ENV, self.label, "user name")
        password = require(self.env, PASSWORD_ENV, self.label, "password")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        url = f"{self.base}/login"
        # /login checks the user name and password only: a 403 there is the credentials, not the plan.
        doc = self.http.get_json(url, headers={"Authorization": f"Basic {basic}"}, auth_statuses=(401, 403))
        body = Body(f"{self.label} response from {url}")
        token = body.field(doc, "token", "", str)
        body.check()
        self._token = token
        return token

    def _get(self, path: str, params: dict[str, str]):
        """GET /v3/<path> with the bearer token; a refused cached token is renewed once (they expire)."""
        url = f"{self.base}/v3/{path}"
        fresh = self._token is None
        token = self._token or self.login()
        try:
            return url, self.http.get_json(url, params, headers={"Authorization": f"Bearer {token}"})
        except ServiceAuthError:
            self._token = None
            if fresh:
                raise
        token = self.login()
        return url, self.http.get_json(url, params, headers={"Authorization": f"Bearer {token}"})

    def _data(self, url: str, doc, region: str, *, intensity: bool = True) -> Points:
        body = Body(f"{self.label} response from {url}")
        meta = body.field(doc, "meta", "", dict)
        units = body.field(meta, "units", "meta", str) if meta is not None else None
        step = body.field(meta, "data_point_period_seconds", "meta", (int, float), optional=True) if meta is not None else None
        factor = 1.0
        if intensity and units is not None:
            if units not in UNITS:
                body.bad("meta.units", f"{units!r} is not an intensity unit we read ({', '.join(UNITS)})")
            else:
                factor = UNITS[units]
        data = body.field(doc, "data", "", list)
        points = series_points(body, data if data is not None else [], "data", "point_time", "value", factor=factor,
                               source=f"{self.label} {self.signal_type} region {region}",
                               step_s=float(step) if step else None)
        body.check()
        return points

    def signal_index(self, region: str) -> Points:
        """The latest percentile (0..100) of co2_moer: a rank for display, not gCO2/kWh."""
        url, doc = self._get("signal-index", {"region": region, "signal_type": "co2_moer"})
        return self._data(url, doc, region, intensity=False)

    def forecast(self, region: str, horizon_hours: int = 24) -> Points:
        if self.signal_type != "co2_moer":
            raise InputError(self.label, [Problem("signal_type", f"WattTime forecasts co2_moer only; {self.signal_type} "
                                                                 f"is history only (use --series actual)")])
        hours = max(0, min(MAX_HORIZON_HOURS, int(horizon_hours)))
        url, doc = self._get("forecast", {"region": region, "signal_type": self.signal_type, "horizon_hours": str(hours)})
        return self._data(url, doc, region)

    def historical(self, region: str, start: datetime, end: datetime) -> Points:
        parts = []
        for a, b in windows(start, end, MAX_HISTORY_DAYS):
            url, doc = self._get("historical", {"region": region, "signal_type": self.signal_type,
                                                "start": iso(a), "end": iso(b)})
            parts.append(self._data(url, doc, region))
        points = concat(parts, f"{self.label} {self.signal_type} region {region}")
        return Points(points.times_s, points.values, parts[0].step_s if parts else None, points.source)

    def historical_forecasts(self, region: str, start: datetime, end: datetime) -> list[tuple[float, Points]]:
        """Every co2_moer forecast generated in [start, end): (generated_at epoch s, its points [gCO2/kWh]),
        oldest first. One request per day (WattTime's limit for this endpoint)."""
        if self.signal_type != "co2_moer":
            raise InputError(self.label, [Problem("signal_type", "WattTime forecasts co2_moer only")])
        out: dict[float, Points] = {}
        for a, b in windows(start, end, 1):
            url, doc = self._get("forecast/historical", {"region": region, "signal_type": self.signal_type,
                                                         "start": iso(a), "end": iso(b)})
            body = Body(f"{self.label} response from {url}")
            meta = body.field(doc, "meta", "", dict)
            units = body.field(meta, "units", "meta", str) if meta is not None else None
            step = body.field(meta, "data_point_period_seconds", "meta", (int, float), optional=True) if meta else None
            if units is not None and units not in UNITS:
                body.bad("meta.units", f"{units!r} is not an intensity unit we read ({', '.join(UNITS)})")
            factor = UNITS.get(units or "", 1.0)
            for i, issued in enumerate(body.field(doc, "data", "", list) or []):
                where = f"data[{i}]"
                at = parse_timestamp(body, body.field(issued, "generated_at", where), f"{where}.generated_at")
                points = series_points(body, body.field(issued, "forecast", where, list) or [], f"{where}.forecast",
                                       "point_time", "value", factor=factor, step_s=float(step) if step else None,
                                       source=f"{self.label} co2_moer forecast region {region}")
                if at is not None and at < end.timestamp():
                    out[at] = points
            body.check()
        return sorted(out.items())

    def points(self, zone: str, start: datetime, end: datetime, series: str) -> Points:
        if series == "forecast":
            hours = int(-(-(end - self.now()).total_seconds() // 3600))  # ceil: through the horizon's end
            return self.forecast(zone, hours)
        return self.historical(zone, start, end)


__all__ = ["DEFAULT_URL", "PASSWORD_ENV", "SIGNAL_TYPES", "URL_ENV", "USER_ENV", "WattTime"]
