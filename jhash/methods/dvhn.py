r"""DVHN — deep vehicle hashing network (Chen et al., arXiv 2112.04937), as discrete supervised hashing.

Only DVHN's abstract survives; its wording matches DSDH (Li et al., NeurIPS 2017), which jhash implements
(``docs/methods.md`` §1)::

    min_{B, W, θ}  L_sim(U) + μ Σ_i ‖y_i − Wᵀ b_i‖² + ν ‖W‖²_F + η Σ_i ‖b_i − u_i‖²,   b_i ∈ {−1, +1}^L

- **Network**: backbone → global pooling → hash layer ``Dense(L)`` (no activation by default) giving the
  real-valued ``u`` (``outputs["hash"]``); optionally an identity classifier on ``u`` (``outputs["logits"]``).
- **Network step** (``loss``, B and W fixed): ``sim_weight · L_sim(u)`` (pairwise likelihood over the pairs
  of the P×K batch, :func:`jhash.losses.pairwise_likelihood_loss`, ``Ψ = θ uᵀu``) ``+ η' ‖B[index] − u‖²``
  (:func:`jhash.losses.quantization_loss`, the batch's rows of B: :func:`code_targets`)
  ``+ ce_weight · CE(logits)`` ``+ triplet_weight · batch-hard triplet(u/√L)`` (the two options of the
  author's vehicle baseline; off by default). The quantisation term is off until the first discrete update
  (before it, B holds random codes that carry no information).
- **Code length**: ``‖B[index] − u‖²`` sums over the L bits, so with one η its pull on the network grows with
  L while the likelihood's does not (measured weighted gradient norms, quantisation over likelihood: 0.23–0.27
  at 64 bits, 0.75 at 1024 bits with the paper's η, 0.08–0.10 with η·64/L; ``docs/methods.md``).
  ``η'`` is ``quant_weight`` (default η) times ``min(1, 64 / L)`` with ``quant_weight_scale='length'`` (the default;
  the B-step keeps η); ``quant_weight_scale='none'`` is the paper's single η. ``θ`` is ``theta`` (½) times
  ``min(1, 64 / L)`` with ``theta_scale='length'`` (HashNet-style, Ψ ∝ 1/L; off by default).
- **Discrete step** (``update_aux``, every ``method.aux_every`` epochs after an encoding pass over the training
  set that refreshes U): ``dcc_iters`` rounds of the W-step (closed-form ridge) and the B-step
  (``b_sweeps`` passes of discrete cyclic coordinate descent over the bits) of :mod:`jhash.discrete`. The
  first update starts the coordinate descent from ``sign(U)``.
- **Codes**: ``b = sign(u)`` (``sign(0) = +1``) as int8 ±1, searched exhaustively in Hamming space.

State (``aux``, checkpointed with the model, so a resumed run continues the alternation exactly):
``B`` int8 ``[N, L]``, ``W`` float32 ``[L, C]``, ``U`` float32 ``[N, L]``, ``updates`` int32 (number of
discrete updates done). Rows follow the training split's record ``index``. ``B``, ``W`` and ``U``
(:data:`HOST_AUX`) stay in host memory during training, outside the replicated state that every step carries:
the trainer adds each batch's rows of ``B`` to the batch (:func:`host_inputs`), sharded over the devices with
the images, and only ``updates`` rides in the jitted step.

Memory: for VehicleID (N = 110,178 images, C = 13,164 identities, L = 2048 bits) the state is B 226 MB +
U 902 MB + W 108 MB = 1.24 GB, in host memory during training (per step the devices receive the batch's rows
of B: P·K·L bytes), and an update peaks at about 5.2 GB (:func:`jhash.discrete.memory_footprint`,
confirmed by XLA's memory analysis of the compiled update), well inside a 16 GB GPU next to ResNet-50.

``config.method`` fields (defaults in :data:`DEFAULTS`): ``mu`` (1e-2), ``nu`` (1.0), ``eta`` (1e-2) — the
DSDH reference values; ``sim_weight`` (1.0); ``ce_weight`` (0.0), ``label_smoothing`` (0.0);
``triplet_weight`` (0.0), ``triplet_margin`` (0.3); ``hash_activation`` ('none' | 'tanh');
``hash_bn`` (False); ``dcc_iters`` (1); ``b_sweeps`` (3); ``aux_every`` (1 epoch); ``quant_weight`` (None = η),
``quant_weight_scale`` ('length' | 'none' = the paper); ``theta`` (0.5), ``theta_scale`` ('none' | 'length').
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jhash import config as config_lib
from jhash import discrete, losses, models
from jhash.models.heads import HashLayer
from jhash.methods import base

SEARCH = "exhaustive"
HOST_AUX = ("B", "W", "U")  # aux kept in host memory by the trainer (jhash.trainer.split_aux)

DEFAULTS = dict(
    mu=1e-2,
    nu=1.0,
    eta=1e-2,
    sim_weight=1.0,
    ce_weight=0.0,
    label_smoothing=0.0,
    triplet_weight=0.0,
    triplet_margin=0.3,
    hash_activation="none",
    hash_bn=False,
    dcc_iters=1,
    b_sweeps=3,
    quant_weight=None,  # network-step quantisation weight; None = eta (the paper's single η)
    quant_weight_scale="length",  # 'length': times min(1, 64 / L) | 'none': the paper's single η
    theta=0.5,  # Ψ = θ uᵀu in the pairwise likelihood (the paper's 1/2)
    theta_scale="none",  # 'none' | 'length': times min(1, 64 / L)
)
SCALES = ("none", "length")
REFERENCE_BITS = 64  # the code length at which the 'length' scales are 1


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for DVHN with its defaults (for config files)."""
    return base.method_config("dvhn", DEFAULTS, overrides, aux_every=1, label="DVHN")


