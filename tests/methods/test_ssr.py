"""SSR method: model outputs, eq. 14 term by term, the relaxation zoo, encode / fit_search / search, and a few
training steps of every config on fake data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import methods
from jhash.data.info import DatasetInfo
from jhash.losses.relaxations import dsh_regularizer
from jhash.search import pack_codes
from tests.methods.test_loss_references import ssr_reference_loss

ssr = methods.get("ssr")
INFO = DatasetInfo(name="t", num_classes=5, image_size=(16, 8), num_attributes=5, num_train_images=40)
VECTORS = ["p0", "p1", "p2", "p3", "p4", "p5", "g"]
LABELS = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
ATTRS = jnp.asarray(np.random.default_rng(1).integers(0, 2, (8, 5)), jnp.int32)


def _config(**method):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.model.bits = 16
    c.method = ssr.method_config(**method)
    return c


_CACHE = {}


def _outputs(c, info=INFO):
    key = (str(c.method), info.num_attributes)
    if key not in _CACHE:
        model = ssr.build_model(c, info)
        x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 8, 3)), jnp.float32)
        variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)
        out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        _CACHE[key] = (model, variables, x, out)
    return _CACHE[key]


def test_contract_and_options():
    assert "ssr" in methods.available() and ssr.SEARCH == "attribute_first"
    with pytest.raises(ValueError, match="unknown SSR method option"):
        ssr.method_config(gamma=1)
    assert ssr._get(_config(), "alpha") == 0.3 and ssr._get(_config(bn=False), "alpha") == 0.7
    assert ssr._get(_config(alpha=0.5), "alpha") == 0.5
    with pytest.raises(ValueError, match="relaxation"):
        ssr.build_model(_config(relaxation="relu"), INFO)


def test_outputs_loss_eq14_and_encode():
    c = _config()
    model, variables, x, out = _outputs(c)
    for b in ("teacher", "student"):
        for v in VECTORS:
            dim = 4 if v == "g" else 2  # 16 bits = 6 x 2 + 4
            assert out[f"{b}/{v}/pre"].shape == (8, dim) and out[f"{b}/{v}/logits"].shape == (8, 5)
            np.testing.assert_array_equal(out[f"{b}/{v}/code"], out[f"{b}/{v}/pre"])  # SSR: no squashing
        assert out[f"{b}/attr_logits"].shape == (8, 5, 2)
    total, logs = jax.jit(lambda o, b: ssr.loss(o, b, c, None))(out, {"label": LABELS, "attributes": ATTRS})
    # term by term against the numpy loops of eq. 14 (tests/methods/test_loss_references.py), α = β = 0.3
    want, terms = ssr_reference_loss(out, np.asarray(LABELS), np.asarray(ATTRS), 6, alpha=0.3, beta=0.3)
    for name in ("triplet", "ce", "ssr_distill", "attr"):
        np.testing.assert_allclose(logs[name], terms[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(total, want, rtol=1e-5)
    # the teacher descriptors get no gradient from the distillation term
    g = jax.jit(jax.grad(lambda o: ssr.loss(o, {"label": LABELS, "attributes": ATTRS}, c, None)[1]["ssr_distill"]))(out)
    assert all(float(jnp.abs(g[f"teacher/{v}/pre"]).sum()) == 0 for v in VECTORS)
    assert any(float(jnp.abs(g[f"student/{v}/pre"]).sum()) > 0 for v in VECTORS)
    ev = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    codes = ssr.encode(ev, c)
    assert codes["id"].shape == (8, 16) and codes["id"].dtype == jnp.int8
    assert codes["attr"].shape == (8, 8)  # 5 attributes padded to a byte
    s = np.concatenate([np.asarray(ev[f"student/{v}/pre"]) for v in VECTORS], axis=1)
    np.testing.assert_array_equal(codes["id"], np.where(s > 0, 1, -1))


@pytest.mark.parametrize("relaxation", ["sigmoid", "hardtanh", "dsh"])
def test_relaxation_zoo(relaxation):
    c = _config(relaxation=relaxation, bn=False, attributes=False)
    _, _, _, out = _outputs(c)
    assert "student/attr_logits" not in out
    total, logs = jax.jit(lambda o: ssr.loss(o, {"label": LABELS}, c, None))(out)
    assert "ssr_distill" not in logs and np.isfinite(float(total))
    if relaxation == "sigmoid":
        np.testing.assert_allclose(out["student/g/code"], jax.nn.sigmoid(out["student/g/pre"]), rtol=1e-6)
    if relaxation == "dsh":
        reg = np.mean([dsh_regularizer(out[f"{b}/{v}/code"]) for b in ("teacher", "student") for v in VECTORS])
        np.testing.assert_allclose(logs["dsh_reg"], reg, rtol=1e-5)
        np.testing.assert_allclose(total, logs["triplet"] + logs["ce"] + 0.1 * reg, rtol=1e-5)


def _afr_codes(seed, id_bits):
    """48 images of 12 identities: 8-bit attribute codes per identity, ID codes with 10 % of bits flipped."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(12), 4)
    attr = np.where(rng.random((12, 8)) < 0.5, 1, -1)[pids].astype(np.int8)
    centers = rng.choice([-1, 1], size=(12, id_bits))
    ids = np.where(rng.random((48, id_bits)) < 0.1, -centers[pids], centers[pids]).astype(np.int8)
    return pids, attr, ids


