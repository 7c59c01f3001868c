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
    python bench/quality.py --seeds 0 1 2 --methods dvhn --set method.quant_weight_scale=length
    python bench/quality.py --steps 600 --bits 64 --seeds 0 1 2 --methods drsch --set method.decorrelation_weight=10
    python bench/quality.py --table runs/q_a runs/q_b   # one table from runs made separately

Every (seed, method, bits) run trains its own workdir under ``--out``; rows report the mean ± std over the
``--seeds`` (ddof 0). ``--set`` overrides the config of every run.

Prints a markdown table and writes it (with the raw numbers as JSON) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jhash import config as config_lib  # noqa: E402
from jhash import evaluator, search, trainer  # noqa: E402
from jhash.methods import drsch  # noqa: E402


def _config(method: str, bits: int, args, seed: int) -> "config_lib.ml_collections.ConfigDict":
    overrides = {
        "dataset.config": args.dataset_config,
        "model.bits": str(bits),
        "train.epochs": "0",
        "train.steps": str(args.steps),
        "train.log_every": str(max(1, args.steps // 10)),
        "train.ckpt_every": str(args.steps + 1),
        "seed": str(seed),
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
    for item in args.set:  # --set key=value, e.g. method.quant_weight_scale=length
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. method.quant_weight_scale=length")
        if key.startswith("method.") and key[len("method."):] not in _method_options(method):
            continue  # an option of another method
        overrides[key] = value
    path = ROOT / "configs" / "synthetic_reid" / f"{method}.py"
    return config_lib.load(path, [f"{k}={v}" for k, v in overrides.items()])


def _applied_sets(method: str, args) -> list[str]:
    """The ``--set`` items that apply to ``method`` (they name the run's workdir and label its rows)."""
    return [x for x in args.set if not x.startswith("method.") or x.partition("=")[0][len("method."):] in _method_options(method)]


def _method_options(method: str) -> set[str]:
    from jhash import methods

    return set(getattr(methods.get(method), "DEFAULTS", {})) | {"aux_every"}


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


def _row(name, bits, m, seconds=None, seed=None, diagnostics=None):
    row = {"method": name, "bits": bits, "R1": float(m["R1"]), "mAP": float(m["mAP"]),
           "train_s": None if seconds is None else round(seconds, 1), "seed": seed}
    if diagnostics:
        row["diagnostics"] = diagnostics
    return row


#: the hash layer's real-valued output that each method binarises (DRSCH: the bit-weighted one it ranks with)
RELAXED = {"drsch": "weighted"}


def _outputs(trained, data, split: str) -> dict[str, np.ndarray]:
    """The trained network's ``train=False`` outputs (hash-layer pre-activations, activations ...) over ``split``."""
    from jhash import encode as encode_lib
    from jhash import parallel

    mesh = parallel.make_mesh()
    fn = encode_lib.outputs_fn(trained.model, trained.config, mesh)
    bs = trained.config.eval.batch_size
    return encode_lib.run_split(fn, trained.variables, data.eval_batches(split, bs), mesh, bs)


def term_gradients(trained, data, weights: dict[str, float], batches: int = 4, seed: int = 0) -> dict[str, float]:
    """How hard each weighted loss term pulls on the trained network: the L2 norm of the gradient of
    ``weight × term`` (a term the method logs, e.g. DVHN's ``sim`` / ``quant`` / ``ce``) with respect to all
    parameters, averaged over ``batches`` P×K training batches (``train=True``, the checkpoint's state)."""
    import jax
    import jax.numpy as jnp

    model, method, c = trained.model, trained.method, trained.config
    params = trained.variables["params"]
    stats = trained.variables.get("batch_stats", {})

    def term(params, batch, key):
        variables = {"params": params, **({"batch_stats": stats} if stats else {})}
        out, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.PRNGKey(0)})
        out = jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, out)
        return method.loss(out, batch, c, trained.aux)[1][key]

    norm = lambda g: float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(g))))  # noqa: E731
    grads = {k: jax.jit(jax.grad(term), static_argnums=2) for k in weights}
    loader = data.train_loader(seed)
    sums = dict.fromkeys(weights, 0.0)
    for _ in range(batches):
        batch = {k: jnp.asarray(v) for k, v in next(loader).items()}
        for k, w in weights.items():
            sums[k] += w * norm(grads[k](params, batch, k)) / batches
    return sums


