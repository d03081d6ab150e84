"""IEEE 754 binary16 arithmetic, emulated exactly, for the MVP's datapath.

Values are carried as float64 holding an exactly representable binary16 number; every
operation computes the exact result in float64 (sums and products of two binary16 numbers are
exact there) and then rounds once to binary16 with `round_f16`: round to nearest, ties to even;
magnitudes from 65520 up overflow to infinity; results below 2^-14 become subnormals with a fixed
step of 2^-24 (the vendor's host simulator, half_float 2.1.0, keeps subnormals; `flush` variants
exist to test the other hypothesis). `to_bits`/`from_bits` convert to and from the uint16
encoding for registers and tests.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.hardware import MVP

F16_MAX = MVP.fp16_max
F16_MIN_NORMAL = 2.0 ** -14
F16_SUBNORMAL_STEP = 2.0 ** -24


@njit(cache=True, inline="always")
def round_f16(x):
    """The binary16 value nearest to x (float64), ties to even, overflow to +-inf."""
    if x != x or x == 0.0:
        return x
    ax = abs(x)
    if ax == math.inf:
        return x
    if ax < 6.103515625e-05:  # 2^-14: subnormal range, fixed step 2^-24
        step = 5.9604644775390625e-08
    else:
        m, e = math.frexp(ax)  # ax = m * 2^e, 0.5 <= m < 1: 11 significant bits -> step 2^(e-11)
        step = math.ldexp(1.0, e - 11)
    r = np.rint(x / step) * step  # np.rint rounds half to even; scaling by 2^k is exact
    if abs(r) >= 65520.0:  # only reachable as 65536 after rounding: overflow
        return math.copysign(math.inf, x)
    return r


@njit(cache=True, inline="always")
def flush_subnormal(x):
    """Flush-to-zero variant applied after rounding (hypothesis only)."""
    if abs(x) < 6.103515625e-05:
        return 0.0 * x
    return x


@njit(cache=True, inline="always")
def add(a, b):
    return round_f16(a + b)


@njit(cache=True, inline="always")
def sub(a, b):
    return round_f16(a - b)


@njit(cache=True, inline="always")
def mul(a, b):
    return round_f16(a * b)


@njit(cache=True, inline="always")
def fma(a, b, c):
    """a*b + c with one rounding (a*b is exact in float64; the sum needs care only when the
    two are far apart in magnitude, where float64's 53 bits still cover binary16's range)."""
    return round_f16(a * b + c)


@njit(cache=True, inline="always")
def mul_add(a, b, c):
    """a*b rounded, then + c rounded: two roundings."""
    return round_f16(round_f16(a * b) + c)


@njit(cache=True, inline="always")
def to_int8_saturating(x):
    """Store to int8: round to nearest even, saturate to -128..127 (NaN stores 0)."""
    if x != x:
        return 0
    r = np.rint(x)
    if r > 127.0:
        return 127
    if r < -128.0:
        return -128
    return int(r)


@njit(cache=True, inline="always")
def to_int8_saturating_away(x):
    """Store variant with ties away from zero (hypothesis only)."""
    if x != x:
        return 0
    r = math.floor(abs(x) + 0.5)
    if x < 0:
        r = -r
    if r > 127.0:
        return 127
    if r < -128.0:
        return -128
    return int(r)


def from_bits(bits) -> np.ndarray:
    """uint16 encodings -> float64 values."""
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float64)


def to_bits(values) -> np.ndarray:
    """float64 values (already binary16-exact, or rounded by numpy) -> uint16 encodings."""
    return np.asarray(values, dtype=np.float64).astype(np.float16).view(np.uint16)


def round_array(x: np.ndarray) -> np.ndarray:
    """Vectorised round_f16 over an array (float64 in, float64 out)."""
    return _round_array(np.ascontiguousarray(x, dtype=np.float64).reshape(-1)).reshape(np.shape(x))


@njit(cache=True)
def _round_array(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = round_f16(x[i])
    return out
