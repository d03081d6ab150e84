"""Cortex-M33 cycle cost per layer: a linear model over a few named features of each kernel.

The CPU runs every layer that is off the MVP (CMSIS-NN / reference kernels) and, for MVP layers,
its share: building programs (69 word writes each), the per-program interrupt, clamp tails. The
coefficients are data (`hardware/cortex_m33_cpu.json`); where published board measurements exist
they are fitted to them (`fit_params`), elsewhere they are documented estimates.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from simulator import hardware
from simulator.graph import Graph, Operator

HARDWARE_DIR = hardware.HARDWARE_DIR
DEFAULT_PARAMS_NAME = "cortex_m33_cpu"
PARAMS_PATH = HARDWARE_DIR / f"{DEFAULT_PARAMS_NAME}.json"
POOLED_MVP_KEY = "*/mvp"  # coefficients shared by MVP kernels that have none of their own

# CPU kernels that do the same work per element, so one can be priced by another's measurements
# when it has none of its own: TFLM's int8 softmax, logistic and tanh each evaluate a fixed-point
# exp per element; quantize and dequantize each rescale an element through a multiplier;
# SQUARED_DIFFERENCE does ADD's per-element work (two input rescales, one output rescale).
KERNEL_FAMILIES = {
    "softmax/cpu": "exp/cpu", "logistic/cpu": "exp/cpu", "tanh/cpu": "exp/cpu",
    "quantize/cpu": "rescale/cpu", "dequantize/cpu": "rescale/cpu",
    "squared_difference/cpu": "add/cpu",
}
FEATURES = ("fixed", "in_elements", "out_elements", "macs", "programs", "program_channels")


def features(graph: Graph, op: Operator, plan) -> dict[str, float]:
    """The quantities a layer's CPU time is linear in."""
    ins = [t for t in graph.op_inputs(op) if t is not None and t.data is None]
    outs = graph.op_outputs(op)
    in_n = sum(t.n_elements for t in ins)
    out_n = sum(t.n_elements for t in outs)
    from simulator.counting import count_ops_macs  # local: counting imports nothing heavy either
    _, macs = count_ops_macs(graph, op)
    programs = plan.n_programs if plan.runs_on_mvp else 0
    channels = outs[0].shape[-1] if outs and outs[0].shape else 1
    return {"fixed": 1.0, "in_elements": float(in_n), "out_elements": float(out_n), "macs": float(macs),
            "programs": float(programs), "program_channels": float(programs * channels)}


def kernel_key(op: Operator, plan) -> str:
    """Which coefficient set applies: the MVP path of an op differs from its CPU path."""
    return f"{op.opcode}/mvp" if plan.runs_on_mvp else f"{op.opcode}/cpu"


def candidate_keys(op: Operator, plan) -> list[str]:
    """Coefficient sets that may price a layer, most specific first: the kernel path the plan
    chose (e.g. "depthwise_conv_2d/mvp-opt": one program per pixel costs the CPU differently from
    the generic path), the op's MVP or CPU key, its kernel family, then for MVP layers the pooled
    MVP set."""
    keys = [plan.kernel] if plan.runs_on_mvp and getattr(plan, "kernel", None) else []
    keys.append(kernel_key(op, plan))
    if kernel_key(op, plan) in KERNEL_FAMILIES:
        keys.append(KERNEL_FAMILIES[kernel_key(op, plan)])
    if plan.runs_on_mvp:
        keys.append(POOLED_MVP_KEY)
    return list(dict.fromkeys(keys))


def coefficients(params: dict, op: Operator, plan) -> dict:
    """A set fitted to measurements beats a hand estimate; a specific set beats a general one."""
    kernels, fitted = params["kernels"], set(params.get("_fitted", ()))
    keys = candidate_keys(op, plan)
    for key in [k for k in keys if k in fitted] + keys:
        if key in kernels:
            return kernels[key]
    return params["default"]


@lru_cache(maxsize=8)
def load_params(path: str | None = None) -> dict:
    return json.loads(Path(path or PARAMS_PATH).read_text())


def load_params_named(name: str) -> dict:
    """CPU parameters from simulator/hardware/NAME.json."""
    path = HARDWARE_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no CPU model {name!r} in {HARDWARE_DIR}")
    return load_params(str(path))


def cpu_cycles(graph: Graph, op: Operator, plan, params: dict) -> int:
    coeffs = coefficients(params, op, plan)
    f = features(graph, op, plan)
    return int(round(params["per_layer_cycles"] + sum(coeffs.get(k, 0.0) * f[k] for k in FEATURES)))


def fit_params(rows: list[tuple[str, dict[str, float], float]], base: dict,
               features_for: Callable[[str], tuple[str, ...]] | None = None) -> dict:
    """Least-squares fit of each kernel's coefficients to measured CPU cycles.

    rows: (kernel key, features, measured cycles). Kernels with no rows keep `base`'s estimates.
    `features_for(key)` limits which features a kernel's fit may use (default: all): with a
    handful of layers per kernel, fewer free coefficients extrapolate better.
    Coefficients are kept non-negative by dropping features whose fitted weight comes out
    negative and refitting: a CPU never gets faster with more work."""
    out = json.loads(json.dumps(base))
    per_layer = base["per_layer_cycles"]
    for key in sorted({r[0] for r in rows}):
        sel = [(f, y - per_layer) for k, f, y in rows if k == key]
        allowed = features_for(key) if features_for else FEATURES
        used = [k for k in FEATURES if k in allowed and any(f[k] for f, _ in sel)]
        while used:
            A = np.array([[f[k] for k in used] for f, _ in sel])
            y = np.array([y for _, y in sel])
            # relative error matters, not absolute: weight each row by 1/measured
            w = 1.0 / np.maximum(np.abs(y) + per_layer, 1.0)
            coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
            if (coef >= 0).all():
                break
            used.pop(int(np.argmin(coef)))
        out["kernels"][key] = {k: float(c) for k, c in zip(used, coef)} if used else {"fixed": 0.0}
    out["_fitted"] = sorted(set(out.get("_fitted", [])) | {r[0] for r in rows})
    return out
