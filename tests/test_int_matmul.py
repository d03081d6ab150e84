"""The int8 matrix product of conv and fully connected (`simulator.int_matmul`) gives TFLM's int32
accumulators exactly: extreme operands (the pair sums that saturate int16 kernels), every zero
point edge, both of its kernels (u8 x s8 and the u8 x u8 fallback for saturating CPUs), and an
accumulator that wraps int32 as TFLM's C++ does."""
from __future__ import annotations

import numpy as np
import pytest

from simulator import int_matmul
from simulator.int_matmul import IntMatmul, biased


def _expected(x, w, in_zp, w_zp):
    acc = (x.astype(np.int64) - in_zp) @ (w.astype(np.int64) - w_zp)
    return ((acc + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)     # int32 wraps


def _operands(rng, rows, k, n):
    x = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    x[0], x[-1] = -128, 127         # whole rows and columns at the extremes
    w[:, 0], w[:, -1] = -128, 127
    return x, w


@pytest.fixture(params=["u8s8", "u8u8"])
def kernel(request, monkeypatch):
    if request.param == "u8u8":
        monkeypatch.setattr(int_matmul, "_U8S8_EXACT", False)
    return request.param


@pytest.mark.parametrize("in_zp,w_zp", [(-128, 0), (0, 0), (127, 0), (-5, 3)])
def test_products_equal_int64_sums(kernel, in_zp, w_zp):
    rng = np.random.default_rng(abs(in_zp) + w_zp)
    for rows, k, n in [(300, 576, 64), (7, 16, 3), (2, 1, 2), (1025, 27, 96)]:
        x, w = _operands(rng, rows, k, n)
        got = IntMatmul(w, in_zp, w_zp)(biased(x))
        assert got.dtype == np.int32 and got.shape == (rows, n)
        assert np.array_equal(got, _expected(x, w, in_zp, w_zp)), (kernel, rows, k, n)


def test_an_accumulator_beyond_int32_wraps_as_tflm(kernel):
    k = 70_000                          # 255 * 128 * 70,000 > 2^31
    x = np.full((2, k), 127, dtype=np.int8)
    w = np.full((k, 2), -128, dtype=np.int8)
    w[:, 1] = 127
    got = IntMatmul(w, -128)(biased(x))
    want = _expected(x, w, -128, 0)
    assert abs(int(want[0, 0]) - 255 * -128 * k) >= 2 ** 32 - 2 ** 31    # the case wraps
    assert np.array_equal(got, want)


def test_biased_is_x_plus_128():
    x = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(biased(x).astype(np.int32), x.astype(np.int32) + 128)


def test_weights_must_be_a_2d_int8_matrix():
    with pytest.raises(ValueError, match="2-D int8"):
        IntMatmul(np.zeros((3, 3), dtype=np.int16), 0)
