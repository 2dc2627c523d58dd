"""What a figure is: the accounting bases edgeplace reports on, in words.

Every figure says which carbon it counts. Two questions, each with two answers:

Operational carbon, by the GHG Protocol's Scope 2 methods (`carbon_basis`):
- ``location``: grid energy x the region's grid intensity (the default, and
  what the optimizer minimises unless told otherwise);
- ``market``: after the site's contractual instruments (hourly matched
  contracted supply, then certificates / green tariff), the rest at the
  region's residual mix (or the grid intensity where none is given).

Embodied carbon (`EMBODIED_BASES`):
- ``fleet`` (decisions and totals): every owned node's embodied carbon,
  amortised over its lifetime, whether the node is on or off; a node rented
  by the hour (`owned: false`) only while powered. Sleeping changes
  operational emissions only; adding or removing nodes changes this.
- ``sci`` (per-tenant and per-workload figures): the GSF SCI attribution
  M = TE x TiR/EL x RR/ToR, the share of a node's capacity each replica
  reserved for the slot. A sleeping node is reserved by no one: its share,
  like powered capacity no replica requested, goes to ``(unallocated)``, so
  the rows add up to the fleet total.

The numbers themselves come from `edgeplace.policies.evaluate`; this module
only names them.
"""

from __future__ import annotations

from edgeplace.topology.scenario import Scenario

CARBON_BASIS_TEXT = {
    "location": "location-based (grid energy x the region's grid intensity)",
    "market": "market-based (after contracts: hourly matched supply, then certificates; the rest at the "
              "residual mix)",
}
EMBODIED_BASES = {
    "fleet": "fleet: every owned node's embodied carbon amortised over its lifetime, on or off "
             "(rented nodes only while powered)",
    "sci": "SCI attribution M = TE x TiR/EL x RR/ToR by reserved CPU share; sleeping nodes and unrequested "
           "capacity go to (unallocated)",
}


def factor_text(scenario: Scenario) -> str:
    """The emission factors of the scenario's grid intensity, e.g. "average, lifecycle factors"."""
    factor = scenario.factor_type or "factor type not stated"
    return f"{scenario.intensity_kind}, {factor}" + ("" if scenario.factor_type is None else " factors")


def residual_regions(scenario: Scenario) -> tuple[list[str], list[str]]:
    """Regions with sites that have, and that lack, a residual-mix factor."""
    used = sorted({int(g) for g in scenario.site_region})
    with_mix = [scenario.region_ids[g] for g in used if scenario.spec.regions[g].residual_mix is not None]
    without = [scenario.region_ids[g] for g in used if scenario.spec.regions[g].residual_mix is None]
    return with_mix, without


def has_instruments(scenario: Scenario) -> bool:
    """Whether market-based figures can differ from location-based ones at all."""
    return bool((scenario.site_renewable_share > 0).any() or (scenario.site_contracted_kw > 0).any()
                or residual_regions(scenario)[0])


def basis_line(scenario: Scenario, carbon_basis: str = "location") -> str:
    """One line naming the bases of a table: operational basis and factors, embodied basis."""
    return (f"operational: {carbon_basis}-based, {factor_text(scenario)}; embodied: fleet "
            f"(owned nodes on or off)")


def market_note(scenario: Scenario) -> str:
    """How market-based figures were made for this scenario, in one sentence."""
    with_mix, without = residual_regions(scenario)
    if not has_instruments(scenario):
        return ("market-based equals location-based here: no site has contracts and no region a residual mix "
                "(energy no instrument covers is charged at the grid intensity)")
    parts = []
    if with_mix:
        parts.append(f"residual mix for {', '.join(with_mix)}")
    if without:
        parts.append(f"no residual mix for {', '.join(without)}: uncovered energy at the location-based intensity "
                     f"(the GHG Protocol's last resort, which double counts renewables others claim)")
    return "market-based: " + "; ".join(parts)


def accounting_facts(scenario: Scenario, carbon_basis: str = "location") -> dict[str, str | None]:
    """The accounting a plan or table was made on, as plain facts (for JSON)."""
    return {
        "objective_carbon_basis": carbon_basis,
        "operational": CARBON_BASIS_TEXT[carbon_basis],
        "intensity_kind": scenario.intensity_kind,
        "factor_type": scenario.factor_type,
        "embodied_basis": "fleet",
        "embodied": EMBODIED_BASES["fleet"],
        "attribution": EMBODIED_BASES["sci"],
        "market_based": market_note(scenario),
    }


__all__ = ["CARBON_BASIS_TEXT", "EMBODIED_BASES", "accounting_facts", "basis_line", "factor_text",
           "has_instruments", "market_note", "residual_regions"]
