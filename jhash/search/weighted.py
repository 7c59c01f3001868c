r"""Exact search by weighted Hamming distance on packed codes (DRSCH's retrieval rule).

DRSCH (Zhang et al., TIP 2015) learns a weight ``w_k`` per bit and retrieves by the **weighted Hamming
affinity** :math:`A(q, g) = \sum_k w_k^2 [b_{qk} = b_{gk}]` (larger = more similar). Since
:math:`A = \sum_k w_k^2 - D` with the weighted Hamming distance :math:`D(q, g) = \sum_k w_k^2 [b_{qk} \ne b_{gk}]`,
ranking by decreasing affinity is ranking by increasing ``D``; here ties go to the lower gallery index, as in
exhaustive Hamming search.

On packed codes (``uint8 [n, B]``, :func:`jhash.search.pack_codes`) ``D`` is a sum of per-byte table look-ups:
with ``x_j = q_j XOR g_j`` the ``j``-th byte of the XOR, ``D = sum_j T[j, x_j]`` where
``T[j, v] = sum_{i: bit i of v set} w_{8j+i}^2`` (padding bits of a code that is not a whole number of bytes get
weight 0, and are 0 in every code anyway). The bytes are summed in order ``j = 0, 1, ...``, so two pairs with
the same XOR pattern get bit-identical distances and ties are real ties.

Backends: ``"numpy"`` (CPU: one ``[queries, gallery]`` table look-up per byte), ``"xla"`` (jitted, any
device; the same look-ups in a ``fori_loop`` over the bytes, the gallery streamed in blocks) and ``"auto"``
(numpy when JAX's default backend is the CPU, XLA otherwise). Both give identical distances.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jhash.search.packing import check_k, check_pair
from jhash.search.streamed import LazyRows

__all__ = ["weight_tables", "weighted_hamming_distance", "weighted_hamming_affinity", "weighted_hamming_topk",
           "weighted_hamming_matrix"]

BACKENDS = ("auto", "numpy", "xla")
_TILE = 1 << 22  # query rows x gallery columns per computed tile


def weight_tables(bit_weights: Any, n_bytes: int) -> np.ndarray:
    """``float32 [n_bytes, 256]``: ``T[j, v]`` is the sum of ``w_k^2`` over the bits ``k = 8j + i`` set in byte
    value ``v`` (``np.packbits`` order: bit ``i`` of a byte is ``v >> (7 - i) & 1``). Bits past ``len(w)``
    (the zero padding of the last byte) weigh 0."""
    w = np.asarray(bit_weights, np.float64)
    if w.ndim != 1 or w.shape[0] < 1:
        raise ValueError(f"bit_weights: expected one weight per bit, a non-empty vector [L]; got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("bit_weights: expected finite weights, got NaN or infinity")
    if -(-w.shape[0] // 8) != int(n_bytes):
        raise ValueError(f"bit_weights: {w.shape[0]} weights do not match codes of {n_bytes} bytes "
                         f"(expected {8 * n_bytes - 7}..{8 * n_bytes} weights)")
    w2 = np.zeros(8 * int(n_bytes))
    w2[: w.shape[0]] = w * w
    bits = (np.arange(256)[:, None] >> np.arange(7, -1, -1)[None, :]) & 1  # [256, 8], big-endian bits
    return (w2.reshape(-1, 8) @ bits.T).astype(np.float32)


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numpy" if jax.default_backend() == "cpu" else "xla"
    return backend


def _prepare(q, g, bit_weights):
    q, g = check_pair(q, g)
    q, g = np.asarray(q), np.asarray(g)
    return q, g, weight_tables(bit_weights, q.shape[1])


def _numpy_block(q: np.ndarray, g_t: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``D [bq, ng]`` of a query block against the byte-major gallery ``g_t [B, ng]``."""
    d = np.zeros((q.shape[0], g_t.shape[1]), np.float32)
    for j in range(q.shape[1]):
        d += table[j][np.bitwise_xor(q[:, j, None], g_t[j][None, :])]
    return d


@jax.jit
def _xla_block(q: jax.Array, g: jax.Array, table: jax.Array) -> jax.Array:
    def body(j, d):
        x = jnp.bitwise_xor(q[:, j][:, None], g[:, j][None, :]).astype(jnp.int32)
        return d + jnp.take(table[j], x)

    return jax.lax.fori_loop(0, q.shape[1], body, jnp.zeros((q.shape[0], g.shape[0]), jnp.float32))


