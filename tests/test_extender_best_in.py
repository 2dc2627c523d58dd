"""The filter that keeps the best, answered by looking for the plan's best nodes in the request.

`DecisionTable.best_in` finds the answer of `filter(best=True)` by searching the
NodeNames array as sent (`wire.split_node_names`) for the target's best-scored
passing nodes. It must give exactly the full way's answer whenever it answers,
hand every other request to the full way, and the server must answer the same
bytes with the shortcut as without it.
"""

from __future__ import annotations

import json
import random
from itertools import combinations, permutations

import pytest

from edgeplace.k8s.extender import wire
from edgeplace.k8s.extender.server import ExtenderServer
from edgeplace.k8s.extender.table import DecisionTable, Outcome
from tests.test_extender_server import Clock, metric, plan_doc, pod, post
from tests.test_extender_table import ext_doc


def go_body(names: list, p: dict | None = None) -> bytes:
    """ExtenderArgs as kube-scheduler's Go encoder writes it: fields in order, no spaces."""
    return json.dumps({"Pod": p if p is not None else pod(), "Nodes": None, "NodeNames": names},
                      separators=(",", ":")).encode()


def full_way(table: DecisionTable, target, names: list[str]) -> bytes:
    """The answer of the full way: parse every name, decide, answer with compact replies."""
    args = wire.ExtenderArgs(None, list(dict.fromkeys(names)), None, None)
    d = table.filter(target, args.node_names, best=True)
    return wire.filter_result(args, d.codes, d.messages, table.encoded, d.columns, failures=False)


def shortcut(table: DecisionTable, target, names: list[str]) -> bytes | None:
    split = wire.split_node_names(go_body(names))
    assert split is not None
    columns = table.best_in(target, split[1])
    return None if columns is None else wire.passing_result(columns, table.encoded)


@pytest.fixture(scope="module")
def table() -> DecisionTable:
    return DecisionTable.from_document(ext_doc())


def test_whenever_it_answers_it_answers_as_the_full_way(table):
    """Every target kind, every set of candidates in every order, with unknown and repeated
    names: the shortcut's answer is byte for byte the full way's, or it declines."""
    pool = [*table.node_ids, "new-node"]
    targets = [table.target("web", None), table.target("api", None), table.target("db", None),
               table.target(None, "t1"), table.target(None, "zz"), table.target("web", "t2")]
    answered = declined = 0
    for t in targets:
        for k in range(1, len(pool) + 1):
            for cands in combinations(pool, k):
                for order in permutations(cands):
                    names = [*order, order[0]]  # kube-scheduler never repeats one, but the wire allows it
                    got = shortcut(table, t, names)
                    if got is None:
                        declined += 1
                        continue
                    answered += 1
                    assert got == full_way(table, t, names), (t.workload, t.tenant, names)
    assert answered and declined  # both paths were taken


def test_it_declines_when_no_scored_node_is_a_candidate(table):
    t = table.target("api", None)  # planned on n3; n1 never_with, n2 asleep
    assert shortcut(table, t, ["n3", "n1"]) is not None
    assert shortcut(table, t, ["n1", "n2", "new-node"]) is None  # the full way: nothing passes but the unknown node


def test_it_looks_for_at_most_best_looks_nodes():
    """A workload allowed on many equally good nodes: more than BEST_LOOKS at the top score,
    so the shortcut declines at once rather than search for each of them."""
    doc = plan_doc()
    many = {f"m{i:02d}": {"site": "a", "powered": True, "score_g": 10.0, "tenants": []}
            for i in range(DecisionTable.BEST_LOOKS + 4)}
    doc["nodes"].update(many)
    doc["workloads"]["spread"] = {"tenant": "acme", "cpu_millicores": 100, "allowed_nodes": list(many),
                                  "planned_nodes": {n: 1 for n in many}}
    table = DecisionTable.from_document(doc)
    t = table.target("spread", None)
    names = list(many)
    assert shortcut(table, t, names) is None
    d = table.filter(t, names, best=True)
    assert (d.codes == Outcome.PASS).sum() == len(many)  # the full way passes them all


def test_a_large_random_table_agrees_with_the_full_way():
    """1,000 nodes with random powers, scores and rules, and kube-scheduler-like requests:
    shuffled candidate lists of most nodes. The shortcut answers most, and always as the full way."""
    rng = random.Random(7)
    doc = plan_doc()
    nodes = {f"node-{i:04d}": {"site": rng.choice("abc"), "powered": rng.random() < 0.8,
                               "score_g": round(rng.uniform(1, 50), 1), "tenants": []} for i in range(1000)}
    doc["nodes"] = nodes
    ids = list(nodes)
    doc["workloads"] = {f"w{j}": {"tenant": "acme", "cpu_millicores": 100,
                                  "allowed_nodes": rng.sample(ids, rng.randint(1, 1000)),
                                  "planned_nodes": {n: 1 for n in rng.sample(ids, rng.randint(1, 5))}}
                        for j in range(20)}
    table = DecisionTable.from_document(doc)
    answered = 0
    for j in range(20):
        t = table.target(f"w{j}", None)
        for _ in range(10):
            names = rng.sample(ids, rng.randint(1, 1000)) + ["not-in-plan"]
            got = shortcut(table, t, names)
            if got is not None:
                answered += 1
                assert got == full_way(table, t, names)
    assert answered >= 100


