"""P x K sampling: invariants, determinism under a seed, epochs."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jhash.data.sampler import PKSampler


def _labels(seed=0, n_ids=12):
    """Identities with 1..9 images each (some fewer than K), shuffled, with a few unlabelled records."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(rng.integers(1, 10), i) for i in range(n_ids)] + [np.full(3, -1)])
    return rng.permutation(labels)


@pytest.mark.parametrize("p,k", [(4, 4), (3, 2), (12, 1)])
def test_every_batch_has_p_distinct_ids_with_k_images_each(p, k):
    labels = _labels()
    s = PKSampler(labels, p=p, k=k, seed=0)
    assert s.steps_per_epoch == max(1, int((labels >= 0).sum()) // (p * k))
    for step in range(3 * s.steps_per_epoch):
        b = s.batch(step)
        assert b.shape == (p * k,)
        lab = labels[b]
        assert (lab >= 0).all()  # unlabelled records are never sampled
        counts = Counter(lab.tolist())
        assert len(counts) == p and set(counts.values()) == {k}
        # Rows j*K:(j+1)*K share one identity.
        assert all(len(set(lab[j * k:(j + 1) * k])) == 1 for j in range(p))
        # An identity's K images are distinct records when it has at least K of them.
        for j in range(p):
            idx = b[j * k:(j + 1) * k]
            if (labels == lab[j * k]).sum() >= k:
                assert len(set(idx.tolist())) == k


def test_identities_with_fewer_than_k_images_are_sampled_with_replacement():
    labels = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    s = PKSampler(labels, p=2, k=4, seed=0, steps_per_epoch=50)
    seen = Counter()
    for b in s.epoch(0):
        for j in range(2):
            seen[int(labels[b[j * 4]])] += 1
    assert set(seen) == {0, 1, 2, 3}  # every identity gets picked, including the one with one image
    one = [b[j * 4:(j + 1) * 4] for b in s.epoch(0) for j in range(2) if labels[b[j * 4]] == 0]
    assert all((g == 0).all() for g in one)


def test_same_seed_same_batches_other_seed_other_batches():
    labels = _labels()
    a, b, c = (PKSampler(labels, p=4, k=2, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.epoch(0), b.epoch(0))
    np.testing.assert_array_equal(a.epoch(3), b.epoch(3))
    assert not np.array_equal(a.epoch(0), c.epoch(0))
    assert not np.array_equal(a.epoch(0), a.epoch(1))  # each epoch reshuffles
    # Random access equals the epoch tables, in any order, and survives pickling (grain workers).
    steps = [5, 0, 2 * a.steps_per_epoch + 1, 1]
    clone = pickle.loads(pickle.dumps(a))
    for step in steps:
        e, i = divmod(step, a.steps_per_epoch)
        np.testing.assert_array_equal(clone.batch(step), b.epoch(e)[i])


def test_an_epoch_covers_most_images():
    labels = np.repeat(np.arange(30), 8)  # 240 images, 30 ids x 8
    s = PKSampler(labels, p=6, k=4, seed=0)
    assert s.steps_per_epoch == 10
    for e in range(5):
        # 2 groups of K per identity: an epoch uses about all of them (a fresh round starts when
        # fewer than P identities have groups left, near the end).
        assert len(set(s.epoch(e).reshape(-1).tolist())) >= 0.9 * 240


def test_too_few_identities():
    with pytest.raises(ValueError, match="at least P=5 identities"):
        PKSampler(np.array([0, 0, 1, 1]), p=5, k=2, seed=0)
    with pytest.raises(ValueError, match="P and K"):
        PKSampler(np.array([0, 1]), p=0, k=2, seed=0)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=2, max_size=12), p=st.integers(1, 4), k=st.integers(1, 5),
       seed=st.integers(0, 2**16), step=st.integers(0, 50))
def test_px_k_invariants_hold_for_any_split(sizes, p, k, seed, step):
    if len(sizes) < p:
        p = len(sizes)
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(sizes)), sizes))
    b = PKSampler(labels, p=p, k=k, seed=seed).batch(step)
    counts = {}
    for j in range(p):  # count by hand, group by group
        group = labels[b[j * k:(j + 1) * k]]
        assert (group == group[0]).all()
        counts[int(group[0])] = counts.get(int(group[0]), 0) + len(group)
    assert len(counts) == p and all(c == k for c in counts.values())


@given(n=st.integers(1, 64), count=st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_process_rows_partition_the_batch_in_order(n, count):
    from jhash.data.sampler import process_rows

    if n % count:
        with pytest.raises(ValueError, match="must divide evenly"):
            process_rows(n, 0, count)
        return
    rows = [list(range(n))[process_rows(n, i, count)] for i in range(count)]
    assert sum(rows, []) == list(range(n))
    assert {len(r) for r in rows} == {n // count}
