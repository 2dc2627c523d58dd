"""Carbon-aware admission through Kueue's real controller manager (one cluster).

A LocalCluster with kube-controller-manager (the Job controller) and kwok
nodes (pods run), Kueue built from its module (k8s/e2e/build.sh) with its own
CRDs and webhooks (k8s/e2e/kueue.py), edgeplace's planner and AdmissionCheck
controller in this process on a time-compressed clock (SPEED x the wall
clock: one planning hour is 10 s), and edgeplace's fail-open watchdog as a
real ``edgeplace serve --kueue-watchdog`` process.

- a deferrable Job is admitted in its greenest slot and not before (held
  inactive until then, its quota given back);
- jobs of a tenant whose ClusterQueue has 2 CPUs of quota are planned two
  per slot, run where planned, and never more than two at once;
- with edgeplace stopped (killed: its Lease is not released), a held Job is
  admitted by the watchdog once the grace time has passed, and not before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
import edgeplace_e2e_kueue as e2e_kueue  # k8s/e2e/kueue.py
import pytest
from kubernetes import client

from edgeplace.k8s.kueue import ScaledClock
from edgeplace.k8s.mapping import parse_site_config

pytestmark = pytest.mark.e2e

SPEED = 360.0  # one planning hour = 10 s of wall clock
NS = "analytics"
CHECK = "edgeplace-carbon"
GRACE_S = 6.0
WAIT = 120.0
HOUR = timedelta(hours=1)
SITE_CONFIG = parse_site_config({
    "name": "kueue-e2e", "horizon": {"slots": 8, "slot_minutes": 60},
    "sites": [{"id": "metro", "tier": "metro", "region": "DE"}],
})


@pytest.fixture(scope="module")
def cluster(e2e_binaries, kueue_binary):
    with e2e_cluster.LocalCluster(controller_manager=True, kwok=True) as running:
        with e2e_kueue.KueueRunner(running):
            api = running.api_client()
            core = client.CoreV1Api(api)
            for name in ("kw-1", "kw-2"):
                e2e_cluster.create_kwok_node(core, name, cpu="4", memory="8Gi", pods="20",
                                             labels={"edgeplace.io/site": "metro"},
                                             annotations={"edgeplace.io/idle-w": "100", "edgeplace.io/max-w": "300"})
            for name in (NS, "edgeplace-system"):
                core.create_namespace({"metadata": {"name": name}})
            custom = e2e_kueue.kueue_api(running)
            e2e_kueue.create(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": "default"}})
            e2e_kueue.create(custom, "admissionchecks", {"kind": "AdmissionCheck", "metadata": {"name": CHECK},
                                                         "spec": {"controllerName": "edgeplace.io/carbon-aware"}})
            e2e_kueue.create(custom, "clusterqueues", e2e_kueue.cluster_queue("batch", cpu="2", memory="8Gi",
                                                                               checks=[CHECK]))
            e2e_kueue.create(custom, "localqueues", {"kind": "LocalQueue", "metadata": {"name": "lq"},
                                                     "spec": {"clusterQueue": "batch"}}, namespace=NS)
            for name in ("kw-1", "kw-2"):
                e2e_cluster.wait_for(lambda n=name: e2e_cluster.node_ready(core.read_node(n)), WAIT, f"{name} Ready")
            yield running


@pytest.fixture(scope="module")
def watchdog(cluster):
    """`edgeplace serve --kueue-watchdog` as its own process, for the whole module."""
    log = Path(cluster.workdir) / "logs" / "watchdog.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edgeplace.cli", "serve", "--kueue-watchdog",
                                 f"--kubeconfig={cluster.kubeconfig}", "--lease", "edgeplace-system/edgeplace-planner",
                                 "--grace", str(GRACE_S)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    e2e_cluster.wait_for(lambda: "kueue watchdog on lease" in log.read_text(), 60, "the watchdog to start")
    yield log
    proc.terminate()
    proc.wait(timeout=20)


def _clock(speed: float = SPEED) -> tuple[ScaledClock, datetime]:
    """A fresh plan clock a few minutes into a slot, and that slot's start (the anchor of the series)."""
    anchor = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
    return ScaledClock(speed, origin=anchor + timedelta(minutes=3), origin_wall=ScaledClock.wall()), anchor


