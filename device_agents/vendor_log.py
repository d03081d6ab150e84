"""The serial log of Silicon Labs' model-profiler firmware, parsed into a `ProfileRecord`.

Boards flashed with the vendor's profiler (instead of mvpfarm firmware) print, after a reset:

    Starting Model Profiler
    ...model summary..., including  Tensor runtime memory: 85.4k
    Op3-DepthwiseConv2D not supported: Hardware limits exceeded     (only for refused layers)
    Profiler Metrics:
    CPU clock: 78.0MHz
    Op0-Quantize                 <- first appearance of each layer: its counts
    36.9k OPs
    0 MACs
    ...
    Op0-Quantize                 <- second appearance: its measurements
    4.032 ms
    314.5k CPU cycles
    0 Accelerator cycles
    name=value                   <- optional extra counters
    ...
    done

Numbers may carry k/M/G suffixes (printed to about 4 significant digits). `format_log` writes the
same format (the virtual board's vendor mode uses it), `parse_log` reads it, `read_log` collects it
from a port, and `to_record` makes the project's record from it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from device_agents.device_record import MeasuredLayer, bare_model_info, device_record
from simulator.record import LayerRecord, ProfileRecord, Summary, Target

BAUD = 115_200
TIMEOUT_S = 90.0            # the vendor's own host tool waits this long for "done"
START_MARK = "Starting Model Profiler"
FIRMWARE = "mltk-profiler"   # target.firmware of the records made from its logs

_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_NUM = r"([-+]?\d+(?:\.\d+)?)\s?([kKMG]?)"
_RE_HEADER = re.compile(r"^Op(\d+)-(\S+)\s*$")
_RE_UNSUPPORTED = re.compile(r"Op(\d+)-(\S+) not supported: (.*)$")
_RE_CLOCK = re.compile(r"CPU clock:\s*" + _NUM + r"Hz", re.IGNORECASE)
_RE_MEMORY = re.compile(r"Tensor runtime memory:\s*" + _NUM)
_RE_OPS = re.compile(r"^" + _NUM + r" OPs$")
_RE_MACS = re.compile(r"^" + _NUM + r" MACs$")
_RE_MS = re.compile(r"^" + _NUM + r" ?ms$")
_RE_CPU = re.compile(r"^" + _NUM + r" CPU cycles$")
_RE_ACC = re.compile(r"^" + _NUM + r" Accelerator cycles$")
_RE_COUNTER = re.compile(r"^([A-Za-z_][\w\-.]*)=" + _NUM + r"$")
_RE_FAILURE = re.compile(r"hardfault|failed to alloc|\berror\b", re.IGNORECASE)


class VendorLogError(ValueError):
    """A log that does not describe a completed profiling run; the message says what is missing."""


def parse_number(text: str, suffix: str = "") -> float:
    return float(text) * _SUFFIX[suffix]


def format_number(value: float) -> str:
    """As the firmware prints: 4 significant digits with a k/M/G suffix above 1000."""
    value = float(value)
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}" if value != int(value) else str(int(value))


@dataclass
class VendorLayer:
    index: int
    op_name: str                        # as printed, e.g. "Conv2D"
    ops: int | None = None
    macs: int | None = None
    time_s: float | None = None
    cpu_cycles: int | None = None
    accelerator_cycles: int | None = None
    counters: dict[str, float] = field(default_factory=dict)
    not_supported: str | None = None    # the firmware's reason, for layers it refused


@dataclass
class VendorLog:
    clock_hz: int
    runtime_memory_bytes: int
    layers: list[VendorLayer]


def parse_log(text: str) -> VendorLog:
    """Parses a complete log (through "done"). Raises VendorLogError naming what is wrong."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    for ln in lines:
        if _RE_FAILURE.search(ln) and not _RE_UNSUPPORTED.search(ln):
            raise VendorLogError(f"the firmware reported a failure: {ln[:160]!r}")
    if not any(ln.lower() == "done" or ln.lower().endswith(" done") for ln in lines):
        raise VendorLogError("log ends before \"done\" (run incomplete)")
    clock_hz = memory = None
    layers: dict[int, VendorLayer] = {}
    seen: dict[int, int] = {}            # how many times each layer's header appeared
    current: VendorLayer | None = None
    section = None                       # "counts" or "results" for the current layer
    in_metrics = False
    for ln in lines:
        if m := _RE_UNSUPPORTED.search(ln):
            i = int(m.group(1))
            layers.setdefault(i, VendorLayer(i, m.group(2))).not_supported = m.group(3).strip()
            continue
        if m := _RE_CLOCK.search(ln):
            clock_hz = int(parse_number(m.group(1), m.group(2)))
            continue
        if m := _RE_MEMORY.search(ln):
            memory = int(parse_number(m.group(1), m.group(2)))
            continue
        if ln.startswith("Profiler Metrics"):
            in_metrics = True
            continue
        if not in_metrics:
            continue
        if m := _RE_HEADER.match(ln):
            i = int(m.group(1))
            current = layers.setdefault(i, VendorLayer(i, m.group(2)))
            seen[i] = seen.get(i, 0) + 1
            section = "counts" if seen[i] == 1 else "results"
            continue
        if current is None:
            continue
        if section == "counts":
            if m := _RE_OPS.match(ln):
                current.ops = int(parse_number(m.group(1), m.group(2)))
            elif m := _RE_MACS.match(ln):
                current.macs = int(parse_number(m.group(1), m.group(2)))
        elif section == "results":
            if m := _RE_MS.match(ln):
                current.time_s = parse_number(m.group(1), m.group(2)) / 1e3
            elif m := _RE_CPU.match(ln):
                current.cpu_cycles = int(parse_number(m.group(1), m.group(2)))
            elif m := _RE_ACC.match(ln):
                current.accelerator_cycles = int(parse_number(m.group(1), m.group(2)))
            elif m := _RE_COUNTER.match(ln):
                current.counters[m.group(1)] = parse_number(m.group(2), m.group(3))
    if clock_hz is None:
        raise VendorLogError("no \"CPU clock:\" line")
    if memory is None:
        raise VendorLogError("no \"Tensor runtime memory:\" line")
    if not layers:
        raise VendorLogError("no layers (no \"OpN-NAME\" lines after \"Profiler Metrics:\")")
    ordered = [layers.get(i) for i in range(max(layers) + 1)]
    for i, layer in enumerate(ordered):
        if layer is None:
            raise VendorLogError(f"layer Op{i} missing from the log")
        if layer.cpu_cycles is None:
            raise VendorLogError(f"layer Op{i}-{layer.op_name} has no measurements (no \"CPU cycles\")")
    return VendorLog(clock_hz, memory, ordered)


