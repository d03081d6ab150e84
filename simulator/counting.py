"""Operation and multiply-accumulate counts per layer, by the vendor profiler's conventions.

The conventions were read off the vendor simulator's reports (tests/data/*/mltk_sim.jsonl):
a MAC is two ops, a bias add one op per output and a fused activation two ops per output
(compare and select); element-wise ops count per element at a fixed cost per element kind.
"""
from __future__ import annotations

from simulator.graph import Graph, Operator

# ops per output element for element-wise kernels (vendor accounting)
_OPS_PER_ELEMENT = {
    "quantize": 4,     # scale, round, add zero point, clamp
    "dequantize": 2,   # subtract zero point, scale
    "softmax": 5,
    "add": 1,
    "sub": 1,
    "mul": 1,
    "pad": 6,
    "padv2": 6,
}


def _activation_ops(op: Operator) -> int:
    return 0 if op.options.get("fused_activation_function", "none") == "none" else 2


def count_ops_macs(graph: Graph, op: Operator) -> tuple[int, int]:
    """(ops, macs) of one layer."""
    ins = graph.op_inputs(op)
    outs = graph.op_outputs(op)
    out_n = outs[0].n_elements if outs else 0
    code = op.opcode
    has_bias = len(ins) > 2 and ins[2] is not None

    if code in ("conv_2d", "depthwise_conv_2d"):
        w = ins[1].shape  # conv: (Cout, Kh, Kw, Cin); depthwise: (1, Kh, Kw, Cout)
        per_out = w[1] * w[2] * (w[3] if code == "conv_2d" else 1)
        macs = out_n * per_out
        return 2 * macs + out_n * (int(has_bias) + _activation_ops(op)), macs
    if code == "fully_connected":
        accum = ins[1].shape[-1]
        macs = out_n * accum
        return 2 * macs + out_n * (int(has_bias) + _activation_ops(op)), macs
    if code == "transpose_conv":
        # inputs: output_shape, weights (Cout, Kh, Kw, Cin), input, [bias]; every input pixel
        # scatters a Kh x Kw x Cout patch
        w = ins[1].shape
        x = ins[2]
        macs = x.n_elements * w[0] * w[1] * w[2]
        bias = len(ins) > 3 and ins[3] is not None
        return 2 * macs + out_n * (int(bias) + _activation_ops(op)), macs
    if code == "average_pool_2d":
        k = op.options.get("filter_height", 1) * op.options.get("filter_width", 1)
        return out_n * (k + 1), 0
    if code == "max_pool_2d":
        k = op.options.get("filter_height", 1) * op.options.get("filter_width", 1)
        return out_n * k, 0
    if code in _OPS_PER_ELEMENT:
        return out_n * _OPS_PER_ELEMENT[code], 0
    return 0, 0
