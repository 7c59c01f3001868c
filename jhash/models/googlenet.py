"""GoogLeNet / Inception-v1 in Flax Linen (NHWC), in torchvision's layout, with its two auxiliary heads.

Layout choice: torchvision's ``googlenet`` — every convolution is ``BasicConv2d`` (conv without bias →
BatchNorm eps 1e-3 → ReLU), max-pools use ``ceil_mode=True``, and the third Inception branch uses a 3×3
convolution (torchvision's known deviation from the paper's 5×5, kept for weight compatibility; set
``branch3_kernel=5`` for the paper's). BN rather than the original's LRN makes from-scratch training (DHMTL)
stable. Conversion of torchvision weights: :func:`jhash.models.convert.convert_torchvision_googlenet`.
torchvision's ``transform_input`` (re-normalisation for the TF-ported weights) is not applied here: feed
images normalised with the ImageNet mean/std.

Backbone parameters without ``fc`` and without the aux heads: 5,599,904 (torchvision's 6,624,904 minus the
1000-way ``fc``).

``GoogLeNet.__call__(x, train)`` returns a dict:

- ``"feature_map"``: ``inception5b`` output ``[B, H/32, W/32, 1024]`` (computation dtype);
- ``"features"``: its global pooling ``[B, 1024]`` float32 (the 1024-d "pool5" vector; dropout and the
  classifier belong to the method's head);
- ``"aux1_logits"`` / ``"aux2_logits"``: ``[B, aux_num_classes[i]]`` float32, **only when** ``train`` and
  ``aux_num_classes`` is set. The aux heads sit after ``inception4a`` (512 ch) and ``inception4d`` (528 ch):
  adaptive average pool to 4×4 → ``BasicConv2d(128, 1×1)`` → ``fc1`` 2048→1024 → ReLU → dropout
  (``aux_dropout``, rng ``"dropout"``) → ``fc2`` → logits. Each aux head has its own number of classes
  (DHMTL supervises them with vehicle-model labels). Their parameters are created at ``init`` whatever
  ``train`` is, so ``init(..., train=False)`` followed by ``apply(..., train=True)`` works.

Input size: anything ≥ 32×32 (224×224 as ImageNet; the aux pools adapt to any map size).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jhash.models.heads import BN_MOMENTUM, GlobalPool

Array = jax.Array
Dtype = Any

GOOGLENET_BN_EPSILON = 1e-3

#: torchvision initialises GoogLeNet's convolutions and linears with ``trunc_normal_(std=0.01)``.
googlenet_init = nn.initializers.truncated_normal(0.01)

#: (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) as torchvision, in order; ``None`` = max-pool.
INCEPTION_CONFIG: tuple[Any, ...] = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    ("maxpool3", 3),
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    ("maxpool4", 2),
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)


def max_pool_ceil(x: Array, window: int, stride: int, padding: int = 0) -> Array:
    """PyTorch ``max_pool2d(..., ceil_mode=True)`` on NHWC: output size
    ``ceil((n + 2p - k) / s) + 1``, minus one when the last window would start in the right padding."""
    pads = []
    for n in x.shape[1:3]:
        out = math.ceil((n + 2 * padding - window) / stride) + 1
        if (out - 1) * stride >= n + padding:
            out -= 1
        pads.append((padding, (out - 1) * stride + window - n - padding))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


def adaptive_avg_pool(x: Array, size: tuple[int, int]) -> Array:
    """PyTorch ``adaptive_avg_pool2d`` on NHWC: bin ``i`` of ``n`` → ``[floor(i·n/s), ceil((i+1)·n/s))``."""

    def bins(n: int, s: int) -> list[tuple[int, int]]:
        return [((i * n) // s, -((-(i + 1) * n) // s)) for i in range(s)]

    rows = []
    for h0, h1 in bins(x.shape[1], size[0]):
        cols = [jnp.mean(x[:, h0:h1, w0:w1, :], axis=(1, 2)) for w0, w1 in bins(x.shape[2], size[1])]
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)


class BasicConv2d(nn.Module):
    """torchvision's ``BasicConv2d``: ``conv`` (no bias) → ``bn`` (eps 1e-3) → ReLU."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        p = self.padding
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding=((p, p), (p, p)),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=googlenet_init,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=GOOGLENET_BN_EPSILON,
            dtype=self.dtype,
            name="bn",
        )(x)
        return nn.relu(x)


