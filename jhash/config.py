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
    dataset.val_split        str    held-out identities: validation during training (train.eval_every*) and a method's
                                    ``fit_search`` after training; None = neither
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
    train.keep               int    checkpoints kept (the newest N, >= 1; the final and the selected best are kept too)
    train.eval_every         int    steps between validations on dataset.val_split (wins over ``eval_every_epochs``
                                    when > 0; see jhash.validation)
    train.eval_every_epochs  float  epochs between validations when ``eval_every`` is 0 (default 1; 0 and
                                    ``eval_every=0`` = no validation). Nothing runs without ``dataset.val_split``
    train.select             str    'last' | 'best_val_map': the checkpoint evaluate.py uses by default
    train.patience           int    stop after this many validations without a better val mAP (0 = never)
    eval.batch_size          int    images per encoding batch
    eval.code                str    the code used for exhaustive search and the ReID table ('id')
    eval.tradeoff_bits       tuple  prefix lengths of the code shown in ``evaluate.py --tradeoff``
    eval.hashing_metrics     tuple  the hashing literature's metrics of the main code, e.g. ('map@1000',) (DHMTL),
                                    ('precision_radius@2', 'precision@500') (DRSCH); see jhash.evaluator
    eval.ties                str    equal Hamming distances: 'stable' (ordered by gallery index) or 'expected'
                                    (the expectation over a uniformly random order inside ties)

On the command line ``None`` means None (``--config.dataset.val_split=None``) and a single number for
``input.image_size`` means a square image (``64`` -> ``(64, 64)``). :func:`validate` checks every count, size, rate
and period before any work is done; :func:`validate_for_dataset` checks what needs the prepared dataset (P
against the number of identities, the splits and labels a method needs).
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
    c.train.eval_every = 0
    c.train.eval_every_epochs = 1.0
    c.train.select = "last"
    c.train.patience = 0

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 128
    c.eval.code = "id"
    c.eval.tradeoff_bits = ()
    c.eval.hashing_metrics = ()
    c.eval.ties = "stable"
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


#: dicts whose keys are not fixed by the schema: the command line may add new keys under them
OPEN_DICTS = ("dataset.options", "dataset.config", "model.backbone_kwargs", "input.augment")


def _opens_new_keys(path: str) -> bool:
    return any(path == d or path.startswith(d + ".") for d in OPEN_DICTS)


def _resolve(config: ml_collections.ConfigDict, key: str, *, create: bool = False):
    """(parent ConfigDict, last name) of a dotted key; ConfigError listing valid keys when absent.

    ``create``: a key missing under one of :data:`OPEN_DICTS` (a dict the config holds, e.g. ``dataset.options``)
    is made (with any missing dicts on the way) instead of refused."""
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        parent_path = ".".join(parts[:i])
        if (create and isinstance(node, ml_collections.ConfigDict) and part not in node
                and _opens_new_keys(parent_path)):
            if i == len(parts) - 1:
                return node, part
            node[part] = ml_collections.ConfigDict()
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
    """The value of command-line ``text`` for a field of ``current_type``; ``'None'`` is None for every field."""
    if text.strip() == "None":
        return None
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
    parent, name = _resolve(config, key, create=True)
    if name not in parent:
        current_type = None  # a new key under an open dict: the value's own type
    else:
        try:
            current_type = parent.get_type(name)
        except (AttributeError, KeyError):
            current_type = type(parent[name])
    value = _parse_value(text, current_type)
    if key == "input.image_size" and isinstance(value, tuple) and len(value) == 1:
        value = value * 2  # one number: a square image
    if isinstance(value, dict):
        value = ml_collections.ConfigDict(value)
    try:
        parent[name] = value
    except TypeError as e:
        raise ConfigError(f"config key {key!r}: cannot set {text!r}: {e}") from None


def split_overrides(argv: Sequence[str], flag: str = "config") -> tuple[str | None, list[tuple[str, str]]]:
    """Find ``--config FILE`` / ``--config=FILE`` and ``--config.a.b=v`` (or ``--config.a.b v``) in argv."""
    path, overrides, _ = extract_overrides(argv, flag)
    return path, overrides


