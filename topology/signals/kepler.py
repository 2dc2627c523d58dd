"""Measured node power from Kepler's energy counters, paired with CPU utilisation.

Sources of node energy (`ENERGY_SOURCES`, counters in joules):

- ``kepler`` (Kepler 0.10 and later, the current exporter):
  ``kepler_node_cpu_joules_total{zone, path, node_name}``, one series per
  RAPL zone and path; the zones summed are ``package`` and ``dram`` by
  default (CPU sockets and memory: not fans, disks or PSU losses, so the fit
  is a lower bound of the node's wall power), or ``psys`` (the whole
  platform, where the CPU exposes it). Kepler 0.10+ reports Redfish
  platform power only as a gauge (``kepler_platform_watts``), not read here.
- ``kepler-legacy`` (Kepler 0.7.x): ``kepler_node_platform_joules_total``
  (the whole node, from ACPI/Redfish or RAPL), summed over its ``mode``
  (dynamic, idle) series; node label ``instance``.

CPU utilisation comes from node_exporter's ``node_cpu_seconds_total
{mode="idle"}`` (one series per CPU; label ``instance``, host:port matched).

Both are read as stored samples (`Prometheus.raw_samples`), not through
`rate()`, so that energy and CPU time are differenced over exactly the same
intervals: each pair of consecutive energy samples (t0, t1] gives

    power_w     = (E(t1) - E(t0)) / (t1 - t0)
    utilisation = 1 - (idle(t1) - idle(t0)) / ((t1 - t0) x CPUs)

over windows (t0, t1] of consecutive energy samples at least `resolution_s`
long (default 60 s), with the idle counter interpolated linearly at t0 and
t1 between its own scrapes (exporters are scraped at different instants).
A window in which load moved by more than `steady_tolerance` (default 5
points, per CPU scrape interval over the scrapes around it) is dropped: a
point of the curve is read at steady load, and the interpolation between
CPU scrapes is exact there. Counter resets (a restarted Kepler, a rebooted node) drop the
interval they fall in and the counter continues from its new value; an
interval longer than `max_interval_s` (missing scrapes) is dropped and ends
a window, and a window whose CPU counter has no samples within
`max_interval_s` around either end is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgeplace.topology.signals.prometheus import Prometheus, RangeSeries, match_node


@dataclass(frozen=True)
class EnergySource:
    """Where a Kepler version keeps node energy."""

    name: str
    metric: str
    node_label: str
    zone_label: str | None  # the label the summed zones are picked by (None: sum every series)
    default_zones: tuple[str, ...]
    measures: str


ENERGY_SOURCES = {
    "kepler": EnergySource("kepler", "kepler_node_cpu_joules_total", "node_name", "zone", ("package", "dram"),
                           "RAPL zones (package + dram: CPU sockets and memory; psys: the platform)"),
    "kepler-legacy": EnergySource("kepler-legacy", "kepler_node_platform_joules_total", "instance", None, (),
                                  "the whole node (Kepler 0.7 platform energy, dynamic + idle)"),
}
CPU_METRIC = 'node_cpu_seconds_total{mode="idle"}'
#: An interval longer than this many median scrape intervals is a gap (missing scrapes).
GAP_FACTOR = 2.5
#: Consecutive intervals are joined into windows of at least this length [s]: the CPU
#: counter is interpolated at window ends between its own scrapes, and a load change
#: between those scrapes errs by at most (scrape offset / window) in utilisation.
DEFAULT_RESOLUTION_S = 60.0
#: A window is used only while utilisation, per CPU scrape interval around it, stays within
#: this band (fraction): a point of the curve is read at steady load.
DEFAULT_STEADY_TOLERANCE = 0.05


@dataclass
class NodeSamples:
    """Interval samples of one node: utilisation [0..1] and power [W], with what was dropped."""

    node: str
    utilisation: np.ndarray
    power_w: np.ndarray
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # set when the node has no usable data at all


def _continuous(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A counter made continuous across resets, and a mask of the samples that start a reset
    (the interval ending at them is unusable)."""
    drops = np.diff(values) < 0
    offset = np.concatenate([[0.0], np.cumsum(np.where(drops, values[:-1] - values[1:], 0.0))])
    return values + offset, np.concatenate([[False], drops])


