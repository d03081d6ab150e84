"""Simulated against measured: the same models side by side, per model and per layer.

Two sides, each {model name: ProfileRecord}: the simulated one (the simulator's or emulator's
records) and the measured one (`target.source == "device"`). A side comes from:

- a run in the result table (`--run RUN` holds both kinds of target; or one run per side),
- the vendor's published reports (device_reports.json's shape) or profile-record JSON,
- a CSV of published measurements (one row per layer, see `load_csv`),
- a vendor firmware serial log (device_agents.vendor_log),
- .tflite files profiled here with a timing model (the simulated side when no run gives it).

Models pair by name, else by model sha256. Per model: RAM, accelerator cycles, CPU cycles and
latency, simulated against measured, as signed error and percentage; per layer the cycles and
latency (boards do not measure per-layer RAM). Statistics: mean absolute percentage error per
metric over models and over layers, the worst layers (largest absolute latency error), bias per
opcode (sum of simulated over sum of measured, so that small layers do not dominate), and the
layers whose error passes a threshold. Output: Markdown, HTML and JSON, and a scatter plot of
simulated against measured per layer (PNG).
"""
from __future__ import annotations

import csv
import html
import json
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.timing_models import resolve as resolve_timing
from simulator.errors import ModelError
from simulator.record import (CLOCK_HZ_DEFAULT, DEVICE_SOURCE, LayerRecord, ModelInfo, ProfileRecord, Summary,
                              Target)

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


