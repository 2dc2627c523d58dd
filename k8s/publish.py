"""Where the plan lives between the planner and the extender: a ConfigMap (or a file).

The planner writes the extender's plan document (`edgeplace.k8s.extender.table`) into
one key of one ConfigMap, by default ``edgeplace-system/edgeplace-plan``, key
``plan.json``; every extender replica reads it back (`ConfigMapPlanSource`,
or the ConfigMap mounted as a volume and read by `edgeplace.k8s.extender.table.PlanFile`).

Guarantees:

- **Never half a plan.** A document is validated with the extender's own
  loader (`DecisionTable.from_document`) before it is written, and it is
  written whole in one update of the object (etcd stores an object
  atomically). A document the extender could not load is never published.
- **No lost or reordered updates.** Updates are optimistic: read the object,
  then replace it with that read's ``metadata.resourceVersion``. A 409
  Conflict means someone wrote in between: re-read and try again, at most
  `max_attempts` times, then raise `PublishConflict`. The re-read also stops
  an older plan from overwriting a newer one: if the stored plan was
  generated after ours, ours is dropped (``superseded``).
- **The previous good plan survives a failure.** A failed solve publishes
  nothing, a failed write leaves the object as it was; the extender keeps
  answering from the plan it has until its ``valid_until`` passes, and then
  fails open.

Size: a ConfigMap holds at most 1 MiB. A document over `MAX_INLINE_BYTES`
is stored gzip-compressed in ``binaryData`` under the same key (the
extender's loaders recognise gzip by its magic bytes); one that is still too
large raises `PlanTooLarge`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgeplace.k8s.extender.table import DecisionTable, PlanData, PlanError, PlanMissing, write_plan_document
from edgeplace.topology.errors import Problem

log = logging.getLogger("edgeplace.k8s.publish")

DEFAULT_NAMESPACE = "edgeplace-system"
DEFAULT_NAME = "edgeplace-plan"
DEFAULT_KEY = "plan.json"
#: Plain JSON up to this size goes in ``data`` [bytes]; above it, gzip in ``binaryData``.
#: A ConfigMap is capped at 1 MiB (k8s.io/api core/v1 validation, MaxSecretSize
#: for ConfigMaps); the margin leaves room for metadata and base64's 4/3.
MAX_INLINE_BYTES = 700 * 1024
#: Largest stored value [bytes] after compression and base64.
MAX_STORED_BYTES = 1000 * 1024
ANN_GENERATED_AT = "edgeplace.io/plan-generated-at"
ANN_SHA256 = "edgeplace.io/plan-sha256"
ANN_PUBLISHER = "edgeplace.io/published-by"


class PublishError(RuntimeError):
    """The plan could not be published; the stored plan is unchanged."""


class PublishConflict(PublishError):
    """Every attempt met a concurrent update (HTTP 409)."""


class PlanTooLarge(PublishError):
    """The document does not fit in a ConfigMap even compressed."""


@dataclass(frozen=True)
class PublishResult:
    """outcome: created | updated | unchanged (same bytes already stored) | superseded (a newer plan is stored)."""

    outcome: str
    resource_version: str
    attempts: int
    stored_bytes: int
    compressed: bool


def encode_plan(doc: dict[str, Any]) -> tuple[bytes, bool]:
    """The bytes to store and whether they are gzip-compressed."""
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) <= MAX_INLINE_BYTES:
        return raw, False
    packed = gzip.compress(raw, mtime=0)
    if len(packed) * 4 // 3 + 4 > MAX_STORED_BYTES:
        raise PlanTooLarge(f"plan document is {len(raw)} bytes ({len(packed)} gzip-compressed); a ConfigMap holds "
                           f"at most {MAX_STORED_BYTES} bytes: publish to a file (--plan-file) instead")
    return packed, True


def _generated_at(doc: dict[str, Any]) -> datetime:
    value = doc.get("generated_at")
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def _api_error(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


class ConfigMapPlanPublisher:
    """Writes plan documents into ``namespace/name`` key `key` (see the module docstring).

    Parameters
    ----------
    api_client : a `kubernetes.client.ApiClient`
    namespace, name, key : where the plan goes
    max_attempts : reads-then-writes before `PublishConflict`
    backoff_s : base of the jittered exponential pause between attempts [s]
    identity : recorded in the ``edgeplace.io/published-by`` annotation
    """

    def __init__(self, api_client, namespace: str = DEFAULT_NAMESPACE, name: str = DEFAULT_NAME,
                 key: str = DEFAULT_KEY, max_attempts: int = 5, backoff_s: float = 0.05,
                 identity: str = "edgeplace-planner", sleep: Callable[[float], None] = time.sleep):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (got {max_attempts})")
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.name, self.key = namespace, name, key
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.identity = identity
        self._sleep = sleep
        self.conflicts = 0  # 409s met so far (for logs and tests)

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name} key {self.key}"

    # -- reading and writing the object (overridable in tests) -----------------------
    def _read(self) -> dict | None:
        try:
            resp = self.core.read_namespaced_config_map(self.name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def _create(self, body: dict) -> dict:
        resp = self.core.create_namespaced_config_map(self.namespace, body, _preload_content=False)
        return json.loads(resp.data)

    def _replace(self, body: dict) -> dict:
        resp = self.core.replace_namespaced_config_map(self.name, self.namespace, body, _preload_content=False)
        return json.loads(resp.data)

    # -- publishing ----------------------------------------------------------------------
    def publish(self, doc: dict[str, Any]) -> PublishResult:
        """Validate and store `doc`; see the module docstring for the guarantees.

        Raises `PlanError` (invalid document), `PlanTooLarge`, `PublishConflict`
        or `PublishError` (the API refused); the stored plan is then unchanged.
        """
        DecisionTable.from_document(doc, source="plan to publish")
        ours = _generated_at(doc)
        payload, compressed = encode_plan(doc)
        digest = hashlib.sha256(payload).hexdigest()
        annotations = {ANN_GENERATED_AT: doc["generated_at"], ANN_SHA256: digest, ANN_PUBLISHER: self.identity}
        if compressed:
            data_fields = {"binaryData": {self.key: base64.b64encode(payload).decode()}}
        else:
            data_fields = {"data": {self.key: payload.decode()}}
        for attempt in range(1, self.max_attempts + 1):
            try:
                current = self._read()
                if current is None:
                    body = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": self.name, "namespace": self.namespace, "annotations": annotations,
                                         "labels": {"app.kubernetes.io/name": "edgeplace",
                                                    "app.kubernetes.io/component": "plan"}},
                            **data_fields}
                    try:
                        stored = self._create(body)
                    except ApiException as exc:
                        if exc.status != 409:  # 409 AlreadyExists: someone created it first; read it again
                            raise
                        self._conflict(attempt, "created concurrently")
                        continue
                    return PublishResult("created", stored["metadata"]["resourceVersion"], attempt, len(payload), compressed)
                meta = current.get("metadata") or {}
                their_ann = meta.get("annotations") or {}
                if their_ann.get(ANN_SHA256) == digest and self._holds_key(current):
                    return PublishResult("unchanged", meta.get("resourceVersion", ""), attempt, len(payload), compressed)
                theirs = their_ann.get(ANN_GENERATED_AT)
                if theirs:
                    try:
                        if _generated_at({"generated_at": theirs}) > ours:
                            log.info("publish: %s holds a plan generated at %s, newer than ours (%s); not overwriting",
                                     self.where, theirs, doc["generated_at"])
                            return PublishResult("superseded", meta.get("resourceVersion", ""), attempt, 0, compressed)
                    except ValueError:
                        pass  # an unreadable annotation: ours replaces it
                body = dict(current)
                body["metadata"] = {**meta, "annotations": {**their_ann, **annotations}}
                data = {k: v for k, v in (current.get("data") or {}).items() if k != self.key}
                binary = {k: v for k, v in (current.get("binaryData") or {}).items() if k != self.key}
                data.update(data_fields.get("data", {}))
                binary.update(data_fields.get("binaryData", {}))
                body["data"], body["binaryData"] = data or None, binary or None
                body = {k: v for k, v in body.items() if v is not None}
                try:
                    stored = self._replace(body)  # carries metadata.resourceVersion: optimistic concurrency
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    self._conflict(attempt, _api_error(exc))
                    continue
                return PublishResult("updated", stored["metadata"]["resourceVersion"], attempt, len(payload), compressed)
            except ApiException as exc:
                raise PublishError(f"{self.where}: the API server refused the plan: HTTP {exc.status} "
                                   f"{_api_error(exc)}") from None
        raise PublishConflict(f"{self.where}: {self.max_attempts} attempts met concurrent updates (409 Conflict); "
                              "the stored plan is unchanged")

    def _holds_key(self, cm: dict) -> bool:
        return self.key in (cm.get("data") or {}) or self.key in (cm.get("binaryData") or {})

    def _conflict(self, attempt: int, why: str) -> None:
        self.conflicts += 1
        log.info("publish: %s: conflict on attempt %d (%s); re-reading", self.where, attempt, why)
        if attempt < self.max_attempts:
            self._sleep(self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random()))


class FilePlanPublisher:
    """Writes plan documents to a file atomically (for `edgeplace serve --plan-file`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def where(self) -> str:
        return f"file {self.path}"

    def publish(self, doc: dict[str, Any]) -> PublishResult:
        DecisionTable.from_document(doc, source="plan to publish")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_plan_document(doc, self.path)  # temporary file, then rename
        return PublishResult("updated", "", 1, self.path.stat().st_size, self.path.suffix == ".gz")


# ---------------------------------------------------------------------------
# Reading it back: a table source for the extender


class PlanSourceError(OSError):
    """The ConfigMap could not be read (the extender keeps its current table)."""


class ConfigMapPlanSource:
    """A `edgeplace.k8s.extender.table.TableSource` that polls the plan ConfigMap.

    Every `poll_interval_s` the extender's worker thread calls
    `fetch_if_changed()`: one GET of the object; the plan's bytes only when
    its ``resourceVersion`` changed. Polling rather than watching: one small
    GET every few seconds costs nothing, needs only ``get`` on one named
    ConfigMap, and has no watch to re-establish after timeouts or 410 Gone;
    a new plan reaches the extender within `poll_interval_s` (plans change
    every few minutes). A missing object or key raises `PlanMissing`, an API
    error `PlanSourceError`; in both cases the server keeps the table it has.
    """

    def __init__(self, api_client, namespace: str = DEFAULT_NAMESPACE, name: str = DEFAULT_NAME,
                 key: str = DEFAULT_KEY, poll_interval_s: float = 2.0, request_timeout_s: float = 5.0):
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0 (got {poll_interval_s})")
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.name, self.key = namespace, name, key
        self.poll_interval_s = float(poll_interval_s)
        self.request_timeout_s = request_timeout_s
        self._seen: str | None = None

    def fetch_if_changed(self) -> PlanData | None:
        where = f"configmap {self.namespace}/{self.name}"
        try:
            resp = self.core.read_namespaced_config_map(self.name, self.namespace, _preload_content=False,
                                                        _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                self._seen = None
                raise PlanMissing(f"{where} does not exist") from None
            raise PlanSourceError(f"{where}: HTTP {exc.status} {_api_error(exc)}") from None
        except Exception as exc:  # urllib3 connection errors and timeouts
            raise PlanSourceError(f"{where}: {type(exc).__name__}: {exc}") from None
        cm = json.loads(resp.data)
        version = (cm.get("metadata") or {}).get("resourceVersion")
        if version is not None and version == self._seen:
            return None
        self._seen = version  # a bad document is reported once, not on every poll
        data = plan_bytes(cm, self.key)
        if data is None:
            self._seen = None
            raise PlanMissing(f"{where} has no key {self.key} yet (no plan published)")
        return PlanData(data, f"{where} key {self.key}")


def plan_bytes(configmap: dict, key: str = DEFAULT_KEY) -> bytes | None:
    """The stored plan of a ConfigMap's JSON (``data`` text or ``binaryData`` base64), or None."""
    text = (configmap.get("data") or {}).get(key)
    if text is not None:
        return text.encode()
    packed = (configmap.get("binaryData") or {}).get(key)
    if packed is not None:
        try:
            return base64.b64decode(packed, validate=True)
        except ValueError:
            raise PlanError(f"configmap key {key}", [Problem(f"binaryData.{key}", "is not valid base64")]) from None
    return None


def read_plan_document(api_client, namespace: str = DEFAULT_NAMESPACE, name: str = DEFAULT_NAME,
                       key: str = DEFAULT_KEY) -> dict[str, Any] | None:
    """The stored plan document as a dict (for tools and tests), or None."""
    core = client.CoreV1Api(api_client)
    try:
        resp = core.read_namespaced_config_map(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = plan_bytes(json.loads(resp.data), key)
    if data is None:
        return None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)
