"""The scriptable Python API; the CLI is a thin layer over it.

    from orchestrator import api
    run_id = api.run_sweep("examples/kws-tips.toml")            # local Ray on 127.0.0.1
    rows = api.rank(run_id)                                    # list of dicts, best first
    api.export(run_id, "csv")                                  # results/<run>/measurements.csv
    results = api.run_sweeps(["a.toml", "b.toml"])             # one Ray for both: TensorFlow imported once
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from orchestrator import sweep_file
from orchestrator.results_db import EXPORT_FORMATS, ResultsDB

DEFAULT_RESULTS = "results"


def load_sweep(path: str | Path) -> sweep_file.Sweep:
    """Reads and checks a sweep file; raises SweepFileError (one line) before any work."""
    return sweep_file.load(path)


def run_sweep(path: str | Path, results_dir: str | Path = DEFAULT_RESULTS, address: str | None = None,
              num_cpus: int | None = None, progress: bool | str | None = None, report: bool = True,
              cache_dir: str | Path | None = None, retry_failed: bool = False):
    """Runs (or resumes) the sweep in `path`; returns the `fanout.RunResult` (`.run_id`)."""
    return run_sweeps([path], results_dir, address, num_cpus, progress, report, cache_dir, retry_failed)[0]


def run_sweeps(sweeps: list, results_dir: str | Path = DEFAULT_RESULTS, address: str | None = None,
               num_cpus: int | None = None, progress: bool | str | None = None, report: bool = True,
               cache_dir: str | Path | None = None, retry_failed: bool = False,
               on_result: Callable | None = None, verbose: bool = False) -> list:
    """Runs (or resumes) several sweeps, given as files or loaded `Sweep`s, one after another on
    one Ray connection (`fanout.Session`): the later sweeps reuse build workers that have already
    imported TensorFlow. Every file is checked before any work starts. `on_result` is called with
    each sweep's `fanout.RunResult` as it ends; returns them all. `progress`: None (a bar on a
    terminal, else a log line per measurement on stderr), True (a bar), "lines", or False (silent);
    `verbose` lets Ray's own banners and warnings through."""
    sweeps = [s if isinstance(s, sweep_file.Sweep) else load_sweep(s) for s in sweeps]
    from orchestrator import fanout
    out = []
    with fanout.Session(sweeps, address=address, num_cpus=num_cpus, progress=progress,
                        verbose=verbose) as session:
        for sweep in sweeps:
            out.append(fanout.run(sweep, results_dir, progress=progress, cache_dir=cache_dir,
                                  retry_failed=retry_failed, session=session))
            if report:
                write_report(out[-1].run_id, results_dir)
            if on_result is not None:
                on_result(out[-1])
    return out


def rank(run: str = "latest", results_dir: str | Path = DEFAULT_RESULTS, objective: str | None = None,
         weights: dict | None = None, **bounds):
    """The run's tip ranking (`ranking.Ranking`). `objective=None`: the decision rule for a run
    with accuracy, latency otherwise. `bounds` (max_ram_bytes, max_latency_ms, max_flash_bytes,
    min_accuracy, max_accuracy_drop_pts) replace the sweep file's `[constraints]`."""
    from orchestrator import ranking
    with ResultsDB(results_dir, readonly=True) as db:
        run_id = db.resolve_run(run)
        from orchestrator.constraints import of_run
        given = {k: v for k, v in bounds.items() if v is not None}
        return ranking.rank(db.measurements(run_id), objective=objective, weights=weights, run_id=run_id,
                            constraints=of_run(db.run_info(run_id)).override(**given),
                            refused=ranking.refused_in_run(db, run_id))


def export(run: str = "latest", fmt: str = "csv", results_dir: str | Path = DEFAULT_RESULTS,
           out: str | Path | None = None) -> Path:
    """Writes the run's table (default: results/<run>/measurements.<fmt>); returns the path."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    with ResultsDB(results_dir, readonly=True) as db:
        run_id = db.resolve_run(run)
        out = Path(out) if out else Path(results_dir) / run_id / f"measurements.{fmt}"
        return db.export(run_id, fmt, out)


def runs(results_dir: str | Path = DEFAULT_RESULTS) -> list[dict]:
    """Every run (`status`: running, finished, failed, or interrupted when its driver is gone)."""
    with ResultsDB(results_dir, readonly=True) as db:
        return db.runs()


def write_report(run: str = "latest", results_dir: str | Path = DEFAULT_RESULTS,
                 objective: str | None = None) -> Path:
    """Markdown + HTML report with PNG plots under results/<run>/; returns the Markdown path."""
    from orchestrator import report
    with ResultsDB(results_dir, readonly=True) as db:
        run_id = db.resolve_run(run)
        return report.write(db, run_id, Path(results_dir) / run_id, objective=objective)
