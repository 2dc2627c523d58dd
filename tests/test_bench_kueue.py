"""bench/bench_kueue.py's evaluation of where and when the day's jobs ran (no cluster needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bench.bench_kueue import DAY, DayJob, evaluate_day, quota_overruns

H = timedelta(hours=1)


def _job(name, tenant="ml", start_h=0.0, minutes=60, deadline_h=24.0, cpu=2):
    return DayJob(name, tenant, DAY + start_h * H, minutes, DAY + deadline_h * H, cpu)


def _ran(cluster, node, start_h, minutes):
    start = DAY + start_h * H
    return {"cluster": cluster, "node": f"{cluster}/{node}", "created": start, "admitted": start,
            "start": start, "end": start + timedelta(minutes=minutes)}


def test_back_to_back_jobs_do_not_count_as_running_at_once():
    # ml's quota is 4 CPUs: three 2-CPU jobs of 25 minutes, the third started the instant the first ended, all
    # times off the 2-minute grid by the same 34 s (whole wall seconds on a run's clock)
    off = 34 / 3600
    jobs = [_job("a", start_h=1), _job("b", start_h=1), _job("c", start_h=1)]
    records = {"a": _ran("worker-se", "se-1", 1 + off, 25), "b": _ran("worker-se", "se-2", 1 + off, 25),
               "c": _ran("worker-se", "se-1", 1 + off + 25 / 60, 25)}
    assert quota_overruns(jobs, records) == 0
    result = evaluate_day(jobs, records, 120)
    assert result["violations"] == 0, result["violation_detail"]
    assert result["missed_deadlines"] == 0 and result["jobs_in_worker-de/worker-se"] == "0/3"


def test_jobs_over_the_quota_at_once_and_late_ones_are_counted():
    jobs = [_job("a", start_h=1), _job("b", start_h=1), _job("c", start_h=1, deadline_h=1.5)]
    records = {"a": _ran("worker-de", "de-1", 1, 60), "b": _ran("worker-de", "de-2", 1, 60),
               "c": _ran("worker-se", "se-1", 1.25, 60)}
    assert quota_overruns(jobs, records) == 1  # 6 CPUs of ml at once from 01:15
    result = evaluate_day(jobs, records, 120)
    assert result["missed_deadlines"] == 1
    assert any("quota" in v for v in result["violation_detail"])
    assert any(v.startswith("c must run") for v in result["violation_detail"])  # started after its latest start


def test_the_greener_region_and_hour_cost_less_and_embodied_is_the_fleets():
    jobs = [_job("a", start_h=0, deadline_h=24)]
    de_noon = evaluate_day(jobs, {"a": _ran("worker-de", "de-1", 12, 60)}, 120)
    se_night = evaluate_day(jobs, {"a": _ran("worker-se", "se-1", 2, 60)}, 120)
    assert se_night["operational_kg"] < de_noon["operational_kg"]
    # owned nodes: the fleet's embodied carbon is the same wherever and whenever the job ran
    assert se_night["embodied_fleet_kg"] == pytest.approx(de_noon["embodied_fleet_kg"])
    assert se_night["emissions_kg"] == pytest.approx(se_night["operational_kg"] + se_night["embodied_fleet_kg"])


def test_the_speed_must_give_whole_plan_minutes_per_wall_second():
    from bench.bench_kueue import evaluation_step

    assert evaluation_step(120) == timedelta(minutes=2)
    for speed in (100, 30, 420):
        with pytest.raises(ValueError, match="--speed"):
            evaluation_step(speed)
