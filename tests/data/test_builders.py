"""Every TFDS builder, built from a tiny fake tree in the dataset's real layout."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jhash import data
from jhash.data import common
from tests.data import fake_trees as ft

tfds = pytest.importorskip("tensorflow_datasets")
tfds.disable_progress_bar()


def _load_all(name, data_dir, manual_dir, config=None):
    b = data.prepare(name, data_dir=data_dir, manual_dir=manual_dir, config=config)
    out = {}
    for split in b.info.splits:
        src, info = data.load(name, split, data_dir=data_dir, manual_dir=manual_dir, config=config)
        out[split] = (src, [src[i] for i in range(len(src))])
    return b, out, info


def _sizes(splits):
    return {k: len(v[1]) for k, v in splits.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each dataset (default config) prepared once for the module: name -> (builder, splits, info, manual_dir)."""
    root = tmp_path_factory.mktemp("built")
    cache = {}

    def get(name, config=None, maker=None):
        key = (name, repr(config), maker)
        if key not in cache:
            manual = (maker or ft.MAKERS[name])(root / f"manual_{len(cache)}")
            cache[key] = (*_load_all(name, root / "tfds", manual, config), manual)
        return cache[key]

    get.data_dir = root / "tfds"
    return get


# ---------------------------------------------------------------------------------------------------
# Registry and API.


def test_registry_lists_every_builder():
    assert set(data.available()) >= {"market1501", "dukemtmc_reid", "cuhk03_np", "msmt17", "veri776",
                                     "vehicleid", "reid_folder", "synthetic_reid"}
    for name in ("market1501", "dukemtmc_reid", "cuhk03_np", "msmt17", "veri776", "vehicleid", "reid_folder"):
        assert data.builder_class(name).name == name


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'market'.*market1501.*vehicleid"):
        data.builder_class("market")


def test_unknown_config_and_field(tmp_path):
    with pytest.raises(ValueError, match="unknown config 'big'.*default, 500k"):
        data.prepare("market1501", data_dir=tmp_path, config="big")
    with pytest.raises(ValueError, match="unknown config field.*val_fractoin"):
        data.prepare("market1501", data_dir=tmp_path, config={"val_fractoin": 0.1})


def test_make_config_names_variants():
    cls = data.builder_class("market1501")
    assert common.make_config(cls, None) is None
    assert common.make_config(cls, "500k").distractors_500k
    c = common.make_config(cls, {"base": "500k", "val_fraction": 0.2})
    assert c.name == "500k-val_fraction0.2" and c.distractors_500k and c.val_fraction == 0.2
    assert common.make_config(cls, {"base": "500k"}) is common.make_config(cls, "500k")


@pytest.mark.parametrize("name", sorted(ft.EXPECTED))
def test_split_sizes_order_and_records(built, name):
    b, splits, info, manual = built(name, {"cuhk03_np": "labeled", "vehicleid": "small"}.get(name))
    exp = ft.EXPECTED[name]
    assert _sizes(splits) == {k: v for k, v in exp.items() if k != "num_classes"}
    assert info.num_classes == exp["num_classes"]
    assert info.num_train_images == exp["train"]
    for split, (src, recs) in splits.items():
        paths = [r["path"].decode() for r in recs]
        assert paths == sorted(paths), f"{split} not in path order"
        # pids/camids from the metadata agree with the records
        np.testing.assert_array_equal(src.pids, [int(r["pid"]) for r in recs])
        np.testing.assert_array_equal(src.camids, [int(r["camid"]) for r in recs])
        for r in recs:  # the stored bytes are the original file, decodable
            with Image.open(io.BytesIO(r["image"])) as im:
                assert im.size == ft.SIZE
        assert src.__getitems__([0])[0]["path"] == recs[0]["path"]


# ---------------------------------------------------------------------------------------------------
# Market-1501.


