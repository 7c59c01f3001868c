"""Exact Hamming top-k benchmark: jhash (native CPU kernel, pure JAX) vs faiss IndexBinaryFlat.

Workload (issue 2): exact top-100 for 100 queries against
  (a) 1,000,000 x 256-bit and (b) 200,000 x 2048-bit random codes (seeded).

For every shape it prints, per contender: the median wall time over >= 5 timed
runs (after a warm-up call that also compiles the JAX programs), comparisons per
second (nq * ng / time), the extra peak memory of the search, and whether the
distances equal faiss's. Contenders run in the same process, interleaved
(A, B, C, A, B, C, ...) because the machine may be shared; the jhash/faiss
throughput ratio is given per interleaved pair and as the median of those.

Peak memory: each contender is run again in its own subprocess, which builds
the same data and only that contender, makes one warm-up call (JIT compilation
memory is not search memory), resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``; elsewhere the ``getrusage(RUSAGE_SELF).ru_maxrss``
delta is used) and runs the searches; extra peak memory = peak RSS during the
searches minus the RSS before them (outputs, scratch, XLA buffers, on top of
the inputs). tracemalloc is not used: it only sees Python allocations, not
faiss's, XLA's or the native kernel's memory.

Usage:
  python bench/search.py            # full shapes (a) and (b)
  python bench/search.py --quick    # small shapes, smoke test (no memory subprocesses)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

K = 100
NQ = 100
FULL_SHAPES = {"a": (1_000_000, 256), "b": (200_000, 2048)}
QUICK_SHAPES = {"a": (20_000, 256), "b": (5_000, 2048)}
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def make_data(ng: int, bits: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 256, size=(ng, bits // 8), dtype=np.uint8)
    q = rng.integers(0, 256, size=(nq, bits // 8), dtype=np.uint8)
    return q, g


# ------------------------------------------------------------ contenders --
def _jhash_search_topk():
    """jhash.search.hamming_topk if the public search module provides it."""
    try:
        from jhash.search import hamming_topk  # type: ignore[attr-defined]
    except ImportError:
        return None
    return hamming_topk


def build_contenders(
    q: np.ndarray, g: np.ndarray, k: int, only: str | None = None
) -> dict[str, Callable[[], tuple]]:
    """name -> zero-arg callable returning (dist, idx) numpy arrays; unavailable ones left out."""
    out: dict[str, Callable[[], tuple]] = {}
    notes: dict[str, str] = {}
    want = (lambda name: only is None or name == only)
    try:
        if not want("faiss"):
            raise ModuleNotFoundError("not requested")
        import faiss

        index = faiss.IndexBinaryFlat(g.shape[1] * 8)
        index.add(g)

        def run_faiss():
            d, i = index.search(q, k)
            return d, i

        out["faiss"] = run_faiss
    except ImportError as exc:
        if want("faiss"):
            notes["faiss"] = f"faiss not installed (pip install -e '.[faiss]'): {exc}"

    import jax

    from jhash.search import native

    qj, gj = jax.device_put(q), jax.device_put(g)
    public = _jhash_search_topk()
    if not want("jhash-native"):
        pass
    elif native.is_available():
        if public is not None:
            fn = jax.jit(lambda a, b: public(a, b, k, backend="native"))
            via = "jhash.search.hamming_topk(backend='native')"
        else:
            fn = jax.jit(lambda a, b: native.hamming_topk(a, b, k))
            via = "jhash.search.native.hamming_topk"

        def run_native():
            d, i = fn(qj, gj)
            return np.asarray(d), np.asarray(i)

        run_native.via = via  # type: ignore[attr-defined]
        out["jhash-native"] = run_native
    else:
        notes["jhash-native"] = f"unavailable: {native.unavailable_reason()}"
    if not want("jhash-xla"):
        pass
    elif public is not None:
        fx = jax.jit(lambda a, b: public(a, b, k, backend="xla"))

        def run_xla():
            d, i = fx(qj, gj)
            return np.asarray(d), np.asarray(i)

        run_xla.via = "jhash.search.hamming_topk(backend='xla')"  # type: ignore[attr-defined]
        out["jhash-xla"] = run_xla
    else:
        notes["jhash-xla"] = "jhash.search.hamming_topk not available yet"
    build_contenders.notes = notes  # type: ignore[attr-defined]
    return out


# ---------------------------------------------------------------- checks --
def verify(q: np.ndarray, g: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> str | None:
    """None if every row is sorted, indices are distinct and each index has its distance."""
    if dist.shape != (q.shape[0], K) or idx.shape != (q.shape[0], K):
        return f"bad result shapes {dist.shape} {idx.shape}"
    for r in range(q.shape[0]):
        if np.any(np.diff(dist[r]) < 0):
            return f"row {r} not sorted by distance"
        if len(set(idx[r].tolist())) != K or idx[r].min() < 0 or idx[r].max() >= g.shape[0]:
            return f"row {r} has duplicate or out-of-range indices"
        true = POPCOUNT8[np.bitwise_xor(q[r][None, :], g[idx[r]])].sum(axis=1)
        if not np.array_equal(true, dist[r]):
            return f"row {r}: a returned index does not have the returned distance"
    return None


def numpy_reference(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k distances by brute force (small shapes only)."""
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for r in range(q.shape[0]):
        d = POPCOUNT8[np.bitwise_xor(q[r][None, :], g)].sum(axis=1)
        out[r] = np.sort(d, kind="stable")[:k]
    return out


