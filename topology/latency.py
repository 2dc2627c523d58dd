"""Latency between user locations and sites: shortest paths on the link graph.

Latency(user, site) = the user's access latency + the shortest-path latency
from the user's site to `site` over the links (networkx Dijkstra, one run per
distinct user site). Unreachable sites get `inf`.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from edgeplace.topology.spec import ScenarioSpec


def site_graph(spec: ScenarioSpec) -> nx.Graph:
    """Undirected graph of sites; edge weight `latency_ms` (the lowest of parallel links)."""
    graph = nx.Graph()
    graph.add_nodes_from(s.id for s in spec.sites)
    for link in spec.links:
        old = graph.get_edge_data(link.a, link.b)
        if old is None or link.latency_ms < old["latency_ms"]:
            graph.add_edge(link.a, link.b, latency_ms=link.latency_ms)
    return graph


def user_site_latency_ms(spec: ScenarioSpec) -> np.ndarray:
    """U x S matrix of one-way latency [ms] from each user location to each site."""
    site_index = {s.id: i for i, s in enumerate(spec.sites)}
    graph = site_graph(spec)
    from_site: dict[str, np.ndarray] = {}
    out = np.full((len(spec.users), len(spec.sites)), np.inf)
    for u, user in enumerate(spec.users):
        row = from_site.get(user.site)
        if row is None:
            row = np.full(len(spec.sites), np.inf)
            lengths = nx.single_source_dijkstra_path_length(graph, user.site, weight="latency_ms")
            for site, ms in lengths.items():
                row[site_index[site]] = ms
            from_site[user.site] = row
        out[u] = row + user.access_latency_ms
    return out
