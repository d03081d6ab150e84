"""The result table: one SQLite file (WAL mode), `results/mvpfarm.sqlite` by default.

Tables:
- `runs`: one row per sweep run (its file, its settings, tool versions, status, timestamps).
- `measurements`: one row per (run, variant, target), UNIQUE, so nothing is ever written twice
  and a rerun measures only what is missing. Flattened summary columns for queries, plus the
  profile record as it is (`record_json`) and the variant's tip levels (`levels_json`).
- `layers`: the record's per-layer rows, keyed by (run, variant, target, layer_index).
- `board_states`: the boards a run measured on, each as it was when the run ended (idle, busy or
  quarantined and why); a resumed run updates the boards it used again.

The file checks itself every time it is opened, before anything is written to it: SQLite's
`quick_check` (the integrity check without the index cross-checks: milliseconds for a results
file) and a schema check (our tables with our columns). A corrupt or foreign file raises
`ResultsCorrupt`, one line with the path and what to do; no command writes to it.

A running run records its driver (`owner_host`, `owner_pid`) and a heartbeat (`heartbeat_at`,
refreshed every HEARTBEAT_S while it runs). A run still marked running whose driver is gone (on
this host: its pid is dead; seen from another host: its heartbeat is older than STALE_S) is shown
as `interrupted`: running the same sweep file again resumes it.

Commands that only read (`results list`, `rank`, `results export`, reports) open the file with
`readonly=True`: they never create the results folder or the file.

A measurement and its layers are written in one transaction: a killed driver leaves whole rows.
`ResultsDB.write` is the one writer of measurement rows (sweeps and nightlies alike): a
`Measurement` (what was measured, where, how it went) and the typed `ProfileRecord`, flattened
here and nowhere else.

Load a run into pandas in one call:

    pd.read_sql("SELECT * FROM measurements WHERE run_id = ?",
                sqlite3.connect("results/mvpfarm.sqlite"), params=["kws-tips-1a2b3c4d5e"])
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.record import ProfileRecord

from device_agents.port_lock import pid_alive
from orchestrator.target_names import target_name
from simulator.errors import UserError

DB_NAME = "mvpfarm.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sweep_path TEXT,
    sweep_sha256 TEXT,
    sweep_toml TEXT,
    mode TEXT,
    base_json TEXT,
    n_variants INTEGER,
    n_targets INTEGER,
    status TEXT NOT NULL,
    tool_versions_json TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    owner_host TEXT,
    owner_pid INTEGER,
    heartbeat_at TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    variant TEXT NOT NULL,
    tip TEXT NOT NULL,
    level TEXT NOT NULL,
    levels_json TEXT NOT NULL,
    target TEXT NOT NULL,
    target_kind TEXT,
    accelerator TEXT,
    timing TEXT,
    source TEXT,
    firmware TEXT,
    status TEXT NOT NULL CHECK (status IN ('measured', 'failed')),
    error TEXT,
    model_sha256 TEXT,
    config_sha256 TEXT,
    flash_bytes INTEGER,
    ram_bytes INTEGER,
    ops INTEGER,
    macs INTEGER,
    n_layers INTEGER,
    n_unsupported INTEGER,
    n_layers_on_mvp INTEGER,
    accelerator_cycles INTEGER,
    cpu_cycles INTEGER,
    latency_s REAL,
    convert_s REAL,
    profile_s REAL,
    build_cached INTEGER,
    tool_versions_json TEXT,
    record_json TEXT,
    measured_at TEXT NOT NULL,
    metric TEXT,
    metric_higher_is_better INTEGER,
    accuracy_float REAL,
    accuracy_tflite REAL,
    accuracy REAL,
    agreement_tflite REAL,
    accuracy_std REAL,
    accuracy_source TEXT,
    accuracy_error TEXT,
    accuracy_json TEXT,
    train_s REAL,
    UNIQUE (run_id, variant, target)
);
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    target TEXT NOT NULL,
    layer_index INTEGER NOT NULL,
    opcode TEXT NOT NULL,
    ops INTEGER,
    macs INTEGER,
    supported INTEGER,
    reason TEXT,
    accelerator_cycles INTEGER,
    cpu_cycles INTEGER,
    latency_s REAL,
    ram_bytes INTEGER,
    PRIMARY KEY (run_id, variant, target, layer_index)
);
CREATE TABLE IF NOT EXISTS board_states (
    run_id TEXT NOT NULL,
    board_id TEXT NOT NULL,
    target TEXT,
    kind TEXT,
    state TEXT,
    reason TEXT,
    jobs_measured INTEGER,
    status_json TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, board_id)
);
"""

