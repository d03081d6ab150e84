"""binary16 emulation: rounding identical to IEEE 754 (numpy's float64 -> float16 cast is the
yardstick), overflow to infinity, subnormals kept."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import fp16 as F


def _numpy_round(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


ALL_FINITE = F.from_bits(np.arange(65536, dtype=np.uint16))
ALL_FINITE = ALL_FINITE[np.isfinite(ALL_FINITE)]


def test_every_binary16_value_rounds_to_itself():
    assert np.array_equal(F.round_array(ALL_FINITE), ALL_FINITE)


def test_midpoints_round_to_even():
    v = np.sort(np.unique(ALL_FINITE))
    mid = (v[:-1] + v[1:]) / 2
    got = F.round_array(mid)
    assert np.array_equal(got, _numpy_round(mid))
    # 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even significand (1.0)
    assert F.round_f16(1.0 + 2.0 ** -11) == 1.0
    assert F.round_f16(1.0 + 3 * 2.0 ** -11) == 1.0 + 2 * 2.0 ** -10


def test_overflow_and_subnormals():
    assert F.round_f16(65504.0) == 65504.0
    assert F.round_f16(65519.99) == 65504.0
    assert F.round_f16(65520.0) == np.inf and F.round_f16(-70000.0) == -np.inf
    assert F.round_f16(2.0 ** -24) == 2.0 ** -24           # smallest subnormal
    assert F.round_f16(2.0 ** -25) == 0.0                  # tie between 0 and 2^-24: even is 0
    assert F.round_f16(1.5 * 2.0 ** -25) == 2.0 ** -24
    assert F.round_f16(3 * 2.0 ** -24 + 2.0 ** -26) == 3 * 2.0 ** -24


def test_products_and_sums_of_binary16_pairs():
    rng = np.random.default_rng(7)
    a = rng.choice(ALL_FINITE, 4000)
    b = rng.choice(ALL_FINITE, 4000)
    for exact in (a * b, a + b, a - b):
        assert np.array_equal(F.round_array(exact), _numpy_round(exact))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6))
def test_any_double_rounds_like_ieee(x):
    assert F.round_f16(x) == _numpy_round(x)


def test_int8_store_saturates_and_rounds_to_even():
    assert F.to_int8_saturating(126.5) == 126 and F.to_int8_saturating(125.5) == 126
    assert F.to_int8_saturating(300.0) == 127 and F.to_int8_saturating(-np.inf) == -128
    assert F.to_int8_saturating(-2.5) == -2
    assert F.to_int8_saturating_away(-2.5) == -3


def test_bits_round_trip():
    bits = np.arange(0, 65536, 97, dtype=np.uint16)
    vals = F.from_bits(bits)
    keep = np.isfinite(vals)
    assert np.array_equal(F.to_bits(vals[keep]), bits[keep])
