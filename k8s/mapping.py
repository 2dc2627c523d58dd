"""From a live cluster to an edgeplace scenario: Nodes, namespaces and workloads.

Pure functions over plain dicts (the JSON of Kubernetes API objects, exactly
as the API server sends them: ``metadata.name``, ``status.allocatable``, ...),
so everything here unit-tests without a cluster; `read_cluster` is the thin
reader that lists those objects with the kubernetes client.

The vocabulary (docs/KUBERNETES.md has the full table with examples):

=========================================  ==========  ====================================================
key                                        on          meaning
=========================================  ==========  ====================================================
``edgeplace.io/site`` (label)              Node        site id (default: the zone label, else the node name)
``topology.kubernetes.io/region`` (label)  Node        grid region id (default: the site config's site.region)
``topology.kubernetes.io/zone`` (label)    Node        site id when ``edgeplace.io/site`` is absent
``edgeplace.io/tier`` (label)              Node        site tier: device, on-prem, access, aggregation, metro,
                                                       regional, cloud (default: the site config's site.tier)
``edgeplace.io/dedicated-to`` (label)      Node        tenant that owns the node (dedicated pool)
``edgeplace.io/ignore`` (label)            Node, any   "true": leave the object out of the scenario
``edgeplace.io/idle-w``, ``max-w``         Node        linear power model [W]
``edgeplace.io/power-curve-w``             Node        11 comma-separated powers at 0, 10, ..., 100 % load [W]
``edgeplace.io/can-power-down``            Node        "false" marks the node always on
``edgeplace.io/embodied-kg``               Node        embodied carbon of the node [kgCO2e]
``edgeplace.io/lifetime-years``            Node        its amortisation lifetime [years]
``edgeplace.io/pue``                       Node        PUE of the node's site (all nodes of a site agree)
``edgeplace.io/pv-kwp``                    Node        on-site PV of the node's site [kWp]
``edgeplace.io/battery-kwh``               Node        on-site battery of the node's site [kWh]
``edgeplace.io/tenant`` (label)            Namespace   tenant id (default: the namespace name)
``edgeplace.io/never-with``                Namespace   comma-separated tenants never co-located with this one
``edgeplace.io/dedicated-nodes``           Namespace   "true": the tenant runs only on its dedicated nodes
``edgeplace.io/sla-ms``                    workload    one-way latency bound to its users [ms]
``edgeplace.io/users``                     workload    comma-separated user-location ids (site config)
``edgeplace.io/cpu-usage-fraction``        workload    share of the CPU request actually used (0..1)
``edgeplace.io/min-sites``                 workload    replicas spread over at least this many sites
``edgeplace.io/deadline``                  Job         ISO 8601 time the job must finish by (deferrable)
``edgeplace.io/duration-minutes``          Job         run time [min] (required with a deadline)
``edgeplace.io/earliest-start``            Job         ISO 8601 time it may start (default: its creation)
``edgeplace.io/tenant``                    workload    tenant override (also read by the extender on pods)
``edgeplace.io/workload``                  pod tmpl.   workload id (default ``namespace/name``); the
                                                       extender finds the plan's row of a pod by it
=========================================  ==========  ====================================================

Capacities come from ``status.allocatable`` (cpu -> millicores, rounded
down; memory -> MiB, rounded down; extended resources such as
``nvidia.com/gpu`` -> whole counts), less the requests of running pods the
scenario does not manage (DaemonSets, bare pods, system namespaces), whose
CPU requests also become the node's background utilisation. Requests of a
workload are those of one pod of its template, as the scheduler counts them:
max(sum of containers + sidecars, largest init container) + pod overhead,
requests defaulting to limits; cpu rounded up to millicores, memory up to MiB.

Everything the cluster cannot say (grid intensity, links and latencies, user
locations, PV output, tenants' quotas) comes from a *site config* file the
operator writes (`ClusterConfig`; docs/KUBERNETES.md shows one).

Problems are collected and raised together as one `topology.InputError` whose
entries name the object and the field (``Node edge-1
metadata.annotations["edgeplace.io/max-w"]: ...``); problems the scenario
validation finds are reported against the object they came from.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# TAINT_POWERED_DOWN: the planner's taint on nodes the plan powers down (NoSchedule, never NoExecute);
# ANN_CORDONED_BY: the annotation on nodes it cordoned, so it only uncordons its own.
from edgeplace.k8s.scheduling import (ANN_CORDONED_BY, ANN_POWER_STATE, ASLEEP_STATES, LIFECYCLE_TAINTS, TAINT_POWERED_DOWN,
                                      scenario_taints, workload_scheduling)
from edgeplace.k8s.identity import (TENANT_ANNOTATION, WORKLOAD_ANNOTATION, ReplicaSetOwners, WorkloadKey, controller_ref,
                                    owner_workload, pod_workload_id, workload_id)
from edgeplace.topology.errors import InputError, Problem, pydantic_problems
from edgeplace.topology.load import read_document, scenario_from_dict
from edgeplace.k8s.steering import UNSTEERED_RESOURCE
from edgeplace.k8s.suspend import ANN_MIN_RUN_MIN, is_interruptible, progress_of
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.constraints import FILTER_EFFECTS, tolerated_seconds
from edgeplace.topology.scheduling_spec import LABEL_HOSTNAME, LABEL_REGION, PODS_RESOURCE, Taint, Toleration
from edgeplace.topology.spec import (SCENARIO_VERSION, Embodied, Isolation, Link, Location, PowerModel, Signal, Tier,
                           UserLocation)

# ---------------------------------------------------------------------------
# Vocabulary

PREFIX = "edgeplace.io/"
LABEL_SITE = "edgeplace.io/site"
LABEL_REGION = "topology.kubernetes.io/region"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_TIER = "edgeplace.io/tier"
LABEL_DEDICATED = "edgeplace.io/dedicated-to"
LABEL_TENANT = "edgeplace.io/tenant"
LABEL_IGNORE = "edgeplace.io/ignore"
ANN_IDLE_W = "edgeplace.io/idle-w"
ANN_MAX_W = "edgeplace.io/max-w"
ANN_POWER_CURVE_W = "edgeplace.io/power-curve-w"
ANN_CAN_POWER_DOWN = "edgeplace.io/can-power-down"
ANN_EMBODIED_KG = "edgeplace.io/embodied-kg"
ANN_LIFETIME_YEARS = "edgeplace.io/lifetime-years"
ANN_PUE = "edgeplace.io/pue"
ANN_PV_KWP = "edgeplace.io/pv-kwp"
ANN_BATTERY_KWH = "edgeplace.io/battery-kwh"
ANN_NEVER_WITH = "edgeplace.io/never-with"
ANN_DEDICATED_NODES = "edgeplace.io/dedicated-nodes"
ANN_SLA_MS = "edgeplace.io/sla-ms"
ANN_USERS = "edgeplace.io/users"
ANN_CPU_USAGE = "edgeplace.io/cpu-usage-fraction"
ANN_MIN_SITES = "edgeplace.io/min-sites"
ANN_DEADLINE = "edgeplace.io/deadline"
ANN_DURATION_MIN = "edgeplace.io/duration-minutes"
ANN_EARLIEST_START = "edgeplace.io/earliest-start"
ANN_TENANT = TENANT_ANNOTATION
ANN_WORKLOAD = WORKLOAD_ANNOTATION
#: Pod scheduling gate that holds a deferrable job's pods until their planned start.
GATE_DEFERRED = "edgeplace.io/deferred"
#: Node annotation: when edgeplace last powered the node on and it did not become Ready in time.
ANN_WAKE_FAILED = "edgeplace.io/wake-failed-at"

#: Namespaces whose workloads are not planned (their pods still use capacity).
DEFAULT_EXCLUDED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "edgeplace-system")
#: Power model of a node that states none [W]: a recent 1-2 socket server,
#: about 115 W idle / 490 W at full load (SPECpower; shared/REFERENCE.md
#: "Power of compute nodes"). A warning names every node that uses it.
DEFAULT_IDLE_W = 115.0
DEFAULT_MAX_W = 490.0

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
MIB = 2 ** 20


# ---------------------------------------------------------------------------
# Kubernetes quantities

_QUANTITY = re.compile(
    r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?[0-9]+))?$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
#: Largest decimal exponent accepted ("1e100"); beyond it a quantity is a typo, not a resource.
_MAX_EXPONENT = 100


class QuantityError(ValueError):
    """A string is not a Kubernetes resource quantity."""


def parse_quantity(text: Any) -> Fraction:
    """A Kubernetes resource quantity as an exact fraction of its base unit.

    The grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal
    number followed by a binary suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal
    suffix (n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2).
    "500m" -> 1/2, "2" -> 2, "1Gi" -> 1073741824, "1e3" -> 1000, "1E" -> 10**18.
    Numbers (int or float, as YAML may give them) are accepted as they are.
    """
    if isinstance(text, bool):
        raise QuantityError(f"{text!r} is not a quantity")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"{text!r} is not a finite quantity")
        return Fraction(text)
    if not isinstance(text, str) or len(text) > 64:
        raise QuantityError(f"{str(text)[:40]!r} is not a quantity such as 500m, 2, 1Gi or 1e3")
    m = _QUANTITY.match(text.strip())
    if not m:
        raise QuantityError(f"{text!r} is not a quantity such as 500m, 2, 1Gi or 1e3")
    sign, number, suffix, exponent = m.groups()
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif exponent is not None:
        exp = int(exponent)
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r}: exponent out of range")
        value *= Fraction(10) ** exp
    return -value if sign == "-" else value


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def cpu_millicores(q: Any, round_up: bool = True) -> int:
    """CPU quantity -> millicores: "500m" -> 500, "2" -> 2000, "0.1" -> 100.

    Requests round up (as Kubernetes' MilliValue does); capacities pass
    `round_up=False` and round down, so a plan never counts on a fraction of a
    millicore that is not there.
    """
    milli = parse_quantity(q) * 1000
    return _ceil(milli) if round_up else _floor(milli)


def memory_mib(q: Any, round_up: bool = True) -> int:
    """Memory quantity -> MiB: "1Gi" -> 1024, "1024Mi" -> 1024, "1G" (953.67 MiB) -> 954 up, 953 down."""
    mib = parse_quantity(q) / MIB
    return _ceil(mib) if round_up else _floor(mib)


def count_quantity(q: Any) -> int:
    """An extended resource quantity ("1", "2") as a whole count; fractions are errors."""
    value = parse_quantity(q)
    if value.denominator != 1:
        raise QuantityError(f"{q!r} is not a whole number (extended resources are counted in units)")
    return int(value)


def is_extended_resource(name: str) -> bool:
    """Extended resources (nvidia.com/gpu, example.com/dongle): a domain prefix outside kubernetes.io.

    cpu, memory, pods, ephemeral-storage, hugepages-* and the kubernetes.io
    namespace are not modelled as scenario resources, nor the steering policy's
    mark for the extender (`steering.UNSTEERED_RESOURCE`: no node has it, and
    neither kube-scheduler nor kubelet counts it).
    """
    if "/" not in name or name == UNSTEERED_RESOURCE:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io") or domain == "requests")


# ---------------------------------------------------------------------------
# The site config file: what the cluster does not know


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PerSlot = float | list[float]


class RegionConfig(_Cfg):
    """A grid region and its carbon intensity (one value for every slot, or one per slot from now)."""

    id: str = Field(min_length=1)
    description: str = ""
    intensity_g_per_kwh: PerSlot | None = Field(None, description="gCO2e/kWh: a constant or one value per slot.")
    intensity_kind: Literal["average", "marginal"] = "average"
    factor_type: Literal["direct", "lifecycle"] | None = Field(
        None, description="direct or lifecycle emission factors (null: not stated); one type for every region.")


class SiteConfig(_Cfg):
    """Site facts; node labels and annotations take precedence where both say something."""

    id: str = Field(min_length=1)
    tier: Tier | None = None
    region: str | None = None
    location: Location | None = None
    pue: float | None = Field(None, ge=1.0, le=5.0)
    pv_kwp: float | None = Field(None, ge=0)
    battery_kwh: float | None = Field(None, ge=0)
    embodied: Embodied | None = None
    renewable_kw: PerSlot | None = Field(None, description="On-site renewable supply [kW]: constant or per slot.")
    power: PowerModel | None = Field(None, description="Power model of this site's nodes that have no annotations.")


class TenantConfig(_Cfg):
    id: str = Field(min_length=1)
    namespaces: list[str] = Field(default_factory=list, description="Namespaces of this tenant (besides labels).")
    quota: dict[str, int] = Field(default_factory=dict)
    isolation: Isolation | None = None


class HorizonConfig(_Cfg):
    """The planning horizon; it always starts at the current slot (now, rounded down)."""

    slots: int = Field(24, gt=0, le=100_000)
    slot_minutes: int = Field(60, gt=0, le=1440)


class NodeDefaults(_Cfg):
    power: PowerModel | None = None
    can_power_down: bool = True
    embodied: Embodied | None = None


class ClusterConfig(_Cfg):
    """The site config file (YAML or JSON); every section is optional."""

    name: str = Field("cluster", min_length=1)
    horizon: HorizonConfig = Field(default_factory=HorizonConfig)
    regions: list[RegionConfig] = Field(default_factory=list)
    sites: list[SiteConfig] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    users: list[UserLocation] = Field(default_factory=list)
    tenants: list[TenantConfig] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list, description="Scenario signals, values from the current slot.")
    signal_files: list[str] = Field(default_factory=list, description=(
        "Long-form CSV or Parquet signal files with timestamps (docs/SIGNALS.md), aligned to each round's horizon; "
        "relative paths are relative to the site config file."))
    node_defaults: NodeDefaults = Field(default_factory=NodeDefaults)
    exclude_namespaces: list[str] | None = Field(None, description=f"Default: {', '.join(DEFAULT_EXCLUDED_NAMESPACES)}.")


def parse_site_config(doc: Any, source: str = "<site config>") -> ClusterConfig:
    """Validate a parsed site config document; `InputError` lists every problem with its path."""
    if doc is None:
        return ClusterConfig()
    if not isinstance(doc, dict):
        raise InputError(source, [Problem("", f"a site config is a mapping of sections, got {type(doc).__name__}")])
    try:
        return ClusterConfig.model_validate(doc)
    except ValidationError as exc:
        raise InputError(source, pydantic_problems(exc.errors())) from None


def load_site_config(path: str | None) -> ClusterConfig:
    """Read and validate a site config file (YAML or JSON); None -> an empty config.

    Relative `signal_files` are resolved against the file's folder.
    """
    if path is None:
        return ClusterConfig()
    config = parse_site_config(read_document(path), source=str(path))
    from pathlib import Path

    base = Path(path).resolve().parent
    files = [str(p if Path(p).is_absolute() else base / p) for p in config.signal_files]
    return config.model_copy(update={"signal_files": files})


def _file_signals(config: ClusterConfig, start: datetime, slots: int, slot_minutes: int) -> list[dict[str, Any]]:
    """The site config's signal files aligned to this horizon, as scenario signals (InputError names the file)."""
    if not config.signal_files:
        return []
    from edgeplace.topology.signals.files import load_signal_files
    from edgeplace.topology.signals.series import SlotGrid

    return [s.to_document() for s in load_signal_files(config.signal_files, SlotGrid(start, slots, slot_minutes))]


# ---------------------------------------------------------------------------
# Input and output


@dataclass
class ClusterObjects:
    """The API objects the mapping reads, as plain JSON dicts."""

    nodes: list[dict] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)
    namespaces: list[dict] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=list)
    statefulsets: list[dict] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)
    replicasets: list[dict] = field(default_factory=list)
    poddisruptionbudgets: list[dict] = field(default_factory=list)
    #: resourceVersion of each list (for starting watches), by list name.
    resource_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadRef:
    """The API object a scenario workload came from."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass
class MappedCluster:
    """The scenario of a cluster, and where each part came from."""

    document: dict[str, Any]  # the scenario document (what `edgeplace import` writes)
    scenario: Scenario  # validated and compiled
    warnings: list[str]
    workloads: dict[str, WorkloadRef]  # workload id -> its API object
    excluded_nodes: dict[str, str]  # node name -> why it is not in the scenario
    gated_pods: dict[str, list[dict]]  # workload id -> its pods held by GATE_DEFERRED
    started_jobs: set[str]  # deferrable job ids with pods already released or running


@dataclass(frozen=True)
class MappingOptions:
    """`now` (UTC) fixes the horizon start; None = the current time."""

    now: datetime | None = None
    exclude_namespaces: tuple[str, ...] | None = None  # None: the config's list, else the defaults


# ---------------------------------------------------------------------------
# Small readers over API JSON


def _meta(obj: dict) -> dict:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _labels(obj: dict) -> dict[str, str]:
    labels = _meta(obj).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _annotations(obj: dict) -> dict[str, str]:
    ann = _meta(obj).get("annotations")
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}


def _name(obj: dict) -> str:
    return str(_meta(obj).get("name") or "")


def _namespace(obj: dict) -> str:
    return str(_meta(obj).get("namespace") or "default")


def _ann_path(key: str) -> str:
    return f'metadata.annotations["{key}"]'


def _label_path(key: str) -> str:
    return f'metadata.labels["{key}"]'


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("needs a UTC offset")
    return t.astimezone(timezone.utc)


def _truthy(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    return None


class _Problems:
    """Problems about API objects: `add(obj_label, field, message)`."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, subject: str, where: str, message: str) -> None:
        self.items.append(Problem(f"{subject} {where}".strip(), message))

    def number(self, subject: str, annotations: dict[str, str], key: str, unit: str,
               lo: float = 0.0, hi: float = math.inf, integer: bool = False) -> float | None:
        """An annotation holding a number in [lo, hi]; None (and a problem) when it is not one."""
        if key not in annotations:
            return None
        text = annotations[key]
        try:
            value = float(text)
        except ValueError:
            self.add(subject, _ann_path(key), f"must be a number [{unit}] (got {text[:40]!r})")
            return None
        if not math.isfinite(value) or not lo <= value <= hi:
            self.add(subject, _ann_path(key), f"must be a number in {lo:g}..{hi:g} [{unit}] (got {text[:40]!r})")
            return None
        if integer and value != int(value):
            self.add(subject, _ann_path(key), f"must be a whole number [{unit}] (got {text[:40]!r})")
            return None
        return value


