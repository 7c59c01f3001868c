"""Run every benchmark in bench/ (each in its own subprocess).

Usage: python bench/run_all.py [--quick]
Prints a header per benchmark, passes --quick through, and exits non-zero if
any benchmark failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    unknown = [a for a in argv if a != "--quick"]
    if unknown:
        print(f"usage: run_all.py [--quick]; unknown arguments: {unknown}", file=sys.stderr)
        return 2
    extra = ["--quick"] if "--quick" in argv else []
    benches = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    failed = []
    for path in benches:
        print(f"\n{'=' * 78}\n== bench/{path.name} {' '.join(extra)}\n{'=' * 78}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(path), *extra], cwd=HERE.parent)
        print(f"-- bench/{path.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        if rc != 0:
            failed.append(path.name)
    print(f"\n{len(benches) - len(failed)}/{len(benches)} benchmarks ok"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
