"""Reference-kernel builders of the layers that compute indices or pick values rather than do
int8 arithmetic: TILE (Keras 3's UpSampling1D/2D nearest), and the index path of an Embedding
layer (CAST of the float input to int32, LESS and SELECT wrapping negative indices, int32 ADD,
GATHER with indices computed at run time), and the comparisons (int8 ones on a common scale,
as TFLM compares them)."""
from __future__ import annotations

import numpy as np

from simulator.graph import Graph, Operator
from simulator.kernels_ref import BYTE_VALUES
from simulator.quant_math import quantize_multiplier
from simulator.reference_ops.common import axis_of, const_data, err, per_sample, qparams

_NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
       "float32": np.float32, "bool": np.bool_}


def build_tile(graph: Graph, op: Operator):
    x_t = graph.tensors[op.inputs[0]]
    reps = [int(v) for v in const_data(graph, op, 1, "multiples").reshape(-1)]
    if len(reps) != len(x_t.shape):
        raise err(graph, op, f"{len(reps)} multiples for a rank-{len(x_t.shape)} input")
    reps_b = (1,) + tuple(reps)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.tile(values[xi], reps_b)
    return run, {}


def build_cast(graph: Graph, op: Operator):
    """CAST: float to integer truncates toward zero (static_cast), integers convert."""
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if x_t.dtype not in _NP or y_t.dtype not in _NP:
        raise err(graph, op, f"cast from {x_t.dtype} to {y_t.dtype} is not supported")
    dtype = _NP[y_t.dtype]
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        x = values[xi]
        if x.dtype.kind == "f" and np.dtype(dtype).kind in "iu":
            x = np.trunc(x)
        values[yi] = x.astype(dtype)
    return run, {}


def _same_scale(graph: Graph, op: Operator, tensors) -> None:
    """SELECT moves raw values: only integer and float inputs without quantization (or one
    shared quantization) are taken here."""
    qs = {(tuple(t.scale or ()), tuple(t.zero_point or ())) for t in tensors if t.dtype == "int8"}
    if len(qs) > 1:
        raise err(graph, op, "int8 inputs with different quantization are not supported")


_COMPARE = {"less": np.less, "less_equal": np.less_equal, "greater": np.greater,
            "greater_equal": np.greater_equal, "equal": np.equal, "not_equal": np.not_equal}


def _comparison_scale(graph: Graph, op: Operator, t) -> np.ndarray:
    """TFLM's int8 comparisons (comparisons.cc, reference_ops::*WithScaling) compare each input
    as ((x - zp) << 8) times its own scale (QuantizeMultiplierSmallerThanOneExp of the scale,
    single rounding): both inputs on one real axis in units of 1/256, so inputs of different
    quantization compare as their real values do, and reals less than about 1/256 apart can
    compare equal (even two int8 values of one quantization whose scale is below 1/256). The
    scaled value of each int8, indexed by its byte."""
    scale, zp = qparams(graph, op, t)
    if not 0.0 < scale < 1.0:
        raise err(graph, op, f"input scale {scale} is outside (0, 1): TFLite Micro refuses it")
    m, sh = quantize_multiplier(float(scale))
    v = (BYTE_VALUES.astype(np.int64) - zp) << 8
    total = 31 - sh
    return (v * m + (np.int64(1) << (total - 1))) >> total


def build_compare(kind: str):
    fn = _COMPARE[kind]

    def build(graph: Graph, op: Operator):
        a_t, b_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
        rank = len(y_t.shape)
        ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
        if a_t.dtype == "int8" or b_t.dtype == "int8":
            if a_t.dtype != b_t.dtype:
                raise err(graph, op, f"inputs of types {a_t.dtype} and {b_t.dtype}: TFLite Micro refuses this")
            ta, tb = _comparison_scale(graph, op, a_t), _comparison_scale(graph, op, b_t)

            def run(values):
                a = ta[per_sample(values[ai], rank).view(np.uint8)]
                b = tb[per_sample(values[bi], rank).view(np.uint8)]
                values[yi] = fn(a, b)
            return run, {}

        def run(values):
            values[yi] = fn(per_sample(values[ai], rank), per_sample(values[bi], rank))
        return run, {}
    return build


