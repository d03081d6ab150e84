"""The agent of a board running Silicon Labs' model-profiler firmware instead of mvpfarm's.

That firmware has no protocol: it profiles whatever .tflite sits at the end of flash, once, after
every reset, and prints its log. So a job is: program the profiler image (once per board: the
agent keeps the hash of what it wrote), write the model region (the .tflite and its 4-byte
little-endian length, ending with the flash; skipped when that model is already there), reset the
board through Commander, read the log from the J-Link's CDC UART, and make the device record from
it with the simulator's record of the same bytes (`vendor_log.to_record`). Before anything is
written, a model that would not fit beside the image is refused with both sizes named.

The board's faults are handled as for protocol boards (`agent.AgentBase`): a failed Commander
call, a log that never says "done" in time, a garbled or truncated log or a reboot mid-log is a
fault; the job is tried again on this board after a reset, then handed back for another board,
and consecutive faults quarantine the board with the reason. A missing Commander or a debugger
that has gone quarantines it at once. `program_cycles` in its status counts the flash writes
(flash wear).
"""
from __future__ import annotations

import hashlib

import serial

from device_agents import vendor_log
from device_agents.agent import (BUSY, FAILED, QUARANTINED, RETRY_ELSEWHERE, VENDOR_FIRMWARE,
                                 AgentBase, AgentConfig, JobOutcome)
from device_agents.board_kinds import BOARD_KINDS, BoardKind, kind_of_part
from device_agents.commander import (Commander, CommanderError, CommanderMissing, DeviceInfo, FirmwareImage,
                                     NoDevice, find_commander, flash_problem, model_address, model_region)
from device_agents.discovery import jlink_serial
from simulator.record import ProfileRecord


