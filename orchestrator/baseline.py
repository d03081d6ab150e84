"""Baselines for the nightly checks: a night's numbers as one flat snapshot, the history of nights,
and the judgement of tonight against a baseline.

A snapshot is plain data, {metric key: Metric}, with keys like

    zoo/keyword_spotting/simulator/mvp/board:layers[3].ram_bytes
    zoo/keyword_spotting/board/brd2601b:cpu_cycles

i.e. "SERIES:PATH" where the series is (suite entry, variant, target) and the path names the
number in the profile record. Simulator and emulator records are deterministic: every number
regresses on any change (a tolerance can be configured). Device records are measured: the
repeated measurements of a night (targets stored as TARGET#N) are the metric's samples, and a
change regresses only when it passes max(min_change * |baseline|, k_sigma * noise), the noise
being the standard error of the difference of the two nights' means, from the pooled spread of
their samples.

Nights are kept in the result database next to the runs (table `nightly_runs`), one row per
night with its status, its runs, its baseline and its snapshot. The default baseline is the
suite's last night that passed (or whose numbers were accepted with --update-baseline).
"""
from __future__ import annotations

import json
import math
import sqlite3
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.compare import DEVICE
from orchestrator.run_records import CorruptResults, RunRow, target_group
from simulator.errors import UserError
from simulator.record import ProfileRecord
from orchestrator.results_db import DB_NAME, ResultsDB, now

PASSED, REGRESSED, ACCEPTED = "passed", "regressed", "accepted"
DETERMINISTIC, MEASURED = "deterministic", "measured"

SCHEMA = """
CREATE TABLE IF NOT EXISTS nightly_runs (
    nightly_id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    suite_path TEXT,
    suite_sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('passed', 'regressed', 'accepted')),
    baseline_id TEXT,
    run_ids_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    regressed_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

# what a profile record holds, by kind of record
SUMMARY_DETERMINISTIC = ("flash_bytes", "ram_bytes", "ops", "macs", "n_layers", "n_unsupported",
                         "mvp_layers", "accelerator_cycles", "cpu_cycles", "latency_s")
LAYER_DETERMINISTIC = ("ram_bytes", "ops", "macs", "on_mvp", "accelerator_cycles", "cpu_cycles")
# a board's arena and which layers it ran on the MVP do not jitter; its counters and clock do
DEVICE_DETERMINISTIC = ("ram_bytes", "n_unsupported", "mvp_layers")
DEVICE_MEASURED = ("accelerator_cycles", "cpu_cycles", "latency_s")

DEFAULT_THRESHOLDS = {
    "device": {"min_change": 0.01, "k_sigma": 5.0},
    "simulator": {"min_change": 0.0, "k_sigma": 0.0},
}
FLOAT_REL_TOL = 1e-9        # a deterministic float (simulated latency) printed back from JSON


class BaselineError(UserError):
    """No usable baseline; one line for the user (exit status 2)."""


@dataclass
class Metric:
    value: float | str
    kind: str                                   # deterministic or measured
    source: str                                 # "simulator", "emulator" or "device"
    samples: list[float] = field(default_factory=list)   # measured: one per repeat


@dataclass
class Finding:
    key: str
    status: str                 # "regressed", "ok", "new", "missing", "not run"
    baseline: float | str | None
    current: float | str | None
    change: float | None = None         # current - baseline
    change_pct: float | None = None
    threshold: float | None = None      # the absolute change allowed
    noise: float | None = None          # the standard error of the change (measured metrics)
    why: str = ""

    @property
    def series(self) -> str:
        return self.key.rsplit(":", 1)[0]

    @property
    def path(self) -> str:
        return self.key.rsplit(":", 1)[1]

    def describe(self) -> str:
        if self.status == "missing":
            return f"{self.key}: missing tonight (baseline {fmt_value(self.baseline)})"
        if isinstance(self.change, (float, int)):
            pct = f", {self.change_pct:+.2f}%" if self.change_pct is not None else ""
            allowed = ""
            if self.noise:
                allowed = f"; allowed {self.threshold:.4g} (noise {self.noise:.3g})"
            return (f"{self.key}: {fmt_value(self.baseline)} -> {fmt_value(self.current)} "
                    f"({self.change:+.6g}{pct}{allowed})")
        return f"{self.key}: {fmt_value(self.baseline)} -> {fmt_value(self.current)}"


def fmt_value(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.6g}"
    if isinstance(v, float):
        return str(int(v))
    return str(v)


# ------------------------------------------------------------------ snapshots

def record_metrics(record: ProfileRecord) -> dict[str, float]:
    """The numbers of one profile record by path."""
    kind_device = record.target.source == DEVICE
    out = {}
    names = DEVICE_DETERMINISTIC + DEVICE_MEASURED if kind_device else SUMMARY_DETERMINISTIC
    for k in names:
        if k == "mvp_layers":
            out[k] = float(sum(1 for L in record.layers if L.accelerator_cycles > 0 or L.supported))
        else:
            out[k] = float(getattr(record.summary, k))
    if not kind_device:
        for L in record.layers:
            for k in LAYER_DETERMINISTIC:
                v = (L.supported or L.accelerator_cycles > 0) if k == "on_mvp" else getattr(L, k)
                out[f"layers[{L.index}].{k}"] = float(v)
    return out


def snapshot(entry_rows: dict[str, list[RunRow]]) -> dict[str, Metric]:
    """A night's metrics from the rows of its runs, by suite entry."""
    out: dict[str, Metric] = {}
    for entry, rows in entry_rows.items():
        groups: dict[str, list[RunRow]] = {}
        for r in rows:
            groups.setdefault(f"{entry}/{r.variant}/{target_group(r.target)}", []).append(r)
        for series, group in groups.items():
            measured = [r for r in group if r.status == "measured" and r.record is not None]
            failed = [r for r in group if r not in measured]
            status = "measured" if measured else f"failed: {failed[0].error or 'no record'}"
            source = measured[0].record.target.source if measured else (group[0].source or "simulator")
            out[f"{series}:status"] = Metric(status, DETERMINISTIC, source)
            if not measured:
                continue
            per_repeat = [record_metrics(r.record) for r in measured]
            for path in per_repeat[0]:
                values = [m[path] for m in per_repeat if path in m]
                is_measured = source == DEVICE and path in DEVICE_MEASURED
                if is_measured:
                    out[f"{series}:{path}"] = Metric(statistics.fmean(values), MEASURED, source, values)
                else:
                    # a deterministic number that differs between repeats is itself worth knowing
                    value = values[0] if len(set(values)) == 1 else statistics.median(values)
                    out[f"{series}:{path}"] = Metric(value, DETERMINISTIC, source)
    return out


