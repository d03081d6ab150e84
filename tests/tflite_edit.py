"""In-place field edits of a .tflite flatbuffer through its schema (the `tflite` package's
generated classes), for the hostile-input tests: each edit finds a field by its accessor's
vtable slot and overwrites the stored value, so the file stays a well-formed flatbuffer whose
content is wrong in exactly one place.

Only fields the file stores can be edited (a field left at its schema default has no bytes to
overwrite); `pos` returns None for those.
"""
from __future__ import annotations

import inspect
import re
import struct
from functools import lru_cache

import tflite
from tflite.Model import Model


@lru_cache(maxsize=None)
def _slot(cls: type, accessor: str) -> int:
    """The vtable slot of a field, read from its generated accessor (`self._tab.Offset(N)`)."""
    m = re.search(r"_tab\.Offset\((\d+)\)", inspect.getsource(getattr(cls, accessor)))
    if m is None:
        raise ValueError(f"{cls.__name__}.{accessor} is not a field accessor")
    return int(m.group(1))


def pos(table, accessor: str, j: int | None = None, item_bytes: int = 4) -> int | None:
    """Byte position of a scalar field, or of element j of a vector field; None if absent."""
    o = table._tab.Offset(_slot(type(table), accessor))
    if not o:
        return None
    if j is None:
        return table._tab.Pos + o
    return table._tab.Vector(o) + j * item_bytes


class Editor:
    """A model's bytes and accessors to its tables; `set` writes one value in place."""

    def __init__(self, data: bytes):
        self.data = bytearray(data)
        self.model = Model.GetRootAs(self.data, 0)
        self.subgraph = self.model.Subgraphs(0)

    def tensor(self, i: int):
        return self.subgraph.Tensors(i)

    def op(self, i: int):
        return self.subgraph.Operators(i)

    def opcode(self, i: int) -> int:
        oc = self.model.OperatorCodes(self.op(i).OpcodeIndex())
        return max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))

    def options(self, i: int):
        """Operator i's builtin options as their generated class, or None."""
        op = self.op(i)
        table = op.BuiltinOptions()
        if table is None:
            return None
        names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
        cls = getattr(tflite, names.get(op.BuiltinOptionsType(), ""), None)
        if cls is None:
            return None
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def set(self, table, accessor: str, fmt: str, value, j: int | None = None) -> bool:
        """Overwrites a field (struct format `fmt`, e.g. '<i', '<I', '<f'); False if it is absent."""
        p = pos(table, accessor, j, struct.calcsize(fmt))
        if p is None:
            return False
        struct.pack_into(fmt, self.data, p, value)
        return True

    def bytes(self) -> bytes:
        return bytes(self.data)


# --- random mutations (the fuzz tests' vocabulary) -------------------------------------------------
INT_VALUES = (-(1 << 31), -2, -1, 0, 1, 2, 3, 7, 255, 1 << 16, 1 << 24, (1 << 31) - 1)
FLOAT_VALUES = (0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e38, 1.0)
_OPTION_SCALARS = ("StrideW", "StrideH", "DilationWFactor", "DilationHFactor", "FilterWidth",
                   "FilterHeight", "DepthMultiplier", "Padding", "FusedActivationFunction", "Axis",
                   "KeepNumDims", "Beta")


def field_edit(data: bytes, rnd) -> bytes:
    """One schema-aware edit of a random field of a random operator or tensor (`rnd`: a
    random.Random); the bytes unchanged if the chosen field is not stored."""
    e = Editor(data)
    sg = e.subgraph
    kind = rnd.choice(["op_input", "op_output", "option", "buffer", "shape", "type", "scale",
                       "zero_point", "quantized_dim"])
    iv = rnd.choice(INT_VALUES) if rnd.random() < 0.8 else rnd.randrange(-1, 64)
    if kind in ("op_input", "op_output", "option") and sg.OperatorsLength():
        op = e.op(rnd.randrange(sg.OperatorsLength()))
        if kind == "option":
            opts = e.options(rnd.randrange(sg.OperatorsLength()))
            names = [n for n in _OPTION_SCALARS if opts is not None and hasattr(opts, n)]
            if names:
                name = rnd.choice(names)
                if name == "Beta":
                    e.set(opts, name, "<f", rnd.choice(FLOAT_VALUES))
                elif name in ("Padding", "FusedActivationFunction", "KeepNumDims"):
                    e.set(opts, name, "<b", rnd.randrange(-128, 128))
                else:
                    e.set(opts, name, "<i", iv)
            return e.bytes()
        n = op.InputsLength() if kind == "op_input" else op.OutputsLength()
        if n:
            e.set(op, "Inputs" if kind == "op_input" else "Outputs", "<i", iv, j=rnd.randrange(n))
        return e.bytes()
    if not sg.TensorsLength():
        return e.bytes()
    t = e.tensor(rnd.randrange(sg.TensorsLength()))
    if kind == "buffer":
        e.set(t, "Buffer", "<I", rnd.choice([0, 1, 2, e.model.BuffersLength() - 1, 1 << 20]) & 0xFFFFFFFF)
    elif kind == "shape" and t.ShapeLength():
        e.set(t, "Shape", "<i", iv, j=rnd.randrange(t.ShapeLength()))
    elif kind == "type":
        e.set(t, "Type", "<b", rnd.randrange(0, 20))
    elif t.Quantization() is not None:
        q = t.Quantization()
        if kind == "scale" and q.ScaleLength():
            e.set(q, "Scale", "<f", rnd.choice(FLOAT_VALUES), j=rnd.randrange(q.ScaleLength()))
        elif kind == "zero_point" and q.ZeroPointLength():
            e.set(q, "ZeroPoint", "<q", rnd.choice(INT_VALUES), j=rnd.randrange(q.ZeroPointLength()))
        elif kind == "quantized_dim":
            e.set(q, "QuantizedDimension", "<i", iv)
    return e.bytes()


def byte_flips(data: bytes, rnd, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        b[rnd.randrange(8, len(b))] = rnd.randrange(256)
    return bytes(b)


def truncate(data: bytes, rnd) -> bytes:
    return data[:rnd.randrange(0, len(data))]


def mutate(data: bytes, rnd) -> bytes:
    """A random mix of the three: mostly schema-aware edits, some byte flips, a few truncations."""
    r = rnd.random()
    if r < 0.1:
        return truncate(data, rnd)
    if r < 0.35:
        return byte_flips(data, rnd, rnd.randrange(1, 16))
    for _ in range(rnd.randrange(1, 4)):
        data = field_edit(data, rnd)
    return data
