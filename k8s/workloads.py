"""Which workload a pod belongs to: the one rule the mapping and the extender share.

A workload is a Deployment, StatefulSet or Job; its id is the
``edgeplace.io/workload`` annotation of its pod template if set, else
``namespace/name`` (`workload_id`). The mapping (`edgeplace.k8s.mapping`)
applies it to the workload objects it lists; the extender applies it to the
one pod kube-scheduler sends, whose annotations are the template's and whose
owner is found through ``metadata.ownerReferences`` without asking the API
server (`pod_workload`):

=================================  =====================================================
controller owner of the pod        workload id
=================================  =====================================================
ReplicaSet ``<d>-<hash>``          ``namespace/<d>`` (the Deployment: the ReplicaSet name
                                   without ``-<pod-template-hash>``, the pod's label)
StatefulSet ``<s>``                ``namespace/<s>``
Job ``<j>`` (also of a CronJob)    ``namespace/<j>``
DaemonSet                          none: the pod is pinned to its node, never planned
anything else, or no owner         none (a bare pod)
=================================  =====================================================

The pod's ``edgeplace.io/workload`` annotation (copied from the template)
overrides the owner's name, as it does in the mapping. A ReplicaSet without a
``pod-template-hash`` label on the pod is not a Deployment's (the mapping
plans only Deployments' ReplicaSets), so it names no workload.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

WORKLOAD_ANNOTATION = "edgeplace.io/workload"
TENANT_ANNOTATION = "edgeplace.io/tenant"
#: Label the Deployment controller puts on a ReplicaSet's pods: the suffix of the ReplicaSet's name.
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
#: Namespaces of the cluster's own components: their pods are never steered.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
#: The built-in priority classes of pods the cluster cannot run without.
SYSTEM_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")


def workload_id(namespace: str, name: str, template_annotations: dict[str, Any] | None = None) -> str:
    """The id of the Deployment, StatefulSet or Job `namespace/name`: the
    ``edgeplace.io/workload`` annotation of its pod template, else ``namespace/name``."""
    override = (template_annotations or {}).get(WORKLOAD_ANNOTATION)
    return override if isinstance(override, str) and override else f"{namespace}/{name}"


def controller_ref(obj: dict) -> dict | None:
    """The ownerReference of `obj` with ``controller: true`` (or the only one), if any."""
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    if not isinstance(refs, list):
        return None
    refs = [r for r in refs if isinstance(r, dict)]
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if len(refs) == 1 else None


@dataclass(frozen=True)
class PodWorkload:
    """What a pod is to edgeplace: its workload id (or None) and how that was found.

    `source`: ``annotation`` (the pod's ``edgeplace.io/workload``), ``owner``
    (its controller), ``daemonset`` (a DaemonSet's pod: never planned) or
    ``none`` (no workload: a bare pod, or an owner of another kind).
    """

    id: str | None
    source: str


@lru_cache(maxsize=4096)
def _owner_workload(namespace: str, kind: str, name: str, template_hash: str) -> PodWorkload:
    """The workload of a pod whose controller is `kind`/`name` (cached per owner: every
    pod of a ReplicaSet, StatefulSet or Job asks the same question)."""
    if kind == "DaemonSet":
        return PodWorkload(None, "daemonset")
    if kind == "ReplicaSet":
        suffix = "-" + template_hash
        if template_hash and name.endswith(suffix) and len(name) > len(suffix):
            return PodWorkload(workload_id(namespace, name[:-len(suffix)]), "owner")
        return PodWorkload(None, "none")
    if kind in ("StatefulSet", "Job"):
        return PodWorkload(workload_id(namespace, name), "owner")
    return PodWorkload(None, "none")


def pod_workload(pod: dict) -> PodWorkload:
    """The workload of a Pod object (JSON as the API server sends it), from its
    annotation or its controller's ownerReference, without an API call."""
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    namespace = meta.get("namespace") or "default"
    ref = controller_ref(pod)
    kind = ref.get("kind") if ref else None
    if kind == "DaemonSet":  # pinned to its node by the DaemonSet controller: never steer it
        return PodWorkload(None, "daemonset")
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    override = annotations.get(WORKLOAD_ANNOTATION)
    if isinstance(override, str) and override:
        return PodWorkload(override, "annotation")
    if not (ref and isinstance(kind, str) and isinstance(ref.get("name"), str) and isinstance(namespace, str)):
        return PodWorkload(None, "none")
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    template_hash = labels.get(POD_TEMPLATE_HASH_LABEL)
    return _owner_workload(namespace, kind, ref["name"], template_hash if isinstance(template_hash, str) else "")


def is_system_pod(pod: dict) -> bool:
    """A pod of the cluster's own components: in a system namespace or of a system priority class."""
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    return meta.get("namespace") in SYSTEM_NAMESPACES or spec.get("priorityClassName") in SYSTEM_PRIORITY_CLASSES
