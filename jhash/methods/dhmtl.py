r"""DHMTL — deep hashing with multi-task learning for instance-level vehicle search (Liang et al.).

As the paper (the paper; ``docs/methods.md`` §2):

- **Network**: GoogLeNet (Inception v1) without its classifier → the 1024-d last pooling → a fully
  connected **hash layer** (1024 units by default, ``config.model.bits``) with **ReLU** → three fully connected
  softmax heads on the hash layer: identity, vehicle model and colour (``head_id``, ``head_model``,
  ``head_color``; Caffe "xavier" initialisation, i.e. LeCun-uniform).
- **Loss** (eq. 1–2 per head): the sum of the selected heads' softmax cross-entropies (samples whose label is
  unknown, -1, are left out of that head's mean),
  ``config.method.heads`` — the paper's ablations ``('id', 'model', 'color')`` (default), ``('id', 'model')``,
  ``('id', 'color')``, ``('id',)``, ``('model', 'color')``, ``('model',)``.
- **From scratch** (GoogLeNet-Vehicle): the two auxiliary classifiers of GoogLeNet are supervised with the
  model labels and the last level with the selected heads ("model supervision on the first two levels and
  ID+model+color on the last"); the aux losses are weighted by ``aux_weight`` (0.3, GoogLeNet's weight; the
  paper gives none). Active when the backbone is ``googlenet``, ``aux_heads`` is True and the dataset has
  model labels. ResNet backbones work too (no aux heads).
- **Codes** (eq. 3): ``b_i = 1[h_i > 0]`` on the ReLU hash layer, as uint8 {0, 1}.
- **Variants**: ``hash_activation='sigmoid'`` (codes ``1[h > 0.5]``, i.e. pre-activation > 0);
  ``loss='triplet'``: the triplet ranking baseline of §4.2 — an L2-normalisation after the hash layer and
  :func:`jhash.losses.constrained_triplet_loss` (positives same ID; negatives of another ID but the same
  model and colour when the batch has one, otherwise any other ID), margin ``triplet_margin`` (0.2 in
  squared distance of unit vectors; the paper gives none), all valid triplets of the P×K batch
  (``triplet_mining='all'``) or batch-hard (``'hard'``).

Evaluation: Hamming ranking; the paper reports mAP over the top 1000 returned and rank-1 precision
(``jhash.metrics.map_at_k(..., k=1000)``), jhash adds the dataset's standard ReID protocol.

``config.method`` fields (defaults in :data:`DEFAULTS`): ``heads``, ``head_weights`` (per-head factors, default
1), ``hash_activation`` ('relu' | 'sigmoid'), ``loss`` ('softmax' | 'triplet'), ``triplet_margin``,
``triplet_mining``, ``aux_heads`` (True), ``aux_weight`` (0.3), ``dropout`` (0.0: dropout on the pooled
features before the hash layer, GoogLeNet's 0.4 in the paper configs), ``label_smoothing`` (0.0),
``hash_bn`` (False).

**Code fidelity** (``hash_bn``, not in the paper, off by default): the heads only see the ReLU outputs, so
nothing asks a unit's pre-activation to change sign between images; many units end up always off or always on
and their bits carry nothing (``bench/quality.py`` reports the bit statistics). ``hash_bn=True`` adds a
BatchNorm between the hash layer's linear map and its activation, centring every unit on the code threshold.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jhash import config as config_lib
from jhash import losses, models
from jhash.models.heads import HashLayer
from jhash.methods import base

SEARCH = "exhaustive"

HEADS = ("id", "model", "color")
#: the paper's supervision ablations (Tables 1–3), by name
ABLATIONS = {
    "id+model+color": ("id", "model", "color"),
    "id+model": ("id", "model"),
    "id+color": ("id", "color"),
    "id": ("id",),
    "model+color": ("model", "color"),
    "model": ("model",),
}

DEFAULTS = dict(
    heads=("id", "model", "color"),
    head_weights=ml_collections.ConfigDict(),
    hash_activation="relu",
    loss="softmax",
    triplet_margin=0.2,
    triplet_mining="all",
    aux_heads=True,
    aux_weight=0.3,
    dropout=0.0,
    label_smoothing=0.0,
    hash_bn=False,  # not in the paper: BatchNorm on the hash layer's pre-activation (balanced bits)
)

xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")  # Caffe's "xavier" filler


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for DHMTL with its defaults (for config files)."""
    heads = overrides.get("heads")
    if isinstance(heads, str):
        overrides["heads"] = _expand(heads)
    return base.method_config("dhmtl", DEFAULTS, overrides, label="DHMTL")


def _get(config, key):
    return config.method.get(key, DEFAULTS[key])


def _expand(heads) -> tuple[str, ...]:
    """Ablation name (``'id+model'``) or a 1-tuple of one (a command-line override) -> the head names."""
    if isinstance(heads, str):
        heads = (heads,)
    heads = tuple(heads)
    if len(heads) == 1 and heads[0] in ABLATIONS:
        return ABLATIONS[heads[0]]
    return heads


def _heads(config) -> tuple[str, ...]:
    heads = _expand(_get(config, "heads"))
    bad = [h for h in heads if h not in HEADS]
    if bad or not heads:
        raise config_lib.ConfigError(
            f"config.method.heads={heads!r}: choose a non-empty subset of {HEADS} or one of {list(ABLATIONS)}")
    return heads


