"""CtF benchmark: coarse-to-fine search vs exhaustive Hamming search on a large gallery.

1. Model: trains ``configs/synthetic_reid/ctf.py`` (small CNN + All-in-One pyramid 2048/512/128/32, a few
   minutes on CPU) into ``--workdir`` unless that workdir already holds a trained checkpoint.
2. Codes: the synthetic ``default`` query (400) / gallery (1,341) / val splits are encoded with the model;
   the gallery is grown to ``--gallery`` (default 500,000) codes with distractors (pid 0):
   ``--rendered`` of them are images of the ``large`` synthetic config's distractor identities, rendered
   and encoded; the rest are **encoded feature mixtures**: the backbone features of two random rendered
   distractors mixed (``w f_a + (1 - w) f_b``, ``w ~ U(0, 1)``, plus 5% Gaussian noise of the feature scale)
   and passed through the trained pyramid head (BN, sign), so every level of a synthetic code comes from
   the same model (rendering 500k images takes ~25 min on 2 cores; ``--rendered 500000`` does it).
3. Thresholds, never fitted on the test split. **The default row** is the method's own path
   (``jhash.methods.ctf.fit_search`` on the ``val`` split, then ``search_plan`` at search time, with
   ``jhash.methods.ctf.DEFAULTS``: the stage costs measured on the gallery's index,
   ``jhash.search.coarse_to_fine.measure_stage_costs``; printed per size). Beside it, per gallery size: the
   recall-targeted fit with the streamed-bits cost (``--gather-bits`` per random fetch)
   (:func:`jhash.search.fit_recall_thresholds`) for every ``--targets`` share of the exhaustive 2048-bit top-10
   and every ``--confidences`` level of its lower bound, with the val split's codes as queries against the
   gallery and with ``--gallery-fit`` of the gallery's own codes as queries (no labels are used by either);
   the same fit on the val split alone; DTO for every (beta, rho) pair.
4. For each gallery size (10k, 100k, 500k; prefixes of the grown gallery): ms per query of top-10 search
   and R1 / mAP (full ranking, Market protocol) for exhaustive 2048-bit (jhash's fastest exhaustive top-k:
   the native kernel when built, else ``jhash.search.hamming_topk``), exhaustive 32/128/512-bit and CtF at
   each beta, and the share of the exhaustive 2048-bit top-k each search returns (``overlap``). Times are medians of ``--repeats`` rounds over all queries, in the same process, every round
   running every search in turn (interleaved, bench/_common.py); CtF gets
   its gallery index (word views, device copy) built once, outside the clock, like any search index.

    .venv/bin/python bench/ctf.py                      # full run (train ~5 min + search)
    .venv/bin/python bench/ctf.py --workdir runs/synthetic_ctf
    .venv/bin/python bench/ctf.py --quick              # smoke run (tiny data, 20k gallery)

Prints one JSON line per measurement and a table; ``--json FILE`` writes them to FILE; ``--plot FILE``
draws mAP vs ms per query.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import _common  # noqa: E402  (bench/_common.py)
from _common import exhaustive_topk_fn, interleaved_medians  # noqa: E402
import numpy as np  # noqa: E402

LEVELS = ("l32", "l128", "l512", "l2048")


# ---------------------------------------------------------------------------------------------- model --


def train_or_load(workdir: pathlib.Path, quick: bool, epochs: int | None):
    overrides = []
    if quick:
        overrides = ["dataset.config=tiny", "train.epochs=0", "train.steps=6", "train.batch_p=4", "train.batch_k=2",
                     "optimizer.warmup=0", "eval.batch_size=16"]
    elif epochs is not None:
        overrides = [f"train.epochs={epochs}"]
    return _common.train_or_load(workdir, "ctf", overrides)


class Encoder:
    """Images / backbone features -> packed codes per level, with a trained AiO model."""

    def __init__(self, trained):
        from jhash.methods import ctf
        from jhash.models.pyramid import CodePyramid

        self.t = trained
        self.lengths = tuple(int(n) for n in trained.config.method.lengths)
        self.names = ctf.level_names(self.lengths)
        model, variables = trained.model, trained.variables
        self._apply = jax.jit(lambda x: model.apply(variables, x, train=False))
        head = CodePyramid(self.lengths, use_bn=bool(trained.config.method.get("hash_bn", True)),
                           detach_inputs=bool(trained.config.method.get("detach_inputs", False)))
        head_vars = {"params": variables["params"]["pyramid"]}
        if "batch_stats" in variables and "pyramid" in variables["batch_stats"]:
            head_vars["batch_stats"] = variables["batch_stats"]["pyramid"]
        self._head = jax.jit(lambda f: head.apply(head_vars, f, train=False))

    @staticmethod
    def _pack(pre) -> np.ndarray:
        return np.packbits(np.asarray(pre) >= 0, axis=1)

    def images(self, records, batch: int = 256):
        """``(codes {name: packed}, features, pids, camids)`` of rendered records."""
        from jhash.data import augment

        size = tuple(self.t.image_size)
        codes = {n: [] for n in self.names}
        feats, pids, camids = [], [], []
        for s in range(0, len(records), batch):
            chunk = records[s:s + batch]
            x = augment.eval_batch([augment.decode(r["image"], size) for r in chunk])
            n = x.shape[0]
            pad = (-n) % 32
            if pad:
                x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            out = self._apply(jnp.asarray(x))
            for name in self.names:
                codes[name].append(self._pack(out[f"{name}/pre"][:n]))
            feats.append(np.asarray(out["features"][:n]))
            pids += [int(r["pid"]) for r in chunk]
            camids += [int(r["camid"]) for r in chunk]
        return ({k: np.concatenate(v) for k, v in codes.items()}, np.concatenate(feats),
                np.asarray(pids, np.int32), np.asarray(camids, np.int32))

    def features(self, feats: np.ndarray, batch: int = 8192) -> dict[str, np.ndarray]:
        codes = {n: [] for n in self.names}
        for s in range(0, len(feats), batch):
            levels = self._head(jnp.asarray(feats[s:s + batch]))
            for name, level in zip(self.names, levels):
                codes[name].append(self._pack(level.pre))
        return {k: np.concatenate(v) for k, v in codes.items()}


def render(split: str, config: str, indices) -> list[dict]:
    from jhash.data.synthetic import SyntheticSource

    src = SyntheticSource(split, config)
    return src.__getitems__([int(i) for i in indices])


def build_codes(enc: Encoder, quick: bool, gallery_size: int, rendered: int, seed: int = 0):
    from jhash.data.synthetic import SyntheticSource

    base = "tiny" if quick else "default"
    t = time.perf_counter()
    val = enc.images(render("val", base, range(len(SyntheticSource("val", base)))))
    query = enc.images(render("query", base, range(len(SyntheticSource("query", base)))))
    gal = enc.images(render("gallery", base, range(len(SyntheticSource("gallery", base)))))
    large = SyntheticSource("gallery", "large")
    lp = large.pids
    distractor_idx = np.flatnonzero(lp == 0)
    extra = max(0, gallery_size - len(gal[2]))
    n_render = min(extra, rendered, len(distractor_idx))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(distractor_idx, size=n_render, replace=False)) if n_render else np.zeros(0, int)
    dis = enc.images(render("gallery", "large", pick)) if n_render else None
    print(f"# encoded val/query/gallery + {n_render} rendered distractors in {time.perf_counter() - t:.0f} s",
          flush=True)
    parts_codes, parts_pids, parts_cams = [gal[0]], [gal[2]], [gal[3]]
    if dis is not None:
        parts_codes.append(dis[0])
        parts_pids.append(dis[2])
        parts_cams.append(dis[3])
    n_mix = extra - n_render
    if n_mix > 0:
        if dis is None:
            raise ValueError("--rendered must be >= 2 to synthesise distractor features")
        f = dis[1]
        a, b = rng.integers(0, len(f), n_mix), rng.integers(0, len(f), n_mix)
        w = rng.random((n_mix, 1)).astype(np.float32)
        scale = float(np.std(f))
        mixed = w * f[a] + (1 - w) * f[b] + 0.05 * scale * rng.standard_normal((n_mix, f.shape[1])).astype(np.float32)
        parts_codes.append(enc.features(mixed))
        parts_pids.append(np.zeros(n_mix, np.int32))
        parts_cams.append(rng.integers(1, 7, n_mix).astype(np.int32))
    gcodes = {n: np.concatenate([p[n] for p in parts_codes]) for n in enc.names}
    print(f"# gallery of {len(gcodes[enc.names[0]])} codes ready after {time.perf_counter() - t:.0f} s", flush=True)
    return val, query, (gcodes, np.concatenate(parts_pids), np.concatenate(parts_cams))


# --------------------------------------------------------------------------------------------- search --


def topk_overlap(top: np.ndarray, ref: np.ndarray) -> float:
    """Mean share of each query's reference top-k (exhaustive longest code) that ``top`` also returns, in %."""
    return 100.0 * float(np.mean([len(np.intersect1d(a, b)) / ref.shape[1] for a, b in zip(top, ref)]))


