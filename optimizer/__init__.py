"""Turning a scenario plus a policy into a Plan: the MILP formulation, CP-SAT
(main), HiGHS/PuLP (cross-check), a greedy heuristic (warm start and
fallback), and the LP relaxation as a lower bound. Imports topology and
policies only."""

from __future__ import annotations

from edgeplace.policies.base import PolicyFactory


def solver_registry() -> dict[str, PolicyFactory]:
    """The solvers as placement policies (default options), by name."""
    from edgeplace.optimizer.policy import SolverPolicy

    def factory(name: str) -> PolicyFactory:
        return lambda: SolverPolicy(name)

    return {name: factory(name) for name in ("greedy", "cpsat", "milp")}