def test_market_parsing_junk_distractors_and_attributes(built):
    b, splits, info, manual = built("market1501")
    train = splits["train"][1]
    assert [(int(r["pid"]), int(r["camid"])) for r in train] == ft.MARKET_TRAIN
    gallery = splits["gallery"][1]
    assert sorted((int(r["pid"]), int(r["camid"])) for r in gallery) == sorted(ft.MARKET_GALLERY)
    assert {-1, 0} <= {int(r["pid"]) for r in gallery}  # junk and distractors kept with their pids
    assert info.protocol == "market" and info.image_size == (256, 128)
    assert info.num_attributes == 30 and info.attribute_names[:5] == (
        "age_young", "age_teenager", "age_adult", "age_old", "female")
    # attributes equal the .mat values: age one-hot, the rest value - 1
    from scipy.io import loadmat

    mat = loadmat(manual / "market_attribute.mat", squeeze_me=True, struct_as_record=False)["market_attribute"]
    for r in train + splits["query"][1] + gallery:
        pid, a = int(r["pid"]), r["attributes"]
        assert a.dtype == np.int32 and a.shape == (30,)
        if pid in (-1, 0):
            assert (a == -1).all()
            continue
        part = mat.train if pid in {p for p, _ in ft.MARKET_TRAIN} else mat.test
        j = [int(x) for x in part.image_index].index(pid)
        assert a[:4].tolist() == np.eye(4, dtype=int)[int(part.age[j]) - 1].tolist()
        named = dict(zip(info.attribute_names, a.tolist()))
        assert named["female"] == int(part.gender[j]) - 1
        assert named["short_sleeve"] == int(part.up[j]) - 1
        assert named["downbrown"] == int(part.downbrown[j]) - 1
        assert set(a.tolist()) <= {0, 1}


def test_market_from_zip_equals_folder(built, tmp_path):
    _, folder_splits, _, _ = built("market1501")
    manual = ft.make_market1501_tree(tmp_path / "m", zipped=True)
    assert (manual / "Market-1501-v15.09.15.zip").is_file() and not (manual / "Market-1501-v15.09.15").exists()
    _, zip_splits, info = _load_all("market1501", tmp_path / "tfds", manual)
    for split in folder_splits:
        a = [(r["path"], r["pid"], r["camid"], r["image"]) for r in folder_splits[split][1]]
        b = [(r["path"], r["pid"], r["camid"], r["image"]) for r in zip_splits[split][1]]
        assert a == b


def test_market_extracted_folder_given_directly(tmp_path):
    manual = ft.make_market1501_tree(tmp_path / "m", attributes=False)
    _, splits, info = _load_all("market1501", tmp_path / "tfds", manual / "Market-1501-v15.09.15")
    assert _sizes(splits) == {"train": 6, "query": 2, "gallery": 8}
    assert info.num_attributes == 0 and info.attribute_names == ()
    assert all((r["attributes"] == -1).all() for r in splits["train"][1])


def test_market_500k_adds_distractors_with_pid_0(built):
    _, splits, info, _ = built("market1501", "500k", lambda root: ft.make_market1501_tree(root, distractors_500k=5))
    gallery = splits["gallery"][1]
    extra = [r for r in gallery if r["path"].startswith(b"distractors_500k/")]
    assert len(gallery) == 8 + 5 and len(extra) == 5
    assert all(int(r["pid"]) == 0 and 1 <= int(r["camid"]) <= 6 for r in extra)
    assert _sizes(splits)["train"] == 6 and info.num_classes == 3


def test_market_500k_missing_distractors_is_explained(tmp_path):
    manual = ft.make_market1501_tree(tmp_path / "m", attributes=False)
    with pytest.raises(FileNotFoundError, match=r"distractors_500k.*distractors_500k.zip"):
        data.prepare("market1501", data_dir=tmp_path / "tfds", manual_dir=manual, config="500k")


def test_val_fraction_holds_out_training_identities(built):
    _, splits, info, _ = built("market1501", {"val_fraction": 0.34})
    train_ids = set(splits["train"][0].pids.tolist())
    val_ids = set(splits["val"][0].pids.tolist())
    assert len(val_ids) == 1 and not train_ids & val_ids
    assert train_ids | val_ids == {2, 7, 11}
    assert info.num_classes == 2 and info.num_train_images == 4
    # deterministic: the same draw as pick_identities documents
    assert val_ids == common.pick_identities([2, 7, 11], 0.34, 0)


