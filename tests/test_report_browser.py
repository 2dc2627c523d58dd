"""The HTML report in a real headless browser (Debian's chromium).

Renders report.html with chromium offline (no network features, fresh
profile), takes a screenshot and dumps the DOM, and checks that every
section is there and the browser console stays silent. A control page with a
script error proves the console check can fail.

Needs the apt package `chromium`: skipped with a reason where it is missing,
except in CI (CI=true), where a missing browser fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edgeplace.report.data import SECTIONS, build_report
from edgeplace.report.write import write_report
from edgeplace.policies.baselines import SpreadPolicy
from edgeplace.topology import load_scenario

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
WIDTH, HEIGHT = 1280, 4000
#: Chromium logs every console message (console.error, uncaught exceptions) as `...:CONSOLE...`.
CONSOLE = re.compile(r":CONSOLE[:(]")


def chromium() -> str:
    path = shutil.which("chromium") or (("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: the Makefile must install the apt package `chromium`")
        pytest.skip("headless browser test needs Debian's chromium (apt-get install chromium)")
    return path


def run_chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from edgeplace.optimizer.solve import SolveOptions, solve

    sc = load_scenario("examples/metro-de.yaml")
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=0))
    report = build_report(sc, plan.placement, SpreadPolicy().place(sc), after_label="plan (greedy)",
                          before_label="spread baseline")
    return write_report(report, tmp_path_factory.mktemp("browser") / "report")


def test_console_check_catches_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><script>throw new Error("boom")</script></body></html>')
    result = run_chromium(tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("boom" in line for line in console_messages(result.stderr))


def test_report_renders_with_every_section_and_no_console_message(report_dir, tmp_path):
    dom = run_chromium(tmp_path, report_dir / "report.html", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    for key, title in SECTIONS.items():
        assert re.search(rf'<section id="{key}"[^>]*><h2>{re.escape(title)}</h2>', dom.stdout), title
    assert "<script" not in dom.stdout
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', dom.stdout)) == 5


def test_report_screenshot(report_dir, tmp_path):
    shot = tmp_path / "report.png"
    result = run_chromium(tmp_path, report_dir / "report.html", f"--screenshot={shot}",
                          f"--window-size={WIDTH},{HEIGHT}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (WIDTH, HEIGHT)
    # A blank page compresses to a few kB; the report (text, tables, figures) does not.
    assert len(data) > 200_000
    keep = os.environ.get("EDGEPLACE_KEEP_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
