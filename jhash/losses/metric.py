"""Triplet losses on a batch: batch-hard (Hermans et al.), DRSCH's weighted ranking, DHMTL's constrained one.

All functions take a batch of ``B`` vectors ``[B, D]`` and integer labels ``[B]`` (a P×K batch has P
identities × K images each) and mine triplets ``(a, p, n)`` inside the batch: ``y_a = y_p``, ``a ≠ p``,
``y_a ≠ y_n``. Anchors without a valid positive or negative are ignored; a batch without any valid triplet
gives loss 0 (never NaN). Pure, jit- and grad-compatible; shapes checked with chex at trace time.

Mining (``mining=``):

- ``"all"``  — every valid triplet of the batch, averaged (DRSCH, DHMTL); ``O(B³)`` memory, fine for
  batches up to a few hundred.
- ``"hard"`` — batch-hard: per anchor the farthest positive and the nearest negative (Hermans et al.
  2017, eq. 5), averaged over anchors.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array

MININGS = ("all", "hard")


def pairwise_distances(x: Array, y: Array | None = None, squared: bool = False) -> Array:
    r"""Euclidean distance matrix :math:`D_{ij} = \|x_i - y_j\|` (or its square), ``[N, D], [M, D] -> [N, M]``.

    Computed as :math:`\|x\|^2 + \|y\|^2 - 2 x^\top y` clipped at 0; the square root has a finite gradient
    at 0 (the gradient there is taken as 0). ``y=None`` means ``y = x``, whose diagonal is exactly 0.
    """
    fn = "pairwise_distances"
    _checks.floating(fn, "x", x, 2)
    same = y is None
    y = x if same else y
    _checks.floating(fn, "y", y, 2)
    _checks.same_leading(fn, ("x", "y"), (x, y), axis=1)
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    d2 = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * (x @ y.T)
    d2 = jnp.maximum(d2, 0.0)
    if same:
        d2 = d2 * (1.0 - jnp.eye(x.shape[0], dtype=d2.dtype))
    if squared:
        return d2
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def triplet_masks(labels: Array) -> tuple[Array, Array]:
    """``(positive, negative)`` boolean ``[B, B]`` masks: ``y_a = y_p, a ≠ p`` and ``y_a ≠ y_n``."""
    _checks.integer("triplet_masks", "labels", labels, 1)
    same = labels[:, None] == labels[None, :]
    eye = jnp.eye(labels.shape[0], dtype=bool)
    return same & ~eye, ~same


def _hinge(x: Array, margin: float | Array | None, soft_margin: bool) -> Array:
    if soft_margin:
        return jax.nn.softplus(x)
    return jax.nn.relu(x + margin)


def _reduce_triplets(
    distances: Array, pos: Array, neg: Array, margin, soft_margin: bool, mining: str, reduction: str, fn: str
) -> Array:
    """The triplet loss from a ``[B, B]`` distance matrix and ``[B, B]`` positive / negative masks."""
    if mining not in MININGS:
        raise ValueError(f"jhash.losses.{fn}: argument 'mining' must be one of {MININGS}, got {mining!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"jhash.losses.{fn}: argument 'reduction' must be 'mean' or 'sum', got {reduction!r}")
    if mining == "hard":
        big = jnp.finfo(distances.dtype).max / 4
        hardest_pos = jnp.max(jnp.where(pos, distances, -big), axis=1)
        hardest_neg = jnp.min(jnp.where(neg, distances, big), axis=1)
        valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
        per = _hinge(jnp.where(valid, hardest_pos - hardest_neg, 0.0), margin, soft_margin)
    else:
        # [a, p, n]: d(a, p) - d(a, n)
        gap = distances[:, :, None] - distances[:, None, :]
        valid = pos[:, :, None] & neg[:, None, :]
        per = _hinge(jnp.where(valid, gap, 0.0), margin, soft_margin)
    per = jnp.where(valid, per, 0.0)
    total = jnp.sum(per)
    if reduction == "sum":
        return total
    return total / jnp.maximum(jnp.sum(valid), 1).astype(per.dtype)


def batch_hard_triplet_loss_from_distances(
    distances: Array,
    labels: Array,
    margin: float | Array = 0.3,
    *,
    soft_margin: bool = False,
    mining: str = "hard",
    reduction: str = "mean",
) -> Array:
    r"""Triplet loss on a given ``[B, B]`` distance matrix (e.g. a relaxed Hamming distance).

    See :func:`batch_hard_triplet_loss`; ``distances[i, j]`` is the distance of sample ``i`` to ``j``.
    """
    fn = "batch_hard_triplet_loss_from_distances"
    _checks.floating(fn, "distances", distances, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.shape(fn, "distances", distances, (labels.shape[0], labels.shape[0]))
    _checks.non_negative(fn, "margin", margin if not soft_margin else None)
    pos, neg = triplet_masks(labels)
    return _reduce_triplets(distances.astype(jnp.float32), pos, neg, margin, soft_margin, mining, reduction, fn)


def batch_hard_triplet_loss(
    embeddings: Array,
    labels: Array,
    margin: float | Array = 0.3,
    *,
    soft_margin: bool = False,
    squared: bool = False,
    mining: str = "hard",
    reduction: str = "mean",
) -> Array:
    r"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss", eq. 5).

    .. math::

        \mathcal{L}_{BH} = \frac{1}{|A|}\sum_{a \in A}
          \Big[\, m + \max_{p:\, y_p = y_a,\, p \ne a} D_{ap} - \min_{n:\, y_n \ne y_a} D_{an} \Big]_+

    with :math:`D` the Euclidean distance (``squared=True``: its square) and :math:`A` the anchors that have a
    positive and a negative in the batch. ``soft_margin=True`` replaces :math:`[m + x]_+` by
    :math:`\log(1 + e^{x})` (their eq. 6; ``margin`` is then unused). ``mining="all"`` averages over every
    valid triplet instead of the hardest ones ("batch-all", their eq. 4).

    Args:
      embeddings: ``[B, D]`` float.
      labels: ``[B]`` int identity / class of each row.
      margin: :math:`m \ge 0` (CtF / BoT use 0.3).

    Returns:
      scalar float32 (0 if the batch has no valid triplet).
    """
    fn = "batch_hard_triplet_loss"
    _checks.floating(fn, "embeddings", embeddings, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.same_leading(fn, ("embeddings", "labels"), (embeddings, labels))
    _checks.non_negative(fn, "margin", margin if not soft_margin else None)
    d = pairwise_distances(embeddings, squared=squared)
    pos, neg = triplet_masks(labels)
    return _reduce_triplets(d, pos, neg, margin, soft_margin, mining, reduction, fn)


def weighted_hamming_distances(codes: Array, bit_weights: Array | None = None) -> Array:
    r"""DRSCH's relaxed weighted Hamming distance matrix :math:`D_{ij} = \sum_k w_k^2 (h_{ik} - h_{jk})^2`.

    For binary ``h ∈ {0,1}`` this is exactly the weighted Hamming distance :math:`\sum_k w_k^2 [h_{ik} \ne
    h_{jk}]`; for sigmoid outputs in ``(0, 1)`` it is its relaxation. ``codes [B, L]`` float, optional
    ``bit_weights [L]`` (``None``: the weights are already multiplied into ``codes``). Returns ``[B, B]``.
    """
    fn = "weighted_hamming_distances"
    _checks.floating(fn, "codes", codes, 2)
    if bit_weights is not None:
        _checks.floating(fn, "bit_weights", bit_weights, 1)
        _checks.shape(fn, "bit_weights", bit_weights, (codes.shape[1],))
        codes = codes * bit_weights[None, :]
    return pairwise_distances(codes, squared=True)


def weighted_triplet_ranking_loss(
    codes: Array,
    labels: Array,
    margin: float | Array,
    bit_weights: Array | None = None,
    *,
    mining: str = "all",
    reduction: str = "mean",
) -> Array:
    r"""DRSCH / DSCH triplet ranking loss in the weighted relaxed Hamming space (Zhang et al., TIP 2015).

    .. math::

        \mathcal{L} = \frac{1}{|T|}\sum_{(a,p,n) \in T}
          \max\big(0,\ \|h_a - h_p\|^2 - \|h_a - h_n\|^2 + m\big),\qquad h = w \odot \sigma(z)

    where :math:`T` is the set of valid triplets of the batch (``mining="all"``, the paper's triplet
    organisation) or one batch-hard triplet per anchor (``mining="hard"``), and :math:`\|\cdot\|^2` the
    relaxed weighted Hamming distance of :func:`weighted_hamming_distances`. The margin is in units of that
    distance (bits, when ``w = 1``); grow it during training by passing a traced scalar.

    Args:
      codes: ``[B, L]`` float — the weighted relaxed codes :math:`h` (or :math:`\sigma(z)` with ``bit_weights``).
      labels: ``[B]`` int.
      margin: :math:`m \ge 0`, Python float or scalar array.
      bit_weights: optional ``[L]`` float :math:`w`, multiplied into ``codes`` first.

    Returns:
      scalar float32.
    """
    fn = "weighted_triplet_ranking_loss"
    _checks.floating(fn, "codes", codes, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.same_leading(fn, ("codes", "labels"), (codes, labels))
    _checks.non_negative(fn, "margin", margin)
    d = weighted_hamming_distances(codes, bit_weights)
    pos, neg = triplet_masks(labels)
    return _reduce_triplets(d, pos, neg, margin, False, mining, reduction, fn)


def constrained_negative_masks(labels: Array, groups: Sequence[Array]) -> tuple[Array, Array]:
    """``(positive, negative)`` masks where an anchor's negatives are restricted to different-label samples
    that agree with it on every array of ``groups`` (e.g. vehicle model and colour) — when the batch has at
    least one such sample for that anchor; otherwise all different-label samples stay negatives."""
    pos, neg = triplet_masks(labels)
    agree = jnp.ones_like(neg)
    for g in groups:
        agree = agree & (g[:, None] == g[None, :])
    constrained = neg & agree
    has = jnp.any(constrained, axis=1, keepdims=True)
    return pos, jnp.where(has, constrained, neg)


def constrained_triplet_loss(
    embeddings: Array,
    labels: Array,
    groups: Sequence[Array] = (),
    margin: float | Array = 0.2,
    *,
    normalize: bool = True,
    mining: str = "all",
    reduction: str = "mean",
) -> Array:
    r"""DHMTL's triplet ranking baseline (Liang et al. §4.2, after Wang et al. 2014 "deep ranking").

    .. math::

        \mathcal{L} = \frac{1}{|T|}\sum_{(a,p,n)\in T} \max\big(0,\ m + \|\hat h_a - \hat h_p\|^2
            - \|\hat h_a - \hat h_n\|^2\big),\qquad \hat h = h / \|h\|_2

    Positives share the anchor's label; negatives have a different label **and the same value in every array
    of** ``groups`` (vehicle model and colour) when the batch holds such a sample for that anchor, otherwise
    any different label. With ``groups=()`` this is the plain batch-all triplet loss on normalised vectors.

    Args:
      embeddings: ``[B, D]`` float hash-layer outputs (L2-normalised inside when ``normalize``).
      labels: ``[B]`` int identity.
      groups: sequence of ``[B]`` int arrays (e.g. ``(model, color)``) constraining the negatives.
      margin: :math:`m \ge 0` in squared distance of unit vectors (range [0, 4]).

    Returns:
      scalar float32.
    """
    fn = "constrained_triplet_loss"
    _checks.floating(fn, "embeddings", embeddings, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.same_leading(fn, ("embeddings", "labels"), (embeddings, labels))
    for i, g in enumerate(groups):
        _checks.integer(fn, f"groups[{i}]", g, 1)
        _checks.same_leading(fn, ("labels", f"groups[{i}]"), (labels, g))
    _checks.non_negative(fn, "margin", margin)
    x = embeddings.astype(jnp.float32)
    if normalize:
        x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
    d = pairwise_distances(x, squared=True)
    pos, neg = constrained_negative_masks(labels, groups)
    return _reduce_triplets(d, pos, neg, margin, False, mining, reduction, fn)
