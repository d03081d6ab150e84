"""The record's one summary builder and one device-target builder keep the JSON contract."""
from __future__ import annotations

from conftest import DATA
from simulator.profiler import profile_file
from simulator.record import ProfileRecord, Summary, Target


def test_summary_is_the_sum_of_the_layers_and_the_contract_holds():
    record = profile_file(DATA / "zoo" / "tflite_micro_speech.tflite")
    s, layers = record.summary, record.layers
    assert (s.ops, s.macs, s.n_layers) == (sum(L.ops for L in layers), sum(L.macs for L in layers), 4)
    assert s.cpu_cycles == sum(L.cpu_cycles for L in layers)
    assert s.latency_s == sum(L.latency_s for L in layers)
    # unsupported: the layers that give a reason for falling back to the CPU (none here: the
    # large fully_connected runs on the MVP), unless the caller counts otherwise
    assert s.n_unsupported == sum(1 for L in layers if L.reason is not None) == 0
    assert Summary.of_layers(layers, 1, 2, n_unsupported=5).n_unsupported == 5
    refused = profile_file(DATA / "corpus" / "fc_units1100.tflite")
    assert refused.summary.n_unsupported == 1 == Summary.of_layers(refused.layers, 1, 2).n_unsupported
    assert list(record.to_dict()["summary"]) == [
        "flash_bytes", "ram_bytes", "ops", "macs", "n_layers", "n_unsupported", "accelerator_cycles",
        "cpu_cycles", "latency_s"]
    doubled = [L.__class__(**{**L.__dict__, "cpu_cycles": 2 * L.cpu_cycles}) for L in layers]
    again = s.retimed(doubled)
    assert (again.cpu_cycles, again.ops, again.ram_bytes) == (2 * s.cpu_cycles, s.ops, s.ram_bytes)
    assert ProfileRecord.from_json(record.to_json()) == record


def test_device_target():
    t = Target.device(78_000_000, "brd2601b-0")
    assert t.__dict__ == {"accelerator": "mvp", "clock_hz": 78_000_000, "timing": "measured",
                          "source": "device", "board": "brd2601b-0", "firmware": None}
    assert Target.device(78_000_000, "jlink-1", firmware="mltk-profiler").firmware == "mltk-profiler"
