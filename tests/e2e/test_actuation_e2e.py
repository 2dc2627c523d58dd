"""The plan carried out in a cluster where pods run: evictions, drains, power off and on, restarts.

Every test starts the bundled example cluster (examples/cluster/) on a real
kube-apiserver, kube-scheduler, kube-controller-manager and kwok nodes
(k8s/e2e/example_cluster.py): the default scheduler has placed every pod by
the time a test begins. Where the extender takes part it runs in-process on
127.0.0.1 and kube-scheduler calls it; the planner runs in-process
(`Planner` with an `Actuator`) or as the real `edgeplace serve --planner`
command. Nodes are switched by edgeplace's kwok power driver, so a node that
is switched off stops heart-beating and the node-lifecycle controller marks
it NotReady, and evicted pods are recreated by their ReplicaSets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client, watch

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo
from edgeplace.k8s.actuation.actuator import ActuationOptions, Actuator
from edgeplace.k8s.actuation.drivers import Drivers, KwokDriver
from edgeplace.k8s.actuation.evictor import EvictionBudget
from edgeplace.k8s.actuation.power import PowerOptions
from edgeplace.k8s.actuation.rebalance import RebalanceOptions
from edgeplace.k8s.extender.server import ExtenderServer
from edgeplace.k8s.mapping import cpu_millicores, load_site_config
from edgeplace.k8s.planner import Planner, PlannerOptions
from edgeplace.k8s.publish import ConfigMapPlanPublisher, ConfigMapPlanSource
from edgeplace.optimizer.solve import SolveOptions
from edgeplace.policies.costs import Objective

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "k8s" / "e2e"))
import example_cluster  # noqa: E402  k8s/e2e/example_cluster.py

NS = example_cluster.PLANNER_NAMESPACE
SITE_CONFIG = str(example_cluster.SITE_CONFIG)
WAIT = 120.0
SOLVE = SolveOptions(solver="cpsat", time_limit_s=5.0, bound_time_limit_s=0.0,
                     objective=Objective(migration_g_per_replica=5.0))
#: Fast timings for the test cluster (a real one would use the defaults: minutes, not seconds).
POWER = PowerOptions(min_on_s=0, min_off_s=0, drain_timeout_s=120, wake_timeout_s=30, pending_grace_s=3)


@pytest.fixture
def cluster(e2e_binaries):
    running = example_cluster.start()
    try:
        yield running
    finally:
        running.__exit__(None, None, None)


@pytest.fixture
def api(cluster):
    return cluster.api_client()


@pytest.fixture
def extender(cluster, api):
    """The extender on loopback, serving the plan ConfigMap, and kube-scheduler calling it."""
    server = ExtenderServer(ConfigMapPlanSource(api, NS, poll_interval_s=0.5)).start()
    cluster.restart_scheduler(topo.scheduler_config(server.url))
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def planner_running(api, power: PowerOptions = POWER, drivers: Drivers | None = None, **actuation):
    """The planner loop with actuation in apply mode, in a thread, until the block ends."""
    options = ActuationOptions(**{"rebalance": "apply", "power": "apply", "period_s": 1.0, "rebalance_period_s": 2.0,
                                  "namespace": NS, "powering": power,
                                  "rebalancing": RebalanceOptions(cooldown_s=30, flip_window_s=60), **actuation})
    actuator = Actuator(api, options, drivers=drivers)
    planner = Planner(api, ConfigMapPlanPublisher(api, NS, identity="e2e"), load_site_config(SITE_CONFIG),
                      PlannerOptions(period_s=30, debounce_s=2, max_delay_s=5, solve=SOLVE), actuator=actuator)
    stop = threading.Event()
    thread = threading.Thread(target=planner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield planner
    finally:
        stop.set()
        thread.join(timeout=30)


def nodes(api) -> dict[str, client.V1Node]:
    return {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}


def state(node: client.V1Node) -> str:
    return (node.metadata.annotations or {}).get("edgeplace.io/power-state", "on")


def live_pods(api) -> list:
    return [p for p in client.CoreV1Api(api).list_pod_for_all_namespaces().items
            if not p.metadata.deletion_timestamp and p.status.phase not in ("Succeeded", "Failed")]


def all_ready(api) -> bool:
    deps = client.AppsV1Api(api).list_deployment_for_all_namespaces().items
    return all((d.status.ready_replicas or 0) == d.spec.replicas for d in deps)


def overload_web(api) -> int:
    """Scale shop/web to two replicas more than every node that is on has free CPU for, so
    some pods stay Pending as unschedulable until a node is woken; returns the replica count."""
    apps = client.AppsV1Api(api)
    web = apps.read_namespaced_deployment("web", "shop")
    per_pod = cpu_millicores(web.spec.template.spec.containers[0].resources.requests["cpu"])
    requested: dict[str, int] = {}
    for pod in live_pods(api):
        for c in pod.spec.containers:
            requested[pod.spec.node_name] = (requested.get(pod.spec.node_name, 0)
                                             + cpu_millicores((c.resources.requests or {}).get("cpu", "0")))
    free = sum(cpu_millicores(n.status.allocatable["cpu"]) - requested.get(name, 0)
               for name, n in nodes(api).items() if state(n) == "on" and e2e_cluster.node_ready(n)
               and not n.spec.unschedulable)
    replicas = web.spec.replicas + free // per_pod + 2
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": replicas}})
    return replicas


def settled(api, planner) -> dict | None:
    """The cluster follows the published plan: every node the plan lets sleep is off, the others on,
    every Deployment ready and nothing pending. Returns the plan document then."""
    doc = planner.last_published
    if doc is None or not all_ready(api):
        return None
    current = nodes(api)
    for name, entry in doc["nodes"].items():
        managed = "edgeplace.io/power-driver" in (current[name].metadata.annotations or {}) and \
            (current[name].metadata.annotations or {}).get("edgeplace.io/can-power-down") != "false"
        want = "on" if entry["powered"] or not managed else "off"
        if state(current[name]) != want or e2e_cluster.node_ready(current[name]) != (want == "on"):
            return None  # switched off, but its Lease not expired yet: wait for NotReady too
    if any(p.status.phase == "Pending" for p in live_pods(api)):
        return None
    return doc


def events(api, reason: str) -> list[dict]:
    """events.k8s.io Events with `reason`, as JSON (the client's model refuses the core Events
    of other components, which have no eventTime)."""
    raw = client.EventsV1Api(api).list_event_for_all_namespaces(_preload_content=False).data
    return [e for e in json.loads(raw)["items"] if e.get("reason") == reason]


# ---------------------------------------------------------------------------
# The rebalancer's dry run on the bundled example


def edgeplace_cli(*args: str, kubeconfig: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return example_cluster.edgeplace(*args, kubeconfig=kubeconfig)


def test_rebalance_dry_run_on_the_example_cluster_prints_moves_with_their_grams(cluster, api):
    once = edgeplace_cli("serve", "--planner", "--once", "--site-config", SITE_CONFIG, "--time-limit", "5",
                         kubeconfig=cluster.kubeconfig)
    assert once.returncode == 0, once.stderr
    before = {p.metadata.uid for p in live_pods(api)}
    table = edgeplace_cli("rebalance", "--dry-run", "--site-config", SITE_CONFIG, kubeconfig=cluster.kubeconfig)
    assert table.returncode == 0, table.stderr
    assert "against the plan published in ConfigMap edgeplace-system/edgeplace-plan" in table.stdout
    assert "gCO2e over the plan's 24 h horizon" in table.stdout and "Traceback" not in table.stderr
    rows = json.loads(edgeplace_cli("rebalance", "--dry-run", "--site-config", SITE_CONFIG, "--format", "json",
                                    kubeconfig=cluster.kubeconfig).stdout)
    assert rows and {"pod", "from", "to", "saving_g", "cost_g", "decision"} <= set(rows[0])
    made = [r for r in rows if r["decision"] == "evict"]
    assert made and all(r["saving_g"] > 0 and r["cost_g"] > 0 for r in made)
    assert all(r["from"] != r["to"] for r in rows)
    assert {p.metadata.uid for p in live_pods(api)} == before  # a dry run moved nothing
    csv = edgeplace_cli("rebalance", "--dry-run", "--site-config", SITE_CONFIG, "--format", "csv",
                        kubeconfig=cluster.kubeconfig).stdout
    assert csv.splitlines()[0].startswith("pod,workload,tenant,from,to,saving_g,cost_g,decision")


# ---------------------------------------------------------------------------
# The whole loop


class PdbWatch:
    """Samples every PodDisruptionBudget until stopped; `violations` lists (pdb, healthy, desired)
    whenever fewer pods were healthy than the budget asks."""

    def __init__(self, api):
        self.policy = client.PolicyV1Api(api)
        self.violations: list[tuple[str, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for b in self.policy.list_pod_disruption_budget_for_all_namespaces().items:
                s = b.status
                if s and s.observed_generation and s.current_healthy < s.desired_healthy:
                    self.violations.append((b.metadata.name, s.current_healthy, s.desired_healthy))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def test_the_planner_drains_switches_off_and_moves_pods_as_the_plan_says(cluster, api, extender):
    uids_before = {p.metadata.uid: f"{p.metadata.namespace}/{p.metadata.name}" for p in live_pods(api)}
    with PdbWatch(api) as pdbs, planner_running(api) as planner:
        doc = e2e_cluster.wait_for(lambda: settled(api, planner), WAIT, "the cluster to follow the plan", interval=1.0)
    current = nodes(api)
    asleep = sorted(n for n, e in doc["nodes"].items() if not e["powered"])
    assert asleep, "the plan lets some nodes sleep"
    on_by_plan = sorted(n for n, e in doc["nodes"].items() if e["powered"])
    for name in asleep:
        node = current[name]
        if name.startswith("factory"):
            continue  # can-power-down: false: the lifecycle leaves it alone (test below)
        assert not e2e_cluster.node_ready(node), f"{name} is off, so NotReady"
        assert node.metadata.labels["kwok.x-k8s.io/node"] == "powered-off"
        assert node.spec.unschedulable and any(t.key == "edgeplace.io/powered-down" for t in node.spec.taints)
        assert not [p for p in live_pods(api) if p.spec.node_name == name], f"nothing runs on {name}"
    for name in on_by_plan:
        assert e2e_cluster.node_ready(current[name]) and not current[name].spec.unschedulable
    # The autoscaler and Karpenter are told to keep away from nodes edgeplace powers; the factory's
    # always-on nodes are not edgeplace's to power.
    for name, node in current.items():
        ann = node.metadata.annotations or {}
        if name.startswith("factory"):
            assert "edgeplace.io/power-state" not in ann and "cluster-autoscaler.kubernetes.io/scale-down-disabled" not in ann
        else:
            assert ann["cluster-autoscaler.kubernetes.io/scale-down-disabled"] == "true"
            assert ann["karpenter.sh/do-not-disrupt"] == "true"
    # Pods moved by evictions: recreated by their ReplicaSets, every Deployment whole again, no PDB broken.
    assert all_ready(api)
    moved = set(uids_before) - {p.metadata.uid for p in live_pods(api)}
    assert moved, "pods moved"
    assert pdbs.violations == []
    evicted = events(api, "EdgeplaceDrain") + events(api, "EdgeplaceRebalance")
    assert {e["regarding"].get("uid") for e in evicted} >= moved
    rebalanced = events(api, "EdgeplaceRebalance")
    assert all("gCO2e" in e["note"] and " to " in e["note"] for e in rebalanced)
    # The evaluated placement now is the plan's, within the rounding of a running cluster.
    placed = {}
    for p in live_pods(api):
        wid = (p.metadata.annotations or {}).get("edgeplace.io/workload")
        if wid:
            placed.setdefault(wid, {}).setdefault(p.spec.node_name, 0)
            placed[wid][p.spec.node_name] += 1
    agree = sum(min(placed.get(w, {}).get(n, 0), c) for w, row in doc["workloads"].items()
                for n, c in row["planned_nodes"].items())
    total = sum(c for row in doc["workloads"].values() for c in row["planned_nodes"].values())
    assert agree / total >= 0.9, (agree, total, placed)


def test_pending_pods_wake_a_node(cluster, api, extender):
    with planner_running(api) as planner:
        e2e_cluster.wait_for(lambda: settled(api, planner), WAIT, "the cluster to follow the plan", interval=1.0)
        off = [n for n, node in nodes(api).items() if state(node) == "off"]
        assert off
        overload_web(api)
        e2e_cluster.wait_for(lambda: any(state(nodes(api)[n]) in ("waking", "on") for n in off), WAIT,
                             "a node to be woken for the pending pods", interval=0.5)
        e2e_cluster.wait_for(lambda: all_ready(api), WAIT, "every web pod to run", interval=1.0)
        woken = [n for n in off if state(nodes(api)[n]) == "on"]
        assert woken and all(e2e_cluster.node_ready(nodes(api)[n]) for n in woken)
    metrics = planner.metrics
    assert metrics.value("edgeplace_node_wake_duration_seconds_count") >= 1
    assert metrics.value("edgeplace_node_power_transitions_total",
                         {"driver": "kwok", "action": "power_on", "result": "ok"}) >= 1


class _Unplugged(KwokDriver):
    """kwok's switch, except that one node ignores power-on (a machine that does not come back)."""

    def __init__(self, core, dead: str):
        super().__init__(core)
        self.dead = dead

    def power_on(self, target):
        if target.node != self.dead:
            super().power_on(target)


