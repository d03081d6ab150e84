"""The mvpfarm board protocol: framing and the fixed binary layout of every message.

`docs/protocol.md` is the specification a firmware author implements; this module is its host-side
(and virtual-board-side) encoding, kept deliberately small: one frame codec, one streaming decoder
that resynchronises after garbage, and one dataclass per message with `encode()`/`decode()`.
Nothing here does I/O. Every decode error is a `ProtocolError` (never another exception), because
the bytes come from a board that may be broken.
"""
from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

PROTOCOL_VERSION = 1
SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sBBHH")        # sync, type, seq, payload length, header CRC-16
HEADER_BYTES = HEADER.size               # 8
CRC_BYTES = 4
MAX_PAYLOAD_BYTES = 4096
BOOT_SEQ = 0                             # unsolicited frames carry seq 0; requests use 1..255


class ProtocolError(ValueError):
    """Bytes that are not a valid frame or message: the board (or the link) is misbehaving."""


def header_crc(type_: int, seq: int, length: int) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over type, seq and length: it lets a receiver
    reject a false sync in garbage without waiting for a bogus payload length to arrive."""
    return binascii.crc_hqx(struct.pack("<BBH", type_, seq, length), 0xFFFF)


def frame_crc(body: bytes) -> int:
    """CRC-32 (IEEE 802.3, as zlib.crc32) over everything after the sync bytes."""
    return zlib.crc32(body) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        head = HEADER.pack(SYNC, self.type, self.seq, len(self.payload),
                           header_crc(self.type, self.seq, len(self.payload)))
        body = head[2:] + self.payload
        return head + self.payload + struct.pack("<I", frame_crc(body))


class FrameDecoder:
    """Streaming decoder: feed it whatever arrived, get back the complete valid frames.

    Resynchronisation: anything before a sync pattern is discarded; a header whose CRC-16 fails or
    whose length is impossible, or a frame whose CRC-32 fails, costs one byte (the scan restarts
    just after that sync), so a real frame hidden behind garbage is still found.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded_bytes = 0     # garbage skipped while hunting for a sync
        self.false_syncs = 0         # sync patterns whose header check failed (noise)
        self.crc_errors = 0          # frames with a valid header whose CRC-32 failed (corruption)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            start = self._buf.find(SYNC)
            if start < 0:
                # keep a trailing first sync byte: the second may be in the next read
                keep = 1 if self._buf[-1:] == SYNC[:1] else 0
                self.discarded_bytes += len(self._buf) - keep
                del self._buf[:len(self._buf) - keep]
                return frames
            if start:
                self.discarded_bytes += start
                del self._buf[:start]
            if len(self._buf) < HEADER_BYTES:
                return frames
            _, type_, seq, length, hcrc = HEADER.unpack_from(self._buf)
            if hcrc != header_crc(type_, seq, length) or length > MAX_PAYLOAD_BYTES:
                self.false_syncs += 1
                self._skip_one()
                continue
            total = HEADER_BYTES + length + CRC_BYTES
            if len(self._buf) < total:
                return frames
            body = bytes(self._buf[2:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", self._buf, HEADER_BYTES + length)
            if crc != frame_crc(body):
                self.crc_errors += 1
                self._skip_one()
                continue
            frames.append(Frame(type_, seq, bytes(self._buf[HEADER_BYTES:HEADER_BYTES + length])))
            del self._buf[:total]

    def _skip_one(self) -> None:
        self.discarded_bytes += 1
        del self._buf[:1]

    @property
    def in_frame(self) -> bool:
        """True while the buffer holds a valid header whose payload has not all arrived: bytes
        of a real frame are in flight (or were lost, if the line then stays silent)."""
        if len(self._buf) < HEADER_BYTES or self._buf[:2] != SYNC:
            return False
        _, type_, seq, length, hcrc = HEADER.unpack_from(self._buf)
        return hcrc == header_crc(type_, seq, length) and length <= MAX_PAYLOAD_BYTES

    def reset(self) -> None:
        self._buf.clear()


# ---------------------------------------------------------------------------------------------
# Messages. Each has TYPE and a fixed little-endian layout; a trailing variable part is noted.

class MsgType:
    HELLO = 0x01
    UPLOAD_BEGIN = 0x02
    UPLOAD_CHUNK = 0x03
    UPLOAD_END = 0x04
    PROFILE = 0x05
    READ_LAYER = 0x06
    READ_OUTPUT = 0x07
    RESET = 0x08
    ACK = 0x80
    INFO = 0x81
    MODEL_OK = 0x84
    PROFILE_DONE = 0x85
    LAYER = 0x86
    OUTPUT = 0x87
    BOOT = 0xB0
    ERROR = 0xEE


class ErrorCode:
    BAD_FRAME = 1          # the board received a corrupt frame
    UNKNOWN_TYPE = 2
    BAD_PAYLOAD = 3        # a message whose payload does not match its layout
    BAD_STATE = 4          # e.g. a chunk before UPLOAD_BEGIN, PROFILE without a model
    CHUNK_CRC = 5
    CHUNK_OFFSET = 6
    SHA256_MISMATCH = 7
    MODEL_TOO_LARGE = 8    # does not fit the flash reserved for models
    ARENA_TOO_SMALL = 9    # the tensor arena cannot hold the model
    MODEL_INVALID = 10     # not a model TFLite Micro can load (bad schema, unknown op)
    INFERENCE_FAILED = 11
    BUSY = 12

    NAMES = {1: "BAD_FRAME", 2: "UNKNOWN_TYPE", 3: "BAD_PAYLOAD", 4: "BAD_STATE", 5: "CHUNK_CRC",
             6: "CHUNK_OFFSET", 7: "SHA256_MISMATCH", 8: "MODEL_TOO_LARGE", 9: "ARENA_TOO_SMALL",
             10: "MODEL_INVALID", 11: "INFERENCE_FAILED", 12: "BUSY"}
    # errors that say the model itself cannot run on this kind of board: retrying elsewhere is futile
    MODEL_FATAL = frozenset({8, 9, 10, 11})


class BootCause:
    POWER_ON = 0
    RESET_COMMAND = 1
    WATCHDOG = 2
    FAULT = 3
    NAMES = {0: "power-on", 1: "reset command", 2: "watchdog", 3: "fault"}


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _fixed(text: str, size: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > size:
        raise ProtocolError(f"{what} {text!r} longer than {size} bytes")
    return raw.ljust(size, b"\0")


class Message:
    TYPE: ClassVar[int]
    LAYOUT: ClassVar[struct.Struct]

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode(cls, payload: bytes):
        raise NotImplementedError

    @classmethod
    def _unpack(cls, payload: bytes, exact: bool = True) -> tuple:
        n = cls.LAYOUT.size
        if len(payload) < n or (exact and len(payload) != n):
            raise ProtocolError(f"{cls.__name__}: payload of {len(payload)} bytes, layout needs "
                                f"{'exactly' if exact else 'at least'} {n}")
        return cls.LAYOUT.unpack_from(payload)


@dataclass
class Hello(Message):
    TYPE: ClassVar[int] = MsgType.HELLO
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H")
    protocol_version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.protocol_version)

    @classmethod
    def decode(cls, payload: bytes) -> "Hello":
        return cls(*cls._unpack(payload))


@dataclass
class Info(Message):
    TYPE: ClassVar[int] = MsgType.INFO
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H16s16s24sIIIIIHBB")
    protocol_version: int
    board_kind: str             # e.g. "brd2601b"
    firmware_version: str
    board_id: str               # unique per board: J-Link serial or the chip's EUI-64
    clock_hz: int
    ram_bytes: int              # SRAM of the chip
    flash_bytes: int            # flash of the chip
    arena_max_bytes: int        # the largest tensor arena the firmware can give a model
    model_max_bytes: int        # flash reserved for the uploaded .tflite
    chunk_max_bytes: int        # largest UPLOAD_CHUNK data the board accepts
    accelerators: int = 1       # bit 0: MVP

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.protocol_version, _fixed(self.board_kind, 16, "board_kind"),
                                _fixed(self.firmware_version, 16, "firmware_version"),
                                _fixed(self.board_id, 24, "board_id"), self.clock_hz, self.ram_bytes,
                                self.flash_bytes, self.arena_max_bytes, self.model_max_bytes,
                                self.chunk_max_bytes, self.accelerators, 0)

    @classmethod
    def decode(cls, payload: bytes) -> "Info":
        (ver, kind, fw, bid, clock, ram, flash, arena, model_max, chunk, acc, _) = cls._unpack(payload)
        info = cls(ver, _cstr(kind), _cstr(fw), _cstr(bid), clock, ram, flash, arena, model_max,
                   chunk, acc)
        if not info.board_kind or not info.board_id or chunk == 0 or clock == 0:
            raise ProtocolError(f"INFO with empty kind/id or zero chunk size/clock: {info}")
        return info


@dataclass
class UploadBegin(Message):
    TYPE: ClassVar[int] = MsgType.UPLOAD_BEGIN
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I32s")
    model_bytes: int
    sha256: bytes

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.model_bytes, self.sha256)

    @classmethod
    def decode(cls, payload: bytes) -> "UploadBegin":
        return cls(*cls._unpack(payload))


