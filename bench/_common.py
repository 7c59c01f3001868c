"""Helpers shared by the search benchmarks (files starting with '_' are not run by bench/run_all.py)."""

from __future__ import annotations


def exhaustive_topk_fn():
    """jhash's fastest exhaustive top-k available here: the native kernel, else jhash.search.hamming_topk."""
    try:
        from jhash.search import native

        if native.is_available():
            return "native", lambda q, g, k: native.hamming_topk_numpy(q, g, k)
    except ImportError:
        pass
    import jax

    from jhash import search

    return "jhash.search.hamming_topk", lambda q, g, k: jax.block_until_ready(search.hamming_topk(q, g, k))
