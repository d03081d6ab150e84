"""Operation and multiply-accumulate counts per layer, by the vendor profiler's conventions.

The vendor counts a MAC as two ops, a bias add as one op per output element and a fused
ReLU-family activation as two (a min and a max) per output element. Element-wise kernels cost a
fixed number of ops per element; ops it has no rule for (concatenation, logistic, tanh, ...) count
zero. Batch is not multiplied in: the vendor's formulas use the output's H, W, C only. These
conventions were checked layer by layer against the vendor simulator (tests/test_counting.py).
"""
from __future__ import annotations

from simulator.graph import Graph, Operator

_CLAMPING_ACTIVATIONS = ("relu", "relu_n1_to_1", "relu6")


def _activation_ops(op: Operator, n: int) -> int:
    return 2 * n if op.options.get("fused_activation_function") in _CLAMPING_ACTIVATIONS else 0


def _hwc(shape: tuple[int, ...]) -> int:
    """H*W*C of an NHWC shape (batch left out, as the vendor does)."""
    n = 1
    for d in shape[1:]:
        n *= d
    return n


def _conv_out_hw(in_hw: int, f: int, stride: int, padding: str) -> int:
    """Output size of a forward convolution, which the vendor uses for transpose_conv's bias ops."""
    if stride <= 0:
        return 0
    return (in_hw + stride - 1) // stride if padding == "same" else max(0, (in_hw - f + stride) // stride)


def _has(inputs: list, i: int) -> bool:
    return len(inputs) > i and inputs[i] is not None


def count_ops_macs(graph: Graph, op: Operator) -> tuple[int, int]:
    """(ops, macs) of one layer."""
    ins = graph.op_inputs(op)
    outs = graph.op_outputs(op)
    out = outs[0].shape if outs else ()
    code = op.opcode

    if code in ("conv_2d", "depthwise_conv_2d"):
        w = ins[1].shape  # conv: (Cout, Kh, Kw, Cin); depthwise: (1, Kh, Kw, Cout)
        n_out = _hwc(out)
        macs = n_out * w[1] * w[2] * (w[3] if code == "conv_2d" else 1)
        return 2 * macs + (n_out if _has(ins, 2) else 0) + _activation_ops(op, n_out), macs
    if code == "fully_connected":
        units, accum = out[-1] if out else 0, ins[1].shape[-1]
        macs = units * accum
        return 2 * macs + (units if _has(ins, 2) else 0) + _activation_ops(op, units), macs
    if code == "transpose_conv":
        # inputs: output shape, weights (Cout, Kh, Kw, Cin), input (N, H, W, Cin), [bias]
        w, x = ins[1].shape, ins[2].shape
        macs = w[1] * w[2] * out[3] * x[1] * x[2] * x[3]
        ops = 2 * macs
        if _has(ins, 3):
            pad = op.options.get("padding", "same")
            ops += (_conv_out_hw(x[1], w[1], op.options.get("stride_h", 1), pad)
                    * _conv_out_hw(x[2], w[2], op.options.get("stride_w", 1), pad) * out[3])
        return ops, macs
    if code in ("max_pool_2d", "average_pool_2d"):
        k = op.options.get("filter_height", 1) * op.options.get("filter_width", 1)
        n_out = _hwc(out)
        return n_out * (k + (code == "average_pool_2d")) + _activation_ops(op, n_out), 0
    if code == "softmax":
        dims = ins[0].shape
        n = dims[1] if len(dims) == 2 else (dims[0] if dims else 1)  # the vendor's rule, as is
        return 5 * n, 0
    if code == "add":
        return ins[0].n_elements, 0
    if code == "mul":
        # one op per output element: a broadcast MUL (LayerNormalization's x * 1/sqrt(var), its
        # first input one value per row) counts as the vendor profiler counts it
        return outs[0].n_elements, 0
    if code == "quantize":
        return 4 * ins[0].n_elements, 0
    if code == "dequantize":
        return 2 * ins[0].n_elements, 0
    if code == "pad":
        return 6 * outs[0].n_elements, 0
    if code in ("relu", "relu6"):
        return 2 * ins[0].n_elements, 0
    if code == "resize_nearest_neighbor" and _has(ins, 1) and ins[1].data is not None \
            and ins[1].data.size >= 2:
        h, w = (int(v) for v in ins[1].data.ravel()[:2])
        return h * (8 + 8 * w), 0
    return 0, 0
