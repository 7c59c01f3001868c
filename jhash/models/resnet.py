"""ResNet-18/34/50/101/152 in Flax Linen, in torchvision's layout (NHWC).

Architecture exactly as ``torchvision.models.resnet`` (v1.5: in a :class:`Bottleneck` the stride sits in the
3×3 convolution), so that :mod:`jhash.models.convert` maps a torchvision ``state_dict`` one to one:
convolutions without bias, explicit symmetric padding (torch's, not XLA's ``SAME``), BatchNorm with
``eps = 1e-5`` and momentum ``0.9`` (torch's 0.1), kaiming-normal fan-out initialisation. The classifier
(``fc``) is not part of the backbone.

Parameter tree (``params``; ``batch_stats`` has the same paths with ``mean``/``var``)::

    stem/conv1/kernel  stem/bn1/{scale,bias}
    layer1/block0/{conv1,bn1,conv2,bn2[,conv3,bn3][,downsample_conv,downsample_bn]}
    ...
    layer4/block{n-1}/...

Composition. The network is a sequence of named stages ``("stem", "layer1", ..., "layer4")``.
:class:`ResNet` runs the contiguous range ``first_stage..last_stage`` and names its children after the
stages, so a range keeps the parameter paths of the full network. That is how two-branch models share a
trunk (SSR: one trunk up to ``layer2``, then two independent copies of ``layer3``+``layer4``)::

    trunk   = ResNet(depth=50, last_stage="layer2")
    teacher = ResNet(depth=50, first_stage="layer3", last_stride=1)
    student = ResNet(depth=50, first_stage="layer3", last_stride=1)
    shared  = trunk(images, train)["feature_map"]            # [B, H/8, W/8, 512]
    t, s    = teacher(shared, train), student(shared, train)  # each ends in [B, H/16, W/16, 2048]

and the pretrained tree from :func:`jhash.models.convert.load_torchvision_resnet` fits each of them through
:func:`jhash.models.convert.merge_params` (``allow_extra=True`` drops the stages a part does not have).
:class:`ResNetStem` and :class:`ResNetStage` are also usable on their own.

Output of :class:`ResNet` (a dict): one entry per stage run (``"stem"``, ``"layer1"``, ...), plus
``"feature_map"`` (the last stage's output, computation dtype) and ``"features"`` (its global pooling,
``[B, C]`` float32, by ``pooling``: ``"avg"`` default, ``"gem"``, ``"max"``).
Spatial sizes for an ``H×W`` input: stem ``H/4``, layer1 ``H/4``, layer2 ``H/8``, layer3 ``H/16``,
layer4 ``H/32`` (``H/16`` with ``last_stride=1``); channels 64, 64·e, 128·e, 256·e, 512·e with ``e`` = 1
(BasicBlock) or 4 (Bottleneck).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jhash.models.heads import BN_EPSILON, BN_MOMENTUM, GlobalPool

Array = jax.Array
Dtype = Any

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")

#: torchvision's initialisation: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, *, dtype: Dtype, name: str) -> nn.Conv:
    """A bias-free convolution with torch's explicit symmetric padding."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        dtype=dtype,
        kernel_init=conv_init,
        name=name,
    )


def batch_norm(train: bool, *, dtype: Dtype, name: str, zero_scale: bool = False) -> nn.BatchNorm:
    """BatchNorm with torch's defaults (eps 1e-5, momentum 0.1 in torch's convention)."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        name=name,
    )


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (stride in the first); ``features`` output channels (``expansion = 1``).

    ``downsample`` adds the 1×1 strided projection shortcut (``downsample_conv``, ``downsample_bn``).
    ``zero_init_residual`` starts the last BN scale at zero (torchvision's option of that name).
    """

    expansion: ClassVar[int] = 1

    features: int
    stride: int = 1
    downsample: bool = False
    zero_init_residual: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        d = self.dtype
        y = conv(self.features, 3, self.stride, 1, dtype=d, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=d, name="bn1")(y))
        y = conv(self.features, 3, 1, 1, dtype=d, name="conv2")(y)
        y = batch_norm(train, dtype=d, name="bn2", zero_scale=self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(self, x, train))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride here: torchvision v1.5) → 1×1 ×4; ``features`` is the width (output ``4·features``)."""

    expansion: ClassVar[int] = 4

    features: int
    stride: int = 1
    downsample: bool = False
    zero_init_residual: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        d = self.dtype
        y = conv(self.features, 1, dtype=d, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=d, name="bn1")(y))
        y = conv(self.features, 3, self.stride, 1, dtype=d, name="conv2")(y)
        y = nn.relu(batch_norm(train, dtype=d, name="bn2")(y))
        y = conv(self.features * 4, 1, dtype=d, name="conv3")(y)
        y = batch_norm(train, dtype=d, name="bn3", zero_scale=self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(self, x, train))


def _shortcut(block: BasicBlock | Bottleneck, x: Array, train: bool) -> Array:
    if not block.downsample:
        return x
    out = block.features * block.expansion
    x = conv(out, 1, block.stride, dtype=block.dtype, name="downsample_conv")(x)
    return batch_norm(train, dtype=block.dtype, name="downsample_bn")(x)


BlockCls = Callable[..., nn.Module]


class ResNetStem(nn.Module):
    """``conv1`` 7×7/2 (pad 3) → ``bn1`` → ReLU → max-pool 3×3/2 (pad 1): ``[B,H,W,3] -> [B,H/4,W/4,64]``."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = conv(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class ResNetStage(nn.Module):
    """``num_blocks`` blocks named ``block0..``; the first has stride ``stride`` and, when the stride or the
    channel count changes, the projection shortcut. Output channels ``features * block_cls.expansion``."""

    block_cls: BlockCls
    num_blocks: int
    features: int
    stride: int = 1
    zero_init_residual: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        out_ch = self.features * self.block_cls.expansion
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            x = self.block_cls(
                features=self.features,
                stride=stride,
                downsample=i == 0 and (stride != 1 or x.shape[-1] != out_ch),
                zero_init_residual=self.zero_init_residual,
                dtype=self.dtype,
                name=f"block{i}",
            )(x, train)
        return x


