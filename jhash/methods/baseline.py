"""The baseline: backbone -> BNNeck -> hash layer (tanh) -> ID classifier; CE + batch-hard triplet.

The simplest deep-hashing ReID system, and the method the demo trains:

- ``features = backbone(x)`` pooled (``config.model.pooling``); BNNeck (BoT, Luo et al. 2019) normalises
  them; ``u = tanh(BN(W f + c))`` is the relaxed ``L``-bit code (``config.model.bits``); a bias-free
  classifier on ``u`` gives the identity logits.
- Loss (per batch of ``P x K`` images)::

      ce_weight * CE_ls(logits, label)                                  label smoothing ε
    + triplet_weight * BH-triplet(u / sqrt(L), label, triplet_margin)   Hermans et al. 2017, eq. 5
    + quant_weight * ||u - sign(u)||² / L                               optional quantisation (DSDH eq. 5)

  The triplet runs on ``u / sqrt(L)``, so a binary code has unit norm and the margin means the same for
  every code length (squared distance of binary codes = 4 · Hamming / L).
- ``encode``: ``b = sign(pre-activation)`` as ``±1`` (``sign(0) = +1``), searched exhaustively in Hamming space.

``config.method`` fields: ``ce_weight`` (1.0), ``triplet_weight`` (1.0), ``triplet_margin`` (0.3),
``label_smoothing`` (0.1), ``quant_weight`` (0.0), ``hash_bn`` (True: BN before tanh keeps bits balanced),
``bnneck`` (True).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jhash import config as config_lib
from jhash import losses, models
from jhash.models.heads import BNNeck, HashLayer
from jhash.methods import base

SEARCH = "exhaustive"

DEFAULTS = dict(ce_weight=1.0, triplet_weight=1.0, triplet_margin=0.3, label_smoothing=0.1, quant_weight=0.0,
                hash_bn=True, bnneck=True)


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for the baseline, with its defaults (for config files)."""
    return base.method_config("baseline", DEFAULTS, overrides)


def _get(config, key):
    return config.method.get(key, DEFAULTS[key])


class BaselineNet(nn.Module):
    """``images -> {'features', 'hash_pre', 'hash', 'logits'}``."""

    backbone: nn.Module
    bits: int
    num_classes: int
    hash_bn: bool = True
    bnneck: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = self.backbone(x, train=train)["features"]
        g = BNNeck(dtype=self.dtype, name="neck")(f, train=train)["bn_features"] if self.bnneck else f
        h = HashLayer(self.bits, "tanh", use_bn=self.hash_bn, dtype=self.dtype, name="hash")(g, train=train)
        logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                          kernel_init=nn.initializers.normal(0.001), name="classifier")(h.act)
        return {"features": f, "hash_pre": h.pre, "hash": h.act, "logits": logits.astype(jnp.float32)}


def build_model(config, info) -> BaselineNet:
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    backbone = models.get_backbone(config.model.backbone, dtype=dtype, **kwargs)
    return BaselineNet(backbone=backbone, bits=int(config.model.bits), num_classes=int(info.num_classes),
                       hash_bn=bool(_get(config, "hash_bn")), bnneck=bool(_get(config, "bnneck")), dtype=dtype,
                       name=None)


def loss(outputs, batch, config, aux):
    u = outputs["hash"]
    bits = u.shape[-1]
    labels = batch["label"]
    ce = losses.softmax_cross_entropy(outputs["logits"], labels, label_smoothing=float(_get(config, "label_smoothing")))
    tri = losses.batch_hard_triplet_loss(u / jnp.sqrt(bits), labels, margin=float(_get(config, "triplet_margin")))
    total = float(_get(config, "ce_weight")) * ce + float(_get(config, "triplet_weight")) * tri
    logs = {"ce": ce, "triplet": tri}
    qw = float(_get(config, "quant_weight"))
    if qw:
        q = losses.quantization_loss(u, jnp.where(u >= 0, 1.0, -1.0)) / bits
        total = total + qw * q
        logs["quant"] = q
    return total, logs


def encode(outputs, config):
    return {"id": jnp.where(outputs["hash_pre"] >= 0, 1, -1).astype(jnp.int8)}
