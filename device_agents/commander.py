"""Simplicity Commander, Silicon Labs' flashing tool, driven as a subprocess: the three calls that
put a model on a board running the vendor's model-profiler firmware.

    cmd = Commander(find_commander(), serial="440139581")     # the kit's J-Link serial number
    info = cmd.device_info()                                 # part number, flash and RAM sizes
    cmd.flash_file("mltk_model_profiler.s37")               # the firmware image, at its own addresses
    cmd.flash_bytes(model_region(tflite), model_address(info, tflite))   # the model at the end of flash
    cmd.reset()                                              # the firmware boots and prints its log

Commander is found on PATH or named by the user; mvpfarm never downloads it. Each kit is chosen
by its J-Link's serial number (`--serialno`), so that several kits can share one host. A call
that fails raises `CommanderError` with the exit status and Commander's own message in one
line; no debugger with that serial is `NoDevice`, no Commander at all is `CommanderMissing`.
`FirmwareImage` reads an .s37 (or .bin) image for its size and hash, and `flash_problem` is the
check made before anything is written: the model region must not reach into the image.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


FLASH_BASE_ADDRESS = 0x0800_0000      # EFR32 series 2 (xG23 and later); series 1 parts start at 0
TIMEOUT_S = 120.0                     # a full image write over a J-Link takes tens of seconds
_NO_DEVICE = re.compile(r"no (j-?link|adapter|debugger|device)|cannot connect to j-?link|"
                        r"no emulators? connected|not connected", re.IGNORECASE)


class CommanderError(Exception):
    """A Commander call failed; the message is one line (the call, its exit status, its message)."""


class CommanderMissing(CommanderError):
    """No Commander executable."""


class NoDevice(CommanderError):
    """Commander found no debugger (or none with the kit's serial number)."""


def find_commander(path: str | None = None) -> str:
    """The Commander executable: `path` if given (it must exist), else `commander` on PATH."""
    if path:
        p = Path(path).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise CommanderMissing(f"--commander {path}: no executable there")
        return str(p)
    found = shutil.which("commander") or shutil.which("commander-cli")
    if not found:
        raise CommanderMissing("Simplicity Commander (`commander`) is not on PATH: install it (Simplicity "
                               "Studio ships it) and add it to PATH, or name it with --commander PATH")
    return found


@dataclass(frozen=True)
class DeviceInfo:
    part_number: str            # e.g. EFR32MG24B310F1536IM48
    flash_bytes: int
    ram_bytes: int
    unique_id: str

    @property
    def flash_base_address(self) -> int:
        m = re.match(r"EF[MR]32[A-Z]{2}(\d{2})", self.part_number.upper())
        return FLASH_BASE_ADDRESS if m and int(m.group(1)) >= 23 else 0


_INFO_FIELDS = {"part number": "part_number", "flash size": "flash", "sram size": "ram", "unique id": "unique_id"}


def parse_device_info(text: str) -> DeviceInfo:
    """`commander device info` output ("Part Number    : EFR32MG24B310F1536IM48", "Flash Size     :
    1536 kB", ...). Raises CommanderError naming what is missing."""
    got: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        name = _INFO_FIELDS.get(key.strip().lower())
        if sep and name:
            got[name] = value.strip()
    missing = [k for k in ("part_number", "flash", "ram") if k not in got]
    if missing:
        raise CommanderError(f"`commander device info` printed no {', '.join(missing)}: {_one_line(text)}")
    sizes = {}
    for k in ("flash", "ram"):
        m = re.fullmatch(r"(\d+)\s*(kB|KB|KiB|MB|B)?", got[k])
        if not m:
            raise CommanderError(f"`commander device info`: unreadable {k} size {got[k]!r}")
        sizes[k] = int(m.group(1)) * {"": 1, "B": 1, "MB": 1 << 20}.get(m.group(2) or "", 1024)
    return DeviceInfo(got["part_number"].split()[0], sizes["flash"], sizes["ram"], got.get("unique_id", ""))


class Commander:
    """One kit's Commander: every call names the kit's J-Link by `serial` (None: the only one)."""

    def __init__(self, exe: str, serial: str | None = None, device: str = "EFR32MG24",
                 timeout_s: float = TIMEOUT_S):
        self.exe, self.serial, self.device, self.timeout_s = exe, serial, device, timeout_s

    def _args(self) -> list[str]:
        out = ["--device", self.device]
        if self.serial:
            out += ["--serialno", str(self.serial)]
        return out

    def run(self, *args: str) -> str:
        """One call; its output. Raises CommanderError (or NoDevice) with the exit status and the
        message: Commander reports some failures in its output with exit status 0."""
        cmd = [self.exe, *args]
        shown = "commander " + " ".join(a if len(a) < 60 else "..." + a[-40:] for a in args)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise CommanderMissing(f"{self.exe}: no such executable") from None
        except PermissionError:
            raise CommanderMissing(f"{self.exe}: not executable") from None
        except subprocess.TimeoutExpired:
            raise CommanderError(f"{shown}: no answer within {self.timeout_s:g} s") from None
        out = (p.stdout or "") + (p.stderr or "")
        errors = [ln.strip() for ln in out.splitlines() if re.search(r"\berror\b", ln, re.IGNORECASE)]
        if p.returncode != 0 or errors:
            message = errors[0] if errors else _one_line(out) or "no message"
            cls = NoDevice if _NO_DEVICE.search(out) else CommanderError
            raise cls(f"{shown} failed (exit status {p.returncode}): {message}"[:400])
        return out

    def device_info(self) -> DeviceInfo:
        info = parse_device_info(self.run("device", "info", *self._args()))
        self.device = info.part_number       # later calls name the exact part
        return info

    def flash_file(self, path: str | Path, halt: bool = True) -> None:
        """Programs an image file (.s37/.hex carry their addresses) and leaves the core halted
        until the next reset, as the vendor's tool does."""
        self.run("flash", "--force", *(["--halt"] if halt else []), *self._args(), str(path))

    def flash_bytes(self, data: bytes, address: int, halt: bool = True) -> None:
        """Programs raw bytes at `address`."""
        fd, tmp = tempfile.mkstemp(suffix=".bin", prefix="mvpfarm-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.run("flash", "--force", *(["--halt"] if halt else []), "--binary", "--address",
                     f"0x{address:08X}", *self._args(), tmp)
        finally:
            os.unlink(tmp)

    def reset(self) -> None:
        self.run("device", "reset", *self._args())


@dataclass(frozen=True)
class FirmwareImage:
    """A firmware image file: what it costs in flash, where it ends, and its hash (the image is
    programmed once per board, not once per model)."""
    path: str
    sha256: str
    size_bytes: int
    end_address: int | None      # one past its last byte, for images that carry addresses

    @classmethod
    def load(cls, path: str | Path) -> "FirmwareImage":
        """Reads an .s37/.srec/.hex (via bincopy) or a raw .bin. Raises ValueError (one line)."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ValueError(f"firmware image {path}: {e.strerror or e}") from None
        sha = hashlib.sha256(raw).hexdigest()
        if p.suffix.lower() == ".bin":
            return cls(str(p), sha, len(raw), None)
        import bincopy
        image = bincopy.BinFile()
        try:
            if p.suffix.lower() == ".hex":
                image.add_ihex(raw.decode("ascii"))
            else:
                image.add_srec(raw.decode("ascii"))
        except (UnicodeDecodeError, bincopy.Error) as e:
            raise ValueError(f"firmware image {path}: not an S-record (.s37) file: {_one_line(str(e))}") from None
        if not image.segments:
            raise ValueError(f"firmware image {path}: holds no data")
        size = sum(len(seg.data) for seg in image.segments)
        return cls(str(p), sha, size, image.maximum_address)


def model_region(tflite_bytes: bytes) -> bytes:
    """What the vendor's host tool writes at the very end of flash: the .tflite, then its length
    as 4 little-endian bytes."""
    return bytes(tflite_bytes) + struct.pack("<I", len(tflite_bytes))


def model_address(info: DeviceInfo, tflite_bytes: int) -> int:
    """Where the model region (the .tflite, then its 4-byte length) starts: it ends with the flash."""
    return info.flash_base_address + info.flash_bytes - (tflite_bytes + 4)


def flash_problem(info: DeviceInfo, image: FirmwareImage | None, tflite_bytes: int) -> str | None:
    """Why the model and the image cannot share the board's flash, or None."""
    region = tflite_bytes + 4
    image_bytes = image.size_bytes if image else 0
    start = model_address(info, tflite_bytes)
    overlaps = image is not None and image.end_address is not None and image.end_address > start
    if region + image_bytes > info.flash_bytes or overlaps:
        return (f"model of {tflite_bytes:,} B (+4 B length) and firmware image of {image_bytes:,} B "
                f"exceed the {info.flash_bytes:,} B of flash of the {info.part_number}")
    return None


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


__all__ = ["Commander", "CommanderError", "CommanderMissing", "NoDevice", "DeviceInfo", "FirmwareImage",
           "find_commander", "flash_problem", "model_address", "model_region", "parse_device_info"]
