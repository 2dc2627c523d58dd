"""From a scenario to a Plan: price, warm-start, solve, bound, evaluate.

`solve(scenario, options)` is the one entry point. It always returns a plan:
the exact solver's when it found one that evaluates at least as well as the
greedy plan, otherwise the greedy plan (the fallback when a solver runs out
of time). The reported figures come from `policies.evaluate`; the solver's
own objective is only used for the bound and the status.

Gap = (evaluated emissions - lower bound) / evaluated emissions, where the
lower bound is the best of the solver's proven bound and the LP relaxation of
the same model. It is a gap within the modelled space (see
`optimizer.formulation`): services keep their node for the horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

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

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {self.solver!r})")
        if self.milp_backend not in MILP_BACKENDS:
            raise ValueError(f"milp_backend must be one of {', '.join(MILP_BACKENDS)} (got {self.milp_backend!r})")
        if not (self.time_limit_s > 0):
            raise ValueError(f"time_limit_s must be > 0 (got {self.time_limit_s})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")


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
        if _better(cand_eval, greedy_eval):
            status = "optimal" if result.status is SolveStatus.optimal else "feasible"
            return _plan(scenario, costs, candidate, cand_eval, name, status, bound, started, stats, result.detail)
    status = "infeasible" if result.status is SolveStatus.infeasible and not greedy_eval.feasible else "fallback"
    return _plan(scenario, costs, greedy, greedy_eval, "greedy", status, bound, started, stats,
                 f"{name}: {result.status.value} ({result.detail}); kept the greedy plan")


def _better(a: Evaluation, b: Evaluation) -> bool:
    """Fewer violations first, then lower emissions."""
    return (len(a.violations), a.emissions_g) <= (len(b.violations), b.emissions_g + 1e-9)


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


def _lp_bound(costs, options: SolveOptions, say: Progress, form=None) -> float | None:
    say("LP relaxation for the lower bound")
    form = form or build(costs)
    lp = solve_highs(form.model, time_limit_s=options.bound_time_limit_s, threads=options.workers, relax=True)
    return lp.objective if lp.status is SolveStatus.optimal else None


def _plan(scenario, costs, placement, evaluation, solver, status, bound, started, stats, detail) -> Plan:
    plan = Plan(placement, evaluation, solver, status, _carbon_bound(costs, bound), time.perf_counter() - started,
                stats, detail)
    if not evaluation.feasible:
        plan.explanation = explain_unplaced(costs, placement, evaluation)
        if plan.status == "feasible":
            plan.status = "infeasible"
    return plan


def _carbon_bound(costs, bound: float | None) -> float | None:
    """A bound on the model objective bounds evaluated emissions only when the
    objective is pure carbon (secondary weights would shift it)."""
    if bound is None or not costs.objective.carbon_only:
        return None
    return float(bound)
