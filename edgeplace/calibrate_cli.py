"""The `edgeplace calibrate` command: fit each node's power model to what Kepler measured.

    edgeplace calibrate SCENARIO [--prometheus-url URL] [--window 7d | --start T --end T]
        [--source kepler|kepler-legacy] [--zones package,dram] [--cpu-label instance]
        [--node ID ...] [--form linear|points] [--min-range F]
        [-o OUT | --write] [--annotate-nodes [--kubeconfig F] [--context C]] [--format table|json|csv]

For each node of the scenario (or each `--node`): the stored samples of
Kepler's node energy counter and node_exporter's CPU idle time over the
window (`edgeplace.topology.signals.kepler`), differenced over the same
intervals, and a power model fitted to them (`edgeplace.policies.calibration`).
The table has one row per node: its fit (idle/max or the 11 points), the fit
error (RMSE and largest error, W and % of mean power), the samples and
utilisation range used, or why no curve was fitted (no Kepler series, too
little load range, ...) and how to get data that fits.

Fitted models are written, only with `-o` or `--write`, into the scenario
(validated as a whole, atomically), and with `--annotate-nodes` onto the
cluster's Node objects as the annotations the cluster mapping reads
(`edgeplace.io/idle-w` and `max-w`, or `edgeplace.io/power-curve-w`).
Nodes whose fit was refused keep their model.

Exit codes: 0 every node fitted; 1 some node could not be fitted (the rest
are written); 2 usage; 3 invalid input (scenario, Prometheus unreachable or
answering nonsense, no node fitted at all: nothing written).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from edgeplace.argtypes import positive_float, positive_int

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
Handler = Callable[[argparse.Namespace], int]


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"write a duration like 7d, 36h or 90m, got {text!r}")
    return int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"write an ISO 8601 time with a UTC offset, got {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time with a UTC offset (e.g. 2026-06-21T00:00Z), got {text!r}")
    return when


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    from edgeplace.policies.calibration import FORMS, MIN_RANGE
    from edgeplace.topology.signals.kepler import DEFAULT_RESOLUTION_S, DEFAULT_STEADY_TOLERANCE, ENERGY_SOURCES

    p = sub.add_parser("calibrate", help="fit node power models to Kepler's measured energy",
                       description="Fit each node's power model (idle/max, or the 11 SPECpower points) to Kepler's "
                                   "node energy counters and the node's CPU utilisation in Prometheus; report the "
                                   "fit error per node and write the models into the scenario or onto the Nodes.")
    p.add_argument("scenario", help="scenario file (YAML or JSON)")
    q = p.add_argument_group("Prometheus")
    q.add_argument("--prometheus-url", metavar="URL", help="base URL (default: $PROMETHEUS_URL); token: $PROMETHEUS_TOKEN")
    q.add_argument("--window", type=_duration_s, default=7 * 86400, metavar="DURATION",
                   help="how far back from --end to read (default 7d)")
    q.add_argument("--start", type=_time, metavar="TIME", help="start of the window (ISO 8601 with offset)")
    q.add_argument("--end", type=_time, metavar="TIME", help="end of the window (default: now)")
    q.add_argument("--source", choices=list(ENERGY_SOURCES), default="kepler",
                   help="kepler: Kepler 0.10+ kepler_node_cpu_joules_total (RAPL zones); kepler-legacy: Kepler "
                        "0.7 kepler_node_platform_joules_total (default kepler)")
    q.add_argument("--zones", metavar="Z1,Z2", help="kepler: RAPL zones to sum (default package,dram; psys for the "
                                                    "whole platform where exported)")
    q.add_argument("--cpu-label", default="instance", metavar="LABEL",
                   help="label of node_cpu_seconds_total holding the node name (host:port matched; default instance)")
    q.add_argument("--max-interval", type=positive_float, metavar="S",
                   help="longest interval between two samples [s] (default 2.5 x the median scrape interval)")
    q.add_argument("--resolution", type=positive_float, default=DEFAULT_RESOLUTION_S, metavar="S",
                   help=f"join scrape intervals into windows of at least S seconds before fitting (default "
                        f"{DEFAULT_RESOLUTION_S:g}): dilutes the error of interpolating CPU time between scrapes")
    q.add_argument("--steady-tolerance", type=_fraction, default=DEFAULT_STEADY_TOLERANCE, metavar="F",
                   help=f"drop windows in which utilisation moves by more than F (default "
                        f"{DEFAULT_STEADY_TOLERANCE:g}; 1 keeps every window)")
    q.add_argument("--timeout", type=positive_float, default=30.0, metavar="S", help="timeout of one request [s] (default 30)")
    q.add_argument("--attempts", type=positive_int, default=4, metavar="N", help="tries per request (default 4)")
    f = p.add_argument_group("fit")
    f.add_argument("--node", action="append", metavar="ID", help="only these nodes (repeatable; default: every node)")
    f.add_argument("--form", choices=FORMS, default="linear",
                   help="linear: idle_w/max_w; points: the 11 SPECpower points (needs samples near every decile)")
    f.add_argument("--min-range", type=_fraction, default=MIN_RANGE, metavar="F",
                   help=f"smallest utilisation span to fit a slope on (default {MIN_RANGE:g})")
    w = p.add_argument_group("output")
    w.add_argument("-o", "--output", metavar="FILE", help="write the scenario with the fitted models to FILE")
    w.add_argument("--write", action="store_true", help="write the fitted models into SCENARIO itself")
    w.add_argument("--annotate-nodes", action="store_true",
                   help="set the power annotations (edgeplace.io/idle-w, max-w or power-curve-w) on the cluster's Nodes")
    w.add_argument("--kubeconfig", metavar="FILE", help="with --annotate-nodes: kubeconfig (default $KUBECONFIG)")
    w.add_argument("--context", metavar="NAME", help="with --annotate-nodes: kubeconfig context")
    w.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)")
    return {"calibrate": cmd_calibrate}


def _usage(message: str) -> int:
    print(f"edgeplace calibrate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edgeplace.output import render
    from edgeplace.topology import load_scenario
    from edgeplace.topology.errors import InputError, Problem

    if args.output and args.write:
        return _usage("-o and --write conflict: write to FILE or into the scenario, not both")
    if (args.kubeconfig or args.context) and not args.annotate_nodes:
        return _usage("--kubeconfig and --context go with --annotate-nodes")
    if args.zones and args.source != "kepler":
        return _usage("--zones is for --source kepler (legacy platform energy has no zones)")
    end = args.end or datetime.now(timezone.utc)
    start = args.start or end - timedelta(seconds=args.window)
    if start >= end:
        return _usage(f"the window is empty: --start {start.isoformat()} is not before --end {end.isoformat()}")
    scenario = load_scenario(args.scenario)
    nodes = args.node or scenario.node_ids
    unknown = [n for n in nodes if n not in scenario.node_ids]
    if unknown:
        raise InputError("--node", [Problem(n, f"is not a node of {args.scenario}") for n in unknown])
    rows, fits = calibrate(args, nodes, start.timestamp(), end.timestamp())
    if not fits:
        raise InputError(args.scenario, [Problem(r["node"], r["message"]) for r in rows])
    if args.output or args.write:
        _write_scenario(args.scenario, args.output or args.scenario, fits)
    if args.annotate_nodes:
        _annotate(args, fits)
    import pandas as pd

    table = pd.DataFrame(rows)
    if args.format == "table":
        what = {"kepler": f"Kepler RAPL zones {args.zones or 'package,dram'}", "kepler-legacy": "Kepler platform energy"}
        print(f"{scenario.spec.name}: {len(fits)} of {len(nodes)} node(s) fitted ({args.form}) from "
              f"{what[args.source]} and node_exporter CPU time, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    sys.stdout.write(render(table, args.format).rstrip("\n") + "\n")
    written = args.output or (args.scenario if args.write else None)
    if written and args.format == "table":
        print(f"wrote the fitted model(s) into {written}")
    return EXIT_OK if len(fits) == len(nodes) else EXIT_PARTIAL


def calibrate(args: argparse.Namespace, nodes: list[str], start_s: float, end_s: float):
    """One row per node (the fit or why there is none) and the fits by node."""
    from edgeplace.policies.calibration import FitRefused, fit_power_model
    from edgeplace.topology.errors import InputError, Problem
    from edgeplace.topology.signals.http import RetryPolicy, ServiceUnavailable
    from edgeplace.topology.signals.kepler import node_power_samples
    from edgeplace.topology.signals.prometheus import Prometheus
    from edgeplace.topology.signals.services import ServiceConfig

    prom = Prometheus(ServiceConfig(base_url=args.prometheus_url, policy=RetryPolicy(attempts=args.attempts,
                                                                                          timeout_s=args.timeout)))
    zones = [z.strip() for z in args.zones.split(",") if z.strip()] if args.zones else None
    try:
        samples = node_power_samples(prom, nodes, start_s, end_s, source=args.source, zones=zones,
                                     cpu_label=args.cpu_label, max_interval_s=args.max_interval,
                                     resolution_s=args.resolution, steady_tolerance=args.steady_tolerance)
    except ServiceUnavailable as exc:
        raise InputError(f"Prometheus at {prom.base}", [Problem("", f"{exc}; check --prometheus-url (or "
                                                                    f"$PROMETHEUS_URL) and that the server is up")]) from None
    rows: list[dict[str, Any]] = []
    fits = {}
    for node in nodes:
        s = samples[node]
        row: dict[str, Any] = {"node": node, "status": "no data", "samples": int(s.power_w.size)}
        message = s.problem
        if message is None:
            try:
                fit = fit_power_model(s.utilisation, s.power_w, args.form, min_range=args.min_range)
            except FitRefused as exc:
                row["status"], message = "refused", str(exc)
            else:
                fits[node] = fit
                row.update(status="fitted", utilisation_min_pct=fit.utilisation_min * 100,
                           utilisation_max_pct=fit.utilisation_max * 100, idle_w=fit.idle_w, max_w=fit.max_w,
                           rmse_w=fit.rmse_w, rmse_pct=fit.rmse_pct, max_error_w=fit.max_error_w)
                if args.form == "points":
                    row["points_w"] = ",".join(f"{p:.1f}" for p in fit.points_w)
        row["message"] = "; ".join(([message] if message else []) + s.notes)
        rows.append(row)
    return rows, fits


def _write_scenario(source: str, target: str, fits) -> None:
    from edgeplace.topology.load import read_document
    from edgeplace.topology.signals.series import write_scenario

    doc = read_document(source)
    for entry in doc.get("nodes", []):
        if isinstance(entry, dict) and entry.get("id") in fits:
            entry["power"] = fits[entry["id"]].power_model()
    write_scenario(doc, target)


def _annotate(args: argparse.Namespace, fits) -> None:
    from edgeplace.cluster_connect import connect
    from edgeplace.k8s.mapping import power_annotations, set_node_annotations

    client = connect(args.kubeconfig, args.context)
    set_node_annotations(client, {node: power_annotations(fit.power_model()) for node, fit in fits.items()})


__all__ = ["add_commands", "calibrate", "cmd_calibrate"]
