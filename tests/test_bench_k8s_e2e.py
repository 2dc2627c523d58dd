"""bench/bench_k8s_e2e.py without a cluster: its command line, and the CPU weights it gives the components."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bench import bench_k8s_e2e


def test_unknown_variants_are_refused_with_the_known_names(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_k8s_e2e.main(["--variants", "filter keeps the best, compact;no such wiring"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--variants: unknown ['no such wiring']" in err and "'steering at admission, extender for unplanned pods'" in err


def test_steering_variants_never_send_their_pods_to_the_extender():
    assert bench_k8s_e2e.STEER.pod_requests is None  # managedResources configured, not requested
    assert bench_k8s_e2e.Variant("managed", managed=True).pod_requests == {bench_k8s_e2e.MANAGED_RESOURCE: "1"}


def test_the_unmarked_steering_variant_has_kube_scheduler_send_every_pod():
    # As the chart's steering.extenderCalls: all wires it: no managedResources, no marks.
    variant = bench_k8s_e2e.STEER_ALL
    assert variant.mark is None and not variant.managed and variant.pod_requests is None
    config = bench_k8s_e2e.scheduler_config("http://127.0.0.1:1", ["bench-0"], variant=variant)
    [ext] = config["extenders"]
    assert "managedResources" not in ext and config["percentageOfNodesToScore"] == 100
    assert bench_k8s_e2e.STEER_BEST.mark == "every-pod" and bench_k8s_e2e.STEER.mark == "unsteered"


def test_cpu_weights_mode_is_checked_and_equal_moves_nothing():
    with pytest.raises(ValueError, match="choose one of requests, equal"):
        bench_k8s_e2e.CpuShares("fast")
    equal = bench_k8s_e2e.CpuShares("equal")
    assert not equal.available
    equal.place("extender", os.getpid())  # no cgroup to move into: a no-op
    assert "default weight" in equal.describe()


def test_the_extenders_weight_follows_the_charts_cpu_request():
    values = yaml.safe_load((bench_k8s_e2e.ROOT / "deploy/helm/edgeplace/values.yaml").read_text())
    assert f"{bench_k8s_e2e.chart_cpu_request()}m" == values["extender"]["resources"]["requests"]["cpu"]


def test_an_unwritable_cgroup_root_falls_back_to_equal_weights_and_says_why(tmp_path):
    missing = tmp_path / "no-cgroup-here"
    shares = bench_k8s_e2e.CpuShares("requests", root=missing)
    assert not shares.available
    assert str(missing) in shares.describe()


@pytest.mark.skipif(not os.access("/sys/fs/cgroup/cpu", os.W_OK), reason="needs a writable cgroup v1 cpu hierarchy (root)")
def test_a_placed_process_and_its_children_get_the_weight_of_their_requests():
    # A shell with a child: both move, and the cgroup's cpu.shares is the request in kubelet's units.
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        shares = bench_k8s_e2e.CpuShares("requests")
        try:
            deadline = time.monotonic() + 5
            while not bench_k8s_e2e._children(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            child = bench_k8s_e2e._children(proc.pid)[0]
            shares.place("extender", proc.pid)
            group = shares.parent / "extender"
            assert (group / "cpu.shares").read_text().strip() == str(bench_k8s_e2e.chart_cpu_request() * 1024 // 1000)
            for pid in (proc.pid, child):
                assert f"/{shares.parent.name}/extender" in Path(f"/proc/{pid}/cgroup").read_text()
            assert f"extender {bench_k8s_e2e.chart_cpu_request()}m" in shares.describe()
        finally:
            shares.close()
        assert not shares.parent.exists()
        assert f"/{shares.parent.name}/" not in Path(f"/proc/{proc.pid}/cgroup").read_text()
    finally:
        proc.kill()
        proc.wait()


def test_paired_shares_divide_each_round_by_its_own_run_without():
    import pandas as pd

    table = pd.DataFrame([
        {"nodes": 9, "run": 1, "scheduler": "without extender", "pods_per_s": 100.0},
        {"nodes": 9, "run": 1, "scheduler": "v", "pods_per_s": 90.0},
        {"nodes": 9, "run": 2, "scheduler": "without extender", "pods_per_s": 200.0},
        {"nodes": 9, "run": 2, "scheduler": "v", "pods_per_s": 190.0},
        {"nodes": 9, "run": 3, "scheduler": "without extender", "pods_per_s": 300.0},
        {"nodes": 9, "run": 3, "scheduler": "v", "pods_per_s": 150.0},
    ])
    summary = pd.DataFrame({"nodes": [9, 9], "scheduler": ["without extender", "v"]})
    # Rounds 0.9, 0.95, 0.5: the median pair, where the ratio of the medians would say 190 / 200.
    assert bench_k8s_e2e.paired_shares(table, summary) == [1.0, 0.9]


def test_the_cpu_sampler_reads_a_process_between_two_moments():
    sampler = bench_k8s_e2e.CpuSampler({"me": os.getpid()})
    time.sleep(0.1)
    start, cpu = time.time(), time.process_time()
    while time.process_time() - cpu < 0.4:  # busy for 0.4 s of CPU, however long that takes
        pass
    end = time.time()
    time.sleep(0.1)
    sampler.stop()
    used = sampler.between(start, end)["me"]
    assert 0.3 < used < 0.5, used
    assert sampler.between(end + 0.02, time.time())["me"] < 0.05


def test_settle_returns_once_the_processes_are_idle():
    idle = subprocess.Popen(["sleep", "5"])
    try:
        assert bench_k8s_e2e.settle([idle.pid]) < 1.5
    finally:
        idle.kill()
        idle.wait()
