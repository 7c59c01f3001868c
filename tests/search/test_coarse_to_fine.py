"""Coarse-to-fine search: exact against a reference written from the definition (plain loops), exhaustive at
maximal thresholds, full rankings are permutations, both backends agree, argument checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.search import coarse_to_fine as C
from jhash.search import native

NATIVE = pytest.param("native", marks=pytest.mark.skipif(not native.is_available(), reason="native kernel not built"))
BACKENDS = ["numpy", "jax", NATIVE]


def _pyramid(rng, n, bits=(8, 16, 32), noise=0.3, centers=None):
    """Correlated levels: every level is a prefix of one long random code with per-image noise."""
    centers = rng.integers(0, 2, (4, bits[-1])) if centers is None else centers
    base = centers[rng.integers(0, len(centers), n)]
    flip = rng.random(base.shape) < noise
    raw = np.where(flip, 1 - base, base).astype(np.uint8)
    return [np.packbits(raw[:, :b], axis=1) for b in bits], centers


def _hamming(a, b):
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def _reference_ranking(q, g, t):
    """The definition: stage by stage candidate sets, refined prefix, then each stage's drop-outs."""
    n, ng = len(g), g[0].shape[0]
    out = []
    for i in range(q[0].shape[0]):
        cand = list(range(ng))
        tail = []
        for s in range(n):
            d = {j: _hamming(q[s][i], g[s][j]) for j in cand}
            ranked = sorted(cand, key=lambda j: (d[j], j))
            if s == n - 1:
                out.append(ranked + tail)
                break
            kept = [j for j in ranked if d[j] <= t[s]]
            tail = [j for j in ranked if d[j] > t[s]] + tail
            cand = kept
    return np.array(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t", [(2, 5), (0, 0), (8, 16), (3, 16), (8, 0)])
def test_matches_the_definition(backend, t):
    rng = np.random.default_rng(sum(t))
    g, centers = _pyramid(rng, 50)
    q, _ = _pyramid(rng, 6, centers=centers)
    ref = _reference_ranking(q, g, t)
    rank = C.coarse_to_fine_rank(q, g, t, backend=backend, block_size=4, buffer_size=4)
    np.testing.assert_array_equal(rank, ref)
    top = C.coarse_to_fine_topk(q, g, t, 7, backend=backend, block_size=4, buffer_size=4)
    np.testing.assert_array_equal(top.indices, ref[:, :7])
    keys = C.coarse_to_fine_distances(q, g, t, backend=backend)
    np.testing.assert_array_equal(top.keys, np.take_along_axis(keys, ref[:, :7], axis=1))
    assert np.all(np.diff(top.keys, axis=1) >= 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximal_thresholds_equal_exhaustive_longest_code(backend):
    rng = np.random.default_rng(3)
    g, centers = _pyramid(rng, 300, bits=(16, 32, 64))
    q, _ = _pyramid(rng, 9, bits=(16, 32, 64), centers=centers)
    d = np.array([[_hamming(a, b) for b in g[2]] for a in q[2]])
    exhaustive = np.argsort(d, axis=1, kind="stable")
    keys = C.coarse_to_fine_distances(q, g, (16, 32), backend=backend, buffer_size=8)
    np.testing.assert_array_equal(keys, d)
    np.testing.assert_array_equal(C.coarse_to_fine_rank(q, g, (16, 32), backend=backend, buffer_size=8), exhaustive)
    top = C.coarse_to_fine_topk(q, g, (16, 32), 20, backend=backend, buffer_size=8)
    np.testing.assert_array_equal(top.indices, exhaustive[:, :20])
    np.testing.assert_array_equal(top.keys, np.take_along_axis(d, exhaustive[:, :20], axis=1))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), ng=st.sampled_from([1, 9, 40]), t0=st.integers(0, 8), t1=st.integers(0, 16),
       k=st.sampled_from([1, 6, 40]))  # few distinct shapes: the JAX path compiles once per shape
def test_full_ranking_is_a_permutation_and_topk_its_prefix(seed, ng, t0, t1, k):
    rng = np.random.default_rng(seed)
    g, centers = _pyramid(rng, ng)
    q, _ = _pyramid(rng, 3, centers=centers)
    rank = C.coarse_to_fine_rank(q, g, (t0, t1))
    assert rank.shape == (3, ng)
    for row in rank:  # no duplicate, nothing missed
        np.testing.assert_array_equal(np.sort(row), np.arange(ng))
    k = min(k, ng)
    top = C.coarse_to_fine_topk(q, g, (t0, t1), k)
    np.testing.assert_array_equal(top.indices, rank[:, :k])
    for backend in ("jax", "numpy") + (("native",) if native.is_available() else ()):
        other = C.coarse_to_fine_topk(q, g, (t0, t1), k, backend=backend, buffer_size=2)
        np.testing.assert_array_equal(other.indices, top.indices)
        np.testing.assert_array_equal(other.keys, top.keys)


