"""Full Hamming ranking of a gallery by counting sort (stable, O(ng) per query).

Hamming distances are integers in ``[0, L]``, so a full ranking needs no comparison sort: a stable counting
sort places gallery item ``j`` at position ``offset[d_j] + #{j' < j : d_j' = d_j}`` where ``offset[v]`` is
the number of items closer than ``v``. The result equals ``np.argsort(d, kind="stable")`` row by row.

Parallel form used here (vectorised over queries and gallery segments):

1. cut each query's ``ng`` distances into ``P`` contiguous segments of ``S`` items (``S ~ L``);
2. per-segment histograms ``H[p, v]`` (one scatter-add, O(ng));
3. ``base[p, v] = offset[v] + sum_{p' < p} H[p', v]`` (exclusive prefix sums, O(P·(L+2)) ~ O(ng));
4. ``S`` sequential steps, each placing the s-th item of every segment at ``base[p, v]`` and bumping that
   counter -- every step is one vectorised gather / scatter over all segments and queries of a block.

Total work O(ng + P·L) = O(ng) per query; memory O(qb·ng) per block of ``qb`` queries, which is the size of
the output anyway.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jhash.search.hamming import _popcount_distance
from jhash.search.packing import as_words, check_pair

__all__ = ["hamming_rank", "counting_argsort"]


def _counting_argsort_block(d: jax.Array, n_values: int) -> jax.Array:
    """Stable argsort of each row of ``d [qb, n]`` (int32 values in ``[0, n_values)``) by counting sort."""
    qb, n = d.shape
    seg = max(1, min(n_values, n))  # S: items per segment = sequential steps
    n_seg = -(-n // seg)  # P
    n_pad = n_seg * seg
    if n_pad != n:  # padding takes the largest value so it lands after every real item
        d = jnp.pad(d, ((0, 0), (0, n_pad - n)), constant_values=n_values)
        n_values += 1
    ds = d.reshape(qb, n_seg, seg)
    qi = jnp.arange(qb, dtype=jnp.int32)[:, None, None]
    pi = jnp.arange(n_seg, dtype=jnp.int32)[None, :, None]
    hist = jnp.zeros((qb, n_seg, n_values), jnp.int32).at[qi, pi, ds].add(1)
    total = hist.sum(axis=1)
    offset = jnp.cumsum(total, axis=1) - total  # items with a smaller value, per query
    base = offset[:, None, :] + jnp.cumsum(hist, axis=1) - hist  # [qb, P, V] first free slot
    # Flat indices: counter row of (query, segment) and output row of the query.
    row = ((jnp.arange(qb, dtype=jnp.int32)[:, None] * n_seg
            + jnp.arange(n_seg, dtype=jnp.int32)[None, :]) * n_values).reshape(-1)
    out_row = jnp.repeat(jnp.arange(qb, dtype=jnp.int32) * n_pad, n_seg)
    seg_start = jnp.tile(jnp.arange(n_seg, dtype=jnp.int32) * seg, qb)
    steps = jnp.transpose(ds, (2, 0, 1)).reshape(seg, qb * n_seg)

    def step(s, carry):
        counters, out = carry
        fi = row + steps[s]
        # Bump first, then read back (pos = new - 1): gathering from the buffer before scattering into it
        # would make XLA copy the whole counter array at every step.
        counters = counters.at[fi].add(1, unique_indices=True)
        pos = counters[fi] - 1
        out = out.at[out_row + pos].set(seg_start + s, unique_indices=True)
        return counters, out

    _, out = lax.fori_loop(0, seg, step, (base.reshape(-1), jnp.zeros((qb * n_pad,), jnp.int32)))
    return out.reshape(qb, n_pad)[:, :n]


@functools.partial(jax.jit, static_argnames=("n_values",))
def counting_argsort(d: jax.Array, n_values: int) -> jax.Array:
    """Stable argsort of each row of an integer matrix ``d [m, n]`` with values in ``[0, n_values)``.

    Equals ``np.argsort(d, axis=1, kind="stable")`` (values outside the range are undefined behaviour).
    Useful for re-ranking distances computed elsewhere (e.g. weighted or multi-code distances).
    """
    return _counting_argsort_block(d.astype(jnp.int32), n_values)


@functools.partial(jax.jit, static_argnames=("qb",))
def _rank_words(qw: jax.Array, gw: jax.Array, *, qb: int) -> jax.Array:
    nq_pad, W = qw.shape
    n_values = 32 * W + 1

    def one_block(qblk):
        return _counting_argsort_block(_popcount_distance(qblk, gw), n_values)

    out = lax.map(one_block, qw.reshape(nq_pad // qb, qb, W))
    return out.reshape(nq_pad, gw.shape[0])


def hamming_rank(q: Any, g: Any, *, query_block_size: int | None = None) -> jax.Array:
    """Full ranking of the gallery for each query: ``int32 [nq, ng]`` gallery indices, nearest first.

    Ties in Hamming distance keep gallery order, i.e. row ``i`` equals
    ``np.argsort(hamming_distance(q, g)[i], kind="stable")``. Computed by counting sort over the integer
    distances (O(ng) per query), ``query_block_size`` queries at a time (default: about 2**23 / ng, at
    most 64), so the working memory is a few times ``query_block_size * ng * 4`` bytes plus the output.
    """
    q, g = check_pair(q, g)
    nq, ng = int(q.shape[0]), int(g.shape[0])
    if query_block_size is None:
        qb = int(max(1, min(64, (1 << 23) // ng, nq)))
    else:
        if isinstance(query_block_size, bool) or not isinstance(query_block_size, (int, np.integer)) \
                or query_block_size < 1:
            raise ValueError(f"query_block_size must be a positive int or None, got {query_block_size!r}")
        qb = int(query_block_size)
    if nq == 0:
        return jnp.zeros((0, ng), jnp.int32)
    qw = as_words(q)
    nq_pad = -(-nq // qb) * qb
    if nq_pad != nq:
        qw = jnp.pad(qw, ((0, nq_pad - nq), (0, 0)))
    return _rank_words(qw, as_words(g), qb=qb)[:nq]
