"""Operators the converter emits for standard Keras layers (tests/data/ops, built by
tests/ops/make_ops.py): the emulator runs each in both modes, identical to TFLite Micro (the
oracle's `none` outputs), within a step of TensorFlow Lite's reference kernels, within the MVP
bounds of test_emulator_mvp.py in `mvp` mode; a layer it cannot run is refused naming it."""
from __future__ import annotations

import importlib.util
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
CURATED = sorted(OPS.glob("*.tflite"))
SURVEY = sorted(SURVEY_DIR.glob("*.tflite"))
MODELS = CURATED + SURVEY


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
_NO_BATCH_MATMUL = "MLTK 0.20's TFLite Micro has no BATCH_MATMUL kernel (its run fails)"
NO_ORACLE = {
    "dot_attention.tflite": _NO_BATCH_MATMUL, "attention.tflite": _NO_BATCH_MATMUL,
    "multiheadattention.tflite": _NO_BATCH_MATMUL,
    "activation_gelu.tflite": "MLTK 0.20's TFLite Micro has no GELU kernel (its run fails)",
    "gelu_approximate_true.tflite": "MLTK 0.20's TFLite Micro has no GELU kernel (its run fails)",
    "activation_mish.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP or LOG kernel (its run fails)",
    "activation_softplus.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP or LOG kernel (its run fails)",
    "activation_log_sigmoid.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP or LOG kernel (its run fails)",
    "exp_log_table.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP or LOG kernel (its run fails)",
    "sqrt_table.tflite": "int8 SQRT: MLTK 0.20's TFLite Micro has float SQRT only (its run fails)",
    "activation_exponential.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP kernel (its run fails)",
    "activation_celu.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP kernel (its run fails)",
    "activation_selu.tflite": "MLTK 0.20's TFLite Micro has no int8 EXP kernel (its run fails)",
    "activation_soft_shrink.tflite": "its run fails (the model's SELECT; sparse_sigmoid, with SELECT_V2 only, runs)",
    "activation_sparse_plus.tflite": "its run fails (the model's SELECT; sparse_sigmoid, with SELECT_V2 only, runs)",
    "activation_squareplus.tflite": "int8 SQRT: MLTK 0.20's TFLite Micro has float SQRT only (its run fails)",
    "activation_sparsemax.tflite": "TOPK_V2, CUMSUM: its run fails",
    "additiveattention.tflite": _NO_BATCH_MATMUL,
    "repeatvector.tflite": "MLTK 0.20's TFLite Micro has no TILE kernel (its run fails)",
    "groupnormalization.tflite": "its run fails (its RESHAPE to 5-D and MEAN over three of five axes; the other "
                                 "operators run in LayerNormalization and RMSNormalization)",
    "embedding.tflite": "the Embedding's index path (DEQUANTIZE, CAST to int32, LESS, SELECT, GATHER): its run fails",
    "upsampling1d.tflite": "MLTK 0.20's TFLite Micro has no TILE kernel (Keras 3's UpSampling nearest; its run fails)",
    "upsampling2d_nearest.tflite": "MLTK 0.20's TFLite Micro has no TILE kernel (Keras 3's UpSampling nearest; "
                                   "its run fails)",
}
# Models whose oracle run fails in one mode (twice, so not at random) though it runs the same
# operators in other models; compared in the mode that ran, and with TensorFlow Lite in the other
ORACLE_CRASHED = {"average.tflite": "mvp", "cropping1d.tflite": "none", "globalaveragepooling1d.tflite": "none",
                  "timedistributed_dense.tflite": "none", "sum_rescaled.tflite": "none"}
# Layers whose operators the emulator does not run yet: refused by name (docs/keras_layers.md)
REFUSED: dict[str, str] = {}
# Known deviations of the MVP mode from the vendor simulator, kept visible (strict: a fix shows)
KNOWN_MVP = {name: "a Dense layer on a 3-D input (FULLY_CONNECTED, keep_num_dims): the vendor's MVP kernel "
                   "writes T of the T*U outputs and leaves the rest as stale arena memory (nonzero in its "
                   "simulator, 0 in the emulator); test_dense_on_3d_input_follows_the_vendor_kernel checks the rest"
             for name in ("reduce_sum_mean_1d.tflite", "stack_split.tflite", "dense_3_d_input.tflite",
                          "einsumdense.tflite")}
