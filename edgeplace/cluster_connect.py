"""Connecting to a cluster from the command line: the flags, the client, and API failures as input errors.

Shared by the cluster commands (`edgeplace.cluster_cli`), the actuation commands
(`edgeplace.actuation_cli`) and `edgeplace calibrate --annotate-nodes`, so that
none of them imports another.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

#: The planner's default migration penalty [gCO2e per moved replica]: above the rebalancer's
#: default cost of one move (a 60 s restart, about 0.1-0.3 g on the example's nodes, plus its
#: 2 g threshold, with the 20 % margin), so what the plan moves, the rebalancer agrees to move.
DEFAULT_MIGRATION_G = 5.0


def cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster connection")
    g.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    g.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current context)")
    g.add_argument("--in-cluster", action="store_true",
                   help="use the pod's service account (default when running in a pod without --kubeconfig)")


def ns_name(text: str) -> tuple[str, str]:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return ns, name


def plan_location_args(p: argparse.ArgumentParser, file_help: str) -> None:
    """Where the plan document is: a file, or a ConfigMap and its key."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--plan-file", metavar="FILE", help=file_help)
    where.add_argument("--configmap", metavar="NS/NAME", type=ns_name,
                       help="plan ConfigMap (default: edgeplace-system/edgeplace-plan)")
    p.add_argument("--configmap-key", default="plan.json", metavar="KEY", help="key of the plan in the ConfigMap")


def connect(kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False):
    """A `kubernetes.client.ApiClient`; `InputError` naming the kubeconfig when it cannot be loaded."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    from edgeplace.topology.errors import InputError, Problem

    auto_in_cluster = (not kubeconfig and not os.environ.get("KUBECONFIG")
                       and os.environ.get("KUBERNETES_SERVICE_HOST")
                       and not Path("~/.kube/config").expanduser().exists())
    if in_cluster or auto_in_cluster:
        try:
            config.load_incluster_config()
        except ConfigException as exc:
            raise InputError("in-cluster config", [Problem("", f"{exc}; run inside a pod or pass --kubeconfig")]) from None
        return client.ApiClient()
    import yaml

    source = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError, TypeError, ValueError, yaml.YAMLError) as exc:
        where = f"context {context!r}" if context else ""
        raise InputError(source, [Problem(where, f"cannot load the kubeconfig: {exc}")]) from None


def read_cluster_or_explain(api_client):
    """`edgeplace.k8s.mapping.read_cluster`, with API and connection failures as one `InputError`."""
    from edgeplace.k8s.mapping import read_cluster

    return call_or_explain(api_client, lambda: read_cluster(api_client))


def call_or_explain(api_client, call: Callable[[], object]):
    """`call()`, with API and connection failures as one `InputError` naming the API server."""
    from kubernetes.client.exceptions import ApiException

    from edgeplace.topology.errors import InputError, Problem

    server = getattr(api_client.configuration, "host", "the API server")
    try:
        return call()
    except ApiException as exc:
        hint = (" (the identity lacks list permission: see the ClusterRole in deploy/helm/edgeplace)"
                if exc.status in (401, 403) else "")
        raise InputError(server, [Problem(f"HTTP {exc.status}", f"{exc.reason}{hint}")]) from None
    except Exception as exc:  # urllib3 connection errors: the kubeconfig points somewhere unreachable
        if type(exc).__module__.startswith(("urllib3", "ssl", "socket")) or isinstance(exc, OSError):
            raise InputError(server, [Problem("", f"cannot reach the API server: {type(exc).__name__}: {exc}")]) from None
        raise
