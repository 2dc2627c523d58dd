"""Interruptible Jobs pause and resume through Job suspension (`spec.suspend`).

A checkpointing batch Job opts in with annotations,

    metadata:
      annotations:
        edgeplace.io/deadline: "2026-06-22T06:00:00Z"
        edgeplace.io/duration-minutes: "240"
        edgeplace.io/interruptible: "true"
        edgeplace.io/min-run-minutes: "60"       # optional
    spec:
      suspend: true                              # edgeplace starts it

and the plan decides, slot by slot, whether it runs. Where deferrable Jobs
wait once through a scheduling gate (`edgeplace.k8s.gates`), an interruptible
Job is suspended and resumed as often as its plan says: suspending a Job
makes the Job controller delete its running pods, resuming lets it create
them again (the work resumes from the job's own checkpoint). Kubernetes keeps
no count of how long a Job has run, so edgeplace does, on the Job:

=================================  ==================================================
annotation                         meaning
=================================  ==================================================
``edgeplace.io/run-minutes``       minutes the Job ran before its latest resume
``edgeplace.io/running-since``     when edgeplace last resumed it (absent: suspended)
=================================  ==================================================

The mapping (`edgeplace.k8s.mapping`) keeps such a Job in the scenario,
suspended or running, with the rest of its run as an interruptible deferral
(a run going on counts as its current run). `due_changes` compares what runs
with the plan's slot 0 and a safety rule: a Job whose remaining run time no
longer fits before its deadline runs, plan or no plan.
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

from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

log = logging.getLogger("edgeplace.k8s.suspend")

ANN_INTERRUPTIBLE = "edgeplace.io/interruptible"
ANN_MIN_RUN_MIN = "edgeplace.io/min-run-minutes"
ANN_RUN_MINUTES = "edgeplace.io/run-minutes"
ANN_RUNNING_SINCE = "edgeplace.io/running-since"


@dataclass(frozen=True)
class InterruptibleJob:
    namespace: str
    name: str
    uid: str
    workload: str  # the workload id in the scenario
    suspended: bool
    run_minutes: float  # minutes run so far, the run going on included
    left_minutes: float  # run time still to go
    deadline: datetime | None


def _minutes(text: str | None) -> float:
    try:
        return max(float(text), 0.0) if text is not None else 0.0
    except ValueError:
        return 0.0


def _time(text: str | None) -> datetime | None:
    from edgeplace.k8s.mapping import _parse_time

    try:
        return _parse_time(text) if text else None
    except ValueError:
        return None


def progress_of(job: dict, now: datetime) -> tuple[float, float]:
    """(minutes run, of which minutes of the run going on) from a Job's annotations."""
    ann = ((job.get("metadata") or {}).get("annotations")) or {}
    since = _time(ann.get(ANN_RUNNING_SINCE))
    going = max((now - since).total_seconds() / 60, 0.0) if since and not (job.get("spec") or {}).get("suspend") else 0.0
    return _minutes(ann.get(ANN_RUN_MINUTES)) + going, going


def is_interruptible(job: dict) -> bool:
    from edgeplace.k8s.mapping import ANN_DEADLINE, _truthy

    meta = job.get("metadata") or {}
    if "kueue.x-k8s.io/queue-name" in (meta.get("labels") or {}):
        return False  # Kueue suspends and admits the Jobs of its queues: their spec.suspend is not ours
    ann = meta.get("annotations") or {}
    return bool(_truthy(ann.get(ANN_INTERRUPTIBLE, ""))) and ANN_DEADLINE in ann


def interruptible_jobs(jobs: Iterable[dict], workload_ids: dict[tuple[str, str], str], now: datetime
                       ) -> list[InterruptibleJob]:
    """The Jobs that opted in (module docstring), with their progress; `workload_ids` maps
    (namespace, name) to the scenario's workload id."""
    from edgeplace.k8s.mapping import ANN_DEADLINE, ANN_DURATION_MIN, _job_finished

    out = []
    for job in jobs:
        if not is_interruptible(job) or _job_finished(job):
            continue
        meta = job.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        ann = meta.get("annotations") or {}
        ran, _ = progress_of(job, now)
        out.append(InterruptibleJob(ns, name, str(meta.get("uid") or ""), workload_ids.get((ns, name), f"{ns}/{name}"),
                                    bool((job.get("spec") or {}).get("suspend")), ran,
                                    max(_minutes(ann.get(ANN_DURATION_MIN)) - ran, 0.0), _time(ann.get(ANN_DEADLINE))))
    return sorted(out, key=lambda j: (j.namespace, j.name))


