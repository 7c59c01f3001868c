r"""DRSCH / DSCH — bit-scalable deep hashing with regularised similarity learning (Zhang et al., TIP 2015).

As the paper's abstract and the authors' public Caffe code (``docs/methods.md`` §3):

- **Network**: backbone → global pooling → ``Dense(L)`` → sigmoid → element-wise product with a learnable
  per-bit weight vector ``w`` (parameter ``bit_weights``, initialised to 1): ``h = w ⊙ σ(z)``.
- **Loss** on the P×K batch::

      triplet(h; margin) + β · tr(H L Hᵀ) + ½ λ_w ‖w‖²

  the triplet ranking loss in the weighted relaxed Hamming space
  (:func:`jhash.losses.weighted_triplet_ranking_loss`: ``max(0, ‖h_a − h_p‖² − ‖h_a − h_n‖² + margin)``),
  the adjacency-consistency regulariser on the in-batch same-label graph
  (:func:`jhash.losses.laplacian_regularizer`, β = ``laplacian_weight`` = 1e-3; **DSCH** is β = 0), and an
  L2 penalty on ``w`` (``bit_weight_decay``; Caffe decays every learnable blob — without it the triplet
  margin could be met by inflating ``w`` alone).
- **Triplets**: ``triplet_mining='all'`` (default) uses every valid (anchor, positive, negative) of the
  batch — the paper organises its training data as triplets; ``'hard'`` uses one batch-hard triplet per
  anchor (Hermans et al. 2017). The margin is ``margin × L`` (``margin`` is per bit, so it means the same at
  every code length; 0.25 by default); ``margin_schedule='linear'`` grows it from ``margin_start × L`` to
  ``margin × L`` over ``margin_ramp_steps`` training steps (the public code grows its margin); the step
  count lives in the model's ``batch_stats`` collection (``train_steps``), so it is checkpointed and a
  resumed run continues the schedule exactly.
- **Codes**: ``b_k = 1[σ(z_k) > 0.5] = 1[z_k > 0]`` (uint8 {0,1}), **bits ordered by decreasing** ``|w_k|``:
  the code ``"id"`` is the full code in that order, so any prefix of length ``m`` is the bit-scalable code of
  the ``m`` most significant bits (``config.eval.tradeoff_bits`` evaluates prefixes); ``"top<m>"`` codes for
  ``m`` in ``config.method.eval_bits`` are also produced. Hamming distance over the full code is unchanged
  by the permutation.
- **Search** (the paper's retrieval rule): gallery items ranked by decreasing **weighted Hamming affinity**
  ``A(q, g) = Σ_k w_k² [b_qk = b_gk]``, i.e. by increasing weighted Hamming distance
  ``D(q, g) = Σ_k w_k² [b_qk ≠ b_gk] = Σ_k w_k² − A(q, g)``; ties by gallery index. Exact, on packed codes
  (:mod:`jhash.search.weighted`: a byte-table numpy path for the CPU, a jitted XLA path for accelerators).
  :func:`search` is the evaluator hook; the weights come from the trained network (:func:`model_search_params`).
  ``config.method.ranking='hamming'`` ranks by the plain Hamming distance instead (a comparison row).

``config.method`` fields (defaults in :data:`DEFAULTS`): ``margin`` (0.25 per bit), ``margin_schedule``
('fixed' | 'linear'), ``margin_start`` (0.05), ``margin_ramp_steps`` (1000), ``triplet_mining`` ('all'),
``laplacian_weight`` (1e-3; 0 = DSCH), ``bit_weight_decay`` (5e-4), ``eval_bits`` ((16, 32); any length,
codes that are not whole bytes are zero-padded), ``ranking`` ('weighted' | 'hamming'); three options that are not
in the paper, off by default: ``hash_bn`` (False: BatchNorm between the hash layer's linear map and the sigmoid),
``quant_weight`` (0.0: adds ``quant_weight · mean_i Σ_k (σ(z_ik) − b_ik)²`` with ``b = 1[z > 0]`` held
fixed, :func:`jhash.losses.quantization_loss`, so the relaxed codes the triplet loss ranks are close to the
binary codes that are searched); and ``decorrelation_weight`` (0.0: adds ``decorrelation_weight ·``
:func:`bit_correlation_penalty` of σ(z) over the batch, so that bits do not repeat one another).
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jhash import config as config_lib
from jhash import losses, models
from jhash import search as search_lib
from jhash.models.heads import HashLayer
from jhash.methods import base

SEARCH = "exhaustive"

DEFAULTS = dict(
    margin=0.25,
    margin_schedule="fixed",
    margin_start=0.05,
    margin_ramp_steps=1000,
    triplet_mining="all",
    laplacian_weight=1e-3,
    bit_weight_decay=5e-4,
    eval_bits=(16, 32),
    ranking="weighted",  # 'weighted' (the paper: weighted Hamming affinity) | 'hamming'
    hash_bn=False,  # not in the paper: BatchNorm on the hash layer's pre-activation (balanced bits)
    quant_weight=0.0,  # not in the paper: weight of Σ_k (σ(z_k) − b_k)², pulling σ(z) to the codes it gives
    decorrelation_weight=0.0,  # not in the paper: weight of the mean squared correlation between two bits
)
RANKINGS = ("weighted", "hamming")


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for DRSCH with its defaults (for config files); DSCH: ``laplacian_weight=0``."""
    return base.method_config("drsch", DEFAULTS, overrides, label="DRSCH")


