"""Input problems, collected and reported all at once.

A `Problem` names where the input is wrong (`workloads[3].sla.latency_ms`)
and what to do about it. Loading gathers every problem it can find before it
raises one `InputError`, so a user fixes a file in one pass, not one error
per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: `path` into the document and a message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(Exception):
    """An input file or body is invalid; `problems` lists every problem found."""

    def __init__(self, source: str, problems: Iterable[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self, limit: int = 50) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def format_loc(loc: Iterable[Any]) -> str:
    """('workloads', 3, 'sla', 'latency_ms') -> 'workloads[3].sla.latency_ms'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def pydantic_problems(errors: list[dict[str, Any]]) -> list[Problem]:
    """Turn pydantic's error list into problems with plain, fixable messages."""
    problems = []
    for err in errors:
        loc = list(err.get("loc", ()))
        # pydantic appends the model name for union members ("function-after[...]"); drop it.
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        kind = err.get("type", "")
        ctx = err.get("ctx") or {}
        got = err.get("input")
        if kind == "missing":
            msg = "is required but missing"
        elif kind == "extra_forbidden":
            msg = "is not a known field (check the spelling; `edgeplace schema` lists the fields)"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            bound = ctx.get({"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}[kind])
            msg = f"must be {op} {bound} (got {_short(got)})"
        elif kind == "enum":
            msg = f"must be one of {ctx.get('expected')} (got {_short(got)})"
        elif kind == "literal_error":
            msg = f"must be {ctx.get('expected')} (got {_short(got)})"
        elif kind == "timezone_aware":
            msg = f"needs a UTC offset, e.g. 2026-06-21T00:00:00Z (got {_short(got)})"
        elif kind == "too_short":
            msg = f"needs at least {ctx.get('min_length')} item(s)"
        elif kind == "value_error":
            msg = str(ctx.get("error", err.get("msg", "invalid value")))
        else:
            msg = f"{err.get('msg', 'invalid value')} (got {_short(got)})"
        problems.append(Problem(format_loc(loc), msg))
    return problems
