"""reid_metrics against the Market-1501 protocol written out in numpy (tests/metrics/__init__.py)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jhash.metrics.reid as reid_module
from jhash.metrics import ReIDMetrics, reid_metrics
from jhash.search import hamming_distance, hamming_rank, pack_codes

from . import brute_force_expected, market_reference, np_hamming, random_codes


@pytest.fixture(autouse=True)
def _numpy_distance(request, monkeypatch):
    """The many random shapes below would each compile jhash.search's jitted distance; they run on the numpy
    reference distance instead. Tests named ``*jhash_search*`` use the real one (fixed shapes)."""
    if "jhash_search" not in request.node.name:
        monkeypatch.setattr(reid_module, "_hamming_distance", np_hamming)


def test_jhash_search_inputs_give_identical_results():
    # the three input forms as produced by jhash.search itself, with the real jitted distance in the stream
    q, g, qp, gp, qc, gc = _case(7, 64, nq=12, ng=150, npid=6)
    bits_q, bits_g = np.unpackbits(q, axis=1), np.unpackbits(g, axis=1)
    ref = market_reference(np_hamming(q, g), qp, gp, qc, gc, 20)
    kw = dict(q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=20)
    forms = [
        dict(q_codes=pack_codes(bits_q), g_codes=pack_codes(bits_g), block_size=5),
        dict(distances=hamming_distance(q, g)),
        dict(ranking=hamming_rank(q, g)),
    ]
    for inputs in forms:
        _assert_matches(reid_metrics(**inputs, **kw), ref)
    a = reid_metrics(q, g, **kw, ties="expected", block_size=5)
    b = reid_metrics(distances=np_hamming(q, g).astype(float), **kw, ties="expected")
    np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-9)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-9)


def _case(seed, bits=16, nq=None, ng=None, npid=None, ncam=3):
    rng = np.random.default_rng(seed)
    nq = nq or int(rng.integers(1, 15))
    ng = ng or int(rng.integers(1, 80))
    npid = npid or int(rng.integers(1, 8))
    q, g = random_codes(rng, nq, bits), random_codes(rng, ng, bits)
    # pids: -1 junk and 0 distractors included, queries mostly real identities
    q_pids = rng.integers(-1, npid, nq)
    g_pids = rng.integers(-1, npid, ng)
    return q, g, q_pids, g_pids, rng.integers(0, ncam, nq), rng.integers(0, ncam, ng)


def _all_forms(q, g):
    d = np_hamming(q, g)
    return {
        "codes": dict(q_codes=q, g_codes=g),
        "int_distances": dict(distances=d),
        "float_distances": dict(distances=d.astype(np.float32) / 7.0),
        "ranking": dict(ranking=np.argsort(d, axis=1, kind="stable")),
    }


def _assert_matches(res: ReIDMetrics, ref, atol=1e-6):
    cmc, m_ap, m_inp, nv, _ = ref
    assert res.num_valid_queries == nv
    if nv:
        np.testing.assert_allclose(res.cmc, cmc, atol=atol, rtol=0)
        assert res.mAP == pytest.approx(m_ap, abs=atol)
        assert res.mINP == pytest.approx(m_inp, abs=atol)
    else:
        assert np.isnan(res.mAP) and np.isnan(res.mINP) and np.isnan(res.cmc).all()


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("bits", [8, 64])
def test_all_input_forms_match_reference(seed, bits):
    q, g, qp, gp, qc, gc = _case(seed, bits)
    max_rank = int(np.random.default_rng(seed).integers(1, 30))
    ref = market_reference(np_hamming(q, g), qp, gp, qc, gc, max_rank)
    for name, inputs in _all_forms(q, g).items():
        res = reid_metrics(**inputs, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=max_rank, block_size=3)
        _assert_matches(res, ref)
        assert res.num_valid_queries + res.num_skipped_queries == len(qp), name
        assert res.cmc.shape == (max_rank,)


def test_hand_worked_example():
    # distances of one query to 8 gallery items; query pid 5 camera 0
    d = np.array([[1, 3, 0, 2, 2, 5, 4, 1]])
    g_pids = np.array([5, 5, -1, 0, 5, 7, 5, 5])
    g_cams = np.array([0, 1, 1, 2, 2, 1, 2, 1])
    # stable order: idx 2(d0, junk) 0(d1, same pid+cam: removed) 7(d1, match) 3(d2, distractor) 4(d2, match)
    #               1(d3, match) 6(d4, match) 5(d5, negative)
    # valid list: 7+ 3- 4+ 1+ 6+ 5-  -> matches at positions 0, 2, 3, 4
    res = reid_metrics(distances=d, q_pids=[5], g_pids=g_pids, q_camids=[0], g_camids=g_cams, max_rank=4)
    ap = (1 / 1 + 2 / 3 + 3 / 4 + 4 / 5) / 4
    np.testing.assert_allclose(res.cmc, [1, 1, 1, 1])
    assert res.mAP == pytest.approx(ap, abs=1e-12)
    assert res.mINP == pytest.approx(4 / 5, abs=1e-12)
    assert (res.num_valid_queries, res.num_skipped_queries) == (1, 0)
    # a distractor in front moves the first hit to rank 2
    d2 = d.copy()
    d2[0, 3] = 0
    res2 = reid_metrics(distances=d2, q_pids=[5], g_pids=g_pids, q_camids=[0], g_camids=g_cams, max_rank=3)
    np.testing.assert_allclose(res2.cmc, [0, 1, 1])
    assert res2.mAP == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 5) / 4, abs=1e-12)


def test_junk_is_removed_and_distractors_count():
    rng = np.random.default_rng(1)
    q, g, qp, gp, qc, gc = _case(2, 32, nq=10, ng=60, npid=4)
    qp = np.abs(qp) + 1
    gp = np.where(gp < 0, 1, gp)  # no junk yet; 0 are distractors
    base = reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=10)
    # inserting junk items (pid -1) anywhere, even identical to the queries' codes, changes nothing
    junk = np.concatenate([q[:5], random_codes(rng, 20, 32)])
    n_total = len(g) + len(junk)
    is_junk = np.zeros(n_total, bool)
    is_junk[rng.choice(n_total, len(junk), replace=False)] = True
    g2 = np.empty((n_total, g.shape[1]), np.uint8)
    g2[~is_junk], g2[is_junk] = g, junk
    gp2, gc2 = np.full(n_total, -1), rng.integers(0, 3, n_total)
    gp2[~is_junk], gc2[~is_junk] = gp, gc
    with_junk = reid_metrics(q, g2, q_pids=qp, g_pids=gp2, q_camids=qc, g_camids=gc2, max_rank=10)
    np.testing.assert_allclose(with_junk.cmc, base.cmc)
    assert with_junk.mAP == pytest.approx(base.mAP) and with_junk.mINP == pytest.approx(base.mINP)
    # distractors (pid 0) identical to the queries' codes go first and lower every metric
    g3 = np.concatenate([q, g])
    gp3 = np.concatenate([np.zeros(len(q), np.int64), gp])
    gc3 = np.concatenate([np.full(len(q), 9), gc])
    with_distr = reid_metrics(q, g3, q_pids=qp, g_pids=gp3, q_camids=qc, g_camids=gc3, max_rank=10)
    assert with_distr.mAP < base.mAP and with_distr.cmc[0] <= base.cmc[0]
    _assert_matches(with_distr, market_reference(np_hamming(q, g3), qp, gp3, qc, gc3, 10))


def test_same_camera_matches_are_removed_and_no_camera_filter():
    q = np.array([[0b10101010]], np.uint8)
    g = np.array([[0b10101010], [0b10101011], [0b00000000]], np.uint8)  # distances 0, 1, 4
    gp, gc = np.array([3, 3, 4]), np.array([1, 2, 1])
    res = reid_metrics(q, g, q_pids=[3], g_pids=gp, q_camids=[1], g_camids=gc, max_rank=2)
    np.testing.assert_allclose(res.cmc, [1, 1])  # the identical same-camera image is removed: match at rank 1
    assert res.mAP == pytest.approx(1.0)
    # without camera ids nothing is removed: both matches count
    res2 = reid_metrics(q, g, q_pids=[3], g_pids=gp, max_rank=2)
    assert res2.mAP == pytest.approx(1.0) and res2.mINP == pytest.approx(1.0)
    # the only match on the query's camera: the query is skipped
    res3 = reid_metrics(q, g[[0, 2]], q_pids=[3], g_pids=gp[[0, 2]], q_camids=[1], g_camids=gc[[0, 2]])
    assert (res3.num_valid_queries, res3.num_skipped_queries) == (0, 1)
    assert np.isnan(res3.mAP) and np.isnan(res3.cmc).all()


def test_queries_without_match_are_skipped_and_counted():
    q, g, qp, gp, qc, gc = _case(5, 16, nq=12, ng=40, npid=4, ncam=2)
    qp = qp.copy()
    qp[:4] = 99  # identities absent from the gallery
    res = reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=5)
    ref = market_reference(np_hamming(q, g), qp, gp, qc, gc, 5)
    _assert_matches(res, ref)
    assert res.num_skipped_queries >= 4


def test_short_valid_list_pads_cmc_with_one():
    d = np.array([[0.5, 0.1]])
    res = reid_metrics(distances=d, q_pids=[1], g_pids=[1, 2], q_camids=[0], g_camids=[1, 1], max_rank=5)
    np.testing.assert_allclose(res.cmc, [0, 1, 1, 1, 1])


@pytest.mark.parametrize("seed", range(4))
def test_heavy_ties_eight_bit_codes(seed):
    rng = np.random.default_rng(seed)
    # few distinct 8-bit codes -> large tie groups
    patterns = np.array([[0], [1], [3], [7], [255]], np.uint8)
    q = patterns[rng.integers(0, 5, 20)]
    g = patterns[rng.integers(0, 5, 400)]
    qp, gp = rng.integers(1, 6, 20), rng.integers(-1, 6, 400)
    qc, gc = rng.integers(0, 3, 20), rng.integers(0, 3, 400)
    ref = market_reference(np_hamming(q, g), qp, gp, qc, gc, 50)
    results = {}
    for name, inputs in _all_forms(q, g).items():
        for ties in ("stable", "expected"):
            if name == "ranking" and ties == "expected":
                continue
            res = reid_metrics(**inputs, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties=ties, block_size=7)
            results[name, ties] = res
            if ties == "stable":
                _assert_matches(res, ref)
    # expected metrics: the histogram path (codes, int) and the sorted path (float) agree
    for name in ("int_distances", "float_distances"):
        a, b = results["codes", "expected"], results[name, "expected"]
        np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-9)
        assert a.mAP == pytest.approx(b.mAP, abs=1e-9) and a.mINP == pytest.approx(b.mINP, abs=1e-9)


def _tiny_tied_case(seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(1, 4)), int(rng.integers(1, 8))
    patterns = np.array([[0], [1], [3]], np.uint8)  # pairwise distances 0, 1, 2
    q, g = patterns[rng.integers(0, 3, nq)], patterns[rng.integers(0, 3, ng)]
    return q, g, rng.integers(-1, 3, nq), rng.integers(-1, 3, ng), rng.integers(0, 2, nq), rng.integers(0, 2, ng)


@pytest.mark.parametrize("seed", range(40))
def test_expected_ties_equal_brute_force_over_permutations(seed):
    q, g, qp, gp, qc, gc = _tiny_tied_case(seed)
    max_rank = int(np.random.default_rng(seed).integers(1, 8))
    d = np_hamming(q, g)
    cmc, m_ap, m_inp, nv = brute_force_expected(d, qp, gp, qc, gc, max_rank)
    for name, inputs in _all_forms(q, g).items():
        if name == "ranking":
            continue
        res = reid_metrics(**inputs, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=max_rank,
                           ties="expected")
        assert res.num_valid_queries == nv
        if nv:
            np.testing.assert_allclose(res.cmc, cmc, atol=1e-9, err_msg=name)
            assert res.mAP == pytest.approx(m_ap, abs=1e-9), name
            assert res.mINP == pytest.approx(m_inp, abs=1e-9), name


def test_expected_ties_large_group_against_monte_carlo():
    # one query, a single tie group of 60 items holding 7 matches, behind 3 negatives
    d = np.concatenate([np.zeros(3), np.ones(60)])[None, :]
    g_pids = np.concatenate([[2, 2, 2], np.where(np.arange(60) % 9 == 0, 1, 2)])
    res = reid_metrics(distances=d, q_pids=[1], g_pids=g_pids, max_rank=20, ties="expected")
    rng = np.random.default_rng(0)
    cmcs, aps, inps = [], [], []
    for _ in range(4000):
        order = np.concatenate([[0, 1, 2], 3 + rng.permutation(60)])
        cmc, m_ap, m_inp, _, _ = market_reference(d, [1], g_pids, max_rank=20, order=order[None, :])
        cmcs.append(cmc), aps.append(m_ap), inps.append(m_inp)
    np.testing.assert_allclose(res.cmc, np.mean(cmcs, axis=0), atol=0.03)
    assert res.mAP == pytest.approx(np.mean(aps), abs=0.01)
    assert res.mINP == pytest.approx(np.mean(inps), abs=0.01)
    # exact values for rank 4: 1 - C(53, 1)/C(60, 1)
    assert res.cmc[3] == pytest.approx(1 - 53 / 60, abs=1e-12)


def test_expected_equals_stable_without_ties():
    rng = np.random.default_rng(3)
    d = np.stack([rng.permutation(50) for _ in range(6)]).astype(np.float64)
    qp, gp = rng.integers(0, 4, 6), rng.integers(-1, 4, 50)
    qc, gc = rng.integers(0, 2, 6), rng.integers(0, 2, 50)
    a = reid_metrics(distances=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties="stable")
    b = reid_metrics(distances=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties="expected")
    np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-12)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12) and a.mINP == pytest.approx(b.mINP, abs=1e-12)


@pytest.mark.parametrize("ties", ["stable", "expected"])
def test_block_size_does_not_change_results(ties):
    q, g, qp, gp, qc, gc = _case(11, 16, nq=23, ng=70, npid=5)
    results = [
        reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties=ties, block_size=b)
        for b in (1, 4, 23, 100)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r.cmc, results[0].cmc)
        assert r.mAP == pytest.approx(results[0].mAP, abs=1e-12)
        assert r.mINP == pytest.approx(results[0].mINP, abs=1e-12)


def test_jax_and_memmap_distances(tmp_path):
    import jax.numpy as jnp

    q, g, qp, gp, qc, gc = _case(4, 16, nq=9, ng=30, npid=3)
    d = np_hamming(q, g).astype(np.float32)
    ref = reid_metrics(distances=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc)
    mm = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype=np.float32, shape=d.shape)
    mm[:] = d
    for m in (jnp.asarray(d), mm, d.tolist()):
        r = reid_metrics(distances=m, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, block_size=2)
        np.testing.assert_array_equal(r.cmc, ref.cmc)
        assert r.mAP == ref.mAP


small_ints = st.integers(min_value=0, max_value=3)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    nq=st.integers(1, 5),
    ng=st.integers(1, 25),
    data=st.data(),
)
def test_property_reference_and_permutation_invariance(nq, ng, data):
    ints = lambda n, lo, hi: np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)))  # noqa: E731
    d = ints(nq * ng, 0, 4).reshape(nq, ng)
    qp, gp = ints(nq, 0, 3), ints(ng, -1, 3)
    qc, gc = ints(nq, 0, 2), ints(ng, 0, 2)
    res = reid_metrics(distances=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=6)
    _assert_matches(res, market_reference(d, qp, gp, qc, gc, 6))
    if res.num_valid_queries:
        assert np.all(np.diff(res.cmc) >= 0) and 0 <= res.cmc[0] and res.cmc[-1] <= 1
        assert 0 < res.mINP <= 1 and 0 < res.mAP <= 1
    # expected-tie metrics do not depend on the gallery order
    perm = np.random.default_rng(ng).permutation(ng)
    e1 = reid_metrics(distances=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=6, ties="expected")
    e2 = reid_metrics(distances=d[:, perm], q_pids=qp, g_pids=gp[perm], q_camids=qc, g_camids=gc[perm], max_rank=6,
                      ties="expected")
    assert e1.num_valid_queries == e2.num_valid_queries
    if e1.num_valid_queries:
        np.testing.assert_allclose(e1.cmc, e2.cmc, atol=1e-9)
        assert e1.mAP == pytest.approx(e2.mAP, abs=1e-9) and e1.mINP == pytest.approx(e2.mINP, abs=1e-9)


# --- bad input -------------------------------------------------------------------------------------------------


def _good():
    q, g, qp, gp, qc, gc = _case(0, 16, nq=4, ng=10, npid=3)
    return dict(q_codes=q, g_codes=g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(q_pids=np.zeros(3, int)), "q_pids"),
        (dict(g_pids=np.zeros(11, int)), "g_pids"),
        (dict(q_camids=np.zeros(5, int)), "q_camids"),
        (dict(g_camids=np.zeros(9, int)), "g_camids"),
        (dict(q_pids=np.zeros(4, np.float32)), "q_pids"),
        (dict(g_camids=np.zeros(10, bool)), "g_camids"),
        (dict(q_pids=np.zeros((4, 1), int)), "q_pids"),
        (dict(max_rank=0), "max_rank"),
        (dict(max_rank=-3), "max_rank"),
        (dict(max_rank=2.5), "max_rank"),
        (dict(ties="random"), "ties"),
        (dict(block_size=0), "block_size"),
        (dict(q_codes=np.zeros((4, 2), np.int32)), "q_codes"),
        (dict(g_codes=np.zeros((10, 3), np.uint8)), "g_codes"),
        (dict(g_codes=np.zeros((0, 2), np.uint8), g_pids=np.zeros(0, int), g_camids=np.zeros(0, int)), "g_codes"),
        (dict(q_camids=None), "camids"),
        (dict(g_codes=None), "g_codes"),
        (dict(distances=np.zeros((4, 10))), "exactly one"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    kw = _good()
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        reid_metrics(**kw)


def test_bad_matrix_inputs():
    kw = dict(q_pids=[1, 2], g_pids=[1, 2, 3], q_camids=[0, 0], g_camids=[1, 1, 1])
    with pytest.raises(ValueError, match="distances"):
        reid_metrics(distances=np.zeros(3), **kw)
    with pytest.raises(ValueError, match="g_pids"):
        reid_metrics(distances=np.zeros((2, 4)), **kw)
    with pytest.raises(ValueError, match="NaN"):
        reid_metrics(distances=np.array([[0, np.nan, 1], [1, 2, 3]]), **kw)
    with pytest.raises(ValueError, match="distances"):
        reid_metrics(distances=np.zeros((2, 3), bool), **kw)
    with pytest.raises(ValueError, match="permutation"):
        reid_metrics(ranking=np.array([[0, 0, 1], [0, 1, 2]]), **kw)
    with pytest.raises(ValueError, match="ranking"):
        reid_metrics(ranking=np.array([[0, 1, 3], [0, 1, 2]]), **kw)
    with pytest.raises(ValueError, match="ranking"):
        reid_metrics(ranking=np.zeros((2, 3)), **kw)
    with pytest.raises(ValueError, match="expected"):
        reid_metrics(ranking=np.array([[0, 1, 2], [2, 1, 0]]), ties="expected", **kw)
    with pytest.raises(ValueError, match="exactly one"):
        reid_metrics(**kw)


@pytest.mark.parametrize("bits", [8, 64])
def test_larger_gallery_spanning_many_chunks(bits):
    # enough gallery items that the counting histogram splits the gallery into many chunks
    rng = np.random.default_rng(bits)
    q, g = random_codes(rng, 9, bits), random_codes(rng, 3000, bits)
    qp, gp = rng.integers(0, 5, 9), rng.integers(-1, 5, 3000)
    qc, gc = rng.integers(0, 3, 9), rng.integers(0, 3, 3000)
    d = np_hamming(q, g)
    ref = market_reference(d, qp, gp, qc, gc, 50)
    _assert_matches(reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, block_size=4), ref)
    a = reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties="expected")
    b = reid_metrics(distances=d.astype(np.float64), q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, ties="expected")
    np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-9)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-9) and a.mINP == pytest.approx(b.mINP, abs=1e-9)
