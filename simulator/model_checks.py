"""The structural checks a read model must pass before any later stage touches it.

The reader (`tflite_reader`) turns bytes into a `Graph`; this module decides whether that graph
can be a model at all, so that the profiler, the arena planner and the emulator may rely on it:
every tensor index in range (-1 only where TFLite allows an omitted optional input), operators in
an order that computes each tensor before it is read (so none reads its own output), constant
operands present with exactly the bytes their shape needs, finite positive scales, strides,
dilations and window sizes >= 1, and output shapes that follow from the input shapes. A model
that breaks any of them is corrupt: `ModelError` with one line naming the tensor or layer.

The memory bound (`MEMORY_MARGIN`) refuses a tensor no board can hold, before anything is
allocated for it: a model is still profiled when it is somewhat too large for the board (the
profile says by how much), but a tensor that needs more than MEMORY_MARGIN times the board's
RAM (activations) can only come from a corrupt or hostile file.
"""
from __future__ import annotations

import math

import numpy as np

from simulator.errors import ModelError
from simulator.graph import DTYPE_BYTES, Graph, Operator, Tensor
from simulator.hardware import DEFAULT_DEVICE, device

# How far past the board's RAM an activation may go and still be profiled ("too large by 3x" is
# an answer a user wants; 2^31 elements is not a model).
MEMORY_MARGIN = 8
# All activations together (the emulator holds every one of them at once): past this, a file with
# many tensors each under the bound above is still no model for the board.
TOTAL_MEMORY_MARGIN = 64
# Strides, dilations and window sizes beyond the reader's largest dimension mean nothing.
MAX_WINDOW = 1 << 24

# Optional inputs TFLite may leave out (-1), by operator; every other input must be a tensor.
_OPTIONAL_INPUTS = {"conv_2d": {2}, "depthwise_conv_2d": {2}, "fully_connected": {2},
                    "transpose_conv": {3}, "padv2": {2}}
# Inputs the kernels read as constants (weights, biases), by operator.
_CONSTANT_INPUTS = {"conv_2d": (1, 2), "depthwise_conv_2d": (1, 2), "fully_connected": (1, 2),
                    "transpose_conv": (0, 1, 3)}
_WINDOW_OPS = ("conv_2d", "depthwise_conv_2d", "average_pool_2d", "max_pool_2d")
_SAME_ELEMENTS = ("softmax", "logistic", "tanh", "relu", "relu6", "relu_n1_to_1", "leaky_relu",
                  "quantize", "dequantize", "reshape", "squeeze", "expand_dims", "hard_swish")
_QUANTIZED = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def _label(t: Tensor) -> str:
    """A tensor's name, short enough for a one-line message (converter names run to 200 chars)."""
    return t.name if len(t.name) <= 40 else t.name[:18] + "..." + t.name[-18:]


def activation_bytes_limit(board: str = DEFAULT_DEVICE) -> int:
    """The largest activation tensor a model may have: MEMORY_MARGIN x the board's RAM."""
    return MEMORY_MARGIN * device(board).ram_bytes


def check_total_size(where: str, graph: Graph) -> None:
    """Refuses a graph whose activations together exceed TOTAL_MEMORY_MARGIN x the board's RAM."""
    total = sum(t.size_bytes for t in graph.tensors if not t.is_constant)
    limit = TOTAL_MEMORY_MARGIN * device().ram_bytes
    if total > limit:
        raise ModelError(f"{where}: its activations need {total:,} bytes together, more than "
                         f"{TOTAL_MEMORY_MARGIN}x the board's {device().ram_bytes // 1024} KB RAM "
                         f"({limit:,} bytes): not a model for this board")


def check_tensor_size(where: str, i: int, shape: tuple, dtype: str, constant: bool) -> None:
    """Refuses an activation no board could hold, before its size is used for anything."""
    n = 1
    for d in shape:
        n *= d
    limit = activation_bytes_limit()
    nbytes = n * DTYPE_BYTES.get(dtype, 1)
    if not constant and nbytes > limit:
        ram = device().ram_bytes
        raise ModelError(f"{where}: tensor {i} {list(shape)} {dtype} needs {nbytes:,} bytes, more than "
                         f"{MEMORY_MARGIN}x the board's {ram // 1024} KB RAM ({limit:,} bytes): "
                         "not a model for this board")