WITH_ORACLE = [p for p in MODELS if p.name not in NO_ORACLE]
# The refused layers' models
REFUSED_FILES: set[str] = set()
ORACLE_NONE_MODELS = [p for p in WITH_ORACLE if p.name in ORACLE_NONE and p.name not in REFUSED_FILES]
ORACLE_MVP_MODELS = [p for p in WITH_ORACLE if p.name in ORACLE_MVP and p.name not in REFUSED_FILES]
# Where TensorFlow Lite's reference kernels compute something else than TFLM (the oracle decides)
TFLITE_DIFFERS = {"reduce_sum_mean_1d.tflite": "TensorFlow Lite's reference SUM skips the rescale of a same-scale "
                                               "sum; TFLite Micro (the oracle) matches the emulator",
                  "sum_rescaled.tflite": "TensorFlow Lite's reference SUM of a rescaled sum is not TFLite Micro's: "
                                         "the oracle's MVP-mode run (SUM on its reference kernel) matches the "
                                         "emulator element for element, saturated sums included",
                  "activation_sparsemax.tflite": "its SUMs (input zero point -128): TensorFlow Lite's reference SUM "
                                                 "is not TFLite Micro's; the oracle's run of such a SUM "
                                                 "(sum_rescaled) matches the emulator; the vendor has no TOPK_V2",
                  "additiveattention.tflite": "its SUM (input and output scales differ): TensorFlow Lite's "
                                              "reference SUM is not TFLite Micro's; the vendor's MVP-mode run "
                                              "of that SUM (sum_rescaled) matches the emulator, saturation too; "
                                              "the vendor cannot run the model (BATCH_MATMUL)",
                  "layer_norm_wide.tflite": "TensorFlow Lite rounds twice in SQUARED_DIFFERENCE, MUL and ADD, and the "
                                            "normalisation's 1/sqrt amplifies a step of the variance to up to 3 "
                                            "steps of the output; TFLite Micro (the oracle) matches the emulator "
                                            "element for element in both modes"}
# TensorFlow Lite's int8 bilinear resize rounds a tie away from zero, the vendor's TFLite Micro
# (TFLITE_SINGLE_ROUNDING) up: an exact 2x or align_corners resize has many ties, so "nearly all
# identical" is looser there (still within one step; the oracle's outputs are equal element for element)
TFLITE_TIES = {"resize_bilinear_align_corners.tflite": 0.75, "resize_bilinear_half_pixel.tflite": 0.9}
# GroupNormalization (which the vendor cannot run): every layer fed TensorFlow Lite's inputs is within one step of it
# (its MEAN and MUL round twice), and the normalisation's 1/sqrt carries a step of the variance to two of the output
TFLITE_STEPS = {"groupnormalization.tflite": 2}


def test_every_fixture_has_oracle_outputs_and_its_operators_run():
    assert len(CURATED) >= 8 and len(SURVEY) >= 60
    for p in MODELS:
        if p.name in NO_ORACLE:
            assert p.name not in ORACLE_NONE and p.name not in ORACLE_MVP, f"{p.name} runs in the oracle now"
        else:
            modes = {"none": p.name in ORACLE_NONE, "mvp": p.name in ORACLE_MVP}
            assert all(ok or ORACLE_CRASHED.get(p.name) == m for m, ok in modes.items()), p.name
    ops = {op.opcode for p in MODELS for op in read_model_file(p).operators}
    for want in ("reduce_max", "sum", "mean", "transpose", "strided_slice", "sub", "maximum", "minimum",
                 "hard_swish", "leaky_relu", "logistic", "pack", "unpack", "split", "split_v", "batch_matmul",
                 "elu", "prelu", "gelu", "resize_nearest_neighbor", "resize_bilinear", "tile", "cast", "less",
                 "select", "gather", "exp", "log", "squared_difference", "rsqrt", "abs", "greater", "div", "log_softmax", "sqrt", "topk_v2", "cumsum"):
        assert want in ops and want in OPERATORS, want


