"""Accuracy in the loop, end to end on a two-node Ray cluster on 127.0.0.1: every variant of a digits
sweep trained, converted and scored three ways; constraints, the ranking's objectives and the
report; the same sweep file into a fresh results folder gives the same accuracies bit for bit."""
import json
import os
import sqlite3
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

from orchestrator import api  # noqa: E402
from tests.test_sweep_cluster import cluster  # noqa: E402,F401  (the two-node cluster fixture)

pytestmark = pytest.mark.slow

TRAIN = """[train]
epochs = 4
batch_size = 64
learning_rate = 0.01
"""
# the base and all seven tips: 8 variants
SWEEP = f"""
name = "digits-acc"
base = {{ builtin = "digits_cnn" }}
[data]
builtin = "digits"
{TRAIN}[tips]
input_size = [0.75]
input_dtype = ["float32"]
filters = [0.5]
strides = [1]
kernel_size = [1]
dense_units = [0.5]
pooling = ["max"]
[[targets]]
kind = "simulator"
accelerator = "none"
[constraints]
max_latency_ms = 1.5
"""
# input_size resizes the samples; float32 input is quantized on the board, not before it
SMALL = f"""
name = "digits-repro"
base = {{ builtin = "digits_cnn", kwargs = {{ filters = 8 }} }}
[data]
builtin = "digits"
{TRAIN}[tips]
input_size = [0.5]
input_dtype = ["float32"]
[[targets]]
kind = "simulator"
accelerator = "none"
[[targets]]
kind = "simulator"
accelerator = "mvp"
"""
ACCURACY_COLUMNS = ("accuracy_float", "accuracy_tflite", "accuracy", "agreement_tflite")


def rows(results: Path) -> list[dict]:
    with sqlite3.connect(results / "mvpfarm.sqlite") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM measurements ORDER BY variant, target")]


@pytest.fixture(scope="module")
def digits_run(cluster, tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    f = d / "sweep.toml"
    f.write_text(SWEEP)
    result = api.run_sweep(f, d / "results", progress=False)
    return result, d / "results"


def test_two_nodes_every_variant_has_three_accuracies(cluster, digits_run):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    result, results = digits_run
    rs = rows(results)
    assert len(rs) == 8 and result.counts.trained == 8
    assert result.counts.epochs_done == result.counts.epochs_total == 8 * 4
    for r in rs:
        assert r["status"] == "measured", r
        assert r["accuracy_error"] is None
        for k in ACCURACY_COLUMNS:
            assert r[k] is not None and 0 <= r[k] <= 1, (r["variant"], k, r[k])
        assert r["agreement_tflite"] >= 0.99, r["variant"]      # none mode: TFLM-exact kernels
        assert r["accuracy_source"] == "emulator/none"
        assert json.loads(r["accuracy_json"])[0]["seed"] == 0
    base = next(r for r in rs if r["variant"] == "base")
    assert base["accuracy"] > 0.9
    assert base["accuracy_float"] > 0.9


def test_constraint_makes_variants_infeasible_and_names_the_bound(digits_run):
    result, results = digits_run
    by_variant = {r["variant"]: r for r in rows(results)}
    rk = api.rank(result.run_id, results)
    assert rk.rule.startswith("most latency saved among the feasible variants")
    entries = {e["variant"]: e for e in rk.to_json_list()}
    assert set(entries) == set(by_variant) - {"base"}
    base_acc = by_variant["base"]["accuracy"]
    for v, e in entries.items():
        r = by_variant[v]
        slow = r["latency_s"] * 1e3 > 1.5
        lost = (base_acc - r["accuracy"]) * 100 > 1.0
        assert e["feasible"] == (not slow and not lost), (v, e)
        assert any("max_latency_ms 1.5" in x for x in e["violations"]) == slow
        assert any("max_accuracy_drop_pts 1" in x for x in e["violations"]) == lost
        assert e["accuracy"] == r["accuracy"]
        assert e["accuracy_change_pts"] == pytest.approx(100 * (r["accuracy"] - base_acc))
    infeasible = [v for v, e in entries.items() if not e["feasible"]]
    assert infeasible and len(infeasible) < len(entries)
    # the decision order: feasible first, most latency saved first within each group
    order = [e["variant"] for e in rk.entries]
    n_feasible = len(entries) - len(infeasible)
    assert all(entries[v]["feasible"] for v in order[:n_feasible])
    lat = [entries[v]["latency_change_pct"] for v in order[:n_feasible]]
    assert lat == sorted(lat)
    # the command line's bound replaces the file's
    loose = api.rank(result.run_id, results, max_latency_ms=100.0, max_accuracy_drop_pts=100.0)
    assert all(e["feasible"] for e in loose.entries)
    report = (results / result.run_id / "report.md").read_text()
    assert report.index("## Decision") < report.index("## Run")
    for v in infeasible:
        line = next(ln for ln in report.splitlines() if ln.startswith("| ") and f"| {v} |" in ln)
        assert "no: " in line and ("max_latency_ms 1.5" in line or "max_accuracy_drop_pts" in line)
    assert (results / result.run_id / "decision.png").stat().st_size > 10_000


def test_objective_accuracy_orders_by_accuracy(digits_run, capsys):
    from orchestrator.cli import main
    result, results = digits_run
    assert main(["rank", result.run_id, "--results", str(results), "--objective", "accuracy",
                 "--format", "json", "--min-accuracy", "0.95"]) == 0
    out = json.loads(capsys.readouterr().out)
    accs = [e["accuracy"] for e in out]
    assert accs == sorted(accs, reverse=True) and len(set(accs)) > 1
    for e in out:
        assert (e["accuracy"] < 0.95) == any("min_accuracy 0.95" in v for v in e["violations"])
    assert [e["rank"] for e in out][0] == 1


def test_same_file_into_fresh_results_reproduces_every_accuracy(cluster, tmp_path):
    f = tmp_path / "small.toml"
    f.write_text(SMALL)
    got = []
    for i in range(2):
        api.run_sweep(f, tmp_path / f"results{i}", progress=False, report=False)
        got.append({(r["variant"], r["target"]): tuple(r[k] for k in ACCURACY_COLUMNS + ("accuracy_json",))
                    for r in rows(tmp_path / f"results{i}")})
    assert len(got[0]) == 6 and all(v[2] is not None for v in got[0].values())
    assert got[0] == got[1]
    # the resized variant really is a different model on other inputs
    assert got[0][("input_size=0.5", "simulator/none/board")][1] != got[0][("base", "simulator/none/board")][1]
