"""Steering pods to the plan's nodes at admission, so kube-scheduler needs no extender call per pod.

The extender answers every pod kube-scheduler schedules: at 1,000 nodes that
is an HTTPS round trip with 1,000 node names in the middle of each
scheduling cycle, which costs kube-scheduler about a third of its
throughput (docs/BENCHMARKS.md, ``k8s_e2e``). Everything the extender's
filter decides is expressed natively by now (tenant isolation in taints and
admission policies, `edgeplace.k8s.isolation`; sleeping nodes by the
``edgeplace.io/powered-down`` taint), except two things this module adds:

- **where the plan puts a workload**: each new pod of a planned workload gets
  a *preferred* node affinity term (weight 100) for the nodes the plan puts
  the workload on in the current slot. Preferred, so a full or lost node
  never leaves the pod Pending: carbon fails open, as the extender does;
- **where the workload may run at all** (its latency SLA): a *required*
  requirement for the nodes the plan allows (`Scenario.workload_node_eligible`),
  added to each required term the pod has (terms are ORed, so it goes into
  every one), only when that is a strict subset of the nodes. It holds with
  edgeplace down, like isolation.

Every other pod is marked for the extender: the policy gives it a request of
the extended resource ``edgeplace.io/unsteered`` (`UNSTEERED_RESOURCE`), and
the chart's scheduler configuration lists that resource in the extender's
``managedResources``, so kube-scheduler calls the extender only for marked
pods. The mark costs nothing anywhere else: kube-scheduler ignores the
resource in its fit check (``ignoredByScheduler``), kubelet drops requests of
extended resources its node does not advertise before admitting the pod, and
`edgeplace.k8s.mapping` does not model it. A pod is marked when

- the plan does not cover its workload (no entry: unplanned, planned
  nowhere, no workload id), or its steering is incomplete (``extender.<key>``:
  a planned or allowed node that cannot be named). DaemonSet pods never are
  (their controller places them), nor pods of a scheduler the chart does not
  wire with the managedResources entry;
- or every pod (``extender: every-pod``): the planner asks for it in large
  clusters (`data`'s ``mark``), where one extender call that leaves
  kube-scheduler the plan's best node is cheaper than scoring every node for
  the preferred term (docs/EXTENDER.md, "Throughput"), and when the map had
  to drop the SLA sets.

The policy marks only what the parameters' ``extender`` key asks for
(``unsteered`` or ``every-pod``); without it, or without parameters (before
the planner's first round), no pod is marked, and with managedResources
configured kube-scheduler then schedules without the extender, as with it
down. A kube-scheduler that does not ignore the resource (an extender
stanza without the managedResources entry) would find no node for a marked
pod: `stuck_pods` finds such pods, and the planner then stops marking and
says what to fix.

Both name nodes by their ``kubernetes.io/hostname`` label (kubelet sets it),
not by ``metadata.name``: a node field selector takes one value only. So a
node is named only when its label value is its own (no other node carries
it); a workload whose allowed nodes cannot all be named gets no required
term (its SLA rests on the extender's filter, and a warning says so).

A MutatingAdmissionPolicy of the Helm chart
(``deploy/helm/edgeplace/templates/steering-policy.yaml``) does the writing,
inside kube-apiserver (CEL, no webhook round trip), from the parameters this
module keeps in the ConfigMap ``<namespace>/edgeplace-steering``:

- ``prefer.<key>: "host-a,host-b"``: the plan's nodes of the workload;
- ``require.<key>: "<set>"`` and ``set.<set>: "host-a,host-b,..."``: the
  nodes it may run on (many workloads share a set, which keeps the map small).

``<key>`` is the workload id (`edgeplace.k8s.identity`: the pod's
``edgeplace.io/workload`` annotation, else ``namespace/name`` of its
controller owner, a ReplicaSet followed to its Deployment by the
``pod-template-hash`` rule) with ``/`` written as ``_`` (a ConfigMap key
allows ``[-._a-zA-Z0-9]``; Kubernetes names never hold ``_``). The policy
computes the same key from the pod in CEL. Its failure policy is Ignore and
a missing ConfigMap is allowed: without edgeplace a pod is created as it
was written.

The planner writes the parameters each round from the plan document it
publishes (`PlannerOptions.steering_namespace`); `data` is pure.
kube-scheduler's NodeAffinity score plugin then picks a planned node, with
its weight raised in ``deploy/kube-scheduler-config.yaml`` so the plan
outweighs the spreading plugins, and percentageOfNodesToScore 100 so a
planned node is always among the scored ones.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

log = logging.getLogger("edgeplace.k8s.steering")

#: The steering policy's parameter ConfigMap (in the edgeplace namespace).
PARAMS_NAME = "edgeplace-steering"
PREFER, REQUIRE, SET, EXTENDER = "prefer.", "require.", "set.", "extender."
#: Which pods the policy marks for the extender: absent, none; UNSTEERED, those the plan does not
#: steer; EVERY_POD, all (no workload's key can be it: those carry a prefix).
MARK, UNSTEERED, EVERY_POD = "extender", "unsteered", "every-pod"
#: The extended resource that marks a pod for the extender (its `managedResources`, ignored by
#: kube-scheduler's fit check and by kubelet on nodes that do not advertise it).
UNSTEERED_RESOURCE = "edgeplace.io/unsteered"
#: From this many nodes on, the planner marks every pod for the extender (docs/EXTENDER.md
#: "Throughput": steering alone beats a call per pod at 9 and 100 nodes, is level with it at 400
#: and loses to it at 1,000, where kube-scheduler would score every node for the preferred term).
DEFAULT_EVERY_POD_FROM = 500
#: The node label the policy's terms match (kubelet sets it to the node's hostname).
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: What a ConfigMap key may hold (and at most 253 characters).
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
#: A ConfigMap holds at most 1 MiB; keep clear of it (metadata, the API server's own overhead).
MAX_DATA_BYTES = 900 * 1024


def params_key(workload_id: str) -> str | None:
    """The workload's key in the parameters (``/`` as ``_``), or None when the id cannot be one."""
    key = workload_id.replace("/", "_")
    return key if _KEY.match(key) and len(key) <= 253 - len(REQUIRE) else None


