"""Tensor shapes of a serialized Keras model, inferred from its config without importing Keras.

Tips run on the driver, which never imports TensorFlow, yet a tip must know what it does to the
graph: whether a doubled stride leaves both operands of an Add the same size, whether a map
shrinks below a kernel, whether the model's output keeps its shape. This module answers that for
the standard layers (convolutions, pooling, padding, Dense, merges, reshapes, recurrent layers
and the shape-keeping ones); a layer it does not know has an unknown shape, and so has every
layer after it, which the tips treat as "cannot check" rather than as an error.

Shapes exclude the batch dimension: `[H, W, C]`, `[T, C]` or `[features]`. An impossible layer
raises `ShapeError` with the reason in the model's own terms (layer name, shapes).
"""
from __future__ import annotations

import math

from orchestrator.keras_config import ModelConfig

Shape = list[int] | None

SAME_SHAPE = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
              "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
              "LayerNormalization", "Rescaling", "Normalization", "ActivityRegularization",
              "AlphaDropout", "Identity"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
GLOBAL_POOLS = {"GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D"}


class ShapeError(Exception):
    """A layer that cannot take the shape it is given; the message names the layer and shapes."""


def fmt(shape: Shape) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


def _tuple(v, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        return list(v) if len(v) == n else [v[0]] * n
    return [v] * n


def _window(name: str, kind: str, dims: list[int], kernel: list[int], strides: list[int],
            padding: str, dilation: list[int] | None = None) -> list[int]:
    """Output spatial dims of a convolution or pooling window (Keras's arithmetic)."""
    dilation = dilation or [1] * len(dims)
    out = []
    for n, k, s, d in zip(dims, kernel, strides, dilation):
        span = d * (k - 1) + 1
        if padding in ("same", "causal"):
            out.append(math.ceil(n / s))
        elif n < span:
            raise ShapeError(f"{kind} '{name}': its {fmt(dims)} input is smaller than its "
                             f"{fmt(kernel)} window (padding 'valid')")
        else:
            out.append((n - span) // s + 1)
    return out


def layer_output(m: ModelConfig, layer: dict, inputs: list[Shape], global_pools=()) -> Shape:
    """The output shape of one layer given its input shapes (None: unknown)."""
    cls, cfg, name = layer["class_name"], layer["config"], m.name_of(layer)
    if cls == "InputLayer":
        shape = cfg.get("batch_shape") or [None] + list(cfg.get("shape") or [])
        return list(shape[1:]) if shape and all(d is not None for d in shape[1:]) else None
    if any(s is None for s in inputs) or not inputs:
        return None
    x = inputs[0]
    if cls in SAME_SHAPE:
        return list(x)
    if cls in MERGES:
        return _broadcast(cls, name, inputs)
    if cls == "Concatenate":
        axis = cfg.get("axis", -1)
        rank = len(x)
        ax = axis - 1 if axis >= 0 else rank + axis      # a non-negative axis counts the batch
        rest = [[d for i, d in enumerate(s) if i != ax] for s in inputs]
        if any(r != rest[0] for r in rest):
            raise ShapeError(f"concatenation '{name}': its inputs {', '.join(fmt(s) for s in inputs)} "
                             "differ outside the concatenated axis")
        out = list(x)
        out[ax] = sum(s[ax] for s in inputs)
        return out
    if cls in ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D",
               "SeparableConv1D"):
        rank = 1 if cls.endswith("1D") else 2
        if len(x) != rank + 1:
            return None
        kind = "depthwise convolution" if cls.startswith("Depthwise") else "convolution"
        dims = _window(name, kind, x[:rank], _tuple(cfg["kernel_size"], rank),
                       _tuple(cfg.get("strides", 1), rank), cfg.get("padding", "valid"),
                       _tuple(cfg.get("dilation_rate", 1), rank))
        ch = x[-1] * cfg.get("depth_multiplier", 1) if cls.startswith("Depthwise") else cfg["filters"]
        return dims + [ch]
    if cls in ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D"):
        rank = 1 if cls.endswith("1D") else 2
        if len(x) != rank + 1:
            return None
        if name in global_pools:              # resized by the build to cover the whole map
            return [1] * rank + [x[-1]]
        pool = _tuple(cfg.get("pool_size", 2), rank)
        strides = _tuple(cfg.get("strides") or pool, rank)
        return _window(name, "pooling", x[:rank], pool, strides, cfg.get("padding", "valid")) + [x[-1]]
    if cls in GLOBAL_POOLS:
        rank = 1 if cls.endswith("1D") else 2
        return ([1] * rank + [x[-1]]) if cfg.get("keepdims") else [x[-1]]
    if cls in ("ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D"):
        rank = 1 if cls.endswith("1D") else 2
        pads = pad_pairs(cfg.get("padding" if cls.startswith("Zero") else "cropping", 1), rank)
        sign = 1 if cls.startswith("Zero") else -1
        dims = [n + sign * (a + b) for n, (a, b) in zip(x[:rank], pads)]
        if any(d < 1 for d in dims):
            raise ShapeError(f"cropping '{name}': crops its {fmt(x)} input to nothing")
        return dims + list(x[rank:])
    if cls == "UpSampling2D" and len(x) == 3:
        size = _tuple(cfg.get("size", 2), 2)
        return [x[0] * size[0], x[1] * size[1], x[2]]
    if cls == "Flatten":
        return [math.prod(x)]
    if cls == "Reshape":
        target = list(cfg["target_shape"])
        total = math.prod(x)
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            if known == 0 or total % known:
                raise ShapeError(f"reshape '{name}': {fmt(x)} cannot become {fmt(target)}")
            target[target.index(-1)] = total // known
        if math.prod(target) != total:
            raise ShapeError(f"reshape '{name}': {fmt(x)} ({total} values) cannot become "
                             f"{fmt(target)} ({math.prod(target)} values)")
        return target
    if cls == "Dense":
        return list(x[:-1]) + [cfg["units"]]
    if cls in ("GRU", "LSTM", "SimpleRNN"):
        if len(x) != 2:
            return None
        return [x[0], cfg["units"]] if cfg.get("return_sequences") else [cfg["units"]]
    return None


def pad_pairs(v, rank: int) -> list[list[int]]:
    """A ZeroPadding/Cropping config value as [[before, after]] per spatial dim."""
    if isinstance(v, int):
        return [[v, v] for _ in range(rank)]
    if rank == 1:
        return [list(v)]
    return [list(p) if isinstance(p, (list, tuple)) else [p, p] for p in v]


def _broadcast(cls: str, name: str, inputs: list[list[int]]) -> list[int]:
    rank = max(len(s) for s in inputs)
    padded = [[1] * (rank - len(s)) + list(s) for s in inputs]
    out = []
    for dims in zip(*padded):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            raise ShapeError(f"{cls.lower()} '{name}': its inputs {', '.join(fmt(s) for s in inputs)} "
                             "do not match")
        out.append(big.pop() if big else 1)
    return out


def infer(m: ModelConfig, global_pools=()) -> dict[str, Shape]:
    """Layer name -> output shape (None where unknown), in layer order (topological in Keras
    configs). Raises ShapeError at the first layer that cannot take its input."""
    shapes: dict[str, Shape] = {}
    for layer in m.layers:
        ins = [shapes.get(n) for n in m.input_names(layer)]
        if m.is_sequential and not ins and layer["class_name"] != "InputLayer":
            ins = [None]
        try:
            shapes[m.name_of(layer)] = layer_output(m, layer, ins, global_pools)
        except (KeyError, TypeError, ValueError, IndexError):
            shapes[m.name_of(layer)] = None      # a config this module does not read: unknown
    return shapes


def infer_or_unknown(m: ModelConfig, global_pools=()) -> dict[str, Shape]:
    """`infer`, but a graph that does not hold together has unknown shapes (a base model is what
    the user gave; only what a tip makes of it is judged)."""
    try:
        return infer(m, global_pools)
    except ShapeError:
        return {}


def output_shapes(m: ModelConfig, shapes: dict[str, Shape]) -> list[Shape]:
    return [shapes.get(n) for n in m.output_names()]