class VendorAgent(AgentBase):
    firmware_kind = VENDOR_FIRMWARE

    def __init__(self, port: str, config: AgentConfig | None = None, serial_number: str | None = None,
                 kind: str | None = None):
        super().__init__(port, config)
        cfg = self.config
        self.serial = serial_number or jlink_serial(port)
        self.kind = kind
        self.device: DeviceInfo | None = None
        self.image: FirmwareImage | None = None
        self.image_in_flash: str | None = None     # sha256 of the image this agent programmed
        self.model_in_flash: str | None = None     # sha256 of the model this agent wrote
        self.program_cycles = 0
        self._port: serial.Serial | None = None
        self.commander: Commander | None = None
        try:
            if cfg.image:
                self.image = FirmwareImage.load(cfg.image)
            self.commander = Commander(find_commander(cfg.commander), self.serial, timeout_s=cfg.commander_timeout_s)
            self.device = self.commander.device_info()
            known = kind_of_part(self.device.part_number)
            self.kind = kind or (known.name if known else self.device.part_number.lower())
        except (CommanderError, ValueError) as e:
            self._quarantine(f"Commander: {e}" if isinstance(e, CommanderError) else str(e))

    # -- state -----------------------------------------------------------------------------------

    @property
    def board_id(self) -> str:
        return f"jlink-{self.serial}" if self.serial else f"? ({self.port})"

    def _limits(self) -> tuple[int, int]:
        """(largest arena, largest .tflite) this board can take."""
        if self.device is None:
            return 0, 0
        # a part this project has no data for: its own RAM, less what firmware usually keeps
        kind = BOARD_KINDS.get(self.kind or "") or BoardKind(self.kind or "?", ram_bytes=self.device.ram_bytes,
                                                               flash_bytes=self.device.flash_bytes)
        image = self.image.size_bytes if self.image else kind.firmware_flash_bytes
        return kind.arena_max_bytes, max(0, self.device.flash_bytes - image - 4)

    def _identity(self) -> dict:
        arena, model = self._limits()
        image = f" image {self.image.sha256[:12]}" if self.image else ""
        return dict(board_id=self.board_id, kind=self.kind or "?", firmware=f"{VENDOR_FIRMWARE}{image}",
                    arena_max_bytes=arena, model_max_bytes=model,
                    part_number=self.device.part_number if self.device else "", jlink_serial=self.serial or "",
                    program_cycles=self.program_cycles, image_sha256=self.image_in_flash or "",
                    model_sha256=self.model_in_flash or "")

    def close(self) -> None:
        self._close_port()
        super().close()

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except OSError:
                pass
            self._port = None

    # -- jobs ------------------------------------------------------------------------------------

    def run_job(self, job_id: str, tflite_bytes: bytes, name: str = "model", warmup: int | None = None,
                repeats: int | None = None) -> JobOutcome:
        """Measures one model. The vendor's firmware runs one inference on a zeroed input, so
        `warmup` and `repeats` do not apply (accepted for the pool's sake)."""
        reference, ended = self._admit(job_id, tflite_bytes, name)
        if ended:
            return ended
        problem = flash_problem(self.device, self.image, len(tflite_bytes))
        arena, _ = self._limits()
        if problem is None and arena and reference.summary.ram_bytes > arena:
            problem = (f"model needs a {reference.summary.ram_bytes:,} B tensor arena (simulator estimate) but "
                       f"board {self.board_id} ({self.kind}) can give at most {arena:,} B of RAM")
        if problem:
            return self._outcome(job_id, FAILED, reason=f"refused before flashing: {problem}")
        self.state = BUSY
        last_fault = None
        for _ in range(self.config.attempts_per_job):
            try:
                record = self._measure(bytes(tflite_bytes), reference, name)
            except (CommanderMissing, NoDevice) as e:
                self._quarantine(f"Commander: {e}")
                return self._outcome(job_id, RETRY_ELSEWHERE, reason=self.reason)
            except serial.SerialException as e:
                self._close_port()
                self._quarantine(f"port gone (unplugged?): {e}")
                return self._outcome(job_id, RETRY_ELSEWHERE, reason=self.reason)
            except (CommanderError, vendor_log.VendorLogError) as e:
                last_fault = self._job_fault(job_id, e)
                if self.state == QUARANTINED:
                    break
                continue
            return self._measured(job_id, record)
        return self._gave_up(job_id, last_fault)

    def _program(self, data: bytes) -> None:
        """The image once, the model region when it is not already the one in flash."""
        cmd = self.commander
        if self.image is not None and self.image_in_flash != self.image.sha256:
            self.image_in_flash = None
            cmd.flash_file(self.image.path)
            self.program_cycles += 1
            self.image_in_flash = self.image.sha256
        sha = hashlib.sha256(data).hexdigest()
        if self.model_in_flash != sha:
            self.model_in_flash = None           # a failed write leaves the region unknown
            cmd.flash_bytes(model_region(data), model_address(self.device, len(data)))
            self.program_cycles += 1
            self.model_in_flash = sha

    def _open_port(self) -> serial.Serial:
        if self._port is None:
            self._port = serial.serial_for_url(self.port, vendor_log.BAUD, timeout=0.05,
                                               exclusive=True if "://" not in self.port else None)
        return self._port

    def _measure(self, data: bytes, reference: ProfileRecord, name: str) -> ProfileRecord:
        self._program(data)
        port = self._open_port()
        port.reset_input_buffer()              # a log from an earlier boot is not this model's
        self.commander.reset()
        text = vendor_log.read_log(port, timeout_s=self.config.profile_timeout_s,
                                   total_s=4 * self.config.profile_timeout_s)
        log = vendor_log.parse_log(text)
        record = vendor_log.to_record(log, self.board_id, reference=reference, name=name, tflite_bytes=data)
        check_counts(log, reference)
        return record


def check_counts(log: vendor_log.VendorLog, reference: ProfileRecord) -> None:
    """The log's ops and MACs per layer are the vendor's conventions, which the simulator counts
    exactly; beyond the log's 4 significant digits a difference is a corrupted log."""
    for L, ref in zip(log.layers, reference.layers):
        for what, got, want in (("OPs", L.ops, ref.ops), ("MACs", L.macs, ref.macs)):
            if not vendor_log.printed_equal(got, want):
                raise vendor_log.VendorLogError(f"log layer Op{L.index}-{L.op_name} prints {got:,} {what}, "
                                                f"the model's layer has {want:,} (a corrupted log)")


__all__ = ["VendorAgent", "check_counts"]
