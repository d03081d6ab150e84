"""int8 kernels bit-exact with TFLite Micro's reference kernels (single rounding, C round).

Every kernel is a numba function over plain arrays; the per-layer constants (multipliers,
offsets, padding) are prepared once by `emulator.py`. The arithmetic follows TFLM's reference
kernels; the loop order is free wherever integer addition makes it irrelevant, and is chosen so
that the innermost loop runs over contiguous channels (which LLVM vectorizes).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from simulator.quant_math import (
    count_leading_zeros32, exp_on_negative_values, fixed_logistic, fixed_tanh, get_reciprocal, log_x_for_x_ge_1,
    mul_by_quantized_multiplier, rounding_divide_by_pot, saturating_left_shift16, saturating_mul_by_pot,
    sdhm16, srdhm, srdhm16, wrap32,
)


@njit(cache=True)
def _requantize_store(acc, multiplier, shift, out_offset, act_min, act_max, out, base):
    for c in range(acc.shape[0]):
        v = mul_by_quantized_multiplier(acc[c], multiplier[c], shift[c]) + out_offset
        if v < act_min:
            v = act_min
        elif v > act_max:
            v = act_max
        out[base + c] = v


BYTE_VALUES = np.arange(256, dtype=np.uint8).view(np.int8)   # every int8, in the order of its byte


@njit(cache=True)
def lookup(x, table):
    """table[byte of x] for every element of the int8 array x: a layer whose output depends on
    one int8 input only, tabulated over `BYTE_VALUES` (256 entries stay in L1)."""
    out = np.empty(x.shape[0], dtype=table.dtype)
    for i in range(x.shape[0]):
        out[i] = table[np.uint8(x[i])]
    return out


@njit(cache=True)
def pad_offset_input(x, in_offset, pad_top, pad_left, padded_h, padded_w):
    """(x + in_offset) as int32 inside a zero border: padded taps then add nothing, exactly as
    the reference kernel skips them."""
    n, h, w, c = x.shape
    out = np.zeros((n, padded_h, padded_w, c), dtype=np.int32)
    for b in range(n):
        for y in range(h):
            for xx in range(w):
                for ch in range(c):
                    out[b, y + pad_top, xx + pad_left, ch] = np.int32(x[b, y, xx, ch]) + in_offset
    return out


@njit(cache=True)
def conv2d(xp, weights, bias, multiplier, shift, out_offset, act_min, act_max,
           stride_h, stride_w, dil_h, dil_w, out_h, out_w, groups):
    """xp: padded, offset input [N, Hp, Wp, IC] int32; weights [KH, KW, ICg, OC] int32."""
    n = xp.shape[0]
    kh, kw, icg, oc = weights.shape
    oc_per_group = oc // groups
    out = np.empty(n * out_h * out_w * oc, dtype=np.int8)
    acc = np.empty(oc, dtype=np.int32)
    for b in range(n):
        for oy in range(out_h):
            for ox in range(out_w):
                for c in range(oc):
                    acc[c] = bias[c]
                for ky in range(kh):
                    iy = oy * stride_h + ky * dil_h
                    for kx in range(kw):
                        ix = ox * stride_w + kx * dil_w
                        for g in range(groups):
                            c0 = g * oc_per_group
                            for ic in range(icg):
                                v = xp[b, iy, ix, g * icg + ic]
                                if v != 0:
                                    for c in range(c0, c0 + oc_per_group):
                                        acc[c] += v * weights[ky, kx, ic, c]
                base = ((b * out_h + oy) * out_w + ox) * oc
                _requantize_store(acc, multiplier, shift, out_offset, act_min, act_max, out, base)
    return out


@njit(cache=True)
def transpose_conv(x, in_offset, weights, bias, multiplier, shift, out_offset, act_min, act_max,
                   stride_h, stride_w, pad_h, pad_w, out_h, out_w):
    """x [N, H, W, IC] int8; weights [OC, KH, KW, IC] int8 (TFLM's scatter formulation)."""
    n, h, w, ic_count = x.shape
    oc, kh, kw, _ = weights.shape
    scratch = np.zeros((n, out_h, out_w, oc), dtype=np.int32)
    for b in range(n):
        for iy in range(h):
            for ix in range(w):
                for ic in range(ic_count):
                    v = np.int32(x[b, iy, ix, ic]) + in_offset
                    for ky in range(kh):
                        oy = iy * stride_h - pad_h + ky
                        if oy < 0 or oy >= out_h:
                            continue
                        for kx in range(kw):
                            ox = ix * stride_w - pad_w + kx
                            if ox < 0 or ox >= out_w:
                                continue
                            for c in range(oc):
                                scratch[b, oy, ox, c] += v * np.int32(weights[c, ky, kx, ic])
    out = np.empty(n * out_h * out_w * oc, dtype=np.int8)
    acc = np.empty(oc, dtype=np.int32)
    for b in range(n):
        for oy in range(out_h):
            for ox in range(out_w):
                for c in range(oc):
                    acc[c] = scratch[b, oy, ox, c] + bias[c]
                base = ((b * out_h + oy) * out_w + ox) * oc
                _requantize_store(acc, multiplier, shift, out_offset, act_min, act_max, out, base)
    return out


@njit(cache=True)
def _pool(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, act_min, act_max,
          take_max):
    """TFLM's int8 pooling: the window clipped to the input (padding never counts), then either
    its maximum or its mean with rounding division (C division truncates toward zero)."""
    n, h, w, ch = x.shape
    out = np.empty((n, out_h, out_w, ch), dtype=np.int8)
    acc = np.empty(ch, dtype=np.int32)
    for b in range(n):
        for oy in range(out_h):
            y0 = oy * stride_h - pad_h
            fy0 = max(0, -y0)
            fy1 = min(filter_h, h - y0)
            for ox in range(out_w):
                x0 = ox * stride_w - pad_w
                fx0 = max(0, -x0)
                fx1 = min(filter_w, w - x0)
                acc[:] = -128 if take_max else 0
                for fy in range(fy0, fy1):
                    for fx in range(fx0, fx1):
                        for c in range(ch):
                            v = x[b, y0 + fy, x0 + fx, c]
                            if take_max:
                                if v > acc[c]:
                                    acc[c] = v
                            else:
                                acc[c] += v
                count = (fy1 - fy0) * (fx1 - fx0)
                half = count // 2
                for c in range(ch):
                    a = acc[c]
                    if not take_max:
                        a = (a + half) // count if a > 0 else -((-(a - half)) // count)
                    out[b, oy, ox, c] = min(max(a, act_min), act_max)
    return out


@njit(cache=True)
def average_pool(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w,
                 act_min, act_max):
    return _pool(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w,
                 act_min, act_max, False)


@njit(cache=True)
def max_pool(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w,
             act_min, act_max):
    return _pool(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w,
                 act_min, act_max, True)


@njit(cache=True)
def add(x1, x2, in1_offset, in2_offset, left_shift, m1, s1, m2, s2, mo, so, out_offset,
        act_min, act_max, subtract=False):
    """Flat, already broadcast operands; `subtract`: TFLM's SUB (the same arithmetic with the
    second scaled input subtracted)."""
    n = x1.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        a = (np.int64(x1[i]) + in1_offset) << left_shift
        b = (np.int64(x2[i]) + in2_offset) << left_shift
        sa = mul_by_quantized_multiplier(a, m1, s1)
        sb = mul_by_quantized_multiplier(b, m2, s2)
        v = mul_by_quantized_multiplier(wrap32(sa - sb if subtract else sa + sb), mo, so) + out_offset
        out[i] = min(max(v, act_min), act_max)
    return out


@njit(cache=True)
def mul(x1, x2, in1_offset, in2_offset, multiplier, shift, out_offset, act_min, act_max):
    n = x1.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        p = wrap32((np.int64(x1[i]) + in1_offset) * (np.int64(x2[i]) + in2_offset))
        v = mul_by_quantized_multiplier(p, multiplier, shift) + out_offset
        out[i] = min(max(v, act_min), act_max)
    return out


@njit(cache=True, inline="always")
def _row_max_and_exp_sum(x, r, input_multiplier, input_left_shift, diff_min):
    """SOFTMAX's and LOG_SOFTMAX's first passes over row r: its maximum, and the sum in Q12.19
    of exp(diff) over the diffs from it within diff_min (each diff scaled to Q5.26)."""
    depth = x.shape[1]
    max_in_row = np.int64(-128)
    for c in range(depth):
        if x[r, c] > max_in_row:
            max_in_row = np.int64(x[r, c])
    sum_of_exps = np.int64(0)
    for c in range(depth):
        diff = np.int64(x[r, c]) - max_in_row
        if diff >= diff_min:
            scaled = mul_by_quantized_multiplier(diff, input_multiplier, input_left_shift)
            sum_of_exps = wrap32(sum_of_exps + rounding_divide_by_pot(exp_on_negative_values(scaled, 5), 12))
    return max_in_row, sum_of_exps


@njit(cache=True)
def softmax(x, input_multiplier, input_left_shift, diff_min):
    """x [rows, depth] int8 -> int8 with zero point -128 and scale 1/256 (gemmlowp exp path)."""
    rows, depth = x.shape
    out = np.empty((rows, depth), dtype=np.int8)
    for r in range(rows):
        max_in_row, sum_of_exps = _row_max_and_exp_sum(x, r, input_multiplier, input_left_shift, diff_min)
        shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, 12)
        exponent = num_bits_over_unit + 31 - 8
        for c in range(depth):
            diff = np.int64(x[r, c]) - max_in_row
            if diff >= diff_min:
                scaled = mul_by_quantized_multiplier(diff, input_multiplier, input_left_shift)
                e = exp_on_negative_values(scaled, 5)
                v = rounding_divide_by_pot(srdhm(shifted_scale, e), exponent) - 128
                out[r, c] = min(max(v, -128), 127)
            else:
                out[r, c] = -128
    return out


