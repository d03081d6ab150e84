"""Build tests/data/ops/unsupported/lstm_fused.tflite: an int8 model carrying the fused
UNIDIRECTIONAL_SEQUENCE_LSTM, the operator the project's converter cannot produce.

The project's TensorFlow (2.21, Keras 3) segfaults converting an LSTM that is not unrolled to int8
(tests/ops/survey.py records it: "LSTM (not unrolled)"), and no converter setting makes it emit the
fused operator: the converter fuses an LSTM only from Keras 2's layer, whose functions carry the
`implements` attribute the fusion looks for. The oracle's venv has Keras 2 (tf_keras 2.16 with
TensorFlow 2.16), where the same full-integer conversion emits UNIDIRECTIONAL_SEQUENCE_LSTM: this
script runs there, for a fixture only (the project never depends on it).

Usage: ~/.cache/mltk-oracle/bin/python tests/ops/make_fused_lstm.py
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "data" / "ops" / "unsupported" / "lstm_fused.tflite"

x = keras.Input((6, 4), batch_size=1)
y = keras.layers.LSTM(8, kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                      recurrent_initializer=keras.initializers.GlorotUniform(seed=2))(x)
conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, y))
conv.optimizations = [tf.lite.Optimize.DEFAULT]
rng = np.random.default_rng(0)
conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 6, 4)).astype(np.float32)] for _ in range(16))
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.int8
conv.inference_output_type = tf.int8
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_bytes(conv.convert())
print(OUT)
