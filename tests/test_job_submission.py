"""The README's remote recipe, run as written against a head node started with `ray start` on
127.0.0.1: `ray job submit ... -- mvpfarm sweep run FILE --address auto` measures the sweep on the
cluster and leaves the rows in the results folder the job was given."""
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent

SWEEP = """
name = "job-submission"
base = { builtin = "fc_autoencoder" }
mode = "one-at-a-time"
[tips]
dense_units = [0.5]
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    """A one-node cluster with the job server on 127.0.0.1, token authentication on (as a
    cluster started with `ray start` has it once a token exists), with a token of its own."""
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))
    dashboard = _free_port()
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(_free_port()),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
             "--dashboard-agent-listen-port", str(_free_port()), "--ray-client-server-port", str(_free_port()),
             "--num-cpus", "2", "--disable-usage-stats"]
    r = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_a_sweep_submitted_as_a_ray_job_lands_in_the_results_table(head, tmp_path):
    address, env = head
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    results = tmp_path / "results"
    job = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--",
         str(BIN / "mvpfarm"), "sweep", "run", str(sweep), "--results", str(results), "--address", "auto"],
        env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    assert "2 measured, 0 failed" in job.stdout

    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        got = con.execute("SELECT variant, status, flash_bytes, ram_bytes FROM measurements ORDER BY variant").fetchall()
    assert [(v, s) for v, s, _, _ in got] == [("base", "measured"), ("dense_units=0.5", "measured")]
    (_, _, base_flash, base_ram), (_, _, half_flash, _) = got
    assert 0 < half_flash < base_flash and base_ram > 0       # halving the Dense units shrinks the weights
