"""jhash.losses.metric against plain numpy loops over triplets."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import losses


def _dist(x, squared):
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return d**2 if squared else d


def _np_triplet(d, y, margin, mining, soft=False, neg_ok=None):
    """Reference: loops over anchors / triplets. ``neg_ok[a, n]`` restricts negatives."""
    n = len(y)
    neg_ok = np.ones((n, n), bool) if neg_ok is None else neg_ok
    hinge = (lambda x: np.logaddexp(0.0, x)) if soft else (lambda x: max(0.0, x + margin))
    vals = []
    for a in range(n):
        ps = [p for p in range(n) if p != a and y[p] == y[a]]
        ns = [m for m in range(n) if y[m] != y[a] and neg_ok[a, m]]
        if not ps or not ns:
            continue
        if mining == "hard":
            vals.append(hinge(max(d[a, p] for p in ps) - min(d[a, m] for m in ns)))
        else:
            vals += [hinge(d[a, p] - d[a, m]) for p, m in itertools.product(ps, ns)]
    return float(np.mean(vals)) if vals else 0.0


def _batch(seed, b, dim, classes):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, dim)).astype(np.float32), rng.integers(0, classes, b).astype(np.int32)


def test_pairwise_distances():
    x, _ = _batch(0, 6, 5, 2)
    y, _ = _batch(1, 4, 5, 2)
    np.testing.assert_allclose(losses.pairwise_distances(x), _dist(x, False), atol=1e-5)
    np.testing.assert_allclose(losses.pairwise_distances(x, squared=True), _dist(x, True), rtol=1e-5, atol=1e-5)
    ref = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(losses.pairwise_distances(x, y), ref, rtol=1e-5, atol=1e-5)
    # finite gradient with coincident points (sqrt at 0)
    g = jax.grad(lambda x: losses.pairwise_distances(x).sum())(jnp.zeros((3, 2)))
    assert np.all(np.isfinite(g))


_bh = jax.jit(losses.batch_hard_triplet_loss, static_argnames=("soft_margin", "squared", "mining"))
_bh_d = jax.jit(losses.batch_hard_triplet_loss_from_distances, static_argnames=("soft_margin", "mining"))


@settings(max_examples=25, deadline=None)
@given(
    classes=st.integers(1, 5),
    squared=st.booleans(),
    soft=st.booleans(),
    mining=st.sampled_from(["hard", "all"]),
    seed=st.integers(0, 10**6),
)
def test_batch_hard_triplet_matches_loop(classes, squared, soft, mining, seed):
    x, y = _batch(seed, 8, 4, classes)  # fixed shape: one compilation per static combination
    got = _bh(x, y, 0.3, soft_margin=soft, squared=squared, mining=mining)
    ref = _np_triplet(_dist(x, squared), y, 0.3, mining, soft)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    d = losses.pairwise_distances(x, squared=squared)
    got_d = _bh_d(d, y, 0.3, soft_margin=soft, mining=mining)
    np.testing.assert_allclose(got_d, got, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("b", [2, 3, 11])
def test_batch_hard_triplet_sizes(b):
    x, y = _batch(b, b, 3, 2)
    for mining in ("hard", "all"):
        np.testing.assert_allclose(
            losses.batch_hard_triplet_loss(x, y, 0.5, mining=mining), _np_triplet(_dist(x, False), y, 0.5, mining),
            rtol=1e-4, atol=1e-5)


def test_triplet_edge_cases_jit_and_grad():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    f = jax.jit(jax.value_and_grad(losses.batch_hard_triplet_loss), static_argnames=("mining",))
    for y in ([0, 0, 0, 0], [0, 1, 2, 3]):  # no negative / no positive anywhere
        loss, g = f(x, jnp.asarray(y, jnp.int32), 0.3)
        assert float(loss) == 0.0 and np.all(g == 0)
    loss, g = f(x, jnp.array([0, 0, 1, 1]), 0.3)
    assert np.all(np.isfinite(g)) and float(loss) > 0
    with pytest.raises(ValueError, match="'embeddings'"):
        losses.batch_hard_triplet_loss(jnp.zeros((4,)), jnp.zeros((4,), jnp.int32))
    with pytest.raises(TypeError, match="'labels'"):
        losses.batch_hard_triplet_loss(jnp.zeros((4, 2)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="'margin'"):
        losses.batch_hard_triplet_loss(jnp.zeros((4, 2)), jnp.zeros((4,), jnp.int32), -1.0)
    with pytest.raises(ValueError, match="'mining'"):
        losses.batch_hard_triplet_loss(jnp.zeros((4, 2)), jnp.zeros((4,), jnp.int32), mining="semi")
    with pytest.raises(ValueError, match="'distances'"):
        losses.batch_hard_triplet_loss_from_distances(jnp.zeros((3, 3)), jnp.zeros((4,), jnp.int32))


_wtr = jax.jit(losses.weighted_triplet_ranking_loss, static_argnames=("mining",))


@settings(max_examples=25, deadline=None)
@given(length=st.sampled_from([3, 8]), classes=st.integers(1, 4), mining=st.sampled_from(["all", "hard"]), seed=st.integers(0, 10**6))
def test_weighted_triplet_ranking_matches_loop(length, classes, mining, seed):
    b = 7
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=(b, length)).astype(np.float32)  # sigmoid outputs
    w = rng.uniform(0.2, 2.0, size=(length,)).astype(np.float32)
    y = rng.integers(0, classes, b).astype(np.int32)
    h = s * w
    d = np.array([[np.sum(w**2 * (s[i] - s[j]) ** 2) for j in range(b)] for i in range(b)])
    margin = length / 4
    got = _wtr(s, y, margin, bit_weights=w, mining=mining)
    np.testing.assert_allclose(got, _np_triplet(d, y, margin, mining), rtol=1e-4, atol=1e-4)
    pre = _wtr(h, y, margin, mining=mining)
    np.testing.assert_allclose(pre, got, rtol=1e-5, atol=1e-5)


def test_weighted_hamming_distance_is_exact_on_binary_codes():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, size=(5, 12)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 12).astype(np.float32)
    ref = np.array([[np.sum(w**2 * (b[i] != b[j])) for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(losses.weighted_hamming_distances(b, w), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'bit_weights'"):
        losses.weighted_hamming_distances(b, w[:3])


def test_weighted_triplet_grows_with_traced_margin():
    s = jnp.asarray(np.random.default_rng(0).uniform(size=(6, 8)), jnp.float32)
    y = jnp.array([0, 0, 1, 1, 2, 2])
    f = jax.jit(losses.weighted_triplet_ranking_loss)
    assert float(f(s, y, jnp.float32(4.0))) > float(f(s, y, jnp.float32(1.0)))
    g = jax.jit(jax.grad(losses.weighted_triplet_ranking_loss, argnums=(0, 3)))(s, y, 2.0, jnp.ones(8))
    assert all(np.all(np.isfinite(x)) for x in g)


def test_constrained_negatives():
    y = jnp.array([0, 0, 1, 2, 3])
    model = jnp.array([5, 5, 5, 6, 6])
    color = jnp.array([1, 1, 1, 1, 2])
    pos, neg = losses.constrained_negative_masks(y, (model, color))
    # anchors 0, 1: id 1 shares model and colour -> only it; anchor 2: ids 0 share both;
    # anchor 3 (model 6, colour 1): nobody else -> every other id; anchor 4 likewise.
    expected = np.array(
        [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 1], [1, 1, 1, 1, 0]], bool
    )
    np.testing.assert_array_equal(neg, expected)
    np.testing.assert_array_equal(pos, np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]] + [[0] * 5] * 3, bool))


_ctl = jax.jit(losses.constrained_triplet_loss, static_argnames=("mining",))


@settings(max_examples=25, deadline=None)
@given(classes=st.integers(1, 5), mining=st.sampled_from(["all", "hard"]), seed=st.integers(0, 10**6))
def test_constrained_triplet_matches_loop(classes, mining, seed):
    b = 9
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, 6)).astype(np.float32)
    y = rng.integers(0, classes, b).astype(np.int32)
    model = rng.integers(0, 2, b).astype(np.int32)
    color = rng.integers(0, 2, b).astype(np.int32)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cons = (y[:, None] != y[None]) & (model[:, None] == model[None]) & (color[:, None] == color[None])
    neg_ok = np.where(cons.any(1, keepdims=True), cons, True)
    ref = _np_triplet(_dist(xn, True), y, 0.2, mining, neg_ok=neg_ok)
    got = _ctl(x, y, (model, color), 0.2, mining=mining)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    plain = _ctl(x, y, (), 0.2, mining=mining)
    np.testing.assert_allclose(plain, _np_triplet(_dist(xn, True), y, 0.2, mining), rtol=1e-4, atol=1e-5)
