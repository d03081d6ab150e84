"""`LayerParams`: the numbers of one layer that the MVP planners and the named checks read.

Shapes, strides, padding, activation range, quantization and bias statistics, taken from the
graph once (`layer_params`), with the integer helpers that follow the SDK's C arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.graph import Graph, Operator
from simulator.hardware import MVP
from simulator.mvp_checks import ACCUMULATOR_SCALER as S

MAX_N = MVP.dim_size_max        # dim size / loop count limit
MAX_STRIDE = MVP.dim_stride_max


def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as the SDK's div_floor does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ceil_div(a: int, b: int) -> int:
    return cdiv(a, b) + (1 if a % b else 0)


def same_padding(n_in: int, n_out: int, f: int, stride: int, dilation: int) -> int:
    eff = (f - 1) * dilation + 1
    return max(0, (n_out - 1) * stride + eff - n_in) // 2


def activation_range(act: str, scale: float, zp: int) -> tuple[int, int]:
    """TFLM's quantized activation range for an int8 output."""
    def q(v):
        return zp + int(round(v / scale))
    if act == "relu":
        return max(-128, q(0.0)), 127
    if act == "relu6":
        return max(-128, q(0.0)), min(127, q(6.0))
    if act == "relu_n1_to_1":
        return max(-128, q(-1.0)), min(127, q(1.0))
    return -128, 127


@dataclass
class LayerParams:
    opcode: str
    input_dtype: str
    output_dtype: str
    input_shape: tuple
    input2_shape: tuple = ()
    output_shape: tuple = ()
    batches: int = 1
    fc_layer_units: int = 0     # fully_connected with keep_num_dims: the layer's own units (weight rows)
    h_in: int = 1
    w_in: int = 1
    c_in: int = 1
    h_out: int = 1
    w_out: int = 1
    c_out: int = 1
    fh: int = 1
    fw: int = 1
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding_same: bool = False
    pad_h: int = 0
    pad_w: int = 0
    act_min: int = -128
    act_max: int = 127
    input_zp: int = 0
    output_zp: int = 0
    weight_zero_point: int = 0
    units: int = 0
    accum: int = 0
    bias_length: int = 0
    bias_max_abs: float = 0.0
    has_bias: bool = False
    # quantization that program registers are derived from (per-tensor values; float32 as stored)
    input_scale: float = 0.0
    input2_scale: float = 0.0
    input2_zp: int = 0
    output_scale: float = 0.0
    weight_scale: float = 0.0        # the filter's first scale (FC uses one scaler for all units)
    bias_f16: bytes = b""            # FC large path: each unit's bias goes into a register

    @property
    def do_activation(self) -> bool:
        return self.act_min != -128 or self.act_max != 127

    @property
    def is_wide_conv1d(self) -> bool:
        return ((self.w_in * self.c_in > MAX_STRIDE or self.w_out * self.c_out > MAX_STRIDE)
                and self.h_in == 1 and self.fh == 1 and self.h_out == 1)

    @property
    def fc_max_accum(self) -> int:
        return 2 * MAX_N if self.accum % 2 == 0 else MAX_N

    @property
    def fc_large_input(self) -> bool:
        return self.accum > self.fc_max_accum

    @property
    def fc_loop_count(self) -> int:
        return self.accum // 2 if self.accum % 2 == 0 else self.accum


def layer_params(graph: Graph, op: Operator) -> LayerParams:
    ins = graph.op_inputs(op)
    out = graph.op_outputs(op)[0]
    x = ins[2] if op.opcode == "transpose_conv" else ins[0]
    o = op.options
    p = LayerParams(op.opcode, x.dtype, out.dtype, tuple(x.shape), output_shape=tuple(out.shape))
    if out.scale is not None and len(out.scale) and out.dtype == "int8":
        zp = int(out.zero_point[0]) if out.zero_point is not None and len(out.zero_point) else 0
        p.output_zp = zp
        p.act_min, p.act_max = activation_range(o.get("fused_activation_function", "none"),
                                                 float(out.scale[0]), zp)
    if x.zero_point is not None and len(x.zero_point):
        p.input_zp = int(x.zero_point[0])
    p.input_scale = first_scale(x)
    p.output_scale = first_scale(out)
    if len(x.shape) == 4:
        p.batches, p.h_in, p.w_in, p.c_in = x.shape
    if len(out.shape) == 4:
        _, p.h_out, p.w_out, p.c_out = out.shape
    code = op.opcode
    if code in ("conv_2d", "depthwise_conv_2d", "transpose_conv"):
        w = ins[1].shape
        p.fh, p.fw = w[1], w[2]
        if code == "depthwise_conv_2d":
            p.c_out = w[3]
    if code in ("average_pool_2d", "max_pool_2d"):
        p.fh, p.fw = o.get("filter_height", 1), o.get("filter_width", 1)
    p.stride_h, p.stride_w = o.get("stride_h", 1), o.get("stride_w", 1)
    p.dilation_h, p.dilation_w = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    p.padding_same = o.get("padding", "valid") == "same"
    if p.padding_same and code != "transpose_conv":
        p.pad_h = same_padding(p.h_in, p.h_out, p.fh, p.stride_h, p.dilation_h)
        p.pad_w = same_padding(p.w_in, p.w_out, p.fw, p.stride_w, p.dilation_w)
    bias = None
    if code == "fully_connected":
        w = ins[1]
        p.units, p.accum = w.shape[0], w.shape[-1]
        p.batches = x.n_elements // max(1, p.accum)
        if len(out.shape) > 2:
            # keep_num_dims (a Dense layer on a 3-D input): the vendor's kernel takes its batches
            # and units from output dims 0 and 1, not from the weights (sl_mvp_ml_fully_connected.c):
            # it programs 1 batch of T "units" (check_fc_output_2d says what that computes)
            p.fc_layer_units, p.batches, p.units = p.units, out.shape[0], out.shape[1]
        if w.zero_point is not None and len(w.zero_point):
            p.weight_zero_point = int(np.max(np.abs(w.zero_point)))
        p.weight_scale = first_scale(w)
        bias = ins[2] if len(ins) > 2 else None
    elif code in ("conv_2d", "depthwise_conv_2d"):
        bias = ins[2] if len(ins) > 2 else None
    elif code == "transpose_conv":
        bias = ins[3] if len(ins) > 3 else None
    elif code in ("add", "mul"):
        p.input2_shape = tuple(ins[1].shape)
        p.input2_scale = first_scale(ins[1])
        if ins[1].zero_point is not None and len(ins[1].zero_point):
            p.input2_zp = int(ins[1].zero_point[0])
    if bias is not None:
        p.has_bias = True
        p.bias_length = bias.n_elements
        if bias.data is not None and bias.data.size:
            p.bias_max_abs = float(np.max(np.abs(bias.data.astype(np.float64))))
            if code == "fully_connected" and p.accum > p.fc_max_accum:
                p.bias_f16 = bias_f16(bias.data).tobytes()
    return p


def first_scale(t) -> float:
    return float(t.scale[0]) if t.scale is not None and len(t.scale) else 0.0


def bias_f16(bias: np.ndarray) -> np.ndarray:
    """Prepare's fp16 bias: bias_int32 * 2^-15."""
    return (bias.reshape(-1).astype(np.float64) * S).astype(np.float16)
