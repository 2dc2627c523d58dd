"""From a scenario to a Plan: price, warm-start, solve, bound, evaluate.

`solve(scenario, options)` is the one entry point. It always returns a plan:
the exact solver's when it found one that evaluates at least as well as the
greedy plan (fewer violations, then evaluated emissions plus the objective's
secondary terms: energy and latency weights, migration penalty), otherwise
the greedy plan (the fallback when a solver runs out of time). The reported
figures come from `edgeplace.policies.evaluate`; the solver's own objective is only
used for the bound and the status.

Models above `SolveOptions.restrict_above_variables` are solved restricted
(`_restricted_solve`): the exact solver on the pairs the flow relaxation and
the greedy plan use (plus a few cheap ones), then large-neighbourhood search
(`edgeplace.optimizer.lns`).

Gap = (evaluated figure - lower bound) / evaluated figure, where the figure
is what a placement can change (`Evaluation.decision_g`: operational carbon on
the objective's Scope 2 basis plus rented nodes' embodied carbon; owned nodes'
embodied carbon, fleet basis, is the same for every plan) and the
lower bound is the best of the solver's proven bound, the LP relaxation of
the same model (when it solves within `bound_time_limit_s`) and the flow
bound of `edgeplace.optimizer.bound` (milliseconds, weaker). It is a gap within the modelled space (see
`edgeplace.optimizer.formulation`): services keep their node for the horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from edgeplace.optimizer import lns
from edgeplace.optimizer.bound import flow_bound_g
from edgeplace.optimizer.explain import explain_unplaced
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.pairs import placement_pairs, restricted_pairs
from edgeplace.optimizer.readback import hint_from_placement, placement_from_values
from edgeplace.optimizer.result import SolveResult, SolveStatus
from edgeplace.policies.accounting import accounting_facts
from edgeplace.policies.costs import Objective, price
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

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
    #: starts) the full model is not built: the exact solver works on a few pairs
    #: per workload (`_restricted_solve`). At 1,000 x 100 the full model has 78,000
    #: variables and neither CP-SAT nor HiGHS beats the greedy plan in 30 s, while
    #: the restricted one (about 4,000) improves on it by 5 %.
    restrict_above_variables: int = 20_000
    #: No exact model (full or restricted) is built above this many variables: the
    #: full 10,000 x 1,000 model has 7.4 million and CP-SAT needed 23 GiB on it.
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
        for name in ("restrict_above_variables", "max_model_variables"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
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
    #: The Scope 2 basis the objective priced operational carbon on (location | market).
    carbon_basis: str = "location"

    @property
    def objective_g(self) -> float:
        """The evaluated figure the solver minimised: `Evaluation.decision_g` on the plan's basis [gCO2e]."""
        return self.evaluation.decision_g(self.carbon_basis)

    @property
    def gap(self) -> float | None:
        """Relative gap of the evaluated objective figure to the lower bound (0.01 = 1 %)."""
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
            "operational_market_kg": t["operational_market_emissions_g"] / 1000,
            "objective_kg": self.objective_g / 1000,
            "lower_bound_kg": None if self.lower_bound_g is None else self.lower_bound_g / 1000,
            "gap_pct": None if self.gap is None else self.gap * 100,
            "solve_s": self.solve_seconds,
        }

    def to_dict(self, scenario: Scenario) -> dict:
        doc = self.placement.to_dict(scenario)
        doc["plan"] = {**self.summary(), "model": self.model_stats, "explanation": self.explanation,
                       "accounting": accounting_facts(scenario, self.carbon_basis)}
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
    if not greedy_eval.feasible:
        say("repairing the greedy plan around its violations")
        greedy, greedy_eval = lns.repair(costs, (greedy, greedy_eval), better=lambda a, b: _better(costs, a, b),
                                         solve_step=_highs_step(options))
    if options.solver == "greedy":
        bound = _lp_bound(costs, options, say) if options.bound_time_limit_s > 0 else None
        return _plan(scenario, costs, greedy, greedy_eval, "greedy", "feasible", bound, started, {}, "")

    size = model_size(costs)
    if size > options.restrict_above_variables:
        return _restricted_solve(scenario, costs, greedy, greedy_eval, options, say, started, size)

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
    return _pick(scenario, costs, form, result, (greedy, greedy_eval), bound, options, started, stats)


