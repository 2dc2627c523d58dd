"""edgeplace.k8s.steering: the steering admission policy's parameters from a plan document.

The policy itself (CEL in kube-apiserver) and kube-scheduler acting on what it
writes are tested against the real ones in tests/e2e/test_steering_e2e.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgeplace.k8s import steering
from edgeplace.k8s.identity import pod_workload_id
from edgeplace.k8s.planner import Planner

from tests.test_planner import CONFIG, NOW, OPTIONS, _cluster, _Recorder

NODES = ["a", "b", "c", "d"]
HOSTS = {n: f"host-{n}" for n in NODES}


def _doc(workloads: dict, sets: dict | None = None) -> dict:
    return {"nodes": {n: {"powered": True} for n in NODES}, "node_sets": sets or {"all": NODES}, "workloads": workloads}


def test_the_plan_nodes_are_preferred_by_hostname_and_only_a_strict_subset_is_required():
    doc = _doc({"shop/web": {"allowed_nodes": "all", "planned_nodes": {"c": 2, "a": 1, "d": 0}},
                "shop/db": {"allowed_nodes": "sla", "planned_nodes": {"b": 1}},
                "shop/cache": {"allowed_nodes": "sla", "planned_nodes": {"a": 1}},
                "video": {"allowed_nodes": ["b", "d"], "planned_nodes": {}}},
               {"all": NODES, "sla": ["b", "a"]})
    params, warnings = steering.data(doc, HOSTS)
    assert warnings == []
    assert params == {
        "prefer.shop_web": "host-a,host-c",  # d planned with 0 replicas: not a plan node
        "prefer.shop_db": "host-b", "prefer.shop_cache": "host-a",
        "require.shop_db": "sla", "require.shop_cache": "sla", "set.sla": "host-a,host-b",  # one set, shared
        "require.video": "w-video", "set.w-video": "host-b,host-d",  # an inline list gets a set of its own
    }


def test_nodes_without_a_hostname_of_their_own_are_not_named():
    nodes = [{"metadata": {"name": "a", "labels": {steering.HOSTNAME_LABEL: "x"}}},
             {"metadata": {"name": "b", "labels": {steering.HOSTNAME_LABEL: "x"}}},  # same label as a
             {"metadata": {"name": "c", "labels": {}}},
             {"metadata": {"name": "d", "labels": {steering.HOSTNAME_LABEL: "d"}}}]
    hosts = steering.node_hostnames(nodes)
    assert hosts == {"d": "d"}
    params, warnings = steering.data(_doc({"ns/w": {"allowed_nodes": ["a", "d"], "planned_nodes": {"a": 1, "d": 1}}}), hosts)
    # a cannot be named: neither preferred nor required, and the workload's pods go to the extender
    assert params == {"prefer.ns_w": "d", "extender.ns_w": ""}
    assert len(warnings) == 2 and all("'ns/w'" in w for w in warnings)
    assert "not steered to a (no kubernetes.io/hostname label of its own; its pods go to the extender)" in warnings[0]
    assert "a without a kubernetes.io/hostname label" in warnings[1]


@pytest.mark.parametrize("wid, key", [("shop/web", "shop_web"), ("video", "video"), ("a.b/c-d", "a.b_c-d"),
                                      ("has space", None), ("ümlaut", None), ("x" * 300, None)])
def test_keys(wid, key):
    assert steering.params_key(wid) == key


def test_ids_that_cannot_be_keys_or_collide_are_skipped_with_a_warning():
    doc = _doc({"shop/web": {"allowed_nodes": "all", "planned_nodes": {"a": 1}},
                "shop_web": {"allowed_nodes": "all", "planned_nodes": {"b": 1}},
                "bad id": {"allowed_nodes": "all", "planned_nodes": {"c": 1}}})
    params, warnings = steering.data(doc, HOSTS)
    assert params == {}  # neither of the two that share a key
    assert len(warnings) == 2
    assert any("give the same key" in w for w in warnings) and any("not a ConfigMap key" in w for w in warnings)


def test_the_key_is_the_identity_rule_of_the_pod():
    """The policy computes the key from the pod as edgeplace.k8s.identity does; for the common owners the
    id's key is what the parameters hold."""
    pod = {"metadata": {"namespace": "shop", "labels": {"pod-template-hash": "7c6d9f"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7c6d9f", "controller": True}]}}
    assert steering.params_key(pod_workload_id(pod)) == "shop_web"
    pod["metadata"]["annotations"] = {"edgeplace.io/workload": "video"}
    assert steering.params_key(pod_workload_id(pod)) == "video"


def test_a_map_too_large_drops_the_sets_first_then_everything(monkeypatch):
    many = {f"ns/w{i}": {"allowed_nodes": ["a", "b"], "planned_nodes": {"a": 1}} for i in range(50)}
    full, _ = steering.data(_doc(many), HOSTS)
    prefer_only = {k: v for k, v in full.items() if k.startswith(steering.PREFER)}
    monkeypatch.setattr(steering, "MAX_DATA_BYTES", steering._size(prefer_only) + 40)  # room for the mark
    params, warnings = steering.data(_doc(many), HOSTS)
    assert params == prefer_only and "only the plan's nodes are written" in warnings[0]
    # With marks on, every pod then goes to the extender, whose filter holds the SLAs left out.
    params, _ = steering.data(_doc(many), HOSTS, steering.UNSTEERED)
    assert params == {**prefer_only, steering.MARK: steering.EVERY_POD}
    monkeypatch.setattr(steering, "MAX_DATA_BYTES", 100)
    params, warnings = steering.data(_doc(many), HOSTS)
    assert params == {} and "nothing written" in warnings[-1]


def test_the_mark_says_which_pods_go_to_the_extender():
    doc = _doc({"shop/web": {"allowed_nodes": "all", "planned_nodes": {"a": 1}}})
    assert steering.MARK not in steering.data(doc, HOSTS)[0]  # no marks: no pod goes to the extender
    assert steering.data(doc, HOSTS, steering.UNSTEERED)[0] == {"prefer.shop_web": "host-a", "extender": "unsteered"}
    assert steering.data(doc, HOSTS, steering.EVERY_POD)[0][steering.MARK] == "every-pod"
    with pytest.raises(ValueError, match="mark must be"):
        steering.data(doc, HOSTS, "all")


def _pending(name: str, message: str, node: str | None = None) -> dict:
    return {"metadata": {"namespace": "shop", "name": name}, "spec": {"nodeName": node} if node else {},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                       "message": message}]}}