# ---------------------------------------------------------------------------
# Pod requests, as the scheduler counts them


def _container_requests(container: dict, subject: str, where: str, problems: _Problems) -> dict[str, int]:
    res = container.get("resources") if isinstance(container.get("resources"), dict) else {}
    limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
    requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
    merged = {**limits, **requests}  # a limit without a request is the request (API defaulting)
    out: dict[str, int] = {}
    for name, q in merged.items():
        kind = "requests" if name in requests else "limits"
        path = f"{where}.resources.{kind}.{name}"
        try:
            if name == "cpu":
                out["cpu_millicores"] = cpu_millicores(q, round_up=True)
            elif name == "memory":
                out["memory_mib"] = memory_mib(q, round_up=True)
            elif is_extended_resource(name):
                out[name] = count_quantity(q)
            else:
                continue
        except QuantityError as exc:
            problems.add(subject, path, str(exc))
            continue
        if out[_resource_key(name)] < 0:
            problems.add(subject, path, f"must be >= 0 (got {q!r})")
            out[_resource_key(name)] = 0
    return out


def _resource_key(name: str) -> str:
    return {"cpu": "cpu_millicores", "memory": "memory_mib"}.get(name, name)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def _max(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}


def pod_requests(spec: dict, subject: str = "Pod", where: str = "spec", problems: _Problems | None = None) -> dict[str, int]:
    """Effective requests of one pod [millicores, MiB, counts], as kube-scheduler sums them.

    max(sum of app containers + sidecars, max over init containers i of
    (init_i + sidecars started before i)) + spec.overhead, where a sidecar is
    an init container with restartPolicy Always (KEP-753). Always has
    cpu_millicores and memory_mib.
    """
    problems = problems if problems is not None else _Problems()
    containers = spec.get("containers") if isinstance(spec.get("containers"), list) else []
    inits = spec.get("initContainers") if isinstance(spec.get("initContainers"), list) else []
    total: dict[str, int] = {}
    for k, c in enumerate(containers):
        if isinstance(c, dict):
            total = _add(total, _container_requests(c, subject, f"{where}.containers[{k}]", problems))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for k, c in enumerate(inits):
        if not isinstance(c, dict):
            continue
        req = _container_requests(c, subject, f"{where}.initContainers[{k}]", problems)
        if c.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, req)
            init_peak = _max(init_peak, sidecars)
        else:
            init_peak = _max(init_peak, _add(req, sidecars))
    result = _max(_add(total, sidecars), init_peak)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        result = _add(result, _container_requests({"resources": {"requests": overhead}}, subject,
                                                  f"{where}.overhead", problems))
    result.setdefault("cpu_millicores", 0)
    result.setdefault("memory_mib", 0)
    return result


