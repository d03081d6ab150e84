"""The model-size tips, each a transformation of a model config.

Named after Silicon Labs' model-size FAQ. A tip rewrites the config of any Functional or
Sequential Keras model made of standard layers (see `keras_config`), so it works on user models as
well as on the built-in bases. A tip that cannot change a model raises `TipNotApplicable` with the
reason: the sweep records it as a result, never skips it silently.

A model config here is `{"keras": <serialized Keras model>, "input_dtype": "int8" | "float32",
"global_pools": [...]}`: the input dtype is a converter setting, not a layer property, and the
global pools are pooling layers that cover their whole feature map (the build resizes them to
whatever map a tip leaves them).

Layers whose output is a model output keep their width: the task's output shape is not a tip's
to change.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.keras_config import CONV_CLASSES, POOL_CLASSES, ModelConfig


class TipNotApplicable(Exception):
    """The tip does not change this model; the message says why."""


@dataclass(frozen=True)
class Tip:
    name: str
    doc: str
    level_doc: str
    check_level: Callable[[Any], str | None]    # None when the level is possible, else why not
    apply: Callable[[ModelConfig, dict, Any], None]


# --- level checks ------------------------------------------------------------------------------
def _scale(level) -> str | None:
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        return f"{level!r} is not a number"
    if not 0 < level <= 4 or level == 1:
        return f"{level} is not a scale in (0, 4] other than 1"
    return None


def _count(lo: int, hi: int):
    def check(level) -> str | None:
        if isinstance(level, bool) or not isinstance(level, int) or not lo <= level <= hi:
            return f"{level!r} is not a whole number from {lo} to {hi}"
        return None
    return check


def _choice(*options: str):
    def check(level) -> str | None:
        return None if level in options else f"{level!r} is not one of {', '.join(options)}"
    return check


def _scaled(n: int, scale: float) -> int:
    return max(1, int(math.floor(n * scale + 0.5)))


def _as_pair(v) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


# --- the tips ----------------------------------------------------------------------------------
def _input_size(m: ModelConfig, spec: dict, scale: float) -> None:
    changed = False
    for layer in m.input_layers():
        cfg = layer["config"]
        shape = cfg.get("batch_shape") or ([None] + list(cfg.get("shape", [])))
        if len(shape) < 3:
            continue                     # (batch, features): no spatial dims to scale
        # (batch, H, W, C) or (batch, T, C): every dim between batch and channels is spatial
        new = [shape[0]] + [_scaled(d, scale) for d in shape[1:-1]] + [shape[-1]]
        if new != shape:
            cfg["batch_shape"] = new
            cfg.pop("shape", None)
            changed = True
    if not changed:
        raise TipNotApplicable("the model input has no spatial dimensions to scale")


def _input_dtype(m: ModelConfig, spec: dict, dtype: str) -> None:
    if spec.get("input_dtype", "int8") == dtype:
        raise TipNotApplicable(f"the model input is already {dtype}")
    spec["input_dtype"] = dtype


def _filters(m: ModelConfig, spec: dict, scale: float) -> None:
    outputs = set(m.output_names())
    changed = False
    for layer in m.of_class(*CONV_CLASSES):
        if m.name_of(layer) in outputs:
            continue
        cfg = layer["config"]
        key = "depth_multiplier" if layer["class_name"] == "DepthwiseConv2D" else "filters"
        new = _scaled(cfg[key], scale)
        if new != cfg[key]:
            cfg[key] = new
            changed = True
    if not changed:
        raise TipNotApplicable(f"no convolution filters or depth multipliers change at scale {scale}")


def _strides(m: ModelConfig, spec: dict, n: int) -> None:
    convs = [L for L in m.of_class(*CONV_CLASSES) if m.name_of(L) not in m.output_names()]
    if not convs:
        raise TipNotApplicable("the model has no convolutions")
    if len(convs) < n:
        raise TipNotApplicable(f"the model has only {len(convs)} convolutions, fewer than {n}")
    for layer in convs[:n]:
        cfg = layer["config"]
        cfg["strides"] = [2 * s for s in _as_pair(cfg.get("strides", 1))][:len(_as_pair(cfg["kernel_size"]))]


def _kernel_size(m: ModelConfig, spec: dict, k: int) -> None:
    changed = False
    for layer in m.of_class(*CONV_CLASSES):
        cfg = layer["config"]
        kernel = cfg["kernel_size"] if isinstance(cfg["kernel_size"], (list, tuple)) else [cfg["kernel_size"]]
        new = [min(d, k) for d in kernel]
        if new != list(kernel):
            cfg["kernel_size"] = new
            changed = True
    if not changed:
        raise TipNotApplicable(f"no convolution kernel is larger than {k}")


def _dense_units(m: ModelConfig, spec: dict, scale: float) -> None:
    outputs = set(m.output_names())
    hidden = [L for L in m.of_class("Dense") if m.name_of(L) not in outputs]
    if not hidden:
        raise TipNotApplicable("the model has no hidden Dense layers (only the output layer)")
    changed = False
    for layer in hidden:
        new = _scaled(layer["config"]["units"], scale)
        changed |= new != layer["config"]["units"]
        layer["config"]["units"] = new
    if not changed:
        raise TipNotApplicable(f"no hidden Dense layer changes at scale {scale}")


def _pooling(m: ModelConfig, spec: dict, kind: str) -> None:
    convs = m.of_class("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
    if not convs:
        raise TipNotApplicable("the model has no 2D convolutions")
    end = m.block_end(convs[0])
    after = m.consumers(m.name_of(end))
    if any(L["class_name"] in POOL_CLASSES for L in after):
        raise TipNotApplicable("a pooling layer already follows the first convolution block")
    m.insert_after(end, "MaxPooling2D" if kind == "max" else "AveragePooling2D",
                   {"pool_size": [2, 2], "strides": [2, 2], "padding": "same",
                    "data_format": "channels_last"})


TIPS: dict[str, Tip] = {t.name: t for t in (
    Tip("input_size", "scale the spatial dimensions of the model input", "scale in (0, 4], e.g. 0.5",
        _scale, _input_size),
    Tip("input_dtype", "int8 or float32 model input (the base takes int8)", "int8 or float32",
        _choice("int8", "float32"), _input_dtype),
    Tip("filters", "scale Conv filters and DepthwiseConv2D depth_multiplier", "scale in (0, 4], e.g. 0.5",
        _scale, _filters),
    Tip("strides", "double the strides of the first N convolutions", "N, a whole number from 1 to 32",
        _count(1, 32), _strides),
    Tip("kernel_size", "shrink convolution kernels to at most K x K", "K, a whole number from 1 to 15",
        _count(1, 15), _kernel_size),
    Tip("dense_units", "scale the units of hidden Dense layers", "scale in (0, 4], e.g. 0.5",
        _scale, _dense_units),
    Tip("pooling", "insert a 2x2 pooling layer after the first convolution block", "max or avg",
        _choice("max", "avg"), _pooling),
)}
TIP_ORDER = list(TIPS)


def check_level(tip: str, level) -> str | None:
    return TIPS[tip].check_level(level)


def apply_tip(spec: dict, tip: str, level) -> dict:
    """Returns a new model config with the tip applied; raises TipNotApplicable."""
    problem = check_level(tip, level)
    if problem:
        raise ValueError(f"{tip}: {problem}")
    out = copy.deepcopy(spec)
    m = ModelConfig(out["keras"])
    TIPS[tip].apply(m, out, level)
    out["keras"] = m.finish()
    return out


def apply_tips(spec: dict, levels: dict) -> dict:
    """Applies several tips in the canonical order (so a variant's config does not depend on the
    order they were written in); the first that does not apply raises."""
    for tip in TIP_ORDER:
        if tip in levels:
            try:
                spec = apply_tip(spec, tip, levels[tip])
            except TipNotApplicable as e:
                if len(levels) == 1:
                    raise
                raise TipNotApplicable(f"{tip}={format_level(levels[tip])}: {e}") from None
    return spec


def format_level(level) -> str:
    return f"{level:g}" if isinstance(level, float) else str(level)
