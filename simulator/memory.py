"""The TFLM tensor arena (first cut: sum of activation tensors; the arena planner replaces this)."""
from __future__ import annotations

from dataclasses import dataclass

from simulator.graph import Graph


@dataclass
class ArenaPlan:
    ram_bytes: int
    planned_bytes: int
    persistent_bytes: int
    per_layer_bytes: list[int]


def plan_arena(graph: Graph, on_mvp: list[bool]) -> ArenaPlan:
    planned = sum(t.size_bytes for t in graph.tensors if t.data is None)
    return ArenaPlan(planned, planned, 0, [0] * len(graph.operators))
