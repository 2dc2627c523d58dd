"""The simulation on the bundled example (issue 7): policies side by side on
the same 7-day world, including the rolling optimizer, the hindsight oracle
and the optimizer without time-shifting.

`python -m bench.run simulate` (or `python -m bench.bench_simulate`): the
bundled example's day repeated to 7 days with seeded day-to-day noise,
seasonal-naive forecasts, a re-plan every hourly slot over a one-day
lookahead with the greedy solver (1 s per step at most), the policies in
parallel worker processes. The table goes to docs/BENCHMARKS.md ("simulate").
`--large` adds the same week with persistence forecasts (the naive forecaster:
what a bad forecast costs), and a year: a generated day of 30-minute slots
(24 workloads, one deferrable job) repeated to 366 days (17,568 slots, 366
jobs), every policy stepped through it with incremental re-planning; the
target is under 10 minutes (`python -m bench.bench_simulate --year` alone).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from bench.common import write_section

POLICIES = ["default", "binpack", "nearest", "greedy", "optimizer", "oracle", "noshift"]
HORIZON_SLOTS = 7 * 24


def _run(forecast: str, workers: int) -> tuple[pd.DataFrame, dict, float]:
    from edgeplace.app import example_path
    from edgeplace.simulate import SimulationOptions, simulate
    from edgeplace.sweep import make_engine
    from edgeplace.topology import load_scenario

    scenario = load_scenario(example_path("metro-de.yaml"))
    options = SimulationOptions(horizon_slots=HORIZON_SLOTS, forecast=forecast, solver="greedy", step_time_limit_s=1.0,
                                seed=0)
    started = time.perf_counter()
    result = simulate(scenario, POLICIES, options, make_engine(workers))
    return result.table, result.summary, time.perf_counter() - started


def _notes(summary: dict, seconds: float, workers: int) -> str:
    s = summary
    return (f"World: {s['world']}; {s['horizon_slots']} hourly slots, {s['deferrable_jobs']} deferrable jobs; "
            f"{s['forecast']} forecast (grid-intensity MAPE {s['intensity_forecast_mape_pct']:.1f} %), "
            f"re-planned every slot over {s['lookahead_slots']} slots with {s['solver']} "
            f"(<= {s['step_time_limit_s']:g} s per step), "
            f"migration penalty {s['migration_g_per_replica']:g} g per replica moved; "
            f"{s['accounting']}. Cost of forecast error (optimizer - oracle, operational): "
            f"{s['cost_of_forecast_error_kg']:.3f} kg ({s['cost_of_forecast_error_pct']:.2f} %). "
            f"Time-shifting saves (noshift - optimizer, operational): {s['time_shifting_saves_kg']:.3f} kg "
            f"({s['time_shifting_saves_pct']:.2f} %). Wall time {seconds:.0f} s with {workers} worker process(es). "
            "`default`, `binpack` and `nearest` are placed once (Kubernetes binds a pod once); the others re-plan "
            "every slot. Figures: `edgeplace.policies.evaluate` on the stitched placement against the actual signals.")


YEAR_DAYS = 366


def year(workers: int = 2, days: int = YEAR_DAYS) -> None:
    """A year of 30-minute slots: wall time (target 10 min) and the policies' figures, with the
    load average before and after (the machine is shared)."""
    import os
    import resource

    from edgeplace.simulate import SimulationOptions, simulate
    from edgeplace.sweep import make_engine
    from edgeplace.topology.generate import generate_scenario

    day = generate_scenario(n_workloads=24, n_nodes=10, n_slots=48, slot_minutes=30, seed=3, deferrable_share=0.05)
    options = SimulationOptions(horizon_slots=days * 48, forecast="seasonal", solver="greedy",
                                step_time_limit_s=1.0, seed=0)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = simulate(day, POLICIES, options, make_engine(workers))
    seconds = time.perf_counter() - started
    table = result.table.copy()
    table["replans"] = [result.runs[p].replans for p in table["policy"]]
    print(f"simulate year: {seconds:.0f} s wall, load average {os.getloadavg()[0]:.2f}", flush=True)
    cols = [c for c in ("policy", "operational_kg", "operational_vs_default_pct", "operational_vs_oracle_pct",
                        "embodied_fleet_kg", "violations", "migrations", "replans", "plan_s") if c in table.columns]
    s = result.summary
    write_section("simulate-year", "Simulation: a year of 30-minute slots (incremental re-planning)", table[cols],
                  f"World: a generated day ({day.n_workloads} workloads, {int(day.workload_deferrable.sum())} deferrable "
                  f"job, {day.n_nodes} nodes, 48 slots of 30 min) repeated to {days} days with seeded noise: "
                  f"{s['horizon_slots']:,} slots, {s['deferrable_jobs']} jobs; seasonal forecast, lookahead "
                  f"{s['lookahead_slots']} slots, greedy solver (<= 1 s per re-plan), re-planned only when something "
                  f"changed (a job entered the lookahead, a job waiting could use the slot that came into view, "
                  f"the forecast moved, the plan ran out). Wall time {seconds:.0f} s with {workers} worker "
                  f"process(es) (target < 600 s: {'met' if seconds < 600 else 'missed'}); peak RSS of this process "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; 1-minute load average "
                  f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after. Time-shifting saves "
                  f"{s['time_shifting_saves_pct']:.2f} %, forecast error costs {s['cost_of_forecast_error_pct']:.2f} %.")


def main(forecasts: tuple[str, ...] = ("seasonal",), workers: int = 2) -> None:
    for forecast in forecasts:
        table, summary, seconds = _run(forecast, workers)
        cols = ["policy", "operational_kg", "operational_vs_default_pct", "operational_vs_oracle_pct", "energy_kwh",
                "embodied_fleet_kg", "emissions_kg", "renewable_kwh", "active_nodes", "sla_viol", "violations", "migrations", "plan_s"]
        name = "simulate" if forecast == "seasonal" else f"simulate-{forecast}"
        write_section(name, f"Simulation: metro-de, 7 days, {forecast} forecast", table[cols],
                      _notes(summary, seconds, workers))


def main_large() -> None:
    main(("seasonal", "persistence"))
    year()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_simulate", description=__doc__)
    parser.add_argument("--large", action="store_true", help="also the persistence forecast")
    parser.add_argument("--year", action="store_true", help="only the year of 30-minute slots")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    args = parser.parse_args()
    if args.year:
        year(args.workers)
    else:
        main(("seasonal", "persistence") if args.large else ("seasonal",), args.workers)
        if args.large:
            year(args.workers)
