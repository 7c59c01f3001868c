"""AFR benchmark: attribute-first fast retrieval vs exhaustive Hamming search on a large gallery (SSR;
the paper's Table 5 / Table 8).

1. Model: trains ``configs/synthetic_reid/ssr.py`` (small CNN, two-branch PCB, 2048-bit ID codes + 34-bit
   attribute codes) into ``--workdir`` unless it already holds a trained checkpoint.
2. Codes: the synthetic ``default`` query / gallery / val / train splits are encoded with the model. The
   gallery is grown to ``--gallery`` codes (default 500,000) with **code-level distractors**: each is the
   (ID, attribute) code pair of a random encoded *training* image (training identities are disjoint from the
   test and val identities, so these are never true matches, and the val codes used to fit the search are
   not copied into the gallery) with every ID bit flipped with probability ``--id_flip`` (0.1) and every
   attribute bit with ``--attr_flip`` (0.03), so no two distractors coincide. Distractors get pid 0 (Market
   protocol: ordinary negatives). Rendering and encoding 500k images is what ``bench/ctf.py --rendered``
   does; it takes ~25 minutes on 2 cores, so it is not the default here.
3. **The default row** is the method's own path (``jhash.methods.ssr`` with its ``DEFAULTS``): ``fit_search``
   on the val split (with its camera ids), then, unless ``afr_window='rule'``, ``first_codes`` (attribute
   code + ``afr_prefix_bits`` ID bits, 88 for 2048-bit codes) and ``search_window`` fitted against this gallery: ``'protocol'``
   keeps ``afr_match_target`` of the val images' exhaustive rank-1 matches under the Market protocol
   (``fit_match_window``), ``'gallery'`` is the w rule among this gallery, ``'recall'`` a share of the
   exhaustive top-k; searched with ``attribute_first_topk(backend="scan")``. Beside it the same with other
   ``--prefix_bits``, ``--window_kinds`` and ``--match_targets``, and the paper's AFR: the w rule on the val
   split (leave-one-out, target rank-w accuracy 0.97) gives ``w_fraction``, the gallery uses
   ``w = ceil(w_fraction · ng)``, and AFR runs at that and at the ``--windows`` shares (native grouped search).
4. ms per query of top-10 search (median of ``--repeats`` rounds over all queries, same process, interleaved)
   and R1 / mAP (full ranking, Market protocol) for: exhaustive 2048-bit search with jhash's fastest
   exhaustive top-k (the native kernel when built), every AFR row above, and exhaustive search with fewer
   bits (128 / 256 / 512 bits cut from the ID code with the paper's layout: the first bits of every stripe
   and of the global vector) as the "reduce the bit length" alternative at matched time (Table 8).

    .venv/bin/python bench/afr.py                          # full run (train + 500k gallery)
    .venv/bin/python bench/afr.py --workdir runs/synthetic_ssr
    .venv/bin/python bench/afr.py --quick                  # smoke run (tiny data, 20k gallery)

Prints one JSON line per measurement and a table; ``--json FILE`` writes them to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402  (bench/_common.py)
from _common import exhaustive_topk_fn, interleaved_medians  # noqa: E402
import numpy as np  # noqa: E402



def train_or_load(workdir: pathlib.Path, quick: bool, epochs: int | None):
    overrides = []
    if quick:
        overrides = ["dataset.config=tiny", "train.epochs=0", "train.steps=4", "train.batch_p=4", "train.batch_k=2",
                     "optimizer.warmup=0", "eval.batch_size=16", "input.image_size=(48, 24)"]
    elif epochs is not None:
        overrides = [f"train.epochs={epochs}"]
    return _common.train_or_load(workdir, "ssr", overrides)


def encode(trained):
    """Packed codes and metadata of the query, gallery and val splits."""
    from jhash import encode as encode_lib
    from jhash import evaluator, parallel, trainer

    c = trained.config
    data = trainer.Data(c)
    enc = evaluator.encode_splits(trained, data, "market")
    mesh = parallel.make_mesh()
    fn = encode_lib.codes_fn(trained.model, trained.method, c, mesh)
    for name, split in (("val", c.dataset.val_split), ("train", "train")):
        enc[name] = encode_lib.run_split(fn, trained.variables, data.eval_batches(split, c.eval.batch_size), mesh,
                                         c.eval.batch_size)
    for part in enc.values():
        part["packed"] = encode_lib.pack_all(part)
    return enc


def grow_gallery(enc, size: int, id_flip: float, attr_flip: float, seed: int = 0):
    """Gallery codes grown to ``size`` with code-level distractors (module docstring, step 2)."""
    g, v = enc["gallery"], enc["train"]
    n0 = len(g["pid"])
    extra = max(0, size - n0)
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(v["pid"]), extra)

    def noisy(packed, p, nbits):
        """Flip each of the first ``nbits`` bits with probability p (the packing's padding bits stay zero)."""
        bits = np.unpackbits(packed[src], axis=1)
        flips = rng.random(bits.shape) < p
        flips[:, nbits:] = False
        return np.packbits(bits ^ flips, axis=1)

    out = {}
    for name, p in (("id", id_flip), ("attr", attr_flip)):
        nbits = int(np.asarray(v[f"code/{name}"]).shape[1])
        out[name] = (np.concatenate([g["packed"][name], noisy(v["packed"][name], p, nbits)]) if extra
                     else g["packed"][name])
    out["pid"] = np.concatenate([g["pid"], np.zeros(extra, g["pid"].dtype)])
    cams = rng.integers(1, 7, extra).astype(g["camid"].dtype)
    out["camid"] = np.concatenate([g["camid"], cams])
    return out


def topk_overlap(top: np.ndarray, ref: np.ndarray) -> float:
    """Mean share of each query's exhaustive top-k that ``top`` also returns, in %."""
    return 100.0 * float(np.mean([len(np.intersect1d(a, b)) / ref.shape[1] for a, b in zip(top, ref)]))


def metrics(q, gal, **inputs):
    from jhash.metrics import reid_metrics

    m = reid_metrics(**inputs, q_pids=q["pid"], g_pids=gal["pid"], q_camids=q["camid"], g_camids=gal["camid"],
                     max_rank=10)
    return {"R1": 100 * float(m.cmc[0]), "mAP": 100 * float(m.mAP)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=pathlib.Path, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--gallery", type=int, default=None)
    p.add_argument("--windows", type=str, default="0.01,0.05,0.1,0.2")
    p.add_argument("--short_bits", type=str, default="128,256,512")
    p.add_argument("--prefix_bits", type=str, default="0,24,56,88",
                   help="ID bits after the attribute code in the first codes of the fitted-window rows")
    p.add_argument("--window_kinds", type=str, default="protocol",
                   help="how those rows' windows are fitted on the gallery: protocol (keep exhaustive search's "
                        "matches under the Market protocol), gallery (the w rule among it), recall")
    p.add_argument("--match_targets", type=str, default="",
                   help="protocol rows: shares of the exhaustive search's matches to keep (default: the method's)")
    p.add_argument("--id_flip", type=float, default=0.1)
    p.add_argument("--attr_flip", type=float, default=0.03)
    p.add_argument("--target", type=float, default=0.97)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", type=pathlib.Path, default=None)
    a = p.parse_args(argv)

    from jhash import search
    from jhash.search import attribute_first as afr

    gallery_size = a.gallery or (20_000 if a.quick else 500_000)
    tmp = None
    workdir = a.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory()
        workdir = pathlib.Path(tmp.name) / "ssr"
    trained, _ = train_or_load(workdir, a.quick, a.epochs)
    t = time.perf_counter()
    enc = encode(trained)
    print(f"# encoded query/gallery/val in {time.perf_counter() - t:.0f} s", flush=True)
    if "attr" not in enc["query"]["packed"]:
        raise SystemExit("the model has no attribute codes: AFR needs a dataset with attributes")
    v = enc["val"]
    rule = afr.fit_window(v["packed"]["attr"], v["packed"]["attr"], v["pid"], v["pid"], target=a.target,
                          exclude_self=True)
    gal = grow_gallery(enc, gallery_size, a.id_flip, a.attr_flip)
    q = {"pid": enc["query"]["pid"], "camid": enc["query"]["camid"], **enc["query"]["packed"]}
    ng, nq = len(gal["pid"]), len(q["pid"])
    w_rule = afr.window_for_gallery(rule.fraction, ng)
    print(f"# w rule on val: w={rule.w} of {rule.gallery_size} (rank-w acc {rule.accuracy:.3f}) -> w={w_rule} "
          f"of {ng} gallery codes; {nq} queries", flush=True)

    from jhash import config as config_lib
    from jhash.methods import ssr

    d = ssr.DEFAULTS
    val_codes = {"attr": v["packed"]["attr"], "id": v["packed"]["id"]}
    store = config_lib.base_config()  # fit_search keeping the val codes, for the fitted-window rows
    store.method = ssr.method_config(parts=int(trained.config.method.get("parts", 6)), afr_window="gallery")
    params = ssr.fit_search(val_codes, v["pid"], store, camids=v["camid"])
    name, topk = exhaustive_topk_fn()
    runs = {"exhaustive 2048": lambda: topk(q["id"], gal["id"], a.k)}
    plans = {}  # label -> (query first codes, AFRIndex, w, backend)
    fits = {}  # label -> what search_window reported
    prefix = [int(b) for b in a.prefix_bits.split(",") if b != ""]
    kind = d["afr_window"]
    default = (kind, ssr.prefix_bits(store, 8 * gal["id"].shape[1]), d["afr_match_target"])
    targets = [float(t) for t in a.match_targets.split(",") if t] or [d["afr_match_target"]]
    variants = [(wk, b, t) for wk in a.window_kinds.split(",") for b in prefix
                for t in (targets if wk == "protocol" else [d["afr_match_target"]])]
    variants = ([default] if kind != "rule" else []) + [v for v in variants if v != default]
    for wk, bits, target in variants:
        c_b = config_lib.base_config()
        c_b.method = ssr.method_config(parts=int(trained.config.method.get("parts", 6)), afr_prefix_bits=bits,
                                       afr_window=wk, afr_match_target=target)
        t0 = time.perf_counter()
        gf = ssr.first_codes(gal["attr"], gal["id"], c_b)
        w, info = ssr.search_window(gf, gal["id"], params, c_b)
        label = f"AFR attr + {bits} ID bits, {wk} window" + (f" {target:g}" if wk == "protocol" else "")
        label = "AFR default: " + label[len("AFR "):] if (wk, bits, target) == default else label
        plans[label] = (ssr.first_codes(q["attr"], q["id"], c_b), afr.AFRIndex.build(gf, gal["id"]), w,
                        "scan" if gf.shape[1] != gal["attr"].shape[1] else "auto")
        fits[label] = info
        print(f"# {label}: w={w} ({100 * w / ng:.2f} % of the gallery) fitted in {time.perf_counter() - t0:.1f} s: {info}",
              flush=True)
    index = afr.AFRIndex.build(gal["attr"], gal["id"])
    windows = sorted({w_rule, *(afr.window_for_gallery(float(f), ng) for f in a.windows.split(",") if f)})
    for w in windows:
        rule_label = " (w rule, default)" if kind == "rule" else " (w rule)"
        plans[f"AFR (paper) w={w}" + (rule_label if w == w_rule else "")] = (q["attr"], index, w, "auto")
    for label, (qf, idx, w, backend) in plans.items():
        runs[label] = (lambda qf=qf, idx=idx, w=w, backend=backend:
                       afr.attribute_first_topk(qf, q["id"], idx, w, a.k, backend=backend))
    short = {}
    for bits in (int(b) for b in a.short_bits.split(",") if b):
        keep = ssr.prefix_bit_positions(int(trained.config.model.bits), bits, int(trained.config.method.get("parts", 6)))
        short[bits] = tuple(np.ascontiguousarray(np.asarray(search.select_bits(x, keep))) for x in (q["id"], gal["id"]))
        runs[f"exhaustive {bits}"] = (lambda b=bits: topk(short[b][0], short[b][1], a.k))
    ms = {k: 1000 * sec / nq for k, sec in interleaved_medians(runs, a.repeats).items()}

    rows = []
    base = metrics(q, gal, q_codes=q["id"], g_codes=gal["id"])
    _, ref = topk(q["id"], gal["id"], a.k)
    rows.append({"search": f"exhaustive 2048 ({name})", "w": ng, **base, "ms/query": ms["exhaustive 2048"],
                 "overlap": 100.0})
    for label, (qf, idx, w, backend) in plans.items():
        keys = afr.attribute_first_key_matrix(qf, idx.attr, q["id"], gal["id"], w)
        _, top = afr.attribute_first_topk(qf, q["id"], idx, w, a.k, backend=backend)
        rows.append({"search": label, "w": w, **metrics(q, gal, distances=keys), "ms/query": ms[label],
                     "fit": fits.get(label, {}),
                     "overlap": topk_overlap(top, np.asarray(ref))})
    for bits, (qs, gs) in short.items():
        _, top = topk(qs, gs, a.k)
        rows.append({"search": f"exhaustive {bits}", "w": ng, **metrics(q, gal, q_codes=qs, g_codes=gs),
                     "ms/query": ms[f"exhaustive {bits}"], "overlap": topk_overlap(np.asarray(top), np.asarray(ref))})
    for r in rows:
        r["speedup"] = ms["exhaustive 2048"] / r["ms/query"]
        r["dR1"] = r["R1"] - base["R1"]
        r["gallery_share"] = r["w"] / ng
        r.update(gallery=ng, queries=nq, w_rule=w_rule, w_rule_fraction=rule.fraction, val_w=rule.w,
                 val_accuracy=rule.accuracy, load_average=os.getloadavg())
        print(json.dumps(r), flush=True)
    print(f"\n{'search':<46}{'w':>9}{'share':>8}{'R1':>7}{'mAP':>7}{'ovl':>7}{'ms/q':>8}{'speed-up':>9}{'dR1':>7}")
    for r in rows:
        print(f"{r['search']:<46}{r['w']:>9}{100 * r['gallery_share']:>7.2f}%{r['R1']:>7.2f}{r['mAP']:>7.2f}"
              f"{r['overlap']:>7.1f}{r['ms/query']:>8.3f}{r['speedup']:>8.2f}x{r['dR1']:>7.2f}")
    if a.json:
        a.json.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
