"""WattTime v3 adapter on loopback: login, success, auth failure, rate limit, timeout, malformed body, outage.

Bodies follow the documented v3 shapes ({"data": [{point_time, value}], "meta": {...}}).
"""

from __future__ import annotations

import base64
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
from edgeplace.topology.signals.services.watttime import WattTime

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 24, 60)
CREDENTIALS = {"WATTTIME_USERNAME": "grid-user", "WATTTIME_PASSWORD": "pa:ss"}
LB_PER_MWH = 0.453592  # gCO2/kWh per lb/MWh (edgeplace.topology.load.SIGNAL_UNITS)


def moer(hour_values, start=START, period_s=300, signal_type="co2_moer", units="lbs_co2_per_mwh"):
    """5-minute points, each hour's twelve points at that hour's value."""
    data = [{"point_time": (start + timedelta(seconds=k * period_s)).isoformat(), "value": v}
            for h, v in enumerate(hour_values) for k in range(h * 3600 // period_s, (h + 1) * 3600 // period_s)]
    return {"data": data,
            "meta": {"data_point_period_seconds": period_s, "region": "CAISO_NORTH", "signal_type": signal_type,
                     "units": units, "warnings": [], "model": {"date": "2026-03-01", "type": "binned_regression"},
                     "generated_at_period_seconds": 300, "generated_at": start.isoformat()}}


HOURS = [800 + 10 * h for h in range(24)]  # lbs/MWh


def adapter(srv, *, env=CREDENTIALS, sleeps=None, policy: RetryPolicy = FAST, signal_type="co2_moer", now=START):
    return WattTime(ServiceConfig(base_url=srv.url, env=env, policy=policy, signal_type=signal_type, now=lambda: now,
                                  sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0)))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        srv.script("/login", Reply(200, {"token": "tok-1"}))
        yield srv


def test_success_login_then_historical_in_g_per_kwh(server, tmp_path):
    server.script("/v3/historical", Reply(200, moer(HOURS)))
    [series] = fetch_intensity(adapter(server), {"CA": "CAISO_NORTH"}, GRID, cache=SignalCache(tmp_path))
    # 800 lbs/MWh x 0.453592 = 362.87 gCO2/kWh; marginal, kept as such.
    np.testing.assert_allclose(series.values, np.array(HOURS) * LB_PER_MWH, rtol=1e-12)
    assert series.intensity_kind == "marginal"
    login, data = server.seen
    assert login.path == "/login"
    assert login.headers["authorization"] == "Basic " + base64.b64encode(b"grid-user:pa:ss").decode()
    assert data.headers["authorization"] == "Bearer tok-1"
    assert data.query == {"region": ["CAISO_NORTH"], "signal_type": ["co2_moer"],
                          "start": ["2026-06-21T00:00:00Z"], "end": ["2026-06-22T00:00:00Z"]}


def test_success_forecast_and_average_signal(server):
    server.script("/v3/forecast", Reply(200, moer(HOURS)))
    [series] = fetch_intensity(adapter(server), {"CA": "CAISO_NORTH"}, GRID, series="forecast")
    assert series.series == "forecast"
    assert server.seen[-1].query["horizon_hours"] == ["24"]
    server.script("/v3/historical", Reply(200, moer(HOURS, signal_type="co2_aoer")))
    [avg] = fetch_intensity(adapter(server, signal_type="co2_aoer"), {"CA": "CAISO"}, GRID)
    assert avg.intensity_kind == "average"
    with pytest.raises(InputError, match="co2_aoer is history only"):
        adapter(server, signal_type="co2_aoer").forecast("CAISO")


def test_signal_index_is_a_percentile_not_an_intensity(server):
    server.script("/v3/signal-index", Reply(200, moer([34], units="percentile") | {"data": [
        {"point_time": "2026-06-21T00:00:00+00:00", "value": 34.0}]}))
    points = adapter(server).signal_index("CAISO_NORTH")
    assert points.values.tolist() == [34.0]


def test_auth_failure(server):
    server.script("/login", Reply(403, {"error": "invalid credentials"}))
    with pytest.raises(ServiceAuthError, match="(?s)invalid credentials.*WATTTIME_USERNAME and WATTTIME_PASSWORD"):
        adapter(server).historical("CAISO_NORTH", GRID.start, GRID.end)
    with pytest.raises(InputError, match="WATTTIME_USERNAME: is not set"):
        adapter(server, env={}).historical("CAISO_NORTH", GRID.start, GRID.end)


def test_expired_token_logs_in_again(server):
    server.script("/login", Reply(200, {"token": "old"}), Reply(200, {"token": "new"}))
    server.script("/v3/historical", Reply(200, moer(HOURS)), Reply(401, {"error": "token expired"}), Reply(200, moer(HOURS)))
    wt = adapter(server)
    wt.historical("CAISO_NORTH", GRID.start, GRID.end)
    wt.historical("CAISO_NORTH", GRID.start, GRID.end)
    assert [(s.path, s.headers.get("authorization")) for s in server.seen if s.path != "/login"] == [
        ("/v3/historical", "Bearer old"), ("/v3/historical", "Bearer old"), ("/v3/historical", "Bearer new")]


def test_rate_limit_then_success(server):
    sleeps = Sleeps()
    server.script("/v3/historical", Reply(429, {"error": "rate limited"}, {"Retry-After": "3"}), Reply(200, moer(HOURS)))
    [series] = fetch_intensity(adapter(server, sleeps=sleeps), {"CA": "CAISO_NORTH"}, GRID)
    assert sleeps == [3.0]
    np.testing.assert_allclose(series.values, np.array(HOURS) * LB_PER_MWH)


def test_timeout(server):
    server.script("/v3/historical", Reply(stall_s=5))
    with pytest.raises(ServiceUnavailable, match="timeout"):
        adapter(server, policy=RetryPolicy(attempts=2, timeout_s=0.25, base_delay_s=0.01)).historical(
            "CAISO_NORTH", GRID.start, GRID.end)


@pytest.mark.parametrize("body, message", [
    ("not json", "not JSON"),
    ({"data": []}, "meta: is missing"),
    (moer(HOURS, units="percentile"), "'percentile' is not an intensity unit"),
    ({"data": [{"point_time": "2026-06-21T00:00:00", "value": 1.0}], "meta": {"units": "lbs_co2_per_mwh"}},
     "data\\[0\\].point_time: '2026-06-21T00:00:00' has no UTC offset"),
])
def test_malformed_body(server, body, message):
    server.script("/v3/historical", Reply(200, body))
    with pytest.raises(InputError, match=message):
        fetch_intensity(adapter(server), {"CA": "CAISO_NORTH"}, GRID)


def test_outage_falls_back_to_the_cache(server, tmp_path):
    cache = SignalCache(tmp_path)
    server.script("/v3/historical", Reply(200, moer(HOURS)))
    fetch_intensity(adapter(server), {"CA": "CAISO_NORTH"}, GRID, cache=cache)
    server.script("/v3/historical", Reply(502, "bad gateway"))
    with pytest.warns(SignalWarning, match="WattTime zone CAISO_NORTH .*unreachable"):
        [series] = fetch_intensity(adapter(server), {"CA": "CAISO_NORTH"}, GRID, cache=cache)
    np.testing.assert_allclose(series.values, np.array(HOURS) * LB_PER_MWH)
    assert series.intensity_kind == "marginal"