class CompareError(ValueError):
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

    def _all_layers(self):
        return [(c.model, L) for c in self.models for L in c.layers]

    def _big_layers(self):
        return [L for _, L in self._all_layers() if L.share >= MIN_LAYER_SHARE]

    def worst_layers(self, n: int = N_WORST) -> list[tuple[str, LayerComparison]]:
        """The layers whose latency is furthest off, in seconds: the ones that move a model's total."""
        return sorted(self._all_layers(), key=lambda mL: -abs(mL[1].deltas["latency_s"].error))[:n]

    def bias_per_opcode(self) -> dict[str, dict]:
        """Per opcode: layer count and, per metric, (sum simulated / sum measured - 1) in %."""
        out: dict[str, dict] = {}
        for _, L in self._all_layers():
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
        for model, L in self._all_layers():
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

    # -- rendering -------------------------------------------------------------------------------

    def sections(self) -> list[tuple[str, list[str], list[list]]]:
        """(title, header, rows) of every table of the report, in order."""
        out = []
        head = ["model", "simulated", "measured", "metric", "sim", "meas", "error", "error %"]
        rows = []
        for c in self.models:
            for m in MODEL_METRICS:
                d = c.deltas[m]
                rows.append([c.model, c.simulated_target, c.measured_target, _LABEL[m], _fmt(m, d.simulated),
                             _fmt(m, d.measured), _fmt(m, d.error, signed=True), _pct(d.error_pct)])
        out.append(("Per model", head, rows))
        mape = self.mape()
        rows = [["models"] + [_pct(mape["models"][m], signed=False) for m in MODEL_METRICS],
                ["layers"] + [_pct(mape["layers"].get(m), signed=False) if m in LAYER_METRICS else "-"
                              for m in MODEL_METRICS]]
        out.append(("Mean absolute percentage error (layers: those of at least "
                    f"{MIN_LAYER_SHARE:.0%} of their model's time)", ["over"] + [_LABEL[m] for m in MODEL_METRICS],
                    rows))
        rows = [[op, b["layers"]] + [_pct(b[m]) for m in LAYER_METRICS] for op, b in self.bias_per_opcode().items()]
        out.append(("Bias per opcode (sum simulated / sum measured - 1)", ["opcode", "layers"]
                    + [_LABEL[m] for m in LAYER_METRICS], rows))
        rows = [[m, L.index, L.opcode, f"{L.share:.1%}", _fmt("latency_s", L.deltas["latency_s"].simulated),
                 _fmt("latency_s", L.deltas["latency_s"].measured),
                 _fmt("latency_s", L.deltas["latency_s"].error, signed=True), _pct(L.deltas["latency_s"].error_pct),
                 _pct(L.deltas["accelerator_cycles"].error_pct), _pct(L.deltas["cpu_cycles"].error_pct)]
                for m, L in self.worst_layers()]
        out.append((f"Worst layers (largest latency error; at most {N_WORST})",
                    ["model", "layer", "opcode", "share", "latency sim", "latency meas", "latency err",
                     "latency err %", "MVP cycles err %", "CPU cycles err %"], rows))
        rows = [[m, L.index, L.opcode, f"{L.share:.1%}", k,
                 (f"sim {'MVP' if L.simulated_on_mvp else 'CPU'}, board {'MVP' if L.measured_on_mvp else 'CPU'}"
                  if k == "mvp_support" else _pct(L.deltas[k].error_pct))]
                for m, L, k in self.over_threshold()]
        out.append((f"Layers over the threshold (|error| > {self.threshold_pct:g}%, or on a different unit)",
                    ["model", "layer", "opcode", "share", "metric", "error"], rows))
        for c in self.models:
            if c.note:
                out.append((f"{c.model}: per layer", ["note"], [[c.note]]))
                continue
            head = ["layer", "opcode", "unit sim/meas", "share"]
            for m in LAYER_METRICS:
                head += [f"{_LABEL[m]} sim", f"{_LABEL[m]} meas", f"{_LABEL[m]} err %"]
            rows = []
            for L in c.layers:
                row = [L.index, L.opcode, f"{'MVP' if L.simulated_on_mvp else 'CPU'}/"
                                          f"{'MVP' if L.measured_on_mvp else 'CPU'}", f"{L.share:.1%}"]
                for m in LAYER_METRICS:
                    d = L.deltas[m]
                    row += [_fmt(m, d.simulated), _fmt(m, d.measured), _pct(d.error_pct)]
                rows.append(row)
            out.append((f"{c.model}: per layer", head, rows))
        unmatched = [[n, "simulated only"] for n in self.unmatched_simulated] + \
                    [[n, "measured only"] for n in self.unmatched_measured]
        if unmatched:
            out.append(("Not compared (no counterpart)", ["model", "side"], unmatched))
        return out

    def to_markdown(self, title: str = "Simulated against measured", images: list[str] = ()) -> str:
        md = [f"# {title}", ""]
        for t, head, rows in self.sections():
            md += [f"## {t}", "", md_table(head, rows) if rows else "(none)", ""]
        md += [f"![simulated against measured]({p})" for p in images]
        return "\n".join(md) + "\n"

    def to_html(self, title: str = "Simulated against measured", images: list[str] = ()) -> str:
        body = [f"<h1>{html.escape(title)}</h1>"]
        for t, head, rows in self.sections():
            body += [f"<h2>{html.escape(t)}</h2>", html_table(head, rows) if rows else "<p>(none)</p>"]
        body += [f'<p><img src="{html.escape(p)}" alt="simulated against measured"></p>' for p in images]
        return html_page(title, body)

    def scatter_png(self, path: str | Path) -> Path | None:
        """Simulated against measured latency and cycles per layer, log-log, one colour per opcode."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        layers = self._all_layers()
        if not layers:
            return None
        metrics = [("latency_s", 1e3, "latency (ms)"), ("accelerator_cycles", 1.0, "MVP cycles"),
                   ("cpu_cycles", 1.0, "CPU cycles")]
        fig, axes = plt.subplots(1, 3, figsize=(15, 5))
        opcodes = sorted({L.opcode for _, L in layers})
        colours = {op: plt.cm.tab20(i % 20) for i, op in enumerate(opcodes)}
        for ax, (m, scale, label) in zip(axes, metrics):
            pts = [(L.deltas[m].measured * scale, L.deltas[m].simulated * scale, L.opcode) for _, L in layers
                   if L.deltas[m].measured > 0 and L.deltas[m].simulated > 0]
            for op in opcodes:
                xs = [p[0] for p in pts if p[2] == op]
                ys = [p[1] for p in pts if p[2] == op]
                if xs:
                    ax.scatter(xs, ys, s=14, color=colours[op], label=op, alpha=0.8)
            if pts:
                lo = min(min(p[0], p[1]) for p in pts)
                hi = max(max(p[0], p[1]) for p in pts)
                ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
                f = 1 + self.threshold_pct / 100
                ax.plot([lo, hi], [lo * f, hi * f], color="gray", linewidth=0.6, linestyle="--")
                ax.plot([lo, hi], [lo / f, hi / f], color="gray", linewidth=0.6, linestyle="--")
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(f"measured {label}")
            ax.set_ylabel(f"simulated {label}")
        axes[0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"Per layer, simulated against measured (dashed: \u00b1{self.threshold_pct:g}%)")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def write(self, out_dir: str | Path, title: str = "Simulated against measured") -> dict[str, Path]:
        """comparison.md, .html, .json and scatter.png in `out_dir`."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = self.scatter_png(out_dir / "scatter.png")
        images = [png.name] if png else []
        paths = {"markdown": out_dir / "comparison.md", "html": out_dir / "comparison.html",
                 "json": out_dir / "comparison.json"}
        paths["markdown"].write_text(self.to_markdown(title, images))
        paths["html"].write_text(self.to_html(title, images))
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        if png:
            paths["png"] = png
        return paths


