"""DHMTL: heads and their ablations, unknown labels, codes, the triplet variant, GoogLeNet aux heads, configs."""

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jhash import config as config_lib
from jhash import losses, methods
from jhash.data.info import DatasetInfo

dhmtl = methods.get("dhmtl")
INFO = DatasetInfo(name="t", num_classes=5, image_size=(16, 8), num_models=3, num_colors=2, num_train_images=20)


def _config(**method):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.model.bits = 12
    c.method = dhmtl.method_config(**method)
    return c


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, 16, 8, 3)).astype(np.float32),
        "label": np.array([0, 0, 1, 1, 4, 4], np.int32)[:n],
        "model": np.array([2, 2, 0, -1, 1, 1], np.int32)[:n],
        "color": np.array([1, 1, 0, 0, -1, 1], np.int32)[:n],
    }


def _ce(logits, y):
    known = y >= 0
    per = optax.softmax_cross_entropy_with_integer_labels(logits[known], y[known])
    return float(per.mean())


@pytest.mark.parametrize("ablation", sorted(dhmtl.ABLATIONS))
def test_loss_is_the_sum_of_the_selected_heads(ablation):
    c = _config(heads=ablation)
    model = dhmtl.build_model(c, INFO)
    batch = _batch()
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    out = model.apply(variables, batch["image"], train=False)
    heads = dhmtl.ABLATIONS[ablation]
    assert {k for k in out if k.startswith("logits_")} == {f"logits_{h}" for h in heads}
    assert out["hash"].shape == (6, 12) and float(jnp.min(out["hash"])) >= 0.0  # ReLU hash layer
    total, logs = jax.jit(lambda o, b: dhmtl.loss(o, b, c, None))(out, batch)
    key = {"id": "label", "model": "model", "color": "color"}
    ref = sum(_ce(np.asarray(out[f"logits_{h}"]), batch[key[h]]) for h in heads)  # -1 labels left out
    np.testing.assert_allclose(total, ref, rtol=1e-5)
    assert set(logs) == {f"ce_{h}" for h in heads}


def test_codes_relu_and_sigmoid():
    batch = _batch()
    for act in ("relu", "sigmoid"):
        c = _config(hash_activation=act)
        model = dhmtl.build_model(c, INFO)
        variables = model.init(jax.random.PRNGKey(1), batch["image"])
        out = model.apply(variables, batch["image"])
        codes = dhmtl.encode(out, c)["id"]
        assert codes.dtype == jnp.uint8
        threshold = 0.0 if act == "relu" else 0.5
        np.testing.assert_array_equal(codes, (np.asarray(out["hash"]) > threshold).astype(np.uint8))


def test_triplet_variant_constrains_negatives():
    c = _config(loss="triplet", triplet_margin=0.2)
    model = dhmtl.build_model(c, INFO)
    batch = _batch()
    variables = model.init(jax.random.PRNGKey(2), batch["image"])
    out = model.apply(variables, batch["image"])
    assert not any(k.startswith("logits_") for k in out)
    total, logs = dhmtl.loss(out, batch, c, None)
    # unknown model / colour (-1) never counts as "the same": replace by values unique to each sample
    uniq = -1 - np.arange(6)
    groups = tuple(np.where(batch[k] >= 0, batch[k], uniq) for k in ("model", "color"))
    ref = losses.constrained_triplet_loss(out["hash"], batch["label"], groups, 0.2)
    np.testing.assert_allclose(total, ref, rtol=1e-6)


def test_missing_labels_and_bad_heads_are_clear_errors():
    no_attrs = DatasetInfo(name="plain", num_classes=5, image_size=(16, 8))
    with pytest.raises(config_lib.ConfigError, match="'model'.*'plain'"):
        dhmtl.build_model(_config(), no_attrs)
    dhmtl.build_model(_config(heads=("id",)), no_attrs)
    with pytest.raises(config_lib.ConfigError, match="heads"):
        dhmtl.build_model(_config(heads=("id", "plate")), INFO)


def test_googlenet_aux_heads_supervised_with_model_labels():
    c = _config()
    c.model.backbone = "googlenet"
    c.model.backbone_kwargs = ml_collections.ConfigDict()
    c.model.bits = 8
    model = dhmtl.build_model(c, INFO)
    batch = _batch()
    images = np.zeros((6, 32, 32, 3), np.float32)
    # Shapes by abstract evaluation (compiling GoogLeNet costs ~45 s on CPU); the loss on random outputs of them.
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
    out_shapes, _ = jax.eval_shape(
        lambda v, x, r: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": r}),
        variables, images, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    out = {k: jnp.asarray(rng.normal(size=v.shape), v.dtype) for k, v in out_shapes.items()}
    assert out["aux1_logits"].shape == (6, 3) and out["aux2_logits"].shape == (6, 3)
    total, logs = dhmtl.loss(out, batch, c, None)
    aux_ref = sum(_ce(np.asarray(out[k]), batch["model"]) for k in ("aux1_logits", "aux2_logits"))
    np.testing.assert_allclose(logs["ce_aux"], aux_ref, rtol=1e-5)
    np.testing.assert_allclose(total, sum(float(v) for k, v in logs.items() if k != "ce_aux") + 0.3 * aux_ref, rtol=1e-5)


def test_hash_bn_option_centres_every_bit_on_its_threshold():
    """hash_bn: BatchNorm before the activation, so in training each bit's pre-activation has batch mean 0 and
    the code 1[h > 0] splits the batch; off by default (the paper's network has no BatchNorm there)."""
    batch = _batch()
    plain = dhmtl.build_model(_config(), INFO)
    assert "bn" not in plain.init(jax.random.PRNGKey(0), batch["image"])["params"]["hash"]
    c = _config(hash_bn=True)
    model = dhmtl.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    assert "bn" in variables["params"]["hash"]
    out, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
    pre = np.asarray(out["hash_pre"])
    np.testing.assert_allclose(pre.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pre.std(0), 1.0, atol=1e-2)
    np.testing.assert_array_equal(dhmtl.encode(out, c)["id"], (np.asarray(out["hash"]) > 0).astype(np.uint8))
