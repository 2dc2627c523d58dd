"""Shared bits of the benchmarks: timing, peak memory, and writing docs/BENCHMARKS.md.

Each benchmark prints its table and replaces its own section of
docs/BENCHMARKS.md (between `<!-- bench:NAME -->` markers), recording the
command, the date and the machine, so the page always says what produced it.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # only for the tables: a benchmark's child process does not import pandas (65 MiB)
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Figures written by the benchmarks under `bench/` (each section names the
command that produced it). Machine noise is large on shared 2-core machines,
so comparisons are made side by side within one run.
"""


def load_e2e_module(name: str, filename: str):
    """A file of k8s/e2e (not a package: cluster.py, kueue.py) imported as `name`, once, as tests/e2e/conftest.py
    does, so the benchmarks and the tests share one copy of the harness."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "k8s" / "e2e" / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextmanager
def timer() -> Iterator[list[float]]:
    """`with timer() as t: ...` then `t[0]` is the elapsed wall time [s]."""
    out = [0.0]
    started = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - started


def in_child(target, *args, timeout_s: float):
    """`target(*args, queue)` in a spawned child process (its peak memory is its own): what it
    put on the queue, or None when it died or overran `timeout_s` (a row, not a crash)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        return queue.get(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - a child that died or overran is a row, not a crash
        return None
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


@dataclass(frozen=True)
class Measured:
    """A command run to its end: exit code, what it printed, its own peak RSS [MiB] and wall time [s]."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float
    seconds: float


def run_measured(argv: list[str], timeout_s: float) -> Measured:
    """Run `argv` as a user would, and measure that process's peak resident memory (`wait4`'s
    rusage: the child's own, not the largest of every child this process ever had). Killed
    after `timeout_s` (then the exit code is the signal's, negative)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024.0, seconds)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far [MiB] (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, title: str, table: pd.DataFrame, notes: str = "") -> None:
    """Print `table` and replace the `name` section of docs/BENCHMARKS.md with it."""
    command = " ".join(["python", "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<!-- bench:{name} -->\n## {title}\n\n"
            f"Command: `{command.strip()}` ({stamp}; {machine()})\n\n"
            f"{table.to_markdown(index=False, floatfmt='.3g') if _has_tabulate() else _markdown(table)}\n\n"
            f"{notes.strip()}\n<!-- /bench:{name} -->\n")
    print(f"\n{title}\n{table.to_string(index=False)}\n{notes.strip()}\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _m: body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    tmp = DOC.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(DOC)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e6 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
