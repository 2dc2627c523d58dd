"""Between model values and placements: read a solution back, and turn a
placement (the greedy plan) into a hint for the exact solvers."""

from __future__ import annotations

import numpy as np

from edgeplace.optimizer.formulation import Formulation
from edgeplace.policies.costs import CostModel
from edgeplace.topology.placement import Placement


def placement_from_values(form: Formulation, costs: CostModel, values: np.ndarray) -> Placement:
    """Replica-level placement from aggregated counts.

    Replicas whose workload keeps a count on its current node are given that
    node first, so a kept replica is the same replica (no needless move).
    """
    sc = costs.scenario
    W = sc.n_workloads
    replica_node = np.full(sc.n_replicas, -1, dtype=np.int64)
    start = sc.workload_earliest_slot.copy()

    counts: dict[int, list[tuple[int, int]]] = {}
    y = np.rint(values[form.y]).astype(np.int64)
    for w, n, c in zip(form.service_w[y > 0], form.service_n[y > 0], y[y > 0]):
        counts.setdefault(int(w), []).append((int(n), int(c)))
    if len(form.b):
        b = values[form.b]
        for w in np.unique(form.start_j):
            sel = np.flatnonzero(form.start_j == w)
            start[w] = int(form.start_s[sel[np.argmax(b[sel])]])
        x = np.rint(values[form.x]).astype(np.int64)
        chosen = (x > 0) & (form.job_s == start[form.job_j])
        for w, n, c in zip(form.job_j[chosen], form.job_n[chosen], x[chosen]):
            counts.setdefault(int(w), []).append((int(n), int(c)))

    run_slots: dict[int, np.ndarray] = {}
    if len(form.a):
        a = np.rint(values[form.a]).astype(np.int64)
        for w, n, c in zip(form.ijob_w[a > 0], form.ijob_n[a > 0], a[a > 0]):
            counts.setdefault(int(w), []).append((int(n), int(c)))
        runs = values[form.r] > 0.5
        for w in np.unique(form.run_w):
            run_slots[int(w)] = form.run_t[(form.run_w == w) & runs]

    for w in range(W):
        r0, R = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        pool = dict(counts.get(w, []))
        nodes: list[int] = [-1] * R
        current = sc.workload_current[w] or []
        for k, n in enumerate(current[:R]):  # keep replicas that stay
            if pool.get(n, 0) > 0:
                nodes[k] = n
                pool[n] -= 1
        rest = [n for n, c in sorted(pool.items()) for _ in range(c)]
        for k in range(R):
            if nodes[k] < 0 and rest:
                nodes[k] = rest.pop(0)
        replica_node[r0:r0 + R] = nodes
    return Placement.from_replica_nodes(sc, replica_node, start, run_slots=run_slots)


def hint_from_placement(form: Formulation, costs: CostModel, placement: Placement) -> dict[int, float]:
    """Column -> value for the integer decisions of `placement` (y, x, b, a, r, h, o)."""
    sc = costs.scenario
    hint: dict[int, float] = {}
    rep_w = sc.replica_workload
    first_slot, node_of = placement.first_nodes()

    pair = {(int(w), int(n)): i for i, (w, n) in enumerate(zip(form.service_w, form.service_n))}
    count: dict[tuple[int, int], int] = {}
    for r in np.flatnonzero(node_of >= 0):
        key = (int(rep_w[r]), int(node_of[r]))
        count[key] = count.get(key, 0) + 1
    for i, col in enumerate(form.y):
        hint[int(col)] = float(count.get((int(form.service_w[i]), int(form.service_n[i])), 0))
    starts = {int(w): int(first_slot[sc.workload_first_replica[w]]) for w in np.flatnonzero(sc.workload_deferrable)}
    for i, col in enumerate(form.b):
        hint[int(col)] = float(starts.get(int(form.start_j[i])) == int(form.start_s[i]))
    for i, col in enumerate(form.x):
        w, n, s = int(form.job_j[i]), int(form.job_n[i]), int(form.job_s[i])
        hint[int(col)] = float(count.get((w, n), 0)) if starts.get(w) == s else 0.0
    for i, col in enumerate(form.a):
        hint[int(col)] = float(count.get((int(form.ijob_w[i]), int(form.ijob_n[i])), 0))
    if len(form.r):
        runs_in = running_slots(sc, placement)
        for i, col in enumerate(form.r):
            hint[int(col)] = float(runs_in[int(form.run_w[i])][int(form.run_t[i])])
    hosting = np.zeros(sc.n_nodes, dtype=bool)
    hosting[[n for (w, n) in count if not sc.workload_deferrable[w] and (w, n) in pair]] = True
    h_block = form.model.blocks["h"]
    for n in range(sc.n_nodes):
        hint[h_block.start + n] = float(hosting[n])
    powered = placement.hosting(sc.n_nodes) | ~sc.node_can_power_down[:, None]
    for cell, col in enumerate(form.o):
        hint[int(col)] = float(powered.ravel()[cell])
    return hint


def running_slots(scenario, placement: Placement) -> dict[int, np.ndarray]:
    """Interruptible job -> T bool: the slots any of its replicas runs in."""
    out = {}
    for w in np.flatnonzero(scenario.workload_interruptible):
        r0, R = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        out[int(w)] = (placement.rows(r0, r0 + R) >= 0).any(axis=0)
    return out