# ---------------------------------------------------------------- memory --
def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: reset the peak-RSS high-water mark (echo 5 > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(name: str, ng: int, bits: int, runs: int) -> None:
    """Extra peak RSS of `runs` searches after a warm-up (compile) call, on top of the inputs."""
    import gc

    q, g = make_data(ng, bits, NQ)
    contenders = build_contenders(q, g, K, only=name)
    if name not in contenders:
        print(json.dumps({"error": "unavailable"}))
        return
    fn = contenders[name]
    fn()  # warm-up: JIT compilation memory is not part of the search's working memory
    gc.collect()
    if _reset_peak_rss():
        before, method = _proc_status_kib("VmRSS"), "VmHWM after clear_refs"
    else:
        before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss delta"
    for _ in range(runs):
        fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = _proc_status_kib("VmHWM")
    peak = hwm if (hwm is not None and method.startswith("VmHWM")) else after
    print(json.dumps({"before_kib": before, "after_kib": peak, "method": method}))


def measure_memory(name: str, ng: int, bits: int, runs: int) -> str:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name,
           "--ng", str(ng), "--bits", str(bits), "--runs", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return "error: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    try:
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return "error: no result"
    if "error" in rec:
        return rec["error"]
    delta = max(0, rec["after_kib"] - rec["before_kib"]) / 1024
    return (f"{delta:.1f} MiB over the {rec['before_kib'] / 1024:.0f} MiB resident before the "
            f"timed searches ({rec['method']})")


# ------------------------------------------------------------------ main --
def bench_shape(label: str, ng: int, bits: int, runs: int, memory: bool, quick: bool) -> bool:
    q, g = make_data(ng, bits, NQ if not quick else 10)
    nq = q.shape[0]
    print(f"\n== shape ({label}): {nq} queries x {ng:,} gallery codes x {bits} bits, exact top-{K} ==")
    contenders = build_contenders(q, g, K)
    for name, why in build_contenders.notes.items():  # type: ignore[attr-defined]
        print(f"  {name}: skipped ({why})")
    names = list(contenders)
    results: dict[str, tuple] = {}
    for name in names:  # warm-up (compiles the JAX programs)
        results[name] = contenders[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]  # interleave, alternate who goes first
        for name in order:
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)

    ok = True
    ref_d = None
    ref_name = "faiss"
    if "faiss" in results:
        ref_d = np.asarray(results["faiss"][0], dtype=np.int64)
    elif quick:
        ref_d, ref_name = numpy_reference(q, g, K), "numpy brute force"
    print(f"  {'contender':<14}{'median ms':>11}{'min ms':>9}{'Gcomp/s':>9}  identical distances (vs {ref_name})")
    for name in names:
        med = statistics.median(times[name])
        thr = nq * ng / med / 1e9
        d, i = (np.asarray(a) for a in results[name])
        problem = verify(q, g, d, i)
        if ref_d is None:
            same = "n/a (no reference)"
        elif problem is not None:
            same, ok = f"NO ({problem})", False
        elif np.array_equal(d.astype(np.int64), ref_d):
            same = "yes"
        else:
            same, ok = "NO (distance lists differ)", False
        print(f"  {name:<14}{med * 1e3:>11.2f}{min(times[name]) * 1e3:>9.2f}{thr:>9.3f}  "
              f"identical distances: {same}")
    for name in names:
        via = getattr(contenders[name], "via", None)
        if via:
            print(f"  {name} called via {via}")
    if "faiss" in times:
        for name in names:
            if name == "faiss":
                continue
            pair = [f / j for f, j in zip(times["faiss"], times[name])]  # throughput ratio
            print(f"  ratio {name}/faiss throughput: median {statistics.median(pair):.2f}x "
                  f"(per interleaved pair: {', '.join(f'{x:.2f}' for x in pair)})")
    if memory:
        for name in names:
            print(f"  extra peak memory {name:<14} {measure_memory(name, ng, bits, min(runs, 3))}")
    else:
        print("  extra peak memory: not measured (--quick or --no-memory)")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes, smoke test")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per contender (default 7, quick 3)")
    ap.add_argument("--shapes", default="a,b", help="comma-separated subset of a,b")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ng", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bits", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.ng, args.bits, args.runs or 3)
        return 0
    runs = args.runs or (3 if args.quick else 7)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES

    import jax

    from jhash.search import native

    print("jhash search benchmark" + (" (--quick)" if args.quick else ""))
    print(f"  jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs visible")
    if native.is_available():
        inf = native.info()
        print(f"  jhash native: isa={inf['isa']} (available {inf['available_isas']}), "
              f"threads={inf['num_threads']}, {inf['compiler']}, kernels {inf['kernels']}")
    else:
        print(f"  jhash native unavailable: {native.unavailable_reason()}")
    try:
        import faiss

        print(f"  faiss {faiss.__version__}, OpenMP threads={faiss.omp_get_max_threads()}")
    except ImportError:
        pass
    try:
        la = os.getloadavg()
        print(f"  load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (shared machine: see interleaved ratios)")
    except OSError:
        pass
    ok = True
    for label in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        ng, bits = shapes[label]
        ok &= bench_shape(label, ng, bits, runs, memory=not (args.quick or args.no_memory), quick=args.quick)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
