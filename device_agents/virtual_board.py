"""The virtual board: a board's serial link behind a real pseudo-terminal, for tests and demos.

`VirtualBoard.start()` opens a pty and serves it from a thread; the agent opens the pty's slave
path with real pyserial, exactly as it would open /dev/ttyACM0. This module owns the I/O and the
faults that strike the link (`faults.py`): hang, garbage bytes, dropped bytes, flipped bits,
reboot mid-job, unplug (the pty closes) and slow replies. Behind the link runs one of two
firmwares: mvpfarm's protocol (`firmware.py`, docs/protocol.md) or, in vendor mode, Silicon Labs'
model-profiler (`vendor_firmware.py`), which boots from the board's flash: a vendor board has a
virtual J-Link (`virtual_jlink.py`) whose flash file and resets Simplicity Commander (or its
stand-in in tests) drives, and prints the vendor's log on every reset.
"""
from __future__ import annotations

import os
import random
import select
import threading
import tty

from device_agents import protocol as P
from device_agents.board_kinds import BOARD_KINDS, KB, BoardKind  # noqa: F401 - re-exported
from device_agents.faults import Faults
from device_agents.firmware import BoardStats, Firmware, Reboot
from device_agents.silicon_model import SiliconModel, SiliconParams
from device_agents.vendor_firmware import STANDIN_IMAGE, VendorFirmware
from device_agents.commander import FLASH_BASE_ADDRESS, model_region
from device_agents.virtual_jlink import VirtualJLink

MODES = ("protocol", "vendor")


class _Unplugged(Exception):
    pass


