"""Survey: which operators TensorFlow's converter emits for each standard Keras layer, converted
exactly as a sweep converts a variant (orchestrator.build.convert_model: frozen concrete function,
batch 1, full-integer int8, per-tensor Dense, int8 input and output, recurrent layers unrolled),
and whether the emulator runs them in `none` and `mvp` mode.

Writes tests/data/ops/survey/NAME.tflite (one tiny seeded model per layer: the fixtures that the
oracle runs and tests/test_emulator_ops.py checks), tests/data/ops/survey/survey.json (layer ->
operators, or the converter's failure) and docs/keras_layers.md (the table, with the emulator's
verdicts computed afresh; tests/test_emulator_ops.py keeps it fresh).

Each conversion runs in a child process, so a converter crash (SIGSEGV) or hang costs that layer
only: it is recorded as such and the survey goes on.

Usage (project venv):
    .venv/bin/python tests/ops/survey.py [--only NAME ...]      # convert, write models + survey.json + doc
    .venv/bin/python tests/ops/survey.py --doc                  # doc from survey.json (no TensorFlow)
then the oracle: python3 ../shared/oracle/run_dir.py tests/data/ops/survey
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "data" / "ops" / "survey"
SURVEY = OUT / "survey.json"
DOC = ROOT / "docs" / "keras_layers.md"
CONVERT_TIMEOUT_S = 300   # per layer
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------ the layers
# Each builder returns a Keras model of a few layers; weights come from seeded initialisers and a
# layer with signed inputs gets a Dense/Conv before it (the calibration data is in [0, 1)).

def _layers():
    import keras
    L = keras.layers

    seed = [0]

    def init():
        seed[0] += 1
        return keras.initializers.GlorotUniform(seed=seed[0])

    def bias():
        seed[0] += 1
        return keras.initializers.RandomNormal(stddev=0.1, seed=seed[0])

    def inp(shape):
        return keras.Input(shape, batch_size=1)

    def dense(units, **kw):
        return L.Dense(units, kernel_initializer=init(), bias_initializer=bias(), **kw)

    def conv(filters, k=3, **kw):
        return L.Conv2D(filters, k, padding="same", kernel_initializer=init(), bias_initializer=bias(), **kw)

    def conv1(filters, k=3, **kw):
        return L.Conv1D(filters, k, padding="same", kernel_initializer=init(), bias_initializer=bias(), **kw)

    def img(layer, shape=(8, 8, 3), pre=True):
        def build():
            x = inp(shape)
            y = conv(4)(x) if pre else x
            return keras.Model(x, layer()(y))
        return build

    def seq(layer, shape=(12, 4), pre=True):
        def build():
            x = inp(shape)
            y = conv1(4)(x) if pre else x
            return keras.Model(x, layer()(y))
        return build

    def vec(layer, n=16):
        def build():
            x = inp((n,))
            return keras.Model(x, layer()(dense(n)(x)))
        return build

    def act(name):
        return vec(lambda: L.Activation(name))

    def merge(layer):
        def build():
            x = inp((6, 6, 3))
            return keras.Model(x, layer()([conv(4, 1)(x), conv(4)(x)]))
        return build

    def rnn(cls, unroll):
        def build():
            x = inp((6, 4))
            y = cls(8, unroll=unroll, kernel_initializer=init(), recurrent_initializer=init())(x)
            return keras.Model(x, y)
        return build

    def embedding():
        x = inp((6,))
        y = L.Embedding(10, 4, embeddings_initializer=init())(x)
        return keras.Model(x, L.Flatten()(y))

    def attention():
        x = inp((6, 8))
        q, v = dense(8)(x), dense(8)(x)
        return keras.Model(x, L.Attention()([q, v]))

    def additive_attention():
        x = inp((6, 8))
        q, v = dense(8)(x), dense(8)(x)
        return keras.Model(x, L.AdditiveAttention()([q, v]))

    def bidirectional():
        x = inp((6, 4))
        y = L.Bidirectional(L.GRU(4, unroll=True, kernel_initializer=init(), recurrent_initializer=init()))(x)
        return keras.Model(x, y)

    def mha():
        x = inp((6, 8))
        y = L.MultiHeadAttention(2, 4, kernel_initializer=init())(x, x)
        return keras.Model(x, y)

    def prelu():
        x = inp((16,))
        return keras.Model(x, L.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.05, 0.3, seed=7))(dense(16)(x)))

    def batchnorm():
        x = inp((8, 8, 3))
        bn = L.BatchNormalization(beta_initializer=bias(), gamma_initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=8),
                                  moving_mean_initializer=bias(),
                                  moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=9))
        return keras.Model(x, bn(x))

    def conv_bn():
        x = inp((8, 8, 3))
        return keras.Model(x, L.ReLU()(L.BatchNormalization(moving_mean_initializer=bias())(conv(4)(x))))

    return {
        # weighted layers
        "Conv1D": seq(lambda: L.Conv1D(6, 3, padding="same", activation="relu", kernel_initializer=init(),
                                       bias_initializer=bias()), pre=False),
        "Conv2D": img(lambda: conv(6, activation="relu"), pre=False),
        "DepthwiseConv2D": img(lambda: L.DepthwiseConv2D(3, padding="same", depthwise_initializer=init(),
                                                         bias_initializer=bias())),
        "SeparableConv1D": seq(lambda: L.SeparableConv1D(6, 3, padding="same", depthwise_initializer=init(),
                                                         pointwise_initializer=init(), bias_initializer=bias())),
        "SeparableConv2D": img(lambda: L.SeparableConv2D(6, 3, padding="same", depthwise_initializer=init(),
                                                         pointwise_initializer=init(), bias_initializer=bias())),
        "Conv2DTranspose": img(lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", kernel_initializer=init(),
                                                         bias_initializer=bias())),
        "Conv1DTranspose": seq(lambda: L.Conv1DTranspose(4, 3, strides=2, padding="same", kernel_initializer=init(),
                                                         bias_initializer=bias())),
        "Dense (2-D input)": vec(lambda: dense(8, activation="relu")),
        "Dense (3-D input)": seq(lambda: dense(5), pre=False),
        "DepthwiseConv1D": seq(lambda: L.DepthwiseConv1D(3, padding="same", depthwise_initializer=init(),
                                                         bias_initializer=bias())),
        "EinsumDense": seq(lambda: L.EinsumDense("abc,cd->abd", output_shape=(12, 6), bias_axes="d",
                                                 kernel_initializer=init())),
        "TimeDistributed(Dense)": seq(lambda: L.TimeDistributed(dense(5))),
        # pooling
        "MaxPooling1D": seq(lambda: L.MaxPooling1D(2)),
        "AveragePooling1D": seq(lambda: L.AveragePooling1D(2)),
        "MaxPooling2D": img(lambda: L.MaxPooling2D(2)),
        "AveragePooling2D": img(lambda: L.AveragePooling2D(2)),
        "GlobalMaxPooling1D": seq(lambda: L.GlobalMaxPooling1D()),
        "GlobalAveragePooling1D": seq(lambda: L.GlobalAveragePooling1D()),
        "GlobalMaxPooling2D": img(lambda: L.GlobalMaxPooling2D()),
        "GlobalAveragePooling2D": img(lambda: L.GlobalAveragePooling2D()),
        # normalisation
        "BatchNormalization": batchnorm,
        "Conv2D + BatchNormalization + ReLU": conv_bn,
        "LayerNormalization": seq(lambda: L.LayerNormalization()),
        "GroupNormalization": img(lambda: L.GroupNormalization(groups=2)),
        "UnitNormalization": seq(lambda: L.UnitNormalization()),
        "RMSNormalization": seq(lambda: L.RMSNormalization()),
        "Normalization (adapted)": img(lambda: L.Normalization(mean=[0.1, 0.2, 0.3, 0.4], variance=[1.0, 2.0, 0.5, 1.5])),
        # activations
        "ReLU": vec(lambda: L.ReLU()),
        "ReLU(max_value=6)": vec(lambda: L.ReLU(6.0)),
        "LeakyReLU": vec(lambda: L.LeakyReLU(0.2)),
        "ELU": vec(lambda: L.ELU()),
        "PReLU": prelu,
        "Activation('gelu')": act("gelu"),
        "gelu(approximate=True)": vec(lambda: L.Lambda(lambda t: keras.activations.gelu(t, approximate=True))),
        "Activation('sigmoid')": act("sigmoid"),
        "Activation('tanh')": act("tanh"),
        "Softmax": vec(lambda: L.Softmax()),
        "Activation('hard_sigmoid')": act("hard_sigmoid"),
        "Activation('hard_swish')": act("hard_swish"),
        "Activation('swish')": act("swish"),
        "Activation('mish')": act("mish"),
        "Activation('softplus')": act("softplus"),
        "Activation('selu')": act("selu"),
        "Activation('exponential')": act("exponential"),
        "Activation('softsign')": act("softsign"),
        "Activation('celu')": act("celu"),
        "Activation('hard_tanh')": act("hard_tanh"),
        "Activation('log_sigmoid')": act("log_sigmoid"),
        "Activation('log_softmax')": act("log_softmax"),
        "Activation('relu6')": act("relu6"),
        "Activation('tanh_shrink')": act("tanh_shrink"),
        "Activation('squareplus')": act("squareplus"),
        "Activation('sparse_plus')": act("sparse_plus"),
        "Activation('hard_shrink')": act("hard_shrink"),
        "Activation('soft_shrink')": act("soft_shrink"),
        "Activation('sparse_sigmoid')": act("sparse_sigmoid"),
        "Activation('sparsemax')": act("sparsemax"),
        "Activation('glu')": act("glu"),
        # merging
        "Add": merge(L.Add),
        "Subtract": merge(L.Subtract),
        "Multiply": merge(L.Multiply),
        "Maximum": merge(L.Maximum),
        "Minimum": merge(L.Minimum),
        "Average": merge(L.Average),
        "Concatenate": merge(L.Concatenate),
        # reshaping
        "Reshape": img(lambda: L.Reshape((16, 16))),
        "Flatten": img(lambda: L.Flatten()),
        "Permute": img(lambda: L.Permute((2, 1, 3))),
        "UpSampling1D": seq(lambda: L.UpSampling1D(2)),
        "UpSampling2D (nearest)": img(lambda: L.UpSampling2D(2)),
        "UpSampling2D (bilinear)": img(lambda: L.UpSampling2D(2, interpolation="bilinear")),
        "ZeroPadding1D": seq(lambda: L.ZeroPadding1D(2)),
        "ZeroPadding2D": img(lambda: L.ZeroPadding2D(((1, 2), (2, 1)))),
        "Cropping1D": seq(lambda: L.Cropping1D((1, 2))),
        "Cropping2D": img(lambda: L.Cropping2D(((1, 2), (2, 1)))),
        "Rescaling": img(lambda: L.Rescaling(1 / 127.5, offset=-1.0), pre=False),
        "Dropout": vec(lambda: L.Dropout(0.5)),
        "SpatialDropout2D": img(lambda: L.SpatialDropout2D(0.5)),
        "GaussianNoise": vec(lambda: L.GaussianNoise(0.1)),
        "RepeatVector": vec(lambda: L.RepeatVector(3)),
        "Resizing": img(lambda: L.Resizing(4, 4)),
        "CenterCrop": img(lambda: L.CenterCrop(6, 6)),
        "AdaptiveAveragePooling2D": img(lambda: L.AdaptiveAveragePooling2D((2, 2))),
        # sequence models
        "Embedding": embedding,
        "Attention": attention,
        "AdditiveAttention": additive_attention,
        "Bidirectional(GRU, unrolled)": bidirectional,
        "MultiHeadAttention": mha,
        "SimpleRNN (unrolled)": rnn(L.SimpleRNN, True),
        "GRU (unrolled)": rnn(L.GRU, True),
        "LSTM (unrolled)": rnn(L.LSTM, True),
        "LSTM (not unrolled)": rnn(L.LSTM, False),
    }


def file_name(layer: str) -> str:
    keep = "".join(ch.lower() if ch.isalnum() else "_" for ch in layer)
    return "_".join(p for p in keep.split("_") if p)


# ------------------------------------------------------------------------------------ conversion

def _convert_one(layer: str) -> dict:
    """In a child process: build and convert one layer's model, write its .tflite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from orchestrator.build import BuildError, convert_model, representative_data
    keras.utils.set_random_seed(0)
    model = _layers()[layer]()
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    try:
        data = convert_model(model, shape, "int8", representative_data(shape, {}))
    except BuildError as e:
        return {"layer": layer, "converted": False, "reason": str(e)}
    path = OUT / f"{file_name(layer)}.tflite"
    path.write_bytes(data)
    from simulator.tflite_reader import read_model
    return {"layer": layer, "converted": True, "file": path.name,
            "operators": [op.opcode.upper() for op in read_model(data).operators]}


