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
   `edgeplace.optimizer.rolling.current_nodes`), cut to a lookahead window of L slots,
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
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgeplace.sweep import Engine, InProcessEngine, Progress, run_sweep
from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import SIGNAL_RANGES, compile_spec
from edgeplace.topology.placement import Placement
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


# ---------------------------------------------------------------------------
# Options and policies


@dataclass(frozen=True)
class SimulationOptions:
    """How to simulate. `horizon_slots` None = the scenario's horizon;
    `lookahead_slots` None = one day (at least the longest job). The
    optimizer, oracle and noshift re-plan with `solver` under
    `step_time_limit_s` per step (greedy: the local search stops at a local
    optimum or the limit; cpsat/milp: the exact solver's limit)."""

    horizon_slots: int | None = None
    lookahead_slots: int | None = None
    forecast: str = "seasonal"
    solver: str = "greedy"
    step_time_limit_s: float = 1.0
    solver_threads: int = 1
    migration_g_per_replica: float = DEFAULT_MIGRATION_G
    replan_every: int = 1
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
                            bound_time_limit_s=0.0, seed=self.seed,
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
                    "deferral": Deferral(earliest_start=d.earliest_start + shift, deadline=d.deadline + shift,
                                         duration_minutes=d.duration_minutes)}))
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
    signals = [s.model_copy(update={"values": s.values[:slots]}) for s in spec.signals]
    return spec.model_copy(update={"horizon": h.model_copy(update={"slots": slots}), "workloads": workloads,
                                   "signals": signals})


def _pin_jobs(spec: ScenarioSpec) -> ScenarioSpec:
    """Every deferrable job's window cut to its run from the earliest start (no time-shifting)."""
    slot = timedelta(minutes=spec.horizon.slot_minutes)
    start = spec.horizon.start
    workloads = []
    for wl in spec.workloads:
        d = wl.deferral
        if d is not None:
            # The run starts in the first whole slot of the window, as edgeplace.topology.load counts slots.
            first = start + max(0, math.ceil((d.earliest_start - start) / slot)) * slot
            run = math.ceil(d.duration_minutes / spec.horizon.slot_minutes) * slot
            wl = wl.model_copy(update={"deferral": d.model_copy(update={"deadline": first + run})})
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
    return np.asarray(methods[method].forecast(extended[:period + t], length, period), dtype=float)


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
    world: World
    policy: SimPolicy
    options: SimulationOptions
    lookahead: int
    source: str


@dataclass
class PolicyRun:
    """The stitched placement of one policy and how it was made."""

    name: str
    assign: np.ndarray  # R x T over the world
    powered: np.ndarray  # N x T
    plan_seconds: float
    replans: int


def _planner(policy: SimPolicy, options: SimulationOptions) -> Callable[[Scenario], Placement]:
    if policy.baseline is not None:
        from edgeplace.policies.baselines import baseline_registry

        make = baseline_registry()[policy.baseline]
        return lambda sc: make().place(sc)
    from edgeplace.optimizer.solve import solve

    solve_options = options.solve_options()
    return lambda sc: solve(sc, solve_options).placement


def run_policy(task: PolicyTask) -> PolicyRun:
    """Step one policy through the world (see the module docstring)."""
    world_spec, opts, policy = task.world.spec, task.options, task.policy
    world = compile_spec(world_spec, task.source)
    plan_spec = world_spec if policy.shifting else _pin_jobs(world_spec)
    extended = _extended(task.world)
    plan = _planner(policy, opts)
    H, R, N = world.n_slots, world.n_replicas, world.n_nodes
    if not policy.rolling:
        # Signal-blind Kubernetes-like baselines: one placement of the whole
        # world, as a cluster binds each pod once and never moves it.
        t0 = time.perf_counter()
        placement = plan(world)
        return PolicyRun(policy.name, placement.assign, _powered(world, placement), time.perf_counter() - t0, 1)
    from edgeplace.optimizer.rolling import current_nodes

    assign = np.full((R, H), -1, dtype=np.int64)
    powered = np.zeros((N, H), dtype=bool)
    step_sc: Scenario | None = None
    step_placement: Placement | None = None
    rows: tuple[np.ndarray, np.ndarray] | None = None
    planned_at, seconds, replans = 0, 0.0, 0
    for t in range(H):
        if step_sc is None or t - planned_at >= opts.replan_every or t - planned_at >= step_sc.n_slots:
            provisional = assign.copy()
            if t > 0:
                provisional[:, t] = assign[:, t - 1]  # "now": as the last slot left things
            # Replicas where they run now; every job started before t (remaining()
            # keeps the unfinished ones running to the end of their run and drops the rest).
            current, started_jobs = current_nodes(world, Placement(provisional), t) if t > 0 else ({}, {})
            rest = remaining(plan_spec, t, current, started_jobs)
            window = _cut(rest, min(task.lookahead, H - t), started_jobs)
            if policy.knows_actual or opts.forecast == "perfect":
                window = window.model_copy(update={"signals": [s for s in window.signals if s.series == "actual"]})
            elif opts.forecast != "given":
                window = _with_forecasts(window, extended, opts.forecast, task.world.period, t, opts.forecast_source)
            step_sc = compile_spec(window, f"{task.source}@slot{t}")
            t0 = time.perf_counter()
            step_placement = plan(step_sc)
            seconds += time.perf_counter() - t0
            planned_at, replans = t, replans + 1
            rows = _row_map(world, step_sc)
        assert step_placement is not None and rows is not None  # set on the first step
        k = t - planned_at
        dst, src = rows
        assign[dst, t] = step_placement.assign[src, k]
        hosting = np.bincount(assign[:, t][assign[:, t] >= 0], minlength=N) > 0
        if step_placement.powered is not None:
            powered[:, t] = step_placement.powered[:, k] | hosting
        else:
            powered[:, t] = hosting | ~world.node_can_power_down
    return PolicyRun(policy.name, assign, powered, seconds, replans)


def _powered(world: Scenario, placement: Placement) -> np.ndarray:
    """N x T power states: the placement's own, or derived as `edgeplace.policies.evaluate` derives them."""
    if placement.powered is not None:
        return np.asarray(placement.powered, dtype=bool)
    hosting = np.zeros((world.n_nodes, world.n_slots), dtype=bool)
    r, t = np.nonzero(placement.assign >= 0)
    hosting[placement.assign[r, t], t] = True
    return hosting | ~world.node_can_power_down[:, None]


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
        for t in range(1, world.n_slots):
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
    """Run every policy on the same world and tabulate them side by side."""
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
    tasks = {name: PolicyTask(world, registry[name], options, L, scenario.source) for name in policies}
    outcome = run_sweep(run_policy, tasks, engine or InProcessEngine(), progress=progress)
    import pandas as pd

    from edgeplace.policies.accounting import basis_line
    from edgeplace.policies.evaluate import evaluate

    evaluations, rows = {}, []
    for name in policies:
        run: PolicyRun = outcome.results[name]
        ev = evaluate(world_sc, Placement(run.assign, run.powered))
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
