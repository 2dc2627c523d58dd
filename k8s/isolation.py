"""Tenant isolation in the cluster's own mechanisms, so it holds with the extender down.

The extender fails open (right for carbon); isolation is a security boundary
and must not. `reconcile` keeps three things in the cluster that Kubernetes
enforces by itself, with the admission policies of the Helm chart
(``deploy/helm/edgeplace/templates/isolation-policies.yaml``):

1. a taint ``edgeplace.io/dedicated-to=<tenant>:NoSchedule`` on every node
   labelled ``edgeplace.io/dedicated-to: <tenant>`` (and on no other node):
   kube-scheduler keeps every other pod off a dedicated pool;
2. the label ``edgeplace.io/tenant: <tenant>`` on every namespace whose
   workloads edgeplace plans: the admission policies bind to it, and the
   never_with anti-affinity selects the other tenant's namespaces by it;
3. the ConfigMap ``<namespace>/edgeplace-isolation`` (the policies'
   parameters): ``tenant.<t>.dedicated: "true"`` for a dedicated tenant,
   ``tenant.<t>.never-with: "a,b"`` (symmetric: a pair listed once applies
   both ways), ``node.<node>: <tenant>`` for each dedicated node.

From these the MutatingAdmissionPolicy gives each new pod of a tenant the
rules: a dedicated tenant's pods get ``nodeSelector edgeplace.io/dedicated-to:
<tenant>`` and the toleration of their pool's taint; a tenant with never_with
partners gets a required pod anti-affinity term (``labelSelector: {}``,
``namespaceSelector`` on the partners' tenant label, ``topologyKey
kubernetes.io/hostname``). The ValidatingAdmissionPolicy rejects a pod that
escapes them: without those rules, tolerating another tenant's pool (or every
taint), or naming another tenant's node (``nodeName``, ``nodeSelector``,
node affinity), or claiming another tenant by annotation; its message names
the rule.

The rules come from the same sources as the mapping's tenants
(`edgeplace.k8s.mapping.tenant_isolation`: the site config and the
namespaces' ``edgeplace.io/never-with`` / ``edgeplace.io/dedicated-nodes``
annotations). `desired_state` is pure; `changes` compares it with what the
cluster holds; `reconcile` applies the difference (``edgeplace
apply-isolation``, and the planner each round).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from edgeplace.k8s.mapping import (DEFAULT_EXCLUDED_NAMESPACES, LABEL_DEDICATED, LABEL_TENANT, ClusterConfig, ClusterObjects,
                                   _labels, _name, namespace_tenant, read_cluster, tenant_isolation)
from edgeplace.k8s.scheduling import TAINT_DEDICATED
from edgeplace.topology.errors import InputError, Problem

log = logging.getLogger("edgeplace.k8s.isolation")

#: The admission policies' parameter ConfigMap (in the edgeplace namespace).
PARAMS_NAME = "edgeplace-isolation"
#: Annotation on everything `reconcile` writes, so an operator sees who did.
ANN_MANAGED_BY = "edgeplace.io/isolation-managed-by"
#: A Kubernetes label value (what a tenant id must be to label namespaces and taint nodes with it).
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class IsolationState:
    """What the cluster should hold (module docstring): dedicated node -> tenant, namespace -> tenant,
    and the parameter ConfigMap's data."""

    node_owner: dict[str, str]
    namespace_tenant: dict[str, str]
    params: dict[str, str]


@dataclass(frozen=True)
class Change:
    """One write `reconcile` makes: `kind` node-taint | namespace-label | params, the object, what changes."""

    kind: str
    name: str
    detail: str
    patch: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.detail}"


def desired_state(objects: ClusterObjects, config: ClusterConfig | None = None,
                  exclude_namespaces: tuple[str, ...] | None = None) -> IsolationState:
    """The isolation state the cluster should hold, from its Nodes and Namespaces and the site config."""
    config = config or ClusterConfig()
    excluded = set(exclude_namespaces if exclude_namespaces is not None
                   else config.exclude_namespaces if config.exclude_namespaces is not None
                   else DEFAULT_EXCLUDED_NAMESPACES)
    namespaces = {_name(ns): ns for ns in objects.namespaces}
    owners = {_name(n): _labels(n)[LABEL_DEDICATED] for n in objects.nodes if _labels(n).get(LABEL_DEDICATED)}
    tenants = {ns: namespace_tenant(ns, namespaces, config) for ns in sorted(namespaces) if ns not in excluded}
    rules = tenant_isolation(namespaces, config)
    never: dict[str, set[str]] = {}
    for tenant, iso in rules.items():
        for other in iso.get("never_with", []):
            if other != tenant:
                never.setdefault(tenant, set()).add(other)
                never.setdefault(other, set()).add(tenant)
    params = {f"node.{node}": tenant for node, tenant in sorted(owners.items())}
    params.update({f"tenant.{t}.dedicated": "true" for t, iso in sorted(rules.items()) if iso.get("dedicated_nodes")})
    params.update({f"tenant.{t}.never-with": ",".join(sorted(others)) for t, others in sorted(never.items())})
    bad = sorted({t for t in [*tenants.values(), *rules, *never] if len(t) > 63 or not _LABEL_VALUE.match(t)})
    if bad:
        raise InputError("tenants", [Problem(f"tenant {t!r}", "is not a Kubernetes label value (at most 63 letters, digits, "
                                             "'-', '_' or '.', starting and ending with a letter or digit): rename it in "
                                             "the site config or the namespace's edgeplace.io/tenant label") for t in bad])
    return IsolationState(owners, tenants, params)