# ---------------------------------------------------------------------------
# The mapping


@dataclass
class _NodeOut:
    name: str
    site: str
    entry: dict[str, Any]
    allocatable: dict[str, int]
    used: dict[str, int] = field(default_factory=dict)  # unmanaged pods' requests


@dataclass
class _WorkloadIn:
    ref: WorkloadRef
    obj: dict
    id: str
    template: dict  # pod template (metadata + spec)
    replicas: int
    pods: list[dict] = field(default_factory=list)


def horizon_start(now: datetime, slot_minutes: int) -> datetime:
    """`now` rounded down to a whole slot, counting slots from midnight UTC."""
    now = now.astimezone(timezone.utc)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    slots = int((now - midnight) / timedelta(minutes=slot_minutes))
    return midnight + slots * timedelta(minutes=slot_minutes)


def _per_slot(value: PerSlot, slots: int, subject: str, what: str, problems: _Problems) -> list[float] | None:
    if isinstance(value, list):
        if len(value) < slots:
            problems.add(subject, what, f"has {len(value)} values but the horizon has {slots} slots; "
                         "give one value per slot from the current slot on, or one constant")
            return None
        return [float(v) for v in value[:slots]]
    return [float(value)] * slots


@dataclass
class _Context:
    """What every part of one mapping shares: the config, the horizon and the problems found."""

    config: ClusterConfig
    problems: _Problems
    warnings: list[str]
    now: datetime
    start: datetime
    end: datetime
    slots: int
    slot_minutes: int
    excluded_ns: set[str]
    namespaces: dict[str, dict]  # name -> Namespace object

    def tenant_of_namespace(self, ns: str) -> str:
        return namespace_tenant(ns, self.namespaces, self.config)


@dataclass
class _Nodes:
    """The mapped nodes and the site facts they carry."""

    nodes: dict[str, _NodeOut] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # node name -> why it is not in the scenario
    site_region: dict[str, tuple[str, str]] = field(default_factory=dict)  # site -> (region, from which node)
    site_tier: dict[str, tuple[str, str]] = field(default_factory=dict)
    site_facts: dict[str, dict[str, tuple[float, str]]] = field(default_factory=lambda: defaultdict(dict))


def map_cluster(objects: ClusterObjects, config: ClusterConfig | None = None,
                options: MappingOptions | None = None, source: str = "cluster") -> MappedCluster:
    """The scenario of a cluster: see the module docstring for every rule.

    Raises `InputError` listing every problem (objects and fields named).
    """
    config = config or ClusterConfig()
    options = options or MappingOptions()
    now = (options.now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    slots, slot_minutes = config.horizon.slots, config.horizon.slot_minutes
    start = horizon_start(now, slot_minutes)
    ctx = _Context(
        config=config, problems=_Problems(), warnings=[], now=now, start=start,
        end=start + slots * timedelta(minutes=slot_minutes), slots=slots, slot_minutes=slot_minutes,
        excluded_ns=set(options.exclude_namespaces if options.exclude_namespaces is not None
                        else config.exclude_namespaces if config.exclude_namespaces is not None
                        else DEFAULT_EXCLUDED_NAMESPACES),
        namespaces={_name(ns): ns for ns in objects.namespaces})
    problems = ctx.problems

    mapped_nodes = _map_nodes(objects.nodes, ctx)
    nodes = mapped_nodes.nodes
    workloads_in = _collect_workloads(objects, ctx)
    gated = _attach_pods(objects, workloads_in, nodes)
    workload_entries, workload_refs, started_jobs, tenants_used = _workload_entries(workloads_in, nodes, ctx)
    _subtract_unmanaged_load(nodes, ctx.warnings)
    _outside_the_plan(nodes, workload_entries, ctx.warnings)
    _topology_label_warnings(nodes, workload_entries, ctx.warnings)
    tenant_entries = _tenant_entries(nodes, tenants_used, ctx)
    site_entries, region_entries, signals = _sites_and_regions(mapped_nodes, ctx)

    if problems.items:
        raise InputError(source, problems.items)

    node_list = [n.entry for n in nodes.values()]
    document: dict[str, Any] = {
        "version": SCENARIO_VERSION,
        "name": config.name,
        "description": f"Imported from a Kubernetes cluster at {now.strftime('%Y-%m-%dT%H:%M:%SZ')} by edgeplace "
                       f"({len(node_list)} nodes, {len(workload_entries)} workloads).",
        "horizon": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "slots": slots, "slot_minutes": slot_minutes},
        "regions": region_entries,
        "sites": site_entries,
        "nodes": node_list,
        "links": [link.model_dump(exclude_none=True) for link in config.links],
        "users": [u.model_dump() for u in config.users],
        "tenants": list(tenant_entries.values()),
        "workloads": workload_entries,
        "signals": signals,
        "namespaces": [{"id": name, "labels": _labels(ns)} for name, ns in sorted(ctx.namespaces.items()) if _labels(ns)],
    }
    origins = {"nodes": [f"Node {n.name}" for n in nodes.values()],
               "workloads": [str(r) for r in workload_refs],
               "sites": [f"site {e['id']}" for e in site_entries],
               "regions": [f"region {e['id']}" for e in region_entries],
               "tenants": [f"tenant {e['id']}" for e in tenant_entries.values()]}
    try:
        scenario = scenario_from_dict(json.loads(json.dumps(document)), source=source)
    except InputError as exc:
        raise InputError(source, [_name_origin(p, origins) for p in exc.problems]) from None
    return MappedCluster(document, scenario, ctx.warnings,
                         {e["id"]: r for e, r in zip(workload_entries, workload_refs)},
                         mapped_nodes.excluded, dict(gated), started_jobs)


