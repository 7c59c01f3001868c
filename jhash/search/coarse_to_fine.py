"""Coarse-to-fine (CtF) Hamming search over a code pyramid (Wang et al., "Faster Person
Re-Identification", ECCV 2020, §3.3; cleaned in ``docs/methods.md`` §4).

Every image has ``N`` packed codes (levels) of increasing length ``l_0 < l_1 < ... < l_{N-1}`` (e.g. 32, 128,
512, 2048 bits) and there is one threshold ``t_s`` per level but the longest (fitted by DTO,
:func:`jhash.search.dto.fit_thresholds`). For one query:

* ``C_0`` is the whole gallery; stage ``s`` computes the level-``s`` Hamming distance ``d_s`` of every item
  in ``C_s`` and keeps ``C_{s+1} = {j in C_s : d_s(j) <= t_s}``;
* the last stage ranks ``C_{N-1}`` by ``d_{N-1}``;
* the full ranking is that refined prefix followed by the items dropped at stage ``N-2`` in their
  level-``N-2`` order, ..., then the items dropped at stage 0 in their level-0 order. Ties are broken by
  gallery index, as in exhaustive search.

Equivalently every item ``j`` gets the integer **CtF key** ``key(j) = offset[s(j)] + d_{s(j)}(j)``, where
``s(j)`` is the last stage whose candidate set holds ``j`` and ``offset[N-1] = 0``,
``offset[s] = offset[s+1] + l_{s+1} + 1``; the ranking is a stable sort of the keys. Keys are small
non-negative integers (at most ``offset[0] + l_0``: 2723 for the default pyramid), so they can be handed to
:func:`jhash.metrics.reid_metrics` as ``distances=`` (its counting path). With every threshold at its
maximum (``t_s = l_s``) the keys equal the longest code's Hamming distances: CtF is then exactly the
exhaustive longest-code search.

Three implementations give identical results:

``backend="native"`` (CPU; the default when jhash's native kernel is built)
    The whole cascade in C++ (``csrc/ctf.cc``): for top-k, stage 0 runs the exhaustive top-k's fused XOR +
    popcount scan with the fixed threshold ``t_0`` over L2-sized gallery tiles for blocks of 8 queries and
    appends the items with ``d_0 <= t_0`` to each query's candidate list (keys mode: the dense kernel, every
    ``d_0`` stored), later stages run the prefetching gathered-distance kernel on the survivors, and top-k is
    an ``nth_element`` over ``(key, index)`` of the last stage's survivors when there are ``k`` of them, else
    of every candidate; threads over query blocks, GIL released. :class:`CoarseToFineIndex` keeps the levels
    in huge-page memory (:func:`huge_page_copy`) for the random candidate fetches.
``backend="numpy"`` (CPU without the native kernel)
    The stage-0 scan over the whole gallery runs as one fused XLA kernel (XOR + popcount on ``uint32``
    words, ``uint8`` distances) per block of queries; candidate sets are exact, variable-length
    ``(row, column)`` pair lists (``np.flatnonzero``), re-ranked stage by stage with ``np.bitwise_count``
    on gathered ``uint64`` words. Memory is ``O(block * ng)`` bytes for the stage-0 distances plus the pairs.
``backend="jax"`` (pure JAX, jitted, any device)
    A bounded candidate buffer of ``buffer_size`` entries per query: the items with the ``buffer_size``
    smallest ``(d_0, index)`` (``lax.top_k``, stable) are re-ranked with every longer code. The result is
    exact whenever a query's stage-0 candidate set fits in the buffer; the queries whose set overflows
    are recomputed with a buffer large enough for them (exact fallback), so the answer is always exact.

Public API: :class:`CoarseToFineIndex` (gallery preprocessing, reusable across calls),
:func:`coarse_to_fine_topk` (top-k: what a search engine needs), :func:`coarse_to_fine_distances` and
:func:`coarse_to_fine_key_blocks` (CtF keys for ReID metrics; the latter streams query blocks),
:func:`coarse_to_fine_key_matrix` (the keys as a lazily computed matrix: streamed ``distances=`` for the metrics),
:func:`coarse_to_fine_rank` (full rankings), :func:`ctf_offsets`, :func:`measure_stage_costs` / :func:`fetch_cost` (the
recall fit's measured cost model), :func:`huge_page_copy`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import mmap
import os
import time
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jhash.search.hamming import _resolve_backend
from jhash.search.packing import host_words
from jhash.search.streamed import LazyRows

__all__ = [
    "CoarseToFineIndex",
    "CtFTopK",
    "coarse_to_fine_topk",
    "coarse_to_fine_distances",
    "coarse_to_fine_key_blocks",
    "coarse_to_fine_key_matrix",
    "coarse_to_fine_rank",
    "ctf_offsets",
    "huge_page_copy",
    "measure_stage_costs",
    "fetch_cost",
]

BACKENDS = ("auto", "native", "numpy", "jax")
_MAX_PAIR_WORDS = 1 << 21  # gathered uint64 words per re-ranking chunk (16 MiB)


class CtFTopK(NamedTuple):
    """Result of :func:`coarse_to_fine_topk`."""

    keys: np.ndarray  #: int32 ``[nq, k]`` CtF keys (see the module docstring), ascending per row
    indices: np.ndarray  #: int32 ``[nq, k]`` gallery indices, best first
    #: int64 ``[nq, N]``: column ``s < N-1`` is ``|C_{s+1}|`` (the items kept by threshold ``t_s``); the last
    #: column repeats ``|C_{N-1}|``, the number of items the longest code ranked
    num_candidates: np.ndarray


def ctf_offsets(bits: Sequence[int]) -> np.ndarray:
    """``offset[s]`` of the CtF key for levels of ``bits`` (short to long): ``offset[N-1] = 0``,
    ``offset[s] = offset[s+1] + bits[s+1] + 1``."""
    bits = [int(b) for b in bits]
    off = np.zeros(len(bits), np.int64)
    for s in range(len(bits) - 2, -1, -1):
        off[s] = off[s + 1] + bits[s + 1] + 1
    return off


# ----------------------------------------------------------------------------------------- inputs --


def _check_level(x: Any, name: str) -> np.ndarray:
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{name}: coarse-to-fine search takes concrete arrays, not JAX tracers (call it outside jit)")
    a = np.asarray(x)
    if a.ndim != 2 or a.dtype != np.uint8 or a.shape[1] < 1:
        raise ValueError(
            f"{name}: expected packed codes, a uint8 array [n, L/8] (jhash.search.pack_codes), "
            f"got dtype {a.dtype} and shape {a.shape}"
        )
    return np.ascontiguousarray(a)


def _ordered_levels(levels: Any, name: str) -> tuple[list[str] | None, list[np.ndarray]]:
    """(names or None, arrays) with the levels ordered from the shortest to the longest code."""
    if isinstance(levels, Mapping):
        if not levels:
            raise ValueError(f"{name}: expected at least one code level, got an empty mapping")
        arrays = {k: _check_level(v, f"{name}[{k!r}]") for k, v in levels.items()}
        names = sorted(arrays, key=lambda k: (arrays[k].shape[1], k))
        return names, [arrays[k] for k in names]
    if isinstance(levels, (np.ndarray, jax.Array)) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"{name}: expected a non-empty sequence (short to long) or a mapping of packed code levels")
    return None, [_check_level(v, f"{name}[{i}]") for i, v in enumerate(levels)]


def _thresholds(thresholds: Any, names: list[str] | None, bits: Sequence[int]) -> tuple[int, ...]:
    n = len(bits)
    if isinstance(thresholds, Mapping):
        if names is None:
            raise ValueError("thresholds: a mapping needs the code levels given as a mapping too (names to match)")
        missing = [k for k in names[:-1] if k not in thresholds]
        if missing:
            raise ValueError(f"thresholds: no threshold for levels {missing} (expected one per level but the longest: {names[:-1]})")
        values = [thresholds[k] for k in names[:-1]]
    else:
        if thresholds is None:
            thresholds = ()
        values = list(np.asarray(thresholds).reshape(-1)) if not isinstance(thresholds, Sequence) else list(thresholds)
        if len(values) != n - 1:
            raise ValueError(f"thresholds: expected {n - 1} values (one per level but the longest), got {len(values)}")
    out = []
    for s, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
            raise ValueError(f"thresholds[{s}]: expected an integer Hamming distance, got {v!r}")
        v = int(v)
        if not 0 <= v <= bits[s]:
            raise ValueError(f"thresholds[{s}]: expected 0 <= t <= {bits[s]} (the level's code length), got {v}")
        out.append(v)
    return tuple(out)


_HUGE_PAGE = 2 << 20  # bytes of a transparent huge page on x86-64 Linux


def huge_page_copy(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a`` in memory that Linux may back with 2 MiB pages (``madvise(MADV_HUGEPAGE)``,
    transparent huge pages), or ``a`` itself when it is smaller than one such page or the system has no
    ``MADV_HUGEPAGE``.

    CtF's later stages fetch candidates' codes at random; with 4 KiB pages almost every such fetch also misses
    the TLB (a page walk, two-dimensional under a hypervisor), with 2 MiB pages a 500k-code gallery's levels
    are covered by the TLB. The values are those of ``a``; only the memory differs."""
    if a.nbytes < _HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return a
    buf = mmap.mmap(-1, a.nbytes + _HUGE_PAGE)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # transparent huge pages disabled: ordinary pages
        pass
    raw = np.frombuffer(buf, np.uint8)
    start = (-raw.ctypes.data) % _HUGE_PAGE  # huge pages map 2 MiB-aligned ranges only
    out = raw[start:start + a.nbytes].reshape(a.shape)
    out[...] = a
    out.flags.writeable = False
    return out


