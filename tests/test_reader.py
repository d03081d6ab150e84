"""The reader: real models parse; bad files fail with one ModelError naming the file, never a hang or crash."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simulator.errors import ModelError
from simulator.tflite_reader import read_model, read_model_file
from tests.conftest import DATA

ZOO = sorted((DATA / "zoo").glob("*.tflite"))


def test_zoo_models_parse(zoo_dir):
    g = read_model_file(zoo_dir / "audio_example1.tflite")
    assert [op.opcode for op in g.operators] == [
        "depthwise_conv_2d", "conv_2d", "max_pool_2d", "conv_2d", "max_pool_2d", "reshape",
        "fully_connected", "softmax"]
    dw = g.operators[0]
    assert dw.options["depth_multiplier"] == 8 and dw.options["padding"] == "same"
    assert dw.options["fused_activation_function"] == "relu"
    w = g.tensors[dw.inputs[1]]
    assert w.shape == (1, 7, 7, 8) and w.dtype == "int8" and w.data.shape == (1, 7, 7, 8)
    assert g.flash_bytes == 16000 and len(g.sha256) == 64


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_model_parses(path):
    g = read_model_file(path)
    assert g.operators and g.inputs and g.outputs


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ModelError, match="nope.tflite: no such file"):
        read_model_file(tmp_path / "nope.tflite")


def test_not_a_flatbuffer(tmp_path):
    p = tmp_path / "notes.tflite"
    p.write_text("hello, this is not a model at all")
    with pytest.raises(ModelError, match=r"notes.tflite: not a .tflite flatbuffer"):
        read_model_file(p)


@pytest.mark.parametrize("keep", [0, 7, 100, 5000])
def test_truncated(tmp_path, zoo_dir, keep):
    p = tmp_path / "cut.tflite"
    p.write_bytes((zoo_dir / "keyword_spotting.tflite").read_bytes()[:keep])
    with pytest.raises(ModelError, match="cut.tflite"):
        read_model_file(p)


def _mutate(data: bytes, seed: int, n_flips: int) -> bytes:
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(n_flips):
        i = rnd.randrange(8, len(b))  # keep the identifier so the parser itself is exercised
        b[i] = rnd.randrange(256)
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(ZOO), seed=st.integers(0, 2**32 - 1), n_flips=st.integers(1, 64))
def test_fuzzed_models_never_crash(model, seed, n_flips):
    """Byte mutations of real models: either a Graph or a ModelError, nothing else, and quickly."""
    data = _mutate(model.read_bytes(), seed, n_flips)
    try:
        g = read_model(data, name="fuzz")
    except ModelError as e:
        assert str(e).startswith("fuzz: ")
        return
    assert isinstance(g.operators, list)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=4096))
def test_random_bytes_with_identifier(blob):
    data = blob[:4] + b"TFL3" + blob[4:]
    try:
        read_model(data, name="rnd")
    except ModelError as e:
        assert str(e).startswith("rnd: ")
