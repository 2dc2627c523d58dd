"""Events on pods and nodes (events.k8s.io/v1), so `kubectl describe` says what edgeplace did and why.

Events are best effort: a failed write is logged and never stops an
eviction or a power step (the planner's log line and metrics stay the
record).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

log = logging.getLogger("edgeplace.k8s.actuation")

#: events.k8s.io reportingController of everything edgeplace's actuation writes.
REPORTING_CONTROLLER = "edgeplace.io/planner"


@dataclass(frozen=True)
class Regarding:
    """The object an Event is about."""

    kind: str  # "Pod" or "Node"
    name: str
    namespace: str = ""  # "" for a Node
    uid: str = ""

    @property
    def event_namespace(self) -> str:
        # Node events live in "default", as the kubelet's and the node controller's do.
        return self.namespace or "default"


class EventRecorder:
    """Writes Events through the events.k8s.io/v1 API; `record` never raises."""

    def __init__(self, api_client, instance: str = "edgeplace-planner"):
        from kubernetes import client

        self.api = client.EventsV1Api(api_client) if api_client is not None else None
        self.instance = instance[:128]

    def record(self, regarding: Regarding, reason: str, note: str, action: str, warning: bool = False) -> None:
        if self.api is None:
            return
        now = datetime.now(timezone.utc)
        body = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": f"{regarding.name[:200]}.{uuid.uuid4().hex[:12]}", "namespace": regarding.event_namespace},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER, "reportingInstance": self.instance,
            "action": action, "reason": reason, "note": note[:1024], "type": "Warning" if warning else "Normal",
            "regarding": {"apiVersion": "v1", "kind": regarding.kind, "name": regarding.name,
                          **({"namespace": regarding.namespace} if regarding.namespace else {}),
                          **({"uid": regarding.uid} if regarding.uid else {})},
        }
        try:
            self.api.create_namespaced_event(regarding.event_namespace, body, _preload_content=False)
        except Exception as exc:  # noqa: BLE001 - an Event is never worth failing an action for
            log.warning("actuation: cannot write Event %s on %s %s: %s", reason, regarding.kind, regarding.name, exc)