def _rows_fn(q: np.ndarray, g: np.ndarray, table: np.ndarray, backend: str):
    """``rows(start, stop) -> D [stop - start, ng]`` for the chosen backend (gallery tiled on the XLA path)."""
    if backend == "numpy":
        g_t = np.ascontiguousarray(g.T)
        return lambda s, e: _numpy_block(q[s:e], g_t, table)
    g_dev, t_dev = jnp.asarray(g), jnp.asarray(table)

    def rows(s, e):
        qb = jnp.asarray(q[s:e])
        step = max(1024, _TILE // max(e - s, 1))
        return np.concatenate([np.asarray(_xla_block(qb, g_dev[c:c + step], t_dev))
                               for c in range(0, g.shape[0], step)], axis=1)

    return rows


def _query_block(ng: int) -> int:
    return max(1, min(256, _TILE // max(ng, 1)))


def weighted_hamming_distance(q: Any, g: Any, bit_weights: Any, *, backend: str = "auto") -> np.ndarray:
    """All-pairs weighted Hamming distances ``D(q_i, g_j) = sum_k w_k^2 [b_ik != b_jk]`` -> ``float32 [nq, ng]``.

    Args:
      q, g: packed codes ``uint8 [n, ceil(L/8)]`` of the same width (gallery non-empty).
      bit_weights: ``[L]`` real weights ``w`` in the codes' bit order (only ``w^2`` counts).
      backend: ``"numpy"``, ``"xla"`` or ``"auto"`` (module docstring).
    """
    return np.asarray(weighted_hamming_matrix(q, g, bit_weights, backend=backend))


def weighted_hamming_affinity(q: Any, g: Any, bit_weights: Any, *, backend: str = "auto") -> np.ndarray:
    """DRSCH's affinity ``A(q_i, g_j) = sum_k w_k^2 [b_ik = b_jk] = sum_k w_k^2 - D`` -> ``float32 [nq, ng]``."""
    total = np.float32(np.sum(np.square(np.asarray(bit_weights, np.float64))))
    return total - weighted_hamming_distance(q, g, bit_weights, backend=backend)


def weighted_hamming_matrix(q: Any, g: Any, bit_weights: Any, *, backend: str = "auto") -> LazyRows:
    """The weighted Hamming distances ``[nq, ng]`` as a :class:`jhash.search.streamed.LazyRows`: rows are
    computed when read (``m[s:e]``), so ``jhash.metrics.reid_metrics(distances=m, ...)`` streams them."""
    q, g, table = _prepare(q, g, bit_weights)
    rows = _rows_fn(q, g, table, _backend(backend))
    return LazyRows((q.shape[0], g.shape[0]), np.float32, rows, block_rows=_query_block(g.shape[0]))


def _stable_smallest(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` smallest ``(value, column)`` pairs in that order (exact with ties)."""
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(d, part, axis=1).max(axis=1)
    out_i = np.empty((d.shape[0], k), np.int64)
    for r in range(d.shape[0]):
        cand = np.flatnonzero(d[r] <= kth[r])  # every column that can be in the top k, ascending
        out_i[r] = cand[np.argsort(d[r, cand], kind="stable")[:k]]
    return np.take_along_axis(d, out_i, axis=1), out_i


def weighted_hamming_topk(q: Any, g: Any, bit_weights: Any, k: int, *,
                          backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The exact ``k`` gallery items of smallest weighted Hamming distance (largest affinity) per query.

    Returns ``(distances float32 [nq, k], indices int32 [nq, k])`` ordered by ``(distance, gallery index)``.
    Memory ``O(block · ng)`` with about ``2**22`` distances per block, whatever ``nq``.
    """
    q, g, table = _prepare(q, g, bit_weights)
    k = check_k(k, g.shape[0])
    rows = _rows_fn(q, g, table, _backend(backend))
    nq = q.shape[0]
    dist = np.empty((nq, k), np.float32)
    idx = np.empty((nq, k), np.int32)
    block = _query_block(g.shape[0])
    for s in range(0, nq, block):
        e = min(s + block, nq)
        dist[s:e], idx[s:e] = _stable_smallest(rows(s, e), k)
    return dist, idx
