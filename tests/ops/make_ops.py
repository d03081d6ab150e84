"""Build tests/data/ops/: one small int8 model per group of operators that TensorFlow's converter
emits for standard Keras layers and that the zoo and corpus lack (REDUCE_MAX from
GlobalMaxPooling2D, SUM, TRANSPOSE, STRIDED_SLICE, SUB, MAXIMUM/MINIMUM, HARD_SWISH, LEAKY_RELU,
PACK/UNPACK, SPLIT/SPLIT_V, BATCH_MATMUL, FULLY_CONNECTED on 3-D input, EXP/LOG, SQUARED_DIFFERENCE/RSQRT, LOG_SOFTMAX, ...), built and converted
exactly as the corpus is (tests/corpus/make_corpus.py: seeded, full-integer, per-tensor Dense).

Usage (project venv): .venv/bin/python tests/ops/make_ops.py [--only NAME ...]
then the oracle's outputs: python3 ../shared/oracle/run_dir.py tests/data/ops
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "ops"
_spec = importlib.util.spec_from_file_location("make_corpus", HERE.parent / "corpus" / "make_corpus.py")
mc = importlib.util.module_from_spec(_spec)
sys.modules["make_corpus"] = mc
_spec.loader.exec_module(mc)


def _k():
    mc._import_tf()
    return mc.keras, mc.tf


def global_max_pool():
    keras, _ = _k()
    s = mc.Seeds(101)
    x = mc._input((12, 12, 3))
    y = s.conv(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.GlobalMaxPooling2D()(y)
    return keras.Model(x, s.dense(5)(y))


def reduce_sum_mean_1d():
    keras, tf = _k()
    s = mc.Seeds(102)
    x = mc._input((16, 6))
    y = s.dense(8)(x)                                           # FULLY_CONNECTED on a 3-D input
    a = keras.layers.GlobalAveragePooling1D()(y)                # MEAN over axis 1
    b = keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=1))(y)   # SUM
    c = keras.layers.GlobalMaxPooling1D()(y)                    # REDUCE_MAX over axis 1
    return keras.Model(x, keras.layers.Concatenate()([a, b, c]))


def transpose_crop():
    keras, _ = _k()
    s = mc.Seeds(103)
    x = mc._input((10, 8, 4))
    y = keras.layers.Permute((2, 1, 3))(x)                      # TRANSPOSE
    y = keras.layers.Cropping2D(((1, 2), (2, 1)))(y)            # STRIDED_SLICE
    y = s.conv(6, 3, padding="valid")(y)
    return keras.Model(x, keras.layers.Flatten()(y))


def sub_max_min():
    keras, _ = _k()
    s = mc.Seeds(104)
    x = mc._input((6, 6, 4))
    a = s.conv(4, 1)(x)
    b = s.conv(4, 3, padding="same")(x)
    d = keras.layers.Subtract()([a, b])                         # SUB
    mx = keras.layers.Maximum()([a, b])                         # MAXIMUM
    mn = keras.layers.Minimum()([a, b])                         # MINIMUM
    return keras.Model(x, keras.layers.Concatenate()([d, mx, mn]))


def hard_swish_leaky():
    keras, tf = _k()
    s = mc.Seeds(105)
    x = mc._input((8, 8, 3))
    y = s.conv(8, 3, padding="same")(x)
    y = keras.layers.Activation("hard_swish")(y)                # HARD_SWISH
    y = s.conv(8, 3, padding="same")(y)
    y = keras.layers.LeakyReLU(0.1)(y)                          # LEAKY_RELU
    y = s.dwconv(3, padding="same")(y)
    y = keras.layers.ReLU(6.0)(y)                               # RELU6 (not fused)
    y = keras.layers.Activation("sigmoid")(y)                   # LOGISTIC
    return keras.Model(x, y)


def stack_split():
    keras, tf = _k()
    s = mc.Seeds(106)
    x = mc._input((8, 6))
    y = s.dense(12)(x)
    parts = keras.layers.Lambda(lambda t: tf.split(t, 3, axis=-1))(y)            # SPLIT
    uneven = keras.layers.Lambda(lambda t: tf.split(t, [5, 7], axis=-1))(y)      # SPLIT_V
    rows = keras.layers.Lambda(lambda t: tf.unstack(t, axis=1))(y)               # UNPACK
    stacked = keras.layers.Lambda(lambda t: tf.stack(t[:3], axis=1))(rows)       # PACK
    z = keras.layers.Concatenate()([parts[0], parts[2], uneven[0]])
    return keras.Model(x, [keras.layers.Flatten()(z), keras.layers.Flatten()(stacked)])


def dot_attention():
    keras, tf = _k()
    s = mc.Seeds(107)
    x = mc._input((6, 8))
    q = s.dense(8)(x)
    k = s.dense(8)(x)
    att = keras.layers.Dot(axes=(2, 2))([q, k])                 # BATCH_MATMUL (adj_y)
    att = keras.layers.Softmax()(att)
    out = keras.layers.Dot(axes=(2, 1))([att, x])               # BATCH_MATMUL
    return keras.Model(x, out)


def add_tiny_scale():
    """An ADD whose output scale is below 2^-16 (untrained MobileNetV2/V3 residuals have such
    scales): 1/s_out overflows binary16, so the MVP's ADD program cannot represent it."""
    keras, _ = _k()
    x = mc._input((8, 8, 4))
    tiny = keras.initializers.RandomNormal(stddev=1e-7, seed=1)
    a = keras.layers.Conv2D(4, 1, kernel_initializer=tiny, bias_initializer="zeros")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=1e-7, seed=2),
                            bias_initializer="zeros")(x)
    return keras.Model(x, keras.layers.Add()([a, b]))