def printed_equal(printed: int | None, exact: int) -> bool:
    """Whether a count printed to 4 significant digits (k/M/G) stands for `exact`."""
    return printed is None or abs(printed - exact) <= 5e-4 * max(abs(exact), 1) + 1


def _opcode_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def to_record(log: VendorLog, board_id: str | None, reference: ProfileRecord | None = None,
              name: str = "model", tflite_bytes: bytes | None = None) -> ProfileRecord:
    """The device record of a parsed log. With `reference` (the simulator's record of the same
    model) the rows carry shapes and options; without it only what the log says."""
    # "unsupported" means what it means for every source: a layer that fell back to the CPU. The
    # vendor's firmware logs "not supported" also for layers its MVP path then runs (their
    # accelerator cycles say so): those count as on the MVP
    measured = [MeasuredLayer(
        cpu_cycles=L.cpu_cycles or 0, accelerator_cycles=L.accelerator_cycles or 0,
        on_accelerator=bool(L.accelerator_cycles),
        reason=None if L.accelerator_cycles else L.not_supported,
        latency_s=L.time_s, ops=L.ops, macs=L.macs) for L in log.layers]
    if reference is not None:
        for ref, L, m in zip(reference.layers, log.layers, measured):
            if _opcode_key(ref.opcode) != _opcode_key(L.op_name):
                raise VendorLogError(f"log layer Op{L.index}-{L.op_name} does not match the model's "
                                     f"layer {ref.index} ({ref.opcode})")
            # the log prints the counts to 4 significant digits; where they agree with the model's
            # (the same conventions), the exact numbers stand
            if printed_equal(L.ops, ref.ops) and printed_equal(L.macs, ref.macs):
                m.ops = m.macs = None
        try:
            return device_record(reference, measured, log.runtime_memory_bytes, log.clock_hz,
                                 board_id or "unknown", firmware=FIRMWARE)
        except ValueError as e:
            raise VendorLogError(str(e)) from None
    rows = []
    for L, m in zip(log.layers, measured):
        latency = m.latency_s if m.latency_s is not None else \
            max(m.cpu_cycles, m.accelerator_cycles) / log.clock_hz
        rows.append(LayerRecord(index=L.index, opcode=L.op_name, ops=L.ops or 0, macs=L.macs or 0,
                                supported=m.on_accelerator, reason=m.reason,
                                accelerator_cycles=m.accelerator_cycles, cpu_cycles=m.cpu_cycles,
                                latency_s=latency))
    model = bare_model_info(name, tflite_bytes)
    return ProfileRecord(model=model, target=Target.device(log.clock_hz, board_id, firmware=FIRMWARE),
                         summary=Summary.of_layers(rows, model.flash_bytes, log.runtime_memory_bytes),
                         layers=rows)


