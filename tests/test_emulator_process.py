"""The virtual boards' emulator in its own process: the process that serves the boards never
loads numba (whose import and kernel loading held the GIL for seconds and silenced sibling
boards), a model it cannot run gets the reason, a child that dies fails only the request it was
on, and a child never outlives the process that started it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device_agents import emulator_process as ep

ROOT = Path(__file__).resolve().parent.parent


def _zeros_output(data: bytes) -> bytes:
    from simulator.emulator import compile_model
    from simulator.tflite_reader import read_model
    compiled = compile_model(read_model(data), "mvp")
    t = compiled.graph.tensors[compiled.graph.inputs[0]]
    out = compiled.run([np.zeros(t.shape, np.int8 if t.dtype == "int8" else np.float32)])[0]
    return out.astype(out.dtype.newbyteorder("<")).tobytes()


def _pid_gone(pid: int, wait_s: float) -> bool:
    """Whether `pid` has exited within `wait_s` (a zombie nobody has reaped yet counts as exited)."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_the_caller_never_loads_numba_and_gets_the_emulators_bytes(zoo_dir):
    data = (zoo_dir / "image_example1.tflite").read_bytes()
    script = textwrap.dedent(f"""
        import sys
        from device_agents.emulator_process import output_tensor
        out = output_tensor(open({str(zoo_dir / 'image_example1.tflite')!r}, 'rb').read(), 'mvp')
        print(out.hex(), 'numba' in sys.modules, 'simulator.emulator' in sys.modules)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    hex_out, numba_loaded, emulator_loaded = res.stdout.split()
    assert bytes.fromhex(hex_out) == _zeros_output(data)
    assert (numba_loaded, emulator_loaded) == ("False", "False")


def test_a_model_the_emulator_cannot_run_gets_the_reason(zoo_dir):
    with pytest.raises(ep.EmulatorFailed, match=r"^ModelError: model: not a \.tflite flatbuffer "
                                                r"\(file identifier b'\\x00\\x00\\x00\\x00'"):
        ep.output_tensor(b"\x00" * 64, "mvp")
    good = (zoo_dir / "image_example1.tflite").read_bytes()
    assert ep.output_tensor(good, "mvp") == _zeros_output(good)   # the same child serves on


def test_a_child_that_dies_fails_only_its_request(zoo_dir):
    data = (zoo_dir / "image_example1.tflite").read_bytes()
    want = _zeros_output(data)
    assert ep.output_tensor(data, "mvp") == want
    proc = ep._child[0]
    proc.kill()                                  # dead between requests: the next one restarts it
    proc.wait()
    assert ep.output_tensor(data, "mvp") == want and ep._child[0].pid != proc.pid
    # dead in the middle of a request: stopped, so it cannot answer before it is killed
    proc = ep._child[0]
    os.kill(proc.pid, signal.SIGSTOP)
    box: dict = {}

    def ask():
        try:
            box["out"] = ep.output_tensor(data, "mvp")
        except ep.EmulatorFailed as e:
            box["error"] = str(e)
    t = threading.Thread(target=ask)
    t.start()
    t.join(0.5)
    assert t.is_alive()                          # waiting for the stopped child
    proc.kill()
    t.join(30)
    assert box == {"error": "the emulator's process ended (exit status -9)"}
    assert ep.output_tensor(data, "mvp") == want
    ep.stop()
    assert ep._child is None and proc.poll() is not None


def test_the_child_ends_with_the_process_that_started_it(zoo_dir):
    script = textwrap.dedent(f"""
        import sys, time
        from device_agents import emulator_process as ep
        ep.output_tensor(open({str(zoo_dir / 'image_example1.tflite')!r}, 'rb').read(), 'mvp')
        print(ep._child[0].pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert not _pid_gone(child_pid, 0.5)     # alive while its parent is
        parent.kill()                            # SIGKILL: no atexit, no cleanup code runs
        parent.wait()
        assert _pid_gone(child_pid, 30)
    finally:
        parent.kill()
