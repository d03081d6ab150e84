"""Tensor lifetimes as TFLite Micro's allocation-info builder marks them.

Time is counted in allocation scopes: the subgraph's inputs (and outputs) are created at scope 0,
operator i runs in scope i + 1. An operator's outputs are created in its scope, every tensor it
reads or writes is last used there, and its scratch buffers live in that scope only. The
subgraph's outputs are kept alive to the last scope. Only tensors the planner places get a
range: no constant data, not a variable, non-zero size.
"""
from __future__ import annotations

from dataclasses import dataclass

from simulator.graph import Graph

UNSET = -1  # TFLM's "uninitialized lifetime"


@dataclass(frozen=True)
class LiveRange:
    """One buffer the planner must place: a tensor (tensor_index >= 0) or a kernel's scratch buffer."""
    size_bytes: int
    first_scope: int
    last_scope: int
    tensor_index: int = -1     # -1 for a scratch buffer
    op_index: int = -1         # the operator that requested a scratch buffer

    def overlaps(self, other: LiveRange) -> bool:
        """Inclusive overlap in time, as the greedy planner tests it."""
        return not (other.first_scope > self.last_scope or self.first_scope > other.last_scope)


def needs_planning(graph: Graph, index: int) -> bool:
    t = graph.tensors[index]
    return t.data is None and not t.is_variable and t.size_bytes > 0


def tensor_live_ranges(graph: Graph) -> dict[int, tuple[int, int]]:
    """(first_scope, last_scope) for every tensor index that appears in the graph's dataflow."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def created(i: int, scope: int) -> None:
        first[i] = scope
        last[i] = scope

    for i in graph.inputs:
        created(i, 0)
    for i in graph.outputs:
        created(i, 0)
    scope = 0
    for op in graph.operators:
        scope += 1
        for i in op.outputs:
            if i >= 0:
                created(i, scope)
        for i in list(op.inputs) + list(op.outputs):
            if i >= 0:
                last[i] = scope
    for i in graph.outputs:
        last[i] = scope
    return {i: (first.get(i, UNSET), last[i]) for i in last}


def plan_requests(graph: Graph, scratch_bytes_per_op: list[list[int]]) -> list[LiveRange]:
    """The buffers in the order TFLM hands them to the planner: planned tensors by index, then
    scratch buffers in request order (operator order, then each kernel's own order)."""
    ranges = tensor_live_ranges(graph)
    out: list[LiveRange] = []
    for index in range(len(graph.tensors)):
        if not needs_planning(graph, index):
            continue
        first, last = ranges.get(index, (UNSET, UNSET))
        out.append(LiveRange(graph.tensors[index].size_bytes, first, last, tensor_index=index))
    for op_index, sizes in enumerate(scratch_bytes_per_op):
        for size in sizes:
            out.append(LiveRange(size, op_index + 1, op_index + 1, op_index=op_index))
    return out
