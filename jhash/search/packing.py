"""Bit packing of binary codes, and the input checks shared by the search functions.

Codes at rest are packed bits: ``uint8 [n, ceil(L/8)]`` in ``np.packbits`` order (``bitorder="big"``: bit 0
of a code is the most significant bit of byte 0), so faiss (``IndexBinaryFlat``) and usearch read the same
bytes. Any code length works: a code of ``L`` bits that is not a multiple of 8 is padded with zero bits up to
the next whole byte (``np.packbits`` does the same). The padding is identical in every code, so it never
counts: ``0 XOR 0 = 0`` adds nothing to a Hamming distance, and every search backend (XLA, native, numpy,
faiss) ranks padded codes exactly as ``L``-bit codes. Inside JAX, packed rows are viewed as ``uint32`` words (:func:`as_words`) for
``lax.population_count``; the Hamming distance is ``d_H(b_i, b_j) = popcount(b_i XOR b_j)``, which for
±1 codes equals ``(L - b_i^T b_j) / 2``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["pack_codes", "unpack_codes", "as_words"]

# Bit weights of the 8 bits of a byte in np.packbits (big-endian bit) order.
_BIT_SHIFTS = np.arange(7, -1, -1, dtype=np.uint8)


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _as_array(x: Any, name: str) -> Any:
    """Numpy or JAX array view of ``x`` (lists are converted); never copies a JAX array to the host."""
    if isinstance(x, (jax.Array, np.ndarray)) or _is_tracer(x):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is bad input
        raise ValueError(f"{name} must be an array, got {type(x).__name__}") from e


def check_packed(x: Any, name: str, *, allow_empty: bool = True) -> jax.Array:
    """Validate packed codes: rank 2, dtype uint8, at least one byte per code. Returns a JAX array."""
    x = _as_array(x, name)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be packed codes of rank 2 [n, L/8] (uint8, see pack_codes); got shape {tuple(x.shape)}"
        )
    if x.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8 (packed bits, see pack_codes); got dtype {x.dtype}"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 bytes per code; expected codes of at least 8 bits")
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 codes); expected at least one code")
    return jnp.asarray(x)


def check_pair(q: Any, g: Any) -> tuple[jax.Array, jax.Array]:
    """Validate a query / gallery pair of packed codes of the same length; the gallery must be non-empty."""
    q = check_packed(q, "q")
    g = check_packed(g, "g", allow_empty=False)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"code lengths differ: q has {q.shape[1]} bytes per code ({8 * q.shape[1]} bits) but g has "
            f"{g.shape[1]} bytes ({8 * g.shape[1]} bits); expected the same code length L"
        )
    return q, g


def check_k(k: Any, ng: int, name: str = "k") -> int:
    """Validate a top-k size: an integer with 1 <= k <= ng."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be a positive Python int, got {k!r}")
    k = int(k)
    if k <= 0:
        raise ValueError(f"{name} must be >= 1, got {name}={k}")
    if k > ng:
        raise ValueError(f"{name}={k} exceeds the gallery size ng={ng}; expected 1 <= {name} <= ng")
    return k


