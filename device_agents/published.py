"""Published on-device measurements (the vendor profiler's report shape) as profile records.

Silicon Labs publishes `mltk profile NAME --device --accelerator MVP` reports: a summary with keys
such as "RAM, Runtime Memory Size (bytes)" and per-layer rows with "Acc Cycles", "CPU Cycles" and
"Time (s)". `tests/data/zoo/device_reports.json` is a dict of such reports keyed by model name; a
single report (one model) imports too. Numbers are as printed (3 significant digits).
"""
from __future__ import annotations

from pathlib import Path

from simulator.errors import ModelError
from simulator.hardware import CLOCK_HZ
from simulator.record import LayerRecord, ModelInfo, ProfileRecord, Summary, Target, TensorInfo, read_json


def _shape(s: str) -> list[int]:
    return [int(x) for x in s.split("x") if x.strip().isdigit()] if s else []


def _tensors(shapes: str, dtype: str = "") -> list[TensorInfo]:
    return [TensorInfo(name="", shape=_shape(s), dtype=dtype) for s in shapes.split(",") if s]


def report_to_record(name: str, report: dict, board: str = "published", sha256: str = "") -> ProfileRecord:
    """One vendor report -> ProfileRecord(source="device"). Raises ModelError naming a missing key."""
    try:
        s = report["summary"]
        clock_hz = int(s.get("Clock Rate (hz)", CLOCK_HZ))
        layers = []
        for L in report["layers"]:
            acc = int(L["Acc Cycles"])
            layers.append(LayerRecord(
                index=int(L["Index"]), opcode=str(L["OpCode"]).lower(), ops=int(L["# Ops"]),
                macs=int(L["# MACs"]), supported=acc > 0, reason=None, accelerator_cycles=acc,
                cpu_cycles=int(L["CPU Cycles"]), latency_s=float(L["Time (s)"]),
                inputs=_tensors(L.get("Input Shape", "")), outputs=_tensors(L.get("Output Shape", "")),
                options={"vendor": L.get("Options", "")}))
        flash = int(s["Flash, Model File Size (bytes)"])
        return ProfileRecord(
            model=ModelInfo(name=name, sha256=sha256, flash_bytes=flash,
                            inputs=_tensors(s.get("Input Shape", ""), s.get("Input Data Type", "")),
                            outputs=_tensors(s.get("Output Shape", ""), s.get("Output Data Type", ""))),
            target=Target.device(clock_hz, board,
                                 accelerator="mvp" if str(s.get("Accelerator", "")).lower() == "mvp" else "none"),
            summary=Summary(
                flash_bytes=flash, ram_bytes=int(s["RAM, Runtime Memory Size (bytes)"]),
                ops=int(s["Operation Count"]), macs=int(s["Multiply-Accumulate Count"]),
                n_layers=int(s["Layer Count"]), n_unsupported=int(s.get("Unsupported Layer Count", 0)),
                accelerator_cycles=int(s["Accelerator Cycle Count"]), cpu_cycles=int(s["CPU Cycle Count"]),
                latency_s=float(s["Time (s)"])),
            layers=layers)
    except KeyError as e:
        raise ModelError(f"{name}: device report has no {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelError(f"{name}: device report has a malformed value: {e}") from None


def load_reports(path: str | Path, board: str = "published") -> dict[str, ProfileRecord]:
    """Every report in a JSON file: {model name: report} or a single report with a summary."""
    return reports_from_json(read_json(path), Path(path), board)


def reports_from_json(data, p: Path, board: str = "published") -> dict[str, ProfileRecord]:
    """The reports of a JSON file's content (`p` names the file in errors and a lone report)."""
    if isinstance(data, dict) and "summary" in data:
        data = {data["summary"].get("Name", p.stem): data}
    if not isinstance(data, dict):
        raise ModelError(f"{p}: expected a JSON object of device reports")
    return {name: report_to_record(name, rep, board=board) for name, rep in data.items()}