@dataclass
class UploadChunk(Message):
    """Fixed part then the data (the rest of the payload)."""
    TYPE: ClassVar[int] = MsgType.UPLOAD_CHUNK
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<II")
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.offset, zlib.crc32(self.data) & 0xFFFFFFFF) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> "UploadChunk":
        offset, crc = cls._unpack(payload, exact=False)
        data = payload[cls.LAYOUT.size:]
        if zlib.crc32(data) & 0xFFFFFFFF != crc:
            raise ProtocolError("UPLOAD_CHUNK data does not match its CRC-32")
        return cls(offset, data)


@dataclass
class Empty(Message):
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes):
        cls._unpack(payload)
        return cls()


@dataclass
class UploadEnd(Empty):
    TYPE: ClassVar[int] = MsgType.UPLOAD_END


@dataclass
class Reset(Empty):
    TYPE: ClassVar[int] = MsgType.RESET


@dataclass
class Profile(Message):
    TYPE: ClassVar[int] = MsgType.PROFILE
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HHBB")
    warmup: int = 1
    repeats: int = 3
    use_accelerator: bool = True

    MAX_REPEATS: ClassVar[int] = 255   # a LAYER reply must fit MAX_PAYLOAD_BYTES

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.warmup, self.repeats, int(self.use_accelerator), 0)

    @classmethod
    def decode(cls, payload: bytes) -> "Profile":
        warmup, repeats, flags, _ = cls._unpack(payload)
        if not 1 <= repeats <= cls.MAX_REPEATS:
            raise ProtocolError(f"PROFILE repeats {repeats} outside 1..{cls.MAX_REPEATS}")
        return cls(warmup, repeats, bool(flags & 1))


