"""Fail open: a small watchdog that lets Kueue admit what edgeplace holds once edgeplace is down.

Why a watchdog. Kueue has no timeout for an admission check: a Workload is
admitted only when every check of its ClusterQueue is ``Ready``
(pkg/workload/admissionchecks.go, ``SyncAdmittedCondition``, Kueue v0.17.0),
only the check's controller moves a ``Pending`` check, and a Workload
edgeplace holds inactive (`edgeplace.k8s.kueue`) stays inactive until
someone reactivates it. Each of those last steps needs a live component;
when edgeplace cannot take them, this watchdog does, from what edgeplace
wrote into the Workload when it decided.

How it knows edgeplace is down: edgeplace's controller acts only while it
holds the planner's Lease (``edgeplace-system/edgeplace-planner``) and renews
it every 2 s. The watchdog reads the Lease and judges it as client-go's
leader election does, on its own monotonic clock from when it saw the
record change (`edgeplace.k8s.leader.observe_lease`; no wall-clock comparison
across machines). edgeplace is *down for* the time since the holder's lease
ran out as observed (or since the watchdog started, if there is no Lease).

Every period it:

- releases (``spec.active: true``) a Workload edgeplace holds once its
  ``edgeplace.io/held-until`` has come, whether edgeplace runs or not: the
  plan's decision stands, and the job is never held past it;
- sets an edgeplace check that is ``Pending`` on a Workload with reserved
  quota ``Ready`` when edgeplace has been down for ``grace_s`` (reason
  ``fail_open``: the job runs as it would without edgeplace) or its
  ``edgeplace.io/latest-start`` has come;
- with ``dispatch``, once edgeplace has been down for ``grace_s``, nominates
  every MultiKueue Workload waiting for a nomination to all Active worker
  clusters (what Kueue's default AllAtOnce dispatcher does);
- marks edgeplace's AdmissionChecks ``Active`` (a ClusterQueue with an
  inactive check admits nothing, even if edgeplace never started).

It runs as its own process (``edgeplace serve --kueue-watchdog``, the chart's
``edgeplace-kueue-watchdog`` Deployment): no solver, no site config, a few
list calls per period. Limits: if the watchdog is down as well, held
Workloads wait until either comes back; a job whose planned start comes
while edgeplace is down is released at that start but admitted only once the
grace time has passed (or at its latest start, whichever is first).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from edgeplace.k8s.kueue import (ANN_DECISION, ANN_HELD_UNTIL, ANN_LATEST_START, DEFAULT_CONTROLLER_NAME, Action,
                                 KueueObjects, ScaledClock, _rfc3339, _time, check_state, checks_of, edgeplace_check,
                                 held_until, is_true, list_kueue, mark_checks_active, patch_workload, reserved_at,
                                 write_check)
from edgeplace.k8s.leader import observe_lease
from edgeplace.k8s.mapping import _annotations, _name, _namespace

log = logging.getLogger("edgeplace.k8s.kueue_failopen")


class FailOpenWatchdog:
    """See the module docstring.

    Parameters
    ----------
    api_client : the cluster Kueue runs in (the manager with MultiKueue)
    lease_namespace, lease_name : the Lease edgeplace's controller holds while it acts
    grace_s : how long edgeplace may be down before held Workloads are admitted [s]
    controller_name : edgeplace's AdmissionCheck controller name
    dispatch : also nominate MultiKueue Workloads (edgeplace is the external dispatcher)
    """

    def __init__(self, api_client, lease_namespace: str, lease_name: str, grace_s: float,
                 controller_name: str = DEFAULT_CONTROLLER_NAME, dispatch: bool = False,
                 monotonic: Callable[[], float] = time.monotonic):
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be >= 0 (got {grace_s})")
        self.api_client = api_client
        self.lease_namespace, self.lease_name = lease_namespace, lease_name
        self.grace_s = grace_s
        self.controller_name = controller_name
        self.dispatch = dispatch
        self._monotonic = monotonic
        self._started = monotonic()
        self._seen = None

    def read_lease(self) -> dict | None:
        """edgeplace's Lease as JSON, None if there is none."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            return json.loads(client.CoordinationV1Api(self.api_client).read_namespaced_lease(
                self.lease_name, self.lease_namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def down_for(self) -> float:
        """Seconds edgeplace has been down as observed (0 while it holds and renews its Lease)."""
        lease = self.read_lease()
        now = self._monotonic()
        self._seen = observe_lease(self._seen, lease, now)
        alive_until = self._seen.held_until if self._seen is not None else self._started
        return max(0.0, now - alive_until)

    def sweep(self) -> list[Action]:
        """One pass: release and admit what must not wait any longer; the decisions written."""
        down = self.down_for()
        failing_open = down >= self.grace_s
        checks = list_kueue(self.api_client, "admission_checks")
        mark_checks_active(self.api_client, checks, self.controller_name)
        ours = checks_of(checks, self.controller_name)
        workloads = list_kueue(self.api_client, "workloads")
        wall = ScaledClock.wall()
        actions = []
        for wl in workloads:
            check = edgeplace_check(wl, ours)
            if check is None or is_true(wl, "Finished"):
                continue
            key = f"{_namespace(wl)}/{_name(wl)}"
            until = held_until(wl)
            if until is not None:
                if wall >= until:
                    patch_workload(self.api_client, wl, {ANN_HELD_UNTIL: None, ANN_DECISION: "planned_start"}, active=True)
                    actions.append(Action(key, "release", "planned_start", "edgeplace watchdog: held-until reached"))
                    log.warning("kueue watchdog: %s released (held-until %s reached)", key, _rfc3339(until))
                continue
            if (check_state(wl, check) or {}).get("state") != "Pending" or reserved_at(wl) is None:
                continue
            latest = _time(_annotations(wl).get(ANN_LATEST_START))
            if latest is not None and wall >= latest:
                reason, message = "deadline", (f"edgeplace watchdog: latest start {_rfc3339(latest)} reached; admitted")
            elif failing_open:
                reason, message = "fail_open", (f"edgeplace watchdog: edgeplace has not held its lease "
                                                f"{self.lease_namespace}/{self.lease_name} for {down:.0f} s (grace "
                                                f"{self.grace_s:g} s): admitted without a carbon-aware decision")
            else:
                continue
            if write_check(self.api_client, wl, check, "Ready", message):
                actions.append(Action(key, "ready", reason, message))
                log.warning("kueue watchdog: %s check %s -> Ready (%s)", key, check, reason)
        if self.dispatch and failing_open:
            from edgeplace.k8s.multicluster import fallback_nominations

            kueue = KueueObjects(admission_checks=checks,
                                 multikueue_clusters=list_kueue(self.api_client, "multikueue_clusters"),
                                 multikueue_configs=list_kueue(self.api_client, "multikueue_configs"))
            # Re-read: the checks just set Ready are what lets these Workloads be dispatched.
            actions += fallback_nominations(self.api_client, list_kueue(self.api_client, "workloads"), kueue, ours)
        return actions

    def run(self, stop: threading.Event, period_s: float = 2.0) -> None:
        """Sweep every `period_s` until `stop` is set."""
        while not stop.is_set():
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - API down: try again next period
                log.warning("kueue watchdog: sweep failed: %s: %s", type(exc).__name__, exc)
            stop.wait(period_s)

