"""bench/accelerator.py --quick runs on whatever device is present and prints every row of its table."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_accelerator_bench_quick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "accelerator.py"), "--quick", "--repeats", "1",
                          "--methods", "baseline", "dvhn", "--json", str(tmp_path / "rows.json")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    import json

    rows = {r["row"]: r for r in json.loads((tmp_path / "rows.json").read_text())}
    expected = {"search xla 256b top-100", "search xla 2048b top-100", "train baseline float32",
                "train baseline bfloat16", "encode baseline", "train dvhn float32", "train dvhn bfloat16",
                "encode dvhn", "ctf jax vs exhaustive xla (512b)"}
    assert set(rows) == expected
    assert all(r["value"] > 0 for r in rows.values())
    assert "devices: " in out.stdout and "load average" in out.stdout
