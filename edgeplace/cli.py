"""The `edgeplace` command: parse, make one library call, print.

Exit codes (also in README.md):
  0  success
  1  the evaluated placement breaks a rule (evaluate), or no plan meets every rule (plan)
  2  usage error: unknown command, bad or conflicting flags
  3  invalid input: a scenario, placement or signal file has problems (all listed)
  70 internal error (a bug: rerun with EDGEPLACE_DEBUG=1 for the traceback and report it)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from edgeplace.argtypes import nonneg_float as _nonneg_float, positive_float as _positive_float, positive_int as _positive_int
from pathlib import Path
from typing import Callable, Sequence

from edgeplace.topology.errors import InputError

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3, 70
FORMATS = ("table", "json", "csv")
#: Modules with `add_commands(subparsers) -> {command: handler}`: Kubernetes
#: (import, serve), actuation (rebalance), signals, what-if planning, reports, exports, power-curve calibration.
EXTENSION_MODULES = ("edgeplace.cluster_cli", "edgeplace.actuation_cli", "edgeplace.signals_cli",
                     "edgeplace.planning_cli", "edgeplace.report_cli", "edgeplace.export_cli", "edgeplace.calibrate_cli")
EXTENSIONS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _scenario_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (YAML or JSON; see `edgeplace schema`)")


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _carbon_basis_arg(p: argparse.ArgumentParser, objective: bool = False) -> None:
    what = "the optimizer minimises and the table shows" if objective else "the table shows"
    p.add_argument("--carbon-basis", choices=("location", "market"), default="location",
                   help=f"GHG Protocol Scope 2 basis of the operational carbon {what} (default: location)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeplace",
        description="Carbon-aware placement for multi-tenant cloud-edge infrastructure.",
        epilog="Exit codes: 0 ok, 1 rule violations, 2 usage error, 3 invalid input, 70 internal error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a scenario file and summarise it",
                       description="Check every field of a scenario; list all problems with their paths.")
    _scenario_arg(p)
    _format_arg(p)

    p = sub.add_parser("evaluate", help="energy, emissions and rule checks of one placement",
                       description="Evaluate a placement file, or the placement a policy makes, against a scenario.")
    _scenario_arg(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--placement", metavar="FILE", help="placement JSON (as written by `plan -o` or `evaluate --save`)")
    src.add_argument("--policy", metavar="NAME", help="a baseline or solver name (see `edgeplace compare --help`)")
    p.add_argument("--save", metavar="FILE", help="also write the evaluated placement as JSON")
    p.add_argument("--by", choices=("total", "site", "node", "tenant", "workload", "slot"), default="total",
                   help="breakdown to print (default: total); tenant and workload use the SCI attribution")
    p.add_argument("--explain", metavar="NODE,SLOT",
                   help="print the arithmetic behind one node-slot (slot: index or ISO start time)")
    _format_arg(p)

    p = sub.add_parser("compare", help="all baselines (and solvers) side by side",
                       description="Run each policy on the scenario and compare the evaluated results.")
    _scenario_arg(p)
    p.add_argument("--policies", metavar="A,B,...", help="comma-separated policy names (default: every baseline)")
    _carbon_basis_arg(p)
    _format_arg(p)

    p = sub.add_parser("plan", help="carbon-aware placement with a proven gap",
                       description="Find the placement with the least emissions that meets every SLA, capacity "
                                   "and tenant rule; print it next to the best baseline.")
    _scenario_arg(p)
    p.add_argument("--solver", choices=("cpsat", "milp", "greedy"), default="cpsat", help="solver (default: cpsat)")
    p.add_argument("--milp-backend", choices=("highs", "pulp-highs", "pulp-cbc"), default="highs",
                   help="with --solver milp: HiGHS directly, or through PuLP with HiGHS or CBC (default: highs)")
    p.add_argument("--time-limit", type=_positive_float, default=30.0, metavar="S",
                   help="time limit of the whole solve [s] (default: 30): greedy, bound, exact solver and search; "
                        "with --solver greedy, of its local search (at most 1 s)")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="solver threads (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the solvers (default: 0)")
    p.add_argument("--migration-g-per-replica", type=_nonneg_float, default=0.0, metavar="G",
                   help="penalty [gCO2e] for moving a replica off its current node (default: 0)")
    p.add_argument("--latency-weight-g-per-ms", type=_nonneg_float, default=0.0, metavar="G",
                   help="secondary term [gCO2e per replica-ms of worst user latency] (default: 0)")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--no-bound", action="store_true", help="compute no lower bound (no gap is reported)")
    bound.add_argument("--bound-time-limit", type=_nonneg_float, metavar="S",
                       help="how long the knapsack, LP and Lagrangian bounds may run [s] (default: a quarter of --time-limit "
                            "for cpsat and milp, within it; 0 for greedy, which then reports the flow bound only)")
    _carbon_basis_arg(p, objective=True)
    p.add_argument("--dump-model", metavar="FILE", help="write the model as an MPS file for debugging")
    p.add_argument("-o", "--output", metavar="FILE", help="write the plan (placement + figures) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress messages on standard error")
    _format_arg(p)

    p = sub.add_parser("demo", help="run the bundled example end to end",
                       description="Validate the bundled example scenario, compare every baseline on it and "
                                   "plan it with the optimizer.")
    p.add_argument("--time-limit", type=_positive_float, default=15.0, metavar="S",
                   help="time limit of the optimizer [s] (default: 15)")
    _format_arg(p)

    p = sub.add_parser("schema", help="print the scenario JSON Schema",
                       description="Print the JSON Schema of the scenario file format.")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    # Commands of the other concerns, each module adding its own parsers and handlers.
    for module in EXTENSION_MODULES:
        EXTENSIONS.update(importlib.import_module(module).add_commands(sub))
    return parser


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)








def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = COMMANDS.get(args.command) or EXTENSIONS[args.command]
    try:
        return handler(args)
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INPUT
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"edgeplace: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("EDGEPLACE_DEBUG"):
            raise
        print(f"edgeplace: internal error: {type(exc).__name__}: {exc}\n"
              f"rerun with EDGEPLACE_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


# -- commands ------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from edgeplace.app import scenario_summary
    from edgeplace.topology import load_scenario

    scenario = load_scenario(args.scenario)
    _emit(scenario_summary(scenario), args.format, title=f"{args.scenario}: valid")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edgeplace.app import breakdown, evaluate_source
    from edgeplace.topology import load_scenario

    scenario = load_scenario(args.scenario)
    placement, result = evaluate_source(scenario, placement_file=args.placement, policy=args.policy)
    if args.save:
        placement.save(scenario, args.save)
    if args.explain:
        from dataclasses import asdict

        from edgeplace.policies.arithmetic import node_slot_arithmetic, parse_node_slot

        arithmetic = node_slot_arithmetic(result, *parse_node_slot(result, args.explain))
        if args.format == "json":
            print(json.dumps(asdict(arithmetic), indent=2, default=str))
        else:
            print("\n".join(arithmetic.lines()))
        return EXIT_VIOLATIONS if result.violations else EXIT_OK
    if args.by == "total":
        _emit(result.totals, args.format, title=f"{scenario.spec.name}: {args.policy or args.placement}")
    else:
        _emit(breakdown(result, args.by), args.format)
    if args.format == "table":
        from edgeplace.app import facts_lines

        for line in facts_lines(result):
            print(line)
        for v in result.violations[:20]:
            print(f"  {v.kind.value}: {v.message}")
        if len(result.violations) > 20:
            print(f"  ... and {len(result.violations) - 20} more violations")
    return EXIT_VIOLATIONS if result.violations else EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from edgeplace.app import compare_policies
    from edgeplace.policies.accounting import basis_line
    from edgeplace.topology import load_scenario

    scenario = load_scenario(args.scenario)
    names = [n.strip() for n in args.policies.split(",") if n.strip()] if args.policies else None
    table = compare_policies(scenario, names, args.carbon_basis)
    _emit(table, args.format, title=f"{scenario.spec.name}: {scenario.n_workloads} workloads, "
          f"{scenario.n_replicas} replicas, {scenario.n_nodes} nodes, {scenario.n_slots} slots\n"
          f"{basis_line(scenario, args.carbon_basis)}; {_reference_text(table)}")
    return EXIT_OK


def _reference_text(table) -> str:
    if "reference" not in table.attrs:
        return "no baseline in the table: d_* columns left out"
    meets = "meets every rule" if table.attrs["reference_meets_rules"] else "no baseline meets every rule: fewest violations"
    return f"d_* = row minus {table.attrs['reference']} ({meets})"


def cmd_plan(args: argparse.Namespace) -> int:
    from edgeplace.app import headline, plan_with_baseline
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.policies.accounting import basis_line
    from edgeplace.policies.costs import Objective
    from edgeplace.topology import load_scenario

    if args.milp_backend != "highs" and args.solver != "milp":
        raise _usage("--milp-backend goes with --solver milp")
    scenario = load_scenario(args.scenario)
    options = SolveOptions(
        solver=args.solver, time_limit_s=args.time_limit, workers=args.workers, milp_backend=args.milp_backend,
        seed=args.seed, bound=not args.no_bound, bound_time_limit_s=args.bound_time_limit,
        objective=Objective(migration_g_per_replica=args.migration_g_per_replica,
                            latency_weight_g_per_ms=args.latency_weight_g_per_ms, carbon_basis=args.carbon_basis),
    )
    say = None if args.quiet else (lambda msg: print(f"edgeplace: {msg}", file=sys.stderr, flush=True))
    plan, table = plan_with_baseline(scenario, options, progress=say, dump_model=args.dump_model)
    if args.output:
        from edgeplace.topology.io import atomic_write_text

        atomic_write_text(Path(args.output), json.dumps(plan.to_dict(scenario), indent=1) + "\n")
    _emit(table, args.format, title=f"{scenario.spec.name}: plan by {plan.solver} ({plan.status}) next to the "
          f"reference baseline\nobjective: {args.carbon_basis}-based operational carbon; "
          f"{basis_line(scenario, args.carbon_basis)}; {_reference_text(table)}")
    if args.format == "table":
        for line in headline(table, str(table["policy"].iloc[0]), args.carbon_basis):
            print(line)
        print(f"gap to lower bound: {gap_text(plan)}; solve time {plan.solve_seconds:.2f} s; "
              f"SLA check: {'all met' if not plan.evaluation.violation_counts['sla'] else 'VIOLATED'}")
        from edgeplace.app import facts_lines

        for line in facts_lines(plan.evaluation):
            print(line)
        for line in plan.explanation:
            print(f"  {line}")
        for note in plan.notes:
            print(f"  note: {note}")
    return EXIT_OK if plan.evaluation.feasible else EXIT_VIOLATIONS


def gap_text(plan) -> str:
    """The plan's gap in words: how far from optimal, to which bound, of what."""
    if plan.gap is None:
        return "n/a (no bound)"
    if plan.status == "optimal":
        return "0.00 % (proven optimal)"
    return f"{plan.gap * 100:.2f} % (to the {plan.bound_name} bound, of the {plan.gap_basis})"


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeplace.app import demo, example_path, headline
    from edgeplace.policies.accounting import basis_line
    from edgeplace.topology import load_scenario

    path = example_path("metro-de.yaml")
    scenario = load_scenario(path)
    if args.format == "table":
        print(f"edgeplace demo: {path}")
        print(f"{scenario.spec.name}: {scenario.n_workloads} workloads ({scenario.n_replicas} replicas, "
              f"{int(scenario.workload_deferrable.sum())} deferrable), {scenario.n_nodes} nodes at {scenario.n_sites} sites, "
              f"{len(scenario.tenant_ids)} tenants, {scenario.n_slots} slots of {scenario.slot_hours:g} h\n")
    say = None if args.format != "table" else (lambda msg: print(f"edgeplace: {msg}", file=sys.stderr, flush=True))
    table, plan = demo(scenario, time_limit_s=args.time_limit, progress=say)
    _emit(table, args.format, title=f"every policy on the same scenario, evaluated by one function\n"
          f"{basis_line(scenario)}; {_reference_text(table)}")
    if args.format == "table":
        gap = "no bound" if plan.gap is None else f"{plan.gap * 100:.1f} % from the lower bound"
        print(f"\nplan ({plan.solver}, {plan.status}, {gap}):")
        for line in headline(table, f"plan ({plan.solver})", "location")[1:]:
            print(line)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from edgeplace.topology import schema_dict
    from edgeplace.topology.io import atomic_write_text

    text = json.dumps(schema_dict(), indent=2) + "\n"
    if args.output:
        atomic_write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "plan": cmd_plan,
    "demo": cmd_demo,
    "schema": cmd_schema,
}


def _emit(data, fmt: str, title: str | None = None) -> None:
    from edgeplace.output import render

    text = render(data, fmt)
    if fmt == "table" and title:
        print(title)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    sys.exit(main())