def code_diagnostics(codes, pre) -> dict[str, float]:
    """Where a method's binarisation loses information, measured on a set of images (the gallery).

    ``codes``: ``[N, L]`` the method's codes (any two values; the larger one counts as 1); ``pre``: ``[N, L]`` the
    real value each bit thresholds at 0 (the hash layer's pre-activation). Returns

    - ``bit_entropy``: mean over bits of the entropy (base 2) of the bit's frequency p_k: 1 when every bit splits
      the images in half, 0 when every bit is constant;
    - ``constant_bits``: fraction of bits with p_k < 1 % or > 99 % (bits that carry next to nothing);
    - ``mean_abs_corr``: mean absolute correlation between two different bits (redundancy; 0 for independent bits);
    - ``near_threshold``: fraction of pre-activations within 0.1 of their bit's standard deviation from 0 (bits
      a small change of the image flips);
    - ``pre_mean_over_std``: mean over bits of |mean(z_k)| / std(z_k) (how far the threshold 0 sits from the
      centre of the bit's values: 0 for a centred bit, large for a bit that is almost always on or off).
    """
    b = np.asarray(codes)
    b = (b == b.max()).astype(np.float64) if b.size else b.astype(np.float64)
    z = np.asarray(pre, np.float64)
    if b.shape != z.shape or b.ndim != 2 or b.shape[0] < 2:
        raise ValueError(f"code_diagnostics: codes {b.shape} and pre {z.shape} must be the same [N >= 2, L]")
    p = b.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    sd = b.std(0)
    live = sd > 0
    corr = np.corrcoef(b[:, live].T) if live.sum() > 1 else np.zeros((1, 1))
    off = ~np.eye(corr.shape[0], dtype=bool)
    zs = z.std(0)
    zs = np.where(zs > 0, zs, 1.0)
    return {
        "bit_entropy": float(h.mean()),
        "constant_bits": float(np.mean((p < 0.01) | (p > 0.99))),
        "mean_abs_corr": float(np.abs(corr[off]).mean()) if off.any() else 0.0,
        "near_threshold": float(np.mean(np.abs(z) < 0.1 * zs[None, :])),
        "pre_mean_over_std": float(np.mean(np.abs(z.mean(0)) / zs)),
    }


