"""Windows of slots: a long horizon planned a few days at a time, exactly.

A model of a whole year of 30-minute slots (17,568) is far too large to build,
but its deferrable jobs only interact with what runs near them. `slot_window`
cuts the scenario to slots [first, end) around the current plan:

- jobs whose whole window lies inside are *free*: the window's model may move
  them anywhere their rules allow;
- everything else that runs inside is *fixed* where the plan has it: services
  on their nodes, jobs whose window reaches outside (or who started before)
  in the slots the plan gives them, as jobs with exactly that run (an
  interruptible job's runs become one fixed block each);
- the sub-scenario keeps every node, the signals of those slots, and the
  columns of the model (`Window.columns`) restrict the fixed workloads to their
  nodes.

`merge_into` writes the window's plan of the free jobs back into (a copy of) the
whole plan.
The window's objective is the whole plan's over those slots plus a constant
(costs add up slot by slot, except that a battery carries charge across the
window's edges, which the window does not see), so a window that lowers it
lowers the whole plan's: `edgeplace.optimizer.stages.decompose` keeps a
window's plan when the whole plan, priced again, is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from edgeplace.topology.load import compile_spec
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

#: Horizons longer than this are planned by windows of slots (`edgeplace.optimizer.stages.decompose`):
#: a week of 30-minute slots.
LONG_HORIZON_SLOTS = 336


@dataclass
class Window:
    """Slots [first, end) of a scenario around a plan (see the module docstring)."""

    first: int
    end: int
    scenario: Scenario  # the cut scenario, as a planner sees it (forecast series)
    free: dict[int, int]  # window workload index -> scenario workload index, for the jobs that may move
    columns: np.ndarray  # window W x N: the pairs its model may use
    start: Placement  # the plan, cut to the window (the hint)


def slot_window(scenario: Scenario, placement: Placement, first: int, end: int) -> Window | None:
    """The window [first, end) of `scenario` around `placement` (module docstring); None when no
    job is free in it."""
    sc = scenario
    spec = sc.spec
    h = spec.horizon
    slot = timedelta(minutes=h.slot_minutes)
    t0 = h.start + first * slot
    jobs = np.flatnonzero(sc.workload_deferrable)
    inside = jobs[(sc.workload_earliest_slot[jobs] >= first) & (sc.workload_window_end[jobs] <= end)]
    if not len(inside):
        return None
    free_ids = set(inside.tolist())
    workloads: list = []  # the window's workloads
    pinned: list = []     # per window workload: the node it is pinned to, None = free
    source: list = []     # per window workload: scenario workload, or (workload, first slot, last slot, node)
    for w in range(sc.n_workloads):
        wl = spec.workloads[w]
        r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        if w in free_ids:
            workloads.append(wl.model_copy(update={"current": None}))
            pinned.append(None)
            source.append(w)
            continue
        rows = placement.rows(r0, r0 + n, first, end)
        ran = np.flatnonzero((rows >= 0).any(axis=0))
        if not len(ran):
            continue
        if sc.workload_deferrable[w]:  # one block per run inside the window (interruptible: several)
            breaks = np.flatnonzero(np.diff(ran) > 1)
            blocks = list(zip(np.r_[ran[0], ran[breaks + 1]].tolist(), np.r_[ran[breaks], ran[-1]].tolist()))
        else:
            blocks = [(0, end - first - 1)]
        for a, b in blocks:
            nodes, counts = np.unique(rows[:, a][rows[:, a] >= 0], return_counts=True)
            for node, count in zip(nodes.tolist(), counts.tolist()):  # fixed where the plan has it: a piece per node
                update = {"id": f"{wl.id}@{first + a}@{sc.node_ids[node]}", "current": None, "replicas": count,
                          "spread": None}
                if sc.workload_deferrable[w]:
                    update["deferral"] = wl.deferral.model_copy(update={
                        "earliest_start": t0 + a * slot, "deadline": t0 + (b + 1) * slot,
                        "duration_minutes": (b - a + 1) * h.slot_minutes, "interruptible": False,
                        "min_run_minutes": None, "current_run_minutes": 0, "nominal_start": None})
                workloads.append(wl.model_copy(update=update))
                pinned.append(node)
                source.append((w, a, b, node))
    cut = spec.model_copy(update={
        "horizon": h.model_copy(update={"start": t0, "slots": end - first}),
        "workloads": workloads,
        "signals": [s.model_copy(update={"values": s.values[first:end]}) for s in spec.signals]})
    sub = compile_spec(cut, f"{sc.source}@slots{first}-{end}").as_forecast()
    columns = sub.workload_node_eligible.copy()
    free: dict[int, int] = {}
    for i, node in enumerate(pinned):
        if node is None:
            free[i] = source[i]
        else:
            columns[i] = False
            columns[i, node] = True
    return Window(first, end, sub, free, columns, _cut_placement(sc, placement, sub, source, first, end))


def _cut_placement(sc: Scenario, placement: Placement, sub: Scenario, source: list, first: int, end: int) -> Placement:
    """The plan in the window's scenario (rows by the window's workloads)."""
    out = np.full((sub.n_replicas, sub.n_slots), -1, dtype=placement.span_node.dtype)
    for i, origin in enumerate(source):
        s0, n = int(sub.workload_first_replica[i]), int(sub.workload_replicas[i])
        if isinstance(origin, int):  # a free job: its rows as they are
            r0 = int(sc.workload_first_replica[origin])
            out[s0:s0 + n] = placement.rows(r0, r0 + n, first, end)
        else:  # a fixed piece: n replicas on its node in its block
            _w, a, b, node = origin
            out[s0:s0 + n, a:b + 1] = node
    return Placement.from_assign(out)


def merge_into(scenario: Scenario, placement: Placement, window: Window, sub: Placement) -> Placement:
    """`placement` with the window's free jobs moved to where `sub` (a plan of the window) has them."""
    replicas, blocks = [], []
    for i, w in window.free.items():
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        s0 = int(window.scenario.workload_first_replica[i])
        replicas.append(np.arange(r0, r0 + n))
        blocks.append(sub.rows(s0, s0 + n))
    if not replicas:
        return placement
    return placement.with_block(np.concatenate(replicas), window.first, window.end, np.vstack(blocks))
