"""edgeplace.k8s.extender.server: the extender over real HTTP on loopback.

The plan used here (no scenario behind it, the figures are given):

    node  powered  score_g  tenants   note
    n1    yes      20       -         web is planned here (1 replica, none running)
    n2    yes      10       globex    acme never_with globex
    n3    no        1       -         asleep
    n4    yes       5       -
    n5    yes      40       -         dedicated to bank
    web (tenant acme): allowed n1..n4
    shop/cart (tenant acme): allowed n1, n4; planned on n4 (found from the pod's owner, no annotation)

So for a pod of web: filter n1 pass, n2 never_with, n3 asleep, n4 pass,
n5 not allowed; prioritize n1 = 10 (planned, spare), n4 = 9 (the cleanest
usable node: 9 x (20 - 5) / (20 - 5)), the rest 0.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgeplace.k8s.extender.server import ExtenderServer, load_token, main, make_ssl_context
from edgeplace.k8s.extender.table import DecisionTable, PlanFile, write_plan_document

GENERATED = datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
T0 = GENERATED.timestamp() + 60  # "now" for most tests: a minute into the plan's validity


def plan_doc(generated: datetime = GENERATED, valid_s: float = 900, cluster: str | None = "server-test") -> dict:
    return {
        "version": 1, "scenario": "server-test", **({"cluster": cluster} if cluster else {}),
        "generated_at": generated.isoformat(), "valid_until": (generated + timedelta(seconds=valid_s)).isoformat(),
        "slot": {"index": 3},
        "nodes": {"n1": {"site": "a", "powered": True, "score_g": 20.0, "tenants": []},
                  "n2": {"site": "a", "powered": True, "score_g": 10.0, "tenants": ["globex"]},
                  "n3": {"site": "b", "powered": False, "score_g": 1.0, "open_g_per_h": 100.0},
                  "n4": {"site": "b", "powered": True, "score_g": 5.0},
                  "n5": {"site": "c", "powered": True, "score_g": 40.0, "dedicated_to": "bank"}},
        "workloads": {"web": {"tenant": "acme", "cpu_millicores": 500, "allowed_nodes": ["n1", "n2", "n3", "n4"],
                              "planned_nodes": {"n1": 1}},
                      "shop/cart": {"tenant": "acme", "cpu_millicores": 500, "allowed_nodes": ["n1", "n4"],
                                    "planned_nodes": {"n4": 1}}},
        "tenants": {"acme": {"never_with": ["globex"]}, "bank": {"dedicated": True}},
    }


NODES = ["n1", "n2", "n3", "n4", "n5"]


def pod(workload: str | None = "web", namespace: str = "shop", tenant: str | None = None, cpu: str = "2",
        owner: tuple[str, str] | None = None, labels: dict | None = None, priority_class: str | None = None) -> dict:
    annotations = {}
    if workload:
        annotations["edgeplace.io/workload"] = workload
    if tenant:
        annotations["edgeplace.io/tenant"] = tenant
    meta = {"name": "p-1", "namespace": namespace, "uid": "u-1", "annotations": annotations, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "o-1",
                                    "controller": True}]
    spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"metadata": meta, "spec": spec}


def names_args(p: dict | None = None, nodes=NODES) -> bytes:
    return json.dumps({"Pod": p if p is not None else pod(), "Nodes": None, "NodeNames": list(nodes)}).encode()


def node_object(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"zone": "z"}}, "status": {"allocatable": {"cpu": "4"}}}


def nodes_args(p: dict | None = None, nodes=NODES) -> bytes:
    return json.dumps({"Pod": p if p is not None else pod(), "NodeNames": None,
                       "Nodes": {"metadata": {}, "items": [node_object(n) for n in nodes]}}).encode()


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def table() -> DecisionTable:
    return DecisionTable.from_document(plan_doc())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(table, clock):
    with ExtenderServer(table, clock=clock) as srv:
        yield srv


def request(srv: ExtenderServer, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
    if srv.ssl_context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post(srv, verb: str, body: bytes, **kw) -> tuple[int, object]:
    status, headers, data = request(srv, "POST", f"/{verb}", body, **kw)
    assert headers["content-type"] == "application/json"
    return status, json.loads(data)


def metric(srv: ExtenderServer, name: str, **labels) -> float:
    """The value of one sample from /metrics (0 if absent)."""
    _, _, text = request(srv, "GET", "/metrics")
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.decode().splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == want or _same_sample(sample, name, labels):
            return float(value)
    return 0.0


def _same_sample(sample: str, name: str, labels: dict) -> bool:
    if not sample.startswith(name + "{"):
        return False
    got = dict(part.split("=", 1) for part in sample[len(name) + 1:-1].split(","))
    return got == {k: f'"{v}"' for k, v in labels.items()}


def wait_for(check, timeout_s: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# The verbs


def test_filter_with_node_names(server):
    status, out = post(server, "filter", names_args())
    assert status == 200
    assert list(out) == ["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"]
    assert out["Nodes"] is None and out["Error"] == ""
    assert out["NodeNames"] == ["n1", "n4"]
    assert list(out["FailedNodes"]) == ["n3"] and "powers this node down in slot 3" in out["FailedNodes"]["n3"]
    assert sorted(out["FailedAndUnresolvableNodes"]) == ["n2", "n5"]
    assert "never share" in out["FailedAndUnresolvableNodes"]["n2"]
    assert "not an allowed node" in out["FailedAndUnresolvableNodes"]["n5"]


def test_filter_with_full_node_objects(server):
    status, out = post(server, "filter", nodes_args())
    assert status == 200
    assert out["NodeNames"] is None
    assert out["Nodes"]["items"] == [node_object("n1"), node_object("n4")]  # unchanged objects


def test_prioritize(server):
    status, out = post(server, "prioritize", names_args())
    assert status == 200
    assert out == [{"Host": "n1", "Score": 10}, {"Host": "n2", "Score": 0}, {"Host": "n3", "Score": 0},
                   {"Host": "n4", "Score": 9}, {"Host": "n5", "Score": 0}]
    status, out = post(server, "prioritize", nodes_args(nodes=["n4", "n1"]))
    assert out == [{"Host": "n4", "Score": 9}, {"Host": "n1", "Score": 10}]


def test_prioritize_counts_the_emissions_estimate(server):
    before = metric(server, "edgeplace_extender_emissions_avoided_estimate_g_per_hour")
    # tenant acme without a workload: usable n1 (20 g) and n4 (5 g); n4 scores 9.
    post(server, "prioritize", names_args(pod(workload=None, tenant="acme", cpu="2")))
    after = metric(server, "edgeplace_extender_emissions_avoided_estimate_g_per_hour")
    assert after - before == pytest.approx((12.5 - 5.0) * 2)  # (mean - top) x 2 cores


def test_compact_replies_give_the_same_decisions_in_fewer_bytes(table, clock, server):
    with ExtenderServer(table, clock=clock, compact_replies=True) as srv:
        for args in (names_args(), nodes_args()):
            full, compact = post(server, "filter", args)[1], post(srv, "filter", args)[1]
            assert compact == {**full, "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
            assert full["FailedNodes"] and full["FailedAndUnresolvableNodes"]
        # Nothing passes: the reasons are there for FailedScheduling and preemption.
        nothing = names_args(nodes=["n2", "n5"])
        assert post(srv, "filter", nothing) == post(server, "filter", nothing)
        assert post(srv, "prioritize", names_args())[1] == [{"Host": "n1", "Score": 10}, {"Host": "n4", "Score": 9}]


def test_filter_that_keeps_the_best_passes_only_the_top_scored_allowed_nodes(table, clock, server):
    with ExtenderServer(table, clock=clock, filter_keeps="best") as srv:
        status, out = post(srv, "filter", names_args())
        assert status == 200
        full = post(server, "filter", names_args())[1]
        # n1 (score 10) and n4 (9) are allowed; n4 is outranked, so in neither failure map.
        assert out == {**full, "NodeNames": ["n1"]}
        assert post(srv, "filter", nodes_args())[1]["Nodes"]["items"] == [node_object("n1")]
        assert post(srv, "filter", names_args(nodes=["n4", "n5"]))[1]["NodeNames"] == ["n4"]


def test_preempt_drops_nodes_where_eviction_cannot_help(server):
    victims = {n: {"Pods": [{"UID": f"v-{n}"}], "NumPDBViolations": 0} for n in NODES}
    status, out = post(server, "preempt", json.dumps({"Pod": pod(), "NodeNameToMetaVictims": victims}).encode())
    assert status == 200
    assert sorted(out["NodeNameToMetaVictims"]) == ["n1", "n3", "n4"]  # n2 never_with, n5 not allowed
    assert out["NodeNameToMetaVictims"]["n1"] == victims["n1"]


def test_unannotated_pods_get_neutral_answers(server):
    before = metric(server, "edgeplace_extender_decisions_total", verb="filter", reason="unannotated")
    status, out = post(server, "filter", names_args(pod(workload=None)))
    assert out["NodeNames"] == NODES and out["FailedNodes"] == {} and out["FailedAndUnresolvableNodes"] == {}
    status, out = post(server, "prioritize", names_args(pod(workload=None)))
    assert [h["Score"] for h in out] == [0] * 5
    assert metric(server, "edgeplace_extender_decisions_total", verb="filter", reason="unannotated") == before + 1


def test_namespace_as_tenant_when_configured(table, clock):
    with ExtenderServer(table, clock=clock, unannotated="namespace") as srv:
        _, out = post(srv, "filter", names_args(pod(workload=None, namespace="acme")))
        assert out["NodeNames"] == ["n1", "n4"]  # acme's rules: never with globex, not bank's pool
        _, out = post(srv, "filter", names_args(pod(workload=None, namespace="bank")))
        assert out["NodeNames"] == ["n5"]
        assert metric(srv, "edgeplace_extender_decisions_total", verb="filter", reason="tenant") == 2


def test_path_prefix(table, clock):
    with ExtenderServer(table, clock=clock, path_prefix="/edgeplace") as srv:
        assert post(srv, "edgeplace/filter", names_args())[0] == 200
        assert request(srv, "POST", "/filter", names_args())[0] == 404
        assert request(srv, "GET", "/healthz")[0] == 200


# ---------------------------------------------------------------------------
# Failing open


def test_no_plan_fails_open(clock):
    with ExtenderServer(None, clock=clock) as srv:
        _, out = post(srv, "filter", names_args())
        assert out["NodeNames"] == NODES and out["FailedNodes"] == {}
        _, out = post(srv, "prioritize", names_args())
        assert [h["Score"] for h in out] == [0] * 5
        victims = {"n2": {"Pods": [{"UID": "v"}], "NumPDBViolations": 0}}
        _, out = post(srv, "preempt", json.dumps({"Pod": pod(), "NodeNameToMetaVictims": victims}).encode())
        assert out == {"NodeNameToMetaVictims": victims}
        assert metric(srv, "edgeplace_extender_plan_stale") == 1
        assert metric(srv, "edgeplace_extender_plan_age_seconds") == -1
        assert metric(srv, "edgeplace_extender_decisions_total", verb="filter", reason="no_plan") == 1
        assert request(srv, "GET", "/readyz")[0] == 503
        assert request(srv, "GET", "/healthz")[0] == 200


def test_stale_plan_fails_open(server, clock):
    assert request(server, "GET", "/readyz")[0] == 200
    assert metric(server, "edgeplace_extender_plan_age_seconds") == pytest.approx(60)
    clock.t = GENERATED.timestamp() + 900  # valid_until
    _, out = post(server, "filter", names_args())
    assert out["NodeNames"] == NODES
    _, out = post(server, "prioritize", names_args())
    assert [h["Score"] for h in out] == [0] * 5
    assert metric(server, "edgeplace_extender_plan_stale") == 1
    assert metric(server, "edgeplace_extender_decisions_total", verb="prioritize", reason="stale_plan") == 1
    status, _, data = request(server, "GET", "/readyz")
    assert status == 503 and b"stale" in data


def test_internal_error_fails_open(table, clock, caplog):
    class Broken(DecisionTable):
        def filter(self, *a, **k):
            raise RuntimeError("boom")

        def prioritize(self, *a, **k):
            raise RuntimeError("boom")

    broken = DecisionTable.from_document(plan_doc())
    broken.__class__ = Broken
    with ExtenderServer(broken, clock=clock) as srv:
        status, out = post(srv, "filter", names_args())
        assert status == 200 and out["NodeNames"] == NODES
        status, out = post(srv, "prioritize", names_args())
        assert status == 200 and [h["Score"] for h in out] == [0] * 5
        assert metric(srv, "edgeplace_extender_decisions_total", verb="filter", reason="internal_error") == 1
    assert "answering neutrally (fail open)" in caplog.text


def test_set_table_swaps_atomically(clock, table):
    with ExtenderServer(None, clock=clock) as srv:
        assert post(srv, "filter", names_args())[1]["NodeNames"] == NODES
        srv.set_table(table)
        assert srv.table is table
        assert post(srv, "filter", names_args())[1]["NodeNames"] == ["n1", "n4"]


def test_plan_file_reload(tmp_path, clock):
    path = tmp_path / "plan.json"
    write_plan_document(plan_doc(), path)
    with ExtenderServer(PlanFile(path, poll_interval_s=0.05), clock=clock) as srv:
        assert srv.table.generated_at == GENERATED  # loaded before serving
        later = GENERATED + timedelta(seconds=30)
        write_plan_document(plan_doc(generated=later), path)
        wait_for(lambda: srv.table.generated_at == later, what="the new plan")
        assert b"10:00:30" in request(srv, "GET", "/readyz")[2]
        path.write_text('{"version": 1, "nodes": {}}')  # bad: the old table stays
        wait_for(lambda: metric(srv, "edgeplace_extender_plan_loads_total", result="error") == 1, what="the error")
        assert srv.table.generated_at == later
        assert post(srv, "filter", names_args())[1]["NodeNames"] == ["n1", "n4"]
        assert metric(srv, "edgeplace_extender_plan_loads_total", result="ok") == 2


# ---------------------------------------------------------------------------
# Bad requests: 4xx with a message naming the field, never 5xx


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body: is not valid JSON"),
    (b'{"Pod": {}, "NodeNames": [1]}', "NodeNames[0]: must be a string"),
    (b'{"NodeNames": []}', "Pod: is required"),
    (b'{"Pod": {}}', "NodeNames: is required"),
    (b'{"Pod": {}, "NodeNames": [], "Nodes": {"items": []}}', "Nodes: and NodeNames are both set"),
    (b"\xc3\x28", "body: is not valid UTF-8"),
])
def test_400_names_the_field(server, body, field):
    for verb in ("filter", "prioritize"):
        status, out = post(server, verb, body)
        assert status == 400
        assert out["Error"].startswith(field)


def test_400_for_preempt(server):
    status, out = post(server, "preempt", b'{"Pod": {}, "NodeNameToMetaVictims": []}')
    assert status == 400 and out["Error"].startswith("NodeNameToMetaVictims: must be an object")


def test_404_405(server):
    status, _, data = request(server, "POST", "/bind", b"{}")
    assert status == 404 and b"unknown path" in data
    status, headers, _ = request(server, "GET", "/filter")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = request(server, "POST", "/metrics", b"")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert request(server, "HEAD", "/healthz")[0] == 200


def test_413_for_large_bodies(table, clock):
    with ExtenderServer(table, clock=clock, max_body_bytes=1000) as srv:
        status, out = post(srv, "filter", names_args(nodes=[f"node-{i}" for i in range(200)]))
        assert status == 413 and "larger than the limit of 1000 bytes" in out["Error"]
        assert post(srv, "filter", names_args())[0] == 200  # small ones still pass


def test_431_for_huge_heads(server):
    status, headers, _ = request(server, "POST", "/filter", names_args(), headers={"X-Big": "a" * 70_000})
    assert status == 431


def raw_exchange(srv: ExtenderServer, data: bytes, responses: int = 1, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """Send raw bytes; read `responses` HTTP responses (each framed by Content-Length)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_responses(sock, responses)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    buf, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append((status, headers, buf[:n]))
        buf = buf[n:]
    return out


