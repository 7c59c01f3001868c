"""Pooling, BNNeck and hash heads shared by every method.

All modules are Flax Linen, NHWC, used through ``init``/``apply``. ``dtype`` is the computation dtype
(e.g. ``jnp.bfloat16``); parameters are always float32. Pooled vectors are returned in float32 (the
reduction is accumulated in float32 whatever ``dtype`` is), so losses downstream see float32 features.

- :func:`global_avg_pool`, :func:`global_max_pool`, :class:`GeM` and :class:`GlobalPool` (pooling by name)
  turn a feature map ``[B, H, W, C]`` into a vector ``[B, C]``.
- :class:`BNNeck` (Luo et al., "Bag of Tricks", BoT): BatchNorm without a bias shift after pooling;
  the vector before BN feeds the triplet loss, the one after BN feeds the (bias-free) ID classifier.
- :class:`HashLayer`: ``Dense -> optional BN -> activation``, returning both the pre-activation and the
  activated (relaxed) codes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

#: BatchNorm settings matching PyTorch's defaults (torch momentum 0.1 == flax momentum 0.9).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

POOLINGS = ("avg", "gem", "max")


def global_avg_pool(x: Array) -> Array:
    """``[B, H, W, C] -> [B, C]`` mean over the spatial axes, accumulated and returned in float32."""
    chex.assert_rank(x, 4)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def global_max_pool(x: Array) -> Array:
    """``[B, H, W, C] -> [B, C]`` max over the spatial axes, returned in float32."""
    chex.assert_rank(x, 4)
    return jnp.max(x, axis=(1, 2)).astype(jnp.float32)


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al. 2018): ``(mean(clamp(x, eps)^p))^(1/p)`` per channel.

    ``p`` is a learnable scalar parameter (named ``p``, shape ``(1,)``) initialised to ``p_init``; with
    ``learnable=False`` it is the constant ``p_init``. ``p = 1`` is average pooling (of ``max(x, eps)``),
    ``p -> inf`` approaches max pooling. The input is expected non-negative (after a ReLU).
    Computed in float32 for stability.
    """

    p_init: float = 3.0
    eps: float = 1e-6
    learnable: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        chex.assert_rank(x, 4)
        if self.learnable:
            p = self.param("p", nn.initializers.constant(self.p_init), (1,), jnp.float32)
        else:
            p = jnp.full((1,), self.p_init, jnp.float32)
        x = jnp.maximum(x.astype(jnp.float32), self.eps)
        return jnp.mean(x**p, axis=(1, 2)) ** (1.0 / p)


class GlobalPool(nn.Module):
    """Global pooling chosen by name: ``"avg"`` (default), ``"gem"`` (learnable p) or ``"max"``.

    ``[B, H, W, C] -> [B, C]`` float32. With ``"gem"`` the parameter lives in this module's ``gem``
    child (``.../gem/p``).
    """

    kind: str = "avg"
    gem_p: float = 3.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.kind == "avg":
            return global_avg_pool(x)
        if self.kind == "max":
            return global_max_pool(x)
        if self.kind == "gem":
            return GeM(p_init=self.gem_p, name="gem")(x)
        raise ValueError(f"unknown pooling {self.kind!r}; valid: {', '.join(POOLINGS)}")


class BNNeck(nn.Module):
    """BoT's BNNeck: ``BatchNorm`` without a bias (no shift), optionally followed by a bias-free classifier.

    Returns a dict:

    - ``"features"``: the input ``[B, D]`` unchanged (use it for the triplet / metric losses);
    - ``"bn_features"``: after BN ``[B, D]`` (use it for the ID classifier and, in BoT, at test time);
    - ``"logits"``: ``[B, num_classes]`` from ``Dense(num_classes, use_bias=False)`` on ``bn_features``,
      only when ``num_classes`` is set. The classifier is initialised with ``normal(0.001)`` as in BoT.

    Parameters: ``bn/scale`` (no ``bn/bias``), batch statistics ``bn/mean``, ``bn/var``; ``classifier/kernel``.
    """

    num_classes: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        chex.assert_rank(x, 2)
        bn = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            use_bias=False,
            dtype=self.dtype,
            name="bn",
        )(x)
        out = {"features": x, "bn_features": bn}
        if self.num_classes is not None:
            out["logits"] = nn.Dense(
                self.num_classes,
                use_bias=False,
                dtype=self.dtype,
                kernel_init=nn.initializers.normal(0.001),
                name="classifier",
            )(bn).astype(jnp.float32)
        return out


HASH_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "none": lambda h: h,
}


class HashOutput(NamedTuple):
    """What :class:`HashLayer` returns (a pytree; unpack as ``pre, act = layer(...)``)."""

    pre: Array  #: ``[B, bits]`` pre-activation (after the optional BN), float32
    act: Array  #: ``[B, bits]`` activation applied to ``pre`` (the relaxed code), float32


class HashLayer(nn.Module):
    """``Dense(bits) -> optional BatchNorm -> activation``; returns :class:`HashOutput` ``(pre, act)``.

    ``activation``: ``"tanh"`` (codes ``sign(pre)``), ``"sigmoid"`` (codes ``act > 0.5``), ``"relu"``
    (DHMTL: codes ``act > 0``) or ``"none"`` (``act == pre``). The binarisation rule itself belongs to the
    method's ``encode``. Parameters: ``dense/{kernel,bias}``, and with ``use_bn`` ``bn/{scale,bias}`` plus
    batch statistics ``bn/{mean,var}``. ``train`` only matters when ``use_bn``.
    """

    bits: int
    activation: str = "tanh"
    use_bn: bool = False
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> HashOutput:
        chex.assert_rank(x, 2)
        if self.activation not in HASH_ACTIVATIONS:
            raise ValueError(
                f"unknown hash activation {self.activation!r}; valid: {', '.join(HASH_ACTIVATIONS)}"
            )
        h = nn.Dense(
            self.bits,
            use_bias=self.use_bias,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            name="dense",
        )(x)
        if self.use_bn:
            h = nn.BatchNorm(
                use_running_average=not train,
                momentum=BN_MOMENTUM,
                epsilon=BN_EPSILON,
                dtype=self.dtype,
                name="bn",
            )(h)
        h = h.astype(jnp.float32)
        return HashOutput(pre=h, act=HASH_ACTIVATIONS[self.activation](h))
