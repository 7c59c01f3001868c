"""Experiment configuration: the schema every config shares, loading config files, overrides.

A config is a Python file ``configs/<dataset>/<method>.py`` whose ``get_config()`` returns an
:class:`ml_collections.ConfigDict` (Flax examples / big_vision style). It starts from
:func:`base_config` — the schema below, with its defaults — and changes what it needs. The file's
docstring carries the command that runs it. Any field can be overridden on the command line::

    python train.py --config configs/market1501/baseline.py --workdir runs/m --config.optimizer.lr=3e-4

A key that is not in the schema is an error that lists the valid keys at that level
(:class:`ConfigError`); configs are locked, so code cannot add keys by accident either.

Schema (``None`` marks an optional field; ``<unit>`` is the unit of the training length: epochs when
``train.epochs`` is set, steps otherwise)::

    seed                     int    global seed (parameters, data order, dropout / erasing rngs)
    dataset.name             str    TFDS builder name, e.g. 'synthetic_reid', 'market1501'
    dataset.config           str    builder config ('tiny' / 'default' / 'large' for synthetic_reid); None = default
    dataset.options          dict   builder config fields set on top of ``dataset.config`` (free-form), e.g.
                                    reid_folder's pattern, example, match_on, splits, val_fraction, skip_unmatched;
                                    each distinct set is prepared into its own folder under ``dataset.data_dir``
    dataset.data_dir         str    where prepared datasets live; None = $JHASH_DATA_DIR or ~/tensorflow_datasets
    dataset.manual_dir       str    where the user put the downloaded archives (real benchmarks); None
    dataset.train_split      str    'train'
    dataset.query_split      str    'query'
    dataset.gallery_split    str    'gallery'
    dataset.val_split        str    split used by a method's ``fit_search`` after training; None = skip
    input.image_size         tuple  (height, width); None = the dataset's ``info.image_size``
    input.augment            dict   passed to ``jhash.data.pipeline.train_loader(augment_config=...)``; None = its defaults
    input.num_workers        int    grain worker processes (0 = in-process)
    model.backbone           str    ``jhash.models.get_backbone`` name: 'resnet50', 'small_cnn', ...
    model.backbone_kwargs    dict   extra backbone arguments (e.g. last_stride=1)
    model.pretrained         str    torchvision ResNet state_dict (.safetensors / .pth) to start from; None
    model.bits               int    code length L
    model.pooling            str    'avg' | 'gem'
    method.name              str    ``jhash.methods`` module name ('baseline', ...) or a dotted module path
    method.aux_every         int    epochs between a method's ``update_aux`` passes over the training set (0 = never)
    method.*                        method-specific fields, declared by the config file
    optimizer.name           str    'adam' | 'adamw' | 'sgd' (momentum)
    optimizer.lr             float  base learning rate
    optimizer.momentum       float  SGD momentum (also Adam's b1 is ``optimizer.b1``)
    optimizer.nesterov       bool
    optimizer.b1, .b2        float  Adam betas
    optimizer.weight_decay   float  L2 for 'adam'/'sgd' (added to the gradient), decoupled for 'adamw'
    optimizer.decay_all      bool   also decay biases and normalisation scales (default: kernels only)
    optimizer.schedule       str    'constant' | 'multistep' | 'cosine' (after the warm-up)
    optimizer.warmup         float  linear warm-up length in <unit> (0 = none), from ``warmup_factor * lr``
    optimizer.warmup_factor  float  learning-rate fraction the warm-up starts from
    optimizer.milestones     tuple  multistep: positions in <unit> where lr is multiplied by ``gamma``
    optimizer.gamma          float
    optimizer.min_lr_ratio   float  cosine: final lr as a fraction of ``lr``
    optimizer.lr_mult        tuple  parameter-group factors: ((regex, factor), ...) matched (re.search) on the
                                    '/'-joined parameter path; the first match wins, no match = 1. E.g.
                                    --config.optimizer.lr_mult="(('^(?!backbone)', 10.0),)" for 10x on new layers
    optimizer.grad_clip_norm float  clip by global norm (0 = off)
    train.steps              int    training length in steps (wins over ``epochs`` when > 0)
    train.epochs             int    training length in epochs of ``info.num_train_images // (batch_p * batch_k)`` steps
    train.batch_p            int    identities per global batch
    train.batch_k            int    images per identity (global batch = batch_p * batch_k)
    train.compute_dtype      str    'float32' | 'bfloat16' (parameters and optimizer state stay float32)
    train.log_every          int    steps between metrics.jsonl lines and progress-bar updates
    train.ckpt_every         int    steps between checkpoints (the last step is always saved)
    train.keep               int    checkpoints kept (the newest N)
    eval.batch_size          int    images per encoding batch
    eval.code                str    the code used for exhaustive search and the ReID table ('id')
    eval.tradeoff_bits       tuple  prefix lengths of the code shown in ``evaluate.py --tradeoff``
    eval.hashing_metrics     tuple  the hashing literature's metrics of the main code, e.g. ('map@1000',) (DHMTL),
                                    ('precision_radius@2', 'precision@500') (DRSCH); see jhash.evaluator
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
from typing import Sequence

import ml_collections
from ml_collections import config_dict


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def base_config() -> ml_collections.ConfigDict:
    """The full schema with its defaults (unlocked: config files fill it in, then :func:`load` locks it)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "synthetic_reid"
    c.dataset.config = config_dict.placeholder(str)
    c.dataset.options = ml_collections.ConfigDict()
    c.dataset.data_dir = config_dict.placeholder(str)
    c.dataset.manual_dir = config_dict.placeholder(str)
    c.dataset.train_split = "train"
    c.dataset.query_split = "query"
    c.dataset.gallery_split = "gallery"
    c.dataset.val_split = config_dict.placeholder(str)

    c.input = ml_collections.ConfigDict()
    c.input.image_size = config_dict.placeholder(tuple)
    c.input.augment = config_dict.placeholder(ml_collections.ConfigDict)
    c.input.num_workers = 0

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "resnet50"
    c.model.backbone_kwargs = ml_collections.ConfigDict()
    c.model.pretrained = config_dict.placeholder(str)
    c.model.bits = 256
    c.model.pooling = "avg"

    c.method = ml_collections.ConfigDict()
    c.method.name = "baseline"
    c.method.aux_every = 0

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"
    c.optimizer.lr = 3.5e-4
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 5e-4
    c.optimizer.decay_all = False
    c.optimizer.schedule = "multistep"
    c.optimizer.warmup = 0.0
    c.optimizer.warmup_factor = 0.01
    c.optimizer.milestones = ()
    c.optimizer.gamma = 0.1
    c.optimizer.min_lr_ratio = 0.0
    c.optimizer.lr_mult = ()
    c.optimizer.grad_clip_norm = 0.0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 0
    c.train.epochs = 0
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.compute_dtype = "float32"
    c.train.log_every = 50
    c.train.ckpt_every = 1000
    c.train.keep = 3

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 128
    c.eval.code = "id"
    c.eval.tradeoff_bits = ()
    c.eval.hashing_metrics = ()
    return c


