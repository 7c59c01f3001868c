"""Hashing metrics against numpy loops written from their definitions."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jhash.metrics.reid as reid_module
from jhash.metrics import map_at_k, precision_at_k, precision_at_radius, precision_recall_curve

from . import np_hamming, radius_reference, random_codes, topk_map_reference


@pytest.fixture(autouse=True)
def _numpy_distance(request, monkeypatch):
    """Random shapes would each compile jhash.search's jitted distance: use the numpy reference distance,
    except in tests named ``*jhash_search*``."""
    if "jhash_search" not in request.node.name:
        monkeypatch.setattr(reid_module, "_hamming_distance", np_hamming)


def _case(seed, nq=13, ng=90, bits=16, classes=4, multi=False):
    rng = np.random.default_rng(seed)
    q, g = random_codes(rng, nq, bits), random_codes(rng, ng, bits)
    if multi:
        ql = rng.random((nq, classes)) < 0.3
        gl = (rng.random((ng, classes)) < 0.3).astype(np.int32)
        rel = (ql.astype(int) @ gl.T) > 0
    else:
        ql, gl = rng.integers(0, classes, nq), rng.integers(0, classes, ng)
        rel = ql[:, None] == gl[None, :]
    return q, g, ql, gl, rel


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("bits", [8, 32])
@pytest.mark.parametrize("k", [1, 7, 50, 90, 1000])
def test_map_at_k(multi, bits, k):
    q, g, ql, gl, rel = _case(k + bits, bits=bits, multi=multi)
    ref = topk_map_reference(np_hamming(q, g), rel, k)
    assert map_at_k(q, g, ql, gl, k=k, block_size=4) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("k", [1, 10, 90])
def test_precision_at_k(multi, k):
    q, g, ql, gl, rel = _case(k, bits=8, multi=multi)  # 8 bits: heavy ties, stable order matters
    d = np_hamming(q, g)
    ref = np.mean([rel[i][np.argsort(d[i], kind="stable")][:k].sum() / k for i in range(len(q))])
    assert precision_at_k(q, g, ql, gl, k=k, block_size=5) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("empty", ["zero", "skip"])
@pytest.mark.parametrize("radius", [0, 2, 5, 16, 40])
def test_precision_at_radius(empty, radius):
    q, g, ql, gl, rel = _case(radius, ng=60, bits=16)
    ref = radius_reference(np_hamming(q, g), rel, radius, empty)
    got = precision_at_radius(q, g, ql, gl, radius=radius, empty=empty, block_size=3)
    if np.isnan(ref):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(ref, abs=1e-12)


def test_precision_at_radius_conventions_differ_on_empty_balls():
    q = np.array([[0b00000000], [0b11111111]], np.uint8)
    g = np.array([[0b00000001], [0b00000011]], np.uint8)
    # query 0: both items within radius 2, one relevant; query 1: nothing within radius 2
    ql, gl = np.array([1, 1]), np.array([1, 2])
    assert precision_at_radius(q, g, ql, gl, radius=2, empty="zero") == pytest.approx(0.25)
    assert precision_at_radius(q, g, ql, gl, radius=2, empty="skip") == pytest.approx(0.5)
    assert np.isnan(precision_at_radius(q[1:], g, ql[1:], gl, radius=2, empty="skip"))
    assert precision_at_radius(q[1:], g, ql[1:], gl, radius=2, empty="zero") == 0.0


@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_precision_recall_curve(empty):
    q, g, ql, gl, rel = _case(3, ng=50, bits=8, classes=6)
    ql[0] = 99  # a query without any relevant item: no recall
    rel[0] = False
    d = np_hamming(q, g)
    curve = precision_recall_curve(q, g, ql, gl, empty=empty, block_size=4)
    assert np.array_equal(curve.radii, np.arange(9))
    for r in range(9):
        ref_p = radius_reference(d, rel, r, empty)
        if np.isnan(ref_p):
            assert np.isnan(curve.precision[r])
        else:
            assert curve.precision[r] == pytest.approx(ref_p, abs=1e-12)
        has = rel.sum(1) > 0
        ref_r = np.mean([(rel[i] & (d[i] <= r)).sum() / rel[i].sum() for i in np.flatnonzero(has)])
        assert curve.recall[r] == pytest.approx(ref_r, abs=1e-12)
    assert curve.recall[-1] == pytest.approx(1.0)
    assert np.all(np.diff(curve.recall) >= -1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 40), block=st.integers(1, 9))
def test_property_block_size_and_bounds(seed, k, block):
    q, g, ql, gl, rel = _case(seed, nq=7, ng=40, bits=8)
    m = map_at_k(q, g, ql, gl, k=k, block_size=block)
    assert m == pytest.approx(map_at_k(q, g, ql, gl, k=k), abs=1e-12)
    assert 0.0 <= m <= 1.0
    p = precision_at_k(q, g, ql, gl, k=k, block_size=block)
    assert 0.0 <= p <= 1.0
    # precision@ng is the overall fraction of relevant items
    assert precision_at_k(q, g, ql, gl, k=40) == pytest.approx(rel.mean(), abs=1e-12)


def test_bad_input():
    q, g, ql, gl, _ = _case(0)
    with pytest.raises(ValueError, match="q_labels"):
        map_at_k(q, g, ql[:-1], gl)
    with pytest.raises(ValueError, match="g_labels"):
        map_at_k(q, g, ql, gl.astype(np.float32))
    with pytest.raises(ValueError, match="same layout"):
        map_at_k(q, g, ql, np.zeros((len(g), 3), int))
    with pytest.raises(ValueError, match="k"):
        map_at_k(q, g, ql, gl, k=0)
    with pytest.raises(ValueError, match="k must be <="):
        precision_at_k(q, g, ql, gl, k=len(g) + 1)
    with pytest.raises(ValueError, match="radius"):
        precision_at_radius(q, g, ql, gl, radius=-1)
    with pytest.raises(ValueError, match="empty"):
        precision_at_radius(q, g, ql, gl, empty="nan")
    with pytest.raises(ValueError, match="empty"):
        precision_recall_curve(q, g, ql, gl, empty="drop")
    with pytest.raises(ValueError, match="g_codes"):
        precision_at_k(q, g[:, :1], ql, gl)
    with pytest.raises(ValueError, match="q_codes"):
        precision_at_k(q.astype(np.int8), g, ql, gl)


def test_jhash_search_distance_in_stream():
    # the real jhash.search.hamming_distance inside the stream (one fixed shape)
    q, g, ql, gl, rel = _case(9, nq=10, ng=70, bits=32)
    d = np_hamming(q, g)
    assert map_at_k(q, g, ql, gl, k=20, block_size=5) == pytest.approx(topk_map_reference(d, rel, 20), abs=1e-9)
    assert precision_at_radius(q, g, ql, gl, radius=12, block_size=5) == pytest.approx(
        radius_reference(d, rel, 12, "zero"), abs=1e-12
    )
