"""`LayerPlan`: what the MVP does with one layer, as plain data.

The vendor's verdict (supported, and why not), the kernel path that runs the layer, the programs it
launches as (Program, repeat count) pairs, how to expand them into every launch with exact offsets,
and the CPU work around them. Every planner of this package returns one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from simulator.mvp_program import Program


@dataclass
class LayerPlan:
    supported: bool                  # the vendor's MVP kernels accept the layer (no rejection logged)
    reason: str | None               # why not, in the vendor's words where it has them
    kernel: str                      # e.g. "conv_2d/mvp", "depthwise_conv_2d/mvp-opt", "softmax/cpu"
    programs: list = field(default_factory=list)  # [(Program, repeat count)], empty when on the CPU
    has_mvp_kernel: bool = True      # the SDK has an MVP kernel for this operator
    runs_on_mvp: bool = False        # programs are launched (True also for the vendor quirks above)
    note: str | None = None          # more detail for a user (e.g. the vendor quirk at play)
    expand: Callable[[], Iterator[Program]] | None = field(default=None, repr=False)
    # what the kernel does on the CPU around its programs, as data the emulator executes:
    # {"op": "clamp", "start", "count", "min", "max"}, {"op": "odd_element", ...},
    # {"op": "conv1d_column", "out_x", ...}
    cpu_work: tuple = ()
    scratch_bytes: int = 0           # the fp16 scratch buffer the programs address (conv, transpose conv)
    limit: str | None = None         # the specific limit behind `reason`, in words, with the numbers

    @classmethod
    def refused(cls, refusal, kernel: str) -> "LayerPlan":
        """A layer a registered check refused (`mvp_checks.Refusal`): it runs on a CPU kernel."""
        return cls(False, refusal.reason, kernel, limit=refusal.limit)

    @property
    def n_programs(self) -> int:
        return sum(n for _, n in self.programs)

    def launches(self) -> Iterator[Program]:
        """Every program launch in execution order, with exact offsets (for the emulator)."""
        if self.expand is not None:
            yield from self.expand()
        else:
            for program, n in self.programs:
                for _ in range(n):
                    yield program
