"""Runs a .tflite model the way an EFR32xG24 would: the public API of the emulator.

    from simulator.emulator import run_model, emulate_file
    result = run_model(open("m.tflite", "rb").read(), [x], accelerator="none")
    result.outputs[0], result.layers

`accelerator="none"` is TFLite Micro's reference-kernel build (bit-exact int8 kernels from
`kernels_ref.py`); `accelerator="mvp"` runs the layers that the MVP accelerates through
`mvp_exec.py` (binary16 arithmetic) and every other layer with the reference kernels.

A model is compiled once into a list of steps (per-layer constants prepared, shape-only
sub-graphs folded to constants), then every inference only calls the JIT kernels and, for conv
and fully connected, one exact matrix product each.

`run_model(..., compare_reference=True)` adds per layer the accelerator cycles of the programs
executed (a timing model applied to them: the profiler's numbers, since both price the same
programs) and the drift against the reference kernels; `emulate_profile` is that as plain data
for `mvpfarm profile --execute`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from simulator import kernels_ref as K
from simulator.errors import ModelError
from simulator.graph import Graph, Operator, Tensor
from simulator.quant_math import (
    activation_range, c_round, quantize_multiplier, sigmoid_tanh_params, softmax_params,
)
from simulator.tflite_reader import read_model, read_model_file
from simulator.profiler import DEFAULT_TIMING  # one default for profile and emulate

ACCELERATORS = ("none", "mvp")

_NP = {"int8": np.int8, "float32": np.float32, "int32": np.int32, "int64": np.int64,
       "uint8": np.uint8, "int16": np.int16}


@dataclass
class Step:
    index: int
    opcode: str
    kernel: str                       # "reference" or "mvp"
    run: Callable[[list], None]       # reads/writes the tensor value list
    info: dict = field(default_factory=dict)
    mvp: object = None                # mvp_exec.MvpLayer when the layer runs MVP programs


@dataclass
class EmulationResult:
    outputs: list[np.ndarray]
    layers: list[dict]     # per layer: index, opcode, kernel, on_mvp, accelerator_cycles[, drift]


@dataclass
class CompiledModel:
    graph: Graph
    accelerator: str
    steps: list[Step]
    constants: dict[int, np.ndarray]
    _reference: dict = field(default_factory=dict, repr=False)

    def run(self, inputs) -> list[np.ndarray]:
        values = self.run_values(inputs)
        return [values[i].reshape(self.graph.tensors[i].shape) for i in self.graph.outputs]

    def run_values(self, inputs) -> list:
        """One inference; every tensor's value (for per-layer comparisons)."""
        values: list = [None] * len(self.graph.tensors)
        for i, v in self.constants.items():
            values[i] = v
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(self.graph.inputs):
            raise ModelError(f"{self.graph.name}: model takes {len(self.graph.inputs)} inputs, "
                             f"got {len(inputs)}")
        for ti, x in zip(self.graph.inputs, inputs):
            t = self.graph.tensors[ti]
            x = np.asarray(x)
            if x.size != t.n_elements:
                raise ModelError(f"{self.graph.name}: input {t.name!r} needs {t.n_elements} "
                                 f"elements of {t.dtype}, got {x.size}")
            values[ti] = np.ascontiguousarray(x, dtype=_NP.get(t.dtype, x.dtype)).reshape(t.shape)
        for step in self.steps:
            step.run(values)
        return values

    def layer_info(self, timing=None) -> list[dict]:
        """Per executed layer: index, opcode, kernel ("mvp" or "reference"), on_mvp, and with a
        timing model (name or `timing.TimingModel`) the accelerator cycles of the programs it
        executed."""
        tm = _timing_model(timing) if timing is not None else None
        out = []
        for s in self.steps:
            row = {"index": s.index, "opcode": s.opcode, "kernel": s.kernel, "on_mvp": s.mvp is not None,
                   **s.info}
            if tm is not None:
                row["accelerator_cycles"] = s.mvp.accelerator_cycles(tm) if s.mvp is not None else 0
            out.append(row)
        return out

    def reference_step(self, step: Step) -> Step:
        """The reference-kernel step of a layer (for drift), compiled once."""
        if step.index not in self._reference:
            self._reference[step.index] = _reference_step(self.graph, self.graph.operators[step.index])
        return self._reference[step.index]

    def layer_drift(self, inputs) -> tuple[list, list[dict]]:
        """One inference plus, per layer, how far its output moves from the reference kernel's
        fed the same inputs (so each layer's own drift, not drift carried in from earlier
        layers): {"elements", "drift_elements", "drift_max_steps"}. Returns (outputs, drift)."""
        values = self.run_values(inputs)
        drift = []
        for step in self.steps:
            op = self.graph.operators[step.index]
            y_i = op.outputs[0]
            n = int(np.asarray(values[y_i]).size)
            if step.mvp is None:
                drift.append({"elements": n, "drift_elements": 0, "drift_max_steps": 0.0})
                continue
            local = list(values)
            self.reference_step(step).run(local)
            d = _steps_apart(values[y_i], local[y_i], self.graph.tensors[y_i])
            drift.append({"elements": n, "drift_elements": int(np.count_nonzero(d)),
                          "drift_max_steps": float(d.max()) if d.size else 0.0})
        outputs = [values[i].reshape(self.graph.tensors[i].shape) for i in self.graph.outputs]
        return outputs, drift