class VirtualBoard:
    """One virtual board on its own pty, served by a daemon thread.

    mode "protocol" speaks docs/protocol.md. Mode "vendor" runs the vendor's model profiler: on
    every reset of its virtual J-Link (`self.jlink`: every virtual board has one, as every kit
    does; a protocol board reboots when it resets it) it prints the log for
    the model at the end of its flash. Its flash holds a stand-in of the vendor's image until
    someone programs another (`vendor_image`; b"" starts with erased flash: no firmware)."""

    def __init__(self, kind: str = "brd2601b", board_id: str | None = None, seed: int = 0,
                 faults: Faults | None = None, mode: str = "protocol", time_scale: float = 0.0,
                 arena_max_bytes: int | None = None, model_max_bytes: int | None = None,
                 silicon: SiliconModel | None = None, vendor_image: bytes | None = None):
        if kind not in BOARD_KINDS:
            raise ValueError(f"unknown board kind {kind!r}: choose from {', '.join(BOARD_KINDS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be 'protocol' or 'vendor', not {mode!r}")
        if mode == "protocol" and faults is not None and faults.vendor_only():
            raise ValueError(f"faults {', '.join(faults.vendor_only())} are for vendor-firmware boards only")
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
        self.vendor = VendorFirmware(self.kind, self.silicon, self.firmware.rng, self.faults)
        self.vendor_image = STANDIN_IMAGE if vendor_image is None else vendor_image
        self.jlink: VirtualJLink | None = None
        self._resets_seen = 0
        self._logs = 0                     # logs begun (vendor mode), the count faults are keyed on
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
        # every kit has its J-Link; a protocol board's flash holds mvpfarm's firmware, not modelled
        self.jlink = VirtualJLink.create(self.kind, self.port, flashfail=self.faults.flashfail,
                                         firmware_image=self.vendor_image if self.mode == "vendor" else None)
        self._thread = threading.Thread(target=self._serve, name=f"vboard-{self.board_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()
        if self.jlink is not None:
            self.jlink.remove()

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
        """Vendor mode: writes the model (and its length) at the end of flash and resets the board,
        as the vendor's host tool does through Commander; the board then prints its log."""
        if self.mode != "vendor" or self.jlink is None:
            raise RuntimeError("flash_model is for a started vendor-mode board; protocol boards take UPLOAD_*")
        region = model_region(tflite_bytes)
        self.jlink.write(FLASH_BASE_ADDRESS + self.kind.flash_bytes - len(region), region)
        self.jlink.reset()

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
        self._write(self._damage(raw, anywhere=False))

    def _damage(self, raw: bytes, anywhere: bool) -> bytes:
        """The link's faults on bytes about to be sent: a burst of garbage (before a reply, or
        anywhere in a log), a dropped byte, a flipped bit."""
        f, rng = self.faults, self._fault_rng
        if raw and f.garbage and rng.random() < f.garbage:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 64)))
            if anywhere:
                i = rng.randrange(len(raw))
                raw = raw[:i] + junk + raw[i:]
            else:
                if rng.random() < 0.5:
                    junk = junk + P.SYNC + junk[:5]   # a false sync too, to exercise resynchronisation
                raw = junk + raw
            self.stats.garbage_bytes_sent += len(junk)
        if raw and f.drop and rng.random() < f.drop:
            i = rng.randrange(len(raw))
            raw = raw[:i] + raw[i + 1:]
            self.stats.replies_corrupted += 1
        if raw and f.crc and rng.random() < f.crc:
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1:]
            self.stats.replies_corrupted += 1
        return raw

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
                if self.faults.babble:
                    self._babble()
                elif self.mode == "vendor":
                    self._vendor_step()
                elif self.jlink.resets() != self._resets_seen:   # a reset through the debugger
                    self._resets_seen = self.jlink.resets()
                    self._hung = False
                    decoder.reset()
                    self._reboot(P.BootCause.POWER_ON)
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
                if self.mode == "vendor" or self._hung or self.faults.babble:
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
        """Boots the profiler after each reset the debugger issued, and prints its log."""
        resets = self.jlink.resets()
        if resets == self._resets_seen:
            return
        self._resets_seen = resets
        log = self.vendor.boot_log(self.jlink.read_flash())
        if log is None:
            self.stats.events.append("reset: no firmware in flash")
            return
        before, after, run_s = log
        f, rng = self.faults, self._fault_rng
        n = self._logs
        self._logs += 1
        if f.unplug is not None and n >= f.unplug:
            self._write_log(before[:len(before) // 2])
            self.unplug()
            raise _Unplugged()
        if f.hang is not None and n >= f.hang:
            # hung before printing a byte, after this reset and every later one
            self.stats.events.append(f"hung at log {n}")
            return
        if f.slow_s:
            self._sleep(f.slow_s)
        text = before + after
        if f.reboot and rng.random() < f.reboot:
            # a watchdog reset part-way: the firmware starts over and prints its whole log again
            self._write_log(text[:rng.randrange(1, len(text))])
            self.stats.reboots += 1
            self.stats.events.append("reboot mid-log")
        if f.truncate is not None and n >= f.truncate:
            self._write_log(text[:len(text) // 2])
            self.stats.events.append("log stopped half-way")
            return
        self.firmware.stats.profiles_started += 1
        self._write_log(before)
        self._sleep(run_s * self.firmware.time_scale)
        self._write_log(after)
        self.stats.profiles_completed += 1

    def _babble(self) -> None:
        """A burst of random bytes, when the pty can take it (never blocking the serving thread)."""
        with self._lock:
            fd = self._master
        if fd < 0 or not select.select([], [fd], [], 0)[1]:
            return
        junk = bytes(self._fault_rng.randrange(256) for _ in range(64))
        try:
            self.stats.garbage_bytes_sent += os.write(fd, junk)
        except OSError:
            pass

    def _write_log(self, text: str) -> None:
        """Prints log text, through the link's faults (and `tamper`, for tests)."""
        raw = text.encode()
        if self.tamper is not None:
            raw = self.tamper(self._logs, raw)
        self._write(self._damage(raw, anywhere=True))


class _Hung(Exception):
    pass


def emulate(count: int, kind: str = "brd2601b", faults: list[Faults] | None = None, seed: int = 0,
            time_scale: float = 1.0, mode: str | list[str] = "protocol",
            prefix: str | None = None) -> list[VirtualBoard]:
    """Starts `count` virtual boards; `faults[i]` and `mode[i]` (if given as lists) apply to board i."""
    prefix = prefix or f"vb-{os.getpid() % 100000}"
    modes = [mode] * count if isinstance(mode, str) else list(mode) + ["protocol"] * (count - len(mode))
    boards = []
    try:
        for i in range(count):
            f = faults[i] if faults and i < len(faults) else Faults()
            boards.append(VirtualBoard(kind, board_id=f"{prefix}-{i}", seed=seed + i, faults=f, mode=modes[i],
                                       time_scale=time_scale).start())
    except BaseException:
        for b in boards:
            b.stop()
        raise
    return boards
