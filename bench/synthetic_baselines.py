"""How hard is synthetic_reid? Reference points next to a trained model (README's dataset table).

For a trained workdir (default: the demo's ``runs/demo``), on its query/gallery split under the Market protocol:
random codes, sign-random-projection LSH (Charikar 2002) of raw pixels and of the *untrained* backbone's pooled
features, the untrained backbone's float features (Euclidean), the untrained and trained hash codes, and the
trained backbone's float features.

    make demo && .venv/bin/python bench/synthetic_baselines.py --workdir runs/demo
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from quality import _euclidean, _lsh, _metrics  # noqa: E402  (bench/quality.py: the same helpers)

from jhash import evaluator, search, trainer  # noqa: E402


def _images(source, size) -> np.ndarray:
    from jhash.data import pipeline

    return np.concatenate([b["image"] for b in pipeline.eval_loader(source, batch_size=256, image_size=size)])


def run(workdir: str, bits: int, seed: int) -> list[dict]:
    trained = evaluator.load_trained(workdir)
    data = trainer.Data(trained.config)
    protocol = data.info.protocol
    enc = evaluator.encode_splits(trained, data, protocol, with_features=True)
    base = evaluator.load_trained(workdir, untrained=True, data=data)
    benc = evaluator.encode_splits(base, data, protocol, with_features=True)
    q, g = enc["query"], enc["gallery"]
    rng = np.random.default_rng(seed)
    rows = []

    def add(name, code_bits, **inputs):
        m = _metrics(protocol, enc, **inputs)
        rows.append({"codes": name, "bits": code_bits, "R1": round(100 * m["R1"], 2), "mAP": round(100 * m["mAP"], 2)})
        print(json.dumps(rows[-1]), flush=True)

    add("random codes", bits, q_codes=search.pack_codes(rng.integers(0, 2, (len(q["pid"]), bits))),
        g_codes=search.pack_codes(rng.integers(0, 2, (len(g["pid"]), bits))))
    pq = _images(data.source(trained.config.dataset.query_split), data.image_size).reshape(len(q["pid"]), -1)
    pg = _images(data.source(trained.config.dataset.gallery_split), data.image_size).reshape(len(g["pid"]), -1)
    lq, lg = _lsh(pq, pg, bits, seed)
    add("LSH of raw pixels", bits, q_codes=lq, g_codes=lg)
    fq, fg = benc["query"]["feature"], benc["gallery"]["feature"]
    lq, lg = _lsh(fq, fg, bits, seed)
    add("LSH of untrained backbone features", bits, q_codes=lq, g_codes=lg)
    add("untrained backbone, float features (Euclidean)", 32 * fq.shape[1], distances=_euclidean(fq, fg))
    add("untrained network's hash codes", bits, q_codes=search.pack_codes(np.asarray(benc["query"]["code/id"])),
        g_codes=search.pack_codes(np.asarray(benc["gallery"]["code/id"])))
    add("trained network's hash codes", bits, q_codes=search.pack_codes(np.asarray(q["code/id"])),
        g_codes=search.pack_codes(np.asarray(g["code/id"])))
    add("trained backbone, float features (Euclidean)", 32 * q["feature"].shape[1],
        distances=_euclidean(q["feature"], g["feature"]))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="accepted for bench/run_all.py; skips without a workdir")
    args = p.parse_args(argv)
    if not (pathlib.Path(args.workdir) / "checkpoints").exists():
        msg = f"no trained workdir at {args.workdir!r}: run `make demo` first (or pass --workdir)"
        if args.quick:
            print(f"skipped: {msg}")
            return 0
        raise SystemExit(msg)
    trained = evaluator.load_trained(args.workdir)
    rows = run(args.workdir, int(trained.config.model.bits), args.seed)
    print("\n| codes | bits | R1 | mAP |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['codes']} | {r['bits']} | {r['R1']:.1f} | {r['mAP']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
