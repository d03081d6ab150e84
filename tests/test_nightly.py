"""The nightly regression run: judging against a baseline (exact regressions, board noise), the
reports, and the one-line exit-2 cases. Runs are built from real simulator profiles and real
virtual-board measurements (agents over ptys); test_nightly_e2e.py runs a real suite end to end."""
from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import DATA
from device_agents.fleet import local_fleet
from device_agents.silicon_model import SiliconModel, SiliconParams
from orchestrator import baseline as bl
from orchestrator import cli_compare, nightly
from orchestrator.results_db import DB_NAME, ResultsDB

ZOO = DATA / "zoo"
MODELS = ["autoencoder_example", "anomaly_detection"]
REPEATS = 3
BOARD_MODEL = "autoencoder_example"      # CPU-bound: its latency follows its CPU cycles


def _suite(tmp_path: Path, models=MODELS, extra: str = "") -> Path:
    """Entry "zoo": the models on the simulator; entry "bench": the CPU-bound autoencoder on the
    simulator and on the boards."""
    files = ", ".join(f'"{ZOO / m}.tflite"' for m in models)
    path = tmp_path / "suite.toml"
    path.write_text(f'name = "t"\n[[models]]\nname = "zoo"\nfiles = [{files}]\n'
                    f'targets = [{{ accelerator = "mvp", timing = "board" }}]\n'
                    f'[[models]]\nname = "bench"\nfiles = ["{ZOO / BOARD_MODEL}.tflite"]\nboards = true\n'
                    f"[boards]\nrepeats = {REPEATS}\nvirtual = 2\n{extra}")
    return path


def _silicon(cpu_scale: float = 1.0) -> SiliconModel:
    # the simulator's profile scaled (no published report), so that a scale moves exactly the CPU
    return SiliconModel(SiliconParams(accelerator_scale=1.1, cpu_scale=1.04 * cpu_scale), reports_path=None)


def _night(suite: nightly.Suite, results: Path, nightly_id: str, seed: int, cpu_scale: float = 1.0,
           tamper=None) -> nightly.Measured:
    """Tonight's runs: the simulator profiles (optionally tampered with), then the boards."""
    stamp = nightly_id.rsplit("-", 1)[1]
    run_ids = {}
    with ResultsDB(results) as db:
        for entry in suite.models:
            run_ids[entry.name] = nightly.run_models_entry(entry, suite, stamp, db)
        if tamper is not None:
            rows = db.conn.execute("SELECT id, variant, record_json FROM measurements WHERE run_id=?",
                                   (run_ids["zoo"],)).fetchall()
            for row_id, variant, text in rows:
                rec = json.loads(text)
                if tamper(variant, rec):
                    db.conn.execute("UPDATE measurements SET record_json=? WHERE id=?", (json.dumps(rec), row_id))
            db.conn.commit()
        boards = local_fleet("brd2601b", 2, seed, silicon=_silicon(cpu_scale), prefix="nightly-vb")
        try:
            for entry in suite.models:
                if entry.boards:
                    assert nightly.measure_on_boards(boards, entry, run_ids[entry.name], REPEATS, db) == 0
        finally:
            boards.close()
    return nightly.Measured(run_ids, boards_ran=True)


def _conclude(suite, results, nightly_id, measured, update=False):
    with bl.History(results) as h:
        base = h.last_passing(suite.name)
    return nightly.conclude(suite, results, nightly_id, measured, base, update_baseline=update)


def _raise_layer_ram(variant: str, rec: dict) -> bool:
    if variant != "anomaly_detection":
        return False
    rec["layers"][3]["ram_bytes"] += 1        # one byte more scratch in one layer
    return True


