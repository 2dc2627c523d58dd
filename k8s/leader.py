"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two planners don't fight.

Every planner replica runs a `LeaderElector` on the same Lease (default
``edgeplace-system/edgeplace-planner``); only the holder plans, publishes,
releases gates and taints nodes. Extender replicas need no election: they
only read the plan.

The protocol is client-go's (``k8s.io/client-go/tools/leaderelection``):

- *acquire*: read the Lease; if nobody holds it, or the holder has not
  renewed it for ``leaseDurationSeconds`` as observed **on our own
  monotonic clock** (never by comparing the holder's ``renewTime`` with our
  wall clock, which may be skewed), replace it with us as holder, carrying
  the read's ``resourceVersion``; a 409 means another candidate won the race.
- *renew*: the holder rewrites ``renewTime`` every `retry_period_s`; if it
  cannot renew within `renew_deadline_s` it stops acting as leader
  (`renew_deadline_s` < `lease_duration_s`, so it steps down before anyone
  else may take over).
- *release*: on a clean stop the holder clears ``holderIdentity`` (and sets
  a 1 s duration) so another replica takes over at once.

Invariant: at most one replica believes it leads at any time, provided the
replicas' clocks run at about the same rate (not the same time).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("edgeplace.k8s.leader")

DEFAULT_LEASE_NAME = "edgeplace-planner"
DEFAULT_NAMESPACE = "edgeplace-system"
#: client-go's defaults (and kube-scheduler's / kube-controller-manager's): 15 s lease, 10 s renew deadline, 2 s retry.
DEFAULT_LEASE_DURATION_S = 15.0
DEFAULT_RENEW_DEADLINE_S = 10.0
DEFAULT_RETRY_PERIOD_S = 2.0


