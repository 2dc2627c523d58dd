"""`edgeplace calibrate` against a real Prometheus server holding Kepler-shaped series.

Prometheus and promtool are built from the github.com/prometheus/prometheus Go
module by k8s/e2e/build-prometheus.sh (`make e2e-build`) into
~/.cache/edgeplace/prometheus-<version>/. The data are written as OpenMetrics
text from known power curves and backfilled with `promtool tsdb
create-blocks-from openmetrics`; the server then serves them from its TSDB.

Three hours from 2026-06-21 00:00 UTC, scraped every 15 s; utilisation
steps every 5 minutes; each scrape interval's power has 1 % (sigma) noise
(seeded). node_exporter is scraped 7 s after Kepler. Nodes (2 CPUs each,
node_exporter `instance` host:9100):

- n1, current Kepler (`kepler_node_cpu_joules_total`, zones package and dram):
  package 80 + 300 u, dram 20 + 20 u, so the node curve is 100 W idle /
  420 W max. Kepler restarts at 01:00 (its counters start again from 0), its
  scrapes are missing 01:30-01:40, node_exporter's 02:10-02:15, and the
  node reboots at 02:30 (node_exporter's counters restart).
- n2, current Kepler, an 11-point SPECpower-style curve (concave start);
  utilisation visits every decile 0 %, 10 %, ..., 100 %.
- n3, node_exporter only: no Kepler series.
- n4, current Kepler, utilisation only between 10 and 15 %.
- n5, Kepler 0.7 (`kepler_node_platform_joules_total{instance, mode}`,
  dynamic and idle modes summed): 60 W idle / 200 W max.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by conftest.py
from edgeplace.cli import main
from tests.builders import ScenarioBuilder

pytestmark = pytest.mark.e2e

START_S = 1_782_000_000  # 2026-06-21T00:00:00Z
SCRAPE_S = 15
SLOTS = 3 * 3600 // SCRAPE_S + 1
N2_CURVE = [70.0, 130.0, 160.0, 185.0, 208.0, 230.0, 252.0, 275.0, 300.0, 330.0, 365.0]


# ---------------------------------------------------------------------------
# The data


def staircase(levels: list[float]) -> np.ndarray:
    """Utilisation at every scrape: `levels` held 5 minutes each, cycled."""
    step = (np.arange(SLOTS) * SCRAPE_S) // 300
    return np.asarray(levels)[step % len(levels)]


def counters(u: np.ndarray, power_w, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Energy [J] and idle CPU time of 2 CPUs [s] at every scrape, from the utilisation held
    over each scrape interval (the value at its end) and a power curve, with 1 % (sigma)
    measurement noise on each interval's power."""
    p = power_w(u) * (1 + np.random.default_rng(seed).normal(0.0, 0.01, u.size))
    energy = np.concatenate([[0.0], np.cumsum(p[1:] * SCRAPE_S)])
    idle = np.concatenate([[0.0], np.cumsum((1 - u[1:]) * SCRAPE_S * 2)])
    return energy, idle


def linear(idle_w: float, max_w: float):
    return lambda u: idle_w + (max_w - idle_w) * u


def family(name: str, series: list[tuple[dict[str, str], np.ndarray, np.ndarray]]) -> list[str]:
    """One OpenMetrics counter family: `series` of (labels, times [s], values)."""
    lines = [f"# TYPE {name} counter"]
    for labels, times, values in series:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines += [f"{name}_total{{{text}}} {v!r} {t:.3f}" for t, v in zip(times.tolist(), values.tolist())]
    return lines


