"""Attribute-first fast retrieval (Jin et al. 2021, eqs. 6-7) and the w rule, against numpy loop references."""

import numpy as np
import pytest

from jhash.search import attribute_first as afr
from jhash.search import native, pack_codes

TOPK_BACKENDS = ("xla",) + (("native", "scan") if native.is_available() else ())


def _codes(rng, n, bits):
    return rng.integers(0, 2, size=(n, bits)).astype(np.uint8)


def _ham(a, b):
    return np.array([[int(np.sum(x != y)) for y in b] for x in a])


def _afr_ref(ad, sd, w):
    """AFR ranking from the definition: attribute order (stable), first w re-ranked by (second, index)."""
    out = []
    for i in range(ad.shape[0]):
        order = sorted(range(ad.shape[1]), key=lambda j: (ad[i, j], j))
        win = sorted(order[:w], key=lambda j: (sd[i, j], j))
        out.append(win + order[w:])
    return np.array(out)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    qa, ga = _codes(rng, 6, 8), _codes(rng, 120, 8)
    qi, gi = _codes(rng, 6, 64), _codes(rng, 120, 64)
    packed = [np.asarray(pack_codes(x)) for x in (qa, ga, qi, gi)]
    return (qa, ga, qi, gi), packed


@pytest.mark.parametrize("w", [1, 7, 40, 119, 120])
def test_ranking_matches_definition(data, w):
    (qa, ga, qi, gi), (pqa, pga, pqi, pgi) = data
    ref = _afr_ref(_ham(qa, ga), _ham(qi, gi), w)
    np.testing.assert_array_equal(afr.attribute_first_rank(pqa, pga, pqi, pgi, w), ref)
    index = afr.AFRIndex.build(pga, pgi)
    keys = afr.attribute_first_distances(pqa, pga, pqi, pgi, w)
    for backend in TOPK_BACKENDS:
        for k in (1, 10, min(120, w + 3)):
            kk, idx = afr.attribute_first_topk(pqa, pqi, index, w, k, backend=backend)
            np.testing.assert_array_equal(idx, ref[:, :k])
            np.testing.assert_array_equal(kk, np.take_along_axis(keys, idx, 1))


def test_full_window_is_exhaustive_id_search(data):
    (qa, ga, qi, gi), (pqa, pga, pqi, pgi) = data
    keys = afr.attribute_first_distances(pqa, pga, pqi, pgi, 120)
    np.testing.assert_array_equal(keys, _ham(qi, gi))
    for backend in TOPK_BACKENDS:
        _, idx = afr.attribute_first_topk(pqa, pqi, afr.AFRIndex.build(pga, pgi), 120, 10, backend=backend)
        np.testing.assert_array_equal(idx, np.argsort(_ham(qi, gi), axis=1, kind="stable")[:, :10])


def test_window_mask_counts_ties_by_index():
    d = np.array([[2, 0, 1, 1, 0, 1, 3]])
    np.testing.assert_array_equal(afr.window_mask(d, 3), [[False, True, True, False, True, False, False]])
    np.testing.assert_array_equal(afr.window_mask(d, 7), np.ones((1, 7), bool))
    assert afr.window_mask(d, 1).sum() == 1 and afr.window_mask(d, 1)[0, 1]


def test_euclidean_second_stage(data):
    (qa, ga, _, _), (pqa, pga, _, _) = data
    rng = np.random.default_rng(3)
    qf, gf = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(120, 5)).astype(np.float32)
    ed = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    got = afr.attribute_first_rank(pqa, pga, qf, gf, 30, metric="euclidean")
    np.testing.assert_array_equal(got, _afr_ref(_ham(qa, ga), ed, 30))


def test_in_front_of_coarse_to_fine(data):
    (qa, ga, qi, gi), (pqa, pga, pqi, pgi) = data
    short_q, short_g = np.asarray(pack_codes(qi[:, :16])), np.asarray(pack_codes(gi[:, :16]))
    levels_q, levels_g = {"l16": short_q, "l64": pqi}, {"l16": short_g, "l64": pgi}
    # maximal thresholds: CtF = exhaustive 64-bit search, so AFR+CtF = AFR on the 64-bit codes
    keys = afr.attribute_first_ctf_distances(pqa, pga, levels_q, levels_g, {"l16": 16}, 25)
    np.testing.assert_array_equal(np.argsort(keys, 1, kind="stable"), _afr_ref(_ham(qa, ga), _ham(qi, gi), 25))


