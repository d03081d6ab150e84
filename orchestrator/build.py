"""Build: a variant's model config -> int8 .tflite bytes, with TensorFlow's converter.

Runs inside build workers; TensorFlow is imported by the functions that need it, never at module
import, so the driver and the simulator workers stay free of it. Builds are content-addressed:
the cache key is the sha256 of the variant's model config, the build settings and the converter
settings (TensorFlow's version included), so a variant is never built twice and a changed
converter never serves a stale model.

Models are built with seeded initial weights: a profile depends on shapes, not weight values,
and the base and its variants are treated alike.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.keras_config import RECURRENT_CLASSES
from orchestrator.versions import tensorflow_version

# Bumped when the conversion below changes in a way that changes its output.
CONVERTER_SETTINGS = {"version": 2, "batch": 1, "dense": "per-tensor", "weights": "int8", "activations": "int8",
                      "output": "int8", "ops": "TFLITE_BUILTINS_INT8", "recurrent": "unrolled"}
# Recurrent layers (keras_config.RECURRENT_CLASSES) are converted unrolled. This TensorFlow's
# converter (2.21, Keras 3) segfaults on a GRU or an LSTM that is not unrolled, with int8
# full-integer quantization, from a frozen concrete function and from from_keras_model alike
# (tensorflow/tensorflow#62281, #101050); the fused UNIDIRECTIONAL_SEQUENCE_LSTM it would emit is
# out of reach. Unrolled over the (static) time steps, both become plain int8 ops that TFLite
# Micro runs: FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD, SUB, SPLIT, UNPACK, STRIDED_SLICE (a GRU
# adds a QUANTIZE/DEQUANTIZE pair around a SPLIT).


# The environment of a build worker process. One worker per core: a conversion that spread over
# every core would only contend with the other workers' (TensorFlow reads these when it starts in
# the process). Set by `as_build_worker` before TensorFlow's import.
WORKER_ENV = {"MVPFARM_WORKER": "build", "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def as_build_worker() -> None:
    """Makes this process a build worker (WORKER_ENV). Build tasks run in Ray's default worker
    pool, which Ray prestarts, a worker per CPU, while the node starts; a runtime_env would give
    them a pool of their own that Ray starts only when the first build asks for a worker (1-4 s
    on this project's machine), so the environment is set here, in the process, before TensorFlow
    is imported (the fork server sets it before its import, and a builder takes its worker's)."""
    os.environ.update(WORKER_ENV)


def warm_up() -> None:
    """Imports what a conversion needs (TensorFlow, Keras, the converter), so that a build
    worker's first build does not: the fork server does this while Ray starts, a build worker
    without one while the driver plans the sweep and the base model builds."""
    as_build_worker()
    _import_tf()
    from tensorflow.lite.python import lite  # noqa: F401
    from tensorflow.python.framework import convert_to_constants  # noqa: F401
    gc.freeze()                  # the converter's modules too (see _import_tf)


class BuildError(Exception):
    """A variant that cannot be built or converted; the message is one line."""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def variant_key(spec: dict, build: dict) -> str:
    """The content address of a variant's .tflite."""
    return _digest({"spec": spec, "build": build, "converter": CONVERTER_SETTINGS,
                    "tensorflow": tensorflow_version()})


def base_key(base: dict) -> str:
    return _digest({"base": base, "tensorflow": tensorflow_version()})


def describe_base(base: dict) -> str:
    """The sweep file's base as people read it: `builtin = ds_cnn`."""
    return ", ".join(f"{k} = {v}" for k, v in base.items() if k in ("builtin", "builder", "keras", "kwargs"))


def cached_tflite(cache_dir: str | Path, key: str) -> bytes | None:
    p = Path(cache_dir) / "tflite" / f"{key}.tflite"
    return p.read_bytes() if p.is_file() else None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)       # two workers building the same key both leave a whole file


# Libraries that Keras imports only for integrations a build never uses (scikit-learn estimator
# wrappers, pandas DataFrames as `fit` input, matplotlib image galleries); each import is optional
# in Keras. Kept out of TensorFlow's import they save a third of it (measured: 5.1-5.5 -> 3.0-3.4 s
# per process), which the fork server pays while Ray starts, and a fresh build worker without one
# before its first build. Importing them later in the process works as usual: only those Keras
# integrations stay off there.
KERAS_OPTIONAL_IMPORTS = ("sklearn", "pandas", "matplotlib")


@contextlib.contextmanager
def _without(modules: tuple[str, ...]):
    """Makes `import m` raise ImportError for each of `modules` not imported yet, inside the block."""
    blocked = [m for m in modules if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None        # the import system's "not importable" marker
    try:
        yield
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]


def _import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    first = "tensorflow" not in sys.modules
    with _without(KERAS_OPTIONAL_IMPORTS if first else ()):
        import tensorflow as tf
        import keras  # noqa: F401  (TensorFlow's import loads it; this keeps Keras inside the block either way)
    if os.environ.get("MVPFARM_WORKER") == "build":
        if first:
            # TensorFlow and Keras leave some 300,000 objects that live as long as the process; the
            # cyclic garbage collector would walk all of them again and again in every conversion
            # (measured: 7-12% of a build's time). Frozen, it walks only what the builds allocate.
            gc.collect()
            gc.freeze()
        # A build task holds one Ray CPU: TensorFlow's default thread pools (one thread per core)
        # would have every build worker fight over all cores.
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass          # already initialised in this process
    return tf


def one_line(e: BaseException) -> str:
    """A Keras/TF exception as one readable line (they come multi-line with ANSI colours)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    skip = ("Exception encountered when calling", "Arguments received by")
    lines = [ln for ln in lines if not ln.startswith(skip) and not ln.startswith("•")]
    return (lines[0] if lines else type(e).__name__)[:300]


# --- base models -------------------------------------------------------------------------------
def base_config(base: dict, cache_dir: str | Path | None = None) -> dict:
    """The model config (see `tips`) of a sweep's base: its serialized Keras model and the
    names of its global pooling layers."""
    path = Path(cache_dir) / "base" / f"{base_key(base)}.json" if cache_dir else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    _import_tf()
    from orchestrator.bases import build_base_model
    try:
        model = build_base_model(base)
    except Exception as e:
        raise BuildError(f"base model does not build: {one_line(e)}") from None
    model_config = config_of_model(model)
    if path is not None:
        _write_atomic(path, json.dumps(model_config).encode())
    return model_config


def config_of_model(model) -> dict:
    """The model config (see `tips`) of a built Keras model: its serialized form and the names of
    its pooling layers that cover their whole feature map."""
    import keras
    from orchestrator.keras_config import ModelConfig
    global_pools = []
    for layer in model.layers:
        if type(layer).__name__ in ("AveragePooling2D", "MaxPooling2D") and layer.padding == "valid":
            in_hw = tuple(layer.input.shape[1:3])
            if tuple(layer.pool_size) == in_hw and tuple(layer.output.shape[1:3]) == (1, 1):
                global_pools.append(layer.name)
    return {"keras": ModelConfig(keras.saving.serialize_keras_object(model)).finish(),
            "input_dtype": "int8", "global_pools": global_pools}


# --- variants ----------------------------------------------------------------------------------
def _from_config(keras_config: dict):
    import keras
    return keras.saving.deserialize_keras_object(copy.deepcopy(keras_config))


def keras_model(spec: dict, seed: int = 0, batch: int | None = 1):
    """The Keras model of a variant config, with global pools resized to the feature map that
    the tips left them (a probe build with 1x1 pools reads it). `batch=None` for training."""
    import keras
    cfg = copy.deepcopy(spec["keras"])
    for L in cfg["config"]["layers"]:
        if L["class_name"] == "InputLayer" and L["config"].get("batch_shape"):
            L["config"]["batch_shape"][0] = batch     # the board runs batch 1; static shapes convert cleaner
        if L["class_name"] in RECURRENT_CLASSES:
            L["config"]["unroll"] = True          # see CONVERTER_SETTINGS' "recurrent"
    pools = [L for L in cfg["config"]["layers"] if (L.get("name") or L["config"]["name"]) in spec.get("global_pools", [])]
    if pools:
        for L in pools:
            L["config"]["pool_size"] = [1, 1]
            L["config"]["strides"] = [1, 1]
        probe = _from_config(cfg)
        for L in pools:
            hw = [int(d) for d in probe.get_layer(L["config"]["name"]).input.shape[1:3]]
            L["config"]["pool_size"] = hw
            L["config"]["strides"] = hw
        del probe
    keras.utils.set_random_seed(seed)
    return _from_config(cfg)


def representative_data(shape: list[int], build: dict):
    """Calibration inputs: the user's samples (resized to a tip's input size when needed) or
    seeded random data."""
    import numpy as np
    n = build.get("n_samples", 8)
    if build.get("samples"):
        samples = np.load(build["samples"]).astype(np.float32)[:n]
        if list(samples.shape[1:]) != list(shape):
            if samples.ndim == 4 and len(shape) == 3 and samples.shape[-1] == shape[-1]:
                tf = _import_tf()
                samples = tf.image.resize(samples, shape[:2]).numpy()
            else:
                raise BuildError(f"samples of shape {list(samples.shape[1:])} do not fit the model "
                                 f"input {list(shape)}")
        return [s[None] for s in samples]
    rng = np.random.default_rng(build.get("seed", 0))
    return [rng.random([1, *shape], dtype=np.float32) for _ in range(n)]


def convert(spec: dict, build: dict) -> bytes:
    """Keras config -> int8 TFLite bytes (batch 1, int8 kernels, int8 or float32 input)."""
    _import_tf()
    try:
        model = keras_model(spec, build.get("seed", 0))
    except BuildError:
        raise
    except Exception as e:
        raise BuildError(f"the variant's Keras model does not build: {one_line(e)}") from None
    if len(model.inputs) != 1:
        raise BuildError(f"models with {len(model.inputs)} inputs are not supported")
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    return convert_model(model, shape, spec.get("input_dtype", "int8"), representative_data(shape, build))


def convert_model(model, shape: list[int], input_dtype: str, data: list) -> bytes:
    """A Keras model -> int8 TFLite bytes, calibrated on `data` (a list of (1, *shape) arrays)."""
    tf = _import_tf()
    # A frozen concrete function converts about 3x faster than from_keras_model, which exports
    # a SavedModel to disk first; the graph is the same.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(
        fn.get_concrete_function(tf.TensorSpec([1, *shape], tf.float32)))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([d] for d in data)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8 if input_dtype == "int8" else tf.float32
    conv.inference_output_type = tf.int8
    # Dense weights quantized per tensor: the vendor's TFLite Micro (which the board runs and the
    # emulator follows) requantizes a per-channel fully connected layer with channel 0's scale, so
    # a per-channel Dense layer computes the wrong outputs on the board (measured on digits_cnn:
    # 2.5% of its top-1 answers changed against TensorFlow Lite's interpreter).
    conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    try:
        return conv.convert()
    except Exception as e:
        raise BuildError(f"conversion error: {one_line(e)}") from None


@contextlib.contextmanager
def private_tmp(cache_dir: str | Path):
    """TensorFlow's temporary files (autograph writes a .py file per converted function, and
    removes them only when the process exits normally, which a Ray worker rarely does) go into
    CACHE/tmp/<pid>, removed when the build is done."""
    tmp = Path(cache_dir) / "tmp" / str(os.getpid())
    tmp.mkdir(parents=True, exist_ok=True)
    before = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(tmp), str(tmp)
    try:
        yield tmp
    finally:
        tempfile.tempdir = before[0]
        if before[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before[1]
        shutil.rmtree(tmp, ignore_errors=True)


def build_variant(spec: dict, build: dict, cache_dir: str | Path) -> tuple[dict, bytes]:
    """(meta, tflite bytes): the cached model if there is one, else a fresh conversion.
    meta: {"ok", "key", "cached", "convert_s", "error"}."""
    key = variant_key(spec, build)
    data = cached_tflite(cache_dir, key)
    if data is not None:
        return {"ok": True, "key": key, "cached": True, "convert_s": 0.0, "error": None}, data
    t0 = time.perf_counter()
    try:
        with private_tmp(cache_dir):
            data = convert(spec, build)
    except BuildError as e:
        return {"ok": False, "key": key, "cached": False, "convert_s": time.perf_counter() - t0,
                "error": str(e)}, b""
    convert_s = time.perf_counter() - t0
    _write_atomic(Path(cache_dir) / "tflite" / f"{key}.tflite", data)
    return {"ok": True, "key": key, "cached": False, "convert_s": convert_s, "error": None}, data
