"""The stages of planning, each a function of the planning run and what came before.

`edgeplace.optimizer.solve.solve` calls them in order; each takes the
`Planning` run (the priced model, the options, the clock) and the `Found`
so far, and returns what it found: candidate plans priced on the series the
plan is made on, lower bounds, a guide for the next stage. None of them
sees the actual series: `Planning.scenario` is the forecast view of the
scenario (`Scenario.as_forecast`), so every choice inside planning (greedy
or exact, which search step to keep, which repair) is made on what a
planner could know.

===============  ===============================================================
stage            what it does
===============  ===============================================================
``greedy``       construction and local search (`edgeplace.optimizer.greedy`); a
                 plan that still breaks a rule is repaired by a small exact solve
                 around its violations (`edgeplace.optimizer.lns.repair`)
``bound``        lower bounds: the flow bound (milliseconds), the knapsack bound
                 (`edgeplace.optimizer.knapsack`, one closed-form knapsack per node,
                 usable at scale), and where the full model is small enough the LP
                 relaxation and the Lagrangian bound at its duals
                 (`edgeplace.optimizer.lagrangian`)
``exact``        CP-SAT or HiGHS on the whole model, hinted with the best plan so
                 far; CP-SAT's own bound joins the bounds
``consolidate``  for models too large to build whole, first: node-closing search for
                 three quarters of the time left, a node that wastes open carbon
                 (by its fill, or beyond what the bound's relaxation opens of it:
                 `Found.guide`) or sits on a dirty grid, and a few open nodes that
                 can take its workloads, re-packed exactly
                 (`edgeplace.optimizer.lns.consolidate`)
``restricted``   for models too large to build whole: the exact solver on the
                 pairs the bound prices cheapest plus the best plan's
``search``       large-neighbourhood search until the deadline: groups of nodes
                 re-solved exactly (`edgeplace.optimizer.lns`)
``decompose``    a horizon too long for one model (more than LONG_HORIZON_SLOTS):
                 windows of a few days solved exactly in turn, the windows around
                 the plan's violations first (`edgeplace.optimizer.windows`)
===============  ===============================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from edgeplace.optimizer import lns
from edgeplace.optimizer.bound import flow_bound_g
from edgeplace.optimizer.candidates import Bound, Candidate, Found, Guide
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.knapsack import knapsack_bound_g
from edgeplace.optimizer.lagrangian import NodeSplit, lp_duals, solve_lp
from edgeplace.optimizer.pairs import placement_pairs, restricted_pairs
from edgeplace.optimizer.readback import hint_from_placement, placement_from_values
from edgeplace.optimizer.result import SolveResult, SolveStatus
from edgeplace.optimizer.windows import LONG_HORIZON_SLOTS, merge_into, slot_window
from edgeplace.policies.costs import CostModel, Objective, price
from edgeplace.policies.evaluate import Evaluation, evaluate
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

if TYPE_CHECKING:
    from edgeplace.optimizer.solve import SolveOptions

Progress = Callable[[str], None]

#: Above this many variables the full model is not built for its LP bound: at 1,000 x 100 x 1
#: (78,000) HiGHS solves the LP in about 25 s, at 1,000 x 100 x 24 (250,000) not in a minute.
FULL_LP_MAX_VARIABLES = 150_000
#: A plan that evaluates at most this much (relative) above the model's objective of it is priced
#: alike by both: a proof of optimality in the model is a proof for the plan.
SAME_PRICE_REL = 1e-6


@dataclass
class Planning:
    """One planning run: the forecast view of the scenario, its prices, the options and the clock."""

    scenario: Scenario  # the forecast view: what the plan is made on
    costs: CostModel  # priced with the options' objective
    options: "SolveOptions"
    started: float
    deadline: float
    say: Progress
    warm: Placement | None = None  # where to start from (a rolling re-plan's plan in force)

    @classmethod
    def start(cls, scenario: Scenario, options: "SolveOptions", progress: Progress | None,
              warm: Placement | None = None) -> "Planning":
        started = time.perf_counter()
        planned = scenario.as_forecast()
        return cls(planned, price(planned, options.objective), options, started, started + options.time_limit_s,
                   progress or (lambda _msg: None), warm)

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def candidate(self, placement: Placement, producer: str, *, optimal: bool = False, detail: str = "") -> Candidate:
        """`placement` priced on the forecast view: its evaluation and objective."""
        planned = evaluate(self.scenario, placement)
        return Candidate(placement, planned, planned.decision_g(self.basis) + secondary_g(self.costs, placement, planned),
                         producer, optimal, detail)

    @property
    def basis(self) -> str:
        """The Scope 2 basis the objective prices operational carbon on."""
        return self.costs.objective.carbon_basis

    @property
    def objective_terms(self) -> str:
        """What the objective adds up, in words (what a gap is of)."""
        obj = self.options.objective
        terms = [name for name, weight in (("energy", obj.energy_weight_g_per_kwh),
                                           ("latency", obj.latency_weight_g_per_ms),
                                           ("migration penalty", obj.migration_g_per_replica)) if weight]
        return f"planned emissions a plan can change ({self.basis}-based)" + (" + " + " + ".join(terms) if terms else "")

    @property
    def carbon_costs(self) -> CostModel:
        """The prices of the pure-carbon objective on the same basis. A bound on the planned
        carbon bounds the objective too: the secondary terms are never negative."""
        if self.costs.objective.carbon_only:
            return self.costs
        return price(self.scenario, Objective(carbon_basis=self.basis))

    @property
    def full_model_size(self) -> int:
        return model_size(self.costs)

    @property
    def long_horizon(self) -> bool:
        """Too many slots for one model: planned by windows (`decompose`)."""
        return self.scenario.n_slots > LONG_HORIZON_SLOTS


def secondary_g(costs: CostModel, placement: Placement, evaluation: Evaluation) -> float:
    """The objective's secondary terms for a placement [g], as `edgeplace.optimizer.formulation` prices them:
    energy weight x facility energy, latency weight x worst user latency per placed replica, and
    the migration penalty per service replica not on one of its current nodes."""
    obj, sc = costs.objective, costs.scenario
    if obj.carbon_only:
        return 0.0
    _slot, first = placement.first_nodes()  # each replica's node (where it runs first)
    placed = first >= 0
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


def model_size(costs: CostModel) -> int:
    """Decision variables of the placement model: eligible service-node pairs plus job node-start
    triples (interruptible jobs: node-slot presence)."""
    return int((costs.eligible.sum(axis=1) * starts_per_workload(costs)).sum())


def starts_per_workload(costs: CostModel) -> np.ndarray:
    """W: model columns per eligible node: 1 for a service, a job's possible starts, an
    interruptible job's window slots."""
    sc = costs.scenario
    windows = sc.workload_latest_start_slot - sc.workload_earliest_slot + 1
    spans = sc.workload_window_end - sc.workload_earliest_slot + 1
    return np.where(sc.workload_interruptible, spans, np.where(sc.workload_deferrable, windows, 1))


