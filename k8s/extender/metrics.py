"""Prometheus metrics of the extender (one registry per server, no global state).

==============================================================  =========  ==========================================
metric                                                          type       labels / meaning
==============================================================  =========  ==========================================
edgeplace_extender_requests_total                               counter    verb, code: HTTP requests answered
edgeplace_extender_request_duration_seconds                     histogram  verb: time to handle a request [s]
                                                                           (parsed body to response written)
edgeplace_extender_decisions_total                              counter    verb, reason: how each verb call was
                                                                           decided (`REASONS`)
edgeplace_extender_plan_age_seconds                             gauge      now - generated_at of the table [s];
                                                                           -1 without a table
edgeplace_extender_plan_stale                                   gauge      1 when there is no table or it is past
                                                                           valid_until (answers are neutral)
edgeplace_extender_plan_loads_total                             counter    result (ok, error): plan reloads
edgeplace_extender_emissions_avoided_estimate_g_per_hour        gauge      running sum over prioritize calls of
                                                                           (mean score_g of the candidates -
                                                                           score_g of the top-scored ones) x busy
                                                                           pod cores [gCO2e/h]; an estimate
==============================================================  =========  ==========================================

The emissions figure is a gauge, not a counter, because one term can be
negative (the plan may prefer a node that is marginally dirtier now because
it keeps another node asleep). It assumes kube-scheduler takes the
extender's top node and that pods keep running; read it as an order of size.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Why a verb call was answered as it was.
REASONS = (
    "plan",            # a known workload: the plan's rows
    "tenant",          # tenant rules only (workload not in the plan, or no workload annotation)
    "wake",            # only asleep nodes were usable: they passed / were ranked by wake cost
    "unannotated",     # no edgeplace annotations: neutral answer
    "no_plan",         # fail open: no table loaded
    "stale_plan",      # fail open: table past valid_until
    "internal_error",  # fail open: the decision raised
)
#: Latency buckets [s]: the target is a few milliseconds per call.
LATENCY_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ExtenderMetrics:
    """The extender's metrics in their own registry.

    `plan_age_s` and `plan_stale` are callbacks evaluated at scrape time
    (the server passes functions of its current table).
    """

    def __init__(self, plan_age_s: Callable[[], float], plan_stale: Callable[[], bool],
                 registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._requests = Counter("edgeplace_extender_requests", "HTTP requests answered, by verb and status code",
                                 ["verb", "code"], registry=r)
        self._latency = Histogram("edgeplace_extender_request_duration_seconds",
                                  "Time to handle a request, from the parsed body to the response written [s]",
                                  ["verb"], buckets=LATENCY_BUCKETS_S, registry=r)
        self._decisions = Counter("edgeplace_extender_decisions", "Verb calls by how they were decided (reason)",
                                  ["verb", "reason"], registry=r)
        self._loads = Counter("edgeplace_extender_plan_loads", "Plan document loads by result (ok, error)",
                              ["result"], registry=r)
        age = Gauge("edgeplace_extender_plan_age_seconds",
                    "Seconds since the loaded plan was generated; -1 without a plan", registry=r)
        age.set_function(plan_age_s)
        stale = Gauge("edgeplace_extender_plan_stale",
                      "1 when no plan is loaded or it is past valid_until (the extender answers neutrally)", registry=r)
        stale.set_function(lambda: 1.0 if plan_stale() else 0.0)
        self._avoided = Gauge("edgeplace_extender_emissions_avoided_estimate_g_per_hour",
                              "Estimate: running sum over prioritize calls of (mean marginal gCO2e/core-h of the "
                              "candidates - that of the top-scored nodes) x busy pod cores [gCO2e/h]", registry=r)
        self._children: dict[tuple, object] = {}
        for verb in ("filter", "prioritize", "preempt"):
            for reason in REASONS:
                self._decisions.labels(verb, reason)
        for result in ("ok", "error"):
            self._loads.labels(result)

    def _child(self, metric, *labels):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, verb: str, code: int, seconds: float) -> None:
        self._child(self._requests, verb, str(code)).inc()
        self._child(self._latency, verb).observe(seconds)

    def decision(self, verb: str, reason: str) -> None:
        self._child(self._decisions, verb, reason).inc()

    def avoided(self, g_per_h: float) -> None:
        if g_per_h:
            self._avoided.inc(g_per_h)

    def plan_load(self, ok: bool) -> None:
        self._child(self._loads, "ok" if ok else "error").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
