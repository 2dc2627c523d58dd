"""Why a plan breaks rules: which workload could not be placed, and the
tightest constraint, in words an operator can act on."""

from __future__ import annotations

import numpy as np

from edgeplace.policies.costs import CostModel
from edgeplace.policies.evaluate import Evaluation, ViolationKind
from edgeplace.topology.placement import Placement


def explain_unplaced(costs: CostModel, placement: Placement, evaluation: Evaluation) -> list[str]:
    """One line per unplaced workload: its eligible nodes and their tightest free resource."""
    sc = costs.scenario
    T = sc.n_slots
    r_idx, t_idx, node = placement.cells()
    lines: list[str] = []
    # Requests already placed on each node, worst slot, per resource.
    used = np.zeros((sc.n_nodes, sc.n_slots, len(sc.resources)))
    np.add.at(used, (node, t_idx), sc.workload_requests[sc.replica_workload[r_idx]])
    free = sc.node_capacity[:, None, :] - used
    never_runs = np.bincount(r_idx, minlength=sc.n_replicas) == 0
    unplaced = np.unique(sc.replica_workload[never_runs])
    for w in unplaced:
        spec = sc.spec.workloads[w]
        missing = int(never_runs[sc.replica_workload == w].sum())
        nodes = np.flatnonzero(costs.eligible[w])
        where = (f"the {len(nodes)} node(s) within {spec.sla.latency_ms:g} ms of users {', '.join(spec.sla.users)}"
                 if spec.sla else f"the {len(nodes)} eligible node(s)")
        need = sc.workload_requests[w]
        worst_free = free[nodes].min(axis=1) if len(nodes) else np.zeros((0, len(sc.resources)))
        # The resource whose best free amount falls shortest of one replica's request.
        short = [(float(worst_free[:, k].max(initial=0) / need[k]) if need[k] else np.inf, k) for k in range(len(sc.resources))]
        ratio, k = min(short)
        res = sc.resources[k]
        head = f"{spec.id}: {missing} of {spec.replicas} replica(s) unplaced; {where}"
        if ratio >= 1:  # some node has room for a replica: a rule that depends on the placement blocks it
            lines.append(head + _blocking_rule(sc, w, nodes[(worst_free >= need).all(axis=1)], placement))
            continue
        lines.append(f"{head} have at most {worst_free[:, k].max(initial=0):g} {res} free in every slot, "
                     f"each replica needs {need[k]:g}")
    for v in evaluation.violations:
        if v.kind is not ViolationKind.schedule or v.subject not in {sc.workload_ids[w] for w in unplaced}:
            lines.append(f"{v.kind.value}: {v.message}")
    _ = T
    return lines


def _blocking_rule(sc, w: int, roomy: np.ndarray, placement: Placement) -> str:
    """Why workload w is out although the nodes `roomy` have room for a replica: a
    never_with rival of its tenant runs there, its spread rule, or its tenant's quota."""
    tenant = sc.workload_tenant[w]
    rivals = set(np.flatnonzero(sc.tenant_conflicts[tenant]).tolist())
    r_idx, t_idx, node = placement.cells()
    on_roomy = np.isin(node, roomy)
    present = {int(m) for m in sc.workload_tenant[sc.replica_workload[r_idx[on_roomy]]]}
    blocked = sorted(sc.tenant_ids[m] for m in present & rivals)
    if blocked:
        return (f" have room for a replica, but tenant {sc.tenant_ids[tenant]} never shares a node with "
                f"{', '.join(blocked)}, which runs there")
    if sc.workload_min_sites[w] > 1:
        return f" have room for a replica, but its replicas must spread over {sc.workload_min_sites[w]} sites"
    quota = sc.tenant_quota[tenant]  # K, inf = none
    if np.isfinite(quota).any():
        # The tenant's summed requests per slot and resource, over the slots w could run in.
        use = np.zeros((sc.n_slots, len(sc.resources)))
        mine = sc.workload_tenant[sc.replica_workload[r_idx]] == tenant
        np.add.at(use, t_idx[mine], sc.workload_requests[sc.replica_workload[r_idx[mine]]])
        first = int(sc.workload_earliest_slot[w])
        last = int(sc.workload_latest_start_slot[w] + sc.workload_duration_slots[w])
        short = np.flatnonzero((use[first:last] + sc.workload_requests[w] > quota + 1e-9).all(axis=0))
        if len(short):
            k = int(short[0])
            return (f" have room for a replica, but tenant {sc.tenant_ids[tenant]}'s {sc.resources[k]} quota of "
                    f"{quota[k]:g} leaves less than {sc.workload_requests[w, k]:g} in every slot it could run in")
    return " have room for a replica, but a rule on the placement as a whole keeps it out"