_LABEL = {"ram_bytes": "RAM B", "accelerator_cycles": "MVP cycles", "cpu_cycles": "CPU cycles",
          "latency_s": "latency ms", "flash_bytes": "flash B"}


def _fmt(metric: str, v: float, signed: bool = False) -> str:
    if metric == "latency_s":
        return f"{v * 1e3:+.3f}" if signed else f"{v * 1e3:.3f}"
    return f"{v:+,.0f}" if signed else f"{v:,.0f}"


def _pct(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.1f}%" if signed else f"{v:.1f}%"


def md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(head: list[str], rows: list[list], row_class=None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"]
    for r in rows:
        cls = f' class="{row_class(r)}"' if row_class and row_class(r) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return "\n".join(out + ["</table>"])


def html_page(title: str, body: list[str]) -> str:
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}"
             "tr.bad td{background:#fdd}tr.ok td{background:#efe}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


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


# ------------------------------------------------------------------ where the records come from

def _is_published(data) -> bool:
    def one(x):
        return isinstance(x, dict) and isinstance(x.get("summary"), dict) and \
            "RAM, Runtime Memory Size (bytes)" in x["summary"]
    return one(data) or (isinstance(data, dict) and bool(data) and all(one(v) for v in data.values()))


def load_json(path: str | Path) -> dict[str, ProfileRecord]:
    """Published reports (the vendor's shape, as device_reports.json) or profile-record JSON
    (one record, a list, or {name: record})."""
    from device_agents.published import load_reports
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CompareError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{p}: not a JSON file: {e}") from None
    if _is_published(data):
        try:
            return load_reports(p)
        except ModelError as e:
            raise CompareError(f"{p}: {e}") from None
    items = data if isinstance(data, list) else \
        list(data.values()) if isinstance(data, dict) and "model" not in data else [data]
    try:
        records = [ProfileRecord.from_dict(d) for d in items]
    except (KeyError, TypeError, AttributeError) as e:
        raise CompareError(f"{p}: neither published device reports nor profile records ({e!r} missing "
                           "or malformed)") from None
    return {r.model.name: r for r in records}


