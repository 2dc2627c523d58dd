"""Interruptible Jobs paused and resumed through Job suspension on a real cluster.

kube-apiserver, kube-scheduler, kube-controller-manager (its Job controller
creates and deletes the pods) and kwok (the pods run). `edgeplace.k8s.suspend`
resumes a suspended Job when the plan runs it, suspends it when the plan
pauses it, and keeps its run time on the Job.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
import pytest
from kubernetes import client

from edgeplace.k8s import suspend
from edgeplace.k8s.mapping import read_cluster

pytestmark = pytest.mark.e2e

WAIT = 60.0  # seconds for any single condition


@pytest.fixture(scope="module")
def cluster(e2e_binaries):
    with e2e_cluster.LocalCluster(controller_manager=True, kwok=True) as running:
        core = client.CoreV1Api(running.api_client())
        e2e_cluster.create_kwok_node(core, "kw-1", cpu="4", memory="8Gi", pods="20")
        e2e_cluster.wait_for(lambda: e2e_cluster.node_ready(core.read_node("kw-1")), WAIT, "kw-1 Ready")
        yield running


def _job(name: str) -> dict:
    deadline = (datetime.now(timezone.utc) + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "annotations": {
                "edgeplace.io/deadline": deadline, "edgeplace.io/duration-minutes": "120",
                "edgeplace.io/interruptible": "true", "edgeplace.io/min-run-minutes": "30"}},
            "spec": {"suspend": True, "parallelism": 1, "completions": 1, "template": {
                "metadata": {"labels": {"job": name}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "work", "image": "registry.invalid/train",
                    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}}}}


def _pods(core, name: str) -> list:
    return [p for p in core.list_namespaced_pod("default", label_selector=f"job={name}").items
            if not p.metadata.deletion_timestamp]


def test_a_job_is_resumed_when_the_plan_runs_it_and_suspended_when_it_pauses(cluster):
    api_client = cluster.api_client()
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    batch.create_namespaced_job("default", _job("train"))
    t0 = datetime.now(timezone.utc)
    jobs = read_cluster(api_client).jobs
    assert [j.workload for j in suspend.interruptible_jobs(jobs, {}, t0)] == ["default/train"]
    assert _pods(core, "train") == []  # suspended: the Job controller creates no pod

    # The plan runs it in slot 0: resumed, and the Job controller's pod runs on the kwok node.
    assert suspend.apply(api_client, jobs, {"default/train"}, t0) == [("job default/train", "resume: plan")]
    job = batch.read_namespaced_job("train", "default")
    assert job.spec.suspend is False
    assert job.metadata.annotations["edgeplace.io/running-since"] == t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    e2e_cluster.wait_for(lambda: [p for p in _pods(core, "train") if p.status.phase == "Running"], WAIT,
                         "the resumed Job's pod running")

    # 40 minutes later the plan pauses it: suspended, its pod deleted, 40 minutes on the Job.
    t1 = t0 + timedelta(minutes=40)
    jobs = read_cluster(api_client).jobs
    assert suspend.apply(api_client, jobs, set(), t1) == [("job default/train", "suspend: plan")]
    job = batch.read_namespaced_job("train", "default")
    assert job.spec.suspend is True
    assert job.metadata.annotations["edgeplace.io/run-minutes"] == "40"
    assert "edgeplace.io/running-since" not in job.metadata.annotations
    e2e_cluster.wait_for(lambda: not _pods(core, "train"), WAIT, "the suspended Job's pod deleted")

    # Nothing changes while the plan agrees; without a plan the deadline rule alone acts.
    jobs = read_cluster(api_client).jobs
    assert suspend.apply(api_client, jobs, set(), t1) == []
    late = t1 + timedelta(hours=5)  # 80 min left, deadline in 20: it must run now
    assert suspend.apply(api_client, jobs, None, late) == [("job default/train", "resume: deadline")]
    assert batch.read_namespaced_job("train", "default").spec.suspend is False


def test_a_job_replaced_under_the_same_name_is_left_alone(cluster):
    api_client = cluster.api_client()
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job("default", _job("swap"))
    now = datetime.now(timezone.utc)
    old = suspend.interruptible_jobs(read_cluster(api_client).jobs, {}, now)
    batch.delete_namespaced_job("swap", "default", propagation_policy="Foreground")
    e2e_cluster.wait_for(lambda: "swap" not in {j.metadata.name for j in batch.list_namespaced_job("default").items},
                         WAIT, "the old Job gone")
    batch.create_namespaced_job("default", _job("swap"))
    stale = next(j for j in old if j.name == "swap")
    assert suspend.set_suspended(batch, stale, False, now) is False  # another uid: not ours to resume
    assert batch.read_namespaced_job("swap", "default").spec.suspend is True


def test_a_planner_round_resumes_the_job_its_plan_runs_and_actuates_too(e2e_binaries):
    # The planner's round on the bundled example cluster, actuation in dry-run: the plan runs an
    # interruptible Job whose window leaves no choice, the round resumes it (the suspension hook),
    # and the actuation cycle on the same plan runs as well.
    import sys
    from pathlib import Path

    from edgeplace.k8s.actuation.actuator import ActuationOptions, Actuator
    from edgeplace.k8s.mapping import load_site_config
    from edgeplace.k8s.planner import Planner, PlannerOptions
    from edgeplace.k8s.publish import ConfigMapPlanPublisher
    from edgeplace.optimizer.solve import SolveOptions

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "k8s" / "e2e"))
    import example_cluster  # k8s/e2e/example_cluster.py

    running = example_cluster.start()
    try:
        api_client = running.api_client()
        batch = client.BatchV1Api(api_client)
        job = _job("ckpt")
        now = datetime.now(timezone.utc)
        job["metadata"]["annotations"].update({"edgeplace.io/duration-minutes": "60",
                                               "edgeplace.io/deadline": (now + timedelta(minutes=62)).strftime(
                                                   "%Y-%m-%dT%H:%M:%SZ")})
        del job["metadata"]["annotations"]["edgeplace.io/min-run-minutes"]
        batch.create_namespaced_job("analytics", job)
        ns = example_cluster.PLANNER_NAMESPACE
        planner = Planner(api_client, ConfigMapPlanPublisher(api_client, ns, identity="e2e"),
                          load_site_config(str(example_cluster.SITE_CONFIG)),
                          PlannerOptions(solve=SolveOptions(solver="greedy", time_limit_s=2.0)),
                          actuator=Actuator(api_client, ActuationOptions(namespace=ns)))
        round_ = planner.plan_once()
        assert round_.outcome == "published", round_.detail
        assert "analytics/ckpt" in planner.running_now
        assert [r for name, r in round_.released if name == "job analytics/ckpt"] in (["resume: plan"],
                                                                                       ["resume: deadline"])
        assert batch.read_namespaced_job("ckpt", "analytics").spec.suspend is False
        assert planner.actuate() is not None  # the actuation cycle ran on the published plan
    finally:
        running.__exit__(None, None, None)
