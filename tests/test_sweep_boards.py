"""Sweeps with board targets: variants measured on (virtual) boards through the real fan-out, into
the same table as the simulator's, each exactly once, with the boards' states kept with the run."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL_DS_CNN_SWEEP

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from orchestrator.sweep_file import SweepFileError, load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KIND = "brd2601b"
BOARD_KEY = f"board/{KIND}/mvp"

# 13 variants of a small DS-CNN (cheap conversions): the base, 11 tip levels that apply and one
# that does not. Four virtual boards: one hangs at its first PROFILE, one sends garbage before
# most replies, one reboots mid-inference more often than not, one behaves.
SWEEP = f"""
name = "boards-test"
{SMALL_DS_CNN_SWEEP}[[targets]]
kind = "simulator"
accelerator = "mvp"
[[targets]]
kind = "board"
board = "brd2601b"
repeats = 2
warmup = 1
virtual = 4
faults = ["0=hang", "1=garbage:0.8", "2=reboot:0.6"]
"""
N_VARIANTS = 13
NOT_APPLICABLE = "dense_units=0.5"


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


# --- the sweep file ------------------------------------------------------------------------------
BASE = 'name = "b"\nbase = { builtin = "ds_cnn" }\n[tips]\nfilters = [0.5]\n'


@pytest.mark.parametrize("target, key, says", [
    ('kind = "board"\nrepeats = 0', "targets[0].repeats", "from 1 to 255"),
    ('kind = "board"\nwarmup = -1', "targets[0].warmup", "from 0 to 1000"),
    ('kind = "board"\nvirtual = 17', "targets[0].virtual", "from 0 to 16"),
    ('kind = "board"\nvirtual = true', "targets[0].virtual", "whole number"),
    ('kind = "board"\naccelerator = "none"', "targets[0].accelerator", "boards measure with the MVP"),
    ('kind = "board"\ntiming = "board"', "targets[0].timing", "unknown key for a board target"),
    ('kind = "board"\nboard = "brd9999z"\nvirtual = 2', "targets[0].board", "no virtual board of kind"),
    ('kind = "board"\nboard = 7', "targets[0].board", "not a board kind"),
    ('kind = "board"\nfaults = ["hang"]', "targets[0].faults", "set virtual = N"),
    ('kind = "board"\nvirtual = 2\nfaults = ["2=hang"]', "targets[0].faults", "board index must be 0..1"),
    ('kind = "board"\nvirtual = 2\nfaults = ["melt"]', "targets[0].faults", "unknown fault 'melt'"),
    ('kind = "simulator"\nvirtual = 2', "targets[0].virtual", "unknown key for a simulator target"),
    ('kind = "gpu"', "targets[0].kind", "known: simulator, board"),
])
def test_bad_board_targets_get_one_line_naming_the_key(tmp_path, target, key, says):
    f = _write(tmp_path, BASE + "[[targets]]\n" + target + "\n")
    with pytest.raises(SweepFileError) as e:
        load(f)
    msg = str(e.value)
    assert "\n" not in msg and f"{f}: {key}: " in msg and says in msg


def test_board_target_defaults_and_keys(tmp_path):
    f = _write(tmp_path, BASE + '[[targets]]\nkind = "board"\n[[targets]]\nkind = "board"\nboard = "brd4186c"\n'
                               'repeats = 5\nwarmup = 0\nvirtual = 2\nfaults = ["1=slow:0.1"]\n')
    a, b = load(f).targets
    assert (a.board, a.accelerator, a.repeats, a.warmup, a.virtual, a.faults) == (KIND, "mvp", 3, 1, 0, ())
    assert a.key == BOARD_KEY and b.key == "board/brd4186c/mvp"
    assert (b.repeats, b.warmup, b.virtual, b.faults) == (5, 0, 2, ("1=slow:0.1",))
    # where the boards come from is not part of the measurement: the same target twice is refused
    twice = _write(tmp_path, BASE + '[[targets]]\nkind = "board"\n[[targets]]\nkind = "board"\nvirtual = 3\n',
                   "twice.toml")
    with pytest.raises(SweepFileError, match=r"targets\[1\]: the same target \(board/brd2601b/mvp\)"):
        load(twice)


def test_cli_refuses_a_bad_board_target_with_exit_2_before_any_work(tmp_path):
    f = _write(tmp_path, BASE + '[[targets]]\nkind = "board"\nrepeats = 1000\n')
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(f), "--results",
                        str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"mvpfarm: error: {f}: targets[0].repeats: 1000 is not a whole "
                                             "number from 1 to 255"]
    assert not (tmp_path / "results").exists()


# --- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """The embedded default's Ray, started as `mvpfarm sweep run` starts it, with the board
    resources that a sweep's virtual boards hold."""
    from orchestrator import fanout
    started = fanout.connect(None, num_cpus=2, resources={f"board:{KIND}": 4})
    import ray
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def board_config(tmp_path):
    from device_agents.agent import AgentConfig
    # a hung board costs 2 x 4 s of PROFILE plus 1 s of waiting for a BOOT before quarantine
    return AgentConfig(exchange_timeout_s=2.0, profile_timeout_s=4.0, boot_timeout_s=1.0)


