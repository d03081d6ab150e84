"""Board kinds as data: each kit's chip (part number, clock, RAM, flash) and what its firmware
leaves for models. Read by the virtual boards, the vendor-firmware agent (which maps the part
number Commander reports to a kind) and the sweep file's checks."""
from __future__ import annotations

from dataclasses import dataclass

from simulator import hardware

KB = 1024


@dataclass(frozen=True)
class BoardKind:
    """A board as data: the chip's memories and what the firmware leaves for models."""
    name: str
    part_number: str = "EFR32MG24B310F1536IM48"   # as Simplicity Commander's `device info` prints it
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
    "brd2601b": BoardKind("brd2601b", "EFR32MG24B310F1536IM48"),   # EFR32xG24 Dev Kit
    "brd4186c": BoardKind("brd4186c", "EFR32MG24B210F1536IM48"),   # xG24 radio board (+10 dBm) on a wireless kit
}


def kind_of_part(part_number: str) -> BoardKind | None:
    """The board kind whose chip has this part number (Commander's `device info`), or None."""
    return next((k for k in BOARD_KINDS.values() if k.part_number == part_number.upper()), None)
