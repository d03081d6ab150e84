"""Where a side of a comparison (or a calibration) comes from, when it is not a run: files.

- the vendor's published reports (device_reports.json's shape) or profile-record JSON,
- a CSV of published measurements (one row per layer, see `load_csv`),
- a vendor firmware serial log (device_agents.vendor_log),
- .tflite files profiled here with a timing model (the simulated side when no run gives it).

Each loader returns {model name: ProfileRecord} or raises `CompareError` naming the file.
`load_side` picks the loader by the file's suffix, else reads a run (`orchestrator.run_records`).
"""
from __future__ import annotations

import csv
from pathlib import Path

from orchestrator.compare import CompareError
from orchestrator.run_records import records_from_run
from orchestrator.timing_models import resolve as resolve_timing
from simulator.errors import ModelError
from simulator.record import (CLOCK_HZ_DEFAULT, LayerRecord, ModelInfo, ProfileRecord, Summary, Target, read_json,
                              records_from_json)


def _is_published(data) -> bool:
    def one(x):
        return isinstance(x, dict) and isinstance(x.get("summary"), dict) and \
            "RAM, Runtime Memory Size (bytes)" in x["summary"]
    return one(data) or (isinstance(data, dict) and bool(data) and all(one(v) for v in data.values()))


def load_json(path: str | Path) -> dict[str, ProfileRecord]:
    """Published reports (the vendor's shape, as device_reports.json) or profile-record JSON
    (one record, a list, or {name: record})."""
    from device_agents.published import reports_from_json
    p = Path(path)
    try:
        data = read_json(p)
    except ModelError as e:
        raise CompareError(str(e)) from None
    if _is_published(data):
        try:
            return reports_from_json(data, p)
        except ModelError as e:
            raise CompareError(f"{p}: {e}") from None
    try:
        return {r.model.name: r for r in records_from_json(data, p)}
    except ModelError as e:
        raise CompareError(f"{e} (nor published device reports)") from None


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
