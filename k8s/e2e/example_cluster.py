"""The bundled example cluster (examples/cluster/) in the local test cluster.

    python k8s/e2e/example_cluster.py [--demo] [--keep]

Starts `LocalCluster(controller_manager=True, kwok=True)`, loads
examples/cluster/cluster.yaml (kwok nodes, namespaces, Deployments, PDBs) and
waits until every pod runs where the default scheduler put it. Then:

- with ``--demo``: publishes one plan with ``edgeplace serve --planner --once``
  and prints ``edgeplace rebalance --dry-run``: the moves edgeplace would make
  and the grams each saves, against the published plan; then stops;
- without: prints the kubeconfig path and keeps the cluster up until Ctrl-C
  (``--keep`` also keeps its files), so that edgeplace's commands can be tried
  on it by hand.

Used by `make demo-cluster` and by tests/e2e/test_actuation_e2e.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cluster"
CLUSTER_YAML = EXAMPLE / "cluster.yaml"
SITE_CONFIG = EXAMPLE / "site-config.yaml"
PLANNER_NAMESPACE = "edgeplace-system"


def _cluster_module():
    name = "edgeplace_e2e_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "cluster.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_documents(path: Path = CLUSTER_YAML) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply(api_client, documents: list[dict[str, Any]]) -> None:
    """Create the objects (Nodes with their status, as kwok would report it)."""
    from kubernetes import client, utils

    e2e = _cluster_module()
    core = client.CoreV1Api(api_client)
    for doc in documents:
        if doc["kind"] == "Node":
            # Through create_kwok_node: kwok takes the node over only once its status is written.
            meta, resources = doc["metadata"], (doc.get("status") or {}).get("allocatable") or {}
            labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != e2e.KWOK_NODE_LABEL}
            extra = {k: v for k, v in resources.items() if k not in ("cpu", "memory", "pods")}
            e2e.create_kwok_node(core, meta["name"], labels=labels, annotations=meta.get("annotations"),
                                 cpu=resources.get("cpu", "4"), memory=resources.get("memory", "8Gi"),
                                 pods=resources.get("pods", "110"), extra_allocatable=extra)
        else:
            utils.create_from_dict(api_client, doc)
    try:
        core.create_namespace({"metadata": {"name": PLANNER_NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def wait_running(api_client, timeout_s: float = 120.0) -> list:
    """Wait until every Deployment's pods run (Ready) and none is pending; return the pods."""
    from kubernetes import client

    e2e = _cluster_module()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)

    def ready():
        deps = apps.list_deployment_for_all_namespaces().items
        if not deps or any((d.status.ready_replicas or 0) != d.spec.replicas for d in deps):
            return None
        pods = [p for p in core.list_pod_for_all_namespaces().items if p.metadata.namespace not in ("kube-system",)]
        return pods if all(p.status.phase == "Running" for p in pods) else None

    return e2e.wait_for(ready, timeout_s, "every pod of the example cluster to run")


def start(keep: bool = False):
    """A running LocalCluster with the example loaded (a context manager)."""
    e2e = _cluster_module()
    if keep:
        os.environ["EDGEPLACE_E2E_KEEP"] = "1"
    cluster = e2e.LocalCluster(controller_manager=True, kwok=True)
    cluster.__enter__()
    try:
        api = cluster.api_client()
        apply(api, load_documents())
        wait_running(api)
    except BaseException:
        cluster.__exit__(*sys.exc_info())
        raise
    return cluster


def edgeplace(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess:
    """Run the edgeplace command of this checkout against the cluster."""
    exe = Path(sys.executable).parent / "edgeplace"
    argv = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "edgeplace.cli"]), *args,
            "--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def demo(cluster) -> int:
    once = edgeplace("serve", "--planner", "--once", "--site-config", str(SITE_CONFIG), "--solver", "cpsat",
                     "--time-limit", "10", kubeconfig=cluster.kubeconfig)
    print(once.stdout, end="")
    if once.returncode != 0:
        print(once.stderr, file=sys.stderr)
        return once.returncode
    rebalance = edgeplace("rebalance", "--dry-run", "--site-config", str(SITE_CONFIG), kubeconfig=cluster.kubeconfig)
    print(rebalance.stdout, end="")
    if rebalance.returncode != 0:
        print(rebalance.stderr, file=sys.stderr)
    return rebalance.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="plan once, print the rebalancer's dry run, stop")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's files (certs, logs) on exit")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cluster = start(keep=args.keep)
    try:
        print(f"example cluster up in {time.monotonic() - started:.0f} s: {len(load_documents())} objects from "
              f"{CLUSTER_YAML.relative_to(ROOT)}; kubeconfig {cluster.kubeconfig}")
        if args.demo:
            return demo(cluster)
        print("Ctrl-C stops it. Try: edgeplace rebalance --dry-run --site-config "
              f"{SITE_CONFIG.relative_to(ROOT)} --kubeconfig {cluster.kubeconfig}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    finally:
        cluster.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
