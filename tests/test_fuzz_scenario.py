"""Property tests: bad input never escapes as anything but `InputError`, and
`evaluate` never fails or goes non-finite on a valid placement.

(a) random mutations of a valid scenario document -> a Scenario or an InputError;
(b) random bytes / text / corrupted YAML as a scenario file -> an InputError;
(c) random placements on random valid scenarios -> finite, non-negative totals.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder
from edgeplace.topology import InputError, Placement, Scenario, load_scenario, scenario_from_dict

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def valid_doc() -> dict[str, Any]:
    """A valid scenario that uses every part of the format."""
    return (ScenarioBuilder("fuzz").slots(3)
            .region("DE", [400, 200, 300]).region("FR", [50, 60, 70], unit="g/kWh")
            .site("a", region="DE", pue=1.5, renewable=[0, 100, 50], renewable_unit="W", battery_kwh=1,
                  location={"lat": 52.5, "lon": 13.4})
            .site("c", tier="cloud", region="FR", pue=1.1,
                  embodied={"per_node_kg": 1000, "lifetime_years": 5})
            .node("n1", site="a", labels={"class": "edge"}, resources={"gpu": 1})
            .node("n2", site="c", can_power_down=False, points_w=[50, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260])
            .node("n3", site="c", dedicated_to="t2", background_utilisation=0.1)
            .link("a", "c", 10, bandwidth_mbps=1000)
            .user("u", site="a", access_ms=1)
            .tenant("t1", quota={"cpu_millicores": 8000}, never_with=["t3"])
            .tenant("t2", dedicated=True)
            .tenant("t3")
            .workload("web", tenant="t1", cpu=1000, replicas=2, sla_ms=15, users=["u"], min_sites=2,
                      current=["n1", "n2"], usage=0.5)
            .workload("ml", tenant="t1", selector={"class": "edge"}, resources={"gpu": 1})
            .workload("job", tenant="t2", window=(0, 3), duration_minutes=90)
            .background("n2", [10, 20, 30], unit="%")
            .build_dict())


BASE = valid_doc()
IDS = sorted({item["id"] for key in ("regions", "sites", "nodes", "users", "tenants", "workloads") for item in BASE[key]})


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


PATHS = _paths(BASE)
LIST_PATHS = [p for p in PATHS if isinstance(_get(BASE, p), list)]
ID_PATHS = [p for p in PATHS if p[-1] in ("id", "site", "region", "tenant", "node", "a", "b", "dedicated_to")
            or (len(p) >= 2 and p[-2] in ("users", "never_with", "current"))]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
nasty = st.sampled_from([-1, -1.5, 0, 10**30, 1e308, -1e308, math.nan, math.inf, -math.inf, "", [], {}, True, "1",
                         "2026-06-21T00:00:00", "2026-06-21T00:00:00Z"])

mutation = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(PATHS)),
    st.tuples(st.just("set"), st.sampled_from(PATHS), json_values),
    st.tuples(st.just("set"), st.sampled_from(PATHS), nasty),
    st.tuples(st.just("set"), st.sampled_from(ID_PATHS), st.sampled_from(IDS) | st.text(max_size=6)),
    st.tuples(st.just("resize"), st.sampled_from(LIST_PATHS), st.integers(0, 5)),
)


def _apply(doc: Any, op: tuple) -> None:
    kind, path = op[0], op[1]
    parent = doc
    try:
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if kind == "delete":
            del parent[last]
        elif kind == "set":
            parent[last] = copy.deepcopy(op[2])
        else:  # resize a list: truncate, or grow by repeating its items (duplicate ids included)
            items = parent[last]
            if not isinstance(items, list):
                return
            n = op[2]
            if n <= len(items):
                parent[last] = items[:n]
            elif items:
                parent[last] = items + [copy.deepcopy(items[i % len(items)]) for i in range(n - len(items))]
    except (KeyError, IndexError, TypeError):
        pass  # an earlier mutation removed the path


def _check_problems(err: InputError) -> None:
    assert err.problems, "an InputError must list at least one problem"
    for p in err.problems:
        assert isinstance(p.path, str) and isinstance(p.message, str) and p.message
    assert str(err).startswith(f"{err.source}: {len(err.problems)} problem(s)")


def test_base_document_is_valid():
    assert isinstance(scenario_from_dict(copy.deepcopy(BASE)), Scenario)
    assert LIST_PATHS and ID_PATHS


@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_scenarios_load_or_raise_input_error(ops):
    doc = copy.deepcopy(BASE)
    for op in ops:
        _apply(doc, op)
    try:
        sc = scenario_from_dict(doc)
    except InputError as err:
        _check_problems(err)
        return
    # Whatever survives validation must evaluate: nothing placed, and a static guess.
    R, T = sc.n_replicas, sc.n_slots
    for assign in (np.full((R, T), -1), Placement.from_replica_nodes(sc, np.zeros(R, dtype=np.int64)).assign):
        ev = evaluate(sc, Placement.from_assign(assign))
        # The CFE score is a share of energy: undefined (NaN, as documented) when no node draws any.
        undefined = {"cfe_score_pct"} if ev.totals["energy_kwh"] == 0 else set()
        assert all(math.isfinite(v) for k, v in ev.totals.items() if k not in undefined)


# -- (b) files ----------------------------------------------------------------------

#: The valid document as block-style YAML, for corruption.
BASE_YAML = yaml.safe_dump(BASE, sort_keys=False)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="edgeplace-fuzz-") as d:
        yield Path(d)


def _load_file(workdir: Path, suffix: str, data: bytes) -> Scenario | None:
    path = workdir / f"input{suffix}"
    path.write_bytes(data)
    try:
        return load_scenario(path)
    except InputError as err:
        _check_problems(err)
        assert err.source == str(path)
        return None


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
       suffix=st.sampled_from([".yaml", ".json", ".yml", ""]))
def test_random_bytes_are_an_input_error(workdir, data, suffix):
    assert _load_file(workdir, suffix, data) is None


@FUZZ
@given(value=json_values, as_yaml=st.booleans(), versioned=st.booleans())
def test_random_documents_are_an_input_error(workdir, value, as_yaml, versioned):
    if versioned:
        value = {"version": 1, "name": "x", "payload": value}
    text = yaml.safe_dump(value) if as_yaml else json.dumps(value)
    assert _load_file(workdir, ".yaml" if as_yaml else ".json", text.encode()) is None


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(BASE_YAML)), st.integers(0, 3),
                                st.text(alphabet=" :-[]{}\n\t,&*!|>'\"#0123456789.ZTe", max_size=3)),
                      min_size=1, max_size=4))
def test_corrupted_yaml_loads_or_raises_input_error(workdir, edits):
    text = BASE_YAML
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    sc = _load_file(workdir, ".yaml", text.encode())
    assert sc is None or isinstance(sc, Scenario)


# -- (c) evaluation on random valid scenarios and placements -----------------------


@st.composite
def scenarios(draw) -> Scenario:
    T = draw(st.integers(1, 6))
    minutes = draw(st.sampled_from([15, 30, 60]))
    per_slot = lambda lo, hi: st.lists(st.floats(lo, hi), min_size=T, max_size=T)  # noqa: E731
    b = ScenarioBuilder("prop").slots(T, minutes=minutes)
    n_regions = draw(st.integers(1, 2))
    for g in range(n_regions):
        b.region(f"r{g}", draw(per_slot(0, 1000)))
    n_sites = draw(st.integers(1, 3))
    for s in range(n_sites):
        b.site(f"s{s}", region=f"r{s % n_regions}", pue=draw(st.floats(1, 3)),
               renewable=draw(st.none() | per_slot(0, 5)), battery_kwh=draw(st.floats(0, 5)))
        if s:
            b.link(f"s{s - 1}", f"s{s}", draw(st.floats(0, 50)))
    b.user("u", site="s0", access_ms=draw(st.floats(0, 5)))
    b.tenant("t0").tenant("t1", never_with=["t0"] if draw(st.booleans()) else None,
                          quota={"cpu_millicores": draw(st.integers(0, 10_000))} if draw(st.booleans()) else None)
    n_nodes = draw(st.integers(1, 4))
    for i in range(n_nodes):
        fields: dict[str, Any] = dict(site=f"s{draw(st.integers(0, n_sites - 1))}", cpu=draw(st.integers(1000, 8000)),
                                      can_power_down=draw(st.booleans()),
                                      background_utilisation=draw(st.floats(0, 1)))
        if draw(st.booleans()):
            fields["points_w"] = sorted(draw(st.lists(st.floats(0, 1000), min_size=11, max_size=11)))
        else:
            idle = draw(st.floats(0, 500))
            fields.update(idle_w=idle, max_w=idle + draw(st.floats(1e-3, 500)))
        b.node(f"n{i}", **fields)
    for w in range(draw(st.integers(0, 4))):
        replicas = draw(st.integers(1, 3))
        kw: dict[str, Any] = dict(tenant=f"t{draw(st.integers(0, 1))}", cpu=draw(st.integers(0, 1000)),
                                  replicas=replicas, usage=draw(st.floats(0, 1)))
        if draw(st.booleans()):
            kw.update(sla_ms=1e6, users=["u"])
        if replicas > 1 and draw(st.booleans()):
            kw["min_sites"] = draw(st.integers(1, replicas))
        if draw(st.booleans()):
            first = draw(st.integers(0, T - 1))
            end = draw(st.integers(first + 1, T))
            kw.update(window=(first, end), duration_minutes=draw(st.integers(1, (end - first) * minutes)))
        b.workload(f"w{w}", **kw)
    return b.build()


@st.composite
def scenario_and_placement(draw):
    sc = draw(scenarios())
    R, T, N = sc.n_replicas, sc.n_slots, sc.n_nodes
    assign = draw(hnp.arrays(np.int64, (R, T), elements=st.integers(-1, N - 1)))
    powered = draw(st.none() | hnp.arrays(bool, (N, T)))
    return sc, Placement.from_assign(assign, powered)


@FUZZ
@given(case=scenario_and_placement())
def test_evaluate_random_placements_is_finite_and_non_negative(case):
    sc, placement = case
    ev = evaluate(sc, placement)
    for name in ("energy_kwh", "renewable_kwh", "grid_kwh", "operational_emissions_g", "embodied_emissions_g",
                 "emissions_g", "mean_active_nodes", "mean_utilisation_active"):
        value = ev.totals[name]
        assert math.isfinite(value) and value >= -1e-9, (name, value)
    for arr in (ev.energy_kwh, ev.renewable_kwh, ev.grid_kwh, ev.operational_g, ev.embodied_g):
        assert np.isfinite(arr).all() and (arr >= -1e-9).all()
    # Renewable + grid = energy; per-tenant figures add up to the totals.
    assert ev.renewable_kwh + ev.grid_kwh == pytest.approx(ev.energy_kwh, abs=1e-9)
    assert ev.tenant_energy_kwh.sum() == pytest.approx(ev.totals["energy_kwh"], rel=1e-9, abs=1e-9)
    assert ev.tenant_operational_g.sum() == pytest.approx(ev.totals["operational_emissions_g"], rel=1e-9, abs=1e-6)
    assert ev.tenant_embodied_g.sum() == pytest.approx(ev.totals["embodied_emissions_g"], rel=1e-9, abs=1e-6)
    assert (ev.tenant_embodied_g >= -1e-9).all()
    # Nothing powered -> nothing drawn.
    assert (ev.it_power_w[~ev.powered] == 0).all()
    # A placement document round-trips whatever the assignment.
    back = Placement.from_dict(sc, json.loads(json.dumps(placement.to_dict(sc))))
    assert np.array_equal(back.assign, placement.assign)
