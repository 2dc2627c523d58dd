"""The published plan document and the decision table the extender answers from.

A planner publishes what it decided for the current slot as a JSON *plan
document* (a file, or a ConfigMap mounted as a file); the extender turns it
once into a `DecisionTable` of plain arrays, so that a filter or prioritize
call is a few dictionary look-ups and numpy gathers and never a solve.

The plan document (``version: 1``)::

    {"version": 1, "scenario": "metro-de", "cluster": "metro-de",
     "generated_at": "2026-06-21T10:00:00Z",        # UTC, when the plan was made
     "valid_until":  "2026-06-21T10:15:00Z",        # after this the extender fails open
     "slot": {"index": 10, "start": "2026-06-21T10:00:00Z", "end": "2026-06-21T11:00:00Z"},
     "accounting": {"basis": "location-based", "intensity_kind": "average"},
     "nodes": {
       "edge-1": {"site": "access-1", "powered": true, "score_g": 21.4,
                  "open_g_per_h": 96.0, "dedicated_to": null, "tenants": ["acme"]}},
     "node_sets": {"set-0": ["edge-1", "cloud-1"]},
     "workloads": {
       "video": {"tenant": "acme", "cpu_millicores": 2000, "cpu_usage_fraction": 0.6,
                 "allowed_nodes": "set-0",          # or a list of node names
                 "planned_nodes": {"edge-1": 2},    # replicas the plan puts on each node
                 "running_nodes": {"cloud-1": 1}}}, # replicas running at plan time (optional)
     "tenants": {"acme": {"never_with": ["globex"], "dedicated": false}}}

Field meanings and units:

- ``cluster``: the cluster the plan is for (the site config's ``name``,
  which is also the scenario's). An extender started with a cluster name
  (``--cluster``) refuses a plan for another cluster, or naming none.
- ``score_g`` [gCO2e per core-hour]: marginal emissions of one more busy CPU
  core on the node in this slot (see `marginal_g_per_core_h`). Operational
  only: a powered node's idle power (and, for a node rented by the hour, its
  embodied carbon) is already paid, and asleep nodes are
  filtered, so their opening cost is not in it.
- ``open_g_per_h`` [gCO2e/h]: what keeping the node on costs with only its
  background load (idle + background power at grid intensity, plus embodied
  carbon for rented nodes only, `edgeplace.policies.costs.CostModel.open_g`); used only to rank asleep nodes
  when the extender has to let one wake.
- ``tenants``: tenants present on the node at plan time: the plan's replicas
  in this slot and the replicas running when the plan was made (the union,
  the conservative reading for ``never_with``).
- ``allowed_nodes``: static eligibility (latency SLA, node selector,
  dedicated pools, a replica fitting the node at all:
  `topology.Scenario.workload_node_eligible`), inline or by the name of a
  shared ``node_sets`` entry (many workloads share a row; the sets keep the
  document small).
- ``never_with`` is symmetric: a pair listed once applies both ways.

Decisions (`DecisionTable`), one fixed set of outcomes per candidate node
(`Outcome`), mapped once onto the wire in `edgeplace.k8s.extender.wire`:

==============  ============================================  ==========================
outcome         when                                          filter answer
==============  ============================================  ==========================
``PASS``        allowed, no conflicting tenant, powered       node passes
``ASLEEP``      the plan powers the node down                 ``FailedNodes``
``NOT_ALLOWED`` outside ``allowed_nodes`` / dedicated pool    ``FailedAndUnresolvableNodes``
``NEVER_WITH``  hosts a tenant this tenant may never share    ``FailedAndUnresolvableNodes``
==============  ============================================  ==========================

Asleep is a soft rule: when no candidate passes but some are only asleep,
those pass (``reason="wake"``): more demand than planned should wake a node,
not leave a pod pending. Nodes the plan does not know pass and score 0.

Prioritize scores (0..10, `MAX_EXTENDER_PRIORITY`): 10 on a node where the
plan puts more replicas of the workload than ran there at plan time; every
other allowed, powered node gets ``round(9 x (g_max - g) / (g_max - g_min))``
with g = ``score_g`` and the range taken over the workload's allowed powered
nodes (all 9 when they are equal): lower emissions, higher score. When no
candidate is allowed and powered, the asleep allowed ones are ranked the same
way by ``open_g_per_h + cores x score_g`` (the cost of waking one for this
pod). Everything else scores 0.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeplace.k8s.identity import TENANT_ANNOTATION, WORKLOAD_ANNOTATION  # noqa: F401 (re-exported)
from edgeplace.policies.costs import CostModel, price
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU, Scenario

PLAN_VERSION = 1
#: kube-scheduler's MaxExtenderPriority (k8s.io/kube-scheduler/extender/v1/types.go).
MAX_EXTENDER_PRIORITY = 10
#: How long a plan stays valid by default [s]. A planner republishes every few
#: minutes; if it stops, the extender fails open a quarter of an hour later
#: rather than steering pods by an ever older picture of the cluster.
DEFAULT_VALID_FOR_S = 900.0


class Outcome(IntEnum):
    """What the plan says about one candidate node for one pod (the rules' outcomes by severity)."""

    PASS = 0
    ASLEEP = 1
    NOT_ALLOWED = 2
    NEVER_WITH = 3
    #: Allowed, but prioritize would score other candidates higher: only in the answer of a
    #: filter that keeps the best nodes (`DecisionTable.filter(best=True)`), never a table row.
    OUTRANKED = 4


class PlanError(InputError):
    """A plan document is invalid; `problems` lists every problem found."""

    def __reduce__(self):  # raised in the helper process, re-raised in the server
        return (PlanError, (self.source, self.problems))


# ---------------------------------------------------------------------------
# Pricing: the marginal emissions of one more busy core


def marginal_g_per_core_h(costs: CostModel, evaluation: Evaluation, slot: int) -> np.ndarray:
    """Marginal operational emissions of one more busy CPU core, per node [gCO2e per core-hour].

    Parameters
    ----------
    costs : the priced scenario (`edgeplace.policies.costs.price`)
    evaluation : the plan's evaluation (`edgeplace.policies.evaluate.evaluate`), for the
        node utilisation and site energy in `slot`
    slot : the slot index

    Returns
    -------
    (N,) gCO2e per core-hour, >= 0.

    Notes
    -----
    With u the node's utilisation in the slot (background + the plan's load)::

        slope_w     = right derivative of the convex hull of the power curve at u [W per unit utilisation]
        facility_kw = slope_w x (1000 / cpu_capacity_millicores) x PUE / 1000      [kW per busy core]
        surplus_kw  = max(0, renewable supply - site facility energy) / slot hours  [kW]
        grid_share  = clip(1 - surplus_kw / facility_kw, 0, 1)
        score_g     = facility_kw x 1 h x grid_share x intensity[region, slot]

    The same marginal pricing as `edgeplace.optimizer.greedy` (right derivative, on-site
    surplus first), without the opening term: embodied carbon and idle power
    are charged per powered node-hour, so adding load to a powered node adds
    none. A node at full load has slope 0 (its power is clipped; capacity
    filters keep pods off it). Batteries are ignored (conservative).
    """
    sc = costs.scenario
    u = np.minimum(evaluation.utilisation[:, slot], 1.0)
    lines = costs.power_intercept_w + costs.power_slope_w * (u[:, None] + 1e-9)
    active = np.argmax(lines, axis=1)
    slope_w = np.where(u < 1.0, costs.power_slope_w[np.arange(sc.n_nodes), active], 0.0)
    per_core_util = 1000.0 / sc.node_capacity[:, CPU].astype(float)
    facility_kw = slope_w * per_core_util * sc.node_pue / 1000.0
    site_kwh = np.bincount(sc.node_site, weights=evaluation.energy_kwh[:, slot], minlength=sc.n_sites)
    surplus_kw = np.maximum(costs.site_supply_kwh[:, slot] - site_kwh, 0.0) / sc.slot_hours
    with np.errstate(divide="ignore", invalid="ignore"):
        grid_share = np.where(facility_kw > 0, np.clip(1.0 - surplus_kw[sc.node_site] / facility_kw, 0.0, 1.0), 0.0)
    return facility_kw * grid_share * costs.node_intensity_g_per_kwh[:, slot]


# ---------------------------------------------------------------------------
# Building the document


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_plan_document(scenario: Scenario, placement: Placement, slot: int = 0,
                        valid_for_s: float = DEFAULT_VALID_FOR_S, *, now: datetime | None = None,
                        evaluation: Evaluation | None = None, cluster: str | None = None) -> dict[str, Any]:
    """The plan document of `placement` for `slot` (format in the module docstring).

    Parameters
    ----------
    scenario, placement : the scenario and the plan's placement (`Plan.placement`)
    slot : the slot the document applies to (0 = the first of the horizon)
    valid_for_s : seconds from `now` until the extender treats the plan as stale [s]
    now : generation time (UTC); default: the current time
    evaluation : `evaluate(scenario, placement)` if already computed (`Plan.evaluation`)
    cluster : the cluster's name; default: the scenario's name (the site config's `name`)
    """
    sc = scenario
    if not 0 <= slot < sc.n_slots:
        raise ValueError(f"slot must be 0..{sc.n_slots - 1} (got {slot})")
    if not (valid_for_s > 0 and math.isfinite(valid_for_s)):
        raise ValueError(f"valid_for_s must be a finite number > 0 (got {valid_for_s})")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware (UTC)")
    costs = price(sc)
    evaluation = evaluation if evaluation is not None else evaluate(sc, placement)
    score_g = marginal_g_per_core_h(costs, evaluation, slot)
    open_g_per_h = costs.open_g()[:, slot] / sc.slot_hours
    powered = evaluation.powered[:, slot]

    assign = placement.column(slot)
    replica_w = sc.replica_workload
    tenants_on: list[set[int]] = [set() for _ in range(sc.n_nodes)]
    for r in np.flatnonzero(assign >= 0):
        tenants_on[int(assign[r])].add(int(sc.workload_tenant[replica_w[r]]))
    running: dict[int, dict[int, int]] = {}
    for w, nodes in enumerate(sc.workload_current):
        for n in nodes or ():
            if n is not None and n >= 0:
                running.setdefault(w, {}).setdefault(int(n), 0)
                running[w][int(n)] += 1
                tenants_on[int(n)].add(int(sc.workload_tenant[w]))

    node_ids, tenant_ids = sc.node_ids, sc.tenant_ids
    nodes = {}
    for i, nid in enumerate(node_ids):
        owner = int(sc.node_dedicated_tenant[i])
        nodes[nid] = {
            "site": sc.site_ids[int(sc.node_site[i])],
            "powered": bool(powered[i]),
            "score_g": round(float(score_g[i]), 6),
            "open_g_per_h": round(float(open_g_per_h[i]), 6),
            "dedicated_to": tenant_ids[owner] if owner >= 0 else None,
            "tenants": sorted(tenant_ids[m] for m in tenants_on[i]),
        }

    # Many workloads share an eligibility row (same users, selector, tenant): name each row once.
    eligible = sc.workload_node_eligible
    set_of_row: dict[bytes, str] = {}
    node_sets: dict[str, list[str]] = {}
    workloads = {}
    first = sc.workload_first_replica
    for w, wid in enumerate(sc.workload_ids):
        key = np.packbits(eligible[w]).tobytes()
        name = set_of_row.get(key)
        if name is None:
            name = set_of_row[key] = f"set-{len(node_sets)}"
            node_sets[name] = [node_ids[n] for n in np.flatnonzero(eligible[w])]
        rows = assign[first[w]:first[w] + int(sc.workload_replicas[w])]
        counts = np.bincount(rows[rows >= 0], minlength=sc.n_nodes)
        entry: dict[str, Any] = {
            "tenant": tenant_ids[int(sc.workload_tenant[w])],
            "cpu_millicores": float(sc.workload_requests[w, CPU]),
            "cpu_usage_fraction": float(sc.workload_cpu_usage[w]),
            "allowed_nodes": name,
            "planned_nodes": {node_ids[n]: int(counts[n]) for n in np.flatnonzero(counts)},
        }
        if w in running:
            entry["running_nodes"] = {node_ids[n]: k for n, k in sorted(running[w].items())}
        workloads[wid] = entry

    conflicts = sc.tenant_conflicts
    tenants = {tid: {"never_with": [tenant_ids[o] for o in np.flatnonzero(conflicts[m]) if o != m],
                     "dedicated": bool(sc.tenant_dedicated[m])}
               for m, tid in enumerate(tenant_ids)}
    start = sc.slot_time(slot)
    return {
        "version": PLAN_VERSION,
        "scenario": sc.spec.name,
        "cluster": cluster or sc.spec.name,
        "generated_at": _iso(now),
        "valid_until": _iso(now + timedelta(seconds=valid_for_s)),
        "slot": {"index": slot, "start": _iso(start), "end": _iso(start + timedelta(hours=sc.slot_hours))},
        "accounting": {"basis": "location-based", "intensity_kind": sc.intensity_kind},
        "nodes": nodes,
        "node_sets": node_sets,
        "workloads": workloads,
        "tenants": tenants,
    }


# ---------------------------------------------------------------------------
# The decision table


@dataclass(frozen=True)
class EncodedNodes:
    """JSON fragments of node names for the filter answer, per table column."""

    names: list[bytes]  # '"n1"'
    failed: dict[int, list[bytes]]  # Outcome -> '"n1":"<reason>"'

    @classmethod
    def build(cls, node_ids: list[str], messages: dict[int, str]) -> "EncodedNodes":
        names = [json.dumps(n).encode() for n in node_ids]
        failed = {code: [n + b":" + json.dumps(text).encode() for n in names] for code, text in messages.items()}
        return cls(names, failed)


@dataclass(frozen=True)
class Target:
    """What a pod is for the table: the rows of outcomes and scores that apply to it."""

    reason: str  # "plan" (a known workload) or "tenant" (tenant rules only)
    codes: np.ndarray  # N int8, Outcome per node
    scores: np.ndarray  # N int8, 0..10 for powered nodes
    wake_scores: np.ndarray  # N int8, 0..9 for asleep allowed nodes
    usage_fraction: float  # busy cores per requested core (cpu_usage_fraction)
    planned_cores: float  # requested cores of one replica in the plan, 0 = unknown
    workload: str | None
    tenant: str


@dataclass(frozen=True)
class FilterDecision:
    # Arrays, not lists: the answer is built from them with numpy (wire.filter_result), and a
    # list round trip of 1,000 candidates costs as much as the decision itself.
    codes: np.ndarray  # int8 Outcome per candidate, in request order
    messages: dict[int, str]  # Outcome -> reason text for FailedNodes maps
    reason: str
    columns: np.ndarray  # int64 table column of each candidate, -1 = not in the plan


@dataclass(frozen=True)
class PrioritizeDecision:
    scores: list[int]  # 0..10 per candidate, in request order
    reason: str
    avoided_g_per_h: float  # estimate, see DecisionTable.prioritize
    columns: list[int]  # table column of each candidate, -1 = not in the plan


class DecisionTable:
    """Everything a request needs, precomputed from one plan document.

    Immutable once built; the server swaps whole tables. Rows are indexed by
    the document's node order; `node_index` maps a node name to its column.
    """

    def __init__(self, doc_meta: dict[str, Any], node_ids: list[str], node_powered: np.ndarray,
                 node_score_g: np.ndarray, workload_ids: list[str], workload_tenant: np.ndarray,
                 workload_codes: np.ndarray, workload_scores: np.ndarray, workload_wake: np.ndarray,
                 workload_usage: np.ndarray, workload_cores: np.ndarray, tenant_ids: list[str],
                 tenant_codes: np.ndarray, tenant_scores: np.ndarray, tenant_wake: np.ndarray):
        self.version: int = doc_meta["version"]
        self.scenario: str = doc_meta["scenario"]
        self.cluster: str | None = doc_meta["cluster"]
        self.generated_at: datetime = doc_meta["generated_at"]
        self.valid_until: datetime = doc_meta["valid_until"]
        self.generated_at_ts = self.generated_at.timestamp()
        self.valid_until_ts = self.valid_until.timestamp()
        self.slot: int = doc_meta["slot"]
        self.node_ids = node_ids
        self.node_index = {n: i for i, n in enumerate(node_ids)}
        self.node_powered = node_powered
        self.node_score_g = node_score_g
        self.workload_ids = workload_ids
        self.workload_index = {w: i for i, w in enumerate(workload_ids)}
        self.workload_tenant = workload_tenant
        self.workload_codes = workload_codes
        self.workload_scores = workload_scores
        self.workload_wake = workload_wake
        self.workload_usage = workload_usage
        self.workload_cores = workload_cores
        self.tenant_ids = tenant_ids  # the last row is the "unknown tenant"
        self.tenant_index = {t: i for i, t in enumerate(tenant_ids[:-1])}
        self.tenant_codes = tenant_codes
        self.tenant_scores = tenant_scores
        self.tenant_wake = tenant_wake
        # JSON fragments of the answers, built once per plan: '{"Host":"n1","Score":' for
        # prioritize (per score), '"n1"' and '"n1":"<reason>"' per outcome for filter.
        # host_score[s * N + i] = '{"Host":"<node i>","Score":s}' for s in 0..10.
        prefix = [b'{"Host":' + json.dumps(n).encode() + b',"Score":' for n in node_ids]
        self.host_score = [p + b"%d}" % score for score in range(MAX_EXTENDER_PRIORITY + 1) for p in prefix]
        self.messages = self._messages()
        self.encoded = EncodedNodes.build(node_ids, self.messages)
        self._best_levels_cache: dict[tuple, list[tuple[list[int], list[bytes]]]] = {}

    # -- loading --------------------------------------------------------------
    @classmethod
    def from_document(cls, doc: Any, source: str = "<plan>") -> "DecisionTable":
        """Validate a plan document and precompute the table; `PlanError` lists every problem."""
        return _build_table(doc, source)

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "<plan>") -> "DecisionTable":
        """Parse JSON (or gzip-compressed JSON) and build the table."""
        if isinstance(data, bytes) and data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise PlanError(source, [Problem("", f"is not valid gzip ({exc})")]) from None
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise PlanError(source, [Problem("", f"is not valid JSON ({exc}); a plan document is a JSON object")]) from None
        return cls.from_document(doc, source)

    # -- state ----------------------------------------------------------------
    def stale(self, now_ts: float) -> bool:
        """True once `valid_until` has passed."""
        return now_ts >= self.valid_until_ts

    def age_s(self, now_ts: float) -> float:
        return now_ts - self.generated_at_ts

    # -- decisions ------------------------------------------------------------
    def target(self, workload: str | None, tenant: str | None, namespace: str = "default") -> Target | None:
        """Rows that apply to a pod: `workload` is its workload id and `tenant` its tenant
        annotation (None if absent), `namespace` its namespace; None: answer neutrally.

        A workload in the plan uses its own rows; a `tenant` annotation that
        differs from the plan's tenant of the workload adds that tenant's rules
        (the stricter outcome wins). A workload the plan does not know (a typo,
        or newer than the plan) gets None: the plan knows nothing of it, and a
        guess from its tenant could keep it Pending where the cluster would run
        it. A pod without a workload gets its tenant's rules, the tenant being
        the annotation or else the namespace (an unknown tenant may use no
        dedicated node and has no never_with partners).
        """
        if workload is not None:
            w = self.workload_index.get(workload)
            if w is None:
                return None
            m = int(self.workload_tenant[w])
            plan_tenant = self.tenant_ids[m]
            codes, scores = self.workload_codes[w], self.workload_scores[w]
            if tenant is not None and tenant != plan_tenant:
                extra = self.tenant_codes[self.tenant_index.get(tenant, len(self.tenant_ids) - 1)]
                codes = np.maximum(codes, extra)
                scores = np.where(codes >= Outcome.NOT_ALLOWED, 0, scores).astype(np.int8)
            return Target("plan", codes, scores, self.workload_wake[w], float(self.workload_usage[w]),
                          float(self.workload_cores[w]), workload, tenant or plan_tenant)
        tid = tenant if tenant is not None else namespace
        m = self.tenant_index.get(tid, len(self.tenant_ids) - 1)
        return Target("tenant", self.tenant_codes[m], self.tenant_scores[m], self.tenant_wake[m], 1.0, 0.0,
                      workload, tid)

    def _columns(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.fromiter(map(self.node_index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        return idx, idx >= 0

    def filter(self, target: Target, names: list[str], best: bool = False) -> FilterDecision:
        """Outcome per candidate node name (unknown nodes pass).

        With `best`, of the candidates that pass only those prioritize would
        score highest still pass; the others are OUTRANKED. kube-scheduler then
        needs no prioritize call: it could only add equal scores to the nodes left.
        """
        idx, known = self._columns(names)
        codes = np.zeros(len(names), dtype=np.int8)
        codes[known] = target.codes[idx[known]]
        reason = target.reason
        if codes.size and not (codes == Outcome.PASS).any() and (codes == Outcome.ASLEEP).any():
            codes[codes == Outcome.ASLEEP] = Outcome.PASS  # soft rule: wake a node rather than leave the pod pending
            reason = "wake"
        if best and codes.size:
            scores = self._ranked(target, idx, known)[0]
            passing = codes == Outcome.PASS
            if passing.any():
                codes[passing & (scores < scores[passing].max())] = Outcome.OUTRANKED
        return FilterDecision(codes, self.messages, reason, idx)

    #: How many of a target's best-scored nodes `best_in` looks for before deciding the full way.
    BEST_LOOKS = 16

    def best_in(self, target: Target, names_json: bytes) -> np.ndarray | None:
        """The columns `filter(target, names, best=True)` passes, in request order, found
        without reading the candidates one by one; None: decide the full way.

        `names_json` is the request's NodeNames array as sent, its elements plain JSON
        strings (`wire.split_node_names` checks that). The target's passing nodes of
        score > 0 are looked for in it (as their JSON strings), best score first. At the
        first score with a node present the answer is known: candidates the plan does not
        know score 0, every better node is absent, so the present nodes of that score are
        exactly the ones the filter keeps. A look is a substring search (a few
        microseconds), so when the plan's best nodes are candidates, as they are for a
        planned pod, the answer costs a few looks instead of a pass over 1,000 names.
        None when no node of score > 0 is among the first `BEST_LOOKS` looked for.
        """
        for cols, fragments in self._best_levels(target):
            found = [(at, col) for col, fragment in zip(cols, fragments) if (at := names_json.find(fragment)) >= 0]
            if found:
                found.sort()
                return np.fromiter((col for _, col in found), dtype=np.int64, count=len(found))
        return None

    def _best_levels(self, target: Target) -> list[tuple[list[int], list[bytes]]]:
        """(columns, JSON names) of the target's passing nodes per score > 0, best first, up
        to `BEST_LOOKS` nodes in all (whole scores only). Cached per target (the table
        never changes; the cache is bounded, as pods without a workload key it by tenant)."""
        key = (target.reason, target.workload, target.tenant)
        hit = self._best_levels_cache.get(key)
        if hit is not None:
            return hit
        passing = np.flatnonzero((target.codes == Outcome.PASS) & (target.scores > 0))
        scores = target.scores[passing]
        levels, looks = [], 0
        for score in sorted(set(scores.tolist()), reverse=True):
            cols = passing[scores == score].tolist()
            looks += len(cols)
            if looks > self.BEST_LOOKS:
                break
            # A name holding '"', ',' or '\\' cannot be found this way (its JSON differs or
            # spans elements): leave the whole decision to the full way.
            fragments = [self.encoded.names[c] for c in cols]
            if any(b"," in f or b"\\" in f or len(f) <= 2 for f in fragments):
                levels = []
                break
            levels.append((cols, fragments))
        if len(self._best_levels_cache) >= 4096:
            self._best_levels_cache.clear()
        self._best_levels_cache[key] = levels
        return levels

    def _messages(self) -> dict[int, str]:
        """Reason text per outcome, for the FailedNodes maps (fixed per plan, so the
        answers' JSON fragments can be built once; kube-scheduler's FailedScheduling
        event counts nodes per distinct text)."""
        return {
            Outcome.ASLEEP: f"edgeplace: the plan powers this node down in slot {self.slot} "
                            f"(plan valid until {_iso(self.valid_until)})",
            Outcome.NOT_ALLOWED: "edgeplace: not an allowed node for this pod (latency SLA, node selector or dedicated pool)",
            Outcome.NEVER_WITH: "edgeplace: node hosts a tenant that this pod's tenant must never share a node with",
        }

    def prioritize(self, target: Target, names: list[str], pod_cores: float | None) -> PrioritizeDecision:
        """Scores 0..10 per candidate, and the emissions-avoided estimate [gCO2e/h].

        The estimate is (mean score_g of the allowed powered candidates -
        mean score_g of the top-scored ones) x busy cores of the pod
        (requested cores x cpu_usage_fraction; the plan's request when the
        pod states none): what the extender's preference saves over a
        carbon-blind pick among the same nodes, if kube-scheduler follows it.
        """
        idx, known = self._columns(names)
        scores, ok, wake = self._ranked(target, idx, known)
        reason = "wake" if wake else target.reason
        avoided = 0.0
        cores = pod_cores if pod_cores else target.planned_cores
        if reason != "wake" and cores > 0 and ok.sum() >= 2:
            g = self.node_score_g[idx[ok]]
            s = scores[ok]
            avoided = float(g.mean() - g[s == s.max()].mean()) * cores * target.usage_fraction
        return PrioritizeDecision(scores.tolist(), reason, avoided, idx.tolist())

    @staticmethod
    def _ranked(target: Target, idx: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(score 0..10 per candidate, the known candidates that pass, whether the scores are
        wake scores): the plan's scores when some known candidate passes, else the asleep
        allowed ones ranked by the cost of waking them; unknown nodes score 0."""
        cols = idx[known]
        scores = np.zeros(len(idx), dtype=np.int8)
        ok = np.zeros(len(idx), dtype=bool)
        ok[known] = target.codes[cols] == Outcome.PASS
        if ok.any():
            scores[known] = target.scores[cols]
            return scores, ok, False
        asleep = np.zeros(len(idx), dtype=bool)
        asleep[known] = target.codes[cols] == Outcome.ASLEEP
        scores[asleep] = target.wake_scores[idx[asleep]]
        return scores, ok, bool(asleep.any())

    def preempt_keep(self, target: Target, names: list[str]) -> list[bool]:
        """Per candidate node of a preemption: False where evicting cannot help the pod
        (not allowed or a never_with conflict); asleep and unknown nodes are kept."""
        idx, known = self._columns(names)
        keep = np.ones(len(names), dtype=bool)
        keep[known] = target.codes[idx[known]] < Outcome.NOT_ALLOWED
        return keep.tolist()


# ---------------------------------------------------------------------------
# Validation and precomputation


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _time(doc: dict, key: str, problems: list[Problem]) -> datetime | None:
    value = doc.get(key)
    if not isinstance(value, str):
        problems.append(Problem(key, f"must be a UTC time such as 2026-06-21T10:00:00Z (got {_short(value)})"))
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        problems.append(Problem(key, f"is not an ISO 8601 time, e.g. 2026-06-21T10:00:00Z (got {_short(value)})"))
        return None
    if t.tzinfo is None:
        problems.append(Problem(key, f"needs a UTC offset, e.g. 2026-06-21T10:00:00Z (got {_short(value)})"))
        return None
    return t


def _counts(value: Any, path: str, node_index: dict[str, int], problems: list[Problem]) -> dict[int, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem(path, f"must be a mapping of node name to replica count (got {_short(value)})"))
        return {}
    out = {}
    for node, k in value.items():
        if node not in node_index:
            problems.append(Problem(f"{path}.{node}", "unknown node (not in `nodes`)"))
        elif not isinstance(k, int) or isinstance(k, bool) or k < 0:
            problems.append(Problem(f"{path}.{node}", f"must be a whole number >= 0 (got {_short(k)})"))
        else:
            out[node_index[node]] = k
    return out


def _scale_0_9(cost: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of `cost` (R x N) mapped to 0..9 over `mask` per row, lower cost higher score; 0 off the mask."""
    big = np.where(mask, cost, np.inf)
    lo = big.min(axis=1, keepdims=True)
    hi = np.where(mask, cost, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 1e-12, (hi - cost) / span, 1.0)
    return np.where(mask, np.floor(9.0 * scaled + 0.5), 0).astype(np.int8)


def _build_table(doc: Any, source: str) -> DecisionTable:
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise PlanError(source, [Problem("", f"a plan document is a JSON object (got {type(doc).__name__})")])
    if doc.get("version") != PLAN_VERSION:
        problems.append(Problem("version", f"must be {PLAN_VERSION} (got {_short(doc.get('version'))})"))
    if not isinstance(doc.get("cluster", ""), str):
        problems.append(Problem("cluster", f"must be the cluster's name (got {_short(doc.get('cluster'))})"))
    generated_at = _time(doc, "generated_at", problems)
    valid_until = _time(doc, "valid_until", problems)
    if generated_at and valid_until and valid_until <= generated_at:
        problems.append(Problem("valid_until", f"must be after generated_at ({doc['generated_at']})"))
    slot_doc = doc.get("slot")
    slot = slot_doc.get("index") if isinstance(slot_doc, dict) else None
    if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
        problems.append(Problem("slot.index", f"must be a slot number >= 0 (got {_short(slot)})"))
        slot = 0

    nodes = doc.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise PlanError(source, problems + [Problem("nodes", "must be a non-empty mapping of node name to node entry")])
    node_ids = list(nodes)
    node_index = {n: i for i, n in enumerate(node_ids)}
    N = len(node_ids)
    powered = np.zeros(N, dtype=bool)
    score_g = np.zeros(N)
    open_g = np.zeros(N)
    owner_name: list[str | None] = [None] * N
    present: list[list[str]] = [[] for _ in range(N)]
    for i, (nid, entry) in enumerate(nodes.items()):
        path = f"nodes.{nid}"
        if not isinstance(entry, dict):
            problems.append(Problem(path, "must be a mapping with powered, score_g, ..."))
            continue
        if not isinstance(entry.get("powered"), bool):
            problems.append(Problem(f"{path}.powered", f"must be true or false (got {_short(entry.get('powered'))})"))
        else:
            powered[i] = entry["powered"]
        g = entry.get("score_g")
        if not _number(g) or g < 0:
            problems.append(Problem(f"{path}.score_g", f"must be a finite number >= 0 [gCO2e per core-hour] (got {_short(g)})"))
        else:
            score_g[i] = g
        og = entry.get("open_g_per_h", 0.0)
        if not _number(og) or og < 0:
            problems.append(Problem(f"{path}.open_g_per_h", f"must be a finite number >= 0 [gCO2e/h] (got {_short(og)})"))
        else:
            open_g[i] = og
        owner = entry.get("dedicated_to")
        if owner is not None and not isinstance(owner, str):
            problems.append(Problem(f"{path}.dedicated_to", f"must be a tenant name or null (got {_short(owner)})"))
        else:
            owner_name[i] = owner
        tenants = entry.get("tenants", [])
        if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
            problems.append(Problem(f"{path}.tenants", f"must be a list of tenant names (got {_short(tenants)})"))
        else:
            present[i] = tenants

    tenants_doc = doc.get("tenants", {})
    if not isinstance(tenants_doc, dict):
        problems.append(Problem("tenants", f"must be a mapping of tenant name to {{never_with, dedicated}} (got {_short(tenants_doc)})"))
        tenants_doc = {}
    workloads = doc.get("workloads")
    if not isinstance(workloads, dict):
        problems.append(Problem("workloads", f"must be a mapping of workload id to workload entry (got {_short(workloads)})"))
        workloads = {}
    # Tenants: every name the document uses, in first-seen order (tenants section first).
    t_index: dict[str, int] = {}

    def tenant_of(name: str) -> int:
        return t_index.setdefault(name, len(t_index))

    for tid in tenants_doc:
        tenant_of(tid)
    never_pairs: list[tuple[str, str]] = []
    dedicated_tenants: set[str] = set()
    for tid, entry in tenants_doc.items():
        path = f"tenants.{tid}"
        if not isinstance(entry, dict):
            problems.append(Problem(path, "must be a mapping with never_with (list) and dedicated (bool)"))
            continue
        nw = entry.get("never_with", [])
        if not isinstance(nw, list) or not all(isinstance(t, str) for t in nw):
            problems.append(Problem(f"{path}.never_with", f"must be a list of tenant names (got {_short(nw)})"))
        else:
            never_pairs += [(tid, o) for o in nw if o != tid]
        ded = entry.get("dedicated", False)
        if not isinstance(ded, bool):
            problems.append(Problem(f"{path}.dedicated", f"must be true or false (got {_short(ded)})"))
        elif ded:
            dedicated_tenants.add(tid)

    node_sets_doc = doc.get("node_sets", {})
    set_rows: dict[str, np.ndarray] = {}
    if not isinstance(node_sets_doc, dict):
        problems.append(Problem("node_sets", f"must be a mapping of set name to a list of node names (got {_short(node_sets_doc)})"))
        node_sets_doc = {}
    for name, members in node_sets_doc.items():
        set_rows[name] = _node_row(members, f"node_sets.{name}", node_index, N, problems)

    W = len(workloads)
    workload_ids = list(workloads)
    workload_tenant = np.zeros(W, dtype=np.int64)
    allowed = np.zeros((W, N), dtype=bool)
    planned = np.zeros((W, N), dtype=np.int64)
    running = np.zeros((W, N), dtype=np.int64)
    usage = np.ones(W)
    cores = np.zeros(W)
    for w, (wid, entry) in enumerate(workloads.items()):
        path = f"workloads.{wid}"
        if not isinstance(entry, dict):
            problems.append(Problem(path, "must be a mapping with tenant, allowed_nodes, planned_nodes"))
            continue
        tid = entry.get("tenant")
        if not isinstance(tid, str):
            problems.append(Problem(f"{path}.tenant", f"must be a tenant name (got {_short(tid)})"))
        else:
            workload_tenant[w] = tenant_of(tid)
        ref = entry.get("allowed_nodes")
        if isinstance(ref, str):
            if ref not in set_rows:
                problems.append(Problem(f"{path}.allowed_nodes", f"names node set {ref!r}, which is not in `node_sets`"))
            else:
                allowed[w] = set_rows[ref]
        else:
            allowed[w] = _node_row(ref, f"{path}.allowed_nodes", node_index, N, problems)
        for key, out in (("planned_nodes", planned), ("running_nodes", running)):
            for n, k in _counts(entry.get(key), f"{path}.{key}", node_index, problems).items():
                out[w, n] = k
        mc = entry.get("cpu_millicores", 0.0)
        if not _number(mc) or mc < 0:
            problems.append(Problem(f"{path}.cpu_millicores", f"must be a finite number >= 0 (got {_short(mc)})"))
        else:
            cores[w] = mc / 1000.0
        uf = entry.get("cpu_usage_fraction", 1.0)
        if not _number(uf) or not 0 <= uf <= 1:
            problems.append(Problem(f"{path}.cpu_usage_fraction", f"must be a number in 0..1 (got {_short(uf)})"))
        else:
            usage[w] = uf
    if problems:
        raise PlanError(source, problems)

    for i in range(N):
        if owner_name[i] is not None:
            tenant_of(owner_name[i])
        for t in present[i]:
            tenant_of(t)
    for a, b in never_pairs:
        tenant_of(a), tenant_of(b)
    for t in dedicated_tenants:
        tenant_of(t)
    tenant_ids = list(t_index)
    M = len(tenant_ids)
    conflicts = np.zeros((M + 1, M + 1), dtype=bool)  # row/column M: the unknown tenant
    for a, b in never_pairs:
        conflicts[t_index[a], t_index[b]] = conflicts[t_index[b], t_index[a]] = True
    on_node = np.zeros((N, M + 1), dtype=bool)
    for i in range(N):
        for t in present[i]:
            on_node[i, t_index[t]] = True
    blocked = (conflicts.astype(np.int32) @ on_node.T.astype(np.int32)) > 0  # (M+1) x N
    owner = np.array([t_index[o] if o is not None else -1 for o in owner_name], dtype=np.int64)
    dedicated = np.zeros(M + 1, dtype=bool)
    for t in dedicated_tenants:
        dedicated[t_index[t]] = True
    tenant_rows = np.arange(M + 1)
    # Dedicated pools, both ways: a dedicated node hosts only its owner; a dedicated tenant only its own nodes.
    tenant_allowed = (owner[None, :] < 0) | (owner[None, :] == tenant_rows[:, None])
    tenant_allowed[dedicated] &= owner[None, :] == tenant_rows[dedicated, None]

    def outcomes(allowed_rows: np.ndarray, blocked_rows: np.ndarray) -> np.ndarray:
        codes = np.where(powered[None, :], Outcome.PASS, Outcome.ASLEEP).astype(np.int8).repeat(len(allowed_rows), 0)
        codes[~allowed_rows] = Outcome.NOT_ALLOWED
        codes[blocked_rows & allowed_rows] = Outcome.NEVER_WITH
        return codes

    w_codes = outcomes(allowed, blocked[workload_tenant])
    t_codes = outcomes(tenant_allowed, blocked)
    ok_w = w_codes == Outcome.PASS
    w_scores = _scale_0_9(np.broadcast_to(score_g, (W, N)), ok_w)
    spare = planned > running
    w_scores[spare & ok_w] = MAX_EXTENDER_PRIORITY
    busy = (cores * usage)[:, None]
    w_wake = _scale_0_9(open_g[None, :] + busy * score_g[None, :], w_codes == Outcome.ASLEEP)
    t_scores = _scale_0_9(np.broadcast_to(score_g, (M + 1, N)), t_codes == Outcome.PASS)
    t_wake = _scale_0_9(open_g[None, :] + score_g[None, :], t_codes == Outcome.ASLEEP)

    meta = {"version": doc["version"], "scenario": str(doc.get("scenario", "")), "cluster": doc.get("cluster"),
            "generated_at": generated_at,
            "valid_until": valid_until, "slot": slot}
    return DecisionTable(meta, node_ids, powered, score_g, workload_ids, workload_tenant, w_codes, w_scores, w_wake,
                         usage, cores, tenant_ids + ["(unknown)"], t_codes, t_scores, t_wake)


def _node_row(members: Any, path: str, node_index: dict[str, int], N: int, problems: list[Problem]) -> np.ndarray:
    row = np.zeros(N, dtype=bool)
    if not isinstance(members, list):
        problems.append(Problem(path, f"must be a list of node names or the name of a node set (got {_short(members)})"))
        return row
    for k, n in enumerate(members):
        i = node_index.get(n) if isinstance(n, str) else None
        if i is None:
            problems.append(Problem(f"{path}[{k}]", f"unknown node {_short(n)} (not in `nodes`)"))
            if len(problems) > 200:
                break
        else:
            row[i] = True
    return row


# ---------------------------------------------------------------------------
# Where tables come from


@dataclass(frozen=True)
class PlanData:
    """The bytes of a plan document (JSON or gzip) as a source delivered them, and where from."""

    data: bytes
    source: str


class PlanMissing(FileNotFoundError):
    """The source holds no plan (file or ConfigMap absent, or its key empty): nothing to load yet."""


class TableSource(Protocol):
    """Where the server gets its plans from.

    `fetch_if_changed()` is called from a worker thread every
    `poll_interval_s` seconds: it returns the document's bytes when the
    source changed since the last call, None when it did not, raises
    `PlanMissing` while there is no plan and `OSError` when the source cannot
    be read. The server builds the table itself (in its helper process) and
    keeps the one it has in every other case.
    """

    poll_interval_s: float

    def fetch_if_changed(self) -> PlanData | None: ...


class PlanFile:
    """A plan document on disk (JSON, or gzip-compressed JSON), read again when it changes.

    A change is a different (mtime, size, inode) of the file after following
    symlinks, which also catches a ConfigMap volume's atomic `..data` swap. A
    missing file raises `PlanMissing` on every poll (the server logs it once).
    """

    def __init__(self, path: str | os.PathLike, poll_interval_s: float = 2.0):
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0 (got {poll_interval_s})")
        self.path = Path(path)
        self.poll_interval_s = float(poll_interval_s)
        self._seen: tuple[int, int, int] | None = None

    def fetch_if_changed(self) -> PlanData | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = None
            raise PlanMissing(f"plan file {self.path} does not exist") from None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == self._seen:
            return None
        self._seen = key
        return PlanData(self.path.read_bytes(), str(self.path))


def write_plan_document(doc: dict[str, Any], path: str | os.PathLike, compress: bool | None = None) -> None:
    """Write a plan document atomically (temporary file in the same folder, then rename).

    `compress` defaults to True for a path ending in `.gz`.
    """
    path = Path(path)
    data = json.dumps(doc, separators=(",", ":")).encode()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
