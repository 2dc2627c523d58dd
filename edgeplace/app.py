"""Library calls behind the commands: each returns data, the CLI prints it.

pandas is imported where a table is made, not with the module: `plan` imports it
after solving, so its 65 MiB are not resident next to the solver's peak."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from edgeplace.policies.base import PlacementPolicy, PolicyFactory
from edgeplace.policies.baselines import baseline_registry
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

if TYPE_CHECKING:
    import pandas as pd


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
    import pandas as pd

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


#: The Kubernetes-default-like baseline every headline also compares against.
DEFAULT_SCHEDULER = "spread"
#: An embodied change smaller than this is "unchanged" [gCO2e] (float noise of the sums).
EMBODIED_UNCHANGED_G = 0.5


def compare_policies(scenario: Scenario, names: list[str] | None = None, carbon_basis: str = "location") -> pd.DataFrame:
    """Run each policy, evaluate its placement, and tabulate the figures side by side.

    Operational carbon is on `carbon_basis`, embodied on the fleet basis. The
    `d_*` columns are each row minus the reference: the best baseline that meets
    every rule (`reference_baseline`), named in `table.attrs["reference"]`.
    """
    import pandas as pd

    return with_reference(pd.DataFrame(policy_rows(scenario, names, carbon_basis)), carbon_basis)


def policy_rows(scenario: Scenario, names: list[str] | None = None, carbon_basis: str = "location") -> list[dict]:
    """`compare_policies`' rows, before the table: each policy run and evaluated in turn."""
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
        rows.append(_row(name, evaluate(scenario, placement), seconds, carbon_basis))
    return rows


def reference_baseline(table: pd.DataFrame) -> tuple[pd.Series | None, bool]:
    """The fair reference of a table: the baseline with the least emissions among those
    that meet every rule; if none does, the one with the fewest violations (then
    least emissions). Returns the row (None without baselines) and whether it meets the rules."""
    baselines = table[table["policy"].isin(list(baseline_registry()))]
    if baselines.empty:
        return None, False
    ok = baselines[baselines["meets_rules"]]
    pool = ok if not ok.empty else baselines
    order = ["violations", "emissions_kg"] if ok.empty else ["emissions_kg"]
    return pool.sort_values(order, kind="stable").iloc[0], not ok.empty


def with_reference(table: pd.DataFrame, carbon_basis: str) -> pd.DataFrame:
    """Add `d_operational_pct`, `d_energy_kwh`, `d_embodied_kg` against the reference baseline."""
    ref, meets = reference_baseline(table)
    op = f"operational_{carbon_basis}_kg"
    if ref is not None:
        def after(column: str, name: str, values) -> None:
            table.insert(table.columns.get_loc(column) + 1, name, values)

        after(op, "d_operational_pct", (table[op] / ref[op] - 1.0) * 100.0 if ref[op] > 0 else float("nan"))
        after("energy_kwh", "d_energy_kwh", table["energy_kwh"] - ref["energy_kwh"])
        after("embodied_fleet_kg", "d_embodied_kg", table["embodied_fleet_kg"] - ref["embodied_fleet_kg"])
        table.attrs["reference"] = str(ref["policy"])
        table.attrs["reference_meets_rules"] = meets
    table.attrs["carbon_basis"] = carbon_basis
    return table


def saving_line(row: pd.Series | dict, ref: pd.Series | dict, carbon_basis: str) -> str:
    """"operational -X % (-A kg), energy -Y kWh; embodied (fleet) unchanged": `row` against `ref`."""
    op = f"operational_{carbon_basis}_kg"
    d_op = float(row[op]) - float(ref[op])
    pct = f"{(float(row[op]) / float(ref[op]) - 1.0) * 100:+.1f} %" if float(ref[op]) > 0 else "n/a"
    d_emb_kg = float(row["embodied_fleet_kg"]) - float(ref["embodied_fleet_kg"])
    embodied = ("unchanged" if abs(d_emb_kg) * 1000 < EMBODIED_UNCHANGED_G
                else f"{d_emb_kg:+.2f} kg (rented capacity powered for {'longer' if d_emb_kg > 0 else 'less'})")
    return (f"operational {pct} ({d_op:+.2f} kg, {carbon_basis}-based), energy "
            f"{float(row['energy_kwh']) - float(ref['energy_kwh']):+.1f} kWh; embodied (fleet) {embodied}")


