"""The nightly regression run: a suite of sweeps and models (`orchestrator.nightly_suite`),
measured tonight and judged against a baseline.

Every night makes new runs in the result table (the sweep runs are named ENTRY.nightly-STAMP), a
snapshot of every metric (baseline.py), the judgement against the baseline, and under
RESULTS/nightly/NIGHT/ the reports of `orchestrator.nightly_report`: report.md, report.html,
junit.xml and trend_FAMILY.png. Exit status: 0 nothing regressed (or --update-baseline accepted
the numbers), 1 something regressed (each regressed metric named on its own line), 2 the suite,
the baseline or the result file is unusable (one line; nothing is run or written).
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import baseline as bl
from orchestrator.nightly_report import write_reports
from orchestrator.nightly_suite import ModelsEntry, NightlyError, Suite, SweepEntry, load_suite
from orchestrator.results_db import DB_NAME, Measurement, ResultsDB
from orchestrator.run_records import CompareError, CorruptResults, run_rows
from orchestrator.versions import tool_versions

EXIT_OK, EXIT_REGRESSED, EXIT_UNUSABLE = 0, 1, 2

# ------------------------------------------------------------------ measuring tonight

@dataclass
class Measured:
    run_ids: dict[str, str]                     # suite entry -> run id
    boards_ran: bool
    notes: list[str] = field(default_factory=list)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def nightly_sweep(entry: SweepEntry, nightly_id: str, stamp: str):
    """The entry's sweep as a fresh run of its own (same sweep, new run id), so that nothing is
    resumed from an earlier night. Its builds still come from the content-addressed cache."""
    sweep = entry.sweep
    return replace(sweep, name=f"{entry.name}.nightly-{stamp}",
                   sha256=hashlib.sha256((sweep.text + nightly_id).encode()).hexdigest())


def run_sweep_entry(entry: SweepEntry, sweep, results_dir: Path, session) -> str:
    from orchestrator import api, fanout
    try:
        result = fanout.run(sweep, results_dir, progress=False, session=session)
    except fanout.SweepError as e:
        raise NightlyError(f"sweep {entry.name}: {e}") from None
    try:
        api.write_report(result.run_id, results_dir)
    except Exception as e:   # noqa: BLE001 - the sweep's own report is a courtesy, not the verdict
        print(f"mvpfarm nightly: note: no sweep report for {result.run_id}: {e}", file=sys.stderr)
    return result.run_id


def run_models_entry(entry: ModelsEntry, suite: Suite, stamp: str, db: ResultsDB) -> str:
    """Profiles the entry's files on its simulator targets here (no TensorFlow, no Ray)."""
    from orchestrator.timing_models import resolve as resolve_timing
    from simulator.errors import ModelError
    from simulator.profiler import profile_file
    run_id = f"{entry.name}.nightly-{stamp}"
    versions = tool_versions()
    db.start_run(run_id, f"{entry.name}.nightly-{stamp}", str(suite.path), suite.sha256, suite.text,
                 "nightly-models", {"files": [str(f) for f in entry.files]}, len(entry.files),
                 len(entry.targets), versions)
    for f in entry.files:
        for t in entry.targets:
            m = Measurement(run_id, f.stem, t.key, "simulator", t.accelerator, t.timing, tool_versions=versions)
            try:
                db.write(m, profile_file(f, accelerator=t.accelerator, timing=resolve_timing(t.timing),
                                         clock_hz=t.clock_hz))
            except ModelError as e:
                db.write(replace(m, error=f"profiler error: {e}"), None)
    db.set_status(run_id, "finished")
    return run_id


