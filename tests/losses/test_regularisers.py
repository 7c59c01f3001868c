"""jhash.losses.regularisers: tr(H L Hᵀ) against the pairwise form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import losses


@jax.jit
def _all(h, y):
    return (
        losses.laplacian_regularizer(h, labels=y),
        losses.laplacian_regularizer(h, adjacency=losses.label_adjacency(y)),
        losses.laplacian_regularizer(h, labels=y, reduction="mean"),
    )


@settings(max_examples=25, deadline=None)
@given(b=st.sampled_from([1, 8]), length=st.sampled_from([1, 6]), classes=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_trace_equals_half_sum_of_weighted_distances(b, length, classes, seed):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(b, length)).astype(np.float32)
    y = rng.integers(0, classes, b).astype(np.int32)
    ref = 0.5 * sum(float(y[i] == y[j]) * np.sum((h[i] - h[j]) ** 2) for i in range(b) for j in range(b) if i != j)
    got, by_adjacency, mean = _all(jnp.asarray(h), jnp.asarray(y))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # the same graph given as an adjacency matrix, and tr(H L Hᵀ) written with H as columns
    np.testing.assert_allclose(by_adjacency, got, rtol=1e-5, atol=1e-5)
    a = (y[:, None] == y[None]).astype(np.float64) - np.eye(b)
    lap = np.diag(a.sum(1)) - a
    np.testing.assert_allclose(np.trace(h.T @ lap @ h), got, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean, got / b, rtol=1e-5, atol=1e-5)


def test_normalized_laplacian_and_grad():
    a = jnp.array([[0, 1, 0], [1, 0, 2], [0, 2, 0]], jnp.float32)
    lap = losses.graph_laplacian(a, normalized=True)
    d = np.array([1, 3, 2], np.float32)
    ref = np.eye(3) - np.asarray(a) / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(lap, ref, rtol=1e-6)
    h = jnp.ones((3, 4))
    np.testing.assert_allclose(losses.laplacian_regularizer(h, adjacency=a), 0.0, atol=1e-6)  # constant codes
    g = jax.jit(jax.grad(lambda h: losses.laplacian_regularizer(h, labels=jnp.array([0, 0, 1]))))(jnp.arange(12.0).reshape(3, 4))
    np.testing.assert_allclose(g[2], 0.0)  # a sample alone in its class gets no pull
    np.testing.assert_allclose(g[0], -g[1])


def test_errors():
    h = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="exactly one"):
        losses.laplacian_regularizer(h)
    with pytest.raises(ValueError, match="exactly one"):
        losses.laplacian_regularizer(h, labels=jnp.zeros(3, jnp.int32), adjacency=jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="'adjacency'"):
        losses.laplacian_regularizer(h, adjacency=jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="'codes', 'labels'"):
        losses.laplacian_regularizer(h, labels=jnp.zeros(4, jnp.int32))
