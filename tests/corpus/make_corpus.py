"""Build the int8 .tflite test corpus in tests/data/corpus/.

Each model is small, untrained (seeded initialisers) and fully integer-quantised by the TFLite converter from a
seeded random representative dataset, so a rebuild with the same TensorFlow gives the same bytes. Together the models
exercise every tip of Silicon Labs' model-size FAQ and every MVP hardware limit that the simulator models, and the
operators the zoo models lack. The oracle's numbers for them are produced by ../shared/oracle (see README.md).

Usage (project venv):
    .venv/bin/python tests/corpus/make_corpus.py [--out DIR] [--only NAME ...]   # build models + manifest + README
    .venv/bin/python tests/corpus/make_corpus.py --readme-only                  # README from existing files
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "corpus"
MANIFEST_NAME = "manifest.json"
REPRESENTATIVE_SAMPLES = 16
ORACLE_PROFILES = "mltk_sim.jsonl"

# Models the oracle (MLTK 0.20) crashes on with the MVP kernels go here, outside the directory the oracle scripts
# scan, so the fixtures hold only models with oracle numbers; the project's simulator can still be tested on them.
CRASHES_SUBDIR = "oracle_crashes"


@dataclass(frozen=True)
class CorpusModel:
    name: str
    exercises: str
    build: Callable[[], "keras.Model"]
    float_io: bool = False  # float32 input/output, so QUANTIZE/DEQUANTIZE layers appear
    oracle_crash: str = ""  # why the oracle cannot profile it (the model then goes to CRASHES_SUBDIR)
    # TF >= 2.16 quantises Dense weights per channel by default; the zoo models, the vendor's FC kernels (one output
    # multiplier) and MLTK's TFLM expect per-tensor weights, so that is the default here.
    fc_per_channel: bool = False

    def path(self, out: Path) -> Path:
        return (out / CRASHES_SUBDIR if self.oracle_crash else out) / f"{self.name}.tflite"


class Seeds:
    """Hands out distinct, fixed initialiser seeds so each layer's weights are reproducible."""

    def __init__(self, base: int):
        self._next = base * 1000

    def _take(self) -> int:
        self._next += 1
        return self._next

    def kernel(self):
        return keras.initializers.GlorotUniform(seed=self._take())

    def bias(self):
        # Non-zero biases so the bias path of every kernel is exercised numerically.
        return keras.initializers.RandomNormal(stddev=0.1, seed=self._take())

    def conv(self, filters, kernel, **kw):
        return keras.layers.Conv2D(filters, kernel, kernel_initializer=self.kernel(),
                                   bias_initializer=self.bias(), **kw)

    def dwconv(self, kernel, **kw):
        return keras.layers.DepthwiseConv2D(kernel, depthwise_initializer=self.kernel(),
                                            bias_initializer=self.bias(), **kw)

    def dense(self, units, **kw):
        return keras.layers.Dense(units, kernel_initializer=self.kernel(), bias_initializer=self.bias(), **kw)


def _input(shape):
    # A fixed batch of 1: the MCU runtime and the oracle need static shapes.
    return keras.Input(shape, batch_size=1)


# ---------------------------------------------------------------------------------------------------------------
# Model builders. Each one is a few layers; the seed argument keeps models independent of build order.

def conv_model(in_shape, filters, kernel, strides=1, padding="same", dilation=1, activation="relu", seed=1):
    s = Seeds(seed)
    x = _input(in_shape)
    y = s.conv(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation, activation=activation)(x)
    return keras.Model(x, y)


def conv_odd_channels():
    s = Seeds(10)
    x = _input((12, 12, 5))
    y = s.conv(7, 3, padding="same", activation="relu")(x)
    y = s.conv(3, 3, padding="valid", activation="relu")(y)
    return keras.Model(x, y)


def conv1d_model(in_shape, filters, kernel, strides=1, padding="same", seed=11):
    s = Seeds(seed)
    x = _input(in_shape)
    y = keras.layers.Conv1D(filters, kernel, strides=strides, padding=padding, activation="relu",
                            kernel_initializer=s.kernel(), bias_initializer=s.bias())(x)
    return keras.Model(x, y)