@pytest.mark.parametrize("body", [
    b'{"Pod":{},"Nodes":null,"NodeNames":["a","b"]} ',  # not as Go writes it
    b'{"Pod":{},"Nodes":null,"NodeNames":["a",1,"b"]}',  # a number
    b'{"Pod":{},"Nodes":null,"NodeNames":["a","b,c"]}',  # a comma inside a name
    b'{"Pod":{},"Nodes":null,"NodeNames":["a","b\\"c"]}',  # an escape
    b'{"Pod":{},"Nodes":null,"NodeNames":["a","\xc3\xa9"]}',  # not ASCII
    b'{"Pod":{},"Nodes":null,"NodeNames":["a",null]}',
    b'{"Pod":{},"Nodes":{"items":[]},"NodeNames":["a"]}',  # both set: the full way says so
    b'{"Pod":{},"NodeNames":["x"],"Nodes":null,"NodeNames":["a"]}',  # a repeated key
    b'{"Pod":{"x":",\\"NodeNames\\":["},"Nodes":null,"NodeNames":["a"]}',  # the key inside a string: still found last
    b'{"Pod":{,"Nodes":null,"NodeNames":["a"]}',  # broken JSON before the names
])
def test_bodies_not_in_gos_exact_shape_go_the_full_way(body):
    split = wire.split_node_names(body)
    if split is not None:  # only a body whose names are exactly what json.loads reads may be split
        rest, names = split
        assert json.loads(body)["NodeNames"] == (names[1:-1].decode().split('","') if names else [])
        assert rest == {k: v for k, v in json.loads(body).items() if k != "NodeNames"}
    else:
        assert split is None


def test_gos_shape_splits_into_the_pod_and_the_names_as_sent():
    body = go_body(["n1", "n-2.zone"], pod())
    rest, names = wire.split_node_names(body)
    assert rest == {"Pod": pod(), "Nodes": None}
    assert names == b'"n1","n-2.zone"'
    assert wire.split_node_names(go_body([])) == ({"Pod": pod(), "Nodes": None}, b"")
    assert wire.split_node_names(go_body(["a", "b", "c"]), max_candidates=2) is None  # the full way answers 400


def test_the_server_answers_the_same_with_the_shortcut_and_counts_the_decision():
    table = DecisionTable.from_document(plan_doc())
    clock = Clock()
    bodies = [go_body(names, p) for names in (["n1", "n2", "n3", "n4", "n5"], ["n4", "n5"], ["n2", "n5"], ["n3"], [])
              for p in (pod(), pod("shop/cart"), pod(None, tenant="acme"), pod("nobody"))]
    with ExtenderServer(table, clock=clock, filter_keeps="best", compact_replies=True) as fast, \
            ExtenderServer(table, clock=clock, filter_keeps="best", compact_replies=True) as slow:
        slow._best_shortcut = False
        calls = []
        original = table.best_in
        table.best_in = lambda *a: calls.append(1) or original(*a)  # count the shortcut's answers
        try:
            for body in bodies:
                assert post(fast, "filter", body) == post(slow, "filter", body), body
        finally:
            del table.best_in
        assert calls  # the shortcut was tried
        before = metric(fast, "edgeplace_extender_decisions_total", verb="filter", reason="plan")
        assert post(fast, "filter", go_body(["n1", "n4"]))[1]["NodeNames"] == ["n1"]
        assert metric(fast, "edgeplace_extender_decisions_total", verb="filter", reason="plan") == before + 1
        assert post(fast, "filter", b'{"Pod":{},"Nodes":null,"NodeNames":["a",1]}') == (
            400, {"Error": "NodeNames[1]: must be a string (got number)"})


@pytest.mark.parametrize("names", [[], ["n1"], ["n1", "n2", "n1"], [f"node-{i}" for i in range(1000)]])
def test_a_go_shaped_body_parses_to_the_same_arguments_as_read_in_full(names):
    body = go_body(names)
    args = wire.parse_request("filter", body)
    assert args.node_names == list(dict.fromkeys(names))
    assert args.names_json == body[body.rindex(b"[") + 1:-2]
    spaced = json.dumps({"Pod": pod(), "Nodes": None, "NodeNames": names}).encode()  # not Go's shape: read in full
    full = wire.parse_request("filter", spaced)
    assert full.names_json is None
    assert full.pod == args.pod and full.node_names == args.node_names