def test_regressions_are_named_exactly_and_noise_does_not_fail(tmp_path):
    results = tmp_path / "results"
    suite = nightly.load_suite(_suite(tmp_path))
    first = _conclude(suite, results, "t-20250101T000000Z", _night(suite, results, "t-20250101T000000Z", seed=1),
                      update=True)
    assert first.status == "accepted" and first.exit_code == 0 and first.baseline_id is None

    # a rerun with no change: the boards measure again (other noise), the simulator repeats itself
    again = _conclude(suite, results, "t-20250102T000000Z", _night(suite, results, "t-20250102T000000Z", seed=7))
    assert again.exit_code == 0 and again.regressed == [] and again.status == "passed"
    assert again.baseline_id == first.nightly_id
    moved = [f for f in again.findings if f.noise and f.change]
    assert len(moved) == 3, "the board's cycles and latency moved within their noise"
    assert all(f.status == "ok" for f in moved)
    assert all(abs(f.change_pct) < 1.0 for f in moved)

    # one layer's RAM up by one byte, and the board's CPU 5% slower on every model
    bad = _conclude(suite, results, "t-20250103T000000Z",
                    _night(suite, results, "t-20250103T000000Z", seed=9, cpu_scale=1.05, tamper=_raise_layer_ram))
    assert bad.exit_code == 1 and bad.status == "regressed"
    assert bad.baseline_id == again.nightly_id
    expected = {"zoo/anomaly_detection/simulator/mvp/board:layers[3].ram_bytes",
                # a slower CPU moves the board's CPU counter and, the model being CPU-bound, its latency
                "bench/autoencoder_example/board/brd2601b:cpu_cycles",
                "bench/autoencoder_example/board/brd2601b:latency_s"}
    assert set(bad.regressed) == expected
    ram = next(f for f in bad.findings if f.key.endswith("layers[3].ram_bytes") and "anomaly" in f.key)
    assert ram.change == 1
    cpu = next(f for f in bad.findings if f.key == "bench/autoencoder_example/board/brd2601b:cpu_cycles")
    assert cpu.change_pct == pytest.approx(5.0, abs=0.5) and cpu.change > cpu.threshold > 0
    lines = bad.summary_lines()
    assert [ln.split()[1].rstrip(":") for ln in lines[1:]] == sorted(expected)

    # the reports say the same
    report = (bad.out_dir / "report.md").read_text()
    assert all(k in report for k in expected)
    assert "regressed" in (bad.out_dir / "report.html").read_text()
    junit = ET.parse(bad.out_dir / "junit.xml").getroot()
    failures = {c.get("name"): c.find("failure") for c in junit.iter("testcase") if c.find("failure") is not None}
    assert set(failures) == {"anomaly_detection/simulator/mvp/board", "autoencoder_example/board/brd2601b"}
    assert "layers[3].ram_bytes" in failures["anomaly_detection/simulator/mvp/board"].get("message")
    assert list(bad.out_dir.glob("trend_time.png"))

    # a regressed night is not a baseline: tomorrow is judged against the last passing night
    with bl.History(results) as h:
        assert h.last_passing("t").nightly_id == again.nightly_id
    accepted = _conclude(suite, results, "t-20250104T000000Z",
                         _night(suite, results, "t-20250104T000000Z", seed=11, cpu_scale=1.05,
                                tamper=_raise_layer_ram), update=True)
    assert accepted.exit_code == 0 and accepted.regressed == sorted(expected)
    with bl.History(results) as h:
        assert h.last_passing("t").nightly_id == accepted.nightly_id


def test_a_pinned_run_is_a_baseline(tmp_path):
    results = tmp_path / "results"
    suite = nightly.load_suite(_suite(tmp_path, models=["anomaly_detection"]))
    m1 = _night(suite, results, "t-20250101T000000Z", seed=1)
    pinned = m1.run_ids["zoo"]
    with bl.History(results) as h:
        base = nightly.resolve_baseline(h, suite, results, pinned, update=False)
    assert base.nightly_id == pinned
    m2 = _night(suite, results, "t-20250102T000000Z", seed=2, tamper=_raise_layer_ram)
    res = nightly.conclude(suite, results, "t-20250102T000000Z", m2, base)
    assert res.exit_code == 1 and res.baseline_id == pinned
    assert res.regressed == ["zoo/anomaly_detection/simulator/mvp/board:layers[3].ram_bytes"]
    # the pinned run holds the zoo entry only: the bench entry's numbers are new, not failures
    assert {f.status for f in res.findings if f.key.startswith("bench/")} == {"new"}


