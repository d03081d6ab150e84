"""Boards running the vendor's model-profiler firmware: the Commander driver, through the
stand-in `commander` executable (tests/fixtures), programs a virtual vendor board's flash file,
resets it, and the agent reads its log over a real pty."""
from __future__ import annotations

import json

import pytest

from device_agents import commander as C
from device_agents.agent import FAILED, MEASURED, QUARANTINED, RETRY_ELSEWHERE, AgentConfig
from device_agents.faults import Faults
from device_agents.vendor_agent import VendorAgent
from device_agents.vendor_firmware import model_in_flash
from device_agents.virtual_board import VirtualBoard
from simulator.profiler import profile_model
from tests.conftest import make_firmware_image

MODEL = "tflite_micro_speech.tflite"


def _config(tmp_path, commander_exe, image, **kw) -> AgentConfig:
    return AgentConfig(firmware="mltk-profiler", image=str(image), commander=str(commander_exe),
                       lock_dir=str(tmp_path), profile_timeout_s=kw.pop("timeout_s", 1.5), **kw)


def _calls(vb: VirtualBoard) -> list[str]:
    f = vb.jlink.dir / "calls.log"
    return f.read_text().splitlines() if f.exists() else []


def test_commander_device_info_and_the_flash_check(commander_exe):
    with VirtualBoard(mode="vendor", seed=1) as vb:
        cmd = C.Commander(str(commander_exe), vb.jlink.serial)
        info = cmd.device_info()
        assert info == C.DeviceInfo("EFR32MG24B310F1536IM48", 1_572_864, 262_144, info.unique_id)
        assert info.flash_base_address == 0x0800_0000
        assert C.model_address(info, 1000) == 0x0800_0000 + 1_572_864 - 1004
        big = C.FirmwareImage("x.s37", "0" * 64, 1_500_000, 0x0800_0000 + 1_500_000)
        problem = C.flash_problem(info, big, 80_000)
        assert "80,000 B" in problem and "1,500,000 B" in problem and "1,572,864 B" in problem
        assert C.flash_problem(info, big, 60_000) is None
        # another kit's serial: no such debugger, exit status and Commander's message in one line
        with pytest.raises(C.NoDevice) as e:
            C.Commander(str(commander_exe), "999999999").device_info()
        assert "exit status 1" in str(e.value) and "999999999" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(C.CommanderMissing, match="no executable there"):
        C.find_commander("/nonexistent/commander")


def test_image_once_model_per_variant_and_never_twice(zoo_dir, tmp_path, commander_exe, profiler_image):
    data = (zoo_dir / MODEL).read_bytes()
    other = (zoo_dir / "anomaly_detection.tflite").read_bytes()
    with VirtualBoard(mode="vendor", seed=3, vendor_image=b"") as vb:      # erased flash: no firmware yet
        agent = VendorAgent(vb.port, _config(tmp_path, commander_exe, profiler_image))
        try:
            assert agent.status().part_number == "EFR32MG24B310F1536IM48" and agent.kind == "brd2601b"
            out = agent.run_job("j1", data, "tms")
            assert out.status == MEASURED, out.reason
            rec, sim = out.record, profile_model(data, name="tms")
            assert (rec.target.source, rec.target.firmware, rec.target.board) == \
                   ("device", "mltk-profiler", f"jlink-{vb.jlink.serial}")
            assert [(L.opcode, L.ops, L.macs) for L in rec.layers] == [(L.opcode, L.ops, L.macs) for L in sim.layers]
            assert rec.summary.cpu_cycles > 0 and rec.summary.ram_bytes > 0
            flash = vb.jlink.read_flash()
            image = C.FirmwareImage.load(profiler_image)
            assert model_in_flash(flash) == data and flash[:16] != b"\xff" * 16
            assert out.board.program_cycles == 2 and out.board.image_sha256 == image.sha256
            # the same model again: no write at all, only a reset; a new model: its region only
            assert agent.run_job("j2", data, "tms").status == MEASURED
            assert agent.run_job("j3", other, "ad").status == MEASURED
            st = agent.status()
            assert st.program_cycles == 3 and st.jobs_measured == 3
            flashes = [c for c in _calls(vb) if c.startswith("flash")]
            assert len(flashes) == 3 and flashes[0].endswith(".s37")
            assert all("--binary" in c and f"--serialno {vb.jlink.serial}" in c for c in flashes[1:])
            assert sum(c.startswith("device reset") for c in _calls(vb)) == 3
            assert model_in_flash(vb.jlink.read_flash()) == other
        finally:
            agent.close()


def test_a_model_that_would_overflow_flash_is_refused_before_any_write(zoo_dir, tmp_path, commander_exe):
    image = make_firmware_image(tmp_path / "huge.s37", 1_560_000)
    data = (zoo_dir / MODEL).read_bytes()
    with VirtualBoard(mode="vendor", seed=3) as vb:
        agent = VendorAgent(vb.port, _config(tmp_path, commander_exe, image))
        try:
            out = agent.run_job("j", data, "tms")
            assert out.status == FAILED
            assert out.reason.startswith("refused before flashing: ")
            assert f"{len(data):,} B" in out.reason and "1,560,000 B" in out.reason and "1,572,864 B" in out.reason
            assert not [c for c in _calls(vb) if c.startswith("flash")] and agent.status().program_cycles == 0
        finally:
            agent.close()


