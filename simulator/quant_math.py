"""Fixed-point arithmetic of TFLite Micro's integer kernels, as the vendor builds them.

The vendor compiles TFLM with TFLITE_SINGLE_ROUNDING (one rounding step when requantizing) and
TF_LITE_USE_GLOBAL_ROUND (C `round`: halves away from zero). Two layers live here:

- Prepare-time helpers in plain Python (run once per layer): multiplier quantization from a
  double, activation ranges, softmax/logistic parameter preparation.
- gemmlowp-style Q-format primitives as numba functions (`@njit`), called from the kernels in
  `kernels_ref.py`. Values are carried in int64 and wrapped to int32 exactly where C++ wraps.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# ----------------------------------------------------------------------------- prepare time

def c_round(x: float) -> float:
    """C's round(): ties away from zero (Python's round() ties to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """A double multiplier as (Q31 significand, power-of-two shift), single-rounding rules:
    shifts below -31 flush to zero, shifts above 30 saturate."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(c_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, shift


def f32(x) -> float:
    """Rounds to binary32: C++ does these computations in float."""
    return float(np.float32(x))


def quantize_float_value(value: float, scale: float, zero_point: int) -> int:
    """TFLM's activation-range Quantize(): round(f / scale) in float, plus the zero point."""
    return int(zero_point) + int(c_round(f32(np.float32(value) / np.float32(scale))))


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for a fused activation on an int8 output."""
    if activation == "relu":
        return max(qmin, quantize_float_value(0.0, scale, zero_point)), qmax
    if activation == "relu6":
        return (max(qmin, quantize_float_value(0.0, scale, zero_point)),
                min(qmax, quantize_float_value(6.0, scale, zero_point)))
    if activation == "relu_n1_to_1":
        return (max(qmin, quantize_float_value(-1.0, scale, zero_point)),
                min(qmax, quantize_float_value(1.0, scale, zero_point)))
    return qmin, qmax


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) of the int8 softmax, scaled-diff Q5.26."""
    scaled_diff_integer_bits = 5
    max_real_multiplier = (1 << 30) - 1.0  # single-rounding cap
    real = min(beta * input_scale * (1 << (31 - scaled_diff_integer_bits)), max_real_multiplier)
    multiplier, left_shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(scaled_diff_integer_bits, left_shift)
    return multiplier, left_shift, diff_min


def log_softmax_params(input_scale: float) -> tuple[int, int, int, int, int]:
    """(input_multiplier, input_left_shift, reverse_scaling_divisor, its shift (<= 0), diff_min) of
    the int8 LOG_SOFTMAX (PreprocessLogSoftmaxScalingExp, beta 1, scaled diff Q5.26): softmax's
    input scaling, and the inverse of that scaling as a multiplier below one."""
    multiplier, left_shift, diff_min = softmax_params(1.0, input_scale)
    reverse = (1 << (31 - left_shift)) / float(multiplier)
    if not 0.0 < reverse < 1.0:
        raise ValueError(f"input scale {input_scale}: the reverse scaling {reverse} is not below 1")
    divisor, divisor_shift = quantize_multiplier(reverse)
    return multiplier, left_shift, divisor, divisor_shift, diff_min


def sigmoid_tanh_params(input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, input_range_radius) of the int8 logistic and tanh:
    the input is rescaled to Q4.27 with a frexp-derived multiplier (no 2^31 correction)."""
    input_integer_bits = 4
    real = float(input_scale) * float(1 << (31 - input_integer_bits))
    q, left_shift = math.frexp(real)
    multiplier = int(c_round(q * (1 << 31)))
    radius = calculate_input_radius(input_integer_bits, left_shift, 31)
    return multiplier, left_shift, radius


def hard_swish_params(input_scale: float, output_scale: float) -> tuple[int, int, int, int]:
    """(reluish multiplier int16, its exponent, output multiplier int16, its exponent) of the int8
    HARD_SWISH: float scales (hires input = input / 128, reluish = 3 / 32768), QuantizeMultiplier,
    then DownScaleInt32ToInt16Multiplier (round the Q31 significand to Q15, saturating)."""
    f = np.float32
    hires = f(f(1.0 / 128.0) * f(input_scale))
    out_m, out_e = quantize_multiplier(float(f(hires / f(output_scale))))
    relu_m, relu_e = quantize_multiplier(float(f(hires / f(3.0 / 32768.0))))

    def to16(m: int) -> int:
        return 32767 if m >= (1 << 31) - 1 - (1 << 15) else (m + (1 << 15)) >> 16
    return to16(relu_m), relu_e, to16(out_m), out_e


# ----------------------------------------------------------------------------- JIT primitives

@njit(cache=True, inline="always")
def wrap32(x):
    """int64 -> the int32 that C++ two's-complement arithmetic would leave."""
    return ((x + 2147483648) & 0xFFFFFFFF) - 2147483648


