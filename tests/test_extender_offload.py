"""edgeplace.k8s.extender.offload: the helper process for large bodies and plan builds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgeplace.k8s.extender import offload
from edgeplace.k8s.extender.table import DecisionTable, PlanError
from edgeplace.k8s.extender.wire import WireError
from tests.test_extender_server import names_args, plan_doc


@pytest.fixture(scope="module")
def helper():
    h = offload.Helper(max_pending=2)
    yield h
    h.close()


def test_requests_and_plans_come_back_whole(helper):
    args = helper.submit(offload.parse_request, "filter", names_args(), 100).result(timeout=60)
    assert args.node_names == ["n1", "n2", "n3", "n4", "n5"] and args.pod.workload == "web"
    data = json.dumps(plan_doc()).encode()
    table = offload.attach(helper.submit(offload.build_table, data, "plan.json").result(timeout=60))
    assert table.filter(table.target("web", None), ["n1", "n2"]).codes.tolist() == [0, 3]


def test_errors_travel_back_as_themselves(helper):
    with pytest.raises(WireError, match="NodeNames: has 5 candidate nodes") as info:
        helper.submit(offload.parse_request, "filter", names_args(), 4).result(timeout=60)
    assert info.value.field == "NodeNames"
    with pytest.raises(PlanError, match="plan.json: ") as info:
        helper.submit(offload.build_table, b'{"version": 1}', "plan.json").result(timeout=60)
    assert {p.path for p in info.value.problems} >= {"generated_at", "nodes"}


def test_large_arrays_come_back_as_mapped_files(monkeypatch, tmp_path):
    monkeypatch.setattr(offload, "MAPPED_MIN_BYTES", 1)  # every array, for this small plan
    monkeypatch.setattr(offload.tempfile, "gettempdir", lambda: str(tmp_path))
    data = json.dumps(plan_doc()).encode()
    reference = DecisionTable.from_json(data)
    built = offload.build_table(data, "plan.json")
    assert isinstance(built.workload_codes, offload._MappedArray)
    table = offload.attach(built)
    for name, value in vars(reference).items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(getattr(table, name), value), name
    assert not table.workload_codes.flags.writeable  # read-only mappings
    assert not [f for d in ("/dev/shm", str(tmp_path)) if os.path.isdir(d) for f in os.listdir(d)
                if f.startswith("edgeplace-table-")]  # removed once mapped


def test_at_most_max_pending_jobs_wait(helper):
    first = helper.submit(offload.parse_request, "filter", names_args(), 100)
    second = helper.submit(offload.parse_request, "filter", names_args(), 100)
    with pytest.raises(offload.HelperBusy):
        helper.submit(offload.parse_request, "filter", names_args(), 100)
    first.result(timeout=60), second.result(timeout=60)
    helper.submit(int).result(timeout=60)  # room again


def test_a_helper_that_dies_fails_its_jobs_and_is_replaced():
    import time

    h = offload.Helper()
    try:
        h.warm()
        outstanding = h.submit(time.sleep, 60)
        h._process.popen.kill()  # killed (say, out of memory) with a job under way
        with pytest.raises(offload.HelperDied, match="exited"):
            outstanding.result(timeout=60)
        assert h.submit(int).result(timeout=60) == 0  # the next job starts a new helper
    finally:
        h.close()
