"""How a target is named to people: the one function the terminal, the report and the export use.

The result table keys a target as `simulator/<accelerator>/<timing>` or
`board/<kind>/<accelerator>` (stable across runs, see `sweep_file.TargetSpec.key`); a reader
took `simulator/mvp/board` for a board. The name says what the target is:
`simulator mvp, board timing` (the simulator, predicting a board's timing) and
`board brd2601b mvp` (a measurement on a dev board).
"""
from __future__ import annotations

_ACCELERATOR_WORDS = {"mvp": "mvp", "none": "no MVP"}


def target_name(key: str) -> str:
    """The name of the target with result-table key `key`; an unknown form is shown as it is."""
    parts = str(key).split("/")
    if len(parts) == 3 and parts[0] == "simulator":
        _, accelerator, timing = parts
        return f"simulator {_ACCELERATOR_WORDS.get(accelerator, accelerator)}, {timing} timing"
    if len(parts) == 3 and parts[0] == "board":
        _, kind, accelerator = parts
        return f"board {kind} {_ACCELERATOR_WORDS.get(accelerator, accelerator)}"
    if len(parts) == 2 and parts[0] == "board":     # a nightly suite's board target: board/KIND
        return f"board {parts[1]}"
    return str(key)
