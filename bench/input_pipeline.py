"""Input pipeline throughput: decoded + augmented training images per second, for 256x128 JPEGs.

Renders a set of 256x128 pedestrians with the synthetic renderer, stores them as a TFDS ArrayRecord
dataset (``synthetic_reid`` with a custom config), then times :func:`jhash.data.pipeline.train_loader`
(P x K = 16 x 4 batches, default augmentation: decode, flip, pad + crop, normalise, random erasing)
with 0, 1 and 2 worker processes, in both image formats: ``float32`` (normalised and erased on the host)
and ``uint8`` (what train.py uses: uint8 images and erase boxes, normalised on the device inside the
training step, :mod:`jhash.data.device`; a quarter of the bytes between the processes), and full passes
of the evaluation loader (decode + normalise).
Worker start-up is excluded (the clock starts after the first batch); each setting reports the
median of ``--repeats`` runs and its ratio to the first worker count (0 by default).

    .venv/bin/python bench/input_pipeline.py            # full run (~1-2 min)
    .venv/bin/python bench/input_pipeline.py --quick    # smoke run (seconds)
    .venv/bin/python bench/input_pipeline.py --stages --workers 0 --no-eval   # + where a batch's CPU time goes

``--stages`` also splits the making of uint8 training batches, in this process, into its stages (CPU µs per
image over ``--batches`` x ``--repeats`` batches): reading the records, JPEG decoding, sampling the augmentation,
flip + pad-crop into the batch, and the labels and other keys.

Prints one JSON line per measurement and a table; ``--json FILE`` also writes them to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jhash import data  # noqa: E402
from jhash.data import augment, pipeline  # noqa: E402

SIZE = (256, 128)


def build_source(data_dir: str, num_ids: int):
    """A TFDS-prepared set of 256x128 JPEGs (train split: ~7.3 images per identity)."""
    config = {"base": "default", "image_size": SIZE, "num_train_ids": num_ids, "num_val_ids": 1,
              "num_test_ids": 2, "num_distractors": 0, "num_junk": 0}
    t = time.perf_counter()
    data.prepare("synthetic_reid", data_dir=data_dir, config=config)
    built = time.perf_counter() - t
    src, info = data.load("synthetic_reid", "train", data_dir=data_dir, config=config)
    return src, info, built


def _rates(it, batches: int, repeats: int) -> tuple[list[float], list[float], int]:
    """Images per wall-clock second and per CPU second of this process (all its threads), over
    ``repeats`` runs of ``batches`` batches each (after the first batch)."""
    rates, cpu_rates, n_total = [], [], 0
    for _ in range(repeats):
        n, t, c = 0, time.perf_counter(), time.process_time()
        for _ in range(batches):
            n += len(next(it)["image"])
        rates.append(n / (time.perf_counter() - t))
        cpu_rates.append(n / max(time.process_time() - c, 1e-9))
        n_total += n
    return rates, cpu_rates, n_total


def time_train(src, info, workers: int, batches: int, repeats: int, prefetch: int, fmt: str = "uint8") -> dict:
    it = pipeline.train_loader(src, info, batch_p=16, batch_k=4, image_size=SIZE, seed=0,
                               num_workers=workers, prefetch=prefetch)
    if fmt == "uint8":
        assert it.send_uint8() is not None
    try:
        t0 = time.perf_counter()
        first = next(it)  # includes starting the workers
        startup = time.perf_counter() - t0
        rates, cpu_rates, n = _rates(it, batches, repeats)
    finally:
        it.close()
    assert first["image"].shape == (64, *SIZE, 3) and first["image"].dtype == fmt
    out = {"loader": "train", "format": fmt, "workers": workers, "images": n, "images_per_s": round(statistics.median(rates), 1),
           "runs": [round(r, 1) for r in rates], "startup_s": round(startup, 2)}
    if workers == 0:  # all the work is in this process: a load-independent per-core figure
        out["images_per_cpu_s"] = round(statistics.median(cpu_rates), 1)
    return out


def time_stages(src, info, batches: int) -> dict:
    """CPU µs per image of each stage of making uint8 P x K batches in this process (what each worker does)."""
    it = pipeline.train_loader(src, info, batch_p=16, batch_k=4, image_size=SIZE, seed=0, prefetch=0)
    it.send_uint8()
    make = it._make  # noqa: SLF001 - the batch maker's parts, timed one by one
    cpu = {"read": 0.0, "decode": 0.0, "augment_params": 0.0, "flip_crop_batch": 0.0, "labels_keys": 0.0}
    n = 0

    def timed(stage, fn):
        t = time.process_time()
        out = fn()
        cpu[stage] += time.process_time() - t
        return out

    for step in range(batches):
        indices = make.sampler.batch(step)
        records = timed("read", lambda: pipeline._read(src, indices))  # noqa: SLF001
        images = timed("decode", lambda: [augment.decode_pil(r["image"], SIZE) for r in records])
        params = timed("augment_params", lambda: augment.sample_params(
            np.random.default_rng([0, step]), len(indices), SIZE, make.aug))
        timed("flip_crop_batch", lambda: augment.train_batch_uint8(images, params, make.aug))
        timed("labels_keys", lambda: (pipeline._meta(records, indices, make.extras),  # noqa: SLF001
                                      [make.labels[int(r["pid"])] for r in records]))
        n += len(indices)
    out = {"loader": "train stages", "format": "uint8", "workers": 0, "images": n}
    out.update({f"{k}_us_per_image": round(v / n * 1e6, 1) for k, v in cpu.items()})
    out["total_us_per_image"] = round(sum(cpu.values()) / n * 1e6, 1)
    return out


def time_eval(src, workers: int, repeats: int, prefetch: int) -> dict:
    """Full passes of the evaluation loader over the split (each timed after its first batch)."""
    loader = pipeline.eval_loader(src, batch_size=64, image_size=SIZE, num_workers=workers, prefetch=prefetch)
    rates, startups, n_total = [], [], 0
    for _ in range(repeats):
        it = iter(loader)
        t0 = time.perf_counter()
        next(it)
        startups.append(time.perf_counter() - t0)
        n, t = 0, time.perf_counter()
        for b in it:
            n += len(b["image"])
        rates.append(n / (time.perf_counter() - t))
        n_total += n
    return {"loader": "eval", "format": "float32", "workers": workers, "images": n_total,
            "images_per_s": round(statistics.median(rates), 1),
            "runs": [round(r, 1) for r in rates], "startup_s": round(statistics.median(startups), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few images and batches")
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per run (default 15; quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 3; quick 1)")
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--formats", default="float32,uint8", help="training image formats to time")
    ap.add_argument("--no-eval", action="store_true", help="time the training loader only")
    ap.add_argument("--stages", action="store_true", help="also the CPU time per image of each stage of a batch")
    ap.add_argument("--data-dir", default=None, help="where to keep the generated JPEG dataset (default: temp)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    batches = args.batches or (2 if args.quick else 15)
    repeats = args.repeats or (1 if args.quick else 3)
    num_ids = 20 if args.quick else 300

    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = data_dir = tempfile.mkdtemp(prefix="jhash-bench-")
    try:
        src, info, built = build_source(data_dir, num_ids)
        print(f"# {len(src)} JPEGs of {SIZE[0]}x{SIZE[1]} (prepared in {built:.1f} s); "
              f"{os.cpu_count()} CPUs; python {platform.python_version()}", flush=True)
        results = []
        load_before = os.getloadavg()[0]
        for w in (int(x) for x in args.workers.split(",")):
            runs = [lambda f=f: time_train(src, info, w, batches, repeats, args.prefetch, f)
                    for f in args.formats.split(",")]
            if not args.no_eval:
                runs.append(lambda: time_eval(src, w, repeats, args.prefetch))
            for run in runs:
                r = run()
                r["load_average"] = round(os.getloadavg()[0], 2)
                print(json.dumps(r), flush=True)
                results.append(r)
        stages = None
        if args.stages:
            stages = time_stages(src, info, batches * repeats)
            stages["load_average"] = round(os.getloadavg()[0], 2)
            print(json.dumps(stages), flush=True)
        first = results[0]["workers"]
        ref = {(r["loader"], r["format"]): r["images_per_s"] for r in results if r["workers"] == first}
        print(f"\nmedian of {repeats} run(s) of {batches} batches of 64; ratio vs {first} workers of the same "
              f"loader and format; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} CPUs)")
        for r in results:
            if "images_per_cpu_s" in r:
                print(f"train {r['format']}, 0 workers: {r['images_per_cpu_s']:.0f} images per CPU second of this "
                      f"process")
        print("loader  format   workers  images/s   ratio  (startup s)  load")
        for r in results:
            ratio = r["images_per_s"] / ref[(r["loader"], r["format"])]
            print(f"{r['loader']:<7} {r['format']:<8} {r['workers']:>7}  {r['images_per_s']:>8.0f}  {ratio:>6.2f}  "
                  f"({r['startup_s']})  {r['load_average']}")
        if stages is not None:
            print(f"stages of a uint8 batch, CPU us per image ({stages['images']} images, this process): " + ", ".join(
                f"{k[:-len('_us_per_image')]} {v:.0f}" for k, v in stages.items() if k.endswith("_us_per_image")))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"image_size": SIZE, "num_images": len(src), "results": results, "stages": stages}, f,
                          indent=1)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
