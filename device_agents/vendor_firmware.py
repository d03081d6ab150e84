"""Silicon Labs' model-profiler firmware as the virtual board runs it (vendor mode).

On every boot the firmware finds the .tflite at the end of flash (the model, then its length in 4
little-endian bytes: `model_in_flash`), zeroes the input, runs one inference and
prints the vendor's log (`vendor_log.format_log`: the model summary, each layer's ops and MACs,
then each layer's time and cycles, then "done"). The numbers are the silicon model's
(`silicon_model.py`), as in protocol mode. An erased flash has no firmware: nothing is printed.

`boot_log` returns the log in two parts, what is printed before the inference and after it, so
that the board can spend the inference's time in between. Of the faults, this module owns the
two that change what the firmware says: `nodone` (the log never prints "done") and `unsupported`
(the firmware refuses one layer and runs it on the CPU). The board (`virtual_board.py`) applies
the ones that change how the bytes travel.
"""
from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np

from device_agents import vendor_log
from device_agents.board_kinds import BoardKind
from device_agents.faults import Faults
from device_agents.silicon_model import SiliconModel
from device_agents.virtual_jlink import ERASED
from simulator.errors import ModelError
from simulator.profiler import profile_model

# what a virtual vendor board has in flash before anyone programs it: a stand-in for the
# vendor's image (its first word is not erased, so the board boots the profiler)
STANDIN_IMAGE = b"model-profiler stand-in image".ljust(1024, b"\0")
UNSUPPORTED_REASON = "Hardware limits exceeded"
_SPLIT = "Profiling model ..."


def model_in_flash(flash: bytes) -> bytes | None:
    """The .tflite at the end of a flash image, or None (erased, or a length that does not fit)."""
    if len(flash) < 4:
        return None
    (n,) = struct.unpack("<I", flash[-4:])
    if n == 0xFFFF_FFFF or n == 0 or n > len(flash) - 4:
        return None
    return flash[-4 - n:-4]



def has_firmware(flash: bytes) -> bool:
    return len(flash) >= 4 and flash[:4] != bytes([ERASED]) * 4


class VendorFirmware:
    def __init__(self, kind: BoardKind, silicon: SiliconModel, rng: np.random.Generator,
                 faults: Faults | None = None):
        self.kind, self.silicon, self.rng = kind, silicon, rng
        self.faults = faults or Faults()

    def boot_log(self, flash: bytes) -> tuple[str, str, float] | None:
        """(log up to the inference, the rest, the inference's seconds), or None when the flash
        holds no firmware."""
        if not has_firmware(flash):
            return None
        data = model_in_flash(flash)
        if data is None:
            return (f"{vendor_log.START_MARK}\r\nLoading model\r\n"
                    "ERROR: no .tflite at the end of flash\r\n", "", 0.0)
        try:
            record, run_s = self._measure(data)
        except ModelError as e:
            return (f"{vendor_log.START_MARK}\r\nLoading model\r\n"
                    f"ERROR: failed to load the model: {str(e)[:120]}\r\n", "", 0.0)
        text = vendor_log.format_log(record)
        if self.faults.nodone:
            text = text[:text.rindex("done")]
        cut = text.index(_SPLIT)
        return text[:cut], text[cut:], run_s

    def _measure(self, data: bytes):
        profile = self.silicon.profile(data, "flashed")
        truth = self.silicon.truth(profile)
        measured = self.silicon.measure(truth, 1, 0, self.rng)   # one run on the zeroed input
        refused = self.faults.unsupported
        cpu_only = profile_model(data, accelerator="none") if refused is not None else None
        rows = []
        for i, (L, T, (cpu, acc)) in enumerate(zip(profile.layers, truth.layers, measured)):
            cpu_cycles, acc_cycles, on_mvp, reason = cpu[0], acc[0], T.on_accelerator, T.reason
            if refused == i:
                cpu_cycles = max(cpu_cycles, int(cpu_only.layers[i].cpu_cycles * self.silicon.params.cpu_scale))
                acc_cycles, on_mvp, reason = 0, False, UNSUPPORTED_REASON
            rows.append(replace(L, cpu_cycles=cpu_cycles, accelerator_cycles=acc_cycles, supported=on_mvp,
                                reason=reason, latency_s=max(cpu_cycles, acc_cycles) / self.kind.clock_hz))
        profile.layers = rows
        profile.summary.ram_bytes = truth.arena_bytes
        profile.target.clock_hz = self.kind.clock_hz
        return profile, SiliconModel.latency_s(truth, self.kind.clock_hz)
