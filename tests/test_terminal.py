"""What a user sees in the terminal: a sweep's log lines without a terminal, --quiet, the summary's
counts, the ranking table with the base's numbers, target names, read-only commands that create
nothing, and an agent that stops on SIGTERM with one line."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.target_names import target_name
from orchestrator.terminal import table

BIN = Path(sys.executable).parent
ENV = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")

# the base, one tip that applies and one that does not (an autoencoder has no convolutions)
SWEEP = """
name = "{name}"
base = {{ builtin = "fc_autoencoder" }}
mode = "one-at-a-time"
[tips]
dense_units = [0.5]
filters = [0.5]
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""


def mvpfarm(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mvpfarm"), *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_target_names_say_what_the_target_is():
    assert target_name("simulator/mvp/board") == "simulator mvp, board timing"
    assert target_name("simulator/none/vendor-sim") == "simulator no MVP, vendor-sim timing"
    assert target_name("board/brd2601b/mvp") == "board brd2601b mvp"
    assert target_name("board/brd2601b") == "board brd2601b"
    assert target_name("something else") == "something else"


def test_terminal_tables_keep_columns_aligned_whatever_the_cells_hold():
    rows = [["a-very-long-run-id-" + "x" * 40, "finished", 12], ["short", "[bold]running[/bold]", 3]]
    lines = table(["run", "status", "measured"], rows, [False, False, True]).splitlines()
    assert "[bold]running[/bold]" in lines[-1]            # cells are text, never rich markup
    status_at = {ln.index("finished") if "finished" in ln else ln.index("[bold]") for ln in lines[2:]}
    assert len(status_at) == 1                             # the status column starts at one place
    assert lines[2].endswith("12") and lines[3].endswith(" 3") and len(lines[2]) == len(lines[3])


@pytest.mark.slow
def test_a_sweep_without_a_terminal_logs_one_line_per_measurement(tmp_path):
    results = tmp_path / "results"
    (tmp_path / "a.toml").write_text(SWEEP.format(name="first-hour"))
    run = mvpfarm("sweep", "run", tmp_path / "a.toml", "--results", results)
    assert run.returncode == 0, run.stderr[-3000:]
    err = run.stderr.splitlines()
    assert err[0] == "mvpfarm: starting a local Ray on 127.0.0.1"
    assert err[1].startswith("mvpfarm: building the base model (builtin = fc_autoencoder")
    counted = [ln for ln in err if ln.startswith("[")]
    assert len(err) == 2 + len(counted) and len(counted) == 3       # nothing of Ray's own reaches the user
    assert sorted(int(re.match(r"\[(\d)/3\]", ln).group(1)) for ln in counted) == [1, 2, 3]
    by_variant = {ln.split("] ", 1)[1].split(" on ")[0]: ln for ln in counted}
    assert re.fullmatch(r"\[\d/3\] base on simulator mvp, board timing: [\d.]+ ms, [\d.]+ kB RAM, "
                        r"[\d.]+ kB flash", by_variant["base"])
    assert "filters=0.5 on simulator mvp, board timing: not applicable: " in by_variant["filters=0.5"]
    assert "Token authentication" not in run.stderr and "core_worker" not in run.stderr

    out = run.stdout
    assert "1 measured" not in out and ": 2 measured, 1 not applicable, 0 failed (" in out
    # the ranking: the base's own numbers, then each variant's numbers beside its change
    rank = out[out.index("Tip ranking"):]
    assert "on simulator mvp, board timing (ranked by latency, lower is better)" in rank
    assert "(objective)" not in rank
    base_line = next(ln for ln in rank.splitlines() if ln.startswith("base"))
    assert re.search(r"\d ms +[\d.]+ kB +[\d.]+ kB", base_line)
    half = next(ln for ln in rank.splitlines() if "dense_units=0.5" in ln and ln.lstrip().startswith("1"))
    assert re.search(r"ms +[-+][\d.]+% +[\d.]+ kB +[-+][\d.]+% +[\d.]+ kB +-[\d.]+%", half)

    # --quiet: the summary only; a second run of another sweep on the same build cache
    (tmp_path / "b.toml").write_text(SWEEP.format(name="first-hour-quiet"))
    quiet = mvpfarm("sweep", "run", tmp_path / "b.toml", "--results", results, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    assert "2 measured, 1 not applicable, 0 failed" in quiet.stdout

    listed = mvpfarm("results", "list", "--results", results)
    head, _, *rows = listed.stdout.splitlines()
    assert head.split() == ["run", "status", "measured", "not", "applicable", "failed", "updated"]
    assert sorted(r.split()[1:5] + [r.split()[0][:-11]] for r in rows) == \
        [["finished", "2", "1", "0", "first-hour"], ["finished", "2", "1", "0", "first-hour-quiet"]]
    assert len({r.index("finished") for r in rows}) == 1     # aligned, whatever the run ids' lengths


def test_read_only_commands_create_nothing(tmp_path):
    missing = tmp_path / "nothing-here"
    for args in (["rank", "latest"], ["results", "export", "latest", "--format", "csv"]):
        r = mvpfarm(*args, "--results", missing, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no runs in" in r.stderr, r.stderr
    r = mvpfarm("results", "list", "--results", missing, timeout=120)
    assert r.returncode == 0 and "no runs in" in r.stdout
    assert not missing.exists()


@pytest.mark.slow
def test_agent_start_stops_on_sigterm_with_one_line(tmp_path):
    from device_agents.virtual_board import VirtualBoard
    with VirtualBoard(board_id="vb-term", seed=3) as vb:
        agent = subprocess.Popen([str(BIN / "mvpfarm"), "agent", "start", "--port", vb.port], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            before = []
            for line in agent.stderr:                 # wait until it says it is up
                before.append(line)
                if line.startswith("agents running"):
                    break
            agent.send_signal(signal.SIGTERM)
            _, rest = agent.communicate(timeout=120)
        finally:
            if agent.poll() is None:
                agent.kill()
    assert agent.returncode == 0, "".join(before) + rest
    assert rest == "mvpfarm: agents stopped\n"       # no Ray crash dump


def test_emulate_shows_float_outputs_as_floats_and_int8_as_integers(capsys):
    from orchestrator import cli
    data = Path(__file__).parent / "data"
    assert cli.main(["emulate", str(data / "corpus" / "mlp_float_io.tflite"), "--count", "1"]) == 0
    out = capsys.readouterr().out
    row = out.splitlines()[-1]
    assert "output (float)" in out and "0.0000" in row           # a zero of a float output, not "0"
    values = row[row.index("[") + 1:row.index("]")].split(", ")
    assert all(re.fullmatch(r"-?\d+\.\d{4}|\.\.\.", v) for v in values), values
    assert cli.main(["emulate", str(data / "zoo" / "tflite_micro_speech.tflite"), "--count", "1"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert all(re.fullmatch(r"-?\d+", v) for v in row[row.index("[") + 1:row.index("]")].split(", "))


def test_compare_prints_a_short_summary_and_says_what_its_counts_leave_out(tmp_path, capsys):
    from orchestrator import cli
    zoo = Path(__file__).parent / "data" / "zoo"
    assert cli.main(["compare", "--measured", str(zoo / "device_reports.json"), "--models", str(zoo),
                     "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 40                                   # not the 281-line report
    assert lines[0].startswith("Simulated against measured: 8 model(s)")
    assert sum(1 for ln in lines if ln.startswith("keyword_spotting ")) >= 1
    assert re.search(r"left out: the \d+ layer\(s\) under 1% of their model's time", out)
    assert lines[-1].startswith("full report: ") and str(tmp_path / "cmp" / "comparison.md") in lines[-1]
    assert "left out: the" in (tmp_path / "cmp" / "comparison.md").read_text()
