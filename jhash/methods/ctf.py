"""CtF: All-in-One (AiO) code pyramid, Distance Threshold Optimisation and coarse-to-fine search.

Wang et al., "Faster Person Re-Identification", ECCV 2020 (cleaned in ``docs/methods.md`` §4).

- Model (AiO, eqs. 1-2): ``f = backbone(x)``; a :class:`jhash.models.pyramid.CodePyramid` gives one code per
  length in ``config.method.lengths`` (long to short, default 2048 -> 512 -> 128 -> 32): ``v_k = FC_k(v_{k-1})``,
  relaxed code ``u_k = tanh(BN(v_k))``, test code ``b_k = sign(BN(v_k))``; a bias-free ID classifier per level
  on ``u_k`` gives the logits ``z_k``.
- Loss (eq. 5), summed over the ``N`` levels for CE and triplet::

      sum_k [ ce_weight * CE_ls(z_k, y) + triplet_weight * BH-triplet(u_k / sqrt(l_k), y, margin 0.3) ]
    + prob_weight (lambda_1 = 1)    * 1/(N-1) sum_pairs probability distillation (eq. 3, T = 10)
    + sim_weight  (lambda_2 = 1000) * 1/(N-1) sum_pairs similarity distillation (eq. 4)

  with the next-longer code as the (stop-gradient) teacher of each code. Public-code options:
  ``teacher="first"`` (the longest code teaches all), ``prob_kind="symmetric_kl"`` with ``temperature=1``,
  ``sim_kind="gram"`` (row-normalised Gram MSE), ``detach_inputs=True``.
- Ablations (the paper's Table 5) through ``variant`` (:data:`VARIANTS`), or directly ``structure``: ``"pyramid"`` (CP), ``"parallel"`` (independent hash
  heads on one shared backbone feature) or ``"separate"`` (one backbone per code length: separate models);
  ``distill=False`` drops both distillation losses (SD).
- ``encode``: ``{"l2048": ..., "l512": ..., "l128": ..., "l32": ...}`` as ``±1`` int8, plus ``"id"`` (the
  longest code, used by exhaustive search and the default metrics).
- ``fit_search``: thresholds for every level but the longest, fitted on the validation split
  (``dataset.val_split``, never the test split) and saved with the final checkpoint as
  ``{"thresholds": {name: t}, "levels": [...], "fit": ...}``. ``threshold_fit='dto'``: the paper's DTO (eqs. 6-8,
  :func:`jhash.search.dto.fit_thresholds` with ``beta``, ``rho``, ``dto_model``); ``'recall'`` (the default):
  the cascade of least expected work that keeps ``recall_target`` (0.95) of the queries' exhaustive
  longest-code top-``recall_k`` at ``recall_confidence`` (a lower confidence bound: a safety margin), with a
  random candidate fetch costing ``recall_gather_bits`` and, with ``recall_choose_levels``, the levels chosen
  too (:func:`jhash.search.dto.fit_recall_thresholds`). The recall fit runs again at search time against the
  gallery being searched (:func:`search_plan`), with the scan and fetch costs of every level measured on that
  gallery (``recall_cost='measured'``) and validation codes stored by ``fit_search`` as the queries
  (``recall_queries='val'``; ``'gallery'``: a sample of the gallery's own codes, whose neighbourhoods are
  tighter than a query's; ``'fit'``: the validation-only fit).
- ``search``: :mod:`jhash.search.coarse_to_fine` with those thresholds: full-ranking CtF keys for the metrics
  (streamed: computed block by block while the metrics read them) and the top-k time per query.

``config.method`` fields: see ``DEFAULTS``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from jhash import config as config_lib
from jhash import models
from jhash.losses import distillation
from jhash.losses.classification import softmax_cross_entropy
from jhash.losses.metric import batch_hard_triplet_loss
from jhash.models.pyramid import CodePyramid, check_lengths
from jhash.methods import base

SEARCH = "coarse_to_fine"

DEFAULTS = dict(
    lengths=(2048, 512, 128, 32),
    structure="pyramid",  # 'pyramid' | 'parallel' | 'separate'
    ce_weight=1.0,
    triplet_weight=1.0,
    triplet_margin=0.3,
    label_smoothing=0.1,
    distill=True,
    prob_weight=1.0,  # lambda_1
    sim_weight=1000.0,  # lambda_2
    temperature=10.0,
    teacher="next",  # 'next' (paper) | 'first' (light-reid)
    prob_kind="ce",  # 'ce' (paper eq. 3) | 'symmetric_kl' (light-reid, use temperature=1)
    sim_kind="hamming",  # 'hamming' (paper eq. 4) | 'gram' (light-reid)
    detach_inputs=False,
    hash_bn=True,
    threshold_fit="recall",  # 'recall' (keep recall_target of the top-k) | 'dto' (the paper: DTO, eqs. 6-8)
    beta=2.0,  # DTO F_beta
    rho=1.0,  # DTO class-ratio weight: a number or 'ratio'
    dto_model="gaussian",  # 'gaussian' (paper) | 'empirical'
    recall_target=0.95,  # threshold_fit='recall': share of the exhaustive longest-code top-k to keep
    recall_k=10,  # threshold_fit='recall': that top-k
    recall_queries="val",  # threshold_fit='recall': whose top-k the search-time fit keeps (RECALL_QUERIES)
    recall_val_queries=512,  # recall_queries='val': at most this many validation codes stored with the fit
    recall_gallery_queries=200,  # recall_queries='gallery': this many gallery codes as the queries
    recall_confidence=0.95,  # > 0: the recall target holds for the lower confidence bound (a safety margin)
    recall_cost="measured",  # the search-time fit's cost model (RECALL_COSTS)
    recall_gather_bits=1536.0,  # recall_cost='bits': the cost of fetching one candidate at random, in streamed bits
    recall_choose_levels=True,  # the fit may skip shorter levels (the cheapest cascade that keeps the target)
    search_block_size=64,
    variant="",  # '' (use structure / distill) or an ablation name of VARIANTS
)
STRUCTURES = ("pyramid", "parallel", "separate")
#: The AiO ablation (the paper's Table 5): ``config.method.variant`` -> (structure, distill).
VARIANTS = {
    "separate": ("separate", False),  # separate models per code length (no CP, no SD)
    "pyramid": ("pyramid", False),  # code pyramid without self-distillation (CP)
    "pyramid_distill": ("pyramid", True),  # code pyramid + self-distillation (CP + SD, the full AiO)
    "parallel": ("parallel", False),  # independent heads on one shared backbone (reference point)
}


def method_config(**overrides) -> ml_collections.ConfigDict:
    """``config.method`` for CtF with its defaults (for config files)."""
    return base.method_config("ctf", DEFAULTS, overrides, label="CtF")


def _get(config, key):
    if key in ("structure", "distill"):
        variant = config.method.get("variant", "") or ""
        if variant:
            if variant not in VARIANTS:
                raise ValueError(f"config.method.variant must be '' or one of {sorted(VARIANTS)}, got {variant!r}")
            return VARIANTS[variant][0 if key == "structure" else 1]
    return config.method.get(key, DEFAULTS[key])


def level_names(lengths: Sequence[int]) -> list[str]:
    """Code names of a pyramid, long to short: ``(2048, 512) -> ['l2048', 'l512']``."""
    return [f"l{int(n)}" for n in check_lengths(lengths)]


class AiONet(nn.Module):
    """``images -> {'features', 'l<L>/pre', 'l<L>/code', 'l<L>/logits' for every length}``."""

    backbone: nn.Module
    lengths: Sequence[int]
    num_classes: int
    structure: str = "pyramid"
    detach_inputs: bool = False
    hash_bn: bool = True
    dtype: Any = jnp.float32
    extra_backbones: Sequence[nn.Module] = ()  # 'separate': a backbone for every length after the first

    @nn.compact
    def __call__(self, x, train: bool = False):
        lengths = check_lengths(self.lengths)
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        out = {}
        if self.structure == "pyramid":
            f = self.backbone(x, train=train)["features"]
            out["features"] = f
            levels = CodePyramid(lengths, use_bn=self.hash_bn, detach_inputs=self.detach_inputs, dtype=self.dtype,
                                 name="pyramid")(f, train=train)
        else:
            levels = []
            for k, length in enumerate(lengths):
                if k == 0:
                    f = self.backbone(x, train=train)["features"]
                    out["features"] = f
                elif self.structure == "separate":
                    if len(self.extra_backbones) != len(lengths) - 1:
                        raise ValueError(f"structure='separate' needs {len(lengths) - 1} extra backbones, "
                                         f"got {len(self.extra_backbones)}")
                    f = self.extra_backbones[k - 1](x, train=train)["features"]
                (level,) = CodePyramid((length,), use_bn=self.hash_bn, dtype=self.dtype, name=f"head{k}")(f, train=train)
                levels.append(level)
        for length, level in zip(lengths, levels):
            name = f"l{length}"
            logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                              kernel_init=nn.initializers.normal(0.001), name=f"classifier_{name}")(level.act)
            out[f"{name}/pre"] = level.pre
            out[f"{name}/code"] = level.act
            out[f"{name}/logits"] = logits.astype(jnp.float32)
        return out


def build_model(config, info) -> AiONet:
    lengths = check_lengths(_get(config, "lengths"))
    structure = str(_get(config, "structure"))
    if structure not in STRUCTURES:
        raise ValueError(f"config.method.structure must be one of {STRUCTURES}, got {structure!r}")
    if int(info.num_classes) < 1:
        raise ValueError(f"CtF needs training identities for its classifiers; dataset {info.name!r} has num_classes=0")
    dtype = config_lib.compute_dtype(config)
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("pooling", config.model.pooling)
    make = lambda: models.get_backbone(config.model.backbone, dtype=dtype, **kwargs)  # noqa: E731
    extra = tuple(make() for _ in range(len(lengths) - 1)) if structure == "separate" else ()
    return AiONet(backbone=make(), extra_backbones=extra, lengths=lengths, num_classes=int(info.num_classes), structure=structure,
                  detach_inputs=bool(_get(config, "detach_inputs")), hash_bn=bool(_get(config, "hash_bn")), dtype=dtype)


def _prob_loss(kind: str):
    if kind == "ce":
        return distillation.probability_distillation_loss
    if kind == "symmetric_kl":
        return distillation.symmetric_kl_distillation_loss
    raise ValueError(f"config.method.prob_kind must be 'ce' or 'symmetric_kl', got {kind!r}")


def _sim_loss(kind: str):
    if kind == "hamming":
        return distillation.similarity_distillation_loss
    if kind == "gram":
        return distillation.gram_distillation_loss
    raise ValueError(f"config.method.sim_kind must be 'hamming' or 'gram', got {kind!r}")


def loss(outputs, batch, config, aux):
    names = level_names(_get(config, "lengths"))
    labels = batch["label"]
    smoothing = float(_get(config, "label_smoothing"))
    margin = float(_get(config, "triplet_margin"))
    logs = {}
    ce_total = jnp.zeros((), jnp.float32)
    tri_total = jnp.zeros((), jnp.float32)
    for name in names:
        u = outputs[f"{name}/code"]
        ce = softmax_cross_entropy(outputs[f"{name}/logits"], labels, label_smoothing=smoothing)
        tri = batch_hard_triplet_loss(u / jnp.sqrt(u.shape[-1]), labels, margin=margin)
        logs[f"ce/{name}"], logs[f"triplet/{name}"] = ce, tri
        ce_total, tri_total = ce_total + ce, tri_total + tri
    total = float(_get(config, "ce_weight")) * ce_total + float(_get(config, "triplet_weight")) * tri_total
    logs["ce"], logs["triplet"] = ce_total, tri_total
    if bool(_get(config, "distill")) and len(names) > 1:
        pairs = distillation.pyramid_distillation_pairs(len(names), str(_get(config, "teacher")))
        prob_fn = _prob_loss(str(_get(config, "prob_kind")))
        sim_fn = _sim_loss(str(_get(config, "sim_kind")))
        temperature = float(_get(config, "temperature"))
        prob = distillation.mean_over_pairs(
            [prob_fn(outputs[f"{names[s]}/logits"], outputs[f"{names[t]}/logits"], temperature) for s, t in pairs])
        sim = distillation.mean_over_pairs(
            [sim_fn(outputs[f"{names[s]}/code"], outputs[f"{names[t]}/code"]) for s, t in pairs])
        total = total + float(_get(config, "prob_weight")) * prob + float(_get(config, "sim_weight")) * sim
        logs["prob_distill"], logs["sim_distill"] = prob, sim
    return total, logs


def encode(outputs, config):
    names = level_names(_get(config, "lengths"))
    codes = {name: jnp.where(outputs[f"{name}/pre"] >= 0, 1, -1).astype(jnp.int8) for name in names}
    codes["id"] = codes[names[0]]
    return codes


def _packed_levels(codes_by_name, names: list[str]) -> dict[str, np.ndarray]:
    from jhash.search.packing import pack_codes

    missing = [n for n in names if n not in codes_by_name]
    if missing:
        raise ValueError(f"codes_by_name lacks the CtF levels {missing} (has {sorted(codes_by_name)})")
    out = {}
    for n in names:
        a = np.asarray(codes_by_name[n])
        out[n] = a if a.dtype == np.uint8 and a.shape[-1] == -(-_bits(n) // 8) else np.asarray(pack_codes(a))
    return out


THRESHOLD_FITS = ("dto", "recall")
#: ``recall_queries``: the queries of the search-time recall fit against the searched gallery. ``"val"``: the
#: validation codes stored by ``fit_search``; ``"gallery"``: ``recall_gallery_queries`` codes of the gallery
#: itself; ``"fit"``: no search-time fit (the thresholds fitted on the validation split alone).
RECALL_QUERIES = ("val", "gallery", "fit")
#: ``recall_cost``: the cost model of the search-time recall fit. ``"measured"``: nanoseconds per scanned item and
#: per fetched candidate of every level, measured on the searched gallery's index on this machine
#: (:func:`jhash.search.coarse_to_fine.measure_stage_costs`; streamed bits without the native kernel);
#: ``"bits"``: streamed bits, ``recall_gather_bits`` per random fetch (also the validation-only fit's model).
RECALL_COSTS = ("measured", "bits")


def _recall_options(config) -> dict:
    """The recall fit's keyword arguments from ``config.method``."""
    return {"confidence": float(_get(config, "recall_confidence")),
            "gather_bits": float(_get(config, "recall_gather_bits")),
            "choose_levels": bool(_get(config, "recall_choose_levels"))}