def check_buffer(where: str, t: Tensor, nbytes: int, itemsize: int | None) -> None:
    """A constant's buffer must hold exactly the bytes its shape needs."""
    if itemsize is not None and nbytes != t.n_elements * itemsize:
        raise ModelError(f"{where}: tensor {t.index} ({_label(t)}) {list(t.shape)} {t.dtype} needs "
                         f"{t.n_elements * itemsize:,} bytes of data, its buffer has {nbytes:,}")


def check_quantization(where: str, t: Tensor) -> None:
    """Scales finite and positive; one per tensor or one per channel of the quantized dimension;
    zero points in the range of the tensor's type."""
    if t.scale is None or not len(t.scale):
        return
    what = f"{where}: tensor {t.index} ({_label(t)})"
    bad = [float(s) for s in t.scale if not (math.isfinite(float(s)) and float(s) > 0)]
    if bad:
        raise ModelError(f"{what}: quantization scale {bad[0]} is not a finite positive number")
    n = len(t.scale)
    if n > 1:
        if not 0 <= t.quantized_dim < len(t.shape) or t.shape[t.quantized_dim] != n:
            raise ModelError(f"{what}: {n} per-channel scales do not match dimension "
                             f"{t.quantized_dim} of shape {list(t.shape)}")
    if t.zero_point is not None and len(t.zero_point):
        if len(t.zero_point) not in (1, n):
            raise ModelError(f"{what}: {len(t.zero_point)} zero points for {n} scales")
        lo, hi = _QUANTIZED.get(t.dtype, (-(1 << 31), (1 << 31) - 1))
        if t.dtype == "int32":
            lo, hi = 0, 0       # biases: symmetric by TFLite's quantization spec
        out = [int(z) for z in t.zero_point if not lo <= int(z) <= hi]
        if out:
            raise ModelError(f"{what}: zero point {out[0]} is outside {lo}..{hi} for {t.dtype}")


def check_graph(graph: Graph, where: str) -> None:
    """Raises ModelError for the first structural fault of the graph (see the module docstring)."""
    check_total_size(where, graph)
    produced: dict[int, int] = {}
    for k, i in enumerate(graph.inputs):
        if i < 0:
            raise ModelError(f"{where}: model input {k} is not a tensor (index {i})")
        if graph.tensors[i].is_constant:
            raise ModelError(f"{where}: model input {k} (tensor {i}) is a constant")
        produced[i] = -1
    for k, i in enumerate(graph.outputs):
        if i < 0:
            raise ModelError(f"{where}: model output {k} is not a tensor (index {i})")
    for op in graph.operators:
        lw = f"{where}: layer {op.index} ({op.opcode})"
        if not op.outputs:
            raise ModelError(f"{lw}: has no output tensor")
        for key, value in op.options.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ModelError(f"{lw}: option {key} = {value} is not a finite number")
        optional = _OPTIONAL_INPUTS.get(op.opcode, set())
        recurrent = "lstm" in op.opcode or "rnn" in op.opcode
        for pos, i in enumerate(op.inputs):
            if i < 0:
                if pos in optional or recurrent:
                    continue
                raise ModelError(f"{lw}: input {pos} is missing (tensor index {i})")
            t = graph.tensors[i]
            if i in op.outputs:
                raise ModelError(f"{lw}: reads its own output (tensor {i})")
            if pos in _CONSTANT_INPUTS.get(op.opcode, ()) and not t.is_constant:
                what = "output shape" if pos == 0 else "weights" if pos == 1 else "bias"
                raise ModelError(f"{lw}: {what} (tensor {i}, {_label(t)}) has no data")
            if not (t.is_constant or t.is_variable or i in produced):
                raise ModelError(f"{lw}: input {pos} (tensor {i}) is computed by no earlier layer")
        for pos, i in enumerate(op.outputs):
            if i < 0:
                raise ModelError(f"{lw}: output {pos} is not a tensor (index {i})")
            if i in produced:
                first = produced[i]
                raise ModelError(f"{lw}: output {pos} (tensor {i}) is already "
                                 + ("a model input" if first < 0 else f"computed by layer {first}"))
            if graph.tensors[i].is_constant:
                raise ModelError(f"{lw}: output {pos} (tensor {i}) is a constant")
            produced[i] = op.index
        _check_operands(graph, op, lw)
    for k, i in enumerate(graph.outputs):
        if i not in produced and not graph.tensors[i].is_constant:
            raise ModelError(f"{where}: model output {k} (tensor {i}) is computed by no layer")