def _restricted_solve(scenario, costs, greedy, greedy_eval, options: SolveOptions, say: Progress, started: float,
                      size: int) -> Plan:
    """A large model: the exact solver on the MILP restricted to the pairs a
    relaxation and the greedy plan point at (`restricted_pairs`), warm-started
    from the greedy plan, for half the time left; then large-neighbourhood
    search (`edgeplace.optimizer.lns`) until the time limit. The restricted solver's own
    bound and status say nothing about the full model and are not used: the
    bound is the flow bound, or the LP relaxation when `bound_time_limit_s` > 0."""
    deadline = started + options.time_limit_s
    flow_support = np.zeros(costs.eligible.shape, dtype=bool)
    bound = flow_bound_g(costs, flow_support)
    pool = restricted_pairs(costs, [flow_support, placement_pairs(costs, greedy)])
    stats = {"full_model_variables": size}
    pool_size = int((pool.sum(axis=1) * _starts_per_workload(costs)).sum())
    if pool_size > options.max_model_variables:
        return _plan(scenario, costs, greedy, greedy_eval, "greedy", "fallback", bound, started, stats,
                     f"{options.solver}: not run, the restricted model would have about {pool_size:,} variables "
                     f"(max_model_variables {options.max_model_variables:,}); kept the greedy plan")
    form = build(costs, columns=pool)
    stats.update(form.model.stats())
    say(f"the full model would have about {size:,} variables: restricted to {int(pool.sum()):,} workload-node pairs "
        f"({stats['variables']:,} variables)")
    remaining = deadline - time.perf_counter()
    result = _run_exact(form.model, hint_from_placement(form, costs, greedy),
                        replace(options, time_limit_s=max(remaining / 2, 1.0)), say)
    best, name = (greedy, greedy_eval), "greedy"
    if result.values is not None:
        candidate = placement_from_values(form, costs, result.values)
        candidate_plan = (candidate, evaluate(scenario, candidate))
        if _better(costs, candidate_plan, best):
            best, name = candidate_plan, options.solver
    say(f"neighbourhood search from {best[1].decision_g(costs.objective.carbon_basis) / 1000:.4f} kg")
    best, tried, kept = lns.improve(costs, best, deadline=deadline, better=lambda a, b: _better(costs, a, b),
                                    solve_step=_highs_step(options), seed=options.seed)
    stats.update({"lns_steps": tried, "lns_improvements": kept})
    if kept:
        name = options.solver
    if options.bound_time_limit_s > 0 and size <= FULL_LP_MAX_VARIABLES:  # beyond, the flow bound is all there is
        bound = max((b for b in (bound, _lp_bound(costs, options, say)) if b is not None), default=None)
    detail = (f"{options.solver} restricted to {int(pool.sum()):,} pairs: {result.status.value} ({result.detail}); "
              f"neighbourhood search kept {kept} of {tried} steps")
    if name == "greedy":
        return _plan(scenario, costs, *best, "greedy", "fallback", bound, started, stats, detail + "; kept the greedy plan")
    return _plan(scenario, costs, *best, name, "feasible", bound, started, stats, detail)


def _highs_step(options: SolveOptions):
    """The exact solver of neighbourhood steps and repairs: small MILPs with a good incumbent,
    which HiGHS's branch and bound closes better than CP-SAT (1,000 x 100 x 1, 15 s of steps:
    7.24 -> 7.06 kg with HiGHS, 7.32 -> 7.24 with CP-SAT)."""
    def step(model, _hint, limit_s):
        return solve_highs(model, time_limit_s=limit_s, threads=options.workers)
    return step


def _pick(scenario, costs, form, result: SolveResult, greedy: tuple[Placement, Evaluation], bound, options,
          started, stats) -> Plan:
    """The exact solver's plan when it evaluates at least as well as the greedy one, else the greedy plan."""
    greedy, greedy_eval = greedy
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
    basis = costs.objective.carbon_basis
    return ((len(ea.violations), ea.decision_g(basis) + _secondary_g(costs, pa, ea))
            <= (len(eb.violations), eb.decision_g(basis) + _secondary_g(costs, pb, eb) + 1e-9))


def _secondary_g(costs, placement: Placement, evaluation: Evaluation) -> float:
    """The objective's secondary terms for a placement [g], as `edgeplace.optimizer.formulation` prices them:
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
        from edgeplace.optimizer.cpsat_backend import solve_cpsat

        return solve_cpsat(model, time_limit_s=options.time_limit_s, workers=options.workers, hint=hint, seed=options.seed)
    if options.milp_backend == "highs":
        return solve_highs(model, time_limit_s=options.time_limit_s, threads=options.workers)
    from edgeplace.optimizer.pulp_backend import solve_pulp

    return solve_pulp(model, solver=options.milp_backend.removeprefix("pulp-"), time_limit_s=options.time_limit_s,
                      threads=options.workers)


def model_size(costs) -> int:
    """Decision variables of the placement model: eligible service-node pairs plus job node-start triples."""
    return int((costs.eligible.sum(axis=1) * _starts_per_workload(costs)).sum())


def _starts_per_workload(costs) -> np.ndarray:
    sc = costs.scenario
    windows = sc.workload_latest_start_slot - sc.workload_earliest_slot + 1
    return np.where(sc.workload_deferrable, windows, 1)


#: Above this many variables the full model is not built for its LP bound: at 1,000 x 100 x 1
#: (78,000) HiGHS solves the LP in about 25 s, at 1,000 x 100 x 24 (250,000) not in a minute.
FULL_LP_MAX_VARIABLES = 150_000


def _lp_bound(costs, options: SolveOptions, say: Progress, form=None) -> float | None:
    """The best of the LP relaxation (if it solves in time, up to `FULL_LP_MAX_VARIABLES`)
    and the flow bound (always, milliseconds)."""
    if form is None and model_size(costs) > FULL_LP_MAX_VARIABLES:
        return flow_bound_g(costs)
    say("LP relaxation for the lower bound")
    form = form or build(costs)
    lp = solve_highs(form.model, time_limit_s=options.bound_time_limit_s, threads=options.workers, relax=True)
    bounds = [flow_bound_g(costs), lp.objective if lp.status is SolveStatus.optimal else None]
    return max((b for b in bounds if b is not None), default=None)


def _plan(scenario, costs, placement, evaluation, solver, status, bound, started, stats, detail) -> Plan:
    plan = Plan(placement, evaluation, solver, status, _carbon_bound(costs, bound), time.perf_counter() - started,
                stats, detail, carbon_basis=costs.objective.carbon_basis)
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
                          and np.array_equal(sc.site_renewable_forecast_kw, sc.site_renewable_kw)
                          and np.array_equal(sc.site_contracted_forecast_kw, sc.site_contracted_kw))
    if bound is None or not costs.objective.carbon_only or not forecast_is_actual:
        return None  # the bound is on what the model prices, which is then not what evaluation measures
    # A pure-carbon objective is never negative, but CP-SAT's bound on its scaled
    # integer objective can be (a bound of -1.5 g on an empty search): 0 is valid and tighter.
    return max(0.0, float(bound))
