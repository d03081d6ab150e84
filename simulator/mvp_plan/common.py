"""Pieces the MVP kernels share: edge groups of truncated windows, the int8 clamp pass, merging
identical programs, per-batch launch expansion, overlapping-row walks and per-pixel classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from simulator.mvp_plan.params import MAX_STRIDE, LayerParams, cdiv, ceil_div
from simulator.mvp_program import COL, ROW, Load, ProgramBuilder, Store, shifted

CLAMP_CPU_MAX_ELEMENTS = 160          # the clamp pass runs on the CPU up to this many elements


def edge_groups(n_out: int, n_in: int, f: int, stride: int, pad: int):
    """(out_min, out_max, filter_start, filter_count) per run of outputs sharing one truncated
    filter: each padded leading output alone, the full-filter centre as one run, each truncated
    trailing output alone (the SDK's sub-filter enumeration)."""
    center_max = cdiv(n_in - f + pad, stride)
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


def clamp_programs(p: LayerParams, n_elements: int, byte_offset: int = 0) -> tuple[list, tuple]:
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


def merge(pairs: list) -> list:
    """Adds up the counts of identical programs (the form timing models price)."""
    merged: dict = {}
    for program, n in pairs:
        merged[program] = merged.get(program, 0) + n
    return list(merged.items())


def per_batch(ordered: list, p: LayerParams, in_bytes: int, out_bytes: int,
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


def y_grouping(stride_h: int, h_t: int, fh_t: int, single_x: bool) -> tuple[int, int]:
    """(in_y_extra, out_y_incr): how a program walks output rows whose windows overlap (the
    SDK's conv and pooling kernels): when the truncated filter is taller than the stride, each
    program takes every out_y_incr-th row, and the input row index skips in_y_extra rows more."""
    if h_t == 1 or single_x or stride_h == fh_t:
        return 0, 1
    if stride_h > fh_t:
        return stride_h - fh_t, 1
    q, r = divmod(fh_t, stride_h)
    return (0, q) if r == 0 else (stride_h - r, q + 1)


@dataclass(frozen=True)
class WindowRun:
    """One program of a windowed kernel (conv_2d, generic pooling): a run of output pixels sharing
    one truncated window. Element counts are in tensor elements (not packed pairs)."""
    ox_min: int          # first output column
    w_t: int             # output columns in the run
    fx0: int             # first filter column of the truncated window
    fw_t: int            # its width
    single_x: bool       # one output column: the program walks rows instead
    oy: int              # first output row of this program
    fy0: int             # first filter row of the truncated window
    fh_t: int            # its height
    h_t: int             # output rows of the y edge group
    oy_size: int         # output rows this program writes (every out_y_incr-th)
    extra_adj: int       # input rows to skip after each output row
    in_y_size: int       # input rows the program's array spans
    o_vec_stride: int    # elements between the program's output rows
    out_y_extra: int     # output rows skipped by NOOP loops when that stride is too long
    y0: int              # first input row read (may be negative: padding)
    x0: int              # first input column read
    i_vec: int           # elements between the input's outer steps (rows when single_x)
    i_vec_n: int         # how many outer steps


def window_runs(p: LayerParams, w_in: int, w_out: int, pad_w: int, depth_in: int, depth_out: int,
                single_x_allowed: bool = True) -> Iterator[WindowRun]:
    """The programs of a windowed kernel in launch order, as the SDK's conv and pooling kernels
    enumerate them: per x edge group, per y edge group, per out_y offset of overlapping rows."""
    for ox_min, ox_max, fx0, fw_t in edge_groups(w_out, w_in, p.fw, p.stride_w, pad_w):
        w_t = ox_max - ox_min + 1
        single_x = w_t <= 1 and single_x_allowed
        for oy_min, oy_max, fy0, fh_t in edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h):
            h_t = oy_max - oy_min + 1
            in_y_extra, out_y_incr = y_grouping(p.stride_h, h_t, fh_t, single_x)
            for off in range(min(out_y_incr, h_t)):
                oy_size = ceil_div(h_t - off, out_y_incr)
                extra_adj = 0 if oy_size == 1 else in_y_extra
                o_vec_stride, out_y_extra = out_y_incr * w_out * depth_out, 0
                if o_vec_stride > MAX_STRIDE:
                    o_vec_stride, out_y_extra = w_out * depth_out, out_y_incr - 1
                if single_x:
                    i_vec, i_vec_n = p.stride_h * w_in * depth_in, h_t
                else:
                    i_vec, i_vec_n = p.stride_w * depth_in, w_t
                yield WindowRun(
                    ox_min, w_t, fx0, fw_t, single_x, oy_min + off, fy0, fh_t, h_t, oy_size, extra_adj,
                    fh_t if single_x else (fh_t + extra_adj) * oy_size, o_vec_stride, out_y_extra,
                    (oy_min + off) * p.stride_h - p.pad_h + fy0, ox_min * p.stride_w - pad_w + fx0,
                    i_vec, i_vec_n)


class RowSkips:
    """The input rows still to skip after an output row, consumed one increment at a time by the
    instructions that can carry one (the SDK attaches them where it can)."""

    def __init__(self, n: int):
        self.left = n

    def take(self) -> bool:
        r = self.left > 0
        self.left -= 1
        return r


def window_dot(b: ProgramBuilder, rows: int, cols: int) -> None:
    """The kernels' int8 dot product over a rows x cols window: each input element (array 0)
    shifted to (x - zp) * 2^-15 (R6 = x * R0 + R1), times the filter's (array 1) into R5; both
    arrays step to their next row after each row."""
    b.begin_loop(rows)
    b.begin_loop(cols)
    b.compute("MACR2A", z=6, x=6, y=0, a=1, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.postloop_incr(1, ROW)
    b.end_loop()


def row_skips(b: ProgramBuilder, left: int, array: int) -> None:
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


def per_pixel_classes(p: LayerParams, builder) -> tuple[list, Callable]:
    """Groups per-output-pixel programs by window shape: one representative program per class."""
    xs = list(edge_groups(p.w_out, p.w_in, p.fw, p.stride_w, p.pad_w))
    ys = list(edge_groups(p.h_out, p.h_in, p.fh, p.stride_h, p.pad_h))
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
    return merge(pairs), expand
