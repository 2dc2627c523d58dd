"""`edgeplace serve --kueue / --fleet-config / --kueue-watchdog`: flags, bad input, and nothing loaded without them.

Against real clusters (with and without Kueue) in tests/e2e/test_kueue_e2e.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeplace.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, message", [
    (["--kueue-watchdog", "--planner"], "--kueue-watchdog runs alone"),
    (["--kueue-watchdog", "--kueue"], "--kueue-watchdog runs alone"),
    (["--multikueue"], "--multikueue is a watchdog option"),
    (["--fleet-config", "f.yaml", "--site-config", "s.yaml"], "--fleet-config replaces --site-config"),
    (["--fleet-config", "f.yaml", "--extender"], "drop --extender"),
    (["--fleet-config", "f.yaml", "--power", "apply"], "with --fleet-config actuation is off"),
    (["--fleet-config", "f.yaml", "--rebalance", "apply"], "with --fleet-config actuation is off"),
    (["--kueue", "--kueue-controller-name", "carbon"], "must be a domain-prefixed name"),
])
def test_conflicting_kueue_flags_are_usage_errors(argv, message, capsys):
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_fleet_config_is_reported_before_connecting_anywhere(tmp_path, capsys):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("clusters: [{name: worker-de, site: nowhere}]\nsites: []\n")
    assert main(["serve", "--fleet-config", str(bad), "--kubeconfig", str(tmp_path / "absent")]) == 3
    err = capsys.readouterr().err
    assert str(bad) in err and "clusters[0].site" in err and "'nowhere' is not in sites" in err
    assert "Traceback" not in err


def test_without_kueue_flags_nothing_of_kueue_is_loaded(tmp_path):
    probe = ("import sys\n"
             "from edgeplace.cli import main\n"
             f"rc = main(['validate', {str(ROOT / 'examples' / 'metro-de.yaml')!r}])\n"
             # the planner's own path (it fails to connect: exit 3) loads edgeplace.k8s, but not Kueue's modules
             f"rc += main(['serve', '--planner', '--once', '--kubeconfig', {str(tmp_path / 'absent')!r}])\n"
             "loaded = sorted(m for m in sys.modules if m.startswith('edgeplace.k8s.'))\n"
             "print('RESULT', rc, loaded)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    rc, _, loaded = out.strip().splitlines()[-1].removeprefix("RESULT ").partition(" ")
    assert rc == "3" and "edgeplace.k8s.planner" in loaded
    for module in ("kueue", "kueue_failopen", "multicluster"):
        assert f"edgeplace.k8s.{module}'" not in loaded, loaded
