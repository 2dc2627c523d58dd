"""edgeplace.k8s.actuation.drivers: Wake-on-LAN and IPMI on loopback, the registry, messages.

IPMI runs against pyghmi's own BMC server (tests/fixtures/ipmi_bmc.py) over
RMCP+ on 127.0.0.1; Wake-on-LAN sends its magic packet to a UDP socket on
127.0.0.1. Redfish runs against the sushy-tools emulator in the real-cluster
tier (tests/e2e/test_power_drivers_e2e.py), which builds it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgeplace.k8s.actuation.drivers import (Drivers, IpmiDriver, PowerError, PowerReading, PowerTarget,
                                             WakeOnLanDriver, magic_packet)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ipmi_bmc.py"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_magic_packet_is_six_ff_and_the_mac_sixteen_times():
    packet = magic_packet("52:54:00:12:34:56")
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("525400123456") * 16
    assert magic_packet("52-54-00-12-34-56") == packet
    with pytest.raises(ValueError, match="is not a MAC address"):
        magic_packet("52:54:00:12:34")


def test_wake_on_lan_sends_the_packet_and_cannot_switch_off_alone():
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.settimeout(5)
        target = PowerTarget("edge-1", {"edgeplace.io/power-driver": "wol", "edgeplace.io/wol-mac": "52:54:00:12:34:56",
                                        "edgeplace.io/wol-broadcast": f"127.0.0.1:{port}"})
        wol = WakeOnLanDriver()
        wol.power_on(target)
        assert listener.recv(200) == magic_packet("52:54:00:12:34:56")
    assert wol.power_state(target) is PowerReading.UNKNOWN
    with pytest.raises(PowerError, match="Wake-on-LAN cannot switch a machine off; set the annotation "
                                         "edgeplace.io/power-off-driver"):
        wol.power_off(target)
    with pytest.raises(PowerError, match="edgeplace.io/wol-mac is missing"):
        wol.power_on(PowerTarget("edge-1", {"edgeplace.io/power-driver": "wol"}))


def test_wake_on_lan_switches_off_with_the_configured_command(tmp_path):
    marker = tmp_path / "off"
    wol = WakeOnLanDriver(off_command=f"{sys.executable} -c \"open('{marker}', 'w').write('{{node}} {{address}}')\"")
    wol.power_off(PowerTarget("edge-1", {}, address="10.0.0.7"))
    assert marker.read_text() == "edge-1 10.0.0.7"
    failing = WakeOnLanDriver(off_command=f"{sys.executable} -c \"import sys; sys.exit('no route to host')\"")
    with pytest.raises(PowerError, match="power-off command exited 1: no route to host"):
        failing.power_off(PowerTarget("edge-1", {}))


@pytest.fixture
def bmc(tmp_path):
    state = tmp_path / "power"
    state.write_text("on")
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, str(FIXTURE), str(port), "admin", "s3cret", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield port, state
    proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def ipmi_target(port: int, password: str = "s3cret") -> PowerTarget:
    return PowerTarget("edge-1", {"edgeplace.io/power-driver": "ipmi", "edgeplace.io/bmc-address": f"127.0.0.1:{port}"},
                       {"username": "admin", "password": password})


def test_ipmi_switches_a_bmc_over_rmcp_plus(bmc):
    port, state = bmc
    ipmi = IpmiDriver()
    assert ipmi.power_state(ipmi_target(port)) is PowerReading.ON
    ipmi.power_off(ipmi_target(port))  # a soft shutdown (ACPI)
    assert state.read_text() == "off" and ipmi.power_state(ipmi_target(port)) is PowerReading.OFF
    ipmi.power_on(ipmi_target(port))
    assert state.read_text() == "on"


def test_ipmi_names_the_node_when_the_password_is_wrong(bmc):
    port, _ = bmc
    with pytest.raises(PowerError, match=r"node edge-1: IPMI 127.0.0.1:\d+: Incorrect password provided"):
        IpmiDriver().power_state(ipmi_target(port, password="wrong"))


def test_ipmi_address_must_be_host_and_port():
    with pytest.raises(PowerError, match="edgeplace.io/bmc-address must be host\\[:port\\]"):
        IpmiDriver().power_state(PowerTarget("edge-1", {"edgeplace.io/bmc-address": "10.0.0.5:ipmi"}))


def test_the_registry_picks_the_driver_and_reads_the_secret():
    secrets = {"bmc-edge-1": {"username": "admin", "password": "pw"}}
    drivers = Drivers({"wol": WakeOnLanDriver()}, secrets.get)
    assert drivers.driver_of({"edgeplace.io/power-driver": "wol"}).name == "wol"
    assert drivers.driver_of({"edgeplace.io/power-driver": "smoke-signals"}) is None
    target = drivers.target("edge-1", {"edgeplace.io/power-secret": "bmc-edge-1"})
    assert target.credentials == {"username": "admin", "password": "pw"}
    assert "pw" not in repr(target)  # credentials never end up in a log line
    with pytest.raises(PowerError, match="Secret 'bmc-gone' \\(annotation edgeplace.io/power-secret\\) does not exist"):
        drivers.target("edge-1", {"edgeplace.io/power-secret": "bmc-gone"})
