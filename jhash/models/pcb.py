"""PCB global-local descriptors and the two-branch (teacher / student) network of SSR.

Part-based Convolutional Baseline (Sun et al., ECCV 2018) as used by Jin et al. 2021 (§4.1, Fig. 1;
``docs/methods.md`` §5):

- the last feature map ``[B, H, W, C]`` is cut into ``parts`` (6) horizontal stripes, each average-pooled
  (:func:`stripe_pool`, torch's ``adaptive_avg_pool2d((parts, 1))`` bins, so any ``H >= 1`` works);
- the global vector is the average pooling of the map refined by the attribute-guided attention block
  (:class:`jhash.models.attention.AttributeGuidedAttention`, optional);
- a 1×1 reduction (a ``Dense`` on the pooled vector) per stripe and one for the global vector, optionally
  followed by BatchNorm, give the real descriptors ``s_L1..s_L6, s_G``. With :func:`split_bits` the code
  splits as ``6 × 256 + 512 = 2048``, ``6 × 64 + 128 = 512``, ``6 × 16 + 32 = 128`` (global = 2 × local).

:class:`TwoBranchPCB` runs a shared trunk once (ResNet ``stem..layer2``) and two independent copies of the
remaining layers (``layer3 + layer4``): the teacher and the student branch, each with its own
:class:`PCBHead`. :func:`two_branch_backbones` builds the three parts from a backbone name (ResNet of any
depth, or ``small_cnn`` whose blocks are split in two for fast CPU runs).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jhash.models.attention import AttributeGuidedAttention
from jhash.models.heads import BN_EPSILON, BN_MOMENTUM, global_avg_pool
from jhash.models.registry import get_backbone

Array = jax.Array
Dtype = Any


def stripe_bounds(height: int, parts: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of ``parts`` horizontal stripes of a map of ``height`` rows, as torch's
    adaptive average pooling: ``start = floor(i·H/p)``, ``end = ceil((i+1)·H/p)`` (stripes overlap when
    ``H`` is not a multiple of ``p``; every stripe is non-empty)."""
    if height < 1 or parts < 1:
        raise ValueError(f"stripe_bounds needs height >= 1 and parts >= 1, got height={height}, parts={parts}")
    return [((i * height) // parts, -((-(i + 1) * height) // parts)) for i in range(parts)]


def stripe_pool(x: Array, parts: int = 6) -> Array:
    """``[B, H, W, C] -> [B, parts, C]`` float32: the mean of each horizontal stripe (:func:`stripe_bounds`)."""
    chex.assert_rank(x, 4)
    x = x.astype(jnp.float32)
    return jnp.stack([jnp.mean(x[:, s:e], axis=(1, 2)) for s, e in stripe_bounds(x.shape[1], parts)], axis=1)


def split_bits(total_bits: int, parts: int = 6) -> tuple[int, int]:
    """``(local_bits, global_bits)`` with ``parts·local + global = total`` and ``global = 2·local``
    (the paper's 2048 -> (256, 512), 512 -> (64, 128), 128 -> (16, 32))."""
    if parts < 1 or total_bits < 1 or total_bits % (parts + 2):
        raise ValueError(f"total bits ({total_bits}) must be a positive multiple of parts + 2 = {parts + 2} "
                         f"(local = total / (parts + 2), global = 2 · local)")
    local = total_bits // (parts + 2)
    return local, 2 * local


class PCBHead(nn.Module):
    """Feature map ``[B, H, W, C]`` -> ``{"local": [B, parts, local_bits], "global": [B, global_bits],
    "global_feature": [B, C]}`` real descriptors (float32; module docstring).

    Parameters: ``local{i}/{kernel,bias}`` and ``global/{kernel,bias}`` (the 1×1 reductions), with ``use_bn``
    ``local{i}_bn`` / ``global_bn``; ``aab/...`` when ``attention``.
    """

    local_bits: int
    global_bits: int
    parts: int = 6
    use_bn: bool = True
    attention: bool = True
    reduction: int = 8
    dtype: Dtype = jnp.float32

    def _reduce(self, v: Array, bits: int, name: str, train: bool) -> Array:
        y = nn.Dense(bits, dtype=self.dtype, name=name)(v)
        if self.use_bn:
            y = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                             dtype=self.dtype, name=f"{name}_bn")(y)
        return y.astype(jnp.float32)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        chex.assert_rank(x, 4)
        stripes = stripe_pool(x, self.parts)
        local = jnp.stack([self._reduce(stripes[:, i], self.local_bits, f"local{i}", train)
                           for i in range(self.parts)], axis=1)
        refined = AttributeGuidedAttention(self.reduction, dtype=self.dtype, name="aab")(x) if self.attention else x
        g = global_avg_pool(refined)
        return {"local": local, "global": self._reduce(g, self.global_bits, "global", train), "global_feature": g}


class TwoBranchPCB(nn.Module):
    """``images -> {"teacher": PCBHead output, "student": PCBHead output}``: a shared ``trunk`` then two
    independent branches (``teacher_branch``, ``student_branch``: modules of the same architecture) each
    with its own :class:`PCBHead` (``teacher_head``, ``student_head``)."""

    trunk: nn.Module
    teacher_branch: nn.Module
    student_branch: nn.Module
    local_bits: int
    global_bits: int
    parts: int = 6
    use_bn: bool = True
    attention: bool = True
    reduction: int = 8
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, dict[str, Array]]:
        shared = self.trunk(x, train=train)["feature_map"]
        out = {}
        for name, branch in (("teacher", self.teacher_branch), ("student", self.student_branch)):
            fmap = branch(shared, train=train)["feature_map"]
            out[name] = PCBHead(self.local_bits, self.global_bits, self.parts, self.use_bn, self.attention,
                                self.reduction, dtype=self.dtype, name=f"{name}_head")(fmap, train=train)
        return out


