"""Classification losses on integer labels (softmax cross-entropy, multi-head sums).

Pure functions of arrays: jit- and grad-compatible, shapes checked with chex at trace time.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jhash.losses import _checks

Array = jax.Array


def _check_class_ids(fn: str, name: str, labels, num_classes: int) -> None:
    """Concrete ``labels`` lie in ``[0, num_classes)``; traced ones cannot be checked (see the losses' docs)."""
    if isinstance(labels, jax.core.Tracer) or np.size(labels) == 0:
        return
    values = np.asarray(labels)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"jhash.losses.{fn}: argument {name!r} must hold class ids in [0, {num_classes}) "
                         f"(logits.shape[-1]), got values in [{lo}, {hi}]")


def softmax_cross_entropy(logits: Array, labels: Array, label_smoothing: float = 0.0, weights: Array | None = None) -> Array:
    r"""Mean softmax cross-entropy with optional label smoothing (Szegedy et al. 2016, §7).

    .. math::

        \mathcal{L} = -\frac{1}{B}\sum_{n=1}^{B} \sum_{k=1}^{K} q_{nk}\,\log \sigma(x_n)_k,\qquad
        q_{nk} = (1-\varepsilon)\,[k = l_n] + \varepsilon / K

    With ``label_smoothing`` :math:`\varepsilon = 0` this is DHMTL's softmax loss (Liang et al., eq. 1–2).
    BoT/CtF use :math:`\varepsilon = 0.1`.

    Labels outside ``[0, K)`` (e.g. the ReID junk id -1, or K) are no class. Concrete labels are checked: a
    ``ValueError`` names the argument and the range found. Under ``jit`` the labels are tracers and cannot be
    checked; a sample with an out-of-range label then contributes NaN, so the loss is NaN (never the loss of
    some other class) and the trainer's finiteness check stops the run naming the step.

    Args:
      logits: ``[B, K]`` float, unnormalised class scores.
      labels: ``[B]`` int, class ids in ``[0, K)``.
      label_smoothing: :math:`\varepsilon \in [0, 1)` (a Python float).
      weights: optional ``[B]`` float per-sample weights; the result is then
        :math:`\sum_n w_n \ell_n / \max(\sum_n w_n, \epsilon)` (use 0/1 weights to ignore samples).

    Returns:
      scalar float32.
    """
    fn = "softmax_cross_entropy"
    _checks.floating(fn, "logits", logits, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.same_leading(fn, ("logits", "labels"), (logits, labels))
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"jhash.losses.{fn}: argument 'label_smoothing' must be in [0, 1), got {label_smoothing}")
    num_classes = logits.shape[-1]
    _check_class_ids(fn, "labels", labels, num_classes)
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.int32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    valid = (labels >= 0) & (labels < num_classes)
    nll = -jnp.take_along_axis(logp, jnp.clip(labels, 0, num_classes - 1)[:, None], axis=-1)[:, 0]
    if label_smoothing > 0:
        per = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
    else:
        per = nll
    per = jnp.where(valid, per, jnp.nan)
    if weights is None:
        return jnp.mean(per)
    _checks.floating(fn, "weights", weights, 1)
    _checks.same_leading(fn, ("logits", "weights"), (logits, weights))
    return jnp.sum(per * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def multi_head_cross_entropy(
    logits: Mapping[str, Array] | Sequence[Array],
    labels: Mapping[str, Array] | Sequence[Array],
    head_weights: Mapping[str, float] | Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> Array:
    r"""Sum of the heads' mean cross-entropies (DHMTL, Liang et al.: "the final loss is the sum of these
    softmax losses", eq. 2 per head).

    .. math:: \mathcal{L} = \sum_{t} \lambda_t\, \mathrm{CE}(x^{(t)}, l^{(t)})

    Args:
      logits: heads' logits, each ``[B, K_t]`` float — a dict ``{name: logits}`` or a sequence.
      labels: matching ``[B]`` int labels — a dict with the same keys or a sequence of the same length.
      head_weights: optional :math:`\lambda_t` (default 1 for every head), same structure.
      label_smoothing: applied to every head.

    Returns:
      scalar float32.
    """
    fn = "multi_head_cross_entropy"
    if isinstance(logits, Mapping):
        if not isinstance(labels, Mapping) or set(labels) < set(logits):
            missing = sorted(set(logits) - set(labels)) if isinstance(labels, Mapping) else sorted(logits)
            raise ValueError(f"jhash.losses.{fn}: argument 'labels' lacks heads {missing} present in 'logits'")
        names = list(logits)
        ls = [logits[k] for k in names]
        ys = [labels[k] for k in names]
        if head_weights is None:
            ws = [1.0] * len(names)
        elif isinstance(head_weights, Mapping):
            ws = [head_weights.get(k, 1.0) for k in names]
        else:
            raise ValueError(f"jhash.losses.{fn}: argument 'head_weights' must be a dict like 'logits'")
    else:
        ls, ys = list(logits), list(labels)
        names = [str(i) for i in range(len(ls))]
        if len(ls) != len(ys):
            raise ValueError(f"jhash.losses.{fn}: arguments 'logits' and 'labels' have {len(ls)} and {len(ys)} heads")
        ws = [1.0] * len(ls) if head_weights is None else list(head_weights)
        if len(ws) != len(ls):
            raise ValueError(f"jhash.losses.{fn}: argument 'head_weights' has {len(ws)} entries for {len(ls)} heads")
    if not ls:
        raise ValueError(f"jhash.losses.{fn}: argument 'logits' has no heads")
    total = jnp.zeros((), jnp.float32)
    for name, lg, y, w in zip(names, ls, ys, ws):
        try:
            total = total + w * softmax_cross_entropy(lg, y, label_smoothing=label_smoothing)
        except (ValueError, TypeError) as e:
            raise type(e)(f"jhash.losses.{fn}: head {name!r}: {e}") from None
    return total
