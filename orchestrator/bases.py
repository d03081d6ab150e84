"""Base models: the built-in MLPerf Tiny families, `.keras` files and user builders.

The built-in families follow the MLPerf Tiny reference architectures (shapes and layer order; the
weights are untrained because profiles do not depend on weight values). Their keyword
parameters scale them down, which keeps tests cheap: `ds_cnn(input_shape=(25, 10, 1), filters=16)`.

Keras is imported inside the builders only: the driver reads this module to validate a sweep
file without importing TensorFlow.
"""
from __future__ import annotations

import inspect
from pathlib import Path


def ds_cnn(input_shape=(49, 10, 1), filters: int = 64, n_blocks: int = 4, n_classes: int = 12):
    """DS-CNN keyword spotting (MLPerf Tiny KWS): a 10x4 stride-2 convolution, then depthwise
    separable blocks, global average pooling and a softmax classifier."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv2D(filters, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.2)(x)
    for _ in range(n_blocks):
        x = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, (1, 1), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.Dropout(0.4)(x)
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn")


def resnet8(input_shape=(32, 32, 3), filters: int = 16, n_classes: int = 10):
    """ResNet-8 image classification (MLPerf Tiny IC, CIFAR-10): three residual stacks of
    `filters`, 2x and 4x channels, the last two downsampling with a 1x1 shortcut convolution."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv2D(filters, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for width, stride in ((filters, 1), (2 * filters, 2), (4 * filters, 2)):
        y = layers.Conv2D(width, 3, strides=stride, padding="same")(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(width, 3, padding="same")(y)
        y = layers.BatchNormalization()(y)
        if stride != 1:
            x = layers.Conv2D(width, 1, strides=stride, padding="same")(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="resnet8")


_MOBILENET_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                     (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1_025(input_shape=(96, 96, 3), alpha: float = 0.25, n_blocks: int = 13, n_classes: int = 2):
    """MobileNetV1 with width 0.25 (MLPerf Tiny visual wake words, 96x96 RGB): a stride-2
    convolution, then 13 depthwise separable blocks, global average pooling and a classifier."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv2D(max(1, int(32 * alpha)), 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for width, stride in _MOBILENET_BLOCKS[:n_blocks]:
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(max(1, int(width * alpha)), 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="mobilenet_v1_025")


def fc_autoencoder(input_dim: int = 640, hidden_units: int = 128, bottleneck: int = 8, depth: int = 4):
    """Fully connected autoencoder (MLPerf Tiny anomaly detection, 5 frames x 128 mel bins):
    `depth` Dense-BN-ReLU layers down to a bottleneck and `depth` back up, output = input size."""
    import keras
    from keras import layers
    x = inp = keras.Input((input_dim,))
    for units in [hidden_units] * depth + [bottleneck] + [hidden_units] * depth:
        x = layers.Dense(units)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    out = layers.Dense(input_dim)(x)
    return keras.Model(inp, out, name="fc_autoencoder")


def digits_cnn(input_shape=(8, 8, 1), filters: int = 16, dense_units: int = 32, n_classes: int = 10):
    """A small CNN for `[data] builtin = "digits"` (scikit-learn's 8x8 handwritten digits): a 3x3
    convolution, a depthwise separable block, a hidden Dense layer and a softmax classifier, so that
    every tip has something to change. Batch normalization with momentum 0.9: its statistics settle
    within the few epochs a test trains for."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(2 * filters, 1, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="digits_cnn")


BUILTINS = {f.__name__: f for f in (ds_cnn, resnet8, mobilenet_v1_025, fc_autoencoder, digits_cnn)}


def builder_parameters(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def accepts_any_kwargs(fn) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def resolve_builder(ref: str, search_path: list[str] = ()):
    """`package.module:function` -> the function (`builder_ref.resolve`: the sweep file's folder
    is appended to the import path, never put first)."""
    from orchestrator.builder_ref import resolve
    return resolve(ref, search_path)


def build_base_model(base: dict):
    """The Keras model a sweep's `base` table describes (see `sweep_file.Base`).

    Built in a fresh Keras naming scope: Keras names the layers it is not told to name from a
    per-process counter (conv1d, conv1d_1, ...), so a base built after other models in the same
    build worker would get other names, and this TensorFlow's converter output depends on them
    (measured on a GRU keyword spotter: 3 QUANTIZE/DEQUANTIZE ops more, +1.3% latency, +1.5%
    flash). The same base file then gives the same model, names and numbers in every run."""
    import keras
    keras.backend.clear_session()
    kwargs = dict(base.get("kwargs", {}))
    if "builtin" in base:
        return BUILTINS[base["builtin"]](**kwargs)
    if "builder" in base:
        model = resolve_builder(base["builder"], base.get("search_path", []))(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"builder {base['builder']} returned {type(model).__name__}, not a keras.Model")
        return model
    return keras.saving.load_model(Path(base["keras"]), compile=False)
