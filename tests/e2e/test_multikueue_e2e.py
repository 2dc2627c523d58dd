"""Jobs across clusters through MultiKueue: edgeplace plans over two worker clusters and steers dispatch.

Three LocalClusters on loopback, each with its own kube-apiserver and Kueue
(built from its module, with its webhooks): a manager, where the Jobs are
submitted and whose ClusterQueue lists edgeplace's check and the MultiKueue
check (Kueue configured with edgeplace as its external dispatcher,
``multiKueue.dispatcherName: edgeplace.io/carbon-aware``), and two workers
with kube-controller-manager and kwok nodes, in grid regions DE (coal-heavy)
and SE (hydro). edgeplace reads all three (a fleet config), plans on a
time-compressed clock and nominates the worker cluster of the plan.

- a deferrable Job is held until its green slot and then runs in the SE
  worker (its copy created there in that slot), nowhere else;
- with the SE worker down, a Job runs in the DE worker: edgeplace plans
  without the cluster it cannot read, MultiKueue stops using it (what
  edgeplace does when MultiKueue reports a chosen cluster inactive, or it
  does not reserve in time, is in tests/test_multicluster.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
import edgeplace_e2e_kueue as e2e_kueue  # k8s/e2e/kueue.py
import pytest
from kubernetes import client

from edgeplace.k8s.kueue import ScaledClock
from edgeplace.k8s.multicluster import Fleet, parse_fleet_config

pytestmark = pytest.mark.e2e

SPEED = 360.0
NS = "analytics"
WAIT = 120.0
HOUR = timedelta(hours=1)
WORKERS = {"worker-de": ("metro-de", "DE"), "worker-se": ("cloud-se", "SE")}
FLEET = {
    "name": "fleet-e2e", "horizon": {"slots": 8, "slot_minutes": 60},
    "sites": [{"id": "metro-de", "tier": "metro", "region": "DE"}, {"id": "cloud-se", "tier": "cloud", "region": "SE"}],
    "clusters": [{"name": name, "site": site} for name, (site, _) in WORKERS.items()],
}


@pytest.fixture(scope="module")
def fleet(e2e_binaries, kueue_binary):
    """{"manager": LocalCluster, "worker-de": ..., "worker-se": ...}, each with Kueue running."""
    with e2e_kueue.KueueFleet({"worker-de": ["de-1", "de-2"], "worker-se": ["se-1", "se-2"]}, {NS: "8"}) as running:
        yield running.clusters


def _runner(fleet, series) -> tuple[e2e_kueue.EdgeplaceRunner, ScaledClock, datetime]:
    anchor = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
    clock = ScaledClock(SPEED, origin=anchor + timedelta(minutes=3), origin_wall=ScaledClock.wall())
    config = parse_fleet_config(FLEET)
    clients = {name: fleet[name].api_client() for name in WORKERS}
    view = Fleet(fleet["manager"].api_client(), config, connect=lambda _kubeconfig, context: clients[context])
    runner = e2e_kueue.EdgeplaceRunner(fleet["manager"].api_client(), config.site_config, series, anchor, clock,
                                       fleet=view)
    return runner.start(), clock, anchor


def _remote_job(cluster, name: str):
    try:
        return client.BatchV1Api(cluster.api_client()).read_namespaced_job(name, NS)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_deferrable_job_runs_in_the_greener_region_in_its_green_slot(fleet):
    series = {"DE": [380] * 12, "SE": [300, 40, 250, 300, 300, 300, 300, 300, 300, 300]}  # SE at 11:00 is best
    runner, clock, anchor = _runner(fleet, series)
    manager = fleet["manager"]
    custom = e2e_kueue.kueue_api(manager)
    try:
        client.BatchV1Api(manager.api_client()).create_namespaced_job(NS, e2e_kueue.batch_job(
            "render", "lq", run_s=15.0, annotations={"edgeplace.io/deadline": "2026-06-21T16:00:00Z",
                                                    "edgeplace.io/duration-minutes": "60"}))
        job = client.BatchV1Api(manager.api_client()).read_namespaced_job("render", NS)
        assert job.spec.managed_by == "kueue.x-k8s.io/multikueue"  # set by Kueue's webhook on the manager
        wl = e2e_cluster.wait_for(lambda: (lambda w: w if w and (w.get("status") or {}).get("clusterName") else None)(
            e2e_kueue.workload_of(custom, NS, "render")), WAIT, "render dispatched to a worker")
        done = e2e_cluster.wait_for(lambda: (lambda j: j if j and j.status.succeeded else None)(
            _remote_job(fleet["worker-se"], "render")), WAIT, "render finished in worker-se")
        pods = client.CoreV1Api(fleet["worker-se"].api_client()).list_namespaced_pod(NS, label_selector="job-name=render")
        e2e_cluster.wait_for(lambda: e2e_kueue.condition_time(e2e_kueue.workload_of(custom, NS, "render"), "Finished"),
                             WAIT, "the manager to learn that render finished")
    finally:
        runner.stop()
    assert wl["status"]["clusterName"] == "worker-se"
    assert _remote_job(fleet["worker-de"], "render") is None
    # The copy in worker-se was created, and ran, in the green slot (timestamps are whole seconds, truncated).
    for t in (done.metadata.creation_timestamp, done.status.start_time):
        assert clock.from_wall(t + timedelta(seconds=1)) > anchor + HOUR and clock.from_wall(t) < anchor + 2 * HOUR, t
    reasons = [a.reason for a in runner.controller.actions if a.action == "nominated"]
    assert reasons == ["plan"], runner.controller.actions
    assert pods.items and all(p.spec.node_name.startswith("se-") for p in pods.items)


def test_a_job_whose_greener_cluster_is_unreachable_runs_in_the_other_worker(fleet):
    """worker-se goes down (its kube-apiserver stops): edgeplace plans without it, MultiKueue drops it, the job
    runs in worker-de. Last in the module: worker-se stays down."""
    fleet["worker-se"].kill("kube-apiserver")
    manager = fleet["manager"]
    custom = e2e_kueue.kueue_api(manager)
    series = {"DE": [380] * 12, "SE": [40] * 12}  # SE would be the choice
    runner, clock, anchor = _runner(fleet, series)
    try:
        client.BatchV1Api(manager.api_client()).create_namespaced_job(NS, e2e_kueue.batch_job("backfill", "lq", run_s=10.0))
        wl = e2e_cluster.wait_for(lambda: (lambda w: w if w and (w.get("status") or {}).get("clusterName") else None)(
            e2e_kueue.workload_of(custom, NS, "backfill")), WAIT, "backfill dispatched")
        e2e_cluster.wait_for(lambda: (lambda j: j if j and j.status.succeeded else None)(
            _remote_job(fleet["worker-de"], "backfill")), WAIT, "backfill finished in worker-de")
    finally:
        runner.stop()
    assert wl["status"]["clusterName"] == "worker-de"
    mapped = runner.plans[-1][0]
    assert not any(n.startswith("worker-se/") for n in mapped.scenario.node_ids)
    assert any("worker cluster worker-se: cannot be read" in w for w in mapped.warnings), mapped.warnings
    nominated = [(a.reason, a.detail) for a in runner.controller.actions if a.action == "nominated"]
    assert nominated == [("plan", "worker-de")], nominated
