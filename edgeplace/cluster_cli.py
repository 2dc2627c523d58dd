"""The cluster commands: `edgeplace import --from-cluster` and `edgeplace serve`.

`add_commands(sub)` adds both to the `edgeplace` parser's subparsers and
returns their handlers by name (the caller merges them into its command
table). Handlers follow `edgeplace.cli`'s exit codes: 0 ok, 2 usage error,
3 invalid input (`topology.InputError`: a bad kubeconfig, site config or
cluster object, an unreachable API server), 70 internal error.

    edgeplace import --from-cluster [--kubeconfig F] [--context C] [--site-config F] -o scenario.yaml
    edgeplace serve [--extender] [--planner] [--port 8888] [--plan-file F | --configmap NS/NAME]
                    [--token-file F] [--tls-cert F --tls-key F] [--site-config F]
                    [--rebalance off|dry-run|apply] [--power off|dry-run|apply] ...
    edgeplace apply-isolation [--kubeconfig F] [--site-config F] [--namespace NS] [--dry-run]

`serve` runs the extender and the planner together unless one of
`--extender` / `--planner` is given; docs/KUBERNETES.md describes both.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgeplace.argtypes import nonneg_float as _nonneg
from edgeplace.argtypes import nonneg_int
from edgeplace.cluster_connect import (DEFAULT_MIGRATION_G, call_or_explain, cluster_args, connect, ns_name,
                                      plan_location_args, read_cluster_or_explain)
from edgeplace.k8s import steering

EXIT_OK, EXIT_USAGE = 0, 2


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def add_commands(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `import` and `serve` to `sub` (an argparse subparsers object); return their handlers."""
    p = sub.add_parser("import", help="write a scenario from a live cluster, EdgeSimPy or a topology",
                       description="Write a scenario from a live Kubernetes cluster (its Nodes, namespaces, "
                                   "Deployments, StatefulSets and Jobs; docs/KUBERNETES.md lists the labels and "
                                   "annotations read), an EdgeSimPy dataset or a Topology Zoo / SNDlib topology "
                                   "(docs/IMPORTERS.md).")
    from edgeplace.import_sources import add_import_arguments

    sources = add_import_arguments(p)
    sources.required = True
    sources.add_argument("--from-cluster", action="store_true", help="read the cluster of the kubeconfig")
    cluster_args(p)
    p.add_argument("--site-config", metavar="FILE",
                   help="YAML with what the cluster does not know: grid intensity per region, sites, links, users, tenants")
    p.add_argument("--exclude-namespace", action="append", metavar="NS",
                   help="namespace whose workloads are not planned (repeatable; default: kube-system, kube-public, "
                        "kube-node-lease, edgeplace-system)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="scenario file to write (YAML; .json for JSON)")
    p.add_argument("--quiet", action="store_true", help="no summary or warnings on standard error")

    p = sub.add_parser("serve", help="run the scheduler extender and the planner",
                       description="Run the kube-scheduler extender and the planner loop (both unless --extender or "
                                   "--planner picks one) until SIGINT or SIGTERM.")
    p.add_argument("--extender", action="store_true", help="run the extender (HTTP)")
    p.add_argument("--planner", action="store_true", help="run the planner loop")
    plan_location_args(p, "plan document file: the planner writes it, the extender reads it")
    from edgeplace.k8s.extender.server import add_arguments

    add_arguments(p.add_argument_group("extender"))
    g = p.add_argument_group("planner")
    cluster_args(p)
    g.add_argument("--site-config", metavar="FILE", help="site config (see `edgeplace import`)")
    g.add_argument("--period", type=_positive(float), default=300.0, metavar="S", help="plan at least every S seconds (default 300)")
    g.add_argument("--debounce", type=_nonneg, default=5.0, metavar="S",
                   help="after a change, wait until S seconds pass without one (default 5)")
    g.add_argument("--max-delay", type=_nonneg, default=30.0, metavar="S",
                   help="but plan at most S seconds after the first change (default 30)")
    g.add_argument("--solver", choices=("cpsat", "milp", "greedy"), default="cpsat", help="solver (default cpsat)")
    g.add_argument("--time-limit", type=_positive(float), default=20.0, metavar="S", help="solver time limit (default 20)")
    g.add_argument("--migration-g-per-replica", type=_nonneg, default=DEFAULT_MIGRATION_G, metavar="G",
                   help=f"penalty [gCO2e] for planning a running replica onto another node (default {DEFAULT_MIGRATION_G:g}: "
                        "a plan moves a pod only for more than that, and never between equal nodes)")
    g.add_argument("--valid-for", type=_positive(float), default=900.0, metavar="S",
                   help="a plan is valid this long without a newer one; then the extender fails open (default 900)")
    g.add_argument("--no-release-gates", action="store_true", help="do not remove edgeplace.io/deferred gates")
    g.add_argument("--no-leader-elect", action="store_true", help="plan without a Lease (a single replica only)")
    g.add_argument("--lease", type=ns_name, metavar="NS/NAME", help="leader Lease (default: <plan namespace>/edgeplace-planner)")
    g.add_argument("--identity", help="leader identity (default: hostname + random suffix)")
    g.add_argument("--once", action="store_true", help="planner: plan one round, print its outcome and exit")
    g.add_argument("--keep-isolation", action="store_true",
                   help="each round, keep tenant isolation in the cluster's taints, namespace labels and admission "
                        "parameters (what `edgeplace apply-isolation` does; the ConfigMap in the plan's namespace)")
    g.add_argument("--steer-at-admission", action="store_true",
                   help="each round, write the plan's nodes per workload for the chart's steering admission policy "
                        "(edgeplace.k8s.steering; the ConfigMap edgeplace-steering in the plan's namespace), so "
                        "kube-scheduler steers planned pods without calling the extender")
    g.add_argument("--extender-every-pod-from", type=nonneg_int, default=steering.DEFAULT_EVERY_POD_FROM, metavar="NODES",
                   help="with --steer-at-admission, the policy marks pods for the extender (kube-scheduler's "
                        f"managedResources {steering.UNSTEERED_RESOURCE}): from this many nodes on every pod (the "
                        "extender's filter then leaves kube-scheduler the plan's best node, cheaper than scoring "
                        "every node), below it only the pods steering does not cover "
                        f"(default {steering.DEFAULT_EVERY_POD_FROM}; 0: every pod)")
    g.add_argument("--no-extender-marks", action="store_true",
                   help="with --steer-at-admission, mark no pod for the extender (for a kube-scheduler whose "
                        "extender stanza has no managedResources: it then calls the extender for every pod)")
    g.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve the planner's Prometheus metrics on this port (default 0: off)")
    from edgeplace.actuation_cli import add_actuation_arguments

    add_actuation_arguments(p)
    _kueue_args(p)

    p = sub.add_parser("apply-isolation", help="keep tenant isolation in the cluster's own taints, labels and admission",
                       description="Taint dedicated nodes, label namespaces with their tenant and write the admission "
                                   "policies' parameters (edgeplace.k8s.isolation), so never_with and dedicated pools "
                                   "hold with the extender down; the chart's admission policies do the rest "
                                   "(docs/KUBERNETES.md, Isolation). Prints each change.")
    cluster_args(p)
    p.add_argument("--site-config", metavar="FILE", help="site config with tenants (see `edgeplace import`)")
    p.add_argument("--namespace", default="edgeplace-system", help="namespace of the parameter ConfigMap (default edgeplace-system)")
    p.add_argument("--exclude-namespace", action="append", metavar="NS",
                   help="namespace left alone (repeatable; default: kube-system, kube-public, kube-node-lease, edgeplace-system)")
    p.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    return {"import": cmd_import, "serve": cmd_serve, "apply-isolation": cmd_apply_isolation}


def _kueue_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Kueue (docs/KUBERNETES.md, \"Batch jobs through Kueue\")")
    g.add_argument("--kueue", action="store_true",
                   help="run the Kueue AdmissionCheck controller with the planner: hold Workloads until their planned slot")
    g.add_argument("--fleet-config", metavar="FILE",
                   help="plan over the worker clusters this site config names (clusters: [...]) and steer MultiKueue's "
                        "dispatch from the manager cluster (implies --kueue; instead of --site-config)")
    g.add_argument("--kueue-controller-name", default="edgeplace.io/carbon-aware", metavar="NAME",
                   help="the AdmissionChecks' spec.controllerName edgeplace serves (default edgeplace.io/carbon-aware)")
    g.add_argument("--kueue-min-defer", type=_nonneg, default=30.0, metavar="S",
                   help="waits at least this long give the quota back until the planned start (default 30)")
    g.add_argument("--kueue-plan-wait", type=_nonneg, default=120.0, metavar="S",
                   help="admit a Workload no plan included within S seconds of its quota reservation (default 120)")
    g.add_argument("--kueue-watchdog", action="store_true",
                   help="run only the fail-open watchdog: admit held Workloads once edgeplace is down for --grace seconds")
    g.add_argument("--grace", type=_nonneg, default=300.0, metavar="S",
                   help="watchdog: how long edgeplace may be down before held Workloads are admitted (default 300)")
    g.add_argument("--multikueue", action="store_true",
                   help="watchdog: edgeplace is MultiKueue's dispatcher here; when it is down, nominate every active cluster")


def _usage(message: str) -> int:
    print(f"edgeplace: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------
# import


def cmd_import(args: argparse.Namespace) -> int:
    import json

    import yaml

    from edgeplace.import_sources import run_import, source_description, write_scenario

    imported = run_import(args)
    if imported is not None:  # a file-based source: EdgeSimPy or a topology
        doc, notes = imported
        write_scenario(doc, notes, args.output, source_description(args))
        if not args.quiet:
            for note in notes:
                print(f"  note: {note}", file=sys.stderr)
        return EXIT_OK

    from edgeplace.k8s.mapping import MappingOptions, load_site_config, map_cluster, summary
    from edgeplace.topology.io import atomic_write_text

    config = load_site_config(args.site_config)
    api = connect(args.kubeconfig, args.context, args.in_cluster)
    objects = read_cluster_or_explain(api)
    options = MappingOptions(exclude_namespaces=tuple(args.exclude_namespace) if args.exclude_namespace else None)
    mapped = map_cluster(objects, config, options, source=f"cluster {api.configuration.host}")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if Path(args.output).suffix.lower() == ".json":
        text = json.dumps(mapped.document, indent=1) + "\n"
    else:
        notes = "".join(f"#   {w}\n" for w in mapped.warnings) or "#   none\n"
        text = (f"# Written by `edgeplace import --from-cluster` at {stamp} from {api.configuration.host}.\n"
                f"# Warnings:\n{notes}"
                + yaml.safe_dump(mapped.document, sort_keys=False, allow_unicode=True, width=120))
    atomic_write_text(args.output, text)
    if not args.quiet:
        counts = summary(mapped)
        print(f"edgeplace: wrote {args.output}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
        for name, why in sorted(mapped.excluded_nodes.items()):
            print(f"  excluded node {name}: {why}", file=sys.stderr)
        for w in mapped.warnings:
            print(f"  warning: {w}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------
# serve


def cmd_serve(args: argparse.Namespace) -> int:
    from edgeplace.actuation_cli import actuation_options
    from edgeplace.k8s.actuation.actuator import Actuator
    from edgeplace.k8s.actuation.metrics import PlannerMetrics
    from edgeplace.k8s.extender.server import check_arguments, server_from_arguments
    from edgeplace.k8s.extender.table import PlanFile
    from edgeplace.k8s.leader import LeaderElector
    from edgeplace.k8s.mapping import load_site_config
    from edgeplace.k8s.planner import Planner, PlannerOptions
    from edgeplace.k8s.publish import DEFAULT_NAME, DEFAULT_NAMESPACE, ConfigMapPlanPublisher, ConfigMapPlanSource, FilePlanPublisher
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.policies.costs import Objective

    if (args.kueue or args.fleet_config or args.kueue_watchdog) and "/" not in args.kueue_controller_name:
        return _usage(f"--kueue-controller-name must be a domain-prefixed name such as edgeplace.io/carbon-aware "
                      f"(got {args.kueue_controller_name!r})")
    if args.kueue_watchdog:
        return _serve_watchdog(args)
    if args.multikueue:
        return _usage("--multikueue is a watchdog option; add --kueue-watchdog")
    want_kueue = args.kueue or bool(args.fleet_config)
    run_extender = args.extender or not (args.planner or want_kueue)
    run_planner = args.planner or want_kueue or not args.extender
    if args.fleet_config and (args.site_config or args.extender):
        return _usage("--fleet-config replaces --site-config and plans jobs only (no extender): drop "
                      + ("--site-config" if args.site_config else "--extender"))
    if args.fleet_config and "apply" in (args.rebalance, args.power):
        return _usage("--rebalance and --power act on one cluster's nodes; with --fleet-config actuation is off "
                      "(drop --rebalance apply / --power apply)")
    problem = check_arguments(args)
    if problem:
        return _usage(problem)
    fleet_config = None
    if args.fleet_config:  # check the file before connecting anywhere
        from edgeplace.k8s.multicluster import load_fleet_config

        fleet_config = load_fleet_config(args.fleet_config)
    if args.once and not run_planner:
        return _usage("--once is a planner option; drop --extender or add --planner")
    if args.once and run_extender and not args.planner:
        run_extender = False  # `serve --once`: one planner round only
    if not 0 <= args.metrics_port < 65536:
        return _usage(f"--metrics-port must be 0..65535 (got {args.metrics_port})")
    if args.debounce > args.max_delay:
        return _usage(f"--debounce ({args.debounce:g}) must be <= --max-delay ({args.max_delay:g})")
    namespace, name = args.configmap or (DEFAULT_NAMESPACE, DEFAULT_NAME)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("edgeplace.serve")

    api = None
    if run_planner or (run_extender and not args.plan_file):
        api = connect(args.kubeconfig, args.context, args.in_cluster)

    server = None
    if run_extender:
        source = (PlanFile(args.plan_file, args.poll_interval) if args.plan_file
                  else ConfigMapPlanSource(api, namespace, name, args.configmap_key, args.poll_interval))
        try:
            server = server_from_arguments(args, source)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            from edgeplace.topology.errors import InputError, Problem

            raise InputError(args.token_file or args.tls_cert or "TLS/token", [Problem("", str(exc))]) from None

    planner = elector = controller = None
    if run_planner:
        config = load_site_config(args.site_config)
        publisher = (FilePlanPublisher(args.plan_file) if args.plan_file
                     else ConfigMapPlanPublisher(api, namespace, name, args.configmap_key))
        if not args.no_leader_elect and not args.once:
            lease_ns, lease_name = args.lease or (namespace, "edgeplace-planner")
            elector = LeaderElector(api, lease_ns, lease_name, identity=args.identity)
        options = PlannerOptions(
            period_s=args.period, debounce_s=args.debounce, max_delay_s=args.max_delay,
            solve=SolveOptions(solver=args.solver, time_limit_s=args.time_limit, bound_time_limit_s=0.0,
                               objective=Objective(migration_g_per_replica=args.migration_g_per_replica)),
            valid_for_s=args.valid_for, release_gates=not args.no_release_gates and not args.fleet_config,
            isolation_namespace=namespace if args.keep_isolation and not args.fleet_config else None,
            steering_namespace=namespace if args.steer_at_admission and not args.fleet_config else None,
            extender_marks=not args.no_extender_marks, extender_every_pod_from=args.extender_every_pod_from)
        # Over a fleet the plan's nodes are other clusters' (`<cluster>/<node>`): nothing to actuate here.
        actuation = actuation_options(args, namespace, *(("off", "off") if args.fleet_config else ()))
        metrics = PlannerMetrics()
        actuator = (Actuator(api, actuation, metrics, identity=args.identity or "edgeplace-planner")
                    if actuation.enabled and not args.once else None)
        planner = Planner(api, publisher, config, options, elector, actuator=actuator, metrics=metrics)
        if want_kueue:
            controller = _attach_kueue(args, api, planner, elector, fleet_config)
        if args.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(args.metrics_port, addr=args.host, registry=metrics.registry)
            log.info("planner metrics on http://%s:%d/metrics", args.host, args.metrics_port)

    if args.once:
        result = planner.plan_once()
        print(f"planner: {result.outcome} in {result.seconds:.2f} s: {result.detail}")
        for change in result.isolation:
            print(f"  isolation: {change}")
        for w in result.warnings:
            print(f"  warning: {w}")
        if controller is not None:
            for action in controller.reconcile():
                print(f"kueue: {action.workload}: {action.action} ({action.reason}) {action.detail}")
        return EXIT_OK if result.outcome in ("published", "unchanged", "superseded") else 1

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = []
    try:
        if server is not None:
            server.start()
            # Freeze start-up objects out of the GC's reach: a full collection
            # over them otherwise lands in some request and sets the p99.
            from edgeplace.k8s.extender.server import freeze_heap

            server.helper.warm()
            freeze_heap()
            log.info("extender serving on %s", server.url)
        if elector is not None:
            t = threading.Thread(target=elector.run, args=(stop,), name="edgeplace-leader", daemon=True)
            t.start()
            threads.append(t)
        if planner is not None:
            t = threading.Thread(target=planner.run, args=(stop,), name="edgeplace-planner", daemon=True)
            t.start()
            threads.append(t)
        if controller is not None:
            t = threading.Thread(target=controller.run, args=(stop,), name="edgeplace-kueue", daemon=True)
            t.start()
            threads.append(t)
        stop.wait()
    except OSError as exc:  # e.g. the port is taken
        from edgeplace.topology.errors import InputError, Problem

        raise InputError(f"{args.host}:{args.port}", [Problem("", f"cannot listen: {exc}")]) from None
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        if server is not None:
            server.stop()
    return EXIT_OK


# ---------------------------------------------------------------------------
# apply-isolation


def cmd_apply_isolation(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from edgeplace.k8s.isolation import reconcile
    from edgeplace.k8s.mapping import load_site_config
    from edgeplace.topology.errors import InputError, Problem

    config = load_site_config(args.site_config)
    api = connect(args.kubeconfig, args.context, args.in_cluster)
    objects = read_cluster_or_explain(api)
    exclude = tuple(args.exclude_namespace) if args.exclude_namespace else None
    try:
        done = reconcile(api, config, objects, namespace=args.namespace, exclude_namespaces=exclude, dry_run=args.dry_run)
    except ApiException as exc:
        hint = (" (the identity needs nodes update, namespaces patch and configmaps create/update in "
                f"{args.namespace}: see isolation-rbac.yaml in deploy/helm/edgeplace)" if exc.status in (401, 403) else "")
        raise InputError(api.configuration.host, [Problem(f"HTTP {exc.status}", f"{exc.reason}{hint}")]) from None
    verb = "would change" if args.dry_run else "changed"
    for change in done:
        print(f"{verb}: {change}")
    print(f"edgeplace: isolation {'checked' if args.dry_run else 'applied'}: {len(done)} change(s)")
    return EXIT_OK


# ---------------------------------------------------------------------------
# Kueue (imported only with --kueue, --fleet-config or --kueue-watchdog)


def _kueue_ready(api) -> None:
    """Kueue's API must be served: a clear `InputError` (exit 3) when its CRDs are not installed."""
    from edgeplace.k8s.kueue import KueueMissing, check_kueue_installed
    from edgeplace.topology.errors import InputError, Problem

    try:
        call_or_explain(api, lambda: check_kueue_installed(api))
    except KueueMissing as exc:
        raise InputError(getattr(api.configuration, "host", "the API server"),
                         [Problem("kueue.x-k8s.io", str(exc))]) from None


def _attach_kueue(args: argparse.Namespace, api, planner, elector, fleet_config=None):
    """The Kueue AdmissionCheck controller (and, with a fleet config, the fleet reader and the dispatcher)."""
    import time

    from edgeplace.k8s.kueue import KueueController, KueueOptions, map_with_kueue, read_with_kueue

    _kueue_ready(api)
    options = KueueOptions(controller_name=args.kueue_controller_name, min_defer_s=args.kueue_min_defer,
                           plan_wait_s=args.kueue_plan_wait)
    dispatcher = None
    planner.mapper = map_with_kueue
    if fleet_config is not None:
        from edgeplace.k8s.multicluster import Fleet, MultiKueueDispatcher, NoPublisher

        fleet = Fleet(api, fleet_config, connect, kubeconfig=args.kubeconfig)
        planner.reader, planner.config = fleet.read, fleet.config.site_config
        if not args.plan_file:
            planner.publisher = NoPublisher()
        dispatcher = MultiKueueDispatcher(api, options)
    else:
        planner.reader = read_with_kueue
    controller = KueueController(api, options, elector, dispatcher=dispatcher,
                                 trigger=lambda: planner.debouncer.mark(time.monotonic()))
    planner.plan_listeners.append(controller.on_plan)
    return controller


def _serve_watchdog(args: argparse.Namespace) -> int:
    """`serve --kueue-watchdog`: the fail-open watchdog alone, until SIGINT or SIGTERM."""
    if args.extender or args.planner or args.kueue or args.fleet_config or args.once:
        return _usage("--kueue-watchdog runs alone (it must keep working when edgeplace is down): drop --extender, "
                      "--planner, --kueue, --fleet-config and --once")
    from edgeplace.k8s.kueue_failopen import FailOpenWatchdog
    from edgeplace.k8s.publish import DEFAULT_NAMESPACE

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    api = connect(args.kubeconfig, args.context, args.in_cluster)
    _kueue_ready(api)
    lease_ns, lease_name = args.lease or ((args.configmap or (DEFAULT_NAMESPACE, ""))[0], "edgeplace-planner")
    watchdog = FailOpenWatchdog(api, lease_ns, lease_name, args.grace, args.kueue_controller_name, args.multikueue)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("edgeplace.serve").info("kueue watchdog on lease %s/%s, grace %g s", lease_ns, lease_name, args.grace)
    watchdog.run(stop)
    return EXIT_OK
