"""VehicleID and classic CUHK03 protocols against loops written from their definitions."""

import numpy as np
import pytest

import jhash.metrics.reid as reid_module
from jhash.metrics import cuhk03_classic_eval, reid_metrics, vehicleid_eval, vehicleid_split

from . import market_reference, np_hamming, random_codes


@pytest.fixture(autouse=True)
def _numpy_distance(request, monkeypatch):
    """Random shapes would each compile jhash.search's jitted distance: use the numpy reference distance,
    except in tests named ``*jhash_search*``."""
    if "jhash_search" not in request.node.name:
        monkeypatch.setattr(reid_module, "_hamming_distance", np_hamming)


def _vehicle_case(seed=0, n=120, ids=25, bits=16):
    rng = np.random.default_rng(seed)
    pids = rng.integers(100, 100 + ids, n)
    return random_codes(rng, n, bits), pids


def test_vehicleid_split_one_gallery_image_per_identity():
    _, pids = _vehicle_case()
    q, g = vehicleid_split(pids, seed=3, repeat=1)
    assert np.array_equal(np.sort(pids[g]), np.unique(pids))
    assert np.array_equal(np.sort(np.concatenate([q, g])), np.arange(len(pids)))
    assert np.all(np.diff(q) > 0) and np.all(np.diff(g) > 0)
    q2, g2 = vehicleid_split(pids, seed=3, repeat=1)
    assert np.array_equal(g, g2) and np.array_equal(q, q2)
    assert not np.array_equal(g, vehicleid_split(pids, seed=3, repeat=2)[1])
    assert not np.array_equal(g, vehicleid_split(pids, seed=4, repeat=1)[1])


def test_vehicleid_split_is_uniform_within_identity():
    pids = np.array([7, 7, 7, 7, 8])
    counts = np.zeros(4)
    for r in range(800):
        _, g = vehicleid_split(pids, seed=0, repeat=r)
        counts[g[g < 4]] += 1
    assert np.all(np.abs(counts / 800 - 0.25) < 0.06)


@pytest.mark.parametrize("ties", ["stable", "expected"])
def test_vehicleid_eval_matches_reference_loop(ties):
    codes, pids = _vehicle_case(1)
    res = vehicleid_eval(codes, pids=pids, num_repeats=4, seed=5, max_rank=10, ties=ties)
    dist = np_hamming(codes, codes)
    res_d = vehicleid_eval(distances=dist.astype(np.float64), pids=pids, num_repeats=4, seed=5, max_rank=10, ties=ties)
    cmcs, maps, inps = [], [], []
    for r in range(4):
        qi, gi = vehicleid_split(pids, seed=5, repeat=r)
        if ties == "stable":
            cmc, m_ap, m_inp, nv, _ = market_reference(dist[np.ix_(qi, gi)], pids[qi], pids[gi], max_rank=10)
            assert nv == len(qi)  # every query has its identity's gallery image, no camera filter
        else:
            one = reid_metrics(distances=dist[np.ix_(qi, gi)], q_pids=pids[qi], g_pids=pids[gi], max_rank=10,
                               ties="expected")
            cmc, m_ap, m_inp = one.cmc, one.mAP, one.mINP
        cmcs.append(cmc), maps.append(m_ap), inps.append(m_inp)
    for out in (res, res_d):
        assert out.num_repeats == 4
        np.testing.assert_allclose(out.cmc, np.mean(cmcs, axis=0), atol=1e-9)
        np.testing.assert_allclose(out.cmc_std, np.std(cmcs, axis=0), atol=1e-9)
        assert out.mAP == pytest.approx(np.mean(maps), abs=1e-9)
        assert out.mAP_std == pytest.approx(np.std(maps), abs=1e-9)
        assert out.mINP == pytest.approx(np.mean(inps), abs=1e-9)
        # a single gallery image per identity: AP = INP
        assert out.mAP == pytest.approx(out.mINP, abs=1e-12)


def test_vehicleid_with_jhash_search_distance():
    codes, pids = _vehicle_case(2, n=90, ids=20)
    res = vehicleid_eval(codes, pids=pids, num_repeats=3, seed=1, max_rank=5)
    res_d = vehicleid_eval(distances=np_hamming(codes, codes), pids=pids, num_repeats=3, seed=1, max_rank=5)
    np.testing.assert_allclose(res.cmc, res_d.cmc, atol=1e-12)
    assert res.mAP == pytest.approx(res_d.mAP, abs=1e-12) and res.mINP_std == pytest.approx(res_d.mINP_std, abs=1e-12)


def test_vehicleid_bad_input():
    codes, pids = _vehicle_case()
    with pytest.raises(ValueError, match="pids"):
        vehicleid_eval(codes, pids=pids[:-1])
    with pytest.raises(ValueError, match="num_repeats"):
        vehicleid_eval(codes, pids=pids, num_repeats=0)
    with pytest.raises(ValueError, match="seed"):
        vehicleid_eval(codes, pids=pids, seed=-1)
    with pytest.raises(ValueError, match="exactly one"):
        vehicleid_eval(pids=pids)
    with pytest.raises(ValueError, match="square"):
        vehicleid_eval(distances=np.zeros((len(pids), 3)), pids=pids)
    with pytest.raises(ValueError, match="codes"):
        vehicleid_eval(codes.astype(np.int64), pids=pids)