def _summed(series: Sequence[RangeSeries]) -> tuple[np.ndarray, np.ndarray, int]:
    """Series of one target scraped together, summed at their common timestamps; each made
    continuous first. Returns times, values, and resets (a mask on times)."""
    common = series[0].times_s
    for s in series[1:]:
        common = np.intersect1d(common, s.times_s)
    total = np.zeros(common.size)
    reset = np.zeros(common.size, dtype=bool)
    for s in series:
        ok = np.isfinite(s.values)
        t, v = s.times_s[ok], s.values[ok]
        cont, r = _continuous(t, v)
        idx = np.searchsorted(t, common)
        idx = np.minimum(idx, t.size - 1)
        present = t[idx] == common
        total = np.where(present, total + cont[idx], np.nan)
        reset |= np.where(present, r[idx], False)
    keep = np.isfinite(total)
    return common[keep], total[keep], reset[keep]


def _covered(c_t: np.ndarray, t: np.ndarray, gap: float) -> np.ndarray:
    """Whether the counter sampled at `c_t` is known at each time `t`: a scrape at t, or
    scrapes on both sides of t at most `gap` apart."""
    n = c_t.size
    i = np.searchsorted(c_t, t, side="left")
    at = np.minimum(i, n - 1)
    exact = (i < n) & (c_t[at] == t)
    j = np.clip(i, 1, n - 1)
    between = (i >= 1) & (i < n) & ((c_t[j] - c_t[j - 1]) <= gap)
    return exact | between