# ---------------------------------------------------------------------------------------------------
# DukeMTMC-reID, CUHK03-NP.


def test_duke_cameras_and_attributes(built):
    _, splits, info, manual = built("dukemtmc_reid")
    assert [(int(r["pid"]), int(r["camid"])) for r in splits["train"][1]] == ft.DUKE_TRAIN
    assert info.num_attributes == 23 and info.attribute_names[0] == "female"
    from scipy.io import loadmat

    mat = loadmat(manual / "duke_attribute.mat", squeeze_me=True, struct_as_record=False)["duke_attribute"]
    r = splits["train"][1][0]
    j = [int(x) for x in mat.train.image_index].index(int(r["pid"]))
    named = dict(zip(info.attribute_names, r["attributes"].tolist()))
    assert named["female"] == int(mat.train.gender[j]) - 1
    assert named["long_top"] == int(mat.train.top[j]) - 1
    assert named["light_shoes"] == int(mat.train.shoes[j]) - 1
    assert named["upbrown"] == int(mat.train.upbrown[j]) - 1


def test_cuhk03_np_labeled_and_detected(built):
    _, lab, info, _ = built("cuhk03_np", "labeled")
    _, det, _, _ = built("cuhk03_np", "detected")
    assert [(int(r["pid"]), int(r["camid"])) for r in lab["train"][1]] == ft.CUHK_TRAIN
    assert lab["train"][1][0]["image"][:4] == b"\x89PNG"
    assert [r["path"] for r in lab["gallery"][1]] == [r["path"] for r in det["gallery"][1]]
    assert [r["image"] for r in lab["gallery"][1]] != [r["image"] for r in det["gallery"][1]]
    assert info.num_attributes == 0


# ---------------------------------------------------------------------------------------------------
# MSMT17.


def test_msmt17_lists_cameras_and_pid_offset(built):
    _, splits, info, _ = built("msmt17")
    train = splits["train"][1]
    assert sorted((int(r["pid"]), int(r["camid"])) for r in train) == sorted(ft.MSMT_TRAIN + ft.MSMT_VAL)
    assert info.num_classes == 3  # pid 0 counts on MSMT17
    offset = 3  # number of training identities: test pids are shifted past them
    assert sorted((int(r["pid"]), int(r["camid"])) for r in splits["query"][1]) == [(p + offset, c) for p, c in ft.MSMT_QUERY]
    assert not set(splits["train"][0].pids) & set(splits["gallery"][0].pids)


def test_msmt17_official_val_and_v2(tmp_path):
    manual = ft.make_msmt17_tree(tmp_path / "m", version="MSMT17_V2")
    _, splits, info = _load_all("msmt17", tmp_path / "tfds", manual, "official_val")
    assert _sizes(splits) == {"train": 5, "val": 2, "query": 2, "gallery": 3}
    assert splits["train"][1][0]["path"].startswith(b"mask_train_v2/")


def test_msmt17_missing_listed_image(tmp_path):
    manual = ft.make_msmt17_tree(tmp_path / "m")
    victim = sorted((manual / "MSMT17_V1" / "test").rglob("*.jpg"))[0]
    victim.unlink()
    with pytest.raises(common.DatasetError, match=re.escape(victim.name) + ".*does not exist"):
        data.prepare("msmt17", data_dir=tmp_path / "tfds", manual_dir=manual)


# ---------------------------------------------------------------------------------------------------
# VeRi-776.


def test_veri776_labels_from_gb2312_xml(built):
    _, splits, info, manual = built("veri776")
    raw = (manual / "VeRi" / "train_label.xml").read_bytes()
    assert b'encoding="gb2312"' in raw and "车辆".encode("gb2312") in raw
    assert info.num_models == 9 and info.num_colors == 10 and info.image_size == (256, 256)
    for split in ("train", "query", "gallery"):
        for r in splits[split][1]:
            type_id, color_id = ft.VERI_LABELS[int(r["pid"])]
            assert (int(r["model"]), int(r["color"])) == (type_id - 1, color_id - 1)  # query via its vehicle
    assert [(int(r["pid"]), int(r["camid"])) for r in splits["train"][1]] == ft.VERI_TRAIN


