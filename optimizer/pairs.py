"""Which workload-node pairs a restricted model keeps (`build(costs, columns=...)`).

A large model is solved over a few pairs per workload (`edgeplace.optimizer.solve`,
`edgeplace.optimizer.lns`): the pairs a relaxation and the incumbent use, plus some
cheap alternatives. Everything here is a W x N bool mask or a W x N price.
"""

from __future__ import annotations

import numpy as np

from edgeplace.policies.costs import CostModel
from edgeplace.topology.placement import Placement
from edgeplace.topology.scenario import CPU

#: Besides the pairs of the guides, each workload gets its cheapest few nodes
#: among the nodes the guides use: room to pack an integer plan.
EXTRA_PAIRS_PER_WORKLOAD = 2


def placement_pairs(costs: CostModel, placement: Placement) -> np.ndarray:
    """The workload-node pairs a placement uses (any slot)."""
    sc = costs.scenario
    pairs = np.zeros((sc.n_workloads, sc.n_nodes), dtype=bool)
    c = placement.cells()
    pairs[sc.replica_workload[c.replica], c.node] = True
    return pairs & costs.eligible


def static_pair_cost_g(costs: CostModel) -> np.ndarray:
    """A placement-independent estimate of what one replica costs on a node over
    the horizon (its dynamic power at the node's first hull slope plus its CPU
    share of the node's fixed cost); inf where not eligible. Only ranks pairs."""
    sc = costs.scenario
    fixed_per_mc = costs.open_g().sum(axis=1) / sc.node_capacity[:, CPU]
    dyn_per_util = dynamic_g_per_util(costs).sum(axis=1)
    cost = costs.workload_node_util * dyn_per_util[None, :] + sc.workload_requests[:, CPU:CPU + 1] * fixed_per_mc[None, :]
    return np.where(costs.eligible, cost, np.inf)


def dynamic_g_per_util(costs: CostModel) -> np.ndarray:
    """N x T: the dynamic carbon of a unit of CPU utilisation on a node in a slot at its power
    line's smallest slope (the convex hull's first segment), at grid intensity [gCO2e]."""
    slope_w = costs.power_slope_w.min(axis=1)
    return slope_w[:, None] * costs.kwh_per_w_slot[:, None] * costs.node_intensity_g_per_kwh


def restricted_pairs(costs: CostModel, guides: list[np.ndarray]) -> np.ndarray:
    """The pairs of every guide (e.g. the flow relaxation's support, the greedy
    plan's) plus each workload's EXTRA_PAIRS_PER_WORKLOAD cheapest eligible nodes
    (by `static_pair_cost_g`) among the nodes the guides use.

    Measured at 1,000 x 100 x 1 (HiGHS, 30 s): the guides' pairs alone (1,300 +
    greedy's) gave 7.26 kg; with 2 extra per workload (3,800 pairs) 7.03 kg; with
    5 (6,300) 7.22 kg, too many to search in the time; greedy 7.39 kg.
    """
    pool = np.logical_or.reduce(guides)
    nodes = pool.any(axis=0)
    static = np.where(nodes[None, :], static_pair_cost_g(costs), np.inf)
    return pool | smallest_per_row(static, EXTRA_PAIRS_PER_WORKLOAD)


def smallest_per_row(values: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of the (up to) k smallest finite entries of each row."""
    mask = np.zeros(values.shape, dtype=bool)
    if values.shape[1] == 0 or k <= 0:
        return mask
    k = min(k, values.shape[1])
    idx = np.argpartition(values, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(values.shape[0]), k)
    cols = idx.ravel()
    keep = np.isfinite(values[rows, cols])
    mask[rows[keep], cols[keep]] = True
    return mask