# -- nodes ------------------------------------------------------------------------------------


def _map_nodes(node_objects: list[dict], ctx: _Context) -> _Nodes:
    """Every Node that is planned on, with its site facts; the others with the reason."""
    out = _Nodes()
    default_power_nodes: list[str] = []
    for node in sorted(node_objects, key=_name):
        name = _name(node)
        why = _node_exclusion(node)
        if why is not None:
            out.excluded[name] = why
            continue
        out.nodes[name], default_power = _map_node(node, out, ctx)
        if default_power:
            default_power_nodes.append(name)
    if default_power_nodes:
        ctx.warnings.append(f"{len(default_power_nodes)} node(s) state no power model and use a {DEFAULT_IDLE_W:g} W idle / "
                            f"{DEFAULT_MAX_W:g} W max server (annotate {ANN_IDLE_W} and {ANN_MAX_W}): "
                            f"{', '.join(default_power_nodes[:10])}{' ...' if len(default_power_nodes) > 10 else ''}")
    if not out.nodes and not ctx.problems.items:
        ctx.problems.add("", "cluster", "has no node to plan on" + (f" ({len(out.excluded)} excluded: "
                         + "; ".join(f"{n}: {why}" for n, why in list(out.excluded.items())[:5]) + ")" if out.excluded else ""))
    return out


def _node_exclusion(node: dict) -> str | None:
    """Why a Node is left out of the scenario, or None when it is planned on. Tainted and
    cordoned nodes stay in (with their taints): kube-scheduler counts them as topology domains."""
    labels, ann = _labels(node), _annotations(node)
    if _truthy(labels.get(LABEL_IGNORE, "")) or _truthy(ann.get(LABEL_IGNORE, "")):
        return f"{LABEL_IGNORE}=true"
    if ann.get(ANN_POWER_STATE) == "off" and ANN_WAKE_FAILED in ann:
        # The plan must not count on a machine that did not come back: it plans around it.
        return (f"did not become Ready when last powered on ({ANN_WAKE_FAILED} {ann[ANN_WAKE_FAILED]}); "
                "power it on by hand, or remove the annotation to offer it to the plan again")
    return None


def _map_node(node: dict, out: _Nodes, ctx: _Context) -> tuple[_NodeOut, bool]:
    """One Node as a scenario node entry (and whether it fell back to the default power model);
    records its site's region, tier and facts in `out`."""
    name = _name(node)
    subject = f"Node {name}"
    labels, ann = _labels(node), _annotations(node)
    problems, config = ctx.problems, ctx.config
    site = labels.get(LABEL_SITE) or labels.get(LABEL_ZONE) or name
    if LABEL_SITE not in labels and LABEL_ZONE not in labels:
        ctx.warnings.append(f"{subject}: no {LABEL_SITE} or {LABEL_ZONE} label; the node is a site of its own")
    cfg = next((s for s in config.sites if s.id == site), None)
    _site_labels(subject, name, site, labels, cfg, out, problems)
    _site_facts(subject, name, site, ann, out, problems)
    capacity = _node_capacity(node, subject, problems)
    power, default_power = _node_power(ann, cfg, config, subject, problems)
    entry: dict[str, Any] = {"id": name, "site": site, "capacity": capacity, "power": power,
                             "can_power_down": config.node_defaults.can_power_down}
    if ANN_CAN_POWER_DOWN in ann:
        flag = _truthy(ann[ANN_CAN_POWER_DOWN])
        if flag is None:
            problems.add(subject, _ann_path(ANN_CAN_POWER_DOWN), f"must be true or false (got {ann[ANN_CAN_POWER_DOWN][:20]!r})")
        else:
            entry["can_power_down"] = flag
    kg = problems.number(subject, ann, ANN_EMBODIED_KG, "kgCO2e", 0, 1e9)
    years = problems.number(subject, ann, ANN_LIFETIME_YEARS, "years", 0.01, 100)
    if kg is not None or years is not None:
        base = config.node_defaults.embodied or (cfg.embodied if cfg and cfg.embodied else None) or Embodied()
        entry["embodied"] = {"per_node_kg": kg if kg is not None else base.per_node_kg,
                             "lifetime_years": years if years is not None else base.lifetime_years}
    elif config.node_defaults.embodied is not None:
        entry["embodied"] = config.node_defaults.embodied.model_dump()
    if labels.get(LABEL_DEDICATED):
        entry["dedicated_to"] = labels[LABEL_DEDICATED]
    if labels:
        entry["labels"] = dict(sorted(labels.items()))
    taints = scenario_taints(node)
    if taints:
        entry["taints"] = taints
    return _NodeOut(name, site, entry, dict(capacity)), default_power


def _site_labels(subject: str, name: str, site: str, labels: dict[str, str], cfg: SiteConfig | None,
                 out: _Nodes, problems: _Problems) -> None:
    """The node's region and tier labels (or its site config's), which every node of a site must share."""
    region = labels.get(LABEL_REGION) or (cfg.region if cfg else None)
    if not region:
        problems.add(subject, _label_path(LABEL_REGION),
                     f"is missing: label the node with its grid region, or give site {site!r} a region in the site config")
    elif site in out.site_region and out.site_region[site][0] != region:
        problems.add(subject, _label_path(LABEL_REGION), f"is {region!r} but Node {out.site_region[site][1]} of the "
                     f"same site {site!r} says {out.site_region[site][0]!r}; a site draws from one grid region")
    else:
        out.site_region.setdefault(site, (region, name))
    tier = labels.get(LABEL_TIER) or (cfg.tier.value if cfg and cfg.tier else None)
    if not tier:
        problems.add(subject, _label_path(LABEL_TIER), f"is missing: label the node with one of "
                     f"{', '.join(t.value for t in Tier)}, or give site {site!r} a tier in the site config")
    elif tier not in {t.value for t in Tier}:
        problems.add(subject, _label_path(LABEL_TIER), f"must be one of {', '.join(t.value for t in Tier)} (got {tier!r})")
    elif site in out.site_tier and out.site_tier[site][0] != tier:
        problems.add(subject, _label_path(LABEL_TIER), f"is {tier!r} but Node {out.site_tier[site][1]} of the same "
                     f"site {site!r} says {out.site_tier[site][0]!r}")
    else:
        out.site_tier.setdefault(site, (tier, name))


def _site_facts(subject: str, name: str, site: str, ann: dict[str, str], out: _Nodes, problems: _Problems) -> None:
    """PUE, PV and battery annotations: facts of the node's site, on which its annotated nodes must agree."""
    for key, fact, lo, hi, unit in ((ANN_PUE, "pue", 1.0, 5.0, "facility/IT"), (ANN_PV_KWP, "pv_kwp", 0, math.inf, "kWp"),
                                    (ANN_BATTERY_KWH, "battery_kwh", 0, math.inf, "kWh")):
        value = problems.number(subject, ann, key, unit, lo, hi)
        if value is None:
            continue
        seen = out.site_facts[site].get(fact)
        if seen is not None and seen[0] != value:
            problems.add(subject, _ann_path(key), f"is {value:g} but Node {seen[1]} of the same site {site!r} "
                         f"says {seen[0]:g}; annotate every node of a site alike, or set it in the site config")
        else:
            out.site_facts[site].setdefault(fact, (value, name))


def _node_capacity(node: dict, subject: str, problems: _Problems) -> dict[str, int]:
    """Capacity from status.allocatable: millicores and MiB rounded down, extended resources as counts."""
    status = node.get("status") if isinstance(node.get("status"), dict) else {}
    alloc = status.get("allocatable") if isinstance(status.get("allocatable"), dict) else {}
    capacity: dict[str, int] = {}
    for res, q in alloc.items():
        path = f"status.allocatable.{res}"
        try:
            if res == "cpu":
                capacity["cpu_millicores"] = cpu_millicores(q, round_up=False)
            elif res == "memory":
                capacity["memory_mib"] = memory_mib(q, round_up=False)
            elif res == PODS_RESOURCE:
                capacity[PODS_RESOURCE] = count_quantity(q)
            elif is_extended_resource(res):
                capacity[res] = count_quantity(q)
        except QuantityError as exc:
            problems.add(subject, path, str(exc))
    for res, key in (("cpu", "cpu_millicores"), ("memory", "memory_mib")):
        if capacity.get(key, 0) <= 0 and not any(p.path == f"{subject} status.allocatable.{res}" for p in problems.items):
            problems.add(subject, f"status.allocatable.{res}",
                         f"must be > 0 (got {alloc.get(res)!r}); a node without allocatable {res} cannot host pods")
    return capacity


