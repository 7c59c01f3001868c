"""to_faiss: the exported index returns the same exact distances as hamming_topk."""

import sys

import numpy as np
import pytest

from jhash.search import hamming_topk, to_faiss


def test_faiss_distances_equal_hamming_topk():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    q, g = rng.integers(0, 256, (7, 8), dtype=np.uint8), rng.integers(0, 256, (3000, 8), dtype=np.uint8)
    index = to_faiss(g)
    assert isinstance(index, faiss.IndexBinaryFlat) and index.ntotal == 3000 and index.d == 64
    fd, fi = index.search(q, 20)
    d, i = hamming_topk(q, g, 20, backend="xla")
    np.testing.assert_array_equal(fd, np.asarray(d))
    # faiss's own indices point at codes with the distances it reports
    true = np.unpackbits(q[:, None, :] ^ g[fi], axis=-1).sum(-1)
    np.testing.assert_array_equal(true, fd)


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install 'jhash\[faiss\]'"):
        to_faiss(np.zeros((2, 4), np.uint8))


def test_bad_gallery():
    with pytest.raises(ValueError, match=r"packed_gallery is empty"):
        to_faiss(np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match=r"packed_gallery must have dtype uint8"):
        to_faiss(np.zeros((3, 4), np.int64))
