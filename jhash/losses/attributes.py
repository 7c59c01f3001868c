"""Binary attribute learning for hashing (Jin et al. 2021, SSR/AFR, eqs. 3-5; ``docs/methods.md`` §5).

Every attribute ``v`` (30 on Market-1501: 26 two-valued ones plus the 4-class age split into four yes/no
attributes) is its own two-way classifier with logits ``z_v = [z_v0, z_v1]`` (``0`` = "no", ``1`` = "yes"):

- eq. 3: ``p(j) = softmax(z_v)_j``;
- eq. 4: ``L_attr = -1/A Σ_v log p(y_v)`` (cross-entropy of the true class, averaged over the ``A``
  attributes and over the batch);
- eq. 5: the attribute hash bit is ``+1`` where "yes" wins (``z_v1 > z_v0``) and ``-1`` otherwise (the
  notes' reading; the extracted eq. 5 has the indices swapped, which only flips every bit and so leaves
  Hamming distances unchanged).

Attribute labels are ``0``/``1`` integers; a negative label means "not annotated" and is ignored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array


def _check_logits(fn: str, logits: Array) -> None:
    _checks.floating(fn, "logits", logits, 3)
    if logits.shape[-1] != 2:
        raise ValueError(f"jhash.losses.{fn}: argument 'logits' must have shape [B, A, 2] (two-way logits per "
                         f"attribute), got {tuple(logits.shape)}")


def binary_attribute_loss(logits: Array, labels: Array) -> Array:
    r"""Binary attribute cross-entropy, eqs. 3-4:

    .. math::

        \mathcal{L}_{attr} = -\frac{1}{|V|}\sum_{(n, v) \in V} \log p_{nv}(y_{nv}),\qquad p_{nv}(j) = \frac{e^{z_{nv,j}}}{e^{z_{nv,0}} + e^{z_{nv,1}}}

    over the annotated pairs ``V = {(n, v): y_nv >= 0}`` (every pair when all are annotated, which is the
    paper's ``1/30 Σ_v`` averaged over the batch).

    Args:
      logits: ``[B, A, 2]`` float two-way logits (``[..., 0]`` "no", ``[..., 1]`` "yes").
      labels: ``[B, A]`` int, ``1`` yes, ``0`` no, negative = not annotated (ignored).

    Returns:
      scalar float32 (0 when nothing is annotated).
    """
    fn = "binary_attribute_loss"
    _check_logits(fn, logits)
    _checks.integer(fn, "labels", labels, 2)
    _checks.shape(fn, "labels", labels, logits.shape[:2])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = labels >= 0
    y = jnp.clip(labels, 0, 1).astype(jnp.int32)
    nll = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    w = valid.astype(jnp.float32)
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)


def attribute_probabilities(logits: Array) -> Array:
    """``[B, A, 2]`` logits -> ``[B, A]`` float32 probability of "yes" (eq. 3, ``p(1)``)."""
    _check_logits("attribute_probabilities", logits)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1]


def attribute_codes(logits: Array, *, pad_to: int = 8) -> Array:
    """Attribute hash codes, eq. 5: ``int8 [B, A']`` with ``+1`` where "yes" wins (``z_1 > z_0``), else ``-1``.

    ``A'`` is ``A`` rounded up to a multiple of ``pad_to`` (8 by default, so the codes pack into bytes with
    :func:`jhash.search.pack_codes`); the padding bits are the constant ``-1`` in every code, so Hamming
    distances are those of the ``A`` real attribute bits. ``pad_to=1`` disables padding.
    """
    _check_logits("attribute_codes", logits)
    if pad_to < 1:
        raise ValueError(f"jhash.losses.attribute_codes: argument 'pad_to' must be >= 1, got {pad_to}")
    bits = jnp.where(logits[..., 1] > logits[..., 0], 1, -1).astype(jnp.int8)
    a = bits.shape[-1]
    padded = -(-a // pad_to) * pad_to
    if padded != a:
        bits = jnp.pad(bits, ((0, 0), (0, padded - a)), constant_values=-1)
    return bits