def two_branch_backbones(name: str, *, dtype: Dtype = jnp.float32, split_at: int | None = None,
                         **kwargs: Any) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(trunk, teacher_branch, student_branch)`` for the backbone ``name``.

    - ``resnet18..152``: trunk ``stem..layer2``; each branch ``layer3..layer4`` (``kwargs`` such as
      ``last_stride=1`` go to both; parameter paths keep torchvision's stage names, so pretrained weights
      load into each part with ``jhash.models.load_pretrained(..., allow_extra=True)``).
    - ``small_cnn``: the first ``split_at`` blocks of ``widths`` (default half of them) form the trunk, the
      remaining blocks each branch.
    """
    kwargs = dict(kwargs)
    if name.startswith("resnet"):
        for k in ("first_stage", "last_stage"):
            kwargs.pop(k, None)
        trunk = get_backbone(name, dtype=dtype, last_stage="layer2", **kwargs)
        make = lambda: get_backbone(name, dtype=dtype, first_stage="layer3", **kwargs)  # noqa: E731
        return trunk, make(), make()
    if name == "small_cnn":
        widths: Sequence[int] = tuple(kwargs.pop("widths", (32, 64, 128, 256)))
        if len(widths) < 2:
            raise ValueError(f"small_cnn needs at least 2 blocks to split into trunk and branches, got widths={widths}")
        k = len(widths) // 2 if split_at is None else int(split_at)
        if not 1 <= k < len(widths):
            raise ValueError(f"split_at must be in [1, {len(widths) - 1}] for widths={widths}, got {split_at}")
        trunk = get_backbone(name, dtype=dtype, widths=widths[:k], **kwargs)
        make = lambda: get_backbone(name, dtype=dtype, widths=widths[k:], **kwargs)  # noqa: E731
        return trunk, make(), make()
    raise ValueError(f"backbone {name!r} cannot be split into a trunk and two branches; "
                     f"use a resnet (resnet18..resnet152) or small_cnn")
