"""A sweep's data set (`[data]`): loading, the checks made before any training, and resizing.

    [data]
    npz = "kws.npz"                  # arrays x_train, y_train, x_val, y_val
    loader = "pkg.module:function"   # or: returns those four arrays (a dict or a 4-tuple)
    builtin = "digits"               # or: scikit-learn's 8x8 handwritten digits, no download
    metric = "top1"                  # or "mse" (lower is better), or "pkg.module:function"

Labels are class indices or one-hot rows (for `top1`), or target arrays (for `mse`).

Resizing rule (the `input_size` tip): x has the base's input shape. A variant whose input has other
sizes gets every sample resized along each dimension between the batch and the channels, by linear
interpolation with half-pixel centres (`tf.image.resize(..., "bilinear")` without antialiasing, for
images), one axis after the other; the channels never change. It is numpy, so the training worker
and the evaluator resize alike without TensorFlow.

Every check raises `DataError` with one line naming the key; the driver makes them all before a
single training task starts.
"""
from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAYS = ("x_train", "y_train", "x_val", "y_val")
BUILTIN_DATA = ("digits",)
DIGITS_SPLIT_SEED = 0
DIGITS_VAL_SHARE = 0.2


class DataError(ValueError):
    """Unusable data; the message is one line naming the key."""


@dataclass
class DataSet:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str                      # how the sweep file named it, e.g. "builtin = digits"

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in ARRAYS}

    @property
    def sha256(self) -> str:
        """The content address of the data: shapes, dtypes and bytes of the four arrays."""
        h = hashlib.sha256()
        for k in ARRAYS:
            a = np.ascontiguousarray(getattr(self, k))
            h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def digits() -> dict:
    """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes, shipped inside
    scikit-learn), scaled to [0, 1] as (N, 8, 8, 1) float32, split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x))
    n_val = int(round(len(x) * DIGITS_VAL_SHARE))
    val, train = order[:n_val], order[n_val:]
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val]}


def resolve(ref: str, search_path=()):
    """`package.module:function` -> the function; the sweep file's folder is searched first."""
    module_name, _, attr = ref.partition(":")
    for p in reversed(list(search_path)):
        if p not in sys.path:
            sys.path.insert(0, p)
    return getattr(importlib.import_module(module_name), attr)


