"""edgeplace.topology.signals.kepler: energy and CPU counters paired over the same windows.

Synthetic counters (no server; tests/e2e/test_calibrate_prometheus.py reads the
same shapes from a real Prometheus): 2 CPUs scraped every 15 s, P = 100 + 300 u
with u held 5 minutes at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.topology.signals.kepler import pair_intervals
from edgeplace.topology.signals.prometheus import RangeSeries

T = np.arange(0, 7200, 15.0)
U = np.array([0.1, 0.9, 0.4, 0.6, 0.2, 0.8])[(T // 300).astype(int) % 6]


def counters(u=U, t=T):
    energy = np.concatenate([[0.0], np.cumsum((100 + 300 * u[1:]) * np.diff(t))])
    idle = np.concatenate([[0.0], np.cumsum((1 - u[1:]) * np.diff(t) * 2)])
    return energy, idle


def series(t, v):
    return RangeSeries({}, np.asarray(t, dtype=float), np.asarray(v, dtype=float))


def cpus(idle, t=T):
    return [series(t, idle / 2), series(t, idle / 2)]


def test_windows_give_the_power_and_utilisation_held():
    e, idle = counters()
    s = pair_intervals("n", [series(T, e)], cpus(idle))
    assert s.problem is None and s.power_w.size > 50
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)
    assert set(np.round(s.utilisation, 6)) <= set(np.round(U, 6))


def test_zones_are_summed_at_their_common_scrapes():
    e, idle = counters()
    s = pair_intervals("n", [series(T, 0.75 * e), series(T, 0.25 * e)], cpus(idle))
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)


def test_a_counter_reset_drops_its_interval_and_counting_goes_on():
    e, idle = counters()
    restarted = np.where(T >= 3600, e - e[T == 3600][0] + 5.0, e)
    s = pair_intervals("n", [series(T, restarted)], cpus(idle))
    assert any("counter reset" in n for n in s.notes)
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)  # no negative or spiked power
    reboot = np.where(T >= 5400, idle - idle[T == 5400][0], idle)
    s = pair_intervals("n", [series(T, e)], cpus(reboot))
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)


def test_missing_scrapes_are_a_gap_not_an_average():
    e, idle = counters()
    keep = ~((T > 1800) & (T < 2400))
    s = pair_intervals("n", [series(T[keep], e[keep])], cpus(idle))
    assert any("missing scrapes" in n for n in s.notes)
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)


def test_cpu_scraped_at_other_instants_is_interpolated_and_load_changes_are_dropped():
    e, idle = counters()
    shifted = T[:-1] + 7
    s = pair_intervals("n", [series(T, e)], cpus(np.interp(shifted, T, idle), shifted))
    assert any("load moved" in n for n in s.notes)
    assert s.power_w == pytest.approx(100 + 300 * s.utilisation, abs=1e-6)


def test_too_few_samples_is_a_problem():
    assert pair_intervals("n", [series([0.0], [1.0])], cpus(np.array([0.0]), np.array([0.0]))).problem