def extract_overrides(argv: Sequence[str], flag: str = "config") -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """``(config file, [(key, text), ...], the other arguments)`` of a command line (see :func:`split_overrides`)."""
    path, overrides, rest = None, [], []
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
        elif not arg.startswith(f"--{flag}."):
            rest.append(arg)
        else:
            body = arg[len(f"--{flag}.") :]
            if "=" in body:
                overrides.append(tuple(body.split("=", 1)))
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append((body, argv[i + 1]))
                i += 1
            else:  # absl boolean form --config.a.b
                overrides.append((body, "True"))
        i += 1
    return path, overrides, rest


def load(path: str | os.PathLike, overrides: Sequence[str] | Sequence[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Load a config file, check it against the schema, apply ``key=value`` overrides, lock it.

    Raises :class:`ConfigError` naming the offending key and listing the valid ones.
    """
    config = load_file(path)
    check(config)
    return apply_overrides(config, overrides)


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str] | Sequence[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Apply ``key=value`` (or ``(key, value)``) command-line overrides to ``config`` and lock it."""
    config.unlock()
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


def default_data_dir() -> str:
    """Where every command keeps prepared datasets unless told otherwise: $JHASH_DATA_DIR, else
    ~/tensorflow_datasets."""
    return os.path.expanduser(os.environ.get("JHASH_DATA_DIR") or "~/tensorflow_datasets")


def data_dir(config) -> str:
    """The dataset directory: ``config.dataset.data_dir``, else :func:`default_data_dir`."""
    return os.path.expanduser(config.dataset.data_dir) if config.dataset.data_dir else default_data_dir()


def steps_per_epoch(config, info) -> int:
    return max(1, int(info.num_train_images) // (config.train.batch_p * config.train.batch_k))


def total_steps(config, info) -> int:
    """Training length in steps: ``train.steps`` if > 0, else ``train.epochs`` epochs."""
    if config.train.steps > 0:
        return int(config.train.steps)
    if config.train.epochs > 0:
        return int(config.train.epochs) * steps_per_epoch(config, info)
    raise ConfigError("set config.train.steps or config.train.epochs to a positive number")


def validation_period(config, info) -> int:
    """Steps between validations on ``dataset.val_split``: ``train.eval_every`` when > 0, else
    ``train.eval_every_epochs`` epochs (rounded, at least one step); 0 (none) without a val split or when both are 0."""
    if not config.dataset.val_split:
        return 0
    if config.train.eval_every > 0:
        return int(config.train.eval_every)
    epochs = float(config.train.get("eval_every_epochs", 0.0) or 0.0)
    return max(1, int(epochs * steps_per_epoch(config, info) + 0.5)) if epochs > 0 else 0


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


# --------------------------------------------------------------------------------------------------
# Validation before any work


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "multistep", "cosine")
POOLINGS = ("avg", "gem")
TIES = ("stable", "expected")
SELECTS = ("last", "best_val_map")  # train.select: the checkpoint evaluate.py uses by default


def _number(config, key: str, *, integer: bool = False, low=None, high=None, low_open: bool = False,
            high_open: bool = False, optional: bool = False) -> None:
    """ConfigError naming ``config.<key>`` unless its value is a number in the given range."""
    value = _get(config, key)
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value != value:  # NaN != NaN
        raise ConfigError(f"config.{key}={value!r}: expected {kind}{_range_text(low, high, low_open, high_open)}")
    if (low is not None and (value <= low if low_open else value < low)) or (
            high is not None and (value >= high if high_open else value > high)):
        raise ConfigError(f"config.{key}={value!r}: expected {kind}{_range_text(low, high, low_open, high_open)}")


def nonnegative(key: str, value) -> float:
    """``float(value)``, or a ConfigError naming ``config.<key>`` when it is negative (a loss weight)."""
    w = float(value)
    if w < 0:
        raise ConfigError(f"config.{key}={w}: expected >= 0")
    return w


def _range_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _choice(config, key: str, choices, *, optional: bool = False) -> None:
    value = _get(config, key)
    if value is None and optional:
        return
    if value not in choices:
        raise ConfigError(f"config.{key}={value!r}: expected one of {', '.join(map(repr, choices))}")


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _check_validation_keys(t, val_split) -> None:
    """``train.select`` / ``train.eval_every`` / ``train.patience``: selection and early stopping need validation."""
    if t.select not in SELECTS:
        raise ConfigError(f"config.train.select must be one of {SELECTS}, got {t.select!r}")
    for key in ("eval_every", "eval_every_epochs", "patience"):
        if t.get(key, 0) < 0:
            raise ConfigError(f"config.train.{key} must be >= 0, got {t[key]}")
    validates = t.eval_every > 0 or t.get("eval_every_epochs", 0) > 0
    if (t.select != "last" or t.patience) and not (validates and val_split):
        raise ConfigError(
            f"config.train.select={t.select!r} / config.train.patience={t.patience} need validation: set "
            f"config.train.eval_every or config.train.eval_every_epochs > 0 and config.dataset.val_split (now "
            f"{t.eval_every}, {t.get('eval_every_epochs', 0)} and {val_split!r})")


def validate(config: ml_collections.ConfigDict) -> None:
    """Check every count, size, rate and period of ``config`` before any work: :class:`ConfigError` naming the key
    and the expected range otherwise (the schema's key set is :func:`check`'s job)."""
    check(config)
    _number(config, "seed", integer=True, low=0)
    d = config.dataset
    if not isinstance(d.name, str) or not d.name:
        raise ConfigError(f"config.dataset.name={d.name!r}: expected a dataset name")
    for split in ("train_split", "query_split", "gallery_split"):
        if not isinstance(d[split], str) or not d[split]:
            raise ConfigError(f"config.dataset.{split}={d[split]!r}: expected a split name")
    if d.val_split is not None and (not isinstance(d.val_split, str) or not d.val_split):
        raise ConfigError(f"config.dataset.val_split={d.val_split!r}: expected a split name or None")
    size = config.input.image_size
    if size is not None and (not isinstance(size, (tuple, list)) or len(size) != 2
                             or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in size)):
        raise ConfigError(f"config.input.image_size={size!r}: expected (height, width) in pixels, e.g. (256, 128), "
                          f"one number for a square image, or None for the dataset's size")
    _number(config, "input.num_workers", integer=True, low=0)
    _number(config, "model.bits", integer=True, low=1)
    _choice(config, "model.pooling", POOLINGS)
    if not isinstance(config.method.name, str) or not config.method.name:
        raise ConfigError(f"config.method.name={config.method.name!r}: expected a method name")
    _number(config, "method.aux_every", integer=True, low=0)
    o = "optimizer."
    _choice(config, o + "name", OPTIMIZERS)
    _choice(config, o + "schedule", SCHEDULES)
    _number(config, o + "lr", low=0, low_open=True)
    if config.optimizer.lr == float("inf"):
        raise ConfigError("config.optimizer.lr=inf: expected a finite number > 0")
    _number(config, o + "momentum", low=0, high=1, high_open=True)
    _number(config, o + "b1", low=0, high=1, high_open=True)
    _number(config, o + "b2", low=0, high=1, high_open=True)
    _number(config, o + "weight_decay", low=0)
    _number(config, o + "warmup", low=0)
    _number(config, o + "warmup_factor", low=0, high=1, low_open=True)
    _number(config, o + "gamma", low=0, low_open=True)
    _number(config, o + "min_lr_ratio", low=0, high=1)
    _number(config, o + "grad_clip_norm", low=0)
    milestones = config.optimizer.milestones
    if not isinstance(milestones, (tuple, list)) or any(
            isinstance(m, bool) or not isinstance(m, (int, float)) or m < 0 for m in milestones) or list(
            milestones) != sorted(milestones):
        raise ConfigError(f"config.optimizer.milestones={milestones!r}: expected increasing numbers >= 0")
    t = "train."
    _number(config, t + "steps", integer=True, low=0)
    _number(config, t + "epochs", integer=True, low=0)
    if config.train.steps == 0 and config.train.epochs == 0:
        raise ConfigError("config.train.steps and config.train.epochs are both 0: set one of them to a positive number")
    _number(config, t + "batch_p", integer=True, low=2)
    _number(config, t + "batch_k", integer=True, low=1)
    _number(config, t + "log_every", integer=True, low=1)
    _number(config, t + "ckpt_every", integer=True, low=1)
    _number(config, t + "keep", integer=True, low=1)
    _choice(config, t + "compute_dtype", COMPUTE_DTYPES)
    _check_validation_keys(config.train, config.dataset.val_split)
    _number(config, "eval.batch_size", integer=True, low=1)
    _choice(config, "eval.ties", TIES)
    if not isinstance(config.eval.code, str) or not config.eval.code:
        raise ConfigError(f"config.eval.code={config.eval.code!r}: expected a code name such as 'id'")
    bits = config.eval.tradeoff_bits
    if not isinstance(bits, (tuple, list)) or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in bits):
        raise ConfigError(f"config.eval.tradeoff_bits={bits!r}: expected a tuple of code lengths >= 1")
    names = config.eval.hashing_metrics
    if not isinstance(names, (tuple, list)):
        raise ConfigError(f"config.eval.hashing_metrics={names!r}: expected a tuple of names like 'map@1000'")
    for name in names:
        parse_hashing_metric(name)


