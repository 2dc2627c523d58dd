"""The planning commands of `edgeplace`: whatif, pareto, simulate.

`add_commands(sub)` adds the three sub-commands to an argparse sub-parser
collection and returns their handlers by name; `edgeplace.cli` wires them
in. Each handler parses nothing itself: it loads the scenario, makes one
library call (`edgeplace.whatif`, `edgeplace.pareto`, `edgeplace.simulate`),
prints the result, and returns an exit code: 0 ok, 2 usage (conflicting
flags; the message goes to standard error). Invalid input (a scenario, an
unknown `--vary` key, an unreachable scheduler) raises
`edgeplace.topology.errors.InputError`, which the caller maps to exit code 3.

Progress bars (rich) go to standard error; `--quiet` turns them off, except for
simulate, whose bar (slots, ETA) shows whenever standard error is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from edgeplace.argtypes import nonneg_float as _nonneg_float, positive_float as _positive_float, positive_int as _positive_int
from contextlib import contextmanager
from typing import Any, Callable, Iterator

EXIT_OK, EXIT_USAGE = 0, 2
FORMATS = ("table", "json", "csv")
SOLVER_CHOICES = ("cpsat", "milp", "greedy")

Handler = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------
# Argument types








def _number_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0, got {text!r}")
    return values


# ---------------------------------------------------------------------------
# Parsers


def _common(p: argparse.ArgumentParser, *, workers_help: str,
            quiet_help: str = "no progress bar on standard error") -> None:
    p.add_argument("scenario", help="scenario file (YAML or JSON; see `edgeplace schema`)")
    run = p.add_argument_group("where cases run")
    run.add_argument("--workers", type=_positive_int, metavar="N",
                     help=f"{workers_help} (default: one per core; 1 runs in this process)")
    run.add_argument("--scheduler-address", metavar="tcp://HOST:PORT",
                     help="run on an existing Dask distributed scheduler instead of local processes")
    p.add_argument("--quiet", action="store_true", help=quiet_help)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _solver_args(p: argparse.ArgumentParser, default_limit: float) -> None:
    g = p.add_argument_group("solver")
    g.add_argument("--solver", choices=SOLVER_CHOICES, default="cpsat", help="solver (default: cpsat)")
    g.add_argument("--time-limit", type=_positive_float, default=default_limit, metavar="S",
                   help=f"time limit per plan [s] (default: {default_limit:g})")
    g.add_argument("--solver-threads", type=_positive_int, default=1, metavar="N",
                   help="threads of each solve (default: 1; the cases already run in parallel)")
    g.add_argument("--seed", type=int, default=0, help="random seed for the solvers (default: 0)")
    g.add_argument("--no-bound", action="store_true", help="compute no lower bound (no gap column; faster)")
    g.add_argument("--carbon-basis", choices=("location", "market"), default="location",
                   help="GHG Protocol Scope 2 basis of the operational carbon the plans minimise and the table "
                        "shows (default: location)")


def _wrap(text: str) -> str:
    return textwrap.fill(text, 79)


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add `whatif`, `pareto` and `simulate` to `sub`; return their handlers by name."""
    from edgeplace.simulate import DEFAULT_MIGRATION_G, DEFAULT_POLICIES, FORECASTERS, simulation_policies
    from edgeplace.variations import variation_help

    p = sub.add_parser(
        "whatif", help="plan every combination of varied parameters and compare",
        description=_wrap("Plan the scenario once per combination of --vary values (a parameter grid) and print one "
                    "table: emissions, energy, active nodes, SLA violations and utilisation of each case, and the "
                    "difference to the base case. Cases run in parallel; with --results they are kept in a file "
                    "a later run continues with --resume."),
        epilog="--vary keys (SEL: an SLA class tight|interactive|relaxed, a tenant, a workload, or e.g. 5ms):\n"
               + variation_help() + "\n\nexample: edgeplace whatif metro-de.yaml --vary isolation=on,off "
               "--vary 'pv_kwp[agg-mainz]=0,25,100' --solver greedy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2",
                   help="a parameter and its values; repeat for more (see the keys below)")
    _solver_args(p, 10.0)
    _common(p, workers_help="parallel worker processes")
    res = p.add_argument_group("results file")
    res.add_argument("--results", metavar="FILE", help="keep each finished case in FILE (JSON lines)")
    res.add_argument("--resume", action="store_true", help="continue the run in --results: skip the cases it holds")

    p = sub.add_parser(
        "pareto", help="the latency-emissions frontier: what each ms of SLA costs",
        description=_wrap("For SLA targets from tight to loose, the least emissions the optimizer finds, the marginal "
                    "gCO2e (and Wh) per ms of SLA, and where loosening stops buying anything; as a table and, "
                    "with -o, a PNG plot."),
        epilog="examples:\n  edgeplace pareto metro-de.yaml -o pareto.png\n"
               "  edgeplace pareto metro-de.yaml --select tight --sla-ms 4,5,6,8,10,15",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pts = p.add_argument_group("SLA points")
    pts.add_argument("--sla-scales", metavar="S1,S2,...|auto", default="auto",
                     help="factors applied to the SLAs (default: auto, from the tightest feasible to the loosest that binds)")
    pts.add_argument("--sla-ms", type=_number_list, metavar="MS1,MS2,...",
                     help="set the selected workloads' SLA to each value instead (needs --select)")
    pts.add_argument("--select", metavar="SEL", help="only these workloads: an SLA class, tenant, workload or e.g. 5ms")
    pts.add_argument("--points", type=_positive_int, default=10, metavar="N", help="points of the auto range (default: 10)")
    pts.add_argument("--tolerance-pct", type=_nonneg_float, default=0.5, metavar="P",
                     help="savings below P %% of the loosest point count as nothing (default: 0.5)")
    _solver_args(p, 10.0)
    p.add_argument("-o", "--output", metavar="PLOT.png", help="also write the frontier as a PNG plot")
    _common(p, workers_help="parallel worker processes")

    names = "\n".join(f"  {n:10s} {pol.description}" for n, pol in simulation_policies().items() if n == pol.name)
    p = sub.add_parser(
        "simulate", help="step through a horizon, re-planning from forecasts; policies side by side",
        description=_wrap("Step through the horizon slot by slot. Each step, every policy re-plans the next lookahead "
                    "window from forecasts while the world follows the actual signals; the committed slots of "
                    "each policy are evaluated on the actual world. The oracle plans on the actual signals: "
                    "optimizer minus oracle is the cost of forecast error; noshift minus optimizer what "
                    "time-shifting deferrable jobs saves. A horizon longer than the scenario repeats its days "
                    "with seeded day-to-day noise."),
        epilog="policies:\n" + names,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", metavar="A,B,...", help=f"policies to compare (default: {','.join(DEFAULT_POLICIES)})")
    p.add_argument("--horizon", metavar="DURATION", help="7d, 36h, 90m or a slot count (default: the scenario's horizon)")
    p.add_argument("--lookahead", metavar="DURATION", help="window each step plans (default: 1d)")
    p.add_argument("--forecast", choices=FORECASTERS, default="seasonal",
                   help="what planners see of the future (default: seasonal naive)")
    p.add_argument("--forecast-source", metavar="FILE",
                   help="a forecast archive (`edgeplace signals archive`): replay the grid-intensity forecasts a "
                        "service had issued at each step; --forecast fills what they do not reach")
    p.add_argument("--solver", choices=SOLVER_CHOICES, default="greedy",
                   help="solver of optimizer/oracle/noshift (default: greedy)")
    p.add_argument("--step-time-limit", type=_positive_float, default=1.0, metavar="S",
                   help="solver time limit per step [s] (default: 1)")
    p.add_argument("--solver-threads", type=_positive_int, default=1, metavar="N", help="threads per solve (default: 1)")
    p.add_argument("--migration-g", type=_nonneg_float, default=DEFAULT_MIGRATION_G, metavar="G",
                   help=f"penalty [gCO2e] per replica moved by a re-plan, a brake on churn "
                        f"(default: {DEFAULT_MIGRATION_G:g}; 0 = pure carbon)")
    p.add_argument("--replan-every", type=_positive_int, default=1, metavar="N",
                   help="re-plan at most every N slots (default: 1)")
    p.add_argument("--every-slot", action="store_true",
                   help="re-plan at every step even when nothing changed (default: only when a job entered the "
                        "lookahead, the forecast of the planned slots moved, or the plan ran out)")
    p.add_argument("--noise", type=_nonneg_float, default=1.0, metavar="F",
                   help="scale of the day-to-day noise of a repeated world (default: 1; 0 = identical days)")
    p.add_argument("--seed", type=int, default=0, help="seed of that noise and of the solvers (default: 0)")
    _common(p, workers_help="policies run in parallel worker processes",
            quiet_help="kept for scripts: the progress bar (slots, ETA) goes to standard error whenever it is a "
                       "terminal and never otherwise")

    return {"whatif": cmd_whatif, "pareto": cmd_pareto, "simulate": cmd_simulate}


# ---------------------------------------------------------------------------
# Handlers


def _usage(args: argparse.Namespace, message: str) -> int:
    print(f"edgeplace {args.command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _engine(args: argparse.Namespace):
    from edgeplace.sweep import default_workers, make_engine

    return make_engine(args.workers or default_workers(), args.scheduler_address)


def _engine_conflict(args: argparse.Namespace) -> str | None:
    if args.workers is not None and args.scheduler_address:
        return "--workers and --scheduler-address conflict: the scheduler's workers do the work"
    return None


def _solve_options(args: argparse.Namespace):
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.policies.costs import Objective

    return SolveOptions(solver=args.solver, time_limit_s=args.time_limit, workers=args.solver_threads, seed=args.seed,
                        bound=not args.no_bound, objective=Objective(carbon_basis=args.carbon_basis))


@contextmanager
def _progress(args: argparse.Namespace, what: str, *, long_run: bool = False
              ) -> Iterator[Callable[[int, int, str], None] | None]:
    """A rich progress bar on standard error, or None with --quiet. The bar
    appears with the first finished case, so an input error shows no bar.

    `long_run` (simulate: slots stepped, minutes of work): the bar has an ETA and
    shows whenever standard error is a terminal, --quiet or not, and never
    otherwise (a log file or a pipe gets no bar; standard output, where tables
    and JSON go, never does)."""
    if (not sys.stderr.isatty()) if long_run else args.quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if long_run:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    bar = Progress(*columns, TextColumn("{task.fields[last]}"),
                   console=Console(stderr=True, force_terminal=long_run or None), transient=False)
    task = bar.add_task(what, total=None, last="")
    started = False

    def update(done: int, total: int, key: str) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=total, last=key[:40])

    try:
        yield update
    finally:
        if started:
            bar.stop()


def _emit(data, fmt: str, title: str | None = None) -> None:
    from edgeplace.output import render

    text = render(data, fmt)
    if fmt == "table" and title:
        print(title)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _emit_with_summary(table, summary: dict[str, Any], fmt: str, title: str, rows_name: str) -> None:
    """Table then summary lines (table), the table only (csv), or both as one JSON document."""
    if fmt == "json":
        from edgeplace.output import render

        doc = {"summary": {k: _clean(v) for k, v in summary.items()}, rows_name: json.loads(render(table, "json"))}
        print(json.dumps(doc, indent=2))
        return
    _emit(table, fmt, title)
    if fmt == "table":
        for key, value in summary.items():
            value = _clean(value)
            print(f"  {key}: {value:,.3f}" if isinstance(value, float) else f"  {key}: {value}")


def cmd_whatif(args: argparse.Namespace) -> int:
    from edgeplace.policies.accounting import basis_line
    from edgeplace.sweep import ResultsFile
    from edgeplace.whatif import run_whatif
    from edgeplace.topology import load_scenario

    if args.resume and not args.results:
        return _usage(args, "--resume needs --results FILE (the run to continue)")
    conflict = _engine_conflict(args)
    if conflict:
        return _usage(args, conflict)
    scenario = load_scenario(args.scenario)
    results = ResultsFile.open(args.results, args.resume) if args.results else None
    engine = _engine(args)
    with _progress(args, "whatif cases") as progress:
        result = run_whatif(scenario, args.vary, _solve_options(args), engine, results=results, progress=progress)
    table = result.table
    if args.format == "table":
        table = table.drop(columns=["message"]) if not table["message"].astype(bool).any() else table
    _emit(table, args.format, title=f"{scenario.spec.name}: {result.cases} case(s) + base, solver {args.solver} "
          f"({args.time_limit:g} s), on {result.engine}; {result.computed} computed, {result.reused} reused "
          f"\n{basis_line(scenario, args.carbon_basis)}; d_* = case - base")
    return EXIT_OK


def cmd_pareto(args: argparse.Namespace) -> int:
    from edgeplace.pareto import ParetoOptions, pareto, plot
    from edgeplace.topology import load_scenario
    from edgeplace.topology.errors import InputError, Problem

    conflict = _engine_conflict(args)
    if conflict:
        return _usage(args, conflict)
    if args.sla_ms is not None and args.sla_scales != "auto":
        return _usage(args, "--sla-ms and --sla-scales conflict: give one kind of point")
    if args.sla_ms is not None and not args.select:
        return _usage(args, "--sla-ms needs --select (the workloads whose SLA is set)")
    scales = None
    if args.sla_scales != "auto":
        try:
            scales = _number_list(args.sla_scales)
        except argparse.ArgumentTypeError:
            raise InputError("--sla-scales", [Problem(args.sla_scales, "write auto or comma-separated "
                                                                       "numbers > 0, e.g. 0.5,1,2")]) from None
    scenario = load_scenario(args.scenario)
    options = ParetoOptions(solve=_solve_options(args), scales=scales, sla_ms=args.sla_ms, selector=args.select,
                            points=max(args.points, 2), tolerance_pct=args.tolerance_pct)
    with _progress(args, "pareto points") as progress:
        result = pareto(scenario, options, _engine(args), progress=progress)
    if args.output:
        plot(result, args.output, f"{scenario.spec.name}: least emissions against the latency SLA "
                                  f"({args.select or 'all workloads with an SLA'}; solver {args.solver})")
        result.summary["plot"] = args.output
    _emit_with_summary(result.table, result.summary, args.format,
                       f"{scenario.spec.name}: latency-emissions frontier, solver {args.solver} ({args.time_limit:g} s "
                       f"per point); marginal_* = saved per ms the mean SLA is loosened", "points")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from edgeplace.simulate import SimulationOptions, parse_duration_slots, parse_policies, simulate
    from edgeplace.topology import load_scenario

    conflict = _engine_conflict(args)
    if conflict:
        return _usage(args, conflict)
    policies = parse_policies(args.policies)
    scenario = load_scenario(args.scenario)
    minutes = scenario.spec.horizon.slot_minutes
    archive = None
    if args.forecast_source:
        from edgeplace.topology.signals.archive import read_archive

        archive = read_archive(args.forecast_source)
    options = SimulationOptions(
        horizon_slots=parse_duration_slots(args.horizon, minutes) if args.horizon else None,
        lookahead_slots=parse_duration_slots(args.lookahead, minutes, "--lookahead") if args.lookahead else None,
        forecast=args.forecast, solver=args.solver, step_time_limit_s=args.step_time_limit,
        solver_threads=args.solver_threads, migration_g_per_replica=args.migration_g, replan_every=args.replan_every,
        incremental=not args.every_slot, noise=args.noise, seed=args.seed, forecast_source=archive)
    with _progress(args, "slots", long_run=True) as progress:
        result = simulate(scenario, policies, options, _engine(args), progress=progress)
    s = result.summary
    _emit_with_summary(result.table, s, args.format,
                       f"{scenario.spec.name}: {s['horizon_slots']} slots ({s['horizon_days']:g} d), {s['forecast']} "
                       f"forecast{' + issued forecasts of ' + args.forecast_source if archive else ''}, re-planned every {options.replan_every} slot(s) over {s['lookahead_slots']} slots "
                       f"with {options.solver} ({options.step_time_limit_s:g} s/step); evaluated on the actual "
                       f"signals", "policies")
    return EXIT_OK


__all__ = ["add_commands", "cmd_pareto", "cmd_simulate", "cmd_whatif"]