@njit(cache=True, inline="always")
def mul_by_quantized_multiplier(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier, single rounding: (x*m + 2^(30-shift)) >> (31-shift)."""
    total_shift = 31 - shift
    rounding = np.int64(1) << (total_shift - 1)
    return (np.int64(x) * np.int64(multiplier) + rounding) >> total_shift


@njit(cache=True, inline="always")
def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on int32 values."""
    if a == b and a == -2147483648:
        return np.int64(2147483647)
    ab = np.int64(a) * np.int64(b)
    nudge = np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30))
    s = ab + nudge
    # C++ integer division truncates toward zero
    if s >= 0:
        return s // 2147483648
    return -((-s) // 2147483648)


@njit(cache=True, inline="always")
def srdhm16(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16 values."""
    if a == b and a == -32768:
        return np.int64(32767)
    ab = np.int64(a) * np.int64(b)
    s = ab + (np.int64(1 << 14) if ab >= 0 else np.int64(1 - (1 << 14)))
    q = s // 32768 if s >= 0 else -((-s) // 32768)   # C division truncates toward zero
    return ((q + 32768) & 0xFFFF) - 32768                # static_cast<int16_t>


@njit(cache=True, inline="always")
def sdhm16(a, b):
    """TFLite's SaturatingDoublingHighMul on int16 values (truncating, no rounding nudge)."""
    if a == b and a == -32768:
        return np.int64(32767)
    ab = np.int64(a) * np.int64(b)
    q = ab // 32768 if ab >= 0 else -((-ab) // 32768)
    return ((q + 32768) & 0xFFFF) - 32768


@njit(cache=True, inline="always")
def saturating_left_shift16(x, amount):
    return min(max(np.int64(x) * (np.int64(1) << amount), -32768), 32767)


@njit(cache=True, inline="always")
def rounding_divide_by_pot(x, exponent):
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@njit(cache=True, inline="always")
def saturating_mul_by_pot(x, exponent):
    """SaturatingRoundingMultiplyByPOT: saturating left shift, or rounding right shift."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (np.int64(1) << (31 - exponent)) - 1
    if x > threshold:
        return np.int64(2147483647)
    if x < -threshold:
        return np.int64(-2147483648)
    return x << exponent


@njit(cache=True, inline="always")
def rounding_half_sum(a, b):
    s = np.int64(a) + np.int64(b)
    sign = 1 if s >= 0 else -1
    t = s + sign
    return t // 2 if t >= 0 else -((-t) // 2)


@njit(cache=True)
def exp_on_interval_neg_quarter_to_0(a):
    """exp(x) for x in [-1/4, 0), Q0.31 in and out (Taylor expansion around -1/8)."""
    constant_term = np.int64(1895147668)
    constant_1_over_3 = np.int64(715827883)
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    t = wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2)
    poly = rounding_divide_by_pot(t, 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


@njit(cache=True)
def exp_on_negative_values(a, integer_bits):
    """exp(a) for a <= 0 given in Q(integer_bits); result in Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = np.int64(1) << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = wrap32((a & mask) - one_quarter)
    result = exp_on_interval_neg_quarter_to_0(
        saturating_mul_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for i in range(7):
        exponent = _EXP_BARREL[i][0]
        if integer_bits > exponent:
            shift_amount = fractional_bits + exponent
            if remainder & (np.int64(1) << shift_amount):
                result = srdhm(result, np.int64(_EXP_BARREL[i][1]))
    if integer_bits > 5:
        clamp = -(np.int64(1) << (36 - integer_bits))
        if a < clamp:
            result = np.int64(0)
    if a == 0:
        result = np.int64(2147483647)
    return result


@njit(cache=True)
def _newton_reciprocal_f2(a):
    """Shared Newton-Raphson core: returns x ~ 1/((1+a)/2) in Q2.29 for a in (0,1) Q0.31."""
    half_denominator = rounding_half_sum(a, 2147483647)
    x = wrap32(np.int64(1515870810) + srdhm(half_denominator, np.int64(-1010580540)))
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = wrap32((np.int64(1) << 29) - half_denominator_times_x)
        x = wrap32(x + saturating_mul_by_pot(srdhm(x, one_minus), 2))
    return x


@njit(cache=True)
def one_over_one_plus_x_for_x_in_0_1(a):
    return saturating_mul_by_pot(_newton_reciprocal_f2(a), 1)


@njit(cache=True)
def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    x = _newton_reciprocal_f2(a)
    return saturating_mul_by_pot(wrap32(x - (np.int64(1) << 29)), 2)


@njit(cache=True)
def fixed_logistic(a, integer_bits):
    """gemmlowp logistic: Q(integer_bits) in, Q0.31 out."""
    if a == 0:
        return np.int64(1 << 30)
    abs_input = a if a > 0 else wrap32(-a)
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap32(-abs_input), integer_bits))
    if a > 0:
        return pos
    return wrap32(np.int64(2147483647) - pos)


@njit(cache=True)
def fixed_tanh(a, integer_bits):
    """gemmlowp tanh: Q(integer_bits) in, Q0.31 out."""
    if a == 0:
        return np.int64(0)
    n = a if a < 0 else wrap32(-a)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return wrap32(-t) if a < 0 else t


@njit(cache=True, inline="always")
def saturating_add32(a, b):
    return min(max(np.int64(a) + np.int64(b), -2147483648), 2147483647)


@njit(cache=True)
def log_x_for_x_ge_1(a, input_integer_bits, output_integer_bits):
    """TFLite's log_x_for_x_greater_than_or_equal_to_1: ln of a Q(input_integer_bits) value
    >= 1 into Q(output_integer_bits). The input's power of two from its leading zeros (taken
    both as is and premultiplied by sqrt(1/2), the better of the two kept), the remaining
    mantissa's log by a rational approximation in Q0.31 around 2^(-1/4)."""
    accum_bits = output_integer_bits + 1
    log_2, sqrt_sqrt_half, sqrt_half = np.int64(1488522236), np.int64(1805811301), np.int64(1518500250)
    alpha_n, alpha_d = np.int64(117049297), np.int64(127690142)
    alpha_i, alpha_f = np.int64(1057819769), np.int64(638450708)
    shifted_quarter = rounding_divide_by_pot(np.int64(536870912), accum_bits)
    z_a = np.int64(a)
    za_headroom_plus_1 = count_leading_zeros32(z_a)
    r_a_tmp = saturating_mul_by_pot(z_a, za_headroom_plus_1 - 1)
    r_a = saturating_mul_by_pot(srdhm(r_a_tmp, sqrt_half), 1)
    za_pow2_adj = saturating_add32(saturating_mul_by_pot(np.int64(input_integer_bits - za_headroom_plus_1),
                                                         31 - accum_bits), shifted_quarter)
    z_b = srdhm(z_a, sqrt_half)
    zb_headroom = count_leading_zeros32(z_b) - 1
    r_b = saturating_mul_by_pot(z_a, zb_headroom)
    zb_pow2_adj = saturating_add32(saturating_mul_by_pot(np.int64(input_integer_bits - zb_headroom),
                                                         31 - accum_bits), -shifted_quarter)
    r = min(r_a, r_b)
    z_pow2_adj = max(za_pow2_adj, zb_pow2_adj)
    p = rounding_half_sum(r, sqrt_sqrt_half)
    q = wrap32(r - sqrt_sqrt_half)
    q = wrap32(q + q)
    common_sq = srdhm(q, q)
    num = wrap32(srdhm(q, r) + srdhm(srdhm(q, common_sq), alpha_n))
    inner = wrap32(wrap32(alpha_i + q) + srdhm(alpha_d, common_sq))
    denom_minus_one = wrap32(srdhm(p, inner) + srdhm(alpha_f, q))
    recip_denom = one_over_one_plus_x_for_x_in_0_1(denom_minus_one)
    num_scaled = rounding_divide_by_pot(num, accum_bits)
    total = wrap32(srdhm(z_pow2_adj, log_2) + srdhm(num_scaled, recip_denom))
    return saturating_mul_by_pot(total, accum_bits - output_integer_bits)


@njit(cache=True, inline="always")
def count_leading_zeros32(x):
    u = x & 0xFFFFFFFF
    if u == 0:
        return 32
    n = 0
    while u < 0x80000000:
        u <<= 1
        n += 1
    return n


@njit(cache=True)
def get_reciprocal(x, x_integer_digits):
    """(1/x in Q0.31, num_bits_over_unit) as TFLM's softmax uses it."""
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap32(shifted - 2147483648)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