# ---------------------------------------------------------------------------
# greedy


def greedy(run: Planning) -> Found:
    """The greedy plan (construction + local search), repaired around its violations when it has any."""
    run.say("greedy warm start")
    opts = run.options
    plan = run.candidate(greedy_place(run.costs, time_limit_s=greedy_search_s(opts), seed=opts.seed,
                                      start=run.warm), "greedy")
    if plan.feasible:
        return Found([plan])
    run.say("repairing the greedy plan around its violations")
    if run.long_horizon:
        return Found([plan]) + _windows(run, plan, violations_only=True, producer="greedy+repair")
    repaired = lns.repair(run.costs, plan, price=run.candidate, solve_step=highs_step(opts))
    return Found([plan] if repaired is plan else [plan, repaired])


#: The greedy solver's local search stops after this long [s] (or at its local optimum).
GREEDY_SEARCH_S = 1.0
#: Before an exact solver, the local search may take this share of the time limit: at
#: 1,000 x 100 x 24 it reaches its local optimum in about 6 s (32.25 kg after 1 s, 31.78 after 6 s),
#: a better start for the node-closing steps (31.09 kg after 45 s of them, against 31.36 from 1 s).
GREEDY_SEARCH_SHARE = 0.1


def greedy_search_s(options: "SolveOptions") -> float:
    """How long the greedy stage's local search may run [s]: GREEDY_SEARCH_S for the greedy solver,
    GREEDY_SEARCH_SHARE of the time limit (at least GREEDY_SEARCH_S) before an exact solver."""
    if options.solver == "greedy":
        return min(GREEDY_SEARCH_S, options.time_limit_s)
    return min(max(GREEDY_SEARCH_S, GREEDY_SEARCH_SHARE * options.time_limit_s), options.time_limit_s)