def test_stuck_pods_are_the_pending_ones_kube_scheduler_found_no_node_for_because_of_the_mark():
    mark = "0/8 nodes are available: 8 Insufficient edgeplace.io/unsteered. preemption: 0/8 nodes are available."
    pods = [_pending("b", mark), _pending("a", mark), _pending("cpu", "0/8 nodes are available: 8 Insufficient cpu."),
            _pending("bound", mark, node="n1"), {"metadata": {"namespace": "shop", "name": "new"}}]
    assert steering.stuck_pods(pods) == ["shop/a", "shop/b"]


def _labelled_cluster():
    objects = _cluster()
    for node in objects.nodes:
        node["metadata"]["labels"][steering.HOSTNAME_LABEL] = "h-" + node["metadata"]["name"]
    return objects


def test_the_planner_writes_the_parameters_of_the_plan_it_publishes(monkeypatch):
    written = []
    monkeypatch.setattr(steering, "publish", lambda api, params, namespace: written.append((params, namespace)) or "created")
    publisher = _Recorder()
    options = replace(OPTIONS, steering_namespace="edgeplace-system")
    result = Planner(None, publisher, CONFIG, options, reader=lambda _api: _labelled_cluster()).plan_once(NOW)
    assert result.outcome == "published" and result.steering == "created"
    (params, namespace), = written
    assert namespace == "edgeplace-system"
    doc = publisher.docs[-1]
    planned = {wid: {"h-" + n for n, k in entry["planned_nodes"].items() if k} for wid, entry in doc["workloads"].items()}
    assert planned["shop/web"]  # the Deployment's replicas are planned somewhere
    assert params.pop(steering.MARK) == steering.UNSTEERED  # fewer nodes than DEFAULT_EVERY_POD_FROM
    assert {k: set(v.split(",")) for k, v in params.items()} == {
        steering.PREFER + steering.params_key(wid): nodes for wid, nodes in planned.items() if nodes}
    # Off by default.
    written.clear()
    assert Planner(None, _Recorder(), CONFIG, OPTIONS, reader=lambda _api: _labelled_cluster()).plan_once(NOW).steering == ""
    assert written == []


