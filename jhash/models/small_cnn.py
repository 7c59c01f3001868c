"""A small CNN for fast CPU runs (the demo backbone, and the default in tests).

``len(widths)`` blocks; block ``i`` is ``conv 3×3 stride 2 → BN → ReLU`` followed by ``convs_per_block - 1``
``conv 3×3 stride 1 → BN → ReLU``, so each block halves the resolution: a 128×64 input ends as an 8×4 map
with the default four blocks. Convolutions have no bias (BN follows), kaiming-normal fan-out init, BN as in
:mod:`jhash.models.resnet` (eps 1e-5, momentum 0.9).

``SmallCNN.__call__(x, train)`` returns ``{"feature_map": [B, H/2^n, W/2^n, widths[-1]], "features":
[B, widths[-1]] float32}`` plus ``"block{i}"`` for each block's output. Parameters:
``block{i}_conv{j}/kernel``, ``block{i}_bn{j}/{scale,bias}`` (batch statistics ``block{i}_bn{j}/{mean,var}``).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jhash.models.heads import GlobalPool
from jhash.models.resnet import batch_norm, conv

Array = jax.Array
Dtype = Any


class SmallCNN(nn.Module):
    """Attributes: ``widths`` (output channels per block, default ``(32, 64, 128, 256)``; the feature dim is
    ``widths[-1]``), ``convs_per_block`` (≥ 1, default 1: the fastest on CPU), ``pooling`` (``"avg"``/``"gem"``/``"max"``), ``dtype``."""

    widths: Sequence[int] = (32, 64, 128, 256)
    convs_per_block: int = 1
    pooling: str = "avg"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        if not self.widths or self.convs_per_block < 1:
            raise ValueError("SmallCNN needs at least one block and convs_per_block >= 1")
        chex.assert_rank(x, 4)
        out: dict[str, Array] = {}
        x = x.astype(self.dtype)
        for i, width in enumerate(self.widths):
            for j in range(self.convs_per_block):
                x = conv(width, 3, 2 if j == 0 else 1, 1, dtype=self.dtype, name=f"block{i}_conv{j}")(x)
                x = nn.relu(batch_norm(train, dtype=self.dtype, name=f"block{i}_bn{j}")(x))
            out[f"block{i}"] = x
        out["feature_map"] = x
        out["features"] = GlobalPool(self.pooling, name="pool")(x)
        return out


def small_cnn_feature_dim(widths: Sequence[int] = SmallCNN.widths, **_: Any) -> int:
    """Dimension of ``SmallCNN(widths=...)``'s ``"features"``."""
    return int(widths[-1])
