"""The result table: one row per (run, variant, target), whole rows, exports pandas can read."""
import json
import sqlite3

import pandas as pd
import pytest

from orchestrator.results_db import Measurement, ResultsDB, RunNotFound
from simulator.record import LayerRecord, ModelInfo, ProfileRecord, Summary, Target, TensorInfo


def record(flash: int, ram: int, cycles: int, on_mvp: list[bool]) -> dict:
    layers = [LayerRecord(index=i, opcode="conv_2d", ops=200, macs=100, supported=s,
                          reason=None if s else "too big", accelerator_cycles=cycles if s else 0,
                          cpu_cycles=cycles // 4, latency_s=cycles / 78e6, ram_bytes=16)
              for i, s in enumerate(on_mvp)]
    t = TensorInfo("x", [1, 8], "int8")
    return ProfileRecord(
        model=ModelInfo("m", "ab" * 32, flash, [t], [t]),
        target=Target("mvp", 78_000_000, "vendor-sim", "simulator"),
        summary=Summary(flash, ram, 200 * len(layers), 100 * len(layers), len(layers),
                        on_mvp.count(False), sum(L.accelerator_cycles for L in layers),
                        sum(L.cpu_cycles for L in layers), sum(L.latency_s for L in layers)),
        layers=layers).to_dict()


def typed(record: dict) -> ProfileRecord:
    return ProfileRecord.from_dict(record)


def row(run: str, variant: str, status: str = "measured", error=None) -> Measurement:
    tip, _, level = variant.partition("=")
    assert (status == "failed") == bool(error)
    return Measurement(run, variant, "simulator/mvp/vendor-sim", tip=tip, level=level,
                       levels={tip: level} if level else {}, error=error)


@pytest.fixture
def db(tmp_path):
    d = ResultsDB(tmp_path / "results")
    d.start_run("r1", "r", "s.toml", "0" * 64, "", "one-at-a-time", {"builtin": "ds_cnn"}, 3, 1, {"ray": "x"})
    yield d
    d.close()


def test_a_row_is_written_once_with_its_layers(db):
    rec = record(4000, 9000, 1000, [True, False])
    assert db.write(row("r1", "base"), typed(rec)) is True
    assert db.write(row("r1", "base"), typed(record(1, 1, 1, [True]))) is False      # never a second row
    df = db.measurements("r1")
    assert len(df) == 1
    r = df.iloc[0]
    assert (r.flash_bytes, r.ram_bytes, r.accelerator_cycles, r.n_unsupported, r.n_layers_on_mvp) == (4000, 9000, 1000, 1, 1)
    assert json.loads(db.conn.execute("SELECT record_json FROM measurements").fetchone()[0]) == rec
    layers = db.layers("r1")
    assert list(layers["supported"]) == [1, 0] and pd.isna(layers["reason"][0]) and layers["reason"][1] == "too big"
    assert db.done("r1") == {("base", "simulator/mvp/vendor-sim")}


def test_failed_rows_keep_their_reason_and_can_be_retried(db):
    db.write(row("r1", "base"), typed(record(4000, 9000, 1000, [True])))
    db.write(row("r1", "filters=0.5", "failed", "conversion error: boom"), None)
    df = db.measurements("r1")
    failed = df[df.status == "failed"].iloc[0]
    assert failed.error == "conversion error: boom" and pd.isna(failed.flash_bytes)
    assert str(df["flash_bytes"].dtype) == "Int64"        # integers stay integers next to NULLs
    assert db.delete_failed("r1") == 1
    assert db.done("r1") == {("base", "simulator/mvp/vendor-sim")}


def test_exports_and_the_pandas_one_liner(db, tmp_path):
    db.write(row("r1", "base"), typed(record(4000, 9000, 1000, [True])))
    db.write(row("r1", "strides=2", "failed", "too large"), typed(record(5000, 300_000, 900, [True])))
    csv = pd.read_csv(db.export("r1", "csv", tmp_path / "x.csv"))
    pq = pd.read_parquet(db.export("r1", "parquet", tmp_path / "x.parquet"))
    js = json.loads(db.export("r1", "json", tmp_path / "x.json").read_text())
    for table in (csv, pq, pd.DataFrame(js)):
        assert list(table["variant"]) == ["base", "strides=2"]
        assert list(table["ram_bytes"]) == [9000, 300_000]
        assert list(table["status"]) == ["measured", "failed"]
    assert js[1]["levels"] == {"strides": "2"} and isinstance(js[0]["flash_bytes"], int)
    one_liner = pd.read_sql("SELECT * FROM measurements WHERE run_id = ?", sqlite3.connect(db.path), params=["r1"])
    assert len(one_liner) == 2


def test_runs_latest_and_unknown(db):
    db.start_run("r2", "r", "s.toml", "1" * 64, "", "grid", {}, 1, 1, {})
    assert db.resolve_run("latest") == "r2"
    db.start_run("r1", "r", "s.toml", "0" * 64, "", "one-at-a-time", {}, 3, 1, {})     # resumed: now latest
    assert db.resolve_run("latest") == "r1"
    with pytest.raises(RunNotFound, match="no run 'r9'"):
        db.resolve_run("r9")
    assert [r["run_id"] for r in db.runs()] == ["r2", "r1"]
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
