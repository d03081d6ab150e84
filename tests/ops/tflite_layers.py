"""Record TensorFlow Lite's outputs of single layers, for the operators whose standard is its
interpreter (the vendor's TFLite Micro has no int8 EXP, LOG or SQRT) and for the new int8 kernels in
models the vendor cannot run (ABS, the rescaling comparisons).

For each such layer of the listed models, the interpreter (reference kernels) runs 256 drawn
inputs (seed 5, drawn like the oracle's) with every tensor kept; the layer's inputs and output,
element for element, deduplicated, go to tests/data/ops/tflite_layers.json. The test feeds the
same inputs to the emulator's kernel and compares every output: a kernel checked over all the
values it meets, not through the rest of a model (whose MUL/ADD round twice in TensorFlow Lite).

Usage (project venv): .venv/bin/python tests/ops/tflite_layers.py
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "tests" / "data" / "ops"
OUT = OPS / "tflite_layers.json"
sys.path.insert(0, str(ROOT))

OPCODES = {"exp", "log", "sqrt", "abs", "greater", "greater_equal", "less", "less_equal"}
MODELS = ["exp_log_table.tflite", "sqrt_table.tflite", "survey/activation_squareplus.tflite", "survey/activation_exponential.tflite", "survey/activation_softplus.tflite",
          "survey/activation_mish.tflite", "survey/activation_selu.tflite", "survey/activation_celu.tflite",
          "survey/activation_log_sigmoid.tflite", "survey/activation_hard_shrink.tflite",
          "survey/activation_soft_shrink.tflite", "survey/activation_sparse_plus.tflite",
          "survey/activation_sparse_sigmoid.tflite"]
DRAWS, SEED = 256, 5


def record(rel: str) -> list[dict]:
    import tensorflow as tf

    from simulator.emulator import draw_inputs
    from simulator.tflite_reader import read_model_file
    path = OPS / rel
    g = read_model_file(path)
    interp = tf.lite.Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    layers = [op for op in g.operators if op.opcode in OPCODES
              and g.tensors[op.inputs[0]].dtype == "int8"]
    rows: dict[int, set] = {op.index: set() for op in layers}
    for x in draw_inputs(g, SEED, DRAWS):
        interp.set_tensor(d["index"], x.reshape(d["shape"]))
        interp.invoke()
        for op in layers:
            shape = tuple(g.tensors[op.outputs[0]].shape)
            live = [i for i in op.inputs if g.tensors[i].data is None]
            assert all(tuple(g.tensors[i].shape) == shape for i in live), (rel, op.index)
            cols = [interp.get_tensor(i).reshape(-1).astype(int) for i in live]
            cols.append(interp.get_tensor(op.outputs[0]).reshape(-1).astype(int))
            rows[op.index].update(zip(*cols))
    out = []
    for op in layers:
        r = np.array(sorted(rows[op.index]))
        out.append({"model": rel, "layer": op.index, "opcode": op.opcode,
                    "inputs": [r[:, k].tolist() for k in range(r.shape[1] - 1)], "output": r[:, -1].tolist()})
    return out


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    records = [rec for rel in MODELS for rec in record(rel)]
    OUT.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    for r in records:
        print(f"{r['model']} layer {r['layer']} ({r['opcode']}): {len(r['output'])} distinct input rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
