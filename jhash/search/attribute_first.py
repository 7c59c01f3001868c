"""Attribute-first fast retrieval, AFR (Jin et al. 2021, §5.1, eqs. 6-7 and the w rule of §7.5.2;
``docs/methods.md`` §5).

Every image has a short attribute code (30 bits on Market-1501, packed with padding bits that are equal in
every code) and a long ID code. For one query:

1. rank the whole gallery by the attribute Hamming distance (eq. 6), ties by gallery index;
2. keep the first ``w`` items (the *window*) and rank them by the ID distance (eq. 7), ties by gallery index;
3. the returned ranking is the re-ranked window followed by the other items in attribute order.

Equivalently each item gets an **AFR key**: its ID distance inside the window, ``D + 1 + d_attr`` outside it
(``D`` the largest possible ID distance), and the ranking is a stable sort of the keys. With ``w`` equal to
the gallery size AFR *is* exhaustive ID search (every key is the ID distance). The second stage can be any
distance: Hamming on packed codes (:func:`attribute_first_distances`), Euclidean on real features
(``metric="euclidean"``, the paper's Table 9) or coarse-to-fine keys (:func:`attribute_first_ctf_distances`).

Top-k (what a search engine runs, and what is timed): :func:`attribute_first_topk` takes the exact top-``w``
attribute neighbours with :func:`jhash.search.hamming_topk` (the native CPU kernel when available), then
computes ID distances on the window only (a jitted gather + XOR + popcount) and keeps the top ``k``. Cost
per query ``O(ng · |attr| + w · |id|)`` bit operations instead of ``O(ng · |id|)``.

The w rule (:func:`fit_window`): the smallest ``w`` such that a true match lies among the first ``w``
attribute neighbours for at least ``target`` (97 %) of the queries (the attribute-only rank-``w``
accuracy), measured on validation data. Positions count every gallery item (the window holds ``w`` items,
whatever they are), so the rule bounds exactly the fraction of queries whose window contains a match.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jhash.search.hamming import _resolve_backend, hamming_distance, hamming_topk
from jhash.search.packing import host_words
from jhash.search.streamed import LazyRows

__all__ = [
    "attribute_first_key_matrix",
    "AFRIndex",
    "group_by_code",
    "WindowRule",
    "window_mask",
    "afr_keys",
    "attribute_window",
    "attribute_first_distances",
    "attribute_first_ctf_distances",
    "attribute_first_rank",
    "attribute_first_topk",
    "time_topk",
    "first_match_positions",
    "fit_window",
    "coarse_codes",
    "RankWindow",
    "fit_rank_window",
    "fit_window_in_gallery",
    "MatchWindow",
    "NoMatchError",
    "fit_match_window",
    "window_for_gallery",
]

METRICS = ("hamming", "euclidean")


def _packed(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"{name}: expected packed codes uint8 [n, L/8] (jhash.search.pack_codes), "
                         f"got dtype {a.dtype} shape {a.shape}")
    return a


def _check_w(w: Any, ng: int, name: str = "w") -> int:
    if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or not 1 <= int(w) <= ng:
        raise ValueError(f"{name}: expected an int window size in [1, {ng}] (the gallery size), got {w!r}")
    return int(w)


def _pair(q: np.ndarray, g: np.ndarray, qn: str, gn: str) -> None:
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"{qn} and {gn} must have the same width; got {q.shape} and {g.shape}")


@functools.partial(jax.jit, static_argnames=("n_values",))
def _window_mask(d: jax.Array, w: jax.Array, n_values: int) -> jax.Array:
    qb, ng = d.shape
    hist = jnp.zeros((qb, n_values), jnp.int32).at[jnp.arange(qb)[:, None], d].add(1)
    le = jnp.cumsum(hist, axis=1)  # items with distance <= t
    t_star = jnp.argmax(le >= w, axis=1).astype(d.dtype)  # smallest t with >= w items at distance <= t
    before = jnp.take_along_axis(le - hist, t_star[:, None].astype(jnp.int32), axis=1)  # items closer than t*
    eq = d == t_star[:, None]
    return (d < t_star[:, None]) | (eq & (jnp.cumsum(eq, axis=1, dtype=jnp.int32) <= w - before))


def window_mask(attr_distances: Any, w: int, *, max_distance: int | None = None) -> np.ndarray:
    """The AFR window of every query: ``bool [nq, ng]``, ``True`` for the ``w`` gallery items that come first
    under the order ``(attribute distance, gallery index)`` (a stable sort's first ``w``).

    ``attr_distances`` are non-negative integers ``<= max_distance`` (default: the matrix maximum). O(ng) per
    query (a counting threshold, no sort).
    """
    d = np.asarray(attr_distances)
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.integer):
        raise ValueError(f"attr_distances: expected an integer matrix [nq, ng], got dtype {d.dtype} shape {d.shape}")
    w = _check_w(w, d.shape[1])
    if d.size == 0:
        return np.zeros(d.shape, bool)
    if d.min() < 0:
        raise ValueError("attr_distances: expected non-negative distances")
    top = int(d.max()) if max_distance is None else int(max_distance)
    return np.asarray(_window_mask(jnp.asarray(d, jnp.int32), jnp.int32(w), top + 1))


def afr_keys(attr_distances: Any, second_keys: Any, w: int, *, second_max: float | None = None,
             max_distance: int | None = None) -> np.ndarray:
    """AFR keys ``[nq, ng]``: ``second_keys`` inside the window (:func:`window_mask`), ``second_max + 1 +
    attr_distance`` outside it; a stable sort of a row is the AFR ranking.

    ``second_keys``: the second-stage distances (any real dtype, smaller is closer; ties resolve by gallery
    index). ``second_max``: an upper bound of them (default: the matrix maximum). Integer keys stay integer
    (int16 when they fit, else int32/int64); real keys become float64.
    """
    a = np.asarray(attr_distances)
    s = np.asarray(second_keys)
    if a.shape != s.shape:
        raise ValueError(f"attr_distances and second_keys must have the same shape; got {a.shape} and {s.shape}")
    mask = window_mask(a, w, max_distance=max_distance)
    top = (s.max() if s.size else 0) if second_max is None else second_max
    if np.issubdtype(s.dtype, np.integer):
        hi = int(top) + 1 + (int(a.max()) if a.size else 0)
        dt = np.int16 if hi < 2**15 else (np.int32 if hi < 2**31 else np.int64)
        return np.where(mask, s, int(top) + 1 + a).astype(dt)
    return np.where(mask, s.astype(np.float64), float(top) + 1.0 + a.astype(np.float64))


def attribute_window(q_attr: Any, g_attr: Any, w: int) -> np.ndarray:
    """``bool [nq, ng]``: the window of each query for packed attribute codes (:func:`window_mask`)."""
    q, g = _packed(q_attr, "q_attr"), _packed(g_attr, "g_attr")
    _pair(q, g, "q_attr", "g_attr")
    return window_mask(np.asarray(hamming_distance(q, g)), w, max_distance=8 * q.shape[1])


def _euclidean(q: jax.Array, g: jax.Array) -> jax.Array:
    d2 = jnp.sum(q * q, 1)[:, None] + jnp.sum(g * g, 1)[None, :] - 2.0 * (q @ g.T)
    return jnp.sqrt(jnp.maximum(d2, 0.0))


_euclidean_jit = jax.jit(_euclidean)


def _blocks(n: int, block: int):
    for s in range(0, n, block):
        yield s, min(s + block, n)


def _afr_rows(q_attr: Any, g_attr: Any, q_id: Any, g_id: Any, w: int, metric: str):
    """Validate the AFR inputs; ``(nq, ng, dtype, rows(start, stop) -> keys [stop - start, ng])``."""
    qa, ga = _packed(q_attr, "q_attr"), _packed(g_attr, "g_attr")
    _pair(qa, ga, "q_attr", "g_attr")
    nq, ng = qa.shape[0], ga.shape[0]
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    if metric == "hamming":
        qi, gi = _packed(q_id, "q_id"), _packed(g_id, "g_id")
        _pair(qi, gi, "q_id", "g_id")
        second_max = 8 * qi.shape[1]
    else:
        qi, gi = np.asarray(q_id, np.float32), np.asarray(g_id, np.float32)
        if qi.ndim != 2 or gi.ndim != 2 or qi.shape[1] != gi.shape[1]:
            raise ValueError(f"q_id, g_id: expected real features [n, D] of the same D, got {qi.shape}, {gi.shape}")
        second_max = None
    if len(qi) != nq or len(gi) != ng:
        raise ValueError(f"attribute and ID codes must describe the same images: q_attr {nq} vs q_id {len(qi)}, "
                         f"g_attr {ng} vs g_id {len(gi)}")
    w = _check_w(w, ng)
    amax = 8 * qa.shape[1]
    if metric == "hamming":
        hi = second_max + 1 + amax
        dtype = np.dtype(np.int16 if hi < 2**15 else np.int32)
    else:
        dtype = np.dtype(np.float64)

    def rows(s: int, e: int) -> np.ndarray:
        ad = np.asarray(hamming_distance(qa[s:e], ga))
        if metric == "hamming":
            sd = np.asarray(hamming_distance(qi[s:e], gi))
            return afr_keys(ad, sd, w, second_max=second_max, max_distance=amax).astype(dtype, copy=False)
        sd = np.asarray(_euclidean_jit(jnp.asarray(qi[s:e]), jnp.asarray(gi)), np.float64)
        rowmax = sd.max(axis=1, keepdims=True)
        return np.where(window_mask(ad, w, max_distance=amax), sd, rowmax + 1.0 + ad)

    return nq, ng, dtype, rows


def attribute_first_key_matrix(q_attr: Any, g_attr: Any, q_id: Any, g_id: Any, w: int, *,
                               metric: str = "hamming", block_size: int | None = None) -> LazyRows:
    """The AFR keys of :func:`attribute_first_distances` as a :class:`jhash.search.streamed.LazyRows`: computed
    ``block_size`` query rows at a time when read (default about ``2**22 / ng`` rows), so
    ``reid_metrics(distances=...)`` evaluates AFR without an ``[nq, ng]`` matrix."""
    nq, ng, dtype, rows = _afr_rows(q_attr, g_attr, q_id, g_id, w, metric)
    block = block_size or max(1, min(nq, (1 << 22) // max(ng, 1)))
    return LazyRows((nq, ng), dtype, rows, block_rows=block)


def attribute_first_distances(q_attr: Any, g_attr: Any, q_id: Any, g_id: Any, w: int, *,
                              metric: str = "hamming", block_size: int | None = None) -> np.ndarray:
    """AFR keys of every (query, gallery) pair, ``[nq, ng]`` (pass as ``distances=`` to
    :func:`jhash.metrics.reid_metrics`; a stable sort of a row is the AFR ranking). For large galleries
    :func:`attribute_first_key_matrix` gives the same keys without materialising them.

    Args:
      q_attr, g_attr: packed attribute codes ``uint8 [n, A/8]``.
      q_id, g_id: ``metric="hamming"``: packed ID codes ``uint8 [n, L/8]`` (keys are integers: the ID Hamming
        distance in the window, ``L + 1 + d_attr`` outside); ``metric="euclidean"``: real features
        ``[n, D]`` (keys float64: the Euclidean distance in the window, ``row max + 1 + d_attr`` outside).
      w: window size, ``1 <= w <= ng``; ``w = ng`` is exhaustive search with the second-stage distance.
      block_size: queries per block (memory ``O(block · ng)``).
    """
    return np.asarray(attribute_first_key_matrix(q_attr, g_attr, q_id, g_id, w, metric=metric, block_size=block_size))


def attribute_first_ctf_distances(q_attr: Any, g_attr: Any, q_levels: Any, g_levels: Any, thresholds: Any,
                                  w: int, **ctf_kwargs: Any) -> np.ndarray:
    """AFR in front of coarse-to-fine search: CtF keys (:func:`jhash.search.coarse_to_fine.coarse_to_fine_distances`)
    inside the attribute window, ``max CtF key + 1 + d_attr`` outside. CtF keys depend on each item alone, so
    this is exactly CtF run on every query's window."""
    from jhash.search.coarse_to_fine import coarse_to_fine_distances

    qa, ga = _packed(q_attr, "q_attr"), _packed(g_attr, "g_attr")
    _pair(qa, ga, "q_attr", "g_attr")
    keys = coarse_to_fine_distances(q_levels, g_levels, thresholds, **ctf_kwargs)
    if keys.shape != (qa.shape[0], ga.shape[0]):
        raise ValueError(f"CtF levels describe {keys.shape} pairs, attribute codes {(qa.shape[0], ga.shape[0])}")
    ad = np.asarray(hamming_distance(qa, ga))
    return afr_keys(ad, keys, w, max_distance=8 * qa.shape[1])


def attribute_first_rank(q_attr: Any, g_attr: Any, q_id: Any, g_id: Any, w: int, **kwargs: Any) -> np.ndarray:
    """Full AFR rankings ``int32 [nq, ng]`` (row ``i``: every gallery index once, best first)."""
    keys = attribute_first_distances(q_attr, g_attr, q_id, g_id, w, **kwargs)
    return np.argsort(keys, axis=1, kind="stable").astype(np.int32)


# ------------------------------------------------------------------------------------------------
# Top-k (the timed search path)

_KBASE = 0x7F000000  # composite keys as float32 bit patterns KBASE - key (positive, normal, ordered)
_KMAX = _KBASE - 0x00800000


@functools.partial(jax.jit, static_argnames=("k", "qb", "composite"))
def _window_topk(qw: jax.Array, gw: jax.Array, win: jax.Array, *, k: int, qb: int, composite: bool):
    nq_pad, n_words = qw.shape
    ng = gw.shape[0]
    w = win.shape[1]

    def one(args):
        q, idx = args  # [qb, W], [qb, w]
        cand = gw[idx]  # [qb, w, W]
        d = jnp.zeros(idx.shape, jnp.int32)
        for j in range(n_words):
            d = d + lax.population_count(q[:, None, j] ^ cand[:, :, j]).astype(jnp.int32)
        if composite:  # one top_k over unique keys d * ng + index, encoded as ordered float32 bit patterns
            key = d * ng + idx
            _, pos = lax.top_k(lax.bitcast_convert_type(jnp.int32(_KBASE) - key, jnp.float32), k)
            return jnp.take_along_axis(d, pos, 1), jnp.take_along_axis(idx, pos, 1)
        sd, si = lax.sort((d, idx), dimension=1, num_keys=2)
        return sd[:, :k], si[:, :k]

    dist, idx = lax.map(one, (qw.reshape(nq_pad // qb, qb, n_words), win.reshape(nq_pad // qb, qb, w)))
    return dist.reshape(nq_pad, k), idx.reshape(nq_pad, k)


@dataclasses.dataclass
class AFRIndex:
    """A gallery prepared for :func:`attribute_first_topk`: packed attribute and ID codes, and the gallery
    **grouped by attribute code** (native path): attribute codes are short and repeat, so a query's window is
    found from the ``G`` distinct codes (``G <= ng``) and their group sizes instead of a scan of every item.
    The copies each path needs are made on first use: the ID codes in group order (native path, so that a
    window of whole groups is read sequentially) and as device words (JAX path)."""

    attr: np.ndarray  # uint8 [ng, A/8]
    id_packed: np.ndarray  # uint8 [ng, L/8], the gallery's ID codes as given
    id_bits: int
    group_codes: np.ndarray  # uint8 [G, A/8], the distinct attribute codes
    group_start: np.ndarray  # int64 [G + 1]
    group_items: np.ndarray  # int32 [ng]: position p of the grouped layout is gallery item group_items[p]

    @classmethod
    def build(cls, g_attr: Any, g_id: Any) -> "AFRIndex":
        ga, gi = _packed(g_attr, "g_attr"), _packed(g_id, "g_id")
        if len(ga) != len(gi) or len(ga) == 0:
            raise ValueError(f"g_attr ({len(ga)}) and g_id ({len(gi)}) must describe the same non-empty gallery")
        codes, start, items = group_by_code(ga)
        return cls(attr=ga, id_packed=gi, id_bits=8 * gi.shape[1], group_codes=codes, group_start=start,
                   group_items=items)

    @functools.cached_property
    def id_grouped(self) -> np.ndarray:
        """uint8 ``[ng, L/8]``: row ``p`` is the ID code of item ``group_items[p]`` (native path)."""
        return np.ascontiguousarray(self.id_packed[self.group_items])

    @functools.cached_property
    def id_words(self) -> jax.Array:
        """uint32 ``[ng, W]`` device copy of the ID codes (JAX path)."""
        return jnp.asarray(host_words(self.id_packed))

    @property
    def num_groups(self) -> int:
        """The number of distinct attribute codes in the gallery."""
        return int(self.group_codes.shape[0])


def group_by_code(codes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group packed codes ``uint8 [n, B]`` by value: ``(distinct codes [G, B], start int64 [G + 1], items int32
    [n])`` with ``items[start[u]:start[u + 1]]`` the (increasing) rows equal to ``distinct[u]``."""
    a = _packed(codes, "codes")
    if a.shape[1] <= 8:  # one integer key per row
        padded = np.zeros((a.shape[0], 8), np.uint8)
        padded[:, : a.shape[1]] = a
        _, first, inverse = np.unique(padded.view(np.uint64)[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(a, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    items = np.argsort(inverse, kind="stable").astype(np.int32)
    start = np.zeros(first.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(inverse, minlength=first.shape[0]), out=start[1:])
    return np.ascontiguousarray(a[first]), start, items


def attribute_first_topk(q_attr: Any, q_id: Any, gallery: AFRIndex, w: int, k: int, *, backend: str = "auto",
                         query_block_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` items of every query's AFR ranking: ``(keys int32 [nq, k], indices int32 [nq, k])``.

    Keys are the AFR keys (the ID Hamming distance in the window, ``L + 1 + d_attr`` after it), so the result
    equals the first ``k`` columns of a stable sort of :func:`attribute_first_distances`.

    ``backend="native"`` (the default on CPU when built; ``csrc/afr.cc``): per query, the distances to the
    gallery's distinct attribute codes and a histogram weighted by group size give the window's boundary
    distance, the window's ID distances come from the gathered-distance kernel and ``nth_element`` picks the
    top ``k``. ``backend="xla"``: stage 1 is :func:`jhash.search.hamming_topk` on the attribute codes, stage 2
    a jitted gather + popcount over the ``w`` window items of each query, ``query_block_size`` queries at a
    time (default: about 32 MB of gathered codes per block). ``backend="scan"`` (native kernels): stage 1 is
    the native exhaustive top-``w`` over the first codes (one streaming pass per block of queries, faster
    than the grouped search when the first codes rarely repeat, e.g. :func:`coarse_codes`), stage 2 the
    native gathered ID distances of the window.
    """
    qa, qi = _packed(q_attr, "q_attr"), _packed(q_id, "q_id")
    if not isinstance(gallery, AFRIndex):
        raise TypeError(f"gallery: expected an AFRIndex (AFRIndex.build(g_attr, g_id)), got {type(gallery).__name__}")
    _pair(qa, gallery.attr, "q_attr", "gallery.attr")
    if 8 * qi.shape[1] != gallery.id_bits or len(qa) != len(qi):
        raise ValueError(f"q_id: expected [{len(qa)}, {gallery.id_bits // 8}] packed ID codes, got {qi.shape}")
    ng = gallery.attr.shape[0]
    w = _check_w(w, ng)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= ng:
        raise ValueError(f"k: expected an int in [1, {ng}], got {k!r}")
    nq = len(qa)
    if nq == 0:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.int32)
    if backend == "scan":
        return _scan_topk(qa, qi, gallery, w, k)
    if _use_native(backend, attr_bytes=qa.shape[1]):
        from jhash.search import native

        return native.attribute_first_numpy(qa, gallery.group_codes, gallery.group_start, gallery.group_items, qi,
                                            gallery.id_grouped, w, k)
    ad, ai = hamming_topk(qa, gallery.attr, max(w, k), backend=backend)
    ad, ai = np.asarray(ad), np.asarray(ai)
    kk = min(k, w)
    n_words = int(gallery.id_words.shape[1])
    qb = query_block_size or int(max(1, min(nq, (32 << 20) // max(1, w * n_words * 4))))
    nq_pad = -(-nq // qb) * qb
    win = ai[:, :w]
    qw = host_words(qi)
    if nq_pad != nq:
        win = np.pad(win, ((0, nq_pad - nq), (0, 0)))
        qw = np.pad(qw, ((0, nq_pad - nq), (0, 0)))
    composite = (gallery.id_bits + 1) * ng <= _KMAX
    dist, idx = _window_topk(jnp.asarray(qw), gallery.id_words, jnp.asarray(win), k=kk, qb=qb, composite=composite)
    keys, idx = np.asarray(dist)[:nq], np.asarray(idx)[:nq]
    if k > w:  # the rest of the first k follow in attribute order
        keys = np.concatenate([keys, gallery.id_bits + 1 + ad[:, w:k]], axis=1)
        idx = np.concatenate([idx, ai[:, w:k]], axis=1)
    return keys.astype(np.int32), idx.astype(np.int32)


def _scan_topk(qa: np.ndarray, qi: np.ndarray, gallery: AFRIndex, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``backend="scan"`` of :func:`attribute_first_topk`: native top-``w`` by the first code (ties by index),
    native gathered ID distances of that window, then the first ``k`` by ``(ID distance, index)``; when
    ``k > w`` the rest follow in first-code order with the key ``L + 1 + d_first``."""
    from jhash.search import native

    if not native.is_available():
        raise RuntimeError(f"backend='scan' needs jhash's native kernel: {native.unavailable_reason()}")
    ad, ai = native.hamming_topk_numpy(qa, gallery.attr, max(w, k))
    win = np.ascontiguousarray(ai[:, :w])
    ng = gallery.attr.shape[0]
    wide = np.int32 if (gallery.id_bits + 1) * ng < 2**31 else np.int64  # the narrowest composite that fits
    d = native.hamming_distance_gather_numpy(qi, gallery.id_packed, win).astype(wide)
    kk = min(k, w)
    composite = d * wide(ng) + win.astype(wide)  # unique per row: ranks by (distance, index)
    part = np.argpartition(composite, kk - 1, axis=1)[:, :kk] if kk < w else np.broadcast_to(np.arange(w), d.shape)
    sel = np.take_along_axis(composite, part, axis=1)
    sel.sort(axis=1)
    keys, idx = sel // ng, sel % ng
    if k > w:
        keys = np.concatenate([keys, gallery.id_bits + 1 + ad[:, w:k]], axis=1)
        idx = np.concatenate([idx, ai[:, w:k]], axis=1)
    return keys.astype(np.int32), idx.astype(np.int32)


_NATIVE_MAX_ATTR_BYTES = 31  # the native search keeps attribute distances in uint8 (codes of at most 248 bits)


def _use_native(backend: str, attr_bytes: int) -> bool:
    """``backend``: ``"auto"`` (the native grouped search on CPU when built and the attribute codes have at most
    248 bits, else the JAX path), ``"native"`` (required), ``"xla"`` (JAX: exact top-w attribute neighbours,
    then a jitted gather + popcount)."""
    if _resolve_backend(backend) is None:  # raises for an unknown backend or an unusable 'native'
        return False
    return backend == "native" or attr_bytes <= _NATIVE_MAX_ATTR_BYTES


def time_topk(q_attr: Any, q_id: Any, gallery: AFRIndex, w: int, k: int = 10, **kwargs: Any) -> float:
    """Milliseconds per query of :func:`attribute_first_topk` (after one warm-up call on a few queries)."""
    qa, qi = np.asarray(q_attr), np.asarray(q_id)
    attribute_first_topk(qa[:8], qi[:8], gallery, w, k, **kwargs)
    start = time.perf_counter()
    attribute_first_topk(qa, qi, gallery, w, k, **kwargs)
    return 1000.0 * (time.perf_counter() - start) / max(len(qa), 1)


# ------------------------------------------------------------------------------------------------
# The w rule


class WindowRule(NamedTuple):
    """What :func:`fit_window` found."""

    w: int  #: smallest window reaching the target
    accuracy: float  #: attribute-only rank-w accuracy at that w (>= target)
    target: float
    num_queries: int  #: queries with at least one valid match
    gallery_size: int  #: gallery items each query is ranked against

    @property
    def fraction(self) -> float:
        """``w / gallery_size``: the window as a share of the gallery, to transfer to another gallery size."""
        return self.w / max(self.gallery_size, 1)


def first_match_positions(q_attr: Any, g_attr: Any, q_pids: Any, g_pids: Any, *, q_camids: Any = None,
                          g_camids: Any = None, exclude_self: bool = False, block_size: int = 256) -> np.ndarray:
    """1-based position of each query's first true match in its attribute ranking, ``int64 [nq]`` (``-1`` for
    a query without a valid match).

    A valid match has the query's identity (``>= 0``), and, when camera ids are given, another camera
    (Market protocol). Positions count every gallery item ranked before the match under the order
    ``(attribute distance, gallery index)``, junk included: the window must hold them too.
    ``exclude_self=True`` (query set = gallery set, leave-one-out) removes item ``i`` from query ``i``'s gallery.
    """
    qa, ga = _packed(q_attr, "q_attr"), _packed(g_attr, "g_attr")
    _pair(qa, ga, "q_attr", "g_attr")
    qp, gp = np.asarray(q_pids).astype(np.int64), np.asarray(g_pids).astype(np.int64)
    if qp.shape != (len(qa),) or gp.shape != (len(ga),):
        raise ValueError(f"q_pids / g_pids: expected [{len(qa)}] and [{len(ga)}], got {qp.shape} and {gp.shape}")
    if (q_camids is None) != (g_camids is None):
        raise ValueError("q_camids and g_camids: give both or neither")
    if exclude_self and len(qa) != len(ga):
        raise ValueError("exclude_self=True needs the query set to be the gallery set (same length)")
    nq, ng = len(qa), len(ga)
    qc = None if q_camids is None else np.asarray(q_camids).astype(np.int64)
    gc = None if g_camids is None else np.asarray(g_camids).astype(np.int64)
    cols = np.arange(ng)
    out = np.full(nq, -1, np.int64)
    for s, e in _blocks(nq, block_size):
        d = np.asarray(hamming_distance(qa[s:e], ga)).astype(np.int64)
        match = (gp[None, :] == qp[s:e, None]) & (qp[s:e, None] >= 0)
        keep = np.ones_like(match)
        if qc is not None:
            match &= gc[None, :] != qc[s:e, None]
        if exclude_self:
            keep[np.arange(e - s), np.arange(s, e)] = False
            match &= keep
        big = np.iinfo(np.int64).max // 4
        dm = np.where(match, d, big).min(axis=1)
        m = np.where(match & (d == dm[:, None]), cols[None, :], ng).min(axis=1)
        before = ((d < dm[:, None]) | ((d == dm[:, None]) & (cols[None, :] < m[:, None]))) & keep
        has = match.any(axis=1)
        out[s:e] = np.where(has, before.sum(axis=1) + 1, -1)
    return out


def fit_window(q_attr: Any, g_attr: Any, q_pids: Any, g_pids: Any, *, target: float = 0.97, q_camids: Any = None,
               g_camids: Any = None, exclude_self: bool = False) -> WindowRule:
    """The w rule (§7.5.2): the smallest ``w`` whose attribute-only rank-``w`` accuracy (share of queries with
    a true match among their first ``w`` attribute neighbours, :func:`first_match_positions`) is at least
    ``target``. Queries without any valid match are left out.

    Use a validation split (``exclude_self=True`` when its images are both queries and gallery); apply the
    result to a gallery of another size through :attr:`WindowRule.fraction` (:func:`window_for_gallery`).
    """
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target: expected a rank-w accuracy in (0, 1], got {target!r}")
    pos = first_match_positions(q_attr, g_attr, q_pids, g_pids, q_camids=q_camids, g_camids=g_camids,
                                exclude_self=exclude_self)
    pos = np.sort(pos[pos > 0])
    ng = len(np.asarray(g_pids)) - (1 if exclude_self else 0)
    if len(pos) == 0:
        raise ValueError("fit_window: no query has a valid match in the gallery (check pids / camids)")
    need = max(1, math.ceil(float(target) * len(pos) - 1e-9))
    w = int(pos[need - 1])
    return WindowRule(w=w, accuracy=float(np.mean(pos <= w)), target=float(target), num_queries=int(len(pos)),
                      gallery_size=int(ng))


def window_for_gallery(fraction: float, gallery_size: int) -> int:
    """``ceil(fraction · gallery_size)`` clipped to ``[1, gallery_size]``: a fitted window for another gallery."""
    if gallery_size < 1:
        raise ValueError(f"gallery_size: expected >= 1, got {gallery_size}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction: expected a share of the gallery in [0, 1], got {fraction!r}")
    return int(min(gallery_size, max(1, math.ceil(float(fraction) * gallery_size - 1e-9))))


# ------------------------------------------------------------------------------------------------
# Coarse first codes: the attribute code followed by a prefix of the ID code


def coarse_codes(attr: Any, id_codes: Any, id_bits: Any, *, block_size: int = 65536) -> np.ndarray:
    """First-stage codes for AFR: each packed attribute code followed by the ID bits at positions ``id_bits``
    (e.g. the first bits of every PCB stripe), packed (zero padding to whole bytes, equal in every code).

    The Hamming distance of two such codes is ``d_attr + d_prefix``, so a window by this code is the
    attribute window sharpened by a short ID code, found by one streaming scan (``backend="scan"``).
    ``id_bits`` empty: the attribute code itself. Rows are converted ``block_size`` at a time.
    """
    a, i = _packed(attr, "attr"), _packed(id_codes, "id_codes")
    if len(a) != len(i):
        raise ValueError(f"attr ({len(a)}) and id_codes ({len(i)}) must describe the same images")
    keep = np.asarray(id_bits, np.int64).reshape(-1)
    if keep.size and (keep.min() < 0 or keep.max() >= 8 * i.shape[1] or np.unique(keep).size != keep.size):
        raise ValueError(f"id_bits: expected distinct bit positions in [0, {8 * i.shape[1]}), got {keep.size} "
                         f"values in [{keep.min()}, {keep.max()}]")
    if not keep.size:
        return a
    out = []
    for s in range(0, len(a), block_size):
        bits = np.unpackbits(i[s:s + block_size], axis=1)[:, keep]
        out.append(np.packbits(np.concatenate([np.unpackbits(a[s:s + block_size], axis=1), bits], axis=1), axis=1))
    return np.concatenate(out) if out else np.zeros((0, -(-(8 * a.shape[1] + keep.size) // 8)), np.uint8)


class RankWindow(NamedTuple):
    """What :func:`fit_rank_window` found."""

    w: int  #: the smallest window keeping the target share of the exhaustive ID top-k
    recall: float  #: share of the queries' exhaustive ID top-k inside the first ``w`` by the first code
    recall_lower: float  #: its lower confidence bound (:func:`jhash.search.dto.recall_lower_bound`)
    gallery_size: int
    num_queries: int

    @property
    def fraction(self) -> float:
        """``w / gallery_size``."""
        return self.w / max(self.gallery_size, 1)


def fit_rank_window(q_first: Any, g_first: Any, q_id: Any, g_id: Any, *, k: int = 10, target: float = 0.95,
                    confidence: float = 0.0, block_size: int = 64) -> RankWindow:
    """The window of a rank-based first stage fitted on the gallery to be searched: the smallest ``w`` such
    that the items of the queries' exhaustive ID top-``k`` (ties by index) lie among their first ``w`` by
    the first code (ties by index) for a share ``>= target`` of (query, item) pairs — or, with
    ``confidence > 0``, for its lower confidence bound. No labels are needed: the queries can be the
    validation split's codes against the gallery (index-building work, like CtF's recall fit)."""
    from jhash.search.dto import recall_lower_bound

    qf, gf, qi, gi = (_packed(x, n) for x, n in ((q_first, "q_first"), (g_first, "g_first"), (q_id, "q_id"),
                                                  (g_id, "g_id")))
    _pair(qf, gf, "q_first", "g_first")
    _pair(qi, gi, "q_id", "g_id")
    nq, ng = len(qf), len(gf)
    if len(qi) != nq or len(gi) != ng or nq == 0:
        raise ValueError(f"q_first/q_id and g_first/g_id must describe the same non-empty query and gallery sets, "
                         f"got {nq}/{len(qi)} and {ng}/{len(gi)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= ng:
        raise ValueError(f"k: expected an int in [1, {ng}], got {k!r}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target: expected a share in (0, 1], got {target!r}")
    recall_lower_bound(1.0, 1, confidence)  # checks confidence
    _, top = hamming_topk(qi, gi, int(k))
    top = np.asarray(top)
    ranks = np.empty((nq, int(k)), np.int64)
    for s, e in _blocks(nq, block_size):
        d = np.asarray(hamming_distance(qf[s:e], gf)).astype(np.int64)
        for r in range(e - s):
            row = d[r]
            below = np.concatenate([[0], np.cumsum(np.bincount(row))])  # below[t]: items at distance < t
            for j, item in enumerate(top[s + r]):
                t = row[item]  # 1-based rank under (distance, index): nearer items, then ties before it
                ranks[s + r, j] = below[t] + np.count_nonzero(row[:item] == t) + 1
    pos = np.sort(ranks.reshape(-1))
    share = np.searchsorted(pos, pos, side="right") / pos.size  # share of pairs with rank <= pos[j]
    lower = recall_lower_bound(share, nq, confidence)
    j = int(np.argmax(lower >= float(target) - 1e-12))
    return RankWindow(w=int(pos[j]), recall=float(share[j]), recall_lower=float(lower[j]), gallery_size=ng,
                      num_queries=nq)


def fit_window_in_gallery(val_first: Any, val_pids: Any, g_first: Any, *, target: float = 0.97,
                          block_size: int = 16) -> WindowRule:
    """The w rule measured against the gallery to be searched: each validation image is a query against the
    gallery *plus* the other validation images (labels are needed for the validation images only: a gallery
    item is never a match), and ``w`` is the smallest window whose rank-``w`` accuracy (a true match among
    the first ``w`` by the first code, :func:`first_match_positions` order with the validation images placed
    before the gallery) reaches ``target``. Unlike :attr:`WindowRule.fraction` carried over from the small
    validation split, the confusers ranked before a match are the searched gallery's own.
    ``WindowRule.gallery_size`` is ``ng + n_val - 1``, the items each query is ranked against."""
    vf, gf = _packed(val_first, "val_first"), _packed(g_first, "g_first")
    _pair(vf, gf, "val_first", "g_first")
    vp = np.asarray(val_pids).astype(np.int64)
    if vp.shape != (len(vf),):
        raise ValueError(f"val_pids: expected [{len(vf)}] identities, got shape {vp.shape}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target: expected a rank-w accuracy in (0, 1], got {target!r}")
    nv, ng = len(vf), len(gf)
    cols = np.arange(nv)
    pos = np.full(nv, -1, np.int64)
    big = np.iinfo(np.int64).max // 4
    for s, e in _blocks(nv, block_size):
        dv = np.asarray(hamming_distance(vf[s:e], vf)).astype(np.int64)
        rows = np.arange(e - s)
        match = (vp[None, :] == vp[s:e, None]) & (vp[s:e, None] >= 0)
        match[rows, np.arange(s, e)] = False  # not itself
        dm = np.where(match, dv, big).min(axis=1)
        m = np.where(match & (dv == dm[:, None]), cols[None, :], nv).min(axis=1)
        before = (dv < dm[:, None]) | ((dv == dm[:, None]) & (cols[None, :] < m[:, None]))
        before[rows, np.arange(s, e)] = False
        dg = np.asarray(hamming_distance(vf[s:e], gf))
        in_gallery = (dg < dm[:, None]).sum(axis=1)  # gallery items follow every validation image on ties
        pos[s:e] = np.where(match.any(axis=1), before.sum(axis=1) + in_gallery + 1, -1)
    pos = np.sort(pos[pos > 0])
    if len(pos) == 0:
        raise ValueError("fit_window_in_gallery: no validation image shares its identity with another")
    need = max(1, math.ceil(float(target) * len(pos) - 1e-9))
    w = int(pos[need - 1])
    return WindowRule(w=w, accuracy=float(np.mean(pos <= w)), target=float(target), num_queries=int(len(pos)),
                      gallery_size=int(ng + nv - 1))


class NoMatchError(ValueError):
    """:func:`fit_match_window` found no match to keep (no validation identity seen by two cameras, or
    exhaustive search ranks none first)."""


class MatchWindow(NamedTuple):
    """What :func:`fit_match_window` found."""

    w: int  #: the smallest window keeping the target share of the exhaustive search's matches
    kept: float  #: share of those matches inside the first ``w`` by the first code
    kept_lower: float  #: its lower confidence bound (:func:`jhash.search.dto.recall_lower_bound`)
    num_matches: int  #: (query, match) pairs the share counts
    num_queries: int  #: validation queries with at least one such match
    gallery_size: int  #: items each query is ranked against: ``ng + n_val - 1``

    @property
    def fraction(self) -> float:
        """``w / gallery_size``."""
        return self.w / max(self.gallery_size, 1)


def _protocol_topk(vi: np.ndarray, gi: np.ndarray, vp: np.ndarray, vc: np.ndarray, k: int) -> np.ndarray:
    """For every validation image, its first ``k`` valid items of the exhaustive ID ranking among the other
    validation images (items ``0..nv-1``) followed by the gallery (items ``nv + j``), ties by that order,
    under the Market protocol: the same identity from the same camera is junk (the gallery's items are
    never junk). ``int64 [nv, k]`` item numbers, ``-1`` where fewer than ``k`` items are valid."""
    nv, ng = len(vi), len(gi)
    dg, ig = hamming_topk(vi, gi, min(k, ng)) if ng else (np.zeros((nv, 0)), np.zeros((nv, 0)))
    dg, ig = np.asarray(dg).astype(np.int64), np.asarray(ig).astype(np.int64) + nv
    dv = np.asarray(hamming_distance(vi, vi)).astype(np.int64)
    junk = (vp[:, None] == vp[None, :]) & (vc[:, None] == vc[None, :])  # includes the image itself
    big = np.iinfo(np.int64).max // 4
    order = np.concatenate([np.where(junk, big, dv * (nv + ng) + np.arange(nv)[None, :]), dg * (nv + ng) + ig],
                           axis=1)  # unique keys (distance, item); the gallery's top-k suffices
    best = np.sort(order, axis=1)[:, :k]
    return np.where(best < big, best % (nv + ng), -1)


def fit_match_window(val_first: Any, val_id: Any, val_pids: Any, val_camids: Any, g_first: Any, g_id: Any, *,
                     k: int = 1, target: float = 0.99, confidence: float = 0.0,
                     block_size: int = 16) -> MatchWindow:
    """The window that keeps what exhaustive ID search finds, under the evaluation protocol, fitted on the
    gallery to be searched with labelled validation images.

    Each validation image is a query against the gallery plus the other validation images (placed before
    the gallery; a gallery item is never a match). Its exhaustive ID ranking (ties by that order) loses the
    junk of the Market protocol (the same identity from the same camera, and the image itself); the true
    matches (same identity, another camera) among its first ``k`` remaining items are the matches this fit
    keeps. Each such match has a 1-based position in the query's first-code order (ties by the same order;
    every item but the query counts, junk too: the window holds it). ``w`` is the smallest window holding a
    share ``>= target`` of all (query, match) pairs, or with ``confidence > 0`` whose lower confidence bound
    (over the queries with a match) does. With ``k = 1`` a query's rank-1 outcome under AFR equals the
    exhaustive one whenever its kept match is in the window, so at least ``target`` of the exhaustive
    search's rank-1 hits stay hits (on the validation images)."""
    from jhash.search.dto import recall_lower_bound

    vf, gf, vi, gi = (_packed(x, n) for x, n in ((val_first, "val_first"), (g_first, "g_first"), (val_id, "val_id"),
                                                  (g_id, "g_id")))
    _pair(vf, gf, "val_first", "g_first")
    _pair(vi, gi, "val_id", "g_id")
    nv, ng = len(vf), len(gf)
    vp, vc = np.asarray(val_pids).astype(np.int64), np.asarray(val_camids).astype(np.int64)
    if len(vi) != nv or len(gi) != ng or vp.shape != (nv,) or vc.shape != (nv,):
        raise ValueError(f"val_first/val_id/val_pids/val_camids must describe the same {nv} images and "
                         f"g_first/g_id the same gallery; got {len(vi)}, {vp.shape}, {vc.shape} and {ng}/{len(gi)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= ng + nv - 1:
        raise ValueError(f"k: expected an int in [1, {ng + nv - 1}], got {k!r}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target: expected a share in (0, 1], got {target!r}")
    recall_lower_bound(1.0, 1, confidence)  # checks confidence
    top = _protocol_topk(vi, gi, vp, vc, int(k))
    is_match = (top >= 0) & (top < nv)
    is_match &= np.where(is_match, vp[np.clip(top, 0, nv - 1)] == vp[:, None], False) & (vp[:, None] >= 0)
    positions = []
    for s, e in _blocks(nv, block_size):
        dv = np.asarray(hamming_distance(vf[s:e], vf)).astype(np.int64)
        dg = np.asarray(hamming_distance(vf[s:e], gf)).astype(np.int64)
        for r in range(e - s):
            q = s + r
            below_g = np.concatenate([[0], np.cumsum(np.bincount(dg[r], minlength=8 * vf.shape[1] + 1))])
            for m in top[q][is_match[q]]:
                t = dv[r, m]  # items before m: validation items (not q) nearer, or as near with a smaller number,
                before_v = np.count_nonzero(dv[r] < t) + np.count_nonzero(dv[r, :m] == t)
                before_v -= int(dv[r, q] < t or (dv[r, q] == t and q < m))
                positions.append(before_v + below_g[t] + 1)  # then gallery items strictly nearer
    if not positions:
        raise NoMatchError("fit_match_window: exhaustive search finds no true match for any validation image within "
                         f"its first {k} (check val_pids / val_camids)")
    pos = np.sort(np.asarray(positions, np.int64))
    nq = int(np.count_nonzero(is_match.any(axis=1)))
    share = np.searchsorted(pos, pos, side="right") / pos.size
    lower = recall_lower_bound(share, nq, confidence)
    ok = lower >= float(target) - 1e-12
    j = int(np.argmax(ok)) if ok.any() else pos.size - 1
    return MatchWindow(w=int(min(pos[j], ng + nv - 1)), kept=float(share[j]), kept_lower=float(lower[j]),
                       num_matches=int(pos.size), num_queries=nq, gallery_size=int(ng + nv - 1))