def test_a_node_that_does_not_wake_is_reported_and_another_woken(cluster, api, extender):
    core = client.CoreV1Api(api)
    with planner_running(api) as planner:
        e2e_cluster.wait_for(lambda: settled(api, planner), WAIT, "the cluster to follow the plan", interval=1.0)
    off = sorted(n for n, node in nodes(api).items() if state(node) == "off")
    assert len(off) >= 2
    # Which off node a pending pod wakes first: the cheapest to keep on in the plan. Make that one dead.
    doc = planner.last_published
    first = min(off, key=lambda n: (doc["nodes"][n]["open_g_per_h"], nodes(api)[n].status.allocatable["cpu"], n))
    drivers = Drivers({"kwok": _Unplugged(core, first)}, lambda name: None)
    power = PowerOptions(**{**POWER.__dict__, "wake_timeout_s": 8})
    with planner_running(api, power=power, drivers=drivers):
        overload_web(api)
        e2e_cluster.wait_for(lambda: nodes(api)[first].metadata.annotations.get("edgeplace.io/wake-failed-at"), WAIT,
                             f"{first} to be reported as not waking", interval=0.5)
        e2e_cluster.wait_for(lambda: all_ready(api), WAIT, "the web pods to run on another woken node", interval=1.0)
    assert state(nodes(api)[first]) == "off" and not e2e_cluster.node_ready(nodes(api)[first])
    assert any(state(nodes(api)[n]) == "on" for n in off if n != first)
    assert [e for e in events(api, "EdgeplaceWakeTimeout") if e["regarding"]["name"] == first]


