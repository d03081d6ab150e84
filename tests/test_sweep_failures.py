"""A sweep where everything failed still writes its report and exits 1 with one line saying why;
stored failure reasons are plain text with the cause, never Ray's coloured banner."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ray.exceptions import RayTaskError

from orchestrator import api
from orchestrator.fanout import _ray_reason
from orchestrator.results_db import Measurement, ResultsDB, plain_text

ROOT = Path(__file__).resolve().parent.parent


def test_a_ray_task_error_is_stored_as_its_cause():
    err = RayTaskError("build_task", "Traceback (most recent call last): ...",
                       ValueError("samples of shape [3] do not fit the model input [49, 10, 1]"),
                       proctitle="ray::build_task()", pid=4242, ip="127.0.0.1")
    for e in (err, err.as_instanceof_cause()):      # as raised by ray.get
        assert _ray_reason(e) == "ValueError: samples of shape [3] do not fit the model input [49, 10, 1]"
    banner = "\x1b[36mray::build_task()\x1b[39m (pid=4242, ip=127.0.0.1)\n  File \"x.py\"\x1b]0;t\x07"
    assert plain_text(banner) == 'ray::build_task() (pid=4242, ip=127.0.0.1) File "x.py"'


def test_reasons_are_stored_as_plain_text(tmp_path):
    with ResultsDB(tmp_path) as db:
        db.start_run("r-1", "r", "s.toml", "0" * 64, "", "one-at-a-time", {"builtin": "ds_cnn"}, 1, 1, {})
        db.write(Measurement("r-1", "base", "simulator/mvp/board", tip="base",
                             error="build worker failed: \x1b[31mValueError\x1b[0m:\n boom"), None)
        assert db.conn.execute("SELECT error FROM measurements").fetchone()[0] == \
            "build worker failed: ValueError: boom"


@pytest.mark.slow
def test_a_sweep_where_everything_failed_writes_its_report_and_exits_1(tmp_path):
    # every variant too large for the board's RAM, and a tip that does not apply (no numbers at all)
    (tmp_path / "big.toml").write_text(textwrap.dedent("""\
        name = "too-big"
        base = { builtin = "ds_cnn", kwargs = { input_shape = [392, 80, 1], n_blocks = 1 } }
        [tips]
        filters = [0.75]
        dense_units = [0.5]
    """))
    results = tmp_path / "results"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", "big.toml", "--results",
                           str(results), "--num-cpus", "1"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    mine = [ln for ln in proc.stderr.splitlines() if "nothing measured" in ln]
    assert len(mine) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == mine[0]          # the last word, on its own line
    assert mine[0].startswith("mvpfarm: sweep too-big-") and "all 3 measurements failed or did not apply" in mine[0]
    # the base's RAM, as the simulator counts it (over 256 KB), is the number its stored row gives
    said = re.search(r"\(base: too large for the board: RAM (\d+) B > 262144 B", mine[0])
    assert said and int(said.group(1)) > 4 * 262144 - 64 * 1024, mine[0]
    [run] = api.runs(results)
    assert (run["n_measured"], run["n_failed"], run.get("n_not_applicable", 0), run["status"]) == (0, 2, 1, "finished")
    report = (results / run["run_id"] / "report.md").read_text()
    assert "0 measured, 1 not applicable, 2 failed" in report and "too large for the board: RAM" in report
    # a row without numbers
    assert "| dense_units=0.5 | simulator mvp, board timing | not applicable |  |  |  |  |" in report
    df = api.export(run["run_id"], "json", results)
    import json
    reasons = {r["variant"]: r["error"] for r in json.loads(df.read_text())}
    assert reasons["dense_units=0.5"].startswith("not applicable: ")
    assert f"RAM {said.group(1)} B > 262144 B" in reasons["base"], reasons["base"]
    assert all("\x1b" not in r for r in reasons.values())
