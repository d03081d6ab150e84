"""One compiled layer of an emulated model: the `Step` the emulator runs.

A step reads and writes the tensor value list of one inference batch: every activation carries a
leading batch axis (of the batch's size, or 1 for constants, which broadcast). Both halves of
the emulator produce steps, the reference kernels (`reference_ops`) and the MVP program
interpreter (`mvp_exec`), so neither has to import the emulator's API module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Step:
    index: int
    opcode: str
    kernel: str                       # "reference" or "mvp"
    run: Callable[[list], None]       # reads/writes the tensor value list
    info: dict = field(default_factory=dict)
    mvp: object = None                # mvp_exec.MvpLayer when the layer runs MVP programs
