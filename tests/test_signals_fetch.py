"""edgeplace.topology.signals.fetch: fresh values, the cache, fallback files, and what is never papered over.

A stand-in service (no HTTP) keeps these tests about the order of sources;
the adapters' own tests run over loopback HTTP.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from edgeplace.topology import InputError
from edgeplace.topology.errors import Problem
from edgeplace.topology.signals.cache import SignalCache, SignalWarning
from edgeplace.topology.signals.fetch import fetch_intensity
from edgeplace.topology.signals.http import ServiceAuthError, ServiceUnavailable
from edgeplace.topology.signals.series import Points, SignalSeries, SlotGrid
from edgeplace.topology.spec import SignalKind

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
GRID = SlotGrid(START, 4, 60)
T = START.timestamp() + 3600.0 * np.arange(4)


class Stub:
    """An IntensityService answering from a script: Points, or an exception to raise."""

    name = "stub"
    label = "Stub"
    factor_type = None

    def __init__(self, *answers, kind="average"):
        self.answers = list(answers)
        self.intensity_kind = kind
        self.calls = 0

    def points(self, zone, start, end, series):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


DOWN = ServiceUnavailable("Stub", "http://127.0.0.1:9/x", "connection refused")
GOOD = Points(T, np.array([100.0, 200.0, 300.0, 400.0]), 3600.0)
HALF = Points(T[:2], np.array([100.0, 200.0]), 3600.0)
FILE = SignalSeries(SignalKind.grid_intensity, "DE", np.array([1.0, 2.0, 3.0, 4.0]), source="de.csv")


def test_fresh_values_are_cached_and_reused_offline(tmp_path):
    cache = SignalCache(tmp_path)
    [fresh] = fetch_intensity(Stub(GOOD), {"DE": "de"}, GRID, cache=cache)
    stub = Stub(DOWN)
    [offline] = fetch_intensity(stub, {"DE": "de"}, GRID, cache=cache, offline=True)
    assert stub.calls == 0
    np.testing.assert_array_equal(offline.values, fresh.values)
    assert any("using cached values" in n for n in offline.notes)


def test_fallback_file_when_down_and_the_cache_falls_short(tmp_path):
    cache = SignalCache(tmp_path)
    fetch_intensity(Stub(HALF), {"DE": "de"}, SlotGrid(START, 2, 60), cache=cache)  # caches 2 of 4 hours
    with pytest.warns(SignalWarning, match="cache does not cover the horizon; using de.csv"):
        [s] = fetch_intensity(Stub(DOWN), {"DE": "de"}, GRID, cache=cache, fallback=[FILE])
    np.testing.assert_array_equal(s.values, FILE.values)


def test_down_with_nothing_to_fall_back_on(tmp_path):
    cache = SignalCache(tmp_path)
    fetch_intensity(Stub(HALF), {"DE": "de"}, SlotGrid(START, 2, 60), cache=cache)
    with pytest.raises(InputError, match=r"(?s)unreachable \(connection refused\).*"
                                         r"the cached values do not cover the horizon.*ends at"):
        fetch_intensity(Stub(DOWN), {"DE": "de"}, GRID, cache=cache)
    with pytest.raises(InputError, match="offline, and nothing is cached"):
        fetch_intensity(Stub(GOOD), {"FR": "fr"}, GRID, cache=SignalCache(tmp_path), offline=True)


def test_a_fresh_answer_that_misses_the_horizon_is_not_papered_over(tmp_path):
    with pytest.raises(InputError, match="ends at 2026-06-21T02:00:00Z.*fetch a period the service covers"):
        fetch_intensity(Stub(HALF), {"DE": "de"}, GRID, cache=SignalCache(tmp_path), fallback=[FILE])


def test_auth_errors_are_never_papered_over(tmp_path):
    cache = SignalCache(tmp_path)
    fetch_intensity(Stub(GOOD), {"DE": "de"}, GRID, cache=cache)
    with pytest.raises(ServiceAuthError, match="bad token"):
        fetch_intensity(Stub(ServiceAuthError("Stub", [Problem("HTTP 401", "bad token")])), {"DE": "de"}, GRID,
                        cache=cache, fallback=[FILE])


def test_fallback_of_another_kind_is_refused(tmp_path):
    marginal = SignalSeries(SignalKind.grid_intensity, "DE", np.ones(4), intensity_kind="marginal", source="m.csv")
    with pytest.raises(InputError, match="fallback file gives marginal intensity but the service gives average"):
        fetch_intensity(Stub(DOWN), {"DE": "de"}, GRID, cache=SignalCache(tmp_path), fallback=[marginal])


def test_kinds_and_series_have_separate_cache_entries(tmp_path):
    cache = SignalCache(tmp_path)
    fetch_intensity(Stub(GOOD, kind="marginal"), {"DE": "de"}, GRID, cache=cache)
    fetch_intensity(Stub(GOOD), {"DE": "de"}, GRID, cache=cache, series="forecast")
    with pytest.raises(InputError, match="nothing is cached"):
        fetch_intensity(Stub(GOOD), {"DE": "de"}, GRID, cache=cache, offline=True)  # average actual: never fetched


def test_implausible_values_from_a_service_are_refused(tmp_path):
    with pytest.raises(InputError, match="slot 0 is 5000 gCO2/kWh, outside the plausible range"):
        fetch_intensity(Stub(Points(T, np.full(4, 5000.0), 3600.0)), {"DE": "de"}, GRID)
