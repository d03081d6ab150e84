"""The virtual boards' output tensors, computed by the emulator in a child process of its own.

A virtual board's output tensor is the simulator's emulator run on its model. Run in the board's
own process, numba's import and the loading of its compiled kernels hold the GIL for seconds
(3-4 s measured on a loaded 2-core machine), and every other virtual board that process serves
falls silent on its serial line meanwhile: its agent counts a fault that no real board would
cause. A real board computes on its own core, so the stand-in's emulator gets its own process:
one child per process, started by the first request and shared by that process's boards. A
request blocks only the thread that made it.

The child reads (model bytes, accelerator) pairs from a socket and answers each with the output
tensor's little-endian bytes, or with the reason the emulator could not run the model. It ends
when the socket closes, so it never outlives the process that started it; a child that dies
fails the request it was on, and the next request starts another.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection


class EmulatorFailed(Exception):
    """The emulator could not give this model's output tensor (its message says why)."""


_lock = threading.Lock()
_child: tuple[subprocess.Popen, Connection] | None = None


def output_tensor(tflite_bytes: bytes, accelerator: str) -> bytes:
    """The model's output tensor for an all-zero input, as the board's little-endian bytes.
    Raises EmulatorFailed when the emulator cannot run the model or its process died."""
    global _child
    with _lock:
        if _child is None or _child[0].poll() is not None:
            _child = _start()
        proc, conn = _child
        try:
            conn.send((tflite_bytes, accelerator))
            ok, value = conn.recv()
        except (EOFError, OSError):
            _child = None
            conn.close()
            raise EmulatorFailed(f"the emulator's process ended (exit status {proc.wait()})") from None
    if not ok:
        raise EmulatorFailed(value)
    return value


def stop() -> None:
    """Ends the child, if one is running (it also ends by itself when this process does)."""
    global _child
    with _lock:
        if _child is not None:
            proc, conn = _child
            _child = None
            conn.close()
            proc.wait()


def _start() -> tuple[subprocess.Popen, Connection]:
    ours, theirs = socket.socketpair()
    # the child imports this package from wherever this process found it; in a session of its own,
    # a Ctrl-C meant for this process does not reach it (it ends when the socket closes)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    finally:
        theirs.close()
    return proc, Connection(ours.detach())


def _run(tflite_bytes: bytes, accelerator: str) -> bytes:
    import numpy as np

    from simulator.emulator import compile_model
    from simulator.constant_folding import NP_DTYPES
    from simulator.tflite_reader import read_model
    compiled = compile_model(read_model(tflite_bytes), accelerator)
    tensors = compiled.graph.tensors
    inputs = [np.zeros(tensors[i].shape, NP_DTYPES.get(tensors[i].dtype, np.int8)) for i in compiled.graph.inputs]
    out = compiled.run(inputs)[0]
    return np.ascontiguousarray(out).astype(out.dtype.newbyteorder("<"), copy=False).tobytes()


def _serve(fd: int) -> None:
    conn = Connection(fd)
    while True:
        try:
            tflite_bytes, accelerator = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (True, _run(tflite_bytes, accelerator))
        except Exception as e:   # noqa: BLE001 - an emulator gap or bug is the request's answer
            reply = (False, f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except OSError:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