_CACHE: dict[tuple[str, str], CompiledModel] = {}


_BLAS_LIMITED = False


def _single_threaded_blas() -> None:
    """The matrix products are small: BLAS threads only contend (workers run one per core)."""
    global _BLAS_LIMITED
    if not _BLAS_LIMITED:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1, user_api="blas")
        _BLAS_LIMITED = True


def compile_model(graph: Graph, accelerator: str = "none") -> CompiledModel:
    _single_threaded_blas()
    if accelerator not in ACCELERATORS:
        raise ModelError(f"unknown accelerator {accelerator!r}: expected one of {', '.join(ACCELERATORS)}")
    key = (graph.sha256, accelerator)
    if key in _CACHE:
        return _CACHE[key]
    constants = {t.index: t.data for t in graph.tensors if t.data is not None}
    mvp_planner = None
    if accelerator == "mvp":
        from simulator import mvp_exec
        mvp_planner = mvp_exec.plan_layer
    steps = []
    for op in graph.operators:
        if _fold_constant(graph, op, constants):
            continue
        step = None
        if mvp_planner is not None:
            step = mvp_planner(graph, op)
        if step is None:
            step = _reference_step(graph, op)
        steps.append(step)
    compiled = CompiledModel(graph, accelerator, steps, constants)
    _CACHE[key] = compiled
    return compiled



def _timing_model(timing):
    from simulator.timing import TimingModel, load_timing_model
    return timing if isinstance(timing, TimingModel) else load_timing_model(timing)


def _steps_apart(a, b, t: Tensor) -> np.ndarray:
    """|a - b| in quantization steps of tensor t (int8: integers; float: divided by the scale
    of the int8 values it came from, 1 if unknown)."""
    d = np.abs(np.asarray(a, dtype=np.float64).ravel() - np.asarray(b, dtype=np.float64).ravel())
    if t.dtype != "int8" and t.scale is not None and len(t.scale) and float(t.scale[0]) > 0:
        d = d / float(t.scale[0])
    return d


def run_model(model: Graph | bytes, inputs, accelerator: str = "none", compare_reference: bool = False,
              timing=DEFAULT_TIMING) -> EmulationResult:
    """Runs one inference. `inputs`: one array per model input (or a single array). Each layer
    row carries the accelerator cycles of the programs it ran (priced by `timing`) and, with
    `compare_reference`, its drift against the reference kernels on the same inputs."""
    graph = model if isinstance(model, Graph) else read_model(bytes(model))
    compiled = compile_model(graph, accelerator)
    layers = compiled.layer_info(timing)
    if compare_reference:
        outputs, drift = compiled.layer_drift(inputs)
        for row, d in zip(layers, drift):
            row.update(d)
    else:
        outputs = compiled.run(inputs)
    return EmulationResult(outputs=outputs, layers=layers)


def emulate_batch(model: Graph | bytes, x, accelerator: str = "none"):
    """Runs a batch of samples; the same bits as running them one at a time.

    `model`: .tflite bytes or a parsed `graph.Graph`. `x`: one array per model input (or a single
    array for a one-input model) whose first axis is the sample axis; each sample holds the
    input tensor's elements in any shape of that size (e.g. (N, 49, 10, 1) or (N, 1, 49, 10, 1)
    for a 1x49x10x1 input), in the input's dtype (int8 inputs take already quantized values).
    Returns, like Keras' `predict`, one array for a one-output model, else a list: each array is
    (N, *output_shape) with a leading 1 of the output shape dropped (a 1x10 output gives (N, 10)).
    Raises `ModelError` naming the operator for a model the emulator cannot run."""
    graph = model if isinstance(model, Graph) else read_model(bytes(model))
    compiled = compile_model(graph, accelerator)
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(graph.inputs):
        raise ModelError(f"{graph.name}: model takes {len(graph.inputs)} inputs, got {len(xs)}")
    xs = [np.asarray(a) for a in xs]
    n = xs[0].shape[0] if xs[0].ndim else 0
    for ti, a in zip(graph.inputs, xs):
        t = graph.tensors[ti]
        if a.ndim == 0 or a.shape[0] != n or a.size != n * t.n_elements:
            raise ModelError(f"{graph.name}: input {t.name!r} needs N samples of {t.n_elements} "
                             f"elements ({'x'.join(map(str, t.shape))}), got shape {a.shape}")
    outs = []
    for i in graph.outputs:
        shape = tuple(graph.tensors[i].shape)
        sample = shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape
        outs.append(np.empty((n,) + sample, dtype=_NP.get(graph.tensors[i].dtype, np.float32)))
    for k in range(n):
        ys = compiled.run([a[k] for a in xs])
        for out, y in zip(outs, ys):
            out[k] = y.reshape(out.shape[1:])
    return outs[0] if len(outs) == 1 else outs


