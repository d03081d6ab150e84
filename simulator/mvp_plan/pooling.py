"""average_pool_2d and max_pool_2d on the MVP: the optimized average pool (one program per output
pixel) and the generic pool (per channel), and the choice between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import RowSkips, merge, per_batch, per_pixel_classes, row_skips, window_runs
from simulator.mvp_plan.params import MAX_N, MAX_STRIDE, S, LayerParams
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, ROW, VEC, Load, Program, ProgramBuilder, Store


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
    # the average pool avoids the long row stride a single-column program would walk
    single_x_allowed = is_max or p.stride_h * p.w_in * C <= MAX_STRIDE
    for r in window_runs(p, p.w_in, p.w_out, p.pad_w, C, C, single_x_allowed):
        scale = float(np.float16(np.float32(2.0 ** 15) / np.float32(max(1, r.fw_t * r.fh_t))))
        o_base = (r.oy * p.w_out + r.ox_min) * C
        i_base = (r.y0 * p.w_in + r.x0) * C
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
        b.array(0, "input", i_base, "int8", packed, (r.i_vec_n, r.in_y_size, r.fw_t),
                (r.i_vec // k, p.w_in * C // k, C // k))
        b.array(1, "output", o_base, "int8", packed, (r.oy_size * (r.out_y_extra + 1), r.w_t, 1),
                (r.o_vec_stride // k, C // k, 0))
        skips = RowSkips(r.extra_adj)
        b.begin_loop(r.w_t)
        b.begin_loop(r.oy_size)
        if is_max:
            b.compute("COPY", z=1, a=0)
        else:
            b.compute("CLEAR", z=2)
        b.begin_loop(r.fh_t)
        b.begin_loop(r.fw_t)
        if is_max:
            b.compute("MAX2A", z=1, x=2, a=1, loads=[Load(2, 0, (COL,))])
        else:
            b.compute("MACR2A", z=2, x=3, y=1, a=2, loads=[Load(3, 0, (COL,))])
        b.end_loop()
        b.postloop_incr(0, ROW)
        b.end_loop()
        if r.single_x:
            b.postloop_incr(0, VEC)
        if skips.take():
            b.postloop_incr(0, ROW)
        row_load = [Load(2 if is_max else 3, 0, (ROW,))] if skips.take() else []
        if is_max:
            b.compute("CLIP2A", z=5, x=3, y=4, a=1, loads=row_load, store=Store(5, 1, (VEC,)))
        else:
            b.compute("MULR2A", z=2, x=2, y=0, loads=row_load,
                      store=None if p.do_activation else Store(2, 1, (VEC,)))
            if p.do_activation:
                b.compute("CLIP2A", z=6, x=4, y=5, a=2, store=Store(6, 1, (VEC,)))
        if r.out_y_extra > 0:
            b.begin_loop(r.out_y_extra)
            b.begin_loop(1)
            b.compute("NOOP")
            b.end_loop()
            b.postloop_incr(1, VEC)
            b.end_loop()
        row_skips(b, skips.left, 0)
        b.end_loop()
        b.postloop_incr(1, ROW)
        if not r.single_x:
            b.postloop_incr(0, VEC)
        b.end_loop()
        out.append((b.build(), p.batches * (C // k)))
    return out


def _pool_generic_launches(p: LayerParams, ordered: list):
    k = 2 if p.c_in % 2 == 0 else 1
    return per_batch([(pr, 0) for pr, _ in ordered], p, p.h_in * p.w_in * p.c_in,
                      p.h_out * p.w_out * p.c_in, lambda ch: {"input": ch * k, "output": ch * k},
                      p.c_in // k)


@dataclass
class PoolPaths:
    opt_feasible: bool
    generic_feasible: bool
    generic_programs: list
    opt_problem: str | None = None       # why the optimized path cannot be built, with the numbers
    generic_problem: str | None = None   # why the generic path cannot


def _pool_paths(p: LayerParams, is_max: bool) -> PoolPaths:
    half = " / 2" if p.c_in % 2 == 0 else ""
    cp = p.c_in // 2 if p.c_in % 2 == 0 else p.c_in
    over = checks.over
    opt_problem = "max pooling has no optimized path" if is_max else checks.first(
        over(f"depth C{half}", cp, MAX_N), over("input height", p.h_in, MAX_N), over("input width", p.w_in, MAX_N),
        over(f"input row stride W_in*C{half}", p.w_in * cp, MAX_STRIDE), over("output height", p.h_out, MAX_N),
        over("output width", p.w_out, MAX_N), over(f"output row stride W_out*C{half}", p.w_out * cp, MAX_STRIDE))
    generic = _pool_generic_programs(p, is_max)
    generic_problem = checks.first(
        over(f"window {p.fh}x{p.fw}", p.fh * p.fw, checks.POOL_WINDOW_MAX),
        over(f"column stride stride_w*C{half}", p.stride_w * cp, MAX_STRIDE),
        over(f"output row stride W_out*C{half}", p.w_out * cp, MAX_STRIDE), checks.programs_violation(generic))
    return PoolPaths(opt_problem is None, generic_problem is None, generic, opt_problem, generic_problem)


def plan_pool(p: LayerParams, is_max: bool) -> LayerPlan:
    paths = _pool_paths(p, is_max)
    name = "max_pool_2d" if is_max else "average_pool_2d"
    refusal = checks.first_failure(name, p, paths, needs=checks.NEEDS_PATHS)
    if refusal:
        return LayerPlan.refused(refusal, f"{name}/cmsis")
    prefer_generic = p.h_out * p.w_out > (9 * p.fw * p.fh * p.c_in + 5) // 10
    if is_max or ((prefer_generic or not paths.opt_feasible) and paths.generic_feasible):
        return LayerPlan(True, None, f"{name}/mvp", merge(paths.generic_programs), runs_on_mvp=True,
                         expand=_pool_generic_launches(p, paths.generic_programs))
    programs, expand = per_pixel_classes(p, _pool_opt_program)
    return LayerPlan(True, None, f"{name}/mvp-opt", programs, runs_on_mvp=True, expand=expand)
