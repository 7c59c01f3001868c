"""What threading costs jhash's exact Hamming top-k: 1 thread against all threads under each work split.

jhash only (faiss is never imported, so no OpenMP threads share the process). For every shape (queries x gallery
codes x bits, exact top-100, random seeded codes) it times, interleaved round by round (the order reverses every
round, with ``--gap`` seconds of sleep between calls):

- one thread: one pass over the gallery (``native.hamming_topk_numpy(..., num_threads=1)``, the automatic rule),
  the baseline of every ratio below;
- all threads under each split setting given with ``--settings`` (``native.hamming_topk_numpy``'s ``split`` and
  ``items_per_thread``): ``auto`` (today's rule), ``queries:N`` (N query superblocks per thread, each scanning the
  whole gallery), ``gallery:N`` (N gallery chunks per thread, sharing thresholds, merged at the end); ``queries``
  or ``gallery`` without ``:N`` take the kernel's default count, ``auto:N`` sets the count under the automatic
  rule.

Per setting it prints the median wall time, the median 1 -> N-thread speed-up (the median of same-round ratios:
both calls ran under the same load), the speed-up of the fastest rounds (fastest 1-thread time over fastest
N-thread time), and the CPU time (process CPU time, all threads) at N threads over that at 1 thread, the median of
same-round ratios: the extra work the split costs, a figure the machine's load hardly changes. Every setting must
return exactly the 1-thread result (distances and indices); with ``--quick`` the distances are also checked
against a numpy brute force.

Per shape it prints the kernel dispatched for the width, the load average before and after, and how the CPUs'
time was shared while it ran (other normal-priority processes, niced processes, steal; from /proc/stat), with the
labels ``bench/search.py`` uses: LOADED (other normal-priority work above 5 % or steal above 2 %: quote the row
only as "under load") and "niced background" (niced processes above 10 %).

``--independent`` asks instead whether the CPUs are independent, the premise of any thread speed-up: per shape it
times a 1-thread search alone, then two 1-thread searches at the same time in two separate processes (started
together, each timing the same number of rounds), then alone again, and prints each process's median against
the alone median. On a machine whose cores share nothing that matters, both stay within a few per cent; on a
virtual machine whose two vCPUs the host sometimes places on one physical core (or shares with other guests), one
or both slow down although no steal is recorded, and no split can then reach 2x.

Usage:
  python bench/search_threads.py                        # 1M x 256 b, 500k x 512 b, 200k x 2048 b, 1M x 128 b
  python bench/search_threads.py --runs 9 --shapes 512,2048
  python bench/search_threads.py --settings auto,queries:1,queries:2,queries:3
  python bench/search_threads.py --independent --shapes 64,2048   # are the two CPUs independent?
  python bench/search_threads.py --quick                # small shapes, correctness smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OtherWork, cpu_snapshot, other_work, process_cpu_seconds  # noqa: E402  (bench/_common.py)
from search import (  # noqa: E402  (bench/search.py: shapes, data, checks and labels shared with it)
    FULL_SHAPES, K, Shape, all_threads, cpu_model, fmt_load, fmt_share, load_average, load_flag, make_data,
    median_ratio, numpy_reference, report_idle_machine, verify)

DEFAULT_SHAPES = ["256", "512", "2048", "128"]
DEFAULT_SETTINGS = "auto,queries:1,queries:2,gallery:2,gallery:4"
# Small shapes for --quick: both sides of the 8-queries-per-thread rule, galleries large enough for several
# gallery chunks (chunks have at least 4096 rows).
QUICK_SHAPES = [
    Shape("256", 100, 20_000, 256),
    Shape("512", 60, 12_000, 512),
    Shape("2048", 40, 9_000, 2048),
    Shape("128", 10, 20_000, 128),
]


@dataclass(frozen=True)
class Setting:
    """One way of splitting the work between threads (``split`` / ``items_per_thread`` of the native top-k)."""

    label: str
    split: str | None
    items_per_thread: int | None


def parse_settings(text: str) -> list[Setting]:
    """``"auto,queries:2,gallery:4"`` -> settings; ValueError naming the bad entry."""
    names = {"auto": None, "queries": "queries", "gallery": "gallery"}
    out: list[Setting] = []
    for entry in (x.strip() for x in text.split(",")):
        if not entry:
            continue
        name, _, count = entry.partition(":")
        if name not in names or (count and not (count.isdigit() and int(count) >= 1)):
            raise ValueError(f"--settings: expected entries auto, queries or gallery, each optionally :N with "
                             f"N >= 1 (e.g. queries:2), got {entry!r}")
        out.append(Setting(entry, names[name], int(count) if count else None))
    if not out:
        raise ValueError("--settings: expected at least one setting")
    if len({s.label for s in out}) != len(out):
        raise ValueError(f"--settings: an entry is repeated in {text!r}")
    return out


@dataclass
class SettingResult:
    setting: Setting
    med_ms: float
    speedup: float  # median of same-round (1-thread time / N-thread time)
    fastest_speedup: float  # fastest 1-thread round / fastest N-thread round
    cpu_ratio: float  # median of same-round (CPU time at N threads / at 1 thread)
    identical: bool


@dataclass
class ShapeRun:
    shape: Shape
    kernel: str
    one_thread_ms: float
    settings: list[SettingResult]
    load: tuple[float | None, float | None]
    other: OtherWork | None
    ok: bool

    @property
    def flag(self) -> str:
        return load_flag(self.other)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    c0, t0 = process_cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, process_cpu_seconds() - c0


def bench_shape(shape: Shape, settings: list[Setting], threads: int, runs: int, gap: float, *,
                quick: bool) -> ShapeRun:
    from jhash.search import native

    load_before, snap_before = load_average(), cpu_snapshot()
    q, g = make_data(shape.ng, shape.bits, shape.nq)
    kernel = native.kernel_for(shape.bits // 8)
    print(f"\n== shape {shape.label}: {shape.nq:,} queries x {shape.ng:,} gallery codes x {shape.bits} bits, "
          f"exact top-{K}; kernel {kernel}; load average before {fmt_load(load_before)} ==")
    base = "1 thread"
    calls = {base: lambda: native.hamming_topk_numpy(q, g, K, num_threads=1)}
    for s in settings:
        calls[s.label] = (lambda s=s: native.hamming_topk_numpy(
            q, g, K, num_threads=threads, split=s.split, items_per_thread=s.items_per_thread))
    results = {label: fn() for label, fn in calls.items()}  # warm-up, and the results to compare
    wall: dict[str, list[float]] = {label: [] for label in calls}
    cpu: dict[str, list[float]] = {label: [] for label in calls}
    labels = list(calls)
    for r in range(runs):
        for label in labels if r % 2 == 0 else labels[::-1]:
            w, c = timed(calls[label])
            wall[label].append(w)
            cpu[label].append(c)
            time.sleep(gap)
    load_after, other = load_average(), other_work(snap_before, cpu_snapshot())

    want_d, want_i = results[base]
    problem = verify(q, g, want_d, want_i)
    if problem is None and quick and not np.array_equal(want_d, numpy_reference(q, g, K)):
        problem = "distances differ from the numpy brute force"
    print(f"  1 thread: median {statistics.median(wall[base]) * 1e3:.2f} ms, fastest {min(wall[base]) * 1e3:.2f} "
          f"ms, CPU {statistics.median(cpu[base]) * 1e3:.1f} ms; exact: "
          f"{'yes' if problem is None else f'NO ({problem})'}")
    print(f"  {'setting':<14}{f'{threads}t median ms':>16}{'fastest ms':>12}{'speed-up':>10}{'fastest':>9}"
          f"{'CPU ms':>9}{f'CPU {threads}t/1t':>12}  identical results to 1 thread")
    rows = []
    for s in settings:
        d, i = results[s.label]
        same = np.array_equal(d, want_d) and np.array_equal(i, want_i)
        row = SettingResult(s, statistics.median(wall[s.label]) * 1e3, median_ratio(wall[base], wall[s.label]),
                            min(wall[base]) / min(wall[s.label]), median_ratio(cpu[s.label], cpu[base]), same)
        rows.append(row)
        print(f"  {s.label:<14}{row.med_ms:>16.2f}{min(wall[s.label]) * 1e3:>12.2f}{row.speedup:>9.2f}x"
              f"{row.fastest_speedup:>8.2f}x{statistics.median(cpu[s.label]) * 1e3:>9.1f}{row.cpu_ratio:>12.2f}  "
              f"identical results: {'yes' if same else 'NO'}")
    run = ShapeRun(shape, kernel, statistics.median(wall[base]) * 1e3, rows, (load_before, load_after), other,
                   problem is None and all(x.identical for x in rows))
    print(f"  load average before / after (counts this benchmark's own threads): {fmt_load(load_before)} / "
          f"{fmt_load(load_after)}")
    print(f"  share of the CPUs' time during the shape: {fmt_share(other)} (other = normal-priority processes "
          f"but this one){run.flag}")
    return run


def one_thread_times(shape: Shape, runs: int, gap: float, start_at: float | None = None) -> list[float]:
    """Wall seconds of ``runs`` 1-thread searches of ``shape`` (after a warm-up), from ``start_at`` (epoch
    seconds) if given."""
    from jhash.search import native

    q, g = make_data(shape.ng, shape.bits, shape.nq)
    native.hamming_topk_numpy(q, g, K, num_threads=1)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    out = []
    for _ in range(runs):
        out.append(timed(lambda: native.hamming_topk_numpy(q, g, K, num_threads=1))[0])
        time.sleep(gap)
    return out


def independent_shape(shape: Shape, runs: int, gap: float, quick: bool) -> dict:
    """1-thread search alone, then two at once in two processes, then alone again (module docstring)."""
    alone = one_thread_times(shape, runs, gap)
    snap = cpu_snapshot(children=True)  # the two child processes are this benchmark's own work
    start_at = time.time() + 5.0  # both children load their data and warm up before it
    cmd = [sys.executable, str(Path(__file__).resolve()), "--pair-child", shape.label, "--runs", str(runs),
           "--gap", str(gap), "--start-at", repr(start_at)] + (["--quick"] if quick else [])
    children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    pair = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"--independent: a child process failed (exit {child.returncode})")
        pair.append(json.loads(out.strip().splitlines()[-1]))
    other = other_work(snap, cpu_snapshot(children=True))
    again = one_thread_times(shape, runs, gap)
    return {"alone": statistics.median(alone + again) * 1e3, "pair": [statistics.median(x) * 1e3 for x in pair],
            "other": other}


def independent(labels: list[str], by_label: dict[str, Shape], runs: int, gap: float, quick: bool) -> None:
    print("\n== are the CPUs independent? 1-thread search alone, then two at once in two processes ==")
    print("| gallery | queries | alone ms (median, before and after) | two processes at once ms | slowdown | "
          "CPU share of other work |")
    print("|---|---|---|---|---|---|")
    for label in labels:
        shape = by_label[label]
        r = independent_shape(shape, runs, gap, quick)
        slow = " / ".join(f"{x / r['alone']:.2f}×" for x in r["pair"])
        print(f"| {shape.ng:,} × {shape.bits} b | {shape.nq:,} | {r['alone']:.1f} | "
              f"{' / '.join(f'{x:.1f}' for x in r['pair'])} | {slow} | {fmt_share(r['other'])} |", flush=True)


def summary_table(runs: list[ShapeRun], threads: int) -> str:
    """Every (shape, setting) as a Markdown table."""
    t = threads
    lines = [f"| gallery | queries | kernel | setting | 1t / {t}t ms | 1→{t}t median (fastest) | CPU {t}t / 1t | "
             "load before→after; CPU share of other work |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s = run.shape
        for x in run.settings:
            lines.append(f"| {s.ng:,} × {s.bits} b | {s.nq:,} | {run.kernel} | {x.setting.label} | "
                         f"{run.one_thread_ms:.1f} / {x.med_ms:.1f} | {x.speedup:.2f}× ({x.fastest_speedup:.2f}×) | "
                         f"{x.cpu_ratio:.2f} | {fmt_load(run.load[0])}→{fmt_load(run.load[1])}; "
                         f"{fmt_share(run.other)}{run.flag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes, correctness smoke test")
    ap.add_argument("--runs", type=int, default=None, help="timed rounds per shape (default 9, quick 2)")
    ap.add_argument("--shapes", default=None, help="comma-separated shape labels (default "
                    f"{','.join(DEFAULT_SHAPES)}); any of " + ",".join(s.label for s in FULL_SHAPES))
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"split settings (default {DEFAULT_SETTINGS})")
    ap.add_argument("--threads", type=int, default=None, help="'all threads' (default: the CPUs jhash uses)")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds of sleep between timed calls (default 0.1)")
    ap.add_argument("--independent", action="store_true",
                    help="instead: two 1-thread searches at once in two processes against one alone")
    ap.add_argument("--pair-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    runs = args.runs if args.runs is not None else (2 if args.quick else 9)
    if runs < 1:
        ap.error(f"--runs: expected >= 1, got {runs}")
    if args.threads is not None and args.threads < 2:
        ap.error(f"--threads: expected >= 2 (all threads against 1), got {args.threads}")
    if args.gap < 0:
        ap.error(f"--gap: expected >= 0 seconds, got {args.gap}")
    try:
        settings = parse_settings(args.settings)
    except ValueError as exc:
        ap.error(str(exc))
    catalogue = QUICK_SHAPES if args.quick else FULL_SHAPES
    by_label = {s.label: s for s in catalogue}
    labels = ([x.strip() for x in args.shapes.split(",") if x.strip()] if args.shapes
              else [s.label for s in QUICK_SHAPES] if args.quick else DEFAULT_SHAPES)
    unknown = [x for x in labels if x not in by_label]
    if unknown or not labels:
        ap.error(f"--shapes: unknown {unknown or labels}; expected some of {list(by_label)}")

    from jhash.search import native

    if args.pair_child:
        print(json.dumps(one_thread_times(by_label[args.pair_child], runs, args.gap, args.start_at)))
        return 0
    if not native.is_available():
        print(f"jhash thread-split benchmark: skipped, the native kernel is unavailable: "
              f"{native.unavailable_reason()}")
        return 0
    threads = args.threads or max(2, all_threads())  # 2 on a 1-CPU machine: still checks every split
    inf = native.info()
    print("jhash thread-split benchmark (jhash only, no faiss)" + (" (--quick)" if args.quick else ""))
    print(f"  CPU: {cpu_model()}, {os.cpu_count()} CPUs visible; jhash native ISA {inf['isa']} "
          f"(usable: {', '.join(inf['available_isas'])}), {inf['compiler']}")
    widths = sorted({by_label[x].bits for x in labels})
    print("  kernel per width: " + ", ".join(f"{b} b: {native.kernel_for(b // 8)}" for b in widths))
    print(f"  'all threads' = {threads}; settings at {threads} threads: {', '.join(s.label for s in settings)} "
          f"(against 1 thread, one pass); {runs} interleaved rounds per shape, {args.gap:.2f} s gap between calls")
    report_idle_machine("the speed-ups will be noisy (rows measured while it runs are labelled LOADED); the "
                        "CPU-time ratios hold up better")

    if args.independent:
        independent(labels, by_label, runs, args.gap, args.quick)
        return 0
    results = [bench_shape(by_label[x], settings, threads, runs, args.gap, quick=args.quick) for x in labels]
    print("\n== summary (Markdown) ==")
    print(summary_table(results, threads))
    print(f"\nfaiss loaded in this process: {'yes' if 'faiss' in sys.modules else 'no'}")
    bad = [r.shape.label for r in results if not r.ok]
    if bad:
        print(f"NOT IDENTICAL to the exact 1-thread result: shapes {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
