"""The board agent: owns one board and turns a .tflite into a device `ProfileRecord`.

One agent per board (the port lock makes sure), one Ray actor per agent (see `pool.py`). Every
exchange has a timeout; a link fault (timeout, corrupt or stray bytes) is retried, a reboot or a
failed job attempt leads to RESET and another attempt, and after `max_faults` consecutive faults
the board is quarantined with the reason. A job the agent cannot finish is handed back
("retry_elsewhere") for the pool to run on another board of the same kind; a model that cannot
fit the board is refused before any byte is uploaded.
"""
from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from device_agents import protocol as P
from device_agents.device_record import MeasuredLayer, device_record
from device_agents.port_lock import PortBusy, PortLock
from device_agents.silicon_model import median_int
from device_agents.transport import (BoardError, BoardRebooted, LinkTimeout, PortGone, Transport,
                                     TransportError)
from simulator.errors import ModelError
from simulator.profiler import profile_model
from simulator.record import ProfileRecord

IDLE, BUSY, QUARANTINED = "idle", "busy", "quarantined"
MEASURED, FAILED, RETRY_ELSEWHERE = "measured", "failed", "retry_elsewhere"

try:
    from tflite.BuiltinOperator import BuiltinOperator as _Builtin
    _OPCODES = {k.lower(): v for k, v in vars(_Builtin).items() if not k.startswith("_")}
except ImportError:  # pragma: no cover
    _OPCODES = {}


@dataclass
class AgentConfig:
    exchange_timeout_s: float = 2.0     # every request but PROFILE
    profile_timeout_s: float = 60.0     # warm-up + repeats of the slowest model expected
    boot_timeout_s: float = 3.0         # for the BOOT after a RESET
    retries: int = 2                    # extra tries of one exchange after a link fault
    attempts_per_job: int = 2           # tries of a whole job on this board (reset in between)
    max_faults: int = 3                 # consecutive faults before quarantine
    warmup: int = 1
    repeats: int = 3
    baudrate: int = 115_200
    lock_dir: str | None = None
    # boards running the vendor's model-profiler firmware (vendor_agent.py)
    firmware: str = "mvpfarm-protocol"  # or "mltk-profiler"
    image: str | None = None            # the profiler's firmware image (.s37), programmed once per board
    commander: str | None = None        # Simplicity Commander (default: `commander` on PATH)
    commander_timeout_s: float = 120.0


@dataclass
class BoardStatus:
    """One board as `mvpfarm boards list` shows it."""
    board_id: str
    kind: str
    port: str
    host: str
    state: str                          # idle, busy or quarantined
    reason: str | None = None           # why quarantined (or the last fault, while still in use)
    firmware: str = ""
    arena_max_bytes: int = 0
    model_max_bytes: int = 0
    jobs_measured: int = 0
    faults: list[str] = field(default_factory=list)
    garbage_bytes: int = 0
    crc_errors: int = 0
    timeouts: int = 0
    node_id: str | None = None
    firmware_kind: str = "mvpfarm-protocol"     # or "mltk-profiler" (FIRMWARES)
    part_number: str = ""               # from Commander (vendor-firmware boards)
    jlink_serial: str = ""
    program_cycles: int = 0             # flash writes this agent made (image and models): flash wear
    image_sha256: str = ""              # the firmware image in flash, as far as the agent knows
    model_sha256: str = ""              # the model in flash, as far as the agent knows

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class JobOutcome:
    job_id: str
    status: str                         # measured, failed (for good) or retry_elsewhere
    board_id: str
    record: ProfileRecord | None = None
    reason: str | None = None
    board: BoardStatus | None = None    # the board's state after the job


class _Fault(Exception):
    """A job attempt failed because of the board or the link (not the model)."""


class _Refused(Exception):
    """The model cannot run on this board at all."""


def fit_problem(model_bytes: int, ram_bytes: int, info: P.Info) -> str | None:
    """Why a model does not fit a board, or None. Flash: the .tflite size against the flash the
    firmware reserves for models; RAM: the simulator's tensor-arena estimate against the
    largest arena the firmware can give."""
    if model_bytes > info.model_max_bytes:
        return (f"model is {model_bytes:,} B but board {info.board_id} ({info.board_kind}) has "
                f"{info.model_max_bytes:,} B of flash for models")
    if ram_bytes > info.arena_max_bytes:
        return (f"model needs a {ram_bytes:,} B tensor arena (simulator estimate) but board "
                f"{info.board_id} ({info.board_kind}) can give at most {info.arena_max_bytes:,} B of RAM")
    return None


