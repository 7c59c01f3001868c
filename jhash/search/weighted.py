r"""Exact search by weighted Hamming distance on packed codes (DRSCH's retrieval rule).

DRSCH (Zhang et al., TIP 2015) learns a weight ``w_k`` per bit and retrieves by the **weighted Hamming
affinity** :math:`A(q, g) = \sum_k w_k^2 [b_{qk} = b_{gk}]` (larger = more similar). Since
:math:`A = \sum_k w_k^2 - D` with the weighted Hamming distance :math:`D(q, g) = \sum_k w_k^2 [b_{qk} \ne b_{gk}]`,
ranking by decreasing affinity is ranking by increasing ``D``; here ties go to the lower gallery index, as in
exhaustive Hamming search.

On packed codes (``uint8 [n, B]``, :func:`jhash.search.pack_codes`) ``D`` is a sum of per-byte table look-ups:
with ``x_j = q_j XOR g_j`` the ``j``-th byte of the XOR, ``D = sum_j T[j, x_j]`` where
``T[j, v] = sum_{i: bit i of v set} w_{8j+i}^2`` (padding bits of a code that is not a whole number of bytes get
weight 0, and are 0 in every code anyway). The tables are computed in float32, bit by bit in the order
``i = 0..7`` (:func:`weight_tables` on the host, :func:`weight_tables_jax` traceable: the same code, so the
same bits), and the bytes are summed in order ``j = 0, 1, ...``, so two pairs with the same XOR pattern get
bit-identical distances and ties are real ties.

Backends of :func:`weighted_hamming_topk` (and the distance functions): ``"numpy"`` (the exact CPU path: one
``[queries, gallery]`` table look-up per byte, then a partition and a stable sort of the candidates),
``"xla"`` (:func:`weighted_hamming_topk_jax` on JAX's default device: jitted end to end, no tile goes back to
the host) and ``"auto"`` (XLA on every device: on a 2-core AVX2 CPU it was 1.2–3.3× faster than numpy for the
top-k at 32–256 bits, 20k–100k codes, k = 10 and 100, and 2.5–7× for the distance rows the metrics stream,
32–256 bits, 20k–500k codes, once compiled). Both give bit-identical distances and indices.

Inside a user's ``jax.jit``, :func:`weighted_hamming_topk` (``"auto"`` or ``"xla"``) takes this path by itself
and returns JAX arrays (tables from :func:`weight_tables` for concrete weights, :func:`weight_tables_jax` for
traced ones). :func:`weighted_hamming_topk_jax` (``k``, ``block`` and ``query_block`` static) takes the tables
instead: compute them once with :func:`weight_tables` when the weights are fixed (a trained model) and pass
them in, or with :func:`weight_tables_jax` inside the jitted function when the weights are traced (e.g. learnt
in the same step).

Streaming rule of the XLA path: the gallery is read in blocks of ``block`` codes (a ``fori_loop``; the last
block is shifted back to end at the gallery's end and the rows it shares with the previous block are masked, so
the gallery is never padded), ``query_block`` queries at a time (``lax.map``), so memory is
``O(query_block * (block + k))``. Each block is merged into a running top-k,
exactly whatever order ``lax.top_k`` gives equal values:

1. ``t`` = the ``k``-th smallest distance among the running top-k and the block (``lax.top_k`` on the
   values: the k smallest values, as a multiset, do not depend on how ties are ordered);
2. each candidate gets the class ``c = [D >= t] + [D > t]`` (0: ``D < t``, all kept; 1: ``D = t``, the
   lowest gallery indices kept; 2: dropped);
3. the exact top-k by ``(c, gallery index)`` -- the same set as by ``(D, gallery index)`` -- is the streamed
   integer merge of :func:`jhash.search.hamming_topk` (unique composite keys ``c * M + position``,
   chunk-minimum levels), and the distances of the kept rows are recomputed from their codes (same byte
   order, same floats). Kept in ``(c, index)`` order, the running list stays in index order within each
   class of the next block, as the merge requires.

At the end each query's ``k`` entries are sorted by ``(D, gallery index)``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jhash.search.hamming import _KMAX, _MAX_BLOCK, _MAX_QB, _TILE_ELEMS, _block_topk, _plan_levels, pad_queries
from jhash.search.packing import _as_array, _is_tracer, check_k, check_pair
from jhash.search.streamed import LazyRows

__all__ = ["weight_tables", "weight_tables_jax", "weighted_hamming_distance", "weighted_hamming_affinity",
           "weighted_hamming_topk", "weighted_hamming_topk_jax", "weighted_hamming_matrix"]

BACKENDS = ("auto", "numpy", "xla")
# _BYTE_BITS[v, i] = bit i of byte value v in np.packbits (big-endian) order.
_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(7, -1, -1)[None, :]) & 1).astype(np.float32)


def _check_weight_count(n_weights: int, n_bytes: int) -> None:
    if -(-n_weights // 8) != int(n_bytes):
        raise ValueError(f"bit_weights: {n_weights} weights do not match codes of {n_bytes} bytes "
                         f"(expected {8 * n_bytes - 7}..{8 * n_bytes} weights)")


def _tables(w: Any, n_bytes: int, xp) -> Any:
    """``T [n_bytes, 256]`` from float32 weights ``w [L]`` with ``xp`` = numpy or jax.numpy: ``w^2`` zero-padded
    to ``8 * n_bytes`` bits, then summed over the set bits of each byte value in the fixed order ``i = 0..7``
    (float32 throughout, so both array modules give the same bits)."""
    w2 = xp.pad(w * w, (0, 8 * int(n_bytes) - w.shape[0])).reshape(int(n_bytes), 8)
    t = xp.zeros((int(n_bytes), 256), np.float32)
    for i in range(8):
        t = t + w2[:, i:i + 1] * _BYTE_BITS[:, i]
    return t


def weight_tables(bit_weights: Any, n_bytes: int) -> np.ndarray:
    """``float32 [n_bytes, 256]``: ``T[j, v]`` is the sum of ``w_k^2`` over the bits ``k = 8j + i`` set in byte
    value ``v`` (``np.packbits`` order: bit ``i`` of a byte is ``v >> (7 - i) & 1``). Bits past ``len(w)``
    (the zero padding of the last byte) weigh 0. Computed in float32 on the host, bit-identical to
    :func:`weight_tables_jax`."""
    w = np.asarray(bit_weights, np.float64)
    if w.ndim != 1 or w.shape[0] < 1:
        raise ValueError(f"bit_weights: expected one weight per bit, a non-empty vector [L]; got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("bit_weights: expected finite weights, got NaN or infinity")
    _check_weight_count(w.shape[0], n_bytes)
    with np.errstate(over="ignore", invalid="ignore"):  # inf * 0 where |w| overflows: reported below
        table = _tables(w.astype(np.float32), n_bytes, np)
    if not np.all(np.isfinite(table)):
        raise ValueError("bit_weights: the squared weights overflow float32; expected |w| below about 1e19")
    return table


def weight_tables_jax(bit_weights: Any, n_bytes: int) -> jax.Array:
    """:func:`weight_tables` as a traceable JAX function (``n_bytes`` static): ``float32 [n_bytes, 256]``,
    bit-identical to :func:`weight_tables` for the same float32 weights. For weights that are traced (learnt
    inside the jitted function); their finiteness cannot be checked under a trace."""
    w = _as_array(bit_weights, "bit_weights")
    if len(w.shape) != 1 or w.shape[0] < 1:
        raise ValueError(f"bit_weights: expected one weight per bit, a non-empty vector [L]; "
                         f"got shape {tuple(w.shape)}")
    if not jnp.issubdtype(w.dtype, jnp.floating) and not jnp.issubdtype(w.dtype, jnp.integer):
        raise ValueError(f"bit_weights: expected real weights, got dtype {w.dtype}")
    _check_weight_count(int(w.shape[0]), n_bytes)
    return _tables(jnp.asarray(w, jnp.float32), n_bytes, jnp)


def _backend(backend: str) -> str:
    """The backend ``backend`` runs on: ``"numpy"`` or ``"xla"`` (``"auto"``: XLA, the faster one measured on the
    CPU as well; module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return "xla" if backend == "auto" else backend


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


def _byte_sums(qx: jax.Array, gx: jax.Array, table: jax.Array) -> jax.Array:
    """Traceable ``D = sum_j table[j, qx[..., j] XOR gx[..., j]]`` over rows that broadcast against each other,
    summed in byte order ``j = 0, 1, ...`` like :func:`_numpy_block` (so the same floats)."""
    def body(j, d):
        x = jnp.bitwise_xor(qx[..., j], gx[..., j]).astype(jnp.int32)
        return d + jnp.take(table[j], x)

    shape = jnp.broadcast_shapes(qx.shape[:-1], gx.shape[:-1])
    return lax.fori_loop(0, qx.shape[-1], body, jnp.zeros(shape, jnp.float32))


def _table_distances(q: jax.Array, g: jax.Array, table: jax.Array) -> jax.Array:
    """Traceable all-pairs ``D [nq, ng]`` of packed codes ``q [nq, B]``, ``g [ng, B]``."""
    return _byte_sums(q[:, None, :], g[None, :, :], table)


_xla_block = jax.jit(_table_distances)


def _rows_fn(q: np.ndarray, g: np.ndarray, table: np.ndarray, backend: str):
    """``rows(start, stop) -> D [stop - start, ng]`` for the chosen backend (gallery tiled on the XLA path)."""
    if backend == "numpy":
        g_t = np.ascontiguousarray(g.T)
        return lambda s, e: _numpy_block(q[s:e], g_t, table)
    g_dev, t_dev = jnp.asarray(g), jnp.asarray(table)

    def rows(s, e):
        qb = jnp.asarray(q[s:e])
        step = max(1024, _TILE_ELEMS // max(e - s, 1))
        return np.concatenate([np.asarray(_xla_block(qb, g_dev[c:c + step], t_dev))
                               for c in range(0, g.shape[0], step)], axis=1)

    return rows


def _query_block(ng: int) -> int:
    return max(1, min(256, _TILE_ELEMS // max(ng, 1)))


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

    Returns ``(distances float32 [nq, k], indices int32 [nq, k])`` (numpy) ordered by
    ``(distance, gallery index)``; ``backend="xla"`` runs :func:`weighted_hamming_topk_jax` on JAX's default
    device, ``"numpy"`` the host path (module docstring); both agree bit for bit. Memory ``O(block · ng)`` on
    the numpy path (about ``2**22`` distances per block), ``O(query_block · (block + k))`` on the XLA path.
    Called inside a JAX trace (``jit``) it takes the XLA path whatever the device (``"auto"`` or ``"xla"``;
    ``"numpy"`` is an error) and returns JAX arrays; traced weights get their tables from
    :func:`weight_tables_jax`.
    """
    resolved = _backend(backend)
    traced = any(_is_tracer(x) for x in (q, g, bit_weights))
    if traced and backend == "numpy":
        raise ValueError("backend='numpy' cannot run inside a JAX trace (jit); use backend='xla' or 'auto'")
    if traced or resolved == "xla":
        qd, gd = check_pair(q, g)
        tables = (weight_tables_jax if _is_tracer(bit_weights) else weight_tables)(bit_weights, int(qd.shape[1]))
        dist, idx = weighted_hamming_topk_jax(qd, gd, tables, k)
        return (dist, idx) if traced else (np.asarray(dist), np.asarray(idx))
    q, g, table = _prepare(q, g, bit_weights)
    k = check_k(k, g.shape[0])
    rows = _rows_fn(q, g, table, resolved)
    nq = q.shape[0]
    dist = np.empty((nq, k), np.float32)
    idx = np.empty((nq, k), np.int32)
    block = _query_block(g.shape[0])
    for s in range(0, nq, block):
        e = min(s + block, nq)
        dist[s:e], idx[s:e] = _stable_smallest(rows(s, e), k)
    return dist, idx


def _key_room(k: int) -> int:
    """The largest gallery block whose merge keys ``class * (k + block) + position`` (``class <= 2``) stay
    below ``_KMAX``: ``3 * (k + block) <= _KMAX``."""
    return _KMAX // 3 - k


def _plan(nq: int, ng: int, k: int, block: int | None, query_block: int | None) -> tuple[int, int]:
    """``(query_block, gallery block)`` of :func:`weighted_hamming_topk_jax`; validates the sizes."""
    qb = min(max(nq, 1), _MAX_QB) if query_block is None else check_k(query_block, sys.maxsize, "query_block")
    room = _key_room(k)
    if room < 1:
        raise ValueError(f"k={k} is too large for the merge keys: expected 3 * (k + 1) < 2**31")
    if block is None:
        block = min(1 << max(10, (_TILE_ELEMS // qb).bit_length() - 1), _MAX_BLOCK)
    block = min(check_k(block, sys.maxsize, "block"), ng)
    if block > room:
        raise ValueError(f"block={block} is too large for k={k}: the merge keys need 3 * (k + block) < 2**31; "
                         f"use block <= {room}")
    return qb, block


def _check_tables(tables: Any, n_bytes: int) -> jax.Array:
    t = _as_array(tables, "tables")
    if tuple(t.shape) != (n_bytes, 256):
        raise ValueError(f"tables: expected float32 [{n_bytes}, 256] (weight_tables(w, {n_bytes}) for codes of "
                         f"{n_bytes} bytes), got shape {tuple(t.shape)}")
    if not jnp.issubdtype(t.dtype, jnp.floating):
        raise ValueError(f"tables: expected float32 tables (weight_tables), got dtype {t.dtype}")
    return jnp.asarray(t, jnp.float32)


def _merge_block(d: jax.Array, start: jax.Array, run_d: jax.Array, run_i: jax.Array, k: int,
                 levels: tuple[int, ...], distances_of: Callable) -> tuple[jax.Array, jax.Array]:
    """Merge a float block ``d [qb, B]`` (gallery indices ``start + c``, all above the running ones) into the
    running top-k ``(run_d, run_i)``, kept in (class, index) order; steps 1-3 of the module docstring.
    ``distances_of(idx [qb, k])`` recomputes the distances of gallery rows (``+inf`` for index -1)."""
    # The k-th smallest distance. (A min over the k values, not a slice of the last one: on the CPU, XLA turns
    # a top_k whose last column alone is read into a full sort of the row, ~50x slower.)
    t = -lax.top_k(-jnp.concatenate([run_d, d], axis=1), k)[0].min(axis=1, keepdims=True)

    def cls(x):
        return (x >= t).astype(jnp.int32) + (x > t).astype(jnp.int32)

    _, new_i = _block_topk(cls(d), start, cls(run_d), run_i, k, levels)
    return distances_of(new_i), new_i


def _map_query_blocks(fn: Callable, q: jax.Array, qb: int) -> tuple[jax.Array, jax.Array]:
    """``fn(query block [qb, B]) -> (dist, idx) [qb, k]`` over the rows of ``q`` (``nq % qb == 0``)."""
    dist, idx = lax.map(fn, q.reshape(q.shape[0] // qb, qb, q.shape[1]))
    return dist.reshape(q.shape[0], -1), idx.reshape(q.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("k", "block", "qb", "levels"))
def _topk_streamed(q: jax.Array, g: jax.Array, table: jax.Array, *, k: int, block: int, qb: int,
                   levels: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    ng = g.shape[0]
    last_start = ng - block

    def one_query_block(qblk):
        def distances_of(idx):
            rows = g[jnp.maximum(idx, 0)]  # [qb, k, B]
            return jnp.where(idx >= 0, _byte_sums(qblk[:, None, :], rows, table), jnp.inf)

        def body(i, carry):
            # The last block ends at the gallery's end; rows it shares with the previous block weigh +inf.
            start = jnp.minimum(i * block, last_start)
            d = _table_distances(qblk, lax.dynamic_slice_in_dim(g, start, block, axis=0), table)
            fresh = start + jnp.arange(block, dtype=jnp.int32) >= i * block
            return _merge_block(jnp.where(fresh[None, :], d, jnp.inf), start, *carry, k, levels, distances_of)

        init = (jnp.full((qb, k), jnp.inf, jnp.float32), jnp.full((qb, k), -1, jnp.int32))
        dist, idx = lax.fori_loop(0, -(-ng // block), body, init)
        return lax.sort((dist, idx), dimension=1, num_keys=2)  # (class, index) order -> (distance, index)

    return _map_query_blocks(one_query_block, q, qb)


def weighted_hamming_topk_jax(q: Any, g: Any, tables: Any, k: int, *, block: int | None = None,
                              query_block: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Exact top-k by weighted Hamming distance, traceable: usable inside ``jax.jit`` on any device.

    Args:
      q: packed query codes ``uint8 [nq, B]`` (JAX or numpy array, or a tracer).
      g: packed gallery codes ``uint8 [ng, B]`` (non-empty).
      tables: ``float32 [B, 256]`` per-byte tables, :func:`weight_tables` (host, concrete weights) or
        :func:`weight_tables_jax` (traced weights) of the bit weights.
      k: neighbours per query, ``1 <= k <= ng`` (static).
      block: gallery codes per streamed block (static); default about ``2**22 / query_block``, a power of two
        between 1024 and 2**18, at most ``ng``. Need not divide ``ng``.
      query_block: queries per tile (static); default ``min(nq, 128)``.

    Returns:
      ``(distances float32 [nq, k], indices int32 [nq, k])`` ordered by ``(distance, gallery index)``:
      bit-identical to ``weighted_hamming_topk(q, g, w, k, backend="numpy")`` for the same tables. Memory
      ``O(query_block * (block + k))`` besides the inputs and outputs (module docstring).
    """
    q, g = check_pair(q, g)
    nq, ng = int(q.shape[0]), int(g.shape[0])
    k = check_k(k, ng)
    table = _check_tables(tables, int(q.shape[1]))
    qb, blk = _plan(nq, ng, k, block, query_block)
    if nq == 0:
        return jnp.zeros((0, k), jnp.float32), jnp.zeros((0, k), jnp.int32)
    dist, idx = _topk_streamed(pad_queries(q, qb), g, table, k=k, block=blk, qb=qb, levels=_plan_levels(blk, k))
    return dist[:nq], idx[:nq]
