"""edgeplace calibrate: usage and input errors (the real-Prometheus runs are in
tests/e2e/test_calibrate_prometheus.py)."""

from __future__ import annotations

import socket

import pytest

from edgeplace.cli import main
from tests.builders import ScenarioBuilder
import yaml


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "s.yaml"
    b = ScenarioBuilder().slots(1).region("DE", 400).site("a").node("n1").tenant("t1")
    path.write_text(yaml.safe_dump(b.build_dict()))
    return str(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["-o", "x.yaml", "--write"], "-o and --write conflict"),
    (["--source", "kepler-legacy", "--zones", "psys"], "--zones is for --source kepler"),
    (["--kubeconfig", "k"], "--kubeconfig and --context go with --annotate-nodes"),
    (["--start", "2026-06-21T03:00Z", "--end", "2026-06-21T00:00Z"], "the window is empty"),
])
def test_conflicting_flags_are_usage_errors(scenario, capsys, extra, message):
    assert main(["calibrate", scenario, *extra]) == 2
    assert message in capsys.readouterr().err


def test_bad_times_are_refused_by_the_parser(scenario, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", scenario, "--start", "2026-06-21T00:00"])
    assert exc.value.code == 2 and "with a UTC offset" in capsys.readouterr().err


def test_an_unknown_node_and_an_unreachable_server_are_invalid_input(scenario, capsys):
    assert main(["calibrate", scenario, "--node", "nx", "--prometheus-url", "http://127.0.0.1:1"]) == 3
    assert "nx: is not a node of" in capsys.readouterr().err
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["calibrate", scenario, "--prometheus-url", url, "--window", "1h", "--timeout", "0.5",
                 "--attempts", "1"]) == 3
    err = capsys.readouterr().err
    assert f"Prometheus at {url}" in err and "check --prometheus-url" in err and "Traceback" not in err
