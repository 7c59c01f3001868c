"""Plain numpy references for the jhash.metrics tests, written from the protocol definitions."""

from __future__ import annotations

import itertools

import numpy as np


def np_hamming(q_packed: np.ndarray, g_packed: np.ndarray) -> np.ndarray:
    """Hamming distances of packed codes by unpacking the bits (int32 [nq, ng])."""
    qb = np.unpackbits(q_packed, axis=1).astype(np.int32)
    gb = np.unpackbits(g_packed, axis=1).astype(np.int32)
    return (qb[:, None, :] != gb[None, :, :]).sum(-1).astype(np.int32)


def random_codes(rng, n: int, bits: int) -> np.ndarray:
    return np.packbits(rng.integers(0, 2, size=(n, bits), dtype=np.uint8), axis=1)


def market_reference(distmat, q_pids, g_pids, q_camids=None, g_camids=None, max_rank=50, order=None):
    """torchreid's ``eval_market1501`` with a stable argsort, junk (pid -1) removed, mINP as in ReID-Survey.

    The CMC of a valid list shorter than ``max_rank`` is padded with its last value (1).
    Returns ``(cmc [max_rank], mAP, mINP, num_valid, per-query AP dict)``.
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if order is None:
        order = np.argsort(distmat, axis=1, kind="stable")
    all_cmc, all_ap, all_inp, ap_of = [], [], [], {}
    for i in range(len(q_pids)):
        o = order[i]
        remove = g_pids[o] == -1
        if q_camids is not None:
            remove |= (g_pids[o] == q_pids[i]) & (np.asarray(g_camids)[o] == q_camids[i])
        raw = (g_pids[o] == q_pids[i]).astype(np.int64)[~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.max(np.where(raw == 1))
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        cmc = cmc[:max_rank]
        cmc = np.concatenate([cmc, np.full(max_rank - len(cmc), cmc[-1])])
        all_cmc.append(cmc)
        num_rel = raw.sum()
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        all_ap.append(tmp.sum() / num_rel)
        ap_of[i] = all_ap[-1]
    if not all_cmc:
        return np.full(max_rank, np.nan), np.nan, np.nan, 0, ap_of
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp)), len(all_cmc), ap_of


def brute_force_expected(distmat, q_pids, g_pids, q_camids=None, g_camids=None, max_rank=5):
    """Average of the stable metrics over every order of the items inside each tie group.

    Per query, all within-tie permutations are enumerated (tiny cases only); the per-query averages are
    then averaged over valid queries, exactly like the protocol averages the per-query values.
    """
    distmat = np.asarray(distmat)
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        d = distmat[i]
        values = np.unique(d)
        groups = [np.flatnonzero(d == v) for v in values]
        per = []
        for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
            o = np.concatenate([np.array(p, dtype=np.int64) for p in perms])[None, :]
            qc = None if q_camids is None else np.asarray(q_camids)[i : i + 1]
            cmc, m_ap, m_inp, nv, _ = market_reference(
                d[None, :], np.asarray(q_pids)[i : i + 1], g_pids, qc, g_camids, max_rank, order=o
            )
            if nv == 0:
                break
            per.append((cmc, m_ap, m_inp))
        if per:
            cmcs.append(np.mean([p[0] for p in per], axis=0))
            aps.append(np.mean([p[1] for p in per]))
            inps.append(np.mean([p[2] for p in per]))
    if not cmcs:
        return np.full(max_rank, np.nan), np.nan, np.nan, 0
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


def topk_map_reference(dist, rel, k):
    """DeepHash ``CalcTopMap`` with a stable argsort; ``rel`` bool [nq, ng]."""
    total = 0.0
    for i in range(dist.shape[0]):
        g = rel[i][np.argsort(dist[i], kind="stable")][:k].astype(np.float64)
        n = int(g.sum())
        if n == 0:
            continue
        count = np.linspace(1, n, n)
        idx = np.flatnonzero(g == 1) + 1.0
        total += np.mean(count / idx)
    return total / dist.shape[0]


def radius_reference(dist, rel, radius, empty):
    """Mean precision of the Hamming ball of ``radius``; empty balls count 0 ("zero") or are left out."""
    precs = []
    for i in range(dist.shape[0]):
        ret = dist[i] <= radius
        if ret.sum() == 0:
            if empty == "zero":
                precs.append(0.0)
            continue
        precs.append(rel[i][ret].sum() / ret.sum())
    return float(np.mean(precs)) if precs else float("nan")

