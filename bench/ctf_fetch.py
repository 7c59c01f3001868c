"""Random candidate fetches of CtF's later stages: 4 KiB pages against huge pages.

CtF stages 1..N-1 fetch the codes of a query's candidates at random (rows in increasing order, as a stage's
candidate list). This times the native gather kernel (``jhash.search.coarse_to_fine.fetch_cost``: one thread,
new random rows every call, the fastest of ``--repeats`` calls) over ``--candidates`` random rows per query of a
gallery of ``--gallery`` random codes, for each code length, with the gallery in ordinary numpy memory and in the
huge-page copy that ``jhash.search.CoarseToFineIndex`` makes (``jhash.search.coarse_to_fine.huge_page_copy``),
and prints ns per candidate.

    .venv/bin/python bench/ctf_fetch.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gallery", type=int, default=500_000)
    p.add_argument("--bits", default="128,512,2048", help="code lengths (comma-separated)")
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--candidates", type=int, default=4096, help="random rows per query")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke run: 20k gallery, 2 repeats")
    a = p.parse_args(argv)
    from jhash.search import native
    from jhash.search.coarse_to_fine import fetch_cost, huge_page_copy

    if not native.is_available():
        print(json.dumps({"bench": "ctf_fetch", "skipped": native.unavailable_reason()}))
        return 0
    n = 20_000 if a.quick else a.gallery
    repeats = 2 if a.quick else a.repeats
    rng = np.random.default_rng(0)
    print(json.dumps({"bench": "ctf_fetch", "gallery": n, "queries": a.queries, "candidates": a.candidates,
                      "load_average": os.getloadavg()}), flush=True)
    for bits in (int(b) for b in a.bits.split(",")):
        g = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
        q = rng.integers(0, 256, (a.queries, bits // 8), dtype=np.uint8)
        huge = huge_page_copy(g)
        plain, paged = (fetch_cost(q, x, num_candidates=a.candidates, repeats=repeats) for x in (g, huge))
        print(json.dumps({"bits": bits, "level_MiB": round(g.nbytes / 2**20, 1),
                          "ns_per_fetch_4k_pages": round(plain, 1), "ns_per_fetch_huge_pages": round(paged, 1)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
