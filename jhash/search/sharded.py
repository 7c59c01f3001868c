"""Gallery-sharded exact Hamming top-k over a ``jax.sharding.Mesh``.

The gallery is split into equal contiguous shards along one mesh axis (queries are replicated). Each device
runs the streamed XLA top-k of :mod:`jhash.search.hamming` on its shard, with global indices
``shard * n_local + j``; the per-shard results are then merged exactly by ``(distance, global index)``.
Because every shard covers a contiguous index range in shard order, the merge equals the single-device
top-k, tie order included.

Padding: the gallery is padded with zero rows to ``n_dev * n_local`` rows, ``n_local = max(ceil(ng / n_dev),
k)`` (so every shard has a local top-k); padded rows get a sentinel distance ``L + 1`` that never beats a real
row, and ``k <= ng`` guarantees none is returned. Multi-host: build the mesh after
``jax.distributed.initialize()``; the function is the same.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jhash.search.hamming import _KMAX, _smallest, pad_queries, plan, topk_words
from jhash.search.packing import as_words, check_k, check_pair

__all__ = ["sharded_hamming_topk"]


@functools.partial(jax.jit, static_argnames=("k", "use_keys"))
def _merge_shards(dist: jax.Array, idx: jax.Array, k: int, use_keys: bool) -> tuple[jax.Array, jax.Array]:
    """Merge per-shard top-k ``[n_dev, nq, kk]`` (shards in gallery order) into the global top-k ``[nq, k]``.

    Concatenated shard by shard, position order is global index order within equal distance, so the k
    smallest ``(distance, position)`` pairs are the global top-k. ``use_keys``: select with ``lax.top_k`` on
    composite keys (fast; needs ``(L + 2) * n_dev * kk < 2**31``), else a two-key sort (exact, slower on CPU).
    """
    n_dev, nq, kk = dist.shape
    d = jnp.transpose(dist, (1, 0, 2)).reshape(nq, n_dev * kk)
    i = jnp.transpose(idx, (1, 0, 2)).reshape(nq, n_dev * kk)
    pos = jnp.broadcast_to(jnp.arange(n_dev * kk, dtype=jnp.int32), d.shape)
    if use_keys:
        sel = _smallest(d, pos, k, n_dev * kk)
        return jnp.take_along_axis(d, sel, axis=1), jnp.take_along_axis(i, sel, axis=1)
    sd, _, si = lax.sort((d, pos, i), dimension=1, num_keys=2)
    return sd[:, :k], si[:, :k]


def sharded_hamming_topk(q: Any, g: Any, k: int, mesh: Mesh | None = None, axis: str = "gallery", *,
                         block_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Exact top-k with the gallery sharded over ``mesh`` axis ``axis``; equals :func:`hamming_topk`.

    Args:
      q: packed queries ``uint8 [nq, L/8]`` (replicated on every device).
      g: packed gallery ``uint8 [ng, L/8]``; any ``ng >= k`` (not necessarily divisible by the device count).
      k: neighbours per query, ``1 <= k <= ng``.
      mesh: a ``jax.sharding.Mesh``; default: a 1-D mesh over all devices named ``axis``.
      axis: mesh axis that shards the gallery (other mesh axes replicate the work).
      block_size: gallery block of the per-device streamed search (see :func:`hamming_topk`).

    Returns:
      ``(distances int32 [nq, k], indices int32 [nq, k])`` ordered by ``(distance, gallery index)``.
    """
    q, g = check_pair(q, g)
    ng, nq = int(g.shape[0]), int(q.shape[0])
    k = check_k(k, ng)
    if mesh is None:
        mesh = Mesh(np.array(jax.devices()), (axis,))
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
    if axis not in mesh.axis_names:
        raise ValueError(f"axis={axis!r} is not an axis of the mesh; mesh axes are {mesh.axis_names}")
    if nq == 0:
        return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.int32)
    n_dev = int(mesh.shape[axis])
    n_local = max(-(-ng // n_dev), k)
    qw, gw = as_words(q), as_words(g)
    W = int(qw.shape[1])
    qb, block, levels = plan(nq, n_local, W, k, block_size, None)
    if n_local * n_dev != ng:
        gw = jnp.pad(gw, ((0, n_local * n_dev - ng), (0, 0)))
    gw = jax.device_put(gw, NamedSharding(mesh, P(axis, None)))
    qw = jax.device_put(pad_queries(qw, qb), NamedSharding(mesh, P()))

    def local(qw_l: jax.Array, gw_l: jax.Array) -> tuple[jax.Array, jax.Array]:
        start = lax.axis_index(axis) * n_local
        d, i = topk_words(qw_l, gw_l, ng - start, k=k, block=block, qb=qb, levels=levels)
        return d[None], (i + start)[None]

    fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis, None)),
                               out_specs=(P(axis), P(axis)), check_vma=False))
    dist, idx = fn(qw, gw)
    dist, idx = _merge_shards(dist, idx, k, use_keys=(32 * W + 2) * n_dev * k <= _KMAX)
    return dist[:nq], idx[:nq]