def convert_all(layers: list[str]) -> list[dict]:
    """Converts in a child process that takes the layers in turn and prints one JSON line per
    layer; when the child dies (a converter crash) or hangs, the layer it was on is recorded as
    such and a fresh child takes the rest."""
    done: dict[str, dict] = {}
    while len(done) < len(layers):
        todo = [n for n in layers if n not in done]
        cmd = [sys.executable, __file__, "--child", *todo]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S * len(todo))
            out, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), None
        for ln in out.splitlines():
            if ln.startswith("{"):
                r = json.loads(ln)
                done[r["layer"]] = r
                print(f"{r['layer']}: {', '.join(r['operators']) if r['converted'] else r['reason']}", flush=True)
        stuck = next((n for n in layers if n not in done), None)
        if stuck is None:
            break
        if rc is None:
            reason = "the converter hung"
        elif rc == -11:
            reason = "the converter crashed (SIGSEGV)"
        elif rc < 0:
            reason = f"the converter died (signal {-rc})"
        else:
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            reason = f"the build failed: {tail[:300]}"
        done[stuck] = {"layer": stuck, "converted": False, "reason": reason}
        print(f"{stuck}: {reason}", flush=True)
    return [done[n] for n in layers]


# ------------------------------------------------------------------------------------ the table

