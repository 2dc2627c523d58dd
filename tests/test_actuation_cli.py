"""`edgeplace rebalance` and the actuation flags of `edgeplace serve`: usage errors, bad input, no cluster.

Each case runs the real `edgeplace.cli.main` and checks the exit code and the
one message on standard error: never a traceback. The moves themselves are
printed against the example cluster in tests/e2e/test_actuation_e2e.py.
"""

from __future__ import annotations

import socket

import pytest
import yaml

from edgeplace.cli import main


def kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("argv, message", [
    (["rebalance"], "one of the arguments --dry-run --apply is required"),
    (["rebalance", "--dry-run", "--apply"], "not allowed with argument"),
    (["rebalance", "--dry-run", "--max-evictions", "-1"], "must be >= 0, got -1"),
    (["rebalance", "--dry-run", "--max-off-fraction", "1.5"], "must be a fraction in 0..1"),
    (["rebalance", "--dry-run", "--restart-seconds", "soon"], "expected a number, got 'soon'"),
    (["rebalance", "--dry-run", "--format", "xml"], "invalid choice: 'xml'"),
    (["serve", "--planner", "--rebalance", "yes"], "invalid choice: 'yes'"),
    (["serve", "--planner", "--power", "on"], "invalid choice: 'on'"),
    (["serve", "--planner", "--actuation-period", "0"], "must be a finite number > 0, got 0"),
])
def test_bad_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_solve_with_apply_is_refused(capsys, tmp_path):
    assert main(["rebalance", "--apply", "--solve", "--kubeconfig", kubeconfig(tmp_path, "https://127.0.0.1:1")]) == 2
    assert "--solve goes with --dry-run" in capsys.readouterr().err


def test_an_unreachable_cluster_is_named_not_a_traceback(capsys, tmp_path):
    server = f"https://127.0.0.1:{closed_port()}"
    assert main(["rebalance", "--dry-run", "--kubeconfig", kubeconfig(tmp_path, server)]) == 3
    err = capsys.readouterr().err
    assert server in err and "cannot reach the API server" in err and "Traceback" not in err


def test_a_missing_kubeconfig_is_named(capsys, tmp_path):
    missing = str(tmp_path / "nope")
    assert main(["rebalance", "--dry-run", "--kubeconfig", missing]) == 3
    err = capsys.readouterr().err
    assert missing in err and "cannot load the kubeconfig" in err


def test_a_bad_site_config_is_named(capsys, tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("horizon: {slots: 0}\n")
    assert main(["rebalance", "--dry-run", "--site-config", str(bad), "--kubeconfig",
                 kubeconfig(tmp_path, "https://127.0.0.1:1")]) == 3
    err = capsys.readouterr().err
    assert str(bad) in err and "horizon.slots" in err