def _key_dtype(max_key: int):
    return np.int16 if max_key < np.iinfo(np.int16).max else np.int32


# ------------------------------------------------------------------------------------------ index --


@dataclasses.dataclass
class CoarseToFineIndex:
    """A gallery prepared for CtF search (word views and device arrays, built once and reused). Levels of
    2 MiB or more are copied into huge-page memory (:func:`huge_page_copy`): the random candidate fetches of
    the later stages then rarely miss the TLB.

    Args:
      levels_g: packed gallery codes per level, a sequence ordered from the shortest to the longest code or
        a mapping ``{name: codes}`` (ordered by code length), all for the same ``ng`` images.

    Attributes: ``names`` (``None`` for a sequence), ``bits`` per level, ``num_gallery``, ``offsets``.
    """

    names: list[str] | None
    bits: tuple[int, ...]
    num_gallery: int
    packed: list[np.ndarray]
    _u64: list[np.ndarray] = dataclasses.field(repr=False)
    _u32_dev: list[Any] = dataclasses.field(repr=False, default_factory=list)

    @classmethod
    def build(cls, levels_g: Any) -> "CoarseToFineIndex":
        if isinstance(levels_g, CoarseToFineIndex):
            return levels_g
        names, arrays = _ordered_levels(levels_g, "levels_g")
        ng = arrays[0].shape[0]
        if ng < 1:
            raise ValueError("levels_g: the gallery must hold at least one code")
        for i, a in enumerate(arrays):
            if a.shape[0] != ng:
                raise ValueError(f"levels_g[{names[i] if names else i}]: {a.shape[0]} codes, expected {ng} like level 0")
            if i and a.shape[1] < arrays[i - 1].shape[1]:
                raise ValueError("levels_g: levels must be ordered from the shortest to the longest code")
        if ng >= 2**31 - 1:
            raise ValueError(f"levels_g: at most 2**31 - 2 gallery codes are supported, got {ng}")
        arrays = [huge_page_copy(a) for a in arrays]
        return cls(names=names, bits=tuple(8 * a.shape[1] for a in arrays), num_gallery=ng, packed=arrays,
                   _u64=[host_words(a, np.uint64) for a in arrays])

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """``offset[s]`` of the CtF key per level (:func:`ctf_offsets`)."""
        return ctf_offsets(self.bits)

    @functools.cached_property
    def max_key(self) -> int:
        """The largest possible CtF key (``offset[0] + l_0``)."""
        return int(self.offsets[0] + self.bits[0])

    def device_words(self, level: int):
        """The level's gallery as a ``uint32 [ng, W]`` JAX array (cached)."""
        if not self._u32_dev:
            self._u32_dev.extend([None] * len(self.packed))
        if self._u32_dev[level] is None:
            self._u32_dev[level] = jnp.asarray(host_words(self.packed[level], np.uint32))
        return self._u32_dev[level]


