"""Reference-kernel builders of the element-wise layers: ADD, SUB, MUL (broadcasting, TFLM's int8
arithmetic), MAXIMUM and MINIMUM, and the activations RELU, RELU6, LEAKY_RELU, HARD_SWISH,
LOGISTIC, TANH, SOFTMAX, LOG_SOFTMAX, plus QUANTIZE and DEQUANTIZE, and LayerNormalization's
SQUARED_DIFFERENCE and RSQRT."""
from __future__ import annotations

import math

import numpy as np

from simulator import kernels_ref as K
from simulator.graph import Graph, Operator
from simulator.quant_math import (
    activation_range, c_round, hard_swish_params, log_softmax_params, quantize_multiplier, sigmoid_tanh_params,
    softmax_params,
)
from simulator.reference_ops.common import (
    broadcast_flat, err, flat, qparams, require_int8, require_same_quantization,
)


def _binary(graph: Graph, op: Operator):
    a_t, b_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    require_int8(graph, op, a_t, b_t, y_t)
    return a_t, b_t, y_t


def _common_scale(graph: Graph, op: Operator):
    """ADD, SUB and SQUARED_DIFFERENCE bring both inputs to twice the larger input scale (in
    double, from the float scales): (y tensor, the zero points, the output scale, the two input
    multipliers and twice the larger scale)."""
    a_t, b_t, y_t = _binary(graph, op)
    s1, z1 = qparams(graph, op, a_t)
    s2, z2 = qparams(graph, op, b_t)
    so, zo = qparams(graph, op, y_t)
    twice_max = 2.0 * float(max(np.float32(s1), np.float32(s2)))
    return y_t, (z1, z2, zo), so, quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max), twice_max


def build_add_sub(kind: str):
    def build(graph: Graph, op: Operator):
        y_t, (z1, z2, zo), so, (m1, sh1), (m2, sh2), twice_max = _common_scale(graph, op)
        left_shift = 20
        mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
        act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"), so, zo)
        ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
        shape = tuple(y_t.shape)
        subtract = kind == "sub"

        def run(values):
            x1, x2, nb = broadcast_flat(values[ai], values[bi], shape)
            values[yi] = K.add(x1, x2, -z1, -z2, left_shift, m1, sh1, m2, sh2, mo, sho, zo,
                               act_min, act_max, subtract).reshape((nb,) + shape)
        return run, {}
    return build


def _one_multiplier(kernel, real_multiplier):
    """A builder of MUL and DIV: one output multiplier from the three scales
    (`real_multiplier(s1, s2, s_out)`), then `kernel(x1, x2, -z1, -z2, m, shift, z_out, min, max)`
    over the broadcast operands."""
    def build(graph: Graph, op: Operator):
        a_t, b_t, y_t = _binary(graph, op)
        s1, z1 = qparams(graph, op, a_t)
        s2, z2 = qparams(graph, op, b_t)
        so, zo = qparams(graph, op, y_t)
        m, sh = quantize_multiplier(real_multiplier(s1, s2, so))
        act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"), so, zo)
        ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
        shape = tuple(y_t.shape)

        def run(values):
            x1, x2, nb = broadcast_flat(values[ai], values[bi], shape)
            values[yi] = kernel(x1, x2, -z1, -z2, m, sh, zo, act_min, act_max).reshape((nb,) + shape)
        return run, {}
    return build


build_mul = _one_multiplier(K.mul, lambda s1, s2, so: float(s1) * float(s2) / float(so))
# DIV (softsign's x / (1 + |x|)): TFLM's Prepare computes in1 / (in2 * out) in float
build_div = _one_multiplier(K.div, lambda s1, s2, so: float(np.float32(s1) / (np.float32(s2) * np.float32(so))))


