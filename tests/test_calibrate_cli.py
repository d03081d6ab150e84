"""`mvpfarm calibrate`: leave-one-model-out on the published boards, recovery of a deliberately
off virtual-board silicon, and the fitted model in use."""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import DATA
from device_agents.agent import MEASURED, AgentConfig, BoardAgent
from device_agents.silicon_model import SiliconModel, SiliconParams
from device_agents.virtual_board import VirtualBoard
from orchestrator import cli_compare
from simulator.timing import load_timing_model

ZOO = DATA / "zoo"
CORPUS = DATA / "corpus"
REPORTS = ZOO / "device_reports.json"
# Layers the vendor reports as unsupported yet the MVP runs (its FC and depthwise quirks): the
# virtual board's silicon model drops their accelerator cycles (see the report to the lead), so
# their numbers follow neither timing model.
QUIRKY = {"keyword_spotting_mobilenetv2", "tflite_micro_speech", "cnn_in16", "cnn_in48", "fc_accum1025_odd",
          "fc_accum4000", "fc_accum8192"}


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mvpfarm")
    cli_compare.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_published_boards_leave_one_model_out(tmp_path, capsys):
    """Recorded (README): LOO latency error per model on the published boards, mean 7.4%:
    image_example1 -24.2%, keyword_spotting -2.3%, anomaly_detection -3.9%, tflite_micro_speech +2.2%,
    audio_example1 -8.3%, autoencoder_example -0.7%, keyword_spotting_mobilenetv2 -14.7%,
    rock_paper_scissors -2.9%. The shipped `board` model was fitted on all eight (in-sample 2.0%), so a
    refit cannot beat it on these records and is refused; against vendor-sim (20.2%) it is saved."""
    results = tmp_path / "results"
    assert _cli(["calibrate", "--measured", str(REPORTS), "--models", str(ZOO), "--results", str(results),
                 "--format", "json", "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    errors = {r["model"]: r["error"] for r in report["models"]}
    assert set(errors) == set(json.loads(REPORTS.read_text()))
    assert report["mean_abs_error"] == pytest.approx(0.074, abs=0.01)
    assert errors["keyword_spotting"] == pytest.approx(-0.023, abs=0.01)
    assert errors["rock_paper_scissors"] == pytest.approx(-0.029, abs=0.01)
    # logistic: no other model has it; priced by its kernel family (softmax: a fixed-point exp per element)
    assert errors["autoencoder_example"] == pytest.approx(-0.007, abs=0.03)
    assert report["base"]["name"] == "board" and report["base"]["mean_abs_error"] < 0.03

    assert _cli(["calibrate", "--measured", str(REPORTS), "--models", str(ZOO), "--results", str(results)]) == 1
    out, err = capsys.readouterr()
    assert "keyword_spotting" in out and "mean absolute error" in out and "7.4%" in out
    assert "refusing to save" in err and not (results / "timing_models").exists()

    assert _cli(["calibrate", "--measured", str(REPORTS), "--models", str(ZOO), "--results", str(results),
                 "--base", "vendor-sim", "--name", "zoo-fit"]) == 0
    assert "saved" in capsys.readouterr().out
    saved = load_timing_model("zoo-fit", results_dir=results)
    assert saved.meta["cv"]["mean_abs_error"] == pytest.approx(0.074, abs=0.01)
    # and compare uses it by name from the same results folder
    assert _cli(["compare", "--measured", str(REPORTS), "--models", str(ZOO / "keyword_spotting.tflite"),
                 "--timing", "zoo-fit", "--results", str(results), "--format", "json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["models"][0]["simulated_target"] == "simulator/zoo-fit"
    assert abs(cmp["models"][0]["deltas"]["latency_s"]["error_pct"]) < 5


def _off_silicon(path: Path) -> Path:
    """A silicon deliberately unlike the `board` model: more stall cycles per fp16 pair and int8
    load, a costlier launch and array switch, MVP kernels' CPU work 35% dearer, CPU kernels 20%
    cheaper."""
    board = load_timing_model("board")
    p = board.accelerator_params()
    acc = board.with_accelerator_params({"loads/binary16c": p["loads/binary16c"] + 0.6,
                                         "loads/int8": p["loads/int8"] + 0.4, "programs": p["programs"] + 60,
                                         "load_switches": p["load_switches"] + 1.5})
    cpu = json.loads(json.dumps(acc.cpu))
    for key, coefs in cpu["kernels"].items():
        for feature in coefs:
            coefs[feature] *= 1.35 if "/mvp" in key else 0.8
    path.write_text(json.dumps(replace(acc, name="off-silicon", cpu=cpu).to_dict()))
    return path


def test_calibration_recovers_an_off_virtual_silicon(tmp_path, capsys):
    silicon = SiliconModel(SiliconParams(timing=str(_off_silicon(tmp_path / "silicon.json")),
                                         accelerator_scale=1.0, cpu_scale=1.0), reports_path=None)
    paths = [p for p in sorted(ZOO.glob("*.tflite")) + sorted(CORPUS.glob("*.tflite")) if p.stem not in QUIRKY]
    records = []
    with tempfile.TemporaryDirectory() as locks, VirtualBoard(seed=3, silicon=silicon) as vb:
        agent = BoardAgent(vb.port, AgentConfig(lock_dir=locks))
        try:
            for p in paths:
                outcome = agent.run_job(p.stem, p.read_bytes(), p.stem)
                assert outcome.status == MEASURED, outcome.reason
                records.append(outcome.record.to_dict())
        finally:
            agent.close()
    assert len(records) >= 40
    rec_file = tmp_path / "boards.json"
    rec_file.write_text(json.dumps(records))
    results = tmp_path / "results"
    argv = ["calibrate", "--measured", str(rec_file), "--models", str(ZOO), str(CORPUS), "--results", str(results),
            "--name", "vb-fit"]
    assert _cli(argv + ["--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    before, after = report["base"]["mean_abs_error"], report["mean_abs_error"]
    assert before > 0.10, "the silicon really is off from the simulator's board model"
    assert after * 4 <= before, (before, after)        # measured: 16.5% -> 2.4%
    saved = json.loads((results / "timing_models" / "vb-fit.json").read_text())
    assert saved["cv"]["mean_abs_error"] == pytest.approx(after, abs=1e-4)
    assert sorted(saved["fitted_from"]) == sorted(p.stem for p in paths)


def test_calibrate_errors_are_one_line(tmp_path, capsys):
    assert _cli(["calibrate", "--measured", str(tmp_path / "nothing.json"), "--models", str(ZOO)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mvpfarm: error: ") and err.count("\n") == 1 and "no such file" in err
    assert _cli(["calibrate", "--measured", str(REPORTS), "--models", str(CORPUS), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".tflite" in err
    assert _cli(["calibrate", "--models", str(ZOO)]) == 2
    assert "--measured" in capsys.readouterr().err
