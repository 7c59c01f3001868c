"""torchvision -> Flax conversion: numeric parity against a numpy forward pass written from torchvision's
layout (NCHW activations, OIHW kernels, BN running statistics, stride placement), and the error paths."""

import functools
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from jhash import models
from jhash.models import convert

# ---------------------------------------------------------------------------------------------------
# A random torchvision-layout ResNet state_dict, written from torchvision's definition.

LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


def torchvision_resnet_state_dict(depth, seed=0):
    """A fresh dict (tests may edit it) over cached arrays."""
    return dict(_resnet_state_dict(depth, seed))


@functools.lru_cache(maxsize=None)
def _resnet_state_dict(depth, seed):
    kind, layers = LAYERS[depth]
    rng = np.random.default_rng(seed)
    sd = {}

    def conv(name, out_ch, in_ch, k):
        std = np.float32(np.sqrt(2.0 / (in_ch * k * k)))
        sd[f"{name}.weight"] = rng.standard_normal((out_ch, in_ch, k, k), dtype=np.float32) * std

    def bn(name, c, gamma=1.0):
        sd[f"{name}.weight"] = (gamma * rng.uniform(0.5, 1.0, c)).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(11, np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for bi in range(n):
            stride = (1 if li == 0 else 2) if bi == 0 else 1
            p = f"layer{li + 1}.{bi}"
            if kind == "basic":
                out = planes
                conv(f"{p}.conv1", planes, inplanes, 3), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes, gamma=0.3)
            else:
                out = planes * 4
                conv(f"{p}.conv1", planes, inplanes, 1), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", out, planes, 1), bn(f"{p}.bn3", out, gamma=0.3)
            if bi == 0 and (stride != 1 or inplanes != out):
                conv(f"{p}.downsample.0", out, inplanes, 1), bn(f"{p}.downsample.1", out)
            inplanes = out
    sd["fc.weight"] = rng.normal(0, 0.01, (1000, inplanes)).astype(np.float32)
    sd["fc.bias"] = np.zeros(1000, np.float32)
    return sd


# ---------------------------------------------------------------------------------------------------
# Reference forward pass in numpy (float64, NCHW), from the definitions.


