"""The model-size tips, each a transformation of a model config.

Named after Silicon Labs' model-size FAQ. A tip rewrites the config of any Functional or
Sequential Keras model made of standard layers (see `keras_config`), so it works on user models as
well as on the built-in bases. A tip that cannot change a model raises `TipNotApplicable` with the
reason: the sweep records it as a result, never skips it silently.

A model config here is `{"keras": <serialized Keras model>, "input_dtype": "int8" | "float32",
"global_pools": [...]}`: the input dtype is a converter setting, not a layer property, and the
global pools are pooling layers that cover their whole feature map (the build resizes them to
whatever map a tip leaves them).

Tips work on the graph, not on layer order: the layers that set a model output's width (found
back from each output through reshapes, activations, dropout and pooling) keep it, and every
variant's graph is checked with `keras_shapes` before it is built: a level that would shrink a map
below a kernel, mismatch the operands of an Add or change the output shape is "not applicable",
with the layer and shapes that say why. The task's output shape is not a tip's to change.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator import keras_shapes
from orchestrator.keras_config import CONV_CLASSES, POOL_CLASSES, RECURRENT_CLASSES, WEIGHTED_CLASSES, ModelConfig
from orchestrator.keras_shapes import MERGES, SAME_SHAPE, fmt


class TipNotApplicable(Exception):
    """The tip does not change this model; the message says why."""


@dataclass(frozen=True)
class Tip:
    name: str
    doc: str
    level_doc: str
    check_level: Callable[[Any], str | None]    # None when the level is possible, else why not
    apply: Callable[[ModelConfig, dict, Any], None]   # (graph, model config, level)


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


# --- what a model has, in its own terms -----------------------------------------------------
def _has(m: ModelConfig) -> str:
    """What the model is made of, for messages about a tip that does not fit it."""
    counts: dict[str, int] = {}
    for layer in m.layers:
        if layer["class_name"] in WEIGHTED_CLASSES:
            counts[layer["class_name"]] = counts.get(layer["class_name"], 0) + 1
    if not counts:
        return "it has no weighted layers"
    return "it has " + ", ".join(f"{n} {c}" for c, n in counts.items())


def _spatial_rank(m: ModelConfig, shapes: dict) -> int:
    """2 for image models, 1 for sequence models, 0 for flat ones (from the input's shape)."""
    for layer in m.input_layers():
        shape = shapes.get(m.name_of(layer))
        if shape is not None:
            return max(0, len(shape) - 1)
    return 0


# --- the tips ----------------------------------------------------------------------------------
def _input_size(m: ModelConfig, model_config: dict, scale: float) -> None:
    changed = False
    for layer in m.input_layers():
        cfg = layer["config"]
        shape = cfg.get("batch_shape") or ([None] + list(cfg.get("shape", [])))
        if len(shape) < 3:
            continue                     # (batch, features): no spatial dims to scale
        # (batch, H, W, C) or (batch, T, C): every dim between batch and channels is spatial
        collapsed = [d for d in shape[1:-1] if isinstance(d, int) and math.floor(d * scale + 0.5) < 1]
        if collapsed:        # not rounded up to a 1x1 input that would rank first
            raise TipNotApplicable(f"input_size {scale:g} makes the input's {collapsed[0]}-long dimension "
                                   f"{collapsed[0] * scale:.3g} long, below 1 ({fmt(shape[1:])} input)")
        new = [shape[0]] + [_scaled(d, scale) for d in shape[1:-1]] + [shape[-1]]
        if new != shape:
            cfg["batch_shape"] = new
            cfg.pop("shape", None)
            changed = True
    if not changed:
        shape = [d for d in (m.input_layers()[0]["config"].get("batch_shape") or [None])[1:]] \
            if m.input_layers() else []
        raise TipNotApplicable(f"the model input ({fmt(shape) if shape else 'unknown'}) has no spatial "
                               "dimensions to scale")


def _input_dtype(m: ModelConfig, model_config: dict, dtype: str) -> None:
    if model_config.get("input_dtype", "int8") == dtype:
        raise TipNotApplicable(f"the model input is already {dtype}")
    model_config["input_dtype"] = dtype


def _channel_groups(m: ModelConfig) -> tuple[dict[str, set], set[str]]:
    """Which convolutions' widths must change together, and which cannot change at all.

    The operands of an Add (Multiply, ...) must keep equal channel counts, so the layers whose
    width reaches each operand form one group; a group that also holds a width no tip scales (the
    model input, an output head, a layer this module does not know) is frozen."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    origins: dict[str, set] = {}
    heads = m.head_layers()
    for layer in m.layers:
        name, cls = m.name_of(layer), layer["class_name"]
        ins = [origins.get(n, {n}) for n in m.input_names(layer)]
        if cls in CONV_CLASSES and cls != "DepthwiseConv2D" or cls in ("InputLayer", "Dense", "Concatenate",
                                                                        "Flatten", "Reshape", "GRU", "LSTM"):
            origins[name] = {name}
        elif cls == "DepthwiseConv2D":
            origins[name] = set().union(*ins) | {name} if ins else {name}
        elif cls in MERGES:
            union = set().union(*ins) if ins else set()
            for o in union:
                parent[find(o)] = find(next(iter(union)))
            origins[name] = union
        elif cls in SAME_SHAPE or cls in POOL_CLASSES or cls.startswith(("ZeroPadding", "Cropping")):
            origins[name] = set().union(*ins) if ins else {name}
        else:
            origins[name] = {name}
    groups: dict[str, set] = {}
    for layer in m.layers:
        groups.setdefault(find(m.name_of(layer)), set()).add(m.name_of(layer))
    frozen: set[str] = set()
    for members in groups.values():
        if len(members) > 1 and any(m.by_name(n)["class_name"] not in CONV_CLASSES or n in heads
                                    for n in members):
            frozen |= members
    return groups, frozen


def _filters(m: ModelConfig, model_config: dict, scale: float) -> None:
    convs = m.of_class(*CONV_CLASSES)
    if not convs:
        raise TipNotApplicable(f"the model has no convolutions to narrow ({_has(m)})")
    heads = m.head_layers()
    _, frozen = _channel_groups(m)
    changed = False
    for layer in convs:
        name = m.name_of(layer)
        if name in heads or name in frozen:
            continue
        cfg = layer["config"]
        key = "depth_multiplier" if layer["class_name"] == "DepthwiseConv2D" else "filters"
        new = _scaled(cfg[key], scale)
        if new != cfg[key]:
            cfg[key] = new
            changed = True
    if not changed:
        raise TipNotApplicable(f"no convolution filters or depth multipliers change at scale {scale} "
                               f"(the output layers {', '.join(sorted(heads))} keep their width)")


def _double_strides(layer: dict) -> None:
    cfg = layer["config"]
    rank = len(_as_pair(cfg["kernel_size"])) if isinstance(cfg["kernel_size"], (list, tuple)) else 2
    cfg["strides"] = [2 * s for s in _as_pair(cfg.get("strides", 1))][:rank]


def _strides(m: ModelConfig, model_config: dict, n: int) -> None:
    """Doubles the strides of the first N places where that keeps every path consistent: a
    convolution on the model's only path, or the first convolution of every branch that meets in
    an Add (a ResNet block's 3x3 and its 1x1 shortcut). A branch that reaches the merge without a
    convolution of its own (an identity shortcut) cannot follow, so its block is left alone."""
    pools = model_config.get("global_pools", [])
    heads = m.head_layers()
    convs = [L for L in m.of_class(*CONV_CLASSES) if m.name_of(L) not in heads
             and all(d == 1 for d in _as_pair(L["config"].get("dilation_rate", 1)))]
    if not convs:
        raise TipNotApplicable(f"the model has no convolutions whose stride could grow ({_has(m)})")
    base_out = keras_shapes.output_shapes(m, keras_shapes.infer_or_unknown(m, pools))
    done: set[str] = set()
    places: list[list[str]] = []
    refused: list[str] = []
    for conv in convs:
        if len(places) == n:
            break
        if m.name_of(conv) in done:
            continue
        group, why = _stride_group(m, conv, pools, base_out)
        if group is not None and done & set(group):
            group, why = None, f"'{group[0]}' would have to change with '{sorted(done & set(group))[0]}' again"
        if group is None:
            if why.startswith("doubling"):      # the map cannot take it: this level is too much
                after = f" (after {_places(places)})" if places else ""
                raise TipNotApplicable(why.replace(":", after + ":", 1))
            refused.append(why)
            continue
        places.append(group)
        done |= set(group)
        for name in group:
            _double_strides(m.by_name(name))
    if len(places) < n:
        why = f"; {refused[-1]}" if refused else ""
        found = f" ({_places(places)})" if places else ""
        raise TipNotApplicable(f"the model has only {len(places)} place{'s' if len(places) != 1 else ''} "
                               f"where a stride can double on every path{found}, fewer than {n}{why}")


def _places(places: list[list[str]]) -> str:
    """Stride places in words: "'conv1', 'conv2' with 'conv3'" (convolutions that double together)."""
    return ", ".join(" with ".join(f"'{c}'" for c in group) for group in places)


def _stride_group(m: ModelConfig, conv: dict, pools, base_out) -> tuple[list[str] | None, str]:
    """The convolutions that must double their stride together with `conv` (None: impossible,
    with the reason). Works on a scratch copy of the graph."""
    group = [m.name_of(conv)]
    for _ in range(8):
        trial = ModelConfig(m.data)
        for name in group:
            _double_strides(trial.by_name(name))
        try:
            shapes = keras_shapes.infer(trial, pools)
        except keras_shapes.ShapeError as e:
            mismatch = _merge_mismatch(trial, str(e))
            if mismatch is None:
                return None, f"doubling the stride of '{group[0]}': {e}"
            other = _branch_conv(trial, mismatch, group[0])
            if other is None:
                return None, (f"'{group[0]}' is on a branch that meets a shortcut without a convolution "
                              f"at '{mismatch[0]}'")
            group.append(other)
            continue
        if keras_shapes.output_shapes(trial, shapes) != base_out:
            return None, f"doubling the stride of '{group[0]}' would change the model output"
        return group, ""
    return None, f"no consistent stride change found around '{group[0]}'"


def _merge_mismatch(m: ModelConfig, message: str) -> tuple[str, list[str]] | None:
    """(merge layer, its operand layers) when a ShapeError is an Add/Concatenate mismatch."""
    for layer in m.layers:
        if layer["class_name"] in MERGES | {"Concatenate"} and f"'{m.name_of(layer)}'" in message:
            return m.name_of(layer), m.input_names(layer)
    return None


def _branch_conv(m: ModelConfig, mismatch: tuple[str, list[str]], changed: str) -> str | None:
    """The first convolution, walking back from the merge, on the operand that does not depend on
    the changed convolution: the one to change with it (None: that operand has none of its own)."""
    for operand in mismatch[1]:
        if operand == changed or changed in m.ancestors(operand):
            continue
        name = operand
        while True:
            layer = m.by_name(name)
            if layer["class_name"] in CONV_CLASSES:
                if name in m.ancestors(changed):
                    return None
                return name
            ins = m.input_names(layer)
            if len(ins) != 1 or name in m.ancestors(changed):
                return None
            name = ins[0]
    return None


def _kernel_size(m: ModelConfig, model_config: dict, k: int) -> None:
    convs = m.of_class(*CONV_CLASSES)
    if not convs:
        raise TipNotApplicable(f"the model has no convolutions ({_has(m)})")
    changed = False
    for layer in convs:
        cfg = layer["config"]
        kernel = cfg["kernel_size"] if isinstance(cfg["kernel_size"], (list, tuple)) else [cfg["kernel_size"]]
        new = [min(d, k) for d in kernel]
        if new != list(kernel):
            _shrink_padding(m, layer, list(kernel), new)
            cfg["kernel_size"] = new
            changed = True
    if not changed:
        raise TipNotApplicable(f"no convolution kernel is larger than {k}")


def _shrink_padding(m: ModelConfig, conv: dict, old: list[int], new: list[int]) -> None:
    """Explicit padding in front of a 'valid' convolution was sized for its old kernel (MobileNet's
    ZeroPadding2D before a strided depthwise): shrink it by what the kernel lost, so that the
    feature maps keep their size, and drop it once nothing is left."""
    if conv["config"].get("padding", "valid") != "valid":
        return
    ins = m.input_names(conv)
    if len(ins) != 1:
        return
    pad = m.by_name(ins[0])
    if not pad["class_name"].startswith("ZeroPadding") or len(m.consumers(ins[0])) != 1:
        return
    pairs = keras_shapes.pad_pairs(pad["config"].get("padding", 1), len(old))
    shrunk = []
    for (before, after), k0, k1 in zip(pairs, old, new):
        total = max(0, before + after - (k0 - k1))
        b = max(0, min(total, before - (k0 - k1) // 2))
        shrunk.append([b, total - b])
    if all(b == 0 and a == 0 for b, a in shrunk):
        m.remove(pad)
    else:
        pad["config"]["padding"] = shrunk if len(shrunk) > 1 else shrunk[0]


def _dense_units(m: ModelConfig, model_config: dict, scale: float) -> None:
    """Hidden Dense layers and recurrent layers: a GRU's or LSTM's gates are Dense layers over the
    frame and the state, unrolled once per time step, so its units are what a recurrent keyword
    spotter spends its cycles and weights on (no other tip narrows them)."""
    heads = m.head_layers()
    dense = m.of_class("Dense", *RECURRENT_CLASSES)
    hidden = [L for L in dense if m.name_of(L) not in heads]
    if not hidden:
        kinds = "Dense or recurrent" if m.of_class(*RECURRENT_CLASSES) else "Dense"
        names = ", ".join(f"'{m.name_of(L)}'" for L in dense)
        raise TipNotApplicable(f"the model has no hidden {kinds} layers (only the output layer{'s' * (len(dense) > 1)} "
                               f"{names})" if dense else f"the model has no Dense layers ({_has(m)})")
    changed = False
    for layer in hidden:
        new = _scaled(layer["config"]["units"], scale)
        changed |= new != layer["config"]["units"]
        layer["config"]["units"] = new
    if not changed:
        raise TipNotApplicable(f"no hidden Dense or recurrent layer changes at scale {scale}")


def _pooling(m: ModelConfig, model_config: dict, kind: str) -> None:
    shapes = keras_shapes.infer_or_unknown(m, model_config.get("global_pools", []))
    rank = _spatial_rank(m, shapes)
    convs = [L for L in m.of_class(*CONV_CLASSES)
             if (L["class_name"].endswith("1D")) == (rank == 1)]
    if rank == 0 or not convs:
        raise TipNotApplicable(f"the model has no feature maps to pool ({_has(m)})")
    end = m.block_end(convs[0])
    after = m.consumers(m.name_of(end))
    if any(L["class_name"] in POOL_CLASSES for L in after):
        raise TipNotApplicable(f"a pooling layer already follows the first convolution block "
                               f"('{m.name_of(end)}')")
    shape = shapes.get(m.name_of(end))
    if shape is not None and all(d == 1 for d in shape[:rank]):
        raise TipNotApplicable(f"the map after '{m.name_of(end)}' is already {fmt(shape)}: nothing to pool")
    cls = ("Max" if kind == "max" else "Average") + f"Pooling{rank}D"
    m.insert_after(end, cls, {"pool_size": [2] * rank, "strides": [2] * rank, "padding": "same",
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
    Tip("dense_units", "scale the units of hidden Dense and recurrent (GRU, LSTM) layers", "scale in (0, 4], e.g. 0.5",
        _scale, _dense_units),
    Tip("pooling", "insert a 2x2 (1D models: 2) pooling layer after the first convolution block", "max or avg",
        _choice("max", "avg"), _pooling),
)}
TIP_ORDER = list(TIPS)


def check_level(tip: str, level) -> str | None:
    return TIPS[tip].check_level(level)


def apply_tip(model_config: dict, tip: str, level) -> dict:
    """Returns a new model config with the tip applied; raises TipNotApplicable, also when the
    variant's graph would not hold together (a map below a kernel, a mismatched Add) or its output
    shape would change."""
    problem = check_level(tip, level)
    if problem:
        raise ValueError(f"{tip}: {problem}")
    # ModelConfig copies the Keras config, the bulk of it: deep-copying that too (and finish's
    # copy) made planning a 36-variant sweep take 0.2-0.4 s while the build workers waited
    out = copy.deepcopy({k: v for k, v in model_config.items() if k != "keras"})
    m = ModelConfig(model_config["keras"])
    pools = out.get("global_pools", [])
    before = keras_shapes.output_shapes(m, keras_shapes.infer_or_unknown(m, pools))
    TIPS[tip].apply(m, out, level)
    try:
        after = keras_shapes.output_shapes(m, keras_shapes.infer(m, pools))
    except keras_shapes.ShapeError as e:
        raise TipNotApplicable(str(e)) from None
    if any(a is not None and b is not None and a != b for a, b in zip(after, before)):
        raise TipNotApplicable(f"it would change the model output from {', '.join(map(fmt, before))} to "
                               f"{', '.join(map(fmt, after))}")
    out["keras"] = m.finish()
    return out


def apply_tips(model_config: dict, levels: dict) -> dict:
    """Applies several tips in the canonical order (so a variant's config does not depend on the
    order they were written in); the first that does not apply raises."""
    for tip in TIP_ORDER:
        if tip in levels:
            try:
                model_config = apply_tip(model_config, tip, levels[tip])
            except TipNotApplicable as e:
                if len(levels) == 1:
                    raise
                raise TipNotApplicable(f"{tip}={format_level(levels[tip])}: {e}") from None
    return model_config


def format_level(level) -> str:
    return f"{level:g}" if isinstance(level, float) else str(level)
