"""TFLite Micro's greedy memory planner: places every live range at an arena offset.

The rules (TFLM memory_planner/greedy_memory_planner.cc):
- sizes are rounded up to the 16-byte arena alignment before planning;
- buffers are taken largest first; the size sort is a stable descending sort of the buffers in
  reverse request order, so among equal sizes the one requested last is placed first;
- the first goes at offset 0; each next one walks the placed buffers in offset order, looking only
  at those whose lifetimes overlap its own (inclusive), and takes the first gap in front of one of
  them that is big enough, else the end of the last one it overlaps;
- a newly placed buffer goes after placed buffers with the same offset in the offset order;
- the planned ("head") size is the largest offset + size.
"""
from __future__ import annotations

from dataclasses import dataclass

from simulator.live_ranges import LiveRange

ARENA_ALIGNMENT_BYTES = 16  # MicroArenaBufferAlignment()


def align_up(n: int, alignment: int = ARENA_ALIGNMENT_BYTES) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass
class MemoryPlan:
    offsets: list[int]          # one per live range, in request order
    sizes_bytes: list[int]      # aligned sizes, in request order
    head_bytes: int             # the planned area: max(offset + size)


def plan_greedy(ranges: list[LiveRange]) -> MemoryPlan:
    sizes = [align_up(r.size_bytes) for r in ranges]
    n = len(ranges)
    if n == 0:
        return MemoryPlan([], [], 0)
    # reverse request order, then a stable sort by size, largest first
    order = sorted(reversed(range(n)), key=lambda i: -sizes[i])
    offsets = [0] * n
    placed: list[int] = [order[0]]          # buffer ids in ascending offset order
    for buffer_id in order[1:]:
        want = ranges[buffer_id]
        size = sizes[buffer_id]
        candidate = 0
        for other in placed:
            if not want.overlaps(ranges[other]):
                continue
            if offsets[other] - candidate >= size:
                break
            candidate = max(candidate, offsets[other] + sizes[other])
        offsets[buffer_id] = candidate
        # insert after every placed buffer whose offset is <= candidate
        pos = len(placed)
        for k, other in enumerate(placed):
            if offsets[other] > candidate:
                pos = k
                break
        placed.insert(pos, buffer_id)
    head = max(o + s for o, s in zip(offsets, sizes))
    return MemoryPlan(offsets, sizes, head)