def _survey():
    spec = importlib.util.spec_from_file_location("ops_survey", Path(__file__).parent / "ops" / "survey.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_keras_layer_table_is_fresh_and_names_what_cannot_run():
    """docs/keras_layers.md is what tests/ops/survey.py --doc writes from the survey and today's
    emulator; every converted layer runs in both modes except REFUSED, which are refused naming
    the operator (and the LSTM that is not unrolled, which this converter cannot convert)."""
    survey = _survey()
    records = survey.load_survey()
    text = survey.table_markdown(records)
    assert (Path(__file__).parent.parent / "docs" / "keras_layers.md").read_text() == text, \
        "docs/keras_layers.md is stale: run .venv/bin/python tests/ops/survey.py --doc"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Keras") and not line.startswith("| ---")}
    converted = [r for r in records if r["converted"]]
    assert len(converted) >= 60
    assert [r["layer"] for r in records if not r["converted"]] == ["LSTM (not unrolled)"]
    assert {survey.file_name(layer) + ".tflite" for layer in REFUSED} == REFUSED_FILES
    for r in converted:
        none, mvp = rows[r["layer"]][2], rows[r["layer"]][3]
        if r["layer"] in REFUSED:
            assert none.startswith("no: layer") and f"({REFUSED[r['layer']]})" in none and mvp.startswith("no: layer")
        else:
            assert none == mvp == "runs", r["layer"]


@pytest.mark.parametrize("path", ORACLE_NONE_MODELS, ids=[p.name for p in ORACLE_NONE_MODELS])
def test_reference_mode_equals_tflite_micro(path):
    record = ORACLE_NONE[path.name]
    mine = emulate_file(path, "none", record["seed"], len(record["results"]))
    for want, got in zip(record["results"], mine["results"]):
        assert got["input_sha1"] == want["input_sha1"]
        assert np.array_equal(np.asarray(want["output"]), np.asarray(got["output"])), path.name


@pytest.mark.parametrize("path", ORACLE_MVP_MODELS, ids=[p.name for p in ORACLE_MVP_MODELS])
def test_mvp_mode_matches_the_vendor_simulator(path):
    if path.name in KNOWN_MVP:
        pytest.xfail(KNOWN_MVP[path.name])
    record = ORACLE_MVP[path.name]
    mine = emulate_file(path, "mvp", record["seed"], len(record["results"]))
    w = np.concatenate([np.asarray(r["output"], dtype=np.float64) for r in record["results"]])
    g = np.concatenate([np.asarray(r["output"], dtype=np.float64) for r in mine["results"]])
    assert np.abs(w - g).max() <= 1 and (w == g).mean() >= 0.999, path.name


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


# The peer runs where the oracle does not decide: every curated fixture, and the survey's models
# without the oracle's reference-mode outputs (the refused ones left out)
PEER = CURATED + [p for p in SURVEY if p.name not in ORACLE_NONE and p.name not in REFUSED_FILES]
TFLITE_TIES["cropping1d.tflite"] = TFLITE_TIES["globalaveragepooling1d.tflite"] = 0.85   # 4-sample draws


@pytest.mark.parametrize("path", PEER, ids=[p.name for p in PEER])
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
            assert np.abs(want - got).max() <= TFLITE_STEPS.get(path.name, 1), f"{path.name} sample {k} output {j}"
            same, total = same + int((want == got).sum()), total + want.size
    assert same >= TFLITE_TIES.get(path.name, 0.9) * total, f"{path.name}: {same}/{total} identical"


def test_an_operator_without_a_kernel_is_refused_by_name():
    """A real int8 model carrying the fused UNIDIRECTIONAL_SEQUENCE_LSTM (tests/ops/make_fused_lstm.py:
    Keras 2's converter; the project's cannot emit it): refused naming the layer and operator in
    both modes, and a sweep's scoring gives no accuracy with that reason instead of crashing."""
    from orchestrator.scoring import score
    path = OPS / "unsupported" / "lstm_fused.tflite"
    g = read_model_file(path)
    assert g.operators[0].opcode == "unidirectional_sequence_lstm"
    x = np.stack(draw_inputs(g, 0, 4)).astype(np.float32)
    for accelerator in ("none", "mvp"):
        with pytest.raises(ModelError, match=r"layer 0 \(unidirectional_sequence_lstm\): op not supported"):
            compile_model(g, accelerator)
        out = score(path.read_bytes(), x, np.zeros(4, dtype=np.int64), "accuracy", accelerator)
        assert out["accuracy"] is None and "unidirectional_sequence_lstm" in out["error"]


def _oracle_profiles() -> list[dict]:
    return [json.loads(line) for line in (OPS / "mltk_sim.jsonl").read_text().splitlines() if line.strip()]


def test_profiler_counts_the_new_operators_as_the_vendor_profiler():
    """PRELU, RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, LayerNormalization's SQUARED_DIFFERENCE
    and RSQRT (reference kernels): RAM, ops and MACs, in total and per layer, equal to the vendor
    profiler's (tests/data/ops/mltk_sim.jsonl)."""
    from simulator.profiler import profile_file
    records = [r for r in _oracle_profiles() if r["accelerator"] == "none"]
    assert {r["model"] for r in records} == {"prelu_table.tflite", "resize_bilinear_odd.tflite",
                                             "resize_nearest_plain.tflite", "layer_norm_wide.tflite"}
    for r in records:
        rec = profile_file(OPS / r["model"], "none")
        assert rec.summary.ram_bytes == r["summary"]["runtime_memory_size"], r["model"]
        assert [(L.opcode, L.ops, L.macs) for L in rec.layers] == \
            [(L["opcode"], L["ops"], L["macs"]) for L in r["layers"]], r["model"]


def test_profile_runs_the_operators_the_mvp_lacks_on_the_cpu_cost_model():
    """`mvp` profile of LayerNormalization (layer_norm_wide) and of the EXP/LOG activations: RAM
    and per-layer ops as the vendor profiler's where it has them; SQUARED_DIFFERENCE, RSQRT, EXP,
    LOG run on the CPU (not supported on the MVP, no accelerator cycles, as the vendor reports)
    and are priced by the CPU cost model: SQUARED_DIFFERENCE by ADD's coefficients (its work),
    the others by theirs or the default; the MUL and ADD that the MVP takes stay on it."""
    from simulator import cpu_model
    from simulator.mvp_plan import plan_layer
    from simulator.profiler import profile_file
    from simulator.timing import load_timing_model
    vendor = next(r for r in _oracle_profiles() if r["accelerator"] == "mvp" and r["model"] == "layer_norm_wide.tflite")
    tm = load_timing_model("board")
    for name in ("layer_norm_wide.tflite", "survey/activation_mish.tflite", "survey/activation_log_sigmoid.tflite"):
        g = read_model_file(OPS / name)
        rec = profile_file(OPS / name, "mvp", timing="board")
        if name == "layer_norm_wide.tflite":
            assert rec.summary.ram_bytes == vendor["summary"]["runtime_memory_size"]
            assert [(L.opcode, L.ops, L.macs, L.supported) for L in rec.layers] == \
                [(L["opcode"], L["ops"], L["macs"], L["accelerator_cycles"] > 0) for L in vendor["layers"]]
        new = [L for L in rec.layers if L.opcode in ("squared_difference", "rsqrt", "exp", "log")]
        assert new and {L.opcode for L in new} >= ({"squared_difference", "rsqrt"} if "layer_norm" in name
                                                   else {"exp", "log"})
        for L in new:
            op = g.operators[L.index]
            plan = plan_layer(g, op)
            assert not L.supported and L.accelerator_cycles == 0 and not plan.runs_on_mvp
            assert L.cpu_cycles == cpu_model.cpu_cycles(g, op, plan, tm.cpu) > tm.cpu["per_layer_cycles"]
            want = tm.cpu["kernels"]["add/cpu"] if L.opcode == "squared_difference" else \
                tm.cpu["kernels"].get(f"{L.opcode}/cpu", tm.cpu["default"])
            assert cpu_model.coefficients(tm.cpu, op, plan) == want, L.opcode
        assert any(L.supported for L in rec.layers if L.opcode in ("mul", "add", "fully_connected", "conv_2d"))


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
    profiles = {r["model"]: r for r in _oracle_profiles() if r["accelerator"] == "mvp"
                and r["model"] in ("stack_split.tflite", "reduce_sum_mean_1d.tflite")}
    assert len(profiles) == 2
    for name, vendor in profiles.items():
        rec = profile_file(OPS / name, "mvp", timing="vendor-sim")
        fc = [L for L in rec.layers if L.opcode == "fully_connected"]
        want = [L["accelerator_cycles"] for L in vendor["layers"] if L["opcode"] == "fully_connected"]
        assert [L.accelerator_cycles for L in fc] == want, name
        assert all(L.supported and L.reason is None for L in fc), name     # as the vendor reports it
        assert all("Dense on a 3-D input" in (L.note or "") for L in fc), name
    assert mvp_checks.check_fc_output_2d in mvp_checks.checks_for("fully_connected", effect=mvp_checks.WARNS)


def _layer_records() -> list[dict]:
    return json.loads((OPS / "tflite_layers.json").read_text())


def test_exp_log_sqrt_abs_and_comparisons_equal_tensorflow_lite_layer_by_layer():
    """int8 EXP, LOG and SQRT (TensorFlow Lite's tables: the vendor's TFLite Micro has none),
    ABS and the rescaling comparisons, fed the inputs that TensorFlow Lite's interpreter gave
    each layer over 256 draws (tests/ops/tflite_layers.py), give its outputs element for
    element, in every model they occur in (EXP over all 256 int8 values in exp_log_table)."""
    from simulator.reference_ops import reference_step
    records = _layer_records()
    assert {r["opcode"] for r in records} >= {"exp", "log", "sqrt", "abs", "greater", "less", "less_equal", "greater_equal"}
    assert max(len(r["output"]) for r in records if r["opcode"] == "exp") == 256
    for r in records:
        g = read_model_file(OPS / r["model"])
        op = g.operators[r["layer"]]
        assert op.opcode == r["opcode"]
        live = [i for i in op.inputs if g.tensors[i].data is None]
        shape = tuple(g.tensors[op.outputs[0]].shape)
        per = int(np.prod(shape))
        k = len(r["output"])
        pad = -k % per                       # whole samples: repeat the first row
        values: list = [None] * len(g.tensors)
        for t in g.tensors:
            if t.data is not None:
                values[t.index] = np.asarray(t.data)[np.newaxis]
        for i, col in zip(live, r["inputs"]):
            col = np.asarray(col + col[:1] * pad, dtype=np.int8)
            values[i] = col.reshape((-1,) + shape)
        reference_step(g, op).run(values)
        got = np.asarray(values[op.outputs[0]]).reshape(-1)[:k].astype(np.int64)
        assert np.array_equal(got, np.asarray(r["output"])), f"{r['model']} layer {r['layer']} ({r['opcode']})"


@pytest.mark.parametrize("model, opcode", [("layer_norm_wide.tflite", "rsqrt"), ("sqrt_table.tflite", "sqrt")])
def test_rsqrt_and_sqrt_refuse_a_negative_input(model, opcode):
    """TFLM's RSQRT fails the inference on an input below its zero point (and TensorFlow Lite's
    int8 SQRT converts a NaN there). The converter gives both inputs zero point -128 (variance +
    epsilon and |x| are >= 0), so the fixture's layer is run with its input's zero point moved to
    10: values at or above it run (1/sqrt(0) gives TFLM's 127), one below it raises naming the
    layer."""
    import dataclasses

    from simulator.reference_ops import reference_step
    g = read_model_file(OPS / model)
    op = next(o for o in g.operators if o.opcode == opcode)
    x_t, y_t = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    assert int(x_t.zero_point[0]) == -128
    g.tensors[op.inputs[0]] = dataclasses.replace(x_t, zero_point=np.array([10]))
    step = reference_step(g, op)
    n = x_t.n_elements
    values: list = [None] * len(g.tensors)
    values[op.inputs[0]] = np.resize(np.array([10, 11, 127], dtype=np.int8), n).reshape((1,) + tuple(x_t.shape))
    step.run(values)
    y = values[op.outputs[0]].reshape(-1)
    s_in, s_out, z_out = float(x_t.scale[0]), float(y_t.scale[0]), int(y_t.zero_point[0])
    if opcode == "rsqrt":
        assert y[0] == y[1] == 127            # 1/sqrt of 0 and of one step saturate
        want = 1 / np.sqrt(117 * s_in) / s_out + z_out
    else:
        assert y[0] == z_out                  # sqrt(0)
        want = np.sqrt(117 * s_in) / s_out + z_out
    assert abs(int(y[2]) - want) <= 1         # the kernel ~ the real function
    values[op.inputs[0]] = np.full((1,) + tuple(x_t.shape), 9, dtype=np.int8)
    with pytest.raises(ModelError, match=rf"layer \d+ \({opcode}\): an input below its zero point"):
        step.run(values)


def test_sparsemax_layers_equal_tensorflow_lite_but_sum():
    """sparsemax's TOPK_V2 (values and indices), float CUMSUM, float SUB, CAST and the rest, each
    fed what TensorFlow Lite's interpreter gave it over 32 draws, give its outputs element for
    element; its two SUMs differ from TensorFlow Lite's (TFLITE_DIFFERS: TFLite Micro decides),
    and its MULs round once where TensorFlow Lite rounds twice (within a step)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    from simulator.reference_ops import reference_step
    path = SURVEY_DIR / "activation_sparsemax.tflite"
    g = read_model_file(path)
    interp = tf.lite.Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    checked = set()
    for x in draw_inputs(g, 7, 32):
        interp.set_tensor(d["index"], x.reshape(d["shape"]))
        interp.invoke()
        given = [np.asarray(t.data)[np.newaxis] if t.data is not None else interp.get_tensor(t.index)[np.newaxis]
                 for t in g.tensors]
        for op in g.operators:
            if op.opcode == "sum":
                continue
            values = list(given)
            for i in op.outputs:
                values[i] = None
            reference_step(g, op).run(values)
            for i in op.outputs:
                want = given[i].astype(np.float64).reshape(-1)
                got = np.asarray(values[i]).astype(np.float64).reshape(-1)
                limit = 1 if op.opcode == "mul" else 0
                assert np.abs(want - got).max() <= limit, f"layer {op.index} ({op.opcode}) output {i}"
            checked.add(op.opcode)
    assert {"topk_v2", "cumsum", "sub", "cast", "select_v2", "div", "greater"} <= checked
