"""The cost model: a scenario and objective weights, priced as plain arrays.

Policies price, the optimizer only minimises (Firmament's cost-model split):
every solver reads a `CostModel` and nothing else of the power and carbon
model, so a new pricing rule changes this module and no solver.

Prices are in gCO2e. The objective a solver minimises is

    sum_s,t intensity[s,t] x grid_kwh[s,t]                   operational (Scope 2 basis below)
  + sum_n,t on[n,t] x embodied_g_per_slot[n]                  embodied of rented nodes
  + energy_weight_g_per_kwh x sum facility energy              optional secondary
  + latency_weight_g_per_ms x sum replicas x latency [ms]      optional secondary
  + migration_g_per_replica x replicas moved off `current`     optional

with grid_kwh[s,t] = max(0, site facility energy - carbon-free supply[s,t])
(batteries only lower it) and facility energy = PUE x h / 1000 x node IT power,
node IT power = the convex hull of its power curve at the node's utilisation.

The Scope 2 basis is the user's choice (`Objective.carbon_basis`):
- location (default): supply = on-site renewables, intensity = the region's grid intensity;
- market: supply = on-site renewables + hourly contracted supply (PPA), intensity =
  the region's residual mix (or grid intensity) x (1 - the site's certificate share).

Embodied carbon is priced on the fleet basis: an owned node's embodied carbon
is spent whether it is on or off, a constant no placement changes, so it is
not priced at all (it must not drive decisions); a node rented by the hour
(`owned: false`) costs its amortised embodied carbon per powered slot.

The first two terms are exactly what `Evaluation.decision_g` reports for a
placement (up to the convex hull and battery dispatch, which make the model a
relaxation: its optimum never exceeds the evaluated figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeplace.policies.evaluate import CARBON_BASES
from edgeplace.topology.scenario import CPU, Scenario


@dataclass(frozen=True)
class Objective:
    """Weights of the secondary terms; all default to off (pure gCO2e)."""

    energy_weight_g_per_kwh: float = 0.0
    latency_weight_g_per_ms: float = 0.0
    migration_g_per_replica: float = 0.0
    #: GHG Protocol Scope 2 basis of the operational term: "location" or "market".
    carbon_basis: str = "location"

    def __post_init__(self) -> None:
        if self.carbon_basis not in CARBON_BASES:
            raise ValueError(f"carbon_basis must be one of {', '.join(CARBON_BASES)} (got {self.carbon_basis!r})")
        for name in ("energy_weight_g_per_kwh", "latency_weight_g_per_ms", "migration_g_per_replica"):
            if getattr(self, name) < 0 or not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number >= 0 (got {getattr(self, name)})")

    @property
    def carbon_only(self) -> bool:
        return self.energy_weight_g_per_kwh == 0 and self.latency_weight_g_per_ms == 0 and self.migration_g_per_replica == 0


def convex_segments_w(curve_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lines whose maximum is the lower convex hull of each power curve.

    Parameters
    ----------
    curve_w : (N, 11) power at 0, 10, ..., 100 % load [W]

    Returns
    -------
    intercept_w, slope_w : (N, 10) each; P_hull(u) = max_k intercept + slope x u.
    Padding lines repeat a real one, so every node has 10.

    Notes
    -----
    A linear curve gives one distinct line, P_idle + (P_max - P_idle) u. A
    concave stretch of a SPECpower curve is bridged by its chord, so the hull
    never exceeds the curve: the model under-estimates power there, which keeps
    the optimum a lower bound of the evaluated figure.
    """
    n = curve_w.shape[0]
    u = np.linspace(0.0, 1.0, 11)
    intercept = np.zeros((n, 10))
    slope = np.zeros((n, 10))
    for i in range(n):
        hull = [0]  # lower convex hull (monotone chain) of the 11 points
        for j in range(1, 11):
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                cross = (u[b] - u[a]) * (curve_w[i, j] - curve_w[i, a]) - (curve_w[i, b] - curve_w[i, a]) * (u[j] - u[a])
                if cross <= 1e-12:
                    hull.pop()
                else:
                    break
            hull.append(j)
        lines = []
        for a, b in zip(hull, hull[1:]):
            s = (curve_w[i, b] - curve_w[i, a]) / (u[b] - u[a])
            lines.append((curve_w[i, a] - s * u[a], s))
        lines += [lines[-1]] * (10 - len(lines))
        intercept[i], slope[i] = np.array(lines).T
    return intercept, slope