# --- CUHK03 classic --------------------------------------------------------------------------------------------


def _cuhk_case(seed=0, ids=12, per_view=3, bits=16):
    """Two camera views per identity, ``per_view`` images each; queries from both views."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(ids), 2 * per_view)
    cams = np.tile(np.repeat([0, 1], per_view), ids)
    codes = random_codes(rng, len(pids), bits)
    qsel = rng.random(len(pids)) < 0.3
    return codes[qsel], codes, pids[qsel], pids, cams[qsel], cams


def _cuhk_reference(dist, qp, gp, qc, gc, num_repeats, seed, max_rank):
    """Per query loop: draw one image per identity (the same random draws as documented), rank, score."""
    uniq = np.unique(gp[gp != -1])
    per_repeat = []
    for r in range(num_repeats):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, r])))
        u = rng.random((len(qp), len(uniq) + 1))
        cmcs, aps = [], []
        for i in range(len(qp)):
            pos = np.flatnonzero((gp == qp[i]) & (gc != qc[i]))
            if len(pos) == 0:
                continue
            sampled = []
            for j, pid in enumerate(uniq):
                items = np.flatnonzero(gp == pid)
                if pid == qp[i]:
                    sampled.append(pos[int(u[i, -1] * len(pos))])
                else:
                    sampled.append(items[int(u[i, j] * len(items))])
            sampled = np.array(sampled)
            order = sampled[np.lexsort((sampled, dist[i, sampled]))]
            rank = int(np.flatnonzero(gp[order] == qp[i])[0])
            cmcs.append((np.arange(max_rank) >= rank).astype(float))
            aps.append(1.0 / (rank + 1))
        per_repeat.append((np.mean(cmcs, axis=0), np.mean(aps)))
    return per_repeat


@pytest.mark.parametrize("seed", range(3))
def test_cuhk03_classic_matches_reference_loop(seed):
    q, g, qp, gp, qc, gc = _cuhk_case(seed)
    gp = gp.copy()
    gp[::11] = -1  # some junk
    dist = np_hamming(q, g)
    ref = _cuhk_reference(dist, qp, gp, qc, gc, 5, seed, 8)
    for kw in (dict(q_codes=q, g_codes=g), dict(distances=dist), dict(distances=dist / 3.0)):
        for block_size in (1, 4, None):
            res = cuhk03_classic_eval(**kw, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, num_repeats=5,
                                      seed=seed, max_rank=8, block_size=block_size)
            for rep, (cmc, m_ap) in zip(res.repeats, ref):
                np.testing.assert_allclose(rep.cmc, cmc, atol=1e-12)
                assert rep.mAP == pytest.approx(m_ap, abs=1e-12)
            np.testing.assert_allclose(res.cmc, np.mean([x[0] for x in ref], axis=0), atol=1e-12)
            np.testing.assert_allclose(res.cmc_std, np.std([x[0] for x in ref], axis=0), atol=1e-12)


def test_cuhk03_single_image_per_identity_equals_market():
    # queries from view 0, a gallery of one view-1 image per identity: the draw is forced, so CMC equals
    # the Market protocol's
    _, codes, _, pids, _, cams = _cuhk_case(4, ids=15, per_view=1)
    q, qp, qc = codes[cams == 0], pids[cams == 0], cams[cams == 0]
    g, gp, gc = codes[cams == 1], pids[cams == 1], cams[cams == 1]
    res = cuhk03_classic_eval(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, num_repeats=3, max_rank=10)
    m = reid_metrics(q, g, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, max_rank=10)
    np.testing.assert_allclose(res.cmc, m.cmc, atol=1e-12)
    assert res.mAP == pytest.approx(m.mAP, abs=1e-12)
    np.testing.assert_allclose(res.cmc_std, 0, atol=1e-12)


def test_cuhk03_skips_queries_without_other_view():
    q, g, qp, gp, qc, gc = _cuhk_case(2)
    keep = ~((gp == qp[0]) & (gc != qc[0]))  # remove the other view of the first query's identity
    res = cuhk03_classic_eval(q, g[keep], q_pids=qp, g_pids=gp[keep], q_camids=qc, g_camids=gc[keep], num_repeats=2)
    expected_skips = int(np.sum((qp == qp[0]) & (qc == qc[0])))
    for rep in res.repeats:
        assert rep.num_skipped_queries == expected_skips
        assert rep.num_valid_queries + rep.num_skipped_queries == len(qp)


def test_cuhk03_bad_input():
    q, g, qp, gp, qc, gc = _cuhk_case()
    kw = dict(q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc)
    with pytest.raises(ValueError, match="g_camids"):
        cuhk03_classic_eval(q, g, **{**kw, "g_camids": gc[:-1]})
    with pytest.raises(ValueError, match="max_rank"):
        cuhk03_classic_eval(q, g, **kw, max_rank=0)
    with pytest.raises(ValueError, match="exactly one"):
        cuhk03_classic_eval(**kw)
    with pytest.raises(ValueError, match="q_pids"):
        cuhk03_classic_eval(q, g, **{**kw, "q_pids": qp.astype(float)})
