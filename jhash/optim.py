"""Optimisers and learning-rate schedules from ``config.optimizer`` (optax).

- ``adam`` (L2 weight decay added to the gradient, like ``torch.optim.Adam``), ``adamw`` (decoupled),
  ``sgd`` with (Nesterov) momentum and L2 weight decay.
- Schedules: linear warm-up from ``warmup_factor * lr`` over ``warmup`` units, then ``constant``,
  ``multistep`` (× ``gamma`` at each milestone) or ``cosine`` (down to ``min_lr_ratio * lr``).
- Parameter groups: ``optimizer.lr_mult`` is ``((regex, factor), ...)``: a regex on the '/'-joined parameter
  path and its learning-rate factor (first match wins); ``(('^(?!backbone)', 10.0),)`` trains new layers 10×
  faster.
- Weight decay applies to kernels (ndim > 1) unless ``decay_all``.
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jhash import config as config_lib


def learning_rate_schedule(config, info=None, *, unit_steps: int | None = None, total: int | None = None) -> Callable:
    """``step -> lr`` for the base learning rate (before parameter-group factors)."""
    o = config.optimizer
    unit = unit_steps if unit_steps is not None else config_lib.schedule_unit_steps(config, info)
    total = total if total is not None else config_lib.total_steps(config, info)
    lr = float(o.lr)
    warmup = int(round(float(o.warmup) * unit))
    if o.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif o.schedule == "multistep":
        bounds = {int(round(float(m) * unit)) - warmup: float(o.gamma) for m in o.milestones}
        main = optax.piecewise_constant_schedule(lr, {k: v for k, v in bounds.items() if k > 0})
    elif o.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, max(1, total - warmup), alpha=float(o.min_lr_ratio))
    else:
        raise config_lib.ConfigError(
            f"config.optimizer.schedule={o.schedule!r}: use 'constant', 'multistep' or 'cosine'"
        )
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(lr * float(o.warmup_factor), lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])


def _path_str(path) -> str:
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
    return "/".join(parts)


def param_groups(params, lr_mult) -> tuple[dict, object]:
    """(group name -> factor, pytree of group names) for ``optimizer.lr_mult``."""
    items = lr_mult.items() if hasattr(lr_mult, "items") else (lr_mult or ())
    patterns = [(re.compile(k), float(v)) for k, v in items]
    groups = {"default": 1.0}

    def label(path, _):
        name = _path_str(path)
        for i, (rx, factor) in enumerate(patterns):
            if rx.search(name):
                groups[f"g{i}"] = factor
                return f"g{i}"
        return "default"

    labels = jax.tree_util.tree_map_with_path(label, params)
    return groups, labels


def _base_tx(config, schedule) -> optax.GradientTransformation:
    o = config.optimizer
    wd = float(o.weight_decay)
    mask = None if o.decay_all else (lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    if o.name == "adam":
        parts = [optax.add_decayed_weights(wd, mask)] if wd else []
        parts.append(optax.scale_by_adam(b1=float(o.b1), b2=float(o.b2)))
    elif o.name == "adamw":
        parts = [optax.scale_by_adam(b1=float(o.b1), b2=float(o.b2))]
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
    elif o.name == "sgd":
        parts = [optax.add_decayed_weights(wd, mask)] if wd else []
        if o.momentum:
            parts.append(optax.trace(decay=float(o.momentum), nesterov=bool(o.nesterov)))
    else:
        raise config_lib.ConfigError(f"config.optimizer.name={o.name!r}: use 'adam', 'adamw' or 'sgd'")
    parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts)


def make_optimizer(config, params, info=None, **schedule_kw) -> tuple[optax.GradientTransformation, Callable]:
    """(optax transformation, base schedule) for ``params`` following ``config.optimizer``."""
    schedule = learning_rate_schedule(config, info, **schedule_kw)
    groups, labels = param_groups(params, config.optimizer.lr_mult)
    if len(groups) == 1:
        tx = _base_tx(config, schedule)
    else:
        txs = {
            name: _base_tx(config, (lambda f: (lambda step: schedule(step) * f))(factor))
            for name, factor in groups.items()
        }
        tx = optax.multi_transform(txs, labels)
    if config.optimizer.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(float(config.optimizer.grad_clip_norm)), tx)
    return tx, schedule


def cast_floating(tree, dtype):
    """Cast the floating leaves of ``tree`` to ``dtype`` (bf16 compute over float32 master weights)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
