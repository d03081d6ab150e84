"""The bring-your-own-model corpus (tests/data/corpus2/, built by tests/corpus/make_corpus2.py) against the oracle.

The generic oracle tests (test_counting, test_memory, test_mvp_cycles, test_mvp_support) cover it too; this file holds
the corpus's own, tighter bounds, per model and for `mvp` and `none`: RAM within 0.5% of the vendor's (or 128
bytes, its search step) and never more than 128 bytes below it; accelerator cycles (`vendor-sim`) within 0.5%;
flash, ops, MACs and layer count equal; emulated outputs identical to the oracle's in reference mode, and in MVP mode
at least 99.9% of elements identical with none more than one step off.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import known_gaps
from oracle_ram import heap_brackets, oracle_ram_bytes
from simulator.emulator import emulate_file
from simulator.profiler import profile_file

CORPUS = Path(__file__).parent / "data" / "corpus2"
sys.path.insert(0, str(Path(__file__).parent / "corpus"))
import make_corpus2  # noqa: E402  (the builder: model list)

RAM_SEARCH_STEP_BYTES = 128


def _jsonl(name: str) -> list[dict]:
    path = CORPUS / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


PROFILES = [(r["model"], r["accelerator"], r["result"]) for r in _jsonl("mltk_sim.jsonl") if "summary" in r["result"]]
OUTPUTS = [r for r in _jsonl("mltk_outputs.jsonl") if "results" in r]


def _output_elements(path: Path) -> int:
    from simulator.tflite_reader import read_model_file
    g = read_model_file(path)
    return g.tensors[g.outputs[0]].n_elements


def test_corpus_is_complete():
    """At least 40 models, each on disk as built, with the oracle's numbers and outputs for both builds except the
    runs the builder lists as crashing the oracle, which are recorded as crashes."""
    built = {m.name for m in make_corpus2.MODELS}
    assert len(built) >= 40 and {p.stem for p in CORPUS.glob("*.tflite")} == built
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{n}.tflite" for n in built}
    for p in CORPUS.glob("*.tflite"):
        assert manifest["files"][p.name] == hashlib.sha256(p.read_bytes()).hexdigest()
    crashes = {(m.name, a) for m in make_corpus2.MODELS for a in m.oracle_crashes}
    want = {(n, a) for n in built for a in ("mvp", "none")} - crashes
    assert {(m, a) for m, a, _ in PROFILES} == want
    small = {p.stem for p in CORPUS.glob("*.tflite") if _output_elements(p) <= make_corpus2.OUTPUT_FIXTURE_MAX_ELEMENTS}
    assert {(r["model"].removesuffix(".tflite"), r["accelerator"]) for r in OUTPUTS} == {
        (n, a) for n, a in want if n in small}
    crashed = {(r["model"], r["accelerator"]) for r in _jsonl("mltk_sim.jsonl") if "error" in r["result"]}
    assert crashed == crashes


def _cases(metric: str = "") -> list:
    gaps = known_gaps(CORPUS, metric) if metric else {}
    return [pytest.param(m, a, o, id=f"{m}-{a}",
                         marks=[pytest.mark.xfail(strict=True, reason=gaps[f"{m}-{a}"])] if f"{m}-{a}" in gaps else [])
            for m, a, o in PROFILES]


def _profile(model: str, acc: str, oracle: dict):
    if any("Failed to prepare" in (L.get("error_msg") or "") for L in oracle["layers"]):
        pytest.skip("the vendor simulator failed to prepare this model: its numbers are not a load size")
    return profile_file(CORPUS / f"{model}.tflite", accelerator=acc, timing="vendor-sim")


@pytest.mark.parametrize("model,acc,oracle", _cases())
def test_counts_and_support_equal_the_oracle(model, acc, oracle):
    record = _profile(model, acc, oracle)
    s, want = record.summary, oracle["summary"]
    assert (s.flash_bytes, s.ops, s.macs, s.n_layers) == (want["tflite_size"], want["ops"], want["macs"],
                                                          want["n_layers"])
    if acc == "mvp":
        # per layer: on the MVP exactly where the oracle counts accelerator cycles
        assert [L.accelerator_cycles > 0 for L in record.layers] == [
            L.get("accelerator_cycles", 0) > 0 for L in oracle["layers"]]
        cycles = want.get("accelerator_cycles") or 0
        assert abs(s.accelerator_cycles - cycles) <= 0.005 * cycles, (s.accelerator_cycles, cycles)


@pytest.mark.parametrize("model,acc,oracle", _cases("ram"))
def test_ram_within_half_a_percent_and_never_below(model, acc, oracle):
    got = _profile(model, acc, oracle).summary.ram_bytes
    ram = oracle_ram_bytes(CORPUS / f"{model}.tflite", acc, oracle["summary"])
    assert got >= ram - RAM_SEARCH_STEP_BYTES, (got, ram)
    assert got >= oracle["summary"]["runtime_memory_size"] - RAM_SEARCH_STEP_BYTES   # the ordinary run too
    assert abs(got - ram) <= max(RAM_SEARCH_STEP_BYTES, 0.005 * ram), (got, ram)


def test_heap_dependent_numbers_fall_inside_their_bracket():
    """The models whose vendor RAM depends on heap leftovers: exactly those with a depthwise layer only the optimized
    path can run; the ordinary run's number lies between the zeroed-heap and the worst-heap runs (within the search
    step), and that bracket is wide."""
    from simulator.mvp_plan import depthwise_paths, layer_params
    from simulator.tflite_reader import read_model_file
    brackets = heap_brackets(CORPUS)
    flagged = set()
    for m, a, _ in PROFILES:
        g = read_model_file(CORPUS / f"{m}.tflite")
        if a == "mvp" and any(op.opcode == "depthwise_conv_2d" and depthwise_paths(layer_params(g, op))
                              .prepare_depends_on_alignment for op in g.operators):
            flagged.add((m, a))
    assert set(brackets) == flagged and len(flagged) >= 8
    spread = []
    for m, a, oracle in PROFILES:
        if (m, a) in brackets:
            b = brackets[(m, a)]
            lo, hi = b["ram_zeroed_heap"], b["ram_worst_heap"]
            assert lo - RAM_SEARCH_STEP_BYTES <= oracle["summary"]["runtime_memory_size"] <= hi + RAM_SEARCH_STEP_BYTES, m
            spread.append(hi - lo)
    # the CMSIS-NN path's per-channel multipliers, shifts and scratch against the fp16 constants: 22 B per channel
    assert max(spread) >= 22 * 96, spread


def _output_cases() -> list:
    gaps = known_gaps(CORPUS, "outputs")
    out = []
    for r in OUTPUTS:
        key = f"{r['model'].removesuffix('.tflite')}-{r['accelerator']}"
        marks = [pytest.mark.xfail(strict=True, reason=gaps[key])] if key in gaps else []
        out.append(pytest.param(r, id=key, marks=marks))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("record", _output_cases())
def test_emulated_outputs_match_the_oracle(record):
    mine = emulate_file(CORPUS / record["model"], record["accelerator"], record["seed"], len(record["results"]))
    same = total = 0
    worst = 0.0
    for want, got in zip(record["results"], mine["results"]):
        assert got["input_sha1"] == want["input_sha1"]
        w, g = np.asarray(want["output"], dtype=np.float64), np.asarray(got["output"], dtype=np.float64)
        same, total = same + int((w == g).sum()), total + w.size
        worst = max(worst, float(np.abs(w - g).max())) if w.size else worst
    if record["accelerator"] == "none":
        assert same == total
    else:
        assert same >= 0.999 * total and worst <= 1.0, (same, total, worst)