def test_candidate_counts_and_named_levels():
    rng = np.random.default_rng(5)
    g, centers = _pyramid(rng, 60)
    q, _ = _pyramid(rng, 4, centers=centers)
    t = (3, 6)
    top = C.coarse_to_fine_topk(q, g, t, 5, backend="numpy")
    if native.is_available():
        np.testing.assert_array_equal(C.coarse_to_fine_topk(q, g, t, 5, backend="native").num_candidates,
                                      top.num_candidates)
    for i in range(4):
        c1 = [j for j in range(60) if _hamming(q[0][i], g[0][j]) <= 3]
        c2 = [j for j in c1 if _hamming(q[1][i], g[1][j]) <= 6]
        assert top.num_candidates[i].tolist() == [len(c1), len(c2), len(c2)]
    names = ["l8", "l16", "l32"]
    qd, gd = dict(zip(names, q)), dict(zip(names[::-1], g[::-1]))  # mapping order does not matter
    named = C.coarse_to_fine_topk(qd, gd, {"l8": 3, "l16": 6}, 5)
    np.testing.assert_array_equal(named.indices, top.indices)
    index = C.CoarseToFineIndex.build(gd)
    assert index.names == names and index.bits == (8, 16, 32)
    np.testing.assert_array_equal(C.coarse_to_fine_topk(qd, index, {"l8": 3, "l16": 6}, 5).indices, top.indices)
    assert C.ctf_offsets((32, 128, 512, 2048)).tolist() == [2691, 2562, 2049, 0]


def test_single_level_is_exhaustive():
    rng = np.random.default_rng(7)
    g = [rng.integers(0, 256, (30, 2), dtype=np.uint8)]
    q = [rng.integers(0, 256, (3, 2), dtype=np.uint8)]
    d = np.array([[_hamming(a, b) for b in g[0]] for a in q[0]])
    for backend in ("numpy", "jax") + (("native",) if native.is_available() else ()):
        top = C.coarse_to_fine_topk(q, g, (), 30, backend=backend)
        np.testing.assert_array_equal(top.indices, np.argsort(d, axis=1, kind="stable"))


def test_argument_errors():
    rng = np.random.default_rng(0)
    g, _ = _pyramid(rng, 10)
    q, _ = _pyramid(rng, 2)
    with pytest.raises(ValueError, match="thresholds: expected 2 values"):
        C.coarse_to_fine_topk(q, g, (1,), 3)
    with pytest.raises(ValueError, match=r"thresholds\[1\]: expected 0 <= t <= 16"):
        C.coarse_to_fine_topk(q, g, (1, 17), 3)
    with pytest.raises(ValueError, match="integer"):
        C.coarse_to_fine_topk(q, g, (1.5, 2), 3)
    with pytest.raises(ValueError, match="k: expected"):
        C.coarse_to_fine_topk(q, g, (1, 2), 11)
    with pytest.raises(ValueError, match="levels_g\\[1\\]"):
        C.coarse_to_fine_topk(q, [g[0], g[1].astype(np.int32), g[2]], (1, 2), 3)
    with pytest.raises(ValueError, match="levels_q"):
        C.coarse_to_fine_topk(q[:2], g, (1, 2), 3)
    with pytest.raises(ValueError, match="levels_q\\[2\\]"):
        C.coarse_to_fine_topk([q[0], q[1], q[1]], g, (1, 2), 3)
    with pytest.raises(ValueError, match="backend"):
        C.coarse_to_fine_topk(q, g, (1, 2), 3, backend="gpu")
    with pytest.raises(ValueError, match="shortest to the longest"):
        C.CoarseToFineIndex.build(g[::-1])
    with pytest.raises(ValueError, match="mapping"):
        C.coarse_to_fine_topk(q, g, {"a": 1}, 3)


@pytest.mark.skipif(not native.is_available(), reason="native kernel not built")
@pytest.mark.parametrize("bits,t", [((8, 16, 32), (1, 4)), ((8, 16, 32), (0, 0)), ((8, 16, 32), (8, 16)),
                                    ((32, 64, 136), (6, 20)), ((32, 64, 136), (32, 64)), ((72, 80, 88), (20, 25))])
def test_native_equals_numpy_across_tiles_and_query_blocks(bits, t):
    """A gallery of 20003 codes (longer than the stage-0 tile of 1-byte codes, not a multiple of the 8 codes
    the AVX2 32-bit scan reads at once), 19 queries (three blocks of 8), level-0 codes of 1, 4 (the AVX2
    path) and 9 bytes (the dense-tile path), thresholds from nearly empty candidate sets (the level-0
    refill) to exhaustive."""
    rng = np.random.default_rng(11)
    g, centers = _pyramid(rng, 20003, bits=bits, noise=0.2)
    q, _ = _pyramid(rng, 19, bits=bits, centers=centers, noise=0.2)
    a = C.coarse_to_fine_topk(q, g, t, 50, backend="native")
    b = C.coarse_to_fine_topk(q, g, t, 50, backend="numpy")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.num_candidates, b.num_candidates)
    np.testing.assert_array_equal(C.coarse_to_fine_distances(q[:5], g, t, backend="native"),
                                  C.coarse_to_fine_distances(q[:5], g, t, backend="numpy"))


def test_native_backend_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(native, "is_available", lambda: False)
    monkeypatch.setattr(native, "unavailable_reason", lambda: "not compiled")
    rng = np.random.default_rng(0)
    g, _ = _pyramid(rng, 10)
    with pytest.raises(RuntimeError, match="backend='native'.*not compiled"):
        C.coarse_to_fine_topk(g, g, (1, 2), 3, backend="native")

