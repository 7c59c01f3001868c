"""GoogLeNet: parameter count (torchvision's without fc / aux), shapes, aux heads only in training, ceil-mode
pooling and the aux head against numpy definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import models
from jhash.models import googlenet as gn


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def test_param_count_and_aux_heads():
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    plain = models.GoogLeNet()
    v = jax.eval_shape(lambda x: plain.init(jax.random.key(0), x), x)
    print("GoogLeNet params without fc/aux:", _count(v["params"]))
    assert _count(v["params"]) == 5_599_904  # torchvision 6,624,904 minus fc (1024*1000 + 1000)

    m = models.GoogLeNet(aux_num_classes=(7, 11))
    v = jax.eval_shape(lambda x: m.init(jax.random.key(0), x, train=False), x)  # aux created even in eval init
    aux_size = lambda c, n: c * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * n + n  # noqa: E731
    assert _count(v["params"]["aux1"]) == aux_size(512, 7) and _count(v["params"]["aux2"]) == aux_size(528, 11)
    out, _ = jax.eval_shape(
        lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)}), v, x)
    assert out["aux1_logits"].shape == (2, 7) and out["aux2_logits"].shape == (2, 11)
    assert out["feature_map"].shape == (2, 7, 7, 1024) and out["features"].shape == (2, 1024)
    out = jax.eval_shape(lambda v, x: m.apply(v, x, train=False), v, x)
    assert set(out) == {"feature_map", "features"}
    with pytest.raises(ValueError, match="aux_num_classes"):
        models.GoogLeNet(aux_num_classes=(3,)).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def test_small_input_and_paper_branch3():
    m = models.GoogLeNet(aux_num_classes=(3, 4), branch3_kernel=5)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    v = jax.eval_shape(lambda x: m.init(jax.random.key(0), x), x)
    assert v["params"]["inception3a"]["branch3_1"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    out, _ = jax.eval_shape(
        lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}), v, x)
    assert out["features"].shape == (2, 1024) and out["feature_map"].shape == (2, 2, 2, 1024)
    assert out["aux1_logits"].shape == (2, 3) and out["aux2_logits"].shape == (2, 4)


def _np_maxpool_ceil(x, k, s, p):
    """torch max_pool2d(ceil_mode=True) on NHWC, from its definition (windows start inside input/left pad)."""
    n, h, w, c = x.shape

    def size(L):
        o = -(-(L + 2 * p - k) // s) + 1
        return o - 1 if (o - 1) * s >= L + p else o

    out = np.empty((n, size(h), size(w), c), x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            h0, w0 = i * s - p, j * s - p
            win = x[:, max(h0, 0) : min(h0 + k, h), max(w0, 0) : min(w0 + k, w), :]
            out[:, i, j] = win.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("hw", [(7, 7), (8, 5), (14, 13), (3, 4)])
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (2, 2, 0), (3, 1, 1)])
def test_max_pool_ceil_mode(hw, k, s, p):
    x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
    np.testing.assert_array_equal(gn.max_pool_ceil(jnp.asarray(x), k, s, p), _np_maxpool_ceil(x, k, s, p))


def test_aux_head_matches_numpy_on_torch_layout():
    """Adaptive 4x4 average pool, 1x1 conv + BN(eps 1e-3), NCHW flatten, fc1, ReLU, fc2 (eval mode)."""
    rng = np.random.default_rng(0)
    cin, n_cls = 8, 5
    x = rng.normal(size=(2, 6, 5, cin)).astype(np.float32)
    conv_w = rng.normal(size=(128, cin, 1, 1)).astype(np.float32) * 0.3  # torch OIHW
    g, b, mu, var = (rng.uniform(0.5, 1.5, 128), rng.normal(size=128), rng.normal(size=128), rng.uniform(0.5, 2, 128))
    fc1_w, fc1_b = rng.normal(size=(1024, 2048)).astype(np.float32) * 0.02, rng.normal(size=1024).astype(np.float32)
    fc2_w, fc2_b = rng.normal(size=(n_cls, 1024)).astype(np.float32) * 0.05, rng.normal(size=n_cls).astype(np.float32)

    # numpy reference in NCHW
    xc = x.transpose(0, 3, 1, 2).astype(np.float64)
    pooled = np.zeros((2, cin, 4, 4))
    for i in range(4):
        for j in range(4):
            h0, h1 = (i * 6) // 4, -(-((i + 1) * 6) // 4)
            w0, w1 = (j * 5) // 4, -(-((j + 1) * 5) // 4)
            pooled[:, :, i, j] = xc[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    y = np.einsum("nchw,oc->nohw", pooled, conv_w[:, :, 0, 0])
    y = (y - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-3) * g[None, :, None, None] + b[None, :, None, None]
    y = np.maximum(y, 0).reshape(2, -1)
    ref = np.maximum(y @ fc1_w.T + fc1_b, 0) @ fc2_w.T + fc2_b

    params = {"conv": {"conv": {"kernel": conv_w.transpose(2, 3, 1, 0)}, "bn": {"scale": g, "bias": b}},
              "fc1": {"kernel": fc1_w.T, "bias": fc1_b}, "fc2": {"kernel": fc2_w.T, "bias": fc2_b}}
    stats = {"conv": {"bn": {"mean": mu, "var": var}}}
    ours = gn.InceptionAux(n_cls).apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
