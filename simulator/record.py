"""The profile record: one model summary plus per-layer rows.

Defined once, here. The simulator's profiler and the device agents both produce it, the result
table stores it as it is, and the orchestrator reads it without caring where the numbers came
from beyond `target.source` ("simulator", "emulator" or "device"). Its JSON form is a public
contract read by other tools and the nightly checks: field names do not change.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

from simulator.hardware import CLOCK_HZ

CLOCK_HZ_DEFAULT = CLOCK_HZ  # EFR32MG24 with the radio: the clock the vendor profiler assumes
DEVICE_SOURCE = "device"     # target.source of records a board measured
MEASURED_TIMING = "measured"  # target.timing of device records: no model, the board's counters


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str

    def shape_str(self) -> str:
        return "x".join(str(d) for d in self.shape) if self.shape else "0"


@dataclass
class LayerRecord:
    index: int
    opcode: str                     # lower-case TFLite builtin name, e.g. "conv_2d"
    ops: int
    macs: int
    supported: bool                 # runs on the accelerator (always False with accelerator "none")
    reason: str | None              # why the MVP's kernel refused it (it falls back to the CPU); else None
    accelerator_cycles: int
    cpu_cycles: int
    latency_s: float
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    ram_bytes: int = 0              # scratch and persistent bytes this layer's kernel adds to the arena
    note: str | None = None         # more detail for a user, e.g. a vendor-tool quirk at play
    # filled by `profile --execute`: {"accelerator_cycles" of the programs the emulator ran,
    # "elements", "drift_elements", "drift_max_steps" against the reference kernels}
    execution: dict | None = None


@dataclass
class ModelInfo:
    name: str
    sha256: str
    flash_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass
class Target:
    accelerator: str                # "mvp" or "none"
    clock_hz: int
    timing: str                     # the timing model that produced the cycles, e.g. "vendor-sim"
    source: str                     # "simulator", "emulator" or "device"
    board: str | None = None        # the board that measured it, for device records
    firmware: str | None = None     # the board's firmware: "mvpfarm-protocol" or "mltk-profiler"

    @classmethod
    def device(cls, clock_hz: int, board: str | None, accelerator: str = "mvp",
               firmware: str | None = None) -> "Target":
        """The target of a record a board measured (timing "measured", source "device")."""
        return cls(accelerator=accelerator, clock_hz=int(clock_hz), timing=MEASURED_TIMING,
                   source=DEVICE_SOURCE, board=board, firmware=firmware)


@dataclass
class Summary:
    flash_bytes: int
    ram_bytes: int
    ops: int
    macs: int
    n_layers: int
    n_unsupported: int
    accelerator_cycles: int
    cpu_cycles: int
    latency_s: float

    @classmethod
    def of_layers(cls, layers: Iterable[LayerRecord], flash_bytes: int, ram_bytes: int,
                  n_unsupported: int | None = None) -> "Summary":
        """The summary of a model from its layers: ops, MACs, cycles and latency are the layers'
        sums. n_unsupported defaults to the layers that give a reason for not running on the
        accelerator: the one meaning of "unsupported" for every source, a layer the MVP's kernels
        refuse so that it falls back to the CPU (a layer's `reason` is set only for those)."""
        layers = list(layers)
        if n_unsupported is None:
            n_unsupported = sum(1 for L in layers if L.reason is not None)
        return cls(flash_bytes=int(flash_bytes), ram_bytes=int(ram_bytes), n_layers=len(layers),
                   n_unsupported=int(n_unsupported), **_layer_sums(layers, ("ops", "macs")),
                   **_layer_sums(layers, TIMED_FIELDS))

    def retimed(self, layers: Iterable[LayerRecord]) -> "Summary":
        """This summary with cycles and latency summed again from (re-measured) layers."""
        return replace(self, **_layer_sums(list(layers), TIMED_FIELDS))


TIMED_FIELDS = ("accelerator_cycles", "cpu_cycles", "latency_s")


def _layer_sums(layers: list[LayerRecord], fields: tuple[str, ...]) -> dict:
    return {f: sum(getattr(L, f) for L in layers) for f in fields}


@dataclass
class ProfileRecord:
    model: ModelInfo
    target: Target
    summary: Summary
    layers: list[LayerRecord]
    # filled by `profile --execute`: {"seed", "count", "accelerator_cycles", "outputs": {"elements",
    # "drift_elements", "drift_max_steps"}}: the emulator's run of the model on seeded inputs
    execution: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["target"]["firmware"] is None:     # only device records name a firmware
            del d["target"]["firmware"]
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "ProfileRecord":
        def tensors(xs):
            return [TensorInfo(**x) for x in xs]
        m = d["model"]
        return cls(
            model=ModelInfo(name=m["name"], sha256=m["sha256"], flash_bytes=m["flash_bytes"],
                            inputs=tensors(m["inputs"]), outputs=tensors(m["outputs"])),
            target=Target(**d["target"]),
            summary=Summary(**d["summary"]),
            layers=[LayerRecord(**{**L, "inputs": tensors(L["inputs"]), "outputs": tensors(L["outputs"])})
                    for L in d["layers"]],
            execution=d.get("execution"),
        )

    @classmethod
    def from_json(cls, s: str) -> "ProfileRecord":
        return cls.from_dict(json.loads(s))


def read_json(path) -> object:
    """A JSON file's content; ModelError (one line naming the file) when it is missing or not JSON."""
    from pathlib import Path

    from simulator.errors import ModelError
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{p}: not a JSON file: {e}") from None


def records_from_json(data, where) -> list[ProfileRecord]:
    """Profile records as JSON holds them: one record, a list, or {name: record}. ModelError names
    `where` (the file) and what is missing or malformed."""
    from simulator.errors import ModelError
    items = data if isinstance(data, list) else \
        list(data.values()) if isinstance(data, dict) and "model" not in data else [data]
    try:
        return [ProfileRecord.from_dict(d) for d in items]
    except (KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"{where}: not profile records ({e!r} missing or malformed)") from None
