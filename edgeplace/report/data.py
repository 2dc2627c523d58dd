"""Capacity report data: every table and matrix of the report, from evaluations.

`build_report(scenario, after, before)` evaluates two placements (the plan,
"after", and a baseline, "before") with `edgeplace.policies.evaluate.evaluate`, the one
source of every energy and carbon figure, and assembles the report's
sections as plain pandas tables. Rendering (HTML, Markdown, CSV, plots) lives
in the sibling modules and adds no numbers of its own.

Savings are always the difference of two evaluations, never a formula of
their own:

- consolidation: evaluate(before) - evaluate(after), split per node with the
  per-node figures of both evaluations (which add up to the totals);
- idle nodes: evaluate(p) - evaluate(p with its idle node-slots powered down),
  where a node-slot is idle when the node is on, hosts no replica and may
  power down.

Resource figures (requested, used, spare capacity, headroom) are counted from
the placement and the scenario's capacities; used CPU is the evaluation's
utilisation, which includes background load.

Units are in the column names: `_kwh`, `_kg` (gCO2e / 1000), `_cores`
(millicores / 1000), `_gib` (MiB / 1024), `_h` (hours), `_pct` (percent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from edgeplace.policies.accounting import EMBODIED_BASES, market_note
from edgeplace.policies.evaluate import UNALLOCATED, Evaluation, evaluate, placed_requests
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU, MEMORY, Scenario

#: Section titles, in report order. Renderers and tests use these keys.
SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "before_after": "Before and after",
    "utilisation": "Utilisation over time",
    "idle": "Idle and over-provisioned capacity",
    "consolidation": "Consolidation candidates",
    "headroom": "Headroom per SLA class and site",
    "renewables": "Renewable self-consumption per site",
    "tenants": "Energy and emissions per tenant",
    "accounting": "Location- and market-based carbon, hourly carbon-free energy",
    "explain": "One node-slot by hand",
    "method": "Method and definitions",
}
#: Largest node count drawn row by row in the node heatmap; above it only the site heatmap is drawn.
MAX_HEATMAP_NODES = 150
TOTAL = "total"
#: Columns of the one-page per-site summary (the full table follows it, folded).
SUMMARY_SITE_COLUMNS = ["site", "tier", "region", "pue", "nodes", "active_node_h", "energy_kwh", "renewable_share_pct",
                        "emissions_kg", "grid_energy_g_per_kwh", "cpu_utilisation_of_powered_pct",
                        "g_per_requested_core_h"]
#: `--baseline current`: the scenario's `current` placement with every node on.
CURRENT = "current"


@dataclass
class Table:
    """One table of the report. `key` names its CSV file; `detail` tables are folded in the HTML."""

    key: str
    title: str
    frame: pd.DataFrame
    note: str = ""
    detail: bool = False


@dataclass
class Section:
    key: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # keys of plots.FIGURES


@dataclass
class Report:
    """Everything a renderer needs; nothing in here is computed by a renderer."""

    scenario: Scenario
    before_label: str
    after_label: str
    before: Evaluation
    after: Evaluation
    meta: dict[str, str]
    sections: list[Section]
    #: Matrices behind the heatmaps: node x slot and site x slot CPU utilisation [0..1]
    #: (NaN where a node sleeps), for "before" and "after".
    node_utilisation: dict[str, np.ndarray]
    site_utilisation: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]


# -----------------------------------------------------------------------------
# Choosing the placements


def load_plan(scenario: Scenario, path: str) -> tuple[Placement, dict[str, Any]]:
    """A plan or placement JSON file and the solver facts it records (`plan` key), if any."""
    from edgeplace.topology.load import read_document

    doc = read_document(path)
    placement = Placement.from_dict(scenario, doc, source=str(path))
    info = doc.get("plan") if isinstance(doc, dict) and isinstance(doc.get("plan"), dict) else {}
    return placement, info


def current_placement(scenario: Scenario) -> Placement:
    """The scenario's `current` placement with every node on (today's cluster), for `--baseline current`."""
    from edgeplace.policies.baselines import CurrentPolicy

    try:
        return CurrentPolicy().place(scenario)
    except InputError as exc:
        raise InputError("--baseline current", [Problem(p.path, p.message) for p in exc.problems]) from None


def make_report(scenario: Scenario, plan_file: str | None = None, baseline: str = "spread",
                solve_options: Any = None, progress: Callable[[str], None] | None = None) -> Report:
    """The report of a plan (read from `plan_file`, or solved now with `solve_options`) against
    `baseline` (a baseline policy name, or "current" for the scenario's current placement)."""
    from edgeplace.policies.baselines import baseline_registry

    sc = scenario
    registry = baseline_registry()
    if baseline == CURRENT:
        before, before_label = current_placement(sc), "current placement (all nodes on)"
    elif baseline in registry:
        before, before_label = registry[baseline]().place(sc), f"{baseline} baseline"
    else:
        raise InputError("--baseline", [Problem(baseline, f"unknown baseline; choose one of "
                                                          f"{', '.join([*registry, CURRENT])}")])
    if plan_file is not None:
        after, info = load_plan(sc, plan_file)
        after_label = f"plan ({Path(plan_file).name})"
    else:
        from edgeplace.optimizer.solve import SolveOptions, solve

        plan = solve(sc, solve_options or SolveOptions(), progress=progress)
        after, info = plan.placement, plan.summary()
        after_label = f"plan ({plan.solver}, {plan.status})"
    return build_report(sc, after, before, after_label=after_label, before_label=before_label, plan_info=info)


# -----------------------------------------------------------------------------
# Building the report


def build_report(scenario: Scenario, after: Placement, before: Placement, *, after_label: str = "plan",
                 before_label: str = "baseline", plan_info: dict[str, Any] | None = None) -> Report:
    """Evaluate both placements and assemble every section (see the module docstring)."""
    sc = scenario
    ev_after, ev_before = evaluate(sc, after), evaluate(sc, before)
    load_after, load_before = placed_requests(sc, after), placed_requests(sc, before)
    idle_after = _idle_variant(sc, after, ev_after)
    idle_before = _idle_variant(sc, before, ev_before)

    meta = _meta(sc, before_label, after_label, plan_info)
    warnings = []
    for label, ev in ((after_label, ev_after), (before_label, ev_before)):
        if ev.violations:
            kinds = ", ".join(f"{n} {k.value}" for k, n in ev.violation_counts.items() if n)
            warnings.append(f"{label} breaks {len(ev.violations)} rule(s) ({kinds}); its figures describe a "
                            f"placement that is not allowed")

    site_util = {"before": _site_utilisation(sc, ev_before), "after": _site_utilisation(sc, ev_after)}
    node_util = {"before": np.where(ev_before.powered, ev_before.utilisation, np.nan),
                 "after": np.where(ev_after.powered, ev_after.utilisation, np.nan)}
    labels = {"before": before_label, "after": after_label}
    headroom_long = headroom_table(sc, ev_after, load_after)
    sites = site_summary(sc, ev_after, load_after)
    headroom_pivot = headroom_summary(headroom_long)

    sections = [
        Section("summary", SECTIONS["summary"], _summary_text(sc, ev_before, ev_after, load_after, labels), [
            Table("summary_sites", f"Per site ({after_label})", sites[SUMMARY_SITE_COLUMNS]),
            Table("sites", f"Per site, every figure ({after_label})", sites, detail=True),
            Table("summary_tenants", f"Per tenant ({after_label})", tenant_summary(sc, ev_after, after)),
        ]),
        Section("before_after", SECTIONS["before_after"],
                [f"Totals over the horizon for {before_label} (before) and {after_label} (after); "
                 f"change = after - before."],
                [Table("totals", "Totals", totals_table(ev_before, ev_after, labels))], ["active_nodes"]),
        Section("utilisation", SECTIONS["utilisation"],
                ["CPU utilisation (workload use plus background load) of each node and site in each slot. "
                 "A site's utilisation is its used CPU over all of its CPU capacity, sleeping nodes included; "
                 "grey cells are sleeping nodes."],
                [Table("utilisation_sites", "Utilisation per site", utilisation_table(sc, site_util)),
                 Table("utilisation_nodes", "Utilisation per node", node_utilisation_table(sc, ev_before, ev_after),
                       detail=True)],
                ["utilisation_sites"] + (["utilisation_nodes"] if sc.n_nodes <= MAX_HEATMAP_NODES else [])),
        Section("idle", SECTIONS["idle"],
                ["Powered capacity that no workload requested (idle), requested capacity that workloads do not "
                 "use (over-requested), and capacity never requested in any slot (over-provisioned), as means "
                 "over the slots."],
                [Table("idle_capacity", f"Idle and over-provisioned CPU per site ({after_label})",
                       idle_capacity(sc, ev_after, load_after)),
                 Table("idle_capacity_before", f"Idle and over-provisioned CPU per site ({before_label})",
                       idle_capacity(sc, ev_before, load_before), detail=True)]),
        Section("consolidation", SECTIONS["consolidation"],
                [f"Nodes {after_label} powers down for longer than {before_label}. Savings are the difference of "
                 f"the two evaluations, per node; the row for the other nodes carries the load they take over, so "
                 f"the total row is evaluate(before) - evaluate(after).",
                 "Idle nodes: nodes that are on but host nothing and may power down. Their savings are the "
                 "placement evaluated as it is minus the same placement with those nodes asleep in those slots."],
                [Table("consolidation", f"Nodes {after_label} puts to sleep",
                       consolidation_table(sc, ev_before, ev_after)),
                 Table("idle_nodes", "Idle powered nodes that could sleep",
                       idle_nodes_table(sc, [(before_label, ev_before, idle_before), (after_label, ev_after, idle_after)]))]),
        Section("headroom", SECTIONS["headroom"],
                [f"How much more load fits ({after_label}) before an SLA breaks: for each site with users and each "
                 "SLA class, the spare capacity on shared nodes within that latency of all the site's users, in "
                 "the tightest slot. Extra replicas = how many more replicas of the class's median request fit "
                 "(node by node, every resource); 'awake' counts powered nodes only, the other column may wake "
                 "sleeping ones."],
                [Table("headroom", "Extra replicas that fit (awake nodes only in brackets), by site and SLA class",
                       headroom_pivot), Table("headroom_detail", "Headroom per site and SLA class", headroom_long, detail=True)]),
        Section("renewables", SECTIONS["renewables"],
                ["On-site generation used by the site (directly or through its battery) against what it generated "
                 "(self-consumption) and against what the site drew (coverage); the rest is curtailed or lost "
                 "in the battery."],
                [Table("renewables", "On-site renewables per site", renewables_table(sc, ev_before, ev_after))],
                ["renewables"] if (sc.site_renewable_kw > 0).any() else []),
        Section("tenants", SECTIONS["tenants"],
                [f"Energy and emissions attributed to each tenant by its share of requested CPU on each node and "
                 f"slot; embodied carbon by SCI (its share of the node's capacity for the slot: {EMBODIED_BASES['sci']}). "
                 f"What no tenant requested is {UNALLOCATED}. The rows add up to the totals."],
                [Table("tenants", "Per tenant, before and after", tenant_table(sc, ev_before, ev_after))],
                ["tenants"]),
        Section("accounting", SECTIONS["accounting"],
                ["Operational carbon on both GHG Protocol Scope 2 bases side by side: location-based (grid energy x "
                 "grid intensity) and market-based (after the site's contracts, the rest at the residual mix). "
                 + _sentence(market_note(sc)) + ". The hourly carbon-free energy (CFE) score is the share of each "
                 "hour's energy met by on-site renewables or hourly matched contracted supply."],
                [Table("accounting_sites", "Location- and market-based operational carbon and CFE score per site",
                       accounting_table(sc, ev_before, ev_after)),
                 Table("cfe_hourly", f"Hourly CFE score per site [%] ({after_label})", cfe_hourly_table(sc, ev_after),
                       detail=True)]),
        Section("explain", SECTIONS["explain"], explain_text(ev_after, after_label)),
        Section("method", SECTIONS["method"], _method_text(sc, labels)),
    ]
    return Report(sc, before_label, after_label, ev_before, ev_after, meta, sections, node_util, site_util, warnings)


# -----------------------------------------------------------------------------
# Counting load


def _idle_variant(sc: Scenario, placement: Placement, ev: Evaluation) -> tuple[np.ndarray, Evaluation]:
    """The idle node-slots of `placement` (N x T) and the evaluation with them powered down."""
    idle = ev.powered & ~placement.hosting(sc.n_nodes) & sc.node_can_power_down[:, None]
    asleep = placement.with_powered(ev.powered & ~idle)
    return idle, evaluate(sc, asleep)


def _site_utilisation(sc: Scenario, ev: Evaluation) -> np.ndarray:
    """S x T: used CPU over all CPU capacity of the site (sleeping nodes count as capacity, unused)."""
    cap = sc.node_capacity[:, CPU].astype(float)
    used = np.where(ev.powered, ev.utilisation, 0.0) * cap[:, None]
    out_used = np.zeros((sc.n_sites, sc.n_slots))
    out_cap = np.zeros(sc.n_sites)
    np.add.at(out_used, sc.node_site, used)
    np.add.at(out_cap, sc.node_site, cap)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(out_cap[:, None] > 0, out_used / out_cap[:, None], np.nan)


# -----------------------------------------------------------------------------
# Tables


def totals_table(before: Evaluation, after: Evaluation, labels: dict[str, str]) -> pd.DataFrame:
    """The headline figures of both evaluations, with the change."""
    rows = []
    for name, key, scale in (
        ("energy_kwh", "energy_kwh", 1.0), ("renewable_kwh", "renewable_kwh", 1.0), ("grid_kwh", "grid_kwh", 1.0),
        ("operational_location_kg", "operational_emissions_g", 1e-3),
        ("operational_market_kg", "operational_market_emissions_g", 1e-3),
        ("embodied_fleet_kg", "embodied_emissions_g", 1e-3), ("emissions_kg", "emissions_g", 1e-3),
        ("cfe_score_pct", "cfe_score_pct", 1.0),
        ("mean_active_nodes", "mean_active_nodes", 1.0), ("peak_active_nodes", "peak_active_nodes", 1.0),
        ("mean_utilisation_of_active_nodes_pct", "mean_utilisation_active", 100.0),
    ):
        b, a = before.totals[key] * scale, after.totals[key] * scale
        rows.append((name, b, a))
    rows.append(("rule_violations", float(len(before.violations)), float(len(after.violations))))
    frame = pd.DataFrame(rows, columns=["figure", f"before ({labels['before']})", f"after ({labels['after']})"])
    b, a = frame.iloc[:, 1], frame.iloc[:, 2]
    frame["change"] = a - b
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["change_pct"] = np.where(b != 0, (a / b - 1.0) * 100.0, np.nan)
    return frame


def _core_hours(sc: Scenario, load: np.ndarray) -> np.ndarray:
    """N: requested CPU core-hours per node."""
    return load[:, :, CPU].sum(axis=1) / 1000.0 * sc.slot_hours


def site_summary(sc: Scenario, ev: Evaluation, load: np.ndarray) -> pd.DataFrame:
    """Energy and resource efficiency per site: the table an operator could publish."""
    per = ev.per_site()
    cap = sc.node_capacity[:, CPU].astype(float)
    powered_cap = (ev.powered * cap[:, None])
    used = np.where(ev.powered, ev.utilisation, 0.0) * cap[:, None]
    S = sc.n_sites
    by_site = lambda x: np.bincount(sc.node_site, weights=x, minlength=S)  # noqa: E731
    pc, us = by_site(powered_cap.sum(axis=1)), by_site(used.sum(axis=1))
    req = by_site(load[:, :, CPU].sum(axis=1))
    core_h = by_site(_core_hours(sc, load))
    order = [sc.index_of("site", s) for s in per["site"]]
    emissions_g = per["operational_emissions_g"] + per["embodied_emissions_g"]
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "site": per["site"], "tier": per["tier"],
            "region": [sc.region_ids[sc.site_region[s]] for s in order],
            "pue": sc.site_pue[order],
            "nodes": per["nodes"],
            "active_node_h": per["powered_node_slots"] * sc.slot_hours,
            "energy_kwh": per["energy_kwh"],
            "renewable_share_pct": np.where(per["energy_kwh"] > 0, per["renewable_kwh"] / per["energy_kwh"] * 100, np.nan),
            "operational_location_kg": per["operational_emissions_g"] / 1000,
            "operational_market_kg": per["operational_market_emissions_g"] / 1000,
            "embodied_fleet_kg": per["embodied_emissions_g"] / 1000,
            "emissions_kg": emissions_g / 1000,
            "cfe_score_pct": per["cfe_score_pct"],
            "grid_energy_g_per_kwh": np.where(per["grid_kwh"] > 0, per["operational_emissions_g"] / per["grid_kwh"], np.nan),
            "cpu_utilisation_of_powered_pct": np.where(pc[order] > 0, us[order] / pc[order] * 100, np.nan),
            "cpu_requested_of_powered_pct": np.where(pc[order] > 0, req[order] / pc[order] * 100, np.nan),
            "requested_core_h": core_h[order],
            "g_per_requested_core_h": np.where(core_h[order] > 0, emissions_g / core_h[order], np.nan),
        })
    return frame


