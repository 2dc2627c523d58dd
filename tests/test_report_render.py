"""Tests of the report's HTML, Markdown and CSV: the same tables everywhere, nothing external."""

from __future__ import annotations

import base64
import io
import re

import pandas as pd
import pytest

from edgeplace.report.data import SECTIONS, TOTAL, build_report
from edgeplace.report.html import format_value, markdown_table
from edgeplace.report.write import MARKER, render_files
from edgeplace.policies.baselines import SpreadPolicy
from edgeplace.topology import load_scenario


@pytest.fixture(scope="module")
def files():
    from edgeplace.optimizer.solve import SolveOptions, solve

    sc = load_scenario("examples/metro-de.yaml")
    plan = solve(sc, SolveOptions(solver="greedy", bound_time_limit_s=0))
    report = build_report(sc, plan.placement, SpreadPolicy().place(sc), after_label="plan (greedy)",
                          before_label="spread baseline")
    return report, render_files(report)


def test_html_has_every_section_heading(files):
    report, out = files
    page = out["report.html"].decode()
    for key, title in SECTIONS.items():
        assert f'<section id="{key}"' in page
        assert f"<h2>{title}</h2>" in page
    assert "<title>Capacity report: metro-de</title>" in page


def test_html_is_self_contained_and_script_free(files):
    _, out = files
    page = out["report.html"].decode()
    assert "<script" not in page.lower()
    # No resource from outside the page: every src is a data URI, every href an in-page anchor.
    srcs = re.findall(r'\ssrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#") for h in re.findall(r'\shref="([^"]*)"', page))
    assert not re.search(r"url\(|@import|https?://", page)
    # Every embedded figure is a PNG that decodes.
    for s in srcs:
        png = base64.b64decode(s.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_every_table_is_in_html_markdown_and_csv(files):
    report, out = files
    page, md = out["report.html"].decode(), out["report.md"].decode()
    for table in report.tables():
        assert f"csv/{table.key}.csv" in out, table.key
        assert f"### {table.title}" in md, table.title
        assert table.title.replace("&", "&amp;") in page or table.title in page
        csv = pd.read_csv(io.BytesIO(out[f"csv/{table.key}.csv"]), keep_default_na=False, na_values=[""])
        assert list(csv.columns) == [str(c) for c in table.frame.columns]
        assert len(csv) == len(table.frame)
    for section in SECTIONS.values():
        assert f"## {section}" in md
    assert MARKER in out


def test_csv_totals_equal_the_evaluation(files):
    report, out = files
    tenants = pd.read_csv(io.BytesIO(out["csv/tenants.csv"]))
    total = tenants[tenants["tenant"] == TOTAL].iloc[0]
    assert total["emissions_kg_after"] * 1000 == pytest.approx(report.after.totals["emissions_g"], rel=1e-12)
    assert total["emissions_kg_before"] * 1000 == pytest.approx(report.before.totals["emissions_g"], rel=1e-12)
    totals = pd.read_csv(io.BytesIO(out["csv/totals.csv"])).set_index("figure")
    assert totals.loc["energy_kwh", "after (plan (greedy))"] == pytest.approx(report.after.totals["energy_kwh"], rel=1e-12)


def test_heatmap_data_is_exported(files):
    report, out = files
    sc = report.scenario
    nodes = pd.read_csv(io.BytesIO(out["csv/utilisation_node_slot.csv"]))
    assert len(nodes) == 2 * sc.n_nodes * sc.n_slots
    after = nodes[nodes["placement"] == "plan (greedy)"]
    # Asleep node-slots are empty; awake ones carry the evaluation's utilisation.
    assert after["cpu_utilisation"].isna().sum() == int((~report.after.powered).sum())


def test_markdown_links_the_figure_files(files):
    _, out = files
    md = out["report.md"].decode()
    for path in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert path in out and out[path][:4] == b"\x89PNG"


@pytest.mark.parametrize("value, text", [
    (1234.5678, "1,234.6"),   # >= 100: one decimal, thousands separator
    (12.3456, "12.35"),       # >= 1: two decimals
    (0.012345, "0.0123"),     # < 1: three significant digits
    (42.0, "42"),             # whole numbers without decimals
    (float("nan"), "\u2013"),  # missing
    ("a|b", "a|b"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_markdown_table_escapes_pipes_and_bolds_totals():
    frame = pd.DataFrame({"tenant": ["a|b", TOTAL], "kwh": [1.5, 2.5]})
    text = markdown_table(frame)
    assert "| a\\|b | 1.50 |" in text
    assert "| **total** | **2.50** |" in text
    assert "| --- | ---: |" in text