@pytest.mark.parametrize("fault, says", [
    ("flashfail", "exit status 1"),
    ("truncate", "no output for 1.5 s"),
    ("nodone", "no output for 1.5 s"),
    ("reboot:1", "restarted mid-log"),
    ("hang", "received nothing"),
])
def test_faulty_vendor_boards_are_handed_back_then_quarantined(zoo_dir, tmp_path, commander_exe,
                                                               profiler_image, fault, says):
    data = (zoo_dir / MODEL).read_bytes()
    with VirtualBoard(mode="vendor", seed=5, faults=Faults.parse([fault])) as vb:
        agent = VendorAgent(vb.port, _config(tmp_path, commander_exe, profiler_image, max_faults=3))
        try:
            first = agent.run_job("j1", data, "tms")
            assert first.status == RETRY_ELSEWHERE and says in first.reason and "\n" not in first.reason
            second = agent.run_job("j2", data, "tms")
            assert second.board.state == QUARANTINED and says in second.board.reason
            assert agent.run_job("j3", data, "tms").status == RETRY_ELSEWHERE     # no more attempts
            if fault == "flashfail":
                assert "Flash programming failed" in first.reason and agent.status().program_cycles == 0
        finally:
            agent.close()


def test_a_layer_the_firmware_refuses_is_recorded_with_its_reason(zoo_dir, tmp_path, commander_exe,
                                                                  profiler_image):
    data = (zoo_dir / MODEL).read_bytes()
    with VirtualBoard(mode="vendor", seed=5, faults=Faults.parse(["unsupported:0"])) as vb:
        agent = VendorAgent(vb.port, _config(tmp_path, commander_exe, profiler_image))
        try:
            out = agent.run_job("j", data, "tms")
            assert out.status == MEASURED
            conv = out.record.layers[0]
            assert conv.opcode == "conv_2d" and conv.reason == "Hardware limits exceeded"
            assert not conv.supported and conv.accelerator_cycles == 0 and out.record.summary.n_unsupported >= 1
        finally:
            agent.close()


def test_no_commander_or_no_debugger_quarantines_at_once(zoo_dir, tmp_path, commander_exe, profiler_image):
    with VirtualBoard(mode="vendor", seed=5) as vb:
        agent = VendorAgent(vb.port, AgentConfig(image=str(profiler_image), commander=str(tmp_path / "nope"),
                                                 lock_dir=str(tmp_path)))
        assert agent.state == QUARANTINED and "--commander" in agent.reason and "no executable" in agent.reason
        agent.close()
        agent = VendorAgent(vb.port, _config(tmp_path, commander_exe, profiler_image), serial_number="123456789")
        assert agent.state == QUARANTINED and "No J-Link adapter with serial number 123456789" in agent.reason
        agent.close()


def test_the_virtual_jlink_says_what_commander_reports(commander_exe):
    with VirtualBoard(kind="brd4186c", mode="vendor", seed=1) as vb:
        info = json.loads((vb.jlink.dir / "device.json").read_text())
        assert info["port"] == vb.port and info["part_number"] == "EFR32MG24B210F1536IM48"
        from device_agents.discovery import jlink_serial
        assert jlink_serial(vb.port) == vb.jlink.serial
    assert not vb.jlink.dir.exists()


# --- fuzzed logs: never a crash, never a hang ------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from device_agents import vendor_log as V  # noqa: E402

_MUTATIONS = st.lists(st.tuples(st.sampled_from(["cut", "insert", "drop_line", "dup_line", "digits"]),
                                st.floats(0, 1), st.binary(min_size=1, max_size=24)), min_size=1, max_size=4)


def _mutate(raw: bytes, mutations) -> bytes:
    for kind, where, junk in mutations:
        i = int(where * len(raw))
        lines = raw.split(b"\n")
        j = min(int(where * len(lines)), len(lines) - 1)
        if kind == "cut":
            raw = raw[:i]
        elif kind == "insert":
            raw = raw[:i] + junk + raw[i:]
        elif kind == "drop_line":
            raw = b"\n".join(lines[:j] + lines[j + 1:])
        elif kind == "dup_line":
            raw = b"\n".join(lines[:j + 1] + lines[j:])
        else:
            raw = raw[:i] + bytes(48 + b % 10 for b in junk) + raw[i + len(junk):]
    return raw


@pytest.fixture(scope="module")
def fuzz_rig(zoo_dir, tmp_path_factory, commander_exe, profiler_image):
    tmp = tmp_path_factory.mktemp("fuzz")
    with VirtualBoard(mode="vendor", seed=9) as vb:
        agent = VendorAgent(vb.port, AgentConfig(commander=str(commander_exe), image=str(profiler_image),
                                                 lock_dir=str(tmp), profile_timeout_s=0.3, attempts_per_job=1,
                                                 max_faults=10_000))
        yield vb, agent, (zoo_dir / MODEL).read_bytes()
        agent.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=_MUTATIONS)
def test_fuzzed_logs_never_crash_or_hang_the_agent(fuzz_rig, mutations):
    vb, agent, data = fuzz_rig
    vb.tamper = lambda n, raw: _mutate(raw, mutations)
    try:
        out = agent.run_job("fuzz", data, "tms")
    finally:
        vb.tamper = None
    assert out.status in (MEASURED, RETRY_ELSEWHERE)
    if out.status == MEASURED:    # a log that still parses and agrees with the model's counts
        assert len(out.record.layers) == 4 and out.record.target.firmware == "mltk-profiler"
    else:
        assert out.reason and "\n" not in out.reason


@settings(max_examples=40, deadline=None)
@given(stream=st.binary(max_size=3000), mark=st.booleans())
def test_read_log_on_fuzzed_bytes_returns_or_raises_in_bounded_time(stream, mark):
    import serial
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write((V.START_MARK.encode() + b"\r\n" if mark else b"") + stream)
    try:
        text = V.read_log(port, timeout_s=0.1, total_s=2.0, babble_bytes=1000)
        assert V.START_MARK in text
        try:
            V.parse_log(text)
        except V.VendorLogError:
            pass
    except V.VendorLogError as e:
        assert "\n" not in str(e)
    finally:
        port.close()
