"""The metric a sweep scores its variants with (`[data] metric`).

- `top1` (the default): the share of samples whose largest output is the label (class index or
  one-hot row); higher is better.
- `mse`: the mean squared error between the dequantized outputs and y (autoencoders: y = x);
  lower is better.
- `pkg.module:function`: `function(y_true, y_pred) -> float`, where y_pred holds the model's outputs
  as float32 (N, *output shape); higher is better unless the function has an attribute
  `higher_is_better = False`.

`agree(a, b)` is the share of samples on which two runs of a model give the same answer: the same
top-1 class for a classifier, identical outputs otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

BUILTIN_METRICS = ("top1", "mse")
DEFAULT_METRIC = "top1"


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    classifier: bool                 # labels are class indices; agreement is on top-1


def _top1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from orchestrator.datasets import labels
    pred = np.argmax(y_pred.reshape(len(y_pred), -1), axis=1)
    return float(np.mean(pred == labels(y_true)))


def _mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    return float(np.mean((np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1) - y_true) ** 2))


def get(name: str, search_path=()) -> Metric:
    if name == "top1":
        return Metric("top1", _top1, True, True)
    if name == "mse":
        return Metric("mse", _mse, False, False)
    from orchestrator.datasets import resolve
    fn = resolve(name, search_path)
    return Metric(name, lambda t, p: float(fn(t, p)), bool(getattr(fn, "higher_is_better", True)), False)


def agree(metric: Metric, a: np.ndarray, b: np.ndarray) -> float:
    """Share of samples (rows of a and b, raw outputs) on which the two give the same answer."""
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    if metric.classifier:
        return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
    return float(np.mean(np.all(a == b, axis=1)))
