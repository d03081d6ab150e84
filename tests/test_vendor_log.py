"""The vendor's model-profiler log: parsed from a virtual board in vendor mode over a real pty."""
from __future__ import annotations

import json

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agents import vendor_log as V
from device_agents.virtual_board import VirtualBoard
from simulator.profiler import profile_model

SAMPLE = """\
Starting Model Profiler
Tensor runtime memory: 85.4k
Profiler Metrics:
CPU clock: 78.0MHz
Op0-Quantize
36.9k OPs
0 MACs
Op1-Conv2D
1.2M OPs
497.7k MACs
Profiling model ...
Op0-Quantize
4.032 ms
314.5k CPU cycles
0 Accelerator cycles
Op1-Conv2D
11.4 ms
16.1k CPU cycles
902.9k Accelerator cycles
mvp.stall=1.5k
done
"""


def test_numbers_with_k_m_g_suffixes():
    assert V.parse_number("314.5", "k") == 314_500
    assert V.parse_number("1.2", "M") == 1_200_000
    assert V.parse_number("2", "G") == 2e9
    assert V.format_number(902_900) == "902.9k" and V.format_number(0) == "0"


def test_sample_log_parses_into_layers():
    log = V.parse_log(SAMPLE)
    assert (log.clock_hz, log.runtime_memory_bytes) == (78_000_000, 85_400)
    conv = log.layers[1]
    assert (conv.op_name, conv.ops, conv.macs) == ("Conv2D", 1_200_000, 497_700)
    assert (conv.cpu_cycles, conv.accelerator_cycles, conv.time_s) == (16_100, 902_900, 0.0114)
    assert conv.counters == {"mvp.stall": 1500}
    rec = V.to_record(log, "jlink-440123456", name="two_layers")
    assert rec.target.source == "device" and rec.target.board == "jlink-440123456"
    assert rec.summary.accelerator_cycles == 902_900 and rec.summary.ram_bytes == 85_400
    assert [L.supported for L in rec.layers] == [False, True]


def test_layers_the_firmware_refused_carry_its_reason():
    text = SAMPLE.replace("Profiler Metrics:", "Op1-Conv2D not supported: Hardware limits exceeded\n"
                          "Profiler Metrics:").replace("902.9k Accelerator", "0 Accelerator")
    rec = V.to_record(V.parse_log(text), "b")
    assert rec.layers[1].reason == "Hardware limits exceeded" and not rec.layers[1].supported
    assert rec.summary.n_unsupported == 1


@pytest.mark.parametrize("text,problem", [
    (SAMPLE.replace("done\n", ""), "before \"done\""),
    (SAMPLE.replace("CPU clock: 78.0MHz\n", ""), "CPU clock"),
    (SAMPLE.replace("16.1k CPU cycles\n", ""), "Op1-Conv2D has no measurements"),
    ("Starting Model Profiler\nHardFault!\ndone\n", "failure"),
])
def test_incomplete_or_failed_logs_say_what_is_wrong(text, problem):
    with pytest.raises(V.VendorLogError, match=problem):
        V.parse_log(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400) | st.lists(st.sampled_from(SAMPLE.splitlines() + ["Op9-X", "1e9 MACs", ""]),
                                         max_size=40).map("\n".join))
def test_fuzzed_logs_raise_only_vendor_log_errors(text):
    try:
        V.parse_log(text)
    except V.VendorLogError:
        pass


def test_vendor_firmware_log_read_from_a_pty_matches_the_published_report(zoo_dir):
    name = "keyword_spotting"
    data = (zoo_dir / f"{name}.tflite").read_bytes()
    report = json.loads((zoo_dir / "device_reports.json").read_text())[name]
    with VirtualBoard(mode="vendor", board_id="vb-vendor", seed=4) as vb:
        port = serial.serial_for_url(vb.port, baudrate=V.BAUD)
        vb.flash_model(data)                 # the stand-in for Simplicity Commander
        text = V.read_log(port, timeout_s=5.0)
        port.close()
    rec = V.to_record(V.parse_log(text), "vb-vendor", reference=profile_model(data, name=name))
    assert rec.model.name == name and rec.target.source == "device"
    assert rec.summary.ram_bytes == report["summary"]["RAM, Runtime Memory Size (bytes)"]
    assert len(rec.layers) == len(report["layers"])
    for L, R in zip(rec.layers, report["layers"]):
        # the silicon's noise (<1%) and the log's 4 significant digits
        assert L.accelerator_cycles == pytest.approx(R["Acc Cycles"], rel=0.01, abs=2)
        assert L.cpu_cycles == pytest.approx(R["CPU Cycles"], rel=0.05, abs=2)
        assert L.opcode == R["OpCode"] and L.inputs      # rows carry the model's tensors
    assert rec.summary.accelerator_cycles == pytest.approx(report["summary"]["Accelerator Cycle Count"],
                                                           rel=0.01)


def test_silence_before_done_is_an_error():
    with VirtualBoard(mode="vendor", seed=4) as vb:
        port = serial.serial_for_url(vb.port, baudrate=V.BAUD)
        with pytest.raises(V.VendorLogError, match="no output for 0.3 s"):
            V.read_log(port, timeout_s=0.3)
        port.close()
