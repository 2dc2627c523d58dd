"""Kubernetes scheduling constraints, compiled into nodes, domains and workload pairs.

`compile_constraints` turns the `scheduling` blocks of a scenario's workloads
and the `taints` and labels of its nodes into plain arrays that every solver,
the baselines and the evaluation read (`Constraints`), and `ConstraintState`
answers kube-scheduler's filter for one more pod of a workload given the
replicas placed so far (the greedy heuristic and the baselines use it).

Semantics, as kube-scheduler v1.37 defines them (k8s.io/kubernetes
``pkg/scheduler/framework/plugins``; k8s.io/component-helpers
``scheduling/corev1``):

- **Node labels**: a node's own labels; ``kubernetes.io/hostname``,
  ``topology.kubernetes.io/zone`` and ``topology.kubernetes.io/region``
  default to its id, site and region when it does not carry them (kubelet
  sets the hostname; the zone of an edgeplace node is its site).
- **NodeAffinity** (filter): every ``node_selector`` pair, and one of the
  ``node_affinity.required`` terms; a term holds when all its
  ``match_expressions`` and ``match_fields`` do, and a term with neither
  matches no node (`nodeaffinity.go`). In: label present with a listed
  value; NotIn: absent or not listed; Exists / DoesNotExist; Gt / Lt: present,
  an integer, greater / less than the one value (`labels/selector.go`).
- **TaintToleration** (filter): every NoSchedule and NoExecute taint must be
  tolerated by some toleration: same effect (or none given), same key (or
  none, with Exists), and Exists or an equal value (`ToleratesTaint`).
  PreferNoSchedule is a preference. A NoExecute taint tolerated only for
  ``toleration_seconds`` evicts the pod after that long (the taint-eviction
  controller), so it counts as tolerated only for a deferrable job whose run
  fits in that time.
- **InterPodAffinity** (filter): a term counts pods in its namespaces
  (``namespaces`` plus those matching ``namespace_selector``; the pod's own
  namespace when both are empty) whose labels match ``label_selector`` (null
  matches none, ``{}`` every pod; ``match_label_keys`` /
  ``mismatch_label_keys`` add In / NotIn on the pod's own values, as the
  API server does at admission). *Anti-affinity* is symmetric: a pod may not
  go to a domain holding a pod that matches one of its terms, nor one holding
  a pod whose term it matches; a node without the term's topology label is
  outside every domain and never conflicts. *Affinity*: on a node carrying
  every term's key, each term's domain must hold a pod that matches all the
  terms; the first pod of a group whose pods match their own terms may go
  anywhere while no matching pod exists (`satisfiesSelfAffinityCheck`).
- **PodTopologySpread** (DoNotSchedule): the node must carry the key; the
  pods counted are those in the pod's namespace matching the selector, on
  nodes that carry every key of the pod's constraints and pass its node
  affinity (``node_affinity_policy: Honor``, the default) and taints
  (``node_taints_policy: Honor``; default Ignore); every domain of such a
  node is eligible, even an empty one. A pod may go to domain d when
  ``count(d) + (1 if it matches its own selector) - min over eligible
  domains <= max_skew``, the minimum being 0 while fewer than ``min_domains``
  domains are eligible (`filtering.go`). An empty or null selector counts no
  pod.
- **NodeResourcesFit**: extended resources are capacities like cpu; a node's
  ``capacity.pods`` bounds its replicas (each takes one).

A plan is a final state, not a binding order, so the rules are read as a
state every slot must be in (`edgeplace.policies.evaluate` checks it per
slot), chosen so that kube-scheduler can reach it binding the pods one by
one:

- anti-affinity: no conflicting pair shares a domain (order-free);
- affinity: every domain (of each term's key) hosting the workload hosts a
  pod of its *targets* (other workloads matching all its terms), which bind
  first; a workload without targets whose pods match their own terms keeps
  all replicas in one domain per key (the first binds anywhere, the rest
  join it). Targets that need each other (a cycle) cannot be ordered and are
  reported at load;
- spread: every domain hosting the workload holds at most ``max_skew`` more
  counted pods than the emptiest eligible domain (binding into the emptiest
  domain first keeps kube-scheduler's per-pod rule true at every step).

Over a horizon, the optimizer's model and the greedy read the rules
conservatively (a plan meeting them meets them in every slot): a job counts
as present for the whole horizon where presence hurts (anti-affinity, the
crowded side of spread) and only services count where presence helps
(affinity targets, the emptiest domain of spread, besides the job itself).

Not modelled: pods the scenario does not plan (their labels and terms),
preferred terms and ScheduleAnyway spread (preferences, not constraints),
toleration operators Gt/Lt (alpha, off by default in v1.37).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from edgeplace.topology.errors import Problem
from edgeplace.topology.scheduling_spec import (LABEL_HOSTNAME, LABEL_NAMESPACE_NAME, LABEL_REGION, LABEL_ZONE,
                                                LabelSelector, NodeAffinity, NodeSelectorTerm, PodAffinityTerm, Scheduling,
                                                Taint, Toleration)

#: Taint effects kube-scheduler's TaintToleration filter enforces.
FILTER_EFFECTS = ("NoSchedule", "NoExecute")


# ---------------------------------------------------------------------------
# Matching, one object at a time (kube-scheduler's rules)


def effective_node_labels(labels: Mapping[str, str], node_id: str, site_id: str, region_id: str) -> dict[str, str]:
    """A node's labels with hostname, zone and region filled in from its id, site and region when absent."""
    out = {LABEL_HOSTNAME: node_id, LABEL_ZONE: site_id, LABEL_REGION: region_id}
    out.update(labels)
    return out


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels): None matches nothing, {} everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for r in selector.match_expressions:
        op = r.operator.value
        present = r.key in labels
        if op == "In" and not (present and labels[r.key] in r.values):
            return False
        if op == "NotIn" and present and labels[r.key] in r.values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _requirement_matches(op: str, key: str, values: list[str], labels: Mapping[str, str]) -> bool:
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    # Gt / Lt: the label must parse as an int64 (values were checked when loading).
    if not present:
        return False
    try:
        have = int(labels[key], 10)
    except ValueError:
        return False
    return have > int(values[0]) if op == "Gt" else have < int(values[0])


