"""Heavy work kept off the server's interpreter: big request bodies and plan builds.

Parsing JSON holds Python's interpreter lock for the whole call (8 MiB of
node names: ~35 ms; 5 MiB of Node objects: ~80 ms; a 14 MB plan: ~100 ms
plus building the table), and a thread does not help: the event loop cannot
run while another thread holds the lock. So the server hands such work to
one helper *process* (`Helper`) and keeps answering other callers; what comes
back is small (the parsed arguments of a request, bounded by the candidate
cap), or a finished `DecisionTable` whose large arrays come back through
files mapped into memory (`/dev/shm` when it has room), not through the pipe:
unpickling them would copy them inside one call that holds the interpreter
(24-41 ms for the 45 MB of arrays of a 5,000-node, 3,000-workload plan).

The helper is a fresh interpreter (``python -c``, not a fork of a threaded
server, and not `multiprocessing`, which would import the caller's
``__main__`` again), started on first use and replaced if it dies. Jobs go
to it one after another over a pipe (pickled, length-prefixed); a writer
thread sends, a reader thread hands results to the jobs' futures. At most
`max_pending` jobs wait; beyond that `submit` raises `HelperBusy` (the
server answers 429).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import mmap
import os
import pickle
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import numpy as np

from edgeplace.k8s.extender import wire
from edgeplace.k8s.extender.table import DecisionTable

log = logging.getLogger("edgeplace.k8s.extender")
_LENGTH = struct.Struct("!Q")


class HelperBusy(RuntimeError):
    """Too many jobs are already waiting for the helper process."""


class HelperDied(RuntimeError):
    """The helper process exited with jobs outstanding (killed, out of memory)."""


def parse_request(verb: str, body: bytes, max_candidates: int) -> wire.ExtenderArgs | wire.PreemptionArgs:
    """`wire.parse_request` in the helper (a `WireError` travels back and is raised again)."""
    return wire.parse_request(verb, body, max_candidates)


#: Arrays of a table at least this large travel as mapped files (`build_table`).
MAPPED_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class _MappedArray:
    """Where `build_table` left an array: a file to map, its shape and dtype."""

    path: str
    shape: tuple[int, ...]
    dtype: str


def build_table(data: bytes, source: str) -> DecisionTable:
    """`DecisionTable.from_json` in the helper. Its large arrays are written to files (in
    /dev/shm if it has room for them twice over, else the temporary folder, else they are
    pickled with the rest); `attach` maps them in the server, without a copy."""
    table = DecisionTable.from_json(data, source=source)
    large = {k: v for k, v in vars(table).items() if isinstance(v, np.ndarray) and v.nbytes >= MAPPED_MIN_BYTES}
    need = sum(v.nbytes for v in large.values())
    folder = next((d for d in ("/dev/shm", tempfile.gettempdir())
                   if os.path.isdir(d) and os.access(d, os.W_OK) and shutil.disk_usage(d).free > 2 * need), None)
    if not large or folder is None:
        return table
    for name, array in large.items():
        fd, path = tempfile.mkstemp(prefix="edgeplace-table-", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(array).data)
        setattr(table, name, _MappedArray(path, array.shape, array.dtype.str))
    return table


def attach(table: DecisionTable) -> DecisionTable:
    """Map the arrays `build_table` left in files (read-only, no copy) and remove the files
    (the mappings stay until the table is dropped)."""
    for name, where in list(vars(table).items()):
        if isinstance(where, _MappedArray):
            with open(where.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            os.unlink(where.path)
            setattr(table, name, np.frombuffer(mapped, dtype=np.dtype(where.dtype)).reshape(where.shape))
    return table


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (n,) = _LENGTH.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def _serve() -> None:
    """The helper's loop: (job id, function, args) in on stdin, (job id, ok, value) out."""
    jobs, results = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the results
    while True:
        try:
            job, fn, args = _receive(jobs)
        except EOFError:
            return
        try:
            value, ok = fn(*args), True
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            value, ok = exc, False
        _send(results, (job, ok, value))


class _Process:
    """One running helper: its pipes, the writer and reader threads, the outstanding jobs."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", "from edgeplace.k8s.extender.offload import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.jobs: dict[int, concurrent.futures.Future] = {}
        self.lock = threading.Lock()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.dead = False
        threading.Thread(target=self._write, name="edgeplace-helper-writer", daemon=True).start()
        self.reader = threading.Thread(target=self._read, name="edgeplace-helper-reader", daemon=True)
        self.reader.start()

    def _write(self) -> None:
        while True:
            message = self.outbox.get()
            if message is None:
                break
            try:
                _send(self.popen.stdin, message)
            except (OSError, ValueError):  # the helper is gone: the reader fails the jobs
                break
        try:
            self.popen.stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        while True:
            try:
                job, ok, value = _receive(self.popen.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with self.lock:
                future = self.jobs.pop(job, None)
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        with self.lock:
            self.dead = True
            orphans, self.jobs = list(self.jobs.values()), {}
        self.popen.stdout.close()
        code = self.popen.wait()
        for future in orphans:
            future.set_exception(HelperDied(f"the helper process exited (code {code}) with this job outstanding"))

    def stop(self) -> None:
        self.outbox.put(None)  # the writer closes stdin: the helper's loop ends
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        self.reader.join(timeout=10)


class Helper:
    """The helper process for `parse_request` and `build_table` jobs (see the module docstring)."""

    def __init__(self, max_pending: int = 4):
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._process: _Process | None = None
        self._ids = itertools.count()
        self._pending = 0

    @property
    def started(self) -> bool:
        return self._process is not None

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run `fn(*args)` in the helper (a module-level function: it travels by name)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._pending >= self.max_pending:
                raise HelperBusy(f"{self._pending} large jobs are already waiting for the helper process")
            if self._process is None or self._process.dead:
                if self._process is not None:
                    log.warning("extender: the helper process died; starting a new one")
                self._process = _Process()
            process, job = self._process, next(self._ids)
            self._pending += 1
        future.add_done_callback(self._release)
        with process.lock:
            if process.dead:
                future.set_exception(HelperDied("the helper process exited before the job was sent"))
                return future
            process.jobs[job] = future
        process.outbox.put((job, fn, args))
        return future

    def warm(self) -> None:
        """Start the helper now rather than at the first large job (it imports numpy: ~1 s)."""
        self.submit(int).result()

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.stop()

    def _release(self, _future) -> None:
        with self._lock:
            self._pending -= 1
