"""Carrying plans out: `edgeplace rebalance`, and the actuation flags of `edgeplace serve --planner`.

    edgeplace rebalance --dry-run | --apply [--kubeconfig F] [--context C] [--site-config F]
                        [--plan-file F | --configmap NS/NAME] [--solve] [--format table|json|csv] ...

`rebalance` compares where pods run with the published plan (the plan
ConfigMap the planner writes, or a plan file) and prints every move the
rebalancer would make, with the grams it saves over the plan's horizon and
its migration cost; `--apply` makes them (Eviction API, within the
budgets), `--dry-run` changes nothing. `--solve` plans now instead of
reading the published plan (dry run only: the extender would not steer
recreated pods by a plan it does not serve). The power lifecycle's next
steps are printed too (what it would drain, switch off or wake).

Exit codes as `edgeplace.cli`: 0 ok, 2 usage error, 3 invalid input or an
unreachable cluster, 70 internal error.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable

from edgeplace.argtypes import fraction, nonneg_float, nonneg_int, positive_float

EXIT_OK, EXIT_USAGE = 0, 2
FORMATS = ("table", "json", "csv")


def add_actuation_arguments(p: argparse.ArgumentParser, modes: bool = True) -> None:
    """The flags that tune actuation (docs/KUBERNETES.md "Actuation"); `modes` adds --rebalance/--power."""
    g = p.add_argument_group("actuation: rebalancing and node power (docs/KUBERNETES.md)")
    if modes:
        g.add_argument("--rebalance", choices=("off", "dry-run", "apply"), default="dry-run",
                       help="move running pods where the plan wants them (default dry-run: decide and log only)")
        g.add_argument("--power", choices=("off", "dry-run", "apply"), default="dry-run",
                       help="drain and power off the nodes the plan lets sleep, wake them again (default dry-run)")
        g.add_argument("--actuation-period", type=positive_float, default=10.0, metavar="S",
                       help="seconds between actuation cycles between plan rounds (default 10)")
        g.add_argument("--rebalance-period", type=nonneg_float, default=60.0, metavar="S",
                       help="seconds between rebalancing cycles (default 60)")
    g.add_argument("--max-evictions", type=nonneg_int, default=10, metavar="N", help="evictions per cycle (default 10)")
    g.add_argument("--max-evictions-per-node", type=nonneg_int, default=2, metavar="N", help="per node and cycle (default 2)")
    g.add_argument("--max-evictions-per-tenant", type=nonneg_int, default=3, metavar="N",
                   help="per tenant and cycle (default 3)")
    g.add_argument("--restart-seconds", type=nonneg_float, default=60.0, metavar="S",
                   help="a moved pod keeps its CPU request busy this long while it restarts (default 60)")
    g.add_argument("--move-threshold-g", type=nonneg_float, default=2.0, metavar="G",
                   help="the least saving worth one move, on top of its restart [gCO2e] (default 2)")
    g.add_argument("--move-margin", type=nonneg_float, default=0.2, metavar="F",
                   help="a move's saving must exceed its cost by this share (default 0.2)")
    g.add_argument("--move-cooldown", type=nonneg_float, default=1800.0, metavar="S",
                   help="a workload moved is not moved again for S seconds (default 1800)")
    g.add_argument("--flip-window", type=nonneg_float, default=7200.0, metavar="S",
                   help="a workload does not move back onto a node it left within S seconds (default 7200)")
    g.add_argument("--evict-job-pods", action="store_true", help="Job pods may be evicted (their progress is lost)")
    g.add_argument("--evict-local-storage-pods", action="store_true",
                   help="pods with emptyDir or hostPath volumes may be evicted (their data is lost)")
    g.add_argument("--min-on", type=nonneg_float, default=1800.0, metavar="S",
                   help="a node stays on at least S seconds before it may power down (default 1800)")
    g.add_argument("--min-off", type=nonneg_float, default=1800.0, metavar="S",
                   help="and off at least S seconds before the plan may wake it; pending pods wake it at once (default 1800)")
    g.add_argument("--max-nodes-off", type=nonneg_int, default=None, metavar="N", help="most nodes off at once (default: no count)")
    g.add_argument("--max-off-fraction", type=fraction, default=0.8, metavar="F",
                   help="most share of the managed nodes off at once (default 0.8)")
    g.add_argument("--min-spare-cpu", type=fraction, default=0.1, metavar="F",
                   help="share of the CPU of the nodes staying on that must stay free (default 0.1)")
    g.add_argument("--drain-timeout", type=positive_float, default=1800.0, metavar="S",
                   help="a drain not done by then is abandoned (default 1800)")
    g.add_argument("--wake-timeout", type=positive_float, default=600.0, metavar="S",
                   help="a node not Ready S seconds after power-on is reported and another woken (default 600)")
    g.add_argument("--wake-retry", type=nonneg_float, default=3600.0, metavar="S",
                   help="a node that did not wake is tried again for pending pods after S seconds (default 3600)")
    g.add_argument("--no-wake-on-pending", action="store_true",
                   help="do not wake nodes for pods Pending as unschedulable (only when the plan asks)")
    g.add_argument("--power-off-command", metavar="CMD",
                   help="command that switches a Wake-on-LAN node off, e.g. 'ssh admin@{address} sudo poweroff'")


def actuation_options(args: argparse.Namespace, namespace: str, rebalance: str | None = None, power: str | None = None):
    """`ActuationOptions` from the flags of `add_actuation_arguments`."""
    from edgeplace.k8s.actuation.actuator import ActuationOptions
    from edgeplace.k8s.actuation.evictor import EvictionBudget, EvictionOptions
    from edgeplace.k8s.actuation.power import PowerOptions
    from edgeplace.k8s.actuation.rebalance import MigrationCost, RebalanceOptions
    from edgeplace.policies.costs import Objective

    budget = EvictionBudget(args.max_evictions, args.max_evictions_per_node, args.max_evictions_per_tenant)
    eviction = EvictionOptions(evict_job_pods=args.evict_job_pods, evict_local_storage_pods=args.evict_local_storage_pods)
    objective = Objective(migration_g_per_replica=getattr(args, "migration_g_per_replica", 0.0) or 0.0)
    return ActuationOptions(
        rebalance=rebalance or args.rebalance, power=power or args.power,
        period_s=getattr(args, "actuation_period", 10.0), rebalance_period_s=getattr(args, "rebalance_period", 60.0),
        namespace=namespace, budget=budget, power_off_command=args.power_off_command,
        rebalancing=RebalanceOptions(cost=MigrationCost(args.restart_seconds, args.move_threshold_g),
                                     margin=args.move_margin, cooldown_s=args.move_cooldown,
                                     flip_window_s=args.flip_window, budget=budget, eviction=eviction,
                                     objective=objective),
        powering=PowerOptions(min_on_s=args.min_on, min_off_s=args.min_off, max_nodes_off=args.max_nodes_off,
                              max_off_fraction=args.max_off_fraction, min_spare_cpu_fraction=args.min_spare_cpu,
                              drain_timeout_s=args.drain_timeout, wake_timeout_s=args.wake_timeout,
                              wake_retry_s=args.wake_retry,
                              wake_on_pending=not args.no_wake_on_pending, eviction=eviction))


def add_commands(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    from edgeplace.cluster_connect import cluster_args, plan_location_args

    p = sub.add_parser("rebalance", help="move running pods where the published plan wants them",
                       description="Compare where pods run with the published plan and print (--dry-run) or make "
                                   "(--apply) the moves that pay: each with the grams it saves over the plan's "
                                   "horizon and its migration cost. Also prints the node power steps that would "
                                   "follow (docs/KUBERNETES.md \"Actuation\").")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="decide and print, change nothing")
    mode.add_argument("--apply", action="store_true", help="evict the pods the decisions move")
    cluster_args(p)
    p.add_argument("--site-config", metavar="FILE", help="site config (see `edgeplace import`)")
    plan_location_args(p, "read the plan document from FILE")
    p.add_argument("--solve", action="store_true", help="plan now instead of reading the published plan (with --dry-run)")
    p.add_argument("--solver", choices=("cpsat", "milp", "greedy"), default="cpsat", help="with --solve (default cpsat)")
    p.add_argument("--time-limit", type=positive_float, default=20.0, metavar="S", help="with --solve (default 20)")
    p.add_argument("--migration-g-per-replica", type=nonneg_float, default=None, metavar="G",
                   help="with --solve: the planner's migration penalty [gCO2e] (default: as `serve`)")
    p.add_argument("--nodes-stay-on", action="store_true",
                   help="price moves as if emptied nodes stay on (the planner runs without --power apply); "
                        "default: nodes with a power driver sleep once empty")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    add_actuation_arguments(p, modes=False)
    return {"rebalance": cmd_rebalance}


def _usage(message: str) -> int:
    print(f"edgeplace: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_rebalance(args: argparse.Namespace) -> int:
    import pandas as pd

    from edgeplace.cluster_connect import connect, read_cluster_or_explain
    from edgeplace.k8s.actuation.actuator import Actuator
    from edgeplace.k8s.extender.table import build_plan_document
    from edgeplace.k8s.mapping import MappingOptions, load_site_config, map_cluster
    from edgeplace.k8s.publish import DEFAULT_NAME, DEFAULT_NAMESPACE
    from edgeplace.output import render

    if args.solve and args.apply:
        return _usage("--solve goes with --dry-run: --apply would move pods toward a plan the extender does not "
                      "serve; publish one first with `edgeplace serve --planner --once`")
    namespace, name = args.configmap or (DEFAULT_NAMESPACE, DEFAULT_NAME)
    config = load_site_config(args.site_config)
    api = connect(args.kubeconfig, args.context, args.in_cluster)
    objects = read_cluster_or_explain(api)
    now = datetime.now(timezone.utc)
    mapped = map_cluster(objects, config, MappingOptions(now=now), source=f"cluster {api.configuration.host}")
    if args.solve:
        from edgeplace.cluster_connect import DEFAULT_MIGRATION_G
        from edgeplace.optimizer.solve import SolveOptions, solve
        from edgeplace.policies.costs import Objective

        penalty = DEFAULT_MIGRATION_G if args.migration_g_per_replica is None else args.migration_g_per_replica
        plan = solve(mapped.scenario, SolveOptions(solver=args.solver, time_limit_s=args.time_limit,
                                                   bound_time_limit_s=0.0,
                                                   objective=Objective(migration_g_per_replica=penalty)))
        doc = build_plan_document(mapped.scenario, plan.placement, now=now, evaluation=plan.evaluation)
        source = f"a plan made now ({plan.solver}, {plan.status})"
    else:
        doc, source = _published_plan(api, args, namespace, name)
    mode = "apply" if args.apply else "dry-run"
    options = replace(actuation_options(args, namespace, rebalance=mode, power="dry-run"),
                      price_sleep=not args.nodes_stay_on)
    # A dry run reads the cluster's move history (hysteresis) and, evicting nothing, never writes it.
    actuator = Actuator(api, options, reader=lambda _api: objects)
    report = actuator.act(mapped, doc, now, time.monotonic(), force_rebalance=True)
    moves = report.rebalance.moves if report.rebalance else []
    table = pd.DataFrame([m.row() for m in moves],
                         columns=["pod", "workload", "tenant", "from", "to", "saving_g", "cost_g", "decision", "result",
                                  "detail"])
    if args.format != "table":
        sys.stdout.write(render(table, args.format).rstrip("\n") + "\n")
        return EXIT_OK
    horizon = report.rebalance.horizon_h if report.rebalance else 0.0
    made = [m for m in moves if m.decision.value == "evict"]
    print(f"rebalance ({mode}) against {source}: {len(moves)} pod(s) the plan wants elsewhere, "
          f"{len(made)} {'moved' if args.apply else 'would move'}")
    if moves:
        print(render(table.drop(columns=["result"] if not args.apply else []), "table"))
    print(f"saving of the moves made: {sum(m.saving_g for m in made):.1f} gCO2e over the plan's {horizon:g} h horizon "
          f"(evaluated with both placements held over the horizon, "
          f"{'emptied nodes staying on' if args.nodes_stay_on else 'nodes with a power driver asleep once empty'}; migration cost "
          f"{sum(m.cost_g for m in made):.1f} g; {mapped.scenario.intensity_kind} grid intensity, location-based)")
    if report.power is not None and report.power.transitions:
        print("node power steps that would follow (power lifecycle, dry run):")
        for t in report.power.transitions:
            print(f"  {t.node}: {t.source.value} -> {t.target.value}: {t.why}")
    for node, why in sorted((report.power.held if report.power else {}).items()):
        print(f"  {node}: held: {why}")
    return EXIT_OK


def _published_plan(api, args: argparse.Namespace, namespace: str, name: str) -> tuple[dict, str]:
    import json

    from edgeplace.k8s.publish import read_plan_document
    from edgeplace.topology.errors import InputError, Problem

    if args.plan_file:
        from edgeplace.topology.load import read_document

        doc = read_document(args.plan_file)
        source = f"plan file {args.plan_file}"
    else:
        try:
            doc = read_plan_document(api, namespace, name, args.configmap_key)
        except Exception as exc:  # noqa: BLE001 - an API error or an unreachable server: one message
            raise InputError(f"ConfigMap {namespace}/{name}", [Problem("", f"cannot read the published plan: {exc}")]) from None
        if doc is None:
            raise InputError(f"ConfigMap {namespace}/{name}", [Problem(
                f"data[{args.configmap_key!r}]", "no published plan: run the planner (`edgeplace serve --planner`, "
                "or `--once` for one round), pass --plan-file, or use --dry-run --solve")])
        source = f"the plan published in ConfigMap {namespace}/{name}"
    if not isinstance(doc, dict) or not isinstance(doc.get("workloads"), dict):
        raise InputError(source, [Problem("workloads", "not a plan document (see docs/EXTENDER.md \"The plan document\")")])
    generated = doc.get("generated_at", "?")
    return json.loads(json.dumps(doc)), f"{source} (generated {generated})"
