"""Deferrable Jobs wait through a Pod scheduling gate until their planned start.

How a pod gets the gate: the Job's pod template carries it,

    spec:
      template:
        metadata:
          annotations: {edgeplace.io/workload: batch/nightly-report}
        spec:
          schedulingGates: [{name: edgeplace.io/deferred}]

so every pod the Job controller creates starts gated (a mutating admission
webhook could add it instead; edgeplace ships none, see docs/KUBERNETES.md).
kube-scheduler does not even try to schedule a gated pod: it sits in
``SchedulingGated``, not ``Unschedulable``, so the cluster autoscaler does
not add nodes for it, which is the point (an unschedulable pod would make
the autoscaler buy capacity for work that should wait).

The planner removes the gate (`remove_gate`) when the time comes
(`due_releases`), for one of these reasons:

=================  ==========================================================
reason             when
=================  ==========================================================
``planned_start``  the plan's start slot of the job has begun
``not_deferred``   the current plan does not treat the job as deferrable
                   (no deadline annotation, window too short, not in the
                   scenario): gates are only for work the plan schedules
``deadline``       its latest start (deadline - duration) has come, plan or
                   no plan: a job never misses its deadline because planning
                   failed
=================  ==========================================================

Without any plan (the planner has not planned yet, or mapping failed) only
``deadline`` releases. Gates can only be removed from a pod, never added
after creation (API validation), so holding is the template's job and
releasing is ours.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

import numpy as np
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgeplace.k8s.identity import controller_ref
from edgeplace.k8s.mapping import (ANN_DEADLINE, ANN_DURATION_MIN, ANN_WORKLOAD, GATE_DEFERRED, ClusterObjects, _annotations,
                         _meta, _name, _namespace, _parse_time, has_gate)
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

log = logging.getLogger("edgeplace.k8s.gates")


@dataclass(frozen=True)
class GatedPod:
    namespace: str
    name: str
    uid: str
    workload: str  # workload id: the pod's / its Job template's edgeplace.io/workload, else namespace/job
    latest_start: datetime | None  # deadline - duration of its Job, when both annotations parse


def gated_pods(objects: ClusterObjects, gate: str = GATE_DEFERRED) -> list[GatedPod]:
    """Pods held by `gate`, with their workload id and latest start."""
    jobs = {(_namespace(j), _name(j)): j for j in objects.jobs}
    out = []
    for pod in objects.pods:
        if not has_gate(pod, gate) or _meta(pod).get("deletionTimestamp"):
            continue
        ns, name = _namespace(pod), _name(pod)
        ref = controller_ref(pod)
        job = jobs.get((ns, ref.get("name"))) if ref and ref.get("kind") == "Job" else None
        workload = _annotations(pod).get(ANN_WORKLOAD)
        latest = None
        if job is not None:
            tmpl = (job.get("spec") or {}).get("template") or {}
            workload = workload or _annotations(tmpl).get(ANN_WORKLOAD) or f"{ns}/{_name(job)}"
            ann = _annotations(job)
            try:
                latest = _parse_time(ann[ANN_DEADLINE]) - timedelta(minutes=float(ann[ANN_DURATION_MIN]))
            except (KeyError, ValueError, OverflowError):
                latest = None
        out.append(GatedPod(ns, name, str(_meta(pod).get("uid") or ""), workload or f"{ns}/{name}", latest))
    return sorted(out, key=lambda g: (g.namespace, g.name))


def planned_starts(scenario: Scenario, placement: Placement) -> dict[str, datetime]:
    """Start time of each deferrable workload the placement runs (first slot any replica runs) [UTC]."""
    starts = {}
    for w in np.flatnonzero(scenario.workload_deferrable):
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        running = np.flatnonzero((placement.rows(r0, r0 + n) >= 0).any(axis=0))
        if running.size:
            starts[scenario.workload_ids[w]] = scenario.slot_time(int(running[0]))
    return starts


def due_releases(gated: Iterable[GatedPod], starts: dict[str, datetime] | None,
                 now: datetime) -> list[tuple[GatedPod, str]]:
    """Which gated pods to release now, and why (see the module docstring).

    `starts` is `planned_starts` of the current plan, or None when there is no plan.
    """
    out = []
    for g in gated:
        if g.latest_start is not None and now >= g.latest_start:
            out.append((g, "deadline"))
        elif starts is None:
            continue
        elif g.workload not in starts:
            out.append((g, "not_deferred"))
        elif now >= starts[g.workload]:
            out.append((g, "planned_start"))
    return out


def remove_gate(core: client.CoreV1Api, namespace: str, name: str, gate: str = GATE_DEFERRED,
                uid: str | None = None, attempts: int = 3) -> bool:
    """Remove `gate` from a pod; True if this call removed it.

    A JSON patch that first *tests* the gate's position, then removes it, so
    a concurrent change of the gate list makes the patch fail (HTTP 422)
    instead of removing someone else's gate; then it re-reads and tries
    again. A pod that is gone, or replaced by another of the same name
    (`uid` differs), or no longer has the gate, is left alone (False).
    """
    for _ in range(attempts):
        try:
            pod = json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if uid and _meta(pod).get("uid") != uid:
            return False
        gates = (pod.get("spec") or {}).get("schedulingGates") or []
        index = next((i for i, g in enumerate(gates) if isinstance(g, dict) and g.get("name") == gate), None)
        if index is None:
            return False
        patch = [{"op": "test", "path": f"/spec/schedulingGates/{index}/name", "value": gate},
                 {"op": "remove", "path": f"/spec/schedulingGates/{index}"}]
        done = json_patch(core.patch_namespaced_pod, namespace, name, patch)
        if done is not None:
            return done
        log.info("gates: pod %s/%s changed while removing %s; retrying", namespace, name, gate)
    return False


def json_patch(patch_call, namespace: str, name: str, patch: list[dict]) -> bool | None:
    """Apply a JSON patch that tests what it changes (`patch_call`: e.g.
    `CoreV1Api.patch_namespaced_pod`): True when applied, False when the object is gone,
    None when it changed meanwhile (409/422: read it again and retry)."""
    try:
        patch_call(name, namespace, patch, _content_type="application/json-patch+json", _preload_content=False)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        if exc.status not in (409, 422):
            raise
        return None