def _rules_text(row: pd.Series | dict) -> str:
    if row["meets_rules"]:
        return "meets every rule"
    parts = [f"{int(row[k])} {label}" for k, label in (("sla_viol", "SLA"), ("capacity_viol", "capacity"),
                                                       ("isolation_viol", "isolation"), ("other_viol", "other"))
             if row[k]]
    return "breaks " + ", ".join(parts) + " rule(s)"


def headline(table: pd.DataFrame, subject: str, carbon_basis: str) -> list[str]:
    """The headline of `subject` (a policy row of `table`): its saving against the fair
    reference baseline (and whether that meets every rule), then against Kubernetes-default
    spreading, each saying whether the baseline meets the rules. Operational first."""
    row = table.loc[table["policy"] == subject].iloc[0]
    ref, meets = reference_baseline(table)
    lines = [f"{subject} ({_rules_text(row)}):"]
    if ref is not None:
        what = "the best baseline that meets every rule" if meets else \
            "no baseline meets every rule; the one with the fewest violations"
        lines.append(f"  vs {ref['policy']} ({what}): {saving_line(row, ref, carbon_basis)}")
    spread = table.loc[table["policy"] == DEFAULT_SCHEDULER]
    if not spread.empty and (ref is None or ref["policy"] != DEFAULT_SCHEDULER):
        s = spread.iloc[0]
        lines.append(f"  vs {DEFAULT_SCHEDULER} (Kubernetes-default spreading, {_rules_text(s)}): "
                     f"{saving_line(row, s, carbon_basis)}")
    return lines


def plan_with_baseline(scenario: Scenario, options, progress=None, dump_model: str | None = None):
    """Solve, and tabulate the plan next to the reference baseline (the best that meets
    every rule) and Kubernetes-default spreading."""
    from edgeplace.optimizer.solve import solve

    if dump_model:
        from edgeplace.optimizer.debug import write_mps

        write_mps(scenario, options, dump_model)
    basis = options.objective.carbon_basis
    rows = policy_rows(scenario, list(baseline_registry()), basis)
    plan = solve(scenario, options, progress=progress)
    import pandas as pd  # after solving (module docstring)

    baselines = with_reference(pd.DataFrame(rows), basis)
    s = plan.summary()
    row = _row(f"plan ({plan.solver})", plan.evaluation, plan.solve_seconds, basis)
    ref, _meets = reference_baseline(baselines)
    keep = [p for p in dict.fromkeys([ref["policy"], DEFAULT_SCHEDULER]) if p in set(baselines["policy"])]
    base_cols = list(row)
    table = pd.concat([pd.DataFrame([row]), baselines[baselines["policy"].isin(keep)][base_cols]], ignore_index=True)
    table = with_reference(table, basis)
    table["gap_pct"] = [s["gap_pct"]] + [None] * (len(table) - 1)
    return plan, table


def demo(scenario: Scenario, time_limit_s: float = 15.0, progress=None):
    """The baselines and the optimizer (CP-SAT) on one scenario: the table and the plan."""
    import pandas as pd

    from edgeplace.optimizer.solve import SolveOptions, solve

    rows = compare_policies(scenario, [*baseline_registry(), "greedy"])
    plan = solve(scenario, SolveOptions(solver="cpsat", time_limit_s=time_limit_s), progress=progress)
    row = _row(f"plan ({plan.solver})", plan.evaluation, plan.solve_seconds, "location")
    table = pd.concat([rows[[c for c in row]], pd.DataFrame([row])], ignore_index=True)
    return with_reference(table, "location"), plan


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


def _row(policy: str, result: Evaluation, seconds: float, carbon_basis: str = "location") -> dict[str, object]:
    """One row of the comparison tables: a policy's evaluated figures, operational on `carbon_basis`
    and embodied on the fleet basis."""
    t = result.totals
    main_kinds = t["sla_violations"] + t["capacity_violations"] + t["isolation_violations"]
    return {
        "policy": policy,
        f"operational_{carbon_basis}_kg": float(result.operational(carbon_basis).sum()) / 1000,
        "energy_kwh": t["energy_kwh"],
        "mean_power_w": t["mean_power_w"],
        "renewable_kwh": t["renewable_kwh"],
        "embodied_fleet_kg": t["embodied_emissions_g"] / 1000,
        "emissions_kg": result.emissions_on(carbon_basis) / 1000,
        "active_nodes": t["mean_active_nodes"],
        "sla_viol": t["sla_violations"],
        "capacity_viol": t["capacity_violations"],
        "isolation_viol": t["isolation_violations"],
        "other_viol": len(result.violations) - main_kinds,
        "violations": len(result.violations),
        "meets_rules": result.feasible,
        "time_s": seconds,
    }
