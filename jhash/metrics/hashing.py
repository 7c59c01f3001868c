"""Hashing-retrieval metrics on packed binary codes: mAP@k, precision@k, precision within a Hamming radius,
precision–recall over Hamming radii.

Relevance: with 1-D integer labels, a gallery item is relevant to a query when the labels are equal; with
2-D multi-hot labels (``[n, num_classes]``, e.g. NUS-WIDE) when they share at least one class — the
convention of the DeepHash code bases. Rankings are by Hamming distance with ties broken by gallery index
(stable), as everywhere in jhash. Queries are streamed in blocks of int32 Hamming distances
(:func:`jhash.search.hamming_distance`); no ``[nq, ng]`` matrix is built.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jhash.metrics.reid import (
    _block_size,
    _exclusive_count_in_runs,
    _hamming_blocks,
    _packed_pair,
    _positive_int,
    _segment_starts,
)

__all__ = ["map_at_k", "precision_at_k", "precision_at_radius", "precision_recall_curve", "PRCurve"]

EMPTY = ("zero", "skip")


def _labels(q_labels, g_labels, nq: int, ng: int) -> tuple[np.ndarray, np.ndarray]:
    ql, gl = np.asarray(q_labels), np.asarray(g_labels)
    for name, a, n, what in (("q_labels", ql, nq, "q_codes"), ("g_labels", gl, ng, "g_codes")):
        if a.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D class ids or 2-D multi-hot [n, classes], got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f"{name} must have an integer (or, multi-hot, bool) dtype, got {a.dtype}")
        if a.shape[0] != n:
            raise ValueError(f"{name} has {a.shape[0]} entries but {what} has {n}")
    if ql.ndim != gl.ndim or (ql.ndim == 2 and ql.shape[1] != gl.shape[1]):
        raise ValueError(f"q_labels and g_labels must have the same layout, got shapes {ql.shape} and {gl.shape}")
    if ql.ndim == 1 and ql.dtype == np.bool_:
        raise ValueError("q_labels must hold integer class ids when 1-D, got bool")
    if ql.ndim == 2:
        return (ql != 0).astype(np.float32), (gl != 0).astype(np.float32)
    return ql.astype(np.int64, copy=False), gl.astype(np.int64, copy=False)


def _relevance(ql: np.ndarray, gl: np.ndarray) -> np.ndarray:
    """bool ``[bq, ng]``: same label (1-D) or at least one shared class (2-D multi-hot)."""
    if ql.ndim == 1:
        return ql[:, None] == gl[None, :]
    return (ql @ gl.T) > 0


def _prepare(q_codes, g_codes, q_labels, g_labels, block_size):
    q, g = _packed_pair(q_codes, g_codes)
    ql, gl = _labels(q_labels, g_labels, q.shape[0], g.shape[0])
    return q, g, ql, gl, _block_size(block_size, g.shape[0])


def _stable_topk(d: np.ndarray, k: int) -> np.ndarray:
    """Gallery indices ``[bq, k]`` of the k best items per row, in (distance, index) order; ``k <= ng``.

    The k-th smallest distance comes from a per-row histogram; items below it are all in, items at it are
    taken in index order; only the selected ``~k`` items per row are sorted.
    """
    bq, ng = d.shape
    bins = int(d.max()) + 1
    hist = np.bincount((d + (np.arange(bq, dtype=np.int64) * bins)[:, None]).ravel(), minlength=bq * bins)
    cum = np.cumsum(hist.reshape(bq, bins), axis=1)
    thr = np.argmax(cum >= k, axis=1)
    need_at_thr = k - (cum[np.arange(bq), thr] - hist.reshape(bq, bins)[np.arange(bq), thr])
    r, c = np.nonzero(d <= thr[:, None])
    dv = d[r, c]
    at_thr = dv == thr[r]
    keep = ~at_thr | (_exclusive_count_in_runs(at_thr, _segment_starts(r)) < need_at_thr[r])
    r, c, dv = r[keep], c[keep], dv[keep]
    return c[np.lexsort((c, dv, r))].reshape(bq, k)


def _topk_relevance(q, g, ql, gl, k, block):
    """Yield bool ``[bq, k]`` relevance of the top-k lists of each query block."""
    for s, e, d in _hamming_blocks(q, g, block):
        top = _stable_topk(d, k)
        yield _relevance(ql[s:e], gl)[np.arange(e - s)[:, None], top]


def map_at_k(q_codes, g_codes, q_labels, g_labels, k: int = 1000, *, block_size: int | None = None) -> float:
    """DeepHash-style mAP over the top ``k`` returned items (DHMTL uses ``k = 1000``).

    For each query, with ``rel_1..rel_k`` the relevance of its top-k list and ``n_k`` the number of
    relevant items **retrieved in the top k**: ``AP@k = (1/n_k) * sum_i rel_i * (rel_1 + ... + rel_i) / i``,
    and ``AP@k = 0`` when ``n_k = 0``. ``mAP@k`` is the mean over **all** queries (those without a relevant
    item in their top k count as 0) — the ``CalcTopMap`` convention of DeepHash / DPSH / HashNet code. It
    normalises by ``n_k``, not by the number of relevant items in the whole gallery. ``k`` larger than the
    gallery means the whole ranking.
    """
    k = _positive_int(k, "k")
    q, g, ql, gl, block = _prepare(q_codes, g_codes, q_labels, g_labels, block_size)
    k = min(k, g.shape[0])
    total = 0.0
    for rel in _topk_relevance(q, g, ql, gl, k, block):
        hits = np.cumsum(rel, axis=1)
        total += ((rel * hits / np.arange(1, k + 1)).sum(axis=1) / np.maximum(hits[:, -1], 1)).sum()
    return total / q.shape[0] if q.shape[0] else float("nan")


def precision_at_k(q_codes, g_codes, q_labels, g_labels, k: int = 500, *, block_size: int | None = None) -> float:
    """Mean over queries of (relevant items among the top ``k``) / ``k`` (DRSCH's precision@500).

    ``k`` must not exceed the gallery size.
    """
    k = _positive_int(k, "k")
    q, g, ql, gl, block = _prepare(q_codes, g_codes, q_labels, g_labels, block_size)
    if k > g.shape[0]:
        raise ValueError(f"k must be <= the gallery size {g.shape[0]}, got {k}")
    total = sum(rel.sum() / k for rel in _topk_relevance(q, g, ql, gl, k, block))
    return total / q.shape[0] if q.shape[0] else float("nan")


@dataclasses.dataclass(frozen=True, eq=False)
class PRCurve:
    """Precision and recall of Hamming-ball retrieval at radii ``0..L`` (``radii[i] = i``)."""

    radii: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def _radius_stats(q_codes, g_codes, q_labels, g_labels, block_size):
    """Sums over queries, per radius 0..L, of precision (over non-empty balls) and of recall.

    Returns ``(prec_sum, num_nonempty, rec_sum, num_with_relevant, num_queries)``.
    """
    q, g, ql, gl, block = _prepare(q_codes, g_codes, q_labels, g_labels, block_size)
    bins = 8 * q.shape[1] + 1
    prec_sum, nonempty, rec_sum = np.zeros(bins), np.zeros(bins, np.int64), np.zeros(bins)
    with_rel = 0
    for s, e, d in _hamming_blocks(q, g, block):
        bq = e - s
        key = d + (np.arange(bq, dtype=np.int64) * bins)[:, None]
        rel = _relevance(ql[s:e], gl)
        returned = np.cumsum(np.bincount(key.ravel(), minlength=bq * bins).reshape(bq, bins), axis=1)
        hits = np.cumsum(np.bincount(key[rel], minlength=bq * bins).reshape(bq, bins), axis=1)
        prec_sum += (hits / np.maximum(returned, 1)).sum(axis=0)
        nonempty += (returned > 0).sum(axis=0)
        num_rel = hits[:, -1]
        rec_sum += (hits[num_rel > 0] / num_rel[num_rel > 0, None]).sum(axis=0)
        with_rel += int((num_rel > 0).sum())
    return prec_sum, nonempty, rec_sum, with_rel, q.shape[0]


def _precision(prec_sum, nonempty, nq, empty):
    if empty not in EMPTY:
        raise ValueError(f"empty must be one of {EMPTY}, got {empty!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if empty == "zero":
            return prec_sum / nq if nq else np.full_like(prec_sum, np.nan)
        return np.where(nonempty > 0, prec_sum / np.maximum(nonempty, 1), np.nan)


def precision_at_radius(
    q_codes, g_codes, q_labels, g_labels, radius: int = 2, *, empty: str = "zero", block_size: int | None = None
) -> float:
    """Mean precision of Hamming-ball retrieval: items at distance ``<= radius`` are returned.

    A query whose ball is empty has no precision; ``empty`` says what to do with it:

    * ``"zero"`` (default): it counts as precision 0 and the mean is over all queries — the convention of
      the hashing literature's "precision within Hamming radius 2" code (DPSH, DSH, DRSCH's MATLAB tools);
    * ``"skip"``: it is left out and the mean is over queries with a non-empty ball (NaN if none).
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if empty not in EMPTY:
        raise ValueError(f"empty must be one of {EMPTY}, got {empty!r}")
    prec_sum, nonempty, _, _, nq = _radius_stats(q_codes, g_codes, q_labels, g_labels, block_size)
    return float(_precision(prec_sum, nonempty, nq, empty)[min(int(radius), prec_sum.shape[0] - 1)])


def precision_recall_curve(
    q_codes, g_codes, q_labels, g_labels, *, empty: str = "zero", block_size: int | None = None
) -> PRCurve:
    """Precision and recall of Hamming-ball retrieval for every radius ``0..L`` (one pass over the gallery).

    Precision at radius ``r`` is :func:`precision_at_radius` (with the same ``empty`` convention). Recall at
    ``r`` is (relevant items within ``r``) / (relevant items in the gallery), averaged over the queries that
    have at least one relevant gallery item (recall is undefined for the others); at ``r = L`` it is 1.
    """
    if empty not in EMPTY:
        raise ValueError(f"empty must be one of {EMPTY}, got {empty!r}")
    prec_sum, nonempty, rec_sum, with_rel, nq = _radius_stats(q_codes, g_codes, q_labels, g_labels, block_size)
    recall = rec_sum / with_rel if with_rel else np.full_like(rec_sum, np.nan)
    return PRCurve(np.arange(prec_sum.shape[0]), _precision(prec_sum, nonempty, nq, empty), recall)