def emulator_verdict(path: Path, accelerator: str) -> str:
    """"runs", or the emulator's one-line refusal (a `ModelError`)."""
    from simulator.emulator import compile_model, draw_inputs, emulate_batch
    from simulator.errors import ModelError
    from simulator.tflite_reader import read_model_file
    g = read_model_file(path)
    try:
        compile_model(g, accelerator)
        emulate_batch(g, draw_inputs(g, 0, 1)[0][None], accelerator)
    except ModelError as e:
        return f"no: {str(e).split(': ', 1)[-1]}"
    except Exception as e:      # a bug, not a verdict: shown as such so that it gets fixed
        return f"CRASH: {type(e).__name__}: {e}"
    return "runs"


def mvp_layers(path: Path) -> list[str]:
    """The operators of the model that run on the MVP in `mvp` mode."""
    from simulator.emulator import compile_model
    from simulator.tflite_reader import read_model_file
    try:
        steps = compile_model(read_model_file(path), "mvp").steps
    except Exception:
        return []
    return sorted({s.opcode.upper() for s in steps if s.mvp is not None})


def oracle_verdicts() -> dict[str, str]:
    """Per model file, what the vendor's TFLite Micro (the oracle's run_dir.py) did with it:
    "runs", "fails" (its run died: MLTK 0.20 has no kernel for one of the operators, or crashed),
    or "fails in mvp" / "fails in none"."""
    path = OUT / "mltk_outputs.jsonl"
    ok: dict[str, dict[str, bool]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        ok.setdefault(r["model"], {})[r["accelerator"]] = "results" in r
    out = {}
    for model, modes in ok.items():
        bad = [m for m in ("mvp", "none") if not modes.get(m, False)]
        out[model] = "runs" if not bad else "fails" if len(bad) == 2 else f"fails in {bad[0]}"
    return out


def table_markdown(survey: list[dict]) -> str:
    lines = [
        "# Standard Keras layers: the operators they convert to, and where they run",
        "",
        "Generated by `tests/ops/survey.py --doc` from `tests/data/ops/survey/survey.json` (the operators",
        "TensorFlow's converter emitted for a tiny model of each layer, converted as a sweep converts a variant:",
        "`orchestrator.build.convert_model`, int8 full-integer, recurrent layers unrolled) and the emulator's",
        "verdicts on those models; do not edit by hand. The models are `tests/data/ops/survey/*.tflite`;",
        "`tests/test_emulator_ops.py` checks their outputs against TFLite Micro (the vendor's oracle) and",
        "keeps this table fresh. `on the MVP` lists the operators that `mvp` mode runs on the accelerator;",
        "every other operator runs on TFLite Micro's reference kernels in both modes. `vendor TFLM` is what",
        "the vendor's TFLite Micro (MLTK 0.20, the oracle) did with the model: where it runs, the emulator's",
        "outputs are compared with it element for element; where it fails (an operator it has no kernel",
        "for), the board cannot run the model either, and TensorFlow Lite's interpreter is the peer.",
        "",
        "| Keras layer | operators | none | mvp | on the MVP | vendor TFLM |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    oracle = oracle_verdicts()
    for r in survey:
        if not r["converted"]:
            lines.append(f"| {r['layer']} | not converted: {r['reason']} | - | - | - | - |")
            continue
        path = OUT / r["file"]
        ops = ", ".join(dict.fromkeys(r["operators"]))
        on_mvp = ", ".join(mvp_layers(path)) or "-"
        lines.append(f"| {r['layer']} | {ops} | {emulator_verdict(path, 'none')} | "
                     f"{emulator_verdict(path, 'mvp')} | {on_mvp} | {oracle.get(r['file'], 'not run')} |")
    return "\n".join(lines) + "\n"


def load_survey() -> list[dict]:
    return json.loads(SURVEY.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--doc", action="store_true", help="only rewrite the doc from survey.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        for layer in args.child:
            print(json.dumps(_convert_one(layer)), flush=True)
        return 0
    if not args.doc:
        OUT.mkdir(parents=True, exist_ok=True)
        names = list(_layer_names())
        todo = [n for n in names if not args.only or n in args.only]
        old = {r["layer"]: r for r in load_survey()} if SURVEY.exists() else {}
        old.update({r["layer"]: r for r in convert_all(todo)})
        SURVEY.write_text(json.dumps([old[n] for n in names if n in old], indent=1) + "\n")
    DOC.write_text(table_markdown(load_survey()))
    print(DOC)
    return 0


def _layer_names():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return _layers().keys()


if __name__ == "__main__":
    sys.exit(main())
