"""Two ``train.py`` / ``evaluate.py`` processes on 127.0.0.1 (JAX gloo CPU collectives) compute what one does.

The processes get ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, exactly what a
user sets on several hosts. SIGTERM goes to process 1 alone once the first checkpoint is on disk: both processes
must stop after the same step with one complete checkpoint. The same command then resumes both; their losses,
final parameters and evaluation table must equal an uninterrupted 1-process run with the same global P x K batch.
Every process runs under a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 8
TIMEOUT_S = 240  # per phase; a phase takes ~10-25 s
ARGS = ["--config", "configs/synthetic_reid/baseline.py", "--noprogress", "--config.dataset.config=tiny",
        "--config.train.epochs=0", f"--config.train.steps={STEPS}", "--config.train.batch_p=4",
        "--config.train.batch_k=2", "--config.train.log_every=1", "--config.train.ckpt_every=100",
        # no validation during training: evaluate.py below runs the multi-process encode + search path
        "--config.train.eval_every_epochs=0",
        "--config.model.backbone_kwargs.widths=(8, 16)", "--config.model.bits=16",
        # 8 rows per evaluation batch: the 17 gallery images split 9 / 8, two batches on each process
        "--config.eval.batch_size=8", "--config.eval.tradeoff_bits=()",
        # SGD: Adam would turn the rounding noise of gradients that are zero in exact arithmetic (the bias of
        # the dense layer before the hash BatchNorm) into lr-sized steps, different for every summation order
        "--config.optimizer.name=sgd", "--config.optimizer.lr=0.05", "--config.optimizer.warmup=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(script, args, env, n):
    """``n`` processes of ``script``; with n > 1 each gets the multi-host variables of its rank."""
    procs, port = [], _free_port()
    for rank in range(n):
        e = dict(env)
        if n > 1:
            e.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(rank))
        procs.append(subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=e, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def _wait(procs, codes=None, deadline=None):
    """``[(stdout, stderr)]`` of every process once all have ended with ``codes`` (default 0); every process is
    killed when one runs past the deadline. The pipes are read concurrently, so a full pipe cannot block one."""
    deadline = time.monotonic() + TIMEOUT_S if deadline is None else deadline
    results = []
    try:
        for p in procs:
            results.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        stuck = [(p.args[1], p.communicate()[1][-2000:]) for p in procs]
        pytest.fail(f"processes still running after {TIMEOUT_S} s: {stuck}")
    got = [p.returncode for p in procs]
    want = [0] * len(procs) if codes is None else codes
    assert got == want, "\n".join(f"--- process {i} exit {c}:\n{err[-3000:]}" for i, (c, (_, err)) in
                                  enumerate(zip(got, results)))
    return results


def _losses(wd):
    """The last logged row of every step (a resumed run logs again the steps after its checkpoint)."""
    rows = {}
    for line in (wd / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row["loss"]
    return [rows[s] for s in sorted(rows)]


def _logged_steps(wd) -> int:
    path = wd / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _checkpoint_steps(wd):
    d = wd / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _signal_when_logged(path, procs, steps: int, deadline: float) -> list[bool]:
    """SIGTERM to the last of ``procs`` once ``steps`` training steps are logged in ``path``; whether each
    process was still running then."""
    while _logged_steps(path) < steps and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.02)
    running = [p.poll() is None for p in procs]
    procs[-1].send_signal(signal.SIGTERM)
    return running


def _results(out: str) -> dict:
    """The evaluation results whose path ``evaluate.py`` printed (``results: <path>``)."""
    paths = [line.split("results: ", 1)[1].strip() for line in out.splitlines() if line.startswith("results: ")]
    assert len(paths) == 1, out
    return json.loads(pathlib.Path(paths[0]).read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("multiprocess")
    # Every process compiles its programs unoptimised (tests/conftest.py sets XLA's optimisation level 0 for the
    # session and its subprocesses: a cold train.py process here takes ~8 CPU-s instead of ~20). Every run, the
    # 1-process references included, is a CLI process with the same flags. Process 1 of a pair cannot use the
    # persistent compilation cache (only process 0 writes it, and process 1's local programs are keyed to its
    # own device), so each of its launches compiles everything again.
    env = dict(os.environ, JAX_PLATFORMS="cpu", JHASH_DATA_DIR=str(base / "data"))
    one, two = base / "one", base / "two"
    from jhash import checkpoints, data

    data.prepare("synthetic_reid", data_dir=env["JHASH_DATA_DIR"], config="tiny", progress=False)
    started = []
    try:
        # The 2-process run gets SIGTERM (process 1 alone) once it has logged two steps; the 1-process reference
        # trains meanwhile.
        pair = _start("train.py", ["--workdir", str(two), *ARGS], env, 2)
        single = _start("train.py", ["--workdir", str(one), *ARGS], env, 1)
        started += pair + single
        running = _signal_when_logged(two, pair, 2, time.monotonic() + TIMEOUT_S)
        assert all(running), "the 2-process run ended before the signal: " + str(_wait(pair))
        stopped = _wait(pair, codes=[128 + signal.SIGTERM] * 2)
        stopped_at = _checkpoint_steps(two)
        sealed = [checkpoints.manifest_damage(two / "checkpoints" / str(s)) for s in stopped_at]

        resume = _start("train.py", ["--workdir", str(two), *ARGS], env, 2)
        started += resume
        resumed = _wait(resume)
        _wait(single)

        # the 2-process workdir evaluated by 2 processes and, meanwhile, by 1
        procs = _start("evaluate.py", ["--workdir", str(two), "--output_dir", str(base / "eval2")], env, 2)
        alone = _start("evaluate.py", ["--workdir", str(two), "--output_dir", str(base / "eval1")], env, 1)
        started += procs + alone
        out = [o for o, _ in _wait(procs)]
        evals = {1: (None, _results(_wait(alone)[0][0]))}
    finally:
        for p in started:  # nothing outlives a failure
            if p.poll() is None:
                p.kill()
                p.communicate()
    evals[2] = (out, _results("".join(out)))  # process 0 alone reports
    return dict(one=one, two=two, stopped=stopped, stopped_at=stopped_at, sealed=sealed, resumed=resumed,
                evals=evals)


def test_a_signal_to_one_process_stops_both_after_the_same_step(runs):
    said = [re.search(r"SIGTERM received: saved a checkpoint at step (\d+)", err) for _, err in runs["stopped"]]
    assert all(said), [err[-2000:] for _, err in runs["stopped"]]
    step = int(said[0].group(1))
    assert int(said[1].group(1)) == step < STEPS
    assert max(runs["stopped_at"]) == step  # the checkpoint of that step, complete and sealed
    assert runs["sealed"][-1] == (True, None)
    assert all(f"resumed from step {step}" in out for out, _ in runs["resumed"][:1]), runs["resumed"][0][0]


def test_two_processes_resume_and_train_like_one(runs):
    one, two = runs["one"], runs["two"]
    assert f"trained baseline to step {STEPS} (resumed from step" in runs["resumed"][0][0]
    # equal up to float summation order (the two runs reduce the batch in different orders), which SGD carries
    # from step to step: ~3e-5 relative after 24 steps; a wrong share of the batch differs by ~1e-1
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=2e-4)
    assert len(_losses(one)) == STEPS

    from jhash import evaluator

    a, b = evaluator.load_trained(one).variables, evaluator.load_trained(two).variables
    import jax

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=2e-4)


def test_two_process_evaluation_prints_the_table_of_one(runs):
    (out1, res1), (out2, res2) = runs["evals"][1], runs["evals"][2]
    assert res2["num_gallery"] == res1["num_gallery"] == 17 and res2["num_query"] == res1["num_query"]
    rows = lambda res: [{k: v for k, v in r.items() if k != "ms/query"} for r in res["rows"]]  # noqa: E731
    assert rows(res2) == rows(res1)
    assert "mAP" in out2[0] and "mAP" not in out2[1]  # process 0 prints the table, process 1 does not
