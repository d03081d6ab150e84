"""Tip rankings from result rows: changes against the base, objectives, Pareto front, notes."""
import pytest

from orchestrator.ranking import RankingError, change_pct, pareto_front, rank

T = "simulator/mvp/vendor-sim"


def r(variant, latency_s, ram, flash, status="measured", error=None, unsupported=0, on_mvp=5, cpu=1000, acc=2000):
    tip, _, level = variant.partition("=")
    return {"variant": variant, "tip": tip, "level": level, "target": T, "status": status, "error": error,
            "latency_s": latency_s, "ram_bytes": ram, "flash_bytes": flash, "n_unsupported": unsupported,
            "n_layers_on_mvp": on_mvp, "cpu_cycles": cpu, "accelerator_cycles": acc}


ROWS = [
    r("base", 0.010, 100_000, 50_000),
    r("filters=0.5", 0.006, 70_000, 25_000, cpu=600, acc=1200),
    r("input_size=0.5", 0.004, 30_000, 50_000, unsupported=2, on_mvp=3),
    r("pooling=max", 0.007, 80_000, 50_100),
    r("input_dtype=float32", 0.0101, 104_000, 50_200),
    r("strides=2", 0.003, 300_000, 50_000, status="failed", error="too large for the board: RAM 300000 B > 262144 B"),
    {**r("dense_units=0.5", None, None, None, status="failed", error="not applicable: no hidden Dense layers")},
]


def test_change_and_pareto():
    assert change_pct(75, 100) == -25.0 and change_pct(1, 0) is None and change_pct(None, 3) is None
    assert pareto_front([(1, 5), (2, 2), (3, 3), (1, 5)]) == [True, True, False, True]


def test_latency_ranking_values_and_order():
    rk = rank(ROWS, run_id="r")
    out = rk.to_json_list()
    assert [e["variant"] for e in out] == ["input_size=0.5", "filters=0.5", "pooling=max", "input_dtype=float32"]
    assert [e["rank"] for e in out] == [1, 2, 3, 4]
    first = out[0]
    assert first["latency_change_pct"] == pytest.approx(-60.0) == first["objective_change_pct"]
    assert first["ram_change_pct"] == pytest.approx(-70.0) and first["flash_change_pct"] == pytest.approx(0.0)
    assert first["mvp_layers_change"] == -2
    assert out[1]["cpu_cycles_change_pct"] == pytest.approx(-40.0)
    assert out[1]["accelerator_cycles_change_pct"] == pytest.approx(-40.0)
    # Pareto over (latency, RAM, flash) with the base: pooling is dominated by filters=0.5
    assert {e["variant"]: e["pareto"] for e in out} == {"input_size=0.5": True, "filters=0.5": True,
                                                        "pooling=max": False, "input_dtype=float32": False}
    notes = "\n".join(rk.notes)
    assert "input_size=0.5 pushes 2 more layer(s) off the MVP: the MVP's limits refuse them" in notes
    assert "strides=2: too large for the board" in notes and "not ranked" in notes
    assert "dense_units=0.5: not applicable" in notes
    assert "rank" in rk.to_table() and "Notes:" in rk.to_table()


def test_mvp_notes_tell_a_fallback_from_a_smaller_graph():
    """Fewer layers on the MVP is a loss only when layers fall back to the CPU; an unrolled GRU over
    fewer time steps has fewer layers everywhere, and a layer the base's MVP refused may fit now."""
    base = dict(r("base", 0.010, 30_000, 36_000, unsupported=3, on_mvp=68), n_layers=135)
    rows = [base, dict(r("input_size=0.5", 0.004, 15_000, 20_000, unsupported=3, on_mvp=32), n_layers=64),
            dict(r("kernel_size=1", 0.008, 30_000, 35_000, unsupported=4, on_mvp=67), n_layers=135),
            dict(r("filters=0.5", 0.006, 20_000, 20_000, unsupported=1, on_mvp=70), n_layers=135)]
    assert rank(rows).notes == [
        "input_size=0.5 has 36 fewer layer(s) on the MVP: the model has 71 fewer layers; none falls back to the CPU",
        "kernel_size=1 pushes 1 more layer(s) off the MVP: the MVP's limits refuse them and they fall back to the CPU",
        "filters=0.5 brings 2 layer(s) onto the MVP that the base runs on the CPU (its limits refused them)"]


