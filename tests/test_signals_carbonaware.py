"""Carbon Aware SDK Web API adapter on loopback: success, auth failure, rate limit, timeout, malformed body,
outage. Bodies follow the SDK's documented EmissionsData and EmissionsForecast shapes.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.test_signals_http import FAST, LoopbackServer, Reply, Sleeps
from edgeplace.topology.errors import InputError
from edgeplace.topology.signals.cache import SignalCache, SignalWarning
from edgeplace.topology.signals.fetch import fetch_intensity
from edgeplace.topology.signals.http import RetryPolicy, ServiceAuthError, ServiceUnavailable
from edgeplace.topology.signals.series import SlotGrid
from edgeplace.topology.signals.services import ServiceConfig
from edgeplace.topology.signals.services.carbonaware import CarbonAwareSdk, parse_timespan

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 24, 60)
RATINGS = [300.0 + h for h in range(24)]


def emissions(values=RATINGS, start=START, location="westeurope"):
    """EmissionsData every 30 min, both halves of hour h at values[h]; .NET writes 7 fractional digits."""
    return [{"location": location, "time": (start + timedelta(minutes=30 * k)).strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00"),
             "rating": values[k // 2], "duration": "00:30:00"} for k in range(2 * len(values))]


def forecast_body(values=RATINGS, start=START, location="westeurope"):
    data = [{"location": location, "timestamp": (start + timedelta(hours=h)).isoformat(), "duration": 60, "value": v}
            for h, v in enumerate(values)]
    return [{"generatedAt": "2026-06-20T23:55:00+00:00", "requestedAt": "2026-06-20T23:58:00+00:00",
             "location": location, "dataStartAt": data[0]["timestamp"], "dataEndAt": data[-1]["timestamp"],
             "windowSize": 60, "optimalDataPoints": [data[0]], "forecastData": data}]


def adapter(srv, *, env=None, kind="marginal", sleeps=None, policy: RetryPolicy = FAST):
    return CarbonAwareSdk(ServiceConfig(base_url=srv.url, env=env or {}, policy=policy, intensity_kind=kind,
                                        sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0)))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def test_success_emissions_and_forecast(server, tmp_path):
    server.script("/emissions/bylocation", Reply(200, emissions()))
    [series] = fetch_intensity(adapter(server), {"EU": "westeurope"}, GRID, cache=SignalCache(tmp_path))
    np.testing.assert_allclose(series.values, RATINGS)
    assert series.intensity_kind == "marginal"
    assert server.seen[0].query == {"location": ["westeurope"], "time": ["2026-06-21T00:00:00Z"],
                                    "toTime": ["2026-06-22T00:00:00Z"]}
    server.script("/emissions/forecasts/current", Reply(200, forecast_body()))
    [fc] = fetch_intensity(adapter(server, kind="average"), {"EU": "westeurope"}, GRID, series="forecast")
    assert (fc.series, fc.intensity_kind) == ("forecast", "average")
    np.testing.assert_allclose(fc.values, RATINGS)


def test_the_kind_must_be_said_and_the_url_given(server):
    with pytest.raises(InputError, match="intensity_kind: say which kind"):
        adapter(server, kind=None)
    with pytest.raises(InputError, match="CARBON_AWARE_API_URL: is not set"):
        CarbonAwareSdk(ServiceConfig(env={}, intensity_kind="average"))


def test_auth_failure_with_a_gateway_token(server):
    server.script("/emissions/bylocation", Reply(401, {"title": "Unauthorized", "status": 401}))
    with pytest.raises(ServiceAuthError, match="(?s)Unauthorized.*CARBON_AWARE_API_TOKEN"):
        adapter(server, env={"CARBON_AWARE_API_TOKEN": "gw"}).emissions("westeurope", GRID.start, GRID.end)
    assert server.seen[0].headers["authorization"] == "Bearer gw"


def test_validation_problem_is_a_request_error(server):
    server.script("/emissions/bylocation", Reply(400, {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                                                       "title": "One or more validation errors occurred.", "status": 400,
                                                       "detail": "location 'nowhere' is not supported"}))
    with pytest.raises(InputError, match="location 'nowhere' is not supported"):
        adapter(server).emissions("nowhere", GRID.start, GRID.end)


def test_rate_limit_then_success(server):
    sleeps = Sleeps()
    server.script("/emissions/bylocation", Reply(429, "", {"Retry-After": "2"}), Reply(200, emissions()))
    [series] = fetch_intensity(adapter(server, sleeps=sleeps), {"EU": "westeurope"}, GRID)
    assert sleeps == [2.0]
    np.testing.assert_allclose(series.values, RATINGS)


def test_timeout(server):
    server.script("/emissions/forecasts/current", Reply(stall_s=5))
    with pytest.raises(ServiceUnavailable, match="timeout"):
        adapter(server, policy=RetryPolicy(attempts=2, timeout_s=0.25, base_delay_s=0.01)).forecast("westeurope")


@pytest.mark.parametrize("body, message", [
    ("{", "not JSON"),
    ({"location": "westeurope"}, "should be a list of emissions data"),
    ([{"location": "westeurope", "time": "2026-06-21T00:00:00Z", "rating": None}], r"\[0\]\.rating: should be a number"),
    ([{"location": "x", "time": "2026-06-21T00:00:00Z", "rating": 1.0, "duration": "5 min"}],
     r"\[0\]\.duration: '5 min' is not a TimeSpan"),
])
def test_malformed_body(server, body, message):
    server.script("/emissions/bylocation", Reply(200, body))
    with pytest.raises(InputError, match=message):
        fetch_intensity(adapter(server), {"EU": "westeurope"}, GRID)


def test_outage_falls_back_to_the_cache(server, tmp_path):
    cache = SignalCache(tmp_path)
    server.script("/emissions/bylocation", Reply(200, emissions()))
    fetch_intensity(adapter(server), {"EU": "westeurope"}, GRID, cache=cache)
    server.script("/emissions/bylocation", Reply(503, {"title": "Service Unavailable"}))
    with pytest.warns(SignalWarning, match="unreachable"):
        [series] = fetch_intensity(adapter(server), {"EU": "westeurope"}, GRID, cache=cache)
    np.testing.assert_allclose(series.values, RATINGS)
    # The cache keeps kinds apart: an average-configured adapter finds nothing for the marginal series.
    with pytest.raises(InputError, match="nothing is cached"):
        fetch_intensity(adapter(server, kind="average"), {"EU": "westeurope"}, GRID, cache=cache, offline=True)


@pytest.mark.parametrize("text, seconds", [("00:05:00", 300), ("01:00:00", 3600), ("1.00:00:00", 86400),
                                           ("00:00:01.5", 1.5), ("5", None)])
def test_timespan(text, seconds):
    assert parse_timespan(text) == seconds
