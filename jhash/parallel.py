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

import json
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


def _client():
    """The distributed runtime client with several processes, else None."""
    if jax.process_count() == 1:
        return None
    from jax._src import distributed

    return distributed.global_state.client
BARRIER_TIMEOUT_S = 1800


def barrier(timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Wait until every process gets here (through the coordinator's key-value store, not a collective).

    Called before cross-process collectives whose processes may arrive far apart (e.g. one still compiling):
    gloo gives up on a peer after 30 s, this waits up to ``timeout_s``. A no-op with one process.
    """
    global _barriers
    client = _client()
    if client is None:
        return
    _barriers += 1
    client.wait_at_barrier(f"jhash_barrier_{_barriers}", int(timeout_s * 1000))


class OtherProcessError(RuntimeError):
    """What process 0 decided for every process failed there; the other processes raise this with its message."""


_exchanges = 0


def _exchange_key(name: str) -> str:
    global _exchanges
    _exchanges += 1
    return f"jhash/{name}/{_exchanges}"


def from_process_0(decide, name: str, timeout_s: float = BARRIER_TIMEOUT_S):
    """``decide()`` run on process 0 alone, its JSON-serialisable result returned on every process.

    For decisions that read or change shared files (which checkpoint to resume from, which are damaged):
    one process makes them, the others wait for its answer through the coordinator's key-value store (not a
    collective, so processes may arrive up to ``timeout_s`` apart). An exception in ``decide`` is re-raised on
    process 0 and becomes :class:`OtherProcessError` with its message on the others, so none is left waiting.
    With one process this is ``decide()``.
    """
    client = _client()
    if client is None:
        return decide()
    key = _exchange_key(name)
    if jax.process_index() == 0:
        try:
            value = decide()
        except BaseException as e:
            client.key_value_set(key, json.dumps({"error": f"{type(e).__name__}: {e}"}))
            raise
        client.key_value_set(key, json.dumps({"value": value}))
        return value
    answer = json.loads(client.blocking_key_value_get(key, int(timeout_s * 1000)))
    if "error" in answer:
        raise OtherProcessError(f"process 0 failed ({name}): {answer['error']}")
    return answer["value"]


def check_same(value, name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Raise :class:`OtherProcessError` on every process unless all processes pass the same JSON value
    (through the key-value store); a no-op with one process."""
    client = _client()
    if client is None:
        return
    key = _exchange_key(name)
    client.key_value_set(f"{key}/{jax.process_index()}", json.dumps(value))
    values = [json.loads(client.blocking_key_value_get(f"{key}/{i}", int(timeout_s * 1000)))
              for i in range(jax.process_count())]
    if any(v != values[0] for v in values):
        raise OtherProcessError(f"the processes disagree on {name}: {values} (process 0, 1, ...)")


class StopVote:
    """Agreement of all processes on stopping: every process passes its own stop request (a signal number,
    0 for none) after each training step; :meth:`agreed` returns the largest request of any process.

    One process: the request itself, at once. Several: an all-reduce (max) over the mesh, so every process
    gets the same answer for the same step, and a SIGTERM / SIGINT delivered to one process stops all of them
    after the same step. The answer for step ``s`` is read when step ``s + 1`` has been dispatched, so the
    vote never waits for a step to finish: the processes stop one step after the signal's step.
    """

    def __init__(self, mesh: Mesh):
        self._mesh = mesh
        self._multi = jax.process_count() > 1
        self._pending = None
        if self._multi:
            self._max = jax.jit(lambda v: v.max(), in_shardings=data_sharded(mesh), out_shardings=replicated(mesh))

    def agreed(self, request: int) -> int:
        """The agreed stop request: the largest of every process's request at the previous call (one process:
        ``request``)."""
        if not self._multi:
            return int(request)
        local = np.full((len(self._mesh.local_devices),), int(request), np.int32)
        vote = self._max(jax.make_array_from_process_local_data(data_sharded(self._mesh), local))
        previous, self._pending = self._pending, vote
        return 0 if previous is None else int(previous)


def local_copy(x) -> np.ndarray:
    """A numpy copy of ``x`` on this process: an array this process holds whole (numpy, a single-device array
    or one replicated over the mesh, whose first local copy is taken: no communication)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError(f"local_copy: an array of shape {x.shape} sharded over several processes has no "
                             f"whole copy here (use to_host)")
        x = x.addressable_data(0)
    return np.asarray(jax.device_get(x))


def to_host(tree):
    """Fetch (fully replicated or fully addressable) arrays to numpy on this process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    from jax.experimental import multihost_utils

    barrier()

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
