"""Which workload a pod belongs to: the one rule the planner's mapping and the extender share.

A pod's workload is, first that applies:

1. its ``edgeplace.io/workload`` annotation: an optional override (pods copy
   their template's annotations, so setting it on a pod template names every
   pod of the workload);
2. the object its controller owner reference leads to, followed up to the
   workload: Pod -> ReplicaSet -> Deployment, Pod -> StatefulSet,
   Pod -> DaemonSet, Pod -> Job. A CronJob's Job is a workload of its own
   (each run is placed while it exists; a CronJob has nothing to place
   between runs), and a ReplicaSet without a Deployment is one too. The id is
   ``namespace/name`` of that object, the id `edgeplace.k8s.mapping` gives
   the workload;
3. otherwise none (a bare pod, or an owner of another kind).

ReplicaSet -> Deployment is resolved from the ReplicaSet object when the
caller has it (`replicasets`, as the mapping does), else from the pod alone:
the Deployment controller names a ReplicaSet ``<deployment>-<hash>`` and labels
its pods ``pod-template-hash: <hash>`` (`pkg/controller/deployment/sync.go`),
so a ReplicaSet name ending in ``-<the pod's pod-template-hash>`` belongs to
the Deployment named by the rest. That needs no API call and no cache, which
is what the extender needs on its hot path.

Pure functions over the pod's JSON (``metadata.ownerReferences``, labels,
annotations); no Kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: Pod (template) annotation naming the workload id; overrides the owner references.
WORKLOAD_ANNOTATION = "edgeplace.io/workload"
#: Pod (template) or workload annotation naming the tenant.
TENANT_ANNOTATION = "edgeplace.io/tenant"
#: Label the Deployment controller puts on its pods (and in its ReplicaSets' names).
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"

#: Owner kinds a pod's workload can be, after following ReplicaSets to their Deployment.
OWNER_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")

#: (namespace, ReplicaSet name) -> (kind, name) of its controller, or None when it has none.
ReplicaSetOwners = Mapping[tuple[str, str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class WorkloadKey:
    """The API object that is a pod's workload."""

    kind: str
    namespace: str
    name: str

    @property
    def id(self) -> str:
        """The default workload id, ``namespace/name``."""
        return f"{self.namespace}/{self.name}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def controller_ref(obj: Mapping[str, Any]) -> dict | None:
    """The ownerReference with ``controller: true`` (or the only one), if any."""
    refs = _meta(obj).get("ownerReferences")
    if not isinstance(refs, list):
        return None
    refs = [r for r in refs if isinstance(r, dict)]
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if len(refs) == 1 else None


def owner_workload(pod: Mapping[str, Any], replicasets: ReplicaSetOwners | None = None) -> WorkloadKey | None:
    """The workload object a pod's owner references lead to (rule 2 of the module docstring), or None."""
    ref = controller_ref(pod)
    if ref is None:
        return None
    kind, name = ref.get("kind"), ref.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = str(_meta(pod).get("namespace") or "default")
    if kind == "ReplicaSet":
        if replicasets is not None and (ns, name) in replicasets:
            owner = replicasets[(ns, name)]
            if owner is None:
                return WorkloadKey("ReplicaSet", ns, name)
            return WorkloadKey(owner[0], ns, owner[1]) if owner[0] == "Deployment" else None
        labels = _meta(pod).get("labels")
        digest = labels.get(POD_TEMPLATE_HASH_LABEL) if isinstance(labels, dict) else None
        if isinstance(digest, str) and digest and name.endswith("-" + digest) and len(name) > len(digest) + 1:
            return WorkloadKey("Deployment", ns, name[: -len(digest) - 1])
        return WorkloadKey("ReplicaSet", ns, name)
    if kind in ("StatefulSet", "DaemonSet", "Job"):
        return WorkloadKey(kind, ns, name)
    return None


def workload_id(annotations: Mapping[str, Any], key: WorkloadKey | None) -> str | None:
    """The id of a workload: the annotation on its pods (or pod template), else ``namespace/name`` of `key`."""
    override = annotations.get(WORKLOAD_ANNOTATION) if isinstance(annotations, Mapping) else None
    if isinstance(override, str) and override:
        return override
    return key.id if key is not None else None


def pod_workload_id(pod: Mapping[str, Any], replicasets: ReplicaSetOwners | None = None) -> str | None:
    """The id of the workload a pod belongs to (the module docstring's rule), or None."""
    annotations = _meta(pod).get("annotations")
    return workload_id(annotations if isinstance(annotations, dict) else {}, owner_workload(pod, replicasets))


__all__ = [
    "POD_TEMPLATE_HASH_LABEL",
    "TENANT_ANNOTATION",
    "WORKLOAD_ANNOTATION",
    "OWNER_KINDS",
    "WorkloadKey",
    "controller_ref",
    "owner_workload",
    "pod_workload_id",
    "workload_id",
]
