"""jhash.losses.classification against numpy / optax references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jhash import losses


def _np_ce(logits, labels, eps=0.0):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    k = logits.shape[1]
    q = np.full_like(logp, eps / k)
    q[np.arange(len(labels)), labels] += 1 - eps
    return float(np.mean(-(q * logp).sum(-1)))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_numpy(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, 7).astype(np.int32)
    got = jax.jit(losses.softmax_cross_entropy, static_argnames="label_smoothing")(logits, labels, label_smoothing=eps)
    np.testing.assert_allclose(got, _np_ce(logits, labels, eps), rtol=1e-5)
    if eps == 0:
        ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_cross_entropy_weights_and_grad():
    logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = jnp.array([0, 0, 1])
    w = jnp.array([1.0, 0.0, 1.0])
    got = losses.softmax_cross_entropy(logits, labels, weights=w)
    ref = (_np_ce(np.asarray(logits[:1]), np.array([0])) + _np_ce(np.asarray(logits[2:]), np.array([1]))) / 2
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    g = jax.grad(losses.softmax_cross_entropy)(logits, labels)
    assert np.all(np.isfinite(g))
    # gradient of mean CE: (softmax - onehot) / B
    p = jax.nn.softmax(logits)
    np.testing.assert_allclose(g, (p - jax.nn.one_hot(labels, 2)) / 3, atol=1e-6)


def test_cross_entropy_errors_name_the_argument():
    logits = jnp.zeros((4, 3))
    with pytest.raises(TypeError, match="'labels'"):
        losses.softmax_cross_entropy(logits, jnp.zeros((4,), jnp.float32))
    with pytest.raises(ValueError, match="'logits'"):
        losses.softmax_cross_entropy(jnp.zeros((4,)), jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match="'logits', 'labels'"):
        losses.softmax_cross_entropy(logits, jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.softmax_cross_entropy(logits, jnp.zeros((4,), jnp.int32), label_smoothing=1.0)


def test_multi_head_is_the_sum_of_heads():
    rng = np.random.default_rng(1)
    heads = {"id": (6, 10), "model": (6, 4), "color": (6, 3)}
    logits = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in heads.items()}
    labels = {k: jnp.asarray(rng.integers(0, s[1], s[0]), jnp.int32) for k, s in heads.items()}
    total = jax.jit(losses.multi_head_cross_entropy)(logits, labels)
    ref = sum(_np_ce(np.asarray(logits[k]), np.asarray(labels[k])) for k in heads)
    np.testing.assert_allclose(total, ref, rtol=1e-5)
    weighted = losses.multi_head_cross_entropy(logits, labels, head_weights={"id": 2.0})
    np.testing.assert_allclose(weighted, ref + _np_ce(np.asarray(logits["id"]), np.asarray(labels["id"])), rtol=1e-5)
    seq = losses.multi_head_cross_entropy(list(logits.values()), list(labels.values()))
    np.testing.assert_allclose(seq, ref, rtol=1e-5)
    # extra label keys are fine; a missing one is named
    losses.multi_head_cross_entropy({"id": logits["id"]}, labels)
    with pytest.raises(ValueError, match="color"):
        losses.multi_head_cross_entropy(logits, {"id": labels["id"], "model": labels["model"]})
    with pytest.raises(ValueError, match="head 'model'"):
        losses.multi_head_cross_entropy(logits, {**labels, "model": labels["model"][:3]})


@pytest.mark.parametrize("bad", [-1, 3])
def test_out_of_range_labels(bad):
    """Concrete labels outside [0, K) are a ValueError naming 'labels'; under jit (unchecked) they make the
    loss NaN, never the loss of another class; valid rows keep finite gradients."""
    logits = jnp.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels = np.array([bad, 1], np.int32)
    with pytest.raises(ValueError, match=rf"argument 'labels' must hold class ids in \[0, 3\).*\[{min(bad, 1)}, {max(bad, 1)}\]"):
        losses.softmax_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match="head 'id'.*'labels' must hold class ids"):
        losses.multi_head_cross_entropy({"id": logits}, {"id": labels})
    for eps in (0.0, 0.1):
        fn = jax.jit(lambda l, y: losses.softmax_cross_entropy(l, y, label_smoothing=eps))
        assert np.isnan(fn(logits, labels))
        np.testing.assert_allclose(fn(logits[1:], labels[1:]), _np_ce(np.asarray(logits[1:]), labels[1:], eps), rtol=1e-6)
    w = jnp.array([0.0, 1.0])
    assert np.isnan(jax.jit(losses.softmax_cross_entropy)(logits, labels, weights=w))
    g = jax.grad(lambda l: jax.jit(losses.softmax_cross_entropy)(l, jnp.array([0, 1])))(logits)
    assert np.all(np.isfinite(g))