def merged_metrics(parts) -> dict:
    valid = sum(m.num_valid_queries for m in parts)
    w = [m.num_valid_queries / max(valid, 1) for m in parts]
    cmc = sum(wi * np.nan_to_num(m.cmc) for wi, m in zip(w, parts))
    return {"R1": 100 * float(cmc[0]), "mAP": 100 * sum(wi * np.nan_to_num(m.mAP) for wi, m in zip(w, parts)),
            "num_valid_queries": valid}


def metrics_codes(q, g, qp, gp, qc, gc) -> dict:
    from jhash.metrics import reid_metrics

    m = reid_metrics(q_codes=q, g_codes=g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=10)
    return merged_metrics([m])


def metrics_ctf(qd, index, thresholds, qp, gp, qc, gc, block: int) -> dict:
    from jhash.metrics import reid_metrics
    from jhash.search import coarse_to_fine as C

    parts = []
    for s, e, keys in C.coarse_to_fine_key_blocks(qd, index, thresholds, block_size=block):
        parts.append(reid_metrics(distances=keys, q_pids=qp[s:e], g_pids=gp, q_camids=qc[s:e], g_camids=gc,
                                  max_rank=10))
    return merged_metrics(parts)


def ctf_method_default(key: str):
    from jhash.methods import ctf as ctf_method

    return ctf_method.DEFAULTS[key]


