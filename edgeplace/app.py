"""Library calls behind the commands: each returns data, the CLI prints it."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

import pandas as pd

from edgeplace.policies.base import PlacementPolicy, PolicyFactory
from edgeplace.policies.baselines import baseline_registry
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario


def example_path(name: str) -> Path:
    """Path of a bundled example scenario (shipped as package data `edgeplace.examples`)."""
    return Path(str(files("edgeplace.examples") / name))


def policy_registry() -> dict[str, PolicyFactory]:
    """Every policy the commands can run, by name: the baselines, then the solvers."""
    registry: dict[str, PolicyFactory] = dict(baseline_registry())
    try:
        from edgeplace.optimizer import solver_registry
    except ImportError:  # the optimizer package is optional in minimal installs
        return registry
    registry.update(solver_registry())
    return registry


def make_policy(name: str) -> PlacementPolicy:
    """A policy by name: a baseline, a solver, or `current` (the scenario's recorded placement)."""
    from edgeplace.policies.baselines import CurrentPolicy

    registry = {**policy_registry(), CurrentPolicy.name: CurrentPolicy}
    if name not in registry:
        raise InputError("--policy", [Problem(name, f"unknown policy; choose one of {', '.join(registry)}")])
    return registry[name]()


def scenario_summary(scenario: Scenario) -> dict[str, object]:
    sc = scenario
    tiers = pd.Series([s.tier.value for s in sc.spec.sites]).value_counts().to_dict()
    return {
        "name": sc.spec.name,
        "slots": sc.n_slots,
        "slot_hours": sc.slot_hours,
        "regions": len(sc.region_ids),
        "sites": sc.n_sites,
        "sites_by_tier": ", ".join(f"{k}={v}" for k, v in tiers.items()),
        "nodes": sc.n_nodes,
        "tenants": len(sc.tenant_ids),
        "workloads": sc.n_workloads,
        "replicas": sc.n_replicas,
        "deferrable_workloads": int(sc.workload_deferrable.sum()),
        "cpu_requested_share": float((sc.workload_requests[:, 0] * sc.workload_replicas).sum() / sc.node_capacity[:, 0].sum()),
        "intensity_kind": sc.intensity_kind,
    }


def evaluate_source(scenario: Scenario, placement_file: str | None = None,
                    policy: str | None = None) -> tuple[Placement, Evaluation]:
    """The placement from a file or a policy, and its evaluation."""
    if placement_file is not None:
        placement = Placement.load(scenario, placement_file)
    else:
        placement = make_policy(policy or "").place(scenario)
    return placement, evaluate(scenario, placement)


def breakdown(result: Evaluation, by: str) -> pd.DataFrame:
    return {"site": result.per_site, "node": result.per_node, "tenant": result.per_tenant, "slot": result.per_slot}[by]()


def compare_policies(scenario: Scenario, names: list[str] | None = None) -> pd.DataFrame:
    """Run each policy, evaluate its placement, and tabulate the figures side by side.

    The `vs_spread_pct` column is the change in total emissions against the
    Kubernetes-default-like `spread` baseline (negative = less CO2e).
    """
    registry = policy_registry()
    names = names or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise InputError("--policies", [Problem(n, f"unknown policy; choose from {', '.join(registry)}") for n in unknown])
    rows = []
    for name in names:
        started = time.perf_counter()
        placement = registry[name]().place(scenario)
        seconds = time.perf_counter() - started
        rows.append(_row(name, evaluate(scenario, placement), seconds))
    table = pd.DataFrame(rows)
    if "spread" in set(table["policy"]):
        ref = float(table.loc[table["policy"] == "spread", "emissions_kg"].iloc[0])
        table["vs_spread_pct"] = (table["emissions_kg"] / ref - 1.0) * 100.0 if ref > 0 else float("nan")
    return table


def plan_with_baseline(scenario: Scenario, options, progress=None, dump_model: str | None = None):
    """Solve, and tabulate the plan next to the best baseline (fewest violations, then least emissions)."""
    from edgeplace.optimizer.solve import solve

    if dump_model:
        from edgeplace.optimizer.debug import write_mps

        write_mps(scenario, options, dump_model)
    baselines = compare_policies(scenario, list(baseline_registry()))
    best = baselines.sort_values(["sla_viol", "capacity_viol", "isolation_viol", "other_viol", "emissions_kg"]).iloc[0]
    plan = solve(scenario, options, progress=progress)
    s = plan.summary()
    row = _row(f"plan ({plan.solver})", plan.evaluation, plan.solve_seconds)
    table = pd.DataFrame([row, {k: best[k] for k in row}])
    table.loc[1, "policy"] = f"best baseline ({best['policy']})"
    ref = float(best["emissions_kg"])
    table["vs_best_baseline_pct"] = (table["emissions_kg"] / ref - 1.0) * 100.0 if ref > 0 else float("nan")
    table["gap_pct"] = [s["gap_pct"], None]
    return plan, table


def demo(scenario: Scenario, time_limit_s: float = 15.0, progress=None):
    """The baselines and the optimizer (CP-SAT) on one scenario: the table and the plan."""
    from edgeplace.optimizer.solve import SolveOptions, solve

    table = compare_policies(scenario, [*baseline_registry(), "greedy"])
    plan = solve(scenario, SolveOptions(solver="cpsat", time_limit_s=time_limit_s, bound_time_limit_s=time_limit_s),
                 progress=progress)
    row = _row(f"plan ({plan.solver})", plan.evaluation, plan.solve_seconds)
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    ref = float(table.loc[table["policy"] == "spread", "emissions_kg"].iloc[0])
    table["vs_spread_pct"] = (table["emissions_kg"] / ref - 1.0) * 100.0
    return table, plan


def facts_lines(result: Evaluation) -> list[str]:
    """What a table of figures does not show: the PUE applied and which nodes sleep."""
    sc = result.scenario
    pues = sorted({float(p) for p in sc.site_pue})
    pue = (f"PUE {pues[0]:g} at every site" if len(pues) == 1 else
           f"PUE {pues[0]:g}-{pues[-1]:g} by site") + " (facility energy = IT energy x PUE)"
    always, part = result.asleep_nodes()
    lines = [pue, f"nodes asleep for the whole horizon ({len(always)} of {sc.n_nodes}): {', '.join(always) or 'none'}"]
    if part:
        lines.append(f"nodes asleep in some slots ({len(part)}): {', '.join(part)}")
    return lines


def _row(policy: str, result: Evaluation, seconds: float) -> dict[str, object]:
    """One row of the comparison tables: a policy's evaluated figures."""
    t = result.totals
    main_kinds = t["sla_violations"] + t["capacity_violations"] + t["isolation_violations"]
    return {
        "policy": policy,
        "emissions_kg": t["emissions_g"] / 1000,
        "operational_kg": t["operational_emissions_g"] / 1000,
        "embodied_kg": t["embodied_emissions_g"] / 1000,
        "energy_kwh": t["energy_kwh"],
        "mean_power_w": t["mean_power_w"],
        "renewable_kwh": t["renewable_kwh"],
        "active_nodes": t["mean_active_nodes"],
        "sla_viol": t["sla_violations"],
        "capacity_viol": t["capacity_violations"],
        "isolation_viol": t["isolation_violations"],
        "other_viol": len(result.violations) - main_kinds,
        "time_s": seconds,
    }