def _get(config, key):
    return config.method.get(key, DEFAULTS[key])


class DRSCHNet(nn.Module):
    """``images -> {'features', 'hash_pre' z, 'hash' σ(z), 'weighted' w⊙σ(z), 'bit_weights' [B, L]}``
    (+ ``'train_step'`` [B] int32 in training when ``track_steps``)."""

    backbone: nn.Module
    bits: int
    track_steps: bool = False
    hash_bn: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = self.backbone(x, train=train)["features"]
        h = HashLayer(self.bits, "sigmoid", use_bn=self.hash_bn, dtype=self.dtype, name="hash")(f, train=train)
        w = self.param("bit_weights", nn.initializers.ones, (self.bits,), jnp.float32)
        batch = f.shape[0]
        out = {"features": f, "hash_pre": h.pre, "hash": h.act, "weighted": h.act * w[None, :],
               "bit_weights": jnp.broadcast_to(w[None, :], (batch, self.bits))}
        if self.track_steps:
            count = self.variable("batch_stats", "train_steps", lambda: jnp.zeros((), jnp.int32))
            if train:
                out["train_step"] = jnp.broadcast_to(count.value, (batch,))
                if not self.is_initializing():
                    count.value = count.value + 1
        return out


def build_model(config, info) -> DRSCHNet:
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    backbone = models.get_backbone(config.model.backbone, dtype=dtype, **kwargs)
    schedule = _get(config, "margin_schedule")
    if schedule not in ("fixed", "linear"):
        raise config_lib.ConfigError(f"config.method.margin_schedule={schedule!r}: use 'fixed' or 'linear'")
    return DRSCHNet(backbone=backbone, bits=int(config.model.bits), track_steps=schedule == "linear",
                    hash_bn=bool(_get(config, "hash_bn")), dtype=dtype)


def margin_at(config, bits: int, step=None):
    """The triplet margin (in relaxed weighted Hamming units) at training ``step``."""
    end = float(_get(config, "margin")) * bits
    if _get(config, "margin_schedule") == "fixed" or step is None:
        return end
    start = float(_get(config, "margin_start")) * bits
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(1, int(_get(config, "margin_ramp_steps"))), 0.0, 1.0)
    return start + (end - start) * frac


def loss(outputs, batch, config, aux):
    h = outputs["weighted"]
    bits = h.shape[-1]
    labels = batch["label"]
    step = outputs["train_step"][0] if "train_step" in outputs else None
    margin = margin_at(config, bits, step)
    tri = losses.weighted_triplet_ranking_loss(h, labels, margin, mining=str(_get(config, "triplet_mining")))
    total = tri
    logs = {"triplet": tri, "margin": jnp.asarray(margin, jnp.float32)}
    beta = float(_get(config, "laplacian_weight"))
    if beta:
        reg = losses.laplacian_regularizer(h, labels=labels)
        total = total + beta * reg
        logs["laplacian"] = reg
    qw = config_lib.nonnegative("method.quant_weight", _get(config, "quant_weight"))
    if qw:
        quant = losses.quantization_loss(outputs["hash"], (outputs["hash_pre"] > 0).astype(jnp.float32))
        total = total + qw * quant
        logs["quant"] = quant
    dw = config_lib.nonnegative("method.decorrelation_weight", _get(config, "decorrelation_weight"))
    if dw:
        dec = bit_correlation_penalty(outputs["hash"])
        total = total + dw * dec
        logs["decorrelation"] = dec
    wd = float(_get(config, "bit_weight_decay"))
    if wd:
        w = outputs["bit_weights"][0]
        total = total + 0.5 * wd * jnp.sum(w * w)
        logs["w_mean"] = jnp.mean(jnp.abs(w))
    return total, logs


def bit_correlation_penalty(codes, eps: float = 1e-4) -> jax.Array:
    r"""Mean squared correlation between two different bits of the relaxed codes over the batch.

    With ``c = codes − mean_i codes`` (``[B, L]``), ``C = cᵀc / B`` and ``R_kl = C_kl / √((C_kk + ε)(C_ll + ε))``::

        P = 1 / (L (L − 1)) · Σ_{k ≠ l} R_kl²

    0 when the bits vary independently over the batch, 1 when every bit repeats one other (up to sign). ``ε``
    keeps a bit that is constant over the batch from dividing by 0. Redundant bits split the images the same
    way and add nothing to a code; this is the independence term of Deep Hashing (Liong et al., CVPR 2015,
    ``‖(1/N) B Bᵀ − I‖²``) on the correlation, so it does not depend on how saturated a bit is.
    """
    x = jnp.asarray(codes, jnp.float32)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"bit_correlation_penalty: codes must be [B, L >= 2], got shape {x.shape}")
    c = x - jnp.mean(x, axis=0, keepdims=True)
    cov = c.T @ c / x.shape[0]
    sd = jnp.sqrt(jnp.diagonal(cov) + eps)
    r = cov / (sd[:, None] * sd[None, :])
    bits = x.shape[1]
    off = jnp.sum(jnp.square(r)) - jnp.sum(jnp.square(jnp.diagonal(r)))
    return off / (bits * (bits - 1))


