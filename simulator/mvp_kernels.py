"""Which MVP programs each layer compiles to, following the SDK kernels' program builders.

`plan_layer(graph, op)` returns a `LayerPlan`: whether the vendor's MVP kernels accept the layer
(and the reason when not), which kernel path runs it, and the programs it launches as
(Program, repeat count) pairs. Identical launches are counted, not materialised, so planning a
model takes milliseconds; `LayerPlan.launches()` yields every launch with its exact buffer
offsets and register values, in execution order, and `LayerPlan.cpu_work` lists what the kernel
computes on the CPU around them (clamp remainder, odd ADD/MUL element, Conv1D edge columns), so
the emulator executes exactly what the profiler prices.

Kernel facts (program structure, path choices, limits) come from the Silicon Labs MVP kernels
as shipped in MLTK 0.20 (the vendor simulator's build, with SL_MVP_OPTIMIZE_SPEED = 1: conv_2d
pre-scales its input to fp16 in a separate program); see ../shared/mvp/FACTS.md.

Two vendor-simulator quirks are modelled explicitly, because its reports show them:
- a fully_connected layer whose input depth exceeds 1024 (2048 if even) is logged as
  "weights_shape[1] (N) > M" even though the large-input path runs it on the MVP;
- a depthwise_conv_2d layer that only the optimized path can run is rejected at random
  ("Hardware limits exceeded"): Prepare checks the bias/scaler pointers' alignment before it has
  set them. The board runs such layers on the MVP.
In both cases `supported` is False (the vendor's verdict) while `runs_on_mvp` is True and the
programs are planned, so the layer's cycles are counted as the vendor simulator counts them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from simulator import mvp_checks as checks
from simulator.graph import Graph, Operator
from simulator.mvp_program import (COL, ROW, VEC, Load, Program, ProgramBuilder, Store, shifted,
                                   violations)

MVP_OPCODES = ("conv_2d", "depthwise_conv_2d", "fully_connected", "add", "mul", "average_pool_2d",
               "max_pool_2d", "transpose_conv")
S = checks.ACCUMULATOR_SCALER
MAX_N = checks.MAX_COLUMN_LENGTH      # dim size / loop count limit
MAX_STRIDE = checks.MAX_STRIDE
CLAMP_CPU_MAX_ELEMENTS = 160          # the clamp pass runs on the CPU up to this many elements


@dataclass
class LayerPlan:
    supported: bool                  # the vendor's MVP kernels accept the layer (no rejection logged)
    reason: str | None               # why not, in the vendor's words where it has them
    kernel: str                      # e.g. "conv_2d/mvp", "depthwise_conv_2d/mvp-opt", "softmax/cpu"
    programs: list = field(default_factory=list)  # [(Program, repeat count)], empty when on the CPU
    has_mvp_kernel: bool = True      # the SDK has an MVP kernel for this operator
    runs_on_mvp: bool = False        # programs are launched (True also for the vendor quirks above)
    note: str | None = None          # more detail for a user (e.g. the vendor quirk at play)
    expand: Callable[[], Iterator[Program]] | None = field(default=None, repr=False)
    # what the kernel does on the CPU around its programs, as data the emulator executes:
    # {"op": "clamp", "start", "count", "min", "max"}, {"op": "odd_element", ...},
    # {"op": "conv1d_column", "out_x", ...}
    cpu_work: tuple = ()
    scratch_bytes: int = 0           # the fp16 scratch buffer the programs address (conv, transpose conv)

    @property
    def n_programs(self) -> int:
        return sum(n for _, n in self.programs)

    def launches(self) -> Iterator[Program]:
        """Every program launch in execution order, with exact offsets (for the emulator)."""
        if self.expand is not None:
            yield from self.expand()
        else:
            for program, n in self.programs:
                for _ in range(n):
                    yield program


# ------------------------------------------------------------------ layer parameters

def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as the SDK's div_floor does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _ceil_div(a: int, b: int) -> int:
    return _cdiv(a, b) + (1 if a % b else 0)


def _same_padding(n_in: int, n_out: int, f: int, stride: int, dilation: int) -> int:
    eff = (f - 1) * dilation + 1
    return max(0, (n_out - 1) * stride + eff - n_in) // 2


def _activation_range(act: str, scale: float, zp: int) -> tuple[int, int]:
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
        p.act_min, p.act_max = _activation_range(o.get("fused_activation_function", "none"),
                                                 float(out.scale[0]), zp)
    if x.zero_point is not None and len(x.zero_point):
        p.input_zp = int(x.zero_point[0])
    p.input_scale = _first_scale(x)
    p.output_scale = _first_scale(out)
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
        p.pad_h = _same_padding(p.h_in, p.h_out, p.fh, p.stride_h, p.dilation_h)
        p.pad_w = _same_padding(p.w_in, p.w_out, p.fw, p.stride_w, p.dilation_w)
    bias = None
    if code == "fully_connected":
        w = ins[1]
        p.units, p.accum = w.shape[0], w.shape[-1]
        p.batches = x.n_elements // max(1, p.accum)
        if w.zero_point is not None and len(w.zero_point):
            p.weight_zero_point = int(np.max(np.abs(w.zero_point)))
        p.weight_scale = _first_scale(w)
        bias = ins[2] if len(ins) > 2 else None
    elif code in ("conv_2d", "depthwise_conv_2d"):
        bias = ins[2] if len(ins) > 2 else None
    elif code == "transpose_conv":
        bias = ins[3] if len(ins) > 3 else None
    elif code in ("add", "mul"):
        p.input2_shape = tuple(ins[1].shape)
        p.input2_scale = _first_scale(ins[1])
        if ins[1].zero_point is not None and len(ins[1].zero_point):
            p.input2_zp = int(ins[1].zero_point[0])
    if bias is not None:
        p.has_bias = True
        p.bias_length = bias.n_elements
        if bias.data is not None and bias.data.size:
            p.bias_max_abs = float(np.max(np.abs(bias.data.astype(np.float64))))
            if code == "fully_connected" and p.accum > p.fc_max_accum:
                p.bias_f16 = _bias_f16(bias.data).tobytes()
    return p


def _first_scale(t) -> float:
    return float(t.scale[0]) if t.scale is not None and len(t.scale) else 0.0


def _bias_f16(bias: np.ndarray) -> np.ndarray:
    """Prepare's fp16 bias: bias_int32 * 2^-15."""
    return (bias.reshape(-1).astype(np.float64) * S).astype(np.float16)


def _first_failure(*results) -> str | None:
    for r in results:
        if r is not None:
            return r
    return None


# ------------------------------------------------------------------ shared pieces

def _edge_groups(n_out: int, n_in: int, f: int, stride: int, pad: int):
    """(out_min, out_max, filter_start, filter_count) per run of outputs sharing one truncated
    filter: each padded leading output alone, the full-filter centre as one run, each truncated
    trailing output alone (the SDK's sub-filter enumeration)."""
    center_max = _cdiv(n_in - f + pad, stride)
    out_min = 0
    while out_min < n_out:
        origin = out_min * stride - pad
        start = max(0, -origin)
        count = min(f, n_in - origin) - start
        if origin < 0 or n_in - origin < f:
            out_max = out_min
        else:
            out_max = max(center_max, out_min)
        yield out_min, min(out_max, n_out - 1), start, count
        out_min = out_max + 1


def _clamp(p: LayerParams, n_elements: int, byte_offset: int = 0) -> tuple[list, tuple]:
    """The int8 clamp pass after conv, generic depthwise, FC, ADD and MUL over `n_elements` of the
    output from `byte_offset`: programs of up to 2048 elements (4 per iteration as complex int8
    pairs), in order, and the CPU's share (small outputs, the remainder) as cpu_work."""
    if not p.do_activation:
        return [], ()
    programs = []
    start = 0
    if n_elements > CLAMP_CPU_MAX_ELEMENTS:
        while n_elements - start >= 4:
            n = min(2048, n_elements - start) // 4
            b = ProgramBuilder("clamp/i8")
            b.reg(0, p.act_min, p.act_min)
            b.reg(1, p.act_max, p.act_max)
            b.array(0, "output", byte_offset + start, "int8", True, (1, n, 2), (0, 2, 1))
            b.begin_loop(n)
            b.begin_loop(2)
            b.compute("CLIP2A", z=2, x=0, y=1, a=2, loads=[Load(2, 0)], store=Store(2, 0, (COL,)))
            b.end_loop()
            b.postloop_incr(0, ROW)
            b.end_loop()
            programs.append((b.build(), 1))
            start += 4 * n
    work = ()
    if start < n_elements:
        work = ({"op": "clamp", "start": byte_offset + start, "count": n_elements - start,
                 "min": p.act_min, "max": p.act_max},)
    return programs, work