def build_extreme(kind: str):
    """MAXIMUM / MINIMUM: TFLM compares the int8 values as they are (the converter gives both
    inputs and the output one quantization)."""
    def build(graph: Graph, op: Operator):
        a_t, b_t, y_t = _binary(graph, op)
        require_same_quantization(graph, op, a_t, y_t)
        require_same_quantization(graph, op, b_t, y_t)
        fn = np.maximum if kind == "max" else np.minimum
        ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
        shape = tuple(y_t.shape)

        def run(values):
            x1, x2, nb = broadcast_flat(values[ai], values[bi], shape)
            values[yi] = fn(x1, x2).reshape((nb,) + shape)
        return run, {}
    return build


def _table(kernel, *args) -> np.ndarray:
    """An int8 -> int8 (or float32) layer as its table over the 256 inputs, indexed by the input's
    byte (`kernels_ref.lookup`): the kernel's own outputs, so a lookup gives its bits exactly, at
    the cost of one load per element instead of the fixed-point arithmetic."""
    return np.ascontiguousarray(kernel(K.BYTE_VALUES, *args))


def _lookup_run(xi: int, yi: int, shape: tuple, table: np.ndarray):
    def run(values):
        values[yi] = K.lookup(flat(values[xi]), table).reshape((-1,) + shape)
    return run


