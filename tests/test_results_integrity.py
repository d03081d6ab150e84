"""The result table guards itself: a damaged file is refused by every command (one line, exit 2,
the file untouched), read-only commands create nothing, and a run whose driver died shows as
interrupted with the command that resumes it."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.results_db import DB_NAME, SCHEMA, STALE_S, ResultsCorrupt, ResultsDB

ROOT = Path(__file__).resolve().parent.parent
SWEEP = textwrap.dedent("""\
    name = "tiny"
    base = { builtin = "fc_autoencoder" }
    [tips]
    dense_units = [0.5]
""")


def _start(db: ResultsDB, run_id: str = "tiny-0123456789", sweep_path: str = "tiny.toml") -> None:
    db.start_run(run_id, "tiny", sweep_path, "0" * 64, SWEEP, "one-at-a-time", {"builtin": "fc_autoencoder"},
                 2, 1, {"ray": "x"})


def _filled(results: Path) -> Path:
    """A real results file of a few hundred KB: runs, measurements and their layers."""
    with ResultsDB(results) as db:
        _start(db)
        for i in range(300):
            db.conn.execute("INSERT INTO measurements (run_id, variant, tip, level, levels_json, target, status,"
                            " error, measured_at) VALUES (?,?,?,?,?,?,?,?,?)",
                            ("tiny-0123456789", f"v{i}", "dense_units", str(i), "{}", "simulator/mvp/board",
                             "failed", "x" * 500, "2026-01-01"))
        db.conn.commit()
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return results / DB_NAME


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_file_is_refused_by_every_command_and_left_as_it_is(tmp_path):
    results = tmp_path / "results"
    path = _filled(results)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16384] = os.urandom(16384)        # 16 KB of garbage over its middle
    path.write_bytes(bytes(data))
    before = _sha(path)
    (tmp_path / "tiny.toml").write_text(SWEEP)
    commands = [("results", "--results", str(results), "list"),
                ("results", "--results", str(results), "export", "latest", "--format", "csv"),
                ("rank", "latest", "--results", str(results)),
                ("sweep", "run", "tiny.toml", "--results", str(results)),
                ("compare", "--run", "latest", "--results", str(results)),
                ("nightly", "--suite", str(ROOT / "suites" / "nightly.toml"), "--results", str(results))]
    for cmd in commands:
        proc = _cli(*cmd, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (cmd, proc.stderr[-3000:])
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (cmd, proc.stderr[-3000:])
        assert str(path) in lines[0] and ("damaged" in lines[0] or "corrupt" in lines[0]), lines[0]
        if cmd[0] != "nightly":         # the nightly's own check words it its way
            assert "Move it aside" in lines[0], lines[0]
        assert _sha(path) == before, f"{cmd} wrote to the damaged file"
    assert not (results / "tiny-0123456789").exists()      # no report or export was written


def test_not_a_database_and_a_foreign_database_are_refused(tmp_path):
    garbage = tmp_path / "a"
    garbage.mkdir()
    (garbage / DB_NAME).write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ResultsCorrupt, match="damaged .*file is not a database"):
        ResultsDB(garbage)
    foreign = tmp_path / "b"
    foreign.mkdir()
    sqlite3.connect(foreign / DB_NAME).executescript("CREATE TABLE accounts (id INTEGER); INSERT INTO accounts VALUES (1);")
    before = _sha(foreign / DB_NAME)
    for readonly in (True, False):
        with pytest.raises(ResultsCorrupt, match="not an mvpfarm result table"):
            ResultsDB(foreign, readonly=readonly)
    assert _sha(foreign / DB_NAME) == before
    wrong = tmp_path / "c"
    wrong.mkdir()
    sqlite3.connect(wrong / DB_NAME).executescript("CREATE TABLE runs (x INTEGER);")
    with pytest.raises(ResultsCorrupt, match="table runs has no column run_id"):
        ResultsDB(wrong)


def test_an_older_file_gains_the_owner_columns(tmp_path):
    old = SCHEMA.replace(",\n    owner_host TEXT,\n    owner_pid INTEGER,\n    heartbeat_at TEXT", "")
    assert "owner_pid" not in old
    (tmp_path / "r").mkdir()
    sqlite3.connect(tmp_path / "r" / DB_NAME).executescript(old)
    with ResultsDB(tmp_path / "r", readonly=True) as db:         # reading changes nothing
        assert db.runs() == []
    with ResultsDB(tmp_path / "r") as db:
        _start(db)
        assert db.runs()[0]["owner_pid"] == os.getpid() and db.runs()[0]["status"] == "running"


def test_read_only_commands_create_no_folder_and_no_file(tmp_path):
    results = tmp_path / "nothing-here"
    proc = _cli("results", "--results", str(results), "list", cwd=tmp_path)
    assert proc.returncode == 0 and "no runs" in proc.stdout
    for cmd in (("rank", "latest", "--results", str(results)),
                ("results", "--results", str(results), "export", "latest", "--format", "json")):
        proc = _cli(*cmd, cwd=tmp_path)
        assert proc.returncode == 2 and "no runs in" in proc.stderr, proc.stderr
    assert not results.exists() and list(tmp_path.iterdir()) == []
    assert api.runs(results) == [] and not results.exists()


def test_a_run_whose_driver_was_killed_shows_interrupted_with_how_to_resume(tmp_path):
    results = tmp_path / "results"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from orchestrator.results_db import ResultsDB
        db = ResultsDB({str(results)!r})
        db.start_run("tiny-0123456789", "tiny", "sweeps/tiny.toml", "0" * 64, "", "one-at-a-time", {{}}, 2, 1, {{}})
        print("started", flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "started"
        assert [r["status"] for r in api.runs(results)] == ["running"]     # its driver is alive
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    [run] = api.runs(results)
    assert run["status"] == "interrupted" and run["stored_status"] == "running"
    proc = _cli("results", "--results", str(results), "list", cwd=tmp_path)
    assert proc.returncode == 0
    assert "tiny-0123456789" in proc.stdout and " interrupted " in proc.stdout
    assert f"resume it with `mvpfarm sweep run sweeps/tiny.toml --results {results}`" in proc.stdout


def test_a_run_of_another_host_is_interrupted_once_its_heartbeat_is_stale(tmp_path):
    with ResultsDB(tmp_path) as db:
        _start(db)
        fresh = datetime.now(timezone.utc) - timedelta(seconds=STALE_S / 2)
        stale = datetime.now(timezone.utc) - timedelta(seconds=STALE_S * 2)
        for beat, state in ((fresh, "running"), (stale, "interrupted")):
            db.conn.execute("UPDATE runs SET owner_host='elsewhere', owner_pid=1, heartbeat_at=?",
                            (beat.isoformat(),))
            db.conn.commit()
            assert db.runs()[0]["status"] == state
        db.heartbeat("tiny-0123456789")                 # the driver's periodic beat
        assert db.runs()[0]["status"] == "running"
        db.set_status("tiny-0123456789", "finished")
        assert db.runs()[0]["status"] == "finished"
        assert json.loads(db.run_info("tiny-0123456789")["base_json"]) == {"builtin": "fc_autoencoder"}
