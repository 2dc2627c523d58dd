"""The `edgeplace report` command.

    edgeplace report SCENARIO [--plan plan.json] [--baseline spread] -o DIR
                     [--solver cpsat|milp|greedy] [--time-limit S] [--quiet]

`add_commands(sub)` adds `report` to the `edgeplace` parser's subparsers and
returns its handler by name (the caller merges it into its command table).
The handler follows `edgeplace.cli`'s exit codes: 0 ok (also when a
placement breaks rules: the report shows them), 2 usage error, 3 invalid
input (raised as `topology.InputError`). docs/REPORTS.md describes the
output.
"""

from __future__ import annotations

import argparse
import sys
from edgeplace.argtypes import positive_float as _positive_float
from typing import Callable

EXIT_OK, EXIT_USAGE = 0, 2




def add_commands(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `report` to `sub` (an argparse subparsers object); return its handler."""
    p = sub.add_parser(
        "report", help="capacity report (HTML, Markdown, CSV) of a plan against a baseline",
        description="Write a capacity report of a plan against a baseline: utilisation heatmaps, idle and "
                    "over-provisioned capacity, consolidation candidates, headroom per SLA class and site, "
                    "renewable self-consumption, energy and emissions per tenant, and a one-page summary. "
                    "Every figure comes from evaluating the placements.",
        epilog="Without --plan the plan is solved now (like `edgeplace plan`). DIR gets report.html "
               "(self-contained), report.md, csv/*.csv and figures/*.png; it is replaced whole, atomically.")
    p.add_argument("scenario", help="scenario file (YAML or JSON; see `edgeplace schema`)")
    p.add_argument("--plan", metavar="FILE", help="plan or placement JSON (from `edgeplace plan -o` or `evaluate --save`)")
    p.add_argument("--baseline", default="spread", metavar="NAME",
                   help="what 'before' is: spread, binpack, nearest, greedy-carbon, or current (the scenario's "
                        "`current` placement with every node on); default: spread")
    g = p.add_argument_group("solving (only without --plan)")
    g.add_argument("--solver", choices=("cpsat", "milp", "greedy"), help="solver (default: cpsat)")
    g.add_argument("--time-limit", type=_positive_float, metavar="S", help="solver time limit [s] (default: 30)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="report directory to write")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on standard error")
    return {"report": cmd_report}


def cmd_report(args: argparse.Namespace) -> int:
    from edgeplace.report.data import make_report
    from edgeplace.report.write import write_report
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.topology import load_scenario

    if args.plan and (args.solver or args.time_limit):
        print("edgeplace: error: --solver and --time-limit solve a plan; they do not go with --plan", file=sys.stderr)
        return EXIT_USAGE
    say = None if args.quiet else (lambda msg: print(f"edgeplace: {msg}", file=sys.stderr, flush=True))
    scenario = load_scenario(args.scenario)
    limit = args.time_limit or 30.0
    options = SolveOptions(solver=args.solver or "cpsat", time_limit_s=limit, bound_time_limit_s=0.0)
    report = make_report(scenario, plan_file=args.plan, baseline=args.baseline, solve_options=options, progress=say)
    out = write_report(report, args.output)
    if not args.quiet:
        print(f"edgeplace: wrote {out}/report.html, report.md and {len(report.tables()) + 2} CSV files", file=sys.stderr)
        print(f"  {report.after_label}: {report.section('summary').text[0]}", file=sys.stderr)
        for w in report.warnings:
            print(f"  warning: {w}", file=sys.stderr)
    return EXIT_OK