# The export's columns, in order: the interface contract first. The export adds `target_name`
# after `target`: the target in the words the terminal and the report use.
EXPORT_COLUMNS = ["run_id", "variant", "tip", "level", "target", "status", "error", "flash_bytes",
                  "ram_bytes", "accelerator_cycles", "cpu_cycles", "latency_s", "accuracy_float",
                  "accuracy_tflite", "accuracy", "agreement_tflite", "accuracy_std", "accuracy_error",
                  "n_unsupported",
                  "n_layers", "n_layers_on_mvp", "ops", "macs", "accelerator", "timing", "source",
                  "firmware", "model_sha256", "config_sha256", "levels_json", "convert_s", "profile_s",
                  "build_cached", "tool_versions_json", "measured_at", "metric", "metric_higher_is_better",
                  "accuracy_source", "accuracy_json", "train_s"]
# What a trained variant adds to its rows (see README, "Accuracy in the loop").
ACCURACY_COLUMNS = ("metric", "metric_higher_is_better", "accuracy_float", "accuracy_tflite", "accuracy",
                    "agreement_tflite", "accuracy_std", "accuracy_source", "accuracy_error", "accuracy_json",
                    "train_s")
EXPORT_FORMATS = ("csv", "parquet", "json")
INT_COLUMNS = ["flash_bytes", "ram_bytes", "accelerator_cycles", "cpu_cycles", "n_unsupported", "n_layers",
               "n_layers_on_mvp", "ops", "macs", "build_cached", "metric_higher_is_better"]


# A running driver refreshes its run's heartbeat this often; a run whose heartbeat is older than
# STALE_S has lost its driver (a driver blocked for that long in one call is not a running sweep).
HEARTBEAT_S = 10.0
STALE_S = 120.0


# A tip that does not apply to the base is stored as a failed row whose error starts with this:
# the table keeps it (with the reason), summaries count it apart from failures.
NOT_APPLICABLE = "not applicable: "
OUTCOMES = ("measured", "not applicable", "failed")


def outcome(status: str, error: str | None) -> str:
    """measured, not applicable (a tip that does not apply) or failed: how summaries count a row."""
    if status == "measured":
        return "measured"
    return "not applicable" if (error or "").startswith(NOT_APPLICABLE) else "failed"


class RunNotFound(UserError, LookupError):
    """No such run in the result table; the message is one line."""


class ResultsCorrupt(UserError):
    """The results file is damaged or is not an mvpfarm result table; the message is one line
    with the path and what to do. Nothing has been written to the file."""


# terminal escapes (CSI "\x1b[36m", OSC "\x1b]...\x07", two-byte "\x1bc") and other control characters
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
REASON_MAX_CHARS = 500


def plain_text(reason: str | None) -> str | None:
    """A failure reason as stored: one line of plain text, no terminal escapes."""
    if reason is None:
        return None
    return " ".join(_ESCAPES.sub("", str(reason)).split())[:REASON_MAX_CHARS]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _schema_columns() -> dict[str, dict[str, bool]]:
    """{table: {column: required}} from SCHEMA: a column is required (cannot be added to an
    older file) when it is NOT NULL or part of the key."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    out = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        out[table] = {r[1]: bool(r[3] or r[5]) for r in conn.execute(f"PRAGMA table_info({table})")}
    conn.close()
    return out


def run_state(row: dict, at: datetime | None = None) -> str:
    """The run's status as the user should see it: `running` only while its driver lives."""
    status = row.get("status")
    if status != "running":
        return status
    at = at or datetime.now(timezone.utc)
    if row.get("owner_host") == socket.gethostname() and row.get("owner_pid"):
        # on this machine the pid says it (a driver busy for minutes in one step is still alive)
        return status if pid_alive(int(row["owner_pid"])) else "interrupted"
    beat = row.get("heartbeat_at") or row.get("updated_at")
    try:
        if beat and at - datetime.fromisoformat(beat) > timedelta(seconds=STALE_S):
            return "interrupted"
    except ValueError:
        pass
    return status


