"""Reading input files with one message per failure, and atomic writes: a reader sees the old
file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def read_input_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of an input file; an InputError naming the file when it is missing or unreadable."""
    from edgeplace.topology.errors import InputError, Problem

    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise InputError(str(path), [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), [Problem("", f"cannot read the file: {exc}")]) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
