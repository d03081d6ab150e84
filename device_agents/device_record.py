"""Turning what a board measured into the project's one `ProfileRecord` (target.source = "device").

The board reports cycles per layer and the arena it used; everything a board does not measure
(tensor shapes, options, ops and MACs, which the vendor also computes on the host) comes from the
simulator's reading of the same .tflite, so device and simulator records line up row for row.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from simulator.record import CLOCK_HZ_DEFAULT, MEASURED_TIMING, ModelInfo, ProfileRecord, Summary, Target

DEVICE_TIMING = MEASURED_TIMING  # target.timing of device records: no model, the board's counters


@dataclass
class MeasuredLayer:
    cpu_cycles: int             # DWT CYCCNT (median over repeats)
    accelerator_cycles: int     # MVP PERF counter 0, RUN (median over repeats)
    on_accelerator: bool
    reason: str | None = None   # why a layer with an MVP kernel fell back to the CPU
    latency_s: float | None = None   # when the board printed its own time (vendor firmware)
    ops: int | None = None      # when the board printed them (vendor firmware)
    macs: int | None = None


def device_record(reference: ProfileRecord, layers: list[MeasuredLayer], arena_bytes: int,
                  clock_hz: int, board_id: str, accelerator: str = "mvp",
                  firmware: str | None = None) -> ProfileRecord:
    """The device's record for the model that `reference` (the simulator's record) describes.

    Raises ValueError when the board reported a different number of layers than the model has."""
    if len(layers) != len(reference.layers):
        raise ValueError(f"board reported {len(layers)} layers, the model has {len(reference.layers)}")
    rows = []
    for ref, m in zip(reference.layers, layers):
        latency_s = m.latency_s if m.latency_s is not None else \
            max(m.cpu_cycles, m.accelerator_cycles) / clock_hz   # the vendor's accounting
        rows.append(replace(
            ref, cpu_cycles=int(m.cpu_cycles), accelerator_cycles=int(m.accelerator_cycles),
            supported=bool(m.on_accelerator), reason=None if m.on_accelerator else m.reason,
            latency_s=latency_s,
            ops=ref.ops if m.ops is None else int(m.ops),
            macs=ref.macs if m.macs is None else int(m.macs)))
    return ProfileRecord(
        model=reference.model, target=Target.device(clock_hz, board_id, accelerator, firmware),
        summary=Summary.of_layers(rows, reference.summary.flash_bytes, arena_bytes), layers=rows)


def bare_model_info(name: str, tflite_bytes: bytes | None) -> ModelInfo:
    """Model info when only a name (and maybe the bytes) is known: no tensor details."""
    data = tflite_bytes or b""
    return ModelInfo(name=name, sha256=hashlib.sha256(data).hexdigest() if data else "",
                     flash_bytes=len(data), inputs=[], outputs=[])


__all__ = ["MeasuredLayer", "device_record", "bare_model_info", "DEVICE_TIMING", "CLOCK_HZ_DEFAULT"]
