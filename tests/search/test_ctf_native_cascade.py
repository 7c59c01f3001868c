"""The native CtF cascade on galleries longer than its stage-0 scan tile, against the definition written in plain
numpy; the index's huge-page copies; the stage-cost measurement of the recall fit."""

import mmap

import numpy as np
import pytest

from jhash.search import coarse_to_fine as C
from jhash.search import native

needs_native = pytest.mark.skipif(not native.is_available(), reason="native kernel not built")


def _levels(rng, n, widths, centers):
    """Packed levels of correlated images: every level a noisy copy of one of the centres' codes."""
    pick = rng.integers(0, len(centers[0]), n)
    out = []
    for w, c in zip(widths, centers):
        flip = rng.random((n, 8 * w)) < 0.2
        out.append(np.packbits(np.where(flip, 1 - c[pick], c[pick]).astype(np.uint8), axis=1))
    return out


def _definition_topk(q, g, t, k):
    """Per query: C_0 = the gallery, C_{s+1} = {j in C_s : d_s(j) <= t_s}; key(j) = offset[s(j)] + d_{s(j)}(j)
    with s(j) the last stage whose set holds j, offset[N-1] = 0, offset[s] = offset[s+1] + l_{s+1} + 1; the top-k
    is the k smallest (key, j). Also |C_1|, ..., |C_{N-1}|."""
    n = len(g)
    bits = [8 * a.shape[1] for a in g]
    offset = [0] * n
    for s in range(n - 2, -1, -1):
        offset[s] = offset[s + 1] + bits[s + 1] + 1
    keys_out, idx_out, counts_out = [], [], []
    for i in range(q[0].shape[0]):
        d = [np.bitwise_count(np.bitwise_xor(g[s], q[s][i])).sum(axis=1, dtype=np.int64) for s in range(n)]
        key = offset[0] + d[0]
        alive = np.ones(g[0].shape[0], bool)
        counts = []
        for s in range(n - 1):
            alive &= d[s] <= t[s]
            counts.append(int(alive.sum()))
            key = np.where(alive, offset[s + 1] + d[s + 1], key)
        order = np.lexsort((np.arange(key.shape[0]), key))[:k]
        keys_out.append(key[order])
        idx_out.append(order)
        counts_out.append(counts + [counts[-1]])
    return np.array(keys_out), np.array(idx_out), np.array(counts_out)


@needs_native
@pytest.mark.parametrize("widths,t", [
    ((16, 64, 256), (52, 250)),  # hundreds of survivors of the last stage: the top-k among them
    ((16, 64, 256), (50, 140)),  # 0 to 36 survivors, hundreds of stage-0 candidates: every key competes
    ((16, 64, 256), (30, 300)),  # 0 to 95 stage-0 candidates: the rest from level 0 (d_0 > t_0)
    ((4, 16, 64), (9, 60)),      # 32-bit level 0
    ((16, 256), (128,)),         # every item a candidate: the scan's buffer holds a whole tile
])
def test_native_topk_matches_the_definition_across_scan_tiles(widths, t):
    """40,003 codes: more than two stage-0 scan tiles of 16-byte codes (16,384 rows each), not a multiple of the
    scan kernels' 8 rows; 11 queries (a block of 8 and a partial one)."""
    rng = np.random.default_rng(sum(t))
    centers = [rng.integers(0, 2, (64, 8 * w)) for w in widths]
    g = _levels(rng, 40_003, widths, centers)
    q = _levels(rng, 11, widths, centers)
    q[0][3] = g[0][40_002]  # an exact match in the gallery's last, partial group of rows
    keys, idx, counts = _definition_topk(q, g, t, 10)
    got = C.coarse_to_fine_topk(q, C.CoarseToFineIndex.build(g), t, 10, backend="native")
    np.testing.assert_array_equal(got.indices, idx)
    np.testing.assert_array_equal(got.keys, keys)
    np.testing.assert_array_equal(got.num_candidates, counts)
    for isa in native.available_isas():  # every instruction set's scan and gather kernels
        k_isa, i_isa, _, c_isa = native.coarse_to_fine_numpy(q, g, t, 10, isa=isa)
        np.testing.assert_array_equal(i_isa, idx, err_msg=isa)
        np.testing.assert_array_equal(k_isa, keys, err_msg=isa)
        np.testing.assert_array_equal(c_isa, counts, err_msg=isa)


def test_huge_page_copy_keeps_the_values():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (9_000, 256), dtype=np.uint8)  # 2.2 MiB
    copy = C.huge_page_copy(big)
    np.testing.assert_array_equal(copy, big)
    assert copy.shape == big.shape and copy.dtype == np.uint8 and not copy.flags.writeable
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert copy.ctypes.data % (2 << 20) == 0 and copy.base is not None
    small = big[:100]
    assert C.huge_page_copy(small) is small  # less than one huge page: used as it is
    index = C.CoarseToFineIndex.build([big[:, :64], big])
    np.testing.assert_array_equal(index.packed[1], big)
    assert index.packed[0].flags.c_contiguous


@needs_native
def test_measure_stage_costs_per_level():
    rng = np.random.default_rng(1)
    g = [rng.integers(0, 256, (3_000, w), dtype=np.uint8) for w in (4, 16, 64)]
    costs = C.measure_stage_costs(C.CoarseToFineIndex.build(g), num_queries=4, num_candidates=500, repeats=1)
    assert len(costs) == 3
    for scan, fetch in costs:
        assert np.isfinite(scan) and np.isfinite(fetch) and scan > 0 and fetch > 0
    with pytest.raises(ValueError, match="num_candidates: expected a positive integer"):
        C.measure_stage_costs(g, num_candidates=0)


def test_measure_stage_costs_without_the_native_kernel(monkeypatch):
    monkeypatch.setattr(native, "is_available", lambda: False)
    assert C.measure_stage_costs([np.zeros((20, 4), np.uint8), np.zeros((20, 8), np.uint8)]) is None
