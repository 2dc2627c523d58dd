"""Simple, well-known forecasters, and the error of a forecast.

A forecaster turns the slots before the horizon (history, oldest first) into
a forecast for the horizon's slots. The output is a `series: forecast`
signal: planning prices it, evaluation keeps using the actual series, so the
difference between them is the price of forecast error (edgeplace.topology.scenario).

- **persistence**: every slot gets the last observed value.
      f[t] = x[-1]
- **seasonal naive** (daily): every slot gets the value one day earlier,
  i.e. yesterday's profile repeated.
      f[t] = x[n - p + (t mod p)]                  (p = slots per day)
- **exponentially weighted daily profile**: each slot of the day gets the
  exponentially weighted mean of that slot over the past days, newest day
  weight 1, one day older (1 - alpha), two days (1 - alpha)^2, ...,
  normalised; the recursion P <- alpha x day + (1 - alpha) x P.
  alpha = 0.5 by default (the newest day counts as much as all older ones).

External forecasts (the services' forecast endpoints) arrive as
`series: forecast` signals directly (`edgeplace.topology.signals.services`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.series import SignalSeries, SlotGrid

#: Weight of the newest day in the exponentially weighted profile.
DEFAULT_ALPHA = 0.5


def persistence(history: np.ndarray, horizon: int, period: int | None = None) -> np.ndarray:
    """The last value, repeated `horizon` times."""
    x = _history(history, 1)
    return np.full(horizon, x[-1])


def seasonal_naive(history: np.ndarray, horizon: int, period: int | None) -> np.ndarray:
    """The last `period` values (one day), repeated to `horizon` slots."""
    p = _period(period)
    x = _history(history, p)
    return np.resize(x[-p:], horizon)


def ewma_profile(history: np.ndarray, horizon: int, period: int | None, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Exponentially weighted mean daily profile of the whole days in `history`, repeated."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1] (got {alpha})")
    p = _period(period)
    x = _history(history, p)
    days = len(x) // p
    block = x[len(x) - days * p:].reshape(days, p)          # oldest day first
    weights = (1 - alpha) ** np.arange(days - 1, -1, -1)    # newest day weight 1
    profile = weights @ block / weights.sum()
    return np.resize(profile, horizon)


def _history(history: np.ndarray, needed: int) -> np.ndarray:
    x = np.asarray(history, dtype=float)
    if x.ndim != 1 or len(x) < needed:
        raise ValueError(f"needs at least {needed} slot(s) of history (got {x.size})")
    if not np.isfinite(x).all():
        raise ValueError("history has missing values; fill or shorten it")
    return x


def _period(period: int | None) -> int:
    if not period or period < 1:
        raise ValueError("a daily forecaster needs slots that divide 24 h (e.g. 15, 30 or 60 min)")
    return period


Forecaster = Callable[[np.ndarray, int, int | None], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A forecaster and how much history it needs, in days (0: one slot)."""

    forecast: Forecaster
    min_days: int
    summary: str


def forecasters(alpha: float = DEFAULT_ALPHA) -> dict[str, Method]:
    """The forecasters by name (built here and passed down; no global registry)."""
    return {
        "persistence": Method(persistence, 0, "the last value, held"),
        "seasonal": Method(seasonal_naive, 1, "yesterday's profile, repeated (seasonal naive, daily)"),
        "ewma": Method(lambda h, n, p: ewma_profile(h, n, p, alpha), 1,
                       f"exponentially weighted daily profile (alpha {alpha:g})"),
    }


def history_grid(grid: SlotGrid, days: int) -> SlotGrid:
    """The `days` days of slots right before `grid` (at least one slot)."""
    per_day = grid.slots_per_day()
    if per_day is None:
        raise InputError("forecast", [Problem("horizon.slot_minutes", f"{grid.slot_minutes} min does not divide a day; "
                                                                      f"daily forecasters need e.g. 15, 30 or 60 min")])
    return grid.before(max(days * per_day, 1))


def forecast_series(history: SignalSeries, grid: SlotGrid, method: str, *, alpha: float = DEFAULT_ALPHA) -> SignalSeries:
    """A `series: forecast` signal for `grid` from `history` (aligned on the slots before it)."""
    methods = forecasters(alpha)
    if method not in methods:
        raise InputError("forecast", [Problem("method", f"{method!r} is not a forecaster; use one of {', '.join(methods)}")])
    try:
        values = methods[method].forecast(np.asarray(history.values, dtype=float), grid.slots, grid.slots_per_day())
    except ValueError as exc:
        raise InputError(f"{method} forecast", [Problem(history.label(), str(exc))]) from None
    return SignalSeries(history.signal, history.target_id, values, "forecast", history.intensity_kind,
                        source=f"{method} forecast from {history.source or 'history'}",
                        notes=(f"{history.label()}: {methods[method].summary}",), factor_type=history.factor_type)


def forecast_errors(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean square error and mean absolute percentage error [%] (slots with actual 0 skipped)."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if a.shape != f.shape or a.size == 0:
        raise ValueError("actual and forecast need the same, non-zero length")
    err = f - a
    nonzero = a != 0
    mape = float(np.mean(np.abs(err[nonzero] / a[nonzero])) * 100) if nonzero.any() else float("nan")
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))), "mape_percent": mape}


__all__ = [
    "DEFAULT_ALPHA",
    "Method",
    "ewma_profile",
    "forecast_errors",
    "forecast_series",
    "forecasters",
    "history_grid",
    "persistence",
    "seasonal_naive",
]