def run(args) -> list[dict]:
    rows = []
    out = pathlib.Path(args.out)
    data = None
    untrained_done = False
    done = 0
    for seed, method, bits in ((s, m, b) for s in args.seeds for m in args.methods for b in args.bits):
        c = _config(method, bits, args, seed)
        data = data or trainer.Data(c)
        protocol = data.info.protocol
        sets = _applied_sets(method, args)
        tag = "".join("_" + re.sub(r"[^A-Za-z0-9.]+", "-", x) for x in sets)
        workdir = out / (f"{method}_{bits}{tag}" if seed == 0 else f"{method}_{bits}{tag}_seed{seed}")
        t0 = time.perf_counter()
        result = trainer.train(c, workdir, data=data, progress=False, async_checkpoints=False)
        # a finished workdir is reused (nothing trained now): its training time is not known
        seconds = None if result.resumed_from == args.steps else time.perf_counter() - t0
        trained = evaluator.load_trained(workdir, config=c)
        enc = evaluator.encode_splits(trained, data, protocol, with_features=True)
        q, g = enc["query"], enc["gallery"]
        packed = {k: search.pack_codes(np.asarray(q[f"code/{k}"])) for k in ("id",)}
        gpacked = {k: search.pack_codes(np.asarray(g[f"code/{k}"])) for k in ("id",)}
        # the hash layer's real values (before binarisation) and where binarising them loses information
        qo, go = _outputs(trained, data, q["split"]), _outputs(trained, data, g["split"])
        relaxed = RELAXED.get(method, "hash")
        pre = go.get("hash_pre", go.get("hash"))  # DVHN's hash layer has no activation: its output is z
        diag = None if pre is None else code_diagnostics(g["code/id"], pre)
        main_row = _row(method, bits, _metrics(protocol, enc, q_codes=packed["id"], g_codes=gpacked["id"]), seconds,
                        diagnostics=diag)
        rows.append(main_row)
        if relaxed in go:
            rows.append(_row(f"{method} hash layer, float", bits,
                             _metrics(protocol, enc, distances=_euclidean(qo[relaxed], go[relaxed]))))
        if pre is not None:  # diagnostic: the same hash layer, each bit thresholded at its gallery median
            mid = np.median(pre, axis=0)
            qpre = qo.get("hash_pre", qo.get("hash"))
            rows.append(_row(f"{method} bits split at their gallery median", bits, _metrics(
                protocol, enc, q_codes=search.pack_codes((qpre > mid).astype(np.uint8)),
                g_codes=search.pack_codes((pre > mid).astype(np.uint8)))))
        rows.append(_row(f"{method} float features", bits,
                         _metrics(protocol, enc, distances=_euclidean(q["feature"], g["feature"]))))
        if args.gradients and method == "dvhn":
            from jhash.methods import dvhn

            w = {"sim": float(c.method.get("sim_weight", 1.0)), "quant": dvhn.quant_weight(c, bits)}
            if float(c.method.get("ce_weight", 0.0)):
                w["ce"] = float(c.method.ce_weight)
            main_row["gradients"] = term_gradients(trained, data, w, seed=seed)
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
                lq, lg = _lsh(fq, fg, b, seed)
                rows.append(_row("LSH (untrained backbone)", b, _metrics(protocol, benc, q_codes=lq, g_codes=lg)))
            untrained_done = True
        for r in rows[done:]:
            r["seed"] = seed
            if sets and r["method"].startswith(method):
                r["method"] += f" [{', '.join(sets)}]"
            print(json.dumps(r), flush=True)
        done = len(rows)
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.json").write_text(json.dumps(rows, indent=1))  # after every run: nothing is lost
    return rows


def aggregate(rows) -> list[dict]:
    """One row per (method, bits) in first-seen order: R1 / mAP mean and std (ddof 0) over the seeds run."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["bits"]), []).append(r)
    out = []
    for (method, bits), rs in groups.items():
        r1, ap = np.array([r["R1"] for r in rs]), np.array([r["mAP"] for r in rs])
        times = [r["train_s"] for r in rs if r["train_s"] is not None]
        out.append({"method": method, "bits": bits, "seeds": len(rs), "R1": float(r1.mean()), "R1_std": float(r1.std()),
                    "mAP": float(ap.mean()), "mAP_std": float(ap.std()),
                    "train_s": float(np.mean(times)) if times else None})
    return out


def table(rows) -> str:
    """Markdown: per (method, bits) the mean ± std over seeds (just the value for one seed)."""
    lines = ["| method | bits | seeds | R1 | mAP | train s |", "|---|---:|---:|---:|---:|---:|"]
    for r in aggregate(rows):
        pm = lambda k: f"{100 * r[k]:.1f}" + (f" ± {100 * r[k + '_std']:.1f}" if r["seeds"] > 1 else "")  # noqa: E731
        t = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        lines.append(f"| {r['method']} | {r['bits']} | {r['seeds']} | {pm('R1')} | {pm('mAP')} | {t} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["dvhn", "dhmtl", "drsch"],
                   help="configs/synthetic_reid/<method>.py to train ('baseline' adds the CE + triplet reference)")
    p.add_argument("--bits", nargs="+", type=int, default=[64, 256, 1024])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds to train (the table: mean ± std)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (method.* ones only where the method has that option)")
    p.add_argument("--dataset_config", default="default")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--out", default="runs/bench_quality")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny dataset, 16 bits, 4 steps")
    p.add_argument("--gradients", action="store_true",
                   help="DVHN: also record each weighted loss term's gradient norm on the trained network (JSON)")
    p.add_argument("--table", nargs="+", metavar="DIR", default=None,
                   help="train nothing: print the table of the quality.json files under these --out folders")
    args = p.parse_args(argv)
    if args.table:
        rows = [r for d in args.table for r in json.loads((pathlib.Path(d) / "quality.json").read_text())]
        print(table(rows))
        return rows
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
