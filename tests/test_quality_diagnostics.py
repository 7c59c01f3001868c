"""bench/quality.py's code diagnostics on codes whose statistics are known by construction."""

import importlib.util
import pathlib

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_quality", pathlib.Path(__file__).resolve().parents[1] / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_code_diagnostics_counts_constant_redundant_and_near_threshold_bits():
    n = 200
    half = np.arange(n) % 2  # p = 1/2: one full bit of entropy
    quarter = (np.arange(n) % 4 == 0).astype(int)  # p = 1/4
    codes = np.stack([half, half, quarter, np.zeros(n, int)], axis=1)  # bit 1 repeats bit 0; bit 3 is constant
    pre = np.where(codes > 0, 1.0, -1.0)
    pre[:10, 0] = 0.01  # 10 of the 800 values sit near the threshold (std of column 0 is about 1)
    d = quality.code_diagnostics(codes, pre)
    h_quarter = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert d["bit_entropy"] == pytest.approx((1 + 1 + h_quarter + 0) / 4)
    assert d["constant_bits"] == pytest.approx(0.25)
    # live bits 0, 1, 2: corr(0, 1) = 1 and corr(0, 2) = corr(1, 2) (bit 2 is on only where bits 0 and 1 are off)
    c02 = np.corrcoef(half, quarter)[0, 1]
    assert d["mean_abs_corr"] == pytest.approx((1 + 2 * abs(c02)) / 3)
    assert d["near_threshold"] == pytest.approx(10 / 800)
    # ±1 codes and {0, 1} codes give the same statistics
    assert quality.code_diagnostics(2 * codes - 1, pre) == d


def test_code_diagnostics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="code_diagnostics"):
        quality.code_diagnostics(np.zeros((4, 3)), np.zeros((4, 2)))