def _open_boards(suite: Suite, address: str | None, seed: int):
    """Boards of the cluster (when one is given and has agents), else the suite's virtual boards
    in this process, else None. Returns (a `device_agents.fleet.Fleet`, a note for the report)."""
    from device_agents.fleet import Fleet, NoBoards, cluster_pool, local_fleet
    kind = suite.boards.kind
    if address or os.environ.get("RAY_ADDRESS"):
        from orchestrator import fanout
        fanout.connect(address)
        found = cluster_pool(kind)          # the same lookup a sweep's board target makes
        if found is not None:
            pool, usable = found
            note = f"{len(usable)} board(s) of the cluster"
            return Fleet(kind, pool, note), note
    if suite.boards.virtual:
        k = kind or "brd2601b"
        try:
            fleet = local_fleet(k, suite.boards.virtual, seed, prefix="nightly-vb")
        except NoBoards as e:
            raise NightlyError(f"{suite.path}: boards.kind: {e}") from None
        return fleet, f"{suite.boards.virtual} virtual board(s) ({k})"
    return None, "no boards in the cluster: board metrics not measured tonight"


def measure_on_boards(fleet, entry: ModelsEntry, run_id: str, repeats: int, db: ResultsDB) -> int:
    """Each file `repeats` times on the fleet's boards, one row per measurement (target
    board/KIND#N). Returns how many measurements failed."""
    jobs = []
    for f in entry.files:
        data = f.read_bytes()
        jobs += [(f.stem, i, fleet.pool.submit(f"{run_id}/{f.stem}#{i}", data, f.stem, kind=fleet.kind))
                 for i in range(repeats)]
    failed = 0
    versions = tool_versions()
    for stem, i, future in jobs:
        res = future.result()
        m = Measurement(run_id, stem, f"board/{fleet.kind or 'any'}#{i}", "board", "mvp", "measured",
                        tool_versions=versions)
        if res.record is None:
            failed += 1
            db.write(replace(m, error=res.reason or "not measured"), None)
        else:
            res.record.model.name = stem
            db.write(m, res.record)
    return failed


def measure(suite: Suite, results_dir: Path, nightly_id: str, stamp: str, address: str | None = None,
            num_cpus: int | None = None) -> Measured:
    """Runs every entry of the suite tonight; the runs land in the result table."""
    run_ids, notes = {}, []
    if suite.sweeps:
        from orchestrator import fanout
        sweeps = [nightly_sweep(entry, nightly_id, stamp) for entry in suite.sweeps]
        with fanout.Session(sweeps, address, num_cpus) as session:    # TensorFlow imported once per worker
            for entry, sweep in zip(suite.sweeps, sweeps):
                run_ids[entry.name] = run_sweep_entry(entry, sweep, results_dir, session)
    boards_ran = False
    with ResultsDB(results_dir) as db:
        for entry in suite.models:
            run_ids[entry.name] = run_models_entry(entry, suite, stamp, db)
        board_entries = [e for e in suite.models if e.boards]
        if board_entries:
            seed = int(hashlib.sha256(nightly_id.encode()).hexdigest()[:8], 16)
            fleet, note = _open_boards(suite, address, seed)
            notes.append(f"boards: {note}")
            if fleet is not None:
                try:
                    for entry in board_entries:
                        failed = measure_on_boards(fleet, entry, run_ids[entry.name], suite.boards.repeats, db)
                        if failed:
                            notes.append(f"{entry.name}: {failed} board measurement(s) failed (see the run)")
                    boards_ran = True
                finally:
                    fleet.close()
    return Measured(run_ids, boards_ran, notes)


# ------------------------------------------------------------------ judging and reporting

@dataclass
class NightlyResult:
    nightly_id: str
    status: str
    exit_code: int
    baseline_id: str | None
    run_ids: dict[str, str]
    findings: list[bl.Finding]
    regressed: list[str]                        # metric keys, sorted
    out_dir: Path
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = [f"nightly {self.nightly_id}: {self.status.upper()} against "
                 f"{self.baseline_id or 'no baseline'}; report {self.out_dir / 'report.md'}"]
        lines += [f"REGRESSED {f.describe()}" for f in self.findings if f.status in ("regressed", "missing")]
        return lines