def _shape(graph: Graph, i: int) -> tuple:
    return graph.tensors[i].shape


def _check_operands(graph: Graph, op: Operator, lw: str) -> None:
    ins = op.inputs
    if op.opcode in _WINDOW_OPS:
        _check_window(graph, op, lw)
    elif op.opcode == "fully_connected" and len(ins) >= 2:
        x, w, y = (graph.tensors[ins[0]], graph.tensors[ins[1]], graph.tensors[op.outputs[0]])
        if len(w.shape) != 2 or w.shape[1] < 1:
            raise ModelError(f"{lw}: weights have shape {list(w.shape)}, expected [units, depth]")
        units, depth = w.shape
        if x.n_elements % depth:
            raise ModelError(f"{lw}: input of {x.n_elements} elements is not a whole number of rows "
                             f"of {depth}")
        if y.n_elements != x.n_elements // depth * units:
            raise ModelError(f"{lw}: output {list(y.shape)} does not hold {x.n_elements // depth} rows "
                             f"of {units} units")
        _check_bias(graph, op, lw, 2, units)
    elif op.opcode in ("add", "sub", "mul") and len(ins) >= 2:
        try:
            shape = np.broadcast_shapes(_shape(graph, ins[0]), _shape(graph, ins[1]))
        except ValueError:
            raise ModelError(f"{lw}: inputs {list(_shape(graph, ins[0]))} and {list(_shape(graph, ins[1]))} "
                             "do not broadcast") from None
        if math.prod(shape) != graph.tensors[op.outputs[0]].n_elements:
            raise ModelError(f"{lw}: output {list(_shape(graph, op.outputs[0]))} does not match the "
                             f"inputs' broadcast shape {list(shape)}")
    elif op.opcode in _SAME_ELEMENTS and ins:
        x, y = graph.tensors[ins[0]], graph.tensors[op.outputs[0]]
        if x.n_elements != y.n_elements:
            raise ModelError(f"{lw}: output {list(y.shape)} has {y.n_elements} elements, its input "
                             f"{list(x.shape)} {x.n_elements}")
    elif op.opcode == "concatenation" and ins:
        _check_concat(graph, op, lw)
    elif op.opcode in ("pad", "padv2") and len(ins) >= 2:
        x, p, y = (graph.tensors[ins[0]], graph.tensors[ins[1]], graph.tensors[op.outputs[0]])
        if p.is_constant:
            widths = np.asarray(p.data).reshape(-1)
            if widths.size != 2 * len(x.shape) or (widths < 0).any() or list(y.shape) != [
                    int(d + widths[2 * k] + widths[2 * k + 1]) for k, d in enumerate(x.shape)]:
                raise ModelError(f"{lw}: paddings {widths.tolist()} do not take {list(x.shape)} to "
                                 f"{list(y.shape)}")