def test_an_eviction_a_pdb_refuses_is_a_429_retried_later_never_a_delete(cluster, api):
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    policy.patch_namespaced_pod_disruption_budget("api", "shop", {"spec": {"maxUnavailable": 0}})
    e2e_cluster.wait_for(lambda: policy.read_namespaced_pod_disruption_budget("api", "shop").status.disruptions_allowed == 0
                         and policy.read_namespaced_pod_disruption_budget("api", "shop").status.observed_generation == 2,
                         WAIT, "the disruption controller to see the PDB allow nothing")
    pod = next(p for p in core.list_namespaced_pod("shop").items if p.metadata.name.startswith("api-"))
    from edgeplace.k8s.actuation.events import EventRecorder
    from edgeplace.k8s.actuation.evictor import EvictionResult, PodEvictor
    from edgeplace.k8s.actuation.objects import pod_facts

    facts = pod_facts(api.sanitize_for_serialization(pod))
    evictor = PodEvictor(core, EvictionBudget(), recorder=EventRecorder(api))
    evictor.start_cycle()
    assert evictor.evict(facts, "shop", "test") is EvictionResult.PDB_BLOCKED
    assert core.read_namespaced_pod(pod.metadata.name, "shop").metadata.deletion_timestamp is None
    [refused] = [e for e in events(api, "EdgeplaceEvictionBlocked") if e["regarding"].get("uid") == pod.metadata.uid]
    assert "retries later" in refused["note"] and refused["type"] == "Warning"
    # The uid precondition: a pod replaced by another of the same name is not evicted by mistake.
    stale = pod_facts({**api.sanitize_for_serialization(pod), "metadata": {**api.sanitize_for_serialization(pod)["metadata"],
                                                                       "uid": "someone-else"}})
    policy.patch_namespaced_pod_disruption_budget("api", "shop", {"spec": {"maxUnavailable": 1}})
    # The API answers 429 while the PDB's status still allows nothing: wait for the controller first.
    e2e_cluster.wait_for(lambda: policy.read_namespaced_pod_disruption_budget("api", "shop").status.observed_generation == 3
                         and policy.read_namespaced_pod_disruption_budget("api", "shop").status.disruptions_allowed >= 1,
                         WAIT, "the disruption controller to see the PDB allow one")
    assert evictor.evict(stale, "shop", "test") is EvictionResult.NOT_FOUND


