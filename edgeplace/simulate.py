"""Simulation: step through a horizon, re-planning from forecasts, while the
world follows the actual signals; compare policies on the same world.

How a run works
---------------
1. **The world.** The actual signals of the whole horizon. When the horizon
   fits the scenario, the world is the scenario (cut to the horizon). When it
   is longer, the scenario (which must cover whole days) is repeated: copy 1
   is the scenario as written, every later copy is the same days with seeded
   day-to-day noise (`WORLD_NOISE`, scaled by `noise`); deferrable jobs recur
   in every copy (`job#2`, `job#3`, ... with their windows shifted), services
   run throughout. One more noisy copy plays "the day before the horizon": the
   history the forecasters start from.
2. **Steps.** At each slot t (every `replan_every` slots) each policy sees
   the rest of the world from t (`edgeplace.topology.transform.remaining`, with the
   replicas where they run now and jobs already started, from
   `edgeplace.optimizer.rolling.RunState`), cut to a lookahead window of L slots,
   with forecast series in place of what it cannot know yet; it plans the
   window and the plan's slot t is committed. Jobs that cannot start inside
   the window are left for later steps; a job started keeps running to the
   end of its run (a window shorter than the rest of its run holds the part
   that fits).
3. **Figures.** The committed slots, stitched, are one placement of the
   whole world, evaluated once with `edgeplace.policies.evaluate` on the actual
   signals: the same yardstick for every policy.

Policies (`simulation_policies()`): the baselines `default` (the spread
baseline, Kubernetes-like), `binpack`, `nearest`, `greedy` (the greedy-carbon
baseline, per-pod carbon scoring on the forecast), `optimizer`
(`edgeplace.optimizer.solve.solve` with the chosen solver and a per-step time limit,
on the forecast), `oracle` (the same optimizer, same steps and budget, on
the actual signals: it knows what will happen), and `noshift` (the optimizer
on the forecast with every deferrable job pinned to its earliest start).
So `optimizer - oracle` is the cost of forecast error, and
`noshift - optimizer` what moving deferrable jobs in time saves.

Forecasters: `persistence`, `seasonal` (seasonal naive, daily) and `ewma`
(exponentially weighted daily profile) from `edgeplace.topology.signals.forecast`, fed
everything observed up to the step (the history day, then the world so
far); `perfect` (the actual series) and `given` (the scenario's own forecast
series; the horizon must fit the scenario). `forecast_source`, a forecast
archive (`edgeplace.topology.signals.archive`: the forecasts WattTime or the
Carbon Aware SDK had issued), replays real forecasts: each step plans grid
intensity on the newest forecast issued by the step's start, for the slots it
reaches; the forecaster fills the slots beyond it and the regions it lacks. Forecasts cover grid intensity
and renewable supply (the series the model keeps apart); background
utilisation is taken as known.

The solvers and pandas are imported inside the functions that use them, so
that building the command line (`edgeplace --help`) stays fast.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from edgeplace.sweep import Engine, InProcessEngine, LocalProcessEngine, Progress, run_sweep
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_RANGES, compile_spec
from edgeplace.topology.placement import Placement, node_dtype
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.spec import Deferral, ScenarioSpec, Signal, SignalKind, Workload
from edgeplace.topology.transform import remaining

if TYPE_CHECKING:
    import pandas as pd

    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.policies.evaluate import Evaluation

FORECASTERS = ("persistence", "seasonal", "ewma", "perfect", "given")
DEFAULT_POLICIES = ("default", "binpack", "nearest", "greedy", "optimizer", "oracle", "noshift")
MINUTES_PER_DAY = 1440

#: Day-to-day noise of the repeated world, at noise = 1 (assumptions, not
#: measurements; scale them with `SimulationOptions.noise`):
#: - grid intensity: a daily level factor exp(N(0, 0.15)) per region (windy
#:   and calm days move the German daily mean by tens of percent; the 2020
#:   hourly range 100-590 g/kWh around a 313 mean, shared/REFERENCE.md) and
#:   hourly factors 1 + N(0, 0.05);
#: - renewable supply: a daily clearness factor U(0.3, 1.0), shared by all
#:   sites (the scenario's day is a clear day, an upper bound: REFERENCE.md
#:   "a clear day is an upper bound"), hourly factors 1 + N(0, 0.10), never
#:   above the clear-day value;
#: - background utilisation: hourly factors 1 + N(0, 0.10), within 0..1.
WORLD_NOISE = {"intensity_day_sigma": 0.15, "intensity_hour_sigma": 0.05, "clearness_min": 0.3,
               "supply_hour_sigma": 0.10, "background_hour_sigma": 0.10}

#: Penalty [gCO2e] per replica a re-plan moves: a brake on churn, not a
#: physical cost. Without it rolling plans move hundreds of replicas a day for
#: fractions of a gram (metro-de, 2 days: 296 moves at 0 g, 14 at 20 g, emissions
#: within 0.2 %); 0 gives the pure-carbon objective.
DEFAULT_MIGRATION_G = 20.0

#: Signal kinds that have forecasts (the model keeps actual and forecast apart for these).
FORECAST_KINDS = (SignalKind.grid_intensity, SignalKind.renewable_supply)
#: Days of history a forecaster is given at each step (see `forecast_values`).
FORECAST_HISTORY_DAYS = 28
#: A forecast that moved by less than this (relative) is not news: no re-plan for it.
FORECAST_CHANGE_REL = 1e-6
#: A run reports its progress about this many times (`PolicyTask.ticks`).
PROGRESS_TICKS = 200


# ---------------------------------------------------------------------------
# Options and policies


@dataclass(frozen=True)
class SimulationOptions:
    """How to simulate. `horizon_slots` None = the scenario's horizon;
    `lookahead_slots` None = one day (at least the longest job). The
    optimizer, oracle and noshift re-plan with `solver` under
    `step_time_limit_s` per step (greedy: the local search stops at a local
    optimum or the limit; cpsat/milp: the exact solver's limit). A re-plan
    comes at most every `replan_every` slots, and with `incremental` only
    when something changed (a job entered the lookahead, the forecast of the
    planned slots moved) or the plan in force ran out."""

    horizon_slots: int | None = None
    lookahead_slots: int | None = None
    forecast: str = "seasonal"
    solver: str = "greedy"
    step_time_limit_s: float = 1.0
    solver_threads: int = 1
    migration_g_per_replica: float = DEFAULT_MIGRATION_G
    replan_every: int = 1
    incremental: bool = True
    noise: float = 1.0
    seed: int = 0
    #: A `ForecastArchive` of issued grid-intensity forecasts to replay (None: forecasters only).
    forecast_source: Any = None

    def __post_init__(self) -> None:
        if self.forecast not in FORECASTERS:
            raise ValueError(f"forecast must be one of {', '.join(FORECASTERS)} (got {self.forecast!r})")
        from edgeplace.optimizer.solve import SOLVERS

        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {self.solver!r})")
        if not self.step_time_limit_s > 0:
            raise ValueError(f"step_time_limit_s must be > 0 (got {self.step_time_limit_s})")
        for name in ("replan_every", "solver_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0 (got {self.noise})")

    def solve_options(self) -> "SolveOptions":
        from edgeplace.optimizer.solve import SolveOptions
        from edgeplace.policies.costs import Objective

        return SolveOptions(solver=self.solver, time_limit_s=self.step_time_limit_s, workers=self.solver_threads,
                            bound=False, seed=self.seed,
                            objective=Objective(migration_g_per_replica=self.migration_g_per_replica))


@dataclass(frozen=True)
class SimPolicy:
    """A policy as the simulation runs it: a planner of one window, what it
    sees (`knows_actual`: the actual signals instead of the forecast), and
    whether deferrable jobs may move (`shifting`)."""

    name: str
    description: str
    baseline: str | None  # a baseline_registry() name, or None for the optimizer
    knows_actual: bool = False
    shifting: bool = True
    rolling: bool = True


def simulation_policies() -> dict[str, SimPolicy]:
    """The policies `simulate` compares, by name (aliases: spread = default, greedy-carbon = greedy)."""
    items = [
        SimPolicy("default", "Kubernetes default-like spreading (the spread baseline), all nodes on; placed once", "spread",
                  rolling=False),
        SimPolicy("binpack", "bin-packing, empty nodes off; placed once", "binpack", rolling=False),
        SimPolicy("nearest", "latency-nearest node, all nodes on; placed once", "nearest", rolling=False),
        SimPolicy("greedy", "per-pod greedy carbon scoring on the forecast (the greedy-carbon baseline)", "greedy-carbon"),
        SimPolicy("optimizer", "edgeplace.optimizer.solve on the forecast, re-planned every step", None),
        SimPolicy("oracle", "the same optimizer on the actual signals (hindsight)", None, knows_actual=True),
        SimPolicy("noshift", "the optimizer on the forecast, deferrable jobs pinned to their earliest start", None,
                  shifting=False),
    ]
    out = {p.name: p for p in items}
    out["spread"] = out["default"]
    out["greedy-carbon"] = out["greedy"]
    return out


def parse_policies(text: str | None) -> list[str]:
    registry = simulation_policies()
    names = [n.strip() for n in text.split(",") if n.strip()] if text else list(DEFAULT_POLICIES)
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
        raise InputError("--policies", [Problem(n, f"unknown policy; choose from {', '.join(registry)}") for n in unknown]
                         or [Problem("", "name at least one policy")])
    if len(set(names)) != len(names):
        raise InputError("--policies", [Problem(text or "", "a policy is listed twice")])
    return names


def parse_duration_slots(text: str, slot_minutes: int, what: str = "--horizon") -> int:
    """`7d`, `36h`, `90m` or a slot count `168` -> slots (a whole number of slots)."""
    m = re.fullmatch(r"\s*(\d+)\s*([dhm]?)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise InputError(what, [Problem(text, "write a duration like 7d, 36h, 90m, or a number of slots")])
    n, unit = int(m.group(1)), m.group(2)
    if not unit:
        return n
    minutes = n * {"d": MINUTES_PER_DAY, "h": 60, "m": 1}[unit]
    if minutes % slot_minutes:
        raise InputError(what, [Problem(text, f"is not a whole number of {slot_minutes}-minute slots")])
    return minutes // slot_minutes


# ---------------------------------------------------------------------------
# The world


@dataclass(frozen=True)
class World:
    """The actual world of a run and the history forecasters start from.

    `history[(kind, target)]` holds the `period` slots before the horizon
    (one day; a scenario shorter than a day is repeated to one), in the
    signal's own unit."""

    spec: ScenarioSpec
    history: dict[tuple[str, str], np.ndarray]
    period: int


def _signal_key(sig: Signal) -> tuple[str, str]:
    return sig.signal.value, sig.region or sig.site or sig.node or ""


def _rng(seed: int, copy: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, copy + 1, zlib.crc32(key.encode())])