def elu_table():
    """ELU straight on a 256-element int8 input: the oracle's random inputs reach most values.
    This converter leaves ELU in float32 between a DEQUANTIZE and a QUANTIZE."""
    keras, _ = _k()
    x = mc._input((256,))
    return keras.Model(x, keras.layers.ELU()(x))


def prelu_table():
    """PReLU (per-element alpha) straight on a 256-element int8 input."""
    keras, _ = _k()
    x = mc._input((256,))
    return keras.Model(x, keras.layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.05, 0.4, seed=108))(x))


def prelu_shared_axes():
    """PReLU with alpha shared over H and W (alpha 1x1xC broadcast over the feature map)."""
    keras, _ = _k()
    s = mc.Seeds(109)
    x = mc._input((6, 6, 3))
    y = s.conv(5, 3, padding="same")(x)
    alpha = keras.initializers.RandomUniform(0.05, 0.4, seed=110)
    return keras.Model(x, keras.layers.PReLU(alpha_initializer=alpha, shared_axes=[1, 2])(y))


def exp_log_table():
    """softplus straight on a 256-element int8 input: EXP on the input itself (the random inputs
    reach most of its table), then ADD and LOG; the EXP's output is a second model output."""
    keras, _ = _k()
    x = mc._input((256,))
    e = keras.layers.Activation("exponential")(x)
    return keras.Model(x, [e, keras.layers.Activation("softplus")(x)])


def layer_norm_wide():
    """LayerNormalization over the 8 channels of a 4x8 map (SQUARED_DIFFERENCE, RSQRT on 32
    values per inference), after a Conv2D so that the positions differ in mean and spread (not a
    Dense: on a 3-D input the vendor's MVP kernel writes only part of its output, see
    test_emulator_ops; not a Conv1D over 32 steps: the vendor's reference MEAN crashes on it)."""
    keras, _ = _k()
    s = mc.Seeds(117)
    x = mc._input((4, 8, 8))
    y = keras.layers.Conv2D(8, 3, padding="same", kernel_initializer=s.kernel(), bias_initializer=s.bias())(x)
    ln = keras.layers.LayerNormalization(beta_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=118),
                                         gamma_initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=119))
    return keras.Model(x, ln(y))


def sqrt_table():
    """tf.sqrt(tf.abs(x)) on a 256-element int8 input: int8 ABS, then int8 SQRT over the ~129
    values |x| takes (the vendor's TFLite Micro has float SQRT only)."""
    keras, tf = _k()
    x = mc._input((256,))
    a = keras.layers.Lambda(lambda t: tf.abs(t))(x)
    return keras.Model(x, keras.layers.Lambda(lambda t: tf.sqrt(t))(a))


def sum_rescaled():
    """SUM over 8 channels of a tanh and of a sigmoid (input and output scales differ, as
    AdditiveAttention's and sparsemax's SUMs; the sigmoid's zero point is -128): on the oracle's
    random inputs some sums fall outside the calibrated output range, and the vendor's MVP-mode
    run (SUM on its reference kernel) saturates them; its reference-mode run crashes on this model.
    The oracle records the first output, the sigmoid's."""
    keras, tf = _k()
    s = mc.Seeds(121)
    x = mc._input((6, 8))
    y = keras.layers.Conv1D(8, 3, padding="same", kernel_initializer=s.kernel(), bias_initializer=s.bias())(x)
    total = keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=-1))
    return keras.Model(x, [total(keras.layers.Activation("tanh")(y)), total(keras.layers.Activation("sigmoid")(y))])


