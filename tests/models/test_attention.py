"""AAB (Jin et al. 2021, eqs. 8-10): shapes, identity at zero attention, and a numpy loop reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash.models.attention import AttributeGuidedAttention, aab_combine


def _init(x, **kw):
    m = AttributeGuidedAttention(**kw)
    return m, m.init(jax.random.PRNGKey(0), x)


def test_shape_and_identity_at_zero_attention():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 2, 16)), jnp.float32)
    m, v = _init(x)
    out = m.apply(v, x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, rtol=0, atol=0)  # zero-initialised raising convs: F_ref = F_in
    assert v["params"]["s1"]["kernel"].shape == (1, 1, 16, 2)  # C / r with r = 8
    # zero raising convs also give the identity when the reductions are arbitrary
    p = jax.tree_util.tree_map(lambda a: a + 0.3, v["params"])
    for name in ("s_out", "c_out"):
        p[name] = jax.tree_util.tree_map(jnp.zeros_like, p[name])
    np.testing.assert_allclose(m.apply({"params": p}, x), x, atol=0)


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _reference(x, p):
    """Eqs. 8-10 with explicit loops over positions / channels."""
    b, h, w, ch = x.shape
    X = h * w

    def conv(name, t):  # 1x1 conv: [X, Cin] -> [X, Cout]
        return t @ np.asarray(p[name]["kernel"])[0, 0] + np.asarray(p[name]["bias"])

    out = np.empty_like(x, dtype=np.float64)
    for n in range(b):
        f = x[n].reshape(X, ch).astype(np.float64)
        s1, s2, s3 = conv("s1", f), conv("s2", f), conv("s3", f)
        agg_s = np.zeros_like(s3)
        for i in range(X):
            r = _softmax(np.array([s1[i] @ s2[j] for j in range(X)]))
            agg_s[i] = sum(r[j] * s3[j] for j in range(X))
        c1, c2, c3 = conv("c1", f), conv("c2", f), conv("c3", f)
        c = c1.shape[1]
        agg_c = np.zeros_like(c3)
        for nn_ in range(c):
            r = _softmax(np.array([c2[:, nn_] @ c1[:, m] for m in range(c)]))
            agg_c[:, nn_] = sum(r[m] * c3[:, m] for m in range(c))
        fs, fc = conv("s_out", agg_s), conv("c_out", agg_c)
        out[n] = ((fs + fc) * f + f).reshape(h, w, ch)
    return out


def test_matches_loop_reference_with_nonzero_attention():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2, 2, 3, 8)) * 0.5).astype(np.float32)
    m, v = _init(jnp.asarray(x), reduction=4, zero_init=False)
    p = jax.tree_util.tree_map(np.asarray, v["params"])
    out = m.apply(v, jnp.asarray(x))
    np.testing.assert_allclose(out, _reference(x, p), rtol=2e-4, atol=2e-5)
    _, maps = m.apply(v, jnp.asarray(x), return_maps=True)
    assert maps["spatial"].shape == (2, 6, 6) and maps["channel"].shape == (2, 2, 2)
    np.testing.assert_allclose(maps["spatial"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(maps["channel"].sum(-1), 1.0, rtol=1e-5)


def test_gradients_reach_the_zero_initialised_output_convs():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 2, 2, 16)), jnp.float32)
    m, v = _init(x)
    g = jax.grad(lambda p: jnp.sum(m.apply({"params": p}, x) ** 2))(v["params"])
    assert float(jnp.abs(g["s_out"]["kernel"]).sum()) > 0 and float(jnp.abs(g["c_out"]["kernel"]).sum()) > 0


def test_combine_and_errors():
    a = jnp.ones((1, 2, 2, 3))
    np.testing.assert_allclose(aab_combine(2 * a, a, a), 2 * a * 2 + 2 * a)
    with pytest.raises(ValueError, match="reduction"):
        _init(a, reduction=0)
    with pytest.raises(AssertionError):
        _init(jnp.ones((2, 3)))
