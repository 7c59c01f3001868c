"""Prepared datasets are never stale: source fingerprints, rebuilds, leftovers, unreadable entries, options."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from jhash import data
from jhash.data import common
from tests.data import fake_trees as ft

pytest.importorskip("tensorflow_datasets")


def _train_paths(data_dir, manual=None, config=None):
    src, _ = data.load("reid_folder", "train", data_dir=data_dir, manual_dir=manual, config=config, progress=False)
    return sorted(src[i]["path"].decode() for i in range(len(src)))


def _records(root):
    tree = common.FolderTree(root)
    return {"train": [tree.record(rel, pid=int(rel.split("-")[0].split("/")[-1]), camid=1)
                      for rel in tree.images("train")]}


# ---------------------------------------------------------------------------------------------------
# The fingerprint itself.


def test_fingerprint_follows_every_change_and_nothing_else(tmp_path):
    root = ft.make_pid_cam_n_tree(tmp_path / "a")
    fp = lambda recs, opts=None: common.source_fingerprint(recs, opts or {"config": 1})["digest"]
    first = fp(_records(root))
    assert fp(_records(root)) == first  # listing again: same digest
    f = root / "train" / "1-1-1.jpg"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = fp(_records(root))
    assert touched != first
    f.write_bytes(f.read_bytes() + b"\0")  # resized
    resized = fp(_records(root))
    assert resized not in (first, touched)
    f.rename(root / "train" / "7-1-1.jpg")  # renamed: another path (and label)
    assert fp(_records(root)) not in (first, touched, resized)
    assert fp(_records(root), {"config": 2}) != fp(_records(root))  # options count
    recs = _records(root)
    recs["train"][0].pid = 99  # a relabelled image (e.g. a changed list file)
    assert fp(recs) != fp(_records(root))


def test_fingerprint_counts_images_and_bytes(tmp_path):
    root = ft.make_pid_cam_n_tree(tmp_path / "a")
    recs = _records(root)
    got = common.source_fingerprint(recs, {})
    sizes = [p.stat().st_size for p in (root / "train").iterdir()]
    assert got["num_images"] == len(ft.PCN_TRAIN) and got["num_bytes"] == sum(sizes)


# ---------------------------------------------------------------------------------------------------
# prepare / load.


def test_other_manual_dir_rebuilds_and_unchanged_source_is_reused(tmp_path, capsys):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    b = ft.make_pid_cam_n_tree(tmp_path / "b", train=ft.PCN_TRAIN[:8])
    d = tmp_path / "tfds"
    assert len(_train_paths(d, a)) == len(ft.PCN_TRAIN)
    assert _train_paths(d, b) == sorted(f"train/{p}-{c}-{n}.jpg" for p, c, n in ft.PCN_TRAIN[:8])
    builder = data.prepare("reid_folder", data_dir=d, manual_dir=b, progress=True)
    err = capsys.readouterr().err
    assert "rebuilding" not in err and "preparing" not in err  # same source: reused, silently
    assert builder.info.metadata["source"]["manual_dir"] == str(b.resolve())
    # no manual_dir: the folder it was prepared from (b), still unchanged
    assert len(_train_paths(d)) == 8


def test_changed_source_rebuilds_saying_why(tmp_path, capsys):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    d = tmp_path / "tfds"
    _train_paths(d, a)
    ft.write_image(a / "train" / "9-1-1.jpg", seed=5)
    capsys.readouterr()
    data.prepare("reid_folder", data_dir=d, manual_dir=a, progress=True)
    err = capsys.readouterr().err
    assert f"its source {a.resolve()} changed since preparation" in err and "rebuilding" in err
    assert "train/9-1-1.jpg" in _train_paths(d, a)
    (a / "train" / "9-1-1.jpg").unlink()
    assert "train/9-1-1.jpg" not in _train_paths(d, a)


def test_failed_rebuild_keeps_the_previous_dataset(tmp_path):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    d = tmp_path / "tfds"
    before = _train_paths(d, a)
    ft.corrupt_image(ft.write_image(a / "train" / "9-1-1.jpg"))
    with pytest.raises(common.CorruptImageError, match="9-1-1.jpg"):
        data.prepare("reid_folder", data_dir=d, manual_dir=a, progress=False)
    (a / "train" / "9-1-1.jpg").unlink()  # back as it was: the kept dataset is current again
    builder = data.prepare("reid_folder", data_dir=d, manual_dir=a, progress=False)
    assert _train_paths(d, a) == before
    assert not list(builder.data_path.parent.glob(".previous.*"))


def test_gone_source_uses_prepared_data_saying_so_but_other_missing_dir_fails(tmp_path, capsys):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    d = tmp_path / "tfds"
    n = len(_train_paths(d, a))
    shutil.rmtree(a)
    capsys.readouterr()
    assert data.load("reid_folder", "train", data_dir=d, manual_dir=a)[0].pids.size == n
    assert "is not available; using the dataset prepared from it" in capsys.readouterr().err
    with pytest.raises(common.ManualDirError, match="elsewhere"):
        _train_paths(d, tmp_path / "elsewhere")


def test_leftover_incomplete_folders_are_removed(tmp_path):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    d = tmp_path / "tfds"
    leftover = d / "reid_folder" / "default" / "incomplete.AB12CD_1.0.0"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "part.array_record").write_bytes(b"x")
    _train_paths(d, a)
    assert not leftover.exists()
    assert (d / "reid_folder" / "default" / "1.0.0" / "dataset_info.json").is_file()


# ---------------------------------------------------------------------------------------------------
# Unreadable entries named like images.


@pytest.mark.parametrize("kind", ["broken_link", "folder", "fifo"])
def test_unreadable_entries_are_reported_and_skipped_only_when_asked(tmp_path, kind):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    bad = a / "train" / "8-1-1.jpg"
    if kind == "broken_link":
        bad.symlink_to(tmp_path / "gone.jpg")
        message = "is a broken symbolic link"
    elif kind == "folder":
        bad.mkdir()
        message = "is a folder named like an image"
    else:
        os.mkfifo(bad)
        message = "is not a regular file"
    with pytest.raises(common.CorruptImageError, match=rf"8-1-1\.jpg {message}.*--skip_corrupt"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=a, progress=False)
    b = data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=a, progress=False, skip_corrupt=True)
    skipped = b.info.metadata["skipped"]
    assert skipped["count"] == 1 and skipped["files"][0].endswith("8-1-1.jpg")
    assert b.info.metadata["splits"]["train"]["num_examples"] == len(ft.PCN_TRAIN)


# ---------------------------------------------------------------------------------------------------
# Options.


def test_with_options_merges_on_top_of_the_config():
    assert data.with_options("500k", {}) == "500k"
    assert data.with_options(None, None) is None
    assert data.with_options(None, {"val_fraction": 0.1}) == {"val_fraction": 0.1}
    assert data.with_options("labeled", {"split": 3}) == {"base": "labeled", "split": 3}
    assert data.with_options({"val_fraction": 0.1, "val_seed": 1}, {"val_fraction": 0.2}) == {
        "val_fraction": 0.2, "val_seed": 1}


def test_options_equal_to_the_defaults_keep_the_default_folder_and_long_names_are_hashed():
    cls = data.builder_class("reid_folder")
    from jhash.data import reid_folder

    same = common.make_config(cls, {"pattern": reid_folder.DEFAULT_PATTERN, "splits": dict(reid_folder.DEFAULT_SPLITS),
                                    "match_on": "name"})
    assert same.name == "default"
    custom = common.make_config(cls, {"pattern": r"^(?P<pid>\d+)x(?P<camid>\d+)", "example": "12x3.jpg",
                                      "splits": {"train": "tr", "query": "q", "gallery": "g"}, "val_fraction": 0.25})
    assert custom.name.startswith("default-") and len(custom.name) <= common.MAX_CONFIG_NAME
    again = common.make_config(cls, {"val_fraction": 0.25, "example": "12x3.jpg", "pattern": r"^(?P<pid>\d+)x(?P<camid>\d+)",
                                     "splits": {"train": "tr", "query": "q", "gallery": "g"}})
    assert again.name == custom.name and again.splits == {"train": "tr", "query": "q", "gallery": "g"}


@pytest.mark.parametrize("name,expected", [
    ("12-3-7.jpg", (12, 3)), ("-1-2-1.jpg", (-1, 2)), ("0001_c1_0001.jpg", (1, 1)), ("0002_c1s1_000451_03.jpg", (2, 1)),
    ("7-c4-2.png", (7, 4)), ("15_2_1.jpg", (15, 2)),
])
def test_default_pattern_reads_both_conventions(name, expected):
    import re

    from jhash.data import reid_folder

    m = re.search(reid_folder.DEFAULT_PATTERN, name)
    assert (int(m.group("pid")), int(m.group("camid"))) == expected


def test_custom_pattern_through_options_and_val_held_out(tmp_path):
    root = tmp_path / "m"
    for split, items in (("train", ft.PCN_TRAIN), ("query", ft.PCN_QUERY), ("gallery", ft.PCN_GALLERY)):
        for k, (pid, cam, n) in enumerate(items):
            ft.write_image(root / split / f"person{pid}_cam{cam}_{n}.jpg", k)
    options = {"pattern": r"^person(?P<pid>-?\d+)_cam(?P<camid>\d+)", "example": "person12_cam3_1.jpg",
               "val_fraction": 0.2}
    src, info = data.load("reid_folder", "train", data_dir=tmp_path / "tfds", manual_dir=root,
                          config=data.with_options("default", options), progress=False)
    val, _ = data.load("reid_folder", "val", data_dir=tmp_path / "tfds", manual_dir=root,
                       config=data.with_options("default", options), progress=False)
    train_ids, val_ids = set(src.pids.tolist()), set(val.pids.tolist())
    assert train_ids | val_ids == {1, 2, 3, 4, 5, 6} and not train_ids & val_ids and len(val_ids) == 1
    assert info.num_classes == 5 and np.all(np.isin(src.camids, [1, 2]))
