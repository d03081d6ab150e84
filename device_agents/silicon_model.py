"""The virtual board's "silicon": what a real EFR32xG24 would measure for a model.

It deliberately differs from the simulator's default timing, so that tests comparing device and
simulator records (and calibration) see a real gap, as they would with hardware:

- Models that Silicon Labs measured on a board (the zoo models, `device_reports.json`) are
  recognised by their layer signature (opcode and MAC count per layer) and get the published
  per-layer CPU and accelerator cycles and runtime memory, times `report_scale`.
- Any other model gets the simulator's profile scaled by documented factors: accelerator cycles
  x `accelerator_scale` (the vendor's simulator runs 1-31% below the boards, FACTS section 2); a
  layer the MVP runs for which the profile has no accelerator cycles gets
  max(MACs, ops/2) / `macs_per_accelerator_cycle` (the boards' 1.25-1.35 MACs per cycle on conv);
  CPU cycles x `cpu_scale`.
- Every run adds seeded measurement noise: relative Gaussian jitter on CPU cycles (interrupts,
  flash wait states) and a smaller one on accelerator cycles (bus stalls); a run without warm-up
  pays `cold_cache_penalty` on its CPU cycles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.profiler import DEFAULT_TIMING, profile_model
from simulator.record import ProfileRecord, read_json

# shipped with the package (a copy of the zoo's published reports: tests check it is the same)
DEFAULT_REPORTS = Path(__file__).resolve().parent / "data" / "device_reports.json"


@dataclass(frozen=True)
class SiliconParams:
    accelerator_scale: float = 1.16
    cpu_scale: float = 1.04
    macs_per_accelerator_cycle: float = 1.30
    report_scale: float = 1.0
    cpu_noise: float = 0.004
    accelerator_noise: float = 0.001
    cold_cache_penalty: float = 0.03
    # a timing model (name or JSON path) whose cycles the silicon has instead of the simulator's
    # default: a silicon deliberately unlike the simulator, for calibration to recover
    timing: str | None = None


@dataclass
class LayerTruth:
    """The noise-free cycles of one layer on the silicon."""
    on_accelerator: bool
    reason: str | None
    cpu_cycles: float
    accelerator_cycles: float


@dataclass
class ModelTruth:
    layers: list[LayerTruth]
    arena_bytes: int
    source: str                 # "device report <name>" or "scaled simulator profile"


def _close(a: float, b: float) -> bool:
    # the reports print numbers rounded to 2-3 significant digits ("1.3M")
    return abs(a - b) <= max(100.0, 0.05 * max(abs(a), abs(b)))


class SiliconModel:
    def __init__(self, params: SiliconParams = SiliconParams(), reports_path: Path | None = DEFAULT_REPORTS):
        self.params = params
        self.reports: dict[str, dict] = {}
        if reports_path is not None and Path(reports_path).is_file():
            self.reports = read_json(reports_path)

    def profile(self, tflite_bytes: bytes, name: str) -> ProfileRecord:
        """The simulator's profile that `truth` scales: at `params.timing` when one is set."""
        return profile_model(tflite_bytes, accelerator="mvp", name=name,
                             timing=self.params.timing or DEFAULT_TIMING)

    def _match_report(self, profile: ProfileRecord) -> tuple[str, dict] | None:
        for name, rep in self.reports.items():
            rows = rep.get("layers", [])
            if len(rows) != len(profile.layers):
                continue
            if all(r["OpCode"] == L.opcode and _close(r["# MACs"], L.macs)
                   for r, L in zip(rows, profile.layers)):
                return name, rep
        return None

    def truth(self, profile: ProfileRecord) -> ModelTruth:
        """The silicon's noise-free numbers for a model the simulator profiled (with the MVP)."""
        p = self.params
        match = self._match_report(profile)
        if match is not None:
            name, rep = match
            layers = [LayerTruth(on_accelerator=r["Acc Cycles"] > 0, reason=None,
                                 cpu_cycles=r["CPU Cycles"] * p.report_scale,
                                 accelerator_cycles=r["Acc Cycles"] * p.report_scale)
                      for r in rep["layers"]]
            return ModelTruth(layers, int(rep["summary"]["RAM, Runtime Memory Size (bytes)"]),
                              f"device report {name}")
        layers = []
        for L in profile.layers:
            # a layer the vendor's tools flag but the MVP still runs launches programs on silicon too
            on_mvp = L.supported or L.accelerator_cycles > 0
            acc = L.accelerator_cycles * p.accelerator_scale
            if on_mvp and acc == 0:
                acc = max(L.macs, L.ops / 2) / p.macs_per_accelerator_cycle
            layers.append(LayerTruth(on_accelerator=on_mvp, reason=None if on_mvp else L.reason,
                                     cpu_cycles=L.cpu_cycles * p.cpu_scale,
                                     accelerator_cycles=acc if on_mvp else 0.0))
        return ModelTruth(layers, profile.summary.ram_bytes, "scaled simulator profile")

    def measure(self, truth: ModelTruth, repeats: int, warmup: int, rng: np.random.Generator
                ) -> list[tuple[list[int], list[int]]]:
        """Per layer, (CPU cycles per repeat, accelerator cycles per repeat), with noise."""
        p = self.params
        out = []
        for L in truth.layers:
            cpu = L.cpu_cycles * (1 + rng.normal(0.0, p.cpu_noise, repeats))
            if warmup == 0:
                cpu[0] *= 1 + p.cold_cache_penalty
            acc = L.accelerator_cycles * (1 + rng.normal(0.0, p.accelerator_noise, repeats))
            out.append(([max(0, int(round(c))) for c in cpu],
                        [max(0, int(round(a))) if L.accelerator_cycles else 0 for a in acc]))
        return out

    @staticmethod
    def latency_s(truth: ModelTruth, clock_hz: int) -> float:
        return sum(max(L.cpu_cycles, L.accelerator_cycles) for L in truth.layers) / clock_hz


def median_int(values: list[int]) -> int:
    return int(math.floor(float(np.median(values)) + 0.5)) if values else 0
