"""Attribute-guided attention block, AAB (Jin et al. 2021, §5.2, eqs. 8-10; ``docs/methods.md`` §5).

On a feature map ``F_in [B, H, W, C]`` (NHWC; ``X = H·W`` positions, ``c = C / r`` reduced channels):

- **Spatial block (SAAB)**: three 1×1 convolutions give ``F^S1, F^S2, F^S3 [B, X, c]``; the relation map
  ``R^S = softmax_j(F^S1_i · F^S2_j) [B, X, X]`` (eq. 8, softmax over ``j``); the aggregated feature
  ``A^S_i = Σ_j R^S_ij F^S3_j`` is reshaped to ``[B, H, W, c]`` and raised back to ``C`` by a 1×1
  convolution: ``F^S_out``.
- **Channel block (CAAB)**: three 1×1 convolutions give ``F^C1, F^C2, F^C3 [B, X, c]``; with ``f_n`` the
  ``n``-th channel (an ``X``-vector), ``R^C = softmax_m(f^C2_n · f^C1_m) [B, c, c]`` (eq. 9); the
  aggregated channel ``n`` is ``Σ_m R^C_nm f^C3_m``, raised back to ``C`` by a 1×1 convolution: ``F^C_out``.
- eq. 10: ``F_ref = (F^S_out + F^C_out) ⊙ F_in + F_in``.

The two raising convolutions are zero-initialised by default (``zero_init=True``), so a fresh block is the
identity (``F_ref = F_in``) and a pretrained backbone is not disturbed at the start of training; their
gradients are not zero, so the attention is learned from the first step. Relations and softmaxes are computed
in float32 whatever the computation ``dtype``.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any


def aab_combine(f_in: Array, f_spatial: Array, f_channel: Array) -> Array:
    """AAB eq. 10: ``(F^S_out + F^C_out) ⊙ F_in + F_in`` (all ``[B, H, W, C]``)."""
    chex.assert_equal_shape((f_in, f_spatial, f_channel))
    return (f_spatial + f_channel) * f_in + f_in


def spatial_relation(f1: Array, f2: Array) -> Array:
    """Eq. 8: ``R^S [B, X, X]`` with ``R^S_ij = softmax_j(f1_i · f2_j)`` for ``f1, f2 [B, X, c]`` (float32)."""
    chex.assert_rank((f1, f2), 3)
    logits = jnp.einsum("bic,bjc->bij", f1.astype(jnp.float32), f2.astype(jnp.float32))
    return jax.nn.softmax(logits, axis=-1)


def channel_relation(f1: Array, f2: Array) -> Array:
    """Eq. 9: ``R^C [B, c, c]`` with ``R^C_nm = softmax_m(f2_n · f1_m)`` over channels (``f [B, X, c]``)."""
    chex.assert_rank((f1, f2), 3)
    logits = jnp.einsum("bxn,bxm->bnm", f2.astype(jnp.float32), f1.astype(jnp.float32))
    return jax.nn.softmax(logits, axis=-1)


class AttributeGuidedAttention(nn.Module):
    """AAB: ``[B, H, W, C] -> [B, H, W, C]`` refined map (module docstring).

    Attributes:
      reduction: ``r``, reduced channels ``c = max(C // r, 1)`` (the paper: 8).
      zero_init: zero-initialise the two raising 1×1 convolutions (identity at initialisation).
      dtype: computation dtype of the convolutions.

    Parameters: ``s1, s2, s3, s_out`` (spatial) and ``c1, c2, c3, c_out`` (channel), each a 1×1 ``Conv``
    with bias. ``return_maps=True`` in ``__call__`` also returns ``{"spatial": R^S, "channel": R^C}``.
    """

    reduction: int = 8
    zero_init: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, return_maps: bool = False):
        chex.assert_rank(x, 4)
        if self.reduction < 1:
            raise ValueError(f"AttributeGuidedAttention.reduction must be >= 1, got {self.reduction}")
        b, h, w, ch = x.shape
        c = max(ch // self.reduction, 1)
        x = x.astype(self.dtype)

        def conv(features: int, name: str, zero: bool = False) -> nn.Conv:
            init = nn.initializers.zeros if zero else nn.initializers.lecun_normal()
            return nn.Conv(features, (1, 1), dtype=self.dtype, kernel_init=init, name=name)

        flat = lambda t: t.reshape(b, h * w, c)  # noqa: E731
        s1, s2, s3 = (flat(conv(c, f"s{i}")(x)) for i in (1, 2, 3))
        r_s = spatial_relation(s1, s2)
        agg_s = jnp.einsum("bij,bjc->bic", r_s, s3.astype(jnp.float32)).reshape(b, h, w, c)
        f_s = conv(ch, "s_out", self.zero_init)(agg_s.astype(self.dtype))

        c1, c2, c3 = (flat(conv(c, f"c{i}")(x)) for i in (1, 2, 3))
        r_c = channel_relation(c1, c2)
        agg_c = jnp.einsum("bnm,bxm->bxn", r_c, c3.astype(jnp.float32)).reshape(b, h, w, c)
        f_c = conv(ch, "c_out", self.zero_init)(agg_c.astype(self.dtype))

        out = aab_combine(x, f_s, f_c)
        if return_maps:
            return out, {"spatial": r_s, "channel": r_c}
        return out
