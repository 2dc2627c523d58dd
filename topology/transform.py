"""Scenario transforms that keep a scenario valid: the rest of a horizon.

`remaining(spec, first_slot, current)` is what a rolling-horizon re-plan and
the simulation need: the same world from slot `first_slot` on, with each
workload's replicas where they run now.
"""

from __future__ import annotations

from datetime import timedelta

from edgeplace.topology.spec import Deferral, ScenarioSpec


def remaining(spec: ScenarioSpec, first_slot: int, current: dict[str, list[str]] | None = None,
              running_jobs: dict[str, int] | None = None,
              progress: dict[str, tuple[int, int]] | None = None) -> ScenarioSpec:
    """The scenario from slot `first_slot` to the end of the horizon.

    Parameters
    ----------
    spec : the full scenario
    first_slot : the slot "now" (0 <= first_slot < slots)
    current : workload id -> node id of each replica now (sets `current`)
    running_jobs : deferrable job id -> the slot it started in, for jobs
        already started; they must finish their run without pause, so their
        window becomes exactly the rest of the run. Jobs that are done by
        `first_slot` are dropped, as are jobs whose window has closed.
    progress : interruptible job id -> (slots it ran before `first_slot`,
        slots of its run in progress at `first_slot`, 0 if paused); it keeps
        its window with the rest of its run time, and a run in progress goes
        on until it is min_run_minutes long (`current_run_minutes`).

    Signals keep the values from `first_slot` on; deferral windows are
    absolute times and need no shift.
    """
    horizon = spec.horizon
    if not 0 <= first_slot < horizon.slots:
        raise ValueError(f"first_slot must be in 0..{horizon.slots - 1} (got {first_slot})")
    slot = timedelta(minutes=horizon.slot_minutes)
    now = horizon.start + first_slot * slot
    end = horizon.start + horizon.slots * slot
    current = current or {}
    running_jobs = running_jobs or {}
    progress = progress or {}
    workloads = []
    for wl in spec.workloads:
        update: dict = {}
        if wl.id in current:
            update["current"] = list(current[wl.id])
        if wl.deferral is not None and wl.deferral.interruptible and wl.id in progress:
            d = wl.deferral
            done, running = progress[wl.id]
            left = d.duration_minutes - done * horizon.slot_minutes
            if left <= 0:
                continue  # finished
            begin = max(d.earliest_start, now) if not running else now
            if min(d.deadline, end) - begin < timedelta(minutes=left):
                continue  # it cannot finish any more (the evaluation of the whole horizon reports that)
            min_run = None if d.min_run_minutes is None else min(d.min_run_minutes, left)
            update["deferral"] = d.model_copy(update={
                "earliest_start": begin, "duration_minutes": left, "min_run_minutes": min_run,
                "current_run_minutes": running * horizon.slot_minutes, "nominal_start": None})
        elif wl.deferral is not None:
            d = wl.deferral
            run = timedelta(minutes=d.duration_minutes)
            if wl.id in running_jobs:
                started = horizon.start + running_jobs[wl.id] * slot
                if started + run <= now:
                    continue  # finished
                update["deferral"] = Deferral(earliest_start=now, deadline=started + _ceil_to(run, slot),
                                              duration_minutes=int((started + _ceil_to(run, slot) - now) / timedelta(minutes=1)))
            elif min(d.deadline, end) - max(d.earliest_start, now) < run:
                continue  # its window has closed without it (the evaluation of the past reports that)
        workloads.append(wl.model_copy(update=update))
    signals = [s.model_copy(update={"values": s.values[first_slot:]}) for s in spec.signals]
    new_horizon = horizon.model_copy(update={"start": now, "slots": horizon.slots - first_slot})
    return spec.model_copy(update={"horizon": new_horizon, "workloads": workloads, "signals": signals})


def _ceil_to(span: timedelta, slot: timedelta) -> timedelta:
    return -(-span // slot) * slot
