"""Accelerator cycles of the vendor-sim timing model against the vendor simulator, and the
analytic execution counts against a step-by-step walk of the MVP's loop rules."""
from __future__ import annotations

import json

import pytest

from conftest import DATA, oracle_ids, oracle_profiles
from simulator.errors import ModelError
from simulator.mvp_plan import plan_layer
from simulator.mvp_program import Program, ProgramBuilder, execution_counts
from simulator.timing import load_timing_model
from simulator.tflite_reader import read_model_file

MVP_CASES = [c for c in oracle_profiles() if c[1] == "mvp"]
TM = load_timing_model("vendor-sim")


@pytest.mark.parametrize("path,acc,result", MVP_CASES, ids=oracle_ids(MVP_CASES))
def test_vendor_sim_cycles_match_oracle(path, acc, result):
    """MAPE <= 5% per model and error <= 10% per layer, over layers with nonzero oracle cycles."""
    graph = read_model_file(path)
    errors = []
    for op, layer in zip(graph.operators, result["layers"]):
        plan = plan_layer(graph, op)
        ours = TM.accelerator_cycles(plan) if plan.runs_on_mvp else 0
        oracle = layer.get("accelerator_cycles", 0)
        if oracle == 0:
            assert ours == 0, f"{path.stem} layer {layer['index']}: oracle 0, ours {ours}"
            continue
        err = abs(ours - oracle) / oracle
        assert err <= 0.10, f"{path.stem} layer {layer['index']} ({layer['opcode']}): ours {ours}, oracle {oracle}"
        errors.append(err)
    if errors:
        assert sum(errors) / len(errors) <= 0.05


def test_fc_cycles_formula():
    """anomaly_detection's 640->128 FC: 128 outputs x (320 pair iterations x 3 + 4) cycles."""
    graph = read_model_file(DATA / "zoo" / "anomaly_detection.tflite")
    plan = plan_layer(graph, graph.operators[2])
    assert TM.accelerator_cycles(plan) == 128 * (320 * 3 + 4) == 123392


def _walk(program: Program) -> tuple[list[int], dict]:
    """Executes the control flow instruction by instruction with the hardware's loop rules: at an
    END instruction the innermost loop ending there branches back, or, once exhausted, resets its
    counter and hands over to the next enclosing loop ending there."""
    n = len(program.instructions)
    counts, trans = [0] * n, {}
    done = [0] * len(program.loops)
    pc, prev = 0, None
    while pc < n:
        counts[pc] += 1
        if prev is not None:
            trans[(prev, pc)] = trans.get((prev, pc), 0) + 1
        prev, nxt = pc, pc + 1
        ending = sorted((k for k, L in enumerate(program.loops) if L.end == pc), reverse=True)
        for k in ending:
            done[k] += 1
            if done[k] < program.loops[k].iterations:
                nxt = program.loops[k].begin
                break
            done[k] = 0
        pc = nxt
    return counts, trans


def _programs_of(model: str, layers: list[int]) -> list[Program]:
    graph = read_model_file(DATA / "zoo" / f"{model}.tflite")
    out = []
    for i in layers:
        out += [p for p, _ in plan_layer(graph, graph.operators[i]).programs]
    return out


@pytest.mark.parametrize("model,layers", [
    ("keyword_spotting_mobilenetv2", [0, 1, 3, 26, 41]),  # conv, generic + opt depthwise, add
    ("audio_example1", [0, 1, 2, 6]),                      # generic depthwise x8, conv, max pool, FC
    ("image_example1", [2, 5]),                             # average pool generic and optimized
    ("anomaly_detection", [7]),
])
def test_analytic_counts_equal_a_step_by_step_walk(model, layers):
    programs = _programs_of(model, layers)
    assert programs
    for program in programs:
        counts, trans = _walk(program)
        got = execution_counts(program)
        assert list(got.per_instruction) == counts, program.kind
        assert {k: v for k, v in got.transitions.items() if v} == trans, program.kind


def test_aggregated_programs_equal_their_launches():
    """Counting identical launches must give the cycles of running every launch."""
    graph = read_model_file(DATA / "zoo" / "keyword_spotting_mobilenetv2.tflite")
    for i in (3, 9, 41):  # add, optimized depthwise (two plans with per-pixel expansion)
        plan = plan_layer(graph, graph.operators[i])
        launches = list(plan.launches())
        assert len(launches) == plan.n_programs
        assert sum(TM.program_cycles(p) for p in launches) == TM.accelerator_cycles(plan)
    dw = plan_layer(graph, graph.operators[9])
    assert dw.n_programs == 15 * 13  # one optimized program per output pixel


def test_stall_rule():
    """One cycle per instruction, plus one when the next instruction reads the previous one's
    result as X (even with a load in flight); reading it as the accumulate operand A is free."""
    b = ProgramBuilder("t")
    b.begin_loop(10)
    b.compute("MACR2A", z=6, x=6, y=0, a=1)
    b.compute("MACR2A", z=5, x=6, y=7, a=5)   # X = previous Z: stall
    b.compute("MACR2A", z=4, x=7, y=0, a=5)  # A = previous Z: no stall
    b.end_loop()
    assert TM.program_cycles(b.build()) == 10 * 4


def test_timing_model_by_path_and_unknown_name(tmp_path):
    custom = tmp_path / "slow.json"
    custom.write_text(json.dumps({"name": "slow", "cycles_per_instruction": 2, "raw_stall_cycles": 0}))
    tm = load_timing_model(str(custom))
    assert tm.name == "slow"
    graph = read_model_file(DATA / "zoo" / "anomaly_detection.tflite")
    plan = plan_layer(graph, graph.operators[2])
    assert tm.accelerator_cycles(plan) == 2 * 128 * (320 * 2 + 3)
    with pytest.raises(ModelError, match="unknown timing model 'nope'"):
        load_timing_model("nope")
