"""Tests of the native CPU top-k kernel (jhash.search.native) against a numpy reference.

The reference is written from the definition: Hamming distance = number of
differing bits (per-byte popcount table), top-k = the first k entries of a
stable sort of the distances (ties broken by gallery index).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.search import native

if not native.is_available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
ISAS = native.available_isas()


def ref_distances(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    d = np.zeros((q.shape[0], g.shape[0]), dtype=np.int64)
    for i in range(q.shape[0]):
        d[i] = POPCOUNT8[np.bitwise_xor(q[i][None, :], g)].sum(axis=1)
    return d


def ref_topk(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = ref_distances(q, g)
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    dist = np.empty((q.shape[0], k), dtype=np.int64)
    for i in range(q.shape[0]):
        order = sorted(range(g.shape[0]), key=lambda j: (d[i, j], j))[:k]
        idx[i] = order
        dist[i] = d[i, order]
    return dist, idx


def random_codes(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)


def tied_codes(rng: np.random.Generator, q: np.ndarray, n: int) -> np.ndarray:
    """Gallery rows that are copies of few patterns (many exact ties)."""
    base = np.concatenate([q[:2], random_codes(rng, 3, q.shape[1])])
    g = base[rng.integers(0, base.shape[0], size=n)].copy()
    flip = rng.random(n) < 0.3
    g[flip, 0] ^= np.uint8(1)
    return g


def check(q, g, k, **kw):
    want_d, want_i = ref_topk(q, g, k)
    got_d, got_i = native.hamming_topk_numpy(q, g, k, **kw)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)
    return got_d, got_i


# 1, 2, 3, 5 ... bytes: widths that are not a multiple of 8 bytes, plus the
# compile-time widths and the vector paths (32, 64, 96, 128, 256 bytes) and
# runtime-width vector paths (160, 320 bytes).
WIDTHS_BITS = [8, 16, 24, 40, 56, 64, 72, 128, 200, 256, 264, 512, 768, 1024, 1280, 2048, 2560]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", WIDTHS_BITS)
def test_random_codes_match_reference(isa, bits):
    rng = np.random.default_rng(bits)
    q = random_codes(rng, 5, bits // 8)
    g = random_codes(rng, 203, bits // 8)  # not a multiple of 8 rows
    check(q, g, 17, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", [16, 24, 256, 2048])
def test_heavily_tied_codes_match_reference(isa, bits):
    rng = np.random.default_rng(100 + bits)
    q = random_codes(rng, 6, bits // 8)
    g = tied_codes(rng, q, 300)
    d, i = check(q, g, 40, isa=isa)
    assert (np.diff(d, axis=1) == 0).sum() > 0  # the test really has ties


@pytest.mark.parametrize("isa", ISAS)
def test_k_one_and_k_all(isa):
    rng = np.random.default_rng(7)
    q = random_codes(rng, 4, 4)
    g = tied_codes(rng, q, 61)
    check(q, g, 1, isa=isa)
    d, i = check(q, g, 61, isa=isa)
    for row in i:  # k = ng returns a permutation of the gallery
        assert sorted(row.tolist()) == list(range(61))


@pytest.mark.parametrize("isa", ISAS)
def test_order_is_distance_then_index(isa):
    rng = np.random.default_rng(3)
    q = random_codes(rng, 8, 2)
    g = random_codes(rng, 500, 2)  # 16-bit codes: distances in [0, 16], many ties
    d, i = native.hamming_topk_numpy(q, g, 100, isa=isa)
    full = ref_distances(q, g)
    for r in range(q.shape[0]):
        assert np.array_equal(full[r, i[r]], d[r])  # returned index has returned distance
        keys = list(zip(d[r].tolist(), i[r].tolist()))
        assert keys == sorted(keys)
        assert len(set(i[r].tolist())) == 100


@pytest.mark.parametrize("isa", ISAS)
def test_adversarial_decreasing_distances_compaction(isa):
    """Each new row beats all previous ones: every row is accepted and the
    per-query buffer is compacted many times."""
    rng = np.random.default_rng(11)
    nbytes = 128  # 1024-bit codes, distances 1024 .. 0
    q = random_codes(rng, 1, nbytes)
    bits = np.unpackbits(q[0])
    rows = []
    for d in range(1024, -1, -1):
        flipped = bits.copy()
        flipped[:d] ^= 1
        rows.append(np.packbits(flipped))
    g = np.stack(rows)
    q2 = np.concatenate([q, random_codes(rng, 2, nbytes)])
    check(q2, g, 5, isa=isa)
    check(q2, g, 300, isa=isa)


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_threads_chunks_and_query_blocks(threads):
    """Gallery split into chunks (merged per query) and > 256 queries (several query blocks)."""
    rng = np.random.default_rng(5)
    q = random_codes(rng, 3, 3)
    g = random_codes(rng, 20000, 3)
    check(q, g, 25, num_threads=threads)
    q = random_codes(rng, 300, 4)
    g = tied_codes(rng, q, 150)
    check(q, g, 9, num_threads=threads)


def test_jax_entry_point_matches_numpy_and_works_in_jit():
    rng = np.random.default_rng(9)
    q = random_codes(rng, 6, 32)
    g = tied_codes(rng, q, 257)
    want_d, want_i = ref_topk(q, g, 20)
    d, i = native.hamming_topk(q, g, 20)
    assert d.dtype == jnp.int32 and i.dtype == jnp.int32 and d.shape == (6, 20)
    np.testing.assert_array_equal(np.asarray(d), want_d)
    np.testing.assert_array_equal(np.asarray(i), want_i)

    @jax.jit
    def f(a, b):
        dist, idx = native.hamming_topk(a, b, 20)
        return dist + 0, idx  # composed with other XLA ops

    d2, i2 = f(jnp.asarray(q), jnp.asarray(g))
    np.testing.assert_array_equal(np.asarray(d2), want_d)
    np.testing.assert_array_equal(np.asarray(i2), want_i)

    # vmap over a batch of query sets (sequential loop over the custom call)
    qb = np.stack([q, q[::-1]])
    db, ib = jax.vmap(lambda a: native.hamming_topk(a, g, 20))(qb)
    np.testing.assert_array_equal(np.asarray(db[1]), want_d[::-1])
    np.testing.assert_array_equal(np.asarray(ib[1]), want_i[::-1])


def test_zero_queries():
    g = np.zeros((5, 4), np.uint8)
    d, i = native.hamming_topk_numpy(np.zeros((0, 4), np.uint8), g, 3)
    assert d.shape == (0, 3) and i.shape == (0, 3)


@pytest.mark.parametrize(
    "q, g, k, match",
    [
        (np.zeros((2, 4), np.int32), np.zeros((5, 4), np.uint8), 1, "q: expected dtype uint8"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.float32), 1, "g: expected dtype uint8"),
        (np.zeros((4,), np.uint8), np.zeros((5, 4), np.uint8), 1, "q: expected packed codes of rank 2"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4, 1), np.uint8), 1, "g: expected packed codes of rank 2"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 3), np.uint8), 1, "g: code length mismatch"),
        (np.zeros((2, 0), np.uint8), np.zeros((5, 0), np.uint8), 1, "q: code width"),
        (np.zeros((2, 4), np.uint8), np.zeros((0, 4), np.uint8), 1, "g: the gallery is empty"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.uint8), 0, "k: expected k >= 1"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.uint8), 6, "k: expected k <= number"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.uint8), True, "k: expected a positive int"),
        (np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.uint8), 2.0, "k: expected a positive int"),
    ],
)
def test_bad_input(q, g, k, match):
    with pytest.raises(ValueError, match=match):
        native.hamming_topk(q, g, k)
    with pytest.raises(ValueError, match=match):
        native.hamming_topk_numpy(q, g, k)


def test_bad_options():
    q = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match="isa"):
        native.hamming_topk(q, q, 1, isa="sse9")
    with pytest.raises(ValueError, match="num_threads"):
        native.hamming_topk_numpy(q, q, 1, num_threads=0)


def test_info_reports_dispatch():
    inf = native.info()
    assert inf["isa"] in inf["available_isas"]
    assert inf["num_threads"] >= 1
    assert "baseline" in native.available_isas()


def test_bench_quick_reports_identical_distances():
    env = dict(os.environ, JHASH_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "search.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "identical distances: yes" in out, out
    assert "identical distances: NO" not in out, out
    # both libraries at 1 and 2 threads, the kernel per width, the load around every shape, the README table
    for name in ("jhash 1t", "jhash 2t", "faiss 1t", "faiss 2t"):
        assert f"  {name} " in out, out
    assert "kernel per width: 64 b: " in out and f"jhash kernel {native.kernel_for(32)}" in out, out
    assert out.count("load average before / after (counts this benchmark's own threads):") == out.count(
        "== shape "), out
    assert out.count("share of the CPUs' time during the shape: other ") == out.count("== shape "), out
    assert "jhash/faiss throughput, 1 thread each:" in out and "jhash speed-up 1 -> 2 threads:" in out, out
    assert "| 100,000 × 64 b | 10 |" in out and "| 20,000 × 256 b | 200 |" in out, out
    loaded = out.count("this row is LOADED")
    assert loaded == out.count("**LOADED** |"), out  # every warned shape is labelled in the table
    assert out.count("row labelled 'niced background'") == out.count(" niced background |"), out


def _bench_common():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import _common
    finally:
        sys.path.pop(0)
    return _common


@pytest.mark.parametrize("own_niced", [False, True])
def test_other_work_separates_this_process_niced_work_and_steal(own_niced):
    c = _bench_common()
    tck = os.sysconf("SC_CLK_TCK")
    before = c.CpuSnapshot(user=1000, nice=500, system=200, idle=5000, iowait=0, irq=0, softirq=0, steal=10,
                           own_seconds=3.0, own_niced=own_niced)
    # 10 s of 2 CPUs = 20 * tck ticks: this process 8 s (user), others 1 s user + 1 s system at normal priority,
    # 4 s niced, 0.5 s stolen, the rest idle
    own = 8 * tck
    after = c.CpuSnapshot(user=1000 + (0 if own_niced else own) + tck, nice=500 + 4 * tck + (own if own_niced else 0),
                          system=200 + tck, idle=5000 + int(5.5 * tck), iowait=0, irq=0, softirq=0,
                          steal=10 + tck // 2, own_seconds=11.0, own_niced=own_niced)
    w = c.other_work(before, after)
    assert w.normal == pytest.approx(100 * 2 / 20)
    assert w.niced == pytest.approx(100 * 4 / 20)
    assert w.steal == pytest.approx(100 * (tck // 2) / (20 * tck))
    assert c.other_work(after, before) is None and c.other_work(None, after) is None


# ---------------------------------------------------------------- dense and gathered distances --
def ref_gather(q: np.ndarray, g: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """out[i, t] = differing bits of q_i and g[cand[i, t]]; padding (< 0) -> L + 1, L = 8 * bytes."""
    out = np.empty(cand.shape, dtype=np.int64)
    for i in range(cand.shape[0]):
        for t in range(cand.shape[1]):
            j = int(cand[i, t])
            out[i, t] = 8 * q.shape[1] + 1 if j < 0 else int(POPCOUNT8[q[i] ^ g[j]].sum())
    return out


def padded_candidates(rng: np.random.Generator, nq: int, c: int, ng: int) -> np.ndarray:
    cand = rng.integers(0, ng, size=(nq, c)).astype(np.int32)
    cand[rng.random((nq, c)) < 0.25] = -1
    cand[0, : min(c, 3)] = [-5, -(2**31), ng - 1][: min(c, 3)]
    return cand


# odd sizes: remainders of the 8-row vector groups and of the query groups
DIST_WIDTHS_BITS = [8, 24, 40, 56, 64, 72, 128, 200, 256, 264, 512, 768, 1024, 1280, 2048, 2560]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", DIST_WIDTHS_BITS)
def test_dense_distance_matches_reference(isa, bits):
    rng = np.random.default_rng(1000 + bits)
    q = random_codes(rng, 7, bits // 8)
    g = random_codes(rng, 141, bits // 8)
    g[::9] = q[rng.integers(0, 7, size=g[::9].shape[0])]  # some exact matches (distance 0)
    want = ref_distances(q, g)
    got = native.hamming_distance_numpy(q, g, isa=isa)
    assert got.dtype == np.int32 and got.shape == (7, 141)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(native.hamming_distance(q, g, isa=isa)), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", DIST_WIDTHS_BITS)
def test_gather_distance_matches_reference(isa, bits):
    rng = np.random.default_rng(2000 + bits)
    q = random_codes(rng, 6, bits // 8)
    g = tied_codes(rng, q, 90)
    cand = padded_candidates(rng, 6, 37, 90)
    want = ref_gather(q, g, cand)
    got = native.hamming_distance_gather_numpy(q, g, cand, isa=isa)
    assert got.dtype == np.int32 and got.shape == (6, 37)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(native.hamming_distance_gather(q, g, cand, isa=isa)), want)
    assert (got == 8 * (bits // 8) + 1).any() and (got == 0).any()  # padding and ties really occur


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_distance_threading_splits(threads):
    """Large enough to run threaded: gallery chunks, several query blocks, split candidate lists."""
    rng = np.random.default_rng(13)
    q = random_codes(rng, 70, 32)
    g = random_codes(rng, 3001, 32)
    np.testing.assert_array_equal(native.hamming_distance_numpy(q, g, num_threads=threads),
                                  ref_distances(q, g))
    q1 = random_codes(rng, 2, 32)
    cand = padded_candidates(rng, 2, 20000, 3001)  # > one work item per query
    np.testing.assert_array_equal(native.hamming_distance_gather_numpy(q1, g, cand, num_threads=threads),
                                  ref_gather(q1, g, cand))
    q2 = random_codes(rng, 300, 32)
    cand = padded_candidates(rng, 300, 40, 3001)  # many queries per work item
    np.testing.assert_array_equal(native.hamming_distance_gather_numpy(q2, g, cand, num_threads=threads),
                                  ref_gather(q2, g, cand))


def test_distance_kernels_inside_jit_and_vmap():
    rng = np.random.default_rng(17)
    q = random_codes(rng, 5, 20)
    g = tied_codes(rng, q, 40)
    cand = padded_candidates(rng, 5, 11, 40)
    want_d, want_g = ref_distances(q, g), ref_gather(q, g, cand)

    @jax.jit
    def f(a, b, c):
        return native.hamming_distance(a, b) + 0, native.hamming_distance_gather(a, b, c) * 1

    d, dg = f(jnp.asarray(q), jnp.asarray(g), jnp.asarray(cand))
    assert d.dtype == jnp.int32 and dg.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(d), want_d)
    np.testing.assert_array_equal(np.asarray(dg), want_g)
    # traced out-of-range indices cannot be checked: they give the padding sentinel
    bad = cand.copy()
    bad[1, 2] = 40
    np.testing.assert_array_equal(np.asarray(f(q, g, bad)[1])[1, 2], 8 * 20 + 1)
    # vmap over query sets (sequential loop over the custom call)
    db = jax.vmap(lambda a, c: native.hamming_distance_gather(a, g, c))(np.stack([q, q]), np.stack([cand, cand]))
    np.testing.assert_array_equal(np.asarray(db[1]), want_g)


def test_distance_empty_shapes():
    g = np.zeros((5, 4), np.uint8)
    assert native.hamming_distance_numpy(np.zeros((0, 4), np.uint8), g).shape == (0, 5)
    assert native.hamming_distance(g, np.zeros((0, 4), np.uint8)).shape == (5, 0)
    assert native.hamming_distance_gather_numpy(g, g, np.zeros((5, 0), np.int32)).shape == (5, 0)
    assert native.hamming_distance_gather(g[:0], g, np.zeros((0, 3), np.int64)).shape == (0, 3)
    assert native.padding_distance(4) == 33


@pytest.mark.parametrize(
    "cand, match",
    [
        (np.array([[0, 5]]), r"candidates: gallery index 5 out of range; expected indices < ng=5"),
        (np.array([[0, 1, 2]]).astype(np.float32), r"candidates: expected an integer dtype"),
        (np.array([0, 1]), r"candidates: expected gallery indices of rank 2"),
        (np.zeros((2, 3), np.int32), r"candidates: expected one row per query \(1 rows\)"),
        (np.array([[-(2**40), 0]]), r"candidates: index .* does not fit int32"),
    ],
)
def test_gather_bad_candidates(cand, match):
    q, g = np.zeros((1, 4), np.uint8), np.zeros((5, 4), np.uint8)
    with pytest.raises(ValueError, match=match):
        native.hamming_distance_gather(q, g, cand)
    with pytest.raises(ValueError, match=match):
        native.hamming_distance_gather_numpy(q, g, cand)


def test_distance_bad_codes_and_options():
    q = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match="g: code length mismatch"):
        native.hamming_distance(q, np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="q: expected dtype uint8"):
        native.hamming_distance_numpy(q.astype(np.int8), q)
    with pytest.raises(ValueError, match="g: expected packed codes of rank 2"):
        native.hamming_distance_gather(q, q[0], np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="isa"):
        native.hamming_distance(q, q, isa="neon")
    with pytest.raises(ValueError, match="num_threads"):
        native.hamming_distance_gather_numpy(q, q, np.zeros((2, 1), np.int32), num_threads=-1)


def test_info_reports_distance_kernels():
    assert set(native.info()["distance_kernels"]) == {64, 128, 256, 512, 1024, 2048}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(0, 9), st.integers(1, 40), st.integers(0, 20),
       st.sampled_from(ISAS), st.integers(0, 2**31 - 1))
def test_distance_kernels_property(nbytes, nq, ng, c, isa, seed):
    """Any width / shape / ISA: dense equals the reference, gather equals the dense entries (or L + 1)."""
    rng = np.random.default_rng(seed)
    q, g = random_codes(rng, nq, nbytes), random_codes(rng, ng, nbytes)
    if nq and seed % 2:
        g[rng.integers(0, ng)] = q[0]
    cand = rng.integers(-3, ng, (nq, c)).astype(np.int32)
    want = ref_distances(q, g)
    d = native.hamming_distance_numpy(q, g, isa=isa)
    np.testing.assert_array_equal(d, want)
    dg = native.hamming_distance_gather_numpy(q, g, cand, isa=isa)
    np.testing.assert_array_equal(
        dg, np.where(cand < 0, 8 * nbytes + 1, np.take_along_axis(want, np.maximum(cand, 0), 1)))


def test_kernel_for_names_each_width():
    """kernel_for gives the kernel of the default ISA (as info()) or of a forced one; bad widths raise."""
    assert native.kernel_for(32) == native.info()["kernels"][256]
    assert native.kernel_for(32, "baseline") == "scalar-fixed"
    assert native.kernel_for(13, "baseline") == "scalar-runtime"
    if "avx2" in ISAS:
        assert native.kernel_for(64, "avx2") == "avx2-mula"
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="width_bytes"):
            native.kernel_for(bad)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("ng", [7, 8, 61, 1003])
def test_query_groups_and_row_remainders(isa, nq, ng):
    """Kernels that scan several queries over 8 rows at a time (128 and 256 bits): remainder queries and
    remainder rows, with exact matches and ties."""
    rng = np.random.default_rng(nq * 10_000 + ng)
    for nbytes in (8, 16, 32):
        q = random_codes(rng, nq, nbytes)
        g = random_codes(rng, ng, nbytes)
        g[::3] = q[rng.integers(0, nq, g[::3].shape[0])]
        g[1::5, -1] ^= 1
        check(q, g, min(ng, 9), isa=isa)
