"""jhash's loss functions: pure functions of arrays, usable from any JAX project.

Every loss takes arrays (``logits``, ``codes``, ``embeddings``, ``labels``, ...) and returns a scalar; it is
jit- and grad-compatible, checks shapes and dtypes with chex at trace time (the error names the argument),
and documents the equation it implements with its source. Nothing here imports the trainer, the data
pipeline or the models.

Classification (:mod:`jhash.losses.classification`)
    :func:`softmax_cross_entropy`, :func:`multi_head_cross_entropy`
Triplets (:mod:`jhash.losses.metric`)
    :func:`batch_hard_triplet_loss`, :func:`batch_hard_triplet_loss_from_distances`,
    :func:`weighted_triplet_ranking_loss` (DRSCH), :func:`constrained_triplet_loss` (DHMTL),
    helpers :func:`pairwise_distances`, :func:`weighted_hamming_distances`, :func:`triplet_masks`,
    :func:`constrained_negative_masks`
Pairwise / quantisation (:mod:`jhash.losses.pairwise`)
    :func:`pairwise_likelihood_loss` (DVHN / DSDH), :func:`quantization_loss`
Regularisers (:mod:`jhash.losses.regularisers`)
    :func:`laplacian_regularizer` (DRSCH), helpers :func:`label_adjacency`, :func:`graph_laplacian`
"""

from jhash.losses.attributes import attribute_codes, attribute_probabilities, binary_attribute_loss
from jhash.losses.relaxations import (
    RELAXATIONS,
    dsh_regularizer,
    hardsigmoid,
    hardtanh,
    relax,
    sign_binarize,
    sign_ste,
    ssr_distillation_loss,
)
from jhash.losses.classification import multi_head_cross_entropy, softmax_cross_entropy
from jhash.losses.distillation import (
    gram_distillation_loss,
    mean_over_pairs,
    probability_distillation_loss,
    pyramid_distillation_pairs,
    relaxed_hamming_matrix,
    similarity_distillation_loss,
    symmetric_kl_distillation_loss,
)
from jhash.losses.metric import (
    batch_hard_triplet_loss,
    batch_hard_triplet_loss_from_distances,
    constrained_negative_masks,
    constrained_triplet_loss,
    pairwise_distances,
    triplet_masks,
    weighted_hamming_distances,
    weighted_triplet_ranking_loss,
)
from jhash.losses.pairwise import pairwise_likelihood_loss, quantization_loss
from jhash.losses.regularisers import graph_laplacian, label_adjacency, laplacian_regularizer

__all__ = [
    "RELAXATIONS",
    "relax",
    "sign_binarize",
    "sign_ste",
    "hardsigmoid",
    "hardtanh",
    "ssr_distillation_loss",
    "dsh_regularizer",
    "binary_attribute_loss",
    "attribute_codes",
    "attribute_probabilities",
    "gram_distillation_loss",
    "mean_over_pairs",
    "probability_distillation_loss",
    "pyramid_distillation_pairs",
    "relaxed_hamming_matrix",
    "similarity_distillation_loss",
    "symmetric_kl_distillation_loss",
    "batch_hard_triplet_loss",
    "batch_hard_triplet_loss_from_distances",
    "constrained_negative_masks",
    "constrained_triplet_loss",
    "graph_laplacian",
    "label_adjacency",
    "laplacian_regularizer",
    "multi_head_cross_entropy",
    "pairwise_distances",
    "pairwise_likelihood_loss",
    "quantization_loss",
    "softmax_cross_entropy",
    "triplet_masks",
    "weighted_hamming_distances",
    "weighted_triplet_ranking_loss",
]
