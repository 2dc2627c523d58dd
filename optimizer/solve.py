"""From a scenario to a Plan: the planning strategy in one function.

`solve(scenario, options)` is the one entry point. It runs the stages of
`edgeplace.optimizer.stages` in order, each taking the priced model and what
the stages before it found, and ends with one chooser (`choose`):

1. greedy: construction + local search, repaired around violations;
2. bound: flow bound, knapsack bound, LP relaxation and Lagrangian bound where it solves;
3. exact: CP-SAT or HiGHS on the whole model (or, for a model too large to
   build whole: node-closing steps for three quarters of the time left, then the exact
   solver restricted to the pairs the bound prices cheapest);
4. search: large-neighbourhood search until the deadline.

Every candidate is priced on the series the plan is made on (the forecast;
`Scenario.as_forecast`), never on the actual ones: the chooser keeps the
candidate with the fewest violations, then the lowest planned objective.
The plan's reported figures are `edgeplace.policies.evaluate` on the actual
series; its gap is that of its planned objective to the best lower bound
(and 0 when a solver proved it optimal), and says which bound.

The objective is what a placement can change (`Evaluation.decision_g`:
operational carbon on the objective's Scope 2 basis plus rented nodes'
embodied carbon; owned nodes' embodied carbon, fleet basis, is the same for
every plan), plus the secondary terms when the objective has them
(`Plan.gap_basis` says which). Gap = (planned objective - lower bound) /
planned objective. The bound holds within the modelled space (see
`edgeplace.optimizer.formulation`): services keep their node for the horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


from edgeplace.optimizer import stages
from edgeplace.optimizer.candidates import Found
from edgeplace.optimizer.explain import explain_unplaced
from edgeplace.optimizer.stages import FULL_LP_MAX_VARIABLES, model_size  # noqa: F401 - re-exported
from edgeplace.policies.accounting import accounting_facts
from edgeplace.policies.costs import Objective
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

SOLVERS = ("cpsat", "milp", "greedy")
MILP_BACKENDS = ("highs", "pulp-highs", "pulp-cbc")


@dataclass(frozen=True)
class SolveOptions:
    """How to solve.

    time_limit_s : the whole solve for cpsat and milp (greedy, bound, exact
        solver, search) [s], of which the greedy stage's local search may
        take a tenth; for greedy, its local search (at most 1 s).
    bound : compute a lower bound (False: none, no gap).
    bound_time_limit_s : how long the knapsack, LP and Lagrangian bounds may run [s];
        None = a quarter of time_limit_s for cpsat and milp (within it), 0
        for greedy (the flow bound only, milliseconds); 0 = the flow bound
        and the solvers' own bounds only.
    search_steps : stop the node-closing steps and the neighbourhood search
        after this many steps each (None: at their time); for runs that must
        repeat exactly.
    """

    solver: str = "cpsat"
    time_limit_s: float = 30.0
    workers: int = 2
    milp_backend: str = "highs"
    objective: Objective = field(default_factory=Objective)
    bound: bool = True
    bound_time_limit_s: float | None = None
    search_steps: int | None = None
    seed: int = 0
    #: Above this many decision variables (eligible workload-node pairs and job
    #: starts) the full model is not built: the exact solver works on a few pairs
    #: per workload (`stages.restricted`). At 1,000 x 100 the full model has 78,000
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
        if self.bound_time_limit_s is not None and not (self.bound_time_limit_s >= 0):
            raise ValueError(f"bound_time_limit_s must be >= 0, 0 keeps only the flow bound "
                             f"(got {self.bound_time_limit_s})")
        if self.search_steps is not None and self.search_steps < 0:
            raise ValueError(f"search_steps must be >= 0 (got {self.search_steps})")

    @property
    def bound_budget_s(self) -> float:
        """Seconds the knapsack, LP and Lagrangian bounds may take (see `bound_time_limit_s`)."""
        if not self.bound:
            return 0.0
        if self.bound_time_limit_s is None:
            return 0.0 if self.solver == "greedy" else self.time_limit_s / 4
        if self.solver == "greedy":
            return self.bound_time_limit_s
        return min(self.bound_time_limit_s, self.time_limit_s / 2)


@dataclass
class Plan:
    """A placement with its evaluation and how it was found.

    `evaluation` is the placement on the actual series (the reported
    figures), `planned` on the series the plan was made on (the forecast;
    the same object when the scenario has none). `solver` names who
    produced the placement (greedy, cpsat, milp, with "(restricted)" or
    "+ search" when those stages made it), `status` is optimal (proven, in
    the modelled space), feasible or infeasible (it breaks a rule).
    `lower_bound_g` bounds the planned objective of every plan in the
    modelled space (the planned emissions a plan can change,
    `Evaluation.decision_g` on `carbon_basis`, plus the secondary terms when
    the objective has them); `bound_name` says which relaxation proved it.
    """

    placement: Placement
    evaluation: Evaluation
    solver: str
    status: str  # optimal | feasible | infeasible
    lower_bound_g: float | None
    solve_seconds: float
    model_stats: dict[str, int] = field(default_factory=dict)
    solver_detail: str = ""
    explanation: list[str] = field(default_factory=list)
    planned: Evaluation | None = None
    bound_name: str | None = None
    notes: list[str] = field(default_factory=list)
    planned_objective_g: float | None = None  # planned figure + secondary terms; None = the planned figure
    gap_basis: str = "planned emissions a plan can change (location-based)"
    #: The Scope 2 basis the objective priced operational carbon on (location | market).
    carbon_basis: str = "location"

    def __post_init__(self) -> None:
        if self.planned is None:
            self.planned = self.evaluation
        if self.planned_objective_g is None:
            self.planned_objective_g = self.planned_g

    @property
    def objective_g(self) -> float:
        """The evaluated figure the solver minimised, on the actual series: `Evaluation.decision_g`
        on the plan's basis [gCO2e]."""
        return self.evaluation.decision_g(self.carbon_basis)

    @property
    def planned_g(self) -> float:
        """The same figure on the series the plan was made on (the forecast) [gCO2e]."""
        return self.planned.decision_g(self.carbon_basis)

    @property
    def gap(self) -> float | None:
        """Relative gap of the planned objective to the lower bound (0.01 = 1 %); 0 when proven optimal."""
        if self.status == "optimal":
            return 0.0
        if self.lower_bound_g is None or self.planned_objective_g <= 0:
            return None
        return max(0.0, (self.planned_objective_g - self.lower_bound_g) / self.planned_objective_g)

    def summary(self) -> dict[str, object]:
        t = self.evaluation.totals
        out = {
            "solver": self.solver, "status": self.status,
            "emissions_kg": t["emissions_g"] / 1000, "operational_kg": t["operational_emissions_g"] / 1000,
            "embodied_kg": t["embodied_emissions_g"] / 1000, "energy_kwh": t["energy_kwh"],
            "renewable_kwh": t["renewable_kwh"], "mean_active_nodes": t["mean_active_nodes"],
            "violations": len(self.evaluation.violations),
            "operational_market_kg": t["operational_market_emissions_g"] / 1000,
            "objective_kg": self.objective_g / 1000,
            "lower_bound_kg": None if self.lower_bound_g is None else self.lower_bound_g / 1000,
            "bound": self.bound_name,
            "gap_pct": None if self.gap is None else self.gap * 100, "gap_of": self.gap_basis,
            "solve_s": self.solve_seconds,
        }
        if self.planned is not self.evaluation:
            out["planned_objective_kg"] = self.planned_g / 1000
        return out

    def to_dict(self, scenario: Scenario) -> dict:
        doc = self.placement.to_dict(scenario)
        doc["plan"] = {**self.summary(), "model": self.model_stats, "explanation": self.explanation,
                       "detail": self.solver_detail, "notes": self.notes,
                       "accounting": accounting_facts(scenario, self.carbon_basis)}
        return doc