@dataclass
class Measurement:
    """One row of `measurements` but the record's numbers: which run, variant and target, and
    how it went (`error` set: failed, with the reason; its numbers are kept when there are any)."""
    run_id: str
    variant: str
    target: str                              # the target's key, e.g. simulator/mvp/board
    target_kind: str | None = None           # simulator or board
    accelerator: str | None = None
    timing: str | None = None
    tip: str = "none"
    level: str = ""
    levels: dict = field(default_factory=dict)
    error: str | None = None
    config_sha256: str | None = None         # the variant's key in the build cache
    convert_s: float | None = None
    profile_s: float | None = None
    build_cached: bool | None = None
    tool_versions: dict | None = None
    accuracy: dict | None = None             # a sweep with [data]: its ACCURACY_COLUMNS

    @property
    def status(self) -> str:
        return "failed" if self.error else "measured"


class ResultsDB:
    def __init__(self, results_dir: str | Path = "results", readonly: bool = False):
        """Opens (with `readonly=False`: creates) DIR/mvpfarm.sqlite. With `readonly`, a missing
        file is an empty table and neither the folder nor the file is created. Raises
        ResultsCorrupt before writing anything to a damaged or foreign file."""
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / DB_NAME
        self.readonly = readonly
        if readonly and not self.path.is_file():
            self.conn = sqlite3.connect(":memory:")    # nothing on disk: an empty table
            self.conn.row_factory = sqlite3.Row
            self.conn.executescript(SCHEMA)
            return
        if not readonly:
            self.results_dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.row_factory = sqlite3.Row
        try:
            missing = self._check()
        except BaseException:
            self.conn.close()
            raise
        if readonly:
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL survives a killed process
        self.conn.executescript(SCHEMA)
        with self.conn:
            for table, column in missing:     # a file from before the column existed
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def _corrupt(self, problem: str) -> ResultsCorrupt:
        return ResultsCorrupt(
            f"{self.path}: the result table is damaged ({problem}); nothing was written to it. Move "
            f"it aside (mv {self.path} {self.path}.broken) and run the sweeps again, or restore it "
            "from a backup")

    def _check(self) -> list[tuple[str, str]]:
        """quick_check and the schema check; returns the optional columns an older file lacks."""
        try:
            rows = [r[0] for r in self.conn.execute("PRAGMA quick_check(5)")]
            if rows != ["ok"]:
                raise self._corrupt("SQLite quick_check: " + " ".join("; ".join(str(r) for r in rows).split())[:200])
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            expected = _schema_columns()
            if tables and "runs" not in tables:
                raise ResultsCorrupt(f"{self.path}: not an mvpfarm result table (it has tables "
                                     f"{', '.join(sorted(tables))[:120]}); give another --results folder")
            missing = []
            for table, columns in expected.items():
                if table not in tables:
                    continue
                have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                for column, required in columns.items():
                    if column in have:
                        continue
                    if required:
                        raise self._corrupt(f"table {table} has no column {column}")
                    missing.append((table, column))
            return missing
        except sqlite3.DatabaseError as e:
            raise self._corrupt(" ".join(str(e).split())) from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- runs ----------------------------------------------------------------------------------
    def start_run(self, run_id: str, name: str, sweep_path: str, sweep_sha256: str, sweep_toml: str,
                  mode: str, base: dict, n_variants: int, n_targets: int, tool_versions: dict) -> bool:
        """Creates the run or marks an existing one as running again; True if it is new."""
        t = now()
        owner = (socket.gethostname(), os.getpid(), t)
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (run_id, name, sweep_path, sweep_sha256, sweep_toml, mode, base_json,"
                " n_variants, n_targets, status, tool_versions_json, created_at, updated_at, owner_host,"
                " owner_pid, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?,'running',?,?,?,?,?,?)"
                " ON CONFLICT(run_id) DO NOTHING",
                (run_id, name, sweep_path, sweep_sha256, sweep_toml, mode, json.dumps(base), n_variants,
                 n_targets, json.dumps(tool_versions), t, t, *owner))
            if cur.rowcount == 0:
                self.conn.execute("UPDATE runs SET status='running', updated_at=?, owner_host=?, owner_pid=?,"
                                  " heartbeat_at=? WHERE run_id=?", (t, *owner, run_id))
        return cur.rowcount == 1

    def heartbeat(self, run_id: str) -> None:
        """The run's driver is alive (called every HEARTBEAT_S while it runs)."""
        with self.conn:
            self.conn.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=?", (now(), run_id))

    def set_status(self, run_id: str, status: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status=?, updated_at=?, heartbeat_at=NULL WHERE run_id=?",
                              (status, now(), run_id))

    def runs(self) -> list[dict]:
        """Every run, oldest first; `status` is what `run_state` says (a running run whose
        driver is gone is `interrupted`), `stored_status` what the table holds."""
        rows = self.conn.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM measurements m WHERE m.run_id=r.run_id AND m.status='measured')"
            " AS n_measured, (SELECT COUNT(*) FROM measurements m WHERE m.run_id=r.run_id AND"
            " m.status='failed' AND m.error LIKE ? || '%') AS n_not_applicable,"
            " (SELECT COUNT(*) FROM measurements m WHERE m.run_id=r.run_id AND m.status='failed'"
            " AND (m.error IS NULL OR m.error NOT LIKE ? || '%')) AS n_failed"
            " FROM runs r ORDER BY updated_at, created_at", (NOT_APPLICABLE, NOT_APPLICABLE)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["stored_status"] = d["status"]
            d["status"] = run_state(d)
            out.append(d)
        return out

    def resolve_run(self, run: str) -> str:
        """A run id, or `latest` for the most recently run one."""
        if run == "latest":
            row = self.conn.execute("SELECT run_id FROM runs ORDER BY updated_at DESC LIMIT 1").fetchone()
            if row is None:
                raise RunNotFound(f"no runs in {self.path}")
            return row[0]
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run,)).fetchone() is None:
            known = [r["run_id"] for r in self.runs()][-5:]
            raise RunNotFound(f"no run {run!r} in {self.path}"
                              + (f" (recent: {', '.join(known)})" if known else " (it has no runs)"))
        return run

    def run_info(self, run_id: str) -> dict:
        d = dict(self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())
        d["stored_status"], d["status"] = d["status"], run_state(d)
        return d

    # --- measurements --------------------------------------------------------------------------
    def done(self, run_id: str) -> set[tuple[str, str]]:
        """(variant, target) pairs that already have a row."""
        return {(r[0], r[1]) for r in self.conn.execute(
            "SELECT variant, target FROM measurements WHERE run_id=?", (run_id,))}

    def delete_failed(self, run_id: str) -> int:
        """Forgets the run's failed measurements so that a rerun tries them again."""
        with self.conn:
            self.conn.execute("DELETE FROM layers WHERE (run_id, variant, target) IN (SELECT run_id, variant,"
                              " target FROM measurements WHERE run_id=? AND status='failed')", (run_id,))
            return self.conn.execute("DELETE FROM measurements WHERE run_id=? AND status='failed'",
                                     (run_id,)).rowcount

    def write(self, m: Measurement, record: ProfileRecord | None) -> bool:
        """Writes one measurement (and its layers) atomically; False if it was already there."""
        row = {"run_id": m.run_id, "variant": m.variant, "tip": m.tip, "level": m.level,
               "levels_json": json.dumps(m.levels), "target": m.target, "target_kind": m.target_kind,
               "accelerator": m.accelerator, "timing": m.timing, "status": m.status,
               "error": plain_text(m.error), "config_sha256": m.config_sha256, "convert_s": m.convert_s,
               "profile_s": m.profile_s, "build_cached": None if m.build_cached is None else int(m.build_cached),
               "tool_versions_json": None if m.tool_versions is None else json.dumps(m.tool_versions),
               "measured_at": now()}
        row.update({k: v for k, v in (m.accuracy or {}).items() if k in ACCURACY_COLUMNS})
        if record is not None:
            s = record.summary
            for k in ("flash_bytes", "ram_bytes", "ops", "macs", "n_layers", "n_unsupported",
                      "accelerator_cycles", "cpu_cycles", "latency_s"):
                row[k] = getattr(s, k)
            # layers that launch MVP programs: a layer only the vendor's simulator flags still runs there
            row["n_layers_on_mvp"] = sum(1 for L in record.layers if L.supported or L.accelerator_cycles > 0)
            row["model_sha256"] = record.model.sha256
            row["source"] = record.target.source
            row["firmware"] = record.target.firmware     # the board's, for device rows
            row["record_json"] = record.to_json()
        cols = list(row)
        with self.conn:
            cur = self.conn.execute(
                f"INSERT INTO measurements ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                " ON CONFLICT(run_id, variant, target) DO NOTHING", [row[c] for c in cols])
            if cur.rowcount == 0:
                return False
            if record is not None:
                self.conn.executemany(
                    "INSERT INTO layers (run_id, variant, target, layer_index, opcode, ops, macs, supported,"
                    " reason, accelerator_cycles, cpu_cycles, latency_s, ram_bytes)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(m.run_id, m.variant, m.target, L.index, L.opcode, L.ops, L.macs, int(L.supported), L.reason,
                      L.accelerator_cycles, L.cpu_cycles, L.latency_s, L.ram_bytes) for L in record.layers])
        return True

    def set_board_states(self, run_id: str, states: list[dict]) -> None:
        """Each board's state at the end of the run (`BoardStatus.to_dict()`, plus `target`)."""
        t = now()
        with self.conn:
            self.conn.executemany(
                "INSERT INTO board_states (run_id, board_id, target, kind, state, reason, jobs_measured,"
                " status_json, updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, board_id) DO UPDATE"
                " SET target=excluded.target, kind=excluded.kind, state=excluded.state, reason=excluded.reason,"
                " jobs_measured=excluded.jobs_measured, status_json=excluded.status_json,"
                " updated_at=excluded.updated_at",
                [(run_id, s["board_id"], s.get("target"), s.get("kind"), s.get("state"), s.get("reason"),
                  s.get("jobs_measured"), json.dumps(s), t) for s in states])

    def board_states(self, run_id: str) -> list[dict]:
        """The boards of the run as stored by `set_board_states`, in board order."""
        return [json.loads(r[0]) for r in self.conn.execute(
            "SELECT status_json FROM board_states WHERE run_id=? ORDER BY target, board_id", (run_id,))]

    def measurements(self, run_id: str):
        """The run's measurements as a pandas DataFrame (export columns, in variant order)."""
        import pandas as pd
        df = pd.read_sql(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM measurements WHERE run_id=? ORDER BY id",
                         self.conn, params=[run_id])
        for col in INT_COLUMNS:     # failed rows have NULLs: keep integers integers
            df[col] = df[col].astype("Int64")
        df.insert(df.columns.get_loc("target") + 1, "target_name", [target_name(t) for t in df["target"]])
        return df

    def layers(self, run_id: str, variant: str | None = None):
        import pandas as pd
        q, params = "SELECT * FROM layers WHERE run_id=?", [run_id]
        if variant is not None:
            q, params = q + " AND variant=?", params + [variant]
        return pd.read_sql(q + " ORDER BY variant, target, layer_index", self.conn, params=params)

    def measurement_rows(self, run_id: str) -> list[sqlite3.Row]:
        """Every measurement of the run with its stored record (JSON), in the order written."""
        return self.conn.execute("SELECT variant, target, source, status, error, record_json FROM measurements"
                                 " WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    def variant_builds(self, run_id: str) -> list[tuple[str, str | None]]:
        """(variant, config_sha256: the key of its .tflite in the build cache) of the run."""
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT DISTINCT variant, config_sha256 FROM measurements WHERE run_id=?", (run_id,))]

    def records(self, run_id: str) -> list[ProfileRecord]:
        from simulator.record import ProfileRecord
        return [ProfileRecord.from_json(r[0]) for r in self.conn.execute(
            "SELECT record_json FROM measurements WHERE run_id=? AND record_json IS NOT NULL ORDER BY id",
            (run_id,))]

    def export(self, run_id: str, fmt: str, out: str | Path) -> Path:
        """Writes the run's table as CSV, Parquet or JSON (records, with the tip levels as objects)."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":      # straight from SQLite: pandas would turn integer columns with NULLs into floats
            rows = [dict(r) for r in self.conn.execute(
                f"SELECT {', '.join(EXPORT_COLUMNS)} FROM measurements WHERE run_id=? ORDER BY id", (run_id,))]
            for r in rows:
                r["target_name"] = target_name(r["target"])
                r["levels"] = json.loads(r.pop("levels_json"))
                r["tool_versions"] = json.loads(r.pop("tool_versions_json") or "{}")
            out.write_text(json.dumps(rows, indent=1) + "\n")
            return out
        df = self.measurements(run_id)
        if fmt == "csv":
            df.to_csv(out, index=False)
        else:
            df.to_parquet(out, index=False)
        return out
