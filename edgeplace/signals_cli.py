"""The `edgeplace signals` command: fetch, import and show a scenario's signals.

`add_commands(sub)` adds `signals` (with the actions below) to the
`edgeplace` parser's subparsers and returns its handler by name. Handlers
follow `edgeplace.cli`'s exit codes: 0 ok, 2 usage error (bad or
conflicting flags), 3 invalid input (a `topology.InputError` propagates:
a bad signal file, an unknown id, wrong credentials, a service down with
nothing cached).

    edgeplace signals fetch SCENARIO --service NAME [--zone REGION=ZONE ...] [--series actual|forecast]
                                     [--forecaster persistence|seasonal|ewma] [--offline] [-o OUT]
    edgeplace signals import SCENARIO [FILE ...] [--pv] [--fuel-mix FILE] [--forecaster NAME] [-o OUT]
    edgeplace signals show SCENARIO [--format sparkline|table|csv|json]

fetch and import write the scenario back (or to `-o`) atomically, and only
when the result is a valid scenario. docs/SIGNALS.md is the user guide.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator
from pathlib import Path

EXIT_OK, EXIT_USAGE = 0, 2
SERVICES = ("electricitymaps", "watttime", "ukgrid", "carbonaware", "prometheus")
FORECASTERS = ("persistence", "seasonal", "ewma")
SPARKS = "▁▂▃▄▅▆▇█"


# ---------------------------------------------------------------------------
# Argument types


def _pair(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple[str, Any]]:
    def parse(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        try:
            return key.strip(), kind(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    return parse


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high or math.isnan(value):
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value
    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 365:
        raise argparse.ArgumentTypeError(f"must be 1..365, got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (YAML or JSON)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the scenario here (default: back to SCENARIO)")
    from edgeplace.topology.signals.align import DEFAULT_MAX_GAP_MINUTES

    p.add_argument("--max-gap-minutes", type=_number(0, 10_080), default=DEFAULT_MAX_GAP_MINUTES, metavar="M",
                   help=f"fill gaps up to M minutes by linear interpolation, refuse longer ones "
                        f"(default {DEFAULT_MAX_GAP_MINUTES:g})")
    p.add_argument("--sample", choices=("mean", "point"), default="mean",
                   help="a series finer than the slots: each slot gets the time-weighted mean (default) or the "
                        "value at its start (point); energy per interval (kWh) is always summed")
    p.add_argument("--forecaster", choices=FORECASTERS,
                   help="also write a `series: forecast` signal made from the days before the horizon")
    p.add_argument("--history-days", type=_count, metavar="N",
                   help="days of history for --forecaster (default: 7 for ewma, 1 otherwise)")
    p.add_argument("--alpha", type=_number(0, 1, low_open=True), default=0.5,
                   help="weight of the newest day for --forecaster ewma (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no summary on standard error")


def add_commands(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `signals` to `sub` (an argparse subparsers object); return its handler."""
    p = sub.add_parser("signals", help="fetch, import and show grid intensity, PV and utilisation signals",
                       description="Bring signals into a scenario from services, files or pvlib, or show them. "
                                   "docs/SIGNALS.md describes formats, units and rules.")
    actions = p.add_subparsers(dest="signals_action", metavar="ACTION", required=True)

    f = actions.add_parser("fetch", help="grid intensity from a service, or utilisation from Prometheus",
                           description="Fetch signals for the scenario's horizon and write them into the scenario. "
                                       "Credentials come from the environment (docs/SIGNALS.md).")
    _common(f)
    f.add_argument("--service", required=True, choices=SERVICES, help="where to fetch from")
    f.add_argument("--zone", action="append", type=_pair(str, "REGION=ZONE"), metavar="REGION=ZONE",
                   help="the service's zone for a scenario region (repeatable; default: each region's id)")
    f.add_argument("--series", choices=("actual", "forecast"), default="actual",
                   help="actual (history) or the service's own forecast (default actual)")
    f.add_argument("--offline", action="store_true", help="no network: cached values (and --fallback-file) only")
    f.add_argument("--cache-dir", metavar="DIR",
                   help="cache directory (default: $EDGEPLACE_SIGNALS_CACHE or ~/.cache/edgeplace/signals)")
    f.add_argument("--fallback-file", action="append", metavar="FILE",
                   help="signal file to use when the service is down and the cache falls short (repeatable)")
    f.add_argument("--base-url", metavar="URL", help="the service's base URL (default: documented URL or environment)")
    f.add_argument("--timeout", type=_number(0, 300, low_open=True), default=10.0, metavar="S",
                   help="timeout of one request [s] (default 10)")
    f.add_argument("--attempts", type=_count, default=4, metavar="N", help="tries per request (default 4)")
    f.add_argument("--signal-type", choices=("co2_moer", "co2_aoer"), default="co2_moer",
                   help="watttime: co2_moer (marginal, default) or co2_aoer (average, history only)")
    f.add_argument("--intensity-kind", choices=("average", "marginal"),
                   help="carbonaware: the kind its data source gives (required for carbonaware)")
    f.add_argument("--factor-type", choices=("direct", "lifecycle"),
                   help="electricitymaps: emission factors to ask for (default lifecycle); carbonaware: what its "
                        "data source gives (default: not stated)")
    g = f.add_argument_group("prometheus")
    g.add_argument("--node", action="append", metavar="ID", help="only these nodes (repeatable; default: all)")
    g.add_argument("--node-label", default="instance", metavar="LABEL",
                   help="label holding the node name (default instance; host:port is matched too)")
    g.add_argument("--query", metavar="PROMQL", help="utilisation query [fraction] (default: node_exporter CPU)")

    a = actions.add_parser("archive", help="the forecasts a service had issued over the horizon, to replay in simulate",
                           description="Fetch the historical forecasts (watttime: /v3/forecast/historical; "
                                       "carbonaware: /emissions/forecasts/batch) that were current at each re-plan "
                                       "instant of the scenario's horizon, and write them as a forecast archive "
                                       "(CSV) for `edgeplace simulate --forecast-source`.")
    a.add_argument("scenario", help="scenario file (YAML or JSON): its horizon and regions")
    a.add_argument("-o", "--output", required=True, metavar="FILE", help="the archive CSV to write")
    a.add_argument("--service", required=True, choices=("watttime", "carbonaware"), help="where to fetch from")
    a.add_argument("--zone", action="append", type=_pair(str, "REGION=ZONE"), metavar="REGION=ZONE",
                   help="the service's zone for a scenario region (repeatable; default: each region's id)")
    a.add_argument("--every-minutes", type=_number(1, 1440), metavar="M",
                   help="one forecast per M minutes, as a planner re-planning that often had (default: one slot)")
    a.add_argument("--base-url", metavar="URL", help="the service's base URL (default: documented URL or environment)")
    a.add_argument("--intensity-kind", choices=("average", "marginal"),
                   help="carbonaware: the kind its data source gives (required for carbonaware)")
    a.add_argument("--timeout", type=_number(0, 300, low_open=True), default=10.0, metavar="S",
                   help="timeout of one request [s] (default 10)")
    a.add_argument("--quiet", action="store_true", help="no summary on standard error")

    i = actions.add_parser("import", help="signals from CSV/Parquet files, pvlib or a fuel mix",
                           description="Read signal files (docs/SIGNALS.md: timestamp with offset, region|site|node, "
                                       "value, unit), compute PV with pvlib, or derive intensity from a fuel mix, "
                                       "and write the result into the scenario.")
    _common(i)
    i.add_argument("files", nargs="*", metavar="FILE", help="signal files (.csv or .parquet)")
    pv = i.add_argument_group("pvlib")
    pv.add_argument("--pv", action="store_true", help="PV output of the sites with pv_kwp (clear sky unless --irradiance)")
    pv.add_argument("--site", action="append", metavar="ID", help="only these PV sites (repeatable)")
    pv.add_argument("--tilt", type=_number(0, 90), default=30.0, metavar="DEG",
                    help="module tilt for sites without pv_tilt_deg (default 30)")
    pv.add_argument("--azimuth", type=_number(0, 360), default=180.0, metavar="DEG",
                    help="module azimuth, degrees from north, for sites without pv_azimuth_deg (default 180: south)")
    pv.add_argument("--loss", type=_number(0, 1), default=0.1408, metavar="F",
                    help="DC system losses (default 0.1408: PVWatts' 14 %%; the inverter is modelled apart)")
    pv.add_argument("--iam", choices=("physical", "ashrae", "none"), default="physical",
                    help="incidence-angle modifier of the beam irradiance (default physical, as pvlib's PVWatts)")
    pv.add_argument("--clear-sky-model", choices=("ineichen", "simplified_solis"), default="ineichen")
    pv.add_argument("--irradiance", metavar="FILE", help="measured irradiance (timestamp, ghi[, dni, dhi] or poa_global)")
    mix = i.add_argument_group("fuel mix")
    mix.add_argument("--fuel-mix", metavar="FILE", help="generation by fuel per region (timestamp, region, fuel, value, unit)")
    mix.add_argument("--factor", action="append", type=_pair(float, "FUEL=GRAMS"), metavar="FUEL=G",
                     help="emission factor [gCO2e/kWh] for a fuel (repeatable; default IPCC AR5 medians)")

    s = actions.add_parser("show", help="the scenario's signals as sparklines or a table",
                           description="Show every signal of a scenario: a sparkline per series, or one row per slot.")
    s.add_argument("scenario", help="scenario file (YAML or JSON)")
    s.add_argument("--format", choices=("sparkline", "table", "csv", "json"), default="sparkline",
                   help="sparkline per series (default), or a table of values per slot")
    s.add_argument("--signal", choices=("grid_intensity", "renewable_supply", "background_utilisation"),
                   help="only this kind of signal")
    s.add_argument("--series", choices=("actual", "forecast"), help="only actual or forecast series")
    s.add_argument("--id", action="append", metavar="ID", help="only the series of this region, site or node")
    return {"signals": cmd_signals}


