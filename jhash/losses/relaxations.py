"""Hashing relaxations and the SSR self-distillation loss (Jin et al., "Hashing person re-ID with
self-distilling smooth relaxation", 2021, eqs. 1-2 and the relaxation comparison of their Table 6; cleaned in
``docs/methods.md`` §5).

A hashing network cannot back-propagate through ``sgn``. A *relaxation* replaces the binary code ``b`` of a
real descriptor ``s`` by a differentiable surrogate during training; at test time every relaxation here is
binarised by the sign of the pre-activation ``s`` (``b = +1`` iff ``s > 0``; for the ``[0, 1]`` relaxations
that is ``act > 1/2``, since ``sigmoid(0) = hardsigmoid(0) = 1/2``). The zoo:

=============== ============================== ====================================================
name            forward ``act(s)``             gradient ``d act / d s``
=============== ============================== ====================================================
``sigmoid``     ``1 / (1 + e^-s)``             smooth: ``act (1 - act)`` (max 1/4 at 0, vanishes)
``hardsigmoid`` ``clip(s / 6 + 1/2, 0, 1)``    ``1/6`` on ``(-3, 3)``, 0 outside (torch's definition)
``tanh``        ``tanh(s)``                    smooth: ``1 - act²``
``hardtanh``    ``clip(s, -1, 1)``             1 on ``(-1, 1)``, 0 outside
``dsh``         ``s`` (identity)               1; binary-ness comes from :func:`dsh_regularizer`
``ssr``         ``s`` (identity)               1; binary-ness comes from :func:`ssr_distillation_loss`
``sign_ste``    ``sgn(s)`` (±1)                straight-through: 1 on ``(-1, 1)``, 0 outside
``none``        ``s``                          1 (no relaxation: real-valued features)
=============== ============================== ====================================================

At the saturated ends ``hardsigmoid``/``hardtanh`` pass no gradient at all and ``sigmoid``/``tanh`` almost
none: this is the "rigid distribution constraint" SSR avoids. SSR keeps the descriptor linear and pulls the
*student* descriptor towards the *sign of the teacher* with an L1 loss whose (sub)gradient with respect to
the student is ``sgn(S^s - sgn(S^t))`` (0 where they are equal); the teacher receives no gradient from it.

All functions are pure, jit- and grad-compatible, shapes/dtypes checked with chex at trace time.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jhash.losses import _checks

Array = jax.Array

REDUCTIONS = ("mean", "sum")


def sign_binarize(s: Array) -> Array:
    r"""SSR eq. 1: :math:`s' = 1` if :math:`s > 0` else :math:`-1` (so ``sgn(0) = -1``), same dtype as ``s``.

    Piecewise constant: its gradient is 0 everywhere (use :func:`sign_ste` for a straight-through sign).
    """
    return jnp.where(s > 0, 1, -1).astype(s.dtype)


def hardsigmoid(s: Array) -> Array:
    """``clip(s / 6 + 1/2, 0, 1)`` (torch's ``hardsigmoid``); gradient 1/6 on (-3, 3), 0 outside
    (also at ±3, where ``jnp.clip`` would give 1/12)."""
    return jnp.where(jnp.abs(s) < 3, s / 6.0 + 0.5, jnp.where(s > 0, 1.0, 0.0).astype(s.dtype))


def hardtanh(s: Array) -> Array:
    """``clip(s, -1, 1)``; gradient 1 on (-1, 1), 0 outside."""
    return jnp.where(jnp.abs(s) < 1, s, jnp.where(s > 0, 1.0, -1.0).astype(s.dtype))


@jax.custom_vjp
def sign_ste(s: Array) -> Array:
    """Straight-through sign: forward :func:`sign_binarize` (±1), backward the gradient of ``hardtanh``
    (the incoming gradient where ``|s| < 1``, 0 elsewhere; Bengio et al. 2013, Courbariaux et al. 2016)."""
    return sign_binarize(s)


def _ste_fwd(s):
    return sign_binarize(s), s


def _ste_bwd(s, g):
    return (jnp.where(jnp.abs(s) < 1, g, jnp.zeros_like(g)),)


sign_ste.defvjp(_ste_fwd, _ste_bwd)


#: relaxation name -> activation applied to the real descriptor during training (see the module table).
RELAXATIONS: dict[str, Callable[[Array], Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "hardsigmoid": hardsigmoid,
    "tanh": jnp.tanh,
    "hardtanh": hardtanh,
    "dsh": lambda s: s,
    "ssr": lambda s: s,
    "sign_ste": sign_ste,
    "none": lambda s: s,
}

#: relaxations whose output lies in ``[0, 1]`` (the others are centred on 0).
UNIT_INTERVAL = ("sigmoid", "hardsigmoid")


def relax(s: Array, kind: str) -> Array:
    """The relaxation ``kind`` (a key of :data:`RELAXATIONS`) applied to the descriptor ``s`` (any shape)."""
    if kind not in RELAXATIONS:
        raise ValueError(f"jhash.losses.relax: argument 'kind' must be one of {sorted(RELAXATIONS)}, got {kind!r}")
    _checks.floating("relax", "s", s)
    return RELAXATIONS[kind](s)


def _reduce(fn: str, per_elem: Array, reduction: str) -> Array:
    if reduction == "mean":
        return jnp.mean(per_elem)
    if reduction == "sum":
        return jnp.mean(jnp.sum(per_elem, axis=-1))
    raise ValueError(f"jhash.losses.{fn}: argument 'reduction' must be one of {REDUCTIONS}, got {reduction!r}")


def ssr_distillation_loss(student: Array, teacher: Array, *, reduction: str = "mean") -> Array:
    r"""SSR self-distillation, eq. 2: :math:`\mathcal{L}_d = \| \mathrm{sgn}(S^t) - S^s \|_1`.

    The teacher descriptor is quantised by eq. 1 (:func:`sign_binarize`) under
    :func:`jax.lax.stop_gradient`, so the teacher gets no gradient from this loss; the student is pulled to
    those ±1 targets by an L1 penalty (gradient ``sgn(S^s - sgn(S^t))``).

    Args:
      student: ``[B, D]`` float, the student's real descriptor (no squashing: SSR is linear).
      teacher: ``[B, D]`` float, the teacher's real descriptor for the same images.
      reduction: ``"mean"`` (default; the mean absolute difference over all ``B·D`` elements, torch's
        ``L1Loss`` convention, so α means the same for any code length) or ``"sum"`` (the L1 norm of each
        row, eq. 2 literally, averaged over the batch).

    Returns:
      scalar float32.
    """
    fn = "ssr_distillation_loss"
    _checks.floating(fn, "student", student, 2)
    _checks.floating(fn, "teacher", teacher, 2)
    _checks.same_shape(fn, ("student", "teacher"), (student, teacher))
    target = jax.lax.stop_gradient(sign_binarize(teacher.astype(jnp.float32)))
    return _reduce(fn, jnp.abs(target - student.astype(jnp.float32)), reduction)


def dsh_regularizer(codes: Array, *, reduction: str = "mean") -> Array:
    r"""DSH's binary-like regulariser (Liu et al., "Deep Supervised Hashing for Fast Image Retrieval", CVPR
    2016: the regularisation term of its relaxed objective):
    :math:`\| |u| - \mathbf{1} \|_1`, pushing each real output towards ±1.

    Args:
      codes: ``[B, D]`` float real-valued outputs ``u``.
      reduction: ``"mean"`` over all elements (default) or ``"sum"`` (per-row L1 norm, batch mean).

    Returns:
      scalar float32. Its (sub)gradient is ``sgn(u) · sgn(|u| - 1)``.
    """
    fn = "dsh_regularizer"
    _checks.floating(fn, "codes", codes, 2)
    u = codes.astype(jnp.float32)
    return _reduce(fn, jnp.abs(jnp.abs(u) - 1.0), reduction)