def _get(config, key):
    return config.method.get(key, DEFAULTS[key])


class DVHNNet(nn.Module):
    """``images -> {'features', 'hash', ['logits']}``: backbone, pooled features, hash layer, optional classifier."""

    backbone: nn.Module
    bits: int
    num_classes: int | None = None
    activation: str = "none"
    hash_bn: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = self.backbone(x, train=train)["features"]
        h = HashLayer(self.bits, self.activation, use_bn=self.hash_bn, dtype=self.dtype, name="hash")(f, train=train)
        out = {"features": f, "hash": h.act}
        if self.num_classes:
            logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(h.act)
            out["logits"] = logits.astype(jnp.float32)
        return out


def build_model(config, info) -> DVHNNet:
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    backbone = models.get_backbone(config.model.backbone, dtype=dtype, **kwargs)
    use_ce = float(_get(config, "ce_weight")) > 0
    return DVHNNet(backbone=backbone, bits=int(config.model.bits), num_classes=int(info.num_classes) if use_ce else None,
                   activation=str(_get(config, "hash_activation")), hash_bn=bool(_get(config, "hash_bn")), dtype=dtype)


def init_aux(config, info, num_train: int) -> dict:
    """Initial state: random ±1 codes (seeded), ``W = 0``, ``U = 0``, no update done yet."""
    n, bits, classes = int(num_train), int(config.model.bits), int(info.num_classes)
    if n <= 0:
        raise ValueError(f"DVHN needs the number of training images (info.num_train_images), got {num_train}")
    rng = np.random.default_rng(int(config.seed) + 7919)
    codes = np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)
    return {
        "B": jnp.asarray(codes),
        "W": jnp.zeros((bits, classes), jnp.float32),
        "U": jnp.zeros((n, bits), jnp.float32),
        "updates": jnp.zeros((), jnp.int32),
    }


def host_inputs(host_aux, batch) -> dict:
    """The batch's rows of ``B`` (``code_target``, int8 ``[n, L]``, by the batch's ``index``), added to a training
    batch by the trainer, which keeps ``B`` in host memory."""
    return {"code_target": np.take(np.asarray(host_aux["B"]), np.asarray(batch["index"]), axis=0)}


def code_targets(aux, batch):
    """The rows of ``B`` for the batch's images: ``batch['code_target']`` (:func:`host_inputs`) when present,
    else gathered from ``aux['B']`` by the batch's ``index`` (an ``aux`` that holds ``B``)."""
    if "code_target" in batch:
        return batch["code_target"]
    return jnp.take(aux["B"], batch["index"], axis=0)


def _train_labels(train_outputs, num_classes: int) -> np.ndarray:
    """Training class of each row: the ``label`` key if the encoding pass carried it, else from ``pid``."""
    labels = train_outputs.get("label")
    if labels is not None and np.all(np.asarray(labels) >= 0):
        return np.asarray(labels, np.int32)
    _, inverse = np.unique(np.asarray(train_outputs["pid"]), return_inverse=True)
    if inverse.max(initial=-1) >= num_classes:
        raise ValueError(f"DVHN: the training outputs hold more identities than W's {num_classes} classes")
    return inverse.astype(np.int32)


