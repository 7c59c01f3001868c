"""SSR + AAB + AFR: hashing person ReID with self-distilling smooth relaxation, attribute-guided attention
and attribute-first fast retrieval (Jin et al. 2021; cleaned in ``docs/methods.md`` §5).

- Model (§4.1, Fig. 1; :mod:`jhash.models.pcb`): a shared trunk (ResNet ``stem..layer2``) then two copies
  of the remaining layers, the **teacher** and the **student** branch. Each branch cuts its map into 6
  horizontal stripes (local) and pools the AAB-refined map (global, :mod:`jhash.models.attention`); 1×1
  reductions (+ BN, ``bn=True``) give 7 real descriptors per branch, ``6 × L/8 + L/4 = L`` bits
  (2048 = 6 × 256 + 512). Each descriptor ``s`` goes through the relaxation ``relaxation`` (SSR: none,
  :mod:`jhash.losses.relaxations`) and a bias-free ID classifier; 30 (``A``) two-way attribute classifiers
  read each branch's global descriptor.
- Loss (eq. 14), over the 14 vectors (7 per branch), the 7 teacher/student pairs and the 2 global vectors::

      1/14 Σ BH-triplet(u / sqrt(dim), margin 0.3) + 1/14 Σ CE(ID logits)
    + α/7 Σ ||sgn(S^t) - S^s||_1      (relaxation="ssr"; α = 0.3 with BN, 0.7 without; teacher stop-gradient)
    + β/2 Σ L_attr                     (eqs. 3-4, β = 0.3; only when the dataset has attributes)

  The relaxation zoo of Table 6 (``relaxation`` = ``sigmoid``, ``hardsigmoid``, ``tanh``, ``hardtanh``,
  ``dsh`` (+ ``dsh_weight`` × DSH regulariser), ``ssr``; each with ``bn`` on or off) keeps the rest fixed.
- ``encode``: ``"id"``: the student's 7 descriptors concatenated and binarised by eq. 1 (``+1`` iff > 0),
  ``int8 [B, L]``; ``"attr"``: the student's attribute codes (eq. 5, padded to a multiple of 8 bits with a
  constant bit), when the dataset has attributes.
- ``fit_search``: the AFR window by the w rule on the validation split (leave-one-out, target 97 %), stored
  as ``{"afr": True, "w", "w_fraction", ...}``, plus (``afr_window`` 'protocol', 'gallery' or 'recall') a
  sample of the validation codes with their identities and camera ids. ``search`` runs
  :mod:`jhash.search.attribute_first`: with ``afr_window='protocol'`` (the default), ``'gallery'`` or
  ``'recall'`` the first stage ranks by the attribute code followed by :func:`prefix_bits` bits of the ID
  code (:func:`first_codes`) and the window is fitted against the searched gallery with the stored
  validation codes (:func:`search_window`: keeping exhaustive search's rank-1 matches under the Market
  protocol, the w rule among that gallery, or a top-k recall target); with
  ``afr_window='rule'`` (the paper) the first stage is the attribute code and ``w = ceil(w_fraction · gallery
  size)``; ``afr_w`` fixes the window; plain exhaustive search when AFR is off (``afr=False`` or no
  attributes, e.g. CUHK03-NP).
``config.method`` fields: see :data:`DEFAULTS`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jhash import config as config_lib
from jhash.losses.attributes import attribute_codes, binary_attribute_loss
from jhash.losses.classification import softmax_cross_entropy
from jhash.losses.metric import batch_hard_triplet_loss
from jhash.losses.relaxations import RELAXATIONS, dsh_regularizer, relax, ssr_distillation_loss
from jhash.models.pcb import TwoBranchPCB, split_bits, two_branch_backbones
from jhash.methods import base

SEARCH = "attribute_first"
BRANCHES = ("teacher", "student")

DEFAULTS = dict(
    parts=6,  # horizontal stripes (PCB)
    relaxation="ssr",  # 'ssr' | 'sigmoid' | 'hardsigmoid' | 'tanh' | 'hardtanh' | 'dsh' | 'sign_ste' | 'none'
    bn=True,  # BN after each 1x1 reduction
    alpha=None,  # SSR weight; None -> 0.3 with BN, 0.7 without
    beta=0.3,  # attribute loss weight
    attributes=True,  # learn binary attributes when the dataset has them
    attention=True,  # AAB on the global feature map
    reduction=8,  # AAB channel reduction r
    attr_sigmoid=False,  # squash attribute logits by a sigmoid before the 2-way softmax (Fig. 3 literally)
    ce_weight=1.0,
    triplet_weight=1.0,
    triplet_margin=0.3,
    triplet_normalize=True,  # triplet on u / sqrt(dim) (binary codes have unit norm)
    label_smoothing=0.0,
    ssr_reduction="mean",  # 'mean' over elements | 'sum' per-row L1 norm
    dsh_weight=0.1,  # relaxation='dsh' only
    split_at=None,  # small_cnn only: blocks in the shared trunk (default half)
    afr=True,  # attribute-first search at evaluation (needs attributes)
    afr_target=0.97,  # the w rule's rank-w accuracy
    afr_w=0,  # a fixed window (> 0) instead of the fitted one
    afr_window="protocol",  # AFR_WINDOWS: 'protocol' | 'gallery' | 'recall' (coarse first codes, window fitted
    # on the searched gallery: bench/afr.py) | 'rule' (the paper: attribute codes, the val split's window share)
    afr_prefix_bits=None,  # not 'rule': ID bits after the attribute code in the first code (0: none; None: 88
    # per 2048 ID bits, rounded down to a multiple of 8 and of parts + 2: prefix_bits)
    afr_recall_target=0.95,  # afr_window='recall': share of the exhaustive ID top-k the window keeps
    afr_recall_k=10,  # afr_window='recall': that top-k
    afr_confidence=0.95,  # afr_window='recall' / 'protocol': the target holds for the lower confidence bound
    afr_match_target=0.85,  # afr_window='protocol': share of the exhaustive search's protocol matches kept
    afr_match_k=1,  # afr_window='protocol': the matches among the first k valid items of exhaustive search
    afr_val_queries=512,  # 'gallery' / 'recall': at most this many validation codes stored with the fit
)

#: ``afr_window``: how the AFR window is chosen (see :func:`fit_search` and :func:`search_window`).
AFR_WINDOWS = ("gallery", "protocol", "recall", "rule")


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for SSR with its defaults (for config files)."""
    return base.method_config("ssr", DEFAULTS, overrides, label="SSR")


