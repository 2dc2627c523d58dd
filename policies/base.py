"""The interface every placement policy implements: baselines and solvers alike.

A policy turns a scenario into a placement. It is called once per planning
run with a validated `Scenario`; it must return a `Placement` whose `assign`
has shape (replicas x slots) and may leave replicas unplaced (-1) only when
it cannot place them (evaluation then reports a schedule violation). It must
not mutate the scenario. Its figures are never its own: callers evaluate the
placement with `edgeplace.policies.evaluate.evaluate`.
"""

from __future__ import annotations

from typing import Callable, Protocol

from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario


class PlacementPolicy(Protocol):
    #: Short name used on the command line (`--policy spread`).
    name: str
    #: One line for `--help` and reports.
    description: str

    def place(self, scenario: Scenario) -> Placement:
        """Place every replica of `scenario`; see the module docstring for the contract."""
        ...


PolicyFactory = Callable[[], PlacementPolicy]
