"""The report's figures as PNG bytes.

Each function takes a `Report` (data already computed by
`edgeplace.report.data`) and draws one figure with matplotlib's object API
(`Figure` + the Agg canvas: no pyplot, no global figure state, no display
needed). `render_figures(report)` draws every figure the report's sections
ask for and returns {key: PNG bytes}.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np

from edgeplace.report.data import Report

#: Resolution of the PNGs [dots per inch]; 110 keeps text sharp at about 1,000 px width.
DPI = 110
BEFORE_COLOUR, AFTER_COLOUR = "#9e9e9e", "#1b7837"
ASLEEP_COLOUR = "#e0e0e0"


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _slot_ticks(report: Report, ax, n_slots: int, max_labels: int = 8) -> None:
    sc = report.scenario
    step = max(1, int(np.ceil(n_slots / max_labels)))
    ticks = np.arange(0, n_slots, step)
    ax.set_xticks(ticks)
    ax.set_xticklabels([sc.slot_time(int(t)).strftime("%H:%M") for t in ticks], rotation=0, fontsize=8)
    ax.set_xlabel(f"slot start (UTC, {sc.slot_time(0):%Y-%m-%d})")


def _heatmap(report: Report, matrices: dict[str, np.ndarray], row_labels: list[str], title: str,
             groups: list[int] | None = None, scale_label: str = "CPU utilisation [%]") -> bytes:
    from matplotlib import colormaps

    rows = len(row_labels)
    height = min(2.0 + 0.16 * rows, 24.0)
    fig = _figure(11.0, height)
    axes = fig.subplots(1, 2, sharey=True)
    cmap = colormaps["YlOrRd"].with_extremes(bad=ASLEEP_COLOUR)
    image = None
    for ax, when in zip(axes, ("before", "after")):
        data = np.ma.masked_invalid(matrices[when] * 100)
        image = ax.imshow(data, aspect="auto", cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
        label = report.before_label if when == "before" else report.after_label
        ax.set_title(f"{when}: {label}", fontsize=10)
        _slot_ticks(report, ax, data.shape[1], max_labels=6)
        if groups:
            for g in groups:
                ax.axhline(g - 0.5, color="white", linewidth=1.2)
    axes[0].set_yticks(np.arange(rows))
    axes[0].set_yticklabels(row_labels, fontsize=7 if rows > 30 else 8)
    bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.01)
    bar.set_label(scale_label)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def utilisation_nodes(report: Report) -> bytes:
    sc = report.scenario
    order = np.argsort(sc.node_site, kind="stable")
    labels = [f"{sc.node_ids[i]} ({sc.site_ids[sc.node_site[i]]})" for i in order]
    sites = sc.node_site[order]
    groups = [int(k) for k in np.flatnonzero(np.diff(sites)) + 1]
    matrices = {k: v[order] for k, v in report.node_utilisation.items()}
    return _heatmap(report, matrices, labels, "CPU utilisation per node and slot", groups,
                    scale_label="CPU utilisation [%] (grey: asleep)")


def utilisation_sites(report: Report) -> bytes:
    sc = report.scenario
    labels = [f"{s} ({sc.spec.sites[i].tier.value})" for i, s in enumerate(sc.site_ids)]
    return _heatmap(report, report.site_utilisation, labels, "CPU utilisation per site and slot (share of all site capacity)")


def active_nodes(report: Report) -> bytes:
    sc = report.scenario
    fig = _figure(11.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(sc.n_slots)
    for ev, label, colour in ((report.before, report.before_label, BEFORE_COLOUR),
                              (report.after, report.after_label, AFTER_COLOUR)):
        ax1.step(x, ev.powered.sum(axis=0), where="mid", color=colour, label=label, linewidth=2)
        ax2.step(x, (ev.operational_g.sum(axis=0) + ev.embodied_g.sum(axis=0)) / 1000, where="mid", color=colour,
                 label=label, linewidth=2)
    ax1.set_ylabel("nodes on")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Active nodes per slot", fontsize=10)
    ax2.set_ylabel("emissions [kgCO2e per slot]")
    ax2.set_ylim(bottom=0)
    ax2.set_title("Emissions per slot (operational location-based + embodied fleet)", fontsize=10)
    for ax in (ax1, ax2):
        _slot_ticks(report, ax, sc.n_slots)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def renewables(report: Report) -> bytes:
    sc = report.scenario
    gen = sc.site_renewable_kw.sum(axis=1)
    sites = [int(s) for s in np.argsort(-gen) if gen[s] > 0][:4]
    fig = _figure(11.0, 3.2)
    axes = np.atleast_1d(fig.subplots(1, max(len(sites), 1), squeeze=False)[0])
    x = np.arange(sc.n_slots)
    for ax, s in zip(axes, sites):
        supply = sc.site_renewable_kw[s] * sc.slot_hours
        ax.fill_between(x, supply, step="mid", color="#fdd835", alpha=0.6, label="on-site generation")
        mask = sc.node_site == s
        for ev, label, colour in ((report.before, report.before_label, BEFORE_COLOUR),
                                  (report.after, report.after_label, AFTER_COLOUR)):
            ax.step(x, ev.energy_kwh[mask].sum(axis=0), where="mid", color=colour, linewidth=2, label=f"demand, {label}")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(sc.site_ids[s], fontsize=10)
        ax.set_ylabel("energy [kWh per slot]")
        _slot_ticks(report, ax, sc.n_slots, max_labels=6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def tenants(report: Report) -> bytes:
    b, a = report.before.per_tenant(), report.after.per_tenant()
    names = list(a["tenant"])
    y = np.arange(len(names))
    fig = _figure(11.0, 2.0 + 0.5 * len(names))
    ax = fig.subplots()
    h = 0.38
    for offset, per, label, colour in ((-h / 2, b, report.before_label, BEFORE_COLOUR),
                                       (h / 2, a, report.after_label, AFTER_COLOUR)):
        op = per["operational_emissions_g"].to_numpy() / 1000
        emb = per["embodied_sci_emissions_g"].to_numpy() / 1000
        ax.barh(y + offset, op, height=h, color=colour, label=f"{label}: operational (location-based)")
        ax.barh(y + offset, emb, left=op, height=h, color=colour, alpha=0.45, hatch="//",
                label=f"{label}: embodied (SCI share)")
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("emissions [kgCO2e over the horizon]")
    ax.set_title("Emissions per tenant, before and after", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=2)
    return _png(fig)


#: Figure keys (used by `data.Section.figures`) -> drawing function and alt text.
FIGURES: dict[str, tuple[Callable[[Report], bytes], str]] = {
    "utilisation_nodes": (utilisation_nodes, "Heatmap of CPU utilisation per node and slot, before and after"),
    "utilisation_sites": (utilisation_sites, "Heatmap of CPU utilisation per site and slot, before and after"),
    "active_nodes": (active_nodes, "Active nodes and emissions per slot, before and after"),
    "renewables": (renewables, "On-site generation and site energy demand per slot"),
    "tenants": (tenants, "Emissions per tenant, before and after"),
}


def render_figures(report: Report) -> dict[str, bytes]:
    """Every figure the report's sections name, as PNG bytes by key."""
    keys = [k for s in report.sections for k in s.figures]
    return {k: FIGURES[k][0](report) for k in keys}
