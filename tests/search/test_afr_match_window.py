"""The AFR window that keeps exhaustive search's protocol matches (``fit_match_window``), against a plain loop
written from its definition."""

import numpy as np
import pytest

from jhash.search import attribute_first as afr
from jhash.search import pack_codes
from jhash.search.dto import recall_lower_bound


def _ham(a, b):
    return np.array([[int(np.sum(x != y)) for y in b] for x in a])


def _reference_positions(vf, vi, vp, vc, gf, gi, k):
    """Items: validation images 0..nv-1, then gallery nv..; a query sees every item but itself. Exhaustive ID
    order (distance, item) without junk (same pid, same camera); the true matches among its first k valid
    items; each one's 1-based position in the first-code order (distance, item) over every item but the query."""
    nv = len(vf)
    f_all, i_all = np.concatenate([vf, gf]), np.concatenate([vi, gi])
    df, di = _ham(vf, f_all), _ham(vi, i_all)
    positions, queries = [], 0
    for q in range(nv):
        items = [j for j in range(len(f_all)) if j != q]
        valid = [j for j in items if not (j < nv and vp[j] == vp[q] and vc[j] == vc[q])]
        first_k = sorted(valid, key=lambda j: (di[q, j], j))[:k]
        matches = [j for j in first_k if j < nv and vp[j] == vp[q]]
        order = sorted(items, key=lambda j: (df[q, j], j))
        positions += [order.index(m) + 1 for m in matches]
        queries += bool(matches)
    return np.sort(positions), queries


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    nv, ng = 18, 60
    vp = np.repeat(np.arange(6), 3)
    vc = rng.integers(0, 2, nv)  # two cameras: many same-camera pairs (junk under the protocol)
    centre_f, centre_i = rng.integers(0, 2, (6, 12)), rng.integers(0, 2, (6, 48))
    vf = np.where(rng.random((nv, 12)) < 0.2, 1 - centre_f[vp], centre_f[vp]).astype(np.uint8)
    vi = np.where(rng.random((nv, 48)) < 0.2, 1 - centre_i[vp], centre_i[vp]).astype(np.uint8)
    gf, gi = rng.integers(0, 2, (ng, 12)).astype(np.uint8), rng.integers(0, 2, (ng, 48)).astype(np.uint8)
    return vf, vi, vp, vc, gf, gi


@pytest.mark.parametrize("k", [1, 3])
def test_fit_match_window_from_the_definition(case, k):
    vf, vi, vp, vc, gf, gi = case
    pos, nq = _reference_positions(vf, vi, vp, vc, gf, gi, k)
    assert len(pos) > 3
    packed = [np.asarray(pack_codes(x)) for x in (vf, vi, gf, gi)]
    for target, confidence in ((0.5, 0.0), (0.8, 0.0), (1.0, 0.0), (0.6, 0.9)):
        fit = afr.fit_match_window(packed[0], packed[1], vp, vc, packed[2], packed[3], k=k, target=target,
                                   confidence=confidence, block_size=5)
        share = np.array([np.mean(pos <= p) for p in pos])
        lower = recall_lower_bound(share, nq, confidence)
        want = int(pos[np.argmax(lower >= target - 1e-12)])
        assert fit.w == want and fit.num_matches == len(pos) and fit.num_queries == nq
        assert fit.kept == pytest.approx(np.mean(pos <= want)) and fit.gallery_size == len(gf) + len(vf) - 1


def test_same_camera_matches_do_not_count(case):
    """With one camera per identity every same-identity pair is junk: no match is left to keep; with a camera
    per image every one counts (the fit without the protocol)."""
    vf, vi, vp, _, gf, gi = case
    packed = [np.asarray(pack_codes(x)) for x in (vf, vi, gf, gi)]
    with pytest.raises(ValueError, match="no true match"):
        afr.fit_match_window(packed[0], packed[1], vp, vp, packed[2], packed[3])
    own = np.arange(len(vp))
    pos, _ = _reference_positions(vf, vi, vp, own, gf, gi, 1)
    fit = afr.fit_match_window(packed[0], packed[1], vp, own, packed[2], packed[3], target=1.0)
    assert fit.w == pos[-1]


def test_bad_arguments(case):
    vf, vi, vp, vc, gf, gi = case
    packed = [np.asarray(pack_codes(x)) for x in (vf, vi, gf, gi)]
    with pytest.raises(ValueError, match="val_camids"):
        afr.fit_match_window(packed[0], packed[1], vp, vc[:4], packed[2], packed[3])
    with pytest.raises(ValueError, match="target"):
        afr.fit_match_window(packed[0], packed[1], vp, vc, packed[2], packed[3], target=0.0)
    with pytest.raises(ValueError, match="k"):
        afr.fit_match_window(packed[0], packed[1], vp, vc, packed[2], packed[3], k=0)
    with pytest.raises(ValueError, match="val_first and g_first"):
        afr.fit_match_window(packed[0], packed[1], vp, vc, packed[3], packed[3])
