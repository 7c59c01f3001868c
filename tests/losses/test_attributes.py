"""Binary attribute learning (Jin et al. 2021, eqs. 3-5) against numpy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash.losses import attributes as A


def _loss_ref(z, y):
    total, count = 0.0, 0
    for n in range(z.shape[0]):
        for v in range(z.shape[1]):
            if y[n, v] < 0:
                continue
            z0, z1 = float(z[n, v, 0]), float(z[n, v, 1])
            m = max(z0, z1)
            log_norm = m + math.log(math.exp(z0 - m) + math.exp(z1 - m))
            total += log_norm - (z1 if y[n, v] == 1 else z0)
            count += 1
    return total / max(count, 1)


def test_binary_attribute_loss_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 30, 2)).astype(np.float32) * 3
    y = rng.integers(0, 2, size=(4, 30)).astype(np.int32)
    np.testing.assert_allclose(A.binary_attribute_loss(jnp.asarray(z), jnp.asarray(y)), _loss_ref(z, y), rtol=1e-5)
    y[0, :5] = -1  # not annotated: ignored
    y[2, 7] = -1
    np.testing.assert_allclose(A.binary_attribute_loss(jnp.asarray(z), jnp.asarray(y)), _loss_ref(z, y), rtol=1e-5)
    assert float(A.binary_attribute_loss(jnp.asarray(z), jnp.full((4, 30), -1, jnp.int32))) == 0.0


def test_loss_gradient_pushes_towards_label():
    z = jnp.zeros((1, 2, 2))
    g = jax.grad(A.binary_attribute_loss)(z, jnp.array([[1, 0]], jnp.int32))
    assert g[0, 0, 1] < 0 < g[0, 0, 0] and g[0, 1, 0] < 0 < g[0, 1, 1]


def test_attribute_codes_yes_wins_and_padding():
    z = np.zeros((2, 10, 2), np.float32)
    z[0, :, 1] = np.linspace(-1, 1, 10)  # yes wins for the positive half
    z[1, 3, 1] = 0.5
    codes = np.asarray(A.attribute_codes(jnp.asarray(z)))
    assert codes.shape == (2, 16) and codes.dtype == np.int8
    ref = np.array([[1 if z[n, v, 1] > z[n, v, 0] else -1 for v in range(10)] for n in range(2)])
    np.testing.assert_array_equal(codes[:, :10], ref)
    np.testing.assert_array_equal(codes[:, 10:], -1)  # constant padding: Hamming distances unchanged
    assert A.attribute_codes(jnp.asarray(z), pad_to=1).shape == (2, 10)
    p = np.asarray(A.attribute_probabilities(jnp.asarray(z)))
    np.testing.assert_allclose(p[0], 1 / (1 + np.exp(-(z[0, :, 1] - z[0, :, 0]))), rtol=1e-5)
    np.testing.assert_array_equal(p > 0.5, ref > 0)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="logits"):
        A.binary_attribute_loss(jnp.zeros((2, 3, 3)), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="labels"):
        A.binary_attribute_loss(jnp.zeros((2, 3, 2)), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TypeError, match="labels"):
        A.binary_attribute_loss(jnp.zeros((2, 3, 2)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="pad_to"):
        A.attribute_codes(jnp.zeros((2, 3, 2)), pad_to=0)
