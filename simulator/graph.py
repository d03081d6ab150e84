"""The model graph as plain data: what the reader produces and every other module consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "string": 1, "bool": 1,
    "int16": 2, "complex64": 8, "int8": 1, "float64": 8, "complex128": 16, "uint64": 8,
    "resource": 4, "variant": 4, "uint32": 4, "uint16": 2, "int4": 1, "bfloat16": 2,
}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None  # constant data from the flatbuffer, None for activations
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    quantized_dim: int = 0
    is_variable: bool = False
    # the flatbuffer carries a quantization table (possibly empty, as on float tensors): the vendor's
    # RAM accounting counts these on model inputs and outputs
    has_quantization_table: bool = False

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def size_bytes(self) -> int:
        return self.n_elements * DTYPE_BYTES.get(self.dtype, 1)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def shape_str(self) -> str:
        return "x".join(str(d) for d in self.shape) if self.shape else "0"


@dataclass
class Operator:
    index: int
    opcode: str                      # lower-case TFLite builtin name, e.g. "conv_2d"
    inputs: list[int]                # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)
    version: int = 1
    intermediates: list[int] = field(default_factory=list)


@dataclass
class Graph:
    name: str
    sha256: str
    flash_bytes: int
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    n_subgraphs: int = 1

    def op_inputs(self, op: Operator) -> list[Tensor | None]:
        return [self.tensors[i] if i >= 0 else None for i in op.inputs]

    def op_outputs(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs]
