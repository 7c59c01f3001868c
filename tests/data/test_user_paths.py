"""Own data end to end through the real command lines (subprocesses): prepare, train, query, stale sources, errors.

A fake ``<pid>-<cam>-<n>.jpg`` tree (tests.data.fake_trees.make_pid_cam_n_tree), tiny images, 2 training steps of
configs/reid_folder/baseline.py with a small CNN.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data import fake_trees as ft

pytest.importorskip("tensorflow_datasets")

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config.model.backbone=small_cnn", "--config.model.backbone_kwargs={}", "--config.input.image_size=(32, 16)",
        "--config.model.bits=16", "--config.train.epochs=0", "--config.train.steps=2", "--config.train.batch_p=4",
        "--config.train.batch_k=2", "--config.eval.batch_size=16", "--noprogress"]


def run(args, data_dir, check=True):
    env = {**os.environ, "JHASH_DATA_DIR": str(data_dir)}
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def assert_user_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr  # (progress lines may come before it, instructions after it)
    for n in needles:
        assert n in errors[0], (n, errors[0])


def has_split(stdout: str, split: str, n: int) -> bool:
    """``python -m jhash.data`` reported ``n`` images in ``split``."""
    import re

    return re.search(rf"^\s+{split}\s+{n} images", stdout, re.M) is not None


def listed_files(stdout: str) -> list[str]:
    """The gallery files of jhash.query's result lines ('  <rank>  <hamming>  <file>')."""
    return [line.split()[-1] for line in stdout.splitlines() if line.startswith("  ") and line.split()[0].isdigit()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A <pid>-<cam>-<n>.jpg tree trained 2 steps with configs/reid_folder/baseline.py from the command line."""
    root = tmp_path_factory.mktemp("own")
    manual = ft.make_pid_cam_n_tree(root / "my_data")
    data_dir, workdir = root / "tfds", root / "run"
    p = run(["train.py", "--config", "configs/reid_folder/baseline.py", "--workdir", str(workdir),
             f"--config.dataset.manual_dir={manual}", *TINY], data_dir)
    return {"root": root, "manual": manual, "data_dir": data_dir, "workdir": workdir, "train": p}


def test_train_prepares_into_the_default_data_dir_with_short_progress(trained):
    p, d = trained["train"], trained["data_dir"]
    assert "trained baseline to step 2" in p.stdout
    prepared = d / "reid_folder" / "default-val_fraction0.1" / "1.0.0"
    assert (prepared / "dataset_info.json").is_file()
    assert "preparing reid_folder/default-val_fraction0.1" in p.stderr
    for chatter in ("Downloading and preparing", "Shuffling", "%|", "Using custom data configuration"):
        assert chatter not in p.stderr + p.stdout
    stored = json.loads((trained["workdir"] / "config.json").read_text())["dataset"]
    assert stored["options"]["val_fraction"] == 0.1 and stored["options"]["pattern"]


def test_query_prints_gallery_files_and_writes_the_rank_list(trained):
    out = trained["root"] / "hits.png"
    hits = trained["root"] / "hits.json"
    p = run(["-m", "jhash.query", "--workdir", str(trained["workdir"]), str(trained["manual"] / "query" / "*.jpg"),
             "--top", "3", "--output", str(out), "--json", str(hits)], trained["data_dir"])
    gallery = {str(trained["manual"] / "gallery" / f"{pid}-{cam}-{n}.jpg") for pid, cam, n in ft.PCN_GALLERY}
    listed = listed_files(p.stdout)
    assert len(listed) == 3 * len(ft.PCN_QUERY) and set(listed) <= gallery
    assert out.is_file() and out.stat().st_size > 0
    result = json.loads(hits.read_text())
    assert [q["query"] for q in result["queries"]] == sorted(
        str(trained["manual"] / "query" / f"{pid}-{cam}-{n}.jpg") for pid, cam, n in ft.PCN_QUERY)
    for q in result["queries"]:
        d = [h["hamming"] for h in q["results"]]
        assert d == sorted(d) and all(0 <= x <= 16 for x in d)


def test_query_against_a_folder_and_bad_arguments(trained):
    p = run(["-m", "jhash.query", "--workdir", str(trained["workdir"]), str(trained["manual"] / "query"),
             "--gallery", str(trained["manual"] / "train"), "--top", "2", "--visualize", "0"], trained["data_dir"])
    train_files = {str(trained["manual"] / "train" / f"{pid}-{cam}-{n}.jpg") for pid, cam, n in ft.PCN_TRAIN}
    listed = listed_files(p.stdout)
    assert len(listed) == 2 * len(ft.PCN_QUERY) and set(listed) <= train_files
    bad = run(["-m", "jhash.query", "--workdir", str(trained["workdir"]), str(trained["root"] / "none*.jpg")],
              trained["data_dir"], check=False)
    assert_user_error(bad, "none*.jpg", "no image file")


def test_training_on_another_folder_rebuilds_the_dataset(trained, tmp_path):
    other = ft.make_pid_cam_n_tree(tmp_path / "other", seed=7, train=ft.PCN_TRAIN + [(7, 1, 1), (7, 2, 1)])
    p = run(["train.py", "--config", "configs/reid_folder/baseline.py", "--workdir", str(tmp_path / "run"),
             f"--config.dataset.manual_dir={other}", *TINY], trained["data_dir"])
    assert f"the source is now {other.resolve()}; rebuilding" in p.stderr
    info = run(["-m", "jhash.data", "info", "reid_folder", "--option", "val_fraction=0.1"], trained["data_dir"])
    assert f"source {other.resolve()} ({len(ft.PCN_TRAIN) + 2 + len(ft.PCN_QUERY) + len(ft.PCN_GALLERY)} images" in info.stdout


def test_custom_pattern_from_the_command_line(tmp_path):
    root = tmp_path / "m"
    for split, items in (("train", ft.PCN_TRAIN), ("query", ft.PCN_QUERY), ("gallery", ft.PCN_GALLERY)):
        for k, (pid, cam, n) in enumerate(items):
            ft.write_image(root / split / f"person{pid}_cam{cam}_{n}.jpg", k)
    args = ["train.py", "--config", "configs/reid_folder/baseline.py", "--workdir", str(tmp_path / "run"),
            f"--config.dataset.manual_dir={root}", *TINY]
    p = run(args, tmp_path / "tfds", check=False)
    assert p.returncode != 0 and "person1_cam1_1.jpg" in p.stderr and "Set 'pattern'" in p.stderr
    p = run([*args, r"--config.dataset.options.pattern=^person(?P<pid>-?\d+)_cam(?P<camid>\d+)",
             "--config.dataset.options.example=person12_cam3_1.jpg"], tmp_path / "tfds")
    assert "trained baseline to step 2" in p.stdout
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["options"]
    assert stored["pattern"] == r"^person(?P<pid>-?\d+)_cam(?P<camid>\d+)" and stored["example"] == "person12_cam3_1.jpg"


# ---------------------------------------------------------------------------------------------------
# python -m jhash.data


def test_prepare_cli_default_data_dir_stale_source_and_leftovers(tmp_path):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    b = ft.make_pid_cam_n_tree(tmp_path / "b", train=ft.PCN_TRAIN[:6])
    d = tmp_path / "tfds"
    p = run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(a)], d)
    assert f"reid_folder/default at {d}" in p.stdout and has_split(p.stdout, "train", len(ft.PCN_TRAIN))
    assert "Downloading" not in p.stdout + p.stderr and "Shuffling" not in p.stdout + p.stderr
    p = run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(b)], d)
    assert "rebuilding" in p.stderr and has_split(p.stdout, "train", 6)
    leftover = d / "reid_folder" / "default" / "incomplete.QWERTY_1.0.0"
    leftover.mkdir()
    ft.write_image(b / "train" / "9-1-1.jpg")
    p = run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(b)], d)
    assert f"removing {leftover}" in p.stderr and "changed since preparation" in p.stderr
    assert has_split(p.stdout, "train", 7) and not leftover.exists()
    p = run(["-m", "jhash.data", "prepare", "reid_folder"], d)  # no manual_dir: the folder it came from, unchanged
    assert p.stderr == "" and has_split(p.stdout, "train", 7)


def test_prepare_cli_errors_are_one_line_with_exit_2(tmp_path):
    d = tmp_path / "tfds"
    assert_user_error(run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(tmp_path / "nope")], d,
                          check=False), "nope does not exist")
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    (a / "gallery").rename(tmp_path / "elsewhere")
    assert_user_error(run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(a)], d, check=False),
                      "gallery split", str(a / "gallery"))
    assert_user_error(run(["-m", "jhash.data", "info", "market1501"], d, check=False), "not prepared", str(d))
    assert_user_error(run(["-m", "jhash.data", "info", "nosuchset"], d, check=False), "unknown dataset 'nosuchset'")
    assert run(["-m", "jhash.data", "prepare", "--help"], d).stdout.startswith("usage:")


def test_broken_symlink_fails_naming_it_unless_skip_corrupt(tmp_path):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    (a / "query" / "24-1-1.jpg").symlink_to(tmp_path / "gone.jpg")
    d = tmp_path / "tfds"
    p = run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(a)], d, check=False)
    assert_user_error(p, str(a / "query" / "24-1-1.jpg"), "broken symbolic link", "--skip_corrupt")
    p = run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(a), "--skip_corrupt"], d)
    assert "skipped 1 unreadable image(s)" in p.stdout and "24-1-1.jpg" in p.stdout


def test_export_writes_a_pid_cam_n_folder_that_prepares_again(tmp_path):
    a = ft.make_pid_cam_n_tree(tmp_path / "a")
    d = tmp_path / "tfds"
    run(["-m", "jhash.data", "prepare", "reid_folder", "--manual_dir", str(a)], d)
    run(["-m", "jhash.data", "export", "reid_folder", "--output", str(tmp_path / "copy")], d)
    for split in ("train", "query", "gallery"):
        assert sorted(p.name for p in (tmp_path / "copy" / split).iterdir()) == sorted(
            p.name for p in (a / split).iterdir())
        for f in (a / split).iterdir():
            assert (tmp_path / "copy" / split / f.name).read_bytes() == f.read_bytes()
    again = run(["-m", "jhash.data", "export", "reid_folder", "--output", str(tmp_path / "copy")], d, check=False)
    assert_user_error(again, "is not an empty folder")


# ---------------------------------------------------------------------------------------------------
# CUHK03 (original release) with the DRSCH config.


def test_cuhk03_drsch_config_trains(tmp_path):
    pytest.importorskip("h5py")
    manual = ft.make_cuhk03_tree(tmp_path / "m")
    p = run(["train.py", "--config", "configs/cuhk03/drsch.py", "--workdir", str(tmp_path / "run"),
             f"--config.dataset.manual_dir={manual}", "--config.dataset.options.split=1", *TINY,
             "--config.train.batch_p=2", "--config.method.eval_bits=(8,)"], tmp_path / "tfds")
    assert "trained drsch to step 2" in p.stdout
    assert (tmp_path / "tfds" / "cuhk03" / "labeled-split1" / "1.0.0" / "dataset_info.json").is_file()
