"""What a back-end returns: values, the solver's own status and bound."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class SolveStatus(str, Enum):
    optimal = "optimal"  # proven optimal (within the solver's tolerance)
    feasible = "feasible"  # a solution, not proven optimal (e.g. stopped by the time limit)
    infeasible = "infeasible"  # proven: no solution exists in the modelled space
    unknown = "unknown"  # no solution found and nothing proven (time limit, error)


@dataclass
class SolveResult:
    status: SolveStatus
    values: np.ndarray | None  # one value per model variable, None when no solution
    objective: float | None  # the model objective of `values` (model units, gCO2e)
    bound: float | None  # a proven lower bound on the model objective, if the solver has one
    seconds: float
    detail: str = ""  # the solver's own words for its status
