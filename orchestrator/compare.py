"""Simulated against measured: the same models side by side, per model and per layer.

Two sides, each {model name: ProfileRecord}: the simulated one (the simulator's or emulator's
records) and the measured one (`target.source == "device"`); `orchestrator.record_sources` reads
a side from files, `orchestrator.run_records` from runs in the result table.

Models pair by name, else by model sha256. Per model: RAM, accelerator cycles, CPU cycles and
latency, simulated against measured, as signed error and percentage; per layer the cycles and
latency (boards do not measure per-layer RAM). Statistics: mean absolute percentage error per
metric over models and over layers, the worst layers (largest absolute latency error), bias per
opcode (sum of simulated over sum of measured, so that small layers do not dominate), and the
layers whose error passes a threshold. This module owns the comparison as data and those
statistics; `orchestrator.compare_report` lays it out as Markdown, HTML, JSON and a scatter plot.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from simulator.errors import UserError
from simulator.record import DEVICE_SOURCE, ProfileRecord


MODEL_METRICS = ("ram_bytes", "accelerator_cycles", "cpu_cycles", "latency_s")
LAYER_METRICS = ("accelerator_cycles", "cpu_cycles", "latency_s")
THRESHOLD_PCT = 20.0
# layers below this share of their model's measured time are too small for their percentage
# error to mean much (a 3-significant-digit report rounds them coarsely); they still count in
# the opcode bias and the scatter plot
MIN_LAYER_SHARE = 0.01
N_WORST = 10
DEVICE = DEVICE_SOURCE
DEFAULT_SIM_TARGET = "simulator/mvp/board"


class CompareError(UserError, ValueError):
    """Input that cannot be compared; the message is one line naming the file or run."""


# ------------------------------------------------------------------ the comparison as data

@dataclass
class Delta:
    simulated: float
    measured: float

    @property
    def error(self) -> float:
        return self.simulated - self.measured

    @property
    def error_pct(self) -> float | None:
        return 100.0 * self.error / self.measured if self.measured else None

    def to_dict(self) -> dict:
        return {"simulated": self.simulated, "measured": self.measured, "error": self.error,
                "error_pct": self.error_pct}


@dataclass
class LayerComparison:
    index: int
    opcode: str
    simulated_on_mvp: bool
    measured_on_mvp: bool
    share: float                                 # of the model's measured time
    deltas: dict[str, Delta]

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "deltas"}
        d["deltas"] = {k: v.to_dict() for k, v in self.deltas.items()}
        return d


@dataclass
class ModelComparison:
    model: str
    simulated_target: str                        # e.g. "simulator/board"
    measured_target: str                         # e.g. "device/published"
    deltas: dict[str, Delta]
    layers: list[LayerComparison]
    note: str | None = None                      # why there is no per-layer comparison

    def to_dict(self) -> dict:
        return {"model": self.model, "simulated_target": self.simulated_target,
                "measured_target": self.measured_target, "note": self.note,
                "deltas": {k: v.to_dict() for k, v in self.deltas.items()},
                "layers": [L.to_dict() for L in self.layers]}


@dataclass
class Comparison:
    models: list[ModelComparison]
    threshold_pct: float = THRESHOLD_PCT
    unmatched_simulated: list[str] = field(default_factory=list)
    unmatched_measured: list[str] = field(default_factory=list)

    # -- statistics ----------------------------------------------------------------------------

    def mape(self) -> dict[str, dict[str, float | None]]:
        """Mean absolute percentage error per metric: {"models": {...}, "layers": {...}}."""
        def mean_abs(values):
            values = [abs(v) for v in values if v is not None]
            return sum(values) / len(values) if values else None
        return {
            "models": {m: mean_abs([c.deltas[m].error_pct for c in self.models]) for m in MODEL_METRICS},
            "layers": {m: mean_abs([L.deltas[m].error_pct for L in self._big_layers()]) for m in LAYER_METRICS},
        }

    def all_layers(self):
        return [(c.model, L) for c in self.models for L in c.layers]

    def _big_layers(self):
        return [L for _, L in self.all_layers() if L.share >= MIN_LAYER_SHARE]

    def worst_layers(self, n: int = N_WORST) -> list[tuple[str, LayerComparison]]:
        """The layers whose latency is furthest off, in seconds: the ones that move a model's total."""
        return sorted(self.all_layers(), key=lambda mL: -abs(mL[1].deltas["latency_s"].error))[:n]

    def bias_per_opcode(self) -> dict[str, dict]:
        """Per opcode: layer count and, per metric, (sum simulated / sum measured - 1) in %."""
        out: dict[str, dict] = {}
        for _, L in self.all_layers():
            b = out.setdefault(L.opcode, {"layers": 0, **{m: [0.0, 0.0] for m in LAYER_METRICS}})
            b["layers"] += 1
            for m in LAYER_METRICS:
                b[m][0] += L.deltas[m].simulated
                b[m][1] += L.deltas[m].measured
        return {op: {"layers": b["layers"], **{m: (100.0 * (b[m][0] / b[m][1] - 1) if b[m][1] else None)
                                               for m in LAYER_METRICS}}
                for op, b in sorted(out.items())}

    def over_threshold(self) -> list[tuple[str, LayerComparison, str]]:
        """(model, layer, metric) where |error %| > threshold_pct, for layers of at least
        MIN_LAYER_SHARE of their model's time; and any layer the two sides put on different units."""
        out = []
        for model, L in self.all_layers():
            if L.simulated_on_mvp != L.measured_on_mvp:
                out.append((model, L, "mvp_support"))
            if L.share < MIN_LAYER_SHARE:
                continue
            for m in LAYER_METRICS:
                pct = L.deltas[m].error_pct
                if pct is not None and abs(pct) > self.threshold_pct:
                    out.append((model, L, m))
        return out

    def to_dict(self) -> dict:
        return {"threshold_pct": self.threshold_pct, "min_layer_share": MIN_LAYER_SHARE,
                "mape_pct": self.mape(), "bias_per_opcode_pct": self.bias_per_opcode(),
                "worst_layers": [{"model": m, **L.to_dict()} for m, L in self.worst_layers()],
                "over_threshold": [{"model": m, "index": L.index, "opcode": L.opcode, "metric": k,
                                    "error_pct": None if k == "mvp_support" else L.deltas[k].error_pct}
                                   for m, L, k in self.over_threshold()],
                "unmatched_simulated": self.unmatched_simulated,
                "unmatched_measured": self.unmatched_measured,
                "models": [c.to_dict() for c in self.models]}

    # -- rendering (orchestrator.compare_report) -------------------------------------------------

    def to_markdown(self, title: str | None = None, images: list[str] = ()) -> str:
        from orchestrator import compare_report
        return compare_report.to_markdown(self, title or compare_report.TITLE, images)

    def to_html(self, title: str | None = None, images: list[str] = ()) -> str:
        from orchestrator import compare_report
        return compare_report.to_html(self, title or compare_report.TITLE, images)

    def write(self, out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
        """comparison.md, .html, .json and scatter.png in `out_dir`."""
        from orchestrator import compare_report
        return compare_report.write(self, out_dir, title or compare_report.TITLE)


# ------------------------------------------------------------------ comparing

def _opkey(opcode: str) -> str:
    # vendor logs print "Conv2D", records say "conv_2d"
    return re.sub(r"[^a-z0-9]", "", opcode.lower())


def _target_label(rec: ProfileRecord) -> str:
    t = rec.target
    return f"{t.source}/{t.board or t.timing}" if t.source == DEVICE else f"{t.source}/{t.timing}"


def compare_records(simulated: ProfileRecord, measured: ProfileRecord, name: str | None = None) -> ModelComparison:
    """One model: totals always; per layer when both records have the same layers."""
    deltas = {m: Delta(float(getattr(simulated.summary, m)), float(getattr(measured.summary, m)))
              for m in MODEL_METRICS}
    note = None
    layers = []
    sl, ml = simulated.layers, measured.layers
    if len(sl) != len(ml):
        note = f"not compared per layer: {len(sl)} simulated layers, {len(ml)} measured"
    elif any(_opkey(a.opcode) != _opkey(b.opcode) for a, b in zip(sl, ml)):
        i = next(i for i, (a, b) in enumerate(zip(sl, ml)) if _opkey(a.opcode) != _opkey(b.opcode))
        note = f"not compared per layer: layer {i} is {sl[i].opcode} simulated but {ml[i].opcode} measured"
    else:
        total = sum(L.latency_s for L in ml) or 1.0
        for a, b in zip(sl, ml):
            layers.append(LayerComparison(
                index=a.index, opcode=a.opcode, simulated_on_mvp=a.accelerator_cycles > 0,
                measured_on_mvp=b.accelerator_cycles > 0, share=b.latency_s / total,
                deltas={m: Delta(float(getattr(a, m)), float(getattr(b, m))) for m in LAYER_METRICS}))
    return ModelComparison(name or simulated.model.name, _target_label(simulated), _target_label(measured),
                           deltas, layers, note)


def compare(simulated: dict[str, ProfileRecord], measured: dict[str, ProfileRecord],
            threshold_pct: float = THRESHOLD_PCT) -> Comparison:
    """Pairs the two sides by name, then by model sha256, and compares each pair."""
    if not simulated:
        raise CompareError("nothing on the simulated side to compare")
    if not measured:
        raise CompareError("nothing on the measured side to compare")
    by_sha = {r.model.sha256: n for n, r in measured.items() if r.model.sha256}
    models, used = [], set()
    unmatched_sim = []
    for name, sim in simulated.items():
        other = name if name in measured else by_sha.get(sim.model.sha256) if sim.model.sha256 else None
        if other is None or other in used:
            unmatched_sim.append(name)
            continue
        used.add(other)
        models.append(compare_records(sim, measured[other], name))
    if not models:
        raise CompareError(f"no model is on both sides (simulated: {', '.join(sorted(simulated)[:5])}; "
                           f"measured: {', '.join(sorted(measured)[:5])})")
    return Comparison(models, threshold_pct, unmatched_sim, sorted(set(measured) - used))