def np_conv(x, w, stride, pad):
    """Cross-correlation of NCHW ``x`` with OIHW ``w``: a sum over kernel offsets of strided slices."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    assert i == c
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, a, b].astype(np.float64))
    return out


def np_bn(x, sd, name, eps=1e-5):
    g, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
    m, v = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
    r = lambda a: a.astype(np.float64)[None, :, None, None]  # noqa: E731
    return (x - r(m)) / np.sqrt(r(v) + eps) * r(g) + r(b)


def np_maxpool_3x3_s2_p1(x):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    out = np.full((n, c, ho, wo), -np.inf)
    for a in range(3):
        for b in range(3):
            out = np.maximum(out, xp[:, :, a : a + 2 * (ho - 1) + 1 : 2, b : b + 2 * (wo - 1) + 1 : 2])
    return out


def np_resnet_features(sd, depth, x_nchw, last_stride=2):
    kind, layers = LAYERS[depth]
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    x = relu(np_bn(np_conv(x_nchw, sd["conv1.weight"], 2, 3), sd, "bn1"))
    x = np_maxpool_3x3_s2_p1(x)
    for li, n in enumerate(layers):
        for bi in range(n):
            stride = ((1, 2, 2, last_stride)[li]) if bi == 0 else 1
            p = f"layer{li + 1}.{bi}"
            if kind == "basic":
                y = relu(np_bn(np_conv(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1"))
                y = np_bn(np_conv(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
            else:  # torchvision v1.5: the stride is in the 3x3 conv2
                y = relu(np_bn(np_conv(x, sd[f"{p}.conv1.weight"], 1, 0), sd, f"{p}.bn1"))
                y = relu(np_bn(np_conv(y, sd[f"{p}.conv2.weight"], stride, 1), sd, f"{p}.bn2"))
                y = np_bn(np_conv(y, sd[f"{p}.conv3.weight"], 1, 0), sd, f"{p}.bn3")
            if f"{p}.downsample.0.weight" in sd:
                x = np_bn(np_conv(x, sd[f"{p}.downsample.0.weight"], stride, 0), sd, f"{p}.downsample.1")
            x = relu(y + x)
    return x.mean(axis=(2, 3))


# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).normal(size=(1, 64, 32, 3)).astype(np.float32)  # NHWC


def _flax_features(depth, params, stats, image, **kw):
    model = models.ResNet(depth=depth, **kw)
    out = model.apply({"params": params, "batch_stats": stats}, jnp.asarray(image), train=False)
    return np.asarray(out["features"])


@pytest.mark.parametrize("depth,last_stride", [(18, 1), (50, 2)])
def test_parity_with_numpy_reference(tmp_path, image, depth, last_stride):
    sd = torchvision_resnet_state_dict(depth, seed=depth)
    path = tmp_path / f"resnet{depth}.safetensors"
    save_file(sd, str(path))
    params, stats = models.load_torchvision_resnet(path)  # depth inferred from the keys
    ours = _flax_features(depth, params, stats, image, last_stride=last_stride)
    ref = np_resnet_features(sd, depth, image.transpose(0, 3, 1, 2).astype(np.float64), last_stride)
    assert ours.shape == ref.shape == (1, 512 if depth == 18 else 2048)
    assert np.abs(ref).max() > 0.1  # a meaningful signal, not all zeros
    np.testing.assert_array_less(np.abs(ours - ref).max(), 1e-4)
    if depth == 18:  # composition: a trunk up to layer2, then a layer3..layer4 branch, is the same network
        variables = {"params": params, "batch_stats": stats}
        pick = lambda keys: {c: {k: variables[c][k] for k in keys} for c in variables}  # noqa: E731
        trunk = models.ResNet(depth=18, last_stage="layer2")
        branch = models.ResNet(depth=18, first_stage="layer3", last_stride=last_stride)
        h = trunk.apply(pick(("stem", "layer1", "layer2")), jnp.asarray(image))["feature_map"]
        np.testing.assert_array_less(np.abs(branch.apply(pick(("layer3", "layer4")), h)["features"] - ref).max(), 1e-4)


def test_layouts_transposed():
    sd = torchvision_resnet_state_dict(18)
    params, stats = models.convert_torchvision_resnet(sd)
    np.testing.assert_array_equal(params["stem"]["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
    blk = params["layer2"]["block0"]
    np.testing.assert_array_equal(blk["downsample_conv"]["kernel"][0, 0], sd["layer2.0.downsample.0.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(blk["bn1"]["scale"], sd["layer2.0.bn1.weight"])
    np.testing.assert_array_equal(stats["layer2"]["block0"]["downsample_bn"]["var"], sd["layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(stats["stem"]["bn1"]["mean"], sd["bn1.running_mean"])
    assert sum(a.size for a in jax.tree_util.tree_leaves(params)) == 11_176_512


def test_infer_depth():
    for depth in (18, 34, 50):
        assert convert.infer_resnet_depth(torchvision_resnet_state_dict(depth)) == depth
    with pytest.raises(convert.ConversionError, match="not a torchvision ResNet"):
        convert.infer_resnet_depth({"conv1.weight": np.zeros((64, 3, 7, 7))})


def test_missing_key_error():
    sd = torchvision_resnet_state_dict(18)
    del sd["layer3.1.bn2.running_var"]
    with pytest.raises(convert.ConversionError, match=r"missing keys \(1\): layer3\.1\.bn2\.running_var"):
        models.convert_torchvision_resnet(sd, depth=18)


def test_wrong_shape_error():
    sd = torchvision_resnet_state_dict(18)
    sd["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
    with pytest.raises(convert.ConversionError) as e:
        models.convert_torchvision_resnet(sd, depth=18)
    msg = str(e.value)
    assert "layer1.0.conv2.weight" in msg and "(64, 64, 1, 1)" in msg and "(64, 64, 3, 3)" in msg


def test_unexpected_key_error_and_wrong_depth():
    sd = torchvision_resnet_state_dict(18)
    sd["layer1.0.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(convert.ConversionError, match=r"unexpected keys \(1\): layer1\.0\.extra\.weight"):
        models.convert_torchvision_resnet(sd, depth=18)
    with pytest.raises(convert.ConversionError, match="missing keys"):  # an 18 file read as a 34
        models.convert_torchvision_resnet(torchvision_resnet_state_dict(18), depth=34)


def test_load_state_dict_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        convert.load_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown state_dict format"):
        convert.load_state_dict(tmp_path / "w.npz")
    (tmp_path / "w.pth").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(ImportError, match="needs PyTorch"):
        convert.load_state_dict(tmp_path / "w.pth")


def test_pth_roundtrip_when_torch_installed(tmp_path):
    torch = pytest.importorskip("torch")
    sd = torchvision_resnet_state_dict(18)
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "w.pth")
    loaded = convert.load_state_dict(tmp_path / "w.pth")
    assert set(loaded) == set(sd)
    np.testing.assert_array_equal(loaded["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


# ---------------------------------------------------------------------------------------------------
# Inserting converted weights into a model's variables


class _Net(nn.Module):
    backbone: nn.Module

    @nn.compact
    def __call__(self, x, train=False):
        f = self.backbone(x, train=train)["features"]
        return models.HashLayer(16, use_bn=True, name="hash")(f, train=train).act


def _zeros_variables(module, size=(64, 32)):
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), jnp.zeros((1, *size, 3)))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def test_load_pretrained_into_model(tmp_path):
    sd = torchvision_resnet_state_dict(18)
    save_file(sd, str(tmp_path / "r18.safetensors"))
    net = _Net(backbone=models.ResNet(depth=18, pooling="gem"))
    variables = _zeros_variables(net)
    out = models.load_pretrained(variables, tmp_path / "r18.safetensors")
    params, stats = models.convert_torchvision_resnet(sd)
    np.testing.assert_array_equal(out["params"]["backbone"]["layer4"]["block1"]["conv2"]["kernel"],
                                  params["layer4"]["block1"]["conv2"]["kernel"])
    np.testing.assert_array_equal(out["batch_stats"]["backbone"]["stem"]["bn1"]["var"], stats["stem"]["bn1"]["var"])
    # untouched: the head and the GeM exponent (not in a torchvision file)
    assert not np.any(out["params"]["hash"]["dense"]["kernel"])
    assert not np.any(out["params"]["backbone"]["pool"]["gem"]["p"])
    # a ResNet-18 file does not fit a ResNet-34 backbone
    wrong = _zeros_variables(_Net(backbone=models.ResNet(depth=34)))
    with pytest.raises(convert.ConversionError, match="does not provide"):
        models.load_pretrained(wrong, tmp_path / "r18.safetensors")


def test_merge_params_into_trunk_and_branches():
    """SSR-style: trunk up to layer2 and two copies of layer3+layer4 each receive their part."""
    params, _ = models.convert_torchvision_resnet(torchvision_resnet_state_dict(18))

    class TwoBranch(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            h = models.ResNet(depth=18, last_stage="layer2", name="trunk")(x, train)["feature_map"]
            t = models.ResNet(depth=18, first_stage="layer3", last_stride=1, name="teacher")(h, train)
            s = models.ResNet(depth=18, first_stage="layer3", last_stride=1, name="student")(h, train)
            return t["features"] + s["features"]

    target = _zeros_variables(TwoBranch())["params"]
    for part in ("trunk", "teacher", "student"):
        target = convert.merge_params(target, params, part, allow_extra=True)
    np.testing.assert_array_equal(target["trunk"]["layer2"]["block1"]["conv1"]["kernel"],
                                  params["layer2"]["block1"]["conv1"]["kernel"])
    for part in ("teacher", "student"):
        assert set(target[part]) == {"layer3", "layer4"}
        np.testing.assert_array_equal(target[part]["layer4"]["block0"]["downsample_conv"]["kernel"],
                                      params["layer4"]["block0"]["downsample_conv"]["kernel"])
    with pytest.raises(convert.ConversionError, match="absent from target trunk"):
        convert.merge_params(target, params, "trunk")  # layer3/4 are not in the trunk


def test_merge_params_errors():
    target = {"a": {"b": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}}, "head": {"w": np.ones(2)}}
    with pytest.raises(convert.ConversionError, match=r"a/b/kernel: target \(3, 4\), source \(4, 3\)"):
        convert.merge_params(target, {"b": {"kernel": np.zeros((4, 3)), "bias": np.zeros(4)}}, "a")
    with pytest.raises(convert.ConversionError, match="no subtree 'a/c'"):
        convert.merge_params(target, {}, "a/c")
    with pytest.raises(convert.ConversionError, match="does not provide: b/bias"):
        convert.merge_params(target, {"b": {"kernel": np.ones((3, 4))}}, ("a",))
    merged = convert.merge_params(target, {"b": {"kernel": np.ones((3, 4))}}, "a", allow_missing=(r"/bias$",))
    assert merged["a"]["b"]["kernel"].sum() == 12 and merged["a"]["b"]["bias"].sum() == 0
    assert merged["head"] is target["head"] and target["a"]["b"]["kernel"].sum() == 0  # target not mutated


# ---------------------------------------------------------------------------------------------------
# GoogLeNet: key mapping (the aux head's numerics are checked in test_googlenet.py)


def torchvision_googlenet_keys_and_shapes():
    """(key, torch shape) of torchvision's googlenet BN/conv/linear tensors, from its definition."""
    out = []

    def basic(name, cin, cout, k):
        out.append((f"{name}.conv.weight", (cout, cin, k, k)))
        for s in ("weight", "bias", "running_mean", "running_var"):
            out.append((f"{name}.bn.{s}", (cout,)))

    basic("conv1", 3, 64, 7), basic("conv2", 64, 64, 1), basic("conv3", 64, 192, 3)
    cfg = [("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
           ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
           ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
           ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
           ("5b", 832, 384, 192, 384, 48, 128, 128)]
    for n, cin, c1, c3r, c3, c5r, c5, pp in cfg:
        p = f"inception{n}"
        basic(f"{p}.branch1", cin, c1, 1)
        basic(f"{p}.branch2.0", cin, c3r, 1), basic(f"{p}.branch2.1", c3r, c3, 3)
        basic(f"{p}.branch3.0", cin, c5r, 1), basic(f"{p}.branch3.1", c5r, c5, 3)
        basic(f"{p}.branch4.1", cin, pp, 1)
    for a, cin in (("aux1", 512), ("aux2", 528)):
        basic(f"{a}.conv", cin, 128, 1)
        out += [(f"{a}.fc1.weight", (1024, 2048)), (f"{a}.fc1.bias", (1024,)),
                (f"{a}.fc2.weight", (1000, 1024)), (f"{a}.fc2.bias", (1000,))]
    out += [("fc.weight", (1000, 1024)), ("fc.bias", (1000,))]
    return out


def test_convert_googlenet(tmp_path):
    rng = np.random.default_rng(0)
    sd = {k: rng.standard_normal(s, dtype=np.float32) for k, s in torchvision_googlenet_keys_and_shapes()}
    params, stats = models.convert_torchvision_googlenet(sd)
    count = sum(a.size for a in jax.tree_util.tree_leaves(params))
    aux_fc2_and_fc = 2 * (1000 * 1024 + 1000) + 1024 * 1000 + 1000
    torch_params = sum(v.size for k, v in sd.items() if "running" not in k)
    assert count == torch_params - aux_fc2_and_fc
    np.testing.assert_array_equal(params["inception4b"]["branch2_1"]["conv"]["kernel"],
                                  sd["inception4b.branch2.1.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["aux2"]["fc1"]["kernel"], sd["aux2.fc1.weight"].T)
    np.testing.assert_array_equal(stats["inception5b"]["branch4_1"]["bn"]["mean"],
                                  sd["inception5b.branch4.1.bn.running_mean"])
    # without aux, aux keys are ignored; the backbone alone has torchvision's 5,599,904 parameters
    params, _ = models.convert_torchvision_googlenet(sd, aux=False)
    assert "aux1" not in params and sum(a.size for a in jax.tree_util.tree_leaves(params)) == 5_599_904
    # load_pretrained recognises GoogLeNet and fills a model whose aux heads have their own classes
    save_file(sd, str(tmp_path / "g.safetensors"))
    net = _Net(backbone=models.GoogLeNet(aux_num_classes=(7, 9)))
    out = models.load_pretrained(_zeros_variables(net, (64, 64)), tmp_path / "g.safetensors")
    np.testing.assert_array_equal(out["params"]["backbone"]["aux1"]["fc1"]["kernel"], sd["aux1.fc1.weight"].T)
    assert out["params"]["backbone"]["aux1"]["fc2"]["kernel"].shape == (1024, 7)
    assert not np.any(out["params"]["backbone"]["aux1"]["fc2"]["kernel"])