def build_select(graph: Graph, op: Operator):
    """SELECT / SELECT_V2: condition ? x : y, broadcasting."""
    c_t, a_t, b_t, y_t = (graph.tensors[i] for i in (*op.inputs[:3], op.outputs[0]))
    _same_scale(graph, op, (a_t, b_t, y_t))
    rank = len(y_t.shape)
    ci, ai, bi, yi = op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[0]

    def run(values):
        values[yi] = np.where(per_sample(values[ci], rank), per_sample(values[ai], rank),
                              per_sample(values[bi], rank))
    return run, {}


def build_plain_add_sub(kind: str):
    """ADD / SUB on int32 tensors (index arithmetic: plain wrapping integer arithmetic) or on
    float32 ones (left between a DEQUANTIZE and a QUANTIZE, as in sparsemax: IEEE float)."""
    def build(graph: Graph, op: Operator):
        a_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        act = op.options.get("fused_activation_function", "none")
        if act != "none":
            raise err(graph, op, f"{y_t.dtype} {kind} with a fused {act} is not supported")
        rank = len(y_t.shape)
        ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]
        sign = 1 if kind == "add" else -1
        if y_t.dtype == "float32":
            fn = np.add if kind == "add" else np.subtract

            def run(values):
                values[yi] = fn(per_sample(values[ai], rank), per_sample(values[bi], rank), dtype=np.float32)
            return run, {}

        def run(values):
            a = per_sample(values[ai], rank).astype(np.int64)
            b = per_sample(values[bi], rank).astype(np.int64)
            values[yi] = (a + sign * b).astype(np.int32)
        return run, {}
    return build


def build_topk(graph: Graph, op: Operator):
    """TOPK_V2 (sparsemax's sort): the k largest values of the last axis, largest first, equal
    values in the order of their index (TensorFlow Lite's TopContainer; the vendor's TFLite
    Micro has no TOPK_V2), and their int32 indices; int8 values move as they are."""
    x_t = graph.tensors[op.inputs[0]]
    k = int(const_data(graph, op, 1, "k").reshape(-1)[0])
    if not 0 <= k <= x_t.shape[-1]:
        raise err(graph, op, f"k = {k} outside the last axis' {x_t.shape[-1]} values")
    xi, vi, ii = op.inputs[0], op.outputs[0], op.outputs[1]

    def run(values):
        x = values[xi]
        order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[..., :k]
        values[vi] = np.take_along_axis(x, order, axis=-1)
        values[ii] = order.astype(np.int32)
    return run, {}


def build_gather(graph: Graph, op: Operator):
    """GATHER: constant indices move data (`shape.build_gather`); indices computed per sample (an
    Embedding's lookup) pick rows of a constant table. TFLM fails the inference on an index
    outside the table, so the emulator refuses it too."""
    from simulator.reference_ops.shape import build_gather as build_constant_gather
    if graph.tensors[op.inputs[1]].data is not None:
        return build_constant_gather(graph, op)
    x_t = graph.tensors[op.inputs[0]]
    if op.options.get("batch_dims", 0) or op.options.get("axis", 0) != 0:
        raise err(graph, op, "gather with computed indices on an axis other than 0 is not supported")
    if x_t.data is None:
        raise err(graph, op, "gather from a computed tensor with computed indices is not supported")
    table = np.asarray(x_t.data)
    n = table.shape[0]
    ii, yi = op.inputs[1], op.outputs[0]

    def run(values):
        idx = values[ii].astype(np.int64)       # (B, *index shape): the batch axis stays first
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise err(graph, op, f"an index outside 0..{n - 1} (TFLite Micro fails the inference)")
        values[yi] = np.take(table, idx, axis=0)
    return run, {}


def build_add_sub(kind: str):
    """ADD / SUB: int32 and float32 operands add plainly, int8 ones go to TFLM's quantized
    kernel (`elementwise.build_add_sub`)."""
    from simulator.reference_ops.elementwise import build_add_sub as build_int8
    int8 = build_int8(kind)
    plain = build_plain_add_sub(kind)

    def build(graph: Graph, op: Operator):
        if graph.tensors[op.outputs[0]].dtype in ("int32", "float32"):
            return plain(graph, op)
        return int8(graph, op)
    return build
