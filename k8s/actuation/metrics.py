"""Prometheus metrics of the planner and of actuation (one registry per planner, no global state).

==================================================  =========  ===================================================
metric                                              type       labels / meaning
==================================================  =========  ===================================================
edgeplace_planner_rounds_total                      counter    outcome: planner rounds (published, unchanged, ...)
edgeplace_plan_emissions_grams                      gauge      evaluated emissions of the published plan over its
                                                               horizon, operational + embodied [gCO2e]
edgeplace_plan_operational_emissions_grams          gauge      the operational part [gCO2e]
edgeplace_plan_energy_kwh                           gauge      facility energy of the plan over its horizon [kWh]
edgeplace_plan_gap_ratio                            gauge      proven gap of the plan to its lower bound (0..1);
                                                               NaN when no bound is known
edgeplace_plan_solve_duration_seconds               histogram  time of the solve in a round [s]
edgeplace_plan_nodes_asleep                         gauge      nodes the published plan powers down now
edgeplace_rebalance_decisions_total                 counter    decision: what the rebalancer decided per candidate
                                                               move (evict, skip_saving, skip_budget, skip_pdb,
                                                               skip_protected, skip_hysteresis)
edgeplace_evictions_total                           counter    result: evicted, dry_run, pdb_blocked, not_found,
                                                               error
edgeplace_node_power_state                          gauge      node, state: 1 for the node's current state
edgeplace_node_power_transitions_total              counter    driver, action (power_on, power_off), result
                                                               (ok, error, timeout)
edgeplace_node_wake_duration_seconds                histogram  power-on request to node Ready [s]
==================================================  =========  ===================================================
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgeplace.k8s.actuation.objects import PowerState

SOLVE_BUCKETS_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
WAKE_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)


class PlannerMetrics:
    """The planner's metrics in their own registry; `render()` is the text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self._rounds = Counter("edgeplace_planner_rounds", "Planner rounds, by outcome", ["outcome"], registry=r)
        self._emissions = Gauge("edgeplace_plan_emissions_grams",
                                "Evaluated emissions of the published plan over its horizon (operational + embodied) [gCO2e]",
                                registry=r)
        self._operational = Gauge("edgeplace_plan_operational_emissions_grams",
                                  "Evaluated operational emissions of the published plan over its horizon [gCO2e]", registry=r)
        self._energy = Gauge("edgeplace_plan_energy_kwh", "Facility energy of the published plan over its horizon [kWh]",
                             registry=r)
        self._gap = Gauge("edgeplace_plan_gap_ratio", "Proven gap of the published plan to its lower bound (NaN: unknown)",
                          registry=r)
        self._gap.set(math.nan)
        self._solve = Histogram("edgeplace_plan_solve_duration_seconds", "Solve time of a planner round [s]",
                                buckets=SOLVE_BUCKETS_S, registry=r)
        self._asleep = Gauge("edgeplace_plan_nodes_asleep", "Nodes the published plan powers down in the current slot",
                             registry=r)
        self._decisions = Counter("edgeplace_rebalance_decisions", "Rebalancer decisions per candidate move",
                                  ["decision"], registry=r)
        self._evictions = Counter("edgeplace_evictions", "Evictions requested by edgeplace, by result", ["result"],
                                  registry=r)
        self._state = Gauge("edgeplace_node_power_state", "1 for each node's current power state", ["node", "state"],
                            registry=r)
        self._transitions = Counter("edgeplace_node_power_transitions", "Driver calls of the power lifecycle",
                                    ["driver", "action", "result"], registry=r)
        self._wake = Histogram("edgeplace_node_wake_duration_seconds", "Power-on request to node Ready [s]",
                               buckets=WAKE_BUCKETS_S, registry=r)

    def round(self, outcome: str) -> None:
        self._rounds.labels(outcome).inc()

    def plan(self, plan: Any, nodes_asleep: int) -> None:
        """A published plan (`edgeplace.optimizer.solve.Plan`): figures from its evaluation."""
        totals = plan.evaluation.totals
        self._emissions.set(totals["emissions_g"])
        self._operational.set(totals["operational_emissions_g"])
        self._energy.set(totals["energy_kwh"])
        self._gap.set(math.nan if plan.gap is None else float(plan.gap))
        self._solve.observe(plan.solve_seconds)
        self._asleep.set(nodes_asleep)

    def decision(self, decision: str) -> None:
        self._decisions.labels(decision).inc()

    def eviction(self, result: str) -> None:
        self._evictions.labels(result).inc()

    def node_state(self, node: str, state: PowerState) -> None:
        for s in PowerState:
            self._state.labels(node, s.value).set(1.0 if s is state else 0.0)

    def forget_node(self, node: str) -> None:
        for s in PowerState:
            try:
                self._state.remove(node, s.value)
            except KeyError:
                pass

    def transition(self, driver: str, action: str, result: str) -> None:
        self._transitions.labels(driver, action, result).inc()

    def woke(self, seconds: float) -> None:
        self._wake.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (for tests and the CLI)."""
        return self.registry.get_sample_value(name, labels or {})
