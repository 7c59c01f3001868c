"""Data parallelism with ``jax.sharding``: one Mesh axis ``'data'`` over every device of every host.

The batch is sharded along its first axis over ``'data'``; parameters, optimizer state and batch statistics
are replicated. Inside one ``jax.jit`` XLA inserts the cross-device reductions (gradient all-reduce,
batch-norm statistics and batch-hard mining over the *global* batch), so N devices compute what one device
computes on the whole batch, up to float summation order. The same code runs on one CPU, several GPUs or a
TPU slice; simulate devices on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.

Multi-host: :func:`initialize` calls ``jax.distributed.initialize()`` when the environment describes a
multi-process job (``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES``, a SLURM job with several tasks,
``JHASH_DISTRIBUTED=1`` for auto-detecting clusters such as Cloud TPU). Each process then feeds its own
slice of the global batch (:func:`shard_batch` builds the global array from process-local data).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
_initialized = False


def multihost_requested(env=os.environ) -> bool:
    """Whether the environment describes a multi-process job."""
    if env.get("JHASH_DISTRIBUTED", "") in ("1", "true", "True"):
        return True
    if env.get("JAX_COORDINATOR_ADDRESS") or int(env.get("JAX_NUM_PROCESSES", "1") or 1) > 1:
        return True
    return int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env


def initialize() -> None:
    """``jax.distributed.initialize()`` once, when :func:`multihost_requested`; a no-op otherwise."""
    global _initialized
    if _initialized or not multihost_requested():
        return
    jax.distributed.initialize()
    _initialized = True


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """Place every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Global arrays sharded over ``'data'`` from this process's slice of the batch (numpy arrays)."""
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"the global batch ({global_batch} images) must divide evenly over the {n} devices of the mesh; "
            f"change config.train.batch_p / batch_k"
        )
    if global_batch % jax.process_count():
        raise ValueError(f"the global batch ({global_batch}) must divide over {jax.process_count()} processes")


def to_host(tree):
    """Fetch (fully replicated or fully addressable) arrays to numpy on this process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
