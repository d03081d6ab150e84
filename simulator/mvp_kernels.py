"""Which MVP programs each layer compiles to, following the SDK kernels' program builders.

`plan_layer(graph, op)` returns a `LayerPlan`: whether the vendor's MVP kernels accept the layer
(and the reason when not), which kernel path runs it, and the programs it launches as
(Program, repeat count) pairs. Identical launches are counted, not materialised, so planning a
model takes milliseconds; `LayerPlan.launches()` yields every launch with its exact buffer
offsets, in execution order, for the emulator.

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
from simulator.mvp_program import COL, ROW, VEC, Load, Program, ProgramBuilder, Store, violations

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
        bias = ins[2] if len(ins) > 2 else None
    elif code in ("conv_2d", "depthwise_conv_2d"):
        bias = ins[2] if len(ins) > 2 else None
    elif code == "transpose_conv":
        bias = ins[3] if len(ins) > 3 else None
    elif code in ("add", "mul"):
        p.input2_shape = tuple(ins[1].shape)
    if bias is not None:
        p.has_bias = True
        p.bias_length = bias.n_elements
        if bias.data is not None and bias.data.size:
            p.bias_max_abs = float(np.max(np.abs(bias.data.astype(np.float64))))
    return p


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


def _clamp_programs(p: LayerParams, n_elements: int) -> list:
    """The int8 clamp pass after conv, generic depthwise, FC and ADD: programs of up to 2048
    elements (4 per iteration as complex int8 pairs); the remainder and small outputs on the CPU."""
    if not p.do_activation or n_elements <= CLAMP_CPU_MAX_ELEMENTS:
        return []
    pairs: dict[int, int] = {}
    start = 0
    while n_elements - start >= 4:
        n = min(2048, n_elements - start) // 4
        pairs[n] = pairs.get(n, 0) + 1
        start += 4 * n
    out = []
    for n, count in pairs.items():
        b = ProgramBuilder("clamp/i8")
        b.reg(0, p.act_min, p.act_min)
        b.reg(1, p.act_max, p.act_max)
        b.array(0, "output", 0, "int8", True, (1, n, 2), (0, 2, 1))
        b.begin_loop(n)
        b.begin_loop(2)
        b.compute("CLIP2A", z=2, x=0, y=1, a=2, loads=[Load(2, 0)], store=Store(2, 0, (COL,)))
        b.end_loop()
        b.postloop_incr(0, ROW)
        b.end_loop()
        out.append((b.build(), count))
    return out


def _merge(pairs: list) -> list:
    """Adds up the counts of identical programs."""
    merged: dict = {}
    for program, n in pairs:
        merged[program] = merged.get(program, 0) + n
    return list(merged.items())


# ------------------------------------------------------------------ conv_2d

def _conv_prescale_program(p: LayerParams, h: int, w: int, byte_offset: int) -> Program:
    """SL_MVP_OPTIMIZE_SPEED: the input converted once to fp16 (x - zp) * 2^-15 into a scratch buffer."""
    c = p.c_in
    packed = c % 2 == 0 and (w * c) % 2 == 0 and byte_offset % 2 == 0
    cp = c // 2 if packed else c
    b = ProgramBuilder("conv_2d/prescale")
    b.reg(0, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S if packed else 0.0)
    b.array(0, "input", byte_offset, "int8", packed, (h, w, cp), (w * cp, cp, 1))
    b.array(1, "scratch", 2 * byte_offset, "binary16", packed, (h, w, cp), (w * cp, cp, 1))
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


def _conv_main_programs(p: LayerParams, w_in: int, w_out: int, pad_w: int,
                        in_col0: int, out_col0: int) -> list:
    """The conv programs for one (possibly chunked) width: [(Program, count)]; count covers batches."""
    out = []
    ci, co = p.c_in, p.c_out
    for ox_min, ox_max, fx_start, fw_t in _edge_groups(w_out, w_in, p.fw, p.stride_w, pad_w):
        w_t = ox_max - ox_min + 1
        single_x = w_t <= 1
        for oy_min, oy_max, fy_start, fh_t in _edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h):
            h_t = oy_max - oy_min + 1
            if h_t == 1 or single_x or p.stride_h == fh_t:
                in_y_extra, out_y_incr = 0, 1
            elif p.stride_h > fh_t:
                in_y_extra, out_y_incr = p.stride_h - fh_t, 1
            else:
                q, r = divmod(fh_t, p.stride_h)
                out_y_incr, in_y_extra = (q, 0) if r == 0 else (q + 1, p.stride_h - r)
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
                x0 = in_col0 + ox_min * p.stride_w - pad_w + fx_start
                i_base = (y0 * p.w_in + x0) * ci
                i_col, i_row = fw_t * ci, p.w_in * ci
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
                if left == 1:
                    b.begin_loop(1)
                    b.compute("NOOP")
                    b.end_loop()
                    b.postloop_incr(0, ROW)
                elif left > 1:
                    b.begin_loop(left - 1)
                    b.begin_loop(1)
                    b.compute("NOOP")
                    b.end_loop()
                    b.postloop_incr(0, ROW)
                    b.end_loop()
                    b.postloop_incr(0, ROW)
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
    if p.is_wide_conv1d:
        programs = _conv1d_chunks(p)
        kernel = "conv_2d/mvp-conv1d"
    else:
        programs = [(_conv_prescale_program(p, p.h_in, p.w_in, 0), p.batches)]
        programs += _conv_main_programs(p, p.w_in, p.w_out, p.pad_w, 0, 0)
        kernel = "conv_2d/mvp"
    fail = checks.check_programs_fit(p, programs) if programs else "Hardware limits exceeded"
    if fail:
        return LayerPlan(False, fail, "conv_2d/cmsis")
    programs = _merge(programs + _clamp_programs(p, p.batches * p.h_out * p.w_out * p.c_out))
    return LayerPlan(True, None, kernel, programs, runs_on_mvp=True)


def _conv1d_chunks(p: LayerParams) -> list:
    """Wide Conv1D: SAME-padded edge columns on the CPU, the rest as VALID convolutions over
    width chunks that fit the MVP, each with its own input pre-scaling program."""
    out = []
    remaining_in, remaining_out, in_col, out_col = p.w_in, p.w_out, 0, 0
    if p.padding_same:
        total = max((p.w_out - 1) * p.stride_w + p.fw - p.w_in, 0)
        pad_left, pad_right = total // 2, total - total // 2
        while pad_left > 0:      # one output column each, computed on the CPU
            pad_left -= p.stride_w
            out_col += 1
            remaining_out -= 1
        while pad_right > 0:
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
        out.append((_conv_prescale_program(sub, 1, chunk_in, in_col * p.c_in), p.batches))
        out += _conv_main_programs(sub, chunk_in, chunk_out, 0, 0, 0)
        step = chunk_in - p.fw + p.stride_w
        remaining_in -= step
        remaining_out -= chunk_out
        in_col += step
        out_col += chunk_out
    return out


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

    def expand():
        for _ in range(p.batches):
            for y in range(p.h_out):
                for x in range(p.w_out):
                    yield builder(p, y, x)
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
    if use_opt:
        programs, expand = _per_pixel_classes(p, _dw_opt_program)
        kernel = "depthwise_conv_2d/mvp-opt"
    else:
        programs, expand = paths.generic_programs, None
        programs = programs + _clamp_programs(p, p.batches * p.h_out * p.w_out * p.c_out)
        kernel = "depthwise_conv_2d/mvp"
    flagged = checks.check_depthwise_prepare_alignment(p, paths)
    if flagged:
        return LayerPlan(False, flagged, kernel, programs, runs_on_mvp=True, expand=expand,
                         note="vendor simulator: Prepare checks uninitialised bias/scaler pointers, so it "
                              "rejects this layer at random; when accepted (and on the board) it runs on the MVP")
    return LayerPlan(True, None, kernel, programs, runs_on_mvp=True, expand=expand)


# ------------------------------------------------------------------ fully_connected

def _fc_small_program(p: LayerParams) -> Program:
    packed = p.accum % 2 == 0
    k = 2 if packed else 1
    b = ProgramBuilder("fully_connected/small")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
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


def _fc_large_program(p: LayerParams, batch: int, unit: int) -> Program:
    packed = p.accum % 2 == 0
    n, m = checks.factorize(p.fc_loop_count)
    b = ProgramBuilder("fully_connected/large")
    b.reg(0, S, S)
    b.reg(1, -p.input_zp * S, -p.input_zp * S)
    b.reg(4, p.output_zp)
    b.reg(5, 0.0)  # the unit's bias (fp16), set per launch by the kernel
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
    clamp = _clamp_programs(p, p.batches * p.units)
    if not p.fc_large_input:
        programs = [(_fc_small_program(p), 1)] + clamp
        fit = checks.check_programs_fit(p, programs)
        if fit:
            return LayerPlan(False, fit, "fully_connected/cmsis")
        return LayerPlan(True, None, "fully_connected/mvp", programs, runs_on_mvp=True)

    def expand():
        for batch in range(p.batches):
            for unit in range(p.units):
                yield _fc_large_program(p, batch, unit)
        for program, n in clamp:
            for _ in range(n):
                yield program
    programs = [(_fc_large_program(p, 0, 0), p.batches * p.units)] + clamp
    return LayerPlan(False, checks.check_fc_large_input_flagged(p), "fully_connected/mvp-large", programs,
                     runs_on_mvp=True, expand=expand,
                     note="vendor simulator logs this message although the large-input MVP path runs the layer")


# ------------------------------------------------------------------ add

def _elementwise_program(kind: str, n_pairs: int, byte_offset: int) -> Program:
    """ADD or MUL over n_pairs complex int8 pairs (the vendor's 4-instruction loops)."""
    b = ProgramBuilder(f"{kind}/main")
    for r in range(6):
        b.reg(r, 0.0, 0.0)  # offsets and multipliers come from the quantization, set by Prepare
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
    chunks = []
    start = 0
    while n_elements - start >= 2:
        n = min(2048, n_elements - start) // 2
        chunks.append((n, start))
        start += 2 * n
    pairs: dict[int, int] = {}
    for n, _ in chunks:
        pairs[n] = pairs.get(n, 0) + 1
    clamp = _clamp_programs(p, n_elements)
    programs = [(_elementwise_program(kind, n, 0), c) for n, c in pairs.items()] + clamp

    def expand():
        for n, off in chunks:
            yield _elementwise_program(kind, n, off)
        for program, c in clamp:
            for _ in range(c):
                yield program
    return LayerPlan(True, None, f"{kind}/mvp", programs, runs_on_mvp=True, expand=expand)


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
    """One program per channel (pair) and edge group: the CPU walks channels, the MVP the pixels."""
    packed = p.c_in % 2 == 0
    cp = p.c_in // 2 if packed else p.c_in
    kind = "max_pool_2d/generic" if is_max else "average_pool_2d/generic"
    out = []
    for ox_min, ox_max, fx0, nx in _edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w):
        for oy_min, oy_max, fy0, ny in _edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h):
            w_t, h_t = ox_max - ox_min + 1, oy_max - oy_min + 1
            b = ProgramBuilder(kind)
            if is_max:
                b.reg(2, -128.0, -128.0)
                b.reg(4, p.act_min, p.act_min)
                b.reg(5, p.act_max, p.act_max)
            else:
                scale = float(np.float16(2.0 ** 15 / max(1, nx * ny)))
                b.reg(0, scale, scale)
                b.reg(1, S, S)
                if p.do_activation:
                    b.reg(4, p.act_min, p.act_min)
                    b.reg(5, p.act_max, p.act_max)
            iy0 = oy_min * p.stride_h - p.pad_h + fy0
            ix0 = ox_min * p.stride_w - p.pad_w + fx0
            b.array(0, "input", (iy0 * p.w_in + ix0) * p.c_in, "int8", packed,
                    (h_t * ny, w_t, nx), (p.stride_h * p.w_in * cp if ny == 1 else p.w_in * cp,
                                          p.stride_w * cp, cp))
            b.array(1, "output", (oy_min * p.w_out + ox_min) * p.c_in, "int8", packed,
                    (h_t, w_t, 1), (p.w_out * cp, cp, 1))
            b.begin_loop(h_t)
            b.begin_loop(w_t)
            if is_max:
                b.compute("COPY", z=3, a=2)
            else:
                b.compute("CLEAR", z=3)
            b.begin_loop(ny)
            b.begin_loop(nx)
            if is_max:
                b.compute("MAX2A", z=3, x=6, a=3, loads=[Load(6, 0, (COL,))])
            else:
                b.compute("MACR2A", z=3, x=6, y=1, a=3, loads=[Load(6, 0, (COL,))])
            b.end_loop()
            b.postloop_incr(0, VEC)
            b.end_loop()
            b.postloop_incr(0, ROW)
            if is_max:
                b.compute("CLIP2A", z=7, x=4, y=5, a=3, store=Store(7, 1, (ROW,)))
            elif p.do_activation:
                b.compute("MULR2A", z=3, x=3, y=0)
                b.compute("CLIP2A", z=7, x=4, y=5, a=3, store=Store(7, 1, (ROW,)))
            else:
                b.compute("MULR2A", z=3, x=3, y=0, store=Store(3, 1, (ROW,)))
            b.end_loop()
            b.postloop_incr(1, VEC)
            b.end_loop()
            out.append((b.build(), p.batches * cp))
    return out


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
        return LayerPlan(True, None, f"{name}/mvp", paths.generic_programs, runs_on_mvp=True)
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
    return LayerPlan(True, None, "transpose_conv/mvp", _merge(programs), runs_on_mvp=True, expand=expand)


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
    x, w = ins[0], ins[1]
    out = graph.op_outputs(op)[0]
    bias = ins[2] if len(ins) > 2 else None
    consts: dict[str, np.ndarray] = {}
    if bias is not None and bias.data is not None:
        consts["bias"] = (bias.data.astype(np.float64) * S).astype(np.float16)
    if x.scale is not None and w.scale is not None and out.scale is not None:
        scaler = float(x.scale[0]) * w.scale.astype(np.float64) / float(out.scale[0]) * 2.0 ** 15
        consts["scaler"] = np.clip(scaler, -checks.FP16_MAX, checks.FP16_MAX).astype(np.float16)
    consts["zero"] = np.zeros(2, dtype=np.float16)
    return consts
