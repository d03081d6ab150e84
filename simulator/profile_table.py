"""The profile table: a ProfileRecord rendered as the vendor-style table, JSON or CSV (what
`mvpfarm profile` prints)."""
from __future__ import annotations

import csv
import io
import json

from simulator.record import ProfileRecord

LAYER_CSV_COLUMNS = ("model", "accelerator", "timing", "index", "opcode", "ops", "macs", "supported", "reason",
                     "accelerator_cycles", "cpu_cycles", "latency_s", "ram_bytes", "input_shape",
                     "output_shape", "options")


def si(x: float) -> str:
    """Three significant digits with a k/M/G suffix, as the vendor's profiler prints numbers."""
    x = float(x)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}" if x != int(x) else str(int(x))


def seconds(x: float) -> str:
    if x == 0:
        return "0"
    for mul, unit in ((1, "s"), (1e3, "ms"), (1e6, "us")):
        if abs(x) * mul >= 1:
            return f"{x * mul:.3g} {unit}"
    return f"{x * 1e9:.3g} ns"


def options_str(options: dict) -> str:
    parts = []
    for key in ("padding", "stride_h", "filter_height", "depth_multiplier", "fused_activation_function"):
        if key not in options:
            continue
        if key == "stride_h":
            parts.append(f"stride:{options['stride_w']}x{options['stride_h']}")
        elif key == "filter_height":
            parts.append(f"filter:{options['filter_width']}x{options['filter_height']}")
        elif key == "fused_activation_function":
            parts.append(f"activation:{options[key]}")
        else:
            parts.append(f"{key}:{options[key]}")
    return " ".join(parts)


def mvp_cell(layer) -> str:
    """yes (runs on the MVP) / cpu (an op the MVP has no kernel for, or the MVP is off) / no: the
    limit that made the MVP's kernel refuse it (it falls back to the CPU)."""
    if layer.supported:
        return "yes"
    if layer.reason is None:
        return "cpu"
    return f"no: {layer.reason}"


def _shapes(tensors) -> str:
    return ",".join(t.shape_str() for t in tensors)


def summary_rows(rec: ProfileRecord) -> list[tuple[str, str]]:
    s, m, t = rec.summary, rec.model, rec.target
    return [
        ("Name", m.name),
        ("Accelerator", t.accelerator.upper() if t.accelerator == "mvp" else "none"),
        ("Timing model", f"{t.timing} ({t.source})"),
        ("Input", ", ".join(f"{x.shape_str()} {x.dtype}" for x in m.inputs)),
        ("Output", ", ".join(f"{x.shape_str()} {x.dtype}" for x in m.outputs)),
        ("Flash, model size", f"{s.flash_bytes:,} bytes ({si(s.flash_bytes)}B)"),
        ("RAM, runtime memory", f"{s.ram_bytes:,} bytes ({si(s.ram_bytes)}B)"),
        ("Operations", si(s.ops)),
        ("Multiply-accumulates", si(s.macs)),
        ("Layers", f"{s.n_layers} ({s.n_unsupported} unsupported on the MVP)"),
        ("Accelerator cycles", si(s.accelerator_cycles)),
        ("CPU cycles", si(s.cpu_cycles)),
        ("Clock", f"{si(t.clock_hz)}Hz"),
        ("Latency", seconds(s.latency_s)),
        ("Inferences/s", f"{1 / s.latency_s:.3g}" if s.latency_s else "-"),
    ] + ([] if rec.execution is None else [
        ("Emulated", f"{rec.execution['count']} input(s), seed {rec.execution['seed']}: "
                     f"{si(rec.execution['accelerator_cycles'])} accelerator cycles executed"),
        ("Output drift", f"{rec.execution['outputs']['drift_elements']}/{rec.execution['outputs']['elements']} "
                         f"elements differ from the reference kernels, at most "
                         f"{rec.execution['outputs']['drift_max_steps']:g} step(s)"),
    ])


def render_table(rec: ProfileRecord) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=240, force_terminal=False, color_system=None)
    head = Table(title="Profiling Summary", box=box.ASCII, show_header=False, title_justify="left")
    head.add_column(justify="left")
    head.add_column(justify="left")
    for k, v in summary_rows(rec):
        head.add_row(k, v)
    console.print(head)

    mvp = rec.target.accelerator == "mvp"
    layers = Table(title="Model Layers", box=box.ASCII, title_justify="left")
    for name, justify in (("Index", "right"), ("OpCode", "left"), ("# Ops", "right"), ("# MACs", "right"),
                          ("Acc Cycles", "right"), ("CPU Cycles", "right"), ("Time", "right"),
                          ("Input Shape", "left"), ("Output Shape", "left"), ("Options", "left")):
        layers.add_column(name, justify=justify, no_wrap=True)
    executed = rec.execution is not None
    if executed:
        layers.add_column("Emu Cycles", justify="right", no_wrap=True)
        layers.add_column("Drift", justify="right", no_wrap=True)
    if mvp:
        layers.add_column("MVP", justify="left", overflow="fold")
    for L in rec.layers:
        row = [str(L.index), L.opcode, si(L.ops), si(L.macs), si(L.accelerator_cycles), si(L.cpu_cycles),
               seconds(L.latency_s), _shapes(L.inputs), _shapes(L.outputs), options_str(L.options)]
        if executed:
            ex = L.execution or {}
            row += [si(ex.get("accelerator_cycles", 0)),
                    f"{ex.get('drift_elements', 0)}/{ex.get('elements', 0)}"]
        if mvp:
            row.append(mvp_cell(L))
        layers.add_row(*row)
    console.print(layers)
    notes = [f"  layer {L.index} ({L.opcode}): {L.note}" for L in rec.layers if L.note and mvp]
    if notes:       # e.g. a layer that runs on the MVP although the vendor's simulator refuses it
        buf.write("Notes\n" + "\n".join(notes) + "\n")
    return buf.getvalue()


def layer_rows(rec: ProfileRecord) -> list[dict]:
    return [{
        "model": rec.model.name, "accelerator": rec.target.accelerator, "timing": rec.target.timing,
        "index": L.index, "opcode": L.opcode, "ops": L.ops, "macs": L.macs, "supported": L.supported,
        "reason": L.reason or "", "accelerator_cycles": L.accelerator_cycles, "cpu_cycles": L.cpu_cycles,
        "latency_s": L.latency_s, "ram_bytes": L.ram_bytes, "input_shape": _shapes(L.inputs),
        "output_shape": _shapes(L.outputs), "options": options_str(L.options),
    } for L in rec.layers]


def render_csv(records: list[ProfileRecord]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LAYER_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerows(layer_rows(rec))
    return buf.getvalue()


def render_json(records: list[ProfileRecord]) -> str:
    data = [r.to_dict() for r in records]
    return json.dumps(data[0] if len(data) == 1 else data, indent=2)