def test_veri776_without_labels(tmp_path):
    manual = ft.make_veri776_tree(tmp_path / "m", labels=False)
    _, splits, info = _load_all("veri776", tmp_path / "tfds", manual)
    assert info.num_models == 0 and info.num_colors == 0
    assert all(int(r["model"]) == -1 and int(r["color"]) == -1 for r in splits["train"][1])


# ---------------------------------------------------------------------------------------------------
# VehicleID.


@pytest.mark.parametrize("config,size", [("small", 800), ("medium", 1600), ("large", 2400)])
def test_vehicleid_configs_and_draw(built, config, size):
    _, splits, info, _ = built("vehicleid", config)
    test = splits["test"][1]
    items = ft.VEHICLEID_TEST[size]
    assert len(test) == sum(n for _, n in items)
    q, g = splits["query"][1], splits["gallery"][1]
    assert sorted(int(r["pid"]) for r in g) == sorted(v for v, _ in items)  # one image per vehicle
    assert sorted([r["path"] for r in q] + [r["path"] for r in g]) == [r["path"] for r in test]
    assert info.protocol == "vehicleid" and info.num_models == 250 and info.num_colors == 7
    assert all(int(r["camid"]) == 0 for r in test)
    for r in splits["train"][1] + test:
        pid = int(r["pid"])
        assert int(r["model"]) == ft.VEHICLEID_MODELS.get(pid, -1)
        assert int(r["color"]) == ft.VEHICLEID_COLORS.get(pid, -1)
    assert _sizes(splits)["train"] == 7 and info.num_classes == 3


