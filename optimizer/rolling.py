"""Rolling horizon: re-plan the rest of the horizon from where things run now.

As slots pass, signals get better and the world drifts from the plan. A
re-plan at slot k solves the remaining horizon (`edgeplace.topology.transform.remaining`)
with each replica's current node as `current`, so the migration penalty in
the objective (`Objective.migration_g_per_replica`) keeps replicas where they
are unless moving saves more than it costs. Jobs already running keep running
to the end of their run; finished jobs drop out.
"""

from __future__ import annotations

import numpy as np

from edgeplace.optimizer.solve import Plan, SolveOptions, solve
from edgeplace.topology.load import compile_spec
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.transform import remaining


def current_nodes(scenario: Scenario, placement: Placement, slot: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Where each workload's replicas run in `slot` (services and running jobs), and the start
    slot of every job that started before `slot` (running then, or already done)."""
    current: dict[str, list[str]] = {}
    running: dict[str, int] = {}
    assign = placement.assign
    for w, wid in enumerate(scenario.workload_ids):
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        rows = assign[r0:r0 + n]
        if scenario.workload_interruptible[w]:  # its progress is `interruptible_progress`; nodes where it ran last
            ran = np.flatnonzero((rows[:, :slot] >= 0).any(axis=0))
            if ran.size and (rows[:, ran[-1]] >= 0).all():
                current[wid] = [scenario.node_ids[int(x)] for x in rows[:, ran[-1]]]
        elif scenario.workload_deferrable[w]:
            runs = np.flatnonzero((rows >= 0).any(axis=0))
            if runs.size and runs[0] < slot:  # started before `slot`: running now, or done (`remaining` drops it)
                running[wid] = int(runs[0])
                if (rows[:, slot] >= 0).all():
                    current[wid] = [scenario.node_ids[int(x)] for x in rows[:, slot]]
        elif (rows[:, slot] >= 0).all():
            current[wid] = [scenario.node_ids[int(x)] for x in rows[:, slot]]
    return current, running


def interruptible_progress(scenario: Scenario, placement: Placement, slot: int) -> dict[str, tuple[int, int]]:
    """Interruptible job id -> (slots it ran before `slot`, length of its run going on at `slot`,
    0 when it did not run in slot - 1), for the jobs that ran at all before `slot`."""
    out = {}
    for w in np.flatnonzero(scenario.workload_interruptible):
        r0, n = int(scenario.workload_first_replica[w]), int(scenario.workload_replicas[w])
        ran = (placement.assign[r0:r0 + n, :slot] >= 0).any(axis=0)
        if ran.any():
            stopped = np.flatnonzero(~ran)
            out[scenario.workload_ids[w]] = (int(ran.sum()), int(slot - 1 - (stopped[-1] if stopped.size else -1))
                                             if ran[-1] else 0)
    return out


def replan(scenario: Scenario, placement: Placement, slot: int, options: SolveOptions) -> tuple[Scenario, Plan]:
    """Solve the horizon from `slot` on, starting from `placement` as it runs in `slot`.

    Returns the remaining scenario (its slot 0 is `slot` of the original) and its plan.
    """
    current, running = current_nodes(scenario, placement, slot)
    rest = compile_spec(remaining(scenario.spec, slot, current, running, interruptible_progress(scenario, placement, slot)),
                        f"{scenario.source}@slot{slot}")
    return rest, solve(rest, options)