def _merge(pairs: list) -> list:
    """Adds up the counts of identical programs (the form timing models price)."""
    merged: dict = {}
    for program, n in pairs:
        merged[program] = merged.get(program, 0) + n
    return list(merged.items())


def _per_batch(ordered: list, p: LayerParams, in_bytes: int, out_bytes: int,
               channel_shifts: Callable[[int], dict] | None = None, n_channels: int = 1):
    """Every launch of `ordered` [(Program, count)], in order: a program counted `batches x
    n_channels` times is launched once per batch (and per channel group, the CPU moving the
    buffer pointers); the clamp programs (count 1) run once. Batches move the input by
    `in_bytes`, its fp16 scratch copy by twice that, the output by `out_bytes`."""
    def expand():
        for program, count in ordered:
            if count == 1 and program.kind == "clamp/i8":
                yield program
                continue
            for batch in range(p.batches):
                for ch in range(n_channels):
                    shifts = {"input": batch * in_bytes, "input2": batch * in_bytes,
                              "scratch": 2 * batch * in_bytes, "output": batch * out_bytes}
                    if channel_shifts is not None:
                        for k, v in channel_shifts(ch).items():
                            shifts[k] = shifts.get(k, 0) + v
                    yield shifted(program, shifts)
    return expand


def _y_grouping(stride_h: int, h_t: int, fh_t: int, single_x: bool) -> tuple[int, int]:
    """(in_y_extra, out_y_incr): how a program walks output rows whose windows overlap (the
    SDK's conv and pooling kernels): when the truncated filter is taller than the stride, each
    program takes every out_y_incr-th row, and the input row index skips in_y_extra rows more."""
    if h_t == 1 or single_x or stride_h == fh_t:
        return 0, 1
    if stride_h > fh_t:
        return stride_h - fh_t, 1
    q, r = divmod(fh_t, stride_h)
    return (0, q) if r == 0 else (stride_h - r, q + 1)


def _row_skips(b: ProgramBuilder, left: int, array: int) -> None:
    """The input rows still to skip after an output row: NOOP loops whose exhaustion increments
    the array's ROW index (one extra increment per enclosing loop)."""
    if left == 1:
        b.begin_loop(1)
        b.compute("NOOP")
        b.end_loop()
        b.postloop_incr(array, ROW)
    elif left > 1:
        b.begin_loop(left - 1)
        b.begin_loop(1)
        b.compute("NOOP")
        b.end_loop()
        b.postloop_incr(array, ROW)
        b.end_loop()
        b.postloop_incr(array, ROW)


# ------------------------------------------------------------------ conv_2d

def _conv_prescale_program(p: LayerParams, h: int, w: int, input_offset: int) -> Program:
    """SL_MVP_OPTIMIZE_SPEED: the input converted once to fp16 (x - zp) * 2^-15 into the scratch
    buffer (from its start: a Conv1D chunk reuses it)."""
    c = p.c_in
    packed = c % 2 == 0 and (w * c) % 2 == 0
    cp = c // 2 if packed else c
    b = ProgramBuilder("conv_2d/prescale")
    b.reg(0, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S if packed else 0.0)
    b.array(0, "input", input_offset, "int8", packed, (h, w, cp), (w * cp, cp, 1))
    b.array(1, "scratch", 0, "binary16", packed, (h, w, cp), (w * cp, cp, 1))
    b.begin_loop(h)
    b.begin_loop(w)
    b.begin_loop(cp)
    b.compute("MACC", z=6, x=5, y=0, a=1, loads=[Load(5, 0, (COL,))], store=Store(6, 1, (COL,)))
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(1, ROW)
    b.end_loop()
    b.postloop_incr(0, VEC)
    b.postloop_incr(1, VEC)
    b.end_loop()
    return b.build()


