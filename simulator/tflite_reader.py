"""Reads a .tflite flatbuffer into a `Graph` with the generated schema classes of the `tflite`
package; TensorFlow is never imported.

A fuzzed or truncated file must fail fast with one `ModelError`, never hang: every vector length
read from the file is checked against the file's size before anything iterates over it, and
every tensor shape is bounded before any size is computed from it.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Model import Model
from tflite.TensorType import TensorType

from simulator.errors import ModelError
from simulator.graph import Graph, Operator, Tensor
from simulator.model_checks import check_buffer, check_graph, check_quantization, check_tensor_size

# A dimension or element count beyond these cannot be a model for a 256 KB microcontroller; they
# only come from corrupt files, and bounding them keeps every later computation cheap.
MAX_DIM = 1 << 24
MAX_ELEMENTS = 1 << 31

_OPCODE_NAMES = {v: k.lower() for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_DTYPE_NAMES = {v: k.lower() for k, v in vars(TensorType).items() if not k.startswith("_")}
_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
              "int64": np.int64, "int16": np.int16, "int8": np.int8, "float64": np.float64,
              "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "bool": np.bool_}
_OPTIONS_CLASSES = {v: getattr(tflite, k, None) for k, v in vars(BuiltinOptions).items()
                    if not k.startswith("_") and k != "NONE"}
_PADDING = {0: "same", 1: "valid"}
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Bounds:
    """Checks vector lengths read from the file against what the file could possibly hold."""

    def __init__(self, where: str, size: int):
        self.where, self.size = where, size

    def length(self, n: int, what: str, item_bytes: int = 4) -> int:
        if n < 0 or n * item_bytes > self.size:
            raise ModelError(f"{self.where}: corrupt flatbuffer: {what} claims {n} entries in a "
                             f"{self.size}-byte file")
        return n


def read_model(data: bytes, name: str = "model", where: str | None = None) -> Graph:
    """Parses .tflite bytes into a Graph. Raises ModelError on anything that is not a valid model."""
    where = where or name
    if len(data) < 8:
        raise ModelError(f"{where}: not a .tflite model: only {len(data)} bytes")
    if data[4:8] != b"TFL3":
        raise ModelError(f"{where}: not a .tflite flatbuffer (file identifier {data[4:8]!r}, "
                         "expected b'TFL3')")
    try:
        return _read(bytes(data), name, where)
    except ModelError:
        raise
    except RecursionError:
        raise ModelError(f"{where}: corrupt flatbuffer: nesting too deep") from None
    except (IndexError, ValueError, TypeError, KeyError, OverflowError, AttributeError,
            UnicodeDecodeError, MemoryError, Exception) as e:  # noqa: B014 - any decoding failure
        raise ModelError(f"{where}: corrupt flatbuffer: {type(e).__name__}: {e}".splitlines()[0][:300]) from None


def read_model_file(path: str | Path) -> Graph:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ModelError(f"{p}: is a directory, not a .tflite file") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read: {e.strerror}") from None
    return read_model(data, name=p.stem, where=str(p))


def _read(data: bytes, name: str, where: str) -> Graph:
    b = _Bounds(where, len(data))
    model = Model.GetRootAs(data, 0)
    n_sub = b.length(model.SubgraphsLength(), "subgraphs")
    if n_sub < 1:
        raise ModelError(f"{where}: model has no subgraph")
    sg = model.Subgraphs(0)

    opcodes = []
    for i in range(b.length(model.OperatorCodesLength(), "operator codes")):
        oc = model.OperatorCodes(i)
        code = max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))
        if code == BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            opcodes.append(("custom:" + custom.decode("utf-8", "replace")) if custom else "custom")
        else:
            opcodes.append(_OPCODE_NAMES.get(code, f"unknown_builtin_{code}"))

    n_buffers = b.length(model.BuffersLength(), "buffers")
    n_tensors = b.length(sg.TensorsLength(), "tensors")
    tensors = [_read_tensor(model, sg.Tensors(i), i, n_buffers, b) for i in range(n_tensors)]

    def indices(arr, what) -> list[int]:
        out = [int(x) for x in (arr if isinstance(arr, np.ndarray) else [])]
        for x in out:
            if x < -1 or x >= n_tensors:
                raise ModelError(f"{where}: corrupt model: {what} refers to tensor {x} of {n_tensors}")
        return out

    operators = []
    for i in range(b.length(sg.OperatorsLength(), "operators")):
        op = sg.Operators(i)
        idx = op.OpcodeIndex()
        if idx >= len(opcodes):
            raise ModelError(f"{where}: corrupt model: operator {i} uses opcode {idx} of {len(opcodes)}")
        b.length(op.InputsLength(), f"operator {i} inputs")
        b.length(op.OutputsLength(), f"operator {i} outputs")
        b.length(op.IntermediatesLength(), f"operator {i} intermediates")
        operators.append(Operator(
            index=i, opcode=opcodes[idx],
            inputs=indices(op.InputsAsNumpy(), f"operator {i}"),
            outputs=indices(op.OutputsAsNumpy(), f"operator {i}"),
            options=_read_options(op, b),
            version=int(model.OperatorCodes(idx).Version()),
            intermediates=indices(op.IntermediatesAsNumpy(), f"operator {i}"),
        ))
    b.length(sg.InputsLength(), "subgraph inputs")
    b.length(sg.OutputsLength(), "subgraph outputs")
    graph = Graph(
        name=name, sha256=hashlib.sha256(data).hexdigest(), flash_bytes=len(data),
        tensors=tensors, operators=operators,
        inputs=indices(sg.InputsAsNumpy(), "subgraph inputs"),
        outputs=indices(sg.OutputsAsNumpy(), "subgraph outputs"),
        n_subgraphs=n_sub,
    )
    check_graph(graph, where)
    return graph


def _read_tensor(model, t, i: int, n_buffers: int, b: _Bounds) -> Tensor:
    b.length(t.ShapeLength(), f"tensor {i} shape")
    shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else ()))
    total = 1
    for d in shape:
        if d < 0 or d > MAX_DIM:
            raise ModelError(f"{b.where}: tensor {i} has an impossible dimension {d} in shape {list(shape)}")
        total *= d
    if total > MAX_ELEMENTS:
        raise ModelError(f"{b.where}: tensor {i} has {total} elements, more than any model can hold")
    dtype = _DTYPE_NAMES.get(t.Type(), f"type_{t.Type()}")
    buf_idx = t.Buffer()
    has_data = 0 < buf_idx < n_buffers and model.Buffers(buf_idx).DataLength() > 0
    check_tensor_size(b.where, i, shape, dtype, constant=has_data)
    raw_name = t.Name()
    tname = raw_name.decode("utf-8", "replace") if raw_name else f"tensor_{i}"

    data = None
    if 0 < buf_idx < n_buffers:
        buf = model.Buffers(buf_idx)
        n = b.length(buf.DataLength(), f"buffer {buf_idx}", item_bytes=1)
        if n:
            raw = buf.DataAsNumpy()
            np_dtype = _NP_DTYPES.get(dtype)
            if np_dtype is not None:
                check_buffer(b.where, Tensor(i, tname, shape, dtype), n, np.dtype(np_dtype).itemsize)
                data = np.frombuffer(raw.tobytes(), dtype=np_dtype).reshape(shape)
            else:
                data = np.frombuffer(raw.tobytes(), dtype=np.uint8)
    elif buf_idx >= n_buffers and n_buffers > 0:
        raise ModelError(f"{b.where}: corrupt model: tensor {i} uses buffer {buf_idx} of {n_buffers}")

    scale = zero_point = None
    qdim = 0
    q = t.Quantization()
    if q is not None:
        if b.length(q.ScaleLength(), f"tensor {i} scales"):
            scale = np.array(q.ScaleAsNumpy(), dtype=np.float32)
        if b.length(q.ZeroPointLength(), f"tensor {i} zero points", item_bytes=8):
            zero_point = np.array(q.ZeroPointAsNumpy(), dtype=np.int64)
        qdim = int(q.QuantizedDimension())
    tensor = Tensor(index=i, name=tname, shape=shape, dtype=dtype, data=data, scale=scale,
                    zero_point=zero_point, quantized_dim=qdim, is_variable=bool(t.IsVariable()),
                    has_quantization_table=q is not None)
    check_quantization(b.where, tensor)
    return tensor


def _read_options(op, b: _Bounds) -> dict:
    cls = _OPTIONS_CLASSES.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    out = {}
    for attr in dir(cls):
        if attr.startswith("_") or attr in ("Init",) or attr.startswith("GetRootAs") \
                or attr.endswith(("BufferHasIdentifier", "IsNone", "Length")):
            continue
        fn = getattr(opts, attr)
        if attr.endswith("AsNumpy"):
            base = attr[: -len("AsNumpy")]
            b.length(getattr(opts, base + "Length")(), f"option {base}")
            val = fn()
            out[_snake(base)] = [int(x) for x in val] if isinstance(val, np.ndarray) else []
            continue
        if hasattr(opts, attr + "AsNumpy"):
            continue  # the vector form is read above
        try:
            val = fn()
        except TypeError:
            continue  # accessors that need an index
        key = _snake(attr)
        if key == "padding":
            val = _PADDING.get(val, val)
        elif key == "fused_activation_function":
            val = _ACTIVATIONS.get(val, val)
        if isinstance(val, bytes):
            val = val.decode("utf-8", "replace")
        if isinstance(val, (int, float, str, bool)):
            out[key] = val
    return out


__all__ = ["read_model", "read_model_file"]
