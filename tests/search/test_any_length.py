"""Codes whose length is not a multiple of 8 (a 12-bit prefix, DRSCH's top-m bits): packed with zero padding,
searched by every backend exactly as the unpadded L-bit codes (references: plain numpy on the unpacked bits)."""

import numpy as np
import pytest

from jhash import search
from jhash.search import native

BACKENDS = ["xla"] + (["native"] if native.is_available() else [])


def ref_distances(qb, gb):
    """d_H(q, g) = number of positions where the L-bit codes differ (loop over queries)."""
    return np.stack([(row[None, :] != gb).sum(axis=1) for row in qb]).astype(np.int64)


def ref_topk(d, k):
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def random_bits(rng, n, L, n_distinct=None):
    if n_distinct is None:
        return rng.integers(0, 2, (n, L)).astype(np.uint8)
    pool = rng.integers(0, 2, (n_distinct, L)).astype(np.uint8)  # heavy ties
    return pool[rng.integers(0, n_distinct, n)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", [1, 12, 20, 33, 100])
def test_hamming_search_of_any_length(backend, L):
    rng = np.random.default_rng(L)
    qb, gb = random_bits(rng, 9, L), random_bits(rng, 300, L, n_distinct=40)
    q, g = search.pack_codes(qb), search.pack_codes(gb)
    want = ref_distances(qb, gb)
    np.testing.assert_array_equal(np.asarray(search.hamming_distance(q, g, backend=backend)), want)
    d, i = search.hamming_topk(q, g, 17, backend=backend)
    wd, wi = ref_topk(want, 17)
    np.testing.assert_array_equal(np.asarray(d), wd)
    np.testing.assert_array_equal(np.asarray(i), wi)
    cand = rng.integers(-1, 300, (9, 11))
    gathered = np.asarray(search.hamming_distance_gather(q, g, cand, backend=backend))
    np.testing.assert_array_equal(gathered[cand >= 0], np.take_along_axis(want, np.maximum(cand, 0), 1)[cand >= 0])
    assert np.all(gathered[cand < 0] > L)  # padding entries sort after every real distance
    np.testing.assert_array_equal(np.asarray(search.hamming_rank(q, g)), np.argsort(want, axis=1, kind="stable"))


@pytest.mark.parametrize("backend", ["numpy", "jax"] + (["native"] if native.is_available() else []))
def test_coarse_to_fine_with_odd_lengths(backend):
    rng = np.random.default_rng(3)
    lengths = (12, 36, 100)
    qb = [random_bits(rng, 6, L) for L in lengths]
    gb = [random_bits(rng, 250, L, n_distinct=60) for L in lengths]
    thresholds = (5, 15)
    # reference from the definition: stage s keeps d_s <= t_s; key = offset[s(j)] + d_s(j)
    offsets = [0] * len(lengths)
    for s in range(len(lengths) - 2, -1, -1):
        offsets[s] = offsets[s + 1] + lengths[s + 1] + 1
    d = [ref_distances(a, b) for a, b in zip(qb, gb)]
    want = np.empty_like(d[0])
    for i in range(6):
        for j in range(250):
            s = 0
            while s < len(lengths) - 1 and d[s][i, j] <= thresholds[s]:
                s += 1
            want[i, j] = offsets[s] + d[s][i, j]
    ql = [search.pack_codes(a) for a in qb]
    gl = [search.pack_codes(b) for b in gb]
    # the packed levels are 16, 40 and 104 bits wide: keys use those widths, so compare orders and the
    # ranking, which the padding must not change
    got = search.coarse_to_fine_distances(ql, gl, thresholds, backend=backend)
    np.testing.assert_array_equal(np.argsort(got, axis=1, kind="stable"), np.argsort(want, axis=1, kind="stable"))
    top = search.coarse_to_fine_topk(ql, gl, thresholds, 10, backend=backend)
    np.testing.assert_array_equal(top.indices, np.argsort(want, axis=1, kind="stable")[:, :10])


def test_select_bits_of_odd_count_equals_packing_the_selection():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, (7, 64)).astype(np.uint8)
    idx = np.array([5, 63, 0, 17, 40, 2, 9, 33, 12, 50, 1, 8, 30])  # 13 bits
    got = np.asarray(search.select_bits(search.pack_codes(bits), idx, pad=True))
    np.testing.assert_array_equal(got, np.asarray(search.pack_codes(bits[:, idx])))


def test_faiss_export_of_odd_length_codes_gives_the_unpadded_distances():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(6)
    qb, gb = random_bits(rng, 4, 20), random_bits(rng, 200, 20)
    index = search.to_faiss(np.asarray(search.pack_codes(gb)))
    assert index.d == 24  # faiss binary indexes take whole bytes: the 4 padding bits are zero everywhere
    fd, _ = index.search(np.asarray(search.pack_codes(qb)), 200)
    np.testing.assert_array_equal(fd, np.sort(ref_distances(qb, gb), axis=1))


@pytest.mark.parametrize("L", [5, 12, 33])
def test_sharded_search_of_any_length(L):
    rng = np.random.default_rng(100 + L)
    qb, gb = random_bits(rng, 4, L), random_bits(rng, 120, L, n_distinct=25)
    d, i = search.sharded_hamming_topk(search.pack_codes(qb), search.pack_codes(gb), 9)
    wd, wi = ref_topk(ref_distances(qb, gb), 9)
    np.testing.assert_array_equal(np.asarray(d), wd)
    np.testing.assert_array_equal(np.asarray(i), wi)
