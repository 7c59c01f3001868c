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



def train_step_as_trained(config, info, image_size, batch_np: dict, normalization, mesh, *, pretrained: bool = False):
    """``(step, state, batch)`` laid out as ``train.py`` runs them: the method's per-image state named in its
    ``HOST_AUX`` (DVHN's B, U, W) kept on the host, outside the replicated train state, with the batch's rows of
    it fed in the batch (``method.host_inputs``); uint8 images normalised and erased inside the jitted step
    (``normalization``: the loader's ``(mean, std)``). ``step(state, batch)`` returns ``(state, metrics)``."""
    import jax

    from jhash import methods, optim, parallel, trainer

    method = methods.get(config.method.name)
    model = method.build_model(config, info)
    variables = trainer.init_variables(model, config, tuple(image_size), jax.random.PRNGKey(0), pretrained=pretrained)
    tx, schedule = optim.make_optimizer(config, variables["params"], info)
    state = trainer.create_state(config, info, method, variables, tx, jax.random.PRNGKey(1))
    state_aux, host_aux = trainer.split_aux(method, state.aux)
    state = parallel.replicate(state.replace(aux=state_aux), mesh)
    step = trainer.jit_train_step(trainer.make_train_step(model, method, config, tx, schedule, normalization), mesh)
    fed = dict(batch_np, **(method.host_inputs(host_aux, batch_np) if host_aux is not None else {}))
    return step, state, parallel.shard_batch(fed, mesh), model, method
