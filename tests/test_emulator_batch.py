"""`emulate_batch` gives the same bits as one sample at a time, on every zoo and corpus model in
both modes, and refuses what it cannot run with the operator's name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.emulator import compile_model, draw_inputs, emulate_batch
from simulator.errors import ModelError
from simulator.tflite_reader import read_model_file

DATA = Path(__file__).parent / "data"
MODELS = sorted(DATA.glob("zoo/*.tflite")) + sorted(DATA.glob("corpus/*.tflite")) + sorted(DATA.glob("ops/*.tflite"))
BATCH = 4


@pytest.mark.parametrize("accelerator", ["none", "mvp"])
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_batch_equals_one_at_a_time(path, accelerator):
    g = read_model_file(path)
    xs = np.stack(draw_inputs(g, 7, BATCH))
    batch = emulate_batch(path.read_bytes(), xs, accelerator)
    batches = batch if isinstance(batch, list) else [batch]     # a list for a several-output model
    compiled = compile_model(g, accelerator)
    assert len(batches) == len(g.outputs)
    for out_i, out in zip(g.outputs, batches):
        assert out.shape == (BATCH,) + tuple(g.tensors[out_i].shape[1:])
    for k in range(BATCH):
        for one, out in zip(compiled.run([xs[k]]), batches):
            assert one.dtype == out.dtype
            # the same bits, element for element (float outputs too)
            assert one.reshape(-1).tobytes() == out[k].reshape(-1).tobytes(), f"sample {k} differs"


def test_batch_takes_any_sample_shape_of_the_right_size():
    g = read_model_file(DATA / "zoo" / "tflite_micro_speech.tflite")
    xs = np.stack(draw_inputs(g, 1, 3))                     # (3, 1, 49, 40, 1)
    a = emulate_batch(g, xs, "none")
    b = emulate_batch(g, xs.reshape(3, -1), "none")          # (3, 1960)
    assert a.shape == (3, 4) and np.array_equal(a, b)
    assert len({a[k].tobytes() for k in range(3)}) == 3     # distinct samples, distinct outputs


def test_batch_refuses_wrong_sizes_and_unknown_operators():
    g = read_model_file(DATA / "zoo" / "tflite_micro_speech.tflite")
    with pytest.raises(ModelError, match=r"needs N samples of 1960 elements"):
        emulate_batch(g, np.zeros((2, 100), dtype=np.int8))
    g.operators[1].opcode = "no_such_op"      # no TFLite opcode has this name: never given a kernel
    g.sha256 = "modified-for-the-batch-test"
    with pytest.raises(ModelError, match=r"layer 1 \(no_such_op\): op not supported"):
        emulate_batch(g, np.zeros((2, 1960), dtype=np.int8))
