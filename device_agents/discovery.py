"""Finding boards: J-Link CDC UART ports (the EFR32xG24 kits' on-board SEGGER J-Link) or ports
named by the user."""
from __future__ import annotations

from serial.tools import list_ports

SEGGER_USB_VID = 0x1366      # every J-Link, the kits' on-board debugger included


def jlink_ports() -> list[str]:
    """Device paths of the serial ports a SEGGER J-Link exposes, sorted."""
    return sorted(p.device for p in list_ports.comports() if p.vid == SEGGER_USB_VID)


def board_ports(named: list[str] | None = None) -> list[str]:
    """The ports named on the command line (paths or pyserial URLs), else every J-Link port."""
    return list(dict.fromkeys(named)) if named else jlink_ports()
