"""edgeplace.topology.signals.cache: store, merge, load, atomic files, unreadable files, where the cache lives."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edgeplace.topology.signals.cache import SignalCache, SignalWarning, default_cache_dir

T0 = datetime(2026, 6, 21, tzinfo=timezone.utc).timestamp()


def test_round_trip_and_merge(tmp_path):
    cache = SignalCache(tmp_path)
    cache.store("svc", "DE|average|actual", [T0, T0 + 3600], [300.0, 310.0], unit="gCO2/kWh", step_s=3600,
                now=datetime(2026, 6, 22, tzinfo=timezone.utc))
    cache.store("svc", "DE|average|actual", [T0 + 3600, T0 + 7200], [311.0, 320.0], unit="gCO2/kWh")
    got = cache.load("svc", "DE|average|actual")
    assert got.times_s.tolist() == [T0, T0 + 3600, T0 + 7200]
    assert got.values.tolist() == [300.0, 311.0, 320.0]       # newer value wins at 01:00
    assert got.step_s == 3600 and got.unit == "gCO2/kWh"
    assert cache.load("svc", "FR|average|actual") is None


def test_keys_never_share_a_file_and_nothing_is_left_half_written(tmp_path):
    cache = SignalCache(tmp_path)
    a = cache.store("svc", "a/b", [T0], [1.0], unit="kW")
    b = cache.store("svc", "a_b", [T0], [2.0], unit="kW")
    assert a != b and a.parent == tmp_path / "svc"
    assert sorted(p.name for p in a.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_unit_change_drops_old_points(tmp_path):
    cache = SignalCache(tmp_path)
    cache.store("svc", "k", [T0], [1.0], unit="kW")
    cache.store("svc", "k", [T0 + 60], [2.0], unit="fraction")
    assert cache.load("svc", "k").values.tolist() == [2.0]


def test_unreadable_file_is_ignored_with_a_warning(tmp_path):
    cache = SignalCache(tmp_path)
    path = cache.store("svc", "k", [T0], [1.0], unit="kW")
    path.write_text("{not json")
    with pytest.warns(SignalWarning, match="ignoring the unreadable cache file"):
        assert cache.load("svc", "k") is None


def test_non_finite_points_are_not_stored(tmp_path):
    cache = SignalCache(tmp_path)
    cache.store("svc", "k", [T0, T0 + 60], [np.nan, 2.0], unit="kW")
    assert cache.load("svc", "k").values.tolist() == [2.0]


@pytest.mark.parametrize("env, expected", [
    ({"EDGEPLACE_SIGNALS_CACHE": "/x/cache"}, Path("/x/cache")),
    ({"XDG_CACHE_HOME": "/xdg"}, Path("/xdg/edgeplace/signals")),
    ({}, Path.home() / ".cache" / "edgeplace" / "signals"),
])
def test_default_directory(env, expected):
    assert default_cache_dir(env) == expected