HASHING_METRICS = ("map", "precision", "precision_radius")


def parse_hashing_metric(name: str) -> tuple[str, int]:
    """``'map@1000'`` -> ``('map', 1000)``; the kinds are :data:`HASHING_METRICS` (``precision_radius@R``: precision
    within Hamming radius ``R``, empty balls count as zero)."""
    kind, _, n = str(name).partition("@")
    if kind not in HASHING_METRICS or not n.isdigit() or (kind != "precision_radius" and int(n) < 1):
        raise ConfigError(f"config.eval.hashing_metrics: expected names like 'map@1000', 'precision@500' or "
                          f"'precision_radius@2' (kinds {HASHING_METRICS}), got {name!r}")
    return kind, int(n)


def validate_for_dataset(config, info, method, has_split=None) -> list[str]:
    """What needs the prepared dataset, checked before the first step; returns warnings (one line each).

    - ``train.batch_p`` identities per batch cannot exceed the training identities;
    - a method that fits its search after training (``fit_search``) needs ``dataset.val_split`` to exist
      (``has_split(name) -> bool``; skipped when None);
    - SSR's attribute heads and attribute-first search need attribute labels;
    - CtF's code lengths are ``method.lengths`` (``model.bits`` is not used).

    DHMTL's model / colour heads are checked by its ``build_model`` (also before the first step).
    """
    warnings = []
    name = f"{config.dataset.name}" + (f"/{config.dataset.config}" if isinstance(config.dataset.config, str) else "")
    if config.train.batch_p > int(info.num_classes):
        raise ConfigError(
            f"config.train.batch_p={config.train.batch_p} identities per batch, but {name} has only "
            f"{int(info.num_classes)} training identities; set --config.train.batch_p={max(2, int(info.num_classes))} "
            f"or less")
    val = config.dataset.val_split
    if hasattr(method, "fit_search") and val is not None and has_split is not None and not has_split(val):
        raise ConfigError(
            f"config.dataset.val_split={val!r}: {name} has no split {val!r}, which {config.method.name} needs after "
            f"training to fit its search; prepare the dataset with a validation split or set "
            f"--config.dataset.val_split=None (no fitted search)")
    method_name = str(config.method.name).rsplit(".", 1)[-1]
    if method_name == "ssr":
        attributes, afr = bool(config.method.get("attributes", True)), bool(config.method.get("afr", True))
        if attributes and int(info.num_attributes) == 0:
            raise ConfigError(
                f"config.method.attributes=True but {name} has no attribute labels; set "
                f"--config.method.attributes=False --config.method.afr=False (no attribute loss, exhaustive search)")
        if afr and not attributes:
            raise ConfigError("config.method.afr=True needs attribute codes but config.method.attributes=False; set "
                              "--config.method.afr=False")
    if method_name == "ctf" and "lengths" in config.method:
        lengths = tuple(int(x) for x in config.method.lengths)
        if lengths and config.model.bits != lengths[0]:
            warnings.append(f"CtF's code lengths are config.method.lengths={lengths}; config.model.bits="
                            f"{config.model.bits} is not used")
    return warnings
