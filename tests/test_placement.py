"""edgeplace.topology.placement and edgeplace.topology.io: placements as data and JSON, and atomic writes."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from tests.builders import ScenarioBuilder, place
from edgeplace.topology import InputError, Placement
from edgeplace.topology.io import atomic_write_text
from edgeplace.topology.placement import scenario_run_mask


def scenario():
    """3 slots, nodes n1..n3; service `web` (2 replicas), deferrable `job` (2-slot run, start 0 or 1)."""
    return (ScenarioBuilder("pl").slots(3).region("DE", 100).site("a")
            .node("n1").node("n2").node("n3").tenant("t")
            .workload("web", replicas=2)
            .workload("job", window=(0, 3), duration_minutes=120)
            .build())


def test_static_placement_expands_over_run_slots():
    sc = scenario()
    p = Placement.from_replica_nodes(sc, np.array([0, 1, 2]), start_slot=np.array([0, 1]))
    assert p.assign.tolist() == [[0, 0, 0], [1, 1, 1], [-1, 2, 2]]
    assert p.powered is None


def test_start_slot_is_ignored_for_services():
    # from_replica_nodes documents start_slot as "ignored for the others" (non-deferrable workloads).
    sc = scenario()
    p = Placement.from_replica_nodes(sc, np.array([0, 1, 2]), start_slot=np.array([2, 1]))
    assert p.assign.tolist() == [[0, 0, 0], [1, 1, 1], [-1, 2, 2]]
    assert scenario_run_mask(sc, np.array([2, 0])).tolist() == [[True] * 3, [True] * 3, [True, True, False]]


def test_default_start_is_the_earliest_slot():
    sc = scenario()
    assert Placement.from_replica_nodes(sc, np.array([0, 0, 1])).assign[2].tolist() == [1, 1, -1]


def test_to_dict_static():
    sc = scenario()
    p = Placement.from_replica_nodes(sc, np.array([0, 1, 2]), start_slot=np.array([0, 1]))
    assert p.to_dict(sc) == {
        "version": 1, "scenario": "pl",
        "workloads": {"web": {"replicas": ["n1", "n2"]}, "job": {"start_slot": 1, "replicas": ["n3"]}},
    }


@pytest.mark.parametrize(
    ("assign", "powered"),
    [
        ([[0, 0, 0], [1, 1, 1], [2, 2, -1]], None),  # static
        ([[0, 1, 2], [1, 1, 1], [-1, 2, 2]], None),  # a moving replica
        ([[0, -1, 0], [1, 1, 1], [-1, -1, -1]], None),  # a stopped replica and an unplaced job
        ([[0, 0, 0], [0, 0, 0], [-1, 0, 0]], [[True] * 3, [False, True, False], [False] * 3]),  # power states
        ([[0, 0, 0], [0, 0, 0], [-1, 0, 0]], [[True] * 3] * 3),  # all on: an empty powered_down mapping
    ],
    ids=["static", "moving", "gaps", "powered-down", "all-on"],
)
def test_json_round_trip(tmp_path, assign, powered):
    sc = scenario()
    p = Placement.from_assign(np.array(assign, dtype=np.int64), None if powered is None else np.array(powered))
    path = tmp_path / "plan.json"
    p.save(sc, path)
    back = Placement.load(sc, path)
    assert back.assign.tolist() == assign
    if powered is None:
        assert back.powered is None
    else:
        assert back.powered.tolist() == powered
    assert json.loads(path.read_text()) == p.to_dict(sc)
    assert path.read_text().endswith("}\n")


def test_moving_replica_and_powered_down_on_disk():
    sc = scenario()
    p = Placement.from_assign(np.array([[0, 1, 2], [1, 1, 1], [-1, 2, 2]]), np.array([[True, True, False], [True] * 3, [False, True, True]]))
    doc = p.to_dict(sc)
    assert doc["workloads"]["web"] == {"replicas": [["n1", "n2", "n3"], "n2"]}
    assert doc["workloads"]["job"] == {"start_slot": 1, "replicas": ["n3"]}
    assert doc["powered_down"] == {"n1": [2], "n3": [0]}


def test_replica_names_without_start_slot_run_from_the_earliest_slot():
    sc = scenario()
    assert place(sc, {"job": ["n2"]}).assign[2].tolist() == [1, 1, -1]


def test_missing_workloads_are_unplaced():
    sc = scenario()
    assert (place(sc, {}).assign == -1).all()


BAD_DOCS = [
    ("version", {"version": 2, "workloads": {}}, "version", r"must be 1 \(got 2\)"),
    ("unknown-workload", {"workloads": {"nope": {"replicas": []}}}, "workloads.nope", "unknown workload 'nope'"),
    ("entry-not-mapping", {"workloads": {"web": ["n1", "n2"]}}, "workloads.web", "needs a 'replicas' list"),
    ("no-replicas", {"workloads": {"web": {}}}, "workloads.web", "needs a 'replicas' list"),
    ("start-out-of-range", {"workloads": {"job": {"start_slot": 3, "replicas": ["n1"]}}}, "workloads.job.start_slot",
     r"must be a slot number 0\.\.2 \(got 3\)"),
    ("start-bool", {"workloads": {"job": {"start_slot": True, "replicas": ["n1"]}}}, "workloads.job.start_slot", "got True"),
    ("start-text", {"workloads": {"job": {"start_slot": "1", "replicas": ["n1"]}}}, "workloads.job.start_slot", "got '1'"),
    ("replica-count", {"workloads": {"web": {"replicas": ["n1"]}}}, "workloads.web.replicas", "has 1 entries for 2 replicas"),
    ("unknown-node", {"workloads": {"web": {"replicas": ["n1", "n9"]}}}, "workloads.web.replicas[1]", "unknown node 'n9'"),
    ("per-slot-length", {"workloads": {"web": {"replicas": ["n1", ["n1", "n2"]]}}}, "workloads.web.replicas[1]",
     "must be a node id or a list of 3 node ids"),
    ("per-slot-unknown", {"workloads": {"web": {"replicas": ["n1", ["n1", "n9", None]]}}}, "workloads.web.replicas[1][1]",
     "unknown node 'n9'"),
    ("per-slot-number", {"workloads": {"web": {"replicas": ["n1", ["n1", 5, None]]}}}, "workloads.web.replicas[1][1]",
     "unknown node 5"),
    ("per-slot-unhashable", {"workloads": {"web": {"replicas": ["n1", ["n1", ["n2"], None]]}}}, "workloads.web.replicas[1][1]",
     r"unknown node \['n2'\]"),
    ("replica-number", {"workloads": {"web": {"replicas": ["n1", 7]}}}, "workloads.web.replicas[1]", "must be a node id"),
    ("powered-down-not-mapping", {"workloads": {}, "powered_down": ["n1"]}, "powered_down", "must map node ids to lists of slots"),
    ("powered-down-unknown", {"workloads": {}, "powered_down": {"n9": [0]}}, "powered_down.n9", "unknown node 'n9'"),
    ("powered-down-slots", {"workloads": {}, "powered_down": {"n1": [0, 3]}}, "powered_down.n1",
     r"must be a list of slot numbers 0\.\.2"),
    ("powered-down-text", {"workloads": {}, "powered_down": {"n1": "all"}}, "powered_down.n1", "must be a list of slot numbers"),
]


@pytest.mark.parametrize(("doc", "path", "match"), [c[1:] for c in BAD_DOCS], ids=[c[0] for c in BAD_DOCS])
def test_bad_placement_documents(doc, path, match):
    sc = scenario()
    doc = {"version": 1, **doc}
    with pytest.raises(InputError, match=r"<placement>: \d+ problem") as info:
        Placement.from_dict(sc, doc)
    assert any(p.path == path and re.search(match, p.message) for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("doc", [[], "x", None, {"version": 1}, {"version": 1, "workloads": []}])
def test_placement_must_be_a_mapping_with_workloads(doc):
    with pytest.raises(InputError, match="a placement is a mapping with a 'workloads' mapping"):
        Placement.from_dict(scenario(), doc)


def test_bad_placement_reports_every_problem_at_once():
    doc = {"version": 3, "workloads": {"nope": {"replicas": []}, "web": {"replicas": ["n9", "n1"]}},
           "powered_down": {"n8": [0]}}
    with pytest.raises(InputError, match="4 problem") as info:
        Placement.from_dict(scenario(), doc, source="plan.json")
    assert [p.path for p in info.value.problems] == ["version", "workloads.nope", "workloads.web.replicas[0]",
                                                     "powered_down.n8"]
    assert info.value.source == "plan.json"


def test_load_reports_file_problems(tmp_path):
    sc = scenario()
    with pytest.raises(InputError, match="file not found"):
        Placement.load(sc, tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "workloads": {')
    with pytest.raises(InputError, match=r"line 1 column 30: not valid JSON"):
        Placement.load(sc, bad)


# -- atomic writes ----------------------------------------------------------------


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "plan.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["plan.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch, failing):
    target = tmp_path / "plan.json"
    target.write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["plan.json"]


def test_save_never_leaves_a_half_file_when_serialising_fails(tmp_path):
    sc = scenario()
    target = tmp_path / "plan.json"
    Placement.from_replica_nodes(sc, np.array([0, 1, 2])).save(sc, target)
    before = target.read_text()
    broken = Placement.from_assign(np.zeros((2, 3), dtype=np.int64))  # wrong shape for this scenario
    with pytest.raises(ValueError, match=r"placement has shape \(2, 3\), scenario needs \(3, 3\)"):
        broken.save(sc, target)
    assert target.read_text() == before
    assert os.listdir(tmp_path) == ["plan.json"]


# ---------------------------------------------------------------------------
# The stored form: spans of replicas, read as the dense table would be


def _random_table(seed: int, replicas: int = 30, slots: int = 40, nodes: int = 5) -> np.ndarray:
    """Replicas that never run, run a block, pause and resume, or move between nodes."""
    rng = np.random.default_rng(seed)
    table = np.full((replicas, slots), -1, dtype=np.int64)
    for r in range(replicas):
        kind = r % 4
        a, b = sorted(rng.integers(0, slots, 2))
        if kind == 1:
            table[r, a:b + 1] = rng.integers(nodes)
        elif kind == 2:
            table[r, a:b + 1] = np.where(rng.random(b + 1 - a) < 0.5, rng.integers(nodes), -1)
        elif kind == 3:
            table[r, a:b + 1] = rng.integers(0, nodes, b + 1 - a)
    return table


@pytest.mark.parametrize("seed", range(5))
def test_every_reading_of_a_placement_matches_its_dense_table(seed):
    table = _random_table(seed)
    p = Placement.from_assign(table)
    assert np.array_equal(p.assign, table) and p.shape == table.shape
    r, t = np.nonzero(table >= 0)
    assert [c.tolist() for c in p.cells()] == [r.tolist(), t.tolist(), table[r, t].tolist()]
    for slot in (0, 7, 39):
        assert np.array_equal(p.column(slot), table[:, slot])
    assert np.array_equal(p.rows(3, 11, 5, 30), table[3:11, 5:30])
    first_slot, first_node = p.first_nodes()
    ran = (table >= 0).any(axis=1)
    assert np.array_equal(first_slot, np.where(ran, np.argmax(table >= 0, axis=1), -1))
    assert np.array_equal(first_node, np.where(ran, table[np.arange(len(table)), np.maximum(first_slot, 0)], -1))
    hosting = np.zeros((5, 40), dtype=bool)
    hosting[table[r, t], t] = True
    assert np.array_equal(p.hosting(5), hosting)
    # A replica stores the slots from its first to its last run, no more.
    assert p.span_node.size == sum(int(np.ptp(np.flatnonzero(row >= 0))) + 1 for row in table if (row >= 0).any())


def test_cells_in_any_order_make_the_same_placement():
    table = _random_table(7)
    r, t = np.nonzero(table >= 0)
    order = np.random.default_rng(1).permutation(len(r))
    p = Placement.from_cells(*table.shape, r[order], t[order], table[r, t][order])
    assert np.array_equal(p.assign, table)
    with pytest.raises(ValueError, match=r"slots 40\.\.40 \(valid 0\.\.39\)"):
        Placement.from_cells(*table.shape, [0], [40], [1])


def test_a_block_replaces_some_replicas_slots_in_a_copy():
    table = _random_table(3)
    p = Placement.from_assign(table)
    block = np.array([[2, 2, -1, 2], [-1, 1, 1, -1]])
    q = p.with_block(np.array([4, 9]), 10, 14, block)
    want = table.copy()
    want[[4, 9], 10:14] = block
    assert np.array_equal(q.assign, want)
    assert np.array_equal(p.assign, table)  # the original is unchanged


def test_a_placement_is_read_only():
    p = Placement.from_assign(_random_table(0))
    with pytest.raises(ValueError, match="read-only"):
        p.assign[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        p.span_node[0] = 1
    powered = np.ones((5, 40), dtype=bool)
    assert p.with_powered(powered).powered is powered and p.powered is None