def test_w_rule_on_constructed_case():
    # 4 queries; attribute codes place each query's true match at a known attribute-rank position
    bits = np.zeros((4, 8), np.uint8)
    g_bits = np.zeros((10, 8), np.uint8)
    g_bits[:, :] = 1  # all far (distance 8) ...
    g_pids = np.array([9, 9, 0, 9, 1, 9, 9, 2, 9, 3])
    g_bits[0] = 0  # a non-match at distance 0: position 1 for every query
    g_bits[2] = 0  # pid 0 at distance 0 after index 0: position 2
    g_bits[4, :1] = 0  # pid 1 at distance 7; ranked after the two distance-0 items -> position 3
    # pid 2 (index 7) and pid 3 (index 9) at distance 8, ties by index: positions 3 + #(d=8 before them) + 1
    q_pids = np.array([0, 1, 2, 3])
    pq, pg = np.asarray(pack_codes(bits)), np.asarray(pack_codes(g_bits))
    pos = afr.first_match_positions(pq, pg, q_pids, g_pids)
    np.testing.assert_array_equal(pos, [2, 3, 8, 10])  # d=8 order: 1,3,5,6,7,8,9 -> index 7 is 5th, 9 is 7th
    assert afr.fit_window(pq, pg, q_pids, g_pids, target=0.5).w == 3
    assert afr.fit_window(pq, pg, q_pids, g_pids, target=0.75).w == 8
    r = afr.fit_window(pq, pg, q_pids, g_pids, target=0.97)
    assert r.w == 10 and r.accuracy == 1.0 and r.num_queries == 4 and r.fraction == 1.0
    # camera filter: a same-camera match does not count
    pos_cam = afr.first_match_positions(pq, pg, q_pids, g_pids, q_camids=np.zeros(4, int), g_camids=np.zeros(10, int))
    np.testing.assert_array_equal(pos_cam, [-1, -1, -1, -1])
    with pytest.raises(ValueError, match="no query"):
        afr.fit_window(pq, pg, q_pids, g_pids, q_camids=np.zeros(4, int), g_camids=np.zeros(10, int))


def test_w_rule_leave_one_out_and_gallery_transfer():
    rng = np.random.default_rng(5)
    pids = np.repeat(np.arange(20), 3)
    attrs = rng.integers(0, 2, size=(20, 8))[pids].astype(np.uint8)
    p = np.asarray(pack_codes(attrs))
    r = afr.fit_window(p, p, pids, pids, exclude_self=True)
    assert r.gallery_size == 59 and r.w <= 59
    # brute-force reference of the leave-one-out positions
    d = _ham(attrs, attrs)
    ref = []
    for i in range(60):
        order = [j for j in sorted(range(60), key=lambda j: (d[i, j], j)) if j != i]
        ref.append(1 + next(k for k, j in enumerate(order) if pids[j] == pids[i]))
    np.testing.assert_array_equal(afr.first_match_positions(p, p, pids, pids, exclude_self=True), ref)
    assert r.w == sorted(ref)[int(np.ceil(0.97 * 60)) - 1]
    assert afr.window_for_gallery(0.1, 1000) == 100 and afr.window_for_gallery(0.0, 50) == 1


def test_bad_arguments(data):
    _, (pqa, pga, pqi, pgi) = data
    with pytest.raises(ValueError, match="w"):
        afr.attribute_first_distances(pqa, pga, pqi, pgi, 0)
    with pytest.raises(ValueError, match="w"):
        afr.attribute_first_distances(pqa, pga, pqi, pgi, 121)
    with pytest.raises(ValueError, match="q_attr"):
        afr.attribute_first_distances(pqa.astype(np.int32), pga, pqi, pgi, 5)
    with pytest.raises(ValueError, match="metric"):
        afr.attribute_first_distances(pqa, pga, pqi, pgi, 5, metric="cosine")
    with pytest.raises(TypeError, match="AFRIndex"):
        afr.attribute_first_topk(pqa, pqi, pgi, 5, 3)
    with pytest.raises(ValueError, match="target"):
        afr.fit_window(pqa, pga, np.zeros(6), np.zeros(120), target=1.5)


