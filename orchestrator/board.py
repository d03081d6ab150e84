"""The board a sweep targets: the EFR32xG24's memory, as the checks a variant must pass."""
from __future__ import annotations

from simulator.hardware import FLASH_BYTES, RAM_BYTES

KB = 1024


def too_large(flash_bytes: int, ram_bytes: int) -> str | None:
    """Why a model does not fit the board, or None when it does. The whole SRAM and flash are an
    upper bound: the application needs some of both too."""
    problems = []
    if ram_bytes > RAM_BYTES:
        problems.append(f"RAM {ram_bytes} B > {RAM_BYTES} B ({RAM_BYTES // KB} KB)")
    if flash_bytes > FLASH_BYTES:
        problems.append(f"flash {flash_bytes} B > {FLASH_BYTES} B ({FLASH_BYTES // KB} KB)")
    return "too large for the board: " + ", ".join(problems) if problems else None
