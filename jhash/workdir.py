"""One home for a training workdir, used by ``train.py``, ``evaluate.py`` and ``jhash.encode``.

A workdir holds::

    config.json          the run's config (the latest accepted one) and, under "_history", the compatible
                         changes later runs made to it (time, resumed step, {key: [old, new]})
    metrics.jsonl        one line per logged training step (jhash.trainer)
    checkpoints/<step>/  orbax checkpoints (jhash.checkpoints); their "meta" item holds the run metadata
    eval_*.json, *.png   evaluation results (jhash.evaluator)

This module reads and writes ``config.json`` (a generic round trip: free-form dict fields such as
``dataset.config``, ``model.backbone_kwargs``, ``input.augment`` and ``method.*`` come back as they went in),
compares a stored config with a new one (:func:`check_stored_config`), lists checkpoint steps and loads a trained
model (:func:`load_trained`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import shutil
from typing import Any

import ml_collections

from jhash import checkpoints as ckpt_lib
from jhash import config as config_lib
from jhash.data.info import DatasetInfo

CONFIG_FILE = "config.json"
HISTORY_KEY = "_history"

#: keys a resumed run may change (the checkpoint's arrays and the optimizer state keep their structure)
COMPATIBLE = (
    "train.steps", "train.epochs", "train.log_every", "train.ckpt_every", "train.keep", "train.compute_dtype",
    "eval.", "input.num_workers", "dataset.data_dir", "dataset.manual_dir", "model.pretrained",
    "optimizer.lr", "optimizer.b1", "optimizer.b2", "optimizer.nesterov", "optimizer.decay_all",
    "optimizer.schedule", "optimizer.warmup", "optimizer.warmup_factor", "optimizer.milestones", "optimizer.gamma",
    "optimizer.min_lr_ratio",
)
#: keys whose change is compatible only while the value stays zero or stays non-zero (they add optimizer state)
COMPATIBLE_IF_SAME_ZERONESS = ("optimizer.momentum", "optimizer.weight_decay", "optimizer.grad_clip_norm")


# --------------------------------------------------------------------------------------------------
# config.json


def config_path(workdir) -> pathlib.Path:
    return pathlib.Path(workdir).expanduser() / CONFIG_FILE


def config_to_json(config: ml_collections.ConfigDict) -> dict:
    """The JSON form of a config (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _merge(target: ml_collections.ConfigDict, stored: dict) -> None:
    """Write ``stored`` (JSON) into ``target``: dicts merge into ConfigDict fields (or replace a field of another
    type, e.g. a ``str`` placeholder holding a dict), lists become tuples, unknown keys are added."""
    for key, value in stored.items():
        if isinstance(value, dict):
            if key in target and isinstance(target[key], ml_collections.ConfigDict):
                _merge(target[key], value)
                continue
            if key in target:
                del target[key]
            target[key] = ml_collections.ConfigDict()
            _merge(target[key], value)
            continue
        value = _tuples(value)
        if key in target:
            try:
                target[key] = value
                continue
            except TypeError:  # a field of another type (e.g. a dict field stored as a name)
                del target[key]
        target[key] = value


def config_from_json(stored: dict, *, where: str = "config.json") -> ml_collections.ConfigDict:
    """The locked config a ``config.json`` describes (the schema's defaults for keys it lacks)."""
    c = config_lib.base_config()
    _merge(c, {k: v for k, v in stored.items() if not k.startswith("_")})
    try:
        config_lib.check(c)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"{where}: {e}") from None
    c.lock()
    return c


