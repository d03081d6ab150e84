"""Calibration: fit a timing model to what boards measured, and say honestly how well it predicts.

Input: device `ProfileRecord`s (per layer: accelerator cycles, CPU cycles, time) and the .tflite
files of the same models. Each layer is matched with the simulator's plan for it, then three
parts are fitted, each linear, each in plain numpy:

1. Accelerator: board cycles = sum(param * count) over the counts `TimingModel.accelerator_features`
   gives (instructions, RAW hazards, launches, loads and stores per element type, load-array
   switches). Non-negative least squares, pulled gently towards the vendor-sim parameters (a ridge
   term scaled to each column) so that counts the data cannot tell apart keep physical values.
2. CPU: `cpu_model.fit_params` per kernel path, plus a pooled set for MVP kernels that a new model
   may use but the data never showed.
3. Latency: time_scale from CPU-only layers (board time / CPU cycles), then per kernel the share k
   of the shorter of (acc, cpu) that does not overlap the longer one, in [0, 1].

Every parameter fitted from device data starts from a prior that has seen none of it (vendor-sim's
accelerator parameters, the CPU model's hand estimates, no overlap), so leave-one-model-out
cross-validation refits everything without the held-out model and never peeks at it.

The farm's `mvpfarm calibrate` runs it on device records from any source. The built-in `board` model
comes from the vendor's published reports; its command lives with the benchmark:

    .venv/bin/python bench/latency_fidelity.py --write-board simulator/timing_models/board.json
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from simulator import cpu_model
from simulator.errors import ModelError
from simulator.graph import Graph
from simulator.mvp_plan import LayerPlan, plan_layer
from simulator.timing import (MODELS_DIR, POOLED_MVP_KEY, SCHEMA_VERSION, TimingModel, load_timing_model,
                              user_models_dir)
from simulator.tflite_reader import read_model_file

PRIOR_ACCELERATOR = "vendor-sim"
RIDGE = 1e-3            # pull towards the prior, relative to each column's weight in the data
# vendor-sim reproduces the vendor simulator's instruction stream cycle for cycle; a board runs the
# same stream and adds stalls, so by default only the stall and overhead terms are fitted
FIXED_ACCELERATOR = ("instructions", "raw_stalls")
MIN_WEIGHT_CYCLES = 1000.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# With a handful of layers per kernel, only the features that explain a kernel's CPU work are free:
# an MVP kernel's CPU share is setting up and launching programs; a CPU kernel's is per element.
MVP_CPU_FEATURES = ("fixed", "programs")
CPU_CPU_FEATURES = ("fixed", "out_elements")
# A reduction's loop runs over its input: a global average pool over a 3x3 map costs 9x one over a
# 1x1 map for the same output, which a per-output price would hide from the input-size tip.
REDUCTION_CPU_FEATURES = ("fixed", "in_elements")
REDUCTION_KERNELS = ("mean/cpu", "sum/cpu", "reduce_max/cpu", "reduce_min/cpu", "reduce_prod/cpu")


@dataclass
class LayerSample:
    index: int
    opcode: str
    kernel: str                 # plan.kernel, e.g. "depthwise_conv_2d/mvp-opt"
    plan: LayerPlan
    op: object
    cpu_features: dict
    measured_acc: float
    measured_cpu: float
    measured_time_s: float


@dataclass
class ModelSample:
    name: str
    graph: Graph
    clock_hz: float
    measured_total_s: float
    layers: list[LayerSample]


# ------------------------------------------------------------------ matching records to models

def _model_files(model_paths) -> list[Path]:
    if isinstance(model_paths, (str, Path)):
        model_paths = [model_paths]
    files: list[Path] = []
    for p in map(Path, model_paths):
        if p.is_dir():
            files += sorted(p.glob("*.tflite"))
        elif p.is_file():
            files.append(p)
        else:
            raise ModelError(f"{p}: no such model file or folder")
    return files


def match(device_records, model_paths) -> list[ModelSample]:
    """Pairs each device record with the .tflite of the same name and checks their layers agree."""
    records = list(device_records.values()) if isinstance(device_records, dict) else list(device_records)
    if not records:
        raise ModelError("no device records to calibrate from")
    by_stem = {f.stem: f for f in _model_files(model_paths)}
    samples = []
    for rec in records:
        path = by_stem.get(rec.model.name)
        if path is None:
            raise ModelError(f"{rec.model.name}: no {rec.model.name}.tflite among the model files given")
        graph = read_model_file(path)
        if len(graph.operators) != len(rec.layers):
            raise ModelError(f"{rec.model.name}: device record has {len(rec.layers)} layers, "
                             f"{path} has {len(graph.operators)}")
        layers = []
        for op, L in zip(graph.operators, rec.layers):
            if op.opcode != L.opcode:
                raise ModelError(f"{rec.model.name}: layer {op.index} is {op.opcode} in {path} "
                                 f"but {L.opcode} in the device record")
            plan = plan_layer(graph, op)
            layers.append(LayerSample(op.index, op.opcode, plan.kernel, plan, op,
                                      cpu_model.features(graph, op, plan), float(L.accelerator_cycles),
                                      float(L.cpu_cycles), float(L.latency_s)))
        total = rec.summary.latency_s or sum(L.latency_s for L in rec.layers)
        samples.append(ModelSample(rec.model.name, graph, float(rec.target.clock_hz), float(total), layers))
    return samples


# ------------------------------------------------------------------ the prior and the three fits

def prior_model() -> TimingModel:
    """What calibration starts from: vendor-sim's accelerator pricing, the CPU model's hand
    estimates only (sets fitted to device data are dropped, so cross-validation cannot see the
    held-out model through them), every program counted (the board's counters see clamp passes)."""
    base = load_timing_model(PRIOR_ACCELERATOR)
    cpu = json.loads(json.dumps(base.cpu))
    fitted = set(cpu.pop("_fitted", []))
    cpu["kernels"] = {k: v for k, v in cpu["kernels"].items() if k not in fitted}
    return replace(base, name="prior", cpu=cpu, count_program_kinds={}, overlap={}, default_overlap=0.0,
                   time_scale=1.0, description="", meta={})


def _nonneg_ridge(A: np.ndarray, y: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """argmin |A x - y|^2 + ridge * sum_j |A_j|^2 (x_j - prior_j)^2 subject to x >= 0
    (active set: a coefficient that comes out negative is fixed at 0 and the rest refitted)."""
    scale = np.sqrt(ridge) * np.linalg.norm(A, axis=0)
    free = list(range(A.shape[1]))
    x = np.zeros(A.shape[1])
    while free:
        sol, *_ = np.linalg.lstsq(np.vstack([A[:, free], np.diag(scale[free])]),
                                  np.concatenate([y, scale[free] * prior[free]]), rcond=None)
        if (sol >= 0).all():
            x[free] = sol
            break
        free.pop(int(np.argmin(sol)))
    return x


def fit_accelerator(samples: list[ModelSample], prior: TimingModel, ridge: float = RIDGE,
                    fixed: tuple[str, ...] = FIXED_ACCELERATOR) -> TimingModel:
    rows = [(prior.accelerator_features(L.plan), L.measured_acc)
            for m in samples for L in m.layers if L.plan.runs_on_mvp and L.measured_acc > 0]
    if not rows:
        return prior
    p0 = prior.accelerator_params()
    keys = [k for k in p0 if k not in fixed and any(f[k] for f, _ in rows)]
    A = np.array([[f[k] for k in keys] for f, _ in rows])
    y = np.array([acc - sum(p0[k] * f[k] for k in fixed) for f, acc in rows])
    # between absolute and relative: big layers dominate a model's time, small ones still count
    w = 1.0 / np.sqrt(np.maximum(y, MIN_WEIGHT_CYCLES))
    x = _nonneg_ridge(A * w[:, None], y * w, np.array([p0[k] for k in keys]), ridge)
    return prior.with_accelerator_params(dict(zip(keys, map(float, x))))


def _cpu_features_for(key: str) -> tuple[str, ...]:
    if "/mvp" in key or key == POOLED_MVP_KEY:
        return MVP_CPU_FEATURES
    return REDUCTION_CPU_FEATURES if key in REDUCTION_KERNELS else CPU_CPU_FEATURES


def fit_cpu(samples: list[ModelSample], prior: TimingModel) -> dict:
    rows = []
    for m in samples:
        for L in m.layers:
            rows.append((L.kernel, L.cpu_features, L.measured_cpu))
            if L.kernel in cpu_model.KERNEL_FAMILIES:
                rows.append((cpu_model.KERNEL_FAMILIES[L.kernel], L.cpu_features, L.measured_cpu))
            if L.plan.runs_on_mvp:
                rows.append((POOLED_MVP_KEY, L.cpu_features, L.measured_cpu))
    return cpu_model.fit_params(rows, prior.cpu, features_for=_cpu_features_for)


def fit_latency(samples: list[ModelSample]) -> tuple[float, dict[str, float], float]:
    """(time_scale, overlap per kernel, pooled overlap) from measured acc, cpu and time."""
    # layers without a measured time (a board that reports cycles only) say nothing about it
    cpu_only = [(L.measured_cpu, L.measured_time_s * m.clock_hz)
                for m in samples for L in m.layers
                if L.measured_acc == 0 and L.measured_cpu > 0 and L.measured_time_s > 0]
    scale = sum(t for _, t in cpu_only) / sum(c for c, _ in cpu_only) if cpu_only else 1.0
    groups: dict[str, list[tuple[float, float]]] = {}
    for m in samples:
        for L in m.layers:
            if L.measured_acc > 0 and L.measured_cpu > 0 and L.measured_time_s > 0:
                lo, hi = sorted((L.measured_acc, L.measured_cpu))
                excess = L.measured_time_s * m.clock_hz / scale - hi
                groups.setdefault(L.kernel, []).append((lo, excess))
                groups.setdefault(POOLED_MVP_KEY, []).append((lo, excess))
    overlap = {}
    for key, pts in groups.items():
        lo = np.array([p[0] for p in pts])
        ex = np.array([p[1] for p in pts])
        overlap[key] = float(np.clip((lo @ ex) / (lo @ lo), 0.0, 1.0))
    return float(scale), overlap, overlap.get(POOLED_MVP_KEY, 0.0)


def fit(samples: list[ModelSample], name: str = "calibrated", prior: TimingModel | None = None) -> TimingModel:
    prior = prior or prior_model()
    tm = fit_accelerator(samples, prior)
    scale, overlap, pooled = fit_latency(samples)
    return replace(tm, name=name, cpu=fit_cpu(samples, prior), overlap=overlap, default_overlap=pooled,
                   time_scale=scale)


# ------------------------------------------------------------------ prediction and cross-validation

def predict(tm: TimingModel, sample: ModelSample) -> dict:
    """What `tm` predicts for a model, the way the profiler computes it."""
    acc = cpu = latency = 0.0
    for L in sample.layers:
        a = tm.accelerator_cycles(L.plan) if L.plan.runs_on_mvp else 0
        c = tm.cpu_cycles(sample.graph, L.op, L.plan)
        acc, cpu = acc + a, cpu + c
        latency += tm.layer_latency_s(a, c, L.kernel, sample.clock_hz)
    return {"accelerator_cycles": acc, "cpu_cycles": cpu, "latency_s": latency}


def _rel(pred: float, measured: float) -> float | None:
    return (pred - measured) / measured if measured else None


def _row(sample: ModelSample, pred: dict) -> dict:
    """Total latency error (the headline), and the accelerator and CPU cycle errors behind it."""
    measured = sample.measured_total_s
    acc = sum(L.measured_acc for L in sample.layers)
    cpu = sum(L.measured_cpu for L in sample.layers)
    return {"model": sample.name, "measured_s": measured, "predicted_s": pred["latency_s"],
            "error": (pred["latency_s"] - measured) / measured,
            "accelerator_cycles_error": _rel(pred["accelerator_cycles"], acc),
            "cpu_cycles_error": _rel(pred["cpu_cycles"], cpu)}


def evaluate(tm: TimingModel, samples: list[ModelSample]) -> list[dict]:
    """Per-model error of a fixed model (out-of-sample only if it was not fitted on `samples`)."""
    return [_row(s, predict(tm, s)) for s in samples]


def cross_validate(samples: list[ModelSample]) -> list[dict]:
    """Leave one model out: fit on the others, predict the one left out."""
    if len(samples) < 2:
        raise ModelError("cross-validation needs device records of at least 2 models")
    return [_row(s, predict(fit([o for o in samples if o is not s], name="cv"), s)) for s in samples]


def mean_abs(rows: list[dict]) -> float:
    return float(np.mean([abs(r["error"]) for r in rows]))


def calibrate(device_records, model_paths, base: str = "board", name: str = "calibrated",
              results_dir: str | Path | None = None) -> tuple[dict, dict]:
    """Fits a timing model to device records; returns (its JSON form, the cross-validation report).

    The report holds the leave-one-model-out error per model of the fitting procedure and, on the
    same records, the error of `base` (the timing model a user would otherwise use, found in
    RESULTS/timing_models/ too when `results_dir` is given);
    `report["accepted"]` says whether the fit predicts held-out models at least as well."""
    samples = match(device_records, model_paths)
    tm = fit(samples, name=name)
    cv = cross_validate(samples)
    base_rows = evaluate(load_timing_model(base, results_dir), samples)
    report = {
        "models": cv, "mean_abs_error": mean_abs(cv), "in_sample": evaluate(tm, samples),
        "base": {"name": base, "models": base_rows, "mean_abs_error": mean_abs(base_rows)},
    }
    report["accepted"] = report["mean_abs_error"] <= report["base"]["mean_abs_error"]
    params = tm.to_dict()
    params.update({
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fitted_from": sorted(s.name for s in samples),
        "cv": {"method": "leave-one-model-out", "metric": "relative error of total latency",
               "mean_abs_error": round(report["mean_abs_error"], 4),
               "errors": {r["model"]: round(r["error"], 4) for r in cv},
               "base": base, "base_mean_abs_error": round(report["base"]["mean_abs_error"], 4)},
    })
    return params, report


def save_timing_model(params: dict, name: str, results_dir: str | Path | None = None,
                      path: str | Path | None = None) -> Path:
    """Writes a fitted timing model as RESULTS/timing_models/NAME.json (or to `path`), so that
    `--timing NAME` finds it. Refuses one whose cross-validated error is worse than its base's."""
    if not NAME_RE.match(name):
        raise ModelError(f"timing model name {name!r}: use letters, digits, '.', '_' or '-'")
    cv = params.get("cv")
    if not cv or "mean_abs_error" not in cv or "base_mean_abs_error" not in cv:
        raise ModelError(f"{name}: no cross-validation result: refusing to save an unvalidated timing model")
    if cv["mean_abs_error"] > cv["base_mean_abs_error"]:
        raise ModelError(
            f"{name}: refusing to save: leave-one-model-out error {cv['mean_abs_error']:.1%} is worse than "
            f"{cv['base']}'s {cv['base_mean_abs_error']:.1%} on the same device records")
    if path is None:
        if (MODELS_DIR / f"{name}.json").exists():
            raise ModelError(f"{name}: a built-in timing model has that name; choose another")
        if results_dir is None:
            raise ModelError(f"{name}: where to save it: give a results folder or a path")
        path = user_models_dir(results_dir) / f"{name}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {**params, "name": name, "schema_version": SCHEMA_VERSION}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def format_report(report: dict) -> str:
    base = {r["model"]: r for r in report["base"]["models"]}
    lines = [f"{'model':32s} {'measured ms':>11s} {'LOO pred ms':>11s} {'LOO err':>8s} "
             f"{report['base']['name'] + ' err':>16s}"]
    for r in report["models"]:
        lines.append(f"{r['model']:32s} {r['measured_s'] * 1e3:11.2f} {r['predicted_s'] * 1e3:11.2f} "
                     f"{r['error']:+8.1%} {base[r['model']]['error']:+16.1%}")
    lines.append(f"{'mean absolute error':32s} {'':11s} {'':11s} {report['mean_abs_error']:8.1%} "
                 f"{report['base']['mean_abs_error']:16.1%}")
    return "\n".join(lines)