def _get(config, key):
    value = config.method.get(key, DEFAULTS[key])
    if key == "alpha" and value is None:
        return 0.3 if bool(_get(config, "bn")) else 0.7
    return value


def vector_names(parts: int) -> list[str]:
    """Names of a branch's vectors: ``['p0', ..., 'p{parts-1}', 'g']``."""
    return [f"p{i}" for i in range(parts)] + ["g"]


class SSRNet(nn.Module):
    """``images -> {'<branch>/<vector>/pre' (real descriptor), '<branch>/<vector>/code' (relaxed),
    '<branch>/<vector>/logits', '<branch>/attr_logits' [B, A, 2] (when num_attributes > 0)}`` for the
    branches ``teacher``, ``student`` and vectors ``p0..p5, g``."""

    pcb: TwoBranchPCB
    num_classes: int
    num_attributes: int = 0
    relaxation: str = "ssr"
    attr_sigmoid: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        heads = self.pcb(x, train=train)
        out = {}
        for b in BRANCHES:
            h = heads[b]
            vectors = {f"p{i}": h["local"][:, i] for i in range(h["local"].shape[1])}
            vectors["g"] = h["global"]
            for v, s in vectors.items():
                u = relax(s, self.relaxation)
                logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                                  kernel_init=nn.initializers.normal(0.001), name=f"{b}_classifier_{v}")(u)
                out[f"{b}/{v}/pre"], out[f"{b}/{v}/code"] = s, u
                out[f"{b}/{v}/logits"] = logits.astype(jnp.float32)
            if self.num_attributes:
                z = nn.Dense(2 * self.num_attributes, dtype=self.dtype, name=f"{b}_attributes")(out[f"{b}/g/code"])
                z = z.astype(jnp.float32).reshape(z.shape[0], self.num_attributes, 2)
                out[f"{b}/attr_logits"] = jax.nn.sigmoid(z) if self.attr_sigmoid else z
        return out


