"""sharded_hamming_topk equals hamming_topk exactly (8 fake CPU devices, in a subprocess)."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import xla_flags
from jhash.search import sharded_hamming_topk

SCRIPT = textwrap.dedent(
    """
    import numpy as np, jax
    from jax.sharding import Mesh
    from jhash.search import hamming_topk, sharded_hamming_topk
    from jhash.search.sharded import _merge_shards
    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(0)
    def ref(q, g, k):
        d = np.unpackbits(q[:, None, :] ^ g[None], axis=-1).sum(-1)
        r = np.argsort(d, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d, r, 1), r
    mesh2d = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "gallery"))
    # (nq, ng, nbytes, k, n distinct codes (0 = random), mesh)
    cases = [(3, 1000, 4, 10, 0, None), (4, 1003, 2, 50, 5, None), (2, 13, 1, 13, 3, None),
             (5, 777, 8, 30, 0, mesh2d), (3, 61, 2, 9, 2, mesh2d)]
    for nq, ng, nb, k, nd, mesh in cases:
        if nd:
            pool = rng.integers(0, 256, (nd, nb), dtype=np.uint8)
            q, g = pool[rng.integers(0, nd, nq)], pool[rng.integers(0, nd, ng)]
        else:
            q, g = rng.integers(0, 256, (nq, nb), dtype=np.uint8), rng.integers(0, 256, (ng, nb), dtype=np.uint8)
        d, i = sharded_hamming_topk(q, g, k, mesh=mesh)
        d1, i1 = hamming_topk(q, g, k, backend="xla")
        rd, ri = ref(q, g, k)
        for a, b in ((d, d1), (i, i1), (d, rd), (i, ri)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str((nq, ng, nb, k, nd)))
    # the sort-based merge (used when composite keys would overflow) agrees with the key-based one
    dd = np.sort(rng.integers(0, 5, (8, 3, 6)), axis=2).astype(np.int32)
    ii = (np.arange(8)[:, None, None] * 6 + np.arange(6)).astype(np.int32) + np.zeros((8, 3, 6), np.int32)
    a = _merge_shards(dd, ii, 10, use_keys=True)
    b = _merge_shards(dd, ii, 10, use_keys=False)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))
    print("SHARDED-OK")
    """
)


def test_sharded_equals_single_device_on_8_cpu_devices():
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=8"), JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "SHARDED-OK" in res.stdout, res.stdout + res.stderr


def test_sharded_single_device_and_errors():
    rng = np.random.default_rng(1)
    q, g = rng.integers(0, 256, (2, 4), dtype=np.uint8), rng.integers(0, 256, (50, 4), dtype=np.uint8)
    d, i = sharded_hamming_topk(q, g, 5)
    dist = np.unpackbits(q[:, None, :] ^ g[None], axis=-1).sum(-1)
    np.testing.assert_array_equal(np.asarray(i), np.argsort(dist, axis=1, kind="stable")[:, :5])
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
    with pytest.raises(ValueError, match=r"axis='gallery' is not an axis of the mesh"):
        sharded_hamming_topk(q, g, 5, mesh=mesh)
    with pytest.raises(ValueError, match=r"k=51 exceeds"):
        sharded_hamming_topk(q, g, 51)
