"""A year of batch work on one node: the long-horizon scenario of the benchmarks (issue 15).

`batch_year(n_jobs, slots)` is one node that may sleep, 5,000 deferrable jobs
by default over 17,568 slots of 30 minutes (366 days), each running 1-4 h in a
window up to 24 h long, with a German-like daily grid intensity (night ~380,
solar dip at noon, evening peak) and day-to-day level changes. A share of the
jobs is interruptible (checkpointed) with a 1 h minimum run. Seeded; the same
arguments give the same document.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

SLOT_MINUTES = 30
YEAR_SLOTS = 17_568  # 366 days of 30-minute slots


def batch_year(n_jobs: int = 5_000, slots: int = YEAR_SLOTS, *, seed: int = 0,
               interruptible_share: float = 0.3) -> dict:
    """The scenario document (see the module docstring)."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    per_day = 1440 // SLOT_MINUTES
    hours = (np.arange(slots) % per_day + 0.5) * SLOT_MINUTES / 60
    solar = np.clip(np.sin(np.pi * (hours - 5) / 14), 0, None) ** 1.5
    evening = np.exp(-(((hours - 19.5) / 2.5) ** 2))
    level = np.repeat(np.exp(rng.normal(0, 0.15, slots // per_day + 1)), per_day)[:slots]
    intensity = np.round(np.maximum((380 - 200 * solar + 70 * evening) * level * (1 + 0.04 * rng.standard_normal(slots)), 20), 1)

    duration = rng.integers(2, 9, n_jobs)  # 1-4 h in slots
    window = np.minimum(duration + rng.integers(0, 48 - 1, n_jobs), 48)  # up to 24 h
    window = np.maximum(window, duration)
    earliest = rng.integers(0, slots - window + 1, n_jobs)
    cpu = rng.choice([1000, 2000, 4000, 8000], n_jobs)
    interruptible = rng.random(n_jobs) < interruptible_share
    iso = lambda t: (start + timedelta(minutes=SLOT_MINUTES * int(t))).isoformat().replace("+00:00", "Z")  # noqa: E731
    workloads = []
    for k in range(n_jobs):
        deferral = {"earliest_start": iso(earliest[k]), "deadline": iso(earliest[k] + window[k]),
                    "duration_minutes": int(duration[k]) * SLOT_MINUTES}
        if interruptible[k]:
            deferral.update(interruptible=True, min_run_minutes=60)
        workloads.append({"id": f"job-{k}", "tenant": "batch", "kind": "batch", "cpu_usage_fraction": 0.9,
                          "requests": {"cpu_millicores": int(cpu[k]), "memory_mib": int(cpu[k] // 2)},
                          "deferral": deferral})
    return {
        "version": 1, "name": f"batch-year-{n_jobs}",
        "description": f"One node, {n_jobs} deferrable jobs over {slots} slots of {SLOT_MINUTES} min (bench/longhorizon.py)",
        "horizon": {"start": iso(0), "slots": slots, "slot_minutes": SLOT_MINUTES},
        "regions": [{"id": "DE"}],
        "sites": [{"id": "room", "tier": "on-prem", "region": "DE", "pue": 1.6}],
        "nodes": [{"id": "n1", "site": "room", "capacity": {"cpu_millicores": 64000, "memory_mib": 262144},
                   "power": {"idle_w": 120, "max_w": 480}}],
        "links": [], "users": [], "tenants": [{"id": "batch"}],
        "workloads": workloads,
        "signals": [{"signal": "grid_intensity", "region": "DE", "unit": "gCO2/kWh", "values": intensity.tolist()}],
    }
