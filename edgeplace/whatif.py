"""What-if sweeps: plan every combination of `--vary` values and compare.

`run_whatif(scenario, vary, options, engine)` parses the `--vary` keys
(`edgeplace.variations`), builds the grid, and for the base case and every
case: varies the spec, compiles it (a case that is not a valid scenario,
e.g. an SLA no node can meet, becomes an `invalid` row with the reason),
solves it with `edgeplace.optimizer.solve.solve` and takes the figures from the plan's
evaluation (`edgeplace.policies.evaluate`, the one source of figures). Cases run on the
sweep engine (`edgeplace.sweep`): in-process, local worker processes or a
Dask cluster; with a results file, finished cases are kept and a second run
resumes from them.

Each case is evaluated on its own varied world: `pv_kwp[x]=50` is measured
with 50 kWp of supply, `demand.scale=2` with twice the replicas. Operational
carbon is on the plans' Scope 2 basis (`Objective.carbon_basis`), embodied
carbon on the fleet basis: a case that removes nodes or sites (`site[X]=off`,
`nodes[X]=N`) changes it, one whose plans only sleep nodes does not. The `d_*`
columns are case minus base; `d_*_pct` relative to the base. They
are left empty for a case whose plan breaks more rules than the base's (work
left unplaced is not a saving); its `status`, `violations` and `message`
say what broke. Differences smaller than `gap_pct` of the plans may be the
solver's, not the world's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from edgeplace.sweep import Engine, Progress, ResultsFile, digest, run_sweep
from edgeplace.variations import Axis, Case, apply_case, case_label, grid, parse_axes
from edgeplace.optimizer.solve import Plan, SolveOptions, solve
from edgeplace.topology.errors import InputError
from edgeplace.topology.load import compile_spec
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.spec import ScenarioSpec

#: Label of the unvaried scenario in the table's key columns.
BASE = "(base)"
#: Figures of one case, in table order.
FIGURES = ("operational_kg", "energy_kwh", "embodied_fleet_kg", "emissions_kg", "renewable_kwh", "cfe_score_pct",
           "active_nodes", "peak_active_nodes", "utilisation_pct", "sla_viol", "violations", "replicas", "nodes")


@dataclass(frozen=True)
class CaseTask:
    """What a worker needs for one case (plain, picklable data)."""

    spec: ScenarioSpec
    source: str
    case: Case
    options: SolveOptions


def run_case(task: CaseTask) -> dict[str, Any]:
    """Vary, compile, solve and evaluate one case; JSON-able figures (the worker function)."""
    label = case_label(task.case)
    try:
        spec, options = apply_case(task.spec, task.case, task.options)
        scenario = compile_spec(spec, f"{task.source} [{label}]")
    except InputError as exc:
        return {"status": "invalid", "message": "; ".join(str(p) for p in exc.problems[:3])
                + (f" (+{len(exc.problems) - 3} more)" if len(exc.problems) > 3 else "")}
    return plan_figures(scenario, solve(scenario, options))


def plan_figures(scenario: Scenario, plan: Plan) -> dict[str, Any]:
    """The figures of a plan, all from its evaluation (kg, kWh, counts); operational carbon on
    the plan's Scope 2 basis, embodied on the fleet basis."""
    ev, t = plan.evaluation, plan.evaluation.totals
    basis = plan.carbon_basis
    return {
        "status": plan.status, "solver": plan.solver, "carbon_basis": basis,
        "operational_kg": float(ev.operational(basis).sum()) / 1000, "energy_kwh": t["energy_kwh"],
        "embodied_fleet_kg": t["embodied_emissions_g"] / 1000, "emissions_kg": ev.emissions_on(basis) / 1000,
        "renewable_kwh": t["renewable_kwh"], "cfe_score_pct": t["cfe_score_pct"], "active_nodes": t["mean_active_nodes"],
        "peak_active_nodes": t["peak_active_nodes"], "utilisation_pct": t["mean_utilisation_active"] * 100,
        "sla_viol": t["sla_violations"], "violations": len(plan.evaluation.violations),
        "replicas": scenario.n_replicas, "nodes": scenario.n_nodes,
        "gap_pct": None if plan.gap is None else plan.gap * 100, "solve_s": plan.solve_seconds,
        "message": "; ".join(v.message for v in plan.evaluation.violations[:2]),
    }