def _conv_main_programs(p: LayerParams, w_in: int, w_out: int, pad_w: int, out_col0: int) -> list:
    """The conv programs for one (possibly chunked) width, in launch order: [(Program, batches)].
    The input is the fp16 scratch copy (from its start); outputs start at column out_col0."""
    out = []
    ci, co = p.c_in, p.c_out
    for ox_min, ox_max, fx_start, fw_t in _edge_groups(w_out, w_in, p.fw, p.stride_w, pad_w):
        w_t = ox_max - ox_min + 1
        single_x = w_t <= 1
        for oy_min, oy_max, fy_start, fh_t in _edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h):
            h_t = oy_max - oy_min + 1
            in_y_extra, out_y_incr = _y_grouping(p.stride_h, h_t, fh_t, single_x)
            for off in range(min(out_y_incr, h_t)):
                oy_size = _ceil_div(h_t - off, out_y_incr)
                extra_adj = 0 if oy_size == 1 else in_y_extra
                in_y_size = fh_t if single_x else (fh_t + extra_adj) * oy_size
                o_vec_stride, out_y_extra = out_y_incr * w_out * co, 0
                if o_vec_stride > MAX_STRIDE:
                    o_vec_stride, out_y_extra = w_out * co, out_y_incr - 1
                o_base = ((oy_min + off) * w_out + out_col0 + ox_min) * co
                f_base = (fy_start * p.fw + fx_start) * ci
                f_col, f_row, f_vec = fw_t * ci, p.fw * ci, p.fh * p.fw * ci
                y0 = (oy_min + off) * p.stride_h - p.pad_h + fy_start
                x0 = ox_min * p.stride_w - pad_w + fx_start
                i_base = (y0 * w_in + x0) * ci
                i_col, i_row = fw_t * ci, w_in * ci
                if single_x:
                    i_vec, i_vec_n = p.stride_h * i_row, h_t
                else:
                    i_vec, i_vec_n = p.stride_w * ci, w_t
                packed = all(v % 2 == 0 for v in (i_base, i_col, i_row, i_vec, f_base, f_col, f_row, f_vec))
                k = 2 if packed else 1
                b = ProgramBuilder("conv_2d/main")
                b.reg(0, S)
                b.reg(1, -p.input_zp * S, -p.input_zp * S if packed else 0.0)
                b.reg(2, p.output_zp)
                b.array(0, "scratch", 2 * i_base, "binary16", packed, (i_vec_n, in_y_size, i_col // k),
                        (i_vec // k, i_row // k, 1))
                b.array(1, "filter", f_base, "int8", packed, (co, fh_t, f_col // k), (f_vec // k, f_row // k, 1))
                if p.has_bias:
                    b.vector(2, "bias", 0, "binary16", False, co)
                else:
                    b.vector(2, "zero", 0, "binary16", False, 1)
                b.vector(3, "scaler", 0, "binary16", False, co)
                b.array(4, "output", o_base, "int8", False, (oy_size * (out_y_extra + 1), w_t, co),
                        (o_vec_stride, co, 1))
                left = extra_adj

                def take():
                    nonlocal left
                    r = left > 0
                    left -= 1
                    return r

                b.begin_loop(co)
                b.compute("COPY", z=5, a=4, loads=[Load(4, 2), Load(3, 3)])
                b.begin_loop(w_t)
                b.begin_loop(oy_size)
                b.begin_loop(fh_t)
                b.begin_loop(i_col // k)
                b.compute("MACR2A", z=5, x=6, y=7, a=5, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
                b.end_loop()
                b.postloop_incr(0, ROW)
                b.postloop_incr(1, ROW)
                b.end_loop()
                if single_x:
                    b.postloop_incr(0, VEC)
                if take():
                    b.postloop_incr(0, ROW)
                if packed:
                    b.compute("ADDR", z=5, a=5, loads=[Load(6, 0, (ROW,))] if take() else [])
                b.compute("MACC", z=7, x=5, y=3, a=2, loads=[Load(6, 0, (ROW,))] if take() else [],
                          store=Store(7, 4, (VEC,)))
                if out_y_extra > 0:
                    b.begin_loop(out_y_extra)
                    b.compute("NOOP", loads=[Load(7, 4, (VEC,))])
                    b.end_loop()
                b.compute("COPY", z=5, a=4)
                _row_skips(b, left, 0)
                b.end_loop()
                b.postloop_incr(4, ROW)
                if not single_x:
                    b.postloop_incr(0, VEC)
                b.end_loop()
                for arr, dim in ((4, COL), (1, VEC), (2, COL), (3, COL)):
                    b.postloop_incr(arr, dim)
                b.end_loop()
                out.append((b.build(), p.batches))
    return out


def _plan_conv(p: LayerParams) -> LayerPlan:
    fail = checks.check_conv_dilation(p)
    if not fail and not p.is_wide_conv1d:
        fail = _first_failure(checks.check_conv_prescale_stride(p), checks.check_conv_output_stride(p))
    if fail:
        return LayerPlan(False, fail, "conv_2d/cmsis")
    in_bytes, out_bytes = p.h_in * p.w_in * p.c_in, p.h_out * p.w_out * p.c_out
    work: tuple = ()
    if p.is_wide_conv1d:
        ordered, work = _conv1d_chunks(p)
        kernel = "conv_2d/mvp-conv1d"
    else:
        ordered = [(_conv_prescale_program(p, p.h_in, p.w_in, 0), p.batches)]
        ordered += _conv_main_programs(p, p.w_in, p.w_out, p.pad_w, 0)
        kernel = "conv_2d/mvp"
    fail = checks.check_programs_fit(p, ordered) if ordered else "Hardware limits exceeded"
    if fail:
        return LayerPlan(False, fail, "conv_2d/cmsis")
    if not p.is_wide_conv1d:
        clamp, work = _clamp(p, p.batches * out_bytes)
        ordered = ordered + clamp
    return LayerPlan(True, None, kernel, _merge(ordered), runs_on_mvp=True,
                     expand=_per_batch(ordered, p, in_bytes, out_bytes), cpu_work=work,
                     scratch_bytes=2 * p.batches * in_bytes)


def _conv1d_chunks(p: LayerParams) -> tuple[list, tuple]:
    """Wide Conv1D: SAME-padded edge columns on the CPU, the rest as VALID convolutions over
    width chunks that fit the MVP, each pre-scaling its own input into the scratch buffer's
    start, writing its own output columns and clamping them. Returns the programs in launch
    order and the CPU's work."""
    ordered: list = []
    work: list = []
    remaining_in, remaining_out, in_col, out_col = p.w_in, p.w_out, 0, 0
    if p.padding_same:
        total = max((p.w_out - 1) * p.stride_w + p.fw - p.w_in, 0)
        pad_left, pad_right = total // 2, total - total // 2
        column = 0
        while pad_left > 0:      # one output column each, computed on the CPU
            work.append(column)
            column += 1
            pad_left -= p.stride_w
            out_col += 1
            remaining_out -= 1
        column = p.w_out - 1
        while pad_right > 0:
            work.append(column)
            column -= 1
            pad_right -= p.stride_w
            remaining_out -= 1
        remaining_in += pad_left  # pad_left <= 0 here: skip the inputs the CPU columns consumed
        in_col -= pad_left
    in_max, out_max = MAX_STRIDE // p.c_in, MAX_STRIDE // p.c_out
    while remaining_in >= p.fw:
        if in_max <= out_max:
            chunk_in = min(remaining_in, in_max)
            chunk_in = _cdiv(chunk_in - p.fw, p.stride_w) * p.stride_w + p.fw
            chunk_out = _cdiv(chunk_in - p.fw, p.stride_w) + 1
        else:
            chunk_out = min(remaining_out, out_max)
            chunk_in = (chunk_out - 1) * p.stride_w + p.fw
        if chunk_out <= 0 or chunk_in <= 0:
            break
        sub = LayerParams(**{**p.__dict__, "w_in": chunk_in, "w_out": chunk_out, "pad_w": 0,
                             "padding_same": False})
        ordered.append((_conv_prescale_program(sub, 1, chunk_in, in_col * p.c_in), p.batches))
        ordered += _conv_main_programs(sub, chunk_in, chunk_out, 0, out_col)
        clamp, clamp_work = _clamp(p, chunk_out * p.c_out, out_col * p.c_out)
        ordered += clamp
        work += clamp_work
        step = chunk_in - p.fw + p.stride_w
        remaining_in -= step
        remaining_out -= chunk_out
        in_col += step
        out_col += chunk_out
    cpu = tuple({"op": "conv1d_column", "out_x": c, "pad_w": p.pad_w} if isinstance(c, int) else c
                for c in work)
    return ordered, cpu


# ------------------------------------------------------------------ depthwise_conv_2d

@dataclass
class DepthwisePaths:
    opt_considered: bool       # Prepare tries the optimized path first (dilation 1, multiplier 1, small input)
    opt_feasible: bool         # the optimized path can be programmed (with aligned buffers)
    generic_feasible: bool     # the generic path passes its dry run (incl. >= 120 MACs per program)
    generic_programs: list
    prepare_depends_on_alignment: bool


def _dw_opt_feasible(p: LayerParams, eff_depth: int) -> bool:
    return (p.fw <= MAX_N and p.fh <= MAX_N and p.w_in * eff_depth <= MAX_STRIDE
            and p.fw * eff_depth <= MAX_STRIDE)


def _dw_opt_program(p: LayerParams, out_y: int, out_x: int) -> Program:
    packed = p.c_out % 2 == 0
    eff = p.c_out // 2 if packed else p.c_out
    k = 2 if packed else 1
    ix, iy = out_x * p.stride_w - p.pad_w, out_y * p.stride_h - p.pad_h
    fx0, fy0 = max(0, -ix), max(0, -iy)
    x_size = (p.w_in - ix if ix + p.fw >= p.w_in else p.fw) - fx0
    y_size = (p.h_in - iy if iy + p.fh >= p.h_in else p.fh) - fy0
    b = ProgramBuilder("depthwise_conv_2d/opt")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(2, p.output_zp, p.output_zp)
    if p.do_activation:
        b.reg(3, p.act_min, p.act_min)
        b.reg(4, p.act_max, p.act_max)
    i_off = ((max(iy, 0)) * p.w_in + max(ix, 0)) * p.c_in
    f_off = (fy0 * p.fw + fx0) * p.c_out
    b.array(0, "input", i_off, "int8", packed, (eff, y_size, x_size), (1, p.w_in * eff, eff))
    b.array(1, "filter", f_off, "int8", packed, (eff, y_size, x_size), (1, p.fw * eff, eff))
    if p.has_bias:
        b.vector(2, "bias", 0, "binary16", packed, eff)
    else:
        b.vector(2, "zero", 0, "binary16", packed, 1)
    b.vector(3, "scaler", 0, "binary16", packed, eff)
    b.array(4, "output", (out_y * p.w_out + out_x) * p.c_out, "int8", packed, (eff, 1, 1), (1, eff, eff))
    b.begin_loop(eff)
    b.compute("NOOP", loads=[Load(5, 2, (COL,))])
    b.begin_loop(y_size)
    b.begin_loop(x_size)
    b.compute("MACR2A", z=6, x=6, y=0, a=1, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(1, ROW)
    b.end_loop()
    b.postloop_incr(0, VEC)
    b.postloop_incr(1, VEC)
    if p.do_activation:
        b.compute("MACR2A", z=7, x=5, y=6, a=2, loads=[Load(6, 3, (COL,))])
        b.compute("CLIP2A", z=7, x=3, y=4, a=7, store=Store(7, 4, (VEC,)))
    else:
        b.compute("MACR2A", z=7, x=5, y=6, a=2, loads=[Load(6, 3, (COL,))], store=Store(7, 4, (VEC,)))
    b.end_loop()
    prog = b.build()
    # the SDK declares the x/y loops over the same two instructions: keep that exact shape
    return prog


def _per_pixel_classes(p: LayerParams, builder) -> tuple[list, Callable]:
    """Groups per-output-pixel programs by window shape: one representative program per class."""
    xs = list(_edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w))
    ys = list(_edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h))
    pairs = []
    for ox_min, ox_max, _, _ in xs:
        for oy_min, oy_max, _, _ in ys:
            n = (ox_max - ox_min + 1) * (oy_max - oy_min + 1) * p.batches
            pairs.append((builder(p, oy_min, ox_min), n))

    in_bytes, out_bytes = p.h_in * p.w_in * p.c_in, p.h_out * p.w_out * p.c_out

    def expand():
        for batch in range(p.batches):
            for y in range(p.h_out):
                for x in range(p.w_out):
                    yield shifted(builder(p, y, x), {"input": batch * in_bytes, "output": batch * out_bytes})
    return _merge(pairs), expand


class _Dims:
    """The generic depthwise kernel's logical loop dims (sizes, strides, flattening bookkeeping)."""
    BATCH, INCH, M, OYO, OX, OYG, FY, FX, NONE = range(9)
    N = 9

    def __init__(self):
        self.sizes = [1] * self.N
        self.strides = [0] * self.N
        self.extra = {}   # (dim1, dim2) -> extra increments of dim2 when dim1 steps
        self.ok = True

    def copy(self):
        d = _Dims()
        d.sizes, d.strides, d.extra, d.ok = list(self.sizes), list(self.strides), dict(self.extra), self.ok
        return d

    def active(self, k):
        return self.sizes[k] > 1 and self.strides[k] > 0

    def n_active(self):
        return sum(self.active(k) for k in range(self.N))

    def flatten(self, d1, d2, dry=False):
        if self.strides[d2] == 0:
            self.ok = False
            return 0
        q, r = divmod(self.strides[d1], self.strides[d2])
        extra = q - self.sizes[d2]
        if r != 0 or extra < 0:
            self.ok = False
            return 0
        new = (self.sizes[d2] + extra) * self.sizes[d1]
        if not dry:
            self.extra[(d1, d2)] = extra
            self.sizes[d2] = new
            self.sizes[d1] = 1
        return new

    def unflatten(self, d1, d2, group):
        q, r = divmod(self.sizes[d2], group)
        if q <= 0 or r != 0 or self.sizes[d1] != 1:
            self.ok = False
            return
        self.sizes[d1] = q
        self.sizes[d2] //= q
        self.strides[d1] = self.sizes[d2] * self.strides[d2]

    def mvp_dims(self):
        act = [k for k in range(self.N) if self.active(k)]
        for k in act:
            if not (0 <= self.strides[k] <= MAX_STRIDE and self.sizes[k] <= MAX_N):
                self.ok = False
        if len(act) > 3:
            self.ok = False
        return act


def _dw_generic(p: LayerParams) -> tuple[bool, list]:
    """Dry run of the generic depthwise path: (feasible, [(Program, count)])."""
    D = _Dims
    mult = p.c_out // max(1, p.c_in)
    par = 2 if mult % 2 == 0 else 1
    if p.batches != 1:
        return False, []
    i, o = _Dims(), _Dims()
    H, W, C = p.h_in, p.w_in, p.c_in
    for d, (size, stride) in {D.BATCH: (p.batches, H * W * C), D.INCH: (C, 1), D.M: (mult, 0),
                              D.OYO: (p.h_out, W * C * p.stride_h), D.OX: (p.w_out, C * p.stride_w),
                              D.FY: (p.fh, W * C * p.dilation_h), D.FX: (p.fw, C * p.dilation_w)}.items():
        i.sizes[d], i.strides[d] = size, stride
    i.strides[D.OYG] = i.strides[D.OYO] * i.sizes[D.OYO]
    Wo, Co = p.w_out, p.c_out
    for d, (size, stride) in {D.BATCH: (p.batches, p.h_out * Wo * Co), D.INCH: (C, mult), D.M: (mult, 1),
                              D.OYO: (p.h_out, Wo * Co), D.OX: (Wo, Co), D.FY: (p.fh, 0),
                              D.FX: (p.fw, 0)}.items():
        o.sizes[d], o.strides[d] = size, stride
    if par == 2:
        i.sizes[D.M] //= 2
        o.sizes[D.M] //= 2
        o.strides = [s if d == D.M else s // 2 for d, s in enumerate(o.strides)]
    for d in range(D.N):
        if i.active(d) and i.sizes[d] > MAX_N:
            return False, []
        if o.active(d) and (o.sizes[d] > MAX_N or o.strides[d] > MAX_STRIDE):
            return False, []
    o.flatten(D.INCH, D.M)
    if not o.ok:
        return False, []
    programs = []
    for ox_min, ox_max, fx0, fw_t in _edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w):
        w_t = ox_max - ox_min + 1
        oy_min = 0
        ys = list(_edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h))
        # walk the y runs by hand: a run split into groups hands its remainder to a new run
        while oy_min < p.h_out:
            run = next(r for r in ys if r[0] <= oy_min <= r[1]) if oy_min <= ys[-1][1] else None
            if run is None:
                break
            _, oy_max, fy0, fh_t = run
            origin = oy_min * p.stride_h - p.pad_h
            fy0 = max(0, -origin)
            fh_t = min(p.fh, p.h_in - origin) - fy0
            h_t = oy_max - oy_min + 1
            ii, oo = i.copy(), o.copy()
            for d in (ii, oo):
                d.sizes[D.OX], d.sizes[D.FX], d.sizes[D.OYO], d.sizes[D.FY] = w_t, fw_t, h_t, fh_t
            oy_groups, oy_offsets = 1, h_t
            if ii.n_active() > 3 or ii.strides[D.OYO] > MAX_STRIDE:
                if ii.active(D.OYO) and ii.active(D.OX):
                    new = ii.flatten(D.OYO, D.OX, dry=True)
                    if new > MAX_N:
                        group = _ceil_div(fh_t, p.stride_h)
                        q, r = divmod(h_t, group)
                        oy_max -= r
                        h_t = oy_max - oy_min + 1
                        ii.sizes[D.OYO] = oo.sizes[D.OYO] = h_t
                        ii.unflatten(D.OYG, D.OYO, group)
                        oo.unflatten(D.OYG, D.OYO, group)
                        oy_offsets, oy_groups = group, q
                    ii.flatten(D.OYO, D.OX)
                    if ii.sizes[D.OX] > MAX_N:
                        return False, []
            if ii.n_active() > 3 or ii.strides[D.OYG] > MAX_STRIDE:
                if ii.active(D.OYG) and ii.active(D.FY):
                    ii.flatten(D.OYG, D.FY)
            if not ii.ok or ii.n_active() > 4:
                return False, []
            if oo.n_active() > 3 or oo.strides[D.OYO] > MAX_STRIDE:
                if oo.active(D.OYO) and oo.active(D.OX):
                    oo.flatten(D.OYO, D.OX)
            if not oo.ok or oo.n_active() > 3:
                return False, []
            oyg_extra = 0
            if oo.active(D.OYG) and oo.strides[D.OYG] > MAX_STRIDE:
                if oo.strides[D.OYG] % oy_offsets:
                    return False, []
                oo.strides[D.OYG] //= oy_offsets
                oo.sizes[D.OYG] *= oy_offsets
                factor = oy_offsets
                while oo.strides[D.OYG] > MAX_STRIDE:
                    if oo.strides[D.OYG] % 2:
                        return False, []
                    oo.strides[D.OYG] //= 2
                    oo.sizes[D.OYG] *= 2
                    factor *= 2
                oyg_extra = factor - 1
            outside = False
            if ii.n_active() > 3:
                if not ii.active(D.INCH):
                    return False, []
                outside = True
                ii.sizes[D.INCH] = oo.sizes[D.INCH] = 1
            if w_t == 1 and (h_t == 1 or fh_t == 1 or fw_t == 1) and outside:
                return False, []
            if ii.n_active() > 3:
                return False, []
            in_dims, out_dims = ii.mvp_dims(), oo.mvp_dims()
            if not (ii.ok and oo.ok):
                return False, []
            prog = _dw_generic_program(p, ii, oo, in_dims, out_dims, par, mult, outside, w_t, fw_t, fh_t,
                                       oy_offsets, oy_groups, oyg_extra,
                                       (max(origin, 0) * W + max(ox_min * p.stride_w - p.pad_w, 0)) * C,
                                       (oy_min * Wo + ox_min) * Co, (fy0 * p.fw + fx0) * Co)
            programs.append((prog, p.batches * (C if outside else 1)))
            oy_min = oy_max + 1
    n_programs = sum(n for _, n in programs)
    macs = p.fh * p.fw * p.h_out * p.w_out * p.c_out
    if n_programs == 0 or macs // n_programs < 120:
        return False, programs
    if any(violations(prog) for prog, _ in programs):
        return False, programs
    return True, programs


def _dw_generic_program(p, ii, oo, in_dims, out_dims, par, mult, outside, w_t, fw_t, fh_t,
                        oy_offsets, oy_groups, oyg_extra, i_off, o_off, f_off) -> Program:
    D = _Dims
    packed = par == 2
    b = ProgramBuilder("depthwise_conv_2d/generic")
    b.reg(0, S, S if packed else 0.0)
    b.reg(1, -p.input_zp * S, -p.input_zp * S if packed else 0.0)
    b.reg(2, p.output_zp, p.output_zp if packed else 0.0)

    def arr(dims, names):
        sizes = [dims.sizes[k] for k in names] + [1] * (3 - len(names))
        strides = [dims.strides[k] for k in names] + [0] * (3 - len(names))
        return tuple(sizes), tuple(strides)

    sz, st = arr(ii, in_dims)
    b.array(0, "input", i_off, "int8", False, sz, st)
    sz, st = arr(oo, out_dims)
    b.array(1, "output", o_off, "int8", packed, sz, st)
    b.array(2, "filter", f_off, "int8", packed, (p.c_out // par, fw_t, fh_t),
            (1, p.c_out // par, p.fw * p.c_out // par))
    if p.has_bias:
        b.vector(3, "bias", 0, "binary16", packed, p.c_out // par)
    else:
        b.vector(3, "zero", 0, "binary16", packed, 1)
    b.vector(4, "scaler", 0, "binary16", packed, p.c_out // par)
    mdim = {k: j for j, k in enumerate(in_dims)}
    odim = {k: j for j, k in enumerate(out_dims)}

    def extra_noops(dims, dmap, dim, array, reg, loop_has_free):
        for (d1, d2), cnt in dims.extra.items():
            if d1 != dim or cnt == 0:
                continue
            if loop_has_free:
                cnt -= 1
                if d2 in dmap:
                    b.postloop_incr(array, dmap[d2])
            if cnt > 0:
                b.begin_loop(cnt)
                b.compute("NOOP", loads=[Load(reg, array, (dmap.get(d2, 0),))])
                b.end_loop()

    def incr_loop(dims, dmap, dim, array, reg):
        has = dims.active(dim)
        if has:
            b.postloop_incr(array, dmap[dim])
        extra_noops(dims, dmap, dim, array, reg, loop_has_free=not has)

    per_prog_ch = 1 if outside else p.c_in
    if per_prog_ch > 1:
        b.begin_loop(per_prog_ch)
    if mult // par > 1:
        b.begin_loop(mult // par)
    b.compute("COPY", z=5, a=4, loads=[Load(4, 3, (COL,)), Load(3, 4, (COL,))])
    b.begin_loop(oy_offsets)
    b.begin_loop(w_t)
    b.begin_loop(oy_groups)
    b.begin_loop(fh_t)
    b.begin_loop(fw_t)
    b.compute("MACC", z=6, x=6, y=0, a=1,
              loads=[Load(6, 0, (mdim[D.FX],) if D.FX in mdim else ()), Load(7, 2, (ROW,))])
    extra_noops(ii, mdim, D.FX, 0, 6, loop_has_free=False)
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(2, COL)
    incr_loop(ii, mdim, D.FY, 0, 6)
    b.end_loop()
    incr_loop(ii, mdim, D.OYG, 0, 6)
    b.compute("MACR2A", z=7, x=5, y=3, a=2,
              store=Store(7, 1, (odim[D.OYG],) if D.OYG in odim else ()))
    if oyg_extra == 0:
        b.compute("COPY", z=5, a=4)
    else:
        b.begin_loop(oyg_extra)
        b.compute("COPY", z=5, a=4, loads=[Load(7, 1, (odim.get(D.OYG, 0),))])
        b.end_loop()
    b.end_loop()
    incr_loop(ii, mdim, D.OX, 0, 7)
    incr_loop(oo, odim, D.OX, 1, 6)
    b.end_loop()
    incr_loop(oo, odim, D.OYO, 1, 7)
    incr_loop(ii, mdim, D.OYO, 0, 6)
    b.end_loop()
    b.postloop_incr(2, VEC)
    incr_loop(oo, odim, D.M, 1, 7)
    if mult // par > 1:
        b.end_loop()
    incr_loop(ii, mdim, D.INCH, 0, 6)
    if per_prog_ch > 1:
        b.end_loop()
    return b.build()


def depthwise_paths(p: LayerParams) -> DepthwisePaths:
    mult = p.c_out // max(1, p.c_in)
    shape_ok = p.dilation_h == 1 and p.dilation_w == 1 and mult == 1
    eff_aligned = p.c_out // 2 if p.c_out % 2 == 0 else p.c_out
    opt_feasible = shape_ok and _dw_opt_feasible(p, eff_aligned)
    opt_considered = shape_ok and p.h_in * p.w_in <= 4 * p.fw * p.fh * p.c_out
    generic_ok, generic_programs = _dw_generic(p)
    return DepthwisePaths(opt_considered, opt_feasible, generic_ok, generic_programs,
                          prepare_depends_on_alignment=opt_considered and opt_feasible and not generic_ok)


def _plan_depthwise(p: LayerParams) -> LayerPlan:
    paths = depthwise_paths(p)
    # Prepare's verdict: optimized path first when considered, generic as the fallback
    prepare_ok = (paths.opt_considered and paths.opt_feasible) or paths.generic_feasible
    fail = checks.check_depthwise_path(p, paths) if not prepare_ok else None
    if fail:
        return LayerPlan(False, fail, "depthwise_conv_2d/cmsis")
    # Eval's choice: the optimized path for small inputs, else generic (no 120-MAC rule when
    # executing), else optimized anyway
    use_opt = paths.opt_feasible and (paths.opt_considered or not paths.generic_programs
                                      or any(violations(pr) for pr, _ in paths.generic_programs))
    work: tuple = ()
    if use_opt:
        programs, expand = _per_pixel_classes(p, _dw_opt_program)
        kernel = "depthwise_conv_2d/mvp-opt"
    else:
        clamp, work = _clamp(p, p.batches * p.h_out * p.w_out * p.c_out)
        ordered = paths.generic_programs + clamp
        programs = _merge(ordered)
        expand = _dw_generic_launches(p, ordered)
        kernel = "depthwise_conv_2d/mvp"
    flagged = checks.check_depthwise_prepare_alignment(p, paths)
    if flagged:
        return LayerPlan(False, flagged, kernel, programs, runs_on_mvp=True, expand=expand, cpu_work=work,
                         note="vendor simulator: Prepare checks uninitialised bias/scaler pointers, so it "
                              "rejects this layer at random; when accepted (and on the board) it runs on the MVP")
    return LayerPlan(True, None, kernel, programs, runs_on_mvp=True, expand=expand, cpu_work=work)


def _dw_generic_launches(p: LayerParams, ordered: list):
    """A generic depthwise program counted once per input channel (the channel loop did not fit
    the program) is launched per channel, the CPU moving input, output, filter, bias and scaler
    to that channel; batches are 1 on this path."""
    mult = p.c_out // max(1, p.c_in)

    def expand():
        for program, count in ordered:
            if count == 1:
                yield program
                continue
            for c in range(count):
                yield shifted(program, {"input": c, "output": c * mult, "filter": c * mult,
                                        "bias": 2 * c * mult, "scaler": 2 * c * mult})
    return expand


# ------------------------------------------------------------------ fully_connected

def _fc_scaler(p: LayerParams) -> float:
    """The output scaler register: in_scale * w_scale / out_scale * 2^15 (one for all units)."""
    if not p.output_scale:
        return 0.0
    return min(p.input_scale * p.weight_scale / p.output_scale * 2.0 ** 15, checks.FP16_MAX)


def _fc_small_program(p: LayerParams) -> Program:
    packed = p.accum % 2 == 0
    k = 2 if packed else 1
    b = ProgramBuilder("fully_connected/small")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(3, _fc_scaler(p), _fc_scaler(p))
    b.reg(4, p.output_zp)
    b.array(0, "input", 0, "int8", packed, (1, p.batches, p.accum // k), (0, p.accum // k, 1))
    b.array(1, "filter", 0, "int8", packed, (1, p.units, p.accum // k), (0, p.accum // k, 1))
    if p.has_bias:
        b.vector(2, "bias", 0, "binary16", False, p.bias_length)
    else:
        b.vector(2, "zero", 0, "binary16", False, 1)
    b.array(3, "output", 0, "int8", False, (1, p.batches, p.units), (0, p.units, 1))
    b.begin_loop(p.batches)
    b.begin_loop(p.units)
    b.compute("NOOP", loads=[Load(5, 2, (COL,))])
    b.begin_loop(p.accum // k)
    b.compute("MACR2A", z=6, x=6, y=0, a=1, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(1, ROW)
    if packed:
        b.compute("ADDR", z=5, a=5)
    b.compute("MACR2A", z=5, x=5, y=3, a=4, store=Store(5, 3, (COL,)))
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(3, ROW)
    b.end_loop()
    return b.build()


def _fc_large_program(p: LayerParams, batch: int, unit: int, bias: float = 0.0) -> Program:
    """One output of the large-input path; the CPU puts the unit's fp16 bias into R5."""
    packed = p.accum % 2 == 0
    n, m = checks.factorize(p.fc_loop_count)
    b = ProgramBuilder("fully_connected/large")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(3, _fc_scaler(p), _fc_scaler(p))
    b.reg(4, p.output_zp)
    b.reg(5, bias)
    b.array(0, "input", batch * p.accum, "int8", packed, (1, n, m), (0, m, 1))
    b.array(1, "filter", unit * p.accum, "int8", packed, (1, n, m), (0, m, 1))
    b.vector(3, "output", batch * p.units + unit, "int8", False, 1)
    b.begin_loop(n)
    b.begin_loop(m)
    b.compute("MACR2A", z=6, x=6, y=0, a=1, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(1, ROW)
    b.end_loop()
    if packed:
        b.compute("ADDR", z=5, a=5)
    b.compute("MACR2A", z=5, x=5, y=3, a=4, store=Store(5, 3, (COL,)))
    return b.build()


def _plan_fc(p: LayerParams) -> LayerPlan:
    fail = _first_failure(checks.check_fc_weight_zero_point(p), checks.check_fc_accum_factorizable(p),
                          checks.check_fc_units(p), checks.check_fc_bias_fp16(p))
    if fail:
        return LayerPlan(False, fail, "fully_connected/cmsis")
    clamp, work = _clamp(p, p.batches * p.units)
    if not p.fc_large_input:
        programs = [(_fc_small_program(p), 1)] + clamp
        fit = checks.check_programs_fit(p, programs)
        if fit:
            return LayerPlan(False, fit, "fully_connected/cmsis")
        return LayerPlan(True, None, "fully_connected/mvp", _merge(programs), runs_on_mvp=True,
                         expand=lambda: (pr for pr, _ in programs), cpu_work=work)
    bias = np.frombuffer(p.bias_f16, dtype=np.float16) if p.bias_f16 else np.zeros(p.units, np.float16)

    def expand():
        for batch in range(p.batches):
            for unit in range(p.units):
                yield _fc_large_program(p, batch, unit, float(bias[unit]))
        for program, _ in clamp:
            yield program
    programs = [(_fc_large_program(p, 0, 0), p.batches * p.units)] + _merge(clamp)
    return LayerPlan(False, checks.check_fc_large_input_flagged(p), "fully_connected/mvp-large", programs,
                     runs_on_mvp=True, expand=expand, cpu_work=work,
                     note="vendor simulator logs this message although the large-input MVP path runs the layer")


# ------------------------------------------------------------------ add

def _elementwise_registers(p: LayerParams) -> dict[int, float]:
    """ADD: R0 = -zp1*s1, R1 = s1, R2 = -zp2*s2, R3 = s2, R4 = zp_out, R5 = 1/s_out; MUL: R0 = -zp1,
    R1 = -zp2, R2 = zp_out, R3 = s1*s2/s_out. Prepare computes them in float32; the registers
    round them to binary16."""
    f32 = np.float32
    s1, s2, so = f32(p.input_scale), f32(p.input2_scale), f32(p.output_scale)
    if p.opcode == "add":
        return {0: f32(-p.input_zp) * s1, 1: s1, 2: f32(-p.input2_zp) * s2, 3: s2,
                4: float(p.output_zp), 5: f32(1.0) / so if so else 0.0}
    return {0: float(-p.input_zp), 1: float(-p.input2_zp), 2: float(p.output_zp),
            3: s1 * s2 / so if so else 0.0}


def _elementwise_program(p: LayerParams, n_pairs: int, byte_offset: int) -> Program:
    """ADD or MUL over n_pairs complex int8 pairs (the vendor's 4-instruction loops)."""
    kind = p.opcode
    b = ProgramBuilder(f"{kind}/main")
    for r, v in _elementwise_registers(p).items():
        b.reg(r, v, v)
    b.vector(0, "input", byte_offset, "int8", True, n_pairs)
    b.vector(1, "input2", byte_offset, "int8", True, n_pairs)
    b.vector(2, "output", byte_offset, "int8", True, n_pairs)
    b.begin_loop(n_pairs)
    if kind == "add":
        # x1*s1 - zp1*s1, x2*s2 - zp2*s2, sum, sum/s_out + zp_out
        b.compute("MACR2A", z=6, x=6, y=1, a=0, loads=[Load(6, 0, (COL,))])
        b.compute("MACR2A", z=7, x=7, y=3, a=2, loads=[Load(7, 1, (COL,))])
        b.compute("ADDC", z=6, x=6, a=7)
        b.compute("MACR2A", z=7, x=6, y=5, a=4, store=Store(7, 2, (COL,)))
    else:
        # (x1 - zp1) * (x2 - zp2) * multiplier + zp_out
        b.compute("ADDC", z=4, x=4, a=0, loads=[Load(4, 0, (COL,))])
        b.compute("ADDC", z=5, x=5, a=1, loads=[Load(5, 1, (COL,))])
        b.compute("MULR2A", z=6, x=4, y=5)
        b.compute("MACR2A", z=6, x=6, y=3, a=2, store=Store(6, 2, (COL,)))
    b.end_loop()
    return b.build()


def _plan_elementwise(p: LayerParams, n_elements: int) -> LayerPlan:
    kind = p.opcode
    if checks.check_add_same_shape(p):
        # the vendor kernel quietly uses the CPU reference for broadcasts: nothing is rejected
        return LayerPlan(True, None, f"{kind}/cpu-broadcast", [], note=f"broadcast {kind} runs on the CPU")
    ordered = []
    start = 0
    while n_elements - start >= 2:
        n = min(2048, n_elements - start) // 2
        ordered.append((_elementwise_program(p, n, start), 1))
        start += 2 * n
    work: tuple = ()
    if start < n_elements:
        # the odd last element, on the CPU in float (FACTS: ADD in float32 with round(); MUL's
        # product in binary16)
        f32 = np.float32
        work = ({"op": "odd_element", "kind": kind, "index": start, "input_zp": p.input_zp,
                 "input2_zp": p.input2_zp, "output_zp": p.output_zp,
                 "s1": float(f32(p.input_scale)), "s2": float(f32(p.input2_scale)),
                 "multiplier": float(f32(1.0) / f32(p.output_scale)) if kind == "add" else
                 float(f32(p.input_scale) * f32(p.input2_scale) / f32(p.output_scale))},)
    clamp, clamp_work = _clamp(p, n_elements)
    ordered += clamp
    return LayerPlan(True, None, f"{kind}/mvp", _merge(ordered), runs_on_mvp=True,
                     expand=lambda: (pr for pr, _ in ordered), cpu_work=work + clamp_work)


# ------------------------------------------------------------------ pooling

def _pool_opt_program(p: LayerParams, out_y: int, out_x: int) -> Program:
    packed = p.c_in % 2 == 0
    cp = p.c_in // 2 if packed else p.c_in
    ix, iy = out_x * p.stride_w - p.pad_w, out_y * p.stride_h - p.pad_h
    fx0, fy0 = max(0, -ix), max(0, -iy)
    nx = min(p.fw, p.w_in - ix) - fx0
    ny = min(p.fh, p.h_in - iy) - fy0
    b = ProgramBuilder("average_pool_2d/opt")
    scale = float(np.float16(2.0 ** 15 / max(1, nx * ny)))
    b.reg(0, scale, scale)
    b.reg(1, S, S)
    if p.do_activation:
        b.reg(4, p.act_min, p.act_min)
        b.reg(5, p.act_max, p.act_max)
    b.array(0, "input", ((iy + fy0) * p.w_in + ix + fx0) * p.c_in, "int8", packed,
            (cp, p.h_in, p.w_in), (1, p.w_in * cp, cp))
    b.array(1, "output", (out_y * p.w_out + out_x) * p.c_in, "int8", packed,
            (cp, p.h_out, p.w_out), (1, p.w_out * cp, cp))
    b.begin_loop(cp)
    b.compute("CLEAR", z=2)
    b.begin_loop(ny)
    b.begin_loop(nx)
    b.compute("MACR2A", z=2, x=3, y=1, a=2, loads=[Load(3, 0, (COL,))])
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_reset(0, COL)
    b.end_loop()
    b.postloop_incr(0, VEC)
    b.postloop_reset(0, ROW)
    if p.do_activation:
        b.compute("MULR2A", z=2, x=2, y=0)
        b.compute("CLIP2A", z=6, x=4, y=5, a=2, store=Store(6, 1, (VEC,)))
    else:
        b.compute("MULR2A", z=2, x=2, y=0, store=Store(2, 1, (VEC,)))
    b.end_loop()
    return b.build()


def _pool_generic_programs(p: LayerParams, is_max: bool) -> list:
    """The generic pooling programs in launch order [(Program, batches x channel programs)], each
    for batch 0 and the first channel (pair): like conv, per (x edge group, y edge group, out_y
    offset) one program walks the output pixels, the window rows and columns; the CPU walks
    batches and channels (two per program when the depth is even)."""
    packed = p.c_in % 2 == 0
    k = 2 if packed else 1
    C = p.c_in
    kind = "max_pool_2d/generic" if is_max else "average_pool_2d/generic"
    out = []
    for ox_min, ox_max, fx0, fw_t in _edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w):
        w_t = ox_max - ox_min + 1
        single_x = w_t <= 1
        if not is_max and p.stride_h * p.w_in * C > MAX_STRIDE:
            single_x = False   # the average pool avoids the long row stride
        for oy_min, oy_max, fy0, fh_t in _edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h):
            h_t = oy_max - oy_min + 1
            in_y_extra, out_y_incr = _y_grouping(p.stride_h, h_t, fh_t, single_x)
            scale = float(np.float16(np.float32(2.0 ** 15) / np.float32(max(1, fw_t * fh_t))))
            for off in range(min(out_y_incr, h_t)):
                oy_size = _ceil_div(h_t - off, out_y_incr)
                extra_adj = 0 if oy_size == 1 else in_y_extra
                in_y_size = fh_t if single_x else (fh_t + extra_adj) * oy_size
                o_vec_stride, out_y_extra = out_y_incr * p.w_out * C, 0
                if o_vec_stride > MAX_STRIDE:
                    o_vec_stride, out_y_extra = p.w_out * C, out_y_incr - 1
                o_base = ((oy_min + off) * p.w_out + ox_min) * C
                i_base = (((oy_min + off) * p.stride_h - p.pad_h + fy0) * p.w_in
                          + ox_min * p.stride_w - p.pad_w + fx0) * C
                if single_x:
                    i_vec, i_vec_n = p.stride_h * p.w_in * C, h_t
                else:
                    i_vec, i_vec_n = p.stride_w * C, w_t
                b = ProgramBuilder(kind)
                if is_max:
                    b.reg(0, -128.0, -128.0)
                    b.reg(3, p.act_min, p.act_min)
                    b.reg(4, p.act_max, p.act_max)
                else:
                    b.reg(0, scale, scale)
                    b.reg(1, S, S)
                    if p.do_activation:
                        b.reg(4, p.act_min, p.act_min)
                        b.reg(5, p.act_max, p.act_max)
                b.array(0, "input", i_base, "int8", packed, (i_vec_n, in_y_size, fw_t),
                        (i_vec // k, p.w_in * C // k, C // k))
                b.array(1, "output", o_base, "int8", packed, (oy_size * (out_y_extra + 1), w_t, 1),
                        (o_vec_stride // k, C // k, 0))
                left = extra_adj

                def take():
                    nonlocal left
                    r = left > 0
                    left -= 1
                    return r

                b.begin_loop(w_t)
                b.begin_loop(oy_size)
                if is_max:
                    b.compute("COPY", z=1, a=0)
                else:
                    b.compute("CLEAR", z=2)
                b.begin_loop(fh_t)
                b.begin_loop(fw_t)
                if is_max:
                    b.compute("MAX2A", z=1, x=2, a=1, loads=[Load(2, 0, (COL,))])
                else:
                    b.compute("MACR2A", z=2, x=3, y=1, a=2, loads=[Load(3, 0, (COL,))])
                b.end_loop()
                b.postloop_incr(0, ROW)
                b.end_loop()
                if single_x:
                    b.postloop_incr(0, VEC)
                if take():
                    b.postloop_incr(0, ROW)
                row_load = take()
                if is_max:
                    b.compute("CLIP2A", z=5, x=3, y=4, a=1, loads=[Load(2, 0, (ROW,))] if row_load else [],
                              store=Store(5, 1, (VEC,)))
                else:
                    b.compute("MULR2A", z=2, x=2, y=0, loads=[Load(3, 0, (ROW,))] if row_load else [],
                              store=None if p.do_activation else Store(2, 1, (VEC,)))
                    if p.do_activation:
                        b.compute("CLIP2A", z=6, x=4, y=5, a=2, store=Store(6, 1, (VEC,)))
                if out_y_extra > 0:
                    b.begin_loop(out_y_extra)
                    b.begin_loop(1)
                    b.compute("NOOP")
                    b.end_loop()
                    b.postloop_incr(1, VEC)
                    b.end_loop()
                _row_skips(b, left, 0)
                b.end_loop()
                b.postloop_incr(1, ROW)
                if not single_x:
                    b.postloop_incr(0, VEC)
                b.end_loop()
                out.append((b.build(), p.batches * (C // k)))
    return out


def _pool_generic_launches(p: LayerParams, ordered: list):
    k = 2 if p.c_in % 2 == 0 else 1
    return _per_batch([(pr, 0) for pr, _ in ordered], p, p.h_in * p.w_in * p.c_in,
                      p.h_out * p.w_out * p.c_in, lambda ch: {"input": ch * k, "output": ch * k},
                      p.c_in // k)


@dataclass
class PoolPaths:
    opt_feasible: bool
    generic_feasible: bool
    generic_programs: list


def _pool_paths(p: LayerParams, is_max: bool) -> PoolPaths:
    cp = p.c_in // 2 if p.c_in % 2 == 0 else p.c_in
    opt = (not is_max and cp <= MAX_N and p.h_in <= MAX_N and p.w_in <= MAX_N
           and p.w_in * cp <= MAX_STRIDE and p.h_out <= MAX_N and p.w_out <= MAX_N
           and p.w_out * cp <= MAX_STRIDE)
    generic = _pool_generic_programs(p, is_max)
    window_ok = p.fh * p.fw <= 512
    gen_ok = (window_ok and p.stride_w * cp <= MAX_STRIDE and p.w_out * cp <= MAX_STRIDE
              and not any(violations(pr) for pr, _ in generic))
    return PoolPaths(opt, gen_ok, generic)


def _plan_pool(p: LayerParams, is_max: bool) -> LayerPlan:
    paths = _pool_paths(p, is_max)
    name = "max_pool_2d" if is_max else "average_pool_2d"
    fail = checks.check_pool_path(p, paths)
    if fail:
        return LayerPlan(False, fail, f"{name}/cmsis")
    prefer_generic = p.h_out * p.w_out > (9 * p.fw * p.fh * p.c_in + 5) // 10
    if is_max or ((prefer_generic or not paths.opt_feasible) and paths.generic_feasible):
        return LayerPlan(True, None, f"{name}/mvp", _merge(paths.generic_programs), runs_on_mvp=True,
                         expand=_pool_generic_launches(p, paths.generic_programs))
    programs, expand = _per_pixel_classes(p, _pool_opt_program)
    return LayerPlan(True, None, f"{name}/mvp-opt", programs, runs_on_mvp=True, expand=expand)


# ------------------------------------------------------------------ transpose_conv

def _tc_memclr_program(p: LayerParams) -> Program:
    """Zeroes the fp16 accumulation buffer (H_out x W_out x C_out), two values at a time when a
    dimension is even."""
    d, h, w = p.c_out, p.h_out, p.w_out
    packed = True
    if d % 2 == 0:
        d //= 2
    elif h % 2 == 0:
        h //= 2
    elif w % 2 == 0:
        w //= 2
    else:
        packed = False
    b = ProgramBuilder("transpose_conv/memclr")
    b.reg(0, 0.0, 0.0)
    b.array(0, "scratch", 0, "binary16", packed, (d, h, w), (1, w * d, d))
    b.begin_loop(d)
    b.begin_loop(w)
    b.begin_loop(h)
    b.compute("NOOP", store=Store(0, 0, (ROW,)))
    b.end_loop()
    b.postloop_incr(0, COL)
    b.end_loop()
    b.postloop_incr(0, VEC)
    b.end_loop()
    return b.build()


def _tc_scatter_program(p: LayerParams, in_y: int, in_x: int, out_channel: int) -> Program:
    """One input pixel's contribution to one output channel: scratch += x' * filter over the window."""
    oy, ox = in_y * p.stride_h - p.pad_h, in_x * p.stride_w - p.pad_w
    fy0, fx0 = max(0, -oy), max(0, -ox)
    ny, nx = min(p.fh, p.h_out - oy) - fy0, min(p.fw, p.w_out - ox) - fx0
    b = ProgramBuilder("transpose_conv/scatter")
    b.reg(0, S)
    b.reg(1, -p.input_zp * S)
    b.array(0, "input", (in_y * p.w_in + in_x) * p.c_in, "int8", False, (p.c_in, p.h_in, p.w_in),
            (1, p.w_in * p.c_in, p.c_in))
    b.array(1, "filter", (out_channel * p.fh * p.fw + fy0 * p.fw + fx0) * p.c_in, "int8", False,
            (p.c_in, p.fh, p.fw), (1, p.fw * p.c_in, p.c_in))
    b.array(2, "scratch", 2 * (((oy + fy0) * p.w_out + ox + fx0) * p.c_out + out_channel), "binary16", False,
            (p.c_out, p.h_out, p.w_out), (1, p.w_out * p.c_out, p.c_out))
    b.begin_loop(p.c_in)
    b.compute("MACR2A", z=5, x=2, y=0, a=1, loads=[Load(2, 0)])
    b.begin_loop(ny)
    b.begin_loop(nx)
    b.compute("MACR2A", z=7, x=5, y=3, a=4, loads=[Load(4, 2), Load(3, 1, (COL,))], store=Store(7, 2, (COL,)))
    b.end_loop()
    b.postloop_reset(2, COL)
    b.postloop_reset(1, COL)
    b.postloop_incr(2, ROW)
    b.postloop_incr(1, ROW)
    b.end_loop()
    b.postloop_reset(2, ROW)
    b.postloop_reset(1, ROW)
    b.postloop_incr(0, VEC)
    b.postloop_incr(1, VEC)
    b.end_loop()
    return b.build()


def _tc_output_program(p: LayerParams) -> Program:
    """scratch + bias, times the scaler, plus the output zero point, clipped, stored as int8."""
    packed = p.c_out % 2 == 0
    d = p.c_out // 2 if packed else p.c_out
    b = ProgramBuilder("transpose_conv/output")
    b.reg(0, p.output_zp, p.output_zp)
    if p.do_activation:
        b.reg(1, p.act_min, p.act_min)
        b.reg(2, p.act_max, p.act_max)
    b.array(2, "scratch", 0, "binary16", packed, (d, p.h_out, p.w_out), (1, p.w_out * d, d))
    b.array(0, "output", 0, "int8", packed, (d, p.h_out, p.w_out), (1, p.w_out * d, d))
    if p.has_bias:
        b.vector(1, "bias", 0, "binary16", packed, d)
    else:
        b.vector(1, "zero", 0, "binary16", packed, 1)
    b.vector(3, "scaler", 0, "binary16", packed, d)
    b.compute("NOOP", loads=[Load(4, 1, (COL,))])
    b.begin_loop(p.h_out)
    b.begin_loop(p.w_out)
    b.compute("NOOP", loads=[Load(3, 2)])
    b.begin_loop(d)
    b.compute("ADDC", z=7, x=3, a=4, loads=[Load(5, 3, (COL,))])
    if p.do_activation:
        b.compute("MACR2A", z=7, x=7, y=5, a=0, loads=[Load(3, 2, (VEC,)), Load(4, 1, (COL,))])
        b.compute("CLIP2A", z=7, x=1, y=2, a=7, store=Store(7, 0, (VEC,)))
    else:
        b.compute("MACR2A", z=7, x=7, y=5, a=0, loads=[Load(3, 2, (VEC,)), Load(4, 1, (COL,))],
                  store=Store(7, 0, (VEC,)))
    b.end_loop()
    b.postloop_incr(0, COL)
    b.postloop_incr(2, COL)
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(2, ROW)
    b.end_loop()
    return b.build()


def _plan_transpose_conv(p: LayerParams) -> LayerPlan:
    p.pad_h = max(0, (p.h_in - 1) * p.stride_h + p.fh - p.h_out) // 2 if p.padding_same else 0
    p.pad_w = max(0, (p.w_in - 1) * p.stride_w + p.fw - p.w_out) // 2 if p.padding_same else 0

    def window_counts(n_in, stride, pad, f, n_out):
        hist: dict[int, int] = {}
        first: dict[int, int] = {}
        for i in range(n_in):
            o = i * stride - pad
            k = min(f, n_out - o) - max(0, -o)
            hist[k] = hist.get(k, 0) + 1
            first.setdefault(k, i)
        return hist, first

    ys, y_first = window_counts(p.h_in, p.stride_h, p.pad_h, p.fh, p.h_out)
    xs, x_first = window_counts(p.w_in, p.stride_w, p.pad_w, p.fw, p.w_out)
    programs = [(_tc_memclr_program(p), p.batches)]
    for ky, ny in ys.items():
        for kx, nx in xs.items():
            if ky > 0 and kx > 0:
                programs.append((_tc_scatter_program(p, y_first[ky], x_first[kx], 0), ny * nx * p.c_out * p.batches))
    programs.append((_tc_output_program(p), p.batches))
    fail = checks.check_programs_fit(p, programs)
    if fail:
        return LayerPlan(False, fail, "transpose_conv/reference")

    def expand():
        for _ in range(p.batches):
            yield programs[0][0]
            for y in range(p.h_in):
                for x in range(p.w_in):
                    for c in range(p.c_out):
                        yield _tc_scatter_program(p, y, x, c)
            yield programs[-1][0]
    return LayerPlan(True, None, "transpose_conv/mvp", _merge(programs), runs_on_mvp=True, expand=expand,
                     scratch_bytes=2 * p.h_out * p.w_out * p.c_out)


# ------------------------------------------------------------------ entry point

def plan_layer(graph: Graph, op: Operator) -> LayerPlan:
    """What the MVP does with one layer: the vendor's verdict and the programs it launches."""
    code = op.opcode
    if code not in MVP_OPCODES:
        return LayerPlan(False, f"no MVP kernel for {code}", f"{code}/cpu", has_mvp_kernel=False)
    p = layer_params(graph, op)
    fail = checks.check_int8(p)
    if fail:
        return LayerPlan(False, fail, f"{code}/reference")
    n_out = graph.op_outputs(op)[0].n_elements
    # layers repeat (mobilenets): plan each distinct shape once; plans are shared, do not mutate them
    key = (tuple(p.__dict__.values()), n_out)
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        if len(_PLAN_CACHE) > 4096:
            _PLAN_CACHE.clear()
        plan = _PLAN_CACHE[key] = _plan(p, n_out)
    return plan


_PLAN_CACHE: dict = {}


def _plan(p: LayerParams, n_out: int) -> LayerPlan:
    code = p.opcode
    if code == "conv_2d":
        return _plan_conv(p)
    if code == "depthwise_conv_2d":
        return _plan_depthwise(p)
    if code == "fully_connected":
        return _plan_fc(p)
    if code in ("add", "mul"):
        return _plan_elementwise(p, n_out)
    if code in ("average_pool_2d", "max_pool_2d"):
        return _plan_pool(p, code == "max_pool_2d")
    return _plan_transpose_conv(p)


def prepare_constants(graph: Graph, op: Operator) -> dict[str, np.ndarray]:
    """The fp16 buffers Prepare derives for an MVP layer: bias * 2^-15 and the per-channel output
    scaler in_scale * w_scale / out_scale * 2^15 (clamped to the fp16 range)."""
    ins = graph.op_inputs(op)
    if op.opcode == "transpose_conv":   # inputs: output shape, filter, input, bias
        x, w, bias = ins[2], ins[1], ins[3] if len(ins) > 3 else None
    else:
        x, w, bias = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    out = graph.op_outputs(op)[0]
    consts: dict[str, np.ndarray] = {}
    if bias is not None and bias.data is not None:
        consts["bias"] = _bias_f16(bias.data)
    if x.scale is not None and w.scale is not None and out.scale is not None:
        scaler = float(x.scale[0]) * w.scale.astype(np.float64) / float(out.scale[0]) * 2.0 ** 15
        consts["scaler"] = np.clip(scaler, -checks.FP16_MAX, checks.FP16_MAX).astype(np.float16)
    consts["zero"] = np.zeros(2, dtype=np.float16)
    return consts
