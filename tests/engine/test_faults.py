"""Fault injection through the real CLIs (train.py / evaluate.py on synthetic_reid/tiny).

Each fault must end in one clear line (no traceback) and lose nothing: every checkpoint left in the workdir is
intact and finite, and training resumed after the fault computes on from the newest intact checkpoint.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from jhash import checkpoints

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "configs/synthetic_reid/baseline.py"
TINY = ["--config.dataset.config=tiny", "--config.train.epochs=0", "--config.train.steps=4", "--config.train.batch_p=4",
        "--config.train.batch_k=2", "--config.train.log_every=1", "--config.train.ckpt_every=2",
        "--config.model.backbone_kwargs.widths=(8, 16)", "--config.model.bits=16", "--config.eval.batch_size=16",
        "--config.train.eval_every_epochs=0"]


def _train_cmd(workdir, *flags):
    return [sys.executable, "train.py", "--config", CONFIG, "--workdir", str(workdir), "--noprogress", *TINY, *flags]


def _run(cmd, env, timeout=300):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _error_line(r, code=1) -> str:
    """The process failed with ``code`` and one ``error:`` line as the last line of stderr, no traceback."""
    assert r.returncode == code, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), r.stderr[-3000:]
    return last


def _steps(workdir):
    d = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _all_intact(workdir):
    for step in _steps(workdir):
        assert checkpoints.manifest_damage(pathlib.Path(workdir) / "checkpoints" / str(step)) == (True, None), step


def _metric_steps(workdir):
    return [json.loads(l)["step"] for l in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _data_file(step_dir):
    return max((p for p in pathlib.Path(step_dir).rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    return dict(os.environ, JAX_PLATFORMS="cpu", JHASH_DATA_DIR=str(base / "data"))


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """A workdir trained to step 4 (checkpoints 2 and 4); tests damage copies of it."""
    wd = tmp_path_factory.mktemp("trained") / "run"
    r = _run(_train_cmd(wd), env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _steps(wd) == [2, 4]
    return wd


def _copy(trained, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(trained, wd)
    return wd


def test_divergence_stops_naming_the_last_verified_step(env, tmp_path):
    r = _run(_train_cmd(tmp_path, "--config.optimizer.name=sgd", "--config.optimizer.lr=1e12",
                        "--config.train.ckpt_every=1", "--config.train.steps=8"), env)
    line = _error_line(r)
    steps = _steps(tmp_path)
    assert steps and f"the last verified checkpoint is step {steps[-1]}" in line and "NaN or infinite" in line
    _all_intact(tmp_path)
    r = _run([sys.executable, "evaluate.py", "--workdir", str(tmp_path)], env)  # restores it: finite
    assert r.returncode == 0, r.stderr[-3000:]


def test_keep_zero_is_refused_before_any_work(env, tmp_path):
    line = _error_line(_run(_train_cmd(tmp_path, "--config.train.keep=0"), env), code=2)
    assert "train.keep" in line and ">= 1" in line
    assert _steps(tmp_path) == []


def test_flipped_byte(env, trained, tmp_path):
    wd = _copy(trained, tmp_path)
    victim = _data_file(wd / "checkpoints" / "4")
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    victim.write_bytes(bytes(raw))
    line = _error_line(_run([sys.executable, "evaluate.py", "--workdir", str(wd)], env))
    assert "checkpoint step 4" in line and "changed since it was written" in line and "intact steps: 2" in line
    r = _run(_train_cmd(wd, "--config.train.steps=6"), env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step 2, the newest intact checkpoint" in r.stderr and "(resumed from step 2)" in r.stdout
    assert _steps(wd)[-2:] == [4, 6] and (wd / "checkpoints.damaged" / "4").is_dir()
    _all_intact(wd)
    assert _metric_steps(wd) == [1, 2, 3, 4, 5, 6]


def test_truncated_file(env, trained, tmp_path):
    wd = _copy(trained, tmp_path)
    victim = _data_file(wd / "checkpoints" / "4")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    line = _error_line(_run([sys.executable, "evaluate.py", "--workdir", str(wd)], env))
    assert "checkpoint step 4" in line and "(truncated)" in line and "intact steps: 2" in line
    r = _run([sys.executable, "evaluate.py", "--workdir", str(wd), "--step", "2"], env)
    assert r.returncode == 0, r.stderr[-3000:]


def test_deleted_file(env, trained, tmp_path):
    wd = _copy(trained, tmp_path)
    victim = _data_file(wd / "checkpoints" / "4")
    victim.unlink()
    r = _run(_train_cmd(wd, "--config.train.steps=4"), env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"file {victim.relative_to(wd / 'checkpoints' / '4').as_posix()} is missing" in r.stderr
    assert "resuming from step 2" in r.stderr and "trained baseline to step 4 (resumed from step 2)" in r.stdout
    _all_intact(wd)


def test_lower_steps_leaves_the_workdir_untouched(env, trained, tmp_path):
    wd = _copy(trained, tmp_path)
    before = {p: p.read_bytes() for p in (wd / "checkpoints").rglob("*") if p.is_file()}
    line = _error_line(_run(_train_cmd(wd, "--config.train.steps=3"), env))
    assert "already trained to step 4" in line and "nothing was changed" in line
    assert {p: p.read_bytes() for p in (wd / "checkpoints").rglob("*") if p.is_file()} == before


def test_two_trainers_on_one_workdir(env, tmp_path):
    """The second trainer exits at once naming the first; the first, then stopped by SIGTERM, saved alone."""
    first = subprocess.Popen(_train_cmd(tmp_path, "--config.train.steps=1000000", "--config.train.ckpt_every=50"),
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "lock"
        deadline = time.time() + 240
        while not (lock.exists() and lock.read_text().startswith(f"{first.pid} ")):
            assert first.poll() is None and time.time() < deadline, "the first trainer never took the lock"
            time.sleep(0.2)
        line = _error_line(_run(_train_cmd(tmp_path, "--config.train.steps=1000000"), env))
        assert f"workdir {str(tmp_path)!r} is in use by process {first.pid} on " in line
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err[-3000:]
    last = _steps(tmp_path)[-1]
    assert _metric_steps(tmp_path) == list(range(1, last + 1)) and f"saved a checkpoint at step {last} " in err
    _all_intact(tmp_path)


def test_sigkill_during_saves_loses_nothing(env, tmp_path):
    """Saving every step, the trainer is killed once a few checkpoints exist (so most likely inside a save);
    the next run resumes from the newest complete checkpoint and finishes, every checkpoint intact."""
    cmd = _train_cmd(tmp_path, "--config.train.steps=12", "--config.train.ckpt_every=1", "--config.train.keep=2")
    victim = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while len(_steps(tmp_path)) < 2:
            assert victim.poll() is None and time.time() < deadline, "the trainer ended before it was killed"
            time.sleep(0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    r = _run(cmd, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "trained baseline to step 12 (resumed from step" in r.stdout
    _all_intact(tmp_path)
    assert not list((tmp_path / "checkpoints").glob("*orbax-checkpoint-tmp*"))
    assert _metric_steps(tmp_path) == list(range(1, 13))


@pytest.mark.parametrize("when", ["start", "training"])
def test_ctrl_c_at_any_moment_exits_cleanly(env, tmp_path, when):
    """Ctrl-C during the imports or after the first steps: exit status 130, one message, no traceback."""
    p = subprocess.Popen(_train_cmd(tmp_path, "--config.train.steps=400", "--config.train.ckpt_every=100"),
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if when == "start":
            time.sleep(0.5)
        else:
            deadline = time.time() + 240
            while not ((tmp_path / "metrics.jsonl").exists() and (tmp_path / "metrics.jsonl").read_text()):
                assert p.poll() is None and time.time() < deadline, "training ended before the signal"
                time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    if when == "start":
        assert last.startswith("SIGINT received before training started"), err[-3000:]
        assert _steps(tmp_path) == []
    else:
        assert last.startswith("SIGINT received: saved a checkpoint at step"), err[-3000:]
        steps = _steps(tmp_path)
        assert steps and f"step {steps[-1]} " in last, (err[-3000:], sorted(p.name for p in tmp_path.rglob("*")))
        _all_intact(tmp_path)
