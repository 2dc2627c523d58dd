"""edgeplace.k8s.suspend: which interruptible Jobs to suspend or resume, and their run time.

The API calls themselves run against a real kube-apiserver in tests/e2e/test_suspend_e2e.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from edgeplace.k8s.suspend import InterruptibleJob, due_changes, interruptible_jobs, progress_of, running_in_slot
from edgeplace.topology import Placement
from tests.builders import ScenarioBuilder

NOW = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)


def _job(suspend: bool, run_minutes=None, since=None, deadline="2026-06-21T14:00:00Z", duration="120",
         interruptible="true") -> dict:
    ann = {"edgeplace.io/deadline": deadline, "edgeplace.io/duration-minutes": duration,
           "edgeplace.io/interruptible": interruptible}
    if run_minutes is not None:
        ann["edgeplace.io/run-minutes"] = run_minutes
    if since is not None:
        ann["edgeplace.io/running-since"] = since
    return {"metadata": {"name": "train", "namespace": "ml", "uid": "u1", "annotations": ann},
            "spec": {"suspend": suspend, "template": {}}, "status": {}}


def test_progress_counts_the_run_going_on():
    assert progress_of(_job(True, run_minutes="45"), NOW) == (45.0, 0.0)
    assert progress_of(_job(False, run_minutes="45", since="2026-06-21T09:30:00Z"), NOW) == (75.0, 30.0)
    assert progress_of(_job(False), NOW) == (0.0, 0.0)


def test_only_jobs_that_opted_in_are_managed():
    jobs = interruptible_jobs([_job(True), _job(True, interruptible="false")], {("ml", "train"): "ml/train"}, NOW)
    assert [(j.workload, j.suspended, j.left_minutes) for j in jobs] == [("ml/train", True, 120.0)]


def _managed(suspended: bool, left: float, deadline: datetime | None = NOW + timedelta(hours=4)) -> InterruptibleJob:
    return InterruptibleJob("ml", "train", "u1", "ml/train", suspended, 0.0, left, deadline)


@pytest.mark.parametrize("job,planned,expected", [
    (_managed(True, 60), {"ml/train"}, [(False, "plan")]),        # the plan runs it now: resume
    (_managed(False, 60), set(), [(True, "plan")]),                # the plan pauses it: suspend
    (_managed(False, 60), {"ml/train"}, []),                       # already as planned
    (_managed(True, 60), None, []),                                # no plan: wait ...
    (_managed(True, 240), None, [(False, "deadline")]),            # ... unless the deadline needs it to run now
    (_managed(False, 240), set(), []),                             # never suspended when it must run
    (_managed(True, 0), {"ml/train"}, []),                         # nothing left to run
])
def test_due_changes(job, planned, expected):
    assert [(suspend, reason) for _, suspend, reason in due_changes([job], planned, NOW)] == expected


def test_running_in_slot_reads_the_plans_first_slot():
    sc = (ScenarioBuilder().slots(3).region("DE", 300).site("a").node("n1").tenant("t")
          .workload("ml/train", window=(0, 3), duration_minutes=60, interruptible=True).build())
    assign = np.array([[-1, 0, -1]])
    assert running_in_slot(sc, Placement.from_assign(assign), 0) == set()
    assert running_in_slot(sc, Placement.from_assign(assign), 1) == {"ml/train"}