def dwconv_model(in_shape, kernel, depth_multiplier=1, strides=1, padding="same", seed=20):
    s = Seeds(seed)
    x = _input(in_shape)
    y = s.dwconv(kernel, depth_multiplier=depth_multiplier, strides=strides, padding=padding, activation="relu")(x)
    return keras.Model(x, y)


def separable_conv():
    s = Seeds(25)
    x = _input((16, 16, 8))
    y = keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu", depthwise_initializer=s.kernel(),
                                     pointwise_initializer=s.kernel(), bias_initializer=s.bias())(x)
    return keras.Model(x, y)


def transpose_conv():
    s = Seeds(26)
    x = _input((8, 8, 8))
    y = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu",
                                     kernel_initializer=s.kernel(), bias_initializer=s.bias())(x)
    return keras.Model(x, y)


def fc_model(accum, units, activation="relu", seed=30):
    s = Seeds(seed)
    x = _input((accum,))
    y = s.dense(units, activation=activation)(x)
    return keras.Model(x, y)


def mlp_model(hidden_units, seed=35):
    s = Seeds(seed)
    x = _input((128,))
    y = s.dense(hidden_units, activation="relu")(x)
    y = s.dense(10)(y)
    return keras.Model(x, y)


def pool_model(kind, pool, strides, padding="valid", seed=40):
    s = Seeds(seed)
    x = _input((16, 16, 8))
    y = s.conv(8, 3, padding="same", activation="relu")(x)
    layer = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
    y = layer(pool, strides=strides, padding=padding)(y)
    return keras.Model(x, y)


def residual_add_relu():
    s = Seeds(50)
    x = _input((16, 16, 8))
    y = s.conv(8, 3, padding="same", activation="relu")(x)
    y = s.conv(8, 3, padding="same")(y)
    y = keras.layers.Add()([x, y])
    y = keras.layers.ReLU()(y)  # fuses into ADD as its activation
    y = s.conv(8, 1, padding="same")(y)
    z = keras.layers.Add()([y, s.conv(8, 1, padding="same")(x)])  # plain ADD, no activation
    return keras.Model(x, z)


def add_broadcast():
    s = Seeds(51)
    x = _input((8, 8, 8))
    y = s.conv(8, 3, padding="same", activation="relu")(x)
    g = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
    y = keras.layers.Add()([y, g])  # 1x8x8x8 + 1x1x1x8: shapes differ, so the MVP ADD does not apply
    return keras.Model(x, y)


def concat_branches():
    s = Seeds(52)
    x = _input((16, 16, 8))
    a = s.conv(8, 1, padding="same", activation="relu")(x)
    b = s.conv(4, 3, padding="same", activation="relu")(x)
    y = keras.layers.Concatenate(axis=-1)([a, b])
    y = s.conv(8, 1, padding="same")(y)
    return keras.Model(x, y)


def mul_branches():
    s = Seeds(53)
    x = _input((16, 16, 8))
    a = s.conv(8, 1, padding="same", activation="relu")(x)
    b = s.conv(8, 3, padding="same", activation="sigmoid")(x)
    y = keras.layers.Multiply()([a, b])
    return keras.Model(x, y)