def update_aux(aux, train_outputs, config) -> dict:
    """The discrete step on the cached outputs of the whole training set (see the module docstring).

    ``train_outputs``: the model's ``train=False`` outputs over the training split plus its ``index`` and
    ``pid`` (and ``label`` when present) keys, as :func:`jhash.encode.run_split` returns them.
    """
    n, bits = aux["B"].shape
    classes = int(aux["W"].shape[1])
    index = np.asarray(train_outputs["index"], np.int64)
    u = np.asarray(train_outputs["hash"], np.float32)
    if u.shape[1] != bits:
        raise ValueError(f"DVHN: training outputs have {u.shape[1]} bits, the state has {bits}")
    if index.size and (index.min() < 0 or index.max() >= n):
        raise ValueError(f"DVHN: training output indices must lie in [0, {n}), got [{index.min()}, {index.max()}]")
    outputs = np.zeros((n, bits), np.float32)
    outputs[index] = u
    labels = np.zeros((n,), np.int32)
    labels[index] = _train_labels(train_outputs, classes)
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    codes = aux["B"]
    if int(jax.device_get(aux["updates"])) == 0:
        codes = discrete.sign(outputs)
    codes, w = discrete.alternate(
        codes, outputs, labels, classes,
        float(_get(config, "mu")), float(_get(config, "nu")), float(_get(config, "eta")),
        iterations=int(_get(config, "dcc_iters")), sweeps=int(_get(config, "b_sweeps")),
    )
    return {"B": codes, "W": w.astype(jnp.float32), "U": outputs, "updates": aux["updates"] + 1}


def _length_factor(config, key: str, bits: int) -> float:
    scale = str(_get(config, key))
    if scale not in SCALES:
        raise config_lib.ConfigError(f"config.method.{key}={scale!r}: use one of {SCALES}")
    # never above 1: codes of <= 64 bits keep the paper's weight exactly (the sweep measured only the longer ones)
    return min(1.0, REFERENCE_BITS / bits) if scale == "length" else 1.0


def quant_weight(config, bits: int) -> float:
    """The network step's quantisation weight: ``quant_weight`` (default η) × ``min(1, 64 / L)`` with
    ``quant_weight_scale='length'``. The B-step always uses η (its ``η / μ`` trade-off is per bit)."""
    base_weight = _get(config, "quant_weight")
    w = config_lib.nonnegative("method.quant_weight", _get(config, "eta") if base_weight is None else base_weight)
    return w * _length_factor(config, "quant_weight_scale", bits)


def theta(config, bits: int) -> float:
    """``θ`` of the pairwise likelihood ``Ψ = θ uᵀu``: ``theta`` × ``min(1, 64 / L)`` with ``theta_scale='length'``."""
    t = float(_get(config, "theta"))
    if not t > 0:
        raise config_lib.ConfigError(f"config.method.theta={t}: expected > 0")
    return t * _length_factor(config, "theta_scale", bits)


def loss(outputs, batch, config, aux):
    u = outputs["hash"]
    bits = u.shape[-1]
    labels = batch["label"]
    sim = losses.pairwise_likelihood_loss(u, labels, theta=theta(config, bits))
    total = float(_get(config, "sim_weight")) * sim
    logs = {"sim": sim}
    if aux is not None:
        target = code_targets(aux, batch)
        quant = losses.quantization_loss(u, target) * (aux["updates"] > 0).astype(jnp.float32)
        total = total + quant_weight(config, bits) * quant
        logs["quant"] = quant
    ce_w = float(_get(config, "ce_weight"))
    if ce_w:
        ce = losses.softmax_cross_entropy(outputs["logits"], labels, label_smoothing=float(_get(config, "label_smoothing")))
        total = total + ce_w * ce
        logs["ce"] = ce
    tri_w = float(_get(config, "triplet_weight"))
    if tri_w:
        tri = losses.batch_hard_triplet_loss(u / jnp.sqrt(bits), labels, margin=float(_get(config, "triplet_margin")))
        total = total + tri_w * tri
        logs["triplet"] = tri
    return total, logs


def encode(outputs, config):
    """``{'id': sign(u)}`` as int8 ±1 (``sign(0) = +1``)."""
    return {"id": discrete.sign(outputs["hash"])}