def node_term_matches(term: NodeSelectorTerm, labels: Mapping[str, str], node_name: str) -> bool:
    """One node selector term: all expressions and fields; an empty term matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    if not all(_requirement_matches(r.operator.value, r.key, r.values, labels) for r in term.match_expressions):
        return False
    for f in term.match_fields:  # metadata.name, In or NotIn, one value
        if (node_name == f.values[0]) != (f.operator == "In"):
            return False
    return True


def node_affinity_matches(affinity: NodeAffinity | None, labels: Mapping[str, str], node_name: str) -> bool:
    """The required node affinity terms (one must match); True without them."""
    if affinity is None or affinity.required is None:
        return True
    return any(node_term_matches(t, labels, node_name) for t in affinity.required)


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """v1.Toleration.ToleratesTaint (operators Equal and Exists)."""
    if toleration.effect is not None and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    return toleration.operator == "Exists" or toleration.value == taint.value


def tolerated_seconds(tolerations: Iterable[Toleration], taint: Taint) -> float:
    """How long the tolerations let a pod stay under `taint` [s]: inf when one tolerates it without
    limit, 0 when none tolerates it (toleration_seconds only bounds NoExecute)."""
    best = 0.0
    for t in tolerations:
        if tolerates(t, taint):
            if t.toleration_seconds is None or taint.effect.value != "NoExecute":
                return float("inf")
            best = max(best, float(max(t.toleration_seconds, 0)))
    return best


def taints_tolerated(tolerations: Iterable[Toleration], taints: Iterable[Taint], run_s: float = float("inf")) -> bool:
    """TaintToleration's filter: every NoSchedule and NoExecute taint tolerated (a NoExecute one for at
    least `run_s` seconds, how long the pod must stay)."""
    tolerations = list(tolerations)
    return all(tolerated_seconds(tolerations, t) >= run_s for t in taints if t.effect.value in FILTER_EFFECTS)


def node_passes(node_selector: Mapping[str, str], scheduling: Scheduling | None, labels: Mapping[str, str],
                node_name: str, taints: Iterable[Taint]) -> bool:
    """kube-scheduler's node filters for one pod on one node, those that read the node alone:
    NodeAffinity (`node_selector` and the required terms) and TaintToleration. Resources, pod
    (anti-)affinity and spread depend on the other pods and are the caller's."""
    if any(labels.get(k) != v for k, v in node_selector.items()):
        return False
    if scheduling is None:
        return taints_tolerated((), taints)
    return (node_affinity_matches(scheduling.node_affinity, labels, node_name)
            and taints_tolerated(scheduling.tolerations, taints))


# ---------------------------------------------------------------------------
# The compiled form


@dataclass(frozen=True, eq=False)
class NodeMask:
    """Workloads `rows` may use only the nodes where `mask` (len(rows) x N) holds; `kind` is
    the evaluation's violation kind (node_affinity, taint, pod_affinity, topology_spread)."""

    kind: str
    rows: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True, eq=False)
class Affinity:
    """Workload `workload` needs, in every domain of each key in `keys` that hosts it, a replica
    of one of `targets` (workloads whose pods match all its required affinity terms). Without
    targets its pods match their own terms (`self_match`) and it keeps one domain per key."""

    workload: int
    keys: np.ndarray
    targets: np.ndarray
    self_match: bool


