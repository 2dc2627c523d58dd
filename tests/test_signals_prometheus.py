"""Prometheus range queries on loopback: success (nodes, pods, long ranges), auth failure, rate limit, timeout,
malformed body, outage. Bodies follow the documented /api/v1/query_range shape.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import numpy as np
import pytest

from tests.test_signals_http import FAST, LoopbackServer, Reply, Sleeps
from edgeplace.topology.errors import InputError
from edgeplace.topology.signals.cache import SignalCache, SignalWarning
from edgeplace.topology.signals.fetch import fetch_utilisation
from edgeplace.topology.signals.http import RetryPolicy, ServiceAuthError, ServiceUnavailable
from edgeplace.topology.signals.prometheus import Prometheus, match_node
from edgeplace.topology.signals.series import SlotGrid
from edgeplace.topology.signals.services import ServiceConfig

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 24, 60)
T0 = START.timestamp()
QUERY_RANGE = "/api/v1/query_range"
UTIL = [round(0.05 + 0.01 * h, 4) for h in range(24)]


def matrix(series: dict[str, list[float]], label="instance", start=T0 + 3600, step=3600.0, text=str):
    """One series per label value; samples at slot ends (start = first slot end)."""
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {label: name, "job": "node"}, "values": [[start + k * step, text(v)] for k, v in enumerate(values)]}
        for name, values in series.items()]}}


def prom(srv, *, env=None, sleeps=None, policy: RetryPolicy = FAST) -> Prometheus:
    return Prometheus(ServiceConfig(base_url=srv.url, env=env or {}, policy=policy,
                                    sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(0)))


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def test_success_node_utilisation_sampled_at_slot_ends(server, tmp_path):
    server.script(QUERY_RANGE, Reply(200, matrix({"metro-1:9100": UTIL, "metro-2": [0.5] * 24, "unknown:9100": [1] * 24})))
    series, missing = fetch_utilisation(prom(server), ["metro-1", "metro-2", "metro-3"], GRID, cache=SignalCache(tmp_path))
    by_node = {s.target_id: s.values for s in series}
    np.testing.assert_allclose(by_node["metro-1"], UTIL)   # the sample at 01:00 is slot 0's mean
    np.testing.assert_allclose(by_node["metro-2"], 0.5)
    assert missing == ["metro-3"]
    q = server.seen[0].query
    # Evaluated at each slot end with a one-slot window: the sample is that slot's mean.
    assert q["start"] == [str(int(T0 + 3600))] and q["end"] == [str(int(T0 + 24 * 3600))] and q["step"] == ["3600s"]
    assert q["query"] == ['1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[3600s]))']


def test_success_pods_and_long_ranges_split(server):
    grid = SlotGrid(START, 12_000, 1)  # 12,000 one-minute steps: two requests of at most 10,000
    def pods(a, n):
        return {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"namespace": "cdn", "pod": "cache-0"}, "values": [[a + 60 * k, "0.25"] for k in range(n)]}]}}
    server.script(QUERY_RANGE, Reply(200, pods(T0 + 60, 10_000)), Reply(200, pods(T0 + 60 * 10_001, 2_000)))
    out = prom(server).pod_cpu_cores(grid, namespace="cdn")
    points = out[("cdn", "cache-0")]
    assert len(points.times_s) == 12_000 and points.times_s[0] == T0
    assert len(server.seen) == 2
    assert 'namespace="cdn"' in server.seen[0].query["query"][0]


def test_auth_failure(server):
    server.script(QUERY_RANGE, Reply(401, "Unauthorized"))
    with pytest.raises(ServiceAuthError, match="PROMETHEUS_TOKEN"):
        prom(server, env={"PROMETHEUS_TOKEN": "t0k"}).node_utilisation(GRID, ["metro-1"])
    assert server.seen[0].headers["authorization"] == "Bearer t0k"
    with pytest.raises(InputError, match="PROMETHEUS_URL: is not set"):
        Prometheus(ServiceConfig(env={}))


def test_bad_query_is_reported_with_prometheus_words(server):
    server.script(QUERY_RANGE, Reply(400, {"status": "error", "errorType": "bad_data",
                                           "error": "1:5: parse error: unexpected <by>"}))
    with pytest.raises(InputError, match="parse error: unexpected <by>"):
        prom(server).node_utilisation(GRID, ["metro-1"], query="avg by by")


def test_rate_limit_then_success(server):
    sleeps = Sleeps()
    server.script(QUERY_RANGE, Reply(429, "", {"Retry-After": "1"}), Reply(200, matrix({"metro-1": UTIL})))
    series, _ = fetch_utilisation(prom(server, sleeps=sleeps), ["metro-1"], GRID)
    assert sleeps == [1.0]
    np.testing.assert_allclose(series[0].values, UTIL)


def test_timeout(server):
    server.script(QUERY_RANGE, Reply(stall_s=5))
    with pytest.raises(ServiceUnavailable, match="timeout"):
        prom(server, policy=RetryPolicy(attempts=2, timeout_s=0.25, base_delay_s=0.01)).node_utilisation(GRID, ["metro-1"])


@pytest.mark.parametrize("body, message", [
    ("<html>", "not JSON"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, "resultType: is 'vector'"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, 2]]}]}},
     r"values\[0\]: should be \[unix time, \"value\"\]"),
    ({"data": {}}, "status: is missing"),
])
def test_malformed_body(server, body, message):
    server.script(QUERY_RANGE, Reply(200, body))
    with pytest.raises(InputError, match=message):
        fetch_utilisation(prom(server), ["metro-1"], GRID)


def test_percent_query_is_caught_by_the_range_check(server):
    server.script(QUERY_RANGE, Reply(200, matrix({"metro-1": [7.0] * 24})))
    with pytest.raises(InputError, match=r"outside the plausible range 0..1 fraction.*/ 100"):
        fetch_utilisation(prom(server), ["metro-1"], GRID)


def test_nan_samples_are_gaps_and_tiny_overshoot_is_clipped(server):
    values = list(UTIL)
    values[5] = float("nan")
    values[6] = 1.0000000001
    server.script(QUERY_RANGE, Reply(200, matrix({"metro-1": values}, text=lambda v: "NaN" if math.isnan(v) else repr(v))))
    [series], _ = fetch_utilisation(prom(server), ["metro-1"], GRID)
    assert series.values[6] == 1.0
    assert series.values[5] == pytest.approx((UTIL[4] + 1.0) / 2)  # one hour filled linearly
    assert any("filled" in n for n in series.notes)


def test_outage_falls_back_to_the_cache(server, tmp_path):
    cache = SignalCache(tmp_path)
    server.script(QUERY_RANGE, Reply(200, matrix({"metro-1": UTIL})))
    fetch_utilisation(prom(server), ["metro-1"], GRID, cache=cache)
    server.script(QUERY_RANGE, Reply(503, {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}))
    with pytest.warns(SignalWarning, match="TSDB not ready"):
        [series], _ = fetch_utilisation(prom(server), ["metro-1"], GRID, cache=cache)
    np.testing.assert_allclose(series.values, UTIL)
    with pytest.raises(InputError, match="node metro-2.*nothing is cached"):
        fetch_utilisation(prom(server), ["metro-1", "metro-2"], GRID, cache=cache, offline=True, required=["metro-2"])


@pytest.mark.parametrize("value, node", [("metro-1", "metro-1"), ("metro-1:9100", "metro-1"), ("metro-1:x", None),
                                         ("metro", None)])
def test_match_node(value, node):
    assert match_node(value, ["metro-1", "metro-2"]) == node
