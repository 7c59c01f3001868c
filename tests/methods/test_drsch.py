"""DRSCH: loss composition, margin schedule state, bit-scalable codes, weighted Hamming affinity search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import config as config_lib
from jhash import losses, methods, search
from jhash.data.info import DatasetInfo

drsch = methods.get("drsch")
INFO = DatasetInfo(name="t", num_classes=4, image_size=(16, 8), num_train_images=16)


def _config(**method):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.model.bits = 8
    c.method = drsch.method_config(**method)
    return c


def _images(n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 16, 8, 3)).astype(np.float32)


def test_loss_is_triplet_plus_laplacian_plus_weight_decay():
    c = _config(margin=0.25, laplacian_weight=1e-3, bit_weight_decay=5e-4)
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(0), _images())
    variables = jax.tree.map(lambda x: x, variables)
    variables["params"]["bit_weights"] = jnp.linspace(0.5, 2.0, 8)
    out = model.apply(variables, _images())
    w = np.linspace(0.5, 2.0, 8)
    np.testing.assert_allclose(out["weighted"], np.asarray(out["hash"]) * w, rtol=1e-6)
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    total, logs = jax.jit(lambda o, y: drsch.loss(o, {"label": y}, c, None))(out, labels)
    tri = losses.weighted_triplet_ranking_loss(out["hash"], labels, 0.25 * 8, bit_weights=jnp.asarray(w, jnp.float32))
    reg = losses.laplacian_regularizer(out["weighted"], labels=labels)
    np.testing.assert_allclose(total, tri + 1e-3 * reg + 0.5 * 5e-4 * np.sum(w**2), rtol=1e-5)
    # DSCH: no regulariser
    dsch = _config(laplacian_weight=0.0, bit_weight_decay=0.0)
    total, logs = drsch.loss(out, {"label": labels}, dsch, None)
    assert "laplacian" not in logs
    np.testing.assert_allclose(total, tri, rtol=1e-5)


def test_linear_margin_schedule_counts_training_steps():
    c = _config(margin_schedule="linear", margin_start=0.05, margin=0.25, margin_ramp_steps=4)
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(0), _images())
    assert int(variables["batch_stats"]["train_steps"]) == 0
    stats = variables["batch_stats"]
    margins = []
    for _ in range(6):
        out, mutated = model.apply({**variables, "batch_stats": stats}, _images(), train=True, mutable=["batch_stats"])
        stats = mutated["batch_stats"]
        _, logs = drsch.loss(out, {"label": jnp.array([0, 0, 1, 1, 2, 2])}, c, None)
        margins.append(float(logs["margin"]))
    np.testing.assert_allclose(margins, [0.4, 0.8, 1.2, 1.6, 2.0, 2.0], rtol=1e-6)  # 8 bits: 0.05*8 -> 0.25*8
    assert int(stats["train_steps"]) == 6
    assert "train_step" not in model.apply({**variables, "batch_stats": stats}, _images(), train=False)
    with pytest.raises(config_lib.ConfigError, match="margin_schedule"):
        drsch.build_model(_config(margin_schedule="cosine"), INFO)


def test_codes_are_ordered_by_bit_weight():
    c = _config(eval_bits=(2, 4))
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(3), _images())
    w = jnp.array([0.1, -3.0, 0.5, 2.0, 0.5, 1.0, -0.2, 0.0])
    variables["params"]["bit_weights"] = w
    out = model.apply(variables, _images())
    codes = drsch.encode(out, c)
    raw = (np.asarray(out["hash"]) > 0.5).astype(np.uint8)
    order = [1, 3, 5, 2, 4, 6, 0, 7]  # |w| descending, ties by index
    np.testing.assert_array_equal(codes["id"], raw[:, order])
    np.testing.assert_array_equal(codes["top2"], raw[:, order[:2]])
    np.testing.assert_array_equal(codes["top4"], raw[:, order[:4]])
    assert codes["id"].dtype == jnp.uint8
    # the same bit-scalable code from packed full-length codes through jhash.search
    top = search.select_bits(search.pack_codes(raw), search.top_weight_bits(w, 4), pad=True)
    padded = np.pad(np.asarray(codes["top4"]), ((0, 0), (0, 4)))  # zero bits up to a byte
    np.testing.assert_array_equal(top, search.pack_codes(padded))


def _np_affinity(q, g, w):
    out = np.zeros((len(q), len(g)))
    for i in range(len(q)):
        for j in range(len(g)):
            for k in range(len(w)):
                out[i, j] += w[k] ** 2 * ((q[i, k] > 0) == (g[j, k] > 0))
    return out


def _np_distance(q, g, w):
    return np.sum(w**2) - _np_affinity(q, g, w)


BACKENDS = ["numpy", "xla"]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), L=st.sampled_from([5, 8, 12, 19, 64]))
def test_weighted_hamming_distance_matches_loop(seed, L):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 2, size=(3, L))
    g = rng.integers(0, 2, size=(7, L))
    w = rng.normal(size=L).astype(np.float32)
    qp, gp = search.pack_codes(q), search.pack_codes(g)
    for backend in BACKENDS:
        got = search.weighted_hamming_distance(qp, gp, w, backend=backend)
        np.testing.assert_allclose(got, _np_distance(q, g, w), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(search.weighted_hamming_affinity(qp, gp, w, backend=backend),
                                   _np_affinity(q, g, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_hamming_topk_is_the_affinity_ranking_with_ties_by_index(backend):
    rng = np.random.default_rng(0)
    q = rng.integers(0, 2, size=(4, 6)).astype(np.uint8)
    g = rng.integers(0, 2, size=(23, 6)).astype(np.uint8)
    w = np.array([1.0, 1.0, 0.5, 0.5, 2.0, 0.0], np.float32)  # many ties
    ref = _np_affinity(q, g, w)
    d, i = search.weighted_hamming_topk(search.pack_codes(q), search.pack_codes(g), w, 9, backend=backend)
    for row in range(4):
        expected = sorted(range(23), key=lambda j: (-ref[row, j], j))[:9]
        np.testing.assert_array_equal(i[row], expected)
        np.testing.assert_allclose(d[row], np.sum(w**2) - ref[row, expected], rtol=1e-6, atol=1e-6)
    # equal XOR patterns give bit-identical distances, so both backends agree exactly
    other = "xla" if backend == "numpy" else "numpy"
    np.testing.assert_array_equal(d, search.weighted_hamming_topk(search.pack_codes(q), search.pack_codes(g), w, 9,
                                                                  backend=other)[0])


def test_weighted_search_errors_name_the_argument():
    q = np.zeros((2, 1), np.uint8)
    with pytest.raises(ValueError, match="bit_weights: 9 weights do not match codes of 1 bytes"):
        search.weighted_hamming_distance(q, q, np.ones(9))
    with pytest.raises(ValueError, match="bit_weights: expected finite"):
        search.weighted_hamming_distance(q, q, np.full(8, np.nan))
    with pytest.raises(ValueError, match="k=3 exceeds the gallery size"):
        search.weighted_hamming_topk(q, q, np.ones(8), 3)
    with pytest.raises(ValueError, match="backend"):
        search.weighted_hamming_topk(q, q, np.ones(8), 1, backend="gpu")


def test_search_hook_ranks_by_the_learnt_weighted_affinity():
    """evaluate.py's path: model_search_params from a network's variables, then search() on packed codes."""
    from jhash.metrics import reid_metrics

    c = _config(eval_bits=(3,))
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(3), _images())
    w = jnp.array([0.1, -3.0, 0.5, 2.0, 0.5, 1.0, -0.2, 0.0])
    variables["params"]["bit_weights"] = w
    params = drsch.model_search_params(variables, c)
    np.testing.assert_allclose(params["bit_weights"]["id"], np.asarray(w)[[1, 3, 5, 2, 4, 6, 0, 7]])
    np.testing.assert_allclose(params["bit_weights"]["top3"], [-3.0, 2.0, 1.0])
    rng = np.random.default_rng(1)
    qb, gb = rng.integers(0, 2, (5, 8)), rng.integers(0, 2, (40, 8))
    ordered = np.asarray(params["bit_weights"]["id"])
    q_codes = {"id": np.asarray(search.pack_codes(qb)), "top3": np.asarray(search.pack_codes(qb[:, :3]))}
    g_codes = {"id": np.asarray(search.pack_codes(gb)), "top3": np.asarray(search.pack_codes(gb[:, :3]))}
    out = drsch.search(q_codes, g_codes, params, c)
    assert set(out) == {"distances", "ms_per_query"} and out["ms_per_query"] > 0
    want = _np_distance(qb, gb, ordered)
    np.testing.assert_allclose(np.asarray(out["distances"]), want, rtol=1e-5, atol=1e-5)
    ids = dict(q_pids=rng.integers(0, 4, 5), g_pids=rng.integers(0, 4, 40), q_camids=np.zeros(5, int),
               g_camids=np.ones(40, int))
    np.testing.assert_allclose(reid_metrics(distances=out["distances"], **ids).mAP,
                               reid_metrics(distances=want, **ids).mAP)
    # the code the config names: top-3 ranks by its own three weights
    c.eval.code = "top3"
    np.testing.assert_allclose(np.asarray(drsch.search(q_codes, g_codes, params, c)["distances"]),
                               _np_distance(qb[:, :3], gb[:, :3], ordered[:3]), rtol=1e-5, atol=1e-5)
    assert drsch.search(q_codes, g_codes, params, _config(ranking="hamming")) == {}
    with pytest.raises(ValueError, match="no bit weights for code 'id'"):
        drsch.search(q_codes, g_codes, None, _config())
    with pytest.raises(config_lib.ConfigError, match="ranking"):
        drsch.search(q_codes, g_codes, params, _config(ranking="cosine"))


def test_method_search_is_a_function():
    assert callable(drsch.search) and callable(getattr(drsch, "search", None))


def test_hash_bn_and_quantisation_options():
    """hash_bn: BatchNorm before the sigmoid (batch mean 0 per bit in training); quant_weight adds
    Σ_k (σ(z_k) − [z_k > 0])² (mean over the batch), logged as 'quant'; both off by default."""
    c = _config(hash_bn=True, quant_weight=0.5, laplacian_weight=0.0, bit_weight_decay=0.0)
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(0), _images())
    assert "bn" in variables["params"]["hash"]
    assert "bn" not in drsch.build_model(_config(), INFO).init(jax.random.PRNGKey(0), _images())["params"]["hash"]
    out, _ = model.apply(variables, _images(), train=True, mutable=["batch_stats"])
    z = np.asarray(out["hash_pre"])
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    total, logs = drsch.loss(out, {"label": labels}, c, None)
    quant = np.mean(np.sum((1 / (1 + np.exp(-z)) - (z > 0)) ** 2, axis=1))
    np.testing.assert_allclose(logs["quant"], quant, rtol=1e-5)
    np.testing.assert_allclose(total, logs["triplet"] + 0.5 * quant, rtol=1e-5)
    assert "quant" not in drsch.loss(out, {"label": labels}, _config(), None)[1]
    with pytest.raises(config_lib.ConfigError, match="quant_weight"):
        drsch.loss(out, {"label": labels}, _config(quant_weight=-1.0), None)


def _correlation_penalty_loop(x, eps=1e-4):
    """Reference from the definition: mean over ordered pairs k != l of the squared (ε-regularised) correlation."""
    n, bits = x.shape
    mean = [sum(x[i, k] for i in range(n)) / n for k in range(bits)]
    cov = lambda k, l: sum((x[i, k] - mean[k]) * (x[i, l] - mean[l]) for i in range(n)) / n  # noqa: E731
    total = 0.0
    for k in range(bits):
        for l in range(bits):
            if k != l:
                total += (cov(k, l) / np.sqrt((cov(k, k) + eps) * (cov(l, l) + eps))) ** 2
    return total / (bits * (bits - 1))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 9), bits=st.integers(2, 6))
def test_bit_correlation_penalty_matches_loop(seed, n, bits):
    x = np.random.default_rng(seed).random((n, bits)).astype(np.float32)
    np.testing.assert_allclose(drsch.bit_correlation_penalty(jnp.asarray(x)), _correlation_penalty_loop(x.astype(np.float64)),
                               rtol=2e-4, atol=1e-6)


def test_bit_correlation_penalty_is_one_for_repeated_bits_and_small_for_independent_ones():
    rng = np.random.default_rng(0)
    a = rng.random((256, 1))
    repeated = np.concatenate([a, 1 - a, a], axis=1)  # the same split up to sign
    assert float(drsch.bit_correlation_penalty(jnp.asarray(repeated * 10))) > 0.99
    independent = rng.random((4096, 8))
    assert float(drsch.bit_correlation_penalty(jnp.asarray(independent))) < 0.01
    with pytest.raises(ValueError, match="codes must be"):
        drsch.bit_correlation_penalty(jnp.ones((4,)))


def test_decorrelation_option_adds_the_weighted_penalty_of_the_relaxed_codes():
    c = _config(decorrelation_weight=0.3, laplacian_weight=0.0, bit_weight_decay=0.0)
    model = drsch.build_model(c, INFO)
    variables = model.init(jax.random.PRNGKey(0), _images())
    out = model.apply(variables, _images())
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    total, logs = drsch.loss(out, {"label": labels}, c, None)
    ref = _correlation_penalty_loop(np.asarray(out["hash"], np.float64))
    np.testing.assert_allclose(logs["decorrelation"], ref, rtol=2e-4)
    np.testing.assert_allclose(total, logs["triplet"] + 0.3 * ref, rtol=2e-4)
    assert "decorrelation" not in drsch.loss(out, {"label": labels}, _config(), None)[1]
    with pytest.raises(config_lib.ConfigError, match="decorrelation_weight"):
        drsch.loss(out, {"label": labels}, _config(decorrelation_weight=-1.0), None)