def _noisy(sig: Signal, copy: int, days: int, period: int, noise: float, seed: int) -> list[float]:
    """One copy of a signal's actual values; copy 0 is the scenario's own."""
    base = np.asarray(sig.values, dtype=float)
    if copy == 0 or noise == 0:
        return base.tolist()
    n = base.size
    day_of = np.minimum(np.arange(n) // max(period, 1), days - 1)
    key = "|".join(_signal_key(sig))
    rng = _rng(seed, copy, key)
    if sig.signal is SignalKind.grid_intensity:
        level = np.exp(rng.normal(0.0, WORLD_NOISE["intensity_day_sigma"] * noise, days))
        hour = 1.0 + rng.normal(0.0, WORLD_NOISE["intensity_hour_sigma"] * noise, n)
        lo, hi = SIGNAL_RANGES[SignalKind.grid_intensity]
        values = np.clip(base * level[day_of] * hour, lo, hi)
    elif sig.signal is SignalKind.renewable_supply:
        # One clearness per day for every site (the same weather), from a key shared by all supply signals.
        low = 1.0 - (1.0 - WORLD_NOISE["clearness_min"]) * min(noise, 1.0)
        clear = _rng(seed, copy, "clearness").uniform(low, 1.0, days)
        hour = 1.0 + rng.normal(0.0, WORLD_NOISE["supply_hour_sigma"] * noise, n)
        values = np.clip(base * clear[day_of] * hour, 0.0, base)
    else:
        hour = 1.0 + rng.normal(0.0, WORLD_NOISE["background_hour_sigma"] * noise, n)
        values = np.clip(base * hour, 0.0, 1.0)
    return values.tolist()


def _day_slots(spec: ScenarioSpec) -> int:
    return max(1, MINUTES_PER_DAY // spec.horizon.slot_minutes)


def build_world(spec: ScenarioSpec, horizon_slots: int | None = None, *, noise: float = 1.0, seed: int = 0,
                keep_forecasts: bool = False) -> World:
    """The world of a run (see the module docstring); raises InputError when
    the horizon cannot be built from the scenario."""
    S = spec.horizon.slots
    H = horizon_slots or S
    slot = timedelta(minutes=spec.horizon.slot_minutes)
    period = _day_slots(spec)
    actual = [s for s in spec.signals if s.series == "actual"]
    forecasts = [s for s in spec.signals if s.series == "forecast"] if keep_forecasts else []
    if H <= S:
        world = _cut(spec.model_copy(update={"signals": actual + forecasts}), H)
    else:
        if (S * spec.horizon.slot_minutes) % MINUTES_PER_DAY:
            raise InputError("--horizon", [Problem(str(H), f"the scenario covers {S} slots of {spec.horizon.slot_minutes} min, "
                                                           "not whole days, so it cannot be repeated into a longer world; "
                                                           f"use a horizon of at most {S} slots")])
        copies = math.ceil(H / S)
        days = S // period
        signals = [s.model_copy(update={"values": [v for c in range(copies) for v in _noisy(s, c, days, period, noise, seed)]})
                   for s in actual]
        workloads: list[Workload] = []
        for c in range(copies):
            shift = c * S * slot
            for wl in spec.workloads:
                if wl.deferral is None:
                    if c == 0:
                        workloads.append(wl)
                    continue
                d = wl.deferral
                workloads.append(wl if c == 0 else wl.model_copy(update={
                    "id": f"{wl.id}#{c + 1}", "current": None,
                    "deferral": d.model_copy(update={
                        "earliest_start": d.earliest_start + shift, "deadline": d.deadline + shift,
                        "nominal_start": None if d.nominal_start is None else d.nominal_start + shift})}))
        horizon = spec.horizon.model_copy(update={"slots": copies * S})
        world = _cut(spec.model_copy(update={"horizon": horizon, "signals": signals, "workloads": workloads}), H)
    history = {}
    for s in actual:
        if s.signal in FORECAST_KINDS:
            before = np.asarray(_noisy(s, -1 if noise > 0 else 0, max(S // period, 1), period, noise, seed))
            history[_signal_key(s)] = before[-period:] if S >= period else np.resize(before, period)
    return World(world, history, period)


def _cut(spec: ScenarioSpec, slots: int, running: dict[str, int] | None = None) -> ScenarioSpec:
    """The first `slots` slots of `spec`: signals cut; deferrable jobs that
    cannot run inside are dropped, except jobs in `running` (started), whose
    run is cut to what fits."""
    h = spec.horizon
    if slots >= h.slots:
        return spec
    signals = [s.model_copy(update={"values": s.values[:slots]}) for s in spec.signals]
    return spec.model_copy(update={"horizon": h.model_copy(update={"slots": slots}),
                                   "workloads": _fitting(spec, slots, running), "signals": signals})


def _fitting(spec: ScenarioSpec, slots: int, running: dict[str, int] | None = None) -> list[Workload]:
    """The workloads of `spec` that fit its first `slots` slots: services; deferrable jobs whose
    window holds their run in whole slots (as `edgeplace.topology.load` counts them); started
    jobs in `running`, their run cut to what fits."""
    h = spec.horizon
    slot = timedelta(minutes=h.slot_minutes)
    end = h.start + slots * slot
    running = running or {}
    workloads = []
    for wl in spec.workloads:
        d = wl.deferral
        if d is None:
            workloads.append(wl)
            continue
        if wl.id in running:
            if d.deadline > end:
                left = int((end - d.earliest_start) / timedelta(minutes=1))
                wl = wl.model_copy(update={"deferral": Deferral(earliest_start=d.earliest_start, deadline=end,
                                                                duration_minutes=left)})
            workloads.append(wl)
            continue
        # Whole slots inside [earliest_start, deadline) and the window, as edgeplace.topology.load counts them.
        first = max(0, math.ceil((d.earliest_start - h.start) / slot))
        last = min(slots, math.floor((d.deadline - h.start) / slot))
        if last - first >= math.ceil(d.duration_minutes / h.slot_minutes):
            workloads.append(wl)
    return workloads


def _pin_jobs(spec: ScenarioSpec) -> ScenarioSpec:
    """Every deferrable job's window cut to one run from its nominal start (default: its earliest
    start), without pauses: the job as it would have run without time-shifting."""
    slot = timedelta(minutes=spec.horizon.slot_minutes)
    start = spec.horizon.start
    workloads = []
    for wl in spec.workloads:
        d = wl.deferral
        if d is not None:
            # The run starts in the first whole slot from the nominal start, as edgeplace.topology.load counts slots.
            nominal = d.nominal_start or d.earliest_start
            first = start + max(0, math.ceil((nominal - start) / slot)) * slot
            run = math.ceil(d.duration_minutes / spec.horizon.slot_minutes) * slot
            wl = wl.model_copy(update={"deferral": d.model_copy(update={
                "earliest_start": max(d.earliest_start, first), "deadline": first + run, "interruptible": False,
                "min_run_minutes": None, "current_run_minutes": 0, "nominal_start": None})})
        workloads.append(wl)
    return spec.model_copy(update={"workloads": workloads})


# ---------------------------------------------------------------------------
# Forecasts


def forecast_values(method: str, extended: np.ndarray, period: int, t: int, length: int) -> np.ndarray:
    """Forecast issued at the start of slot t for slots t .. t+length-1.

    `extended` is the history (`period` slots before the horizon) followed by
    the actual series; what is known at the start of slot t is
    extended[:period + t], which goes to the forecaster of
    `edgeplace.topology.signals.forecast` (persistence: x[t+k] = x[t-1]; seasonal:
    x[t+k] = x[t+k-m*period], m = ceil((k+1) / period); ewma: the weighted
    daily profile of the known whole days, aligned the same way).
    """
    if method == "perfect":
        return np.asarray(extended[period + t: period + t + length], dtype=float)
    from edgeplace.topology.signals.forecast import forecasters

    methods = forecasters()
    if method not in methods:
        raise ValueError(f"no forecaster {method!r}")
    # The forecasters read at most the last FORECAST_HISTORY_DAYS days: a step costs the same on
    # day 300 as on day 1 (ewma weighs older days below 1e-8 at alpha 0.5).
    known = extended[max(0, period + t - FORECAST_HISTORY_DAYS * period):period + t]
    return np.asarray(methods[method].forecast(known, length, period), dtype=float)


def _extended(world: World) -> dict[tuple[str, str], np.ndarray]:
    return {_signal_key(s): np.concatenate([world.history[_signal_key(s)], np.asarray(s.values, dtype=float)])
            for s in world.spec.signals if s.series == "actual" and s.signal in FORECAST_KINDS}


def forecast_mape_pct(world: World, method: str, lookahead: int, kind: SignalKind = SignalKind.grid_intensity,
                      archive=None) -> float:
    """Mean absolute percentage error of the forecasts a run uses, over every step and lead time, for `kind`."""
    if method in ("perfect",) and archive is None:
        return 0.0
    H = world.spec.horizon.slots
    errors = []
    for key, ext in _extended(world).items():
        if key[0] != kind.value:
            continue
        for t in range(H):
            L = min(lookahead, H - t)
            f = _step_forecast(key, method, ext, world.period, t, L, archive, _slot_grid(world.spec, t, L))
            a = ext[world.period + t: world.period + t + L]
            ok = a > 0
            errors.append(np.abs(f[ok] - a[ok]) / a[ok])
    return float(np.concatenate(errors).mean() * 100) if errors else math.nan


# ---------------------------------------------------------------------------
# One policy's run (the worker function)


@dataclass(frozen=True)
class PolicyTask:
    """One policy's run. `ticks`, when given, is a queue (a multiprocessing manager's, so it
    crosses process boundaries) that receives (policy name, slots stepped) as the run goes."""

    world: World
    policy: SimPolicy
    options: SimulationOptions
    lookahead: int
    source: str
    ticks: Any = None


@dataclass
class PolicyRun:
    """The stitched placement of one policy and how it was made."""

    name: str
    assign: np.ndarray  # R x T over the world
    powered: np.ndarray  # N x T
    plan_seconds: float
    replans: int


def _planner(policy: SimPolicy, options: SimulationOptions) -> Callable[[Scenario, Placement | None], Placement]:
    """plan(window scenario, the plan in force shifted onto it or None) -> placement."""
    if policy.baseline is not None:
        from edgeplace.policies.baselines import baseline_registry

        make = baseline_registry()[policy.baseline]
        return lambda sc, _start: make().place(sc)
    from edgeplace.optimizer.solve import solve

    solve_options = options.solve_options()
    return lambda sc, start: solve(sc, solve_options, start=start).placement


def run_policy(task: PolicyTask) -> PolicyRun:
    """Step one policy through the world (see the module docstring)."""
    world_spec, opts, policy = task.world.spec, task.options, task.policy
    world = compile_spec(world_spec, task.source)
    plan_spec = world_spec if policy.shifting else _pin_jobs(world_spec)
    # What the policy plans with: the world, or (noshift) the world with every job pinned, whose
    # jobs then neither move nor pause; progress is read with the same rules.
    planned_world = world if policy.shifting else compile_spec(plan_spec, task.source)
    plan = _planner(policy, opts)
    H, N = world.n_slots, world.n_nodes
    if not policy.rolling:
        # Signal-blind Kubernetes-like baselines: one placement of the whole
        # world, as a cluster binds each pod once and never moves it.
        t0 = time.perf_counter()
        placement = plan(world, None)
        _tick(task, H)
        return PolicyRun(policy.name, placement.assign, _powered(world, placement), time.perf_counter() - t0, 1)
    from edgeplace.optimizer.rolling import RunState

    windows = _Windows(plan_spec, planned_world, task.lookahead)
    forecasts = _Forecasts(task, policy)
    state = RunState.start(planned_world)
    assign = np.full((world.n_replicas, H), -1, dtype=node_dtype(N))
    powered = np.zeros((N, H), dtype=bool)
    step: _Step | None = None
    seconds, replans, every = 0.0, 0, max(H // PROGRESS_TICKS, 1)
    for t in range(H):
        if step is None or step.must_replan(t, opts, windows, forecasts):
            window = forecasts.apply(windows.spec_at(t, state), t)
            step_sc = compile_spec(window, f"{task.source}@slot{t}")
            t0 = time.perf_counter()
            placement = plan(step_sc, None if step is None else step.shifted(t, step_sc))
            step = _Step(t, step_sc, placement, _row_map(world, step_sc), forecasts.issued(window),
                         _waiting(planned_world, step_sc, placement, t))
            seconds += time.perf_counter() - t0
            replans += 1
        k = t - step.at
        dst, src = step.rows
        assign[dst, t] = step.placement.column(k)[src]
        state.commit(assign[:, t])
        hosting = np.bincount(assign[:, t][assign[:, t] >= 0], minlength=N) > 0
        if step.placement.powered is not None:
            powered[:, t] = step.placement.powered[:, k] | hosting
        else:
            powered[:, t] = hosting | ~world.node_can_power_down
        if (t + 1) % every == 0 or t + 1 == H:
            _tick(task, t + 1)
    return PolicyRun(policy.name, assign, powered, seconds, replans)


def _waiting(world: Scenario, step: Scenario, placement: Placement, t: int) -> list[tuple[int, str, float]]:
    """Jobs of the step that could instead wait for slots the step cannot see (their window reaches
    past its end): (the world slot it is planned to start or resume in, its node's grid region,
    the highest grid intensity of its planned run slots there, as the step saw it [gCO2/kWh])."""
    end = t + step.n_slots
    out = []
    node_region = step.node_region
    intensity = step.region_intensity_forecast_g_per_kwh
    for w in np.flatnonzero(step.workload_deferrable):
        v = world.index_of("workload", step.workload_ids[w])
        if world.workload_window_end[v] <= end:
            continue
        r0, n = int(step.workload_first_replica[w]), int(step.workload_replicas[w])
        rows = placement.rows(r0, r0 + n)
        runs = np.flatnonzero((rows >= 0).any(axis=0))
        if runs.size and runs[0] > 0:  # not running now: it waits until its planned start
            for g in np.unique(node_region[rows[:, runs[0]][rows[:, runs[0]] >= 0]]):
                out.append((t + int(runs[0]), step.region_ids[g], float(intensity[g, runs].max())))
    return out


def _tick(task: PolicyTask, slots: int) -> None:
    if task.ticks is not None:
        task.ticks.put((task.policy.name, slots))


@dataclass
class _Step:
    """The plan in force: made at slot `at`, its scenario, placement, replica rows in the world,
    and the forecast it was made on (signal key -> values from `at` on)."""

    at: int
    scenario: Scenario
    placement: Placement
    rows: tuple[np.ndarray, np.ndarray]
    forecast: dict[tuple[str, str], np.ndarray]
    waiting: list[tuple[int, str, float]]  # jobs that could also run past the window (`_waiting`)

    def shifted(self, t: int, new: Scenario) -> Placement:
        """This plan seen from slot t on, on the next step's scenario: each of its workloads'
        replicas where this plan has them from t (services: on their nodes throughout), nothing
        for new workloads. A start for the next plan (`edgeplace.optimizer.greedy.greedy_place`
        keeps what still holds)."""
        k = t - self.at
        old = self.scenario
        out = np.full((new.n_replicas, new.n_slots), -1, dtype=self.placement.span_node.dtype)
        span = max(min(old.n_slots - k, new.n_slots), 0)
        last = min(k, old.n_slots - 1)  # a service's nodes now (the plan's last slot if it ran out)
        for w, wid in enumerate(new.workload_ids):
            try:
                v = old.index_of("workload", wid)
            except KeyError:
                continue
            r0, n = int(new.workload_first_replica[w]), int(new.workload_replicas[w])
            o0 = int(old.workload_first_replica[v])
            if int(old.workload_replicas[v]) != n:
                continue
            rows = self.placement.rows(o0, o0 + n)
            if not new.workload_deferrable[w]:
                out[r0:r0 + n] = rows[:, last:last + 1] if (rows[:, last] >= 0).all() else -1
            else:
                out[r0:r0 + n, :span] = rows[:, k:k + span]
        return Placement.from_assign(out)

    def must_replan(self, t: int, opts: SimulationOptions, windows: "_Windows", forecasts: "_Forecasts") -> bool:
        """A re-plan at t: the plan has run out; or `replan_every` slots passed and something
        changed (always, without `incremental`): a job entered the lookahead window; a job that
        has not started yet could also run in the slots that came into view (its window reaches
        past the plan's) and they are cleaner in its region than its planned run, or cleaner in
        some region (or sunnier at some site) than any slot the plan saw there; or the forecast
        of the slots still planned moved."""
        age = t - self.at
        if age >= self.scenario.n_slots:
            return True
        if age < opts.replan_every:
            return False
        if not opts.incremental:
            return True
        if windows.entering(self.at, t) or forecasts.changed(self, t):
            return True
        pending = [(region, worst) for start, region, worst in self.waiting if start >= t]
        if not pending:
            return False
        sc = self.scenario
        lowest, highest = forecasts.in_view(t, self.at + sc.n_slots, t + windows.L)
        seen_low = dict(zip(sc.region_ids, sc.region_intensity_forecast_g_per_kwh.min(axis=1)))
        seen_high = dict(zip(sc.site_ids, sc.site_renewable_forecast_kw.max(axis=1)))
        return (any(lowest.get(region, np.inf) < worst for region, worst in pending)
                or any(low < seen_low.get(region, np.inf) for region, low in lowest.items())
                or any(high > seen_high.get(site, 0.0) for site, high in highest.items()))


class _Windows:
    """The planning windows of one run: at slot t, the services and the jobs whose window is
    open and fits the lookahead (or that run now), cut to the lookahead. Jobs are indexed by
    the slot they enter the lookahead, max(0, earliest + duration - L), so a window costs the
    workloads that matter then, not every job of the year."""

    def __init__(self, spec: ScenarioSpec, planned: Scenario, lookahead: int):
        self.spec, self.planned, self.L = spec, planned, lookahead
        deferrable = planned.workload_deferrable
        self.services = np.flatnonzero(~deferrable)
        self.enter = np.maximum(0, planned.workload_earliest_slot + planned.workload_duration_slots - lookahead)
        jobs = np.flatnonzero(deferrable)
        self.jobs = jobs[np.argsort(self.enter[jobs], kind="stable")]
        self.event_slots = np.unique(self.enter[jobs])
        self.next = 0  # jobs[:next] have entered
        self.active: set[int] = set()

    def entering(self, since: int, t: int) -> bool:
        """A job entered the lookahead in (since, t]."""
        i = np.searchsorted(self.event_slots, since, side="right")
        return i < len(self.event_slots) and self.event_slots[i] <= t

    def workloads_at(self, t: int, state) -> list[int]:
        sc = self.planned
        while self.next < len(self.jobs) and self.enter[self.jobs[self.next]] <= t:
            self.active.add(int(self.jobs[self.next]))
            self.next += 1
        done = [w for w in self.active
                if state.ran[w] >= sc.workload_duration_slots[w]
                or (state.first_run[w] < 0 and sc.workload_window_end[w] <= t)]
        self.active.difference_update(done)
        return sorted([*self.services.tolist(), *self.active])

    def spec_at(self, t: int, state) -> ScenarioSpec:
        """The window's scenario at slot t (forecasts not yet in)."""
        spec, h = self.spec, self.spec.horizon
        L = min(self.L, h.slots - t)
        slot = timedelta(minutes=h.slot_minutes)
        ids = self.workloads_at(t, state)
        cut = spec.model_copy(update={
            "horizon": h.model_copy(update={"start": h.start + t * slot, "slots": L}),
            "workloads": [spec.workloads[w] for w in ids],
            "signals": [sig.model_copy(update={"values": sig.values[t:t + L]}) for sig in spec.signals]})
        current, running, progress = state.situation(only=ids)
        running = {wid: first - t for wid, first in running.items()}  # slots relative to the window
        rest = remaining(cut, 0, current, running, progress)
        return rest.model_copy(update={"workloads": _fitting(rest, L, running)})


class _Forecasts:
    """What a policy sees of the future: the actual series (the oracle, a perfect forecast), the
    scenario's own forecasts, or a forecaster fed everything observed so far."""

    def __init__(self, task: PolicyTask, policy: SimPolicy):
        self.method = task.options.forecast
        self.archive = task.options.forecast_source
        self.spec = task.world.spec
        self.actual = policy.knows_actual or self.method == "perfect"
        self.extended = _extended(task.world) if not (self.actual or self.method == "given") else {}
        self.period = task.world.period
        signals = task.world.spec.signals
        self.actual_values = {_signal_key(s): np.asarray(s.values, dtype=float) for s in signals
                              if s.series == "actual" and s.signal in FORECAST_KINDS}
        self.given_values = {_signal_key(s): np.asarray(s.values, dtype=float) for s in signals
                             if s.series == "forecast"}
        self.H = task.world.spec.horizon.slots

    def apply(self, window: ScenarioSpec, t: int) -> ScenarioSpec:
        if self.actual:
            return window.model_copy(update={"signals": [s for s in window.signals if s.series == "actual"]})
        if self.method == "given":
            return window
        return _with_forecasts(window, self.extended, self.method, self.period, t, self.archive)

    def issued(self, window: ScenarioSpec) -> dict[tuple[str, str], np.ndarray]:
        return {_signal_key(s): np.asarray(s.values, dtype=float) for s in window.signals
                if s.series == "forecast" and _signal_key(s) in self.extended}

    def in_view(self, t: int, first: int, end: int) -> tuple[dict[str, float], dict[str, float]]:
        """What the policy sees at t of the world slots [first, end): each region's lowest grid
        intensity [gCO2/kWh] and each site's highest on-site supply [kW]."""
        first, end = min(first, self.H), min(end, self.H)
        lowest, highest = {}, {}
        if first >= end:
            return lowest, highest
        for (kind, target), values in self.seen(t, first, end).items():
            if kind == SignalKind.grid_intensity.value:
                lowest[target] = float(values.min())
            elif kind == SignalKind.renewable_supply.value:
                highest[target] = float(values.max())
        return lowest, highest

    def seen(self, t: int, first: int, end: int) -> dict[tuple[str, str], np.ndarray]:
        """Signal key -> the values of world slots [first, end) as the policy sees them at t."""
        out = {}
        for key, actual in self.actual_values.items():
            if self.actual:
                out[key] = actual[first:end]
            elif self.method == "given":
                out[key] = self.given_values.get(key, actual)[first:end]
            else:
                out[key] = self.issued_at(key, t, end - t)[first - t:]
        return out

    def issued_at(self, key: tuple[str, str], t: int, length: int) -> np.ndarray:
        """The forecast of one series issued at slot t for t .. t+length-1 (archive, else forecaster)."""
        return _step_forecast(key, self.method, self.extended[key], self.period, t, length, self.archive,
                              _slot_grid(self.spec, t, length))

    def changed(self, step: _Step, t: int) -> bool:
        """The forecast issued at t differs from the one the plan was made on, over the slots both cover."""
        for key, old in step.forecast.items():
            rest = old[t - step.at:]
            new = self.issued_at(key, t, len(rest))
            if not np.allclose(new, rest, rtol=FORECAST_CHANGE_REL, atol=0.0):
                return True
        return False


def _powered(world: Scenario, placement: Placement) -> np.ndarray:
    """N x T power states: the placement's own, or derived as `edgeplace.policies.evaluate` derives them."""
    if placement.powered is not None:
        return np.asarray(placement.powered, dtype=bool)
    return placement.hosting(world.n_nodes) | ~world.node_can_power_down[:, None]


def _row_map(world: Scenario, step: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Replica rows of the step scenario (src) and where they are in the world (dst), by workload id."""
    dst, src = [], []
    for w, wid in enumerate(step.workload_ids):
        v = world.index_of("workload", wid)
        n = int(step.workload_replicas[w])
        src.extend(range(int(step.workload_first_replica[w]), int(step.workload_first_replica[w]) + n))
        dst.extend(range(int(world.workload_first_replica[v]), int(world.workload_first_replica[v]) + n))
    return np.asarray(dst, dtype=np.int64), np.asarray(src, dtype=np.int64)


def _with_forecasts(window: ScenarioSpec, extended: dict, method: str, period: int, t: int,
                    archive=None) -> ScenarioSpec:
    L = window.horizon.slots
    grid = _slot_grid(window, 0, L)
    signals = [s for s in window.signals if s.series == "actual"]
    for s in list(signals):
        key = _signal_key(s)
        if key in extended:
            values = _step_forecast(key, method, extended[key], period, t, L, archive, grid)
            signals.append(s.model_copy(update={"series": "forecast", "values": values.tolist()}))
    return window.model_copy(update={"signals": signals})


def _step_forecast(key: tuple[str, str], method: str, ext: np.ndarray, period: int, t: int, length: int,
                   archive, grid) -> np.ndarray:
    """What a planner sees at slot t for one series: the archived forecast issued by then where it reaches
    (grid intensity of an archived region), the forecaster elsewhere."""
    values = forecast_values(method, ext, period, t, length)
    if archive is not None and key[0] == SignalKind.grid_intensity.value and key[1] in archive.regions:
        issued = archive.values(key[1], grid)
        values = np.where(np.isnan(issued), values, issued)
    return values


def _slot_grid(spec: ScenarioSpec, t: int, length: int):
    from edgeplace.topology.signals.series import SlotGrid

    h = spec.horizon
    return SlotGrid(h.start + timedelta(minutes=t * h.slot_minutes), length, h.slot_minutes)


# ---------------------------------------------------------------------------
# The comparison


@dataclass
class SimulationResult:
    table: "pd.DataFrame"
    summary: dict[str, Any]
    world: Scenario
    evaluations: dict[str, "Evaluation"] = field(default_factory=dict)
    runs: dict[str, PolicyRun] = field(default_factory=dict)


def migrations(world: Scenario, assign: np.ndarray) -> int:
    """Replicas moved between consecutive slots (per workload, as a multiset of nodes)."""
    moved = 0
    for w in range(world.n_workloads):
        r0, n = int(world.workload_first_replica[w]), int(world.workload_replicas[w])
        rows = assign[r0:r0 + n]
        # Only slots where some replica's node changed can hold a move (a year has 17,568 slots).
        for t in 1 + np.flatnonzero((rows[:, 1:] != rows[:, :-1]).any(axis=0)):
            before, after = rows[:, t - 1], rows[:, t]
            if not ((before >= 0).any() and (after >= 0).any()) or np.array_equal(before, after):
                continue
            kept = Counter(before[before >= 0].tolist()) & Counter(after[after >= 0].tolist())
            moved += int((after >= 0).sum()) - sum(kept.values())
    return moved


def lookahead_slots(spec: ScenarioSpec, options: SimulationOptions, horizon: int) -> int:
    """The window each step plans: the option, or one day; at least the longest job."""
    longest = max((math.ceil(w.deferral.duration_minutes / spec.horizon.slot_minutes)
                   for w in spec.workloads if w.deferral is not None), default=1)
    L = options.lookahead_slots or _day_slots(spec)
    if L < longest:
        raise InputError("--lookahead", [Problem(str(L), f"is shorter than the longest deferrable job ({longest} slots); "
                                                         "a job must fit one planning window")])
    return min(L, horizon)


def _check_archive(archive, spec: ScenarioSpec, forecast: str) -> None:
    """The archive must be of this scenario's regions and intensity kind, and replace a forecaster."""
    problems = []
    if forecast in ("given", "perfect"):
        problems.append(Problem("--forecast", f"{forecast} leaves nothing to replay; --forecast-source fills in "
                                              f"for persistence, seasonal or ewma"))
    regions = {r.id for r in spec.regions}
    unknown = sorted(set(archive.regions) - regions)
    if unknown:
        problems.append(Problem(archive.source, f"forecasts for region(s) {', '.join(unknown)}, which the scenario "
                                                f"lacks (its regions: {', '.join(sorted(regions))})"))
    kind = compile_spec(spec, "<scenario>").intensity_kind
    if archive.kinds() - {kind}:
        problems.append(Problem(archive.source, f"holds {', '.join(sorted(archive.kinds()))} intensity; the scenario's "
                                                f"is {kind}: they measure different things"))
    if problems:
        raise InputError("--forecast-source", problems)


def simulate(scenario: Scenario, policies: list[str], options: SimulationOptions, engine: Engine | None = None,
             progress: Progress | None = None) -> SimulationResult:
    """Run every policy on the same world and tabulate them side by side.

    `progress(done, total, what)` hears the slots stepped, summed over the policies
    (total = policies x horizon slots), as the runs go: from local worker processes too,
    through a multiprocessing manager's queue; on a Dask cluster once per finished policy."""
    spec = scenario.spec
    H = options.horizon_slots or spec.horizon.slots
    if options.forecast == "given":
        if H > spec.horizon.slots:
            raise InputError("--forecast", [Problem("given", f"the scenario's forecast series cover {spec.horizon.slots} "
                                                             f"slots, the horizon {H}; use persistence or seasonal")])
        if not any(s.series == "forecast" for s in spec.signals):
            raise InputError("--forecast", [Problem("given", "the scenario has no forecast series (signals with "
                                                             "series: forecast)")])
    if options.forecast_source is not None:
        _check_archive(options.forecast_source, spec, options.forecast)
    world = build_world(spec, H, noise=options.noise, seed=options.seed, keep_forecasts=options.forecast == "given")
    world_sc = compile_spec(world.spec, f"{scenario.source} (world, {H} slots)")
    L = lookahead_slots(world.spec, options, H)
    registry = simulation_policies()
    engine = engine or InProcessEngine()
    with _slot_ticks(engine, progress, len(policies) * H) as ticks:
        tasks = {name: PolicyTask(world, registry[name], options, L, scenario.source, ticks) for name in policies}
        per_case = None if ticks is not None or progress is None else (
            lambda done, total, key: progress(done * H, total * H, key))
        outcome = run_sweep(run_policy, tasks, engine, progress=per_case)
    import pandas as pd

    from edgeplace.policies.accounting import basis_line
    from edgeplace.policies.evaluate import evaluate

    evaluations, rows = {}, []
    for name in policies:
        run: PolicyRun = outcome.results[name]
        ev = evaluate(world_sc, Placement.from_assign(run.assign, run.powered))
        evaluations[name] = ev
        t = ev.totals
        rows.append({
            "policy": name, "operational_kg": t["operational_emissions_g"] / 1000, "energy_kwh": t["energy_kwh"],
            "embodied_fleet_kg": t["embodied_emissions_g"] / 1000, "emissions_kg": t["emissions_g"] / 1000,
            "renewable_kwh": t["renewable_kwh"],
            "active_nodes": t["mean_active_nodes"], "utilisation_pct": t["mean_utilisation_active"] * 100,
            "sla_viol": t["sla_violations"], "violations": len(ev.violations),
            "migrations": migrations(world_sc, run.assign), "plan_s": run.plan_seconds,
        })
    table = pd.DataFrame(rows)
    op = dict(zip(table["policy"], table["operational_kg"]))
    # Differences in operational carbon, the part a policy changes (embodied: fleet basis).
    if "oracle" in op and op["oracle"] > 0:
        table.insert(2, "operational_vs_oracle_pct", (table["operational_kg"] / op["oracle"] - 1.0) * 100)
    ref_name = next((n for n in ("default", "spread") if n in op), None)
    if ref_name and op[ref_name] > 0:
        table.insert(2, f"operational_vs_{ref_name}_pct", (table["operational_kg"] / op[ref_name] - 1.0) * 100)
    repeated = f"the scenario repeated, seeded noise x{options.noise:g} (seed {options.seed})"
    summary: dict[str, Any] = {
        "scenario": spec.name, "horizon_slots": H, "horizon_days": H * spec.horizon.slot_minutes / MINUTES_PER_DAY,
        "world": "the scenario" if H <= spec.horizon.slots else repeated,
        "lookahead_slots": L, "replan_every_slots": options.replan_every, "forecast": options.forecast,
        "forecast_source": (options.forecast_source.source if options.forecast_source is not None else None),
        "intensity_forecast_mape_pct": (forecast_mape_pct(world, options.forecast, L, archive=options.forecast_source)
                                        if options.forecast != "given" else None),
        "solver": options.solver, "step_time_limit_s": options.step_time_limit_s,
        "migration_g_per_replica": options.migration_g_per_replica,
        "deferrable_jobs": int(world_sc.workload_deferrable.sum()),
        "accounting": basis_line(world_sc),
    }
    # Costs and savings of operational carbon (location-based): owned nodes' embodied
    # carbon is the same for every policy; rented nodes' differs and is in the table.
    if "optimizer" in op and "oracle" in op:
        summary["cost_of_forecast_error_kg"] = op["optimizer"] - op["oracle"]
        summary["cost_of_forecast_error_pct"] = (op["optimizer"] / op["oracle"] - 1.0) * 100 if op["oracle"] > 0 else None
    if "optimizer" in op and "noshift" in op:
        summary["time_shifting_saves_kg"] = op["noshift"] - op["optimizer"]
        summary["time_shifting_saves_pct"] = (1.0 - op["optimizer"] / op["noshift"]) * 100 if op["noshift"] > 0 else None
    return SimulationResult(table, summary, world_sc, evaluations, {n: outcome.results[n] for n in policies})


@contextmanager
def _slot_ticks(engine: Engine, progress: Progress | None, total: int) -> Iterator[Any]:
    """A queue the policy runs put (policy, slots stepped) into, drained by a thread that calls
    `progress`; None without progress or on an engine whose workers cannot reach this process."""
    if progress is None or not isinstance(engine, (InProcessEngine, LocalProcessEngine)):
        yield None
        return
    manager = None
    if isinstance(engine, InProcessEngine):
        ticks: Any = queue.SimpleQueue()
    else:
        import multiprocessing

        manager = multiprocessing.get_context("spawn").Manager()
        ticks = manager.Queue()
    done: dict[str, int] = {}

    def drain() -> None:
        while (item := ticks.get()) is not None:  # None: the runs are over
            name, slots = item
            done[name] = slots
            progress(sum(done.values()), total, f"{name} {slots:,} slots")

    thread = threading.Thread(target=drain, name="edgeplace-simulate-progress", daemon=True)
    thread.start()
    try:
        yield ticks
    finally:
        ticks.put(None)
        thread.join(timeout=10)
        if manager is not None:
            manager.shutdown()


__all__ = [
    "DEFAULT_MIGRATION_G",
    "DEFAULT_POLICIES",
    "FORECASTERS",
    "PolicyRun",
    "PolicyTask",
    "SimPolicy",
    "SimulationOptions",
    "SimulationResult",
    "World",
    "build_world",
    "forecast_mape_pct",
    "forecast_values",
    "lookahead_slots",
    "migrations",
    "parse_duration_slots",
    "parse_policies",
    "run_policy",
    "simulate",
    "simulation_policies",
]
