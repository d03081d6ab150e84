"""Reference-kernel builders of the layers with weights: conv_2d, depthwise_conv_2d,
fully_connected, transpose_conv (TFLM's int8 kernels: per-channel requantization, single rounding).

Conv and fully connected run as one exact int32 matrix product over the whole batch
(`int_matmul`, then `kernels_ref`'s requantization); the batch axis merges with the model's own
batch axis.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simulator import kernels_ref as K
from simulator.graph import Graph, Operator, Tensor
from simulator.int_matmul import IntMatmul, biased
from simulator.quant_math import activation_range, quantize_multiplier
from simulator.reference_ops.common import bias, err, out_size, qparams, require_int8, same_pad


def conv_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, channels: int):
    """Per-channel (multiplier, shift) from double(in_scale) * double(w_scale) / double(out)."""
    mult = np.empty(channels, dtype=np.int32)
    shift = np.empty(channels, dtype=np.int32)
    for c in range(channels):
        ws = float(w_scales[c] if len(w_scales) > 1 else w_scales[0])
        mult[c], shift[c] = quantize_multiplier(float(in_scale) * ws / float(out_scale))
    return mult, shift


def fc_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, channels: int):
    """FC uses GetQuantizedConvolutionMultipler: one per-tensor multiplier from the filter's
    first scale (the TFLM that the vendor ships predates per-channel FC, so a per-channel
    filter is requantized with channel 0's scale: measured against the oracle), and the
    input*filter product is taken in float."""
    product = float(np.float32(in_scale) * np.float32(w_scales[0]))
    m, s = quantize_multiplier(product / float(out_scale))
    return np.full(channels, m, dtype=np.int32), np.full(channels, s, dtype=np.int32)


class _Window(NamedTuple):
    """What conv_2d and depthwise_conv_2d share: strides, dilations, output size, SAME padding and
    the padded input's extent, zero points, per-channel multipliers and the activation range."""
    sh: int
    sw: int
    dh: int
    dw: int
    out_h: int
    out_w: int
    pad_t: int
    pad_l: int
    hp: int
    wp: int
    in_zp: int
    out_zp: int
    mult: np.ndarray
    shift: np.ndarray
    act_min: int
    act_max: int


def _window_params(graph: Graph, op: Operator, x_t: Tensor, w_t: Tensor, y_t: Tensor, kh: int, kw: int,
                   oc: int) -> _Window:
    o = op.options
    _, h, w, _ = x_t.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    _, out_h, out_w, _ = y_t.shape
    pad_t = same_pad(o.get("padding", "valid"), sh, dh, h, kh, out_h)
    pad_l = same_pad(o.get("padding", "valid"), sw, dw, w, kw, out_w)
    hp = max(pad_t + h, (out_h - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pad_l + w, (out_w - 1) * sw + (kw - 1) * dw + 1)
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    mult, shift = conv_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
    return _Window(sh, sw, dh, dw, out_h, out_w, pad_t, pad_l, hp, wp, in_zp, out_zp, mult, shift, act_min, act_max)


def _nhwc(v: np.ndarray, x_t: Tensor) -> np.ndarray:
    """A batched NHWC value as one C-contiguous NHWC array (the batch axis merged into N; the
    kernels read it flat)."""
    return np.ascontiguousarray(v.reshape((-1,) + tuple(x_t.shape[1:])))


def _weighted(graph: Graph, op: Operator, x_pos: int = 0):
    """(input, weights, output) of a layer with constant int8 weights at input 1."""
    x_t, w_t = graph.tensors[op.inputs[x_pos]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    require_int8(graph, op, x_t, w_t, y_t)
    if w_t.data is None:
        raise err(graph, op, "weights are not constant")
    return x_t, w_t, y_t


def build_conv(graph: Graph, op: Operator):
    x_t, w_t, y_t = _weighted(graph, op)
    ic = x_t.shape[3]
    oc, kh, kw, icg = w_t.shape
    if ic % icg:
        raise err(graph, op, f"input depth {ic} is not a multiple of filter depth {icg}")
    p = _window_params(graph, op, x_t, w_t, y_t, kh, kw, oc)
    b = bias(graph, op, 2, oc)
    groups = ic // icg
    xi, yi = op.inputs[0], op.outputs[0]
    shape = tuple(y_t.shape)
    if groups == 1:
        # one exact int32 matrix product over the im2col rows (int_matmul), chunk by chunk
        # (kernels_ref: accumulate, then requantize); the patches are the uint8 x + 128, a tap
        # outside the input in_zp + 128, whose products the zero point cancels
        w_mat = w_t.data.transpose(1, 2, 3, 0).reshape(-1, oc)
        in_abs = float(max(abs(-128 - p.in_zp), abs(127 - p.in_zp)))
        w_abs = float(np.abs(w_mat.astype(np.float64)).sum(axis=0).max(initial=0.0))
        product = IntMatmul(w_mat, p.in_zp)
        requantize = K.Requantize(b, p.mult, p.shift, p.out_zp, p.act_min, p.act_max, w_abs * in_abs)
        chunk = K.chunk_rows(w_mat.shape[0] + 4 * oc)
        per_sample = p.out_h * p.out_w
        pad_value = np.uint8(p.in_zp + 128)
        pointwise = kh == kw == 1 and p.pad_t == p.pad_l == 0

        def run(values):
            x = _nhwc(values[xi], x_t)
            rows = x.shape[0] * per_sample
            y = np.empty((rows, oc), dtype=np.int8)
            if pointwise:       # the patches are the input's pixels themselves: no im2col
                xs = biased(x[:, :p.out_h * p.sh:p.sh, :p.out_w * p.sw:p.sw]).reshape(rows, ic)
                for r0 in range(0, rows, chunk):
                    requantize(product(xs[r0:r0 + chunk]), y[r0:r0 + chunk])
                values[yi] = y.reshape((-1,) + shape)
                return
            xp = K.pad_biased(x, pad_value, p.pad_t, p.pad_l, p.hp, p.wp)
            cols = np.empty((min(chunk, rows), w_mat.shape[0]), dtype=np.uint8)
            for r0 in range(0, rows, chunk):
                n = min(chunk, rows - r0)
                K.im2col(xp, kh, kw, p.sh, p.sw, p.dh, p.dw, p.out_h, p.out_w, r0, cols[:n])
                requantize(product(cols[:n]), y[r0:r0 + n])
            values[yi] = y.reshape((-1,) + shape)
        return run, {}

    weights = np.ascontiguousarray(w_t.data.astype(np.int32).transpose(1, 2, 3, 0))

    def run(values):
        xp = K.pad_offset_input(_nhwc(values[xi], x_t), np.int32(-p.in_zp), p.pad_t, p.pad_l, p.hp, p.wp)
        values[yi] = K.conv2d(xp, weights, b, p.mult, p.shift, p.out_zp, p.act_min, p.act_max,
                              p.sh, p.sw, p.dh, p.dw, p.out_h, p.out_w, groups).reshape((-1,) + shape)
    return run, {}


def build_depthwise(graph: Graph, op: Operator):
    x_t, w_t, y_t = _weighted(graph, op)
    ic = x_t.shape[3]
    _, kh, kw, oc = w_t.shape
    dm = oc // ic if ic else 1
    p = _window_params(graph, op, x_t, w_t, y_t, kh, kw, oc)
    w64 = w_t.data.astype(np.float64).reshape(kh, kw, oc)
    in_abs = float(max(abs(-128 - p.in_zp), abs(127 - p.in_zp)))
    w_abs = float(np.abs(w64).sum(axis=(0, 1)).max(initial=0.0))
    dtype = K.exact_float_type(w_abs, in_abs)
    weights = np.ascontiguousarray(w64.astype(dtype))
    offset = dtype(-p.in_zp)
    requantize = K.Requantize(bias(graph, op, 2, oc), p.mult, p.shift, p.out_zp, p.act_min, p.act_max,
                              w_abs * in_abs)
    per_sample = p.out_h * p.out_w
    chunk = max(1, K.chunk_rows(4 * oc) // per_sample)      # whole samples: the kernel lays each out once
    weights_tiled = np.ascontiguousarray(np.tile(weights, (1, 1, p.out_w)))
    xi, yi = op.inputs[0], op.outputs[0]
    shape = tuple(y_t.shape)

    if requantize.in_float:
        bias_tiled, scale_tiled = (np.ascontiguousarray(np.tile(a, p.out_w)) for a in requantize.args[:2])

        def run_fused(values):
            x = _nhwc(values[xi], x_t)
            y = np.empty((x.shape[0] * per_sample, oc), dtype=np.int8)
            K.depthwise_requant(x, offset, weights_tiled, p.pad_t, p.pad_l, p.hp, p.wp, p.sh, p.sw, p.dh, p.dw,
                                p.out_h, dm, bias_tiled, scale_tiled, *requantize.args[2:], y)
            values[yi] = y.reshape((-1,) + shape)
        return run_fused, {}

    def run(values):
        x = _nhwc(values[xi], x_t)
        y = np.empty((x.shape[0] * per_sample, oc), dtype=np.int8)
        acc = np.empty((min(chunk, x.shape[0]) * per_sample, oc), dtype=dtype)
        for b0 in range(0, x.shape[0], chunk):
            rows = min(chunk, x.shape[0] - b0) * per_sample
            K.depthwise_acc(x, offset, weights_tiled, p.pad_t, p.pad_l, p.hp, p.wp, p.sh, p.sw, p.dh, p.dw,
                            p.out_h, dm, b0, acc[:rows])
            requantize(acc[:rows], y[b0 * per_sample:b0 * per_sample + rows])
        values[yi] = y.reshape((-1,) + shape)
    return run, {}


def build_fc(graph: Graph, op: Operator):
    x_t, w_t, y_t = _weighted(graph, op)
    oc, k = w_t.shape
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    w_zp = int(w_t.zero_point[0]) if w_t.zero_point is not None and len(w_t.zero_point) else 0
    mult, shift = fc_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"),
                                        out_scale, out_zp)
    b = bias(graph, op, 2, oc)
    xi, yi = op.inputs[0], op.outputs[0]
    in_abs = float(max(abs(-128 - in_zp), abs(127 - in_zp)))
    w_abs = float(np.abs(w_t.data.astype(np.float64) - w_zp).sum(axis=1).max(initial=0.0))
    product = IntMatmul(w_t.data.T, in_zp, w_zp)
    requantize = K.Requantize(b, mult, shift, out_zp, act_min, act_max, w_abs * in_abs)
    shape = tuple(y_t.shape)

    def run(values):
        acc = product(biased(values[xi].reshape(-1, k)))
        y = np.empty((acc.shape[0], oc), dtype=np.int8)
        requantize(acc, y)
        values[yi] = y.reshape((-1,) + shape)
    return run, {}


def build_transpose_conv(graph: Graph, op: Operator):
    x_t, w_t, y_t = _weighted(graph, op, x_pos=2)   # inputs: output shape, filter, input, bias
    o = op.options
    oc, kh, kw, _ = w_t.shape
    _, out_h, out_w, _ = y_t.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    padding = o.get("padding", "valid")
    # TFLM derives the padding from the output size, as for a forward conv over the output
    pad_h = same_pad(padding, sh, 1, out_h, kh, out_size(padding, sh, 1, out_h, kh))
    pad_w = same_pad(padding, sw, 1, out_w, kw, out_size(padding, sw, 1, out_w, kw))
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    mult, shift = conv_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
    b = bias(graph, op, 3, oc)
    weights = np.ascontiguousarray(w_t.data)
    xi, yi = op.inputs[2], op.outputs[0]
    shape = tuple(y_t.shape)

    def run(values):
        values[yi] = K.transpose_conv(_nhwc(values[xi], x_t), np.int32(-in_zp), weights, b, mult, shift,
                                      out_zp, act_min, act_max, sh, sw, pad_h, pad_w, out_h, out_w
                                      ).reshape((-1,) + shape)
    return run, {}


def build_batch_matmul(graph: Graph, op: Operator):
    """TFLM's int8 BATCH_MATMUL: int32 sums of (x - x_zp) * (y - y_zp) over the shared depth, one
    per-tensor multiplier double(x_scale) * y_scale / out_scale, broadcast over the leading dims;
    both operands may be activations. The products are exact in float64 (|sum| < 2^53)."""
    x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    require_int8(graph, op, x_t, w_t, y_t)
    sx, zx = qparams(graph, op, x_t)
    sw, zw = qparams(graph, op, w_t)
    so, zo = qparams(graph, op, y_t)
    m, sh = quantize_multiplier(float(sx) * float(sw) / float(so))
    act_min, act_max = -128, 127
    adj_x, adj_y = bool(op.options.get("adj_x", False)), bool(op.options.get("adj_y", False))
    xi, wi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
    shape = tuple(y_t.shape)
    oc = shape[-1]
    depth = x_t.shape[-2] if adj_x else x_t.shape[-1]
    requantize = K.Requantize(np.zeros(oc, dtype=np.int32), np.full(oc, m), np.full(oc, sh), zo, act_min, act_max,
                              255.0 * 255.0 * depth)
    rank = len(shape)

    def operand(v, zp, adj, t):
        v = v.reshape((v.shape[0],) + (1,) * (rank - len(t.shape)) + tuple(t.shape)).astype(np.float64) - zp
        return np.swapaxes(v, -1, -2) if adj else v

    def run(values):
        acc = np.matmul(operand(values[xi], zx, adj_x, x_t), operand(values[wi], zw, adj_y, w_t))
        y = np.empty((acc.size // oc, oc), dtype=np.int8)
        requantize(np.ascontiguousarray(acc.reshape(-1, oc)), y)
        values[yi] = y.reshape((-1,) + shape)
    return run, {}
