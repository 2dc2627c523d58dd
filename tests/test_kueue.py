"""edgeplace.k8s.kueue without a cluster: the clock, decisions, quotas, the planning view, the plan view.

What needs Kueue itself (webhooks, requeueing, quota reservation) is tested
against its real controller manager in tests/e2e/test_kueue_e2e.py.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from edgeplace.k8s.kueue import (ANN_HELD_UNTIL, ANN_LATEST_START, ANN_PLANNED_START, KueueObjects, KueueOptions,
                                 PlanView, ScaledClock, _decision_annotations, cluster_queue_quota, config_with_quotas,
                                 decide, decide_held, held_until, latest_start, map_with_kueue, planning_view,
                                 tenant_quotas)
from edgeplace.k8s.mapping import ClusterObjects, MappingOptions, parse_site_config
from edgeplace.optimizer.solve import SolveOptions, solve

NOW = datetime(2026, 6, 21, 10, 17, tzinfo=timezone.utc)
CLOCK = ScaledClock()
OPTIONS = KueueOptions(min_defer_s=30.0, plan_wait_s=120.0)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------
# The clock


def test_the_default_clock_is_the_wall_clock_and_a_scaled_one_runs_faster():
    t = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert CLOCK.from_wall(t) == t and CLOCK.to_wall(t) == t and CLOCK.wall_seconds(60) == 60
    fast = ScaledClock(360.0, origin=datetime(2026, 6, 21, 10, tzinfo=timezone.utc), origin_wall=t)
    assert fast.from_wall(t + timedelta(seconds=10)) == datetime(2026, 6, 21, 11, tzinfo=timezone.utc)  # 10 s = 1 h
    assert fast.to_wall(datetime(2026, 6, 21, 12, tzinfo=timezone.utc)) == t + timedelta(seconds=20)
    assert fast.wall_seconds(3600) == 10
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        ScaledClock(0)


# ---------------------------------------------------------------------------
# Decisions


def _job(deadline: str | None = "2026-06-21T16:00:00Z", minutes: str = "60", created="2026-06-21T10:05:00Z"):
    ann = {"edgeplace.io/duration-minutes": minutes}
    if deadline:
        ann["edgeplace.io/deadline"] = deadline
    return {"metadata": {"name": "report", "namespace": "batch", "annotations": ann, "creationTimestamp": created},
            "spec": {"template": {"spec": {}}}}


def _wl(reserved: str | None = "2026-06-21T10:16:00Z", active: bool = True, annotations: dict | None = None):
    conds = [{"type": "QuotaReserved", "status": "True", "lastTransitionTime": reserved}] if reserved else []
    return {"metadata": {"name": "job-report-1", "namespace": "batch", "annotations": dict(annotations or {}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "report", "controller": True}]},
            "spec": {"active": active},
            "status": {"conditions": conds, "admissionChecks": [{"name": "carbon", "state": "Pending", "message": ""}]}}


def _plan(starts: dict[str, str], made_at: str = "2026-06-21T10:10:00Z", ids=("batch/report",)):
    return PlanView(_t(made_at), frozenset(ids), {k: _t(v) for k, v in starts.items()}, {})


@pytest.fixture
def wall_at(monkeypatch):
    """Fix the wall clock (decisions read it for how long a Workload has waited)."""
    def set_wall(at: datetime):
        monkeypatch.setattr(ScaledClock, "wall", staticmethod(lambda: at))
    return set_wall


@pytest.mark.parametrize("job, plan, now, action, reason", [
    (None, None, NOW, "ready", "not_a_job"),
    (_job(deadline=None), None, NOW, "ready", "not_deferred"),
    # latest start = 16:00 - 60 min = 15:00
    (_job(), _plan({"batch/report": "2026-06-21T15:00:00Z"}), _t("2026-06-21T15:00:00Z"), "ready", "deadline"),
    # no plan yet, reserved 1 min ago (< 120 s plan_wait): wait and trigger a round
    (_job(), None, NOW, "wait", "waiting_for_plan"),
    # a plan made before the job was created, without it: wait for the next one
    (_job(created="2026-06-21T10:12:00Z"), _plan({}, ids=()), NOW, "wait", "waiting_for_plan"),
    # stamped in the second the plan was made (timestamps are whole seconds): maybe not seen yet, wait
    (_job(created="2026-06-21T10:10:00Z"), _plan({}, ids=()), NOW, "wait", "waiting_for_plan"),
    # a plan made after the job was created that leaves it out: not ours to hold
    (_job(created="2026-06-21T10:05:00Z"), _plan({}, ids=()), NOW, "ready", "not_deferred"),
    # in the plan but not deferred (window too short, or not placed)
    (_job(), _plan({}), NOW, "ready", "not_deferred"),
    (_job(), _plan({"batch/report": "2026-06-21T10:00:00Z"}), NOW, "ready", "planned_start"),
    (_job(), _plan({"batch/report": "2026-06-21T13:00:00Z"}), NOW, "hold", "deferred"),
    # 20 s away (< min_defer_s 30 s): keep Pending, do not give the quota back for so little
    (_job(), _plan({"batch/report": "2026-06-21T10:17:20Z"}), NOW, "wait", "starting"),
])
def test_decide(job, plan, now, action, reason, wall_at):
    wall_at(NOW)
    decision = decide(_wl(), job, plan, now, CLOCK, OPTIONS)
    assert (decision.action, decision.reason) == (action, reason), decision.message


def test_a_workload_no_plan_includes_is_admitted_after_plan_wait(wall_at):
    wall_at(_t("2026-06-21T10:16:00Z") + timedelta(seconds=120))  # reserved at 10:16:00
    decision = decide(_wl(), _job(), None, NOW, CLOCK, OPTIONS)
    assert (decision.action, decision.reason) == ("ready", "no_plan")
    assert "without a carbon-aware decision" in decision.message


def test_a_time_compressed_clock_holds_by_wall_clock_seconds(wall_at):
    wall_at(NOW)
    fast = ScaledClock(3600.0, origin=NOW, origin_wall=NOW)  # one plan hour is one wall second
    plan = _plan({"batch/report": "2026-06-21T13:00:00Z"})
    assert decide(_wl(), _job(), plan, NOW, fast, OPTIONS).reason == "starting"  # 3 h = 3 s < 30 s
    assert decide(_wl(), _job(), plan, NOW, fast, KueueOptions(min_defer_s=2.0)).reason == "deferred"


@pytest.mark.parametrize("plan, now, action, reason", [
    (None, NOW, "hold", "deferred"),                                                        # keeps its held-until
    (None, _t("2026-06-21T13:00:00Z"), "release", "planned_start"),                          # held-until reached
    (_plan({"batch/report": "2026-06-21T14:00:00Z"}), NOW, "hold", "replanned"),              # a newer plan moves it
    (_plan({"batch/report": "2026-06-21T10:00:00Z"}), NOW, "release", "planned_start"),       # ... or pulls it to now
    (_plan({}), NOW, "release", "not_deferred"),
    (_plan({"batch/report": "2026-06-21T14:00:00Z"}), _t("2026-06-21T15:00:00Z"), "release", "deadline"),
])
def test_decide_held(plan, now, action, reason):
    wl = _wl(reserved=None, active=False, annotations={ANN_HELD_UNTIL: "2026-06-21T13:00:00Z"})
    decision = decide_held(wl, _job(), plan, now, CLOCK)
    assert (decision.action, decision.reason) == (action, reason), decision.message


def test_only_workloads_edgeplace_deactivated_are_held():
    assert held_until(_wl(active=False, annotations={ANN_HELD_UNTIL: "2026-06-21T13:00:00Z"})) == _t("2026-06-21T13:00:00Z")
    assert held_until(_wl(active=False)) is None  # deactivated by someone else
    assert held_until(_wl(active=True, annotations={ANN_HELD_UNTIL: "2026-06-21T13:00:00Z"})) is None


def test_decisions_are_written_in_wall_clock_time():
    fast = ScaledClock(360.0, origin=datetime(2026, 6, 21, 10, tzinfo=timezone.utc),
                       origin_wall=datetime(2026, 12, 6, 12, tzinfo=timezone.utc))
    hold = decide(_wl(), _job(), _plan({"batch/report": "2026-06-21T13:00:00Z"}), _t("2026-06-21T10:00:00Z"), fast,
                  KueueOptions(min_defer_s=0))
    ann = _decision_annotations(hold, fast)
    # 13:00 is 3 plan hours after the origin: 30 wall seconds
    assert ann[ANN_PLANNED_START] == ann[ANN_HELD_UNTIL] == "2026-12-06T12:00:30Z"
    assert ann[ANN_LATEST_START] == "2026-12-06T12:00:50Z"  # 15:00
    assert latest_start(_job(minutes="x")) is None


# ---------------------------------------------------------------------------
# Quotas


def _cq(name, *flavors):
    return {"metadata": {"name": name}, "spec": {"resourceGroups": [{"flavors": [
        {"name": f"f{k}", "resources": [{"name": r, "nominalQuota": q} for r, q in res.items()]}
        for k, res in enumerate(flavors)]}]}}


def _lq(ns, cq):
    return {"metadata": {"name": "lq", "namespace": ns}, "spec": {"clusterQueue": cq}}


def _node(name="n1", gpus=None):
    alloc = {"cpu": "8", "memory": "16Gi", **({"nvidia.com/gpu": gpus} if gpus else {})}
    return {"metadata": {"name": name}, "status": {"allocatable": alloc}}


def test_a_cluster_queue_quota_sums_its_flavors_in_scenario_units():
    quota, problems = cluster_queue_quota(_cq("a", {"cpu": "2", "memory": "1Gi"}, {"cpu": "500m", "pods": "10"}))
    assert quota == {"cpu_millicores": 2500, "memory_mib": 1024} and problems == []
    _, problems = cluster_queue_quota(_cq("b", {"cpu": "lots"}))
    assert problems and "ClusterQueue b flavor f0 cpu" in problems[0]


def test_tenant_quotas_follow_local_queues_and_split_shared_queues():
    kueue = KueueObjects(cluster_queues=[_cq("team-a", {"cpu": "4", "nvidia.com/gpu": "2"}), _cq("common", {"cpu": "3"})],
                         local_queues=[_lq("a1", "team-a"), _lq("a2", "team-a"), _lq("b", "common"), _lq("c", "common")])
    objects = ClusterObjects(nodes=[_node()], namespaces=[{"metadata": {"name": n}} for n in ("a1", "a2", "b", "c")])
    config = parse_site_config({"tenants": [{"id": "team-a", "namespaces": ["a1", "a2"]}]})
    quotas, warnings = tenant_quotas(kueue, objects, config)
    # team-a: its two namespaces share one ClusterQueue (one tenant, counted once); no node has GPUs: dropped
    assert quotas["team-a"] == {"cpu_millicores": 4000}
    # b and c share 3 CPUs: 1.5 each, rounded down to millicores
    assert quotas["b"] == quotas["c"] == {"cpu_millicores": 1500}
    assert any("serves tenants b, c" in w for w in warnings)
    objects.nodes = [_node(gpus="4")]
    assert tenant_quotas(kueue, objects, config)[0]["team-a"] == {"cpu_millicores": 4000, "nvidia.com/gpu": 2}


def test_kueue_quotas_join_the_site_configs_and_the_smaller_wins():
    config = parse_site_config({"tenants": [{"id": "t", "quota": {"cpu_millicores": 3000, "memory_mib": 100}}]})
    merged = config_with_quotas(config, {"t": {"cpu_millicores": 5000}, "u": {"cpu_millicores": 1000}})
    tenants = {t.id: t for t in merged.tenants}
    assert tenants["t"].quota == {"cpu_millicores": 3000, "memory_mib": 100}
    assert tenants["u"].quota == {"cpu_millicores": 1000}


# ---------------------------------------------------------------------------
# What the planner sees


def _kueue_job(name, suspend=True, labels=None):
    return {"metadata": {"name": name, "namespace": "batch",
                         "labels": {"kueue.x-k8s.io/queue-name": "lq", **(labels or {})},
                         "annotations": {"edgeplace.io/deadline": "2026-06-21T16:00:00Z",
                                         "edgeplace.io/duration-minutes": "60"}},
            "spec": {"suspend": suspend, "template": {"spec": {"containers": [
                {"resources": {"requests": {"cpu": "1"}}}]}}}}


def _workload_of(job, *conditions):
    return {"metadata": {"name": f"job-{job}", "namespace": "batch",
                         "ownerReferences": [{"kind": "Job", "apiVersion": "batch/v1", "name": job, "controller": True}]},
            "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]}}


def test_planning_view_shows_held_jobs_as_not_started_and_leaves_out_finished_ones():
    plain = {"metadata": {"name": "plain", "namespace": "batch"}, "spec": {"suspend": True}}
    objects = ClusterObjects(jobs=[_kueue_job("held"), _kueue_job("running", suspend=False), _kueue_job("done"), plain,
                                   _kueue_job("admitted")])
    workloads = [_workload_of("held", "QuotaReserved"), _workload_of("done", "Finished"),
                 _workload_of("admitted", "Admitted")]
    before = copy.deepcopy(objects.jobs)
    view = planning_view(objects, workloads)
    jobs = {j["metadata"]["name"]: j for j in view.jobs}
    assert set(jobs) == {"held", "running", "plain", "admitted"}
    assert jobs["held"]["spec"]["suspend"] is False  # held by Kueue: a job not started yet
    assert jobs["plain"]["spec"]["suspend"] is True  # not Kueue's: suspended by its owner, left as it is
    assert jobs["admitted"]["spec"]["suspend"] is True  # admitted, Kueue unsuspends it in a moment
    assert objects.jobs == before  # the cluster's objects are not changed


CONFIG = parse_site_config({
    "horizon": {"slots": 6, "slot_minutes": 60},
    "sites": [{"id": "dc", "tier": "cloud", "region": "SE"}],
    "regions": [{"id": "SE", "intensity_g_per_kwh": [400, 300, 20, 200, 300, 300]}],
})


def _cluster_with_kueue():
    from edgeplace.k8s.kueue import KueueClusterObjects

    node = {"metadata": {"name": "n1", "labels": {"edgeplace.io/site": "dc"},
                         "annotations": {"edgeplace.io/idle-w": "100", "edgeplace.io/max-w": "200"}},
            "status": {"allocatable": {"cpu": "8", "memory": "16Gi"}}}
    return KueueClusterObjects(
        nodes=[node], namespaces=[{"metadata": {"name": "batch"}}], jobs=[_kueue_job("train")],
        kueue=KueueObjects(workloads=[_workload_of("train", "QuotaReserved")], cluster_queues=[_cq("q", {"cpu": "2"})],
                           local_queues=[_lq("batch", "q")]),
        notes=["worker cluster x: cannot be read"])


def test_map_with_kueue_plans_held_jobs_within_the_cluster_queue_quota():
    mapped = map_with_kueue(_cluster_with_kueue(), CONFIG, MappingOptions(now=NOW))
    sc = mapped.scenario
    w = sc.workload_ids.index("batch/train")
    assert bool(sc.workload_deferrable[w])
    assert sc.tenant_quota[sc.tenant_ids.index("batch"), sc.resources.index("cpu_millicores")] == 2000
    assert mapped.warnings[0] == "worker cluster x: cannot be read"
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=0.0))
    view = PlanView.of(sc, plan.placement, NOW)
    assert view.starts["batch/train"] == datetime(2026, 6, 21, 12, tzinfo=timezone.utc)  # the 20 g/kWh slot
    assert view.nodes["batch/train"] == ("n1",) and view.workloads == frozenset(sc.workload_ids)
    assert view.made_at == NOW


def test_kueue_options_are_checked():
    with pytest.raises(ValueError, match="domain-prefixed"):
        KueueOptions(controller_name="carbon")
    with pytest.raises(ValueError, match="must be >= 0"):
        KueueOptions(min_defer_s=-1)


def test_a_job_of_a_kueue_queue_is_never_edgeplaces_to_suspend():
    from edgeplace.k8s.suspend import is_interruptible

    job = {"metadata": {"name": "train", "namespace": "a1", "annotations": {
        "edgeplace.io/interruptible": "true", "edgeplace.io/deadline": "2026-06-22T06:00:00Z"}}}
    assert is_interruptible(job)
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    assert not is_interruptible(job)  # Kueue owns its spec.suspend; it is held through the admission check
