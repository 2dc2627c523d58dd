"""The simulation on the bundled example (issue 7): policies side by side on
the same 7-day world, including the rolling optimizer, the hindsight oracle
and the optimizer without time-shifting.

`python -m bench.run simulate` (or `python -m bench.bench_simulate`): the
bundled example's day repeated to 7 days with seeded day-to-day noise,
seasonal-naive forecasts, a re-plan every hourly slot over a one-day
lookahead with the greedy solver (1 s per step at most), the policies in
parallel worker processes. The table goes to docs/BENCHMARKS.md ("simulate").
`--large` adds the same week with persistence forecasts (the naive forecaster:
what a bad forecast costs).
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_simulate", description=__doc__)
    parser.add_argument("--large", action="store_true", help="also the persistence forecast")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    args = parser.parse_args()
    main(("seasonal", "persistence") if args.large else ("seasonal",), args.workers)
