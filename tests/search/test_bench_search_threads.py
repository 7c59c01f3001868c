"""``bench/search_threads.py --quick`` (the thread-split benchmark) runs and every split returns the exact 1-thread
result. Correctness only: no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jhash.search import native

if not native.is_available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "search_threads.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JHASH_NUM_THREADS="2")
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=ROOT)


def test_quick_run_reports_identical_results_for_every_setting():
    proc = run_bench("--quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    shapes = out.count("== shape ")
    assert shapes == 4, out
    settings = ["auto", "queries:1", "queries:2", "gallery:2", "gallery:4"]
    for s in settings:
        assert out.count(f"  {s} ") == shapes, (s, out)  # one row per shape
    assert out.count("identical results: yes") == shapes * len(settings), out
    assert "identical results: NO" not in out and "NOT IDENTICAL" not in out, out
    assert out.count("exact: yes") == shapes, out  # the 1-thread result against the numpy brute force
    assert "faiss loaded in this process: no" in out, out
    assert "kernel per width: 128 b: " in out and f"kernel {native.kernel_for(32)};" in out, out
    assert "'all threads' = 2" in out, out
    assert out.count("load average before / after (counts this benchmark's own threads):") == shapes, out
    assert out.count("share of the CPUs' time during the shape: other ") == shapes, out
    assert out.count("| 20,000 × 256 b | 100 |") == len(settings), out  # the Markdown summary


def test_settings_and_shapes_from_the_command_line():
    proc = run_bench("--quick", "--shapes", "128", "--settings", "auto:3,gallery,queries:4", "--runs", "1",
                     "--gap", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("identical results: yes") == 3, proc.stdout


@pytest.mark.parametrize("args, message", [
    (("--settings", "rows:2"), "--settings: expected entries auto, queries or gallery"),
    (("--settings", "queries:0"), "--settings: expected entries auto, queries or gallery"),
    (("--settings", "auto,auto"), "--settings: an entry is repeated"),
    (("--shapes", "4096"), "--shapes: unknown ['4096']"),
    (("--threads", "1"), "--threads: expected >= 2"),
    (("--runs", "0"), "--runs: expected >= 1"),
])
def test_bad_arguments_exit_with_a_message(args, message):
    proc = run_bench("--quick", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_independent_cpus_check_times_two_processes_against_one_alone():
    proc = run_bench("--quick", "--independent", "--shapes", "256", "--runs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 20,000 × 256 b")]
    assert len(rows) == 1, proc.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    alone, pair, slowdown = float(cells[2]), [float(x) for x in cells[3].split(" / ")], cells[4].split(" / ")
    assert alone > 0 and len(pair) == 2 and all(x > 0 for x in pair), rows[0]
    # the slowdown is each process's median over the alone median (the printed times are rounded to 0.1 ms)
    assert all(abs(float(x.rstrip("×")) - p / alone) < 0.1 * p / alone for x, p in zip(slowdown, pair)), rows[0]
