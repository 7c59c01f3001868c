"""The training loop: ``train(config, workdir)``.

- One jitted step (:func:`make_train_step`): forward with ``mutable=['batch_stats']`` and a per-step
  ``dropout`` rng (``fold_in(rng, step)``), the method's loss, optax update, optional bf16 compute (methods pass
  ``config.train.compute_dtype`` as their modules' ``dtype``; parameters stay float32). Data parallel over a
  Mesh axis ``'data'`` (see :mod:`jhash.parallel`).
- Checkpoints (:mod:`jhash.checkpoints`) every ``train.ckpt_every`` steps and at the end, keeping the last
  ``train.keep`` (>= 1) and the final one; a run started again with the same ``--workdir`` resumes from the
  newest intact one (each is verified against its manifest; damaged newer ones are moved to
  ``<workdir>/checkpoints.damaged``), with the data iterator, rng and the method's ``aux`` state, so it
  computes what an uninterrupted run computes. A workdir already past the requested steps is left untouched
  (:class:`jhash.checkpoints.AlreadyTrainedError`).
- One trainer per workdir: :class:`jhash.checkpoints.WorkdirLock` is held for the whole run.
- SIGINT / SIGTERM at any moment: the current phase or step finishes, a checkpoint is saved when a step was
  trained, :class:`Interrupted` is raised (a second SIGINT raises ``KeyboardInterrupt`` at once). With several
  processes a signal to any one of them stops all of them after the same step, each saving its part of the same
  checkpoint (:class:`jhash.parallel.StopVote`: an all-reduce per step, read one step later), and the processes
  resume from a step they agree on.
- A NaN / inf loss raises :class:`NonFiniteLossError` naming the step; parameters, batch statistics,
  optimizer state and ``aux`` are checked on device before every save (:class:`NonFiniteStateError`), so
  every checkpoint is finite: "the last verified checkpoint" in these errors is one a run can resume from.
- Training batches must hold labels in ``[0, num_classes)``: junk / distractor identities are no class
  (:class:`jhash.data.common.DatasetError` otherwise); the encoding pass for ``update_aux`` drops them.
- ``train.eval_every`` > 0: validation on ``dataset.val_split`` (R1 / mAP / mINP in ``metrics.jsonl``, see
  :mod:`jhash.validation`); ``train.select='best_val_map'`` keeps the best step's checkpoint (never pruned,
  recorded in ``selection.json``); ``train.patience`` stops early.
- Methods with ``init_aux`` / ``update_aux`` get an encoding pass over the training set every
  ``method.aux_every`` epochs; methods with ``fit_search`` fit it on ``dataset.val_split`` at the end.
- Progress bar (tqdm: loss, images/s); one JSON line per ``train.log_every`` steps in ``<workdir>/metrics.jsonl``,
  the same scalars as TensorBoard events in ``<workdir>/tensorboard/`` and ``<workdir>/curves.png`` at the end
  (:mod:`jhash.curves`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import inspect
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
from jhash import curves, optim, parallel, reporting, validation
from jhash.data import device as data_device
from jhash import workdir as workdir_lib
from jhash.engine import Data, init_variables  # noqa: F401  (also re-exported: trainer.Data, ...)

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite."""


class NonFiniteStateError(NonFiniteLossError):
    """Parameters, batch statistics, optimizer state or ``aux`` hold NaN / inf when a checkpoint is due."""


class Interrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, signum: int, workdir, saved: bool = True):
        self.step, self.signum, self.saved = step, signum, saved
        name = signal.Signals(signum).name if signum else "stop request"
        if saved:
            what = f"saved a checkpoint at step {step} in {str(workdir)!r}; run the same command to resume"
        elif step:
            what = f"stopped before training on; the checkpoint of step {step} in {str(workdir)!r} is unchanged"
        else:
            what = f"stopped before the first step; no checkpoint was written in {str(workdir)!r}"
        super().__init__(f"{name} received: {what}")


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

    def model_item(self, host_aux: dict | None = None) -> dict:
        """What a checkpoint's ``model`` item holds: parameters, batch statistics and the whole ``aux`` (the
        state's part joined with ``host_aux``, the part kept in host memory)."""
        return {"params": self.params, "batch_stats": self.batch_stats, "aux": join_aux(self.aux, host_aux)}

    def train_item(self) -> dict:
        return {"opt_state": self.opt_state, "rng": self.rng, "step": self.step}