def test_a_pdb_that_allows_nothing_holds_a_drain(cluster, api, extender):
    policy = client.PolicyV1Api(api)
    # api's PDB: allow no disruption at all.
    policy.patch_namespaced_pod_disruption_budget("api", "shop", {"spec": {"maxUnavailable": 0}})
    api_pods = {p.metadata.uid: p.spec.node_name for p in live_pods(api) if p.metadata.namespace == "shop"
                and p.metadata.name.startswith("api-")}
    with planner_running(api) as planner:
        def held():
            report = planner.actuator.last_report
            for name in set(api_pods.values()):
                why = report.power.held.get(name, "") if report and report.power else ""
                if state(nodes(api)[name]) == "draining" and "PodDisruptionBudget" in why:
                    return name
            return None

        node = e2e_cluster.wait_for(held, WAIT, "a drain held by the shop/api PDB", interval=1.0)
        # The PDB holds: every api pod still runs where it ran, none was deleted.
        assert {p.metadata.uid for p in live_pods(api) if p.metadata.name.startswith("api-")} == set(api_pods)
        policy.patch_namespaced_pod_disruption_budget("api", "shop", {"spec": {"maxUnavailable": 1}})
        e2e_cluster.wait_for(lambda: settled(api, planner), WAIT, "the drain to finish once the PDB allows it",
                             interval=1.0)
    assert state(nodes(api)[node]) in ("off", "on")  # drained and off, or the plan wanted it after all


