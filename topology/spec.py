"""The scenario file format: what a user writes, as typed models.

These pydantic models are the single source of the scenario format. The JSON
Schema that `edgeplace schema` prints is generated from them, and
`edgeplace.topology.load` turns a validated `ScenarioSpec` into the array form the rest
of the product works on (`edgeplace.topology.scenario.Scenario`).

Field checks that need only one value live here (ranges, enums); checks that
need the whole file (unknown references, duplicate ids, reachability, SLAs no
node can meet) live in `edgeplace.topology.load`.

Units are in the field names: `_ms`, `_w`, `_kw`, `_kwh`, `_kwp`, `_kg`,
`_millicores`, `_mib`. Times are ISO 8601 with a UTC offset.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edgeplace.topology.scheduling_spec import PODS_RESOURCE, Namespace, Scheduling, Taint

SCENARIO_VERSION = 1

#: Embodied carbon of a generic rack server [kgCO2e] (Boavizta-style figure,
#: shared/REFERENCE.md "Embodied carbon").
DEFAULT_EMBODIED_KG = 3700.0
#: Amortisation lifetime of a server [years] (shared/REFERENCE.md).
DEFAULT_LIFETIME_YEARS = 4.0
#: PUE when a site gives none: typical enterprise / colocation 1.5-1.6
#: (shared/REFERENCE.md "Power of compute nodes").
DEFAULT_PUE = 1.6
#: Largest resource amount (capacity, request, quota): exact as a float64, in
#: which the evaluation sums, and far above any real node; larger values
#: would overflow the int64 arrays of a compiled scenario.
MAX_COUNT = 2**53
#: Largest power of one node [W]: 1 GW is above any data centre's whole IT
#: load, so a larger value is a unit mistake; the bound also keeps every
#: energy sum finite.
MAX_POWER_W = 1e9


class _Model(BaseModel):
    """Strict base: unknown keys are errors (a typo must not be ignored), and
    numbers must be finite (an infinite battery or a NaN power curve would
    poison every sum downstream)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Tier(str, Enum):
    """Where a site sits in the cloud-edge continuum, nearest the user first."""

    device = "device"
    on_prem = "on-prem"
    access = "access"
    aggregation = "aggregation"
    metro = "metro"
    regional = "regional"
    cloud = "cloud"


class Horizon(_Model):
    """The planning horizon: `slots` half-open intervals of `slot_minutes` from `start`."""

    start: AwareDatetime = Field(description="Start of the first slot, ISO 8601 with UTC offset.")
    slots: int = Field(24, gt=0, le=100_000, description="Number of slots in the horizon.")
    slot_minutes: int = Field(60, gt=0, le=1440, description="Length of one slot [min].")

    @model_validator(mode="after")
    def _representable(self) -> "Horizon":
        try:
            self.start + timedelta(minutes=self.slots * self.slot_minutes)
        except OverflowError:
            raise ValueError("the horizon ends after the year 9999; move start earlier") from None
        return self


class Location(_Model):
    lat: float = Field(ge=-90, le=90, description="Latitude [deg].")
    lon: float = Field(ge=-180, le=180, description="Longitude [deg].")


class Embodied(_Model):
    """Embodied carbon of one node, amortised over its lifetime (GSF SCI `M`)."""

    per_node_kg: float = Field(DEFAULT_EMBODIED_KG, ge=0, le=1e9, description="Embodied carbon of one node [kgCO2e].")
    lifetime_years: float = Field(DEFAULT_LIFETIME_YEARS, ge=0.01,
                                  description="Amortisation lifetime [years]; under 0.01 (4 days) is a unit mistake.")


FactorType = Literal["direct", "lifecycle"]


class ResidualMix(_Model):
    """The region's residual mix: the emission factor of grid electricity that no
    contractual instrument claims (AIB publishes one per European country and
    year). Market-based figures charge energy no instrument covers at it."""

    g_per_kwh: float = Field(ge=0, le=2000, description="Residual-mix emission factor [gCO2e/kWh].")
    factor_type: FactorType = Field(description="direct (combustion only) or lifecycle; must match the "
                                                "region's grid_intensity signals.")
    source: str = Field(min_length=1, description="Where the figure comes from (publisher, edition, year).")


