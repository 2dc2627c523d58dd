"""From a scenario to a Plan: price, warm-start, solve, bound, evaluate.

`solve(scenario, options)` is the one entry point. It always returns a plan:
the exact solver's when it found one that evaluates at least as well as the
greedy plan (fewer violations, then evaluated emissions plus the objective's
secondary terms: energy and latency weights, migration penalty), otherwise
the greedy plan (the fallback when a solver runs out of time). The reported
figures come from `policies.evaluate`; the solver's own objective is only
used for the bound and the status.

Gap = (evaluated emissions - lower bound) / evaluated emissions, where the
lower bound is the best of the solver's proven bound, the LP relaxation of
the same model (when it solves within `bound_time_limit_s`) and the flow
bound of `optimizer.bound` (milliseconds, weaker). It is a gap within the modelled space (see
`optimizer.formulation`): services keep their node for the horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from optimizer.bound import flow_bound_g
from optimizer.explain import explain_unplaced
from optimizer.formulation import build
from optimizer.greedy import greedy_place
from optimizer.highs_backend import solve_highs
from optimizer.readback import hint_from_placement, placement_from_values
from optimizer.result import SolveResult, SolveStatus
from policies.costs import Objective, price
from policies.evaluate import Evaluation, evaluate
from topology.placement import Placement
from topology.scenario import Scenario

SOLVERS = ("cpsat", "milp", "greedy")
MILP_BACKENDS = ("highs", "pulp-highs", "pulp-cbc")


@dataclass(frozen=True)
class SolveOptions:
    """How to solve. `time_limit_s` bounds the exact solver; the LP bound gets
    at most `bound_time_limit_s` more (0 disables it)."""

    solver: str = "cpsat"
    time_limit_s: float = 30.0
    workers: int = 2
    milp_backend: str = "highs"
    objective: Objective = field(default_factory=Objective)
    bound_time_limit_s: float = 30.0
    seed: int = 0
    #: Above this many decision variables (eligible workload-node pairs and job
    #: starts) the exact model is not built: at 10,000 x 1,000 it has 7.5 million
    #: and CP-SAT needed 23 GiB. The greedy plan and the flow bound are returned.
    max_model_variables: int = 2_000_000

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {self.solver!r})")
        if self.milp_backend not in MILP_BACKENDS:
            raise ValueError(f"milp_backend must be one of {', '.join(MILP_BACKENDS)} (got {self.milp_backend!r})")
        if not (self.time_limit_s > 0):
            raise ValueError(f"time_limit_s must be > 0 (got {self.time_limit_s})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")
        if not (self.bound_time_limit_s >= 0):
            raise ValueError(f"bound_time_limit_s must be >= 0, 0 disables the LP bound "
                             f"(got {self.bound_time_limit_s})")


@dataclass
class Plan:
    """A placement with its evaluation and how it was found."""

    placement: Placement
    evaluation: Evaluation
    solver: str  # who produced the placement: cpsat, milp, greedy
    status: str  # optimal | feasible | fallback | infeasible
    lower_bound_g: float | None
    solve_seconds: float
    model_stats: dict[str, int] = field(default_factory=dict)
    solver_detail: str = ""
    explanation: list[str] = field(default_factory=list)

    @property
    def objective_g(self) -> float:
        return self.evaluation.totals["emissions_g"]

    @property
    def gap(self) -> float | None:
        """Relative gap of the evaluated emissions to the lower bound (0.01 = 1 %)."""
        if self.lower_bound_g is None or self.objective_g <= 0:
            return None
        return max(0.0, (self.objective_g - self.lower_bound_g) / self.objective_g)

    def summary(self) -> dict[str, object]:
        t = self.evaluation.totals
        return {
            "solver": self.solver, "status": self.status,
            "emissions_kg": t["emissions_g"] / 1000, "operational_kg": t["operational_emissions_g"] / 1000,
            "embodied_kg": t["embodied_emissions_g"] / 1000, "energy_kwh": t["energy_kwh"],
            "renewable_kwh": t["renewable_kwh"], "mean_active_nodes": t["mean_active_nodes"],
            "violations": len(self.evaluation.violations),
            "lower_bound_kg": None if self.lower_bound_g is None else self.lower_bound_g / 1000,
            "gap_pct": None if self.gap is None else self.gap * 100,
            "solve_s": self.solve_seconds,
        }

    def to_dict(self, scenario: Scenario) -> dict:
        doc = self.placement.to_dict(scenario)
        doc["plan"] = {**self.summary(), "model": self.model_stats, "explanation": self.explanation,
                       "intensity_kind": scenario.intensity_kind, "accounting": "location-based"}
        return doc


Progress = Callable[[str], None]


def solve(scenario: Scenario, options: SolveOptions | None = None, progress: Progress | None = None) -> Plan:
    """Plan `scenario` with the options' solver; see the module docstring."""
    options = options or SolveOptions()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    costs = price(scenario, options.objective)
    say("greedy warm start")
    greedy = greedy_place(costs, time_limit_s=min(1.0, options.time_limit_s), seed=options.seed)
    greedy_eval = evaluate(scenario, greedy)
    if options.solver == "greedy":
        bound = _lp_bound(costs, options, say) if options.bound_time_limit_s > 0 else None
        return _plan(scenario, costs, greedy, greedy_eval, "greedy", "feasible", bound, started, {}, "")

    size = model_size(costs)
    if size > options.max_model_variables:
        say(f"the model would have about {size:,} variables (> {options.max_model_variables:,}): keeping the greedy plan")
        bound = flow_bound_g(costs)
        return _plan(scenario, costs, greedy, greedy_eval, "greedy", "fallback", bound, started, {"variables": size},
                     f"{options.solver}: not run, the model would have about {size:,} variables "
                     f"(max_model_variables {options.max_model_variables:,}); kept the greedy plan")

    say("building the model")
    form = build(costs)
    stats = form.model.stats()
    say(f"model: {stats['variables']:,} variables ({stats['integer_variables']:,} integer), {stats['rows']:,} rows")
    hint = hint_from_placement(form, costs, greedy)
    result = _run_exact(form.model, hint, options, say)
    bound = result.bound
    if result.status is not SolveStatus.optimal and options.bound_time_limit_s > 0:
        lp = _lp_bound(costs, options, say, form)
        bound = max(b for b in (bound, lp) if b is not None) if (bound is not None or lp is not None) else None

    name = options.solver
    if result.values is not None:
        candidate = placement_from_values(form, costs, result.values)
        cand_eval = evaluate(scenario, candidate)
        if _better(costs, (candidate, cand_eval), (greedy, greedy_eval)):
            status = "optimal" if result.status is SolveStatus.optimal else "feasible"
            return _plan(scenario, costs, candidate, cand_eval, name, status, bound, started, stats, result.detail)
    status = "infeasible" if result.status is SolveStatus.infeasible and not greedy_eval.feasible else "fallback"
    return _plan(scenario, costs, greedy, greedy_eval, "greedy", status, bound, started, stats,
                 f"{name}: {result.status.value} ({result.detail}); kept the greedy plan")


