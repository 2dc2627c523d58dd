"""Hostile input against the extender over real HTTP: never a 5xx, never a hang, no leak.

(a) random JSON, random mutations of a valid ExtenderArgs / ExtenderPreemptionArgs,
    random bytes, invalid UTF-8, truncated bodies -> 200 or 400 with {"Error": ...};
(b) random request heads -> a 4xx and a closed connection (or a valid answer);
(c) deep nesting, huge strings, oversized bodies, incomplete and trickled
    requests (bounded by a short request timeout) -> 4xx, other clients unaffected;
(d) RSS growth after thousands of bad requests stays small.

Every test checks afterwards that the server still answers a valid request
correctly. Traffic goes only to 127.0.0.1; loops are bounded in count and time.
"""

from __future__ import annotations

import copy
import gc
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeplace.k8s.extender.server import ExtenderServer
from edgeplace.k8s.extender.table import DecisionTable

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
MAX_BODY = 256 * 1024
NOW = datetime.now(timezone.utc)

PLAN = {
    "version": 1, "generated_at": NOW.isoformat(), "valid_until": (NOW + timedelta(hours=2)).isoformat(),
    "slot": {"index": 0},
    "nodes": {"n1": {"powered": True, "score_g": 20.0}, "n2": {"powered": True, "score_g": 10.0, "tenants": ["b"]},
              "n3": {"powered": False, "score_g": 1.0}, "n4": {"powered": True, "score_g": 5.0}},
    "workloads": {"web": {"tenant": "a", "allowed_nodes": ["n1", "n2", "n3", "n4"], "planned_nodes": {"n1": 1}}},
    "tenants": {"a": {"never_with": ["b"]}},
}
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": {"edgeplace.io/workload": "web"}},
       "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}
ARGS = {"Pod": POD, "Nodes": None, "NodeNames": ["n1", "n2", "n3", "n4", "zz"]}
FULL_ARGS = {"Pod": POD, "NodeNames": None,
             "Nodes": {"metadata": {}, "items": [{"metadata": {"name": n}} for n in ("n1", "n2", "n3")]}}