def highs_step(options: "SolveOptions"):
    """The exact solver of neighbourhood steps and repairs: small MILPs with a good incumbent,
    which HiGHS's branch and bound closes better than CP-SAT (1,000 x 100 x 1, 15 s of steps:
    7.24 -> 7.06 kg with HiGHS, 7.32 -> 7.24 with CP-SAT)."""
    def step(model, hint, limit_s):
        return solve_highs(model, time_limit_s=limit_s, threads=options.workers, hint=hint)
    return step


# ---------------------------------------------------------------------------
# bound


def bound(run: Planning, found: Found) -> Found:
    """Lower bounds on planned emissions, within the bound's time: the flow bound always; the
    knapsack bound (`_knapsack_bound`), for a third of the time where the LP follows and all of
    it where the full model is too large for the LP; and where the full model is small enough,
    its LP relaxation and the Lagrangian bound at its duals (`_lp_bounds`)."""
    costs = run.carbon_costs
    out = Found()
    prices = np.zeros(costs.scenario.n_workloads)
    flow = flow_bound_g(costs, prices=prices)
    if flow is not None:
        out.bounds.append(Bound(flow, "flow"))
    budget = run.options.bound_budget_s
    if budget <= 0 or run.long_horizon:
        return out
    deadline = time.perf_counter() + budget
    full_lp = model_size(costs) <= FULL_LP_MAX_VARIABLES
    if flow is not None:
        out += _knapsack_bound(run, costs, prices, flow, found, time.perf_counter() + (budget / 3 if full_lp else budget))
    if not full_lp or deadline - time.perf_counter() < 0.5:
        return out
    return out + _lp_bounds(run, costs, deadline)


def _knapsack_bound(run: Planning, costs: CostModel, prices: np.ndarray, flow_g: float, found: Found,
                    deadline: float) -> Found:
    """The knapsack Lagrangian bound (`edgeplace.optimizer.knapsack`: per-node knapsacks with
    binary on/off, multipliers from the flow's `prices` or the services' LP, then subgradient
    steps toward the best plan's planned carbon) until `deadline`, and as the guide of the
    stages after it the nodes the services' LP opens."""
    run.say("knapsack Lagrangian bound")
    knapsack = knapsack_bound_g(costs, prices, found.best.planned.decision_g(run.basis), deadline, run.options.workers)
    if knapsack is None:
        return Found()
    detail = (f"knapsack bound {knapsack.value_g / 1000:.4f} kg (flow {flow_g / 1000:.4f} kg), "
              f"{knapsack.iterations} steps in {knapsack.seconds:.3g} s")
    guide = None if knapsack.lp_open_share is None else Guide(knapsack.lp_open_share)
    return Found(bounds=[Bound(knapsack.value_g, "knapsack", detail)], details=[detail], guide=guide)


def _lp_bounds(run: Planning, costs: CostModel, deadline: float) -> Found:
    """The full model's LP relaxation and then the Lagrangian bound of its node split at the
    LP's duals with each node's problem solved with integrality (`edgeplace.optimizer.lagrangian`:
    at least the LP), until `deadline`."""
    out = Found()
    run.say("LP relaxation for the lower bound")
    split = NodeSplit(costs)
    left = deadline - time.perf_counter()
    status, lp_g, duals, _values = solve_lp(split.form.model, left, run.options.workers)
    if status is not SolveStatus.optimal:
        out.details.append(f"LP relaxation: not solved within {left:.3g} s")
        return out
    out.bounds.append(Bound(lp_g, "lp"))
    if deadline - time.perf_counter() > 0.5:
        run.say("Lagrangian bound: the LP's duals, one integer problem per node")
        y = split.multipliers(lp_duals(split.form.model, duals))
        value, integer_nodes, _ = split.bound(y, integer=True, deadline=deadline)
        out.bounds.append(Bound(value, "lagrangian", f"{len(split.node_columns)} node problems, "
                                                     f"{integer_nodes} with integrality"))
    return out


