"""A sparse mixed-integer linear model: variable blocks and rows as arrays.

The formulation is written once against this container; each back-end
(HiGHS directly, PuLP with CBC or HiGHS, CP-SAT) reads the same arrays.
Rows are lower <= A x <= upper; A is collected as COO triples and turned into
CSR/CSC once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class VarBlock:
    """Columns start..start+size-1 of one kind of variable.

    `resolution` is the size of one integer step [the block's unit] when a
    back-end that only has integers (CP-SAT) represents the block: value =
    resolution x integer. It is 1 for integer blocks; None on a continuous
    block means "not given" (the back-end then derives one from the bounds).
    """

    name: str
    start: int
    size: int
    integer: bool
    resolution: float | None = None

    @property
    def index(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.size)


@dataclass
class LinearModel:
    cost: list[np.ndarray] = field(default_factory=list)
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)
    integer: list[np.ndarray] = field(default_factory=list)
    blocks: dict[str, VarBlock] = field(default_factory=dict)
    _rows: list[np.ndarray] = field(default_factory=list)
    _cols: list[np.ndarray] = field(default_factory=list)
    _vals: list[np.ndarray] = field(default_factory=list)
    row_lower: list[np.ndarray] = field(default_factory=list)
    row_upper: list[np.ndarray] = field(default_factory=list)
    row_family: list[tuple[str, int, int]] = field(default_factory=list)
    n_vars: int = 0
    n_rows: int = 0
    objective_offset: float = 0.0

    def add_vars(self, name: str, size: int, *, lower=0.0, upper=np.inf, cost=0.0, integer: bool = False,
                 resolution: float | None = None) -> np.ndarray:
        """Add a block of `size` variables; returns their column indices.

        `resolution`: see `VarBlock`; integer blocks always have 1.
        """
        if integer:
            if resolution not in (None, 1, 1.0):
                raise ValueError(f"block {name!r}: an integer block has resolution 1 (got {resolution})")
            resolution = 1.0
        elif resolution is not None and not (np.isfinite(resolution) and resolution > 0):
            raise ValueError(f"block {name!r}: resolution must be a finite number > 0 (got {resolution})")
        block = VarBlock(name, self.n_vars, size, integer, None if resolution is None else float(resolution))
        self.blocks[name] = block
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (size,)).copy())
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (size,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (size,)).copy())
        self.integer.append(np.full(size, integer))
        self.n_vars += size
        return block.index

    def add_rows(self, family: str, n_rows: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 lower=-np.inf, upper=np.inf) -> np.ndarray:
        """Add `n_rows` rows given as COO triples with row ids 0..n_rows-1 local to this call."""
        rows = np.asarray(rows, dtype=np.int64)
        self._rows.append(rows + self.n_rows)
        self._cols.append(np.asarray(cols, dtype=np.int64))
        self._vals.append(np.asarray(vals, dtype=float))
        self.row_lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (n_rows,)).copy())
        self.row_upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n_rows,)).copy())
        self.row_family.append((family, self.n_rows, n_rows))
        self.n_rows += n_rows
        return np.arange(self.n_rows - n_rows, self.n_rows)

    def arrays(self):
        """(cost, lower, upper, integer, A as CSR, row_lower, row_upper), all concatenated."""
        cat = lambda xs, dt=float: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
        a = sp.csr_matrix((cat(self._vals), (cat(self._rows, np.int64), cat(self._cols, np.int64))),
                          shape=(self.n_rows, self.n_vars))
        a.sum_duplicates()
        return (cat(self.cost), cat(self.lower), cat(self.upper), cat(self.integer, bool), a,
                cat(self.row_lower), cat(self.row_upper))

    def resolutions(self) -> np.ndarray:
        """Per column: its block's resolution (NaN where a continuous block gives none)."""
        out = np.full(self.n_vars, np.nan)
        for block in self.blocks.values():
            if block.resolution is not None:
                out[block.start:block.start + block.size] = block.resolution
        return out

    def stats(self) -> dict[str, int]:
        integer = int(sum(x.sum() for x in self.integer))
        return {"variables": self.n_vars, "integer_variables": integer, "rows": self.n_rows,
                "nonzeros": int(sum(len(v) for v in self._vals))}