@dataclass(frozen=True, eq=False)
class CostModel:
    """Everything a solver needs, as arrays (N nodes, S sites, W workloads, T slots).

    kwh_per_w_slot[n]: facility energy of 1 W of IT power for one slot
    (PUE x slot hours / 1000) [kWh/W]. Node power lines are in W against
    CPU utilisation [0..1]; `workload_node_util` is what one replica adds.
    """

    scenario: Scenario
    objective: Objective
    eligible: np.ndarray  # W x N bool
    workload_node_util: np.ndarray  # W x N, utilisation one replica adds on the node
    power_intercept_w: np.ndarray  # N x L
    power_slope_w: np.ndarray  # N x L (per unit utilisation)
    kwh_per_w_slot: np.ndarray  # N
    site_supply_kwh: np.ndarray  # S x T, carbon-free supply on the objective's basis
    site_intensity_g_per_kwh: np.ndarray  # S x T, of the energy beyond it
    embodied_g_per_slot: np.ndarray  # N, per powered slot: 0 for owned nodes (fleet basis)
    current_count: dict[int, np.ndarray] = field(default_factory=dict)  # w -> N replica counts now

    def node_usage_max(self) -> np.ndarray:
        """N: the largest CPU usage fraction among a node's eligible workloads, the most
        utilisation they can add to it (capacity caps their requests)."""
        sc = self.scenario
        return np.max(np.where(self.eligible, sc.workload_cpu_usage[:, None], 0.0), axis=0, initial=0.0)

    def relaxed_background_util(self) -> np.ndarray:
        """N x T background utilisation for models that must stay lower bounds.

        Evaluation clips a node's utilisation at 1; a linear model cannot. Where
        background plus the most its workloads can add (their largest CPU usage
        fraction, as capacity caps requests) could pass 1, the background is
        lowered to 1 - that most, so the modelled utilisation never exceeds the
        clipped one (and the power, a non-decreasing hull, never exceeds the
        evaluated power). Elsewhere it is the scenario's background."""
        return np.minimum(self.scenario.node_background_util, np.maximum(1.0 - self.node_usage_max(), 0.0)[:, None])

    @property
    def node_intensity_g_per_kwh(self) -> np.ndarray:
        """N x T intensity of the grid each node draws from."""
        return self.site_intensity_g_per_kwh[self.scenario.node_site]

    def node_power_w(self, utilisation: np.ndarray) -> np.ndarray:
        """N x T modelled IT power [W] at a utilisation (the convex hull of the curve)."""
        return (self.power_intercept_w[:, None, :] + self.power_slope_w[:, None, :] * utilisation[:, :, None]).max(axis=2)

    def open_g(self, background_util: np.ndarray | None = None) -> np.ndarray:
        """N x T: gCO2e of keeping a node on for a slot with only its background
        load (default the scenario's), at grid intensity (before on-site
        renewables), plus its embodied share."""
        base_w = self.node_power_w(self.scenario.node_background_util if background_util is None else background_util)
        return base_w * self.kwh_per_w_slot[:, None] * self.node_intensity_g_per_kwh + self.embodied_g_per_slot[:, None]


def embodied_g_per_powered_h(scenario: Scenario) -> np.ndarray:
    """N: embodied carbon a node costs per powered hour on the fleet basis [gCO2e/h]:
    its amortised rate if rented by the hour, 0 if owned (spent on or off)."""
    return np.where(scenario.node_owned, 0.0, scenario.node_embodied_g_per_h)


def supply_and_intensity(scenario: Scenario, basis: str) -> tuple[np.ndarray, np.ndarray]:
    """S x T carbon-free supply [kW] and the intensity of grid energy beyond it
    [gCO2e/kWh] as planning sees them (forecast series), on a Scope 2 basis."""
    sc = scenario
    if basis == "location":
        return sc.site_renewable_forecast_kw, sc.region_intensity_forecast_g_per_kwh[sc.site_region]
    residual = np.where(np.isnan(sc.region_residual_g_per_kwh)[:, None], sc.region_intensity_forecast_g_per_kwh,
                        np.nan_to_num(sc.region_residual_g_per_kwh)[:, None])
    uncovered = 1.0 - sc.site_renewable_share[:, None]
    return sc.site_renewable_forecast_kw + sc.site_contracted_forecast_kw, residual[sc.site_region] * uncovered


def price(scenario: Scenario, objective: Objective | None = None) -> CostModel:
    """Price a scenario: the arrays every solver minimises over."""
    sc = scenario
    objective = objective or Objective()
    supply_kw, intensity = supply_and_intensity(sc, objective.carbon_basis)
    intercept, slope = convex_segments_w(sc.node_power_curve_w)
    util = (sc.workload_requests[:, CPU] * sc.workload_cpu_usage)[:, None] / sc.node_capacity[None, :, CPU]
    current: dict[int, np.ndarray] = {}
    for w, nodes in enumerate(sc.workload_current):
        if nodes and all(n >= 0 for n in nodes):
            current[w] = np.bincount(np.asarray(nodes), minlength=sc.n_nodes)
    return CostModel(
        scenario=sc,
        objective=objective,
        eligible=sc.workload_node_eligible,
        workload_node_util=util,
        power_intercept_w=intercept,
        power_slope_w=slope,
        kwh_per_w_slot=sc.node_pue * sc.slot_hours / 1000.0,
        # Planning prices what it can know: the forecast series (equal to the actual ones when none given).
        site_supply_kwh=supply_kw * sc.slot_hours,
        site_intensity_g_per_kwh=intensity,
        embodied_g_per_slot=embodied_g_per_powered_h(sc) * sc.slot_hours,
        current_count=current,
    )
