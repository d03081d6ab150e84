"""Bring your own model, end to end: `mvpfarm sweep run` on a GRU keyword spotter with all seven
tips (the build unrolls the GRU, which TensorFlow's converter would otherwise crash on), and, on
the same command line, a base whose build crashes its worker: retried once, one line, exit 2."""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

CRASHING_BUILDER = '''
import os, signal
from pathlib import Path

def segfault():
    with open(Path(__file__).with_name("attempts.txt"), "a") as f:
        f.write("attempt\\n")
    os.kill(os.getpid(), signal.SIGSEGV)
'''
CRASHING_SWEEP = '''
name = "crash"
base = { builder = "crash_model:segfault" }
[tips]
filters = [0.5]
[[targets]]
kind = "simulator"
accelerator = "mvp"
'''


def test_gru_sweep_with_every_tip_and_a_crashing_base(tmp_path):
    (tmp_path / "crash_model.py").write_text(CRASHING_BUILDER)
    (tmp_path / "crash.toml").write_text(CRASHING_SWEEP)
    results = tmp_path / "results"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(ROOT / "examples" / "byo-gru.toml"),
                        str(tmp_path / "crash.toml"), "--results", str(results), "--num-cpus", "2"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    # the crashing base stops its sweep with one line and exit 2, after one retry
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("mvpfarm: error:")]
    assert errors == ["mvpfarm: error: base: building the base model crashed: the build worker died "
                      "(e.g. SIGSEGV), also when retried 1x"]
    assert "Traceback" not in p.stderr
    assert (tmp_path / "attempts.txt").read_text().count("attempt") == 2
    # the GRU sweep before it: every variant measured or not applicable with the reason, a report
    con = sqlite3.connect(results / "mvpfarm.sqlite")
    con.row_factory = sqlite3.Row
    rows = {r["variant"]: dict(r) for r in con.execute(
        "SELECT m.* FROM measurements m JOIN runs r ON r.run_id = m.run_id WHERE r.name = 'byo-gru'")}
    assert set(rows) == {"base", "input_size=0.5", "input_dtype=float32", "filters=0.5", "strides=1",
                         "strides=2", "kernel_size=1", "dense_units=0.5", "pooling=max"}
    failed = {v: r["error"] for v, r in rows.items() if r["status"] == "failed"}
    assert failed == {"strides=2": "not applicable: the model has only 1 place where a stride can double "
                                   "on every path ('conv1d'), fewer than 2"}
    run_id = rows["base"]["run_id"]
    assert (results / run_id / "report.md").is_file()
    outputs = set()
    for v, r in rows.items():
        if r["status"] == "measured":
            record = json.loads(r["record_json"])
            outputs.add(tuple(tuple(o["shape"]) for o in record["model"]["outputs"]))
            assert record["summary"]["n_layers"] > 40        # the GRU, unrolled over its frames
    assert outputs == {((1, 4),)}                           # no variant changed the output shape
