"""Network topologies (Internet Topology Zoo, SNDlib, ...) -> edgeplace scenario documents.

The `topohub` package (MIT, on PyPI) ships Topology Zoo, SNDlib, backbone,
CAIDA and Gabriel-graph topologies as NetworkX node-link JSON inside the
wheel, so `import_topohub("sndlib/germany50")` works offline. A topology
gives places and fibre lengths, nothing about compute, carbon or tenants; the
importer turns it into an edge-cloud scenario with documented defaults:

    topology node (name, pos = [lon, lat])  -> site <slug of name>, tier metro,
                                               location from pos
    edge (dist [km])                        -> link, latency_ms = dist x 0.005
                                               (light in fibre, ~200,000 km/s)
    every site                              -> `servers_per_site` servers
                                               (32 cores, 128 GiB, 115 W idle / 490 W max),
                                               one user location (access 2 ms),
                                               one service for those users with
                                               a `sla_ms` latency SLA
    SNDlib traffic demands (when present)   -> each site's service is sized by the
                                               site's share of the demand it sends
                                               and receives (mean `service_cpu_millicores`)

`import_topology_file(path)` reads the same node-link JSON from a file, or a
Topology Zoo GraphML file (node attributes `label`, `Latitude`, `Longitude`;
link lengths from the great-circle distance between the ends).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.importers.common import ImportOptions, ImportResult, pue_note, site_fields, skeleton, slug, unique_ids

#: One-way propagation delay of light in optical fibre [ms/km]: refractive
#: index ~1.47 gives ~204,000 km/s, i.e. ~4.9 us/km; rounded to 5 us/km.
FIBRE_MS_PER_KM = 0.005
#: Mean Earth radius [km] for great-circle lengths of GraphML links.
EARTH_RADIUS_KM = 6371.0
#: Link latency when neither a length nor both ends' coordinates are known [ms] (assumption).
UNKNOWN_LINK_MS = 1.0
#: Server at every site: a recent 1-2 socket server, about 115 W idle / 490 W
#: max (SPECpower, shared/REFERENCE.md "Power of compute nodes"); 32 cores and
#: 128 GiB are an assumption of a typical such server.
SERVER_CAPACITY = {"cpu_millicores": 32_000, "memory_mib": 131_072}
SERVER_POWER = {"idle_w": 115.0, "max_w": 490.0}
#: One part of a topohub name ("sndlib", "germany50", "25"): no path tricks.
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
#: Memory requested per CPU core requested by the generated services [MiB] (assumption: 2 GiB / core).
MIB_PER_CORE = 2048


@dataclass(frozen=True)
class TopologyOptions:
    """How to dress a bare topology as a cloud-edge scenario (defaults documented in docs/IMPORTERS.md).

    servers_per_site: servers at every site (1..1000).
    sla_ms: one-way latency SLA of every generated service [ms].
    access_latency_ms: from users to their site [ms] (5G / fixed access is 1-3 ms).
    service_cpu_millicores: mean CPU request of a site's service; the same for every site
        without traffic demands.
    cpu_usage_fraction: share of the request a service uses on average (assumption 0.5).
    tier: tier of every site.
    """

    servers_per_site: int = 2
    sla_ms: float = 10.0
    access_latency_ms: float = 2.0
    service_cpu_millicores: int = 4000
    cpu_usage_fraction: float = 0.5
    tier: str = "metro"

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.servers_per_site <= 1000:
            problems.append(Problem("servers_per_site", f"must be 1..1000 (got {self.servers_per_site})"))
        if not self.sla_ms > 0:
            problems.append(Problem("sla_ms", f"must be > 0 (got {self.sla_ms})"))
        if not 0 <= self.access_latency_ms < self.sla_ms:
            problems.append(Problem("access_latency_ms", f"must be >= 0 and below sla_ms {self.sla_ms:g} "
                                                         f"(got {self.access_latency_ms}), or no service fits its SLA"))
        if not 0 < self.service_cpu_millicores <= SERVER_CAPACITY["cpu_millicores"]:
            problems.append(Problem("service_cpu_millicores", f"must be 1..{SERVER_CAPACITY['cpu_millicores']} "
                                                              f"(one server; got {self.service_cpu_millicores})"))
        if not 0 <= self.cpu_usage_fraction <= 1:
            problems.append(Problem("cpu_usage_fraction", f"must be 0..1 (got {self.cpu_usage_fraction})"))
        if problems:
            raise InputError("topology import options", problems)


def available_topologies(group: str | None = None) -> list[str]:
    """Names `import_topohub` accepts ("topozoo/Abilene", ...), from the installed topohub's data."""
    base = _data_root()
    out = []
    for top in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")):
        if group is not None and top.name != group:
            continue
        for path in sorted(top.rglob("*.json")):
            out.append(str(path.relative_to(base).with_suffix("")).replace("\\", "/"))
    return out


