"""edgeplace.policies.power: the plain power, energy and on-site supply formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeplace.policies.power import BATTERY_ROUND_TRIP_EFFICIENCY, energy_kwh, node_power_w, onsite_supply_split

LINEAR = np.array([[100 + 10 * i for i in range(11)]], dtype=float)  # 100 W idle, 200 W max
SPEC = np.array([[50, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260]], dtype=float)


@pytest.mark.parametrize(
    ("curve", "u", "watts"),
    [
        (LINEAR, 0.0, 100.0),
        (LINEAR, 0.5, 150.0),  # 100 + 100 x 0.5
        (LINEAR, 1.0, 200.0),
        (LINEAR, 0.123, 112.3),  # 100 + 100 x 0.123
        (SPEC, 0.35, 130.0),  # halfway between 120 (30 %) and 140 (40 %)
        (SPEC, 0.05, 65.0),  # halfway between 50 (0 %) and 80 (10 %)
        (SPEC, 0.9, 240.0),  # exactly a measured point
        (SPEC, 0.95, 250.0),  # last segment: 240 -> 260
        (SPEC, 1.0, 260.0),
        (SPEC, 1.7, 260.0),  # over-commitment clipped at 100 %
        (SPEC, -0.2, 50.0),  # clipped at 0 %
    ],
)
def test_node_power_w(curve, u, watts):
    assert node_power_w(curve, np.array([[u]]))[0, 0] == pytest.approx(watts, rel=1e-12)


def test_node_power_w_is_vectorised_over_nodes_and_slots():
    curves = np.vstack([LINEAR, SPEC])
    u = np.array([[0.0, 0.5, 1.0], [0.35, 0.0, 1.0]])
    assert node_power_w(curves, u) == pytest.approx(np.array([[100.0, 150.0, 200.0], [130.0, 50.0, 260.0]]))


@given(u=st.floats(0, 1))
@settings(max_examples=50, deadline=None)
def test_node_power_w_matches_linear_model_and_is_monotone(u):
    p = node_power_w(LINEAR, np.array([[u, min(u + 0.01, 1.0)]]))
    assert p[0, 0] == pytest.approx(100 + 100 * u, abs=1e-9)
    assert p[0, 1] >= p[0, 0] - 1e-9


def test_energy_kwh():
    # 150 W for 1 h = 0.15 kWh; 2 kW for 0.25 h = 0.5 kWh
    assert energy_kwh(np.array([150.0, 2000.0]), 1.0)[0] == pytest.approx(0.15)
    assert energy_kwh(np.array([2000.0]), 0.25)[0] == pytest.approx(0.5)


def test_supply_split_without_battery_renewables_first():
    demand = np.array([[1.0, 1.0, 1.0]])
    supply = np.array([[0.0, 0.4, 3.0]])
    ren, grid = onsite_supply_split(demand, supply, np.array([0.0]))
    assert ren == pytest.approx(np.array([[0.0, 0.4, 1.0]]))
    assert grid == pytest.approx(np.array([[1.0, 0.6, 0.0]]))  # surplus of slot 2 curtailed


def test_supply_split_battery_starts_empty_charges_with_losses_and_discharges():
    # slot 0: no supply, empty battery -> grid 1
    # slot 1: supply 2, demand 1 -> surplus 1 x 0.9 = 0.9 stored
    # slot 2: deficit 1 -> battery 0.9, grid 0.1
    # slot 3: battery empty -> grid 1
    demand = np.ones((1, 4))
    supply = np.array([[0.0, 2.0, 0.0, 0.0]])
    ren, grid = onsite_supply_split(demand, supply, np.array([5.0]))
    assert BATTERY_ROUND_TRIP_EFFICIENCY == 0.9
    assert grid == pytest.approx(np.array([[1.0, 0.0, 0.1, 1.0]]))
    assert ren == pytest.approx(np.array([[0.0, 1.0, 0.9, 0.0]]))


def test_supply_split_battery_capacity_caps_the_charge():
    # Surplus 2 x 0.9 = 1.8 but only 0.5 fits; it spreads over the next deficits.
    demand = np.array([[0.0, 0.3, 0.3, 0.3]])
    supply = np.array([[2.0, 0.0, 0.0, 0.0]])
    ren, grid = onsite_supply_split(demand, supply, np.array([0.5]))
    assert ren == pytest.approx(np.array([[0.0, 0.3, 0.2, 0.0]]))
    assert grid == pytest.approx(np.array([[0.0, 0.0, 0.1, 0.3]]))


def test_supply_split_per_site_batteries_are_independent():
    demand = np.array([[0.0, 1.0], [0.0, 1.0]])
    supply = np.array([[1.0, 0.0], [1.0, 0.0]])
    ren, grid = onsite_supply_split(demand, supply, np.array([1.0, 0.0]), efficiency=0.5)
    assert ren == pytest.approx(np.array([[0.0, 0.5], [0.0, 0.0]]))
    assert grid == pytest.approx(np.array([[0.0, 0.5], [0.0, 1.0]]))


@given(
    demand=hnp.arrays(float, (2, 6), elements=st.floats(0, 10)),
    supply=hnp.arrays(float, (2, 6), elements=st.floats(0, 10)),
    battery=hnp.arrays(float, (2,), elements=st.floats(0, 10)),
)
@settings(max_examples=100, deadline=None)
def test_supply_split_conserves_energy(demand, supply, battery):
    ren, grid = onsite_supply_split(demand, supply, battery)
    assert ren + grid == pytest.approx(demand, abs=1e-9)
    assert (ren >= -1e-12).all() and (grid >= -1e-12).all()
    # On-site energy used never exceeds what was generated so far.
    assert (np.cumsum(ren, axis=1) <= np.cumsum(supply, axis=1) + 1e-9).all()