def _node_power(ann: dict[str, str], cfg: SiteConfig | None, config: ClusterConfig, subject: str,
                problems: _Problems) -> tuple[dict[str, Any], bool]:
    """The power model: annotations, else the site's, else the defaults, else REFERENCE.md's server
    (then True: the caller warns)."""
    idle = problems.number(subject, ann, ANN_IDLE_W, "W", 0, 1e9)
    peak = problems.number(subject, ann, ANN_MAX_W, "W", 0, 1e9)
    if ANN_POWER_CURVE_W in ann:
        if ANN_IDLE_W in ann or ANN_MAX_W in ann:
            problems.add(subject, _ann_path(ANN_POWER_CURVE_W), f"give either {ANN_POWER_CURVE_W} or "
                         f"{ANN_IDLE_W} and {ANN_MAX_W}, not both")
        try:
            curve = [float(x) for x in ann[ANN_POWER_CURVE_W].split(",")]
        except ValueError:
            problems.add(subject, _ann_path(ANN_POWER_CURVE_W), "must be 11 comma-separated numbers [W] "
                         f"at 0, 10, ..., 100 % load (got {ann[ANN_POWER_CURVE_W][:60]!r})")
            curve = []
        return {"points_w": curve}, False
    if ANN_IDLE_W in ann or ANN_MAX_W in ann:
        if (ANN_IDLE_W in ann) != (ANN_MAX_W in ann):
            missing = ANN_MAX_W if ANN_IDLE_W in ann else ANN_IDLE_W
            problems.add(subject, _ann_path(missing), f"is missing: {ANN_IDLE_W} and {ANN_MAX_W} go together")
        return {"idle_w": idle if idle is not None else 0.0, "max_w": peak if peak is not None else 1.0}, False
    if cfg is not None and cfg.power is not None:
        return cfg.power.model_dump(exclude_none=True), False
    if config.node_defaults.power is not None:
        return config.node_defaults.power.model_dump(exclude_none=True), False
    return {"idle_w": DEFAULT_IDLE_W, "max_w": DEFAULT_MAX_W}, True


# -- workloads and their pods ------------------------------------------------------------------


def _collect_workloads(objects: ClusterObjects, ctx: _Context) -> dict[WorkloadKey, _WorkloadIn]:
    """Deployments, StatefulSets and Jobs to plan, by their object."""
    workloads_in: dict[WorkloadKey, _WorkloadIn] = {}
    for kind, items in (("Deployment", objects.deployments), ("StatefulSet", objects.statefulsets), ("Job", objects.jobs)):
        for obj in sorted(items, key=lambda o: (_namespace(o), _name(o))):
            ns, name = _namespace(obj), _name(obj)
            if ns in ctx.excluded_ns or _truthy(_annotations(obj).get(LABEL_IGNORE, "")) or _truthy(_labels(obj).get(LABEL_IGNORE, "")):
                continue
            ref = WorkloadRef(kind, ns, name)
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
            if kind == "Job":
                # A suspended Job is not planned, unless edgeplace suspends and resumes it (edgeplace.k8s.suspend).
                if _job_finished(obj) or (spec.get("suspend") and not is_interruptible(obj)):
                    continue
                replicas = _job_replicas(obj)
            else:
                replicas = spec.get("replicas", 1)
                if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                    ctx.problems.add(str(ref), "spec.replicas", f"must be a whole number >= 0 (got {replicas!r})")
                    continue
            if replicas == 0:
                continue
            key = WorkloadKey(kind, ns, name)
            workloads_in[key] = _WorkloadIn(ref, obj, workload_id(_annotations(template), key), template, replicas)
    return workloads_in


def _attach_pods(objects: ClusterObjects, workloads_in: dict[WorkloadKey, _WorkloadIn],
                 nodes: dict[str, _NodeOut]) -> dict[str, list[dict]]:
    """Give each workload its live pods; count the others' requests on their nodes (`_NodeOut.used`).
    Returns the pods held by GATE_DEFERRED per workload id."""
    rs_owner = _replicaset_owners(objects.replicasets)
    gated: dict[str, list[dict]] = defaultdict(list)
    for pod in sorted(objects.pods, key=lambda p: (_namespace(p), _name(p))):
        status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
        if status.get("phase") in ("Succeeded", "Failed") or _meta(pod).get("deletionTimestamp"):
            continue
        spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
        owner = owner_workload(pod, rs_owner)
        w = workloads_in.get(owner) if owner else None
        node_name = spec.get("nodeName")
        if w is not None:
            w.pods.append(pod)
            if has_gate(pod):
                gated[w.id].append(pod)
        elif node_name in nodes:
            used = pod_requests(spec, f"Pod {_namespace(pod)}/{_name(pod)}", "spec", _Problems())
            nodes[node_name].used = _add(nodes[node_name].used, {**used, PODS_RESOURCE: 1})
    return gated


def _replicaset_owners(replicasets: list[dict]) -> ReplicaSetOwners:
    """(namespace, ReplicaSet name) -> (kind, name) of its controller, if any (`edgeplace.k8s.identity`)."""
    rs_owner: dict[tuple[str, str], tuple[str, str] | None] = {}
    for rs in replicasets:
        ref = controller_ref(rs)
        rs_owner[(_namespace(rs), _name(rs))] = (ref.get("kind"), ref.get("name")) if ref else None
    return rs_owner


def _workload_entries(workloads_in: dict[WorkloadKey, _WorkloadIn], nodes: dict[str, _NodeOut], ctx: _Context):
    """(scenario workload entries, their API objects, deferrable jobs already started, tenant -> a namespace of it)."""
    ids_seen: dict[str, WorkloadRef] = {}
    entries: list[dict[str, Any]] = []
    refs: list[WorkloadRef] = []
    started_jobs: set[str] = set()
    tenants_used: dict[str, str] = {}
    for w in workloads_in.values():
        if w.id in ids_seen:
            ctx.problems.add(str(w.ref), f'spec.template.{_ann_path(ANN_WORKLOAD)}',
                             f"workload id {w.id!r} is also the id of {ids_seen[w.id]}; give one of them a distinct "
                             f"{ANN_WORKLOAD} annotation on its pod template")
            continue
        ids_seen[w.id] = w.ref
        entry = _workload_entry(w, ctx)
        tenants_used.setdefault(entry["tenant"], w.ref.namespace)
        if _workload_schedule(w, entry, nodes, ctx):
            started_jobs.add(w.id)
        entries.append(entry)
        refs.append(w.ref)
    return entries, refs, started_jobs, tenants_used


def _workload_entry(w: _WorkloadIn, ctx: _Context) -> dict[str, Any]:
    """The scenario entry of one workload: tenant, requests and the edgeplace annotations."""
    subject, problems = str(w.ref), ctx.problems
    ann = _annotations(w.obj)
    tmpl_ann = _annotations(w.template)
    tenant = tmpl_ann.get(ANN_TENANT) or ann.get(ANN_TENANT) or ctx.tenant_of_namespace(w.ref.namespace)
    tspec = w.template.get("spec") if isinstance(w.template.get("spec"), dict) else {}
    requests = pod_requests(tspec, subject, "spec.template.spec", problems)
    entry: dict[str, Any] = {"id": w.id, "tenant": tenant,
                             "kind": "batch" if w.ref.kind == "Job" else "service",
                             "replicas": w.replicas, "requests": requests}
    usage = problems.number(subject, ann, ANN_CPU_USAGE, "fraction", 0, 1)
    if usage is not None:
        entry["cpu_usage_fraction"] = usage
    selector = tspec.get("nodeSelector")
    if isinstance(selector, dict) and selector:
        entry["node_selector"] = {str(k): str(v) for k, v in selector.items()}
    scheduling = workload_scheduling(w.template, w.ref.namespace, tenant, ctx.warnings, subject)
    if scheduling is not None:
        entry["scheduling"] = scheduling
    sla = problems.number(subject, ann, ANN_SLA_MS, "ms", 0, 1e9)
    users = [u.strip() for u in ann.get(ANN_USERS, "").split(",") if u.strip()]
    if sla is not None:
        if not users:
            problems.add(subject, _ann_path(ANN_USERS), f"is missing: {ANN_SLA_MS} needs the user locations it "
                         f"applies to (comma-separated ids from the site config's users)")
        elif sla <= 0:
            problems.add(subject, _ann_path(ANN_SLA_MS), f"must be > 0 [ms] (got {ann[ANN_SLA_MS]!r})")
        else:
            entry["sla"] = {"latency_ms": sla, "users": users}
    elif users:
        ctx.warnings.append(f"{subject}: {ANN_USERS} without {ANN_SLA_MS} has no effect")
    min_sites = problems.number(subject, ann, ANN_MIN_SITES, "sites", 1, 10_000, integer=True)
    if min_sites is not None and min_sites > 1:
        entry["spread"] = {"min_sites": int(min_sites)}
    return entry


