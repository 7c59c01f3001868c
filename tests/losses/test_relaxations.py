"""Relaxation zoo and SSR self-distillation (Jin et al. 2021, eqs. 1-2) against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jhash.losses import relaxations as R

X = np.array([[-4.0, -3.0, -1.5, -1.0, -0.25, 0.0], [0.25, 0.999, 1.0, 2.0, 3.0, 5.0]], np.float32)


def _ref(kind, x):
    x = x.astype(np.float64)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "hardsigmoid":
        return np.array([[min(max(v / 6.0 + 0.5, 0.0), 1.0) for v in row] for row in x])
    if kind == "tanh":
        return np.tanh(x)
    if kind == "hardtanh":
        return np.array([[min(max(v, -1.0), 1.0) for v in row] for row in x])
    if kind == "sign_ste":
        return np.array([[1.0 if v > 0 else -1.0 for v in row] for row in x])
    return x  # dsh, ssr, none: identity


@pytest.mark.parametrize("kind", sorted(R.RELAXATIONS))
def test_relaxation_forward_matches_numpy(kind):
    np.testing.assert_allclose(R.relax(jnp.asarray(X), kind), _ref(kind, X), rtol=1e-6, atol=1e-7)


def _grad(kind, x):
    return np.asarray(jax.vmap(jax.grad(lambda v: R.relax(v, kind)))(jnp.asarray(x.ravel()))).reshape(x.shape)


def test_relaxation_gradients_documented():
    flat = X.ravel()
    # hardtanh / straight-through sign: 1 strictly inside (-1, 1), 0 outside
    inside = np.array([1.0 if abs(v) < 1 else 0.0 for v in flat]).reshape(X.shape)
    np.testing.assert_allclose(_grad("hardtanh", X), inside)
    np.testing.assert_allclose(_grad("sign_ste", X), inside)
    np.testing.assert_allclose(_grad("hardsigmoid", X),
                               np.array([1 / 6 if abs(v) < 3 else 0.0 for v in flat]).reshape(X.shape), rtol=1e-6)
    s = 1.0 / (1.0 + np.exp(-X.astype(np.float64)))
    np.testing.assert_allclose(_grad("sigmoid", X), s * (1 - s), rtol=1e-5)
    np.testing.assert_allclose(_grad("tanh", X), 1 - np.tanh(X.astype(np.float64)) ** 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_grad("ssr", X), np.ones_like(X))
    # the plain eq.-1 sign has no gradient at all
    g = jax.vmap(jax.grad(R.sign_binarize))(jnp.asarray(flat))
    np.testing.assert_array_equal(g, np.zeros_like(flat))


def test_sign_binarize_eq1_zero_goes_negative():
    out = R.sign_binarize(jnp.array([-2.0, -0.0, 0.0, 1e-7, 3.0]))
    np.testing.assert_array_equal(out, [-1, -1, -1, 1, 1])


def _ssr_ref(student, teacher, reduction):
    b, d = student.shape
    total = 0.0
    for i in range(b):
        row = 0.0
        for j in range(d):
            t = 1.0 if teacher[i, j] > 0 else -1.0
            row += abs(t - float(student[i, j]))
        total += row
    return total / (b * d) if reduction == "mean" else total / b


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ssr_distillation_matches_numpy(reduction):
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    t[0, 0] = 0.0  # quantised to -1 by eq. 1
    got = R.ssr_distillation_loss(jnp.asarray(s), jnp.asarray(t), reduction=reduction)
    np.testing.assert_allclose(got, _ssr_ref(s, t, reduction), rtol=1e-5)


def test_ssr_teacher_gets_no_gradient_student_gets_l1_subgradient():
    rng = np.random.default_rng(1)
    s, t = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32), jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    gs, gt = jax.grad(R.ssr_distillation_loss, argnums=(0, 1))(s, t)
    np.testing.assert_array_equal(gt, np.zeros((4, 6)))
    target = np.where(np.asarray(t) > 0, 1.0, -1.0)
    np.testing.assert_allclose(gs, np.sign(np.asarray(s) - target) / s.size, rtol=1e-6)


@settings(max_examples=30, deadline=None)
# XLA on CPU flushes subnormal floats to zero (so sgn(7e-44) = -1 there, +1 in numpy): normal floats only.
@given(hnp.arrays(np.float32, (3, 4), elements=st.floats(-5, 5, width=32, allow_subnormal=False)))
def test_ssr_zero_exactly_at_teacher_signs(t):
    target = np.where(t > 0, 1.0, -1.0).astype(np.float32)
    assert float(R.ssr_distillation_loss(jnp.asarray(target), jnp.asarray(t))) == 0.0
    assert float(R.ssr_distillation_loss(jnp.asarray(target + 0.5), jnp.asarray(t))) == pytest.approx(0.5)


def test_dsh_regularizer_matches_numpy():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(3, 5)).astype(np.float32)
    ref = sum(abs(abs(float(v)) - 1.0) for v in u.ravel())
    np.testing.assert_allclose(R.dsh_regularizer(jnp.asarray(u)), ref / u.size, rtol=1e-5)
    np.testing.assert_allclose(R.dsh_regularizer(jnp.asarray(u), reduction="sum"), ref / 3, rtol=1e-5)
    assert float(R.dsh_regularizer(jnp.asarray(np.sign(u)))) == 0.0


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        R.relax(jnp.ones((2, 2)), "relu6")
    with pytest.raises(ValueError, match="student"):
        R.ssr_distillation_loss(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with pytest.raises(TypeError, match="teacher"):
        R.ssr_distillation_loss(jnp.ones((2, 3)), jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="reduction"):
        R.dsh_regularizer(jnp.ones((2, 3)), reduction="max")
    with pytest.raises(ValueError, match="codes"):
        R.dsh_regularizer(jnp.ones((2, 3, 1)))
