"""The grain pipeline: batch contract, P x K, determinism, resume, workers, evaluation order."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from jhash.data import pipeline as P
from jhash.data import synthetic as S

SIZE = (32, 16)
TRAIN_KEYS = {"image", "label", "pid", "camid", "index", "attributes", "model", "color"}


@pytest.fixture(scope="module")
def train():
    return S.SyntheticSource("train", "tiny"), S.dataset_info("tiny")


def _loader(train, **kw):
    src, info = train
    args = dict(batch_p=4, batch_k=2, image_size=SIZE, seed=0)
    args.update(kw)
    return P.train_loader(src, info, **args)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_batch_contract(train):
    src, info = train
    b = next(_loader(train))
    assert set(b) == TRAIN_KEYS
    assert b["image"].dtype == np.float32 and b["image"].shape == (8, *SIZE, 3)
    for k in TRAIN_KEYS - {"image"}:
        assert b[k].dtype == np.int32, k
    assert b["attributes"].shape == (8, info.num_attributes)
    # Normalised (ImageNet mean / std): roughly centred, certainly not 0..255.
    assert -3 < b["image"].mean() < 3 and b["image"].max() < 3
    lm = P.label_map(src)
    assert sorted(lm.values()) == list(range(info.num_classes)) and list(lm) == sorted(lm)
    assert [lm[p] for p in b["pid"]] == b["label"].tolist()
    for i, idx in enumerate(b["index"]):
        rec = src[int(idx)]
        assert rec["pid"] == b["pid"][i] and rec["camid"] == b["camid"][i]
        np.testing.assert_array_equal(rec["attributes"], b["attributes"][i])


def test_px_k_batches(train):
    it = _loader(train, batch_p=4, batch_k=4)  # tiny ids have 2..6 images: some drawn with replacement
    assert it.steps_per_epoch == 29 // 16
    for b in _take(it, 6):
        counts = Counter(b["label"].tolist())
        assert len(counts) == 4 and set(counts.values()) == {4}
    assert (it.step, it.epoch) == (6, 6 // it.steps_per_epoch)


def test_same_seed_same_batches_other_seed_differs(train):
    a, b, c = _take(_loader(train), 4), _take(_loader(train), 4), _take(_loader(train, seed=1), 4)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))


def test_resume_from_saved_state_gives_the_same_next_batches(train):
    it = _loader(train, prefetch=3)
    _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    expected = _take(it, 4)  # the uninterrupted run
    fresh = _loader(train, prefetch=0)
    fresh.set_state(state)
    assert fresh.step == 3
    assert all(_same(x, y) for x, y in zip(expected, _take(fresh, 4)))
    # Rewinding an iterator in use works too.
    it.set_state(state)
    assert _same(next(it), expected[0])
    assert _same(it.batch_at(3), expected[0])


def test_state_of_another_stream_is_refused(train):
    state = _loader(train).get_state()
    with pytest.raises(ValueError, match="another input stream"):
        _loader(train, seed=5).set_state(state)
    with pytest.raises(ValueError, match="another input stream"):
        _loader(train, batch_k=3).set_state(state)
    with pytest.raises(ValueError, match="version"):
        _loader(train).set_state({**state, "version": 99})


def test_workers_give_the_same_batches_and_resume(train):
    ref = _take(_loader(train, num_workers=0, prefetch=0), 5)
    it = _loader(train, num_workers=2, prefetch=2)
    try:
        got = _take(it, 3)
        state = it.get_state()
        assert all(_same(x, y) for x, y in zip(ref, got))
    finally:
        it.close()
    resumed = _loader(train, num_workers=0)
    resumed.set_state(state)  # saved with 2 workers, resumed with none
    assert all(_same(x, y) for x, y in zip(ref[3:], _take(resumed, 2)))


def test_augmentation_config(train):
    plain = next(_loader(train, augment_config={"flip_prob": 0, "pad": 0, "erase_prob": 0}))
    evals = next(iter(P.eval_loader(train[0], batch_size=len(train[0]), image_size=SIZE)))
    np.testing.assert_array_equal(plain["image"], evals["image"][plain["index"]])
    augmented = next(_loader(train))
    np.testing.assert_array_equal(augmented["index"], plain["index"])  # same records, other pixels
    assert not np.array_equal(augmented["image"], plain["image"])


def test_label_map_must_match_info(train):
    src, info = train
    with pytest.raises(ValueError, match="num_classes"):
        P.train_loader(src, dataclasses.replace(info, num_classes=3), batch_p=2, batch_k=2, image_size=SIZE,
                       seed=0)
    assert P.label_map(S.SyntheticSource("gallery", "tiny")).keys().isdisjoint({0, -1})


@pytest.mark.parametrize("pad_last", [False, True])
def test_eval_loader_fixed_order(pad_last):
    src = S.SyntheticSource("gallery", "tiny")  # 17 records
    loader = P.eval_loader(src, batch_size=5, image_size=SIZE, pad_last=pad_last)
    assert len(loader) == 4
    for _ in range(2):  # re-iterable, same result
        batches = list(loader)
        assert len(batches) == 4
        keys = {"image", "pid", "camid", "index", "attributes", "model", "color"} | ({"mask"} if pad_last else set())
        assert all(set(b) == keys for b in batches)
        sizes = [len(b["index"]) for b in batches]
        assert sizes == ([5, 5, 5, 5] if pad_last else [5, 5, 5, 2])
        idx = np.concatenate([b["index"] for b in batches])
        pids = np.concatenate([b["pid"] for b in batches])
        if pad_last:
            mask = np.concatenate([b["mask"] for b in batches])
            assert mask.sum() == 17 and not mask[17:].any()
            assert (idx[17:] == -1).all() and (batches[-1]["image"][2:] == 0).all()
            idx, pids = idx[mask], pids[mask]
        np.testing.assert_array_equal(idx, np.arange(17))
        np.testing.assert_array_equal(pids, src.pids)
    # With labels (a pass over the training set) and with workers: same batches.
    tr = S.SyntheticSource("train", "tiny")
    lm = P.label_map(tr)
    with_labels = list(P.eval_loader(tr, batch_size=8, image_size=SIZE, labels=lm))
    assert np.concatenate([b["label"] for b in with_labels]).tolist() == [lm[p] for p in tr.pids]


def test_eval_loader_with_workers_matches():
    src = S.SyntheticSource("query", "tiny")
    a = list(P.eval_loader(src, batch_size=3, image_size=SIZE))
    b = list(P.eval_loader(src, batch_size=3, image_size=SIZE, num_workers=2))
    assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


class _Broken:
    """A source whose record 2 holds bytes that are no image."""

    def __init__(self):
        self._src = S.SyntheticSource("query", "tiny")
        self.pids = self._src.pids

    def __len__(self):
        return len(self._src)

    def __getitem__(self, i):
        rec = self._src[i]
        if i == 2:
            rec["image"] = b"\xff\xd8 truncated"
        return rec


def test_decoding_error_names_the_record():
    from jhash.data.common import CorruptImageError

    src = _Broken()
    with pytest.raises(CorruptImageError, match=r"query/\d{4}_c\ds1_000002_00\.jpg \(record 2\)"):
        list(P.eval_loader(src, batch_size=4, image_size=SIZE))


def test_works_on_a_prepared_tfds_source(tmp_path):
    from jhash import data

    src, info = data.load("synthetic_reid", "train", data_dir=tmp_path, config="tiny")
    lazy = S.SyntheticSource("train", "tiny")
    a = _take(P.train_loader(src, info, batch_p=4, batch_k=2, image_size=SIZE, seed=3), 2)
    b = _take(P.train_loader(lazy, info, batch_p=4, batch_k=2, image_size=SIZE, seed=3), 2)
    assert all(_same(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("processes", [2, 4])
def test_process_shares_make_up_the_one_process_batch(train, processes):
    """Every process draws the same global P x K batch and keeps its rows: concatenated in process order the
    shares equal a one-process batch (same records, same augmentation), so the global batch has P identities."""
    one = _take(_loader(train, augment_config={"erase_prob": 0.0}), 3)
    shares = [_take(_loader(train, augment_config={"erase_prob": 0.0}, process_index=i, process_count=processes), 3)
              for i in range(processes)]
    for step, whole in enumerate(one):
        parts = [s[step] for s in shares]
        assert all(len(p["image"]) == 8 // processes for p in parts)
        glued = {k: np.concatenate([p[k] for p in parts]) for k in whole}
        assert _same(glued, whole), step
        assert len(set(glued["pid"].tolist())) == 4


def test_a_share_that_does_not_divide_the_batch_is_refused(train):
    with pytest.raises(ValueError, match="must divide evenly over 3 processes"):
        _loader(train, process_index=0, process_count=3)


def test_uint8_batches_become_the_float_batches_on_the_device(train):
    """uint8 images + erase boxes, normalised in jitted code, are the float32 batches of the host pipeline
    (up to one float32 rounding: XLA may fuse the scale and offset into one multiply-add), also from a worker."""
    import jax

    from jhash.data import device

    aug = {"erase_prob": 1.0}  # an erase box in every image
    floats = _take(_loader(train, augment_config=aug), 3)
    for workers in (0, 1):
        it = _loader(train, augment_config=aug, num_workers=workers)
        mean, std = it.send_uint8()
        batches = _take(it, 3)
        it.close()
        to_float = jax.jit(lambda b: device.train_images(b, mean, std))
        for f, u in zip(floats, batches):
            assert u["image"].dtype == np.uint8 and u["erase"].dtype == np.int32 and u["erase"].shape == (8, 4)
            assert (u["erase"][:, 2:] > 0).all() and set(u) == set(f) | {"erase"}
            assert all(np.array_equal(u[k], f[k]) for k in f if k != "image")
            # one rounding of x * scale (|x * scale| < 2.7, so < 2.4e-7) where XLA fuses the multiply-add
            np.testing.assert_allclose(np.asarray(to_float(u)), f["image"], rtol=0, atol=2.4e-7)
    # float images pass through unchanged
    np.testing.assert_array_equal(device.train_images({"image": floats[0]["image"]}), floats[0]["image"])


def test_uint8_batches_resume_and_keep_the_stream(train):
    it = _loader(train)
    first = next(it)
    state = it.get_state()
    it.send_uint8()  # switching mid-stream keeps the position; the state does not depend on the image format
    assert it.get_state() == state
    b = next(it)
    it.close()
    again = _loader(train)
    again.set_state(state)
    assert np.array_equal(next(again)["index"], b["index"]) and not np.array_equal(first["index"], b["index"])


def test_random_erase_fill_stays_float(train):
    it = _loader(train, augment_config={"erase_fill": "random", "erase_prob": 1.0})
    assert it.send_uint8() is None
    assert next(it)["image"].dtype == np.float32