def measure_stage_costs(index: Any, *, num_queries: int = 16, num_candidates: int = 4096, repeats: int = 3,
                        seed: int = 0) -> tuple[tuple[float, float], ...] | None:
    """Per level of a CtF gallery index, ``(scan, fetch)`` in nanoseconds on this machine, one thread: the time
    per gallery item of the fused scan that stage 0 runs (the native exhaustive top-1 kernel: its threshold
    soon admits almost nothing, as a stage-0 threshold admits a small share), and per
    candidate of fetching a random candidate's code and computing its distance (:func:`fetch_cost`: the
    gather kernel of stages 1..N-1 over ``num_candidates`` random rows per query). The queries are
    ``num_queries`` gallery codes drawn with ``seed``; each time is the fastest of ``repeats`` (the least
    disturbed by other work). ``None`` without the native kernel.

    These are the costs of :func:`jhash.search.dto.fit_recall_thresholds`'s ``stage_costs``: random fetches
    are bound by memory latency, scans by arithmetic, and their ratio depends on the CPU, the level's size
    against the caches and the gallery's memory (:func:`huge_page_copy`), so it is measured, not assumed."""
    import time

    from jhash.search import native

    num_queries = _positive(num_queries, "num_queries")
    num_candidates = _positive(num_candidates, "num_candidates")
    repeats = _positive(repeats, "repeats")
    index = CoarseToFineIndex.build(index)
    if not native.is_available():
        return None
    ng = index.num_gallery
    rows = np.sort(np.random.default_rng(seed).choice(ng, min(num_queries, ng), replace=False))
    costs = []
    for g in index.packed:
        q = np.ascontiguousarray(g[rows])
        scan = float("inf")
        for _ in range(repeats + 1):  # the first call also warms the caches / pages
            start = time.perf_counter()
            native.hamming_topk_numpy(q, g, 1, num_threads=1)
            scan = min(scan, time.perf_counter() - start)
        fetch = fetch_cost(q, g, num_candidates=num_candidates, repeats=repeats, seed=seed)
        costs.append((1e9 * scan / (len(rows) * ng), fetch))
    return tuple(costs)


