"""Data parallelism with ``jax.sharding``: one Mesh axis ``'data'`` over every device of every host.

The batch is sharded along its first axis over ``'data'``; parameters, optimizer state and batch statistics
are replicated. Inside one ``jax.jit`` XLA inserts the cross-device reductions (gradient all-reduce,
batch-norm statistics and batch-hard mining over the *global* batch), so N devices compute what one device
computes on the whole batch, up to float summation order. The same code runs on one CPU, several GPUs or a
TPU slice; simulate devices on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.

Multi-host: :func:`initialize` calls ``jax.distributed.initialize`` when the environment describes a
multi-process job: ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` (read here: jax itself reads only the address), or a cluster jax detects on its own (a
SLURM job with several tasks, Open MPI, Cloud TPU / GKE with ``JHASH_DISTRIBUTED=1``). On the CPU the
processes exchange gradients through gloo collectives (set here), so a 2-process job runs on one machine::

    JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 python train.py ... &
    JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 python train.py ...

Each process then feeds its own slice of the global batch (:func:`shard_batch` builds the global array
from process-local data; :func:`process_share` says which rows of a global batch are this process's).
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


def _env_int(env, name: str, lo: int, hi: int | None = None) -> int | None:
    raw = env.get(name, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < lo or (hi is not None and value >= hi):
        bound = f"in [{lo}, {hi})" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={raw!r}: expected an integer {bound}")
    return value


def distributed_args(env=os.environ) -> dict:
    """``jax.distributed.initialize`` keyword arguments from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``; those not set are left out, for jax's cluster detection (SLURM, MPI, TPU) to fill.

    ``ValueError`` naming the variable for a malformed value, or for a process count without a coordinator
    address or process id outside a detectable cluster.
    """
    args = {}
    address = env.get("JAX_COORDINATOR_ADDRESS", "")
    if address:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"JAX_COORDINATOR_ADDRESS={address!r}: expected host:port of process 0 "
                             f"(e.g. 10.0.0.1:12355)")
        args["coordinator_address"] = address
    count = _env_int(env, "JAX_NUM_PROCESSES", 1)
    if count is not None:
        args["num_processes"] = count
    pid = _env_int(env, "JAX_PROCESS_ID", 0, count)
    if pid is not None:
        args["process_id"] = pid
    if count is not None and count > 1 and not _cluster_detected(env):
        missing = [n for n, k in (("JAX_COORDINATOR_ADDRESS", "coordinator_address"), ("JAX_PROCESS_ID", "process_id"))
                   if k not in args]
        if missing:
            raise ValueError(f"JAX_NUM_PROCESSES={count} needs {' and '.join(missing)} too (every process: "
                             f"the same host:port of process 0, and its own id 0..{count - 1})")
    return args


def _cluster_detected(env) -> bool:
    """Whether jax's own cluster detection can fill in what the environment leaves out."""
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        return True
    return "OMPI_COMM_WORLD_SIZE" in env or env.get("JHASH_DISTRIBUTED", "") in ("1", "true", "True")


def initialize(env=os.environ) -> None:
    """``jax.distributed.initialize`` once, when :func:`multihost_requested`; a no-op otherwise.

    Arguments come from :func:`distributed_args`; CPU devices of several processes use gloo collectives.
    """
    global _initialized
    if _initialized or not multihost_requested(env):
        return
    args = distributed_args(env)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**args)
    _initialized = True


def process_share(n: int, index: int | None = None, count: int | None = None) -> slice:
    """The rows of a global batch of ``n`` rows that process ``index`` of ``count`` feeds (default: this
    process): :func:`jhash.data.sampler.process_rows`."""
    from jhash.data.sampler import process_rows

    index = jax.process_index() if index is None else index
    return process_rows(n, index, jax.process_count() if count is None else count)


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
    barrier()  # with several processes this is a collective (jax checks the processes hold equal values)
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Global arrays sharded over ``'data'`` from this process's slice of the batch (numpy arrays)."""
    global _fed
    if not _fed:  # the first step meets the other processes here, however far apart they started
        barrier()
        _fed = True
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


_barriers = 0
_fed = False
BARRIER_TIMEOUT_S = 1800


def barrier(timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Wait until every process gets here (through the coordinator's key-value store, not a collective).

    Called before cross-process collectives whose processes may arrive far apart (e.g. one still compiling):
    gloo gives up on a peer after 30 s, this waits up to ``timeout_s``. A no-op with one process.
    """
    global _barriers
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        return
    _barriers += 1
    client.wait_at_barrier(f"jhash_barrier_{_barriers}", int(timeout_s * 1000))


def to_host(tree):
    """Fetch (fully replicated or fully addressable) arrays to numpy on this process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    from jax.experimental import multihost_utils

    barrier()

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