def test_group_by_code_definition():
    rng = np.random.default_rng(4)
    for width in (1, 3, 8, 11):  # integer keys (<= 8 bytes) and row-wise unique
        codes = rng.integers(0, 3, (200, width)).astype(np.uint8)
        distinct, start, items = afr.group_by_code(codes)
        assert start[0] == 0 and start[-1] == 200 and np.all(np.diff(start) >= 1)
        np.testing.assert_array_equal(np.sort(items), np.arange(200))
        for u in range(len(distinct)):
            members = items[start[u]:start[u + 1]]
            assert np.all(np.diff(members) > 0)
            np.testing.assert_array_equal(codes[members], np.repeat(distinct[u][None], len(members), 0))
        assert len({bytes(r) for r in codes}) == len(distinct)


@pytest.mark.skipif(not native.is_available(), reason="native kernel not built")
@pytest.mark.parametrize("attr_bytes", [2, 5, 9])
def test_native_topk_equals_the_definition_on_a_larger_gallery(attr_bytes):
    """Grouped native search vs plain numpy keys (definition): few distinct attribute codes (large groups,
    many ties at the window boundary), windows from 1 to the gallery, k below and above w."""
    rng = np.random.default_rng(attr_bytes)
    ng, nq = 3000, 13
    pool = rng.integers(0, 256, (40, attr_bytes), dtype=np.uint8)
    ga = pool[rng.integers(0, 40, ng)]
    qa = np.concatenate([pool[:nq - 2], rng.integers(0, 256, (2, attr_bytes), dtype=np.uint8)])
    gi = rng.integers(0, 256, (ng, 16), dtype=np.uint8)
    qi = rng.integers(0, 256, (nq, 16), dtype=np.uint8)
    da = np.unpackbits(qa[:, None] ^ ga[None], axis=-1).sum(-1)
    di = np.unpackbits(qi[:, None] ^ gi[None], axis=-1).sum(-1)
    index = afr.AFRIndex.build(ga, gi)
    assert index.num_groups <= 40
    for w in (1, 77, 1000, ng):
        keys = np.empty((nq, ng), np.int64)
        for i in range(nq):  # the definition: first w under (d_attr, index) get the ID distance
            order = np.lexsort((np.arange(ng), da[i]))
            inside = np.zeros(ng, bool)
            inside[order[:w]] = True
            keys[i] = np.where(inside, di[i], 129 + da[i])
        ref = np.argsort(keys, axis=1, kind="stable")
        for k in (1, 50, min(ng, w + 40)):
            for backend in ("native", "scan"):
                kk, idx = afr.attribute_first_topk(qa, qi, index, w, k, backend=backend)
                np.testing.assert_array_equal(idx, ref[:, :k])
                np.testing.assert_array_equal(kk, np.take_along_axis(keys, ref[:, :k], 1))


def test_long_attribute_codes_fall_back_to_xla_under_auto():
    """The native search keeps attribute distances in uint8 (at most 248 bits): longer attribute codes take the
    JAX path under backend='auto' and are a clear error under backend='native'."""
    rng = np.random.default_rng(9)
    ga, gi = rng.integers(0, 256, (50, 32), dtype=np.uint8), rng.integers(0, 256, (50, 8), dtype=np.uint8)
    qa, qi = ga[:3].copy(), gi[:3].copy()
    index = afr.AFRIndex.build(ga, gi)
    auto = afr.attribute_first_topk(qa, qi, index, 20, 5)
    xla = afr.attribute_first_topk(qa, qi, index, 20, 5, backend="xla")
    np.testing.assert_array_equal(auto[1], xla[1])
    if native.is_available():
        with pytest.raises(ValueError, match="at most 248 bits"):
            afr.attribute_first_topk(qa, qi, index, 20, 5, backend="native")