def read_stored(workdir) -> dict | None:
    """The raw ``config.json`` of ``workdir`` (None when there is none)."""
    path = config_path(workdir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise config_lib.ConfigError(f"{str(path)!r} is not valid JSON ({e}); restore it or use a new --workdir") from None


def read_config(workdir) -> ml_collections.ConfigDict:
    """The config ``workdir`` was trained with; :class:`jhash.checkpoints.CheckpointNotFoundError` if it has none."""
    stored = read_stored(workdir)
    if stored is None:
        workdir = pathlib.Path(workdir)
        what = "does not exist" if not workdir.exists() else "has no config.json"
        raise ckpt_lib.CheckpointNotFoundError(
            f"workdir {str(workdir)!r} {what}: train one first with train.py --config FILE --workdir {workdir}")
    return config_from_json(stored, where=str(config_path(workdir)))


def _with_defaults(stored: dict | None) -> dict | None:
    """A stored config with the schema's defaults for keys it lacks (written by an older jhash), so that only real
    changes are reported; as stored when it does not fit the schema."""
    if stored is None:
        return None
    try:
        return config_to_json(config_from_json(stored))
    except config_lib.ConfigError:
        return stored


def _flatten(tree, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if isinstance(v, dict) and v:
                out.update(_flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    return {prefix.rstrip("."): tree}


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs between two JSON configs (absent = None)."""
    a = _flatten({k: v for k, v in old.items() if not k.startswith("_")})
    b = _flatten({k: v for k, v in new.items() if not k.startswith("_")})
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def is_compatible(key: str, old, new) -> bool:
    """Whether a run may resume a checkpoint with ``key`` changed from ``old`` to ``new``."""
    if any(key == c or (c.endswith(".") and key.startswith(c)) for c in COMPATIBLE):
        return True
    if key in COMPATIBLE_IF_SAME_ZERONESS:
        return bool(old) == bool(new)
    return False


def _show(value) -> str:
    return json.dumps(value)


def check_stored_config(workdir, config) -> dict[str, tuple[Any, Any]]:
    """Compare ``config`` with the one stored in ``workdir``; return the changes (``{}`` for a new workdir).

    With checkpoints present, a change outside :data:`COMPATIBLE` raises a one-line :class:`ConfigError` naming
    the keys and telling to use a new ``--workdir``; without checkpoints every change is allowed.
    """
    stored = _with_defaults(read_stored(workdir))
    if stored is None:
        return {}
    changes = config_changes(stored, config_to_json(config))
    if not changes or not checkpoint_steps(workdir):
        return changes
    bad = {k: v for k, v in changes.items() if not is_compatible(k, *v)}
    if bad:
        listed = ", ".join(f"{k} ({_show(o)} -> {_show(n)})" for k, (o, n) in bad.items())
        raise config_lib.ConfigError(
            f"workdir {str(workdir)!r} holds checkpoints of another config: {listed}; use a new --workdir "
            f"(or the stored values) to resume")
    return changes


def describe_changes(changes: dict) -> str:
    return ", ".join(f"{k}: {_show(o)} -> {_show(n)}" for k, (o, n) in changes.items())


def write_config(workdir, config, changes: dict | None = None, *, step: int | None = None) -> None:
    """Write ``config`` as ``<workdir>/config.json`` (atomically); ``changes`` (from :func:`check_stored_config`)
    are appended to the stored history with the time and the step the run resumed from."""
    stored = read_stored(workdir) or {}
    history = list(stored.get(HISTORY_KEY, []))
    if changes:
        history.append({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "resumed_from_step": step,
                        "changed": {k: [o, n] for k, (o, n) in changes.items()}})
    out = config_to_json(config)
    if history:
        out[HISTORY_KEY] = history
    ckpt_lib.write_json_atomic(config_path(workdir), out)


def remove_if_unused(workdir) -> bool:
    """Remove ``workdir`` if it holds no checkpoint (for a run that created it and failed before any work);
    returns whether it was removed."""
    workdir = pathlib.Path(workdir).expanduser()
    if not workdir.is_dir() or checkpoint_steps(workdir):
        return False
    shutil.rmtree(workdir, ignore_errors=True)
    return not workdir.exists()


# --------------------------------------------------------------------------------------------------
# Checkpoints


#: steps of the finished checkpoints in a workdir (directory names; unfinished orbax temporaries skipped)
checkpoint_steps = ckpt_lib.saved_steps


def latest_step(workdir) -> int | None:
    steps = checkpoint_steps(workdir)
    return steps[-1] if steps else None


def run_meta(config, info, step: int, total: int, method_name: str | None = None) -> dict:
    """The run metadata stored with every checkpoint (its ``meta`` item)."""
    from jhash.engine import builder_config

    return {
        "step": int(step),
        "total_steps": int(total),
        "method": method_name or config.method.name,
        "dataset": config.dataset.name,
        "dataset_config": builder_config(config.dataset),
        "bits": int(config.model.bits),
        "num_classes": int(info.num_classes),
        "info": dataclasses.asdict(info),
        "image_size": list(config.input.image_size or info.image_size),
        "config": config_to_json(config),
    }


def info_from_meta(meta: dict) -> DatasetInfo:
    i = meta.get("info") or {}
    return DatasetInfo(**{**i, "image_size": tuple(i["image_size"]),
                          "attribute_names": tuple(i.get("attribute_names", ()))})


# --------------------------------------------------------------------------------------------------
# A trained model


@dataclasses.dataclass
class Trained:
    config: Any
    method: Any
    model: Any
    variables: dict
    aux: Any
    search_params: dict | None
    step: int | None
    info: DatasetInfo
    image_size: tuple[int, int]


def check_evaluation_config(workdir, config) -> None:
    """A config given to evaluate a workdir must build the network its checkpoints hold: ConfigError naming the
    ``model.*`` / ``method.*`` keys that differ from the stored config."""
    stored = _with_defaults(read_stored(workdir))
    if stored is None:
        return
    changes = config_changes(stored, config_to_json(config))
    bad = {k: v for k, v in changes.items()
           if (k.startswith("model.") or k.startswith("method.")) and k != "model.pretrained"}
    if bad:
        raise config_lib.ConfigError(
            f"the network of workdir {str(workdir)!r} is fixed by its config.json; these differ: "
            f"{describe_changes(bad)}")


def load_trained(workdir, *, step: int | None = None, config=None, untrained: bool = False, data=None) -> Trained:
    """Config, method, model and restored variables of a workdir's checkpoint (latest, or ``step``).

    ``untrained=True`` returns the freshly initialised network instead (same seed as training started from),
    for comparison; then ``data`` (or the config's dataset) supplies the dataset info.
    """
    import jax

    from jhash import engine, parallel
    from jhash import methods as methods_lib

    if config is None:
        config = read_config(workdir)
    elif not untrained:
        check_evaluation_config(workdir, config)
    method = methods_lib.get(config.method.name)
    if untrained:
        info = (data or engine.Data(config)).info
        step = None
    else:
        ckpts = ckpt_lib.Checkpoints(workdir, read_only=True)
        try:
            if step is None:  # train.select='best_val_map' recorded the step to use
                from jhash import validation

                step = validation.selected_step(workdir, ckpts.all_steps())
            step = ckpts.resolve_step(step)
            meta = ckpts.manager.restore(step, args=ckpt_lib.ocp.args.Composite(meta=ckpt_lib.ocp.args.JsonRestore()))["meta"]
            info = info_from_meta(meta)
        except BaseException:
            ckpts.close()
            raise
    image_size = tuple(config.input.image_size or info.image_size)
    model = method.build_model(config, info)
    init_rng, _ = jax.random.split(jax.random.PRNGKey(config.seed))
    mesh = parallel.make_mesh()
    search_params = None
    if untrained:
        variables = engine.init_variables(model, config, image_size, init_rng, method=method)
        aux = method.init_aux(config, info, int(info.num_train_images)) if hasattr(method, "init_aux") else None
    else:
        like = jax.eval_shape(lambda: engine.init_variables(model, config, image_size, init_rng, pretrained=False))
        aux_like = None
        if hasattr(method, "init_aux"):
            aux_like = jax.eval_shape(lambda: method.init_aux(config, info, int(info.num_train_images)))
        with ckpts:
            restored = ckpts.restore(step, model_like={"params": like["params"], "batch_stats": like.get("batch_stats", {}),
                                                      "aux": aux_like},
                                     sharding=parallel.replicated(mesh), search=True)
        m = restored["model"]
        variables = {"params": m["params"]}
        if m.get("batch_stats"):
            variables["batch_stats"] = m["batch_stats"]
        aux, search_params = m.get("aux"), restored["search"]
    if hasattr(method, "model_search_params"):  # search parameters read from the network (DRSCH bit weights)
        search_params = {**(search_params or {}), **method.model_search_params(variables, config)}
    variables = parallel.replicate(variables, mesh)
    return Trained(config=config, method=method, model=model, variables=variables, aux=aux,
                   search_params=search_params, step=step, info=info, image_size=image_size)
