"""hamming_distance / hamming_topk against plain numpy references written from the definition."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jhash.search.hamming as hamming_mod
from jhash.search import hamming_distance, hamming_topk


def ref_distance(q, g):
    """d(i, j) = number of differing bits, counted bit by bit."""
    d = np.zeros((len(q), len(g)), np.int64)
    for i in range(len(q)):
        for j in range(len(g)):
            d[i, j] = sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(q[i], g[j]))
    return d


def fast_ref_distance(q, g):
    return np.unpackbits(q[:, None, :] ^ g[None, :, :], axis=-1).sum(-1)


def ref_topk(d, k):
    """First k of a stable sort by distance: python sort on (distance, index) pairs."""
    idx = np.array([[j for _, j in sorted((d[i, j], j) for j in range(d.shape[1]))[:k]] for i in range(len(d))])
    return np.take_along_axis(d, idx, 1), idx


def codes(rng, n, nbytes):
    return rng.integers(0, 256, (n, nbytes), dtype=np.uint8)


def test_distance_matches_bit_loop():
    rng = np.random.default_rng(0)
    for nbytes in (3, 32):
        q, g = codes(rng, 4, nbytes), codes(rng, 9, nbytes)
        d = hamming_distance(q, g)
        assert d.dtype == jnp.int32 and d.shape == (4, 9)
        np.testing.assert_array_equal(np.asarray(d), ref_distance(q, g))


@pytest.mark.parametrize(
    "nq,ng,nbytes,k,block",
    [(5, 1000, 2, 40, 64), (2, 777, 3, 777, None), (3, 5000, 32, 64, 2048), (130, 300, 4, 3, None)],
)
def test_topk_matches_stable_sort_reference(nq, ng, nbytes, k, block):
    rng = np.random.default_rng(nq * 1000 + ng)
    q, g = codes(rng, nq, nbytes), codes(rng, ng, nbytes)
    want_d, want_i = ref_topk(fast_ref_distance(q, g), k)
    d, i = hamming_topk(q, g, k, block_size=block, backend="xla")
    assert d.dtype == jnp.int32 and i.dtype == jnp.int32 and d.shape == (nq, k)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


# (nq, ng, k, nbytes, block, query block): a few shapes (each compiles once), the data varies freely.
_TIE_SHAPES = [(3, 300, 37, 2, 16, None), (5, 123, 123, 1, None, 2), (2, 600, 5, 2, 100, 1)]


@settings(max_examples=30, deadline=None)
@given(shape=st.sampled_from(_TIE_SHAPES), n_distinct=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_topk_is_prefix_of_full_ranking_with_heavy_ties(shape, n_distinct, seed):
    nq, ng, k, nbytes, block, qblock = shape
    rng = np.random.default_rng(seed)
    # Few distinct codes -> many equal distances: the tie order by gallery index is what is tested.
    pool = codes(rng, n_distinct, nbytes)
    q, g = pool[rng.integers(0, n_distinct, nq)], pool[rng.integers(0, n_distinct, ng)]
    dist = fast_ref_distance(q, g)
    rank = np.argsort(dist, axis=1, kind="stable")
    d, i = hamming_topk(q, g, k, block_size=block, query_block_size=qblock, backend="xla")
    np.testing.assert_array_equal(np.asarray(i), rank[:, :k])
    np.testing.assert_array_equal(np.asarray(d), np.take_along_axis(dist, rank[:, :k], 1))


def test_topk_under_jit_and_with_jax_inputs():
    rng = np.random.default_rng(3)
    q, g = codes(rng, 4, 4), codes(rng, 500, 4)
    f = jax.jit(lambda a, b: hamming_topk(a, b, 10, backend="xla"))
    d, i = f(jnp.asarray(q), jnp.asarray(g))
    want_d, want_i = ref_topk(fast_ref_distance(q, g), 10)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


def test_empty_queries_give_empty_results():
    d, i = hamming_topk(np.zeros((0, 4), np.uint8), np.zeros((5, 4), np.uint8), 2, backend="xla")
    assert d.shape == (0, 2) and i.shape == (0, 2)


def test_huge_k_falls_back_to_full_ranking(monkeypatch):
    # Pretend composite keys cannot hold k: the counting-sort prefix path must give the same answer.
    rng = np.random.default_rng(4)
    q, g = codes(rng, 3, 2), codes(rng, 300, 2)
    monkeypatch.setattr(hamming_mod, "_KMAX", 10)
    d, i = hamming_topk(q, g, 250, backend="xla")
    want_d, want_i = ref_topk(fast_ref_distance(q, g), 250)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


def hide_native_module(monkeypatch):
    """Make ``from jhash.search import native`` raise ImportError (also when another test imported it)."""
    import jhash.search

    monkeypatch.setitem(sys.modules, "jhash.search.native", None)
    monkeypatch.delattr(jhash.search, "native", raising=False)


def test_backend_selection_without_native_module(monkeypatch):
    rng = np.random.default_rng(5)
    q, g = codes(rng, 2, 4), codes(rng, 50, 4)
    hide_native_module(monkeypatch)
    d, i = hamming_topk(q, g, 5, backend="auto")
    want_d, want_i = ref_topk(fast_ref_distance(q, g), 5)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    with pytest.raises(RuntimeError, match=r"backend='native'"):
        hamming_topk(q, g, 5, backend="native")


def test_bad_input_errors_name_the_argument():
    q, g = np.zeros((2, 4), np.uint8), np.zeros((10, 4), np.uint8)
    with pytest.raises(ValueError, match=r"code lengths differ: q has 4 bytes.*g has 2 bytes"):
        hamming_topk(q, np.zeros((10, 2), np.uint8), 3)
    with pytest.raises(ValueError, match=r"code lengths differ"):
        hamming_distance(q, np.zeros((10, 2), np.uint8))
    with pytest.raises(ValueError, match=r"g must have dtype uint8"):
        hamming_topk(q, g.astype(np.int32), 3)
    with pytest.raises(ValueError, match=r"q must be packed codes of rank 2"):
        hamming_distance(q[0], g)
    with pytest.raises(ValueError, match=r"g is empty"):
        hamming_topk(q, g[:0], 1)
    with pytest.raises(ValueError, match=r"k must be >= 1"):
        hamming_topk(q, g, 0)
    with pytest.raises(ValueError, match=r"k=11 exceeds the gallery size ng=10"):
        hamming_topk(q, g, 11)
    with pytest.raises(ValueError, match=r"k must be a positive Python int"):
        hamming_topk(q, g, 2.0)
    with pytest.raises(ValueError, match=r"backend must be"):
        hamming_topk(q, g, 2, backend="gpu")
    with pytest.raises(ValueError, match=r"block_size must be a positive int"):
        hamming_topk(q, g, 2, block_size=0, backend="xla")
    with pytest.raises(ValueError, match=r"query_block_size must be a positive int"):
        hamming_topk(q, g, 2, query_block_size=-1, backend="xla")


def test_streaming_memory_is_independent_of_gallery_size():
    """1,000 queries x 10,000,000 x 256-bit codes: XLA's own buffer accounting (no data is allocated)."""
    nq, ng, W, k = 1000, 10_000_000, 8, 100
    qb, block, levels = hamming_mod.plan(nq, ng, W, k, None, None)
    nq_pad = -(-nq // qb) * qb
    lowered = hamming_mod._topk_xla_words.lower(
        jax.ShapeDtypeStruct((nq_pad, W), jnp.uint32), jax.ShapeDtypeStruct((ng, W), jnp.uint32), ng,
        k=k, block=block, qb=qb, levels=levels)
    mem = lowered.compile().memory_analysis()
    if mem is None:
        pytest.skip("memory_analysis unavailable on this backend")
    dense = nq * ng * 4  # what a dense int32 distance matrix would need: 40 GB
    assert mem.temp_size_in_bytes < 256 * 2**20, mem
    assert mem.temp_size_in_bytes < dense / 100
    # inputs (gallery 320 MB) + outputs + temporaries stay far below 4 GiB
    assert mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes < 1 * 2**30


# ------------------------------------------------------------------------- dense / gathered backends --
from jhash.search import hamming_distance_gather  # noqa: E402
from jhash.search import native  # noqa: E402

BACKENDS = ["xla"] + (["native"] if native.is_available() else [])


def ref_gather(q, g, cand):
    """out[i, t] = differing bits of q_i and g[cand[i, t]] (bit loop); padding (< 0) -> L + 1."""
    out = np.empty(cand.shape, np.int64)
    for i in range(cand.shape[0]):
        for t in range(cand.shape[1]):
            j = cand[i, t]
            out[i, t] = 8 * q.shape[1] + 1 if j < 0 else sum(
                bin(int(a) ^ int(b)).count("1") for a, b in zip(q[i], g[j]))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nbytes", [1, 3, 5, 8, 32, 33, 256, 320])
def test_distance_backends_match_reference(backend, nbytes):
    rng = np.random.default_rng(nbytes)
    q, g = codes(rng, 3, nbytes), codes(rng, 11, nbytes)
    g[4] = q[1]  # a tie at distance 0
    d = hamming_distance(q, g, backend=backend)
    assert d.dtype == jnp.int32 and d.shape == (3, 11)
    np.testing.assert_array_equal(np.asarray(d), fast_ref_distance(q, g))
    np.testing.assert_array_equal(np.asarray(d), np.asarray(hamming_distance(q, g, backend="xla")))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nbytes", [1, 3, 8, 33, 256])
def test_gather_backends_match_reference(backend, nbytes):
    rng = np.random.default_rng(50 + nbytes)
    q, g = codes(rng, 4, nbytes), codes(rng, 13, nbytes)
    g[2] = q[0]
    cand = rng.integers(-2, 13, (4, 9)).astype(np.int64)
    cand[0, 0] = 2
    d = hamming_distance_gather(q, g, cand, backend=backend)
    assert d.dtype == jnp.int32 and d.shape == (4, 9)
    np.testing.assert_array_equal(np.asarray(d), ref_gather(q, g, cand))
    assert (cand < 0).any() and int(d[0, 0]) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_distance_and_gather_under_jit(backend):
    rng = np.random.default_rng(8)
    q, g = codes(rng, 3, 12), codes(rng, 20, 12)
    cand = rng.integers(-1, 20, (3, 7)).astype(np.int32)
    cand[2, 1] = 20  # out of range: cannot be checked when traced -> treated like padding
    f = jax.jit(lambda a, b, c: (hamming_distance(a, b, backend=backend),
                                 hamming_distance_gather(a, b, c, backend=backend)))
    d, dg = f(jnp.asarray(q), jnp.asarray(g), jnp.asarray(cand))
    np.testing.assert_array_equal(np.asarray(d), fast_ref_distance(q, g))
    want = ref_gather(q, g, np.where(cand >= 20, -1, cand))
    np.testing.assert_array_equal(np.asarray(dg), want)


def test_gather_validation_and_backend_selection(monkeypatch):
    q, g = np.zeros((2, 4), np.uint8), np.zeros((10, 4), np.uint8)
    with pytest.raises(ValueError, match=r"candidates: gallery index 10 out of range"):
        hamming_distance_gather(q, g, np.array([[0, 10], [1, 2]]), backend="xla")
    with pytest.raises(ValueError, match=r"candidates: expected one row per query"):
        hamming_distance_gather(q, g, np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match=r"candidates: expected an integer dtype"):
        hamming_distance_gather(q, g, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=r"backend must be"):
        hamming_distance_gather(q, g, np.zeros((2, 2), np.int32), backend="cuda")
    with pytest.raises(ValueError, match=r"backend must be"):
        hamming_distance(q, g, backend="cuda")
    assert hamming_distance_gather(q, g, np.zeros((2, 0), np.int32), backend="xla").shape == (2, 0)
    hide_native_module(monkeypatch)  # native import fails: auto -> xla
    np.testing.assert_array_equal(np.asarray(hamming_distance_gather(q, g, [[1, -1], [0, 0]])),
                                  [[0, 33], [0, 0]])
    with pytest.raises(RuntimeError, match=r"backend='native'"):
        hamming_distance(q, g, backend="native")
