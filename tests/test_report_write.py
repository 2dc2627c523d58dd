"""Tests of edgeplace.report.write: the report directory appears whole or not at all."""

from __future__ import annotations

import pytest

import edgeplace.report.write as write_module
from edgeplace.report.data import build_report
from edgeplace.report.write import MARKER, write_report
from tests.builders import place, tiny
from edgeplace.topology import InputError


@pytest.fixture(scope="module")
def report():
    sc = tiny().build()
    p = place(sc, {"w": ["n1"]})
    return build_report(sc, p, p, after_label="plan", before_label="baseline")


@pytest.fixture(scope="module")
def rendered(report):
    return write_module.render_files(report)


@pytest.fixture()
def fast(rendered, monkeypatch):
    """Reuse one rendering: these tests are about writing, not drawing (the layout test draws)."""
    monkeypatch.setattr(write_module, "render_files", lambda _report: rendered)


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_writes_the_layout(report, tmp_path):
    out = write_report(report, tmp_path / "rep")
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"report.html", "report.md", MARKER, "csv/tenants.csv", "csv/totals.csv"} <= names
    assert any(n.startswith("figures/") and n.endswith(".png") for n in names)
    assert leftovers(tmp_path) == []


def test_failure_midway_leaves_no_half_report(report, fast, tmp_path, monkeypatch):
    written = []
    real = write_module._write_file

    def flaky(path, data):
        if len(written) == 3:
            raise OSError("disk full")
        written.append(path)
        real(path, data)

    monkeypatch.setattr(write_module, "_write_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_report(report, tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
    assert leftovers(tmp_path) == []


def test_failure_keeps_the_previous_report(report, fast, tmp_path, monkeypatch):
    out = write_report(report, tmp_path / "rep")
    before = (out / "report.html").read_bytes()

    def broken(_report):
        raise RuntimeError("render failed")

    monkeypatch.setattr(write_module, "render_files", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        write_report(report, out)
    assert (out / "report.html").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_replaces_a_previous_report_whole(report, fast, tmp_path):
    out = write_report(report, tmp_path / "rep")
    (out / "csv" / "stale.csv").write_text("old\n")
    write_report(report, out)
    assert not (out / "csv" / "stale.csv").exists()
    assert (out / "report.html").is_file()
    assert leftovers(tmp_path) == []


def test_refuses_a_directory_it_did_not_write(report, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not empty and was not written by `edgeplace report`"):
        write_report(report, tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_refuses_a_file(report, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        write_report(report, tmp_path / "f")


def test_fills_an_empty_directory(report, fast, tmp_path):
    (tmp_path / "empty").mkdir()
    write_report(report, tmp_path / "empty")
    assert (tmp_path / "empty" / "report.html").is_file()