@dataclass
class WhatIfResult:
    table: pd.DataFrame
    cases: int  # cases in the grid (the base case not counted)
    computed: int  # cases (incl. base) computed in this run
    reused: int  # cases (incl. base) taken from the results file
    engine: str


def case_key(spec_digest: str, case: Case, options: SolveOptions) -> str:
    """Digest of what a case's result depends on (the resume key)."""
    return digest({"scenario": spec_digest, "case": [[k, v] for k, _label, v in case], "options": asdict(options)})


def run_whatif(scenario: Scenario, vary: list[str], options: SolveOptions, engine: Engine, *,
               results: ResultsFile | None = None, progress: Progress | None = None) -> WhatIfResult:
    """The comparison table of the base case and every case of the `--vary` grid."""
    spec = scenario.spec
    axes = parse_axes(vary, spec)
    cases: list[Case] = [(), *grid(axes)]
    spec_digest = digest(spec.model_dump(mode="json"))
    keys = [case_key(spec_digest, c, options) for c in cases]
    payloads = {k: CaseTask(spec, scenario.source, c, options) for k, c in zip(keys, cases)}
    by_key = dict(zip(keys, cases))
    labelled = None if progress is None else (lambda done, total, k: progress(done, total, case_label(by_key.get(k, ()))
                                                                              if k in by_key else k))
    outcome = run_sweep(run_case, payloads, engine, results=results, progress=labelled,
                        describe=lambda k: {key: label for key, label, _v in by_key[k]})
    table = comparison_table(axes, cases, [outcome.results[k] for k in keys])
    return WhatIfResult(table, len(cases) - 1, len(outcome.computed), len(outcome.reused), engine.name)


def comparison_table(axes: list[Axis], cases: list[Case], figures: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per case (base first): the axis values, figures and differences to the base."""
    rows = []
    for case, fig in zip(cases, figures):
        labels = {key: label for key, label, _v in case}
        row: dict[str, Any] = {a.key: labels.get(a.key, BASE) for a in axes}
        row["status"] = fig.get("status")
        for name in FIGURES:
            row[name] = fig.get(name, math.nan)
        row.update(gap_pct=fig.get("gap_pct"), solver=fig.get("solver", ""), solve_s=fig.get("solve_s", math.nan),
                   message=fig.get("message", ""))
        rows.append(row)
    table = pd.DataFrame(rows)
    base = figures[0]
    # A plan that leaves work undone is no cheaper world: differences only for
    # cases that break no more rules than the base case.
    comparable = table["violations"].astype(float) <= float(base.get("violations", 0))
    for name in ("operational_kg", "energy_kwh", "embodied_fleet_kg", "emissions_kg", "active_nodes"):
        ref = base.get(name, math.nan)
        table[f"d_{name}"] = (table[name].astype(float) - (ref if ref is not None else math.nan)).where(comparable)
    for name in ("operational_kg", "emissions_kg"):
        ref = base.get(name)
        table[f"d_{name.removesuffix('_kg')}_pct"] = ((table[name].astype(float) / ref - 1.0) * 100).where(comparable) \
            if ref else math.nan
    # Operational carbon and energy first, then embodied (fleet), then the sum.
    front = [a.key for a in axes] + ["status", "operational_kg", "d_operational_kg", "d_operational_pct", "energy_kwh",
                                     "d_energy_kwh", "embodied_fleet_kg", "d_embodied_fleet_kg", "emissions_kg",
                                     "d_emissions_kg", "d_emissions_pct", "active_nodes", "d_active_nodes",
                                     "utilisation_pct", "sla_viol", "violations"]
    rest = [c for c in table.columns if c not in front]
    return table[front + rest]


__all__ = ["BASE", "CaseTask", "WhatIfResult", "case_key", "comparison_table", "plan_figures", "run_case", "run_whatif"]
