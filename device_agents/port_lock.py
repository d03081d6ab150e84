"""Exclusive ownership of a serial port across processes: one agent per board.

A lock file per port (flock, released by the kernel if the agent dies) names the owner; device
paths are also opened with pyserial's `exclusive=True`, which guards against tools that ignore the
lock file. Two agents, or an agent and `mvpfarm boards check`, cannot talk to one board at once.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

DEFAULT_LOCK_DIR = Path(os.environ.get("MVPFARM_LOCK_DIR", "/tmp/mvpfarm-locks"))


class PortBusy(Exception):
    """Another process owns the port; the message names it."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(port: str, lock_dir: Path | None = None) -> Path:
    real = os.path.realpath(port) if "://" not in port else port
    return Path(lock_dir or DEFAULT_LOCK_DIR) / (re.sub(r"[^A-Za-z0-9._-]", "_", real).strip("_") + ".lock")


class PortLock:
    def __init__(self, port: str, lock_dir: Path | None = None, owner: str = ""):
        self.port, self.path = port, lock_path(port, lock_dir)
        self.owner = owner or f"pid {os.getpid()}"
        self._fd: int | None = None

    def acquire(self) -> "PortLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise PortBusy(f"{self.port} is owned by {holder} (lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.owner}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "PortLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
