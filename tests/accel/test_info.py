"""``python -m jhash.info`` reports the devices, backend choices, native kernel and versions of this machine."""

import json
import os
import pathlib
import subprocess
import sys

import jax

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _info(*args, **env):
    e = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    r = subprocess.run([sys.executable, "-m", "jhash.info", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_info_json_reports_devices_and_versions():
    r = json.loads(_info("--json", XLA_FLAGS="--xla_force_host_platform_device_count=3"))
    d = r["devices"]
    assert d["default_backend"] == "cpu" and d["device_count"] == 3 and len(d["backends"]["cpu"]) == 3
    assert r["versions"]["jax"] == jax.__version__
    from jhash.search import native

    kernel = r["native_kernel"]
    assert kernel["available"] == native.is_available()
    if native.is_available():
        assert kernel["isa"] in kernel["available_isas"]
        assert set(kernel["kernels"]) == {"64", "128", "256", "512", "1024", "2048"}
        assert r["backend_choices"]["hamming_topk / hamming_distance"].startswith("native")
    assert r["multihost_requested"] is False


def test_info_text_names_backend_kernel_and_multihost_setting():
    out = _info(JAX_COORDINATOR_ADDRESS="127.0.0.1:1", JAX_NUM_PROCESSES="1")
    assert "default backend: cpu" in out and "native kernel:" in out and "versions: python" in out
    assert "multi-process job requested: True" in out and "JAX_COORDINATOR_ADDRESS" in out