def test_thresholds_are_configurable_per_metric(tmp_path):
    """With a 10% allowance on the board's CPU cycles, the same 5% slowdown passes them."""
    results = tmp_path / "results"
    suite = nightly.load_suite(_suite(tmp_path, models=["anomaly_detection"], extra=(
        '[thresholds]\n"device.cpu_cycles" = { min_change = 0.10, k_sigma = 5 }\n'
        '"device.latency_s" = { min_change = 0.10, k_sigma = 5 }\n')))
    _conclude(suite, results, "t-20250101T000000Z", _night(suite, results, "t-20250101T000000Z", seed=1), update=True)
    res = _conclude(suite, results, "t-20250102T000000Z",
                    _night(suite, results, "t-20250102T000000Z", seed=2, cpu_scale=1.05))
    assert res.exit_code == 0, res.regressed
    cpu = next(f for f in res.findings if f.key.endswith("board/brd2601b:cpu_cycles"))
    assert cpu.change_pct == pytest.approx(5.0, abs=0.5) and cpu.threshold == pytest.approx(0.10 * cpu.baseline)


def test_noise_comes_from_repeated_measurements():
    base = bl.Metric(100.0, bl.MEASURED, "device", [99.0, 100.0, 101.0])
    noisy = bl.Metric(103.0, bl.MEASURED, "device", [100.0, 103.0, 106.0])
    quiet = bl.Metric(103.0, bl.MEASURED, "device", [102.9, 103.0, 103.1])
    th = {"device": {"min_change": 0.01, "k_sigma": 3.0}}
    assert bl.judge_metric("s:cpu_cycles", base, noisy, th).status == "ok"       # 3 is within 3 sigma of ~1.8
    f = bl.judge_metric("s:cpu_cycles", base, quiet, th)
    assert f.status == "regressed" and f.noise == pytest.approx(((2 + 0.02) / 4 * (2 / 3)) ** 0.5)
    det = bl.Metric(4096.0, bl.DETERMINISTIC, "simulator")
    assert bl.judge_metric("s:ram_bytes", det, replace(det, value=4097.0), {}).status == "regressed"
    assert bl.judge_metric("s:ram_bytes", det, det, {}).status == "ok"


# ------------------------------------------------------------------ exit status 2: one line, nothing written

def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mvpfarm")
    cli_compare.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} \
        if path.exists() else {}


