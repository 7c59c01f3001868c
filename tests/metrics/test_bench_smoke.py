"""bench/metrics_stream.py --quick runs and agrees with its dense torchreid-style reference."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_metrics_stream_quick():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "metrics_stream.py"), "--quick", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "peak RSS" in out.stdout
    assert "identical numbers on the subset: True" in out.stdout, out.stdout


def _method_path(*args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "metrics_stream.py"), "--quick", *args],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "peak RSS" in out.stdout and "R1 " in out.stdout, out.stdout
    return out.stdout


def test_ctf_evaluation_path_runs_the_search_time_fit():
    out = _method_path("--search", "ctf")
    fit = [line for line in out.splitlines() if line.startswith("CtF search-time fit")]
    # codes with identity structure: the fit prunes with a shorter level instead of falling back to exhaustive
    assert fit and "'l2048'" in fit[0] and "thresholds {}" not in fit[0], out
    assert "CtF search-time fit" not in _method_path("--search", "ctf", "--fixed")


def test_afr_evaluation_path_fits_the_protocol_window():
    out = _method_path("--search", "afr")
    assert "AFR search-time window" in out and "'window': 'protocol'" in out, out
