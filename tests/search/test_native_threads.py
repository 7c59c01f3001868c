"""Exactness of the multi-threaded top-k. With few queries per thread the gallery is split into chunks scanned
by different threads, which exchange their selection thresholds while they scan, and the per-chunk results are
merged; with >= 8 queries per thread the queries are split into superblocks, each scanning the whole gallery.

Whatever the thread timing, the result must be the exact first k of a stable sort of the distances. The
reference here is written from the definition (per-byte popcount table, ``np.lexsort`` by (distance, index)).
Gallery-split tests use >= 8192 rows, so that 2 or more threads get several chunks (chunks have at least 4096
rows). The split can also be forced (``split=`` / ``items_per_thread=``, the benchmark's knobs): every setting must
give the same exact result.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jhash.search import native

if not native.is_available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}", allow_module_level=True)

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
ISAS = native.available_isas()


def ref_topk(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k of the stable sort of popcount(q_i XOR g_j) over j, per query."""
    dist = np.empty((q.shape[0], k), np.int64)
    idx = np.empty((q.shape[0], k), np.int64)
    for i in range(q.shape[0]):
        d = POPCOUNT8[np.bitwise_xor(q[i][None, :], g)].sum(axis=1)
        order = np.lexsort((np.arange(g.shape[0]), d))[:k]
        dist[i], idx[i] = d[order], order
    return dist, idx


def check(q, g, k, **kw):
    want_d, want_i = ref_topk(q, g, k)
    got_d, got_i = native.hamming_topk_numpy(q, g, k, **kw)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)


