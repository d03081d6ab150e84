"""Reference mode (`--accelerator none`) against the vendor's TFLM build (the oracle's `none`
outputs): every output element identical, on the zoo and on the corpus."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from simulator.emulator import draw_inputs, emulate_file, run_model
from simulator.errors import ModelError
from simulator.tflite_reader import read_model_file

DATA = Path(__file__).parent / "data"


def _oracle_records(directory: Path, accelerator: str) -> list[dict]:
    path = directory / "mltk_outputs.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["accelerator"] == accelerator and "results" in r]


ZOO_NONE = _oracle_records(DATA / "zoo", "none")
CORPUS_NONE = _oracle_records(DATA / "corpus", "none")


def _assert_identical(directory: Path, record: dict, accelerator: str) -> None:
    mine = emulate_file(directory / record["model"], accelerator, record["seed"], len(record["results"]))
    assert mine["model"] == record["model"] and mine["seed"] == record["seed"]
    for k, (want, got) in enumerate(zip(record["results"], mine["results"])):
        assert got["input_sha1"] == want["input_sha1"], f"input {k} drawn differently"
        w = np.asarray(want["output"], dtype=np.float64)
        g = np.asarray(got["output"], dtype=np.float64)
        assert w.shape == g.shape
        bad = np.flatnonzero(w != g)
        assert bad.size == 0, (f"{record['model']} input {k}: {bad.size}/{w.size} elements differ, "
                               f"first at {bad[0]}: oracle {w[bad[0]]} emulator {g[bad[0]]}")


def test_zoo_has_oracle_outputs():
    assert len(ZOO_NONE) == 8


@pytest.mark.parametrize("record", ZOO_NONE, ids=[r["model"] for r in ZOO_NONE])
def test_zoo_reference_outputs_identical(record):
    _assert_identical(DATA / "zoo", record, "none")


@pytest.mark.parametrize("record", CORPUS_NONE, ids=[r["model"] for r in CORPUS_NONE])
def test_corpus_reference_outputs_identical(record):
    _assert_identical(DATA / "corpus", record, "none")


def test_inputs_are_drawn_like_the_oracle():
    g = read_model_file(DATA / "zoo" / "tflite_micro_speech.tflite")
    xs = draw_inputs(g, 0, 2)
    rng = np.random.default_rng(0)
    first = rng.integers(-128, 128, size=g.tensors[g.inputs[0]].shape, dtype=np.int8)
    assert np.array_equal(xs[0], first)
    assert not np.array_equal(xs[0], xs[1])
    record = next(r for r in ZOO_NONE if r["model"] == "tflite_micro_speech.tflite")
    assert hashlib.sha1(xs[0].tobytes()).hexdigest() == record["results"][0]["input_sha1"]


def test_emulate_file_contract_and_types():
    out = emulate_file(DATA / "zoo" / "image_example1.tflite", "none", 0, 2)
    assert set(out) == {"model", "accelerator", "seed", "results"}
    assert out["accelerator"] == "none" and len(out["results"]) == 2
    assert all(isinstance(v, float) for v in out["results"][0]["output"])   # float32 output
    out = emulate_file(DATA / "zoo" / "tflite_micro_speech.tflite", "none", 1, 1)
    assert all(isinstance(v, int) for v in out["results"][0]["output"])     # int8 output
    assert len(out["results"][0]["output"]) == 4


def test_run_model_reports_layers():
    data = (DATA / "zoo" / "audio_example1.tflite").read_bytes()
    g = read_model_file(DATA / "zoo" / "audio_example1.tflite")
    x = draw_inputs(g, 3, 1)[0]
    result = run_model(data, [x], accelerator="none")
    assert [layer["opcode"] for layer in result.layers] == [op.opcode for op in g.operators]
    assert all(layer["kernel"] == "reference" for layer in result.layers)
    assert result.outputs[0].dtype == np.int8 and result.outputs[0].shape == (1, 6)


def test_unsupported_op_names_op_and_layer():
    from simulator.emulator import compile_model
    g = read_model_file(DATA / "zoo" / "tflite_micro_speech.tflite")
    g.operators[1].opcode = "no_such_op"   # a graph the emulator has no kernel for (no TFLite opcode has this name)
    g.sha256 = "modified"
    with pytest.raises(ModelError, match=r"layer 1 \(no_such_op\): op not supported"):
        compile_model(g, "none")


def test_unknown_accelerator_is_refused():
    with pytest.raises(ModelError, match="unknown accelerator"):
        emulate_file(DATA / "zoo" / "tflite_micro_speech.tflite", "gpu", 0, 1)


def test_every_corpus_model_has_oracle_outputs_for_both_modes():
    """The parametrized comparisons above and in test_emulator_mvp.py cover the whole corpus:
    each model has the oracle's `none` and `mvp` outputs."""
    path = DATA / "corpus" / "mltk_outputs.jsonl"
    if not path.exists():
        pytest.skip("corpus oracle outputs not generated yet (tests/data/corpus/README.md)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    have = {(r["model"], r["accelerator"]) for r in records if "results" in r}
    models = sorted(p.name for p in (DATA / "corpus").glob("*.tflite"))
    missing = [(m, a) for m in models for a in ("none", "mvp") if (m, a) not in have]
    assert not missing, f"{len(missing)} corpus runs without oracle outputs, e.g. {missing[:4]}"