@dataclass(frozen=True, eq=False)
class Spread:
    """A DoNotSchedule topology spread constraint of `workload` on key `key`: every domain hosting
    it holds at most `max_skew` more pods of `counted` (on `counting_nodes`) than the emptiest
    eligible domain (a domain with a counting node); fewer than `min_domains` eligible domains
    count as an empty one."""

    workload: int
    key: int
    max_skew: int
    counted: np.ndarray
    counting_nodes: np.ndarray  # N bool
    min_domains: int
    self_match: bool

    def eligible_domains(self, node_domain: np.ndarray, n_domains: int) -> np.ndarray:
        """Bool per domain of the key: it has a counting node."""
        out = np.zeros(n_domains, dtype=bool)
        out[node_domain[self.counting_nodes & (node_domain >= 0)]] = True
        return out


@dataclass(frozen=True, eq=False)
class Constraints:
    """Every scheduling constraint of a scenario, compiled (see the module docstring).

    keys          the topology keys rules use; node_domain[k, n] is node n's domain of key k
                  (an index into that key's values), -1 when n does not carry the label
    masks         static rules: which nodes each constrained workload may use
    anti          (P, 3) rows (key, a, b), a <= b: a and b never share a domain of key (a == b:
                  at most one replica of a per domain)
    affinity      required pod affinity, one entry per workload that has terms
    spread        DoNotSchedule topology spread constraints
    """

    keys: list[str] = field(default_factory=list)
    node_domain: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    n_domains: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    masks: list[NodeMask] = field(default_factory=list)
    anti: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    affinity: list[Affinity] = field(default_factory=list)
    spread: list[Spread] = field(default_factory=list)

    @property
    def dynamic(self) -> bool:
        """True when some rule depends on where other replicas are (pod (anti-)affinity, spread)."""
        return bool(len(self.anti) or self.affinity or self.spread)

    def involved(self) -> np.ndarray:
        """Workloads that any placement-dependent rule names, sorted."""
        parts = [self.anti[:, 1], self.anti[:, 2]]
        parts += [np.r_[a.workload, a.targets] for a in self.affinity]
        parts += [np.r_[s.workload, s.counted] for s in self.spread]
        return np.unique(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, dtype=np.int64)

    def targets_first(self, order: np.ndarray, eager: bool = False) -> np.ndarray:
        """Positions into `order` (a sequence of workload indices, repeats allowed): the same order,
        but an entry whose workload has required pod affinity moved to just after the last entry of
        its targets when it came before it. That is where kube-scheduler ends up: a pod whose
        targets are not bound waits and is retried once they are (the rules are acyclic:
        `compile_constraints` checks). With `eager` it moves there even when it came later (a
        heuristic places it next to its targets before their domains fill up). Other entries keep
        their places."""
        seq = np.asarray(order).tolist()
        if not self.affinity:
            return np.arange(len(seq))
        targets_of = {a.workload: set(a.targets.tolist()) for a in self.affinity}
        left: dict[int, int] = {}  # workload -> its entries not emitted yet
        for w in seq:
            left[w] = left.get(w, 0) + 1
        waiting: dict[int, list[int]] = {}  # target workload -> positions waiting for it
        out: list[int] = []

        def missing(i: int) -> list[int]:
            return [t for t in targets_of.get(seq[i], ()) if left.get(t, 0) > 0]

        def emit(i: int) -> None:
            out.append(i)
            w = seq[i]
            left[w] -= 1
            if left[w] == 0:
                for j in waiting.pop(w, []):
                    if not missing(j) and j not in done:
                        done.add(j)
                        emit(j)

        done: set[int] = set()
        if eager:  # every dependent waits for its targets, wherever it stands
            for i, w in enumerate(seq):
                for t in targets_of.get(w, ()):
                    if left.get(t, 0) > 0:
                        waiting.setdefault(t, []).append(i)
        for i in range(len(seq)):
            needs = missing(i)
            if eager and not needs and seq[i] in targets_of and any(t in left for t in targets_of[seq[i]]):
                continue  # already emitted right after its targets
            if needs:
                for t in needs:
                    waiting.setdefault(t, []).append(i)
            else:
                done.add(i)
                emit(i)
        return np.asarray(out, dtype=np.int64)

    def rules_of(self, n_workloads: int) -> list[list[tuple[str, int]]]:
        """Per workload: the (family, index) of each dynamic rule it takes part in."""
        out: list[list[tuple[str, int]]] = [[] for _ in range(n_workloads)]
        for i, (_, a, b) in enumerate(self.anti.tolist()):
            out[a].append(("anti", i))
            if b != a:
                out[b].append(("anti", i))
        for i, a in enumerate(self.affinity):
            for w in {a.workload, *a.targets.tolist()}:
                out[w].append(("affinity", i))
        for i, s in enumerate(self.spread):
            for w in {s.workload, *s.counted.tolist()}:
                out[w].append(("spread", i))
        return out


# ---------------------------------------------------------------------------
# Compiling


