"""Self-distillation losses of the CtF All-in-One code pyramid (Wang et al., "Faster Person
Re-Identification", ECCV 2020, eqs. 3-4; cleaned in ``docs/methods.md`` §4), and the variants of the
public implementation (light-reid).

Every loss takes a *student* and a *teacher* array of the same batch. The teacher is a label: it is wrapped
in :func:`jax.lax.stop_gradient`, so ``jax.grad`` with respect to the teacher inputs is exactly zero and the
teacher is fitted only by its own losses. All functions are pure, jit- and grad-compatible, and check
shapes and dtypes with chex at trace time.

Paper (default):
    :func:`probability_distillation_loss` (eq. 3, soft cross-entropy at temperature ``T``, T = 10),
    :func:`similarity_distillation_loss` (eq. 4, squared difference of length-normalised relaxed Hamming
    matrices), helper :func:`relaxed_hamming_matrix`.
Public-code variants:
    :func:`symmetric_kl_distillation_loss` (symmetric KL of the softened class distributions, T = 1),
    :func:`gram_distillation_loss` (MSE of row-normalised Gram matrices, Tung & Mori 2019).
Pyramid sums (the ``1/(N-1) sum_k`` of eqs. 3-4): :func:`pyramid_distillation_pairs`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array


def _check_pair(fn: str, student: Array, teacher: Array, same_width: bool) -> None:
    _checks.floating(fn, "student", student, 2)
    _checks.floating(fn, "teacher", teacher, 2)
    if same_width:
        _checks.same_shape(fn, ("student", "teacher"), (student, teacher))
    else:
        _checks.same_leading(fn, ("student", "teacher"), (student, teacher))


def _check_temperature(fn: str, temperature: float) -> None:
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"jhash.losses.{fn}: argument 'temperature' must be > 0, got {temperature}")


def probability_distillation_loss(student_logits: Array, teacher_logits: Array, temperature: float = 10.0) -> Array:
    r"""Probability distillation, CtF eq. 3 for one (student, teacher) pair.

    .. math::

        \mathcal{L}_{pro} = -\frac{1}{B}\sum_{n=1}^{B}\sum_{c}
            \sigma(\hat z^{t}_n / T)_c \, \log \sigma(z^{s}_n / T)_c

    the cross-entropy between the teacher's softened class distribution (fixed, stop-gradient) and the
    student's, at temperature ``T`` (the paper uses ``T = 10`` and no ``T^2`` factor).

    Args:
      student_logits: ``[B, C]`` float, logits of the shorter code's classifier.
      teacher_logits: ``[B, C]`` float, logits of the longer code's classifier (receives no gradient).
      temperature: ``T > 0``.

    Returns:
      scalar float32.
    """
    fn = "probability_distillation_loss"
    _check_pair(fn, student_logits, teacher_logits, same_width=True)
    _check_temperature(fn, temperature)
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    p_teacher = jax.nn.softmax(t / temperature, axis=-1)
    logp_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return -jnp.mean(jnp.sum(p_teacher * logp_student, axis=-1))


def symmetric_kl_distillation_loss(student_logits: Array, teacher_logits: Array, temperature: float = 1.0) -> Array:
    r"""Symmetric KL divergence of softened class distributions (the light-reid variant of eq. 3).

    .. math::

        \mathcal{L} = \frac{1}{B}\sum_n \Big[\mathrm{KL}(p^t_n \,\|\, p^s_n) + \mathrm{KL}(p^s_n \,\|\, p^t_n)\Big],
        \qquad p = \sigma(z / T)

    with ``p^t`` fixed (stop-gradient). ``T = 1`` in the public code.

    Args:
      student_logits, teacher_logits: ``[B, C]`` float.
      temperature: ``T > 0``.

    Returns:
      scalar float32 (``>= 0``, zero iff the distributions agree).
    """
    fn = "symmetric_kl_distillation_loss"
    _check_pair(fn, student_logits, teacher_logits, same_width=True)
    _check_temperature(fn, temperature)
    logp_t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)) / temperature, axis=-1)
    logp_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    p_t, p_s = jnp.exp(logp_t), jnp.exp(logp_s)
    kl_ts = jnp.sum(p_t * (logp_t - logp_s), axis=-1)
    kl_st = jnp.sum(p_s * (logp_s - logp_t), axis=-1)
    return jnp.mean(kl_ts + kl_st)


def relaxed_hamming_matrix(codes: Array, normalize: bool = True) -> Array:
    r"""Relaxed pairwise Hamming distances of a batch of codes, ``[B, B]``.

    .. math::  G^{ij} = \tfrac{1}{2}\big(l - u_i^\top u_j\big), \qquad u \in [-1, 1]^{l}

    which equals the Hamming distance for ``±1`` codes. With ``normalize`` the matrix is divided by the
    code length ``l`` (values in ``[0, 1]`` for relaxed codes), as CtF eq. 4 compares codes of different
    lengths.
    """
    _checks.floating("relaxed_hamming_matrix", "codes", codes, 2)
    u = codes.astype(jnp.float32)
    length = u.shape[-1]
    g = 0.5 * (length - u @ u.T)
    return g / length if normalize else g


def similarity_distillation_loss(student_codes: Array, teacher_codes: Array) -> Array:
    r"""Similarity distillation, CtF eq. 4 for one (student, teacher) pair.

    .. math::

        \mathcal{L}_{sim} = \frac{1}{B^2}\sum_{i,j}
            \Big(\frac{G^{ij}_{s}}{l_s} - \frac{\hat G^{ij}_{t}}{l_t}\Big)^2

    where ``G`` are the relaxed Hamming matrices (:func:`relaxed_hamming_matrix`) of the relaxed
    (``tanh``) codes of the batch, the teacher's fixed (stop-gradient). The paper's eq. 4 is garbled in the
    extracted text; we use the squared difference averaged over the ``B^2`` pairs (the paper weights it by
    ``lambda_2 = 1000``, consistent with a mean of squares of numbers in ``[0, 1]``).

    Args:
      student_codes: ``[B, l_s]`` float relaxed codes of the shorter level.
      teacher_codes: ``[B, l_t]`` float relaxed codes of the longer level (receives no gradient).

    Returns:
      scalar float32.
    """
    fn = "similarity_distillation_loss"
    _check_pair(fn, student_codes, teacher_codes, same_width=False)
    g_s = relaxed_hamming_matrix(student_codes)
    g_t = relaxed_hamming_matrix(jax.lax.stop_gradient(teacher_codes))
    return jnp.mean(jnp.square(g_s - g_t))


def _row_normalised_gram(x: Array, eps: float) -> Array:
    g = x @ x.T
    return g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), eps)


def gram_distillation_loss(student: Array, teacher: Array, eps: float = 1e-12) -> Array:
    r"""MSE between row-normalised Gram matrices (the light-reid variant of eq. 4; Tung & Mori 2019).

    .. math::

        \tilde G = \mathrm{rownorm}(X X^\top), \qquad
        \mathcal{L} = \frac{1}{B^2}\,\big\|\tilde G_s - \hat{\tilde G}_t\big\|_F^2

    where each row of ``X X^T`` is divided by its L2 norm (at least ``eps``) and the teacher's is fixed.

    Args:
      student: ``[B, d_s]`` float.
      teacher: ``[B, d_t]`` float (receives no gradient).

    Returns:
      scalar float32.
    """
    fn = "gram_distillation_loss"
    _check_pair(fn, student, teacher, same_width=False)
    g_s = _row_normalised_gram(student.astype(jnp.float32), eps)
    g_t = _row_normalised_gram(jax.lax.stop_gradient(teacher.astype(jnp.float32)), eps)
    return jnp.mean(jnp.square(g_s - g_t))


def pyramid_distillation_pairs(num_levels: int, teacher: str = "next") -> list[tuple[int, int]]:
    """``(student, teacher)`` level indices for a pyramid ordered from the longest (0) to the shortest code.

    ``teacher="next"`` (paper, eqs. 3-4): each code learns from the next-longer one,
    ``[(1, 0), (2, 1), ..., (N-1, N-2)]``. ``teacher="first"`` (light-reid): the first (longest) level
    teaches every other, ``[(1, 0), (2, 0), ..., (N-1, 0)]``. The losses are averaged over these
    ``N - 1`` pairs (the ``1/(N-1)`` of eqs. 3-4).
    """
    if not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels must be an int >= 1, got {num_levels!r}")
    if teacher == "next":
        return [(k, k - 1) for k in range(1, num_levels)]
    if teacher == "first":
        return [(k, 0) for k in range(1, num_levels)]
    raise ValueError(f"teacher must be 'next' or 'first', got {teacher!r}")


def mean_over_pairs(values: Sequence[Array]) -> Array:
    """``1/(N-1) sum_k`` of per-pair losses (0.0 when the pyramid has a single level)."""
    if not values:
        return jnp.zeros((), jnp.float32)
    return jnp.mean(jnp.stack([jnp.asarray(v, jnp.float32) for v in values]))
