"""Fitting a node's power model to measured (utilisation, power) samples.

Two forms, the two `edgeplace.topology.spec.PowerModel` accepts:

- ``linear``: P(u) = idle_w + (max_w - idle_w) x u, by least squares;
- ``points``: the 11 SPECpower points P(0 %), P(10 %), ..., P(100 %) of a
  piecewise-linear curve (what `edgeplace.policies.power.node_power_w`
  interpolates), by non-negative least squares on the increments, so the
  curve never falls with load:

      P(u) = p0 + sum_k d_k x clip(10 u - (k - 1), 0, 1),   p0, d_k >= 0,
      P(k / 10) = p0 + d_1 + ... + d_k.

No curve is made up: a fit is refused (`FitRefused`, with the reason and
the fix) when there are too few samples, when utilisation spans too little
of the range for a slope (`min_range`), when a points fit lacks samples near
one of its 11 knots, or when the line falls with load. The linear form
extrapolates to 0 and 100 % from the range it saw (the model's own
assumption); the result says which range that was. Fit errors are the RMSE
and the largest error over the samples, in W and as a share of the mean
measured power.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMS = ("linear", "points")
#: Fewest samples a fit uses.
MIN_SAMPLES = 20
#: Smallest utilisation span (max - min) a slope is fitted on.
MIN_RANGE = 0.3
#: A knot of the points form needs this many samples within KNOT_HALF_WIDTH of it.
MIN_PER_KNOT = 3
KNOT_HALF_WIDTH = 0.05


class FitRefused(ValueError):
    """The samples cannot support the fit; the message says why and how to get better data."""


@dataclass(frozen=True)
class PowerFit:
    """A fitted power model and how well it fits its samples."""

    form: str  # linear | points
    points_w: tuple[float, ...]  # the curve at 0, 10, ..., 100 % load [W] (both forms)
    samples: int
    utilisation_min: float
    utilisation_max: float
    rmse_w: float
    max_error_w: float
    mean_power_w: float

    @property
    def idle_w(self) -> float:
        return self.points_w[0]

    @property
    def max_w(self) -> float:
        return self.points_w[-1]

    @property
    def rmse_pct(self) -> float:
        """RMSE as a share of the mean measured power [%]."""
        return self.rmse_w / self.mean_power_w * 100 if self.mean_power_w > 0 else float("nan")

    def power_model(self) -> dict[str, object]:
        """The scenario's `power` entry: {idle_w, max_w} or {points_w}."""
        if self.form == "linear":
            return {"idle_w": round(self.idle_w, 3), "max_w": round(self.max_w, 3)}
        return {"points_w": [round(p, 3) for p in self.points_w]}


def _hat_basis(u: np.ndarray) -> np.ndarray:
    """S x 11: the constant and the 10 ramp functions clip(10 u - (k - 1), 0, 1)."""
    ramps = np.clip(10.0 * u[:, None] - np.arange(10)[None, :], 0.0, 1.0)
    return np.hstack([np.ones((u.size, 1)), ramps])


def fit_power_model(utilisation: np.ndarray, power_w: np.ndarray, form: str = "linear", *,
                    min_samples: int = MIN_SAMPLES, min_range: float = MIN_RANGE) -> PowerFit:
    """Fit `form` to samples of CPU utilisation [0..1] and IT power [W]; raises `FitRefused`."""
    from scipy.optimize import nnls

    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)} (got {form!r})")
    u = np.asarray(utilisation, dtype=float)
    p = np.asarray(power_w, dtype=float)
    keep = np.isfinite(u) & np.isfinite(p)
    u, p = np.clip(u[keep], 0.0, 1.0), p[keep]
    if u.size < min_samples:
        raise FitRefused(f"{u.size} usable samples, {min_samples} needed; collect a longer window")
    span = float(u.max() - u.min())
    if span < min_range:
        raise FitRefused(f"utilisation only spans {u.min() * 100:.0f}-{u.max() * 100:.0f} % ({span * 100:.0f} points, "
                         f"{min_range * 100:.0f} needed for a slope); run a load ramp on the node (e.g. stress-ng "
                         f"--cpu 0 --cpu-load 10, 50, 90) while Kepler records, or keep its datasheet curve")
    if form == "linear":
        slope, intercept = np.polyfit(u, p, 1)
        if slope < 0:
            raise FitRefused(f"power falls with load ({slope:.1f} W per unit utilisation); the energy series is not "
                             f"this node's power, or utilisation is measured on another machine")
        if intercept < 0:
            raise FitRefused(f"the line reaches {intercept:.1f} W at 0 % load; the samples do not fit a linear "
                             f"model, try --form points with a wider load range")
        curve = intercept + slope * np.linspace(0.0, 1.0, 11)
    else:
        counts = np.array([int((np.abs(u - k / 10) <= KNOT_HALF_WIDTH).sum()) for k in range(11)])
        thin = [f"{k * 10} %" for k in range(11) if counts[k] < MIN_PER_KNOT]
        if thin:
            raise FitRefused(f"fewer than {MIN_PER_KNOT} samples within {KNOT_HALF_WIDTH * 100:.0f} points of "
                             f"{', '.join(thin)} load; the 11-point curve needs samples near every decile: run a "
                             f"load ramp over 0-100 %, or use --form linear")
        coef, _ = nnls(_hat_basis(u), p)
        curve = np.cumsum(coef)
    model = np.interp(u, np.linspace(0.0, 1.0, 11), curve)
    err = model - p
    return PowerFit(form=form, points_w=tuple(float(x) for x in curve), samples=int(u.size),
                    utilisation_min=float(u.min()), utilisation_max=float(u.max()),
                    rmse_w=float(np.sqrt(np.mean(err ** 2))), max_error_w=float(np.abs(err).max()),
                    mean_power_w=float(p.mean()))


__all__ = ["FORMS", "FitRefused", "MIN_RANGE", "MIN_SAMPLES", "PowerFit", "fit_power_model"]
