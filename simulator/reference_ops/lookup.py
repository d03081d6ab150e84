"""Reference-kernel builders of the activations that TFLite computes through a 256-entry lookup
table for int8 (ELU in TFLite Micro; GELU, EXP, LOG and SQRT in TensorFlow Lite: the vendor's
TFLite Micro has no GELU and no int8 EXP, LOG or SQRT, its EXP, LOG and SQRT take float32 only), and PRELU
(per-element alpha, two requantization multipliers).

The table is built as the kernels' Prepare builds it (`PopulateLookupTable` / `LUTPopulate`):
each int8 value dequantized in float, transformed in float, multiplied by 1/out_scale, rounded
half away from zero, offset and saturated. The transforms are evaluated in double and rounded to
float, which is what the C library's correctly rounded float functions return.
"""
from __future__ import annotations

import math

import numpy as np

from simulator.graph import Graph, Operator
from simulator.quant_math import quantize_multiplier
from simulator.reference_ops.common import err, per_sample, qparams, require_int8

F = np.float32


def _c_roundf(x: np.float32) -> float:
    """roundf: halves away from zero (infinities and NaN pass through)."""
    if not math.isfinite(float(x)):
        return float(x)
    return math.copysign(math.floor(abs(float(x)) + 0.5), float(x))


def _to_int32(x: np.float32) -> int:
    """static_cast<int32_t> of a float as x86-64 computes it (cvttss2si): truncation, and the
    "integer indefinite" INT32_MIN for NaN, infinities and values outside int32 (log(0) = -inf
    lands here, and so would an exp that overflows the output's range by 2^31 steps)."""
    v = float(x)
    if not math.isfinite(v) or not -2.0 ** 31 <= v < 2.0 ** 31:
        return -(1 << 31)
    return int(v)


def lookup_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int, transform,
                 truncate: bool = False) -> np.ndarray:
    """The int8 table, indexed by the input byte as uint8 (value & 0xFF); `truncate`: the
    rescaled value truncated instead of rounded (SQRT's rule)."""
    table = np.empty(256, dtype=np.int8)
    inverse = F(1.0) / F(out_scale)
    for val in range(-128, 128):
        dequantized = F(in_scale) * F(val - in_zp)
        with np.errstate(all="ignore"):
            transformed = F(transform(dequantized))
        rescaled = float(_to_int32(F(transformed * inverse))) if truncate else _c_roundf(F(transformed * inverse))
        quantized = _to_int32(F(F(rescaled) + F(out_zp)))
        table[val & 0xFF] = min(max(quantized, -128), 127)
    return table


def _elu(x: np.float32) -> np.float32:
    # TFLM elu.cc: value < 0 ? std::exp(value) - 1.0f : value (float arithmetic)
    return F(F(math.exp(float(x))) - F(1.0)) if x < 0 else x


def _gelu(x: np.float32) -> np.float32:
    # TensorFlow Lite's GeluTransform: 0.5f * x * erfc(x * -M_SQRT1_2), in float
    t = F(x * F(-0.70710678118654752440))
    return F(F(F(0.5) * x) * F(math.erfc(float(t))))


_SQRT_2_OVER_PI = F(2.0 / math.sqrt(math.pi) * 0.70710678118654752440)


def _gelu_tanh(x: np.float32) -> np.float32:
    # GeluTransformApproximate: 0.5f * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715f * x^3))), in float
    cube = F(F(F(F(0.044715) * x) * x) * x)
    inner = F(_SQRT_2_OVER_PI * F(x + cube))
    return F(F(F(0.5) * x) * F(F(1.0) + F(math.tanh(float(inner)))))


def _build_lookup(transform_of, truncate: bool = False):
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        require_int8(graph, op, x_t, y_t)
        in_scale, in_zp = qparams(graph, op, x_t)
        out_scale, out_zp = qparams(graph, op, y_t)
        table = lookup_table(in_scale, in_zp, out_scale, out_zp, transform_of(op), truncate)
        xi, yi = op.inputs[0], op.outputs[0]

        def run(values):
            values[yi] = table[values[xi].view(np.uint8)]
        return run, {}
    return build


def _exp(x: np.float32) -> np.float32:
    # TensorFlow Lite's exp.cc: std::exp(value) in float (inf once it overflows)
    return F(math.exp(float(x))) if float(x) < 89.0 else F(np.inf)


