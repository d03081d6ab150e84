"""Training: a variant's model config + the sweep's data -> trained int8 .tflite models, one per seed.

Runs in training workers (TensorFlow single-threaded, one worker per CPU). Each seed's model is
built from the variant's config, trained from scratch with the sweep's `[train]` budget, converted
to int8 with representative samples drawn from x_train, and scored twice on x_val: as the trained
Keras model (`accuracy_float`) and as the int8 model in TensorFlow Lite's interpreter
(`accuracy_tflite`, whose raw outputs the emulator's are compared with).

Deterministic: the seed fixes the initial weights, the shuffling and dropout
(`keras.utils.set_random_seed`), TensorFlow runs its ops deterministically
(`tf.config.experimental.enable_op_determinism`) on one thread, and the representative samples
are drawn with `numpy.random.default_rng(seed)`. The same machine and versions give the same bits.

Cached by content: one entry per (model config, data hash, train settings, metric, converter
settings, seed, TensorFlow version), so a rerun, a resumed sweep or a retried task trains nothing
twice.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from orchestrator import build, datasets, metrics, scoring

TRAIN_SETTINGS_VERSION = 1
N_REPRESENTATIVE = 100          # calibration samples drawn from x_train, unless [build] n_samples


def seed_key(spec: dict, data_sha256: str, train: dict, metric: str, seed: int) -> str:
    return build._digest({"spec": spec, "data": data_sha256, "train": {k: v for k, v in train.items()
                                                                       if k not in ("seed", "seeds")},
                          "metric": metric, "seed": seed, "converter": build.CONVERTER_SETTINGS,
                          "version": TRAIN_SETTINGS_VERSION, "tensorflow": build.tensorflow_version()})


def seeds(train: dict) -> list[int]:
    return [train["seed"] + i for i in range(train["seeds"])]


def _entry(cache_dir, key: str) -> Path:
    return Path(cache_dir) / "train" / key


def _cached(cache_dir, key: str):
    d = _entry(cache_dir, key)
    if not (d / "meta.json").is_file():         # written last: its presence means a whole entry
        return None
    return (json.loads((d / "meta.json").read_text()), (d / "model.tflite").read_bytes(),
            np.load(d / "outputs.npy"))


def _store(cache_dir, key: str, meta: dict, tflite: bytes, outputs: np.ndarray) -> None:
    d = _entry(cache_dir, key)
    build._write_atomic(d / "model.tflite", tflite)
    tmp = d / f".outputs.{key[:8]}.npy"
    np.save(tmp, outputs)
    tmp.replace(d / "outputs.npy")
    build._write_atomic(d / "meta.json", json.dumps(meta).encode())


def _softmax_output(model) -> bool:
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax"


def interpreter_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """The int8 model's raw outputs in TensorFlow Lite's interpreter (one thread), sample by
    sample, on inputs quantized exactly as the emulator's are."""
    tf = build._import_tf()
    interp = tf.lite.Interpreter(model_content=tflite, num_threads=1)
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    dtype = "int8" if i["dtype"] == np.int8 else "float32"
    xq = scoring.quantize_input(x, dtype, *i["quantization"])
    out = []
    for s in xq:
        interp.set_tensor(i["index"], s[None])
        interp.invoke()
        out.append(interp.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(out)


def _train_one(spec: dict, data: dict, train: dict, metric: metrics.Metric, seed: int, n_rep: int,
               on_epoch) -> tuple[dict, bytes, np.ndarray]:
    tf = build._import_tf()
    tf.config.experimental.enable_op_determinism()
    import keras
    model = build.keras_model(spec, seed, batch=None)
    if len(model.inputs) != 1:
        raise build.BuildError(f"models with {len(model.inputs)} inputs are not supported")
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    x_train = datasets.resize(data["x_train"], shape)
    x_val = datasets.resize(data["x_val"], shape)
    y_train = data["y_train"]
    if metric.classifier:
        y_train = datasets.labels(y_train)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _softmax_output(model))
    else:
        y_train = y_train.astype(np.float32)
        loss = keras.losses.MeanSquaredError()
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(train["learning_rate"]), loss=loss)

    class Epochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if on_epoch is not None:
                on_epoch()
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=train["epochs"], batch_size=train["batch_size"], shuffle=True,
              verbose=0, callbacks=[Epochs()])
    train_s = time.perf_counter() - t0
    accuracy_float = metric.fn(data["y_val"], model.predict(x_val, batch_size=256, verbose=0))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_train), size=min(n_rep, len(x_train)), replace=False))
    t0 = time.perf_counter()
    tflite = build.convert_model(model, shape, spec.get("input_dtype", "int8"),
                                 [x_train[i][None] for i in pick])
    convert_s = time.perf_counter() - t0
    raw = interpreter_outputs(tflite, x_val)
    from simulator.tflite_reader import read_model
    g = read_model(tflite)
    t_out = g.tensors[g.outputs[0]]
    accuracy_tflite = metric.fn(data["y_val"], scoring.dequantize_output(raw, t_out.dtype, t_out.scale,
                                                                          t_out.zero_point))
    meta = {"seed": seed, "accuracy_float": float(accuracy_float), "accuracy_tflite": float(accuracy_tflite),
            "train_s": train_s, "convert_s": convert_s, "input_shape": shape}
    return meta, tflite, raw


