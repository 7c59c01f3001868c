"""jhash.losses.pairwise against plain numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import losses


def _np_likelihood(u, y, v=None, z=None, diag=False):
    self_pairs = v is None
    v, z = (u, y) if self_pairs else (v, z)
    total, count = 0.0, 0
    for i in range(len(u)):
        for j in range(len(v)):
            if self_pairs and i == j and not diag:
                continue
            psi = 0.5 * float(np.dot(u[i], v[j]))
            s = float(y[i] == z[j])
            total += -(s * psi - np.logaddexp(0.0, psi))
            count += 1
    return total / max(count, 1)


_pl = jax.jit(losses.pairwise_likelihood_loss, static_argnames=("include_diagonal",))


@settings(max_examples=25, deadline=None)
@given(b=st.sampled_from([1, 9]), length=st.sampled_from([4, 16]), classes=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_pairwise_likelihood_matches_loop(b, length, classes, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(b, length)).astype(np.float32)
    y = rng.integers(0, classes, b).astype(np.int32)
    got = _pl(jnp.asarray(u), jnp.asarray(y))
    np.testing.assert_allclose(got, _np_likelihood(u, y), rtol=1e-4, atol=1e-5)
    got_d = _pl(jnp.asarray(u), jnp.asarray(y), include_diagonal=True)
    np.testing.assert_allclose(got_d, _np_likelihood(u, y, diag=True), rtol=1e-4, atol=1e-5)


def test_pairwise_likelihood_against_other_set_and_sum():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(7, 8)).astype(np.float32)
    y, z = rng.integers(0, 3, 5).astype(np.int32), rng.integers(0, 3, 7).astype(np.int32)
    got = losses.pairwise_likelihood_loss(u, y, v, z)
    np.testing.assert_allclose(got, _np_likelihood(u, y, v, z), rtol=1e-5)
    s = losses.pairwise_likelihood_loss(u, y, v, z, reduction="sum")
    np.testing.assert_allclose(s, 35 * got, rtol=1e-5)
    with pytest.raises(ValueError, match="other_labels"):
        losses.pairwise_likelihood_loss(u, y, v)


def test_pairwise_likelihood_is_stable_for_long_codes():
    # 2048-bit codes: Ψ reaches ±1024, where a naive log(1 + exp(Ψ)) overflows.
    b = np.sign(np.random.default_rng(0).normal(size=(6, 2048))).astype(np.float32) * 2
    y = np.array([0, 0, 1, 1, 2, 2], np.int32)
    b[1] = b[0]
    b[3] = -b[2]
    loss, grad = jax.jit(jax.value_and_grad(losses.pairwise_likelihood_loss))(b, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss > 0


def test_quantization_loss():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4, 6)).astype(np.float32)
    b = np.where(rng.normal(size=(4, 6)) >= 0, 1, -1).astype(np.int8)
    got = jax.jit(losses.quantization_loss)(u, b)
    np.testing.assert_allclose(got, np.mean(np.sum((u - b) ** 2, -1)), rtol=1e-6)
    np.testing.assert_allclose(losses.quantization_loss(u, b, reduction="sum"), np.sum((u - b) ** 2), rtol=1e-6)
    gu, gb = jax.grad(losses.quantization_loss, argnums=(0, 1))(jnp.asarray(u), jnp.asarray(b, jnp.float32))
    np.testing.assert_allclose(gu, 2 * (u - b) / 4, rtol=1e-6)
    assert np.all(gb == 0)
    with pytest.raises(ValueError, match="'codes', 'binary'"):
        losses.quantization_loss(u, b[:, :3])
    with pytest.raises(TypeError, match="'codes'"):
        losses.quantization_loss(b, b)
