"""edgeplace.k8s.scheduling: a pod template's scheduling fields and a node's taints, read for the scenario."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from edgeplace.k8s.scheduling import pod_node_rules, scenario_taints, workload_scheduling
from edgeplace.topology.scheduling_spec import Scheduling
from tests import kube_filters

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"

TEMPLATE = {
    "metadata": {"labels": {"app": "web", "tier": "front"}},
    "spec": {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]},
                                          {"key": "gpu", "operator": "DoesNotExist"}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a"]}]}}]},
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE,
                 "namespaceSelector": {}, "matchLabelKeys": ["pod-template-hash"]}]},
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                     "topologyKey": HOST}],
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE,
                                                       "namespaces": ["shop", "shop-2"]}}]}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300},
                        {"operator": "Exists"},
                        {"key": "sla", "operator": "Gt", "value": "950", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
             "labelSelector": {"matchLabels": {"app": "web"}}, "nodeTaintsPolicy": "Honor", "matchLabelKeys": ["version"]},
            {"maxSkew": 2, "topologyKey": HOST, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": None}],
    },
}


def test_every_scheduling_field_of_a_pod_template_is_kept():
    warnings: list[str] = []
    block = workload_scheduling(TEMPLATE, "shop", "retail", warnings, "Deployment shop/web")
    assert block["namespace"] == "shop" and block["labels"] == {"app": "web", "tier": "front"}
    assert block["node_affinity"] == {
        "required": [{"match_expressions": [{"key": "cores", "operator": "Gt", "values": ["4"]},
                                            {"key": "gpu", "operator": "DoesNotExist", "values": []}], "match_fields": []},
                     {"match_expressions": [], "match_fields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}],
        "preferred": [{"weight": 10, "preference": {"match_expressions": [{"key": ZONE, "operator": "In", "values": ["a"]}],
                                                    "match_fields": []}}]}
    assert block["pod_affinity"]["required"] == [{"label_selector": {"match_labels": {"app": "cache"}, "match_expressions": []},
                                                  "namespaces": [], "topology_key": ZONE, "match_label_keys": ["pod-template-hash"],
                                                  "mismatch_label_keys": [],
                                                  "namespace_selector": {"match_labels": {}, "match_expressions": []}}]
    anti = block["pod_anti_affinity"]
    assert anti["required"][0]["label_selector"]["match_expressions"] == [{"key": "app", "operator": "In", "values": ["web"]}]
    assert anti["preferred"][0]["weight"] == 50 and anti["preferred"][0]["pod_affinity_term"]["namespaces"] == ["shop", "shop-2"]
    # The Gt toleration is dropped (alpha, off by default: it tolerates nothing), with a warning naming the object.
    assert block["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "value": "", "effect": "NoExecute", "toleration_seconds": 300},
        {"key": "", "operator": "Exists", "value": ""}]
    assert len(warnings) == 1 and "Deployment shop/web" in warnings[0] and "Gt" in warnings[0]
    assert block["topology_spread"] == [
        {"max_skew": 1, "topology_key": ZONE, "when_unsatisfiable": "DoNotSchedule",
         "label_selector": {"match_labels": {"app": "web"}, "match_expressions": []}, "match_label_keys": ["version"],
         "min_domains": 2, "node_taints_policy": "Honor"},
        {"max_skew": 2, "topology_key": HOST, "when_unsatisfiable": "ScheduleAnyway", "label_selector": None,
         "match_label_keys": []}]
    Scheduling.model_validate(block)  # a valid scenario block


def test_a_template_without_scheduling_fields_has_no_block():
    assert workload_scheduling({"spec": {"containers": []}}, "shop", "shop", [], "x") is None
    assert workload_scheduling({"spec": {}}, "shop", "retail", [], "x") == {"namespace": "shop"}


def test_node_taints_without_edgeplace_own_and_a_sleeping_node_lifecycle():
    node = {"metadata": {"annotations": {}}, "spec": {"taints": [
        {"key": "edgeplace.io/powered-down", "value": "true", "effect": "NoSchedule"},
        {"key": "edgeplace.io/dedicated-to", "value": "factory", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}}
    assert scenario_taints(node) == [{"key": "node.kubernetes.io/unreachable", "value": "", "effect": "NoExecute"},
                                     {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    node["metadata"]["annotations"]["edgeplace.io/power-state"] = "off"  # it goes when edgeplace wakes the node
    assert [t["key"] for t in scenario_taints(node)] == ["nvidia.com/gpu"]
    cordoned = {"metadata": {}, "spec": {"unschedulable": True}}
    assert scenario_taints(cordoned) == [{"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"}]
    ours = {"metadata": {"annotations": {"edgeplace.io/cordoned-by": "edgeplace-planner"}},
            "spec": {"unschedulable": True, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}
    assert scenario_taints(ours) == []


# ---------------------------------------------------------------------------
# One pod against one node: the matcher actuation uses (wake on pending), against the plain port

KEYS, VALUES = ["a", "b", "cores"], ["1", "2", "5", "x"]


@st.composite
def node_requirement(draw, keys=KEYS) -> dict:
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]))
    if op in ("Exists", "DoesNotExist"):
        values = []
    elif op in ("Gt", "Lt"):
        values = [draw(st.sampled_from(["1", "4"]))]
    else:
        values = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True))
    return {"key": draw(st.sampled_from(keys)), "operator": op, "values": values}


@st.composite
def pod_spec(draw) -> dict:
    spec: dict = {}
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1))
    if draw(st.booleans()):
        terms = draw(st.lists(st.fixed_dictionaries({}, optional={
            "matchExpressions": st.lists(node_requirement(), max_size=2),
            "matchFields": st.lists(st.fixed_dictionaries({
                "key": st.just("metadata.name"), "operator": st.sampled_from(["In", "NotIn"]),
                "values": st.sampled_from([["n1"], ["n2"]])}), max_size=1)}), min_size=1, max_size=2))
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    spec["tolerations"] = draw(st.lists(toleration(), max_size=2))
    return spec


@st.composite
def toleration(draw) -> dict:
    """A toleration the API server accepts (no key only with Exists, Exists without a value)."""
    out = {"operator": draw(st.sampled_from(["Equal", "Exists"]))}
    if out["operator"] == "Equal" or draw(st.booleans()):
        out["key"] = draw(st.sampled_from(["gpu", "pool"]))
    if out["operator"] == "Equal":
        out["value"] = draw(st.sampled_from(["", "x"]))
    if draw(st.booleans()):
        out["effect"] = draw(st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]))
    return out


def _snake(term: dict) -> dict:
    return {"match_expressions": term.get("matchExpressions") or [], "match_fields": term.get("matchFields") or []}


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(spec=pod_spec(), name=st.sampled_from(["n1", "n2"]),
       labels=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3),
       taints=st.lists(st.fixed_dictionaries({"key": st.sampled_from(["gpu", "pool", "edgeplace.io/powered-down"]),
                                              "value": st.sampled_from(["", "x"]),
                                              "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"])}),
                       max_size=2))
def test_pod_node_rules_agree_with_kube_schedulers_node_filters(spec, name, labels, taints):
    ignore = ("edgeplace.io/powered-down",)
    required = (spec.get("affinity") or {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    pod = kube_filters.Pod(key="p", workload="w", namespace="ns", labels={}, node_selector=spec.get("nodeSelector") or {},
                           required_node_terms=None if required is None else [_snake(t) for t in required["nodeSelectorTerms"]],
                           tolerations=spec["tolerations"], affinity_terms=[], anti_terms=[], spread=[], requests={},
                           run_seconds=0.0)
    node = kube_filters.Node(name, labels, [t for t in taints if t["key"] not in ignore], {})
    expected = kube_filters.node_affinity_ok(pod, node) and kube_filters.taints_ok(pod, node)
    assert pod_node_rules(spec).fits(name, labels, taints, ignore) is expected


def test_pod_node_rules_of_a_bare_pod_and_of_an_unreadable_one():
    bare = pod_node_rules({"containers": []})
    assert bare.fits("n1", {}, [{"key": "x", "effect": "PreferNoSchedule"}])
    assert not bare.fits("n1", {}, [{"key": "x", "effect": "NoExecute"}])
    # Gt takes one integer value: the API server refuses anything else, so no node fits such a pod.
    bad = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["four"]}]}]}}}}
    assert pod_node_rules(bad) is None
