"""The four carbon-intensity services against their *published* response examples.

Each fixture below is written field for field after the service's own documented
example or schema (every field, also those edgeplace does not read; example values
where the documentation gives them), with its source in a comment. The clients
must read them, check what they rely on (zone, units, shape), surface what the
service flags (estimated values), and give every documented error status a
message of its own: bad credentials (401) are not a plan restriction (403), and
"no data" (204) is not a broken body.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.test_signals_http import FAST, LoopbackServer, Reply, Sleeps
from edgeplace.topology.errors import InputError
from edgeplace.topology.signals.fetch import fetch_intensity
from edgeplace.topology.signals.http import (ServiceAuthError, ServiceNoData, ServicePlanError, ServiceRequestError,
                                             ServiceUnavailable)
from edgeplace.topology.signals.series import SlotGrid
from edgeplace.topology.signals.services import ServiceConfig
from edgeplace.topology.signals.services.carbonaware import CarbonAwareSdk
from edgeplace.topology.signals.services.electricitymaps import ElectricityMaps
from edgeplace.topology.signals.services.ukgrid import UkCarbonIntensity
from edgeplace.topology.signals.services.watttime import WattTime

LB = 0.453592  # gCO2/kWh per lb/MWh


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def config(srv, **kw) -> ServiceConfig:
    return ServiceConfig(base_url=srv.url, policy=FAST, sleep=Sleeps(), rng=random.Random(0), **kw)


# ---------------------------------------------------------------------------
# Electricity Maps API v3 (https://static.electricitymaps.com/api/docs/index.html, "Carbon intensity"
# endpoints: latest / history / past-range / forecast response examples; the estimation fields as
# the API returns them, e.g. thegreenwebfoundation/co2.js __mocks__/electricityMapsApi.js)

EM_LATEST = {
    "zone": "DE",
    "carbonIntensity": 302,
    "datetime": "2019-05-21T00:00:00.000Z",
    "updatedAt": "2019-05-21T00:00:00.000Z",
    "createdAt": "2019-05-21T00:00:00.000Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": False,
    "estimationMethod": None,
}
EM_HISTORY = {"zone": "DE", "history": [
    {**EM_LATEST, "carbonIntensity": 302, "datetime": "2019-05-21T00:00:00.000Z"},
    {**EM_LATEST, "carbonIntensity": 291, "datetime": "2019-05-21T01:00:00.000Z",
     "isEstimated": True, "estimationMethod": "TIME_SLICER_AVERAGE"},
]}
EM_FORECAST = {
    "zone": "DE",
    "forecast": [{"carbonIntensity": 326, "datetime": "2019-05-21T00:00:00.000Z"},
                 {"carbonIntensity": 335, "datetime": "2019-05-21T01:00:00.000Z"}],
    "updatedAt": "2019-05-21T00:00:00.000Z",
}
EM_START = datetime(2019, 5, 21, tzinfo=timezone.utc)
EM_TOKEN = {"ELECTRICITYMAPS_API_TOKEN": "em-token"}


def em(srv, now=EM_START + timedelta(hours=1, minutes=30)):
    return ElectricityMaps(config(srv, env=EM_TOKEN, now=lambda: now))


def test_electricitymaps_published_bodies(server):
    server.script("/v3/carbon-intensity/latest", Reply(200, EM_LATEST))
    assert em(server).latest("DE").values.tolist() == [302.0]
    server.script("/v3/carbon-intensity/history", Reply(200, EM_HISTORY))
    [series] = fetch_intensity(em(server), {"DE": "DE"}, SlotGrid(EM_START, 2, 60))
    assert series.values.tolist() == [302.0, 291.0]
    # Estimated values are said with the series (the CLI prints a series' notes under it).
    assert "1 of 2 value(s) are the service's estimates (TIME_SLICER_AVERAGE), not measurements" in series.notes[0]
    # Never the caller's IP location as a fallback zone.
    assert all(s.query["disableCallerLookup"] == ["true"] for s in server.seen)


def test_electricitymaps_forecast_asks_for_the_horizon_and_checks_the_zone(server):
    server.script("/v3/carbon-intensity/forecast", Reply(200, EM_FORECAST))
    points = em(server, now=EM_START).points("DE", EM_START, EM_START + timedelta(hours=2), "forecast")
    assert points.values.tolist() == [326.0, 335.0]
    assert server.seen[-1].query["horizonHours"] == ["6"]
    em(server, now=EM_START).points("DE", EM_START, EM_START + timedelta(hours=30), "forecast")
    assert server.seen[-1].query["horizonHours"] == ["48"]
    with pytest.raises(InputError, match="forecasts at most 72 h ahead; the horizon ends 96 h from now"):
        em(server, now=EM_START).points("DE", EM_START, EM_START + timedelta(hours=96), "forecast")
    server.script("/v3/carbon-intensity/forecast", Reply(200, {**EM_FORECAST, "zone": "FR"}))
    with pytest.raises(InputError, match="zone: the service answered for zone 'FR', not 'DE'"):
        em(server, now=EM_START).forecast("DE")


# ---------------------------------------------------------------------------
# WattTime API v3 (https://docs.watttime.org: /v3/historical and /v3/forecast response samples; the
# historical-forecast shape as WattTime's own client reads it, WattTime/watttime-python-client
# watttime/api.py `get_historical_forecast_pandas`: data[].generated_at, data[].forecast[])

WT_META = {
    "region": "CAISO_NORTH",
    "signal_type": "co2_moer",
    "model": {"date": "2023-03-01", "type": "binned_regression"},
    "data_point_period_seconds": 300,
    "units": "lbs_co2_per_mwh",
    "warnings": [],
}
WT_HISTORICAL = {
    "data": [{"point_time": "2023-06-01T00:00:00+00:00", "value": 936.0},
             {"point_time": "2023-06-01T00:05:00+00:00", "value": 936.0}],
    "meta": {**WT_META, "generated_at_period_seconds": 300, "generated_at": "2023-06-01T00:10:00+00:00"},
}
WT_FORECAST_HISTORICAL = {
    "data": [
        {"generated_at": "2023-06-01T00:00:00+00:00",
         "forecast": [{"point_time": "2023-06-01T00:00:00+00:00", "value": 870.0},
                      {"point_time": "2023-06-01T00:05:00+00:00", "value": 880.0}]},
        {"generated_at": "2023-06-01T00:05:00+00:00",
         "forecast": [{"point_time": "2023-06-01T00:05:00+00:00", "value": 875.0},
                      {"point_time": "2023-06-01T00:10:00+00:00", "value": 890.0}]},
    ],
    "meta": {**WT_META, "generated_at_period_seconds": 300},
}
WT_START = datetime(2023, 6, 1, tzinfo=timezone.utc)
WT_CREDENTIALS = {"WATTTIME_USERNAME": "user", "WATTTIME_PASSWORD": "secret"}


def wt(srv):
    srv.script("/login", Reply(200, {"token": "jwt"}))
    return WattTime(config(srv, env=WT_CREDENTIALS, now=lambda: WT_START + timedelta(days=2)))


def test_watttime_published_bodies(server):
    server.script("/v3/historical", Reply(200, WT_HISTORICAL))
    points = wt(server).historical("CAISO_NORTH", WT_START, WT_START + timedelta(minutes=10))
    np.testing.assert_allclose(points.values, [936.0 * LB] * 2)
    assert points.step_s == 300


def test_watttime_historical_forecasts(server):
    server.script("/v3/forecast/historical", Reply(200, WT_FORECAST_HISTORICAL))
    issued = wt(server).historical_forecasts("CAISO_NORTH", WT_START, WT_START + timedelta(hours=1))
    assert [at for at, _ in issued] == [WT_START.timestamp(), (WT_START + timedelta(minutes=5)).timestamp()]
    np.testing.assert_allclose(issued[1][1].values, [875.0 * LB, 890.0 * LB])
    seen = server.seen[-1]
    assert (seen.path, seen.query["region"], seen.query["signal_type"]) == ("/v3/forecast/historical", ["CAISO_NORTH"],
                                                                            ["co2_moer"])
    assert seen.query["start"] == ["2023-06-01T00:00:00Z"] and seen.headers["authorization"] == "Bearer jwt"


# ---------------------------------------------------------------------------
# GB carbon intensity API (https://carbon-intensity.github.io/api-definitions/, "Intensity" and
# "Regional" examples; error object {"error": {"code", "message"}})

UK_NATIONAL = {"data": [{"from": "2018-01-20T12:00Z", "to": "2018-01-20T12:30Z",
                         "intensity": {"forecast": 266, "actual": 263, "index": "moderate"}}]}
UK_REGIONAL = {"data": {
    "regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
    "data": [{"from": "2018-01-20T12:00Z", "to": "2018-01-20T12:30Z",
              "intensity": {"forecast": 266, "index": "moderate"},
              "generationmix": [{"fuel": "gas", "perc": 43.6}, {"fuel": "coal", "perc": 0.7},
                                {"fuel": "biomass", "perc": 4.2}, {"fuel": "nuclear", "perc": 17.6},
                                {"fuel": "hydro", "perc": 2.2}, {"fuel": "imports", "perc": 6.5},
                                {"fuel": "other", "perc": 0.3}, {"fuel": "wind", "perc": 6.8},
                                {"fuel": "solar", "perc": 18.1}]}]}}
UK_ERROR = {"error": {"code": "400 Bad Request",
                      "message": "Please enter a valid start datetime in ISO8601 format YYYY-MM-DDThh:mmZ e.g. 2017-08-25T12:35Z"}}
UK_START = datetime(2018, 1, 20, 12, tzinfo=timezone.utc)


def test_ukgrid_published_bodies(server):
    server.script("/intensity/2018-01-20T12:00Z/2018-01-20T12:30Z", Reply(200, UK_NATIONAL))
    uk = UkCarbonIntensity(config(server))
    assert uk.national(UK_START, UK_START + timedelta(minutes=30), "actual").values.tolist() == [263.0]
    assert uk.national(UK_START, UK_START + timedelta(minutes=30), "forecast").values.tolist() == [266.0]
    server.script("/regional/intensity/2018-01-20T12:00Z/2018-01-20T12:30Z/regionid/13", Reply(200, UK_REGIONAL))
    assert uk.regional(13, UK_START, UK_START + timedelta(minutes=30)).values.tolist() == [266.0]


# ---------------------------------------------------------------------------
# GSF Carbon Aware SDK Web API (Green-Software-Foundation/carbon-aware-sdk:
# casdk-docs/docs/tutorial-basics/carbon-aware-webapi.md examples; src/CarbonAware.WebApi/src/Models/
# EmissionsForecastDTO.cs and EmissionsDataDTO.cs; Controllers/CarbonAwareController.cs for the statuses;
# Filters/HttpResponseExceptionFilter.cs for the error body)

CAS_EMISSIONS = [{"location": "eastus", "time": "2022-05-17T20:45:11.5092741+00:00", "rating": 70, "duration": "00:05:00"}]
CAS_POINT = {"location": "IE", "timestamp": "2022-07-19T14:00:00+00:00", "duration": 10, "value": 532.02293146}
CAS_FORECAST = [{
    "requestedAt": "2022-07-19T13:37:49+00:00",
    "generatedAt": "2022-07-19T13:35:00+00:00",
    "location": "northeurope",
    "dataStartAt": "2022-07-19T14:00:00Z",
    "dataEndAt": "2022-07-19T14:20:00Z",
    "windowSize": 10,
    "optimalDataPoints": [{"location": "IE", "timestamp": "2022-07-19T14:10:00+00:00", "duration": 10,
                           "value": 448.4451043375}],
    "forecastData": [CAS_POINT,
                     {**CAS_POINT, "timestamp": "2022-07-19T14:10:00+00:00", "value": 448.4451043375}],
}]
CAS_BATCH = [
    {**CAS_FORECAST[0], "generatedAt": "2022-06-01T12:00:00+00:00", "requestedAt": "2022-06-01T12:01:00+00:00",
     "location": "eastus", "dataStartAt": "2022-06-01T14:00:00Z", "dataEndAt": "2022-06-01T18:00:00Z", "windowSize": 30},
    {**CAS_FORECAST[0], "generatedAt": "2022-06-13T06:05:00+00:00", "requestedAt": "2022-06-13T06:05:00+00:00",
     "location": "eastus", "dataStartAt": "2022-06-13T08:00:00Z", "dataEndAt": "2022-06-13T10:00:00Z", "windowSize": 30},
]
CAS_PROBLEM = {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "ArgumentException",
               "status": 400, "detail": "Invalid location eastus2", "traceId": "00-0af7651916cd43dd-01", "errors": {}}


def cas(srv, kind="marginal"):
    return CarbonAwareSdk(config(srv, env={}, intensity_kind=kind))


def test_carbonaware_published_bodies(server):
    server.script("/emissions/bylocation", Reply(200, CAS_EMISSIONS))
    points = cas(server).emissions("eastus", datetime(2022, 5, 17, 20, 45, tzinfo=timezone.utc),
                                   datetime(2022, 5, 17, 20, 50, tzinfo=timezone.utc))
    assert points.values.tolist() == [70.0] and points.step_s == 300
    server.script("/emissions/forecasts/current", Reply(200, CAS_FORECAST))
    forecast = cas(server).forecast("northeurope")
    assert forecast.values.tolist() == [532.02293146, 448.4451043375] and forecast.step_s == 600


def test_carbonaware_historical_forecasts_by_batch(server):
    server.script("/emissions/forecasts/batch", Reply(200, CAS_BATCH))
    asked = [datetime(2022, 6, 1, 12, 1, tzinfo=timezone.utc), datetime(2022, 6, 13, 6, 5, tzinfo=timezone.utc)]
    issued = cas(server).historical_forecasts("eastus", asked)
    assert [at for at, _ in issued] == [datetime(2022, 6, 1, 12, tzinfo=timezone.utc).timestamp(),
                                        datetime(2022, 6, 13, 6, 5, tzinfo=timezone.utc).timestamp()]
    seen = server.seen[-1]
    assert seen.method == "POST" and seen.json() == [{"requestedAt": "2022-06-01T12:01:00Z", "location": "eastus"},
                                                     {"requestedAt": "2022-06-13T06:05:00Z", "location": "eastus"}]


# ---------------------------------------------------------------------------
# Every documented error status gets its own message.

ERRORS = [
    # service, path, status, body (as documented or as the service sends it), error type, message
    ("electricitymaps", "/v3/carbon-intensity/history", 401, {"message": "Invalid auth-token"},
     ServiceAuthError, r"HTTP 401: the service refused the credentials \(Invalid auth-token\); check ELECTRICITYMAPS_API_TOKEN"),
    # 403 is a plan restriction (zone or endpoint outside the token's plan); the API answers "Access denied".
    ("electricitymaps", "/v3/carbon-intensity/history", 403, "Access denied",
     ServicePlanError, r"HTTP 403: the credentials were accepted, but the account's plan does not include this request "
                       r"\(Access denied\); the token's plan lists the zones and endpoints"),
    ("electricitymaps", "/v3/carbon-intensity/history", 404, {"message": "Zone 'XX' does not exist."},
     ServiceRequestError, r"HTTP 404: the service has no such resource .*Zone 'XX' does not exist"),
    ("watttime", "/login", 403, {"error": "Invalid username or password"},
     ServiceAuthError, r"HTTP 403: the service refused the credentials \(Invalid username or password\); check WATTTIME_USERNAME"),
    ("watttime", "/v3/historical", 403,
     {"error": "Invalid scope. You do not have sufficient access to this resource."},
     ServicePlanError, r"HTTP 403: .*plan does not include this request \(Invalid scope.*\); WattTime's /v3 data outside "
                       r"CAISO_NORTH needs a subscription"),
    ("watttime", "/v3/historical", 400, {"error": "Invalid region", "message": "region FOO not found"},
     ServiceRequestError, r"HTTP 400: the service rejected the request as invalid: region FOO not found; Invalid region"),
    ("ukgrid", "/intensity/2018-01-20T12:00Z/2018-01-20T12:30Z", 400, UK_ERROR,
     ServiceRequestError, r"HTTP 400: the service rejected the request as invalid: Please enter a valid start datetime"),
    ("carbonaware", "/emissions/bylocation", 204, b"",
     ServiceNoData, r"HTTP 204: the service has no data for this request \(No Content\)"),
    ("carbonaware", "/emissions/bylocation", 400, CAS_PROBLEM,
     ServiceRequestError, r"HTTP 400: the service rejected the request as invalid: ArgumentException; Invalid location eastus2"),
    ("carbonaware", "/emissions/forecasts/current", 501,
     {**CAS_PROBLEM, "title": "NotImplementedException", "status": 501, "detail": "The data source does not support forecasts"},
     ServiceRequestError, r"HTTP 501: the service does not implement this for its configured data source: NotImplementedException"),
    ("carbonaware", "/emissions/forecasts/current", 500, {"title": "InternalServerError", "status": 500},
     ServiceUnavailable, r"HTTP 500 InternalServerError"),
]


def _call(name, srv, path):
    if name == "electricitymaps":
        return lambda: em(srv).history("DE")
    if name == "watttime":
        client = WattTime(config(srv, env=WT_CREDENTIALS))
        return lambda: client.historical("CAISO_NORTH", WT_START, WT_START + timedelta(hours=1))
    if name == "ukgrid":
        return lambda: UkCarbonIntensity(config(srv)).national(UK_START, UK_START + timedelta(minutes=30), "actual")
    if "bylocation" in path:
        return lambda: cas(srv).emissions("eastus", WT_START, WT_START + timedelta(hours=1))
    return lambda: cas(srv).forecast("eastus")


@pytest.mark.parametrize("name, path, status, body, error, message", ERRORS,
                         ids=[f"{e[0]}-{e[2]}-{e[1].split('/')[-1]}" for e in ERRORS])
def test_each_documented_error_status_has_its_own_message(server, name, path, status, body, error, message):
    server.script("/login", Reply(200, {"token": "jwt"}))
    server.script(path, Reply(status, body))
    with pytest.raises(error, match=message) as info:
        _call(name, server, path)()
    # Never the wrong diagnosis: a plan refusal is not blamed on the credentials, nor the other way round.
    if error is ServicePlanError:
        assert not isinstance(info.value, ServiceAuthError)
    if error is ServiceAuthError:
        assert "plan" not in str(info.value)
