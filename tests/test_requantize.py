"""The reference kernels' requantization in float64 (`kernels_ref.Requantize`) gives TFLM's
integer result exactly, near rounding ties included, and falls back to int64 where it could not."""
from __future__ import annotations

import numpy as np

from simulator import kernels_ref as K
from simulator.quant_math import quantize_multiplier


def _tflm(acc, bias, mult, shift, zp, lo, hi):
    """MultiplyByQuantizedMultiplier (single rounding) in Python integers, per element."""
    out = np.empty(acc.shape, dtype=np.int8)
    for (i, c), a in np.ndenumerate(acc):
        x = int(a) + int(bias[c])
        t = 31 - int(shift[c])
        v = ((x * int(mult[c]) + (1 << (t - 1))) >> t) + zp
        out[i, c] = min(max(v, lo), hi)
    return out


def test_float_requantization_is_exact_next_to_every_rounding_tie():
    rng = np.random.default_rng(3)
    oc = 24
    mults, shifts = zip(*(quantize_multiplier(float(r)) for r in np.exp2(rng.uniform(-13.0, 0.0, oc))))
    mult, shift = np.array(mults), np.array(shifts)
    assert (31 - shift).max() <= 44          # the float path's condition
    bias = rng.integers(-(1 << 20), 1 << 20, oc)
    # accumulators whose exact result is k + 1/2 (a tie), or one or two steps either side of it
    t = 31 - shift
    k = rng.integers(-300, 300, (400, oc))
    target = np.round((k + 0.5) * np.exp2(t) / mult).astype(np.int64) + rng.integers(-2, 3, (400, oc))
    acc = np.clip(target - bias, -(1 << 24) + 1, (1 << 24) - 1).astype(np.float32)
    for zp, lo, hi in ((0, -128, 127), (-17, -17, 127), (5, -128, 60)):
        rq = K.Requantize(bias, mult, shift, zp, lo, hi, float(1 << 24))
        assert rq.in_float
        out = np.empty(acc.shape, dtype=np.int8)
        rq(acc, out)
        expected = _tflm(acc, bias, mult, shift, zp, lo, hi)
        assert np.array_equal(out, expected)
        assert len(np.unique(expected)) > 100      # the cases span the output range, not a clamp


def test_int64_path_where_float64_could_not_be_exact():
    mult, shift = np.array([1 << 30, 1 << 30]), np.array([-20, 0])       # t = 51: below float's reach
    rq = K.Requantize(np.zeros(2, dtype=np.int64), mult, shift, 0, -128, 127, float(1 << 24))
    assert not rq.in_float
    wraps = K.Requantize(np.array([2 ** 31 - 10, 0]), np.array([1 << 30] * 2), np.array([0, 0]), 0, -128, 127,
                         float(1 << 24))
    assert not wraps.in_float                 # acc + bias can wrap int32 as in C++
    acc = np.array([[(1 << 24) - 1, 3], [-(1 << 24) + 1, -3], [9, 200], [10, -200]], dtype=np.float64)
    out = np.empty(acc.shape, dtype=np.int8)
    wraps(acc, out)
    assert np.array_equal(out, _wrapped_expected(acc))
    assert out[0, 0] == -128 and out[2, 0] == 127    # wrapped to negative, and not wrapped


def _wrapped_expected(acc):
    """The wrapping case by hand: bias 2^31 - 10 on channel 0 wraps to negative for acc > 9."""
    out = np.empty(acc.shape, dtype=np.int8)
    bias = [2 ** 31 - 10, 0]
    for (i, c), a in np.ndenumerate(acc):
        x = (int(a) + bias[c] + 2 ** 31) % 2 ** 32 - 2 ** 31
        v = (x * (1 << 30) + (1 << 30)) >> 31
        out[i, c] = min(max(v, -128), 127)
    return out
