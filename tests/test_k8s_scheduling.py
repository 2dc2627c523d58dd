"""edgeplace.k8s.scheduling: a pod template's scheduling fields and a node's taints, read for the scenario."""

from __future__ import annotations

from edgeplace.k8s.scheduling import scenario_taints, workload_scheduling
from edgeplace.topology.scheduling_spec import Scheduling

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
