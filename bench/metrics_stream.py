"""Streaming ReID evaluation at Market-1501+500k scale: wall time and peak memory of ``reid_metrics``.

Shape (default): 3,368 queries x 520,000 gallery images x 2048-bit random codes, with Market-like labels
(750 identities of ~17 gallery images each, 2,793 junk images with pid -1, the rest pid-0 distractors,
6 cameras). A dense float32 distance matrix of that shape would take 7.0 GB; ``reid_metrics`` streams
query blocks of int32 Hamming distances and locates the matches by a counting histogram instead.

Printed: wall time and peak RSS (``resource.getrusage(...).ru_maxrss``) of ``reid_metrics`` on packed
codes; the split between the distance computation (``jhash.search.hamming_distance``) and the ranking +
metrics, measured on a query subset and scaled; and, as the reference in the same process, torchreid's dense
``eval_market1501`` formulation (full distance rows, stable ``argsort``, per-query loop) on a query subset:
its time per query, the ratio, and whether both give identical numbers on that subset.

    .venv/bin/python bench/metrics_stream.py            # full size (minutes on a 2-core CPU)
    .venv/bin/python bench/metrics_stream.py --quick    # small shape, seconds

``--search ctf|afr|drsch`` measures instead a method's whole evaluation path at that shape, in a fresh process:
the method's ``search`` hook (as ``evaluate.py`` calls it: streamed keys plus its timed top-10 search) and
``reid_metrics(distances=...)`` on the keys it returns; printed: wall time, peak RSS and the metrics.
By default the hook runs as the method's defaults do in ``evaluate.py``, its search-time fit included: the
validation codes ``fit_search`` stores (``--val-queries`` random codes, 449 by default: Market-1501's 1 %
validation split) are fitted against the 520k gallery. CtF: a 32/128/512/2048-bit pyramid (prefixes of the random
2048-bit code); the recall-targeted fit chooses levels and thresholds on the searched index (printed). AFR: 30
random attribute bits (padded to 32), the window fitted under the Market protocol from the validation codes'
identities and cameras (printed). ``--fixed`` skips the fits: CtF thresholds 9/48/232 (about 1 % of the gallery
reaches the 128-bit stage), AFR a window of 10 % of the gallery. DRSCH: 64-bit codes ranked by weighted Hamming
distance with random weights.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from jhash.metrics import reid_metrics
from jhash.metrics.reid import _block_size, _hamming_blocks


def make_data(nq: int, ng: int, bits: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(nq, bits // 8), dtype=np.uint8)
    g = rng.integers(0, 256, size=(ng, bits // 8), dtype=np.uint8)
    ids = 750
    n_real = min(ng, ids * 17)
    n_junk = min(ng - n_real, 2793 * ng // 520_000 if ng < 520_000 else 2793)
    g_pids = np.zeros(ng, np.int64)
    g_pids[:n_real] = rng.integers(1, ids + 1, n_real)
    g_pids[n_real : n_real + n_junk] = -1
    g_pids = rng.permutation(g_pids)
    q_pids = rng.integers(1, ids + 1, nq)
    return q, g, q_pids, g_pids, rng.integers(0, 6, nq), rng.integers(0, 6, ng)


def identity_codes(pids: np.ndarray, bits: int, flip: float, seed: int, block: int = 65536) -> np.ndarray:
    """Packed codes with identity structure: every identity ``p > 0`` has a random centre code (drawn from ``seed``
    and ``p`` alone, so the same identity gets the same centre in every call), and each image's code is its
    centre with every bit flipped with probability ``flip``; pid 0 (distractors) and -1 (junk) get random codes.
    Made ``block`` rows at a time (unpacked bits would take ``n x bits`` bytes: 1 GiB for 520k x 2048)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(pids[pids > 0])
    centres = np.stack([np.random.default_rng([seed, int(p)]).integers(0, 2, bits, dtype=np.uint8) for p in ids]) \
        if len(ids) else np.zeros((0, bits), np.uint8)
    out = np.empty((len(pids), -(-bits // 8)), np.uint8)
    for s in range(0, len(pids), block):
        p = pids[s:s + block]
        b = rng.integers(0, 2, size=(len(p), bits), dtype=np.uint8)
        real = p > 0
        if real.any():
            noise = (rng.random((int(real.sum()), bits)) < flip).astype(np.uint8)
            b[real] = centres[np.searchsorted(ids, p[real])] ^ noise
        out[s:s + block] = np.packbits(b, axis=1)
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def torchreid_dense(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid ``eval_market1501`` (per-query loop over a dense matrix) with a stable sort and junk removal."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        remove = ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) | (g_pids[order] == -1)
        raw = matches[i][~remove]
        if not np.any(raw):
            continue
        cmc = raw.cumsum()
        last = np.max(np.where(raw == 1))
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        all_ap.append(tmp.sum() / raw.sum())
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp)), len(all_cmc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shape (200 x 20,000 x 256 bits)")
    p.add_argument("--queries", type=int, default=3368)
    p.add_argument("--gallery", type=int, default=520_000)
    p.add_argument("--bits", type=int, default=2048)
    p.add_argument("--ties", default="stable", choices=["stable", "expected"])
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed runs (median); default 1, quick 3")
    p.add_argument("--reference-queries", type=int, default=None, help="queries for the dense reference")
    p.add_argument("--search", default="hamming", choices=["hamming", "ctf", "afr", "drsch"],
                   help="a method's evaluation path (search hook + metrics) instead of packed-code metrics")
    p.add_argument("--val-queries", type=int, default=449,
                   help="--search ctf|afr: validation codes stored by fit_search for the search-time fit")
    p.add_argument("--fixed", action="store_true",
                   help="--search ctf|afr: fixed thresholds / window instead of the search-time fit")
    args = p.parse_args()
    if args.quick:
        args.queries, args.gallery, args.bits = 200, 20_000, 256
    if args.search != "hamming":
        method_path(args)
        return
    repeats = args.repeats or (3 if args.quick else 1)
    nref = args.reference_queries or (50 if args.quick else 32)

    q, g, qp, gp, qc, gc = make_data(args.queries, args.gallery, args.bits)
    kw = dict(q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties=args.ties, block_size=args.block_size)
    print(f"shape: {args.queries} queries x {args.gallery} gallery x {args.bits} bits "
          f"(dense float32 distmat would be {args.queries * args.gallery * 4 / 2**30:.2f} GiB); ties={args.ties}")
    reid_metrics(q[:8], g[:2000], q_pids=qp[:8], g_pids=gp[:2000], q_camids=qc[:8], g_camids=gc[:2000])  # warm up
    rss_before = peak_rss_mib()

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = reid_metrics(q, g, **kw)
        times.append(time.perf_counter() - t0)
    rss_peak = peak_rss_mib()
    t = statistics.median(times)
    print(f"reid_metrics (packed codes, streamed): {t:.2f} s median of {repeats} "
          f"({t / args.queries * 1e3:.2f} ms/query, {args.queries * args.gallery / t / 1e6:.1f} M pairs/s)")
    print(f"peak RSS: {rss_peak:.0f} MiB (process peak before the timed runs: {rss_before:.0f} MiB; "
          f"codes in memory: {(q.nbytes + g.nbytes) / 2**20:.0f} MiB)")
    print(f"R1 {res.cmc[0]:.5f}  R5 {res.cmc[4]:.5f}  mAP {res.mAP:.6f}  mINP {res.mINP:.6f}  "
          f"valid {res.num_valid_queries}  skipped {res.num_skipped_queries}")

    # where the time goes, on a query subset scaled to all queries: the distance blocks alone
    # (jhash.search.hamming_distance, same shapes as inside reid_metrics so nothing recompiles), then the
    # ranking + metrics alone on those precomputed int32 distances
    nsub = min(args.queries, 64)
    keep = gp != -1
    g_kept = g[keep]
    block = _block_size(args.block_size, g_kept.shape[0])
    t0 = time.perf_counter()
    dsub = np.concatenate([np.array(d) for _, _, d in _hamming_blocks(q[:nsub], g_kept, block)])
    t_dist = (time.perf_counter() - t0) * args.queries / nsub
    t0 = time.perf_counter()
    reid_metrics(distances=dsub, q_pids=qp[:nsub], g_pids=gp[keep], q_camids=qc[:nsub], g_camids=gc[keep],
                 ties=args.ties, block_size=block)
    t_rank = (time.perf_counter() - t0) * args.queries / nsub
    del dsub
    print(f"split (from {nsub} queries, scaled): hamming_distance {t_dist:.2f} s, "
          f"ranking + metrics {t_rank:.2f} s ({t_rank / (args.queries * args.gallery) * 1e9:.1f} ns/pair)")

    # reference: torchreid's dense formulation on a query subset, same process
    nref = min(nref, args.queries)
    from jhash.search import hamming_distance

    t0 = time.perf_counter()
    dist = np.asarray(hamming_distance(q[:nref], g)).astype(np.float32)
    ref = torchreid_dense(dist, qp[:nref], gp, qc[:nref], gc)
    t_ref = time.perf_counter() - t0
    sub = reid_metrics(q[:nref], g, **{**kw, "q_pids": qp[:nref], "q_camids": qc[:nref], "ties": "stable"})
    same = (
        sub.num_valid_queries == ref[3]
        and np.allclose(sub.cmc[: len(ref[0])], ref[0], atol=1e-6)
        and abs(sub.mAP - ref[1]) < 1e-6
        and abs(sub.mINP - ref[2]) < 1e-6
    )
    per_ref, per_ours = t_ref / nref, t / args.queries
    print(f"reference (torchreid dense eval, stable argsort) on {nref} queries: {per_ref * 1e3:.1f} ms/query "
          f"-> jhash is {per_ref / per_ours:.1f}x faster per query; identical numbers on the subset: {same}")


def method_path(args) -> None:
    """Time and peak memory of a method's evaluation path: its ``search`` hook, then ``reid_metrics`` on the
    keys it returns (what ``evaluate.py`` runs)."""
    import ml_collections

    from jhash import config as config_lib
    from jhash import methods
    from jhash.search import dto

    bits = 2048 if args.search == "ctf" else 64
    _, _, qp, gp, qc, gc = make_data(args.queries, args.gallery, 8)
    # codes with identity structure (a true match is near its query; distractors are random), so that the
    # search-time fits find matches to keep and the metrics are not those of random codes
    flip = 0.3 if bits == 2048 else 0.1
    q, g = identity_codes(qp, bits, flip, seed=10), identity_codes(gp, bits, flip, seed=10)
    rng = np.random.default_rng(1)
    c = config_lib.base_config()
    method = methods.get("ssr" if args.search == "afr" else args.search)
    c.method = ml_collections.ConfigDict(method.method_config())
    if args.val_queries < 1:
        raise SystemExit(f"--val-queries: expected >= 1, got {args.val_queries}")
    # the validation split fit_search stores: codes, identities and cameras drawn like the queries'
    # (like a ReID validation split: a few identities with several images each, ~6 per identity)
    vrng = np.random.default_rng(2)
    vp = vrng.integers(1, max(2, args.val_queries // 6) + 1, args.val_queries)
    vc = vrng.integers(0, 6, args.val_queries)
    vq = identity_codes(vp, bits, flip, seed=10)
    if args.search == "ctf":
        names = ["l32", "l128", "l512", "l2048"]
        qc_, gc_ = ({f"l{L}": a[:, : L // 8] for L in (32, 128, 512, 2048)} for a in (q, g))
        qc_["id"], gc_["id"] = q, g
        if args.fixed:
            params = {"thresholds": {"l32": 9, "l128": 48, "l512": 232}, "levels": names}
        else:
            params = {"fit_queries": dto.encode_packed({f"l{L}": vq[:, : L // 8] for L in (32, 128, 512, 2048)})}
            levels, thresholds = method.search_plan(gc_, c, params)
            print(f"CtF search-time fit ({args.val_queries} validation codes): levels {levels}, "
                  f"thresholds {thresholds}")
    elif args.search == "afr":
        qa, ga = (identity_codes(p, 30, 0.05, seed=20) for p in (qp, gp))
        qc_, gc_ = {"id": q, "attr": qa}, {"id": g, "attr": ga}
        params = {"afr": True, "w_fraction": 0.1}
        if not args.fixed:
            va = identity_codes(vp, 30, 0.05, seed=20)
            params.update(fit_queries=dto.encode_packed({"attr": va, "id": vq}), fit_pids=vp.tolist(),
                          fit_camids=vc.tolist())
            w, details = method.search_window(method.first_codes(ga, g, c), g, params, c)
            print(f"AFR search-time window ({args.val_queries} validation codes): w = {w:,} "
                  f"({w / args.gallery:.2%} of the gallery), {details}")
    else:
        c.model.bits = 64
        qc_, gc_ = {"id": q}, {"id": g}
        params = {"bit_weights": {"id": rng.normal(size=64).tolist()}}
    print(f"{args.search} evaluation path: {args.queries} queries x {args.gallery} gallery "
          f"(a dense int16 key matrix would be {args.queries * args.gallery * 2 / 2**30:.2f} GiB)")
    rss_before = peak_rss_mib()
    t0 = time.perf_counter()
    found = method.search(qc_, gc_, params, c)
    t_hook = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = reid_metrics(distances=found["distances"], q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc)
    t_metrics = time.perf_counter() - t0
    print(f"search hook {t_hook:.1f} s (its top-10: {found['ms_per_query']:.2f} ms/query), "
          f"reid_metrics on the streamed keys {t_metrics:.1f} s")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (before the search: {rss_before:.0f} MiB; "
          f"codes in memory: {sum(a.nbytes for a in (*qc_.values(), *gc_.values())) / 2**20:.0f} MiB)")
    print(f"R1 {res.cmc[0]:.5f}  mAP {res.mAP:.6f}  valid {res.num_valid_queries}")


if __name__ == "__main__":
    main()