def cmd_signals(args: argparse.Namespace) -> int:
    handler = {"fetch": cmd_fetch, "import": cmd_import, "show": cmd_show, "archive": cmd_archive}[args.signals_action]
    with warnings.catch_warnings(record=True) as caught:
        from edgeplace.topology.signals.cache import SignalWarning

        warnings.simplefilter("always", SignalWarning)
        try:
            return handler(args)
        finally:
            for w in caught:
                print(f"edgeplace: warning: {w.message}", file=sys.stderr)


def _usage(message: str) -> int:
    print(f"edgeplace signals: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------
# Shared steps


def _open(path: str):
    """The document and its field-checked spec (the whole-file checks run before writing)."""
    from pydantic import ValidationError

    from edgeplace.topology.errors import InputError, Problem, pydantic_problems
    from edgeplace.topology.load import read_document
    from edgeplace.topology.spec import ScenarioSpec

    doc = read_document(path)
    if not isinstance(doc, dict):
        raise InputError(path, [Problem("", f"a scenario is a mapping of fields, got {type(doc).__name__}")])
    try:
        return doc, ScenarioSpec.model_validate(doc)
    except ValidationError as exc:
        raise InputError(path, pydantic_problems(exc.errors())) from None


def _history_days(args: argparse.Namespace) -> int:
    return args.history_days or (7 if args.forecaster == "ewma" else 1)


def _write(args: argparse.Namespace, doc: dict, spec, series: list) -> int:
    from edgeplace.topology.signals.series import check_against_scenario, write_signals_back

    out = args.output or args.scenario
    check_against_scenario(series, spec, out)
    write_signals_back(args.scenario, doc, series, out)
    if not args.quiet:
        print(f"edgeplace: wrote {out}: {len(series)} signal(s)", file=sys.stderr)
        for s in series:
            v = s.values
            print(f"  {s.label()}: {len(v)} slots, {min(v):.4g}..{max(v):.4g} mean {sum(v) / len(v):.4g} {s.unit} "
                  f"[{s.source}]", file=sys.stderr)
            for note in s.notes:
                print(f"    {note}", file=sys.stderr)
    return EXIT_OK


@contextlib.contextmanager
def _history_needed(args: argparse.Namespace, past) -> Iterator[None]:
    """Say up front that the problems below are about the history a forecaster reads."""
    from edgeplace.topology.errors import InputError, Problem

    try:
        yield
    except InputError as exc:
        head = Problem("--forecaster", f"{args.forecaster} reads the {_history_days(args)} day(s) before the horizon "
                                       f"({past.describe()}) from every input it forecasts; import inputs without "
                                       f"that history in a separate run without --forecaster")
        raise InputError(exc.source, [head, *exc.problems]) from None


def _forecasts(histories: Iterable, grid, args: argparse.Namespace) -> list:
    from edgeplace.topology.signals.forecast import forecast_series

    return [forecast_series(h, grid, args.forecaster, alpha=args.alpha) for h in histories]


# ---------------------------------------------------------------------------
# fetch


def cmd_fetch(args: argparse.Namespace) -> int:
    from edgeplace.topology.signals.cache import SignalCache
    from edgeplace.topology.signals.fetch import fetch_intensity, fetch_utilisation
    from edgeplace.topology.signals.files import load_signal_files
    from edgeplace.topology.signals.forecast import history_grid
    from edgeplace.topology.signals.http import RetryPolicy
    from edgeplace.topology.signals.prometheus import Prometheus
    from edgeplace.topology.signals.series import SlotGrid
    from edgeplace.topology.signals.services import ServiceConfig, service_registry

    if args.forecaster and args.series == "forecast":
        return _usage("--forecaster makes a forecast from history; --series forecast takes the service's own: pick one")
    if args.service == "prometheus" and (args.zone or args.series == "forecast" or args.forecaster):
        return _usage("prometheus gives node utilisation: --zone, --series forecast and --forecaster do not apply")
    if args.service != "prometheus" and (args.node or args.query):
        return _usage("--node and --query are prometheus options")
    if args.signal_type != "co2_moer" and args.service != "watttime":
        return _usage("--signal-type is for watttime")
    if args.intensity_kind and args.service != "carbonaware":
        return _usage("--intensity-kind is for carbonaware (the other services say which kind they give)")
    if args.factor_type and args.service not in ("electricitymaps", "carbonaware"):
        return _usage("--factor-type is for electricitymaps and carbonaware (ukgrid and watttime give direct factors)")
    doc, spec = _open(args.scenario)
    grid = SlotGrid.from_horizon(spec.horizon)
    config = ServiceConfig(base_url=args.base_url, policy=RetryPolicy(attempts=args.attempts, timeout_s=args.timeout),
                           signal_type=args.signal_type, intensity_kind=args.intensity_kind,
                           emission_factor_type=args.factor_type)
    cache = SignalCache(args.cache_dir)
    work = history_grid(grid, _history_days(args)) if args.forecaster else grid
    fallback = (load_signal_files(args.fallback_file, work, max_gap_minutes=args.max_gap_minutes, sample=args.sample)
                if args.fallback_file else [])
    common = dict(cache=cache, offline=args.offline, fallback=fallback, max_gap_minutes=args.max_gap_minutes,
                  sample=args.sample)

    if args.service == "prometheus":
        nodes = args.node or [n.id for n in spec.nodes]
        series, missing = fetch_utilisation(Prometheus(config), nodes, grid, label=args.node_label, query=args.query,
                                            required=args.node or (), **common)
        if missing and not args.quiet:
            print(f"edgeplace: no utilisation for {len(missing)} node(s), kept as they are: "
                  f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}", file=sys.stderr)
        if not series:
            from edgeplace.topology.errors import InputError, Problem

            raise InputError("Prometheus", [Problem(f"label {args.node_label}", "no series matched a node of the "
                                                                                "scenario; check --node-label and --query")])
        return _write(args, doc, spec, series)

    service = service_registry()[args.service](config)
    zones = dict(args.zone) if args.zone else {r.id: r.id for r in spec.regions}
    unknown = sorted(set(zones) - {r.id for r in spec.regions})
    if unknown:
        return _usage(f"--zone names region(s) {', '.join(unknown)} not in the scenario "
                      f"(regions: {', '.join(r.id for r in spec.regions)})")
    series = fetch_intensity(service, zones, work, series=args.series, **common)
    if args.forecaster:
        series = _forecasts(series, grid, args)
    return _write(args, doc, spec, series)


# ---------------------------------------------------------------------------
# archive


def cmd_archive(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from edgeplace.topology.io import atomic_write_text
    from edgeplace.topology.signals.archive import fetch_archive, write_archive_csv
    from edgeplace.topology.signals.http import RetryPolicy
    from edgeplace.topology.signals.series import SlotGrid
    from edgeplace.topology.signals.services import ServiceConfig, service_registry

    if args.intensity_kind and args.service != "carbonaware":
        return _usage("--intensity-kind is for carbonaware (WattTime's co2_moer is marginal)")
    _, spec = _open(args.scenario)
    grid = SlotGrid.from_horizon(spec.horizon)
    zones = dict(args.zone) if args.zone else {r.id: r.id for r in spec.regions}
    unknown = sorted(set(zones) - {r.id for r in spec.regions})
    if unknown:
        return _usage(f"--zone names region(s) {', '.join(unknown)} not in the scenario")
    config = ServiceConfig(base_url=args.base_url, policy=RetryPolicy(timeout_s=args.timeout),
                           intensity_kind=args.intensity_kind)
    service = service_registry()[args.service](config)
    every = timedelta(minutes=args.every_minutes or spec.horizon.slot_minutes)
    instants, t = [], grid.start
    while t < grid.end:
        instants.append(t)
        t += every
    forecasts = fetch_archive(service, zones, instants)
    header = (f"edgeplace forecast archive: {service.label}, {service.intensity_kind} intensity, "
              f"{', '.join(f'region {r} = {z}' for r, z in zones.items())}\n"
              f"the newest forecast issued by each of {len(instants)} instants from {instants[0].isoformat()}, "
              f"every {every.total_seconds() / 60:g} min")
    atomic_write_text(Path(args.output), write_archive_csv(forecasts, header))
    if not args.quiet:
        print(f"edgeplace: wrote {args.output}: {len(forecasts)} issued forecast(s) for {len(zones)} region(s)",
              file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------
# import


def cmd_import(args: argparse.Namespace) -> int:
    from edgeplace.topology.signals.files import load_signal_files, read_signal_file, rows_to_series
    from edgeplace.topology.signals.forecast import history_grid
    from edgeplace.topology.signals.fuelmix import mix_signals
    from edgeplace.topology.signals.series import SlotGrid

    if not (args.files or args.pv or args.fuel_mix):
        return _usage("nothing to import: give signal files, --pv or --fuel-mix")
    pv_flags = args.site or args.irradiance
    if pv_flags and not args.pv:
        return _usage("--site and --irradiance go with --pv")
    if args.factor and not args.fuel_mix:
        return _usage("--factor goes with --fuel-mix")
    if args.forecaster and not (args.files or args.fuel_mix):
        return _usage("--forecaster needs history from signal files or --fuel-mix (PV is computed, not forecast)")
    doc, spec = _open(args.scenario)
    grid = SlotGrid.from_horizon(spec.horizon)
    gap = args.max_gap_minutes
    series = []
    past = history_grid(grid, _history_days(args)) if args.forecaster else None
    if args.files:
        series += load_signal_files(args.files, grid, max_gap_minutes=gap, sample=args.sample)
        for path in args.files if past else ():
            with _history_needed(args, past):
                series += _forecasts(rows_to_series(read_signal_file(path), past, max_gap_minutes=gap,
                                                    series=("actual",), sample=args.sample), grid, args)
    if args.fuel_mix:
        factors = dict(args.factor or [])
        series += mix_signals(args.fuel_mix, grid, factors, max_gap_minutes=gap, sample=args.sample)
        if past:
            with _history_needed(args, past):
                series += _forecasts(mix_signals(args.fuel_mix, past, factors, max_gap_minutes=gap,
                                                 sample=args.sample), grid, args)
    if args.pv:
        from edgeplace.topology.signals.pv import PVOptions, pv_signals

        options = PVOptions(tilt_deg=args.tilt, azimuth_deg=args.azimuth, system_loss=args.loss, iam_model=args.iam,
                            model=args.clear_sky_model)
        series += pv_signals(spec, grid, options, sites=args.site, irradiance=args.irradiance, max_gap_minutes=gap)
    keys = [s.key() for s in series]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        from edgeplace.topology.errors import InputError, Problem

        raise InputError(args.scenario, [Problem(f"{k[0]} {k[1]} ({k[2]})", "comes from two inputs; keep one")
                                         for k in twice])
    return _write(args, doc, spec, series)


# ---------------------------------------------------------------------------
# show


def sparkline(values: Iterable[float], width: int = 96) -> str:
    """Values as block characters scaled from their min to their max; long series are averaged into `width` cells."""
    v = [float(x) for x in values]
    if not v:
        return ""
    if len(v) > width:
        cells = []
        for k in range(width):
            part = v[k * len(v) // width:(k + 1) * len(v) // width]
            cells.append(sum(part) / len(part))
        v = cells
    lo, hi = min(v), max(v)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return SPARKS[0] * len(v)
    return "".join(SPARKS[min(len(SPARKS) - 1, int((x - lo) / (hi - lo) * len(SPARKS)))] for x in v)


def cmd_show(args: argparse.Namespace) -> int:
    import pandas as pd

    from edgeplace.output import render
    from edgeplace.topology.load import SIGNAL_TARGET, SIGNAL_UNITS
    from edgeplace.topology.signals.series import SlotGrid, canonical_unit, iso

    _, spec = _open(args.scenario)
    grid = SlotGrid.from_horizon(spec.horizon)
    rows = []
    for sig in spec.signals:
        target = SIGNAL_TARGET[sig.signal]
        ident = getattr(sig, target) or "?"
        if (args.signal and sig.signal.value != args.signal) or (args.series and sig.series != args.series) \
                or (args.id and ident not in args.id):
            continue
        factor = SIGNAL_UNITS[sig.signal].get(sig.unit)
        unit = canonical_unit(sig.signal) if factor is not None else sig.unit
        values = [x * (factor or 1.0) for x in sig.values]
        kind = f" {sig.intensity_kind}" if sig.signal.value == "grid_intensity" else ""
        rows.append((f"{sig.signal.value}{kind} {sig.series} {target} {ident}", unit, values))
    if not rows:
        print("no signals match", file=sys.stderr)
        return EXIT_OK
    if args.format == "sparkline":
        width = max(len(name) for name, _, _ in rows)
        print(f"{spec.name}: {grid.describe()}")
        for name, unit, values in rows:
            if values:
                print(f"{name:<{width}}  {min(values):>9.4g}..{max(values):<9.4g} {unit:<9} {sparkline(values)}")
            else:
                print(f"{name:<{width}}  (no values)")
        return EXIT_OK
    edges = grid.edges_s()
    table: dict[str, list] = {"slot_start": [iso(edges[t]) for t in range(grid.slots)]}
    for name, unit, values in rows:
        column = f"{name} [{unit}]"
        table[column] = (list(values) + [None] * grid.slots)[:grid.slots]
    frame = pd.DataFrame(table)
    if args.format == "table":  # 4 significant digits: utilisation fractions stay readable
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    else:
        print(render(frame, args.format).rstrip("\n"))
    return EXIT_OK


__all__ = ["add_commands", "cmd_fetch", "cmd_import", "cmd_show", "cmd_signals", "sparkline"]