@dataclass
class ReadLayer(Message):
    TYPE: ClassVar[int] = MsgType.READ_LAYER
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H")
    index: int

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.index)

    @classmethod
    def decode(cls, payload: bytes) -> "ReadLayer":
        return cls(*cls._unpack(payload))


@dataclass
class ReadOutput(Message):
    TYPE: ClassVar[int] = MsgType.READ_OUTPUT
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IH")
    offset: int
    max_bytes: int

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.offset, self.max_bytes)

    @classmethod
    def decode(cls, payload: bytes) -> "ReadOutput":
        return cls(*cls._unpack(payload))


@dataclass
class Ack(Message):
    TYPE: ClassVar[int] = MsgType.ACK
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I")
    value: int = 0

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.value)

    @classmethod
    def decode(cls, payload: bytes) -> "Ack":
        return cls(*cls._unpack(payload))


@dataclass
class ModelOk(Message):
    TYPE: ClassVar[int] = MsgType.MODEL_OK
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IHHI")
    arena_used_bytes: int
    n_layers: int
    output_bytes: int

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.arena_used_bytes, self.n_layers, 0, self.output_bytes)

    @classmethod
    def decode(cls, payload: bytes) -> "ModelOk":
        arena, n, _, out = cls._unpack(payload)
        return cls(arena, n, out)


@dataclass
class ProfileDone(Message):
    TYPE: ClassVar[int] = MsgType.PROFILE_DONE
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HHII")
    n_layers: int
    repeats: int
    arena_used_bytes: int
    output_bytes: int           # 0 when the firmware cannot return the output tensor

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.n_layers, self.repeats, self.arena_used_bytes, self.output_bytes)

    @classmethod
    def decode(cls, payload: bytes) -> "ProfileDone":
        return cls(*cls._unpack(payload))