class _Pods:
    """What selectors see of each workload's pods, indexed by label so that a selector only
    looks at the workloads that can match it (10,000 workloads: milliseconds, not seconds)."""

    def __init__(self, namespace: list[str], labels: list[dict[str, str]], ns_labels: dict[str, dict[str, str]]):
        self.namespace, self.labels, self.ns_labels = namespace, labels, ns_labels
        self.n = len(labels)
        self.by_pair: dict[tuple[str, str], list[int]] = {}
        self.by_key: dict[str, list[int]] = {}
        for w, pod_labels in enumerate(labels):
            for k, v in pod_labels.items():
                self.by_pair.setdefault((k, v), []).append(w)
                self.by_key.setdefault(k, []).append(w)

    def candidates(self, selector: LabelSelector) -> np.ndarray | None:
        """Workloads that may match `selector` (None: any may); exact matching comes after."""
        sets: list[set[int]] = [set(self.by_pair.get(pair, ())) for pair in selector.match_labels.items()]
        for r in selector.match_expressions:
            if r.operator.value == "In":
                sets.append({w for v in r.values for w in self.by_pair.get((r.key, v), ())})
            elif r.operator.value == "Exists":
                sets.append(set(self.by_key.get(r.key, ())))
        if not sets:
            return None
        return np.array(sorted(set.intersection(*sets)), dtype=np.int64)

    def matching(self, selector: LabelSelector | None, namespaces: Callable[[str], bool]) -> np.ndarray:
        """W bool: workloads in an accepted namespace whose labels match `selector`."""
        out = np.zeros(self.n, dtype=bool)
        if selector is None:
            return out
        pool = self.candidates(selector)
        for w in (range(self.n) if pool is None else pool.tolist()):
            if namespaces(self.namespace[w]) and selector_matches(selector, self.labels[w]):
                out[w] = True
        return out


def _namespace_labels(spec) -> dict[str, dict[str, str]]:
    out = {ns.id: {**ns.labels, LABEL_NAMESPACE_NAME: ns.id} for ns in spec.namespaces}
    for wl in spec.workloads:
        ns = _namespace_of(wl)
        out.setdefault(ns, {LABEL_NAMESPACE_NAME: ns})
    return out


def _namespace_of(wl) -> str:
    sch = wl.scheduling
    return sch.namespace if sch is not None and sch.namespace else wl.tenant


def _with_label_keys(selector: LabelSelector | None, own: Mapping[str, str], match: list[str],
                     mismatch: list[str]) -> LabelSelector | None:
    """`match_label_keys` / `mismatch_label_keys` merged as In / NotIn on the pod's own values
    (applyLabelKeysToLabelSelector); a null selector stays null (it matches nothing)."""
    if selector is None or not (match or mismatch):
        return selector
    extra = [{"key": k, "operator": "In", "values": [own[k]]} for k in match if k in own]
    extra += [{"key": k, "operator": "NotIn", "values": [own[k]]} for k in mismatch if k in own]
    if not extra:
        return selector
    return LabelSelector.model_validate({"match_labels": dict(selector.match_labels),
                                         "match_expressions": [r.model_dump(mode="json") for r in selector.match_expressions] + extra})


def _term_matches(term: PodAffinityTerm, owner: int, pods: _Pods) -> np.ndarray:
    """W bool: workloads whose pods a pod of `owner` with this term counts (AffinityTerm.Matches)."""
    own_ns = pods.namespace[owner]
    names = set(term.namespaces)
    if not term.namespaces and term.namespace_selector is None:
        names = {own_ns}
    selector = _with_label_keys(term.label_selector, pods.labels[owner], term.match_label_keys, term.mismatch_label_keys)
    ns_ok = {ns: ns in names or selector_matches(term.namespace_selector, labels) for ns, labels in pods.ns_labels.items()}
    return pods.matching(selector, ns_ok.__getitem__)