def build_model(config, info) -> SSRNet:
    if int(info.num_classes) < 1:
        raise ValueError(f"SSR needs training identities for its classifiers; dataset {info.name!r} has num_classes=0")
    relaxation = str(_get(config, "relaxation"))
    if relaxation not in RELAXATIONS:
        raise ValueError(f"config.method.relaxation must be one of {sorted(RELAXATIONS)}, got {relaxation!r}")
    parts = int(_get(config, "parts"))
    local_bits, global_bits = split_bits(int(config.model.bits), parts)
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    split_at = _get(config, "split_at")
    trunk, teacher, student = two_branch_backbones(config.model.backbone, dtype=dtype,
                                                   split_at=None if split_at is None else int(split_at), **kwargs)
    pcb = TwoBranchPCB(trunk=trunk, teacher_branch=teacher, student_branch=student, local_bits=local_bits,
                       global_bits=global_bits, parts=parts, use_bn=bool(_get(config, "bn")),
                       attention=bool(_get(config, "attention")), reduction=int(_get(config, "reduction")), dtype=dtype)
    num_attr = int(info.num_attributes) if bool(_get(config, "attributes")) else 0
    return SSRNet(pcb=pcb, num_classes=int(info.num_classes), num_attributes=num_attr, relaxation=relaxation,
                  attr_sigmoid=bool(_get(config, "attr_sigmoid")), dtype=dtype)


def loss(outputs, batch, config, aux):
    """Eq. 14 (module docstring); logs every term."""
    names = vector_names(int(_get(config, "parts")))
    labels = batch["label"]
    smoothing = float(_get(config, "label_smoothing"))
    margin = float(_get(config, "triplet_margin"))
    normalize = bool(_get(config, "triplet_normalize"))
    tri, ce = [], []
    for b in BRANCHES:
        for v in names:
            u = outputs[f"{b}/{v}/code"]
            tri.append(batch_hard_triplet_loss(u / jnp.sqrt(u.shape[-1]) if normalize else u, labels, margin=margin))
            ce.append(softmax_cross_entropy(outputs[f"{b}/{v}/logits"], labels, label_smoothing=smoothing))
    tri_m, ce_m = sum(tri) / len(tri), sum(ce) / len(ce)
    total = float(_get(config, "triplet_weight")) * tri_m + float(_get(config, "ce_weight")) * ce_m
    logs = {"triplet": tri_m, "ce": ce_m}
    relaxation = str(_get(config, "relaxation"))
    if relaxation == "ssr":
        red = str(_get(config, "ssr_reduction"))
        ld = sum(ssr_distillation_loss(outputs[f"student/{v}/pre"], outputs[f"teacher/{v}/pre"], reduction=red)
                 for v in names) / len(names)
        total = total + float(_get(config, "alpha")) * ld
        logs["ssr_distill"] = ld
    elif relaxation == "dsh":
        reg = sum(dsh_regularizer(outputs[f"{b}/{v}/code"]) for b in BRANCHES for v in names) / (2 * len(names))
        total = total + float(_get(config, "dsh_weight")) * reg
        logs["dsh_reg"] = reg
    if "student/attr_logits" in outputs:
        if "attributes" not in batch:
            raise ValueError("the SSR model predicts attributes but the batch has no 'attributes' "
                             "(set config.method.attributes=False for a dataset without them)")
        attrs = batch["attributes"].astype(jnp.int32)
        la = sum(binary_attribute_loss(outputs[f"{b}/attr_logits"], attrs) for b in BRANCHES) / len(BRANCHES)
        total = total + float(_get(config, "beta")) * la
        logs["attr"] = la
    return total, logs