# ---------------------------------------------------------------------------
# exact


def exact(run: Planning, found: Found) -> Found:
    """The exact solver on the whole model, hinted with the best plan so far."""
    opts = run.options
    run.say("building the model")
    form = build(run.costs)
    stats = form.model.stats()
    run.say(f"model: {stats['variables']:,} variables ({stats['integer_variables']:,} integer), {stats['rows']:,} rows")
    hint = hint_from_placement(form, run.costs, found.best.placement)
    result, name, note = run_exact(form.model, hint, opts, max(run.left_s(), 0.5), run.say)
    out = Found(stats=stats, notes=[note] if note else [])
    if result.bound is not None and np.isfinite(result.bound):
        out.bounds.append(Bound(max(0.0, float(result.bound)), "cpsat" if name == "cpsat" else opts.milp_backend))
    out.model_solved = result.status in (SolveStatus.optimal, SolveStatus.infeasible)
    if result.values is None:
        out.details.append(f"{name}: {result.status.value} ({result.detail}), no plan")
        return out
    placement = placement_from_values(form, run.costs, result.values)
    plan = run.candidate(placement, name, detail=f"{name}: {result.status.value} ({result.detail})")
    if result.status is SolveStatus.optimal and _prices_alike(result, plan.objective_g):
        plan = replace(plan, optimal=True)
    out.candidates.append(plan)
    out.details.append(plan.detail + ("" if plan.beats(found.best) else "; no better than the plan so far"))
    return out


def _prices_alike(result: SolveResult, planned_g: float) -> bool:
    """The plan evaluates no higher than the model prices it, up to the solver's own optimality
    tolerance (its objective minus its bound: CP-SAT's grid allowance, HiGHS's relative gap): a
    proof of optimality in the model is then a proof for the plan. (The model under-prices plans
    on concave power curves or with a battery, where it is a relaxation; such a plan is not
    proven optimal.)"""
    if result.objective is None:
        return False
    tolerance = max(result.objective - (result.bound if result.bound is not None else result.objective), 0.0)
    return planned_g <= result.objective + tolerance + SAME_PRICE_REL * max(abs(result.objective), 1.0)


def run_exact(model, hint: dict[int, float], options: "SolveOptions", time_limit_s: float,
              say: Progress) -> tuple[SolveResult, str, str]:
    """Solve with the options' exact solver: (result, which solver, a one-line note or "").

    CP-SAT works on integers; where the model's magnitudes cannot be made to fit its
    integer range (`CpsatRangeError`), HiGHS solves the same model and the note says so."""
    say(f"solving with {options.solver} (time limit {time_limit_s:.3g} s, {options.workers} worker(s))")
    if options.solver == "cpsat":
        from edgeplace.optimizer.cpsat_backend import CpsatRangeError, solve_cpsat

        try:
            return (solve_cpsat(model, time_limit_s=time_limit_s, workers=options.workers, hint=hint,
                                seed=options.seed), "cpsat", "")
        except CpsatRangeError as exc:
            say("CP-SAT cannot represent the model; solving with HiGHS")
            note = f"CP-SAT cannot represent this model ({exc}); solved with HiGHS instead"
            return solve_highs(model, time_limit_s=time_limit_s, threads=options.workers, hint=hint), "milp", note
    if options.milp_backend == "highs":
        return solve_highs(model, time_limit_s=time_limit_s, threads=options.workers, hint=hint), "milp", ""
    from edgeplace.optimizer.pulp_backend import solve_pulp

    result = solve_pulp(model, solver=options.milp_backend.removeprefix("pulp-"), time_limit_s=time_limit_s,
                        threads=options.workers)
    return result, "milp", ""


