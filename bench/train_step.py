"""Speed and memory of the jitted train step (baseline method: backbone + BNNeck + hash layer, CE + triplet).

    python bench/train_step.py            # ResNet-50 at 256x128, batch 64, and the small CNN (demo backbone)
    python bench/train_step.py --quick    # smoke run: small CNN, small batch, 2 timed steps
    python bench/train_step.py --dtype bfloat16

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

from jhash import config as config_lib
from jhash import methods, optim, parallel, trainer
from jhash.data.info import DatasetInfo


def _config(backbone, bits, dtype, backbone_kwargs):
    c = config_lib.base_config()
    c.model.backbone = backbone
    c.model.backbone_kwargs.update(backbone_kwargs)
    c.model.bits = bits
    c.method = methods.get("baseline").method_config()
    c.optimizer.schedule = "constant"
    c.train.steps = 1000
    c.train.compute_dtype = dtype
    return c


def bench(name, backbone, image_size, batch, steps, dtype, num_classes=751, bits=256, **backbone_kwargs):
    c = _config(backbone, bits, dtype, backbone_kwargs)
    c.train.batch_p, c.train.batch_k = batch // 4, 4
    info = DatasetInfo(name="bench", num_classes=num_classes, image_size=image_size, num_train_images=12936)
    method = methods.get("baseline")
    model = method.build_model(c, info)
    mesh = parallel.make_mesh()
    variables = trainer.init_variables(model, c, image_size, jax.random.PRNGKey(0))
    tx, schedule = optim.make_optimizer(c, variables["params"], info)
    state = parallel.replicate(trainer.create_state(c, info, method, variables, tx, jax.random.PRNGKey(1)), mesh)
    step_fn = trainer.jit_train_step(trainer.make_train_step(model, method, c, tx, schedule), mesh)
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.choice(num_classes, batch // 4, replace=False), 4).astype(np.int32)
    batch_np = {"image": rng.normal(size=(batch, *image_size, 3)).astype(np.float32), "label": labels}
    gbatch = parallel.shard_batch(batch_np, mesh)

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
        "model": name, "image_size": list(image_size), "batch": batch, "dtype": dtype, "params_M": n_params / 1e6,
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
    results = []
    for name, backbone, size, batch, steps, kw in runs:
        r = bench(name, backbone, size, batch, steps, args.dtype, **kw)
        results.append(r)
        fp = "-" if r["xla_footprint_MiB"] is None else f"{r['xla_footprint_MiB']:.0f}"
        dp = "-" if r["device_peak_MiB"] is None else f"{r['device_peak_MiB']:.0f}"
        print(f"{name:28s} {r['device']}  params {r['params_M']:.2f}M  compile {r['compile_s']:.1f}s  "
              f"step {r['step_s_median'] * 1000:.0f} ms (median of {steps}; {r['cpu_s_per_step']:.2f} CPU-s)  "
              f"{r['images_per_s']:.1f} img/s  "
              f"XLA footprint {fp} MiB  device peak {dp} MiB  process peak RSS {r['process_peak_rss_MiB']:.0f} MiB",
              flush=True)
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(f"ratio images/s {r['model']} / {base['model']}: {r['images_per_s'] / base['images_per_s']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
