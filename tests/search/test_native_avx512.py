"""AVX-512 VPOPCNTQ kernels (64-256-bit codes: 8 gallery rows per step) against a numpy reference.

Runs where the CPU and the build have AVX-512 (F, BW, VL, VPOPCNTDQ); skipped elsewhere. On such a CPU the
ISA must also have passed the kernel self-test (a failure there is a bug, not a skip).
"""

from __future__ import annotations

import numpy as np
import pytest

from jhash.search import native
from tests.search.test_native_threads import ref_topk

if not native.is_available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}", allow_module_level=True)

NEEDED = ("avx512f", "avx512bw", "avx512vl", "avx512_vpopcntdq")


def cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return all(flag in flags for flag in NEEDED)


pytestmark = pytest.mark.skipif(
    not (cpu_has_avx512() and native.info().get("x86_dispatch")),
    reason="CPU or build without AVX-512 VPOPCNTDQ",
)


def test_avx512_passed_its_self_test():
    assert "avx512" in native.available_isas(), native._require().isa_error(3)
    assert native.info()["isa"] == "avx512"


@pytest.mark.parametrize("nbytes", [8, 16, 32])
def test_small_codes_use_vpopcntq(nbytes):
    assert native.kernel_for(nbytes, "avx512") == "avx512-vpopcntq-8rows"


@pytest.mark.parametrize("nbytes", [8, 16, 32, 64, 128, 256])
@pytest.mark.parametrize("nq", [1, 2, 5, 7])
@pytest.mark.parametrize("ng", [7, 8, 61, 5003])
def test_avx512_matches_reference(nbytes, nq, ng):
    """Remainder rows (ng % 8) and remainder queries (nq % G), random and tied rows."""
    rng = np.random.default_rng(nbytes * 1000 + nq * 10 + ng)
    q = rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)
    g = rng.integers(0, 256, (ng, nbytes), dtype=np.uint8)
    g[::3] = q[rng.integers(0, nq, g[::3].shape[0])]  # exact matches and ties
    g[1::5, 0] ^= 1
    for k in sorted({1, min(ng, 9), min(ng, 300)}):
        want_d, want_i = ref_topk(q, g, k)
        got_d, got_i = native.hamming_topk_numpy(q, g, k, isa="avx512")
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(got_i, want_i)
