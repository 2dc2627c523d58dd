"""The power and carbon model as plain vectorised formulas.

Every energy and carbon figure in edgeplace is computed from these functions,
through `edgeplace.policies.evaluate.evaluate`. Each takes and returns numpy arrays with
units in the names.
"""

from __future__ import annotations

import numpy as np

#: Round-trip efficiency of an on-site battery (typical lithium-ion
#: stationary storage is 85-95 %; 0.9 is the assumption, applied on charge).
BATTERY_ROUND_TRIP_EFFICIENCY = 0.9


def node_power_w(curve_w: np.ndarray, utilisation: np.ndarray) -> np.ndarray:
    """IT power of nodes at a CPU utilisation [W].

    Parameters
    ----------
    curve_w : (N, 11) power at 0, 10, ..., 100 % load [W]
    utilisation : (N, T) CPU utilisation [0..1]; values above 1 are clipped
        (over-commitment is a capacity violation, not extra power).

    Notes
    -----
    Piecewise-linear interpolation of a SPECpower-style curve. With a curve
    built from idle and max power this is the linear model
    P(u) = P_idle + (P_max - P_idle) u (LEAF, Cloud Carbon Footprint,
    EdgeSimPy; shared/REFERENCE.md "Power of compute nodes").
    """
    u = np.clip(utilisation, 0.0, 1.0) * 10.0
    lo = np.minimum(u.astype(np.int64), 9)
    frac = u - lo
    p_lo = np.take_along_axis(curve_w, lo, axis=1)
    p_hi = np.take_along_axis(curve_w, lo + 1, axis=1)
    return p_lo + frac * (p_hi - p_lo)


def energy_kwh(power_w: np.ndarray, hours: float) -> np.ndarray:
    """Energy of a constant power over `hours` [kWh]: E = P x h / 1000."""
    return power_w * (hours / 1000.0)


def onsite_supply_split(demand_kwh: np.ndarray, supply_kwh: np.ndarray, battery_kwh: np.ndarray,
                        efficiency: float = BATTERY_ROUND_TRIP_EFFICIENCY) -> tuple[np.ndarray, np.ndarray]:
    """Split site demand into on-site renewable energy used and grid energy.

    Parameters
    ----------
    demand_kwh : (S, T) facility energy demand per slot [kWh]
    supply_kwh : (S, T) on-site renewable generation per slot [kWh]
    battery_kwh : (S,) battery capacity [kWh]; 0 = no battery

    Returns
    -------
    renewable_used_kwh, grid_kwh : (S, T) each; renewable + grid = demand.

    Notes
    -----
    Renewables serve demand first; surplus charges the battery (losing
    1 - efficiency on the way in), and the battery serves later deficits before
    the grid. The battery starts empty (a conservative choice: the plan never
    counts on energy it did not harvest inside the horizon). Surplus beyond a
    full battery is curtailed (no export credit).
    """
    direct = np.minimum(demand_kwh, supply_kwh)
    surplus = supply_kwh - direct
    deficit = demand_kwh - direct
    if not np.any(battery_kwh > 0):
        return direct, deficit
    discharge = np.zeros_like(deficit)
    soc = np.zeros(demand_kwh.shape[0])
    for t in range(demand_kwh.shape[1]):
        soc = np.minimum(battery_kwh, soc + surplus[:, t] * efficiency)
        discharge[:, t] = np.minimum(deficit[:, t], soc)
        soc -= discharge[:, t]
    return direct + discharge, deficit - discharge


def market_based_split(grid_kwh: np.ndarray, contracted_kwh: np.ndarray, renewable_share: np.ndarray,
                       residual_g_per_kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Market-based (GHG Protocol Scope 2) emissions of site grid energy after contracts.

    Parameters
    ----------
    grid_kwh : (S, T) grid energy each site draws per slot [kWh]
    contracted_kwh : (S, T) contracted carbon-free supply per slot (a PPA's profile) [kWh]
    renewable_share : (S,) share of the remaining grid energy covered by
        certificates or a green tariff [0..1]
    residual_g_per_kwh : (S, T) emission factor of energy no instrument covers:
        the residual mix, or the location-based intensity where none is known [gCO2e/kWh]

    Returns
    -------
    matched_kwh, market_g : (S, T) each: grid energy matched hour by hour by
    contracted supply [kWh], and the market-based emissions [gCO2e].

    Notes
    -----
    matched = min(grid, contracted) per slot; a slot's surplus is not carried
    to other slots (hourly matching, as 24/7 carbon-free energy accounting
    does; stricter than the 2015 guidance's volume matching over a year).
    Certificates then cover `renewable_share` of the unmatched rest, and

        market_g = (grid - matched) x (1 - renewable_share) x residual.

    Instruments are carbon-free (0 gCO2e/kWh).
    """
    matched = np.minimum(grid_kwh, contracted_kwh)
    uncovered = (grid_kwh - matched) * (1.0 - renewable_share)[:, None]
    return matched, uncovered * residual_g_per_kwh
