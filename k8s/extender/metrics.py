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
edgeplace_extender_plan_loads_total                             counter    result: ok, error (unusable or
                                                                           unreadable), refused (another
                                                                           cluster, or dated in the future)
edgeplace_extender_emissions_avoided_estimate_g_per_hour        gauge      running sum over prioritize calls of
                                                                           (mean score_g of the candidates -
                                                                           score_g of the top-scored ones) x busy
                                                                           pod cores [gCO2e/h]; an estimate
edgeplace_extender_connections                                  gauge      open client connections
edgeplace_extender_connections_closed_total                     counter    reason (`CLOSE_REASONS`): connections
                                                                           the server refused or closed
edgeplace_extender_offloaded_requests_total                     counter    requests whose body was parsed in the
                                                                           helper process (over offload_bytes)
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
    "plan",              # a workload of the plan: its rows
    "tenant",            # tenant rules only (a pod with no workload, by its tenant annotation or namespace)
    "wake",              # only asleep nodes were usable: they passed / were ranked by wake cost
    "unknown_workload",  # a workload the plan does not know (a typo, or newer than the plan): neutral
    "daemonset",         # a DaemonSet's pod (pinned to its node): neutral
    "system",            # a system namespace or system priority class: neutral
    "unannotated",       # no workload found and no tenant annotation: neutral
    "no_plan",           # fail open: no table loaded
    "stale_plan",        # fail open: table past valid_until
    "internal_error",    # fail open: the decision raised
)
PLAN_LOAD_RESULTS = ("ok", "error", "refused")
#: Why connections were closed by the server (other than a client's own close or a framing error).
CLOSE_REASONS = (
    "refused",                # at the cap, and the client's address holds its fair share
    "evicted",                # closed to admit a client address below its fair share
    "first_request_timeout",  # no byte within first_request_timeout_s
    "idle_timeout",           # keep-alive idle longer than idle_timeout_s
)
#: Latency buckets [s]: the target is a few milliseconds per call.
LATENCY_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ExtenderMetrics:
    """The extender's metrics in their own registry.

    `plan_age_s`, `plan_stale` and `open_connections` are callbacks evaluated
    at scrape time (the server passes functions of its current state).
    """

    def __init__(self, plan_age_s: Callable[[], float], plan_stale: Callable[[], bool],
                 open_connections: Callable[[], int] = lambda: 0, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._requests = Counter("edgeplace_extender_requests", "HTTP requests answered, by verb and status code",
                                 ["verb", "code"], registry=r)
        self._latency = Histogram("edgeplace_extender_request_duration_seconds",
                                  "Time to handle a request, from the parsed body to the response written [s]",
                                  ["verb"], buckets=LATENCY_BUCKETS_S, registry=r)
        self._decisions = Counter("edgeplace_extender_decisions", "Verb calls by how they were decided (reason)",
                                  ["verb", "reason"], registry=r)
        self._loads = Counter("edgeplace_extender_plan_loads", "Plan document loads by result (ok, error, refused)",
                              ["result"], registry=r)
        conns = Gauge("edgeplace_extender_connections", "Open client connections", registry=r)
        conns.set_function(open_connections)
        self._closed = Counter("edgeplace_extender_connections_closed",
                               "Connections the server refused or closed, by reason", ["reason"], registry=r)
        self._offloaded = Counter("edgeplace_extender_offloaded_requests",
                                  "Requests whose body was parsed in the helper process", registry=r)
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
        for result in PLAN_LOAD_RESULTS:
            self._loads.labels(result)
        for reason in CLOSE_REASONS:
            self._closed.labels(reason)

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

    def plan_load(self, result: str) -> None:
        self._child(self._loads, result).inc()

    def connection_closed(self, reason: str) -> None:
        self._child(self._closed, reason).inc()

    def offloaded(self) -> None:
        self._offloaded.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