def emulate_profile(model: str | Path | bytes, accelerator: str = "mvp", timing=DEFAULT_TIMING,
                    seed: int = 0, count: int = 1) -> dict:
    """What the emulator adds to a profile (`mvpfarm profile --execute`): per layer the
    accelerator cycles of the programs it executed and its drift against the reference kernels
    (summed over `count` inputs drawn like the oracle's), and the model outputs' drift against a
    reference-kernel run of the whole model.

    {"accelerator", "timing", "seed", "count", "accelerator_cycles",
     "layers": [{"index", "opcode", "on_mvp", "mvp_kernel", "accelerator_cycles", "elements",
                 "drift_elements", "drift_max_steps"}],
     "outputs": {"elements", "drift_elements", "drift_max_steps"}}"""
    graph = read_model(bytes(model)) if isinstance(model, (bytes, bytearray)) else read_model_file(model)
    tm = _timing_model(timing)
    compiled = compile_model(graph, accelerator)
    reference = compile_model(graph, "none") if accelerator != "none" else compiled
    layers = [{"index": r["index"], "opcode": r["opcode"], "on_mvp": r["on_mvp"],
               "mvp_kernel": r.get("mvp_kernel"), "accelerator_cycles": r["accelerator_cycles"],
               "elements": 0, "drift_elements": 0, "drift_max_steps": 0.0}
              for r in compiled.layer_info(tm)]
    out_summary = {"elements": 0, "drift_elements": 0, "drift_max_steps": 0.0}
    for x in draw_inputs(graph, seed, count):
        outputs, drift = compiled.layer_drift([x])
        for row, d in zip(layers, drift):
            row["elements"] += d["elements"]
            row["drift_elements"] += d["drift_elements"]
            row["drift_max_steps"] = max(row["drift_max_steps"], d["drift_max_steps"])
        ref_outputs = reference.run([x]) if reference is not compiled else outputs
        for i, y, r in zip(graph.outputs, outputs, ref_outputs):
            d = _steps_apart(y, r, graph.tensors[i])
            out_summary["elements"] += int(d.size)
            out_summary["drift_elements"] += int(np.count_nonzero(d))
            out_summary["drift_max_steps"] = max(out_summary["drift_max_steps"], float(d.max()) if d.size else 0.0)
    return {"accelerator": accelerator, "timing": tm.name, "seed": seed, "count": count,
            "accelerator_cycles": sum(r["accelerator_cycles"] for r in layers),
            "layers": layers, "outputs": out_summary}


def draw_inputs(graph: Graph, seed: int, count: int) -> list[np.ndarray]:
    """The oracle's inputs (../shared/oracle/README.md, mltk_run.py): one default_rng(seed)
    stream; int8 inputs uniform over -128..127, float32 inputs uniform in [0, 1)."""
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        if t.dtype == "int8":
            out.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8))
        else:
            out.append(rng.random(t.shape, dtype=np.float32))
    return out


def emulate_file(path: str | Path, accelerator: str = "none", seed: int = 0, count: int = 3) -> dict:
    """The `mvpfarm emulate` contract: {"model", "accelerator", "seed", "results":
    [{"input_sha1", "output"}]}, outputs flattened (ints for int8, floats for float32)."""
    graph = read_model_file(path)
    compiled = compile_model(graph, accelerator)
    results = []
    for x in draw_inputs(graph, seed, count):
        y = compiled.run([x])[0]
        results.append({"input_sha1": hashlib.sha1(x.tobytes()).hexdigest(),
                        "output": [v.item() for v in np.asarray(y).ravel()]})
    return {"model": Path(path).name, "accelerator": accelerator, "seed": seed, "results": results}


# ----------------------------------------------------------------------------- helpers

def _err(graph: Graph, op: Operator, msg: str) -> ModelError:
    return ModelError(f"{graph.name}: layer {op.index} ({op.opcode}): {msg}")


