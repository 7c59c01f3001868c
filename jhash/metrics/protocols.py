"""Repeated-sampling ReID protocols: VehicleID and classic CUHK03 (single-gallery-shot).

Market-1501, DukeMTMC-reID, MSMT17, VeRi-776 and CUHK03-NP use the Market protocol directly:
:func:`jhash.metrics.reid_metrics`.

Randomness. Repeat ``r`` of a call with ``seed=s`` draws from ``numpy.random.Generator(PCG64(SeedSequence([s, r])))``,
so every repeat is reproducible on its own and the results do not depend on ``block_size``.
Standard deviations are over repeats, population form (``ddof=0``, ``np.std``'s default).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jhash.metrics.reid import (
    ReIDMetrics,
    _Gallery,
    _block_size,
    _hamming_blocks,
    _int_vector,
    _matrix,
    _packed_codes,
    _packed_pair,
    _positive_int,
    reid_metrics,
)

__all__ = ["ProtocolMetrics", "vehicleid_eval", "cuhk03_classic_eval"]


@dataclasses.dataclass(frozen=True, eq=False)
class ProtocolMetrics:
    """Mean and standard deviation over the repeats of a sampled protocol; ``repeats`` keeps each one."""

    cmc: np.ndarray
    cmc_std: np.ndarray
    mAP: float
    mAP_std: float
    mINP: float
    mINP_std: float
    repeats: tuple[ReIDMetrics, ...]

    @property
    def num_repeats(self) -> int:
        return len(self.repeats)

    def rank(self, r: int) -> float:
        """Mean rank-``r`` accuracy (1-based), i.e. ``cmc[r - 1]``."""
        return float(self.cmc[r - 1])

    @classmethod
    def from_repeats(cls, repeats: list[ReIDMetrics]) -> ProtocolMetrics:
        cmc = np.stack([r.cmc for r in repeats])
        maps = np.array([r.mAP for r in repeats])
        inps = np.array([r.mINP for r in repeats])
        mean, std = cmc.mean(axis=0), cmc.std(axis=0)
        mean.setflags(write=False)
        std.setflags(write=False)
        return cls(
            mean, std, float(maps.mean()), float(maps.std()), float(inps.mean()), float(inps.std()), tuple(repeats)
        )


def _repeat_rng(seed: int, repeat: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, repeat])))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def vehicleid_split(pids, seed: int = 0, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One VehicleID split: ``(query_indices, gallery_indices)``, both ascending.

    For every identity one image, drawn uniformly, goes to the gallery; all its other images are queries.
    """
    pids = _int_vector(pids, "pids")
    u = _repeat_rng(_check_seed(seed), repeat).random(pids.shape[0])
    order = np.lexsort((u, pids))  # by pid, then by the random key: the first of each pid is uniform
    first = np.ones(order.shape[0], bool)
    first[1:] = pids[order[1:]] != pids[order[:-1]]
    is_gallery = np.zeros(pids.shape[0], bool)
    is_gallery[order[first]] = True
    return np.flatnonzero(~is_gallery), np.flatnonzero(is_gallery)


def vehicleid_eval(
    codes=None,
    *,
    distances=None,
    pids,
    num_repeats: int = 10,
    seed: int = 0,
    max_rank: int = 50,
    ties: str = "stable",
    block_size: int | None = None,
) -> ProtocolMetrics:
    """VehicleID protocol (Liu et al., CVPR 2016; test lists of 800 / 1,600 / 2,400 identities).

    For each of ``num_repeats`` repeats (:func:`vehicleid_split`): one random image per identity forms the
    gallery, all the other images of the list are queries; there is no camera filter. Every repeat is
    scored with :func:`jhash.metrics.reid_metrics` (CMC, AP and INP as in the Market protocol; with one
    gallery image per identity, AP = INP = 1 / rank of the true match). Returns the mean and std over repeats.

    Args:
      codes: packed codes ``uint8 [n, L/8]`` of every image of the test list (streamed), or
      distances: a precomputed ``[n, n]`` distance matrix over the test list (e.g. Euclidean on features).
      pids: ``[n]`` vehicle identities.
      num_repeats, seed: number of random splits and the seed (see the module docstring).
      max_rank, ties, block_size: as in :func:`jhash.metrics.reid_metrics`.
    """
    if (codes is None) == (distances is None):
        raise ValueError("vehicleid_eval needs exactly one of codes or distances=")
    if codes is not None:
        codes = _packed_codes(codes, "codes")
        n = codes.shape[0]
    else:
        distances = np.asarray(_matrix(distances, "distances"))
        n = distances.shape[0]
        if distances.shape != (n, n):
            raise ValueError(f"distances must be square [n, n] over the test list, got shape {distances.shape}")
    pids = _int_vector(pids, "pids", n, "codes" if codes is not None else "distances")
    num_repeats = _positive_int(num_repeats, "num_repeats")
    seed = _check_seed(seed)
    repeats = []
    for r in range(num_repeats):
        qi, gi = vehicleid_split(pids, seed, r)
        common = dict(q_pids=pids[qi], g_pids=pids[gi], max_rank=max_rank, ties=ties, block_size=block_size)
        if codes is not None:
            repeats.append(reid_metrics(codes[qi], codes[gi], **common))
        else:
            repeats.append(reid_metrics(distances=distances[np.ix_(qi, gi)], **common))
    return ProtocolMetrics.from_repeats(repeats)


