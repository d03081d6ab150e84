"""The emulator's reference half: a builder per operator that turns a layer into a `Step`
running TFLite Micro's int8 reference kernels (`kernels_ref`), bit-exact.

A builder takes (graph, op), checks what TFLM's Prepare checks, computes the layer's constants
once (multipliers, padding, offsets) and returns (run, info); `run(values)` reads and writes the
tensor value list, every activation with a leading batch axis. The families live in their own
modules: conv (layers with weights), reduce (pooling and axis reductions), elementwise
(arithmetic, activations, quantization, SQUARED_DIFFERENCE, RSQRT, ABS, DIV, LOG_SOFTMAX), lookup
(table activations: ELU, GELU, EXP, LOG, SQRT; PRELU, float ELU/NEG/SQUARE), resize (up-sampling),
indexing (TILE, CAST, comparisons, SELECT, computed GATHER) and shape (data movement). `OPERATORS` lists what runs.
"""
from __future__ import annotations

from simulator.emulation_step import Step
from simulator.graph import Graph, Operator
from simulator.reference_ops import conv, elementwise as ew, indexing, lookup, reduce, resize, shape
from simulator.reference_ops.common import err

BUILDERS = {
    "conv_2d": conv.build_conv,
    "depthwise_conv_2d": conv.build_depthwise,
    "fully_connected": conv.build_fc,
    "transpose_conv": conv.build_transpose_conv,
    "batch_matmul": conv.build_batch_matmul,
    "average_pool_2d": reduce.build_pool("avg"),
    "max_pool_2d": reduce.build_pool("max"),
    "mean": reduce.build_mean,
    "sum": reduce.build_sum,
    "cumsum": reduce.build_cumsum,
    "reduce_max": reduce.build_reduce_extreme("max"),
    "reduce_min": reduce.build_reduce_extreme("min"),
    "add": indexing.build_add_sub("add"),
    "sub": indexing.build_add_sub("sub"),
    "mul": ew.build_mul,
    "maximum": ew.build_extreme("max"),
    "minimum": ew.build_extreme("min"),
    "softmax": ew.build_softmax,
    "log_softmax": ew.build_log_softmax,
    "logistic": ew.build_sigmoid_tanh("logistic"),
    "tanh": ew.build_sigmoid_tanh("tanh"),
    "relu": ew.build_relu("relu"),
    "relu6": ew.build_relu("relu6"),
    "leaky_relu": ew.build_leaky_relu,
    "hard_swish": ew.build_hard_swish,
    "squared_difference": ew.build_squared_difference,
    "rsqrt": ew.build_rsqrt,
    "abs": ew.build_abs,
    "div": ew.build_div,
    "sqrt": lookup.build_sqrt,
    "square": lookup.build_float_unary("square"),
    "exp": lookup.build_exp,
    "log": lookup.build_log,
    "elu": lookup.build_elu_any,
    "neg": lookup.build_float_unary("neg"),
    "gelu": lookup.build_gelu,
    "prelu": lookup.build_prelu,
    "quantize": ew.build_quantize,
    "dequantize": ew.build_dequantize,
    "reshape": shape.build_reshape,
    "squeeze": shape.build_reshape,
    "expand_dims": shape.build_reshape,
    "pad": shape.build_pad,
    "padv2": shape.build_pad,
    "concatenation": shape.build_concat,
    "transpose": shape.build_transpose,
    "strided_slice": shape.build_strided_slice,
    "pack": shape.build_pack,
    "unpack": shape.build_unpack,
    "split": shape.build_split,
    "split_v": shape.build_split,
    "gather": indexing.build_gather,
    "topk_v2": indexing.build_topk,
    "tile": indexing.build_tile,
    "cast": indexing.build_cast,
    "less": indexing.build_compare("less"),
    "less_equal": indexing.build_compare("less_equal"),
    "greater": indexing.build_compare("greater"),
    "greater_equal": indexing.build_compare("greater_equal"),
    "select": indexing.build_select,
    "select_v2": indexing.build_select,
    "resize_nearest_neighbor": resize.build_resize_nearest,
    "resize_bilinear": resize.build_resize_bilinear,
}
OPERATORS = tuple(sorted(BUILDERS))


def reference_step(graph: Graph, op: Operator) -> Step:
    """The layer as a reference-kernel step; `ModelError` naming the layer and operator when the
    emulator has no kernel for it or TFLM would refuse it."""
    builder = BUILDERS.get(op.opcode)
    if builder is None:
        raise err(graph, op, "op not supported by the emulator")
    run, info = builder(graph, op)
    return Step(op.index, op.opcode, "reference", run, info)