def _job(name: str, deadline: datetime, minutes: int = 60, cpu: str = "1", speed: float = SPEED) -> dict:
    return e2e_kueue.batch_job(name, "lq", cpu=cpu, run_s=0.6 * minutes * 60 / speed, annotations={
        "edgeplace.io/deadline": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"), "edgeplace.io/duration-minutes": str(minutes)})


def _admitted(custom, name: str) -> datetime | None:
    wl = e2e_kueue.workload_of(custom, NS, name)
    text = e2e_kueue.condition_time(wl, "Admitted") if wl else None
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _in_slot(clock: ScaledClock, wall: datetime, slot_start: datetime) -> bool:
    """A Kubernetes timestamp (whole seconds, truncated: the event was in [wall, wall + 1 s)) is in the slot."""
    return clock.from_wall(wall + timedelta(seconds=1)) > slot_start and clock.from_wall(wall) < slot_start + HOUR


def _planned(wl: dict, clock: ScaledClock) -> datetime:
    """The planned start edgeplace wrote (wall clock) on the plan clock, to the minute."""
    ann = wl["metadata"]["annotations"]
    assert "edgeplace.io/planned-start" in ann, ann  # admitted at a planned start, not for another reason
    wall = datetime.fromisoformat(ann["edgeplace.io/planned-start"].replace("Z", "+00:00"))
    t = clock.from_wall(wall) + timedelta(seconds=30)
    return t.replace(second=0, microsecond=0)


def _run_interval(batch, name: str) -> tuple[datetime, datetime] | None:
    status = batch.read_namespaced_job(name, NS).status
    return (status.start_time, status.completion_time) if status.completion_time else None


def test_a_deferrable_job_is_admitted_in_its_green_slot_and_not_before(cluster, watchdog):
    clock, anchor = _clock()
    series = {"DE": [400, 380, 40, 390, 420, 430, 440, 450, 450, 450]}  # slot 2 (12:00-13:00) is the green one
    api = cluster.api_client()
    custom, batch = e2e_kueue.kueue_api(cluster), client.BatchV1Api(api)
    runner = e2e_kueue.EdgeplaceRunner(api, SITE_CONFIG, series, anchor, clock).start()
    try:
        batch.create_namespaced_job(NS, _job("report", deadline=anchor + 6 * HOUR))
        admitted = e2e_cluster.wait_for(lambda: _admitted(custom, "report"), WAIT, "report admitted")
        interval = e2e_cluster.wait_for(lambda: _run_interval(batch, "report"), WAIT, "report finished")
    finally:
        runner.stop()
    green = anchor + 2 * HOUR
    assert _in_slot(clock, admitted, green), (clock.from_wall(admitted), runner.controller.actions)
    assert _in_slot(clock, interval[0], green)  # its pods started in the green slot, not before
    wl = e2e_kueue.workload_of(custom, NS, "report")
    decisions = [(a.action, a.reason) for a in runner.controller.actions if a.workload == f"{NS}/{wl['metadata']['name']}"]
    # held inactive (quota given back), released at the green slot, then its check Ready
    assert ("hold", "deferred") in decisions and decisions[-2:] == [("release", "planned_start"),
                                                                     ("ready", "planned_start")], decisions
    assert _planned(wl, clock) == green
    assert "fail_open" not in watchdog.read_text() and "Ready (" not in watchdog.read_text()


def test_a_tenants_quota_is_planned_for_and_never_exceeded(cluster, watchdog):
    # Half speed: a second of Kueue's admission latency is 3 plan minutes, inside the tenth of a slot
    # a started job may begin late without counting a slot more (edgeplace.k8s.mapping._remaining_run).
    clock, anchor = _clock(SPEED / 2)
    series = {"DE": [400, 45, 40, 400, 410, 420, 430, 440, 450, 450]}  # two green slots: 11:00 and (greenest) 12:00
    api = cluster.api_client()
    custom, batch = e2e_kueue.kueue_api(cluster), client.BatchV1Api(api)
    runner = e2e_kueue.EdgeplaceRunner(api, SITE_CONFIG, series, anchor, clock).start()
    names = [f"etl-{k}" for k in range(4)]
    try:
        for name in names:
            batch.create_namespaced_job(NS, _job(name, deadline=anchor + 6 * HOUR, speed=SPEED / 2))
        intervals = {n: e2e_cluster.wait_for(lambda n=n: _run_interval(batch, n), 3 * WAIT, f"{n} finished")
                     for n in names}
        admitted = {n: _admitted(custom, n) for n in names}
    finally:
        runner.stop()
    # The plan knew the ClusterQueue's 2 CPUs: the scenario's tenant quota, and every plan within it.
    mapped, plan, _ = runner.plans[-1]
    sc = mapped.scenario
    tenant = sc.tenant_ids.index(NS)
    assert sc.tenant_quota[tenant, sc.resources.index("cpu_millicores")] == 2000
    assert not [v for _, p, _ in runner.plans for v in p.evaluation.violations if v.kind.value == "quota"]
    # Where and when they ran: two per green slot, each admitted in its planned slot, never more than 2 CPUs at once.
    planned = {n: _planned(e2e_kueue.workload_of(custom, NS, n), clock) for n in names}
    assert sorted(planned.values()) == [anchor + HOUR] * 2 + [anchor + 2 * HOUR] * 2, planned
    for n in names:
        assert _in_slot(clock, admitted[n], planned[n]), (n, planned[n], clock.from_wall(admitted[n]))
    events = sorted([(s, 1) for s, _ in intervals.values()] + [(e, -1) for _, e in intervals.values()],
                    key=lambda x: (x[0], x[1]))
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 2, intervals
    assert all(clock.from_wall(e) <= anchor + 6 * HOUR for _, e in intervals.values())  # no deadline missed


def test_with_edgeplace_stopped_a_held_job_is_admitted_after_the_grace_time(cluster, watchdog):
    clock, anchor = _clock()
    series = {"DE": [400] * 12}
    api = cluster.api_client()
    custom, batch = e2e_kueue.kueue_api(cluster), client.BatchV1Api(api)
    runner = e2e_kueue.EdgeplaceRunner(api, SITE_CONFIG, series, anchor, clock).start()
    runner.stop(crash=True)  # killed: the Lease is neither renewed nor released
    down_at = runner.last_renew
    batch.create_namespaced_job(NS, _job("nightly", deadline=anchor + 20 * HOUR))
    e2e_cluster.wait_for(lambda: (e2e_kueue.workload_of(custom, NS, "nightly") or {}).get("status", {}).get(
        "admission"), WAIT, "nightly to reserve quota")
    admitted = e2e_cluster.wait_for(lambda: _admitted(custom, "nightly"), WAIT, "nightly admitted by the watchdog")
    held_s = time.monotonic() - down_at - (ScaledClock.wall() - admitted).total_seconds()
    # The lease ran 4 s past the last renewal, then the grace time; not admitted before both had passed.
    assert held_s >= 4.0 + GRACE_S - 1.0, held_s
    assert held_s <= 4.0 + GRACE_S + 15.0, held_s
    entry = next(c for c in e2e_kueue.workload_of(custom, NS, "nightly")["status"]["admissionChecks"] if c["name"] == CHECK)
    assert entry["state"] == "Ready" and "edgeplace watchdog" in entry["message"] and "grace" in entry["message"]


def _edgeplace(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeplace.cli", *argv], capture_output=True, text=True, timeout=300)


def test_serve_kueue_once_plans_and_holds_a_job_until_its_green_slot(cluster, watchdog, tmp_path):
    """The command as installed: one planner round and one pass of the controller, on the wall clock.
    Its own check and queue (controller name edgeplace.io/cli-test), so the watchdog leaves it alone."""
    custom, batch = e2e_kueue.kueue_api(cluster), client.BatchV1Api(cluster.api_client())
    e2e_kueue.create(custom, "admissionchecks", {"kind": "AdmissionCheck", "metadata": {"name": "cli-carbon"},
                                                 "spec": {"controllerName": "edgeplace.io/cli-test"}})
    e2e_kueue.create(custom, "clusterqueues", e2e_kueue.cluster_queue("cli", cpu="2", memory="8Gi", checks=["cli-carbon"]))
    e2e_kueue.create(custom, "localqueues", {"kind": "LocalQueue", "metadata": {"name": "cli"},
                                             "spec": {"clusterQueue": "cli"}}, namespace=NS)
    site = tmp_path / "site.yaml"
    site.write_text("horizon: {slots: 6, slot_minutes: 60}\nsites: [{id: metro, tier: metro, region: DE}]\n"
                    "regions: [{id: DE, intensity_g_per_kwh: [400, 380, 40, 390, 420, 430]}]\n")
    deadline = (datetime.now(timezone.utc) + 5 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = e2e_kueue.batch_job("cli-report", "cli", annotations={"edgeplace.io/deadline": deadline,
                                                                "edgeplace.io/duration-minutes": "60"})
    batch.create_namespaced_job(NS, job)
    argv = ("serve", "--kueue", "--once", f"--kubeconfig={cluster.kubeconfig}", f"--site-config={site}",
            f"--plan-file={tmp_path / 'plan.json'}", "--kueue-controller-name", "edgeplace.io/cli-test", "--solver", "greedy")
    try:
        # Kueue keeps the ClusterQueue inactive until the check's controller says it is there: the first pass does.
        first = _edgeplace(*argv)
        assert first.returncode == 0, first.stdout + first.stderr
        e2e_cluster.wait_for(lambda: (e2e_kueue.workload_of(custom, NS, "cli-report") or {}).get("status", {}).get(
            "admission"), WAIT, "cli-report to reserve quota")
        done = _edgeplace(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "planner: published" in done.stdout and "hold (deferred)" in done.stdout, done.stdout
        wl = e2e_kueue.workload_of(custom, NS, "cli-report")
        assert wl["spec"]["active"] is False and "edgeplace.io/held-until" in wl["metadata"]["annotations"]
    finally:
        batch.delete_namespaced_job("cli-report", NS, propagation_policy="Background")


def test_serve_kueue_without_kueue_installed_says_so(e2e_binaries):
    with e2e_cluster.LocalCluster() as bare:
        for argv in (["--kueue", "--once"], ["--kueue-watchdog"]):
            done = _edgeplace("serve", *argv, f"--kubeconfig={bare.kubeconfig}")
            assert done.returncode == 3, done.stdout + done.stderr
            assert "Kueue (v0.15 or later) is not installed" in done.stderr and "Traceback" not in done.stderr
