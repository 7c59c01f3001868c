"""A read-only ``[n_rows, n_cols]`` matrix whose rows are computed on demand, block by block.

Search methods whose ranking is not the plain Hamming distance (coarse-to-fine keys, attribute-first keys,
DRSCH's weighted Hamming distance) hand their per-pair keys to the ReID metrics as ``distances=``. At
Market-1501+500k scale (3,368 x 520,000) a dense key matrix takes 3.5 GB (int16) to 7 GB (float32);
:class:`LazyRows` has the shape, dtype and row slicing of such a matrix but computes only the rows asked for,
so :func:`jhash.metrics.reid_metrics` (which reads ``distances[s:e]`` block by block) never holds more than a
block of rows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["LazyRows"]


class LazyRows:
    """A lazily computed matrix: ``rows(start, stop) -> array [stop - start, n_cols]`` of ``dtype``.

    Supported reads: ``m[i]``, ``m[a:b]`` (step 1), ``m[int_array]`` (rows in any order), ``m[rows, cols]``
    with one of those row selectors, ``m[np.ix_(rows, cols)]``, ``np.asarray(m)`` (materialises the whole matrix: only for small
    shapes), and the whole-matrix reductions ``m.min()`` / ``m.max()`` (exact: one streamed pass over the
    rows, both values computed together and cached). Rows are computed ``block_rows`` at a time.
    """

    ndim = 2

    def __init__(self, shape: tuple[int, int], dtype, rows: Callable[[int, int], np.ndarray], *,
                 block_rows: int = 64):
        n, m = (int(s) for s in shape)
        if n < 0 or m < 0:
            raise ValueError(f"LazyRows: shape must be non-negative, got {shape}")
        if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
            raise ValueError(f"LazyRows: block_rows must be a positive int, got {block_rows!r}")
        self.shape = (n, m)
        self.dtype = np.dtype(dtype)
        self._rows = rows
        self._block = int(block_rows)
        self._range: tuple | None = None

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyRows(shape={self.shape}, dtype={self.dtype})"

    def _span(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(stop - start, 0), self.shape[1]), self.dtype)
        for s in range(start, stop, self._block):
            e = min(s + self._block, stop)
            block = np.asarray(self._rows(s, e))
            if block.shape != (e - s, self.shape[1]):
                raise ValueError(f"LazyRows: rows({s}, {e}) returned shape {block.shape}, expected {(e - s, self.shape[1])}")
            out[s - start:e - start] = block
        return out

    def _select_rows(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._span(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                raise IndexError("LazyRows: only row slices with step 1 are supported")
            return self._span(start, max(start, stop))
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"LazyRows: rows must be an int, a slice or a 1-D integer array, got {key!r}")
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        out = np.empty((idx.size, self.shape[1]), self.dtype)
        blocks = idx // self._block
        for b in np.unique(blocks):
            s = int(b) * self._block
            rows = self._span(s, min(s + self._block, n))
            sel = np.flatnonzero(blocks == b)
            out[sel] = rows[idx[sel] - s]
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"LazyRows: expected at most 2 indices, got {len(key)}")
            rows, cols = key
            r = np.asarray(rows) if isinstance(rows, (list, np.ndarray)) else None
            if r is not None and r.ndim == 2 and r.shape[1] == 1:  # np.ix_(rows, cols): an outer index
                c = np.asarray(cols)
                if c.ndim != 2 or c.shape[0] != 1:
                    raise IndexError("LazyRows: an [n, 1] row index needs a [1, m] column index (np.ix_)")
                return self._select_rows(r[:, 0])[:, c[0]]
            picked = self._select_rows(rows)
            return picked[..., cols] if picked.ndim == 1 else picked[:, cols]
        return self._select_rows(key)

    def __array__(self, dtype=None, copy=None):
        out = self._span(0, self.shape[0])
        return out if dtype is None else out.astype(dtype)

    def _min_max(self) -> tuple:
        if self._range is None:
            if self.size == 0:
                raise ValueError("zero-size LazyRows has no minimum or maximum")
            lo, hi = None, None
            for s in range(0, self.shape[0], self._block):
                block = self._span(s, min(s + self._block, self.shape[0]))
                bl, bh = block.min(), block.max()
                lo = bl if lo is None else min(lo, bl)
                hi = bh if hi is None else max(hi, bh)
            self._range = (lo, hi)
        return self._range

    def min(self, axis=None, out=None, keepdims=False, **kwargs):
        """The smallest entry (``axis=None`` only; numpy's ``np.min`` calls this)."""
        if axis is not None or out is not None or keepdims:
            raise NotImplementedError("LazyRows.min supports only the whole-matrix minimum")
        return self._min_max()[0]

    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        """The largest entry (``axis=None`` only; numpy's ``np.max`` calls this)."""
        if axis is not None or out is not None or keepdims:
            raise NotImplementedError("LazyRows.max supports only the whole-matrix maximum")
        return self._min_max()[1]
