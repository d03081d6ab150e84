"""`mvpfarm profile` as a user runs it: a real process, its output, its exit status."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from tests.conftest import DATA

ZOO = DATA / "zoo"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_json_contract():
    p = run("profile", str(ZOO / "image_example1.tflite"), "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d) >= {"model", "target", "summary", "layers"}
    assert set(d["model"]) >= {"name", "sha256", "flash_bytes", "inputs", "outputs"}
    assert d["target"] == {"accelerator": "mvp", "clock_hz": 78_000_000, "timing": "board",
                           "source": "simulator", "board": None}
    assert set(d["summary"]) >= {"flash_bytes", "ram_bytes", "ops", "macs", "n_layers", "n_unsupported",
                                 "accelerator_cycles", "cpu_cycles", "latency_s"}
    assert d["summary"]["flash_bytes"] == 15008 and d["summary"]["macs"] == 1196928
    layer = d["layers"][1]
    assert set(layer) >= {"index", "opcode", "ops", "macs", "supported", "reason", "accelerator_cycles",
                          "cpu_cycles", "latency_s", "inputs", "outputs", "options"}
    assert layer["opcode"] == "conv_2d" and layer["inputs"][0]["shape"] == [1, 96, 96, 1]
    assert layer["options"]["stride_h"] == 2
    assert d["summary"]["latency_s"] == pytest.approx(sum(L["latency_s"] for L in d["layers"]))


def test_several_models_json_is_a_list():
    p = run("profile", str(ZOO / "audio_example1.tflite"), str(ZOO / "autoencoder_example.tflite"),
            "--format", "json", "--accelerator", "none")
    d = json.loads(p.stdout)
    assert [r["model"]["name"] for r in d] == ["audio_example1", "autoencoder_example"]
    assert all(r["summary"]["accelerator_cycles"] == 0 for r in d)
    assert all(not L["supported"] for r in d for L in r["layers"])


def test_csv_one_row_per_layer():
    p = run("profile", str(ZOO / "keyword_spotting.tflite"), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 15
    assert rows[1]["opcode"] == "conv_2d" and rows[1]["macs"] == "320000"


def test_table_like_the_vendor():
    p = run("profile", str(ZOO / "audio_example1.tflite"))
    assert p.returncode == 0
    for text in ("Profiling Summary", "Model Layers", "depthwise_conv_2d", "# MACs", "Acc Cycles",
                 "16,000 bytes", "1x59x49x1,1x7x7x8,8"):
        assert text in p.stdout


def test_float32_model_runs_off_the_mvp():
    p = run("profile", str(DATA / "float32" / "float_cnn.tflite"), "--format", "json")
    d = json.loads(p.stdout)
    assert d["summary"]["accelerator_cycles"] == 0
    convs = [L for L in d["layers"] if L["opcode"] in ("conv_2d", "depthwise_conv_2d", "fully_connected")]
    assert convs and all(not L["supported"] and "int8 only" in L["reason"] for L in convs)


@pytest.mark.parametrize("content,needle", [
    (None, "no such file"),
    (b"definitely not a flatbuffer", "not a .tflite flatbuffer"),
    (b"", "only 0 bytes"),
])
def test_bad_input_one_line_exit_2(tmp_path, content, needle):
    path = tmp_path / "bad.tflite"
    if content is not None:
        path.write_bytes(content)
    p = run("profile", str(path))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0]
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_truncated_model_exit_2(tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes((ZOO / "rock_paper_scissors.tflite").read_bytes()[:20000])
    p = run("profile", str(path))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "cut.tflite" in p.stderr


def test_unknown_timing_model_exit_2():
    p = run("profile", str(ZOO / "audio_example1.tflite"), "--timing", "no-such-model")
    assert p.returncode == 2 and "no-such-model" in p.stderr and "Traceback" not in p.stderr


def test_help_documents_every_option():
    p = run("profile", "--help")
    for opt in ("--accelerator", "--timing", "--format", "--clock-hz", "vendor-sim", "table", "json", "csv"):
        assert opt in p.stdout


def test_execute_adds_emulated_cycles_and_drift():
    p = run("profile", str(ZOO / "audio_example1.tflite"), "--execute", "--count", "2", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    ex = d["execution"]
    assert ex["seed"] == 0 and ex["count"] == 2
    # one program model: the emulator executes exactly the cycles the profiler counts
    assert ex["accelerator_cycles"] == d["summary"]["accelerator_cycles"]
    assert [L["execution"]["accelerator_cycles"] for L in d["layers"]] == \
        [L["accelerator_cycles"] for L in d["layers"]]
    assert ex["outputs"]["elements"] == 2 * 6
    # the MVP computes in binary16, so some outputs move against the reference kernels (the oracle
    # shows the same): drift is counted, not hidden
    assert 0 <= ex["outputs"]["drift_elements"] <= ex["outputs"]["elements"]
    assert d["layers"][0]["execution"]["elements"] == 2 * 30 * 25 * 8
    table = run("profile", str(ZOO / "audio_example1.tflite"), "--execute").stdout
    assert "Emu Cycles" in table and "Output drift" in table
