"""The int8 test corpus (tests/data/corpus/) and the oracle's numbers for it stay consistent.

The corpus is built by tests/corpus/make_corpus.py; the oracle files come from ../shared/oracle (MLTK). These checks
catch a regenerated model that no longer matches the oracle's numbers, a model without oracle records, and oracle
records that do not belong to the inputs they claim.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tflite

CORPUS = Path(__file__).parent / "data" / "corpus"
sys.path.insert(0, str(Path(__file__).parent / "corpus"))
import make_corpus  # noqa: E402  (the builder: model list, manifest layout)

ACCELERATORS = ("mvp", "none")
RUNS_PER_ACCELERATOR = 3
TFLITE_DTYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.FLOAT32: np.float32}


def _fixture_models() -> list[str]:
    return sorted(p.stem for p in CORPUS.glob("*.tflite"))


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / name).read_text().splitlines() if line.strip()]


def _io_tensor(path: Path, which: str):
    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    g = m.Subgraphs(0)
    t = g.Tensors(g.Inputs(0) if which == "input" else g.Outputs(0))
    return tuple(t.ShapeAsNumpy()), TFLITE_DTYPES[t.Type()]


def _n_operators(path: Path) -> int:
    return tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0).OperatorsLength()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((CORPUS / make_corpus.MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def profiles() -> dict[tuple[str, str], dict]:
    recs = {}
    for r in _jsonl("mltk_sim.jsonl"):
        key = (r["model"], r["accelerator"])
        assert key not in recs, f"duplicate oracle profile {key}"
        recs[key] = r["result"]
    return recs


@pytest.fixture(scope="module")
def outputs() -> dict[tuple[str, str], dict]:
    recs = {}
    for r in _jsonl("mltk_outputs.jsonl"):
        key = (r["model"].removesuffix(".tflite"), r["accelerator"])
        assert key not in recs, f"duplicate oracle outputs {key}"
        recs[key] = r
    return recs


def test_corpus_is_big_enough_and_matches_the_builder():
    built = {s.name for s in make_corpus.MODELS if not s.oracle_crash}
    assert len(built) >= 24
    assert set(_fixture_models()) == built


def test_manifest_hashes_match_every_model_file(manifest):
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("**/*.tflite")}
    assert set(manifest["files"]) == on_disk
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((CORPUS / rel).read_bytes()).hexdigest() == digest, f"{rel} differs from manifest"


def test_every_model_has_an_error_free_profile_per_accelerator(profiles):
    for name in _fixture_models():
        path = CORPUS / f"{name}.tflite"
        for acc in ACCELERATORS:
            r = profiles.get((name, acc))
            assert r is not None, f"no oracle profile for {name} ({acc})"
            assert "error" not in r, f"{name} ({acc}): {r.get('error')}"
            s = r["summary"]
            # The profile belongs to these exact bytes and this graph.
            assert s["tflite_size"] == path.stat().st_size, name
            assert s["n_layers"] == len(r["layers"]) == _n_operators(path), name
            assert s["macs"] == sum(layer["macs"] for layer in r["layers"]), name
            assert s["runtime_memory_size"] > 0, name
    assert {m for m, _ in profiles} == set(_fixture_models())


def test_mvp_profiles_use_the_accelerator_and_reference_ones_do_not(profiles):
    for name in _fixture_models():
        mvp, ref = profiles[(name, "mvp")], profiles[(name, "none")]
        assert (mvp["summary"]["macs"], mvp["summary"]["ops"]) == (ref["summary"]["macs"], ref["summary"]["ops"]), name
        refused = [layer for layer in mvp["layers"] if layer.get("supported") is False]
        assert mvp["summary"]["n_unsupported_layers"] == len(refused), name
        for layer in refused:
            assert layer["error_msg"] and any(layer["error_msg"] in line for line in mvp["log"]), name
        for layer in mvp["layers"]:
            if layer["macs"] > 0 and layer.get("supported") is not False:
                assert layer["accelerator_cycles"] > 0, f"{name} layer {layer['index']}: MACs but no MVP cycles"
        assert mvp["summary"].get("accelerator_cycles", 0) == sum(
            layer.get("accelerator_cycles", 0) for layer in mvp["layers"]), name
        assert all(not layer.get("accelerator_cycles") for layer in ref["layers"]), name
        assert ref["summary"]["n_unsupported_layers"] == 0, name


def test_every_model_has_three_outputs_per_accelerator_for_the_documented_inputs(outputs):
    for name in _fixture_models():
        path = CORPUS / f"{name}.tflite"
        in_shape, in_dtype = _io_tensor(path, "input")
        out_shape, _ = _io_tensor(path, "output")
        for acc in ACCELERATORS:
            r = outputs.get((name, acc))
            assert r is not None, f"no oracle outputs for {name} ({acc})"
            assert "error" not in r, f"{name} ({acc}): {r.get('error')}"
            assert r["seed"] == 0 and len(r["results"]) == RUNS_PER_ACCELERATOR
            # Redraw the inputs the oracle README documents: a reproduction must see the same bytes.
            rng = np.random.default_rng(r["seed"])
            for res in r["results"]:
                if in_dtype == np.int8:
                    x = rng.integers(-128, 128, size=in_shape, dtype=np.int8)
                else:
                    x = rng.random(in_shape, dtype=np.float32)
                assert hashlib.sha1(x.tobytes()).hexdigest() == res["input_sha1"], f"{name} ({acc})"
                assert len(res["output"]) == int(np.prod(out_shape)), f"{name} ({acc})"
    assert {m for m, _ in outputs} == set(_fixture_models())


def test_readme_lists_every_model():
    text = (CORPUS / "README.md").read_text()
    for spec in make_corpus.MODELS:
        assert f"`{spec.name}`" in text, spec.name


def test_rebuilding_a_model_reproduces_its_bytes(manifest):
    import tensorflow as tf
    if tf.__version__ != manifest["tensorflow"]:
        pytest.skip(f"corpus built with TensorFlow {manifest['tensorflow']}, this is {tf.__version__}")
    spec = next(s for s in make_corpus.MODELS if s.name == "residual_add_relu")
    with contextlib.redirect_stdout(io.StringIO()):
        data = make_corpus.convert(spec)
    assert hashlib.sha256(data).hexdigest() == manifest["files"][f"{spec.name}.tflite"]