def load(spec: dict, where: str) -> DataSet:
    """The data set a checked `[data]` table names (`sweep_file.DataSpec.as_dict()`); `where` is
    the sweep file, for messages. Raises DataError."""
    def fail(key: str, problem: str):
        raise DataError(f"{where}: data.{key}: {problem}")

    if "builtin" in spec:
        arrays, source = digits(), f"builtin = {spec['builtin']}"
    elif "npz" in spec:
        path = Path(spec["npz"])
        if not path.is_file():
            fail("npz", f"{path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in ARRAYS if k not in f.files]
                if missing:
                    fail(missing[0], f"missing array in {path.name} (it has: {', '.join(f.files) or 'none'})")
                arrays = {k: np.asarray(f[k]) for k in ARRAYS}
        except DataError:
            raise
        except Exception as e:
            fail("npz", f"{path} is not a readable .npz file ({type(e).__name__}: {e})")
        source = f"npz = {path.name}"
    else:
        ref = spec["loader"]
        try:
            out = resolve(ref, spec.get("search_path", ()))()
        except Exception as e:
            fail("loader", f"{ref} failed: {type(e).__name__}: {e}")
        if isinstance(out, dict):
            missing = [k for k in ARRAYS if k not in out]
            if missing:
                fail(missing[0], f"missing from what {ref} returned (it has: {', '.join(map(str, out))})")
            arrays = {k: out[k] for k in ARRAYS}
        elif isinstance(out, (tuple, list)) and len(out) == 4:
            arrays = dict(zip(ARRAYS, out))
        else:
            fail("loader", f"{ref} must return x_train, y_train, x_val, y_val (a dict or a 4-tuple), "
                           f"not {type(out).__name__}")
        source = f"loader = {ref}"
    for k in ARRAYS:
        try:
            arrays[k] = np.asarray(arrays[k])
        except Exception as e:
            fail(k, f"not an array ({e})")
        if arrays[k].dtype == object or arrays[k].dtype.kind not in "biuf":
            fail(k, f"not a numeric array (dtype {arrays[k].dtype})")
    ds = DataSet(**arrays, source=source)
    check_own(ds, where)
    return ds


def check_own(ds: DataSet, where: str) -> None:
    """What can be checked without the model: sizes, finiteness, emptiness."""
    def fail(key: str, problem: str):
        raise DataError(f"{where}: data.{key}: {problem}")
    for part in ("train", "val"):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        if x.ndim == 0 or len(x) == 0:
            fail(f"x_{part}", "is empty: it needs at least one sample")
        if y.ndim == 0 or len(y) != len(x):
            fail(f"y_{part}", f"has {len(y) if y.ndim else 0} rows for {len(x)} samples in x_{part}")
        for k, a in ((f"x_{part}", x), (f"y_{part}", y)):
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                fail(k, f"contains NaN or inf ({int((~np.isfinite(a)).sum())} values)")
    if ds.x_train.shape[1:] != ds.x_val.shape[1:]:
        fail("x_val", f"samples of shape {list(ds.x_val.shape[1:])} differ from x_train's "
                      f"{list(ds.x_train.shape[1:])}")


def labels(y: np.ndarray) -> np.ndarray:
    """Class indices from indices or one-hot rows."""
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return y.reshape(len(y)).astype(np.int64)


def check_against_model(ds: DataSet, input_shape: list[int], n_outputs: int | None, classifier: bool,
                        where: str) -> None:
    """What needs the base model: x against its input, labels against its output units."""
    def fail(key: str, problem: str):
        raise DataError(f"{where}: data.{key}: {problem}")
    for k in ("x_train", "x_val"):
        shape = list(getattr(ds, k).shape[1:])
        if shape != list(input_shape):
            fail(k, f"samples of shape {shape} do not match the base model's input {list(input_shape)}")
    if not classifier:
        return
    for k in ("y_train", "y_val"):
        y = getattr(ds, k)
        if y.ndim == 2 and y.shape[1] > 1:
            if n_outputs is not None and y.shape[1] != n_outputs:
                fail(k, f"one-hot rows of {y.shape[1]} classes for the base's {n_outputs} output units")
            continue
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            fail(k, "labels are not whole class indices")
        if y.ndim > 1 and y.size != len(y):
            fail(k, f"labels of shape {list(y.shape[1:])}: expected class indices or one-hot rows")
        lab = labels(y)
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or (n_outputs is not None and hi >= n_outputs):
            bad = lo if lo < 0 else hi
            fail(k, f"label {bad} is out of range for the base's {n_outputs} output units "
                    f"(0..{(n_outputs or 0) - 1})")
    n_classes = len(np.unique(labels(ds.y_train)))
    if n_classes < 2:
        fail("y_train", f"has {n_classes} class; a classifier needs at least two")


def _resize_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    n = x.shape[axis]
    if n == size:
        return x
    src = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
    src = np.clip(src, 0, n - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = size
    w = w.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w


def resize(x: np.ndarray, shape: list[int]) -> np.ndarray:
    """Samples (N, *base input) -> (N, *shape) by the module's resizing rule."""
    x = np.asarray(x, dtype=np.float32)
    if list(x.shape[1:]) == list(shape):
        return x
    if x.ndim - 1 != len(shape) or (x.ndim > 2 and x.shape[-1] != shape[-1]):
        raise DataError(f"samples of shape {list(x.shape[1:])} cannot be resized to the variant's "
                        f"input {list(shape)}")
    for axis in range(1, x.ndim - 1):
        x = _resize_axis(x, axis, shape[axis - 1])
    return np.ascontiguousarray(x, dtype=np.float32)
