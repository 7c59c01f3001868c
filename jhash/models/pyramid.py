"""The CtF code pyramid: several hash codes of decreasing length from one feature, in a chain.

Wang et al., "Faster Person Re-Identification", ECCV 2020, eqs. 1-2::

    v_0 = F(x),   v_k = FC_k(v_{k-1}),   b_k = sgn(BN(v_k)),   k = 1..N

with the lengths ordered from long to short (default 2048 -> 512 -> 128 -> 32). Training relaxes ``sgn`` by
``tanh``; the method's ``encode`` takes ``sign(pre)`` (``pre = BN(v_k)``) at test time. Each shorter code is
computed from the longer one's real-valued vector, so the knowledge of the long code is shared by the short
ones; ``detach_inputs`` (the public implementation's choice) stops the gradient of each level's input so
a shorter code's losses do not reach the longer levels.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jhash.models.heads import BN_EPSILON, BN_MOMENTUM

Array = jax.Array


class PyramidLevel(NamedTuple):
    """One level of :class:`CodePyramid` (a pytree)."""

    v: Array  #: ``[B, l_k]`` real-valued vector ``FC_k(v_{k-1})`` (input of the next level), float32
    pre: Array  #: ``[B, l_k]`` ``BN(v_k)`` (or ``v_k`` without BN): the code is ``sign(pre)``, float32
    act: Array  #: ``[B, l_k]`` ``tanh(pre)``, the relaxed code used by the training losses, float32


def check_lengths(lengths: Sequence[int]) -> tuple[int, ...]:
    """Validated pyramid lengths: a non-empty sequence of positive ints, strictly decreasing."""
    try:
        out = tuple(int(x) for x in lengths)
    except (TypeError, ValueError):
        raise ValueError(f"lengths must be a sequence of positive ints (long to short), got {lengths!r}") from None
    if not out or min(out) <= 0:
        raise ValueError(f"lengths must be a non-empty sequence of positive ints, got {lengths!r}")
    if any(a <= b for a, b in zip(out, out[1:])):
        raise ValueError(f"lengths must be strictly decreasing (long to short, e.g. (2048, 512, 128, 32)), got {out}")
    return out


class CodePyramid(nn.Module):
    """``features [B, D] -> tuple[PyramidLevel, ...]``, one level per entry of ``lengths`` (long to short).

    Attributes:
      lengths: code lengths from long to short, e.g. ``(2048, 512, 128, 32)``.
      use_bn: BatchNorm on each ``v_k`` before the sign (eq. 2; keeps bits balanced).
      detach_inputs: stop the gradient of each level's input ``v_{k-1}`` (light-reid); the first level's
        input (the backbone feature) is never detached.
      dtype: computation dtype of the Dense layers (outputs are float32).

    Parameters: ``fc{k}/{kernel,bias}`` and ``bn{k}/{scale,bias}`` (batch statistics ``bn{k}/{mean,var}``)
    for ``k = 0..N-1``.
    """

    lengths: Sequence[int] = (2048, 512, 128, 32)
    use_bn: bool = True
    detach_inputs: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: Array, train: bool = False) -> tuple[PyramidLevel, ...]:
        chex.assert_rank(features, 2)
        lengths = check_lengths(self.lengths)
        levels = []
        x = features
        for k, length in enumerate(lengths):
            if k > 0 and self.detach_inputs:
                x = jax.lax.stop_gradient(x)
            v = nn.Dense(length, dtype=self.dtype, name=f"fc{k}")(x)
            pre = v
            if self.use_bn:
                pre = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=BN_MOMENTUM,
                    epsilon=BN_EPSILON,
                    dtype=self.dtype,
                    name=f"bn{k}",
                )(v)
            pre = pre.astype(jnp.float32)
            levels.append(PyramidLevel(v=v.astype(jnp.float32), pre=pre, act=jnp.tanh(pre)))
            x = v
        return tuple(levels)