def cuhk03_classic_eval(
    q_codes=None,
    g_codes=None,
    *,
    distances=None,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    num_repeats: int = 10,
    seed: int = 0,
    max_rank: int = 50,
    block_size: int | None = None,
) -> ProtocolMetrics:
    """Classic CUHK03 single-gallery-shot evaluation (Li et al., CVPR 2014; torchreid's ``eval_cuhk03``).

    For every query and every repeat: the gallery is reduced as in the Market protocol (junk pid -1 and the
    query's own same-camera images removed; for CUHK03's two camera views this leaves the query's images from
    the other view), then **one image per gallery identity** is drawn uniformly among that identity's
    remaining images. The query is scored on this single-shot gallery, ranked by (distance, gallery index):
    with ``rank`` the 0-based position of the drawn true match, ``CMC[R-1] = rank < R`` and
    ``AP = INP = 1 / (rank + 1)``. Queries with no remaining true match are skipped. Per repeat the values
    are averaged over valid queries; the result is the mean and std over repeats (the mean CMC equals
    torchreid's, which averages its 10 draws per query).

    torchreid reports, next to this CMC, the AP of the full unsampled list; that number is
    ``reid_metrics(...).mAP`` on the same inputs.

    Args:
      q_codes, g_codes: packed codes (streamed), or
      distances: a precomputed ``[nq, ng]`` distance matrix (any real dtype).
      q_pids, g_pids, q_camids, g_camids: integer identities and camera ids.
      num_repeats, seed: number of draws and the seed (see the module docstring).
      max_rank: CMC length; block_size: queries per block.
    """
    if (q_codes is None and g_codes is None) == (distances is None):
        raise ValueError("cuhk03_classic_eval needs exactly one of: q_codes and g_codes, distances=")
    if distances is None:
        if q_codes is None or g_codes is None:
            raise ValueError("q_codes and g_codes must be given together")
        q_codes, g_codes = _packed_pair(q_codes, g_codes)
        nq, ng = q_codes.shape[0], g_codes.shape[0]
    else:
        distances = _matrix(distances, "distances")
        nq, ng = distances.shape
        if not (np.issubdtype(distances.dtype, np.integer) or np.issubdtype(distances.dtype, np.floating)):
            raise ValueError(f"distances must be a real-valued array, got dtype {distances.dtype}")
    q_pids = _int_vector(q_pids, "q_pids", nq, "the query set")
    g_pids = _int_vector(g_pids, "g_pids", ng, "the gallery")
    q_camids = _int_vector(q_camids, "q_camids", nq, "q_pids")
    g_camids = _int_vector(g_camids, "g_camids", ng, "g_pids")
    max_rank = _positive_int(max_rank, "max_rank")
    num_repeats = _positive_int(num_repeats, "num_repeats")
    seed = _check_seed(seed)

    gal = _Gallery.build(g_pids, g_camids)
    num_ids = gal.uniq.shape[0]
    draws_per_query = num_ids + 1  # one per gallery identity, one for the query's own identity
    ranks = [[] for _ in range(num_repeats)]  # per repeat: (query index, rank) of valid queries
    if gal.size:
        block = _block_size(block_size, gal.size)
        if distances is None:
            g_kept = g_codes if gal.keep is None else g_codes[gal.keep]
            blocks = _hamming_blocks(q_codes, g_kept, block)
        else:

            def dense_blocks():
                for s in range(0, nq, block):
                    d = np.asarray(distances[s : s + block])
                    if np.issubdtype(d.dtype, np.floating) and np.isnan(d).any():
                        raise ValueError("distances contains NaN")
                    yield s, min(s + block, nq), (d if gal.keep is None else d[:, gal.keep])

            blocks = dense_blocks()
        for s, e, d in blocks:
            bq = e - s
            row, gidx, positive = gal.pairs(q_pids[s:e], q_camids[s:e])
            row, gidx = row[positive], gidx[positive]
            npos = np.bincount(row, minlength=bq)
            first = np.cumsum(npos) - npos
            valid = np.flatnonzero(npos > 0)
            own_id = np.searchsorted(gal.uniq, q_pids[s:e][valid])
            for r in range(num_repeats):
                rng = _repeat_rng(seed, r)
                rng.bit_generator.advance(s * draws_per_query)
                u = rng.random((bq, draws_per_query))[valid]
                chosen = gal.by_pid[gal.starts + (u[:, :num_ids] * gal.counts).astype(np.int64)]  # [nv, ids]
                own = gidx[first[valid] + (u[:, num_ids] * npos[valid]).astype(np.int64)]  # [nv]
                d_own = d[valid, own][:, None]
                d_chosen = d[valid[:, None], chosen]
                before = (d_chosen < d_own) | ((d_chosen == d_own) & (chosen < own[:, None]))
                before[np.arange(valid.shape[0]), own_id] = False  # the query's own identity is the match
                ranks[r].append((valid + s, before.sum(axis=1)))
    repeats = []
    for r in range(num_repeats):
        rank = np.concatenate([x[1] for x in ranks[r]]) if ranks[r] else np.zeros(0, np.int64)
        nv = rank.shape[0]
        if nv == 0:
            nan = float("nan")
            cmc = np.full(max_rank, np.nan)
            repeats.append(ReIDMetrics(cmc, nan, nan, 0, nq))
            continue
        cmc = np.cumsum(np.bincount(np.minimum(rank, max_rank), minlength=max_rank + 1)[:max_rank]) / nv
        cmc.setflags(write=False)
        ap = float(np.mean(1.0 / (rank + 1.0)))
        repeats.append(ReIDMetrics(cmc, ap, ap, int(nv), int(nq - nv)))
    return ProtocolMetrics.from_repeats(repeats)
