"""A placement: which node each replica runs on in each slot, and which nodes are powered.

Plain data. `assign[r, t]` is the node index of replica `r` in slot `t`, or
-1 where the replica does not run (a deferrable job outside its run, or a
replica left unplaced). `powered[i, t]` says whether node `i` is on; when it
is None, a node is on exactly when it hosts a replica or may not power down.

On disk (JSON) a placement names ids, not positions:

    {"version": 1, "scenario": "metro-de",
     "workloads": {"web": {"replicas": ["n1", "n2"]},
                   "train": {"start_slot": 3, "replicas": ["n7"]},
                   "moving": {"replicas": [["n1", "n1", "n2", ...]]}},
     "powered_down": {"n9": [0, 1, 2]}}

A replica is a node id (the same node in every slot the workload runs) or a
list with one node id (or null) per slot. `start_slot` places a deferrable
job's run; without it the job starts at its earliest slot. An interruptible
job lists the slots it runs in instead, `"run_slots": [3, 4, 9]`.

Node indices are stored in the smallest integer type that holds them
(`node_dtype`): a year of slots for thousands of jobs on one node is a large
array, and int8 or int16 instead of int64 is what keeps it in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.scenario import Scenario

PLACEMENT_VERSION = 1


def node_dtype(n_nodes: int) -> np.dtype:
    """The smallest signed integer type that holds node indices 0..n_nodes-1 and -1."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_nodes <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def empty_assign(scenario: Scenario, slots: int | None = None) -> np.ndarray:
    """R x T of -1 (nothing runs) in the scenario's node dtype."""
    return np.full((scenario.n_replicas, scenario.n_slots if slots is None else slots), -1,
                   dtype=node_dtype(scenario.n_nodes))


@dataclass
class Placement:
    assign: np.ndarray  # R x T int, node index or -1
    powered: np.ndarray | None = None  # N x T bool, None = derived

    @classmethod
    def from_replica_nodes(cls, scenario: Scenario, replica_node: np.ndarray,
                           start_slot: np.ndarray | None = None, powered: np.ndarray | None = None,
                           run_slots: dict[int, np.ndarray] | None = None) -> "Placement":
        """Static placement: replica r on `replica_node[r]` in every slot its workload runs.

        `start_slot[w]` is the start of deferrable workload w (ignored for the others);
        by default each deferrable job starts at its earliest slot. `run_slots[w]`
        (slot indices) gives the slots an interruptible job w runs in instead.
        """
        return cls(_expand(scenario, replica_node, start_slot, run_slots), powered)

    def to_dict(self, scenario: Scenario) -> dict[str, Any]:
        _check_shape(scenario, self)
        ids = scenario.node_ids
        out: dict[str, Any] = {}
        for w, wid in enumerate(scenario.workload_ids):
            r0 = int(scenario.workload_first_replica[w])
            rows = self.assign[r0:r0 + int(scenario.workload_replicas[w])]
            entry: dict[str, Any] = {}
            running = rows >= 0
            if scenario.workload_interruptible[w] and running.any():
                entry["run_slots"] = np.flatnonzero(running.any(axis=0)).tolist()
            elif scenario.workload_deferrable[w] and running.any():
                entry["start_slot"] = int(np.flatnonzero(running.any(axis=0))[0])
            replicas = []
            for row in rows:
                used = np.unique(row[row >= 0])
                expected = _run_slots(scenario, w, entry.get("start_slot"), entry.get("run_slots"))
                if used.size == 1 and np.array_equal(row >= 0, expected):
                    replicas.append(ids[int(used[0])])
                else:
                    replicas.append([ids[int(x)] if x >= 0 else None for x in row])
            entry["replicas"] = replicas
            out[wid] = entry
        doc: dict[str, Any] = {"version": PLACEMENT_VERSION, "scenario": scenario.spec.name, "workloads": out}
        if self.powered is not None:
            down = {scenario.node_ids[i]: np.flatnonzero(~self.powered[i]).tolist()
                    for i in range(scenario.n_nodes) if not self.powered[i].all()}
            doc["powered_down"] = down
        return doc

    @classmethod
    def from_dict(cls, scenario: Scenario, doc: Any, source: str = "<placement>") -> "Placement":
        problems: list[Problem] = []
        if not isinstance(doc, dict) or not isinstance(doc.get("workloads"), dict):
            raise InputError(source, [Problem("workloads", "a placement is a mapping with a 'workloads' mapping")])
        if doc.get("version") != PLACEMENT_VERSION:
            problems.append(Problem("version", f"must be {PLACEMENT_VERSION} (got {doc.get('version')!r})"))
        T = scenario.n_slots
        assign = empty_assign(scenario)
        node_index = {n: i for i, n in enumerate(scenario.node_ids)}
        workload_index = {w: i for i, w in enumerate(scenario.workload_ids)}
        for wid, entry in doc["workloads"].items():
            path = f"workloads.{wid}"
            w = workload_index.get(wid)
            if w is None:
                problems.append(Problem(path, f"unknown workload {wid!r}"))
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("replicas"), list):
                problems.append(Problem(path, "needs a 'replicas' list"))
                continue
            start = entry.get("start_slot")
            if start is not None and (not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < T):
                problems.append(Problem(f"{path}.start_slot", f"must be a slot number 0..{T - 1} (got {start!r})"))
                continue
            run_slots = entry.get("run_slots")
            if run_slots is not None and (
                    not scenario.workload_interruptible[w] or not isinstance(run_slots, list)
                    or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < T for t in run_slots)):
                problems.append(Problem(f"{path}.run_slots", f"is for interruptible jobs: a list of slot numbers "
                                                             f"0..{T - 1} (got {run_slots!r})"))
                continue
            reps = entry["replicas"]
            if len(reps) != scenario.workload_replicas[w]:
                problems.append(Problem(f"{path}.replicas", f"has {len(reps)} entries for {scenario.workload_replicas[w]} replicas"))
                continue
            run = _run_slots(scenario, w, start, run_slots)
            r0 = int(scenario.workload_first_replica[w])
            for k, rep in enumerate(reps):
                if isinstance(rep, str):
                    if rep not in node_index:
                        problems.append(Problem(f"{path}.replicas[{k}]", f"unknown node {rep!r}"))
                        continue
                    assign[r0 + k, run] = node_index[rep]
                elif isinstance(rep, list) and len(rep) == T:
                    for t, n in enumerate(rep):
                        if n is None:
                            continue
                        if not isinstance(n, str) or n not in node_index:
                            problems.append(Problem(f"{path}.replicas[{k}][{t}]", f"unknown node {n!r}"))
                            break
                        assign[r0 + k, t] = node_index[n]
                else:
                    problems.append(Problem(f"{path}.replicas[{k}]", f"must be a node id or a list of {T} node ids (null = not running)"))
        powered = None
        if "powered_down" in doc:
            powered = np.ones((scenario.n_nodes, T), dtype=bool)
            down = doc["powered_down"]
            if not isinstance(down, dict):
                problems.append(Problem("powered_down", "must map node ids to lists of slots"))
            else:
                for nid, slots in down.items():
                    i = node_index.get(nid)
                    ok = isinstance(slots, list) and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < T for s in slots)
                    if i is None:
                        problems.append(Problem(f"powered_down.{nid}", f"unknown node {nid!r}"))
                    elif not ok:
                        problems.append(Problem(f"powered_down.{nid}", f"must be a list of slot numbers 0..{T - 1}"))
                    else:
                        powered[i, slots] = False
        if problems:
            raise InputError(source, problems)
        return cls(assign, powered)

    def save(self, scenario: Scenario, path: str | Path) -> None:
        """Write JSON atomically (write a temporary file, then rename)."""
        from edgeplace.topology.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(scenario), indent=1) + "\n")

    @classmethod
    def load(cls, scenario: Scenario, path: str | Path) -> "Placement":
        from edgeplace.topology.load import read_document

        return cls.from_dict(scenario, read_document(path), source=str(path))