def node_hostnames(nodes: list[Mapping[str, Any]]) -> dict[str, str]:
    """{node name: its hostname label} of the nodes whose label value no other node carries."""
    label = {str((n.get("metadata") or {}).get("name")): ((n.get("metadata") or {}).get("labels") or {}).get(HOSTNAME_LABEL)
             for n in nodes}
    seen: dict[str, int] = {}
    for value in label.values():
        if value:
            seen[value] = seen.get(value, 0) + 1
    return {name: value for name, value in label.items() if value and seen[value] == 1}


def data(doc: Mapping[str, Any], hostnames: Mapping[str, str],
         mark: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The parameters for a plan document (`edgeplace.k8s.extender.table`), and warnings.

    `hostnames` names the nodes (`node_hostnames`). A workload whose id cannot be a key (or gives
    another's key), or that the plan puts nowhere, gets no entry (its pods are created as written,
    marked for the extender when `mark` asks); one whose planned or allowed nodes cannot all be
    named gets an ``extender.<key>`` entry next to what can be written. `mark`: which pods the
    policy marks for the extender (`UNSTEERED`, `EVERY_POD`; None: none). When the map would
    exceed `MAX_DATA_BYTES`, the ``require`` entries are left out first (the plan's own preference
    steers, and with marks on every pod goes to the extender for the SLA), then the map is
    refused whole (with marks on, every pod is then unsteered and marked).
    """
    if mark not in (None, UNSTEERED, EVERY_POD):
        raise ValueError(f"mark must be None, {UNSTEERED!r} or {EVERY_POD!r}, got {mark!r}")
    all_nodes = set(doc.get("nodes") or {})
    node_sets: dict[str, list[str]] = doc.get("node_sets") or {}
    prefer: dict[str, str] = {}
    require: dict[str, str] = {}
    sets: dict[str, str] = {}
    marks: dict[str, str] = {MARK: mark} if mark else {}
    warnings: list[str] = []
    workloads = doc.get("workloads") or {}
    by_key: dict[str, list[str]] = {}
    for wid in sorted(workloads):
        key = params_key(wid)
        if key is None:
            warnings.append(f"workload {wid!r}: no steering (its id is not a ConfigMap key)")
        else:
            by_key.setdefault(key, []).append(wid)
    for key, wids in by_key.items():
        if len(wids) > 1:  # the policy could not tell their pods apart
            warnings.append(f"workloads {', '.join(map(repr, wids))}: no steering (their ids give the same key {key!r})")
            continue
        wid, entry = wids[0], workloads[wids[0]]
        planned_nodes = [n for n, count in (entry.get("planned_nodes") or {}).items() if count > 0]
        planned = sorted(hostnames[n] for n in planned_nodes if n in hostnames)
        if len(planned) < len(planned_nodes):
            warnings.append(f"workload {wid!r}: not steered to {_unnamed(planned_nodes, hostnames)} "
                            f"(no {HOSTNAME_LABEL} label of its own; its pods go to the extender)")
            marks[EXTENDER + key] = ""
        if planned:
            prefer[PREFER + key] = ",".join(planned)
        allowed = entry.get("allowed_nodes")
        members = node_sets.get(allowed, []) if isinstance(allowed, str) else list(allowed or [])
        if members and set(members) < all_nodes:  # every node allowed: nothing to require
            if not all(n in hostnames for n in members):
                warnings.append(f"workload {wid!r}: its allowed nodes are not required at admission "
                                f"({_unnamed(members, hostnames)} without a {HOSTNAME_LABEL} label of its own; "
                                "its pods go to the extender)")
                marks[EXTENDER + key] = ""
                continue
            name = allowed if isinstance(allowed, str) else f"w-{key}"
            sets[SET + name] = ",".join(sorted(hostnames[n] for n in members))
            require[REQUIRE + key] = name
    out = {**prefer, **require, **sets, **marks}
    if _size(out) > MAX_DATA_BYTES:
        warnings.append(f"steering: the allowed-node sets would exceed {MAX_DATA_BYTES // 1024} KiB; "
                        "only the plan's nodes are written (latency SLAs rest on the extender's filter, "
                        "which every pod goes to)")
        out = {**prefer, **({MARK: EVERY_POD} if mark else {})}
    if _size(out) > MAX_DATA_BYTES:
        warnings.append(f"steering: the plan's nodes alone exceed {MAX_DATA_BYTES // 1024} KiB; nothing written")
        return {}, warnings
    return out, warnings


def stuck_pods(pods: list[Mapping[str, Any]]) -> list[str]:
    """``namespace/name`` of the pending pods kube-scheduler found no node for because of the mark
    (its fit check counts `UNSTEERED_RESOURCE`: no managedResources entry ignores it)."""
    stuck = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if (pod.get("spec") or {}).get("nodeName"):
            continue
        for cond in status.get("conditions") or []:
            if (cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable"
                    and f"Insufficient {UNSTEERED_RESOURCE}" in (cond.get("message") or "")):
                stuck.append(f"{meta.get('namespace')}/{meta.get('name')}")
                break
    return sorted(stuck)


def _unnamed(nodes: list[str], hostnames: Mapping[str, str]) -> str:
    """The first few of `nodes` that `hostnames` cannot name, for a warning."""
    unnamed = sorted(n for n in nodes if n not in hostnames)
    return ", ".join(unnamed[:3]) + (" ..." if len(unnamed) > 3 else "")


def _size(d: Mapping[str, str]) -> int:
    return sum(len(k) + len(v) + 8 for k, v in d.items())


def publish(api_client, params: dict[str, str], namespace: str) -> str:
    """Create the parameter ConfigMap, or replace its data with `params` (its metadata, e.g. the
    chart's labels and keep annotation, stays as it is; a concurrent change fails with 409 and the
    next round retries): "created", "updated" or "unchanged"."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    body: dict[str, Any] = {"metadata": {"name": PARAMS_NAME, "namespace": namespace,
                                         "labels": {"app.kubernetes.io/managed-by": "edgeplace"}},
                            "data": params}
    try:
        current = core.read_namespaced_config_map(PARAMS_NAME, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)
        return "created"
    if dict(current.data or {}) == params:
        return "unchanged"
    current.data = params
    core.replace_namespaced_config_map(PARAMS_NAME, namespace, current)
    return "updated"


__all__ = ["DEFAULT_EVERY_POD_FROM", "EVERY_POD", "HOSTNAME_LABEL", "MARK", "MAX_DATA_BYTES", "PARAMS_NAME", "UNSTEERED",
           "UNSTEERED_RESOURCE", "data", "node_hostnames", "params_key", "publish", "stuck_pods"]
