"""Tests of edgeplace.import_sources (the file-based sources of `edgeplace import`) via an own parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from edgeplace.import_sources import add_import_arguments, run_import, source_description, write_scenario
from edgeplace.topology import InputError, load_scenario

#: An EdgeSimPy-format dataset written for these tests (tests/data/edgesimpy/README.md).
SAMPLE = Path(__file__).resolve().parent / "data" / "edgesimpy" / "rhine-line.json"


def parser() -> argparse.ArgumentParser:
    """Like the lead's `import` command: our sources plus one of its own in the same exclusive group."""
    p = argparse.ArgumentParser(prog="edgeplace import")
    sources = add_import_arguments(p)
    sources.add_argument("--from-cluster", action="store_true")
    p.add_argument("-o", "--output")
    return p


def sample() -> str:
    return str(SAMPLE)


def test_none_of_our_sources_returns_none():
    assert run_import(parser().parse_args(["--from-cluster"])) is None


def test_edgesimpy_source():
    args = parser().parse_args(["--edgesimpy", sample(), "--slots", "6", "--pue", "1.2"])
    doc, notes = run_import(args)
    assert doc["horizon"]["slots"] == 6
    assert {s["pue"] for s in doc["sites"]} == {1.2}
    assert any("no tenants" in n for n in notes)
    assert source_description(args) == f"--edgesimpy {SAMPLE}"


def test_topohub_source_with_topology_options():
    pytest.importorskip("topohub", reason="pip install topohub")
    args = parser().parse_args(["--topohub", "topozoo/Abilene", "--servers-per-site", "1", "--sla-ms", "12",
                                "--access-ms", "0.5", "--start", "2026-03-01T00:00:00Z", "--name", "abilene-test"])
    doc, notes = run_import(args)
    assert doc["name"] == "abilene-test" and len(doc["nodes"]) == 11
    assert doc["horizon"]["start"] == "2026-03-01T00:00:00Z"
    assert {w["sla"]["latency_ms"] for w in doc["workloads"]} == {12.0}
    assert {u["access_latency_ms"] for u in doc["users"]} == {0.5}


def test_sources_are_mutually_exclusive(capsys):
    with pytest.raises(SystemExit, match="2"):
        parser().parse_args(["--edgesimpy", "a.json", "--topohub", "sndlib/polska"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        parser().parse_args(["--edgesimpy", "a.json", "--from-cluster"])


def test_topology_options_do_not_apply_to_edgesimpy():
    args = parser().parse_args(["--edgesimpy", sample(), "--servers-per-site", "3"])
    with pytest.raises(InputError, match="--servers-per-site: applies to --topohub and --topology-file only"):
        run_import(args)


@pytest.mark.parametrize("argv, message", [
    (["--start", "2026-06-21T00:00:00"], "needs a UTC offset"),
    (["--pue", "0.8"], "a PUE is between 1 and 5"),
    (["--slots", "0"], "must be >= 1"),
])
def test_bad_option_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit, match="2"):
        parser().parse_args(["--topohub", "sndlib/polska", *argv])
    assert message in capsys.readouterr().err


def test_options_checked_by_the_importer_are_input_errors(tmp_path):
    topo = tmp_path / "t.json"
    topo.write_text(json.dumps({"nodes": [{"id": 0, "name": "a"}], "edges": []}))
    args = parser().parse_args(["--topology-file", str(topo), "--sla-ms", "1", "--access-ms", "2"])
    with pytest.raises(InputError, match="access_latency_ms: must be >= 0 and below sla_ms"):
        run_import(args)


def test_an_imported_document_that_does_not_load_is_an_input_error(tmp_path):
    # An EdgeSimPy user whose delay SLA (2 ms) is below its base station's wireless delay (3 ms):
    # the import maps it faithfully, and validation names the source and the workload.
    data = {
        "BaseStation": [{"attributes": {"id": 1, "wireless_delay": 3}, "relationships": {}}],
        "EdgeServer": [{"attributes": {"id": 1, "cpu": 4, "memory": 4096},
                        "relationships": {"base_station": {"class": "BaseStation", "id": 1}}}],
        "User": [{"attributes": {"id": 1, "delay_slas": {"1": 2}},
                  "relationships": {"base_station": {"class": "BaseStation", "id": 1}}}],
        "Application": [{"attributes": {"id": 1}, "relationships": {"services": [{"class": "Service", "id": 1}],
                                                                    "users": [{"class": "User", "id": 1}]}}],
        "Service": [{"attributes": {"id": 1, "cpu_demand": 1, "memory_demand": 512},
                     "relationships": {"application": {"class": "Application", "id": 1}}}],
    }
    path = tmp_path / "tight.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"(?s)tight.json \(imported\).*no node can meet 2 ms for all users of 'svc-1'"):
        run_import(parser().parse_args(["--edgesimpy", str(path)]))


def test_write_scenario_yaml_with_notes_and_json(tmp_path):
    args = parser().parse_args(["--edgesimpy", sample()])
    doc, notes = run_import(args)
    out = tmp_path / "edge.yaml"
    write_scenario(doc, notes, out, source_description(args))
    text = out.read_text()
    assert text.startswith(f"# Imported by `edgeplace import` from --edgesimpy {SAMPLE}.")
    assert all(f"#   - {n}" in text for n in notes)
    assert yaml.safe_load(text) == doc
    sc = load_scenario(out)
    assert sc.n_nodes == 5
    write_scenario(doc, notes, tmp_path / "edge.json", "x")
    assert json.loads((tmp_path / "edge.json").read_text()) == doc
    assert load_scenario(tmp_path / "edge.json").n_workloads == 5
