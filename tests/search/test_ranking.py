"""hamming_rank / counting_argsort against np.argsort(kind="stable") of reference distances."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.search import counting_argsort, hamming_rank


def ref_distance(q, g):
    """Differing bits, counted bit by bit from the unpacked codes."""
    qb, gb = np.unpackbits(q, axis=1), np.unpackbits(g, axis=1)
    return np.array([[int(np.sum(a != b)) for b in gb] for a in qb])


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from([(3, 200, 2, None), (4, 57, 1, 3), (2, 300, 4, 1)]),
       n_distinct=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_rank_equals_stable_argsort(shape, n_distinct, seed):
    nq, ng, nbytes, qblock = shape
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (n_distinct, nbytes), dtype=np.uint8)  # few codes -> heavy ties
    q, g = pool[rng.integers(0, n_distinct, nq)], pool[rng.integers(0, n_distinct, ng)]
    want = np.argsort(ref_distance(q, g), axis=1, kind="stable")
    got = hamming_rank(q, g, query_block_size=qblock)
    assert got.dtype == np.int32 and got.shape == (nq, ng)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_rank_long_codes_and_single_item():
    rng = np.random.default_rng(0)
    q, g = rng.integers(0, 256, (3, 32), dtype=np.uint8), rng.integers(0, 256, (500, 32), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(hamming_rank(q, g)),
                                  np.argsort(ref_distance(q, g), axis=1, kind="stable"))
    np.testing.assert_array_equal(np.asarray(hamming_rank(q, g[:1])), np.zeros((3, 1)))


def test_counting_argsort_on_arbitrary_integers():
    d = np.random.default_rng(1).integers(0, 13, (4, 1001)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(counting_argsort(d, n_values=13)),
                                  np.argsort(d, axis=1, kind="stable"))


def test_rank_errors():
    q, g = np.zeros((2, 4), np.uint8), np.zeros((5, 4), np.uint8)
    with pytest.raises(ValueError, match=r"code lengths differ"):
        hamming_rank(q, np.zeros((5, 8), np.uint8))
    with pytest.raises(ValueError, match=r"g is empty"):
        hamming_rank(q, g[:0])
    with pytest.raises(ValueError, match=r"q must have dtype uint8"):
        hamming_rank(q.astype(np.float32), g)
    with pytest.raises(ValueError, match=r"query_block_size"):
        hamming_rank(q, g, query_block_size=0)
