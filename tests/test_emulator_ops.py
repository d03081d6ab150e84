"""Operators the converter emits for standard Keras layers (tests/data/ops, built by
tests/ops/make_ops.py): the emulator runs each in both modes, identical to TFLite Micro (the
oracle's `none` outputs), within a step of TensorFlow Lite's reference kernels, within the MVP
bounds of test_emulator_mvp.py in `mvp` mode; a layer it cannot run is refused naming it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from simulator.emulator import OPERATORS, compile_model, draw_inputs, emulate_batch, emulate_file
from simulator.errors import ModelError
from simulator.tflite_reader import read_model_file

OPS = Path(__file__).parent / "data" / "ops"
SURVEY_DIR = OPS / "survey"       # one model per standard Keras layer (tests/ops/survey.py)
MODELS = sorted(OPS.glob("*.tflite"))


def _records() -> list[dict]:
    out = []
    for path in (OPS / "mltk_outputs.jsonl", SURVEY_DIR / "mltk_outputs.jsonl"):
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def _oracle(accelerator: str) -> dict[str, dict]:
    names = {p.name for p in MODELS}
    return {r["model"]: r for r in _records()
            if r["accelerator"] == accelerator and "results" in r and r["model"] in names}


ORACLE_NONE, ORACLE_MVP = _oracle("none"), _oracle("mvp")
# Models the oracle cannot run, with the reason (TensorFlow Lite's interpreter is their peer below)
NO_ORACLE = {"dot_attention.tflite": "MLTK 0.20's TFLite Micro has no BATCH_MATMUL kernel (its run fails)"}
# Known deviations of the MVP mode from the vendor simulator, kept visible (strict: a fix shows)
KNOWN_MVP = {name: "a Dense layer on a 3-D input (FULLY_CONNECTED, keep_num_dims): the vendor's MVP kernel "
                   "writes T of the T*U outputs and leaves the rest as stale arena memory (nonzero in its "
                   "simulator, 0 in the emulator); test_dense_on_3d_input_follows_the_vendor_kernel checks the rest"
             for name in ("reduce_sum_mean_1d.tflite", "stack_split.tflite")}
WITH_ORACLE = [p for p in MODELS if p.name not in NO_ORACLE]
# Where TensorFlow Lite's reference kernels compute something else than TFLM (the oracle decides)
TFLITE_DIFFERS = {"reduce_sum_mean_1d.tflite": "TensorFlow Lite's reference SUM skips the rescale of a same-scale "
                                               "sum; TFLite Micro (the oracle) matches the emulator"}
# TensorFlow Lite's int8 bilinear resize rounds a tie away from zero, the vendor's TFLite Micro
# (TFLITE_SINGLE_ROUNDING) up: an exact 2x or align_corners resize has many ties, so "nearly all
# identical" is looser there (still within one step; the oracle's outputs are equal element for element)
TFLITE_TIES = {"resize_bilinear_align_corners.tflite": 0.75, "resize_bilinear_half_pixel.tflite": 0.9}


def test_every_fixture_has_oracle_outputs_and_its_operators_run():
    assert len(MODELS) >= 8
    assert set(ORACLE_NONE) == set(ORACLE_MVP) == {p.name for p in WITH_ORACLE}
    ops = {op.opcode for p in MODELS for op in read_model_file(p).operators}
    for want in ("reduce_max", "sum", "mean", "transpose", "strided_slice", "sub", "maximum", "minimum",
                 "hard_swish", "leaky_relu", "logistic", "pack", "unpack", "split", "split_v", "batch_matmul",
                 "elu", "prelu", "resize_nearest_neighbor", "resize_bilinear"):
        assert want in ops and want in OPERATORS, want


@pytest.mark.parametrize("path", WITH_ORACLE, ids=[p.name for p in WITH_ORACLE])
def test_reference_mode_equals_tflite_micro(path):
    record = ORACLE_NONE[path.name]
    mine = emulate_file(path, "none", record["seed"], len(record["results"]))
    for want, got in zip(record["results"], mine["results"]):
        assert got["input_sha1"] == want["input_sha1"]
        assert np.array_equal(np.asarray(want["output"]), np.asarray(got["output"])), path.name


@pytest.mark.parametrize("path", WITH_ORACLE, ids=[p.name for p in WITH_ORACLE])
def test_mvp_mode_matches_the_vendor_simulator(path):
    if path.name in KNOWN_MVP:
        pytest.xfail(KNOWN_MVP[path.name])
    record = ORACLE_MVP[path.name]
    mine = emulate_file(path, "mvp", record["seed"], len(record["results"]))
    w = np.concatenate([np.asarray(r["output"], dtype=np.float64) for r in record["results"]])
    g = np.concatenate([np.asarray(r["output"], dtype=np.float64) for r in mine["results"]])
    assert np.abs(w - g).max() <= 1 and (w == g).mean() >= 0.99, path.name


def tflite_interpreter(tf, path: Path):
    """TensorFlow Lite's reference kernels, or its builtin ones for a model with an operator the
    reference resolver lacks (ELU, TILE: its builtin kernels for those are the same code)."""
    resolvers = tf.lite.experimental.OpResolverType
    try:
        return tf.lite.Interpreter(model_path=str(path), num_threads=1,
                                   experimental_op_resolver_type=resolvers.BUILTIN_REF)
    except ValueError:
        return tf.lite.Interpreter(model_path=str(path), num_threads=1,
                                   experimental_op_resolver_type=resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_reference_mode_is_within_a_step_of_tensorflow_lite(path):
    """TensorFlow Lite's reference kernels round twice where the vendor's TFLM rounds once
    (TFLITE_SINGLE_ROUNDING) and round MEAN's same-scale path differently, so they are a peer,
    not the standard: every output within one step, nearly all identical."""
    if path.name in TFLITE_DIFFERS:
        pytest.skip(TFLITE_DIFFERS[path.name])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    interp = tflite_interpreter(tf, path)
    interp.allocate_tensors()
    g = read_model_file(path)
    xs = np.stack(draw_inputs(g, 3, 4))
    mine = emulate_batch(g, xs, "none")
    mine = mine if isinstance(mine, list) else [mine]
    d = interp.get_input_details()[0]
    same = total = 0
    for k in range(len(xs)):
        interp.set_tensor(d["index"], xs[k].reshape(d["shape"]))
        interp.invoke()
        for j, ti in enumerate(g.outputs):
            want = interp.get_tensor(ti).reshape(-1).astype(np.int64)
            got = mine[j][k].reshape(-1).astype(np.int64)
            assert np.abs(want - got).max() <= 1, f"{path.name} sample {k} output {j}"
            same, total = same + int((want == got).sum()), total + want.size
    assert same >= TFLITE_TIES.get(path.name, 0.9) * total, f"{path.name}: {same}/{total} identical"


def test_an_operator_without_a_kernel_is_refused_by_name():
    g = read_model_file(OPS / "dot_attention.tflite")
    op = next(o for o in g.operators if o.opcode == "batch_matmul")
    op.opcode = "unidirectional_sequence_lstm"
    g.sha256 = "modified-for-the-ops-test"
    for accelerator in ("none", "mvp"):
        with pytest.raises(ModelError, match=rf"layer {op.index} \(unidirectional_sequence_lstm\): op not supported"):
            compile_model(g, accelerator)


def test_dense_on_3d_input_follows_the_vendor_kernel():
    """The vendor's MVP fully connected kernel takes batches and units from the output's dims 0
    and 1: on stack_split's 1x8x12 Dense output it computes the first 8 values (row 0, units
    0..7) and writes nothing else. The emulator runs that program: the values it writes equal the
    vendor simulator's (the model's first output starts with them), the profile warns with the
    check's reason, and the accelerator cycles equal the vendor simulator's on both fixtures."""
    from simulator import mvp_checks
    from simulator.profiler import profile_file
    record = ORACLE_MVP["stack_split.tflite"]
    mine = emulate_file(OPS / "stack_split.tflite", "mvp", record["seed"], len(record["results"]))
    reference = emulate_file(OPS / "stack_split.tflite", "none", record["seed"], len(record["results"]))
    for want, got, ref in zip(record["results"], mine["results"], reference["results"]):
        assert got["output"][:8] == want["output"][:8] == ref["output"][:8]
        assert got["output"][8:12] == [0] * 4 != want["output"][8:12]     # unwritten: 0 here, stale there
    profiles = {json.loads(line)["model"]: json.loads(line) for line in (OPS / "mltk_sim.jsonl").read_text().splitlines()}
    for name, vendor in profiles.items():
        rec = profile_file(OPS / name, "mvp", timing="vendor-sim")
        fc = [L for L in rec.layers if L.opcode == "fully_connected"]
        want = [L["accelerator_cycles"] for L in vendor["layers"] if L["opcode"] == "fully_connected"]
        assert [L.accelerator_cycles for L in fc] == want, name
        assert all(L.supported and L.reason is None for L in fc), name     # as the vendor reports it
        assert all("Dense on a 3-D input" in (L.note or "") for L in fc), name
    assert mvp_checks.check_fc_output_2d in mvp_checks.checks_for("fully_connected", effect=mvp_checks.WARNS)
