"""Tests of edgeplace.topology.importers.edgesimpy on an EdgeSimPy-format dataset of our own.

`tests/data/edgesimpy/rhine-line.json` was written for these tests from the
format (its README says how, and what its optimum is); small hand-made
datasets in the tests cover the error paths. Round trip: import, plan with
every solver, write the plan back (`apply_placement`) and check the result
against the rules of EdgeSimPy's loader (`Simulator.initialize`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from edgeplace.policies.baselines import CurrentPolicy, baseline_registry
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import InputError, Placement, scenario_from_dict
from edgeplace.topology.importers import ImportOptions
from edgeplace.topology.importers.edgesimpy import (HOSTNAME_LABEL, apply_placement, edgesimpy_to_scenario,
                                                    import_edgesimpy, placement_ids)

DATASET = Path(__file__).resolve().parent / "data" / "edgesimpy" / "rhine-line.json"


@pytest.fixture(scope="module")
def raw():
    return json.loads(DATASET.read_text())


@pytest.fixture(scope="module")
def imported(raw):
    result = import_edgesimpy(DATASET)
    return result, scenario_from_dict(result.document, source="edgesimpy fixture")


def test_counts_and_ids(imported):
    result, sc = imported
    doc = result.document
    assert (len(doc["sites"]), len(doc["links"]), len(doc["nodes"]), len(doc["users"])) == (5, 5, 5, 4)
    assert sc.workload_ids == ["svc-1-ingest", "svc-2-detector", "svc-3-cache", "svc-4-cache", "registry-1"]
    assert sc.tenant_ids == ["default"] and sc.region_ids == ["DE"]
    assert sc.n_slots == 24 and sc.intensity_kind == "average"
    assert result.source_ids["workloads"]["svc-3-cache"] == ("Service", 3)
    assert result.source_ids["workloads"]["registry-1"] == ("ContainerRegistry", 1)
    assert result.source_ids["nodes"]["es-4"] == ("EdgeServer", 4)


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
        assert sc.site_ids[sc.node_site[i]] == f"sw-{item['relationships']['network_switch']['id']}"
    # Every site states the PUE its figures use (the format's default here, said in the notes).
    assert {s.pue for s in sc.spec.sites} == {1.6}


def _latency(sc, user: int, node: str) -> float:
    return float(sc.user_site_latency_ms[sc.index_of("user", f"user-{user}"), sc.node_site[sc.index_of("node", node)]])


def _check_delays_match(sc, data) -> int:
    """Each user's recorded delay to an application whose services share one server equals edgeplace's
    latency to that server (wireless delay + shortest link path). Returns how many were checked."""
    apps = {a["attributes"]["id"]: a for a in data["Application"]}
    services = {s["attributes"]["id"]: s for s in data["Service"]}
    checked = 0
    for user in data["User"]:
        for app_id, delay in user["attributes"]["delays"].items():
            hosts = {services[r["id"]]["relationships"]["server"]["id"] for r in apps[int(app_id)]["relationships"]["services"]}
            if len(hosts) == 1:
                assert _latency(sc, user["attributes"]["id"], f"es-{hosts.pop()}") == pytest.approx(delay)
                checked += 1
    return checked


def test_user_latency_equals_the_datasets_delays(imported, raw):
    _, sc = imported
    assert _check_delays_match(sc, raw) == 4


def test_slas_current_placement_and_the_fixed_registry(imported, raw):
    _, sc = imported
    assert sc.workload_sla_ms.tolist()[:4] == [12.0, 12.0, 8.0, 10.0]  # app 1: the tighter of 12 and 14 ms
    r = sc.index_of("workload", "registry-1")
    assert np.isinf(sc.workload_sla_ms[r])
    # The registry may run on its own server only; services may move.
    assert sc.spec.workloads[r].node_selector == {HOSTNAME_LABEL: "es-1"}
    assert [sc.node_ids[i] for i in np.flatnonzero(sc.workload_node_allowed[r])] == ["es-1"]
    current = CurrentPolicy().place(sc)
    result = evaluate(sc, current)
    assert result.feasible, [v.message for v in result.violations]
    assert current.powered.all()
    assert [sc.node_ids[int(n)] for n in current.assign[:, 0]] == ["es-3", "es-3", "es-4", "es-5", "es-1"]


def test_every_baseline_keeps_the_registry_on_its_server(imported):
    _, sc = imported
    r = sc.index_of("workload", "registry-1")
    for name, factory in baseline_registry().items():
        placement = factory().place(sc)
        assert {sc.node_ids[int(n)] for n in placement.assign[r]} == {"es-1"}, name


@pytest.fixture(scope="module")
def plans(imported):
    from edgeplace.optimizer.solve import SolveOptions, solve

    _, sc = imported
    return {s: solve(sc, SolveOptions(solver=s, time_limit_s=20, bound_time_limit_s=20)) for s in ("greedy", "cpsat", "milp")}


def test_every_solver_finds_the_same_optimum(imported, plans):
    """The fixture's optimum (tests/data/edgesimpy/README.md): the registry pins es-1 on, so the
    ingest and detector services join it there; both caches go to the Raspberry Pi (es-4)."""
    _, sc = imported
    emissions = {s: p.evaluation.emissions_g for s, p in plans.items()}
    assert max(emissions.values()) - min(emissions.values()) <= 1e-6 * max(emissions.values()), emissions
    for solver, plan in plans.items():
        assert plan.evaluation.feasible, solver
        nodes = [sc.node_ids[int(n)] for n in plan.placement.assign[:, 0]]
        assert nodes == ["es-1", "es-1", "es-4", "es-4", "es-1"], solver
    assert plans["cpsat"].gap is not None and plans["cpsat"].gap <= 0.01


def test_a_movable_registry_would_leave_its_server(imported):
    """Why the registry is fixed: as an ordinary workload the optimum moves it off es-1 (and away from
    its images and layers), which EdgeSimPy cannot do without re-provisioning it."""
    from edgeplace.optimizer.solve import SolveOptions, solve

    result, _ = imported
    doc = copy.deepcopy(result.document)
    for w in doc["workloads"]:
        w.pop("node_selector", None)
    sc = scenario_from_dict(doc)
    plan = solve(sc, SolveOptions(solver="cpsat", time_limit_s=20, bound_time_limit_s=0))
    assert sc.node_ids[int(plan.placement.assign[sc.index_of("workload", "registry-1"), 0])] != "es-1"


# -- writing the plan back -------------------------------------------------------

KNOWN_CLASSES = {"NetworkSwitch", "NetworkLink", "BaseStation", "User", "ContainerLayer", "ContainerImage",
                 "Service", "ContainerRegistry", "Application", "EdgeServer", "CircularDurationAndIntervalAccessPattern",
                 "RandomDurationAndIntervalAccessPattern", "Topology"}
CALLABLES = {"LinearServerPowerModel", "SquareServerPowerModel", "CubicServerPowerModel", "ConteratoNetworkPowerModel",
             "pathway", "random_mobility"}


def edgesimpy_loader_problems(data: dict) -> list[str]:
    """The rules EdgeSimPy's `Simulator.initialize` (edge_sim_py/simulator.py) applies to a dataset:
    every key is a component class; every item has `attributes` (with an id) and `relationships`;
    a relationship is a callable's name, None, {class, id}, a list of them, or a dict of them, and
    each reference resolves (Topology 1 is made by the loader). Plus the state its components
    expect of a placement: a service is in its server's `services`, server demands are the sum of
    what it hosts and within capacity, and a server holds every layer of its services' images."""
    problems = []
    ids = {cls: {item["attributes"]["id"] for item in items} for cls, items in data.items()}
    ids.setdefault("Topology", set()).add(1)

    def resolves(ref) -> bool:
        return isinstance(ref, dict) and ref.get("class") in KNOWN_CLASSES and ref.get("id") in ids.get(ref["class"], ())

    for cls, items in data.items():
        if cls not in KNOWN_CLASSES:
            problems.append(f"{cls}: not a component class")
        for item in items:
            if set(item) != {"attributes", "relationships"} or not isinstance(item["attributes"].get("id"), int):
                problems.append(f"{cls}: item without attributes.id/relationships")
                continue
            for key, value in item["relationships"].items():
                where = f"{cls} {item['attributes']['id']}.{key}"
                if value is None or (isinstance(value, str) and value in CALLABLES):
                    continue
                if isinstance(value, list):
                    problems += [f"{where}: {v} does not resolve" for v in value if not resolves(v)]
                elif isinstance(value, dict) and "class" in value:
                    if not resolves(value):
                        problems.append(f"{where}: {value} does not resolve")
                elif isinstance(value, dict):
                    problems += [f"{where}: {v} does not resolve" for v in value.values() if not resolves(v)]
                else:
                    problems.append(f"{where}: {value!r} is no relationship")
    servers = {s["attributes"]["id"]: s for s in data["EdgeServer"]}
    layers = {l["attributes"]["id"]: l for l in data["ContainerLayer"]}
    images = {i["attributes"]["digest"]: i for i in data["ContainerImage"]}
    hosted: dict[int, list[dict]] = {s: [] for s in servers}
    for service in data["Service"]:
        server = service["relationships"]["server"]["id"]
        hosted[server].append(service["attributes"])
        if {"class": "Service", "id": service["attributes"]["id"]} not in servers[server]["relationships"]["services"]:
            problems.append(f"Service {service['attributes']['id']} is missing from EdgeServer {server}.services")
        have = {layers[r["id"]]["attributes"]["digest"] for r in servers[server]["relationships"]["container_layers"]}
        missing = set(images[service["attributes"]["image_digest"]]["attributes"]["layers_digests"]) - have
        if missing:
            problems.append(f"EdgeServer {server} lacks {len(missing)} layer(s) of Service {service['attributes']['id']}")
    for registry in data["ContainerRegistry"]:
        hosted[registry["relationships"]["server"]["id"]].append(registry["attributes"])
    for sid, server in servers.items():
        a = server["attributes"]
        for key, cap in (("cpu_demand", "cpu"), ("memory_demand", "memory")):
            if a[key] != sum(h[key] for h in hosted[sid]):
                problems.append(f"EdgeServer {sid}.{key} {a[key]} != what it hosts")
            if a[key] > a[cap]:
                problems.append(f"EdgeServer {sid}.{key} over capacity")
        on_disk = sum(layers[r["id"]]["attributes"]["size"] for r in server["relationships"]["container_layers"])
        if a["disk_demand"] != on_disk or on_disk > a["disk"]:
            problems.append(f"EdgeServer {sid}.disk_demand {a['disk_demand']} != its layers {on_disk} or over capacity")
    return problems


