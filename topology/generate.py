"""Seeded synthetic scenarios for tests and benchmarks.

`generate(n_workloads, n_nodes, ...)` returns a scenario document (what a
YAML file would parse to); `generate_scenario(...)` loads it into a
`Scenario`. The same arguments and seed always give the same document.

The shape follows the cloud-edge continuum, as a tree of sites:

    on-prem -> access -> metro / aggregation -> regional -> cloud

Every edge, metro and regional site draws power from one mixed grid region
(a German-like day: night ~380 g/kWh, solar dip at noon, evening peak); the
clouds sit in two or three grid regions of different character (the mixed
one, a low-carbon one, a coal-heavy one). Figures are drawn around
shared/REFERENCE.md ("Power of compute nodes", "Carbon intensity",
"Renewable supply"); examples/README.md explains them for the hand-written
example.

What a generated instance guarantees:
- it loads with no problems;
- every workload has at least one eligible node: a tight SLA is derived from
  the actual latency between its users and a chosen anchor site whose largest
  node fits the request, and loose SLAs (50-100 ms) exceed the longest
  user-to-site path of the tree (at most 41 ms);
- total CPU requested is about `load_factor` of the CPU capacity (less when
  requests are capped by node sizes), so instances are usually feasible as a
  whole while consolidation still matters. Tight services ask no anchor site
  for more than min(load_factor, 0.5) of its capacity, and the `never_with` pair's
  second tenant runs no tight services (at a one-node edge site the pair
  could not both meet a tight SLA). Feasibility of the whole instance
  (capacity per slot, `never_with`, spread) is likely, not proven: a plain
  first fit places instances from about 20 nodes up (tests/test_generate.py),
  while tiny ones (6-8 nodes, one node per site) can be infeasible.

Speed: all random draws are vectorised; Python loops only build the lists of
dicts. 10,000 workloads x 1,000 nodes x 24 slots build in well under a second.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from edgeplace.topology.load import scenario_from_dict
from edgeplace.topology.scenario import Scenario

# Tiers in tree order; the index is the tier code used below.
ONPREM, ACCESS, METRO, AGGREGATION, REGIONAL, CLOUD = range(6)
TIER_NAMES = ("on-prem", "access", "metro", "aggregation", "regional", "cloud")
#: Relative number of nodes per site, by tier (clouds and regional DCs are big).
TIER_NODE_WEIGHT = np.array([2.0, 3.0, 8.0, 6.0, 20.0, 40.0])
#: PUE range per tier: small edge rooms 1.6-2.0, colocation 1.5-1.6, hyperscale
#: 1.1-1.2 (shared/REFERENCE.md "Power of compute nodes"); metro/aggregation in between.
TIER_PUE = np.array([[1.6, 2.0], [1.6, 2.0], [1.5, 1.7], [1.5, 1.7], [1.4, 1.6], [1.1, 1.2]])

#: One-way link latency ranges [ms] from a site to its parent (child tier -> parent).
LINK_MS = {ONPREM: (0.5, 2.0), ACCESS: (1.0, 3.0), METRO: (2.0, 5.0), REGIONAL: (2.0, 5.0)}
#: Regional hub to a cloud region on the home grid, and to the far clouds [ms].
CLOUD_HOME_MS, CLOUD_FAR_MS = (5.0, 10.0), (10.0, 25.0)
#: User access hop [ms]: wired on-prem LANs, 5G / fixed access.
USER_ONPREM_MS, USER_ACCESS_MS = (0.2, 1.0), (1.0, 3.0)
#: Loose SLAs start here. The longest user-to-site path is a 5G user to a far
#: cloud, 3 + 3 + 5 + 5 + 25 = 41 ms (an on-prem user: 1 + 2 + 3 + 5 + 5 + 25),
#: so a loose service is eligible on every site.
LOOSE_SLA_MS = (50, 60, 70, 80, 90, 100)
#: Tight SLA classes [ms] and their shares (latency-critical services, 5-20 ms).
TIGHT_SLA_CLASSES_MS = (5.0, 8.0, 10.0, 15.0, 20.0)
TIGHT_SLA_CLASS_P = (0.35, 0.2, 0.25, 0.1, 0.1)

#: Clear-sky PV: daily yield per kWp on 21 June (Berlin, pvlib; shared/REFERENCE.md
#: "Renewable supply") and a sin^1.5 day between 04:00 and 20:00 UTC.
PV_KWH_PER_KWP_DAY = 7.4
SUNRISE_H, SUNSET_H = 4.0, 20.0
#: integral of sin(x)^1.5 over [0, pi] = sqrt(pi) Gamma(1.25) / Gamma(1.75)
_SIN15_INTEGRAL = math.sqrt(math.pi) * math.gamma(1.25) / math.gamma(1.75)
_PV_PEAK_KW_PER_KWP = PV_KWH_PER_KWP_DAY / (_SIN15_INTEGRAL * (SUNSET_H - SUNRISE_H) / math.pi)

#: Grid regions: id, description and the hourly profile coefficients
#: intensity(h) = base - dip x solar(h) + peak x evening(h) [gCO2/kWh].
#: mixed: a German-like summer day (2020 mean 313, hourly 100-590);
#: low: French-like (2020 mean 56); coal: Polish-like (~660, Ember 2023).
REGIONS = (
    ("grid-mixed", "mixed grid with solar (German-like)", 380.0, 210.0, 70.0),
    ("grid-low", "low-carbon grid (French / Nordic-like)", 52.0, 4.0, 15.0),
    ("grid-coal", "coal-heavy grid (Polish-like)", 690.0, 60.0, 40.0),
)

#: Small devices (shared/REFERENCE.md "Power of compute nodes"): Raspberry Pi 4
#: 2.6 / 7.3 W, Jetson Nano 5 / 10 W; embodied carbon is an assumption
#: (no reference figure), 10 and 15 kgCO2e.
PI4 = {"idle_w": 2.6, "max_w": 7.3}
JETSON = {"idle_w": 5.0, "max_w": 10.0}
DEVICE_CPU_MILLICORES, DEVICE_MEMORY_MIB = 4000, 3584


def generate(n_workloads: int, n_nodes: int, n_slots: int = 24, n_sites: int | None = None,
             n_tenants: int = 3, seed: int = 0, *, deferrable_share: float = 0.25,
             tight_sla_share: float = 0.3, load_factor: float = 0.45, slot_minutes: int = 60,
             start: str = "2026-06-21T00:00:00Z", dedicated_tenant: bool = True,
             never_with: bool = True) -> dict[str, Any]:
    """A synthetic scenario document (see the module docstring).

    Parameters
    ----------
    n_workloads, n_nodes : sizes; `n_nodes` >= `n_sites` (every site has a node).
    n_slots, slot_minutes, start : the horizon (UTC ISO 8601 start).
    n_sites : default about one site per 6 nodes, at least 6.
    n_tenants : tenants `tenant-0`, ...; with `dedicated_tenant` and >= 2
        tenants, `tenant-0` runs only on its own pool (the nodes of the first
        on-prem site); with `never_with` and >= 3 tenants, `tenant-1` and
        `tenant-2` never share a node.
    seed : seed of the numpy Generator; same arguments, same document.
    deferrable_share : share of workloads that are deferrable batch jobs.
    tight_sla_share : share with a 5-20 ms SLA; the rest are 50-100 ms services.
    load_factor : total CPU requested (all replicas) / total CPU capacity, before
        requests are capped by node sizes.
    """
    _check_arguments(n_workloads, n_nodes, n_slots, n_sites, n_tenants, deferrable_share,
                     tight_sla_share, load_factor, slot_minutes)
    rng = np.random.default_rng(seed)
    n_sites = n_sites if n_sites is not None else int(np.clip(round(n_nodes / 6), 6, n_nodes))
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    hours = (t0.hour + t0.minute / 60 + (np.arange(n_slots) + 0.5) * slot_minutes / 60) % 24

    dedicated = dedicated_tenant and n_tenants >= 2
    conflict = never_with and n_tenants >= 3

    sites = _sites(rng, n_sites)
    nodes = _nodes(rng, sites, n_nodes, dedicated)
    users = _users(rng, sites)
    work = _workloads(rng, sites, nodes, users, n_workloads, n_slots, slot_minutes, n_tenants,
                      deferrable_share, tight_sla_share, load_factor, dedicated, conflict)

    boundaries = [_iso(t0 + timedelta(minutes=slot_minutes * t)) for t in range(n_slots + 1)]
    used_regions = sorted(set(sites["region"].tolist()))
    return {
        "version": 1,
        "name": f"generated-w{n_workloads}-n{n_nodes}-s{seed}",
        "description": (f"Synthetic cloud-edge scenario (edgeplace.topology.generate, seed {seed}): {n_workloads} workloads, "
                        f"{n_nodes} nodes, {n_sites} sites, {n_tenants} tenants, {n_slots} slots; "
                        f"deferrable_share {deferrable_share}, tight_sla_share {tight_sla_share}, "
                        f"load_factor {load_factor}."),
        "horizon": {"start": boundaries[0], "slots": n_slots, "slot_minutes": slot_minutes},
        "regions": [{"id": REGIONS[g][0], "description": REGIONS[g][1]} for g in used_regions],
        "sites": _site_docs(sites),
        "nodes": _node_docs(nodes, sites),
        "links": _link_docs(sites),
        "users": [{"id": uid, "site": sites["id"][s], "access_latency_ms": ms}
                  for uid, s, ms in zip(users["id"], users["site"].tolist(), users["access_ms"].tolist())],
        "tenants": _tenant_docs(n_tenants, dedicated, conflict),
        "workloads": _workload_docs(work, users, boundaries),
        "signals": _signal_docs(rng, sites, nodes, used_regions, hours),
    }


def generate_scenario(n_workloads: int, n_nodes: int, n_slots: int = 24, n_sites: int | None = None,
                      n_tenants: int = 3, seed: int = 0, **options: Any) -> Scenario:
    """`generate(...)` loaded into a `Scenario` (validated like a file)."""
    doc = generate(n_workloads, n_nodes, n_slots, n_sites, n_tenants, seed, **options)
    return scenario_from_dict(doc, source=f"<generated {doc['name']}>")


# ---------------------------------------------------------------------------
# Arguments


def _check_arguments(n_workloads, n_nodes, n_slots, n_sites, n_tenants, deferrable_share,
                     tight_sla_share, load_factor, slot_minutes) -> None:
    if n_workloads < 0:
        raise ValueError(f"n_workloads must be >= 0 (got {n_workloads})")
    if n_sites is not None and n_sites < 6:
        raise ValueError(f"n_sites must be >= 6: on-prem, access, metro, regional and two clouds (got {n_sites})")
    if n_nodes < max(6, n_sites or 6):
        raise ValueError(f"n_nodes must be >= n_sites (at least 6) so every site has a node (got {n_nodes})")
    if n_slots < 1 or not 1 <= slot_minutes <= 1440:
        raise ValueError(f"need n_slots >= 1 and 1 <= slot_minutes <= 1440 (got {n_slots}, {slot_minutes})")
    if n_tenants < 1:
        raise ValueError(f"n_tenants must be >= 1 (got {n_tenants})")
    if not (0 <= deferrable_share <= 1 and 0 <= tight_sla_share <= 1 and deferrable_share + tight_sla_share <= 1):
        raise ValueError("deferrable_share and tight_sla_share must be in [0, 1] and sum to at most 1 "
                         f"(got {deferrable_share}, {tight_sla_share})")
    if not 0 < load_factor <= 1:
        raise ValueError(f"load_factor must be in (0, 1] (got {load_factor})")


# ---------------------------------------------------------------------------
# Sites, links and latency


def _sites(rng: np.random.Generator, n_sites: int) -> dict[str, np.ndarray]:
    """Tiers, tree parents, link latencies and grid regions of every site."""
    n_cloud = 3 if n_sites >= 9 else 2
    n_regional = 2 if n_sites >= 40 else 1
    rest = n_sites - n_cloud - n_regional
    n_metro = max(1, round(0.1 * rest))
    n_access = max(1, round((rest - n_metro) * 2 / 3))
    n_onprem = rest - n_metro - n_access
    counts = [n_onprem, n_access, n_metro, n_regional, n_cloud]
    first = np.cumsum([0, *counts])  # first site index of each group
    onprem, access, metro, regional, cloud = (np.arange(first[k], first[k + 1]) for k in range(5))

    tier = np.empty(n_sites, dtype=np.int64)
    tier[onprem], tier[access], tier[regional], tier[cloud] = ONPREM, ACCESS, REGIONAL, CLOUD
    tier[metro] = np.where(np.arange(n_metro) % 2 == 1, AGGREGATION, METRO)  # every other hub aggregates

    # Tree: each group hangs round-robin under the next one up; regional 0 is the root.
    parent = np.full(n_sites, -1, dtype=np.int64)
    parent[onprem] = access[np.arange(n_onprem) % n_access]
    parent[access] = metro[np.arange(n_access) % n_metro]
    parent[metro] = regional[np.arange(n_metro) % n_regional]
    parent[regional[1:]] = regional[0]
    parent[cloud] = regional[0]
    link_ms = np.zeros(n_sites)
    for group, key in ((onprem, ONPREM), (access, ACCESS), (metro, METRO), (regional[1:], REGIONAL)):
        link_ms[group] = rng.uniform(*LINK_MS[key], group.size)
    link_ms[cloud[0]] = rng.uniform(*CLOUD_HOME_MS)
    link_ms[cloud[1:]] = rng.uniform(*CLOUD_FAR_MS, n_cloud - 1)
    link_ms = np.round(link_ms, 1)

    # Depth from the root [ms], filled parents-first (the groups go root-wards to leaves).
    depth = np.zeros(n_sites)
    for group in (regional[1:], cloud, metro, access, onprem):
        depth[group] = depth[parent[group]] + link_ms[group]

    region = np.zeros(n_sites, dtype=np.int64)  # all edge and core sites on the mixed grid
    region[cloud] = np.arange(n_cloud)  # cloud 0 mixed, 1 low-carbon, 2 coal-heavy

    pue = np.round(rng.uniform(TIER_PUE[tier, 0], TIER_PUE[tier, 1]), 2)
    hub = (tier == METRO) | (tier == AGGREGATION)
    has_pv = (hub & (rng.random(n_sites) < 0.5)) | ((tier == ACCESS) & (rng.random(n_sites) < 0.1))
    pv_kwp = np.where(has_pv, np.round(rng.uniform(20, 100, n_sites)), 0.0)  # 20-100 kWp rooftops
    battery_kwh = np.where(has_pv & (rng.random(n_sites) < 1 / 3), np.round(rng.uniform(10, 50, n_sites)), 0.0)

    names = {ONPREM: "onprem", ACCESS: "access", METRO: "metro", AGGREGATION: "agg", REGIONAL: "regional", CLOUD: "cloud"}
    ids = [f"{names[t]}-{i}" for i, t in enumerate(tier.tolist())]
    for k, c in enumerate(cloud.tolist()):
        ids[c] = f"cloud-{REGIONS[k][0].removeprefix('grid-')}"
    return {"id": ids, "tier": tier, "parent": parent, "link_ms": link_ms, "depth_ms": depth,
            "region": region, "pue": pue, "pv_kwp": pv_kwp, "battery_kwh": battery_kwh,
            "metro_of": _metro_of(tier, parent)}


def _metro_of(tier: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """The metro/aggregation hub above each on-prem and access site (-1 elsewhere)."""
    hub = np.full(tier.size, -1, dtype=np.int64)
    is_hub = (tier == METRO) | (tier == AGGREGATION)
    hub[is_hub] = np.flatnonzero(is_hub)
    acc = tier == ACCESS
    hub[acc] = parent[acc]
    onp = tier == ONPREM
    hub[onp] = parent[parent[onp]]
    return hub


def _path_ms(sites: dict[str, np.ndarray], src: np.ndarray) -> np.ndarray:
    """len(src) x S tree distance [ms] from each site in `src` to every site.

    dist(u, s) = depth(u) + depth(s) - 2 depth(lowest common ancestor). The
    tree is at most 6 levels deep, so ancestor chains are short arrays.
    """
    parent, depth = sites["parent"], sites["depth_ms"]
    S = parent.size
    chain = [np.arange(S)]
    while (chain[-1] >= 0).any():
        prev = chain[-1]
        chain.append(np.where(prev >= 0, parent[np.maximum(prev, 0)], -1))
    chain = np.stack(chain[:-1], axis=1)  # S x L, chain[s, 0] = s, then ancestors, -1 padded
    lca_depth = np.full((src.size, S), np.nan)
    for k in range(chain.shape[1]):
        anc = chain[src, k]  # the k-th ancestor of each source site
        ok = anc >= 0
        # Sites whose chain contains `anc` lie below it; the first such k is the LCA.
        below = (chain[None, :, :] == anc[:, None, None]).any(axis=2) & ok[:, None]
        fresh = below & np.isnan(lca_depth)
        lca_depth[fresh] = np.broadcast_to(depth[np.maximum(anc, 0)][:, None], fresh.shape)[fresh]
    return depth[src][:, None] + depth[None, :] - 2 * lca_depth


# ---------------------------------------------------------------------------
# Nodes


def _nodes(rng: np.random.Generator, sites: dict[str, np.ndarray], n_nodes: int, dedicated: bool) -> dict[str, Any]:
    tier = sites["tier"]
    S = tier.size
    # Every site gets a node; the rest go by tier weight (largest remainder, deterministic).
    weight = TIER_NODE_WEIGHT[tier]
    raw = (n_nodes - S) * weight / weight.sum()
    extra = np.floor(raw).astype(np.int64)
    short = n_nodes - S - int(extra.sum())
    extra[np.argsort(-(raw - extra), kind="stable")[:short]] += 1
    site = np.repeat(np.arange(S), 1 + extra)
    N = n_nodes
    ntier = tier[site]
    edge = (ntier == ONPREM) | (ntier == ACCESS)
    first_at_site = np.r_[True, site[1:] != site[:-1]]

    # Kinds: 10 % of edge nodes are small devices (never the first node of a site,
    # so every site keeps a real box); ~6 % of core nodes carry GPUs.
    device = edge & ~first_at_site & (rng.random(N) < 0.10)
    jetson = device & (rng.random(N) < 0.3)
    gpu_count = np.where(~edge & (rng.random(N) < 0.06), rng.choice([1, 2, 4], N, p=[0.5, 0.3, 0.2]), 0)
    low_cloud = np.flatnonzero((ntier == CLOUD) & (sites["region"][site] == 1))
    if low_cloud.size:
        gpu_count[low_cloud[0]] = max(int(gpu_count[low_cloud[0]]), 1)  # at least one shared GPU node
    gpu_count[jetson] = 1

    cores = np.where(edge, rng.choice([8, 16, 24, 32], N, p=[0.2, 0.4, 0.2, 0.2]),
                     rng.choice([32, 64, 96, 128], N, p=[0.2, 0.4, 0.2, 0.2]))
    mib_per_core = np.where(edge, rng.choice([2048, 4096], N), rng.choice([2048, 4096, 8192], N, p=[0.25, 0.5, 0.25]))
    cpu = cores * 1000
    memory = cores * mib_per_core
    cpu[device], memory[device] = DEVICE_CPU_MILLICORES, DEVICE_MEMORY_MIB

    # Power (shared/REFERENCE.md "Power of compute nodes"): edge boxes idle at
    # 40-60 % of max; recent servers ~115 W / 490 W at 64 cores, idle ~20 % of max
    # (scaled sub-linearly with cores); each GPU adds ~30 W idle / ~300 W max (assumption).
    box_max = (60 + 7 * cores) * rng.uniform(0.8, 1.2, N)
    server_max = 490 * (cores / 64) ** 0.9 * rng.uniform(0.85, 1.15, N)
    max_w = np.where(edge, box_max, server_max)
    idle_w = max_w * np.where(edge, rng.uniform(0.4, 0.6, N), rng.uniform(0.18, 0.28, N))
    max_w += 300 * gpu_count * ~jetson
    idle_w += 30 * gpu_count * ~jetson
    max_w = np.where(device, np.where(jetson, JETSON["max_w"], PI4["max_w"]), np.round(max_w))
    idle_w = np.where(device, np.where(jetson, JETSON["idle_w"], PI4["idle_w"]), np.round(idle_w))
    # 10 % of servers publish an 11-point SPECpower-style curve instead: concave,
    # P(u) = idle + (max - idle) u^gamma, gamma 0.75-0.95.
    curve = ~edge & (rng.random(N) < 0.10)
    gamma = rng.uniform(0.75, 0.95, N)
    points = np.round(idle_w[:, None] + (max_w - idle_w)[:, None] * (np.arange(11) / 10)[None, :] ** gamma[:, None], 1)

    dedicated_to = np.zeros(N, dtype=bool)
    if dedicated:
        dedicated_to = site == 0  # the first on-prem site is tenant-0's pool
    always_on = (ntier == ONPREM) & (rng.random(N) < 0.3)
    background = np.where(edge, np.round(rng.uniform(0.03, 0.10, N), 3), 0.0)
    cls = np.where(jetson, "gpu-embedded", np.where(device, "device", np.where(gpu_count > 0, "gpu",
                                                                                 np.where(edge, "edge", "general"))))
    return {"site": site, "cpu": cpu, "memory": memory, "gpu": gpu_count, "idle_w": idle_w, "max_w": max_w,
            "curve": curve, "points": points, "device": device, "jetson": jetson, "dedicated": dedicated_to,
            "always_on": always_on, "background": background, "class": cls, "edge": edge}


# ---------------------------------------------------------------------------
# Users and workloads


def _users(rng: np.random.Generator, sites: dict[str, np.ndarray]) -> dict[str, Any]:
    """One demand source per on-prem and access site."""
    site = np.flatnonzero((sites["tier"] == ONPREM) | (sites["tier"] == ACCESS))
    onprem = sites["tier"][site] == ONPREM
    ms = np.where(onprem, rng.uniform(*USER_ONPREM_MS, site.size), rng.uniform(*USER_ACCESS_MS, site.size))
    access_ms = np.round(ms, 1)
    latency = access_ms[:, None] + _path_ms(sites, site)  # U x S [ms]
    return {"id": [f"users-{sites['id'][s]}" for s in site.tolist()], "site": site,
            "access_ms": access_ms, "latency_ms": latency}


def _biggest(nodes: dict[str, Any], mask: np.ndarray, by_site: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cpu, memory) of the largest-CPU node in `mask`, overall or per site (by_site = S)."""
    idx = np.flatnonzero(mask)
    if by_site is None:
        best = idx[np.argmax(nodes["cpu"][idx])] if idx.size else -1
        return (np.array(nodes["cpu"][best] if best >= 0 else 0), np.array(nodes["memory"][best] if best >= 0 else 0))
    cpu = np.zeros(by_site, dtype=np.int64)
    mem = np.zeros(by_site, dtype=np.int64)
    # Sort by site, then cpu: the last node of each site's run is its largest.
    order = idx[np.lexsort((nodes["cpu"][idx], nodes["site"][idx]))]
    site = nodes["site"][order]
    last = order[np.r_[site[1:] != site[:-1], True]] if order.size else order
    cpu[nodes["site"][last]] = nodes["cpu"][last]
    mem[nodes["site"][last]] = nodes["memory"][last]
    return cpu, mem