def test_fit_search_and_search_hook():
    c = _config(afr_window="rule")
    pids, attr, ids = _afr_codes(0, 32)
    params = ssr.fit_search({"id": ids, "attr": attr}, pids, c)
    assert params["afr"] and 1 <= params["w"] <= 47 and params["attr_rank_accuracy"] >= 0.97
    packed = {"id": np.asarray(pack_codes(ids)), "attr": np.asarray(pack_codes(attr))}
    found = ssr.search(packed, packed, params, c)
    assert found["distances"].shape == (48, 48) and found["ms_per_query"] > 0
    from jhash.search import LazyRows, attribute_first_distances

    assert isinstance(found["distances"], LazyRows)  # streamed: computed while the metrics read it
    np.testing.assert_array_equal(np.asarray(found["distances"]), attribute_first_distances(
        packed["attr"], packed["attr"], packed["id"], packed["id"], ssr.window(params, c, 48)))
    # no fitted window: the whole gallery, i.e. exhaustive ID search
    full = ssr.search(packed, packed, None, c)["distances"]
    np.testing.assert_array_equal(full, (32 - ids.astype(np.int64) @ ids.T.astype(np.int64)) // 2)
    assert ssr.window(params, _config(afr_w=5), 48) == 5
    # AFR off / no attributes: exhaustive search by the evaluator
    assert ssr.fit_search({"id": ids}, pids, c) == {"afr": False}
    assert ssr.search({"id": packed["id"]}, {"id": packed["id"]}, None, c) == {}
    assert ssr.search(packed, packed, params, _config(afr=False)) == {}


def test_recall_window_on_coarse_first_codes():
    """afr_window='recall': first codes = attribute code + ID prefix, window fitted against the searched gallery
    with the stored validation codes; the keys are AFR's with those first codes and that window."""
    from jhash.search import attribute_first as afr
    from jhash.search import dto

    c = _config(afr_window="recall", afr_prefix_bits=16, afr_recall_target=0.9, afr_recall_k=3,
                afr_confidence=0.0)
    pids, attr, ids = _afr_codes(1, 64)
    params = ssr.fit_search({"id": ids, "attr": attr}, pids, c)
    assert params["window"] == "recall" and params["w"] >= 1  # the w rule is still reported
    val = dto.decode_packed(params["fit_queries"])
    packed = {"id": np.asarray(pack_codes(ids)), "attr": np.asarray(pack_codes(attr))}
    np.testing.assert_array_equal(val["id"], packed["id"])
    # the prefix: the first 2 bits of each of the 6 stripes of 8 bits, then the first 4 of the 16 global bits
    np.testing.assert_array_equal(ssr.prefix_bit_positions(64, 16, 6),
                                  [0, 1, 8, 9, 16, 17, 24, 25, 32, 33, 40, 41, 48, 49, 50, 51])
    first = ssr.first_codes(packed["attr"], packed["id"], c)
    np.testing.assert_array_equal(first, afr.coarse_codes(packed["attr"], packed["id"],
                                                          ssr.prefix_bit_positions(64, 16, 6)))
    w, info = ssr.search_window(first, packed["id"], params, c)
    want = afr.fit_rank_window(first, first, packed["id"], packed["id"], k=3, target=0.9)
    assert info["window"] == "recall" and w == want.w
    found = ssr.search(packed, packed, params, c)
    np.testing.assert_array_equal(np.asarray(found["distances"]), afr.attribute_first_distances(
        first, first, packed["id"], packed["id"], w))
    assert found["ms_per_query"] > 0
    # a fixed window wins; the paper's rule needs no stored codes
    assert ssr.search_window(first, packed["id"], params, _config(afr_w=7, afr_prefix_bits=16))[0] == 7
    assert "fit_queries" not in ssr.fit_search({"id": ids, "attr": attr}, pids, _config(afr_window="rule"))
    # 'gallery': the w rule measured among the searched gallery with the stored validation codes
    g = _config(afr_window="gallery", afr_prefix_bits=16)
    assert ssr.DEFAULTS["afr_window"] == "protocol"  # the fastest within 1.5 R1 in bench/afr.py
    gp = ssr.fit_search({"id": ids, "attr": attr}, pids, g)
    assert gp["fit_pids"] == pids.tolist()
    gallery_first = ssr.first_codes(packed["attr"][::2], packed["id"][::2], g)
    w, info = ssr.search_window(gallery_first, packed["id"][::2], gp, g)
    rule = afr.fit_window_in_gallery(first, pids, gallery_first, target=0.97)
    assert info["window"] == "gallery" and w == min(rule.w, 24)
    with pytest.raises(config_lib.ConfigError, match="afr_prefix_bits=64"):
        ssr.first_codes(packed["attr"], packed["id"], _config(afr_window="gallery", afr_prefix_bits=64))
    with pytest.raises(config_lib.ConfigError, match="afr_window"):
        ssr.fit_search({"id": ids, "attr": attr}, pids, _config(afr_window="w"))