def test_the_fixture_itself_passes_the_loader_rules(raw):
    assert edgesimpy_loader_problems(raw) == []


def test_plan_in_edgesimpy_ids_and_a_dataset_with_it_applied(imported, raw, plans):
    result, sc = imported
    ids = placement_ids(sc, plans["cpsat"].placement, result.source_ids)
    assert ids == {"1": 1, "2": 1, "3": 4, "4": 4}  # {"service id": server id}; the registry stays put
    placed = apply_placement(raw, ids)
    assert edgesimpy_loader_problems(placed) == []
    assert raw == json.loads(DATASET.read_text()), "the input is not modified"
    servers = {s["attributes"]["id"]: s for s in placed["EdgeServer"]}
    assert servers[1]["relationships"]["services"] == [{"class": "Service", "id": 1}, {"class": "Service", "id": 2}]
    assert (servers[1]["attributes"]["cpu_demand"], servers[1]["attributes"]["memory_demand"]) == (5, 6144)
    assert servers[3]["relationships"]["services"] == [] and servers[3]["attributes"]["cpu_demand"] == 0
    # The dataset re-imports with the plan as its current placement, and the users' delays follow.
    again = import_edgesimpy_doc(placed)
    assert [again.node_ids[int(n)] for n in CurrentPolicy().place(again).assign[:, 0]] == \
        ["es-1", "es-1", "es-4", "es-4", "es-1"]
    assert _check_delays_match(again, placed) == 4
    user1 = next(u for u in placed["User"] if u["attributes"]["id"] == 1)["attributes"]
    assert user1["delays"] == {"1": 2} and user1["communication_paths"] == {"1": [[1], [1]]}