def _camel(opcode: str) -> str:
    return "".join(part.capitalize() if not part[:1].isdigit() else part.upper()
                   for part in opcode.split("_"))


def format_log(record: ProfileRecord) -> str:
    """The log the vendor's firmware would print for `record` (used by the virtual board)."""
    out = [START_MARK, "Loading model",
           f"Model size: {record.summary.flash_bytes}",
           f"Tensor runtime memory: {format_number(record.summary.ram_bytes)}"]
    names = [_camel(L.opcode) for L in record.layers]
    out += [f"Op{L.index}-{n} not supported: {L.reason}"
            for L, n in zip(record.layers, names) if L.reason]
    out += ["Profiler Metrics:", f"CPU clock: {format_number(record.target.clock_hz)}Hz"]
    for L, n in zip(record.layers, names):
        out += [f"Op{L.index}-{n}", f"{format_number(L.ops)} OPs", f"{format_number(L.macs)} MACs"]
    out.append("Profiling model ...")
    for L, n in zip(record.layers, names):
        out += [f"Op{L.index}-{n}", f"{L.latency_s * 1e3:.3f} ms",
                f"{format_number(L.cpu_cycles)} CPU cycles",
                f"{format_number(L.accelerator_cycles)} Accelerator cycles"]
    out.append("done")
    return "\r\n".join(out) + "\r\n"


def read_log(port, timeout_s: float = TIMEOUT_S, max_bytes: int = 4 << 20, total_s: float | None = None,
             babble_bytes: int = 64 << 10) -> str:
    """Reads an open pyserial port until the firmware prints "done" (or a failure), returning the
    text from "Starting Model Profiler" on. `timeout_s` bounds the silence between bytes, like the
    vendor's tool; `total_s` (if given) the whole read. Raises VendorLogError on silence, a failure
    line, a second start (the board rebooted mid-log), `babble_bytes` of output without the start
    mark, an oversized log or a read past `total_s`."""
    buf = bytearray()
    start_t = last_activity = time.monotonic()
    port.timeout = 0.05
    while True:
        try:
            chunk = port.read(max(1, port.in_waiting))
        except (OSError, ValueError, TypeError) as e:   # SerialException is an OSError
            raise VendorLogError(f"port gone while reading the log: {e}") from None
        now = time.monotonic()
        if chunk:
            buf += chunk
            last_activity = now
            text = buf.decode("utf-8", "replace")
            start = text.find(START_MARK)
            if start < 0:
                if len(buf) > babble_bytes:
                    raise VendorLogError(f"{len(buf):,} bytes of output without \"{START_MARK}\": "
                                         f"{bytes(buf[:40])!r}...")
            else:
                if text.find(START_MARK, start + 1) >= 0:
                    raise VendorLogError("the board restarted mid-log (a second \"Starting Model Profiler\")")
                # whole lines only: a line still arriving is judged when it ends
                body = text[start:]
                complete = body[:max(body.rfind("\n"), body.rfind("\r")) + 1]
                tail = [ln.strip() for ln in complete.replace("\r", "\n").split("\n")]
                if any(ln.lower() == "done" for ln in tail):
                    return body
                bad = next((ln for ln in tail if _RE_FAILURE.search(ln) and not _RE_UNSUPPORTED.search(ln)), None)
                if bad is not None:
                    raise VendorLogError(f"the firmware reported a failure: {bad[:160]!r}")
            if len(buf) > max_bytes:
                raise VendorLogError(f"log larger than {max_bytes} bytes without \"done\"")
        elif now - last_activity > timeout_s:
            seen = "nothing" if not buf else f"{len(buf):,} bytes, the last {bytes(buf[-30:])!r}"
            raise VendorLogError(f"no output for {timeout_s:g} s before \"done\" (received {seen})")
        if total_s is not None and now - start_t > total_s:
            raise VendorLogError(f"no \"done\" within {total_s:g} s ({len(buf):,} bytes received)")
