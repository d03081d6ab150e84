"""A Keras model's serialized config seen as a graph of layers, without importing Keras.

Tips rewrite configs (`keras.saving.serialize_keras_object(model)`: `{"class_name": "Functional" |
"Sequential", "config": {"layers": [...], ...}}`) on the driver, which never imports TensorFlow.
This module answers the questions they ask: which layers feed which, which layers are model
outputs, and how to splice a new layer in after another one. Nested models are opaque layers.
"""
from __future__ import annotations

import json

CONV_CLASSES = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D")
# Layers that keep a tensor's shape: they belong to the convolution block they follow.
ELEMENTWISE_CLASSES = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU",
                       "Softmax", "Dropout", "SpatialDropout2D", "GaussianNoise", "LayerNormalization")
POOL_CLASSES = ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D",
                "GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling2D")
# Layers between a model's last weighted layer and its output that do not set the output's width.
PASS_THROUGH_CLASSES = ELEMENTWISE_CLASSES + POOL_CLASSES + ("Reshape", "Flatten", "Rescaling",
                                                             "ZeroPadding2D", "Cropping2D")
RECURRENT_CLASSES = ("GRU", "LSTM", "SimpleRNN")
# Layers whose width (filters, units) becomes the width of what follows them.
WEIGHTED_CLASSES = CONV_CLASSES + ("Dense",) + RECURRENT_CLASSES + ("Conv2DTranspose",)


