"""Speed and memory of the jitted train step, laid out as train.py runs it (backbone + BNNeck + hash layer and
the method's losses; baseline by default: CE + triplet).

    python bench/train_step.py            # ResNet-50 at 256x128, batch 64, and the small CNN (demo backbone)
    python bench/train_step.py --quick    # smoke run: small CNN, small batch, 2 timed steps
    python bench/train_step.py --dtype bfloat16
    python bench/train_step.py --methods baseline,dvhn --only small_cnn

The step is the one training runs: uint8 images (with their random-erasing boxes) normalised and erased inside
the step, and a method's per-image state (DVHN's codes B, U and W for every training image) kept on the host
with the batch's rows fed in the batch, outside the replicated train state (:func:`_common.train_step_as_trained`).

Reports, per model: compile time, the median step time over the timed steps, images/s, and memory:
XLA's compiled-program footprint (arguments + outputs + temporaries, from ``memory_analysis()``), the
device's peak bytes in use where the backend reports it (GPU/TPU), and the process's peak RSS on CPU.
The CPU seconds the process used per step are printed too: on a shared, loaded machine they show what an
unloaded run would cost when wall times do not.
The last line gives the ratio of the models' images/s (measured in the same process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jhash import config as config_lib  # noqa: E402
from jhash import methods, parallel  # noqa: E402
from jhash.data import augment  # noqa: E402
from jhash.data.info import DatasetInfo  # noqa: E402

from _common import train_step_as_trained  # noqa: E402

NUM_TRAIN_IMAGES = 12936  # Market-1501's training split: the rows of a method's per-image state


def _config(method, backbone, bits, dtype, backbone_kwargs):
    c = config_lib.base_config()
    c.model.backbone = backbone
    c.model.backbone_kwargs.update(backbone_kwargs)
    c.model.bits = bits
    c.method = methods.get(method).method_config()
    c.optimizer.schedule = "constant"
    c.train.steps = 1000
    c.train.compute_dtype = dtype
    return c


def _batch(image_size, batch: int, num_classes: int) -> tuple[dict, tuple]:
    """A P x K batch as the loader sends it to the step (uint8 images, erase boxes of the default augmentation,
    labels, distinct training-image indices) and the images' ``(mean, std)``."""
    rng = np.random.default_rng(0)
    aug = augment.AugmentConfig()
    params = augment.sample_params(rng, batch, tuple(image_size), aug)
    return {"image": rng.integers(0, 256, (batch, *image_size, 3), dtype=np.uint8),
            "erase": augment.erase_boxes(params),
            "label": np.repeat(rng.choice(num_classes, batch // 4, replace=False), 4).astype(np.int32),
            "index": rng.choice(NUM_TRAIN_IMAGES, batch, replace=False).astype(np.int32)}, (aug.mean, aug.std)


def bench(name, backbone, image_size, batch, steps, dtype, method="baseline", num_classes=751, bits=256,
          **backbone_kwargs):
    c = _config(method, backbone, bits, dtype, backbone_kwargs)
    c.train.batch_p, c.train.batch_k = batch // 4, 4
    info = DatasetInfo(name="bench", num_classes=num_classes, image_size=image_size,
                       num_train_images=NUM_TRAIN_IMAGES)
    mesh = parallel.make_mesh()
    batch_np, normalization = _batch(image_size, batch, num_classes)
    step_fn, state, gbatch, _, _ = train_step_as_trained(c, info, image_size, batch_np, normalization, mesh)

    t = time.perf_counter()
    compiled = step_fn.lower(state, gbatch).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    footprint = None
    if mem is not None:
        footprint = sum(getattr(mem, f, 0) or 0 for f in
                        ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")) - (
                            getattr(mem, "alias_size_in_bytes", 0) or 0)
    state, metrics = compiled(state, gbatch)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    cpu0 = os.times()
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, gbatch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    cpu1 = os.times()
    cpu_per_step = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / steps
    med = statistics.median(times)
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    peak_dev = (stats or {}).get("peak_bytes_in_use")
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    return {
        "model": name, "method": method, "image_size": list(image_size), "batch": batch, "dtype": dtype, "params_M": n_params / 1e6,
        "compile_s": compile_s, "step_s_median": med, "cpu_s_per_step": cpu_per_step, "images_per_s": batch / med, "timed_steps": steps,
        "xla_footprint_MiB": None if footprint is None else footprint / 2**20,
        "device_peak_MiB": None if peak_dev is None else peak_dev / 2**20,
        "process_peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": float(metrics["loss"]), "device": f"{dev.platform}:{dev.device_kind} x{jax.device_count()}",
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small CNN only, batch 16, 2 steps")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (median reported)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--only", default=None, help="run only the models whose name contains this text (e.g. small_cnn)")
    p.add_argument("--methods", default="baseline", help="comma-separated methods to time (default: baseline)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        runs = [("small_cnn 64x32 b16", "small_cnn", (64, 32), 16, 2, dict(widths=(16, 32)))]
    else:
        runs = [("resnet50 256x128 b64", "resnet50", (256, 128), 64, args.steps, dict(last_stride=1)),
                ("small_cnn 128x64 b64", "small_cnn", (128, 64), 64, args.steps, {}),
                ("small_cnn 64x32 b64 (demo)", "small_cnn", (64, 32), 64, args.steps, {})]
    if args.only:
        runs = [r for r in runs if args.only in r[0]]
    names = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(names) - set(methods.available()))
    if unknown:
        p.error(f"--methods: unknown {unknown}; valid: {', '.join(methods.available())}")
    results = []
    for method in names:
        for name, backbone, size, batch, steps, kw in runs:
            r = bench(name, backbone, size, batch, steps, args.dtype, method=method, **kw)
            results.append(r)
            fp = "-" if r["xla_footprint_MiB"] is None else f"{r['xla_footprint_MiB']:.0f}"
            dp = "-" if r["device_peak_MiB"] is None else f"{r['device_peak_MiB']:.0f}"
            print(f"{method:9s} {name:28s} {r['device']}  params {r['params_M']:.2f}M  compile {r['compile_s']:.1f}s  "
                  f"step {r['step_s_median'] * 1000:.0f} ms (median of {steps}; {r['cpu_s_per_step']:.2f} CPU-s)  "
                  f"{r['images_per_s']:.1f} img/s  XLA footprint {fp} MiB  device peak {dp} MiB  "
                  f"process peak RSS {r['process_peak_rss_MiB']:.0f} MiB", flush=True)
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(f"ratio images/s {r['method']} {r['model']} / {base['method']} {base['model']}: {r['images_per_s'] / base['images_per_s']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
