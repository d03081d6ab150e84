"""Scoring a converted variant on the validation samples as the board computes it.

Runs in simulator workers (numpy and the simulator, never TensorFlow) and in the training workers,
which quantize the interpreter's inputs with the same `quantize_input`, so that the emulator and
TensorFlow Lite's interpreter see the very same int8 inputs. `emulate_outputs` is the one place
that calls the emulator.
"""
from __future__ import annotations

import numpy as np

from orchestrator import datasets, metrics


def quantize_input(x: np.ndarray, dtype: str, scale, zero_point) -> np.ndarray:
    """Float samples -> what the model's input takes: int8 by its quantization, float32 as is
    (a float32-input model quantizes on the board, in its first operator)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype != "int8":
        return x
    s = float(np.asarray(scale).ravel()[0])
    z = int(np.asarray(zero_point).ravel()[0])
    return np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)


def dequantize_output(y: np.ndarray, dtype: str, scale, zero_point) -> np.ndarray:
    if dtype != "int8":
        return np.asarray(y, dtype=np.float32)
    s = float(np.asarray(scale).ravel()[0])
    z = int(np.asarray(zero_point).ravel()[0])
    return ((np.asarray(y, dtype=np.float32) - z) * s).astype(np.float32)


def emulate_outputs(graph, x: np.ndarray, accelerator: str) -> np.ndarray:
    """The model's raw outputs for every sample of x, (N, output elements), as the emulator
    computes them in the target's mode (`emulate_batch`: the same bits as one at a time)."""
    from simulator.emulator import emulate_batch
    out = emulate_batch(graph, x, accelerator)
    out = out[0] if isinstance(out, list) else out
    return np.asarray(out).reshape(len(x), -1)


def score(tflite: bytes, x_val: np.ndarray, y_val: np.ndarray, metric_name: str, accelerator: str,
          reference_outputs: np.ndarray | None = None, search_path=()) -> dict:
    """{"accuracy", "agreement_tflite", "error"}: the metric of the emulated int8 model on
    (x_val, y_val), x_val already resized to the model's input, and the share of samples whose
    answer equals the interpreter's (`reference_outputs`, raw). A model the emulator cannot run
    gives no accuracy and the emulator's reason."""
    from simulator.errors import ModelError
    from simulator.tflite_reader import read_model
    graph = read_model(bytes(tflite))
    t_in = graph.tensors[graph.inputs[0]]
    t_out = graph.tensors[graph.outputs[0]]
    xq = quantize_input(x_val, t_in.dtype, t_in.scale, t_in.zero_point)
    try:
        raw = emulate_outputs(graph, xq, accelerator)
    except ModelError as e:
        return {"accuracy": None, "agreement_tflite": None, "error": f"emulator: {e}"}
    metric = metrics.get(metric_name, search_path)
    y_pred = dequantize_output(raw, t_out.dtype, t_out.scale, t_out.zero_point)
    out = {"accuracy": metric.fn(y_val, y_pred), "agreement_tflite": None, "error": None}
    if reference_outputs is not None:
        out["agreement_tflite"] = metrics.agree(metric, raw, reference_outputs)
    return out


def variant_inputs(x: np.ndarray, input_shape) -> np.ndarray:
    """The samples resized to a variant's input (see `datasets.resize`)."""
    return datasets.resize(x, list(input_shape))
