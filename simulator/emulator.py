"""Runs a .tflite model the way an EFR32xG24 would: the public API of the emulator.

    from simulator.emulator import run_model, emulate_batch, emulate_file
    result = run_model(open("m.tflite", "rb").read(), [x], accelerator="none")
    result.outputs[0], result.layers
    y = emulate_batch(model_bytes, x_val, accelerator="mvp")   # (N, ...) outputs, same bits

`accelerator="none"` is TFLite Micro's reference-kernel build (bit-exact int8 kernels from
`kernels_ref.py`); `accelerator="mvp"` runs the layers that the MVP accelerates through
`mvp_exec.py` (binary16 arithmetic) and every other layer with the reference kernels.

A model is compiled once into a list of steps (per-layer constants prepared, shape-only
sub-graphs folded to constants: `constant_folding`; reference steps: `reference_ops`; MVP
steps: `mvp_exec`), then every inference only calls the JIT kernels and, for conv and fully
connected, one exact matrix product each. Steps work on a batch: every activation carries a
leading batch axis, and each kernel treats the samples independently (the MVP interpreter
decodes an instruction once and applies it to every sample), so a batch gives the same bits as
one sample at a time.

`run_model(..., compare_reference=True)` adds per layer the accelerator cycles of the programs
executed (a timing model applied to them: the profiler's numbers, since both price the same
programs) and the drift against the reference kernels; `emulate_profile` is that as plain data
for `mvpfarm profile --execute`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.constant_folding import NP_DTYPES as _NP, fold_constant
from simulator.emulation_step import Step
from simulator.errors import ModelError
from simulator.graph import Graph, Tensor
from simulator.hardware import ACCELERATORS
from simulator.reference_ops import OPERATORS, reference_step
from simulator.tflite_reader import read_model, read_model_file
from simulator.timing import DEFAULT_TIMING  # one default for profile and emulate

BATCH_SIZE = 256   # samples per emulate_batch chunk: bounds the memory of the widest layer


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
        """One inference: one array per model input (or a single array) -> the outputs."""
        values = self.run_values(inputs)
        return [values[i].reshape(self.graph.tensors[i].shape) for i in self.graph.outputs]

    def run_batch(self, inputs) -> list[np.ndarray]:
        """A batch: one array per model input, (N, ...) with N samples of the input's size ->
        per output an (N, *output shape) array."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        n = np.shape(inputs[0])[0] if len(inputs) and np.ndim(inputs[0]) else 0
        values = self._values([np.asarray(x).reshape((n, -1)) for x in inputs], n)
        for step in self.steps:
            step.run(values)
        # an output computed from constants only has a batch axis of 1: every sample gets it
        return [np.broadcast_to(values[i], (n,) + values[i].shape[1:]).reshape((n,) + tuple(self.graph.tensors[i].shape))
                for i in self.graph.outputs]

    def run_values(self, inputs) -> list:
        """One inference; every tensor's value with a leading batch axis of 1 (for per-layer
        comparisons)."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        values = self._values([np.asarray(x).reshape(1, -1) for x in inputs], 1)
        for step in self.steps:
            step.run(values)
        return values

    def _values(self, inputs: list, n: int) -> list:
        """The tensor value list of a batch of n: constants (batch axis 1) and the inputs."""
        values: list = [None] * len(self.graph.tensors)
        for i, v in self.constants.items():
            values[i] = v[np.newaxis]
        if len(inputs) != len(self.graph.inputs):
            raise ModelError(f"{self.graph.name}: model takes {len(self.graph.inputs)} inputs, "
                             f"got {len(inputs)}")
        for ti, x in zip(self.graph.inputs, inputs):
            t = self.graph.tensors[ti]
            if x.shape != (n, t.n_elements):
                raise ModelError(f"{self.graph.name}: input {t.name!r} needs {t.n_elements} "
                                 f"elements of {t.dtype}, got {x.size // max(n, 1)}")
            values[ti] = np.ascontiguousarray(x, dtype=_NP.get(t.dtype, x.dtype)).reshape((n,) + tuple(t.shape))
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
            self._reference[step.index] = reference_step(self.graph, self.graph.operators[step.index])
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
        mvp_planner = mvp_exec.compile_step
    steps = []
    for op in graph.operators:
        if fold_constant(graph, op, constants):
            continue
        step = None
        if mvp_planner is not None:
            step = mvp_planner(graph, op)
        if step is None:
            step = reference_step(graph, op)
        steps.append(step)
    compiled = CompiledModel(graph, accelerator, steps, constants)
    _CACHE[key] = compiled
    return compiled



def _compiled(model: Graph | bytes, accelerator: str) -> CompiledModel:
    """The compiled model of a graph or of .tflite bytes; bytes already compiled are not parsed
    again (a caller scoring chunk after chunk passes the same bytes each time)."""
    if isinstance(model, Graph):
        return compile_model(model, accelerator)
    data = bytes(model)
    hit = _CACHE.get((hashlib.sha256(data).hexdigest(), accelerator))
    return hit if hit is not None else compile_model(read_model(data), accelerator)


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


def emulate_batch(model: Graph | bytes, x, accelerator: str = "none", batch_size: int = BATCH_SIZE):
    """Runs a batch of samples; the same bits as running them one at a time.

    `model`: .tflite bytes or a parsed `graph.Graph`. `x`: one array per model input (or a single
    array for a one-input model) whose first axis is the sample axis; each sample holds the
    input tensor's elements in any shape of that size (e.g. (N, 49, 10, 1) or (N, 1, 49, 10, 1)
    for a 1x49x10x1 input), in the input's dtype (int8 inputs take already quantized values).
    Returns, like Keras' `predict`, one array for a one-output model, else a list: each array is
    (N, *output_shape) with a leading 1 of the output shape dropped (a 1x10 output gives (N, 10)).
    Samples run `batch_size` at a time through the same compiled kernels (the batch axis is an
    extra loop inside them). Raises `ModelError` naming the layer and operator for a model the
    emulator cannot run (`OPERATORS` lists the operators it runs)."""
    compiled = _compiled(model, accelerator)
    graph = compiled.graph
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
    for lo in range(0, n, batch_size):
        ys = compiled.run_batch([a[lo:lo + batch_size] for a in xs])
        for out, y in zip(outs, ys):
            out[lo:lo + batch_size] = y.reshape((-1,) + out.shape[1:])
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
    xs = draw_inputs(graph, seed, count)
    ys = compiled.run_batch([np.stack(xs)])[0] if xs else []   # one batch: the same bits, faster
    results = [{"input_sha1": hashlib.sha1(x.tobytes()).hexdigest(),
                "output": [v.item() for v in np.asarray(y).ravel()]} for x, y in zip(xs, ys)]
    return {"model": Path(path).name, "accelerator": accelerator, "seed": seed, "results": results}


__all__ = ["run_model", "emulate_batch", "emulate_file", "emulate_profile", "compile_model", "draw_inputs",
           "EmulationResult", "CompiledModel", "Step", "ACCELERATORS", "OPERATORS"]
