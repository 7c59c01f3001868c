"""The real command lines (subprocesses of train.py, evaluate.py, python -m jhash.encode) on synthetic_reid/tiny:
start and end summaries, resuming with a changed config, one-line user errors with status 2 and no workdir left
behind, --help, tie handling, result files that are never overwritten, encoding to .npz."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "configs/synthetic_reid/baseline.py"
TINY = ["--config.dataset.config=tiny", "--config.train.epochs=0", "--config.train.steps=4", "--config.train.batch_p=4",
        "--config.train.batch_k=2", "--config.train.log_every=2", "--config.train.ckpt_every=2",
        "--config.model.backbone_kwargs.widths=(8, 16)", "--config.model.bits=16", "--config.eval.batch_size=16"]


def _run(args, env, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_error(r, *needles):
    """A user error: status 2, one line on stderr naming ``needles``, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    return dict(os.environ, JAX_PLATFORMS="cpu", JHASH_DATA_DIR=str(base / "data"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env):
    """A workdir trained by train.py (4 steps), then resumed to 6 steps with a lower learning rate."""
    wd = tmp_path_factory.mktemp("cli_run") / "run"
    first = _run(["train.py", "--config", CONFIG, "--workdir", str(wd), "--noprogress", *TINY], env)
    assert first.returncode == 0, first.stderr[-4000:]
    second = _run(["train.py", "--config", CONFIG, "--workdir", str(wd), "--noprogress", *TINY,
                   "--config.train.steps=6", "--config.optimizer.lr=1e-3"], env)
    assert second.returncode == 0, second.stderr[-4000:]
    return wd, first.stdout, second.stdout


def test_start_and_end_summaries(trained):
    wd, out, _ = trained
    assert "dataset   synthetic_reid/tiny: 8 training identities, 29 training images, 64x32 input" in out
    assert "model     baseline on small_cnn, 16 bits," in out and "parameters" in out
    assert "training  4 steps" in out and "batch 4 identities x 2 images" in out
    assert "devices   1 x cpu" in out
    assert "validate  every 3 steps on the 'val' split (R1/mAP/mINP in metrics.jsonl), keeping the last step" in out
    assert "compiling the training step ..." in out and "resuming" not in out
    end = out[out.index("trained baseline to step 4"):]
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert f"final loss {rows[1]['loss']:.4f}" in end and " in 0m" in end
    for path in (wd / "checkpoints", wd / "metrics.jsonl", wd / "config.json", wd / "curves.png"):
        assert str(path) in end


def test_resume_with_compatible_changes_warns_and_records_history(trained):
    wd, _, out = trained
    assert "resuming from step 4" in out
    assert "warning: config changed since the stored config.json" in out
    assert "optimizer.lr: 0.003 -> 0.001" in out
    assert "train.steps: 4 -> 6" in out
    assert "trained baseline to step 6 (resumed from step 4)" in out
    stored = json.loads((wd / "config.json").read_text())
    assert stored["train"]["steps"] == 6 and stored["optimizer"]["lr"] == 1e-3
    (change,) = stored["_history"]
    assert change["resumed_from_step"] == 4 and change["changed"]["train.steps"] == [4, 6]
    assert change["changed"]["optimizer.lr"][1] == 1e-3


def test_incompatible_change_is_refused_in_one_line(trained, env):
    wd, _, _ = trained
    before = (wd / "config.json").read_text()
    r = _run(["train.py", "--config", CONFIG, "--workdir", str(wd), "--noprogress", *TINY, "--config.train.steps=6",
              "--config.model.bits=32", "--config.model.pooling=gem"], env)
    line = _one_line_error(r, "model.bits (16 -> 32)", "model.pooling (\"avg\" -> \"gem\")", "new --workdir")
    assert "orbax" not in r.stderr.lower() and "strict" not in line
    assert (wd / "config.json").read_text() == before


@pytest.mark.parametrize("args, needles", [
    (["--config.train.batch_p=40"], ["config.train.batch_p=40", "8 training identities"]),
    (["--config.method.name=nope"], ["nope", "baseline"]),
    (["--config.dataset.name=no_such_dataset"], ["no_such_dataset", "market1501"]),
    (["--config.train.ckpt_every=0"], ["config.train.ckpt_every=0", ">= 1"]),
    (["--config.optimizer.lr=-1"], ["config.optimizer.lr=-1", "> 0"]),
    (["--config.input.image_size=(64, 0)"], ["config.input.image_size"]),
    (["--config.train.lrr=3"], ["unknown config key 'train.lrr'"]),
])
def test_user_errors_are_one_line_and_leave_no_workdir(args, needles, tmp_path, env, trained):
    wd = tmp_path / "new_run"
    r = _run(["train.py", "--config", CONFIG, "--workdir", str(wd), "--noprogress", *TINY, *args], env)
    _one_line_error(r, *needles)
    assert not wd.exists()


def test_missing_validation_split_is_found_before_training(tmp_path, env, trained):
    wd = tmp_path / "ctf"
    tiny = [a for a in TINY if "backbone_kwargs" not in a]
    r = _run(["train.py", "--config", "configs/synthetic_reid/ctf.py", "--workdir", str(wd), "--noprogress", *tiny,
              "--config.method.lengths=(32, 16)", "--config.dataset.val_split=holdout"], env)
    _one_line_error(r, "config.dataset.val_split='holdout'", "no split 'holdout'", "val_split=None")
    assert not wd.exists()


@pytest.mark.parametrize("command", [["train.py"], ["evaluate.py"], ["-m", "jhash.encode"]])
def test_help_exits_zero(command, env):
    r = _run([*command, "--help"], env)
    assert r.returncode == 0 and "usage:" in r.stdout and "--workdir" in r.stdout, r.stderr[-2000:]


def test_missing_required_flag_is_one_line(env):
    r = _run(["evaluate.py"], env)
    _one_line_error(r, "--workdir")


def _r1_expected_over_ties(codes_dir: pathlib.Path) -> float:
    """Rank-1 under a uniformly random order of equal Hamming distances, from the definition: per valid query the
    share of true matches among the nearest kept gallery items (junk and same-camera matches removed)."""
    q = np.unpackbits(np.load(codes_dir / "query_id.npy"), axis=1).astype(int)
    g = np.unpackbits(np.load(codes_dir / "gallery_id.npy"), axis=1).astype(int)
    qp, gp = np.load(codes_dir / "query_pids.npy"), np.load(codes_dir / "gallery_pids.npy")
    qc, gc = np.load(codes_dir / "query_camids.npy"), np.load(codes_dir / "gallery_camids.npy")
    hits = []
    for i in range(len(q)):
        keep = [j for j in range(len(g)) if gp[j] != -1 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        if not any(gp[j] == qp[i] for j in keep):
            continue  # no true match left: not a valid query
        d = {j: int(np.abs(q[i] - g[j]).sum()) for j in keep}
        nearest = [j for j in keep if d[j] == min(d.values())]
        hits.append(sum(gp[j] == qp[i] for j in nearest) / len(nearest))
    return float(np.mean(hits))


def test_evaluate_ties_and_never_overwrites(trained, env, tmp_path):
    wd, _, _ = trained
    r = _run(["evaluate.py", "--workdir", str(wd)], env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "ties: stable" in r.stdout
    first = (wd / "eval_step_6.json").read_text()
    r = _run(["evaluate.py", "--workdir", str(wd), "--config.eval.ties=expected"], env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "ties: expected" in r.stdout and "eval_step_6_2.json" in r.stdout
    assert (wd / "eval_step_6.json").read_text() == first  # the earlier result is kept
    stable, expected = json.loads(first), json.loads((wd / "eval_step_6_2.json").read_text())
    assert stable["ties"] == "stable" and expected["ties"] == "expected"
    assert "mAP" in " ".join(expected["units"]) and "milliseconds" in expected["units"]["ms/query"]
    assert expected["rows"][0]["R1"] == pytest.approx(_r1_expected_over_ties(wd / "codes" / "step_6_2"), abs=1e-9)
    # the workdir's config.json is not changed by evaluation overrides
    assert json.loads((wd / "config.json").read_text())["eval"]["ties"] == "stable"


def test_evaluate_to_output_dir_leaves_the_workdir_alone(trained, env, tmp_path):
    wd, _, _ = trained
    before = sorted(p.relative_to(wd).as_posix() for p in wd.rglob("*"))
    out = tmp_path / "results"
    r = _run(["evaluate.py", "--workdir", str(wd), "--output_dir", str(out), "--visualize", "2", "--tradeoff",
              "--curves"], env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert sorted(p.relative_to(wd).as_posix() for p in wd.rglob("*")) == before
    assert f"curves: {out / 'curves.png'}" in r.stdout
    for name in ("eval_step_6.json", "ranklist_step_6.png", "tradeoff_step_6.png", "curves.png"):
        assert (out / name).is_file(), name
    result = json.loads((out / "eval_step_6.json").read_text())
    assert result["codes_dir"] == str(out / "codes" / "step_6")


def test_evaluate_refuses_a_different_network(trained, env):
    wd, _, _ = trained
    r = _run(["evaluate.py", "--workdir", str(wd), "--config.model.bits=32"], env)
    _one_line_error(r, "model.bits: 16 -> 32")


def test_encode_command(trained, env, tmp_path):
    from jhash import data

    wd, _, _ = trained
    source, _ = data.load("synthetic_reid", "gallery", data_dir=env["JHASH_DATA_DIR"], config="tiny")
    images = []
    for i in range(3):
        images.append(tmp_path / f"img{i}.jpg")
        images[-1].write_bytes(source[i]["image"])
    out = tmp_path / "mycodes"
    r = _run(["-m", "jhash.encode", "--workdir", str(wd), "--output", str(out), *map(str, images)], env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"wrote {out}.npz (3 images; id: 3x2 bytes)" in r.stdout
    saved = np.load(f"{out}.npz")
    assert list(saved["paths"]) == [str(p) for p in images] and saved["id"].shape == (3, 2)

    r = _run(["-m", "jhash.encode", "--workdir", str(wd), str(tmp_path / "missing.jpg")], env)
    _one_line_error(r, "missing.jpg")
    r = _run(["-m", "jhash.encode", "--workdir", str(tmp_path / "nowhere"), str(images[0])], env)
    line = _one_line_error(r, "nowhere", "does not exist", "train.py --config FILE --workdir")
    assert "pass --config" not in line  # jhash.encode has no --config


def test_console_scripts_point_at_callables():
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"jhash-train", "jhash-eval", "jhash-encode", "jhash-data", "jhash-query"} <= set(scripts)
    absent = []
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            absent.append(name)
            continue
        assert callable(getattr(mod, func)), name
    if absent:
        pytest.skip(f"modules of {absent} are not part of this checkout")