def load_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """Import a config file and return its ``get_config()`` (not locked, no overrides)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"_jhash_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {str(path)!r} defines no get_config()")
    return module.get_config()


def valid_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """All dotted leaf keys of ``config`` (the names overrides may use)."""
    keys = []
    for k in sorted(config.keys()):
        v = config[k]
        if isinstance(v, ml_collections.ConfigDict) and len(v):
            keys += valid_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _resolve(config: ml_collections.ConfigDict, key: str):
    """(parent ConfigDict, last name) of a dotted key; ConfigError listing valid keys when absent."""
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:i]) or "<top level>"
            have = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(
                f"unknown config key {key!r}: {where!r} has no field {part!r}. "
                f"Valid keys there: {', '.join(have) or '(none)'}.\nAll valid keys: {', '.join(valid_keys(config))}"
            )
        if i == len(parts) - 1:
            return node, part
        node = node[part]
    raise AssertionError


def _parse_value(text: str, current_type):
    if current_type is str:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if current_type is tuple and isinstance(value, list):
        value = tuple(value)
    if current_type is tuple and not isinstance(value, tuple):
        value = (value,)
    if current_type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Set ``config.<key>`` from the command-line text ``text`` (types follow the existing field)."""
    parent, name = _resolve(config, key)
    try:
        current_type = parent.get_type(name)
    except (AttributeError, KeyError):
        current_type = type(parent[name])
    value = _parse_value(text, current_type)
    if isinstance(value, dict):
        value = ml_collections.ConfigDict(value)
    try:
        parent[name] = value
    except TypeError as e:
        raise ConfigError(f"config key {key!r}: cannot set {text!r}: {e}") from None