@njit(cache=True)
def log_softmax(x, input_multiplier, input_left_shift, reverse_divisor, reverse_shift, diff_min):
    """x [rows, depth] int8 -> int8 with zero point 127 and scale 16/256 (TFLM's
    LogSoftmaxQuantized): diffs from the row's maximum in Q5.26, the sum of their exps in Q12.19,
    its log in Q5.26 (`log_x_for_x_ge_1`), each diff minus that log rescaled to the output; diffs
    at or below the log's reach (mapped back to input steps) give -128."""
    rows, depth = x.shape
    out = np.empty((rows, depth), dtype=np.int8)
    for r in range(rows):
        max_in_row, sum_of_exps = _row_max_and_exp_sum(x, r, input_multiplier, input_left_shift, diff_min)
        log_sum = log_x_for_x_ge_1(sum_of_exps, 12, 5)
        shifted_log_sum = wrap32(log_sum - 2147483648)
        adjusted_diff_min = max(diff_min - 1, mul_by_quantized_multiplier(shifted_log_sum, reverse_divisor,
                                                                          reverse_shift))
        for c in range(depth):
            diff = np.int64(x[r, c]) - max_in_row
            if diff > adjusted_diff_min:
                scaled = mul_by_quantized_multiplier(diff, input_multiplier, input_left_shift)
                v = rounding_divide_by_pot(wrap32(scaled - log_sum), 31 - 5 - 4) + 127
                out[r, c] = min(max(v, -128), 127)
            else:
                out[r, c] = -128
    return out