# ---------------------------------------------------------------------------
# restricted


def restricted(run: Planning, found: Found) -> Found:
    """A model too large to build whole: the exact solver on the pairs a relaxation points at
    (the flow relaxation's support, or the Lagrangian's cheapest pairs) plus the best plan's
    (`restricted_pairs`), warm-started from the best plan, for half the time left. Its own
    status and bound hold for the restricted model only and are not used."""
    opts, costs = run.options, run.costs
    best = found.best
    support = np.zeros(costs.eligible.shape, dtype=bool)
    flow_bound_g(costs, support)
    pool = restricted_pairs(costs, [support, placement_pairs(costs, best.placement)])
    stats = {"full_model_variables": run.full_model_size}
    pool_size = int((pool.sum(axis=1) * starts_per_workload(costs)).sum())
    if pool_size > opts.max_model_variables:
        return Found(stats=stats, details=[f"{opts.solver}: not run, the restricted model would have about "
                                           f"{pool_size:,} variables (max_model_variables {opts.max_model_variables:,})"])
    form = build(costs, columns=pool)
    stats.update(form.model.stats())
    run.say(f"the full model would have about {run.full_model_size:,} variables: restricted to {int(pool.sum()):,} "
            f"workload-node pairs ({stats['variables']:,} variables)")
    result, name, note = run_exact(form.model, hint_from_placement(form, costs, best.placement), opts,
                                   max(run.left_s() / 2, 1.0), run.say)
    out = Found(stats=stats, notes=[note] if note else [])
    detail = f"{name} restricted to {int(pool.sum()):,} pairs: {result.status.value} ({result.detail})"
    out.details.append(detail)
    if result.values is not None:
        out.candidates.append(run.candidate(placement_from_values(form, costs, result.values), f"{name} (restricted)",
                                            detail=detail))
    return out


# ---------------------------------------------------------------------------
# decompose


#: A window spans at least this many slots, and at least twice the longest job window.
MIN_WINDOW_SLOTS = 96
#: Time limit of one window's exact solve [s].
WINDOW_TIME_LIMIT_S = 3.0


def decompose(run: Planning, found: Found) -> Found:
    """A long horizon: windows of slots re-solved exactly in turn from the best plan, the windows
    around its violations first, until the deadline (`_windows`)."""
    return _windows(run, found.best, violations_only=False, producer=f"{found.best.producer} + windows")


def _windows(run: Planning, incumbent: Candidate, *, violations_only: bool, producer: str) -> Found:
    """Windows of `window_slots` slots, overlapping by half: first those around the jobs the plan
    breaks rules of, then (unless `violations_only`) a sweep over the horizon. Each window's model
    (`edgeplace.optimizer.windows.slot_window`: free jobs inside, the rest fixed) is solved by
    HiGHS from the plan; its plan is kept when it is better on the window's slots, priced on the
    forecast; the whole plan is priced again at the end, and is the stage's candidate when it
    beats the incumbent. Placements are stored by replica span, so each kept window is a new
    placement of the size of the plan's running replica-slots, and the incumbent stays as it was."""
    sc, opts = run.scenario, run.options
    width = window_slots(sc)
    step_slots = width // 2
    order = [(max(0, c - step_slots), min(sc.n_slots, max(0, c - step_slots) + width))
             for c in _violation_slots(sc, incumbent)]
    if not violations_only:
        order += [(a, min(a + width, sc.n_slots)) for a in range(0, max(sc.n_slots - step_slots, 1), step_slots)]
    placement = incumbent.placement
    tried, kept = 0, 0
    for first, end in order:
        limit = min(WINDOW_TIME_LIMIT_S, run.left_s() - 0.5)
        if limit <= 0.2 and tried:
            break
        window = slot_window(sc, placement, first, end)
        if window is None:
            continue
        tried += 1
        sub_costs = price(window.scenario, opts.objective)
        form = build(sub_costs, columns=window.columns)
        result = solve_highs(form.model, time_limit_s=max(limit, 0.2), threads=opts.workers,
                             hint=hint_from_placement(form, sub_costs, window.start))
        if result.values is None:
            continue
        sub = placement_from_values(form, sub_costs, result.values)
        before, after = evaluate(window.scenario, window.start), evaluate(window.scenario, sub)
        basis = run.basis
        if (len(after.violations), after.decision_g(basis)) < (len(before.violations), before.decision_g(basis) - 1e-6):
            placement = merge_into(sc, placement, window, sub)
            kept += 1
    out = Found(stats={"windows_tried": tried, "windows_kept": kept},
                details=[f"windows of {width} slots: kept {kept} of {tried} re-solved"])
    if kept:
        plan = run.candidate(placement, producer)
        if plan.beats(incumbent):
            out.candidates.append(plan)
    return out