def _qparams(graph: Graph, op: Operator, t: Tensor) -> tuple[float, int]:
    if t.scale is None or len(t.scale) == 0:
        raise _err(graph, op, f"tensor {t.name!r} has no quantization parameters")
    zp = int(t.zero_point[0]) if t.zero_point is not None and len(t.zero_point) else 0
    return float(t.scale[0]), zp


def _require_int8(graph: Graph, op: Operator, *tensors: Tensor) -> None:
    for t in tensors:
        if t.dtype != "int8":
            raise _err(graph, op, f"only int8 tensors are supported, {t.name!r} is {t.dtype}")


def same_pad(padding: str, stride: int, dilation: int, in_size: int, filter_size: int,
             out_size: int) -> int:
    """TFLM's ComputePaddingWithOffset: the leading padding for the given output size."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2 if padding == "same" else 0


def out_size(padding: str, stride: int, dilation: int, in_size: int, filter_size: int) -> int:
    effective = (filter_size - 1) * dilation + 1
    if padding == "same":
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def conv_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, channels: int):
    """Per-channel (multiplier, shift) from double(in_scale) * double(w_scale) / double(out)."""
    mult = np.empty(channels, dtype=np.int32)
    shift = np.empty(channels, dtype=np.int32)
    for c in range(channels):
        ws = float(w_scales[c] if len(w_scales) > 1 else w_scales[0])
        mult[c], shift[c] = quantize_multiplier(float(in_scale) * ws / float(out_scale))
    return mult, shift


def _bias(graph: Graph, op: Operator, idx: int, channels: int) -> np.ndarray:
    if idx < 0 or len(op.inputs) <= idx or op.inputs[idx] < 0:
        return np.zeros(channels, dtype=np.int32)
    b = graph.tensors[op.inputs[idx]].data
    if b is None:
        raise _err(graph, op, "bias is not a constant")
    return np.ascontiguousarray(b.reshape(-1).astype(np.int32))


# ----------------------------------------------------------------------------- constant folding

def _fold_constant(graph: Graph, op: Operator, constants: dict) -> bool:
    """Evaluates shape-only ops (SHAPE and int32 arithmetic on constants) once at compile time."""
    if op.opcode == "shape":
        t = graph.tensors[op.inputs[0]]
        out_t = graph.tensors[op.outputs[0]]
        constants[op.outputs[0]] = np.array(t.shape, dtype=_NP.get(out_t.dtype, np.int32))
        return True
    if op.opcode not in _FOLDABLE:
        return False
    if not all(i < 0 or i in constants for i in op.inputs):
        return False
    ins = [constants[i] if i >= 0 else None for i in op.inputs]
    out_t = graph.tensors[op.outputs[0]]
    try:
        result = _FOLDABLE[op.opcode](op, ins, out_t)
        if result is None:
            return False
        constants[op.outputs[0]] = np.asarray(result).astype(_NP.get(out_t.dtype, np.int32)).reshape(out_t.shape)
    except (ValueError, IndexError, TypeError, OverflowError) as e:    # constants a corrupt file made up
        raise _err(graph, op, f"its constant inputs do not give its output {list(out_t.shape)} "
                              f"({str(e).splitlines()[0][:120]})") from None
    return True


def _fold_strided_slice(op, ins, out_t):
    x, begin, end, strides = ins[0], ins[1], ins[2], ins[3]
    o = op.options
    slices = []
    shrink = []
    for d in range(len(begin)):
        b = None if (o.get("begin_mask", 0) >> d) & 1 else int(begin[d])
        e = None if (o.get("end_mask", 0) >> d) & 1 else int(end[d])
        if (o.get("shrink_axis_mask", 0) >> d) & 1:
            e = b + 1 if b != -1 else None
            shrink.append(d)
        slices.append(slice(b, e, int(strides[d])))
    r = x[tuple(slices)]
    return np.squeeze(r, axis=tuple(shrink)) if shrink else r


_FOLDABLE = {
    "strided_slice": _fold_strided_slice,
    "pack": lambda op, ins, t: np.stack(ins, axis=op.options.get("axis", 0)),
    "reshape": lambda op, ins, t: ins[0].reshape(t.shape),
    "concatenation": lambda op, ins, t: np.concatenate(ins, axis=op.options.get("axis", 0)),
    "gather": lambda op, ins, t: np.take(ins[0], ins[1], axis=op.options.get("axis", 0)),
    "cast": lambda op, ins, t: ins[0],
    "mul": lambda op, ins, t: ins[0] * ins[1] if ins[0].dtype.kind == "i" else None,
    "add": lambda op, ins, t: ins[0] + ins[1] if ins[0].dtype.kind == "i" else None,
}


# ----------------------------------------------------------------------------- reference steps

def _reference_step(graph: Graph, op: Operator) -> Step:
    builder = _BUILDERS.get(op.opcode)
    if builder is None:
        raise _err(graph, op, "op not supported by the emulator")
    run, info = builder(graph, op)
    return Step(op.index, op.opcode, "reference", run, info)


class _Window(NamedTuple):
    """What conv_2d and depthwise_conv_2d share: strides, dilations, output size, SAME padding and
    the padded input's extent, zero points, per-channel multipliers and the activation range."""
    sh: int
    sw: int
    dh: int
    dw: int
    out_h: int
    out_w: int
    pad_t: int
    pad_l: int
    hp: int
    wp: int
    in_zp: int
    out_zp: int
    mult: np.ndarray
    shift: np.ndarray
    act_min: int
    act_max: int