def split_aux(method, aux) -> tuple[Any, dict | None]:
    """``(state part, host part)`` of a method's ``aux``: the keys named in ``method.HOST_AUX`` (per-image state
    such as DVHN's B, U, W) become numpy arrays kept in host memory, outside the replicated, jitted state;
    the rest stays in the state. ``(aux, None)`` for methods without ``HOST_AUX``."""
    keys = tuple(getattr(method, "HOST_AUX", ()))
    if aux is None or not keys:
        return aux, None
    host = {k: parallel.local_copy(aux[k]) for k in keys}
    return {k: v for k, v in aux.items() if k not in keys}, host


def join_aux(state_aux, host_aux: dict | None):
    """The whole ``aux`` from its two parts (:func:`split_aux`)."""
    return state_aux if host_aux is None else {**(state_aux or {}), **host_aux}


# Data access and initial variables live in jhash.engine (shared with evaluation and encoding)
# --------------------------------------------------------------------------------------------------
# State and step


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


def make_train_step(model, method, config, tx, schedule, normalization=None):
    """``(state, batch) -> (state, metrics)``, pure; jit it with :func:`jit_train_step`. uint8 batch images are
    normalised and erased in the step (:func:`jhash.data.device.train_images` with ``normalization``, the
    loader's ``(mean, std)``); float images are used as they are."""
    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        images = data_device.train_images(batch, *(normalization or ()))

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            outputs, mutated = model.apply(
                variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": rng}
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
    """SIGINT / SIGTERM set a flag the loop checks after each step and the set-up checks between its phases
    (a second SIGINT raises ``KeyboardInterrupt`` at once)."""

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

    def check(self, step: int, workdir) -> None:
        """Raise :class:`Interrupted` (nothing saved) if a signal came during the set-up. With several processes
        a process never stops alone (the others would wait for it in their next collective): the signal is
        passed on to the training loop's :class:`jhash.parallel.StopVote`, which stops all of them after the
        same step."""
        if self.signum and jax.process_count() == 1:
            raise Interrupted(step, self.signum, workdir, saved=False)

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
    host_aux: dict | None = None

    @property
    def aux(self):
        """The method's whole ``aux`` state (``state.aux`` holds only the part that is not kept on the host)."""
        return join_aux(self.state.aux, self.host_aux)


_ADVICE = "Lower config.optimizer.lr, enable config.optimizer.grad_clip_norm or check the data."


def _kept(workdir, last_saved: int | None) -> str:
    if last_saved is None:
        return f"no checkpoint was saved in {str(workdir)!r}"
    return f"the last verified checkpoint is step {last_saved} in {str(workdir)!r}"


def _check_finite(step: int, metrics: dict, workdir, last_saved: int | None):
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        raise NonFiniteLossError(
            f"loss is {loss} at step {step} (non-finite: {', '.join(bad)}); training stopped, "
            f"{_kept(workdir, last_saved)}. {_ADVICE}"
        )
    return loss


def _check_state_finite(state: TrainState, host_aux, step: int, workdir, last_saved: int | None) -> None:
    """Raise :class:`NonFiniteStateError` when a part of ``state`` (or the host part of ``aux``) holds NaN / inf."""
    bad = ckpt_lib.nonfinite_parts({"params": state.params, "batch_stats": state.batch_stats,
                                    "opt_state": state.opt_state, "aux": join_aux(state.aux, host_aux)})
    if bad:
        raise NonFiniteStateError(
            f"{', '.join(bad)} hold NaN or infinite values at step {step} (the logged loss may still look finite); "
            f"nothing was saved for it, training stopped, {_kept(workdir, last_saved)}. {_ADVICE}"
        )


def _check_labels(batch: dict, num_classes: int, step: int) -> None:
    """Training labels are class ids in ``[0, num_classes)``: junk (-1) or distractor ids are no class."""
    labels = batch.get("label")
    if labels is None or np.size(labels) == 0:
        return
    labels = np.asarray(labels)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        from jhash.data.common import DatasetError

        raise DatasetError(
            f"the training batch of step {step} holds labels in [{lo}, {hi}], outside [0, {num_classes}) "
            f"(num_classes): junk or distractor identities must not reach the training batches"
        )


def _truncate_metrics(path: pathlib.Path, step: int) -> None:
    """Drop the rows of ``metrics.jsonl`` past ``step`` (written by a run that stopped after that checkpoint)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [l for l in lines if l.strip() and _row_step(l) is not None and _row_step(l) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text("".join(l if l.endswith("\n") else l + "\n" for l in kept), encoding="utf-8")
        os.replace(tmp, path)


def _row_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a crash


_meta = workdir_lib.run_meta  # (config, info, step, total, method_name) -> the checkpoint's meta item


def train(config, workdir, *, data=None, method=None, mesh=None, stop_at: int | None = None, progress: bool = True,
          async_checkpoints: bool = True, report=None) -> TrainResult:
    """Train ``config`` in ``workdir`` (resuming from its newest intact checkpoint); return the final state.

    ``data`` / ``method`` replace the dataset access and the method module (tests); ``mesh`` the default mesh
    over all devices (:func:`jhash.parallel.make_mesh`). ``stop_at`` behaves like
    a SIGTERM received after that step (save, then :class:`Interrupted`). The config, the workdir's stored config
    and the dataset are validated before any work (:class:`jhash.config.ConfigError`); ``report(text)`` receives
    the start-of-training summary.
    """
    parallel.initialize()
    workdir = pathlib.Path(workdir).expanduser()
    config_lib.validate(config)  # every count, size, rate and period in range (train.keep >= 1 among them)
    workdir.mkdir(parents=True, exist_ok=True)
    lock = ckpt_lib.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock, _StopFlag() as stop:
        return _train_locked(config, workdir, stop, data=data, method=method, mesh=mesh, stop_at=stop_at,
                             progress=progress, async_checkpoints=async_checkpoints, report=report)


def _write_selection(workdir, config, selection: validation.Selection) -> None:
    if config.train.select == "best_val_map" and jax.process_index() == 0:
        ckpt_lib.write_json_atomic(pathlib.Path(workdir) / validation.SELECTION_FILE,
                                   {"select": config.train.select, **selection.to_dict()})


def _restore_newest_intact(ckpts, state: TrainState, host_aux, mesh):
    """``(step, restored)`` of the newest checkpoint that verifies and restores, ``(None, None)`` when there is
    none. Damaged newer steps are moved to ``<workdir>/checkpoints.damaged`` once an intact one is found;
    when every step is damaged nothing is moved and :class:`jhash.checkpoints.CheckpointDamagedError` names them."""
    damaged = []
    first = jax.process_index() == 0
    # every process tries the steps process 0 lists, and they must end at the same one
    for step in parallel.from_process_0(lambda: sorted(ckpts.all_steps(), reverse=True), "checkpoint steps"):
        try:
            restored = ckpts.restore(step, model_like=state.model_item(host_aux), train_like=state.train_item(),
                                     sharding=parallel.replicated(mesh), data=True, search=True, meta=True,
                                     name_intact=False)
        except ckpt_lib.CheckpointDamagedError as e:
            damaged.append(e)
            continue
        parallel.check_same(step, "the checkpoint step to resume from")
        for e in damaged:
            if first:  # one process moves the files; the others see the move after the barrier
                log.warning("%s; moved it to %s", e, ckpts.quarantine(e.step))
        if damaged:
            parallel.barrier()
            ckpts.refresh()
            log.warning("resuming from step %d, the newest intact checkpoint in %s", step, ckpts.workdir)
        if not ckpts.verify(step) and first:
            ckpts.seal(step)  # it restored and is finite: record its files from now on
        return step, restored
    parallel.check_same(None, "the checkpoint step to resume from")
    if damaged:
        raise ckpt_lib.CheckpointDamagedError(
            f"no intact checkpoint in {str(ckpts.workdir)!r}: " + "; ".join(f"step {e.step}: {e.reason}" for e in damaged)
            + f". Move {str(ckpts.directory)!r} away to train from scratch", step=damaged[0].step,
            reason=damaged[0].reason)
    return None, None


def _train_locked(config, workdir, stop, *, data, method, mesh, stop_at, progress, async_checkpoints,
                  report) -> TrainResult:
    changes = workdir_lib.check_stored_config(workdir, config)
    data = Data(config) if data is None else data
    method = methods_lib.get(config.method.name) if method is None else method
    info = data.info
    notes = config_lib.validate_for_dataset(config, info, method, getattr(data, "has_split", None))
    total = config_lib.total_steps(config, info)
    done = ckpt_lib.saved_steps(workdir)
    if done and done[-1] > total:
        raise ckpt_lib.AlreadyTrainedError(
            f"workdir {str(workdir)!r} is already trained to step {done[-1]}, past the requested {total} steps; "
            f"nothing was changed (evaluate a saved step with evaluate.py --step, or train in a new --workdir)")
    stop.check(0, workdir)
    per_epoch = config_lib.steps_per_epoch(config, info)
    global_batch = config.train.batch_p * config.train.batch_k
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch_divisible(global_batch, mesh)

    model = method.build_model(config, info)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    variables = init_variables(model, config, data.image_size, init_rng, method=method)
    tx, schedule = optim.make_optimizer(config, variables["params"], info)
    state = create_state(config, info, method, variables, tx, state_rng)
    state_aux, host_aux = split_aux(method, state.aux)
    state = parallel.replicate(state.replace(aux=state_aux), mesh)
    stop.check(0, workdir)

    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        workdir_lib.write_config(workdir, config, changes, step=workdir_lib.latest_step(workdir))
    if report is not None and jax.process_index() == 0:
        report(reporting.start_summary(config, info, data.image_size, variables["params"], total, per_epoch, workdir,
                                       workdir_lib.latest_step(workdir), changes, notes))

    loader = data.train_loader(config.seed)
    # uint8 images from the loader (and its workers), normalised on the device inside the step
    normalization = loader.send_uint8() if hasattr(loader, "send_uint8") else None
    search = None
    selection = validation.Selection()
    select_best = config.train.select == "best_val_map"
    validate_every = config_lib.validation_period(config, info)
    warned_unscorable = False
    val_codes_fn = None  # the validation encoder, jitted once per run
    with ckpt_lib.Checkpoints(workdir, keep=config.train.keep, async_save=async_checkpoints) as ckpts:
        latest, restored = _restore_newest_intact(ckpts, state, host_aux, mesh)
        if latest is not None:
            m, t = restored["model"], restored["train"]
            state_aux, host_aux = split_aux(method, m.get("aux"))
            state = state.replace(params=m["params"], batch_stats=m.get("batch_stats", {}), aux=state_aux,
                                  opt_state=t["opt_state"], rng=t["rng"], step=t["step"])
            if restored["data"] is not None:
                loader.set_state(restored["data"])
            search = restored["search"]
            selection = validation.Selection.from_dict((restored["meta"] or {}).get("selection"))
            log.info("resumed from step %d in %s", latest, workdir)
            if jax.process_index() == 0:
                _truncate_metrics(workdir / "metrics.jsonl", latest)
                _write_selection(workdir, config, selection)
        resumed_from = latest
        finished = latest == total or selection.stopped_early
        if select_best and selection.best_step is not None:
            ckpts.protected = {selection.best_step}

        step = int(jax.device_get(state.step))
        stop.check(step, workdir)
        last_saved = latest

        def save(s, final_search=None, final=False):
            nonlocal last_saved
            _check_state_finite(state, host_aux, s, workdir, last_saved)
            meta = {**_meta(config, info, s, total, config.method.name), "selection": selection.to_dict()}
            ckpts.save(s, model=state.model_item(host_aux), train=state.train_item(), data_state=loader.get_state(),
                       meta=meta, search=final_search, final=final)
            last_saved = s
            _write_selection(workdir, config, selection)

        if not finished and step < total:
            train_step = jit_train_step(make_train_step(model, method, config, tx, schedule, normalization), mesh)
            jsonl = reporting.JsonlWriter(workdir / "metrics.jsonl") if jax.process_index() == 0 else None
            events = (curves.EventWriter(workdir / "tensorboard", purge_step=step + 1 if step else None)
                      if jax.process_index() == 0 else None)
            bar = reporting.progress(total=total, initial=step, enabled=progress and jax.process_index() == 0)
            pending = None  # (step, metrics) of the previous step, checked while the next one runs
            vote = parallel.StopVote(mesh)
            window_t, window_n = time.perf_counter(), 0
            try:
                while step < total:
                    batch = next(loader)
                    _check_labels(batch, info.num_classes, step + 1)
                    if host_aux is not None:  # this process's rows of the host-kept state (DVHN: B[index])
                        batch.update(method.host_inputs(host_aux, batch))
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
                    requested = vote.agreed(stop.signum)  # read once: a signal may land at any line
                    stopping = bool(requested) or step == stop_at
                    save_due = step < total and (step % config.train.ckpt_every == 0 or stopping)
                    if log_due or save_due or aux_due:
                        loss = _check_finite(*pending, workdir, last_saved)
                        pending = None
                    if aux_due:
                        state_aux, host_aux = split_aux(
                            method, run_update_aux(method, model, state, data, config, mesh, host_aux))
                        state = state.replace(aux=parallel.replicate(state_aux, mesh))
                    vals = {}
                    if validate_every and (step % validate_every == 0 or step == total):
                        if not (log_due or save_due or aux_due):
                            _check_finite(*pending, workdir, last_saved)
                            pending = None
                        if val_codes_fn is None:
                            val_codes_fn = encode_lib.codes_fn(model, method, config, mesh)
                        vals = validation.validate(method, model, state, data, config, mesh, codes_fn=val_codes_fn)
                        if not vals.get("val/queries") and not warned_unscorable:
                            warned_unscorable = True
                            log.warning("validation at step %d: the %r split has no query whose identity it holds "
                                        "from another camera; val metrics are NaN (train.select=%r keeps the last "
                                        "step)", step, config.dataset.val_split, config.train.select)
                        if selection.update(step, vals["val/mAP"]) and select_best:
                            ckpts.protected = {step}
                            save_due = step < total
                        if config.train.patience and selection.since_best >= config.train.patience and step < total:
                            selection.stopped_early = True
                            save_due = False  # the final save below takes this step
                    if log_due or vals:
                        now = time.perf_counter()
                        row = {"step": step, "epoch": step / per_epoch}
                        if log_due:
                            ips = window_n * global_batch / max(now - window_t, 1e-9)
                            row.update({k: float(v) for k, v in metrics.items()}, images_per_sec=ips)
                            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.1f}")
                            window_t, window_n = now, 0
                        row.update(vals, time=time.time())
                        if jsonl:
                            jsonl.write(row)
                            events.write(row)
                    bar.update(step - bar.n)
                    if save_due:
                        save(step)
                    if selection.stopped_early:
                        log.warning("no better validation mAP in %d validations: stopping early at step %d (best: "
                                    "step %d, mAP %.4f)", config.train.patience, step, selection.best_step,
                                    selection.best_val_map)
                        break
                    if step < total and stopping:
                        ckpts.wait()
                        raise Interrupted(step, requested, workdir)
                if pending is not None:
                    _check_finite(*pending, workdir, last_saved)
            finally:
                if hasattr(loader, "close"):
                    loader.close()
                bar.close()
                if jsonl:
                    jsonl.close()
                    events.close()

        if not finished:  # this run trained up to the end (or stopped early): fit the search, save the final step
            if hasattr(method, "fit_search") and config.dataset.val_split:
                search = run_fit_search(method, model, state, data, config, mesh)
            save(step, final_search=search, final=True)
            if jax.process_index() == 0 and (workdir / "metrics.jsonl").is_file():
                curves.write_workdir_curves(workdir)
        ckpts.wait()
    return TrainResult(state=state, step=step, workdir=workdir, resumed_from=resumed_from, search=search,
                       host_aux=host_aux)


def _labelled_rows(outputs: dict) -> dict:
    """The rows of an encoding pass whose ``label`` is a class (>= 0); all rows when there is no ``label``."""
    labels = outputs.get("label")
    if labels is None:
        return outputs
    keep = np.asarray(labels) >= 0
    if keep.all():
        return outputs
    n = len(keep)
    return {k: (np.asarray(v)[keep] if np.ndim(v) and np.shape(v)[0] == n else v) for k, v in outputs.items()}


def run_update_aux(method, model, state, data, config, mesh, host_aux=None):
    """Encode the whole training set (train=False) and hand the outputs to ``method.update_aux``, with the whole
    ``aux`` (``state.aux`` joined with ``host_aux``); returns the new whole ``aux``."""
    outputs = encode_lib.run_split(
        encode_lib.outputs_fn(model, config, mesh), state.variables(), data.eval_batches(config.dataset.train_split, config.eval.batch_size),
        mesh, config.eval.batch_size,
    )
    return method.update_aux(join_aux(state.aux, host_aux), _labelled_rows(outputs), config)


def run_fit_search(method, model, state, data, config, mesh):
    """Encode ``dataset.val_split`` and call ``method.fit_search(codes_by_name, pids, config)``, with
    ``camids=`` (the split's camera ids) for a ``fit_search`` that takes that keyword."""
    out = encode_lib.run_split(
        encode_lib.codes_fn(model, method, config, mesh), state.variables(),
        data.eval_batches(config.dataset.val_split, config.eval.batch_size), mesh, config.eval.batch_size,
    )
    codes = {k[len("code/"):]: v for k, v in out.items() if k.startswith("code/")}
    takes_camids = "camids" in inspect.signature(method.fit_search).parameters
    extra = {"camids": out["camid"]} if takes_camids and "camid" in out else {}
    return method.fit_search(codes, out["pid"], config, **extra)