def test_vehicleid_draw_is_deterministic():
    from jhash.data.vehicleid import draw_query_gallery

    recs = [common.Record(path=f"image/{i:07d}.jpg", pid=i // 3, camid=0, source=b"") for i in range(30)]
    q1, g1 = draw_query_gallery(recs, 0)
    q2, g2 = draw_query_gallery(recs, 0)
    assert [r.path for r in g1] == [r.path for r in g2] and len(g1) == 10 and len(q1) == 20
    assert [r.path for r in draw_query_gallery(recs, 1)[1]] != [r.path for r in g1]


# ---------------------------------------------------------------------------------------------------
# Bad input: manual_dir, names, images, failed preparation.


@pytest.mark.parametrize("name,archive", [
    ("market1501", "Market-1501-v15.09.15.zip"), ("dukemtmc_reid", "DukeMTMC-reID.zip"),
    ("cuhk03_np", "cuhk03-np"), ("msmt17", "MSMT17_V1"), ("veri776", "VeRi.zip"),
    ("vehicleid", "VehicleID_V1.0"), ("reid_folder", "train/"),
])
def test_missing_and_empty_manual_dir(tmp_path, name, archive):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        data.prepare(name, data_dir=tmp_path / "tfds", manual_dir=missing)
    assert str(missing) in str(e.value) and "does not exist" in str(e.value) and archive in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        data.prepare(name, data_dir=tmp_path / "tfds", manual_dir=empty)
    assert str(empty) in str(e.value) and "empty" in str(e.value) and archive in str(e.value)


def test_wrong_layout_lists_what_is_there(tmp_path):
    manual = tmp_path / "m"
    (manual / "Market-1501").mkdir(parents=True)
    (manual / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError) as e:
        data.prepare("market1501", data_dir=tmp_path / "tfds", manual_dir=manual)
    msg = str(e.value)
    assert "bounding_box_train" in msg and "'readme.txt'" in msg and "Market-1501-v15.09.15.zip" in msg


def test_bad_filename_shows_pattern_and_example(tmp_path):
    manual = ft.make_market1501_tree(tmp_path / "m", attributes=False)
    ft.write_image(manual / "Market-1501-v15.09.15" / "query" / "person_12.jpg")
    with pytest.raises(common.FilenameError) as e:
        data.prepare("market1501", data_dir=tmp_path / "tfds", manual_dir=manual)
    msg = str(e.value)
    assert "'person_12.jpg'" in msg and "([-\\\\d]+)_c(\\\\d)" in msg and "0002_c1s1_000451_03.jpg" in msg
    assert "query" in msg


def test_camera_out_of_range(tmp_path):
    manual = ft.make_market1501_tree(tmp_path / "m", attributes=False)
    ft.write_image(manual / "Market-1501-v15.09.15" / "query" / "0003_c9s1_000100_00.jpg")
    with pytest.raises(common.FilenameError, match=r"camera 9 is outside 1\.\.6"):
        data.prepare("market1501", data_dir=tmp_path / "tfds", manual_dir=manual)


def _complete_versions(data_dir: Path):
    return [p.parent for p in data_dir.rglob("dataset_info.json") if "incomplete" not in str(p)]


def test_corrupt_image_fails_cleanly_then_skip_then_fix(tmp_path):
    manual = ft.make_market1501_tree(tmp_path / "m", attributes=False)
    bad = manual / "Market-1501-v15.09.15" / "bounding_box_test" / sorted(
        p.name for p in (manual / "Market-1501-v15.09.15" / "bounding_box_test").glob("0003_*"))[0]
    good_bytes = bad.read_bytes()
    ft.corrupt_image(bad)
    data_dir = tmp_path / "tfds"
    with pytest.raises(common.CorruptImageError, match=re.escape(str(bad))):
        data.prepare("market1501", data_dir=data_dir, manual_dir=manual)
    # nothing that loads as complete, no leftover temp folder
    assert _complete_versions(data_dir) == []
    assert not [p for p in data_dir.rglob("*") if p.name.startswith("incomplete")]
    with pytest.raises(common.CorruptImageError):  # load retries the preparation, same error
        data.load("market1501", "gallery", data_dir=data_dir, manual_dir=manual)

    # skip_corrupt: skipped with a count, in another data_dir
    b = data.prepare("market1501", data_dir=tmp_path / "tfds_skip", manual_dir=manual, skip_corrupt=True)
    md = b.info.metadata
    assert md["skipped"]["count"] == 1 and md["skipped"]["files"] == [str(bad)]
    src, _ = data.load("market1501", "gallery", data_dir=tmp_path / "tfds_skip")
    assert len(src) == 7 and len(src.pids) == 7

    # fixed: a later run in the first data_dir succeeds
    bad.write_bytes(good_bytes)
    src, info = data.load("market1501", "gallery", data_dir=data_dir, manual_dir=manual)
    assert len(src) == 8 and len(_complete_versions(data_dir)) == 1


def test_truncated_jpeg_is_corrupt():
    data_ = ft.image_bytes(3)
    common.check_image(data_, "ok.jpg")
    with pytest.raises(common.CorruptImageError, match="half.jpg"):
        common.check_image(data_[: len(data_) // 2], "half.jpg")


def test_prepared_dataset_loads_without_manual_dir(built):
    b, splits, info, manual = built("dukemtmc_reid")
    src, info2 = data.load("dukemtmc_reid", "query", data_dir=built.data_dir)
    assert len(src) == 2 and info2 == info


def test_load_unknown_split(built):
    b, *_ = built("dukemtmc_reid")
    with pytest.raises(ValueError, match="no split 'val'; splits: gallery, query, train"):
        data.load("dukemtmc_reid", "val", data_dir=built.data_dir)


def test_command_line(tmp_path, capsys):
    from jhash.data.__main__ import main

    manual = ft.make_dukemtmc_reid_tree(tmp_path / "m", attributes=False)
    assert main(["info", "dukemtmc_reid", "--data_dir", str(tmp_path / "tfds")]) == 2  # a user error: one line, exit 2
    assert "is not prepared" in capsys.readouterr().err
    assert main(["prepare", "dukemtmc_reid", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(manual),
                 "--option", "val_fraction=0.5"]) == 0
    out = capsys.readouterr().out
    assert "dukemtmc_reid/default-val_fraction0.5" in out and re.search(r"val\s+2 images\s+1 ids", out)
    assert main(["info", "dukemtmc_reid", "--data_dir", str(tmp_path / "tfds"), "--option", "val_fraction=0.5"]) == 0
    assert main(["list"]) == 0 and "market1501" in capsys.readouterr().out
