"""A placement: which node each replica runs on in each slot, and which nodes are powered.

Plain data, read-only once made. Conceptually an R x T table of node indices
(replica r on node `assign[r, t]` in slot t, -1 where it does not run: a
deferrable job outside its run, or a replica left unplaced). It is stored
*by replica, sparsely*: replica r's span is the slots from its first to its
last running slot, and only those are stored (`span_first_slot`,
`span_offset`, `span_node`). A job of a few hours in a year of 30-minute
slots costs a few bytes, not 17,568: 5,000 such jobs are about 50 kB where
the dense table is 84 MiB. A service spans the whole horizon, as dense.

Read it through
- `cells()`: (replica, slot, node) of every running replica-slot, the form
  `edgeplace.policies.evaluate` sums over;
- `rows(r0, r1, first, end)`: a dense block of some replicas' rows (one
  workload's), `column(t)`: every replica's node in one slot,
  `first_nodes()`: each replica's first running slot and node;
- `assign`: the whole dense R x T table (small placements only: tests,
  one-off reports).

`powered[i, t]` says whether node `i` is on; when it is None, a node is on
exactly when it hosts a replica or may not power down.

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
(`node_dtype`): services over a long horizon still span every slot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.scenario import Scenario

PLACEMENT_VERSION = 1
#: Rows of a dense table looked at at once when converting it (no R x T temporaries).
ROW_BLOCK = 256


def node_dtype(n_nodes: int) -> np.dtype:
    """The smallest signed integer type that holds node indices 0..n_nodes-1 and -1."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_nodes <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


class Cells(NamedTuple):
    """The running replica-slots of a placement, sorted by replica then slot (int64 arrays)."""

    replica: np.ndarray
    slot: np.ndarray
    node: np.ndarray


