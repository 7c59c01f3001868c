"""select_bits / top_weight_bits against references written from their definitions."""

import numpy as np
import pytest

from jhash.search import hamming_distance, pack_codes, select_bits, top_weight_bits


def bit(code_bytes, j):
    return (int(code_bytes[j // 8]) >> (7 - j % 8)) & 1


def test_select_bits_matches_bit_by_bit_reference():
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    idx = rng.permutation(32)[:16]
    got = np.asarray(select_bits(packed, idx, L=32))
    want_bits = np.array([[bit(row, j) for j in idx] for row in packed])
    np.testing.assert_array_equal(got, np.packbits(want_bits, axis=1))


def test_padding_keeps_distances_of_the_kept_bits():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, (6, 24))
    packed = pack_codes(bits)
    idx = np.array([20, 3, 7, 11, 0])  # 5 bits -> padded to 8
    sub = select_bits(packed, idx, pad=True)
    assert sub.shape == (6, 1)
    d = np.asarray(hamming_distance(sub, sub))
    want = np.array([[int(np.sum(a[idx] != b[idx])) for b in bits] for a in bits])
    np.testing.assert_array_equal(d, want)


def test_top_weight_bits_is_stable_and_prefix_consistent():
    w = np.array([0.5, -2.0, 1.0, 2.0, -0.5, 0.0, 1.0])
    # by |w| descending, ties by index: |-2|@1, |2|@3, 1@2, 1@6, 0.5@0, -0.5@4, 0@5
    want = sorted(range(len(w)), key=lambda j: (-abs(w[j]), j))
    np.testing.assert_array_equal(np.asarray(top_weight_bits(w, 7)), want)
    np.testing.assert_array_equal(np.asarray(top_weight_bits(w, 3)), want[:3])


def test_bit_scalable_pipeline():
    rng = np.random.default_rng(2)
    w = rng.normal(size=64)
    packed = pack_codes(rng.normal(size=(4, 64)))
    sub = select_bits(packed, top_weight_bits(w, 32))
    assert sub.shape == (4, 4) and sub.dtype == np.uint8


def test_bits_errors():
    packed = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"m=5 bits, not a multiple of 8"):
        select_bits(packed, np.arange(5))
    with pytest.raises(ValueError, match=r"duplicates"):
        select_bits(packed, np.array([0, 0, 1, 2, 3, 4, 5, 6]))
    with pytest.raises(ValueError, match=r"bit_indices must lie in \[0, 16\)"):
        select_bits(packed, np.arange(9, 17))
    with pytest.raises(ValueError, match=r"L=32 does not match"):
        select_bits(packed, np.arange(8), L=32)
    with pytest.raises(ValueError, match=r"bit_indices must be a rank-1 integer"):
        select_bits(packed, np.arange(8.0))
    with pytest.raises(ValueError, match=r"m must be an int with 1 <= m <= L=3"):
        top_weight_bits(np.ones(3), 4)
    with pytest.raises(ValueError, match=r"NaN"):
        top_weight_bits(np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match=r"weights must be rank 1"):
        top_weight_bits(np.ones((2, 2)), 1)
