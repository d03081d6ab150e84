"""Reference-kernel builders of the layers that move int8 values without arithmetic: RESHAPE,
SQUEEZE, EXPAND_DIMS, PAD/PADV2, CONCATENATION, TRANSPOSE, STRIDED_SLICE, PACK, UNPACK, SPLIT,
SPLIT_V and GATHER (per-sample axes, shifted by one for the batch axis)."""
from __future__ import annotations

import numpy as np

from simulator.constant_folding import strided_slices
from simulator.graph import Graph, Operator
from simulator.reference_ops.common import axis_of, const_data, err, per_sample, qparams


def _common_batch(vs: list[np.ndarray], rank: int) -> list[np.ndarray]:
    vs = [per_sample(v, rank) for v in vs]
    nb = max(v.shape[0] for v in vs)
    return [v if v.shape[0] == nb else np.broadcast_to(v, (nb,) + v.shape[1:]) for v in vs]


def build_reshape(graph: Graph, op: Operator):
    shape = tuple(graph.tensors[op.outputs[0]].shape)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = values[xi].reshape((-1,) + shape)
    return run, {}


def build_pad(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    widths = [(0, 0)] + [(int(a), int(b)) for a, b in const_data(graph, op, 1, "paddings").reshape(-1, 2)]
    if len(widths) != len(x_t.shape) + 1:
        raise err(graph, op, f"{len(widths) - 1} paddings for a rank-{len(x_t.shape)} input")
    if y_t.dtype == "int8":
        _, value = qparams(graph, op, y_t)
    elif y_t.dtype == "float32":
        value = 0.0
    else:
        raise err(graph, op, f"only int8 and float32 tensors are supported, output is {y_t.dtype}")
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = const_data(graph, op, 2, "pad values").reshape(-1)[0]
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.pad(values[xi], widths, mode="constant", constant_values=value)
    return run, {}


def build_concat(graph: Graph, op: Operator):
    y_t = graph.tensors[op.outputs[0]]
    rank = len(y_t.shape)
    axis = axis_of(op.options.get("axis", 0), rank)
    act = op.options.get("fused_activation_function", "none")
    if act != "none":
        raise err(graph, op, f"fused activation {act} is not supported")
    idx, yi = list(op.inputs), op.outputs[0]

    def run(values):
        values[yi] = np.concatenate(_common_batch([values[i] for i in idx], rank), axis=axis)
    return run, {}


def build_transpose(graph: Graph, op: Operator):
    perm = [int(p) for p in const_data(graph, op, 1, "permutations").reshape(-1)]
    axes = (0,) + tuple(p + 1 for p in perm)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.ascontiguousarray(values[xi].transpose(axes))
    return run, {}


def build_strided_slice(graph: Graph, op: Operator):
    o = op.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0) or o.get("offset", False):
        raise err(graph, op, "ellipsis, new-axis and offset strided slices are not supported")
    slices, shrink = strided_slices(op, const_data(graph, op, 1, "begin indices"),
                                    const_data(graph, op, 2, "end indices"),
                                    const_data(graph, op, 3, "strides"))
    index = (slice(None),) + slices
    shape = tuple(graph.tensors[op.outputs[0]].shape)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.ascontiguousarray(values[xi][index]).reshape((-1,) + shape)
    return run, {}


def build_pack(graph: Graph, op: Operator):
    x_t = graph.tensors[op.inputs[0]]
    axis = axis_of(op.options.get("axis", 0), len(x_t.shape) + 1)
    idx, yi = list(op.inputs), op.outputs[0]

    def run(values):
        values[yi] = np.stack(_common_batch([values[i] for i in idx], len(x_t.shape)), axis=axis)
    return run, {}


def build_unpack(graph: Graph, op: Operator):
    x_t = graph.tensors[op.inputs[0]]
    axis = axis_of(op.options.get("axis", 0), len(x_t.shape))
    xi, outs = op.inputs[0], list(op.outputs)

    def run(values):
        x = values[xi]
        for k, yi in enumerate(outs):
            values[yi] = np.ascontiguousarray(np.take(x, k, axis=axis))
    return run, {}


def build_split(graph: Graph, op: Operator):
    """SPLIT (inputs: axis, value) and SPLIT_V (inputs: value, size_splits, axis)."""
    if op.opcode == "split":
        axis_pos, xi = 0, op.inputs[1]
    else:
        axis_pos, xi = 2, op.inputs[0]
    x_t = graph.tensors[xi]
    axis = axis_of(int(const_data(graph, op, axis_pos, "axis").reshape(-1)[0]), len(x_t.shape))
    sizes = [graph.tensors[i].shape[axis - 1] for i in op.outputs]
    bounds = np.cumsum(sizes)[:-1]
    outs = list(op.outputs)

    def run(values):
        for yi, part in zip(outs, np.split(values[xi], bounds, axis=axis)):
            values[yi] = np.ascontiguousarray(part)
    return run, {}


def build_gather(graph: Graph, op: Operator):
    x_t = graph.tensors[op.inputs[0]]
    if op.options.get("batch_dims", 0):
        raise err(graph, op, "gather with batch_dims is not supported")
    indices = const_data(graph, op, 1, "indices").astype(np.int64)
    axis = axis_of(op.options.get("axis", 0), len(x_t.shape))
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.take(values[xi], indices, axis=axis)
    return run, {}
