"""The price of a millisecond: the latency-emissions frontier.

For SLA targets from tight to loose, `pareto(scenario, options)` plans each
with the optimizer (`edgeplace.optimizer.solve.solve`) and evaluates the plan
(`edgeplace.policies.evaluate`). Points are SLA scales applied to every SLA (or to the
workloads a selector picks, `edgeplace.variations` selectors), or absolute
SLA values for the selected workloads.

Columns:
- `mean_sla_ms`: the replica-weighted mean SLA bound of the selected
  workloads at that point (the x axis);
- `emissions_kg`: the evaluated emissions of that point's plan;
- `frontier_kg`: the least emissions found at that SLA or any tighter one
  (a plan meeting a tighter SLA meets a looser one, so the frontier never
  rises; a rise in `emissions_kg` is the solver's gap, not the world);
- `marginal_g_per_ms`: frontier gCO2e saved per ms the mean SLA is loosened
  from the previous point (over the scenario's horizon), and
  `marginal_wh_per_ms` the same for facility energy;
- `mean_latency_ms`: the replica-slot-weighted mean worst-user latency the
  plan delivers to the selected workloads (computed here from the placement
  and the scenario's latency table; `edgeplace.policies.evaluate` has no latency
  figure yet).

"Stops buying anything": the tightest point whose frontier is within
`tolerance_pct` of the loosest point's: looser SLAs than that save less than
the tolerance.

Automatic scales (`scales=None`): from the tightest scale at which every
selected workload still has a node within its SLA (capacity aside) to the
scale beyond which no SLA excludes any node, spaced geometrically, plus 1.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgeplace.sweep import Engine, InProcessEngine, Progress, digest, run_sweep
from edgeplace.variations import apply_case, case_label, parse_vary, selected_workloads
from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import compile_spec
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.spec import ScenarioSpec

#: Points of the automatic scale range.
DEFAULT_POINTS = 10
#: Default tolerance of "stops buying anything" [% of the loosest point's emissions].
DEFAULT_TOLERANCE_PCT = 0.5


@dataclass(frozen=True)
class ParetoOptions:
    """`scales` (None = automatic) multiply SLAs; `sla_ms` sets them (needs a
    selector); `selector` limits both to some workloads."""

    solve: SolveOptions = field(default_factory=SolveOptions)
    scales: tuple[float, ...] | None = None
    sla_ms: tuple[float, ...] | None = None
    selector: str | None = None
    points: int = DEFAULT_POINTS
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT

    def __post_init__(self) -> None:
        if self.scales is not None and self.sla_ms is not None:
            raise ValueError("give scales or sla_ms, not both")
        if self.sla_ms is not None and self.selector is None:
            raise ValueError("sla_ms needs a selector (the workloads whose SLA is set)")
        if self.points < 2:
            raise ValueError(f"points must be >= 2 (got {self.points})")
        if not self.tolerance_pct >= 0:
            raise ValueError(f"tolerance_pct must be >= 0 (got {self.tolerance_pct})")


def auto_scales(scenario: Scenario, selector: str | None, points: int = DEFAULT_POINTS) -> list[float]:
    """SLA scales from the tightest feasible (per workload, capacity aside) to the loosest that binds."""
    ids = set(selected_workloads(scenario.spec, selector))
    rows = [w for w, wid in enumerate(scenario.workload_ids) if wid in ids and np.isfinite(scenario.workload_sla_ms[w])]
    if not rows:
        raise InputError("--select", [Problem(selector or "", "selects no workload with a latency SLA")])
    lat = scenario.workload_site_latency_ms[rows][:, scenario.node_site]  # W' x N
    allowed = scenario.workload_node_allowed[rows]
    sla = scenario.workload_sla_ms[rows]
    lo = float(max((lat[i][allowed[i]].min() / sla[i]) for i in range(len(rows))))
    hi = float(max((lat[i][allowed[i]].max() / sla[i]) for i in range(len(rows))))
    lo = _round_up(lo)
    if hi <= lo:
        return [lo]
    scales = {_round(x) for x in np.geomspace(lo, hi, points).tolist()} | {lo}
    if lo < 1.0 < hi:
        scales.add(1.0)
    return sorted(scales)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def _round_up(x: float) -> float:
    """x rounded up to 3 significant digits (so the tightest point stays feasible)."""
    if x <= 0:
        return x
    step = 10 ** (math.floor(math.log10(x)) - 2)
    return round(math.ceil(x / step - 1e-9) * step, 12)


@dataclass(frozen=True)
class PointTask:
    spec: ScenarioSpec
    source: str
    case: tuple
    options: SolveOptions
    workloads: frozenset[str]  # the selected workloads (ids in the scenario as written)


def run_point(task: PointTask) -> dict[str, Any]:
    """Plan and evaluate one SLA point (the worker function)."""
    try:
        spec, options = apply_case(task.spec, task.case, task.options)
        scenario = compile_spec(spec, f"{task.source} [{case_label(task.case)}]")
    except InputError as exc:
        return {"status": "invalid", "message": "; ".join(str(p) for p in exc.problems[:2])}
    plan = solve(scenario, options)
    ev, t = plan.evaluation, plan.evaluation.totals
    rows = _selected_rows(scenario, task.workloads)
    return {
        "status": plan.status, "solver": plan.solver,
        "emissions_kg": ev.emissions_on(plan.carbon_basis) / 1000,
        "operational_kg": float(ev.operational(plan.carbon_basis).sum()) / 1000,
        "embodied_fleet_kg": t["embodied_emissions_g"] / 1000, "energy_kwh": t["energy_kwh"],
        "active_nodes": t["mean_active_nodes"], "sla_viol": t["sla_violations"],
        "violations": len(plan.evaluation.violations),
        "mean_sla_ms": _mean_sla_ms(scenario, rows), "mean_latency_ms": mean_latency_ms(scenario, plan.placement, rows),
        "gap_pct": None if plan.gap is None else plan.gap * 100, "solve_s": plan.solve_seconds,
    }


def _selected_rows(scenario: Scenario, ids: frozenset[str]) -> np.ndarray:
    return np.array([w for w, wid in enumerate(scenario.workload_ids)
                     if wid in ids and np.isfinite(scenario.workload_sla_ms[w])], dtype=np.int64)


def _mean_sla_ms(scenario: Scenario, rows: np.ndarray) -> float:
    reps = scenario.workload_replicas[rows]
    return float((scenario.workload_sla_ms[rows] * reps).sum() / reps.sum()) if reps.sum() else math.nan


def mean_latency_ms(scenario: Scenario, placement: Placement, rows: np.ndarray) -> float:
    """Replica-slot-weighted mean of the worst-user latency [ms] delivered to workloads `rows`."""
    c = placement.cells()
    chosen = np.isin(scenario.replica_workload[c.replica], rows)
    if not chosen.any():
        return math.nan
    w = scenario.replica_workload[c.replica[chosen]]
    site = scenario.node_site[c.node[chosen]]
    return float(scenario.workload_site_latency_ms[w, site].mean())


@dataclass
class ParetoResult:
    table: pd.DataFrame
    summary: dict[str, Any]


def pareto(scenario: Scenario, options: ParetoOptions, engine: Engine | None = None,
           progress: Progress | None = None) -> ParetoResult:
    """The frontier table and its summary (see the module docstring)."""
    spec = scenario.spec
    name = "sla.latency_ms" if options.sla_ms is not None else "sla.scale"
    key = f"{name}[{options.selector}]" if options.selector else name
    selector = parse_vary(f"{key}=1", spec).target  # checked, in explicit form (None = every SLA)
    values = list(options.sla_ms or options.scales or auto_scales(scenario, selector, options.points))
    axis = parse_vary(f"{key}={','.join(f'{v:g}' for v in values)}", spec)
    order = np.argsort(axis.values, kind="stable")
    cases = [((axis.key, axis.labels[i], axis.values[i]),) for i in order]
    spec_digest = digest(spec.model_dump(mode="json"))
    keys = [digest({"scenario": spec_digest, "case": [[k, v] for k, _l, v in c], "solver": repr(options.solve)})
            for c in cases]
    chosen = frozenset(selected_workloads(spec, selector))
    payloads = {k: PointTask(spec, scenario.source, c, options.solve, chosen) for k, c in zip(keys, cases)}
    labels = {k: case_label(c) for k, c in zip(keys, cases)}
    labelled = None if progress is None else (lambda done, total, k: progress(done, total, labels.get(k, k)))
    outcome = run_sweep(run_point, payloads, engine or InProcessEngine(), progress=labelled)
    rows = []
    for k, case in zip(keys, cases):
        fig = outcome.results[k]
        rows.append({("sla_ms" if options.sla_ms is not None else "sla_scale"): case[0][2], **fig})
    return _frontier(pd.DataFrame(rows), options)


def _frontier(table: pd.DataFrame, options: ParetoOptions) -> ParetoResult:
    for col in ("emissions_kg", "energy_kwh", "mean_sla_ms", "mean_latency_ms", "active_nodes"):
        if col not in table:
            table[col] = math.nan
    ok = table["status"].isin(["optimal", "feasible", "fallback"]) & (table["violations"].fillna(1) == 0)
    frontier_kg, frontier_kwh, source = [], [], []
    best: tuple[float, float, Any] | None = None
    for i, row in table.iterrows():
        if ok[i] and (best is None or row["emissions_kg"] < best[0]):
            best = (float(row["emissions_kg"]), float(row["energy_kwh"]), row.iloc[0])
        frontier_kg.append(best[0] if best else math.nan)
        frontier_kwh.append(best[1] if best else math.nan)
        source.append(best[2] if best else None)
    table["frontier_kg"] = frontier_kg
    table["frontier_from"] = source
    d_ms = table["mean_sla_ms"].diff()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["marginal_g_per_ms"] = -(table["frontier_kg"].diff() * 1000) / d_ms
        table["marginal_wh_per_ms"] = -(pd.Series(frontier_kwh).diff() * 1000) / d_ms
    for col in ("marginal_g_per_ms", "marginal_wh_per_ms"):
        table[col] = table[col] + 0.0  # no "-0" in the output
    summary: dict[str, Any] = {"points": len(table), "feasible_points": int(ok.sum())}
    valid = table["frontier_kg"].notna()
    if valid.any():
        loosest = float(table.loc[valid, "frontier_kg"].iloc[-1])
        tightest_idx = table.index[valid][0]
        within = valid & (table["frontier_kg"] - loosest <= options.tolerance_pct / 100 * loosest)
        sat = table.index[within][0]
        x = table.columns[0]
        table["note"] = ""
        table.loc[tightest_idx, "note"] = "tightest feasible"
        table.loc[sat, "note"] = (table.loc[sat, "note"] + "; " if table.loc[sat, "note"] else "") + \
            f"looser saves < {options.tolerance_pct:g} %"
        span_ms = float(table.loc[sat, "mean_sla_ms"] - table.loc[tightest_idx, "mean_sla_ms"])
        span_g = float(table.loc[tightest_idx, "frontier_kg"] - table.loc[sat, "frontier_kg"]) * 1000
        summary.update({
            "tightest_feasible": table.loc[tightest_idx, x], "tightest_kg": float(table.loc[tightest_idx, "frontier_kg"]),
            "saturates_at": table.loc[sat, x], "saturates_at_mean_sla_ms": float(table.loc[sat, "mean_sla_ms"]),
            "loosest_kg": loosest,
            "tight_to_saturation_saves_kg": span_g / 1000,
            "mean_g_per_ms_until_saturation": span_g / span_ms if span_ms > 0 else None,
        })
    return ParetoResult(table, {k: (v.item() if hasattr(v, "item") else v) for k, v in summary.items()})


def plot(result: ParetoResult, path: str | Path, title: str) -> None:
    """The frontier as a PNG, written atomically (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result.table
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    feasible = t["violations"].fillna(1) == 0
    ax.plot(t.loc[feasible, "mean_sla_ms"], t.loc[feasible, "emissions_kg"], "o", color="0.6", label="plan at this SLA")
    if (~feasible & t["emissions_kg"].notna()).any():
        ax.plot(t.loc[~feasible, "mean_sla_ms"], t.loc[~feasible, "emissions_kg"], "x", color="tab:red",
                label="breaks a rule (capacity, ...)")
    ax.step(t["mean_sla_ms"], t["frontier_kg"], where="post", color="tab:green", lw=2, label="frontier (least so far)")
    for (_, a), (_, b) in zip(t.iloc[:-1].iterrows(), t.iloc[1:].iterrows()):
        m = b["marginal_g_per_ms"]
        if np.isfinite(m) and m > 0:
            ax.annotate(f"{m:,.0f} g/ms", ((a["mean_sla_ms"] + b["mean_sla_ms"]) / 2, max(a["frontier_kg"], b["frontier_kg"])),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7, color="tab:green")
    if "saturates_at_mean_sla_ms" in result.summary:
        ax.axvline(result.summary["saturates_at_mean_sla_ms"], ls="--", color="0.4", lw=1)
        ax.annotate("looser buys (almost) nothing", (result.summary["saturates_at_mean_sla_ms"], ax.get_ylim()[1]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8, color="0.3")
    ax.set_xlabel("mean latency SLA of the selected workloads [ms] (replica-weighted)")
    ax.set_ylabel("emissions over the horizon [kgCO2e]")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


__all__ = ["ParetoOptions", "ParetoResult", "PointTask", "auto_scales", "mean_latency_ms", "pareto", "plot", "run_point"]
