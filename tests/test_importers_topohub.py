"""Tests of edgeplace.topology.importers.topohub on the topologies the topohub package ships (offline)."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest

from edgeplace.topology import InputError, scenario_from_dict
from edgeplace.topology.importers.topohub import (
    FIBRE_MS_PER_KM, SERVER_CAPACITY, TopologyOptions, available_topologies, import_topohub, import_topology_file,
    load_topohub, node_link_to_scenario,
)

pytest.importorskip("topohub", reason="the topohub package ships the topologies (pip install topohub)")


def raw_topology(name: str) -> dict:
    return load_topohub(name)[0]


def test_sndlib_germany50():
    result = import_topohub("sndlib/germany50")
    sc = scenario_from_dict(result.document)
    raw = raw_topology("sndlib/germany50")
    # 50 cities, 88 links (topohub's stats agree), two servers per site, one service per site.
    assert (sc.n_sites, len(sc.spec.links), sc.n_nodes, sc.n_workloads) == (50, 88, 100, 50)
    assert raw["graph"]["stats"]["nodes"] == 50 and raw["graph"]["stats"]["links"] == 88
    # Link latency is the fibre length at 5 us/km: Aachen's first link.
    edge = raw["edges"][0]
    names = {n["id"]: n["name"].lower() for n in raw["nodes"]}
    link = next(lk for lk in result.document["links"]
                if {lk["a"], lk["b"]} == {names[edge["source"]], names[edge["target"]]})
    assert link["latency_ms"] == pytest.approx(edge["dist"] * FIBRE_MS_PER_KM, abs=1e-4)
    aachen = sc.spec.sites[sc.index_of("site", "aachen")]
    assert (aachen.location.lon, aachen.location.lat) == (6.04, 50.76)


def test_sndlib_demands_size_the_services():
    result = import_topohub("sndlib/germany50")
    cpu = [w["requests"]["cpu_millicores"] for w in result.document["workloads"]]
    # Sized by demand share (mean 4000 millicores before rounding and clipping), not all equal.
    assert len(set(cpu)) > 10
    assert 3000 <= sum(cpu) / len(cpu) <= 5000
    assert max(cpu) <= SERVER_CAPACITY["cpu_millicores"] // 2 and min(cpu) >= 100
    assert any("share of the traffic demands" in n for n in result.notes)


def test_topology_zoo_abilene_without_demands():
    result = import_topohub("topozoo/Abilene", topology=TopologyOptions(servers_per_site=3, sla_ms=7.5))
    sc = scenario_from_dict(result.document)
    assert sc.n_sites == 11 and sc.n_nodes == 33
    assert set(sc.workload_sla_ms.tolist()) == {7.5}
    assert {w["requests"]["cpu_millicores"] for w in result.document["workloads"]} == {4000}
    assert "new-york" in sc.site_ids
    assert any("no traffic demands" in n for n in result.notes)


def test_every_topology_zoo_and_sndlib_topology_imports_and_loads():
    names = available_topologies("topozoo") + available_topologies("sndlib")
    assert len(names) > 200  # topohub 1.5 ships ~200 Topology Zoo and 26 SNDlib networks
    for name in names:
        scenario_from_dict(import_topohub(name).document, source=name)


def test_unknown_topology_names_the_group_members():
    with pytest.raises(InputError, match="no topology 'sndlib/atlantis'.*e.g. sndlib/abilene"):
        import_topohub("sndlib/atlantis")
    with pytest.raises(InputError, match="names look like topozoo/Abilene"):
        import_topohub("nowhere/x")
    with pytest.raises(InputError, match="no topology '../../etc/passwd'"):
        import_topohub("../../etc/passwd")


def test_node_link_json_file(tmp_path):
    doc = raw_topology("sndlib/polska")
    path = tmp_path / "polska.json"
    path.write_text(json.dumps(doc))
    sc = scenario_from_dict(import_topology_file(path).document)
    assert sc.n_sites == len(doc["nodes"]) and len(sc.spec.links) == len(doc["edges"])


def test_topology_zoo_graphml_file(tmp_path):
    """A GraphML file in Topology Zoo's style: label, Latitude, Longitude; no link lengths."""
    g = nx.Graph(label="Tiny")
    g.add_node("0", label="Frankfurt", Latitude=50.11, Longitude=8.68)
    g.add_node("1", label="Berlin", Latitude=52.52, Longitude=13.40)
    g.add_node("2", label="Frankfurt", Latitude=50.12, Longitude=8.69)  # a duplicate name
    g.add_node("3", label="Internal")  # no coordinates, as some Topology Zoo nodes
    g.add_edges_from([("0", "1"), ("0", "2"), ("1", "3")])
    path = tmp_path / "Tiny.graphml"
    nx.write_graphml(g, path)
    result = import_topology_file(path)
    sc = scenario_from_dict(result.document)
    assert sc.site_ids == ["frankfurt", "berlin", "frankfurt-2", "internal"]
    links = {(lk.a, lk.b): lk.latency_ms for lk in sc.spec.links}
    # Frankfurt - Berlin great circle ~424 km -> ~2.12 ms at 5 us/km.
    assert links[("frankfurt", "berlin")] == pytest.approx(2.12, abs=0.02)
    assert links[("berlin", "internal")] == 1.0  # unknown length: the documented assumption
    assert any("1 link(s) have neither a length nor coordinates" in n for n in result.notes)
    assert sc.spec.sites[3].location is None


def test_bad_topology_documents(tmp_path):
    with pytest.raises(InputError, match="a node-link topology is an object"):
        node_link_to_scenario([1, 2])
    with pytest.raises(InputError, match="joins unknown node"):
        node_link_to_scenario({"nodes": [{"id": 0}], "edges": [{"source": 0, "target": 5}]})
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><unclosed>")
    with pytest.raises(InputError, match="not a readable GraphML file"):
        import_topology_file(bad)


@pytest.mark.parametrize("fields, message", [
    ({"servers_per_site": 0}, "servers_per_site: must be 1..1000"),
    ({"sla_ms": 2.0, "access_latency_ms": 2.0}, "access_latency_ms: must be >= 0 and below sla_ms"),
    ({"service_cpu_millicores": 64_000}, "service_cpu_millicores: must be 1..32000"),
])
def test_topology_options_are_checked(fields, message):
    with pytest.raises(InputError, match=message):
        TopologyOptions(**fields)


def test_great_circle_helper_is_symmetric():
    from edgeplace.topology.importers.topohub import _great_circle_km

    a, b = (8.68, 50.11), (13.40, 52.52)
    assert _great_circle_km(a, b) == pytest.approx(_great_circle_km(b, a))
    assert _great_circle_km(a, a) == 0.0
    assert math.isclose(_great_circle_km((0.0, 0.0), (180.0, 0.0)), math.pi * 6371.0, rel_tol=1e-9)
