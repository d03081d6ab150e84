"""Virtual boards plugged into a Ray node: the actor that owns their pseudo-terminals, as a USB
hub owns its kits (`fleet.py` starts one per run that needs virtual boards)."""
from __future__ import annotations

from device_agents.faults import Faults
from device_agents.firmware import BoardStats
from device_agents.virtual_board import VirtualBoard, emulate


class VirtualBoardHost:
    """Virtual boards plugged into whichever machine (or Ray node) this object lives on; wrap it
    in a Ray actor pinned to a node to give that node boards, as a USB hub would."""

    def __init__(self, count: int, prefix: str, kind: str = "brd2601b", seed: int = 0,
                 time_scale: float = 0.0, faults: list[Faults] | None = None,
                 modes: list[str] | None = None):
        """`modes[i]` is board i's firmware: "protocol" (the default) or "vendor"."""
        self.boards: list[VirtualBoard] = emulate(count, kind, faults, seed, time_scale, modes or "protocol",
                                                  prefix=prefix)

    def ports(self) -> tuple[str | None, list[tuple[str, str]]]:
        """(this Ray node's id, or None outside Ray; [(board id, port)])."""
        try:
            import ray
            node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except ImportError:
            node_id = None
        return node_id, [(b.board_id, b.port) for b in self.boards]

    def modes(self) -> dict[str, str]:
        """Each board's firmware: "protocol" or "vendor"."""
        return {b.board_id: b.mode for b in self.boards}

    def profiles_completed(self) -> dict[str, int]:
        return {b.board_id: b.stats.profiles_completed for b in self.boards}

    def stats(self) -> dict[str, BoardStats]:
        return {b.board_id: b.stats for b in self.boards}

    def stop(self) -> None:
        for b in self.boards:
            b.stop()
