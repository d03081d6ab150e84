"""Bring your own model: the architectures users actually have, as sweep bases.

Each function returns an untrained Keras model; a sweep file names one with
`base = { builder = "byo_models:mobilenet_v2" }` (the sweep file's folder is searched first).
They are the architectures the farm's tips are checked on (tests/test_tips_byo.py) and the
fidelity corpus is built from (tests/corpus/make_corpus2.py): Keras's own MobileNets at 96x96x3,
a 3-block ResNet, a Conv1D keyword spotter, a SeparableConv2D model with Rescaling and Dropout,
recurrent keyword spotters and an MLP autoencoder.
"""
from __future__ import annotations


def mobilenet_v1(input_shape=(96, 96, 3), alpha: float = 0.25, classes: int = 2):
    """keras.applications.MobileNet: its classifier is a 1x1 Conv2D before a Reshape and a Softmax."""
    import keras
    return keras.applications.MobileNet(input_shape=tuple(input_shape), alpha=alpha, weights=None,
                                        classes=classes)


def mobilenet_v2(input_shape=(96, 96, 3), alpha: float = 0.35, classes: int = 2):
    """keras.applications.MobileNetV2: inverted residuals, explicit ZeroPadding2D before strided depthwise."""
    import keras
    return keras.applications.MobileNetV2(input_shape=tuple(input_shape), alpha=alpha, weights=None,
                                          classes=classes)


def mobilenet_v3_small(input_shape=(96, 96, 3), alpha: float = 0.75, classes: int = 2,
                       minimalistic: bool = True):
    """keras.applications.MobileNetV3Small: Rescaling in front, a Conv2D classifier, Flatten, Softmax."""
    import keras
    return keras.applications.MobileNetV3Small(input_shape=tuple(input_shape), alpha=alpha, weights=None,
                                               classes=classes, minimalistic=minimalistic)


def resnet3(input_shape=(32, 32, 3), filters: int = 16, classes: int = 10):
    """A 3-block ResNet: an identity block, then two downsampling blocks with 1x1 projections."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(x)))
    for width, stride in ((filters, 1), (2 * filters, 2), (4 * filters, 2)):
        y = layers.Conv2D(width, 3, strides=stride, padding="same")(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same")(y))
        shortcut = x if stride == 1 else layers.Conv2D(width, 1, strides=stride, padding="same")(x)
        x = layers.ReLU()(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x), name="resnet3")


def conv1d_kws(input_shape=(49, 40), filters: int = 32, classes: int = 12):
    """A Conv1D keyword spotter on (time, mel bins): three temporal convolutions, pooling, Dense."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv1D(filters, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(filters, 3, padding="same", activation="relu")(x)
    x = layers.Conv1D(2 * filters, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x), name="conv1d_kws")


def sepconv(input_shape=(32, 32, 3), filters: int = 16, classes: int = 4):
    """SeparableConv2D blocks behind a Rescaling layer, with Dropout before the classifier."""
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.SeparableConv2D(2 * filters, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.SeparableConv2D(4 * filters, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x), name="sepconv")


def _recurrent_kws(cell: str, input_shape, units: int, classes: int):
    import keras
    from keras import layers
    x = inp = keras.Input(tuple(input_shape))
    x = layers.Conv1D(units, 3, strides=2, padding="same", activation="relu")(x)
    # as users write it (not unrolled): the build unrolls recurrent layers (see orchestrator/build.py)
    layer = layers.GRU if cell == "gru" else layers.LSTM
    x = layer(units)(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x), name=f"{cell}_kws")


def gru_kws(input_shape=(16, 20), units: int = 16, classes: int = 4):
    """A keyword spotter with a GRU over the frames after a Conv1D front end."""
    return _recurrent_kws("gru", input_shape, units, classes)


def lstm_kws(input_shape=(16, 20), units: int = 16, classes: int = 4):
    """A keyword spotter with an LSTM over the frames after a Conv1D front end."""
    return _recurrent_kws("lstm", input_shape, units, classes)


def mlp(input_dim: int = 640, hidden=(128, 128, 8), outputs: int = 640):
    """An MLP (the anomaly-detection autoencoder's shape: 640-128-128-8-640)."""
    import keras
    from keras import layers
    x = inp = keras.Input((input_dim,))
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
    return keras.Model(inp, layers.Dense(outputs)(x), name="mlp")
