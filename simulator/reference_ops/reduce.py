"""Reference-kernel builders of the layers that reduce windows or axes: average and max pooling,
MEAN, SUM, REDUCE_MAX and REDUCE_MIN (TFLM's int8 reduce kernels, C integer division), and float32
CUMSUM."""
from __future__ import annotations

import numpy as np

from simulator import kernels_ref as K
from simulator.graph import Graph, Operator
from simulator.quant_math import activation_range, quantize_multiplier
from simulator.reference_ops.common import (
    axis_of, const_data, err, qparams, require_int8, require_same_quantization, same_pad,
)


def build_pool(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        require_int8(graph, op, x_t, y_t)
        o = op.options
        _, h, w, _ = x_t.shape
        _, out_h, out_w, _ = y_t.shape
        fh, fw = o.get("filter_height", 1), o.get("filter_width", 1)
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        pad_t = same_pad(o.get("padding", "valid"), sh, 1, h, fh, out_h)
        pad_l = same_pad(o.get("padding", "valid"), sw, 1, w, fw, out_w)
        out_scale, out_zp = qparams(graph, op, y_t)
        act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
        fn = K.average_pool if kind == "avg" else K.max_pool
        xi, yi = op.inputs[0], op.outputs[0]
        shape = tuple(y_t.shape)
        in_shape = (-1,) + tuple(x_t.shape[1:])

        def run(values):
            values[yi] = fn(values[xi].reshape(in_shape), fh, fw, sh, sw, pad_t, pad_l, out_h, out_w,
                            act_min, act_max).reshape((-1,) + shape)
        return run, {}
    return build


def _axes(graph: Graph, op: Operator, rank: int) -> list[int]:
    """The reduced per-sample axes, deduplicated, in order."""
    axes: list[int] = []
    for a in const_data(graph, op, 1, "axes").reshape(-1):
        a = int(a) + rank if int(a) < 0 else int(a)
        if not 0 <= a < rank:
            raise err(graph, op, f"axis {a} is out of range for rank {rank}")
        if a not in axes:
            axes.append(a)
    return axes


def _reduction(graph: Graph, op: Operator):
    """What MEAN and SUM read alike: the int8 input's and output's quantization, the elements per
    output (`count`) and the reduced axes of a batch (one past each per-sample axis)."""
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    require_int8(graph, op, x_t, y_t)
    axes = _axes(graph, op, len(x_t.shape))
    (in_scale, in_zp), (out_scale, out_zp) = qparams(graph, op, x_t), qparams(graph, op, y_t)
    count = int(np.prod([x_t.shape[a] for a in axes])) if axes else 1
    return (in_scale, in_zp, out_scale, out_zp, count, op.inputs[0], op.outputs[0], tuple(y_t.shape),
            tuple(a + 1 for a in axes))


def build_mean(graph: Graph, op: Operator):
    in_scale, in_zp, out_scale, out_zp, count, xi, yi, shape, batch_axes = _reduction(graph, op)
    # every int8 mean takes one integer path in the vendor's TFLM (no 4-D special case, no float
    # rescale): measured against the oracle on tests/data/corpus2/add_1x1x32 and add_1x1x96, where
    # reference_integer_ops::Mean's separate rounding of the division was 1 step off
    m, sh = quantize_multiplier(float(in_scale) / float(out_scale))

    def run(values):
        sums = values[xi].astype(np.int64).sum(axis=batch_axes).reshape(-1)
        values[yi] = K.quantized_mean(sums, count, in_zp, m, sh, out_zp).reshape((-1,) + shape)
    return run, {}


def build_sum(graph: Graph, op: Operator):
    """TFLM's int8 SUM (reference_ops::QuantizedMeanOrSum with compute_sum): the int32 sum of the
    raw values rescaled in float, C round, plus the output zero point."""
    in_scale, in_zp, out_scale, out_zp, count, xi, yi, shape, batch_axes = _reduction(graph, op)
    scale = float(np.float32(in_scale) / np.float32(out_scale))

    def run(values):
        sums = values[xi].astype(np.int32).sum(axis=batch_axes, dtype=np.int32).reshape(-1)
        values[yi] = K.mean_float_rescale(sums, count, in_zp, scale, out_zp, True).reshape((-1,) + shape)
    return run, {}


def build_reduce_extreme(kind: str):
    """REDUCE_MAX / REDUCE_MIN: TFLM requires the input's and output's quantization to be equal
    and takes the extreme of the int8 values."""
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        require_int8(graph, op, x_t, y_t)
        require_same_quantization(graph, op, x_t, y_t)
        batch_axes = tuple(a + 1 for a in _axes(graph, op, len(x_t.shape)))
        fn = np.max if kind == "max" else np.min
        xi, yi = op.inputs[0], op.outputs[0]
        shape = tuple(y_t.shape)

        def run(values):
            values[yi] = fn(values[xi], axis=batch_axes).astype(np.int8).reshape((-1,) + shape)
        return run, {}
    return build


def build_cumsum(graph: Graph, op: Operator):
    """CUMSUM on float32 (sparsemax's running sum, between a DEQUANTIZE and a QUANTIZE): a
    running float32 sum along the axis, in order (TensorFlow Lite's reference loop), optionally
    exclusive and/or reversed."""
    x_t = graph.tensors[op.inputs[0]]
    if x_t.dtype != "float32":
        raise err(graph, op, f"only float32 CUMSUM is supported, the input is {x_t.dtype}")
    axis = int(const_data(graph, op, 1, "axis").reshape(-1)[0])
    ax = axis_of(axis, len(x_t.shape))
    exclusive, reverse = bool(op.options.get("exclusive", False)), bool(op.options.get("reverse", False))
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        x = np.flip(values[xi], axis=ax) if reverse else values[xi]
        y = np.cumsum(x, axis=ax, dtype=np.float32)
        if exclusive:
            y = np.concatenate([np.zeros_like(np.take(y, [0], axis=ax)), np.delete(y, -1, axis=ax)], axis=ax)
        values[yi] = np.flip(y, axis=ax) if reverse else y
    return run, {}
