"""Exact Hamming top-k benchmark: jhash's native CPU kernel vs faiss ``IndexBinaryFlat``, 1 thread and all threads.

For every shape (queries x gallery codes x bits, exact top-100, random seeded codes) it times four contenders in
one process, interleaved round by round (jhash 1 thread, faiss 1 thread, jhash all threads, faiss all threads;
the order alternates every round), and prints per contender the median wall time and comparisons per second, then

- the jhash/faiss throughput ratio at 1 thread and at all threads (median of the per-round ratios: both sides of
  a ratio ran seconds apart, under the same load);
- each library's scaling from 1 thread to all threads (same-round ratios), and the CPU time a search costs (all
  threads of the process, median): CPU time at all threads over CPU time at 1 thread is the extra work threading
  costs, a figure the machine's load hardly changes (the wall-time scaling on a busy machine mostly does not
  measure the kernels);
- the kernel jhash dispatched for the width (and the instruction set), and whether every contender returned the
  exact top-k (each index has its distance, rows sorted, distances identical to faiss's);
- the load average (1 minute) before and after the shape, and how the CPUs' time was shared while it ran, from
  /proc/stat: other processes at normal priority (the machine's busy time minus this process's own CPU time),
  niced processes (positive nice value: they yield the CPU to the benchmark but run on any core it leaves idle),
  and on a virtual machine the hypervisor's steal (time given to other guests, which the load average cannot
  see). The load average alone cannot say whether the machine was quiet: the benchmark's own running threads
  count in it (a 2-thread search alone holds it near 1). A shape during which other normal-priority work took
  more than 5 % of the CPU time or steal more than 2 % is flagged "LOADED": its times measure the machine's
  other work as much as the kernels (faiss's OpenMP threads in particular slow down by up to 10x on a busy
  machine, while jhash's do not), so quote such rows only as "under load". A shape that shared the CPUs with
  more than 10 % of niced work is flagged "niced background": the 2-thread runs hardly notice it, but the
  1-thread runs share the memory system with it.

Between two timed calls the benchmark sleeps ``--gap`` seconds (default 0.1 s): faiss's OpenMP worker threads keep
spinning on the CPU for a few milliseconds after a search returns, which would steal a core from whichever
contender runs next. The CPU time those idle threads burn during the gap is printed.

The last table repeats every shape as Markdown, for the README.

Usage:
  python bench/search.py                  # one shape per width, 64-2048 bits (a few minutes)
  python bench/search.py --large          # also 1,000 queries x 1M x 256 bits and 100 x 10M x 64 bits
  python bench/search.py --quick          # small shapes, smoke test (seconds)
  python bench/search.py --shapes 256,2048 --runs 9
  python bench/search.py --xla            # also time the pure-JAX path (slow)
  python bench/search.py --memory         # also measure each contender's extra peak memory (subprocesses)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OtherWork, cpu_snapshot, other_work, process_cpu_seconds  # noqa: E402  (bench/_common.py)

K = 100
OTHER_WARN = 5.0  # % of CPU time taken by other normal-priority processes during a shape: LOADED
STEAL_WARN = 2.0  # % of CPU time taken by the hypervisor (virtual machines): LOADED
NICED_WARN = 10.0  # % of CPU time taken by niced processes: "niced background"
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


@dataclass(frozen=True)
class Shape:
    label: str
    nq: int
    ng: int
    bits: int


# One shape per code width from 64 to 2048 bits (about 0.05-0.2 s of single-thread jhash work each).
WIDTH_SHAPES = [
    Shape("64", 100, 1_000_000, 64),
    Shape("128", 100, 1_000_000, 128),
    Shape("256", 100, 1_000_000, 256),
    Shape("512", 100, 500_000, 512),
    Shape("1024", 100, 300_000, 1024),
    Shape("2048", 100, 200_000, 2048),
]
# Scaling on more work (--large): batch evaluation (1,000 queries) and a large short-code gallery (10M x 64 bits:
# 80 MB of codes, held three times -- numpy, the JAX array and faiss's index -- about 240 MB).
LARGE_SHAPES = [
    Shape("256-1000q", 1000, 1_000_000, 256),
    Shape("64-10M", 100, 10_000_000, 64),
]
FULL_SHAPES = WIDTH_SHAPES + LARGE_SHAPES
QUICK_SHAPES = [
    Shape("64", 10, 20_000, 64),
    Shape("256", 10, 20_000, 256),
    Shape("2048", 10, 5_000, 2048),
    Shape("256-1000q", 200, 20_000, 256),
    Shape("64-10M", 10, 100_000, 64),
]


def make_data(ng: int, bits: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random packed codes (seeded): q uint8 [nq, bits/8], g uint8 [ng, bits/8]."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 256, size=(ng, bits // 8), dtype=np.uint8)
    q = rng.integers(0, 256, size=(nq, bits // 8), dtype=np.uint8)
    return q, g


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------ contenders --
@dataclass
class Contender:
    name: str
    run: Callable[[], tuple]
    after: Callable[[], None] = field(default=lambda: None)  # called after each timed call (not timed)


def all_threads() -> int:
    from jhash.search import native

    return native.info()["num_threads"] if native.is_available() else (os.cpu_count() or 1)


def build_contenders(q: np.ndarray, g: np.ndarray, k: int, threads: int, *, xla: bool = False,
                     only: str | None = None) -> tuple[list[Contender], dict[str, str]]:
    """The contenders for one shape (unavailable ones are left out, with the reason in the second value).

    jhash runs through ``jax.jit`` of :func:`jhash.search.native.hamming_topk` (the XLA FFI custom call that
    ``jhash.search.hamming_topk(backend="native")`` dispatches to), faiss through ``IndexBinaryFlat.search``
    with ``omp_set_num_threads``.
    """
    out: list[Contender] = []
    notes: dict[str, str] = {}
    want = (lambda name: only is None or name == only)
    import jax

    from jhash.search import native

    qj, gj = jax.device_put(q), jax.device_put(g)
    if not native.is_available():
        notes["jhash"] = f"unavailable: {native.unavailable_reason()}"
    else:
        for n in sorted({1, threads}):
            name = f"jhash {n}t"
            if not want(name):
                continue
            fn = jax.jit(lambda a, b, n=n: native.hamming_topk(a, b, k, num_threads=n))

            def run_native(fn=fn):
                d, i = fn(qj, gj)
                return np.asarray(d), np.asarray(i)

            out.append(Contender(name, run_native))
    try:
        import faiss
    except ImportError as exc:
        notes["faiss"] = f"not installed (pip install -e '.[faiss]'): {exc}"
    else:
        index = None
        for n in sorted({1, threads}):
            name = f"faiss {n}t"
            if not want(name):
                continue
            if index is None:
                index = faiss.IndexBinaryFlat(g.shape[1] * 8)
                index.add(g)

            def run_faiss(n=n, index=index):
                faiss.omp_set_num_threads(n)
                return index.search(q, k)

            out.append(Contender(name, run_faiss))
    if xla and want("jhash-xla"):
        from jhash.search import hamming_topk

        fx = jax.jit(lambda a, b: hamming_topk(a, b, k, backend="xla"))

        def run_xla():
            d, i = fx(qj, gj)
            return np.asarray(d), np.asarray(i)

        out.append(Contender("jhash-xla", run_xla))
    return out, notes


# ---------------------------------------------------------------- checks --
def verify(q: np.ndarray, g: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> str | None:
    """None if every row is sorted, indices are distinct and in range, and each index has its distance."""
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
def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
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


def memory_child(name: str, nq: int, ng: int, bits: int, threads: int, runs: int) -> None:
    """Extra peak RSS of `runs` searches after a warm-up (compile) call, on top of the inputs.

    tracemalloc would only see Python allocations, not faiss's, XLA's or the native kernel's, so the kernel's
    peak-RSS mark is reset (``/proc/self/clear_refs``; elsewhere the ``ru_maxrss`` delta is used).
    """
    import gc

    q, g = make_data(ng, bits, nq)
    contenders, _ = build_contenders(q, g, K, threads, xla=name == "jhash-xla", only=name)
    if not contenders:
        print(json.dumps({"error": "unavailable"}))
        return
    fn = contenders[0].run
    fn()  # warm-up: JIT compilation memory is not part of the search's working memory
    gc.collect()
    if _reset_peak_rss():
        before, method = _proc_status_kib("VmRSS"), "VmHWM after clear_refs"
    else:
        before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss delta"
    for _ in range(runs):
        fn()
    hwm = _proc_status_kib("VmHWM")
    peak = hwm if (hwm is not None and method.startswith("VmHWM")) else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": peak, "method": method}))


def measure_memory(name: str, shape: Shape, threads: int, runs: int) -> str:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, "--nq", str(shape.nq),
           "--ng", str(shape.ng), "--bits", str(shape.bits), "--threads", str(threads), "--runs", str(runs)]
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
    return f"{delta:.1f} MiB over the {rec['before_kib'] / 1024:.0f} MiB resident before ({rec['method']})"


# ------------------------------------------------------------------ main --
def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[r] / den[r] (same-round pairs ran under the same load)."""
    return statistics.median(a / b for a, b in zip(num, den))