@jax.jit
def _pack_bits(bits: jax.Array) -> jax.Array:
    n, L = bits.shape
    pad = (-L) % 8
    if pad:  # zero padding bits up to a whole byte: identical in every code, so no distance changes
        bits = jnp.pad(bits, ((0, 0), (0, pad)))
    b = bits.astype(jnp.uint8).reshape(n, (L + pad) // 8, 8) << jnp.asarray(_BIT_SHIFTS)
    # The 8 shifted bits are disjoint, so their sum is their bitwise OR (no overflow).
    return b.sum(axis=-1, dtype=jnp.uint8)


def pack_codes(x: Any) -> jax.Array:
    """Pack binary codes ``x [n, L]`` into ``uint8 [n, ceil(L/8)]`` in ``np.packbits`` (big-endian bit) order.

    Bit ``j`` of a code is ``1`` iff ``x[i, j] > 0``: this reads ``{0,1}`` integers, booleans, ``±1``
    codes and real-valued network outputs alike (sign thresholding, ``b = sgn(u)`` with ``sgn(0) -> 0``).

    Args:
      x: numpy or JAX array of rank 2 ``[n, L]`` (bool, integer or floating). A single code must be given
        as ``x[None]`` (rank 1 is rejected rather than guessed). Any ``L >= 1``: when ``L`` is not a multiple
        of 8 the last byte is completed with zero bits, which add nothing to any Hamming distance.

    Returns:
      ``jax.Array`` ``uint8 [n, ceil(L/8)]``, byte-identical to ``np.packbits(x > 0, axis=1)``.

    Raises:
      ValueError: wrong rank, ``L = 0``, a non-numeric dtype, or NaN values
        (NaN is only detected on concrete arrays; under ``jit`` a NaN packs to bit 0).
    """
    x = _as_array(x, "x")
    if x.ndim != 2:
        raise ValueError(
            f"x must be codes of rank 2 [n, L]; got shape {tuple(x.shape)} (use x[None] for a single code)"
        )
    dt = np.dtype(x.dtype)
    if not (dt == np.bool_ or np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise ValueError(f"x must have a bool, integer or floating dtype; got dtype {dt}")
    L = int(x.shape[1])
    if L == 0:
        raise ValueError("code length L=0 (x.shape[1]); expected codes of at least 1 bit")
    if np.issubdtype(dt, np.floating) and not _is_tracer(x):
        has_nan = np.isnan(x).any() if isinstance(x, np.ndarray) else bool(jnp.isnan(x).any())
        if has_nan:
            raise ValueError("x contains NaN; expected real-valued codes without NaN (bit = x > 0)")
    return _pack_bits(jnp.asarray(x) > 0)


@jax.jit
def _unpack_bits(packed: jax.Array) -> jax.Array:
    n, nb = packed.shape
    bits = (packed[:, :, None] >> jnp.asarray(_BIT_SHIFTS)) & jnp.uint8(1)
    return bits.reshape(n, 8 * nb)


def unpack_codes(packed: Any, *, signed: bool = False, bits: int | None = None) -> jax.Array:
    """Inverse of :func:`pack_codes`: ``uint8 [n, ceil(L/8)]`` -> bits ``[n, L]``.

    Returns ``{0,1}`` as ``uint8`` by default, or ``±1`` as ``int8`` with ``signed=True``
    (``b = 2·bit - 1``). ``bits``: the code length ``L`` (drops the zero padding of the last byte); default
    ``8 * packed.shape[1]``. ``unpack_codes(pack_codes(x), bits=L)`` equals ``x > 0``.
    """
    packed = check_packed(packed, "packed")
    n_bytes = int(packed.shape[1])
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 8 * n_bytes - 7 <= bits <= 8 * n_bytes:
            raise ValueError(f"bits={bits!r} does not fit packed codes of {n_bytes} bytes; expected an int in "
                             f"[{8 * n_bytes - 7}, {8 * n_bytes}]")
    b = _unpack_bits(packed)
    if bits is not None:
        b = b[:, : int(bits)]
    if signed:
        return b.astype(jnp.int8) * jnp.int8(2) - jnp.int8(1)
    return b


def host_words(packed: np.ndarray, dtype=np.uint32) -> np.ndarray:
    """Host-side (numpy) twin of :func:`as_words`: rows of packed bytes ``uint8 [n, B]`` as words of ``dtype``.

    Rows are zero-padded to a whole number of words (``0 XOR 0`` adds nothing to a Hamming distance), e.g.
    ``uint64`` for ``np.bitwise_count`` on the host or ``uint32`` to move to a device for ``lax.population_count``.
    """
    size = np.dtype(dtype).itemsize
    pad = (-packed.shape[1]) % size
    if pad:
        packed = np.concatenate([packed, np.zeros((packed.shape[0], pad), np.uint8)], axis=1)
    return np.ascontiguousarray(packed).view(dtype)


def as_words(packed: jax.Array) -> jax.Array:
    """View packed codes ``uint8 [n, B]`` as ``uint32 [n, ceil(B/4)]`` words for ``lax.population_count``.

    When ``B`` is not a multiple of 4 the rows are padded with zero bytes; since the same padding is applied
    to queries and gallery, ``0 XOR 0`` adds nothing to any Hamming distance. The byte order inside a word
    is irrelevant for popcounts of XORs. Works under ``jit`` (no validation here: see the public callers).
    """
    n, nb = packed.shape
    pad = (-nb) % 4
    if pad:
        packed = jnp.pad(packed, ((0, 0), (0, pad)))
    return jax.lax.bitcast_convert_type(packed.reshape(n, (nb + pad) // 4, 4), jnp.uint32)
