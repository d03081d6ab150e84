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
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from simulator.hardware import MVP

F16_MAX = MVP.fp16_max
F16_MIN_NORMAL = 2.0 ** -14
F16_SUBNORMAL_STEP = 2.0 ** -24
_F64_EXPONENT_MASK = (1 << 11) - 1      # float64's 11-bit biased exponent field


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE 754 encoding of a float64 as an int64 (a bit cast, no conversion)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, bits):
    """The float64 whose IEEE 754 encoding is the int64 `bits`."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(cache=True, inline="always")
def round_f16(x):
    """The binary16 value nearest to x (float64), ties to even, overflow to +-inf.

    The binary16 step at x is 2^(e-10) for x in [2^e, 2^(e+1)), e >= -14, and 2^-24 below 2^-14
    (subnormals): x is scaled by the inverse step (a power of two: exact), rounded to an
    integer with np.rint (ties to even) and scaled back. The step's exponent is read from x's
    biased float64 exponent field (1009 is 2^-14's) instead of frexp: no libm call, no branch
    but the overflow test, so the batch loops that call it stay fast. NaN, infinities and
    signed zeros pass through unchanged."""
    x = np.float64(x)
    e = (_f64_bits(x) >> 52) & _F64_EXPONENT_MASK
    if e < 1009:
        e = 1009
    r = np.rint(x * _bits_f64((2056 - e) << 52)) * _bits_f64((e - 10) << 52)
    if abs(r) > F16_MAX:  # only values from 65520 up round beyond the largest finite binary16
        r = math.copysign(math.inf, x)
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