def fmt_load(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def is_loaded(w: OtherWork | None) -> bool:
    """Other normal-priority work or the hypervisor took a share of the CPUs (the LOADED rule)."""
    return w is not None and (w.normal > OTHER_WARN or w.steal > STEAL_WARN)


def is_niced_background(w: OtherWork | None) -> bool:
    """Niced processes took more than ``NICED_WARN`` % of the CPUs (the "niced background" rule)."""
    return w is not None and w.niced > NICED_WARN


def load_flag(w: OtherWork | None) -> str:
    """A row's label from the other work during it: " **LOADED**" (:func:`is_loaded`), " niced background"
    (:func:`is_niced_background`), or ""."""
    if is_loaded(w):
        return " **LOADED**"
    return " niced background" if is_niced_background(w) else ""


def fmt_share(w: OtherWork | None) -> str:
    """Other work during a shape, as the summary table shows it."""
    if w is None:
        return "n/a"
    return f"other {w.normal:.1f} %, niced {w.niced:.1f} %, steal {w.steal:.1f} %"


@dataclass
class ShapeResult:
    shape: Shape
    kernel: str
    med_ms: dict[str, float]
    ratio_1t: float | None
    ratio_all: float | None
    scale_jhash: float | None
    scale_faiss: float | None
    load: tuple[float | None, float | None]
    ok: bool
    other: OtherWork | None = None  # how the CPUs' time was shared during the shape

    @property
    def loaded(self) -> bool:
        return is_loaded(self.other)

    @property
    def niced_background(self) -> bool:
        return is_niced_background(self.other)

    @property
    def flag(self) -> str:
        return load_flag(self.other)


def bench_shape(shape: Shape, threads: int, runs: int, gap: float, *, xla: bool, memory: bool,
                quick: bool) -> ShapeResult:
    from jhash.search import native

    load_before, snap_before = load_average(), cpu_snapshot()
    q, g = make_data(shape.ng, shape.bits, shape.nq)
    kernel = native.kernel_for(shape.bits // 8) if native.is_available() else "n/a"
    print(f"\n== shape {shape.label}: {shape.nq:,} queries x {shape.ng:,} gallery codes x {shape.bits} bits, "
          f"exact top-{K}; jhash kernel {kernel}; load average before {fmt_load(load_before)} ==")
    contenders, notes = build_contenders(q, g, K, threads, xla=xla)
    for name, why in notes.items():
        print(f"  {name}: skipped ({why})")
    results = {c.name: c.run() for c in contenders}  # warm-up (compiles the JAX programs)
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    spin: list[float] = []
    for r in range(runs):
        order = contenders if r % 2 == 0 else contenders[::-1]  # alternate who goes first
        for c in order:
            c0, t0 = process_cpu_seconds(), time.perf_counter()
            c.run()
            times[c.name].append(time.perf_counter() - t0)
            cpu[c.name].append(process_cpu_seconds() - c0)
            c0 = process_cpu_seconds()
            time.sleep(gap)  # let the previous contender's idle threads stop spinning
            if c.name.startswith("faiss") and not c.name.endswith(" 1t"):
                spin.append(process_cpu_seconds() - c0)
    load_after, other = load_average(), other_work(snap_before, cpu_snapshot())

    ok = True
    if "faiss 1t" in results:
        ref_d, ref_name = np.asarray(results["faiss 1t"][0], np.int64), "faiss"
    elif quick:
        ref_d, ref_name = numpy_reference(q, g, K), "numpy brute force"
    else:
        ref_d, ref_name = None, "none"
    print(f"  {'contender':<12}{'median ms':>11}{'min ms':>9}{'Gcomp/s':>9}{'CPU ms':>9}  exact and identical "
          f"distances (vs {ref_name})")
    med_ms: dict[str, float] = {}
    for c in contenders:
        med = statistics.median(times[c.name])
        med_ms[c.name] = med * 1e3
        d, i = (np.asarray(a) for a in results[c.name])
        problem = verify(q, g, d, i)
        if problem is not None:
            same, ok = f"NO ({problem})", False
        elif ref_d is None:
            same = "n/a (no reference)"
        elif np.array_equal(d.astype(np.int64), ref_d):
            same = "yes"
        else:
            same, ok = "NO (distance lists differ)", False
        print(f"  {c.name:<12}{med * 1e3:>11.2f}{min(times[c.name]) * 1e3:>9.2f}"
              f"{shape.nq * shape.ng / med / 1e9:>9.3f}{statistics.median(cpu[c.name]) * 1e3:>9.1f}  "
              f"identical distances: {same}")

    def ratio(a: str, b: str) -> float | None:
        return median_ratio(times[b], times[a]) if a in times and b in times else None

    all_t = f"{threads}t"
    res = ShapeResult(shape, kernel, med_ms, ratio("jhash 1t", "faiss 1t"),
                      ratio(f"jhash {all_t}", f"faiss {all_t}") if threads > 1 else None,
                      ratio(f"jhash {all_t}", "jhash 1t") if threads > 1 else None,
                      ratio(f"faiss {all_t}", "faiss 1t") if threads > 1 else None,
                      (load_before, load_after), ok, other)
    for label, v in (("jhash/faiss throughput, 1 thread each", res.ratio_1t),
                     (f"jhash/faiss throughput, {threads} threads each", res.ratio_all),
                     (f"jhash speed-up 1 -> {threads} threads", res.scale_jhash),
                     (f"faiss speed-up 1 -> {threads} threads", res.scale_faiss)):
        if v is not None:
            print(f"  {label}: {v:.2f}x")
    for lib in ("jhash", "faiss"):
        if threads > 1 and f"{lib} 1t" in cpu and f"{lib} {all_t}" in cpu:
            print(f"  {lib} CPU time at {threads} threads / at 1 thread (extra work of threading): "
                  f"{median_ratio(cpu[f'{lib} {all_t}'], cpu[f'{lib} 1t']):.2f}")
    if spin:
        print(f"  CPU burnt by faiss's idle OpenMP threads in the {gap:.2f} s gap after a search: "
              f"{statistics.median(spin) * 1e3:.1f} ms (median)")
    print(f"  load average before / after (counts this benchmark's own threads): {fmt_load(load_before)} / "
          f"{fmt_load(load_after)}")
    print(f"  share of the CPUs' time during the shape: {fmt_share(other)} (other = normal-priority processes "
          "but this one)")
    if res.loaded:
        print(f"  WARNING: other normal-priority work above {OTHER_WARN:g} % or steal above {STEAL_WARN:g} %: this "
              "row is LOADED (other work shared the CPUs); quote it only as an under-load figure")
    elif res.niced_background:
        print(f"  NOTE: niced processes used more than {NICED_WARN:g} % of the CPUs: the 1-thread runs shared the "
              "memory system with them (row labelled 'niced background')")
    if memory:
        for c in contenders:
            n = int(c.name.split()[-1][:-1]) if c.name.endswith("t") else threads
            print(f"  extra peak memory {c.name:<12} {measure_memory(c.name, shape, n, min(runs, 3))}")
    return res


def summary_table(results: list[ShapeResult], threads: int) -> str:
    """The shapes as a Markdown table (the README's search benchmark table)."""
    t = threads
    lines = [f"| gallery | queries | jhash kernel | jhash 1t / {t}t ms | faiss 1t / {t}t ms | jhash/faiss 1t | "
             f"jhash/faiss {t}t | scaling 1→{t}t jhash / faiss | load before→after; CPU share of other work |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.shape

        def ms(name: str) -> str:
            return f"{r.med_ms[name]:.1f}" if name in r.med_ms else "–"

        def x(v: float | None) -> str:
            return "–" if v is None else f"{v:.2f}×"

        lines.append(
            f"| {s.ng:,} × {s.bits} b | {s.nq:,} | {r.kernel} | {ms('jhash 1t')} / {ms(f'jhash {t}t')} | "
            f"{ms('faiss 1t')} / {ms(f'faiss {t}t')} | {x(r.ratio_1t)} | {x(r.ratio_all)} | "
            f"{x(r.scale_jhash)} / {x(r.scale_faiss)} | {fmt_load(r.load[0])}→{fmt_load(r.load[1])}; "
            f"{fmt_share(r.other)}{r.flag} |")
    return "\n".join(lines)


def report_idle_machine(consequence: str) -> None:
    """Print the load average and the other work on the CPUs during one idle second before the first shape, and
    a warning ending with ``consequence`` if that work would label a row LOADED."""
    la, snap = load_average(), cpu_snapshot()
    time.sleep(1.0)
    idle = other_work(snap, cpu_snapshot())
    print(f"  before the first shape (1 s idle): load average {fmt_load(la)}; {fmt_share(idle)}")
    if is_loaded(idle):
        print(f"  WARNING: other work is running: {consequence}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes, smoke test")
    ap.add_argument("--runs", type=int, default=None, help="timed rounds per shape (default 7, quick 2)")
    ap.add_argument("--shapes", default=None, help="comma-separated shape labels (default: one per width); "
                    "full: " + ",".join(s.label for s in FULL_SHAPES))
    ap.add_argument("--large", action="store_true", help="also the scaling rows on more work: "
                    + ", ".join(f"{s.label} ({s.nq:,} x {s.ng:,} x {s.bits} b)" for s in LARGE_SHAPES))
    ap.add_argument("--threads", type=int, default=None, help="'all threads' (default: the CPUs jhash uses)")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds of sleep between timed calls (default 0.1)")
    ap.add_argument("--xla", action="store_true", help="also time jhash's pure-JAX search (slow)")
    ap.add_argument("--memory", action="store_true", help="also measure extra peak memory (subprocesses)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--nq", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ng", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bits", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.nq, args.ng, args.bits, args.threads or 1, args.runs or 3)
        return 0
    runs = args.runs or (2 if args.quick else 7)
    if runs < 1:
        ap.error(f"--runs: expected >= 1, got {runs}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads: expected >= 1, got {args.threads}")
    catalogue = QUICK_SHAPES if args.quick else FULL_SHAPES
    by_label = {s.label: s for s in catalogue}
    if args.shapes:
        labels = [x.strip() for x in args.shapes.split(",") if x.strip()]
    else:
        default = catalogue if args.quick else WIDTH_SHAPES + (LARGE_SHAPES if args.large else [])
        labels = [s.label for s in default]
    unknown = [x for x in labels if x not in by_label]
    if unknown:
        ap.error(f"--shapes: unknown {unknown}; expected some of {list(by_label)}")

    import jax

    from jhash.search import native

    threads = args.threads or all_threads()
    print("jhash search benchmark" + (" (--quick)" if args.quick else ""))
    print(f"  CPU: {cpu_model()}, {os.cpu_count()} CPUs visible; jax {jax.__version__} ({jax.default_backend()})")
    if native.is_available():
        inf = native.info()
        print(f"  jhash native: ISA {inf['isa']} (usable: {', '.join(inf['available_isas'])}), {inf['compiler']}, "
              f"{inf['num_threads']} threads by default")
        widths = sorted({s.bits for s in catalogue} | {64, 128, 256, 512, 1024, 2048})
        print("  kernel per width: " + ", ".join(f"{b} b: {native.kernel_for(b // 8)}" for b in widths))
    else:
        print(f"  jhash native unavailable: {native.unavailable_reason()}")
    try:
        import faiss

        opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else "?"
        print(f"  faiss {faiss.__version__} (compile options: {opts.strip()}), "
              f"OpenMP max threads {faiss.omp_get_max_threads()}")
    except ImportError:
        pass
    print(f"  'all threads' = {threads}; {runs} interleaved rounds per shape, {args.gap:.2f} s gap between calls")
    report_idle_machine("timings will be noisy and multi-threaded figures unreliable; rows measured while it "
                        "runs are labelled LOADED")

    results = [bench_shape(by_label[label], threads, runs, args.gap, xla=args.xla, memory=args.memory,
                           quick=args.quick) for label in labels]
    print("\n== summary (Markdown) ==")
    print(summary_table(results, threads))
    loaded = [r.shape.label for r in results if r.loaded]
    if loaded:
        print(f"\nLOADED rows (other normal-priority work > {OTHER_WARN:g} % or steal > {STEAL_WARN:g} % of the "
              f"CPUs' time): {', '.join(loaded)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
