"""edgeplace.topology.signals.align: the resampling, gap and coverage rules, as a table with the arithmetic."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from edgeplace.topology.signals.align import align
from edgeplace.topology.signals.series import SlotGrid

START = datetime(2026, 6, 21, tzinfo=timezone.utc)
T0 = START.timestamp()
H = 3600.0


def grid(slots: int, minutes: int = 60) -> SlotGrid:
    return SlotGrid(START, slots, minutes)


@pytest.mark.parametrize("times_h, values, slots, minutes, kw, expected", [
    # one value per slot, at slot starts: unchanged
    ([0, 1, 2], [10, 20, 30], 3, 60, {}, [10, 20, 30]),
    # quarter-hours into hours: mean of (1, 2, 3, 4) and (5, 6, 7, 8)
    ([k / 4 for k in range(8)], [1, 2, 3, 4, 5, 6, 7, 8], 2, 60, {}, [2.5, 6.5]),
    # hours into half-hour slots: each hour held over both halves
    ([0, 1], [10, 20], 4, 30, {}, [10, 10, 20, 20]),
    # values on the half hour, hourly slots: slot 1 = half of 10 and half of 20
    ([-0.5, 0.5, 1.5], [10, 20, 30], 2, 60, {}, [15, 25]),
    # energy [kWh] per quarter-hour, summed into hours and written as mean kW: (1+1+2+2) kWh / 1 h
    ([k / 4 for k in range(8)], [1, 1, 2, 2, 3, 3, 4, 4], 2, 60, {"energy": True}, [6, 14]),
    # energy per hour into half-hour slots: 4 kWh over an hour = 4 kW in both halves
    ([0], [4], 2, 30, {"energy": True, "step_s": H}, [4, 4]),
    # a day-long value covers all hourly slots
    ([0], [42], 24, 60, {"step_s": 24 * H}, [42] * 24),
    # a single point holds one slot
    ([0], [7], 1, 60, {}, [7]),
    # a 2 h gap (3 h between values) is filled linearly: 10 -> 40 via 20, 30
    ([0, 3, 4, 5], [10, 40, 50, 60], 5, 60, {}, [10, 20, 30, 40, 50]),
    # point sample: quarter-hours into hours, the value at each slot's start (1 at 00:00, 5 at 01:00)
    ([k / 4 for k in range(8)], [1, 2, 3, 4, 5, 6, 7, 8], 2, 60, {"sample": "point"}, [1, 5]),
    # point sample on the half hour: the value holding at 00:00 came at 23:30 (10), at 01:00 the one of 00:30 (20)
    ([-0.5, 0.5, 1.5], [10, 20, 30], 2, 60, {"sample": "point"}, [10, 20]),
    # point sample of a coarser series: held, like the mean
    ([0, 1], [10, 20], 4, 30, {"sample": "point"}, [10, 10, 20, 20]),
    # jitter (values 1 h 20 min apart) holds, no gap: 1.33 h < 1.5 steps
    # slot 2 = 2 for 20 min, then 3 for 40 min: 2/3 + 2 = 8/3
    ([0, 1, 2.3333333333333335, 3.3333333333333335], [1, 2, 3, 4], 3, 60, {"step_s": H}, [1, 2, 8 / 3]),
    # NaN is a missing value: filled
    ([0, 1, 2], [10, np.nan, 30], 3, 60, {}, [10, 20, 30]),
    # two points 4 h apart and nothing else: a 4-hourly series (held), not a gap
    ([0, 4], [1, 2], 5, 60, {}, [1, 1, 1, 1, 2]),
    # a missing value does not coarsen the step: 0, (1 missing), 2, 3 is hourly with a 1 h gap
    ([0, 1, 2, 3], [0, np.nan, 20, 30], 4, 60, {}, [0, 10, 20, 30]),
    # a gap before the horizon does not matter
    ([-10, 0, 1], [99, 10, 20], 2, 60, {}, [10, 20]),
])
def test_rules(times_h, values, slots, minutes, kw, expected):
    result = align([T0 + t * H for t in times_h], values, grid(slots, minutes), **kw)
    assert not result.problems
    np.testing.assert_allclose(result.values, expected, rtol=1e-12)


def test_filled_gaps_are_noted():
    result = align([T0, T0 + 3 * H], [10, 40], grid(4), step_s=H, labels=["line 2", "line 3"], what="region DE")
    assert result.notes == ["region DE: filled 2 h between line 2 and line 3 (2026-06-21T01:00:00Z..2026-06-21T03:00:00Z) "
                            "by linear interpolation"]


@pytest.mark.parametrize("times_h, values, slots, kw, message", [
    ([], [], 2, {}, "has no values; the horizon is 2026-06-21T00:00:00Z..2026-06-21T02:00:00Z"),
    ([1, 2], [1, 2], 3, {}, "starts at 2026-06-21T01:00:00Z, after the horizon starts"),
    ([0, 1], [1, 2], 3, {}, "ends at 2026-06-21T02:00:00Z .*holds one step of 1 h"),
    ([0, 4], [1, 2], 5, {"step_s": H}, "no values for 3 h between the value at 2026-06-21T00:00:00Z .* longer than the 2 h"),
    ([0, 4], [1, 2], 5, {"step_s": H, "max_gap_s": 4 * H}, None),
    ([0, 0, 1], [1, 2, 3], 2, {}, "both give a value at 2026-06-21T00:00:00Z"),
    ([0, 1], [1e308, 1e308], 2, {"energy": True, "step_s": H}, "too large to add up"),
])
def test_refusals(times_h, values, slots, kw, message):
    result = align([T0 + t * H for t in times_h], values, grid(slots), what="region DE", **kw)
    if message is None:
        assert result.values is not None
        return
    assert result.values is None
    assert any(__import__("re").search(message, str(p)) for p in result.problems), result.problems


def test_a_point_sample_of_energy_is_refused_with_the_fix():
    result = align([0, 0.25], [1, 1], grid(1), energy=True, sample="point", what="site a")
    assert result.values is None
    assert "a point sample applies to rates" in result.problems[0].message and "--sample mean" in result.problems[0].message


def test_an_unknown_sample_is_a_programming_error():
    with pytest.raises(ValueError, match=r"sample must be one of mean, point \(got 'max'\)"):
        align([0], [1], grid(1), sample="max")


def test_mean_is_time_weighted_not_sample_weighted():
    # 10 for 45 min, then 50 for 15 min: 10 x 0.75 + 50 x 0.25 = 20
    result = align([T0, T0 + 2700, T0 + 3600], [10, 50, 0], grid(1), step_s=2700)
    np.testing.assert_allclose(result.values, [20])
