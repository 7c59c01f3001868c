"""Retrieval quality of DVHN, DHMTL and DRSCH on synthetic_reid with one small backbone and step budget.

For each method and code length (64 / 256 / 1024 bits) train the method's synthetic config with the same
small CNN, the same number of steps and the same seed, then report R1 / mAP (Market protocol) of exhaustive
Hamming search; DRSCH also reports its 64-bit model truncated to the 16 and 32 most heavily weighted bits
(bit-scalable codes) and the weighted-Hamming-affinity ranking. Next to them, two references:

- ``LSH``: sign random projections (Charikar 2002) of the **untrained** backbone's pooled features, at the
  same code lengths;
- ``float``: Euclidean distance on real-valued pooled features — of the untrained backbone, and of each
  trained method's own backbone (its upper bound before hashing).

    python bench/quality.py                 # full table (synthetic_reid 'default'; ~1 h on a 2-core CPU)
    python bench/quality.py --quick         # smoke run: 'tiny' dataset, 16 bits, a few steps
    python bench/quality.py --steps 600 --bits 64 256 --methods drsch

Prints a markdown table and writes it (with the raw numbers as JSON) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jhash import config as config_lib  # noqa: E402
from jhash import evaluator, search, trainer  # noqa: E402
from jhash.methods import drsch  # noqa: E402


def _config(method: str, bits: int, args) -> "config_lib.ml_collections.ConfigDict":
    overrides = {
        "dataset.config": args.dataset_config,
        "model.bits": str(bits),
        "train.epochs": "0",
        "train.steps": str(args.steps),
        "train.log_every": str(max(1, args.steps // 10)),
        "train.ckpt_every": str(args.steps + 1),
        "seed": str(args.seed),
        "eval.tradeoff_bits": "()",
    }
    if args.data_dir:
        overrides["dataset.data_dir"] = args.data_dir
    if args.quick:
        overrides.update({"train.batch_p": "4", "train.batch_k": "2", "input.image_size": "(32, 16)"})
    if method == "dvhn":
        # the discrete update runs once per epoch; with a step budget, every `aux_every` epochs of the schedule
        overrides["method.aux_every"] = "1"
    if method == "drsch":
        overrides["method.eval_bits"] = "(16, 32)"
    path = ROOT / "configs" / "synthetic_reid" / f"{method}.py"
    return config_lib.load(path, [f"{k}={v}" for k, v in overrides.items()])


def _metrics(protocol, enc, **inputs):
    """R1 / mAP of the Market protocol (synthetic_reid's) from packed codes or a distance matrix."""
    from jhash import metrics

    if protocol != "market":
        raise ValueError(f"bench/quality.py evaluates synthetic_reid (Market protocol), got protocol {protocol!r}")
    q, g = enc["query"], enc["gallery"]
    m = metrics.reid_metrics(**inputs, q_pids=q["pid"], g_pids=g["pid"], q_camids=q.get("camid"),
                             g_camids=g.get("camid"), max_rank=10)
    return {"R1": m.rank(1), "mAP": m.mAP}


def _euclidean(q, g):
    q = np.asarray(q, np.float64)
    g = np.asarray(g, np.float64)
    return np.sqrt(np.maximum((q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2 * q @ g.T, 0.0))


def _lsh(q, g, bits, seed):
    """Sign random projections of mean-centred features (centred with the gallery mean)."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(g, np.float64).mean(0)
    proj = rng.normal(size=(q.shape[1], bits))
    code = lambda x: (((np.asarray(x, np.float64) - mean) @ proj) > 0).astype(np.uint8)
    return search.pack_codes(code(q)), search.pack_codes(code(g))


def _row(name, bits, m, seconds=None):
    return {"method": name, "bits": bits, "R1": float(m["R1"]), "mAP": float(m["mAP"]),
            "train_s": None if seconds is None else round(seconds, 1)}


def run(args) -> list[dict]:
    rows = []
    out = pathlib.Path(args.out)
    data = None
    untrained_done = False
    done = 0
    for method in args.methods:
        for bits in args.bits:
            c = _config(method, bits, args)
            data = data or trainer.Data(c)
            protocol = data.info.protocol
            workdir = out / f"{method}_{bits}"
            t0 = time.perf_counter()
            result = trainer.train(c, workdir, data=data, progress=False, async_checkpoints=False)
            # a finished workdir is reused (nothing trained now): its training time is not known
            seconds = None if result.resumed_from == args.steps else time.perf_counter() - t0
            trained = evaluator.load_trained(workdir, config=c)
            enc = evaluator.encode_splits(trained, data, protocol, with_features=True)
            q, g = enc["query"], enc["gallery"]
            packed = {k: search.pack_codes(np.asarray(q[f"code/{k}"])) for k in ("id",)}
            gpacked = {k: search.pack_codes(np.asarray(g[f"code/{k}"])) for k in ("id",)}
            rows.append(_row(method, bits, _metrics(protocol, enc, q_codes=packed["id"], g_codes=gpacked["id"]), seconds))
            rows.append(_row(f"{method} float features", bits,
                             _metrics(protocol, enc, distances=_euclidean(q["feature"], g["feature"]))))
            if method == "drsch":
                for m in (16, 32):
                    if f"code/top{m}" in q:
                        rows.append(_row(f"drsch top-{m} of {bits}", m, _metrics(
                            protocol, enc, q_codes=search.pack_codes(np.asarray(q[f"code/top{m}"])),
                            g_codes=search.pack_codes(np.asarray(g[f"code/top{m}"])))))
                # DRSCH's own search: weighted Hamming affinity ranking (evaluate.py's DRSCH row)
                params = drsch.model_search_params(trained.variables, c)
                found = drsch.search({"id": packed["id"]}, {"id": gpacked["id"]}, params, c)
                rows.append(_row("drsch weighted affinity", bits, _metrics(protocol, enc, distances=found["distances"])))
            if not untrained_done:
                base = evaluator.load_trained(workdir, config=c, untrained=True, data=data)
                benc = evaluator.encode_splits(base, data, protocol, with_features=True)
                fq, fg = benc["query"]["feature"], benc["gallery"]["feature"]
                rows.append(_row("float (untrained backbone)", 32 * fq.shape[1],
                                 _metrics(protocol, benc, distances=_euclidean(fq, fg))))
                for b in args.bits:
                    lq, lg = _lsh(fq, fg, b, args.seed)
                    rows.append(_row("LSH (untrained backbone)", b, _metrics(protocol, benc, q_codes=lq, g_codes=lg)))
                untrained_done = True
            for r in rows[done:]:
                print(json.dumps(r), flush=True)
            done = len(rows)
            out.mkdir(parents=True, exist_ok=True)
            (out / "quality.json").write_text(json.dumps(rows, indent=1))  # after every run: nothing is lost
    return rows


def table(rows) -> str:
    lines = ["| method | bits | R1 | mAP | train s |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        t = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        lines.append(f"| {r['method']} | {r['bits']} | {100 * r['R1']:.1f} | {100 * r['mAP']:.1f} | {t} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["dvhn", "dhmtl", "drsch"],
                   help="configs/synthetic_reid/<method>.py to train ('baseline' adds the CE + triplet reference)")
    p.add_argument("--bits", nargs="+", type=int, default=[64, 256, 1024])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset_config", default="default")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--out", default="runs/bench_quality")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny dataset, 16 bits, 4 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.dataset_config, args.bits, args.steps = "tiny", [16], 4
        args.out = args.out + "_quick"
    rows = run(args)
    text = table(rows)
    print(text)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(text + "\n")
    (out / "quality.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
