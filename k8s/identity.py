"""Which workload a pod belongs to: the one rule the mapping and the extender share.

A workload is the API object a pod's controller owner reference leads to,
and its id is ``namespace/name`` of that object (what `edgeplace.k8s.mapping`
names the workload), unless the pod (template) annotation
``edgeplace.io/workload`` overrides it:

=================================  =====================================================
controller owner of the pod        workload (`owner_workload`)
=================================  =====================================================
ReplicaSet ``<d>-<hash>``          the Deployment ``<d>``: the ReplicaSet's controller
                                   when the caller has the ReplicaSets (the mapping),
                                   else the ReplicaSet name without ``-<hash>``, the
                                   pod's ``pod-template-hash`` label (the extender: the
                                   Deployment controller names its ReplicaSets so)
ReplicaSet without a Deployment    the ReplicaSet
StatefulSet, DaemonSet, Job        that object (a CronJob's Job is a workload of its own)
anything else, or no owner         none (a bare pod)
=================================  =====================================================

Pure functions over API objects' JSON; no Kubernetes client, no API call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: Pod (template) annotation naming the workload id; overrides the owner references.
WORKLOAD_ANNOTATION = "edgeplace.io/workload"
#: Pod (template) or workload annotation naming the tenant.
TENANT_ANNOTATION = "edgeplace.io/tenant"
#: Label the Deployment controller puts on its pods, and the suffix of its ReplicaSets' names.
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"

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
    """The workload object a pod's controller leads to (the table above), or None."""
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
            return WorkloadKey("Deployment", ns, name[:-len(digest) - 1])
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
    """The id of the workload a pod belongs to, or None."""
    annotations = _meta(pod).get("annotations")
    return workload_id(annotations if isinstance(annotations, dict) else {}, owner_workload(pod, replicasets))
