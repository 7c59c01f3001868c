"""Flax backbones, pooling / BNNeck / hash heads and torchvision weight conversion.

Conventions (every module here): Flax Linen used through pure ``init``/``apply``; NHWC images; called as
``module.apply(variables, x, train=bool, mutable=["batch_stats"] if train else False)``; BatchNorm uses
batch statistics when ``train`` and running averages otherwise (statistics in the ``batch_stats``
collection, momentum as torch's 0.1); ``dtype`` is the computation dtype (``jnp.bfloat16`` for mixed
precision) while parameters stay float32; pooled vectors are float32.

Backbones (:mod:`jhash.models.registry`): ``get_backbone(name, **kwargs)`` for ``resnet18/34/50/101/152``,
``googlenet`` and ``small_cnn``; each returns a dict with ``"feature_map"`` ``[B,h,w,C]`` and ``"features"``
``[B,C]`` (``feature_dim(name, **kwargs)`` gives ``C``), plus model-specific entries.

- :mod:`jhash.models.resnet`: ``ResNet`` (stage ranges for shared trunks / duplicated branches),
  ``ResNetStem``, ``ResNetStage``, ``BasicBlock``, ``Bottleneck``.
- :mod:`jhash.models.googlenet`: ``GoogLeNet`` with two auxiliary heads (``aux1_logits``, ``aux2_logits``).
- :mod:`jhash.models.small_cnn`: ``SmallCNN``, the fast CPU backbone.
- :mod:`jhash.models.heads`: ``GeM``, ``GlobalPool``, ``global_avg_pool``, ``BNNeck``, ``HashLayer``.
- :mod:`jhash.models.convert`: ``load_torchvision_resnet``, ``load_torchvision_googlenet``,
  ``merge_params``, ``load_pretrained``.
"""

from jhash.models.attention import AttributeGuidedAttention, aab_combine
from jhash.models.convert import (
    ConversionError,
    convert_torchvision_googlenet,
    convert_torchvision_resnet,
    load_pretrained,
    load_state_dict,
    load_torchvision_googlenet,
    load_torchvision_resnet,
    merge_params,
)
from jhash.models.googlenet import GoogLeNet, InceptionAux
from jhash.models.heads import (
    BNNeck,
    GeM,
    GlobalPool,
    HashLayer,
    HashOutput,
    global_avg_pool,
    global_max_pool,
)
from jhash.models.pcb import (
    PCBHead,
    TwoBranchPCB,
    split_bits,
    stripe_bounds,
    stripe_pool,
    two_branch_backbones,
)
from jhash.models.pyramid import CodePyramid, PyramidLevel
from jhash.models.registry import available_backbones, feature_dim, get_backbone
from jhash.models.resnet import (
    STAGES,
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetStage,
    ResNetStem,
    stage_channels,
)
from jhash.models.small_cnn import SmallCNN

__all__ = [
    "AttributeGuidedAttention",
    "aab_combine",
    "PCBHead",
    "TwoBranchPCB",
    "split_bits",
    "stripe_bounds",
    "stripe_pool",
    "two_branch_backbones",
    "CodePyramid",
    "PyramidLevel",
    "BNNeck",
    "BasicBlock",
    "Bottleneck",
    "ConversionError",
    "GeM",
    "GlobalPool",
    "GoogLeNet",
    "HashLayer",
    "HashOutput",
    "InceptionAux",
    "ResNet",
    "ResNetStage",
    "ResNetStem",
    "STAGES",
    "SmallCNN",
    "available_backbones",
    "convert_torchvision_googlenet",
    "convert_torchvision_resnet",
    "feature_dim",
    "get_backbone",
    "global_avg_pool",
    "global_max_pool",
    "load_pretrained",
    "load_state_dict",
    "load_torchvision_googlenet",
    "load_torchvision_resnet",
    "merge_params",
    "stage_channels",
]
