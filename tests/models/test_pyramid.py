"""CodePyramid: shapes and parameter chain, tanh / BN, detached inputs, length checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash.models.pyramid import CodePyramid, check_lengths

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 20)), jnp.float32)


def _init(**kw):
    m = CodePyramid(**kw)
    return m, m.init(jax.random.PRNGKey(0), X, train=False)


def test_shapes_and_chain():
    m, v = _init(lengths=(64, 32, 8))
    levels, _ = m.apply(v, X, train=True, mutable=["batch_stats"])
    assert [lv.act.shape for lv in levels] == [(6, 64), (6, 32), (6, 8)]
    p = v["params"]
    assert p["fc0"]["kernel"].shape == (20, 64) and p["fc1"]["kernel"].shape == (64, 32) and p["fc2"]["kernel"].shape == (32, 8)
    for lv in levels:
        np.testing.assert_allclose(lv.act, np.tanh(lv.pre), rtol=1e-6)
        assert lv.pre.dtype == jnp.float32
        # training BN: every bit is centred over the batch (balanced signs)
        np.testing.assert_allclose(np.mean(np.asarray(lv.pre), axis=0), 0.0, atol=1e-4)
    # level k+1 reads v_k (pre-BN): recompute by hand
    np.testing.assert_allclose(levels[1].v, levels[0].v @ p["fc1"]["kernel"] + p["fc1"]["bias"], rtol=1e-4, atol=1e-5)
    test_levels = m.apply(v, X, train=False)
    assert [lv.pre.shape for lv in test_levels] == [(6, 64), (6, 32), (6, 8)]


def test_without_bn():
    m, v = _init(lengths=(16, 4), use_bn=False)
    assert "batch_stats" not in v
    levels = m.apply(v, X, train=False)
    np.testing.assert_array_equal(levels[0].pre, levels[0].v)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_inputs_stops_the_short_codes_gradient(detach):
    m, v = _init(lengths=(16, 4), detach_inputs=detach)

    def short_loss(params):
        levels, _ = m.apply({**v, "params": params}, X, train=True, mutable=["batch_stats"])
        return jnp.sum(levels[1].act ** 2)

    g = jax.grad(short_loss)(v["params"])
    first = float(jnp.abs(g["fc0"]["kernel"]).sum())
    assert (first == 0.0) == detach
    assert float(jnp.abs(g["fc1"]["kernel"]).sum()) > 0


def test_lengths_checked():
    assert check_lengths([2048, 512, 128, 32]) == (2048, 512, 128, 32)
    for bad in [(), (32, 128), (64, 64), (16, 0), "ab"]:
        with pytest.raises(ValueError, match="lengths"):
            check_lengths(bad)