def compile_constraints(spec, node_labels: list[dict[str, str]], node_dedicated: np.ndarray, workload_tenant: np.ndarray,
                        tenant_dedicated: np.ndarray, problems: list[Problem]) -> Constraints:
    """The `Constraints` of a field-valid scenario spec.

    Parameters
    ----------
    spec : the `ScenarioSpec`
    node_labels : each node's effective labels (`effective_node_labels`)
    node_dedicated, workload_tenant, tenant_dedicated : the scenario's arrays (N, W, M); a
        dedicated tenant's pods carry node affinity to its pool (the admission policy adds it),
        which spread's node_affinity_policy Honor counts with
    problems : where rules that cannot be planned are reported (with their paths)
    """
    N, W = len(spec.nodes), len(spec.workloads)
    pods = _Pods([_namespace_of(wl) for wl in spec.workloads],
                 [dict(wl.scheduling.labels) if wl.scheduling else {} for wl in spec.workloads], _namespace_labels(spec))
    node_names = [n.id for n in spec.nodes]
    keys: dict[str, int] = {}

    def key_index(key: str) -> int:
        return keys.setdefault(key, len(keys))

    masks: list[NodeMask] = []
    affinity_ok = _node_affinity_masks(spec, node_labels, node_names)
    if affinity_ok is not None:
        masks.append(NodeMask("node_affinity", *affinity_ok))
    toleration_ok = _toleration_masks(spec)
    if toleration_ok is not None:
        masks.append(NodeMask("taint", *toleration_ok))

    anti: set[tuple[int, int, int]] = set()
    affinities: list[Affinity] = []
    spreads: list[tuple[int, int, Any]] = []  # (workload, key, constraint)
    for w, wl in enumerate(spec.workloads):
        sch = wl.scheduling
        if sch is None:
            continue
        if sch.pod_anti_affinity is not None:
            for term in sch.pod_anti_affinity.required:
                k = key_index(term.topology_key)
                for v in np.flatnonzero(_term_matches(term, w, pods)).tolist():
                    anti.add((k, min(w, v), max(w, v)))
        if sch.pod_affinity is not None and sch.pod_affinity.required:
            terms = sch.pod_affinity.required
            match = np.logical_and.reduce([_term_matches(t, w, pods) for t in terms])
            self_match = bool(match[w])
            match[w] = False
            affinities.append(Affinity(w, np.unique([key_index(t.topology_key) for t in terms]), np.flatnonzero(match),
                                       self_match))
        for c in sch.topology_spread:
            if c.when_unsatisfiable == "DoNotSchedule":
                spreads.append((w, key_index(c.topology_key), c))

    key_list = list(keys)
    node_domain = np.full((len(key_list), N), -1, dtype=np.int64)
    n_domains = np.zeros(len(key_list), dtype=np.int64)
    for k, key in enumerate(key_list):
        values: dict[str, int] = {}
        for n, labels in enumerate(node_labels):
            if key in labels:
                node_domain[k, n] = values.setdefault(labels[key], len(values))
        n_domains[k] = len(values)

    # Nodes without a topology label: never for a pod whose affinity or DoNotSchedule spread names it.
    needs: dict[str, dict[int, set[int]]] = {"pod_affinity": {}, "topology_spread": {}}
    for a in affinities:
        needs["pod_affinity"].setdefault(a.workload, set()).update(a.keys.tolist())
    for w, k, _ in spreads:
        needs["topology_spread"].setdefault(w, set()).add(k)
    for kind, by_workload in needs.items():
        if by_workload:
            rows = np.array(sorted(by_workload), dtype=np.int64)
            mask = np.array([(node_domain[sorted(by_workload[w])] >= 0).all(axis=0) for w in rows.tolist()])
            masks.append(NodeMask(kind, rows, mask))

    spread = _compile_spreads(spec, spreads, node_labels, node_domain, masks, pods, node_dedicated, workload_tenant,
                              tenant_dedicated)
    affinities = _check_affinities(spec, affinities, problems)
    anti_rows = np.array(sorted(anti), dtype=np.int64).reshape(-1, 3)
    return Constraints(key_list, node_domain, n_domains, masks, anti_rows, affinities, spread)


def _grouped(items: Iterable[tuple[int, Any]]) -> dict[str, tuple[Any, list[int]]]:
    """Group workloads by the JSON of a rule, so each distinct rule is evaluated once over the nodes."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for w, rule in items:
        key = json.dumps(rule.model_dump(mode="json") if hasattr(rule, "model_dump") else
                         [r.model_dump(mode="json") for r in rule], sort_keys=True)
        groups.setdefault(key, (rule, []))[1].append(w)
    return groups


def _node_affinity_masks(spec, node_labels, node_names) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, mask) of workloads with required node affinity terms, or None when none has any."""
    items = [(w, wl.scheduling.node_affinity) for w, wl in enumerate(spec.workloads)
             if wl.scheduling is not None and wl.scheduling.node_affinity is not None
             and wl.scheduling.node_affinity.required is not None]
    if not items:
        return None
    rows, mask = [], []
    for affinity, ws in _grouped(items).values():
        match = np.fromiter((node_affinity_matches(affinity, labels, name) for labels, name in zip(node_labels, node_names)),
                            bool, len(node_names))
        rows += ws
        mask += [match] * len(ws)
    order = np.argsort(rows)
    return np.asarray(rows, dtype=np.int64)[order], np.asarray(mask, dtype=bool)[order]


def _run_seconds(wl) -> float:
    """How long one replica must stay where it is placed [s]: a deferrable job its run, anything else for ever."""
    return float(wl.deferral.duration_minutes * 60) if wl.deferral is not None else float("inf")


