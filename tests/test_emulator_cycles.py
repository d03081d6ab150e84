"""Emulated cycles and drift: the programs the emulator executes are the programs the profiler
prices, so per layer their accelerator cycles must be the profiler's; pooling, Conv1D chunks and
the program registers are checked by executing the programs against the reference kernels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.emulator import compile_model, draw_inputs, emulate_profile, run_model
from simulator.mvp_plan import plan_layer
from simulator.profiler import profile_graph
from simulator.timing import load_timing_model
from simulator.tflite_reader import read_model_file

DATA = Path(__file__).parent / "data"
ZOO = sorted((DATA / "zoo").glob("*.tflite"))
TM = load_timing_model("vendor-sim")


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_emulated_cycles_equal_profiler_cycles(path):
    graph = read_model_file(path)
    profile = profile_graph(graph, "mvp", timing="vendor-sim")
    rows = {r["index"]: r for r in compile_model(graph, "mvp").layer_info(TM)}
    mvp_layers = 0
    for layer in profile.layers:
        row = rows.get(layer.index)
        if row is None:              # folded at compile time (shape arithmetic): no kernel runs
            assert layer.accelerator_cycles == 0
            continue
        assert row["accelerator_cycles"] == layer.accelerator_cycles, \
            f"{path.stem} layer {layer.index} ({layer.opcode}): emulated {row['accelerator_cycles']}, " \
            f"profiled {layer.accelerator_cycles}"
        assert row["on_mvp"] == (layer.accelerator_cycles > 0 or plan_layer(graph, graph.operators[layer.index]).runs_on_mvp)
        mvp_layers += row["on_mvp"]
    assert mvp_layers > 0


def test_reference_mode_has_no_accelerator_cycles():
    graph = read_model_file(DATA / "zoo" / "image_example1.tflite")
    rows = compile_model(graph, "none").layer_info(TM)
    assert rows and all(r["accelerator_cycles"] == 0 and not r["on_mvp"] for r in rows)


def test_emulate_profile_reports_cycles_and_drift():
    path = DATA / "zoo" / "image_example1.tflite"
    prof = emulate_profile(path, "mvp", "vendor-sim", seed=0, count=2)
    record = profile_graph(read_model_file(path), "mvp", timing="vendor-sim")
    assert prof["accelerator_cycles"] == record.summary.accelerator_cycles > 0
    by_index = {L["index"]: L for L in prof["layers"]}
    conv = by_index[1]
    assert conv["on_mvp"] and conv["mvp_kernel"] == "conv_2d/mvp"
    # binary16 moves some outputs of the first conv by one step, never more
    assert 0 < conv["drift_elements"] < conv["elements"] // 10 and conv["drift_max_steps"] == 1.0
    assert by_index[0]["drift_elements"] == 0            # quantize runs the reference kernel
    assert prof["outputs"]["elements"] == 2 * 3 and prof["outputs"]["drift_max_steps"] >= 0
    none = emulate_profile(path, "none", "vendor-sim", seed=0, count=1)
    assert none["accelerator_cycles"] == 0 and none["outputs"]["drift_elements"] == 0


def test_run_model_compare_reference_rows():
    data = (DATA / "zoo" / "audio_example1.tflite").read_bytes()
    g = read_model_file(DATA / "zoo" / "audio_example1.tflite")
    result = run_model(data, draw_inputs(g, 0, 1), "mvp", compare_reference=True)
    rows = {r["opcode"]: r for r in result.layers}
    assert rows["max_pool_2d"]["on_mvp"] and rows["max_pool_2d"]["accelerator_cycles"] > 0
    # MAX2A and CLIP2A on int8 values are exact in binary16: the generic max-pool programs must
    # reproduce the reference kernel exactly (they walk every window row and every channel)
    assert rows["max_pool_2d"]["drift_elements"] == 0
    assert all(r["drift_elements"] <= r["elements"] for r in result.layers)


@pytest.mark.parametrize("model", ["maxpool_2x2", "avgpool_2x2", "avgpool_3x3_s1", "conv1d_wide",
                                   "residual_add_relu", "mul_branches"])
def test_corpus_mvp_layers_stay_within_one_step_of_reference(model):
    """Every MVP layer, executed as programs, lands within one step of the reference kernel on
    the same inputs, and mostly on it: the generic pooling windows, the Conv1D chunks and CPU
    edge columns, and the ADD/MUL registers taken from the programs."""
    path = DATA / "corpus" / f"{model}.tflite"
    prof = emulate_profile(path, "mvp", "vendor-sim", seed=1, count=1)
    on_mvp = [L for L in prof["layers"] if L["on_mvp"]]
    assert on_mvp
    for L in on_mvp:
        assert L["drift_max_steps"] <= 1.0, L
        assert L["drift_elements"] <= 0.25 * L["elements"], L   # fp16 average pool: ~10%
        if L["opcode"] == "max_pool_2d":
            assert L["drift_elements"] == 0


def test_conv1d_chunks_write_their_own_columns():
    graph = read_model_file(DATA / "corpus" / "conv1d_wide.tflite")
    op = next(o for o in graph.operators if o.opcode == "conv_2d")
    plan = plan_layer(graph, op)
    assert plan.kernel == "conv_2d/mvp-conv1d"
    mains = [p for p in plan.launches() if p.kind == "conv_2d/main"]
    starts = sorted({p.arrays[4].byte_offset for p in mains})
    assert len(starts) >= 2 and starts[0] > 0             # column 0 is a CPU (SAME padding) column
    columns = {wk["out_x"] for wk in plan.cpu_work if wk["op"] == "conv1d_column"}
    assert columns == {0, graph.tensors[op.outputs[0]].shape[2] - 1}
    assert sum(TM.program_cycles(p) for p in plan.launches() if TM.counts_kind(p.kind)) \
        == TM.accelerator_cycles(plan)


def test_programs_carry_their_registers():
    """FC scaler (R3) and per-unit bias (R5), ADD's offsets and multipliers (R0-R5): set in the
    programs, not by the executor."""
    g = read_model_file(DATA / "corpus" / "fc_accum4000.tflite")
    plan = plan_layer(g, g.operators[0])
    launches = [p for p in plan.launches() if p.kind == "fully_connected/large"]
    regs = [dict((r, re) for r, re, _ in p.registers) for p in launches]
    assert len({r[3] for r in regs}) == 1 and regs[0][3] > 0
    bias = g.tensors[g.operators[0].inputs[2]].data
    assert [r[5] for r in regs] == [float(np.float16(b * 2.0 ** -15)) for b in bias]
    g = read_model_file(DATA / "corpus" / "residual_add_relu.tflite")
    add = next(o for o in g.operators if o.opcode == "add")
    prog = next(iter(plan_layer(g, add).launches()))
    r = {i: re for i, re, _ in prog.registers}
    s1 = float(g.tensors[add.inputs[0]].scale[0])
    assert set(r) == {0, 1, 2, 3, 4, 5} and r[1] == float(np.float16(s1)) and r[5] > 1
