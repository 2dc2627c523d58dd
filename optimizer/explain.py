"""Why a plan breaks rules: which workload could not be placed, and the
tightest constraint, in words an operator can act on."""

from __future__ import annotations

import numpy as np

from policies.costs import CostModel
from policies.evaluate import Evaluation, ViolationKind
from topology.placement import Placement


def explain_unplaced(costs: CostModel, placement: Placement, evaluation: Evaluation) -> list[str]:
    """One line per unplaced workload: its eligible nodes and their tightest free resource."""
    sc = costs.scenario
    T = sc.n_slots
    running = placement.assign >= 0
    lines: list[str] = []
    # Requests already placed on each node, worst slot, per resource.
    used = np.zeros((sc.n_nodes, sc.n_slots, len(sc.resources)))
    r_idx, t_idx = np.nonzero(running)
    np.add.at(used, (placement.assign[r_idx, t_idx], t_idx), sc.workload_requests[sc.replica_workload[r_idx]])
    free = sc.node_capacity[:, None, :] - used
    unplaced = np.unique(sc.replica_workload[~running.any(axis=1)])
    for w in unplaced:
        spec = sc.spec.workloads[w]
        missing = int((~running[sc.replica_workload == w].any(axis=1)).sum())
        nodes = np.flatnonzero(costs.eligible[w])
        where = (f"the {len(nodes)} node(s) within {spec.sla.latency_ms:g} ms of users {', '.join(spec.sla.users)}"
                 if spec.sla else f"the {len(nodes)} eligible node(s)")
        need = sc.workload_requests[w]
        worst_free = free[nodes].min(axis=1) if len(nodes) else np.zeros((0, len(sc.resources)))
        # The resource whose best free amount falls shortest of one replica's request.
        short = [(float(worst_free[:, k].max(initial=0) / need[k]) if need[k] else np.inf, k) for k in range(len(sc.resources))]
        ratio, k = min(short)
        res = sc.resources[k]
        lines.append(f"{spec.id}: {missing} of {spec.replicas} replica(s) unplaced; {where} have at most "
                     f"{worst_free[:, k].max(initial=0):g} {res} free in every slot, each replica needs {need[k]:g}")
    for v in evaluation.violations:
        if v.kind is not ViolationKind.schedule or v.subject not in {sc.workload_ids[w] for w in unplaced}:
            lines.append(f"{v.kind.value}: {v.message}")
    _ = T
    return lines