def head_sizes(config, info) -> dict[str, int]:
    """Number of classes of each selected head; a clear error when the dataset lacks those labels."""
    sizes = {"id": int(info.num_classes), "model": int(info.num_models), "color": int(info.num_colors)}
    out = {}
    for h in _heads(config):
        if sizes[h] <= 0:
            raise config_lib.ConfigError(
                f"DHMTL head {h!r} needs {h} labels but dataset {info.name!r} has none; "
                f"set config.method.heads to a subset of the labels it has")
        out[h] = sizes[h]
    return out


def _batch_key(head: str) -> str:
    return "label" if head == "id" else head


class DHMTLNet(nn.Module):
    """``images -> {'features', 'hash_pre', 'hash', 'logits_<head>'..., ['aux1_logits', 'aux2_logits']}``."""

    backbone: nn.Module
    bits: int
    heads: dict
    activation: str = "relu"
    dropout: float = 0.0
    hash_bn: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = self.backbone(x, train=train)
        f = out["features"]
        g = nn.Dropout(self.dropout, deterministic=not train)(f) if self.dropout else f
        h = HashLayer(self.bits, self.activation, use_bn=self.hash_bn, dtype=self.dtype, kernel_init=xavier,
                      name="hash")(g, train=train)
        result = {"features": f, "hash_pre": h.pre, "hash": h.act}
        for name, size in self.heads.items():
            logits = nn.Dense(size, dtype=self.dtype, kernel_init=xavier, name=f"head_{name}")(h.act)
            result[f"logits_{name}"] = logits.astype(jnp.float32)
        for k in ("aux1_logits", "aux2_logits"):
            if k in out:
                result[k] = out[k]
        return result


def _use_aux(config, info) -> bool:
    return (config.model.backbone == "googlenet" and bool(_get(config, "aux_heads")) and int(info.num_models) > 0
            and _get(config, "loss") == "softmax")


def build_model(config, info) -> DHMTLNet:
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    if _use_aux(config, info):
        kwargs.setdefault("aux_num_classes", (int(info.num_models), int(info.num_models)))
    backbone = models.get_backbone(config.model.backbone, dtype=dtype, **kwargs)
    if _get(config, "loss") not in ("softmax", "triplet"):
        raise config_lib.ConfigError(f"config.method.loss={_get(config, 'loss')!r}: use 'softmax' or 'triplet'")
    heads = head_sizes(config, info) if _get(config, "loss") == "softmax" else {}
    if _get(config, "hash_activation") not in ("relu", "sigmoid"):
        raise config_lib.ConfigError(
            f"config.method.hash_activation={_get(config, 'hash_activation')!r}: use 'relu' or 'sigmoid'")
    return DHMTLNet(backbone=backbone, bits=int(config.model.bits), heads=heads,
                    activation=str(_get(config, "hash_activation")), dropout=float(_get(config, "dropout")),
                    hash_bn=bool(_get(config, "hash_bn")), dtype=dtype)


def loss(outputs, batch, config, aux):
    logs = {}
    if _get(config, "loss") == "triplet":
        # an unknown model / colour (-1) agrees with nobody: give each such sample its own negative group
        unique = -1 - jnp.arange(batch["label"].shape[0], dtype=jnp.int32)
        groups = tuple(jnp.where(batch[k] >= 0, batch[k], unique) for k in ("model", "color") if k in batch)
        tri = losses.constrained_triplet_loss(outputs["hash"], batch["label"], groups, float(_get(config, "triplet_margin")),
                                              normalize=True, mining=str(_get(config, "triplet_mining")))
        return tri, {"triplet": tri}
    heads = _heads(config)
    for h in heads:
        if _batch_key(h) not in batch:
            raise KeyError(f"DHMTL head {h!r} needs the batch key {_batch_key(h)!r}; the batch has {sorted(batch)}")
    weights = dict(_get(config, "head_weights"))
    eps = float(_get(config, "label_smoothing"))
    total = jnp.zeros((), jnp.float32)
    for h in heads:
        y = batch[_batch_key(h)]
        known = (y >= 0).astype(jnp.float32)  # VehicleID labels only about half its vehicles' model / colour (-1)
        ce = losses.softmax_cross_entropy(outputs[f"logits_{h}"], jnp.maximum(y, 0), label_smoothing=eps, weights=known)
        total = total + float(weights.get(h, 1.0)) * ce
        logs[f"ce_{h}"] = ce
    if "aux1_logits" in outputs and "model" in batch:
        y = batch["model"]
        known = (y >= 0).astype(jnp.float32)
        aux_ce = sum(losses.softmax_cross_entropy(outputs[k], jnp.maximum(y, 0), weights=known)
                     for k in ("aux1_logits", "aux2_logits"))
        total = total + float(_get(config, "aux_weight")) * aux_ce
        logs["ce_aux"] = aux_ce
    return total, logs


def encode(outputs, config):
    """``{'id': 1[h > 0]}`` (ReLU) or ``1[σ(z) > 0.5]`` (sigmoid), uint8 {0, 1} (eq. 3)."""
    # ReLU: h > 0  <=>  pre-activation > 0; sigmoid: σ(z) > 0.5  <=>  z > 0
    return {"id": (outputs["hash_pre"] > 0).astype(jnp.uint8)}
