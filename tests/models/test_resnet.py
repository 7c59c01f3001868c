"""ResNet: parameter counts (torchvision's, without fc), shapes, last stride, stage composition, bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import models


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _shapes(module, size=(64, 32), train=False):
    """Output shapes of ``module`` on a batch of 2 images, by tracing only (no compilation)."""
    x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)

    def apply(v, x):
        return module.apply(v, x, train=train, mutable=["batch_stats"] if train else False)

    out = jax.eval_shape(apply, variables, x)
    return variables, (out[0] if train else out)


@pytest.mark.parametrize("depth,expected", [(18, 11_176_512), (34, 21_284_672), (50, 23_508_032)])
def test_param_counts_match_torchvision_without_fc(depth, expected):
    variables, _ = _shapes(models.ResNet(depth=depth))
    assert _count(variables["params"]) == expected
    # batch statistics: mean and var of every BN (same count as the BN scales + biases)
    bn_params = sum(int(np.prod(a.shape)) for path, a in jax.tree_util.tree_leaves_with_path(variables["params"])
                    if path[-1].key in ("scale", "bias"))
    assert _count(variables["batch_stats"]) == bn_params


@pytest.mark.parametrize("train", [False, True])
def test_resnet50_shapes_and_last_stride(train):
    _, out = _shapes(models.ResNet(depth=50), (256, 128), train)
    assert out["stem"].shape == (2, 64, 32, 64)
    assert out["layer1"].shape == (2, 64, 32, 256)
    assert out["layer2"].shape == (2, 32, 16, 512)
    assert out["layer3"].shape == (2, 16, 8, 1024)
    assert out["layer4"].shape == out["feature_map"].shape == (2, 8, 4, 2048)
    assert out["features"].shape == (2, 2048) and out["features"].dtype == jnp.float32
    _, out1 = _shapes(models.ResNet(depth=50, last_stride=1), (256, 128), train)
    assert out1["feature_map"].shape == (2, 16, 8, 2048)  # last_stride=1 doubles the final map


def test_stage_ranges_and_channels():
    _, trunk = _shapes(models.ResNet(depth=34, last_stage="layer2"))
    assert set(trunk) == {"stem", "layer1", "layer2", "feature_map", "features"}
    assert trunk["feature_map"].shape == (2, 8, 4, 128) and trunk["features"].shape == (2, 128)
    branch = models.ResNet(depth=34, first_stage="layer3", last_stride=1)
    x = jax.ShapeDtypeStruct((2, 8, 4, 128), jnp.float32)
    v = jax.eval_shape(lambda x: branch.init(jax.random.key(0), x), x)
    assert set(v["params"]) == {"layer3", "layer4"}
    out = jax.eval_shape(lambda v, x: branch.apply(v, x), v, x)
    assert out["feature_map"].shape == (2, 4, 2, 512)
    assert [models.stage_channels(50, s) for s in models.STAGES] == [64, 256, 512, 1024, 2048]
    with pytest.raises(ValueError, match="unsupported ResNet depth 20"):
        _shapes(models.ResNet(depth=20))
    with pytest.raises(ValueError, match="comes after"):
        _shapes(models.ResNet(depth=18, first_stage="layer3", last_stage="layer1"))
    with pytest.raises(ValueError, match="unknown ResNet stage 'layer5'"):
        _shapes(models.ResNet(depth=18, last_stage="layer5"))


def test_bfloat16_compute_keeps_float32_params():
    module = models.ResNet(depth=18, dtype=jnp.bfloat16)
    variables, out = _shapes(module, train=True)
    assert {a.dtype for a in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert out["feature_map"].dtype == jnp.bfloat16 and out["features"].dtype == jnp.float32


def test_bottleneck_stride_in_3x3_and_zero_init_residual():
    block = models.Bottleneck(features=16, stride=2, downsample=True, zero_init_residual=True)
    x = jnp.ones((1, 8, 8, 32))
    v = jax.jit(block.init)(jax.random.key(0), x)
    p = v["params"]
    assert p["conv1"]["kernel"].shape == (1, 1, 32, 16) and p["conv2"]["kernel"].shape == (3, 3, 16, 16)
    assert p["conv3"]["kernel"].shape == (1, 1, 16, 64) and p["downsample_conv"]["kernel"].shape == (1, 1, 32, 64)
    assert not np.any(p["bn3"]["scale"]) and np.all(p["bn1"]["scale"] == 1)
    # conv1 sees the full 8x8 input: only the 3x3 conv2 is strided
    _, state = jax.eval_shape(
        lambda v: block.apply(v, x, train=True, mutable=["intermediates", "batch_stats"], capture_intermediates=True), v)
    inter = state["intermediates"]
    assert inter["conv1"]["__call__"][0].shape == (1, 8, 8, 16)
    assert inter["conv2"]["__call__"][0].shape == (1, 4, 4, 16)
