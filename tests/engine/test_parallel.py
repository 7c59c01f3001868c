"""Data parallelism: 8 simulated CPU devices compute what one device computes."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from jhash import parallel

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    assert jax.device_count() == 8, jax.devices()
    from jhash import methods, parallel, reporting, trainer
    from tests.engine import fakes

    c = fakes.config(steps=3, ckpt_every=100)
    out = {}
    for n in (1, 8):
        wd = f"{sys.argv[1]}/d{n}"
        mesh = parallel.make_mesh(jax.devices()[:n])
        r = trainer.train(c, wd, data=fakes.Data(c), method=methods.get(c.method.name), mesh=mesh,
                          progress=False, async_checkpoints=False)
        leaf = jax.tree.leaves(r.state.params)[0]
        out[n] = {"loss": [row["loss"] for row in reporting.read_jsonl(wd + "/metrics.jsonl")],
                  "params": [np.asarray(x).tolist() for x in jax.tree.leaves(jax.device_get(r.state.model_item()))],
                  "devices": len(leaf.sharding.device_set)}
    print("RESULT" + json.dumps(out))
""")


def test_eight_devices_equal_one(tmp_path, subprocess_env):
    env = dict(subprocess_env, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    one, eight = out["1"], out["8"]
    assert one["devices"] == 1 and eight["devices"] == 8
    assert len(one["loss"]) == 3
    import numpy as np

    np.testing.assert_allclose(one["loss"], eight["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(one["params"], eight["params"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_multihost_detection():
    assert not parallel.multihost_requested({})
    assert parallel.multihost_requested({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert parallel.multihost_requested({"SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"})
    assert not parallel.multihost_requested({"SLURM_NTASKS": "1", "SLURM_JOB_ID": "7"})
    assert parallel.multihost_requested({"JHASH_DISTRIBUTED": "1"})


def test_batch_must_divide_over_devices():
    import jax

    mesh = parallel.make_mesh(jax.devices()[:1])
    parallel.check_batch_divisible(6, mesh)
