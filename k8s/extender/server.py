"""The extender's HTTP service: a small asyncio HTTP/1.1 server in its own thread.

Routes (``PREFIX`` is `path_prefix`, default empty; kube-scheduler calls
``<urlPrefix>/<verb>``):

=====================  ======  ==============================================  ==========
path                   method  answer                                          token
=====================  ======  ==============================================  ==========
PREFIX/filter          POST    ExtenderFilterResult                            if set
PREFIX/prioritize      POST    HostPriorityList                                if set
PREFIX/preempt         POST    ExtenderPreemptionResult                        if set
/metrics               GET     Prometheus text format                          if set
/healthz               GET     200 while the process serves                    no
/readyz                GET     200 with a valid, non-stale plan, else 503      no
=====================  ======  ==============================================  ==========

There is no bind verb (docs/EXTENDER.md says why). Status codes: 400 for a
malformed request or body (``{"Error": "<field>: <message>"}``, also more
candidates than `max_candidates`), 401 without the bearer token or the client
certificate, 404 unknown path, 405 wrong method, 408 a request not complete
within `request_timeout_s`, 413 a body over `max_body_bytes`, 429 too many
large bodies waiting for the helper process, 431 a request head over 64 KiB.
A verb never answers 5xx: with no plan, a stale plan or an internal error it
fails open (every node passes, every score 0) and the decisions metric says
why.

Why not `http.server`: a thread per connection and a parser in Python per
header line cost several milliseconds per call; this server parses the
head with one split, keeps connections alive and answers on the event loop
thread from the precomputed table. Work that would hold the interpreter for
tens of milliseconds (bodies over `offload_bytes`, building a table from a
new plan) runs in a helper process (`edgeplace.k8s.extender.offload`), so
one heavy caller never stalls the others.

Connections: at most `max_connections`. A connection must send its first
byte within `first_request_timeout_s` and then each request must be
complete within `request_timeout_s`; an idle keep-alive connection is
closed after `idle_timeout_s`. When the cap is reached, a client address
holding less than its fair share (the cap divided by the number of
addresses connected) still gets in: an idle connection of the address
holding the most is closed for it (one that never sent a byte first); a
newcomer from an address at its share replaces that address's own oldest
connection that never sent a byte, or is refused. So no number of silent
connections from one address locks kube-scheduler out.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import hmac
import logging
import os
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from edgeplace.k8s.extender import offload, wire
from edgeplace.k8s.extender.metrics import ExtenderMetrics
from edgeplace.k8s.extender.table import DecisionTable, PlanData, PlanError, PlanFile, PlanMissing, TableSource, Target

log = logging.getLogger("edgeplace.k8s.extender")

#: Default largest request body [bytes]. 1,000 node names are about 25 KB;
#: 1,000 full Node objects are 2-15 MB (images lists), so clusters that do not
#: use nodeCacheCapable may need more.
DEFAULT_MAX_BODY_BYTES = 8 * 2 ** 20
#: Largest request line + headers [bytes].
MAX_HEAD_BYTES = 64 * 2 ** 10
#: Keep-alive idle timeout [s]: longer than the 90 s IdleConnTimeout of
#: kube-scheduler's Go transport, so the client closes idle connections first
#: (a POST on a connection the server just closed is not retried by Go).
DEFAULT_IDLE_TIMEOUT_S = 120.0
#: A request (head and body) must arrive within this many seconds of its first byte.
DEFAULT_REQUEST_TIMEOUT_S = 10.0
#: A new connection must send its first byte (TLS: finish its handshake) within this many
#: seconds: kube-scheduler's client sends at once; a silent connection only holds a slot.
DEFAULT_FIRST_REQUEST_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 1024
#: Bodies larger than this are parsed in the helper process [bytes]: 1,000 node names are
#: 17 KiB (parsed inline in well under a millisecond); json.loads of 256 KiB takes ~1 ms.
DEFAULT_OFFLOAD_BYTES = 256 * 2 ** 10
#: A plan generated further than this in the future is refused [s]: allows for clock skew
#: between the planner's and the extender's machines, not for a wrong clock.
MAX_FUTURE_PLAN_S = 60.0
UNANNOTATED_MODES = ("neutral", "namespace")
#: What the filter passes: every node the plan allows, or only the best-scored of them.
FILTER_KEEPS = ("allowed", "best")
VERBS = ("filter", "prioritize", "preempt")
#: Routes that need the token or the client certificate when one is configured.
_PROTECTED = (*VERBS, "metrics")

_REASON_PHRASE = {100: b"Continue", 200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
                  405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Content Too Large",
                  429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
                  503: b"Service Unavailable"}
_JSON = b"application/json"


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


class _Head:
    __slots__ = ("method", "target", "headers", "keep_alive", "length", "chunked")

    def __init__(self, method: str, target: str, headers: dict[str, str], keep_alive: bool, length: int, chunked: bool):
        self.method, self.target, self.headers = method, target, headers
        self.keep_alive, self.length, self.chunked = keep_alive, length, chunked


def _parse_head(raw: bytes) -> _Head:
    """Request line and headers (RFC 9112) from the bytes before the blank line."""
    lines = raw.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _HttpError(400, "malformed request line (expected: METHOD /path HTTP/1.1)")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _HttpError(400, f"unsupported protocol version {version[:20]!r} (HTTP/1.1 or HTTP/1.0)")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[-1] in " \t" or name[0] in " \t":
            raise _HttpError(400, f"malformed header line {line[:40]!r}")
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise _HttpError(400, "conflicting Content-Length headers")
            value = headers[name] + ", " + value if name != "content-length" else value
        headers[name] = value
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    chunked = False
    length = 0
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise _HttpError(400, "both Transfer-Encoding and Content-Length are set")
        if headers["transfer-encoding"].lower() != "chunked":
            raise _HttpError(400, "unsupported Transfer-Encoding (only chunked)")
        chunked = True
    elif "content-length" in headers:
        cl = headers["content-length"]
        if not (cl.isascii() and cl.isdigit()) or len(cl) > 18:
            raise _HttpError(400, "Content-Length must be a whole number of bytes")
        length = int(cl)
    return _Head(method.upper(), target, headers, keep_alive, length, chunked)


class _Connection(asyncio.Protocol):
    """One client connection: reads requests one after another (keep-alive, pipelining)."""

    def __init__(self, server: "ExtenderServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.scan_from = 0
        self.head: _Head | None = None
        self.chunk_body: bytearray | None = None
        self.chunk_need = -1  # -1 reading a size line, >= 0 bytes of chunk data, -2 trailers
        self.started: float | None = None  # monotonic time of the current request's first byte
        self.opened = self.last_active = time.monotonic()
        self.addr = ""  # the client's IP address (the unit of the fair share)
        self.heard = False  # has sent a byte (a silent connection is the first to be evicted)
        self.client_cert = False  # presented a verified client certificate (TLS)
        self.closing = False
        self.write_paused = False
        self.busy = False  # a request of this connection is in the helper process

    # -- asyncio callbacks -------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.addr = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.client_cert = bool(transport.get_extra_info("peercert"))
        if not self.server._admit(self):
            self.closing = True
            transport.abort()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server._forget(self)
        self.buf = bytearray()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests too.
        self.write_paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._set_reading()
        self._process()

    def _set_reading(self) -> None:
        if self.write_paused or self.busy:
            self.transport.pause_reading()
        elif not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.heard = True
        if self.started is None:
            self.started = time.monotonic()
        self.buf += data
        self._process()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # -- request framing ----------------------------------------------------------
    def _process(self) -> None:
        try:
            while not (self.closing or self.write_paused or self.busy or self.transport.is_closing()):
                if self.head is None and not self._read_head():
                    return
                body = self._read_body()
                if body is None:
                    return
                head, self.head = self.head, None
                if not self.server._handle(self, head, body):
                    # Answered later (helper process): hold the rest of the stream until then,
                    # so pipelined answers keep their order.
                    self.busy, self.started = True, None
                    self._set_reading()
                    return
                self._next_request()
        except _HttpError as exc:
            self.fail(exc.status, exc.message)
        except Exception:  # a bug: say so, never hang the client
            log.exception("extender: unexpected error while reading a request")
            self.fail(500, "internal error while reading the request")

    def _read_head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n", self.scan_from)
        if end < 0:
            if len(self.buf) > MAX_HEAD_BYTES:
                raise _HttpError(431, f"request head is larger than {MAX_HEAD_BYTES} bytes")
            self.scan_from = max(0, len(self.buf) - 3)
            return False
        if end > MAX_HEAD_BYTES:
            raise _HttpError(431, f"request head is larger than {MAX_HEAD_BYTES} bytes")
        raw = bytes(self.buf[:end])
        del self.buf[:end + 4]
        self.scan_from = 0
        head = _parse_head(raw)
        limit = self.server.max_body_bytes
        if head.length > limit:
            raise _HttpError(413, f"body of {head.length} bytes is larger than the limit of {limit} bytes")
        self.head = head
        if head.chunked:
            self.chunk_body, self.chunk_need = bytearray(), -1
        if head.headers.get("expect", "").lower() == "100-continue" and (head.length or head.chunked) and not self.buf:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _read_body(self) -> bytes | None:
        head = self.head
        if not head.chunked:
            n = head.length
            if len(self.buf) < n:
                return None
            if n == len(self.buf):
                body, self.buf = bytes(self.buf), bytearray()
            else:
                body = bytes(self.buf[:n])
                del self.buf[:n]
            return body
        return self._read_chunks()

    def _read_chunks(self) -> bytes | None:
        buf, limit = self.buf, self.server.max_body_bytes
        while True:
            if self.chunk_need == -1:  # chunk-size [; ext] CRLF
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 1024:
                        raise _HttpError(400, "malformed chunk size line")
                    return None
                size_text = bytes(buf[:i]).split(b";", 1)[0].strip()
                del buf[:i + 2]
                if not size_text or len(size_text) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                    raise _HttpError(400, "malformed chunk size")
                size = int(size_text, 16)
                if len(self.chunk_body) + size > limit:
                    raise _HttpError(413, f"chunked body is larger than the limit of {limit} bytes")
                self.chunk_need = size if size else -2
            elif self.chunk_need == -2:  # trailer fields, then an empty line
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise _HttpError(431, "chunked trailers are too large")
                    return None
                line = bytes(buf[:i])
                del buf[:i + 2]
                if not line:
                    body, self.chunk_body, self.chunk_need = bytes(self.chunk_body), None, -1
                    return body
            else:
                need = self.chunk_need
                if len(buf) < need + 2:
                    return None
                if buf[need:need + 2] != b"\r\n":
                    raise _HttpError(400, "chunk data is not followed by CRLF")
                self.chunk_body += buf[:need]
                del buf[:need + 2]
                self.chunk_need = -1

    # -- answers -----------------------------------------------------------------
    def respond(self, status: int, body: bytes, content_type: bytes = _JSON, close: bool = False,
                extra: bytes = b"", head_only: bool = False) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n"
                % (status, _REASON_PHRASE.get(status, b"Unknown"), content_type, len(body), extra,
                   b"Connection: close\r\n" if close else b""))
        if head_only:
            self.transport.write(head)
        elif len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        if close:
            self.closing = True
            self.transport.close()

    def fail(self, status: int, message: str) -> None:
        """Answer a framing error and close: the rest of the stream cannot be trusted."""
        self.server.metrics.request("other", status, 0.0)
        self.respond(status, wire.error_body(message), close=True)

    def _next_request(self) -> None:
        if self.buf:
            self.started = time.monotonic()
        else:
            self.started = None
            self.last_active = time.monotonic()

    def resume(self) -> None:
        """The deferred answer is written: go on with the requests behind it."""
        self.busy = False
        self._next_request()
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            self._set_reading()
            self._process()


class ExtenderServer:
    """The scheduler extender over HTTP(S), on an asyncio loop in a background thread.

    Parameters
    ----------
    table_source : a `DecisionTable` (fixed until `set_table`), a `TableSource`
        such as `PlanFile` (polled from a worker thread), or None (no plan yet:
        answers are neutral until `set_table`)
    host, port : where to listen; port 0 picks a free port (see `port` after `start()`)
    token : bearer token required on the verbs and /metrics; None = no token
    ssl_context : serve HTTPS with this context (`make_ssl_context`); None = HTTP. With a
        client CA (`verify_mode` CERT_OPTIONAL, as `make_ssl_context` sets it), the verbs
        and /metrics need a verified client certificate; /healthz and /readyz do not
    max_body_bytes : larger bodies get 413
    unannotated : "neutral" (pods with no workload and no tenant annotation get
        neutral answers) or "namespace" (their namespace is their tenant)
    path_prefix : prefix of the verb paths, e.g. "/edgeplace" (a trailing "/" is dropped)
    request_timeout_s, idle_timeout_s, first_request_timeout_s : see the module constants
    max_connections : the connection cap (shared fairly by client address, module docstring)
    max_candidates : more candidate nodes in one request get 400
    cluster : the cluster's name; a plan for another cluster (or naming none) is refused.
        None: any plan is accepted
    offload_bytes : bodies larger than this are parsed in the helper process
    compact_replies : prioritize lists only the hosts that score above 0, and filter lists
        no failed nodes when some node passes (`wire.filter_result(failures=False)`): the
        same decisions in fewer bytes
    filter_keeps : "allowed" (filter passes every node the plan's rules allow; prioritize
        ranks them) or "best" (only the allowed nodes prioritize would score highest pass,
        so kube-scheduler needs no prioritize call: `DecisionTable.filter(best=True)`)
    clock : wall-clock time [s since the epoch], for staleness (tests pass their own)
    """

    def __init__(self, table_source: DecisionTable | TableSource | None = None, host: str = "127.0.0.1",
                 port: int = 0, token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *, unannotated: str = "neutral",
                 path_prefix: str = "", request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 first_request_timeout_s: float = DEFAULT_FIRST_REQUEST_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, max_candidates: int = wire.DEFAULT_MAX_CANDIDATES,
                 cluster: str | None = None, offload_bytes: int = DEFAULT_OFFLOAD_BYTES,
                 compact_replies: bool = False, filter_keeps: str = "allowed",
                 clock: Callable[[], float] = time.time):
        if unannotated not in UNANNOTATED_MODES:
            raise ValueError(f"unannotated must be one of {', '.join(UNANNOTATED_MODES)} (got {unannotated!r})")
        if filter_keeps not in FILTER_KEEPS:
            raise ValueError(f"filter_keeps must be one of {', '.join(FILTER_KEEPS)} (got {filter_keeps!r})")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1 (got {max_body_bytes})")
        if max_candidates < 1 or max_connections < 1:
            raise ValueError(f"max_candidates and max_connections must be >= 1 (got {max_candidates}, {max_connections})")
        if token is not None and (not token or not token.isascii() or any(c.isspace() for c in token)):
            raise ValueError("token must be a non-empty ASCII string without whitespace")
        path_prefix = path_prefix.rstrip("/")
        if path_prefix and not path_prefix.startswith("/"):
            raise ValueError(f"path_prefix must start with '/', e.g. /edgeplace (got {path_prefix!r})")
        if not (request_timeout_s > 0 and idle_timeout_s > 0 and first_request_timeout_s > 0):
            raise ValueError("request_timeout_s, idle_timeout_s and first_request_timeout_s must be > 0")
        if cluster is not None and not cluster:
            raise ValueError("cluster must be a non-empty name or None")
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.max_body_bytes = int(max_body_bytes)
        self.unannotated = unannotated
        self.request_timeout_s = float(request_timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self.first_request_timeout_s = float(first_request_timeout_s)
        self.max_connections = int(max_connections)
        self.max_candidates = int(max_candidates)
        self.cluster = cluster
        self.offload_bytes = int(offload_bytes)
        self.compact_replies = bool(compact_replies)
        self.filter_keeps = filter_keeps
        # A filter that keeps the best with compact replies answers with the passing names only,
        # which `DecisionTable.best_in` can often find without reading every candidate.
        self._best_shortcut = filter_keeps == "best" and self.compact_replies
        self.clock = clock
        self._auth = ("Bearer " + token).encode() if token else None
        # CERT_OPTIONAL: the handshake verifies a presented certificate; the verbs require one.
        self._client_certs = ssl_context is not None and ssl_context.verify_mode == ssl.CERT_OPTIONAL
        self._table: DecisionTable | None = None
        self._source: TableSource | None = None
        if isinstance(table_source, DecisionTable):
            self._table = table_source
        elif table_source is not None:
            self._source = table_source
        self.metrics = ExtenderMetrics(self._plan_age_s, self._plan_stale, lambda: len(self._conns))
        self.helper = offload.Helper()
        self._routes: dict[str, tuple[str, str]] = {f"{path_prefix}/{v}": ("POST", v) for v in VERBS}
        self._routes.update({"/healthz": ("GET", "healthz"), "/readyz": ("GET", "readyz"), "/metrics": ("GET", "metrics")})
        self._conns: set[_Connection] = set()
        self._by_addr: dict[str, set[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._last_error_log = 0.0
        self._last_load_error: tuple[str, float] = ("", 0.0)
        self._plan_missing = False

    # -- table ---------------------------------------------------------------------
    @property
    def table(self) -> DecisionTable | None:
        return self._table

    def set_table(self, table: DecisionTable | None) -> None:
        """Swap the decision table (atomic: a request sees the old or the new one)."""
        self._table = table

    def _plan_age_s(self) -> float:
        table = self._table
        return -1.0 if table is None else table.age_s(self.clock())

    def _plan_stale(self) -> bool:
        table = self._table
        return table is None or table.stale(self.clock())

    def reload(self, build: Callable[[PlanData], DecisionTable] | None = None) -> bool:
        """Ask the table source once; True when a new table was installed.

        `build` turns the fetched document into a table (default: here, in this
        thread; the poller passes one that builds it in the helper process).
        """
        if self._source is None:
            return False
        try:
            plan = self._source.fetch_if_changed()
            if plan is None:
                self._plan_missing = False
                return False
            table = (build or _build_here)(plan)
        except PlanMissing as exc:
            if not self._plan_missing:  # logged when it goes missing, not on every poll
                self._plan_missing = True
                log.warning("extender: no plan: %s; %s", exc, "keeping the loaded plan until it expires"
                            if self._table is not None else "answering neutrally until one is published")
            return False
        except (PlanError, OSError) as exc:
            self._load_failed(str(exc))
            return False
        except Exception:
            log.exception("extender: unexpected error while loading the plan; keeping the previous one")
            self.metrics.plan_load("error")
            return False
        self._plan_missing = False
        return self._install(table, plan.source)

    def _load_failed(self, text: str) -> None:
        # A source that keeps failing (API server down) is logged when the error changes
        # or once a minute, not on every poll; the metric counts every failure.
        now = time.monotonic()
        if text != self._last_load_error[0] or now - self._last_load_error[1] > 60.0:
            self._last_load_error = (text, now)
            log.warning("extender: plan not loaded, keeping the previous one: %s", text)
        self.metrics.plan_load("error")

    def _install(self, table: DecisionTable, source: str) -> bool:
        """Serve `table` unless it is for another cluster or dated in the future (then refused, logged)."""
        refusal = None
        if self.cluster is not None and table.cluster != self.cluster:
            refusal = (f"it is for cluster {table.cluster!r} and this extender serves {self.cluster!r} (--cluster)"
                       if table.cluster else f"it names no cluster and this extender serves {self.cluster!r} (--cluster)")
        elif table.generated_at_ts > self.clock() + MAX_FUTURE_PLAN_S:
            ahead = table.generated_at_ts - self.clock()
            refusal = (f"it was generated at {table.generated_at.isoformat()}, {ahead:.0f} s in the future "
                       f"(more than {MAX_FUTURE_PLAN_S:g} s: check the clocks of the planner and this machine)")
        if refusal is not None:
            log.warning("extender: refused the plan from %s, keeping the previous one: %s", source, refusal)
            self.metrics.plan_load("refused")
            return False
        self.set_table(table)
        self.metrics.plan_load("ok")
        log.info("extender: loaded plan from %s for cluster %s, generated %s, valid until %s (%d nodes, %d workloads)",
                 source, table.cluster or "(unnamed)", table.generated_at.isoformat(), table.valid_until.isoformat(),
                 len(table.node_ids), len(table.workload_ids))
        return True

    def _build_in_helper(self, plan: PlanData) -> DecisionTable:
        try:
            return offload.attach(self.helper.submit(offload.build_table, plan.data, plan.source).result())
        except offload.HelperDied:
            log.warning("extender: the helper process died while building a plan; building it here")
            return _build_here(plan)

    # -- connections -----------------------------------------------------------------
    def _admit(self, conn: _Connection) -> bool:
        """Take a new connection, if need be in place of another (the fair share, module docstring)."""
        if len(self._conns) >= self.max_connections:
            mine = self._by_addr.get(conn.addr, ())
            share = self.max_connections // (len(self._by_addr) + (conn.addr not in self._by_addr))
            if len(mine) < share:
                hog = max(self._by_addr.values(), key=len)
                victim = _evictable(hog, silent_only=False)
            else:
                victim = _evictable(mine, silent_only=True)
            if victim is None:
                self.metrics.connection_closed("refused")
                return False
            self.metrics.connection_closed("evicted")
            self._forget(victim)
            victim.close()
        self._conns.add(conn)
        self._by_addr.setdefault(conn.addr, set()).add(conn)
        return True

    def _forget(self, conn: _Connection) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            peers = self._by_addr.get(conn.addr)
            if peers is not None:
                peers.discard(conn)
                if not peers:
                    del self._by_addr[conn.addr]

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "ExtenderServer":
        """Load the plan (if any), bind the socket and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self.reload()
        self._loop = asyncio.new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeplace-plan")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="edgeplace-extender", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_exception)
        try:
            self._server = loop.run_until_complete(loop.create_server(
                lambda: _Connection(self), self.host, self.port, ssl=self.ssl_context, backlog=1024,
                reuse_address=True, ssl_handshake_timeout=self.first_request_timeout_s if self.ssl_context else None))
        except BaseException as exc:  # e.g. address in use
            failure.append(exc)
            self._executor.shutdown(wait=False)
            loop.close()
            ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._timers.append(loop.call_later(1.0, self._sweep))
        if self._source is not None:
            self._timers.append(loop.call_later(self._source.poll_interval_s, self._poll))
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            # Connections accepted just now finish their set-up in a task: let them, then close all.
            loop.run_until_complete(asyncio.sleep(0.01))
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            # A plan load still running hands its result back to this loop: let it finish first.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self.helper.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving, close every connection and join the thread."""
        if self._thread is None:
            return
        loop = self._loop

        def _halt() -> None:
            for timer in self._timers:
                timer.cancel()
            loop.stop()

        loop.call_soon_threadsafe(_halt)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> "ExtenderServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def _loop_exception(self, loop, context) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            log.debug("extender: connection error: %s", context.get("message"))
        else:
            loop.default_exception_handler(context)

    def _sweep(self) -> None:
        """Close connections whose request is overdue (408), that stayed silent or idled too long."""
        now = time.monotonic()
        for conn in list(self._conns):
            if conn.busy or conn.transport is None:
                continue
            if conn.started is not None:
                if now - conn.started > self.request_timeout_s:
                    conn.fail(408, f"request not complete within {self.request_timeout_s:g} s")
            elif not conn.heard:
                if now - conn.opened > self.first_request_timeout_s:
                    self.metrics.connection_closed("first_request_timeout")
                    conn.close()
            elif now - conn.last_active > self.idle_timeout_s:
                self.metrics.connection_closed("idle_timeout")
                conn.close()
        self._timers[0] = self._loop.call_later(1.0, self._sweep)

    def _poll(self) -> None:
        future = self._loop.run_in_executor(self._executor, self.reload, self._build_in_helper)

        def again(_f) -> None:
            if self._loop.is_running():
                self._timers[1] = self._loop.call_later(self._source.poll_interval_s, self._poll)

        future.add_done_callback(again)

    # -- requests ------------------------------------------------------------------
    def _handle(self, conn: _Connection, head: _Head, body: bytes) -> bool:
        """Answer one request; False when the answer comes later (a body parsed in the helper)."""
        started = time.perf_counter()
        path = head.target.split("?", 1)[0]
        route = self._routes.get(path)
        close = not head.keep_alive
        head_only = head.method == "HEAD"
        label = route[1] if route else "other"
        content_type, extra = _JSON, b""
        if route is None:
            status, payload = 404, wire.error_body(f"unknown path {path[:100]!r}; the verbs are "
                                                   f"{', '.join(p for p, r in self._routes.items() if r[0] == 'POST')}")
        elif head.method != route[0] and not (route[0] == "GET" and head_only):
            status, payload = 405, wire.error_body(f"{path} takes {route[0]}, not {head.method[:20]}")
            extra = b"Allow: %s\r\n" % (b"POST" if route[0] == "POST" else b"GET, HEAD")
        elif label in _PROTECTED and self._client_certs and not conn.client_cert:
            status, payload = 401, wire.error_body("a client certificate signed by the extender's client CA is "
                                                   "required (mutual TLS: kube-scheduler's tlsConfig.certFile/keyFile)")
        elif label in _PROTECTED and self._auth is not None and not self._authorized(head):
            status, payload = 401, wire.error_body("missing or wrong bearer token (Authorization: Bearer <token>)")
            extra = b'WWW-Authenticate: Bearer realm="edgeplace-extender"\r\n'
        elif label in VERBS:
            if len(body) > self.offload_bytes:
                return self._offload(conn, label, body, close, started)
            try:
                args = wire.parse_request(label, body, self.max_candidates)
            except wire.WireError as exc:
                status, payload = 400, wire.error_body(str(exc))
            else:
                status, payload = self._verb(label, args)
        elif label == "metrics":
            status, payload, content_type = 200, self.metrics.render(), CONTENT_TYPE_LATEST.encode()
        elif label == "healthz":
            status, payload = 200, b'{"status":"ok"}'
        else:
            status, payload = self._readyz()
        conn.respond(status, payload, content_type, close=close, extra=extra, head_only=head_only)
        self.metrics.request(label, status, time.perf_counter() - started)
        return True

    def _offload(self, conn: _Connection, verb: str, body: bytes, close: bool, started: float) -> bool:
        """Parse a large body in the helper process; answer when it is back (on this loop)."""
        try:
            future = self.helper.submit(offload.parse_request, verb, body, self.max_candidates)
        except offload.HelperBusy as exc:
            conn.respond(429, wire.error_body(f"{exc}; retry later, or send NodeNames (nodeCacheCapable)"),
                         close=close)
            self.metrics.request(verb, 429, time.perf_counter() - started)
            return True
        self.metrics.offloaded()

        def done(f: asyncio.Future) -> None:
            if f.cancelled():  # the server is stopping
                return
            try:
                try:
                    args = f.result()
                except offload.HelperDied:
                    log.warning("extender: the helper process died while parsing a request; parsing it here")
                    args = wire.parse_request(verb, body, self.max_candidates)
            except wire.WireError as exc:
                status, payload = 400, wire.error_body(str(exc))
            else:
                status, payload = self._verb(verb, args)
            conn.respond(status, payload, close=close)
            self.metrics.request(verb, status, time.perf_counter() - started)
            conn.resume()

        asyncio.wrap_future(future, loop=self._loop).add_done_callback(done)
        return False

    def _authorized(self, head: _Head) -> bool:
        given = head.headers.get("authorization", "").encode("latin-1")
        return hmac.compare_digest(given, self._auth)

    def _readyz(self) -> tuple[int, bytes]:
        table = self._table
        if table is None:
            return 503, b'{"status":"no plan loaded"}'
        if table.stale(self.clock()):
            return 503, wire.error_body(f"plan is stale (valid until {table.valid_until.isoformat()})")
        return 200, (b'{"status":"ready","generated_at":"%s","valid_until":"%s"}'
                     % (table.generated_at.isoformat().encode(), table.valid_until.isoformat().encode()))

    def _verb(self, verb: str, args: wire.ExtenderArgs | wire.PreemptionArgs) -> tuple[int, bytes]:
        """The 200 answer of a parsed verb call: the plan's decision, or neutral (fail open)."""
        reason, table, target = "internal_error", None, None
        try:
            reason, table, target = self._target(args.pod)
            if target is not None:
                if verb == "filter":
                    payload, reason = self._filter(table, target, args)
                elif verb == "prioritize":
                    decision = table.prioritize(target, args.node_names, args.pod.cpu_cores)
                    payload = wire.host_priority_list(args.node_names, decision.scores, table.host_score,
                                                      decision.columns, omit_zero=self.compact_replies)
                    self.metrics.avoided(decision.avoided_g_per_h)
                    reason = decision.reason
                else:
                    keep = table.preempt_keep(target, list(args.victims))
                    payload = wire.preemption_result(args.victims, keep)
                self.metrics.decision(verb, reason)
                return 200, payload
        except Exception:
            now = time.monotonic()
            if now - self._last_error_log > 10.0:
                self._last_error_log = now
                log.exception("extender: %s failed; answering neutrally (fail open)", verb)
            reason = "internal_error"
        self.metrics.decision(verb, reason)
        if verb == "filter":
            return 200, wire.filter_result(args)
        if verb == "prioritize":
            return 200, wire.host_priority_list(args.node_names, omit_zero=self.compact_replies)
        return 200, wire.preemption_result(args.victims)

    def _filter(self, table: DecisionTable, target: Target, args: wire.ExtenderArgs) -> tuple[bytes, str]:
        """The filter's answer and its decision reason. A filter that keeps the best, with
        compact replies, first looks for the plan's best nodes among the candidates as sent
        (`DecisionTable.best_in`); otherwise, or when none is there, it decides per candidate."""
        if self._best_shortcut and args.names_json is not None:
            columns = table.best_in(target, args.names_json)
            if columns is not None:
                return wire.passing_result(columns, table.encoded), target.reason
        decision = table.filter(target, args.node_names, best=self.filter_keeps == "best")
        return (wire.filter_result(args, decision.codes, decision.messages, table.encoded, decision.columns,
                                   failures=not self.compact_replies), decision.reason)

    def _target(self, pod: wire.PodRef):
        """(reason, table, Target or None for a neutral answer), in the order of docs/EXTENDER.md."""
        if pod.workload_source == "daemonset":
            return "daemonset", None, None
        if pod.system:
            return "system", None, None
        if pod.workload is None and pod.tenant is None and self.unannotated == "neutral":
            return "unannotated", None, None
        table = self._table
        if table is None:
            return "no_plan", None, None
        if table.stale(self.clock()):
            return "stale_plan", table, None
        target = table.target(pod.workload, pod.tenant, pod.namespace)
        return ("plan", table, target) if target is not None else ("unknown_workload", table, None)


