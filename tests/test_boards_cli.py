"""`mvpfarm boards check` and `mvpfarm profile --device` on virtual boards of both firmwares, the
CLI in a subprocess (no Ray), Commander played by the stand-in executable."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_agents.faults import Faults
from device_agents.virtual_board import VirtualBoard
from simulator.profiler import profile_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "zoo" / "tflite_micro_speech.tflite"


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("mode, says", [("protocol", "firmware: mvpfarm protocol (mvpfarm-fw 1.0"),
                                        ("vendor", "firmware: the vendor's model profiler (prints \"Starting")])
def test_boards_check_names_the_firmware_the_kit_and_measures_end_to_end(commander_exe, mode, says):
    with VirtualBoard(mode=mode, seed=2) as vb:
        p = _cli("boards", "check", vb.port, "--commander", str(commander_exe), "--timeout-s", "1")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"{vb.port}: {says}" in out
    assert "kit: part number EFR32MG24B310F1536IM48, flash 1,572,864 B, RAM 262,144 B" in out
    assert f"J-Link {vb.jlink.serial}" in out
    assert "measured the built-in check model (1 layer(s), 73,728 MACs) end to end" in out


@pytest.mark.parametrize("mode, fault, says", [
    ("protocol", "hang", "end-to-end check failed: "),
    ("vendor", "hang", "firmware unknown: no protocol reply to HELLO"),
    ("protocol", "babble", "firmware unknown: no protocol reply to HELLO"),
])
def test_boards_check_fails_on_a_hanging_or_babbling_board_with_one_line(commander_exe, mode, fault, says):
    with VirtualBoard(mode=mode, seed=2, faults=Faults.parse([fault])) as vb:
        p = _cli("boards", "check", vb.port, "--commander", str(commander_exe), "--timeout-s", "0.5",
                 "--profile-timeout-s", "1")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mvpfarm: error: ") and says in lines[0], p.stderr
    if mode == "vendor":
        assert "no reply to Hello within 0.5 s; after a reset through Commander: nothing in 1 s" in lines[0]
    if fault == "babble":
        # the first bytes of the babble, as Python shows bytes (b'...', or b"..." when they hold a ')
        assert re.search(r"[0-9,]+ bytes, not its log: b['\"]", lines[0]), lines[0]


def test_profile_on_a_vendor_board_gives_the_simulators_layers(commander_exe, profiler_image):
    sim = profile_model(MODEL.read_bytes(), name=MODEL.stem)
    with VirtualBoard(mode="vendor", seed=6, vendor_image=b"") as vb:     # the image is programmed first
        p = _cli("profile", str(MODEL), "--device", vb.port, "--format", "json", "--commander", str(commander_exe),
                 "--image", str(profiler_image), "--firmware", "mltk-profiler")
        assert p.returncode == 0, p.stderr
        rec = json.loads(p.stdout)
        assert (rec["target"]["source"], rec["target"]["firmware"]) == ("device", "mltk-profiler")
        assert rec["summary"]["n_layers"] == len(rec["layers"]) == len(sim.layers)
        assert [(L["opcode"], L["ops"], L["macs"]) for L in rec["layers"]] == \
               [(L.opcode, L.ops, L.macs) for L in sim.layers]
        assert (rec["summary"]["ops"], rec["summary"]["macs"]) == (sim.summary.ops, sim.summary.macs)
        assert rec["summary"]["cpu_cycles"] > 0 and rec["summary"]["latency_s"] > 0
        # the firmware found by itself, the simulator's prediction beside the measurement
        p = _cli("profile", str(MODEL), "--device", vb.port, "--compare", "--commander", str(commander_exe))
    assert p.returncode == 0, p.stderr
    assert "Simulator (simulator/board) against the board (device/" in p.stdout
    assert "layer   0 conv_2d" in p.stdout and "ms measured" in p.stdout


def test_profile_on_a_protocol_board_and_bad_device_input():
    with VirtualBoard(seed=6) as vb:
        p = _cli("profile", str(MODEL), "--device", vb.port, "--format", "json")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert (rec["target"]["source"], rec["target"]["firmware"]) == ("device", "mvpfarm-protocol")
    p = _cli("profile", str(MODEL), "--compare")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "mvpfarm: error: --compare compares a board's measurement with the simulator's: add --device [PORT]"]
    p = _cli("agent", "start", "--firmware", "mltk-profiler", "--image", "/nonexistent/p.s37", "--port", "/dev/null")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "firmware image /nonexistent/p.s37" in p.stderr
