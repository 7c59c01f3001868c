"""weighted_hamming_topk_jax: the traceable exact top-k by weighted Hamming distance (DRSCH's retrieval rule).

The reference is the definition ``D(q, g) = sum_k w_k^2 [b_qk != b_gk]``, ranked by ``(D, gallery index)``, in
plain Python loops over unpacked bits. Weights drawn from {0, 0.5, 1, 1.5} make every distance exact in float32
and float64 alike, so the comparison is exact and full of ties; real-valued weights are compared with the numpy
backend bit for bit. (The numpy/XLA distance functions and the numpy top-k are tested in
tests/methods/test_drsch.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash import search
from jhash.search import weight_tables, weight_tables_jax, weighted, weighted_hamming_topk, weighted_hamming_topk_jax

DYADIC = np.array([0.0, 0.5, 1.0, 1.5], np.float32)


def _definition_topk(q_bits: np.ndarray, g_bits: np.ndarray, w: np.ndarray, k: int):
    """Per query: the k pairs (D, j) of smallest distance, ties to the lower gallery index j."""
    dist, idx = [], []
    for a in q_bits:
        d = []
        for b in g_bits:
            d.append(sum(float(w[t]) ** 2 for t in range(len(w)) if a[t] != b[t]))
        order = sorted(range(len(g_bits)), key=lambda j: (d[j], j))[:k]
        dist.append([d[j] for j in order])
        idx.append(order)
    return np.array(dist), np.array(idx)


@st.composite
def _cases(draw):
    L = draw(st.integers(1, 20))
    nq = draw(st.integers(1, 4))
    ng = draw(st.integers(1, 40))
    k = draw(st.integers(1, ng))
    block = draw(st.one_of(st.none(), st.integers(1, ng + 3)))
    query_block = draw(st.one_of(st.none(), st.integers(1, 3)))
    seed = draw(st.integers(0, 2**31 - 1))
    return L, nq, ng, k, block, query_block, seed


@settings(max_examples=15, deadline=None)
@given(case=_cases())
def test_topk_jax_is_the_definition_with_ties_by_index(case):
    L, nq, ng, k, block, query_block, seed = case
    rng = np.random.default_rng(seed)
    n_distinct = rng.integers(1, 3)  # one or two non-zero weight values: many equal distances
    w = rng.choice(DYADIC[: 1 + n_distinct], size=L)
    qb = rng.integers(0, 2, size=(nq, L))
    gb = rng.integers(0, 2, size=(ng, L))
    gb[rng.integers(0, ng, size=ng // 2)] = gb[0]  # repeated gallery codes: equal XOR patterns
    q, g = search.pack_codes(qb), search.pack_codes(gb)
    d, i = weighted_hamming_topk_jax(q, g, weight_tables(w, q.shape[1]), k, block=block, query_block=query_block)
    want_d, want_i = _definition_topk(qb, gb, w, k)
    assert d.dtype == jnp.float32 and i.dtype == jnp.int32 and d.shape == i.shape == (nq, k)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


@pytest.mark.parametrize("L, ng, k, block", [(64, 300, 10, 64), (130, 97, 97, 32), (7, 50, 5, None)])
def test_real_weights_equal_the_numpy_backend_bit_for_bit(L, ng, k, block):
    rng = np.random.default_rng(L)
    q = search.pack_codes(rng.integers(0, 2, size=(6, L)))
    g = np.array(search.pack_codes(rng.integers(0, 2, size=(ng, L))))
    g[1::3] = g[0]  # equal codes: exact ties
    w = rng.normal(size=L).astype(np.float32)
    want_d, want_i = weighted_hamming_topk(q, g, w, k, backend="numpy")
    tables = weight_tables(w, q.shape[1])
    np.testing.assert_array_equal(np.asarray(weight_tables_jax(w, q.shape[1])), tables)
    for d, i in [weighted_hamming_topk_jax(q, g, tables, k, block=block, query_block=4),
                 weighted_hamming_topk(q, g, w, k, backend="xla")]:
        np.testing.assert_array_equal(np.asarray(i), want_i)
        np.testing.assert_array_equal(np.asarray(d), want_d)


def test_k_equal_to_a_large_gallery_is_the_stable_ranking():
    rng = np.random.default_rng(1)
    ng = 46_000
    qb, gb = rng.integers(0, 2, size=(2, 3)), rng.integers(0, 2, size=(ng, 3))
    w = np.array([0.5, 1.0, 0.5], np.float32)
    q, g = search.pack_codes(qb), search.pack_codes(gb)
    d, i = weighted_hamming_topk_jax(q, g, weight_tables(w, 1), ng, block=10_000)
    dist = ((qb[:, None, :] != gb[None, :, :]) * w**2).sum(-1)  # exact: quarter multiples
    want_i = np.array([sorted(range(ng), key=lambda j: (dist[r, j], j)) for r in range(2)])
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), np.take_along_axis(dist, want_i, axis=1))


def test_sizes_beyond_the_merge_keys_are_refused():
    with pytest.raises(ValueError, match="k=800000000 is too large"):
        weighted._plan(1, 10**9, 800_000_000, None, None)
    with pytest.raises(ValueError, match="block=100000000 is too large for k=700000000"):
        weighted._plan(1, 10**9, 700_000_000, 10**8, None)


W_JIT = np.random.default_rng(2).normal(size=21).astype(np.float32)
JIT_CALLS = {
    # weighted_hamming_topk_jax on the tables of traced weights
    "topk_jax, traced weights": lambda q, g, w: weighted_hamming_topk_jax(
        q, g, weight_tables_jax(w, q.shape[1]), 8, block=16),
    # weighted_hamming_topk under a trace: the XLA path, tables from traced or from fixed (closed-over) weights
    "topk, traced weights": lambda q, g, w: weighted_hamming_topk(q, g, w, 8),
    "topk, fixed weights": lambda q, g, w: weighted_hamming_topk(q, g, np.asarray(W_JIT), 8),
}


@pytest.mark.parametrize("call", list(JIT_CALLS))
def test_runs_inside_jit_and_equals_the_numpy_backend(call):
    rng = np.random.default_rng(2)
    q = search.pack_codes(rng.integers(0, 2, size=(5, W_JIT.size)))
    g = search.pack_codes(rng.integers(0, 2, size=(70, W_JIT.size)))
    d, i = jax.jit(JIT_CALLS[call])(q, g, jnp.asarray(W_JIT))
    want_d, want_i = weighted_hamming_topk(q, g, W_JIT, 8, backend="numpy")
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


def test_numpy_backend_inside_jit_is_a_clear_error():
    q = np.zeros((2, 1), np.uint8)
    with pytest.raises(ValueError, match="backend='numpy' cannot run inside a JAX trace"):
        jax.jit(lambda q: weighted_hamming_topk(q, q, np.ones(8), 1, backend="numpy"))(q)


def test_exports_for_gpu_and_tpu_and_the_cpu_artifact_matches():
    rng = np.random.default_rng(3)
    L = 12
    q = search.pack_codes(rng.integers(0, 2, size=(3, L)))
    g = search.pack_codes(rng.integers(0, 2, size=(45, L)))
    w = rng.choice(DYADIC, size=L)
    f = jax.jit(lambda q, g, w: weighted_hamming_topk_jax(q, g, weight_tables_jax(w, q.shape[1]), 6, block=16))
    accel = jax.export.export(f, platforms=("cuda", "tpu"))(q, g, w)
    assert tuple(accel.platforms) == ("cuda", "tpu")
    assert "jhash_" not in accel.mlir_module()  # no CPU-only custom call of the native kernel
    both = jax.export.export(f, platforms=("cpu", "cuda", "tpu"))(q, g, w)
    d, i = both.call(q, g, w)
    want_d, want_i = _definition_topk(search.unpack_codes(q, bits=L), search.unpack_codes(g, bits=L), w, 6)
    np.testing.assert_array_equal(np.asarray(i), want_i)
    np.testing.assert_array_equal(np.asarray(d), want_d)


def test_bad_input_names_the_argument():
    q = np.zeros((2, 2), np.uint8)
    t = weight_tables(np.ones(16), 2)
    with pytest.raises(ValueError, match="tables: expected float32 \\[2, 256\\]"):
        weighted_hamming_topk_jax(q, q, t[:1], 1)
    with pytest.raises(ValueError, match="tables: expected float32"):
        weighted_hamming_topk_jax(q, q, t.astype(np.int32), 1)
    with pytest.raises(ValueError, match="k=3 exceeds"):
        weighted_hamming_topk_jax(q, q, t, 3)
    with pytest.raises(ValueError, match="block must be >= 1"):
        weighted_hamming_topk_jax(q, q, t, 1, block=0)
    with pytest.raises(ValueError, match="query_block must be a positive"):
        weighted_hamming_topk_jax(q, q, t, 1, query_block=1.5)
    with pytest.raises(ValueError, match="bit_weights: 17 weights do not match codes of 2 bytes"):
        weight_tables_jax(np.ones(17), 2)
    with pytest.raises(ValueError, match="bit_weights: the squared weights overflow float32"):
        weight_tables(np.full(16, 1e30), 2)


def test_empty_query_set_gives_empty_results():
    g = np.zeros((4, 1), np.uint8)
    d, i = weighted_hamming_topk_jax(np.zeros((0, 1), np.uint8), g, weight_tables(np.ones(8), 1), 2)
    assert d.shape == i.shape == (0, 2) and d.dtype == jnp.float32 and i.dtype == jnp.int32
