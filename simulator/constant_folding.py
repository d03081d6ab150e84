"""Constant folding for the emulator: shape-only sub-graphs evaluated once at compile time.

The converter leaves small int32 sub-graphs (SHAPE, STRIDED_SLICE, PACK, ... on shapes) that
feed RESHAPE and friends; `fold_constant` evaluates them once so that no inference pays for
them. Constants are kept without a batch axis.
"""
from __future__ import annotations

import numpy as np

from simulator.errors import ModelError
from simulator.graph import Graph, Operator

NP_DTYPES = {"int8": np.int8, "float32": np.float32, "int32": np.int32, "int64": np.int64,
             "uint8": np.uint8, "int16": np.int16, "bool": np.bool_}


def fold_constant(graph: Graph, op: Operator, constants: dict) -> bool:
    """Evaluates a shape-only op (SHAPE and int32 arithmetic on constants) into `constants`;
    False when the op is not one of them or has non-constant inputs."""
    if op.opcode == "shape":
        t = graph.tensors[op.inputs[0]]
        out_t = graph.tensors[op.outputs[0]]
        constants[op.outputs[0]] = np.array(t.shape, dtype=NP_DTYPES.get(out_t.dtype, np.int32))
        return True
    if op.opcode not in _FOLDABLE:
        return False
    if not all(i < 0 or i in constants for i in op.inputs):
        return False
    ins = [constants[i] if i >= 0 else None for i in op.inputs]
    out_t = graph.tensors[op.outputs[0]]
    if op.opcode in _ARITHMETIC and any(_quantized(graph.tensors[i]) for i in (*op.inputs, *op.outputs)
                                        if i >= 0):
        return False   # quantized arithmetic: the reference kernels compute it
    try:
        result = _FOLDABLE[op.opcode](op, ins, out_t)
        if result is None:
            return False
        constants[op.outputs[0]] = (np.asarray(result).astype(NP_DTYPES.get(out_t.dtype, np.int32))
                                    .reshape(out_t.shape))
    except (ValueError, IndexError, TypeError, OverflowError) as e:    # constants a corrupt file made up
        raise ModelError(f"{graph.name}: layer {op.index} ({op.opcode}): its constant inputs do not give "
                         f"its output {list(out_t.shape)} ({str(e).splitlines()[0][:120]})") from None
    return True


def _quantized(t) -> bool:
    return t.dtype.startswith("float") or (t.scale is not None and len(t.scale) > 0)


_ARITHMETIC = ("mul", "add", "sub", "fill")


def strided_slices(op: Operator, begin, end, strides) -> tuple[tuple, tuple]:
    """STRIDED_SLICE's options as Python slices (and the axes shrink_axis_mask drops)."""
    o = op.options
    slices = []
    shrink = []
    for d in range(len(begin)):
        b = None if (o.get("begin_mask", 0) >> d) & 1 else int(begin[d])
        e = None if (o.get("end_mask", 0) >> d) & 1 else int(end[d])
        if (o.get("shrink_axis_mask", 0) >> d) & 1:
            e = b + 1 if b not in (None, -1) else None
            shrink.append(d)
        slices.append(slice(b, e, int(strides[d])))
    return tuple(slices), tuple(shrink)


def _fold_strided_slice(op, ins, out_t):
    slices, shrink = strided_slices(op, ins[1], ins[2], ins[3])
    r = ins[0][slices]
    return np.squeeze(r, axis=shrink) if shrink else r


_FOLDABLE = {
    "strided_slice": _fold_strided_slice,
    "pack": lambda op, ins, t: np.stack(ins, axis=op.options.get("axis", 0)),
    "reshape": lambda op, ins, t: ins[0].reshape(t.shape),
    "concatenation": lambda op, ins, t: np.concatenate(ins, axis=op.options.get("axis", 0)),
    "gather": lambda op, ins, t: np.take(ins[0], ins[1], axis=op.options.get("axis", 0)),
    "cast": lambda op, ins, t: ins[0],
    "mul": lambda op, ins, t: ins[0] * ins[1],
    "add": lambda op, ins, t: ins[0] + ins[1],
    "sub": lambda op, ins, t: ins[0] - ins[1],
    "fill": lambda op, ins, t: np.full([int(v) for v in ins[0]], ins[1].reshape(-1)[0]),
}