def running_in_slot(scenario: Scenario, placement: Placement, slot: int = 0) -> set[str]:
    """Interruptible workloads the placement runs in `slot`."""
    now = placement.column(slot)
    out = set()
    for w in np.flatnonzero(scenario.workload_interruptible):
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        if (now[r0:r0 + n] >= 0).any():
            out.add(scenario.workload_ids[w])
    return out


def due_changes(jobs: Iterable[InterruptibleJob], planned: set[str] | None, now: datetime
                ) -> list[tuple[InterruptibleJob, bool, str]]:
    """(job, suspend?, reason) for the Jobs whose state should change now.

    reason ``deadline``: the run left no longer fits before the deadline, so it runs whatever the
    plan says (or there is no plan); ``plan``: the plan's slot 0 runs it (resume) or not (suspend).
    Without a plan (None) only the deadline rule acts; jobs with nothing left are left alone.
    """
    out = []
    for job in jobs:
        if job.left_minutes <= 0:
            continue
        must = job.deadline is not None and now + timedelta(minutes=job.left_minutes) >= job.deadline
        if must:
            if job.suspended:
                out.append((job, False, "deadline"))
            continue
        if planned is None:
            continue
        run = job.workload in planned
        if run == job.suspended:
            out.append((job, not run, "plan"))
    return out


def set_suspended(batch: client.BatchV1Api, job: InterruptibleJob, suspend: bool, now: datetime,
                  attempts: int = 3) -> bool:
    """Suspend or resume a Job and keep its run time (module docstring); True if this call changed
    it. The patch tests the Job's resourceVersion, so a concurrent change makes it fail (409/422)
    and it is read again; a Job that is gone, replaced (uid) or already so is left alone."""
    from edgeplace.k8s.gates import json_patch  # gates reads the mapping, which reads this module

    for _ in range(attempts):
        try:
            obj = json.loads(batch.read_namespaced_job(job.name, job.namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        meta = obj.get("metadata") or {}
        if job.uid and meta.get("uid") != job.uid:
            return False
        if bool((obj.get("spec") or {}).get("suspend")) == suspend:
            return False
        ran, _ = progress_of(obj, now)
        ann = dict(meta.get("annotations") or {})
        ann[ANN_RUN_MINUTES] = f"{round(ran, 1):g}"  # to 6 s: running-since is kept to the second
        if suspend:
            ann.pop(ANN_RUNNING_SINCE, None)
        else:
            ann[ANN_RUNNING_SINCE] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
                 {"op": "replace" if "annotations" in meta else "add", "path": "/metadata/annotations", "value": ann},
                 {"op": "replace" if "suspend" in (obj.get("spec") or {}) else "add", "path": "/spec/suspend",
                  "value": suspend}]
        done = json_patch(batch.patch_namespaced_job, job.namespace, job.name, patch)
        if done:
            log.info("suspend: %s Job %s/%s (%g min run)", "suspended" if suspend else "resumed", job.namespace,
                     job.name, ran)
        if done is not None:
            return done
    return False


def workload_id(job: dict) -> str:
    """The scenario's id of a Job: its pod template's edgeplace.io/workload, else namespace/name."""
    from edgeplace.k8s.mapping import ANN_WORKLOAD

    meta = job.get("metadata") or {}
    template = (job.get("spec") or {}).get("template") or {}
    explicit = ((template.get("metadata") or {}).get("annotations") or {}).get(ANN_WORKLOAD)
    return explicit or f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def apply(api_client, jobs: Iterable[dict], planned: set[str] | None, now: datetime) -> list[tuple[str, str]]:
    """Suspend and resume the interruptible Jobs as `due_changes` says; (job, "suspend: reason" or
    "resume: reason") for each one changed. API errors are logged, not raised (the next round retries)."""
    jobs = list(jobs)
    ids = {((j.get("metadata") or {}).get("namespace", "default"), (j.get("metadata") or {}).get("name", "")):
           workload_id(j) for j in jobs}
    batch = client.BatchV1Api(api_client)
    done = []
    for job, suspend, reason in due_changes(interruptible_jobs(jobs, ids, now), planned, now):
        try:
            if set_suspended(batch, job, suspend, now):
                done.append((f"job {job.namespace}/{job.name}", f"{'suspend' if suspend else 'resume'}: {reason}"))
        except ApiException as exc:
            log.warning("suspend: cannot %s Job %s/%s: HTTP %s %s", "suspend" if suspend else "resume",
                        job.namespace, job.name, exc.status, exc.reason)
    return done


__all__ = ["apply", "workload_id", "ANN_INTERRUPTIBLE", "ANN_MIN_RUN_MIN", "ANN_RUN_MINUTES", "ANN_RUNNING_SINCE", "InterruptibleJob",
           "due_changes", "interruptible_jobs", "is_interruptible", "progress_of", "running_in_slot", "set_suspended"]
