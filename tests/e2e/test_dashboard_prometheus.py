"""Every dashboard expression against a real Prometheus scraping a real extender and planner.

Prometheus is the one k8s/e2e/build-prometheus.sh builds from its Go module
(the `prometheus_binaries` fixture). It scrapes, the way the chart's
ServiceMonitor does:

- the extender's /metrics on 127.0.0.1 over mutual TLS with the client
  certificate of deploy/make-certs.sh (server name, CA, client certificate),
  while a client keeps calling the verbs;
- the planner's /metrics (plain HTTP): the real `edgeplace serve --planner
  --metrics-port` on a real API server holding the 9-node topology of
  bench/bench_k8s_e2e.py, actuation in dry-run (the chart's default), with
  pods running on a coal-grid node that the plan moves and nodes that carry
  a power driver, so that the rebalancer decides and the power lifecycle
  reports states.

Then each expression of deploy/helm/edgeplace/dashboards/edgeplace.json is
queried: every one must parse, and every panel must return data except the
ones that only apply mode can fill (`APPLY_ONLY`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from bench import bench_k8s_e2e as topo
from edgeplace.k8s.extender.server import ExtenderServer
from edgeplace.k8s.extender.table import DecisionTable
from tests.test_dashboard import DASHBOARD, panels
from tests.test_extender_server import names_args, plan_doc, pod

pytestmark = pytest.mark.e2e

WAIT = 60.0
#: Panels whose metrics only move in apply mode (driver calls), with where they are checked.
APPLY_ONLY = {"Node power transitions": "power driver calls: tests/e2e/test_actuation_e2e.py"}
#: Edge nodes (PL and DE grids) that get a power driver, so the power lifecycle manages them.
POWERED = ("edge-waw-1", "edge-waw-2", "edge-ffm-1", "edge-ffm-2")


class Traffic(threading.Thread):
    """Calls the verbs over mutual TLS until stopped (and sends one bad body now and then)."""

    def __init__(self, server: ExtenderServer, context: ssl.SSLContext):
        super().__init__(daemon=True)
        self.server, self.context, self.stop = server, context, threading.Event()
        self.calls = 0

    def run(self) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10, context=self.context)
        victims = {"n1": {"Pods": [{"UID": "v"}], "NumPDBViolations": 0}}
        bodies = [("/filter", names_args()), ("/prioritize", names_args()),
                  ("/filter", names_args(pod(workload="nope"))), ("/filter", b"{"),
                  ("/preempt", json.dumps({"Pod": pod(), "NodeNameToMetaVictims": victims}).encode())]
        while not self.stop.is_set():
            path, body = bodies[self.calls % len(bodies)]
            conn.request("POST", path, body)
            conn.getresponse().read()
            self.calls += 1
            self.stop.wait(0.01)
        conn.close()


def query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # 400 with the parse error in the body
        return json.loads(exc.read())


@pytest.fixture
def planner(e2e_binaries, tmp_path):
    """The planner's metrics port: `edgeplace serve --planner` on a real API server, actuation
    in dry-run, planning every 5 s and acting every second."""
    import yaml
    from kubernetes import client

    with e2e_cluster.LocalCluster() as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        topo.setup_topology(api)
        for node in POWERED:
            core.patch_node(node, {"metadata": {"annotations": {"edgeplace.io/power-driver": "kwok"}}})
        for i in range(4):  # shop/api runs in Warsaw (700 g/kWh); the plan wants it elsewhere
            body = topo.make_pod(api, "shop/api", i)
            body["spec"]["nodeName"] = POWERED[i % 2]
            core.create_namespaced_pod("shop", body)
            core.patch_namespaced_pod_status(body["metadata"]["name"], "shop", {"status": {
                "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        site = tmp_path / "site-config.yaml"
        site.write_text(yaml.safe_dump(topo.SITE_CONFIG))
        port = e2e_cluster.free_port()
        log = open(tmp_path / "planner.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "edgeplace.cli", "serve", "--planner",
                                 "--kubeconfig", str(cluster.kubeconfig), "--plan-file", str(tmp_path / "plan.json"),
                                 "--site-config", str(site), "--no-leader-elect", "--metrics-port", str(port),
                                 "--time-limit", "2", "--period", "5", "--rebalance", "dry-run", "--power", "dry-run",
                                 "--actuation-period", "1", "--rebalance-period", "1", "--min-on", "0"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        assert proc.returncode in (0, -15), (tmp_path / "planner.log").read_text()[-2000:]


def test_every_dashboard_expression_runs_on_prometheus(prometheus_binaries, planner, tmp_path):
    certs = topo.Certs.make(tmp_path / "tls")
    table = DecisionTable.from_document(plan_doc())
    client_ctx = ssl.create_default_context(cafile=str(certs.root / "ca.crt"))
    client_ctx.check_hostname = False
    client_ctx.load_cert_chain(str(certs.root / "client" / "tls.crt"), str(certs.root / "client" / "tls.key"))
    clock = lambda: table.generated_at_ts + 60  # noqa: E731 - inside the plan's validity
    with ExtenderServer(table, ssl_context=certs.server_context(), clock=clock) as server:
        with socket.create_connection(("127.0.0.1", server.port)):
            pass  # a connection that never sends a byte
        traffic = Traffic(server, client_ctx)
        traffic.start()
        port = e2e_cluster.free_port()
        client_dir = certs.root / "client"
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "edgeplace-extender", "scheme": "https", "metrics_path": "/metrics",
                "tls_config": {"ca_file": str(client_dir / "ca.crt"), "cert_file": str(client_dir / "tls.crt"),
                               "key_file": str(client_dir / "tls.key"), "server_name": "edgeplace.edgeplace-system.svc"},
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}, {
                "job_name": "edgeplace-planner", "scheme": "http", "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{planner}"]}]}]}))
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([str(prometheus_binaries["prometheus"]), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            def scraped(job: str) -> bool:
                up = query(port, f'count_over_time(up{{job="{job}"}}[1m])')
                return up["status"] == "success" and up["data"]["result"] and float(
                    up["data"]["result"][0]["value"][1]) >= 3
            e2e_cluster.wait_for(lambda: scraped("edgeplace-extender"), WAIT,
                                 "Prometheus to scrape the extender over mutual TLS")
            assert query(port, 'up{job="edgeplace-extender"}')["data"]["result"][0]["value"][1] == "1"
            # The planner has published a plan and the rebalancer has decided (a dry-run eviction).
            e2e_cluster.wait_for(lambda: query(port, 'edgeplace_evictions_total{result="dry_run"}')["data"]["result"],
                                 WAIT, "Prometheus to scrape the planner's first dry-run eviction")
            e2e_cluster.wait_for(lambda: scraped("edgeplace-planner"), WAIT, "three scrapes of the planner")
            dashboard = json.loads(DASHBOARD.read_text())
            results = {}
            for panel in panels(dashboard):
                for target in panel.get("targets", []):
                    expr = target["expr"].replace("$namespace", ".*").replace("$__rate_interval", "30s")
                    results[(panel["title"], expr)] = query(port, expr)
        finally:
            traffic.stop.set()
            traffic.join(timeout=30)
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    assert traffic.calls > 0
    empty = set()
    for (title, expr), answer in results.items():
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        if not answer["data"]["result"]:
            empty.add(title)
    assert empty <= set(APPLY_ONLY), f"panels without data: {sorted(empty - set(APPLY_ONLY))}"
    # Not a panel that shows nothing: the planner's figures are those of the plan it published.
    [emissions] = results[("Plan emissions over the horizon",
                           'max(edgeplace_plan_emissions_grams{namespace=~".*"})')]["data"]["result"]
    assert float(emissions["value"][1]) > 0
    [asleep] = results[("Nodes the plan powers down", 'max(edgeplace_plan_nodes_asleep{namespace=~".*"})')
                       ]["data"]["result"]
    assert float(asleep["value"][1]) >= 1  # the plan sleeps some of the idle edge boxes
