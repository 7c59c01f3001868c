"""Distance Threshold Optimisation (DTO) for coarse-to-fine search.

Wang et al., "Faster Person Re-Identification", ECCV 2020, eqs. 6-8 (cleaned in
``docs/methods.md`` §4). For one code length ``l`` and a validation split of *training*
identities (never the test split), let ``R(t)`` be the fraction of relevant pairs (same identity) whose
Hamming distance is ``<= t`` and ``N(t)`` the same fraction of non-relevant pairs. Keeping the candidates
within distance ``t`` then has recall ``R(t)`` and precision ``R(t) / (R(t) + rho N(t))`` with
``rho = n_neg / n_pos`` the class ratio, so

    F_beta(t) = (1 + beta^2) R(t) / (beta^2 + R(t) + rho N(t))                      (eq. 8)

and DTO chooses ``t* = argmax_{t in {0..l}} F_beta(t)`` exactly over the ``l + 1`` integer thresholds.
The paper models ``R`` and ``N`` by Gaussian CDFs fitted to the two distance populations (eq. 6-7);
``model="empirical"`` uses the measured CDFs instead (it equals a brute-force count over pairs).

Pair statistics are accumulated as histograms of integer distances, block by block, so a large
validation set never materialises its pair list.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from typing import Literal, Mapping, Sequence, Union

import numpy as np

from jhash.search.hamming import hamming_distance

Rho = Union[float, Literal["ratio"]]


@dataclasses.dataclass(frozen=True)
class PairHistograms:
    """Counts of integer Hamming distances ``0..num_bits`` over unordered pairs ``i < j``."""

    positive: np.ndarray  # int64 [num_bits + 1], pairs with the same identity
    negative: np.ndarray  # int64 [num_bits + 1], pairs with different identities

    @property
    def num_bits(self) -> int:
        return int(self.positive.shape[0] - 1)


def _check_codes_and_pids(packed_codes, pids) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(packed_codes)
    labels = np.asarray(pids)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(
            f"packed_codes must be a uint8 array [n, L/8] (see jhash.search.pack_codes), "
            f"got dtype {codes.dtype} and shape {codes.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != codes.shape[0]:
        raise ValueError(
            f"pids must be a 1-D array with one identity per code ({codes.shape[0]}), got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"pids must be integers, got dtype {labels.dtype}")
    if codes.shape[0] < 2:
        raise ValueError(f"packed_codes must hold at least 2 codes to form pairs, got {codes.shape[0]}")
    return codes, labels


def pair_distance_histograms(packed_codes, pids, *, block_size: int = 1024) -> PairHistograms:
    """Histograms of Hamming distances of relevant and non-relevant pairs ``i < j`` (streamed).

    Memory is ``O(block_size * n)`` for one block of the distance matrix; the pair list is never built.
    """
    codes, labels = _check_codes_and_pids(packed_codes, pids)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    n, num_bits = codes.shape[0], codes.shape[1] * 8
    positive = np.zeros(num_bits + 1, np.int64)
    negative = np.zeros(num_bits + 1, np.int64)
    for start in range(0, n - 1, block_size):
        stop = min(start + block_size, n - 1)
        # rows start..stop-1 against columns start+1..n-1; keep only j > i
        dist = np.asarray(hamming_distance(codes[start:stop], codes[start + 1 :]))
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start + 1, n)[None, :]
        upper = cols > rows
        same = labels[start:stop, None] == labels[None, start + 1 :]
        positive += np.bincount(dist[upper & same], minlength=num_bits + 1)
        negative += np.bincount(dist[upper & ~same], minlength=num_bits + 1)
    if positive.sum() == 0:
        raise ValueError("pids: no two codes share an identity, so there are no relevant pairs to fit")
    if negative.sum() == 0:
        raise ValueError("pids: all codes share one identity, so there are no non-relevant pairs to fit")
    return PairHistograms(positive=positive, negative=negative)


def _normal_cdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    if std <= 0:
        return (x >= mean).astype(np.float64)
    z = (x - mean) / (std * math.sqrt(2.0))
    return 0.5 * (1.0 + np.vectorize(math.erf)(z))


def histogram_moments(hist: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the distances counted by ``hist`` (eq. 6: Gaussian fit)."""
    counts = np.asarray(hist, np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("hist must count at least one pair")
    values = np.arange(counts.shape[0], dtype=np.float64)
    mean = float((counts * values).sum() / total)
    var = float((counts * (values - mean) ** 2).sum() / total)
    return mean, math.sqrt(var)


def cumulative_fractions(
    hists: PairHistograms, model: Literal["gaussian", "empirical"] = "gaussian"
) -> tuple[np.ndarray, np.ndarray]:
    """``(R(t), N(t))`` for ``t = 0..num_bits``: fraction of relevant / non-relevant pairs within ``t``.

    ``gaussian`` evaluates the fitted normal CDF at ``t + 0.5`` (continuity correction for integer
    distances, eq. 7); ``empirical`` is the measured cumulative histogram.
    """
    t = np.arange(hists.num_bits + 1, dtype=np.float64)
    if model == "empirical":
        r = np.cumsum(hists.positive) / hists.positive.sum()
        n = np.cumsum(hists.negative) / hists.negative.sum()
    elif model == "gaussian":
        r = _normal_cdf(t + 0.5, *histogram_moments(hists.positive))
        n = _normal_cdf(t + 0.5, *histogram_moments(hists.negative))
    else:
        raise ValueError(f"model must be 'gaussian' or 'empirical', got {model!r}")
    return r, n


def f_beta_curve(recall: np.ndarray, neg_fraction: np.ndarray, *, beta: float = 2.0, rho: float = 1.0) -> np.ndarray:
    """``F_beta(t) = (1 + beta^2) R(t) / (beta^2 + R(t) + rho N(t))`` for every threshold (eq. 8)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    recall = np.asarray(recall, np.float64)
    neg_fraction = np.asarray(neg_fraction, np.float64)
    return (1.0 + beta**2) * recall / (beta**2 + recall + rho * neg_fraction)


def optimal_threshold(
    hists: PairHistograms,
    *,
    beta: float = 2.0,
    rho: Rho = 1.0,
    model: Literal["gaussian", "empirical"] = "gaussian",
) -> int:
    """The integer threshold ``t*`` in ``[0, num_bits]`` maximising ``F_beta`` (smallest on ties).

    ``rho=1`` reproduces the public implementation (light-reid); ``rho="ratio"`` weights non-relevant
    pairs by the measured class ratio ``n_neg / n_pos``, i.e. the true precision.
    """
    if isinstance(rho, str):
        if rho != "ratio":
            raise ValueError(f"rho must be a number >= 0 or 'ratio', got {rho!r}")
        rho_value = float(hists.negative.sum()) / float(hists.positive.sum())
    else:
        rho_value = float(rho)
    recall, neg_fraction = cumulative_fractions(hists, model)
    return int(np.argmax(f_beta_curve(recall, neg_fraction, beta=beta, rho=rho_value)))


def _level_order(codes_by_name: Mapping[str, np.ndarray], order: Sequence[str] | None) -> list[str]:
    """The level names short to long (``order``, or sorted by code width); at least two, all present."""
    if not codes_by_name:
        raise ValueError("codes_by_name must hold at least two code levels, got none")
    names = list(order) if order is not None else sorted(codes_by_name, key=lambda k: np.asarray(codes_by_name[k]).shape[-1])
    missing = [name for name in names if name not in codes_by_name]
    if missing:
        raise ValueError(f"order names levels {missing} that are not in codes_by_name ({sorted(codes_by_name)})")
    if len(names) < 2:
        raise ValueError(f"codes_by_name must hold at least two code levels, got {names}")
    return names


def fit_thresholds(
    codes_by_name: Mapping[str, np.ndarray],
    pids,
    *,
    order: Sequence[str] | None = None,
    beta: float = 2.0,
    rho: Rho = 1.0,
    model: Literal["gaussian", "empirical"] = "gaussian",
    block_size: int = 1024,
) -> dict[str, int]:
    """DTO for a code pyramid: one threshold per code length except the longest (CtF eqs. 6-8).

    Args:
      codes_by_name: packed codes (uint8 ``[n, L/8]``) of the *validation* split, one entry per level
        (e.g. ``{"l32": ..., "l128": ..., "l512": ..., "l2048": ...}``), all for the same images.
      pids: identities ``[n]`` of those images.
      order: level names from shortest to longest; default sorts by code length.
      beta, rho, model: see :func:`optimal_threshold`.

    Returns:
      ``{name: threshold}`` for every level but the longest (which ranks the final candidates).
    """
    names = _level_order(codes_by_name, order)
    n = np.asarray(codes_by_name[names[0]]).shape[0]
    for name in names:
        if np.asarray(codes_by_name[name]).shape[0] != n:
            raise ValueError(
                f"codes_by_name[{name!r}] has {np.asarray(codes_by_name[name]).shape[0]} codes, expected {n} "
                f"(every level must encode the same images)"
            )
    return {
        name: optimal_threshold(
            pair_distance_histograms(codes_by_name[name], pids, block_size=block_size), beta=beta, rho=rho, model=model
        )
        for name in names[:-1]
    }


# --------------------------------------------------------------------------- recall-targeted thresholds --


@dataclasses.dataclass(frozen=True)
class RecallFit:
    """Result of :func:`fit_recall_thresholds`."""

    thresholds: dict  #: ``{name: t}`` for every used level but the longest
    recall: float  #: share of the validation queries' exhaustive top-k that passes every threshold
    recall_lower: float  #: its one-sided lower confidence bound at ``confidence`` (= ``recall`` when 0)
    candidates: tuple  #: mean share of the gallery reaching each used stage after the first (``|C_s| / ng``)
    cost: float  #: expected work per gallery item: streamed bits, or the unit of ``stage_costs`` (the objective)
    target: float
    k: int
    confidence: float = 0.0
    num_queries: int = 0  #: queries the recall was measured on
    levels: tuple = ()  #: the levels the search uses, short to long (all of them unless ``choose_levels``)


def recall_lower_bound(recall, num_queries: int, confidence: float):
    """One-sided lower confidence bound of a mean per-query recall: ``r - z sqrt(r (1 - r) / n)`` with ``z`` the
    standard normal quantile of ``confidence`` (0: no bound, ``r`` itself). A per-query recall lies in
    ``[0, 1]``, so its variance is at most ``r (1 - r)`` (Bhatia-Davis): the bound needs no per-query counts and
    errs on the safe side."""
    r = np.asarray(recall, np.float64)
    if not 0.0 <= float(confidence) < 1.0:
        raise ValueError(f"confidence must be in [0, 1), got {confidence}")
    if float(confidence) == 0.0:
        return r
    z = statistics.NormalDist().inv_cdf(float(confidence))
    return r - z * np.sqrt(np.clip(r * (1.0 - r), 0.0, None) / max(int(num_queries), 1))


def _threshold_steps(bits: Sequence[int], max_cells: int) -> list[int]:
    """Threshold grid step per level: 1 (every integer threshold) unless the joint grid would exceed
    ``max_cells``; then the step of the level with the most grid values is doubled until it fits."""
    steps = [1] * len(bits)
    cells = lambda: math.prod(-(-(b + 1) // s) for b, s in zip(bits, steps))  # noqa: E731
    while cells() > max_cells:
        i = max(range(len(bits)), key=lambda j: -(-(bits[j] + 1) // steps[j]))
        steps[i] *= 2
    return steps


def _joint_histograms(levels: list[np.ndarray], queries: np.ndarray | None, k: int, steps: list[int],
                      block_size: int, q_levels: list[np.ndarray] | None = None):
    """Joint histograms over the threshold grid of (stage distances ``ceil(d_s / step_s)``, s < N-1):
    of all (query, item) pairs and of the pairs where the item is in the query's exhaustive longest-code
    top-``k`` (stable order). ``queries``: row indices of ``levels`` used as queries, each excluded from its
    own gallery; ``None``: every row. With ``q_levels`` the queries are rows of those codes instead (another
    image set: nothing is excluded)."""
    n = levels[0].shape[0]
    external = q_levels is not None
    q_levels = levels if q_levels is None else q_levels
    rows_q = np.arange(q_levels[0].shape[0]) if queries is None else np.asarray(queries, np.int64)
    dims = [-(-(8 * a.shape[1] + 1) // s) for a, s in zip(levels[:-1], steps)]
    size = math.prod(dims)
    every = np.zeros(size, np.int64)
    top = np.zeros(size, np.int64)
    for start in range(0, rows_q.shape[0], block_size):
        sel = rows_q[start:start + block_size]
        local = np.arange(sel.shape[0])
        cells = None
        for qa, a, step, dim in zip(q_levels[:-1], levels[:-1], steps, dims):
            d = -(-np.asarray(hamming_distance(qa[sel], a), np.int64) // step)
            cells = d if cells is None else cells * dim + d
        d_long = np.asarray(hamming_distance(q_levels[-1][sel], levels[-1]), np.int64)
        if not external:
            d_long[local, sel] = np.iinfo(np.int64).max  # never one's own neighbour
        nearest = np.argpartition(d_long, k - 1, axis=1)[:, :k] if k < n - 1 else None
        if nearest is not None:  # exact stable top-k: the k smallest (distance, index) pairs
            kth = np.take_along_axis(d_long, nearest, axis=1).max(axis=1, keepdims=True)
            nearest = np.stack([np.flatnonzero(row <= t)[np.argsort(row[row <= t], kind="stable")[:k]]
                                for row, t in zip(d_long, kth)])
        else:
            nearest = np.argsort(d_long, axis=1, kind="stable")[:, :k]
        if not external:
            cells[local, sel] = -1
        every += np.bincount(cells[cells >= 0], minlength=size)
        top += np.bincount(np.take_along_axis(cells, nearest, axis=1).reshape(-1), minlength=size)
    return every.reshape(dims), top.reshape(dims)


def fit_recall_thresholds(
    codes_by_name: Mapping[str, np.ndarray],
    *,
    order: Sequence[str] | None = None,
    target: float = 0.95,
    k: int = 10,
    queries: int | None = None,
    seed: int = 0,
    query_codes: Mapping[str, np.ndarray] | None = None,
    block_size: int | None = None,
    max_grid: int = 1 << 22,
    confidence: float = 0.0,
    gather_bits: float = 0.0,
    choose_levels: bool = False,
    stage_costs: Sequence[tuple[float, float]] | None = None,
) -> RecallFit:
    """Recall-targeted thresholds for coarse-to-fine search: the cheapest thresholds that keep the exhaustive
    longest-code top-``k`` of the validation queries.

    Every validation image is a query against the others (or ``queries`` of them drawn at random with
    ``seed``: the codes may then be a large gallery itself, since the fit needs no labels). An item of a query's exhaustive top-``k`` (longest
    code, ties by index) is *kept* when it passes every stage, ``d_s <= t_s`` for ``s < N-1``; kept items are
    ranked by the longest code among the candidates, so they are in CtF's top-``k``. Over the joint grid of
    thresholds this chooses

        argmin_t  l_0 + sum_{s=1}^{N-1} (l_s + g) * P(d_0 <= t_0, ..., d_{s-1} <= t_{s-1})
        subject to  recall(t) = share of top-k pairs kept >= target

    the expected work per gallery item, in bits streamed: stage 0 scans every item's ``l_0``-bit code, and
    stage ``s`` fetches the ``l_s``-bit code of every candidate that reached it, at the cost of ``l_s`` bits
    plus ``g = gather_bits`` for the random access (a cache miss: about 1,500 bits' worth of streaming on an
    AVX2 EPYC, see bench/ctf.py; ``g = 0`` counts bits alone). Ties go to the higher recall. With
    ``choose_levels`` the search may also skip shorter levels (every subset of them, the longest always
    ranks; the empty subset is exhaustive longest-code search, cost ``l_{N-1}``), and the cheapest
    (subset, thresholds) wins. With ``stage_costs`` (per level ``(a_s, b_s)``: the cost of scanning one item's
    code and of fetching one candidate's code at random, e.g. nanoseconds measured on the searched gallery by
    :func:`jhash.search.coarse_to_fine.measure_stage_costs`) the objective is the measured one instead,
    ``a_0 + sum_{s>=1} b_s P(d_0 <= t_0, ..., d_{s-1} <= t_{s-1})`` (exhaustive search: ``a_{N-1}``), and
    ``gather_bits`` is not used. Counts come from joint histograms of the stage distances, so every threshold
    vector is scored exactly. The grid holds every integer threshold unless it would exceed ``max_grid``
    cells; then the longest levels' thresholds step by powers of two.

    Args:
      codes_by_name: packed codes (uint8 ``[n, L/8]``) of the *validation* split per level, same images.
      order: level names from shortest to longest; default sorts by code length.
      target: the share ``r`` of the exhaustive top-k to keep, in ``(0, 1]``.
      k: the top-k the target refers to, ``1 <= k < n``.
      queries: how many of the ``n`` images act as queries (default all); each query costs one pass over
        the ``n`` codes of every level.
      query_codes: optional codes of other images (same level names) to use as the queries against
        ``codes_by_name`` — e.g. the validation split's queries against the gallery to be searched;
        ``queries`` then samples among them.
      block_size: queries per block (default about ``2**22 / n``: memory ``O(block_size · n)``).
      confidence: when > 0, the constraint is on the recall's one-sided lower confidence bound at this level
        (:func:`recall_lower_bound` over the queries), not on the sample recall: a safety margin that shrinks
        as more queries are used, against choosing thresholds that keep the target only on the fit's sample.
      gather_bits: the cost of fetching one candidate at random, in streamed bits (``g`` above), >= 0.
      choose_levels: also choose which shorter levels the search uses (``RecallFit.levels``).
      stage_costs: optional ``(scan, fetch)`` cost per level (same order as the levels, both > 0).
    """
    names = _level_order(codes_by_name, order)
    levels = [_check_codes_and_pids(codes_by_name[m], np.zeros(len(codes_by_name[m]), np.int64))[0] for m in names]
    n = levels[0].shape[0]
    if any(a.shape[0] != n for a in levels):
        raise ValueError(f"codes_by_name: every level must encode the same images, got sizes {[a.shape[0] for a in levels]}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    recall_lower_bound(1.0, 1, confidence)  # checks confidence before the work
    if not float(gather_bits) >= 0.0:
        raise ValueError(f"gather_bits must be >= 0, got {gather_bits}")
    bits = [8 * a.shape[1] for a in levels]
    if stage_costs is None:  # streamed bits: a scan reads l_s bits, a fetch l_s bits plus the random access
        scan = [float(b) for b in bits]
        fetch = [float(b) + float(gather_bits) for b in bits]
    else:
        costs = np.asarray(stage_costs, np.float64)
        if costs.shape != (len(names), 2) or not np.all(costs > 0):
            raise ValueError(f"stage_costs: expected {len(names)} (scan, fetch) pairs of positive costs (one per "
                             f"level {names}), got {stage_costs!r}")
        scan, fetch = costs[:, 0].tolist(), costs[:, 1].tolist()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an int in [1, {n - 1}] (the validation split has {n} images), got {k!r}")
    q_levels = None
    if query_codes is not None:
        missing = [m for m in names if m not in query_codes]
        if missing:
            raise ValueError(f"query_codes lacks the levels {missing}")
        q_levels = [_check_codes_and_pids(query_codes[m], np.zeros(len(query_codes[m]), np.int64))[0] for m in names]
        for qa, a, m in zip(q_levels, levels, names):
            if qa.shape[1] != a.shape[1] or qa.shape[0] != q_levels[0].shape[0]:
                raise ValueError(f"query_codes[{m!r}]: shape {qa.shape} does not match the level's codes {a.shape}")
    nq = n if q_levels is None else q_levels[0].shape[0]
    rows = None
    if queries is not None:
        if isinstance(queries, bool) or not isinstance(queries, (int, np.integer)) or not 1 <= queries <= nq:
            raise ValueError(f"queries must be an int in [1, {nq}] (the number of query codes), got {queries!r}")
        rows = np.sort(np.random.default_rng(seed).choice(nq, int(queries), replace=False))
    steps = _threshold_steps(bits[:-1], int(max_grid))
    block = int(block_size) if block_size else max(1, min(256, (1 << 22) // n))
    every, top = _joint_histograms(levels, rows, int(k), steps, block, q_levels)
    n_queries = nq if rows is None else rows.shape[0]
    best = None
    subsets = [tuple(m) for r in range(len(names) - 1, -1 if choose_levels else len(names) - 2, -1)
               for m in itertools.combinations(range(len(names) - 1), r)]
    for used in subsets:
        fit = _cheapest_on_grid(every, top, used, bits, steps, float(target), n_queries, float(confidence),
                                scan, fetch)
        if best is None or (fit[0], -fit[1]) < (best[0], -best[1]):
            best = fit + (used,)
    cost, rec, low, cand, thr, used = best
    return RecallFit(thresholds={names[i]: t for i, t in zip(used, thr)}, recall=rec, recall_lower=low,
                     candidates=cand, cost=cost, target=float(target), k=int(k), confidence=float(confidence),
                     num_queries=int(n_queries), levels=tuple(names[i] for i in used) + (names[-1],))


def _cheapest_on_grid(every: np.ndarray, top: np.ndarray, used: tuple, bits: list[int], steps: list[int],
                      target: float, n_queries: int, confidence: float, scan: list[float], fetch: list[float]):
    """The cheapest feasible threshold vector when the search uses the shorter levels ``used`` (indices into
    the grid's axes; the others are skipped: summed out) and then the longest level:
    ``(cost, recall, recall_lower, candidate shares, thresholds)``. ``used = ()``: exhaustive search. ``scan[s]``
    / ``fetch[s]``: the cost of scanning one item's level-``s`` code / of fetching one candidate's."""
    if not used:
        return float(scan[-1]), 1.0, 1.0, (), ()
    drop = tuple(ax for ax in range(every.ndim) if ax not in used)
    ev = every.sum(axis=drop) if drop else every
    tp = top.sum(axis=drop) if drop else top
    recall = tp
    for ax in range(recall.ndim):
        recall = recall.cumsum(axis=ax)
    recall = recall / max(int(tp.sum()), 1)
    pairs = float(ev.sum())
    cost = np.full(ev.shape, float(scan[used[0]]))  # stage 0 scans every item
    fractions = []
    nxt = list(used[1:]) + [len(bits) - 1]
    for s in range(len(used)):
        # P(d_0 <= t_0, ..., d_s <= t_s) over the used stages: sum out the later ones, cumulate the first s + 1
        m = ev.sum(axis=tuple(range(s + 1, ev.ndim))) if s + 1 < ev.ndim else ev
        for ax in range(s + 1):
            m = m.cumsum(axis=ax)
        frac = (m / pairs).reshape(m.shape + (1,) * (ev.ndim - s - 1))
        fractions.append(frac)
        cost = cost + fetch[nxt[s]] * frac
    lower = recall_lower_bound(recall, n_queries, confidence)
    score = np.where(lower >= target - 1e-12, cost, np.inf)
    best = np.lexsort((-recall.reshape(-1), score.reshape(-1)))[0]
    cell = np.unravel_index(best, ev.shape)
    thresholds = tuple(int(min(c * steps[i], bits[i])) for c, i in zip(cell, used))
    cand = tuple(float(np.broadcast_to(f, ev.shape)[cell]) for f in fractions)
    return float(score[cell]), float(recall[cell]), float(lower[cell]), cand, thresholds


# ------------------------------------------------------------------------------ stored fit queries --


def encode_packed(levels: dict[str, np.ndarray]) -> dict:
    """Packed codes ``{name: uint8 [n, B]}`` as JSON-safe data (base64 rows): validation codes kept with the
    search parameters saved in a checkpoint, the queries of a fit at search time."""
    import base64

    return {n: {"rows": int(a.shape[0]), "bytes": int(a.shape[1]),
                "b64": base64.b64encode(np.ascontiguousarray(a, np.uint8).tobytes()).decode("ascii")}
            for n, a in levels.items()}


def decode_packed(data: dict) -> dict[str, np.ndarray]:
    """The inverse of :func:`encode_packed`."""
    import base64

    out = {}
    for n, d in data.items():
        raw = np.frombuffer(base64.b64decode(d["b64"]), np.uint8)
        if raw.size != int(d["rows"]) * int(d["bytes"]):
            raise ValueError(f"search parameters: stored codes {n!r} hold {raw.size} bytes, expected "
                             f"{d['rows']} x {d['bytes']}")
        out[n] = raw.reshape(int(d["rows"]), int(d["bytes"]))
    return out