def _windows(t: np.ndarray, usable: np.ndarray, resolution_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (start, end) into `t` of windows of consecutive usable intervals spanning at
    least `resolution_s` each; an unusable interval ends a window (its partial run is dropped)."""
    starts, ends = [], []
    first = None
    for k in range(t.size - 1):
        if not usable[k]:
            first = None
            continue
        if first is None:
            first = k
        if t[k + 1] - t[first] >= resolution_s:
            starts.append(first)
            ends.append(k + 1)
            first = None
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def _unsteady(c_t: np.ndarray, c_v: np.ndarray, n_cpu: int, t0: np.ndarray, t1: np.ndarray,
              tolerance: float) -> np.ndarray:
    """Windows in which utilisation, read per CPU scrape interval over the scrapes around
    the window, moves by more than `tolerance`: load changed inside, so the interpolated
    counter at the ends and the mixed power are not one point of the curve."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = 1.0 - np.diff(c_v) / (np.diff(c_t) * n_cpu)  # rate[j-1] covers (c_t[j-1], c_t[j]]
    j0 = np.clip(np.searchsorted(c_t, t0, side="left"), 1, c_t.size - 1)
    j1 = np.clip(np.searchsorted(c_t, t1, side="left"), 1, c_t.size - 1)
    spread = np.array([np.ptp(rate[a - 1:b]) if b >= a else 0.0 for a, b in zip(j0, j1)])
    return spread > tolerance


def pair_intervals(node: str, energy: Sequence[RangeSeries], cpu: Sequence[RangeSeries],
                   max_interval_s: float | None = None, resolution_s: float = DEFAULT_RESOLUTION_S,
                   steady_tolerance: float = DEFAULT_STEADY_TOLERANCE) -> NodeSamples:
    """Window samples of one node from its energy series (one per zone/path) and its
    per-CPU idle-time series (see the module docstring)."""
    e_t, e_v, e_reset = _summed(energy)
    c_t, c_v, c_reset = _summed(cpu)
    if e_t.size < 2 or c_t.size < 2:
        return NodeSamples(node, np.zeros(0), np.zeros(0), problem="fewer than two samples in the window")
    gap = max_interval_s or GAP_FACTOR * float(np.median(np.diff(e_t)))
    dt = np.diff(e_t)
    short = (dt > 0) & (dt <= gap)
    a, b = _windows(e_t, short & ~e_reset[1:], resolution_s)
    t0, t1 = e_t[a], e_t[b]
    known = _covered(c_t, t0, gap) & _covered(c_t, t1, gap)
    # A CPU reset flagged at scrape j lies in (c_t[j-1], c_t[j]]: it spoils every window
    # that overlaps that span.
    cum = np.concatenate([[0], np.cumsum(c_reset)])
    lo = np.searchsorted(c_t, t0, side="right")
    hi = np.minimum(np.searchsorted(c_t, t1, side="left"), c_t.size - 1)
    cpu_reset = (cum[hi + 1] - cum[np.minimum(lo, hi + 1)]) > 0
    unsteady = _unsteady(c_t, c_v, len(cpu), t0, t1, steady_tolerance) & known & ~cpu_reset
    ok = known & ~cpu_reset & ~unsteady
    idle0, idle1 = np.interp(t0, c_t, c_v), np.interp(t1, c_t, c_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        power = (e_v[b] - e_v[a]) / (t1 - t0)
        util = 1.0 - (idle1 - idle0) / ((t1 - t0) * len(cpu))
    notes = []
    if (~short).sum():
        notes.append(f"{int((~short).sum())} interval(s) longer than {gap:.0f} s dropped (missing scrapes)")
    resets = int(e_reset.sum()) + int(c_reset.sum())
    if resets:
        notes.append(f"{resets} counter reset(s): the interval(s) with a reset dropped")
    if (~known).sum():
        notes.append(f"{int((~known).sum())} window(s) without CPU samples close to both ends dropped")
    if unsteady.sum():
        notes.append(f"{int(unsteady.sum())} of {t0.size} window(s) dropped: load moved by more than "
                     f"{steady_tolerance * 100:g} points inside")
    return NodeSamples(node, np.clip(util[ok], 0.0, 1.0), power[ok], notes)


def node_power_samples(prom: Prometheus, node_ids: Sequence[str], start_s: float, end_s: float, *,
                       source: str = "kepler", zones: Sequence[str] | None = None, cpu_label: str = "instance",
                       max_interval_s: float | None = None, resolution_s: float = DEFAULT_RESOLUTION_S,
                       steady_tolerance: float = DEFAULT_STEADY_TOLERANCE) -> dict[str, NodeSamples]:
    """Interval samples of every node in `node_ids` over (start, end]; a node without Kepler
    or CPU series gets a `problem` saying which series is missing."""
    src = ENERGY_SOURCES[source]
    zones = tuple(zones or src.default_zones)
    selector = src.metric
    if src.zone_label and zones:
        selector += "{" + f'{src.zone_label}=~"{"|".join(zones)}"' + "}"
    energy: dict[str, list[RangeSeries]] = {}
    for s in prom.raw_samples(selector, start_s, end_s):
        node = match_node(s.labels.get(src.node_label, ""), node_ids)
        if node is not None:
            energy.setdefault(node, []).append(s)
    cpu: dict[str, list[RangeSeries]] = {}
    for s in prom.raw_samples(CPU_METRIC, start_s, end_s):
        node = match_node(s.labels.get(cpu_label, ""), node_ids)
        if node is not None:
            cpu.setdefault(node, []).append(s)
    out = {}
    for node in node_ids:
        if node not in energy:
            out[node] = NodeSamples(node, np.zeros(0), np.zeros(0), problem=(
                f"no Kepler energy series ({selector} with {src.node_label}=\"{node}\"): is Kepler running on the "
                f"node, and does its {src.node_label} label carry the node name?"))
        elif node not in cpu:
            out[node] = NodeSamples(node, np.zeros(0), np.zeros(0), problem=(
                f"no CPU time series ({CPU_METRIC} with {cpu_label}=\"{node}\" or \"{node}:port\"): is "
                f"node_exporter scraped, and does --cpu-label name the label with the node name?"))
        else:
            found = {s.labels.get(src.zone_label, "") for s in energy[node]} if src.zone_label else set()
            missing = [z for z in zones if src.zone_label and z not in found]
            samples = pair_intervals(node, energy[node], cpu[node], max_interval_s, resolution_s, steady_tolerance)
            if missing:
                samples.notes.append(f"zone(s) {', '.join(missing)} not exported; summed {', '.join(sorted(found))}")
            out[node] = samples
    return out


__all__ = ["CPU_METRIC", "DEFAULT_RESOLUTION_S", "DEFAULT_STEADY_TOLERANCE", "ENERGY_SOURCES", "EnergySource", "NodeSamples", "node_power_samples", "pair_intervals"]