def neighbourhoods(exh, q_long: np.ndarray, val_long: np.ndarray, g_long: np.ndarray, k: int,
                   sample: int = 200) -> dict:
    """Mean longest-code Hamming distance from a query to its ``k`` nearest gallery codes, for the test
    queries, the val split's codes and ``sample`` of the gallery's own codes (each without itself): how far
    the top-k a recall fit must keep lies, per kind of query."""
    rows = np.sort(np.random.default_rng(0).choice(len(g_long), min(sample, len(g_long)), replace=False))
    own = np.asarray(exh(g_long[rows], g_long, k + 1)[0])[:, 1:]  # the first is the code itself (distance 0)
    return {"test queries": float(np.mean(exh(q_long, g_long, k)[0])),
            "val queries": float(np.mean(exh(val_long, g_long, k)[0])), "gallery codes": float(np.mean(own))}


def gather_calibration(rows: list[dict], size: int) -> float | None:
    """The gather cost ``g`` (streamed bits per random candidate fetch) that best explains the CtF rows'
    times: least squares of ``ms = u * size * (l_0 + sum_s p_s l_s) + (u g) * size * sum_s p_s`` over the rows
    (``p_s`` the share of the gallery reaching stage ``s``), the cost model of the recall fit."""
    a, b, y = [], [], []
    for r in rows:
        bits = [int(n[1:]) for n in r["levels"]]
        shares = [c / size for c in r["mean_candidates"][: len(bits) - 1]]
        a.append(size * (bits[0] + sum(p * l for p, l in zip(shares, bits[1:]))))
        b.append(size * sum(shares))
        y.append(r["ms/query"])
    if len(y) < 3:
        return None
    (u, ug), *_ = np.linalg.lstsq(np.stack([a, b], axis=1), np.asarray(y), rcond=None)
    return float(ug / u) if u > 0 else None


