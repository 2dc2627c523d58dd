"""Best-known plans of the optimizer benchmark instances (issue 15): a long run's plan, kept with its command.

A lower bound says how far a 60 s plan may be from optimal at most; the best
plan anyone has found says how far it is at least. `python -m
bench.bench_reference --plans` makes long runs of the planner and keeps the
best plan of each generated instance here:

- `bench/reference.json`: one entry per instance (its generator arguments),
  the plan's objective (`Evaluation.decision_g`, location basis), who found
  it (solver, seed, time limit, seconds, the stages that made it), the
  command, the date and the commit;
- `bench/known/<W>x<N>x<T>.json.gz`: the plan itself, a placement file
  (`Placement.to_dict`), so that every reader evaluates it again with the
  code of the day (`known_objective_g`) instead of trusting a figure.

bench_optimizer's scale rows print `gap_known_pct`, a plan's excess over the
best-known plan, `(objective - known) / objective` (negative: the plan beats
the reference; run the long runs again).
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.io import atomic_write_text

BENCH = Path(__file__).resolve().parent
REFERENCE = BENCH / "reference.json"
PLANS = BENCH / "known"
VERSION = 1
#: A stored plan that evaluates more than this (relative) away from its stored objective is reported as changed.
SAME_OBJECTIVE_REL = 1e-6
#: The generated instances' seed (`instance`).
GENERATOR_SEED = 7

Spec = tuple[int, int, int]  # workloads, nodes, slots


@dataclass(frozen=True)
class Known:
    """The best plan found for one generated instance, and how it was found."""

    workloads: int
    nodes: int
    slots: int
    objective_g: float  # Evaluation.decision_g, location basis
    solver: str
    seed: int  # SolveOptions.seed
    time_limit_s: float
    seconds: float
    produced_by: str
    command: str
    date: str
    commit: str
    plan: str  # the placement file, relative to bench/
    generator_seed: int = GENERATOR_SEED

    @property
    def spec(self) -> Spec:
        return self.workloads, self.nodes, self.slots

    def plan_path(self, root: Path = BENCH) -> Path:
        """The stored plan; `root` is the reference file's folder."""
        return root / self.plan


_INTS = ("workloads", "nodes", "slots", "seed", "generator_seed")
_NUMBERS = ("objective_g", "time_limit_s", "seconds")
_TEXTS = ("solver", "produced_by", "command", "date", "commit", "plan")
FIX = "fix the entry, or delete it and run `python -m bench.bench_reference --plans` again"


def instance(spec: Spec):
    """The generated benchmark instance of `spec` (workloads, nodes, slots), as every benchmark builds it."""
    from edgeplace.topology.generate import generate_scenario

    return generate_scenario(*spec, seed=GENERATOR_SEED)


def plan_name(spec: Spec) -> str:
    """The stored plan's file name under bench/, e.g. known/1000x100x24.json.gz."""
    return f"{PLANS.name}/{spec[0]}x{spec[1]}x{spec[2]}.json.gz"


