"""Kubernetes scheduling constraints in the scenario format: the typed models.

What a pod spec says about where it may run, as kube-scheduler reads it,
written in the scenario's snake_case (`match_expressions`, `topology_key`):

- nodes carry `taints` (and, in `capacity`, `pods`: the most pods a node holds);
- a workload's `scheduling` block holds its pods' `namespace` and `labels`
  (what other pods' selectors match), `node_affinity`, `tolerations`,
  `pod_affinity`, `pod_anti_affinity` and `topology_spread`;
- the scenario's `namespaces` give namespace labels for `namespace_selector`.

Required terms are constraints everywhere (solvers, greedy, baselines,
evaluation); preferred terms and ScheduleAnyway spread are preferences
(`edgeplace.topology.constraints` says which are priced). Each model checks
what one value can say (operators and their values, as the API server's
validation does); references between workloads and nodes are compiled by
`edgeplace.topology.constraints`. The semantics follow kube-scheduler v1.37
(NodeAffinity, TaintToleration, InterPodAffinity, PodTopologySpread,
NodeResourcesFit); `edgeplace.topology.constraints` cites the source.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Well-known node labels kube-scheduler's topology keys name; a scenario node
#: that does not carry them gets them from its id, site and region.
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_REGION = "topology.kubernetes.io/region"
#: The namespace label the API server sets on every namespace.
LABEL_NAMESPACE_NAME = "kubernetes.io/metadata.name"
#: The resource name of a node's pod limit (allocatable `pods`); every replica takes one.
PODS_RESOURCE = "pods"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _int64(text: str) -> bool:
    try:
        int(text, 10)
    except ValueError:
        return False
    return -(2 ** 63) <= int(text, 10) < 2 ** 63


def _check_values(op: str, values: list[str]) -> None:
    """The values an operator takes, as the API server's validation wants them."""
    if op in ("In", "NotIn") and not values:
        raise ValueError(f"operator {op} needs at least one value in `values`")
    if op in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"operator {op} takes no `values`; remove them")
    if op in ("Gt", "Lt") and (len(values) != 1 or not _int64(values[0])):
        raise ValueError(f"operator {op} needs exactly one integer value, e.g. values: ['4'] (got {values})")


# ---------------------------------------------------------------------------
# Label selectors (pods and namespaces) and node selector terms


class SelectorOperator(str, Enum):
    In = "In"
    NotIn = "NotIn"
    Exists = "Exists"
    DoesNotExist = "DoesNotExist"


class LabelSelectorRequirement(_Model):
    key: str = Field(min_length=1)
    operator: SelectorOperator
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> "LabelSelectorRequirement":
        _check_values(self.operator.value, self.values)
        return self


