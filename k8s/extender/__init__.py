"""The kube-scheduler extender: serves a published plan to kube-scheduler over HTTP(S).

A planner publishes a plan document (`build_plan_document`, written with
`write_plan_document` to a file or a ConfigMap); the extender loads it into a
`DecisionTable` and answers the extender v1 verbs (filter, prioritize,
preempt) from it in well under a millisecond per call, failing open
(every node passes, neutral scores) when it has no plan, an expired one or
an internal error. Plain JSON over HTTP: no Kubernetes client is needed here.

    from edgeplace.k8s.extender import ExtenderServer, PlanFile
    server = ExtenderServer(PlanFile("/etc/edgeplace/plan.json"), host="0.0.0.0", port=8888).start()
    ...
    server.stop()

Modules: `table` (the plan document and the decisions), `wire` (the extender
v1 JSON), `server` (the HTTP service and `python -m edgeplace.k8s.extender.server`),
`metrics` (Prometheus). docs/EXTENDER.md has the wire format, the rules, the
KubeSchedulerConfiguration stanza and the measured figures.
"""

from edgeplace.k8s.extender.table import (PLAN_VERSION, DecisionTable, Outcome, PlanError, PlanFile, TableSource,
                                          build_plan_document, marginal_g_per_core_h, write_plan_document)
from edgeplace.k8s.extender.wire import WireError
from edgeplace.k8s.identity import TENANT_ANNOTATION, WORKLOAD_ANNOTATION

_SERVER_NAMES = ("ExtenderServer", "freeze_heap", "load_token", "make_ssl_context")


def __getattr__(name: str):
    # The server is imported on first use, so that `python -m edgeplace.k8s.extender.server`
    # runs the module once (importing it here would load it twice).
    if name in _SERVER_NAMES:
        from edgeplace.k8s.extender import server

        return getattr(server, name)
    raise AttributeError(f"module 'edgeplace.k8s.extender' has no attribute {name!r}")

__all__ = [
    "PLAN_VERSION",
    "TENANT_ANNOTATION",
    "WORKLOAD_ANNOTATION",
    "DecisionTable",
    "ExtenderServer",
    "Outcome",
    "PlanError",
    "PlanFile",
    "TableSource",
    "WireError",
    "build_plan_document",
    "freeze_heap",
    "load_token",
    "make_ssl_context",
    "marginal_g_per_core_h",
    "write_plan_document",
]
