"""A small HTTP client for the signal services: retries, back-off, rate limits, timeouts.

Outcomes of a request, mapped once:

=================================  ==========================================
what happened                      what the caller gets
=================================  ==========================================
2xx                                the `Response`
204 No Content (`get_json`)        `ServiceNoData` (an `InputError`): the
                                   service has nothing for this request
401 Unauthorized                   `ServiceAuthError` (an `InputError`): the
                                   message names the environment variables
403 Forbidden                      `ServicePlanError` (an `InputError`): the
                                   credentials are good but the account's
                                   plan does not cover this zone or endpoint;
                                   the service's own message is quoted
429 Too Many Requests              retried after `Retry-After` (seconds or an
                                   HTTP date; capped), else after back-off
500, 502, 503, 504, connection     retried with exponential back-off and
refused or reset, timeout          jitter
other 4xx                          `ServiceRequestError` (an `InputError`)
retries or time budget used up     `ServiceUnavailable`: callers fall back
                                   to the cache (edgeplace.topology.signals.services)
body not JSON (`get_json`)         `InputError` naming the service and URL
=================================  ==========================================

Back-off: attempt k waits d/2 + U(0, d/2) with d = min(max_delay,
base x 2^(k-1)) ("equal jitter": never zero, never in lock-step with other
clients). Both the number of attempts and the total time (requests plus
waits) are bounded by `RetryPolicy`; a wait that would pass the budget is
not started. Every request has a timeout (connect and each read).

Uses only the standard library (urllib). Requests to loopback addresses
bypass any configured proxy.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from typing import Any, Callable, Mapping, Sequence

from edgeplace.topology.errors import InputError, Problem

USER_AGENT = "edgeplace-signals/0.1"
#: Statuses worth another try: the server is overloaded or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Largest body read [bytes]; a signal response is far smaller.
MAX_BODY_BYTES = 64 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one logical request: attempts, per-try timeout, back-off, total time [s]."""

    attempts: int = 4
    timeout_s: float = 10.0
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    budget_s: float = 30.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or not self.timeout_s > 0 or self.base_delay_s < 0 or self.budget_s <= 0:
            raise ValueError("RetryPolicy needs attempts >= 1, timeout_s > 0, base_delay_s >= 0, budget_s > 0")


class ServiceUnavailable(Exception):
    """The service did not answer usefully within the retry policy (outage, overload, timeouts)."""

    def __init__(self, service: str, url: str, reason: str):
        self.service, self.url, self.reason = service, url, reason
        super().__init__(f"{service} ({url}): {reason}")


class ServiceAuthError(InputError):
    """401: missing or wrong credentials."""


class ServicePlanError(InputError):
    """403: the credentials were accepted, but the account's plan does not include what was asked."""


class ServiceNoData(InputError):
    """204 No Content: the service answered, with nothing for this zone and period."""


class ServiceRequestError(InputError):
    """A 4xx other than auth and rate limits: the request itself is wrong (unknown zone, bad time range)."""


#: How a refused request reads, by status (the service's own reason follows).
REFUSALS = {
    400: "the service rejected the request as invalid",
    404: "the service has no such resource (zone, location or endpoint)",
    422: "the service could not process the request's parameters",
    501: "the service does not implement this for its configured data source",
}


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Wait before retry number `attempt` (1 = the first retry) [s], equal jitter."""
    d = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    return d / 2 + rng.uniform(0, d / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes
    url: str


def _excerpt(body: bytes, limit: int = 160) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_message(body: bytes) -> str:
    """The human part of an error body: JSON message/detail/title/error fields, else the text."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _excerpt(body)
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):  # {"error": {"code": ..., "message": ...}}
        doc = doc["error"]
    if isinstance(doc, dict):
        parts = [str(doc[k]) for k in ("message", "error", "title", "detail") if isinstance(doc.get(k), (str, int))]
        if parts:
            return "; ".join(dict.fromkeys(parts))
    return _excerpt(body)


def parse_json(response: Response, service: str) -> Any:
    """The body as JSON, or one `InputError` saying the service sent something else."""
    try:
        return json.loads(response.body.decode("utf-8"))
    except UnicodeDecodeError:
        problem = Problem("body", "is not UTF-8 text; expected JSON")
    except json.JSONDecodeError as exc:
        problem = Problem("body", f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
                                  f"{_excerpt(response.body)!r}; the service may have changed its format")
    except RecursionError:
        problem = Problem("body", "is JSON nested too deeply")
    raise InputError(f"{service} response from {response.url}", [problem])


