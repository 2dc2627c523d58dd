"""Kubernetes scheduling fields -> the scenario's scheduling constraints (`edgeplace.topology.scheduling_spec`).

`workload_scheduling(template, namespace, tenant)` reads a pod template
(``metadata.labels`` and ``spec``: ``affinity``, ``tolerations``,
``topologySpreadConstraints``) into a workload's ``scheduling`` block;
`scenario_taints(node)` reads the taints of a Node that the scenario models.
Pure functions over the API's JSON (camelCase in, snake_case out); the
scenario's own validation checks the values, and `edgeplace.k8s.mapping`
reports its problems against the object they came from.

What is left out, and why:

- taints edgeplace sets or models itself: ``edgeplace.io/powered-down`` (a
  plan's power decision), ``edgeplace.io/dedicated-to`` (the node's
  ``dedicated_to``, whose tenant's pods the isolation admission gives the
  toleration), ``node.kubernetes.io/unschedulable`` on a node the planner
  cordoned, and the node-lifecycle taints (``not-ready``, ``unreachable``)
  of a node edgeplace powered down: they go when it wakes;
- tolerations with operator Gt or Lt: kube-scheduler v1.37 applies them only
  with the alpha feature gate TaintTolerationComparisonOperators (off by
  default), and without it they tolerate nothing, which is what dropping
  them models (with a warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from edgeplace.topology.constraints import node_passes, selector_matches
from edgeplace.topology.scheduling_spec import LabelSelector, Scheduling, Taint

#: Taint keys the scenario never carries (see the module docstring).
TAINT_POWERED_DOWN = "edgeplace.io/powered-down"
TAINT_DEDICATED = "edgeplace.io/dedicated-to"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
LIFECYCLE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
#: Power states (annotation edgeplace.io/power-state, edgeplace.k8s.actuation.power) in which a node is asleep or on
#: its way: edgeplace's to wake, its node-lifecycle taints its own.
ASLEEP_STATES = ("draining", "powering-off", "off", "waking")
ANN_POWER_STATE = "edgeplace.io/power-state"
ANN_CORDONED_BY = "edgeplace.io/cordoned-by"


def _dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list:
    return x if isinstance(x, list) else []


def _strings(x: Any) -> list[str]:
    return [str(v) for v in _list(x)]


# ---------------------------------------------------------------------------
# Nodes


def scenario_taints(node: dict) -> list[dict[str, str]]:
    """The taints of a Node the scenario models (module docstring), in scenario form; a node
    cordoned by someone other than the planner gets the unschedulable taint kube-scheduler's
    NodeUnschedulable plugin stands for."""
    meta, spec = _dict(node.get("metadata")), _dict(node.get("spec"))
    ann = _dict(meta.get("annotations"))
    asleep = ann.get(ANN_POWER_STATE) in ASLEEP_STATES
    ours_cordon = ANN_CORDONED_BY in ann
    out = []
    for t in _list(spec.get("taints")):
        if not isinstance(t, dict):
            continue
        key = str(t.get("key") or "")
        if key in (TAINT_POWERED_DOWN, TAINT_DEDICATED) or (key == TAINT_UNSCHEDULABLE and ours_cordon):
            continue
        if key in LIFECYCLE_TAINTS and asleep:
            continue
        out.append({"key": key, "value": str(t.get("value") or ""), "effect": str(t.get("effect") or "")})
    if spec.get("unschedulable") and not ours_cordon and not any(t["key"] == TAINT_UNSCHEDULABLE for t in out):
        out.append({"key": TAINT_UNSCHEDULABLE, "value": "", "effect": "NoSchedule"})
    return out


# ---------------------------------------------------------------------------
# Pod templates


def _label_selector(sel: Any) -> dict | None:
    if sel is None:
        return None
    sel = _dict(sel)
    return {"match_labels": {str(k): str(v) for k, v in _dict(sel.get("matchLabels")).items()},
            "match_expressions": [{"key": str(e.get("key") or ""), "operator": e.get("operator"), "values": _strings(e.get("values"))}
                                  for e in _list(sel.get("matchExpressions")) if isinstance(e, dict)]}


def _node_term(term: Any) -> dict:
    term = _dict(term)
    return {"match_expressions": [{"key": str(e.get("key") or ""), "operator": e.get("operator"), "values": _strings(e.get("values"))}
                                  for e in _list(term.get("matchExpressions")) if isinstance(e, dict)],
            "match_fields": [{"key": e.get("key"), "operator": e.get("operator"), "values": _strings(e.get("values"))}
                             for e in _list(term.get("matchFields")) if isinstance(e, dict)]}


def _pod_term(term: Any) -> dict:
    term = _dict(term)
    out: dict[str, Any] = {"label_selector": _label_selector(term.get("labelSelector")),
                           "namespaces": _strings(term.get("namespaces")),
                           "topology_key": str(term.get("topologyKey") or ""),
                           "match_label_keys": _strings(term.get("matchLabelKeys")),
                           "mismatch_label_keys": _strings(term.get("mismatchLabelKeys"))}
    if term.get("namespaceSelector") is not None:
        out["namespace_selector"] = _label_selector(term.get("namespaceSelector"))
    return out


def _pod_affinity(block: Any) -> dict | None:
    if not isinstance(block, dict):
        return None
    required = [_pod_term(t) for t in _list(block.get("requiredDuringSchedulingIgnoredDuringExecution"))]
    preferred = [{"weight": t.get("weight"), "pod_affinity_term": _pod_term(t.get("podAffinityTerm"))}
                 for t in _list(block.get("preferredDuringSchedulingIgnoredDuringExecution")) if isinstance(t, dict)]
    return {"required": required, "preferred": preferred} if required or preferred else None


def _toleration(t: dict) -> dict:
    out: dict[str, Any] = {"key": str(t.get("key") or ""), "operator": t.get("operator") or "Equal",
                           "value": str(t.get("value") or "")}
    if t.get("effect"):
        out["effect"] = t["effect"]
    if t.get("tolerationSeconds") is not None:
        out["toleration_seconds"] = t["tolerationSeconds"]
    return out


def _spread(c: dict) -> dict:
    out: dict[str, Any] = {"max_skew": c.get("maxSkew"), "topology_key": str(c.get("topologyKey") or ""),
                           "when_unsatisfiable": c.get("whenUnsatisfiable"),
                           "label_selector": _label_selector(c.get("labelSelector")),
                           "match_label_keys": _strings(c.get("matchLabelKeys"))}
    for src, dst in (("minDomains", "min_domains"), ("nodeAffinityPolicy", "node_affinity_policy"),
                     ("nodeTaintsPolicy", "node_taints_policy")):
        if c.get(src) is not None:
            out[dst] = c[src]
    return out


def workload_scheduling(template: dict, namespace: str, tenant: str, warnings: list[str], subject: str) -> dict | None:
    """The scheduling block of a workload from its pod template, or None when the pods carry
    nothing it models (no labels, affinity, tolerations or spread). Warnings name `subject`."""
    meta, spec = _dict(template.get("metadata")), _dict(template.get("spec"))
    out: dict[str, Any] = {}
    if namespace != tenant:
        out["namespace"] = namespace
    labels = {str(k): str(v) for k, v in _dict(meta.get("labels")).items()}
    affinity = _dict(spec.get("affinity"))
    node_affinity = affinity.get("nodeAffinity")
    if isinstance(node_affinity, dict):
        block: dict[str, Any] = {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(required, dict):
            block["required"] = [_node_term(t) for t in _list(required.get("nodeSelectorTerms"))]
        preferred = [{"weight": t.get("weight"), "preference": _node_term(t.get("preference"))}
                     for t in _list(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution")) if isinstance(t, dict)]
        if preferred:
            block["preferred"] = preferred
        if block:
            out["node_affinity"] = block
    for src, dst in (("podAffinity", "pod_affinity"), ("podAntiAffinity", "pod_anti_affinity")):
        block = _pod_affinity(affinity.get(src))
        if block is not None:
            out[dst] = block
    tolerations = []
    for t in _list(spec.get("tolerations")):
        if not isinstance(t, dict):
            continue
        if t.get("operator") in ("Gt", "Lt"):
            warnings.append(f"{subject}: toleration {t.get('key')!r} uses operator {t['operator']} (alpha in Kubernetes "
                            "v1.37, TaintTolerationComparisonOperators): without the feature gate it tolerates nothing, "
                            "and edgeplace plans it so")
            continue
        tolerations.append(_toleration(t))
    if tolerations:
        out["tolerations"] = tolerations
    spread = [_spread(c) for c in _list(spec.get("topologySpreadConstraints")) if isinstance(c, dict)]
    if spread:
        out["topology_spread"] = spread
    if not out and not labels:
        return None
    if labels:
        out["labels"] = labels
    return out


# ---------------------------------------------------------------------------
# One pod against one node (kube-scheduler's node filters, for actuation)


@dataclass(frozen=True)
class PodNodeRules:
    """A pod's nodeSelector, required node affinity and tolerations, read once (`pod_node_rules`)
    and matched against nodes by the scenario's own matcher (`edgeplace.topology.constraints`)."""

    node_selector: dict[str, str]
    scheduling: Scheduling | None

    def fits(self, node_name: str, labels: dict[str, str], taints: list[dict],
             ignore_taints: tuple[str, ...] = ()) -> bool:
        """Whether kube-scheduler's NodeAffinity and TaintToleration filters let the pod onto the
        node (its real labels and taints, less `ignore_taints` by key). Resources are the caller's."""
        try:
            parsed = [Taint.model_validate({"key": str(t.get("key") or ""), "value": str(t.get("value") or ""),
                                            "effect": t.get("effect")})
                      for t in taints if isinstance(t, dict) and t.get("key") not in ignore_taints]
        except ValidationError:
            return False  # a taint the API server would not have stored: nothing can be said to fit
        return node_passes(self.node_selector, self.scheduling, labels, node_name, parsed)


def label_selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector in the API's JSON (a PodDisruptionBudget's, say) against labels, by the
    scenario's matcher: null matches nothing, {} everything, and so does nothing one the API
    server would refuse (an unknown operator, In without values)."""
    if selector is None:
        return False
    parsed = _parsed_selector(json.dumps(selector, sort_keys=True))
    return parsed is not None and selector_matches(parsed, labels)


@lru_cache(maxsize=1024)
def _parsed_selector(text: str) -> LabelSelector | None:
    try:
        return LabelSelector.model_validate(_label_selector(json.loads(text)))
    except ValidationError:
        return None


def pod_node_rules(spec: dict) -> PodNodeRules | None:
    """The node rules of a pod spec, or None when they do not validate (the API server would
    have refused them; no node can be said to fit such a pod)."""
    spec = _dict(spec)
    block = workload_scheduling({"spec": spec}, "", "", [], "pod")
    try:
        scheduling = Scheduling.model_validate(block) if block else None
    except ValidationError:
        return None
    return PodNodeRules({str(k): str(v) for k, v in _dict(spec.get("nodeSelector")).items()}, scheduling)


__all__ = ["PodNodeRules", "label_selector_matches", "pod_node_rules", "scenario_taints", "workload_scheduling"]
