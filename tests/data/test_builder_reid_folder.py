"""``reid_folder``: a user's own folders or CSV files, and its error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from jhash import data
from jhash.data import common, reid_folder
from tests.data import fake_trees as ft

tfds = pytest.importorskip("tensorflow_datasets")
tfds.disable_progress_bar()


def _records(data_dir, manual, split, config=None):
    src, info = data.load("reid_folder", split, data_dir=data_dir, manual_dir=manual, config=config)
    return [src[i] for i in range(len(src))], info


def test_folders_default_pattern(tmp_path):
    manual = ft.make_reid_folder_tree(tmp_path / "m")
    train, info = _records(tmp_path / "tfds", manual, "train")
    assert sorted((int(r["pid"]), int(r["camid"])) for r in train) == sorted(ft.FOLDER_SPLITS["train"])
    assert train[0]["path"].startswith(b"train/0000/")  # sub-folders searched, path kept
    assert info.num_classes == 3 and info.num_attributes == 0 and info.protocol == "market"
    gallery, _ = _records(tmp_path / "tfds", manual, "gallery")
    assert -1 in {int(r["pid"]) for r in gallery}


def test_csv_with_attributes_model_color(tmp_path):
    manual = ft.make_reid_csv_tree(tmp_path / "m")
    train, info = _records(tmp_path / "tfds", manual, "train")
    assert info.attribute_names == ft.CSV_ATTRIBUTES and info.num_attributes == 2
    assert info.num_models == 5 and info.num_colors == 3
    rows = [line.split(",") for line in (manual / "train.csv").read_text().splitlines()[1:]]
    by_path = {r["path"].decode(): r for r in train}
    for path, pid, camid, male, backpack, model, color in rows:
        r = by_path[path]
        assert (int(r["pid"]), int(r["camid"]), int(r["model"]), int(r["color"])) == (int(pid), int(camid), int(model), int(color))
        np.testing.assert_array_equal(r["attributes"], [int(male), int(backpack)])
        assert r["image"] == (manual / path).read_bytes()


def test_csv_wins_in_auto_mode_and_folders_can_be_forced(tmp_path):
    manual = ft.make_reid_csv_tree(ft.make_reid_folder_tree(tmp_path / "m"))
    train, info = _records(tmp_path / "tfds", manual, "train")
    assert train[0]["path"].startswith(b"images/")
    train, info = _records(tmp_path / "tfds", manual, "train", {"source": "folders"})
    assert train[0]["path"].startswith(b"train/")


def test_custom_pattern_on_relative_path_and_split_mapping(tmp_path):
    manual = tmp_path / "m"
    for split, folder in (("train", "bounding_box_train"), ("query", "probe"), ("gallery", "bounding_box_test")):
        for pid in (3, 4):
            for cam in (1, 2):
                ft.write_image(manual / folder / f"id{pid}" / f"cam{cam}-frame7.png", pid * 10 + cam)
    cfg = {"pattern": r"^id(?P<pid>\d+)/cam(?P<camid>\d+)-", "match_on": "relpath", "example": "id12/cam3-frame1.png",
           "splits": {"train": "bounding_box_train", "query": "probe", "gallery": "bounding_box_test"},
           "protocol": "market", "image_size": (128, 64)}
    train, info = _records(tmp_path / "tfds", manual, "train", cfg)
    assert sorted((int(r["pid"]), int(r["camid"])) for r in train) == [(3, 1), (3, 2), (4, 1), (4, 2)]
    assert info.image_size == (128, 64)
    query, _ = _records(tmp_path / "tfds", manual, "query", cfg)
    assert len(query) == 4


def test_unmatched_name_error_and_skip(tmp_path):
    manual = ft.make_reid_folder_tree(tmp_path / "m")
    ft.write_image(manual / "query" / "IMG_2024.jpg")
    with pytest.raises(common.FilenameError) as e:
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual)
    msg = str(e.value)
    assert "IMG_2024.jpg" in msg and repr(reid_folder.DEFAULT_PATTERN) in msg
    assert "Example of a valid name: '0000_c2_0004.jpg'" in msg  # the first name that matched
    b = data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config={"skip_unmatched": True})
    assert b.info.metadata["unmatched_skipped"] == 1
    assert b.info.metadata["splits"]["query"]["num_examples"] == 2


def test_configured_example_is_shown_and_checked(tmp_path):
    manual = ft.make_reid_folder_tree(tmp_path / "m")
    cfg = {"pattern": r"^(?P<pid>\d+)-(?P<camid>\d+)", "example": "12-3.jpg"}
    with pytest.raises(common.FilenameError, match=r"Example of a valid name: '12-3\.jpg'"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config=cfg)
    with pytest.raises(ValueError, match="example 'x.jpg' does not match"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config={**cfg, "example": "x.jpg"})


def test_pattern_needs_named_groups(tmp_path):
    manual = ft.make_reid_folder_tree(tmp_path / "m")
    with pytest.raises(ValueError, match=r"named groups.*missing: camid"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config={"pattern": r"(?P<pid>\d+)"})
    with pytest.raises(ValueError, match="not a valid regular expression"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config={"pattern": r"(?P<pid>\d+"})


def test_no_split_folder_lists_contents(tmp_path):
    manual = tmp_path / "m"
    ft.write_image(manual / "images" / "0001_c1_0.jpg")
    with pytest.raises(FileNotFoundError) as e:
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual)
    msg = str(e.value)
    assert str(manual / "train") in msg and "'images'" in msg


def test_missing_split_folder_fails_at_preparation_naming_it(tmp_path):
    import shutil

    manual = ft.make_reid_folder_tree(tmp_path / "m")
    shutil.rmtree(manual / "gallery")
    with pytest.raises(common.ManualDirError, match=r"gallery split\(s\): .*/m/gallery/ not found"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual)
    assert not (tmp_path / "tfds" / "reid_folder" / "default" / "1.0.0").exists()
    # leaving the split out of the mapping does not help: the protocol needs it
    with pytest.raises(common.ManualDirError, match="no gallery split; the market protocol needs train, query, gallery"):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual,
                     config={"splits": {"train": "train", "query": "query"}})


@pytest.mark.parametrize("mutate,pattern", [
    (lambda t: t.replace("path,pid,camid", "file,pid,camid"), r"train\.csv: the header .* lacks path"),
    (lambda t: t.replace("\nimages/train_1.png,1,", "\nimages/train_1.png,one,"), r"train\.csv, line 3: pid 'one' is not an integer"),
    (lambda t: t.replace("images/train_2.png", "images/nope.png"), r"train\.csv, line 4: image 'images/nope.png' not found"),
    (lambda t: t.replace("\nimages/train_0.png,1,1,1,", "\nimages/train_0.png,1,1,7,"), r"line 2: male must be one of \(-1, 0, 1\), got 7"),
    (lambda t: t + "images/train_0.png,1\n", r"line 7: 2 fields, the header has 7"),
])
def test_csv_errors_name_file_and_line(tmp_path, mutate, pattern):
    manual = ft.make_reid_csv_tree(tmp_path / "m")
    f = manual / "train.csv"
    f.write_text(mutate(f.read_text()))
    with pytest.raises(common.DatasetError, match=pattern):
        data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual)


def test_each_option_set_gets_its_own_folder(tmp_path):
    manual = ft.make_reid_folder_tree(tmp_path / "m")
    a = data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual)
    b = data.prepare("reid_folder", data_dir=tmp_path / "tfds", manual_dir=manual, config={"val_fraction": 0.4})
    assert a.data_dir != b.data_dir and re.search(r"default-val_fraction0\.4", b.data_dir)
    assert sorted(b.info.splits) == ["gallery", "query", "train", "val"]
    assert b.info.metadata["num_classes"] + b.info.metadata["splits"]["val"]["num_ids"] == 3
