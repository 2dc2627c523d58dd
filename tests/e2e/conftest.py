"""Shared setup for the real-cluster e2e tier (see k8s/e2e/README.md)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_CLUSTER_PY = Path(__file__).resolve().parents[2] / "k8s" / "e2e" / "cluster.py"


def _load_module(name: str, path: Path):
    """Import a file of k8s/e2e (not a package) as `name`."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _load_cluster_module():
    """Import k8s/e2e/cluster.py as ``edgeplace_e2e_cluster``."""
    return _load_module("edgeplace_e2e_cluster", _CLUSTER_PY)


e2e_cluster = _load_cluster_module()
#: k8s/e2e/kueue.py (Kueue's controller manager on a LocalCluster) as ``edgeplace_e2e_kueue``.
e2e_kueue = _load_module("edgeplace_e2e_kueue", _CLUSTER_PY.with_name("kueue.py"))


@pytest.fixture(scope="session")
def e2e_binaries() -> dict[str, str]:
    """Paths of the e2e binaries.

    Skips when they are not built, except in CI (CI=true), where a missing
    binary is a failure: CI must run k8s/e2e/build.sh first.
    """
    try:
        return e2e_cluster.find_binaries()
    except e2e_cluster.BinariesMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def kueue_binary(e2e_binaries) -> str:
    """Kueue's controller manager (k8s/e2e/build.sh); skipped when not built, except under CI=true."""
    try:
        return str(e2e_kueue.find_kueue())
    except e2e_cluster.BinariesMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def prometheus_binaries() -> dict[str, Path]:
    """Paths of prometheus and promtool (k8s/e2e/build-prometheus.sh, `make e2e-build`).

    Skips when they are not built, except in CI (CI=true), where that is a failure.
    """
    found = e2e_cluster.prometheus_binaries()
    missing = [str(p) for p in found.values() if not os.access(p, os.X_OK)]
    if missing:
        message = (f"Prometheus binaries missing ({', '.join(missing)}); "
                   f"run bash {_CLUSTER_PY.parent / 'build-prometheus.sh'}")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return found