def _window_params(graph: Graph, op: Operator, x_t: Tensor, w_t: Tensor, y_t: Tensor, kh: int, kw: int,
                   oc: int) -> _Window:
    o = op.options
    _, h, w, _ = x_t.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    _, out_h, out_w, _ = y_t.shape
    pad_t = same_pad(o.get("padding", "valid"), sh, dh, h, kh, out_h)
    pad_l = same_pad(o.get("padding", "valid"), sw, dw, w, kw, out_w)
    hp = max(pad_t + h, (out_h - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pad_l + w, (out_w - 1) * sw + (kw - 1) * dw + 1)
    in_scale, in_zp = _qparams(graph, op, x_t)
    out_scale, out_zp = _qparams(graph, op, y_t)
    mult, shift = conv_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
    return _Window(sh, sw, dh, dw, out_h, out_w, pad_t, pad_l, hp, wp, in_zp, out_zp, mult, shift, act_min, act_max)


def _build_conv(graph: Graph, op: Operator):
    x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, w_t, y_t)
    ic = x_t.shape[3]
    oc, kh, kw, icg = w_t.shape
    if ic % icg:
        raise _err(graph, op, f"input depth {ic} is not a multiple of filter depth {icg}")
    p = _window_params(graph, op, x_t, w_t, y_t, kh, kw, oc)
    weights = np.ascontiguousarray(w_t.data.astype(np.int32).transpose(1, 2, 3, 0))
    bias = _bias(graph, op, 2, oc)
    groups = ic // icg
    xi, yi = op.inputs[0], op.outputs[0]
    if groups == 1:
        # one exact matrix product over the im2col rows (kernels_ref: matrix-product forms)
        w_abs = np.abs(weights.reshape(-1, oc).astype(np.float64)).sum(axis=0).max(initial=0.0)
        dtype = K.exact_float_type(float(w_abs), float(max(abs(-128 - p.in_zp), abs(127 - p.in_zp))))
        w_mat = np.ascontiguousarray(weights.reshape(-1, oc).astype(dtype))
        im2col = K.Im2col(x_t.shape, dtype, -p.in_zp, p.pad_t, p.pad_l, p.hp, p.wp, kh, kw, p.sh, p.sw, p.dh,
                          p.dw, p.out_h, p.out_w)
        requant = K.requantize_matrix
        shape = y_t.shape

        def run(values):
            acc = im2col(values[xi]) @ w_mat
            values[yi] = requant(acc, bias, p.mult, p.shift, p.out_zp, p.act_min, p.act_max).reshape(shape)
        return run, {}

    def run(values):
        xp = K.pad_offset_input(values[xi], np.int32(-p.in_zp), p.pad_t, p.pad_l, p.hp, p.wp)
        values[yi] = K.conv2d(xp, weights, bias, p.mult, p.shift, p.out_zp, p.act_min, p.act_max,
                              p.sh, p.sw, p.dh, p.dw, p.out_h, p.out_w, groups).reshape(y_t.shape)
    return run, {}


def _build_depthwise(graph: Graph, op: Operator):
    x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, w_t, y_t)
    ic = x_t.shape[3]
    _, kh, kw, oc = w_t.shape
    dm = oc // ic if ic else 1
    p = _window_params(graph, op, x_t, w_t, y_t, kh, kw, oc)
    weights = np.ascontiguousarray(w_t.data.astype(np.int32).reshape(kh, kw, oc))
    bias = _bias(graph, op, 2, oc)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        xp = K.pad_offset_input(values[xi], np.int32(-p.in_zp), p.pad_t, p.pad_l, p.hp, p.wp)
        values[yi] = K.depthwise_conv2d(xp, weights, bias, p.mult, p.shift, p.out_zp, p.act_min, p.act_max,
                                        p.sh, p.sw, p.dh, p.dw, p.out_h, p.out_w, dm).reshape(y_t.shape)
    return run, {}


