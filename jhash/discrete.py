r"""DVHN's discrete steps: the closed-form W-step and the discrete cyclic coordinate B-step (jitted).

DVHN (Chen et al., arXiv 2112.04937) is implemented with the discrete supervised hashing objective of DSDH
(Li, Sun, He & Tan, NeurIPS 2017, eq. 5); with the network outputs ``U`` fixed, the discrete part is

.. math::

    J(B, W) = \mu \sum_i \|y_i - W^\top b_i\|^2 + \nu \|W\|_F^2 + \eta \sum_i \|b_i - u_i\|^2,
    \qquad b_i \in \{-1, +1\}^L

where :math:`y_i` is the one-hot identity label (``C`` classes). Both steps minimise :math:`J` exactly over
their block, so neither ever increases it:

- **W-step** (ridge regression, DSDH eq. 9): :math:`W = (B B^\top + \tfrac{\nu}{\mu} I)^{-1} B Y^\top`.
  :math:`B Y^\top` is the per-class sum of codes (``segment_sum``), never a dense one-hot ``Y``.
- **B-step** (discrete cyclic coordinate descent, DSDH eq. 11–13): with :math:`P = W Y + \tfrac{\eta}{\mu} U`
  and :math:`Q = W W^\top`, for each bit ``k`` in turn
  :math:`b^k = \mathrm{sgn}\big(p^k - \sum_{j \ne k} Q_{kj}\, b^j\big)` (row ``k`` of ``B``), the exact
  minimiser of :math:`J` over that row given the others. ``sgn(0) = +1`` (deterministic; both choices give
  the same :math:`J`).

Array layout (rows are training images, the order of the ``index`` key of the batches):

=========== ============= =============================================
``codes``   int8 [N, L]   :math:`B^\top`, entries exactly ±1
``outputs`` float [N, L]  :math:`U^\top`, the cached hash-layer outputs
``labels``  int [N]       training class 0..C-1 of each image
``W``       float [L, C]  the linear classifier on the codes
=========== ============= =============================================

Memory (:func:`memory_footprint`; VehicleID: N = 110,178 training images, C = 13,164 identities,
L = 2048 bits): the method's state is B int8 = 226 MB, U float32 = 902 MB, W float32 = 108 MB, 1.24 GB
together. An update (:func:`alternate`) holds the new U, its outputs and about three ``N × L`` float32
temporaries (XLA's ``memory_analysis`` of the compiled :func:`alternate` reports 2.71 GB of temporaries,
1.13 GB of arguments, 0.33 GB of outputs); with the previous state still alive the peak is about 5.2 GB,
leaving more than 10 GB of a 16 GB GPU to the network. Rows of :math:`P` are formed on the fly inside the
loop rather than storing the ``L × N`` matrix. One B-sweep reads ``L`` times an ``L × N`` float matrix
(≈ 1.8 TB at 2048 bits: about a second on an H100, minutes on a CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg

Array = jax.Array


def memory_footprint(num_train: int, num_classes: int, bits: int) -> dict[str, int]:
    """Bytes of DVHN's state and of an update for ``N = num_train``, ``C = num_classes``, ``L = bits``.

    ``B`` (int8 ``N × L``), ``U`` (float32 ``N × L``), ``W`` (float32 ``L × C``), ``state`` (their sum, kept
    and checkpointed), ``update_temp`` (three float32 ``N × L`` working arrays plus ``L × L``, an upper bound of
    what XLA reports for :func:`alternate`), ``peak`` (old state + the new U, B, W + ``update_temp``).
    """
    n, c, length = int(num_train), int(num_classes), int(bits)
    b, u, w = n * length, 4 * n * length, 4 * length * c
    temp = 3 * 4 * n * length + 4 * length * length
    state = b + u + w
    return {"B": b, "U": u, "W": w, "state": state, "update_temp": temp, "peak": 2 * state + temp}


def _check(codes, outputs=None, labels=None, W=None):
    if codes.ndim != 2:
        raise ValueError(f"jhash.discrete: argument 'codes' must be [N, L], got shape {codes.shape}")
    n, length = codes.shape
    if outputs is not None and outputs.shape != codes.shape:
        raise ValueError(f"jhash.discrete: argument 'outputs' must have the shape of 'codes' {codes.shape}, got {outputs.shape}")
    if outputs is not None and not jnp.issubdtype(outputs.dtype, jnp.floating):
        raise ValueError(f"jhash.discrete: argument 'outputs' must be floating point, got {outputs.dtype}")
    if labels is not None and (labels.shape != (n,) or not jnp.issubdtype(labels.dtype, jnp.integer)):
        raise ValueError(f"jhash.discrete: argument 'labels' must be int [{n}], got {labels.dtype}{list(labels.shape)}")
    if W is not None and (W.ndim != 2 or W.shape[0] != length):
        raise ValueError(f"jhash.discrete: argument 'W' must be [L={length}, C], got shape {W.shape}")


def sign(x: Array) -> Array:
    """``x >= 0 -> +1``, ``x < 0 -> -1`` as int8 (``sgn(0) = +1``, never 0)."""
    return jnp.where(x >= 0, 1, -1).astype(jnp.int8)


def class_code_sums(codes: Array, labels: Array, num_classes: int, dtype=jnp.float32) -> Array:
    r"""``[C, L]`` per-class sums of codes, :math:`(B Y^\top)^\top`, by ``segment_sum`` (no one-hot)."""
    return jax.ops.segment_sum(codes.astype(dtype), labels, num_segments=num_classes)


@functools.partial(jax.jit, static_argnames=("num_classes", "dtype"))
def w_step(codes: Array, labels: Array, num_classes: int, mu: float, nu: float, dtype=jnp.float32) -> Array:
    r"""The W-step: :math:`W = (B B^\top + \tfrac{\nu}{\mu} I)^{-1} B Y^\top` (DSDH eq. 9), by Cholesky.

    Args:
      codes: ``[N, L]`` ±1 codes (int8 or float).
      labels: ``[N]`` int classes in ``[0, num_classes)``.
      num_classes: ``C`` (static).
      mu, nu: the objective's weights (> 0).
      dtype: computation / result dtype.

    Returns:
      ``W`` ``[L, C]``, the exact minimiser of :math:`J` over ``W``.
    """
    _check(codes, labels=labels)
    b = codes.astype(dtype)
    # B Bᵀ (exact for counts below 2^24 in float32), contracting over the images without a transpose
    gram = jax.lax.dot_general(b, b, (((0,), (0,)), ((), ())))
    gram = gram + (jnp.asarray(nu, dtype) / jnp.asarray(mu, dtype)) * jnp.eye(b.shape[1], dtype=dtype)
    sums = jax.ops.segment_sum(b, labels, num_segments=num_classes)  # [C, L] = (B Yᵀ)ᵀ
    factor = jax.scipy.linalg.cho_factor(gram, lower=True)
    return jax.scipy.linalg.cho_solve(factor, sums.T)


@functools.partial(jax.jit, static_argnames=("sweeps",))
def b_step(codes: Array, W: Array, outputs: Array, labels: Array, mu: float, eta: float, sweeps: int = 1) -> Array:
    r"""The B-step: ``sweeps`` passes of discrete cyclic coordinate descent over the bits (DSDH eq. 11–13).

    For ``k = 0..L-1`` (a ``lax.fori_loop``): :math:`b^k \leftarrow \mathrm{sgn}(p^k - \sum_{j\ne k} Q_{kj} b^j)`
    with :math:`P = W Y + \tfrac{\eta}{\mu} U`, :math:`Q = W W^\top`. Computation in ``outputs.dtype``.

    Args:
      codes: ``[N, L]`` ±1 current codes (int8 or float; the starting point).
      W: ``[L, C]`` classifier.
      outputs: ``[N, L]`` float cached network outputs ``U``.
      labels: ``[N]`` int.
      mu, eta: the objective's weights (> 0).
      sweeps: passes over all bits (static).

    Returns:
      ``[N, L]`` int8 codes, exactly ±1, with :math:`J` not larger than at ``codes``.
    """
    _check(codes, outputs, labels, W)
    dtype = outputs.dtype
    W = W.astype(dtype)
    length = codes.shape[1]
    ratio = jnp.asarray(eta, dtype) / jnp.asarray(mu, dtype)
    q = W @ W.T  # [L, L]
    bt = codes.T.astype(dtype)  # [L, N]; rows are bits

    def body(i, bt):
        k = i % length
        qk = jax.lax.dynamic_index_in_dim(q, k, axis=0, keepdims=False)  # [L]
        others = qk @ bt - qk[k] * jax.lax.dynamic_index_in_dim(bt, k, axis=0, keepdims=False)
        # row k of P = W Y + (η/μ) U, formed on the fly (P itself would be another [L, N] array)
        wk = jax.lax.dynamic_index_in_dim(W, k, axis=0, keepdims=False)  # [C]
        pk = wk[labels] + ratio * jax.lax.dynamic_index_in_dim(outputs, k, axis=1, keepdims=False)
        z = jnp.where(pk - others >= 0, 1, -1).astype(dtype)
        return jax.lax.dynamic_update_index_in_dim(bt, z, k, axis=0)

    bt = jax.lax.fori_loop(0, sweeps * length, body, bt)
    return bt.T.astype(jnp.int8)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def objective(codes: Array, W: Array, outputs: Array, labels: Array, num_classes: int, mu: float, nu: float, eta: float) -> Array:
    r""":math:`J(B, W) = \mu \sum_i \|y_i - W^\top b_i\|^2 + \nu \|W\|_F^2 + \eta \|B - U\|_F^2` without a dense ``Y``.

    Uses :math:`\sum_i \|y_i - W^\top b_i\|^2 = N - 2\,\mathrm{tr}(S W) + \sum_i b_i^\top W W^\top b_i` with
    :math:`S` the class sums of :func:`class_code_sums`. Computed in ``outputs.dtype``.
    """
    _check(codes, outputs, labels, W)
    dtype = outputs.dtype
    b = codes.astype(dtype)
    W = W.astype(dtype)
    sums = class_code_sums(codes, labels, num_classes, dtype)  # [C, L]
    q = W @ W.T
    fit = b.shape[0] - 2.0 * jnp.sum(sums * W.T) + jnp.sum((b @ q) * b)
    return mu * fit + nu * jnp.sum(W * W) + eta * jnp.sum(jnp.square(b - outputs))


@functools.partial(jax.jit, static_argnames=("num_classes", "iterations", "sweeps"))
def alternate(
    codes: Array,
    outputs: Array,
    labels: Array,
    num_classes: int,
    mu: float,
    nu: float,
    eta: float,
    iterations: int = 1,
    sweeps: int = 1,
) -> tuple[Array, Array]:
    """``iterations`` rounds of (W-step, B-step with ``sweeps`` passes) from ``codes``; returns ``(codes, W)``.

    Ends with a B-step, so ``W`` is the minimiser for the codes *before* the last B-step; call :func:`w_step`
    again if an exactly matching classifier is needed. :math:`J` never increases along the way.
    """
    _check(codes, outputs, labels)
    W = None
    for _ in range(iterations):
        W = w_step(codes, labels, num_classes, mu, nu, dtype=outputs.dtype)
        codes = b_step(codes, W, outputs, labels, mu, eta, sweeps=sweeps)
    return codes, W
