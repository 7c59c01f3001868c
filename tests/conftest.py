"""Test-session set-up shared by every test: a persistent XLA compilation cache.

Many tests compile the same small programs (in both xdist workers and in train.py / evaluate.py
subprocesses); the on-disk cache lets each be compiled once per run.
"""

import os
import pathlib

import jax

CACHE = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax_compilation_cache"


#: tests run tiny programs a few times each, so compiling them is most of their cost: XLA's CPU backend without
#: LLVM optimisation compiles several times faster (the programs compute the same values up to rounding)
FAST_COMPILE = "--xla_backend_optimization_level=0"


def xla_flags(*extra: str) -> str:
    """``XLA_FLAGS`` for a child process: the session's flags (the fast compile above) plus ``extra``."""
    return " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), *extra) if f)


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE}".strip()
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
