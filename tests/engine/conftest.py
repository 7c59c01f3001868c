"""Engine tests: child processes (train.py / evaluate.py) share the session's compilation cache (tests/conftest.py)."""

import os

import pytest


@pytest.fixture
def subprocess_env():
    """Environment for child processes (train.py / evaluate.py): the same cache, CPU only."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    return env
