"""The report as one self-contained HTML page, and as Markdown.

The HTML page needs nothing but itself: styles are inline, figures are PNG
data URIs, links only point inside the page, and there is no script at all
(so nothing can fail in a browser console and nothing is fetched). Long
detail tables are folded into `<details>` elements, which need no script
either. The summary section is one printed page (`break-after: page`).

Both renderers show exactly the tables of `edgeplace.report.data`; the only
thing they do to numbers is format them.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from edgeplace.report.data import TOTAL, Report, Table
from edgeplace.report.plots import FIGURES

CSS = """
:root { --ink: #1d2329; --muted: #5b6670; --line: #d5dbe0; --accent: #1b7837; --warn: #b35806; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 24px 28px 48px; line-height: 1.45;
       font-size: 14px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 6px 0; }
.subtitle { color: var(--muted); margin: 0 0 14px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0 14px; }
dl.meta dt { font-weight: 600; color: var(--muted); }
dl.meta dd { margin: 0; }
nav ol { columns: 3; margin: 6px 0 0; padding-left: 20px; }
.warning { border-left: 4px solid var(--warn); background: #fff4e5; padding: 8px 12px; margin: 10px 0; }
.keyfacts { border-left: 4px solid var(--accent); background: #f1f8f3; padding: 8px 14px; margin: 10px 0; }
.table-wrap { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: #f3f5f7; text-align: left; font-weight: 600; vertical-align: bottom; white-space: normal;
     min-width: 48px; max-width: 130px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 700; border-top: 2px solid var(--ink); }
tbody tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 10px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
details { margin: 8px 0; }
details summary { cursor: pointer; font-weight: 600; }
.note { color: var(--muted); font-size: 12px; }
pre { font-size: 12px; background: #f6f8fa; padding: 8px 10px; overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  body { max-width: none; padding: 0 10mm; font-size: 11px; }
  section.page { break-after: page; }
  nav, details { display: none; }
  h2 { break-after: avoid; }
  figure, table { break-inside: avoid; }
}
"""


def format_value(value: Any) -> str:
    """A table cell as text: numbers with sensible precision, missing values as an en dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or hasattr(value, "dtype"):
        x = float(value)
        if not math.isfinite(x):
            return "\u2013"
        if x == int(x) and abs(x) < 1e6:
            return f"{int(x):,}"
        if abs(x) >= 100:
            return f"{x:,.1f}"
        if abs(x) >= 1:
            return f"{x:,.2f}"
        return f"{x:.3g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "dtype")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edgeplace")
    except Exception:  # noqa: BLE001 - not installed as a distribution (running from a checkout)
        return "dev"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -----------------------------------------------------------------------------
# HTML


def _html_table(table: Table) -> str:
    frame = table.frame
    # <wbr> after underscores lets long column names wrap there instead of widening the table.
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in frame.columns)
    body = []
    first = frame.columns[0] if len(frame.columns) else None
    for _, row in frame.iterrows():
        is_total = first is not None and row[first] == TOTAL
        cells = []
        for value in row:
            cls = ' class="num"' if _is_number(value) else ""
            cells.append(f"<td{cls}>{html.escape(format_value(value))}</td>")
        tr = '<tr class="total">' if is_total else "<tr>"
        body.append(f"{tr}{''.join(cells)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{max(len(frame.columns), 1)}">none</td></tr>')
    inner = (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table></div>')
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    if table.detail:
        return (f"<details><summary>{html.escape(table.title)} ({len(frame)} rows; also "
                f"csv/{html.escape(table.key)}.csv)</summary>{inner}{note}</details>")
    return f"<h3>{html.escape(table.title)}</h3>{inner}{note}"


def _html_figure(key: str, png: bytes) -> str:
    alt = FIGURES[key][1]
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}.</figcaption></figure>")


def render_html(report: Report, figures: dict[str, bytes]) -> str:
    """The whole report as one HTML document (no scripts, no external resources)."""
    sc = report.scenario
    meta = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in report.meta.items())
    nav = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in report.sections)
    warnings = "".join(f'<div class="warning"><strong>Warning:</strong> {html.escape(w)}</div>' for w in report.warnings)
    parts = []
    for s in report.sections:
        text = "".join(f"<p>{html.escape(t)}</p>" for t in s.text)
        if s.key == "explain" and s.text:  # the arithmetic lines keep their layout
            text = f"<p>{html.escape(s.text[0])}</p><pre>{html.escape(chr(10).join(s.text[1:]))}</pre>"
        if s.key == "summary":
            text = f'<div class="keyfacts">{text}</div>'
        figs = "".join(_html_figure(k, figures[k]) for k in s.figures if k in figures)
        tables = "".join(_html_table(t) for t in s.tables)
        cls = ' class="page"' if s.key == "summary" else ""
        parts.append(f'<section id="{s.key}"{cls}><h2>{html.escape(s.title)}</h2>{text}{figs}{tables}</section>')
    title = f"Capacity report: {sc.spec.name}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p class=\"subtitle\">Energy, emissions and capacity of a cloud-edge placement, before and after "
        f"planning. Every figure comes from edgeplace's evaluation of the placements.</p>"
        f"<dl class=\"meta\">{meta}</dl>{warnings}<nav><strong>Contents</strong><ol>{nav}</ol></nav></header>\n"
        + "\n".join(parts)
        + f"\n<footer>Generated by edgeplace {html.escape(_version())} on {_stamp()}. Tables are also in "
          f"report.md and as CSV files in csv/.</footer>\n</body>\n</html>\n"
    )


# -----------------------------------------------------------------------------
# Markdown


def _md_cell(value: Any) -> str:
    return format_value(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; numbers right-aligned."""
    if frame.empty:
        return "_none_\n"
    cols = list(frame.columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in cols]
    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in cols) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    first = cols[0]
    for _, row in frame.iterrows():
        cells = [_md_cell(v) for v in row]
        if row[first] == TOTAL:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(report: Report, figure_files: dict[str, str]) -> str:
    """The report as Markdown; figures link to `figure_files` (key -> relative path)."""
    sc = report.scenario
    out = [f"# Capacity report: {sc.spec.name}", ""]
    out += [f"- **{k}**: {v}" for k, v in report.meta.items()]
    out.append("")
    for w in report.warnings:
        out += [f"> **Warning:** {w}", ""]
    for s in report.sections:
        out += [f"## {s.title}", ""]
        if s.key == "explain" and s.text:
            out += [s.text[0], "", "```", *s.text[1:], "```", ""]
        else:
            for t in s.text:
                out += [t, ""]
        for k in s.figures:
            if k in figure_files:
                out += [f"![{FIGURES[k][1]}]({figure_files[k]})", ""]
        for t in s.tables:
            out += [f"### {t.title}", "", f"CSV: `csv/{t.key}.csv`", "", markdown_table(t.frame)]
            if t.note:
                out += [t.note, ""]
    out += ["---", f"Generated by edgeplace {_version()} on {_stamp()}.", ""]
    return "\n".join(out)