def import_edgesimpy_doc(data):
    return scenario_from_dict(edgesimpy_to_scenario(data).document)


def test_apply_placement_refuses_unknown_servers_and_overfull_ones(raw):
    with pytest.raises(InputError, match="Service 1: is placed on EdgeServer 9, which is not in the dataset"):
        apply_placement(raw, {"1": 9})
    # Everything on the Raspberry Pi (4 cores): over its CPU.
    with pytest.raises(InputError, match=r"EdgeServer 4.cpu_demand: 6 exceeds its cpu 4"):
        apply_placement(raw, {"1": 4, "2": 4, "3": 4, "4": 4})


def test_a_foreign_placement_cannot_be_written_back(imported):
    result, sc = imported
    unplaced = Placement.from_assign(np.full_like(CurrentPolicy().place(sc).assign, -1))
    with pytest.raises(InputError, match="svc-1-ingest: is not placed in any slot"):
        placement_ids(sc, unplaced, result.source_ids)


# -- the mapping's defaults and error paths ---------------------------------------

def test_notes_say_which_defaults_were_used(imported):
    result, _ = imported
    text = "\n".join(result.notes)
    for phrase in ("no carbon data", "grid region 'DE'", "no tenants", "tenant 'default'",
                   "written with PUE 1.6", "5 network switch(es) (225 W chassis power",
                   "1 container registry fixed on its server", "2 service(s) belong to multi-service applications"):
        assert phrase in text, phrase
    assert text.count("application 1: users have delay SLAs") == 1


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
