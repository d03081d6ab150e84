"""The nightly regression run: a suite of sweeps and models, measured tonight and judged against
a baseline.

    name = "nightly"
    [[sweeps]]                                  # sweep files, run as they are (fresh runs each night)
    file = "kws-small.toml"
    [[models]]                                  # .tflite files profiled on the simulator targets,
    name = "zoo"                                # and measured on boards with boards = true
    files = ["../tests/data/zoo/keyword_spotting.tflite"]
    targets = [{ accelerator = "mvp", timing = "board" }]
    boards = true
    [boards]
    kind = "brd2601b"                           # any kind if left out
    repeats = 3                                 # measurements per model: the noise estimate
    virtual = 2                                 # virtual boards to use when the cluster has none
    [thresholds]                                # measured metrics: max(min_change x baseline, k_sigma x noise)
    "device.latency_s" = { min_change = 0.01, k_sigma = 5 }
    [trend]
    nights = 14

Paths are relative to the suite file. Every night makes new runs in the result table (the sweep
runs are named ENTRY.nightly-STAMP), a snapshot of every metric (baseline.py), the judgement
against the baseline, and under RESULTS/nightly/NIGHT/: report.md, report.html, junit.xml and
trend_METRIC.png. Exit status: 0 nothing regressed (or --update-baseline accepted the numbers),
1 something regressed (each regressed metric named on its own line), 2 the suite, the baseline
or the result file is unusable (one line; nothing is run or written).
"""
from __future__ import annotations

import glob
import hashlib
import html
import json
import os
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import baseline as bl
from orchestrator.compare import CompareError, CorruptResults, html_page, html_table, md_table, run_rows
from orchestrator.results_db import DB_NAME, ResultsDB
from orchestrator.sweep_file import ACCELERATORS, SweepFileError, TargetSpec
from orchestrator.sweep_file import parse as parse_sweep
from simulator.hardware import CLOCK_HZ

EXIT_OK, EXIT_REGRESSED, EXIT_UNUSABLE = 0, 1, 2
TREND_NIGHTS = 14
_TOP_KEYS = ("name", "sweeps", "models", "boards", "thresholds", "trend")


class NightlyError(Exception):
    """The nightly cannot run or judge; one line for the user, exit status 2."""


# ------------------------------------------------------------------ the suite file

@dataclass
class ModelsEntry:
    name: str
    files: list[Path]
    targets: list[TargetSpec]
    boards: bool = False


@dataclass
class SweepEntry:
    name: str
    path: Path
    text: str
    data: dict


@dataclass
class BoardsSpec:
    kind: str | None = None
    repeats: int = 3
    virtual: int = 0


@dataclass
class Suite:
    name: str
    path: Path
    sha256: str
    text: str
    sweeps: list[SweepEntry] = field(default_factory=list)
    models: list[ModelsEntry] = field(default_factory=list)
    boards: BoardsSpec = field(default_factory=BoardsSpec)
    thresholds: dict = field(default_factory=dict)
    trend_nights: int = TREND_NIGHTS

    @property
    def entries(self) -> list[str]:
        return [e.name for e in self.sweeps] + [e.name for e in self.models]