def _workloads(rng, sites, nodes, users, W, T, slot_minutes, M, deferrable_share, tight_share,
               load_factor, dedicated, conflict) -> dict[str, Any]:
    S = sites["tier"].size
    pool_site = 0 if dedicated else -1  # the first on-prem site
    shared = ~nodes["dedicated"]

    # Kind: 0 tight service, 1 loose service, 2 deferrable batch job.
    u = rng.random(W)
    kind = np.where(u < deferrable_share, 2, np.where(u < deferrable_share + tight_share, 0, 1))
    tenant = rng.integers(1 if dedicated else 0, M, W) if M > 1 else np.zeros(W, dtype=np.int64)
    if dedicated and W:
        pool_cpu = nodes["cpu"][nodes["dedicated"]].sum()
        k0 = max(1, round(W * pool_cpu / nodes["cpu"].sum()))
        tenant[rng.choice(W, size=min(k0, W), replace=False)] = 0
    in_pool = tenant == 0 if dedicated else np.zeros(W, dtype=bool)
    if conflict:
        # tenant-2 (never_with tenant-1) runs no tight services: at a one-node edge
        # site the pair could not both meet a tight SLA. Its tight draws go to tenant-1.
        tenant[(kind == 0) & (tenant == 2)] = 1

    replicas = np.where(kind == 2, rng.choice([1, 2], W, p=[0.8, 0.2]), rng.choice([1, 2, 3, 4], W, p=[0.3, 0.4, 0.2, 0.1]))
    cpu_raw = np.where(kind == 2, rng.choice([1000, 2000, 4000, 8000, 16000], W, p=[0.15, 0.25, 0.3, 0.2, 0.1]),
                       rng.choice([250, 500, 1000, 2000, 4000], W, p=[0.15, 0.25, 0.3, 0.2, 0.1])).astype(float)
    mib_per_millicore = rng.choice([1.024, 2.048, 4.096], W, p=[0.3, 0.5, 0.2])
    usage = np.round(np.where(kind == 2, rng.uniform(0.7, 1.0, W), rng.uniform(0.2, 0.7, W)), 2)

    # GPU jobs: ~20 % of batch jobs outside the pool, one GPU each, no more jobs than
    # half the shared GPUs, rounded up (so they fit even if they all run at once).
    gpu_nodes = shared & (nodes["gpu"] > 0) & ~nodes["jetson"]
    gpu_job = (kind == 2) & ~in_pool & (rng.random(W) < 0.2)
    gpu_job &= np.cumsum(gpu_job) <= (int(nodes["gpu"][gpu_nodes].sum()) + 1) // 2
    replicas[gpu_job] = 1

    # Users and SLAs. A pool workload serves the pool's users; the others serve
    # users outside the pool. A tight SLA is drawn from the 5-20 ms classes and
    # raised, where needed, to the worst latency from its users to an anchor site
    # (the user's own site for 40 %, else the users' hub) + 0.5 ms, rounded up to
    # 0.5 ms: the anchor's nodes always meet it.
    user_metro = sites["metro_of"][users["site"]]
    outside = np.flatnonzero(users["site"] != pool_site)
    pool_user = np.flatnonzero(users["site"] == pool_site)
    primary = np.where(in_pool, pool_user[0] if pool_user.size else 0, rng.choice(outside, W))
    # A second user under the same hub for 30 % of tight services (same subtree keeps the SLA reachable).
    by_metro_order = outside[np.argsort(user_metro[outside], kind="stable")]
    hub_start = np.searchsorted(user_metro[by_metro_order], user_metro[primary], side="left")
    hub_end = np.searchsorted(user_metro[by_metro_order], user_metro[primary], side="right")
    pick = hub_start + np.floor(rng.random(W) * np.maximum(hub_end - hub_start, 1)).astype(np.int64)
    second = np.where((kind == 0) & ~in_pool & (hub_end > hub_start) & (rng.random(W) < 0.3),
                      by_metro_order[np.minimum(pick, by_metro_order.size - 1)], primary)
    own_site = in_pool | (rng.random(W) < 0.4)
    anchor = np.where(own_site, users["site"][primary], user_metro[primary])
    lat = np.maximum(users["latency_ms"][primary, anchor], users["latency_ms"][second, anchor])
    tight_ms = np.maximum(rng.choice(TIGHT_SLA_CLASSES_MS, W, p=TIGHT_SLA_CLASS_P), np.ceil((lat + 0.5) * 2) / 2)
    loose_ms = rng.choice(LOOSE_SLA_MS, W).astype(float)
    sla_ms = np.where(kind == 0, tight_ms, np.where(kind == 1, loose_ms, np.nan))
    # Loose services serve 1-3 users (a pool service only its own users).
    n_users = np.where(kind == 1, rng.integers(1, 4, W), np.where(second != primary, 2, 1))
    n_users[in_pool] = 1
    extra_users = rng.choice(outside, (W, 2))

    # Requests. Cap each at half the largest node the workload may use, so a replica
    # always fits an eligible node and packing stays fine-grained. Then scale:
    # - the pool's workloads to load_factor of the pool;
    # - tight services so that no anchor site is asked for more than
    #   min(load_factor, 0.5) of its CPU and memory (they may not leave its area);
    # - loose services and batch jobs to what is left of load_factor x shared CPU.
    site_cpu, site_mem = _biggest(nodes, shared & ~nodes["device"], by_site=S)
    all_cpu, all_mem = _biggest(nodes, shared & ~nodes["device"])
    gpu_cpu, gpu_mem = _biggest(nodes, gpu_nodes)
    pool_cpu_cap, pool_mem_cap = _biggest(nodes, nodes["dedicated"]) if dedicated else (np.array(0), np.array(0))
    cap_cpu = np.where(kind == 0, site_cpu[anchor], all_cpu)
    cap_mem = np.where(kind == 0, site_mem[anchor], all_mem)
    cap_cpu, cap_mem = np.where(gpu_job, gpu_cpu, cap_cpu), np.where(gpu_job, gpu_mem, cap_mem)
    cap_cpu, cap_mem = np.where(in_pool, pool_cpu_cap, cap_cpu), np.where(in_pool, pool_mem_cap, cap_mem)
    cap_cpu = np.maximum(cap_cpu // 2, np.minimum(cap_cpu, 250))  # half a node, but at least 250 m when it fits
    cap_mem = np.maximum(cap_mem // 2, np.minimum(cap_mem, 256))

    cpu = cpu_raw.copy()
    tight = (kind == 0) & ~in_pool
    shared_cpu = float(nodes["cpu"][shared].sum())
    _fill(cpu, in_pool, load_factor * float(nodes["cpu"][nodes["dedicated"]].sum()), cap_cpu, replicas)
    cpu[~in_pool] *= load_factor * shared_cpu / max(float((cpu_raw * replicas)[~in_pool].sum()), 1.0)
    box = shared & ~nodes["device"]
    site_cap_cpu = np.bincount(nodes["site"][box], weights=nodes["cpu"][box], minlength=S)
    site_cap_mem = np.bincount(nodes["site"][box], weights=nodes["memory"][box], minlength=S)
    demand_cpu = np.bincount(anchor[tight], weights=(cpu * replicas)[tight], minlength=S)
    demand_mem = np.bincount(anchor[tight], weights=(cpu * mib_per_millicore * replicas)[tight], minlength=S)
    share = min(load_factor, 0.5)
    room = np.full(S, np.inf)
    scale = np.minimum(np.divide(share * site_cap_cpu, demand_cpu, out=room.copy(), where=demand_cpu > 0),
                       np.divide(share * site_cap_mem, demand_mem, out=room.copy(), where=demand_mem > 0))
    scale = np.minimum(scale, 1.0)
    cpu[tight] *= scale[anchor[tight]]
    cpu = np.minimum(cpu, cap_cpu)
    rest = ~in_pool & ~tight
    _fill(cpu, rest, load_factor * shared_cpu - float((cpu * replicas)[tight].sum()), cap_cpu, replicas)
    cpu_m = np.minimum(np.maximum(np.round(cpu / 50) * 50, 50), cap_cpu).astype(np.int64)
    mem_mib = np.minimum(np.maximum(np.round(cpu_m * mib_per_millicore / 64) * 64, 64), cap_mem).astype(np.int64)

    # Deferral windows: 1-4 h runs in windows 2-12 h longer, inside the horizon.
    dur = np.minimum(np.ceil(rng.choice([60, 120, 180, 240], W) / slot_minutes).astype(np.int64), T)
    win = np.minimum(dur + np.ceil(rng.uniform(2, 12, W) * 60 / slot_minutes).astype(np.int64), T)
    earliest = np.floor(rng.random(W) * (T - win + 1)).astype(np.int64)

    spread = (kind == 1) & (replicas >= 2) & ~in_pool & (rng.random(W) < 0.4)
    return {"kind": kind, "tenant": tenant, "replicas": replicas, "cpu": cpu_m, "memory": mem_mib,
            "gpu_job": gpu_job, "usage": usage, "sla_ms": sla_ms, "primary": primary, "second": second,
            "n_users": n_users, "extra_users": extra_users, "spread": spread, "earliest": earliest,
            "deadline": earliest + win, "duration_minutes": dur * slot_minutes}


def _fill(cpu: np.ndarray, part: np.ndarray, target: float, cap: np.ndarray, replicas: np.ndarray) -> None:
    """Scale cpu[part] in place so sum(cpu x replicas) over `part` is `target`, each
    capped at `cap`; a second pass lifts the uncapped ones to make up for the capped."""
    for _ in range(2):
        capped = part & (cpu >= cap)
        free = part & ~capped
        need = target - float((np.minimum(cpu, cap) * replicas)[capped].sum())
        have = float((cpu * replicas)[free].sum())
        if have > 0 and need > 0:
            cpu[free] *= need / have
        np.minimum(cpu, cap, out=cpu)


# ---------------------------------------------------------------------------
# Documents


def _site_docs(sites: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for sid, t, g, pue, pv, bat in zip(sites["id"], sites["tier"].tolist(), sites["region"].tolist(),
                                       sites["pue"].tolist(), sites["pv_kwp"].tolist(), sites["battery_kwh"].tolist()):
        item: dict[str, Any] = {"id": sid, "tier": TIER_NAMES[t], "region": REGIONS[g][0], "pue": pue}
        if pv:
            item["pv_kwp"] = pv
        if bat:
            item["battery_kwh"] = bat
        out.append(item)
    return out


def _link_docs(sites: dict[str, Any]) -> list[dict[str, Any]]:
    ids = sites["id"]
    return [{"a": ids[s], "b": ids[p], "latency_ms": ms}
            for s, (p, ms) in enumerate(zip(sites["parent"].tolist(), sites["link_ms"].tolist())) if p >= 0]


def _node_docs(nodes: dict[str, Any], sites: dict[str, Any]) -> list[dict[str, Any]]:
    site_ids = sites["id"]
    cols = zip(nodes["site"].tolist(), nodes["cpu"].tolist(), nodes["memory"].tolist(), nodes["gpu"].tolist(),
               nodes["idle_w"].tolist(), nodes["max_w"].tolist(), nodes["curve"].tolist(), nodes["points"].tolist(),
               nodes["device"].tolist(), nodes["jetson"].tolist(), nodes["dedicated"].tolist(),
               nodes["always_on"].tolist(), nodes["background"].tolist(), nodes["class"].tolist())
    out = []
    for i, (s, cpu, mem, gpu, idle, mx, curve, pts, dev, jet, ded, on, bg, cls) in enumerate(cols):
        capacity: dict[str, int] = {"cpu_millicores": cpu, "memory_mib": mem}
        if gpu:
            capacity["gpu"] = gpu
        item: dict[str, Any] = {"id": f"n{i}-{site_ids[s]}", "site": site_ids[s], "capacity": capacity,
                                "power": {"points_w": pts} if curve else {"idle_w": idle, "max_w": mx},
                                "labels": {"class": cls}}
        if on:
            item["can_power_down"] = False
        if bg:
            item["background_utilisation"] = bg
        if ded:
            item["dedicated_to"] = "tenant-0"
        if dev:
            item["embodied"] = {"per_node_kg": 15.0 if jet else 10.0, "lifetime_years": 4.0}
        out.append(item)
    return out


def _tenant_docs(M: int, dedicated: bool, conflict: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": f"tenant-{m}"} for m in range(M)]
    if dedicated:
        out[0]["isolation"] = {"dedicated_nodes": True}
    if conflict:
        out[1]["isolation"] = {"never_with": ["tenant-2"]}
    return out


def _workload_docs(work: dict[str, Any], users: dict[str, Any], boundaries: list[str]) -> list[dict[str, Any]]:
    uid = users["id"]
    prefix = ("tight", "svc", "job")
    cols = zip(work["kind"].tolist(), work["tenant"].tolist(), work["replicas"].tolist(), work["cpu"].tolist(),
               work["memory"].tolist(), work["gpu_job"].tolist(), work["usage"].tolist(), work["sla_ms"].tolist(),
               work["primary"].tolist(), work["second"].tolist(), work["n_users"].tolist(),
               work["extra_users"].tolist(), work["spread"].tolist(), work["earliest"].tolist(),
               work["deadline"].tolist(), work["duration_minutes"].tolist())
    out = []
    for w, (kind, m, reps, cpu, mem, gpu, use, sla, u1, u2, nu, extra, spread, first, end, minutes) in enumerate(cols):
        requests: dict[str, int] = {"cpu_millicores": cpu, "memory_mib": mem}
        item: dict[str, Any] = {"id": f"{prefix[kind]}-{w}", "tenant": f"tenant-{m}", "replicas": reps,
                                "requests": requests, "cpu_usage_fraction": use}
        if gpu:
            requests["gpu"] = 1
            item["node_selector"] = {"class": "gpu"}
        if kind == 2:
            item["kind"] = "batch"
            item["deferral"] = {"earliest_start": boundaries[first], "deadline": boundaries[end],
                                "duration_minutes": minutes}
        else:
            served = [uid[u1]] if kind == 1 else list(dict.fromkeys((uid[u1], uid[u2])))
            if kind == 1 and nu > 1:
                served = list(dict.fromkeys([uid[u1], *(uid[e] for e in extra[: nu - 1])]))
            item["sla"] = {"latency_ms": sla, "users": served}
        if spread:
            item["spread"] = {"min_sites": 2}
        out.append(item)
    return out


def _signal_docs(rng: np.random.Generator, sites: dict[str, Any], nodes: dict[str, Any],
                 used_regions: list[int], hours: np.ndarray) -> list[dict[str, Any]]:
    T = hours.size
    solar = np.clip(np.sin(np.pi * (hours - SUNRISE_H) / (SUNSET_H - SUNRISE_H)), 0, None) ** 1.5
    evening = np.exp(-(((hours - 19.5) / 2.5) ** 2))
    out: list[dict[str, Any]] = []
    for g in used_regions:
        rid, _, base, dip, peak = REGIONS[g]
        level = rng.uniform(0.9, 1.1)  # day-to-day level
        values = (base - dip * solar + peak * evening) * level * (1 + 0.04 * rng.standard_normal(T))
        out.append({"signal": "grid_intensity", "region": rid, "unit": "gCO2/kWh", "intensity_kind": "average",
                    "values": np.round(np.maximum(values, 1.0), 1).tolist()})
    # Clear-sky PV scaled to 7.4 kWh/kWp a day, times a per-site cloudiness factor 0.6-1.0.
    pv_sites = np.flatnonzero(sites["pv_kwp"] > 0)
    sky = rng.uniform(0.6, 1.0, pv_sites.size)
    supply_kw = np.round(sites["pv_kwp"][pv_sites, None] * _PV_PEAK_KW_PER_KWP * solar[None, :] * sky[:, None], 2)
    out += [{"signal": "renewable_supply", "site": sites["id"][s], "unit": "kW", "values": row}
            for s, row in zip(pv_sites.tolist(), supply_kw.tolist())]
    # Diurnal background load on ~10 % of edge nodes: the node's level +/- 40 % over the day.
    varied = np.flatnonzero(nodes["edge"] & (nodes["background"] > 0) & (rng.random(nodes["edge"].size) < 0.1))
    day = np.clip(np.sin(np.pi * (hours - 6) / 16), 0, None)
    base = nodes["background"][varied, None]
    util = np.round(np.clip(base * (0.6 + 0.8 * day[None, :]), 0.0, 1.0), 3)
    out += [{"signal": "background_utilisation", "node": f"n{i}-{sites['id'][nodes['site'][i]]}", "unit": "fraction",
             "values": row} for i, row in zip(varied.tolist(), util.tolist())]
    return out


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# Kubernetes scheduling constraints


def add_kubernetes_constraints(doc: dict[str, Any], seed: int = 0, share: float = 0.3) -> dict[str, Any]:
    """`doc` (from `generate`) with Kubernetes scheduling constraints, as a cluster would have them.

    Every node holds at most 110 pods (kubelet's default) and every workload's pods carry
    ``app: <id>`` and a ``tier`` label. Nodes of class ``gpu`` are tainted
    ``nvidia.com/gpu=present:NoSchedule`` and offer 4 ``nvidia.com/gpu``. Among the loose-SLA
    services of tenants without a dedicated pool, about `share` each get one of: required
    hostname anti-affinity on themselves (multi-replica), DoNotSchedule hostname spread
    (max_skew 2), zone-region affinity to another loose service of their tenant, or node
    affinity to ``class In [general, gpu]``; about `share` of the deferrable jobs ask for one GPU
    with the toleration and node affinity ``class In [gpu]`` (when they fit a GPU node), as
    long as their replicas add up to half the GPUs there are. Loose
    services reach every site, so these keep the instance about as feasible as before; a
    workload that only GPU nodes can hold tolerates their taint.
    Returns a new document; `doc` is not changed.
    """
    import copy

    rng = np.random.default_rng(seed)
    base = scenario_from_dict(doc, source="<generated>")
    is_gpu = np.array([n.get("labels", {}).get("class") == "gpu" for n in doc["nodes"]])
    gpu_only = ~(base.workload_node_eligible & ~is_gpu[None, :]).any(axis=1)
    out = copy.deepcopy(doc)
    gpu_nodes = [n for n in out["nodes"] if n.get("labels", {}).get("class") == "gpu"]
    for n in out["nodes"]:
        n["capacity"]["pods"] = 110
    for n in gpu_nodes:
        n["capacity"]["nvidia.com/gpu"] = 4
        n["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    dedicated = {t["id"] for t in out["tenants"] if (t.get("isolation") or {}).get("dedicated_nodes")}
    gpu_cpu = max((n["capacity"]["cpu_millicores"] for n in gpu_nodes), default=0)
    loose: dict[str, list[dict]] = {}
    for k, w in enumerate(out["workloads"]):
        w["scheduling"] = {"labels": {"app": w["id"], "tier": "front" if rng.random() < 0.5 else "back"}}
        if gpu_only[k]:
            w["scheduling"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        if w["tenant"] not in dedicated and w.get("deferral") is None and (w.get("sla") or {}).get("latency_ms", 100) >= 50:
            loose.setdefault(w["tenant"], []).append(w)
    for services in loose.values():
        for i, w in enumerate(services):
            if rng.random() >= share:
                continue
            sch, kind = w["scheduling"], rng.integers(4)
            self_term = {"label_selector": {"match_labels": {"app": w["id"]}}}
            if kind == 0 and w["replicas"] > 1:
                sch["pod_anti_affinity"] = {"required": [{**self_term, "topology_key": "kubernetes.io/hostname"}]}
            elif kind == 1 and w["replicas"] > 1:
                sch["topology_spread"] = [{"max_skew": 2, "topology_key": "kubernetes.io/hostname",
                                           "when_unsatisfiable": "DoNotSchedule", **self_term}]
            elif kind == 2 and i > 0 and "spread" not in w:  # min_sites and one region can conflict
                target = services[int(rng.integers(i))]["id"]  # an earlier one: no cycle
                sch["pod_affinity"] = {"required": [{"label_selector": {"match_labels": {"app": target}},
                                                     "topology_key": "topology.kubernetes.io/region"}]}
            else:
                sch["node_affinity"] = {"required": [{"match_expressions": [
                    {"key": "class", "operator": "In", "values": ["general", "gpu"]}]}]}
    gpus_left = 2 * len(gpu_nodes)  # GPU jobs ask for half the GPUs there are (never_with tenants cannot share a node)
    for w in out["workloads"]:
        if (w.get("deferral") is not None and w["tenant"] not in dedicated and rng.random() < share
                and w["requests"]["cpu_millicores"] <= gpu_cpu // 2 and w["replicas"] <= gpus_left):
            gpus_left -= w["replicas"]
            w["requests"]["nvidia.com/gpu"] = 1
            w["scheduling"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            w["scheduling"]["node_affinity"] = {"required": [{"match_expressions": [
                {"key": "class", "operator": "In", "values": ["gpu"]}]}]}
    return out


__all__ = ["add_kubernetes_constraints", "generate", "generate_scenario"]
