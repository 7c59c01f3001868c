"""Bit subsets of packed codes, for bit-scalable hashing.

DRSCH / BS-DRSCH (Zhang et al., bit-scalable deep hashing with regularised similarity learning) learns a
weight ``w_k`` per bit; its weighted Hamming affinity is ``sum_k w_k^2 [b_ik = b_jk]``, and shorter codes are
obtained by sorting bits by ``|w_k|`` and keeping the top ``m``, then ranking with the plain Hamming distance
on the kept bits. :func:`top_weight_bits` picks the bits and :func:`select_bits` extracts them from packed
codes, so the result feeds :func:`hamming_topk` / :func:`hamming_rank` directly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jhash.search.packing import _as_array, _is_tracer, _pack_bits, _unpack_bits, check_packed

__all__ = ["select_bits", "top_weight_bits"]


def top_weight_bits(weights: Any, m: int) -> jax.Array:
    """Indices of the ``m`` bits with the largest ``|w|``, by decreasing ``|w|`` (ties: lower index first).

    The order is stable, so ``top_weight_bits(w, m)[:m2] == top_weight_bits(w, m2)`` for ``m2 <= m``.

    Args:
      weights: per-bit weights ``[L]`` (real).
      m: number of bits to keep, ``1 <= m <= L``.

    Returns:
      ``int32 [m]`` bit indices into ``[0, L)``.
    """
    w = _as_array(weights, "weights")
    if w.ndim != 1:
        raise ValueError(f"weights must be rank 1 [L] (one weight per bit); got shape {tuple(w.shape)}")
    L = int(w.shape[0])
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= L:
        raise ValueError(f"m must be an int with 1 <= m <= L={L}, got m={m!r}")
    if not (np.issubdtype(np.dtype(w.dtype), np.floating) or np.issubdtype(np.dtype(w.dtype), np.integer)):
        raise ValueError(f"weights must be real numbers; got dtype {w.dtype}")
    w = jnp.asarray(w)
    if not _is_tracer(w) and jnp.issubdtype(w.dtype, jnp.floating) and bool(jnp.isnan(w).any()):
        raise ValueError("weights contains NaN; expected finite per-bit weights")
    order = jnp.argsort(-jnp.abs(w), stable=True)
    return order[: int(m)].astype(jnp.int32)


def select_bits(packed: Any, bit_indices: Any, *, L: int | None = None, pad: bool = False) -> jax.Array:
    """Keep (and reorder) bits of packed codes: bit ``j`` of the result is bit ``bit_indices[j]`` of the input.

    Args:
      packed: packed codes ``uint8 [n, L/8]`` (:func:`pack_codes` order).
      bit_indices: ``[m]`` distinct integer bit positions in ``[0, L)``, e.g. ``top_weight_bits(w, m)``.
      L: optional code length in bits; when given it must equal ``8 * packed.shape[1]`` (a safety check).
      pad: ``m`` must be a multiple of 8 unless ``pad=True``, in which case the result is padded with zero
        bits up to the next multiple of 8. Padding queries and gallery alike leaves every Hamming distance
        unchanged (``0 XOR 0 = 0``), so the padded codes rank exactly as ``m``-bit codes would.

    Returns:
      ``uint8 [n, ceil(m/8)]`` packed codes.
    """
    packed = check_packed(packed, "packed")
    n_bits = 8 * int(packed.shape[1])
    if L is not None and int(L) != n_bits:
        raise ValueError(f"L={L} does not match packed codes of {packed.shape[1]} bytes ({n_bits} bits)")
    idx = _as_array(bit_indices, "bit_indices")
    if idx.ndim != 1 or not np.issubdtype(np.dtype(idx.dtype), np.integer):
        raise ValueError(
            f"bit_indices must be a rank-1 integer array; got shape {tuple(idx.shape)} dtype {idx.dtype}")
    m = int(idx.shape[0])
    if m == 0:
        raise ValueError("bit_indices is empty; expected at least one bit index")
    if m % 8 and not pad:
        raise ValueError(
            f"bit_indices selects m={m} bits, not a multiple of 8; pass pad=True to zero-pad to {8 * -(-m // 8)}")
    if not _is_tracer(idx):
        host = np.asarray(idx)
        if host.min() < 0 or host.max() >= n_bits:
            raise ValueError(f"bit_indices must lie in [0, {n_bits}); got values in [{host.min()}, {host.max()}]")
        if np.unique(host).size != m:
            raise ValueError("bit_indices contains duplicates; expected distinct bit positions")
    bits = jnp.take(_unpack_bits(packed), jnp.asarray(idx, jnp.int32), axis=1)
    if m % 8:
        bits = jnp.pad(bits, ((0, 0), (0, (-m) % 8)))
    return _pack_bits(bits)
