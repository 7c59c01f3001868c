"""SmallCNN: shapes, feature dim, train/eval behaviour, a few gradient steps on a fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jhash import models


def test_shapes_train_and_eval():
    m = models.SmallCNN()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 128, 64, 3)), jnp.float32)
    v = jax.jit(m.init)(jax.random.key(0), x)
    out = m.apply(v, x, train=False)
    assert out["feature_map"].shape == (4, 8, 4, 256) and out["features"].shape == (4, 256)
    assert [out[f"block{i}"].shape[-1] for i in range(4)] == [32, 64, 128, 256]
    out_t, upd = m.apply(v, x, train=True, mutable=["batch_stats"])
    assert out_t["features"].shape == (4, 256)
    assert not np.allclose(out_t["features"], out["features"])  # batch statistics vs running averages
    assert sum(a.size for a in jax.tree_util.tree_leaves(v["params"])) == (
        27 * 32 + 288 * 64 + 576 * 128 + 1152 * 256 + 2 * (32 + 64 + 128 + 256)
    )


def test_configurable_widths_and_errors():
    m = models.SmallCNN(widths=(8, 16, 24), convs_per_block=2, pooling="gem")
    x = jnp.ones((2, 64, 32, 3))
    v = jax.eval_shape(lambda: m.init(jax.random.key(0), x))
    out = jax.eval_shape(lambda v: m.apply(v, x), v)
    assert out["feature_map"].shape == (2, 8, 4, 24) and out["features"].shape == (2, 24)
    assert "block2_conv1" in v["params"] and v["params"]["pool"]["gem"]["p"].shape == (1,)
    with pytest.raises(ValueError, match="convs_per_block"):
        models.SmallCNN(convs_per_block=0).init(jax.random.key(0), x)


def test_a_few_steps_reduce_a_loss_on_a_fixed_batch():
    m = models.SmallCNN(widths=(8, 16))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 32, 16, 3)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
    v = jax.jit(m.init)(jax.random.key(0), x)
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, stats, opt):
        def loss_fn(p):
            out, upd = m.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
            return jnp.mean((out["features"] - target) ** 2), upd["batch_stats"]

        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), stats, opt, loss

    params, stats, opt = v["params"], v["batch_stats"], tx.init(v["params"])
    losses = []
    for _ in range(15):
        params, stats, opt, loss = step(params, stats, opt)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