def _stage_costs(g_levels, order: list[str], config):
    """The search-time fit's ``stage_costs``: measured on the gallery's CtF index (``recall_cost='measured'``
    with the native kernel), else ``None`` (streamed bits)."""
    how = str(_get(config, "recall_cost"))
    if how not in RECALL_COSTS:
        raise config_lib.ConfigError(f"config.method.recall_cost={how!r}: use one of {RECALL_COSTS}")
    if how == "bits":
        return None
    from jhash.search import coarse_to_fine

    return coarse_to_fine.measure_stage_costs(coarse_to_fine.CoarseToFineIndex.build([g_levels[m] for m in order]))


def _recall_queries(config) -> str:
    how = str(_get(config, "recall_queries"))
    if how not in RECALL_QUERIES:
        raise config_lib.ConfigError(f"config.method.recall_queries={how!r}: use one of {RECALL_QUERIES}")
    return how


def fit_search(codes_by_name, pids, config) -> dict:
    """Thresholds on the validation codes: ``{"thresholds", "levels", "fit", ...}``.

    ``threshold_fit='dto'``: DTO (CtF eqs. 6-8, :func:`jhash.search.dto.fit_thresholds` with ``beta``, ``rho``,
    ``dto_model``). ``'recall'``: the cheapest thresholds that keep ``recall_target`` of every validation
    query's exhaustive longest-code top-``recall_k`` (:func:`jhash.search.dto.fit_recall_thresholds`).
    """
    from jhash.search import dto
    from jhash.search.dto import fit_recall_thresholds, fit_thresholds

    kind = str(_get(config, "threshold_fit"))
    if kind not in THRESHOLD_FITS:
        raise config_lib.ConfigError(f"config.method.threshold_fit={kind!r}: use one of {THRESHOLD_FITS}")
    names = level_names(_get(config, "lengths"))
    if len(names) < 2:
        return {"thresholds": {}, "levels": names[::-1], "fit": kind}
    packed = _packed_levels(codes_by_name, names)
    order = names[::-1]  # short to long
    pids = np.asarray(pids)
    if kind == "recall":
        k = int(_get(config, "recall_k"))
        if pids.size <= k:
            reason = f"the validation split has {pids.size} images, too few for a top-{k} recall target"
            warnings.warn(f"CtF fit_search: {reason}; using maximal thresholds (exhaustive longest-code search)")
            return {"thresholds": {n: _bits(n) for n in order[:-1]}, "levels": order, "fit": kind, "fallback": reason}
        how = _recall_queries(config)
        fit = fit_recall_thresholds(packed, order=order, target=float(_get(config, "recall_target")), k=k,
                                    **_recall_options(config))
        params = {"thresholds": fit.thresholds, "levels": list(fit.levels), "fit": kind,
                  "recall_target": fit.target, "recall_k": fit.k, "recall_confidence": fit.confidence,
                  "val_recall": fit.recall, "val_candidates": list(fit.candidates), "all_levels": order}
        if how == "val":  # kept for the search-time fit against the searched gallery
            n_keep = min(int(_get(config, "recall_val_queries")), pids.size)
            rows = np.sort(np.random.default_rng(int(config.seed)).choice(pids.size, n_keep, replace=False))
            params["fit_queries"] = dto.encode_packed({n: packed[n][rows] for n in order})
        return params
    rho = _get(config, "rho")
    _, counts = np.unique(pids, return_counts=True)
    if counts.size < 2 or counts.max() < 2:
        reason = (f"the validation split ({pids.size} images of {counts.size} identities) has no "
                  f"{'non-relevant' if counts.size < 2 else 'relevant'} pairs to fit DTO on")
        warnings.warn(f"CtF fit_search: {reason}; using maximal thresholds (exhaustive longest-code search)")
        return {"thresholds": {n: _bits(n) for n in order[:-1]}, "levels": order, "fit": kind,
                "beta": float(_get(config, "beta")), "fallback": reason}
    thresholds = fit_thresholds(packed, np.asarray(pids), order=order, beta=float(_get(config, "beta")),
                                rho=rho if isinstance(rho, str) else float(rho), model=str(_get(config, "dto_model")))
    return {"thresholds": {k: int(v) for k, v in thresholds.items()}, "levels": order, "fit": kind,
            "beta": float(_get(config, "beta")), "rho": rho, "dto_model": str(_get(config, "dto_model"))}