LAYER_ON_MVP = 1        # LAYER flags bit 0: the layer ran on the MVP
LAYER_FELL_BACK = 2     # bit 1: the layer has an MVP kernel but the hardware limits refused it


@dataclass
class Layer(Message):
    """Fixed part, then `repeats` pairs (u32 CPU cycles, u32 MVP cycles), then u8 reason length
    and the reason (UTF-8) for a fallback, empty otherwise."""
    TYPE: ClassVar[int] = MsgType.LAYER
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HHBBH")
    index: int
    opcode: int                 # TFLite BuiltinOperator code
    flags: int
    cpu_cycles: list[int] = field(default_factory=list)     # DWT CYCCNT per repeat
    mvp_cycles: list[int] = field(default_factory=list)     # MVP PERF counter 0 (RUN) per repeat
    reason: str = ""

    def encode(self) -> bytes:
        if len(self.cpu_cycles) != len(self.mvp_cycles):
            raise ProtocolError("LAYER needs as many MVP as CPU cycle counts")
        reason = self.reason.encode("utf-8")[:255]
        out = self.LAYOUT.pack(self.index, self.opcode, self.flags, 0, len(self.cpu_cycles))
        out += b"".join(struct.pack("<II", c, m) for c, m in zip(self.cpu_cycles, self.mvp_cycles))
        return out + bytes([len(reason)]) + reason

    @classmethod
    def decode(cls, payload: bytes) -> "Layer":
        index, opcode, flags, _, repeats = cls._unpack(payload, exact=False)
        at = cls.LAYOUT.size
        need = at + 8 * repeats + 1
        if len(payload) < need:
            raise ProtocolError(f"LAYER claims {repeats} repeats in a {len(payload)}-byte payload")
        pairs = [struct.unpack_from("<II", payload, at + 8 * i) for i in range(repeats)]
        n_reason = payload[need - 1]
        if len(payload) != need + n_reason:
            raise ProtocolError(f"LAYER reason length {n_reason} does not match the payload")
        reason = payload[need:need + n_reason].decode("utf-8", "replace")
        return cls(index, opcode, flags, [p[0] for p in pairs], [p[1] for p in pairs], reason)


@dataclass
class Output(Message):
    TYPE: ClassVar[int] = MsgType.OUTPUT
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I")
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.offset) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> "Output":
        (offset,) = cls._unpack(payload, exact=False)
        return cls(offset, payload[cls.LAYOUT.size:])


@dataclass
class Boot(Message):
    TYPE: ClassVar[int] = MsgType.BOOT
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBH")
    cause: int = BootCause.POWER_ON
    protocol_version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.cause, 0, self.protocol_version)

    @classmethod
    def decode(cls, payload: bytes) -> "Boot":
        cause, _, ver = cls._unpack(payload)
        return cls(cause, ver)


@dataclass
class Error(Message):
    """Fixed part, then a UTF-8 message (the rest of the payload, at most 200 bytes)."""
    TYPE: ClassVar[int] = MsgType.ERROR
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HHI")
    code: int
    detail: int = 0
    message: str = ""

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.code, 0, self.detail) + self.message.encode("utf-8")[:200]

    @classmethod
    def decode(cls, payload: bytes) -> "Error":
        code, _, detail = cls._unpack(payload, exact=False)
        return cls(code, detail, payload[cls.LAYOUT.size:].decode("utf-8", "replace"))

    def describe(self) -> str:
        name = ErrorCode.NAMES.get(self.code, f"code {self.code}")
        return f"{name}: {self.message}" if self.message else name


MESSAGES: dict[int, type[Message]] = {m.TYPE: m for m in (
    Hello, Info, UploadBegin, UploadChunk, UploadEnd, Reset, Profile, ReadLayer, ReadOutput, Ack,
    ModelOk, ProfileDone, Layer, Output, Boot, Error)}


def decode_message(frame: Frame) -> Message:
    """The message a frame carries; ProtocolError for an unknown type or a malformed payload."""
    cls = MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{frame.type:02x}")
    try:
        return cls.decode(frame.payload)
    except ProtocolError:
        raise
    except (struct.error, ValueError, UnicodeError) as e:
        raise ProtocolError(f"{cls.__name__}: {e}") from None


def to_frame(msg: Message, seq: int) -> Frame:
    return Frame(msg.TYPE, seq, msg.encode())