#: depth -> (block class, blocks per stage), as torchvision.
RESNET_SPECS: dict[int, tuple[BlockCls, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

STAGE_WIDTHS = (64, 128, 256, 512)


def stage_channels(depth: int, stage: str) -> int:
    """Output channels of ``stage`` (one of :data:`STAGES`) in a ResNet of this depth."""
    block_cls, _ = _spec(depth)
    if stage == "stem":
        return 64
    return STAGE_WIDTHS[_stage_index(stage) - 1] * block_cls.expansion


def _spec(depth: int) -> tuple[BlockCls, tuple[int, int, int, int]]:
    if depth not in RESNET_SPECS:
        raise ValueError(f"unsupported ResNet depth {depth}; valid: {', '.join(map(str, RESNET_SPECS))}")
    return RESNET_SPECS[depth]


def _stage_index(stage: str) -> int:
    if stage not in STAGES:
        raise ValueError(f"unknown ResNet stage {stage!r}; valid: {', '.join(STAGES)}")
    return STAGES.index(stage)


class ResNet(nn.Module):
    """A torchvision ResNet without its classifier, running stages ``first_stage..last_stage``.

    Attributes:
      depth: 18, 34, 50, 101 or 152.
      last_stride: stride of ``layer4`` (2 as ImageNet; 1 is the ReID choice, doubling the final map).
      first_stage / last_stage: the contiguous range of :data:`STAGES` to run. With ``first_stage="stem"``
        the input is an image ``[B,H,W,3]``; otherwise it is the previous stage's feature map.
      pooling: ``"avg"``, ``"gem"`` or ``"max"`` for ``"features"``.
      zero_init_residual: torchvision's option (zero-initialised last BN scale of each block).
      dtype: computation dtype (``jnp.bfloat16`` for mixed precision); parameters stay float32.

    ``__call__(x, train)`` returns ``{stage: output for each stage run, "feature_map", "features"}``
    (see the module docstring). ``train`` selects batch statistics (and updates ``batch_stats``, so apply
    with ``mutable=["batch_stats"]``) versus running averages.
    """

    depth: int = 50
    last_stride: int = 2
    first_stage: str = "stem"
    last_stage: str = "layer4"
    pooling: str = "avg"
    zero_init_residual: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        block_cls, blocks = _spec(self.depth)
        first, last = _stage_index(self.first_stage), _stage_index(self.last_stage)
        if first > last:
            raise ValueError(f"first_stage {self.first_stage!r} comes after last_stage {self.last_stage!r}")
        chex.assert_rank(x, 4)
        out: dict[str, Array] = {}
        x = x.astype(self.dtype)
        for s in range(first, last + 1):
            name = STAGES[s]
            if s == 0:
                x = ResNetStem(dtype=self.dtype, name=name)(x, train)
            else:
                x = ResNetStage(
                    block_cls=block_cls,
                    num_blocks=blocks[s - 1],
                    features=STAGE_WIDTHS[s - 1],
                    stride=(1, 2, 2, self.last_stride)[s - 1],
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=name,
                )(x, train)
            out[name] = x
        out["feature_map"] = x
        out["features"] = GlobalPool(self.pooling, name="pool")(x)
        return out


def resnet_feature_dim(depth: int = 50, last_stage: str = "layer4", **_: Any) -> int:
    """Dimension of ``ResNet(depth, last_stage=...)``'s ``"features"``."""
    return stage_channels(depth, last_stage)

