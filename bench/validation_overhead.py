"""What validation during training costs: the same run with and without it, at the default period.

Trains ``configs/synthetic_reid/<method>.py`` (default: the demo's baseline) twice per round — validation off
(``train.eval_every=0 train.eval_every_epochs=0``) and at the default period (``train.eval_every_epochs=1``,
one validation per epoch on the ``val`` split) — alternating the two in one process for ``--rounds`` rounds, so
load changes on a shared machine hit both alike, after one uncounted warm-up run. Reports median wall seconds of each, the overhead
``with / without - 1`` (goal: <= 10 %), the number of validations, the median seconds one takes, and the share
of the default runs' wall time spent inside validation (the overhead measured directly, less exposed to load
changes between runs than the difference of two wall times).

    python bench/validation_overhead.py                    # 3 epochs of the demo config, 3 rounds (~10 min, 2 cores)
    python bench/validation_overhead.py --quick            # 'tiny' dataset, a few steps
    python bench/validation_overhead.py --method ctf --epochs 2
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jhash import config as config_lib  # noqa: E402
from jhash import methods, trainer, validation  # noqa: E402

OFF = ["train.eval_every=0", "train.eval_every_epochs=0"]
DEFAULT = ["train.eval_every=0", "train.eval_every_epochs=1"]


def _timed_validate(calls: list):
    """``validation.validate`` that appends its wall seconds to ``calls``."""
    inner = validation.validate

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        calls.append(time.perf_counter() - t)
        return out

    return inner, timed


def _train_once(method: str, overrides: list[str], workdir: pathlib.Path) -> float:
    c = config_lib.load(ROOT / "configs" / "synthetic_reid" / f"{method}.py", overrides)
    t = time.perf_counter()
    trainer.train(c, workdir, method=methods.get(c.method.name), progress=False, async_checkpoints=False)
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="baseline", help="configs/synthetic_reid/<method>.py")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny dataset, 2 epochs, 1 round (smoke run)")
    args = p.parse_args(argv)
    common = [f"train.epochs={args.epochs}", "train.steps=0"]
    if args.quick:
        common = ["dataset.config=tiny", "train.epochs=2", "train.steps=0", "train.batch_p=4", "train.batch_k=2"]
        args.rounds = 1
    load_before = os.getloadavg()[0]
    runs = {"off": [], "default": []}
    validations: list[float] = []
    counts, shares = [], []
    inner, timed = _timed_validate(validations)
    with tempfile.TemporaryDirectory() as tmp:
        warm = _train_once(args.method, common + DEFAULT, pathlib.Path(tmp) / "warm-up")  # compilation caches
        print(f"# warm-up run (not counted) {warm:.1f} s", flush=True)
        for r in range(args.rounds):
            for label, extra in (("off", OFF), ("default", DEFAULT)):
                wd = pathlib.Path(tmp) / f"{label}_{r}"
                before = len(validations)
                validation.validate = timed
                try:
                    runs[label].append(_train_once(args.method, common + extra, wd))
                finally:
                    validation.validate = inner
                if label == "default":
                    counts.append(len(validations) - before)
                    shares.append(sum(validations[before:]) / runs[label][-1])
                print(f"# round {r} {label:8s} {runs[label][-1]:7.1f} s, {len(validations) - before} validations",
                      flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["default"])
    per_val = statistics.median(validations) if validations else float("nan")
    print(f"\nvalidation overhead, configs/synthetic_reid/{args.method}.py {' '.join(common)} "
          f"(CPU, load {load_before:.2f} -> {os.getloadavg()[0]:.2f})")
    print("| validation | median wall s | validations per run | s per validation | with / without - 1 | "
          "share of run in validation |")
    print("|---|---|---|---|---|---|")
    print(f"| off | {off:.1f} | 0 | - | - | - |")
    print(f"| every epoch (default) | {on:.1f} | {counts[0] if counts else 0} | {per_val:.2f} | "
          f"{100 * (on / off - 1):+.1f} % | {100 * statistics.median(shares):.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
