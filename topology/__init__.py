"""The world model: a cloud-edge scenario, validated, as arrays with units.

Entry points: `load_scenario(path)` -> `Scenario`; `Placement` for decisions;
`InputError` for every problem with an input. Knows nothing of policies,
solvers or Kubernetes.
"""

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import load_scenario, scenario_from_dict
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.spec import SCENARIO_VERSION, ScenarioSpec, schema_dict

__all__ = [
    "SCENARIO_VERSION",
    "InputError",
    "Placement",
    "Problem",
    "Scenario",
    "ScenarioSpec",
    "load_scenario",
    "scenario_from_dict",
    "schema_dict",
]
