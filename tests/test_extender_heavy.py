"""Heavy and hostile callers do not stall the others (issue 12), on loopback.

2,000 connections from one address (127.0.0.2) open and never send a byte
(the first-request deadline is set far off, so only the fair share of the
connection cap protects the others); another client (127.0.0.3) keeps an
8 MiB request in flight all the time: either 838k node names (parsed in the
helper process, then refused by the candidate cap) or 2,000 full Node
objects (parsed in the helper, decided and answered). Meanwhile a third
client (127.0.0.1, as kube-scheduler) sends ordinary filter calls with 1,000
candidate names on one keep-alive connection: each must answer within
50 ms, and each must have overlapped a heavy request in flight.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
import threading
import time

import pytest

from edgeplace.k8s.extender.server import DEFAULT_MAX_BODY_BYTES, ExtenderServer
from edgeplace.k8s.extender.table import DecisionTable
from tests.test_extender_server import plan_doc, pod

IDLE_CONNECTIONS = 2_000
NORMAL_CALLS = 30
DEADLINE_MS = 50.0
NORMAL_NODES = [f"n{i % 5 + 1}" if i < 5 else f"other-{i}" for i in range(1_000)]


def names_body() -> bytes:
    """838k node names in just under 8 MiB."""
    names = [f"n{i:06d}" for i in range(838_000)]
    body = json.dumps({"Pod": pod(), "Nodes": None, "NodeNames": names}, separators=(",", ":")).encode()
    assert 8_000_000 < len(body) <= DEFAULT_MAX_BODY_BYTES, len(body)
    return body


def nodes_body() -> bytes:
    """2,000 Node objects of about 4 KB each, just under 8 MiB."""
    node = {"metadata": {"name": "", "labels": {f"example.com/label-{k}": "v" * 40 for k in range(12)},
                         "annotations": {"note": "x" * 1500}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"},
                       "images": [{"names": [f"registry.example/team/app-{k}:1.{k}"], "sizeBytes": 10 ** 8}
                                  for k in range(16)]}}
    items = [dict(node, metadata=dict(node["metadata"], name=f"big-{i}")) for i in range(2_000)]
    body = json.dumps({"Pod": pod(), "Nodes": {"metadata": {}, "items": items}, "NodeNames": None},
                      separators=(",", ":")).encode()
    assert 7_000_000 < len(body) <= DEFAULT_MAX_BODY_BYTES, len(body)
    return body


def read_one(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    length = int(next(line.split(":", 1)[1] for line in head.split("\r\n") if line.lower().startswith("content-length")))
    while len(buf) < end + 4 + length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    body = bytes(buf[end + 4:end + 4 + length])
    del buf[:end + 4 + length]
    return int(head.split(" ")[1]), body


class Heavy(threading.Thread):
    """Sends one heavy request after another on its own connection until stopped."""

    def __init__(self, port: int, body: bytes):
        super().__init__(daemon=True)
        self.request = b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        self.port = port
        self.stop = threading.Event()
        self.intervals: list[tuple[float, float, int]] = []  # (sent, answered, status)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=60, source_address=("127.0.0.3", 0))
            buf = bytearray()
            with sock:
                while not self.stop.is_set():
                    sent = time.perf_counter()
                    sock.sendall(self.request)
                    status, _ = read_one(sock, buf)
                    self.intervals.append((sent, time.perf_counter(), status))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def in_flight(self, t0: float, t1: float) -> bool:
        """A heavy request was sent before t0 and answered after t1 (or is still out)."""
        done = [(a, b) for a, b, _ in self.intervals]
        last_sent = max((a for a, _ in done), default=None)
        return any(a <= t0 and b >= t1 for a, b in done) or (
            last_sent is not None and last_sent <= t0 and len(done) == len(self.intervals))


@pytest.fixture(scope="module")
def fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * IDLE_CONNECTIONS + 500
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("make_body, heavy_status", [(names_body, 400), (nodes_body, 200)],
                         ids=["838k-node-names", "2000-node-objects"])
def test_a_normal_filter_call_answers_within_50_ms(fds, make_body, heavy_status):
    table = DecisionTable.from_document(plan_doc())
    body = make_body()
    clock = lambda: table.generated_at_ts + 60  # noqa: E731 - the plan's validity
    with ExtenderServer(table, clock=clock, first_request_timeout_s=600) as srv:
        srv.helper.warm()
        idle = []
        heavy = Heavy(srv.port, body)
        try:
            for _ in range(IDLE_CONNECTIONS):
                idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                                     source_address=("127.0.0.2", 0)))
            deadline = time.monotonic() + 30
            while len(srv._conns) < srv.max_connections and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(srv._conns) == srv.max_connections  # the cap is full of silent connections
            heavy.start()
            normal = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10, source_address=("127.0.0.1", 0))
            request = json.dumps({"Pod": pod(), "Nodes": None, "NodeNames": NORMAL_NODES}).encode()
            latencies, overlapped = [], 0
            while not heavy.intervals and heavy.is_alive():  # one heavy call completed: the pipeline is warm
                time.sleep(0.01)
            for _ in range(NORMAL_CALLS):
                t0 = time.perf_counter()
                normal.request("POST", "/filter", request)
                resp = normal.getresponse()
                out = json.loads(resp.read())
                t1 = time.perf_counter()
                assert resp.status == 200 and out["NodeNames"][:2] == ["n1", "n4"]
                latencies.append((t1 - t0) * 1000)
                overlapped += heavy.in_flight(t0, t1)
            normal.close()
        finally:
            heavy.stop.set()
            heavy.join(timeout=60)
            for sock in idle:
                sock.close()
    assert heavy.error is None, heavy.error
    assert {status for _, _, status in heavy.intervals} == {heavy_status}
    assert overlapped == NORMAL_CALLS, f"only {overlapped} of {NORMAL_CALLS} calls overlapped a heavy request"
    latencies.sort()
    print(f"\nnormal filter calls with {IDLE_CONNECTIONS} silent connections and 8 MiB requests in flight "
          f"({len(heavy.intervals)} heavy answered, {heavy.intervals[0][1] - heavy.intervals[0][0]:.2f} s the first): "
          f"median {latencies[len(latencies) // 2]:.1f} ms, max {latencies[-1]:.1f} ms")
    assert latencies[-1] < DEADLINE_MS, latencies
