"""Pairwise-label hashing losses: DVHN / DSDH pairwise likelihood and the quantisation term.

DVHN (Chen et al., arXiv 2112.04937) is implemented with the discrete supervised hashing objective of
DSDH (Li, Sun, He & Tan, NeurIPS 2017, eq. 5)::

    min_{B,W,θ}  L_sim(U) + μ Σ_i ‖y_i − Wᵀ b_i‖² + ν ‖W‖²_F + η Σ_i ‖b_i − u_i‖²

The network step minimises ``L_sim + η ‖B_batch − U_batch‖²`` (this module); the W- and B-steps are in
:mod:`jhash.discrete`. Pure, jit- and grad-compatible; shapes checked with chex at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array


def pairwise_likelihood_loss(
    codes: Array,
    labels: Array,
    other_codes: Array | None = None,
    other_labels: Array | None = None,
    *,
    include_diagonal: bool = False,
    reduction: str = "mean",
    theta: float = 0.5,
) -> Array:
    r"""Negative log-likelihood of the pairwise labels (DSDH eq. 2–3; DPSH, Li et al. IJCAI 2016, eq. 2).

    .. math::

        \Psi_{ij} = \theta\, u_i^\top u_j \;(\theta = \tfrac12 \text{ in the papers}),\qquad
        \mathcal{L}_{sim} = -\sum_{s_{ij} \in S} \big( s_{ij}\Psi_{ij} - \log(1 + e^{\Psi_{ij}}) \big),
        \qquad s_{ij} = [y_i = y_j]

    :math:`\log(1+e^\Psi)` is computed as ``softplus`` (stable for large :math:`|\Psi|`; with 2048-bit codes
    :math:`\Psi` reaches ±1024). ``reduction="mean"`` (default, as the DSDH reference code) averages over the
    pairs, ``"sum"`` sums them (the paper's form).

    Args:
      codes: ``[B, L]`` float relaxed codes :math:`u` (hash-layer outputs).
      labels: ``[B]`` int.
      other_codes, other_labels: optional second set ``[M, L]`` / ``[M]`` (e.g. the cached outputs of the
        training set); pairs are then ``codes × other_codes``. Default: the batch against itself.
      include_diagonal: with the batch against itself, whether the ``i = j`` pairs count (default no).
      theta: the scale of the inner product, ``> 0`` (``1/2`` in DPSH / DSDH; HashNet's ``α`` plays this role).

    Returns:
      scalar float32.
    """
    fn = "pairwise_likelihood_loss"
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
        raise ValueError(f"jhash.losses.{fn}: argument 'theta' must be a number > 0, got {theta!r}")
    _checks.floating(fn, "codes", codes, 2)
    _checks.integer(fn, "labels", labels, 1)
    _checks.same_leading(fn, ("codes", "labels"), (codes, labels))
    if reduction not in ("mean", "sum"):
        raise ValueError(f"jhash.losses.{fn}: argument 'reduction' must be 'mean' or 'sum', got {reduction!r}")
    self_pairs = other_codes is None
    if self_pairs:
        if other_labels is not None:
            raise ValueError(f"jhash.losses.{fn}: argument 'other_labels' given without 'other_codes'")
        other_codes, other_labels = codes, labels
    else:
        if other_labels is None:
            raise ValueError(f"jhash.losses.{fn}: argument 'other_codes' given without 'other_labels'")
        _checks.floating(fn, "other_codes", other_codes, 2)
        _checks.integer(fn, "other_labels", other_labels, 1)
        _checks.same_leading(fn, ("other_codes", "other_labels"), (other_codes, other_labels))
        _checks.same_leading(fn, ("codes", "other_codes"), (codes, other_codes), axis=1)
    u = codes.astype(jnp.float32)
    v = other_codes.astype(jnp.float32)
    psi = float(theta) * (u @ v.T)
    s = (labels[:, None] == other_labels[None, :]).astype(jnp.float32)
    nll = jax.nn.softplus(psi) - s * psi
    if self_pairs and not include_diagonal:
        weight = 1.0 - jnp.eye(u.shape[0], dtype=jnp.float32)
    else:
        weight = jnp.ones_like(nll)
    total = jnp.sum(nll * weight)
    if reduction == "sum":
        return total
    return total / jnp.maximum(jnp.sum(weight), 1.0)


def quantization_loss(codes: Array, binary: Array, *, reduction: str = "mean") -> Array:
    r"""Quantisation term :math:`\sum_i \|b_i - u_i\|^2` between relaxed and binary codes (DSDH eq. 5).

    ``reduction="mean"`` (default) averages over the batch (sum over bits, mean over samples), so the
    per-element gradient :math:`2(u - b)/B` does not depend on the code length; ``"sum"`` is the paper's sum.

    Args:
      codes: ``[B, L]`` float relaxed codes :math:`u`.
      binary: ``[B, L]`` target codes :math:`b \in \{-1, +1\}` (any numeric dtype, e.g. int8). No gradient
        flows into ``binary``.

    Returns:
      scalar float32.
    """
    fn = "quantization_loss"
    _checks.floating(fn, "codes", codes, 2)
    _checks.numeric(fn, "binary", binary, 2)
    _checks.same_shape(fn, ("codes", "binary"), (codes, binary))
    if reduction not in ("mean", "sum"):
        raise ValueError(f"jhash.losses.{fn}: argument 'reduction' must be 'mean' or 'sum', got {reduction!r}")
    b = jax.lax.stop_gradient(binary.astype(jnp.float32))
    per = jnp.sum(jnp.square(codes.astype(jnp.float32) - b), axis=-1)
    return jnp.sum(per) if reduction == "sum" else jnp.mean(per)