def plot(rows: list[dict], size: int, path) -> None:
    """Top-k overlap with exhaustive 2048-bit search vs ms per query, for the gallery of ``size`` codes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in (r for r in rows if r["gallery"] == size):
        ctf_row = r["method"].startswith("CtF")
        ax.scatter(r["ms/query"], r["overlap"], marker="o" if ctf_row else "s", color="C0" if ctf_row else "C3")
        ax.annotate(f"{r['method']} (mAP {r['mAP']:.1f})", (r["ms/query"], r["overlap"]), fontsize=7,
                    xytext=(4, -3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("ms per query (top-10, 2 CPU threads)")
    ax.set_ylabel("% of the exhaustive 2048-bit top-10 returned")
    ax.set_title(f"CtF vs exhaustive Hamming search, gallery {size:,}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="trained CtF workdir (trained here if it has no checkpoint)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny data, a few steps, 20k gallery")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    p.add_argument("--gallery", type=int, default=None, help="largest gallery size (default 500000; quick 20000)")
    p.add_argument("--sizes", default=None, help="comma-separated gallery sizes (default 10000,100000,500000)")
    p.add_argument("--rendered", type=int, default=None, help="distractors rendered as images (default 20000)")
    p.add_argument("--betas", default="0.5,1,2,4", help="DTO beta values for CtF (every (beta, rho) pair is run)")
    p.add_argument("--rhos", default="1,ratio", help="DTO class-ratio weights: numbers, or 'ratio' (the val "
                   "split's non-relevant / relevant pair ratio); every (beta, rho) pair is run")
    p.add_argument("--targets", default="0.95", help="recall targets of the recall-targeted threshold fit")
    p.add_argument("--gather-bits", type=float, default=ctf_method_default("recall_gather_bits"),
                   help="the recall fit's cost of one random candidate fetch, in streamed bits")
    p.add_argument("--confidences", default="0,0.95",
                   help="confidence levels of the recall fit's lower bound (0: the sample recall itself)")
    p.add_argument("--gallery-fit", type=int, default=200,
                   help="also fit the recall-targeted thresholds with this many of each gallery's codes as "
                        "queries against it (0: off)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--block", type=int, default=64, help="queries per CtF block")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    a = p.parse_args(argv)
    quick = a.quick
    gallery = a.gallery or (20_000 if quick else 500_000)
    sizes = [int(s) for s in (a.sizes or ("5000,20000" if quick else "10000,100000,500000")).split(",")]
    sizes = sorted({min(s, gallery) for s in sizes})
    rendered = a.rendered if a.rendered is not None else (500 if quick else 20_000)
    betas = [float(b) for b in a.betas.split(",")]

    from jhash.methods import ctf as ctf_method
    from jhash.search import coarse_to_fine as C
    from jhash.search.dto import fit_recall_thresholds, fit_thresholds

    workdir = pathlib.Path(a.workdir) if a.workdir else pathlib.Path(tempfile.mkdtemp(prefix="jhash_bench_ctf_"))
    trained, fresh = train_or_load(workdir, quick, a.epochs)
    enc = Encoder(trained)
    if tuple(enc.names[::-1]) != LEVELS and not quick:
        print(f"# note: the model's levels are {enc.names}", flush=True)
    val, query, (gcodes, gp, gc) = build_codes(enc, quick, gallery, rendered)
    order = enc.names[::-1]  # short to long
    qcodes, qp, qc = query[0], query[2], query[3]
    rhos = [r if r == "ratio" else float(r) for r in a.rhos.split(",")]
    val_levels = {n: val[0][n] for n in order}
    targets = [float(x) for x in a.targets.split(",")]
    confidences = [float(x) for x in a.confidences.split(",")]
    # the default: the method's own fit_search on the val split, then its search-time fit on each gallery
    from jhash import config as config_lib

    method_cfg = config_lib.base_config()
    method_cfg.method = ctf_method.method_config(lengths=enc.lengths)
    method_params = ctf_method.fit_search(val_levels, val[2], method_cfg)
    d = ctf_method.DEFAULTS
    default_label = f"CtF default ({d['threshold_fit']} fit)"
    plans = {}  # label -> (levels short to long, thresholds), fitted on the val split alone
    for target in targets:
        label = f"CtF recall r={target:g} c={confidences[-1]:g}, val only, levels chosen"
        fit = fit_recall_thresholds(val_levels, order=order, target=target, k=a.k, confidence=confidences[-1],
                                    gather_bits=a.gather_bits, choose_levels=True)
        plans[label] = (list(fit.levels), fit.thresholds)
    for r in rhos:
        for b in betas:
            plans[f"CtF DTO beta={b:g} rho={r if isinstance(r, str) else f'{r:g}'}"] = (order, fit_thresholds(
                val_levels, val[2], order=order, beta=b, rho=r))
    exh_name, exh = exhaustive_topk_fn()
    header = {"bench": "ctf", "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "jax_backend": jax.default_backend(), "exhaustive_backend": exh_name,
              "queries": int(len(qp)), "k": a.k, "repeats": a.repeats, "workdir": str(workdir), "trained_here": fresh,
              "rendered_distractors": rendered, "method_defaults": {k: v for k, v in d.items() if "recall" in k or
                                                                   k in ("threshold_fit", "beta", "rho")},
              "val_only_plans": plans}
    print(json.dumps(header), flush=True)
    rows = []
    calibration, hoods = {}, {}
    nq = len(qp)
    for size in sizes:
        g = {n: gcodes[n][:size] for n in order}
        gps, gcs = gp[:size], gc[:size]
        runs = {f"exhaustive {name[1:]}-bit": (lambda name=name: exh(qcodes[name], g[name], a.k))
                for name in order[::-1]}  # longest first: the reference
        t0 = time.perf_counter()
        size_plans = {default_label: ctf_method.search_plan(g, method_cfg, method_params)}
        print(f"# {default_label} ({size}): {size_plans[default_label]} fitted in {time.perf_counter() - t0:.1f} s",
              flush=True)
        costs = C.measure_stage_costs(C.CoarseToFineIndex.build([g[n] for n in order]))
        print(json.dumps({"gallery": size, "stage_costs_ns (scan, fetch) per level, measured again": dict(
            zip(order, [[round(x, 3) for x in c] for c in costs])) if costs else None}), flush=True)
        fits = {}
        for target in targets:
            for conf in confidences:
                same_as_default = (d["threshold_fit"] == "recall" and d["recall_queries"] == "val"
                                   and d["recall_choose_levels"] and target == d["recall_target"]
                                   and conf == d["recall_confidence"] and a.gather_bits == d["recall_gather_bits"]
                                   and a.k == d["recall_k"] and d["recall_cost"] == "bits")
                if not same_as_default:
                    fits[f"CtF recall r={target:g} c={conf:g}, val queries, levels chosen, bits cost "
                         f"+ {a.gather_bits:g} per fetch"] = dict(
                        target=target, confidence=conf, query_codes=val_levels, gather_bits=a.gather_bits,
                        choose_levels=True)
            fits[f"CtF recall r={target:g} c={confidences[-1]:g}, val queries, every level, bit cost"] = dict(
                target=target, confidence=confidences[-1], query_codes=val_levels)
            if a.gallery_fit:  # the previous default
                fits[f"CtF recall r={target:g}, {a.gallery_fit} gallery codes, every level, bit cost"] = dict(
                    target=target, queries=min(a.gallery_fit, size))
        for label, how in fits.items():
            t0 = time.perf_counter()
            fit = fit_recall_thresholds(g, order=order, k=a.k, **how)
            size_plans[label] = (list(fit.levels), fit.thresholds)
            print(f"# {label} ({size}): {size_plans[label]} fitted in {time.perf_counter() - t0:.1f} s", flush=True)
        size_plans.update(plans)
        indexes = {}
        for levels, _ in size_plans.values():
            if tuple(levels) not in indexes:
                indexes[tuple(levels)] = C.CoarseToFineIndex.build({n: g[n] for n in levels})
        qd = {n: qcodes[n] for n in order}

        def run(plan):
            levels, t = plan
            return C.coarse_to_fine_topk({n: qd[n] for n in levels}, indexes[tuple(levels)], t, a.k,
                                         block_size=a.block)

        for label, plan in size_plans.items():
            runs[label] = (lambda plan=plan: run(plan))
        ms = {label: 1000 * sec / nq for label, sec in interleaved_medians(runs, a.repeats).items()}
        ref_ms = ms[f"exhaustive {order[-1][1:]}-bit"]
        hoods[size] = neighbourhoods(exh, qcodes[order[-1]], val_levels[order[-1]], g[order[-1]], a.k)
        print(json.dumps({"gallery": size, "mean_topk_distance": hoods[size]}), flush=True)
        tops = {name: np.asarray(exh(qcodes[name], g[name], a.k)[1]) for name in order}
        ref_top = tops[order[-1]]
        ctf_rows = []
        for label, (levels, t) in size_plans.items():
            res = run((levels, t))
            m = metrics_ctf({n: qd[n] for n in levels}, indexes[tuple(levels)], t, qp, gps, qc, gcs, a.block)
            cand = res.num_candidates.mean(axis=0)
            ctf_rows.append({"gallery": size, "method": label, "ms/query": ms[label], "speedup": ref_ms / ms[label],
                             **m, "overlap": topk_overlap(res.indices, ref_top), "levels": levels, "thresholds": t,
                             "mean_candidates": [round(float(x), 1) for x in cand]})
            print(json.dumps(ctf_rows[-1]), flush=True)
        calibration[size] = gather_calibration(ctf_rows, size)
        print(json.dumps({"gallery": size, "gather_bits_fit": calibration[size]}), flush=True)
        rows.append(ctf_rows.pop(0))  # the default first
        for name in order[::-1]:
            label = f"exhaustive {name[1:]}-bit"
            m = metrics_codes(qcodes[name], g[name], qp, gps, qc, gcs)
            rows.append({"gallery": size, "method": label, "ms/query": ms[label], "speedup": ref_ms / ms[label], **m,
                         "overlap": topk_overlap(tops[name], ref_top)})
            print(json.dumps(rows[-1]), flush=True)
        rows.extend(ctf_rows)
    print()
    print(f"{'gallery':>8} {'method':<62} {'ms/query':>9} {'speedup':>8} {'R1':>6} {'mAP':>6} {'top-k overlap':>14}"
          f"  levels: thresholds, candidates per stage")
    for r in rows:
        plan = ""
        if "levels" in r:
            plan = (f"{'/'.join(n[1:] for n in r['levels'])}: {list(r['thresholds'].values())}, "
                    f"{[round(c) for c in r['mean_candidates'][:len(r['levels']) - 1]]}")
        print(f"{r['gallery']:>8} {r['method']:<62} {r['ms/query']:>9.3f} {r['speedup']:>7.1f}x {r['R1']:>6.1f} "
              f"{r['mAP']:>6.1f} {r['overlap']:>13.1f}%  {plan}")
    print(f"gather cost that best explains the CtF rows' times, in streamed bits: {calibration}")
    print(f"mean longest-code distance to the {a.k} nearest gallery codes: {hoods}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"header": header, "rows": rows, "gather_bits_fit": calibration,
                                                    "mean_topk_distance": hoods},
                                                   indent=1))
    if a.plot:
        plot(rows, sizes[-1], a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