def patterned_gallery(rng: np.random.Generator, patterns: int, ng: int, nbytes: int,
                      noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(patterns [patterns, nbytes], gallery [ng, nbytes]): rows drawn from a few random patterns, each byte
    replaced by a random different byte with probability `noise` (many exact ties)."""
    base = rng.integers(0, 256, (patterns, nbytes), dtype=np.uint8)
    g = base[rng.integers(0, patterns, ng)]
    flip = rng.random((ng, nbytes)) < noise
    return base, g ^ (flip * rng.integers(1, 256, (ng, nbytes))).astype(np.uint8)


def at_distance(q_row: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Gallery rows at Hamming distance d[j] from q_row (the first d[j] bits flipped)."""
    bits = np.unpackbits(q_row)
    flips = np.arange(bits.size)[None, :] < d[:, None]
    return np.packbits(bits[None, :] ^ flips, axis=1)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("order", ["decreasing", "increasing", "zigzag"])
def test_chunks_with_drifting_distances(isa, threads, order):
    """Distances that fall (each chunk beats the bound the earlier ones published), rise (later chunks
    receive a low bound early, with keys above it still buffered) or alternate between chunks; with many
    ties at every distance."""
    rng = np.random.default_rng(3)
    nbytes, ng = 32, 30000
    q = rng.integers(0, 256, (3, nbytes), dtype=np.uint8)
    pos = np.arange(ng)
    d = {"decreasing": 200 - pos * 150 // ng, "increasing": 50 + pos * 150 // ng,
         "zigzag": np.where((pos // 4096) % 2 == 0, 60, 40) + pos % 7}[order]
    g = at_distance(q[0], d)
    check(q, g, 1, num_threads=threads, isa=isa)
    check(q, g, 100, num_threads=threads, isa=isa)
    check(q, g, 700, num_threads=threads, isa=isa)


@settings(max_examples=20, deadline=None)
@given(
    nbytes=st.sampled_from([1, 3, 8, 16, 32, 64, 256]),
    ng=st.integers(8192, 24000),
    nq=st.integers(1, 9),
    k=st.integers(1, 400),
    patterns=st.integers(1, 40),
    threads=st.integers(2, 5),
    isa=st.sampled_from(ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_threaded_topk_property(nbytes, ng, nq, k, patterns, threads, isa, seed):
    """Galleries drawn from a few patterns with random bit noise: heavy ties across chunks."""
    rng = np.random.default_rng(seed)
    base, g = patterned_gallery(rng, patterns, ng, nbytes, 0.02)
    q = np.concatenate([base[:1], rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)])
    check(q, g, k, num_threads=threads, isa=isa)


@settings(max_examples=25, deadline=None)
@given(
    nbytes=st.sampled_from([1, 8, 16, 24, 32, 64, 128]),
    ng=st.integers(100, 3000),
    nq=st.integers(16, 70),
    k=st.integers(1, 100),
    patterns=st.integers(1, 30),
    threads=st.integers(2, 5),
    isa=st.sampled_from(ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_query_split_property(nbytes, ng, nq, k, patterns, threads, isa, seed):
    """Batches of >= 8 queries per thread are split by queries (superblocks of every size, so that the kernels'
    query groups leave every remainder), each scanning the whole gallery; heavy ties."""
    rng = np.random.default_rng(seed)
    k = min(k, ng)
    base, g = patterned_gallery(rng, patterns, ng, nbytes, 0.05)
    q = np.concatenate([base[: min(patterns, nq // 2)], rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)])[:nq]
    check(q, g, k, num_threads=threads, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nbytes", [16, 32, 64])
def test_every_thread_count_gives_the_one_thread_result(isa, nbytes):
    """From the gallery-split range (few queries per thread) to the query-split range, the same rows."""
    rng = np.random.default_rng(nbytes)
    q = rng.integers(0, 256, (53, nbytes), dtype=np.uint8)
    g = rng.integers(0, 256, (20000, nbytes), dtype=np.uint8)
    g[::7] = g[3]  # a tied block across the whole gallery
    want_d, want_i = ref_topk(q, g, 50)
    for threads in (1, 2, 3, 6, 7, 8):
        got_d, got_i = native.hamming_topk_numpy(q, g, 50, num_threads=threads, isa=isa)
        np.testing.assert_array_equal(got_d, want_d, err_msg=f"{threads} threads")
        np.testing.assert_array_equal(got_i, want_i, err_msg=f"{threads} threads")


def tied_batch(rng: np.random.Generator, nq: int, ng: int, nbytes: int, patterns: int) -> tuple[np.ndarray, np.ndarray]:
    """(q [nq, nbytes], g [ng, nbytes]): a patterned gallery (heavy ties) and queries, some equal to its patterns."""
    base, g = patterned_gallery(rng, patterns, ng, nbytes, 0.03)
    q = np.concatenate([base[: min(patterns, nq // 2)], rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)])[:nq]
    return q, g


@settings(max_examples=40, deadline=None)
@given(
    nbytes=st.sampled_from([1, 8, 16, 32, 64, 96]),
    ng=st.one_of(st.integers(100, 3000), st.integers(8192, 16384)),
    nq=st.integers(1, 40),
    k=st.integers(1, 150),
    patterns=st.integers(1, 30),
    threads=st.integers(1, 3),
    split=st.sampled_from([None, "queries", "gallery"]),
    items=st.one_of(st.none(), st.integers(1, 4)),
    isa=st.sampled_from(ISAS),
    seed=st.integers(0, 2**32 - 1),
)
# the gallery in 4 chunks on 1 thread and in 4 (of 4 x 2 asked, chunks >= 4096 rows) on 2; 3 x 3 query superblocks
# of 4-5 queries; few queries (below 8 per thread) split by queries
@example(nbytes=32, ng=16384, nq=5, k=100, patterns=4, threads=1, split="gallery", items=4, isa=ISAS[-1], seed=1)
@example(nbytes=16, ng=16384, nq=20, k=150, patterns=3, threads=2, split="gallery", items=4, isa=ISAS[-1], seed=2)
@example(nbytes=64, ng=3000, nq=40, k=50, patterns=5, threads=3, split="queries", items=3, isa=ISAS[-1], seed=3)
@example(nbytes=8, ng=2000, nq=7, k=20, patterns=2, threads=3, split="queries", items=2, isa=ISAS[-1], seed=4)
def test_every_split_gives_the_exact_topk(nbytes, ng, nq, k, patterns, threads, split, items, isa, seed):
    """1-3 threads, the automatic rule or a forced split of the queries or of the gallery, 1-4 items per thread,
    batches below and above 8 queries per thread: always the first k of the stable sort, ties by index."""
    rng = np.random.default_rng(seed)
    k = min(k, ng)
    q, g = tied_batch(rng, nq, ng, nbytes, patterns)
    check(q, g, k, num_threads=threads, isa=isa, split=split, items_per_thread=items)


def test_forced_split_inside_jit_gives_the_exact_topk():
    """The JAX entry point (XLA FFI custom call) passes the split through."""
    import jax

    rng = np.random.default_rng(7)
    q, g = tied_batch(rng, 24, 12000, 32, 6)
    want_d, want_i = ref_topk(q, g, 60)
    for split, items in (("gallery", 3), ("queries", 4), (None, 1)):
        f = jax.jit(lambda a, b, s=split, n=items: native.hamming_topk(a, b, 60, num_threads=2, split=s,
                                                                       items_per_thread=n))
        d, i = f(q, g)
        np.testing.assert_array_equal(np.asarray(d), want_d, err_msg=f"{split}:{items}")
        np.testing.assert_array_equal(np.asarray(i), want_i, err_msg=f"{split}:{items}")


@pytest.mark.parametrize("kw, match", [
    (dict(split="rows"), r"split: expected 'queries', 'gallery' or None"),
    (dict(split="Queries"), r"split: expected 'queries', 'gallery' or None"),
    (dict(split=1), r"split: expected 'queries', 'gallery' or None"),
    (dict(split=["queries"]), r"split: expected 'queries', 'gallery' or None"),
    (dict(items_per_thread=0), r"items_per_thread: expected a positive int or None, got 0"),
    (dict(items_per_thread=-2), r"items_per_thread: expected a positive int or None, got -2"),
    (dict(items_per_thread=True), r"items_per_thread: expected a positive int or None, got True"),
    (dict(items_per_thread=2.0), r"items_per_thread: expected a positive int or None, got 2.0"),
])
@pytest.mark.parametrize("entry", ["hamming_topk", "hamming_topk_numpy"])
def test_bad_split_arguments_raise_naming_the_argument(entry, kw, match):
    q = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValueError, match=match):
        getattr(native, entry)(q, q, 1, **kw)
