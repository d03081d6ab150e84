"""The sweep's progress bar: variants built, measurements profiled, failed and left."""
from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass
class Counts:
    total: int = 0          # measurements (variant x target) this run still had to make
    built: int = 0          # variants converted (or found in the build cache)
    profiled: int = 0       # measurements made, on the simulator or on boards
    failed: int = 0
    boards: int = 0         # of the measurements made, those measured on boards

    @property
    def left(self) -> int:
        return self.total - self.profiled - self.failed


class SweepProgress:
    """A rich progress bar on a terminal; silent otherwise (logs and CI stay clean)."""

    def __init__(self, counts: Counts, enabled: bool | None = None, label: str = "sweep"):
        self.counts = counts
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._task = None
        self.label = label

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.counts.total, detail="")
            self.update()
        return self

    def update(self) -> None:
        if self._progress is None:
            return
        c = self.counts
        self._progress.update(self._task, completed=c.profiled + c.failed, total=c.total,
                              detail=f"built {c.built}  profiled {c.profiled}"
                                     + (f" ({c.boards} on boards)" if c.boards else "")
                                     + f"  failed {c.failed}  left {c.left}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self.update()
            self._progress.__exit__(*exc)
