"""A sweep over boards of both firmwares: two virtual boards speaking mvpfarm's protocol and two
running the vendor's model-profiler firmware, flashed through the stand-in Commander (a real
subprocess). One vendor board's Commander fails on every write, the other's log stops half-way
from its second model on; every variant is still measured exactly once, the faulty boards end
quarantined with their reasons, and each row names the firmware that measured it."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from orchestrator.sweep_file import SweepFileError, load  # noqa: E402

KIND = "brd2601b"
KEY = f"board/{KIND}/mvp"
# 8 variants of a small DS-CNN: the base and 7 tip levels that apply
SWEEP = """
name = "vendor-boards"
base = { builtin = "ds_cnn", kwargs = { input_shape = [25, 10, 1], filters = 16, n_blocks = 2 } }
mode = "one-at-a-time"
[tips]
filters = [0.5, 0.25]
strides = [2]
kernel_size = [1, 2]
pooling = ["max", "avg"]
[[targets]]
kind = "board"
board = "brd2601b"
virtual = 4
virtual_vendor = 2
faults = ["2=flashfail", "3=truncate:1"]
"""
N_VARIANTS = 8


def test_vendor_faults_only_on_vendor_boards(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.replace('"2=flashfail"', '"1=flashfail"'))
    with pytest.raises(SweepFileError, match=r"targets\[0\]\.faults: fault flashfail on board 1: only boards "
                                             r"with the vendor's firmware take it \(boards 2\.\.3\)"):
        load(f)
    f.write_text(SWEEP.replace("virtual_vendor = 2", "virtual_vendor = 5"))
    with pytest.raises(SweepFileError, match=r"targets\[0\]\.virtual_vendor: 5 is not a whole number of the 4"):
        load(f)


@pytest.mark.slow
def test_sweep_over_both_firmwares_measures_each_variant_once(tmp_path, commander_exe):
    from device_agents.agent import AgentConfig
    from orchestrator import fanout
    started = fanout.connect(None, num_cpus=2, resources={f"board:{KIND}": 4})
    try:
        f = tmp_path / "sweep.toml"
        f.write_text(SWEEP)
        sweep = load(f)
        # two faults in a row quarantine a board: a vendor board's first failing job does it
        config = AgentConfig(exchange_timeout_s=2.0, profile_timeout_s=2.0, boot_timeout_s=1.0, max_faults=2,
                             commander=str(commander_exe))
        res = fanout.run(sweep, tmp_path / "results", progress=False, board_config=config)
    finally:
        if started:
            import ray
            ray.shutdown()
    with sqlite3.connect(tmp_path / "results" / "mvpfarm.sqlite") as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM measurements WHERE target=?", (KEY,))]
    assert sorted(r["variant"] for r in rows) == sorted(set(r["variant"] for r in rows))
    assert len(rows) == N_VARIANTS and {r["status"] for r in rows} == {"measured"}
    states = {s["board_id"]: s for s in res.boards}
    vendor = {b: s for b, s in states.items() if s["firmware_kind"] == "mltk-profiler"}
    protocol = {b: s for b, s in states.items() if s["firmware_kind"] == "mvpfarm-protocol"}
    assert len(vendor) == len(protocol) == 2
    by_board: dict[str, int] = {}
    for r in rows:
        rec = json.loads(r["record_json"])
        assert r["source"] == "device" and r["firmware"] == rec["target"]["firmware"]
        board = rec["target"]["board"]
        assert r["firmware"] == ("mltk-profiler" if board in vendor else "mvpfarm-protocol")
        by_board[board] = by_board.get(board, 0) + 1
    assert by_board == {b: s["jobs_measured"] for b, s in states.items() if s["jobs_measured"]}
    # the vendor board whose Commander fails on every write, and the one whose log stops half-way
    failing = next(s for s in vendor.values() if "Flash programming failed" in s["reason"])
    cut = next(s for s in vendor.values() if s is not failing)
    assert failing["state"] == "quarantined" and failing["jobs_measured"] == 0 and failing["program_cycles"] == 0
    assert "exit status 1" in failing["reason"]
    assert cut["state"] == "quarantined" and cut["jobs_measured"] == 1 and "no output for 2 s" in cut["reason"], cut
    assert cut["program_cycles"] == 2              # one model measured, a second written (once) and never read
    assert {r["firmware"] for r in rows} == {"mltk-profiler", "mvpfarm-protocol"}
    assert all(s["state"] == "idle" for s in protocol.values())
