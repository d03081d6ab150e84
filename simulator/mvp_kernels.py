"""Which MVP programs each layer compiles to (first cut: FC only; the MVP program model replaces this)."""
from __future__ import annotations

from dataclasses import dataclass, field

from simulator.graph import Graph, Operator


@dataclass
class LayerPlan:
    supported: bool
    reason: str | None
    kernel: str                                   # e.g. "fully_connected/mvp", "conv_2d/cmsis"
    programs: list = field(default_factory=list)  # [(Program, repeat count)]
    has_mvp_kernel: bool = False


def plan_layer(graph: Graph, op: Operator) -> LayerPlan:
    return LayerPlan(False, "not modelled yet", f"{op.opcode}/cpu")
