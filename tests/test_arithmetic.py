"""edgeplace.policies.arithmetic: one node-slot line by line; the lines add up to the totals.

The bundled example under the greedy-carbon baseline: every node-slot's
lines are printed, each line's arithmetic is redone from the numbers it
prints, and the printed grams, summed over all 38 x 24 node-slots, give the
evaluation's operational and embodied totals (within the printed rounding:
4 decimals of a gram per node-slot).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgeplace.app import example_path
from edgeplace.policies.arithmetic import node_slot_arithmetic, parse_node_slot
from edgeplace.policies.baselines import baseline_registry
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import InputError, load_scenario
from tests.builders import ScenarioBuilder, place

NUMBER = r"(-?[0-9.]+(?:e-?[0-9]+)?)"


@pytest.fixture(scope="module")
def example():
    sc = load_scenario(example_path("metro-de.yaml"))
    return evaluate(sc, baseline_registry()["greedy-carbon"]().place(sc))


def grams(line: str) -> float:
    return float(re.search(NUMBER + r" g$", line).group(1))


def test_the_lines_of_every_node_slot_add_up_to_the_example_totals(example):
    ev, sc = example, example.scenario
    operational = embodied = market = 0.0
    for i in range(sc.n_nodes):
        for t in range(sc.n_slots):
            lines = node_slot_arithmetic(ev, i, t).lines()
            op_line = next(x for x in lines if x.lstrip().startswith("operational (location-based):"))
            emb_line = next(x for x in lines if x.lstrip().startswith("embodied (fleet):"))
            mkt_line = next(x for x in lines if x.lstrip().startswith("operational (market-based):"))
            # Redo each product from the printed factors.
            kwh, intensity = map(float, re.search(NUMBER + r" kWh x " + NUMBER + r" g/kWh", op_line).groups())
            assert kwh * intensity == pytest.approx(grams(op_line), abs=1e-3)
            kg, years, hours = map(float, re.search(NUMBER + r" kg x 1000 / \(" + NUMBER + r" y x 8760 h\) x "
                                                    + NUMBER + " h", emb_line).groups())
            assert kg * 1000 / (years * 8760) * hours == pytest.approx(grams(emb_line), abs=1e-3)
            operational += grams(op_line)
            embodied += grams(emb_line)
            market += float(re.search(r"\(evaluated " + NUMBER + r" g\)", mkt_line).group(1))
    n = sc.n_nodes * sc.n_slots
    assert operational == pytest.approx(ev.totals["operational_emissions_g"], abs=n * 5e-5)
    assert embodied == pytest.approx(ev.totals["embodied_emissions_g"], abs=n * 5e-5)
    assert market == pytest.approx(ev.totals["operational_market_emissions_g"], abs=n * 5e-5)
    assert operational + embodied == pytest.approx(ev.emissions_g, abs=2 * n * 5e-5)


def test_power_and_energy_lines_redo_the_curve_and_pue(example):
    ev, sc = example, example.scenario
    busiest = np.unravel_index(int(np.argmax(ev.it_power_w)), ev.it_power_w.shape)
    lines = node_slot_arithmetic(ev, int(busiest[0]), int(busiest[1])).lines()
    power = next(x for x in lines if "power from the curve" in x)
    lo, frac, hi, lo2, watts = map(float, re.search(
        r"P\(\d+ %\) " + NUMBER + r" W \+ " + NUMBER + r" x \(P\(\d+ %\) " + NUMBER + r" W - " + NUMBER
        + r" W\) = " + NUMBER + " W", power).groups())
    assert lo + frac * (hi - lo2) == pytest.approx(watts, abs=1e-3)
    energy = next(x for x in lines if "facility energy" in x)
    w, pue, h, kwh = map(float, re.search(NUMBER + r" W x PUE " + NUMBER + " x " + NUMBER + r" h / 1000 = "
                                          + NUMBER + " kWh", energy).groups())
    assert w * pue * h / 1000 == pytest.approx(kwh, abs=1e-6)


def test_a_hand_node_slot_with_pv_a_battery_and_two_tenants():
    # Site a (PUE 1.5): n1 hosts w1 (t1, 1000 m) and w2 (t2, 1000 m): u = 0.5 -> 150 W -> 0.225 kWh.
    # PV 0.1 kW in slot 1 -> 0.1 kWh directly; grid 0.125 kWh x 200 g/kWh = 25 g.
    # Embodied 105.5936 g (owned); SCI: each tenant 1000/4000 -> 26.3984 g, unallocated 52.7968 g.
    sc = (ScenarioBuilder().slots(2).region("DE", [400, 200], factor_type="lifecycle")
          .site("a", pue=1.5, renewable=[0, 0.1]).node("n1").tenant("t1").tenant("t2")
          .workload("w1", tenant="t1").workload("w2", tenant="t2").build())
    ev = evaluate(sc, place(sc, {"w1": ["n1"], "w2": ["n1"]}))
    text = "\n".join(node_slot_arithmetic(ev, *parse_node_slot(ev, "n1,2026-06-21T01:00Z")).lines())
    assert "slot 1 (2026-06-21 01:00 UTC, 1 h), powered" in text
    assert "w1 1000 m x 1 + w2 1000 m x 1 = 2000 m) / 4000 m = u 0.5000" in text
    assert "= 150.0000 W" in text and "= 0.225000 kWh" in text
    assert "on-site renewables 0.100000 kWh -> 0.100000 kWh used directly, battery 0.000000 kWh, grid 0.125000 kWh" in text
    assert "0.125000 kWh x 200 g/kWh (DE, average, lifecycle) = 25.0000 g" in text
    assert "w1 (t1) 26.3984 g, w2 (t2) 26.3984 g; (unallocated) 52.7968 g" in text


@pytest.mark.parametrize("text, message", [
    ("n1", "write NODE,SLOT"),
    ("nx,0", "unknown node 'nx'"),
    ("n1,5", "outside the horizon (0..1)"),
    ("n1,2026-06-21T01:00", "with a UTC offset"),
    ("n1,noon", "slot index or an ISO 8601 time"),
])
def test_bad_node_slot_is_refused_with_the_fix(text, message):
    sc = ScenarioBuilder().slots(2).region("DE", 400).site("a").node("n1").tenant("t1").build()
    ev = evaluate(sc, place(sc, {}))
    with pytest.raises(InputError, match=re.escape(message)):
        parse_node_slot(ev, text)
