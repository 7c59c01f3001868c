"""``cuhk03``: the original release's cuhk-03.mat (MATLAB v7.3 / HDF5) on a fake file in the real layout."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jhash import data
from jhash.data import common
from tests.data import fake_trees as ft

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    return ft.make_cuhk03_tree(tmp_path_factory.mktemp("cuhk03") / "m")


def _all(data_dir, manual, config):
    out = {}
    for split in ("train", "query", "gallery"):
        src, info = data.load("cuhk03", split, data_dir=data_dir, manual_dir=manual, config=config, progress=False)
        out[split] = [src[i] for i in range(len(src))]
    return out, info


@pytest.mark.parametrize("kind,split", [("labeled", 0), ("labeled", 1), ("detected", 0)])
def test_splits_identities_cameras_and_pixels(tmp_path_factory, manual, kind, split):
    d = tmp_path_factory.mktemp("tfds")
    config = kind if split == 0 else data.with_options(kind, {"split": split})
    recs, info = _all(d, manual, config)
    expected = ft.cuhk03_expected(kind, split)
    for s, rows in recs.items():
        assert sorted((r["path"].decode(), int(r["pid"]), int(r["camid"])) for r in rows) == expected[s]
    assert info.protocol == "cuhk03"
    assert info.num_classes == len({pid for _, pid, _ in expected["train"]})
    for r in recs["query"]:  # the stored PNG holds exactly the .mat's H x W x 3 array
        pair, person, _, image = (int(x) for x in r["path"].decode().split("/")[1][:-4].split("_"))
        with Image.open(io.BytesIO(r["image"])) as im:
            np.testing.assert_array_equal(np.asarray(im), ft.cuhk03_image(kind, pair, person, image - 1))


def test_evaluates_with_the_classic_protocol(tmp_path, manual):
    """Query and gallery are the test identities' images; with codes equal to the pid the protocol scores R1 = 100%."""
    from jhash import metrics

    recs, _ = _all(tmp_path, manual, "labeled")
    q, g = recs["query"], recs["gallery"]
    codes = lambda rows: np.array([[int(r["pid"]) % 256] for r in rows], np.uint8)
    pids = lambda rows: np.array([int(r["pid"]) for r in rows])
    cams = lambda rows: np.array([int(r["camid"]) for r in rows])
    m = metrics.cuhk03_classic_eval(codes(q), codes(g), q_pids=pids(q), g_pids=pids(g), q_camids=cams(q),
                                    g_camids=cams(g), max_rank=5)
    assert m.rank(1) == pytest.approx(1.0)


def test_errors_name_what_is_missing(tmp_path, manual):
    with pytest.raises(common.DatasetError, match="split 20 does not exist.*splits 0..1"):
        data.prepare("cuhk03", data_dir=tmp_path / "a", manual_dir=manual, config={"base": "labeled", "split": 20},
                     progress=False)
    with pytest.raises(common.DatasetError, match="kind must be one of"):
        data.prepare("cuhk03", data_dir=tmp_path / "a", manual_dir=manual, config={"kind": "drawn"}, progress=False)
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    (zipped / "cuhk03_release.zip").write_bytes(b"PK")
    with pytest.raises(common.ManualDirError, match="extract it first"):
        data.prepare("cuhk03", data_dir=tmp_path / "b", manual_dir=zipped, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(common.ManualDirError, match="cuhk-03.mat.*readme.txt"):
        data.prepare("cuhk03", data_dir=tmp_path / "c", manual_dir=empty, progress=False)
    bad = tmp_path / "bad" / "cuhk03_release"
    bad.mkdir(parents=True)
    (bad / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(common.DatasetError, match="not a readable MATLAB v7.3"):
        data.prepare("cuhk03", data_dir=tmp_path / "d", manual_dir=tmp_path / "bad", progress=False)
