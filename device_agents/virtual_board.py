"""The virtual board: a firmware emulator behind a real pseudo-terminal.

`VirtualBoard.start()` opens a pty and serves it from a thread; the agent opens the pty's slave
path with real pyserial, exactly as it would open /dev/ttyACM0. The firmware (`Firmware`) speaks
docs/protocol.md byte for byte; the simulator reads the uploaded model and the silicon model
(`silicon_model.py`) supplies what the board would measure. `Faults` make it misbehave like real
hardware does: hang, garbage bytes, dropped bytes, CRC errors, reboot mid-job, unplug (the pty
closes) and slow replies. In vendor mode it instead prints the log of Silicon Labs' model-profiler
firmware whenever a model is flashed.

The output tensor comes from the simulator's emulator (`simulator.emulator`), run on the
all-zero input that the firmware profiles with, so READ_OUTPUT returns what TFLite Micro with the
MVP kernels would compute. A model the emulator cannot run gets no output (output_bytes = 0):
the virtual board never invents outputs.
"""
from __future__ import annotations

import hashlib
import os
import random
import select
import threading
import time
import tty
from dataclasses import dataclass, field, fields

import numpy as np

from device_agents import protocol as P
from device_agents.silicon_model import ModelTruth, SiliconModel, SiliconParams
from simulator import hardware
from simulator.errors import ModelError

try:  # TFLite builtin operator codes for LAYER.opcode
    from tflite.BuiltinOperator import BuiltinOperator as _Builtin
    OPCODES = {k.lower(): v for k, v in vars(_Builtin).items() if not k.startswith("_")}
except ImportError:  # pragma: no cover - tflite is a dependency
    OPCODES = {}

FIRMWARE_VERSION = "mvpfarm-fw 1.0"
KB = 1024
_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32}


def _tensor_bytes(t) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    return n * np.dtype(_DTYPES.get(t.dtype, np.int8)).itemsize


@dataclass(frozen=True)
class BoardKind:
    """A board as data: the chip's memories and what the firmware leaves for models."""
    name: str
    clock_hz: int = hardware.CLOCK_HZ
    ram_bytes: int = hardware.RAM_BYTES
    flash_bytes: int = hardware.FLASH_BYTES
    firmware_ram_bytes: int = 16 * KB       # stacks, heap and buffers of the firmware itself
    firmware_flash_bytes: int = 256 * KB    # the firmware image

    @property
    def arena_max_bytes(self) -> int:
        return self.ram_bytes - self.firmware_ram_bytes

    @property
    def model_max_bytes(self) -> int:
        return self.flash_bytes - self.firmware_flash_bytes


BOARD_KINDS = {
    "brd2601b": BoardKind("brd2601b"),      # EFR32xG24 Dev Kit
    "brd4186c": BoardKind("brd4186c"),      # EFR32xG24 radio board (+10 dBm) on a wireless kit
}


@dataclass
class Faults:
    """How a virtual board misbehaves. Probabilities are per reply (or per PROFILE for reboot)."""
    hang: int | None = None         # stops answering for good at PROFILE number `hang` (0 = first)
    unplug: int | None = None       # the pty closes at PROFILE number `unplug`
    reboot: float = 0.0             # probability that a PROFILE reboots the board mid-inference
    garbage: float = 0.0            # probability of a burst of random bytes before a reply
    drop: float = 0.0               # probability that a reply loses one byte
    crc: float = 0.0                # probability that a reply has one bit flipped
    slow_s: float = 0.0             # delay before every reply

    DEFAULTS = {"hang": 0, "unplug": 0, "reboot": 0.5, "garbage": 0.3, "drop": 0.1, "crc": 0.1,
                "slow": 0.2}

    @classmethod
    def parse(cls, specs: list[str]) -> "Faults":
        """From CLI specs "KIND[:VALUE]", e.g. ["hang"], ["garbage:0.5", "slow:0.1"]."""
        f = cls()
        for spec in specs:
            kind, _, value = spec.partition(":")
            if kind not in cls.DEFAULTS:
                raise ValueError(f"unknown fault {kind!r}: choose from {', '.join(cls.DEFAULTS)}")
            try:
                v = float(value) if value else cls.DEFAULTS[kind]
            except ValueError:
                raise ValueError(f"fault {spec!r}: {value!r} is not a number") from None
            if kind in ("hang", "unplug"):
                setattr(f, kind, int(v))
            elif kind == "slow":
                f.slow_s = v
            else:
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"fault {spec!r}: probability must be in 0..1")
                setattr(f, kind, v)
        return f

    @classmethod
    def parse_per_board(cls, specs: list[str], count: int) -> list["Faults"]:
        """From specs "[INDEX=]KIND[:VALUE]" for `count` boards: with INDEX the fault applies to
        board INDEX only, without it to every board (`boards emulate --fault`, sweep files)."""
        per_board: list[list[str]] = [[] for _ in range(count)]
        for spec in specs:
            index, sep, rest = spec.partition("=")
            if sep:
                if not index.isdigit() or int(index) >= count:
                    raise ValueError(f"fault {spec!r}: board index must be 0..{count - 1}")
                per_board[int(index)].append(rest)
            else:
                for lst in per_board:
                    lst.append(spec)
        return [cls.parse(lst) for lst in per_board]

    def describe(self) -> str:
        on = [f"{x.name}={getattr(self, x.name)}" for x in fields(self)
              if getattr(self, x.name) != x.default]
        return ", ".join(on) or "none"


