"""The hardware as data: the one reader of simulator/hardware/*.json.

Every fact about the board that code depends on -- the CPU clock, RAM and flash sizes, the
accelerators it has and the MVP's encoding limits -- lives in simulator/hardware/NAME.json and is
read here, once; every other module (in simulator, device_agents and orchestrator alike) takes
the numbers from `DEVICE` (or `device(name)`), never from a literal of its own. Tests may state
the numbers, to check the data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HARDWARE_DIR = Path(__file__).with_name("hardware")
DEFAULT_DEVICE = "efr32xg24"
NO_ACCELERATOR = "none"  # the accelerator name of "every layer on the CPU"


@lru_cache(maxsize=None)
def load_json(name: str) -> dict:
    """The parsed simulator/hardware/NAME.json (device or CPU parameters); ValueError if absent."""
    path = HARDWARE_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no hardware description {name!r} in {HARDWARE_DIR}")
    return json.loads(path.read_text())


def load_hardware(name: str = DEFAULT_DEVICE) -> dict:
    """A device's parameters as the raw JSON dict (limits, clock, memory sizes)."""
    return load_json(name)


@dataclass(frozen=True)
class MvpLimits:
    """The MVP's program encoding limits (the SDK driver's and the device header's)."""
    n_arrays: int
    n_dims: int
    n_loops: int
    n_instructions: int
    n_registers: int
    dim_size_max: int          # elements per array dimension, and the longest MVP vector
    dim_stride_min: int        # elements (of the array's element size)
    dim_stride_max: int
    loop_iterations_max: int
    fp16_max: float            # the largest finite binary16 value the datapath holds
    program_words: int         # words the driver writes per program
    basetypes: tuple[str, ...]


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    clock_hz: int
    ram_bytes: int
    flash_bytes: int
    accelerators: tuple[str, ...]   # accelerators the device has, e.g. ("mvp",)
    mvp: MvpLimits

    @property
    def accelerator_choices(self) -> tuple[str, ...]:
        """What a profile can run on: each accelerator, or none (every layer on the CPU)."""
        return self.accelerators + (NO_ACCELERATOR,)


@lru_cache(maxsize=None)
def device(name: str = DEFAULT_DEVICE) -> Device:
    d = load_json(name)
    m = dict(d["mvp"])
    m["basetypes"] = tuple(m["basetypes"])
    return Device(name=d["name"], description=d.get("description", ""), clock_hz=int(d["clock_hz"]),
                  ram_bytes=int(d["ram_bytes"]), flash_bytes=int(d["flash_bytes"]),
                  accelerators=tuple(d["accelerators"]), mvp=MvpLimits(**m))


DEVICE = device()
MVP = DEVICE.mvp
CLOCK_HZ = DEVICE.clock_hz
RAM_BYTES = DEVICE.ram_bytes
FLASH_BYTES = DEVICE.flash_bytes
ACCELERATORS = DEVICE.accelerator_choices

__all__ = ["HARDWARE_DIR", "DEFAULT_DEVICE", "NO_ACCELERATOR", "load_json", "load_hardware", "MvpLimits",
           "Device", "device", "DEVICE", "MVP", "CLOCK_HZ", "RAM_BYTES", "FLASH_BYTES", "ACCELERATORS"]