def resolve_baseline(history: bl.History, suite: Suite, results_dir: Path, pinned: str | None,
                     update: bool) -> bl.Night | None:
    """The night (or pinned run) to judge against. Raises NightlyError when there is none."""
    if pinned:
        night = history.get(pinned)
        if night is not None:
            return night
        try:
            run_id, rows = run_rows(results_dir, pinned)
        except CorruptResults:
            raise
        except CompareError:
            raise NightlyError(f"baseline {pinned!r}: no such nightly or run in {history.path}") from None
        info = history.db.run_info(run_id)
        entry = info["name"].split(".nightly-", 1)[0]
        return bl.Night(run_id, suite.name, bl.ACCEPTED, None, {entry: run_id}, info["created_at"],
                        bl.snapshot({entry: rows}))
    night = history.last_passing(suite.name)
    if night is None and not update:
        raise NightlyError(
            f"no baseline for suite {suite.name!r} in {history.path}: no passing nightly yet. Run "
            f"`mvpfarm nightly --suite {suite.path} --update-baseline` once to accept the current numbers")
    return night


def conclude(suite: Suite, results_dir: str | Path, nightly_id: str, measured: Measured,
             base: bl.Night | None, update_baseline: bool = False, created_at: str | None = None) -> NightlyResult:
    """Judges tonight's runs against `base`, records the night, writes the reports."""
    results_dir = Path(results_dir)
    entry_rows = {entry: run_rows(results_dir, run_id)[1] for entry, run_id in measured.run_ids.items()}
    current = bl.snapshot(entry_rows)
    findings = bl.judge(base.metrics if base else {}, current, suite.thresholds, set(measured.run_ids),
                        measured.boards_ran)
    bad = bl.failing(findings)
    regressed = sorted(f.key for f in bad)
    if update_baseline:
        status, code = bl.ACCEPTED, EXIT_OK
    else:
        status, code = (bl.REGRESSED, EXIT_REGRESSED) if bad else (bl.PASSED, EXIT_OK)
    night = bl.Night(nightly_id, suite.name, status, base.nightly_id if base else None, measured.run_ids,
                     created_at or datetime.now(timezone.utc).isoformat(timespec="microseconds"), current)
    out_dir = results_dir / "nightly" / nightly_id
    with bl.History(results_dir) as history:
        history.record(night, str(suite.path), suite.sha256, regressed)
        nights = history.recent(suite.name, suite.trend_nights)
    result = NightlyResult(nightly_id, status, code, night.baseline_id, measured.run_ids, findings, regressed,
                           out_dir, list(measured.notes))
    write_reports(result, suite, nights)
    return result


def run(suite_path: str | Path, results_dir: str | Path = "results", baseline: str | None = None,
        update_baseline: bool = False, address: str | None = None, num_cpus: int | None = None,
        now: datetime | None = None) -> NightlyResult:
    """The whole nightly. Raises NightlyError (exit 2) before running anything when the suite,
    the result file or the baseline is unusable."""
    suite = load_suite(suite_path)
    results_dir = Path(results_dir)
    if not (results_dir / DB_NAME).exists() and not update_baseline:
        # nothing to judge against, and nothing created for it
        raise NightlyError(f"no baseline for suite {suite.name!r}: {results_dir / DB_NAME} does not exist. Run "
                           f"`mvpfarm nightly --suite {suite.path} --update-baseline` once to accept the current "
                           "numbers" if not baseline else f"baseline {baseline!r}: no result table at "
                           f"{results_dir / DB_NAME}")
    try:
        bl.check_readable(results_dir)
        with bl.History(results_dir) as history:
            base = resolve_baseline(history, suite, results_dir, baseline, update_baseline)
            now = now or datetime.now(timezone.utc)
            stamp = _stamp(now)
            nightly_id = f"{suite.name}-{stamp}"
            n = 1
            while history.exists(nightly_id):           # two nights in one second (tests, retries)
                n += 1
                stamp = f"{_stamp(now)}{n}"
                nightly_id = f"{suite.name}-{stamp}"
    except CorruptResults as e:
        raise NightlyError(str(e)) from None
    measured = measure(suite, results_dir, nightly_id, stamp, address, num_cpus)
    try:
        return conclude(suite, results_dir, nightly_id, measured, base, update_baseline,
                        now.isoformat(timespec="microseconds"))
    except CorruptResults as e:
        raise NightlyError(str(e)) from None
