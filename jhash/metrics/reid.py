"""ReID evaluation under the Market-1501 protocol: CMC, mAP and mINP, streamed over query blocks.

The protocol (Market-1501, DukeMTMC-reID, MSMT17, VeRi-776, CUHK03-NP; torchreid's ``eval_market1501``).
For every query ``q`` the gallery is ranked by distance, then

* gallery items with the **same pid and the same camid** as ``q`` are removed (same-camera matches are trivial);
* gallery items with **pid -1** (junk: bad detections, body parts) are removed for every query;
* items with **pid 0** (distractors) stay, as ordinary negatives;
* the remaining ("valid") items with ``g_pid == q_pid`` are the matches (positives);
* a query without any valid match is skipped and counted in ``num_skipped_queries``.

With ``p_1 < p_2 < ... < p_m`` the 0-based positions of the ``m`` matches in the ranked valid list:

* ``CMC[r-1] = 1 if p_1 < r else 0`` (the clipped cumulative sum of the match vector), averaged over valid
  queries. ``cmc`` always has ``max_rank`` entries; if a valid list is shorter than ``max_rank`` the value
  stays 1 after its end (torchreid instead shortens ``max_rank`` to the gallery size).
* ``AP = (1/m) * sum_i i / (p_i + 1)`` (mean precision at each hit); ``mAP`` is its mean over valid queries.
* ``INP = m / (p_m + 1)`` (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
  2021, the ReID-Survey ``eval_func``); ``mINP`` is its mean over valid queries.

These equal torchreid's ``eval_market1501`` (and the ReID-Survey/fast-reid mINP) run with a stable
``argsort``, **except for junk**: several torchreid versions do not remove pid -1 items explicitly (junk
then counts as a negative unless the dataset loader already dropped it). jhash follows the Market-1501
protocol and removes them.

Ties. Hamming distances tie heavily. ``ties="stable"`` (default) orders equal distances by gallery index —
what a stable sort, a counting sort and :func:`jhash.search.hamming_rank` give. ``ties="expected"`` returns
instead the exact expectation of CMC, AP and INP over a uniformly random order inside every group of equal
distance (closed forms, see :func:`_expected_metrics`), which removes the arbitrariness of the index order.

Streaming. From packed codes the queries are processed in blocks: an int32 ``[block, ng]`` Hamming distance
block from :func:`jhash.search.hamming_distance`, then, instead of a full sort, a histogram of the integer
distances per query and per gallery chunk locates every match in the stable order (a counting-sort rank,
O(ng) per query) — no float ``[nq, ng]`` matrix and no full ranking is ever built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

__all__ = ["ReIDMetrics", "reid_metrics"]

TIES = ("stable", "expected")
_JUNK_PID = -1
_MAX_HISTOGRAM_DISTANCE = 4096  # integer distance matrices up to this value use the histogram path
_BLOCK_ELEMENTS = 1 << 24  # queries per block ~ this / gallery size (int32 distances: 64 MiB per block)


@dataclasses.dataclass(frozen=True, eq=False)
class ReIDMetrics:
    """Result of :func:`reid_metrics`.

    ``cmc[r - 1]`` is the rank-r accuracy (float64, ``[max_rank]``); ``mAP`` and ``mINP`` are means over the
    valid queries. With no valid query at all, ``cmc``, ``mAP`` and ``mINP`` are NaN.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, r: int) -> float:
        """Rank-``r`` accuracy (1-based), i.e. ``cmc[r - 1]``."""
        return float(self.cmc[r - 1])


# ---------------------------------------------------------------------------------------------------------
# argument checking (shared with jhash.metrics.protocols and jhash.metrics.hashing)


def _int_vector(x, name: str, length: int | None = None, what: str = "") -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {a.dtype}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name} has {a.shape[0]} entries but {what} has {length}")
    return a.astype(np.int64, copy=False)


def _packed_codes(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(
            f"{name} must be packed codes, uint8 [n, L/8] from jhash.search.pack_codes; "
            f"got dtype {a.dtype} and shape {a.shape}"
        )
    return a


def _packed_pair(q_codes, g_codes, q_name="q_codes", g_name="g_codes") -> tuple[np.ndarray, np.ndarray]:
    q = _packed_codes(q_codes, q_name)
    g = _packed_codes(g_codes, g_name)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"{q_name} has {8 * q.shape[1]}-bit codes but {g_name} has {8 * g.shape[1]}-bit codes"
        )
    if g.shape[0] == 0:
        raise ValueError(f"{g_name} is empty: the gallery needs at least one code")
    if q.shape[1] == 0:
        raise ValueError(f"{q_name} has 0-bit codes")
    return q, g