def http_request(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_keep_alive_and_pipelining(server):
    data = http_request("/filter", names_args()) + http_request("/prioritize", names_args()) + \
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    responses = raw_exchange(server, data, responses=3)
    assert [r[0] for r in responses] == [200, 200, 200]
    assert json.loads(responses[0][2])["NodeNames"] == ["n1", "n4"]
    assert json.loads(responses[1][2])[0] == {"Host": "n1", "Score": 10}


def test_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(200):
            conn.request("POST", "/filter", names_args())
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()


def test_chunked_body_and_expect_continue(server):
    payload = names_args()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 50]), payload[i:i + 50]) for i in range(0, len(payload), 50))
    data = b"POST /filter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    [(status, _, out)] = raw_exchange(server, data)
    assert status == 200 and json.loads(out)["NodeNames"] == ["n1", "n4"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST /filter HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(payload)}\r\n\r\n".encode())
        [(status, _, _)] = read_responses(sock, 1)
        assert status == 100
        sock.sendall(payload)
        [(status, _, out)] = read_responses(sock, 1)
        assert status == 200 and json.loads(out)["NodeNames"] == ["n1", "n4"]


@pytest.mark.parametrize("data, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /filter HTTP/2.0\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /filter HTTP/1.1\r\n bad header\r\n\r\n", 400),
    (b"POST /filter HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
])
def test_framing_errors_close_with_4xx(server, data, status):
    [(got, headers, body)] = raw_exchange(server, data)
    assert got == status and headers["connection"] == "close"
    assert "Error" in json.loads(body)