def test_a_bare_pod_keeps_its_node_on(cluster, api, extender):
    core = client.CoreV1Api(api)
    with planner_running(api) as planner:
        doc = e2e_cluster.wait_for(lambda: planner.last_published, WAIT, "a plan")
        target = next(n for n, e in sorted(doc["nodes"].items()) if not e["powered"] and not n.startswith("factory"))
        core.create_namespaced_pod("shop", {"metadata": {"name": "debug-shell"}, "spec": {
            "nodeName": target, "containers": [{"name": "sh", "image": "busybox"}]}})

        def held():
            report = planner.actuator.last_report
            why = report.power.held.get(target, "") if report and report.power else ""
            return why if "debug-shell (bare)" in why else None

        e2e_cluster.wait_for(held, WAIT, f"the drain of {target} to wait for the bare pod", interval=0.5)
        assert state(nodes(api)[target]) == "draining"
        assert core.read_namespaced_pod("debug-shell", "shop").metadata.deletion_timestamp is None
        core.delete_namespaced_pod("debug-shell", "shop", grace_period_seconds=0)
        e2e_cluster.wait_for(lambda: state(nodes(api)[target]) == "off", WAIT, f"{target} off once the pod is gone",
                             interval=0.5)


# ---------------------------------------------------------------------------
# A planner killed in the middle of a drain


