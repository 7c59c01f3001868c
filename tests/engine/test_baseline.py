"""The baseline method: a few jitted train steps reduce the loss on a fixed batch (float32 and bfloat16)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import methods, optim, parallel, trainer
from jhash.data.info import DatasetInfo


def _config(dtype):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.model.bits = 32
    c.method = methods.get("baseline").method_config()
    c.optimizer.lr = 3e-3
    c.optimizer.schedule = "constant"
    c.train.steps = 10
    c.train.compute_dtype = dtype
    return c


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_train_steps_reduce_loss_on_fixed_batch(dtype):
    c = _config(dtype)
    info = DatasetInfo(name="t", num_classes=4, image_size=(16, 8), num_train_images=64)
    method = methods.get("baseline")
    model = method.build_model(c, info)
    variables = trainer.init_variables(model, c, info.image_size, jax.random.PRNGKey(0))
    tx, schedule = optim.make_optimizer(c, variables["params"], info)
    state = trainer.create_state(c, info, method, variables, tx, jax.random.PRNGKey(1))
    mesh = parallel.make_mesh(jax.devices()[:1])
    step = trainer.jit_train_step(trainer.make_train_step(model, method, c, tx, schedule), mesh)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 4).astype(np.int32)
    batch = {"image": (rng.normal(size=(16, 16, 8, 3)) + labels[:, None, None, None]).astype(np.float32),
             "label": labels}
    losses = []
    for _ in range(8):
        state, metrics = step(state, parallel.shard_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"ce", "triplet", "lr"} <= set(metrics)
    # master weights and batch statistics stay float32 whatever the compute dtype
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.batch_stats)} == {jnp.dtype("float32")}
    # encode gives ±1 codes of config.model.bits
    out = model.apply(state.variables(), batch["image"], train=False)
    codes = method.encode(out, c)["id"]
    assert codes.shape == (16, 32) and set(np.unique(codes)) <= {-1, 1}


def test_quantisation_term_is_logged_when_enabled():
    c = _config("float32")
    c.method.quant_weight = 0.1
    method = methods.get("baseline")
    u = jnp.tanh(jnp.linspace(-2, 2, 32).reshape(4, 8))
    outputs = {"hash": u, "hash_pre": u, "logits": jnp.zeros((4, 3))}
    total, logs = jax.jit(lambda o, b: method.loss(o, b, c, None))(outputs, {"label": jnp.array([0, 0, 1, 1])})
    expected_q = float(jnp.mean(jnp.sum((u - jnp.sign(u)) ** 2, axis=1))) / 8
    assert float(logs["quant"]) == pytest.approx(expected_q, rel=1e-5)
    assert float(total) == pytest.approx(float(logs["ce"] + logs["triplet"] + 0.1 * logs["quant"]), rel=1e-5)
