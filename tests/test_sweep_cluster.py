"""Sweeps end to end on a real two-node Ray cluster on 127.0.0.1: the table, the ranking, and no
lost or duplicated measurement when a worker or the driver is killed mid-sweep."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_DS_CNN_SWEEP

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from orchestrator import api  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# 13 variants of a small DS-CNN (cheap TensorFlow conversions): the base, 11 tip levels that apply,
# and one that does not (DS-CNN has no hidden Dense layer) and must be recorded as such.
SWEEP = f"""
name = "cluster-test"
{SMALL_DS_CNN_SWEEP}[[targets]]
kind = "simulator"
accelerator = "mvp"
"""
N_VARIANTS = 13


@pytest.fixture(scope="module")
def cluster():
    from orchestrator.fanout import node_worker_settings
    # read by the raylets this fixture starts: build and simulator workers both stay warm
    os.environ.update(node_worker_settings())
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def sweep_file(tmp_path: Path) -> Path:
    f = tmp_path / "sweep.toml"
    f.write_text(SWEEP)
    return f


def rows(results: Path) -> list[dict]:
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM measurements ORDER BY id")]


def assert_complete_and_unique(results: Path) -> dict:
    rs = rows(results)
    keys = [(r["run_id"], r["variant"], r["target"]) for r in rs]
    assert len(keys) == len(set(keys)) == N_VARIANTS
    by_variant = {r["variant"]: r for r in rs}
    failed = {v: r["error"] for v, r in by_variant.items() if r["status"] == "failed"}
    assert list(failed) == ["dense_units=0.5"]
    assert failed["dense_units=0.5"].startswith("not applicable: the model has no hidden Dense layers (only the "
                                                "output layer '")
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        n_layers = con.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
    assert n_layers == sum(r["n_layers"] for r in rs if r["status"] == "measured")
    return by_variant


def test_cluster_is_two_nodes_on_localhost(cluster):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}


def test_sweep_end_to_end_table_and_ranking(cluster, tmp_path):
    results = tmp_path / "results"
    res = api.run_sweep(sweep_file(tmp_path), results, progress=False)
    assert res.n_cpus == 2 and res.counts.total == N_VARIANTS and res.counts.left == 0
    # every variant was profiled by the task that built it, in its build worker: no simulator worker
    assert res.n_profiled_by_build == res.counts.profiled == N_VARIANTS - 1 and res.profile_workers_with_tf == set()
    assert len(res.build_pids) <= 2                      # one warm build worker per node, no churn
    # an existing cluster has no fork server: a warm-up per node imported TensorFlow in its worker
    assert len(res.warm_pids) == 2 and res.warmup_s > 1.0 and res.n_built_warm == res.n_built
    v = assert_complete_and_unique(results)
    base = v["base"]
    assert base["tip"] == "base" and base["status"] == "measured" and base["flash_bytes"] > 2_000

    # what each tip did, as the simulator measured it
    assert v["filters=0.5"]["flash_bytes"] < base["flash_bytes"] and v["filters=0.5"]["macs"] < base["macs"] / 2
    assert v["filters=0.25"]["macs"] < v["filters=0.5"]["macs"]
    assert v["input_size=0.5"]["ram_bytes"] < v["input_size=0.75"]["ram_bytes"] < base["ram_bytes"]
    assert v["input_size=0.5"]["macs"] < base["macs"] / 2
    assert v["strides=2"]["macs"] < v["strides=1"]["macs"] < base["macs"]
    assert v["kernel_size=1"]["macs"] < v["kernel_size=2"]["macs"] < base["macs"]
    assert v["pooling=max"]["n_layers"] == v["pooling=avg"]["n_layers"] == base["n_layers"] + 1
    rec = json.loads(v["input_dtype=float32"]["record_json"])
    assert rec["model"]["inputs"][0]["dtype"] == "float32"
    assert json.loads(base["record_json"])["model"]["inputs"][0]["dtype"] == "int8"
    assert json.loads(v["filters=0.5"]["levels_json"]) == {"filters": 0.5}
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM layers WHERE variant='pooling=max' AND opcode='max_pool_2d'"
                           ).fetchone()[0] == 1
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # the ranking: ordered by rank, every change recomputable from the table
    ranking = api.rank("latest", results).to_json_list()
    assert len(ranking) == N_VARIANTS - 2                 # neither the base nor the tip that does not apply
    assert [e["rank"] for e in ranking] == sorted(e["rank"] for e in ranking) and ranking[0]["rank"] == 1
    for e in ranking:
        r = v[e["variant"]]
        assert e["latency_change_pct"] == pytest.approx((r["latency_s"] - base["latency_s"]) / base["latency_s"] * 100)
        assert e["ram_change_pct"] == pytest.approx((r["ram_bytes"] - base["ram_bytes"]) / base["ram_bytes"] * 100)
        assert e["flash_change_pct"] == pytest.approx((r["flash_bytes"] - base["flash_bytes"]) / base["flash_bytes"] * 100)
        assert e["objective_change_pct"] == e["latency_change_pct"]
    lat = [e["latency_change_pct"] for e in ranking]
    assert lat == sorted(lat)
    best = min((r for r in v.values() if r["status"] == "measured" and r["variant"] != "base"),
               key=lambda r: r["latency_s"])
    assert ranking[0]["variant"] == best["variant"] and ranking[0]["pareto"]
    by_ram = api.rank("latest", results, objective="ram").to_json_list()
    assert [e["ram_change_pct"] for e in by_ram] == sorted(e["ram_change_pct"] for e in by_ram)

    # the report and the exports
    report = api.write_report("latest", results)
    assert {p.name for p in report.parent.iterdir()} >= {"report.md", "report.html", "ranking-simulator-mvp-board.png",
                                                         "pareto-simulator-mvp-board.png",
                                                         "layers-simulator-mvp-board.png"}
    assert best["variant"] in report.read_text()
    exported = json.loads(api.export("latest", "json", results).read_text())
    assert len(exported) == N_VARIANTS
    assert {"variant", "tip", "level", "flash_bytes", "ram_bytes", "accelerator_cycles", "cpu_cycles",
            "latency_s", "n_unsupported", "status", "error"} <= set(exported[0])
    import pandas as pd
    assert len(pd.read_parquet(api.export("latest", "parquet", results))) == N_VARIANTS

    # a rerun measures nothing again
    again = api.run_sweep(sweep_file(tmp_path), results, progress=False, report=False)
    assert again.counts.total == 0 and again.n_skipped == N_VARIANTS
    assert rows(results) == rows(results) and len(rows(results)) == N_VARIANTS


def _processes(title: str) -> list[int]:
    """PIDs of Ray workers whose process title says they run `title` (Ray sets ray::<task>)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(f"ray::{title}"):
                out.append(int(d.name))
    return out


