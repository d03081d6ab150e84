"""The MVP program as plain data: what one launch of the accelerator does.

A `Program` mirrors the 69 words the driver writes (registers, 5 arrays, 8 loops, 8 instructions) in a
form an interpreter can execute and a timing model can count: arrays name the buffer they walk
(`buffer` + `byte_offset`) instead of holding an address, loops keep the hardware's begin/end
instruction indices and their increment/reset bits.

`ProgramBuilder` builds programs the way the SDK's program builder does (nested begin/end loop
calls, increments attached to the loop that just closed), so kernels read like the SDK's loop nests.
`execution_counts` turns the loop structure into per-instruction execution counts and the counts of
each instruction-to-instruction transition, analytically (no per-iteration walk), which is all a
stall-free timing model needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from simulator.hardware import MVP, MvpLimits

# ALU operation codes (9-bit ALUOP field) of the operations the SDK kernels use
ALU_OPS = {
    "NOOP": 0x000, "CLEAR": 0x001, "COPY": 0x041, "ADDR": 0x04A, "ADDC": 0x14E, "MAX2A": 0x153,
    "MULC": 0x18D, "MULR2A": 0x197, "SQRMAGC2": 0x19D, "MACC": 0x1CD, "AACC": 0x1CE,
    "MAXAC2": 0x1D3, "CLIP2A": 0x1D5, "MACR2A": 0x1D7,
}
BASETYPES = MVP.basetypes
VEC, ROW, COL = 0, 1, 2  # DIM0, DIM1, DIM2


@dataclass(frozen=True)
class Dim:
    size: int    # 1..MVP.dim_size_max elements
    stride: int  # MVP.dim_stride_min..MVP.dim_stride_max elements (of the array's element size)


@dataclass(frozen=True)
class Array:
    buffer: str          # "input", "input2", "filter", "bias", "scaler", "output", "scratch", "zero"
    byte_offset: int     # address of element (0, 0, 0) relative to the buffer start
    basetype: str        # "int8" | "uint8" | "binary16"
    complex: bool        # two values per element (a packed pair)
    dims: tuple[Dim, Dim, Dim]  # DIM0 (vec), DIM1 (row), DIM2 (col)

    @property
    def element_bytes(self) -> int:
        return (2 if self.basetype == "binary16" else 1) * (2 if self.complex else 1)


@dataclass(frozen=True)
class Load:
    register: int
    array: int
    incr_dims: tuple[int, ...] = ()  # dims of that array incremented after the access


@dataclass(frozen=True)
class Store:
    register: int
    array: int
    incr_dims: tuple[int, ...] = ()


@dataclass(frozen=True)
class Instruction:
    op: str                       # key of ALU_OPS
    z: int | None = None          # output register
    x: int | None = None
    y: int | None = None
    a: int | None = None
    loads: tuple[Load, ...] = ()  # at most two load streams, applied before the ALU reads
    store: Store | None = None
    endprog: bool = False


@dataclass(frozen=True)
class Loop:
    iterations: int
    begin: int                               # first instruction of the body
    end: int                                 # last instruction of the body
    incr: tuple[tuple[int, int], ...] = ()   # (array, dim) incremented once the loop is exhausted
    reset: tuple[tuple[int, int], ...] = ()  # (array, dim) reset to 0 once the loop is exhausted


@dataclass(frozen=True)
class Program:
    kind: str                                         # what it computes, e.g. "conv_2d/main"
    registers: tuple[tuple[int, float, float], ...]   # initial (register, real, imag) values
    arrays: tuple[Array | None, ...]
    loops: tuple[Loop, ...]
    instructions: tuple[Instruction, ...]


def shifted(program: Program, shifts: dict[str, int]) -> Program:
    """The same program with some buffers' arrays moved by `shifts[buffer]` bytes: what the CPU
    changes between launches that repeat one program over channels or batches."""
    if not any(shifts.values()):
        return program
    arrays = tuple(a if a is None or not shifts.get(a.buffer) else
                   replace(a, byte_offset=a.byte_offset + shifts[a.buffer]) for a in program.arrays)
    return replace(program, arrays=arrays)


class ProgramBuilder:
    """Builds one program by nested loops, like the SDK's program builder.

    `begin_loop(n)` opens a loop whose body starts at the next instruction; `end_loop()` closes it at
    the last instruction added; `postloop_incr(array, dim)` / `postloop_reset` attach to the loop
    that was closed last. Outer loops get lower indices, as in the hardware's nesting rule.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.registers: dict[int, tuple[float, float]] = {}
        self.arrays: list[Array | None] = [None] * MVP.n_arrays
        self.instructions: list[Instruction] = []
        self._loops: list[dict] = []
        self._open: list[int] = []
        self._last_closed: int | None = None

    def reg(self, r: int, real: float, imag: float = 0.0) -> None:
        """Sets an initial register value; registers hold binary16, so the value is rounded to it
        (round to nearest even) here, once."""
        with np.errstate(over="ignore"):   # beyond 65504 a register holds inf, as the hardware's does
            self.registers[r] = (float(np.float16(real)), float(np.float16(imag)))

    def array(self, index: int, buffer: str, byte_offset: int, basetype: str, complex_: bool,
              sizes: tuple[int, int, int], strides: tuple[int, int, int]) -> None:
        self.arrays[index] = Array(buffer, byte_offset, basetype, complex_,
                                   tuple(Dim(s, st) for s, st in zip(sizes, strides)))

    def vector(self, index: int, buffer: str, byte_offset: int, basetype: str, complex_: bool,
               length: int) -> None:
        """A 1-D array walked along DIM2 (col), as the driver's vector helper does."""
        self.array(index, buffer, byte_offset, basetype, complex_, (1, 1, length), (0, 0, 1))

    def begin_loop(self, iterations: int) -> None:
        self._loops.append({"n": iterations, "begin": len(self.instructions), "end": None,
                            "incr": [], "reset": []})
        self._open.append(len(self._loops) - 1)

    def end_loop(self) -> None:
        k = self._open.pop()
        self._loops[k]["end"] = len(self.instructions) - 1
        self._last_closed = k

    def postloop_incr(self, array: int, dim: int) -> None:
        self._loops[self._last_closed]["incr"].append((array, dim))

    def postloop_reset(self, array: int, dim: int) -> None:
        self._loops[self._last_closed]["reset"].append((array, dim))

    def compute(self, op: str, z=None, x=None, y=None, a=None, loads=(), store=None) -> None:
        self.instructions.append(Instruction(op, z, x, y, a, tuple(loads), store))

    def build(self) -> Program:
        assert not self._open, "unclosed loop"
        instrs = list(self.instructions)
        if instrs:
            last = instrs[-1]
            instrs[-1] = Instruction(last.op, last.z, last.x, last.y, last.a, last.loads, last.store, True)
        loops = tuple(Loop(d["n"], d["begin"], d["end"], tuple(d["incr"]), tuple(d["reset"]))
                      for d in self._loops)
        regs = tuple((r, re, im) for r, (re, im) in sorted(self.registers.items()))
        return Program(self.kind, regs, tuple(self.arrays), loops, tuple(instrs))