def _bits(name: str) -> int:
    """The code length of a level name (``'l128'`` -> 128)."""
    return int(name[1:])


def search_thresholds(search_params, names_short_to_long: list[str]) -> dict[str, int]:
    """The thresholds to use: the fitted ones, or every threshold at its maximum (exhaustive) if none."""
    fitted = (search_params or {}).get("thresholds") or {}
    return {n: int(fitted.get(n, _bits(n))) for n in names_short_to_long[:-1]}


def gallery_fit(g_levels, config, search_params=None):
    """The recall-targeted fit at search time against the gallery being searched (index-building work: no
    labels are needed), a :class:`jhash.search.dto.RecallFit`, or ``None`` when there is no such fit
    (``threshold_fit='dto'``, ``recall_queries='fit'``, no stored validation codes, or a gallery of at most
    ``recall_k`` codes).

    The queries are the validation codes stored by :func:`fit_search` (``recall_queries='val'``) or
    ``recall_gallery_queries`` codes of the gallery itself, drawn with ``config.seed`` (``'gallery'``); the fit
    keeps ``recall_target`` of their exhaustive longest-code top-``recall_k`` at ``recall_confidence``, and
    chooses the levels when ``recall_choose_levels``, at the least expected cost of ``recall_cost``'s model.
    """
    from jhash.search import dto
    from jhash.search.dto import fit_recall_thresholds

    order = level_names(_get(config, "lengths"))[::-1]
    n = len(g_levels[order[0]])
    k = int(_get(config, "recall_k"))
    how = _recall_queries(config)
    if str(_get(config, "threshold_fit")) != "recall" or how == "fit" or n <= k:
        return None
    kwargs = {}
    if how == "val":
        stored = (search_params or {}).get("fit_queries")
        if not stored:
            return None
        kwargs["query_codes"] = dto.decode_packed(stored)
    else:
        kwargs.update(queries=min(int(_get(config, "recall_gallery_queries")), n), seed=int(config.seed))
    kwargs["stage_costs"] = _stage_costs(g_levels, order, config)
    return fit_recall_thresholds({m: g_levels[m] for m in order}, order=order, k=k,
                                 target=float(_get(config, "recall_target")), **_recall_options(config), **kwargs)