def mean_gap_softmax():
    s = Seeds(54)
    x = _input((16, 16, 8))
    y = s.conv(16, 3, padding="same", activation="relu")(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = s.dense(4)(y)
    y = keras.layers.Softmax()(y)
    return keras.Model(x, y)


def pad_conv():
    s = Seeds(55)
    x = _input((15, 15, 8))
    y = keras.layers.ZeroPadding2D(((1, 2), (2, 1)))(x)  # asymmetric so it cannot fold into SAME padding
    y = s.conv(8, 3, padding="valid", activation="relu")(y)
    return keras.Model(x, y)


def flatten_dense_softmax():
    s = Seeds(56)
    x = _input((8, 8, 4))
    y = keras.layers.Flatten()(x)  # RESHAPE
    y = s.dense(10)(y)
    y = keras.layers.Softmax()(y)
    return keras.Model(x, y)


def tanh_logistic():
    s = Seeds(57)
    x = _input((8, 8, 8))
    y = s.conv(8, 3, padding="same")(x)
    y = keras.layers.Activation("tanh")(y)
    y = s.conv(8, 3, padding="same")(y)
    y = keras.layers.Activation("sigmoid")(y)
    return keras.Model(x, y)


def relu_relu6_layers():
    s = Seeds(58)
    x = _input((8, 8, 8))
    y = keras.layers.ReLU()(x)  # first op: nothing to fuse into
    y = s.conv(8, 3, padding="same")(y)
    y = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
    y = keras.layers.ReLU(max_value=6.0)(y)  # MEAN has no fused activation, so RELU6 stays a layer
    return keras.Model(x, y)


def mlp_640_128_128_8_640():
    s = Seeds(59)
    x = _input((640,))
    y = x
    for units in (128, 128, 8):
        y = s.dense(units, activation="relu")(y)
    return keras.Model(x, s.dense(640)(y))


def cnn_model(in_hw=32, filters=16, dense_units=32, seed=60):
    """The FAQ's running example: a small image classifier whose variants apply one tip each."""
    s = Seeds(seed)
    x = _input((in_hw, in_hw, 3))
    y = s.conv(filters, 3, padding="same", activation="relu")(x)
    y = keras.layers.MaxPooling2D(2)(y)
    y = s.dwconv(3, padding="same", activation="relu")(y)
    y = s.conv(2 * filters, 1, padding="same", activation="relu")(y)
    y = keras.layers.AveragePooling2D(2)(y)
    y = keras.layers.Flatten()(y)
    y = s.dense(dense_units, activation="relu")(y)
    y = s.dense(4)(y)
    y = keras.layers.Softmax()(y)
    return keras.Model(x, y)


MODELS: list[CorpusModel] = [
    # Kernel sizes 1/3/5/7, strides 1/2/3, SAME and VALID, dilation.
    CorpusModel("conv_k1_s1", "conv_2d 1x1 (pointwise), stride 1",
                lambda: conv_model((16, 16, 8), 16, 1, seed=1)),
    CorpusModel("conv_k3_s1_same", "conv_2d 3x3 stride 1 SAME: the baseline conv",
                lambda: conv_model((16, 16, 8), 16, 3, seed=2)),
    CorpusModel("conv_k3_s1_f4", "fewer filters (4 instead of 16) than conv_k3_s1_same",
                lambda: conv_model((16, 16, 8), 4, 3, seed=3)),
    CorpusModel("conv_k5_s2_valid", "conv_2d 5x5 stride 2 VALID",
                lambda: conv_model((16, 16, 8), 16, 5, strides=2, padding="valid", seed=4)),
    CorpusModel("conv_k7_s3", "conv_2d 7x7 stride 3 SAME (kernel 7, stride 3)",
                lambda: conv_model((24, 24, 4), 8, 7, strides=3, seed=5)),
    CorpusModel("conv_dilation2", "conv_2d 3x3 dilation 2 (MVP conv needs dilation 1)",
                lambda: conv_model((16, 16, 8), 8, 3, dilation=2, seed=6)),
    CorpusModel("conv_wide_row", "conv_2d on a wide row: W*C = 160*16 = 2560 > 2047 (array stride limit)",
                lambda: conv_model((4, 160, 16), 16, 3, seed=7)),
    CorpusModel("conv_odd_channels", "odd channel counts 5 -> 7 -> 3 (no int8 pair packing)", conv_odd_channels),
    CorpusModel("conv_k3_float_io", "float32 input/output: QUANTIZE and DEQUANTIZE around a conv",
                lambda: conv_model((16, 16, 8), 16, 3, seed=2), float_io=True),
    # Conv1D: Keras lowers it to conv_2d with H = 1.
    CorpusModel("conv1d_wide", "Conv1D (conv_2d, H=1), W*C = 512*8 = 4096 > 2047: the wide Conv1D width split",
                lambda: conv1d_model((512, 8), 8, 3, seed=11)),
    CorpusModel("conv1d_k5_s2", "Conv1D kernel 5 stride 2 VALID, narrow rows",
                lambda: conv1d_model((64, 16), 16, 5, strides=2, padding="valid", seed=12)),
    # Depthwise: multipliers 1/2/4, optimised and generic paths.
    CorpusModel("dwconv_dm1", "depthwise_conv_2d 3x3 multiplier 1, H*W <= 4*Fh*Fw*C (optimised path)",
                lambda: dwconv_model((16, 16, 8), 3, seed=20)),
    CorpusModel("dwconv_dm2", "depthwise_conv_2d multiplier 2 (generic path)",
                lambda: dwconv_model((16, 16, 8), 3, depth_multiplier=2, seed=21)),
    CorpusModel("dwconv_dm4", "depthwise_conv_2d multiplier 4 (generic path)",
                lambda: dwconv_model((16, 16, 8), 3, depth_multiplier=4, seed=22)),
    CorpusModel("dwconv_k5_s2_generic", "depthwise 5x5 stride 2 on 32x32x4: H*W > 4*Fh*Fw*C (generic path)",
                lambda: dwconv_model((32, 32, 4), 5, strides=2, seed=23)),
    CorpusModel("dwconv_k3_s3_valid", "depthwise 3x3 stride 3 VALID, odd channel count 7",
                lambda: dwconv_model((18, 18, 7), 3, strides=3, padding="valid", seed=24)),
    CorpusModel("separable_conv", "SeparableConv2D: depthwise_conv_2d then 1x1 conv_2d", separable_conv),
    CorpusModel("transpose_conv", "Conv2DTranspose 3x3 stride 2 SAME (transpose_conv)", transpose_conv),
    # Fully connected: accumulation depth and unit limits.
    CorpusModel("fc_accum2048", "fully_connected accum 2048 (even): the largest single-program FC",
                lambda: fc_model(2048, 16, seed=30)),
    CorpusModel("fc_accum1025_odd", "fully_connected accum 1025 (odd > 1024: no pair packing)",
                lambda: fc_model(1025, 16, seed=31)),
    CorpusModel("fc_accum4000", "fully_connected accum 4000 (> 2048: the large, factorised path)",
                lambda: fc_model(4000, 16, seed=32)),
    CorpusModel("fc_accum8192", "fully_connected accum 8192", lambda: fc_model(8192, 8, seed=33)),
    CorpusModel("fc_units1100", "fully_connected with 1100 units (> 1024 output limit)",
                lambda: fc_model(32, 1100, activation=None, seed=34)),
    CorpusModel("mlp_640_128_128_8_640", "the MLP the oracle README reports crashing MLTK: it crashes only with "
                "per-channel Dense weights (see fc_per_channel_units256); per-tensor here", mlp_640_128_128_8_640),
    CorpusModel("mlp_units256", "Dense units big: 128 -> 256 -> 10", lambda: mlp_model(256, seed=35)),
    CorpusModel("fc_per_channel_units32", "fully_connected with per-channel weight scales (TF's new default)",
                lambda: mlp_model(32, seed=37), fc_per_channel=True),
    CorpusModel("fc_per_channel_units256", "fully_connected with per-channel weight scales and 256 units",
                lambda: mlp_model(256, seed=35), fc_per_channel=True,
                oracle_crash="MLTK's reference FC fails Prepare ('Failed to prepare with status 1') and the MVP run "
                             "crashes (SIGSEGV in GetQuantizedConvolutionMultipler): per-channel FC with 256 or "
                             "more units; per-channel with 32 units works, per-tensor works at any size tried"),
    CorpusModel("mlp_units32", "Dense units small: 128 -> 32 -> 10", lambda: mlp_model(32, seed=36)),
    CorpusModel("mlp_float_io", "float32 input/output MLP 128 -> 32 -> 10", lambda: mlp_model(32, seed=36),
                float_io=True),
    # Pooling.
    CorpusModel("maxpool_2x2", "max_pool_2d 2x2 stride 2 after a conv", lambda: pool_model("max", 2, 2, seed=40)),
    CorpusModel("avgpool_3x3_s1", "average_pool_2d 3x3 stride 1 SAME after a conv",
                lambda: pool_model("avg", 3, 1, padding="same", seed=41)),
    CorpusModel("avgpool_2x2", "average_pool_2d 2x2 stride 2 after a conv",
                lambda: pool_model("avg", 2, 2, seed=42)),
    # Element-wise and glue operators.
    CorpusModel("residual_add_relu", "residual connections: add with fused RELU and a plain add", residual_add_relu),
    CorpusModel("add_broadcast", "add of 1x8x8x8 and 1x1x1x8 (broadcast: CPU reference) after mean keepdims",
                add_broadcast),
    CorpusModel("concat_branches", "concatenation of two conv branches (8 + 4 channels)", concat_branches),
    CorpusModel("mul_branches", "mul of a relu branch and a logistic branch (gating)", mul_branches),
    CorpusModel("mean_gap_softmax", "GlobalAveragePooling2D (mean), fully_connected, softmax", mean_gap_softmax),
    CorpusModel("pad_conv", "ZeroPadding2D asymmetric (pad) then VALID conv", pad_conv),
    CorpusModel("flatten_dense_softmax", "Flatten (reshape), fully_connected, softmax", flatten_dense_softmax),
    CorpusModel("tanh_logistic", "tanh and logistic as separate layers", tanh_logistic),
    CorpusModel("relu_relu6_layers", "relu and relu6 as separate layers (not fused), mean keepdims", relu_relu6_layers),
    # The FAQ's tips applied to one small classifier.
    CorpusModel("cnn_in32", "FAQ base: 32x32x3 conv16-maxpool-dw-conv32-avgpool-dense32-dense4-softmax",
                lambda: cnn_model(32, seed=60)),
    CorpusModel("cnn_in16", "FAQ tip: smaller input (16x16x3) than cnn_in32", lambda: cnn_model(16, seed=60)),
    CorpusModel("cnn_in48", "FAQ tip reversed: larger input (48x48x3) than cnn_in32", lambda: cnn_model(48, seed=60)),
    CorpusModel("cnn_in32_float_io", "FAQ tip reversed: float32 input/output of cnn_in32",
                lambda: cnn_model(32, seed=60), float_io=True),
    CorpusModel("cnn_in32_f8", "FAQ tip: half the filters (8/16) of cnn_in32", lambda: cnn_model(32, 8, seed=60)),
    CorpusModel("cnn_in32_dense8", "FAQ tip: fewer Dense units (8) than cnn_in32",
                lambda: cnn_model(32, dense_units=8, seed=60)),
]


# ---------------------------------------------------------------------------------------------------------------

def convert(spec: CorpusModel) -> bytes:
    """Full-integer quantisation with int8 kernels; int8 I/O unless the spec asks for float32 I/O."""
    _import_tf()
    keras.backend.clear_session()  # layer names (stored in the file) restart, so bytes do not depend on build order
    keras.utils.set_random_seed(0)
    model = spec.build()
    shape = tuple(model.inputs[0].shape)

    def representative():
        # Seeded per model name so adding a model never changes another one's calibration.
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(spec.name.encode()).digest()[:4], "little"))
        for _ in range(REPRESENTATIVE_SAMPLES):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv._experimental_disable_per_channel_quantization_for_dense_layers = not spec.fc_per_channel
    if not spec.float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    data = conv.convert()
    # The switch above is a private converter attribute: make sure it still does what it says.
    per_channel = [n > 1 for n in fc_weight_scale_counts(data)]
    if per_channel and any(per_channel) != spec.fc_per_channel:
        raise RuntimeError(f"{spec.name}: Dense weight quantisation is not "
                           f"{'per-channel' if spec.fc_per_channel else 'per-tensor'} as asked")
    return data