def _better(costs, a: tuple[Placement, Evaluation], b: tuple[Placement, Evaluation]) -> bool:
    """Fewer violations first, then a lower objective: emissions plus the secondary
    terms the solvers minimise (a plan that saves 5 g by moving 10 replicas at a
    20 g migration penalty is worse, not better)."""
    (pa, ea), (pb, eb) = a, b
    return ((len(ea.violations), ea.emissions_g + _secondary_g(costs, pa, ea))
            <= (len(eb.violations), eb.emissions_g + _secondary_g(costs, pb, eb) + 1e-9))


def _secondary_g(costs, placement: Placement, evaluation: Evaluation) -> float:
    """The objective's secondary terms for a placement [g], as `optimizer.formulation` prices them:
    energy weight x facility energy, latency weight x worst user latency per placed replica, and
    the migration penalty per service replica not on one of its current nodes."""
    obj, sc = costs.objective, costs.scenario
    if obj.carbon_only:
        return 0.0
    running = placement.assign >= 0
    placed = running.any(axis=1)
    first = placement.assign[np.arange(sc.n_replicas), np.argmax(running, axis=1)]  # each replica's node
    total = obj.energy_weight_g_per_kwh * float(evaluation.energy_kwh.sum())
    w_of = sc.replica_workload[placed]
    latency_ms = sc.workload_site_latency_ms[w_of, sc.node_site[first[placed]]]
    total += obj.latency_weight_g_per_ms * float(latency_ms.sum())
    for w, now in costs.current_count.items():
        if sc.workload_deferrable[w]:
            continue
        r0, R = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
        nodes = first[r0:r0 + R][placed[r0:r0 + R]]
        kept = int(np.minimum(np.bincount(nodes, minlength=sc.n_nodes), now).sum())
        total += obj.migration_g_per_replica * (R - kept)
    return total


