"""On-disk cache of the values services returned, for reuse and for outages.

Every successful fetch stores its points (timestamp, value in the canonical
unit) in one JSON file per service and series key, merged with what was
there (newer values win at equal timestamps). When a service is down, or
with `--offline`, the values come from here instead, with a `SignalWarning`
that says how old they are.

Where: `$EDGEPLACE_SIGNALS_CACHE`, else `$XDG_CACHE_HOME/edgeplace/signals`,
else `~/.cache/edgeplace/signals`; a caller may pass any directory.
Layout: `<dir>/<service>/<key>.json`, written atomically (write, then
rename), so a crash never leaves half a file. A file that cannot be read is
ignored with a warning, never fatal. Nothing secret is stored: no tokens,
no URLs with credentials.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np

from edgeplace.topology.io import atomic_write_text

ENV_CACHE_DIR = "EDGEPLACE_SIGNALS_CACHE"
#: Points kept per file (the newest): a year of 5-minute data is 105,120.
MAX_POINTS = 250_000
CACHE_FORMAT = 1


class SignalWarning(UserWarning):
    """Signals came from a fallback (cache or file) or the cache had a problem."""


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "edgeplace" / "signals"


@dataclass(frozen=True)
class CachedPoints:
    """Values of one series from the cache: epoch seconds, canonical unit."""

    times_s: np.ndarray
    values: np.ndarray
    step_s: float | None
    fetched_at: str
    unit: str


class SignalCache:
    """A directory of cached series; see the module docstring."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, service: str, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]  # distinct keys never share a file
        return self.root / re.sub(r"[^A-Za-z0-9._-]+", "_", service) / f"{safe}-{digest}.json"

    def load(self, service: str, key: str) -> CachedPoints | None:
        """The cached series, or None (nothing cached, or an unreadable file: warned)."""
        path = self.path(service, key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            points = doc["points"]
            times = np.array([datetime.fromisoformat(t).timestamp() for t, _ in points], dtype=float)
            values = np.array([float(v) for _, v in points], dtype=float)
            step = doc.get("step_s")
            return CachedPoints(times, values, float(step) if step else None, str(doc["fetched_at"]), str(doc["unit"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(SignalWarning(f"ignoring the unreadable cache file {path} ({type(exc).__name__}: {exc}); "
                                        f"delete it if this repeats"), stacklevel=2)
            return None

    def store(self, service: str, key: str, times_s: np.ndarray, values: np.ndarray, *, unit: str,
              step_s: float | None = None, now: datetime | None = None) -> Path:
        """Merge points into the cache (new values win); returns the file written."""
        old = self.load(service, key)
        merged: dict[float, float] = {}
        if old is not None and old.unit == unit:
            merged.update(zip(old.times_s.tolist(), old.values.tolist()))
            step_s = step_s if step_s is not None else old.step_s
        t = np.asarray(times_s, dtype=float)
        v = np.asarray(values, dtype=float)
        keep = np.isfinite(t) & np.isfinite(v)
        merged.update(zip(t[keep].tolist(), v[keep].tolist()))
        ordered = sorted(merged.items())[-MAX_POINTS:]
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        doc = {
            "format": CACHE_FORMAT, "service": service, "key": key, "unit": unit, "fetched_at": stamp,
            "step_s": step_s if step_s is None else float(step_s),
            "points": [[datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(), val] for ts, val in ordered],
        }
        path = self.path(service, key)
        atomic_write_text(path, json.dumps(doc, separators=(",", ":")) + "\n")
        return path


__all__ = ["ENV_CACHE_DIR", "CachedPoints", "SignalCache", "SignalWarning", "default_cache_dir"]