def _log(x: np.float32) -> np.float32:
    # TensorFlow Lite's elementwise.cc: std::log(value) in float; log(0) = -inf, log(x < 0) = NaN
    v = float(x)
    return F(math.log(v)) if v > 0 else F(-np.inf) if v == 0 else F(np.nan)


def _sqrt(x: np.float32) -> np.float32:
    return F(math.sqrt(float(x))) if float(x) >= 0 else F(np.nan)


_sqrt_table = _build_lookup(lambda op: _sqrt, truncate=True)


def build_sqrt(graph: Graph, op: Operator):
    """int8 SQRT (squareplus), as TensorFlow Lite's interpreter (2.21) computes it: sqrt of the
    dequantized value in float, divided by the output scale and truncated, plus the zero point.
    That rule is measured, not read: it reproduces the interpreter's output on every input its
    table met in two models (tests/data/ops/tflite_layers.json), where rounding (the LUT rule of
    EXP and LOG) misses half of them. An input below its zero point (a negative value, NaN in
    float, an undefined conversion in C++) is refused when it occurs."""
    run_table, info = _sqrt_table(graph, op)
    xi = op.inputs[0]
    _, in_zp = qparams(graph, op, graph.tensors[xi])

    def run(values):
        if in_zp > -128 and (values[xi] < in_zp).any():
            raise err(graph, op, "an input below its zero point (negative): its square root is undefined")
        run_table(values)
    return run, info


build_elu = _build_lookup(lambda op: _elu)
build_exp = _build_lookup(lambda op: _exp)
build_log = _build_lookup(lambda op: _log)
build_gelu = _build_lookup(lambda op: _gelu_tanh if op.options.get("approximate", False) else _gelu)


def build_prelu(graph: Graph, op: Operator):
    """TFLM's int8 PRELU (prelu_common.cc, reference_ops::BroadcastPrelu4DSlow): x - zp >= 0 is
    rescaled by in_scale/out_scale, else (x - zp) * (alpha - alpha_zp) by
    in_scale*alpha_scale/out_scale (double multipliers, single rounding)."""
    x_t, a_t, y_t = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    require_int8(graph, op, x_t, a_t, y_t)
    in_scale, in_zp = qparams(graph, op, x_t)
    a_scale, a_zp = qparams(graph, op, a_t)
    out_scale, out_zp = qparams(graph, op, y_t)
    m1, s1 = quantize_multiplier(float(in_scale) / float(out_scale))
    m2, s2 = quantize_multiplier(float(in_scale) * float(a_scale) / float(out_scale))
    if a_t.data is None:
        raise err(graph, op, "alpha is not a constant")
    alpha = np.asarray(a_t.data).astype(np.int64) - a_zp
    rank = len(y_t.shape)
    alpha = per_sample(alpha[np.newaxis], rank)
    xi, yi = op.inputs[0], op.outputs[0]

    def requant(v, m, s):
        total = 31 - s
        return (v * m + (np.int64(1) << (total - 1))) >> total

    def run(values):
        x = per_sample(values[xi], rank).astype(np.int64) - in_zp
        pos = requant(x, m1, s1)
        neg = requant(x * alpha, m2, s2)
        values[yi] = np.clip(np.where(x >= 0, pos, neg) + out_zp, -128, 127).astype(np.int8)
    return run, {}



def build_float_unary(kind: str):
    """float32 element-wise kernels the converter leaves between a DEQUANTIZE and a QUANTIZE
    when it has no int8 version: ELU (expm1 for x < 0, TFLM's reference Elu), NEG and SQUARE
    (x * x in float: squareplus). The
    functions are evaluated in double and rounded to float (correctly rounded, as the C
    library's expm1f is)."""
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if x_t.dtype != "float32" or y_t.dtype != "float32":
            raise err(graph, op, f"only float32 or int8 tensors are supported, input is {x_t.dtype}")
        xi, yi = op.inputs[0], op.outputs[0]

        def run(values):
            x = values[xi]
            if kind == "neg":
                values[yi] = -x
            elif kind == "square":
                values[yi] = x * x
            else:
                values[yi] = np.where(x < 0, np.expm1(x.astype(np.float64)).astype(np.float32), x)
        return run, {}
    return build


def build_elu_any(graph: Graph, op: Operator):
    """ELU: int8 through the lookup table, float32 through expm1."""
    if graph.tensors[op.inputs[0]].dtype == "float32":
        return build_float_unary("elu")(graph, op)
    return build_elu(graph, op)
