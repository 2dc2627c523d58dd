"""What actuation reads and writes on API objects (plain JSON dicts, as the API server sends them).

The vocabulary this layer owns (docs/KUBERNETES.md "Actuation" has the table):

=================================================  ========  ==================================================
key                                                on        meaning
=================================================  ========  ==================================================
``edgeplace.io/power-state`` (annotation)          Node      on | draining | powering-off | off | waking
                                                             (absent: on); written by the power lifecycle
``edgeplace.io/power-state-since`` (annotation)    Node      RFC 3339 time the node entered that state
``edgeplace.io/power-operation`` (annotation)      Node      ``power-off <time>`` / ``power-on <time>``: the
                                                             driver call this state made, and when
``edgeplace.io/power-driver`` (annotation)         Node      redfish | ipmi | wol | kwok: how to switch it
``edgeplace.io/power-secret`` (annotation)         Node      Secret (in the planner's namespace) with
                                                             ``username`` and ``password`` for the BMC
``edgeplace.io/bmc-address`` (annotation)          Node      Redfish base URL or IPMI host[:port]
``edgeplace.io/redfish-system`` (annotation)       Node      Redfish system path (default: the only system)
``edgeplace.io/wol-mac``, ``wol-broadcast``        Node      Wake-on-LAN MAC and broadcast address[:port]
``edgeplace.io/power-off-driver`` (annotation)     Node      with wol: the driver that switches it off
``edgeplace.io/powered-down`` (taint, NoSchedule)  Node      set while draining, powering off, off, waking
``edgeplace.io/cordoned-by`` (annotation)          Node      edgeplace cordoned the node (it only uncordons
                                                             nodes carrying it)
``cluster-autoscaler.kubernetes.io/``              Node      "true" on every node edgeplace powers: the
``scale-down-disabled`` (annotation)                         autoscaler must not delete a sleeping node
``karpenter.sh/do-not-disrupt`` (annotation)       Node      "true" likewise, for Karpenter
``edgeplace.io/no-rebalance`` (annotation)         Pod       "true": never evicted by edgeplace
``descheduler.alpha.kubernetes.io/evict``          Pod       the descheduler's opt-in: evictable even where
                                                             a default rule protects it (local storage,
                                                             system-critical priority)
``descheduler.alpha.kubernetes.io/``               Pod       "true": never evicted (the descheduler's opt-out,
``prevent-eviction``                                         honoured here too)
=================================================  ========  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum


from edgeplace.k8s.identity import controller_ref as _controller
from edgeplace.k8s.mapping import (ANN_CORDONED_BY, ANN_POWER_STATE, TAINT_POWERED_DOWN, _annotations, _labels, _meta,
                                   _name, _namespace, pod_requests)
ANN_POWER_SINCE = "edgeplace.io/power-state-since"
ANN_POWER_OPERATION = "edgeplace.io/power-operation"
ANN_POWER_DRIVER = "edgeplace.io/power-driver"
ANN_POWER_OFF_DRIVER = "edgeplace.io/power-off-driver"
ANN_POWER_SECRET = "edgeplace.io/power-secret"
ANN_BMC_ADDRESS = "edgeplace.io/bmc-address"
ANN_REDFISH_SYSTEM = "edgeplace.io/redfish-system"
ANN_WOL_MAC = "edgeplace.io/wol-mac"
ANN_WOL_BROADCAST = "edgeplace.io/wol-broadcast"
ANN_NO_REBALANCE = "edgeplace.io/no-rebalance"
ANN_DESCHEDULER_EVICT = "descheduler.alpha.kubernetes.io/evict"
ANN_DESCHEDULER_PREVENT = "descheduler.alpha.kubernetes.io/prevent-eviction"
ANN_MIRROR = "kubernetes.io/config.mirror"
#: Node annotations that keep other node-removing controllers away from nodes edgeplace powers.
ANN_AUTOSCALER_SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
ANN_KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
MANAGED_NODE_ANNOTATIONS = {ANN_AUTOSCALER_SCALE_DOWN_DISABLED: "true", ANN_KARPENTER_DO_NOT_DISRUPT: "true"}
#: Priority classes the descheduler treats as system-critical.
SYSTEM_CRITICAL = ("system-cluster-critical", "system-node-critical")


class PowerState(str, Enum):
    """A node's power state as the lifecycle keeps it (docs/KUBERNETES.md "Node power lifecycle")."""

    ON = "on"
    DRAINING = "draining"
    POWERING_OFF = "powering-off"
    OFF = "off"
    WAKING = "waking"

    @property
    def asleep_or_going(self) -> bool:
        """Counts against the nodes-off limit and keeps the powered-down taint."""
        return self is not PowerState.ON


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------------
# Nodes


@dataclass(frozen=True)
class NodeFacts:
    """What the power lifecycle needs to know about one Node."""

    name: str
    state: PowerState
    since: datetime | None
    operation: str  # the ANN_POWER_OPERATION value, "" when none
    ready: bool
    unschedulable: bool
    cordoned_by_us: bool
    has_powered_down_taint: bool
    annotations: dict[str, str]
    labels: dict[str, str]
    allocatable_cpu_millicores: int
    allocatable_memory_mib: int
    taints: list[dict]


