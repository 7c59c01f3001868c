"""One benchmark for whatever devices are present (CPU, GPU, TPU): a table of jhash's device programs.

    python bench/accelerator.py            # ResNet-50 256x128, batch 64, every method, fp32 and bf16
    python bench/accelerator.py --quick    # smoke run (CI): small CNN 64x32, batch 8, small gallery
    python bench/accelerator.py --popcount_peak 1.2e14   # also the search's share of a known popcount peak

Rows (all jitted, over the mesh of every device, timed after compilation with ``block_until_ready``):

- ``search``: exact Hamming top-k on the XLA path (``backend="xla"``, the GPU/TPU path) — code comparisons
  per second (queries x gallery / s) at 256 and 2048 bits; with ``--popcount_peak`` (64-bit popcounts per
  second of the device, from its data sheet) the fraction of that peak reached.
- ``train <method> <dtype>``: images per second of one train step of each method (its synthetic_reid config
  with the backbone replaced) in float32 and bfloat16 compute.
- ``encode <method>``: images per second of the test-time encoder (``train=False``, codes).
- ``ctf``: coarse-to-fine search (``backend="jax"``) against the exhaustive XLA top-k on the longest code: the
  speed-up of the cascade on this device (DTO-free thresholds: half of each level's bits).

Each row reports the median of ``--repeats`` timed runs. Prints one JSON line per row and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jhash import config as config_lib  # noqa: E402
from jhash import encode as encode_lib  # noqa: E402
from jhash import methods as methods_lib  # noqa: E402
from jhash import parallel, search  # noqa: E402
from jhash.data import device as data_device  # noqa: E402
from jhash.data import pipeline, synthetic  # noqa: E402

from _common import train_step_as_trained  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _median_seconds(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` (which blocks until its results are ready), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def search_rows(nq: int, ng: int, repeats: int, peak: float | None) -> list[dict]:
    """Exhaustive XLA top-100 at 256 and 2048 bits: comparisons/s and the share of the popcount peak."""
    rng = np.random.default_rng(0)
    rows = []
    for bits in (256, 2048):
        q = jax.device_put(rng.integers(0, 256, (nq, bits // 8), dtype=np.uint8))
        g = jax.device_put(rng.integers(0, 256, (ng, bits // 8), dtype=np.uint8))
        k = min(100, ng)
        s = _median_seconds(lambda: jax.block_until_ready(search.hamming_topk(q, g, k, backend="xla")), repeats)
        rate = nq * ng / s
        row = {"row": f"search xla {bits}b top-{k}", "value": rate, "unit": "comparisons/s",
               "detail": f"{nq} q x {ng} g in {s * 1e3:.1f} ms"}
        if peak:
            row["detail"] += f"; {100 * rate * bits / 64 / peak:.1f}% of the popcount peak"
        rows.append(row)
    return rows


def _method_config(name: str, backbone: str, image_size, batch: int, dtype: str, kwargs: dict):
    c = config_lib.load_file(os.path.join(ROOT, "configs", "synthetic_reid", f"{name}.py"))
    c.model.backbone = backbone
    c.model.backbone_kwargs = type(c.model.backbone_kwargs)(kwargs)
    c.model.pretrained = ""
    c.input.image_size = tuple(image_size)
    c.train.batch_p, c.train.batch_k = batch // 4, 4
    c.train.compute_dtype = dtype
    return c


def method_rows(name: str, backbone: str, image_size, batch: int, repeats: int, kwargs: dict, batch_np: dict,
                info, normalization) -> list[dict]:
    """Train step (fp32, bf16) and encoder images/s of one method, laid out as train.py does: uint8 images
    normalised in the step, per-image method state (DVHN's B, U, W) on the host with the batch's rows fed."""
    rows = []
    mesh = parallel.make_mesh()
    for dtype in ("float32", "bfloat16"):
        c = _method_config(name, backbone, image_size, batch, dtype, kwargs)
        step, state, gbatch, model, method = train_step_as_trained(c, info, image_size, batch_np, normalization, mesh)
        s = _median_seconds(lambda: jax.block_until_ready(step(state, gbatch)[1]), repeats)
        rows.append({"row": f"train {name} {dtype}", "value": batch / s, "unit": "images/s",
                     "detail": f"{backbone} {image_size[0]}x{image_size[1]} batch {batch}, {s * 1e3:.0f} ms/step"})
        if dtype == "float32":
            enc = encode_lib.codes_fn(model, method, c, mesh)
            v = parallel.replicate(state.variables(), mesh)
            images = jax.jit(lambda b: data_device.train_images(b, *normalization))(gbatch)
            s = _median_seconds(lambda: jax.block_until_ready(enc(v, images)), repeats)
            rows.append({"row": f"encode {name}", "value": batch / s, "unit": "images/s",
                         "detail": f"{backbone} {image_size[0]}x{image_size[1]} batch {batch}"})
    return rows


def ctf_row(nq: int, ng: int, repeats: int) -> dict:
    """CtF (jax backend, levels 64/128/256/512 bits of one code) against exhaustive XLA top-k at 512 bits."""
    rng = np.random.default_rng(1)
    full_q = rng.integers(0, 256, (nq, 64), dtype=np.uint8)
    # gallery: noisy copies of a few prototypes, so short prefixes already separate most of it
    protos = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    full_g = protos[rng.integers(0, 64, ng)] ^ (rng.random((ng, 64)) < 0.05).astype(np.uint8)
    levels = (8, 16, 32, 64)  # bytes: 64, 128, 256, 512 bits
    lq, lg = [full_q[:, :b] for b in levels], [full_g[:, :b] for b in levels]
    thresholds = [8 * b // 2 for b in levels[:-1]]
    k = min(100, ng)
    index = search.CoarseToFineIndex.build(lg)
    t_ctf = _median_seconds(lambda: search.coarse_to_fine_topk(lq, index, thresholds, k, backend="jax"), repeats)
    qd, gd = jax.device_put(full_q), jax.device_put(full_g)
    t_ex = _median_seconds(lambda: jax.block_until_ready(search.hamming_topk(qd, gd, k, backend="xla")), repeats)
    return {"row": "ctf jax vs exhaustive xla (512b)", "value": t_ex / t_ctf, "unit": "x speed-up",
            "detail": f"{nq} q x {ng} g: ctf {t_ctf * 1e3:.1f} ms, exhaustive {t_ex * 1e3:.1f} ms"}


def _train_batch(image_size, batch: int):
    """One real P x K batch (synthetic_reid at the benchmark's image size, uint8 images as train.py feeds them),
    reused for every timed step, the dataset info and the images' ``(mean, std)``."""
    source = synthetic.SyntheticSource("train", "default")
    info = synthetic.dataset_info("default")
    it = pipeline.train_loader(source, info, batch_p=batch // 4, batch_k=4, image_size=image_size, seed=0,
                               prefetch=0)
    try:
        normalization = it.send_uint8()
        return next(it), info, normalization
    finally:
        it.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small CNN, small batch and gallery")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    p.add_argument("--methods", nargs="*", default=None, help="methods to time (default: all)")
    p.add_argument("--popcount_peak", type=float, default=None,
                   help="the device's 64-bit popcounts per second, to report the search's share of it")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        backbone, size, batch, kwargs, nq, ng = "small_cnn", (64, 32), 8, {"widths": (8, 16)}, 8, 4096
    else:
        backbone, size, batch, kwargs, nq, ng = "resnet50", (256, 128), 64, {"last_stride": 1}, 1000, 1_000_000
    names = args.methods or methods_lib.available()
    dev = jax.devices()[0]
    print(f"devices: {jax.device_count()} x {dev.platform}:{dev.device_kind}; jax {jax.__version__}; "
          f"{platform.processor() or platform.machine()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []

    def add(new):
        for r in new:
            print(json.dumps(r), flush=True)
            rows.append(r)

    add(search_rows(nq, ng, args.repeats, args.popcount_peak))
    batch_np, info, normalization = _train_batch(size, batch)
    for name in names:
        try:
            add(method_rows(name, backbone, size, batch, args.repeats, kwargs, batch_np, info, normalization))
        except Exception as e:  # noqa: BLE001 - one method's failure is reported in its row, the rest still run
            add([{"row": f"train {name}", "value": float("nan"), "unit": "error",
                  "detail": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}])
    add([ctf_row(nq, min(ng, 200_000), args.repeats)])
    width = max(len(r["row"]) for r in rows)
    print(f"\n{'row':{width}s}  {'value':>12s}  unit           detail")
    for r in rows:
        print(f"{r['row']:{width}s}  {r['value']:12.4g}  {r['unit']:13s}  {r['detail']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 1 if any(r["unit"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