class ModelConfig:
    """A mutable view of one serialized Keras model (a deep copy of what it is given)."""

    def __init__(self, serialized: dict):
        if not isinstance(serialized, dict) or "config" not in serialized:
            raise ValueError("not a serialized Keras model (no 'config')")
        # through JSON: the copy is plain data (tuples become lists) and hashes the same everywhere
        self.data = json.loads(json.dumps(serialized, default=_jsonable))
        if "layers" not in self.config:
            raise ValueError(f"{self.class_name} config has no 'layers': only Functional and "
                             "Sequential models are supported")

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def class_name(self) -> str:
        return self.data.get("class_name", "")

    @property
    def is_sequential(self) -> bool:
        return self.class_name == "Sequential"

    @property
    def layers(self) -> list[dict]:
        return self.config["layers"]

    def name_of(self, layer: dict) -> str:
        return layer.get("name") or layer["config"]["name"]

    def by_name(self, name: str) -> dict:
        for layer in self.layers:
            if self.name_of(layer) == name:
                return layer
        raise KeyError(name)

    # --- topology ------------------------------------------------------------------------------
    def input_names(self, layer: dict) -> list[str]:
        """Names of the layers whose outputs this layer consumes."""
        if self.is_sequential:
            i = self.layers.index(layer)
            return [self.name_of(self.layers[i - 1])] if i > 0 else []
        names: list[str] = []
        for ref in _tensor_refs(layer.get("inbound_nodes", [])):
            if ref["keras_history"][0] not in names:
                names.append(ref["keras_history"][0])
        return names

    def consumers(self, name: str) -> list[dict]:
        return [layer for layer in self.layers if name in self.input_names(layer)]

    def output_names(self) -> list[str]:
        if self.is_sequential:
            return [self.name_of(self.layers[-1])] if self.layers else []
        outs = self.config.get("output_layers", [])
        if outs and isinstance(outs[0], str):      # a single output is stored unwrapped
            outs = [outs]
        return [o[0] for o in outs]

    def head_layers(self) -> set[str]:
        """Names of the weighted layers that set the width of a model output: found from each
        output back through shape-keeping layers, reshapes and pooling (MobileNet's classifier is a
        1x1 Conv2D before a Reshape and a Softmax; MobileNetV3's before a Flatten)."""
        heads: set[str] = set()
        todo, seen = list(self.output_names()), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            layer = self.by_name(name)
            if layer["class_name"] in WEIGHTED_CLASSES:
                heads.add(name)
            elif layer["class_name"] in PASS_THROUGH_CLASSES:
                todo += self.input_names(layer)
        return heads

    def ancestors(self, name: str) -> set[str]:
        """Names of every layer that `name` depends on."""
        out: set[str] = set()
        todo = self.input_names(self.by_name(name))
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo += self.input_names(self.by_name(n))
        return out

    def input_layers(self) -> list[dict]:
        return [layer for layer in self.layers if layer["class_name"] == "InputLayer"]

    def of_class(self, *class_names: str) -> list[dict]:
        return [layer for layer in self.layers if layer["class_name"] in class_names]

    def block_end(self, layer: dict) -> dict:
        """The last layer of the block that `layer` starts: it and the shape-keeping layers that
        follow it while the chain has one consumer at each step."""
        end = layer
        while True:
            nxt = self.consumers(self.name_of(end))
            if (len(nxt) != 1 or nxt[0]["class_name"] not in ELEMENTWISE_CLASSES
                    or self.name_of(end) in self.output_names()):
                return end
            end = nxt[0]

    # --- editing -------------------------------------------------------------------------------
    def unique_name(self, stem: str) -> str:
        taken = {self.name_of(layer) for layer in self.layers}
        n = 0
        while f"{stem}_{n}" in taken:
            n += 1
        return f"{stem}_{n}"

    def insert_after(self, after: dict, class_name: str, layer_config: dict) -> str:
        """Splices a new single-input layer between `after` and everything that consumed it."""
        name = self.unique_name(f"mvpfarm_{class_name.lower()}")
        entry = {"module": "keras.layers", "class_name": class_name,
                 "config": {"name": name, "trainable": True, **layer_config}, "registered_name": None}
        after_name = self.name_of(after)
        pos = self.layers.index(after) + 1
        if self.is_sequential:
            self.layers.insert(pos, entry)
            return name
        template = {"shape": None, "dtype": "float32"}
        for layer in self.layers:
            for ref in _tensor_refs(layer.get("inbound_nodes", [])):
                if ref["keras_history"][0] == after_name:
                    template = {k: v for k, v in ref.items() if k != "keras_history"}
                    ref["keras_history"] = [name, 0, 0]
        outs = self.config.get("output_layers", [])
        for o in ([outs] if outs and isinstance(outs[0], str) else outs):
            if o[0] == after_name:
                o[0] = name
        entry["name"] = name
        # Keras wants a recorded shape here; it is only a hint, the real one comes from the call
        entry["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            **template, "keras_history": [after_name, 0, 0]}}], "kwargs": {}}]
        self.layers.insert(pos, entry)
        return name

    def remove(self, layer: dict) -> None:
        """Splices a single-input layer out: its consumers read its input instead."""
        name = self.name_of(layer)
        if self.is_sequential:
            self.layers.remove(layer)
            return
        (src,) = [ref["keras_history"] for ref in _tensor_refs(layer.get("inbound_nodes", []))]
        for other in self.layers:
            for ref in _tensor_refs(other.get("inbound_nodes", [])):
                if ref["keras_history"][0] == name:
                    ref["keras_history"] = list(src)
        outs = self.config.get("output_layers", [])
        for o in ([outs] if outs and isinstance(outs[0], str) else outs):
            if o[0] == name:
                o[:] = list(src)
        self.layers.remove(layer)

    def finish(self) -> dict:
        """The edited config, ready for `from_config`: recorded shapes are dropped because a tip
        may have made them stale, and Keras would otherwise build layers with the old shapes."""
        out = json.loads(json.dumps(self.data))       # plain data (see __init__): faster than deepcopy
        for layer in out["config"]["layers"]:
            layer.pop("build_config", None)
        out["config"].pop("build_input_shape", None)
        out.pop("build_config", None)
        out.pop("compile_config", None)
        return out


def _tensor_refs(obj):
    """Every serialized Keras tensor reference inside an inbound_nodes structure."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            yield obj["config"]
        else:
            for v in obj.values():
                yield from _tensor_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _tensor_refs(v)


def _jsonable(o):
    if hasattr(o, "tolist"):        # numpy scalars and arrays in layer configs
        return o.tolist()
    raise TypeError(f"{type(o).__name__} in a Keras config is not plain data")
