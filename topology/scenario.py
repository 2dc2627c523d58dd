"""The validated world model as plain arrays.

`Scenario` is what every other package reads: policies price it, solvers
optimise over it, the evaluation measures placements against it. It is built
once by `edgeplace.topology.load` from a `ScenarioSpec` and never changed; its arrays
are indexed by position (node i, site s, workload w, replica r, slot t) with
`*_ids` lists mapping positions back to the ids in the file.

Shapes (N nodes, S sites, G grid regions, U user locations, M tenants,
W workloads, R replicas, T slots, K resources):

=============================  =========  =======================================
array                          shape      meaning [unit]
=============================  =========  =======================================
node_site                      N          site index of each node
node_capacity                  N x K      allocatable per resource
node_power_curve_w             N x 11     power at 0, 10, ..., 100 % CPU [W]
node_can_power_down            N          False = always on
node_dedicated_tenant          N          tenant index, -1 = shared
node_embodied_g_per_h          N          amortised embodied carbon [gCO2e/h]
node_owned                     N          owned (embodied spent on or off) or rented by the hour
node_background_util           N x T      CPU utilisation from outside [0..1]
node_label_sets                N          frozenset of (key, value) labels, with hostname,
                                          zone (the site) and region filled in
site_region                    S          grid region index of each site
site_pue                       S          facility / IT power
site_renewable_kw              S x T      on-site renewable supply [kW]
site_battery_kwh               S          battery capacity [kWh]
site_renewable_share           S          grid energy covered by certificates / green tariff [0..1]
site_contracted_kw             S x T      hourly matched contracted supply (PPA), actual [kW]
site_contracted_forecast_kw    S x T      the same as planning sees it [kW]
region_intensity_g_per_kwh     G x T      grid carbon intensity, actual [gCO2e/kWh]
region_residual_g_per_kwh      G          residual-mix factor, NaN = none given [gCO2e/kWh]
region_intensity_forecast_...  G x T      the same as planning sees it (forecast)
site_renewable_forecast_kw     S x T      renewable supply as planning sees it [kW]
user_site_latency_ms           U x S      one-way user-to-site latency [ms]
workload_tenant                W          tenant index
workload_replicas              W          replica count
workload_requests              W x K      requests of one replica
workload_cpu_usage             W          used share of the CPU request
workload_sla_ms                W          latency bound, inf = none
workload_site_latency_ms       W x S      worst latency to the users served [ms]
workload_min_sites             W          spread: distinct sites, 1 = none
workload_earliest_slot         W          first slot it may run in
workload_latest_start_slot     W          last slot it may start in
workload_duration_slots        W          slots it runs for
workload_deferrable            W          start slot is a decision
workload_interruptible         W          deferrable, may pause and resume at slot boundaries
workload_min_run_slots         W          interruptible: slots each run lasts at least (1 = any)
workload_nominal_slot          W          deferrable: start slot without time-shifting
workload_run_done_slots        W          interruptible, running now: slots of its current run done (0: not running)
replica_workload               R          workload index of each replica
workload_first_replica         W          index of replica 0 of each workload
tenant_dedicated               M          tenant runs only on its own nodes
tenant_conflicts               M x M      pairs never co-located
tenant_quota                   M x K      summed-request bound, inf = none
constraints                    -          Kubernetes scheduling constraints, compiled
                                          (`edgeplace.topology.constraints`)
=============================  =========  =======================================

A non-deferrable workload runs in every slot: earliest 0, duration T. A
deferrable job runs `duration` slots inside [earliest, latest_start +
duration): one block for a plain job, any `duration` slots whose runs each
last at least `min_run` slots for an interruptible one.

Actual and forecast signals are kept apart: `edgeplace.policies.evaluate` measures a
placement against the actual series (what happened), the cost model prices
with the forecast series (what a planner could know). Without forecast
signals in the file the two are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np

from edgeplace.topology.constraints import Constraints
from edgeplace.topology.spec import ScenarioSpec

CPU = 0  # resource index of cpu_millicores
MEMORY = 1  # resource index of memory_mib


@dataclass(frozen=True, eq=False)
class Scenario:
    spec: ScenarioSpec
    source: str
    resources: list[str]
    node_ids: list[str]
    site_ids: list[str]
    region_ids: list[str]
    user_ids: list[str]
    tenant_ids: list[str]
    workload_ids: list[str]
    intensity_kind: str
    factor_type: str | None  # direct | lifecycle | None (not stated), one for every region
    slot_start: datetime
    slot_hours: float

    node_site: np.ndarray
    node_capacity: np.ndarray
    node_power_curve_w: np.ndarray
    node_can_power_down: np.ndarray
    node_dedicated_tenant: np.ndarray
    node_embodied_g_per_h: np.ndarray
    node_owned: np.ndarray
    node_background_util: np.ndarray
    node_label_sets: list[frozenset]

    site_region: np.ndarray
    site_pue: np.ndarray
    site_renewable_kw: np.ndarray
    site_battery_kwh: np.ndarray
    site_renewable_share: np.ndarray
    site_contracted_kw: np.ndarray
    site_contracted_forecast_kw: np.ndarray
    region_intensity_g_per_kwh: np.ndarray
    region_residual_g_per_kwh: np.ndarray
    user_site_latency_ms: np.ndarray
    region_intensity_forecast_g_per_kwh: np.ndarray
    site_renewable_forecast_kw: np.ndarray

    workload_tenant: np.ndarray
    workload_replicas: np.ndarray
    workload_requests: np.ndarray
    workload_cpu_usage: np.ndarray
    workload_sla_ms: np.ndarray
    workload_site_latency_ms: np.ndarray
    workload_min_sites: np.ndarray
    workload_earliest_slot: np.ndarray
    workload_latest_start_slot: np.ndarray
    workload_duration_slots: np.ndarray
    workload_deferrable: np.ndarray
    workload_selector: list[frozenset]
    workload_current: list[list[int] | None]
    workload_interruptible: np.ndarray
    workload_min_run_slots: np.ndarray
    workload_nominal_slot: np.ndarray
    workload_run_done_slots: np.ndarray

    tenant_dedicated: np.ndarray
    tenant_conflicts: np.ndarray
    tenant_quota: np.ndarray

    constraints: Constraints = field(default_factory=Constraints)

    _index: dict = field(default_factory=dict, repr=False)

    # -- sizes -------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_sites(self) -> int:
        return len(self.site_ids)

    @property
    def n_slots(self) -> int:
        return int(self.node_background_util.shape[1])

    @property
    def n_workloads(self) -> int:
        return len(self.workload_ids)

    @cached_property
    def replica_workload(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_workloads, dtype=np.int64), self.workload_replicas)

    @cached_property
    def workload_first_replica(self) -> np.ndarray:
        first = np.zeros(self.n_workloads, dtype=np.int64)
        np.cumsum(self.workload_replicas[:-1], out=first[1:])
        return first

    @property
    def n_replicas(self) -> int:
        return int(self.workload_replicas.sum())

    def slot_time(self, t: int) -> datetime:
        """Start of slot `t` (UTC)."""
        return self.slot_start + timedelta(hours=self.slot_hours * t)

    # -- the series a planner sees ----------------------------------------------
    @cached_property
    def forecast_is_actual(self) -> bool:
        """The forecast series equal the actual ones (a scenario without forecasts)."""
        return (np.array_equal(self.region_intensity_forecast_g_per_kwh, self.region_intensity_g_per_kwh)
                and np.array_equal(self.site_renewable_forecast_kw, self.site_renewable_kw)
                and np.array_equal(self.site_contracted_forecast_kw, self.site_contracted_kw))

    def as_forecast(self) -> "Scenario":
        """The scenario as a planner sees it: the forecast series in place of the actual
        ones (background utilisation is taken as known). Evaluating a placement on it
        gives its planned figures; the scenario itself when there is no forecast."""
        if self.forecast_is_actual:
            return self
        return replace(self, region_intensity_g_per_kwh=self.region_intensity_forecast_g_per_kwh,
                       site_renewable_kw=self.site_renewable_forecast_kw,
                       site_contracted_kw=self.site_contracted_forecast_kw, _index={})

    # -- id lookups ----------------------------------------------------------
    def index_of(self, kind: str, ident: str) -> int:
        """Position of `ident` in `<kind>_ids` (kind: node, site, region, user, tenant, workload)."""
        table = self._index.get(kind)
        if table is None:
            table = {x: i for i, x in enumerate(getattr(self, f"{kind}_ids"))}
            self._index[kind] = table
        return table[ident]

    # -- derived tables (computed once, on first use) --------------------------
    @cached_property
    def node_region(self) -> np.ndarray:
        return self.site_region[self.node_site]

    @cached_property
    def node_pue(self) -> np.ndarray:
        return self.site_pue[self.node_site]

    @property
    def workload_window_end(self) -> np.ndarray:
        """W: one past the last slot a workload may run in (deferrable: latest start + duration)."""
        return self.workload_latest_start_slot + self.workload_duration_slots

    @cached_property
    def workload_active(self) -> np.ndarray:
        """W x T: True where a non-deferrable workload must run (deferrable rows are all False)."""
        t = np.arange(self.n_slots)
        start = self.workload_earliest_slot[:, None]
        active = (t[None, :] >= start) & (t[None, :] < start + self.workload_duration_slots[:, None])
        active[self.workload_deferrable] = False
        return active

    @cached_property
    def workload_node_sla_ok(self) -> np.ndarray:
        """W x N: the node's site meets the workload's latency SLA."""
        lat = self.workload_site_latency_ms[:, self.node_site]
        return lat <= self.workload_sla_ms[:, None] + 1e-9

    @cached_property
    def workload_node_allowed(self) -> np.ndarray:
        """W x N: the node may host the workload, latency aside.

        Rules: node selector, dedicated pools (both ways), one replica
        fitting the node's capacity at all, and the static Kubernetes rules of
        `constraints` (required node affinity, taints, the topology labels
        pod affinity and DoNotSchedule spread need). The Kubernetes-like
        baselines use this (they know nothing of SLAs);
        `workload_node_eligible` adds the SLA.
        """
        ok = (self.workload_requests[:, None, :] <= self.node_capacity[None, :, :]).all(axis=2)
        tenant = self.workload_tenant
        owner = self.node_dedicated_tenant
        # A dedicated node hosts only its owner; a dedicated tenant only its own nodes.
        ok &= (owner[None, :] < 0) | (owner[None, :] == tenant[:, None])
        dedicated = self.tenant_dedicated[tenant]
        ok[dedicated] &= owner[None, :] == tenant[dedicated, None]
        by_selector: dict[frozenset, list[int]] = {}
        for w, selector in enumerate(self.workload_selector):
            if selector:
                by_selector.setdefault(selector, []).append(w)
        for selector, rows in by_selector.items():
            match = np.fromiter((selector <= labels for labels in self.node_label_sets), bool, self.n_nodes)
            ok[rows] &= match[None, :]
        for rule in self.constraints.masks:
            ok[rule.rows] &= rule.mask
        return ok

    @cached_property
    def workload_node_eligible(self) -> np.ndarray:
        """W x N: the node may host the workload under every static rule:
        `workload_node_allowed` and the latency SLA. Co-location (never_with)
        and summed capacity depend on the placement and are not in here."""
        return self.workload_node_allowed & self.workload_node_sla_ok
