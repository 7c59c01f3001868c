"""Native failures are Python exceptions: a thread the system refuses to start or a buffer that cannot be
allocated gives RuntimeError / MemoryError (through the XLA FFI: a RuntimeError), and the process lives on.

Each case runs in a subprocess whose address space is capped (``RLIMIT_AS``) just above what it already uses,
so that a worker thread's stack (8 MiB by default) or a large scratch buffer cannot be mapped.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from jhash.search import native

if not native.is_available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}", allow_module_level=True)

# The child: build the inputs, cap the address space at (current size + headroom), run one search, report
# the exception type, lift the cap and check that a search still works.
CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from jhash.search import native

    case = sys.argv[1]
    rng = np.random.default_rng(0)
    if case in ("threads", "threads-jit", "threads-distance"):  # enough work for 4 threads
        q = rng.integers(0, 256, (16, 8), dtype=np.uint8)
        g = rng.integers(0, 256, (40000, 8), dtype=np.uint8)
        k, threads = 5, 4
    else:  # 32768-bit codes: the per-query distance histograms of 64 queries need ~8 MiB
        q = rng.integers(0, 256, (64, 4096), dtype=np.uint8)
        g = rng.integers(0, 256, (300, 4096), dtype=np.uint8)
        k, threads = 1, 1
    if case == "threads-jit":
        import jax
        qj, gj = jax.device_put(q), jax.device_put(g)
        # compiled, not run: a run would start the threads and glibc would reuse their stacks
        f = jax.jit(lambda a, b: native.hamming_topk(a, b, k, num_threads=threads)).lower(qj, gj).compile()
        call = lambda: [np.asarray(x) for x in f(qj, gj)]
    elif case == "threads-distance":
        call = lambda: native.hamming_distance_numpy(q, g, num_threads=threads)
    else:
        call = lambda: native.hamming_topk_numpy(q, g, k, num_threads=threads)
    want = native.hamming_topk_numpy(q, g, k, num_threads=1)  # on the calling thread only

    def vm_bytes():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) * 1024

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (4 << 20), hard))
    try:
        call()
        outcome = "no error"
    except Exception as exc:
        outcome = type(exc).__name__ + ": " + str(exc).splitlines()[0]
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    got = native.hamming_topk_numpy(q, g, k, num_threads=threads)
    ok = all(np.array_equal(a, b) for a, b in zip(got, want))
    print("OUTCOME", outcome)
    print("AFTER", "ok" if ok else "wrong")
    """
)


def run_child(case: str) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, case], capture_output=True, text=True, timeout=300,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
             "JAX_PLATFORMS": "cpu", "PYTHONPATH": ":".join(sys.path)},
    )
    assert proc.returncode == 0, f"child died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("OUTCOME", "AFTER")))
    return lines["OUTCOME"], lines["AFTER"]


@pytest.mark.parametrize("case", ["threads", "threads-distance"])
def test_thread_start_failure_is_runtime_error(case):
    outcome, after = run_child(case)
    assert outcome.startswith("RuntimeError: could not start the worker threads"), outcome
    assert "num_threads" in outcome
    assert after == "ok"


def test_thread_start_failure_under_jit_is_an_ffi_error():
    outcome, after = run_child("threads-jit")
    name = outcome.split(":", 1)[0]
    assert name in ("XlaRuntimeError", "JaxRuntimeError"), outcome
    assert "could not start the worker threads" in outcome
    assert after == "ok"


def test_allocation_failure_is_memory_error():
    outcome, after = run_child("alloc")
    assert outcome.startswith("MemoryError: out of memory"), outcome
    assert after == "ok"


def test_ffi_errors_are_runtime_errors():
    """XLA's error type for a failed custom call is a RuntimeError subclass (what callers catch)."""
    import jax

    err = getattr(jax.errors, "JaxRuntimeError", None)
    if err is None:
        from jaxlib.xla_extension import XlaRuntimeError as err  # type: ignore[no-redef]
    assert issubclass(err, RuntimeError)
