r"""DRSCH / DSCH — bit-scalable deep hashing with regularised similarity learning (Zhang et al., TIP 2015).

As the paper's abstract and the authors' public Caffe code (``/work/shared/notes/methods.md`` §3):

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
- **Weighted Hamming affinity** ranking, the paper's alternative to plain Hamming ranking:
  :func:`weighted_hamming_affinity` ``A(q, g) = Σ_k w_k² [b_qk = b_gk]`` and the blocked
  :func:`weighted_hamming_topk`.

``config.method`` fields (defaults in :data:`DEFAULTS`): ``margin`` (0.25 per bit), ``margin_schedule``
('fixed' | 'linear'), ``margin_start`` (0.05), ``margin_ramp_steps`` (1000), ``triplet_mining`` ('all'),
``laplacian_weight`` (1e-3; 0 = DSCH), ``bit_weight_decay`` (5e-4), ``eval_bits`` ((16, 32)).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jhash import config as config_lib
from jhash import losses, models, search
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
)


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
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = self.backbone(x, train=train)["features"]
        h = HashLayer(self.bits, "sigmoid", use_bn=False, dtype=self.dtype, name="hash")(f)
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
    return DRSCHNet(backbone=backbone, bits=int(config.model.bits), track_steps=schedule == "linear", dtype=dtype)


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
    wd = float(_get(config, "bit_weight_decay"))
    if wd:
        w = outputs["bit_weights"][0]
        total = total + 0.5 * wd * jnp.sum(w * w)
        logs["w_mean"] = jnp.mean(jnp.abs(w))
    return total, logs


def bit_order(bit_weights) -> jax.Array:
    """Bit indices sorted by decreasing ``|w|`` (ties: lower index first): ``jhash.search.top_weight_bits(w, L)``."""
    w = jnp.asarray(bit_weights, jnp.float32)
    return search.top_weight_bits(w, int(w.shape[0]))


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


def weighted_hamming_affinity(query_codes, gallery_codes, bit_weights) -> jax.Array:
    r"""DRSCH's weighted Hamming affinity :math:`A(q, g) = \sum_k w_k^2\, [b_{qk} = b_{gk}]`.

    Args:
      query_codes: ``[Q, L]`` {0,1} (or ±1) codes, any numeric dtype.
      gallery_codes: ``[G, L]`` codes of the same alphabet.
      bit_weights: ``[L]`` weights ``w`` (in the codes' bit order).

    Returns:
      ``[Q, G]`` float32, larger = more similar.
    """
    q = jnp.asarray(query_codes)
    g = jnp.asarray(gallery_codes)
    w = jnp.asarray(bit_weights, jnp.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"weighted_hamming_affinity: 'query_codes' {q.shape} and 'gallery_codes' {g.shape} must be [Q, L] and [G, L]")
    if w.shape != (q.shape[1],):
        raise ValueError(f"weighted_hamming_affinity: 'bit_weights' must have shape ({q.shape[1]},), got {w.shape}")
    qb = (q > 0).astype(jnp.float32)  # {0,1} and ±1 alike: the "1" symbol is the positive one
    gb = (g > 0).astype(jnp.float32)
    w2 = w * w
    return (qb * w2) @ gb.T + ((1.0 - qb) * w2) @ (1.0 - gb).T


@functools.partial(jax.jit, static_argnames=("k",))
def _block_topk(q, g, w, k):
    scores = weighted_hamming_affinity(q, g, w)
    return jax.lax.top_k(scores, k)


def weighted_hamming_topk(query_codes, gallery_codes, bit_weights, k: int, block_size: int = 65536):
    """Top-``k`` gallery items per query by :func:`weighted_hamming_affinity` (descending; ties by lower
    gallery index), streaming the gallery in blocks of ``block_size`` rows so memory stays ``O(Q·block)``.

    Returns ``(scores [Q, k] float32, indices [Q, k] int32)`` as numpy arrays.
    """
    q = np.asarray(query_codes)
    g = np.asarray(gallery_codes)
    if k < 1 or k > len(g):
        raise ValueError(f"weighted_hamming_topk: 'k' must be in [1, {len(g)}], got {k}")
    if block_size < 1:
        raise ValueError(f"weighted_hamming_topk: 'block_size' must be >= 1, got {block_size}")
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(g), block_size):
        block = g[start:start + block_size]
        kk = min(k, len(block))
        s, i = _block_topk(q, block, bit_weights, kk)
        s = np.concatenate([best_s, np.asarray(s)], axis=1)
        i = np.concatenate([best_i, np.asarray(i, np.int64) + start], axis=1)
        # stable sort by (-score, index): earlier blocks hold lower indices and come first among ties
        order = np.lexsort((i, -s), axis=1)[:, :k]
        best_s = np.take_along_axis(s, order, axis=1)
        best_i = np.take_along_axis(i, order, axis=1)
    return best_s, best_i.astype(np.int32)
