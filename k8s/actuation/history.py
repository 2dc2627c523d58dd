"""The moves made recently, kept in the cluster so that hysteresis survives a restart.

Stored as JSON under the key ``moves.json`` of the ConfigMap
``edgeplace-rebalance-history`` in the planner's namespace (default
``edgeplace-system``), written with its resourceVersion (a concurrent
writer makes the write fail, and the next cycle reads afresh). Entries older
than the longest hysteresis window are dropped on every write.

A move is recorded when its eviction succeeds: which workload, from which
node, to which planned node, when, and which pod left.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Protocol

from edgeplace.k8s.actuation.objects import parse_rfc3339, rfc3339

log = logging.getLogger("edgeplace.k8s.actuation")

DEFAULT_NAME = "edgeplace-rebalance-history"
KEY = "moves.json"


@dataclass(frozen=True)
class MoveRecord:
    workload: str
    source: str
    target: str
    at: str  # RFC 3339
    pod: str  # namespace/name of the pod that was evicted

    @property
    def time(self) -> datetime:
        t = parse_rfc3339(self.at)
        assert t is not None
        return t


class MoveHistory:
    """Recent moves, with the queries hysteresis needs."""

    def __init__(self, records: list[MoveRecord] | None = None):
        self.records = list(records or [])

    def last_move(self, workload: str) -> MoveRecord | None:
        moves = [r for r in self.records if r.workload == workload]
        return max(moves, key=lambda r: r.time) if moves else None

    def left(self, workload: str, node: str, since: datetime) -> MoveRecord | None:
        """The latest move of `workload` away from `node` at or after `since`."""
        moves = [r for r in self.records if r.workload == workload and r.source == node and r.time >= since]
        return max(moves, key=lambda r: r.time) if moves else None

    def add(self, record: MoveRecord) -> None:
        self.records.append(record)

    def prune(self, now: datetime, keep: timedelta) -> None:
        self.records = [r for r in self.records if now - r.time <= keep]

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in sorted(self.records, key=lambda r: r.at)], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> "MoveHistory":
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls([MoveRecord(**{k: str(e[k]) for k in ("workload", "source", "target", "at", "pod")})
                        for e in raw if isinstance(e, dict) and parse_rfc3339(str(e.get("at")))])
        except (ValueError, KeyError, TypeError):
            log.warning("actuation: the rebalance history is unreadable; starting an empty one")
            return cls()


class HistoryStore(Protocol):
    """Where the history lives between cycles (`ConfigMapHistoryStore`, or `MemoryHistoryStore` in tests)."""

    def load(self) -> MoveHistory: ...

    def save(self, history: MoveHistory) -> None: ...


class MemoryHistoryStore:
    def __init__(self) -> None:
        self._text = ""

    def load(self) -> MoveHistory:
        return MoveHistory.from_json(self._text)

    def save(self, history: MoveHistory) -> None:
        self._text = history.to_json()


class ConfigMapHistoryStore:
    """The history in a ConfigMap; `load` remembers the resourceVersion that `save` writes against."""

    def __init__(self, api_client, namespace: str, name: str = DEFAULT_NAME):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace, self.name = namespace, name
        self._version: str | None = None

    def load(self) -> MoveHistory:
        from kubernetes.client.exceptions import ApiException

        try:
            cm = json.loads(self.core.read_namespaced_config_map(self.name, self.namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                self._version = None
                return MoveHistory()
            raise
        self._version = (cm.get("metadata") or {}).get("resourceVersion")
        return MoveHistory.from_json((cm.get("data") or {}).get(KEY))

    def save(self, history: MoveHistory) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "edgeplace"}},
                "data": {KEY: history.to_json()}}
        try:
            if self._version is None:
                out = self.core.create_namespaced_config_map(self.namespace, body, _preload_content=False)
            else:
                body["metadata"]["resourceVersion"] = self._version
                out = self.core.replace_namespaced_config_map(self.name, self.namespace, body, _preload_content=False)
            self._version = (json.loads(out.data).get("metadata") or {}).get("resourceVersion")
        except ApiException as exc:
            # 409: another writer; the next cycle re-reads. The moves are made; only their memory is late.
            log.warning("actuation: cannot write %s/%s: HTTP %s %s", self.namespace, self.name, exc.status, exc.reason)
            self._version = None if exc.status == 404 else self._version


def now_record(workload: str, source: str, target: str, pod: str, now: datetime) -> MoveRecord:
    return MoveRecord(workload, source, target, rfc3339(now), pod)
