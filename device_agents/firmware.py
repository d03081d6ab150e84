"""The board's firmware as the virtual board runs it: docs/protocol.md as a pure state machine,
a request frame in, reply frames out (I/O and faults live in `virtual_board.py`).

The simulator reads the uploaded model and the silicon model (`silicon_model.py`) supplies what
the board would measure. The output tensor comes from the simulator's emulator, run in a process
of its own (`emulator_process.py`) on the all-zero input that the firmware profiles with, so
READ_OUTPUT returns what TFLite Micro with the MVP kernels would compute. A model the emulator
cannot run gets no output (output_bytes = 0): the virtual board never invents outputs.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from device_agents import protocol as P
from device_agents.board_kinds import BoardKind
from device_agents.emulator_process import EmulatorFailed, output_tensor
from device_agents.silicon_model import ModelTruth, SiliconModel
from simulator.constant_folding import NP_DTYPES
from simulator.errors import ModelError

try:  # TFLite builtin operator codes for LAYER.opcode
    from tflite.BuiltinOperator import BuiltinOperator as _Builtin
    OPCODES = {k.lower(): v for k, v in vars(_Builtin).items() if not k.startswith("_")}
except ImportError:  # pragma: no cover - tflite is a dependency
    OPCODES = {}

FIRMWARE_VERSION = "mvpfarm-fw 1.0"


def _tensor_bytes(t) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    return n * np.dtype(NP_DTYPES.get(t.dtype, np.int8)).itemsize


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
        # the last PROFILE's output tensor, asked of the emulator's process while the board works:
        # that process's start-up must not hold up the PROFILE reply past the agent's timeout
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
        try:
            return output_tensor(data, accelerator)
        except EmulatorFailed as e:   # an emulator gap or bug must not take the board down
            self.stats.events.append(f"no output tensor: {e}")
            return None

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
