"""edgeplace.policies.calibration: fits recover known curves; too little data is refused, not guessed."""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.policies.calibration import FitRefused, fit_power_model

CURVE = [70.0, 130.0, 160.0, 185.0, 208.0, 230.0, 252.0, 275.0, 300.0, 330.0, 365.0]


def test_linear_fit_recovers_idle_and_max_and_reports_its_error():
    # P = 100 + 320 u on u = 0.1 .. 0.9, +/- 2 W alternating: RMSE 2 W.
    u = np.linspace(0.1, 0.9, 41)
    p = 100 + 320 * u + np.where(np.arange(u.size) % 2, 2.0, -2.0)
    fit = fit_power_model(u, p)
    assert fit.idle_w == pytest.approx(100.0, abs=1.0) and fit.max_w == pytest.approx(420.0, abs=1.0)
    assert fit.rmse_w == pytest.approx(2.0, abs=0.05)
    assert fit.rmse_pct == pytest.approx(2.0 / p.mean() * 100, rel=0.05)
    assert (fit.utilisation_min, fit.utilisation_max, fit.samples) == (pytest.approx(0.1), pytest.approx(0.9), 41)
    assert fit.power_model() == {"idle_w": pytest.approx(100.0, abs=1.0), "max_w": pytest.approx(420.0, abs=1.0)}


def test_points_fit_recovers_an_11_point_curve_and_never_falls():
    u = np.repeat(np.linspace(0, 1, 11), 5)
    fit = fit_power_model(u, np.interp(u, np.linspace(0, 1, 11), CURVE), "points")
    assert list(fit.points_w) == pytest.approx(CURVE, abs=1e-6)
    assert fit.power_model()["points_w"] == pytest.approx(CURVE, abs=1e-3)
    # A dip in the data does not make the curve fall with load (non-negative increments).
    noisy = np.interp(u, np.linspace(0, 1, 11), CURVE) - np.where(np.isclose(u, 0.5), 40.0, 0.0)
    assert np.all(np.diff(fit_power_model(u, noisy, "points").points_w) >= -1e-9)


@pytest.mark.parametrize("u, p, form, message", [
    (np.linspace(0.1, 0.15, 40), None, "linear", "utilisation only spans 10-15 %"),
    (np.linspace(0.1, 0.9, 10), None, "linear", "10 usable samples, 20 needed"),
    (np.linspace(0.1, 0.9, 40), "falling", "linear", "power falls with load"),
    (np.linspace(0.05, 0.95, 40), None, "points", "within 5 points of 0 %, 100 % load"),
])
def test_refusals_say_why_and_how_to_get_data_that_fits(u, p, form, message):
    power = 300 - 100 * u if p == "falling" else 100 + 100 * u
    with pytest.raises(FitRefused, match=message):
        fit_power_model(u, power, form)