def fetch_cost(q: np.ndarray, g: np.ndarray, *, num_candidates: int = 4096, repeats: int = 3,
               seed: int = 0) -> float:
    """Nanoseconds per candidate of the native gather kernel on one thread: every query of ``q`` fetches
    ``num_candidates`` distinct random rows of ``g`` (packed codes of one width) in increasing order, as a CtF
    stage's candidate list, and the fastest of ``repeats`` calls counts. Each call draws new rows (after a
    first, warming call): rows fetched by the previous call would still be in the caches, which a search
    over many queries' candidates does not enjoy. Needs the native kernel."""
    from jhash.search import native

    ng = g.shape[0]
    c = min(_positive(num_candidates, "num_candidates"), ng)
    rng = np.random.default_rng(seed)
    best = float("inf")
    for _ in range(_positive(repeats, "repeats") + 1):
        cand = np.sort(np.stack([rng.choice(ng, c, replace=False) for _ in range(q.shape[0])]), axis=1)
        cand = cand.astype(np.int32)
        start = time.perf_counter()
        native.hamming_distance_gather_numpy(q, g, cand, num_threads=1)
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / (q.shape[0] * c)


def _prepare(levels_q, levels_g, thresholds):
    index = CoarseToFineIndex.build(levels_g)
    names_q, q = _ordered_levels(levels_q, "levels_q")
    if len(q) != len(index.bits):
        raise ValueError(f"levels_q: {len(q)} levels, but the gallery has {len(index.bits)}")
    if (names_q is None) != (index.names is None) or (names_q is not None and names_q != index.names):
        raise ValueError(f"levels_q: level names {names_q} do not match the gallery's {index.names}")
    nq = q[0].shape[0]
    for s, a in enumerate(q):
        if a.shape[0] != nq:
            raise ValueError(f"levels_q[{s}]: {a.shape[0]} codes, expected {nq} like level 0")
        if a.shape[1] != index.packed[s].shape[1]:
            raise ValueError(f"levels_q[{s}]: {8 * a.shape[1]}-bit codes, the gallery level has {index.bits[s]} bits")
    t = _thresholds(thresholds, index.names, index.bits)
    return index, q, t


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend in ("numpy", "jax"):
        return backend
    if _resolve_backend(backend) is not None:  # raises for an unusable 'native'
        return "native"
    return "numpy" if jax.default_backend() == "cpu" else "jax"


# ------------------------------------------------------------------------------ numpy (CPU) path --


@functools.partial(jax.jit, static_argnames=("out_dtype",))
def _scan_distances(qw, gw, out_dtype):
    """Fused XOR + popcount: ``[bq, W] x [ng, W] uint32 -> [bq, ng]`` Hamming distances."""
    d = jax.lax.population_count(qw[:, None, 0] ^ gw[None, :, 0]).astype(out_dtype)
    for w in range(1, qw.shape[1]):
        d = d + jax.lax.population_count(qw[:, None, w] ^ gw[None, :, w]).astype(out_dtype)
    return d