PREEMPT = {"Pod": POD, "NodeNameToVictims": None,
           "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "v"}], "NumPDBViolations": 0}}}
VERBS = ["/filter", "/prioritize", "/preempt"]


@pytest.fixture(scope="module")
def server():
    table = DecisionTable.from_document(PLAN)
    with ExtenderServer(table, max_body_bytes=MAX_BODY, request_timeout_s=0.5) as srv:
        yield srv


class Client:
    """One keep-alive connection that reconnects when the server closed it."""

    def __init__(self, port: int, timeout: float = 3.0):
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf = b""

    def send(self, data: bytes) -> tuple[int | None, dict, bytes]:
        """Send raw bytes, read one response; (None, {}, b"") if the server closed without one."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            return None, {}, b""
        return self.read(head_only=data.startswith(b"HEAD "))

    def read(self, head_only: bool = False) -> tuple[int | None, dict, bytes]:
        try:
            while b"\r\n\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.close()
                    return None, {}, b""
                self.buf += chunk
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            n = 0 if head_only else int(headers.get("content-length", 0))  # a HEAD answer has no body
            while len(rest) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.buf = rest[n:]
            if headers.get("connection") == "close":
                self.close()
            return status, headers, rest[:n]
        except ConnectionResetError:
            self.close()
            return None, {}, b""

    def post(self, path: str, body: bytes) -> tuple[int | None, dict, bytes]:
        return self.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))


@pytest.fixture
def client(server):
    c = Client(server.port)
    yield c
    c.close()


def assert_healthy(server: ExtenderServer) -> None:
    """The server still answers a valid filter call correctly, on a fresh connection."""
    c = Client(server.port)
    try:
        status, _, body = c.post("/filter", json.dumps(ARGS).encode())
        assert status == 200
        assert json.loads(body)["NodeNames"] == ["n1", "n4", "zz"]
    finally:
        c.close()


def check_answer(path: str, status: int | None, body: bytes) -> None:
    assert status in (200, 400), (status, body[:200])
    out = json.loads(body)
    if status == 400:
        assert isinstance(out, dict) and isinstance(out["Error"], str) and out["Error"]
    elif path == "/filter":
        assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    elif path == "/prioritize":
        assert isinstance(out, list) and all(0 <= h["Score"] <= 10 for h in out)
    else:
        assert set(out) == {"NodeNameToMetaVictims"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25)


# ---------------------------------------------------------------------------
# (a) bodies


@FUZZ
@given(path=st.sampled_from(VERBS), value=json_values)
def test_random_json(server, client, path, value):
    status, _, body = client.post(path, json.dumps(value).encode())
    check_answer(path, status, body)


def _paths(x: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(x, dict):
        for k, v in x.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, prefix + (i,))
    return out


@FUZZ
@given(data=st.data(), base=st.sampled_from([("/filter", ARGS), ("/prioritize", ARGS), ("/filter", FULL_ARGS),
                                              ("/prioritize", FULL_ARGS), ("/preempt", PREEMPT)]))
def test_mutated_valid_bodies(server, client, data, base):
    path, doc = base
    doc = copy.deepcopy(doc)
    where = data.draw(st.sampled_from(_paths(doc)[1:]))
    target = doc
    for k in where[:-1]:
        target = target[k]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[where[-1]]
    else:
        target[where[-1]] = data.draw(json_values)
    status, _, body = client.post(path, json.dumps(doc).encode())
    check_answer(path, status, body)


@FUZZ
@given(path=st.sampled_from(VERBS), raw=st.binary(max_size=300))
def test_random_bytes(server, client, path, raw):
    status, _, body = client.post(path, raw)
    check_answer(path, status, body)


@FUZZ
@given(path=st.sampled_from(VERBS), cut=st.integers(min_value=0, max_value=400), junk=st.binary(min_size=1, max_size=4))
def test_truncated_and_corrupted_bodies(server, client, path, cut, junk):
    valid = json.dumps(PREEMPT if path == "/preempt" else ARGS).encode()
    for body in (valid[:cut], valid[:cut] + b"\xff" + junk, valid[:cut] + b"\xed\xa0\x80" + valid[cut:]):
        status, _, out = client.post(path, body)
        check_answer(path, status, out)


# ---------------------------------------------------------------------------
# (b) request heads


@FUZZ
@given(head=st.binary(max_size=200))
def test_random_request_heads(server, head):
    c = Client(server.port)
    try:
        status, headers, body = c.send(head + b"\r\n\r\n")
        if status is not None:
            assert status < 500, (status, body[:200])
    finally:
        c.close()


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]),
       path=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
       headers=st.lists(st.tuples(st.text(alphabet="abcdefgh-XYZ", min_size=1, max_size=10),
                                  st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)),
                        max_size=5))
def test_random_methods_paths_and_headers(server, method, path, headers):
    c = Client(server.port)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in ("content-length", "transfer-encoding"))
        status, _, body = c.send(f"{method} /{path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 2\r\n\r\n{{}}".encode())
        assert status is not None and status < 500, (status, body[:200])
    finally:
        c.close()


# ---------------------------------------------------------------------------
# (c) big, deep and slow


@pytest.mark.parametrize("body, status", [
    (b"[" * 200_000, 400),                                                     # deep nesting
    (b'{"Pod": ' * 20_000 + b"{}" + b"}" * 20_000, 400),          # 180 KB of nested objects
    (json.dumps({"Pod": POD, "NodeNames": ["x" * 200_000]}).encode(), 200),      # a huge but valid name
    (json.dumps({"Pod": POD, "NodeNames": ["n"] * 9_000}).encode(), 200),        # many short names
    (json.dumps({"Pod": POD, "NodeNames": ["n"] * 40_000}).encode(), 400),       # more than max_candidates
    (json.dumps({"Pod": {"metadata": {"annotations": {"edgeplace.io/workload": "w" * 200_000}}},
                 "NodeNames": ["n1"]}).encode(), 200),
    (b'{"Pod": {}, "NodeNames": ["' + b"a" * (MAX_BODY + 10) + b'"]}', 413),     # over the limit
])
def test_big_and_deep_bodies(server, client, body, status):
    got, _, out = client.post("/filter", body)
    assert got == status
    assert json.loads(out)
    assert_healthy(server)


def test_incomplete_requests_time_out_and_others_are_served(server):
    """Slowloris-ish: 30 connections trickle partial requests; the rest keeps working."""
    trickling = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(30)]
    try:
        for i, s in enumerate(trickling):
            s.sendall(b"POST /filter HTTP/1.1\r\n" if i % 2 else b"POST /filter HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        started = time.monotonic()
        worst = 0.0
        while time.monotonic() - started < 0.3:  # keep trickling while normal calls go on
            for s in trickling:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            t = time.perf_counter()
            assert_healthy(server)
            worst = max(worst, time.perf_counter() - t)
        assert worst < 0.5
        deadline = time.monotonic() + 5
        closed = 0
        for s in trickling:  # every trickler is answered 408 (or 400 for its junk) and closed
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")), data[:60]
            closed += 1
        assert closed == len(trickling)
    finally:
        for s in trickling:
            s.close()
    assert_healthy(server)


def test_a_client_that_never_reads_does_not_grow_the_server(server):
    """Pipelined requests from a client that never reads its answers (50 KB each): the server
    stops reading once its write buffer is full, so back-pressure reaches the client."""
    args = json.dumps({"Pod": POD, "NodeNames": [f"node-{i}" for i in range(2000)]}).encode()
    one = b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(args), args)
    rss = psutil.Process().memory_info().rss
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        s.setblocking(False)
        sent_bytes, blocked_since = 0, None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent_bytes < 5000 * len(one):
            offset = sent_bytes % len(one)
            try:
                sent_bytes += s.send(one[offset:])  # a stream of whole requests, however send() splits it
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 0.5:
                    break  # blocked for good: the server stopped reading
                time.sleep(0.01)
        sent = sent_bytes // len(one)
        assert blocked_since is not None and sent < 5000, sent
        conns = [c for c in server._conns if c.write_paused]
        assert conns and all(c.transport.get_write_buffer_size() < 2 ** 20 for c in conns)
    assert (psutil.Process().memory_info().rss - rss) / 2 ** 20 < 50
    assert_healthy(server)


# ---------------------------------------------------------------------------
# (d) no leak


def test_rss_stays_flat_over_thousands_of_bad_requests(server):
    bad = [b"{", b"\xff\xfe", b"[" * 5000, json.dumps({"Pod": 1, "NodeNames": []}).encode(),
           json.dumps({"Pod": POD, "NodeNames": ["n1", 2]}).encode(), b'{"Pod": {}, "NodeNames": ["' + b"a" * 50_000 + b'"]}']
    over = b"a" * (MAX_BODY + 1)
    c = Client(server.port)
    process = psutil.Process()

    def burst(n: int) -> None:
        for i in range(n):
            if i % 50 == 49:
                status, _, _ = c.post("/filter", over)
                assert status == 413
            elif i % 50 == 48:
                status, _, _ = c.send(b"BAD REQUEST LINE\r\n\r\n")
                assert status == 400
            else:
                status, _, _ = c.post(VERBS[i % 3], bad[i % len(bad)])
                assert status == 400

    try:
        burst(500)  # warm-up: allocator pools, metric children, code paths
        gc.collect()
        before = process.memory_info().rss
        burst(5000)
        gc.collect()
        growth_mib = (process.memory_info().rss - before) / 2 ** 20
    finally:
        c.close()
    assert growth_mib < 50, f"RSS grew by {growth_mib:.1f} MiB over 5,000 bad requests"
    assert_healthy(server)
