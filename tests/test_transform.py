"""edgeplace.topology.transform.remaining: the same world from slot k on.

The scenario here has 6 slots of 60 min from 2026-06-21T00:00Z, so slot k
starts at k:00. Jobs:
    done   window 0-6 h, 60 min, started in slot 0: finished at 01:00
    long   window 0-6 h, 180 min, started in slot 1: runs 01:00-04:00
    odd    window 0-6 h, 90 min, started in slot 2: runs 02:00-03:30, i.e. slots 2 and 3
    later  window 4-6 h, 60 min, not started: its window lies ahead
    closed window 0-3 h, 120 min, not started: from 03:00 on it cannot finish by 03:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.builders import ScenarioBuilder
from edgeplace.topology.load import compile_spec
from edgeplace.topology.transform import remaining


def at(hour: float) -> datetime:
    return datetime(2026, 6, 21, int(hour), round(hour % 1 * 60), tzinfo=UTC)


def spec():
    return (ScenarioBuilder().slots(6).region("DE", [100, 200, 300, 400, 500, 600])
            .site("a", pue=1.0, renewable=[0, 1, 2, 3, 4, 5]).node("n1").node("n2")
            .background("n1", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
            .user("u", site="a").tenant("t1")
            .workload("web", replicas=2, sla_ms=5, users=["u"])
            .workload("done", window=(0, 6), duration_minutes=60)
            .workload("long", window=(0, 6), duration_minutes=180)
            .workload("odd", window=(0, 6), duration_minutes=90)
            .workload("later", window=(4, 6), duration_minutes=60)
            .workload("closed", window=(0, 3), duration_minutes=120)
            .build().spec)


RUNNING = {"done": 0, "long": 1, "odd": 2}


def by_id(s):
    return {w.id: w for w in s.workloads}


def test_horizon_starts_at_the_slot_and_keeps_its_end():
    rest = remaining(spec(), 3, running_jobs=RUNNING)
    assert rest.horizon.start == at(3)
    assert rest.horizon.slots == 3 and rest.horizon.slot_minutes == 60


def test_signals_keep_the_values_from_the_slot_on():
    rest = remaining(spec(), 3)
    values = {(s.signal.value, s.region or s.site or s.node): s.values for s in rest.signals}
    assert values[("grid_intensity", "DE")] == [400, 500, 600]
    assert values[("renewable_supply", "a")] == [3, 4, 5]
    assert values[("background_utilisation", "n1")] == [0.3, 0.4, 0.5]


def test_finished_and_closed_jobs_drop_out():
    rest = by_id(remaining(spec(), 3, running_jobs=RUNNING))
    # done: 00:00 + 60 min <= 03:00. closed: min(03:00, 06:00) - max(00:00, 03:00) = 0 < 120 min.
    assert "done" not in rest and "closed" not in rest
    assert {"web", "long", "odd", "later"} <= set(rest)


def test_a_running_job_is_pinned_to_the_rest_of_its_run():
    rest = by_id(remaining(spec(), 3, running_jobs=RUNNING))
    # long: started 01:00, runs to 04:00 -> window 03:00-04:00, 60 min left.
    d = rest["long"].deferral
    assert (d.earliest_start, d.deadline, d.duration_minutes) == (at(3), at(4), 60)
    # odd: started 02:00, 90 min rounded up to whole slots = 120 min -> ends 04:00, 60 min left.
    d = rest["odd"].deferral
    assert (d.earliest_start, d.deadline, d.duration_minutes) == (at(3), at(4), 60)


def test_jobs_not_started_keep_their_absolute_window():
    original = by_id(spec())["later"].deferral
    rest = by_id(remaining(spec(), 3, running_jobs=RUNNING))
    assert rest["later"].deferral == original
    # closed is still open at slot 0 (00:00-03:00 holds 120 min) and is kept.
    assert "closed" in by_id(remaining(spec(), 0))


def test_current_is_set_from_the_given_nodes():
    rest = by_id(remaining(spec(), 2, current={"web": ["n2", "n1"], "long": ["n1"]}, running_jobs={"long": 1}))
    assert rest["web"].current == ["n2", "n1"]
    assert rest["long"].current == ["n1"]
    assert rest["later"].current is None


def test_the_result_compiles_and_the_input_is_not_changed():
    s = spec()
    before = s.model_dump()
    rest = remaining(s, 4, current={"web": ["n1", "n1"]}, running_jobs=RUNNING)
    assert s.model_dump() == before
    sc = compile_spec(rest, "<rest>")
    assert sc.n_slots == 2
    # `later` (04:00-06:00, 60 min) may start in the new slot 0 or 1; web is current on n1 twice.
    later = sc.index_of("workload", "later")
    assert (sc.workload_earliest_slot[later], sc.workload_latest_start_slot[later]) == (0, 1)
    assert sc.workload_current[sc.index_of("workload", "web")] == [0, 0]


def test_slot_zero_is_the_whole_scenario():
    s = spec()
    rest = remaining(s, 0)
    assert rest.horizon == s.horizon
    assert [w.id for w in rest.workloads] == [w.id for w in s.workloads]
    assert [sig.values for sig in rest.signals] == [sig.values for sig in s.signals]


@pytest.mark.parametrize("slot", [-1, 6, 100])
def test_slot_out_of_range_is_refused(slot):
    with pytest.raises(ValueError, match=rf"first_slot must be in 0\.\.5 \(got {slot}\)"):
        remaining(spec(), slot)
