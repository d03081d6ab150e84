"""The virtual board's output tensor: READ_OUTPUT returns what the emulator computes for the
all-zero input the firmware profiles with, byte for byte."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from device_agents import protocol as P
from device_agents.transport import BoardError, Transport
from device_agents.virtual_board import VirtualBoard
from simulator.emulator import compile_model
from simulator.tflite_reader import read_model

MODELS = ["keyword_spotting_mobilenetv2", "image_example1", "tflite_micro_speech", "anomaly_detection"]


def _emulated(data: bytes, accelerator: str) -> np.ndarray:
    compiled = compile_model(read_model(data), accelerator)
    t = compiled.graph.tensors[compiled.graph.inputs[0]]
    x = np.zeros(t.shape, dtype=np.int8 if t.dtype == "int8" else np.float32)
    return compiled.run([x])[0]


def _load(t: Transport, data: bytes) -> P.ModelOk:
    t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
    t.exchange(P.UploadBegin(len(data), hashlib.sha256(data).digest()), 1.0, P.Ack)
    for off in range(0, len(data), 1024):
        t.exchange(P.UploadChunk(off, data[off:off + 1024]), 1.0, P.Ack)
    return t.exchange(P.UploadEnd(), 5.0, P.ModelOk)


def _read_output(t: Transport, n_bytes: int, chunk: int) -> bytes:
    out = b""
    while len(out) < n_bytes:
        # the first read waits for the virtual board's emulator, which a loaded CI machine slows down
        reply = t.exchange(P.ReadOutput(len(out), chunk), 30.0 if not out else 1.0, P.Output)
        assert reply.offset == len(out) and reply.data
        out += reply.data
    return out


@pytest.mark.parametrize("name", MODELS)
def test_read_output_is_the_emulators_output_on_a_zero_input(zoo_dir, name):
    data = (zoo_dir / f"{name}.tflite").read_bytes()
    expected = {acc: _emulated(data, acc) for acc in ("mvp", "none")}
    with VirtualBoard(seed=3) as vb, Transport(vb.port) as t:
        ok = _load(t, data)
        assert ok.output_bytes == expected["mvp"].nbytes
        for acc in ("mvp", "none"):
            done = t.exchange(P.Profile(1, 2, use_accelerator=acc == "mvp"), 10.0, P.ProfileDone)
            assert done.output_bytes == expected[acc].nbytes
            raw = _read_output(t, done.output_bytes, chunk=7)      # odd chunks: offsets must line up
            got = np.frombuffer(raw, dtype=expected[acc].dtype.newbyteorder("<")).reshape(expected[acc].shape)
            np.testing.assert_array_equal(got, expected[acc])
        # reading is repeatable, and past the end is refused with the size
        assert t.exchange(P.ReadOutput(0, 4096), 1.0, P.Output).data == raw
        with pytest.raises(BoardError, match="BAD_PAYLOAD") as e:
            t.exchange(P.ReadOutput(len(raw) + 1, 16), 1.0, P.Output)
        assert e.value.error.detail == len(raw)
    assert not [ev for ev in vb.stats.events if ev.startswith("no output tensor")]


def test_the_output_is_not_constant_across_models(zoo_dir):
    """Guards against a firmware that returns zeros: the models' zero-input outputs differ and
    are not all zero."""
    outs = [_emulated((zoo_dir / f"{n}.tflite").read_bytes(), "mvp") for n in MODELS]
    assert any(np.any(o != 0) for o in outs)
    assert len({o.tobytes() for o in outs}) == len(outs)


def test_no_output_before_profile_and_after_a_new_upload(zoo_dir):
    data = (zoo_dir / "tflite_micro_speech.tflite").read_bytes()
    with VirtualBoard(seed=4) as vb, Transport(vb.port) as t:
        _load(t, data)
        with pytest.raises(BoardError, match="BAD_STATE"):
            t.exchange(P.ReadOutput(0, 16), 1.0, P.Output)
        t.exchange(P.Profile(0, 1), 5.0, P.ProfileDone)
        assert len(t.exchange(P.ReadOutput(0, 16), 1.0, P.Output).data) == 4
        t.exchange(P.UploadBegin(len(data), hashlib.sha256(data).digest()), 1.0, P.Ack)
        with pytest.raises(BoardError, match="BAD_STATE"):        # the results went with the old model
            t.exchange(P.ReadOutput(0, 16), 1.0, P.Output)
