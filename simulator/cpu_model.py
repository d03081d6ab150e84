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

import numpy as np

from simulator.graph import Graph, Operator

PARAMS_PATH = Path(__file__).with_name("hardware") / "cortex_m33_cpu.json"
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


@lru_cache(maxsize=8)
def load_params(path: str | None = None) -> dict:
    return json.loads(Path(path or PARAMS_PATH).read_text())


def cpu_cycles(graph: Graph, op: Operator, plan, params: dict) -> int:
    coeffs = params["kernels"].get(kernel_key(op, plan)) or params["default"]
    f = features(graph, op, plan)
    return int(round(params["per_layer_cycles"] + sum(coeffs.get(k, 0.0) * f[k] for k in FEATURES)))


def fit_params(rows: list[tuple[str, dict[str, float], float]], base: dict) -> dict:
    """Least-squares fit of each kernel's coefficients to measured CPU cycles.

    rows: (kernel key, features, measured cycles). Kernels with no rows keep `base`'s estimates.
    Coefficients are kept non-negative by dropping features whose fitted weight comes out
    negative and refitting: a CPU never gets faster with more work."""
    out = json.loads(json.dumps(base))
    per_layer = base["per_layer_cycles"]
    for key in sorted({r[0] for r in rows}):
        sel = [(f, y - per_layer) for k, f, y in rows if k == key]
        used = [k for k in FEATURES if any(f[k] for f, _ in sel)]
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
    return out