@dataclass
class BoardStats:
    """What happened on the board side, for tests to check against the host's view."""
    requests: int = 0
    uploads_begun: int = 0
    models_loaded: int = 0
    profiles_started: int = 0
    profiles_completed: int = 0
    reboots: int = 0
    replies_corrupted: int = 0
    garbage_bytes_sent: int = 0
    events: list[str] = field(default_factory=list)


class Reboot(Exception):
    """Raised inside the firmware to emulate a reset mid-job."""


class Firmware:
    """The board's firmware as a pure state machine: a request frame in, reply frames out.
    I/O and faults live in `VirtualBoard`."""

    def __init__(self, kind: BoardKind, board_id: str, silicon: SiliconModel, seed: int,
                 time_scale: float = 0.0, arena_max_bytes: int | None = None,
                 model_max_bytes: int | None = None):
        self.kind, self.board_id, self.silicon = kind, board_id, silicon
        self.rng = np.random.default_rng(seed)
        self.time_scale = time_scale
        self.arena_max_bytes = arena_max_bytes if arena_max_bytes is not None else kind.arena_max_bytes
        self.model_max_bytes = model_max_bytes if model_max_bytes is not None else kind.model_max_bytes
        self.chunk_max_bytes = 1024
        self.sleep = time.sleep            # replaced by the board so that a sleep can be interrupted
        self.stats = BoardStats()
        self.on_profile = None             # hook: called with the PROFILE count before running it
        self.boot()

    def info(self) -> P.Info:
        return P.Info(P.PROTOCOL_VERSION, self.kind.name, FIRMWARE_VERSION, self.board_id,
                      self.kind.clock_hz, self.kind.ram_bytes, self.kind.flash_bytes,
                      self.arena_max_bytes, self.model_max_bytes, self.chunk_max_bytes, 1)

    def boot(self) -> None:
        """Power-on or reset: everything uploaded is lost; the host uploads the model again."""
        self.upload: bytearray | None = None
        self.upload_size = 0
        self.upload_sha = b""
        self.model: tuple[bytes, ModelTruth, list[int]] | None = None
        self.output_bytes = 0              # size of the model's output tensor
        self.loaded = False
        self.result: tuple[P.ProfileDone, list[P.Layer]] | None = None
        # the last PROFILE's output tensor, computed by the emulator beside the board's own work:
        # a cold JIT compile must not hold up the PROFILE reply past the agent's timeout
        self._inference: tuple[threading.Thread, dict] | None = None

    def handle(self, frame: P.Frame) -> list[P.Frame]:
        self.stats.requests += 1
        try:
            msg = P.decode_message(frame)
        except P.ProtocolError as e:
            code = P.ErrorCode.UNKNOWN_TYPE if frame.type not in P.MESSAGES else P.ErrorCode.BAD_PAYLOAD
            if frame.type == P.MsgType.UPLOAD_CHUNK and "CRC" in str(e):
                code = P.ErrorCode.CHUNK_CRC
            return [self._error(frame.seq, code, str(e))]
        handler = getattr(self, f"_on_{type(msg).__name__.lower()}", None)
        if handler is None or frame.type >= 0x80:
            return [self._error(frame.seq, P.ErrorCode.UNKNOWN_TYPE, f"not a request: 0x{frame.type:02x}")]
        reply = handler(msg)
        return [P.to_frame(reply, frame.seq)]

    def _error(self, seq: int, code: int, message: str, detail: int = 0) -> P.Frame:
        return P.to_frame(P.Error(code, detail, message), seq)

    @staticmethod
    def _err(code: int, message: str, detail: int = 0) -> P.Error:
        return P.Error(code, detail, message)

    def _on_hello(self, msg: P.Hello) -> P.Message:
        return self.info()

    def _on_reset(self, msg: P.Reset) -> P.Message:
        raise Reboot(P.BootCause.RESET_COMMAND)

    def _on_uploadbegin(self, msg: P.UploadBegin) -> P.Message:
        if msg.model_bytes > self.model_max_bytes:
            return self._err(P.ErrorCode.MODEL_TOO_LARGE,
                             f"model of {msg.model_bytes} B exceeds the {self.model_max_bytes} B of "
                             f"flash for models", self.model_max_bytes)
        self.stats.uploads_begun += 1
        self.upload, self.upload_size, self.upload_sha = bytearray(), msg.model_bytes, msg.sha256
        self.loaded = False
        self.model = None
        self.result, self._inference = None, None  # results last until the next upload (protocol.md)
        return P.Ack(0)

    def _on_uploadchunk(self, msg: P.UploadChunk) -> P.Message:
        if self.upload is None:
            return self._err(P.ErrorCode.BAD_STATE, "UPLOAD_CHUNK without UPLOAD_BEGIN")
        if len(msg.data) > self.chunk_max_bytes or not msg.data:
            return self._err(P.ErrorCode.BAD_PAYLOAD, f"chunk of {len(msg.data)} B (1..{self.chunk_max_bytes})")
        have = len(self.upload)
        if msg.offset == have and have + len(msg.data) <= self.upload_size:
            self.upload += msg.data
        elif not (msg.offset + len(msg.data) == have and self.upload[msg.offset:] == msg.data):
            # anything but the next chunk or a repeat of the last one (a retried exchange)
            return self._err(P.ErrorCode.CHUNK_OFFSET, f"expected offset {have}", have)
        return P.Ack(len(self.upload))

    def _on_uploadend(self, msg: P.UploadEnd) -> P.Message:
        if self.upload is None:
            if self.model is not None and self.loaded:     # a retried UPLOAD_END
                return self._model_ok()
            return self._err(P.ErrorCode.BAD_STATE, "UPLOAD_END without UPLOAD_BEGIN")
        data = bytes(self.upload)
        if len(data) != self.upload_size:
            return self._err(P.ErrorCode.BAD_STATE, f"upload incomplete: {len(data)} of {self.upload_size} B",
                             len(data))
        self.upload = None
        if hashlib.sha256(data).digest() != self.upload_sha:
            return self._err(P.ErrorCode.SHA256_MISMATCH, "sha256 of the received model differs")
        try:
            profile = self.silicon.profile(data, "uploaded")
        except ModelError as e:
            return self._err(P.ErrorCode.MODEL_INVALID, str(e)[:200])
        truth = self.silicon.truth(profile)
        if truth.arena_bytes > self.arena_max_bytes:
            return self._err(P.ErrorCode.ARENA_TOO_SMALL,
                             f"model needs a {truth.arena_bytes} B arena, {self.arena_max_bytes} B available",
                             truth.arena_bytes)
        opcodes = [OPCODES.get(L.opcode, 0xFFFF) for L in profile.layers]
        self.model = (data, truth, opcodes)
        self.output_bytes = _tensor_bytes(profile.model.outputs[0]) if profile.model.outputs else 0
        self.loaded = True
        self.stats.models_loaded += 1
        return self._model_ok()

    def _model_ok(self) -> P.ModelOk:
        _, truth, _ = self.model
        return P.ModelOk(truth.arena_bytes, len(truth.layers), self.output_bytes)

    def _on_profile(self, msg: P.Profile) -> P.Message:
        if self.model is None or not self.loaded:
            return self._err(P.ErrorCode.BAD_STATE, "no model loaded")
        n = self.stats.profiles_started
        self.stats.profiles_started += 1
        self.result, self._inference = None, None  # a new PROFILE replaces the last results
        data, truth, opcodes = self.model
        # The emulator runs while the board "computes", as the real output is ready with PROFILE_DONE;
        # READ_OUTPUT waits for whatever it has left.
        box: dict = {}
        accelerator = "mvp" if msg.use_accelerator else "none"
        thread = threading.Thread(target=lambda: box.update(out=self._infer(data, accelerator)), daemon=True)
        thread.start()
        self._inference = (thread, box)
        run_s = SiliconModel.latency_s(truth, self.kind.clock_hz) * (msg.warmup + msg.repeats)
        if self.on_profile is not None:
            self.on_profile(n, run_s * self.time_scale)      # faults strike here, mid-inference
        self.sleep(run_s * self.time_scale)
        measured = self.silicon.measure(truth, msg.repeats, msg.warmup, self.rng)
        layers = []
        for i, (L, op, (cpu, acc)) in enumerate(zip(truth.layers, opcodes, measured)):
            on_mvp = L.on_accelerator and msg.use_accelerator
            flags = (P.LAYER_ON_MVP if on_mvp else 0) | (P.LAYER_FELL_BACK if L.reason else 0)
            layers.append(P.Layer(i, op, flags, cpu, acc if on_mvp else [0] * len(acc), L.reason or ""))
        out_len = self.output_bytes if thread.is_alive() else len(box.get("out") or b"")
        done = P.ProfileDone(len(layers), msg.repeats, truth.arena_bytes, out_len)
        self.result = (done, layers)
        self.stats.profiles_completed += 1
        return done

    def _on_readlayer(self, msg: P.ReadLayer) -> P.Message:
        if self.result is None:
            return self._err(P.ErrorCode.BAD_STATE, "no results: PROFILE first")
        layers = self.result[1]
        if msg.index >= len(layers):
            return self._err(P.ErrorCode.BAD_PAYLOAD, f"layer {msg.index} of {len(layers)}")
        return layers[msg.index]

    @property
    def output(self) -> bytes | None:
        """The last PROFILE's output tensor (waits for the emulator if it is still running)."""
        if self._inference is None:
            return None
        thread, box = self._inference
        thread.join()
        return box.get("out")

    def _infer(self, data: bytes, accelerator: str) -> bytes | None:
        """The output tensor of one inference on an all-zero input (the vendor's profiler zeroes
        the input too), as the board's little-endian bytes; None if the emulator cannot run the
        model. Every run of a profile sees the same input, so one emulated run stands for all."""
        from simulator.emulator import compile_model
        from simulator.tflite_reader import read_model
        try:
            compiled = compile_model(read_model(data), accelerator)
            inputs = [np.zeros(compiled.graph.tensors[i].shape, _DTYPES.get(compiled.graph.tensors[i].dtype,
                                                                             np.int8))
                      for i in compiled.graph.inputs]
            out = compiled.run(inputs)[0]
        except Exception as e:   # noqa: BLE001 - an emulator gap or bug must not take the board down
            self.stats.events.append(f"no output tensor: {type(e).__name__}: {e}")
            return None
        return np.ascontiguousarray(out).astype(out.dtype.newbyteorder("<"), copy=False).tobytes()

    def _on_readoutput(self, msg: P.ReadOutput) -> P.Message:
        if self.result is None:
            return self._err(P.ErrorCode.BAD_STATE, "no results: PROFILE first")
        output = self.output
        if output is None:
            return self._err(P.ErrorCode.BAD_STATE, "no output tensor for this model")
        if msg.offset > len(output):
            return self._err(P.ErrorCode.BAD_PAYLOAD, f"offset {msg.offset} past the "
                                                      f"{len(output)}-byte output", len(output))
        n = min(msg.max_bytes, P.MAX_PAYLOAD_BYTES - P.Output.LAYOUT.size)
        return P.Output(msg.offset, output[msg.offset:msg.offset + n])


