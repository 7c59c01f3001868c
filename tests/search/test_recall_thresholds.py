"""fit_recall_thresholds against a brute force over every threshold vector, written from the definition."""

import itertools

import numpy as np
import pytest

from jhash.search import coarse_to_fine_topk, fit_recall_thresholds, pack_codes


def _data(seed, n=40, lengths=(8, 16, 24)):
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 2, (6, lengths[-1]))
    pids = rng.integers(0, 6, n)
    full = np.where(rng.random((n, lengths[-1])) < 0.25, 1 - centers[pids], centers[pids])
    return {f"l{L}": full[:, :L] for L in lengths}


def _brute_force(bits_by_level, k, target, rows=None, gather=0.0, costs=None):
    """Every (t_0, t_1): recall = share of (query, exhaustive top-k item) pairs with d_s <= t_s for all s < N-1;
    cost = l_0 + sum_s (l_{s+1} + gather) * share of (query, other item) pairs passing stages 0..s, or with
    ``costs`` (per level (scan, fetch)) scan_0 + sum_s fetch_{s+1} * that share. Returns every (thresholds,
    recall, cost)."""
    levels = list(bits_by_level.values())
    n = levels[0].shape[0]
    rows = list(range(n)) if rows is None else list(rows)
    d = [np.array([[np.sum(a[i] != a[j]) for j in range(n)] for i in range(n)]) for a in levels]
    tops = {}
    for i in rows:
        others = [j for j in range(n) if j != i]
        tops[i] = sorted(others, key=lambda j: (d[-1][i, j], j))[:k]
    lengths = [a.shape[1] for a in levels]
    out = []
    for t in itertools.product(*(range(L + 1) for L in lengths[:-1])):
        kept = sum(all(d[s][i, j] <= t[s] for s in range(len(t))) for i in rows for j in tops[i])
        recall = kept / (len(rows) * k)
        cost = float(lengths[0]) if costs is None else costs[0][0]
        for s in range(len(t)):
            passing = sum(all(d[u][i, j] <= t[u] for u in range(s + 1)) for i in rows for j in range(n) if j != i)
            fetch = lengths[s + 1] + gather if costs is None else costs[s + 1][1]
            cost += fetch * passing / (len(rows) * (n - 1))
        out.append((t, recall, cost))
    return out


@pytest.mark.parametrize("seed,target", [(0, 0.95), (1, 0.8), (2, 1.0)])
def test_recall_fit_is_the_cheapest_feasible_threshold_vector(seed, target):
    bits = _data(seed)
    fit = fit_recall_thresholds({k: np.asarray(pack_codes(v)) for k, v in bits.items()}, target=target, k=5)
    table = _brute_force(bits, 5, target)
    chosen = next(r for r in table if r[0] == (fit.thresholds["l8"], fit.thresholds["l16"]))
    assert fit.recall == pytest.approx(chosen[1]) and fit.cost == pytest.approx(chosen[2])
    assert fit.recall >= target
    best = min(cost for _, recall, cost in table if recall >= target)
    assert fit.cost == pytest.approx(best)


def test_recall_fit_on_sampled_queries():
    bits = _data(5)
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    fit = fit_recall_thresholds(packed, target=0.9, k=5, queries=15, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(40, 15, replace=False))
    table = _brute_force(bits, 5, 0.9, rows=rows)
    assert fit.cost == pytest.approx(min(cost for _, recall, cost in table if recall >= 0.9))
    assert fit.recall >= 0.9
    with pytest.raises(ValueError, match=r"queries must be an int in \[1, 40\]"):
        fit_recall_thresholds(packed, queries=41)