def bit_order(bit_weights) -> jax.Array:
    """Bit indices sorted by decreasing ``|w|`` (ties: lower index first): ``jhash.search.top_weight_bits(w, L)``."""
    w = jnp.asarray(bit_weights, jnp.float32)
    return search_lib.top_weight_bits(w, int(w.shape[0]))


def encode(outputs, config):
    """``{'id': bits by decreasing |w|, 'top<m>': the m most significant bits}`` as uint8 {0, 1}."""
    bits = (outputs["hash_pre"] > 0).astype(jnp.uint8)
    order = bit_order(outputs["bit_weights"][0])
    ordered = jnp.take(bits, order, axis=1)
    codes = {"id": ordered}
    for m in _get(config, "eval_bits"):
        m = int(m)
        if 0 < m < bits.shape[1]:
            codes[f"top{m}"] = ordered[:, :m]
    return codes


def code_bit_weights(bit_weights, config) -> dict[str, np.ndarray]:
    """The weight of every bit of every code :func:`encode` produces, in the code's bit order:
    ``{'id': w sorted by decreasing |w|, 'top<m>': its first m}`` (float32 numpy)."""
    w = np.asarray(bit_weights, np.float32).reshape(-1)
    ordered = w[np.asarray(bit_order(w))]
    out = {"id": ordered}
    for m in _get(config, "eval_bits"):
        m = int(m)
        if 0 < m < w.shape[0]:
            out[f"top{m}"] = ordered[:m]
    return out


def model_search_params(variables, config) -> dict:
    """Search parameters read from the trained network: ``{"bit_weights": {code name: [L_code] weights}}``
    (:func:`code_bit_weights` of the learnt ``w``), what :func:`search` needs to rank by weighted affinity."""
    try:
        w = variables["params"]["bit_weights"]
    except (KeyError, TypeError) as e:
        raise ValueError("DRSCH model_search_params: the variables have no params/bit_weights "
                         "(not a DRSCH network?)") from e
    return {"bit_weights": {k: v.tolist() for k, v in code_bit_weights(np.asarray(w), config).items()}}


def _weights_for(search_params, name: str, n_bytes: int) -> np.ndarray:
    table = (search_params or {}).get("bit_weights") or {}
    if name not in table:
        raise ValueError(f"DRSCH search: search_params has no bit weights for code {name!r} (has "
                         f"{sorted(table)}); pass model_search_params(variables, config) of the trained network")
    w = np.asarray(table[name], np.float32)
    if w.ndim != 1 or -(-w.shape[0] // 8) != n_bytes:
        raise ValueError(f"DRSCH search: {w.shape} bit weights for code {name!r} do not match its packed width "
                         f"of {n_bytes} bytes")
    return w


def search(q_codes, g_codes, search_params, config, *, k: int = 10) -> dict:
    """Evaluator hook: DRSCH's retrieval by weighted Hamming affinity on the code ``config.eval.code``.

    Returns ``{"distances": D, "ms_per_query": t}``: ``D`` the weighted Hamming distances ``[nq, ng]`` as a
    :class:`jhash.search.streamed.LazyRows` (computed block by block while the metrics read it; a stable
    sort of a row is the affinity ranking), ``t`` the wall time of the exact top-``k`` search per query.
    With ``config.method.ranking='hamming'`` it returns ``{}`` (the evaluator's plain Hamming search).
    """
    ranking = str(_get(config, "ranking"))
    if ranking not in RANKINGS:
        raise config_lib.ConfigError(f"config.method.ranking={ranking!r}: use one of {RANKINGS}")
    if ranking == "hamming":
        return {}
    name = config.eval.code if config.eval.code in q_codes else "id"
    q, g = np.asarray(q_codes[name]), np.asarray(g_codes[name])
    w = _weights_for(search_params, name, int(q.shape[1]))
    distances = search_lib.weighted_hamming_matrix(q, g, w)
    ms = None
    if len(q):
        kk = min(k, len(g))
        search_lib.weighted_hamming_topk(q, g, w, kk)  # warm-up: compiles the timed call's shapes
        start = time.perf_counter()
        search_lib.weighted_hamming_topk(q, g, w, kk)
        ms = 1000.0 * (time.perf_counter() - start) / len(q)
    return {"distances": distances, "ms_per_query": ms}