class _Unplugged(Exception):
    pass


class VirtualBoard:
    """One virtual board on its own pty, served by a daemon thread.

    mode "protocol" speaks docs/protocol.md; mode "vendor" prints the vendor profiler's log for the
    model given to `flash_model` (the stand-in for Simplicity Commander writing it to flash)."""

    def __init__(self, kind: str = "brd2601b", board_id: str | None = None, seed: int = 0,
                 faults: Faults | None = None, mode: str = "protocol", time_scale: float = 0.0,
                 arena_max_bytes: int | None = None, model_max_bytes: int | None = None,
                 silicon: SiliconModel | None = None):
        if kind not in BOARD_KINDS:
            raise ValueError(f"unknown board kind {kind!r}: choose from {', '.join(BOARD_KINDS)}")
        if mode not in ("protocol", "vendor"):
            raise ValueError(f"mode must be 'protocol' or 'vendor', not {mode!r}")
        self.kind = BOARD_KINDS[kind]
        self.board_id = board_id or f"vb-{kind}-{seed}"
        self.faults = faults or Faults()
        self.mode = mode
        self.silicon = silicon or SiliconModel(SiliconParams())
        self.firmware = Firmware(self.kind, self.board_id, self.silicon, seed, time_scale,
                                 arena_max_bytes, model_max_bytes)
        self.firmware.sleep = self._sleep
        self.firmware.on_profile = self._on_profile
        self._fault_rng = random.Random(f"faults:{seed}:{self.board_id}")
        self._master = self._slave = -1
        self.port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._hung = False
        self.unplugged = False
        self._flashed: list[bytes] = []
        # tests may rewrite replies: tamper(request number, reply bytes) -> bytes actually sent
        self.tamper = None

    @property
    def stats(self) -> BoardStats:
        return self.firmware.stats

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "VirtualBoard":
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)    # no echo or line editing before pyserial configures the port
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, name=f"vboard-{self.board_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def unplug(self) -> None:
        """The cable is pulled: the pty closes and the agent's port errors out."""
        self.unplugged = True
        self.stats.events.append("unplugged")
        self._stop.set()
        self._close()

    def _close(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = -1

    def __enter__(self) -> "VirtualBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def flash_model(self, tflite_bytes: bytes) -> None:
        """Vendor mode: the model is written to flash and the board reset; it then prints its log."""
        if self.mode != "vendor":
            raise RuntimeError("flash_model is for vendor mode; protocol boards take UPLOAD_*")
        with self._lock:
            self._flashed.append(bytes(tflite_bytes))

    # -- the serving thread ----------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(max(0.0, seconds)):
            raise _Unplugged()

    def _on_profile(self, n: int, run_s: float) -> None:
        f = self.faults
        if f.unplug is not None and n >= f.unplug:
            self._sleep(run_s / 2)
            self.unplug()
            raise _Unplugged()
        if f.hang is not None and n >= f.hang:
            self._hung = True
            self.stats.events.append(f"hung at PROFILE {n}")
            raise _Hung()
        if f.reboot and self._fault_rng.random() < f.reboot:
            self._sleep(run_s / 2)
            raise Reboot(P.BootCause.WATCHDOG)

    def _write(self, data: bytes) -> None:
        with self._lock:
            fd = self._master
        if fd < 0:
            raise _Unplugged()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                self._sleep(0.01)
                continue
            except OSError:
                raise _Unplugged() from None
            view = view[n:]

    def _send_reply(self, raw: bytes) -> None:
        f, rng = self.faults, self._fault_rng
        if self.tamper is not None:
            raw = self.tamper(self.stats.requests, raw)
        if f.slow_s:
            self._sleep(f.slow_s)
        if f.garbage and rng.random() < f.garbage:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 64)))
            if rng.random() < 0.5:
                junk = junk + P.SYNC + junk[:5]   # a false sync too, to exercise resynchronisation
            self.stats.garbage_bytes_sent += len(junk)
            raw = junk + raw
        if f.drop and rng.random() < f.drop:
            i = rng.randrange(len(raw))
            raw = raw[:i] + raw[i + 1:]
            self.stats.replies_corrupted += 1
        if f.crc and rng.random() < f.crc:
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1:]
            self.stats.replies_corrupted += 1
        self._write(raw)

    def _reboot(self, cause: int) -> None:
        self.stats.reboots += 1
        self.stats.events.append(f"reboot ({P.BootCause.NAMES.get(cause, cause)})")
        self.firmware.boot()
        self._write(P.to_frame(P.Boot(cause), P.BOOT_SEQ).encode())

    def _serve(self) -> None:
        decoder = P.FrameDecoder()
        try:
            if self.mode == "protocol":
                self._write(P.to_frame(P.Boot(P.BootCause.POWER_ON), P.BOOT_SEQ).encode())
            while not self._stop.is_set():
                if self.mode == "vendor":
                    self._vendor_step()
                with self._lock:
                    fd = self._master
                if fd < 0:
                    return
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    # EIO: nobody has the slave open right now; keep serving
                    self._sleep(0.02)
                    continue
                if self.mode == "vendor" or self._hung:
                    continue                      # a hung board reads nothing, answers nothing
                for frame in decoder.feed(data):
                    try:
                        replies = self.firmware.handle(frame)
                    except Reboot as r:
                        decoder.reset()
                        self._reboot(r.args[0])
                        continue
                    except _Hung:
                        break
                    for reply in replies:
                        self._send_reply(reply.encode())
        except _Unplugged:
            return

    def _vendor_step(self) -> None:
        from device_agents import vendor_log
        with self._lock:
            pending, self._flashed = self._flashed, []
        for data in pending:
            profile = self.silicon.profile(data, "flashed")
            truth = self.silicon.truth(profile)
            measured = self.silicon.measure(truth, 1, 0, self.firmware.rng)   # one run, zeroed input
            rows = []
            for L, T, (cpu, acc) in zip(profile.layers, truth.layers, measured):
                rows.append(_replace_layer(L, T, cpu[0], acc[0], self.kind.clock_hz))
            profile.layers = rows
            profile.summary.ram_bytes = truth.arena_bytes
            profile.target.clock_hz = self.kind.clock_hz
            self.stats.profiles_completed += 1
            self._write(vendor_log.format_log(profile).encode())


