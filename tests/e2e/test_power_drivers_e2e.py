"""The Redfish power driver against a real Redfish server: the sushy-tools emulator on loopback.

sushy-tools (installed by k8s/e2e/build.sh into its own virtual environment)
serves the DMTF Redfish API with its fake systems driver: two machines,
HTTP basic authentication from an htpasswd file (bcrypt), and power changes
that take the emulator 1-11 s to apply, as a BMC's do. edgeplace's driver
talks to it through the `sushy` library, as to any BMC.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from edgeplace.k8s.actuation.drivers import PowerError, PowerReading, PowerTarget, RedfishDriver

pytestmark = pytest.mark.e2e

SYSTEMS = [{"uuid": str(uuid.UUID(int=k + 1)), "name": f"edge-{k + 1}", "power_state": "On",
            "nics": [{"mac": f"52:54:00:00:00:0{k + 1}", "ip": f"10.0.40.{k + 11}"}]} for k in range(2)]


@pytest.fixture(scope="module")
def emulator(e2e_binaries, tmp_path_factory):
    command = e2e_cluster.sushy_emulator()
    if not command.exists():
        if e2e_cluster.os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {command} is missing: run k8s/e2e/build.sh", pytrace=False)
        pytest.skip(f"{command} is missing: run k8s/e2e/build.sh")
    work = tmp_path_factory.mktemp("sushy")
    python = command.parent / "python"
    hashed = subprocess.run([str(python), "-c", "import bcrypt, sys; print(bcrypt.hashpw(b'bmc-pass', bcrypt.gensalt()).decode())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (work / "htpasswd").write_text(f"admin:{hashed}\n")
    (work / "emulator.conf").write_text(
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {SYSTEMS!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(work / 'htpasswd')!r}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(work / 'state')!r}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (work / "emulator.log").open("wb")
    proc = subprocess.Popen([str(command), "--config", str(work / "emulator.conf"), "-i", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            urllib.request.urlopen(f"{url}/redfish/v1/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # serving, and asking for credentials
        return True

    try:
        e2e_cluster.wait_for(up, 60, "the Redfish emulator to serve")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def target(url: str, system: str | None = None, password: str = "bmc-pass") -> PowerTarget:
    ann = {"edgeplace.io/power-driver": "redfish", "edgeplace.io/bmc-address": url,
           "edgeplace.io/power-secret": "bmc-edge"}
    if system:
        ann["edgeplace.io/redfish-system"] = system
    return PowerTarget("edge-1", ann, {"username": "admin", "password": password})


def test_redfish_switches_a_system_off_and_on(emulator):
    driver = RedfishDriver()
    machine = target(emulator, f"/redfish/v1/Systems/{SYSTEMS[0]['uuid']}")
    assert driver.power_state(machine) is PowerReading.ON
    driver.power_off(machine)  # GracefulShutdown; the emulator applies it within 1-11 s
    e2e_cluster.wait_for(lambda: driver.power_state(machine) is PowerReading.OFF, 30, "the system to be off")
    driver.power_off(machine)  # safe to repeat: already off
    driver.power_on(machine)
    e2e_cluster.wait_for(lambda: driver.power_state(machine) is PowerReading.ON, 30, "the system to be on")


def test_redfish_refuses_wrong_credentials_with_a_message_naming_the_secret(emulator):
    with pytest.raises(PowerError, match=r"node edge-1: the Redfish service at .* refused the credentials of Secret "
                                         r"bmc-edge \(HTTP 401\)"):
        RedfishDriver().power_state(target(emulator, f"/redfish/v1/Systems/{SYSTEMS[0]['uuid']}", password="nope"))


def test_redfish_needs_the_system_named_when_a_bmc_has_several(emulator):
    with pytest.raises(PowerError, match="has 2 systems; name one with the annotation edgeplace.io/redfish-system"):
        RedfishDriver().power_state(target(emulator))


def test_redfish_names_an_unknown_system(emulator):
    with pytest.raises(PowerError, match="node edge-1: Redfish at"):
        RedfishDriver().power_state(target(emulator, "/redfish/v1/Systems/no-such-machine"))


def test_credentials_come_from_the_secret_the_node_names(emulator, e2e_binaries):
    """The drivers edgeplace builds read the node's Secret from the planner's namespace (real API)."""
    import base64

    from kubernetes import client

    from edgeplace.k8s.actuation.drivers import default_drivers

    with e2e_cluster.LocalCluster() as cluster:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "edgeplace-system"}})
        core.create_namespaced_secret("edgeplace-system", {"metadata": {"name": "bmc-edge"}, "data": {
            "username": base64.b64encode(b"admin").decode(), "password": base64.b64encode(b"bmc-pass").decode()}})
        drivers = default_drivers(api, "edgeplace-system")
        annotations = {**target(emulator, f"/redfish/v1/Systems/{SYSTEMS[1]['uuid']}").annotations}
        driver = drivers.driver_of(annotations)
        machine = drivers.target("edge-2", annotations)
        assert driver.name == "redfish" and driver.power_state(machine) is PowerReading.ON
        driver.power_off(machine)
        e2e_cluster.wait_for(lambda: driver.power_state(machine) is PowerReading.OFF, 30, "the system to be off")
        with pytest.raises(PowerError, match="Secret 'bmc-other' .* does not exist in the planner's namespace"):
            drivers.target("edge-2", {**annotations, "edgeplace.io/power-secret": "bmc-other"})
