"""The solvers behind the `PlacementPolicy` interface, so commands compare
them with the baselines through one path."""

from __future__ import annotations

from edgeplace.optimizer.solve import SolveOptions, solve
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario

_DESCRIPTIONS = {
    "greedy": "carbon-aware greedy: construction well under a second, then local search up to its time limit",
    "cpsat": "CP-SAT on the placement model, warm-started from greedy (default 30 s)",
    "milp": "the same model as a MILP solved by HiGHS (default 30 s)",
}


class SolverPolicy:
    def __init__(self, solver: str, options: SolveOptions | None = None):
        self.name = solver
        self.description = _DESCRIPTIONS[solver]
        self.options = options or SolveOptions(solver=solver, time_limit_s=10.0, bound_time_limit_s=0.0)

    def place(self, scenario: Scenario) -> Placement:
        return solve(scenario, self.options).placement
