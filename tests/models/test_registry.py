"""Backbone lookup by name and feature dims (shape-only tracing: nothing is compiled)."""

import jax
import jax.numpy as jnp
import pytest

from jhash import models


@pytest.mark.parametrize(
    "name,kwargs,size",
    [
        ("resnet18", {}, (64, 32)),
        ("resnet34", {"last_stride": 1}, (64, 32)),
        ("resnet50", {"pooling": "gem"}, (64, 32)),
        ("googlenet", {}, (64, 64)),
        ("small_cnn", {"widths": (16, 32, 48)}, (64, 32)),
    ],
)
def test_every_backbone_returns_features_of_the_stated_dim(name, kwargs, size):
    module = models.get_backbone(name, **kwargs)
    x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
    v = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
    for train in (False, True):
        out = jax.eval_shape(
            lambda v, x: module.apply(v, x, train=train, mutable=["batch_stats"] if train else False,
                                      rngs={"dropout": jax.random.key(1)}), v, x)
        out = out[0] if train else out
        assert out["features"].shape == (2, models.feature_dim(name, **kwargs))
        assert out["feature_map"].ndim == 4 and out["feature_map"].shape[-1] == out["features"].shape[-1]


def test_registry_names_and_errors():
    assert {"resnet18", "resnet34", "resnet50", "googlenet", "small_cnn"} <= set(models.available_backbones())
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg16'; valid: resnet18, .*small_cnn"):
        models.get_backbone("vgg16")
    with pytest.raises(ValueError, match="unknown backbone"):
        models.feature_dim("resnet")
    with pytest.raises(TypeError, match="bad arguments for backbone 'resnet18'"):
        models.get_backbone("resnet18", widths=(1, 2))
    assert models.feature_dim("resnet50", last_stage="layer3") == 1024
    assert models.feature_dim("small_cnn") == 256 and models.feature_dim("googlenet") == 1024
    assert models.get_backbone("resnet34", last_stride=1).depth == 34
