"""Running many independent cases: in this process, in local worker processes,
or on a Dask distributed cluster; with a results file a second run resumes from.

Engines (`make_engine`):

- `InProcessEngine`: one case after the other here (one worker, or one case);
- `LocalProcessEngine`: a `concurrent.futures.ProcessPoolExecutor` of N
  processes, started with the "spawn" method (a fresh interpreter: no
  inherited solver threads or locks, the same on every platform);
- `DaskEngine`: an existing Dask distributed scheduler (`--scheduler-address
  tcp://host:8786`). `distributed` is imported only here, only when the user
  points at a scheduler; the local default never imports it.

Why Dask and not Ray: a sweep is a bag of independent, CPU-bound Python
calls of a few seconds each, which is what `Client.submit` / `as_completed`
do (the same shape as concurrent.futures, so both engines share one loop);
`distributed` is pure Python on PyPI, starts a cluster on loopback in about
a second, and needs no object store or extra daemons. Ray brings a large
binary runtime for features a sweep does not use.

Results file (JSON lines, one finished case a line):

    {"v": 1, "key": "<sha256>", "case": {...}, "result": {...}}

`key` is a digest of everything the result depends on (the scenario, the
case, the solver options), so a resumed run reuses a line only when it would
compute the same thing. The file is rewritten whole after each finished case
by write-then-rename (`edgeplace.topology.io.atomic_write_text`), so a crash leaves
the old file or the new one, never half a line. Reading skips lines that are
not valid records (hand edits), with a count in `ResultsFile.skipped`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.io import atomic_write_text

RESULTS_VERSION = 1
#: Seconds to wait for a Dask scheduler to answer before giving up.
DASK_CONNECT_TIMEOUT_S = 10.0

#: A task function: runs one case from its payload; top-level (picklable) and free of side effects.
TaskFn = Callable[[Any], Any]
#: progress(done, total, key): called after every finished case (reused ones included).
Progress = Callable[[int, int, str], None]


class Engine(Protocol):
    """Where cases run. `run(fn, payloads)` yields `(key, fn(payload))` as
    cases finish, in any order; an exception in a case is raised from the
    iterator after the cases already yielded. Closing the iterator early
    cancels what has not started."""

    name: str

    def run(self, fn: TaskFn, payloads: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        ...


class InProcessEngine:
    name = "in-process"

    def run(self, fn: TaskFn, payloads: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        for key, payload in payloads.items():
            yield key, fn(payload)


class LocalProcessEngine:
    """`workers` local processes (spawned interpreters)."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (got {workers})")
        self.workers = workers
        self.name = f"{workers} local process(es)"

    def run(self, fn: TaskFn, payloads: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        if len(payloads) <= 1:  # nothing to share out: spare the process start-up
            yield from InProcessEngine().run(fn, payloads)
            return
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(payloads)), mp_context=ctx)
        pending: dict[Future, str] = {}
        try:
            pending = {pool.submit(fn, payload): key for key, payload in payloads.items()}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    yield key, fut.result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


class DaskEngine:
    """Cases as tasks on an existing Dask distributed scheduler."""

    def __init__(self, address: str, connect_timeout_s: float = DASK_CONNECT_TIMEOUT_S):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.name = f"dask at {address}"

    def run(self, fn: TaskFn, payloads: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise InputError("--scheduler-address", [Problem(self.address, "needs the Dask distributed package: "
                                                                           "pip install 'dask[distributed]'")]) from None
        try:
            client = Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            why = (f"no Dask scheduler answers there ({type(exc).__name__}: {exc}); "
                   "start one with `dask scheduler` or fix the address")
            raise InputError("--scheduler-address", [Problem(self.address, why)]) from None
        futures = {}
        try:
            # pure=False: identical payloads (e.g. a repeated seed) still run as separate tasks.
            futures = {client.submit(fn, payload, pure=False): key for key, payload in payloads.items()}
            for fut in as_completed(list(futures), loop=client.loop):  # this client's loop: it is not the default
                key = futures.pop(fut)
                yield key, fut.result()
        finally:
            if futures:
                client.cancel(list(futures))
            client.close()


def make_engine(workers: int = 1, scheduler_address: str | None = None) -> Engine:
    """The Dask engine when given an address, local processes for workers > 1, else in-process."""
    if scheduler_address:
        return DaskEngine(scheduler_address)
    return LocalProcessEngine(workers) if workers > 1 else InProcessEngine()


def default_workers() -> int:
    """Local worker processes by default: one per core."""
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------
# Results file


def digest(obj: Any) -> str:
    """A stable sha256 of a JSON-able object (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ResultsFile:
    """The JSON-lines results of a sweep (see the module docstring)."""

    path: Path
    records: dict[str, dict] = field(default_factory=dict)
    skipped: int = 0

    @classmethod
    def open(cls, path: str | Path, resume: bool) -> ResultsFile:
        """Open for a new run (the file must not exist) or to resume (read what is there)."""
        path = Path(path)
        out = cls(path)
        if not path.exists():
            return out
        if not resume:
            raise InputError(str(path), [Problem("", "the results file exists; pass --resume to continue that run, "
                                                     "or remove the file to start afresh")])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(path), [Problem("", f"cannot read the results file: {exc}")]) from None
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                out.skipped += 1
                continue
            if isinstance(rec, dict) and rec.get("v") == RESULTS_VERSION and isinstance(rec.get("key"), str) \
                    and "result" in rec:
                out.records[rec["key"]] = rec
            else:
                out.skipped += 1
        return out

    def add(self, key: str, case: dict, result: dict) -> None:
        self.records[key] = {"v": RESULTS_VERSION, "key": key, "case": case, "result": result}
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in self.records.values())
        atomic_write_text(self.path, text)


@dataclass
class SweepOutcome:
    """Results by key, and which keys were computed now or reused from the file."""

    results: dict[str, Any]
    computed: list[str]
    reused: list[str]


def run_sweep(fn: TaskFn, payloads: dict[str, Any], engine: Engine, *,
              results: ResultsFile | None = None, describe: Callable[[str], dict] | None = None,
              progress: Progress | None = None) -> SweepOutcome:
    """Run `fn` on every payload not already in `results`; record each as it finishes.

    `describe(key)` gives the JSON-able case description stored beside a
    result. Results must be JSON-able when a results file is used.
    """
    done: dict[str, Any] = {}
    reused = [k for k in payloads if results is not None and k in results.records]
    for k in reused:
        done[k] = results.records[k]["result"]
    todo = {k: p for k, p in payloads.items() if k not in done}
    total = len(payloads)
    if progress is not None and reused:
        progress(len(done), total, f"{len(reused)} reused")
    computed: list[str] = []
    for key, value in engine.run(fn, todo):
        done[key] = value
        computed.append(key)
        if results is not None:
            results.add(key, describe(key) if describe else {}, value)
        if progress is not None:
            progress(len(done), total, key)
    return SweepOutcome(results={k: done[k] for k in payloads}, computed=computed, reused=reused)


__all__ = [
    "DaskEngine",
    "Engine",
    "InProcessEngine",
    "LocalProcessEngine",
    "ResultsFile",
    "SweepOutcome",
    "default_workers",
    "digest",
    "make_engine",
    "run_sweep",
]