def _workload_schedule(w: _WorkloadIn, entry: dict[str, Any], nodes: dict[str, _NodeOut], ctx: _Context) -> bool:
    """Deferral window and current placement of one workload (into `entry`); True for a deferrable
    Job whose pods were already released or run."""
    subject, ann = str(w.ref), _annotations(w.obj)
    started = False
    running = [p for p in w.pods if not has_gate(p)]
    bound = sorted((p for p in running if (p.get("spec") or {}).get("nodeName")), key=_name)
    if w.ref.kind == "Job" and ANN_DEADLINE in ann and is_interruptible(w.obj):
        # Paused and resumed by edgeplace (edgeplace.k8s.suspend): the rest of its run, the run going on included.
        ran, going = progress_of(w.obj, ctx.now)
        left = ctx.problems.number(subject, ann, ANN_DURATION_MIN, "min", 1, 100_000 * 1440, integer=True)
        deferral = _deferral(w, ann, subject, ctx.start, ctx.end, ctx.slot_minutes, ctx.problems, ctx.warnings,
                             left_minutes=None if left is None else max(math.ceil(left - ran), 1))
        if deferral is not None:
            min_run = ctx.problems.number(subject, ann, ANN_MIN_RUN_MIN, "min", 1, 100_000 * 1440, integer=True)
            deferral.update(interruptible=True, current_run_minutes=int(going) if running else 0)
            if min_run is not None:
                deferral["min_run_minutes"] = min(int(min_run), deferral["duration_minutes"])
            entry["deferral"] = deferral
    elif w.ref.kind == "Job" and ANN_DEADLINE in ann:
        # A Job with a start time and no gated pod has run too (its pods may be between retries or just
        # finished, or Kueue admitted it): not a deferral decision any more either.
        status = w.obj.get("status") if isinstance(w.obj.get("status"), dict) else {}
        if running or (status.get("startTime") and not any(has_gate(p) for p in w.pods)):
            started = True  # released or running: it runs now, not a deferral decision any more
            remaining = _remaining_run(w, ann, ctx.start, ctx.slots, ctx.slot_minutes)
            if remaining is not None:
                entry["deferral"] = remaining
        else:
            deferral = _deferral(w, ann, subject, ctx.start, ctx.end, ctx.slot_minutes, ctx.problems, ctx.warnings)
            if deferral is not None:
                entry["deferral"] = deferral
    elif w.ref.kind != "Job" and (ANN_DEADLINE in ann or ANN_DURATION_MIN in ann):
        ctx.warnings.append(f"{subject}: {ANN_DEADLINE}/{ANN_DURATION_MIN} apply to Jobs only; ignored")
    current = [(p.get("spec") or {}).get("nodeName") for p in bound]
    if bound and len(bound) == w.replicas and all(n in nodes for n in current):
        entry["current"] = current
    elif bound:
        ctx.warnings.append(f"{subject}: {len(bound)} pod(s) bound for {w.replicas} replica(s)"
                            + ("" if all(n in nodes for n in current) else " (some on nodes outside the scenario)")
                            + "; its current placement is left out (no migration penalty this round)")
    return started


def _subtract_unmanaged_load(nodes: dict[str, _NodeOut], warnings: list[str]) -> None:
    """Pods the scenario does not plan: less capacity on their nodes, and their CPU as background utilisation."""
    for n in nodes.values():
        if not n.used:
            continue
        cap = n.entry["capacity"]
        for key, used in n.used.items():
            if key not in cap:
                continue
            left = cap[key] - used
            if left <= 0 and key in ("cpu_millicores", "memory_mib"):
                warnings.append(f"Node {n.name}: pods outside the scenario request all its {key}; 1 is left to plan with")
                left = 1
            cap[key] = max(left, 0)
        cpu = n.allocatable.get("cpu_millicores", 0)
        if cpu > 0 and n.used.get("cpu_millicores", 0) > 0:
            n.entry["background_utilisation"] = round(min(1.0, n.used["cpu_millicores"] / cpu), 6)


def _outside_the_plan(nodes: dict[str, _NodeOut], workloads: list[dict[str, Any]], warnings: list[str]) -> None:
    """Nodes no planned workload may use (taints none tolerates, a cordon by someone else) stay in
    the scenario, as kube-scheduler counts them in topology spread, but always on: they are not
    edgeplace's to switch off."""
    tolerations = [[_parse_toleration(t) for t in (w.get("scheduling") or {}).get("tolerations", [])] for w in workloads]
    closed = []
    for n in nodes.values():
        taints = [t for t in n.entry.get("taints", []) if t.get("effect") in FILTER_EFFECTS]
        if not taints:
            continue
        parsed = [_parse_taint(t) for t in taints]
        if any(all(tolerated_seconds([t for t in tols if t is not None], taint) > 0 for taint in parsed if taint is not None)
               for tols in tolerations):
            continue
        n.entry["can_power_down"] = False
        closed.append(f"{n.name} ({', '.join(str(t['key']) for t in taints)})")
    if closed:
        warnings.append(f"{len(closed)} node(s) no planned workload may use stay on and are planned around: "
                        + "; ".join(closed[:10]) + (" ..." if len(closed) > 10 else ""))


def _parse_toleration(t: dict) -> Toleration | None:
    try:
        return Toleration.model_validate(t)
    except ValidationError:
        return None  # the scenario's validation reports it against its workload


def _parse_taint(t: dict) -> Taint | None:
    try:
        return Taint.model_validate(t)
    except ValidationError:
        return None


def _topology_label_warnings(nodes: dict[str, _NodeOut], workloads: list[dict[str, Any]], warnings: list[str]) -> None:
    """A node without the hostname, zone or region label a workload's topology rule names is in no
    domain of that key for kube-scheduler, but in its default one (name, site, region) for edgeplace."""
    keys = set()
    for w in workloads:
        sch = w.get("scheduling") or {}
        for block in ("pod_affinity", "pod_anti_affinity"):
            for term in (sch.get(block) or {}).get("required", []):
                keys.add(term.get("topology_key"))
        keys |= {c.get("topology_key") for c in sch.get("topology_spread", [])}
    for key in sorted(keys & {LABEL_HOSTNAME, LABEL_ZONE, LABEL_REGION}):
        missing = [n.name for n in nodes.values() if key not in n.entry.get("labels", {})]
        if missing:
            warnings.append(f"{len(missing)} node(s) lack the label {key} that a workload's topology rule names; "
                            f"kube-scheduler counts them in no {key} domain, edgeplace in their default one: "
                            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))


# -- tenants, sites and regions ---------------------------------------------------------------


def namespace_tenant(ns: str, namespaces: dict[str, dict], config: ClusterConfig) -> str:
    """A namespace's tenant: the site config's tenants[].namespaces, else the tenant label, else its name."""
    configured = next((t.id for t in config.tenants if ns in t.namespaces), None)
    return configured or _labels(namespaces.get(ns, {})).get(LABEL_TENANT) or ns


def tenant_isolation(namespaces: dict[str, dict], config: ClusterConfig,
                     problems: _Problems | None = None) -> dict[str, dict[str, Any]]:
    """Tenant -> {"dedicated_nodes": bool, "never_with": sorted list} for every tenant with a rule, from
    the site config's tenants and the namespaces' isolation annotations (one-sided never_with as written)."""
    problems = problems if problems is not None else _Problems()
    rules: dict[str, dict[str, Any]] = {}
    for t in config.tenants:
        if t.isolation is not None:
            rules[t.id] = t.isolation.model_dump()
    for ns_name, ns in sorted(namespaces.items()):
        ann = _annotations(ns)
        never = [x.strip() for x in ann.get(ANN_NEVER_WITH, "").split(",") if x.strip()]
        dedicated = _truthy(ann.get(ANN_DEDICATED_NODES, "")) if ANN_DEDICATED_NODES in ann else None
        if ANN_DEDICATED_NODES in ann and dedicated is None:
            problems.add(f"Namespace {ns_name}", _ann_path(ANN_DEDICATED_NODES),
                         f"must be true or false (got {ann[ANN_DEDICATED_NODES][:20]!r})")
        if not never and not dedicated:
            continue
        iso = rules.setdefault(namespace_tenant(ns_name, namespaces, config), {"dedicated_nodes": False, "never_with": []})
        iso["never_with"] = sorted(set(iso["never_with"]) | set(never))
        iso["dedicated_nodes"] = bool(iso["dedicated_nodes"] or dedicated)
    return rules


