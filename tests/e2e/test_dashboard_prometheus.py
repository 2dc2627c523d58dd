"""Every dashboard expression against a real Prometheus scraping a real extender.

Prometheus is the one k8s/e2e/build-prometheus.sh builds from its Go module
(the `prometheus_binaries` fixture). It scrapes the extender's /metrics on
127.0.0.1 over mutual TLS with the client certificate of deploy/make-certs.sh,
the way the chart's ServiceMonitor does (server name, CA, client
certificate), while a client keeps calling the verbs. Then each expression of
deploy/helm/edgeplace/dashboards/edgeplace.json is queried: every one must
parse, and every extender panel must return data. Planner expressions parse
but may be empty (no planner runs here).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
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


def test_every_dashboard_expression_runs_on_prometheus(prometheus_binaries, tmp_path):
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
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}]}))
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([str(prometheus_binaries["prometheus"]), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            def scraped_twice() -> bool:
                up = query(port, 'count_over_time(up{job="edgeplace-extender"}[1m])')
                return up["status"] == "success" and up["data"]["result"] and float(
                    up["data"]["result"][0]["value"][1]) >= 3
            e2e_cluster.wait_for(scraped_twice, WAIT, "Prometheus to scrape the extender over mutual TLS")
            assert query(port, 'up{job="edgeplace-extender"}')["data"]["result"][0]["value"][1] == "1"
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
    for (title, expr), answer in results.items():
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        if re.search(r"\bedgeplace_extender_", expr):
            assert answer["data"]["result"], f"{title}: no data for {expr}"
