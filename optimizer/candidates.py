"""What planning stages hand on: candidate plans, lower bounds, and what guides the next stage.

Every stage of `edgeplace.optimizer.solve` returns a `Found`: the plans it
made (`Candidate`, each priced on the series the plan is made on, i.e. the
forecast), the lower bounds it proved (`Bound`), and what it learnt that
later stages can use (`Found.guide`: which nodes the bound's relaxation
keeps on). `Found + Found` concatenates, keeping the best
candidate and the proven optimal ones (nothing else can be chosen); the
chooser at the end of `solve` reads the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeplace.policies.evaluate import Evaluation
from edgeplace.topology.placement import Placement


@dataclass(frozen=True, eq=False)
class Candidate:
    """A plan one stage found.

    `planned` is `edgeplace.policies.evaluate` of the placement on the
    series the plan is made on (the forecast; the same as the actual ones
    when the scenario has no forecast), `objective_g` the emissions it can
    change (`Evaluation.decision_g` on the objective's basis) plus the
    objective's secondary terms (energy and latency weights, migration
    penalty) [gCO2e]: what every choice between plans compares. `optimal`:
    the producer proved it optimal in the modelled space and the model
    prices it exactly (its objective equals `objective_g`).
    """

    placement: Placement
    planned: Evaluation
    objective_g: float
    producer: str
    optimal: bool = False
    detail: str = ""

    @property
    def violations(self) -> int:
        return len(self.planned.violations)

    @property
    def feasible(self) -> bool:
        return not self.planned.violations

    def rank(self) -> tuple[int, float]:
        """Fewer violations first, then the lower objective."""
        return (self.violations, self.objective_g)

    def beats(self, other: "Candidate", tol_g: float = 1e-6) -> bool:
        """Strictly better: fewer violations, or as many and an objective lower by more than `tol_g`."""
        return (self.violations, self.objective_g + tol_g) < (other.violations, other.objective_g)


#: Prices a placement as a candidate of the given producer (the planning run's `Planning.candidate`).
Pricer = Callable[[Placement, str], Candidate]


@dataclass(frozen=True)
class Bound:
    """A lower bound [gCO2e] on the planned objective of every plan in the
    modelled space, and which relaxation proved it (`name`: knapsack,
    lagrangian, lp, flow, cpsat, highs)."""

    value_g: float
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Guide:
    """What the bound's relaxation says of an optimal plan, for the stages after it:
    `open_share` (N, 0..1) how much of each node's open carbon it pays (1: on all horizon,
    always-on nodes included). A node the relaxation leaves (nearly) off but a plan keeps on is
    where the plan likely wastes open carbon."""

    open_share: np.ndarray


@dataclass
class Found:
    """What stages found so far (see the module docstring).

    `guide`: what the bound's relaxation says of an optimal plan (`Guide`);
    the node-closing steps use it. `notes`: one line per thing a reader of
    the plan should know (a fallback, a scaled objective). `details`: one
    line per stage.
    """

    candidates: list[Candidate] = field(default_factory=list)
    bounds: list[Bound] = field(default_factory=list)
    guide: Guide | None = None
    stats: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    #: An exact solver finished on the whole model: searching further cannot beat its optimum there.
    model_solved: bool = False

    def __post_init__(self) -> None:
        # Only the best plan and the proven optimal ones can be chosen or prove anything: the others
        # are dropped, and with them their placements (R x T: 84 MiB for a year of 5,000 jobs).
        if len(self.candidates) > 1:
            best = self.best
            self.candidates = [c for c in self.candidates if c is best or c.optimal]

    def __add__(self, other: "Found") -> "Found":
        return Found(self.candidates + other.candidates, self.bounds + other.bounds,
                     other.guide if other.guide is not None else self.guide, {**self.stats, **other.stats},
                     self.notes + other.notes, self.details + other.details, self.model_solved or other.model_solved)

    @property
    def best(self) -> Candidate:
        """The best candidate so far; in a tie a proven optimal one, else the earliest."""
        best = self.candidates[0]
        for c in self.candidates[1:]:
            if c.beats(best) or (c.optimal and not best.optimal and not best.beats(c)):
                best = c
        return best

    @property
    def best_bound(self) -> Bound | None:
        return max(self.bounds, key=lambda b: b.value_g, default=None)

    @property
    def proven_optimal(self) -> bool:
        """A candidate is proven optimal and the best one is no worse than it."""
        best = self.best
        return any(c.optimal and not c.beats(best) and best.violations == 0 for c in self.candidates)