def encode(outputs, config):
    names = vector_names(int(_get(config, "parts")))
    s = jnp.concatenate([outputs[f"student/{v}/pre"] for v in names], axis=-1)
    codes = {"id": jnp.where(s > 0, 1, -1).astype(jnp.int8)}
    if "student/attr_logits" in outputs:
        codes["attr"] = attribute_codes(outputs["student/attr_logits"])
    return codes


def load_pretrained(variables, path, config):
    """Torchvision ResNet weights into the trunk (``stem..layer2``) and both branches (``layer3..layer4``)."""
    from jhash import models

    for part in ("trunk", "teacher_branch", "student_branch"):
        variables = models.load_pretrained(variables, path, prefix=f"pcb/{part}", allow_extra=True)
    return variables


def _afr_enabled(config, names) -> bool:
    return bool(_get(config, "afr")) and "attr" in names


def _packed(codes_by_name, name):
    from jhash.search import pack_codes

    a = np.asarray(codes_by_name[name])
    return a if a.dtype == np.uint8 else np.asarray(pack_codes(a))


def prefix_bit_positions(total_bits: int, bits: int, parts: int) -> np.ndarray:
    """Bit positions of a ``bits``-long code cut from the ``total_bits`` SSR ID code (``parts`` stripes of
    ``local`` bits, then ``2 · local`` global bits): the first bits of every stripe and of the global vector,
    the paper's shorter layout (2048 = 6 × 256 + 512 -> 512 = 6 × 64 + 128). ``bits`` must split the same way
    (:func:`jhash.models.pcb.split_bits`)."""
    local, _ = split_bits(total_bits, parts)
    local_s, global_s = split_bits(bits, parts)
    idx = [i * local + j for i in range(parts) for j in range(local_s)]
    return np.asarray(idx + [parts * local + j for j in range(global_s)], np.int64)


def _afr_window_kind(config) -> str:
    kind = str(_get(config, "afr_window"))
    if kind not in AFR_WINDOWS:
        raise config_lib.ConfigError(f"config.method.afr_window={kind!r}: use one of {AFR_WINDOWS}")
    return kind


#: ``afr_prefix_bits=None``: this many prefix bits per 2048 ID bits (measured best in bench/afr.py)
AUTO_PREFIX_PER_2048 = 88


