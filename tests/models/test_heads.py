"""Pooling, GeM, BNNeck and HashLayer against numpy definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import models


def _map(seed, shape=(3, 5, 4, 6)):
    return np.random.default_rng(seed).uniform(0.01, 2.0, size=shape).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(1.0, 6.0))
def test_gem_matches_definition(seed, p):
    x = _map(seed)
    gem = models.GeM(p_init=p)
    v = gem.init(jax.random.key(0), x)
    assert v["params"]["p"].shape == (1,)
    ref = np.mean(np.maximum(x.astype(np.float64), 1e-6) ** p, axis=(1, 2)) ** (1 / p)
    np.testing.assert_allclose(gem.apply(v, x), ref, rtol=2e-5)


def test_gem_at_p1_is_average_pooling_and_p_is_learnable():
    x = _map(0)
    gem = models.GeM(p_init=1.0)
    v = gem.init(jax.random.key(0), x)
    np.testing.assert_allclose(gem.apply(v, x), models.global_avg_pool(x), rtol=1e-6)
    np.testing.assert_allclose(models.global_avg_pool(x), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(models.global_max_pool(x), x.max(axis=(1, 2)))
    g = jax.grad(lambda p: gem.apply({"params": {"p": p}}, x).sum())(v["params"]["p"])
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    assert "params" not in models.GeM(learnable=False).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        models.GlobalPool("sum").init(jax.random.key(0), x)


def test_global_pool_bf16_returns_float32():
    x = jnp.asarray(_map(1), jnp.bfloat16)
    for kind in ("avg", "max", "gem"):
        pool = models.GlobalPool(kind)
        y = pool.apply(pool.init(jax.random.key(0), x), x)
        assert y.shape == (3, 6) and y.dtype == jnp.float32


def test_bnneck():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 16)).astype(np.float32)
    neck = models.BNNeck(num_classes=5)
    v = neck.init(jax.random.key(0), x)
    assert set(v["params"]["bn"]) == {"scale"}  # no bias shift
    assert v["params"]["classifier"]["kernel"].shape == (16, 5) and "bias" not in v["params"]["classifier"]
    out, upd = neck.apply(v, x, train=True, mutable=["batch_stats"])
    np.testing.assert_array_equal(out["features"], x)
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(out["bn_features"], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], ref @ np.asarray(v["params"]["classifier"]["kernel"]), rtol=1e-3, atol=1e-5)
    # running statistics with torch's momentum 0.1: new = 0.9 * old + 0.1 * batch (unbiased var as flax: biased)
    np.testing.assert_allclose(upd["batch_stats"]["bn"]["mean"], 0.1 * x.mean(0), rtol=1e-5)
    eval_out = neck.apply(v, x, train=False)  # running stats at init: mean 0, var 1
    np.testing.assert_allclose(eval_out["bn_features"], x / np.sqrt(1 + 1e-5), rtol=1e-5)
    assert "logits" not in models.BNNeck().apply(models.BNNeck().init(jax.random.key(0), x), x)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "none"])
@pytest.mark.parametrize("use_bn", [False, True])
def test_hash_layer(activation, use_bn):
    x = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    layer = models.HashLayer(12, activation=activation, use_bn=use_bn)
    v = layer.init(jax.random.key(0), x)
    pre, act = layer.apply(v, x, train=False)
    w, b = np.asarray(v["params"]["dense"]["kernel"]), np.asarray(v["params"]["dense"]["bias"])
    ref = x @ w + b
    if use_bn:  # eval mode with initial running stats (mean 0, var 1), scale 1, bias 0
        ref = ref / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(pre, ref, rtol=1e-5, atol=1e-6)
    expect = {"tanh": np.tanh(ref), "sigmoid": 1 / (1 + np.exp(-ref)), "relu": np.maximum(ref, 0), "none": ref}
    np.testing.assert_allclose(act, expect[activation], rtol=1e-5, atol=1e-6)
    assert pre.shape == act.shape == (6, 12)
    if use_bn:
        (pre_t, _), upd = layer.apply(v, x, train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(np.asarray(pre_t).mean(0), 0, atol=1e-5)  # BN in training normalises


def test_hash_layer_bad_activation():
    with pytest.raises(ValueError, match="unknown hash activation 'sign'"):
        models.HashLayer(8, activation="sign").init(jax.random.key(0), np.zeros((2, 4), np.float32))
