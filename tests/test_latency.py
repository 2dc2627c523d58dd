"""edgeplace.topology.latency: user-to-site latency over the link graph."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.builders import ScenarioBuilder
from edgeplace.topology.latency import site_graph, user_site_latency_ms
from edgeplace.topology.spec import ScenarioSpec


def spec_of(builder: ScenarioBuilder) -> ScenarioSpec:
    return ScenarioSpec.model_validate(builder.build_dict())


def chain() -> ScenarioBuilder:
    """Sites a - b - c - d in a line (2, 3, 4 ms) plus a direct a - d link of 20 ms; e is isolated."""
    b = ScenarioBuilder().slots(1).region("DE", 100)
    for s in "abcde":
        b.site(s)
    return (b.node("n1", site="a").tenant("t")
            .link("a", "b", 2).link("b", "c", 3).link("c", "d", 4).link("a", "d", 20))


def test_shortest_paths_plus_access_latency():
    # u at a (access 1): a 1, b 1+2 = 3, c 1+2+3 = 6, d 1+2+3+4 = 10 (not 1+20), e unreachable
    # v at d (access 0.5): a 0.5+9 = 9.5, b 7.5, c 4.5, d 0.5
    lat = user_site_latency_ms(spec_of(chain().user("u", site="a", access_ms=1).user("v", site="d", access_ms=0.5)))
    assert lat.shape == (2, 5)
    assert lat[0, :4].tolist() == pytest.approx([1.0, 3.0, 6.0, 10.0])
    assert lat[1, :4].tolist() == pytest.approx([9.5, 7.5, 4.5, 0.5])
    assert math.isinf(lat[0, 4]) and math.isinf(lat[1, 4])


def test_shortcut_link_wins_when_shorter():
    # With the direct a - d link at 5 ms, u at a reaches d in 1 + 5 = 6 and c in min(1+2+3, 1+5+4) = 6.
    doc = chain().user("u", site="a", access_ms=1).build_dict()
    doc["links"][3]["latency_ms"] = 5
    lat = user_site_latency_ms(ScenarioSpec.model_validate(doc))
    assert lat[0, :4].tolist() == pytest.approx([1.0, 3.0, 6.0, 6.0])


def test_parallel_links_keep_the_lowest_latency():
    b = chain().link("b", "a", 0.5).link("a", "b", 7).user("u", site="a")
    graph = site_graph(spec_of(b))
    assert graph["a"]["b"]["latency_ms"] == 0.5
    # a -> b 0.5, c 3.5, d 7.5
    assert user_site_latency_ms(spec_of(b))[0, :4].tolist() == pytest.approx([0.0, 0.5, 3.5, 7.5])


def test_links_are_undirected():
    lat = user_site_latency_ms(spec_of(chain().user("u", site="c")))
    assert lat[0, :4].tolist() == pytest.approx([5.0, 3.0, 0.0, 4.0])


def test_graph_holds_every_site_even_without_links():
    graph = site_graph(spec_of(chain()))
    assert sorted(graph.nodes) == list("abcde")
    assert graph.degree("e") == 0


def test_users_at_the_same_site_share_one_search_but_keep_their_access_latency():
    lat = user_site_latency_ms(spec_of(chain().user("u1", site="b", access_ms=1).user("u2", site="b", access_ms=4)))
    assert (lat[1, :4] - lat[0, :4]).tolist() == pytest.approx([3.0] * 4)


def test_zero_latency_links():
    b = ScenarioBuilder().slots(1).region("DE", 100).site("a").site("b").node("n1").tenant("t").link("a", "b", 0)
    assert user_site_latency_ms(spec_of(b.user("u", site="a"))).tolist() == [[0.0, 0.0]]


def test_no_users_gives_an_empty_matrix():
    lat = user_site_latency_ms(spec_of(chain()))
    assert lat.shape == (0, 5) and lat.dtype == np.float64


def test_scenario_sla_uses_the_worst_user():
    # Workload serving u (at a) and v (at d): worst latency per site is the max of the two rows.
    sc = (chain().user("u", site="a", access_ms=1).user("v", site="d", access_ms=0.5)
          .workload("w", sla_ms=10, users=["u", "v"]).build())
    # max([1, 3, 6, 10, inf], [9.5, 7.5, 4.5, 0.5, inf]) = [9.5, 7.5, 6, 10, inf]
    assert sc.workload_site_latency_ms[0].tolist() == pytest.approx([9.5, 7.5, 6.0, 10.0, math.inf])
