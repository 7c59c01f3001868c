"""PCB stripes, code split and the two-branch (teacher / student) network of SSR."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash.models.pcb import PCBHead, TwoBranchPCB, split_bits, stripe_bounds, stripe_pool, two_branch_backbones


@pytest.mark.parametrize("height,parts", [(24, 6), (6, 6), (4, 6), (7, 3), (1, 6)])
def test_stripes_follow_adaptive_pooling(height, parts):
    bounds = stripe_bounds(height, parts)
    ref = [(math.floor(i * height / parts), math.ceil((i + 1) * height / parts)) for i in range(parts)]
    assert bounds == ref
    x = np.random.default_rng(0).normal(size=(2, height, 3, 5)).astype(np.float32)
    pooled = np.asarray(stripe_pool(jnp.asarray(x), parts))
    assert pooled.shape == (2, parts, 5)
    for i, (s, e) in enumerate(ref):
        np.testing.assert_allclose(pooled[:, i], x[:, s:e].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_split_bits_paper_table():
    assert split_bits(2048) == (256, 512) and split_bits(512) == (64, 128) and split_bits(128) == (16, 32)
    assert split_bits(16) == (2, 4)
    with pytest.raises(ValueError, match="multiple"):
        split_bits(100)


def test_head_shapes_and_parameters():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6, 3, 16)), jnp.float32)
    head = PCBHead(local_bits=4, global_bits=8)
    v = jax.jit(head.init)(jax.random.PRNGKey(0), x)
    out, _ = jax.jit(lambda v, x: head.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    assert out["local"].shape == (3, 6, 4) and out["global"].shape == (3, 8) and out["global_feature"].shape == (3, 16)
    params = v["params"]
    assert {f"local{i}" for i in range(6)} <= set(params) and "global" in params and "aab" in params
    assert "local0_bn" in params
    # AAB starts as the identity: the global feature is the plain average of the map
    np.testing.assert_allclose(out["global_feature"], x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    plain = PCBHead(local_bits=4, global_bits=8, use_bn=False, attention=False)
    assert set(plain.init(jax.random.PRNGKey(0), x)["params"]) == {f"local{i}" for i in range(6)} | {"global"}


@pytest.mark.parametrize("name,kwargs", [("small_cnn", {"widths": (4, 8, 8, 16)}), ("resnet18", {"last_stride": 1})])
def test_two_branch_network(name, kwargs):
    trunk, teacher, student = two_branch_backbones(name, **kwargs)
    net = TwoBranchPCB(trunk, teacher, student, local_bits=2, global_bits=4)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 32, 16, 3)), jnp.float32)
    v = jax.jit(net.init)(jax.random.PRNGKey(0), x)
    out = jax.jit(net.apply)(v, x)
    for b in ("teacher", "student"):
        assert out[b]["local"].shape == (2, 6, 2) and out[b]["global"].shape == (2, 4)
    p = v["params"]
    assert set(p) == {"trunk", "teacher_branch", "student_branch", "teacher_head", "student_head"}
    if name == "resnet18":  # torchvision stage names kept: pretrained weights fit each part
        assert set(p["trunk"]) == {"stem", "layer1", "layer2"}
        assert set(p["teacher_branch"]) == set(p["student_branch"]) == {"layer3", "layer4"}
    # the branches are independent copies
    def kernels(t):
        return [a for path, a in jax.tree_util.tree_leaves_with_path(t) if "kernel" in jax.tree_util.keystr(path)]

    assert not np.allclose(kernels(p["teacher_branch"])[0], kernels(p["student_branch"])[0])
    with pytest.raises(ValueError, match="cannot be split"):
        two_branch_backbones("googlenet")
    with pytest.raises(ValueError, match="split_at"):
        two_branch_backbones("small_cnn", widths=(4, 8), split_at=2)
