"""EdgeSimPy JSON datasets -> edgeplace scenario documents.

An EdgeSimPy dataset is one JSON object with a list per entity class
(`BaseStation`, `NetworkSwitch`, `NetworkLink`, `EdgeServer`, `User`,
`Application`, `Service`, `ContainerRegistry`, ...). Each item is
`{"attributes": {...}, "relationships": {...}}`; a relationship is
`{"class": C, "id": n}`, a list of them, or null. The files may contain the
non-standard JSON token `Infinity` (Python's json module reads it).

The mapping (docs/IMPORTERS.md has it as a table, with the reasons):

    NetworkSwitch n            -> site  sw-n  (tier access if a base station
                                  hangs off it, else aggregation)
    BaseStation b              -> where users attach: the site of its switch;
                                  its wireless_delay [ms] is the users' access latency
    NetworkLink (a, b, delay)  -> link sw-a -- sw-b, latency_ms = delay
    EdgeServer s               -> node es-s at its switch's site:
                                  cpu cores x 1000 millicores, memory [MB] as MiB,
                                  LinearServerPowerModel: idle = max x static share
    User u                     -> user location user-u at its base station's site
    Service v (of application) -> workload svc-v[-label], 1 replica,
                                  cpu_demand x 1000 millicores, memory_demand MiB,
                                  SLA = the tightest delay_slas of the app's users,
                                  current = the server it is placed on
    ContainerRegistry r        -> workload registry-r (no SLA) fixed on its server:
                                  node_selector kubernetes.io/hostname = that node
                                  (its images and layers live there, and EdgeSimPy
                                  pulls every layer from it), current = that node

`apply_placement` goes the other way: a dataset with services moved to the
servers a plan chose (service and server relationships, server demands, the
layers a moved service needs on its new server, users' delays and paths),
in EdgeSimPy's own ids. `placement_ids` gives the plan as
{"service id": server id}.

Written from the format (EdgeSimPy's dataset structure and the loader that
reads it, `Simulator.initialize`), not from EdgeSimPy's code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.load import read_document
from edgeplace.topology.importers.common import ImportOptions, ImportResult, pue_note, site_fields, skeleton, slug

#: Node label that pins a workload to one node (the Kubernetes well-known label).
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: Power of a server whose dataset gives no power model: a recent 1-2 socket
#: server at about 115 W idle / 490 W max (SPECpower, shared/REFERENCE.md
#: "Power of compute nodes").
FALLBACK_IDLE_W, FALLBACK_MAX_W = 115.0, 490.0
LINEAR_MODEL = "LinearServerPowerModel"


def import_edgesimpy(path: str | Path, options: ImportOptions | None = None) -> ImportResult:
    """Read an EdgeSimPy dataset file and map it to a scenario document."""
    path = Path(path)
    data = read_document(path, json_only=True)
    return edgesimpy_to_scenario(data, options, source=str(path), name=f"edgesimpy-{slug(path.stem, 'dataset')}")


def edgesimpy_to_scenario(data: Any, options: ImportOptions | None = None, source: str = "<edgesimpy>",
                          name: str = "edgesimpy") -> ImportResult:
    """Map a parsed EdgeSimPy dataset to a scenario document; see the module docstring."""
    return _Mapper(data, options or ImportOptions(), source, name).run()


class _Mapper:
    """Walks the dataset once, collecting every problem before raising one InputError."""

    def __init__(self, data: Any, options: ImportOptions, source: str, name: str):
        self.data, self.options, self.source, self.name = data, options, source, name
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self._sla_noted: set[int] = set()

    # -- reading helpers ---------------------------------------------------------
    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def entities(self, cls: str) -> list[tuple[str, dict, dict]]:
        """(path, attributes, relationships) of every item of class `cls`; [] if absent."""
        items = self.data.get(cls, [])
        if not isinstance(items, list):
            self.bad(cls, f"must be a list of {cls} items")
            return []
        out = []
        for i, item in enumerate(items):
            path = f"{cls}[{i}]"
            attrs = item.get("attributes") if isinstance(item, dict) else None
            rels = item.get("relationships", {}) if isinstance(item, dict) else None
            if not isinstance(attrs, dict) or not isinstance(rels, (dict, type(None))):
                self.bad(path, "must be an object with an 'attributes' object (and optionally 'relationships')")
                continue
            if not _is_id(attrs.get("id")):
                self.bad(f"{path}.attributes.id", f"must be a whole number (got {attrs.get('id')!r})")
                continue
            out.append((path, attrs, rels or {}))
        return out

    def number(self, obj: dict, where: str, key: str, *, minimum: float = 0.0, default: float | None = None,
               positive: bool = False) -> float:
        """`obj[key]` as a finite number; `where` is the path of `obj` for messages."""
        value = obj.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > minimum if positive else value >= minimum)
        if not ok:
            need = f"> {minimum:g}" if positive else f">= {minimum:g}"
            self.bad(f"{where}.{key}", f"must be a finite number {need} (got {value!r})")
            return default if default is not None else 0.0
        return float(value)

    def ref(self, rels: dict, path: str, key: str, cls: str, known: dict[int, Any], required: bool = True) -> int | None:
        """The id of a single relationship `key` pointing at class `cls`, checked against `known`."""
        value = rels.get(key)
        if value is None:
            if required:
                self.bad(f"{path}.relationships.{key}", f"is missing; needs {{'class': '{cls}', 'id': N}}")
            return None
        if not isinstance(value, dict) or value.get("class") != cls or not _is_id(value.get("id")):
            self.bad(f"{path}.relationships.{key}", f"must be {{'class': '{cls}', 'id': N}} (got {value!r})")
            return None
        if value["id"] not in known:
            self.bad(f"{path}.relationships.{key}", f"names {cls} {value['id']}, which is not in the dataset")
            return None
        return int(value["id"])

    def refs(self, rels: dict, path: str, key: str, cls: str, known: dict[int, Any]) -> list[int]:
        value = rels.get(key) or []
        if not isinstance(value, list):
            self.bad(f"{path}.relationships.{key}", f"must be a list of {{'class': '{cls}', 'id': N}}")
            return []
        out = []
        for k, item in enumerate(value):
            if not isinstance(item, dict) or item.get("class") != cls or not _is_id(item.get("id")):
                self.bad(f"{path}.relationships.{key}[{k}]", f"must be {{'class': '{cls}', 'id': N}} (got {item!r})")
            elif item["id"] not in known:
                self.bad(f"{path}.relationships.{key}[{k}]", f"names {cls} {item['id']}, which is not in the dataset")
            else:
                out.append(int(item["id"]))
        return out

    # -- the mapping ---------------------------------------------------------------
    def run(self) -> ImportResult:
        if not isinstance(self.data, dict):
            raise InputError(self.source, [Problem("", "an EdgeSimPy dataset is a JSON object with a list per entity "
                                                       f"class (EdgeServer, BaseStation, ...), got {type(self.data).__name__}")])
        if not self.data.get("EdgeServer"):
            raise InputError(self.source, [Problem("EdgeServer", "the dataset has no edge servers; an EdgeSimPy "
                                                                 "dataset lists them under 'EdgeServer'")])
        opts = self.options
        doc = skeleton(self.name, f"Imported from the EdgeSimPy dataset {Path(self.source).name}.", opts, self.notes)
        self.ids: dict[str, dict[str, tuple[str, int]]] = {"workloads": {}, "nodes": {}}
        self.notes.append(pue_note(opts))

        switches = {a["id"]: (p, a, r) for p, a, r in self.entities("NetworkSwitch")}
        stations = {a["id"]: (p, a, r) for p, a, r in self.entities("BaseStation")}
        servers = {a["id"]: (p, a, r) for p, a, r in self.entities("EdgeServer")}
        users = {a["id"]: (p, a, r) for p, a, r in self.entities("User")}
        apps = {a["id"]: (p, a, r) for p, a, r in self.entities("Application")}
        services = {a["id"]: (p, a, r) for p, a, r in self.entities("Service")}
        registries = {a["id"]: (p, a, r) for p, a, r in self.entities("ContainerRegistry")}

        # Sites: one per network switch; a base station without a switch is a site of its own.
        station_site: dict[int, str] = {}
        site_tier: dict[str, str] = {f"sw-{s}": "aggregation" for s in switches}
        for b, (path, attrs, rels) in stations.items():
            sw = self.ref(rels, path, "network_switch", "NetworkSwitch", switches, required=False)
            site = f"sw-{sw}" if sw is not None else f"bs-{b}"
            station_site[b] = site
            site_tier[site] = "access"
        for site, tier in site_tier.items():
            doc["sites"].append({"id": site, "tier": tier, **site_fields(opts)})

        # Links between switches.
        for path, attrs, rels in self.entities("NetworkLink"):
            ends = self.refs(rels, path, "nodes", "NetworkSwitch", switches)
            if len(ends) != 2:
                if not any(p.path.startswith(path) for p in self.problems):
                    self.bad(f"{path}.relationships.nodes", f"a link joins two switches (got {len(ends)})")
                continue
            if ends[0] == ends[1]:
                continue
            link = {"a": f"sw-{ends[0]}", "b": f"sw-{ends[1]}", "latency_ms": self.number(attrs, f"{path}.attributes", "delay")}
            bw = attrs.get("bandwidth")
            if isinstance(bw, (int, float)) and not isinstance(bw, bool) and math.isfinite(bw) and bw > 0:
                link["bandwidth_mbps"] = float(bw)
            doc["links"].append(link)

        # Edge servers -> nodes.
        other_models: set[str] = set()
        no_model = 0
        for s, (path, attrs, rels) in servers.items():
            sw = self.ref(rels, path, "network_switch", "NetworkSwitch", switches, required=False)
            if sw is not None:
                site = f"sw-{sw}"
            else:
                b = self.ref(rels, path, "base_station", "BaseStation", stations)
                site = station_site.get(b, "") if b is not None else ""
            cpu = self.number(attrs, f"{path}.attributes", "cpu", positive=True)
            memory = self.number(attrs, f"{path}.attributes", "memory", positive=True)
            params = attrs.get("power_model_parameters") or {}
            model = rels.get("power_model")
            if isinstance(params, dict) and "max_power_consumption" in params:
                where = f"{path}.attributes.power_model_parameters"
                max_w = self.number(params, where, "max_power_consumption", positive=True)
                share = self.number(params, where, "static_power_percentage", default=0.0)
                if share > 1:
                    self.bad(f"{path}.attributes.power_model_parameters.static_power_percentage",
                             f"is the idle share of max power, 0..1 (got {share})")
                power = {"idle_w": round(max_w * min(share, 1.0), 6), "max_w": max_w}
                if model != LINEAR_MODEL:
                    other_models.add(str(model))
            else:
                power = {"idle_w": FALLBACK_IDLE_W, "max_w": FALLBACK_MAX_W}
                no_model += 1
            node: dict[str, Any] = {
                "id": f"es-{s}", "site": site,
                "capacity": {"cpu_millicores": int(round(cpu * 1000)), "memory_mib": int(round(memory))},
                "power": power,
            }
            node["labels"] = {HOSTNAME_LABEL: node["id"]}
            if isinstance(attrs.get("model_name"), str) and attrs["model_name"]:
                node["labels"]["model"] = attrs["model_name"]
            doc["nodes"].append(node)
            self.ids["nodes"][node["id"]] = ("EdgeServer", s)
        if other_models:
            self.notes.append(f"power models {', '.join(sorted(other_models))} are approximated as linear between "
                              f"static and max power (only {LINEAR_MODEL} maps exactly)")
        if no_model:
            self.notes.append(f"{no_model} server(s) without power_model_parameters get {FALLBACK_IDLE_W:g} W idle / "
                              f"{FALLBACK_MAX_W:g} W max (SPECpower server, shared/REFERENCE.md)")

        # Users -> user locations at their base station.
        moving = 0
        for u, (path, attrs, rels) in users.items():
            b = self.ref(rels, path, "base_station", "BaseStation", stations)
            if b is None:
                continue
            b_path, b_attrs, _ = stations[b]
            access = self.number(b_attrs, f"{b_path}.attributes", "wireless_delay", default=0.0)
            doc["users"].append({"id": f"user-{u}", "site": station_site[b], "access_latency_ms": access})
            trace = attrs.get("coordinates_trace")
            if isinstance(trace, list) and len({json.dumps(c) for c in trace}) > 1:
                moving += 1
        if moving:
            self.notes.append(f"{moving} user(s) move in the source (coordinates_trace); each is pinned to the base "
                              f"station it starts at")

        # Services -> workloads, with the SLAs of their application's users.
        multi = 0
        for v, (path, attrs, rels) in services.items():
            app = self.ref(rels, path, "application", "Application", apps, required=False)
            workload = self._workload(f"svc-{v}" + (f"-{slug(attrs['label'], '')}" if isinstance(attrs.get("label"), str)
                                                     and slug(attrs["label"], "") else ""), path, attrs, rels, servers)
            if app is not None:
                a_path, _, a_rels = apps[app]
                if len(self.refs(a_rels, a_path, "services", "Service", services)) > 1:
                    multi += 1
                sla = self._sla(app, a_path, a_rels, users)
                if sla is not None:
                    workload["sla"] = sla
            doc["workloads"].append(workload)
            self.ids["workloads"][workload["id"]] = ("Service", v)
        if multi:
            self.notes.append(f"{multi} service(s) belong to multi-service applications: each service gets the "
                              f"application's delay SLA on its own (the chain's summed delay is not modelled)")
        for r, (path, attrs, rels) in registries.items():
            workload = self._workload(f"registry-{r}", path, attrs, rels, servers)
            if workload.get("current"):
                # Fixed: the registry's images and layers live on its server and every pull comes from it.
                workload["node_selector"] = {HOSTNAME_LABEL: workload["current"][0]}
            doc["workloads"].append(workload)
            self.ids["workloads"][workload["id"]] = ("ContainerRegistry", r)
        if registries:
            self.notes.append(f"{len(registries)} container registr{'y' if len(registries) == 1 else 'ies'} "
                              f"fixed on {'its' if len(registries) == 1 else 'their'} server (node_selector "
                              f"{HOSTNAME_LABEL}; its images and layers live there), no SLA")

        # What is left out, said once.
        if switches:
            chassis = sum(a.get("power_model_parameters", {}).get("chassis_power", 0) or 0
                          for _, a, _ in switches.values() if isinstance(a.get("power_model_parameters"), dict))
            self.notes.append(f"{len(switches)} network switch(es) ({chassis:g} W chassis power in total) are not "
                              f"counted: edgeplace models the energy of compute nodes only")
        self.notes.append("not modelled: disk, container images and layers (provisioning), access patterns "
                          "(services run in every slot), site coordinates (EdgeSimPy's grid is not geographic)")
        if self.problems:
            raise InputError(self.source, self.problems)
        return ImportResult(doc, self.notes, self.ids)

    def _workload(self, wid: str, path: str, attrs: dict, rels: dict, servers: dict) -> dict[str, Any]:
        cpu = self.number(attrs, f"{path}.attributes", "cpu_demand")
        memory = self.number(attrs, f"{path}.attributes", "memory_demand")
        workload: dict[str, Any] = {
            "id": wid, "tenant": self.options.tenant, "replicas": 1,
            "requests": {"cpu_millicores": int(round(cpu * 1000)), "memory_mib": int(round(memory))},
            # EdgeSimPy's power models take utilisation as demand / capacity: the request is the use.
            "cpu_usage_fraction": 1.0,
        }
        server = self.ref(rels, path, "server", "EdgeServer", servers, required=False)
        if server is not None:
            workload["current"] = [f"es-{server}"]
        return workload

    def _sla(self, app: int, a_path: str, a_rels: dict, users: dict) -> dict[str, Any] | None:
        bounds, served = [], []
        for u in self.refs(a_rels, a_path, "users", "User", users):
            u_path, u_attrs, _ = users[u]
            slas = u_attrs.get("delay_slas") or {}
            value = slas.get(str(app)) if isinstance(slas, dict) else None
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
                self.bad(f"{u_path}.attributes.delay_slas.{app}", f"must be a finite delay > 0 [ms] (got {value!r})")
                continue
            bounds.append(float(value))
            served.append(f"user-{u}")
        if not bounds:
            return None
        if len(set(bounds)) > 1 and app not in self._sla_noted:
            self._sla_noted.add(app)
            self.notes.append(f"application {app}: users have delay SLAs {sorted(set(bounds))} ms; its services "
                              f"get the tightest, {min(bounds):g} ms")
        return {"latency_ms": min(bounds), "users": served}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Writing a plan back: EdgeSimPy ids and a dataset with the placement applied


def placement_ids(scenario, placement, source_ids: dict[str, dict[str, tuple[str, int]]]) -> dict[str, int]:
    """{"service id": server id} of the services a placement puts (their node in the first slot they run).

    `scenario` and `placement` are edgeplace's; `source_ids` is `ImportResult.source_ids`
    of the import that made the scenario. Services keep their node for the horizon in
    edgeplace's model, so one server per service is the whole plan.
    """
    workloads, nodes = source_ids.get("workloads", {}), source_ids.get("nodes", {})
    problems, out = [], {}
    for w, wid in enumerate(scenario.workload_ids):
        cls, ident = workloads.get(wid, (None, None))
        if cls != "Service":
            continue
        r = int(scenario.workload_first_replica[w])
        row = placement.rows(r, r + 1)[0]
        placed = row[row >= 0]
        node = scenario.node_ids[int(placed[0])] if placed.size else None
        if node is None:
            problems.append(Problem(f"workloads.{wid}", "is not placed in any slot; a dataset needs a server for it"))
        elif node not in nodes:
            problems.append(Problem(f"workloads.{wid}", f"runs on node {node!r}, which is no EdgeServer of the dataset"))
        else:
            out[str(ident)] = nodes[node][1]
    if problems:
        raise InputError("placement", problems)
    return out


def apply_placement(data: dict, assignment: dict[str, int], source: str = "<edgesimpy>") -> dict:
    """A copy of an EdgeSimPy dataset with each service on the server `assignment` names.

    Updated the way EdgeSimPy's own provisioning leaves a dataset: the service's
    `server` and the servers' `services`; servers' `cpu_demand` and `memory_demand`;
    every layer of the service's image on its new server (a new ContainerLayer
    when it is missing there, counted in `disk_demand`; layers left behind stay as
    cache); users' `delays` and `communication_paths` over the shortest-delay
    switch paths. Raises InputError when a server is unknown or would be over
    its CPU, memory or disk capacity.
    """
    import copy

    out = copy.deepcopy(data)
    servers = {item["attributes"]["id"]: item for item in out.get("EdgeServer", [])}
    services = {item["attributes"]["id"]: item for item in out.get("Service", [])}
    images = {item["attributes"].get("digest"): item for item in out.get("ContainerImage", [])}
    layers = out.setdefault("ContainerLayer", [])
    layer_by_id = {item["attributes"]["id"]: item for item in layers}
    problems: list[Problem] = []
    for sid, target in sorted(assignment.items(), key=lambda kv: int(kv[0])):
        service = services.get(int(sid))
        if service is None:
            problems.append(Problem(f"Service {sid}", "is not in the dataset"))
            continue
        if target not in servers:
            problems.append(Problem(f"Service {sid}", f"is placed on EdgeServer {target}, which is not in the dataset"))
            continue
        rels, attrs = service["relationships"], service["attributes"]
        old = (rels.get("server") or {}).get("id")
        if old == target:
            continue
        if old in servers:
            _move_demand(servers[old], attrs, -1)
            servers[old]["relationships"]["services"] = [r for r in servers[old]["relationships"].get("services", [])
                                                          if r.get("id") != service["attributes"]["id"]]
        new = servers[target]
        _move_demand(new, attrs, +1)
        new["relationships"].setdefault("services", []).append({"class": "Service", "id": attrs["id"]})
        rels["server"] = {"class": "EdgeServer", "id": target}
        image = images.get(attrs.get("image_digest"))
        if image is not None:
            _pull_layers(new, image["attributes"].get("layers_digests") or [], layers, layer_by_id)
    for sid, server in servers.items():
        a = server["attributes"]
        for used, cap in (("cpu_demand", "cpu"), ("memory_demand", "memory"), ("disk_demand", "disk")):
            if isinstance(a.get(cap), (int, float)) and a.get(used, 0) > a[cap]:
                problems.append(Problem(f"EdgeServer {sid}.{used}", f"{a[used]:g} exceeds its {cap} {a[cap]:g}"))
    if problems:
        raise InputError(source, problems)
    _update_user_paths(out, servers, services)
    return out


def _move_demand(server: dict, service_attrs: dict, sign: int) -> None:
    a = server["attributes"]
    for key in ("cpu_demand", "memory_demand"):
        a[key] = a.get(key, 0) + sign * service_attrs.get(key, 0)


def _pull_layers(server: dict, digests: list[str], layers: list[dict], layer_by_id: dict[int, dict]) -> None:
    """Give `server` every layer in `digests` it lacks, as EdgeSimPy's layer download would."""
    rels = server["relationships"]
    have = {layer_by_id[r["id"]]["attributes"].get("digest") for r in rels.get("container_layers", [])
            if r.get("id") in layer_by_id}
    for digest in digests:
        if digest in have:
            continue
        template = next((item for item in layers if item["attributes"].get("digest") == digest), None)
        if template is None:
            continue
        lid = max(layer_by_id, default=0) + 1
        layer = {"attributes": {**template["attributes"], "id": lid},
                 "relationships": {"server": {"class": "EdgeServer", "id": server["attributes"]["id"]}}}
        layers.append(layer)
        layer_by_id[lid] = layer
        rels.setdefault("container_layers", []).append({"class": "ContainerLayer", "id": lid})
        server["attributes"]["disk_demand"] = server["attributes"].get("disk_demand", 0) + template["attributes"].get("size", 0)
        have.add(digest)