class HttpClient:
    """GET with the retry policy of the module docstring. `sleep`, `clock` and `rng` are injectable for tests."""

    def __init__(self, service: str, policy: RetryPolicy = RetryPolicy(), *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, auth_hint: str = "", plan_hint: str = ""):
        self.service = service
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.auth_hint = auth_hint
        self.plan_hint = plan_hint
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._default = urllib.request.build_opener()

    def get(self, url: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
            headers: Mapping[str, str] | None = None, auth_statuses: tuple[int, ...] = (401,)) -> Response:
        """One logical GET: retried per the policy; see the module docstring for the outcomes."""
        return self.request("GET", url, params, headers, auth_statuses=auth_statuses)

    def request(self, method: str, url: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
                headers: Mapping[str, str] | None = None, json_body: Any = None,
                auth_statuses: tuple[int, ...] = (401,)) -> Response:
        """One logical request (GET, or POST with a JSON body), retried per the policy.
        `auth_statuses`: what means wrong credentials here (a login endpoint also says so with 403)."""
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params, doseq=True)}"
        data = None
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        host = urllib.parse.urlsplit(url).hostname or ""
        opener = self._direct if host in LOOPBACK_HOSTS else self._default
        policy = self.policy
        start = self.clock()
        reason = "no attempt made"
        attempt = 0
        for attempt in range(1, policy.attempts + 1):
            remaining = policy.budget_s - (self.clock() - start)
            if remaining <= 0:
                reason += f"; the time budget of {policy.budget_s:g} s is used up"
                break
            retry_after = None
            try:
                with opener.open(request, timeout=min(policy.timeout_s, remaining)) as resp:
                    body = resp.read(MAX_BODY_BYTES + 1)
                    if len(body) > MAX_BODY_BYTES:
                        raise InputError(f"{self.service} response from {url}",
                                         [Problem("body", f"is larger than {MAX_BODY_BYTES // 2**20} MiB; ask for a shorter period")])
                    return Response(resp.status, resp.headers, body, url)
            except urllib.error.HTTPError as exc:
                body = _read_error_body(exc)
                if exc.code in auth_statuses:
                    raise ServiceAuthError(f"{self.service} ({url})", [Problem(
                        f"HTTP {exc.code}", f"the service refused the credentials ({error_message(body)}); "
                                    f"{self.auth_hint or 'check the credentials'}")]) from None
                if exc.code == 403:
                    raise ServicePlanError(f"{self.service} ({url})", [Problem(
                        "HTTP 403", f"the credentials were accepted, but the account's plan does not include this "
                                    f"request ({error_message(body)}); "
                                    f"{self.plan_hint or 'ask for a zone or endpoint your plan covers'}")]) from None
                if exc.code not in RETRY_STATUSES:
                    what = REFUSALS.get(exc.code, "the service rejected the request")
                    raise ServiceRequestError(f"{self.service} ({url})", [Problem(
                        f"HTTP {exc.code}", f"{what}: {error_message(body)}")]) from None
                reason = f"HTTP {exc.code} {error_message(body)}".strip()
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                    http.client.HTTPException, OSError) as exc:
                reason = _network_reason(exc, policy.timeout_s)
            if attempt == policy.attempts:
                break
            if retry_after is not None:
                if retry_after > policy.max_retry_after_s:
                    reason += f"; Retry-After {retry_after:g} s is longer than the {policy.max_retry_after_s:g} s we wait"
                    break
                delay = retry_after
            else:
                delay = backoff_delay(attempt, policy, self.rng)
            if self.clock() - start + delay > policy.budget_s:
                reason += f"; waiting {delay:.1f} s more would pass the {policy.budget_s:g} s budget"
                break
            self.sleep(delay)
        raise ServiceUnavailable(self.service, url, f"{reason} (after {attempt} attempt(s))")

    def get_json(self, url: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None, auth_statuses: tuple[int, ...] = (401,)) -> Any:
        return self._json(self.get(url, params, headers, auth_statuses=auth_statuses))

    def post_json(self, url: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        return self._json(self.request("POST", url, None, headers, json_body=body))

    def _json(self, response: Response) -> Any:
        if response.status == 204:
            raise ServiceNoData(f"{self.service} ({response.url})", [Problem(
                "HTTP 204", "the service has no data for this request (No Content); ask for a period and "
                            "location its data source covers")])
        return parse_json(response, self.service)


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(64 * 1024) or b""
    except (OSError, http.client.HTTPException, ValueError):
        return b""


def _network_reason(exc: BaseException, timeout_s: float) -> str:
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, (socket.timeout, TimeoutError)) or "timed out" in str(inner):
        return f"no answer within the {timeout_s:g} s timeout"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused (is the service running?)"
    return f"{type(inner).__name__}: {inner}"


__all__ = [
    "HttpClient",
    "Response",
    "RetryPolicy",
    "ServiceAuthError",
    "ServiceNoData",
    "ServicePlanError",
    "ServiceRequestError",
    "ServiceUnavailable",
    "backoff_delay",
    "error_message",
    "parse_json",
    "parse_retry_after",
]