class _Hung(Exception):
    pass


def _replace_layer(layer, truth, cpu: int, acc: int, clock_hz: int):
    from dataclasses import replace
    return replace(layer, cpu_cycles=cpu, accelerator_cycles=acc, supported=truth.on_accelerator,
                   reason=truth.reason, latency_s=max(cpu, acc) / clock_hz)


def emulate(count: int, kind: str = "brd2601b", faults: list[Faults] | None = None, seed: int = 0,
            time_scale: float = 1.0, mode: str = "protocol") -> list[VirtualBoard]:
    """Starts `count` virtual boards; `faults[i]` (if given) applies to board i."""
    boards = []
    for i in range(count):
        f = faults[i] if faults and i < len(faults) else Faults()
        boards.append(VirtualBoard(kind, board_id=f"vb-{os.getpid() % 100000}-{i}", seed=seed + i,
                                   faults=f, mode=mode, time_scale=time_scale).start())
    return boards


class VirtualBoardHost:
    """Virtual boards plugged into whichever machine (or Ray node) this object lives on; wrap it
    in a Ray actor pinned to a node to give that node boards, as a USB hub would."""

    def __init__(self, count: int, prefix: str, kind: str = "brd2601b", seed: int = 0,
                 time_scale: float = 0.0, faults: list[Faults] | None = None):
        faults = faults or []
        self.boards = [VirtualBoard(kind, f"{prefix}-{i}", seed=seed + i, time_scale=time_scale,
                                    faults=faults[i] if i < len(faults) else None).start()
                       for i in range(count)]

    def ports(self) -> tuple[str | None, list[tuple[str, str]]]:
        """(this Ray node's id, or None outside Ray; [(board id, port)])."""
        try:
            import ray
            node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except ImportError:
            node_id = None
        return node_id, [(b.board_id, b.port) for b in self.boards]

    def profiles_completed(self) -> dict[str, int]:
        return {b.board_id: b.stats.profiles_completed for b in self.boards}

    def stats(self) -> dict[str, BoardStats]:
        return {b.board_id: b.stats for b in self.boards}

    def stop(self) -> None:
        for b in self.boards:
            b.stop()
