"""The records of runs in the result table, as comparisons, calibrations and nightly judgements
read them: every measurement row of a run with its profile record, one side of a comparison
from a run (repeated measurements reduced to their median), and a run's .tflite files. Read-only;
the SQL itself lives in `orchestrator.results_db`.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from orchestrator.compare import DEFAULT_SIM_TARGET, DEVICE, CompareError
from simulator.record import ProfileRecord


@dataclass
class RunRow:
    variant: str
    target: str
    source: str | None
    status: str
    error: str | None
    record: ProfileRecord | None            # parsed once, here


class CorruptResults(CompareError):
    """The result file (database or a stored record) cannot be read."""


def run_rows(results_dir: str | Path, run: str) -> tuple[str, list[RunRow]]:
    """(run id, every measurement row of the run). Raises CompareError (unknown run) or
    CorruptResults (a damaged database or record), one line each."""
    from orchestrator.results_db import DB_NAME, ResultsDB, RunNotFound
    path = Path(results_dir) / DB_NAME
    if not path.is_file():
        raise CompareError(f"no result table at {path}")
    try:
        with ResultsDB(results_dir, readonly=True) as db:
            run_id = db.resolve_run(run)
            raw = db.measurement_rows(run_id)
    except RunNotFound as e:
        raise CompareError(str(e)) from None
    except sqlite3.DatabaseError as e:
        raise CorruptResults(f"{path}: corrupt result file: {e}") from None
    rows = []
    for r in raw:
        rec = None
        if r["record_json"] is not None:
            try:
                rec = ProfileRecord.from_json(r["record_json"])
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise CorruptResults(f"{path}: corrupt record for run {run_id}, variant {r['variant']}, target "
                                     f"{r['target']}: {type(e).__name__}: {e}") from None
        rows.append(RunRow(r["variant"], r["target"], r["source"], r["status"], r["error"], rec))
    return run_id, rows


def target_group(target: str) -> str:
    """Repeated measurements of one target are stored as TARGET#N (see nightly): their group."""
    return target.split("#", 1)[0]


def median_record(records: list[ProfileRecord]) -> ProfileRecord:
    """One record from repeated measurements of one model: the median of each cycle count."""
    import statistics
    from dataclasses import replace
    first = records[0]
    if len(records) == 1:
        return first
    layers = []
    for i, L in enumerate(first.layers):
        acc = int(statistics.median(r.layers[i].accelerator_cycles for r in records))
        cpu = int(statistics.median(r.layers[i].cpu_cycles for r in records))
        lat = float(statistics.median(r.layers[i].latency_s for r in records))
        layers.append(replace(L, accelerator_cycles=acc, cpu_cycles=cpu, latency_s=lat))
    return replace(first, layers=layers, summary=first.summary.retimed(layers))


def records_from_run(results_dir: str | Path, run: str, measured: bool,
                     target: str | None = None) -> dict[str, ProfileRecord]:
    """The simulated (measured=False) or device (measured=True) records of a run, by variant.
    With several targets of that kind, `target` chooses one; the simulated side defaults to
    simulator/mvp/board when the run has it, else a one-line error lists them."""
    run_id, rows = run_rows(results_dir, run)
    rows = [r for r in rows if r.record is not None and (r.source == DEVICE) == measured]
    kind = "device" if measured else "simulated"
    groups = sorted({target_group(r.target) for r in rows})
    if not groups:
        raise CompareError(f"run {run_id} has no {kind} measurements")
    if target is None and not measured and DEFAULT_SIM_TARGET in groups:
        target = DEFAULT_SIM_TARGET         # the simulator's prediction of what a board measures
    if target is None:
        if len(groups) > 1:
            raise CompareError(f"run {run_id} has several {kind} targets ({', '.join(groups)}): choose one")
        target = groups[0]
    elif target not in groups:
        raise CompareError(f"run {run_id} has no {kind} target {target!r} (it has: {', '.join(groups)})")
    by_variant: dict[str, list[ProfileRecord]] = {}
    for r in rows:
        if target_group(r.target) == target:
            rec = r.record
            rec.model.name = r.variant          # the run's name for it, whoever measured it
            by_variant.setdefault(r.variant, []).append(rec)
    return {v: median_record(recs) for v, recs in by_variant.items()}


def run_model_files(results_dir: str | Path, run: str, into: str | Path) -> Path:
    """The .tflite of each variant of a run, as INTO/VARIANT.tflite (for calibration, which
    pairs records and models by name): from the files a nightly models entry lists, else from the
    sweep's content-addressed build cache (RESULTS/cache/tflite/CONFIG_SHA256.tflite)."""
    from orchestrator.results_db import ResultsDB
    run_id, _ = run_rows(results_dir, run)
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    with ResultsDB(results_dir, readonly=True) as db:
        base = json.loads(db.run_info(run_id)["base_json"] or "{}")
        rows = db.variant_builds(run_id)
    listed = {Path(f).stem: Path(f) for f in base.get("files", [])}
    for variant, key in rows:
        src = listed.get(variant) or (Path(results_dir) / "cache" / "tflite" / f"{key}.tflite" if key else None)
        if src is not None and src.is_file():
            (into / f"{variant}.tflite").write_bytes(src.read_bytes())
    return into