def _unary(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    require_int8(graph, op, x_t, y_t)
    return x_t, y_t, op.inputs[0], op.outputs[0], tuple(y_t.shape)


def build_softmax(graph: Graph, op: Operator):
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, _ = qparams(graph, op, x_t)
    mult, left_shift, diff_min = softmax_params(float(op.options.get("beta", 1.0)), in_scale)
    depth = x_t.shape[-1]

    def run(values):
        values[yi] = K.softmax(values[xi].reshape(-1, depth), mult, left_shift, diff_min
                               ).reshape((-1,) + shape)
    return run, {}


def build_log_softmax(graph: Graph, op: Operator):
    """LOG_SOFTMAX (Activation('log_softmax')): TFLM's int8 kernel over the last axis; TFLM
    requires the output quantization 16/256 with zero point 127."""
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, _ = qparams(graph, op, x_t)
    if qparams(graph, op, y_t) != (float(np.float32(16.0 / 256)), 127):
        raise err(graph, op, "output quantization is not scale 1/16, zero point 127: TFLite Micro refuses it")
    try:
        params = log_softmax_params(in_scale)
    except ValueError as e:
        raise err(graph, op, f"{e}: TFLite Micro refuses it") from None
    depth = x_t.shape[-1]

    def run(values):
        values[yi] = K.log_softmax(values[xi].reshape(-1, depth), *params).reshape((-1,) + shape)
    return run, {}


def build_sigmoid_tanh(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t, xi, yi, shape = _unary(graph, op)
        in_scale, in_zp = qparams(graph, op, x_t)
        mult, left_shift, radius = sigmoid_tanh_params(in_scale)
        fn = K.logistic if kind == "logistic" else K.tanh
        return _lookup_run(xi, yi, shape, _table(fn, in_zp, mult, left_shift, radius)), {}
    return build


def build_relu(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t, xi, yi, shape = _unary(graph, op)
        in_scale, in_zp = qparams(graph, op, x_t)
        out_scale, out_zp = qparams(graph, op, y_t)
        if kind == "relu6":
            # TFLM's int8 RELU6 clamps in the input's quantization, without rescaling
            six = int(c_round(float(np.float32(6.0) / np.float32(in_scale)))) + in_zp
            lo, hi = in_zp, min(max(six, -128), 127)
            return _lookup_run(xi, yi, shape, np.clip(K.BYTE_VALUES, lo, hi).astype(np.int8)), {}
        m, sh = quantize_multiplier(float(in_scale) / float(out_scale))
        lo = max(-128, out_zp + int(c_round(float(np.float32(0.0) / np.float32(out_scale)))))
        hi = 127
        return _lookup_run(xi, yi, shape, _table(K.relu_requant, in_zp, m, sh, out_zp, lo, hi)), {}
    return build


def build_leaky_relu(graph: Graph, op: Operator):
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    alpha = np.float32(op.options.get("alpha", 0.2))
    m_a, s_a = quantize_multiplier(float(np.float32(in_scale) * alpha / np.float32(out_scale)))
    m_i, s_i = quantize_multiplier(float(np.float32(in_scale) / np.float32(out_scale)))
    return _lookup_run(xi, yi, shape, _table(K.leaky_relu, in_zp, m_i, s_i, m_a, s_a, out_zp)), {}


def build_hard_swish(graph: Graph, op: Operator):
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    relu_m, relu_e, out_m, out_e = hard_swish_params(in_scale, out_scale)
    if out_e > 0:
        raise err(graph, op, "output multiplier exponent > 0: TFLite Micro refuses this scale pair")
    return _lookup_run(xi, yi, shape, _table(K.hard_swish, in_zp, out_zp, relu_m, relu_e, out_m, out_e)), {}


def build_quantize(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    out_scale, out_zp = qparams(graph, op, y_t)
    xi, yi = op.inputs[0], op.outputs[0]
    shape = tuple(y_t.shape)
    if y_t.dtype != "int8":
        raise err(graph, op, f"quantize to {y_t.dtype} is not supported")
    if x_t.dtype == "float32":
        def run(values):
            values[yi] = K.quantize_f32(flat(values[xi]), out_scale, out_zp).reshape((-1,) + shape)
        return run, {}
    if x_t.dtype == "int8":
        in_scale, in_zp = qparams(graph, op, x_t)
        m, sh = quantize_multiplier(float(in_scale) / float(out_scale))
        return _lookup_run(xi, yi, shape, _table(K.requantize_i8, in_zp, m, sh, out_zp)), {}
    raise err(graph, op, f"quantize from {x_t.dtype} is not supported")


def build_dequantize(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    require_int8(graph, op, x_t)
    if y_t.dtype != "float32":
        raise err(graph, op, f"dequantize to {y_t.dtype} is not supported")
    scale, zp = qparams(graph, op, x_t)
    xi, yi = op.inputs[0], op.outputs[0]
    shape = tuple(y_t.shape)
    return _lookup_run(xi, yi, shape, _table(K.dequantize_i8, scale, zp)), {}


def build_squared_difference(graph: Graph, op: Operator):
    """SQUARED_DIFFERENCE (LayerNormalization's variance): TFLM's int8 kernel, broadcasting."""
    y_t, (z1, z2, zo), so, (m1, sh1), (m2, sh2), twice_max = _common_scale(graph, op)
    left_shift = 7
    mo, sho = quantize_multiplier(twice_max * twice_max / ((1 << 2 * left_shift) * so))
    ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
    shape = tuple(y_t.shape)

    def run(values):
        x1, x2, nb = broadcast_flat(values[ai], values[bi], shape)
        values[yi] = K.squared_difference(x1, x2, -z1, -z2, left_shift, m1, sh1, m2, sh2, mo, sho,
                                          zo).reshape((nb,) + shape)
    return run, {}


def build_rsqrt(graph: Graph, op: Operator):
    """RSQRT (LayerNormalization's 1/sqrt(variance + epsilon)): TFLM's int8 kernel, tabulated.
    TFLM's Invoke fails on an input below its zero point (a negative value); so does this."""
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    m, sh = quantize_multiplier(1.0 / (math.sqrt(float(in_scale)) * float(out_scale)))
    table = _table(K.rsqrt, in_zp, m, sh, out_zp)
    lookup = _lookup_run(xi, yi, shape, table)

    def run(values):
        if in_zp > -128 and (values[xi] < in_zp).any():
            raise err(graph, op, "an input below its zero point (negative): TFLite Micro's RSQRT "
                                 "fails the inference")
        lookup(values)
    return run, {}


def build_abs(graph: Graph, op: Operator):
    """ABS (softsign's |x|, hard_shrink): TFLM's int8 kernel, tabulated."""
    x_t, y_t, xi, yi, shape = _unary(graph, op)
    in_scale, in_zp = qparams(graph, op, x_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    rescale = np.float32(in_scale) != np.float32(out_scale)
    m, sh = quantize_multiplier(float(in_scale) / float(out_scale)) if rescale else (0, 0)
    return _lookup_run(xi, yi, shape, _table(K.abs_i8, in_zp, rescale, m, sh, out_zp)), {}
