"""The window kernels of the reference mode against a direct sum, on the geometries the corpora
have few of: strides 1-3, dilations 1-2, depth multipliers 1-3, uneven padding. Depthwise
(`kernels_ref.depthwise_acc`: each sample laid out in stride phases inside a border of the
zero point) and conv's patches (`kernels_ref.pad_biased` + `im2col`, multiplied by
`int_matmul`) must give the reference kernel's accumulators: sum over the taps inside the input
of (x - zp) * w."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator import kernels_ref as K
from simulator.int_matmul import IntMatmul

GEOMETRIES = [  # (h, w, kh, kw, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, out_h, out_w)
    (7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 7, 9),
    (8, 7, 3, 3, 2, 2, 1, 1, 0, 1, 4, 4),
    (9, 10, 5, 3, 3, 2, 1, 2, 2, 2, 3, 5),
    (6, 11, 2, 4, 1, 3, 2, 1, 0, 0, 4, 3),
    (1, 5, 1, 3, 1, 2, 1, 1, 0, 1, 1, 3),
]


def _direct(x, w, zp, g):
    """acc[b, oy, ox, oc] of a (depthwise when w has 3 axes) conv, skipping taps outside."""
    h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    n = x.shape[0]
    xs = x.astype(np.int64) - zp
    out = []
    for b, oy, ox in itertools.product(range(n), range(oh), range(ow)):
        acc = 0
        for ky, kx in itertools.product(range(kh), range(kw)):
            iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
            if 0 <= iy < h and 0 <= ix < wd:
                acc = acc + (np.repeat(xs[b, iy, ix], w.shape[2] // xs.shape[3]) * w[ky, kx] if w.ndim == 3
                             else xs[b, iy, ix] @ w[ky, kx])
        out.append(acc)
    return np.array(out)


def _padded_extent(g):
    h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    return max(pt + h, (oh - 1) * sh + (kh - 1) * dh + 1), max(pl + wd, (ow - 1) * sw + (kw - 1) * dw + 1)


@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("dm", [1, 2, 3])
def test_depthwise_accumulators_equal_the_direct_sum(g, dm):
    rng = np.random.default_rng(len(g) * dm + g[0])
    h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    ic, zp = 5, -7
    x = rng.integers(-128, 128, (3, h, wd, ic)).astype(np.int8)
    w = rng.integers(-127, 128, (kh, kw, ic * dm)).astype(np.int64)
    hp, wp = _padded_extent(g)
    acc = np.empty((3 * oh * ow, ic * dm), dtype=np.float32)
    tiled = np.ascontiguousarray(np.tile(w.astype(np.float32), (1, 1, ow)))
    for b0 in range(3):     # one sample a call, then the rest in one call
        rows = slice(b0 * oh * ow, 3 * oh * ow if b0 else oh * ow)
        K.depthwise_acc(x, np.float32(-zp), tiled, pt, pl, hp, wp, sh, sw, dh, dw, oh, dm, b0, acc[rows])
        if b0:
            break
    assert np.array_equal(acc.astype(np.int64), _direct(x, w, zp, g))


@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("dm", [1, 3])
def test_fused_depthwise_equals_the_direct_sum_requantized(g, dm):
    """`depthwise_requant` (accumulate a row, requantize it in the same loop) gives exactly what
    `Requantize` makes of the direct sum: per-channel multipliers and shifts, bias, clamp."""
    rng = np.random.default_rng(len(g) + dm + g[1])
    h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    ic, zp = 4, 9
    oc = ic * dm
    x = rng.integers(-128, 128, (2, h, wd, ic)).astype(np.int8)
    w = rng.integers(-127, 128, (kh, kw, oc)).astype(np.int64)
    bias = rng.integers(-3000, 3000, oc)
    requantize = K.Requantize(bias, rng.integers(1 << 30, 1 << 31, oc), rng.integers(-12, -6, oc), -3, -128, 127,
                              float(np.abs(w).sum(axis=(0, 1)).max()) * 137)
    assert requantize.in_float
    expected = np.empty((2 * oh * ow, oc), dtype=np.int8)
    requantize(_direct(x, w, zp, g).astype(np.float64), expected)
    assert len(np.unique(expected)) > 10      # the multipliers put the outputs inside the clamp
    hp, wp = _padded_extent(g)
    b_t, s_t = (np.tile(a, ow) for a in requantize.args[:2])
    y = np.empty_like(expected)
    K.depthwise_requant(x, np.float32(-zp), np.ascontiguousarray(np.tile(w.astype(np.float32), (1, 1, ow))), pt, pl,
                        hp, wp, sh, sw, dh, dw, oh, dm, b_t, s_t, *requantize.args[2:], y)
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_conv_patches_times_int_matmul_equal_the_direct_sum(g):
    rng = np.random.default_rng(g[0] + g[1])
    h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    ic, oc, zp = 3, 4, 11
    x = rng.integers(-128, 128, (2, h, wd, ic)).astype(np.int8)
    w = rng.integers(-128, 128, (kh, kw, ic, oc)).astype(np.int8)
    hp, wp = _padded_extent(g)
    xp = K.pad_biased(x, np.uint8(zp + 128), pt, pl, hp, wp)
    cols = np.empty((2 * oh * ow, kh * kw * ic), dtype=np.uint8)
    K.im2col(xp, kh, kw, sh, sw, dh, dw, oh, ow, 0, cols[:5])      # two chunks, the second mid-sample
    K.im2col(xp, kh, kw, sh, sw, dh, dw, oh, ow, 5, cols[5:])
    got = IntMatmul(w.reshape(-1, oc), zp)(cols)
    assert np.array_equal(got.astype(np.int64), _direct(x, w.astype(np.int64), zp, g))
