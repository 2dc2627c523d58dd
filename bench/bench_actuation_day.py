"""A day on a cluster where pods run: edgeplace's actuation against the default scheduler, measured.

    python -m bench.bench_actuation_day [--slots 24] [--sample-s 2] [--no-write]

The bundled example cluster (examples/cluster/) runs on the real-cluster tier
(kube-apiserver, kube-scheduler, kube-controller-manager, kwok nodes;
k8s/e2e/example_cluster.py) through a time-compressed day: **one real minute
is one hour of the day**. Every minute the grid intensity of DE and FR and
the metro site's PV output change (the bundled example's 21 June:
examples/signals/grid-intensity.csv, pv.csv), shop/web scales between 2 and
128 replicas with the day's demand (its midday peak needs nodes woken), the factory's pool is dedicated (always
on) and a batch job (analytics/report, 2 pods x 2 cores for 3 hours) may
run any time before hour 20.

Two runs on fresh clusters with the same load:

- **default**: kube-scheduler's default profile, every node on (what a
  cluster does without edgeplace; the example's affinity rules keep every
  SLA and tenant rule, so this baseline meets the rules), the job runs when
  it is created;
- **edgeplace**: the planner (a plan every minute, CP-SAT 5 s), the extender
  in kube-scheduler, the rebalancer and the power lifecycle in apply mode
  (the kwok power driver: a node switched off stops heart-beating and goes
  NotReady), the job held by its scheduling gate until the planned hour.

A sampler reads the cluster every `--sample-s` seconds: which pods run where
(Running, bound) and which machines have power (kwok runs them). Each sample
is evaluated with `edgeplace.policies.evaluate` as one slot of the day at
that hour's signals (the scenario mapped from the cluster as it is at that
moment, `edgeplace.k8s.mapping.map_cluster`), and the slot's figures are the
mean of its samples: the figures are **the evaluation of the real bindings
and power states**, not of the plan. What the plan promised is evaluated the
same way from the published plan document at each sample. Energies and
emissions are reported for the compressed day (one real minute per hour:
x60 gives a real day of the same profile), operational and embodied apart,
location-based with average grid intensity.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench import bench_k8s_e2e as topo
from bench.common import write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "k8s" / "e2e"))
import example_cluster  # noqa: E402

SLOT_S = 60.0  # one real minute = one hour of the day
#: shop/web replicas in each hour of the day (night low, a working-day plateau, evening fall).
#: The peak (128 x 500m = 64 cores) is more than the nodes the plan keeps on at night have free, so
#: nodes must be woken for it (with 64 at most, the night's cloud and metro nodes held it all).
WEB_REPLICAS = [2, 2, 2, 2, 2, 2, 4, 8, 16, 32, 64, 96, 128, 96, 64, 32, 16, 8, 6, 4, 4, 2, 2, 2]
JOB = {"name": "report", "namespace": "analytics", "pods": 2, "cpu": "2", "hours": 3, "created_hour": 1, "deadline_hour": 20}


# ---------------------------------------------------------------------------
# The day's signals, one value per real minute


def _hourly(path: Path, key: str, column: str) -> list[float]:
    rows = [r for r in csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
            if r.get(column) == key]
    rows.sort(key=lambda r: datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")))
    return [float(r["value"]) for r in rows][:24]


def signals_csv(start: datetime, slots: int) -> str:
    """Long-form signals, one row per minute, from 10 minutes before `start` (the planner runs before the
    day begins: hour 0's values) to twice `slots` minutes after it (its 24-slot horizon looks past the
    day's end)."""
    de = _hourly(ROOT / "examples" / "signals" / "grid-intensity.csv", "DE", "region")
    fr = _hourly(ROOT / "examples" / "signals" / "grid-intensity.csv", "FR", "region")
    pv = _hourly(ROOT / "examples" / "signals" / "pv.csv", "metro-ffm-gallus", "site")  # 40 kWp, as the metro site
    lines = ["timestamp,region,site,value,unit"]
    for k in range(-10, 2 * max(slots, 24)):
        t, h = (start + timedelta(minutes=k)).strftime("%Y-%m-%dT%H:%M:%SZ"), max(k, 0) % 24
        lines += [f"{t},DE,,{de[h]},gCO2/kWh", f"{t},FR,,{fr[h]},gCO2/kWh", f"{t},,metro-ffm,{pv[h]},kW"]
    return "\n".join(lines) + "\n"


def site_config(workdir: Path, start: datetime, slots: int, horizon_slots: int) -> Path:
    base = yaml.safe_load(example_cluster.SITE_CONFIG.read_text())
    base["horizon"] = {"slots": horizon_slots, "slot_minutes": 1}
    base["regions"] = [{"id": r["id"], "description": r.get("description", "")} for r in base["regions"]]
    (workdir / "day-signals.csv").write_text(signals_csv(start, slots))
    base["signal_files"] = ["day-signals.csv"]
    path = workdir / f"site-config-{horizon_slots}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


# ---------------------------------------------------------------------------
# Measuring


@dataclass
class Sample:
    slot: int
    energy_kwh: float
    operational_g: float
    embodied_g: float
    powered_nodes: int
    sla_violations: int
    rule_violations: int  # capacity, isolation, selector, power
    promised: tuple[float, float, float] | None  # energy, operational, embodied of the plan at that moment


@dataclass
class Run:
    name: str
    samples: list[Sample] = field(default_factory=list)
    pdb_violations: set = field(default_factory=set)
    evictions: int = 0
    lost_pods: int = 0
    job_finished_hour: float | None = None
    wake_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _powered(node: dict) -> bool:
    return (node["metadata"].get("labels") or {}).get("kwok.x-k8s.io/node") == "fake"


def evaluate_sample(objects, config, now: datetime, doc: dict | None):
    """This moment as one slot of the day: the measured placement's evaluation, and the plan's."""
    from edgeplace.k8s.mapping import MappingOptions, map_cluster, placement_from_cluster
    from edgeplace.policies.evaluate import ViolationKind, evaluate
    from edgeplace.topology.placement import Placement

    mapped = map_cluster(objects, config, MappingOptions(now=now))
    sc = mapped.scenario
    placement = placement_from_cluster(sc, objects)
    by_name = {n["metadata"]["name"]: n for n in objects.nodes}
    powered = np.array([[_powered(by_name[n])] for n in sc.node_ids])
    measured = evaluate(sc, placement.with_powered(powered))
    promised = None
    if doc is not None:
        assign = placement.assign.copy()
        index = {n: i for i, n in enumerate(sc.node_ids)}
        for w, wid in enumerate(sc.workload_ids):
            planned = [n for n, c in ((doc.get("workloads") or {}).get(wid, {}).get("planned_nodes") or {}).items()
                       for _ in range(c) if n in index]
            r0, count = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
            running = [r for r in range(r0, r0 + count) if assign[r, 0] >= 0]
            for r, node in zip(running, planned):
                assign[r, 0] = index[node]
        plan_powered = np.array([[bool((doc["nodes"].get(n) or {}).get("powered", True))] for n in sc.node_ids])
        plan_powered |= (assign[:, 0][None, :] == np.arange(sc.n_nodes)[:, None]).any(axis=1, keepdims=True)
        plan_ev = evaluate(sc, Placement.from_assign(assign, plan_powered))
        t = plan_ev.totals
        promised = (t["energy_kwh"], t["operational_emissions_g"], t["embodied_emissions_g"])
    t = measured.totals
    counts = measured.violation_counts
    rules = sum(counts[k] for k in (ViolationKind.capacity, ViolationKind.isolation, ViolationKind.selector,
                                    ViolationKind.power))
    return t, int(powered.sum()), counts[ViolationKind.sla], rules, promised


class Sampler(threading.Thread):
    def __init__(self, api, config, start: datetime, slots: int, every_s: float, run: Run, planner=None):
        super().__init__(daemon=True)
        self.api, self.config, self.start_t, self.slots, self.every_s = api, config, start, slots, every_s
        self.run_, self.planner, self.stop = run, planner, threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        from kubernetes import client

        from edgeplace.k8s.mapping import read_cluster

        policy = client.PolicyV1Api(self.api)
        while not self.stop.wait(self.every_s):
            now = datetime.now(timezone.utc)
            slot = int((now - self.start_t).total_seconds() // SLOT_S)
            if slot >= self.slots:
                return
            try:
                objects = read_cluster(self.api)
                doc = self.planner.last_published if self.planner is not None else None
                t, powered, sla, rules, promised = evaluate_sample(objects, self.config, now, doc)
                self.run_.samples.append(Sample(slot, t["energy_kwh"], t["operational_emissions_g"],
                                                t["embodied_emissions_g"], powered, sla, rules, promised))
                for b in policy.list_pod_disruption_budget_for_all_namespaces().items:
                    s = b.status
                    if s and s.observed_generation and s.current_healthy < s.desired_healthy:
                        self.run_.pdb_violations.add((b.metadata.namespace, b.metadata.name, slot))
            except Exception as exc:  # noqa: BLE001 - one bad sample is reported, not fatal
                self.errors.append(f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------
# One run


def _job(gated: bool, start: datetime) -> dict:
    deadline = start + timedelta(minutes=JOB["deadline_hour"])
    spec: dict[str, Any] = {"containers": [{"name": "report", "image": "registry.example/report:1",
                                            "resources": {"requests": {"cpu": JOB["cpu"], "memory": "1Gi"}}}],
                            "restartPolicy": "Never"}
    if gated:
        spec["schedulingGates"] = [{"name": "edgeplace.io/deferred"}]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": JOB["name"], "namespace": JOB["namespace"],
                         "annotations": {"edgeplace.io/deadline": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                         "edgeplace.io/duration-minutes": str(JOB["hours"])}},
            "spec": {"parallelism": JOB["pods"], "completions": JOB["pods"], "backoffLimit": 0,
                     "template": {"metadata": {"annotations": {
                         "edgeplace.io/workload": f"{JOB['namespace']}/{JOB['name']}",
                         # kwok: a job pod completes this long after it runs (3 hours of the day); the
                         # jitter bounds the random delay from above, so it must not be below the delay.
                         "pod-complete.stage.kwok.x-k8s.io/delay": f"{int(JOB['hours'] * SLOT_S)}s",
                         "pod-complete.stage.kwok.x-k8s.io/jitter-delay": f"{int(JOB['hours'] * SLOT_S) + 2}s"}},
                         "spec": spec}}}


def run_day(edgeplace: bool, slots: int, sample_s: float, workdir: Path) -> Run:
    from kubernetes import client

    from edgeplace.k8s.actuation.actuator import ActuationOptions, Actuator
    from edgeplace.k8s.actuation.power import PowerOptions
    from edgeplace.k8s.actuation.rebalance import RebalanceOptions
    from edgeplace.k8s.extender.server import ExtenderServer
    from edgeplace.k8s.mapping import load_site_config
    from edgeplace.k8s.planner import Planner, PlannerOptions
    from edgeplace.k8s.publish import ConfigMapPlanPublisher, ConfigMapPlanSource
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.policies.costs import Objective

    run = Run("edgeplace" if edgeplace else "default")
    cluster = example_cluster.start()
    server = planner = None
    stop = threading.Event()
    threads = []
    try:
        api = cluster.api_client()
        apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
        # The day starts at the next whole minute (the signals' grid); the planner starts with it, so
        # hour 0 begins from the default scheduler's placement and edgeplace's first consolidation is
        # inside the measured day.
        start = (datetime.now(timezone.utc) + timedelta(seconds=70)).replace(second=0, microsecond=0)
        plan_config = load_site_config(str(site_config(workdir, start, slots, horizon_slots=24)))
        sample_config = load_site_config(str(site_config(workdir, start, slots, horizon_slots=1)))
        apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": WEB_REPLICAS[0]}})
        if edgeplace:
            server = ExtenderServer(ConfigMapPlanSource(api, example_cluster.PLANNER_NAMESPACE, poll_interval_s=0.5)).start()
            cluster.restart_scheduler(topo.scheduler_config(server.url))
            # The day's timings compressed 60 x: 30 min minimum on/off, 60 s restarts -> 1 s.
            actuation = ActuationOptions(
                rebalance="apply", power="apply", period_s=2.0, rebalance_period_s=5.0,
                namespace=example_cluster.PLANNER_NAMESPACE,
                rebalancing=RebalanceOptions(cooldown_s=30.0, flip_window_s=120.0),
                powering=PowerOptions(min_on_s=30.0, min_off_s=30.0, drain_timeout_s=60.0, wake_timeout_s=30.0,
                                      pending_grace_s=3.0))
            planner = Planner(api, ConfigMapPlanPublisher(api, example_cluster.PLANNER_NAMESPACE, identity="bench"),
                              plan_config,
                              PlannerOptions(period_s=SLOT_S, debounce_s=3.0, max_delay_s=10.0,
                                             solve=SolveOptions(solver="cpsat", time_limit_s=5.0, bound_time_limit_s=0.0,
                                                                objective=Objective(migration_g_per_replica=5.0))),
                              actuator=Actuator(api, actuation))
        while datetime.now(timezone.utc) < start:
            time.sleep(0.2)
        if planner is not None:
            t = threading.Thread(target=planner.run, args=(stop,), daemon=True)
            t.start()
            threads.append(t)
        sampler = Sampler(api, sample_config, start, slots, sample_s, run, planner)
        sampler.start()
        job_created = False
        for hour in range(slots):
            apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": WEB_REPLICAS[hour % 24]}})
            if hour == JOB["created_hour"] and not job_created:
                batch.create_namespaced_job(JOB["namespace"], _job(edgeplace, start))
                job_created = True
            end = start + timedelta(seconds=(hour + 1) * SLOT_S)
            while datetime.now(timezone.utc) < end:
                time.sleep(0.5)
                job = batch.read_namespaced_job(JOB["name"], JOB["namespace"]) if job_created else None
                if job is not None and run.job_finished_hour is None and (job.status.succeeded or 0) >= JOB["pods"]:
                    run.job_finished_hour = (datetime.now(timezone.utc) - start).total_seconds() / SLOT_S
        sampler.stop.set()
        sampler.join(timeout=30)
        run.notes += sampler.errors[:3]
        # Pods lost: every Deployment whole again once the day is over.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            deps = apps.list_deployment_for_all_namespaces().items
            run.lost_pods = sum(max(0, d.spec.replicas - (d.status.ready_replicas or 0)) for d in deps)
            if run.lost_pods == 0:
                break
            time.sleep(1)
        if planner is not None:
            raw = client.EventsV1Api(api).list_event_for_all_namespaces(_preload_content=False).data
            run.evictions = sum(1 for e in json.loads(raw)["items"]
                                if e.get("reason") in ("EdgeplaceDrain", "EdgeplaceRebalance"))
            m = planner.metrics
            count = m.value("edgeplace_node_wake_duration_seconds_count") or 0
            if count:
                run.wake_s = [m.value("edgeplace_node_wake_duration_seconds_sum") / count, count]
        return run
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if server is not None:
            server.stop()
        cluster.__exit__(None, None, None)


# ---------------------------------------------------------------------------
# Figures


def day_figures(run: Run, slots: int) -> dict[str, float]:
    """Slot means of the samples, summed over the day (energy and grams for the compressed day)."""
    by_slot: dict[int, list[Sample]] = defaultdict(list)
    for s in run.samples:
        by_slot[s.slot].append(s)
    missing = [k for k in range(slots) if k not in by_slot]

    def total(get) -> float:
        return float(sum(np.mean([get(s) for s in by_slot[k]]) for k in by_slot))

    out = {"energy_kwh": total(lambda s: s.energy_kwh), "operational_kg": total(lambda s: s.operational_g) / 1000,
           "embodied_kg": total(lambda s: s.embodied_g) / 1000,
           "node_hours_on": total(lambda s: s.powered_nodes),
           "sla_violation_samples": sum(s.sla_violations > 0 for s in run.samples),
           "rule_violation_samples": sum(s.rule_violations > 0 for s in run.samples),
           "samples": len(run.samples), "slots_without_sample": len(missing)}
    promised = [s for s in run.samples if s.promised is not None]
    if promised:
        out["promised_energy_kwh"] = total(lambda s: s.promised[0] if s.promised else s.energy_kwh)
        out["promised_operational_kg"] = total(lambda s: (s.promised[1] if s.promised else s.operational_g)) / 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_actuation_day", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=24, help="hours of the day to run (one real minute each; default 24)")
    parser.add_argument("--sample-s", type=float, default=2.0, help="seconds between samples (default 2)")
    parser.add_argument("--only", choices=("default", "edgeplace"), help="run one side only")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="edgeplace-day-"))
    runs = {}
    for side in ("default", "edgeplace"):
        if args.only and side != args.only:
            continue
        started = time.monotonic()
        runs[side] = run_day(side == "edgeplace", args.slots, args.sample_s, workdir)
        print(f"{side}: {time.monotonic() - started:.0f} s, {len(runs[side].samples)} samples", file=sys.stderr)
    rows = []
    figures = {side: day_figures(run, args.slots) for side, run in runs.items()}
    for side, run in runs.items():
        f = figures[side]
        row = {"run": side, "energy_kwh": f["energy_kwh"], "operational_kgco2e": f["operational_kg"],
               "embodied_kgco2e": f["embodied_kg"], "node_hours_on": f["node_hours_on"],
               "evictions": run.evictions if side == "edgeplace" else 0,
               "pdb_violations": len(run.pdb_violations), "pods_lost": run.lost_pods,
               "sla_violation_samples": f["sla_violation_samples"],
               "other_rule_violation_samples": f["rule_violation_samples"],
               "job_done_hour": None if run.job_finished_hour is None else round(run.job_finished_hour, 1),
               "wake_latency_s": round(run.wake_s[0], 1) if run.wake_s else None, "samples": f["samples"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    notes = [f"One real minute = one hour of the day ({args.slots} hours); figures are the evaluation "
             "(`edgeplace.policies.evaluate`) of the real bindings and machine power states sampled every "
             f"{args.sample_s:g} s, each sample one slot of that hour's signals; energy and grams for the compressed "
             "day (x60 for a real day of this profile). Location-based, average grid intensity; embodied carbon on "
             "the fleet basis (every owned node charged every hour, on or off: sleeping saves operational carbon "
             "only), shown apart."]
    if "default" in figures and "edgeplace" in figures:
        d, e = figures["default"], figures["edgeplace"]
        notes.append(f"Energy: edgeplace {e['energy_kwh']:.3f} kWh vs default {d['energy_kwh']:.3f} kWh: "
                     f"{(1 - e['energy_kwh'] / d['energy_kwh']) * 100:.1f} % less; operational emissions "
                     f"{(1 - e['operational_kg'] / d['operational_kg']) * 100:.1f} % less; node-hours on "
                     f"{e['node_hours_on']:.1f} vs {d['node_hours_on']:.1f}.")
    if "edgeplace" in figures and "promised_energy_kwh" in figures["edgeplace"]:
        e = figures["edgeplace"]
        notes.append(f"What the plan promised (its published placements and power states, evaluated the same way): "
                     f"{e['promised_energy_kwh']:.3f} kWh; measured is {(e['energy_kwh'] / e['promised_energy_kwh'] - 1) * 100:+.1f} % "
                     f"of it (operational {(e['operational_kg'] / e['promised_operational_kg'] - 1) * 100:+.1f} %).")
    if "edgeplace" in runs and runs["edgeplace"].wake_s:
        notes.append(f"Wake latency: mean {runs['edgeplace'].wake_s[0]:.1f} s over {int(runs['edgeplace'].wake_s[1])} "
                     "wakes (power-on request to node Ready; kwok's node comes back within a second or two, a real "
                     "server takes minutes).")
    notes.append(f"The batch job's deadline is hour {JOB['deadline_hour']}; `job_done_hour` is when both of its pods "
                 "had succeeded.")
    for side, run in runs.items():
        for n in run.notes:
            notes.append(f"{side}: sample error: {n}")
    if args.no_write:
        print(table.to_string(index=False))
        print("\n".join(notes))
    else:
        write_section("actuation_day", "A day on a cluster where pods run: edgeplace vs the default scheduler", table,
                      "\n\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
