"""Helpers shared by the search benchmarks (files starting with '_' are not run by bench/run_all.py)."""

from __future__ import annotations

import statistics
import time


def exhaustive_topk_fn():
    """jhash's fastest exhaustive top-k available here: the native kernel, else jhash.search.hamming_topk."""
    try:
        from jhash.search import native

        if native.is_available():
            return "native", lambda q, g, k: native.hamming_topk_numpy(q, g, k)
    except ImportError:
        pass
    import jax

    from jhash import search

    return "jhash.search.hamming_topk", lambda q, g, k: jax.block_until_ready(search.hamming_topk(q, g, k))


def interleaved_medians(runs: dict, repeats: int) -> dict:
    """Median seconds of each ``runs[label]()`` over ``repeats`` rounds, after one warm-up call each. Every
    round runs every function once, in turn, so load changes on a shared machine hit all of them alike."""
    for fn in runs.values():
        fn()  # warm-up: compilation, caches, index device copies
    times = {label: [] for label in runs}
    for _ in range(repeats):
        for label, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    return {label: statistics.median(v) for label, v in times.items()}


def train_or_load(workdir, method: str, overrides: list[str]):
    """``(trained, fresh)``: the trained model in ``workdir``, or ``configs/synthetic_reid/<method>.py`` (with
    ``overrides``) trained there first when the workdir holds no checkpoint (``fresh`` is then True)."""
    import pathlib

    from jhash import checkpoints as ckpt_lib
    from jhash import config as config_lib
    from jhash import evaluator, methods, trainer

    try:
        return evaluator.load_trained(workdir), False
    except (ckpt_lib.CheckpointNotFoundError, FileNotFoundError):
        pass
    root = pathlib.Path(__file__).resolve().parents[1]
    c = config_lib.load(root / "configs" / "synthetic_reid" / f"{method}.py", overrides)
    t = time.perf_counter()
    trainer.train(c, workdir, method=methods.get(method), progress=False, async_checkpoints=False)
    print(f"# trained {workdir} in {time.perf_counter() - t:.0f} s", flush=True)
    return evaluator.load_trained(workdir), True