def _tenant_entries(nodes: dict[str, _NodeOut], tenants_used: dict[str, str], ctx: _Context) -> dict[str, dict[str, Any]]:
    """Tenants from the site config and the namespaces' isolation annotations, plus every tenant referred to."""
    tenant_entries: dict[str, dict[str, Any]] = {}
    for t in ctx.config.tenants:
        entry: dict[str, Any] = {"id": t.id}
        if t.quota:
            entry["quota"] = dict(t.quota)
        tenant_entries[t.id] = entry
    for tenant, iso in tenant_isolation(ctx.namespaces, ctx.config, ctx.problems).items():
        tenant_entries.setdefault(tenant, {"id": tenant})["isolation"] = iso
    for ns_name in sorted(ctx.namespaces):
        tenant = ctx.tenant_of_namespace(ns_name)
        if tenant in tenants_used:
            tenant_entries.setdefault(tenant, {"id": tenant})
    for tenant in tenants_used:
        tenant_entries.setdefault(tenant, {"id": tenant})
    for n in nodes.values():  # a dedicated node's owner must be a tenant
        owner = n.entry.get("dedicated_to")
        if owner:
            tenant_entries.setdefault(owner, {"id": owner})
    for entry in list(tenant_entries.values()):  # never_with partners must exist too
        for other in entry.get("isolation", {}).get("never_with", []):
            tenant_entries.setdefault(other, {"id": other})
    if not tenant_entries:
        tenant_entries["default"] = {"id": "default"}  # a scenario needs one tenant, even with no workload
    return tenant_entries


def _sites_and_regions(mapped: _Nodes, ctx: _Context) -> tuple[list[dict], list[dict], list[dict]]:
    """(site entries, region entries, signals): node facts first, then the site config."""
    config, problems, slots = ctx.config, ctx.problems, ctx.slots
    site_cfg = {s.id: s for s in config.sites}
    region_cfg = {r.id: r for r in config.regions}
    site_ids = list(dict.fromkeys([n.site for n in mapped.nodes.values()] + [s.id for s in config.sites]
                                  + [u.site for u in config.users]))
    site_entries = []
    signals: list[dict[str, Any]] = []
    for sid in site_ids:
        cfg = site_cfg.get(sid)
        region = mapped.site_region.get(sid, (cfg.region if cfg else None, ""))[0]
        tier = mapped.site_tier.get(sid, (cfg.tier.value if cfg and cfg.tier else None, ""))[0]
        if sid not in mapped.site_region and not region:
            problems.add(f"site {sid}", "(site config sites[].region)", "has no grid region: add it to the site config")
        if sid not in mapped.site_tier and not tier:
            problems.add(f"site {sid}", "(site config sites[].tier)", "has no tier: add it to the site config")
        if not region or not tier:
            continue
        entry: dict[str, Any] = {"id": sid, "tier": tier, "region": region}
        if cfg is not None:
            for key in ("location", "embodied"):
                if getattr(cfg, key) is not None:
                    entry[key] = getattr(cfg, key).model_dump()
        for fact in ("pue", "pv_kwp", "battery_kwh"):
            if fact in mapped.site_facts.get(sid, {}):
                entry[fact] = mapped.site_facts[sid][fact][0]
            elif cfg is not None and getattr(cfg, fact) is not None:
                entry[fact] = getattr(cfg, fact)
        if cfg is not None and cfg.renewable_kw is not None:
            values = _per_slot(cfg.renewable_kw, slots, f"site {sid}", "(site config sites[].renewable_kw)", problems)
            if values is not None:
                signals.append({"signal": "renewable_supply", "site": sid, "unit": "kW", "values": values})
        site_entries.append(entry)

    region_ids = list(dict.fromkeys([e["region"] for e in site_entries] + [r.id for r in config.regions]))
    from_files = _file_signals(config, ctx.start, slots, ctx.slot_minutes)
    signals.extend(from_files)
    passthrough = {(s.signal.value, s.region) for s in config.signals if s.signal.value == "grid_intensity"}
    passthrough |= {(s["signal"], s.get("region")) for s in from_files if s["signal"] == "grid_intensity"}
    region_entries = []
    for rid in region_ids:
        cfg = region_cfg.get(rid)
        region_entries.append({"id": rid, **({"description": cfg.description} if cfg and cfg.description else {})})
        if cfg is not None and cfg.intensity_g_per_kwh is not None:
            values = _per_slot(cfg.intensity_g_per_kwh, slots, f"region {rid}", "(site config regions[].intensity_g_per_kwh)", problems)
            if values is not None:
                signals.append({"signal": "grid_intensity", "region": rid, "unit": "gCO2/kWh", "values": values,
                                "intensity_kind": cfg.intensity_kind,
                                **({"factor_type": cfg.factor_type} if cfg.factor_type else {})})
        elif ("grid_intensity", rid) not in passthrough:
            problems.add(f"region {rid}", "(site config regions[].intensity_g_per_kwh)",
                         f"has no carbon intensity: add `regions: [{{id: {rid}, intensity_g_per_kwh: ...}}]` "
                         "(a constant in gCO2/kWh, or one value per slot) to the site config")
    for k, sig in enumerate(config.signals):
        values = list(sig.values)
        if len(values) < slots:
            problems.add(f"site config signals[{k}]", "values", f"has {len(values)} values but the horizon has {slots} slots")
            continue
        signals.append({**sig.model_dump(exclude_none=True), "values": values[:slots]})
    return site_entries, region_entries, signals


_INDEXED = re.compile(r"^(nodes|workloads|sites|regions|tenants)\[(\d+)\](.*)$")


def _name_origin(problem: Problem, origins: dict[str, list[str]]) -> Problem:
    """`workloads[2].sla.latency_ms` -> `Deployment shop/web (scenario workloads[2].sla.latency_ms)`."""
    m = _INDEXED.match(problem.path)
    if not m:
        return problem
    table, index = origins.get(m.group(1), []), int(m.group(2))
    if index >= len(table):
        return problem
    return Problem(f"{table[index]} (scenario {problem.path})", problem.message)


