"""synthetic_reid: deterministic bytes, open-set splits, attributes consistent with identities."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from jhash import data
from jhash.data import synthetic as S

tfds = pytest.importorskip("tensorflow_datasets")
tfds.disable_progress_bar()

SPLITS = ("train", "val", "query", "gallery")
# Split sizes of the `tiny` config (seed 0). They only change if the split plan changes.
TINY_SIZES = {"train": 29, "val": 16, "query": 8, "gallery": 17}


def _records(src):
    return [src[i] for i in range(len(src))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """`tiny` prepared with TFDS: split -> (source, records); plus the DatasetInfo."""
    d = tmp_path_factory.mktemp("synthetic")
    out = {}
    for split in SPLITS:
        src, info = data.load("synthetic_reid", split, data_dir=d, config="tiny")
        out[split] = (src, _records(src))
    return out, info, d


def test_tiny_split_sizes_and_info(tiny):
    splits, info, _ = tiny
    assert {k: len(v[1]) for k, v in splits.items()} == TINY_SIZES
    cfg = S.CONFIGS["tiny"]
    assert info.name == "synthetic_reid"
    assert info.num_classes == cfg.num_train_ids == len({r["pid"] for r in splits["train"][1]})
    assert info.image_size == cfg.image_size
    assert info.num_attributes == len(S.ATTRIBUTE_NAMES) >= 30
    assert info.attribute_names == S.ATTRIBUTE_NAMES
    assert (info.num_models, info.num_colors) == (10, 8)
    assert info.num_train_images == TINY_SIZES["train"]
    assert info == S.dataset_info("tiny")
    for split in SPLITS:
        src, recs = splits[split]
        assert list(src.pids) == [r["pid"] for r in recs]
        assert list(src.camids) == [r["camid"] for r in recs]
        for r in recs:
            im = Image.open(io.BytesIO(r["image"]))
            assert im.format == "JPEG" and im.size == (cfg.image_size[1], cfg.image_size[0])
            assert 1 <= r["camid"] <= cfg.num_cameras
            assert r["attributes"].shape == (len(S.ATTRIBUTE_NAMES),) and r["attributes"].dtype == np.int32
            name = r["path"].decode().split("/")[-1]
            assert name.startswith(("-1" if r["pid"] < 0 else f"{r['pid']:04d}") + f"_c{r['camid']}s1_")
        paths = [r["path"] for r in recs]
        assert paths == sorted(paths)  # stored order is path order, as for every jhash builder


def test_identities_are_disjoint_open_set(tiny):
    splits, _, _ = tiny
    ids = {k: {r["pid"] for r in v[1]} for k, v in splits.items()}
    test_ids = ids["query"] | (ids["gallery"] - {0, -1})
    assert ids["train"].isdisjoint(test_ids)
    assert ids["val"].isdisjoint(ids["train"]) and ids["val"].isdisjoint(test_ids)
    assert ids["query"] == ids["gallery"] - {0, -1}
    assert min(ids["train"] | ids["val"] | test_ids) >= 1


def test_gallery_distractors_junk_and_cross_camera_matches(tiny):
    splits, _, _ = tiny
    cfg = S.CONFIGS["tiny"]
    gallery = splits["gallery"][1]
    pids = [r["pid"] for r in gallery]
    assert pids.count(0) == cfg.num_distractors and pids.count(-1) == cfg.num_junk
    for q in splits["query"][1]:
        assert any(g["pid"] == q["pid"] and g["camid"] != q["camid"] for g in gallery), q["path"]
    # At most one query per identity and camera, at most queries_per_id per identity.
    keys = [(q["pid"], q["camid"]) for q in splits["query"][1]]
    assert len(keys) == len(set(keys))
    per_id = defaultdict(int)
    for p, _ in keys:
        per_id[p] += 1
    assert max(per_id.values()) <= cfg.queries_per_id


def test_attributes_are_a_function_of_the_identity(tiny):
    splits, _, _ = tiny
    seen = {}
    for split in SPLITS:
        for r in splits[split][1]:
            labels = (tuple(r["attributes"].tolist()), int(r["model"]), int(r["color"]))
            if r["pid"] > 0:
                assert seen.setdefault(r["pid"], labels) == labels, r["path"]
            a = dict(zip(S.ATTRIBUTE_NAMES, labels[0]))
            assert set(labels[0]) <= {0, 1}
            # One upper and one lower colour; `color` is the upper colour's index.
            assert sum(labels[0][:8]) == 1 and sum(labels[0][8:16]) == 1
            assert labels[2] == labels[0][:8].index(1)
            # `model` is the silhouette: build x lower garment, or a long coat.
            lower = 1 if a["lower_short"] else 2 if a["lower_skirt"] else 0
            build = 0 if a["build_slim"] else 2 if a["build_heavy"] else 1
            assert labels[1] == (9 if a["long_coat"] else build * 3 + lower)
            assert a["lower_short"] + a["lower_skirt"] + a["long_coat"] <= 1
    for pid, labels in list(seen.items())[:5]:
        ident = S.make_identity(0, pid)
        assert (tuple(ident.attributes.tolist()), ident.model, ident.color) == labels


def test_two_builds_give_identical_bytes_and_the_lazy_source_matches(tiny, tmp_path):
    splits, _, _ = tiny
    for split in ("train", "gallery"):
        again, _ = data.load("synthetic_reid", split, data_dir=tmp_path, config="tiny")
        lazy = S.SyntheticSource(split, "tiny")
        for i, r in enumerate(splits[split][1]):
            for other in (again[i], lazy[i]):
                assert other["image"] == r["image"] and other["path"] == r["path"]
                assert (other["pid"], other["camid"], other["model"], other["color"]) == (
                    r["pid"], r["camid"], r["model"], r["color"])
                np.testing.assert_array_equal(other["attributes"], r["attributes"])


def test_another_seed_gives_other_data():
    a, b = S.SyntheticSource("train", "tiny"), S.SyntheticSource("train", "tiny", seed=1)
    assert b.config.name == "tiny-seed1"
    assert list(a.pids) != list(b.pids)
    assert a[0]["image"] != b[0]["image"]
    # ... also through the registry's config dicts.
    cfg = data.builder_class("synthetic_reid").BUILDER_CONFIGS
    assert [c.name for c in cfg] == ["default", "tiny", "large"]


def test_lazy_source_interface():
    src = S.SyntheticSource("query", "tiny")
    assert len(src) == TINY_SIZES["query"]
    assert [r["path"] for r in src.__getitems__([0, 1])] == [src[0]["path"], src[1]["path"]]
    assert src[-1]["path"] == src[len(src) - 1]["path"]
    with pytest.raises(IndexError, match="out of range"):
        src[len(src)]
    with pytest.raises(ValueError, match="splits"):
        S.SyntheticSource("test", "tiny")
    with pytest.raises(ValueError, match="unknown synthetic_reid config"):
        S.SyntheticSource("train", "huge")


def test_default_and_large_plans():
    default = S.plan(S.CONFIGS["default"])
    n = {k: len(v) for k, v in default.items()}
    assert len(set(default["train"].pid.tolist())) == 300 and 1800 <= n["train"] <= 3000
    assert len(set(default["val"].pid.tolist())) == 50
    assert len(set(default["query"].pid.tolist())) == 200 and n["query"] == 400
    large = S.plan(S.CONFIGS["large"])
    assert len(large["gallery"]) >= 500_000
    assert (large["gallery"].pid == 0).sum() == 500_000
    # The large config has the default config's identities and splits, only more distractors.
    for split in ("train", "val", "query"):
        np.testing.assert_array_equal(large[split].pid, default[split].pid)
    src = S.SyntheticSource("gallery", "large")
    rec = src[len(src) - 1]  # random access into the lazy gallery, rendered on demand
    assert Image.open(io.BytesIO(rec["image"])).size == (32, 64)


def test_camera_and_view_change_the_picture():
    """The same identity looks different from another camera; different identities differ too."""
    cfg = S.CONFIGS["default"]
    cams = S.make_cameras(cfg.seed, cfg.num_cameras)
    assert len({c.view_p for c in cams}) == cfg.num_cameras
    ident = S.make_identity(0, 1)
    imgs = [S.render(ident, cam, np.random.default_rng(3), cfg.image_size).astype(np.float32) for cam in cams]
    means = np.array([im.mean(axis=(0, 1)) for im in imgs])
    assert np.ptp(means, axis=0).max() > 20  # lighting / colour cast per camera
    assert all(im.shape == (*cfg.image_size, 3) for im in imgs)


def test_upper_colour_is_visible():
    """A learnability check: the torso's mean colour (no camera effects) is nearest its palette colour."""
    cam = S.Camera(view_p=(1.0, 0, 0, 0), scale=(0.9, 0.9), gain=1.0, cast=np.ones(3, np.float32), contrast=1.0,
                   bg_top=np.full(3, 128, np.float32), bg_bottom=np.full(3, 128, np.float32), clutter=0,
                   clutter_rgb=((0, 0, 0),), resolution=1.0, noise=0.0, occlusion=0.0)
    hits = 0
    keys = [k for k in range(1, 400) if not S.make_identity(0, k, labels_only=True).attributes[25]][:40]
    for key in keys:  # identities without stripes
        ident = S.make_identity(0, key)
        im = S.render(ident, cam, np.random.default_rng(0), (128, 64)).astype(np.float32)
        patch = im[45:55, 28:36].reshape(-1, 3).mean(0)  # the chest, below the logo
        nearest = int(np.argmin(((np.array(S._UPPER_RGB, np.float32) - patch) ** 2).sum(1)))
        hits += nearest == ident.color
    assert hits >= 0.8 * len(keys)