@njit(cache=True)
def _sigmoid_or_tanh(x, input_zero_point, input_multiplier, input_left_shift, radius, is_tanh):
    # TFLM's int8 LOGISTIC and TANH share their saturation and input rescale; they differ only in
    # the fixed-point function and the output's scale (1/256 with zero point -128, against 1/128)
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = np.int64(x[i]) - input_zero_point
        if v <= -radius:
            out[i] = -128
        elif v >= radius:
            out[i] = 127
        else:
            q4 = mul_by_quantized_multiplier(v, input_multiplier, input_left_shift)
            if is_tanh:
                r = rounding_divide_by_pot(fixed_tanh(q4, 4), 24)
            else:
                r = rounding_divide_by_pot(fixed_logistic(q4, 4), 23) - 128
            out[i] = min(max(r, -128), 127)
    return out


@njit(cache=True)
def logistic(x, input_zero_point, input_multiplier, input_left_shift, radius):
    return _sigmoid_or_tanh(x, input_zero_point, input_multiplier, input_left_shift, radius, False)


@njit(cache=True)
def tanh(x, input_zero_point, input_multiplier, input_left_shift, radius):
    return _sigmoid_or_tanh(x, input_zero_point, input_multiplier, input_left_shift, radius, True)


@njit(cache=True)
def quantize_f32(x, scale, zero_point):
    """float32 -> int8: round(x / scale) in float, ties away from zero."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    s = np.float32(scale)
    for i in range(n):
        q = np.float32(x[i] / s)
        r = np.floor(np.abs(q) + np.float32(0.5))
        if q < 0:
            r = -r
        v = np.int64(r) + zero_point
        out[i] = min(max(v, -128), 127)
    return out


@njit(cache=True)
def requantize_i8(x, in_zero_point, multiplier, shift, out_zero_point):
    """int8 -> int8 QUANTIZE (TFLM's Requantize)."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = mul_by_quantized_multiplier(np.int64(x[i]) - in_zero_point, multiplier, shift) \
            + out_zero_point
        out[i] = min(max(v, -128), 127)
    return out


@njit(cache=True)
def dequantize_i8(x, scale, zero_point):
    n = x.shape[0]
    out = np.empty(n, dtype=np.float32)
    s = np.float32(scale)
    for i in range(n):
        out[i] = s * np.float32(np.int32(x[i]) - zero_point)
    return out


@njit(cache=True)
def quantized_mean(sums, count, input_zero_point, multiplier, shift, output_zero_point):
    """reference_ops::QuantizedMeanOrSum (the mean) of TFLM at the vendor's pin: the int32 sums of the
    raw values, the input/output multiplier re-adapted to fold in 1/count in integers (the count's
    power of two moves into the shift, at most 32 and never below the -31 the multiplier allows),
    one MultiplyByQuantizedMultiplier, the output zero point, saturation."""
    n = sums.shape[0]
    out = np.empty(n, dtype=np.int8)
    pot = 0
    while (np.int64(2) << pot) <= count:
        pot += 1
    pot = min(pot, 32, 31 + shift)
    m = (np.int64(multiplier) << pot) // count
    sh = shift - pot
    for i in range(n):
        v = mul_by_quantized_multiplier(wrap32(np.int64(sums[i]) - np.int64(input_zero_point) * count), m, sh)
        out[i] = min(max(v + output_zero_point, -128), 127)
    return out


@njit(cache=True)
def mean_float_rescale(sums, count, input_zero_point, scale, output_zero_point, compute_sum=False):
    """reference_ops::QuantizedMeanOrSum: float mean (or, `compute_sum`, the raw sum), float
    rescale, C round, saturated (the sum too: the oracle saturates a SUM beyond the output's
    range, tests/data/ops/sum_rescaled.tflite)."""
    n = sums.shape[0]
    out = np.empty(n, dtype=np.int8)
    s = np.float32(scale)
    bias = np.float32(-input_zero_point) * s
    if compute_sum:
        bias = np.float32(bias * np.float32(count))
    for i in range(n):
        if compute_sum:
            t = np.float32(np.float32(sums[i]) * s + bias)
        else:
            t = np.float32(np.float32(np.float32(sums[i]) / np.float32(count)) * s + bias)
        r = np.floor(np.abs(t) + np.float32(0.5))
        if t < 0:
            r = -r
        r = min(max(r + np.float32(output_zero_point), np.float32(-128.0)), np.float32(127.0))
        out[i] = np.int8(r)
    return out


@njit(cache=True)
def relu_requant(x, input_offset, multiplier, shift, output_offset, act_min, act_max):
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = output_offset + mul_by_quantized_multiplier(np.int64(x[i]) - input_offset,
                                                        multiplier, shift)
        out[i] = min(max(v, act_min), act_max)
    return out


@njit(cache=True)
def leaky_relu(x, input_offset, m_identity, s_identity, m_alpha, s_alpha, output_offset):
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = np.int64(x[i]) - input_offset
        if v >= 0:
            r = output_offset + mul_by_quantized_multiplier(v, m_identity, s_identity)
        else:
            r = output_offset + mul_by_quantized_multiplier(v, m_alpha, s_alpha)
        out[i] = min(max(r, -128), 127)
    return out


# ----------------------------------------------------------------------------- accumulate, then requantize
# Convolution and fully connected as one matrix product (im2col) of the int8 values, in int32
# (`int_matmul`: the reference kernel's accumulator exactly). Depthwise accumulates in its own
# loop in floating point: every input and weight is a small integer, so when the sum of
# |products| stays below the float type's exact-integer limit (2^24 for float32, 2^53 for
# float64) every partial sum is exact. The requantization afterwards is TFLM's (`Requantize`). A
# layer runs chunk by chunk of output rows (`CHUNK_BYTES`), so that the patches and accumulators
# of a chunk stay in the core's cache between the three passes; depthwise, when its requantization
# is the float64 one, requantizes each output row in the accumulating loop (`depthwise_requant`).

CHUNK_BYTES = 1 << 19   # patches + accumulators of one chunk (measured: 256 KB..1 MB are best)


def exact_float_type(weights_abs_sum_max: float, input_abs_max: float):
    """float32 when every dot product's partial sums stay exact in it, else float64."""
    return np.float32 if weights_abs_sum_max * input_abs_max < 2.0 ** 24 else np.float64


def chunk_rows(row_bytes: int) -> int:
    """Output rows per chunk for rows of `row_bytes` bytes (patch + accumulator)."""
    return max(1, CHUNK_BYTES // max(row_bytes, 1))


@njit(cache=True, inline="always")
def _output_position(q, out_h, out_w):
    """(sample, oy, ox) of output row q."""
    b = q // (out_h * out_w)
    rest = q - b * out_h * out_w
    oy = rest // out_w
    return b, oy, rest - oy * out_w


@njit(cache=True)
def pad_biased(x, pad_value, pad_top, pad_left, padded_h, padded_w):
    """x [N, H, W, C] int8 as uint8 x + 128 (`int_matmul`'s activation operand) inside a border of
    pad_value, the zero point's value: a padded tap then adds nothing, as the reference kernel
    skips it."""
    n, h, w, c = x.shape
    out = np.full((n, padded_h, padded_w, c), pad_value, dtype=np.uint8)
    for b in range(n):
        for y in range(h):
            for xx in range(w):
                dst = out[b, y + pad_top, xx + pad_left]
                src = x[b, y, xx]
                for ch in range(c):
                    dst[ch] = np.uint8(np.int32(src[ch]) + 128)
    return out


@njit(cache=True)
def im2col(xp, kh, kw, stride_h, stride_w, dil_h, dil_w, out_h, out_w, r0, cols):
    """The patches of output rows r0.. (a row: one (sample, oy, ox)) of the padded input xp
    [N, HP, WP, C] (`pad_biased`) into cols [rows, KH*KW*C]. The border makes every tap a plain
    copy: no bounds checks, and with dil_w == 1 a row of taps is one run of kw * c values
    (2-6x faster than checking each tap)."""
    n, hp, wp, c = xp.shape
    flat = xp.reshape(-1)
    span = kw * c
    b, oy, ox = _output_position(r0, out_h, out_w)
    for r in range(cols.shape[0]):
        base = (b * hp + oy * stride_h) * wp + ox * stride_w
        row = cols[r]
        for ky in range(kh):
            # slices indexed from 0: no negative-index checks, so the copies vectorize
            src = flat[(base + ky * dil_h * wp) * c:]
            dst = row[ky * span:]
            if dil_w == 1:
                for j in range(span):
                    dst[j] = src[j]
            else:
                for kx in range(kw):
                    for ch in range(c):
                        dst[kx * c + ch] = src[kx * dil_w * c + ch]
        ox += 1         # the next position without a division
        if ox == out_w:
            ox = 0
            oy += 1
            if oy == out_h:
                oy = 0
                b += 1


@njit(cache=True)
def _depthwise_layout(x, pad_t, pad_l, stride_w, depth_multiplier, xph):
    """One sample x [H, W, IC] int8 into the interior of xph [SW, HP, WPP * OC] int8: padded
    column X in phase X % SW at X // SW, a channel per output channel (IC * multiplier), so that
    each tap of a stride-SW row of outputs is one contiguous run."""
    h, w, ic_count = x.shape
    oc = ic_count * depth_multiplier
    for y in range(h):
        src_row = x[y].reshape(-1)
        for p in range(stride_w):
            xx0 = (p - pad_l) % stride_w        # the first input column of phase p
            j0 = (xx0 + pad_l) // stride_w
            dst = xph[p, y + pad_t, j0 * oc:]
            for j in range((w - xx0 + stride_w - 1) // stride_w):
                src = src_row[(xx0 + j * stride_w) * ic_count:]
                d = dst[j * oc:]
                if depth_multiplier == 1:
                    for c in range(oc):
                        d[c] = src[c]
                else:
                    for ic in range(ic_count):
                        for m in range(depth_multiplier):
                            d[ic * depth_multiplier + m] = src[ic]


@njit(cache=True, inline="always")
def _depthwise_row(xph, in_offset, weights_tiled, iy0, stride_w, dil_h, dil_w, oc, row):
    """The accumulators of one output row (its first input row iy0 of the laid-out xph) into row:
    a tap of the whole row is one unchecked multiply-add over out_w * OC values."""
    kh, kw, span = weights_tiled.shape
    row[:] = 0
    for ky in range(kh):
        iy = iy0 + ky * dil_h
        for kx in range(kw):
            col = kx * dil_w
            # slices indexed from 0: no negative-index checks, so the loops vectorize
            src = xph[col % stride_w, iy, (col // stride_w) * oc:]
            wt = weights_tiled[ky, kx]
            for i in range(span):
                row[i] += (src[i] + in_offset) * wt[i]


@njit(cache=True)
def depthwise_acc(x, in_offset, weights_tiled, pad_t, pad_l, padded_h, padded_w, stride_h, stride_w, dil_h, dil_w,
                  out_h, depth_multiplier, b0, acc):
    """TFLM's depthwise accumulators (bias excluded) of the samples b0.. into acc
    [samples * out_h * out_w, OC]: x [N, H, W, IC] int8, in_offset = -zero point in acc's type,
    weights_tiled [KH, KW, out_w * OC] (each tap's OC weights repeated out_w times) in acc's
    (exact) float type, OC = IC * multiplier. Each sample is laid out once inside a border of the
    zero point (`_depthwise_layout`: a padded tap adds nothing, as the reference kernel skips it);
    then a tap of a whole output row is one unchecked multiply-add over out_w * OC values, which
    vectorizes (2-4x the per-pixel loop)."""
    kh, kw, span = weights_tiled.shape
    oc = acc.shape[1]
    out_w = span // oc
    samples = acc.shape[0] // (out_h * out_w)
    wpp = (padded_w + stride_w - 1) // stride_w
    xph = np.full((stride_w, padded_h, wpp * oc), -in_offset, dtype=np.int8)
    flat = acc.reshape(-1)
    for s in range(samples):
        _depthwise_layout(x[b0 + s], pad_t, pad_l, stride_w, depth_multiplier, xph)
        for oy in range(out_h):
            _depthwise_row(xph, in_offset, weights_tiled, oy * stride_h, stride_w, dil_h, dil_w, oc,
                           flat[(s * out_h + oy) * span:(s * out_h + oy + 1) * span])


@njit(cache=True)
def depthwise_requant(x, in_offset, weights_tiled, pad_t, pad_l, padded_h, padded_w, stride_h, stride_w, dil_h,
                      dil_w, out_h, depth_multiplier, bias_tiled, scale_tiled, out_offset, act_min, act_max, out):
    """`depthwise_acc` and `requantize_float` fused: each output row's accumulators stay in one
    small buffer (in the cache) across the taps and are requantized from it straight into out
    [N * out_h * out_w, OC] int8, so no accumulator array goes to memory between two passes (the
    depthwise layer is store-bound). bias_tiled and scale_tiled are `requantize_float`'s bias and
    scale tiled out_w times; the arithmetic is `requantize_float`'s, so the outputs are identical."""
    span = weights_tiled.shape[2]
    oc = out.shape[1]
    wpp = (padded_w + stride_w - 1) // stride_w
    xph = np.full((stride_w, padded_h, wpp * oc), -in_offset, dtype=np.int8)
    row = np.empty(span, dtype=weights_tiled.dtype)
    flat = out.reshape(-1)
    for s in range(x.shape[0]):
        _depthwise_layout(x[s], pad_t, pad_l, stride_w, depth_multiplier, xph)
        for oy in range(out_h):
            _depthwise_row(xph, in_offset, weights_tiled, oy * stride_h, stride_w, dil_h, dil_w, oc, row)
            dst = flat[(s * out_h + oy) * span:(s * out_h + oy + 1) * span]
            for i in range(span):
                q = np.floor((np.float64(row[i]) + bias_tiled[i]) * scale_tiled[i] + 0.5) + out_offset
                dst[i] = np.int32(min(max(q, act_min), act_max))


@njit(cache=True)
def requantize_float(acc, bias, scale, out_offset, act_min, act_max, out):
    """TFLM's requantization of acc [R, OC] (exact integers) + bias into out [R, OC] int8, in
    float64: floor((acc + bias) * m * 2^-t + 1/2), exact under the conditions `Requantize`
    checks (a branch-free loop the compiler vectorizes)."""
    rows, oc = acc.shape
    for i in range(rows):
        for c in range(oc):
            q = np.floor((np.float64(acc[i, c]) + bias[c]) * scale[c] + 0.5) + out_offset
            out[i, c] = np.int32(min(max(q, act_min), act_max))


@njit(cache=True)
def requantize_int(acc, bias, multiplier, total_shift, rounding, out_offset, act_min, act_max, out):
    """TFLM's requantization in int64 (the int32 accumulator wraps as in C++; single rounding:
    (x*m + 2^(t-1)) >> t), for the layers `requantize_float` cannot take."""
    rows, oc = acc.shape
    for i in range(rows):
        for c in range(oc):
            a = wrap32(np.int64(acc[i, c]) + bias[c])
            v = ((a * multiplier[c] + rounding[c]) >> total_shift[c]) + out_offset
            out[i, c] = min(max(v, act_min), act_max)


class Requantize:
    """TFLM's per-channel requantization (int32 accumulator + bias, MultiplyByQuantizedMultiplier
    with single rounding, output offset, activation clamp) of a layer whose accumulators are at
    most `acc_abs_max` in magnitude; `requantize(acc, out)` writes int8 rows.

    In float64 when that is exact: (acc + bias) is then an integer below 2^31 (no int32 wrap), and
    with t = 31 - shift <= 44 the exact x = (acc + bias) * m / 2^t + 1/2 is either an integer
    (then few significant bits: float64 holds it exactly) or at least 2^-t from one, while the two
    roundings of the float64 product and sum err by under 2^-44 wherever |x| < 512; beyond that the
    output clamps either way. Otherwise (large multipliers' inverse, wrapping sums) in int64."""

    def __init__(self, bias, multiplier, shift, out_offset: int, act_min: int, act_max: int,
                 acc_abs_max: float):
        bias = np.asarray(bias, dtype=np.int64)
        m = np.asarray(multiplier, dtype=np.int64)
        t = 31 - np.asarray(shift, dtype=np.int64)
        wraps = acc_abs_max + float(np.abs(bias).max(initial=0)) >= 2.0 ** 31
        self.in_float = bool(not wraps and t.max(initial=0) <= 44)
        if self.in_float:
            self.kernel = requantize_float
            self.args = (bias.astype(np.float64), m.astype(np.float64) * np.exp2(-t.astype(np.float64)),
                         float(out_offset), float(act_min), float(act_max))
        else:
            self.kernel = requantize_int
            self.args = (bias, m, t, np.int64(1) << (t - 1), int(out_offset), int(act_min), int(act_max))

    def __call__(self, acc: np.ndarray, out: np.ndarray) -> None:
        self.kernel(acc, *self.args, out)


@njit(cache=True)
def hard_swish(x, input_zero_point, output_zero_point, relu_m, relu_e, out_m, out_e):
    """reference_ops::HardSwish on int8: x * relu6(x + 3) / 6 in int16 fixed point."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = np.int64(x[i]) - input_zero_point
        hires = v * 128
        preshift_out = srdhm16(hires, out_m)
        reluish = hires
        if relu_e > 0:
            reluish = saturating_left_shift16(reluish, relu_e - 1)
        reluish = srdhm16(reluish, relu_m)
        if relu_e > 0:
            reluish = saturating_left_shift16(reluish, 1)
        if relu_e < 0:
            reluish = rounding_divide_by_pot(reluish, -relu_e)
        reluish = (reluish + 32768) >> 1
        r = rounding_divide_by_pot(sdhm16(reluish, preshift_out), -out_e) + output_zero_point
        out[i] = min(max(r, -128), 127)
    return out



@njit(cache=True)
def squared_difference(x1, x2, in1_offset, in2_offset, left_shift, m1, s1, m2, s2, mo, so, out_offset):
    """TFLM's int8 SQUARED_DIFFERENCE (squared_difference.cc): both inputs shifted left by 7 and
    brought to twice the larger scale, the difference squared in int32 (it cannot overflow:
    at most 255^2 * 2^14), rescaled once to the output, offset and saturated."""
    n = x1.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        a = mul_by_quantized_multiplier((np.int64(x1[i]) + in1_offset) << left_shift, m1, s1)
        b = mul_by_quantized_multiplier((np.int64(x2[i]) + in2_offset) << left_shift, m2, s2)
        d = a - b
        v = mul_by_quantized_multiplier(d * d, mo, so) + out_offset
        out[i] = min(max(v, -128), 127)
    return out


@njit(cache=True)
def inv_sqrt_multiplier(value):
    """TFLite's GetInvSqrtQuantizedMultiplierExp(value, reverse_shift=-1): 1/sqrt(value) as a Q31
    significand and a left-shift exponent (<= 0), by five Newton-Raphson steps in Q3.28 fixed
    point from a start of 1, the input normalised by pairs of bits first."""
    if value <= 1:
        return np.int64(2147483647), 0
    right_shift = 11
    while value >= (1 << 29):
        value //= 4
        right_shift += 1
    pairs = (count_leading_zeros32(value) - 1) // 2 - 1
    right_shift -= pairs
    value <<= 2 * pairs
    x_in = value >> 1                                   # F3 raw
    half_in = rounding_divide_by_pot(x_in, 1)
    half_three = np.int64((1 << 28) + (1 << 27))        # 1.5 in F3
    x = np.int64(1 << 28)                               # 1.0 in F3
    for _ in range(5):
        x2 = srdhm(x, x)                                # F6
        x3 = saturating_mul_by_pot(srdhm(x2, x), 6)     # F9 -> F3
        t = wrap32(srdhm(half_three, x) - srdhm(half_in, x3))   # F6
        x = saturating_mul_by_pot(t, 3)                 # F6 -> F3
    x = srdhm(x, np.int64(1518500250))                  # times sqrt(2)/2 (F0): stays F3
    if right_shift < 0:
        x = wrap32(x << -right_shift)
        right_shift = 0
    return x, -right_shift


@njit(cache=True)
def rsqrt(x, input_zero_point, multiplier, shift, output_zero_point):
    """TFLM's int8 RSQRT (elementwise.cc, RsqrtEvalQuantized): 1/sqrt(x - zp) through
    `inv_sqrt_multiplier`, read out as an integer scaled by 2^20, then rescaled by
    1/(sqrt(in_scale) * out_scale) with the 2^20 taken back; x == zp gives 127. An input below
    its zero point (negative) is an error in TFLM; the caller checks for it."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = np.int64(x[i]) - input_zero_point
        if v <= 0:
            out[i] = 127
            continue
        m, s = inv_sqrt_multiplier(v)
        data = mul_by_quantized_multiplier(1, m, s + 20)
        r = mul_by_quantized_multiplier(data, multiplier, shift - 20) + output_zero_point
        out[i] = min(max(r, -128), 127)
    return out


@njit(cache=True)
def abs_i8(x, input_zero_point, rescale, multiplier, shift, output_zero_point):
    """TFLM's int8 ABS (elementwise.cc, AbsEvalQuantized): |x - zp|, rescaled by in/out scale
    only when the two scales differ, offset and saturated."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        v = abs(np.int64(x[i]) - input_zero_point)
        if rescale:
            v = mul_by_quantized_multiplier(v, multiplier, shift)
        out[i] = min(max(v + output_zero_point, -128), 127)
    return out


@njit(cache=True, inline="always")
def _mul_by_multiplier_any_shift(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (single rounding) over the whole shift range DIV reaches:
    a shift of 31 multiplies without rounding, and a right shift past 62 leaves 0 (|x * m| is
    below 2^62, less than the rounding half), both as the C++ computes them."""
    total_shift = 31 - shift
    p = np.int64(x) * np.int64(multiplier)
    if total_shift <= 0:
        return p
    if total_shift > 62:
        return np.int64(0)
    return (p + (np.int64(1) << (total_shift - 1))) >> total_shift


@njit(cache=True, inline="always")
def _leading_sign_bits32(x):
    """CountLeadingSignBits of an int32 (GCC's __builtin_clrsb; 31 for 0)."""
    return count_leading_zeros32(~x if x < 0 else x) - 1


@njit(cache=True)
def div(x1, x2, in1_offset, in2_offset, multiplier, shift, out_offset, act_min, act_max):
    """TFLM's int8 DIV (reference_ops::DivElementwise): the divisor's sign moved to the dividend,
    its reciprocal in Q0.31 (GetReciprocal, as softmax's), the dividend shifted up by its
    headroom and multiplied by it, then one rescale by in1/(in2*out) with both shifts taken
    back. A zero divisor is not checked in TFLM's release build; it computes as written."""
    n = x1.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        a = np.int64(x1[i]) + in1_offset
        b = np.int64(x2[i]) + in2_offset
        if b < 0:
            a, b = -a, -b
        inv, recip_shift = get_reciprocal(b, 31)
        headroom = _leading_sign_bits32(a)
        q = _mul_by_multiplier_any_shift(a, inv, headroom)
        v = _mul_by_multiplier_any_shift(q, multiplier, shift - recip_shift - headroom) + out_offset
        out[i] = min(max(v, act_min), act_max)
    return out