def load_reference(path: Path = REFERENCE) -> dict[Spec, Known]:
    """The entries of the reference file by instance ({} when there is none); an `InputError`
    naming every bad field when it is malformed."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(str(path), [Problem("", f"is not JSON ({exc}); {FIX}")]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise InputError(str(path), [Problem("instances", f"the file is a mapping with an 'instances' list; {FIX}")])
    problems = [] if doc.get("version") == VERSION else [Problem("version", f"must be {VERSION} (got "
                                                                            f"{doc.get('version')!r})")]
    out: dict[Spec, Known] = {}
    for i, entry in enumerate(doc["instances"]):
        known, found = _entry(entry, f"instances[{i}]")
        problems += found
        if known is not None and known.spec in out:
            problems.append(Problem(f"instances[{i}]", f"a second entry for {label(known.spec)}; keep one"))
        elif known is not None:
            out[known.spec] = known
    if problems:
        raise InputError(str(path), problems)
    return out


def _entry(entry, where: str) -> tuple[Known | None, list[Problem]]:
    if not isinstance(entry, dict):
        return None, [Problem(where, f"must be a mapping; {FIX}")]
    problems = []
    for name in _INTS:
        v = entry.get(name, GENERATOR_SEED if name == "generator_seed" else None)
        least = 1 if name in ("workloads", "nodes", "slots") else 0
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            problems.append(Problem(f"{where}.{name}", f"must be a whole number >= {least} (got {v!r}); {FIX}"))
    for name in _NUMBERS:
        v = entry.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            problems.append(Problem(f"{where}.{name}", f"must be a number > 0 (got {v!r}); {FIX}"))
    for name in _TEXTS:
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            problems.append(Problem(f"{where}.{name}", f"must be a non-empty string (got {entry.get(name)!r}); {FIX}"))
    unknown = sorted(set(entry) - set(_INTS) - set(_NUMBERS) - set(_TEXTS))
    if unknown:
        problems.append(Problem(where, f"unknown field(s) {', '.join(unknown)}; {FIX}"))
    if problems:
        return None, problems
    known = Known(**{k: entry[k] for k in entry})
    if known.generator_seed != GENERATOR_SEED:
        return None, [Problem(f"{where}.generator_seed", f"the benchmarks generate their instances with seed "
                                                         f"{GENERATOR_SEED} (got {known.generator_seed}); {FIX}")]
    if known.plan != plan_name(known.spec):
        return None, [Problem(f"{where}.plan", f"must be {plan_name(known.spec)!r} (got {known.plan!r}); {FIX}")]
    return known, []


def save_reference(entries: dict[Spec, Known], path: Path = REFERENCE) -> None:
    doc = {"version": VERSION, "about": "best-known plans of the generated benchmark instances (bench/known.py)",
           "instances": [asdict(entries[s]) for s in sorted(entries)]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def write_plan(path: Path, doc: dict) -> None:
    """A placement document, gzipped (a 1,000 x 100 x 24 plan: 60 kB of JSON, 6 kB gzipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), mtime=0))
    tmp.replace(path)


@dataclass(frozen=True)
class Evaluated:
    """A stored plan evaluated again: its objective now, its violations, and what to tell a reader."""

    objective_g: float | None  # None: the plan could not be read or breaks a rule
    note: str = ""


def known_objective_g(known: Known, scenario, root: Path = BENCH) -> Evaluated:
    """Evaluate the stored plan of `known` (under `root`, the reference file's folder) on `scenario`
    (the instance it was made for) with today's `edgeplace.policies.evaluate`: its objective when it
    is readable and breaks no rule, with a note when that differs from the stored figure (the
    evaluation changed since)."""
    from edgeplace.policies.evaluate import evaluate
    from edgeplace.topology.placement import Placement

    try:
        path = known.plan_path(root)
        doc = json.loads(gzip.decompress(path.read_bytes()))
        placement = Placement.from_dict(scenario, doc, source=str(path))
    except (OSError, ValueError, InputError) as exc:
        return Evaluated(None, f"best-known plan {known.plan} unreadable ({str(exc).splitlines()[0]})")
    evaluation = evaluate(scenario, placement)
    if evaluation.violations:
        return Evaluated(None, f"best-known plan {known.plan} breaks {len(evaluation.violations)} rule(s) today")
    objective_g = evaluation.decision_g("location")
    if abs(objective_g - known.objective_g) > SAME_OBJECTIVE_REL * known.objective_g:
        return Evaluated(objective_g, f"best-known plan {known.plan} evaluates to {objective_g / 1000:.4f} kg today, "
                                      f"stored {known.objective_g / 1000:.4f} kg")
    return Evaluated(objective_g)


def gap_known_pct(objective_g: float, known_g: float | None) -> float | None:
    """A plan's excess over the best-known plan, relative to the plan as gaps are [%]."""
    if known_g is None or objective_g <= 0:
        return None
    return (objective_g - known_g) / objective_g * 100


def label(spec: Spec) -> str:
    return f"{spec[0]:,} x {spec[1]:,} x {spec[2]}"
