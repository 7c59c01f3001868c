"""Engine tests: share a persistent XLA compilation cache (the same small programs compile many times)."""

import os
import pathlib

import jax
import pytest

CACHE = pathlib.Path(__file__).resolve().parents[2] / ".pytest_cache" / "jax_compilation_cache"


def pytest_configure(config):
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@pytest.fixture
def subprocess_env():
    """Environment for child processes (train.py / evaluate.py): the same cache, CPU only."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    return env
