"""edgeplace.topology.signals.http: retries, back-off, Retry-After, timeouts, budgets, and the outcome mapping.

`LoopbackServer` (used by every service test) serves scripted replies on
127.0.0.1; nothing here touches another host.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edgeplace.topology.errors import InputError
from edgeplace.topology.signals.http import (
    HttpClient,
    RetryPolicy,
    ServiceAuthError,
    ServiceRequestError,
    ServiceUnavailable,
    backoff_delay,
    error_message,
    parse_retry_after,
)


@dataclass
class Reply:
    """One scripted answer: status, body (bytes, str, or JSON-able), headers; `stall_s` > 0 holds the answer back."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    """A request the server got; header names in lower case."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode())


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with per-path reply queues (the last reply repeats).

        with LoopbackServer() as srv:
            srv.script("/v3/x", Reply(429, headers={"Retry-After": "1"}), Reply(200, {...}))
            ... srv.url ... srv.seen
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer._lock:
                    outer.seen.append(Seen(parts.path, urllib.parse.parse_qs(parts.query),
                                           {k.lower(): v for k, v in self.headers.items()}, self.command, body))
                    queue = outer.routes.get(parts.path)
                    reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Reply(404, {"message": "no route"})
                if reply.stall_s:
                    outer.release.wait(reply.stall_s)
                    return
                data = reply.payload()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if reply.status not in (204, 304):  # no body, no Content-Length (RFC 9110)
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if reply.status not in (204, 304):
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def script(self, path: str, *replies: Reply) -> "LoopbackServer":
        with self._lock:
            self.routes[path] = list(replies)
        return self

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Sleeps(list):
    """A `sleep` that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


FAST = RetryPolicy(attempts=3, timeout_s=0.3, base_delay_s=0.01, max_delay_s=0.02, budget_s=5.0)


def client(policy: RetryPolicy = FAST, sleeps: Sleeps | None = None) -> HttpClient:
    return HttpClient("Test", policy, sleep=sleeps if sleeps is not None else Sleeps(), rng=random.Random(1),
                      auth_hint="set TEST_TOKEN")


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


# ---------------------------------------------------------------------------


def test_success_sends_params_and_headers(server):
    server.script("/data", Reply(200, {"ok": 1}))
    doc = client().get_json(f"{server.url}/data", {"zone": "DE", "n": [1, 2]}, headers={"auth-token": "t"})
    assert doc == {"ok": 1}
    seen = server.seen[0]
    assert seen.query == {"zone": ["DE"], "n": ["1", "2"]}
    assert seen.headers["auth-token"] == "t"
    assert seen.headers["user-agent"].startswith("edgeplace")


def test_auth_failure_is_an_input_error_naming_the_fix(server):
    server.script("/data", Reply(401, {"message": "invalid token"}))
    with pytest.raises(ServiceAuthError, match=r"HTTP 401.*invalid token.*set TEST_TOKEN"):
        client().get(f"{server.url}/data")
    assert len(server.seen) == 1  # never retried


def test_forbidden_is_the_plan_not_the_credentials(server):
    from edgeplace.topology.signals.http import ServicePlanError

    server.script("/data", Reply(403, {"message": "zone not in your plan"}))
    with pytest.raises(ServicePlanError, match=r"HTTP 403: the credentials were accepted, but the account's plan "
                                               r"does not include this request \(zone not in your plan\)") as info:
        client().get(f"{server.url}/data")
    assert not isinstance(info.value, ServiceAuthError) and "TEST_TOKEN" not in str(info.value)
    assert len(server.seen) == 1


def test_no_content_is_no_data_not_a_broken_body(server):
    from edgeplace.topology.signals.http import ServiceNoData

    server.script("/data", Reply(204))
    with pytest.raises(ServiceNoData, match="HTTP 204: the service has no data for this request"):
        client().get_json(f"{server.url}/data")


def test_post_sends_a_json_body(server):
    server.script("/batch", Reply(200, [{"ok": True}]))
    assert client().post_json(f"{server.url}/batch", [{"location": "eastus"}]) == [{"ok": True}]
    seen = server.seen[0]
    assert (seen.method, seen.json(), seen.headers["content-type"]) == ("POST", [{"location": "eastus"}], "application/json")


def test_other_4xx_is_a_request_error_with_the_service_message(server):
    server.script("/data", Reply(400, {"title": "Bad Request", "detail": "unknown zone XX"}))
    with pytest.raises(ServiceRequestError, match="unknown zone XX"):
        client().get(f"{server.url}/data")
    assert len(server.seen) == 1


def test_429_waits_retry_after_then_succeeds(server):
    sleeps = Sleeps()
    server.script("/data", Reply(429, {"message": "slow down"}, {"Retry-After": "2"}), Reply(200, {"ok": True}))
    assert client(RetryPolicy(attempts=3, timeout_s=1, budget_s=10), sleeps).get_json(f"{server.url}/data") == {"ok": True}
    assert sleeps == [2.0]  # the server's figure, not our back-off


def test_retry_after_beyond_the_cap_gives_up_at_once(server):
    server.script("/data", Reply(429, b"", {"Retry-After": "3600"}))
    with pytest.raises(ServiceUnavailable, match="Retry-After 3600 s is longer"):
        client(RetryPolicy(attempts=3, timeout_s=1, max_retry_after_s=60)).get(f"{server.url}/data")
    assert len(server.seen) == 1


def test_5xx_is_retried_with_backoff_then_reported(server):
    sleeps = Sleeps()
    server.script("/data", Reply(503, {"message": "maintenance"}))
    with pytest.raises(ServiceUnavailable, match=r"HTTP 503 maintenance \(after 3 attempt"):
        client(sleeps=sleeps).get(f"{server.url}/data")
    assert len(server.seen) == 3 and len(sleeps) == 2
    # Equal jitter: wait k is in [d/2, d] with d = min(max_delay, base x 2^(k-1)).
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_timeout_is_retried_and_bounded(server):
    server.script("/data", Reply(stall_s=5))
    sleeps = Sleeps()
    with pytest.raises(ServiceUnavailable, match=r"no answer within the 0.3 s timeout \(after 2 attempt"):
        client(RetryPolicy(attempts=2, timeout_s=0.3, base_delay_s=0.01), sleeps).get(f"{server.url}/data")
    assert len(server.seen) == 2


def test_connection_refused_is_an_outage():
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        client().get(f"{closed_port_url()}/data")


def test_budget_stops_waiting_that_would_pass_it(server):
    server.script("/data", Reply(503))
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=10, timeout_s=1, base_delay_s=4, max_delay_s=4, budget_s=1)
    with pytest.raises(ServiceUnavailable, match="would pass the 1 s budget"):
        client(policy, sleeps).get(f"{server.url}/data")
    assert sleeps == [] and len(server.seen) == 1


def test_malformed_body_is_an_input_error(server):
    server.script("/data", Reply(200, "<html>502 Bad Gateway</html>"))
    with pytest.raises(InputError, match=r"(?s)Test response from .*/data.*body: is not JSON.*<html>"):
        client().get_json(f"{server.url}/data")


# -- pure helpers ---------------------------------------------------------------


@pytest.mark.parametrize("header, seconds", [
    ("7", 7.0),
    (None, None),
    ("soon", None),
    ("Sun, 21 Jun 2026 00:00:30 GMT", 30.0),   # 30 s after `now` below
    ("Sun, 21 Jun 2026 00:00:00 GMT", 0.0),
    ("Sat, 20 Jun 2026 23:00:00 GMT", 0.0),    # in the past: no wait
])
def test_parse_retry_after(header, seconds):
    now = datetime(2026, 6, 21, tzinfo=timezone.utc)
    assert parse_retry_after(header, now) == seconds


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(base_delay_s=1, max_delay_s=8)
    rng = random.Random(0)
    for attempt, d in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (9, 8)]:
        for _ in range(20):
            assert d / 2 <= backoff_delay(attempt, policy, rng) <= d


def test_error_message_prefers_the_documented_fields():
    assert error_message(b'{"status": "error", "errorType": "bad_data", "error": "parse error"}') == "parse error"
    assert error_message(b"plain text") == "plain text"


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="attempts >= 1"):
        RetryPolicy(attempts=0)