def violations(program: Program, limits: MvpLimits = MVP) -> list[str]:
    """Every way the program breaks the MVP's encoding limits (empty when it fits)."""
    out = []
    if len(program.instructions) > limits.n_instructions:
        out.append(f"{len(program.instructions)} instructions > {limits.n_instructions}")
    if len(program.loops) > limits.n_loops:
        out.append(f"{len(program.loops)} loops > {limits.n_loops}")
    for k, arr in enumerate(program.arrays):
        if arr is None:
            continue
        for d, dim in enumerate(arr.dims):
            if not 1 <= dim.size <= limits.dim_size_max:
                out.append(f"array {k} dim {d} size {dim.size} outside 1..{limits.dim_size_max}")
            if not limits.dim_stride_min <= dim.stride <= limits.dim_stride_max:
                out.append(f"array {k} dim {d} stride {dim.stride} outside "
                           f"{limits.dim_stride_min}..{limits.dim_stride_max}")
    for k, loop in enumerate(program.loops):
        if not 1 <= loop.iterations <= limits.loop_iterations_max:
            out.append(f"loop {k} iterations {loop.iterations} outside 1..{limits.loop_iterations_max}")
        if not 0 <= loop.begin <= loop.end < len(program.instructions):
            out.append(f"loop {k} spans instructions {loop.begin}..{loop.end}")
    for r, _, _ in program.registers:
        if not 0 <= r < limits.n_registers:
            out.append(f"register R{r} does not exist")
    return out


@dataclass
class ExecutionCounts:
    """How often each instruction runs and how often each one is followed by each other one."""
    per_instruction: tuple[int, ...]
    transitions: dict = field(default_factory=dict)  # (i, j) -> count


def _control_tree(program: Program):
    """Loop nest as a tree: ("i", index) leaves and ("loop", iterations, [children]) nodes."""
    def block(lo: int, hi: int, loops: list[tuple[int, Loop]]):
        items, i = [], lo
        while i <= hi:
            starting = [(k, L) for k, L in loops if L.begin == i]
            if not starting:
                items.append(("i", i))
                i += 1
                continue
            # the outermost loop starting here: the widest, then the lowest index
            k, outer = min(starting, key=lambda kl: (-kl[1].end, kl[0]))
            rest = [(k2, L) for k2, L in loops if k2 != k]
            inner = [(k2, L) for k2, L in rest if i <= L.begin and L.end <= outer.end]
            items.append(("loop", outer.iterations, block(i, outer.end, inner)))
            loops = [kl for kl in rest if kl not in inner]
            i = outer.end + 1
        return items
    return block(0, len(program.instructions) - 1, list(enumerate(program.loops)))


@lru_cache(maxsize=4096)
def execution_counts(program: Program) -> ExecutionCounts:
    n = len(program.instructions)

    def seq(items):
        first = last = None
        counts = [0] * n
        trans: dict = {}
        for item in items:
            f, l, c, t = node(item)
            for i in range(n):
                counts[i] += c[i]
            for key, v in t.items():
                trans[key] = trans.get(key, 0) + v
            if last is not None and f is not None:
                trans[(last, f)] = trans.get((last, f), 0) + 1
            if first is None:
                first = f
            if l is not None:
                last = l
        return first, last, counts, trans

    def node(item):
        if item[0] == "i":
            counts = [0] * n
            counts[item[1]] = 1
            return item[1], item[1], counts, {}
        _, iters, body = item
        f, l, c, t = seq(body)
        trans = {key: v * iters for key, v in t.items()}
        if f is not None and iters > 1:
            trans[(l, f)] = trans.get((l, f), 0) + iters - 1
        return f, l, [v * iters for v in c], trans

    _, _, counts, trans = seq(_control_tree(program))
    return ExecutionCounts(tuple(counts), trans)
