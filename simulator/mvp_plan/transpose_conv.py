"""transpose_conv on the MVP: clear the fp16 accumulation buffer, scatter each input pixel's
contribution per output channel, then bias, scale, clip and store as int8.
"""
from __future__ import annotations

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import merge
from simulator.mvp_plan.params import S, LayerParams
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, ROW, VEC, Load, Program, ProgramBuilder, Store


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


def plan_transpose_conv(p: LayerParams) -> LayerPlan:
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
    refusal = checks.first_failure("transpose_conv", p, programs, needs=checks.NEEDS_PROGRAMS)
    if refusal:
        return LayerPlan.refused(refusal, "transpose_conv/reference")

    def expand():
        for _ in range(p.batches):
            yield programs[0][0]
            for y in range(p.h_in):
                for x in range(p.w_in):
                    for c in range(p.c_out):
                        yield _tc_scatter_program(p, y, x, c)
            yield programs[-1][0]
    return LayerPlan(True, None, "transpose_conv/mvp", merge(programs), runs_on_mvp=True, expand=expand,
                     scratch_bytes=2 * p.h_out * p.w_out * p.c_out)