# CSV columns: ours, or the vendor report's per-layer names
_CSV_COLUMNS = {
    "model": ("model", "name", "Name"), "index": ("layer", "index", "Index"),
    "opcode": ("opcode", "OpCode"), "ops": ("ops", "# Ops"), "macs": ("macs", "# MACs"),
    "accelerator_cycles": ("accelerator_cycles", "Acc Cycles"), "cpu_cycles": ("cpu_cycles", "CPU Cycles"),
    "latency_s": ("latency_s", "Time (s)"), "ram_bytes": ("ram_bytes", "RAM, Runtime Memory Size (bytes)"),
    "flash_bytes": ("flash_bytes", "Flash, Model File Size (bytes)"), "clock_hz": ("clock_hz", "Clock Rate (hz)"),
}


def load_csv(path: str | Path, board: str = "published") -> dict[str, ProfileRecord]:
    """Published measurements as CSV: one row per layer (model, layer, opcode, accelerator_cycles,
    cpu_cycles, latency_s; optional ops, macs) and the model's RAM either in a `ram_bytes` column
    of any of its rows or in a row whose layer is empty ("total"). Vendor column names
    ("Index", "OpCode", "Acc Cycles", "CPU Cycles", "Time (s)") work too."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise CompareError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CompareError(f"{p}: not a CSV file: {e}") from None
    if not rows:
        raise CompareError(f"{p}: no rows")
    cols = {}
    for key, names in _CSV_COLUMNS.items():
        cols[key] = next((n for n in names if n in rows[0]), None)
    missing = [k for k in ("model", "index", "opcode", "cpu_cycles") if cols[k] is None]
    if missing:
        raise CompareError(f"{p}: missing column(s) {', '.join(missing)} (have: {', '.join(rows[0])})")

    def num(row, key, line, default=0.0):
        name = cols[key]
        text = (row.get(name) or "").strip() if name else ""
        if not text:
            return default
        try:
            return float(text)
        except ValueError:
            raise CompareError(f"{p}: line {line}: {name} = {text!r} is not a number") from None

    models: dict[str, dict] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get(cols["model"]) or "").strip()
        if not name:
            raise CompareError(f"{p}: line {line}: no model name")
        m = models.setdefault(name, {"layers": [], "ram": 0.0, "flash": 0.0, "clock": float(CLOCK_HZ_DEFAULT)})
        m["ram"] = num(row, "ram_bytes", line, m["ram"]) or m["ram"]
        m["flash"] = num(row, "flash_bytes", line, m["flash"]) or m["flash"]
        m["clock"] = num(row, "clock_hz", line, m["clock"]) or m["clock"]
        index_text = (row.get(cols["index"]) or "").strip()
        if index_text in ("", "total", "TOTAL"):
            continue
        try:
            index = int(float(index_text))
        except ValueError:
            raise CompareError(f"{p}: line {line}: layer {index_text!r} is not a layer index") from None
        acc, cpu = num(row, "accelerator_cycles", line), num(row, "cpu_cycles", line)
        latency = num(row, "latency_s", line, max(acc, cpu) / m["clock"])
        m["layers"].append(LayerRecord(index=index, opcode=(row.get(cols["opcode"]) or "").strip().lower(),
                                       ops=int(num(row, "ops", line)), macs=int(num(row, "macs", line)),
                                       supported=acc > 0, reason=None, accelerator_cycles=int(acc),
                                       cpu_cycles=int(cpu), latency_s=latency))
    out = {}
    for name, m in models.items():
        layers = sorted(m["layers"], key=lambda L: L.index)
        if not layers:
            raise CompareError(f"{p}: model {name} has no layer rows")
        if [L.index for L in layers] != list(range(len(layers))):
            raise CompareError(f"{p}: model {name}: layer indices are not 0..{len(layers) - 1}")
        out[name] = ProfileRecord(
            model=ModelInfo(name, "", int(m["flash"]), [], []),
            target=Target.device(int(m["clock"]), board),
            summary=Summary.of_layers(layers, int(m["flash"]), int(m["ram"]), n_unsupported=0),
            layers=layers)
    return out


def load_vendor_log(path: str | Path, model_path: str | Path | None = None) -> dict[str, ProfileRecord]:
    """A vendor firmware serial log; with the model's .tflite its rows get shapes and names."""
    from device_agents import vendor_log
    from simulator.profiler import profile_file
    p = Path(path)
    try:
        log = vendor_log.parse_log(p.read_text(errors="replace"))
    except FileNotFoundError:
        raise CompareError(f"{p}: no such file") from None
    except vendor_log.VendorLogError as e:
        raise CompareError(f"{p}: not a complete vendor profiler log: {e}") from None
    name = Path(model_path).stem if model_path else p.stem
    reference = None
    data = None
    if model_path:
        try:
            reference = profile_file(model_path)
            data = Path(model_path).read_bytes()
        except (ModelError, OSError) as e:
            raise CompareError(f"{model_path}: {e}") from None
    try:
        rec = vendor_log.to_record(log, board_id=p.stem, reference=reference, name=name, tflite_bytes=data)
    except vendor_log.VendorLogError as e:
        raise CompareError(f"{p}: {e}") from None
    rec.model.name = name
    return {name: rec}


