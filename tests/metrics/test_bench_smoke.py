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
