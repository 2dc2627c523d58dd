"""kube-scheduler's filter plugins, ported plainly from Go for the tests (no numpy, no edgeplace code).

`replay(doc, bindings)` asks: can kube-scheduler bind these pods onto these
nodes? It binds them one at a time, each only if every filter plugin of
kube-scheduler v1.37 passes for its node given the pods bound before it, in
an order it searches for (pods whose affinity targets are bound, emptiest
spread domain first). It also applies the admission edgeplace's isolation
policies perform (a dedicated tenant's pods get node affinity and a
toleration for their pool's taint; never_with tenants get required pod
anti-affinity across tenants), and the taint-eviction controller's rule
(a pod tolerating a NoExecute taint for `toleration_seconds` is evicted then).

Sources (k8s.io/kubernetes v1.37.2, k8s.io/component-helpers v0.37.2,
k8s.io/apimachinery v0.37.2, k8s.io/kube-scheduler v0.37.2):
- NodeAffinity: component-helpers scheduling/corev1/nodeaffinity/nodeaffinity.go
  (NewLazyErrorNodeSelector skips empty terms; nodeSelectorTerm.match);
  apimachinery pkg/labels/selector.go (Requirement.Matches: In, NotIn, Exists,
  DoesNotExist, Gt, Lt);
- TaintToleration: api core/v1/toleration.go (ToleratesTaint);
  plugins/tainttoleration (NoSchedule, NoExecute);
- InterPodAffinity: plugins/interpodaffinity/filtering.go
  (satisfyExistingPodsAntiAffinity, satisfyPodAntiAffinity,
  nodeTopologyMatchesAffinity, satisfiesSelfAffinityCheck);
  kube-scheduler framework/types.go (AffinityTerm.Matches,
  getNamespacesFromPodAffinityTerm); registry/core/pod/strategy.go
  (applyMatchLabelKeysAndMismatchLabelKeys);
- PodTopologySpread: plugins/podtopologyspread/{common,filtering}.go
  (calPreFilterState, Filter, minMatchNum, countPodsMatchSelector);
- NodeResourcesFit: plugins/noderesources/fit.go (requests and the pod count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
HOSTNAME, ZONE, REGION = "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region"
TENANT_LABEL = "edgeplace.io/tenant"
DEDICATED_TAINT = "edgeplace.io/dedicated-to"


# ---------------------------------------------------------------------------
# Selectors


def label_selector_matches(sel: dict | None, labels: dict) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches(labels): nil matches nothing, {} everything."""
    if sel is None:
        return False
    for k, v in (sel.get("match_labels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("match_expressions") or []:
        if not requirement_matches(e["operator"], e["key"], e.get("values") or [], labels):
            return False
    return True


def requirement_matches(op: str, key: str, values: list, labels: dict) -> bool:
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        if key not in labels:
            return False
        try:
            have = int(labels[key])
        except ValueError:
            return False
        return have > int(values[0]) if op == "Gt" else have < int(values[0])
    raise ValueError(op)


def node_selector_terms_match(terms: list[dict], labels: dict, name: str) -> bool:
    for term in terms:
        exprs, fields_ = term.get("match_expressions") or [], term.get("match_fields") or []
        if not exprs and not fields_:
            continue  # an empty term is skipped: it matches nothing
        if exprs and not all(requirement_matches(e["operator"], e["key"], e.get("values") or [], labels) for e in exprs):
            continue
        if fields_ and not all((name == f["values"][0]) == (f["operator"] == "In") for f in fields_):
            continue
        return True
    return False


# ---------------------------------------------------------------------------
# The cluster as kube-scheduler sees it


@dataclass
class Node:
    name: str
    labels: dict
    taints: list
    capacity: dict


@dataclass
class Pod:
    key: str
    workload: str
    namespace: str
    labels: dict
    node_selector: dict
    required_node_terms: list | None
    tolerations: list
    affinity_terms: list  # processed: (namespaces set | None, ns_selector | None, selector, topology key)
    anti_terms: list
    spread: list
    requests: dict
    run_seconds: float
    node: str = ""
    extra: dict = field(default_factory=dict)


def _node_labels(node: dict, site_region: dict) -> dict:
    out = {HOSTNAME: node["id"], ZONE: node["site"], REGION: site_region[node["site"]]}
    out.update(node.get("labels") or {})
    return out


def cluster_of(doc: dict) -> tuple[dict[str, Node], dict[str, dict]]:
    """Nodes (with the isolation taint on dedicated nodes) and namespace labels."""
    site_region = {s["id"]: s["region"] for s in doc["sites"]}
    nodes = {}
    for n in doc["nodes"]:
        taints = [dict(t) for t in n.get("taints") or []]
        labels = _node_labels(n, site_region)
        if n.get("dedicated_to"):  # the pool's label and taint (edgeplace apply-isolation)
            taints.append({"key": DEDICATED_TAINT, "value": n["dedicated_to"], "effect": "NoSchedule"})
            labels[DEDICATED_TAINT] = n["dedicated_to"]
        nodes[n["id"]] = Node(n["id"], labels, taints, dict(n["capacity"]))
    ns_labels = {ns["id"]: {**(ns.get("labels") or {}), "kubernetes.io/metadata.name": ns["id"]}
                 for ns in doc.get("namespaces") or []}
    for w in doc["workloads"]:
        ns = (w.get("scheduling") or {}).get("namespace") or w["tenant"]
        ns_labels.setdefault(ns, {"kubernetes.io/metadata.name": ns})
    return nodes, ns_labels


def _process_term(term: dict, pod_ns: str, pod_labels: dict) -> tuple:
    """framework.newAffinityTerm plus the API server's matchLabelKeys merge."""
    sel = term.get("label_selector")
    if sel is not None and (term.get("match_label_keys") or term.get("mismatch_label_keys")):
        sel = {"match_labels": dict(sel.get("match_labels") or {}), "match_expressions": list(sel.get("match_expressions") or [])}
        for k in term.get("match_label_keys") or []:
            if k in pod_labels:
                sel["match_expressions"].append({"key": k, "operator": "In", "values": [pod_labels[k]]})
        for k in term.get("mismatch_label_keys") or []:
            if k in pod_labels:
                sel["match_expressions"].append({"key": k, "operator": "NotIn", "values": [pod_labels[k]]})
    namespaces = set(term.get("namespaces") or [])
    ns_sel = term.get("namespace_selector")
    if not namespaces and ns_sel is None:
        namespaces = {pod_ns}
    return (namespaces, ns_sel, sel, term["topology_key"])


def term_matches(term: tuple, pod: Pod, ns_labels: dict) -> bool:
    """AffinityTerm.Matches."""
    namespaces, ns_sel, sel, _ = term
    if pod.namespace in namespaces or label_selector_matches(ns_sel, ns_labels.get(pod.namespace, {})):
        return label_selector_matches(sel, pod.labels)
    return False


def pods_of(doc: dict, assign_slot: list[tuple[int, str]]) -> list[Pod]:
    """The pods of replicas (workload index, node) with the isolation admission applied."""
    tenants = {t["id"]: t for t in doc["tenants"]}
    dedicated = {t for t, spec in tenants.items() if (spec.get("isolation") or {}).get("dedicated_nodes")}
    never = {t: set((spec.get("isolation") or {}).get("never_with") or []) for t, spec in tenants.items()}
    for t, others in list(never.items()):
        for o in others:
            never.setdefault(o, set()).add(t)
    out = []
    for i, (w, node) in enumerate(assign_slot):
        wl = doc["workloads"][w]
        sch = wl.get("scheduling") or {}
        ns = sch.get("namespace") or wl["tenant"]
        labels = dict(sch.get("labels") or {})
        na = sch.get("node_affinity") or {}
        required = [dict(t) for t in na["required"]] if na.get("required") is not None else None
        tolerations = [dict(t) for t in sch.get("tolerations") or []]
        anti = [dict(t) for t in (sch.get("pod_anti_affinity") or {}).get("required") or []]
        tenant = wl["tenant"]
        # The isolation admission (deploy/helm/edgeplace/templates/isolation-*.yaml).
        if tenant in dedicated:
            tolerations.append({"key": DEDICATED_TAINT, "operator": "Equal", "value": tenant, "effect": "NoSchedule"})
            pool = {"key": "edgeplace.io/dedicated-to", "operator": "In", "values": [tenant]}
            required = ([{**t, "match_expressions": list(t.get("match_expressions") or []) + [pool]} for t in required]
                        if required is not None else [{"match_expressions": [pool]}])
        if never.get(tenant):
            anti.append({"label_selector": {}, "namespace_selector": {"match_expressions": [
                {"key": TENANT_LABEL, "operator": "In", "values": sorted(never[tenant])}]}, "topology_key": HOSTNAME})
        run = float(wl["deferral"]["duration_minutes"] * 60) if wl.get("deferral") else float("inf")
        requests = dict(wl["requests"])
        out.append(Pod(f"{wl['id']}#{i}", wl["id"], ns, labels, dict(wl.get("node_selector") or {}), required, tolerations,
                       [_process_term(t, ns, labels) for t in (sch.get("pod_affinity") or {}).get("required") or []],
                       [_process_term(t, ns, labels) for t in anti],
                       [dict(c) for c in sch.get("topology_spread") or [] if c["when_unsatisfiable"] == "DoNotSchedule"],
                       requests, run, node))
    return out


# ---------------------------------------------------------------------------
# The filter plugins


def tolerates(tol: dict, taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if tol.get("effect") and tol["effect"] != taint["effect"]:
        return False
    if tol.get("key") and tol["key"] != taint["key"]:
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    return (tol.get("value") or "") == (taint.get("value") or "")


def node_affinity_ok(pod: Pod, node: Node) -> bool:
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    return pod.required_node_terms is None or node_selector_terms_match(pod.required_node_terms, node.labels, node.name)


def taints_ok(pod: Pod, node: Node, effects=("NoSchedule", "NoExecute")) -> bool:
    return all(any(tolerates(t, taint) for t in pod.tolerations) for taint in node.taints if taint["effect"] in effects)


def stays(pod: Pod, node: Node) -> bool:
    """The taint-eviction controller lets the pod stay (NoExecute tolerated long enough)."""
    for taint in node.taints:
        if taint["effect"] != "NoExecute":
            continue
        limits = [t.get("toleration_seconds") for t in pod.tolerations if tolerates(t, taint)]
        if limits and None not in limits and max(limits) < pod.run_seconds:
            return False
    return True


def fits(pod: Pod, node: Node, bound: list[Pod]) -> bool:
    here = [p for p in bound if p.node == node.name]
    if "pods" in node.capacity and len(here) + 1 > node.capacity["pods"]:
        return False
    for res, want in pod.requests.items():
        if want and sum(p.requests.get(res, 0) for p in here) + want > node.capacity.get(res, 0):
            return False
    return True


def inter_pod_affinity_ok(pod: Pod, node: Node, bound: list[Pod], nodes: dict[str, Node], ns_labels: dict) -> bool:
    # Existing pods' anti-affinity terms the incoming pod matches.
    for other in bound:
        other_node = nodes[other.node]
        for term in other.anti_terms:
            key = term[3]
            if key in other_node.labels and term_matches(term, pod, ns_labels) and node.labels.get(key) == other_node.labels[key]:
                return False
    # The incoming pod's anti-affinity terms.
    for term in pod.anti_terms:
        key = term[3]
        if key not in node.labels:
            continue
        for other in bound:
            if term_matches(term, other, ns_labels) and nodes[other.node].labels.get(key) == node.labels[key]:
                return False
    # The incoming pod's affinity terms: a pod matching all terms in each term's domain.
    if pod.affinity_terms:
        if any(t[3] not in node.labels for t in pod.affinity_terms):
            return False
        matching = [o for o in bound if all(term_matches(t, o, ns_labels) for t in pod.affinity_terms)]
        exist = all(any(nodes[o.node].labels.get(t[3]) == node.labels[t[3]] for o in matching) for t in pod.affinity_terms)
        if not exist:
            return not matching and all(term_matches(t, pod, ns_labels) for t in pod.affinity_terms)
    return True


def spread_ok(pod: Pod, node: Node, bound: list[Pod], nodes: dict[str, Node]) -> bool:
    constraints = pod.spread
    if not constraints:
        return True
    for c in constraints:
        key = c["topology_key"]
        if key not in node.labels:
            return False
        sel = c.get("label_selector")
        if sel is not None and c.get("match_label_keys"):
            sel = {"match_labels": {**(sel.get("match_labels") or {}),
                                    **{k: pod.labels[k] for k in c["match_label_keys"] if k in pod.labels}},
                   "match_expressions": list(sel.get("match_expressions") or [])}
        empty = sel is not None and not sel.get("match_labels") and not sel.get("match_expressions")
        counts: dict[str, int] = {}
        for n in nodes.values():
            if not all(cc["topology_key"] in n.labels for cc in constraints):
                continue
            if c.get("node_affinity_policy", "Honor") == "Honor" and not node_affinity_ok(pod, n):
                continue
            if c.get("node_taints_policy", "Ignore") == "Honor" and not taints_ok(pod, n):
                continue
            value = n.labels[key]
            here = 0 if (sel is None or empty) else sum(
                1 for p in bound if p.node == n.name and p.namespace == pod.namespace and label_selector_matches(sel, p.labels))
            counts[value] = counts.get(value, 0) + here
        min_match = min(counts.values()) if counts else 0
        if len(counts) < (c.get("min_domains") or 1):
            min_match = 0
        self_match = 1 if label_selector_matches(sel, pod.labels) else 0
        if counts.get(node.labels[key], 0) + self_match - min_match > c["max_skew"]:
            return False
    return True


def passes(pod: Pod, node: Node, bound: list[Pod], nodes: dict[str, Node], ns_labels: dict) -> str | None:
    """The first filter that rejects the pod on the node (None: it binds)."""
    if not node_affinity_ok(pod, node):
        return "NodeAffinity"
    if not taints_ok(pod, node):
        return "TaintToleration"
    if not fits(pod, node, bound):
        return "NodeResourcesFit"
    if not inter_pod_affinity_ok(pod, node, bound, nodes, ns_labels):
        return "InterPodAffinity"
    if not spread_ok(pod, node, bound, nodes):
        return "PodTopologySpread"
    return None


def replay(doc: dict, assign_slot: list[tuple[int, str]]) -> list[str]:
    """Problems binding the replicas (workload index, node) one by one; [] when kube-scheduler can."""
    nodes, ns_labels = cluster_of(doc)
    pending = pods_of(doc, assign_slot)
    problems = [f"{p.key} on {p.node}: evicted by a NoExecute taint it tolerates for less than its run"
                for p in pending if not stays(p, nodes[p.node])]
    bound: list[Pod] = []
    while pending:
        ready = [p for p in pending if passes(p, nodes[p.node], bound, nodes, ns_labels) is None]
        if not ready:
            problems += [f"{p.key} on {p.node}: {passes(p, nodes[p.node], bound, nodes, ns_labels)}" for p in pending]
            break

        def emptiness(p: Pod) -> int:  # bind into the emptiest domain of its spread constraints first
            return sum(1 for b in bound if b.workload == p.workload
                       and all(nodes[b.node].labels.get(c["topology_key"]) == nodes[p.node].labels.get(c["topology_key"])
                               for c in p.spread))

        pick = min(ready, key=emptiness)
        bound.append(pick)
        pending.remove(pick)
    return problems


__all__ = ["replay"]