class NodeLedger:
    """Counts, from a watch on Nodes, how often each node was switched off (kwok label
    fake -> powered-off) and cordoned."""

    def __init__(self, api):
        self.core = client.CoreV1Api(api)
        self.switched_off: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._w = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for event in self._w.stream(self.core.list_node, timeout_seconds=600):
                node = event["object"]
                label = (node.metadata.labels or {}).get("kwok.x-k8s.io/node")
                name = node.metadata.name
                if self._last.get(name) == "fake" and label == "powered-off":
                    self.switched_off[name] = self.switched_off.get(name, 0) + 1
                self._last[name] = label
        except Exception as exc:  # noqa: BLE001 - a broken watch while the test still runs is a failure
            self.error = exc

    error: Exception | None = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        assert self.error is None, f"the node watch broke: {self.error!r}"
        self._w.stop()


def start_planner_process(kubeconfig: Path, log: Path, metrics_port: int = 0) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "edgeplace"
    argv = [str(exe), "serve", "--planner", "--kubeconfig", str(kubeconfig), "--site-config", SITE_CONFIG,
            "--time-limit", "5", "--period", "30", "--rebalance", "off", "--power", "apply",
            "--actuation-period", "2", "--max-evictions-per-node", "1", "--min-on", "0", "--min-off", "0",
            "--identity", f"planner-{time.monotonic_ns()}", "--metrics-port", str(metrics_port)]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_planner_killed_mid_drain_finishes_it_exactly_once_after_a_restart(cluster, api, extender, tmp_path):
    core = client.CoreV1Api(api)
    pods_on = {}
    for p in live_pods(api):
        pods_on.setdefault(p.spec.node_name, []).append(p.metadata.uid)
    log = tmp_path / "planner.log"
    with NodeLedger(api) as ledger:
        first = start_planner_process(cluster.kubeconfig, log)
        try:
            def mid_drain():
                for name, node in nodes(api).items():
                    if state(node) == "draining":
                        drained = [e for e in events(api, "EdgeplaceDrain") if e["regarding"].get("uid") in pods_on.get(name, [])]
                        left = [p for p in live_pods(api) if p.spec.node_name == name]
                        if drained and left:
                            return name
                return None

            victim = e2e_cluster.wait_for(mid_drain, WAIT, "a drain under way (one pod evicted, more left)",
                                          interval=0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # no clean shutdown: the Lease stays held until it expires
            first.wait(timeout=10)
        assert state(nodes(api)[victim]) == "draining"
        port = e2e_cluster.free_port()
        second = start_planner_process(cluster.kubeconfig, log, metrics_port=port)
        try:
            e2e_cluster.wait_for(lambda: state(nodes(api)[victim]) == "off", WAIT,
                                 f"{victim} switched off by the second planner", interval=0.5)
            # Its metrics say so too, on the port the chart's ServiceMonitor scrapes.
            import urllib.request

            text = e2e_cluster.wait_for(
                lambda: (lambda body: body if f'edgeplace_node_power_state{{node="{victim}",state="off"}} 1.0' in body
                         else None)(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()),
                30, "the planner's metrics to show the node off")
            assert "edgeplace_planner_rounds_total" in text and "edgeplace_plan_emissions_grams" in text
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(timeout=30)
    # Every pod that was on the node was evicted exactly once; the node was switched off exactly once.
    drains = [e for e in events(api, "EdgeplaceDrain") if e["regarding"].get("uid") in pods_on[victim]]
    per_pod = {}
    for e in drains:
        per_pod[e["regarding"].get("uid")] = per_pod.get(e["regarding"].get("uid"), 0) + 1
    assert per_pod == {uid: 1 for uid in pods_on[victim]}, log.read_text()[-3000:]
    assert ledger.switched_off.get(victim) == 1
    powering_off = [e for e in events(api, "EdgeplacePowerPoweringOff") if e["regarding"]["name"] == victim]
    assert len(powering_off) == 1
    assert all_ready(api)
