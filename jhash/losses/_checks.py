"""Argument checks shared by the losses (chex, at trace time, so they cost nothing under ``jit``).

A chex failure is re-raised as ``TypeError`` (wrong dtype) or ``ValueError`` (wrong rank / shape) whose
message contains ``jhash.losses.<fn>: argument '<name>' ...`` so the user sees which argument is wrong.
"""

from __future__ import annotations

from typing import Sequence

import contextlib

import chex
import jax.numpy as jnp


@contextlib.contextmanager
def _as(error: type):
    try:
        yield
    except AssertionError as e:
        raise error(str(e)) from None


def _msg(fn: str, name: str, what: str = "") -> str:
    return f"jhash.losses.{fn}: argument {name!r}{(' ' + what) if what else ''}"


def floating(fn: str, name: str, x, rank: int | Sequence[int] | None = None):
    """``x`` is a floating-point array of the given rank."""
    with _as(TypeError):
        chex.assert_type(x, float, custom_message=_msg(fn, name, "must be a floating-point array"))
    if rank is not None:
        with _as(ValueError):
            chex.assert_rank(x, rank, custom_message=_msg(fn, name, f"must have rank {rank}"))


def integer(fn: str, name: str, x, rank: int | Sequence[int] | None = None):
    """``x`` is an integer array (int8..int64 / uint) of the given rank."""
    with _as(TypeError):
        chex.assert_type(x, int, custom_message=_msg(fn, name, "must be an integer array (class ids)"))
    if rank is not None:
        with _as(ValueError):
            chex.assert_rank(x, rank, custom_message=_msg(fn, name, f"must have rank {rank}"))


def numeric(fn: str, name: str, x, rank: int | Sequence[int] | None = None):
    """``x`` is a real array of any numeric dtype (codes may be int8 ±1 or float)."""
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(_msg(fn, name, f"must be a numeric array, got dtype {x.dtype}"))
    if rank is not None:
        with _as(ValueError):
            chex.assert_rank(x, rank, custom_message=_msg(fn, name, f"must have rank {rank}"))


def same_leading(fn: str, names: Sequence[str], arrays: Sequence, axis: int = 0):
    """All ``arrays`` have the same size along ``axis`` (the batch)."""
    sizes = [a.shape[axis] for a in arrays]
    if len(set(sizes)) > 1:
        desc = ", ".join(f"{n}.shape={tuple(a.shape)}" for n, a in zip(names, arrays))
        raise ValueError(
            f"jhash.losses.{fn}: arguments {', '.join(map(repr, names))} must share dimension {axis} "
            f"(the batch); got {desc}"
        )


def same_shape(fn: str, names: Sequence[str], arrays: Sequence):
    """All ``arrays`` have identical shapes."""
    shapes = [tuple(a.shape) for a in arrays]
    if len(set(shapes)) > 1:
        desc = ", ".join(f"{n}.shape={s}" for n, s in zip(names, shapes))
        raise ValueError(f"jhash.losses.{fn}: arguments {', '.join(map(repr, names))} must have the same shape; got {desc}")


def shape(fn: str, name: str, x, expected: Sequence[int | None]):
    """``x.shape`` matches ``expected`` (``None`` = any size)."""
    with _as(ValueError):
        chex.assert_shape(x, tuple(expected), custom_message=_msg(fn, name, f"must have shape {tuple(expected)}"))


def non_negative(fn: str, name: str, value: float | None):
    """A static Python hyper-parameter is >= 0 (skipped for traced values)."""
    if value is None or not isinstance(value, (int, float)):
        return
    if value < 0:
        raise ValueError(f"jhash.losses.{fn}: argument {name!r} must be >= 0, got {value}")