def fc_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float, channels: int):
    """FC uses GetQuantizedConvolutionMultipler: one per-tensor multiplier from the filter's
    first scale (the TFLM that the vendor ships predates per-channel FC, so a per-channel
    filter is requantized with channel 0's scale: measured against the oracle), and the
    input*filter product is taken in float."""
    product = float(np.float32(in_scale) * np.float32(w_scales[0]))
    m, s = quantize_multiplier(product / float(out_scale))
    return np.full(channels, m, dtype=np.int32), np.full(channels, s, dtype=np.int32)


def _build_fc(graph: Graph, op: Operator):
    x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, w_t, y_t)
    if w_t.data is None:
        raise _err(graph, op, "weights are not constant")
    oc, k = w_t.shape
    batches = x_t.n_elements // k
    in_scale, in_zp = _qparams(graph, op, x_t)
    out_scale, out_zp = _qparams(graph, op, y_t)
    w_zp = int(w_t.zero_point[0]) if w_t.zero_point is not None and len(w_t.zero_point) else 0
    mult, shift = fc_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"),
                                        out_scale, out_zp)
    weights = np.ascontiguousarray(w_t.data.astype(np.int32) - w_zp)
    bias = _bias(graph, op, 2, oc)
    xi, yi = op.inputs[0], op.outputs[0]
    w_abs = np.abs(weights.astype(np.float64)).sum(axis=1).max(initial=0.0)
    dtype = K.exact_float_type(float(w_abs), float(max(abs(-128 - in_zp), abs(127 - in_zp))))
    w_mat = np.ascontiguousarray(weights.T.astype(dtype))
    offset = dtype(-in_zp)
    requant = K.requantize_matrix
    shape = y_t.shape

    def run(values):
        xo = values[xi].reshape(batches, k).astype(dtype)
        xo += offset
        values[yi] = requant(xo @ w_mat, bias, mult, shift, out_zp, act_min, act_max).reshape(shape)
    return run, {}


def _build_transpose_conv(graph: Graph, op: Operator):
    w_t, x_t = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, w_t, y_t)
    o = op.options
    oc, kh, kw, _ = w_t.shape
    _, out_h, out_w, _ = y_t.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    # TFLM derives the padding from the output size, as for a forward conv over the output
    pad_h = same_pad(o.get("padding", "valid"), sh, 1, out_h, kh, out_size(o.get("padding", "valid"), sh, 1, out_h, kh))
    pad_w = same_pad(o.get("padding", "valid"), sw, 1, out_w, kw, out_size(o.get("padding", "valid"), sw, 1, out_w, kw))
    in_scale, in_zp = _qparams(graph, op, x_t)
    out_scale, out_zp = _qparams(graph, op, y_t)
    mult, shift = conv_multipliers(in_scale, w_t.scale, out_scale, oc)
    act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
    bias = _bias(graph, op, 3, oc)
    weights = np.ascontiguousarray(w_t.data)
    xi, yi = op.inputs[2], op.outputs[0]

    def run(values):
        values[yi] = K.transpose_conv(values[xi], np.int32(-in_zp), weights, bias, mult, shift,
                                      out_zp, act_min, act_max, sh, sw, pad_h, pad_w, out_h, out_w
                                      ).reshape(y_t.shape)
    return run, {}


def _build_pool(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        _require_int8(graph, op, x_t, y_t)
        o = op.options
        _, h, w, _ = x_t.shape
        _, out_h, out_w, _ = y_t.shape
        fh, fw = o.get("filter_height", 1), o.get("filter_width", 1)
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        pad_t = same_pad(o.get("padding", "valid"), sh, 1, h, fh, out_h)
        pad_l = same_pad(o.get("padding", "valid"), sw, 1, w, fw, out_w)
        out_scale, out_zp = _qparams(graph, op, y_t)
        act_min, act_max = activation_range(o.get("fused_activation_function", "none"), out_scale, out_zp)
        fn = K.average_pool if kind == "avg" else K.max_pool
        xi, yi = op.inputs[0], op.outputs[0]

        def run(values):
            values[yi] = fn(values[xi], fh, fw, sh, sw, pad_t, pad_l, out_h, out_w, act_min, act_max)
        return run, {}
    return build


def _broadcast_flat(a: np.ndarray, b: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    if a.shape == b.shape:
        return a.reshape(-1), b.reshape(-1)
    return (np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1),
            np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1))


def _build_add(graph: Graph, op: Operator):
    a_t, b_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, a_t, b_t, y_t)
    s1, z1 = _qparams(graph, op, a_t)
    s2, z2 = _qparams(graph, op, b_t)
    so, zo = _qparams(graph, op, y_t)
    left_shift = 20
    twice_max = 2.0 * float(max(np.float32(s1), np.float32(s2)))
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"), so, zo)
    ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]

    def run(values):
        x1, x2 = _broadcast_flat(values[ai], values[bi], y_t.shape)
        values[yi] = K.add(x1, x2, -z1, -z2, left_shift, m1, sh1, m2, sh2, mo, sho, zo,
                           act_min, act_max).reshape(y_t.shape)
    return run, {}


