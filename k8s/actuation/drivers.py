"""Switching machines on and off: one small interface, a driver per way of doing it.

A node names its driver with the annotation ``edgeplace.io/power-driver``
(docs/KUBERNETES.md "Power drivers" has an example of each):

===========  ==================================================================
driver       how, and what it reads from the Node's annotations
===========  ==================================================================
``redfish``  the DMTF Redfish API of the node's BMC, through the `sushy`
             library: ``edgeplace.io/bmc-address`` (the service root URL, e.g.
             ``https://10.0.0.5``), ``edgeplace.io/redfish-system`` (the
             system's path; default: the service's only system). Off is a
             GracefulShutdown (ForceOff where the BMC allows no graceful one).
``ipmi``     IPMI over LAN (RMCP+), through `pyghmi`: ``edgeplace.io/bmc-address``
             ``host[:port]``. Off is a soft shutdown (ACPI).
``wol``      Wake-on-LAN: a magic packet to ``edgeplace.io/wol-mac`` through
             ``edgeplace.io/wol-broadcast`` (``address[:port]``, default
             255.255.255.255:9). It cannot switch a machine off: off goes through
             ``edgeplace.io/power-off-driver`` (redfish or ipmi) or the planner's
             ``--power-off-command``.
``kwok``     the test cluster: flips the node's ``kwok.x-k8s.io/node`` label,
             so kwok stops (or resumes) its heartbeats and the node goes NotReady
             (or Ready), as a machine losing (or getting) power would.
===========  ==================================================================

Credentials come from the Secret named by ``edgeplace.io/power-secret`` in
the planner's namespace (keys ``username``, ``password``; optional
``ca.crt`` for a BMC whose certificate a private CA signed, and
``insecure: "true"`` to skip TLS verification of a BMC with a self-signed
certificate). They are read when a call is made and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import shlex
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol

from edgeplace.k8s.actuation.objects import (ANN_BMC_ADDRESS, ANN_POWER_DRIVER, ANN_POWER_OFF_DRIVER, ANN_POWER_SECRET,
                                             ANN_REDFISH_SYSTEM, ANN_WOL_BROADCAST, ANN_WOL_MAC, is_true)

log = logging.getLogger("edgeplace.k8s.actuation")

#: kwok's node label (k8s/e2e/cluster.py): "fake" = kwok runs the node, anything else = it does not.
KWOK_LABEL = "kwok.x-k8s.io/node"
KWOK_ON, KWOK_OFF = "fake", "powered-off"


class PowerError(RuntimeError):
    """A driver call failed; the message names the node and what to fix."""


class PowerReading(str, Enum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"  # the driver cannot tell (Wake-on-LAN), or the machine is between states


@dataclass(frozen=True)
class PowerTarget:
    """The machine behind one Node: its name, annotations and (resolved) credentials."""

    node: str
    annotations: dict[str, str]
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    address: str = ""  # the node's InternalIP (for --power-off-command), "" when unknown

    def need(self, key: str) -> str:
        value = self.annotations.get(key, "").strip()
        if not value:
            raise PowerError(f"node {self.node}: annotation {key} is missing; the {self.driver} driver needs it")
        return value

    @property
    def driver(self) -> str:
        return self.annotations.get(ANN_POWER_DRIVER, "")


class PowerDriver(Protocol):
    """Switches one machine's power.

    Called by the power lifecycle only (`edgeplace.k8s.actuation.power`), at
    most one call at a time per node. `power_on` and `power_off` return once
    the request is accepted, not when the machine is up or down (the
    lifecycle watches the Node's Ready condition for that); both are safe to
    repeat. `power_state` says what the machine reports. Failures raise
    `PowerError` with a message naming the node.
    """

    name: str

    def power_on(self, target: PowerTarget) -> None: ...

    def power_off(self, target: PowerTarget) -> None: ...

    def power_state(self, target: PowerTarget) -> PowerReading: ...


# ---------------------------------------------------------------------------
# Redfish (sushy)


class RedfishDriver:
    """DMTF Redfish through `sushy` (see the module docstring)."""

    name = "redfish"

    def __init__(self, timeout_s: float = 30.0):
        self.timeout_s = timeout_s

    def _system(self, target: PowerTarget):
        import sushy
        from sushy import exceptions as sushy_exc

        url = target.need(ANN_BMC_ADDRESS).rstrip("/")
        base = url[: -len("/redfish/v1")] if url.endswith("/redfish/v1") else url
        root = f"{base}/redfish/v1"
        verify: bool | str = not is_true(target.credentials.get("insecure"))
        if target.credentials.get("ca.crt") and verify:
            verify = _ca_file(target.credentials["ca.crt"])
        try:
            conn = sushy.Sushy(base, verify=verify,
                               auth=sushy.auth.BasicAuth(target.credentials.get("username"),
                                                         target.credentials.get("password")))
            path = target.annotations.get(ANN_REDFISH_SYSTEM, "").strip()
            if not path:
                members = conn.get_system_collection().members_identities
                if len(members) != 1:
                    raise PowerError(f"node {target.node}: the Redfish service at {root} has {len(members)} systems; "
                                     f"name one with the annotation {ANN_REDFISH_SYSTEM} (one of: {', '.join(members)})")
                path = members[0]
            return conn.get_system(path)
        except sushy_exc.AccessError as exc:
            raise PowerError(f"node {target.node}: the Redfish service at {root} refused the credentials of Secret "
                             f"{target.annotations.get(ANN_POWER_SECRET, '?')} (HTTP {exc.status_code})") from None
        except sushy_exc.SushyError as exc:
            raise PowerError(f"node {target.node}: Redfish at {root}: {exc}") from None

    def power_state(self, target: PowerTarget) -> PowerReading:
        import sushy

        state = self._system(target).power_state
        if state == sushy.POWER_STATE_ON:
            return PowerReading.ON
        if state == sushy.POWER_STATE_OFF:
            return PowerReading.OFF
        return PowerReading.UNKNOWN  # powering on or off

    def power_on(self, target: PowerTarget) -> None:
        import sushy

        self._reset(target, sushy.RESET_ON, ())

    def power_off(self, target: PowerTarget) -> None:
        import sushy

        self._reset(target, sushy.RESET_GRACEFUL_SHUTDOWN, (sushy.RESET_FORCE_OFF,))

    def _reset(self, target: PowerTarget, wanted: str, fallbacks: tuple[str, ...]) -> None:
        from sushy import exceptions as sushy_exc

        system = self._system(target)
        try:
            allowed = system.get_allowed_reset_system_values()
        except sushy_exc.SushyError:
            allowed = {wanted}
        reset = next((r for r in (wanted, *fallbacks) if r in allowed), None)
        if reset is None:
            raise PowerError(f"node {target.node}: its BMC allows the resets {sorted(allowed)}, none of "
                             f"{[wanted, *fallbacks]}")
        try:
            system.reset_system(reset)
        except sushy_exc.SushyError as exc:
            raise PowerError(f"node {target.node}: Redfish reset {reset}: {exc}") from None


def _ca_file(pem: str) -> str:
    f = tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False)
    with f:
        f.write(pem)
    return f.name


# ---------------------------------------------------------------------------
# IPMI (pyghmi)


class IpmiDriver:
    """IPMI over LAN through `pyghmi` (see the module docstring).

    One pyghmi `Command` per BMC and user, kept open between calls: pyghmi
    reuses a live session of the same BMC and user, and expects its Commands
    to live long (a second one would wait on the first one's session).
    """

    name = "ipmi"

    def __init__(self) -> None:
        self._commands: dict[tuple[str, int, str, str], object] = {}

    def _command(self, target: PowerTarget):
        from pyghmi import exceptions as ipmi_exc
        from pyghmi.ipmi import command

        host, _, port_text = target.need(ANN_BMC_ADDRESS).partition(":")
        try:
            port = int(port_text or 623)
        except ValueError:
            raise PowerError(f"node {target.node}: annotation {ANN_BMC_ADDRESS} must be host[:port] "
                             f"(got {target.annotations.get(ANN_BMC_ADDRESS)!r})") from None
        user, password = target.credentials.get("username", ""), target.credentials.get("password", "")
        key = (host, port, user, hashlib.sha256(password.encode()).hexdigest())
        if key not in self._commands:
            try:
                self._commands[key] = command.Command(bmc=host, userid=user, password=password, port=port)
            except ipmi_exc.IpmiException as exc:
                raise PowerError(f"node {target.node}: IPMI {host}:{port}: {exc}") from None
        return key, self._commands[key]

    def _call(self, target: PowerTarget, fn: Callable) -> dict:
        from pyghmi import exceptions as ipmi_exc

        key, command = self._command(target)
        try:
            result = fn(command)
        except (ipmi_exc.IpmiException, TypeError, OSError) as exc:
            self._commands.pop(key, None)  # a broken session: log in afresh next time
            raise PowerError(f"node {target.node}: IPMI: {exc}") from None
        if isinstance(result, dict) and result.get("error"):
            raise PowerError(f"node {target.node}: IPMI: {result['error']}")
        return result or {}

    def power_state(self, target: PowerTarget) -> PowerReading:
        state = self._call(target, lambda c: c.get_power()).get("powerstate")
        return {"on": PowerReading.ON, "off": PowerReading.OFF}.get(state, PowerReading.UNKNOWN)

    def power_on(self, target: PowerTarget) -> None:
        self._call(target, lambda c: c.set_power("on"))

    def power_off(self, target: PowerTarget) -> None:
        self._call(target, lambda c: c.set_power("shutdown"))


# ---------------------------------------------------------------------------
# Wake-on-LAN


_MAC = re.compile(r"^([0-9A-Fa-f]{2})([-:]?)([0-9A-Fa-f]{2})(\2[0-9A-Fa-f]{2}){4}$")


def magic_packet(mac: str) -> bytes:
    """The Wake-on-LAN magic packet: 6 x 0xFF, then the MAC 16 times."""
    if not _MAC.match(mac.strip()):
        raise ValueError(f"{mac!r} is not a MAC address such as 52:54:00:12:34:56")
    raw = bytes.fromhex(re.sub(r"[-:]", "", mac.strip()))
    return b"\xff" * 6 + raw * 16


class WakeOnLanDriver:
    """Wake-on-LAN for power on; off through another driver or a command (see the module docstring).

    off_drivers : the drivers `edgeplace.io/power-off-driver` may name
    off_command : a command template run to switch a node off, e.g.
        ``ssh admin@{address} sudo systemctl poweroff``; {node} (its name) and
        {address} (its InternalIP, else its name) are filled in
    """

    name = "wol"

    def __init__(self, off_drivers: dict[str, PowerDriver] | None = None, off_command: str | None = None):
        self.off_drivers = off_drivers or {}
        self.off_command = off_command

    def power_on(self, target: PowerTarget) -> None:
        try:
            packet = magic_packet(target.need(ANN_WOL_MAC))
        except ValueError as exc:
            raise PowerError(f"node {target.node}: annotation {ANN_WOL_MAC}: {exc}") from None
        host, _, port = (target.annotations.get(ANN_WOL_BROADCAST) or "255.255.255.255:9").partition(":")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.sendto(packet, (host, int(port or 9)))
        except (OSError, ValueError) as exc:
            raise PowerError(f"node {target.node}: cannot send the Wake-on-LAN packet to {host}:{port or 9}: {exc}") from None

    def power_off(self, target: PowerTarget) -> None:
        via = target.annotations.get(ANN_POWER_OFF_DRIVER, "").strip()
        if via:
            driver = self.off_drivers.get(via)
            if driver is None:
                raise PowerError(f"node {target.node}: annotation {ANN_POWER_OFF_DRIVER} names {via!r}; "
                                 f"use one of {', '.join(sorted(self.off_drivers)) or '(none configured)'}")
            driver.power_off(target)
            return
        if not self.off_command:
            raise PowerError(f"node {target.node}: Wake-on-LAN cannot switch a machine off; set the annotation "
                             f"{ANN_POWER_OFF_DRIVER} (redfish or ipmi) or run the planner with --power-off-command")
        argv = [a.format(node=target.node, address=target.address or target.node) for a in shlex.split(self.off_command)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PowerError(f"node {target.node}: power-off command {argv[0]}: {exc}") from None
        if done.returncode != 0:
            raise PowerError(f"node {target.node}: power-off command exited {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()[:200]}")

    def power_state(self, target: PowerTarget) -> PowerReading:
        return PowerReading.UNKNOWN


# ---------------------------------------------------------------------------
# kwok (the test cluster)


class KwokDriver:
    """The kwok test cluster's power switch (see the module docstring). `core`: a CoreV1Api."""

    name = "kwok"

    def __init__(self, core):
        self.core = core

    def _set(self, target: PowerTarget, value: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.patch_node(target.node, {"metadata": {"labels": {KWOK_LABEL: value}}})
        except ApiException as exc:
            raise PowerError(f"node {target.node}: cannot set label {KWOK_LABEL}: HTTP {exc.status} {exc.reason}") from None

    def power_on(self, target: PowerTarget) -> None:
        self._set(target, KWOK_ON)

    def power_off(self, target: PowerTarget) -> None:
        self._set(target, KWOK_OFF)

    def power_state(self, target: PowerTarget) -> PowerReading:
        node = self.core.read_node(target.node)
        return PowerReading.ON if (node.metadata.labels or {}).get(KWOK_LABEL) == KWOK_ON else PowerReading.OFF


# ---------------------------------------------------------------------------
# The registry


class Drivers:
    """The drivers by name, and resolving a node's target (credentials from its Secret).

    `secrets(name) -> dict[str, str] | None` reads a Secret's data (decoded)
    from the planner's namespace; None when it does not exist.
    """

    def __init__(self, drivers: dict[str, PowerDriver], secrets: Callable[[str], dict[str, str] | None]):
        self.drivers = dict(drivers)
        self.secrets = secrets

    def driver_of(self, annotations: dict[str, str]) -> PowerDriver | None:
        return self.drivers.get(annotations.get(ANN_POWER_DRIVER, "").strip())

    def target(self, node: str, annotations: dict[str, str], address: str = "") -> PowerTarget:
        secret = annotations.get(ANN_POWER_SECRET, "").strip()
        credentials: dict[str, str] = {}
        if secret:
            data = self.secrets(secret)
            if data is None:
                raise PowerError(f"node {node}: Secret {secret!r} (annotation {ANN_POWER_SECRET}) does not exist in the "
                                 "planner's namespace; create it with keys username and password")
            credentials = data
        return PowerTarget(node, dict(annotations), credentials, address)


def default_drivers(api_client, namespace: str, off_command: str | None = None) -> Drivers:
    """Every driver edgeplace has, with Secrets read from `namespace`."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)

    def secrets(name: str) -> dict[str, str] | None:
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise PowerError(f"cannot read Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}") from None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    redfish, ipmi = RedfishDriver(), IpmiDriver()
    wol = WakeOnLanDriver({"redfish": redfish, "ipmi": ipmi}, off_command)
    return Drivers({"redfish": redfish, "ipmi": ipmi, "wol": wol, "kwok": KwokDriver(core)}, secrets)