def load_suite(path: str | Path) -> Suite:
    """Reads and checks a suite file; raises NightlyError naming the file and the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except OSError as e:
        raise NightlyError(f"{path}: cannot read the suite file ({e.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise NightlyError(f"{path}: not valid TOML: {e}") from None

    def fail(key: str, problem: str):
        raise NightlyError(f"{path}: {key}: {problem}")

    for key in data:
        if key not in _TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_.-" for c in name):
        fail("name", f"{name!r} is not a name (letters, digits, '.', '_', '-')")
    suite = Suite(name, path, hashlib.sha256(raw).hexdigest(), text)
    folder = path.parent
    seen: set[str] = set()

    def entry_name(where: str, value, default: str) -> str:
        n = value if value is not None else default
        if not isinstance(n, str) or not n or not all(c.isalnum() or c in "_-" for c in n):
            fail(f"{where}.name", f"{n!r} is not a name (letters, digits, '_', '-')")
        if n in seen:
            fail(f"{where}.name", f"{n!r} is used twice")
        seen.add(n)
        return n

    for i, s in enumerate(_tables(data.get("sweeps", []), "sweeps", fail)):
        where = f"sweeps[{i}]"
        for k in s:
            if k not in ("file", "name"):
                fail(f"{where}.{k}", "unknown key (known: file, name)")
        if not isinstance(s.get("file"), str):
            fail(f"{where}.file", "missing: the sweep file to run")
        sweep_path = (folder / s["file"]).resolve()
        try:
            sweep_text = sweep_path.read_text()
            sweep_data = tomllib.loads(sweep_text)
            checked = parse_sweep(sweep_data, sweep_path, sweep_text, "0" * 64)  # checked before any work
        except OSError as e:
            fail(f"{where}.file", f"cannot read {sweep_path} ({e.strerror})")
        except tomllib.TOMLDecodeError as e:
            fail(f"{where}.file", f"{sweep_path} is not valid TOML: {e}")
        except SweepFileError as e:
            raise NightlyError(f"{path}: {where}: {e}") from None
        suite.sweeps.append(SweepEntry(entry_name(where, s.get("name"), checked.name.replace(".", "-")),
                                       sweep_path, sweep_text, sweep_data))

    for i, m in enumerate(_tables(data.get("models", []), "models", fail)):
        where = f"models[{i}]"
        for k in m:
            if k not in ("name", "files", "targets", "boards"):
                fail(f"{where}.{k}", "unknown key (known: name, files, targets, boards)")
        patterns = m.get("files")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            fail(f"{where}.files", "must be a list of .tflite files or glob patterns")
        files: list[Path] = []
        for pat in patterns:
            hits = sorted(Path(p) for p in glob.glob(str(folder / pat)))
            if not hits:
                fail(f"{where}.files", f"{pat!r} matches no file (relative to {folder})")
            files += [h.resolve() for h in hits if h.is_file()]
        stems = [f.stem for f in files]
        if len(set(stems)) != len(stems):
            fail(f"{where}.files", "two files have the same name; models are known by name")
        targets = []
        for j, t in enumerate(_tables(m.get("targets", [{}]), f"{where}.targets", fail)):
            tw = f"{where}.targets[{j}]"
            for k in t:
                if k not in ("accelerator", "timing", "clock_hz"):
                    fail(f"{tw}.{k}", "unknown key (known: accelerator, timing, clock_hz)")
            acc, timing = t.get("accelerator", "mvp"), t.get("timing", "board")
            if acc not in ACCELERATORS:
                fail(f"{tw}.accelerator", f"{acc!r} is not one of {', '.join(ACCELERATORS)}")
            problem = _timing_problem(timing)
            if problem:
                fail(f"{tw}.timing", problem)
            clock = t.get("clock_hz", CLOCK_HZ)
            if isinstance(clock, bool) or not isinstance(clock, int) or clock <= 0:
                fail(f"{tw}.clock_hz", f"{clock!r} is not a positive whole number of Hz")
            targets.append(TargetSpec("simulator", acc, timing, clock))
        boards = m.get("boards", False)
        if not isinstance(boards, bool):
            fail(f"{where}.boards", "must be true or false")
        suite.models.append(ModelsEntry(entry_name(where, m.get("name"), f"models{i}"), files, targets, boards))

    b = data.get("boards", {})
    if not isinstance(b, dict):
        fail("boards", "must be a table")
    for k in b:
        if k not in ("kind", "repeats", "virtual"):
            fail(f"boards.{k}", "unknown key (known: kind, repeats, virtual)")
    repeats, virtual = b.get("repeats", 3), b.get("virtual", 0)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        fail("boards.repeats", f"{repeats!r} is not a whole number from 1 to 100")
    if isinstance(virtual, bool) or not isinstance(virtual, int) or not 0 <= virtual <= 16:
        fail("boards.virtual", f"{virtual!r} is not a whole number from 0 to 16")
    kind = b.get("kind")
    if kind is not None and not isinstance(kind, str):
        fail("boards.kind", "must be a board kind, e.g. \"brd2601b\"")
    suite.boards = BoardsSpec(kind, repeats, virtual)

    th = data.get("thresholds", {})
    if not isinstance(th, dict):
        fail("thresholds", "must be a table")
    for key, value in th.items():
        kind_name = key.split(".", 1)[0]
        if kind_name not in bl.DEFAULT_THRESHOLDS:
            fail(f"thresholds.{key}", "must be device.METRIC or simulator.METRIC (or device / simulator)")
        if not isinstance(value, dict) or any(k not in ("min_change", "k_sigma") for k in value):
            fail(f"thresholds.{key}", "must be a table of min_change (a fraction) and k_sigma")
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                fail(f"thresholds.{key}.{k}", f"{v!r} is not a number >= 0")
    suite.thresholds = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in th.items()}
    trend = data.get("trend", {})
    nights = trend.get("nights", TREND_NIGHTS) if isinstance(trend, dict) else None
    if isinstance(nights, bool) or not isinstance(nights, int) or nights < 2:
        fail("trend.nights", f"{nights!r} is not a whole number >= 2")
    suite.trend_nights = nights
    if not suite.sweeps and not any(m.files for m in suite.models):
        raise NightlyError(f"{path}: empty suite: no [[sweeps]] and no [[models]] files to measure")
    return suite


def _timing_problem(name) -> str | None:
    from simulator.errors import ModelError
    from orchestrator.timing_models import load as load_timing_model
    if not isinstance(name, str):
        return f"{name!r} is not a timing model name"
    try:
        load_timing_model(name)
    except ModelError as e:
        return str(e)
    return None


def _tables(value, key: str, fail) -> list[dict]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        fail(key, "must be one or more tables")
    return value


# ------------------------------------------------------------------ measuring tonight

@dataclass
class Measured:
    run_ids: dict[str, str]                     # suite entry -> run id
    boards_ran: bool
    notes: list[str] = field(default_factory=list)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _tool_versions() -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for dist in ("mvpfarm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def nightly_sweep(entry: SweepEntry, nightly_id: str, stamp: str):
    """The entry's sweep as a fresh run of its own (same sweep, new run id), so that nothing is
    resumed from an earlier night. Its builds still come from the content-addressed cache."""
    data = dict(entry.data)
    data["name"] = f"{entry.name}.nightly-{stamp}"
    return parse_sweep(data, entry.path, entry.text, hashlib.sha256((entry.text + nightly_id).encode()).hexdigest())


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
    from simulator.errors import ModelError
    from orchestrator.timing_models import resolve as resolve_timing
    from simulator.profiler import profile_file
    run_id = f"{entry.name}.nightly-{stamp}"
    db.start_run(run_id, f"{entry.name}.nightly-{stamp}", str(suite.path), suite.sha256, suite.text,
                 "nightly-models", {"files": [str(f) for f in entry.files]}, len(entry.files),
                 len(entry.targets), _tool_versions())
    for f in entry.files:
        for t in entry.targets:
            row = _row(run_id, f.stem, t.key, "simulator", t.accelerator, t.timing)
            try:
                rec = profile_file(f, accelerator=t.accelerator, timing=resolve_timing(t.timing), clock_hz=t.clock_hz)
                db.write(row, rec.to_dict())
            except ModelError as e:
                db.write({**row, "status": "failed", "error": f"profiler error: {e}"}, None)
    db.set_status(run_id, "finished")
    return run_id


def _row(run_id, variant, target, kind, accelerator, timing) -> dict:
    return {"run_id": run_id, "variant": variant, "tip": "none", "level": "", "levels_json": "{}",
            "target": target, "target_kind": kind, "accelerator": accelerator, "timing": timing,
            "status": "measured", "error": None, "tool_versions_json": json.dumps(_tool_versions())}


class LocalBoards:
    """Virtual boards on this machine with an agent each, no Ray: for a nightly on a machine
    (or CI runner) without hardware, when the cluster offers no boards."""

    def __init__(self, count: int, kind: str, seed: int, silicon=None):
        import tempfile

        from device_agents.agent import AgentConfig, BoardAgent
        from device_agents.virtual_board import VirtualBoard
        self._lock_dir = tempfile.TemporaryDirectory(prefix="mvpfarm-nightly-locks-")
        self.boards = [VirtualBoard(kind, f"nightly-vb-{i}", seed=seed + i, silicon=silicon).start()
                       for i in range(count)]
        self.agents = [BoardAgent(b.port, AgentConfig(lock_dir=self._lock_dir.name)) for b in self.boards]
        self.kind = kind

    def measure(self, jobs: list[tuple[str, bytes, str]]):
        """[(job id, .tflite bytes, name)] -> [(job id, record or None, reason or None)], in order;
        a job a board hands back goes to the next board."""
        from device_agents.agent import MEASURED, RETRY_ELSEWHERE
        out = []
        for n, (job_id, data, name) in enumerate(jobs):
            reasons = []
            for k in range(len(self.agents)):
                outcome = self.agents[(n + k) % len(self.agents)].run_job(job_id, data, name)
                if outcome.status == MEASURED:
                    out.append((job_id, outcome.record, None))
                    break
                reasons.append(f"{outcome.board_id}: {outcome.reason}")
                if outcome.status != RETRY_ELSEWHERE:
                    break
            if len(out) <= n:       # no board measured it
                out.append((job_id, None, " | ".join(reasons)))
        return out

    def close(self) -> None:
        for a in self.agents:
            a.close()
        for b in self.boards:
            b.stop()
        self._lock_dir.cleanup()


class _ClusterBoards:
    def __init__(self, pool, kind: str | None):
        self.pool, self.kind = pool, kind

    def measure(self, jobs):
        futures = [(job_id, self.pool.submit(job_id, data, name, kind=self.kind)) for job_id, data, name in jobs]
        out = []
        for job_id, fut in futures:
            r = fut.result()
            out.append((job_id, r.record, r.reason))
        return out

    def close(self) -> None:
        self.pool.close()


def _open_boards(suite: Suite, address: str | None, seed: int):
    """Boards of the cluster (when one is given and has agents), else the suite's virtual boards,
    else None. Returns (boards, a note for the report)."""
    kind = suite.boards.kind
    if address or os.environ.get("RAY_ADDRESS"):
        from device_agents.fleet import cluster_pool
        from orchestrator import fanout
        fanout.connect(address)
        found = cluster_pool(kind)          # the same lookup a sweep's board target makes
        if found is not None:
            pool, usable = found
            return _ClusterBoards(pool, kind), f"{len(usable)} board(s) of the cluster"
    if suite.boards.virtual:
        from device_agents.board_kinds import BOARD_KINDS
        k = kind or "brd2601b"
        if k not in BOARD_KINDS:
            raise NightlyError(f"{suite.path}: boards.kind: no virtual board of kind {k!r} "
                               f"(known: {', '.join(BOARD_KINDS)})")
        return LocalBoards(suite.boards.virtual, k, seed), f"{suite.boards.virtual} virtual board(s) ({k})"
    return None, "no boards in the cluster: board metrics not measured tonight"


def measure_on_boards(boards, entry: ModelsEntry, run_id: str, repeats: int, db: ResultsDB) -> int:
    """Each file `repeats` times, one row per measurement (target board/KIND#N). Returns how many
    measurements failed."""
    jobs, meta = [], []
    for f in entry.files:
        data = f.read_bytes()
        for i in range(repeats):
            jobs.append((f"{run_id}/{f.stem}#{i}", data, f.stem))
            meta.append((f.stem, i))
    failed = 0
    kind = boards.kind or "any"
    for (stem, i), (_, record, reason) in zip(meta, boards.measure(jobs)):
        row = _row(run_id, stem, f"board/{kind}#{i}", "board", "mvp", "measured")
        if record is None:
            failed += 1
            db.write({**row, "status": "failed", "error": reason or "not measured"}, None)
        else:
            record.model.name = stem
            db.write(row, record.to_dict())
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
            boards, note = _open_boards(suite, address, seed)
            notes.append(f"boards: {note}")
            if boards is not None:
                try:
                    for entry in board_entries:
                        failed = measure_on_boards(boards, entry, run_ids[entry.name], suite.boards.repeats, db)
                        if failed:
                            notes.append(f"{entry.name}: {failed} board measurement(s) failed (see the run)")
                    boards_ran = True
                finally:
                    boards.close()
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


# -- reports ------------------------------------------------------------------------------------

def _finding_row(f: bl.Finding) -> list:
    return [f.key, f.status, bl.fmt_value(f.baseline) if f.baseline is not None else "",
            bl.fmt_value(f.current) if f.current is not None else "",
            "" if f.change is None else f"{f.change:+.6g}", "" if f.change_pct is None else f"{f.change_pct:+.2f}%",
            "" if f.threshold is None else f"{f.threshold:.4g}", "" if not f.noise else f"{f.noise:.4g}", f.why]


FINDING_HEAD = ["metric", "status", "baseline", "tonight", "change", "change %", "allowed", "noise", "why"]


def write_reports(result: NightlyResult, suite: Suite, nights: list[bl.Night]) -> None:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    images = plot_trends(nights, out)
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    meta = [["suite", f"{suite.name} ({suite.path})"], ["night", result.nightly_id],
            ["verdict", result.status], ["baseline", result.baseline_id or "none (numbers accepted)"],
            ["runs", ", ".join(f"{k}: {v}" for k, v in result.run_ids.items())],
            ["metrics", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]] + \
        [["note", n] for n in result.notes]
    bad = [f for f in result.findings if f.status in ("regressed", "missing")]
    watch = [f for f in result.findings if f.status == "ok" and f.noise]   # measured: how close they came
    watch = sorted(watch, key=lambda f: -abs(f.change or 0) / (f.threshold or 1))[:20]
    other = [f for f in result.findings if f.status in ("new", "not run")][:200]
    sections = [("Night", ["", ""], [list(r) for r in meta]),
                ("Regressed", FINDING_HEAD, [_finding_row(f) for f in bad]),
                ("Measured metrics closest to their threshold", FINDING_HEAD, [_finding_row(f) for f in watch]),
                ("New or not run tonight (at most 200)", FINDING_HEAD, [_finding_row(f) for f in other])]
    md = [f"# mvpfarm nightly {result.nightly_id}: {result.status}", ""]
    body = [f"<h1>mvpfarm nightly {html.escape(result.nightly_id)}: {html.escape(result.status)}</h1>"]
    for title, head, rows in sections:
        md += [f"## {title}", "", md_table(head, rows) if rows else "(none)", ""]
        body += [f"<h2>{html.escape(title)}</h2>",
                 html_table(head, rows, row_class=lambda r: "bad" if r[1] in ("regressed", "missing") else "")
                 if rows else "<p>(none)</p>"]
    if images:
        md += ["## Trends (change against each series' first night shown, %)", ""] + \
              [f"![{p.stem}]({p.name})" for p in images] + [""]
        body += ["<h2>Trends</h2>"] + [f'<p><img src="{p.name}" alt="{html.escape(p.stem)}"></p>' for p in images]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text(html_page(f"nightly {result.nightly_id}", body))
    write_junit(result, suite, out / "junit.xml")


def write_junit(result: NightlyResult, suite: Suite, path: Path) -> Path:
    """One test case per series (entry, variant, target); a failure names its regressed metrics."""
    by_series: dict[str, list[bl.Finding]] = {}
    for f in result.findings:
        by_series.setdefault(f.series, []).append(f)
    root = ET.Element("testsuites", name=f"mvpfarm nightly {suite.name}")
    cases = []
    for series, fs in sorted(by_series.items()):
        entry, _, rest = series.partition("/")
        case = ET.Element("testcase", classname=f"{suite.name}.{entry}", name=rest)
        bad = [f for f in fs if f.status in ("regressed", "missing")]
        if bad:
            fail = ET.SubElement(case, "failure", message=f"{len(bad)} metric(s) regressed: "
                                 + ", ".join(f.path for f in bad), type="regression")
            fail.text = "\n".join(f.describe() for f in bad)
        elif all(f.status == "not run" for f in fs):
            ET.SubElement(case, "skipped", message=fs[0].why or "not run tonight")
        cases.append((case, bool(bad)))
    ts = ET.SubElement(root, "testsuite", name=f"{suite.name} {result.nightly_id}", tests=str(len(cases)),
                       failures=str(sum(b for _, b in cases)), errors="0",
                       skipped=str(sum(1 for c, _ in cases if c.find("skipped") is not None)))
    for case, _ in cases:
        ts.append(case)
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return path


def plot_trends(nights: list[bl.Night], out_dir: Path) -> list[Path]:
    """trend_METRIC.png for each model-level metric: every series over the last nights, as the
    change against its first value in the window (so that cycles and bytes share an axis)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for i, night in enumerate(nights):
        for key, m in (night.metrics or {}).items():
            s, _, path = key.rpartition(":")
            if "layers[" in path or isinstance(m.value, str):
                continue
            series.setdefault(path, {}).setdefault(s, []).append((i, float(m.value)))
    labels = [n.nightly_id.rsplit("-", 1)[-1] for n in nights]
    paths = []
    for metric, by_series in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(12, 4.5))
        for s, pts in sorted(by_series.items()):
            first = pts[0][1]
            ys = [100.0 * (v / first - 1) if first else 0.0 for _, v in pts]
            ax.plot([i for i, _ in pts], ys, marker="o", markersize=3, label=s)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric}: change (%)")
        ax.set_title(f"{metric} over the last {len(nights)} night(s)")
        if len(by_series) <= 40:
            ax.legend(fontsize=5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        p = out_dir / f"trend_{metric}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