def _evictable(conns, silent_only: bool) -> "_Connection | None":
    """The connection to close for a newcomer: the oldest that never sent a byte, else (unless
    `silent_only`) the longest idle keep-alive one; never one with a request under way."""
    silent = [c for c in conns if not c.heard and not c.busy and not c.closing]
    if silent:
        return min(silent, key=lambda c: c.opened)
    if silent_only:
        return None
    idle = [c for c in conns if c.started is None and not c.busy and not c.closing]
    return min(idle, key=lambda c: c.last_active) if idle else None


def _build_here(plan: PlanData) -> DecisionTable:
    return DecisionTable.from_json(plan.data, source=plan.source)


# ---------------------------------------------------------------------------
# Configuration helpers and a small command


def make_ssl_context(cert_file: str | os.PathLike, key_file: str | os.PathLike,
                     client_ca_file: str | os.PathLike | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+); with `client_ca_file`, the verbs and /metrics
    need a client certificate signed by that CA (mutual TLS: kube-scheduler's
    extender `tlsConfig.certFile`/`keyFile`).

    The handshake itself only *verifies* a presented certificate (CERT_OPTIONAL)
    and the server refuses the protected routes without one (401), so that
    kubelet's HTTPS probes, which present none, still reach /healthz.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cafile=str(client_ca_file))
    return context