def test_killing_a_worker_loses_nothing(cluster, tmp_path):
    results = tmp_path / "results"
    outcome = {}
    t = threading.Thread(target=lambda: outcome.update(
        result=api.run_sweep(sweep_file(tmp_path), results, progress=False, report=False)))
    t.start()
    killed = None
    deadline = time.monotonic() + 300
    while t.is_alive() and time.monotonic() < deadline and killed is None:
        pids = _processes("build_task")
        # the first row (the tip that does not apply) lands before any build ends: the sweep is under way
        if pids and _rows_so_far(results) >= 1:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    t.join(timeout=600)
    assert killed is not None, "the sweep ended before a build worker could be killed"
    assert not any(p == killed for p in _processes(""))
    res = outcome["result"]
    assert res.counts.left == 0
    assert_complete_and_unique(results)
    assert all("worker" not in (r["error"] or "") for r in rows(results))   # retried, not failed


def _driver(sweep: Path, results: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(sweep), "--results",
                             str(results), "--address", address], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})


def _rows_so_far(results: Path) -> int:
    try:
        return len(rows(results)) if (results / "mvpfarm.sqlite").exists() else 0
    except sqlite3.OperationalError:
        return 0      # the driver has created the file but not yet its tables


def _wait_rows(proc: subprocess.Popen, results: Path, n: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _rows_so_far(results) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"driver ended (rc={proc.poll()}) before {n} rows: {proc.stderr.read() if proc.stderr else ''}")


def test_ctrl_c_and_killing_the_driver_lose_nothing_and_resume(cluster, tmp_path):
    results = tmp_path / "results"
    sweep = sweep_file(tmp_path)

    # Ctrl-C: a clean stop, one line, what was measured is kept
    proc = _driver(sweep, results, cluster.address)
    _wait_rows(proc, results, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and "Run the same command again" in err
    after_int = {r["variant"]: r for r in rows(results)}
    assert 2 <= len(after_int) < N_VARIANTS
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"

    # SIGKILL: the driver dies between writes; whole rows only
    proc = _driver(sweep, results, cluster.address)
    _wait_rows(proc, results, len(after_int) + 1)
    proc.kill()
    proc.communicate(timeout=60)
    after_kill = {r["variant"]: r for r in rows(results)}
    assert len(after_kill) < N_VARIANTS, "the sweep finished before the driver could be killed"
    for variant, r in after_int.items():
        assert after_kill[variant] == r                     # nothing rewritten

    # rerun: measures only what is missing
    res = api.run_sweep(sweep, results, progress=False, report=False)
    assert res.n_skipped == len(after_kill)
    assert res.counts.total == N_VARIANTS - len(after_kill) and res.counts.left == 0
    final = assert_complete_and_unique(results)
    for variant, r in after_kill.items():
        assert final[variant] == r