def _rows(results: Path) -> list[dict]:
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM measurements ORDER BY id")]


def _check_table(results: Path, run_id: str) -> dict:
    rows = _rows(results)
    keys = [(r["run_id"], r["variant"], r["target"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * N_VARIANTS
    sim = {r["variant"]: r for r in rows if r["target"] != BOARD_KEY}
    dev = {r["variant"]: r for r in rows if r["target"] == BOARD_KEY}
    assert len(sim) == len(dev) == N_VARIANTS
    assert {v for v, r in dev.items() if r["status"] == "failed"} == {NOT_APPLICABLE}
    assert dev[NOT_APPLICABLE]["error"].startswith("not applicable")
    for v, r in dev.items():
        if v == NOT_APPLICABLE:
            continue
        rec = json.loads(r["record_json"])
        assert (r["source"], r["target_kind"], r["timing"]) == ("device", "board", "measured")
        assert rec["target"]["source"] == "device" and rec["target"]["board"].startswith("vb0-brd2601b-")
        assert rec["model"]["name"] == v
        # the board measured the very bytes the simulator profiled
        assert r["model_sha256"] == sim[v]["model_sha256"] and r["flash_bytes"] == sim[v]["flash_bytes"]
        assert r["n_layers"] == sim[v]["n_layers"] and r["cpu_cycles"] > 0 and r["latency_s"] > 0
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        n_layers = con.execute("SELECT COUNT(*) FROM layers WHERE target=?", (BOARD_KEY,)).fetchone()[0]
    assert n_layers == sum(r["n_layers"] for r in dev.values() if r["status"] == "measured")
    return dev


@pytest.mark.slow
def test_board_sweep_over_faulty_virtual_boards_measures_each_variant_once_and_resumes(
        local_ray, board_config, tmp_path):
    from orchestrator import api, fanout
    results = tmp_path / "results"
    sweep = load(_write(tmp_path, SWEEP))
    res = fanout.run(sweep, results, progress=False, board_config=board_config)

    c = res.counts
    # the tip that does not apply, on both targets, is counted apart from failures
    assert (c.total, c.left, c.failed, c.not_applicable, c.boards) == (2 * N_VARIANTS, 0, 0, 2, N_VARIANTS - 1)
    assert c.profiled == 2 * (N_VARIANTS - 1)
    dev = _check_table(results, sweep.run_id)

    # the boards: each measured job counted once, on the board that measured it
    states = {s["board_id"]: s for s in res.boards}
    assert sorted(states) == [f"vb0-brd2601b-{i}" for i in range(4)]
    assert sum(s["jobs_measured"] for s in states.values()) == N_VARIANTS - 1
    by_board = {}
    for v, r in dev.items():
        if r["status"] == "measured":
            b = json.loads(r["record_json"])["target"]["board"]
            by_board[b] = by_board.get(b, 0) + 1
    assert by_board == {b: s["jobs_measured"] for b, s in states.items() if s["jobs_measured"]}
    hang, garbage, reboot = (states[f"vb0-brd2601b-{i}"] for i in range(3))
    assert hang["state"] == "quarantined" and hang["jobs_measured"] == 0
    assert "no reply to Profile" in hang["reason"] and f"job {sweep.run_id}/" in hang["reason"]
    assert garbage["garbage_bytes"] > 0 and garbage["jobs_measured"] >= 1
    assert any("rebooted" in f for f in reboot["faults"])
    assert any("virtual brd2601b board(s)" in n and "0=hang" in n for n in res.board_notes)

    # the states are kept with the run and shown in its report
    from orchestrator.results_db import ResultsDB
    with ResultsDB(results) as db:
        assert {s["board_id"]: s["state"] for s in db.board_states(sweep.run_id)} == \
               {b: s["state"] for b, s in states.items()}
    report = api.write_report(sweep.run_id, results).read_text()
    boards_section = report.split("## Boards", 1)[1]
    assert "vb0-brd2601b-0 | board brd2601b mvp | quarantined | 0 |" in boards_section
    assert "no reply to Profile" in boards_section
    ranking = api.rank(sweep.run_id, results).to_json_list()
    assert {e["target"] for e in ranking} == {BOARD_KEY, "simulator/mvp/" + sweep.targets[0].timing}

    # a rerun measures nothing again, and starts no boards
    before = _rows(results)
    again = fanout.run(load(_write(tmp_path, SWEEP)), results, progress=False, board_config=board_config)
    assert (again.counts.total, again.n_skipped, again.boards) == (0, 2 * N_VARIANTS, [])
    assert _rows(results) == before

    # a run cut short (three board measurements missing) resumes with only those, on fresh boards
    lost = ["base", "filters=0.5", "pooling=avg"]
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        for v in lost:
            con.execute("DELETE FROM layers WHERE variant=? AND target=?", (v, BOARD_KEY))
            con.execute("DELETE FROM measurements WHERE variant=? AND target=?", (v, BOARD_KEY))
    resumed = fanout.run(load(_write(tmp_path, SWEEP)), results, progress=False, board_config=board_config)
    assert (resumed.counts.total, resumed.n_skipped, resumed.counts.boards) == (3, 2 * N_VARIANTS - 3, 3)
    assert (resumed.n_built, resumed.n_cached) == (0, 3)          # from the build cache
    assert sum(s["jobs_measured"] for s in resumed.boards) == 3
    _check_table(results, sweep.run_id)
    after = {(r["variant"], r["target"]): r for r in _rows(results)}
    kept = {(r["variant"], r["target"]): r for r in before if (r["variant"], r["target"]) not in
            {(v, BOARD_KEY) for v in lost}}
    assert all(after[k] == r for k, r in kept.items())           # untouched rows stay as they were


@pytest.mark.slow
def test_no_board_agents_and_no_virtual_boards_stops_before_any_work(local_ray, tmp_path):
    from orchestrator import fanout
    text = SWEEP.replace("virtual = 4\n", "").replace('faults = ["0=hang", "1=garbage:0.8", "2=reboot:0.6"]\n', "")
    sweep = load(_write(tmp_path, text))
    results = tmp_path / "results"
    with pytest.raises(fanout.SweepError) as e:
        fanout.run(sweep, results, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and 'board = "brd2601b"' in msg
    assert "mvpfarm agent start" in msg and "virtual = N" in msg
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:       # no run was started
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0


def test_a_jobs_repeats_and_warmup_reach_the_board(zoo_dir, tmp_path):
    """A board target's repeats override the agent's configuration, job by job."""
    from device_agents.agent import MEASURED, AgentConfig, BoardAgent
    from device_agents.virtual_board import VirtualBoard
    data = (zoo_dir / "tflite_micro_speech.tflite").read_bytes()
    with VirtualBoard(KIND, "vb-repeats", seed=7) as vb:
        agent = BoardAgent(vb.port, AgentConfig(repeats=3, lock_dir=str(tmp_path)))
        try:
            for repeats in (5, 1):
                out = agent.run_job(f"j{repeats}", data, "tms", warmup=0, repeats=repeats)
                assert out.status == MEASURED
                done, layers = vb.firmware.result
                assert done.repeats == repeats and {len(L.cpu_cycles) for L in layers} == {repeats}
            assert agent.run_job("j-default", data, "tms").status == MEASURED
            assert vb.firmware.result[0].repeats == 3
        finally:
            agent.close()
