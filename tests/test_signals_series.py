"""edgeplace.topology.signals.series: slot grids, series in the scenario format, merging into documents, atomic writes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml

from tests.builders import ScenarioBuilder
from edgeplace.topology import InputError, load_scenario
from edgeplace.topology.signals.series import SignalSeries, SlotGrid, apply_signals, check_against_scenario, iso, render_document, write_scenario
from edgeplace.topology.spec import ScenarioSpec, SignalKind

START = datetime(2026, 6, 21, tzinfo=timezone.utc)


def doc():
    return (ScenarioBuilder().slots(2).region("DE", [400, 200]).site("a", pv_kwp=10).node("n1", site="a")
            .tenant("t").build_dict())


def test_grid():
    g = SlotGrid(datetime(2026, 6, 21, 2, tzinfo=timezone(timedelta(hours=2))), 48, 30)
    assert g.start == START and g.start.tzinfo == timezone.utc
    assert g.end == START + timedelta(days=1) and g.slots_per_day() == 48
    assert g.edges_s()[[0, -1]].tolist() == [START.timestamp(), START.timestamp() + 86400]
    assert g.before(4) == SlotGrid(START - timedelta(hours=2), 4, 30)
    assert SlotGrid(START, 3, 7).slots_per_day() is None
    with pytest.raises(ValueError, match="time-zone aware"):
        SlotGrid(datetime(2026, 6, 21), 1, 60)
    assert iso(START) == "2026-06-21T00:00:00Z"


def test_to_document_rounds_float_noise_and_names_the_kind():
    s = SignalSeries(SignalKind.grid_intensity, "DE", np.array([0.1 + 0.2, 300.0]), "forecast", "marginal")
    assert s.to_document() == {"signal": "grid_intensity", "region": "DE", "unit": "gCO2/kWh",
                               "intensity_kind": "marginal", "series": "forecast", "values": [0.3, 300.0]}
    pv = SignalSeries(SignalKind.renewable_supply, "a", np.array([1.5]))
    assert "intensity_kind" not in pv.to_document() and pv.to_document()["unit"] == "kW"


def test_apply_replaces_same_series_and_appends_others():
    d = doc()
    new_de = SignalSeries(SignalKind.grid_intensity, "DE", np.array([1.0, 2.0]))
    fc_de = SignalSeries(SignalKind.grid_intensity, "DE", np.array([3.0, 4.0]), "forecast")
    out = apply_signals(d, [new_de, fc_de])
    assert [s["values"] for s in out["signals"]] == [[1.0, 2.0], [3.0, 4.0]]
    assert d["signals"][0]["values"] == [400, 200], "the input document is not changed"


def test_write_checks_the_whole_scenario_and_writes_atomically(tmp_path):
    path = tmp_path / "s.yaml"
    write_scenario(apply_signals(doc(), [SignalSeries(SignalKind.renewable_supply, "a", np.array([1.0, 2.0]))]), path)
    back = load_scenario(path)
    assert back.site_renewable_kw.tolist() == [[1.0, 2.0]]
    assert "values: [1.0, 2.0]" in path.read_text()  # flow style keeps series on one line
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]

    bad = apply_signals(doc(), [SignalSeries(SignalKind.grid_intensity, "DE", np.array([1.0, 2.0, 3.0]))])
    before = path.read_text()
    with pytest.raises(InputError, match="has 3 values but the horizon has 2 slots"):
        write_scenario(bad, path)
    assert path.read_text() == before, "nothing is written when the scenario has a problem"


def test_json_output(tmp_path):
    path = tmp_path / "s.json"
    write_scenario(doc(), path)
    assert json.loads(path.read_text())["signals"][0]["region"] == "DE"
    assert yaml.safe_load(render_document(doc(), tmp_path / "s.yaml"))["name"] == "test"


def test_check_against_scenario():
    spec = ScenarioSpec.model_validate(doc())
    with pytest.raises(InputError, match=r"(?s)region 'FR'.*is not in the scenario \(its regions: DE\).*"
                                         r"site 'a'.*peaks at 5000 kW.*10 kWp"):
        check_against_scenario([SignalSeries(SignalKind.grid_intensity, "FR", np.array([1.0, 1.0])),
                                SignalSeries(SignalKind.renewable_supply, "a", np.array([5000.0, 0.0]))], spec, "x")
    check_against_scenario([SignalSeries(SignalKind.renewable_supply, "a", np.array([12.0, 0.0]))], spec, "x")
