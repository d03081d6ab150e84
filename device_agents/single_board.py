"""One board attached to this machine, used without Ray: which firmware it runs, and measuring a
model on it (`mvpfarm profile MODEL --device [PORT]`, `mvpfarm boards check PORT`).

`detect` tells the firmware apart: mvpfarm's protocol answers HELLO; Silicon Labs' model profiler
says nothing until it is reset, so the board is reset through Simplicity Commander and its port
read for "Starting Model Profiler"; anything else is "unknown", with what was seen. `measure` runs
one job with the agent of that firmware (the same agents the farm uses, so the same timeouts,
retries and checks), and raises `BoardUnusable` with one line when the board cannot give a
measurement. `CHECK_MODEL` is the tiny built-in model `boards check` measures end to end.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from device_agents import protocol as P
from device_agents import vendor_log
from device_agents.agent import IDLE, MEASURED, PROTOCOL_FIRMWARE, VENDOR_FIRMWARE, AgentConfig, probe
from device_agents.commander import Commander, CommanderError, DeviceInfo, find_commander
from device_agents.discovery import jlink_ports, jlink_serial
from device_agents.port_lock import PortBusy, PortLock
from device_agents.transport import TransportError
from simulator.errors import UserError
from simulator.record import ProfileRecord

CHECK_MODEL = Path(__file__).with_name("data") / "check_model.tflite"   # one 3x3 conv_2d on the MVP, 1.7 KB
UNKNOWN = "unknown"
FIRMWARE_NAMES = {PROTOCOL_FIRMWARE: "mvpfarm protocol", VENDOR_FIRMWARE: "the vendor's model profiler",
                  UNKNOWN: "unknown"}


class BoardUnusable(UserError):
    """The board cannot be used or measured; the message is one line."""


@dataclass
class Detected:
    firmware: str                    # PROTOCOL_FIRMWARE, VENDOR_FIRMWARE or UNKNOWN
    seen: str                        # what the board said (its INFO, the log's first line) or did not
    info: P.Info | None = None       # protocol boards' INFO

    def describe(self) -> str:
        return f"{FIRMWARE_NAMES[self.firmware]} ({self.seen})"


def default_port(port: str | None) -> str:
    """`port`, else the only J-Link port of this machine."""
    if port:
        return port
    ports = jlink_ports()
    if not ports:
        raise BoardUnusable("no board found: no J-Link serial port (USB vendor 0x1366); name one: --device PORT")
    if len(ports) > 1:
        raise BoardUnusable(f"{len(ports)} boards found ({', '.join(ports)}): name one with --device PORT")
    return ports[0]


def commander_for(port: str, path: str | None, timeout_s: float = 120.0) -> Commander:
    """The Commander of the kit on `port` (its J-Link chosen by serial). Raises CommanderError."""
    return Commander(find_commander(path), jlink_serial(port), timeout_s=timeout_s)


def detect(port: str, timeout_s: float = 2.0, commander: Commander | None = None,
           log_wait_s: float = 5.0, lock_dir: str | None = None) -> Detected:
    """Which firmware the board on `port` runs. The vendor's is recognised only with a Commander
    (it must be reset to speak). Raises PortBusy when an agent owns the port."""
    try:
        info = probe(port, timeout_s, lock_dir)
        return Detected(PROTOCOL_FIRMWARE, f"{info.firmware_version}, protocol {info.protocol_version}", info)
    except (TransportError, P.ProtocolError) as e:
        no_hello = f"no protocol reply to HELLO: {_one_line(e)}"
    if commander is None:
        return Detected(UNKNOWN, f"{no_hello}; without Commander the board cannot be reset to read a vendor log")
    import serial
    with PortLock(port, lock_dir, owner="mvpfarm boards check"):
        try:
            with serial.serial_for_url(port, vendor_log.BAUD, timeout=0.05) as s:
                s.reset_input_buffer()
                commander.reset()
                seen = bytearray()
                deadline = time.monotonic() + log_wait_s
                while time.monotonic() < deadline and vendor_log.START_MARK.encode() not in seen:
                    seen += s.read(max(1, s.in_waiting))
        except (OSError, ValueError) as e:
            return Detected(UNKNOWN, f"{no_hello}; port error after a reset: {_one_line(e)}")
    if vendor_log.START_MARK.encode() in seen:
        return Detected(VENDOR_FIRMWARE, f"prints \"{vendor_log.START_MARK}\" after a reset")
    what = "nothing" if not seen else f"{len(seen):,} bytes, not its log: {bytes(seen[:40])!r}"
    return Detected(UNKNOWN, f"{no_hello}; after a reset through Commander: {what} in {log_wait_s:g} s")


def kit_info(commander: Commander | None) -> tuple[DeviceInfo | None, str]:
    """(Commander's device info, or None with why not)."""
    if commander is None:
        return None, "no Commander"
    try:
        return commander.device_info(), ""
    except CommanderError as e:
        return None, str(e)


def measure(port: str, tflite_bytes: bytes, name: str, firmware: str, config: AgentConfig) -> ProfileRecord:
    """One measurement on the board on `port` with the agent of `firmware`. Raises BoardUnusable."""
    return measure_all(port, [(tflite_bytes, name)], firmware, config)[0]


def measure_all(port: str, models: list[tuple[bytes, str]], firmware: str, config: AgentConfig) -> list[ProfileRecord]:
    """Each (tflite bytes, name) measured in turn by one agent (so that a vendor image given with
    `config.image` is programmed once). Raises BoardUnusable at the first that fails."""
    from device_agents.pool import agent_class
    config = replace(config, firmware=firmware)
    try:
        agent = agent_class(config)(port, config)
    except PortBusy as e:
        raise BoardUnusable(f"{port}: {e}") from None
    records = []
    try:
        if agent.state != IDLE:
            raise BoardUnusable(f"{port}: {agent.reason}")
        for data, name in models:
            out = agent.run_job(f"{name}-" + hashlib.sha256(data).hexdigest()[:8], data, name)
            if out.status != MEASURED:
                raise BoardUnusable(f"{port}: {name}: {_one_line(out.reason or out.status)}")
            records.append(out.record)
    finally:
        agent.close()
    return records


def _one_line(e) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


__all__ = ["BoardUnusable", "CHECK_MODEL", "Detected", "commander_for", "default_port", "detect", "kit_info",
           "measure", "measure_all", "UNKNOWN", "FIRMWARE_NAMES"]
