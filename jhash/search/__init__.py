"""jhash.search: packed binary codes and exact Hamming search, pure functions over arrays.

Codes at rest are ``uint8 [n, ceil(L/8)]`` (any ``L``: zero padding bits never count) in ``np.packbits`` order (faiss / usearch read the same bytes).

- :func:`pack_codes`, :func:`unpack_codes`, :func:`as_words` — packing and the ``uint32`` word view.
- :func:`hamming_distance` — all-pairs distances ``[nq, ng]`` (XOR + popcount); ``backend="auto"`` uses the
  native C++ kernel on the CPU.
- :func:`hamming_distance_gather` — distances to per-query candidate lists ``[nq, c]`` (re-ranking; entries
  ``< 0`` are padding and get ``L + 1``).
- :func:`hamming_topk` — exact top-k ordered by ``(distance, gallery index)``, streamed over the gallery;
  ``backend="xla"`` (any device) or ``"native"`` (fused C++ CPU kernel), ``"auto"`` picks.
- :func:`hamming_rank`, :func:`counting_argsort` — full stable ranking by counting sort, O(ng) per query.
- :func:`select_bits`, :func:`top_weight_bits` — bit subsets for bit-scalable codes (DRSCH).
- :func:`sharded_hamming_topk` — the gallery sharded over a ``jax.sharding.Mesh``; equals ``hamming_topk``.
- :func:`weighted_hamming_topk`, :func:`weighted_hamming_distance`, :func:`weighted_hamming_affinity`,
  :func:`weighted_hamming_matrix` — exact search by weighted Hamming distance (DRSCH's affinity ranking);
  :func:`weighted_hamming_topk_jax` is its traceable top-k (inside ``jit``, any device) over the per-byte
  tables of :func:`weight_tables` / :func:`weight_tables_jax`.
- :class:`LazyRows` — a ``[nq, ng]`` matrix computed block by block when read (streamed evaluation).
- :func:`to_faiss` — ``faiss.IndexBinaryFlat`` over a packed gallery (extra ``jhash[faiss]``).
- :func:`fit_thresholds` — Distance Threshold Optimisation for coarse-to-fine search (CtF eqs. 6-8).
- :func:`fit_recall_thresholds` — the cheapest CtF thresholds that keep a target share of the exhaustive top-k.
- :func:`coarse_to_fine_topk`, :func:`coarse_to_fine_rank` — CtF search over a code pyramid.
- :func:`attribute_first_topk`, :func:`fit_window` — attribute-first retrieval (AFR) and its window rule.
"""

from jhash.search.attribute_first import (
    AFRIndex,
    WindowRule,
    afr_keys,
    attribute_first_ctf_distances,
    attribute_first_distances,
    attribute_first_key_matrix,
    attribute_first_rank,
    attribute_first_topk,
    attribute_window,
    first_match_positions,
    fit_window,
    window_for_gallery,
    window_mask,
)
from jhash.search.bits import select_bits, top_weight_bits
from jhash.search.coarse_to_fine import (
    CoarseToFineIndex,
    CtFTopK,
    coarse_to_fine_distances,
    coarse_to_fine_key_blocks,
    coarse_to_fine_key_matrix,
    coarse_to_fine_rank,
    coarse_to_fine_topk,
    ctf_offsets,
)
from jhash.search.dto import RecallFit, fit_recall_thresholds, fit_thresholds, pair_distance_histograms
from jhash.search.faiss_export import to_faiss
from jhash.search.hamming import hamming_distance, hamming_distance_gather, hamming_topk
from jhash.search.packing import as_words, pack_codes, unpack_codes
from jhash.search.ranking import counting_argsort, hamming_rank
from jhash.search.sharded import sharded_hamming_topk
from jhash.search.streamed import LazyRows
from jhash.search.weighted import (
    weight_tables,
    weight_tables_jax,
    weighted_hamming_affinity,
    weighted_hamming_distance,
    weighted_hamming_matrix,
    weighted_hamming_topk,
    weighted_hamming_topk_jax,
)

__all__ = [
    "AFRIndex",
    "WindowRule",
    "afr_keys",
    "window_mask",
    "attribute_window",
    "attribute_first_distances",
    "attribute_first_key_matrix",
    "attribute_first_ctf_distances",
    "attribute_first_rank",
    "attribute_first_topk",
    "first_match_positions",
    "fit_window",
    "window_for_gallery",
    "pack_codes",
    "unpack_codes",
    "as_words",
    "hamming_distance",
    "hamming_distance_gather",
    "hamming_topk",
    "hamming_rank",
    "counting_argsort",
    "select_bits",
    "top_weight_bits",
    "sharded_hamming_topk",
    "to_faiss",
    "fit_thresholds",
    "CoarseToFineIndex",
    "CtFTopK",
    "coarse_to_fine_distances",
    "coarse_to_fine_key_blocks",
    "coarse_to_fine_key_matrix",
    "coarse_to_fine_rank",
    "coarse_to_fine_topk",
    "ctf_offsets",
    "pair_distance_histograms",
    "RecallFit",
    "fit_recall_thresholds",
    "LazyRows",
    "weight_tables",
    "weight_tables_jax",
    "weighted_hamming_affinity",
    "weighted_hamming_distance",
    "weighted_hamming_matrix",
    "weighted_hamming_topk",
    "weighted_hamming_topk_jax",
]