class Contracts(_Model):
    """A site's contractual instruments for market-based Scope 2 accounting (GHG
    Protocol Scope 2 Guidance, 2015).

    Hourly matched supply (a PPA's delivery profile) is a `contracted_supply`
    signal of the site; it covers the site's grid energy hour by hour. The
    `renewable_share` (unbundled certificates such as GoOs or RECs, or a green
    tariff) covers that share of the grid energy left after hourly matching,
    volume-matched over the reporting period, not hour by hour.
    """

    renewable_share: float = Field(0.0, ge=0, le=1, description="Share of the site's grid energy covered by "
                                                                 "certificates or a green tariff (fraction).")
    description: str = Field("", description="What the instruments are (supplier, certificate type, PPA).")


class Region(_Model):
    """A grid region: the carbon intensity of its electricity comes from signals."""

    id: str = Field(min_length=1)
    description: str = ""
    residual_mix: ResidualMix | None = Field(
        None, description="Market-based accounting: the factor for energy no contract covers; without it the "
                          "location-based intensity is used (the GHG Protocol's last resort).")


class Site(_Model):
    id: str = Field(min_length=1)
    tier: Tier
    region: str = Field(min_length=1, description="Grid region id the site draws power from.")
    location: Location | None = None
    pue: float = Field(DEFAULT_PUE, ge=1.0, le=5.0, description="Power usage effectiveness (facility / IT).")
    pv_kwp: float = Field(0.0, ge=0, description="On-site PV peak power [kWp].")
    pv_tilt_deg: float | None = Field(None, ge=0, le=90, description="PV module tilt [deg from horizontal, 0..90]; "
                                                                    "none: `signals import --pv --tilt` (default 30).")
    pv_azimuth_deg: float | None = Field(None, ge=0, le=360, description="PV module azimuth [deg from north, 180 = "
                                                                        "south, 0..360]; none: `--azimuth` (default 180).")
    battery_kwh: float = Field(0.0, ge=0, description="On-site battery capacity [kWh].")
    embodied: Embodied = Field(default_factory=Embodied, description="Default embodied carbon of this site's nodes.")
    owned: bool = Field(
        True, description="True: the operator owns the site's nodes, whose embodied carbon is spent whether they "
                          "are on or off (fleet basis). False: capacity rented by the hour (a public cloud region), "
                          "whose embodied carbon is charged per powered hour.")
    contracts: Contracts | None = Field(None, description="Scope 2 contractual instruments (market-based accounting).")


