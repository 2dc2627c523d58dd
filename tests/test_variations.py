"""The `--vary` keys: parsing with fixable messages, the grid, and each spec transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeplace.variations import apply_case, case_label, grid, parse_axes, parse_vary, variation_registry
from edgeplace.optimizer.solve import SolveOptions
from tests.builders import ScenarioBuilder
from edgeplace.topology import InputError, load_scenario
from edgeplace.topology.load import compile_spec

METRO_DE = Path(__file__).resolve().parents[1] / "examples" / "metro-de.yaml"
PV = [0, 0, 0, 0, 0, 0, 1, 2, 4, 6, 8, 9, 9, 8, 6, 4, 2, 1, 0, 0, 0, 0, 0, 0]  # kW, a 10 kWp roof


@pytest.fixture(scope="module")
def metro():
    return load_scenario(METRO_DE).spec


def world() -> ScenarioBuilder:
    """Two DE sites with coordinates (PV roof at `pv`, none at `near` 10 km away),
    a third without coordinates, an FR cloud; tenants a (never with b), b, d (dedicated)."""
    return (ScenarioBuilder("vary").slots(24)
            .region("DE", 300).region("FR", 50)
            .site("pv", region="DE", pv_kwp=10, renewable=PV, location={"lat": 50.0, "lon": 8.0})
            .site("near", region="DE", location={"lat": 50.09, "lon": 8.0})
            .site("far", region="DE", location={"lat": 53.0, "lon": 8.0})
            .site("nowhere", region="DE")
            .site("cloud", tier="cloud", region="FR")
            .node("pv1", site="pv").node("near1", site="near", cpu=8000).node("near2", site="near")
            .node("far1", site="far").node("nw1", site="nowhere").node("c1", site="cloud", cpu=16000)
            .node("d1", site="near", dedicated_to="d")
            .background("near2", 0.1)
            .link("pv", "near", 1).link("near", "far", 4).link("near", "nowhere", 2).link("far", "cloud", 10)
            .user("u", site="pv", access_ms=1)
            .tenant("a", never_with=["b"]).tenant("b").tenant("d", dedicated=True)
            .workload("tight-a", tenant="a", sla_ms=5, users=["u"], replicas=2, min_sites=2)
            .workload("mid-b", tenant="b", sla_ms=12, users=["u"], current=["near1"])
            .workload("loose-b", tenant="b", sla_ms=50, users=["u"], replicas=3)
            .workload("own-d", tenant="d")
            .workload("job", tenant="b", window=(0, 24), duration_minutes=120))


def vary(spec, *texts, options=None):
    """Apply the first case of the grid of `texts` to `spec` -> (spec, options)."""
    axes = parse_axes(list(texts), spec)
    return apply_case(spec, grid(axes)[0], options or SolveOptions())


def sla(spec, wid):
    return next(w for w in spec.workloads if w.id == wid).sla.latency_ms


def supply(spec, site, series="actual"):
    sig = [s for s in spec.signals if s.signal.value == "renewable_supply" and s.site == site and s.series == series]
    return np.asarray(sig[0].values) if sig else None


# ---------------------------------------------------------------------------
# Parsing


def test_unknown_key_lists_every_valid_key():
    spec = world().build().spec
    valid_keys = r"(?s)unknown key 'sla\.scal'.*sla\.scale\[SEL\].*pv_kwp\[SITE\].*solver\.time_limit_s"
    with pytest.raises(InputError, match=valid_keys) as exc:
        parse_vary("sla.scal=1,2", spec)
    assert exc.value.source == "--vary"


@pytest.mark.parametrize("text, message", [
    ("sla.scale", r"write KEY=V1,V2"),
    ("pv_kwp=1,2", r"pv_kwp needs a target: pv_kwp\[SITE\]"),
    ("solver[x]=greedy", r"solver takes no target"),
    ("pv_kwp[mars]=1", r"unknown site 'mars' \(known: pv, near, far, nowhere, cloud\)"),
    ("pv_kwp[pv]=1,-2", r"value '-2': must be >= 0"),
    ("sla.scale=0,1", r"value '0': must be > 0"),
    ("sla.scale=1,,2", r"empty value"),
    ("sla.scale=1,1", r"listed twice"),
    ("sla.scale[nobody]=1", r"selector 'nobody' matches nothing; use an SLA class \(tight, interactive, relaxed\)"),
    ("sla.scale[20ms]=1", r"selects no workload"),
    ("isolation[a]=maybe", r"expected on or off"),
    ("solver=gurobi", r"choose one of cpsat, milp, greedy"),
    ("region[pv]=XX", r"unknown region \(known: DE, FR\)"),
    ("pue[pv]=0.9", r"a PUE is between 1 and 5"),
    ("add=/nonexistent/fragment.yaml", r"cannot read the fragment: file not found"),
])
def test_bad_vary_arguments_say_how_to_fix_them(text, message):
    with pytest.raises(InputError, match=message):
        parse_vary(text, world().build().spec)


def test_a_key_given_twice_is_refused():
    with pytest.raises(InputError, match=r"given twice"):
        parse_axes(["sla.scale=1", "sla.scale=2"], world().build().spec)


def test_grid_is_every_combination_first_axis_slowest():
    axes = parse_axes(["sla.scale=0.5,1,2", "isolation=on,off"], world().build().spec)
    cases = grid(axes)
    assert len(cases) == 3 * 2
    assert [case_label(c) for c in cases[:3]] == ["sla.scale=0.5 isolation=on", "sla.scale=0.5 isolation=off",
                                                  "sla.scale=1 isolation=on"]
    assert case_label(()) == "base"


# ---------------------------------------------------------------------------
# Transforms


def test_sla_scale_scales_every_sla_and_a_selector_only_its_workloads():
    spec = world().build().spec
    out, _ = vary(spec, "sla.scale=2")
    assert [sla(out, w) for w in ("tight-a", "mid-b", "loose-b")] == [10, 24, 100]
    out, _ = vary(spec, "sla.scale[b]=2")  # tenant b
    assert [sla(out, w) for w in ("tight-a", "mid-b", "loose-b")] == [5, 24, 100]
    out, _ = vary(spec, "sla.scale[tight]=0.8")  # class tight: <= 5 ms
    assert [sla(out, w) for w in ("tight-a", "mid-b", "loose-b")] == [4, 12, 50]
    out, _ = vary(spec, "sla.latency_ms[12ms]=7")
    assert sla(out, "mid-b") == 7


def test_selectors_refer_to_the_scenario_as_written():
    # After sla.latency_ms[tight]=30 the workload is no longer "tight"; a later
    # key with the same selector still means the same workloads.
    spec = world().build().spec
    out, _ = vary(spec, "sla.latency_ms[tight]=30", "demand.scale[tight]=2")
    wl = next(w for w in out.workloads if w.id == "tight-a")
    assert (wl.sla.latency_ms, wl.replicas) == (30, 4)


@pytest.mark.parametrize("factor, replicas, current", [
    (1.5, [3, 2, 5], None),  # 2 x 1.5 = 3; 1 x 1.5 = 1.5 -> 2 (half up); 3 x 1.5 = 4.5 -> 5
    (0.4, [1, 1, 1], ["near1"]),  # 0.8 -> 1, 0.4 -> 1 (at least 1), 1.2 -> 1; mid-b unchanged
])
def test_demand_scale_rounds_half_up_keeps_one_and_fixes_spread_and_current(factor, replicas, current):
    spec = world().build().spec
    out, _ = vary(spec, f"demand.scale={factor}")
    by_id = {w.id: w for w in out.workloads}
    assert [by_id[w].replicas for w in ("tight-a", "mid-b", "loose-b")] == replicas
    assert by_id["tight-a"].spread.min_sites <= by_id["tight-a"].replicas
    assert by_id["mid-b"].current == current  # a current placement of another replica count is void
    compile_spec(out)


def test_pv_kwp_scales_an_existing_profile():
    out, _ = vary(world().build().spec, "pv_kwp[pv]=25")
    assert np.allclose(supply(out, "pv"), np.asarray(PV) * 2.5)
    assert next(s for s in out.sites if s.id == "pv").pv_kwp == 25


def test_pv_kwp_on_a_site_with_coordinates_gets_a_pvlib_clear_sky_profile():
    pytest.importorskip("pvlib")
    from edgeplace.topology.signals.pv import clear_sky_kw
    from edgeplace.topology.signals.series import SlotGrid

    spec = world().build().spec
    out, _ = vary(spec, "pv_kwp[far]=5")
    expect = clear_sky_kw(53.0, 8.0, 5.0, SlotGrid.from_horizon(spec.horizon))
    assert np.allclose(supply(out, "far"), expect)
    # 21 June at 53 N: about 7.4 kWh/kWp on a clear day before losses (shared/REFERENCE.md), 14 % loss after
    assert 5.5 < supply(out, "far").sum() / 5 < 7.4
    assert compile_spec(out).site_renewable_kw[2].max() > 0


@pytest.fixture
def no_pvlib(monkeypatch):
    """As on an install without pvlib: sites gaining PV borrow a PV site's profile."""
    import edgeplace.variations as variations

    monkeypatch.setattr(variations, "_clear_sky_kw", lambda spec, site, kwp: None)


def test_without_pvlib_a_new_pv_site_takes_the_nearest_pv_sites_profile_per_kwp(no_pvlib):
    out, _ = vary(world().build().spec, "pv_kwp[far]=5")
    # donor: the only PV site, 10 kWp -> 0.5 x its profile
    assert np.allclose(supply(out, "far"), np.asarray(PV) * 0.5)
    sc = compile_spec(out)
    assert sc.site_renewable_kw[sc.index_of("site", "far")].max() == pytest.approx(4.5)


def test_pv_nearest_donor_by_distance_and_same_region_without_coordinates(no_pvlib):
    spec = (world().site("pv2", region="DE", pv_kwp=20, renewable=[2 * v for v in PV[::-1]],
                         location={"lat": 53.05, "lon": 8.0})).build().spec
    near, _ = vary(spec, "pv_kwp[near]=10")  # 10 km from pv, 330 km from pv2
    far, _ = vary(spec, "pv_kwp[far]=10")  # 6 km from pv2
    assert np.allclose(supply(near, "near"), PV)
    assert np.allclose(supply(far, "far"), PV[::-1])


def test_a_site_without_coordinates_takes_the_first_pv_site_of_its_region():
    spec = (world().site("pv-fr", region="FR", pv_kwp=1, renewable=[3.0] * 24)).build().spec
    out, _ = vary(spec, "pv_kwp[nowhere]=10")  # DE, no location: the DE PV site, not the FR one
    assert np.allclose(supply(out, "nowhere"), PV)


def test_pv_adds_to_existing_non_pv_supply_and_to_forecast_series(no_pvlib):
    spec = (world().signal("renewable_supply", 1.0, unit="kW", site="far")  # e.g. a small wind turbine
            .signal("renewable_supply", [v * 0.5 for v in PV], unit="kW", site="pv", series="forecast")).build().spec
    out, _ = vary(spec, "pv_kwp[far]=10")
    assert np.allclose(supply(out, "far"), np.asarray(PV) + 1.0)
    assert np.allclose(supply(out, "far", "forecast"), np.asarray(PV) * 0.5 + 1.0)


def test_pv_without_any_pv_site_is_an_input_error():
    spec = (ScenarioBuilder().region("DE", 300).site("s").node("n").tenant("t").workload("w")).build().spec
    with pytest.raises(InputError, match=r"no site in the scenario has PV"):
        vary(spec, "pv_kwp[s]=10")


def test_battery_pue_region_and_intensity():
    spec = world().signal("grid_intensity", 100, unit="gCO2/kWh", region="DE", series="forecast").build().spec
    out, _ = vary(spec, "battery_kwh[*]=5", "pue[near]=1.2", "region[far]=FR", "intensity.scale[DE]=0.5")
    sites = {s.id: s for s in out.sites}
    assert all(s.battery_kwh == 5 for s in out.sites)
    assert sites["near"].pue == 1.2 and sites["pv"].pue == 1.6
    assert sites["far"].region == "FR"
    sc = compile_spec(out)
    de, fr = sc.index_of("region", "DE"), sc.index_of("region", "FR")
    assert sc.region_intensity_g_per_kwh[de, 0] == 150 and sc.region_intensity_forecast_g_per_kwh[de, 0] == 50
    assert sc.region_intensity_g_per_kwh[fr, 0] == 50


def test_site_off_removes_its_nodes_signals_and_current_placements():
    out, _ = vary(world().build().spec, "site[near]=off")
    assert {n.id for n in out.nodes} == {"pv1", "far1", "nw1", "c1"}
    assert not any(s.node == "near2" for s in out.signals)
    assert next(w for w in out.workloads if w.id == "mid-b").current is None
    assert any(lk.a == "near" or lk.b == "near" for lk in out.links)  # the network point stays
    # d's dedicated pool was there: the varied scenario says so
    with pytest.raises(InputError, match=r"tenant 'd' must run on dedicated nodes but no node"):
        compile_spec(out)