PROTOCOL_FIRMWARE = "mvpfarm-protocol"
VENDOR_FIRMWARE = "mltk-profiler"
FIRMWARES = (PROTOCOL_FIRMWARE, VENDOR_FIRMWARE)


class AgentBase:
    """What every agent keeps whatever its board's firmware: the port lock, the board's state and
    its faults (consecutive faults lead to quarantine with the reason)."""
    firmware_kind = ""

    def __init__(self, port: str, config: AgentConfig | None = None):
        self.port = port
        self.config = config or AgentConfig()
        self.host = socket.gethostname()
        self.state = IDLE
        self.reason: str | None = None
        self.faults: list[str] = []
        self.consecutive_faults = 0
        self.jobs_measured = 0
        self._lock = PortLock(port, self.config.lock_dir, owner=f"mvpfarm agent pid {os.getpid()} "
                                                                 f"on {self.host}")
        self._lock.acquire()            # PortBusy propagates: someone else owns this board

    def _quarantine(self, reason: str) -> None:
        self.state, self.reason = QUARANTINED, reason

    def _note_fault(self, reason: str) -> None:
        self.faults.append(reason)
        self.faults = self.faults[-20:]
        self.consecutive_faults += 1
        self.reason = reason
        if self.consecutive_faults >= self.config.max_faults:
            self._quarantine(f"{self.consecutive_faults} consecutive faults, last: {reason}")

    def _identity(self) -> dict:
        """The board-specific fields of `status()`."""
        raise NotImplementedError

    def status(self) -> BoardStatus:
        try:
            import ray
            node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except Exception:   # status must answer whatever state Ray is in
            node_id = None
        return BoardStatus(port=self.port, host=self.host, state=self.state, reason=self.reason,
                           jobs_measured=self.jobs_measured, faults=list(self.faults), node_id=node_id,
                           firmware_kind=self.firmware_kind, **self._identity())

    def _measured(self, job_id: str, record: ProfileRecord) -> JobOutcome:
        """A job that measured: the fault streak ends and the board is free again."""
        self.consecutive_faults = 0
        self.jobs_measured += 1
        self.state = IDLE
        return self._outcome(job_id, MEASURED, record=record)

    def _admit(self, job_id: str, tflite_bytes: bytes, name: str) -> tuple[ProfileRecord | None, JobOutcome | None]:
        """Before a job touches the board: the simulator's profile of the model (its RAM decides whether
        the board can hold it), or the outcome that ends the job (a quarantined board, a broken model)."""
        if self.state == QUARANTINED:
            return None, self._outcome(job_id, RETRY_ELSEWHERE, reason=f"board quarantined: {self.reason}")
        try:
            return profile_model(tflite_bytes, accelerator="mvp", name=name), None
        except ModelError as e:
            return None, self._outcome(job_id, FAILED, reason=f"not a usable model: {e}")

    def _job_fault(self, job_id: str, e: Exception) -> str:
        """A fault during a job's attempt, counted (enough in a row quarantine the board)."""
        fault = f"job {job_id}: {e}"
        self._note_fault(fault)
        return fault

    def _gave_up(self, job_id: str, last_fault: str | None) -> JobOutcome:
        """Every attempt faulted: the job goes to another board; this one is free unless quarantined."""
        if self.state != QUARANTINED:
            self.state = IDLE
        return self._outcome(job_id, RETRY_ELSEWHERE, reason=last_fault)

    def _outcome(self, job_id: str, status: str, record: ProfileRecord | None = None,
                 reason: str | None = None) -> JobOutcome:
        st = self.status()
        return JobOutcome(job_id, status, st.board_id, record, reason, st)

    def close(self) -> None:
        self._lock.release()