def _update_user_paths(data: dict, servers: dict, services: dict) -> None:
    """Each user's path to its applications' services (user's switch, then service to service in order) and the
    delay it adds up to: the base station's wireless delay plus the links' delays."""
    import networkx as nx

    graph = nx.Graph()
    for link in data.get("NetworkLink", []):
        ends = [n.get("id") for n in link["relationships"].get("nodes", [])]
        if len(ends) == 2:
            graph.add_edge(ends[0], ends[1], delay=float(link["attributes"].get("delay", 0)))
    stations = {item["attributes"]["id"]: item for item in data.get("BaseStation", [])}
    apps = {item["attributes"]["id"]: item for item in data.get("Application", [])}

    def switch_of_server(sid):
        rels = servers[sid]["relationships"]
        if rels.get("network_switch"):
            return rels["network_switch"]["id"]
        station = stations.get((rels.get("base_station") or {}).get("id"))
        return ((station or {}).get("relationships", {}).get("network_switch") or {}).get("id")

    for user in data.get("User", []):
        attrs, rels = user["attributes"], user["relationships"]
        station = stations.get((rels.get("base_station") or {}).get("id"))
        if station is None or not isinstance(attrs.get("delays"), dict):
            continue
        here = (station["relationships"].get("network_switch") or {}).get("id")
        for app_key in list(attrs["delays"]):
            app = apps.get(int(app_key))
            if app is None:
                continue
            hops = [switch_of_server(services[r["id"]]["relationships"]["server"]["id"])
                    for r in app["relationships"].get("services", [])
                    if r.get("id") in services and services[r["id"]]["relationships"].get("server")]
            if here is None or None in hops:
                continue
            paths, delay, src = [], float(station["attributes"].get("wireless_delay", 0)), here
            try:
                for dst in hops:
                    path = [src] if src == dst else nx.shortest_path(graph, src, dst, weight="delay")
                    delay += nx.path_weight(graph, path, weight="delay") if len(path) > 1 else 0.0
                    paths.append(path)
                    src = dst
            except nx.NetworkXException:  # no path: EdgeSimPy would not find one either; leave the user as it was
                continue
            attrs["delays"][app_key] = int(delay) if delay.is_integer() else delay
            if isinstance(attrs.get("communication_paths"), dict):
                attrs["communication_paths"][app_key] = paths