def tenant_summary(sc: Scenario, ev: Evaluation, placement: Placement) -> pd.DataFrame:
    """Energy, emissions and requested core-hours per tenant, with emissions per core-hour."""
    per = ev.per_tenant()
    core_h = _tenant_core_hours(sc, placement)
    emissions_g = per["operational_emissions_g"] + per["embodied_sci_emissions_g"]
    frame = pd.DataFrame({
        "tenant": per["tenant"],
        "energy_kwh": per["energy_kwh"],
        "operational_location_kg": per["operational_emissions_g"] / 1000,
        "operational_market_kg": per["operational_market_emissions_g"] / 1000,
        "embodied_sci_kg": per["embodied_sci_emissions_g"] / 1000,
        "emissions_kg": emissions_g / 1000,
        "share_of_emissions_pct": emissions_g / max(float(emissions_g.sum()), 1e-300) * 100,
        "requested_core_h": core_h,
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["g_per_requested_core_h"] = np.where(core_h > 0, emissions_g / core_h, np.nan)
    return _with_total(frame, "tenant")


def _tenant_core_hours(sc: Scenario, placement: Placement) -> np.ndarray:
    """M+1: requested CPU core-hours per tenant ((unallocated) gets 0)."""
    M = len(sc.tenant_ids)
    out = np.zeros(M + 1)
    w = sc.replica_workload[placement.cells().replica]
    out[:M] = np.bincount(sc.workload_tenant[w], weights=sc.workload_requests[w, CPU].astype(float), minlength=M)[:M]
    return out / 1000.0 * sc.slot_hours



def tenant_table(sc: Scenario, before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Energy and emissions per tenant before and after; rows add up to the totals (last row)."""
    b, a = before.per_tenant(), after.per_tenant()
    eb = (b["operational_emissions_g"] + b["embodied_sci_emissions_g"]) / 1000
    ea = (a["operational_emissions_g"] + a["embodied_sci_emissions_g"]) / 1000
    frame = pd.DataFrame({
        "tenant": a["tenant"],
        "energy_kwh_before": b["energy_kwh"], "energy_kwh_after": a["energy_kwh"],
        "operational_location_kg_before": b["operational_emissions_g"] / 1000,
        "operational_location_kg_after": a["operational_emissions_g"] / 1000,
        "operational_market_kg_before": b["operational_market_emissions_g"] / 1000,
        "operational_market_kg_after": a["operational_market_emissions_g"] / 1000,
        "embodied_sci_kg_before": b["embodied_sci_emissions_g"] / 1000,
        "embodied_sci_kg_after": a["embodied_sci_emissions_g"] / 1000,
        "emissions_kg_before": eb, "emissions_kg_after": ea,
        "emissions_change_kg": ea - eb,
    })
    return _with_total(frame, "tenant")


def explain_text(ev: Evaluation, label: str) -> list[str]:
    """The arithmetic of the node-slot with the largest operational emissions in `ev` (or the
    first node-slot when nothing emits), as `edgeplace evaluate --explain` prints it."""
    from edgeplace.policies.arithmetic import node_slot_arithmetic

    i, t = np.unravel_index(int(np.argmax(ev.operational_g)), ev.operational_g.shape)
    lines = node_slot_arithmetic(ev, int(i), int(t)).lines()
    return [f"The node-slot of {label} with the largest operational emissions, step by step (any other: "
            f"edgeplace evaluate SCENARIO --placement PLAN --explain NODE,SLOT). Summed over every node-slot these "
            f"lines give the totals.", *lines]


def accounting_table(sc: Scenario, before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Per site: contracts, energy, location- and market-based operational carbon and the
    hourly CFE score, before and after; a total row."""
    b, a = before.per_site().set_index("site"), after.per_site().set_index("site")
    order = list(a.index)
    idx = [sc.index_of("site", x) for x in order]
    frame = pd.DataFrame({
        "site": order,
        "region": [sc.region_ids[sc.site_region[i]] for i in idx],
        "certificate_share_pct": sc.site_renewable_share[idx] * 100,
        "contracted_kwh": sc.site_contracted_kw[idx].sum(axis=1) * sc.slot_hours,
    })
    for when, per in (("before", b), ("after", a)):
        frame[f"energy_kwh_{when}"] = per.loc[order, "energy_kwh"].to_numpy()
        frame[f"operational_location_kg_{when}"] = per.loc[order, "operational_emissions_g"].to_numpy() / 1000
        frame[f"operational_market_kg_{when}"] = per.loc[order, "operational_market_emissions_g"].to_numpy() / 1000
        frame[f"cfe_kwh_{when}"] = per.loc[order, "cfe_kwh"].to_numpy()
        frame[f"cfe_score_pct_{when}"] = per.loc[order, "cfe_score_pct"].to_numpy()
    total = _with_total(frame.drop(columns=[c for c in frame.columns if c.startswith("cfe_score")]), "site")
    for when in ("before", "after"):
        e, c = total[f"energy_kwh_{when}"], total[f"cfe_kwh_{when}"]
        total[f"cfe_score_pct_{when}"] = np.where(e > 0, c / e.where(e > 0) * 100, np.nan)
    total.loc[total["site"] == TOTAL, ["certificate_share_pct", "region"]] = [np.nan, ""]
    return total[frame.columns]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def cfe_hourly_table(sc: Scenario, ev: Evaluation) -> pd.DataFrame:
    """Site x slot hourly carbon-free energy score [%] (empty where the site draws nothing)."""
    cfe = ev.site_cfe_pct()
    frame = pd.DataFrame(cfe.T, columns=sc.site_ids)
    frame.insert(0, "slot_start", [sc.slot_time(t).strftime("%Y-%m-%d %H:%M") for t in range(sc.n_slots)])
    return frame


def _with_total(frame: pd.DataFrame, label_column: str) -> pd.DataFrame:
    """Append a `total` row summing every numeric column except shares and ratios (left blank)."""
    total: dict[str, Any] = {}
    for col in frame.columns:
        if col == label_column:
            total[col] = TOTAL
        elif col.startswith("g_per") or col.endswith("_g_per_kwh"):
            total[col] = np.nan
        else:
            total[col] = frame[col].sum()
    if "g_per_requested_core_h" in frame.columns and "requested_core_h" in frame.columns:
        ch = total["requested_core_h"]
        total["g_per_requested_core_h"] = total["emissions_kg"] * 1000 / ch if ch > 0 else np.nan
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def utilisation_table(sc: Scenario, site_util: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean and peak CPU utilisation per site, before and after, with the slot of the peak."""
    rows = []
    for s, site in enumerate(sc.site_ids):
        row: dict[str, Any] = {"site": site, "tier": sc.spec.sites[s].tier.value}
        for when in ("before", "after"):
            u = site_util[when][s] * 100
            peak = int(np.nanargmax(u)) if np.isfinite(u).any() else 0
            row[f"mean_pct_{when}"] = float(np.nanmean(u)) if np.isfinite(u).any() else np.nan
            row[f"peak_pct_{when}"] = float(u[peak]) if np.isfinite(u).any() else np.nan
            row[f"peak_slot_{when}"] = sc.slot_time(peak).strftime("%Y-%m-%d %H:%M")
        rows.append(row)
    return pd.DataFrame(rows)


def node_utilisation_table(sc: Scenario, before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Per node: powered hours and mean / peak CPU utilisation while powered, before and after."""
    out = {"node": sc.node_ids, "site": [sc.site_ids[s] for s in sc.node_site]}
    for when, ev in (("before", before), ("after", after)):
        u = np.where(ev.powered, ev.utilisation, np.nan) * 100
        has = ev.powered.any(axis=1)
        with np.errstate(invalid="ignore"):
            out[f"powered_h_{when}"] = ev.powered.sum(axis=1) * sc.slot_hours
            out[f"mean_pct_{when}"] = np.where(has, np.nanmean(np.where(has[:, None], u, 0.0), axis=1), np.nan)
            out[f"peak_pct_{when}"] = np.where(has, np.nanmax(np.where(has[:, None], u, 0.0), axis=1), np.nan)
    return pd.DataFrame(out)


def idle_capacity(sc: Scenario, ev: Evaluation, load: np.ndarray) -> pd.DataFrame:
    """Per site, mean over slots [cores]: capacity, powered, requested, used, idle, over-requested,
    and capacity never requested in any slot (over-provisioned)."""
    S, T = sc.n_sites, sc.n_slots
    cap = sc.node_capacity[:, CPU].astype(float) / 1000
    req = load[:, :, CPU] / 1000
    workload_use = _workload_use(sc, ev) / 1000
    used = np.where(ev.powered, ev.utilisation, 0.0) * cap[:, None]

    def site_sum(x: np.ndarray) -> np.ndarray:  # N x T -> S x T
        out = np.zeros((S, T))
        np.add.at(out, sc.node_site, x)
        return out

    cap_s = np.bincount(sc.node_site, weights=cap, minlength=S)
    powered_s = site_sum(ev.powered * cap[:, None])
    req_s, use_s, wl_use_s = site_sum(req), site_sum(used), site_sum(workload_use)
    idle_s = np.maximum(powered_s - req_s, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "site": sc.site_ids,
            "capacity_cores": cap_s,
            "powered_cores": powered_s.mean(axis=1),
            "requested_cores": req_s.mean(axis=1),
            "used_cores": use_s.mean(axis=1),
            "idle_powered_cores": idle_s.mean(axis=1),
            "idle_share_of_powered_pct": np.where(powered_s.sum(axis=1) > 0,
                                                  idle_s.sum(axis=1) / powered_s.sum(axis=1) * 100, np.nan),
            "requested_not_used_cores": np.maximum(req_s - wl_use_s, 0.0).mean(axis=1),
            "never_requested_cores": cap_s - req_s.max(axis=1),
        })
    return _with_total(frame, "site").assign(
        idle_share_of_powered_pct=lambda f: np.where(
            f["site"] == TOTAL,
            f["idle_powered_cores"] / f["powered_cores"].where(f["powered_cores"] > 0) * 100,
            f["idle_share_of_powered_pct"]))


def _workload_use(sc: Scenario, ev: Evaluation) -> np.ndarray:
    """N x T CPU used by workloads (not background) [millicores]."""
    cap = sc.node_capacity[:, CPU].astype(float)
    return np.maximum(ev.utilisation - sc.node_background_util, 0.0) * cap[:, None]


def consolidation_table(sc: Scenario, before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Nodes powered for fewer slots after than before, with per-node figures of both evaluations;
    an `(other nodes)` row for the rest and a `total` row equal to totals(before) - totals(after)."""
    pb, pa = before.per_node(), after.per_node()
    emb_b = (pb["operational_emissions_g"] + pb["embodied_emissions_g"]).to_numpy()
    emb_a = (pa["operational_emissions_g"] + pa["embodied_emissions_g"]).to_numpy()
    sleeps = before.powered.sum(axis=1) > after.powered.sum(axis=1)
    frame = pd.DataFrame({
        "node": sc.node_ids,
        "site": pb["site"],
        "powered_h_before": before.powered.sum(axis=1) * sc.slot_hours,
        "powered_h_after": after.powered.sum(axis=1) * sc.slot_hours,
        "energy_kwh_before": pb["energy_kwh"], "energy_kwh_after": pa["energy_kwh"],
        "emissions_kg_before": emb_b / 1000, "emissions_kg_after": emb_a / 1000,
        "operational_saved_kg": (pb["operational_emissions_g"] - pa["operational_emissions_g"]) / 1000,
        "embodied_saved_kg": (pb["embodied_emissions_g"] - pa["embodied_emissions_g"]) / 1000,
    })
    frame["energy_saved_kwh"] = frame["energy_kwh_before"] - frame["energy_kwh_after"]
    frame["emissions_saved_kg"] = frame["emissions_kg_before"] - frame["emissions_kg_after"]
    frame["sleep_h"] = frame["powered_h_before"] - frame["powered_h_after"]
    cols = ["node", "site", "powered_h_before", "powered_h_after", "sleep_h", "energy_kwh_before", "energy_kwh_after",
            "energy_saved_kwh", "operational_saved_kg", "embodied_saved_kg", "emissions_kg_before",
            "emissions_kg_after", "emissions_saved_kg"]
    frame = frame[cols]
    cand = frame[sleeps].sort_values("emissions_saved_kg", ascending=False)
    rest = frame[~sleeps]
    other = {c: rest[c].sum() for c in cols[2:]}
    other.update(node="(other nodes)", site="")
    total = {c: frame[c].sum() for c in cols[2:]}
    total.update(node=TOTAL, site="")
    return pd.concat([cand, pd.DataFrame([other, total])], ignore_index=True)


def idle_nodes_table(sc: Scenario, cases: list[tuple[str, Evaluation, tuple[np.ndarray, Evaluation]]]) -> pd.DataFrame:
    """Per placement: nodes with idle powered slots and what sleeping them saves (two evaluations)."""
    rows = []
    for label, ev, (idle, asleep) in cases:
        pn, pz = ev.per_node(), asleep.per_node()
        saved_kwh = (pn["energy_kwh"] - pz["energy_kwh"]).to_numpy()
        saved_op = (pn["operational_emissions_g"] - pz["operational_emissions_g"]).to_numpy()
        saved_emb = (pn["embodied_emissions_g"] - pz["embodied_emissions_g"]).to_numpy()
        for i in np.flatnonzero(idle.any(axis=1)):
            rows.append({"placement": label, "node": sc.node_ids[i], "site": sc.site_ids[sc.node_site[i]],
                         "idle_h": float(idle[i].sum() * sc.slot_hours), "energy_saved_kwh": float(saved_kwh[i]),
                         "operational_saved_kg": float(saved_op[i] / 1000), "embodied_saved_kg": float(saved_emb[i] / 1000),
                         "emissions_saved_kg": float((saved_op[i] + saved_emb[i]) / 1000)})
        # Nodes without idle slots can still change (shared on-site supply), so the
        # placement's total is the difference of the whole evaluations.
        a, z = ev.totals, asleep.totals
        rows.append({"placement": label, "node": TOTAL, "site": "",
                     "idle_h": float(idle.sum() * sc.slot_hours),
                     "energy_saved_kwh": a["energy_kwh"] - z["energy_kwh"],
                     "operational_saved_kg": (a["operational_emissions_g"] - z["operational_emissions_g"]) / 1000,
                     "embodied_saved_kg": (a["embodied_emissions_g"] - z["embodied_emissions_g"]) / 1000,
                     "emissions_saved_kg": (a["emissions_g"] - z["emissions_g"]) / 1000})
    return pd.DataFrame(rows, columns=["placement", "node", "site", "idle_h", "energy_saved_kwh", "operational_saved_kg",
                                       "embodied_saved_kg", "emissions_saved_kg"])


def headroom_table(sc: Scenario, ev: Evaluation, load: np.ndarray) -> pd.DataFrame:
    """Per site with users and per SLA class: eligible shared nodes, spare capacity and the extra
    replicas of the class's median request that fit, in the tightest slot."""
    K = len(sc.resources)
    classes = sorted({float(x) for x in sc.workload_sla_ms})
    spare = np.maximum(sc.node_capacity[:, None, :].astype(float) - load, 0.0)  # N x T x K
    shared = sc.node_dedicated_tenant < 0
    user_sites = sorted({sc.index_of("site", u.site) for u in sc.spec.users})
    rows = []
    for s in user_sites:
        users = [u for u, spec in enumerate(sc.spec.users) if spec.site == sc.site_ids[s]]
        worst = sc.user_site_latency_ms[users].max(axis=0)  # S: worst over the site's users
        for limit in classes:
            in_class = sc.workload_sla_ms == limit
            typical = np.median(sc.workload_requests[in_class], axis=0) if in_class.any() \
                else np.median(sc.workload_requests, axis=0) if sc.n_workloads else np.ones(K)
            ok = shared & (worst[sc.node_site] <= limit + 1e-9)
            need = np.where(typical > 0, typical, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                fits = np.floor(np.nanmin(spare[ok] / need[None, None, :], axis=2)) if ok.any() else np.zeros((0, sc.n_slots))
            fits = np.nan_to_num(fits, nan=0.0, posinf=0.0)
            awake = fits * ev.powered[ok]
            total_t, awake_t = fits.sum(axis=0), awake.sum(axis=0)
            tight = int(np.argmin(total_t)) if total_t.size else 0
            cores = (spare[ok][:, :, CPU].sum(axis=0) / 1000) if ok.any() else np.zeros(sc.n_slots)
            gib = (spare[ok][:, :, MEMORY].sum(axis=0) / 1024) if ok.any() else np.zeros(sc.n_slots)
            rows.append({
                "site": sc.site_ids[s], "users": ", ".join(sc.user_ids[u] for u in users),
                "sla_ms": "none" if not np.isfinite(limit) else f"{limit:g}",
                "eligible_nodes": int(ok.sum()), "eligible_sites": int(len(np.unique(sc.node_site[ok]))),
                "median_request_cores": float(typical[CPU] / 1000), "median_request_gib": float(typical[MEMORY] / 1024),
                "spare_cores": float(cores.min()) if cores.size else 0.0,
                "spare_gib": float(gib.min()) if gib.size else 0.0,
                "extra_replicas_awake": int(awake_t.min()) if awake_t.size else 0,
                "extra_replicas": int(total_t.min()) if total_t.size else 0,
                "tightest_slot": sc.slot_time(tight).strftime("%Y-%m-%d %H:%M"),
            })
    long = pd.DataFrame(rows, columns=["site", "users", "sla_ms", "eligible_nodes", "eligible_sites",
                                       "median_request_cores", "median_request_gib", "spare_cores", "spare_gib",
                                       "extra_replicas_awake", "extra_replicas", "tightest_slot"])
    return long


def headroom_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Site x SLA class: "extra replicas (awake only)" from `headroom_table`."""
    if long.empty:
        return pd.DataFrame({"site": []})
    order = list(dict.fromkeys(long["sla_ms"]))
    pivot = long.pivot(index="site", columns="sla_ms", values="extra_replicas")[order]
    awake = long.pivot(index="site", columns="sla_ms", values="extra_replicas_awake")[order]
    cells = pivot.astype(int).astype(str) + " (" + awake.astype(int).astype(str) + " awake)"
    cells.columns = [f"{c} ms" if c != "none" else "no SLA" for c in cells.columns]
    return cells.reset_index()


def renewables_table(sc: Scenario, before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Per site with on-site generation: generation, renewable energy used, self-consumption and coverage."""
    gen = sc.site_renewable_kw.sum(axis=1) * sc.slot_hours
    rows = []
    for s in np.flatnonzero(gen > 0):
        row: dict[str, Any] = {"site": sc.site_ids[s], "pv_kwp": sc.spec.sites[s].pv_kwp,
                               "battery_kwh": float(sc.site_battery_kwh[s]), "generation_kwh": float(gen[s])}
        for when, ev in (("before", before), ("after", after)):
            mask = sc.node_site == s
            used, demand = float(ev.renewable_kwh[mask].sum()), float(ev.energy_kwh[mask].sum())
            row[f"used_kwh_{when}"] = used
            row[f"self_consumption_pct_{when}"] = used / gen[s] * 100
            row[f"coverage_pct_{when}"] = used / demand * 100 if demand > 0 else np.nan
            row[f"curtailed_kwh_{when}"] = float(gen[s]) - used
        rows.append(row)
    cols = ["site", "pv_kwp", "battery_kwh", "generation_kwh"] + [
        f"{k}_{w}" for w in ("before", "after") for k in ("used_kwh", "self_consumption_pct", "coverage_pct", "curtailed_kwh")]
    return pd.DataFrame(rows, columns=cols)


# -----------------------------------------------------------------------------
# Text


def accounting_basis(sc: Scenario) -> str:
    kind = {"average": "grid-average", "marginal": "marginal"}.get(sc.intensity_kind, sc.intensity_kind)
    factor = f"{sc.factor_type} factors" if sc.factor_type else "factor type not stated"
    return (f"operational carbon location-based with {kind} emission factors ({factor}), market-based beside it; "
            f"embodied carbon on the fleet basis ({EMBODIED_BASES['fleet']}); per-tenant figures by SCI attribution")


def _meta(sc: Scenario, before_label: str, after_label: str, plan_info: dict[str, Any] | None) -> dict[str, str]:
    end = sc.slot_time(sc.n_slots)
    meta = {
        "scenario": f"{sc.spec.name} ({sc.source})",
        "horizon": f"{sc.slot_time(0):%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, {sc.n_slots} slots of "
                   f"{sc.slot_hours * 60:g} min",
        "infrastructure": f"{sc.n_sites} sites, {sc.n_nodes} nodes, {len(sc.tenant_ids)} tenants, "
                          f"{sc.n_workloads} workloads ({sc.n_replicas} replicas)",
        "before": before_label,
        "after": after_label,
        "carbon accounting": accounting_basis(sc),
    }
    if plan_info:
        facts = [f"{k} {plan_info[k]}" for k in ("solver", "status") if plan_info.get(k) is not None]
        if plan_info.get("gap_pct") is not None:
            facts.append(f"gap {float(plan_info['gap_pct']):.2f} %")
        basis = (plan_info.get("accounting") or {}).get("objective_carbon_basis") \
            if isinstance(plan_info.get("accounting"), dict) else None
        if basis:
            facts.append(f"objective {basis}-based operational carbon")
        if facts:
            meta["plan"] = ", ".join(facts) + " (as the solver reported it; every figure here is re-evaluated)"
    return meta


def _summary_text(sc: Scenario, before: Evaluation, after: Evaluation, load: np.ndarray,
                  labels: dict[str, str]) -> list[str]:
    a, b = after.totals, before.totals
    core_h = float(_core_hours(sc, load).sum())
    ren = a["renewable_kwh"] / a["energy_kwh"] * 100 if a["energy_kwh"] > 0 else 0.0

    def change_pct(key: str) -> str:
        return f"{(a[key] / b[key] - 1) * 100:+.1f} %" if b[key] > 0 else "n/a"

    d_emb = (a["embodied_emissions_g"] - b["embodied_emissions_g"]) / 1000
    embodied = "unchanged" if abs(d_emb) < 5e-4 else f"{d_emb:+,.2f} kg (rented capacity)"
    rules = "meets every rule" if before.feasible else f"breaks {len(before.violations)} rule(s)"
    lines = [
        f"Against {labels['before']} ({rules}): operational {change_pct('operational_emissions_g')} "
        f"({(a['operational_emissions_g'] - b['operational_emissions_g']) / 1000:+,.2f} kg, location-based; "
        f"market-based {change_pct('operational_market_emissions_g')}), energy "
        f"{a['energy_kwh'] - b['energy_kwh']:+,.1f} kWh; embodied (fleet) {embodied}.",
        f"Over the horizon, {labels['after']} uses {a['energy_kwh']:,.1f} kWh of facility energy "
        f"({ren:.1f} % from on-site renewables; hourly carbon-free score {a['cfe_score_pct']:.1f} %) and emits "
        f"{a['operational_emissions_g'] / 1000:,.2f} kgCO2e operational (location-based; "
        f"{a['operational_market_emissions_g'] / 1000:,.2f} market-based) plus "
        f"{a['embodied_emissions_g'] / 1000:,.2f} kgCO2e embodied (fleet basis).",
        f"On average {a['mean_active_nodes']:.1f} of {sc.n_nodes} nodes are on, at "
        f"{a['mean_utilisation_active'] * 100:.1f} % mean CPU utilisation; workloads request "
        f"{core_h:,.1f} core-hours, i.e. {a['emissions_g'] / core_h if core_h > 0 else float('nan'):,.1f} gCO2e "
        f"per requested core-hour (location-based operational plus fleet embodied).",
        f"Carbon accounting: {accounting_basis(sc)}.",
    ]
    return lines


def _method_text(sc: Scenario, labels: dict[str, str]) -> list[str]:
    return [
        "Every energy and carbon figure comes from edgeplace's one evaluation function "
        "(edgeplace.policies.evaluate.evaluate) applied to a placement; savings are differences of two evaluations.",
        "Energy is facility energy: IT power from each node's power curve at its CPU utilisation, times the "
        "site's PUE. On-site renewables serve the site first, then its battery, then the grid.",
        f"Operational emissions, location-based = grid energy x the region's {sc.intensity_kind} grid intensity per "
        "slot. Market-based (GHG Protocol Scope 2) = grid energy not matched hour by hour by contracted supply, "
        "less the site's certificate share, x the region's residual mix; " + market_note(sc) + ".",
        "Hourly carbon-free energy (CFE) score = (on-site renewables + hourly matched contracted supply) / "
        "energy, summed over the slots; certificates matched over the year do not count, nor does the grid's own "
        "carbon-free share (no signal for it).",
        "Embodied emissions, fleet basis: every owned node's embodied carbon / lifetime for every hour, on or off "
        "(sleeping saves operational carbon only); nodes rented by the hour (owned: false) only while powered.",
        "Tenant attribution (SCI, M = TE x TiR/EL x RR/ToR): each node-slot's energy and operational emissions "
        "split by requested CPU; embodied carbon by requested share of the node's CPU capacity; the rest "
        f"(idle capacity and sleeping nodes) is {UNALLOCATED}, so tenant rows add up to the fleet total.",
        f"Before = {labels['before']}; after = {labels['after']}. Utilisation includes background load.",
    ]