def split_overrides(argv: Sequence[str], flag: str = "config") -> tuple[str | None, list[tuple[str, str]]]:
    """Find ``--config FILE`` / ``--config=FILE`` and ``--config.a.b=v`` (or ``--config.a.b v``) in argv."""
    path, overrides = None, []
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in (f"--{flag}", f"-{flag}") and i + 1 < len(argv):
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith(f"--{flag}="):
            path = arg.split("=", 1)[1]
        elif arg.startswith(f"--{flag}."):
            body = arg[len(f"--{flag}.") :]
            if "=" in body:
                overrides.append(tuple(body.split("=", 1)))
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append((body, argv[i + 1]))
                i += 1
            else:  # absl boolean form --config.a.b
                overrides.append((body, "True"))
        i += 1
    return path, overrides


def load(path: str | os.PathLike, overrides: Sequence[str] | Sequence[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Load a config file, check it against the schema, apply ``key=value`` overrides, lock it.

    Raises :class:`ConfigError` naming the offending key and listing the valid ones.
    """
    config = load_file(path)
    check(config)
    for item in overrides:
        key, text = item.split("=", 1) if isinstance(item, str) else item
        override(config, key.removeprefix("--config.").removeprefix("config."), text)
    config.lock()
    return config


def check(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict | None = None, prefix: str = "") -> None:
    """Every key of ``config`` outside ``method``, ``model.backbone_kwargs``, ``input.augment`` and
    ``dataset.options`` (free-form) must be a schema key; raise :class:`ConfigError` listing the valid ones."""
    schema = base_config() if schema is None else schema
    free = {"method", "model.backbone_kwargs", "input.augment", "dataset.options"}
    for k in config.keys():
        full = f"{prefix}{k}"
        if k not in schema:
            raise ConfigError(
                f"unknown config key {full!r} in the config file. Valid keys there: {', '.join(sorted(schema.keys()))}"
            )
        if full in free:
            continue
        v, s = config[k], schema[k]
        if isinstance(v, ml_collections.ConfigDict) and isinstance(s, ml_collections.ConfigDict):
            check(v, s, f"{full}.")


def validate_argv(argv: Sequence[str]) -> None:
    """Check ``--config.*`` overrides in ``argv`` before absl parses them; exit with a clear message if bad.

    ``ml_collections.config_flags`` reports an unknown key as a traceback; this gives the valid keys instead.
    """
    import sys

    path, overrides = split_overrides(argv[1:])
    if path is None:
        return
    try:
        load(path, overrides)
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None


def data_dir(config) -> str:
    """The dataset directory: ``config.dataset.data_dir``, else $JHASH_DATA_DIR, else ~/tensorflow_datasets."""
    d = config.dataset.data_dir or os.environ.get("JHASH_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(d)


def steps_per_epoch(config, info) -> int:
    return max(1, int(info.num_train_images) // (config.train.batch_p * config.train.batch_k))


def total_steps(config, info) -> int:
    """Training length in steps: ``train.steps`` if > 0, else ``train.epochs`` epochs."""
    if config.train.steps > 0:
        return int(config.train.steps)
    if config.train.epochs > 0:
        return int(config.train.epochs) * steps_per_epoch(config, info)
    raise ConfigError("set config.train.steps or config.train.epochs to a positive number")


def schedule_unit_steps(config, info) -> int:
    """Steps per unit of ``optimizer.warmup`` / ``optimizer.milestones`` (an epoch if training is in epochs)."""
    return 1 if config.train.steps > 0 else steps_per_epoch(config, info)


def compute_dtype(config):
    """``config.train.compute_dtype`` as a jnp dtype; methods pass it as ``dtype`` to their Flax modules
    (parameters, batch statistics and optimizer state stay float32)."""
    import jax.numpy as jnp

    name = config.train.compute_dtype
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
    if name not in dtypes:
        raise ConfigError(f"config.train.compute_dtype={name!r}: use one of {', '.join(dtypes)}")
    return dtypes[name]
