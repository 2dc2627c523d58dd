"""GB carbon intensity API adapter on loopback: success (national, regional), auth failure, rate limit,
timeout, malformed body, outage. Bodies follow the documented shapes of api.carbonintensity.org.uk.
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
from edgeplace.topology.signals.services.ukgrid import UkCarbonIntensity, parse_zone

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 24, 60)
NATIONAL = "/intensity/2026-06-21T00:00Z/2026-06-22T00:00Z"
REGIONAL = "/regional/intensity/2026-06-21T00:00Z/2026-06-22T00:00Z/regionid/13"


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ")


def half_hours(actual, forecast, start=START):
    """48 half-hour periods; `actual` may hold None (not yet measured)."""
    return [{"from": fmt(start + timedelta(minutes=30 * i)), "to": fmt(start + timedelta(minutes=30 * (i + 1))),
             "intensity": {"forecast": f, "actual": a, "index": "moderate"}}
            for i, (a, f) in enumerate(zip(actual, forecast))]


# Half-hours alternate 200 / 220 actual: the hourly mean is 210. Forecast 250 flat.
ACTUAL = [200 if i % 2 == 0 else 220 for i in range(48)]
FORECAST = [250] * 48


def regional_body(values, as_list=False):
    region = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London",
              "data": [{"from": fmt(START + timedelta(minutes=30 * i)), "to": fmt(START + timedelta(minutes=30 * (i + 1))),
                        "intensity": {"forecast": v, "index": "low"},
                        "generationmix": [{"fuel": "gas", "perc": 43.6}, {"fuel": "wind", "perc": 56.4}]}
                       for i, v in enumerate(values)]}
    return {"data": [region] if as_list else region}


def adapter(srv, *, sleeps=None, policy: RetryPolicy = FAST):
    return UkCarbonIntensity(ServiceConfig(base_url=srv.url, env={}, policy=policy,
                                           sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0)))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def test_success_national_actual_and_forecast(server, tmp_path):
    server.script(NATIONAL, Reply(200, {"data": half_hours(ACTUAL, FORECAST)}))
    [actual] = fetch_intensity(adapter(server), {"GB": "national"}, GRID, cache=SignalCache(tmp_path))
    np.testing.assert_allclose(actual.values, 210.0)  # (200 + 220) / 2 per hour
    [forecast] = fetch_intensity(adapter(server), {"GB": "national"}, GRID, series="forecast")
    np.testing.assert_allclose(forecast.values, 250.0)
    assert (actual.series, forecast.series, actual.intensity_kind) == ("actual", "forecast", "average")
    assert server.paths() == [NATIONAL, NATIONAL]


@pytest.mark.parametrize("as_list", [False, True])
def test_success_regional_forecast(server, as_list):
    server.script(REGIONAL, Reply(200, regional_body([120] * 48, as_list)))
    [series] = fetch_intensity(adapter(server), {"LON": "regionid:13"}, GRID, series="forecast")
    np.testing.assert_allclose(series.values, 120.0)


def test_regional_actual_is_refused_not_faked(server):
    with pytest.raises(InputError, match="forecast only"):
        fetch_intensity(adapter(server), {"LON": "13"}, GRID)
    assert server.seen == []


def test_missing_actuals_are_gaps():
    # The last two hours not yet measured (null): 2 h is the fill limit, so 3 h must be refused.
    with LoopbackServer() as srv:
        srv.script(NATIONAL, Reply(200, {"data": half_hours(ACTUAL[:42] + [None] * 6, FORECAST)}))
        with pytest.raises(InputError, match="ends at 2026-06-21T21:00:00Z"):
            fetch_intensity(adapter(srv), {"GB": "GB"}, GRID)


def test_auth_failure(server):
    # The API needs no credentials; a gateway in front of it may still say 401.
    server.script(NATIONAL, Reply(401, {"error": {"code": "401", "message": "unauthorised"}}))
    with pytest.raises(ServiceAuthError, match="HTTP 401"):
        adapter(server).national(GRID.start, GRID.end, "actual")


def test_rate_limit_then_success(server):
    sleeps = Sleeps()
    server.script(NATIONAL, Reply(429, "", {"Retry-After": "1"}), Reply(200, {"data": half_hours(ACTUAL, FORECAST)}))
    [series] = fetch_intensity(adapter(server, sleeps=sleeps), {"GB": "national"}, GRID)
    assert sleeps == [1.0]
    np.testing.assert_allclose(series.values, 210.0)


def test_timeout(server):
    server.script(NATIONAL, Reply(stall_s=5))
    with pytest.raises(ServiceUnavailable, match="timeout"):
        adapter(server, policy=RetryPolicy(attempts=2, timeout_s=0.25, base_delay_s=0.01)).national(
            GRID.start, GRID.end, "actual")


@pytest.mark.parametrize("body, message", [
    ("Service Unavailable", "not JSON"),
    ({"data": {"from": "x"}}, "data: should be a list"),
    ({"data": [{"from": "2026-06-21T00:00Z", "intensity": 200}]}, r"data\[0\]\.intensity: should be an object"),
])
def test_malformed_body(server, body, message):
    server.script(NATIONAL, Reply(200, body))
    with pytest.raises(InputError, match=message):
        fetch_intensity(adapter(server), {"GB": "national"}, GRID)


def test_outage_falls_back_to_the_cache(server, tmp_path):
    cache = SignalCache(tmp_path)
    server.script(NATIONAL, Reply(200, {"data": half_hours(ACTUAL, FORECAST)}))
    fetch_intensity(adapter(server), {"GB": "national"}, GRID, cache=cache)
    server.script(NATIONAL, Reply(500, "internal error"))
    with pytest.warns(SignalWarning, match="unreachable"):
        [series] = fetch_intensity(adapter(server), {"GB": "national"}, GRID, cache=cache)
    np.testing.assert_allclose(series.values, 210.0)


@pytest.mark.parametrize("zone, region", [("national", None), ("GB", None), ("13", 13), ("regionid:1", 1)])
def test_zones(zone, region):
    assert parse_zone(zone) == region


def test_unknown_zone():
    with pytest.raises(InputError, match="region id 1..17"):
        parse_zone("london")
