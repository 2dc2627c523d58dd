"""Dumping the built model for debugging (`edgeplace plan --dump-model FILE`)."""

from __future__ import annotations

from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.highs_backend import highs_from_model
from edgeplace.policies.costs import price
from edgeplace.topology.scenario import Scenario


def write_mps(scenario: Scenario, options, path: str) -> None:
    """Write the placement MILP of `scenario` as an MPS (or .lp) file for any MILP solver."""
    highs_from_model(build(price(scenario, options.objective)).model).writeModel(str(path))