def test_http_1_0_closes_after_the_answer(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        [(status, headers, _)] = read_responses(sock, 1)
        assert status == 200 and headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed by the server


def test_incomplete_requests_time_out_with_408(table, clock):
    with ExtenderServer(table, clock=clock, request_timeout_s=0.3) as srv:
        started = time.monotonic()
        [(status, _, body)] = raw_exchange(srv, b"POST /filter HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", timeout=5)
        assert status == 408 and b"not complete within 0.3 s" in body
        assert time.monotonic() - started < 3
        assert post(srv, "filter", names_args())[0] == 200


def test_idle_connections_are_closed(table, clock):
    with ExtenderServer(table, clock=clock, idle_timeout_s=0.2) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(sock, 1)[0][0] == 200
            assert sock.recv(1) == b""  # closed within the sweep period after the idle timeout
        assert metric(srv, "edgeplace_extender_connections_closed_total", reason="idle_timeout") == 1


def test_silent_connections_are_closed_after_the_first_request_deadline(table, clock):
    with ExtenderServer(table, clock=clock, first_request_timeout_s=0.2, idle_timeout_s=60) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # never sent a byte: closed long before the idle timeout
            assert time.monotonic() - started < 3
        assert metric(srv, "edgeplace_extender_connections_closed_total", reason="first_request_timeout") == 1


# ---------------------------------------------------------------------------
# Token and TLS


def test_bearer_token(table, clock):
    with ExtenderServer(table, clock=clock, token="s3cret") as srv:
        status, headers, data = request(srv, "POST", "/filter", names_args())
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert "bearer token" in json.loads(data)["Error"]
        assert request(srv, "POST", "/filter", names_args(), headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(srv, "POST", "/filter", names_args(), headers={"Authorization": "Bearer s3cret\u00e9"})[0] == 401
        assert request(srv, "POST", "/filter", names_args(), headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert request(srv, "GET", "/metrics")[0] == 401
        assert request(srv, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert request(srv, "GET", "/healthz")[0] == 200 and request(srv, "GET", "/readyz")[0] == 200


def test_load_token(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPLACE_EXTENDER_TOKEN", raising=False)
    assert load_token() is None
    monkeypatch.setenv("EDGEPLACE_EXTENDER_TOKEN", "from-env")
    assert load_token() == "from-env"
    (tmp_path / "t").write_text("from-file\n")
    assert load_token(tmp_path / "t") == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="token file is empty"):
        load_token(tmp_path / "empty")


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    return {"server": self_signed(tmp, "server"), "client": self_signed(tmp, "client"),
            "stranger": self_signed(tmp, "stranger")}


def test_tls(table, clock, certs):
    cert, key = certs["server"]
    with ExtenderServer(table, clock=clock, ssl_context=make_ssl_context(cert, key)) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        client = ssl.create_default_context(cafile=str(cert))
        status, _, data = request(srv, "POST", "/filter", names_args(), context=client)
        assert status == 200 and json.loads(data)["NodeNames"] == ["n1", "n4"]
        # plain HTTP to the TLS port gets no answer, and the server keeps serving
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(http_request("/filter", names_args()))
            assert read_responses(sock, 1) == []
        assert request(srv, "GET", "/healthz", context=client)[0] == 200


def test_tls_with_client_certificates_and_token(table, clock, certs):
    cert, key = certs["server"]
    client_cert, client_key = certs["client"]
    context = make_ssl_context(cert, key, client_ca_file=client_cert)
    with ExtenderServer(table, clock=clock, ssl_context=context, token="t0k") as srv:
        anonymous = ssl.create_default_context(cafile=str(cert))
        assert request(srv, "GET", "/healthz", context=anonymous)[0] == 200  # kubelet's probes present no cert
        status, _, data = request(srv, "POST", "/filter", names_args(), context=anonymous,
                                  headers={"Authorization": "Bearer t0k"})
        assert status == 401 and "client certificate" in json.loads(data)["Error"]
        assert request(srv, "GET", "/metrics", context=anonymous, headers={"Authorization": "Bearer t0k"})[0] == 401
        stranger_cert, stranger_key = certs["stranger"]  # signed by no CA the server trusts
        stranger = ssl.create_default_context(cafile=str(cert))
        stranger.load_cert_chain(str(stranger_cert), str(stranger_key))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            request(srv, "GET", "/healthz", context=stranger)
        client = ssl.create_default_context(cafile=str(cert))
        client.load_cert_chain(str(client_cert), str(client_key))
        assert request(srv, "POST", "/filter", names_args(), context=client)[0] == 401
        status, _, data = request(srv, "POST", "/filter", names_args(), context=client,
                                  headers={"Authorization": "Bearer t0k"})
        assert status == 200 and json.loads(data)["NodeNames"] == ["n1", "n4"]


# ---------------------------------------------------------------------------
# Metrics and lifecycle


def test_metrics_content(server):
    post(server, "filter", names_args())
    post(server, "filter", b"{")
    status, headers, text = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = text.decode()
    for name in ("edgeplace_extender_requests_total", "edgeplace_extender_request_duration_seconds_bucket",
                 "edgeplace_extender_decisions_total", "edgeplace_extender_plan_age_seconds",
                 "edgeplace_extender_plan_stale", "edgeplace_extender_plan_loads_total",
                 "edgeplace_extender_emissions_avoided_estimate_g_per_hour"):
        assert name in text, name
    assert metric(server, "edgeplace_extender_requests_total", verb="filter", code="200") == 1
    assert metric(server, "edgeplace_extender_requests_total", verb="filter", code="400") == 1
    assert metric(server, "edgeplace_extender_request_duration_seconds_count", verb="filter") == 2
    assert metric(server, "edgeplace_extender_decisions_total", verb="filter", reason="plan") == 1
    assert metric(server, "edgeplace_extender_plan_stale") == 0


def test_constructor_checks():
    with pytest.raises(ValueError, match="unannotated must be one of"):
        ExtenderServer(unannotated="all")
    with pytest.raises(ValueError, match="token must be"):
        ExtenderServer(token="has space")
    with pytest.raises(ValueError, match="path_prefix must start with"):
        ExtenderServer(path_prefix="edgeplace/")
    with pytest.raises(ValueError, match="max_body_bytes must be >= 1"):
        ExtenderServer(max_body_bytes=0)
    with pytest.raises(ValueError, match="filter_keeps must be one of allowed, best"):
        ExtenderServer(filter_keeps="top")


def test_start_fails_cleanly_on_a_busy_port(server, table):
    other = ExtenderServer(table, port=server.port)
    with pytest.raises(OSError, match="[Aa]ddress already in use"):
        other.start()
    other.stop()  # a no-op after a failed start
    assert request(server, "GET", "/healthz")[0] == 200


def test_stop_is_idempotent_and_closes_connections(table):
    srv = ExtenderServer(table).start()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        wait_for(lambda: len(srv._conns) == 1, what="the server to accept the connection")
        srv.stop()
        srv.stop()
        assert sock.recv(1) == b""
    finally:
        sock.close()


def test_command_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--tls-cert", "x.crt"])
    assert info.value.code == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# docs/EXTENDER.md: every example runs


def test_docs_examples():
    """Load the plan from docs/EXTENDER.md and replay each example request; the answers must match."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "EXTENDER.md").read_text()
    blocks = re.findall(r"<!-- example:(\w+)([^>]*)-->\s*```json\n(.*?)```", text, re.S)
    assert blocks and blocks[0][0] == "plan"
    plan = json.loads(blocks[0][2])
    clock = Clock(datetime.fromisoformat(plan["generated_at"]).timestamp() + 300)
    pairs = 0
    with ExtenderServer(DecisionTable.from_document(plan), clock=clock) as srv:
        for (kind, args, req), (rkind, rargs, resp) in zip(blocks[1::2], blocks[2::2]):
            assert (kind, rkind) == ("request", "response")
            method, path = args.split()
            status, _, data = request(srv, method, path, req.encode())
            assert status == int(rargs), (path, data)
            assert json.loads(data) == json.loads(resp), path
            pairs += 1
    assert pairs == 5


# ---------------------------------------------------------------------------
# Which pods the plan steers


def test_a_workload_found_from_the_owner_follows_the_plan(server):
    # A Deployment's pod without annotations: ReplicaSet cart-7d9f5 with pod-template-hash 7d9f5 -> shop/cart.
    p = pod(workload=None, owner=("ReplicaSet", "cart-7d9f5"), labels={"pod-template-hash": "7d9f5"})
    status, out = post(server, "filter", names_args(p))
    assert status == 200 and out["NodeNames"] == ["n1", "n4"]
    _, out = post(server, "prioritize", names_args(p))
    assert {h["Host"]: h["Score"] for h in out}["n4"] == 10
    assert metric(server, "edgeplace_extender_decisions_total", verb="filter", reason="plan") == 1


@pytest.mark.parametrize("p, reason", [
    (pod(workload="wbe"), "unknown_workload"),  # a typo
    (pod(workload=None, owner=("ReplicaSet", "new-7c6d"), labels={"pod-template-hash": "7c6d"}),
     "unknown_workload"),  # a Deployment newer than the plan
    (pod(workload="web", tenant="bank", owner=("DaemonSet", "agent")), "daemonset"),  # annotated, still neutral
    (pod(workload="web", namespace="kube-system"), "system"),
    (pod(workload="web", priority_class="system-node-critical"), "system"),
])
def test_pods_the_plan_must_not_steer_get_neutral_answers(table, clock, p, reason):
    with ExtenderServer(table, clock=clock, unannotated="namespace") as srv:
        _, out = post(srv, "filter", names_args(p))
        assert out["NodeNames"] == NODES and out["FailedNodes"] == {} and out["FailedAndUnresolvableNodes"] == {}
        _, out = post(srv, "prioritize", names_args(p))
        assert [h["Score"] for h in out] == [0] * 5
        victims = {n: {"Pods": [{"UID": f"v-{n}"}], "NumPDBViolations": 0} for n in NODES}
        _, out = post(srv, "preempt", json.dumps({"Pod": p, "NodeNameToMetaVictims": victims}).encode())
        assert sorted(out["NodeNameToMetaVictims"]) == NODES
        for verb in ("filter", "prioritize", "preempt"):
            assert metric(srv, "edgeplace_extender_decisions_total", verb=verb, reason=reason) == 1


def test_a_daemonset_pod_pinned_to_a_dedicated_node_passes(table, clock):
    # With --unannotated namespace a pod's namespace is its tenant; a DaemonSet's pod pinned to bank's
    # dedicated node n5 would fail it, and stay Pending: it must pass (kube-scheduler sends only n5).
    with ExtenderServer(table, clock=clock, unannotated="namespace") as srv:
        _, out = post(srv, "filter", names_args(pod(workload=None, namespace="monitoring",
                                                     owner=("DaemonSet", "node-exporter")), nodes=["n5"]))
        assert out["NodeNames"] == ["n5"]
        _, out = post(srv, "filter", names_args(pod(workload=None, namespace="monitoring"), nodes=["n5"]))
        assert out["NodeNames"] == []  # a bare pod of that namespace does get its tenant's rules


# ---------------------------------------------------------------------------
# The reply rules as kube-scheduler's Go client applies them


def test_duplicate_names_are_answered_once(server):
    names = ["n1", "n4", "n1", "n2", "n4"]
    _, out = post(server, "prioritize", names_args(nodes=names))
    assert out == [{"Host": "n1", "Score": 10}, {"Host": "n4", "Score": 9}, {"Host": "n2", "Score": 0}]
    _, out = post(server, "filter", names_args(nodes=names))
    assert out["NodeNames"] == ["n1", "n4"] and list(out["FailedAndUnresolvableNodes"]) == ["n2"]
    _, out = post(server, "filter", nodes_args(nodes=names))
    assert out["Nodes"]["items"] == [node_object("n1"), node_object("n4")]


def test_preempt_drops_nodes_without_victims(server):
    victims = {"n1": None, "n3": {"Pods": [], "NumPDBViolations": 0}, "n4": {"Pods": [{"UID": "v"}]}}
    status, out = post(server, "preempt", json.dumps({"Pod": pod(), "NodeNameToMetaVictims": victims}).encode())
    assert status == 200 and out == {"NodeNameToMetaVictims": {"n4": {"Pods": [{"UID": "v"}], "NumPDBViolations": 0}}}


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "1.0", "1e3", "0.5"])
def test_numbers_go_cannot_decode_get_400(server, value):
    raw = ('{"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "v"}], "NumPDBViolations": %s}}}'
           % value).encode()
    status, out = post(server, "preempt", raw)
    assert status == 400 and out["Error"].startswith("NodeNameToMetaVictims.n1.NumPDBViolations: must")


# ---------------------------------------------------------------------------
# Heavy and hostile callers


def test_too_many_candidates_get_400(table, clock):
    with ExtenderServer(table, clock=clock, max_candidates=4) as srv:
        for verb, body in (("filter", names_args()), ("prioritize", nodes_args())):
            status, out = post(srv, verb, body)
            assert status == 400 and "5 candidate nodes, more than the limit of 4" in out["Error"]
        victims = {n: {"Pods": [{"UID": n}]} for n in NODES}
        status, out = post(srv, "preempt", json.dumps({"Pod": pod(), "NodeNameToMetaVictims": victims}).encode())
        assert status == 400 and out["Error"].startswith("NodeNameToMetaVictims: has 5 candidate nodes")
        assert post(srv, "filter", names_args(nodes=NODES[:4]))[0] == 200


def test_large_bodies_are_parsed_in_the_helper_process(table, clock):
    with ExtenderServer(table, clock=clock, offload_bytes=100, max_candidates=4) as srv:
        _, inline = post_with(ExtenderServer(table, clock=clock), "filter", nodes_args(nodes=NODES[:4]))
        # A large filter, a small one and a bad large one pipelined on one connection: in order.
        data = (http_request("/filter", nodes_args(nodes=NODES[:4])) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                + http_request("/prioritize", names_args()) + http_request("/prioritize", names_args(nodes=NODES[:4])))
        responses = raw_exchange(srv, data, responses=4, timeout=60)
        assert [r[0] for r in responses] == [200, 200, 400, 200]
        assert json.loads(responses[0][2]) == inline
        assert "more than the limit of 4" in json.loads(responses[2][2])["Error"]
        assert json.loads(responses[3][2])[0] == {"Host": "n1", "Score": 10}
        assert metric(srv, "edgeplace_extender_offloaded_requests_total") == 3


def post_with(srv: ExtenderServer, verb: str, body: bytes) -> tuple[int, object]:
    with srv:
        return post(srv, verb, body)


def connect(srv: ExtenderServer, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10, source_address=(source, 0))


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionError:
        return True


@contextlib.contextmanager
def connections(srv: ExtenderServer, source: str, count: int):
    """`count` open connections from `source`, registered by the server; closed on exit."""
    socks = [connect(srv, source) for _ in range(count)]
    try:
        wait_for(lambda: len(srv._conns) >= count, what=f"{count} connections")
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_silent_connections_of_one_address_do_not_lock_out_another(table, clock):
    with ExtenderServer(table, clock=clock, max_connections=8) as srv, connections(srv, "127.0.0.2", 8) as hog:
        status, _, data = request_from(srv, "127.0.0.1", "/filter", names_args())
        assert status == 200 and json.loads(data)["NodeNames"] == ["n1", "n4"]
        assert sum(map(closed_by_server, hog)) == 1  # one silent connection made room
        assert metric(srv, "edgeplace_extender_connections_closed_total", reason="evicted") == 1


def test_an_address_at_its_share_is_refused_and_others_still_get_in(table, clock):
    with ExtenderServer(table, clock=clock, max_connections=4) as srv, connections(srv, "127.0.0.2", 4) as hog:
        for sock in hog:  # each asks once, then idles on keep-alive: none is silent
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(sock, 1)[0][0] == 200
        with contextlib.closing(connect(srv, "127.0.0.2")) as extra:
            wait_for(lambda: closed_by_server(extra), what="the refusal")
        assert metric(srv, "edgeplace_extender_connections_closed_total", reason="refused") == 1
        assert request_from(srv, "127.0.0.1", "/filter", names_args())[0] == 200  # below its share
        assert sum(map(closed_by_server, hog)) == 1


def test_a_newcomer_replaces_the_silent_connections_of_its_own_address(table, clock):
    with ExtenderServer(table, clock=clock, max_connections=4) as srv, connections(srv, "127.0.0.1", 4) as silent:
        assert request_from(srv, "127.0.0.1", "/filter", names_args())[0] == 200
        wait_for(lambda: closed_by_server(silent[0]), what="the oldest silent connection to be evicted")


def request_from(srv: ExtenderServer, source: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Plans: which are served, and how they are loaded


def test_a_plan_for_another_cluster_or_from_the_future_is_refused(tmp_path, clock, caplog):
    path = tmp_path / "plan.json"
    write_plan_document(plan_doc(), path)
    with ExtenderServer(PlanFile(path, poll_interval_s=0.05), clock=clock, cluster="server-test") as srv:
        assert srv.table.cluster == "server-test"
        for doc, why in ((plan_doc(generated=GENERATED + timedelta(seconds=5), cluster="elsewhere"),
                          "for cluster 'elsewhere' and this extender serves 'server-test'"),
                         (plan_doc(generated=GENERATED + timedelta(seconds=6), cluster=None), "names no cluster"),
                         (plan_doc(generated=GENERATED + timedelta(hours=1)), "s in the future")):
            before = metric(srv, "edgeplace_extender_plan_loads_total", result="refused")
            write_plan_document(doc, path)
            wait_for(lambda: metric(srv, "edgeplace_extender_plan_loads_total", result="refused") == before + 1,
                     what="the refusal")
            assert why in caplog.text
            assert srv.table.generated_at == GENERATED  # the previous plan stays
        write_plan_document(plan_doc(generated=GENERATED + timedelta(seconds=30)), path)  # 30 s ahead: clock skew
        wait_for(lambda: srv.table.generated_at == GENERATED + timedelta(seconds=30), what="the good plan")
        assert srv.helper.started  # reloads are built in the helper process


class CountingPlanFile(PlanFile):
    polls = 0

    def fetch_if_changed(self):
        self.polls += 1
        return super().fetch_if_changed()


def test_a_missing_plan_file_is_logged_once(tmp_path, clock, caplog):
    path = tmp_path / "plan.json"
    source = CountingPlanFile(path, poll_interval_s=0.05)
    with ExtenderServer(source, clock=clock) as srv:
        assert srv.table is None
        assert caplog.text.count("plan.json does not exist") == 1
        assert "answering neutrally until one is published" in caplog.text
        write_plan_document(plan_doc(), path)
        wait_for(lambda: srv.table is not None, what="the plan")
        path.unlink()
        wait_for(lambda: caplog.text.count("plan.json does not exist") == 2, what="the second log line")
        assert "keeping the loaded plan until it expires" in caplog.text
        polls = source.polls
        wait_for(lambda: source.polls >= polls + 5, what="more polls")  # while it stays missing: no more lines
        assert caplog.text.count("plan.json does not exist") == 2


def test_path_prefix_with_a_trailing_slash(table, clock):
    with ExtenderServer(table, clock=clock, path_prefix="/edgeplace/") as srv:
        assert post(srv, "edgeplace/filter", names_args())[0] == 200


def test_edgeplace_serve_takes_the_extender_options(tmp_path):
    """`edgeplace serve --extender` with --path-prefix (a trailing slash), --max-body-bytes and
    --cluster, as a process: it serves, refuses a large body, and stops cleanly on SIGTERM."""
    import signal
    import sys

    plan = tmp_path / "plan.json"
    doc = plan_doc(generated=datetime.now(timezone.utc) - timedelta(seconds=5))
    write_plan_document(doc, plan)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "edgeplace.cli", "serve", "--extender", "--plan-file", str(plan),
                             "--port", str(port), "--path-prefix", "/edgeplace/", "--max-body-bytes", "1000",
                             "--cluster", "server-test", "--compact-replies", "--filter-keeps", "best"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        srv = type("Srv", (), {"port": port, "ssl_context": None})()

        def ready():
            try:
                return request(srv, "GET", "/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout_s=60, what="edgeplace serve to load its plan")
        out = post(srv, "edgeplace/filter", names_args())[1]
        assert out["NodeNames"] == ["n1"] and out["FailedAndUnresolvableNodes"] == {}  # best, compact
        status, out = post(srv, "edgeplace/filter", names_args(nodes=[f"node-{i}" for i in range(200)]))
        assert status == 413 and "limit of 1000 bytes" in out["Error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output


@pytest.mark.parametrize("argv, message", [
    (["--path-prefix", "edgeplace"], "--path-prefix must start with '/'"),
    (["--max-body-bytes", "0"], "must be >= 1"),
    (["--max-candidates", "many"], "must be a whole number"),
    (["--client-ca", "ca.crt"], "--client-ca needs --tls-cert"),
    (["--filter-keeps", "top"], "invalid choice: 'top'"),
])
def test_edgeplace_serve_usage_errors(argv, message):
    import sys

    done = subprocess.run([sys.executable, "-m", "edgeplace.cli", "serve", "--extender", "--plan-file", "p.json", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr
