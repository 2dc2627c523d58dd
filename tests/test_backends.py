"""edgeplace.optimizer.cpsat_backend and edgeplace.optimizer.pulp_backend, checked against HiGHS.

Every back-end solves the same `LinearModel`; on small instances they must
prove the same optimum (CP-SAT up to its rounding, see the cpsat_backend
docstring), return values that satisfy the model's rows, and map their
statuses onto `SolveStatus` the same way. The LP relaxation bounds them all.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import highspy
import numpy as np
import pytest

from edgeplace.optimizer.cpsat_backend import CpsatRangeError, solve_cpsat, to_cpsat
from edgeplace.optimizer.formulation import build
from edgeplace.optimizer.greedy import greedy_place
from edgeplace.optimizer.highs_backend import solve_highs
from edgeplace.optimizer.linear import LinearModel
from edgeplace.optimizer.pulp_backend import solve_pulp
from edgeplace.optimizer.readback import hint_from_placement
from edgeplace.optimizer.result import SolveResult, SolveStatus
from edgeplace.policies.costs import price
from edgeplace.policies.evaluate import evaluate
from tests.builders import ScenarioBuilder, tiny
from edgeplace.topology import scenario_from_dict
from edgeplace.topology.generate import generate

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("cpsat", "highs", "pulp-cbc", "pulp-highs")
#: Objectives of different back-ends agree within this share (0.1 %).
AGREE_REL = 1e-3
#: Exact back-ends meet rows and bounds within this, relative to the row's size.
FEAS_REL = 1e-6
#: CP-SAT's values meet continuous rows only within the rounding of the
#: translation, worth at most this share of the objective on these instances.
CPSAT_OBJECTIVE_REL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def fresh_highs_thread_pool():
    """HiGHS sizes one process-wide thread pool at its first run and fails later runs that
    ask for another `threads` (solve_highs does not reset it): leave none behind."""
    yield
    highspy.Highs.resetGlobalScheduler(True)


def run(backend: str, model: LinearModel, time_limit_s: float = 20.0, **kwargs) -> SolveResult:
    if backend == "cpsat":
        return solve_cpsat(model, time_limit_s=time_limit_s, workers=2, seed=0, **kwargs)
    if backend == "highs":
        return solve_highs(model, time_limit_s=time_limit_s, **kwargs)
    return solve_pulp(model, solver=backend.removeprefix("pulp-"), time_limit_s=time_limit_s, **kwargs)


# -- scenarios -------------------------------------------------------------------------------

def battery_scenario():
    """4 slots. Access site `a`: PV 1.2, 0.6, 0, 0 kW and a 1 kWh battery, so
    early surplus can serve the later slots; cloud `c` 10 ms away. t1 and t2
    never share a node; `web` spreads over both sites; `batch` (2 slots of
    2000 millicores) may start in slot 0, 1 or 2. Nodes are the builder's
    default 4000 millicores, 100 W idle / 200 W max, rented by the hour, so the
    objective also prices embodied carbon per powered slot (as measured for
    CPSAT_OBJECTIVE_REL)."""
    return (ScenarioBuilder("battery").slots(4)
            .region("DE", [300, 250, 450, 500])
            .site("a", tier="access", pue=1.5, renewable=[1.2, 0.6, 0, 0], battery_kwh=1.0, owned=False)
            .site("c", tier="cloud", pue=1.1, owned=False)
            .node("n1", site="a").node("n2", site="a").node("n3", site="c")
            .link("a", "c", 10)
            .user("u", site="a", access_ms=1)
            .tenant("t1", never_with=["t2"]).tenant("t2")
            .workload("web", tenant="t1", replicas=2, cpu=1500, min_sites=2, sla_ms=30, users=["u"])
            .workload("api", tenant="t2", cpu=1000)
            .workload("batch", tenant="t1", cpu=2000, window=(0, 4), duration_minutes=120)
            .build())


def generated(n_workloads: int, n_nodes: int, n_slots: int, seed: int):
    """A generated instance starting at 10:00 (PV produces), with PV and a
    battery forced onto the site of node 0: supply 0.5, 0.25, 0, ... kW,
    battery 0.5 kWh, small enough against the site's demand to matter."""
    doc = generate(n_workloads, n_nodes, n_slots, seed=seed, start="2026-06-21T10:00:00Z")
    site = doc["nodes"][0]["site"]
    doc["signals"] = [s for s in doc["signals"] if not (s["signal"] == "renewable_supply" and s.get("site") == site)]
    supply = [0.5 / 2 ** t if t < 2 else 0.0 for t in range(n_slots)]
    doc["signals"].append({"signal": "renewable_supply", "site": site, "unit": "kW", "values": supply})
    for item in doc["sites"]:
        if item["id"] == site:
            item["battery_kwh"] = 0.5
    return scenario_from_dict(doc, source=f"<generated {n_workloads}x{n_nodes}x{n_slots} seed {seed}>")


SCENARIOS = {
    "tiny": lambda: tiny().build(),
    "battery": battery_scenario,
    "gen-20x6x4-s0": lambda: generated(20, 6, 4, seed=0),
    "gen-20x6x4-s2": lambda: generated(20, 6, 4, seed=2),
    "gen-30x8x4-s2": lambda: generated(30, 8, 4, seed=2),
}


@functools.cache
def solved(name: str) -> dict:
    """The model of scenario `name`, a tight HiGHS reference, the LP relaxation and every back-end's result."""
    model = build(price(SCENARIOS[name]())).model
    return {
        "model": model,
        "reference": solve_highs(model, time_limit_s=30, mip_rel_gap=1e-9),
        "lp": solve_highs(model, time_limit_s=30, relax=True),
        **{b: run(b, model) for b in BACKENDS},
    }


def row_violation(model: LinearModel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how far A x lies outside [lo, hi], and the row's size max(1, |bounds|, max_j |a_ij x_j|)."""
    _, _, _, _, a, lo, hi = model.arrays()
    act = a @ values
    with np.errstate(invalid="ignore"):
        viol = np.maximum(0.0, np.maximum(np.where(np.isfinite(lo), lo - act, 0.0),
                                          np.where(np.isfinite(hi), act - hi, 0.0)))
    terms = abs(a.multiply(values[None, :])).max(axis=1).toarray().ravel()
    size = np.maximum.reduce([np.ones_like(act), np.where(np.isfinite(lo), np.abs(lo), 0.0),
                              np.where(np.isfinite(hi), np.abs(hi), 0.0), terms])
    return viol, size


# -- agreement, bounds, feasibility ------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_backends_prove_the_same_optimum(name, backend):
    s = solved(name)
    ref, r = s["reference"], s[backend]
    assert ref.status is SolveStatus.optimal, ref.detail
    assert r.status is SolveStatus.optimal, r.detail
    # objective = cost . values + offset, recomputed in float by every back-end.
    cost = np.concatenate(s["model"].cost)
    assert r.objective == pytest.approx(cost @ r.values + s["model"].objective_offset, rel=1e-12)
    assert r.objective == pytest.approx(ref.objective, rel=AGREE_REL)
    if backend == "cpsat":  # measured: within 1e-5; the grid steps are 0.01 W and 0.01 Wh
        assert r.objective == pytest.approx(ref.objective, rel=CPSAT_OBJECTIVE_REL)


@pytest.mark.parametrize("name", SCENARIOS)
def test_lp_relaxation_bounds_every_optimum(name):
    s = solved(name)
    assert s["lp"].status is SolveStatus.optimal
    lp = s["lp"].objective
    for backend in ("reference", "highs", "pulp-cbc", "pulp-highs"):
        assert lp <= s[backend].objective + FEAS_REL * abs(s[backend].objective), backend
    cp = s["cpsat"].objective
    assert lp <= cp + CPSAT_OBJECTIVE_REL * abs(cp)


@pytest.mark.parametrize("name", SCENARIOS)
def test_cpsat_bound_is_a_valid_and_useful_lower_bound(name):
    s = solved(name)
    ref, cp = s["reference"], s["cpsat"]
    assert cp.bound is not None
    # Valid: below the true optimum (the reference is optimal to 1e-9).
    assert cp.bound <= ref.objective + 1e-9 * abs(ref.objective)
    # Useful: the rounding allowance costs a small share of the objective.
    assert cp.bound >= ref.objective - AGREE_REL * abs(ref.objective)


@pytest.mark.parametrize("backend", ("highs", "pulp-cbc", "pulp-highs"))
@pytest.mark.parametrize("name", SCENARIOS)
def test_exact_backends_meet_every_row_and_bound(name, backend):
    s = solved(name)
    model, x = s["model"], s[backend].values
    _, lower, upper, integer, _, _, _ = model.arrays()
    viol, size = row_violation(model, x)
    assert (viol <= FEAS_REL * size).all(), np.flatnonzero(viol > FEAS_REL * size)[:5]
    assert (x >= lower - FEAS_REL).all() and (x <= upper + FEAS_REL * np.maximum(1, np.abs(upper))).all()
    assert np.allclose(x[integer], np.rint(x[integer]), atol=FEAS_REL)


@pytest.mark.parametrize("name", SCENARIOS)
def test_cpsat_meets_integral_rows_exactly_and_the_rest_within_tolerance(name):
    s = solved(name)
    model, x = s["model"], s["cpsat"].values
    tol = to_cpsat(model).row_tolerance
    _, lower, upper, integer, _, _, _ = model.arrays()
    viol, size = row_violation(model, x)
    exact = tol == 0
    assert (viol[exact] <= 1e-9 * size[exact]).all()
    assert (viol <= tol + 1e-9 * size).all()
    assert (x >= lower).all() and (x <= upper).all()
    assert (x[integer] == np.rint(x[integer])).all()


def test_integral_row_families_stay_exact_in_cpsat():
    model = solved("gen-20x6x4-s0")["model"]
    tol = to_cpsat(model).row_tolerance
    integral = ("service_demand", "host_link", "host_on", "job_start", "job_demand", "load_def", "capacity_",
                "spread", "tenant_present", "never_with", "battery")
    seen = set()
    for family, start, size in model.row_family:
        if family.startswith(integral) and family != "battery":
            seen.add(family.split("_")[0])
            assert (tol[start:start + size] == 0).all(), family
    assert {"service", "host", "job", "load", "capacity", "spread", "tenant", "never"} <= seen
    # The instance also has the continuous families: PV site with a battery.
    assert {"battery", "site_grid", "power_line_0", "util_def"} <= {f for f, _, _ in model.row_family}


# -- the translation, on hand-made models ----------------------------------------------------

def _model(cost, lower, upper, integer, rows, resolution=None) -> LinearModel:
    """One block `v`; rows as (coefficients, lo, hi)."""
    m = LinearModel()
    m.add_vars("v", len(cost), lower=lower, upper=upper, cost=cost, integer=integer, resolution=resolution)
    for coefs, lo, hi in rows:
        nz = np.flatnonzero(coefs)
        m.add_rows("r", 1, np.zeros(len(nz)), nz, np.asarray(coefs, dtype=float)[nz], lower=lo, upper=hi)
    return m


@pytest.mark.parametrize("case, model, objective, values, status", [
    # min x + y, 2x + 3y >= 7 over integers in [0, 3]: (2, 1) costs 3; the row stays exact.
    ("integral row", _model([1, 1], 0, 3, True, [([2, 3], 7, np.inf)]), 3.0, [2, 1], SolveStatus.optimal),
    # min x, 0.1 x >= 0.3: 10 x 0.3 = 3.0000000000000004 in float; the bound must still admit x = 3.
    ("decimal bound", _model([1], 0, 10, True, [([0.1], 0.3, np.inf)]), 3.0, [3], SolveStatus.optimal),
    # min p, p >= 0.333, p continuous on a 0.1 grid: p = 0.3 (one step, within the 0.05 + rounding tolerance).
    ("continuous grid", _model([1], 0, 10, False, [([1], 0.333, np.inf)], resolution=0.1), 0.3, [0.3],
     SolveStatus.optimal),
    # 2x = 1 over integers: no integer point; CP-SAT proves it (the LP relaxation would not).
    ("parity", _model([1], 0, 1, True, [([2], 1, 1)]), None, None, SolveStatus.infeasible),
    # x >= 2 with x <= 1: seen while translating.
    ("row beyond bounds", _model([1], 0, 1, True, [([1], 2, np.inf)]), None, None, SolveStatus.infeasible),
    # an integer column in [0.2, 0.8] holds no integer.
    ("empty integer column", _model([1], 0.2, 0.8, True, [([1], 0, np.inf)]), None, None, SolveStatus.infeasible),
])
def test_cpsat_translation(case, model, objective, values, status):
    r = solve_cpsat(model, time_limit_s=5, workers=1)
    assert r.status is status, r.detail
    if objective is None:
        assert r.values is None and r.objective is None
        return
    assert r.objective == pytest.approx(objective)
    assert r.values == pytest.approx(values)
    # The bound stays below the true optimum of the continuous case (0.333), integer cases: the optimum.
    assert r.bound <= {"continuous grid": 0.333}.get(case, objective) + 1e-12


def test_cpsat_needs_finite_bounds():
    with pytest.raises(ValueError, match=r"finite bounds.*block 'v'"):
        solve_cpsat(_model([1], 0, np.inf, False, [([1], 1, np.inf)], resolution=0.1), time_limit_s=1)


def test_cpsat_refuses_a_resolution_too_fine_for_the_range():
    # 1e12 / 1e-6 = 1e18 steps: beyond exact integers in float64.
    with pytest.raises(ValueError, match=r"coarsen the block's resolution"):
        solve_cpsat(_model([1], 0, 1e12, False, [([1], 1, np.inf)], resolution=1e-6), time_limit_s=1)


def test_cpsat_coarsens_the_objective_scale_when_micrograms_overflow():
    # Two integer columns in [0, 1e9] at 5000.5 g each: 1e9 x 5000.5e6 ug = 5e18 per column, past 2^52
    # (4.5e15). At 100 units per g the objective reaches 2 x 1e9 x 500050 = 1e15: it fits.
    # min 5000.5 (x + y) with x + y >= 3: 15001.5 g; the bound allows the coarser rounding.
    model = _model([5000.5, 5000.5], 0, 1e9, True, [([1, 1], 3, np.inf)])
    assert to_cpsat(model).objective_units_per_g == 100
    r = solve_cpsat(model, time_limit_s=5, workers=1)
    assert r.status is SolveStatus.optimal
    assert r.objective == pytest.approx(15001.5)
    assert r.bound <= 15001.5 + 1e-9


def test_cpsat_refuses_an_objective_too_large_even_in_grams():
    # 1e15 x 10 g = 1e16 g, past 2^52 even at one unit per gram.
    with pytest.raises(CpsatRangeError, match=r"integer range even in whole grams"):
        to_cpsat(_model([10.0], 0, 1e15, True, [([1], 1, np.inf)]))


def test_a_model_cpsat_cannot_represent_is_solved_by_highs_with_a_note():
    from edgeplace.optimizer.solve import SolveOptions
    from edgeplace.optimizer.stages import run_exact

    messages: list[str] = []
    model = _model([10.0], 0, 1e15, True, [([1], 1, np.inf)])
    result, name, note = run_exact(model, {}, SolveOptions(solver="cpsat"), 5.0, messages.append)
    assert (result.status, name) == (SolveStatus.optimal, "milp")
    assert result.objective == pytest.approx(10.0)
    assert note.startswith("CP-SAT cannot represent this model (the objective exceeds") and note.endswith(
        "solved with HiGHS instead")
    assert "CP-SAT cannot represent the model; solving with HiGHS" in messages


def test_integer_blocks_have_resolution_one():
    with pytest.raises(ValueError, match=r"integer block has resolution 1"):
        LinearModel().add_vars("y", 2, upper=3, integer=True, resolution=0.5)


def test_placement_model_bounds_and_steps_every_continuous_block():
    model = solved("battery")["model"]
    _, _, upper, integer, _, _, _ = model.arrays()
    assert np.isfinite(upper).all()
    continuous = {name for name, b in model.blocks.items() if not b.integer}
    assert {"p", "grid", "charge", "discharge", "soc", "load", "util"} <= continuous
    assert all(model.blocks[name].resolution is not None for name in continuous)


# -- statuses ----------------------------------------------------------------------------------

def infeasible_scenario():
    """Two 3000-millicore services, one 4000-millicore node: each fits, not both."""
    return (ScenarioBuilder("full").slots(2).region("DE", 300).site("a").node("n1")
            .tenant("t").workload("a", cpu=3000).workload("b", cpu=3000).build())


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infeasible_model_is_reported_infeasible(backend):
    r = run(backend, build(price(infeasible_scenario())).model, time_limit_s=10)
    assert r.status is SolveStatus.infeasible, r.detail
    assert r.values is None and r.objective is None and r.bound is None


@functools.cache
def medium_model() -> LinearModel:
    """60 workloads x 12 nodes x 8 slots: HiGHS needs well over a minute to prove it."""
    return build(price(generated(60, 12, 8, seed=5))).model


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_time_limit_stop_is_never_optimal(backend):
    r = run(backend, medium_model(), time_limit_s=0.2)
    assert r.status in (SolveStatus.feasible, SolveStatus.unknown), r.detail
    if r.status is SolveStatus.feasible:
        assert r.values is not None and r.objective is not None
        if r.bound is not None:
            assert r.bound <= r.objective
    else:
        assert r.values is None and r.objective is None


def test_cpsat_model_invalid_is_a_bug(monkeypatch):
    import edgeplace.optimizer.cpsat_backend as backend

    real = backend.to_cpsat

    def broken(model):
        cp = real(model)
        lin = cp.model.proto.constraints.add().linear
        lin.vars.append(len(cp.model.proto.variables) + 5)  # no such variable
        lin.coeffs.append(1)
        lin.domain.extend((0, 1))
        return cp

    monkeypatch.setattr(backend, "to_cpsat", broken)
    with pytest.raises(ValueError, match=r"CP-SAT rejected the translated model.*"):
        backend.solve_cpsat(solved("tiny")["model"], time_limit_s=1)


def test_pulp_solver_name_is_checked():
    with pytest.raises(ValueError, match=r"solver must be one of cbc, highs \(got 'glpk'\)"):
        solve_pulp(solved("tiny")["model"], solver="glpk")


# -- hints ---------------------------------------------------------------------------------------

def test_cpsat_completes_the_greedy_hint_and_starts_from_it():
    # The production path: the greedy plan's placement columns (y, x, b, h, o) as a partial hint.
    scenario = generated(60, 12, 8, seed=5)
    costs = price(scenario)
    form = build(costs)
    greedy = greedy_place(costs, time_limit_s=0.2, seed=0)
    greedy_g = evaluate(scenario, greedy).decision_g("location")  # what the model prices
    r = solve_cpsat(form.model, time_limit_s=1.0, workers=2, hint=hint_from_placement(form, costs, greedy))
    assert r.status in (SolveStatus.optimal, SolveStatus.feasible), r.detail
    assert r.detail.endswith("hint completed")
    # The model under-estimates a placement's emissions (convex hull, battery dispatch), so a
    # search that starts from the completed greedy plan ends at or below its evaluation.
    assert r.objective <= greedy_g * (1 + CPSAT_OBJECTIVE_REL)


def test_cpsat_moves_hints_onto_the_grid_and_into_the_domain():
    model = solved("battery")["model"]
    p = model.blocks["p"]
    # 1e9 W is far above p's bound, 0.123456 W is off the 0.01 W grid: both are adjusted, not rejected.
    r = solve_cpsat(model, time_limit_s=5, workers=1, hint={p.start: 1e9, p.start + 1: 0.123456})
    assert r.status is SolveStatus.optimal


def test_cpsat_rejects_hints_for_unknown_columns():
    model = solved("tiny")["model"]
    with pytest.raises(ValueError, match=r"hint columns must lie in 0\.\.\d+"):
        solve_cpsat(model, time_limit_s=1, hint={model.n_vars + 3: 1.0})


# -- silence -------------------------------------------------------------------------------------

def test_solves_print_nothing_to_stdout():
    # A fresh process: HiGHS prints its banner only for the first Highs object of a process.
    # PuLP-HiGHS with 2 threads after HiGHS with 1: HiGHS's process-wide thread pool must be
    # reset for that (done in pulp_backend; here, not in the test process, so that the pool
    # other tests' solve_highs calls find keeps its first size).
    code = ("from tests.builders import tiny\n"
            "from edgeplace.policies.costs import price\n"
            "from edgeplace.optimizer.formulation import build\n"
            "from edgeplace.optimizer.highs_backend import solve_highs\n"
            "from edgeplace.optimizer.pulp_backend import solve_pulp\n"
            "from edgeplace.optimizer.cpsat_backend import solve_cpsat\n"
            "m = build(price(tiny().build())).model\n"
            "statuses = [solve_pulp(m, solver='highs').status, solve_highs(m).status,\n"
            "            solve_pulp(m, solver='highs', threads=2).status,\n"
            "            solve_pulp(m, solver='cbc').status, solve_cpsat(m, time_limit_s=5).status]\n"
            "print('|'.join(s.value for s in statuses))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "optimal|optimal|optimal|optimal|optimal\n"