def profile_models(paths, timing: str = "board", results_dir: str | Path = "results") -> dict[str, ProfileRecord]:
    """The simulated side for .tflite files (or folders of them)."""
    from simulator.profiler import profile_file
    from simulator.timing import load_timing_model
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.tflite"))
        elif p.is_file():
            files.append(p)
        else:
            raise CompareError(f"{p}: no such model file or folder")
    if not files:
        raise CompareError(f"no .tflite files in {', '.join(map(str, paths))}")
    try:
        timing = resolve_timing(timing, results_dir)
        return {f.stem: profile_file(f, timing=timing) for f in files}
    except ModelError as e:
        raise CompareError(str(e)) from None


# -- runs in the result table (read-only queries on top of results_db) ---------------------------

@dataclass
class RunRow:
    variant: str
    target: str
    source: str | None
    status: str
    error: str | None
    record: dict | None


class CorruptResults(CompareError):
    """The result file (database or a stored record) cannot be read."""


def run_rows(results_dir: str | Path, run: str) -> tuple[str, list[RunRow]]:
    """(run id, every measurement row of the run). Raises CompareError (unknown run) or
    CorruptResults (a damaged database or record), one line each."""
    from orchestrator.results_db import DB_NAME, ResultsDB, RunNotFound
    path = Path(results_dir) / DB_NAME
    if not path.is_file():
        raise CompareError(f"no result table at {path}")
    try:
        with ResultsDB(results_dir, readonly=True) as db:
            run_id = db.resolve_run(run)
            raw = db.conn.execute("SELECT variant, target, source, status, error, record_json FROM measurements"
                                  " WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
    except RunNotFound as e:
        raise CompareError(str(e)) from None
    except sqlite3.DatabaseError as e:
        raise CorruptResults(f"{path}: corrupt result file: {e}") from None
    rows = []
    for r in raw:
        rec = None
        if r["record_json"] is not None:
            try:
                rec = json.loads(r["record_json"])
                ProfileRecord.from_dict(rec)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise CorruptResults(f"{path}: corrupt record for run {run_id}, variant {r['variant']}, target "
                                     f"{r['target']}: {type(e).__name__}: {e}") from None
        rows.append(RunRow(r["variant"], r["target"], r["source"], r["status"], r["error"], rec))
    return run_id, rows


def target_group(target: str) -> str:
    """Repeated measurements of one target are stored as TARGET#N (see nightly): their group."""
    return target.split("#", 1)[0]


def median_record(records: list[ProfileRecord]) -> ProfileRecord:
    """One record from repeated measurements of one model: the median of each cycle count."""
    import statistics
    from dataclasses import replace
    first = records[0]
    if len(records) == 1:
        return first
    layers = []
    for i, L in enumerate(first.layers):
        acc = int(statistics.median(r.layers[i].accelerator_cycles for r in records))
        cpu = int(statistics.median(r.layers[i].cpu_cycles for r in records))
        lat = float(statistics.median(r.layers[i].latency_s for r in records))
        layers.append(replace(L, accelerator_cycles=acc, cpu_cycles=cpu, latency_s=lat))
    return replace(first, layers=layers, summary=first.summary.retimed(layers))


def records_from_run(results_dir: str | Path, run: str, measured: bool,
                     target: str | None = None) -> dict[str, ProfileRecord]:
    """The simulated (measured=False) or device (measured=True) records of a run, by variant.
    With several targets of that kind, `target` chooses one; the simulated side defaults to
    simulator/mvp/board when the run has it, else a one-line error lists them."""
    run_id, rows = run_rows(results_dir, run)
    rows = [r for r in rows if r.record is not None and (r.source == DEVICE) == measured]
    kind = "device" if measured else "simulated"
    groups = sorted({target_group(r.target) for r in rows})
    if not groups:
        raise CompareError(f"run {run_id} has no {kind} measurements")
    if target is None and not measured and DEFAULT_SIM_TARGET in groups:
        target = DEFAULT_SIM_TARGET         # the simulator's prediction of what a board measures
    if target is None:
        if len(groups) > 1:
            raise CompareError(f"run {run_id} has several {kind} targets ({', '.join(groups)}): choose one")
        target = groups[0]
    elif target not in groups:
        raise CompareError(f"run {run_id} has no {kind} target {target!r} (it has: {', '.join(groups)})")
    by_variant: dict[str, list[ProfileRecord]] = {}
    for r in rows:
        if target_group(r.target) == target:
            rec = ProfileRecord.from_dict(r.record)
            rec.model.name = r.variant          # the run's name for it, whoever measured it
            by_variant.setdefault(r.variant, []).append(rec)
    return {v: median_record(recs) for v, recs in by_variant.items()}


def run_model_files(results_dir: str | Path, run: str, into: str | Path) -> Path:
    """The .tflite of each variant of a run, as INTO/VARIANT.tflite (for calibration, which
    pairs records and models by name): from the files a nightly models entry lists, else from the
    sweep's content-addressed build cache (RESULTS/cache/tflite/CONFIG_SHA256.tflite)."""
    from orchestrator.results_db import ResultsDB
    run_id, _ = run_rows(results_dir, run)
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    with ResultsDB(results_dir, readonly=True) as db:
        base = json.loads(db.run_info(run_id)["base_json"] or "{}")
        rows = db.conn.execute("SELECT DISTINCT variant, config_sha256 FROM measurements WHERE run_id=?",
                               (run_id,)).fetchall()
    listed = {Path(f).stem: Path(f) for f in base.get("files", [])}
    for variant, key in rows:
        src = listed.get(variant) or (Path(results_dir) / "cache" / "tflite" / f"{key}.tflite" if key else None)
        if src is not None and src.is_file():
            (into / f"{variant}.tflite").write_bytes(src.read_bytes())
    return into


def load_side(spec: str, results_dir: str | Path, measured: bool, target: str | None = None,
              model_path: str | None = None) -> dict[str, ProfileRecord]:
    """A side from a file (by its suffix) or else a run id / `latest` in the result table."""
    p = Path(spec)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return load_json(p)
    if suffix == ".csv":
        return load_csv(p)
    if suffix in (".log", ".txt"):
        return load_vendor_log(p, model_path)
    if p.exists() and p.is_file():
        raise CompareError(f"{p}: unknown kind of file (use .json, .csv, or .log/.txt for a vendor log)")
    return records_from_run(results_dir, spec, measured, target)

