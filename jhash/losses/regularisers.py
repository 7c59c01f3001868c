"""Regularisers on a batch of codes: DRSCH's adjacency-consistency (graph Laplacian) term.

Pure, jit- and grad-compatible; shapes checked with chex at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array


def label_adjacency(labels: Array, include_self: bool = False) -> Array:
    """``[B] int -> [B, B] float32`` similarity graph ``A_ij = [y_i = y_j]`` (zero diagonal by default)."""
    _checks.integer("label_adjacency", "labels", labels, 1)
    a = (labels[:, None] == labels[None, :]).astype(jnp.float32)
    if not include_self:
        a = a * (1.0 - jnp.eye(labels.shape[0], dtype=jnp.float32))
    return a


def graph_laplacian(adjacency: Array, normalized: bool = False) -> Array:
    r"""Graph Laplacian :math:`L = D - A` of a symmetric ``[B, B]`` adjacency (``normalized``:
    :math:`I - D^{-1/2} A D^{-1/2}`, isolated nodes get a zero row)."""
    fn = "graph_laplacian"
    _checks.floating(fn, "adjacency", adjacency, 2)
    _checks.shape(fn, "adjacency", adjacency, (adjacency.shape[0], adjacency.shape[0]))
    a = adjacency.astype(jnp.float32)
    deg = jnp.sum(a, axis=1)
    if not normalized:
        return jnp.diag(deg) - a
    inv = jnp.where(deg > 0, jax.lax.rsqrt(jnp.where(deg > 0, deg, 1.0)), 0.0)
    return jnp.diag((deg > 0).astype(jnp.float32)) - inv[:, None] * a * inv[None, :]


def laplacian_regularizer(
    codes: Array,
    labels: Array | None = None,
    adjacency: Array | None = None,
    *,
    normalized: bool = False,
    reduction: str = "sum",
) -> Array:
    r"""DRSCH adjacency-consistency regulariser :math:`\mathrm{tr}(H L H^\top)` (Zhang et al., TIP 2015).

    With :math:`H \in \mathbb{R}^{L \times B}` the batch's codes as columns and :math:`L = D - A` the
    Laplacian of the in-batch similarity graph :math:`A`,

    .. math:: \mathrm{tr}(H L H^\top) = \tfrac12 \sum_{i,j} A_{ij}\, \|h_i - h_j\|^2

    so similar images (same label, or an appearance-similarity graph) are pulled to similar codes. DRSCH
    weights it by :math:`\beta = 10^{-3}`; DSCH drops it.

    Args:
      codes: ``[B, L]`` float (rows are samples, i.e. :math:`H^\top`).
      labels: ``[B]`` int — builds :math:`A_{ij} = [y_i = y_j], i \ne j` (:func:`label_adjacency`), or
      adjacency: ``[B, B]`` float symmetric affinity given directly (exactly one of the two).
      normalized: use the normalised Laplacian :math:`I - D^{-1/2} A D^{-1/2}`.
      reduction: ``"sum"`` (the trace itself, the paper's form) or ``"mean"`` (divided by ``B``).

    Returns:
      scalar float32.
    """
    fn = "laplacian_regularizer"
    _checks.floating(fn, "codes", codes, 2)
    if (labels is None) == (adjacency is None):
        raise ValueError(f"jhash.losses.{fn}: give exactly one of the arguments 'labels' and 'adjacency'")
    if labels is not None:
        _checks.integer(fn, "labels", labels, 1)
        _checks.same_leading(fn, ("codes", "labels"), (codes, labels))
        adjacency = label_adjacency(labels)
    else:
        _checks.floating(fn, "adjacency", adjacency, 2)
        _checks.shape(fn, "adjacency", adjacency, (codes.shape[0], codes.shape[0]))
    if reduction not in ("mean", "sum"):
        raise ValueError(f"jhash.losses.{fn}: argument 'reduction' must be 'mean' or 'sum', got {reduction!r}")
    h = codes.astype(jnp.float32)
    lap = graph_laplacian(adjacency, normalized=normalized)
    value = jnp.sum(h * (lap @ h))  # tr(Hᵀ_rows L H_rows) = tr(H L Hᵀ)
    return value if reduction == "sum" else value / h.shape[0]