def openmetrics() -> str:
    times = START_S + np.arange(SLOTS) * SCRAPE_S
    wide = staircase([0.05, 0.95, 0.3, 0.7, 0.15, 0.85, 0.5, 0.6, 0.4, 0.2, 0.8, 0.1])
    deciles = staircase([k / 10 for k in (0, 5, 10, 3, 8, 1, 6, 2, 9, 4, 7)])
    narrow = staircase([0.10, 0.15, 0.12, 0.14])
    kepler, cpu, legacy = [], [], []

    def node_cpu(node: str, idle: np.ndarray, keep: np.ndarray) -> None:
        # node_exporter is scraped 7 s after Kepler: its counter read off the same history.
        at = times[keep][:-1] + 7
        idle_at = np.interp(at, times, idle)
        for c in ("0", "1"):
            cpu.append(({"cpu": c, "instance": f"{node}:9100", "mode": "idle"}, at, idle_at / 2))
            cpu.append(({"cpu": c, "instance": f"{node}:9100", "mode": "user"}, at, 0.5 * (at - START_S)))

    every = np.ones(SLOTS, dtype=bool)
    # n1: package and dram zones; a Kepler restart at 01:00, a gap 01:30-01:40; node_exporter gap
    # 02:10-02:15 and a reboot at 02:30.
    e_pkg, idle1 = counters(wide, linear(80, 380), seed=1)
    e_dram, _ = counters(wide, linear(20, 40), seed=2)
    t_rel = times - START_S
    restart = t_rel >= 3600
    for zone, e in (("package", e_pkg), ("dram", e_dram)):
        e = np.where(restart, e - e[np.argmax(restart)] + 7.0, e)  # counts from ~0 again after the restart
        keep = ~((t_rel > 5400) & (t_rel < 6000))
        kepler.append(({"node_name": "n1", "path": f"/sys/class/powercap/{zone}", "zone": zone}, times[keep], e[keep]))
    reboot = t_rel >= 9000
    idle1 = np.where(reboot, idle1 - idle1[np.argmax(reboot)] + 3.0, idle1)
    node_cpu("n1", idle1, ~((t_rel > 7800) & (t_rel < 8100)))
    # n2: a SPECpower-style curve, every decile visited.
    e2, idle2 = counters(deciles, lambda u: np.interp(u, np.linspace(0, 1, 11), N2_CURVE), seed=3)
    kepler.append(({"node_name": "n2", "path": "/sys/class/powercap/package", "zone": "package"}, times, e2))
    node_cpu("n2", idle2, every)
    # n3: no Kepler; n4: too little load range.
    _, idle3 = counters(wide, linear(100, 200))
    node_cpu("n3", idle3, every)
    e4, idle4 = counters(narrow, linear(100, 300), seed=4)
    kepler.append(({"node_name": "n4", "path": "/sys/class/powercap/package", "zone": "package"}, times, e4))
    node_cpu("n4", idle4, every)
    # n5: Kepler 0.7, platform energy split into dynamic and idle modes.
    e5_idle, idle5 = counters(wide, lambda u: np.full_like(u, 60.0), seed=5)
    e5_dyn, _ = counters(wide, lambda u: 140.0 * u, seed=6)
    legacy += [({"instance": "n5", "mode": "idle", "source": "acpi"}, times, e5_idle),
               ({"instance": "n5", "mode": "dynamic", "source": "acpi"}, times, e5_dyn)]
    node_cpu("n5", idle5, every)
    lines = (family("kepler_node_cpu_joules", kepler) + family("kepler_node_platform_joules", legacy)
             + family("node_cpu_seconds", cpu) + ["# EOF"])
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(prometheus_binaries, tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("prometheus")
    data = work / "data"
    source = work / "kepler.om"
    source.write_text(openmetrics())
    subprocess.run([str(prometheus_binaries["promtool"]), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                   check=True, capture_output=True, timeout=300)
    config = work / "prometheus.yml"
    config.write_text("global: {}\n")
    port = e2e_cluster.free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen([str(prometheus_binaries["prometheus"]), f"--config.file={config}", f"--storage.tsdb.path={data}",
                             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.error
        import urllib.request

        def has_data():
            q = f"{url}/api/v1/query?query=count(kepler_node_cpu_joules_total)&time={START_S + 3600}"
            try:
                with urllib.request.urlopen(q, timeout=2) as r:
                    return json.load(r)["data"]["result"]
            except urllib.error.HTTPError as exc:  # 503 while the TSDB opens; close its body
                exc.close()
                return None

        e2e_cluster.wait_for(has_data, 60, "Prometheus serving the backfilled blocks")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def scenario(tmp_path) -> Path:
    b = ScenarioBuilder().slots(1).region("DE", 400, factor_type="lifecycle").site("a")
    for n in ("n1", "n2", "n3", "n4", "n5"):
        b.node(n, idle_w=50, max_w=150)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(b.tenant("t1").build_dict()))
    return path


WINDOW = ["--start", "2026-06-21T00:00:00Z", "--end", "2026-06-21T03:00:00Z"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_recovers_a_linear_curve_through_resets_and_gaps_and_refuses_what_cannot_fit(
        prometheus, scenario, tmp_path, capsys):
    out_file = tmp_path / "calibrated.yaml"
    code, out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                         "--node", "n1", "--node", "n3", "--node", "n4", "-o", str(out_file), "--format", "json")
    assert code == 1, err  # n3 and n4 could not be fitted
    rows = {r["node"]: r for r in json.loads(out)}
    n1 = rows["n1"]
    assert n1["status"] == "fitted"
    assert n1["idle_w"] == pytest.approx(100.0, rel=0.02)
    assert n1["max_w"] == pytest.approx(420.0, rel=0.02)
    assert 0 < n1["rmse_pct"] < 2.0  # the 1 % noise, averaged over 60 s windows
    assert "counter reset" in n1["message"] and "missing scrapes" in n1["message"]
    assert rows["n3"]["status"] == "no data" and "no Kepler energy series" in rows["n3"]["message"]
    assert rows["n4"]["status"] == "refused" and "utilisation only spans 10-15 %" in rows["n4"]["message"]
    doc = yaml.safe_load(out_file.read_text())
    power = {n["id"]: n["power"] for n in doc["nodes"]}
    assert power["n1"]["idle_w"] == pytest.approx(100.0, rel=0.02)
    assert power["n1"]["max_w"] == pytest.approx(420.0, rel=0.02)
    assert power["n3"] == power["n4"] == {"idle_w": 50, "max_w": 150}  # not fitted: unchanged


def test_calibrate_recovers_an_11_point_curve(prometheus, scenario, capsys):
    code, out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                         "--node", "n2", "--form", "points", "--write", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    fitted = [float(x) for x in row["points_w"].split(",")]
    assert fitted == pytest.approx(N2_CURVE, rel=0.02)
    doc = yaml.safe_load(scenario.read_text())
    n2 = next(n for n in doc["nodes"] if n["id"] == "n2")
    assert n2["power"]["points_w"] == pytest.approx(N2_CURVE, rel=0.02)


def test_calibrate_reads_legacy_kepler_platform_energy(prometheus, scenario, capsys):
    code, out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                         "--node", "n5", "--source", "kepler-legacy", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["idle_w"] == pytest.approx(60.0, rel=0.02) and row["max_w"] == pytest.approx(200.0, rel=0.02)


def test_points_form_refuses_a_curve_it_has_no_samples_for(prometheus, scenario, capsys):
    before = scenario.read_text()
    code, out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                         "--node", "n1", "--form", "points", "--write")
    assert code == 3 and out == ""
    assert "the 11-point curve needs samples near every decile" in err
    assert scenario.read_text() == before  # nothing written


def test_a_window_without_data_fits_nothing_and_writes_nothing(prometheus, scenario, capsys):
    before = scenario.read_text()
    code, out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus,
                         "--start", "2026-06-20T00:00:00Z", "--end", "2026-06-20T03:00:00Z", "--write")
    assert code == 3 and out == ""
    assert "n1: no Kepler energy series" in err
    assert scenario.read_text() == before


def test_fitted_models_become_node_annotations_the_cluster_mapping_reads(prometheus, scenario, e2e_binaries,
                                                                         capsys):
    # A real kube-apiserver: n1 and n2 as Nodes, calibrated with --annotate-nodes; the
    # mapping that builds scenarios from the cluster then reads the fitted models back.
    from kubernetes import client

    from edgeplace.k8s.mapping import map_cluster, parse_site_config, read_cluster

    with e2e_cluster.LocalCluster() as cluster:
        core = client.CoreV1Api(cluster.api_client())
        for name in ("n1", "n2"):
            e2e_cluster.create_node(core, name, labels={"edgeplace.io/site": "a", "edgeplace.io/tier": "access",
                                                      "topology.kubernetes.io/region": "DE"})
        core.patch_node("n2", {"metadata": {"annotations": {"edgeplace.io/idle-w": "1", "edgeplace.io/max-w": "2"}}})
        code, _out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                              "--node", "n1", "--annotate-nodes", "--kubeconfig", str(cluster.kubeconfig))
        assert code == 0, err
        code, _out, err = run(capsys, "calibrate", str(scenario), "--prometheus-url", prometheus, *WINDOW,
                              "--node", "n2", "--form", "points", "--annotate-nodes",
                              "--kubeconfig", str(cluster.kubeconfig))
        assert code == 0, err
        n1 = core.read_node("n1").metadata.annotations
        assert float(n1["edgeplace.io/idle-w"]) == pytest.approx(100.0, rel=0.02)
        assert float(n1["edgeplace.io/max-w"]) == pytest.approx(420.0, rel=0.02)
        n2 = core.read_node("n2").metadata.annotations
        assert "edgeplace.io/idle-w" not in n2 and "edgeplace.io/max-w" not in n2  # one form per Node
        assert [float(x) for x in n2["edgeplace.io/power-curve-w"].split(",")] == pytest.approx(N2_CURVE, rel=0.02)
        config = parse_site_config({"regions": [{"id": "DE", "intensity_g_per_kwh": 300, "factor_type": "lifecycle"}]})
        mapped = map_cluster(read_cluster(cluster.api_client()), config)
        spec = {n.id: n.power for n in mapped.scenario.spec.nodes}
        assert spec["n1"].idle_w == pytest.approx(100.0, rel=0.02)
        assert spec["n2"].points_w == pytest.approx(N2_CURVE, rel=0.02)