def test_other_objectives():
    assert [e["variant"] for e in rank(ROWS, "flash").entries][0] == "filters=0.5"
    assert [e["variant"] for e in rank(ROWS, "ram").entries][0] == "input_size=0.5"
    w = rank(ROWS, "weighted", weights={"latency": 1, "flash": 3}).entries
    by = {e["variant"]: e["objective_change_pct"] for e in w}
    assert by["filters=0.5"] == pytest.approx((1 * -40 + 3 * -50) / 4)
    assert w[0]["variant"] == "filters=0.5"


def test_unrankable():
    with pytest.raises(RankingError, match="base model has no measurement"):
        rank(ROWS[1:], run_id="r")
    with pytest.raises(RankingError, match="objective must be one of"):
        rank(ROWS, "speed")
    with pytest.raises(RankingError, match="base model failed"):
        rank([r("base", None, None, None, "failed", "conversion error: x")] + ROWS[1:2])



def _stored_run(results, run_id: str, variants: dict) -> None:
    """A finished run in a real result table: variant -> the corpus2 model whose simulator record stands in for it."""
    from pathlib import Path

    from orchestrator.results_db import Measurement, ResultsDB
    from simulator.profiler import profile_file
    corpus2 = Path(__file__).parent / "data" / "corpus2"
    with ResultsDB(results) as db:
        db.start_run(run_id, run_id, "s.toml", "0" * 64, "", "one-at-a-time", {"builtin": "ds_cnn"}, 2, 1, {})
        for variant, model in variants.items():
            tip, _, level = variant.partition("=")
            db.write(Measurement(run_id, variant, T, "simulator", "mvp", "vendor-sim", tip=tip, level=level),
                     profile_file(corpus2 / f"{model}.tflite", accelerator="mvp", timing="vendor-sim"))
        db.set_status(run_id, "finished")


def test_a_fallback_note_names_the_layers_and_the_checks(tmp_path):
    """The note that a tip pushes layers off the MVP names them (Keras layer, operator, input shape) and
    the check that refused each, in the terminal table, the report and the JSON alike. Real records of real
    models stand in for a base and its variant: resnet3 (every layer on the MVP) and the Keras MobileNetV2,
    whose MVP refuses three layers."""
    from orchestrator import api, report
    from orchestrator.results_db import ResultsDB
    results = tmp_path / "results"
    _stored_run(results, "r-1", {"base": "resnet3", "input_size=3": "mnv2"})
    rk = api.rank("r-1", results)
    note = ("input_size=3 pushes 3 more layer(s) off the MVP: the MVP's limits refuse block_1_expand_1 "
            "(#3 conv_2d on 1x48x48x8: Output vector stride (2304) exceeded (max=2047), Hardware limits exceeded); "
            "block_1_depthwise_1 (#4 depthwise_conv_2d on 1x48x48x48: Assertion failed: (unsigned)strides[i] <= "
            "((0xFFF0000UL >> (16+1))), Hardware limits exceeded); Conv_1_1 (#61 conv_2d on 1x3x3x112: Output "
            "vector stride (3840) exceeded (max=2047), Hardware limits exceeded); they fall back to the CPU")
    assert note in rk.notes and f"- {note}" in rk.to_table()
    entry = rk.to_json_list()[0]
    assert [(x["layer"], x["index"], x["opcode"], x["input"]) for x in entry["mvp_refused_layers"]] == [
        ("block_1_expand_1", 3, "conv_2d", "1x48x48x8"), ("block_1_depthwise_1", 4, "depthwise_conv_2d", "1x48x48x48"),
        ("Conv_1_1", 61, "conv_2d", "1x3x3x112")]
    assert entry["mvp_refused_layers"][1]["check"].endswith("Hardware limits exceeded")
    with ResultsDB(results, readonly=True) as db:
        md = report.write(db, "r-1", tmp_path / "report").read_text()
    assert f"- {note}" in md
    # a layer the base's MVP refuses too is not pushed off by the tip: MobileNetV2 with float32 input
    # refuses the same three layers, so against it there is no fallback note and nothing newly refused
    _stored_run(results, "r-2", {"base": "mnv2_float32", "input_dtype=int8": "mnv2"})
    rk2 = api.rank("r-2", results)
    assert not any("off the MVP" in n for n in rk2.notes)
    assert rk2.to_json_list()[0]["mvp_refused_layers"] == []