def load_token(token_file: str | os.PathLike | None = None, env_var: str = "EDGEPLACE_EXTENDER_TOKEN") -> str | None:
    """The bearer token from `token_file` (whitespace stripped) or else the environment; None if neither."""
    if token_file is not None:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"{token_file}: the token file is empty")
        return token
    return os.environ.get(env_var) or None


def freeze_heap() -> None:
    """Collect once, then exempt every object alive now from the cyclic garbage collector.

    For a process that serves the extender: imported modules and the loaded
    table are never garbage, but a full collection re-scans all of them, and
    with numpy/pandas loaded that pass takes tens of milliseconds, landing in
    the middle of some request (it was the whole p99 tail in
    bench/bench_extender.py). Process-wide (`gc.freeze`), so it is the
    caller's choice: `main()` makes it after start-up; a host process that
    embeds `ExtenderServer` may too.
    """
    gc.collect()
    gc.freeze()


def add_arguments(parser) -> None:
    """The extender's command-line options (shared by this module's `main` and `edgeplace serve`)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)")
    parser.add_argument("--port", type=int, default=8888, help="port (default 8888)")
    parser.add_argument("--poll-interval", type=_positive, default=2.0, metavar="S",
                        help="seconds between checks of the plan source (default 2)")
    parser.add_argument("--token-file", metavar="FILE",
                        help="require this bearer token on the verbs and /metrics (default: $EDGEPLACE_EXTENDER_TOKEN, else none)")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    parser.add_argument("--client-ca", metavar="FILE",
                        help="require client certificates signed by this CA on the verbs and /metrics (mutual TLS)")
    parser.add_argument("--cluster", metavar="NAME",
                        help="the cluster's name: refuse plans for another cluster (default: accept any)")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                        help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES}; larger gets 413)")
    parser.add_argument("--max-candidates", type=_positive_int, default=wire.DEFAULT_MAX_CANDIDATES, metavar="N",
                        help=f"most candidate nodes per request (default {wire.DEFAULT_MAX_CANDIDATES}; more gets 400)")
    parser.add_argument("--max-connections", type=_positive_int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                        help=f"connection cap, shared fairly by client address (default {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--unannotated", choices=UNANNOTATED_MODES, default="neutral",
                        help="pods with no workload and no tenant annotation: neutral answers (default), or their "
                             "namespace's tenant rules")
    parser.add_argument("--path-prefix", default="", help="prefix of the verb paths, e.g. /edgeplace")
    parser.add_argument("--compact-replies", action="store_true",
                        help="prioritize lists only hosts scoring above 0; filter lists no failed nodes when some "
                             "node passes")
    parser.add_argument("--filter-keeps", choices=FILTER_KEEPS, default="allowed",
                        help="filter passes every node the plan allows (default; prioritize ranks them), or only "
                             "the best of them (then kube-scheduler needs no prioritizeVerb)")


def check_arguments(args) -> str | None:
    """A usage problem with the options of `add_arguments`, or None."""
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.client_ca and not args.tls_cert:
        return "--client-ca needs --tls-cert and --tls-key"
    if not 0 < args.port < 65536:
        return f"--port must be 1..65535 (got {args.port})"
    prefix = args.path_prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        return f"--path-prefix must start with '/', e.g. /edgeplace (got {args.path_prefix!r})"
    if args.cluster is not None and not args.cluster:
        return "--cluster must not be empty"
    return None


def server_from_arguments(args, source: TableSource | None) -> ExtenderServer:
    """An `ExtenderServer` for the options of `add_arguments` (checked with `check_arguments`).

    Raises OSError, ValueError or ssl.SSLError for unreadable TLS or token files.
    """
    context = make_ssl_context(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    return ExtenderServer(source, args.host, args.port, token=load_token(args.token_file), ssl_context=context,
                          max_body_bytes=args.max_body_bytes, unannotated=args.unannotated,
                          path_prefix=args.path_prefix, max_connections=args.max_connections,
                          max_candidates=args.max_candidates, cluster=args.cluster,
                          compact_replies=args.compact_replies, filter_keeps=args.filter_keeps)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def main(argv: list[str] | None = None) -> int:
    """`python -m edgeplace.k8s.extender.server --plan plan.json [--port 8888] ...`: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m edgeplace.k8s.extender.server", description=main.__doc__)
    parser.add_argument("--plan", help="plan document to serve and reload when it changes (JSON or .gz)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    problem = check_arguments(args)
    if problem:
        parser.error(problem)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = server_from_arguments(args, PlanFile(args.plan, args.poll_interval) if args.plan else None)
        server.start()
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"edgeplace extender: {exc}", file=sys.stderr)
        return 2
    server.helper.warm()
    freeze_heap()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    log.info("extender: serving on %s", server.url)
    done.wait()
    server.stop()
    log.info("extender: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