Progress = Callable[[str], None]


def solve(scenario: Scenario, options: SolveOptions | None = None, progress: Progress | None = None,
          start: Placement | None = None) -> Plan:
    """Plan `scenario` with the options' solver: the stages in order, then one choice.

    `start`: a placement to begin from (a rolling re-plan's plan in force, on this horizon);
    the greedy stage keeps what of it still holds (`edgeplace.optimizer.greedy.greedy_place`)."""
    run = stages.Planning.start(scenario, options or SolveOptions(), progress, start)
    found = stages.greedy(run)                              # construction, local search, repair
    if run.options.bound:
        found += stages.bound(run, found)                   # flow, knapsack, LP and Lagrangian where it solves
    if run.options.solver != "greedy":
        if run.long_horizon:
            found += stages.decompose(run, found)           # windows of a few days, exactly, in turn
        elif run.full_model_size <= run.options.restrict_above_variables:
            found += stages.exact(run, found)               # CP-SAT or HiGHS on the whole model
            found += stages.search(run, found)              # neighbourhood search until the deadline
        else:
            found += stages.consolidate(run, found)         # switch off the nodes that waste most, exactly
            found += stages.restricted(run, found)          # the exact solver on the pairs the bound prices cheapest
            found += stages.search(run, found)
    return choose(scenario, run, found)


def choose(scenario: Scenario, run: "stages.Planning", found: Found) -> Plan:
    """The best candidate (fewest violations, then the lowest planned objective), its
    evaluation on the actual series, its status and its gap to the best bound."""
    best = found.best
    status = "optimal" if found.proven_optimal else "feasible"
    if not best.feasible:
        status = "infeasible"  # whatever a solver proved in its model, a plan that breaks a rule is infeasible
    bound = found.best_bound if run.options.bound else None
    evaluation = best.planned if scenario.forecast_is_actual else evaluate(scenario, best.placement)
    plan = Plan(best.placement, evaluation, best.producer, status,
                None if bound is None else max(0.0, bound.value_g), time.perf_counter() - run.started,
                found.stats, "; ".join(found.details), planned=best.planned,
                bound_name=None if bound is None else bound.name, notes=list(found.notes),
                planned_objective_g=best.objective_g, gap_basis=run.objective_terms,
                carbon_basis=run.costs.objective.carbon_basis)
    if not best.feasible:
        plan.explanation = explain_unplaced(run.costs, best.placement, best.planned)
    return plan
