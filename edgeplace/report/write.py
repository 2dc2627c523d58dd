"""Writing a report directory, all or nothing.

Layout of DIR:

    report.html          self-contained page (figures inline)
    report.md            the same tables as Markdown, figures linked from figures/
    figures/<key>.png    the figures as files, for the Markdown
    csv/<table>.csv      one CSV per table (full precision)
    .edgeplace-report    marker: this directory was written by `edgeplace report`

Everything is rendered first, then written into a fresh temporary directory
beside DIR (each file written and flushed to disk), and only then renamed
into place. A failure at any step leaves DIR as it was. An existing DIR is
replaced only if it is empty or carries the marker, so `-o .` or `-o ~`
never deletes a user's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgeplace.report.data import Report
from edgeplace.report.html import render_html, render_markdown
from edgeplace.report.plots import render_figures
from edgeplace.topology.errors import InputError, Problem

MARKER = ".edgeplace-report"


def render_files(report: Report) -> dict[str, bytes]:
    """Every file of the report directory, by relative path, rendered in memory."""
    figures = render_figures(report)
    figure_files = {k: f"figures/{k}.png" for k in figures}
    files: dict[str, bytes] = {
        "report.html": render_html(report, figures).encode("utf-8"),
        "report.md": render_markdown(report, figure_files).encode("utf-8"),
        MARKER: f"{report.scenario.spec.name}\n".encode("utf-8"),
    }
    files.update({path: figures[k] for k, path in figure_files.items()})
    for table in report.tables():
        files[f"csv/{table.key}.csv"] = table.frame.to_csv(index=False).encode("utf-8")
    for key, matrix in (("utilisation_node_slot", report.node_utilisation),
                        ("utilisation_site_slot", report.site_utilisation)):
        files[f"csv/{key}.csv"] = _matrix_csv(report, key, matrix).encode("utf-8")
    return files


def _matrix_csv(report: Report, key: str, matrices: dict) -> str:
    """Long form of a heatmap: placement, row id, slot start, utilisation (empty while asleep)."""
    import numpy as np
    import pandas as pd

    sc = report.scenario
    rows_ids = sc.node_ids if key.startswith("utilisation_node") else sc.site_ids
    name = "node" if key.startswith("utilisation_node") else "site"
    frames = []
    starts = [sc.slot_time(t).isoformat() for t in range(sc.n_slots)]
    for when, label in (("before", report.before_label), ("after", report.after_label)):
        m = matrices[when]
        frames.append(pd.DataFrame({
            "placement": label,
            name: np.repeat(rows_ids, sc.n_slots),
            "slot_start": np.tile(starts, len(rows_ids)),
            "cpu_utilisation": m.reshape(-1),
        }))
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Render and write the report directory atomically; return its path."""
    out = Path(out_dir)
    _check_target(out)
    files = render_files(report)  # render everything before touching the disk
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for rel, data in files.items():
            _write_file(tmp / rel, data)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(str(out), [Problem("-o", "exists and is not a directory; give a directory for the report")])
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(str(out), [Problem("-o", "exists, is not empty and was not written by `edgeplace report`; "
                                                  "choose a new directory (the report replaces its directory whole)")])


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an old report at `out` is moved aside first and removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)
