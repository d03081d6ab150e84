"""The README's remote recipe, run as written against a head node started with `ray start` on
127.0.0.1 with token authentication: `ray job submit ... -- mvpfarm sweep run FILE --address auto`
measures the sweep on the cluster and leaves the rows in the results folder the job was given,
and a submission without the token is refused."""
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
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


def _wait_for(url: str, timeout_s: float = 180) -> None:
    """Until the head's job server answers (any HTTP status: it answers 401 without a token)."""
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url + "/api/version", timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A one-node cluster with the job server on 127.0.0.1, started as the README says: a token
    made by `ray get-auth-token --generate` (in a HOME of the test's own, so that ~/.ray/auth_token
    is the test's), then `ray start --head` with RAY_AUTH_MODE=token. The head runs with --block in
    a process group of its own, so stopping it stops this cluster only (`ray stop` would stop every
    Ray on the machine). One head for the module's tests: starting one takes tens of seconds."""
    home = tmp_path_factory.mktemp("home")
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", HOME=str(home))
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    token = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert token.returncode == 0 and (home / ".ray" / "auth_token").is_file(), token.stderr[-2000:]
    dashboard = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="mvpfarm-ray-", dir="/tmp")   # short: Ray's socket paths live in it
    start = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
             "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
             "--include-dashboard", "true", "--dashboard-agent-listen-port", str(_free_port()),
             "--ray-client-server-port", str(_free_port()), "--num-cpus", "2", "--disable-usage-stats",
             "--temp-dir", temp_dir]
    proc = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{dashboard}")
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_submission_without_the_token_is_refused(head, tmp_path):
    address, env = head
    marker = tmp_path / "ran"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--", "touch", str(marker)]
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    for who in (dict(env, HOME=str(stranger)),                                    # no token at all
                dict(env, HOME=str(stranger), RAY_AUTH_TOKEN=secrets.token_hex(32)),   # a wrong one
                {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}):          # the token, not sent
        job = subprocess.run(cmd, env=who, capture_output=True, text=True, timeout=300)
        assert job.returncode != 0, job.stdout + job.stderr
        assert "authentication" in (job.stdout + job.stderr).lower(), (job.stdout + job.stderr)[-2000:]
    time.sleep(2)
    assert not marker.exists()


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