def default_identity() -> str:
    """hostname (the pod name in a Deployment) plus a random suffix, as client-go does."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(t: datetime) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime is written."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Observed:
    holder: str
    renew_time: str
    duration_s: float
    at: float  # our monotonic time when this record was first seen

    @property
    def held_until(self) -> float:
        """Our monotonic time until which the holder may still act (its lease, counted from when we saw it)."""
        return self.at + self.duration_s if self.holder else self.at


def observe_lease(seen: _Observed | None, lease: dict | None, now: float) -> _Observed | None:
    """The Lease's holder record, first seen at `now` (our monotonic clock) unless it equals `seen`.

    client-go's rule: a holder has expired once its record has not changed for
    ``leaseDurationSeconds`` *as we observed it*; its ``renewTime`` is never
    compared with our wall clock.
    """
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    record = (spec.get("holderIdentity") or "", str(spec.get("renewTime") or ""),
              float(spec.get("leaseDurationSeconds") or 0))
    if seen is not None and (seen.holder, seen.renew_time, seen.duration_s) == record:
        return seen
    return _Observed(*record, at=now)


class LeaderElector:
    """Lease-based leader election (see the module docstring).

    `try_acquire_or_renew()` does one round and says whether we lead;
    `run(stop)` loops until `stop` is set, calling `on_started_leading` /
    `on_stopped_leading` on changes, and releases the Lease at the end.
    `is_leader` is safe to read from other threads.
    """

    def __init__(self, api_client, namespace: str = DEFAULT_NAMESPACE, name: str = DEFAULT_LEASE_NAME,
                 identity: str | None = None, lease_duration_s: float = DEFAULT_LEASE_DURATION_S,
                 renew_deadline_s: float = DEFAULT_RENEW_DEADLINE_S, retry_period_s: float = DEFAULT_RETRY_PERIOD_S,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] | None = None):
        if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError("need 0 < retry_period_s < renew_deadline_s < lease_duration_s "
                             f"(got {retry_period_s}, {renew_deadline_s}, {lease_duration_s})")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self._monotonic = monotonic
        self._wall = wall or (lambda: datetime.now(timezone.utc))
        self._observed: _Observed | None = None
        self._last_renew: float | None = None  # monotonic time of our last successful acquire/renew
        self._leader = threading.Event()

    @property
    def is_leader(self) -> bool:
        """True while we hold the Lease and renewed it within `renew_deadline_s`."""
        if not self._leader.is_set():
            return False
        if self._last_renew is None or self._monotonic() - self._last_renew > self.renew_deadline_s:
            self._leader.clear()
            return False
        return True

    @property
    def holder(self) -> str | None:
        """The holder we last observed (None if nobody)."""
        return self._observed.holder if self._observed and self._observed.holder else None

    def _read(self) -> dict | None:
        try:
            return json.loads(self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _spec(self, acquire_time: str, transitions: int) -> dict:
        now = _micro_time(self._wall())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, int(round(self.lease_duration_s))),
                "acquireTime": acquire_time or now, "renewTime": now, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One round: take the Lease if it is free or expired, renew it if ours; True if we lead now."""
        now = self._monotonic()
        try:
            lease = self._read()
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec("", 0)}
                try:
                    self.api.create_namespaced_lease(self.namespace, body, _preload_content=False)
                except ApiException as exc:
                    if exc.status == 409:  # another candidate created it first
                        return self._lost()
                    raise
                return self._won(now, body["spec"])
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            self._observed = seen = observe_lease(self._observed, lease, now)
            ours = holder == self.identity
            expired = not holder or now >= seen.held_until
            if not ours and not expired:
                return self._lost()
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
            new_spec = self._spec(spec.get("acquireTime") if ours else "", transitions)
            body = {**lease, "spec": {**spec, **new_spec}}  # metadata.resourceVersion from the read
            try:
                self.api.replace_namespaced_lease(self.name, self.namespace, body, _preload_content=False)
            except ApiException as exc:
                if exc.status == 409:  # someone else wrote in between
                    return self._lost()
                raise
            if not ours:
                log.info("leader: %s acquired lease %s/%s (previous holder %r)", self.identity, self.namespace,
                         self.name, holder or None)
            return self._won(now, new_spec)
        except ApiException as exc:
            log.warning("leader: lease %s/%s: HTTP %s %s", self.namespace, self.name, exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - connection errors: keep trying, maybe step down
            log.warning("leader: lease %s/%s: %s: %s", self.namespace, self.name, type(exc).__name__, exc)
        return self.is_leader

    def _won(self, now: float, spec: dict) -> bool:
        self._observed = _Observed(self.identity, spec["renewTime"], float(spec["leaseDurationSeconds"]), now)
        self._last_renew = now
        self._leader.set()
        return True

    def _lost(self) -> bool:
        self._leader.clear()
        self._last_renew = None
        return False

    def release(self) -> None:
        """Give the Lease up if we hold it, so another replica can take over at once."""
        was = self._leader.is_set()
        self._leader.clear()
        self._last_renew = None
        if not was:
            return
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1,
                    "renewTime": _micro_time(self._wall())}
            self.api.replace_namespaced_lease(self.name, self.namespace, {**lease, "spec": spec}, _preload_content=False)
            log.info("leader: %s released lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:  # noqa: BLE001 - best effort: the lease expires anyway
            log.warning("leader: could not release lease %s/%s: %s", self.namespace, self.name, exc)

    def run(self, stop: threading.Event, on_started_leading: Callable[[], None] | None = None,
            on_stopped_leading: Callable[[], None] | None = None) -> None:
        """Acquire and renew until `stop` is set; then release."""
        leading = False
        try:
            while not stop.is_set():
                now_leading = self.try_acquire_or_renew()
                if now_leading != leading:
                    leading = now_leading
                    callback = on_started_leading if leading else on_stopped_leading
                    if callback is not None:
                        callback()
                stop.wait(self.retry_period_s)
        finally:
            self.release()
            if leading and on_stopped_leading is not None:
                on_stopped_leading()
