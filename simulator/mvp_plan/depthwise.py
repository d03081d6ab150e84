"""depthwise_conv_2d on the MVP: the optimized path (one program per output pixel), the generic
path (the SDK's loop-dimension flattening, `_Dims`) and Prepare's and Eval's choice between them.
"""
from __future__ import annotations

from dataclasses import dataclass

from simulator import mvp_checks as checks
from simulator.mvp_plan.common import clamp_programs, edge_groups, merge, per_pixel_classes, window_dot
from simulator.mvp_plan.params import MAX_N, MAX_STRIDE, S, LayerParams, ceil_div
from simulator.mvp_plan.plan import LayerPlan
from simulator.mvp_program import COL, ROW, VEC, Load, Program, ProgramBuilder, Store, shifted


@dataclass
class DepthwisePaths:
    opt_considered: bool       # Prepare tries the optimized path first (dilation 1, multiplier 1, small input)
    opt_feasible: bool         # the optimized path can be programmed (with aligned buffers)
    generic_feasible: bool     # the generic path passes its dry run (incl. a minimum of MACs per program)
    generic_programs: list
    prepare_depends_on_alignment: bool
    opt_problem: str | None = None       # why the optimized path cannot be programmed, with the numbers
    generic_problem: str | None = None   # why the generic path fails its dry run


def _dw_opt_problem(p: LayerParams, mult: int) -> str | None:
    """Why the optimized path cannot run the layer, or None."""
    if p.dilation_h != 1 or p.dilation_w != 1:
        return f"dilation {p.dilation_h}x{p.dilation_w} (it needs 1)"
    if mult != 1:
        return f"depth multiplier {mult} (it needs 1)"
    eff = p.c_out // 2 if p.c_out % 2 == 0 else p.c_out
    half = " / 2" if p.c_out % 2 == 0 else ""
    return checks.first(checks.over("filter width", p.fw, MAX_N), checks.over("filter height", p.fh, MAX_N),
                        checks.over(f"input row stride W_in*C{half}", p.w_in * eff, MAX_STRIDE),
                        checks.over(f"filter row stride Fw*C{half}", p.fw * eff, MAX_STRIDE))


def _dw_generic_problem(p: LayerParams, feasible: bool, programs: list) -> str | None:
    """Why the generic path's dry run fails (the order of `_dw_generic`'s own tests), or None."""
    if feasible:
        return None
    if p.batches != 1:
        return f"{p.batches} batches (it needs 1)"
    if not programs:
        return (f"its loops do not fold into {checks.MVP.n_dims} array dims of at most {MAX_N} elements "
                f"and {MAX_STRIDE} strides")
    n_programs = sum(n for _, n in programs)
    macs = p.fh * p.fw * p.h_out * p.w_out * p.c_out
    if n_programs == 0 or macs // n_programs < checks.DW_GENERIC_MIN_MACS:
        return f"{macs // max(1, n_programs)} MACs per program < {checks.DW_GENERIC_MIN_MACS}"
    return checks.programs_violation(programs)


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
    window_dot(b, y_size, x_size)
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
    for ox_min, ox_max, fx0, fw_t in edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w):
        w_t = ox_max - ox_min + 1
        oy_min = 0
        ys = list(edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h))
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
                        group = ceil_div(fh_t, p.stride_h)
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
    if n_programs == 0 or macs // n_programs < checks.DW_GENERIC_MIN_MACS:
        return False, programs
    if checks.programs_violation(programs):
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
    opt_problem = _dw_opt_problem(p, mult)
    opt_feasible = opt_problem is None
    opt_considered = shape_ok and p.h_in * p.w_in <= 4 * p.fw * p.fh * p.c_out
    generic_ok, generic_programs = _dw_generic(p)
    return DepthwisePaths(opt_considered, opt_feasible, generic_ok, generic_programs,
                          prepare_depends_on_alignment=opt_considered and opt_feasible and not generic_ok,
                          opt_problem=opt_problem,
                          generic_problem=_dw_generic_problem(p, generic_ok, generic_programs))


def plan_depthwise(p: LayerParams) -> LayerPlan:
    paths = depthwise_paths(p)
    # Prepare's verdict: optimized path first when considered, generic as the fallback
    # (the optimized path first when considered, the generic one as the fallback: the verdict is
    # that either can be programmed)
    refusal = checks.first_failure("depthwise_conv_2d", p, paths, needs=checks.NEEDS_PATHS)
    if refusal:
        return LayerPlan.refused(refusal, "depthwise_conv_2d/cmsis")
    # Eval's choice: the optimized path for small inputs, else generic (no MACs-per-program rule
    # when executing), else optimized anyway
    use_opt = paths.opt_feasible and (paths.opt_considered or not paths.generic_programs
                                      or checks.programs_violation(paths.generic_programs) is not None)
    work: tuple = ()
    if use_opt:
        programs, expand = per_pixel_classes(p, _dw_opt_program)
        kernel = "depthwise_conv_2d/mvp-opt"
    else:
        clamp, work = clamp_programs(p, p.batches * p.h_out * p.w_out * p.c_out)
        ordered = paths.generic_programs + clamp
        programs = merge(ordered)
        expand = _dw_generic_launches(p, ordered)
        kernel = "depthwise_conv_2d/mvp"
    flagged = checks.first_failure("depthwise_conv_2d", p, paths, needs=checks.NEEDS_PATHS, effect=checks.FLAGS)
    if flagged:
        return LayerPlan(False, flagged.reason, kernel, programs, runs_on_mvp=True, expand=expand, cpu_work=work,
                         limit=flagged.limit,
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