def _one_line_error(capsys, *needles) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("mvpfarm: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_missing_baseline_is_one_line_and_writes_nothing(tmp_path, capsys):
    suite = _suite(tmp_path)
    results = tmp_path / "results"
    assert _cli(["nightly", "--suite", str(suite), "--results", str(results)]) == 2
    _one_line_error(capsys, "no baseline", "--update-baseline")
    assert not results.exists()
    # with a result table but no passing night of this suite, and with a pinned baseline that is not there
    results.mkdir()
    ResultsDB(results).close()
    before = _tree(results)
    assert _cli(["nightly", "--suite", str(suite), "--results", str(results)]) == 2
    _one_line_error(capsys, "no baseline for suite 't'")
    assert _cli(["nightly", "--suite", str(suite), "--results", str(results), "--baseline", "t-1999"]) == 2
    _one_line_error(capsys, "t-1999")
    assert _tree(results).keys() == before.keys() and not (results / "nightly").exists()
    with ResultsDB(results) as db:
        assert db.runs() == []


def test_empty_suite_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text('name = "empty"\n[boards]\nvirtual = 1\n')
    assert _cli(["nightly", "--suite", str(empty), "--results", str(tmp_path / "r"), "--update-baseline"]) == 2
    _one_line_error(capsys, "empty suite", str(empty))
    no_files = tmp_path / "nofiles.toml"
    no_files.write_text('[[models]]\nname = "x"\nfiles = []\n')
    assert _cli(["nightly", "--suite", str(no_files), "--results", str(tmp_path / "r"), "--update-baseline"]) == 2
    _one_line_error(capsys, "empty suite")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "x"\nfiles = ["nowhere/*.tflite"]\n')
    assert _cli(["nightly", "--suite", str(bad), "--results", str(tmp_path / "r"), "--update-baseline"]) == 2
    _one_line_error(capsys, "models[0].files", "matches no file")
    assert not (tmp_path / "r").exists()


def test_corrupt_result_file_is_one_line_and_is_left_alone(tmp_path, capsys):
    suite = _suite(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    (results / DB_NAME).write_bytes(b"this is not a database, it was truncated by a full disk\n" * 20)
    before = _tree(results)
    assert _cli(["nightly", "--suite", str(suite), "--results", str(results)]) == 2
    _one_line_error(capsys, "corrupt result file", DB_NAME)
    assert _cli(["nightly", "--suite", str(suite), "--results", str(results), "--update-baseline"]) == 2
    _one_line_error(capsys, "corrupt result file")
    assert _tree(results) == before


def test_corrupt_baseline_snapshot_is_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    suite_path = _suite(tmp_path, models=["anomaly_detection"])
    suite = nightly.load_suite(suite_path)
    _conclude(suite, results, "t-20250101T000000Z", _night(suite, results, "t-20250101T000000Z", seed=1), update=True)
    with ResultsDB(results) as db:
        db.conn.execute("UPDATE nightly_runs SET metrics_json = '{\"half a snapsh' ")
        db.conn.commit()
    runs_before = len(ResultsDB(results).runs())
    before = {p for p in (results / "nightly").iterdir()}
    assert _cli(["nightly", "--suite", str(suite_path), "--results", str(results)]) == 2
    _one_line_error(capsys, "corrupt nightly snapshot", "t-20250101T000000Z")
    assert len(ResultsDB(results).runs()) == runs_before
    assert {p for p in (results / "nightly").iterdir()} == before


def _trend_nights() -> tuple[list[bl.Night], list[str]]:
    """Four nights of 22 series: real simulator profiles of the zoo (8 models on two targets, 6 on a
    third); on the last two nights one series' arena grows 2% and another's latency 3%."""
    from simulator.profiler import profile_model
    targets = [("mvp", "board"), ("none", "board"), ("mvp", "vendor-sim")]
    models = sorted(p.stem for p in ZOO.glob("*.tflite"))
    snapshot, series = {}, []
    for k, (acc, timing) in enumerate(targets):
        for m in models[:6] if k == 2 else models:
            s = f"zoo/{m}/simulator/{acc}/{timing}"
            series.append(s)
            rec = profile_model((ZOO / f"{m}.tflite").read_bytes(), accelerator=acc, timing=timing, name=m)
            for path, v in bl.record_metrics(rec).items():
                snapshot[f"{s}:{path}"] = bl.Metric(v, bl.DETERMINISTIC, "simulator")
    nights = []
    for i in range(4):
        snap = dict(snapshot)
        if i >= 2:
            k = f"{series[0]}:ram_bytes"
            snap[k] = bl.Metric(snap[k].value * 1.02, bl.DETERMINISTIC, "simulator")
            k = f"{series[-1]}:latency_s"
            snap[k] = bl.Metric(snap[k].value * 1.03, bl.DETERMINISTIC, "simulator")
        nights.append(bl.Night(f"t-2025010{i + 1}T030000Z", "t", "passed", None, {}, "", snap))
    return nights, series


def test_trends_are_small_multiples_per_metric_family(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.colors import to_hex
    from orchestrator.nightly_report import FAMILIES, _series_title, plot_trends, trend_changes, trend_figure
    nights, series = _trend_nights()
    assert len(series) == 22
    paths = plot_trends(nights, tmp_path)
    assert [p.name for p in paths] == ["trend_memory.png", "trend_time.png", "trend_counts.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    changes = trend_changes(nights)
    labels = [n.nightly_id for n in nights]
    for family, metrics in FAMILIES[:3]:
        fig = trend_figure(family, changes[family], labels)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        # a panel per series, every series once, titled by its model and target name
        assert sorted(ax.get_title() for ax in panels) == sorted(_series_title(s) for s in series)
        # shared axes: one y range for the family
        assert len({ax.get_ylim() for ax in panels}) == 1
        # one legend, an entry per metric of the family, no colour twice, the same colour in every panel
        (legend,) = fig.legends
        entries = {t.get_text(): to_hex(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
        assert list(entries) == list(metrics)
        assert len(set(entries.values())) == len(entries)
        for ax in panels:
            assert {ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines() if ln.get_label() in entries} \
                == entries
        # only the series that moved have a red title; the change drawn is the one made
        red = {ax.get_title() for ax in panels if ax.title.get_color() != "black"}
        moved = {"memory": {_series_title(series[0])}, "time": {_series_title(series[-1])}, "counts": set()}
        assert red == moved[family]
        matplotlib.pyplot.close(fig)
    assert changes["memory"][series[0]]["ram_bytes"][-1][1] == pytest.approx(2.0)
    assert changes["time"][series[-1]]["latency_s"][-1][1] == pytest.approx(3.0)
    assert changes["memory"][series[0]]["flash_bytes"][-1][1] == 0.0
