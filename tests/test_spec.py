"""edgeplace.topology.spec: the field-level rules of the scenario format and its JSON Schema."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import ValidationError

from tests.builders import tiny
from edgeplace.topology.spec import (
    DEFAULT_EMBODIED_KG,
    DEFAULT_LIFETIME_YEARS,
    DEFAULT_PUE,
    SCENARIO_VERSION,
    Capacity,
    Node,
    PowerModel,
    Requests,
    ScenarioSpec,
    Site,
    Tier,
    schema_dict,
)


def test_defaults_come_from_the_reference_figures():
    site = Site(id="a", tier="access", region="DE")
    assert site.pue == DEFAULT_PUE == 1.6
    assert (site.embodied.per_node_kg, site.embodied.lifetime_years) == (DEFAULT_EMBODIED_KG, DEFAULT_LIFETIME_YEARS)
    assert (DEFAULT_EMBODIED_KG, DEFAULT_LIFETIME_YEARS) == (3700.0, 4.0)
    assert site.pv_kwp == 0 and site.battery_kwh == 0


def test_tiers_nearest_the_user_first():
    assert [t.value for t in Tier] == ["device", "on-prem", "access", "aggregation", "metro", "regional", "cloud"]


def test_linear_power_model_curve():
    # idle 100, max 200 -> 100, 110, ..., 200
    assert PowerModel(idle_w=100, max_w=200).curve_w() == pytest.approx([100 + 10 * i for i in range(11)])


def test_points_power_model_curve():
    pts = [50, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260]
    assert PowerModel(points_w=pts).curve_w() == pts


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"idle_w": 100, "max_w": 200, "points_w": [1] * 11}, "either idle_w and max_w, or points_w, not both"),
        ({}, "give both idle_w and max_w"),
        ({"idle_w": 100}, "give both idle_w and max_w"),
        ({"points_w": [1] * 10}, "points_w needs 11 values"),
        ({"points_w": [5, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}, "non-decreasing"),
        ({"points_w": [-1] * 11}, "non-decreasing"),
        ({"idle_w": 300, "max_w": 200}, r"max_w \(200.0\) must be >= idle_w \(300.0\)"),
        ({"idle_w": -1, "max_w": 200}, "greater than or equal to 0"),
        ({"idle_w": 0, "max_w": 0}, "greater than 0"),
    ],
)
def test_power_model_rejects(fields, match):
    with pytest.raises(ValidationError, match=match):
        PowerModel(**fields)


def test_capacity_extra_resources_are_whole_counts():
    cap = Capacity(cpu_millicores=4000, memory_mib=8192, gpu=2, **{"nvidia.com/gpu": 1})
    assert cap.as_dict() == {"cpu_millicores": 4000, "memory_mib": 8192, "gpu": 2, "nvidia.com/gpu": 1}
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValidationError, match="resource 'gpu' must be a whole number >= 0"):
            Capacity(cpu_millicores=1, memory_mib=1, gpu=bad)


@pytest.mark.parametrize("field", ["cpu_millicores", "memory_mib"])
@pytest.mark.parametrize("value", [0, -5])
def test_capacity_must_be_positive(field, value):
    fields = {"cpu_millicores": 1, "memory_mib": 1, field: value}
    with pytest.raises(ValidationError, match="greater than 0"):
        Capacity(**fields)


def test_requests_may_be_zero_but_not_negative():
    assert Requests(cpu_millicores=0, memory_mib=0).as_dict() == {"cpu_millicores": 0, "memory_mib": 0}
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Requests(cpu_millicores=-1, memory_mib=0)
    with pytest.raises(ValidationError, match="resource 'gpu' must be a whole number"):
        Requests(cpu_millicores=0, memory_mib=0, gpu=-1)


def test_unknown_fields_are_errors():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Node(id="n", site="a", capacity={"cpu_millicores": 1, "memory_mib": 1},
             power={"idle_w": 1, "max_w": 2}, can_powr_down=False)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_rejected(value):
    # inf passes a bare `ge=0`; an infinite battery, PV or power would poison every sum.
    with pytest.raises(ValidationError, match="finite number|greater than"):
        Site(id="a", tier="access", region="DE", battery_kwh=value)
    with pytest.raises(ValidationError, match="finite number|greater than|less than"):
        PowerModel(points_w=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, value])


def test_spec_objects_are_frozen():
    site = Site(id="a", tier="access", region="DE")
    with pytest.raises(ValidationError, match="frozen"):
        site.pue = 2.0


def test_schema_is_a_valid_json_schema_and_accepts_a_scenario():
    schema = schema_dict()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"scenario-v{SCENARIO_VERSION}.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = tiny().build_dict()
    jsonschema.Draft202012Validator(schema).validate(doc)
    doc["nodes"][0]["cpu"] = 1  # a typo is a schema error too
    with pytest.raises(jsonschema.ValidationError, match="Additional properties are not allowed"):
        jsonschema.Draft202012Validator(schema).validate(doc)


def test_scenario_spec_round_trips_through_its_own_dump():
    spec = ScenarioSpec.model_validate(tiny().build_dict())
    again = ScenarioSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec
