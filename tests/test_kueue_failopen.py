"""edgeplace.k8s.kueue_failopen: when the watchdog judges edgeplace down (on its own monotonic clock).

Its sweep against Kueue's real controller manager (a held Job admitted once the
grace time has passed, and not before) is in tests/e2e/test_kueue_e2e.py.
"""

from __future__ import annotations

import pytest

from edgeplace.k8s.kueue_failopen import FailOpenWatchdog
from edgeplace.k8s.leader import observe_lease


def _lease(holder: str | None, renew: str, duration: int = 15) -> dict:
    return {"spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}}


class _Watchdog(FailOpenWatchdog):
    """The watchdog with its Lease and monotonic clock given by the test."""

    def __init__(self, grace_s: float = 30.0):
        self.now = 100.0
        self.lease: dict | None = None
        super().__init__(None, "edgeplace-system", "edgeplace-planner", grace_s, monotonic=lambda: self.now)

    def read_lease(self):
        return self.lease


def test_edgeplace_is_up_while_it_renews_and_down_from_when_its_lease_ran_out():
    w = _Watchdog()
    w.lease = _lease("a", "t0")
    assert w.down_for() == 0.0
    w.now, w.lease = 110.0, _lease("a", "t1")  # renewed: seen changing at 110
    assert w.down_for() == 0.0
    w.now = 124.0  # 14 s without a change: the 15 s lease still runs
    assert w.down_for() == 0.0
    w.now = 150.0  # the lease ran out at 110 + 15 = 125 as we saw it
    assert w.down_for() == pytest.approx(25.0)
    w.now, w.lease = 151.0, _lease("b", "t2")  # another replica took over
    assert w.down_for() == 0.0


def test_a_released_lease_counts_from_the_release_and_a_missing_one_from_the_start():
    w = _Watchdog()
    w.lease = _lease(None, "t5")  # released by a clean stop
    assert w.down_for() == 0.0  # seen at 100
    w.now = 130.0
    assert w.down_for() == pytest.approx(30.0)
    fresh = _Watchdog()  # no Lease at all: counted from when the watchdog started (100)
    fresh.now = 160.0
    assert fresh.down_for() == pytest.approx(60.0)


def test_the_renew_time_is_never_compared_with_our_clock():
    seen = observe_lease(None, _lease("a", "2020-01-01T00:00:00.000000Z"), now=5.0)
    assert seen.held_until == 20.0  # 15 s from when we saw it, whatever the stamp says
    assert observe_lease(seen, _lease("a", "2020-01-01T00:00:00.000000Z"), now=9.0) is seen
    assert observe_lease(seen, None, now=9.0) is None


def test_grace_must_not_be_negative():
    with pytest.raises(ValueError, match="grace_s must be >= 0"):
        FailOpenWatchdog(None, "ns", "name", grace_s=-1)
