"""CtF method: the loss terms, the model's outputs and ablation structures, encode / fit_search / search, and
short training runs of the synthetic and Market-1501 configs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import methods
from jhash.data.info import DatasetInfo
from jhash.losses import distillation
from tests.methods import run_config
from tests.methods.test_loss_references import ctf_reference_loss

ctf = methods.get("ctf")
INFO = DatasetInfo(name="t", num_classes=5, image_size=(16, 8), num_train_images=40)


def _config(**method):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.method = ctf.method_config(**{"lengths": (64, 32, 16), **method})
    return c


@functools.lru_cache(maxsize=None)
def _outputs_cached(structure):
    return _outputs(_config(structure=structure))


def _outputs(c, n=8, seed=0):
    model = ctf.build_model(c, INFO)
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(n, 16, 8, 3)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return model, variables, x, out


def test_method_registered_and_contract():
    assert "ctf" in methods.available()
    assert ctf.SEARCH == "coarse_to_fine"
    with pytest.raises(ValueError, match="unknown CtF method option"):
        ctf.method_config(lamda=1)


@pytest.mark.parametrize("structure", ["pyramid", "parallel", "separate"])
def test_model_outputs_and_structures(structure):
    c = _config(structure=structure)
    model, variables, x, out = _outputs_cached(structure)
    for n in (64, 32, 16):
        assert out[f"l{n}/code"].shape == (8, n) and out[f"l{n}/pre"].shape == (8, n)
        assert out[f"l{n}/logits"].shape == (8, 5)
        np.testing.assert_allclose(out[f"l{n}/code"], np.tanh(out[f"l{n}/pre"]), rtol=1e-6)
    params = variables["params"]
    backbones = [k for k in params if "backbone" in k]
    assert len(backbones) == (3 if structure == "separate" else 1)
    if structure == "pyramid":  # a chain: the 32-bit level reads the 64-d vector
        assert params["pyramid"]["fc1"]["kernel"].shape == (64, 32)
        assert params["pyramid"]["fc2"]["kernel"].shape == (32, 16)
    else:  # every head reads a backbone feature (16-d for widths (8, 16))
        assert all(params[f"head{k}"]["fc0"]["kernel"].shape[0] == 16 for k in range(3))
    codes = ctf.encode(model.apply(variables, x, train=False), c)
    assert set(codes) == {"l64", "l32", "l16", "id"}
    assert codes["l32"].dtype == jnp.int8 and set(np.unique(codes["l32"])) <= {-1, 1}
    np.testing.assert_array_equal(codes["id"], codes["l64"])


def test_loss_equals_sum_of_its_terms():
    """The loss of the real model's outputs, term by term, against the numpy loops of eqs. 3-5
    (tests/methods/test_loss_references.py)."""
    c = _config(label_smoothing=0.1, prob_weight=0.5, sim_weight=100.0, temperature=4.0)
    _, _, _, out = _outputs_cached("pyramid")
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    total, logs = ctf.loss(out, {"label": jnp.asarray(labels)}, c, None)
    want, terms = ctf_reference_loss(out, labels, (64, 32, 16), smoothing=0.1, margin=0.3,
                                     pairs=[(1, 0), (2, 1)],  # teacher = the next-longer code
                                     prob_weight=0.5, sim_weight=100.0, temperature=4.0)
    for name in ("ce", "triplet", "prob_distill", "sim_distill"):
        np.testing.assert_allclose(logs[name], terms[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(total, want, rtol=1e-5)
    # no distillation (the 'pyramid' ablation): CE + triplet only
    c2 = _config(variant="pyramid")
    total2, logs2 = ctf.loss(out, {"label": jnp.asarray(labels)}, c2, None)
    assert "prob_distill" not in logs2
    np.testing.assert_allclose(total2, ctf_reference_loss(out, labels, (64, 32, 16), smoothing=0.1, margin=0.3,
                                                          pairs=[])[0], rtol=1e-5)


def test_first_level_teacher_and_public_code_variants():
    c = _config(teacher="first", prob_kind="symmetric_kl", sim_kind="gram", temperature=1.0)
    _, _, _, out = _outputs_cached("pyramid")
    labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    _, logs = ctf.loss(out, {"label": labels}, c, None)
    pairs = [("l32", "l64"), ("l16", "l64")]
    prob = np.mean([distillation.symmetric_kl_distillation_loss(out[f"{s}/logits"], out[f"{t}/logits"], 1.0) for s, t in pairs])
    sim = np.mean([distillation.gram_distillation_loss(out[f"{s}/code"], out[f"{t}/code"]) for s, t in pairs])
    np.testing.assert_allclose(logs["prob_distill"], prob, rtol=1e-5)
    np.testing.assert_allclose(logs["sim_distill"], sim, rtol=1e-5)
    with pytest.raises(ValueError, match="prob_kind"):
        ctf.loss(out, {"label": labels}, _config(prob_kind="kl"), None)
    with pytest.raises(ValueError, match="variant"):
        ctf.loss(out, {"label": labels}, _config(variant="nope"), None)


def test_fit_search_and_search_hook():
    from jhash.search import LazyRows, coarse_to_fine_distances

    c = _config(threshold_fit="dto")
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(10), 4)
    centers = rng.choice([-1, 1], size=(10, 64))
    flips = rng.random((40, 64)) < 0.1
    codes64 = np.where(flips, -centers[pids], centers[pids]).astype(np.int8)
    codes = {"l64": codes64, "l32": codes64[:, :32], "l16": codes64[:, :16], "id": codes64}
    params = ctf.fit_search(codes, pids, c)
    assert params["levels"] == ["l16", "l32", "l64"] and set(params["thresholds"]) == {"l16", "l32"}
    assert 0 <= params["thresholds"]["l16"] <= 16 and 0 <= params["thresholds"]["l32"] <= 32
    from jhash.search.packing import pack_codes

    packed = {k: np.asarray(pack_codes(v)) for k, v in codes.items()}
    found = ctf.search(packed, packed, params, c)
    assert found["distances"].shape == (40, 40) and found["ms_per_query"] > 0
    assert isinstance(found["distances"], LazyRows)  # streamed: computed while the metrics read it
    levels = [packed[n] for n in params["levels"]]
    thresholds = [params["thresholds"][n] for n in params["levels"][:-1]]
    np.testing.assert_array_equal(np.asarray(found["distances"]), coarse_to_fine_distances(levels, levels, thresholds))
    # maximal thresholds (no fitted params): the keys are the exhaustive 64-bit Hamming distances
    full = ctf.search(packed, packed, None, c)["distances"]
    ref = (64 - codes64.astype(np.int64) @ codes64.T.astype(np.int64)) // 2
    np.testing.assert_array_equal(full, ref)


def _recall_codes(seed=1, n=40):
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(n // 4), 4)
    centers = rng.choice([-1, 1], size=(n // 4, 64))
    codes64 = np.where(rng.random((n, 64)) < 0.1, -centers[pids], centers[pids]).astype(np.int8)
    return {"l64": codes64, "l32": codes64[:, :32], "l16": codes64[:, :16], "id": codes64}, pids


def test_search_time_fit_with_measured_costs(monkeypatch):
    """recall_cost='measured' (the default): the search-time fit minimises the stage costs measured on the
    searched gallery's index (here replaced by fixed costs, so the plan is deterministic); 'bits' ignores them;
    anything else is a config error naming the key."""
    from jhash.search import coarse_to_fine
    from jhash.search.dto import fit_recall_thresholds
    from jhash.search.packing import pack_codes

    assert ctf.DEFAULTS["recall_cost"] == "measured"
    codes, pids = _recall_codes()
    levels = ("l16", "l32", "l64")
    c = _config(threshold_fit="recall", recall_target=0.9, recall_k=5, recall_confidence=0.0)
    params = ctf.fit_search(codes, pids, c)
    gallery = {n: np.asarray(pack_codes(v)) for n, v in _recall_codes(seed=2, n=60)[0].items()}
    packed = {n: np.asarray(pack_codes(codes[n])) for n in levels}
    costs = ((1.0, 50.0), (3.0, 2.0), (9.0, 40.0))  # a fetch of the 32-bit level is cheap, of the others dear
    seen = []

    def fake(index, **kwargs):
        seen.append(index)
        return costs

    monkeypatch.setattr(coarse_to_fine, "measure_stage_costs", fake)
    want = fit_recall_thresholds({n: gallery[n] for n in levels}, query_codes=packed, target=0.9, k=5,
                                 choose_levels=True, stage_costs=costs)
    assert ctf.search_plan(gallery, c, params) == (list(want.levels), want.thresholds)
    assert [a.shape[1] for a in seen[0].packed] == [2, 4, 8]  # the gallery's levels, short to long
    bits = ctf.gallery_fit(gallery, _config(threshold_fit="recall", recall_target=0.9, recall_k=5,
                                            recall_confidence=0.0, recall_cost="bits"), params)
    assert len(seen) == 1 and bits.cost == fit_recall_thresholds(
        {n: gallery[n] for n in levels}, query_codes=packed, target=0.9, k=5, choose_levels=True,
        gather_bits=1536.0).cost
    with pytest.raises(config_lib.ConfigError, match="recall_cost='time'"):
        ctf.search_plan(gallery, _config(threshold_fit="recall", recall_k=5, recall_cost="time"), params)


def test_fit_search_recall_target():
    from jhash.search import dto
    from jhash.search.dto import fit_recall_thresholds
    from jhash.search.packing import pack_codes

    c = _config(threshold_fit="recall", recall_target=0.9, recall_k=5, recall_confidence=0.8, recall_cost="bits")
    codes, pids = _recall_codes()
    levels = ("l16", "l32", "l64")
    opts = dict(target=0.9, k=5, confidence=0.8, gather_bits=1536.0, choose_levels=True)  # the bits cost's fit
    params = ctf.fit_search(codes, pids, c)
    packed = {n: np.asarray(pack_codes(codes[n])) for n in levels}
    want = fit_recall_thresholds(packed, **opts)
    assert params["fit"] == "recall" and params["thresholds"] == want.thresholds
    assert params["levels"] == list(want.levels)
    assert params["val_recall"] >= 0.9 and params["recall_confidence"] == 0.8
    # the validation codes are stored (JSON-safe) for the search-time fit against the searched gallery
    import json

    stored = dto.decode_packed(json.loads(json.dumps(params["fit_queries"])))
    assert set(stored) == set(levels)
    for n in levels:
        np.testing.assert_array_equal(stored[n], packed[n])  # 40 codes <= recall_val_queries: all of them
    gallery = {n: np.asarray(pack_codes(v)) for n, v in _recall_codes(seed=2, n=60)[0].items()}
    assert ctf.DEFAULTS["threshold_fit"] == "recall" and ctf.DEFAULTS["recall_queries"] == "val"
    fit = fit_recall_thresholds({n: gallery[n] for n in levels}, query_codes=packed, **opts)
    assert ctf.search_plan(gallery, c, params) == (list(fit.levels), fit.thresholds)
    found = ctf.search(gallery, gallery, params, c)
    assert found["distances"].shape == (60, 60)
    from jhash.search import coarse_to_fine_distances

    plan = ctf.search_plan(gallery, c, params)
    np.testing.assert_array_equal(np.asarray(found["distances"]), coarse_to_fine_distances(
        {n: gallery[n] for n in plan[0]}, {n: gallery[n] for n in plan[0]}, plan[1]))
    # every level kept (no level choice, no gather cost): the thresholds of the plain fit
    every = _config(threshold_fit="recall", recall_target=0.9, recall_k=5, recall_confidence=0.0,
                    recall_gather_bits=0.0, recall_choose_levels=False, recall_cost="bits")
    assert ctf.search_plan(gallery, every, params) == (list(levels), fit_recall_thresholds(
        {n: gallery[n] for n in levels}, query_codes=packed, target=0.9, k=5).thresholds)
    # at most recall_val_queries codes are kept, drawn with config.seed
    few = ctf.fit_search(codes, pids, _config(threshold_fit="recall", recall_k=5, recall_val_queries=7))
    rows = np.sort(np.random.default_rng(0).choice(40, 7, replace=False))
    np.testing.assert_array_equal(dto.decode_packed(few["fit_queries"])["l32"], packed["l32"][rows])
    # 'gallery': a sample of the searched gallery as the queries; 'fit': the validation-only thresholds
    g = _config(recall_target=0.9, recall_k=5, recall_queries="gallery", recall_gallery_queries=12,
                recall_confidence=0.0, recall_cost="bits")
    assert ctf.gallery_fit(gallery, g, params).thresholds == fit_recall_thresholds(
        {n: gallery[n] for n in levels}, target=0.9, k=5, queries=12, seed=int(g.seed), gather_bits=1536.0,
        choose_levels=True).thresholds
    assert ctf.gallery_fit(gallery, _config(recall_queries="fit"), params) is None
    assert ctf.search_plan(gallery, _config(recall_queries="fit"), params) == (params["levels"], params["thresholds"])
    assert "fit_queries" not in ctf.fit_search(codes, pids, _config(recall_queries="fit", recall_k=5))
    assert ctf.gallery_fit(gallery, _config(threshold_fit="dto"), params) is None
    with pytest.warns(UserWarning, match="too few for a top-5"):
        small = ctf.fit_search({n: a[:5] for n, a in codes.items()}, pids[:5], c)
    assert small["thresholds"] == {"l16": 16, "l32": 32}
    with pytest.raises(config_lib.ConfigError, match="threshold_fit"):
        ctf.fit_search(codes, pids, _config(threshold_fit="f1"))
    with pytest.raises(config_lib.ConfigError, match="recall_queries"):
        ctf.fit_search(codes, pids, _config(recall_queries="test", recall_k=5))
    with pytest.raises(ValueError, match="hold 3 bytes"):
        dto.decode_packed({"l16": {"rows": 2, "bytes": 2, "b64": "AAAA"}})


def test_fit_search_degenerate_validation_split_falls_back():
    c = _config(threshold_fit="dto")
    codes = {f"l{n}": np.ones((3, n), np.int8) for n in (64, 32, 16)}
    with pytest.warns(UserWarning, match="no relevant pairs"):
        params = ctf.fit_search(codes, np.array([1, 2, 3]), c)
    assert params["thresholds"] == {"l16": 16, "l32": 32}
    with pytest.raises(ValueError, match="lacks the CtF levels"):
        ctf.fit_search({"l64": codes["l64"]}, np.array([1, 1, 2]), c)


def test_synthetic_config_trains_and_fits_thresholds(tmp_path):
    result = run_config("configs/synthetic_reid/ctf.py", tmp_path,
                        extra={"dataset.config": "tiny", "method.lengths": "(64, 32, 16)"})
    assert result.step == 2
    levels = result.search["levels"]  # the recall fit chooses the levels (exhaustive 64-bit search included)
    assert levels[-1] == "l64" and set(levels) <= {"l16", "l32", "l64"}
    assert set(result.search["thresholds"]) == set(levels[:-1])
    assert result.search["fit_queries"]["l64"]["rows"] >= 1  # validation codes kept for the search-time fit
