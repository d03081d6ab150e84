"""Finding boards: J-Link CDC UART ports (the EFR32xG24 kits' on-board SEGGER J-Link) or ports
named by the user, and the J-Link serial number behind a port (Commander's `--serialno`)."""
from __future__ import annotations

import os

from serial.tools import list_ports

SEGGER_USB_VID = 0x1366      # every J-Link, the kits' on-board debugger included


def jlink_ports() -> list[str]:
    """Device paths of the serial ports a SEGGER J-Link exposes, sorted."""
    return sorted(p.device for p in list_ports.comports() if p.vid == SEGGER_USB_VID)


def board_ports(named: list[str] | None = None) -> list[str]:
    """The ports named on the command line (paths or pyserial URLs), else every J-Link port."""
    return list(dict.fromkeys(named)) if named else jlink_ports()


def jlink_serial(port: str) -> str | None:
    """The serial number of the J-Link whose CDC UART is `port` (the USB serial, without the
    leading zeros J-Links print there), the virtual J-Link of a virtual board on `port`, or None."""
    real = os.path.realpath(port)
    for p in list_ports.comports():
        if p.vid == SEGGER_USB_VID and p.serial_number and os.path.realpath(p.device) == real:
            return p.serial_number.lstrip("0") or "0"
    from device_agents.virtual_jlink import serial_for_port
    return serial_for_port(port)