def changes(objects: ClusterObjects, desired: IsolationState, params: dict[str, str] | None) -> list[Change]:
    """The writes that take the cluster to `desired`; `params` is the parameter ConfigMap's data now
    (None when it does not exist)."""
    out: list[Change] = []
    for node in sorted(objects.nodes, key=_name):
        name = _name(node)
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
        ours = [t for t in taints if t.get("key") == TAINT_DEDICATED]
        owner = desired.node_owner.get(name)
        want = [{"key": TAINT_DEDICATED, "value": owner, "effect": "NoSchedule"}] if owner else []
        have = [{"key": TAINT_DEDICATED, "value": t.get("value") or "", "effect": t.get("effect")} for t in ours]
        if have == want:
            continue
        new = [t for t in taints if t.get("key") != TAINT_DEDICATED] + want
        detail = f"taint {TAINT_DEDICATED}={owner}:NoSchedule" if owner else f"remove taint {TAINT_DEDICATED}"
        out.append(Change("node-taint", name, detail, {"spec": {"taints": new}}))
    for ns in sorted(objects.namespaces, key=_name):
        name = _name(ns)
        tenant = desired.namespace_tenant.get(name)
        if tenant is None or _labels(ns).get(LABEL_TENANT) == tenant:
            continue
        out.append(Change("namespace-label", name, f"label {LABEL_TENANT}={tenant}",
                          {"metadata": {"labels": {LABEL_TENANT: tenant}, "annotations": {ANN_MANAGED_BY: "edgeplace"}}}))
    if params != desired.params:
        added = sorted(set(desired.params) - set(params or {}))
        gone = sorted(set(params or {}) - set(desired.params))
        changed = sorted(k for k in set(desired.params) & set(params or {}) if desired.params[k] != (params or {})[k])
        detail = "; ".join(part for part in (f"add {', '.join(added)}" if added else "",
                                             f"remove {', '.join(gone)}" if gone else "",
                                             f"change {', '.join(changed)}" if changed else "") if part) or "create"
        out.append(Change("params", PARAMS_NAME, detail, {"data": dict(desired.params)}))
    return out


def reconcile(api_client, config: ClusterConfig | None = None, objects: ClusterObjects | None = None, *,
              namespace: str = "edgeplace-system", exclude_namespaces: tuple[str, ...] | None = None,
              dry_run: bool = False) -> list[Change]:
    """Keep the cluster's isolation state (module docstring) and return what changed.

    `objects` are the listed Nodes and Namespaces (read when None: the planner passes its round's
    listing). Node taints are written with a read-modify-replace carrying the resourceVersion (a
    concurrent change makes it fail with 409 and the next round retries); namespace labels are
    merge patches; the parameter ConfigMap is created, or its data replaced (its metadata, e.g. the
    chart's labels and keep annotation, stays). With `dry_run` nothing is written.
    Needs: nodes get/update, namespaces patch, configmaps create/get/update in `namespace`.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    objects = objects if objects is not None else read_cluster(api_client)
    try:
        current = core.read_namespaced_config_map(PARAMS_NAME, namespace)
        params = dict(current.data or {})
    except ApiException as exc:
        if exc.status != 404:
            raise
        current, params = None, None
    todo = changes(objects, desired_state(objects, config, exclude_namespaces), params)
    if dry_run:
        return todo
    for change in todo:
        if change.kind == "node-taint":
            node = core.read_node(change.name)
            others = [t for t in node.spec.taints or [] if t.key != TAINT_DEDICATED]
            node.spec.taints = others + [client.V1Taint(**t) for t in change.patch["spec"]["taints"]
                                         if t.get("key") == TAINT_DEDICATED]
            core.replace_node(change.name, node)
        elif change.kind == "namespace-label":
            core.patch_namespace(change.name, change.patch)
        elif current is None:
            core.create_namespaced_config_map(namespace, {
                "metadata": {"name": PARAMS_NAME, "namespace": namespace, "annotations": {ANN_MANAGED_BY: "edgeplace"}},
                "data": change.patch["data"]})
        else:
            # Only the data changes: the chart's labels (Helm's ownership) and its keep annotation
            # stay, or the next `helm upgrade` refuses the object and an uninstall deletes it.
            current.data = change.patch["data"]
            current.metadata.annotations = {**(current.metadata.annotations or {}), ANN_MANAGED_BY: "edgeplace"}
            core.replace_namespaced_config_map(PARAMS_NAME, namespace, current)
        log.info("isolation: %s", change)
    return todo


__all__ = ["ANN_MANAGED_BY", "PARAMS_NAME", "Change", "IsolationState", "changes", "desired_state", "reconcile"]