def test_coarse_codes_are_the_attribute_bits_then_the_chosen_id_bits():
    rng = np.random.default_rng(3)
    attr, ident = _codes(rng, 9, 16), _codes(rng, 9, 64)
    keep = np.array([5, 0, 63, 17, 30])
    got = afr.coarse_codes(np.asarray(pack_codes(attr)), np.asarray(pack_codes(ident)), keep, block_size=4)
    want = np.concatenate([attr, ident[:, keep], np.zeros((9, 3), np.uint8)], axis=1)  # zero padding to 24 bits
    np.testing.assert_array_equal(got, np.asarray(pack_codes(want)))
    # the coarse distance is d_attr + d_prefix
    np.testing.assert_array_equal(np.unpackbits(got[:, None] ^ got[None], axis=-1).sum(-1),
                                  _ham(attr, attr) + _ham(ident[:, keep], ident[:, keep]))
    np.testing.assert_array_equal(afr.coarse_codes(pack_codes(attr), pack_codes(ident), []), pack_codes(attr))
    with pytest.raises(ValueError, match="id_bits: expected distinct bit positions in \\[0, 64\\)"):
        afr.coarse_codes(pack_codes(attr), pack_codes(ident), [64])


def test_fit_rank_window_from_the_definition():
    rng = np.random.default_rng(4)
    qf, gf = _codes(rng, 12, 8), _codes(rng, 90, 8)  # few distinct first codes: many ties
    qi, gi = _codes(rng, 12, 32), _codes(rng, 90, 32)
    df, di = _ham(qf, gf), _ham(qi, gi)
    ranks = []
    for i in range(12):
        top = sorted(range(90), key=lambda j: (di[i, j], j))[:5]
        order = sorted(range(90), key=lambda j: (df[i, j], j))
        ranks += [order.index(j) + 1 for j in top]
    packed = [np.asarray(pack_codes(x)) for x in (qf, gf, qi, gi)]
    for target in (0.5, 0.9, 1.0):
        fit = afr.fit_rank_window(*packed, k=5, target=target, block_size=5)
        want = min(w for w in range(1, 91) if np.mean(np.asarray(ranks) <= w) >= target)
        assert fit.w == want and fit.recall == pytest.approx(np.mean(np.asarray(ranks) <= want))
        assert fit.gallery_size == 90 and fit.fraction == pytest.approx(want / 90)
    safe = afr.fit_rank_window(*packed, k=5, target=0.8, confidence=0.9)
    z90 = 1.2815515655446004
    share = lambda w: np.mean(np.asarray(ranks) <= w)  # noqa: E731
    want = min(w for w in range(1, 91) if share(w) - z90 * np.sqrt(share(w) * (1 - share(w)) / 12) >= 0.8)
    assert safe.w == want
    with pytest.raises(ValueError, match="k: expected an int in \\[1, 90\\]"):
        afr.fit_rank_window(*packed, k=91)
    with pytest.raises(ValueError, match="target"):
        afr.fit_rank_window(*packed, target=0)


def test_fit_window_in_gallery_from_the_definition():
    """Each val image a query against [val images, then gallery] without itself; a match shares its pid (gallery
    items never match); positions under (distance, combined index)."""
    rng = np.random.default_rng(6)
    vf, gf = _codes(rng, 14, 8), _codes(rng, 70, 8)
    vp = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6])  # identity 5 has no second image
    allf = np.concatenate([vf, gf])
    d = _ham(vf, allf)
    pos = []
    for i in range(14):
        order = sorted((j for j in range(84) if j != i), key=lambda j: (d[i, j], j))
        hits = [r + 1 for r, j in enumerate(order) if j < 14 and vp[j] == vp[i]]
        if hits:
            pos.append(hits[0])
    pos = np.sort(pos)
    packed_v, packed_g = np.asarray(pack_codes(vf)), np.asarray(pack_codes(gf))
    for target in (0.5, 0.9, 1.0):
        rule = afr.fit_window_in_gallery(packed_v, vp, packed_g, target=target, block_size=3)
        want = int(pos[int(np.ceil(target * len(pos) - 1e-9)) - 1])
        assert rule.w == want and rule.num_queries == 13 and rule.gallery_size == 83
        assert rule.accuracy == pytest.approx(np.mean(pos <= want))
    with pytest.raises(ValueError, match="val_pids"):
        afr.fit_window_in_gallery(packed_v, vp[:3], packed_g)