def import_topohub(name: str, options: ImportOptions | None = None,
                   topology: TopologyOptions | None = None) -> ImportResult:
    """Map the topohub topology `name` (e.g. "topozoo/Abilene", "sndlib/germany50") to a scenario."""
    source = f"topohub:{name}"
    doc, version = load_topohub(name)
    graph = doc.get("graph", {})
    label = f"{name} ({graph.get('name', name)}) from topohub {version}"
    return node_link_to_scenario(doc, options, topology, source=source, name=slug(name, "topology"), label=label)


def load_topohub(name: str) -> tuple[dict[str, Any], str]:
    """The node-link document of topohub topology `name` and topohub's version.

    Reads the JSON file the package ships (`topohub/data/<name>.json`) directly:
    `topohub.get` does the same but leaves the file open (a ResourceWarning).
    Node ids stay as stored; demand keys are compared as strings.
    """
    source = f"topohub:{name}"
    try:
        import topohub
    except ImportError:
        raise InputError(source, [Problem("", "the topohub package is not installed; `pip install topohub` "
                                              "(it ships the topologies, no download at run time)")]) from None
    parts = name.split("/")
    root = _data_root()
    path = root.joinpath(*parts).with_suffix(".json") if parts and all(_SAFE_PART.fullmatch(p) for p in parts) else None
    if path is None or not path.is_file():
        group = parts[0] if parts else ""
        known = available_topologies(group) if _SAFE_PART.fullmatch(group or "-") and (root / group).is_dir() else []
        hint = (f"e.g. {', '.join(known[:6])}" if known
                else "names look like topozoo/Abilene, sndlib/germany50, backbone/europe, gabriel/25/0")
        raise InputError(source, [Problem("", f"no topology {name!r} in topohub {topohub.__version__}; {hint}")])
    with open(path, encoding="utf-8") as fh:
        return json.load(fh), topohub.__version__