def prefix_bits(config, total_bits: int) -> int:
    """The ID bits in AFR's first code for an ID code of ``total_bits``: 0 with ``afr_window='rule'``,
    ``afr_prefix_bits`` when set, else ``88 · total_bits / 2048`` rounded down to a multiple of 8 and of
    ``parts + 2`` (so that it splits into stripes like the code, :func:`prefix_bit_positions`), 0 when that
    leaves nothing below ``total_bits``."""
    if _afr_window_kind(config) == "rule":
        return 0
    fixed = _get(config, "afr_prefix_bits")
    if fixed is not None:
        return int(fixed)
    step = math.lcm(8, int(_get(config, "parts")) + 2)
    bits = (AUTO_PREFIX_PER_2048 * int(total_bits) // 2048) // step * step
    return bits if 0 < bits < total_bits else 0


def first_codes(attr, id_codes, config) -> np.ndarray:
    """The first-stage codes of AFR: the attribute code followed by :func:`prefix_bits` ID bits
    (:func:`prefix_bit_positions`), or the attribute code itself with ``afr_window='rule'`` (the paper)."""
    from jhash.search.attribute_first import coarse_codes

    total = 8 * np.asarray(id_codes).shape[1]
    bits = prefix_bits(config, total)
    if bits <= 0:
        return np.asarray(attr)
    if bits >= total or bits % 8:
        raise config_lib.ConfigError(f"config.method.afr_prefix_bits={bits}: expected a multiple of 8 below the ID "
                                     f"code's {total} bits (or 0 for the attribute code alone)")
    return coarse_codes(attr, id_codes, prefix_bit_positions(total, bits, int(_get(config, "parts"))))


def fit_search(codes_by_name, pids, config, camids=None) -> dict:
    """The AFR window by the w rule on validation codes (every image a query against the others; reported in
    every case), and unless ``afr_window='rule'`` a sample of the validation codes (with their identities
    and, given ``camids``, camera ids), the queries of the window fit against the searched gallery
    (:func:`search_window`). ``afr_window='protocol'`` needs ``camids`` (the trainer passes them); without
    them every validation image counts as its own camera, with a warning."""
    import warnings

    from jhash.search import dto
    from jhash.search.attribute_first import fit_window

    if not _afr_enabled(config, codes_by_name):
        return {"afr": False}
    attr = _packed(codes_by_name, "attr")
    if camids is not None and np.asarray(camids).shape != (len(attr),):
        raise ValueError(f"camids: expected one camera id per validation image [{len(attr)}], "
                         f"got shape {np.asarray(camids).shape}")
    if camids is None and _afr_window_kind(config) == "protocol":
        warnings.warn("SSR fit_search: afr_window='protocol' without camids; every validation image counts as its "
                      "own camera (same-camera matches are not excluded)")
    rule = fit_window(attr, attr, pids, pids, target=float(_get(config, "afr_target")), exclude_self=True)
    params = {"afr": True, "w": rule.w, "w_fraction": rule.fraction, "target": rule.target,
              "attr_rank_accuracy": rule.accuracy, "val_queries": rule.num_queries,
              "val_gallery_size": rule.gallery_size, "window": _afr_window_kind(config)}
    if params["window"] != "rule":
        ident = _packed(codes_by_name, "id")
        n_keep = min(int(_get(config, "afr_val_queries")), len(attr))
        rows = np.sort(np.random.default_rng(int(config.seed)).choice(len(attr), n_keep, replace=False))
        params["fit_queries"] = dto.encode_packed({"attr": attr[rows], "id": ident[rows]})
        params["fit_pids"] = np.asarray(pids)[rows].astype(np.int64).tolist()
        if camids is not None:
            params["fit_camids"] = np.asarray(camids)[rows].astype(np.int64).tolist()
    return params


def window(search_params, config, gallery_size: int) -> int:
    """The w rule's window for a gallery: ``afr_w`` if set, else the fitted share of the gallery, else the
    whole gallery."""
    from jhash.search.attribute_first import window_for_gallery

    fixed = int(_get(config, "afr_w") or 0)
    if fixed > 0:
        return min(fixed, gallery_size)
    params = search_params or {}
    if "w_fraction" in params:
        return window_for_gallery(float(params["w_fraction"]), gallery_size)
    return gallery_size


def search_window(g_first, g_id, search_params, config) -> tuple[int, dict]:
    """``(w, details)``: the window of the AFR search over a gallery with first codes ``g_first``
    (:func:`first_codes`). ``afr_w > 0`` fixes it. With stored validation codes it is fitted against this
    gallery (index-building work): ``afr_window='protocol'``: the smallest window keeping
    ``afr_match_target`` of the validation queries' exhaustive rank-1 matches under the Market protocol
    (:func:`jhash.search.attribute_first.fit_match_window`, at ``afr_confidence``; the w rule's window when the
    validation split has no cross-camera match); ``'gallery'``: the w rule measured among this gallery
    (:func:`jhash.search.attribute_first.fit_window_in_gallery`: rank-w accuracy of a true match
    ``>= afr_target``, the validation images being the only labelled items); ``'recall'``: the smallest window
    keeping ``afr_recall_target`` of the validation queries' exhaustive ID top-``afr_recall_k`` at
    ``afr_confidence`` (:func:`jhash.search.attribute_first.fit_rank_window`, no labels). Otherwise the w
    rule's share of the gallery (:func:`window`)."""
    from jhash.search import dto
    import warnings

    from jhash.search.attribute_first import NoMatchError, fit_match_window, fit_rank_window, fit_window_in_gallery

    ng = len(g_first)
    params = search_params or {}
    stored = params.get("fit_queries")
    kind = _afr_window_kind(config)
    k = int(_get(config, "afr_recall_k"))
    if int(_get(config, "afr_w") or 0) > 0 or kind == "rule" or not stored or (kind == "recall" and ng <= k):
        return window(search_params, config, ng), {"window": "rule"}
    val = dto.decode_packed(stored)
    first = first_codes(val["attr"], val["id"], config)
    if kind == "gallery" and params.get("fit_pids") is not None:
        rule = fit_window_in_gallery(first, np.asarray(params["fit_pids"]), g_first,
                                     target=float(_get(config, "afr_target")))
        w = min(rule.w, ng)
        return w, {"window": "gallery", "w": w, "fraction": w / ng, "val_accuracy": rule.accuracy}
    if kind == "protocol" and params.get("fit_pids") is not None:
        pids = np.asarray(params["fit_pids"], np.int64)
        cams = np.asarray(params.get("fit_camids", np.arange(len(pids))), np.int64)
        try:
            fit = fit_match_window(first, val["id"], pids, cams, g_first, g_id, k=int(_get(config, "afr_match_k")),
                                   target=float(_get(config, "afr_match_target")),
                                   confidence=float(_get(config, "afr_confidence")))
        except NoMatchError as e:  # nothing to keep: the w rule's share of the gallery
            warnings.warn(f"SSR search_window: {e}; using the w rule's window")
            return window(search_params, config, ng), {"window": "rule"}
        w = min(fit.w, ng)
        return w, {"window": "protocol", "w": w, "fraction": w / ng, "val_kept": fit.kept,
                   "val_kept_lower": fit.kept_lower, "val_matches": fit.num_matches}
    fit = fit_rank_window(first, g_first, val["id"], g_id, k=k, target=float(_get(config, "afr_recall_target")),
                          confidence=float(_get(config, "afr_confidence")))
    return fit.w, {"window": "recall", "w": fit.w, "fraction": fit.fraction, "val_recall": fit.recall}


def search(q_codes, g_codes, search_params, config, *, k: int = 10) -> dict:
    """Evaluator hook: AFR keys of every query (``distances=``: a lazily computed
    :class:`jhash.search.streamed.LazyRows`, never an ``[nq, ng]`` matrix) and AFR top-``k`` ms per query;
    ``{}`` (exhaustive search on ``"id"``) when AFR is off."""
    from jhash.search import attribute_first as afr

    if not _afr_enabled(config, q_codes) or (search_params or {}).get("afr") is False:
        return {}
    qa, ga, qi, gi = (np.asarray(x) for x in (q_codes["attr"], g_codes["attr"], q_codes["id"], g_codes["id"]))
    qf, gf = first_codes(qa, qi, config), first_codes(ga, gi, config)
    w, _ = search_window(gf, gi, search_params, config)
    keys = afr.attribute_first_key_matrix(qf, gf, qi, gi, w)
    backend = "scan" if gf.shape[1] != ga.shape[1] and native_available() else "auto"
    ms = afr.time_topk(qf, qi, afr.AFRIndex.build(gf, gi), w, min(k, len(gf)), backend=backend) if len(qf) else None
    return {"distances": keys, "ms_per_query": ms}


def native_available() -> bool:
    """Whether jhash's native CPU kernels are built (the AFR 'scan' path needs them)."""
    from jhash.search import native

    return native.is_available()