def log_softmax_rows():
    """log_softmax over 10 classes in each of 32 rows (LOG_SOFTMAX on 320 values per inference),
    after a Conv1D."""
    keras, _ = _k()
    s = mc.Seeds(120)
    x = mc._input((32, 6))
    y = keras.layers.Conv1D(10, 3, padding="same", kernel_initializer=s.kernel(), bias_initializer=s.bias())(x)
    return keras.Model(x, keras.layers.Activation("log_softmax")(y))


def _resize(seed, fn):
    def build():
        keras, tf = _k()
        s = mc.Seeds(seed)
        x = mc._input((5, 7, 3))
        y = s.conv(4, 3, padding="same")(x)
        return keras.Model(x, keras.layers.Lambda(lambda t: fn(tf, t))(y))
    return build


RESIZES = {
    "resize_nearest_half_pixel": (111, lambda tf, t: tf.image.resize(t, (10, 14), method="nearest")),
    "resize_nearest_align_corners": (112, lambda tf, t: tf.compat.v1.image.resize_nearest_neighbor(
        t, (9, 13), align_corners=True)),
    "resize_nearest_plain": (113, lambda tf, t: tf.compat.v1.image.resize_nearest_neighbor(t, (8, 11))),
    "resize_bilinear_half_pixel": (114, lambda tf, t: tf.image.resize(t, (10, 14))),
    "resize_bilinear_align_corners": (115, lambda tf, t: tf.compat.v1.image.resize_bilinear(
        t, (9, 13), align_corners=True)),
    "resize_bilinear_odd": (116, lambda tf, t: tf.image.resize(t, (8, 11))),
}


MODELS = [
    mc.CorpusModel("global_max_pool", "GlobalMaxPooling2D: REDUCE_MAX over H, W", global_max_pool),
    mc.CorpusModel("reduce_sum_mean_1d", "Dense on 3-D input; MEAN, SUM, REDUCE_MAX over a sequence", reduce_sum_mean_1d),
    mc.CorpusModel("transpose_crop", "Permute (TRANSPOSE), Cropping2D (STRIDED_SLICE)", transpose_crop),
    mc.CorpusModel("sub_max_min", "Subtract, Maximum, Minimum layers", sub_max_min),
    mc.CorpusModel("hard_swish_leaky", "hard_swish, LeakyReLU, ReLU(6), sigmoid as layers", hard_swish_leaky),
    mc.CorpusModel("stack_split", "tf.split (SPLIT, SPLIT_V), tf.unstack (UNPACK), tf.stack (PACK)", stack_split),
    mc.CorpusModel("add_tiny_scale", "ADD with an output scale below 2^-16 (1/scale overflows binary16)", add_tiny_scale),
    mc.CorpusModel("dot_attention", "Dot layers: BATCH_MATMUL (with adj_y), softmax over rows", dot_attention),
    mc.CorpusModel("elu_table", "ELU (float32 between DEQUANTIZE and QUANTIZE) on a 256-element input", elu_table),
    mc.CorpusModel("prelu_table", "PReLU (per-element alpha) on a 256-element input", prelu_table),
    mc.CorpusModel("prelu_shared_axes", "PReLU with alpha shared over H, W (broadcast)", prelu_shared_axes),
    mc.CorpusModel("exp_log_table", "exponential and softplus (EXP, ADD, LOG) on a 256-element input", exp_log_table),
    mc.CorpusModel("sqrt_table", "tf.sqrt(tf.abs(x)) (ABS, SQRT) on a 256-element input", sqrt_table),
    mc.CorpusModel("sum_rescaled", "SUM over the channels of a tanh (input and output scales differ)", sum_rescaled),
    mc.CorpusModel("log_softmax_rows", "log_softmax over 10 classes in 32 rows (LOG_SOFTMAX)", log_softmax_rows),
    mc.CorpusModel("layer_norm_wide", "LayerNormalization over the channels of a 4x8x8 map (SQUARED_DIFFERENCE, RSQRT)",
                   layer_norm_wide),
] + [mc.CorpusModel(name, f"{name.replace('_', ' ')}: RESIZE_{name.split('_')[1].upper()}", _resize(seed, fn))
     for name, (seed, fn) in RESIZES.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for spec in MODELS:
        if args.only and spec.name not in args.only:
            continue
        data = mc.convert(spec)
        (OUT / f"{spec.name}.tflite").write_bytes(data)
        print(f"{spec.name}: {len(data)} bytes, {', '.join(sorted(set(mc.opcodes(data))))}", flush=True)
    manifest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(OUT.glob("*.tflite"))}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
