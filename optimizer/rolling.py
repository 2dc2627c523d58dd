"""Rolling horizon: re-plan the rest of the horizon from where things run now.

As slots pass, signals get better and the world drifts from the plan. A
re-plan at slot k solves the remaining horizon (`edgeplace.topology.transform.remaining`)
with each replica's current node as `current`, so the migration penalty in
the objective (`Objective.migration_g_per_replica`) keeps replicas where they
are unless moving saves more than it costs. Jobs already running keep running
to the end of their run; finished jobs drop out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeplace.optimizer.solve import Plan, SolveOptions, solve
from edgeplace.topology.load import compile_spec
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import Scenario
from edgeplace.topology.transform import remaining


@dataclass
class RunState:
    """What has run so far, slot by slot: the input of a re-plan (`situation`).

    Arrays over the scenario's workloads (W) and replicas (R): `first_run` the
    first slot any replica of a workload ran (-1: not yet), `ran` the slots it
    ran in, `run_len` the length of its run that includes the last committed
    slot (0: it did not run then), `nodes` each replica's node in the last
    slot it ran (-1: never), `whole` every replica ran in the workload's last
    run slot. `commit` adds one slot; a simulation commits as it goes, so a
    re-plan costs what the scenario's size costs, not the slots behind it.
    """

    scenario: Scenario
    slot: int
    first_run: np.ndarray
    ran: np.ndarray
    run_len: np.ndarray
    nodes: np.ndarray
    whole: np.ndarray

    @classmethod
    def start(cls, scenario: Scenario) -> "RunState":
        W, R = scenario.n_workloads, scenario.n_replicas
        return cls(scenario, 0, np.full(W, -1, dtype=np.int64), np.zeros(W, dtype=np.int64),
                   np.zeros(W, dtype=np.int64), np.full(R, -1, dtype=np.int64), np.zeros(W, dtype=bool))

    @classmethod
    def replay(cls, scenario: Scenario, placement: Placement, slot: int) -> "RunState":
        """The state after slots 0..slot-1 of `placement`."""
        state = cls.start(scenario)
        for t in range(slot):
            state.commit(placement.column(t))
        return state

    def commit(self, column: np.ndarray) -> None:
        """Add the next slot: `column` (R) is each replica's node in it, -1 = not running."""
        sc = self.scenario
        column = np.asarray(column, dtype=np.int64)
        on = column >= 0
        first = sc.workload_first_replica
        if sc.n_replicas:
            any_on = np.add.reduceat(on.astype(np.int64), first) > 0 if sc.n_workloads else np.zeros(0, dtype=bool)
            all_on = np.minimum.reduceat(on.astype(np.int64), first) > 0 if sc.n_workloads else np.zeros(0, dtype=bool)
        else:
            any_on = all_on = np.zeros(sc.n_workloads, dtype=bool)
        self.first_run = np.where(any_on & (self.first_run < 0), self.slot, self.first_run)
        self.ran += any_on
        self.run_len = np.where(any_on, self.run_len + 1, 0)
        self.nodes = np.where(on, column, self.nodes)
        self.whole = np.where(any_on, all_on, self.whole)
        self.slot += 1

    def situation(self, now: np.ndarray | None = None, only: list[int] | None = None
                  ) -> tuple[dict[str, list[str]], dict[str, int], dict[str, tuple[int, int]]]:
        """(current, running, progress) for `edgeplace.topology.transform.remaining` at the next slot.

        current: where each workload's replicas run now, `now` (R nodes: the slot being planned
        as the plan in force has it) or else the last committed slot: services and started jobs
        whose every replica runs then; an interruptible job: the nodes of its last run slot.
        running: every deferrable job (not interruptible) that started before now -> its start.
        progress: interruptible jobs that ran -> (slots run, length of the run going on now).
        `only`: these workloads (indices), not all.
        """
        sc = self.scenario
        ids = sc.node_ids
        current: dict[str, list[str]] = {}
        running: dict[str, int] = {}
        progress: dict[str, tuple[int, int]] = {}
        column = self.nodes if now is None else np.asarray(now, dtype=np.int64)
        for w in range(sc.n_workloads) if only is None else only:
            wid = sc.workload_ids[w]
            r0, n = int(sc.workload_first_replica[w]), int(sc.workload_replicas[w])
            if sc.workload_interruptible[w]:
                if self.ran[w]:
                    progress[wid] = (int(self.ran[w]), int(self.run_len[w]))
                    if self.whole[w]:
                        current[wid] = [ids[int(x)] for x in self.nodes[r0:r0 + n]]
                continue
            if sc.workload_deferrable[w]:
                if self.first_run[w] < 0:
                    continue
                running[wid] = int(self.first_run[w])
            rows = column[r0:r0 + n] if now is not None else np.where(self.run_len[w] > 0, self.nodes[r0:r0 + n], -1)
            if len(rows) and (rows >= 0).all():
                current[wid] = [ids[int(x)] for x in rows]
        return current, running, progress


def current_nodes(scenario: Scenario, placement: Placement, slot: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Where each workload's replicas run in `slot` (services and running jobs), and the start
    slot of every job that started before `slot` (running then, or already done)."""
    current, running, _ = RunState.replay(scenario, placement, slot).situation(now=placement.column(slot))
    return current, running


def replan(scenario: Scenario, placement: Placement, slot: int, options: SolveOptions) -> tuple[Scenario, Plan]:
    """Solve the horizon from `slot` on, starting from `placement` as it runs in `slot`.

    Returns the remaining scenario (its slot 0 is `slot` of the original) and its plan.
    """
    current, running, progress = RunState.replay(scenario, placement, slot).situation(now=placement.column(slot))
    rest = compile_spec(remaining(scenario.spec, slot, current, running, progress), f"{scenario.source}@slot{slot}")
    return rest, solve(rest, options)
