"""Helpers shared by the search benchmarks (files starting with '_' are not run by bench/run_all.py)."""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass


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



# ------------------------------------------------------- machine share --
@dataclass(frozen=True)
class CpuSnapshot:
    """/proc/stat's all-CPU tick counters and this process's own CPU seconds, read at one moment."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int
    own_seconds: float
    own_niced: bool

    @property
    def total(self) -> int:
        return (self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq
                + self.steal)


@dataclass(frozen=True)
class OtherWork:
    """How the machine's CPU time between two snapshots was shared, in % of all CPUs' time.

    ``normal``: other processes at normal priority (busy time minus this process's own CPU time); ``niced``:
    processes run with a positive nice value (they yield the CPU to a normal-priority benchmark, but run on
    whatever core it leaves idle); ``steal``: time the hypervisor gave to other virtual machines. The load
    average cannot tell these apart from the benchmark itself: its own running threads count in it.
    """

    normal: float
    niced: float
    steal: float


def process_cpu_seconds(*, children: bool = False) -> float:
    """User + system CPU time of this process, all threads (plus its finished, waited-for child processes')."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    total = r.ru_utime + r.ru_stime
    if children:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += c.ru_utime + c.ru_stime
    return total


def cpu_snapshot(*, children: bool = False) -> CpuSnapshot | None:
    """Read the all-CPU line of /proc/stat and this process's CPU time (None where /proc/stat is missing);
    ``children``: the process's own work includes its waited-for child processes'."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    t = [int(x) for x in fields[1:9]]
    return CpuSnapshot(*t, own_seconds=process_cpu_seconds(children=children), own_niced=os.getpriority(os.PRIO_PROCESS, 0) > 0)


def other_work(before: CpuSnapshot | None, after: CpuSnapshot | None) -> OtherWork | None:
    """The other work that shared the CPUs between two snapshots (None if unknown)."""
    if before is None or after is None or after.total <= before.total:
        return None
    total = after.total - before.total
    own = (after.own_seconds - before.own_seconds) * os.sysconf("SC_CLK_TCK")
    normal = (after.user - before.user) + (after.system - before.system) + (after.irq - before.irq) + (
        after.softirq - before.softirq)
    niced = after.nice - before.nice
    if after.own_niced:
        niced -= own
    else:
        normal -= own
    pct = 100.0 / total
    return OtherWork(max(0.0, normal * pct), max(0.0, niced * pct), (after.steal - before.steal) * pct)


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