def snapshot_to_json(snap: dict[str, Metric]) -> str:
    return json.dumps({k: asdict(m) for k, m in sorted(snap.items())})


def snapshot_from_json(text: str, where: str) -> dict[str, Metric]:
    try:
        data = json.loads(text)
        return {k: Metric(**m) for k, m in data.items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise CorruptResults(f"{where}: corrupt nightly snapshot: {type(e).__name__}: {e}") from None


# ------------------------------------------------------------------ judging

def thresholds_for(key: str, metric: Metric, thresholds: dict) -> dict:
    """{min_change, k_sigma} for a metric: "device.NAME" / "simulator.NAME" in `thresholds`,
    else the default of its kind."""
    kind = "device" if metric.source == DEVICE else "simulator"
    name = key.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    return {**DEFAULT_THRESHOLDS[kind], **thresholds.get(kind, {}), **thresholds.get(f"{kind}.{name}", {})}


def _noise(base: Metric, cur: Metric) -> float:
    """Standard error of the difference of the two means, from the pooled sample variance."""
    nb, nc = len(base.samples), len(cur.samples)
    dof = (nb - 1) + (nc - 1)
    if dof <= 0:
        return 0.0
    ss = sum((x - statistics.fmean(base.samples)) ** 2 for x in base.samples) + \
        sum((x - statistics.fmean(cur.samples)) ** 2 for x in cur.samples)
    var = ss / dof
    return math.sqrt(var * (1 / nb + 1 / nc))


def judge_metric(key: str, base: Metric, cur: Metric, thresholds: dict) -> Finding:
    t = thresholds_for(key, cur, thresholds)
    if isinstance(base.value, str) or isinstance(cur.value, str):
        same = base.value == cur.value
        return Finding(key, "ok" if same else "regressed", base.value, cur.value,
                       why="" if same else "changed")
    b, c = float(base.value), float(cur.value)
    change = c - b
    pct = 100.0 * change / b if b else None
    if cur.kind == MEASURED and base.kind == MEASURED:
        noise = _noise(base, cur)
        allowed = max(t["min_change"] * abs(b), t["k_sigma"] * noise)
        bad = abs(change) > allowed
        return Finding(key, "regressed" if bad else "ok", b, c, change, pct, allowed, noise,
                       why=f"beyond max({t['min_change']:g} x baseline, {t['k_sigma']:g} x noise)" if bad else "")
    allowed = t["min_change"] * abs(b)
    if isinstance(base.value, float) and not float(base.value).is_integer():
        allowed = max(allowed, FLOAT_REL_TOL * abs(b))
    bad = abs(change) > allowed
    return Finding(key, "regressed" if bad else "ok", b, c, change, pct, allowed,
                   why="deterministic metric changed" if bad else "")


def judge(baseline: dict[str, Metric], current: dict[str, Metric], thresholds: dict,
          entries_run: set[str], boards_ran: bool = True) -> list[Finding]:
    """Every metric of both snapshots. A metric the baseline has and tonight lacks is "missing"
    (it fails: a model, a layer or a target is gone) if its suite entry ran tonight, and "not
    run" if it did not, or if it is a board's and no board measured anything tonight."""
    out = []
    for key in sorted(set(baseline) | set(current)):
        if key not in baseline:
            out.append(Finding(key, "new", None, current[key].value))
        elif key not in current:
            b = baseline[key]
            entry = key.split("/", 1)[0]
            if entry not in entries_run:
                out.append(Finding(key, "not run", b.value, None, why="its suite entry did not run tonight"))
            elif b.source == DEVICE and not boards_ran:
                out.append(Finding(key, "not run", b.value, None, why="no boards tonight"))
            else:
                out.append(Finding(key, "missing", b.value, None, why="not in tonight's results"))
        else:
            out.append(judge_metric(key, baseline[key], current[key], thresholds))
    return out


def failing(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status in ("regressed", "missing")]


# ------------------------------------------------------------------ the history of nights

@dataclass
class Night:
    nightly_id: str
    suite: str
    status: str
    baseline_id: str | None
    run_ids: dict[str, str]
    created_at: str
    metrics: dict[str, Metric] | None = None


class History:
    """The `nightly_runs` table in RESULTS/mvpfarm.sqlite."""

    def __init__(self, results_dir: str | Path):
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / DB_NAME
        try:
            self.db = ResultsDB(results_dir)
            self.db.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise CorruptResults(f"{self.path}: corrupt result file: {e}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _night(self, row, with_metrics: bool) -> Night:
        try:
            run_ids = json.loads(row["run_ids_json"])
        except json.JSONDecodeError as e:
            raise CorruptResults(f"{self.path}: corrupt nightly row {row['nightly_id']}: {e}") from None
        n = Night(row["nightly_id"], row["suite"], row["status"], row["baseline_id"], run_ids, row["created_at"])
        if with_metrics:
            n.metrics = snapshot_from_json(row["metrics_json"], f"{self.path}: nightly {row['nightly_id']}")
        return n

    def _query(self, sql: str, params: tuple):
        try:
            return self.db.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise CorruptResults(f"{self.path}: corrupt result file: {e}") from None

    def get(self, nightly_id: str) -> Night | None:
        rows = self._query("SELECT * FROM nightly_runs WHERE nightly_id=?", (nightly_id,))
        return self._night(rows[0], True) if rows else None

    def last_passing(self, suite: str) -> Night | None:
        rows = self._query("SELECT * FROM nightly_runs WHERE suite=? AND status IN ('passed', 'accepted')"
                           " ORDER BY created_at DESC LIMIT 1", (suite,))
        return self._night(rows[0], True) if rows else None

    def recent(self, suite: str, n: int) -> list[Night]:
        rows = self._query("SELECT * FROM nightly_runs WHERE suite=? ORDER BY created_at DESC LIMIT ?", (suite, n))
        return [self._night(r, True) for r in reversed(rows)]

    def exists(self, nightly_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM nightly_runs WHERE nightly_id=?", (nightly_id,)))

    def record(self, night: Night, suite_path: str, suite_sha256: str, regressed: list[str]) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO nightly_runs (nightly_id, suite, suite_path, suite_sha256, status, baseline_id,"
                " run_ids_json, metrics_json, regressed_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (night.nightly_id, night.suite, suite_path, suite_sha256, night.status, night.baseline_id,
                 json.dumps(night.run_ids), snapshot_to_json(night.metrics or {}), json.dumps(regressed),
                 night.created_at or now()))


def check_readable(results_dir: str | Path) -> None:
    """Raises CorruptResults if the result database exists but cannot be read; never writes."""
    path = Path(results_dir) / DB_NAME
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "nightly_runs" in tables:
                for nid, text in conn.execute("SELECT nightly_id, metrics_json FROM nightly_runs"):
                    snapshot_from_json(text, f"{path}: nightly {nid}")
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise CorruptResults(f"{path}: corrupt result file: {e}") from None