class BoardAgent(AgentBase):
    """The agent of a board running mvpfarm's protocol firmware (docs/protocol.md)."""
    firmware_kind = PROTOCOL_FIRMWARE

    def __init__(self, port: str, config: AgentConfig | None = None):
        super().__init__(port, config)
        self.info: P.Info | None = None
        self._transport: Transport | None = None
        try:
            self._connect()
        except _Fault as e:
            self._quarantine(f"handshake failed: {e}")
        except PortGone as e:
            self._quarantine(f"port gone (unplugged?): {e}")

    # -- link ------------------------------------------------------------------------------------

    def _open(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(self.port, self.config.baudrate,
                                        exclusive="://" not in self.port)
        return self._transport

    def _exchange(self, msg: P.Message, expect: type[P.Message], timeout_s: float | None = None,
                  retries: int | None = None, boot_ok: bool = False) -> P.Message:
        """One request with retries on link faults. Reboots, errors and a vanished port are not
        retried here: they change the board's state."""
        timeout_s = timeout_s or self.config.exchange_timeout_s
        retries = self.config.retries if retries is None else retries
        last = None
        for _ in range(retries + 1):
            t = self._open()
            try:
                return t.exchange(msg, timeout_s, expect, boot_ok)
            except BoardRebooted:
                raise
            except BoardError as e:
                if e.code not in (P.ErrorCode.BAD_FRAME, P.ErrorCode.BUSY, P.ErrorCode.CHUNK_CRC):
                    raise
                last = e
            except (LinkTimeout, P.ProtocolError) as e:
                last = e
            t.discard_input()
        raise _Fault(str(last))

    def _connect(self) -> P.Info:
        try:
            info = self._exchange(P.Hello(), P.Info, boot_ok=True)
        except (TransportError, P.ProtocolError) as e:
            if isinstance(e, PortGone):
                raise
            raise _Fault(str(e)) from None
        if info.protocol_version != P.PROTOCOL_VERSION:
            raise _Fault(f"board speaks protocol {info.protocol_version}, host {P.PROTOCOL_VERSION}")
        if self.info is not None and info.board_id != self.info.board_id:
            raise _Fault(f"a different board ({info.board_id}) answers on {self.port}")
        self.info = info
        return info

    def _reset(self) -> None:
        """RESET, wait for BOOT, handshake again. Raises _Fault if the board does not come back."""
        t = self._open()
        t.discard_input()
        try:
            t.write(P.to_frame(P.Reset(), 0xFF).encode())
            boot = t.wait_for_boot(self.config.boot_timeout_s)
        except PortGone:
            raise
        if boot is None:
            raise _Fault(f"no BOOT within {self.config.boot_timeout_s:g} s after RESET")
        self._connect()

    # -- state -----------------------------------------------------------------------------------

    def _identity(self) -> dict:
        t, info = self._transport, self.info
        return dict(
            board_id=info.board_id if info else f"? ({self.port})", kind=info.board_kind if info else "?",
            firmware=info.firmware_version if info else "", arena_max_bytes=info.arena_max_bytes if info else 0,
            model_max_bytes=info.model_max_bytes if info else 0,
            garbage_bytes=t.stats.garbage_bytes if t else 0,
            crc_errors=t.stats.crc_errors if t else 0, timeouts=t.stats.timeouts if t else 0)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        super().close()

    # -- jobs ------------------------------------------------------------------------------------

    def run_job(self, job_id: str, tflite_bytes: bytes, name: str = "model", warmup: int | None = None,
                repeats: int | None = None) -> JobOutcome:
        """Measures one model; `warmup` and `repeats` default to the agent's configuration."""
        warmup = self.config.warmup if warmup is None else warmup
        repeats = self.config.repeats if repeats is None else repeats
        board_id = self.info.board_id if self.info else self.port
        reference, ended = self._admit(job_id, tflite_bytes, name)
        if ended:
            return ended
        problem = fit_problem(len(tflite_bytes), reference.summary.ram_bytes, self.info)
        if problem:
            return self._outcome(job_id, FAILED, reason=f"refused before upload: {problem}")
        self.state = BUSY
        last_fault = None
        try:
            for attempt in range(self.config.attempts_per_job):
                if attempt:
                    try:
                        self._reset()
                    except _Fault as e:
                        # a board that ignores RESET is hung (or its firmware is gone)
                        self._quarantine(f"no recovery by RESET ({e}) after: {last_fault}")
                        break
                try:
                    record = self._measure(tflite_bytes, reference, warmup, repeats)
                except _Refused as e:
                    self.state = IDLE
                    return self._outcome(job_id, FAILED, reason=f"refused by board {board_id}: {e}")
                except (_Fault, BoardRebooted, BoardError, P.ProtocolError, LinkTimeout) as e:
                    last_fault = self._job_fault(job_id, e)
                    if self.state == QUARANTINED:
                        break
                    continue
                return self._measured(job_id, record)
        except PortGone as e:
            self._quarantine(f"port gone (unplugged?): {e}")
            return self._outcome(job_id, RETRY_ELSEWHERE, reason=self.reason)
        return self._gave_up(job_id, last_fault)

    def _measure(self, data: bytes, reference: ProfileRecord, warmup: int, repeats: int) -> ProfileRecord:
        cfg, info = self.config, self.info
        self._open().discard_input()
        # upload: BEGIN, checksummed chunks, END (the board checks the sha256 and loads the model)
        try:
            self._exchange(P.UploadBegin(len(data), hashlib.sha256(data).digest()), P.Ack)
            chunk = info.chunk_max_bytes
            for offset in range(0, len(data), chunk):
                ack = self._exchange(P.UploadChunk(offset, data[offset:offset + chunk]), P.Ack)
                if ack.value != min(offset + chunk, len(data)):
                    raise _Fault(f"board acknowledged offset {ack.value} after chunk at {offset}")
            loaded = self._exchange(P.UploadEnd(), P.ModelOk)
        except BoardError as e:
            if e.code in P.ErrorCode.MODEL_FATAL:
                raise _Refused(e.error.describe()) from None
            raise
        n_layers = len(reference.layers)
        if loaded.n_layers != n_layers:
            raise _Fault(f"board loaded {loaded.n_layers} layers, the model has {n_layers}")
        try:
            done = self._exchange(P.Profile(warmup, repeats), P.ProfileDone,
                                  timeout_s=cfg.profile_timeout_s, retries=1)
        except BoardError as e:
            if e.code in P.ErrorCode.MODEL_FATAL:
                raise _Refused(e.error.describe()) from None
            raise
        if done.n_layers != n_layers or done.repeats != repeats:
            raise _Fault(f"PROFILE_DONE reports {done.n_layers} layers x {done.repeats} repeats, "
                         f"expected {n_layers} x {repeats}")
        measured = []
        for i, ref in enumerate(reference.layers):
            layer = self._exchange(P.ReadLayer(i), P.Layer)
            if layer.index != i or len(layer.cpu_cycles) != repeats:
                raise _Fault(f"LAYER reply for layer {layer.index} with {len(layer.cpu_cycles)} "
                             f"repeats, asked for layer {i} x {repeats}")
            expected_op = _OPCODES.get(ref.opcode)
            if expected_op is not None and layer.opcode != expected_op:
                raise _Fault(f"layer {i}: board ran opcode {layer.opcode}, the model has "
                             f"{ref.opcode} ({expected_op})")
            measured.append(MeasuredLayer(
                cpu_cycles=median_int(layer.cpu_cycles), accelerator_cycles=median_int(layer.mvp_cycles),
                on_accelerator=bool(layer.flags & P.LAYER_ON_MVP),
                reason=(layer.reason or "refused by the MVP kernel") if layer.flags & P.LAYER_FELL_BACK else None))
        return device_record(reference, measured, done.arena_used_bytes, info.clock_hz, info.board_id,
                             firmware=PROTOCOL_FIRMWARE)


def probe(port: str, timeout_s: float = 2.0, lock_dir: str | None = None) -> P.Info:
    """Handshake with the board on `port` (locking it meanwhile). Raises PortBusy, PortGone,
    or TransportError / ProtocolError with the reason."""
    with PortLock(port, lock_dir, owner=f"mvpfarm probe pid {os.getpid()}"):
        with Transport(port, exclusive="://" not in port) as t:
            t.discard_input()
            info = t.exchange(P.Hello(), timeout_s, P.Info, boot_ok=True)
            if info.protocol_version != P.PROTOCOL_VERSION:
                raise P.ProtocolError(f"board speaks protocol {info.protocol_version}, "
                                      f"host {P.PROTOCOL_VERSION}")
            return info


__all__ = ["AgentConfig", "AgentBase", "BoardAgent", "FIRMWARES", "PROTOCOL_FIRMWARE", "VENDOR_FIRMWARE", "BoardStatus", "JobOutcome", "PortBusy", "probe", "fit_problem",
           "IDLE", "BUSY", "QUARANTINED", "MEASURED", "FAILED", "RETRY_ELSEWHERE"]