class LabelSelector(_Model):
    """A Kubernetes label selector: every `match_labels` pair and every expression must hold.

    An empty selector (`{}`) matches everything; leaving a selector out
    (null) matches nothing, as in Kubernetes."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class NodeSelectorOperator(str, Enum):
    In = "In"
    NotIn = "NotIn"
    Exists = "Exists"
    DoesNotExist = "DoesNotExist"
    Gt = "Gt"
    Lt = "Lt"


class NodeSelectorRequirement(_Model):
    key: str = Field(min_length=1)
    operator: NodeSelectorOperator
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> "NodeSelectorRequirement":
        _check_values(self.operator.value, self.values)
        return self


class NodeFieldRequirement(_Model):
    """`match_fields`: only `metadata.name` with In or NotIn and one value, as the API allows."""

    key: Literal["metadata.name"]
    operator: Literal["In", "NotIn"]
    values: list[str] = Field(min_length=1, max_length=1)


class NodeSelectorTerm(_Model):
    """Every expression and field requirement must hold; a term with none matches no node."""

    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[NodeFieldRequirement] = Field(default_factory=list)


class PreferredSchedulingTerm(_Model):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(_Model):
    required: list[NodeSelectorTerm] | None = Field(
        None, description="requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: at least one term must match.")
    preferred: list[PreferredSchedulingTerm] = Field(default_factory=list)

    @model_validator(mode="after")
    def _terms(self) -> "NodeAffinity":
        if self.required is not None and not self.required:
            raise ValueError("`required` needs at least one node selector term (or leave it out)")
        return self


# ---------------------------------------------------------------------------
# Taints and tolerations


class TaintEffect(str, Enum):
    NoSchedule = "NoSchedule"
    PreferNoSchedule = "PreferNoSchedule"
    NoExecute = "NoExecute"


class Taint(_Model):
    key: str = Field(min_length=1)
    value: str = ""
    effect: TaintEffect


class Toleration(_Model):
    """Tolerates taints with this key (any key when empty, with operator Exists), this
    value (Equal) or any value (Exists), and this effect (any when left out)."""

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: TaintEffect | None = None
    toleration_seconds: int | None = Field(
        None, description="NoExecute only: the pod is evicted this long after the taint appears [s]; "
                          "a pod that is evicted cannot stay, so the plan does not count on it there.")

    @model_validator(mode="after")
    def _consistent(self) -> "Toleration":
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no `value`; remove it (or use operator Equal)")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without `key` must use operator Exists (it then tolerates every taint)")
        if self.toleration_seconds is not None and self.effect is not TaintEffect.NoExecute:
            raise ValueError("toleration_seconds needs effect NoExecute (only NoExecute taints evict)")
        return self


# ---------------------------------------------------------------------------
# Inter-pod affinity and topology spread


class PodAffinityTerm(_Model):
    """Pods matching `label_selector` in the `namespaces` (or namespaces matching
    `namespace_selector`; by default the pod's own namespace), counted per domain
    of `topology_key` (the node label; hostname, zone and region are known)."""

    label_selector: LabelSelector | None = Field(None, description="Pods it counts; null matches none, {} every pod.")
    namespaces: list[str] = Field(default_factory=list)
    namespace_selector: LabelSelector | None = Field(None, description="{} selects every namespace.")
    topology_key: str = Field(min_length=1)
    match_label_keys: list[str] = Field(default_factory=list, description="Keys of the pod's own labels added to the selector (In).")
    mismatch_label_keys: list[str] = Field(default_factory=list, description="Keys of the pod's own labels added as NotIn.")

    @model_validator(mode="after")
    def _keys(self) -> "PodAffinityTerm":
        both = set(self.match_label_keys) & set(self.mismatch_label_keys)
        if both:
            raise ValueError(f"keys {sorted(both)} are in both match_label_keys and mismatch_label_keys; keep each in one")
        return self


class WeightedPodAffinityTerm(_Model):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(_Model):
    required: list[PodAffinityTerm] = Field(default_factory=list,
                                            description="requiredDuringSchedulingIgnoredDuringExecution")
    preferred: list[WeightedPodAffinityTerm] = Field(default_factory=list)


class TopologySpreadConstraint(_Model):
    max_skew: int = Field(ge=1, description="Most matching pods a domain may hold above the emptiest eligible domain.")
    topology_key: str = Field(min_length=1)
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule: a constraint; ScheduleAnyway: a preference.")
    label_selector: LabelSelector | None = Field(None, description="Pods it counts (in the workload's namespace); null counts none.")
    min_domains: int | None = Field(None, ge=1, description="DoNotSchedule only: fewer eligible domains count as an empty one.")
    node_affinity_policy: Literal["Honor", "Ignore"] = "Honor"
    node_taints_policy: Literal["Honor", "Ignore"] = "Ignore"
    match_label_keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _min_domains(self) -> "TopologySpreadConstraint":
        if self.min_domains is not None and self.when_unsatisfiable != "DoNotSchedule":
            raise ValueError("min_domains needs when_unsatisfiable: DoNotSchedule")
        return self


class Scheduling(_Model):
    """What a workload's pod template says to kube-scheduler, besides `node_selector`."""

    namespace: str | None = Field(None, min_length=1, description="The pods' namespace (default: the tenant id).")
    labels: dict[str, str] = Field(default_factory=dict, description="The pods' labels (what selectors match).")
    node_affinity: NodeAffinity | None = None
    tolerations: list[Toleration] = Field(default_factory=list)
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None
    topology_spread: list[TopologySpreadConstraint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _spread_keys(self) -> "Scheduling":
        seen = set()
        for c in self.topology_spread:
            key = (c.topology_key, c.when_unsatisfiable)
            if key in seen:
                raise ValueError(f"two topology_spread constraints with topology_key {c.topology_key!r} and "
                                 f"{c.when_unsatisfiable}; Kubernetes allows one per key and action")
            seen.add(key)
        return self


class Namespace(_Model):
    """A namespace's labels, for `namespace_selector` (every namespace also carries
    kubernetes.io/metadata.name: its name)."""

    id: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)


__all__ = [
    "LABEL_HOSTNAME",
    "LABEL_NAMESPACE_NAME",
    "LABEL_REGION",
    "LABEL_ZONE",
    "PODS_RESOURCE",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Namespace",
    "NodeAffinity",
    "NodeFieldRequirement",
    "NodeSelectorOperator",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "PodAffinity",
    "PodAffinityTerm",
    "PreferredSchedulingTerm",
    "Scheduling",
    "SelectorOperator",
    "Taint",
    "TaintEffect",
    "Toleration",
    "TopologySpreadConstraint",
    "WeightedPodAffinityTerm",
]
