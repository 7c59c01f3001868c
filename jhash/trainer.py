"""The training loop: ``train(config, workdir)``.

- One jitted step (:func:`make_train_step`): forward with ``mutable=['batch_stats']`` and a per-step
  ``dropout`` rng (``fold_in(rng, step)``), the method's loss, optax update, optional bf16 compute (methods pass
  ``config.train.compute_dtype`` as their modules' ``dtype``; parameters stay float32). Data parallel over a
  Mesh axis ``'data'`` (see :mod:`jhash.parallel`).
- Checkpoints (:mod:`jhash.checkpoints`) every ``train.ckpt_every`` steps and at the end, keeping the last
  ``train.keep``; a run started again with the same ``--workdir`` resumes from the latest one, with the data
  iterator, rng and the method's ``aux`` state, so it computes what an uninterrupted run computes.
- SIGINT / SIGTERM: the current step finishes, a checkpoint is saved, :class:`Interrupted` is raised.
- A NaN / inf loss raises :class:`NonFiniteLossError` naming the step; no checkpoint is written after it.
- Methods with ``init_aux`` / ``update_aux`` get an encoding pass over the training set every
  ``method.aux_every`` epochs; methods with ``fit_search`` fit it on ``dataset.val_split`` at the end.
- Progress bar (tqdm: loss, images/s); one JSON line per ``train.log_every`` steps in ``<workdir>/metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jhash import checkpoints as ckpt_lib
from jhash import config as config_lib
from jhash import encode as encode_lib
from jhash import methods as methods_lib
from jhash import optim, parallel, reporting

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, signum: int, workdir):
        self.step, self.signum = step, signum
        name = signal.Signals(signum).name if signum else "stop request"
        super().__init__(
            f"{name} received: saved a checkpoint at step {step} in {str(workdir)!r}; run the same command to resume"
        )


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    aux: Any = None

    def variables(self) -> dict:
        v = {"params": self.params}
        if self.batch_stats:
            v["batch_stats"] = self.batch_stats
        return v

    def model_item(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats, "aux": self.aux}

    def train_item(self) -> dict:
        return {"opt_state": self.opt_state, "rng": self.rng, "step": self.step}


# --------------------------------------------------------------------------------------------------
# Data access (a thin layer over jhash.data, replaceable by a stand-in in tests)


class Data:
    """The splits of ``config.dataset`` and the loaders the engine uses."""

    def __init__(self, config):
        from jhash import data as data_lib

        self._load = data_lib.load
        self.config = config
        self._sources = {}
        self.train_source, self.info = self._open(config.dataset.train_split)

    def _open(self, split):
        if split not in self._sources:
            d = self.config.dataset
            self._sources[split] = self._load(
                d.name, split, data_dir=config_lib.data_dir(self.config), manual_dir=d.manual_dir, config=_ds_config(d.config)
            )
        return self._sources[split]

    def source(self, split):
        return self._open(split)[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.input.image_size or self.info.image_size)

    def train_loader(self, seed: int):
        """This process's share of the global P×K batch, an iterator with get_state()/set_state()."""
        from jhash.data import pipeline

        t = self.config.train
        augment = self.config.input.augment
        return pipeline.train_loader(
            self.train_source,
            self.info,
            batch_p=t.batch_p,
            batch_k=t.batch_k,
            image_size=self.image_size,
            seed=seed,
            augment_config=None if augment is None else augment.to_dict(),
            num_workers=self.config.input.num_workers,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def eval_batches(self, split: str, batch_size: int):
        """Batches (numpy dicts) of this process's records of ``split`` in stored order; ``index`` is the
        position in the split. The training split's batches also carry ``label``.

        With several processes, process i reads records ``i, i + n, ...``; every process yields the same number
        of batches (collectives need that): a process with one record fewer repeats a record as padding, with
        ``index = pid = camid = -1`` (the pipeline's padding rows)."""
        from jhash.data import pipeline

        source = self.source(split)
        labels = pipeline.label_map(self.train_source) if split == self.config.dataset.train_split else None
        start, step = (jax.process_index(), jax.process_count())
        view = source if step == 1 else _Strided(source, start, step)
        loader = pipeline.eval_loader(view, batch_size=batch_size, image_size=self.image_size,
                                      num_workers=self.config.input.num_workers, labels=labels)
        for batch in loader:
            if step != 1:
                batch["index"] = start + step * batch["index"]
                pad = batch["index"] >= len(source)
                for key in ("index", "pid", "camid", "label"):
                    if key in batch:
                        batch[key] = np.where(pad, -1, batch[key]).astype(batch[key].dtype)
            yield batch


def _ds_config(c):
    return c.to_dict() if hasattr(c, "to_dict") else c


class _Strided:
    """Records ``start, start + step, ...`` of a source: one process's share of an evaluation split, padded to
    ``ceil(n / step)`` records (the same for every process) by repeating the source's last record."""

    def __init__(self, source, start, step):
        self.source, self.start, self.step = source, start, step

    def __len__(self):
        return -(-len(self.source) // self.step)

    def __getitem__(self, i):
        return self.source[min(self.start + i * self.step, len(self.source) - 1)]


# --------------------------------------------------------------------------------------------------
# State and step


def init_variables(model, config, image_size, rng, *, pretrained: bool = True, method=None) -> dict:
    """Initial variables of ``model``; with ``config.model.pretrained`` the torchvision weights are loaded by the
    method's ``load_pretrained(variables, path, config)`` hook when it has one (e.g. SSR's two-branch PCB),
    else into the backbone by :func:`jhash.models.load_pretrained`."""
    h, w = image_size
    images = jnp.zeros((2, h, w, 3), jnp.float32)
    p_rng, d_rng = jax.random.split(rng)
    variables = jax.jit(lambda x: model.init({"params": p_rng, "dropout": d_rng}, x, train=False))(images)
    variables = flax.core.unfreeze(variables)
    if pretrained and config.model.pretrained:
        if method is not None and hasattr(method, "load_pretrained"):
            return method.load_pretrained(variables, config.model.pretrained, config)
        from jhash import models

        variables = models.load_pretrained(variables, config.model.pretrained)
    return variables


def create_state(config, info, method, variables, tx, rng) -> TrainState:
    params = variables["params"]
    aux = None
    if hasattr(method, "init_aux"):
        aux = method.init_aux(config, info, int(info.num_train_images))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=rng,
        aux=aux,
    )


def make_train_step(model, method, config, tx, schedule):
    """``(state, batch) -> (state, metrics)``, pure; jit it with :func:`jit_train_step`."""
    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            outputs, mutated = model.apply(
                variables, batch["image"], train=True, mutable=["batch_stats"], rngs={"dropout": rng}
            )
            outputs = optim.cast_floating(outputs, jnp.float32)
            loss, logs = method.loss(outputs, batch, config, state.aux)
            return loss, (logs, mutated)

        (loss, (logs, mutated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        batch_stats = mutated.get("batch_stats", state.batch_stats)
        batch_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), batch_stats, state.batch_stats)
        metrics = {"loss": loss, **logs, "lr": schedule(state.step)}
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
        return new_state, metrics

    return step_fn


def jit_train_step(step_fn, mesh):
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    donate = (0,) if jax.default_backend() != "cpu" else ()
    return jax.jit(step_fn, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=donate)


# --------------------------------------------------------------------------------------------------
# Signals


class _StopFlag:
    """SIGINT / SIGTERM set a flag the loop checks after each step (a second SIGINT raises at once)."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing the current step and saving a checkpoint", signal.Signals(signum).name)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------------------------------
# The loop


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    workdir: pathlib.Path
    resumed_from: int | None
    search: dict | None


def _check_finite(step: int, metrics: dict, workdir, last_saved: int | None):
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        kept = f"the last good checkpoint is step {last_saved}" if last_saved is not None else "no checkpoint was saved"
        raise NonFiniteLossError(
            f"loss is {loss} at step {step} (non-finite: {', '.join(bad)}); training stopped, {kept} in "
            f"{str(workdir)!r}. Lower config.optimizer.lr, enable config.optimizer.grad_clip_norm or check the data."
        )
    return loss


def _meta(config, info, step, total, method_name):
    return {
        "step": int(step),
        "total_steps": int(total),
        "method": method_name,
        "dataset": config.dataset.name,
        "dataset_config": _ds_config(config.dataset.config),
        "bits": int(config.model.bits),
        "num_classes": int(info.num_classes),
        "info": dataclasses.asdict(info),
        "image_size": list(config.input.image_size or info.image_size),
        "config": json.loads(config.to_json_best_effort()),
    }


def train(config, workdir, *, data=None, method=None, mesh=None, stop_at: int | None = None, progress: bool = True,
          async_checkpoints: bool = True) -> TrainResult:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint); return the final state.

    ``data`` / ``method`` replace the dataset access and the method module (tests); ``mesh`` the default mesh
    over all devices (:func:`jhash.parallel.make_mesh`). ``stop_at`` behaves like
    a SIGTERM received after that step (save, then :class:`Interrupted`).
    """
    parallel.initialize()
    workdir = pathlib.Path(workdir).expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    data = Data(config) if data is None else data
    method = methods_lib.get(config.method.name) if method is None else method
    info = data.info
    total = config_lib.total_steps(config, info)
    per_epoch = config_lib.steps_per_epoch(config, info)
    global_batch = config.train.batch_p * config.train.batch_k
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch_divisible(global_batch, mesh)

    model = method.build_model(config, info)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    variables = init_variables(model, config, data.image_size, init_rng, method=method)
    tx, schedule = optim.make_optimizer(config, variables["params"], info)
    state = create_state(config, info, method, variables, tx, state_rng)
    state = parallel.replicate(state, mesh)

    if jax.process_index() == 0:
        config_path = workdir / "config.json"
        if not config_path.exists():
            ckpt_lib.write_json_atomic(config_path, json.loads(config.to_json_best_effort()))

    loader = data.train_loader(config.seed)
    resumed_from = None
    search = None
    with ckpt_lib.Checkpoints(workdir, keep=config.train.keep, async_save=async_checkpoints) as ckpts, _StopFlag() as stop:
        latest = ckpts.latest_step()
        if latest is not None:
            restored = ckpts.restore(latest, model_like=state.model_item(), train_like=state.train_item(),
                                     sharding=parallel.replicated(mesh), data=True, search=True)
            m, t = restored["model"], restored["train"]
            state = state.replace(params=m["params"], batch_stats=m.get("batch_stats", {}), aux=m.get("aux"),
                                  opt_state=t["opt_state"], rng=t["rng"], step=t["step"])
            if restored["data"] is not None:
                loader.set_state(restored["data"])
            search = restored["search"]
            resumed_from = latest
            log.info("resumed from step %d in %s", latest, workdir)

        step = int(jax.device_get(state.step))
        last_saved = latest

        def save(s, final_search=None):
            nonlocal last_saved
            ckpts.save(s, model=state.model_item(), train=state.train_item(), data_state=loader.get_state(),
                       meta=_meta(config, info, s, total, config.method.name), search=final_search)
            last_saved = s

        if step < total:
            train_step = jit_train_step(make_train_step(model, method, config, tx, schedule), mesh)
            jsonl = reporting.JsonlWriter(workdir / "metrics.jsonl") if jax.process_index() == 0 else None
            bar = reporting.progress(total=total, initial=step, enabled=progress and jax.process_index() == 0)
            pending = None  # (step, metrics) of the previous step, checked while the next one runs
            window_t, window_n = time.perf_counter(), 0
            try:
                while step < total:
                    batch = next(loader)
                    state, metrics = train_step(state, parallel.shard_batch(batch, mesh))
                    step += 1
                    window_n += 1
                    if pending is not None:
                        _check_finite(*pending, workdir, last_saved)
                    pending = (step, metrics)
                    at_epoch_end = step % per_epoch == 0
                    aux_due = (hasattr(method, "update_aux") and config.method.aux_every > 0 and at_epoch_end
                               and (step // per_epoch) % config.method.aux_every == 0)
                    log_due = step % config.train.log_every == 0 or step == total
                    save_due = step < total and (step % config.train.ckpt_every == 0 or stop.signum or step == stop_at)
                    if log_due or save_due or aux_due:
                        loss = _check_finite(*pending, workdir, last_saved)
                        pending = None
                    if aux_due:
                        state = state.replace(aux=run_update_aux(method, model, state, data, config, mesh))
                    if log_due:
                        now = time.perf_counter()
                        ips = window_n * global_batch / max(now - window_t, 1e-9)
                        row = {"step": step, "epoch": step / per_epoch, **{k: float(v) for k, v in metrics.items()},
                               "images_per_sec": ips, "time": time.time()}
                        if jsonl:
                            jsonl.write(row)
                        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.1f}")
                        window_t, window_n = now, 0
                    bar.update(step - bar.n)
                    if save_due:
                        save(step)
                    if step < total and (stop.signum or step == stop_at):
                        ckpts.wait()
                        raise Interrupted(step, stop.signum, workdir)
                if pending is not None:
                    _check_finite(*pending, workdir, last_saved)
            finally:
                if hasattr(loader, "close"):
                    loader.close()
                bar.close()
                if jsonl:
                    jsonl.close()

        if latest != total:  # this run trained up to the end: fit the search, save the final checkpoint
            if hasattr(method, "fit_search") and config.dataset.val_split:
                search = run_fit_search(method, model, state, data, config, mesh)
            save(total, final_search=search)
        ckpts.wait()
    return TrainResult(state=state, step=step, workdir=workdir, resumed_from=resumed_from, search=search)


def run_update_aux(method, model, state, data, config, mesh):
    """Encode the whole training set (train=False) and hand the outputs to ``method.update_aux``."""
    outputs = encode_lib.run_split(
        encode_lib.outputs_fn(model, config, mesh), state.variables(), data.eval_batches(config.dataset.train_split, config.eval.batch_size),
        mesh, config.eval.batch_size,
    )
    return method.update_aux(state.aux, outputs, config)


def run_fit_search(method, model, state, data, config, mesh):
    """Encode ``dataset.val_split`` and call ``method.fit_search(codes_by_name, pids, config)``."""
    out = encode_lib.run_split(
        encode_lib.codes_fn(model, method, config, mesh), state.variables(),
        data.eval_batches(config.dataset.val_split, config.eval.batch_size), mesh, config.eval.batch_size,
    )
    codes = {k[len("code/"):]: v for k, v in out.items() if k.startswith("code/")}
    return method.fit_search(codes, out["pid"], config)
