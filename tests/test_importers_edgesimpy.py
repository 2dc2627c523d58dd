"""Tests of edgeplace.topology.importers.edgesimpy on EdgeSimPy's own sample dataset.

The sample (GPL-3.0) is read where it lies, in shared/data/edgesimpy beside
the repository; it is never copied into the project. Small hand-made
datasets in the tests cover the error paths.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import InputError, Placement, scenario_from_dict
from edgeplace.topology.importers import ImportOptions
from edgeplace.topology.importers.edgesimpy import edgesimpy_to_scenario, import_edgesimpy

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "edgesimpy" / "sample_dataset1.json"


@pytest.fixture(scope="module")
def raw():
    if not SAMPLE.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SAMPLE} is missing: shared/ must be beside the repository")
        pytest.skip(f"the EdgeSimPy sample is not at {SAMPLE}")
    return json.loads(SAMPLE.read_text())


@pytest.fixture(scope="module")
def imported(raw):
    result = import_edgesimpy(SAMPLE)
    return result, scenario_from_dict(result.document, source="edgesimpy sample")


def test_sample_counts(imported):
    result, sc = imported
    doc = result.document
    # README of the sample: 16 base stations and switches, 33 links, 6 servers, 6 users,
    # 6 applications of one service each, one container registry.
    assert (len(doc["sites"]), len(doc["links"]), len(doc["nodes"]), len(doc["users"])) == (16, 33, 6, 6)
    assert sc.n_workloads == 7
    assert sorted(sc.workload_ids) == ["registry-1", "svc-1-alpine", "svc-2-alpine", "svc-3-nginx",
                                       "svc-4-nginx", "svc-5-ubuntu", "svc-6-ubuntu"]
    assert sc.tenant_ids == ["default"] and sc.region_ids == ["DE"]
    assert sc.n_slots == 24 and sc.intensity_kind == "average"


def test_servers_map_to_nodes_with_their_power_model(imported, raw):
    _, sc = imported
    for item in raw["EdgeServer"]:
        a = item["attributes"]
        i = sc.index_of("node", f"es-{a['id']}")
        params = a["power_model_parameters"]
        # LinearServerPowerModel: P(0) = max x static share, P(1) = max.
        assert sc.node_power_curve_w[i, 0] == pytest.approx(params["max_power_consumption"] * params["static_power_percentage"])
        assert sc.node_power_curve_w[i, 10] == pytest.approx(params["max_power_consumption"])
        assert sc.node_capacity[i, 0] == a["cpu"] * 1000
        assert sc.node_capacity[i, 1] == a["memory"]
        switch = item["relationships"]["network_switch"]["id"]
        assert sc.site_ids[sc.node_site[i]] == f"sw-{switch}"


def test_user_latency_equals_the_datasets_delays(imported, raw):
    """The dataset records each user's delay to the server hosting its application; the
    imported graph (wireless delay + shortest link path) must give the same number."""
    _, sc = imported
    apps = {a["attributes"]["id"]: a for a in raw["Application"]}
    services = {s["attributes"]["id"]: s for s in raw["Service"]}
    checked = 0
    for user in raw["User"]:
        for app_id, delay in user["attributes"]["delays"].items():
            for ref in apps[int(app_id)]["relationships"]["services"]:
                server = services[ref["id"]]["relationships"]["server"]["id"]
                node = sc.index_of("node", f"es-{server}")
                u = sc.index_of("user", f"user-{user['attributes']['id']}")
                assert sc.user_site_latency_ms[u, sc.node_site[node]] == pytest.approx(delay)
                checked += 1
    assert checked == 6


def test_slas_and_current_placement(imported, raw):
    _, sc = imported
    for user in raw["User"]:
        for app_id, sla in user["attributes"]["delay_slas"].items():
            w = sc.index_of("workload", next(wid for wid in sc.workload_ids if wid.startswith(f"svc-{app_id}-")))
            assert sc.workload_sla_ms[w] == sla
    assert np.isinf(sc.workload_sla_ms[sc.index_of("workload", "registry-1")])
    # The dataset's own placement is the scenario's `current` and meets every SLA and capacity.
    nodes = np.concatenate([np.asarray(c) for c in sc.workload_current])
    result = evaluate(sc, Placement.from_replica_nodes(sc, nodes))
    assert result.feasible, [v.message for v in result.violations]
    assert sc.node_ids[int(nodes[sc.index_of("workload", "registry-1")])] == "es-5"


def test_notes_say_which_defaults_were_used(imported):
    result, _ = imported
    text = "\n".join(result.notes)
    for phrase in ("no carbon data", "grid region 'DE'", "no tenants", "tenant 'default'", "no PUE",
                   "16 network switch(es) (960 W chassis power", "container registr"):
        assert phrase in text, phrase


def test_options_change_the_defaults(raw):
    from datetime import datetime, timezone

    options = ImportOptions(start=datetime(2026, 1, 5, 6, tzinfo=timezone.utc), slots=4, slot_minutes=30, pue=1.0,
                            region="FR", intensity_g_per_kwh=tuple(range(24)), tenant="ops", name="mine")
    doc = edgesimpy_to_scenario(raw, options).document
    sc = scenario_from_dict(doc)
    assert sc.spec.name == "mine" and sc.tenant_ids == ["ops"] and sc.region_ids == ["FR"]
    assert set(sc.site_pue) == {1.0}
    # Slots start 06:00, 06:30, 07:00, 07:30: the profile's values for hours 6, 6, 7, 7.
    assert sc.region_intensity_g_per_kwh[0].tolist() == [6, 6, 7, 7]


def test_every_problem_is_reported_with_its_path(raw):
    broken = copy.deepcopy(raw)
    broken["EdgeServer"][1]["attributes"]["cpu"] = 0
    broken["EdgeServer"][2]["relationships"]["network_switch"] = {"class": "NetworkSwitch", "id": 99}
    broken["NetworkLink"][0]["attributes"]["delay"] = -1
    with pytest.raises(InputError, match="3 problem") as info:
        edgesimpy_to_scenario(broken, source="broken.json")
    paths = {p.path for p in info.value.problems}
    assert paths == {"EdgeServer[1].attributes.cpu", "EdgeServer[2].relationships.network_switch",
                     "NetworkLink[0].attributes.delay"}
    assert "names NetworkSwitch 99, which is not in the dataset" in str(info.value)


@pytest.mark.parametrize("data, message", [
    ([], "an EdgeSimPy dataset is a JSON object"),
    ({"BaseStation": []}, "the dataset has no edge servers"),
    ({"EdgeServer": [{"attributes": {"id": "x"}}]}, "must be a whole number"),
])
def test_not_a_dataset(data, message):
    with pytest.raises(InputError, match=message):
        edgesimpy_to_scenario(data)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        import_edgesimpy(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        import_edgesimpy(bad)


def test_infinity_and_missing_switches_are_handled(tmp_path):
    """A minimal dataset: base stations without switches become sites; `Infinity` parses."""
    data = {
        "BaseStation": [{"attributes": {"id": 1, "wireless_delay": 3}, "relationships": {}},
                        {"attributes": {"id": 2, "wireless_delay": 3}, "relationships": {}}],
        "EdgeServer": [{"attributes": {"id": 1, "cpu": 4, "memory": 4096,
                                       "power_model_parameters": {"max_power_consumption": 100,
                                                                  "static_power_percentage": 0.5}},
                        "relationships": {"base_station": {"class": "BaseStation", "id": 2},
                                          "power_model": "LinearServerPowerModel"}}],
        "User": [{"attributes": {"id": 1, "delay_slas": {"1": 10}}, "relationships":
                  {"base_station": {"class": "BaseStation", "id": 2}}}],
        "Application": [{"attributes": {"id": 1}, "relationships": {"services": [{"class": "Service", "id": 1}],
                                                                    "users": [{"class": "User", "id": 1}]}}],
        "Service": [{"attributes": {"id": 1, "cpu_demand": 1, "memory_demand": 512, "label": "web"},
                     "relationships": {"application": {"class": "Application", "id": 1}, "server": None}}],
        "Access": [{"attributes": {"id": 1, "duration": float("inf")}}],
    }
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data))  # writes the Infinity token
    assert "Infinity" in path.read_text()
    sc = scenario_from_dict(import_edgesimpy(path).document)
    assert sc.site_ids == ["bs-1", "bs-2"]
    assert sc.node_site.tolist() == [1]
    assert sc.workload_ids == ["svc-1-web"] and sc.workload_sla_ms.tolist() == [10.0]
    assert sc.workload_current == [None]
