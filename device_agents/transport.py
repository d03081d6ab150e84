"""The serial transport: one request, one reply, each with a deadline.

Opens ports with `serial.serial_for_url`, so a device path (/dev/ttyACM0, a pty) and any pyserial
URL (loop://, socket://host:port, rfc2217://...) work alike. Every exchange has a timeout; replies
are matched to requests by sequence number, stale and unsolicited frames are dropped, and garbage
is skipped by the decoder's resynchronisation. Failures are classified so the agent can decide
between retry, reset and quarantine:

- `LinkTimeout`: no valid reply before the deadline (a hang, lost or corrupt bytes, a slow board)
- `BoardRebooted`: the board announced a boot in the middle of an exchange
- `PortGone`: the port vanished (unplugged; a pty whose master closed)
- `BoardError`: the board answered with an ERROR message
- `ProtocolError`: a valid frame with a malformed or unexpected message
"""
from __future__ import annotations

import termios
import time
from dataclasses import dataclass

import serial

from device_agents import protocol as P

DEFAULT_BAUD = 115_200
READ_SLICE_S = 0.02          # serial read timeout: how often a blocked read re-checks its deadline
# silence in the middle of a frame after which its missing bytes count as lost: a UART sends a
# frame back to back, so 0.1 s (1,400 byte times at 115200 baud) means a dropped byte
FRAME_GAP_S = 0.1


class TransportError(Exception):
    """Base of the link failures; `str()` is one line fit for a board's state."""


class LinkTimeout(TransportError):
    pass


class BoardRebooted(TransportError):
    def __init__(self, cause: int):
        self.cause = cause
        super().__init__(f"board rebooted ({P.BootCause.NAMES.get(cause, cause)})")


class PortGone(TransportError):
    pass


class BoardError(TransportError):
    def __init__(self, error: P.Error, request: str):
        self.error = error
        super().__init__(f"{request}: board error {error.describe()}")

    @property
    def code(self) -> int:
        return self.error.code


@dataclass
class LinkStats:
    exchanges: int = 0
    timeouts: int = 0
    garbage_bytes: int = 0
    crc_errors: int = 0
    stale_frames: int = 0


class Transport:
    """Owns an open serial port. Not thread-safe: one agent, one transport."""

    def __init__(self, url: str, baudrate: int = DEFAULT_BAUD, exclusive: bool = False):
        self.url = url
        try:
            kw = {"exclusive": True} if exclusive else {}
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=READ_SLICE_S,
                                               write_timeout=2.0, **kw)
        except (serial.SerialException, OSError, ValueError) as e:
            raise PortGone(f"cannot open {url}: {e}") from None
        self._decoder = P.FrameDecoder()
        self._pending: list[P.Frame] = []
        self._seq = 0
        self.stats = LinkStats()
        self.boot_seen: P.Boot | None = None     # the last unsolicited BOOT, for the agent to note

    def close(self) -> None:
        try:
            self._port.close()
        except (serial.SerialException, OSError):
            pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level ------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1        # 1..255; 0 is reserved for unsolicited frames
        return self._seq

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except serial.SerialTimeoutException:   # a SerialException too: test it first
            raise LinkTimeout(f"{self.url}: write timed out (board not reading)") from None
        except (serial.SerialException, OSError, termios.error) as e:
            raise PortGone(f"{self.url}: write failed: {e}") from None

    def _read_some(self, deadline: float) -> bytes:
        try:
            n = max(1, self._port.in_waiting)
            self._port.timeout = max(0.0, min(READ_SLICE_S, deadline - time.monotonic()))
            return self._port.read(n)
        except (serial.SerialException, OSError, TypeError, termios.error) as e:
            # pyserial raises SerialException when a pty's master closed; TypeError comes from
            # its internals on a closed fd
            raise PortGone(f"{self.url}: port gone: {e}") from None

    def _sync_stats(self) -> None:
        self.stats.garbage_bytes = self._decoder.discarded_bytes
        self.stats.crc_errors = self._decoder.crc_errors

    def receive(self, deadline: float) -> P.Frame:
        """The next valid frame before `deadline` (time.monotonic()), or LinkTimeout.

        Gives up early, as a LinkTimeout too, when a frame is evidently lost: its CRC-32 failed
        (corrupted) or it stopped arriving half-way (dropped bytes)."""
        crc_errors = self._decoder.crc_errors
        last_rx = time.monotonic()
        while not self._pending:
            now = time.monotonic()
            if self._decoder.crc_errors != crc_errors:
                self._sync_stats()
                raise LinkTimeout(f"{self.url}: a corrupted frame (CRC-32 mismatch)")
            if self._decoder.in_frame and now - last_rx > FRAME_GAP_S:
                self._decoder.reset()
                self._sync_stats()
                raise LinkTimeout(f"{self.url}: a frame stopped half-way (bytes lost)")
            if now >= deadline:
                self._sync_stats()
                raise LinkTimeout(f"{self.url}: no valid frame before the deadline")
            data = self._read_some(deadline)
            if data:
                last_rx = time.monotonic()
                self._pending.extend(self._decoder.feed(data))
        self._sync_stats()
        return self._pending.pop(0)

    def discard_input(self) -> None:
        """Drops everything received so far (stale replies of an abandoned exchange)."""
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError, TypeError, termios.error) as e:
            raise PortGone(f"{self.url}: port gone: {e}") from None
        self._pending.clear()
        self._decoder.reset()

    # -- exchanges -----------------------------------------------------------------------------

    def exchange(self, msg: P.Message, timeout_s: float, expect: type[P.Message] | None = None,
                 boot_ok: bool = False) -> P.Message:
        """Sends `msg` and returns the board's reply to it (of type `expect` when given).

        Raises BoardError for an ERROR reply, BoardRebooted if the board boots meanwhile (unless
        `boot_ok`, for a handshake with a board that may have just powered up), LinkTimeout,
        PortGone or ProtocolError."""
        self.stats.exchanges += 1
        seq = self._next_seq()
        self.write(P.to_frame(msg, seq).encode())
        deadline = time.monotonic() + timeout_s
        name = type(msg).__name__
        while True:
            try:
                frame = self.receive(deadline)
            except LinkTimeout as e:
                self.stats.timeouts += 1
                if time.monotonic() < deadline:
                    raise LinkTimeout(f"{name}: reply lost: {e}") from None
                raise LinkTimeout(f"no reply to {name} within {timeout_s:g} s") from None
            if frame.type == P.MsgType.BOOT:
                boot = self._decode(frame)
                self.boot_seen = boot
                if boot_ok:
                    continue
                raise BoardRebooted(boot.cause)
            if frame.seq != seq:
                self.stats.stale_frames += 1
                continue
            reply = self._decode(frame)
            if isinstance(reply, P.Error):
                raise BoardError(reply, name)
            if expect is not None and not isinstance(reply, expect):
                raise P.ProtocolError(f"{name}: expected {expect.__name__}, got {type(reply).__name__}")
            return reply

    @staticmethod
    def _decode(frame: P.Frame) -> P.Message:
        return P.decode_message(frame)

    def wait_for_boot(self, timeout_s: float) -> P.Boot | None:
        """Waits for the BOOT a board sends after a reset; None if none came in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                frame = self.receive(deadline)
            except LinkTimeout:
                return None
            if frame.type == P.MsgType.BOOT:
                try:
                    boot = self._decode(frame)
                except P.ProtocolError:
                    continue
                self.boot_seen = boot
                return boot
