"""Data parallelism: 8 simulated CPU devices compute what one device computes."""

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import xla_flags
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
    env = dict(subprocess_env, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=8"),
               PYTHONPATH=str(ROOT))
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


def test_distributed_args_read_the_three_variables():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert parallel.distributed_args(env) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                              "process_id": 3}
    assert parallel.distributed_args({}) == {}
    # SLURM fills in what is missing through jax's own cluster detection
    assert parallel.distributed_args({"JAX_NUM_PROCESSES": "2", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "9"}) == {
        "num_processes": 2}


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two': expected an integer >= 1"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_PROCESS_ID='2'"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1"}, "expected host:port"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "needs JAX_COORDINATOR_ADDRESS"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, "needs JAX_PROCESS_ID"),
])
def test_distributed_args_name_the_bad_variable(env, message):
    with pytest.raises(ValueError, match=message):
        parallel.distributed_args(env)


def test_process_share_covers_the_batch_in_order():
    rows = [parallel.process_share(12, i, 3) for i in range(3)]
    assert [list(range(12))[r] for r in rows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert parallel.process_share(12) == slice(0, 12)  # one process: everything
    with pytest.raises(ValueError, match="must divide evenly over 5 processes"):
        parallel.process_share(12, 0, 5)


def test_one_process_decides_and_votes_alone():
    assert parallel.from_process_0(lambda: [3, 1], "steps") == [3, 1]
    parallel.check_same(5, "a value")  # nothing to compare with
    vote = parallel.StopVote(parallel.make_mesh())
    assert [vote.agreed(r) for r in (0, 15, 0)] == [0, 15, 0]  # at once, no lag with one process
    with pytest.raises(KeyError):
        parallel.from_process_0(lambda: {}["missing"], "a failing decision")


def test_local_copy_of_replicated_and_plain_arrays():
    mesh = parallel.make_mesh()
    x = np.arange(6, dtype=np.int8).reshape(2, 3)
    for value in (x, jax.numpy.asarray(x), parallel.replicate(x, mesh)):
        copy = parallel.local_copy(value)
        assert isinstance(copy, np.ndarray) and copy.dtype == np.int8
        np.testing.assert_array_equal(copy, x)
