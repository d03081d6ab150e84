"""What every reference-kernel builder shares: error messages naming the layer, quantization
parameters, window padding (TFLM's rules), and the batch-axis conventions.

Values carry a leading batch axis: an activation of per-sample shape S is (B, *S), a constant is
(1, *S) and broadcasts. `per_sample` lines two operands up for numpy broadcasting of their
per-sample shapes (TFLite's rule: trailing dimensions align).
"""
from __future__ import annotations

import numpy as np

from simulator.errors import ModelError
from simulator.graph import Graph, Operator, Tensor


def err(graph: Graph, op: Operator, msg: str) -> ModelError:
    return ModelError(f"{graph.name}: layer {op.index} ({op.opcode}): {msg}")


def qparams(graph: Graph, op: Operator, t: Tensor) -> tuple[float, int]:
    if t.scale is None or len(t.scale) == 0:
        raise err(graph, op, f"tensor {t.name!r} has no quantization parameters")
    zp = int(t.zero_point[0]) if t.zero_point is not None and len(t.zero_point) else 0
    return float(t.scale[0]), zp


def require_int8(graph: Graph, op: Operator, *tensors: Tensor) -> None:
    for t in tensors:
        if t.dtype != "int8":
            raise err(graph, op, f"only int8 tensors are supported, {t.name!r} is {t.dtype}")


def require_same_quantization(graph: Graph, op: Operator, a: Tensor, b: Tensor) -> None:
    """TFLM's ops that move int8 values without rescaling check this in Prepare."""
    if qparams(graph, op, a) != qparams(graph, op, b):
        raise err(graph, op, f"{a.name!r} and {b.name!r} have different quantization; "
                             "TFLite Micro refuses this operator")


def const_data(graph: Graph, op: Operator, pos: int, what: str) -> np.ndarray:
    i = op.inputs[pos] if len(op.inputs) > pos else -1
    data = graph.tensors[i].data if i >= 0 else None
    if data is None:
        raise err(graph, op, f"{what} are not constant")
    return np.asarray(data)


def bias(graph: Graph, op: Operator, idx: int, channels: int) -> np.ndarray:
    if idx < 0 or len(op.inputs) <= idx or op.inputs[idx] < 0:
        return np.zeros(channels, dtype=np.int32)
    b = graph.tensors[op.inputs[idx]].data
    if b is None:
        raise err(graph, op, "bias is not a constant")
    return np.ascontiguousarray(b.reshape(-1).astype(np.int32))


def same_pad(padding: str, stride: int, dilation: int, in_size: int, filter_size: int,
             out_size: int) -> int:
    """TFLM's ComputePaddingWithOffset: the leading padding for the given output size."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2 if padding == "same" else 0


def out_size(padding: str, stride: int, dilation: int, in_size: int, filter_size: int) -> int:
    effective = (filter_size - 1) * dilation + 1
    if padding == "same":
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def axis_of(axis: int, rank: int) -> int:
    """A (possibly negative) per-sample axis as an axis of the batched array."""
    return (axis + rank if axis < 0 else axis) + 1


def per_sample(v: np.ndarray, rank: int) -> np.ndarray:
    """v (batch axis first) with its per-sample shape padded to `rank` on the left."""
    extra = rank - (v.ndim - 1)
    return v.reshape((v.shape[0],) + (1,) * extra + v.shape[1:]) if extra > 0 else v


def broadcast_flat(a: np.ndarray, b: np.ndarray, out_shape) -> tuple[np.ndarray, np.ndarray, int]:
    """Two operands broadcast to (B, *out_shape), flattened; and B."""
    rank = len(out_shape)
    a, b = per_sample(a, rank), per_sample(b, rank)
    nb = max(a.shape[0], b.shape[0])
    shape = (nb,) + tuple(out_shape)
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    if b.shape != shape:
        b = np.broadcast_to(b, shape)
    return np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), nb


def flat(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v).reshape(-1)