def _check_window(graph: Graph, op: Operator, lw: str) -> None:
    o = op.options
    for key in ("stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor",
                "filter_height", "filter_width", "depth_multiplier"):
        if key in o and not (isinstance(o[key], int) and 1 <= o[key] <= MAX_WINDOW):
            raise ModelError(f"{lw}: {key} = {o[key]} (must be from 1 to {MAX_WINDOW})")
    if o.get("padding") not in ("same", "valid"):
        raise ModelError(f"{lw}: padding {o.get('padding')!r} is neither same nor valid")
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise ModelError(f"{lw}: input {list(x.shape)} and output {list(y.shape)} must have rank 4")
    if op.opcode in ("conv_2d", "depthwise_conv_2d"):
        w = graph.tensors[op.inputs[1]]
        if len(w.shape) != 4:
            raise ModelError(f"{lw}: weights {list(w.shape)} must have rank 4")
        kh, kw = w.shape[1], w.shape[2]
        if op.opcode == "conv_2d":
            oc, ic = w.shape[0], w.shape[3]
            if ic < 1 or x.shape[3] % ic:
                raise ModelError(f"{lw}: input depth {x.shape[3]} is not a multiple of the weights' "
                                 f"depth {ic}")
        else:
            oc = w.shape[3]
            if x.shape[3] < 1 or oc % x.shape[3]:
                raise ModelError(f"{lw}: weights' {oc} channels are not a multiple of the input "
                                 f"depth {x.shape[3]}")
        if y.shape[3] != oc:
            raise ModelError(f"{lw}: output depth {y.shape[3]} is not the weights' {oc} channels")
        if w.scale is not None and len(w.scale) not in (1, oc):
            raise ModelError(f"{lw}: {len(w.scale)} weight scales for {oc} channels")
        _check_bias(graph, op, lw, 2, oc)
        dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    else:
        kh, kw, dh, dw = o.get("filter_height", 1), o.get("filter_width", 1), 1, 1
        if y.shape[3] != x.shape[3]:
            raise ModelError(f"{lw}: output depth {y.shape[3]} is not the input's {x.shape[3]}")
    if kh < 1 or kw < 1:
        raise ModelError(f"{lw}: window {kh}x{kw} is empty")
    want = [x.shape[0]]
    for size, k, s, d in ((x.shape[1], kh, o.get("stride_h", 1), dh), (x.shape[2], kw, o.get("stride_w", 1), dw)):
        effective = (k - 1) * d + 1
        want.append(-(-size // s) if o["padding"] == "same" else -(-(size - effective + 1) // s))
    if want != list(y.shape[:3]) or min(want) < 1:
        raise ModelError(f"{lw}: output {list(y.shape)} does not follow from input {list(x.shape)}, "
                         f"a {kh}x{kw} window, strides {o.get('stride_h', 1)}x{o.get('stride_w', 1)} and "
                         f"{o['padding']} padding (expected {want + [y.shape[3]]})")


def _check_bias(graph: Graph, op: Operator, lw: str, pos: int, channels: int) -> None:
    if pos < len(op.inputs) and op.inputs[pos] >= 0:
        b = graph.tensors[op.inputs[pos]]
        if b.n_elements != channels:
            raise ModelError(f"{lw}: bias {list(b.shape)} does not have one value per output channel "
                             f"({channels})")


def _check_concat(graph: Graph, op: Operator, lw: str) -> None:
    y = graph.tensors[op.outputs[0]]
    shapes = [graph.tensors[i].shape for i in op.inputs]
    rank = len(y.shape)
    axis = op.options.get("axis", 0)
    axis = axis + rank if isinstance(axis, int) and axis < 0 else axis
    if not isinstance(axis, int) or not 0 <= axis < max(rank, 1) or any(len(s) != rank for s in shapes):
        raise ModelError(f"{lw}: inputs {[list(s) for s in shapes]} cannot be joined along axis "
                         f"{op.options.get('axis', 0)} into {list(y.shape)}")
    want = list(shapes[0])
    if rank:
        want[axis] = sum(s[axis] for s in shapes)
    if want != list(y.shape) or any(list(s[:axis]) + list(s[axis + 1:]) != want[:axis] + want[axis + 1:]
                                    for s in shapes):
        raise ModelError(f"{lw}: inputs {[list(s) for s in shapes]} do not join along axis {axis} into "
                         f"{list(y.shape)}")


__all__ = ["MEMORY_MARGIN", "TOTAL_MEMORY_MARGIN", "activation_bytes_limit", "check_buffer", "check_graph",
           "check_quantization", "check_tensor_size"]