def _stage0(index: CoarseToFineIndex, q0: np.ndarray) -> np.ndarray:
    """Level-0 distances of a block of queries to the whole gallery (numpy ``[bq, ng]``)."""
    out_dtype = jnp.uint8 if index.bits[0] <= 255 else jnp.uint16
    bq = q0.shape[0]
    padded = max(8, 1 << (bq - 1).bit_length())  # a few static shapes only
    qw = host_words(q0, np.uint32)
    if padded != bq:
        qw = np.concatenate([qw, np.zeros((padded - bq, qw.shape[1]), np.uint32)])
    d = _scan_distances(jnp.asarray(qw), index.device_words(0), out_dtype)
    return np.asarray(d)[:bq]


def _pair_distances(qwords: np.ndarray, gwords: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Hamming distances of the pairs ``(rows[i], cols[i])`` (uint64 words), chunked to bound memory."""
    out = np.empty(rows.shape[0], np.int32)
    w = gwords.shape[1]
    step = max(1, _MAX_PAIR_WORDS // w)
    for s in range(0, rows.shape[0], step):
        e = min(s + step, rows.shape[0])
        x = np.bitwise_xor(gwords[cols[s:e]], qwords[rows[s:e]])
        c = np.bitwise_count(x)
        out[s:e] = c[:, 0] if w == 1 else c.sum(axis=1, dtype=np.int32)
    return out


@dataclasses.dataclass
class _Pairs:
    """Candidate pairs of a query block after all stages: for each pair its final stage and distance."""

    rows: np.ndarray  # int64 [P]
    cols: np.ndarray  # int64 [P]
    stage: np.ndarray  # int8 [P], the last stage s >= 1 whose candidate set holds the pair
    dist: np.ndarray  # int32 [P], d_stage
    counts: np.ndarray  # int64 [bq, N]


def _cascade(index: CoarseToFineIndex, q: list[np.ndarray], t: tuple[int, ...], d0: np.ndarray, start: int, stop: int,
             spare: int = 0) -> _Pairs:
    """Run stages 1..N-1 on the stage-0 candidates of a query block.

    With ``spare > 0`` the pairs with ``t_0 < d_0 <= t_0 + spare`` are extracted in the same pass and kept
    with ``stage == 0`` and ``dist == d_0`` (they fill the top-k of queries with too few candidates).
    """
    bq, ng = d0.shape
    n = len(index.bits)
    counts = np.zeros((bq, n), np.int64)
    t0 = t[0] if n > 1 else -1
    flat = np.flatnonzero(d0 <= t0 + spare) if t0 + spare >= 0 else np.zeros(0, np.int64)
    rows, cols = np.divmod(flat, ng)
    dist = d0.reshape(-1)[flat].astype(np.int32)
    stage = np.zeros(rows.shape[0], np.int8)
    alive = np.flatnonzero(dist <= t0)
    if n == 1:
        return _Pairs(rows, cols, stage, dist, counts)
    counts[:, 0] = np.bincount(rows[alive], minlength=bq)
    for s in range(1, n):
        qwords = host_words(q[s][start:stop], np.uint64)
        d = _pair_distances(qwords, index._u64[s], rows[alive], cols[alive])
        stage[alive] = s
        dist[alive] = d
        if s < n - 1:
            alive = alive[d <= t[s]]
            counts[:, s] = np.bincount(rows[alive], minlength=bq)
        else:
            counts[:, s] = counts[:, s - 1]
    return _Pairs(rows, cols, stage, dist, counts)


def _first_per_row(rows: np.ndarray, keys: np.ndarray, cols: np.ndarray, need: np.ndarray, ng: int, max_key: int):
    """Of the pairs, the ``need[row]`` smallest ``(key, col)`` per row, sorted: (rows, keys, cols)."""
    composite = (rows * (max_key + 1) + keys) * ng + cols
    order = np.argsort(composite, kind="stable")
    r = rows[order]
    first = np.searchsorted(r, r, side="left")
    rank = np.arange(r.shape[0]) - first
    sel = order[rank < need[r]]
    return rows[sel], keys[sel], cols[sel]


def _topk_block_numpy(index, q, t, k, start, stop):
    n, ng = len(index.bits), index.num_gallery
    offsets = index.offsets
    d0 = _stage0(index, q[0][start:stop])
    bq = d0.shape[0]
    pairs = _cascade(index, q, t, d0, start, stop, spare=1)
    keys_all = offsets[pairs.stage] + pairs.dist
    out_keys = np.empty((bq, k), np.int64)
    out_idx = np.empty((bq, k), np.int64)
    filled = np.zeros(bq, np.int64)
    need = np.full(bq, k, np.int64)
    # the refined prefix first, then what each stage dropped (stage 0: the extracted ring t_0 < d_0 <= t_0 + 1)
    for s in range(n - 1, -1, -1):
        if not need.any():
            break
        sel = (pairs.stage == s) & (need[pairs.rows] > 0)
        if not sel.any():
            continue
        r, kk, c = _first_per_row(pairs.rows[sel], keys_all[sel], pairs.cols[sel], need, ng, index.max_key)
        first = np.searchsorted(r, r, side="left")
        pos = filled[r] + (np.arange(r.shape[0]) - first)
        out_keys[r, pos] = kk
        out_idx[r, pos] = c
        got = np.bincount(r, minlength=bq)
        filled += got
        need -= got
    # rare: fewer than k items within t_0 + 1; continue with d_0 = t_0 + 2, t_0 + 3, ... (gallery order in a tie)
    u0 = (t[0] if n > 1 else -1) + 2
    for row in np.flatnonzero(need > 0):
        d = d0[row]
        u = u0
        while need[row] > 0:
            hit = np.flatnonzero(d == u)[: need[row]]
            m = hit.shape[0]
            out_keys[row, filled[row]:filled[row] + m] = offsets[0] + u
            out_idx[row, filled[row]:filled[row] + m] = hit
            filled[row] += m
            need[row] -= m
            u += 1
    return out_keys, out_idx, pairs.counts


def _keys_block_numpy(index, q, t, start, stop):
    d0 = _stage0(index, q[0][start:stop])
    pairs = _cascade(index, q, t, d0, start, stop)
    keys = d0.astype(_key_dtype(index.max_key)) + int(index.offsets[0])
    moved = pairs.stage > 0
    keys[pairs.rows[moved], pairs.cols[moved]] = index.offsets[pairs.stage[moved]] + pairs.dist[moved]
    return keys, pairs.counts


# ---------------------------------------------------------------------------------- pure JAX path --


def _popcount_rows(qw, gw):
    """``[..., W] x [..., W] uint32 -> [...]`` int32 Hamming distances."""
    return jnp.sum(jax.lax.population_count(qw ^ gw).astype(jnp.int32), axis=-1)


@functools.partial(jax.jit, static_argnames=("buffer", "bits"))
def _jax_buffer(qws, gws, thresholds, buffer, bits):
    """Per query: the ``buffer`` smallest ``(d_0, j)`` items, their CtF keys and stages, and ``|C_1|``."""
    offsets = jnp.asarray(ctf_offsets(bits), jnp.int32)
    d0 = _popcount_rows(qws[0][:, None, :], gws[0][None, :, :])  # [bq, ng]
    n = len(bits)
    if n == 1:
        count0 = jnp.zeros(d0.shape[0], jnp.int32)
        alive = jnp.zeros((d0.shape[0], buffer), bool)
    else:
        count0 = jnp.sum(d0 <= thresholds[0], axis=1).astype(jnp.int32)
    neg, idx = jax.lax.top_k(-d0, buffer)  # stable: equal distances keep the lower index first
    dbuf = -neg
    stage = jnp.zeros_like(dbuf)
    dist = dbuf
    if n > 1:
        alive = dbuf <= thresholds[0]
    for s in range(1, n):
        ds = _popcount_rows(qws[s][:, None, :], gws[s][idx])
        stage = jnp.where(alive, s, stage)
        dist = jnp.where(alive, ds, dist)
        if s < n - 1:
            alive = alive & (ds <= thresholds[s])
    keys = offsets[stage] + dist
    return keys, idx, stage, d0, count0


@functools.partial(jax.jit, static_argnames=("k",))
def _jax_select(keys, idx, k):
    order = jnp.lexsort((idx, keys), axis=-1)[:, :k]
    return jnp.take_along_axis(keys, order, axis=1), jnp.take_along_axis(idx, order, axis=1)


@jax.jit
def _jax_full_keys(keys, idx, stage, d0, offset0):
    full = d0 + offset0
    rows = jnp.arange(full.shape[0])[:, None]
    return full.at[rows, idx].set(jnp.where(stage > 0, keys, full[rows, idx]))


def _jax_run(index, q, t, start, stop, buffer, k=None):
    """The JAX path for queries ``start:stop``; recomputes overflowing queries with a bigger buffer."""
    ng = index.num_gallery
    bits = index.bits
    qws = tuple(jnp.asarray(host_words(a[start:stop], np.uint32)) for a in q)
    gws = tuple(index.device_words(s) for s in range(len(bits)))
    th = jnp.asarray(t if t else (0,), jnp.int32)
    cap = min(ng, max(buffer, k or 1))
    keys, idx, stage, d0, count0 = _jax_buffer(qws, gws, th, cap, bits)
    count0 = np.asarray(count0)
    over = np.flatnonzero(count0 > cap)
    if k is not None:
        out = [np.array(a) for a in _jax_select(keys, idx, k)]
    else:
        out = [np.array(_jax_full_keys(keys, idx, stage, d0, int(index.offsets[0])))]
    if over.size:  # exact fallback: a buffer that holds every stage-0 candidate of these queries
        big = min(ng, 1 << int(count0[over].max() - 1).bit_length())
        sub = tuple(a[over] for a in qws)
        kb, ib, sb, db, _ = _jax_buffer(sub, gws, th, big, bits)
        if k is not None:
            ko, io = _jax_select(kb, ib, k)
            out[0][over], out[1][over] = np.asarray(ko), np.asarray(io)
        else:
            out[0][over] = np.asarray(_jax_full_keys(kb, ib, sb, db, int(index.offsets[0])))
    return out, count0


# ----------------------------------------------------------------------------------------- public --


def coarse_to_fine_topk(
    levels_q: Any,
    levels_g: Any,
    thresholds: Any,
    k: int,
    *,
    backend: str = "auto",
    block_size: int = 64,
    buffer_size: int = 4096,
    num_threads: int | None = None,
) -> CtFTopK:
    """The first ``k`` entries of the CtF ranking of every query (module docstring; CtF §3.3).

    Args:
      levels_q: packed query codes per level (sequence short to long, or mapping name -> codes).
      levels_g: the gallery's levels in the same form, or a :class:`CoarseToFineIndex` built from them.
      thresholds: ``N - 1`` integer thresholds ``t_s`` in ``[0, l_s]`` (sequence), or the mapping
        ``{name: t}`` returned by :func:`jhash.search.dto.fit_thresholds`.
      k: results per query, ``1 <= k <= ng``.
      backend: ``"native"`` (C++ kernel), ``"numpy"``, ``"jax"`` (pure JAX) or ``"auto"`` (native on CPU when
        built, else numpy; jax on accelerators).
      block_size: queries per block (memory ``O(block_size * ng)``).
      buffer_size: candidate buffer per query of the JAX path (exact fallback beyond it).
      num_threads: threads of the native and numpy paths (query blocks searched concurrently); default: the
        CPUs this process may use.

    Returns:
      :class:`CtFTopK` ``(keys, indices, num_candidates)``; ``num_candidates[:, s]`` is the size of
      ``C_{s+1}`` (the candidates kept by ``t_s``; the last column repeats the final set's size). The JAX
      path reports only the stage-0 count, in every column.
    """
    index, q, t = _prepare(levels_q, levels_g, thresholds)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= index.num_gallery:
        raise ValueError(f"k: expected an integer with 1 <= k <= {index.num_gallery} (gallery size), got {k!r}")
    k = int(k)
    block_size = _positive(block_size, "block_size")
    buffer_size = _positive(buffer_size, "buffer_size")
    backend = _backend(backend)
    nq, n = q[0].shape[0], len(index.bits)
    keys = np.empty((nq, k), np.int32)
    idx = np.empty((nq, k), np.int32)
    counts = np.zeros((nq, n), np.int64)
    blocks = [(s, min(s + block_size, nq)) for s in range(0, nq, block_size)]
    if backend == "native":
        from jhash.search import native

        kk, ii, _, cc = native.coarse_to_fine_numpy(q, index.packed, t, k, num_threads=num_threads)
        return CtFTopK(keys=kk, indices=ii, num_candidates=cc)
    if backend == "numpy":
        index.device_words(0)  # build the device copy once, outside the worker threads

        def run(span):
            kk, ii, cc = _topk_block_numpy(index, q, t, k, *span)
            keys[span[0]:span[1]], idx[span[0]:span[1]], counts[span[0]:span[1]] = kk, ii, cc

        _map_threads(run, blocks, num_threads)
    else:
        for start, stop in blocks:
            (kk, ii), c0 = _jax_run(index, q, t, start, stop, buffer_size, k=k)
            keys[start:stop], idx[start:stop], counts[start:stop] = kk, ii, c0[:, None]
    return CtFTopK(keys=keys, indices=idx, num_candidates=counts)


def _map_threads(fn, items, num_threads: int | None) -> None:
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    num_threads = _positive(num_threads, "num_threads")
    if num_threads == 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with concurrent.futures.ThreadPoolExecutor(min(num_threads, len(items))) as pool:
        for f in [pool.submit(fn, item) for item in items]:
            f.result()


def _key_rows(index: CoarseToFineIndex, q: list[np.ndarray], t: tuple[int, ...], backend: str, buffer_size: int):
    """``rows(start, stop) -> keys [stop - start, ng]`` (the key dtype) for the chosen backend."""
    dtype = _key_dtype(index.max_key)

    def rows(start: int, stop: int) -> np.ndarray:
        if backend == "native":
            from jhash.search import native

            _, _, keys, _ = native.coarse_to_fine_numpy([a[start:stop] for a in q], index.packed, t, 0)
        elif backend == "numpy":
            keys, _ = _keys_block_numpy(index, q, t, start, stop)
        else:
            (keys,), _ = _jax_run(index, q, t, start, stop, buffer_size)
        return keys.astype(dtype, copy=False)

    return rows


def coarse_to_fine_key_blocks(
    levels_q: Any,
    levels_g: Any,
    thresholds: Any,
    *,
    backend: str = "auto",
    block_size: int = 64,
    buffer_size: int = 4096,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Stream the CtF keys ``[stop - start, ng]`` of query blocks as ``(start, stop, keys)``.

    The keys order the gallery exactly as the CtF ranking (stable sort; see the module docstring), so each
    block can be fed to ReID metrics as distances without holding an ``[nq, ng]`` matrix.
    """
    keys = coarse_to_fine_key_matrix(levels_q, levels_g, thresholds, backend=backend, block_size=block_size,
                                     buffer_size=buffer_size)
    for start in range(0, keys.shape[0], block_size):
        stop = min(start + block_size, keys.shape[0])
        yield start, stop, keys[start:stop]


def coarse_to_fine_key_matrix(
    levels_q: Any,
    levels_g: Any,
    thresholds: Any,
    *,
    backend: str = "auto",
    block_size: int = 64,
    buffer_size: int = 4096,
) -> LazyRows:
    """The CtF keys ``[nq, ng]`` as a :class:`jhash.search.streamed.LazyRows`: computed ``block_size`` query rows
    at a time when read, so ``reid_metrics(distances=...)`` evaluates CtF without an ``[nq, ng]`` matrix
    (memory ``O(block · ng)``). Same values as :func:`coarse_to_fine_distances`."""
    index, q, t = _prepare(levels_q, levels_g, thresholds)
    block_size = _positive(block_size, "block_size")
    rows = _key_rows(index, q, t, _backend(backend), _positive(buffer_size, "buffer_size"))
    return LazyRows((q[0].shape[0], index.num_gallery), _key_dtype(index.max_key), rows, block_rows=block_size)


def coarse_to_fine_distances(levels_q: Any, levels_g: Any, thresholds: Any, **kwargs) -> np.ndarray:
    """The CtF keys of every (query, gallery) pair, ``[nq, ng]`` (int16 when they fit, else int32).

    A stable sort of a row is the query's CtF ranking; pass the matrix to
    :func:`jhash.metrics.reid_metrics` as ``distances=``. Use :func:`coarse_to_fine_key_blocks` to
    stream a large gallery instead.
    """
    index = CoarseToFineIndex.build(levels_g)
    nq = _ordered_levels(levels_q, "levels_q")[1][0].shape[0]
    out = np.empty((nq, index.num_gallery), _key_dtype(index.max_key))
    for start, stop, keys in coarse_to_fine_key_blocks(levels_q, index, thresholds, **kwargs):
        out[start:stop] = keys
    return out


def coarse_to_fine_rank(levels_q: Any, levels_g: Any, thresholds: Any, **kwargs) -> np.ndarray:
    """Full CtF rankings ``int32 [nq, ng]``: row ``i`` lists every gallery index once, best first."""
    index = CoarseToFineIndex.build(levels_g)
    nq = _ordered_levels(levels_q, "levels_q")[1][0].shape[0]
    out = np.empty((nq, index.num_gallery), np.int32)
    for start, stop, keys in coarse_to_fine_key_blocks(levels_q, index, thresholds, **kwargs):
        out[start:stop] = np.argsort(keys, axis=1, kind="stable")
    return out


def _positive(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name}: expected a positive integer, got {x!r}")
    return int(x)