def _toleration_masks(spec) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, mask): where each workload tolerates every NoSchedule and NoExecute taint (long enough),
    for every workload when some node has such a taint; None otherwise."""
    tainted = [(n, [t for t in node.taints if t.effect.value in FILTER_EFFECTS]) for n, node in enumerate(spec.nodes)]
    tainted = [(n, ts) for n, ts in tainted if ts]
    if not tainted:
        return None
    W, N = len(spec.workloads), len(spec.nodes)
    mask = np.ones((W, N), dtype=bool)
    items = [(w, (wl.scheduling.tolerations if wl.scheduling else []), _run_seconds(wl)) for w, wl in enumerate(spec.workloads)]
    groups: dict[tuple[str, float], list[int]] = {}
    for w, tols, run in items:
        groups.setdefault((json.dumps([t.model_dump(mode="json") for t in tols], sort_keys=True), run), []).append(w)
    for (_, run), ws in groups.items():
        tols = (spec.workloads[ws[0]].scheduling.tolerations if spec.workloads[ws[0]].scheduling else [])
        for n, taints in tainted:
            if not taints_tolerated(tols, taints, run):
                mask[ws, n] = False
    return np.arange(W, dtype=np.int64), mask


def _compile_spreads(spec, spreads, node_labels, node_domain, masks, pods, node_dedicated, workload_tenant,
                     tenant_dedicated) -> list[Spread]:
    """Counting nodes and counted workloads of each DoNotSchedule spread constraint."""
    if not spreads:
        return []
    N, W = len(spec.nodes), len(spec.workloads)
    static = {kind: (m.rows, m.mask) for m in masks for kind in [m.kind]}

    def row_of(kind: str, w: int) -> np.ndarray:
        rows, mask = static.get(kind, (None, None))
        if rows is None:
            return np.ones(N, dtype=bool)
        i = np.searchsorted(rows, w)
        return mask[i] if i < len(rows) and rows[i] == w else np.ones(N, dtype=bool)

    keys_of: dict[int, list[int]] = {}
    for w, k, _ in spreads:
        keys_of.setdefault(w, []).append(k)
    out = []
    for w, k, c in spreads:
        wl = spec.workloads[w]
        m = int(workload_tenant[w])
        counting = (node_domain[keys_of[w]] >= 0).all(axis=0)  # nodes carrying every key of the pod's constraints
        if c.node_affinity_policy == "Honor":
            selector = dict(wl.node_selector)
            affinity = row_of("node_affinity", w)
            labels_ok = (np.fromiter((all(labels.get(key) == v for key, v in selector.items()) for labels in node_labels),
                                     bool, N) if selector else True)
            pool = (node_dedicated == m) if m >= 0 and tenant_dedicated[m] else np.ones(N, dtype=bool)
            counting &= affinity & labels_ok & pool
        if c.node_taints_policy == "Honor":
            foreign_pool = (node_dedicated >= 0) & (node_dedicated != m)
            counting &= row_of("taint", w) & ~foreign_pool
        selector = _with_label_keys(c.label_selector, pods.labels[w], c.match_label_keys, [])
        empty = selector is not None and not selector.match_labels and not selector.match_expressions
        ns = pods.namespace[w]
        counted = np.zeros(W, dtype=bool) if empty else pods.matching(selector, ns.__eq__)
        self_match = selector_matches(selector, pods.labels[w])
        if not counted.any():
            continue  # it counts no pod: count + self - 0 <= max_skew always holds (max_skew >= 1)
        out.append(Spread(w, k, int(c.max_skew), np.flatnonzero(counted), counting, int(c.min_domains or 1), self_match))
    return out


def _check_affinities(spec, affinities: list[Affinity], problems: list[Problem]) -> list[Affinity]:
    """Affinity rules that can be planned; the others reported (no targets and no self match, or a cycle)."""
    by_workload = {a.workload: a for a in affinities}
    out = []
    for a in affinities:
        path = f"workloads[{a.workload}].scheduling.pod_affinity.required"
        wid = spec.workloads[a.workload].id
        jobs_only = len(a.targets) and all(spec.workloads[v].deferral is not None for v in a.targets.tolist())
        if jobs_only:
            problems.append(Problem(path, f"the pods {wid!r} must be next to are deferrable jobs only; edgeplace plans "
                                          "when a job starts, so it cannot keep another workload beside it; give the "
                                          "term a target that runs all the time"))
            continue
        if not len(a.targets) and not a.self_match:
            problems.append(Problem(path, f"no pod of the scenario matches the affinity terms of {wid!r}, and its own pods "
                                          "do not either, so kube-scheduler would never bind it; fix the label selector "
                                          "or the namespaces"))
            continue
        cycle = _affinity_cycle(a.workload, by_workload)
        if cycle:
            names = " -> ".join(spec.workloads[w].id for w in cycle)
            problems.append(Problem(path, f"pod affinity cycle {names}: each needs the other bound first, which "
                                          "kube-scheduler cannot order across domains; drop one direction"))
            continue
        out.append(a)
    return out


def _affinity_cycle(start: int, by_workload: dict[int, Affinity]) -> list[int]:
    """A path start -> ... -> start through affinity targets, or [] (depth-first)."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        w, path = stack.pop()
        rule = by_workload.get(w)
        if rule is None:
            continue
        for v in rule.targets.tolist():
            if v == start:
                return path + [start]
            if v not in seen:
                seen.add(v)
                stack.append((v, path + [v]))
    return []


# ---------------------------------------------------------------------------
# Placed replicas: kube-scheduler's filter for one more pod, and the final-state rules


@dataclass(frozen=True)
class Broken:
    """A dynamic rule a state breaks: `kind` (the evaluation's violation kind), the workload whose
    rule it is, and what is wrong."""

    kind: str
    workload: int
    message: str


