"""Backbones looked up by name.

``get_backbone(name, **kwargs)`` builds the Flax module; ``feature_dim(name, **kwargs)`` gives the size of its
pooled ``"features"`` for the same keyword arguments. Every backbone is called as
``module.apply(variables, images [B,H,W,3], train=bool, ...)`` and returns a dict with at least

- ``"feature_map"``: ``[B, h, w, C]`` last feature map (computation dtype),
- ``"features"``: ``[B, C]`` float32 global pooling of it (``pooling="avg"|"gem"|"max"``),

plus model-specific entries (ResNet: each stage's output; GoogLeNet: ``aux1_logits``/``aux2_logits`` in
training; SmallCNN: each block's output). All take ``dtype`` (computation dtype; parameters float32) and
``pooling``. Keyword arguments are the module's attributes:

========== ===================================================== ==================
name       module                                                 feature dim
========== ===================================================== ==================
resnet18   ``ResNet(depth=18, last_stride, first_stage, ...)``    512
resnet34   ``ResNet(depth=34, ...)``                              512
resnet50   ``ResNet(depth=50, ...)``                              2048
resnet101  ``ResNet(depth=101, ...)``                             2048
resnet152  ``ResNet(depth=152, ...)``                             2048
googlenet  ``GoogLeNet(aux_num_classes, aux_dropout, ...)``       1024
small_cnn  ``SmallCNN(widths, convs_per_block, ...)``             ``widths[-1]`` (256)
========== ===================================================== ==================
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn

from jhash.models.googlenet import GOOGLENET_FEATURE_DIM, GoogLeNet
from jhash.models.resnet import RESNET_SPECS, ResNet, resnet_feature_dim
from jhash.models.small_cnn import SmallCNN, small_cnn_feature_dim

# name -> (constructor, feature-dim function of the same kwargs)
_BACKBONES: dict[str, tuple[Callable[..., nn.Module], Callable[..., int]]] = {
    **{
        f"resnet{d}": (functools.partial(ResNet, depth=d), functools.partial(resnet_feature_dim, d))
        for d in RESNET_SPECS
    },
    "googlenet": (GoogLeNet, lambda **_: GOOGLENET_FEATURE_DIM),
    "small_cnn": (SmallCNN, small_cnn_feature_dim),
}


def available_backbones() -> list[str]:
    """The names :func:`get_backbone` accepts."""
    return list(_BACKBONES)


def _lookup(name: str) -> tuple[Callable[..., nn.Module], Callable[..., int]]:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(_BACKBONES)}") from None


def get_backbone(name: str, **kwargs: Any) -> nn.Module:
    """The backbone module called ``name`` built with ``kwargs`` (its attributes); ``ValueError`` if unknown."""
    ctor, _ = _lookup(name)
    try:
        return ctor(**kwargs)
    except TypeError as e:
        raise TypeError(f"bad arguments for backbone {name!r}: {e}") from None


def feature_dim(name: str, **kwargs: Any) -> int:
    """Size of ``get_backbone(name, **kwargs)``'s ``"features"`` (no tracing needed)."""
    _, dim = _lookup(name)
    return dim(**kwargs)