def import_topology_file(path: str | Path, options: ImportOptions | None = None,
                         topology: TopologyOptions | None = None) -> ImportResult:
    """Read a node-link JSON topology (topohub's shape) or a Topology Zoo GraphML file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), [Problem("", "file not found")])
    if path.suffix.lower() in (".graphml", ".xml"):
        doc = _graphml_node_link(path)
    else:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(path), [Problem("", f"cannot read the file: {exc}")]) from None
        except json.JSONDecodeError as exc:
            raise InputError(str(path), [Problem(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}")]) from None
    return node_link_to_scenario(doc, options, topology, source=str(path), name=slug(path.stem, "topology"),
                                 label=path.name)


def node_link_to_scenario(doc: Any, options: ImportOptions | None = None, topology: TopologyOptions | None = None,
                          source: str = "<topology>", name: str = "topology", label: str = "a topology") -> ImportResult:
    """Map a NetworkX node-link dict (`nodes`, `edges` or `links`, optional `graph.demands`) to a scenario."""
    opts = options or ImportOptions()
    topo = topology or TopologyOptions()
    problems: list[Problem] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise InputError(source, [Problem("nodes", "a node-link topology is an object with a 'nodes' list and an "
                                                   "'edges' (or 'links') list")])
    edges = doc.get("edges", doc.get("links", []))
    if not isinstance(edges, list):
        raise InputError(source, [Problem("edges", "must be a list of {source, target, dist} objects")])
    if not doc["nodes"]:
        raise InputError(source, [Problem("nodes", "the topology has no nodes")])

    notes: list[str] = []
    scenario = skeleton(name, f"Imported from {label}: one edge site per topology node.", opts, notes)
    notes.append(pue_note(opts))

    # Sites: one per topology node, ids from the names (made unique).
    keys, names, positions = [], [], []
    for i, node in enumerate(doc["nodes"]):
        if not isinstance(node, dict) or "id" not in node:
            problems.append(Problem(f"nodes[{i}]", "must be an object with an 'id'"))
            continue
        keys.append(str(node["id"]))
        names.append(slug(node.get("name") or node.get("label") or "", f"n{node['id']}"))
        positions.append(_lon_lat(node.get("pos")))
    if len(set(keys)) != len(keys):
        problems.append(Problem("nodes", "node ids must be unique"))
    site_of = dict(zip(keys, unique_ids(names)))
    for key, pos in zip(keys, positions):
        site: dict[str, Any] = {"id": site_of[key], "tier": topo.tier, **site_fields(opts)}
        if pos is not None:
            site["location"] = {"lat": pos[1], "lon": pos[0]}
        scenario["sites"].append(site)
    if sum(p is None for p in positions):
        notes.append(f"{sum(p is None for p in positions)} topology node(s) have no usable coordinates; their sites have no location")

    # Links: latency from fibre length.
    pos_of = dict(zip(keys, positions))
    guessed = 0
    for k, edge in enumerate(edges):
        a, b = (str(edge.get("source")), str(edge.get("target"))) if isinstance(edge, dict) else (None, None)
        if a not in site_of or b not in site_of:
            problems.append(Problem(f"edges[{k}]", f"joins unknown node(s) {a!r}, {b!r}"))
            continue
        if a == b:
            continue
        km = edge.get("dist")
        if not (isinstance(km, (int, float)) and not isinstance(km, bool) and math.isfinite(km) and km >= 0):
            km = _great_circle_km(pos_of[a], pos_of[b])
        if km is None:
            latency = UNKNOWN_LINK_MS
            guessed += 1
        else:
            latency = round(float(km) * FIBRE_MS_PER_KM, 4)
        scenario["links"].append({"a": site_of[a], "b": site_of[b], "latency_ms": latency})
    notes.append(f"link latency = fibre length x {FIBRE_MS_PER_KM * 1000:g} us/km (propagation only; "
                 f"no switching or queueing delay)")
    if guessed:
        notes.append(f"{guessed} link(s) have neither a length nor coordinates at both ends: {UNKNOWN_LINK_MS:g} ms assumed")

    # Demand shares per node (SNDlib traffic matrices), if any.
    share = _demand_shares(doc.get("graph", {}).get("demands") if isinstance(doc.get("graph"), dict) else None, keys)
    n_sites = len(keys)
    for key in keys:
        site = site_of[key]
        for s in range(topo.servers_per_site):
            scenario["nodes"].append({"id": f"{site}-s{s + 1}", "site": site, "capacity": dict(SERVER_CAPACITY),
                                      "power": dict(SERVER_POWER)})
        scenario["users"].append({"id": f"users-{site}", "site": site, "access_latency_ms": topo.access_latency_ms})
        mean = topo.service_cpu_millicores
        cpu = mean if share is None else mean * n_sites * share[key]
        # Whole hundreds of millicores, at least 100, and at most half a server
        # so that one replica always fits and leaves room for neighbours.
        cpu = int(min(max(round(cpu / 100) * 100, 100), SERVER_CAPACITY["cpu_millicores"] // 2))
        scenario["workloads"].append({
            "id": f"svc-{site}", "tenant": opts.tenant, "replicas": 1,
            "requests": {"cpu_millicores": cpu, "memory_mib": cpu * MIB_PER_CORE // 1000},
            "cpu_usage_fraction": topo.cpu_usage_fraction,
            "sla": {"latency_ms": topo.sla_ms, "users": [f"users-{site}"]},
        })
    notes.append(f"no compute in the source: {topo.servers_per_site} server(s) per site "
                 f"({SERVER_CAPACITY['cpu_millicores'] // 1000} cores, {SERVER_CAPACITY['memory_mib'] // 1024} GiB, "
                 f"{SERVER_POWER['idle_w']:g} W idle / {SERVER_POWER['max_w']:g} W max)")
    sizing = ("sized by each site's share of the traffic demands it sends and receives"
              if share is not None else "all the same size (the source has no traffic demands)")
    notes.append(f"no workloads in the source: one service per site for users there ({topo.access_latency_ms:g} ms "
                 f"access), SLA {topo.sla_ms:g} ms, mean {topo.service_cpu_millicores} millicores, {sizing}")
    if problems:
        raise InputError(source, problems)
    return ImportResult(scenario, notes)


def _demand_shares(demands: Any, keys: list[str]) -> dict[str, float] | None:
    """Each node's share of all traffic it sends plus receives (sums to 1), or None without demands."""
    if not isinstance(demands, dict) or not demands:
        return None
    total = {k: 0.0 for k in keys}
    for src, row in demands.items():
        if not isinstance(row, dict):
            continue
        for dst, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
                for end in (str(src), str(dst)):
                    if end in total:
                        total[end] += float(value)
    grand = sum(total.values())
    if grand <= 0:
        return None
    return {k: v / grand for k, v in total.items()}


def _lon_lat(pos: Any) -> tuple[float, float] | None:
    if (isinstance(pos, (list, tuple)) and len(pos) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pos)
            and -180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
        return float(pos[0]), float(pos[1])
    return None


def _great_circle_km(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Haversine distance between two (lon, lat) points [km]."""
    if a is None or b is None:
        return None
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _graphml_node_link(path: Path) -> dict[str, Any]:
    """A Topology Zoo GraphML file as topohub's node-link shape (pos from Longitude/Latitude)."""
    import xml.etree.ElementTree as ET

    import networkx as nx

    try:
        graph = nx.read_graphml(path)
    except (ET.ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise InputError(str(path), [Problem("", f"not a readable GraphML file: {exc}")]) from None
    nodes = []
    for key, attrs in graph.nodes(data=True):
        lon, lat = attrs.get("Longitude"), attrs.get("Latitude")
        node: dict[str, Any] = {"id": key, "name": str(attrs.get("label", key))}
        if lon is not None and lat is not None:
            try:
                node["pos"] = [float(lon), float(lat)]
            except (TypeError, ValueError):
                pass
        nodes.append(node)
    edges = [{"source": a, "target": b} for a, b in graph.edges()]
    return {"graph": {"name": graph.graph.get("label") or graph.graph.get("Network") or path.stem},
            "nodes": nodes, "edges": edges}


def _data_root() -> Path:
    import importlib.resources

    import topohub

    return Path(str(importlib.resources.files(topohub) / "data"))
