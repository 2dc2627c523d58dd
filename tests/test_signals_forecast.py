"""edgeplace.topology.signals.forecast: persistence, seasonal naive, exponentially weighted daily profile; forecast series."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from edgeplace.topology import InputError
from edgeplace.topology.signals.forecast import ewma_profile, forecast_errors, forecast_series, forecasters, history_grid, persistence, seasonal_naive
from edgeplace.topology.signals.series import SignalSeries, SlotGrid
from edgeplace.topology.spec import SignalKind

START = datetime(2026, 6, 21, tzinfo=timezone.utc)

# Two days of 4 slots (6-hour slots): day 1 = 10, 20, 30, 40; day 2 = 30, 40, 50, 60.
HISTORY = np.array([10, 20, 30, 40, 30, 40, 50, 60], dtype=float)


@pytest.mark.parametrize("method, expected", [
    (lambda h: persistence(h, 6), [60] * 6),                       # the last value, held
    (lambda h: seasonal_naive(h, 6, 4), [30, 40, 50, 60, 30, 40]),  # yesterday, repeated
    # Newest day weight 1, older (1 - 0.5) = 0.5: (0.5 x day1 + 1 x day2) / 1.5
    (lambda h: ewma_profile(h, 4, 4, alpha=0.5), [(5 + 30) / 1.5, (10 + 40) / 1.5, (15 + 50) / 1.5, (20 + 60) / 1.5]),
    (lambda h: ewma_profile(h, 4, 4, alpha=1.0), [30, 40, 50, 60]),  # alpha 1 = seasonal naive
])
def test_forecasters(method, expected):
    np.testing.assert_allclose(method(HISTORY), expected)


def test_ewma_uses_whole_days_only():
    # 9 slots = 2 whole days + 1 leftover at the start (ignored).
    np.testing.assert_allclose(ewma_profile(np.r_[999.0, HISTORY], 4, 4, alpha=1.0), [30, 40, 50, 60])


@pytest.mark.parametrize("call, message", [
    (lambda: seasonal_naive(HISTORY[:3], 4, 4), "at least 4 slot"),
    (lambda: persistence(np.array([]), 4), "at least 1 slot"),
    (lambda: seasonal_naive(HISTORY, 4, None), "divide 24 h"),
    (lambda: ewma_profile(HISTORY, 4, 4, alpha=0), "alpha must be in"),
    (lambda: persistence(np.array([1.0, np.nan]), 2), "missing values"),
])
def test_forecaster_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_forecast_series_is_a_forecast_of_the_same_target():
    grid = SlotGrid(START, 4, 360)
    past = history_grid(grid, 2)
    assert (past.slots, past.end) == (8, grid.start)
    history = SignalSeries(SignalKind.grid_intensity, "DE", HISTORY, "actual", "marginal", source="h.csv")
    fc = forecast_series(history, grid, "seasonal")
    assert (fc.signal, fc.target_id, fc.series, fc.intensity_kind) == (SignalKind.grid_intensity, "DE", "forecast", "marginal")
    np.testing.assert_allclose(fc.values, [30, 40, 50, 60])
    with pytest.raises(InputError, match="'arima' is not a forecaster"):
        forecast_series(history, grid, "arima")
    with pytest.raises(InputError, match="at least 4 slot"):
        forecast_series(SignalSeries(SignalKind.grid_intensity, "DE", HISTORY[:2]), grid, "ewma")


def test_history_grid_needs_slots_that_divide_a_day():
    with pytest.raises(InputError, match="7 min does not divide a day"):
        history_grid(SlotGrid(START, 4, 7), 1)


def test_registry_is_built_by_a_function():
    assert sorted(forecasters()) == ["ewma", "persistence", "seasonal"]
    assert forecasters(alpha=0.2)["ewma"].summary.endswith("(alpha 0.2)")


def test_forecast_errors():
    # errors: +10, -10, 0, +20 -> MAE 10, RMSE sqrt(600/4) = 12.247, MAPE (10/100 + 10/200 + 0 + 20/400) / 4 = 5 %
    e = forecast_errors([100, 200, 300, 400], [110, 190, 300, 420])
    assert e == pytest.approx({"mae": 10.0, "rmse": 150 ** 0.5, "mape_percent": 5.0})
    with pytest.raises(ValueError, match="same, non-zero length"):
        forecast_errors([1], [1, 2])