def _build_mul(graph: Graph, op: Operator):
    a_t, b_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    y_t = graph.tensors[op.outputs[0]]
    _require_int8(graph, op, a_t, b_t, y_t)
    s1, z1 = _qparams(graph, op, a_t)
    s2, z2 = _qparams(graph, op, b_t)
    so, zo = _qparams(graph, op, y_t)
    m, sh = quantize_multiplier(float(s1) * float(s2) / float(so))
    act_min, act_max = activation_range(op.options.get("fused_activation_function", "none"), so, zo)
    ai, bi, yi = op.inputs[0], op.inputs[1], op.outputs[0]

    def run(values):
        x1, x2 = _broadcast_flat(values[ai], values[bi], y_t.shape)
        values[yi] = K.mul(x1, x2, -z1, -z2, m, sh, zo, act_min, act_max).reshape(y_t.shape)
    return run, {}


def _build_softmax(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, y_t)
    in_scale, _ = _qparams(graph, op, x_t)
    mult, left_shift, diff_min = softmax_params(float(op.options.get("beta", 1.0)), in_scale)
    depth = x_t.shape[-1]
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = K.softmax(values[xi].reshape(-1, depth), mult, left_shift, diff_min
                               ).reshape(y_t.shape)
    return run, {}


def _build_sigmoid_tanh(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        _require_int8(graph, op, x_t, y_t)
        in_scale, in_zp = _qparams(graph, op, x_t)
        mult, left_shift, radius = sigmoid_tanh_params(in_scale)
        fn = K.logistic if kind == "logistic" else K.tanh
        xi, yi = op.inputs[0], op.outputs[0]

        def run(values):
            values[yi] = fn(values[xi].reshape(-1), in_zp, mult, left_shift, radius).reshape(y_t.shape)
        return run, {}
    return build


def _build_quantize(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    out_scale, out_zp = _qparams(graph, op, y_t)
    xi, yi = op.inputs[0], op.outputs[0]
    if y_t.dtype != "int8":
        raise _err(graph, op, f"quantize to {y_t.dtype} is not supported")
    if x_t.dtype == "float32":
        def run(values):
            values[yi] = K.quantize_f32(values[xi].reshape(-1), out_scale, out_zp).reshape(y_t.shape)
        return run, {}
    if x_t.dtype == "int8":
        in_scale, in_zp = _qparams(graph, op, x_t)
        m, sh = quantize_multiplier(float(in_scale) / float(out_scale))

        def run(values):
            values[yi] = K.requantize_i8(values[xi].reshape(-1), in_zp, m, sh, out_zp).reshape(y_t.shape)
        return run, {}
    raise _err(graph, op, f"quantize from {x_t.dtype} is not supported")


def _build_dequantize(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t)
    scale, zp = _qparams(graph, op, x_t)
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = K.dequantize_i8(values[xi].reshape(-1), scale, zp).reshape(y_t.shape)
    return run, {}


def _build_reshape(graph: Graph, op: Operator):
    y_t = graph.tensors[op.outputs[0]]
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = values[xi].reshape(y_t.shape)
    return run, {}


def _build_pad(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, y_t)
    p = graph.tensors[op.inputs[1]].data
    if p is None:
        raise _err(graph, op, "paddings are not constant")
    widths = [(int(a), int(b)) for a, b in np.asarray(p).reshape(-1, 2)]
    _, out_zp = _qparams(graph, op, y_t)
    value = out_zp
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = int(graph.tensors[op.inputs[2]].data.reshape(-1)[0])
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = np.pad(values[xi], widths, mode="constant", constant_values=value)
    return run, {}


def _build_concat(graph: Graph, op: Operator):
    y_t = graph.tensors[op.outputs[0]]
    ins = [graph.tensors[i] for i in op.inputs]
    _require_int8(graph, op, y_t, *ins)
    axis = op.options.get("axis", 0)
    axis = axis + len(y_t.shape) if axis < 0 else axis
    act = op.options.get("fused_activation_function", "none")
    if act != "none":
        raise _err(graph, op, f"fused activation {act} is not supported")
    idx, yi = list(op.inputs), op.outputs[0]

    def run(values):
        values[yi] = np.concatenate([values[i] for i in idx], axis=axis)
    return run, {}


def _build_mean(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, y_t)
    axes_data = graph.tensors[op.inputs[1]].data
    if axes_data is None:
        raise _err(graph, op, "axes are not constant")
    raw_axes = [int(a) for a in np.asarray(axes_data).reshape(-1)]
    nd = len(x_t.shape)
    axes = []
    for a in raw_axes:
        a = a + nd if a < 0 else a
        if a not in axes:
            axes.append(a)
    keep_dims = bool(op.options.get("keep_dims", False))
    in_scale, in_zp = _qparams(graph, op, x_t)
    out_scale, out_zp = _qparams(graph, op, y_t)
    count = int(np.prod([x_t.shape[a] for a in axes])) if axes else 1
    xi, yi = op.inputs[0], op.outputs[0]
    special = (keep_dims and nd == 4 and len(raw_axes) == 2 and sorted(raw_axes) == [1, 2])
    if special:
        m, sh = quantize_multiplier(float(in_scale) / float(out_scale))

        def run(values):
            values[yi] = K.mean_hw_keepdims(values[xi], in_zp, m, sh, out_zp).reshape(y_t.shape)
        return run, {}
    if in_zp == out_zp and np.float32(in_scale) == np.float32(out_scale):
        def run(values):
            sums = values[xi].astype(np.int32).sum(axis=tuple(axes), dtype=np.int32)
            # C++ integer division truncates toward zero
            q = np.abs(sums) // count * np.sign(sums)
            values[yi] = q.astype(np.int8).reshape(y_t.shape)
        return run, {}
    scale = float(np.float32(in_scale) / np.float32(out_scale))

    def run(values):
        sums = values[xi].astype(np.int32).sum(axis=tuple(axes), dtype=np.int32).reshape(-1)
        values[yi] = K.mean_float_rescale(sums, count, in_zp, scale, out_zp).reshape(y_t.shape)
    return run, {}


def _build_relu(kind: str):
    def build(graph: Graph, op: Operator):
        x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        _require_int8(graph, op, x_t, y_t)
        in_scale, in_zp = _qparams(graph, op, x_t)
        out_scale, out_zp = _qparams(graph, op, y_t)
        xi, yi = op.inputs[0], op.outputs[0]
        if kind == "relu6":
            # TFLM's int8 RELU6 clamps in the input's quantization, without rescaling
            six = int(c_round(float(np.float32(6.0) / np.float32(in_scale)))) + in_zp
            lo, hi = in_zp, min(max(six, -128), 127)

            def run(values):
                values[yi] = np.clip(values[xi], lo, hi).astype(np.int8)
            return run, {}
        m, sh = quantize_multiplier(float(in_scale) / float(out_scale))
        lo = max(-128, out_zp + int(c_round(float(np.float32(0.0) / np.float32(out_scale)))))
        hi = 127

        def run(values):
            values[yi] = K.relu_requant(values[xi].reshape(-1), in_zp, m, sh, out_zp, lo, hi
                                        ).reshape(y_t.shape)
        return run, {}
    return build


def _build_leaky_relu(graph: Graph, op: Operator):
    x_t, y_t = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _require_int8(graph, op, x_t, y_t)
    in_scale, in_zp = _qparams(graph, op, x_t)
    out_scale, out_zp = _qparams(graph, op, y_t)
    alpha = np.float32(op.options.get("alpha", 0.2))
    m_a, s_a = quantize_multiplier(float(np.float32(in_scale) * alpha / np.float32(out_scale)))
    m_i, s_i = quantize_multiplier(float(np.float32(in_scale) / np.float32(out_scale)))
    xi, yi = op.inputs[0], op.outputs[0]

    def run(values):
        values[yi] = K.leaky_relu(values[xi].reshape(-1), in_zp, m_i, s_i, m_a, s_a, out_zp
                                  ).reshape(y_t.shape)
    return run, {}


_BUILDERS = {
    "conv_2d": _build_conv,
    "depthwise_conv_2d": _build_depthwise,
    "fully_connected": _build_fc,
    "transpose_conv": _build_transpose_conv,
    "average_pool_2d": _build_pool("avg"),
    "max_pool_2d": _build_pool("max"),
    "add": _build_add,
    "mul": _build_mul,
    "softmax": _build_softmax,
    "logistic": _build_sigmoid_tanh("logistic"),
    "tanh": _build_sigmoid_tanh("tanh"),
    "quantize": _build_quantize,
    "dequantize": _build_dequantize,
    "reshape": _build_reshape,
    "squeeze": _build_reshape,
    "expand_dims": _build_reshape,
    "pad": _build_pad,
    "padv2": _build_pad,
    "concatenation": _build_concat,
    "mean": _build_mean,
    "relu": _build_relu("relu"),
    "relu6": _build_relu("relu6"),
    "leaky_relu": _build_leaky_relu,
}

__all__ = ["run_model", "emulate_batch", "emulate_file", "emulate_profile", "compile_model", "draw_inputs",
           "EmulationResult", "CompiledModel", "ACCELERATORS"]