@dataclass(frozen=True, eq=False)
class Placement:
    """R replicas x `n_slots` slots, stored by replica span (see the module docstring).

    Replica r runs in slots `span_first_slot[r]` .. `span_first_slot[r] + len - 1` at most,
    where len = `span_offset[r + 1] - span_offset[r]` (0: it never runs); `span_node` holds its
    node in each of those slots, -1 where it pauses. Make one with `from_assign` (a dense
    table), `from_cells`, `from_replica_nodes` or `from_dict`."""

    n_slots: int
    span_first_slot: np.ndarray  # R int64
    span_offset: np.ndarray  # R + 1 int64, non-decreasing, from 0
    span_node: np.ndarray  # node index per span slot (node_dtype), -1 = not running there
    powered: np.ndarray | None = None  # N x T bool, None = derived

    def __post_init__(self) -> None:
        R = len(self.span_first_slot)
        if len(self.span_offset) != R + 1 or self.span_offset[-1] != len(self.span_node):
            raise ValueError(f"placement spans do not add up: {R} replicas, {len(self.span_offset)} offsets, "
                             f"{len(self.span_node)} span slots")
        for a in (self.span_first_slot, self.span_offset, self.span_node):
            a.setflags(write=False)  # shared between placements made from one another

    # -- making one ----------------------------------------------------------
    @classmethod
    def from_assign(cls, assign: np.ndarray, powered: np.ndarray | None = None) -> "Placement":
        """From a dense R x T table of node indices (-1 = not running)."""
        assign = np.asarray(assign)
        if assign.ndim != 2:
            raise ValueError(f"a placement table is replicas x slots (2-D), got shape {assign.shape}")
        R, T = assign.shape
        if assign.size and assign.min() < -1:
            raise ValueError(f"placement names node indices down to {int(assign.min())}; -1 is 'not running'")
        dtype = node_dtype(int(assign.max(initial=-1)) + 1)
        first, length, nodes = np.zeros(R, dtype=np.int64), np.zeros(R, dtype=np.int64), []
        t = np.arange(T)
        for a in range(0, R, ROW_BLOCK):
            block = assign[a:a + ROW_BLOCK]
            running = block >= 0
            ran = running.any(axis=1)
            lo = np.argmax(running, axis=1)
            hi = T - np.argmax(running[:, ::-1], axis=1)  # one past the last running slot
            first[a:a + len(block)] = np.where(ran, lo, 0)
            length[a:a + len(block)] = np.where(ran, hi - lo, 0)
            nodes.append(block[(t >= lo[:, None]) & (t < hi[:, None]) & ran[:, None]].astype(dtype))
        return cls(T, first, np.r_[0, np.cumsum(length)], np.concatenate(nodes) if nodes else np.zeros(0, dtype),
                   powered)

    @classmethod
    def from_cells(cls, n_replicas: int, n_slots: int, replica: np.ndarray, slot: np.ndarray, node: np.ndarray,
                   powered: np.ndarray | None = None, dtype: np.dtype | None = None) -> "Placement":
        """From running replica-slots, each named once, in any order."""
        replica, slot, node = (np.asarray(x, dtype=np.int64) for x in (replica, slot, node))
        if len(replica) and not (0 <= replica.min() and replica.max() < n_replicas and 0 <= slot.min()
                                 and slot.max() < n_slots and node.min() >= 0):
            raise ValueError(f"cells name replicas {int(replica.min())}..{int(replica.max())} (valid 0.."
                             f"{n_replicas - 1}), slots {int(slot.min())}..{int(slot.max())} (valid 0..{n_slots - 1}) "
                             f"and nodes from {int(node.min())} (valid from 0)")
        first = np.zeros(n_replicas, dtype=np.int64)
        length = np.zeros(n_replicas, dtype=np.int64)
        if len(replica):
            lo = np.full(n_replicas, n_slots, dtype=np.int64)
            hi = np.full(n_replicas, -1, dtype=np.int64)
            np.minimum.at(lo, replica, slot)
            np.maximum.at(hi, replica, slot)
            ran = hi >= 0
            first[ran], length[ran] = lo[ran], hi[ran] - lo[ran] + 1
        offset = np.r_[0, np.cumsum(length)]
        dtype = node_dtype(int(node.max(initial=-1)) + 1) if dtype is None else dtype
        span_node = np.full(int(offset[-1]), -1, dtype=dtype)
        span_node[offset[replica] + slot - first[replica]] = node
        return cls(n_slots, first, offset, span_node, powered)

    @classmethod
    def from_replica_nodes(cls, scenario: Scenario, replica_node: np.ndarray,
                           start_slot: np.ndarray | None = None, powered: np.ndarray | None = None,
                           run_slots: dict[int, np.ndarray] | None = None) -> "Placement":
        """Static placement: replica r on `replica_node[r]` in every slot its workload runs.

        `start_slot[w]` is the start of deferrable workload w (ignored for the others);
        by default each deferrable job starts at its earliest slot. `run_slots[w]`
        (slot indices) gives the slots an interruptible job w runs in instead.
        """
        sc = scenario
        nodes = np.asarray(replica_node, dtype=np.int64)
        start = sc.workload_earliest_slot if start_slot is None else np.where(
            sc.workload_deferrable, np.asarray(start_slot, dtype=np.int64), sc.workload_earliest_slot)
        # Per workload, its span: a job's block from its start, a service's from slot 0 for the
        # horizon, an interruptible job's from its first to its last run slot (paused between).
        lo = start.astype(np.int64)
        hi = np.minimum(lo + sc.workload_duration_slots, sc.n_slots)
        paused: dict[int, np.ndarray] = {}  # workload -> span slots it does not run in
        for w, slots in (run_slots or {}).items():
            ran = np.unique(np.asarray(slots, dtype=np.int64))
            lo[w], hi[w] = (ran[0], ran[-1] + 1) if len(ran) else (0, 0)
            paused[w] = np.setdiff1d(np.arange(lo[w], hi[w]), ran) - lo[w]
        rep_w = sc.replica_workload
        placed = nodes >= 0  # an unplaced replica has no span
        length = np.where(placed, np.maximum(hi - lo, 0)[rep_w], 0)
        offset = np.r_[0, np.cumsum(length)]
        span_node = np.repeat(nodes, length).astype(node_dtype(sc.n_nodes))
        for w, gaps in paused.items():
            for r in range(int(sc.workload_first_replica[w]), int(sc.workload_first_replica[w] + sc.workload_replicas[w])):
                if length[r]:
                    span_node[offset[r] + gaps] = -1
        return cls(sc.n_slots, np.where(length > 0, lo[rep_w], 0), offset, span_node, powered)

    def with_block(self, replicas: np.ndarray, first: int, end: int, block: np.ndarray) -> "Placement":
        """A copy in which `replicas` (row indices) run as `block` (len(replicas) x (end - first),
        -1 = not running) in slots [first, end) and as before outside them."""
        replicas = np.asarray(replicas, dtype=np.int64)
        c = self.cells()
        keep = ~(np.isin(c.replica, replicas) & (c.slot >= first) & (c.slot < end))
        i, t = np.nonzero(np.asarray(block) >= 0)
        return Placement.from_cells(
            self.n_replicas, self.n_slots, np.r_[c.replica[keep], replicas[i]], np.r_[c.slot[keep], first + t],
            np.r_[c.node[keep], np.asarray(block)[i, t]], self.powered, self.span_node.dtype)

    def with_powered(self, powered: np.ndarray | None) -> "Placement":
        """The same replicas with node power states `powered` (N x T bool, None = derived)."""
        return replace(self, powered=powered)

    # -- reading it ----------------------------------------------------------
    @property
    def n_replicas(self) -> int:
        return len(self.span_first_slot)

    @property
    def shape(self) -> tuple[int, int]:
        """(replicas, slots), the dense table's shape."""
        return self.n_replicas, self.n_slots

    @cached_property
    def span_slots(self) -> np.ndarray:
        """R: how many slots each replica's span covers."""
        return np.diff(self.span_offset)

    @cached_property
    def _all_cells(self) -> Cells:
        length = self.span_slots
        replica = np.repeat(np.arange(self.n_replicas), length)
        slot = np.repeat(self.span_first_slot - self.span_offset[:-1], length) + np.arange(len(self.span_node))
        keep = self.span_node >= 0
        out = Cells(replica[keep], slot[keep], self.span_node[keep].astype(np.int64))
        for a in out:
            a.setflags(write=False)
        return out

    def cells(self) -> Cells:
        """Every running replica-slot, sorted by replica then slot (computed once, read-only)."""
        return self._all_cells

    def rows(self, r0: int, r1: int, first: int = 0, end: int | None = None) -> np.ndarray:
        """Dense (r1 - r0) x (end - first): the nodes of replicas r0..r1-1 in slots [first, end)."""
        end = self.n_slots if end is None else end
        out = np.full((r1 - r0, end - first), -1, dtype=self.span_node.dtype)
        starts, offsets = self.span_first_slot[r0:r1].tolist(), self.span_offset[r0:r1 + 1].tolist()
        for i, (s, a, b) in enumerate(zip(starts, offsets, offsets[1:])):  # a few rows: one workload's
            lo, hi = max(s, first), min(s + b - a, end)  # the span's part inside [first, end)
            if lo < hi:
                out[i, lo - first:hi - first] = self.span_node[a + lo - s:a + hi - s]
        return out

    def column(self, slot: int) -> np.ndarray:
        """R: every replica's node in `slot` (-1 = not running)."""
        out = np.full(self.n_replicas, -1, dtype=self.span_node.dtype)
        inside = (self.span_first_slot <= slot) & (slot < self.span_first_slot + self.span_slots)
        out[inside] = self.span_node[self.span_offset[:-1][inside] + slot - self.span_first_slot[inside]]
        return out

    def first_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """R each: every replica's first running slot and its node there (-1, -1: never runs)."""
        c = self.cells()
        slot = np.full(self.n_replicas, -1, dtype=np.int64)
        node = np.full(self.n_replicas, -1, dtype=np.int64)
        replicas, at = np.unique(c.replica, return_index=True)
        slot[replicas], node[replicas] = c.slot[at], c.node[at]
        return slot, node

    def hosting(self, n_nodes: int) -> np.ndarray:
        """N x T bool: the node hosts a running replica in the slot."""
        c = self.cells()
        out = np.zeros((n_nodes, self.n_slots), dtype=bool)
        out[c.node, c.slot] = True
        return out

    @property
    def assign(self) -> np.ndarray:
        """The dense R x T table (read-only). One byte per replica-slot: for small placements
        (tests, a report); planning reads `cells`, `rows` and `column`."""
        c = self.cells()
        out = np.full(self.shape, -1, dtype=self.span_node.dtype)
        out[c.replica, c.slot] = c.node
        out.setflags(write=False)
        return out

    # -- on disk -------------------------------------------------------------
    def to_dict(self, scenario: Scenario) -> dict[str, Any]:
        _check_shape(scenario, self)
        ids = scenario.node_ids
        out: dict[str, Any] = {}
        for w, wid in enumerate(scenario.workload_ids):
            r0 = int(scenario.workload_first_replica[w])
            rows = self.rows(r0, r0 + int(scenario.workload_replicas[w]))
            entry: dict[str, Any] = {}
            running = rows >= 0
            if scenario.workload_interruptible[w] and running.any():
                entry["run_slots"] = np.flatnonzero(running.any(axis=0)).tolist()
            elif scenario.workload_deferrable[w] and running.any():
                entry["start_slot"] = int(np.flatnonzero(running.any(axis=0))[0])
            replicas = []
            expected = _run_mask(scenario, w, entry.get("start_slot"), entry.get("run_slots"))
            for row in rows:
                used = np.unique(row[row >= 0])
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
        cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (replica, slot, node) per replica read
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
            run = np.flatnonzero(_run_mask(scenario, w, start, run_slots))
            r0 = int(scenario.workload_first_replica[w])
            for k, rep in enumerate(reps):
                if isinstance(rep, str):
                    if rep not in node_index:
                        problems.append(Problem(f"{path}.replicas[{k}]", f"unknown node {rep!r}"))
                        continue
                    cells.append((np.full(len(run), r0 + k), run, np.full(len(run), node_index[rep])))
                elif isinstance(rep, list) and len(rep) == T:
                    slots = [t for t, n in enumerate(rep) if n is not None]
                    bad = next((t for t in slots if not isinstance(rep[t], str) or rep[t] not in node_index), None)
                    if bad is not None:
                        problems.append(Problem(f"{path}.replicas[{k}][{bad}]", f"unknown node {rep[bad]!r}"))
                        slots = slots[:slots.index(bad)]
                    cells.append((np.full(len(slots), r0 + k), np.array(slots, dtype=np.int64),
                                  np.array([node_index[rep[t]] for t in slots], dtype=np.int64)))
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
        replica, slot, node = (np.concatenate([c[i] for c in cells]) if cells else np.zeros(0, np.int64) for i in range(3))
        return cls.from_cells(scenario.n_replicas, T, replica, slot, node, powered, node_dtype(scenario.n_nodes))

    def save(self, scenario: Scenario, path: str | Path) -> None:
        """Write JSON atomically (write a temporary file, then rename)."""
        from edgeplace.topology.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(scenario), indent=1) + "\n")

    @classmethod
    def load(cls, scenario: Scenario, path: str | Path) -> "Placement":
        from edgeplace.topology.load import read_document

        return cls.from_dict(scenario, read_document(path), source=str(path))


def _mask(n_slots: int, slots) -> np.ndarray:
    mask = np.zeros(n_slots, dtype=bool)
    mask[np.asarray(slots, dtype=np.int64)] = True
    return mask


def _run_mask(scenario: Scenario, w: int, start: int | None, run_slots: list[int] | None = None) -> np.ndarray:
    """T bool: where workload w runs, given a start slot for deferrable jobs (or the slots of an
    interruptible job's runs)."""
    T = scenario.n_slots
    if run_slots is not None:
        return _mask(T, run_slots)
    s = int(scenario.workload_earliest_slot[w]) if start is None or not scenario.workload_deferrable[w] else int(start)
    return _mask(T, np.arange(s, min(s + int(scenario.workload_duration_slots[w]), T)))


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
    if placement.shape != want:
        raise ValueError(f"placement has shape {placement.shape}, scenario needs {want} (replicas x slots)")
    if placement.powered is not None and np.shape(placement.powered) != (scenario.n_nodes, scenario.n_slots):
        raise ValueError(f"powered has shape {np.shape(placement.powered)}, scenario needs "
                         f"{(scenario.n_nodes, scenario.n_slots)} (nodes x slots)")