class ConstraintState:
    """Replicas placed per workload and topology domain, for the dynamic rules of `Constraints`.

    `persistent` (W bool) marks workloads present whenever anything is: services over a horizon
    (every workload when the state is one slot). Presence that hurts counts every replica
    (anti-affinity, the crowded side of spread); presence that helps counts only persistent ones
    and the workload itself (affinity targets, the emptiest domain of spread): the conservative
    reading of the module docstring. Counts are kept only for the workloads the rules name.
    """

    def __init__(self, constraints: Constraints, n_workloads: int, persistent: np.ndarray):
        c = self.c = constraints
        self.persistent = np.asarray(persistent, dtype=bool)
        involved = c.involved()
        self.row = np.full(n_workloads, -1, dtype=np.int64)
        self.row[involved] = np.arange(len(involved))
        I = len(involved)
        # count[k][row, d]: replicas of the workload in domain d of key k.
        self.count = [np.zeros((I, int(c.n_domains[k])), dtype=np.int64) for k in range(len(c.keys))]
        self.rules = c.rules_of(n_workloads)
        self.anti_of: list[list[tuple[int, int]]] = [[] for _ in range(n_workloads)]  # w -> (key, other)
        for k, a, b in c.anti.tolist():
            self.anti_of[a].append((k, b))
            if a != b:
                self.anti_of[b].append((k, a))
        self.affinity_of = {a.workload: a for a in c.affinity}
        self.spread_of: list[list[int]] = [[] for _ in range(n_workloads)]  # w -> rules of its own
        self.counted_in: list[list[int]] = [[] for _ in range(n_workloads)]  # w -> others' rules counting it
        for i, s in enumerate(c.spread):
            self.spread_of[s.workload].append(i)
            for v in s.counted.tolist():
                if v != s.workload:
                    self.counted_in[v].append(i)
        self.eligible = [s.eligible_domains(c.node_domain[s.key], int(c.n_domains[s.key])) for s in c.spread]
        # Spread counts only pods on a rule's counting nodes: per rule, its key's domains of those nodes and
        # the counted workloads' replicas there.
        self.spread_domain = [np.where(s.counting_nodes, c.node_domain[s.key], -1) for s in c.spread]
        self.spread_pos = []
        for s in c.spread:
            pos = np.full(n_workloads, -1, dtype=np.int64)
            pos[s.counted] = np.arange(len(s.counted))
            self.spread_pos.append(pos)
        self.spread_count = [np.zeros((len(s.counted), int(c.n_domains[s.key])), dtype=np.int64) for s in c.spread]

    # -- updates -----------------------------------------------------------------------
    def add(self, w: int, node: int, k: int = 1) -> None:
        """k more (or, negative, fewer) replicas of w on node."""
        r = self.row[w]
        if r < 0:
            return
        for key in range(len(self.c.keys)):
            d = self.c.node_domain[key, node]
            if d >= 0:
                self.count[key][r, d] += k
        for family, i in self.rules[w]:
            if family == "spread" and self.spread_pos[i][w] >= 0:
                d = self.spread_domain[i][node]
                if d >= 0:
                    self.spread_count[i][self.spread_pos[i][w], d] += k

    def load(self, workloads: np.ndarray, nodes: np.ndarray) -> None:
        """Set the state to one replica of workloads[i] on nodes[i] for each i (vectorised)."""
        rows = self.row[workloads]
        keep = rows >= 0
        rows, nodes = rows[keep], nodes[keep]
        for key, table in enumerate(self.count):
            _fill(table, rows, self.c.node_domain[key, nodes])
        ws = workloads[keep]
        for i, table in enumerate(self.spread_count):
            _fill(table, self.spread_pos[i][ws], self.spread_domain[i][nodes])

    # -- per-domain sums ------------------------------------------------------------------
    def _present(self, key: int, ws: np.ndarray, helps: bool) -> np.ndarray:
        """Replicas of the workloads `ws` per domain of `key` (only persistent ones when presence helps)."""
        if helps:
            ws = ws[self.persistent[ws]]
        rows = self.row[ws]
        rows = rows[rows >= 0]
        return self.count[key][rows].sum(axis=0) if len(rows) else np.zeros(self.count[key].shape[1], dtype=np.int64)

    def _spread_counts(self, i: int) -> tuple[np.ndarray, float]:
        """(counted pods per domain, crowded side; the emptiest eligible domain's count, helping side)."""
        s = self.c.spread[i]
        crowded = self._counted(i, s.counted)
        helpers = s.counted[self.persistent[s.counted] | (s.counted == s.workload)]
        fill = self._counted(i, helpers)
        eligible = self.eligible[i]
        lowest = 0.0 if eligible.sum() < s.min_domains or not eligible.any() else float(fill[eligible].min())
        return crowded, lowest

    def _counted(self, i: int, ws: np.ndarray) -> np.ndarray:
        """Replicas of `ws` (counted workloads) on spread rule i's counting nodes, per domain of its key."""
        return self.spread_count[i][self.spread_pos[i][ws]].sum(axis=0)

    # -- kube-scheduler's filter for one more pod ------------------------------------------------
    def allowed(self, w: int) -> np.ndarray | None:
        """N bool: nodes where one more replica of w passes the dynamic rules now (None: every node)."""
        if not self.ruled(w):
            return None
        c = self.c
        N = c.node_domain.shape[1]
        ok = np.ones(N, dtype=bool)
        for key, other in self.anti_of[w]:
            dom = c.node_domain[key]
            taken = self.count[key][self.row[other]] > 0
            ok &= (dom < 0) | ~taken[np.maximum(dom, 0)]
        rule = self.affinity_of.get(w)
        if rule is not None:
            for key in rule.keys.tolist():
                dom = c.node_domain[key]
                if len(rule.targets):
                    there = self._present(key, rule.targets, helps=True) > 0
                else:  # no targets, own pods match: the first anywhere, the rest beside it
                    there = self.count[key][self.row[w]] > 0
                    if not there.any():
                        continue
                ok &= (dom >= 0) & there[np.maximum(dom, 0)]
        for i in self.spread_of[w]:
            s = c.spread[i]
            dom = c.node_domain[s.key]
            crowded, lowest = self._spread_counts(i)
            room = crowded + int(s.self_match) - lowest <= s.max_skew
            ok &= (dom >= 0) & room[np.maximum(dom, 0)]
        for i in self.counted_in[w]:
            # Another workload's spread counts w: w may not crowd a domain hosting that workload past its
            # skew (kube-scheduler would not check it then, but the final state must hold).
            s = c.spread[i]
            dom = self.spread_domain[i]
            crowded, lowest = self._spread_counts(i)
            full = (self.count[s.key][self.row[s.workload]] > 0) & (crowded + 1 - lowest > s.max_skew)
            ok &= (dom < 0) | ~full[np.maximum(dom, 0)]
        return ok

    def ruled(self, w: int) -> bool:
        """Some dynamic rule restricts where one more replica of w may go."""
        return bool(self.anti_of[w] or w in self.affinity_of or self.spread_of[w] or self.counted_in[w])

    # -- the final-state rules -----------------------------------------------------------------
    def broken(self, workloads: Iterable[int] | None = None) -> list[Broken]:
        """The dynamic rules the state breaks (of the rules naming `workloads`; default all)."""
        c = self.c
        if workloads is None:
            anti, aff, spr = range(len(c.anti)), range(len(c.affinity)), range(len(c.spread))
        else:
            picked = {r for w in workloads for r in self.rules[w]}
            anti = sorted(i for f, i in picked if f == "anti")
            aff = sorted(i for f, i in picked if f == "affinity")
            spr = sorted(i for f, i in picked if f == "spread")
        out: list[Broken] = []
        for i in anti:
            key, a, b = c.anti[i].tolist()
            ca, cb = self.count[key][self.row[a]], self.count[key][self.row[b]]
            bad = (ca > 1) if a == b else (ca > 0) & (cb > 0)
            if bad.any():
                out.append(Broken("pod_anti_affinity", a, f"{int(bad.sum())} {c.keys[key]} domain(s)"))
        for i in aff:
            rule = c.affinity[i]
            mine = [self.count[k][self.row[rule.workload]] for k in rule.keys.tolist()]
            if not any(m.any() for m in mine):
                continue
            for k, m in zip(rule.keys.tolist(), mine):
                if len(rule.targets):
                    lonely = (m > 0) & ~(self._present(k, rule.targets, helps=True) > 0)
                    if lonely.any():
                        out.append(Broken("pod_affinity", rule.workload, f"{int(lonely.sum())} {c.keys[k]} domain(s) "
                                          "without a pod it must be next to"))
                        break
                elif (m > 0).sum() > 1:
                    out.append(Broken("pod_affinity", rule.workload, f"spread over {int((m > 0).sum())} {c.keys[k]} "
                                      "domains (its pods must share one)"))
                    break
        for i in spr:
            s = c.spread[i]
            mine = self.count[s.key][self.row[s.workload]] > 0
            if not mine.any():
                continue
            crowded, lowest = self._spread_counts(i)
            over = mine & (crowded - lowest > s.max_skew)
            if over.any():
                out.append(Broken("topology_spread", s.workload, f"{int((crowded[over] - lowest).max())} matching pods in a "
                                  f"{c.keys[s.key]} domain against {lowest:g} in the emptiest (max skew {s.max_skew})"))
        return out


def _fill(table: np.ndarray, rows: np.ndarray, domains: np.ndarray) -> None:
    """table[row, domain] = how often (row, domain) occurs, over pairs with both >= 0."""
    ok = (rows >= 0) & (domains >= 0)
    D = table.shape[1]
    table[:] = np.bincount(rows[ok] * D + domains[ok], minlength=table.size)[: table.size].reshape(table.shape)
