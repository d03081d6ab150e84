"""A virtual kit's on-board debugger (its J-Link), as files that Simplicity Commander's stand-in reaches.

A real kit's flash is written, and the chip reset, by Simplicity Commander through the J-Link whose
serial number names the kit. A virtual board in vendor mode gets a directory instead:

    <root>/<serial>/device.json   what `commander device info` reports, the board's pty, the owner's
                                  pid and the debugger's faults (flashfail: every write fails)
    <root>/<serial>/flash.bin     the whole flash, from its base address (erased bytes are 0xFF)
    <root>/<serial>/resets        one line per `commander device reset`

The test suite's stand-in `commander` executable writes flash.bin and appends to resets; the board
reads its model from the end of flash.bin and prints its log on every reset. `root()` is
$MVPFARM_VIRTUAL_JLINK_DIR, else a folder of this user's in the temp dir. This layout is the whole
contract between the two (the stand-in keeps its own copy of it: it is a test fixture, not a tool).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

from device_agents.board_kinds import BoardKind
from device_agents.commander import FLASH_BASE_ADDRESS
from device_agents.port_lock import pid_alive

ROOT_ENV = "MVPFARM_VIRTUAL_JLINK_DIR"
ERASED = 0xFF
_counter = itertools.count()


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path(tempfile.gettempdir()) / f"mvpfarm-virtual-jlink-{os.getuid()}")


def new_serial() -> str:
    """A J-Link-like 9-digit serial number, unique on this machine while this process lives."""
    return f"77{os.getpid() % 100_000:05d}{next(_counter) % 100:02d}"


class VirtualJLink:
    """The debugger of one virtual board: its directory under `root()`."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.serial = self.dir.name

    @classmethod
    def create(cls, kind: BoardKind, port: str, serial: str | None = None, flashfail: bool = False,
               firmware_image: bytes | None = None) -> "VirtualJLink":
        """A fresh debugger with erased flash (or `firmware_image` at the flash base)."""
        serial = serial or new_serial()
        d = root() / serial
        d.mkdir(parents=True, exist_ok=True)
        flash = bytearray([ERASED]) * kind.flash_bytes
        if firmware_image:
            flash[:len(firmware_image)] = firmware_image
        (d / "flash.bin").write_bytes(bytes(flash))
        (d / "resets").write_text("")
        (d / "device.json").write_text(json.dumps({
            "serial": serial, "part_number": kind.part_number, "flash_bytes": kind.flash_bytes,
            "ram_bytes": kind.ram_bytes, "flash_base_address": FLASH_BASE_ADDRESS,
            "unique_id": f"{int(serial):016x}", "port": port, "pid": os.getpid(),
            "faults": {"flashfail": bool(flashfail)}}))
        return cls(d)

    @property
    def flash_path(self) -> Path:
        return self.dir / "flash.bin"

    def read_flash(self) -> bytes:
        return self.flash_path.read_bytes()

    def resets(self) -> int:
        """How many resets the debugger has issued (a cheap stat: the board polls it)."""
        try:
            return self.dir.joinpath("resets").stat().st_size
        except OSError:
            return 0

    def write(self, address: int, data: bytes) -> None:
        with open(self.flash_path, "r+b") as f:
            f.seek(address - FLASH_BASE_ADDRESS)
            f.write(data)

    def reset(self) -> None:
        with open(self.dir / "resets", "a") as f:
            f.write("r")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def serial_for_port(port: str) -> str | None:
    """The serial of the virtual debugger that belongs to the board on `port`, or None."""
    base = root()
    if not base.is_dir():
        return None
    for d in base.iterdir():
        try:
            info = json.loads((d / "device.json").read_text())
        except (OSError, ValueError):
            continue
        if info.get("port") == port and pid_alive(int(info.get("pid", 0))):
            return str(info["serial"])
    return None
