"""`mvpfarm compare`: simulated against measured from every kind of source, the statistics, and
the reports."""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace

import pytest
import serial

from conftest import DATA
from device_agents import vendor_log
from device_agents.fleet import local_fleet
from device_agents.published import load_reports
from device_agents.virtual_board import VirtualBoard
from orchestrator import cli_compare, nightly
from orchestrator import compare as C
from orchestrator import record_sources, run_records
from orchestrator.results_db import ResultsDB
from simulator.profiler import profile_file

ZOO = DATA / "zoo"
REPORTS = ZOO / "device_reports.json"


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mvpfarm")
    cli_compare.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def published():
    return load_reports(REPORTS)


def test_published_reports_against_the_simulator(tmp_path, capsys, published):
    out = tmp_path / "cmp"
    assert _cli(["compare", "--measured", str(REPORTS), "--models", str(ZOO), "--out", str(out),
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {m["model"] for m in d["models"]} == set(published)
    kws = next(m for m in d["models"] if m["model"] == "keyword_spotting")
    sim = profile_file(ZOO / "keyword_spotting.tflite")
    lat = kws["deltas"]["latency_s"]
    assert lat["simulated"] == pytest.approx(sim.summary.latency_s)
    assert lat["measured"] == pytest.approx(0.0365)        # the published board
    assert lat["error_pct"] == pytest.approx(100 * (sim.summary.latency_s / 0.0365 - 1))
    assert kws["deltas"]["ram_bytes"]["error"] == sim.summary.ram_bytes - 37600
    assert len(kws["layers"]) == len(sim.layers) and kws["note"] is None
    L = kws["layers"][1]
    assert L["deltas"]["cpu_cycles"]["simulated"] == sim.layers[1].cpu_cycles
    assert L["deltas"]["cpu_cycles"]["measured"] == published["keyword_spotting"].layers[1].cpu_cycles
    # statistics: MAPE over models, and the opcode bias as sum over sum
    lat_pcts = [abs(m["deltas"]["latency_s"]["error_pct"]) for m in d["models"]]
    assert d["mape_pct"]["models"]["latency_s"] == pytest.approx(sum(lat_pcts) / len(lat_pcts))
    assert d["mape_pct"]["models"]["latency_s"] < 5       # the board model, in-sample: 2.0%
    conv = [L for m in d["models"] for L in m["layers"] if L["opcode"] == "conv_2d"]
    want = 100 * (sum(L["deltas"]["accelerator_cycles"]["simulated"] for L in conv)
                  / sum(L["deltas"]["accelerator_cycles"]["measured"] for L in conv) - 1)
    assert d["bias_per_opcode_pct"]["conv_2d"]["accelerator_cycles"] == pytest.approx(want)
    assert d["bias_per_opcode_pct"]["conv_2d"]["layers"] == len(conv)
    worst = d["worst_layers"]
    errors = [abs(w["deltas"]["latency_s"]["error"]) for w in worst]
    assert len(worst) == 10 and errors == sorted(errors, reverse=True)
    # the files
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "comparison.md").read_text()
    assert "| keyword_spotting | simulator/board | device/published | latency ms |" in md
    assert "Bias per opcode" in md and "scatter.png" in md
    assert "<table>" in (out / "comparison.html").read_text()
    assert json.loads((out / "comparison.json").read_text())["models"] == d["models"]


def test_layers_over_the_threshold_and_on_another_unit(published):
    rec = published["keyword_spotting"]
    sim = profile_file(ZOO / "keyword_spotting.tflite")
    layers = list(rec.layers)
    big = max(range(len(layers)), key=lambda i: layers[i].latency_s)
    layers[big] = replace(layers[big], latency_s=layers[big].latency_s * 1.5,
                          cpu_cycles=int(layers[big].cpu_cycles * 1.5))
    mvp = next(i for i, L in enumerate(layers) if L.accelerator_cycles > 0 and i != big)
    layers[mvp] = replace(layers[mvp], accelerator_cycles=0)
    slow = replace(rec, layers=layers)
    c = C.compare({"keyword_spotting": sim, "extra": profile_file(ZOO / "anomaly_detection.tflite")},
                  {"keyword_spotting": slow, "lonely": rec}, threshold_pct=20)
    flagged = {(L.index, metric) for _, L, metric in c.over_threshold()}
    assert (big, "latency_s") in flagged and (mvp, "mvp_support") in flagged
    assert all(abs(L.deltas[m].error_pct) > 20 for _, L, m in c.over_threshold() if m != "mvp_support")
    assert c.unmatched_simulated == ["extra"] and c.unmatched_measured == ["lonely"]
    assert "Not compared" in c.to_markdown()


def test_csv_of_published_measurements(tmp_path, published):
    """Vendor column names, one row per layer, the model's RAM on a "total" row."""
    raw = json.loads(REPORTS.read_text())
    path = tmp_path / "published.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "Index", "OpCode", "Acc Cycles", "CPU Cycles", "Time (s)", "ram_bytes"])
        for name in ("keyword_spotting", "anomaly_detection"):
            s = raw[name]["summary"]
            w.writerow([name, "total", "", "", "", "", int(s["RAM, Runtime Memory Size (bytes)"])])
            for L in raw[name]["layers"]:
                w.writerow([name, L["Index"], L["OpCode"], L["Acc Cycles"], L["CPU Cycles"], L["Time (s)"], ""])
    from_csv = record_sources.load_csv(path)
    assert set(from_csv) == {"keyword_spotting", "anomaly_detection"}
    sims = {n: profile_file(ZOO / f"{n}.tflite") for n in from_csv}
    a = C.compare(sims, from_csv)
    b = C.compare(sims, {n: published[n] for n in from_csv})
    for x, y in zip(a.models, b.models):
        assert x.deltas["ram_bytes"].measured == y.deltas["ram_bytes"].measured
        assert [L.deltas["cpu_cycles"].measured for L in x.layers] == \
            [L.deltas["cpu_cycles"].measured for L in y.layers]
        assert x.deltas["latency_s"].measured == pytest.approx(sum(L.latency_s for L in published[x.model].layers))
    bad = tmp_path / "bad.csv"
    bad.write_text("model,layer,opcode,cpu_cycles\nkws,0,conv_2d,12k\n")
    with pytest.raises(C.CompareError, match=r"bad.csv: line 2: cpu_cycles = '12k' is not a number"):
        record_sources.load_csv(bad)


def test_vendor_firmware_log_from_a_virtual_board(tmp_path, capsys):
    """A board flashed with the vendor's profiler prints its log; compare reads the saved log."""
    model = ZOO / "anomaly_detection.tflite"
    with VirtualBoard(mode="vendor", seed=2) as vb:
        with serial.Serial(vb.port, vendor_log.BAUD, timeout=0.1) as port:
            vb.flash_model(model.read_bytes())
            text = vendor_log.read_log(port, timeout_s=10)
    log = tmp_path / "board7.log"
    log.write_text(text)
    assert _cli(["compare", "--measured", str(log), "--models", str(model), "--out", str(tmp_path / "c"),
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (m,) = d["models"]
    assert m["model"] == "anomaly_detection" and m["measured_target"] == "device/board7" and m["note"] is None
    sim = profile_file(model)
    assert len(m["layers"]) == len(sim.layers)
    # the silicon runs the published board's numbers for a zoo model: within a few % of the board model
    assert abs(m["deltas"]["latency_s"]["error_pct"]) < 6


def test_run_with_both_kinds_of_target_and_two_runs(tmp_path, capsys):
    results = tmp_path / "results"
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(f'[[models]]\nname = "zoo"\nfiles = ["{ZOO}/keyword_spotting.tflite", '
                          f'"{ZOO}/autoencoder_example.tflite"]\nboards = true\n[boards]\nrepeats = 3\n')
    suite = nightly.load_suite(suite_file)
    with ResultsDB(results) as db:
        run_id = nightly.run_models_entry(suite.models[0], suite, "20250101T000000Z", db)
        boards = local_fleet("brd2601b", 2, seed=5, prefix="nightly-vb")
        try:
            assert nightly.measure_on_boards(boards, suite.models[0], run_id, 3, db) == 0
        finally:
            boards.close()
        sim_only = nightly.run_models_entry(suite.models[0], suite, "20250102T000000Z", db)
    assert _cli(["compare", "--run", run_id, "--results", str(results), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {m["model"] for m in d["models"]} == {"keyword_spotting", "autoencoder_example"}
    kws = next(m for m in d["models"] if m["model"] == "keyword_spotting")
    assert kws["measured_target"] in ("device/nightly-vb-0", "device/nightly-vb-1")
    # the three repeats: their median per layer
    measured = run_records.records_from_run(results, run_id, measured=True)["keyword_spotting"]
    with ResultsDB(results) as db:
        repeats = [json.loads(r[0]) for r in db.conn.execute(
            "SELECT record_json FROM measurements WHERE run_id=? AND variant='keyword_spotting' AND source='device'",
            (run_id,))]
    assert len(repeats) == 3
    assert measured.layers[1].cpu_cycles == sorted(r["layers"][1]["cpu_cycles"] for r in repeats)[1]
    assert kws["deltas"]["cpu_cycles"]["measured"] == measured.summary.cpu_cycles
    assert (results / "compare" / run_id / "scatter.png").is_file()
    # the same comparison from two runs: the simulated side from another run
    assert _cli(["compare", "--simulated", sim_only, "--measured", run_id, "--results", str(results),
                 "--format", "json"]) == 0
    d2 = json.loads(capsys.readouterr().out)
    assert [m["deltas"] for m in d2["models"]] == [m["deltas"] for m in d["models"]]


def test_bad_inputs_are_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    ResultsDB(results).close()
    cases = [
        (["compare", "--run", "nope", "--results", str(results)], "no run 'nope'"),
        (["compare", "--measured", str(tmp_path / "x.json"), "--models", str(ZOO)], "no such file"),
        (["compare", "--measured", str(REPORTS), "--models", str(DATA / "corpus")], "no model is on both sides"),
        (["compare", "--measured", str(REPORTS)], "simulated side"),
    ]
    (tmp_path / "junk.json").write_text('{"a": 1')
    cases.append((["compare", "--measured", str(tmp_path / "junk.json"), "--models", str(ZOO)], "not a JSON file"))
    for argv, needle in cases:
        assert _cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("mvpfarm: error: ") and err.count("\n") == 1 and needle in err, (argv, err)