def train_variant(spec: dict, data: dict, data_sha256: str, train: dict, metric_name: str,
                  search_path, n_samples: int | None, cache_dir, on_epoch=None) -> tuple[dict, dict]:
    """(meta, models): meta {"ok", "error", "cached", "seeds": [per-seed meta], "input_shape",
    "train_s", "convert_s"}; models {"tflite": [bytes per seed], "reference_outputs": [raw
    interpreter outputs per seed], "x_val": x_val resized to the variant's input}."""
    metric = metrics.get(metric_name, search_path)
    per_seed, tflites, outputs = [], [], []
    all_cached = True
    for seed in seeds(train):
        key = seed_key(spec, data_sha256, train, metric_name, seed)
        hit = _cached(cache_dir, key)
        if hit is None:
            all_cached = False
            try:
                meta, tflite, raw = _train_one(spec, data, train, metric, seed,
                                               n_samples or N_REPRESENTATIVE, on_epoch)
            except build.BuildError as e:
                return {"ok": False, "error": str(e), "cached": False}, {}
            except Exception as e:      # a model Keras cannot train is the variant's result, not a crash
                return {"ok": False, "error": f"training error: {build.one_line(e)}", "cached": False}, {}
            _store(cache_dir, key, meta, tflite, raw)
        else:
            meta, tflite, raw = hit
            meta = dict(meta, train_s=0.0, convert_s=0.0)
            if on_epoch is not None:
                for _ in range(train["epochs"]):
                    on_epoch()
        per_seed.append(dict(meta, key=key))
        tflites.append(tflite)
        outputs.append(raw)
    shape = per_seed[0]["input_shape"]
    out = {"ok": True, "error": None, "cached": all_cached, "key": per_seed[0]["key"], "seeds": per_seed,
           "input_shape": shape, "train_s": sum(m["train_s"] for m in per_seed),
           "convert_s": sum(m["convert_s"] for m in per_seed)}
    return out, {"tflite": tflites, "reference_outputs": outputs,
                 "x_val": datasets.resize(data["x_val"], shape)}


def model_io(spec: dict) -> tuple[list[int] | None, int | None]:
    """(input shape without the batch, output units) of a model config, read without Keras: the
    units are the output layer's (or, through shape-keeping layers, the Dense or convolution's
    before it); None where the config does not say."""
    from orchestrator.keras_config import ModelConfig
    m = ModelConfig(spec["keras"])
    inputs = m.input_layers()
    shape = None
    if inputs:
        cfg = inputs[0]["config"]
        full = cfg.get("batch_shape") or [None] + list(cfg.get("shape") or [])
        shape = [int(d) for d in full[1:]] if all(d is not None for d in full[1:]) else None
    outs = m.output_names()
    layer = m.by_name(outs[0]) if outs else None
    for _ in range(len(m.layers)):
        if layer is None:
            break
        cfg = layer["config"]
        for k in ("units", "filters"):
            if isinstance(cfg.get(k), int):
                return shape, cfg[k]
        prev = m.input_names(layer)
        layer = m.by_name(prev[0]) if len(prev) == 1 else None
    return shape, None
