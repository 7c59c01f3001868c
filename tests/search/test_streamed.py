"""LazyRows and the streamed key matrices of CtF, AFR and weighted Hamming search: same values as the dense
matrices, and the ReID metrics read them block by block (never all rows at once)."""

import numpy as np
import pytest

from jhash import search
from jhash.metrics import cuhk03_classic_eval, reid_metrics
from jhash.search import native
from jhash.search.streamed import LazyRows


class Recorder:
    """rows(start, stop) of a fixed matrix that records the largest block asked for."""

    def __init__(self, a):
        self.a, self.largest, self.calls = a, 0, 0

    def __call__(self, s, e):
        self.largest = max(self.largest, e - s)
        self.calls += 1
        return self.a[s:e]


def test_lazy_rows_reads_like_the_matrix():
    a = np.random.default_rng(0).integers(-50, 50, (23, 7)).astype(np.int16)
    rec = Recorder(a)
    m = LazyRows(a.shape, a.dtype, rec, block_rows=4)
    assert m.shape == (23, 7) and m.ndim == 2 and m.dtype == np.int16 and len(m) == 23 and m.size == 161
    np.testing.assert_array_equal(np.asarray(m), a)
    np.testing.assert_array_equal(m[5:17], a[5:17])
    np.testing.assert_array_equal(m[-3:], a[-3:])
    np.testing.assert_array_equal(m[3], a[3])
    np.testing.assert_array_equal(m[-1], a[-1])
    np.testing.assert_array_equal(m[np.array([22, 0, 9, 9, -2])], a[[22, 0, 9, 9, -2]])
    np.testing.assert_array_equal(m[np.arange(23) % 2 == 0], a[::2])
    np.testing.assert_array_equal(m[2:9, [1, 4]], a[2:9][:, [1, 4]])
    np.testing.assert_array_equal(m[np.ix_([1, 20], [0, 6])], a[np.ix_([1, 20], [0, 6])])
    assert rec.largest <= 4
    assert np.min(m) == a.min() and np.max(m) == a.max()
    calls = rec.calls
    assert np.max(m) == a.max() and rec.calls == calls  # cached
    with pytest.raises(IndexError, match="step 1"):
        m[::2]
    with pytest.raises(IndexError, match="out of range"):
        m[23]
    with pytest.raises(NotImplementedError, match="whole-matrix"):
        m.min(axis=0)
    bad = LazyRows((4, 3), np.float32, lambda s, e: np.zeros((e - s, 2)))
    with pytest.raises(ValueError, match=r"returned shape \(4, 2\), expected \(4, 3\)"):
        np.asarray(bad)
    with pytest.raises(ValueError, match="block_rows"):
        LazyRows((1, 1), np.float32, rec, block_rows=0)


def _labels(rng, nq, ng):
    return dict(q_pids=rng.integers(0, 6, nq), g_pids=rng.integers(-1, 6, ng), q_camids=rng.integers(0, 2, nq),
                g_camids=rng.integers(0, 2, ng))


def test_metrics_read_lazy_distances_in_blocks_and_match_dense():
    rng = np.random.default_rng(1)
    for dense in (rng.integers(0, 40, (30, 50)).astype(np.int16), rng.random((30, 50)).astype(np.float32)):
        rec = Recorder(dense)
        lazy = LazyRows(dense.shape, dense.dtype, rec, block_rows=8)
        ids = _labels(rng, 30, 50)
        got, want = reid_metrics(distances=lazy, block_size=7, **ids), reid_metrics(distances=dense, block_size=7, **ids)
        np.testing.assert_array_equal(got.cmc, want.cmc)
        assert got.mAP == want.mAP and got.mINP == want.mINP
        assert rec.largest <= 8
        cu = cuhk03_classic_eval(distances=LazyRows(dense.shape, dense.dtype, Recorder(dense), block_rows=8), **ids)
        np.testing.assert_array_equal(cu.cmc, cuhk03_classic_eval(distances=dense, **ids).cmc)


def _pyramid(rng, n, lengths=(16, 32, 64)):
    centers = rng.integers(0, 2, (5, lengths[-1]))
    full = np.where(rng.random((n, lengths[-1])) < 0.2, 1 - centers[rng.integers(0, 5, n)], centers[rng.integers(0, 5, n)])
    return [np.asarray(search.pack_codes(full[:, :L])) for L in lengths]


@pytest.mark.parametrize("backend", ["numpy", "jax"] + (["native"] if native.is_available() else []))
def test_coarse_to_fine_key_matrix_equals_dense_keys(backend):
    rng = np.random.default_rng(2)
    q, g = _pyramid(rng, 13), _pyramid(rng, 90)
    dense = search.coarse_to_fine_distances(q, g, (6, 12), backend=backend)
    lazy = search.coarse_to_fine_key_matrix(q, g, (6, 12), backend=backend, block_size=5)
    assert isinstance(lazy, LazyRows) and lazy.dtype == dense.dtype and lazy.shape == dense.shape
    np.testing.assert_array_equal(np.asarray(lazy), dense)
    np.testing.assert_array_equal(lazy[4:11], dense[4:11])


def test_attribute_first_key_matrix_equals_dense_keys():
    rng = np.random.default_rng(3)
    qa, ga = (np.asarray(search.pack_codes(rng.integers(0, 2, (n, 8)))) for n in (9, 70))
    qi, gi = (np.asarray(search.pack_codes(rng.integers(0, 2, (n, 32)))) for n in (9, 70))
    for metric, (q2, g2) in (("hamming", (qi, gi)), ("euclidean", (rng.normal(size=(9, 5)), rng.normal(size=(70, 5))))):
        lazy = search.attribute_first_key_matrix(qa, ga, q2, g2, 20, metric=metric, block_size=4)
        ad = np.unpackbits(qa[:, None, :] ^ ga[None, :, :], axis=-1).sum(-1)
        # reference from the definition: the w = 20 first items by (attribute distance, index) form the window
        win = np.zeros(ad.shape, bool)
        for i in range(9):
            win[i, np.argsort(ad[i], kind="stable")[:20]] = True
        if metric == "hamming":
            sd = np.unpackbits(qi[:, None, :] ^ gi[None, :, :], axis=-1).sum(-1)
            want = np.where(win, sd, 33 + ad)
        else:
            sd = np.sqrt(((q2[:, None, :] - g2[None, :, :]) ** 2).sum(-1))
            want = np.where(win, sd, sd.max(1, keepdims=True) + 1 + ad)
        np.testing.assert_allclose(np.asarray(lazy), want, rtol=1e-5)
        np.testing.assert_allclose(search.attribute_first_distances(qa, ga, q2, g2, 20, metric=metric), want, rtol=1e-5)