def window_slots(sc: Scenario) -> int:
    """The width of a decomposition window: at least MIN_WINDOW_SLOTS and twice the longest job window."""
    windows = sc.workload_window_end - sc.workload_earliest_slot
    longest = int(windows[sc.workload_deferrable].max(initial=1))
    return min(max(MIN_WINDOW_SLOTS, 2 * longest), sc.n_slots)


def _violation_slots(sc: Scenario, candidate: Candidate) -> list[int]:
    """Centre slots of the windows that cover the jobs named in the candidate's violations."""
    index = {wid: i for i, wid in enumerate(sc.workload_ids)}
    slots = []
    for v in candidate.planned.violations:
        w = index.get(v.subject)
        if w is not None and sc.workload_deferrable[w]:
            slots.append(int((sc.workload_earliest_slot[w] + sc.workload_window_end[w]) // 2))
        elif v.slots:
            slots.append(int(v.slots[0]))
    return sorted(set(slots))


# ---------------------------------------------------------------------------
# consolidate

#: The share of the time left that node-closing steps get before the restricted solve and the search.
CONSOLIDATE_SHARE = 0.75


def consolidate(run: Planning, found: Found) -> Found:
    """Node-closing and exchange steps from the best plan for CONSOLIDATE_SHARE of the time left
    (`edgeplace.optimizer.lns.consolidate`). At 1,000 x 100 x 24 most of greedy's excess over
    the bound is open carbon of nodes kept on for a few services all day; one step that moves
    an edge node's seven services onto an always-on node of the same site saves 1.5 %."""
    if found.proven_optimal or run.left_s() < 1.0:
        return Found()
    deadline = time.perf_counter() + CONSOLIDATE_SHARE * run.left_s()
    return _neighbourhood_steps(run, found, lns.consolidate, deadline, "node-closing search", "closing",
                                "closing")


# ---------------------------------------------------------------------------
# search


def search(run: Planning, found: Found) -> Found:
    """Large-neighbourhood search from the best plan until the deadline (`edgeplace.optimizer.lns`)."""
    if found.proven_optimal or found.model_solved or run.left_s() < 1.0:
        return Found()
    return _neighbourhood_steps(run, found, lns.improve, run.deadline, "neighbourhood search", "search", "lns")


def _neighbourhood_steps(run: Planning, found: Found, steps, deadline: float, what: str, label: str,
                         stat: str) -> Found:
    """`steps` (`lns.improve` or `lns.consolidate`) from the best plan until `deadline`; its plan
    (labelled "<producer> + `label`") when a step was kept, and `<stat>_steps`, `<stat>_improvements`."""
    best = found.best
    run.say(f"{what} from {best.objective_g / 1000:.4f} kg")
    improved, tried, kept = steps(run.costs, best, deadline=deadline, price=run.candidate,
                                  solve_step=highs_step(run.options), seed=run.options.seed,
                                  max_steps=run.options.search_steps,
                                  guide=found.guide)
    out = Found(stats={f"{stat}_steps": tried, f"{stat}_improvements": kept},
                details=[f"{what} kept {kept} of {tried} steps"])
    if kept:
        out.candidates.append(replace(improved, producer=f"{best.producer} + {label}"))
    return out