class Inception(nn.Module):
    """Four branches concatenated on channels: 1×1 | 1×1→3×3 | 1×1→k×k | max-pool 3×3/1→1×1.

    Children ``branch1``, ``branch2_0``, ``branch2_1``, ``branch3_0``, ``branch3_1``, ``branch4_1``
    (torchvision's ``branch2.0`` etc.; ``branch4.0`` is the pool).
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    branch3_kernel: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        d, k = self.dtype, self.branch3_kernel
        b1 = BasicConv2d(self.ch1x1, 1, dtype=d, name="branch1")(x, train)
        b2 = BasicConv2d(self.ch3x3red, 1, dtype=d, name="branch2_0")(x, train)
        b2 = BasicConv2d(self.ch3x3, 3, padding=1, dtype=d, name="branch2_1")(b2, train)
        b3 = BasicConv2d(self.ch5x5red, 1, dtype=d, name="branch3_0")(x, train)
        b3 = BasicConv2d(self.ch5x5, k, padding=k // 2, dtype=d, name="branch3_1")(b3, train)
        b4 = max_pool_ceil(x, 3, 1, 1)
        b4 = BasicConv2d(self.pool_proj, 1, dtype=d, name="branch4_1")(b4, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: adaptive avg-pool 4×4 → ``conv`` 1×1 128 → ``fc1`` 1024 → ReLU → dropout → ``fc2``.

    The flatten follows torchvision's NCHW order (channel-major), so converted ``fc1`` weights apply as is.
    """

    num_classes: int
    dropout: float = 0.7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = adaptive_avg_pool(x, (4, 4))
        x = BasicConv2d(128, 1, dtype=self.dtype, name="conv")(x, train)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch.flatten of NCHW
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, kernel_init=googlenet_init, name="fc1")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=googlenet_init, name="fc2")(x)
        return x.astype(jnp.float32)


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet without ``fc``; optional aux heads (see the module docstring).

    Attributes:
      aux_num_classes: ``None`` (no aux heads) or ``(classes_of_aux1, classes_of_aux2)``.
      aux_dropout: dropout rate inside the aux heads (0.7 as torchvision; needs the ``"dropout"`` rng in
        training when > 0).
      branch3_kernel: 3 (torchvision) or 5 (the paper).
      pooling: ``"avg"``, ``"gem"`` or ``"max"`` for ``"features"``.
      dtype: computation dtype; parameters stay float32.
    """

    aux_num_classes: Sequence[int] | None = None
    aux_dropout: float = 0.7
    branch3_kernel: int = 3
    pooling: str = "avg"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        chex.assert_rank(x, 4)
        d = self.dtype
        if self.aux_num_classes is not None and len(self.aux_num_classes) != 2:
            raise ValueError(f"aux_num_classes must be None or two ints, got {self.aux_num_classes!r}")
        run_aux = self.aux_num_classes is not None and (train or self.is_initializing())
        out: dict[str, Array] = {}
        x = BasicConv2d(64, 7, 2, 3, dtype=d, name="conv1")(x.astype(d), train)
        x = max_pool_ceil(x, 3, 2)
        x = BasicConv2d(64, 1, dtype=d, name="conv2")(x, train)
        x = BasicConv2d(192, 3, padding=1, dtype=d, name="conv3")(x, train)
        x = max_pool_ceil(x, 3, 2)
        for name, *cfg in INCEPTION_CONFIG:
            if name.startswith("maxpool"):
                x = max_pool_ceil(x, cfg[0], 2)
                continue
            x = Inception(*cfg, branch3_kernel=self.branch3_kernel, dtype=d, name=name)(x, train)
            aux = {"inception4a": 0, "inception4d": 1}.get(name)
            if run_aux and aux is not None:
                head = InceptionAux(self.aux_num_classes[aux], self.aux_dropout, dtype=d, name=f"aux{aux + 1}")
                logits = head(x, train)
                if train:
                    out[f"aux{aux + 1}_logits"] = logits
        out["feature_map"] = x
        out["features"] = GlobalPool(self.pooling, name="pool")(x)
        return out


GOOGLENET_FEATURE_DIM = 1024
