"""Rendering results as a terminal table, JSON or CSV: one function, three formats."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def render(data: pd.DataFrame | dict[str, Any], fmt: str) -> str:
    """Render a table (DataFrame) or a mapping of figures in `fmt` (table, json or csv)."""
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame({"figure": list(data), "value": list(data.values())})
    if fmt == "json":
        if isinstance(data, pd.DataFrame):
            rows = [{k: _clean(v) for k, v in row.items()} for row in data.to_dict(orient="records")]
            return json.dumps(rows, indent=2)
        return json.dumps({k: _clean(v) for k, v in data.items()}, indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "table":
        return frame.to_string(index=False, float_format=lambda x: f"{x:,.2f}")
    raise ValueError(f"unknown format {fmt!r}")