class Capacity(BaseModel):
    """Allocatable resources. CPU and memory are required; other named
    resources (gpu, nvidia.com/gpu, ...) are whole counts. `pods` is the most
    pods the node holds (Kubernetes' allocatable pods): every replica takes
    one; a node without it holds any number."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    cpu_millicores: int = Field(gt=0, le=MAX_COUNT)
    memory_mib: int = Field(gt=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _extras_are_counts(self) -> "Capacity":
        _check_extra_counts(self.model_extra)
        return self

    def as_dict(self) -> dict[str, int]:
        return {"cpu_millicores": self.cpu_millicores, "memory_mib": self.memory_mib, **(self.model_extra or {})}


class Requests(BaseModel):
    """Resources one replica requests; same names as `Capacity` (but not `pods`:
    every replica takes one pod)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    cpu_millicores: int = Field(ge=0, le=MAX_COUNT)
    memory_mib: int = Field(ge=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _extras_are_counts(self) -> "Requests":
        _check_extra_counts(self.model_extra)
        if PODS_RESOURCE in (self.model_extra or {}):
            raise ValueError(f"`{PODS_RESOURCE}` is not requested: every replica takes one pod of a node's "
                             f"capacity.{PODS_RESOURCE}; remove it")
        return self

    def as_dict(self) -> dict[str, int]:
        return {"cpu_millicores": self.cpu_millicores, "memory_mib": self.memory_mib, **(self.model_extra or {})}


def _check_extra_counts(extra: dict | None) -> None:
    for name, value in (extra or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise ValueError(f"resource {name!r} must be a whole number >= 0 (got {value!r})")


class PowerModel(_Model):
    """Electrical power of a node against CPU utilisation.

    Either the linear model P(u) = idle_w + (max_w - idle_w) * u, or a
    SPECpower-style curve `points_w` measured at 0, 10, ..., 100 % load,
    interpolated linearly (shared/REFERENCE.md "Power of compute nodes").
    """

    idle_w: float | None = Field(None, ge=0, le=MAX_POWER_W, description="Power at 0 % load [W].")
    max_w: float | None = Field(None, gt=0, le=MAX_POWER_W, description="Power at 100 % load [W].")
    points_w: list[Annotated[float, Field(le=MAX_POWER_W)]] | None = Field(
        None, description="Power at 0, 10, ..., 100 % load [W]: 11 non-decreasing values."
    )

    @model_validator(mode="after")
    def _one_form(self) -> "PowerModel":
        linear = self.idle_w is not None or self.max_w is not None
        if linear and self.points_w is not None:
            raise ValueError("give either idle_w and max_w, or points_w, not both")
        if self.points_w is not None:
            pts = self.points_w
            if len(pts) != 11:
                raise ValueError(f"points_w needs 11 values (0, 10, ..., 100 % load), got {len(pts)}")
            if any(p < 0 for p in pts) or any(b < a for a, b in zip(pts, pts[1:])):
                raise ValueError("points_w must be >= 0 and non-decreasing with load")
            return self
        if self.idle_w is None or self.max_w is None:
            raise ValueError("give both idle_w and max_w (or points_w)")
        if self.max_w < self.idle_w:
            raise ValueError(f"max_w ({self.max_w}) must be >= idle_w ({self.idle_w})")
        return self

    def curve_w(self) -> list[float]:
        """The model as 11 points at 0, 10, ..., 100 % load [W]."""
        if self.points_w is not None:
            return list(self.points_w)
        assert self.idle_w is not None and self.max_w is not None  # ensured by _one_form
        return [self.idle_w + (self.max_w - self.idle_w) * i / 10 for i in range(11)]


class Node(_Model):
    id: str = Field(min_length=1)
    site: str = Field(min_length=1)
    capacity: Capacity
    power: PowerModel
    can_power_down: bool = Field(True, description="False marks the node always-on: it draws idle power at least.")
    background_utilisation: float = Field(
        0.0, ge=0, le=1, description="CPU utilisation from outside the scenario (fraction); a signal may vary it per slot."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Instance class and other labels for node selectors.")
    dedicated_to: str | None = Field(None, description="Tenant id owning this node; None means shared.")
    embodied: Embodied | None = Field(None, description="Overrides the site's embodied carbon for this node.")
    taints: list[Taint] = Field(default_factory=list, description="Kubernetes taints; pods need tolerations for "
                                                                  "NoSchedule and NoExecute ones.")


class Link(_Model):
    a: str = Field(min_length=1, description="Site id at one end.")
    b: str = Field(min_length=1, description="Site id at the other end.")
    latency_ms: float = Field(ge=0, description="One-way latency [ms].")
    bandwidth_mbps: float | None = Field(None, gt=0, description="Capacity [Mbit/s] (informational).")


class UserLocation(_Model):
    """A demand source: users reaching the network at `site`."""

    id: str = Field(min_length=1)
    site: str = Field(min_length=1)
    access_latency_ms: float = Field(0.0, ge=0, description="Latency from the users to their site [ms].")


class Isolation(_Model):
    dedicated_nodes: bool = Field(False, description="The tenant runs only on nodes dedicated_to it.")
    never_with: list[str] = Field(default_factory=list, description="Tenants never co-located on a node with this one.")


class Tenant(_Model):
    id: str = Field(min_length=1)
    quota: dict[str, Annotated[int, Field(le=MAX_COUNT)]] = Field(default_factory=dict, description="Upper bound on summed requests per resource.")
    isolation: Isolation = Field(default_factory=Isolation)


class Sla(_Model):
    """Every replica must be within `latency_ms` of every user location it serves."""

    latency_ms: float = Field(gt=0, description="One-way latency bound [ms].")
    users: list[str] = Field(min_length=1, description="User location ids served.")


class Spread(_Model):
    min_sites: int = Field(ge=1, le=10_000, description="Replicas run on at least this many distinct sites.")


class Deferral(_Model):
    """A deferrable job: it runs `duration_minutes`, starting no earlier than
    `earliest_start` and ending by `deadline`; in one block, or, when
    `interruptible` (checkpointed work), in runs that may pause and resume at
    slot boundaries, each at least `min_run_minutes` long."""

    earliest_start: AwareDatetime
    deadline: AwareDatetime
    duration_minutes: int = Field(gt=0, le=100_000 * 1440, description="Run time [min]; at most the longest horizon.")
    interruptible: bool = Field(False, description="May pause and resume at slot boundaries (all replicas together, "
                                                   "on the same nodes).")
    min_run_minutes: int | None = Field(None, gt=0, le=100_000 * 1440,
                                        description="Interruptible: each run lasts at least this long [min] "
                                                    "(default: one slot).")
    nominal_start: AwareDatetime | None = Field(
        None, description="When the job would run without time-shifting (its submission or cron time); the "
                          "no-shift baseline runs it then (default: earliest_start).")
    current_run_minutes: int = Field(0, ge=0, le=100_000 * 1440,
                                     description="Interruptible, running now: minutes of its current run done so "
                                                 "far (set by rolling re-plans; the run goes on until it is "
                                                 "min_run_minutes long).")


class WorkloadKind(str, Enum):
    service = "service"
    batch = "batch"


class Workload(_Model):
    id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    kind: WorkloadKind = WorkloadKind.service
    replicas: int = Field(1, ge=1, le=10_000)
    requests: Requests
    cpu_usage_fraction: float = Field(
        1.0, ge=0, le=1, description="Share of the CPU request actually used on average; drives dynamic power."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels a node must carry.")
    sla: Sla | None = None
    spread: Spread | None = None
    deferral: Deferral | None = None
    current: list[str] | None = Field(None, description="Node id of each replica now (the current placement).")
    scheduling: Scheduling | None = Field(None, description="Kubernetes scheduling constraints of the pods "
                                                            "(affinity, tolerations, topology spread).")


class SignalKind(str, Enum):
    grid_intensity = "grid_intensity"
    renewable_supply = "renewable_supply"
    background_utilisation = "background_utilisation"
    contracted_supply = "contracted_supply"


class FactorConversion(_Model):
    """Turn a grid-intensity series of one factor type into another by a stated
    multiplier: values x multiplier, now of type `to` (e.g. direct -> lifecycle
    with a country's lifecycle / direct ratio from a published source)."""

    to: FactorType = Field(description="The factor type after conversion.")
    multiplier: float = Field(gt=0, le=10, description="converted = value x multiplier.")
    source: str = Field(min_length=3, description="Where the multiplier comes from (publisher, table, year).")


class Signal(_Model):
    """One time series, one value per slot, for one region, site or node."""

    signal: SignalKind
    region: str | None = None
    site: str | None = None
    node: str | None = None
    unit: str = Field(description="gCO2/kWh for grid_intensity, kW for renewable_supply and contracted_supply, "
                                  "fraction for utilisation.")
    values: list[float]
    intensity_kind: Literal["average", "marginal"] = Field(
        "average", description="Grid intensity only: location-based average or marginal emission factor."
    )
    factor_type: FactorType | None = Field(
        None, description="Grid intensity only: direct (combustion, as the GB carbon intensity API and WattTime "
                          "publish) or lifecycle (with upstream and construction, the Electricity Maps default); "
                          "null = not stated. One type for the whole scenario.")
    conversion: FactorConversion | None = Field(
        None, description="Grid intensity only: convert these values to another factor type with a stated, "
                          "sourced multiplier.")
    series: Literal["actual", "forecast"] = Field(
        "actual", description="actual: what happens (evaluation uses it); forecast: what planning sees "
                              "(defaults to the actual series when absent)."
    )


class ScenarioSpec(_Model):
    """A cloud-edge scenario, as written in a scenario file."""

    version: int = Field(description=f"Format version; this release reads {SCENARIO_VERSION}.")
    name: str = Field(min_length=1)
    description: str = ""
    horizon: Horizon
    regions: list[Region] = Field(min_length=1)
    sites: list[Site] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    users: list[UserLocation] = Field(default_factory=list)
    tenants: list[Tenant] = Field(min_length=1)
    workloads: list[Workload] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    namespaces: list[Namespace] = Field(default_factory=list, description="Namespace labels, for pod affinity "
                                                                          "namespace selectors.")


def schema_dict() -> dict:
    """The published JSON Schema of the scenario format."""
    schema = ScenarioSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://edgeplace.dev/schema/scenario-v{SCENARIO_VERSION}.json"
    return schema


__all__ = [
    "SCENARIO_VERSION",
    "Capacity",
    "Deferral",
    "Contracts",
    "Embodied",
    "FactorConversion",
    "FactorType",
    "Horizon",
    "Isolation",
    "Link",
    "Location",
    "Node",
    "PowerModel",
    "Region",
    "Requests",
    "ResidualMix",
    "ScenarioSpec",
    "Signal",
    "SignalKind",
    "Site",
    "Sla",
    "Spread",
    "Tenant",
    "Tier",
    "UserLocation",
    "Workload",
    "WorkloadKind",
    "schema_dict",
]
