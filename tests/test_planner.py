"""edgeplace.k8s.planner (with edgeplace.k8s.gates, edgeplace.k8s.publish and edgeplace.k8s.leader's pure parts): the loop's logic without a cluster.

What needs the API server (409 Conflicts, resourceVersion, Leases, removing a
real gate) is tested against the real one in tests/e2e/test_extender_e2e.py.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from edgeplace.k8s import gates
from edgeplace.k8s.extender.table import DecisionTable, PlanError
from edgeplace.k8s.leader import LeaderElector
from edgeplace.k8s.mapping import ClusterObjects, parse_site_config
from edgeplace.k8s.planner import Debouncer, Planner, PlannerOptions, node_signature, pod_signature
from edgeplace.k8s.publish import MAX_INLINE_BYTES, FilePlanPublisher, PlanTooLarge, PublishConflict, encode_plan, plan_bytes
from edgeplace.optimizer.solve import SolveOptions, solve

NOW = datetime(2026, 6, 21, 10, 17, tzinfo=timezone.utc)
START = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------
# Debouncing and change signatures


@pytest.mark.parametrize("marks, check, due", [
    ([], 100.0, False),             # nothing changed
    ([0.0], 4.9, False),            # quiet for 4.9 s < 5 s
    ([0.0], 5.0, True),             # quiet for 5 s
    ([0, 3, 6, 9], 13.0, False),    # a burst: last change 4 s ago, first 13 s ago (< 30)
    ([0, 3, 6, 9], 14.0, True),     # quiet 5 s after the burst
    ([0, 4, 8, 12, 16, 20, 24, 28], 30.0, True),  # a steady trickle: max delay 30 s since the first
])
def test_debouncer(marks, check, due):
    d = Debouncer(quiet_s=5.0, max_delay_s=30.0)
    for t in marks:
        d.mark(t)
    assert d.due(check) is due


def test_debouncer_resets_and_checks_its_arguments():
    d = Debouncer(1.0, 2.0)
    d.mark(0.0)
    d.reset()
    assert not d.pending and not d.due(100.0)
    with pytest.raises(ValueError, match="quiet_s <= max_delay_s"):
        Debouncer(10.0, 5.0)


def _pod(node=None, phase="Pending", gates_=(), deleting=False, status_extra=None):
    return {"metadata": {"uid": "p1", "deletionTimestamp": "x" if deleting else None},
            "spec": {"nodeName": node, "schedulingGates": [{"name": g} for g in gates_]},
            "status": {"phase": phase, **(status_extra or {})}}


def test_only_changes_that_matter_to_a_plan_trigger_a_round():
    planner = Planner(None, _Recorder())
    assert planner.observe("pods", "ADDED", _pod(), now=0.0)
    assert not planner.observe("pods", "MODIFIED", _pod(status_extra={"conditions": [{"type": "x"}]}), now=1.0)
    assert planner.observe("pods", "MODIFIED", _pod(node="n1"), now=2.0)  # bound
    assert not planner.observe("pods", "ADDED", _pod(node="n1"), now=3.0)  # re-listed after a watch restart
    assert planner.observe("pods", "DELETED", _pod(node="n1"), now=4.0)
    assert not planner.observe("pods", "BOOKMARK", {"metadata": {}}, now=5.0)
    node = {"metadata": {"uid": "n1", "labels": {"a": "b"}}, "status": {"allocatable": {"cpu": "4"}}}
    beat = json.loads(json.dumps(node))
    beat["status"]["conditions"] = [{"type": "Ready", "lastHeartbeatTime": "now"}]
    assert node_signature(node) == node_signature(beat)
    assert pod_signature(_pod(gates_=["edgeplace.io/deferred"])) != pod_signature(_pod())


# ---------------------------------------------------------------------------
# One round, with a fake cluster, solver and publisher


class _Recorder:
    """A publisher that keeps what it was given (or fails as told)."""

    where = "memory"

    def __init__(self, fail: Exception | None = None):
        self.docs: list[dict] = []
        self.fail = fail

    def publish(self, doc):
        if self.fail is not None:
            raise self.fail
        DecisionTable.from_document(doc)
        self.docs.append(doc)

        class Result:
            outcome = "updated"
        return Result()


class _Elector:
    def __init__(self, leading: bool):
        self.is_leader = leading


CONFIG = parse_site_config({
    "horizon": {"slots": 4, "slot_minutes": 60},
    "regions": [{"id": "PL", "intensity_g_per_kwh": 700}, {"id": "SE", "intensity_g_per_kwh": [400, 300, 20, 200]}],
})


def _cluster() -> ClusterObjects:
    def node(name, region, cpu):
        return {"metadata": {"name": name, "labels": {"edgeplace.io/site": name, "topology.kubernetes.io/region": region,
                                                        "edgeplace.io/tier": "cloud"},
                             "annotations": {"edgeplace.io/idle-w": "100", "edgeplace.io/max-w": "200"}},
                "status": {"allocatable": {"cpu": cpu, "memory": "16Gi"}}}
    job = {"metadata": {"name": "train", "namespace": "ml", "annotations": {
        "edgeplace.io/deadline": "2026-06-21T14:00:00Z", "edgeplace.io/duration-minutes": "60"}},
        "spec": {"template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "2"}}}]}}}}
    gated = {"metadata": {"name": "train-0", "namespace": "ml", "uid": "u0",
                          "ownerReferences": [{"kind": "Job", "name": "train", "controller": True}]},
             "spec": {"schedulingGates": [{"name": "edgeplace.io/deferred"}]}, "status": {"phase": "Pending"}}
    web = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}}}
    return ClusterObjects(nodes=[node("pl-1", "PL", "8"), node("se-1", "SE", "8")],
                          namespaces=[{"metadata": {"name": "ml"}}, {"metadata": {"name": "shop"}}],
                          deployments=[web], jobs=[job], pods=[gated])


OPTIONS = PlannerOptions(solve=SolveOptions(solver="greedy", bound_time_limit_s=0.0))


def test_a_round_publishes_a_valid_plan_and_plans_the_job_start():
    publisher = _Recorder()
    planner = Planner(None, publisher, CONFIG, OPTIONS, reader=lambda _api: _cluster())
    result = planner.plan_once(NOW)
    assert result.outcome == "published", result.detail
    [doc] = publisher.docs
    assert doc["generated_at"] == "2026-06-21T10:17:00Z" and doc["slot"]["start"] == "2026-06-21T10:00:00Z"
    assert set(doc["workloads"]) == {"shop/web", "ml/train"}
    # SE is cleanest in slot 2 (20 g/kWh): the job waits for it.
    assert planner.starts == {"ml/train": START + timedelta(hours=2)}
    assert planner.last_published is doc
    assert result.powered_down == ["pl-1"]


def test_a_failed_solve_keeps_the_previous_plan():
    publisher = _Recorder()
    calls = {"n": 0}

    def flaky(scenario, options):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("solver crashed")
        return solve(scenario, options)

    planner = Planner(None, publisher, CONFIG, OPTIONS, reader=lambda _api: _cluster(), solver=flaky)
    assert planner.plan_once(NOW).outcome == "published"
    good, starts = planner.last_published, planner.starts
    result = planner.plan_once(NOW + timedelta(minutes=5))
    assert (result.outcome, result.detail) == ("solve_failed", "RuntimeError: solver crashed")
    assert publisher.docs == [good] and planner.last_published is good and planner.starts == starts


def test_a_mapping_problem_publishes_nothing_and_names_the_object():
    broken = _cluster()
    broken.nodes[0]["metadata"]["annotations"]["edgeplace.io/max-w"] = "lots"
    publisher = _Recorder()
    planner = Planner(None, publisher, CONFIG, OPTIONS, reader=lambda _api: broken)
    result = planner.plan_once(NOW)
    assert result.outcome == "mapping_failed" and "Node pl-1" in result.detail
    assert publisher.docs == [] and planner.starts is None


def test_a_failed_publish_keeps_the_previous_plan_state():
    planner = Planner(None, _Recorder(fail=PublishConflict("3 attempts met concurrent updates")), CONFIG, OPTIONS,
                      reader=lambda _api: _cluster())
    result = planner.plan_once(NOW)
    assert result.outcome == "publish_failed" and "3 attempts" in result.detail
    assert planner.last_published is None and planner.starts is None


def test_an_unreachable_cluster_is_a_failed_round_not_a_crash():
    def down(_api):
        raise ConnectionError("connection refused")

    result = Planner(None, _Recorder(), CONFIG, OPTIONS, reader=down).plan_once(NOW)
    assert result.outcome == "mapping_failed" and "connection refused" in result.detail


def test_trouble_keeping_isolation_is_a_warning_and_the_round_still_publishes(monkeypatch):
    from dataclasses import replace

    from kubernetes.client.exceptions import ApiException

    from edgeplace.k8s import isolation

    seen = []

    def conflict(api, config, objects, namespace):
        seen.append((config, namespace, objects.nodes[0]["metadata"]["name"]))
        raise ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(isolation, "reconcile", conflict)
    options = replace(OPTIONS, isolation_namespace="edgeplace-system")
    result = Planner(None, _Recorder(), CONFIG, options, reader=lambda _api: _cluster()).plan_once(NOW)
    assert result.outcome == "published" and result.isolation == []
    assert seen == [(CONFIG, "edgeplace-system", "pl-1")]  # from the round's own listing
    assert any("isolation not kept this round: 409 Conflict" in w for w in result.warnings)
    # Off by default: no call.
    seen.clear()
    assert Planner(None, _Recorder(), CONFIG, OPTIONS, reader=lambda _api: _cluster()).plan_once(NOW).outcome == "published"
    assert seen == []


def test_only_the_leader_plans():
    publisher = _Recorder()
    planner = Planner(None, publisher, CONFIG, OPTIONS, elector=_Elector(False), reader=lambda _api: _cluster())
    assert planner.plan_once(NOW).outcome == "not_leader" and publisher.docs == []


def test_planner_options_are_checked():
    with pytest.raises(ValueError, match="must be > 0"):
        PlannerOptions(period_s=0)


def test_a_published_round_sets_the_plan_metrics_from_its_evaluation():
    planner = Planner(None, _Recorder(), CONFIG, OPTIONS, reader=lambda _api: _cluster())
    assert planner.plan_once(NOW).outcome == "published"
    m = planner.metrics
    assert m.value("edgeplace_planner_rounds_total", {"outcome": "published"}) == 1
    assert m.value("edgeplace_plan_emissions_grams") > m.value("edgeplace_plan_operational_emissions_grams") > 0
    assert m.value("edgeplace_plan_energy_kwh") > 0
    assert m.value("edgeplace_plan_nodes_asleep") == 1  # pl-1 (see the round test above)
    assert m.value("edgeplace_plan_solve_duration_seconds_count") == 1
    planner.reader = lambda _api: (_ for _ in ()).throw(ConnectionError("down"))
    planner.plan_once(NOW)
    assert m.value("edgeplace_planner_rounds_total", {"outcome": "mapping_failed"}) == 1


# ---------------------------------------------------------------------------
# Gates


def _gated(workload, latest=None):
    return gates.GatedPod("ns", workload.split("/")[-1], "uid", workload, latest)


@pytest.mark.parametrize("pod, starts, now, reason", [
    (_gated("ml/a"), {"ml/a": START + timedelta(hours=2)}, START + timedelta(hours=1), None),  # not yet
    (_gated("ml/a"), {"ml/a": START + timedelta(hours=2)}, START + timedelta(hours=2), "planned_start"),
    (_gated("ml/b"), {"ml/a": START}, START, "not_deferred"),  # the plan does not schedule it: do not hold it
    (_gated("ml/a"), None, START + timedelta(hours=5), None),  # no plan: hold ...
    (_gated("ml/a", latest=START + timedelta(hours=3)), None, START + timedelta(hours=3), "deadline"),  # ... but not past the latest start
    (_gated("ml/a", latest=START + timedelta(hours=3)), {"ml/a": START + timedelta(hours=4)},
     START + timedelta(hours=3), "deadline"),  # a plan that starts too late does not win
])
def test_due_releases(pod, starts, now, reason):
    due = gates.due_releases([pod], starts, now)
    assert [r for _, r in due] == ([reason] if reason else [])


def test_gated_pods_know_their_job_and_latest_start():
    [g] = gates.gated_pods(_cluster())
    assert (g.namespace, g.name, g.workload) == ("ml", "train-0", "ml/train")
    assert g.latest_start == datetime(2026, 6, 21, 13, 0, tzinfo=timezone.utc)  # 14:00 - 60 min


# ---------------------------------------------------------------------------
# Publishing without a cluster: encoding and the file publisher


def _doc():
    publisher = _Recorder()
    Planner(None, publisher, CONFIG, OPTIONS, reader=lambda _api: _cluster()).plan_once(NOW)
    return publisher.docs[0]


def test_small_plans_are_plain_json_large_ones_gzip_too_large_ones_refused():
    doc = _doc()
    data, compressed = encode_plan(doc)
    assert not compressed and json.loads(data) == doc
    big = dict(doc, padding="x" * (MAX_INLINE_BYTES + 1))
    data, compressed = encode_plan(big)
    assert compressed and json.loads(gzip.decompress(data)) == big
    import os
    noise = dict(doc, padding=os.urandom(900 * 1024).hex())  # incompressible
    with pytest.raises(PlanTooLarge, match="publish to a file"):
        encode_plan(noise)


def test_plan_bytes_reads_data_and_binary_data():
    import base64
    assert plan_bytes({"data": {"plan.json": "{}"}}) == b"{}"
    assert plan_bytes({"binaryData": {"plan.json": base64.b64encode(b"\x1f\x8bxx").decode()}}) == b"\x1f\x8bxx"
    assert plan_bytes({"data": {}}) is None
    with pytest.raises(PlanError, match="configmap key plan.json"):
        plan_bytes({"binaryData": {"plan.json": "not base64!"}})


def test_file_publisher_refuses_an_invalid_plan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "plan.json"
    publisher = FilePlanPublisher(path)
    doc = _doc()
    publisher.publish(doc)
    before = path.read_bytes()
    with pytest.raises(PlanError, match="nodes"):
        publisher.publish(dict(doc, nodes={}))
    assert path.read_bytes() == before and json.loads(before) == doc
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left behind


def test_leader_timings_are_checked():
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        LeaderElector(None, lease_duration_s=10, renew_deadline_s=10, retry_period_s=2)
