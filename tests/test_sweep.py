"""Sweep engines and the results file: in-process, local processes, a real
Dask cluster on loopback; resuming does only what is left."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from edgeplace.sweep import DaskEngine, InProcessEngine, LocalProcessEngine, ResultsFile, digest, make_engine, run_sweep
from edgeplace.whatif import run_whatif
from edgeplace.optimizer.solve import SolveOptions
from tests.builders import ScenarioBuilder
from edgeplace.topology import InputError

ROOT = Path(__file__).resolve().parents[1]
GREEDY = SolveOptions(solver="greedy", time_limit_s=1.0, workers=1, bound_time_limit_s=0.0)


def small():
    """Two sites (DE edge with a day-shaped grid, FR cloud 10 ms away), two tenants."""
    de = [400] * 6 + [300] * 6 + [150] * 6 + [450] * 6
    return (ScenarioBuilder("sweep").slots(24)
            .region("DE", de).region("FR", 50)
            .site("e", region="DE", pue=1.5).site("c", tier="cloud", region="FR", pue=1.1)
            .node("e1", site="e", cpu=8000).node("e2", site="e", cpu=8000).node("c1", site="c", cpu=16000)
            .link("e", "c", 10).user("u", site="e", access_ms=1)
            .tenant("a", never_with=["b"]).tenant("b")
            .workload("wa", tenant="a", cpu=2000, sla_ms=2, users=["u"])
            .workload("wb", tenant="b", cpu=2000, sla_ms=5, users=["u"])
            .workload("job", tenant="a", cpu=4000, window=(0, 24), duration_minutes=180))


# ---------------------------------------------------------------------------
# Engines


@pytest.mark.parametrize("engine", [InProcessEngine(), LocalProcessEngine(2)], ids=["in-process", "processes"])
def test_engines_run_every_payload_once(engine):
    payloads = {f"k{i}": -i for i in range(5)}
    out = dict(engine.run(abs, payloads))
    assert out == {f"k{i}": i for i in range(5)}


def test_make_engine_picks_by_workers_and_address():
    assert isinstance(make_engine(1), InProcessEngine)
    assert isinstance(make_engine(3), LocalProcessEngine) and make_engine(3).workers == 3
    assert isinstance(make_engine(3, "tcp://127.0.0.1:8786"), DaskEngine)


def test_an_error_in_a_case_is_raised_after_the_finished_ones_are_kept(tmp_path):
    results = ResultsFile.open(tmp_path / "r.jsonl", resume=False)
    payloads = {"a": 4.0, "b": 9.0, "c": -1.0, "d": 16.0}
    with pytest.raises(ValueError, match="math domain error"):
        run_sweep(math.sqrt, payloads, InProcessEngine(), results=results)
    kept = ResultsFile.open(tmp_path / "r.jsonl", resume=True).records
    assert set(kept) == {"a", "b"}


# ---------------------------------------------------------------------------
# Results file


def test_results_file_refuses_to_overwrite_without_resume(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match=r"the results file exists; pass --resume"):
        ResultsFile.open(path, resume=False)


def test_results_file_skips_torn_and_foreign_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    good = {"v": 1, "key": "k1", "case": {}, "result": {"x": 1}}
    path.write_text(json.dumps(good) + "\n" + '{"v": 1, "key": "k2", "res' + "\n" + json.dumps({"v": 9, "key": "k3"}) + "\n")
    rf = ResultsFile.open(path, resume=True)
    assert set(rf.records) == {"k1"} and rf.skipped == 2
    rf.add("k4", {"c": "1"}, {"x": 4})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [rec["key"] for rec in lines] == ["k1", "k4"]  # rewritten whole: the torn line is gone
    assert not list(tmp_path.glob(".r.jsonl.*"))  # no temporary file left behind


def test_partial_run_then_resume_does_only_the_rest(tmp_path):
    path = tmp_path / "r.jsonl"
    payloads = {f"k{i}": float(i) for i in range(6)}

    def stop_after_two(done, total, key):
        if done == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C after two cases

    with pytest.raises(KeyboardInterrupt):
        run_sweep(math.sqrt, payloads, InProcessEngine(), results=ResultsFile.open(path, resume=False),
                  progress=stop_after_two)
    again = run_sweep(math.sqrt, payloads, InProcessEngine(), results=ResultsFile.open(path, resume=True))
    assert again.reused == ["k0", "k1"]
    assert again.computed == ["k2", "k3", "k4", "k5"]
    assert again.results == {k: math.sqrt(v) for k, v in payloads.items()}
    assert len(path.read_text().splitlines()) == 6


def test_digest_is_stable_and_order_free():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


# ---------------------------------------------------------------------------
# Dask distributed, for real, on loopback


def test_whatif_on_a_local_dask_cluster_matches_in_process():
    distributed = pytest.importorskip("distributed")
    scenario = small().build()
    vary = ["isolation=on,off", "sla.scale=1,3"]
    local = run_whatif(scenario, vary, GREEDY, InProcessEngine())
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = run_whatif(scenario, vary, GREEDY, DaskEngine(cluster.scheduler_address))
    assert remote.engine.startswith("dask at tcp://127.0.0.1:")
    assert remote.computed == 5
    cols = ["isolation", "sla.scale", "status", "emissions_kg", "energy_kwh", "active_nodes"]
    assert remote.table[cols].equals(local.table[cols])


def test_an_unreachable_scheduler_is_an_input_error():
    pytest.importorskip("distributed")
    with pytest.raises(InputError, match=r"no Dask scheduler answers there"):
        run_sweep(abs, {"a": -1}, DaskEngine("tcp://127.0.0.1:9", connect_timeout_s=0.5))


def test_the_local_default_never_imports_dask():
    code = ("import sys\n"
            "from edgeplace.sweep import make_engine, run_sweep\n"
            "import edgeplace.whatif, edgeplace.simulate, edgeplace.pareto, edgeplace.planning_cli\n"
            "out = run_sweep(abs, {'a': -1, 'b': -2}, make_engine(2))\n"
            "assert out.results == {'a': 1, 'b': 2}, out.results\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'ray'))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