def test_trouble_writing_the_parameters_is_a_warning(monkeypatch):
    from kubernetes.client.exceptions import ApiException

    def forbidden(api, params, namespace):
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(steering, "publish", forbidden)
    options = replace(OPTIONS, steering_namespace="edgeplace-system")
    result = Planner(None, _Recorder(), CONFIG, options, reader=lambda _api: _labelled_cluster()).plan_once(NOW)
    assert result.outcome == "published" and result.steering == ""
    assert any("steering parameters not written this round: 403 Forbidden" in w for w in result.warnings)


def _marks(monkeypatch, options, rounds) -> tuple[list[str | None], list[list[str]]]:
    """The planner's `extender` parameter and its warnings about marks, one per round on `rounds`
    (a list of cluster objects)."""
    written: list[dict] = []
    monkeypatch.setattr(steering, "publish", lambda api, params, namespace: written.append(params) or "updated")
    planner = Planner(None, _Recorder(), CONFIG, options, reader=lambda _api: rounds.pop(0))
    warnings = [[w for w in planner.plan_once(NOW).warnings if "marked for the extender" in w]
                for _ in range(len(rounds))]
    return [params.get(steering.MARK) for params in written], warnings


STEER = replace(OPTIONS, steering_namespace="edgeplace-system")


@pytest.mark.parametrize("options, mark", [
    (replace(STEER, extender_every_pod_from=2), "every-pod"),  # _cluster() has 2 nodes
    (replace(STEER, extender_every_pod_from=3), "unsteered"),
    (replace(STEER, extender_every_pod_from=0), "every-pod"),
    (replace(STEER, extender_marks=False), None)])
def test_the_planner_marks_every_pod_from_the_size_on_and_none_when_told(monkeypatch, options, mark):
    assert len(_labelled_cluster().nodes) == 2
    assert _marks(monkeypatch, options, [_labelled_cluster()]) == ([mark], [[]])


def test_a_negative_size_is_refused():
    with pytest.raises(ValueError, match="extender_every_pod_from"):
        replace(STEER, extender_every_pod_from=-1)


def test_a_marked_pod_kube_scheduler_cannot_place_stops_the_marks_for_good(monkeypatch):
    stuck = _labelled_cluster()
    stuck.pods.append(_pending("stuck-0", "0/3 nodes are available: 3 Insufficient edgeplace.io/unsteered."))
    # The stuck pod is gone in the second round: the marks stay off (that kube-scheduler still counts them).
    marks, warnings = _marks(monkeypatch, STEER, [stuck, _labelled_cluster()])
    assert marks == [None, None]
    for round_warnings in warnings:
        [warning] = round_warnings
        assert "no pods are marked for the extender" in warning and "shop/stuck-0" in warning
        assert "managedResources" in warning and "restart the planner" in warning


@pytest.mark.parametrize("value, message", [("-1", "must be >= 0, got -1"), ("many", "expected a whole number")])
def test_a_bad_size_flag_is_a_usage_error(value, message, capsys):
    from edgeplace.cli import main

    with pytest.raises(SystemExit) as done:
        main(["serve", "--planner", "--steer-at-admission", "--extender-every-pod-from", value])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--extender-every-pod-from" in err and message in err
