"""Ranking with accuracy on hand-made rows: the decision order, objectives, constraints, the Pareto
front over accuracy and cost, noise over seeds, a lower-is-better metric, a variant without
accuracy."""
import pytest

from orchestrator import ranking
from orchestrator.constraints import Constraints


def row(variant, latency_ms, ram, acc, flash=10_000, std=None, metric="top1", higher=1, error=None):
    return {"run_id": "r", "variant": variant, "tip": variant.split("=")[0], "level": variant.partition("=")[2],
            "target": "simulator/none/board", "status": "measured", "error": None, "flash_bytes": flash,
            "ram_bytes": ram, "accelerator_cycles": 0, "cpu_cycles": 1, "latency_s": latency_ms / 1e3,
            "n_layers_on_mvp": 0, "metric": metric, "metric_higher_is_better": higher, "accuracy": acc,
            "accuracy_float": acc, "accuracy_tflite": acc, "agreement_tflite": 1.0, "accuracy_std": std,
            "accuracy_error": error}


ROWS = [row("base", 10, 8000, 0.95), row("a=1", 4, 6000, 0.945), row("b=1", 2, 5000, 0.90),
        row("c=1", 6, 9000, 0.96), row("d=1", 3, 7000, 0.951)]


def test_decision_order_feasible_by_latency_saved_then_infeasible():
    rk = ranking.rank(ROWS, objective=None, constraints=Constraints(max_ram_bytes=8000))
    assert rk.objective == ranking.DECISION and "most latency saved" in rk.rule
    out = {e["variant"]: e for e in rk.to_json_list()}
    # b loses 5 points (> 1), c needs 9000 B of RAM (> 8000): infeasible, named
    assert [e["variant"] for e in rk.entries] == ["d=1", "a=1", "b=1", "c=1"]
    assert out["b=1"]["violations"] == ["accuracy drop 5.00 pts > max_accuracy_drop_pts 1"]
    assert out["c=1"]["violations"] == ["RAM 9,000 B > max_ram_bytes 8,000"]
    assert out["a=1"]["feasible"] and out["a=1"]["accuracy_change_pts"] == pytest.approx(-0.5)
    assert "Order: most latency saved" in rk.to_table()


def test_objective_accuracy_and_pareto_over_accuracy_and_cost():
    rk = ranking.rank(ROWS, objective="accuracy")
    assert [e["variant"] for e in rk.entries] == ["c=1", "d=1", "a=1", "b=1"]
    pareto = {e["variant"]: e["pareto"] for e in rk.entries}
    # each is best at something (d: accuracy for its speed, a and b: RAM, c: accuracy)
    assert pareto == {"c=1": True, "d=1": True, "a=1": True, "b=1": True}
    worse = ROWS + [row("e=1", 5, 7500, 0.94)]          # slower, more RAM and less accurate than d
    assert {e["variant"]: e["pareto"] for e in ranking.rank(worse, "accuracy").entries}["e=1"] is False


def test_min_accuracy_and_latency_bounds_named():
    rk = ranking.rank(ROWS, objective="latency", constraints=Constraints(min_accuracy=0.95, max_latency_ms=5))
    out = {e["variant"]: e for e in rk.to_json_list()}
    assert out["c=1"]["violations"] == ["latency 6 ms > max_latency_ms 5"]
    assert out["a=1"]["violations"] == ["accuracy 0.945 < min_accuracy 0.95"]
    assert out["d=1"]["feasible"]
    assert [e["variant"] for e in rk.entries] == ["b=1", "d=1", "a=1", "c=1"]     # pure latency order


def test_seeds_spread_marks_changes_within_noise():
    rows = [row("base", 10, 8000, 0.95, std=0.01), row("a=1", 4, 6000, 0.945, std=0.004),
            row("b=1", 2, 5000, 0.90, std=0.004)]
    out = {e["variant"]: e for e in ranking.rank(rows, None).to_json_list()}
    assert out["a=1"]["within_noise"] is True and out["b=1"]["within_noise"] is False
    assert "(within noise)" in ranking.pts_text(out["a=1"])


def test_lower_is_better_metric():
    rows = [row("base", 10, 8000, 0.020, metric="mse", higher=0), row("a=1", 4, 6000, 0.025, metric="mse", higher=0),
            row("b=1", 5, 6000, 0.015, metric="mse", higher=0)]
    rk = ranking.rank(rows, "accuracy", constraints=Constraints(min_accuracy=0.022))
    assert [e["variant"] for e in rk.entries] == ["b=1", "a=1"]       # smallest error first
    out = {e["variant"]: e for e in rk.to_json_list()}
    assert out["a=1"]["violations"] == ["metric 0.025 > min_accuracy 0.022 (lower is better)"]
    assert out["b=1"]["feasible"]


def test_variant_without_accuracy_is_ranked_last_by_accuracy_and_noted():
    rows = ROWS + [row("e=1", 1, 1000, None, error="emulator: op REDUCE_MAX not supported")]
    rk = ranking.rank(rows, "accuracy")
    assert rk.entries[-1]["variant"] == "e=1" and rk.entries[-1]["accuracy"] is None
    assert any("REDUCE_MAX" in n for n in rk.notes)
    with pytest.raises(ranking.RankingError, match="has no accuracy"):
        ranking.rank([dict(r, metric=None) for r in ROWS], "accuracy")