def _run_slots(scenario: Scenario, w: int, start: int | None, run_slots: list[int] | None = None) -> np.ndarray:
    """Bool mask over slots where workload w runs, given a start slot for deferrable jobs
    (or the slots of an interruptible job's runs)."""
    T = scenario.n_slots
    t = np.arange(T)
    if run_slots is not None:
        mask = np.zeros(T, dtype=bool)
        mask[np.asarray(run_slots, dtype=np.int64)] = True
        return mask
    if scenario.workload_deferrable[w]:
        s = int(scenario.workload_earliest_slot[w]) if start is None else int(start)
        return (t >= s) & (t < s + int(scenario.workload_duration_slots[w]))
    return scenario.workload_active[w]


def scenario_run_mask(scenario: Scenario, start_slot: np.ndarray | None = None) -> np.ndarray:
    """R x T bool: where each replica runs, deferrable jobs starting at `start_slot` (default earliest)."""
    W, T = scenario.n_workloads, scenario.n_slots
    start = scenario.workload_earliest_slot.copy()
    if start_slot is not None:  # a start slot is a decision only for deferrable jobs
        start = np.where(scenario.workload_deferrable, np.asarray(start_slot, dtype=np.int64), start)
    t = np.arange(T)[None, :]
    run = (t >= start[:, None]) & (t < start[:, None] + scenario.workload_duration_slots[:, None])
    return run[scenario.replica_workload] if W else np.zeros((0, T), dtype=bool)


def _check_shape(scenario: Scenario, placement: Placement) -> None:
    want = (scenario.n_replicas, scenario.n_slots)
    if np.shape(placement.assign) != want:
        raise ValueError(f"placement has shape {np.shape(placement.assign)}, scenario needs {want} (replicas x slots)")
    if placement.powered is not None and np.shape(placement.powered) != (scenario.n_nodes, scenario.n_slots):
        raise ValueError(f"powered has shape {np.shape(placement.powered)}, scenario needs "
                         f"{(scenario.n_nodes, scenario.n_slots)} (nodes x slots)")


def _expand(scenario: Scenario, replica_node: np.ndarray, start_slot: np.ndarray | None,
            run_slots: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """R x T: each replica's node in the slots its workload runs, one workload at a time (a
    year of slots for thousands of jobs is too large for R x T temporaries)."""
    nodes = np.asarray(replica_node, dtype=np.int64)
    assign = empty_assign(scenario)
    start = scenario.workload_earliest_slot if start_slot is None else np.where(
        scenario.workload_deferrable, np.asarray(start_slot, dtype=np.int64), scenario.workload_earliest_slot)
    first, reps, dur = scenario.workload_first_replica, scenario.workload_replicas, scenario.workload_duration_slots
    for w in range(scenario.n_workloads):
        r0, r1 = int(first[w]), int(first[w] + reps[w])
        if run_slots is not None and w in run_slots:
            assign[r0:r1, np.asarray(run_slots[w], dtype=np.int64)] = nodes[r0:r1, None]
        else:
            s = int(start[w])
            assign[r0:r1, s:s + int(dur[w])] = nodes[r0:r1, None]
    return assign
