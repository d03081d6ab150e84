"""MVP mode against the vendor simulator's outputs (the oracle's `mvp` runs): at least 99% of
output elements identical and none more than one quantization step off; plus the interpreter's
building blocks (program execution, loop semantics) on hand-built programs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator import mvp_exec
from simulator.emulator import compile_model, emulate_file
from simulator.mvp_program import COL, ROW, Load, ProgramBuilder, Store
from simulator.tflite_reader import read_model_file

DATA = Path(__file__).parent / "data"

# Known deviations, with the reason (kept visible rather than hidden by a looser bound): none at
# the moment. (keyword_spotting_mobilenetv2's depthwise layers that the vendor simulator may reject
# at random run on the MVP here, as on the board; the oracle's recorded run accepted them.)
KNOWN: dict[str, str] = {}


def _records(directory: Path) -> list[tuple[Path, dict]]:
    path = directory / "mltk_outputs.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r["accelerator"] == "mvp" and "results" in r:
                out.append((directory, r))
    return out


RECORDS = _records(DATA / "zoo") + _records(DATA / "corpus")


def _compare(directory: Path, record: dict) -> tuple[int, int, float]:
    mine = emulate_file(directory / record["model"], "mvp", record["seed"], len(record["results"]))
    same = total = 0
    worst = 0.0
    for want, got in zip(record["results"], mine["results"]):
        assert got["input_sha1"] == want["input_sha1"]
        w = np.asarray(want["output"], dtype=np.float64)
        g = np.asarray(got["output"], dtype=np.float64)
        same += int((w == g).sum())
        total += w.size
        if w.size:
            worst = max(worst, float(np.abs(w - g).max()))
    return same, total, worst


def _step(directory: Path, model: str) -> float:
    """One quantization step of the model's output (1 for int8 outputs)."""
    g = read_model_file(directory / model)
    out = g.tensors[g.outputs[0]]
    if out.dtype == "int8":
        return 1.0
    producer = next(op for op in g.operators if g.outputs[0] in op.outputs)
    return float(g.tensors[producer.inputs[0]].scale[0]) * 1.0001


@pytest.mark.parametrize("directory,record", RECORDS, ids=[r["model"] for _, r in RECORDS])
def test_mvp_outputs_match_vendor_simulator(directory, record):
    if record["model"] in KNOWN:
        pytest.xfail(KNOWN[record["model"]])
    same, total, worst = _compare(directory, record)
    assert worst <= _step(directory, record["model"]), f"an output is {worst} off"
    assert same >= 0.99 * total, f"only {same}/{total} outputs identical"


def test_zoo_mvp_outputs_mostly_identical_overall():
    same = total = 0
    for directory, record in _records(DATA / "zoo"):
        s, t, _ = _compare(directory, record)
        same, total = same + s, total + t
    assert total > 2000 and same >= 0.99 * total


def test_mvp_mode_runs_layers_on_the_mvp():
    cm = compile_model(read_model_file(DATA / "zoo" / "image_example1.tflite"), "mvp")
    kernels = {layer["opcode"]: layer["kernel"] for layer in cm.layer_info()}
    assert kernels["conv_2d"] == "mvp" and kernels["fully_connected"] == "mvp"
    assert kernels["softmax"] == "reference" and kernels["quantize"] == "reference"


def _run(program, buffers: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    memory = mvp_exec.Memory({name: (arr.size * unit, unit) for name, (arr, unit) in buffers.items()})
    mem = np.zeros(memory.size)
    for name, (arr, _) in buffers.items():
        memory.view(mem, name, arr.size)[:] = arr
    mvp_exec.run_programs(mem, *mvp_exec.encode_programs([program], memory), False, True)
    return {name: memory.view(mem, name, arr.size).copy() for name, (arr, _) in buffers.items()}


def test_interpreter_dot_product_with_loops_and_fp16_rounding():
    # out[r] = sum_c in[r, c] * w[c] * 2^-3 for a 3x4 int8 matrix, accumulating in binary16
    x = np.array([[1, 2, 3, 4], [-5, 6, -7, 8], [100, 100, 100, 100]], dtype=np.float64)
    w = np.array([3, -1, 2, 1], dtype=np.float64)
    b = ProgramBuilder("test/dot")
    b.reg(0, 0.125)
    b.array(0, "input", 0, "int8", False, (1, 3, 4), (0, 4, 1))
    b.array(1, "filter", 0, "int8", False, (1, 1, 4), (0, 0, 1))
    b.array(2, "output", 0, "binary16", False, (1, 1, 3), (0, 0, 1))
    b.begin_loop(3)
    b.compute("CLEAR", z=5)
    b.begin_loop(4)
    b.compute("MULR2A", z=6, x=6, y=0, loads=[Load(6, 0, (COL,)), Load(7, 1, (COL,))])
    b.compute("MACR2A", z=5, x=6, y=7, a=5)
    b.end_loop()
    b.postloop_incr(0, ROW)
    b.compute("NOOP", store=Store(5, 2, (COL,)))
    b.end_loop()
    out = _run(b.build(), {"input": (x.ravel(), 1), "filter": (w, 1), "output": (np.zeros(3), 2)})
    expect = (x * 0.125) @ w
    assert np.array_equal(out["output"], expect)   # small integers: exact in binary16
    # a case that rounds: above 2048 the binary16 step is 2, so 2048 + 1 ties back to 2048
    # (even significand) at each of AACC's two additions
    b2 = ProgramBuilder("test/round")
    b2.reg(0, 2048.0)
    b2.reg(1, 1.0)
    b2.array(0, "output", 0, "binary16", False, (1, 1, 1), (0, 0, 1))
    b2.compute("AACC", z=2, x=0, y=1, a=1, store=Store(2, 0))
    out = _run(b2.build(), {"output": (np.zeros(1), 2)})
    assert out["output"][0] == 2048.0


def test_int8_store_saturates_and_complex_lanes_pair_bytes():
    b = ProgramBuilder("test/store")
    b.reg(0, 2.0, 2.0)
    b.array(0, "input", 0, "int8", True, (1, 1, 2), (0, 0, 1))
    b.array(1, "output", 0, "int8", True, (1, 1, 2), (0, 0, 1))
    b.begin_loop(2)
    b.compute("MULR2A", z=3, x=2, y=0, loads=[Load(2, 0, (COL,))], store=Store(3, 1, (COL,)))
    b.end_loop()
    x = np.array([100, -3, 50, -100], dtype=np.float64)   # pairs (re, im) in byte order
    out = _run(b.build(), {"input": (x, 1), "output": (np.zeros(4), 1)})
    assert out["output"].tolist() == [127, -6, 100, -128]
