"""The virtual board: its firmware speaks the protocol, its silicon differs from the simulator."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from device_agents import protocol as P
from device_agents.silicon_model import SiliconModel, SiliconParams
from device_agents.transport import BoardError, BoardRebooted, Transport
from device_agents.virtual_board import Faults, VirtualBoard
from simulator.profiler import profile_model


@pytest.fixture(scope="module")
def reports(zoo_dir):
    return json.loads((zoo_dir / "device_reports.json").read_text())


def test_zoo_models_get_the_published_board_numbers(zoo_dir, reports):
    data = (zoo_dir / "image_example1.tflite").read_bytes()
    truth = SiliconModel().truth(profile_model(data, name="image_example1"))
    rep = reports["image_example1"]
    assert truth.source == "device report image_example1"
    assert [L.accelerator_cycles for L in truth.layers] == [r["Acc Cycles"] for r in rep["layers"]]
    assert [L.cpu_cycles for L in truth.layers] == [r["CPU Cycles"] for r in rep["layers"]]
    assert truth.arena_bytes == 85400


def test_other_models_get_the_simulators_profile_scaled():
    silicon = SiliconModel(SiliconParams(), reports_path=None)
    data = open("tests/data/zoo/tflite_micro_speech.tflite", "rb").read()
    profile = profile_model(data)
    truth = silicon.truth(profile)
    assert truth.source == "scaled simulator profile"
    for L, T in zip(profile.layers, truth.layers):
        assert T.cpu_cycles == pytest.approx(L.cpu_cycles * 1.04)
        if L.supported:
            expected = L.accelerator_cycles * 1.16 or max(L.macs, L.ops / 2) / 1.30
            assert T.accelerator_cycles == pytest.approx(expected)
            assert T.accelerator_cycles > 0


def test_noise_is_seeded_small_and_differs_between_boards(zoo_dir):
    silicon = SiliconModel()
    truth = silicon.truth(profile_model((zoo_dir / "keyword_spotting.tflite").read_bytes()))
    a = silicon.measure(truth, 5, 1, np.random.default_rng(1))
    b = silicon.measure(truth, 5, 1, np.random.default_rng(1))
    c = silicon.measure(truth, 5, 1, np.random.default_rng(2))
    assert a == b and a != c
    for (cpu, acc), L in zip(a, truth.layers):
        assert all(abs(x - L.cpu_cycles) <= 0.03 * L.cpu_cycles + 1 for x in cpu)
        assert all(abs(x - L.accelerator_cycles) <= 0.01 * L.accelerator_cycles + 1 for x in acc)


def _upload(t: Transport, data: bytes, sha: bytes | None = None) -> P.Message:
    t.exchange(P.UploadBegin(len(data), sha or hashlib.sha256(data).digest()), 1.0, P.Ack)
    for off in range(0, len(data), 1024):
        t.exchange(P.UploadChunk(off, data[off:off + 1024]), 1.0, P.Ack)
    return t.exchange(P.UploadEnd(), 2.0)


def test_firmware_upload_profile_and_read_back(zoo_dir, reports):
    data = (zoo_dir / "image_example1.tflite").read_bytes()
    with VirtualBoard(seed=5) as vb, Transport(vb.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        ok = _upload(t, data)
        assert ok == P.ModelOk(85400, 10, 12)       # 3 float32 scores
        # a repeated chunk (lost ACK) is acknowledged, a skipped offset is refused
        with pytest.raises(BoardError, match="CHUNK_OFFSET"):
            t.exchange(P.UploadBegin(len(data), hashlib.sha256(data).digest()), 1.0, P.Ack)
            t.exchange(P.UploadChunk(2048, data[2048:3072]), 1.0, P.Ack)
        _upload(t, data)
        done = t.exchange(P.Profile(1, 4), 2.0, P.ProfileDone)
        assert (done.n_layers, done.repeats, done.arena_used_bytes) == (10, 4, 85400)
        conv = t.exchange(P.ReadLayer(1), 1.0, P.Layer)
        assert conv.opcode == 3 and conv.flags & P.LAYER_ON_MVP and len(conv.cpu_cycles) == 4
        assert np.median(conv.mvp_cycles) == pytest.approx(902900, rel=0.01)
        assert np.median(conv.cpu_cycles) == pytest.approx(16100, rel=0.03)
        out = t.exchange(P.ReadOutput(0, 64), 1.0, P.Output)     # test_virtual_board_output.py checks values
        assert out.offset == 0 and len(out.data) == done.output_bytes == 12
    assert vb.stats.profiles_completed == 1 and vb.stats.models_loaded == 2


def test_firmware_checks_sha256_flash_and_arena(zoo_dir):
    data = (zoo_dir / "rock_paper_scissors.tflite").read_bytes()
    with VirtualBoard(seed=1, arena_max_bytes=100_000, model_max_bytes=60_000) as vb, \
            Transport(vb.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        with pytest.raises(BoardError, match="MODEL_TOO_LARGE") as e:
            _upload(t, data)
        assert e.value.error.detail == 60_000
    with VirtualBoard(seed=1, arena_max_bytes=100_000) as vb, Transport(vb.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        with pytest.raises(BoardError, match="SHA256_MISMATCH"):
            _upload(t, data, sha=bytes(32))
        with pytest.raises(BoardError, match="ARENA_TOO_SMALL") as e:
            _upload(t, data)
        assert e.value.error.detail == 137300          # the published runtime memory


def test_reset_reboots_and_forgets_the_model(zoo_dir):
    data = (zoo_dir / "tflite_micro_speech.tflite").read_bytes()
    with VirtualBoard(seed=2) as vb, Transport(vb.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        _upload(t, data)
        t.write(P.to_frame(P.Reset(), 9).encode())
        assert t.wait_for_boot(1.0) == P.Boot(P.BootCause.RESET_COMMAND)
        with pytest.raises(BoardError, match="no model loaded"):
            t.exchange(P.Profile(), 1.0, P.ProfileDone)


def test_reboot_fault_interrupts_profile_with_a_boot(zoo_dir):
    data = (zoo_dir / "tflite_micro_speech.tflite").read_bytes()
    with VirtualBoard(seed=2, faults=Faults(reboot=1.0)) as vb, Transport(vb.port) as t:
        t.exchange(P.Hello(), 1.0, P.Info, boot_ok=True)
        _upload(t, data)
        with pytest.raises(BoardRebooted, match="watchdog"):
            t.exchange(P.Profile(), 1.0, P.ProfileDone)
    assert vb.stats.reboots == 1 and vb.stats.profiles_completed == 0


def test_fault_specs_parse_with_defaults_and_reject_nonsense():
    f = Faults.parse(["hang", "garbage:0.5", "slow:0.1"])
    assert (f.hang, f.garbage, f.slow_s, f.reboot) == (0, 0.5, 0.1, 0.0)
    with pytest.raises(ValueError, match="unknown fault 'melt'"):
        Faults.parse(["melt"])
    with pytest.raises(ValueError, match="probability"):
        Faults.parse(["crc:2"])
