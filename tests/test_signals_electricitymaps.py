"""Electricity Maps v3 adapter on loopback: success, auth failure, rate limit, timeout, malformed body, outage.

Bodies follow the documented v3 shapes (topology/signals/services/electricitymaps.py).
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
from edgeplace.topology.signals.services.electricitymaps import ElectricityMaps

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 24, 60)
# DE of examples/metro-de.yaml [gCO2/kWh]
DE = [378, 368, 362, 360, 356, 338, 306, 268, 232, 204, 184, 172, 170, 178, 202, 242, 292, 348, 404, 442, 454, 438, 416, 394]
TOKEN = {"ELECTRICITYMAPS_API_TOKEN": "secret-token"}


def entries(values, start=START, zone="DE"):
    """Hourly entries as the API writes them (datetime with milliseconds and Z)."""
    return [{"zone": zone, "carbonIntensity": v,
             "datetime": (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
             "updatedAt": "2026-06-22T00:10:04.066Z", "createdAt": "2026-06-18T00:40:51.812Z",
             "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None}
            for i, v in enumerate(values)]


def adapter(srv: LoopbackServer, *, now=START + timedelta(hours=23, minutes=30), env=TOKEN, sleeps=None,
            policy: RetryPolicy = FAST) -> ElectricityMaps:
    return ElectricityMaps(ServiceConfig(base_url=srv.url, env=env, policy=policy, now=lambda: now,
                                         sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0)))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


HISTORY = "/v3/carbon-intensity/history"


def test_success_history_within_the_last_day(server, tmp_path):
    server.script(HISTORY, Reply(200, {"zone": "DE", "history": entries(DE)}))
    [series] = fetch_intensity(adapter(server), {"DE": "DE"}, GRID, cache=SignalCache(tmp_path))
    np.testing.assert_allclose(series.values, DE, atol=1e-9)
    assert (series.signal.value, series.intensity_kind, series.series) == ("grid_intensity", "average", "actual")
    seen = server.seen[0]
    assert seen.headers["auth-token"] == "secret-token"
    assert seen.query == {"zone": ["DE"], "emissionFactorType": ["lifecycle"], "disableCallerLookup": ["true"]}
    assert list(tmp_path.rglob("*.json")), "the answer is cached"
    assert "secret-token" not in "".join(p.read_text() for p in tmp_path.rglob("*.json"))


def test_success_past_range_for_older_periods_and_forecast(server):
    later = START + timedelta(days=10)
    server.script("/v3/carbon-intensity/past-range", Reply(200, {"zone": "DE", "data": entries(DE)}))
    points = adapter(server, now=later).points("DE", GRID.start, GRID.end, "actual")
    np.testing.assert_array_equal(points.values, DE)
    assert server.seen[0].query["start"] == ["2026-06-21T00:00:00Z"]
    assert server.seen[0].query["end"] == ["2026-06-22T00:00:00Z"]

    forecast = [{"carbonIntensity": v + 10, "datetime": e["datetime"]} for v, e in zip(DE, entries(DE))]
    server.script("/v3/carbon-intensity/forecast", Reply(200, {"zone": "DE", "forecast": forecast,
                                                              "updatedAt": "2026-06-20T23:00:00.000Z"}))
    [series] = fetch_intensity(adapter(server, now=START), {"DE": "DE"}, GRID, series="forecast")
    assert series.series == "forecast"
    np.testing.assert_allclose(series.values, np.array(DE) + 10)


def test_latest(server):
    server.script("/v3/carbon-intensity/latest", Reply(200, entries([302])[0]))
    points = adapter(server).latest("DE")
    assert points.values.tolist() == [302.0] and points.times_s.tolist() == [START.timestamp()]


def test_auth_failure_names_the_variable(server):
    server.script(HISTORY, Reply(401, {"message": "Invalid auth-token"}))
    with pytest.raises(ServiceAuthError, match="(?s)Invalid auth-token.*ELECTRICITYMAPS_API_TOKEN"):
        adapter(server).history("DE")
    with pytest.raises(InputError, match="ELECTRICITYMAPS_API_TOKEN: is not set"):
        adapter(server, env={}).history("DE")


def test_rate_limit_then_success(server):
    sleeps = Sleeps()
    server.script(HISTORY, Reply(429, {"message": "Too many requests"}, {"Retry-After": "1"}),
                  Reply(200, {"zone": "DE", "history": entries(DE)}))
    [series] = fetch_intensity(adapter(server, sleeps=sleeps), {"DE": "DE"}, GRID)
    assert sleeps == [1.0] and len(server.seen) == 2
    np.testing.assert_allclose(series.values, DE)


def test_timeout(server, tmp_path):
    server.script(HISTORY, Reply(stall_s=5))
    slow = RetryPolicy(attempts=2, timeout_s=0.25, base_delay_s=0.01)
    with pytest.raises(ServiceUnavailable, match="timeout"):
        adapter(server, policy=slow).history("DE")
    with pytest.raises(InputError, match=r"unreachable \(no answer within the 0.25 s timeout.*nothing is cached"):
        fetch_intensity(adapter(server, policy=slow), {"DE": "DE"}, GRID, cache=SignalCache(tmp_path))


@pytest.mark.parametrize("body, message", [
    ("<html>gateway</html>", "not JSON"),
    ({"zone": "DE"}, r"history: is missing"),
    ({"zone": "DE", "history": [{"datetime": "2026-06-21T00:00:00.000Z", "carbonIntensity": "high"}]},
     r"history\[0\]\.carbonIntensity: should be a number"),
    ({"zone": "DE", "history": [{"datetime": "21/06/2026", "carbonIntensity": 300}]},
     r"history\[0\]\.datetime: '21/06/2026' is not an ISO 8601 time"),
])
def test_malformed_body(server, body, message):
    server.script(HISTORY, Reply(200, body))
    with pytest.raises(InputError, match=message):
        fetch_intensity(adapter(server), {"DE": "DE"}, GRID)


def test_outage_falls_back_to_the_cache(server, tmp_path):
    cache = SignalCache(tmp_path)
    server.script(HISTORY, Reply(200, {"zone": "DE", "history": entries(DE)}))
    fetch_intensity(adapter(server), {"DE": "DE"}, GRID, cache=cache)
    server.script(HISTORY, Reply(503, {"message": "maintenance"}))
    with pytest.warns(SignalWarning, match=r"unreachable \(HTTP 503 maintenance.*using cached values"):
        [series] = fetch_intensity(adapter(server), {"DE": "DE"}, GRID, cache=cache)
    np.testing.assert_allclose(series.values, DE)
    assert any("cached values" in n for n in series.notes)
    # --offline: the cache without asking, and without a warning (asked for).
    asked = len(server.seen)
    [offline] = fetch_intensity(adapter(server), {"DE": "DE"}, GRID, cache=cache, offline=True)
    np.testing.assert_allclose(offline.values, DE)
    assert len(server.seen) == asked
