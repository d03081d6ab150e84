"""The build workers' fork server (`orchestrator.forkserver`), driven as a Ray worker drives it,
on real processes and a real Unix socket: `call` runs in a builder forked from the server, with
TensorFlow imported and the worker's environment, working directory and import path; results,
exceptions and events come back; a builder that dies takes its worker along, so Ray sees a crash;
a worker that goes ends its builder; with no server, `call` runs in the worker."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import forkserver

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# what the builder runs: imported there by name, from the worker's import path
PROBE = """
import os, sys, time

def where():
    return {"pid": os.getpid(), "ppid": os.getppid(), "tf": "tensorflow" in sys.modules,
            "x": os.environ.get("MVPFARM_TEST_X"), "cwd": os.getcwd()}

def fail(level):
    raise ValueError(f"bad level {level}")

def count(n, on_event):
    for i in range(n):
        on_event(i, i * i)
    return n

def segfault():
    os.kill(os.getpid(), 11)

def hang():
    time.sleep(120)
"""

# a Ray worker's part: calls into the builder and prints what it saw, a JSON object per line
WORKER = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import probe
from orchestrator import forkserver
print(json.dumps({"worker_pid": os.getpid(), "here": {"tf": "tensorflow" in sys.modules}}), flush=True)
for step in sys.argv[1:]:
    if step == "where":
        out = forkserver.call(probe.where)
    elif step == "fail":
        try:
            forkserver.call(probe.fail, 7)
        except ValueError as e:
            out = {"raised": str(e)}
    elif step == "count":
        events = []
        out = {"returned": forkserver.call(probe.count, 3, on_event=lambda *a: events.append(a)), "events": events}
    else:
        out = forkserver.call(getattr(probe, step))
    print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def server_path():
    return forkserver.start()


def _worker(tmp_path: Path, server: str | None, *steps: str) -> subprocess.Popen:
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "worker.py").write_text(WORKER)
    env = dict(os.environ, MVPFARM_TEST_X="x value", PYTHONPATH=str(ROOT))
    env.pop(forkserver.ENV_VAR, None)
    if server:
        env[forkserver.ENV_VAR] = server
    return subprocess.Popen([sys.executable, "worker.py", *steps], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)


def _lines(p: subprocess.Popen) -> list[dict]:
    out, _ = p.communicate(timeout=180)
    return [json.loads(ln) for ln in out.splitlines()]


def _gone(pid: int, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_calls_run_in_one_builder_forked_with_tensorflow_and_the_workers_environment(server_path, tmp_path):
    p = _worker(tmp_path, server_path, "where", "fail", "count", "where")
    head, first, failed, counted, again = _lines(p)
    assert p.returncode == 0
    assert head["here"]["tf"] is False                   # the worker never imports TensorFlow
    assert first["tf"] is True and first["ppid"] == forkserver.server_pid()
    assert first["pid"] not in (head["worker_pid"], forkserver.server_pid())
    assert first["x"] == "x value" and first["cwd"] == str(tmp_path)
    assert failed == {"raised": "bad level 7"}            # the builder's exception, raised in the worker
    assert counted == {"returned": 3, "events": [[0, 0], [1, 1], [2, 4]]}
    assert again["pid"] == first["pid"]                   # one builder serves all of a worker's calls
    assert _gone(first["pid"])                            # and ends with it


def test_a_builder_that_dies_takes_its_worker_along(server_path, tmp_path):
    p = _worker(tmp_path, server_path, "where", "segfault", "where")
    lines = _lines(p)
    assert p.returncode == -signal.SIGKILL and len(lines) == 2     # nothing after the crash
    assert _gone(lines[1]["pid"])


def test_a_worker_killed_mid_call_ends_its_builder(server_path, tmp_path):
    p = _worker(tmp_path, server_path, "where", "hang")
    head = json.loads(p.stdout.readline())
    builder = json.loads(p.stdout.readline())["pid"]
    assert head["worker_pid"] == p.pid
    p.kill()
    p.communicate(timeout=60)
    assert _gone(builder)                 # the server kills it, 120 s before its call would end


def test_with_no_server_calls_run_in_the_worker(tmp_path):
    p = _worker(tmp_path, None, "where", "fail", "count")
    head, where, failed, counted = _lines(p)
    assert p.returncode == 0
    assert where["pid"] == head["worker_pid"] and where["x"] == "x value"
    assert failed == {"raised": "bad level 7"}
    assert counted == {"returned": 3, "events": [[0, 0], [1, 1], [2, 4]]}


def test_a_temp_directory_too_deep_for_a_socket_puts_the_socket_in_tmp(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    script = ("from orchestrator import forkserver\n"
              "path = forkserver.start()\n"
              "print(path)\n"
              "forkserver.stop()\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TMPDIR=str(deep), PYTHONPATH=str(ROOT)))
    path = p.stdout.strip()
    assert p.returncode == 0, p.stderr[-2000:]
    assert path.startswith("/tmp/mvpfarm-fork-") and len(path.encode()) <= 100
    assert not Path(path).parent.exists()                 # stop() removed it
    assert not list(deep.iterdir())                       # nothing left in the deep directory either
