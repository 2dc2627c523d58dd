"""edgeplace.optimizer.readback: model values -> placement, and placement -> solver hint.

Values are written by hand into a vector over the model's columns: only y
(service counts), b (job starts) and x (job counts) matter to the readback.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.readback import hint_from_placement, placement_from_values
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder, nodes_of
from edgeplace.topology.generate import generate_scenario


def scenario(current: list[str] | None = None, replicas: int = 3):
    b = (ScenarioBuilder().slots(3).region("DE", 400).site("a", pue=1.0).node("n1").node("n2").node("n3")
         .user("u", site="a").tenant("t1")
         .workload("web", replicas=replicas, sla_ms=5, users=["u"], **({"current": current} if current else {}))
         .workload("job", cpu=2000, replicas=2, window=(0, 3), duration_minutes=60))
    return b.build()


def values_for(form, sc, services: dict[tuple[str, str], int], job: tuple[int, dict[str, int]] | None = None):
    """A value vector: y[(workload, node)] = count; job = (start slot, {node: count})."""
    values = np.zeros(form.model.n_vars)
    for i, (w, n) in enumerate(zip(form.service_w, form.service_n)):
        values[form.y[i]] = services.get((sc.workload_ids[w], sc.node_ids[n]), 0)
    if job is not None:
        start, counts = job
        for i, (j, s) in enumerate(zip(form.start_j, form.start_s)):
            values[form.b[i]] = float(s == start)
        for i, (j, n, s) in enumerate(zip(form.job_j, form.job_n, form.job_s)):
            values[form.x[i]] = counts.get(sc.node_ids[n], 0) if s == start else 0
    return values




# ---------------------------------------------------------------------------
# placement_from_values


@pytest.mark.parametrize("current,counts,expected", [
    # No current placement: replicas take the nodes in node order.
    (None, {"n1": 1, "n3": 2}, ["n1", "n3", "n3"]),
    # Current n3, n2, n1 and the same counts: every replica stays where it is.
    (["n3", "n2", "n1"], {"n1": 1, "n2": 1, "n3": 1}, ["n3", "n2", "n1"]),
    # Current n2, n1, n1; counts keep one on n1 and one on n2: replicas 0 and 1 stay,
    # replica 2 (current n1, which has no count left) goes to n3.
    (["n2", "n1", "n1"], {"n1": 1, "n2": 1, "n3": 1}, ["n2", "n1", "n3"]),
    # Current n1, n1, n1; all move away: the new nodes in node order.
    (["n1", "n1", "n1"], {"n2": 2, "n3": 1}, ["n2", "n2", "n3"]),
])
def test_replica_order_keeps_current_nodes(current, counts, expected):
    sc = scenario(current)
    costs = price(sc)
    form = build(costs)
    values = values_for(form, sc, {("web", n): c for n, c in counts.items()}, job=(0, {"n1": 2}))
    placement = placement_from_values(form, costs, values)
    assert nodes_of(sc, placement, "web") == expected
    w = sc.index_of("workload", "web")
    r0 = int(sc.workload_first_replica[w])
    assert (placement.assign[r0:r0 + 3] >= 0).all()  # a service runs in every slot


def test_job_start_and_nodes_are_read_back():
    sc = scenario()
    costs = price(sc)
    form = build(costs)
    values = values_for(form, sc, {("web", "n1"): 3}, job=(2, {"n2": 1, "n3": 1}))
    placement = placement_from_values(form, costs, values)
    w = sc.index_of("workload", "job")
    r0 = int(sc.workload_first_replica[w])
    names = np.array([None, *sc.node_ids], dtype=object)[placement.assign[r0:r0 + 2] + 1]
    assert names.tolist() == [[None, None, "n2"], [None, None, "n3"]]


def test_values_near_integers_are_rounded():
    # Solvers return 0.9999999 for 1: the readback rounds, it does not truncate.
    sc = scenario()
    costs = price(sc)
    form = build(costs)
    values = values_for(form, sc, {("web", "n2"): 3}, job=(1, {"n1": 2}))
    values[form.y] = np.where(values[form.y] > 0, values[form.y] - 1e-7, 1e-7)
    values[form.x] = np.where(values[form.x] > 0, values[form.x] - 1e-7, 0.0)
    placement = placement_from_values(form, costs, values)
    assert nodes_of(sc, placement, "web") == ["n2", "n2", "n2"]
    assert nodes_of(sc, placement, "job") == ["n1", "n1"]


# ---------------------------------------------------------------------------
# hint_from_placement


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hint_reproduces_the_greedy_placement(seed):
    sc = generate_scenario(20, 10, n_slots=4, seed=seed, deferrable_share=0.4)
    costs = price(sc)
    form = build(costs)
    greedy = greedy_place(costs, time_limit_s=0.2, seed=seed)
    hint = hint_from_placement(form, costs, greedy)

    # y: the greedy plan's replica count of each (service, node) pair.
    nodes = np.where(greedy.assign >= 0, greedy.assign, sc.n_nodes).min(axis=1)  # first node each replica uses
    count = {}
    for r, n in enumerate(nodes):
        if n < sc.n_nodes:
            key = (int(sc.replica_workload[r]), int(n))
            count[key] = count.get(key, 0) + 1
    for i, col in enumerate(form.y):
        assert hint[int(col)] == count.get((int(form.service_w[i]), int(form.service_n[i])), 0)
    assert sum(hint[int(c)] for c in form.y) == sum(v for (w, _), v in count.items() if not sc.workload_deferrable[w])

    # b: one start per job, greedy's.
    for j in np.flatnonzero(sc.workload_deferrable):
        row = greedy.assign[int(sc.workload_first_replica[j])]
        start = int(np.flatnonzero(row >= 0)[0])
        chosen = [int(form.start_s[i]) for i, col in enumerate(form.b)
                  if form.start_j[i] == j and hint[int(col)] == 1.0]
        assert chosen == [start]

    # o: on exactly where the greedy plan powers a node (hosting or always-on).
    powered = evaluate(sc, greedy).powered
    assert np.array_equal(np.array([hint[int(c)] for c in form.o]).reshape(sc.n_nodes, sc.n_slots), powered)

    # Read back, the hint is the greedy plan again (same counts, same starts): same emissions.
    values = np.zeros(form.model.n_vars)
    for col, v in hint.items():
        values[col] = v
    again = placement_from_values(form, costs, values)
    assert evaluate(sc, again).emissions_g == pytest.approx(evaluate(sc, greedy).emissions_g, rel=1e-12)
    assert evaluate(sc, again).violations == []


def test_hint_marks_hosting_nodes():
    sc = scenario()
    costs = price(sc)
    form = build(costs)
    # web on n1 x2 and n3; job on n2 in slot 1: n2 hosts no service.
    values = values_for(form, sc, {("web", "n1"): 2, ("web", "n3"): 1}, job=(1, {"n2": 2}))
    placement = placement_from_values(form, costs, values)
    hint = hint_from_placement(form, costs, placement)
    h = form.model.blocks["h"]
    assert [hint[h.start + n] for n in range(sc.n_nodes)] == [1.0, 0.0, 1.0]
    o = np.array([hint[int(c)] for c in form.o]).reshape(sc.n_nodes, sc.n_slots)
    assert o.tolist() == [[1, 1, 1], [0, 1, 0], [1, 1, 1]]