def test_nodes_count_adds_copies_and_removes_the_last():
    spec = world().build().spec
    more, _ = vary(spec, "nodes[far]=3")
    added = [n for n in more.nodes if n.site == "far"]
    assert [n.id for n in added] == ["far1", "far-added-1", "far-added-2"]
    assert added[1].capacity == added[0].capacity and added[1].power == added[0].power
    fewer, _ = vary(spec, "nodes[near]=1")
    assert [n.id for n in fewer.nodes if n.site == "near"] == ["near1"]
    assert not any(s.node == "near2" for s in fewer.signals)
    with pytest.raises(InputError, match=r"has no node to copy"):
        vary(world().site("empty", region="DE").build().spec, "nodes[empty]=1")


def test_isolation_off_drops_pools_and_never_with():
    spec = world().build().spec
    out, _ = vary(spec, "isolation=off")
    assert all(not t.isolation.dedicated_nodes and not t.isolation.never_with for t in out.tenants)
    assert all(n.dedicated_to is None for n in out.nodes)
    sc = compile_spec(out)
    assert not sc.tenant_conflicts.any() and not sc.tenant_dedicated.any()
    only_b, _ = vary(spec, "isolation[b]=off")
    tenants = {t.id: t for t in only_b.tenants}
    assert tenants["a"].isolation.never_with == [] and tenants["d"].isolation.dedicated_nodes


def test_add_merges_a_fragment_and_gives_new_pv_sites_a_profile(tmp_path, no_pvlib):
    fragment = {"sites": [{"id": "new", "tier": "metro", "region": "DE", "pv_kwp": 20,
                           "location": {"lat": 50.0, "lon": 8.01}}],
                "nodes": [{"id": "new1", "site": "new", "capacity": {"cpu_millicores": 64000, "memory_mib": 65536},
                           "power": {"idle_w": 115, "max_w": 490}}],
                "links": [{"a": "new", "b": "pv", "latency_ms": 0.5}]}
    path = tmp_path / "new-site.yaml"
    path.write_text(yaml.safe_dump(fragment))
    spec = world().build().spec
    axes = parse_axes([f"add=none,{path}"], spec)
    unchanged, _ = apply_case(spec, grid(axes)[0], SolveOptions())
    assert unchanged == spec
    out, _ = apply_case(spec, grid(axes)[1], SolveOptions())
    sc = compile_spec(out)
    assert "new1" in sc.node_ids
    assert np.allclose(sc.site_renewable_kw[sc.index_of("site", "new")], np.asarray(PV) * 2)


def test_add_refuses_a_fragment_with_unknown_sections(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sitez": []}))
    with pytest.raises(InputError, match=r"a fragment is a mapping of lists.*unknown: sitez"):
        parse_vary(f"add={path}", world().build().spec)


def test_solver_keys_set_the_solve_options_not_the_spec():
    spec = world().build().spec
    out, options = vary(spec, "solver=greedy", "solver.time_limit_s=3", "solver.seed=7", "solver.threads=2",
                        options=SolveOptions(solver="cpsat"))
    assert out == spec
    assert (options.solver, options.time_limit_s, options.seed, options.workers) == ("greedy", 3.0, 7, 2)


def test_every_registered_key_applies_on_the_example(metro):
    # One value per key on the bundled example: each varied spec compiles.
    values = {"sla.scale": "1.5", "sla.latency_ms[tight]": "6", "pv_kwp[regional-hanau]": "30",
              "battery_kwh[*]": "10", "pue[*]": "1.3", "intensity.scale[DE]": "0.8", "region[regional-hanau]": "FR",
              "site[access-darmstadt]": "off", "nodes[regional-hanau]": "2", "isolation": "off",
              "demand.scale[relaxed]": "1.5", "solver": "greedy", "solver.time_limit_s": "2", "solver.seed": "1",
              "solver.threads": "1", "add": "none"}
    assert {k.split("[")[0] for k in values} == set(variation_registry())
    for key, value in values.items():
        out, _ = vary(metro, f"{key}={value}")
        compile_spec(out, f"metro-de {key}={value}")
