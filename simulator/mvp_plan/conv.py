"""conv_2d on the MVP: the fp16 input pre-scaling program, the main convolution programs per
edge group, and wide Conv1D split into width chunks with the SAME-padded edge columns on the CPU.
"""
from __future__ import annotations

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import RowSkips, clamp_programs, merge, per_batch, row_skips, window_runs
from simulator.mvp_plan.params import MAX_STRIDE, S, LayerParams, cdiv
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, ROW, VEC, Load, Program, ProgramBuilder, Store


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
    for r in window_runs(p, w_in, w_out, pad_w, ci, co):
        o_base = (r.oy * w_out + out_col0 + r.ox_min) * co
        f_base = (r.fy0 * p.fw + r.fx0) * ci
        f_col, f_row, f_vec = r.fw_t * ci, p.fw * ci, p.fh * p.fw * ci
        i_base = (r.y0 * w_in + r.x0) * ci
        i_col, i_row = r.fw_t * ci, w_in * ci
        packed = all(v % 2 == 0 for v in (i_base, i_col, i_row, r.i_vec, f_base, f_col, f_row, f_vec))
        k = 2 if packed else 1
        b = ProgramBuilder("conv_2d/main")
        b.reg(0, S)
        b.reg(1, -p.input_zp * S, -p.input_zp * S if packed else 0.0)
        b.reg(2, p.output_zp)
        b.array(0, "scratch", 2 * i_base, "binary16", packed, (r.i_vec_n, r.in_y_size, i_col // k),
                (r.i_vec // k, i_row // k, 1))
        b.array(1, "filter", f_base, "int8", packed, (co, r.fh_t, f_col // k), (f_vec // k, f_row // k, 1))
        if p.has_bias:
            b.vector(2, "bias", 0, "binary16", False, co)
        else:
            b.vector(2, "zero", 0, "binary16", False, 1)
        b.vector(3, "scaler", 0, "binary16", False, co)
        b.array(4, "output", o_base, "int8", False, (r.oy_size * (r.out_y_extra + 1), r.w_t, co),
                (r.o_vec_stride, co, 1))
        skips = RowSkips(r.extra_adj)
        b.begin_loop(co)
        b.compute("COPY", z=5, a=4, loads=[Load(4, 2), Load(3, 3)])
        b.begin_loop(r.w_t)
        b.begin_loop(r.oy_size)
        b.begin_loop(r.fh_t)
        b.begin_loop(i_col // k)
        b.compute("MACR2A", z=5, x=6, y=7, a=5, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
        b.end_loop()
        b.postloop_incr(0, ROW)
        b.postloop_incr(1, ROW)
        b.end_loop()
        if r.single_x:
            b.postloop_incr(0, VEC)
        if skips.take():
            b.postloop_incr(0, ROW)
        if packed:
            b.compute("ADDR", z=5, a=5, loads=[Load(6, 0, (ROW,))] if skips.take() else [])
        b.compute("MACC", z=7, x=5, y=3, a=2, loads=[Load(6, 0, (ROW,))] if skips.take() else [],
                  store=Store(7, 4, (VEC,)))
        if r.out_y_extra > 0:
            b.begin_loop(r.out_y_extra)
            b.compute("NOOP", loads=[Load(7, 4, (VEC,))])
            b.end_loop()
        b.compute("COPY", z=5, a=4)
        row_skips(b, skips.left, 0)
        b.end_loop()
        b.postloop_incr(4, ROW)
        if not r.single_x:
            b.postloop_incr(0, VEC)
        b.end_loop()
        for arr, dim in ((4, COL), (1, VEC), (2, COL), (3, COL)):
            b.postloop_incr(arr, dim)
        b.end_loop()
        out.append((b.build(), p.batches))
    return out


def plan_conv(p: LayerParams) -> LayerPlan:
    in_bytes, out_bytes = p.h_in * p.w_in * p.c_in, p.h_out * p.w_out * p.c_out
    work: tuple = ()
    if p.is_wide_conv1d:
        ordered, work = _conv1d_chunks(p)
        kernel = "conv_2d/mvp-conv1d"
    else:
        ordered = [(_conv_prescale_program(p, p.h_in, p.w_in, 0), p.batches)]
        ordered += _conv_main_programs(p, p.w_in, p.w_out, p.pad_w, 0)
        kernel = "conv_2d/mvp"
    refusal = checks.first_failure("conv_2d", p, ordered, needs=checks.NEEDS_PROGRAMS)
    if refusal:
        return LayerPlan.refused(refusal, "conv_2d/cmsis")
    if not p.is_wide_conv1d:
        clamp, work = clamp_programs(p, p.batches * out_bytes)
        ordered = ordered + clamp
    return LayerPlan(True, None, kernel, merge(ordered), runs_on_mvp=True,
                     expand=per_batch(ordered, p, in_bytes, out_bytes), cpu_work=work,
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
            chunk_in = cdiv(chunk_in - p.fw, p.stride_w) * p.stride_w + p.fw
            chunk_out = cdiv(chunk_in - p.fw, p.stride_w) + 1
        else:
            chunk_out = min(remaining_out, out_max)
            chunk_in = (chunk_out - 1) * p.stride_w + p.fw
        if chunk_out <= 0 or chunk_in <= 0:
            break
        sub = LayerParams(**{**p.__dict__, "w_in": chunk_in, "w_out": chunk_out, "pad_w": 0,
                             "padding_same": False})
        ordered.append((_conv_prescale_program(sub, 1, chunk_in, in_col * p.c_in), p.batches))
        ordered += _conv_main_programs(sub, chunk_in, chunk_out, 0, out_col)
        clamp, clamp_work = clamp_programs(p, chunk_out * p.c_out, out_col * p.c_out)
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
