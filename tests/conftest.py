"""Test-session set-up shared by every test: a persistent XLA compilation cache.

Many tests compile the same small programs (in both xdist workers and in train.py / evaluate.py
subprocesses); the on-disk cache lets each be compiled once per run.
"""

import os
import pathlib

import jax

CACHE = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax_compilation_cache"


def pytest_configure(config):
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