def search_plan(g_levels, config, search_params=None) -> tuple[list[str], dict[str, int]]:
    """``(levels short to long, thresholds)`` of the CtF search over ``g_levels``: the search-time fit
    (:func:`gallery_fit`) when there is one, else the levels and thresholds stored by :func:`fit_search` (every
    level, thresholds at their maxima, when nothing was fitted)."""
    fit = gallery_fit(g_levels, config, search_params)
    if fit is not None:
        return list(fit.levels), dict(fit.thresholds)
    order = level_names(_get(config, "lengths"))[::-1]
    levels = [n for n in (search_params or {}).get("levels") or order if n in order]
    if not levels or levels[-1] != order[-1]:
        levels = order
    return levels, search_thresholds(search_params, levels)


def search(q_codes, g_codes, search_params, config, *, k: int = 10) -> dict:
    """Evaluator hook: CtF keys of every query (``distances=`` for the metrics: a lazily computed
    :class:`jhash.search.streamed.LazyRows`, never an ``[nq, ng]`` matrix) and the top-``k`` ms per query."""
    from jhash.search import coarse_to_fine as ctf

    order = level_names(_get(config, "lengths"))[::-1]
    q = {n: np.asarray(q_codes[n]) for n in order}
    g = {n: np.asarray(g_codes[n]) for n in order}
    levels, thresholds = search_plan(g, config, search_params)
    q, g = {n: q[n] for n in levels}, {n: g[n] for n in levels}
    index = ctf.CoarseToFineIndex.build(g)
    block = int(_get(config, "search_block_size"))
    keys = ctf.coarse_to_fine_key_matrix(q, index, thresholds, block_size=block)
    k = min(k, index.num_gallery)
    nq = len(q[levels[0]])
    ms = None
    if nq:
        ctf.coarse_to_fine_topk({n: a[:8] for n, a in q.items()}, index, thresholds, k, block_size=block)  # warm-up
        start = time.perf_counter()
        ctf.coarse_to_fine_topk(q, index, thresholds, k, block_size=block)
        ms = 1000.0 * (time.perf_counter() - start) / nq
    return {"distances": keys, "ms_per_query": ms}
