"""Regenerates float_cnn.tflite: a small float32 (unquantized) CNN, to check that the profiler
profiles it with every layer off the MVP. Run with the project's venv: python make_float32.py"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

tf.keras.utils.set_random_seed(0)
m = tf.keras.Sequential([
    tf.keras.Input((16, 16, 1)),
    tf.keras.layers.Conv2D(4, 3, activation="relu"),
    tf.keras.layers.DepthwiseConv2D(3, activation="relu"),
    tf.keras.layers.AveragePooling2D(2),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(3),
    tf.keras.layers.Softmax(),
])
data = tf.lite.TFLiteConverter.from_keras_model(m).convert()
Path(__file__).with_name("float_cnn.tflite").write_bytes(data)
