"""Reference-kernel builders of RESIZE_NEAREST_NEIGHBOR (UpSampling nearest) and RESIZE_BILINEAR
(UpSampling bilinear), int8, as TFLite Micro's reference kernels compute them: the source rows
and columns (and, for bilinear, the 10-bit fixed-point weights) depend only on the shapes, so
they are computed once; an inference is one gather (nearest) or four gathers and an exact int64
weighted sum (bilinear)."""
from __future__ import annotations

import math

import numpy as np

from simulator.graph import Graph, Operator
from simulator.reference_ops.common import const_data, err

F = np.float32


def nearest_index(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """reference_ops::GetNearestNeighbor for every output coordinate (float arithmetic)."""
    if align_corners and out_size > 1:
        scale = F(in_size - 1) / F(out_size - 1)
    else:
        scale = F(in_size) / F(out_size)
    offset = F(0.5) if half_pixel_centers else F(0.0)
    idx = []
    for v in range(out_size):
        s = F(F(F(v) + offset) * scale)
        i = int(math.copysign(math.floor(abs(float(s)) + 0.5), float(s))) if align_corners else math.floor(float(s))
        i = min(i, in_size - 1)
        if half_pixel_centers:
            i = max(0, i)
        idx.append(i)
    return np.asarray(idx, dtype=np.intp)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def bilinear_terms(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool):
    """ResizeBilinearInteger's per-coordinate (lower, upper, weight of upper in 1/1024)."""
    scale_10 = _c_div((1 << 10) * in_size + out_size // 2, out_size)
    if align_corners and out_size > 1:
        scale_10 = _c_div((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
    lo, hi, frac = [], [], []
    for v in range(out_size):
        scaled = v * scale_10 + scale_10 // 2 - (1 << 9) if half_pixel_centers else v * scale_10
        low = max(_c_div(scaled, 1 << 10), 0)
        up = min(_c_div(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
        lo.append(low)
        hi.append(up)
        frac.append(scaled - (1 << 10) * low)
    return (np.asarray(lo, dtype=np.intp), np.asarray(hi, dtype=np.intp), np.asarray(frac, dtype=np.int64))


def _resize_setup(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if len(x_t.shape) != 4:
        raise err(graph, op, f"a rank-{len(x_t.shape)} input: the kernel takes NHWC")
    if x_t.dtype != "int8" or y_t.dtype != "int8":
        raise err(graph, op, f"only int8 tensors are supported, input is {x_t.dtype}")
    # TFLM moves the int8 values without rescaling (the converter gives both one quantization)
    size = [int(v) for v in const_data(graph, op, 1, "output sizes").reshape(-1)]
    if len(size) != 2 or tuple(size) != tuple(y_t.shape[1:3]):
        raise err(graph, op, f"output size {size} does not match the output shape {list(y_t.shape)}")
    align = bool(op.options.get("align_corners", False))
    half = bool(op.options.get("half_pixel_centers", False))
    return x_t, y_t, size, align, half


def build_resize_nearest(graph: Graph, op: Operator):
    x_t, y_t, (oh, ow), align, half = _resize_setup(graph, op)
    rows = nearest_index(oh, x_t.shape[1], align, half)
    cols = nearest_index(ow, x_t.shape[2], align, half)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.ascontiguousarray(values[xi][:, :, rows][:, :, :, cols])   # (B, 1, H, W, C)
    return run, {}


def build_resize_bilinear(graph: Graph, op: Operator):
    """int8 bilinear: four taps weighted in 1/2^20, rounded as the vendor's TFLM builds it
    (TFLITE_SINGLE_ROUNDING: (sum + 2^19) >> 20)."""
    x_t, y_t, (oh, ow), align, half = _resize_setup(graph, op)
    if align and half:
        raise err(graph, op, "align_corners and half_pixel_centers together: TFLite Micro refuses this")
    y0, y1, fy = bilinear_terms(oh, x_t.shape[1], align, half)
    x0, x1, fx = bilinear_terms(ow, x_t.shape[2], align, half)
    one = np.int64(1 << 10)
    wy0, wy1 = (one - fy)[:, None, None], fy[:, None, None]           # over (H_out, W_out, C)
    wx0, wx1 = (one - fx)[None, :, None], fx[None, :, None]
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        v = values[xi].astype(np.int64)                                  # (B, 1, H, W, C)
        top, bottom = v[:, :, y0], v[:, :, y1]
        acc = (top[:, :, :, x0] * wy0 * wx0 + bottom[:, :, :, x0] * wy1 * wx0
               + top[:, :, :, x1] * wy0 * wx1 + bottom[:, :, :, x1] * wy1 * wx1)
        values[yi] = ((acc + (1 << 19)) >> 20).astype(np.int8)
    return run, {}
