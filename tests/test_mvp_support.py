"""Which layers the MVP runs, against the vendor simulator's verdicts, and the named checks."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, oracle_ids, oracle_profiles
from simulator import mvp_checks
from simulator.mvp_plan import LayerPlan, plan_layer
from simulator.hardware import load_hardware
from simulator.mvp_program import Dim, ProgramBuilder, violations
from simulator.tflite_reader import read_model_file

MVP_CASES = [c for c in oracle_profiles() if c[1] == "mvp"]
ALIGNMENT_QUIRK = "Hardware limits exceeded"


def _skip_unprepared(result: dict) -> None:
    if any("Failed to prepare" in (layer.get("error_msg") or "") for layer in result["layers"]):
        pytest.skip("the vendor simulator failed to prepare this model: its verdicts are not the kernels'")


def _plans(path: Path) -> list[LayerPlan]:
    graph = read_model_file(path)
    return [plan_layer(graph, op) for op in graph.operators]


@pytest.mark.parametrize("path,acc,result", MVP_CASES, ids=oracle_ids(MVP_CASES))
def test_support_matches_oracle(path, acc, result):
    """Per layer, our verdict is the vendor simulator's. The one exception is a depthwise layer that
    only the optimized path can run: MLTK rejects it at random (see mvp_plan's docstring), so
    there we only require that we flag it and that the oracle ran it on the MVP when it accepted it."""
    _skip_unprepared(result)
    plans = _plans(path)
    assert len(plans) == len(result["layers"])
    for plan, layer in zip(plans, result["layers"]):
        where = f"{path.stem} layer {layer['index']} ({layer['opcode']})"
        oracle_supported = layer.get("supported", True)
        if plan.note and "at random" in plan.note:
            assert not plan.supported and plan.reason == ALIGNMENT_QUIRK and plan.runs_on_mvp, where
            assert layer.get("accelerator_cycles", 0) > 0, where
            continue
        if not plan.has_mvp_kernel:
            assert layer.get("accelerator_cycles", 0) == 0, where
            continue
        assert plan.supported == oracle_supported, f"{where}: ours {plan.reason!r}, oracle {layer.get('error_msg')!r}"
        if not oracle_supported and layer.get("error_msg"):
            assert plan.reason == layer["error_msg"], where
        # a layer runs on the MVP exactly when the oracle counts accelerator cycles for it
        assert plan.runs_on_mvp == (layer.get("accelerator_cycles", 0) > 0), where


@pytest.mark.parametrize("path,acc,result", MVP_CASES, ids=oracle_ids(MVP_CASES))
def test_unsupported_count_brackets_oracle(path, acc, result):
    _skip_unprepared(result)
    plans = _plans(path)
    rejected = sum(1 for p in plans if p.has_mvp_kernel and not p.supported)
    random_ones = sum(1 for p in plans if p.note and "at random" in p.note)
    assert rejected - random_ones <= result["summary"]["n_unsupported_layers"] <= rejected


def test_keyword_spotting_mobilenetv2_alignment_quirk_layers():
    """The nine depthwise layers the vendor simulator may reject are exactly those whose generic
    path fails (fewer than 120 MACs per program) while the optimized path is the only option."""
    plans = _plans(DATA / "zoo" / "keyword_spotting_mobilenetv2.tflite")
    flagged = [i for i, p in enumerate(plans) if p.note and "at random" in p.note]
    assert flagged == [17, 21, 29, 33, 37, 41, 45, 49, 54]
    assert all(plans[i].kernel == "depthwise_conv_2d/mvp-opt" for i in flagged)
    # the 2x2x144 ones have a workable generic path, so they are always accepted
    assert plans[57].supported and plans[61].supported


def test_large_fc_is_flagged_but_runs_on_the_mvp():
    plans = _plans(DATA / "zoo" / "tflite_micro_speech.tflite")
    fc = plans[2]
    assert (fc.supported, fc.reason, fc.runs_on_mvp) == (False, "weights_shape[1] (4000) > 2048", True)
    assert fc.kernel == "fully_connected/mvp-large" and fc.n_programs == 4


def test_float32_layers_are_refused_with_the_input_type():
    plans = _plans(DATA / "float32" / "float_cnn.tflite")
    conv = plans[0]
    assert not conv.supported and conv.has_mvp_kernel and not conv.runs_on_mvp
    assert conv.reason == "the MVP runs int8 only: input is float32"


def test_ops_without_an_mvp_kernel():
    plans = _plans(DATA / "zoo" / "image_example1.tflite")
    softmax = plans[8]
    assert (softmax.supported, softmax.has_mvp_kernel, softmax.reason) == (False, False, "no MVP kernel for softmax")
    assert plans[0].reason == "no MVP kernel for quantize"


def test_factorize_follows_the_sdk():
    assert mvp_checks.factorize(2000) == (2, 1000)
    assert mvp_checks.factorize(4096) == (4, 1024)
    assert mvp_checks.factorize(1031) is None          # prime > 1024
    assert mvp_checks.factorize(37 * 41) is None       # primes > 31 only


def test_hardware_parameters_are_data():
    mvp = load_hardware()["mvp"]
    assert (mvp["n_arrays"], mvp["n_loops"], mvp["n_instructions"], mvp["n_registers"]) == (5, 8, 8, 8)
    assert (mvp["dim_size_max"], mvp["dim_stride_min"], mvp["dim_stride_max"]) == (1024, -2048, 2047)


def _program(size=4, stride=1, n_instr=1, iterations=4):
    b = ProgramBuilder("test")
    b.array(0, "input", 0, "int8", False, (1, 1, size), (0, 0, stride))
    b.begin_loop(iterations)
    for _ in range(n_instr):
        b.compute("NOOP")
    b.end_loop()
    return b.build()


def test_violations_name_each_limit():
    assert violations(_program()) == []
    assert violations(_program(size=1025)) == ["array 0 dim 2 size 1025 outside 1..1024"]
    assert violations(_program(stride=2048)) == ["array 0 dim 2 stride 2048 outside -2048..2047"]
    assert violations(_program(stride=-2048)) == []
    assert violations(_program(n_instr=9)) == ["9 instructions > 8"]
    assert violations(_program(iterations=1025)) == ["loop 0 iterations 1025 outside 1..1024"]


def test_every_check_has_a_docstring_and_is_listed():
    text = mvp_checks.supported_operators_markdown()
    for group, fns in mvp_checks.CHECKS.items():
        assert f"## {group}" in text
        for fn in fns:
            assert fn.__doc__ and fn.__doc__.strip()
            assert f"`{fn.__name__}`" in text


def test_generated_docs_are_current():
    doc = Path(__file__).parent.parent / "docs" / "supported_operators.md"
    assert doc.read_text() == mvp_checks.supported_operators_markdown(), \
        "run: python -m simulator.mvp_checks"