def test_recall_fit_with_other_queries_equals_the_fit_on_the_union_rows():
    """Queries from another set: the same as those rows of the union (each query excluded from its gallery
    there, not at all here: so compare against a gallery that does not contain the queries)."""
    bits = _data(6, n=50)
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    q = {k: v[:10] for k, v in packed.items()}
    g = {k: v[10:] for k, v in packed.items()}
    fit = fit_recall_thresholds(g, query_codes=q, target=0.9, k=5)
    # brute force from the definition: every query against all 40 gallery codes
    qb = {k: v[:10] for k, v in bits.items()}
    gb = {k: v[10:] for k, v in bits.items()}
    names = list(bits)
    d = [np.array([[np.sum(a != b) for b in gb[m]] for a in qb[m]]) for m in names]
    tops = [sorted(range(40), key=lambda j: (d[-1][i, j], j))[:5] for i in range(10)]
    best = np.inf
    for t0, t1 in itertools.product(range(9), range(17)):
        recall = np.mean([[d[0][i, j] <= t0 and d[1][i, j] <= t1 for j in tops[i]] for i in range(10)])
        cost = 8 + 16 * np.mean(d[0] <= t0) + 24 * np.mean((d[0] <= t0) & (d[1] <= t1))
        if recall >= 0.9:
            best = min(best, cost)
    assert fit.cost == pytest.approx(best) and fit.recall >= 0.9
    with pytest.raises(ValueError, match="query_codes lacks"):
        fit_recall_thresholds(g, query_codes={"l8": q["l8"]})


def test_ctf_with_the_fitted_thresholds_returns_the_target_share_of_the_top_k():
    bits = _data(3, n=60)
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    fit = fit_recall_thresholds(packed, target=0.9, k=5)
    # CtF on the validation codes themselves (k + 1: each query finds itself at distance 0 first)
    top = coarse_to_fine_topk(packed, packed, fit.thresholds, 6, backend="numpy").indices
    d = np.array([[np.sum(a != b) for b in bits["l24"]] for a in bits["l24"]])
    share = []
    for i in range(60):
        ref = sorted((j for j in range(60) if j != i), key=lambda j: (d[i, j], j))[:5]
        share.append(len(set(ref) & set(top[i].tolist())) / 5)
    assert np.mean(share) >= fit.recall - 1e-9 >= 0.9


def test_coarse_grid_keeps_the_target():
    bits = _data(4, lengths=(8, 16, 24))
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    fit = fit_recall_thresholds(packed, target=0.9, k=5, max_grid=40)  # 9 x 17 cells do not fit: steps of 2, 4
    assert fit.recall >= 0.9
    assert fit.thresholds["l16"] % 2 == 0 or fit.thresholds["l16"] == 16


def test_recall_fit_errors_name_the_argument():
    packed = {k: np.asarray(pack_codes(v)) for k, v in _data(0, n=8).items()}
    with pytest.raises(ValueError, match="target must be in"):
        fit_recall_thresholds(packed, target=0)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 7\]"):
        fit_recall_thresholds(packed, k=8)
    with pytest.raises(ValueError, match="at least two code levels"):
        fit_recall_thresholds({"l8": packed["l8"]})
    with pytest.raises(ValueError, match="same images"):
        fit_recall_thresholds({"l8": packed["l8"], "l16": packed["l16"][:5]})


def test_recall_lower_bound_from_its_definition():
    from jhash.search.dto import recall_lower_bound

    z95 = 1.6448536269514722  # standard normal 95 % quantile
    r = np.array([0.5, 0.9, 1.0, 0.0])
    want = r - z95 * np.sqrt(r * (1 - r) / 50)
    np.testing.assert_allclose(recall_lower_bound(r, 50, 0.95), want)
    np.testing.assert_array_equal(recall_lower_bound(r, 50, 0.0), r)
    with pytest.raises(ValueError, match=r"confidence must be in \[0, 1\)"):
        recall_lower_bound(r, 50, 1.0)


@pytest.mark.parametrize("seed,target", [(0, 0.8), (7, 0.9)])
def test_recall_fit_with_confidence_is_the_cheapest_vector_whose_bound_reaches_the_target(seed, target):
    bits = _data(seed)
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    fit = fit_recall_thresholds(packed, target=target, k=5, confidence=0.9)
    z90 = 1.2815515655446004
    table = _brute_force(bits, 5, target)
    bound = {t: r - z90 * np.sqrt(r * (1 - r) / 40) for t, r, _ in table}
    best = min(cost for t, _, cost in table if bound[t] >= target - 1e-12)
    assert fit.cost == pytest.approx(best)
    assert fit.recall_lower >= target and fit.recall_lower == pytest.approx(bound[tuple(fit.thresholds.values())])
    assert fit.num_queries == 40 and fit.confidence == 0.9
    plain = fit_recall_thresholds(packed, target=target, k=5)
    assert fit.cost >= plain.cost and plain.recall_lower == plain.recall
    with pytest.raises(ValueError, match="confidence must be in"):
        fit_recall_thresholds(packed, confidence=-0.1)