def ready(obj: dict) -> bool:
    """The object's (a Node's or a Pod's) Ready condition is True."""
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def power_state(node: dict) -> PowerState:
    """The node's power state from its annotation; an unknown value reads as on (and is rewritten)."""
    try:
        return PowerState(_annotations(node).get(ANN_POWER_STATE, "on"))
    except ValueError:
        return PowerState.ON


def node_facts(node: dict) -> NodeFacts:
    from edgeplace.k8s.mapping import cpu_millicores, memory_mib

    meta, spec = _meta(node), node.get("spec") if isinstance(node.get("spec"), dict) else {}
    status = node.get("status") if isinstance(node.get("status"), dict) else {}
    ann = _annotations(node)
    alloc = status.get("allocatable") if isinstance(status.get("allocatable"), dict) else {}
    try:
        cpu = cpu_millicores(alloc.get("cpu", 0), round_up=False)
        mem = memory_mib(alloc.get("memory", 0), round_up=False)
    except ValueError:
        cpu = mem = 0
    taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
    return NodeFacts(
        name=_name(node), state=power_state(node),
        since=parse_rfc3339(ann.get(ANN_POWER_SINCE)), operation=ann.get(ANN_POWER_OPERATION, ""),
        ready=ready(node), unschedulable=bool(spec.get("unschedulable")),
        cordoned_by_us=ANN_CORDONED_BY in ann,
        has_powered_down_taint=any(t.get("key") == TAINT_POWERED_DOWN for t in taints),
        annotations=ann, labels=_labels(node), allocatable_cpu_millicores=cpu, allocatable_memory_mib=mem,
        taints=taints)


# ---------------------------------------------------------------------------
# Pods


class PodKind(str, Enum):
    """Who owns a pod, as far as evicting it goes."""

    REPLICATED = "replicated"  # ReplicaSet (Deployment), StatefulSet, ReplicationController: recreated elsewhere
    JOB = "job"  # a Job's pod: recreated, but its work so far is lost
    DAEMONSET = "daemonset"  # runs on every node by design: never moved, never blocks a power-off
    MIRROR = "mirror"  # a static pod's mirror: the kubelet owns it
    BARE = "bare"  # no controller: evicting it deletes it for good
    OTHER = "other"  # a controller edgeplace does not know (an operator's CRD): recreated, probably


REPLICATING_KINDS = ("ReplicaSet", "StatefulSet", "ReplicationController")


@dataclass(frozen=True)
class PodFacts:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    ready: bool
    terminating: bool
    kind: PodKind
    owner: tuple[str, str] | None  # (kind, name) of the controller
    labels: dict[str, str]
    annotations: dict[str, str]
    priority_class: str
    local_storage: bool  # an emptyDir or hostPath volume: its data is lost on eviction
    requests: dict[str, int]  # cpu_millicores, memory_mib, extended resources

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_kind(pod: dict) -> tuple[PodKind, tuple[str, str] | None]:
    if ANN_MIRROR in _annotations(pod):
        return PodKind.MIRROR, None
    ref = _controller(pod)
    if ref is None:
        return PodKind.BARE, None
    kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
    if kind == "DaemonSet":
        return PodKind.DAEMONSET, (kind, name)
    if kind == "Job":
        return PodKind.JOB, (kind, name)
    if kind in REPLICATING_KINDS:
        return PodKind.REPLICATED, (kind, name)
    if kind == "Node":  # static pods are owned by their Node object
        return PodKind.MIRROR, (kind, name)
    return PodKind.OTHER, (kind, name)


def pod_facts(pod: dict) -> PodFacts:
    meta = _meta(pod)
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    kind, owner = pod_kind(pod)
    volumes = [v for v in spec.get("volumes") or [] if isinstance(v, dict)]
    return PodFacts(
        namespace=_namespace(pod), name=_name(pod), uid=str(meta.get("uid") or ""), node=spec.get("nodeName"),
        phase=str(status.get("phase") or "Pending"), ready=ready(pod),
        terminating=bool(meta.get("deletionTimestamp")), kind=kind, owner=owner, labels=_labels(pod),
        annotations=_annotations(pod), priority_class=str(spec.get("priorityClassName") or ""),
        local_storage=any("emptyDir" in v or "hostPath" in v for v in volumes),
        requests=pod_requests(spec, f"Pod {_namespace(pod)}/{_name(pod)}"))


def unschedulable_since(pod: PodFacts, raw: dict) -> datetime | None:
    """When kube-scheduler last found no node for a pending, ungated pod (PodScheduled=False,
    reason Unschedulable); None when it is not such a pod."""
    if pod.node or pod.terminating or pod.phase != "Pending":
        return None
    spec = raw.get("spec") if isinstance(raw.get("spec"), dict) else {}
    if spec.get("schedulingGates"):
        return None
    status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled":
            if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                return parse_rfc3339(cond.get("lastTransitionTime")) or utc_now()
            return None
    return None


def is_true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "yes", "1")