def _run_exact(model, hint: dict[int, float], options: SolveOptions, say: Progress) -> SolveResult:
    say(f"solving with {options.solver} (time limit {options.time_limit_s:g} s, {options.workers} worker(s))")
    if options.solver == "cpsat":
        from optimizer.cpsat_backend import solve_cpsat

        return solve_cpsat(model, time_limit_s=options.time_limit_s, workers=options.workers, hint=hint, seed=options.seed)
    if options.milp_backend == "highs":
        return solve_highs(model, time_limit_s=options.time_limit_s, threads=options.workers)
    from optimizer.pulp_backend import solve_pulp

    return solve_pulp(model, solver=options.milp_backend.removeprefix("pulp-"), time_limit_s=options.time_limit_s,
                      threads=options.workers)


def model_size(costs) -> int:
    """Decision variables of the placement model: eligible service-node pairs plus job node-start triples."""
    sc = costs.scenario
    windows = sc.workload_latest_start_slot - sc.workload_earliest_slot + 1
    per_workload = costs.eligible.sum(axis=1) * np.where(sc.workload_deferrable, windows, 1)
    return int(per_workload.sum())


def _lp_bound(costs, options: SolveOptions, say: Progress, form=None) -> float | None:
    """The best of the LP relaxation (if it solves in time and fits) and the flow bound (always, milliseconds)."""
    if form is None and model_size(costs) > options.max_model_variables:
        return flow_bound_g(costs)
    say("LP relaxation for the lower bound")
    form = form or build(costs)
    lp = solve_highs(form.model, time_limit_s=options.bound_time_limit_s, threads=options.workers, relax=True)
    bounds = [flow_bound_g(costs), lp.objective if lp.status is SolveStatus.optimal else None]
    return max((b for b in bounds if b is not None), default=None)


def _plan(scenario, costs, placement, evaluation, solver, status, bound, started, stats, detail) -> Plan:
    plan = Plan(placement, evaluation, solver, status, _carbon_bound(costs, bound), time.perf_counter() - started,
                stats, detail)
    if not evaluation.feasible:
        plan.explanation = explain_unplaced(costs, placement, evaluation)
        # The status is the plan's: one that breaks a rule is no "optimal" or "fallback" plan,
        # whatever the solver proved in its model (solver_detail keeps that).
        plan.status = "infeasible"
    return plan


def _carbon_bound(costs, bound: float | None) -> float | None:
    """A bound on the model objective bounds evaluated emissions only when the
    objective is pure carbon (secondary weights would shift it)."""
    sc = costs.scenario
    forecast_is_actual = (np.array_equal(sc.region_intensity_forecast_g_per_kwh, sc.region_intensity_g_per_kwh)
                          and np.array_equal(sc.site_renewable_forecast_kw, sc.site_renewable_kw))
    if bound is None or not costs.objective.carbon_only or not forecast_is_actual:
        return None  # the bound is on what the model prices, which is then not what evaluation measures
    # A pure-carbon objective is never negative, but CP-SAT's bound on its scaled
    # integer objective can be (a bound of -1.5 g on an empty search): 0 is valid and tighter.
    return max(0.0, float(bound))