def _positive_int(x, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {x!r}")
    if x < 1:
        raise ValueError(f"{name} must be >= 1, got {x}")
    return int(x)


def _block_size(block_size, ng: int, elements: int = _BLOCK_ELEMENTS) -> int:
    if block_size is None:
        return max(1, min(256, elements // max(ng, 1)))
    return _positive_int(block_size, "block_size")


# ---------------------------------------------------------------------------------------------------------
# distances


def _hamming_distance(q_packed, g_packed):
    """Hamming distances through :func:`jhash.search.hamming_distance` (int32 ``[nq, ng]``)."""
    from jhash.search import hamming_distance

    return hamming_distance(q_packed, g_packed)


def _hamming_blocks(q: np.ndarray, g: np.ndarray, block: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, int32 distances [stop - start, ng])`` for query blocks.

    The next block is dispatched before the current one is handed out, so that JAX's asynchronous dispatch
    computes it while the caller ranks the current one. The last block is padded to ``block`` rows so the
    jitted distance is compiled once.
    """
    try:  # keep the gallery on the device once instead of transferring it for every block
        import jax

        g_dev = jax.device_put(g)
    except Exception:  # pragma: no cover - jax is a dependency; stay usable without a backend
        g_dev = g
    nq = q.shape[0]

    def dispatch(start):
        qb = q[start : start + block]
        if qb.shape[0] < block and nq > block:
            qb = np.concatenate([qb, np.zeros((block - qb.shape[0], q.shape[1]), np.uint8)])
        return _hamming_distance(qb, g_dev)

    pending = dispatch(0) if nq else None
    for start in range(0, nq, block):
        stop = min(start + block, nq)
        current = pending
        pending = dispatch(stop) if stop < nq else None
        d = np.asarray(current)[: stop - start]
        yield start, stop, d


# ---------------------------------------------------------------------------------------------------------
# protocol bookkeeping: which gallery items are matches / same-camera removals of a query


@dataclasses.dataclass
class _Gallery:
    """The gallery after junk removal, with its items grouped by pid."""

    keep: np.ndarray | None  # bool [ng] of non-junk items, None when there is no junk
    pids: np.ndarray  # int64 [ng'] pids of the kept items
    camids: np.ndarray | None  # int64 [ng'] or None (no camera filter)
    by_pid: np.ndarray  # [ng'] kept indices sorted (stably) by pid
    uniq: np.ndarray  # distinct pids
    starts: np.ndarray  # start of each pid in by_pid
    counts: np.ndarray  # number of items of each pid

    @classmethod
    def build(cls, g_pids: np.ndarray, g_camids: np.ndarray | None) -> _Gallery:
        junk = g_pids == _JUNK_PID
        keep = ~junk if junk.any() else None
        pids = g_pids if keep is None else g_pids[keep]
        camids = None if g_camids is None else (g_camids if keep is None else g_camids[keep])
        by_pid = np.argsort(pids, kind="stable")
        uniq, starts, counts = np.unique(pids[by_pid], return_index=True, return_counts=True)
        return cls(keep, pids, camids, by_pid, uniq, starts, counts)

    @property
    def size(self) -> int:
        return self.pids.shape[0]

    def pairs(self, q_pids: np.ndarray, q_camids: np.ndarray | None):
        """All (query row, kept gallery index) with equal pid, gallery index ascending within each query.

        Returns ``(row, gidx, positive)``; ``positive`` is False for the same-camera items the protocol
        removes (they stay in the list because the ranking still has to skip them). Needs a non-empty gallery.
        """
        loc = np.minimum(np.searchsorted(self.uniq, q_pids), len(self.uniq) - 1)
        cnt = np.where(self.uniq[loc] == q_pids, self.counts[loc], 0)
        row = np.repeat(np.arange(q_pids.shape[0]), cnt)
        offs = np.arange(row.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        gidx = self.by_pid[np.repeat(self.starts[loc], cnt) + offs]
        if self.camids is None or q_camids is None:
            positive = np.ones(row.shape[0], bool)
        else:
            positive = self.camids[gidx] != q_camids[row]
        return row, gidx, positive


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of every run of equal consecutive keys."""
    start = np.ones(keys.shape[0], bool)
    if keys.shape[0] > 1:
        start[1:] = keys[1:] != keys[:-1]
    return start


def _exclusive_count_in_runs(flag: np.ndarray, run_start: np.ndarray) -> np.ndarray:
    """For each element: number of True ``flag`` before it inside its run (runs given by ``run_start``)."""
    c = np.cumsum(flag, dtype=np.int64) - flag
    first = np.maximum.accumulate(np.where(run_start, np.arange(flag.shape[0]), 0))
    return c - c[first]


# ---------------------------------------------------------------------------------------------------------
# per-block location of the matches in the ranked valid list


def _chunk_size(ng: int, bins: int, pairs_per_query: float) -> int:
    """Gallery chunk of the per-query 2-D histogram: balances histogram size and the in-chunk scan."""
    c = math.sqrt(ng * bins / max(pairs_per_query, 1.0))
    return int(min(1 << 16, max(64, 1 << max(0, round(math.log2(max(c, 1.0)))))))


class _ChunkHistogram:
    """Per-query histogram over (gallery chunk, integer distance) of a block of distances.

    ``hist[q, c, v]`` counts the gallery items of chunk ``c`` (indices ``c*chunk .. (c+1)*chunk - 1``) at
    distance ``v`` from query ``q``: one ``np.bincount`` per query row over ``chunk_offset + distance``
    (row by row keeps the key buffer and the histogram cache-sized; buffers are reused across blocks).
    """

    def __init__(self, ng: int, bins: int, chunk: int, block: int):
        self.ng, self.bins, self.chunk = ng, bins, chunk
        self.nchunk = -(-ng // chunk)
        self.size = self.nchunk * bins
        self.offsets = (np.arange(ng, dtype=np.int64) // chunk) * bins
        self._key = np.empty(ng, np.int64)
        self._hist = np.empty((block, self.nchunk, bins), np.int64)

    def __call__(self, d: np.ndarray) -> np.ndarray:
        hist = self._hist[: d.shape[0]]
        flat = hist.reshape(d.shape[0], self.size)
        for i in range(d.shape[0]):
            np.add(d[i], self.offsets, out=self._key)
            flat[i] = np.bincount(self._key, minlength=self.size)
        return hist


def _locate_integer_block(d: np.ndarray, row, gidx, positive, histogram: _ChunkHistogram, need_stable: bool):
    """Matches of a block of integer distances ``d`` (``[bq, ng]``, values in ``[0, histogram.bins)``).

    For every pair (row, gidx) — all gallery items of the query's pid, matches and same-camera removals —
    count, by a histogram over (query, gallery chunk, distance), the gallery items that precede it in the
    stable (distance, index) order; subtracting the removed items that precede it gives its position in the
    valid list. Returns, for the matches only, ``(row, pos, less, equal)``: stable 0-based position (or None
    when ``need_stable`` is False), number of valid items at a strictly smaller distance, number of valid
    items at the same distance (its tie group, itself included).
    """
    bq, ng = d.shape
    if row.shape[0] == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    chunk, nchunk = histogram.chunk, histogram.nchunk
    hist = histogram(d)  # [query, chunk, value]
    per_value = hist.sum(axis=1)  # [bq, bins]
    less_than = np.cumsum(per_value, axis=1) - per_value  # items with a strictly smaller value

    dd = d[row, gidx].astype(np.int64)
    less = less_than[row, dd]
    equal = per_value[row, dd]

    # removed (same-camera) items: how many precede each pair, by value and in (value, index) order
    order = np.lexsort((gidx, dd, row))
    r_o, removed_o = row[order], ~positive[order]
    group = _segment_starts(r_o) | _segment_starts(dd[order])  # runs of equal (query, value)
    before_o = _exclusive_count_in_runs(removed_o, _segment_starts(r_o))
    first_of_group = np.maximum.accumulate(np.where(group, np.arange(order.shape[0]), 0))
    group_id = np.cumsum(group) - 1
    rem_before, rem_less, rem_equal = (np.empty_like(dd) for _ in range(3))
    rem_before[order] = before_o
    rem_less[order] = before_o[first_of_group]
    rem_equal[order] = np.bincount(group_id, weights=removed_o).astype(np.int64)[group_id]

    pos = None
    if need_stable:
        c = gidx // chunk
        # items of the same value in the chunks before the pair's own chunk
        lanes = np.arange(nchunk)
        before = np.where(lanes < c[:, None], hist[row[:, None], lanes, dd[:, None]], 0).sum(axis=1)
        # items of the same value inside the pair's own chunk, before it: a scan of the chunk's row segment
        within = np.zeros_like(dd)
        offset = gidx - c * chunk
        nfull = ng // chunk
        segments = np.lib.stride_tricks.as_strided(  # a view: segments[q, c] = d[q, c*chunk : (c+1)*chunk]
            d, shape=(bq, nfull, chunk), strides=(d.strides[0], chunk * d.strides[1], d.strides[1]), writeable=False
        )
        full = np.flatnonzero(c < nfull)
        lane = np.arange(chunk)
        step = max(1, (1 << 20) // chunk)
        for s in range(0, full.shape[0], step):
            sub = full[s : s + step]
            w = segments[row[sub], c[sub]]
            within[sub] = np.count_nonzero((w == dd[sub, None]) & (lane < offset[sub, None]), axis=1)
        last = np.flatnonzero(c >= nfull)  # pairs in the last, partial chunk
        if last.shape[0]:
            w = d[row[last], nfull * chunk :]
            hit = (w == dd[last, None]) & (lane[: w.shape[1]] < offset[last, None])
            within[last] = np.count_nonzero(hit, axis=1)
        pos = less + before + within - rem_before

    m = positive
    return row[m], (None if pos is None else pos[m]), (less - rem_less)[m], (equal - rem_equal)[m]


def _locate_ranked_block(order, rows_pids, rows_camids, g_pids, g_camids, dist_sorted=None):
    """Matches of a block given as a ranking ``order`` ([bq, ng] gallery indices, best first).

    Returns ``(row, pos, less, equal)`` like :func:`_locate_integer_block`; ``less``/``equal`` need the
    distances in ranked order (``dist_sorted``) and are None without them.
    """
    rp = g_pids[order]
    valid = rp != _JUNK_PID
    same = rp == rows_pids[:, None]
    if g_camids is not None:
        valid &= ~(same & (g_camids[order] == rows_camids[:, None]))
    match = valid & same
    vcum = np.cumsum(valid, axis=1, dtype=np.int64)
    row, col = np.nonzero(match)
    pos = vcum[row, col] - 1
    if dist_sorted is None:
        return row, pos, None, None
    bq, ng = order.shape
    lanes = np.broadcast_to(np.arange(ng), (bq, ng))
    brk = dist_sorted[:, 1:] != dist_sorted[:, :-1]
    is_start = np.concatenate([np.ones((bq, 1), bool), brk], axis=1)
    is_end = np.concatenate([brk, np.ones((bq, 1), bool)], axis=1)
    run_start = np.maximum.accumulate(np.where(is_start, lanes, 0), axis=1)[row, col]
    run_end = np.minimum.accumulate(np.where(is_end, lanes, ng)[:, ::-1], axis=1)[:, ::-1][row, col]
    less = vcum[row, run_start] - valid[row, run_start]
    equal = vcum[row, run_end] - less
    return row, pos, less, equal


# ---------------------------------------------------------------------------------------------------------
# metrics from the located matches


def _stable_metrics(q, pos, max_rank):
    """Per valid query AP, INP and first-hit position from sorted (q, pos)."""
    uq, start, m = np.unique(q, return_index=True, return_counts=True)
    k_in_q = np.arange(q.shape[0]) - np.repeat(start, m)
    seg = np.repeat(np.arange(uq.shape[0]), m)
    ap = np.bincount(seg, weights=(k_in_q + 1) / (pos + 1.0), minlength=uq.shape[0]) / m
    inp = m / (pos[start + m - 1] + 1.0)
    first = pos[start]
    hits = np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc_sum = np.cumsum(hits).astype(np.float64)
    return uq.shape[0], ap, inp, cmc_sum


def _harmonic(n_max: int) -> np.ndarray:
    """H[i] = sum_{t=1}^{i} 1/t for i = 0..n_max."""
    h = np.zeros(n_max + 1)
    np.cumsum(1.0 / np.arange(1, n_max + 1), out=h[1:])
    return h


def _expected_metrics(q, less, equal, max_rank):
    """Exact expectations over a uniformly random order inside every tie group.

    Per query, the matches fall into tie groups (equal distance); a group has ``a`` valid items before it,
    ``n`` valid items in it, ``k`` matches in it and ``r`` matches in earlier groups. Its matches occupy a
    uniformly random ``k``-subset of the slots ``a+1..a+n`` (1-based positions).

    * AP (McSherry & Najork, "Computing Information Retrieval Performance Measures Efficiently in the
      Presence of Tied Scores", ECIR 2008): slot ``t`` holds a match with probability ``k/n`` and then
      ``(t-1)(k-1)/(n-1)`` of the other matches precede it on average, so the group adds
      ``(k/n) * sum_{t=1..n} (r + 1 + (t-1)(k-1)/(n-1)) / (a + t)`` to ``m * AP``; the sum has the closed form
      ``n*c1 + (c0 - c1*a) * (H[a+n] - H[a])`` with ``c1 = (k-1)/(n-1)``, ``c0 = r + 1 - c1`` and harmonic numbers
      ``H``.
    * CMC@R: only the first group matters: ``P(first hit <= R) = 1 - C(n-k, R-a) / C(n, R-a)`` for
      ``a < R < a + n`` (hypergeometric: no match among the first ``R - a`` slots), 0 below, 1 above.
    * INP = m / (a + T) with ``T`` the last match's slot in the last group: ``P(T = t) = C(t-1, k-1) / C(n, k)``,
      ``t = k..n``; the expectation is summed over that distribution.
    """
    order = np.lexsort((less, q))
    q, less, equal = q[order], less[order], equal[order]
    uq, start, m = np.unique(q, return_index=True, return_counts=True)
    nv = uq.shape[0]
    seg = np.repeat(np.arange(nv), m)
    k_in_q = np.arange(q.shape[0]) - np.repeat(start, m)

    gstart = np.flatnonzero(_segment_starts(q) | _segment_starts(less))  # tie groups holding matches
    gk = np.diff(np.append(gstart, q.shape[0]))
    ga, gn, gr, gseg = less[gstart], equal[gstart], k_in_q[gstart], seg[gstart]
    c1 = np.where(gn > 1, (gk - 1) / np.maximum(gn - 1, 1), 0.0)
    c0 = gr + 1 - c1
    h = _harmonic(int((ga + gn).max()))
    group_sum = gn * c1 + (c0 - c1 * ga) * (h[ga + gn] - h[ga])
    ap = np.bincount(gseg, weights=gk / gn * group_sum, minlength=nv) / m

    # CMC from the first group of every query
    a1, n1, k1 = less[start], equal[start], gk[np.searchsorted(gstart, start)]
    i = np.arange(max_rank)
    num = (n1 - k1)[:, None] - i
    den = n1[:, None] - i
    none_first = np.cumprod(np.where(num > 0, num / np.maximum(den, 1), 0.0), axis=1)  # [nv, max_rank]
    slots = (i + 1)[None, :] - a1[:, None]  # slots of the first group inside the top R
    p_none = np.take_along_axis(none_first, np.clip(slots - 1, 0, max_rank - 1), axis=1)
    cmc_q = np.where(slots <= 0, 0.0, 1.0 - p_none)
    cmc_sum = cmc_q.sum(axis=0)

    # INP from the last group of every query
    last_g = np.searchsorted(gstart, start + m - 1, side="right") - 1
    inp = np.empty(nv)
    for j, (a, n, k, mm) in enumerate(zip(ga[last_g], gn[last_g], gk[last_g], m)):
        t = np.arange(n, k - 1, -1, dtype=np.float64)  # n, n-1, ..., k
        pmf = np.empty_like(t)
        pmf[0] = k / n
        if t.shape[0] > 1:
            pmf[1:] = k / n * np.cumprod((t[:-1] - k) / (t[:-1] - 1))
        inp[j] = mm * np.sum(pmf / (a + t))
    return nv, ap, inp, cmc_sum


def _finish(nq, located, max_rank, ties) -> ReIDMetrics:
    q = np.concatenate([x[0] for x in located]) if located else np.zeros(0, np.int64)
    if q.shape[0] == 0:
        nan = float("nan")
        cmc = np.full(max_rank, np.nan)
        cmc.setflags(write=False)
        return ReIDMetrics(cmc, nan, nan, 0, nq)
    if ties == "stable":
        pos = np.concatenate([x[1] for x in located]).astype(np.int64)
        order = np.lexsort((pos, q))
        nv, ap, inp, cmc_sum = _stable_metrics(q[order], pos[order], max_rank)
    else:
        less = np.concatenate([x[2] for x in located]).astype(np.int64)
        equal = np.concatenate([x[3] for x in located]).astype(np.int64)
        nv, ap, inp, cmc_sum = _expected_metrics(q, less, equal, max_rank)
    cmc = cmc_sum / nv
    cmc.setflags(write=False)
    return ReIDMetrics(cmc, float(np.mean(ap)), float(np.mean(inp)), int(nv), int(nq - nv))


# ---------------------------------------------------------------------------------------------------------
# public entry point


def reid_metrics(
    q_codes=None,
    g_codes=None,
    *,
    distances=None,
    ranking=None,
    q_pids,
    g_pids,
    q_camids=None,
    g_camids=None,
    max_rank: int = 50,
    ties: str = "stable",
    block_size: int | None = None,
) -> ReIDMetrics:
    """CMC, mAP and mINP under the Market-1501 protocol (see the module docstring for the exact definitions).

    Give exactly one of three inputs:

    * ``q_codes, g_codes`` — packed binary codes (``uint8 [n, L/8]``, :func:`jhash.search.pack_codes`).
      Streamed: query blocks of int32 Hamming distances, never a ``[nq, ng]`` matrix; junk gallery items
      are dropped before any distance is computed.
    * ``distances`` — a precomputed ``[nq, ng]`` distance matrix (any real dtype, smaller is closer; numpy,
      jax or a memmap), read block by block. Non-negative integer distances up to 4096 take the same
      histogram path as codes, others a stable sort.
    * ``ranking`` — a precomputed ``[nq, ng]`` ranking: row ``i`` lists all gallery indices, best first
      (e.g. :func:`jhash.search.hamming_rank`). ``ties="expected"`` needs distances, not a ranking.

    Args:
      q_pids, g_pids: integer identities; ``g_pids == -1`` is junk (removed), 0 is an ordinary distractor.
      q_camids, g_camids: integer camera ids; both None means no camera filter (VehicleID protocol).
      max_rank: length of the returned CMC curve (>= 1).
      ties: ``"stable"`` (equal distances ordered by gallery index) or ``"expected"`` (expectation over a
        uniformly random order inside ties).
      block_size: queries per block (default: about 16M distance entries per block).

    Returns:
      :class:`ReIDMetrics` with ``cmc`` (``[max_rank]``), ``mAP``, ``mINP``, ``num_valid_queries`` and
      ``num_skipped_queries``.

    Raises:
      ValueError: naming the argument, for a wrong combination of inputs, mismatched lengths, non-integer
        ids, ``max_rank < 1``, an unknown ``ties``, NaN distances or a ranking row that is not a permutation.
    """
    given = [q_codes is not None or g_codes is not None, distances is not None, ranking is not None]
    if sum(given) != 1:
        raise ValueError("reid_metrics needs exactly one of: q_codes and g_codes, distances=, ranking=")
    if given[0] and (q_codes is None or g_codes is None):
        raise ValueError("q_codes and g_codes must be given together")
    max_rank = _positive_int(max_rank, "max_rank")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if ranking is not None and ties == "expected":
        raise ValueError('ties="expected" needs distances (or codes): a ranking carries no tie information')
    if block_size is not None:
        _positive_int(block_size, "block_size")

    if given[0]:
        q_codes, g_codes = _packed_pair(q_codes, g_codes)
        nq, ng = q_codes.shape[0], g_codes.shape[0]
    else:
        name = "distances" if distances is not None else "ranking"
        mat = _matrix(distances if distances is not None else ranking, name)
        nq, ng = mat.shape
    q_pids = _int_vector(q_pids, "q_pids", nq, "the query set")
    g_pids = _int_vector(g_pids, "g_pids", ng, "the gallery")
    if (q_camids is None) != (g_camids is None):
        raise ValueError("q_camids and g_camids must both be given or both be None")
    if q_camids is not None:
        q_camids = _int_vector(q_camids, "q_camids", nq, "q_pids")
        g_camids = _int_vector(g_camids, "g_camids", ng, "g_pids")

    if given[0]:
        gal = _Gallery.build(g_pids, g_camids)
        g_kept = g_codes if gal.keep is None else g_codes[gal.keep]
        block = _block_size(block_size, gal.size)
        blocks = _hamming_blocks(q_codes, g_kept, block) if gal.size else iter(())
        bins = 8 * g_codes.shape[1] + 1
        return _integer_metrics(blocks, block, gal, q_pids, q_camids, bins, max_rank, ties)

    if ranking is not None:
        if not np.issubdtype(mat.dtype, np.integer):
            raise ValueError(f"ranking must hold integer gallery indices, got dtype {mat.dtype}")
    elif not (np.issubdtype(mat.dtype, np.integer) or np.issubdtype(mat.dtype, np.floating)):
        raise ValueError(f"distances must be a real-valued array, got dtype {mat.dtype}")
    elif np.issubdtype(mat.dtype, np.integer) and nq:
        lo, hi = int(np.min(mat)), int(np.max(mat))
        if lo >= 0 and hi <= _MAX_HISTOGRAM_DISTANCE:  # small integer distances: the streaming histogram path
            gal = _Gallery.build(g_pids, g_camids)
            block = _block_size(block_size, gal.size)

            def dense_blocks():
                for s in range(0, nq, block):
                    d = np.asarray(mat[s : s + block])
                    yield s, min(s + block, nq), (d if gal.keep is None else d[:, gal.keep])

            blocks = dense_blocks() if gal.size else iter(())
            return _integer_metrics(blocks, block, gal, q_pids, q_camids, hi + 1, max_rank, ties)

    # general distances (stable sort per block) or a ranking
    block = _block_size(block_size, ng, 1 << 22)
    located = []
    for s in range(0, nq, block):
        e = min(s + block, nq)
        dist_sorted = None
        if distances is not None:
            d = np.asarray(mat[s:e])
            if np.issubdtype(d.dtype, np.floating) and np.isnan(d).any():
                raise ValueError("distances contains NaN")
            order = np.argsort(d, axis=1, kind="stable")
            if ties == "expected":
                dist_sorted = np.take_along_axis(d, order, axis=1)
        else:
            order = np.asarray(mat[s:e]).astype(np.int64, copy=False)
            _check_permutations(order, ng)
        qc = None if q_camids is None else q_camids[s:e]
        r, p, less, eq = _locate_ranked_block(order, q_pids[s:e], qc, g_pids, g_camids, dist_sorted)
        located.append((r + s, p, less, eq))
    return _finish(nq, located, max_rank, ties)


def _matrix(x, name: str):
    """A 2-D array-like kept as is (numpy, jax, memmap: read block by block), lists converted."""
    if getattr(x, "ndim", None) is None or getattr(x, "dtype", None) is None:
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [num_queries, num_gallery] array, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has an empty gallery (shape {tuple(x.shape)})")
    return x


def _integer_metrics(blocks, block, gal: _Gallery, q_pids, q_camids, bins, max_rank, ties) -> ReIDMetrics:
    """Metrics from blocks ``(start, stop, int distances [stop - start, ng'])`` over the junk-free gallery."""
    located = []
    if gal.size:
        ppq = len(gal.pairs(q_pids, q_camids)[0]) / max(q_pids.shape[0], 1)
        histogram = _ChunkHistogram(gal.size, bins, _chunk_size(gal.size, bins, ppq), block)
        for s, e, d in blocks:
            row, gidx, positive = gal.pairs(q_pids[s:e], None if q_camids is None else q_camids[s:e])
            r, p, less, eq = _locate_integer_block(d, row, gidx, positive, histogram, ties == "stable")
            located.append((r + s, p, less, eq))
    return _finish(q_pids.shape[0], located, max_rank, ties)


def _check_permutations(order: np.ndarray, ng: int) -> None:
    if order.size and (order.min() < 0 or order.max() >= ng):
        raise ValueError(f"ranking must hold gallery indices in [0, {ng}), got values outside")
    bq = order.shape[0]
    counts = np.bincount((order + (np.arange(bq, dtype=np.int64) * ng)[:, None]).ravel(), minlength=bq * ng)
    if not np.all(counts == 1):
        raise ValueError("every row of ranking must be a permutation of all gallery indices")
