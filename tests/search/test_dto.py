"""DTO (CtF eqs. 6-8) against brute-force counts written from the definition."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.search import dto


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.astype(np.uint8), axis=1)


def _brute_force_pairs(bits: np.ndarray, pids: np.ndarray):
    pos, neg = [], []
    n = bits.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            d = int(np.sum(bits[i] != bits[j]))
            (pos if pids[i] == pids[j] else neg).append(d)
    return np.array(pos), np.array(neg)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 40), block=st.integers(1, 50))
def test_histograms_equal_brute_force_pair_count(seed, n, block):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, 16))
    pids = rng.integers(0, 4, size=n)
    pos, neg = _brute_force_pairs(bits, pids)
    if len(pos) == 0 or len(neg) == 0:
        with pytest.raises(ValueError, match="pids"):
            dto.pair_distance_histograms(_pack(bits), pids, block_size=block)
        return
    hists = dto.pair_distance_histograms(_pack(bits), pids, block_size=block)
    np.testing.assert_array_equal(hists.positive, np.bincount(pos, minlength=17))
    np.testing.assert_array_equal(hists.negative, np.bincount(neg, minlength=17))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_empirical_f_beta_matches_brute_force_precision_recall(seed, beta):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(30, 24))
    pids = rng.integers(0, 5, size=30)
    pos, neg = _brute_force_pairs(bits, pids)
    hists = dto.pair_distance_histograms(_pack(bits), pids)
    recall, neg_fraction = dto.cumulative_fractions(hists, "empirical")
    rho = len(neg) / len(pos)
    curve = dto.f_beta_curve(recall, neg_fraction, beta=beta, rho=rho)
    for t in range(25):
        tp = np.sum(pos <= t)
        fp = np.sum(neg <= t)
        if tp == 0:
            assert curve[t] == 0.0
            continue
        precision = tp / (tp + fp)
        rec = tp / len(pos)
        expected = (1 + beta**2) * precision * rec / (beta**2 * precision + rec)
        assert math.isclose(curve[t], expected, rel_tol=1e-9)
    best = dto.optimal_threshold(hists, beta=beta, rho="ratio", model="empirical")
    assert curve[best] == curve.max()


def _synthetic_histograms(mean_pos, std_pos, mean_neg, std_neg, bits, n_pos, n_neg, seed=0):
    rng = np.random.default_rng(seed)
    pos = np.clip(np.rint(rng.normal(mean_pos, std_pos, n_pos)), 0, bits).astype(int)
    neg = np.clip(np.rint(rng.normal(mean_neg, std_neg, n_neg)), 0, bits).astype(int)
    return dto.PairHistograms(np.bincount(pos, minlength=bits + 1), np.bincount(neg, minlength=bits + 1))


def test_gaussian_dto_recovers_the_known_optimum():
    bits, mp, sp, mn, sn = 128, 30.0, 6.0, 64.0, 5.0
    hists = _synthetic_histograms(mp, sp, mn, sn, bits, 200_000, 200_000)
    # The optimum of eq. 8 under the true Gaussians, evaluated from the definition.
    def cdf(x, m, s):
        return 0.5 * (1 + math.erf((x - m) / (s * math.sqrt(2))))

    true_curve = [5 * cdf(t + 0.5, mp, sp) / (4 + cdf(t + 0.5, mp, sp) + cdf(t + 0.5, mn, sn)) for t in range(bits + 1)]
    expected = int(np.argmax(true_curve))
    assert dto.optimal_threshold(hists, beta=2.0, rho=1.0) == expected
    mean, std = dto.histogram_moments(hists.positive)
    assert abs(mean - mp) < 0.1 and abs(std - sp) < 0.1


def test_larger_beta_never_lowers_the_threshold():
    hists = _synthetic_histograms(20, 5, 40, 6, 64, 5000, 50000, seed=3)
    thresholds = [dto.optimal_threshold(hists, beta=b, rho="ratio") for b in (0.5, 1, 2, 4, 8)]
    assert thresholds == sorted(thresholds)


def test_fit_thresholds_for_a_pyramid_skips_the_longest_level():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(10), 4)
    centres = {L: rng.integers(0, 2, size=(10, L)) for L in (16, 32, 64)}
    codes = {}
    for L, c in centres.items():
        noisy = c[pids] ^ (rng.random((40, L)) < 0.1)
        codes[f"l{L}"] = _pack(noisy)
    thresholds = dto.fit_thresholds(codes, pids)
    assert set(thresholds) == {"l16", "l32"}
    assert all(0 <= thresholds[f"l{L}"] <= L for L in (16, 32))


def test_errors_name_the_argument():
    codes = _pack(np.zeros((4, 8)))
    with pytest.raises(ValueError, match="packed_codes"):
        dto.pair_distance_histograms(np.zeros((4, 8), np.float32), np.arange(4))
    with pytest.raises(ValueError, match="pids"):
        dto.pair_distance_histograms(codes, np.arange(3))
    with pytest.raises(ValueError, match="pids: no two codes"):
        dto.pair_distance_histograms(codes, np.arange(4))
    hists = dto.PairHistograms(np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="rho"):
        dto.optimal_threshold(hists, rho="weird")
    with pytest.raises(ValueError, match="model"):
        dto.optimal_threshold(hists, model="poisson")
    with pytest.raises(ValueError, match="order"):
        dto.fit_thresholds({"a": codes, "b": codes}, np.array([0, 0, 1, 1]), order=["a", "c"])
    with pytest.raises(ValueError, match="codes_by_name"):
        dto.fit_thresholds({"a": codes}, np.array([0, 0, 1, 1]))