def _job_finished(job: dict) -> bool:
    status = job.get("status") if isinstance(job.get("status"), dict) else {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False


def _job_replicas(job: dict) -> int:
    """Pods a Job runs at once: parallelism (default 1), at most the completions still to go."""
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    parallelism = spec.get("parallelism", 1)
    parallelism = parallelism if isinstance(parallelism, int) and parallelism >= 0 else 1
    completions = spec.get("completions")
    if isinstance(completions, int) and completions >= 0:
        succeeded = status.get("succeeded") if isinstance(status.get("succeeded"), int) else 0
        parallelism = min(parallelism, max(completions - succeeded, 0))
    return parallelism


def _deferral(w: _WorkloadIn, ann: dict[str, str], subject: str, start: datetime, end: datetime,
              slot_minutes: int, problems: _Problems, warnings: list[str],
              left_minutes: int | None = None) -> dict[str, Any] | None:
    """The deferral window of a Job not started yet, clipped to the horizon; None when it must run now.
    `left_minutes`: the run time still to go, when part of it is done (an interruptible Job)."""
    try:
        deadline = _parse_time(ann[ANN_DEADLINE])
    except ValueError:
        problems.add(subject, _ann_path(ANN_DEADLINE), f"must be an ISO 8601 time with a UTC offset, e.g. "
                     f"2026-06-21T18:00:00Z (got {ann[ANN_DEADLINE][:40]!r})")
        return None
    duration = problems.number(subject, ann, ANN_DURATION_MIN, "min", 1, 100_000 * 1440, integer=True)
    if duration is not None and left_minutes is not None:
        duration = left_minutes
    if duration is None:
        if ANN_DURATION_MIN not in ann:
            problems.add(subject, _ann_path(ANN_DURATION_MIN), f"is missing: a Job with {ANN_DEADLINE} needs its run time in minutes")
        return None
    earliest = start
    if ANN_EARLIEST_START in ann:
        try:
            earliest = max(start, _parse_time(ann[ANN_EARLIEST_START]))
        except ValueError:
            problems.add(subject, _ann_path(ANN_EARLIEST_START), f"must be an ISO 8601 time with a UTC offset "
                         f"(got {ann[ANN_EARLIEST_START][:40]!r})")
            return None
    # Whole slots inside [earliest, min(deadline, horizon end)) must hold the run (as edgeplace.topology.load counts them).
    slot = timedelta(minutes=slot_minutes)
    first = math.ceil((earliest - start) / slot)
    last = math.floor((min(deadline, end) - start) / slot)
    need = math.ceil(int(duration) / slot_minutes)
    if last - first < need:
        warnings.append(f"{subject}: its window to {ann[ANN_DEADLINE]} holds {max(last - first, 0)} whole slot(s) of "
                        f"the horizon but it needs {need}; planned to run now")
        return None
    return {"earliest_start": (start + first * slot).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deadline": (start + last * slot).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_minutes": int(duration)}


def _remaining_run(w: _WorkloadIn, ann: dict[str, str], start: datetime, slots: int,
                   slot_minutes: int) -> dict[str, Any] | None:
    """The slots a started deferrable Job still runs in: from now to its start + duration (at least one slot).

    A window exactly as long as the run, so the plan keeps it where it is in
    time and its requests (and its tenant's quota) count only until it is
    expected to end, not over the whole horizon. A job that started within
    the first tenth of a slot counts from that slot's start: edgeplace
    releases jobs at slot starts, and the seconds Kueue or the scheduler take
    to start them are not a slot more. None when its duration or start time
    is unknown.
    """
    try:
        duration = float(ann[ANN_DURATION_MIN])
    except (KeyError, ValueError):
        return None
    status = w.obj.get("status") if isinstance(w.obj.get("status"), dict) else {}
    times = [_parse_time(t) for t in [status.get("startTime")] + [(p.get("status") or {}).get("startTime")
                                                                  for p in w.pods] if isinstance(t, str)]
    if not times or not math.isfinite(duration) or duration <= 0:
        return None
    slot = timedelta(minutes=slot_minutes)
    began = min(times)
    slot_start = horizon_start(began, slot_minutes)
    if began - slot_start < slot / 10:
        began = slot_start
    need = min(max(math.ceil((began + timedelta(minutes=duration) - start) / slot), 1), slots)
    return {"earliest_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deadline": (start + need * timedelta(minutes=slot_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_minutes": need * slot_minutes}


def has_gate(pod: dict, gate: str = GATE_DEFERRED) -> bool:
    """The pod is held by the scheduling gate `gate`."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    return any(isinstance(g, dict) and g.get("name") == gate for g in spec.get("schedulingGates") or [])


def pod_workload_ids(objects: ClusterObjects) -> dict[tuple[str, str], str]:
    """(namespace, pod name) -> workload id, for the pods of the workloads `map_cluster` reads.

    A pod owned by a listed workload belongs to it, any other by
    `edgeplace.k8s.identity.pod_workload_id` (owner references, the
    ``edgeplace.io/workload`` annotation as an override). Pods of no workload are absent.
    """
    rs_owner = _replicaset_owners(objects.replicasets)
    wid_of: dict[WorkloadKey, str] = {}
    for kind, items in (("Deployment", objects.deployments), ("StatefulSet", objects.statefulsets), ("Job", objects.jobs)):
        for obj in items:
            key = WorkloadKey(kind, _namespace(obj), _name(obj))
            wid_of[key] = workload_id(_annotations((obj.get("spec") or {}).get("template") or {}), key)
    out = {}
    for pod in objects.pods:
        key = owner_workload(pod, rs_owner)
        # A pod of a listed workload belongs to it; any other pod by the identity rule (its annotation).
        wid = wid_of.get(key) if key in wid_of else pod_workload_id(pod, rs_owner)
        if wid:
            out[(_namespace(pod), _name(pod))] = wid
    return out


def running_replicas(scenario: Scenario, objects: ClusterObjects) -> dict[tuple[str, str], int]:
    """(namespace, pod name) -> replica index of the scenario, for pods bound to a scenario node.

    A workload's replicas take its bound, live pods in pod-name order (the
    order `placement_from_cluster` uses); pods beyond the workload's replica
    count are left out.
    """
    wids = pod_workload_ids(objects)
    node_index = {n: i for i, n in enumerate(scenario.node_ids)}
    workload_index = {w: i for i, w in enumerate(scenario.workload_ids)}
    taken: dict[int, int] = defaultdict(int)
    out = {}
    for pod in sorted(objects.pods, key=lambda p: (_namespace(p), _name(p))):
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed") or _meta(pod).get("deletionTimestamp"):
            continue
        if (pod.get("spec") or {}).get("nodeName") not in node_index:
            continue
        w = workload_index.get(wids.get((_namespace(pod), _name(pod)), ""))
        if w is None or taken[w] >= int(scenario.workload_replicas[w]):
            continue
        out[(_namespace(pod), _name(pod))] = int(scenario.workload_first_replica[w]) + taken[w]
        taken[w] += 1
    return out


def placement_from_cluster(scenario: Scenario, objects: ClusterObjects) -> Placement:
    """Where the scenario's workloads run now, from the pods' bindings (`spec.nodeName`).

    A workload's replicas take its bound pods' nodes in pod-name order
    (`running_replicas`); replicas without a bound pod on a scenario node are
    unplaced (-1). Pods are matched to workloads by `pod_workload_ids`.
    """
    node_index = {n: i for i, n in enumerate(scenario.node_ids)}
    pods = {(_namespace(p), _name(p)): p for p in objects.pods}
    replica_node = np.full(scenario.n_replicas, -1, dtype=np.int64)
    for key, r in running_replicas(scenario, objects).items():
        replica_node[r] = node_index[(pods[key].get("spec") or {}).get("nodeName")]
    return Placement.from_replica_nodes(scenario, replica_node)


# ---------------------------------------------------------------------------
# Reading a cluster


def _list_all(call, **kwargs) -> tuple[list[dict], str]:
    """Every item of a list call (paged, 500 at a time) as JSON dicts, and the list's resourceVersion."""
    items: list[dict] = []
    token = None
    version = ""
    while True:
        extra = {"_continue": token} if token else {}
        resp = call(limit=500, _preload_content=False, **extra, **kwargs)
        doc = json.loads(resp.data)
        items.extend(doc.get("items") or [])
        meta = doc.get("metadata") or {}
        version = meta.get("resourceVersion", version)
        token = meta.get("continue")
        if not token:
            return items, version


def read_cluster(api_client) -> ClusterObjects:
    """List the objects `map_cluster` and the actuation read (Nodes, Pods, Namespaces,
    Deployments, StatefulSets, ReplicaSets, Jobs, PodDisruptionBudgets), as the API server's JSON.

    Needs get/list on those resources (the chart's ClusterRole).
    """
    from kubernetes import client

    core, apps, batch = client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.BatchV1Api(api_client)
    policy = client.PolicyV1Api(api_client)
    out = ClusterObjects()
    for attr, call in (("nodes", core.list_node), ("pods", core.list_pod_for_all_namespaces),
                       ("namespaces", core.list_namespace),
                       ("deployments", apps.list_deployment_for_all_namespaces),
                       ("statefulsets", apps.list_stateful_set_for_all_namespaces),
                       ("replicasets", apps.list_replica_set_for_all_namespaces),
                       ("jobs", batch.list_job_for_all_namespaces),
                       ("poddisruptionbudgets", policy.list_pod_disruption_budget_for_all_namespaces)):
        items, version = _list_all(call)
        setattr(out, attr, items)
        out.resource_versions[attr] = version
    return out


def summary(mapped: MappedCluster) -> dict[str, Any]:
    """Counts for a one-screen report of an import."""
    sc = mapped.scenario
    return {"nodes": sc.n_nodes, "excluded_nodes": len(mapped.excluded_nodes), "sites": sc.n_sites,
            "regions": len(sc.region_ids), "tenants": len(sc.tenant_ids), "workloads": sc.n_workloads,
            "replicas": sc.n_replicas, "deferrable_jobs": int(sc.workload_deferrable.sum()),
            "running_with_current": sum(1 for c in sc.workload_current if c is not None),
            "warnings": len(mapped.warnings)}


def power_annotations(power: dict[str, Any]) -> dict[str, str | None]:
    """A scenario `power` entry ({idle_w, max_w} or {points_w}) as the Node annotations this
    mapping reads; the other form's keys are None (removed by a merge patch), since a Node
    may carry only one form."""
    if "points_w" in power:
        return {ANN_POWER_CURVE_W: ",".join(f"{float(p):g}" for p in power["points_w"]), ANN_IDLE_W: None, ANN_MAX_W: None}
    return {ANN_IDLE_W: f"{float(power['idle_w']):g}", ANN_MAX_W: f"{float(power['max_w']):g}", ANN_POWER_CURVE_W: None}


def set_node_annotations(api_client, annotations: dict[str, dict[str, str | None]]) -> None:
    """Merge-patch each Node's annotations (None removes a key). Needs patch on nodes.
    A Node that does not exist is an `InputError` naming it; nothing after it is patched."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    for node, values in annotations.items():
        try:
            core.patch_node(node, {"metadata": {"annotations": values}})
        except ApiException as exc:
            raise InputError(f"Node {node}", [Problem("metadata.annotations", f"patch refused: HTTP {exc.status} "
                                                                             f"{exc.reason}")]) from None