def fc_weight_scale_counts(data: bytes) -> list[int]:
    """Number of quantisation scales of each FULLY_CONNECTED weight tensor (1 = per-tensor)."""
    import tflite
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    counts = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.FULLY_CONNECTED:
            counts.append(g.Tensors(op.Inputs(1)).Quantization().ScaleLength())
    return counts


def opcodes(data: bytes) -> list[str]:
    """Operator names in execution order (the flatbuffer schema package, independent of the project's reader)."""
    import tflite
    from tflite.utils import opcode2name
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    names = []
    for i in range(g.OperatorsLength()):
        oc = m.OperatorCodes(g.Operators(i).OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        names.append(opcode2name(code).lower())
    return names


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(out: Path) -> dict:
    """sha256 of every model, so a rebuild that differs (TF upgrade, edited builder) is caught by the tests."""
    files = {str(p.relative_to(out)): sha256(p) for p in sorted(out.glob("**/*.tflite"))}
    manifest = {"tensorflow": tf.__version__, "keras": keras.__version__, "files": files}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _oracle_summary(out: Path) -> dict[tuple[str, str], dict]:
    path = out / ORACLE_PROFILES
    if not path.exists():
        return {}
    recs = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        recs[(r["model"], r["accelerator"])] = r["result"]
    return recs


def write_readme(out: Path) -> None:
    oracle = _oracle_summary(out)
    lines = [
        "# Test corpus: small int8 models with the oracle's numbers",
        "",
        "Built by `tests/corpus/make_corpus.py` (project venv; TensorFlow/Keras versions in `manifest.json`):",
        "untrained, seeded weights; full-integer quantisation by the TFLite converter (int8 kernels, a seeded random",
        "representative dataset); int8 input/output unless marked float32. `manifest.json` holds each file's sha256;",
        "`tests/test_corpus.py` checks the fixtures against it and rebuilds one model to check the build is",
        "reproducible.",
        "",
        "Oracle files (../shared/oracle, MLTK 0.20):",
        "- `mltk_sim.jsonl`: `profile_dir.py` (written as `mltk.jsonl`, renamed), one record per model and accelerator"
        " (`mvp`, `none`).",
        "- `mltk_outputs.jsonl`: `run_dir.py`, 3 inputs from `numpy.random.default_rng(0)` per model and accelerator.",
        "",
        "Regenerate: `.venv/bin/python tests/corpus/make_corpus.py`, then",
        "`python3 ../shared/oracle/profile_dir.py tests/data/corpus && mv tests/data/corpus/mltk.jsonl"
        " tests/data/corpus/mltk_sim.jsonl`, `python3 ../shared/oracle/run_dir.py tests/data/corpus`, and",
        "`.venv/bin/python tests/corpus/make_corpus.py --readme-only` to refresh the oracle columns below.",
        "",
        "Columns from the oracle with the MVP: flash = `tflite_size`, RAM = `runtime_memory_size`, MACs, accelerator",
        "cycles, unsupported = layers the MVP kernels refuse (they run on the CPU reference kernels).",
        "",
        "| model | I/O | exercises | operators | flash B | RAM B | MACs | accel. cycles | unsupported |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for spec in MODELS:
        path = spec.path(out)
        if spec.oracle_crash or not path.exists():
            continue
        ops = ", ".join(dict.fromkeys(opcodes(path.read_bytes())))
        r = oracle.get((spec.name, "mvp"), {}).get("summary", {})
        cols = [r.get(k, "") for k in ("tflite_size", "runtime_memory_size", "macs", "accelerator_cycles",
                                       "n_unsupported_layers")]
        io = "float32" if spec.float_io else "int8"
        lines.append(f"| `{spec.name}` | {io} | {spec.exercises} | {ops} | " + " | ".join(map(str, cols)) + " |")
    unsupported = []
    for spec in MODELS:
        # MLTK logs a refusal once per trial arena size of its RAM search: keep each reason once.
        for reason in dict.fromkeys(oracle.get((spec.name, "mvp"), {}).get("log", [])):
            unsupported.append(f"- `{spec.name}`: {reason.strip()}")
    if unsupported:
        lines += ["", "## Layers the oracle refuses on the MVP (run on the CPU), with its reasons", "", *unsupported]
    lines += ["", f"## Kept out of the fixtures: `{CRASHES_SUBDIR}/`", "",
              "The oracle crashes on these with the MVP kernels, so they have no oracle numbers; they are built",
              f"into `{CRASHES_SUBDIR}/` (not scanned by the oracle scripts) for the project's own checks.", ""]
    lines += [f"- `{s.name}` ({s.exercises}): {s.oracle_crash}" for s in MODELS if s.oracle_crash]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CORPUS_DIR)
    ap.add_argument("--only", nargs="*", help="build only these models (the manifest still covers the directory)")
    ap.add_argument("--readme-only", action="store_true", help="rewrite README.md from existing files")
    args = ap.parse_args(argv)
    _import_tf()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.readme_only:
        known = {m.name for m in MODELS}
        unknown = sorted(set(args.only or ()) - known)
        if unknown:
            print(f"make_corpus: unknown model name(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        for spec in MODELS:
            if args.only and spec.name not in args.only:
                continue
            with contextlib.redirect_stdout(io.StringIO()):  # Keras' export chatter
                data = convert(spec)
            path = spec.path(args.out)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            print(f"{spec.name:24s} {len(data):7d} B  {' '.join(opcodes(data))}")
        write_manifest(args.out)
    write_readme(args.out)
    return 0


def _import_tf():
    # TensorFlow is imported lazily so that the model list can be read without it.
    global tf, keras, np
    import numpy as np
    import tensorflow as tf
    import keras


if __name__ == "__main__":
    sys.exit(main())
