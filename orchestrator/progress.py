"""What a sweep says while it runs, on stderr: a rich progress bar on a terminal; without one (a
log file, CI, cron) one line per finished measurement that starts with its count,

    [7/16] filters=0.5 on simulator mvp, board timing: 18.2 ms, 20.5 kB RAM, 20.1 kB flash

and a line when a long step (Ray's start, the base build, training) starts; nothing with
`--quiet`. The counts (built, measured, not applicable, failed, left) are kept here too.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from orchestrator import units
from orchestrator.results_db import NOT_APPLICABLE
from orchestrator.target_names import target_name
from simulator.record import Summary

MODES = ("bar", "lines", "off")


@dataclass
class Counts:
    total: int = 0          # measurements (variant x target) this run still had to make
    built: int = 0          # variants converted (or found in the build cache)
    profiled: int = 0       # measurements made, on the simulator or on boards
    failed: int = 0
    not_applicable: int = 0  # tips that do not apply to the base: recorded with the reason, not failures
    boards: int = 0         # of the measurements made, those measured on boards
    trained: int = 0        # variants trained (sweeps with [data])
    epochs_done: int = 0    # training epochs finished, over every variant and seed
    epochs_total: int = 0

    @property
    def done(self) -> int:
        return self.profiled + self.failed + self.not_applicable

    @property
    def left(self) -> int:
        return self.total - self.done


def mode(progress: bool | str | None) -> str:
    """`progress` as the API takes it: None (a bar on a terminal, else log lines), True (a bar),
    False (silent), or one of MODES."""
    if progress is None:
        return "bar" if sys.stderr.isatty() else "lines"
    if progress is True:
        return "bar"
    if progress is False:
        return "off"
    if progress not in MODES:
        raise ValueError(f"progress must be one of {', '.join(MODES)}, not {progress!r}")
    return progress


def step(text: str, progress: bool | str | None) -> None:
    """Says that a long step started (`mvpfarm: starting Ray ...`), unless silenced."""
    if mode(progress) != "off":
        print(f"mvpfarm: {text}", file=sys.stderr, flush=True)


class SweepProgress:
    """The sweep's progress in the form `mode(progress)` picks."""

    def __init__(self, counts: Counts, progress: bool | str | None = None, label: str = "sweep"):
        self.counts = counts
        self.mode = mode(progress)
        self.label = label
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.counts.total, detail="")
            self.update()
        return self

    def finished(self, variant: str, target_key: str, summary: Summary | None = None,
                 error: str | None = None, accuracy: dict | None = None) -> None:
        """One measurement has ended: measured (`summary`, the record's) or not (`error`). Call it
        after the counts have been updated."""
        if self.mode != "lines":
            return
        c = self.counts
        where = f"{variant} on {target_name(target_key)}"
        if error:
            what = error.rstrip() if error.startswith(NOT_APPLICABLE) else f"failed: {error}"
        else:
            what = (f"{units.ms(summary.latency_s)}, {units.kb(summary.ram_bytes)} RAM, "
                    f"{units.kb(summary.flash_bytes)} flash")
        if accuracy:        # a sweep with [data]: the emulated accuracy, or why there is none
            what += (f", accuracy {accuracy['accuracy']:.4f}" if accuracy.get("accuracy") is not None
                     else f", no accuracy ({accuracy.get('accuracy_error')})")
        print(f"[{c.done}/{c.total}] {where}: {what}", file=sys.stderr, flush=True)

    def update(self) -> None:
        if self._progress is None:
            return
        c = self.counts
        self._progress.update(self._task, completed=c.done, total=c.total,
                              detail=f"built {c.built}  measured {c.profiled}"
                                     + (f" ({c.boards} on boards)" if c.boards else "")
                                     + (f"  epochs {c.epochs_done}/{c.epochs_total}" if c.epochs_total else "")
                                     + (f"  not applicable {c.not_applicable}" if c.not_applicable else "")
                                     + f"  failed {c.failed}  left {c.left}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self.update()
            self._progress.__exit__(*exc)