def test_gather_cost_and_level_choice_against_every_subset():
    """choose_levels: the cheapest of every subset of the shorter levels (each a brute force over its own
    thresholds, from the definition) and exhaustive longest-code search (cost l_{N-1}, recall 1)."""
    bits = _data(8, n=36, lengths=(8, 16, 24))
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    gather = 20.0
    fit = fit_recall_thresholds(packed, target=0.9, k=5, gather_bits=gather, choose_levels=True)
    options = [((), 1.0, 24.0)]  # exhaustive
    for names in (("l8",), ("l16",), ("l8", "l16")):
        sub = {n: bits[n] for n in names + ("l24",)}
        options += [((names, t), r, c) for t, r, c in _brute_force(sub, 5, 0.9, gather=gather)]
    feasible = [o for o in options if o[1] >= 0.9]
    best = min(c for _, _, c in feasible)
    assert fit.cost == pytest.approx(best)
    chosen = [o for o in feasible if o[2] == pytest.approx(best)]
    assert any(o[0] and o[0][0] + ("l24",) == fit.levels and tuple(fit.thresholds.values()) == o[0][1]
               or not o[0] and fit.levels == ("l24",) for o in chosen)
    assert set(fit.thresholds) == set(fit.levels[:-1]) and fit.recall >= 0.9
    # without choose_levels every level is used; the gather cost makes the first stage tighter, never looser
    both = fit_recall_thresholds(packed, target=0.9, k=5, gather_bits=gather)
    assert both.levels == ("l8", "l16", "l24")
    want = min(c for _, r, c in _brute_force(bits, 5, 0.9, gather=gather) if r >= 0.9)
    assert both.cost == pytest.approx(want)
    with pytest.raises(ValueError, match="gather_bits must be >= 0"):
        fit_recall_thresholds(packed, gather_bits=-1)


def test_measured_stage_costs_against_every_subset():
    """stage_costs: the objective is scan_0 + sum_s fetch_s * P(reaching stage s) (exhaustive: the longest
    level's scan), over every subset of the shorter levels, each a brute force from the definition."""
    bits = _data(9, n=36, lengths=(8, 16, 24))
    packed = {k: np.asarray(pack_codes(v)) for k, v in bits.items()}
    costs = {"l8": (2.0, 30.0), "l16": (1.0, 3.0), "l24": (40.0, 25.0)}
    fit = fit_recall_thresholds(packed, target=0.9, k=5, choose_levels=True, stage_costs=list(costs.values()),
                                gather_bits=1e9)  # gather_bits is not used with stage_costs
    options = [((), 1.0, costs["l24"][0])]  # exhaustive
    for names in (("l8",), ("l16",), ("l8", "l16")):
        sub = {n: bits[n] for n in names + ("l24",)}
        options += [((names, t), r, c) for t, r, c in
                    _brute_force(sub, 5, 0.9, costs=[costs[n] for n in names + ("l24",)])]
    best = min(c for _, r, c in options if r >= 0.9)
    assert fit.cost == pytest.approx(best) and fit.recall >= 0.9
    chosen = [o for o in options if o[1] >= 0.9 and o[2] == pytest.approx(best)]
    assert any(o[0] and o[0][0] + ("l24",) == fit.levels and tuple(fit.thresholds.values()) == o[0][1]
               or not o[0] and fit.levels == ("l24",) for o in chosen)
    # a scan of the longest level cheaper than any cascade: exhaustive search
    cheap = fit_recall_thresholds(packed, target=0.9, k=5, choose_levels=True,
                                  stage_costs=[(2.0, 30.0), (1.0, 3.0), (0.5, 25.0)])
    assert cheap.levels == ("l24",) and cheap.thresholds == {} and cheap.cost == 0.5
    for bad in ([(1.0, 1.0)] * 2, [(1.0, 1.0), (1.0, 0.0), (1.0, 1.0)], [(1.0, 1.0, 1.0)] * 3):
        with pytest.raises(ValueError, match="stage_costs: expected 3 \\(scan, fetch\\) pairs"):
            fit_recall_thresholds(packed, stage_costs=bad)
